"""Runs one experiment under several config overrides and tabulates validation and test results.

    python benchmarks/sweep.py --exp=gru_imdb --data_path=../shared/data/imdb/imdb_500w_5k.npz \
        "" "hidden=64" "hidden=64 readout=max"  [--seeds=5] [--seed=0] [--out=runs/sweep]

Each positional argument is one variant: space-separated KEY=VALUE config overrides ("" = the
preset as it is). Every variant is one fresh `python -m experiments.run --seeds=N` in its own
workdir, which trains seeds --seed .. --seed + N - 1 together (one vmapped program: about the
cost of one run for the small models), so the numbers are exactly what a user gets. Choose on
the validation columns; the test column is reported, never tuned on. Prints a markdown table of
mean ± std over the seeds (results.json's metrics_summary; the std is 0 for --seeds=1).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

COLUMNS = ("val_accuracy", "val_loss", "test_accuracy", "best_epoch")


def run_variant(args, overrides: str) -> dict:
  """{column: (mean, std)} plus s_per_epoch and wall_s of one variant's multi-seed run."""
  name = overrides.replace(" ", "_").replace("=", "-") or "preset"
  workdir = Path(args.out) / args.exp / f"{name}_seeds{args.seed}-{args.seed + args.seeds - 1}"
  cmd = [sys.executable, "-m", "experiments.run", f"--exp={args.exp}", f"--workdir={workdir}",
         f"--seed={args.seed}", f"--seeds={args.seeds}", f"--preset={args.preset}", "--restart"]
  cmd += [f"--data_path={args.data_path}"] if args.data_path else []
  cmd += [f"--config.{kv}" for kv in overrides.split()]
  t = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True)
  if proc.returncode:
    raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
  r = json.loads((workdir / "results.json").read_text())
  summary = r.get("metrics_summary")
  row = {c: ((summary[c]["mean"], summary[c]["std"]) if summary else (r["metrics"][c], 0.0))
         for c in COLUMNS}
  return dict(row, s_per_epoch=r["timing"]["seconds_per_epoch"],
              wall_s=time.perf_counter() - t)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--exp", required=True)
  p.add_argument("--data_path", default=None)
  p.add_argument("--preset", default="default")
  p.add_argument("--seeds", type=int, default=5, help="seeds per variant, trained together")
  p.add_argument("--seed", type=int, default=0, help="the first seed")
  p.add_argument("--out", default="runs/sweep")
  p.add_argument("variants", nargs="*", default=[""])
  args = p.parse_args()
  if args.seeds < 1:
    p.error(f"--seeds={args.seeds}; pass a positive number of seeds")
  print(f"{args.exp} ({args.preset} preset), seeds {args.seed}..{args.seed + args.seeds - 1}, "
        f"mean ± std\n")
  print("| overrides | " + " | ".join(COLUMNS) + " | s_per_epoch | wall_s |")
  print("|---" * (len(COLUMNS) + 3) + "|")
  for v in args.variants:
    row = run_variant(args, v)
    cells = [f"{row[c][0]:.4g} ± {row[c][1]:.2g}" for c in COLUMNS]
    cells += [f"{row['s_per_epoch']:.3g}", f"{row['wall_s']:.0f}"]
    print(f"| {v or '(preset)'} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
  main()
