"""k-fold cross-validation of activity-experiment variants on the *training* series only.

    python -m benchmarks.activity_cv --exp=lstm_activity \
        "" "learning_rate=3e-3" "readout=last"  [--data_path=X_TRAIN.ts] [--folds=4]

How the activity defaults are chosen when the validation split is too small to choose (36
BasicMotions series leave 4 for validation, and every variant gets them all right), or cannot
see a change of person: each fold of the training series is held out once (stratified by
`--seed`; with `--folds_by=group`, the default where the data names the people, whole people,
so each fold scores the variant on people it never trained on; add "val_by=group" to a variant
for its inner validation by person too), the experiment trains on the rest
exactly as `python -m experiments.run` would (its own 10% validation split for early stopping,
statistics from its own training part) and is scored on the held-out fold. The test set is
never read. Each positional argument is one variant: space-separated KEY=VALUE config
overrides ("" = the preset as it is). Prints a markdown table (mean held-out loss and accuracy
over folds) and writes it with every fold's numbers to `--out` (json + md).
"""

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments import activity
from experiments.base import RunContext
from experiments.registry import EXPERIMENTS
from experiments.run import build
from jaxml import runtime
from jaxml.data import activity as activity_data
from jaxml.data.splits import group_folds, stratified_folds


def fold_data(data, held: np.ndarray):
  """ClassificationData whose test part is the held-out training series `held`."""
  keep = np.setdiff1d(np.arange(len(data.y_train)), held)
  part = lambda a, idx: None if a is None else a[idx]
  return dataclasses.replace(
      data, x_train=data.x_train[keep], y_train=data.y_train[keep],
      x_test=data.x_train[held], y_test=data.y_train[held],
      len_train=part(data.len_train, keep), len_test=part(data.len_train, held),
      groups_train=part(data.groups_train, keep),
      source=f"{data.source} (cv fold of {len(held)})")


def cross_validate(exp_name: str, overrides: str, data, folds, seed: int, log=print,
                   seeds: int = 1) -> dict:
  _, cfg = build(exp_name, "default", False, dict(kv.split("=", 1) for kv in overrides.split()))
  rows = []
  for i, held in enumerate(folds):
    with tempfile.TemporaryDirectory() as tmp:
      t = time.perf_counter()
      out = activity.train_on(fold_data(data, held), cfg,
                              RunContext(workdir=Path(tmp), data_path=None, seed=seed,
                                         log=lambda _: None, seeds=seeds,
                                         # as --cpu_threads=auto (the first fold sets it)
                                         cpu_pool=EXPERIMENTS[exp_name].size_pool))
      m = out["metrics"]
      rows.append({"fold": i, "loss": m["test_loss"], "accuracy": m["test_accuracy"],
                   "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
                   "stop_reason": m["stop_reason"], "s": time.perf_counter() - t,
                   "config": {k: out["config"][k] for k in ("batch_size", "epochs",
                                                              "patience", "ensemble",
                                                              "keep")}})
      log(f"  {overrides or '(default)'} fold {i}: loss {m['test_loss']:.4f} "
          f"acc {m['test_accuracy']:.4f} ({rows[-1]['s']:.0f} s)")
  return {"overrides": overrides, "folds": rows,
          "loss": float(np.mean([r["loss"] for r in rows])),
          "accuracy": float(np.mean([r["accuracy"] for r in rows]))}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--exp", required=True, choices=("rnn_activity", "lstm_activity",
                                                  "gru_activity"))
  p.add_argument("--data_path", default=None)
  p.add_argument("--folds", type=int, default=4)
  p.add_argument("--folds_by", choices=("auto", "series", "group"), default="auto",
                 help="folds of random series (stratified) or of whole people (the data's "
                      "subject ids, e.g. trS); auto = people where the data names them")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--seeds", type=int, default=1,
                 help="train each fold with seeds seed..seed+N-1 together (--seeds of "
                      "experiments.run) and score the mean over them: less noise per fold")
  p.add_argument("--out", default=None, help="PATH.json (and PATH.md) for the table")
  p.add_argument("variants", nargs="*", default=[""])
  args = p.parse_args()
  runtime.keep_freed_memory()
  data = activity_data.load_activity(args.data_path)
  by = args.folds_by if args.folds_by != "auto" else (
      "series" if data.groups_train is None else "group")
  if by == "group" and data.groups_train is None:
    raise SystemExit(f"error: {data.source} names no people (no trS); use --folds_by=series")
  folds = (group_folds(data.groups_train, args.folds, args.seed) if by == "group"
           else stratified_folds(data.y_train, args.folds, args.seed))
  results = []
  for v in args.variants:
    results.append(cross_validate(args.exp, v, data, folds, args.seed, seeds=args.seeds))
  lines = [f"{args.exp} on {data.source}: {args.folds}-fold cross-validation of the "
           f"{len(data.y_train)} training series, folds by {by} (seed {args.seed}"
           f"{f', {args.seeds} seeds per fold' if args.seeds > 1 else ''}); held-out fold mean", "",
           "| overrides | loss | accuracy | best epochs | s per fold |", "|---|---|---|---|---|"]
  for r in results:
    lines.append(f"| {r['overrides'] or '(default)'} | {r['loss']:.4f} | {r['accuracy']:.4f} | "
                 f"{' '.join(format(f['best_epoch'], '.3g') for f in r['folds'])} | "
                 f"{np.mean([f['s'] for f in r['folds']]):.0f} |")
  print("\n".join(lines))
  if args.out:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(
        {"exp": args.exp, "data": data.source, "folds": args.folds, "folds_by": by,
         "seed": args.seed,
         "seeds": args.seeds,
         "results": results}, indent=1))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
