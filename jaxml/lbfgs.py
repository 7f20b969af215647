"""Full-batch L-BFGS: a traceable loop over optax's `lbfgs` (zoom line search) and the
checkpointed run around it.

`lbfgs_steps` serves every full-batch solve (logistic regression, the linear SVM, the sparse
autoencoder). It takes and returns the optax state, so `lbfgs_fit` runs it in chunks (for
progress lines, checkpoints and SIGTERM) and gets exactly the iterates of one uninterrupted loop.
"""

import contextlib
import dataclasses
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxml import interrupt
from jaxml.checkpoint import Checkpointer, refuse_another_run
from jaxml.errors import DivergenceError
from jaxml.train import computation_fingerprint


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


@dataclasses.dataclass(frozen=True)
class LBFGSResult:
  """What `lbfgs_fit` returns."""
  params: dict                   # the last iterate (numpy leaves)
  history: list                  # one row per chunk: {"iteration", **monitor, "grad_norm", "seconds"}
  iterations: int                # L-BFGS iterations in all (a resumed run counts the earlier ones)
  stop_reason: str
  compile_s: float
  seconds_per_iteration: float
  resumed_from: int | None       # the iteration a checkpoint was resumed from, or None
  fingerprint: str               # jaxml.train.computation_fingerprint of the chunk program


def lbfgs_fit(f: Callable, params, data, *, max_iter: int, tol: float, log_every: int,
              memory: int = 10, grad_size: Callable = optax.tree.norm,
              monitor: Callable[[dict], dict] | None = None, checkpoint_dir=None,
              run_signature: dict | None = None,
              log: Callable[[str], None] = print) -> LBFGSResult:
  """Minimises the scalar f(params, data) by full-batch L-BFGS, in jitted chunks of `log_every`
  iterations (one compiled program), with a progress line and a checkpoint after each chunk.

  The chunks give exactly the iterates of one uninterrupted loop (the optax state is carried),
  so a run resumed from its checkpoint ends where an uninterrupted one does. Checkpoints are
  the one `jaxml.checkpoint.Checkpointer` (orbax, keyed by iteration count), holding params,
  optimizer state, the history, `run_signature` and the fingerprint of the lowered chunk
  program: a checkpoint of another config, data or computation (an edited f) is refused with
  one line naming --restart. A SIGTERM/Ctrl-C (jaxml.interrupt) lets the running chunk finish,
  saves it and raises `Interrupted`.

  Args:
    data: f's second argument (an array pytree), passed to the program, not baked into it.
    tol: stop once grad_size(gradient) < tol (default the global L2 norm).
    monitor: params -> {name: float} for the progress rows (e.g. train and held-out cost).
    checkpoint_dir: None for no checkpoints (and no resume).
  """
  opt = optax.lbfgs(memory_size=memory)

  def chunk(params, state, data, until):
    return lbfgs_steps(lambda p: f(p, data), opt, params, state, until=until, tol=tol,
                       grad_size=grad_size)

  state = opt.init(params)
  lowered = jax.jit(chunk).lower(params, state, data, jnp.int32(0))
  fingerprint = computation_fingerprint(lowered)
  ckpt = Checkpointer(checkpoint_dir) if checkpoint_dir is not None else None
  history, stop_reason, resumed = [], None, None
  try:
    if ckpt is not None and ckpt.latest_epoch() is not None:
      (params, state), history, stop_reason = _restore(ckpt, params, state, run_signature,
                                                       fingerprint)
      resumed = int(optax.tree.get(state, "count"))
      log(f"resuming from L-BFGS iteration {resumed} in {ckpt.directory} (--restart starts "
          f"over)")
    t0 = time.perf_counter()
    step = lowered.compile() if stop_reason is None else None
    compile_s = time.perf_counter() - t0
    with interrupt.watching() if ckpt is not None else contextlib.nullcontext():
      while stop_reason is None:
        t0 = time.perf_counter()
        k = int(optax.tree.get(state, "count"))
        params, state = step(params, state, data, jnp.int32(min(k + log_every, max_iter)))
        k_new = int(optax.tree.get(state, "count"))
        grad = optax.tree.get(state, "grad")
        grad_norm, size = float(optax.tree.norm(grad)), float(grad_size(grad))
        seconds = time.perf_counter() - t0
        value = float(optax.tree.get(state, "value"))
        if not (math.isfinite(value) and math.isfinite(grad_norm)):
          last = ckpt.latest_epoch() if ckpt is not None else None
          raise DivergenceError(
              f"non-finite cost or gradient after L-BFGS iteration {k_new}; the last good "
              f"checkpoint is " + (f"iteration {last} in {ckpt.directory}" if last else "none"))
        row = {"iteration": k_new, **(monitor(params) if monitor else {"value": value}),
               "grad_norm": grad_norm, "seconds": seconds}
        history.append(row)
        log(f"lbfgs iter {k_new:4d}/{max_iter}  " + "  ".join(
            f"{name} {row[name]:.5f}" for name in row if name not in
            ("iteration", "grad_norm", "seconds")) + f"  |g| {grad_norm:.3g}  {seconds:.2f}s")
        if k_new >= max_iter:
          stop_reason = "max iterations"
        elif k_new == k or size < tol:
          stop_reason = f"gradient norm {size:.3g} < tol {tol:g}"
        if ckpt is not None:
          ckpt.save(k_new, {"params": params, "opt_state": state},
                    {"signature": run_signature, "fingerprint": fingerprint,
                     "history": history, "stop_reason": stop_reason})
          if interrupt.requested() and stop_reason is None:
            raise interrupt.stopped(f"after L-BFGS iteration {k_new}")
  finally:
    if ckpt is not None:
      ckpt.close()
  iterations = int(optax.tree.get(state, "count"))
  return LBFGSResult(
      params=jax.tree.map(np.asarray, params), history=history, iterations=iterations,
      stop_reason=stop_reason, compile_s=compile_s,
      seconds_per_iteration=(sum(r["seconds"] for r in history) / max(iterations, 1)
                             if history else 0.0),
      resumed_from=resumed, fingerprint=fingerprint)


def _restore(ckpt, params, state, signature, fingerprint):
  """((params, state), history, stop_reason) from the newest checkpoint, if it was written by
  the same run (signature) and the same computation (fingerprint); else UserError."""
  last = ckpt.latest_epoch()
  refuse_another_run(ckpt.directory, ckpt.read_meta(last), signature, fingerprint)
  tree, meta = ckpt.restore(last, {"params": params, "opt_state": state})
  return (tree["params"], tree["opt_state"]), meta["history"], meta.get("stop_reason")
