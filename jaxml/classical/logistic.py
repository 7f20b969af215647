"""Multinomial logistic regression with an L2 penalty, fitted by L-BFGS (optax).

    min_{W, b}  (1/2) ||W||^2 + C sum_i CE(softmax(W^T x_i + b), y_i)

the seed's softmax model and error function E(W) = -sum_n sum_k t_nk ln y_nk, with
scikit-learn's parametrisation of the penalty (C = inverse regularisation strength, bias not
penalised), so `c` means the same as LogisticRegression(C=...). We minimise the objective
divided by C n (mean cross-entropy + ||W||^2 / (2 C n)): the same minimiser, with values and
gradients of order one whatever n is, which keeps float32 L-BFGS well scaled.

Features: used as given (pixels in [0, 1]). The problem is smooth and strictly convex in W, so
full-batch L-BFGS converges fast: with scikit-learn's stopping rule (largest gradient component
below tol = 1e-4) about 100 iterations on 4000 MNIST digits, each two n x d x K matmuls, all in
one jitted `lax.while_loop`.
"""

from functools import partial

import jax
import jax.numpy as jnp
import optax

from jaxml.classical.common import lbfgs_minimize


def logistic_objective(params: dict, x, y, c):
  """Mean cross-entropy + ||w||^2 / (2 c n): the L2-penalised objective divided by c n."""
  logits = x @ params["w"] + params["b"]
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return ce + jnp.sum(params["w"] ** 2) / (2 * c * x.shape[0])


@partial(jax.jit, static_argnames=("n_classes", "max_iter"))
def logistic_fit(x, y, *, n_classes: int, c, max_iter: int = 300, tol: float = 1e-4) -> dict:
  """x: f[n, d], y: int[n] -> {"w": f[d, K], "b": f[K], "iterations": int, "objective": f}."""
  init = {"w": jnp.zeros((x.shape[1], n_classes), x.dtype), "b": jnp.zeros((n_classes,), x.dtype)}
  params, iters, value = lbfgs_minimize(logistic_objective, init, x, y, c, max_iter=max_iter,
                                        tol=tol)
  return dict(params, iterations=iters, objective=value)


@jax.jit
def logistic_decision(params: dict, x):
  """x: f[n, d] -> logits f[n, K] (softmax gives the class posteriors)."""
  return x @ params["w"] + params["b"]
