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


def channel_stats(x: np.ndarray, eps: float = 1e-8):
  """Per-channel (last axis) mean and standard deviation over all other axes."""
  axes = tuple(range(x.ndim - 1))
  mean = x.mean(axis=axes, dtype=np.float64)
  std = x.std(axis=axes, dtype=np.float64)
  return mean.astype(np.float32), np.maximum(std, eps).astype(np.float32)


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  return ((x - mean) / std).astype(np.float32)


def require_finite(x: np.ndarray, what: str) -> None:
  if not np.isfinite(x).all():
    bad = int((~np.isfinite(x)).sum())
    raise UserError(f"{what} contains {bad} NaN or infinite values; clean or drop those samples")


def holdout_splits(data, fraction: float, seed: int) -> tuple[dict, dict]:
  """{"train", "val", "test": (x, y)} from ClassificationData: `fraction` of the training data
  held out for validation (stratified, chosen by `seed`); returns (splits, size notes)."""
  keep, held = stratified_holdout(data.y_train, fraction, seed)
  splits = {"train": (data.x_train[keep], data.y_train[keep]),
            "val": (data.x_train[held], data.y_train[held]),
            "test": (data.x_test, data.y_test)}
  return splits, {"n_train": len(keep), "n_val": len(held)}
