"""Sparse autoencoder: one sigmoid hidden layer, MSE + Tikhonov + KL sparsity (the seed's Q1).

    h = sigmoid(x W1 + b1)          x: f[n, L_in], W1: f[L_in, L_hid]
    y = sigmoid(h W2 + b2)          W2: f[L_hid, L_out], L_out = L_in
    J = 1/(2n) sum_i ||x_i - y_i||^2 + lam/2 (||W1||^2 + ||W2||^2) + beta sum_b KL(rho || rho_b)

with rho_b = (1/n) sum_i h_ib the mean activation of hidden unit b over the batch and
KL(rho || r) = rho log(rho / r) + (1 - rho) log((1 - rho) / (1 - r)). The hyper-parameters come
from any `cfg` with fields `lam`, `beta`, `rho` (the experiment's Config).

Training differentiates J with `jax.grad`, so an edit of the cost below is what every solver
follows. The seed's hand-derived gradient (its appendix `aeCost`, and the five slips of its
written derivation) is a test reference in tests/test_sparse_ae.py, compared with `jax.grad`.
The seed's sigmoid exp(x) / (1 + exp(x)) overflows to nan for large x; jax.nn.sigmoid does not.
"""

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
