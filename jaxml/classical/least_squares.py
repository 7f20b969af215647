"""Regularised least squares for classification (ridge regression on 1-of-K targets).

    min_{W, b}  sum_i ||W^T x_i + b - t_i||^2 + alpha ||W||^2,   t_i = one_hot(y_i)

Closed form on centred data (the bias is not penalised, as in scikit-learn's RidgeClassifier):
W = (Xc^T Xc + alpha I)^{-1} Xc^T Tc, b = t_mean - W^T x_mean; predict argmax_k (W^T x + b)_k.
scikit-learn codes targets as {-1, +1} instead of {0, 1}; that doubles W and shifts b by a
constant per class, so the argmax, and every prediction, is the same.

Features: used as given (MNIST pixels in [0, 1]). alpha acts on the scale of x: z-scoring
pixels would blow up near-constant border pixels and change what a given alpha means.
Cost: one d x d Cholesky solve (d = 784), milliseconds.
"""

from functools import partial

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_factor, cho_solve

from jaxml.classical.common import one_hot


@partial(jax.jit, static_argnames=("n_classes",))
def ridge_fit(x, y, *, n_classes: int, alpha) -> dict:
  """x: f[n, d], y: int[n] -> {"w": f[d, K], "b": f[K]}."""
  t = one_hot(y, n_classes, x.dtype)
  x_mean, t_mean = x.mean(0), t.mean(0)
  xc, tc = x - x_mean, t - t_mean
  gram = xc.T @ xc + alpha * jnp.eye(x.shape[1], dtype=x.dtype)
  w = cho_solve(cho_factor(gram), xc.T @ tc)
  return {"w": w, "b": t_mean - x_mean @ w}


@jax.jit
def ridge_decision(params: dict, x):
  """x: f[n, d] -> fitted target values f[n, K]."""
  return x @ params["w"] + params["b"]
