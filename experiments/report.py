"""One command reproduces the seeds' results tables: runs every experiment, writes REPORT.md.

    python -m experiments.report [--data_root=DIR] [--quick] [--out=DIR] [--only=EXP,...]
        [--presets=seed,default] [--jobs=N] [--resume] [--seed=N] [--seeds=N]
        [--seeds_max_s=S] [--max_seed_steps=N]

Every experiment in experiments/registry.py runs with `--preset=seed` and with the default, each
as its own `python -m experiments.run` subprocess in OUT/runs/<exp>-<preset>/ (log beside it in
OUT/runs/<exp>-<preset>.log). `--quick` adds `--tiny` to every run and runs only the default
preset unless --presets says otherwise (a smoke test of the whole pipeline in 2-3 minutes; its
numbers mean nothing); it writes to reports/quick/ unless --out is given.
The report, OUT/REPORT.md, has one table per seed project: the data used, the seed's own figure,
our seed-preset and default figures, run times and relative links to every PNG a run wrote;
a failed run is a "failed: <its error line>" cell, an experiment without its data a "needs data:"
row. Runs of the gradient-trained experiments that are cheap (typically <= --seeds_max_s seconds)
train --seeds=5 seeds together (one vmapped program; jaxml/seeds.py) and their
cells read "mean ± std (over 5 seeds)"; --seeds=1 gives single-seed cells everywhere.
Exit status 0 when every run finished, 1 when one failed (REPORT.md is written either way);
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

from experiments.base import DataChoice
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
  flags.DEFINE_integer("seeds", None, "--seeds for the runs that take it and are cheap (see "
                       "--seeds_max_s): their cells show mean ± std over the seeds (default 5; "
                       "with --quick 1, to keep CI's time)")
  flags.DEFINE_float("seeds_max_s", 60.0, "a run gets --seeds only if its experiment's typical "
                     "single-seed time (ReportInfo.typical_s) is at most this many seconds")
  flags.DEFINE_integer("max_seed_steps", 0, "cap on a seed preset's max_steps; 0 = none (the "
                       "seed's 20000 SGD steps of the MNIST CNNs took 17.5 + 3 min of a 36-min "
                       "report on 2 CPU cores; 4000 gives a ~20-min report, marked as capped)")


# --- what the seeds report, and what we run ---------------------------------------------------

# The seed projects, in report order: their text under ../shared/seeds/ and a title. Which
# experiments each has comes from the experiments' own definitions (`Experiment.report.project`);
# the rest are listed under "other experiments".
PROJECTS = {
    "000_0ca520ce5284708a.txt": "Seed 000: MNIST CNN, classical classifiers, faces, IMDB sentiment",
    "003_9ba3fd9f2b4c427d.txt": "Seed 003: sparse autoencoder, neural 4-gram LM, recurrent "
                                "activity recognition",
}


def find_data(exp: str, data_root: Path | None) -> DataChoice:
  """The --data_path an experiment gets under the documented DATA_ROOT layout (its own rule)."""
  from experiments.registry import EXPERIMENTS
  return EXPERIMENTS[exp].report.data(data_root)


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


def plan(names, data: dict, *, quick: bool, seed: int, max_seed_steps: int, runs: Path,
         presets=("seed", "default"), seeds: int = 1, seeds_max_s: float = 60.0):
  """The subprocess runs, longest first: one per (experiment, preset in `presets`) whose data
  is present. `seeds` > 1: runs of experiments that take --seeds and typically take at most
  `seeds_max_s` seconds train that many seeds together (their cells: mean ± std)."""
  from experiments.registry import EXPERIMENTS
  typical = lambda exp, preset: EXPERIMENTS[exp].report.typical_s[2 * quick + (preset != "seed")]
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
      if seeds > 1 and EXPERIMENTS[name].seeds and typical(name, preset) <= seeds_max_s:
        args.append(f"--seeds={seeds}")
      if quick:
        args.append("--tiny")
      elif preset == "seed" and max_seed_steps and steps > max_seed_steps:
        args.append(f"--config.max_steps={max_seed_steps}")
        note = (f"capped at {max_seed_steps} of the seed's {steps} steps "
                f"(--max_seed_steps=0 runs all)")
      workdir = runs / f"{name}-{preset}"
      jobs.append(Job(name, preset, workdir, tuple(args + [f"--workdir={workdir}"]), note))
  return sorted(jobs, key=lambda j: typical(j.exp, j.preset), reverse=True)


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


def metric_text(exp: str, res: dict) -> str:
  """The headline figure of one run's results.json, as the experiment words it."""
  from experiments.registry import EXPERIMENTS
  return EXPERIMENTS[exp].report.headline(res)


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


def render(outcomes: dict, data: dict, names, *, report_dir: Path, header: list,
           quick: bool) -> str:
  from experiments.registry import EXPERIMENTS
  lines = ["# jaxml: the seeds' results, reproduced", ""] + header + [""]
  if quick:
    lines += ["**`--quick`: every run used its `--tiny` config (a few steps on a slice of the "
              "data). This checks the pipeline; the figures below are not results. Drop "
              "`--quick` for the real report.**", ""]
  shown = []
  groups = [(title, source, [e for e in names if EXPERIMENTS[e].report.project == source])
            for source, title in PROJECTS.items()]
  groups.append(("Other experiments (in no seed project)", None,
                 [e for e in names if EXPERIMENTS[e].report.project not in PROJECTS]))
  for title, source, exps in groups:
    shown += exps
    if not exps:
      continue
    lines += [f"## {title}", "",
              f"The seed's text: `../shared/seeds/{source}`." if source else
              "Experiments of ours that no seed project has; listed with the same columns.", "",
              "| experiment | data used | seed's figure | ours, `--preset=seed` | ours, default "
              "| run time (seed / default) | pictures and logs |",
              "|---|---|---|---|---|---|---|"]
    figures = []
    for exp in exps:
      info = EXPERIMENTS[exp].report
      presets = EXPERIMENTS[exp].presets
      outs = {p: outcomes.get((exp, p)) for p in ("seed", "default") if p in presets}
      if data[exp].missing:  # the whole instruction once, a short mark in the result cells
        lines.append(f"| {exp} | {cell(data[exp].missing)} | {cell(info.seed_figure)} "
                     f"| needs data (see data used) | needs data (see data used) | - | - |")
        continue
      name = exp if "seed" in presets else f"{exp} (one preset: default)"
      seed_cell = (outcome_text(exp, outs["seed"]) if "seed" in presets else
                   f"no seed preset: {info.no_seed_preset or 'only the default exists'}")
      used = (data_text(outs.get("default")) or data_text(outs.get("seed"))
              or f"{data[exp].path or 'embedded default'} (no run finished)")
      times = " / ".join(seconds_text(outs[p].seconds) if outs.get(p) else "-"
                         for p in ("seed", "default"))
      lines.append(f"| {name} | {cell(used)} | {cell(info.seed_figure)} | "
                   f"{cell(seed_cell)} | {cell(outcome_text(exp, outs.get('default')))} | "
                   f"{times} | {run_links(outs, report_dir)} |")
      if info.extra_table is not None:
        figures.append((f"{exp}: details",
                        info.extra_table({p: o.results if o else None for p, o in outs.items()})))
      for preset in ("default", "seed"):
        wanted = info.key_figures
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
    lines.append(f"- **{exp}** ({where}): {EXPERIMENTS[exp].report.differences}{this}")
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
  if argv_flags.seeds is not None and argv_flags.seeds < 1:
    raise UserError(f"--seeds must be >= 1 (1: one seed per run), got {argv_flags.seeds}")
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
  seeds = argv_flags.seeds if argv_flags.seeds is not None else (1 if argv_flags.quick else 5)
  todo = plan(names, data, quick=argv_flags.quick, seed=argv_flags.seed,
              max_seed_steps=argv_flags.max_seed_steps, runs=runs, presets=presets,
              seeds=seeds, seeds_max_s=argv_flags.seeds_max_s)
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
      f"python {platform.python_version()}, {runtime}; --seed={argv_flags.seed}"
      + (f"; runs marked \"over N seeds\" trained seeds {argv_flags.seed}.."
         f"{argv_flags.seed + seeds - 1} together (--seeds={seeds}, experiments typically under "
         f"{argv_flags.seeds_max_s:g} s) and show mean ± std" if seeds > 1 else ""),
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
