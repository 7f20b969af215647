"""Several seeds of one run (`--seeds=N`): what results.json says about them.

A run of N seeds trains replica r with seed `--seed + r` (jaxml.train.fit, replicas=N) and
evaluates each replica as a single run would. `summarize` turns the N metric dicts into

    metrics:          the mean over seeds of every numeric metric (strings: the common value,
                      or the list of per-seed values where the seeds differ)
    metrics_per_seed: the N dicts, in seed order
    metrics_summary:  {name: {"mean", "std", "ci95": [lo, hi], "n"}} for every numeric scalar
                      (nested dicts, e.g. ngram_lm's per-configuration numbers, nest the same
                      way): std with ddof=1, the interval mean ± t(0.975, n-1) std / sqrt(n).
"""

import math
from numbers import Real

import numpy as np


def _is_number(v) -> bool:
  return isinstance(v, Real) and not isinstance(v, bool)


def interval(values) -> dict:
  """{"mean", "std", "ci95", "n"} of numbers over seeds (std and interval 0-wide for n = 1)."""
  v = np.asarray(values, np.float64)
  n, mean = len(v), float(v.mean())
  std = float(v.std(ddof=1)) if n > 1 else 0.0
  from scipy import stats  # here, not at the top: its import slows every command line's start
  half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else 0.0
  return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}


def _merge(per_seed: list):
  """(mean value, summary or None) of one metric's per-seed values."""
  first = per_seed[0]
  if all(isinstance(v, dict) for v in per_seed):
    keys = [k for k in first if all(k in v for v in per_seed)]
    merged = {k: _merge([v[k] for v in per_seed]) for k in keys}
    means = {k: m for k, (m, _) in merged.items()}
    summary = {k: s for k, (_, s) in merged.items() if s is not None}
    return means, summary or None
  if all(_is_number(v) for v in per_seed):
    s = interval(per_seed)
    return s["mean"], s
  return (first if all(v == first for v in per_seed) else list(per_seed)), None


def summarize(per_seed: list[dict]) -> dict:
  """{"metrics", "metrics_per_seed", "metrics_summary"} of N seeds' metric dicts (see above)."""
  means, summary = _merge(per_seed)
  return {"metrics": means, "metrics_per_seed": per_seed, "metrics_summary": summary or {}}


def mean_std_text(summary: dict, digits: int = 4) -> str:
  """'0.8250 ± 0.0350' of an `interval` dict."""
  return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"
