"""Command-line entry point: parse flags, build the config, run one experiment, write results.

    python -m experiments.run --exp=gru_activity [--workdir=DIR] [--data_path=PATH] [--seed=N]
        [--seeds=N] [--preset=default|seed] [--tiny] [--restart]
        [--compile_cache=workdir|DIR|none] [--cpu_threads=auto|all|N] [--imports=MODULE,...]
        [--config.KEY=VALUE ...]

Writes WORKDIR/results.json = {"exp", "metrics", "config", "timing", ...} and the experiment's
PNGs and checkpoints/. With --seeds=N > 1 (the gradient-trained experiments) seeds --seed ..
--seed + N - 1 train together as one vmapped program, each as its single run (to float rounding):
"metrics" is then the mean over seeds, "metrics_per_seed" the N runs' metrics and
"metrics_summary" {name: {mean, std, ci95, n}} (jaxml/seeds.py). A user's mistake ends with
one `error: ...` line and exit status 2; a diverged run with exit status 3 (with --seeds: when
every seed diverged; a seed that diverges alone stops, "diverged: ..." its stop reason).
"""

import platform
import sys
import time
from pathlib import Path

from absl import app, flags, logging

from experiments.base import RunContext
from experiments.registry import EXPERIMENTS
from jaxml import config as config_lib
from jaxml import interrupt, runtime
from jaxml.errors import DivergenceError, UserError
from jaxml.io import write_json
from jaxml.seeds import mean_std_text

FLAGS = flags.FLAGS
flags.DEFINE_string("exp", None, "experiment to run: " + "; ".join(
    f"{name} ({e.description})" for name, e in EXPERIMENTS.items()))
flags.DEFINE_string("workdir", None, "output directory (default runs/<exp>)")
flags.DEFINE_string("data_path", None, "data file or directory (default: embedded data)")
flags.DEFINE_integer("seed", 0, "PRNG seed: initialisation, validation split, batch order")
flags.DEFINE_integer("seeds", 1, "train this many seeds (--seed, --seed + 1, ...) together, as "
                     "one vmapped program; results.json gets metrics_per_seed and mean/std/95% "
                     "interval per metric (gradient-trained experiments only)")
flags.DEFINE_string("preset", "default", "config preset: 'default' (our best) or 'seed'")
flags.DEFINE_bool("tiny", False, "shrink the config for a seconds-long smoke run")
flags.DEFINE_bool("restart", False, "ignore an existing checkpoint in the workdir")
flags.DEFINE_string("imports", "", "comma-separated Python modules to import first, e.g. one "
                    "that registers a cell in jaxml.recurrent.CELLS (README 'Modifying a model')")
flags.DEFINE_string("cpu_threads", "auto", "XLA:CPU worker threads: 'auto' (the experiment's "
                    "choice: 1 for the recurrent ones while a step is at most 128 rows, since "
                    "their steps are loops of small kernels; one per CPU otherwise), 'all' (one per CPU), or a positive count")
flags.DEFINE_string("compile_cache", "workdir", "persistent XLA compilation cache: 'workdir' "
                    "(WORKDIR/cache/xla), a directory to share between runs, or 'none'")

CONFIG_PREFIX = "--config."


def split_config_args(argv: list[str]) -> tuple[list[str], dict[str, str]]:
  """Separates `--config.KEY=VALUE` arguments (returned as a dict) from the absl flags."""
  rest, overrides = [], {}
  for arg in argv:
    if arg.startswith(CONFIG_PREFIX):
      key, eq, value = arg[len(CONFIG_PREFIX):].partition("=")
      if not eq or not key:
        raise UserError(f"malformed override {arg!r}; write --config.KEY=VALUE")
      overrides[key] = value
    else:
      rest.append(arg)
  return rest, overrides


def build(exp_name: str | None, preset: str, tiny: bool, overrides: dict[str, str]):
  """(Experiment, config) for the flags, or UserError naming the valid choices."""
  if exp_name not in EXPERIMENTS:
    what = "missing --exp" if exp_name is None else f"unknown experiment {exp_name!r}"
    raise UserError(f"{what}; valid: {', '.join(EXPERIMENTS)}")
  exp = EXPERIMENTS[exp_name]
  if preset not in exp.presets:
    raise UserError(f"unknown preset {preset!r} for {exp_name}; valid: {', '.join(exp.presets)}")
  cfg = exp.presets[preset]
  if tiny:
    cfg = exp.tiny(cfg)
  cfg = config_lib.apply_overrides(cfg, overrides)
  exp.validate(cfg)
  return exp, cfg


def execute(argv_flags, overrides: dict[str, str]) -> int:
  """Runs the experiment the parsed flags describe; returns the exit status."""
  start = time.perf_counter()
  config_lib.import_modules(argv_flags.imports)
  exp, cfg = build(argv_flags.exp, argv_flags.preset, argv_flags.tiny, overrides)
  check_seeds(exp, argv_flags.seeds)
  pool = parse_cpu_threads(argv_flags.cpu_threads)
  if argv_flags.data_path is not None and not argv_flags.data_path.strip():
    raise UserError("--data_path is empty; pass a path or omit the flag for the embedded data")
  workdir = Path(argv_flags.workdir or Path("runs") / exp.name)
  if workdir.exists() and not workdir.is_dir():
    raise UserError(f"--workdir {workdir} is a file; pass a directory")
  _use_compile_cache(argv_flags.compile_cache, workdir)
  if pool == "auto":  # sized by the experiment once it knows its batch
    cpu_pool = exp.size_pool
  else:
    runtime.cpu_client_threads(pool)
    cpu_pool = lambda rows: None
  log = lambda msg: print(msg, flush=True)
  log(f"{exp.name} ({argv_flags.preset}{', tiny' if argv_flags.tiny else ''}) -> {workdir}")
  ctx = RunContext(workdir=workdir, data_path=argv_flags.data_path, seed=argv_flags.seed,
                   restart=argv_flags.restart, log=log, seeds=argv_flags.seeds,
                   cpu_pool=cpu_pool)
  out = exp.run(cfg, ctx)
  import jax  # after the run: the backend is initialised by then
  results = {
      "exp": exp.name,
      "metrics": out.pop("metrics"),
      # the config that ran: an experiment that resolves data-dependent defaults (the activity
      # experiments' batch_size=0) returns it with those values filled in
      "config": out.pop("config", None) or config_lib.to_dict(cfg),
      "timing": dict(out.pop("timing"), total_s=time.perf_counter() - start),
      "run": {"preset": argv_flags.preset, "tiny": argv_flags.tiny, "seed": argv_flags.seed,
              **({"seeds": list(range(argv_flags.seed, argv_flags.seed + argv_flags.seeds))}
                 if argv_flags.seeds > 1 else {}),
              "data_path": argv_flags.data_path, "command": " ".join(sys.argv),
              "cpu_threads": runtime.cpu_pool_size(),  # XLA:CPU pool size set; None: default
              "jax": jax.__version__, "backend": jax.default_backend(),
              "devices": [str(d) for d in jax.devices()], "python": platform.python_version()},
      **out,
  }
  write_json(workdir / "results.json", results)
  m, summary = results["metrics"], results.get("metrics_summary", {})
  log(f"wrote {workdir / 'results.json'}" + (
      f": test accuracy {mean_std_text(summary['test_accuracy'])} (mean ± std over "
      f"{argv_flags.seeds} seeds)" if "test_accuracy" in summary else
      f": test accuracy {m['test_accuracy']:.4f}" if "test_accuracy" in m else ""))
  return 0


def parse_cpu_threads(value: str) -> int | str | None:
  """--cpu_threads (jaxml.runtime.parse_pool), a bad value as a UserError."""
  try:
    return runtime.parse_pool(value)
  except ValueError as e:
    raise UserError(str(e)) from None


def check_seeds(exp, seeds: int) -> None:
  """UserError unless --seeds is a positive count the experiment can train together."""
  if seeds < 1:
    raise UserError(f"--seeds={seeds}; pass a positive number of seeds (1 = a single run)")
  if seeds > 1 and not exp.seeds:
    able = ", ".join(name for name, e in EXPERIMENTS.items() if e.seeds)
    raise UserError(f"--seeds={seeds} is for the gradient-trained experiments ({able}); "
                    f"{exp.name} trains otherwise, so run it once per --seed instead")


def _use_compile_cache(setting: str, workdir: Path) -> None:
  """Keeps compiled XLA programs on disk, so a rerun skips compilation (README has the
  measured saving). Kept in the workdir by default so nothing is written elsewhere; entries are
  keyed by program, jax version and flags."""
  if setting == "none":
    return
  import jax
  path = workdir / "cache" / "xla" if setting == "workdir" else Path(setting).expanduser()
  jax.config.update("jax_compilation_cache_dir", str(path.absolute()))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # small jits add up
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _parse(argv: list[str]):
  """absl flags parser that also takes --config.KEY=VALUE and reports errors in one line."""
  try:
    rest, overrides = split_config_args(argv)
    positional = FLAGS(rest)[1:]
  except flags.Error as e:
    print(f"error: {e}; see --helpshort", file=sys.stderr)
    sys.exit(2)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if positional:
    print(f"error: unexpected argument(s) {' '.join(positional)}; config overrides are "
          f"written --config.KEY=VALUE", file=sys.stderr)
    sys.exit(2)
  return overrides


def main(overrides) -> None:
  logging.set_verbosity(logging.WARNING)  # orbax and jax log every checkpoint/backend at INFO
  interrupt.install()  # SIGTERM/Ctrl-C: checkpoint where training stands, then exit 143/130
  runtime.keep_freed_memory()  # faster XLA:CPU steps (jaxml/runtime.py says why)
  try:
    status = execute(FLAGS, overrides)
  except (UserError, DivergenceError, interrupt.Interrupted) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(e.exit_status)
  except KeyboardInterrupt:  # only if a library replaced our SIGINT handler
    print("error: interrupted; rerun the same command to resume from the last checkpoint",
          file=sys.stderr, flush=True)
    sys.exit(130)
  sys.exit(status)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
