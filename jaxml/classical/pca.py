"""Principal component analysis by SVD of the centred data (numpy, float64 in, float64 out).

Used for Eigenfaces/Fisherfaces (experiments/faces.py) and the word-embedding map
(experiments/ngram_lm.py).
"""

import numpy as np


def pca_fit(x: np.ndarray, k: int) -> dict:
  """x: f[n, d] -> {"mean": f[d], "components": f[d, k']}, the k' = min(k, n - 1, d) leading
  principal axes as columns, by decreasing variance (the centred data has rank at most n - 1)."""
  x = np.asarray(x)
  mean = x.mean(0)
  _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
  return {"mean": mean, "components": vt[: min(k, len(x) - 1)].T}


def pca_transform(pca: dict, x: np.ndarray) -> np.ndarray:
  """x: f[n, d] -> coordinates f[n, k'] along the fitted axes."""
  return (np.asarray(x) - pca["mean"]) @ pca["components"]
