"""Fisher discriminant analysis: multi-class LDA and kernel Fisher discriminant (KFDA).

Both find the directions w maximising the Rayleigh quotient of between- over within-class
scatter, J(w) = w^T S_B w / w^T (S_W + R) w with a regulariser R, project onto the top K - 1
of them, and classify in that projected space by the Gaussian rule with a shared identity
covariance: argmax_c z . mu_c - |mu_c|^2 / 2 + log prior_c, mu_c the projected class means.
The directions are normalised so that w^T (S_W + R) w = I, which makes that rule the ordinary
shared-covariance Gaussian (LDA) classifier; with all K - 1 directions it gives exactly the
predictions of the full-dimensional rule (the other directions do not separate class means).

Solving the generalised eigenproblem cheaply. S_B = B B^T has rank K - 1 (B holds one column
per class, sqrt(prior_c) (m_c - m)), so every eigenvector with a non-zero eigenvalue is
v = N^{-1} B u with (B^T N^{-1} B) u = lambda u, N = S_W + R: one solve with K right-hand
sides and a K x K symmetric eigenproblem, instead of a d x d (or n x n) generalised one.

LDA (`lda_fit`): S_W is the within-class covariance (1/n) sum_i (x_i - m_{y_i})(...)^T, shrunk
as scikit-learn's eigen solver does, (1 - s) S_W + s tr(S_W)/d I, so `shrinkage` means the same
here and there. Features as given (pixels in [0, 1]); the rule is invariant to rescaling
features except through the shrinkage target, which uses the mean variance.

KFDA (`kfda_fit`): w = sum_i a_i phi(x_i) in the kernel's feature space. With the Gram matrix
K, the class indicator matrix Z_w (columns 1_c / sqrt(n_c)) and mu = `reg`:
    between  a^T K Z_b Z_b^T K a,            Z_b[:, c] = sqrt(n_c / n) (1_c / n_c - 1 / n)
    within   a^T ((1/n) K (I - Z_w Z_w^T) K + mu K) a
The regulariser mu K is mu ||w||^2 in feature space (the same S_W + mu I as LDA with a ridge),
so a linear kernel gives LDA's directions. N a = K Z_b is solved without forming K^2:
N = (1/n) K (A - Z_w P^T) with A = K + n mu I and P = K Z_w, so a = n (A - Z_w P^T)^{-1} Z_b,
which Woodbury turns into one Cholesky factorisation of A with 2K right-hand sides.

Exact versus Nystroem. The exact fit holds the n x n Gram matrix (100 MB for 5000 points in
float32) and factorises it (n^3 / 3 flops: about a second for 5000 points on 2 CPU cores),
which is what we use up to ~10^4 points. Beyond that (60000 MNIST digits: 14 GB, hours),
`landmarks=m` uses the Nystroem feature map phi(x) = K(x, L) K_LL^{-1/2} on m random training
points and runs linear LDA with ridge mu in that m-dimensional space: O(n m^2) time and
O(n m) memory. Blocking alone would bound memory but not the O(n^3) solve, hence Nystroem.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve

from jaxml.classical.common import one_hot
from jaxml.classical.kernels import Kernel, kernel_dot, kernel_matrix


def _directions(m_small, v):
  """Top K - 1 eigenvectors of the K x K problem, mapped back: v u / sqrt(lambda)."""
  evals, evecs = jnp.linalg.eigh((m_small + m_small.T) / 2)
  k = m_small.shape[0] - 1
  evals, evecs = evals[::-1][:k], evecs[:, ::-1][:, :k]
  return v @ (evecs / jnp.sqrt(jnp.maximum(evals, jnp.finfo(v.dtype).tiny)))


def _class_stats(y, n_classes: int, dtype):
  t = one_hot(y, n_classes, dtype)
  counts = t.sum(0)
  return t, counts, counts / y.shape[0]


def _gaussian_scores(z, means, log_prior):
  """z: f[n, k] projected points -> f[n, K] scores of the shared-identity Gaussian rule."""
  return z @ means.T - 0.5 * jnp.sum(means * means, -1) + log_prior


# ----------------------------------------------------------------------------- LDA
@partial(jax.jit, static_argnames=("n_classes",))
def lda_fit(x, y, *, n_classes: int, shrinkage=0.0, ridge=0.0) -> dict:
  """x: f[n, d], y: int[n] -> {"xbar": f[d], "scalings": f[d, K-1], "means": f[K, K-1],
  "log_prior": f[K]}. N = (1 - shrinkage) S_W + shrinkage tr(S_W)/d I + ridge I."""
  n, d = x.shape
  t, counts, priors = _class_stats(y, n_classes, x.dtype)
  means = (t.T @ x) / jnp.maximum(counts, 1)[:, None]
  xc = x - means[y]
  sw = xc.T @ xc / n
  eye = jnp.eye(d, dtype=x.dtype)
  sw = (1 - shrinkage) * sw + (shrinkage * jnp.trace(sw) / d + ridge) * eye
  xbar = priors @ means
  b = ((means - xbar) * jnp.sqrt(priors)[:, None]).T  # [d, K]
  v = cho_solve(cho_factor(sw), b)
  scalings = _directions(b.T @ v, v)
  return {"xbar": xbar, "scalings": scalings, "means": (means - xbar) @ scalings,
          "log_prior": jnp.log(priors)}


@jax.jit
def lda_decision(params: dict, x):
  """x: f[n, d] -> f[n, K]."""
  z = (x - params["xbar"]) @ params["scalings"]
  return _gaussian_scores(z, params["means"], params["log_prior"])


def lda_transform(params: dict, x):
  """x: f[n, d] -> the discriminant coordinates f[n, K-1]."""
  return (x - params["xbar"]) @ params["scalings"]


# ----------------------------------------------------------------------------- KFDA
@partial(jax.jit, static_argnames=("n_classes", "kernel", "block_rows"))
def _kfda_exact(x, y, *, n_classes: int, kernel: Kernel, reg, block_rows: int) -> dict:
  n = x.shape[0]
  gram = kernel_matrix(kernel, x, x, block_rows=block_rows)
  t, counts, priors = _class_stats(y, n_classes, x.dtype)
  safe = jnp.maximum(counts, 1)
  z_w = t / jnp.sqrt(safe)
  z_b = jnp.sqrt(priors) * (t / safe - 1.0 / n)
  a = gram + n * reg * jnp.eye(n, dtype=x.dtype)
  sol = cho_solve(cho_factor(a), jnp.concatenate([z_b, z_w], axis=1))
  a_zb, a_zw = sol[:, :n_classes], sol[:, n_classes:]
  p = gram @ z_w
  s = jnp.eye(n_classes, dtype=x.dtype) - p.T @ a_zw  # Woodbury's small matrix (SPD)
  v = n * (a_zb + a_zw @ jnp.linalg.solve(s, p.T @ a_zb))
  coef = _directions((gram @ z_b).T @ v, v)
  z = gram @ coef
  return {"x": x, "coef": coef, "means": (t.T @ z) / safe[:, None], "log_prior": jnp.log(priors)}


def _inverse_sqrt(k_ll):
  """K_LL^{-1/2} (symmetric), with eigenvalues floored at a relative 1e-6 (K_LL is often
  numerically singular: near-duplicate landmarks)."""
  evals, evecs = jnp.linalg.eigh(k_ll)
  floor = 1e-6 * jnp.max(evals)
  return (evecs / jnp.sqrt(jnp.maximum(evals, floor))) @ evecs.T


@partial(jax.jit, static_argnames=("n_classes", "kernel", "block_rows"))
def _kfda_nystroem(x, y, landmarks, *, n_classes: int, kernel: Kernel, reg,
                   block_rows: int) -> dict:
  proj = _inverse_sqrt(kernel_matrix(kernel, landmarks, landmarks, block_rows=block_rows))
  features = kernel_dot(kernel, x, landmarks, proj, block_rows=block_rows)
  return {"landmarks": landmarks, "proj": proj,
          "lda": lda_fit(features, y, n_classes=n_classes, ridge=reg)}


def kfda_fit(x, y, *, n_classes: int, kernel: Kernel, reg: float, landmarks: int = 0,
             seed: int = 0, block_rows: int = 1024) -> dict:
  """Multi-class kernel Fisher discriminant.

  Args:
    x: f[n, d]; y: int[n].
    kernel: a Kernel with gamma resolved (see kernels.resolve_gamma).
    reg: mu, the weight of ||w||^2 in the within-class scatter (scale: K's entries).
    landmarks: 0 for the exact solution; m > 0 for Nystroem with min(m, n) landmarks drawn
      uniformly without replacement with `seed` (with all n it equals the exact solution).
  Returns:
    exact: {"x": f[n, d], "coef": f[n, K-1], "means": f[K, K-1], "log_prior": f[K]};
    Nystroem: {"landmarks": f[m, d], "proj": f[m, m], "lda": lda_fit's params}.
  """
  if landmarks:
    m = min(landmarks, x.shape[0])
    idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], m, replace=False))
    return _kfda_nystroem(x, y, x[idx], n_classes=n_classes, kernel=kernel, reg=reg,
                          block_rows=block_rows)
  return _kfda_exact(x, y, n_classes=n_classes, kernel=kernel, reg=reg, block_rows=block_rows)


@partial(jax.jit, static_argnames=("kernel", "block_rows"))
def kfda_decision(params: dict, x, *, kernel: Kernel, block_rows: int = 1024):
  """x: f[n, d] -> f[n, K]; the kernel values are formed block_rows rows at a time."""
  if "lda" in params:
    features = kernel_dot(kernel, x, params["landmarks"], params["proj"], block_rows=block_rows)
    return lda_decision(params["lda"], features)
  z = kernel_dot(kernel, x, params["x"], params["coef"], block_rows=block_rows)
  return _gaussian_scores(z, params["means"], params["log_prior"])
