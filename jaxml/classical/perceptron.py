"""Multi-class perceptron and kernel perceptron (dual form), both optionally averaged.

Multi-class perceptron (the seed's error E_p = -sum_{mistakes} w^T phi_n t_n, generalised to
K classes as Collins' multi-class perceptron): one weight vector per class; an example x with
label y is predicted argmax_k w_k^T x; on a mistake (prediction p != y) w_y += x, w_p -= x.
A constant feature 1 plays the bias. Examples are visited one at a time, in a fresh random
order each epoch (`lax.scan` over the permutation).

Kernel perceptron: the same algorithm with w_k = sum_i alpha[i, k] phi(x_i), so a mistake on
example i adds +1 to alpha[i, y] and -1 to alpha[i, p]; scores are K(x, X) alpha. The Gram
matrix K + 1 (the 1 is the bias feature) is computed once, so a step costs O(n K).

Averaging (Freund & Schapire's voted perceptron, in its averaged form): the returned weights
(dual coefficients) are the mean of the weights after every step, not the last ones. The
last iterate jumps with each late mistake on non-separable data; the average is far more
stable (measured on MNIST: see the experiment's notes).

Features: used as given (pixels in [0, 1]); the update size is the example itself, so only the
relative scale of features matters and no learning rate is needed.
"""

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from jaxml.classical.common import one_hot
from jaxml.classical.kernels import Kernel, kernel_dot, kernel_matrix


def _with_bias(x):
  return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)


def _epochs(step, state, key, n: int, epochs: int):
  """Runs `step(state, i)` over a fresh random permutation of range(n), `epochs` times; the
  state carries the running sum of the weights for averaging. Returns (state, mistakes[e])."""

  def epoch(state, e):
    perm = jax.random.permutation(jax.random.fold_in(key, e), n)
    state, wrong = lax.scan(step, state, perm)
    return state, wrong.sum()

  return lax.scan(epoch, state, jnp.arange(epochs))


def _mistake_update(scores, label, n_classes: int, dtype):
  """+1 on the true class and -1 on the predicted one if they differ, else 0: f[K]."""
  pred = jnp.argmax(scores)
  wrong = pred != label
  delta = (one_hot(label, n_classes, dtype) - one_hot(pred, n_classes, dtype)) * wrong
  return delta, wrong


@partial(jax.jit, static_argnames=("n_classes", "epochs", "average"))
def perceptron_fit(x, y, key, *, n_classes: int, epochs: int, average: bool = True) -> dict:
  """x: f[n, d], y: int[n] -> {"w": f[d + 1, K] (last row: bias), "mistakes": int[epochs]}."""
  xb = _with_bias(x)
  n, d1 = xb.shape

  def step(state, i):
    w, w_sum = state
    delta, wrong = _mistake_update(xb[i] @ w, y[i], n_classes, x.dtype)
    w = w + jnp.outer(xb[i], delta)
    return (w, w_sum + w), wrong

  zeros = jnp.zeros((d1, n_classes), x.dtype)
  (w, w_sum), mistakes = _epochs(step, (zeros, zeros), key, n, epochs)
  return {"w": w_sum / (n * epochs) if average else w, "mistakes": mistakes}


@jax.jit
def perceptron_decision(params: dict, x):
  """x: f[n, d] -> f[n, K]."""
  return _with_bias(x) @ params["w"]


@partial(jax.jit, static_argnames=("n_classes", "epochs", "average", "kernel", "block_rows"))
def _kernel_perceptron_dual(x, y, key, *, n_classes: int, epochs: int, average: bool,
                            kernel: Kernel, block_rows: int):
  gram = kernel_matrix(kernel, x, x, block_rows=block_rows) + 1.0  # + 1: the bias feature
  n = x.shape[0]

  def step(state, i):
    alpha, alpha_sum = state
    delta, wrong = _mistake_update(gram[i] @ alpha, y[i], n_classes, x.dtype)
    alpha = alpha.at[i].add(delta)
    return (alpha, alpha_sum + alpha), wrong

  zeros = jnp.zeros((n, n_classes), x.dtype)
  (alpha, alpha_sum), mistakes = _epochs(step, (zeros, zeros), key, n, epochs)
  return (alpha_sum / (n * epochs) if average else alpha), mistakes


def kernel_perceptron_fit(x, y, key, *, n_classes: int, kernel: Kernel, epochs: int,
                          average: bool = True, block_rows: int = 1024) -> dict:
  """x: f[n, d], y: int[n] -> {"x": f[s, d] the s examples with a non-zero coefficient,
  "alpha": f[s, K], "mistakes": int[epochs]}. `kernel` must have its gamma resolved."""
  alpha, mistakes = _kernel_perceptron_dual(x, y, key, n_classes=n_classes, epochs=epochs,
                                            average=average, kernel=kernel,
                                            block_rows=block_rows)
  keep = jnp.flatnonzero(jnp.any(alpha != 0, axis=1))  # host-side: the size is data-dependent
  return {"x": x[keep], "alpha": alpha[keep], "mistakes": mistakes}


@partial(jax.jit, static_argnames=("kernel", "block_rows"))
def kernel_perceptron_decision(params: dict, x, *, kernel: Kernel, block_rows: int = 1024):
  """x: f[n, d] -> f[n, K] = (K(x, X_s) + 1) alpha."""
  return (kernel_dot(kernel, x, params["x"], params["alpha"], block_rows=block_rows)
          + params["alpha"].sum(0))
