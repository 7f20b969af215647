"""Gradient checks: `jax.grad` against central finite differences, in float64.

Two modes, as in JAX's own `check_grads`:
* `all`: every coordinate, for tiny models (a few thousand parameters at most);
* `directions`: the directional derivative along fixed random unit directions v,
  (f(p + eps v) - f(p - eps v)) / (2 eps) against <grad f(p), v>, for larger ones.
The error reported is relative, ||a - b|| / max(||a||, ||b||), in the 2-norm over the whole
gradient vector (`all`, the UFLDL convention) or over the vector of directional derivatives
(`directions`; a per-direction ratio would blow up for a direction nearly orthogonal to the
gradient, where both numbers are close to zero).
Choose inputs away from kinks (ReLU at 0, max-pool ties, hinge at the margin): a finite
difference across a kink measures something other than the gradient.
"""

from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree


class GradCheck(NamedTuple):
  max_rel_error: float   # the number to compare with a tolerance (~1e-6 in float64)
  analytic: np.ndarray   # what `jax.grad` gave (flattened) or the directional derivatives
  numeric: np.ndarray    # what finite differences gave, same layout


def _require_float64(params) -> None:
  if not jax.config.jax_enable_x64:
    raise RuntimeError("gradient checks need float64: jax.config.update('jax_enable_x64', True)")
  for leaf in jax.tree.leaves(params):
    if jnp.asarray(leaf).dtype != jnp.float64:
      raise ValueError(f"gradient checks need float64 parameters, got {jnp.asarray(leaf).dtype}")


def rel_error(a, b, floor: float = 1e-12) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), floor))


def check_grad(f: Callable, params, *, mode: Literal["all", "directions"] = "all",
               n_directions: int = 8, eps: float = 1e-6, seed: int = 0,
               grad_fn: Callable | None = None) -> GradCheck:
  """Compares the gradient of the scalar `f(params)` with central differences.

  Args:
    f: params pytree -> scalar (float64).
    grad_fn: the gradient to test (default `jax.grad(f)`); pass a hand-derived one to test it.
  """
  _require_float64(params)
  flat, unravel = ravel_pytree(params)
  f_flat = jax.jit(lambda v: f(unravel(v)))
  analytic_tree = (grad_fn or jax.grad(f))(params)
  g = np.asarray(ravel_pytree(analytic_tree)[0])
  if mode == "all":
    basis = np.eye(flat.size) * eps
    diffs = jax.lax.map(lambda d: (f_flat(flat + d) - f_flat(flat - d)) / (2 * eps),
                        jnp.asarray(basis), batch_size=64)
    num = np.asarray(diffs)
    return GradCheck(rel_error(g, num), g, num)
  rng = np.random.default_rng(seed)
  dirs = rng.standard_normal((n_directions, flat.size))
  dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
  num = np.array([(f_flat(flat + eps * d) - f_flat(flat - eps * d)) / (2 * eps) for d in dirs])
  ana = dirs @ g
  return GradCheck(rel_error(ana, num), ana, num)
