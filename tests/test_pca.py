"""jaxml.classical.pca against scikit-learn, and its rank cap."""

import numpy as np

from jaxml.classical.pca import pca_fit, pca_transform


def test_axes_ordered_by_variance_and_equal_to_sklearn_up_to_sign():
  from sklearn.decomposition import PCA
  rng = np.random.default_rng(0)
  x = rng.standard_normal((50, 5)) * np.array([5.0, 0.1, 2.0, 0.1, 0.1])
  pca = pca_fit(x, 2)
  z = pca_transform(pca, x)
  assert z.shape == (50, 2) and z[:, 0].var() > z[:, 1].var() > 1.0
  assert abs(np.corrcoef(z[:, 0], x[:, 0])[0, 1]) > 0.99
  ref = PCA(2, svd_solver="full").fit(x)
  signs = np.sign(np.sum(pca["components"] * ref.components_.T, axis=0))
  np.testing.assert_allclose(pca["components"] * signs, ref.components_.T, atol=1e-12)
  np.testing.assert_allclose(z * signs, ref.transform(x), atol=1e-10)


def test_components_capped_at_rank_and_full_basis_reconstructs():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((4, 10))
  pca = pca_fit(x, 50)
  assert pca["components"].shape == (10, 3)  # n - 1: the centred data has rank 3
  z = pca_transform(pca, x)
  np.testing.assert_allclose(z @ pca["components"].T + pca["mean"], x, atol=1e-12)
  assert pca_fit(rng.standard_normal((30, 1)), 2)["components"].shape == (1, 1)  # d caps it too
