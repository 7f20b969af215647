"""jaxml.lbfgs.lbfgs_fit: chunks equal one loop, orbax checkpoints (resume, refusal of another
run or another computation), and what SIGTERM does (through jaxml.interrupt)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxml import interrupt
from jaxml.errors import UserError
from jaxml.lbfgs import lbfgs_fit, lbfgs_steps


def _logistic(p, data):
  """A smooth, strictly convex cost: L2-regularised logistic regression on fixed data."""
  z = data["x"] @ p["w"] + p["b"]
  return jnp.mean(jnp.logaddexp(0.0, -data["y"] * z)) + 0.05 * jnp.sum(p["w"] ** 2)


def _problem():
  x = jax.random.normal(jax.random.key(0), (64, 5), jnp.float64)
  y = jnp.sign(x @ jnp.arange(1.0, 6.0) + 0.3 * jax.random.normal(jax.random.key(1), (64,)))
  return {"w": jnp.zeros(5, jnp.float64), "b": jnp.zeros((), jnp.float64)}, {"x": x, "y": y}


def _fit(params, data, ckpt=None, f=_logistic, signature=None, log=lambda m: None, **kw):
  kw = dict(dict(max_iter=12, tol=0.0, log_every=5), **kw)
  return lbfgs_fit(f, params, data, checkpoint_dir=ckpt, run_signature=signature, log=log, **kw)


def test_chunks_equal_one_loop_and_lower_the_cost(tmp_path):
  params, data = _problem()
  opt = optax.lbfgs(memory_size=10)
  whole, _ = jax.jit(lambda p, s: lbfgs_steps(lambda q: _logistic(q, data), opt, p, s, until=12,
                                              tol=0.0, grad_size=optax.tree.norm))(
      params, opt.init(params))
  res = _fit(params, data, tmp_path / "c")
  assert [r["iteration"] for r in res.history] == [5, 10, 12] and res.iterations == 12
  assert res.stop_reason == "max iterations" and res.resumed_from is None
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14),
               res.params, whole)
  assert res.history[-1]["value"] < float(_logistic(params, data))


def test_a_finished_checkpoint_is_reused_and_another_run_or_computation_is_refused(tmp_path):
  params, data = _problem()
  first = _fit(params, data, tmp_path, signature={"s": 1})
  logs = []
  again = _fit(params, data, tmp_path, signature={"s": 1}, log=logs.append)
  assert again.resumed_from == 12 and logs[0].startswith("resuming from L-BFGS iteration 12")
  jax.tree.map(np.testing.assert_array_equal, again.params, first.params)
  assert again.history == first.history
  with pytest.raises(UserError, match="different config or data.*--restart"):
    _fit(params, data, tmp_path, signature={"s": 2})
  edited = lambda p, d: _logistic(p, d) + 0.01 * jnp.sum(p["w"] ** 4)  # the cost was edited
  with pytest.raises(UserError, match="different computation.*--restart"):
    _fit(params, data, tmp_path, f=edited, signature={"s": 1})


def test_a_signal_checkpoints_after_the_chunk_and_the_rerun_ends_where_one_run_does(
    tmp_path, monkeypatch):
  params, data = _problem()
  full = _fit(params, data, tmp_path / "full", log_every=2)
  calls = []

  def requested():  # the signal arrives during the second chunk
    calls.append(1)
    return len(calls) > 1

  monkeypatch.setattr(interrupt, "requested", requested)
  with pytest.raises(interrupt.Interrupted, match="after L-BFGS iteration 4"):
    _fit(params, data, tmp_path / "cut", log_every=2)
  monkeypatch.undo()
  resumed = _fit(params, data, tmp_path / "cut", log_every=2)
  assert resumed.resumed_from == 4
  jax.tree.map(np.testing.assert_array_equal, resumed.params, full.params)
  strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
  assert strip(resumed.history) == strip(full.history)


def test_a_non_finite_cost_stops_the_run_and_writes_no_checkpoint(tmp_path):
  from jaxml.errors import DivergenceError
  params, data = _problem()
  with pytest.raises(DivergenceError, match="non-finite cost or gradient after L-BFGS iteration "
                                            r"\d+; the last good checkpoint is none"):
    _fit(params, data, tmp_path, f=lambda p, d: _logistic(p, d) * jnp.nan)
  assert not any(tmp_path.iterdir())
