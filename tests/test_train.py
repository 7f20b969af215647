"""The train loop: scan and loop epochs agree, early stopping, divergence, checkpoint resume."""

import dataclasses
import os
import re

import jax
import numpy as np
import pytest

from jaxml import interrupt, nn
from jaxml.checkpoint import Checkpointer, resume_point
from jaxml.errors import DivergenceError, UserError
from jaxml.losses import classification_loss
from jaxml.train import TrainConfig, fit, validate_train_config

CFG = TrainConfig(optimizer="sgd", learning_rate=0.2, momentum=0.5, batch_size=8, epochs=4,
                  patience=0)


def _problem(n=40, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, 5)).astype(np.float32)
  y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32)
  params = nn.mlp_init(jax.random.key(0), (5, 8, 2))

  def loss_fn(p, batch, *, train, key):
    logits = nn.mlp(p, batch["x"], dropout_rate=0.2, train=train, key=key)
    return classification_loss(logits, batch["y"], batch["weight"])

  return params, loss_fn, {"x": x[:32], "y": y[:32]}, {"x": x[32:], "y": y[32:]}


def _fit(cfg, log=lambda m: None, **kw):
  params, loss_fn, tr, va = _problem()
  return fit(cfg, params=params, loss_fn=loss_fn, train_data=tr, val_data=va,
             key=jax.random.key(7), log=log, **kw)


def test_scan_and_loop_epochs_give_the_same_numbers(allclose):
  a = _fit(dataclasses.replace(CFG, epoch_mode="scan"))
  b = _fit(dataclasses.replace(CFG, epoch_mode="loop"))
  assert allclose(a.params, b.params, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose([r["val_loss"] for r in a.history],
                             [r["val_loss"] for r in b.history], rtol=1e-5)


def test_same_key_same_result_and_training_helps(allclose):
  a, b = _fit(CFG), _fit(CFG)
  assert allclose(a.params, b.params, rtol=0, atol=0)
  assert a.history[-1]["train_loss"] < a.history[0]["train_loss"]


def test_early_stopping_returns_best_validation_params():
  res = _fit(dataclasses.replace(CFG, learning_rate=2.0, epochs=30, patience=2))
  vals = [r["val_loss"] for r in res.history]
  assert res.best_epoch == int(np.argmin(vals)) + 1
  assert len(vals) == res.best_epoch + 2 or len(vals) == 30
  assert "early stopping" in res.stop_reason or len(vals) == 30


def test_keep_last_reports_the_last_epochs_params_and_needs_patience_0(allclose):
  """keep=last: the run trains every epoch and reports its final parameters (the same as the
  best_val run's last state), even when an earlier epoch had the lowest val loss."""
  cfg = dataclasses.replace(CFG, learning_rate=2.0, epochs=12, patience=0)
  best, last = _fit(cfg), _fit(dataclasses.replace(cfg, keep="last"))
  vals = [r["val_loss"] for r in last.history]
  assert len(vals) == 12 and last.best_epoch == 12
  assert best.best_epoch == np.argmin(vals) + 1 < 12  # (lr 2.0: the val loss bounces)
  assert [r["val_loss"] for r in best.history] == vals  # the same training either way
  assert not allclose(best.params, last.params)
  with pytest.raises(UserError, match="patience"):
    validate_train_config(dataclasses.replace(CFG, keep="last", patience=3))


def test_nonfinite_loss_raises_with_epoch_and_step(tmp_path):
  params, loss_fn, tr, va = _problem()
  bad = dict(tr, x=tr["x"].copy())
  bad["x"][5, 0] = np.inf  # an example that poisons whichever batch draws it
  with pytest.raises(DivergenceError, match=r"epoch 1, step \d+"):
    fit(CFG, params=params, loss_fn=loss_fn, train_data=bad, val_data=va,
        key=jax.random.key(0), log=lambda m: None, checkpoint_dir=tmp_path / "ck")


def test_an_exploding_but_finite_loss_is_divergence_and_the_last_checkpoint_stays(tmp_path):
  """Adam keeps an absurd learning rate's loss finite but useless: a step loss over
  diverge_factor x the untrained model's first-step loss stops the run. A resumed run measures
  against the same untrained loss, from the restored history."""
  absurd = dataclasses.replace(CFG, optimizer="adam", learning_rate=1e4)
  with pytest.raises(DivergenceError, match=r"loss exploded at epoch 1, step \d+ of 4: .* over "
                     r"1000x the untrained model's \d\.\d+ .*no epoch completed"):
    _fit(absurd, checkpoint_dir=tmp_path / "absurd")
  assert not list((tmp_path / "absurd").glob("*/"))  # nothing half-written
  # The same run with the check off trains on (its loss stays finite) to a useless result.
  off = _fit(dataclasses.replace(absurd, diverge_factor=0, epochs=2))
  assert max(max(r["step_losses"]) for r in off.history) > 1e3 * off.history[0]["step_losses"][0]
  # A warm-up towards an absurd rate: good epochs first, then it explodes in epoch E, keeping
  # epoch E - 1's checkpoint. Rerun (the same computation, so it resumes from there, measuring
  # against the same untrained loss) it stops in epoch E again and the checkpoint stays as it was.
  warming = dataclasses.replace(absurd, learning_rate=1e3, lr_schedule="cosine",
                                warmup_epochs=300, epochs=301)
  with pytest.raises(DivergenceError, match=r"loss exploded at epoch") as where:
    _fit(warming, checkpoint_dir=tmp_path / "ck")
  e = int(re.search(r"epoch (\d+)", str(where.value)).group(1))
  assert e >= 3 and f"last good checkpoint is epoch {e - 1}" in str(where.value)
  ck = Checkpointer(tmp_path / "ck")
  before = ck.read_meta(e - 1)
  logs = []
  with pytest.raises(DivergenceError, match=fr"loss exploded at epoch {e}.*last good checkpoint "
                     fr"is epoch {e - 1}"):
    _fit(warming, checkpoint_dir=tmp_path / "ck", log=logs.append)
  assert logs[0].startswith(f"resuming from epoch {e - 1}")
  assert ck.latest_epoch() == e - 1 and ck.read_meta(e - 1) == before
  ck.close()
  with pytest.raises(UserError, match="diverge_factor"):
    validate_train_config(dataclasses.replace(CFG, diverge_factor=0.5))


def test_resume_reproduces_an_uninterrupted_run(tmp_path, allclose):
  full = _fit(CFG, checkpoint_dir=tmp_path / "full")

  def kill_in_epoch_3(msg):  # dies after epoch 3 is computed, before its checkpoint is saved
    if msg.startswith("epoch   3"):
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    _fit(CFG, checkpoint_dir=tmp_path / "part", log=kill_in_epoch_3)
  logs = []
  resumed = _fit(CFG, checkpoint_dir=tmp_path / "part", log=logs.append)
  assert logs[0].startswith("resuming from epoch 2 in ")
  assert resumed.resumed_from == 2
  assert allclose(full.params, resumed.params, rtol=0, atol=0)
  assert [r["val_loss"] for r in full.history] == [r["val_loss"] for r in resumed.history]


@pytest.mark.parametrize("mode, stop_after_calls, where", [
    ("loop", 5, r"at step 2 of 4 in epoch 2"),  # asked between steps: stops mid-epoch
    ("scan", 0, r"after epoch 1"),              # the epoch program is one call: after it
])
def test_a_signal_checkpoints_where_training_stands_and_resume_is_exact(
    mode, stop_after_calls, where, tmp_path, monkeypatch, allclose):
  """What SIGTERM/SIGINT do (through jaxml.interrupt): the loop saves a checkpoint at the point
  it stopped, mid-epoch in loop mode, and the rerun ends exactly where an uninterrupted run does."""
  cfg = dataclasses.replace(CFG, epoch_mode=mode)
  full = _fit(cfg, checkpoint_dir=tmp_path / "full")
  calls = []

  def requested():  # the signal arrives after `stop_after_calls` checks
    calls.append(1)
    return len(calls) > stop_after_calls

  monkeypatch.setattr(interrupt, "requested", requested)
  with pytest.raises(interrupt.Interrupted, match=where):
    _fit(cfg, checkpoint_dir=tmp_path / "cut")
  monkeypatch.undo()
  point = resume_point(tmp_path / "cut")
  assert point == ("epoch 1 + step 2 of epoch 2" if mode == "loop" else "epoch 1")
  logs = []
  resumed = _fit(cfg, checkpoint_dir=tmp_path / "cut", log=logs.append)
  assert logs[0].startswith("resuming from epoch 1 + step 2 of epoch 2" if mode == "loop"
                            else "resuming from epoch 1 in ")
  assert allclose(full.params, resumed.params, rtol=0, atol=0)
  strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
  assert strip(full.history) == strip(resumed.history)


def test_resume_refuses_a_different_config(tmp_path):
  _fit(CFG, checkpoint_dir=tmp_path, run_signature={"lr": 1})
  with pytest.raises(UserError, match="--restart"):
    _fit(CFG, checkpoint_dir=tmp_path, run_signature={"lr": 2})


def test_resume_refuses_a_changed_computation_and_ignores_a_comment(tmp_path):
  """The checkpoint holds a fingerprint of the lowered train and evaluation programs: a loss
  whose code computes something else is refused; the same code (written differently, with a
  comment) resumes."""
  params, loss_fn, tr, va = _problem()
  run = lambda loss, log=lambda m: None: fit(
      CFG, params=params, loss_fn=loss, train_data=tr, val_data=va, key=jax.random.key(7),
      checkpoint_dir=tmp_path, log=log)
  first = run(loss_fn)

  def same_loss(p, batch, *, train, key):
    # the same computation, written again
    logits = nn.mlp(p, batch["x"], dropout_rate=0.2, train=train, key=key)
    return classification_loss(logits, batch["y"], batch["weight"])

  logs = []
  again = run(same_loss, logs.append)
  assert again.fingerprint == first.fingerprint and logs[0].startswith("resuming from epoch 4")

  def tanh_loss(p, batch, *, train, key):  # an edit of the model: tanh instead of ReLU
    logits = nn.mlp(p, batch["x"], activation="tanh", dropout_rate=0.2, train=train, key=key)
    return classification_loss(logits, batch["y"], batch["weight"])

  with pytest.raises(UserError, match="different computation.*--restart"):
    run(tanh_loss)


def test_a_loss_that_climbs_and_stays_up_stops_training_and_keeps_the_best_epoch():
  """Finite divergence: the train loss stays above climb_factor x its best for climb_epochs
  epochs; the run stops saying so and returns the best-validation parameters."""
  warming = dataclasses.replace(CFG, optimizer="adam", learning_rate=1e3, lr_schedule="cosine",
                                warmup_epochs=300, epochs=301, diverge_factor=0, grad_clip=1.0)
  res = _fit(warming)
  assert res.stop_reason.startswith("diverging: train loss")
  losses = [r["train_loss"] for r in res.history]
  assert all(l > 3 * min(losses[:-3]) for l in losses[-3:])
  assert res.best_epoch < len(res.history) - 2
  assert all(0 <= r["clipped_fraction"] <= 1 and r["grad_norm_max"] >= r["grad_norm"]
             for r in res.history)
  assert max(r["grad_norm_max"] for r in res.history) > 1.0  # |g| is logged before clipping
  assert max(r["clipped_fraction"] for r in res.history) > 0
  with pytest.raises(UserError, match="climb_factor"):
    validate_train_config(dataclasses.replace(CFG, climb_factor=1.0))


def test_too_few_examples_for_a_batch():
  with pytest.raises(UserError, match="batch_size"):
    _fit(dataclasses.replace(CFG, batch_size=1000))


def test_keep_freed_memory_applies_on_glibc():
  """jaxml.runtime's allocator setting (a large speed-up of XLA:CPU steps, see its docstring)
  takes effect wherever glibc is the C library: mallopt accepted both parameters."""
  import platform
  from jaxml import runtime
  expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
  assert runtime.keep_freed_memory() is expected
  assert runtime.keep_freed_memory() is expected  # idempotent


def test_recurrent_pool_is_one_thread_up_to_its_row_limit():
  """--cpu_threads=auto for a recurrent step: one XLA thread for narrow steps, every CPU for
  wide ones (where the matmuls are worth sharing; BUILD_NOTES has the crossover)."""
  from jaxml import runtime
  assert runtime.recurrent_pool(8) == runtime.recurrent_pool(runtime.ONE_THREAD_ROWS) == 1
  assert runtime.recurrent_pool(runtime.ONE_THREAD_ROWS + 1) is None


CPU_POOL_PROBE = """
import os, sys, jax, jax.numpy as jnp
from jaxml import runtime
def tids():
  return set(os.listdir("/proc/self/task"))
before, cpus = tids(), os.sched_getaffinity(0)
n = None if sys.argv[1] == "default" else int(sys.argv[1])
print(runtime.cpu_client_threads(n))
jax.devices()
started = len(tids() - before)
x = jnp.arange(256.0).reshape(16, 16)
assert float(jax.jit(lambda a: (a @ a).sum())(x)) == float((x @ x).sum())
assert os.sched_getaffinity(0) == cpus  # the process' own mask is back
xla = {frozenset(os.sched_getaffinity(int(t))) for t in tids() - before}
print(runtime.cpu_client_threads(n), started, max(len(m) for m in xla))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs sched_setaffinity and two CPUs")
def test_cpu_client_threads_sizes_xla_pool_and_gives_the_process_its_mask_back():
  """runtime.cpu_client_threads(1) creates XLA's CPU client under a one-CPU mask (its pool is
  sized from it, and its threads stay on that CPU) and then hands the process its full mask
  back; asked again it reports the size set. Without it XLA's threads may use every CPU."""
  import subprocess
  import sys
  runs = {}
  for n in ("1", "default"):
    out = subprocess.run([sys.executable, "-c", CPU_POOL_PROBE, n], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    runs[n] = out.stdout.split()
  assert runs["1"][:2] == ["1", "1"] and runs["default"][:2] == ["None", "None"]
  assert int(runs["1"][2]) < int(runs["default"][2])  # fewer threads: the smaller pool
  assert runs["1"][3] == "1" and int(runs["default"][3]) == len(os.sched_getaffinity(0))
  from jaxml import runtime
  jax.devices()
  assert runtime.cpu_client_threads(1) is None  # here the backends have started already
  assert runtime.cpu_pool_size() is None
  with pytest.raises(ValueError, match="positive"):
    runtime.cpu_client_threads(0)


def test_a_jitted_step_does_not_page_fault_its_scratch_again():
  """With keep_freed_memory (heap only, no trimming, one arena) a program's temporaries are
  reused between calls instead of being faulted in again (~8k faults in 5 calls without it).
  In a fresh process, in experiments/run.py's order: the registry imported, then the setting,
  then jax computes (the arena limit must come before XLA's threads first allocate)."""
  import subprocess
  import sys
  code = """
import resource, jax, jax.numpy as jnp
import experiments.registry
from jaxml import runtime
assert runtime.keep_freed_memory()
x = jnp.ones((2048, 2048), jnp.float32)
f = jax.jit(lambda a: jnp.tanh(a @ a + 1.0).sum() + jnp.exp(a * 2.0).sum())
for _ in range(3):
  f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
  f(x).block_until_ready()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
  import platform
  if not (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"):
    pytest.skip("not glibc")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  faults = int(out.stdout.strip().splitlines()[-1])
  assert faults < 2000, faults  # 16 MB of temporaries per call would be ~4000 faults each
