"""Runs one experiment under several config overrides and tabulates validation and test results.

    python benchmarks/sweep.py --exp=gru_imdb --data_path=../shared/data/imdb/imdb_500w_5k.npz \
        "" "hidden=64" "hidden=64 readout=max"  [--seeds=0,1] [--out=runs/sweep]

Each positional argument is one variant: space-separated KEY=VALUE config overrides ("" = the
preset as it is). Every run is a fresh `python -m experiments.run` in its own workdir, so the
numbers are exactly what a user gets. Choose on the validation columns; the test column is
reported, never tuned on. Prints a markdown table (mean over seeds).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def run_variant(args, overrides: str, seed: int) -> dict:
  name = overrides.replace(" ", "_").replace("=", "-") or "preset"
  workdir = Path(args.out) / args.exp / f"{name}_seed{seed}"
  cmd = [sys.executable, "-m", "experiments.run", f"--exp={args.exp}", f"--workdir={workdir}",
         f"--seed={seed}", f"--preset={args.preset}", "--restart"]
  cmd += [f"--data_path={args.data_path}"] if args.data_path else []
  cmd += [f"--config.{kv}" for kv in overrides.split()]
  t = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True)
  if proc.returncode:
    raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
  r = json.loads((workdir / "results.json").read_text())
  m = r["metrics"]
  return {"val_accuracy": m["val_accuracy"], "val_loss": m["val_loss"],
          "test_accuracy": m["test_accuracy"], "best_epoch": m["best_epoch"],
          "s_per_epoch": float(np.mean(r["timing"]["seconds_per_epoch"])),
          "wall_s": time.perf_counter() - t}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--exp", required=True)
  p.add_argument("--data_path", default=None)
  p.add_argument("--preset", default="default")
  p.add_argument("--seeds", default="0")
  p.add_argument("--out", default="runs/sweep")
  p.add_argument("variants", nargs="*", default=[""])
  args = p.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  cols = ("val_accuracy", "val_loss", "test_accuracy", "best_epoch", "s_per_epoch", "wall_s")
  print(f"{args.exp} ({args.preset} preset), seeds {seeds}\n")
  print("| overrides | " + " | ".join(cols) + " |")
  print("|---" * (len(cols) + 1) + "|")
  for v in args.variants:
    rows = [run_variant(args, v, s) for s in seeds]
    means = [np.mean([r[c] for r in rows]) for c in cols]
    print(f"| {v or '(preset)'} | " + " | ".join(f"{x:.4g}" for x in means) + " |", flush=True)


if __name__ == "__main__":
  main()
