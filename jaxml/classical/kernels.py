"""Kernel functions k(a, b) and their matrices, computed in row blocks so memory stays bounded.

    linear   <a, b>
    poly     (gamma <a, b> + coef0) ** degree
    rbf      exp(-gamma ||a - b||^2)
    sigmoid  tanh(gamma <a, b> + coef0)     (not positive semi-definite for every gamma, coef0)

These are the seed's four (scikit-learn's SVC kernels), with the same parameter names. A
`Kernel` is a frozen dataclass, so it is hashable and travels into `jax.jit` as a static
argument. `gamma=0` means scikit-learn's "scale", 1 / (n_features * Var(x_train)), resolved
on the training data by `resolve_gamma` before fitting.

Memory: `kernel_matrix` materialises its n x m result (kernel methods that need the whole
training Gram matrix pay n^2 floats: 100 MB for 5000 points in float32), but builds it
`block_rows` rows at a time, so temporaries stay block_rows x m. `kernel_dot` never holds more
than a block: it returns K(x, x_ref) @ coef, which is all that prediction needs.
"""

import dataclasses
from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

KernelName = Literal["linear", "poly", "rbf", "sigmoid"]


@dataclasses.dataclass(frozen=True)
class Kernel:
  name: KernelName = "rbf"
  gamma: float = 0.0    # inner-product / distance scale; 0 = "scale" (see resolve_gamma)
  degree: int = 3       # poly only
  coef0: float = 0.0    # poly and sigmoid offset

  def describe(self) -> dict:
    """The parameters that matter for this kernel, for results.json."""
    keep = {"linear": (), "poly": ("gamma", "degree", "coef0"), "rbf": ("gamma",),
            "sigmoid": ("gamma", "coef0")}[self.name]
    return {"kernel": self.name, **{k: getattr(self, k) for k in keep}}


def resolve_gamma(kernel: Kernel, x_train) -> Kernel:
  """gamma=0 becomes 1 / (n_features * Var(x_train)), scikit-learn's gamma='scale'."""
  if kernel.gamma > 0 or kernel.name == "linear":
    return kernel
  x = np.asarray(x_train, np.float64)
  return dataclasses.replace(kernel, gamma=float(1.0 / (x.shape[1] * max(x.var(), 1e-12))))


def _from_inner(kernel: Kernel, inner, sq_dist):
  """The kernel value from <a, b> and ||a - b||^2 (only RBF uses the distance)."""
  if kernel.name == "linear":
    return inner
  if kernel.name == "poly":
    return (kernel.gamma * inner + kernel.coef0) ** kernel.degree
  if kernel.name == "sigmoid":
    return jnp.tanh(kernel.gamma * inner + kernel.coef0)
  return jnp.exp(-kernel.gamma * sq_dist)


def gram(kernel: Kernel, a, b):
  """a: f[n, d], b: f[m, d] -> K: f[n, m], all at once (use kernel_matrix for large n)."""
  inner = a @ b.T
  # ||a - b||^2 through the inner product (one matmul instead of an n x m x d difference);
  # rounding can make it slightly negative for a == b, hence the clamp.
  sq = jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * inner
  return _from_inner(kernel, inner, jnp.maximum(sq, 0.0))


@partial(jax.jit, static_argnames=("kernel", "block_rows"))
def kernel_matrix(kernel: Kernel, a, b, *, block_rows: int = 1024):
  """K(a, b): f[n, m], built block_rows rows at a time (temporaries block_rows x m)."""
  if a.shape[0] <= block_rows:
    return gram(kernel, a, b)
  return jax.lax.map(lambda row: gram(kernel, row[None], b)[0], a, batch_size=block_rows)


@partial(jax.jit, static_argnames=("kernel", "block_rows"))
def kernel_dot(kernel: Kernel, x, x_ref, coef, *, block_rows: int = 1024):
  """K(x, x_ref) @ coef: f[n, k] for x: f[n, d], x_ref: f[m, d], coef: f[m, k].

  Only block_rows x m kernel values exist at a time, so predicting for 10000 test points
  against 5000 training points never holds the 10000 x 5000 matrix.
  """
  if x.shape[0] <= block_rows:
    return gram(kernel, x, x_ref) @ coef
  return jax.lax.map(lambda row: (gram(kernel, row[None], x_ref) @ coef)[0], x,
                     batch_size=block_rows)
