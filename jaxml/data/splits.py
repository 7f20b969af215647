"""Splits and normalisation shared by every experiment (statistics from training data only)."""

import numpy as np

from jaxml.errors import UserError


def stratified_holdout(y: np.ndarray, fraction: float, seed: int):
  """Indices (keep, held_out): `fraction` of each class held out, chosen with `seed`.

  Every class with at least two examples keeps one in each part, so a small dataset still gets
  a validation set that covers its classes.
  """
  rng = np.random.default_rng(seed)
  keep, held = [], []
  for c in np.unique(y):
    idx = rng.permutation(np.flatnonzero(y == c))
    k = int(round(fraction * len(idx)))
    k = min(max(k, 1), len(idx) - 1) if len(idx) >= 2 else 0
    held.append(idx[:k])
    keep.append(idx[k:])
  keep, held = np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))
  if len(held) == 0:
    raise UserError("too few training examples to hold out a validation set; pass more data")
  return keep, held


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
  """k disjoint index arrays covering range(len(y)), each class spread evenly over them."""
  rng = np.random.default_rng(seed)
  folds = [[] for _ in range(k)]
  for c in np.unique(y):
    for i, idx in enumerate(rng.permutation(np.flatnonzero(y == c))):
      folds[i % k].append(idx)
  return [np.sort(np.array(f, dtype=int)) for f in folds]


def length_mask(lengths: np.ndarray, steps: int) -> np.ndarray:
  """f32[n, steps]: 1 on each series' first lengths[i] steps, 0 on its padding."""
  return (np.arange(steps)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)


def channel_stats(x: np.ndarray, eps: float = 1e-8, mask: np.ndarray | None = None):
  """Per-channel (last axis) mean and standard deviation over all other axes.

  mask: optional [n, time] (x: [n, time, channels]); only steps where it is 1 count, so the
  padding of variable-length series does not pull the statistics towards 0.
  """
  if mask is None:
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
  else:
    valid = x[np.asarray(mask) > 0].astype(np.float64)  # [valid steps, channels]
    mean, std = valid.mean(axis=0), valid.std(axis=0)
  return mean.astype(np.float32), np.maximum(std, eps).astype(np.float32)


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray,
                mask: np.ndarray | None = None) -> np.ndarray:
  """(x - mean) / std; with mask [n, time], padded steps stay exactly 0."""
  z = ((x - mean) / std).astype(np.float32)
  return z if mask is None else z * np.asarray(mask, np.float32)[..., None]


def require_finite(x: np.ndarray, what: str) -> None:
  if not np.isfinite(x).all():
    bad = int((~np.isfinite(x)).sum())
    raise UserError(f"{what} contains {bad} NaN or infinite values; clean or drop those samples")


def holdout_splits(data, fraction: float, seed: int) -> tuple[dict, dict]:
  """{"train", "val", "test": (x, y)} from ClassificationData: `fraction` of the training data
  held out for validation (stratified, chosen by `seed`); returns (splits, size notes).

  Variable-length data (data.len_train set) gives (x, y, mask) triples instead, mask f32[n, T]
  from `length_mask` (1 on valid steps), the form `jaxml.pipeline.train_classifier` accepts.
  """
  keep, held = stratified_holdout(data.y_train, fraction, seed)
  parts = {"train": (data.x_train, data.y_train, data.len_train, keep),
           "val": (data.x_train, data.y_train, data.len_train, held),
           "test": (data.x_test, data.y_test, data.len_test, slice(None))}
  splits = {}
  for name, (x, y, lengths, idx) in parts.items():
    splits[name] = (x[idx], y[idx]) if lengths is None else (
        x[idx], y[idx], length_mask(lengths[idx], x.shape[1]))
  return splits, {"n_train": len(keep), "n_val": len(held)}
