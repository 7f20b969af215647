"""The simple baseline an activity RNN must beat: window statistics + logistic regression.

    python -m benchmarks.window_baseline [--data_path=data3.h5 | sktime:JapaneseVowels | ...]

Per series and channel the mean, std, min and max over its valid steps (so padding of
variable-length series does not count), standardised with the training part's statistics,
then scikit-learn's LogisticRegression with C from {0.01, 0.1, 1, 10, 100} chosen on the
experiments' own validation split (`--seed`, 10%; ties go to the smaller C) and tested once.
Reads the data exactly as the activity experiments do. Prints one line per feature set.
"""

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from jaxml.data import activity
from jaxml.data.splits import holdout_splits

C_GRID = (0.01, 0.1, 1, 10, 100)


def window_features(x: np.ndarray, mask: np.ndarray, with_length: bool = False) -> np.ndarray:
  """x f[n, T, C], mask f[n, T] -> f[n, 4C (+1)]: mean, std, min, max over valid steps."""
  m = mask[..., None] > 0
  n = m.sum(1)
  mean = np.where(m, x, 0).sum(1) / n
  std = np.sqrt(np.where(m, (x - mean[:, None]) ** 2, 0).sum(1) / n)
  low, high = np.where(m, x, np.inf).min(1), np.where(m, x, -np.inf).max(1)
  return np.concatenate([mean, std, low, high] + ([n[:, :1].astype(float)] if with_length else []),
                        axis=1)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_path", default=None)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--val_fraction", type=float, default=0.1)
  p.add_argument("--val_by", choices=("auto", "series", "group"), default="series",
                 help="as the experiments' --config.val_by")
  args = p.parse_args()
  data = activity.load_activity(args.data_path)
  splits, notes = holdout_splits(data, args.val_fraction, args.seed, by=args.val_by)
  parts = {k: (s[0], s[1], s[2] if len(s) > 2 else np.ones(s[0].shape[:2], np.float32))
           for k, s in splits.items()}
  for with_length in (False, True) if data.variable_length else (False,):
    f = {k: window_features(x, m, with_length) for k, (x, _, m) in parts.items()}
    scale = StandardScaler().fit(f["train"])
    best = None
    for c in C_GRID:
      clf = LogisticRegression(C=c, max_iter=5000).fit(scale.transform(f["train"]),
                                                       parts["train"][1])
      val = clf.score(scale.transform(f["val"]), parts["val"][1])
      if best is None or val > best[0]:
        best = (val, c, clf)
    val, c, clf = best
    test = clf.score(scale.transform(f["test"]), parts["test"][1])
    print(f"{data.source}: window statistics{' + length' if with_length else ''} + logistic "
          f"regression, C={c} (val acc {val:.4f}, validation by {notes['val_by']}): test "
          f"accuracy {test:.4f}")


if __name__ == "__main__":
  main()
