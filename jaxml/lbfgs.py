"""Full-batch L-BFGS as a traceable loop over optax's `lbfgs` (zoom line search).

One loop serves every full-batch solve (logistic regression, the linear SVM, the sparse
autoencoder). It takes and returns the optax state, so a caller can run it in chunks (for
progress lines and checkpoints) and get exactly the iterates of one uninterrupted loop.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax


def max_abs(tree):
  """The largest |component| of a pytree: scipy's L-BFGS-B `pgtol` measure (scikit-learn's)."""
  return optax.tree.max(jax.tree.map(jnp.abs, tree))


def lbfgs_steps(f: Callable, opt: optax.GradientTransformationExtraArgs, params, state, *,
                until, tol: float, grad_size: Callable = max_abs):
  """L-BFGS iterations on the scalar f(params) from (params, state) until the iteration count
  reaches `until` or, after the first iteration, grad_size(gradient) < tol.

  Args:
    opt: `optax.lbfgs(...)`; state: its state (`opt.init(params)` to start).
    until: iteration count to stop at (a traced int is fine: one compiled loop, any chunk).
    grad_size: gradient pytree -> scalar (default the largest component; optax.tree.norm for
      the global L2 norm).
  Returns:
    (params, state); `optax.tree.get(state, "count" | "value" | "grad")` for the rest.
  """
  value_and_grad = optax.value_and_grad_from_state(f)

  def step(carry):
    p, s = carry
    value, grad = value_and_grad(p, state=s)
    updates, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=f)
    return optax.apply_updates(p, updates), s

  def keep_going(carry):
    k = optax.tree.get(carry[1], "count")
    return (k < until) & ((k == 0) | (grad_size(optax.tree.get(carry[1], "grad")) >= tol))

  return lax.while_loop(keep_going, step, (params, state))
