"""The bar of the `ngram_lm` experiment: an interpolated count-based trigram model's test
cross-entropy, with its interpolation weights tuned on the test set itself.

    python benchmarks/trigram_baseline.py                          # embedded King James Bible
    python benchmarks/trigram_baseline.py --data_path=data2.h5     # the seed's file
    python benchmarks/trigram_baseline.py --data_path=book.txt --write_h5=/tmp/data2.h5

For each 4-gram (a, b, c, d) of the training split the event "d after (b, c)" is counted; the
model is

    p(d | b, c) = l3 p_ML(d | b, c) + l2 p_ML(d | c) + l1 p_ML(d) + l0 / V

where a context never seen in training falls back to the next lower-order estimate (so every
component is a distribution). The weights (l3, l2, l1, l0) maximise the *test* likelihood (EM,
which converges to the optimum for a mixture with fixed components), so the number is an
optimistic bar for a trigram model, not a fair one. `--write_h5` also writes the loaded data in
the seed's data2.h5 layout, so `--exp=ngram_lm` can be run on exactly the same 4-grams.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from jaxml.data import ngrams  # noqa: E402


def component_probs(x_train, y_train, x_eval, y_eval, vocab: int) -> np.ndarray:
  """f64[n_eval, 4]: the trigram, bigram, unigram and uniform probabilities of each eval word."""
  uni = np.bincount(y_train, minlength=vocab).astype(np.float64)
  p1 = uni[y_eval] / uni.sum()
  big = np.zeros((vocab, vocab))
  np.add.at(big, (x_train[:, 2], y_train), 1)
  ctx2 = big.sum(axis=1)
  c = x_eval[:, 2]
  p2 = np.where(ctx2[c] > 0, big[c, y_eval] / np.maximum(ctx2[c], 1), p1)
  tri = np.zeros((vocab, vocab, vocab), np.float64)
  np.add.at(tri, (x_train[:, 1], x_train[:, 2], y_train), 1)
  ctx3 = tri.sum(axis=2)
  b = x_eval[:, 1]
  p3 = np.where(ctx3[b, c] > 0, tri[b, c, y_eval] / np.maximum(ctx3[b, c], 1), p2)
  return np.stack([p3, p2, p1, np.full(len(y_eval), 1.0 / vocab)], axis=1)


def tune_weights(probs: np.ndarray, iters: int = 500, tol: float = 1e-10):
  """EM for mixture weights over fixed components: (weights f[4], cross-entropy in nats)."""
  w = np.full(probs.shape[1], 1.0 / probs.shape[1])
  prev = np.inf
  for _ in range(iters):
    mix = probs @ w
    ce = -np.mean(np.log(mix))
    if prev - ce < tol:
      break
    prev = ce
    w = np.mean(probs * w / mix[:, None], axis=0)
  return w, float(-np.mean(np.log(probs @ w)))


def trigram_cross_entropy(data: ngrams.NgramData) -> dict:
  v = len(data.words)
  out = {}
  for split in ("val", "test"):
    probs = component_probs(data.x_train, data.y_train, *data.split(split), v)
    w, ce = tune_weights(probs)
    out[split] = {"cross_entropy": ce, "weights": dict(zip(("l3", "l2", "l1", "l0"),
                                                           map(float, w)))}
  return out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--data_path", default=None, help="data2.h5 or a .txt file (default: KJV)")
  ap.add_argument("--write_h5", default=None, help="also write the data as a seed data2.h5")
  ap.add_argument("--cache_dir", default=None, help="cache for 4-grams built from text")
  args = ap.parse_args()
  data = ngrams.load_ngrams(args.data_path, cache_dir=args.cache_dir, log=lambda m: None)
  if args.write_h5:
    ngrams.write_seed_h5(args.write_h5, data)
  res = trigram_cross_entropy(data)
  print(json.dumps({"data": data.describe(), "trigram_tuned_on_test": res["test"],
                    "trigram_tuned_on_val_evaluated_on_val": res["val"]}, indent=2))
  print(f"interpolated trigram, weights tuned on test: test cross-entropy "
        f"{res['test']['cross_entropy']:.4f} nats/word ({data.source})")


if __name__ == "__main__":
  main()
