"""experiments.report end to end (--quick on a subset), its data layout and its bad-flag paths."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import report
from experiments.registry import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
SHARED_IMDB = ROOT.parent / "shared" / "data" / "imdb" / "imdb_500w_5k.npz"


def run_report(*args):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "experiments.report", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


def table_rows(md: str) -> dict:
  """{experiment: [cells]} of every results-table row in REPORT.md."""
  rows = {}
  for line in md.splitlines():
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    if len(cells) == 7 and cells[0] not in ("experiment", "---"):
      rows[cells[0].split(" ")[0]] = cells
  return rows


def assert_links_exist(md: str, report_dir: Path):
  links = re.findall(r"\]\(([^)]+)\)", md)
  assert links
  for link in links:
    assert not link.startswith("/"), link  # relative, so the report directory can move
    assert (report_dir / link).is_file(), link


# The report's machinery end to end on three experiments that cover its cases (embedded data,
# data found under --data_root, "needs data"); every experiment's own tiny run is tested in
# test_run_cli.py and its report record by test_every_experiment_says_how_the_report_shows_it,
# so the whole --quick report (all 16, ~4 minutes of both cores) is not rerun here.
QUICK = ("gru_activity", "lstm_imdb", "face_recognition")


def test_quick_report_fills_every_row(tmp_path):
  """`--quick --only=...`, as a user runs it: each listed experiment's tiny default run really
  runs; IMDB is found under --data_root when the shared subset is here (else its row says
  "needs data"), and face_recognition (never has data here) is a "needs data" row."""
  root = tmp_path / "data"
  (root / "imdb").mkdir(parents=True)
  if SHARED_IMDB.exists():
    (root / "imdb" / SHARED_IMDB.name).symlink_to(SHARED_IMDB)
  out = tmp_path / "report"
  proc = run_report("--quick", f"--only={','.join(QUICK)}", f"--data_root={root}",
                    f"--out={out}")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  runnable = [e for e in QUICK if e != "face_recognition" and
              (SHARED_IMDB.exists() or not e.endswith("_imdb"))]
  progress = [ln for ln in proc.stdout.splitlines() if re.match(r"\[ *\d+/\d+ +\d+:\d\d\] ", ln)]
  assert len(progress) == len(runnable), proc.stdout

  md = (out / "REPORT.md").read_text()
  assert "--quick" in md and "git commit:" in md and "CPU cores" in md and "jax " in md
  rows = table_rows(md)
  assert set(rows) == set(QUICK), rows
  for exp, cells in rows.items():
    assert all(cells), (exp, cells)  # no empty cell anywhere
    assert not any(c.startswith("failed:") for c in cells[3:5]), (exp, cells)
  for exp in runnable:  # a result in the default column, not a placeholder
    assert not rows[exp][4].startswith(("not run", "needs data")), (exp, rows[exp])
  gru = rows["gru_activity"]
  assert gru[1].startswith("UEA BasicMotions") and gru[2].startswith("0.81")
  assert re.match(r"0\.\d{4} \(epoch 2 of 2\)", gru[4]), gru
  assert gru[3] == "not run (this preset was left out by --presets)"
  assert "needs data: identity-labelled faces" in rows["face_recognition"][1]
  assert rows["face_recognition"][3] == rows["face_recognition"][4] == \
      "needs data (see data used)"
  if SHARED_IMDB.exists():
    assert "imdb_500w" in rows["lstm_imdb"][1] and re.match(r"0\.\d{4} ", rows["lstm_imdb"][4])
  else:
    assert rows["lstm_imdb"][1].startswith("needs data: an IMDB file")
  assert_links_exist(md, out)
  assert "runs/gru_activity-default/curves.png" in md and "runs/gru_activity-default.log" in md
  assert "## What differs from the seed's setting" in md and "BasicMotions" in md


def test_both_presets_fill_both_columns(tmp_path):
  out = tmp_path / "report"
  proc = run_report("--quick", "--presets=seed,default", "--only=gru_activity", f"--out={out}")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  md = (out / "REPORT.md").read_text()
  gru = table_rows(md)["gru_activity"]
  for result in gru[3:5]:
    assert re.match(r"0\.\d{4} \(epoch 2 of 2\)", result), gru
  assert "runs/gru_activity-seed/curves.png" in md
  assert_links_exist(md, out)


def test_a_failed_run_is_a_visible_cell(tmp_path):
  """--quick runs only the default preset: the seed cell says so; the run fails at once."""
  root = tmp_path / "data"
  root.mkdir()
  (root / "data3.h5").write_bytes(b"not an HDF5 file")  # the activity runs fail on it at once
  out = tmp_path / "report"
  proc = run_report("--quick", "--only=rnn_activity", f"--data_root={root}", f"--out={out}")
  assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert proc.stdout.count("FAILED: error:") == 1, proc.stdout
  row = table_rows((out / "REPORT.md").read_text())["rnn_activity"]
  assert row[3] == "not run (this preset was left out by --presets)"
  assert row[4].startswith("failed: error:") and "data3.h5" in row[4] and "(exit 2)" in row[4]
  assert "data3.h5 (no run finished)" in row[1]
  assert "[log](runs/rnn_activity-default.log)" in row[6]
  assert_links_exist((out / "REPORT.md").read_text(), out)


@pytest.mark.parametrize("args, pattern", [
    (["--only=gru_activity,nope"], r"unknown experiment\(s\) in --only: nope; valid: "),
    (["--data_root=/nonexistent/dir"], r"--data_root /nonexistent/dir is not a directory"),
    (["--jobs=0"], r"--jobs must be >= 1"),
    (["--presets=best"], r"--presets takes seed and/or default"),
    (["--no_such_flag"], r"no_such_flag"),
])
def test_bad_flags_end_with_one_error_line(args, pattern, tmp_path):
  proc = run_report(*args, f"--out={tmp_path / 'r'}")
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  assert "Traceback" not in proc.stderr
  errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
  assert len(errors) == 1 and re.search(pattern, errors[0]), proc.stderr
  assert not (tmp_path / "r").exists()  # nothing ran, nothing written


def test_data_root_layout(tmp_path):
  for d in ("mnist", "yalefaces", "imdb/aclImdb"):
    (tmp_path / d).mkdir(parents=True)
  for f in ("data1.h5", "data2.h5", "data3.h5", "imdb/b.npz", "imdb/a.npz"):
    (tmp_path / f).write_bytes(b"")
  path = lambda exp: report.find_data(exp, tmp_path).path
  assert path("gru_activity") == str(tmp_path / "data3.h5")
  assert path("classical_mnist") == path("cnn_mnist") == str(tmp_path / "mnist")
  assert path("sparse_ae_sweep") == str(tmp_path / "data1.h5")
  assert path("ngram_lm") == str(tmp_path / "data2.h5")
  assert path("lstm_imdb") == str(tmp_path / "imdb" / "a.npz")  # first *.npz by name
  (tmp_path / "imdb" / "imdb.npz").write_bytes(b"")
  assert path("gru_imdb") == str(tmp_path / "imdb" / "imdb.npz")  # Keras' name first
  assert path("face_recognition") == str(tmp_path / "yalefaces")
  assert path("face_detect") is None
  for exp in EXPERIMENTS:  # without a data root: embedded data, or a "needs data" note
    choice = report.find_data(exp, None)
    assert choice.path is None
    assert (choice.missing is not None) == (exp in ("lstm_imdb", "gru_imdb", "face_recognition"))


def test_every_experiment_says_how_the_report_shows_it():
  """What the report shows comes from each experiment's own `report` record."""
  for name, exp in EXPERIMENTS.items():
    assert exp.report.project in report.PROJECTS, name  # all of ours reproduce a seed project
    assert exp.report.differences != "see README.md.", name
    if "seed" not in exp.presets:
      assert exp.report.no_seed_preset, name


def test_an_experiment_outside_the_seeds_gets_a_row_from_its_registry_line(monkeypatch, tmp_path):
  """A new experiment needs one module and one registry line: with the default record it is
  listed under "Other experiments" (no edit of report.py)."""
  from experiments import registry
  from experiments.base import Experiment
  base = EXPERIMENTS["gru_activity"]
  new = Experiment(name="my_experiment", description="x", presets={"default": None},
                   tiny=base.tiny, validate=base.validate, run=base.run)
  monkeypatch.setitem(registry.EXPERIMENTS, "my_experiment", new)
  data = {"my_experiment": report.find_data("my_experiment", None)}
  md = report.render({}, data, ["my_experiment"], report_dir=tmp_path, header=[], quick=False)
  assert "## Other experiments" in md and "| my_experiment" in md


def test_seed_step_cap_is_visible(tmp_path):
  data = {e: report.find_data(e, None) for e in EXPERIMENTS}
  jobs = report.plan(["cnn_mnist", "gru_activity"], data, quick=False, seed=0,
                     max_seed_steps=3000, runs=tmp_path)
  capped = [j for j in jobs if "--config.max_steps=3000" in j.args]
  assert [(j.exp, j.preset) for j in capped] == [("cnn_mnist", "seed")]
  assert "capped at 3000 of the seed's 20000 steps" in capped[0].note
  uncapped = report.plan(["cnn_mnist"], data, quick=False, seed=0, max_seed_steps=0,
                         runs=tmp_path)
  assert not any("max_steps" in a for j in uncapped for a in j.args)
  quick = report.plan(["cnn_mnist"], data, quick=True, seed=0, max_seed_steps=3000, runs=tmp_path)
  assert all("--tiny" in j.args and not j.note for j in quick)
  order = report.plan(["rnn_activity", "face_detect"], data, quick=False, seed=0,
                      max_seed_steps=0, runs=tmp_path)
  assert [(j.exp, j.preset) for j in order][0] == ("face_detect", "default")  # longest first


def test_cheap_runs_train_five_seeds_and_their_cells_show_mean_and_std(tmp_path):
  from experiments.base import DataChoice
  from jaxml.seeds import summarize
  names = ["gru_activity", "cnn_mnist", "sparse_ae"]
  data = {n: DataChoice(None) for n in names}
  jobs = report.plan(names, data, quick=False, seed=0, max_seed_steps=0, runs=tmp_path, seeds=5)
  with_seeds = {(j.exp, j.preset) for j in jobs if "--seeds=5" in j.args}
  # gru_activity is cheap (typically < 60 s); cnn_mnist is not; sparse_ae is not gradient-trained
  # through the train loop's replicas.
  assert with_seeds == {("gru_activity", "seed"), ("gru_activity", "default")}
  per_seed = [{"test_accuracy": a, "best_epoch": e, "epochs_run": 10}
              for a, e in ((0.9, 4), (1.0, 6), (0.95, 5))]
  cell = report.metric_text("gru_activity", dict(summarize(per_seed)))
  assert cell == "0.9500 ± 0.0500 (mean ± std over 3 seeds) (best epoch 5.0 of 10.0 on average)"
  single = report.metric_text("gru_activity", {"metrics": per_seed[0]})
  assert single == "0.9000 (epoch 4 of 10)"
