"""benchmarks/speed.py: its FLOP count; a --quick run's JSON and table, with or without torch."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from benchmarks import speed

ROOT = Path(__file__).resolve().parents[1]
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def run_speed(*args):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "benchmarks.speed", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def test_matmul_flops_counts_a_scan_body_once_per_step_and_its_gradient():
  steps, batch, hidden = 5, 4, 8
  w = jnp.ones((hidden, hidden), jnp.float32)
  xs = jnp.ones((steps, batch, hidden), jnp.float32)

  def loss(w, xs):
    body = lambda h, x: (jnp.tanh(h @ w + x), None)
    return lax.scan(body, jnp.zeros((batch, hidden), jnp.float32), xs)[0].sum()

  one = 2 * batch * hidden * hidden  # one h @ w
  assert speed.matmul_flops(jax.make_jaxpr(loss)(w, xs)) == steps * one
  # Reverse mode: per step the forward matmul, dL/dh @ w.T and h.T @ dL/dh.
  assert speed.matmul_flops(jax.make_jaxpr(jax.grad(loss))(w, xs)) == 3 * steps * one


def test_matmul_flops_of_a_convolution_and_its_gradients():
  x = jnp.ones((2, 6, 6, 3), jnp.float32)
  w = jnp.ones((3, 3, 3, 4), jnp.float32)
  conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                               dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
  forward = 2 * (2 * 6 * 6 * 4) * (3 * 3 * 3)  # every output: 27 multiply-adds
  assert speed.matmul_flops(jax.make_jaxpr(conv)(x, w)) == forward
  both = jax.make_jaxpr(jax.grad(conv, argnums=(0, 1)))(x, w)
  assert speed.matmul_flops(both) == 3 * forward


def test_ngram_lm_step_is_three_forward_matmul_passes():
  """The real step (loss, grad, Adam) of the 4-gram LM: the embedding is a gather, so the FLOPs
  are the two dense layers forward, and each one's weight and input gradients."""
  case = speed.make_case("ngram_lm", speed.QUICK)
  step, state, data, idx, keys = speed.step_inputs(case, speed.QUICK)
  b, d, p = case.cfg.batch_size, case.cfg.embed_dims[0], case.cfg.hidden_sizes[0]
  forward = 2 * b * (3 * d * p + p * speed.NGRAM_VOCAB)
  assert speed.matmul_flops(jax.make_jaxpr(step)(state, data, idx[0], keys[0])) == 3 * forward


def test_unknown_benchmark_is_a_one_line_error(capsys):
  assert speed.main(["--only=cnn_mnist,resnet"]) == 2
  assert capsys.readouterr().err.startswith("error: unknown benchmark(s) resnet;")


def _check_side(row, flops, floor_ms):
  assert 0 < row["ms_min"] <= row["ms_iqr"][0] <= row["ms"] <= row["ms_iqr"][1]
  assert row["steps_timed"] >= 2
  assert row["gflops_per_s"] == pytest.approx(flops / row["ms"] / 1e6)
  # (A --quick peak is one small matmul on a shared machine: no upper bound is safe.)
  assert 0 < row["fraction_of_peak"] < math.inf
  assert row["peak_rss_growth_bytes"] >= 0
  assert row["minor_faults_per_step"] >= 0 and row["minor_faults_per_step_max"] >= 0
  assert row["over_floor"] == pytest.approx(row["ms"] / floor_ms)


def test_quick_run_writes_every_column(tmp_path):
  names = ("cnn_mnist", "gru_activity")
  out = tmp_path / "speed.json"
  proc = run_speed("--quick", f"--only={','.join(names)}", "--epochs=gru_activity",
                   f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  r = json.loads(out.read_text())
  assert set(r) == {*names, "machine", "epoch_throughput", "bar"}
  m = r["machine"]
  assert m["cpu_count"] >= 1 and m["jax"] == jax.__version__ and m["jax_matmul_gflops"] > 0
  assert (m["torch"] is not None) == HAVE_TORCH
  assert (m["torch_matmul_gflops"] is not None) == HAVE_TORCH
  assert m["threads"] == 0 and m["timing"].startswith("wall clock")
  assert m["cpu_model"] and isinstance(m["cpu_vector_extensions"], list)
  # Each side runs with its experiment's XLA:CPU pool: the GRU's one thread, the CNN's one per
  # CPU, so the two ran in separate processes (the client is process-wide), merged here.
  narrow = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1
  assert r["gru_activity"]["jaxml"]["cpu_threads"] == (1 if narrow else None)
  assert r["cnn_mnist"]["jaxml"]["cpu_threads"] is None and m["processes"] == 2
  # ... and with its experiment's convolution library (the CNNs' Eigen, compiled per program).
  assert r["cnn_mnist"]["jaxml"]["cpu_conv"] == "eigen"
  assert r["gru_activity"]["jaxml"]["cpu_conv"] == "xla"
  for name in names:
    b = r[name]
    assert b["flops"] > 0 and b["xla_flops"] > 0 and b["batch"] >= 1
    j = b["jaxml"]
    assert b["floor_ms"] == pytest.approx(b["flops"] / max(
        m["jax_matmul_gflops"], m["torch_matmul_gflops"] or 0) / 1e6)
    _check_side(j, b["flops"], b["floor_ms"])
    assert j["compile_s"] > 0 and j["xla_argument_bytes"] > 0 and j["xla_temp_bytes"] >= 0
    if HAVE_TORCH:
      _check_side(b["torch"], b["flops"], b["floor_ms"])
      assert b["torch_over_jaxml"] == pytest.approx(b["torch"]["ms"] / j["ms"])
      assert b["torch_over_jaxml_best"] == pytest.approx(b["torch"]["ms_min"] / j["ms_min"])
    else:
      assert b["torch"] is None and b["torch_over_jaxml"] is None
      assert b["torch_over_jaxml_best"] is None
  # The recurrent step's matmuls run once per time step, which XLA's cost analysis misses.
  assert r["gru_activity"]["flops"] > r["gru_activity"]["xla_flops"]
  ep = r["epoch_throughput"]
  assert set(ep) == {"gru_activity"}
  for e in ep.values():
    for mode in ("scan", "loop"):
      assert e[mode]["examples_per_s"] == pytest.approx(
          e["steps"] * e["batch"] / e[mode]["s_per_epoch"])
      assert e[mode]["compile_s"] > 0 and e[mode]["epochs_timed"] >= 1
  assert {(b["benchmark"], b["measure"], b["need"]) for b in r["bar"]} == {
      ("cnn_mnist", "torch_over_jaxml", 1.0), ("gru_activity", "torch_over_jaxml", 1.5)}
  table = out.with_suffix(".md").read_text()
  assert "| floor ms (FLOPs/peak) |" in table and "minor faults/step" in table
  assert all(f"| {name} |" in table for name in names) and "| whole epoch |" in table
  assert table in proc.stdout


def test_without_torch_its_columns_are_null(tmp_path):
  out = tmp_path / "speed.json"
  proc = run_speed("--quick", "--torch=off", "--only=ngram_lm", "--epochs=", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  r = json.loads(out.read_text())
  assert r["machine"]["torch"] is None and r["machine"]["torch_matmul_gflops"] is None
  assert r["ngram_lm"]["torch"] is None and r["ngram_lm"]["torch_over_jaxml"] is None
  assert r["ngram_lm"]["torch_over_jaxml_best"] is None
  assert r["ngram_lm"]["jaxml"]["ms"] > 0 and r["epoch_throughput"] == {}
  assert "| ngram_lm |" in out.with_suffix(".md").read_text()


def test_threads_1_pins_one_core_and_times_cpu_time(tmp_path):
  """--threads=1: the process pinned to one core before jax starts, XLA single-threaded,
  steps timed by CPU time; the JSON says so."""
  out = tmp_path / "speed.json"
  proc = run_speed("--quick", "--threads=1", "--torch=off", "--only=ngram_lm", "--epochs=",
                   f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  m = json.loads(out.read_text())["machine"]
  assert m["threads"] == 1 and m["pinned_cpu"] in os.sched_getaffinity(0)
  assert m["timing"].startswith("process CPU time")
  assert "--xla_cpu_multi_thread_eigen=false" in m["xla_flags"]
  assert "timed by process CPU time" in out.with_suffix(".md").read_text()


def test_threads_1_in_process_is_a_one_line_error(capsys):
  """In-process the jax thread pools may already exist: pinning then would not hold."""
  assert speed.main(["--threads=1", "--only=ngram_lm"]) == 2
  assert capsys.readouterr().err.startswith("error: --threads=1 must pin")


def test_batch_scale_multiplies_every_batch_and_the_resident_data():
  import dataclasses
  scaled = dataclasses.replace(speed.QUICK, batch_scale=3)
  for name in ("gru_activity", "ngram_lm"):
    one, three = speed.make_case(name, speed.QUICK), speed.make_case(name, scaled)
    assert three.cfg.batch_size == 3 * one.cfg.batch_size
    assert len(three.data["y"]) == speed.QUICK.data_batches * three.cfg.batch_size


def test_batch_scale_below_one_is_a_one_line_error(capsys):
  assert speed.main(["--batch_scale=0"]) == 2
  assert capsys.readouterr().err.startswith("error: --batch_scale=0;")
