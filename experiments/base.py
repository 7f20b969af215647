"""What an experiment is, and what the runner hands it."""

import dataclasses
from pathlib import Path
from typing import Any, Callable

from jaxml.seeds import mean_std_text


@dataclasses.dataclass(frozen=True)
class RunContext:
  """Everything about a run that is not the config."""
  workdir: Path           # results.json, PNGs and checkpoints/ go here
  data_path: str | None   # --data_path, or None for the embedded default
  seed: int               # --seed: initialisation, validation split, batch order, dropout
  restart: bool = False   # --restart: ignore (and replace) an existing checkpoint
  log: Callable[[str], None] = print
  seeds: int = 1          # --seeds: train seeds seed, seed + 1, ..., seed + seeds - 1 together
  # Sizes XLA:CPU's pool for steps of this many rows (--cpu_threads=auto and the experiment's
  # Experiment.cpu_threads; else it does nothing). An experiment whose batch depends on the data
  # calls it once the config is resolved, before its first jax computation.
  cpu_pool: Callable[[int], Any] = lambda rows: None

  def per_seed(self, make: Callable[[int], Any]):
    """make(seed) for the run's seed; with --seeds=N > 1 the list [make(seed + r) for r < N]
    (what jaxml.pipeline.train_classifier takes as splits and keys of N replicas)."""
    if self.seeds == 1:
      return make(self.seed)
    return [make(self.seed + r) for r in range(self.seeds)]

  @property
  def seed_signature(self) -> dict:
    """The seeds' part of a checkpoint's run signature ({"seed"} alone for one seed, as before)."""
    return {"seed": self.seed, **({"seeds": self.seeds} if self.seeds > 1 else {})}


@dataclasses.dataclass(frozen=True)
class DataChoice:
  """What `python -m experiments.report --data_root=DIR` passes an experiment."""
  path: str | None            # --data_path for the run (None: embedded)
  missing: str | None = None  # set when the experiment cannot run: the "needs data" text


def first_existing(data_root: Path | None, *relative: str, missing: str | None = None
                   ) -> DataChoice:
  """The first of DATA_ROOT/relative... that exists (a glob pattern takes its first match by
  name), else the embedded default, or the `missing` text when there is none."""
  for rel in relative if data_root is not None else ():
    matches = sorted(data_root.glob(rel)) if any(c in rel for c in "*?[") else [data_root / rel]
    if matches and matches[0].exists():
      return DataChoice(str(matches[0]))
  return DataChoice(None, missing)


def test_accuracy_headline(results: dict) -> str:
  """The report's default headline: test accuracy, and the epochs it took."""
  m = results["metrics"]
  if "metrics_summary" in results:  # --seeds=N: mean ± std over the seeds
    s = results["metrics_summary"]
    epochs = (f" (best epoch {s['best_epoch']['mean']:.1f} of {s['epochs_run']['mean']:.1f} "
              f"on average)" if "best_epoch" in s and "epochs_run" in s else "")
    return (f"{mean_std_text(s['test_accuracy'])} (mean ± std over "
            f"{s['test_accuracy']['n']} seeds){epochs}")
  epochs = (f" (epoch {m['best_epoch']} of {m['epochs_run']})"
            if "best_epoch" in m and "epochs_run" in m else "")
  return f"{m['test_accuracy']:.4f}{epochs}"


@dataclasses.dataclass(frozen=True)
class ReportInfo:
  """What experiments/report.py shows of an experiment, kept with the experiment itself."""
  project: str | None = None     # the seed's text it reproduces (../shared/seeds/NAME); None:
                                 # listed under "other experiments"
  seed_figure: str = "-"         # the seed's own figure, quoted from its text
  differences: str = "see README.md."  # what differs from the seed's setting
  no_seed_preset: str = ""       # why there is no seed preset, if there is none
  key_figures: tuple = ("confusion_test.png",)  # the picture shown under the table (first found)
  data: Callable[[Path | None], DataChoice] = lambda root: DataChoice(None)  # data under --data_root
  headline: Callable[[dict], str] = test_accuracy_headline  # results.json -> the table cell
  extra_table: Callable[[dict], list] | None = None  # {preset: results or None} -> markdown lines
  typical_s: tuple = (30, 30, 30, 30)  # seconds (full seed, full default, quick seed, quick
                                       # default), only to start the longest runs first


@dataclasses.dataclass(frozen=True)
class Experiment:
  """An `--exp` name bound to its presets and its run function.

  `run(cfg, ctx)` validates inputs (raising UserError), trains, writes its pictures into
  ctx.workdir, and returns {"metrics", "timing", ...} for results.json; the runner adds
  "exp" and "config" and writes the file.
  """
  name: str
  description: str
  presets: dict[str, Any]                 # "default" (our best) and "seed" (the seed's setting)
  tiny: Callable[[Any], Any]              # shrinks a config for smoke tests (--tiny)
  validate: Callable[[Any], None]         # raises UserError for unusable config values
  run: Callable[[Any, RunContext], dict]
  report: ReportInfo = ReportInfo()       # how experiments/report.py shows it
  seeds: bool = False                     # takes --seeds=N > 1 (gradient-trained through
                                          # jaxml.train.fit: N replicas in one program)
  # --cpu_threads=auto: rows of a step (batch x ensemble members x seeds) -> XLA:CPU pool size
  # (jaxml.runtime.cpu_client_threads; None: one thread per CPU). None: always one per CPU.
  cpu_threads: Callable[[int], int | None] | None = None

  def size_pool(self, rows: int):
    """Sizes XLA:CPU's pool by `cpu_threads` for steps of `rows` rows (--cpu_threads=auto)."""
    from jaxml import runtime
    return runtime.cpu_client_threads(self.cpu_threads(rows) if self.cpu_threads else None)
