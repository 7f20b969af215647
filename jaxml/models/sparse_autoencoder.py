"""Sparse autoencoder: one sigmoid hidden layer, MSE + Tikhonov + KL sparsity (the seed's Q1).

    h = sigmoid(x W1 + b1)          x: f[n, L_in], W1: f[L_in, L_hid]
    y = sigmoid(h W2 + b2)          W2: f[L_hid, L_out], L_out = L_in
    J = 1/(2n) sum_i ||x_i - y_i||^2 + lam/2 (||W1||^2 + ||W2||^2) + beta sum_b KL(rho || rho_b)

with rho_b = (1/n) sum_i h_ib the mean activation of hidden unit b over the batch and
KL(rho || r) = rho log(rho / r) + (1 - rho) log((1 - rho) / (1 - r)). The hyper-parameters come
from any `cfg` with fields `lam`, `beta`, `rho` (the experiment's Config).

Two gradients of J: `ae_cost` (`jax.value_and_grad`) and `ae_cost_analytic`, the seed's hand-
derived backward pass. The seed's *code* (its appendix `aeCost`) is right; its *written*
derivation (section 1.2) is not, in five places:

1. dMSE/dW_out = W_hid^T delta_out and dMSE/dW_hid = W_out^T delta_hid multiply by the weight
   matrices (the shapes do not even agree); the factors are the layer *inputs*: H^T delta_out
   and X^T delta_hid.
2. delta_out = -sigma'(V_out) (X - Y) has no 1/N while the bias derivatives carry one, so the
   weight derivatives come out N times too large; the 1/N belongs in delta_out (the code has it).
3. dKL/dW_hid = beta[(1-rho)/(1-rho_b) - rho/rho_b], added straight onto W_hid's gradient as a
   column: rho_b depends on W_hid only through rho_b = mean_i sigma(x_i W_hid + b_hid), so the
   chain rule multiplies by 1/N, sigma'(V_hid) and the input x:
   dKL/dW_hid[a, b] = beta[...]_b (1/N) sum_i sigma'(V_hid)_ib x_ia.
4. dKL/db_hid = 0 is wrong for the same reason: it is beta[...]_b (1/N) sum_i sigma'(V_hid)_ib.
5. delta_hid = sigma'(V_hid) (W_out^T delta_out) leaves the KL term out; the corrected
       delta_hid = sigma'(V_hid) * (delta_out W_out^T + beta[(1-rho)/(1-rho_b) - rho/rho_b] / N)
   carries items 3 and 4, and then dJ/dW_hid = X^T delta_hid + lam W_hid, dJ/db_hid = sum_i
   delta_hid. This corrected form is `ae_cost_analytic`, checked against finite differences
   in tests/test_sparse_ae.py; it is what the seed's appendix code computes.

(Two smaller slips: the forward pass is written Y = sigma(sigma(X W_hid)) without W_out and the
biases, and rho_b with an elementwise product X (.) W_hid where a matrix product is meant. The
seed's sigmoid exp(x) / (1 + exp(x)) overflows to nan for large x; jax.nn.sigmoid does not.)
"""

import functools

import jax
import jax.numpy as jnp

from jaxml import nn


def init(key, *, n_in: int, n_hidden: int, tied_init: bool = True, dtype=jnp.float32) -> dict:
  """Weights and biases U(-a, a), a = sqrt(6 / (L_pre + L_post)) as in the seed.

  tied_init: start with W2 = W1^T, as the seed does (only at init; they train separately).
  Returns {"w1": f[n_in, n_hidden], "b1": f[n_hidden], "w2": f[n_hidden, n_in], "b2": f[n_in]}.
  """
  k1, k2, k3, k4 = jax.random.split(key, 4)
  w1 = nn.xavier_uniform(k1, (n_in, n_hidden), n_in, n_hidden, dtype)
  w2 = w1.T if tied_init else nn.xavier_uniform(k2, (n_hidden, n_in), n_hidden, n_in, dtype)
  return {"w1": w1, "b1": nn.xavier_uniform(k3, (n_hidden,), n_in, n_hidden, dtype),
          "w2": w2, "b2": nn.xavier_uniform(k4, (n_in,), n_hidden, n_in, dtype)}


def encode(params, x):
  """x: f[n, L_in] -> hidden activations h: f[n, L_hid] in (0, 1)."""
  return jax.nn.sigmoid(x @ params["w1"] + params["b1"])


def decode(params, h):
  """h: f[n, L_hid] -> reconstruction f[n, L_out] in (0, 1)."""
  return jax.nn.sigmoid(h @ params["w2"] + params["b2"])


def apply(params, x):
  """x: f[n, L_in] -> reconstruction f[n, L_in]."""
  return decode(params, encode(params, x))


def kl_bernoulli(rho, rho_hat):
  """KL(rho || rho_hat) between Bernoulli means, elementwise over rho_hat: f[L_hid]."""
  return rho * jnp.log(rho / rho_hat) + (1 - rho) * jnp.log((1 - rho) / (1 - rho_hat))


def cost_terms(params, x, cfg, weights=None) -> dict:
  """The three terms of J and the mean activations, over the rows of x: f[n, L_in].

  weights: optional f[n] (0 marks padding in evaluation batches); sums become weighted sums.
  Returns {"mse", "tikhonov", "kl", "total"} (scalars) and "rho_hat": f[L_hid].
  """
  h = encode(params, x)
  return _terms(params, x, h, decode(params, h), cfg, weights)


def _terms(params, x, h, y, cfg, weights=None) -> dict:
  """`cost_terms` from the forward pass's hidden activations h and reconstruction y."""
  w = jnp.ones(x.shape[:1], x.dtype) if weights is None else weights.astype(x.dtype)
  n = jnp.maximum(w.sum(), 1.0)
  rho_hat = (w @ h) / n
  mse = 0.5 * (w @ jnp.sum((x - y) ** 2, axis=1)) / n
  tikhonov = 0.5 * cfg.lam * (jnp.sum(params["w1"] ** 2) + jnp.sum(params["w2"] ** 2))
  kl = cfg.beta * jnp.sum(kl_bernoulli(cfg.rho, rho_hat))
  return {"mse": mse, "tikhonov": tikhonov, "kl": kl, "total": mse + tikhonov + kl,
          "rho_hat": rho_hat}


def objective(params, x, cfg):
  """J(params; x): the scalar the solvers minimise."""
  return cost_terms(params, x, cfg)["total"]


def ae_cost(params, data, cfg):
  """(J, dJ/dparams) by `jax.value_and_grad`; data: f[n, L_in]."""
  return jax.value_and_grad(objective)(params, data, cfg)


def ae_cost_analytic(params, data, cfg):
  """(J, dJ/dparams) by the seed's hand-derived backward pass, corrected (module docstring).

  Row-major like the seed's code: data X: f[N, L_in]; every delta is f[N, units].
  """
  x = data
  n = x.shape[0]
  hid = encode(params, x)
  out = decode(params, hid)
  terms = _terms(params, x, hid, out, cfg)
  rho_hat = terms["rho_hat"]
  d_out = -(x - out) * out * (1 - out) / n              # dJ/dV_out; sigma' = y (1 - y)
  d_kl = cfg.beta * (-cfg.rho / rho_hat + (1 - cfg.rho) / (1 - rho_hat)) / n  # f[L_hid]
  d_hid = (d_out @ params["w2"].T + d_kl) * hid * (1 - hid)  # dJ/dV_hid, KL term included
  grads = {"w1": x.T @ d_hid + cfg.lam * params["w1"], "b1": d_hid.sum(axis=0),
           "w2": hid.T @ d_out + cfg.lam * params["w2"], "b2": d_out.sum(axis=0)}
  return terms["total"], grads


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def objective_analytic(params, x, cfg):
  """J, but `jax.grad` of it returns the hand-derived gradient (so optax and the train loop,
  which differentiate with `jax.grad`, run on the seed's backward pass). Not differentiable in x.
  cfg must be hashable (a frozen dataclass is)."""
  return objective(params, x, cfg)


def _analytic_fwd(params, x, cfg):
  return ae_cost_analytic(params, x, cfg)


def _analytic_bwd(cfg, grads, g):
  return jax.tree.map(lambda d: g * d, grads), None


objective_analytic.defvjp(_analytic_fwd, _analytic_bwd)


def objective_fn(gradient: str):
  """`objective` ("autodiff") or `objective_analytic` ("analytic"): same value, two gradients."""
  return {"autodiff": objective, "analytic": objective_analytic}[gradient]
