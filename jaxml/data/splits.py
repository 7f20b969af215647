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


def group_holdout(groups: np.ndarray, fraction: float, seed: int):
  """Indices (keep, held_out) holding out whole groups (e.g. people): groups in an order chosen
  with `seed` until at least `fraction` of the examples are held out, at least one group on
  each side. groups: int[n], one group id per example."""
  ids = np.unique(groups)
  if len(ids) < 2:
    raise UserError(f"validation by group needs at least 2 groups (people) in the training "
                    f"data; it has {len(ids)}: use --config.val_by=series")
  order = np.random.default_rng(seed).permutation(ids)
  share = np.cumsum([np.sum(groups == g) for g in order]) / len(groups)
  n_held = min(int(np.searchsorted(share, fraction)) + 1, len(ids) - 1)
  held = np.isin(groups, order[:n_held])
  return np.flatnonzero(~held), np.flatnonzero(held)


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
  """k disjoint index arrays covering range(len(y)), each class spread evenly over them."""
  rng = np.random.default_rng(seed)
  folds = [[] for _ in range(k)]
  for c in np.unique(y):
    for i, idx in enumerate(rng.permutation(np.flatnonzero(y == c))):
      folds[i % k].append(idx)
  return [np.sort(np.array(f, dtype=int)) for f in folds]


def group_folds(groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
  """k disjoint index arrays covering range(len(groups)), each group (person) in one fold:
  groups in an order chosen with `seed`, each given to the fold with the fewest examples so
  far. groups: int[n]."""
  ids = np.random.default_rng(seed).permutation(np.unique(groups))
  if len(ids) < k:
    raise UserError(f"{k} folds by group need at least {k} groups (people); the data has "
                    f"{len(ids)}: use fewer folds or folds by series")
  folds = [[] for _ in range(k)]
  for g in ids:
    min(folds, key=len).extend(np.flatnonzero(groups == g))
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


def holdout_splits(data, fraction: float, seed: int, by: str = "series"
                   ) -> tuple[dict, dict]:
  """{"train", "val", "test": (x, y)} from ClassificationData: `fraction` of the training data
  held out for validation, chosen by `seed`; returns (splits, notes: sizes and how).

  by: "series" holds out series at random (stratified by class); "group" holds out whole
  groups (`group_holdout` of data.groups_train: people, so that validation sees new people as
  a split by person's test part does); "auto" is "group" where the data has groups and at least
  1 / fraction of them (an average group is then at most the fraction), else "series".

  Variable-length data (data.len_train set) gives (x, y, mask) triples instead, mask f32[n, T]
  from `length_mask` (1 on valid steps), the form `jaxml.pipeline.train_classifier` accepts.
  """
  groups = data.groups_train
  if groups is not None and len(groups) != len(data.y_train):
    raise ValueError(f"groups_train has {len(groups)} entries for {len(data.y_train)} series")
  if by == "auto":
    by = "group" if groups is not None and len(np.unique(groups)) * fraction >= 1 else "series"
  if by == "group":
    if groups is None:
      raise UserError(f"{data.source} names no group (person) per training series (data3.h5 "
                      f"layout: a trS dataset); use --config.val_by=series or auto")
    keep, held = group_holdout(groups, fraction, seed)
  else:
    keep, held = stratified_holdout(data.y_train, fraction, seed)
  parts = {"train": (data.x_train, data.y_train, data.len_train, keep),
           "val": (data.x_train, data.y_train, data.len_train, held),
           "test": (data.x_test, data.y_test, data.len_test, slice(None))}
  splits = {}
  for name, (x, y, lengths, idx) in parts.items():
    splits[name] = (x[idx], y[idx]) if lengths is None else (
        x[idx], y[idx], length_mask(lengths[idx], x.shape[1]))
  notes = {"n_train": len(keep), "n_val": len(held), "val_by": by}
  if by == "group":
    notes["val_groups"] = np.unique(groups[held]).tolist()
  return splits, notes
