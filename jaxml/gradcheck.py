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


def check_cell(name: str, *, n_in: int = 2, hidden: int = 4, batch: int = 3, time: int = 5,
               seed: int = 0) -> dict:
  """Checks a registered recurrent cell (`jaxml.recurrent.CELLS[name]`) in float64, on random
  weights, inputs and initial carry, with a ragged mask: returns the relative errors of
    "fast_vs_autodiff": the fast backward's gradient against `jax.grad` of the plain scan;
    "finite_differences": `jax.grad` against central differences, every coordinate.
  Both should be ~1e-10 or below for a correct cell; tests/test_recurrent.py asserts the same
  properties for every registered cell."""
  from jaxml import recurrent
  with jax.enable_x64(True):
    f64 = jnp.float64
    cell = recurrent.get_cell(name)
    keys = iter(jax.random.split(jax.random.key(seed), 64))
    noise = lambda tree, scale: jax.tree.map(
        lambda v: v + scale * jax.random.normal(next(keys), jnp.shape(v), f64), tree)
    params = noise(cell.init(next(keys), n_in, hidden, f64), 0.2)
    carry = noise(cell.zero_carry(batch, hidden, f64), 0.5)
    x = jax.random.normal(next(keys), (batch, time, n_in), f64)
    lengths = jnp.arange(batch) % time + max(1, time - batch)
    mask = (jnp.arange(time)[None] < lengths[:, None]).astype(f64)
    proj = jax.random.normal(next(keys), (batch, time, hidden), f64)

    def objective(backward):
      def f(args):
        p, c, xx = args
        final, hs = recurrent.run(name, p, xx, c, mask, backward=backward)
        return jnp.sum(jnp.sin(hs) * proj) + sum(jnp.sum(jnp.sin(leaf))
                                                 for leaf in jax.tree.leaves(final))
      return f

    args = (params, carry, x)
    g_fast = ravel_pytree(jax.grad(objective("fast"))(args))[0]
    g_auto = ravel_pytree(jax.grad(objective("autodiff"))(args))[0]
    fd = check_grad(objective("autodiff"), args, mode="all")
    return {"fast_vs_autodiff": rel_error(g_fast, g_auto),
            "finite_differences": fd.max_rel_error}
