"""jaxml.classical against scikit-learn, plain-loop references and finite differences (float64).

Data: scikit-learn's 8x8 digits (pixels scaled to [0, 1]), 600 to fit and 300 to test, or
smaller slices of them; scikit-learn is a test-only dependency.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from sklearn import datasets, discriminant_analysis, linear_model, metrics, svm as sk_svm

from experiments import classical_mnist
from experiments.base import RunContext
from jaxml.classical import fisher, kernels, least_squares, logistic, mlp, perceptron, svm
from jaxml.classical.common import grid, holdout_search, predict
from jaxml.errors import UserError
from jaxml.gradcheck import check_grad
from tests.test_run_cli import assert_one_line_error, run_cli

F64 = jnp.float64


@pytest.fixture(scope="module")
def digits():
  x, y = datasets.load_digits(return_X_y=True)
  x = x / 16.0
  return x[:600], y[:600].astype(np.int32), x[600:900], y[600:900].astype(np.int32)


def agreement(a, b) -> float:
  return float(np.mean(np.asarray(a) == np.asarray(b)))


def centred(scores):
  """Scores minus their mean over classes: LDA centres x before projecting, KFDA does not, so
  their scores of a point differ by one constant over the classes, which no decision sees."""
  scores = np.asarray(scores)
  return scores - scores.mean(1, keepdims=True)


# ----------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("kernel, reference", [
    (kernels.Kernel("linear"), lambda a, b: metrics.pairwise.linear_kernel(a, b)),
    (kernels.Kernel("poly", 0.3, 3, 1.0),
     lambda a, b: metrics.pairwise.polynomial_kernel(a, b, degree=3, gamma=0.3, coef0=1.0)),
    (kernels.Kernel("rbf", 0.05), lambda a, b: metrics.pairwise.rbf_kernel(a, b, gamma=0.05)),
    (kernels.Kernel("sigmoid", 0.01, coef0=-0.5),
     lambda a, b: metrics.pairwise.sigmoid_kernel(a, b, gamma=0.01, coef0=-0.5)),
])
def test_blocked_kernels_equal_unblocked_and_sklearn(digits, kernel, reference):
  a, b = digits[0][:70], digits[2][:50]
  full = kernels.gram(kernel, a, b)
  np.testing.assert_allclose(full, reference(a, b), rtol=1e-10, atol=1e-12)
  # 70 rows in blocks of 16: four full blocks and a remainder of 6
  np.testing.assert_allclose(kernels.kernel_matrix(kernel, a, b, block_rows=16), full,
                             rtol=1e-12, atol=1e-13)
  coef = np.random.default_rng(0).standard_normal((50, 3))
  np.testing.assert_allclose(kernels.kernel_dot(kernel, a, b, coef, block_rows=16), full @ coef,
                             rtol=1e-10, atol=1e-11)


def test_gamma_scale_is_sklearns(digits):
  x = digits[0]
  k = kernels.resolve_gamma(kernels.Kernel("rbf"), x)
  assert k.gamma == pytest.approx(1.0 / (x.shape[1] * x.var()))
  assert kernels.resolve_gamma(kernels.Kernel("rbf", 0.5), x).gamma == 0.5


# ----------------------------------------------------------------------------- ridge, Fisher
def test_ridge_predicts_like_sklearn(digits):
  x, y, xt, _ = digits
  params = least_squares.ridge_fit(x, y, n_classes=10, alpha=3.0)
  ref = linear_model.RidgeClassifier(alpha=3.0).fit(x, y)
  assert agreement(predict(least_squares.ridge_decision, params, xt), ref.predict(xt)) >= 0.99
  # {0, 1} targets give half of scikit-learn's {-1, +1} coefficients
  np.testing.assert_allclose(2 * params["w"], ref.coef_.T, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("shrinkage", [0.01, 0.3])
def test_lda_predicts_like_sklearn(digits, shrinkage):
  x, y, xt, _ = digits
  params = fisher.lda_fit(x, y, n_classes=10, shrinkage=shrinkage)
  ref = discriminant_analysis.LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage)
  ref.fit(x, y)
  assert agreement(predict(fisher.lda_decision, params, xt), ref.predict(xt)) >= 0.99
  # the discriminant axes are scikit-learn's up to sign (scaled alike: w^T S_W w = 1)
  ours, theirs = fisher.lda_transform(params, xt), ref.transform(xt)
  for k in range(3):
    corr = np.corrcoef(ours[:, k], theirs[:, k])[0, 1]
    assert abs(corr) > 0.999, (k, corr)


def test_kfda_with_linear_kernel_is_lda_with_ridge(digits):
  x, y, xt, _ = digits
  mu = 0.01
  lda = fisher.lda_fit(x, y, n_classes=10, ridge=mu)
  kfda = fisher.kfda_fit(x, y, n_classes=10, kernel=kernels.Kernel("linear"), reg=mu)
  np.testing.assert_allclose(centred(fisher.kfda_decision(kfda, xt, kernel=kernels.Kernel("linear"))),
                             centred(fisher.lda_decision(lda, xt)), rtol=1e-6, atol=1e-6)


def test_kfda_solves_the_generalised_eigenproblem(digits):
  """The Woodbury route against scipy's dense generalised eigensolver on 80 points."""
  x, y = digits[0][:80], digits[1][:80]
  kernel, mu, n = kernels.Kernel("rbf", 0.05), 1e-2, 80
  params = fisher.kfda_fit(x, y, n_classes=10, kernel=kernel, reg=mu)
  k = np.asarray(kernels.gram(kernel, x, x))
  t = np.eye(10)[y]
  counts = t.sum(0)
  z_w = t / np.sqrt(counts)
  z_b = np.sqrt(counts / n) * (t / counts - 1.0 / n)
  between = k @ z_b @ z_b.T @ k
  within = k @ (np.eye(n) - z_w @ z_w.T) @ k / n + mu * k
  evals, evecs = scipy.linalg.eigh(between, within)
  top = evecs[:, ::-1][:, :9]  # scipy normalises evecs^T within evecs = I, as we do
  ours = np.asarray(params["coef"])
  np.testing.assert_allclose(np.abs(np.sum(ours * (within @ top), 0)), 1.0, atol=1e-6)
  # the projections of the training points agree up to sign
  np.testing.assert_allclose(np.abs(k @ ours), np.abs(k @ top), rtol=1e-5, atol=1e-6)


def test_kfda_nystroem_with_every_point_as_landmark_is_exact(digits):
  x, y, xt, _ = digits
  x, y = x[:150], y[:150]
  kernel = kernels.Kernel("rbf", 0.05)
  exact = fisher.kfda_fit(x, y, n_classes=10, kernel=kernel, reg=1e-3)
  nys = fisher.kfda_fit(x, y, n_classes=10, kernel=kernel, reg=1e-3, landmarks=1000)
  assert nys["landmarks"].shape == (150, 64)
  np.testing.assert_allclose(centred(fisher.kfda_decision(nys, xt, kernel=kernel)),
                             centred(fisher.kfda_decision(exact, xt, kernel=kernel)),
                             rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- perceptrons
def _permutations(key, n, epochs):
  return [np.asarray(jax.random.permutation(jax.random.fold_in(key, e), n)) for e in range(epochs)]


def test_perceptron_scan_equals_a_python_loop(digits):
  x, y = digits[0][:120], digits[1][:120]
  key = jax.random.key(3)
  params = perceptron.perceptron_fit(x, y, key, n_classes=10, epochs=3, average=True)
  xb = np.hstack([x, np.ones((len(x), 1))])
  w, w_sum, mistakes = np.zeros((65, 10)), np.zeros((65, 10)), []
  for perm in _permutations(key, len(x), 3):
    wrong = 0
    for i in perm:
      p = int(np.argmax(xb[i] @ w))
      if p != y[i]:
        w[:, y[i]] += xb[i]
        w[:, p] -= xb[i]
        wrong += 1
      w_sum += w
    mistakes.append(wrong)
  np.testing.assert_allclose(params["w"], w_sum / (3 * len(x)), rtol=1e-12, atol=1e-12)
  assert np.asarray(params["mistakes"]).tolist() == mistakes


def test_kernel_perceptron_loop_reference_and_separable_data(digits):
  x, y = digits[0][:100], digits[1][:100]
  key, kernel = jax.random.key(1), kernels.Kernel("rbf", 0.1)
  params = perceptron.kernel_perceptron_fit(x, y, key, n_classes=10, kernel=kernel, epochs=8,
                                            average=False)
  k = np.asarray(kernels.gram(kernel, x, x)) + 1.0
  alpha, mistakes = np.zeros((100, 10)), []
  for perm in _permutations(key, 100, 8):
    mistakes.append(0)
    for i in perm:
      p = int(np.argmax(k[i] @ alpha))
      if p != y[i]:
        alpha[i, y[i]] += 1
        alpha[i, p] -= 1
        mistakes[-1] += 1
  keep = np.flatnonzero(np.any(alpha != 0, axis=1))
  np.testing.assert_array_equal(params["alpha"], alpha[keep])
  assert np.asarray(params["mistakes"]).tolist() == mistakes
  # RBF features separate distinct points: the mistakes stop, and then every training point
  # is classified right
  assert mistakes[-1] == 0
  dec = lambda p, x: perceptron.kernel_perceptron_decision(p, x, kernel=kernel)
  assert agreement(predict(dec, params, x), y) == 1.0


# ----------------------------------------------------------------------------- logistic, linear SVM
def test_logistic_matches_sklearn(digits):
  x, y, xt, yt = digits
  params = logistic.logistic_fit(x, y, n_classes=10, c=0.5, max_iter=500, tol=1e-7)
  ref = linear_model.LogisticRegression(C=0.5, tol=1e-8, max_iter=2000).fit(x, y)
  acc = agreement(predict(logistic.logistic_decision, params, xt), yt)
  assert abs(acc - ref.score(xt, yt)) <= 0.01
  probs = jax.nn.softmax(logistic.logistic_decision(params, xt))
  np.testing.assert_allclose(probs, ref.predict_proba(xt), atol=1e-3)


def linearsvc_primal(w, b, x, y, c, intercept_scaling):
  """LinearSVC's objective (liblinear, squared hinge, one-vs-rest), bias as a constant feature."""
  t = 2.0 * np.eye(w.shape[1])[y] - 1.0
  hinge = np.maximum(0.0, 1.0 - t * (x @ w + b))
  return c * np.sum(hinge ** 2) + 0.5 * np.sum(w ** 2) + 0.5 * np.sum((b / intercept_scaling) ** 2)


@pytest.mark.parametrize("c, intercept_scaling", [(0.1, 1.0), (1.0, 1.0), (0.1, 10.0)])
def test_linear_svm_is_linearsvc(digits, c, intercept_scaling):
  """Same objective as LinearSVC at its defaults (squared hinge, one-vs-rest, the bias a
  penalised constant feature): the same optimum, so the same scores and predictions."""
  x, y, xt, yt = digits
  params = svm.linear_svm_fit(x, y, n_classes=10, c=c, intercept_scaling=intercept_scaling,
                              max_iter=5000, tol=1e-9)
  ref = sk_svm.LinearSVC(C=c, intercept_scaling=intercept_scaling, tol=1e-10,
                         max_iter=100_000).fit(x, y)
  w, b = np.asarray(params["w"]), np.asarray(params["b"])
  ours = linearsvc_primal(w, b, x, y, c, intercept_scaling)
  theirs = linearsvc_primal(ref.coef_.T, ref.intercept_, x, y, c, intercept_scaling)
  np.testing.assert_allclose(ours, theirs, rtol=1e-7)
  np.testing.assert_allclose(float(params["objective"]) * c * len(x), ours, rtol=1e-10)
  np.testing.assert_allclose(svm.linear_svm_decision(params, xt), ref.decision_function(xt),
                             atol=1e-3)
  np.testing.assert_array_equal(predict(svm.linear_svm_decision, params, xt), ref.predict(xt))


def test_linear_svm_unpenalised_bias_is_the_large_scaling_limit(digits):
  """intercept_scaling=inf drops the bias penalty: LinearSVC's limit of a large scaling."""
  x, y, xt, _ = digits
  free = svm.linear_svm_fit(x, y, n_classes=10, c=0.1, intercept_scaling=float("inf"),
                            max_iter=5000, tol=1e-9)
  ref = sk_svm.LinearSVC(C=0.1, intercept_scaling=1e3, tol=1e-10, max_iter=100_000).fit(x, y)
  np.testing.assert_allclose(svm.linear_svm_decision(free, xt), ref.decision_function(xt),
                             atol=1e-3)
  penalised = svm.linear_svm_fit(x, y, n_classes=10, c=0.1, max_iter=5000, tol=1e-9)
  assert np.max(np.abs(np.asarray(free["b"]) - np.asarray(penalised["b"]))) > 0.01


# ----------------------------------------------------------------------------- kernel SVM
@pytest.mark.parametrize("kernel", [kernels.Kernel("rbf", 0.05),
                                    kernels.Kernel("poly", 0.1, 3, 1.0),
                                    kernels.Kernel("sigmoid", 0.01, coef0=0.0)])
def test_binary_svm_decision_function_is_svcs(digits, kernel):
  x, y, xt, _ = digits
  pick = (y == 3) | (y == 8)
  xb, yb = x[pick], (y[pick] == 8).astype(np.int32)  # class 1 = digit 8
  params = svm.svm_fit(xb, yb, n_classes=2, kernel=kernel, c=2.0, tol=1e-7)
  ref = sk_svm.SVC(C=2.0, tol=1e-7, **{k: v for k, v in vars(kernel).items() if k != "name"},
                   kernel=kernel.name).fit(xb, yb)
  ours = svm.svm_pair_decision(params, xt, kernel=kernel)[:, 0]
  # libsvm's sign: > 0 votes for the first class (0); scikit-learn flips it for binary problems
  np.testing.assert_allclose(-ours, ref.decision_function(xt), atol=2e-5)
  assert len(params["x"]) == len(ref.support_)
  assert float(np.max(params["kkt_gap"])) <= 1e-7


def test_multiclass_svm_pairwise_decisions_and_votes_are_svcs(digits):
  x, y, xt, _ = (a[:300] for a in digits)
  kernel = kernels.Kernel("rbf", 0.05)
  params = svm.svm_fit(x, y, n_classes=10, kernel=kernel, c=5.0, tol=1e-6)
  ref = sk_svm.SVC(C=5.0, gamma=0.05, tol=1e-6, decision_function_shape="ovo").fit(x, y)
  np.testing.assert_allclose(svm.svm_pair_decision(params, xt, kernel=kernel),
                             ref.decision_function(xt), atol=1e-4)
  dec = lambda p, x: svm.svm_decision(p, x, kernel=kernel)
  assert agreement(predict(dec, params, xt), ref.predict(xt)) >= 0.99
  ref.decision_function_shape = "ovr"
  np.testing.assert_allclose(dec(params, xt), ref.decision_function(xt), atol=1e-4)


# ----------------------------------------------------------------------------- gradients
def _small(seed=0, n=12, d=5, k=3):
  rng = np.random.default_rng(seed)
  return rng.standard_normal((n, d)), rng.integers(0, k, n).astype(np.int32)


def test_logistic_objective_gradient():
  x, y = _small()
  p = {"w": 0.3 * jnp.asarray(np.random.default_rng(1).standard_normal((5, 3))),
       "b": jnp.asarray([0.1, -0.2, 0.05])}
  assert check_grad(lambda q: logistic.logistic_objective(q, x, y, 0.7), p).max_rel_error < 1e-7


def test_squared_hinge_objective_gradient():
  x, y = _small()
  p = {"w": 0.3 * jnp.asarray(np.random.default_rng(2).standard_normal((5, 3))),
       "b": jnp.asarray([0.1, -0.2, 0.05])}
  margins = (2 * np.eye(3)[y] - 1) * np.asarray(x @ p["w"] + p["b"])
  assert np.min(np.abs(1 - margins)) > 1e-3  # away from the hinge's kink
  for scaling in (1.0, 0.5, float("inf")):
    objective = lambda q: svm.squared_hinge_objective(q, x, y, 0.7, scaling)
    assert check_grad(objective, p).max_rel_error < 1e-7


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_mlp_loss_gradients(loss):
  x, y = _small(n=10)
  from jaxml import nn
  p = nn.mlp_init(jax.random.key(0), (5, 4, 3), dtype=F64)
  f = lambda q: mlp.mlp_loss(q, x, y, activation="tanh", loss=loss)
  assert check_grad(f, p).max_rel_error < 1e-7


def test_mse_error_is_the_seeds_half_sum_of_squares():
  out, y = jnp.asarray([[0.2, 0.9, -0.1]]), jnp.asarray([1])
  assert float(mlp.example_losses(out, y, "mse")[0]) == pytest.approx(
      0.5 * (0.2 ** 2 + 0.1 ** 2 + 0.1 ** 2))


# ----------------------------------------------------------------------------- search, experiment
def test_grid_and_holdout_search_pick_the_best():
  cands = grid({"C": 1.0, "gamma": 2.0, "kernel": "rbf"}, (0.5, 2.0), ("C", "gamma"))
  assert [(c["C"], c["gamma"]) for c in cands] == [(0.5, 1.0), (0.5, 4.0), (2.0, 1.0), (2.0, 4.0)]
  y = np.arange(40) % 2
  x = y[:, None].astype(float)  # the label is the feature, so a fake classifier can be exact

  def fit_predict(hp, x_fit, y_fit, x_val):  # right only for C = 2, gamma = 1
    return x_val[:, 0] if (hp["C"], hp["gamma"]) == (2.0, 1.0) else 1 - x_val[:, 0]

  best, table = holdout_search(cands, fit_predict, x, y, val_fraction=0.25, seed=0)
  assert (best["C"], best["gamma"], best["kernel"]) == (2.0, 1.0, "rbf")
  assert [r["val_accuracy"] for r in table] == [0.0, 0.0, 1.0, 0.0]


def test_same_seed_same_numbers(digits):
  """The keyed classifiers (visiting order, initialisation, dropout) repeat exactly."""
  x, y, xt = np.asarray(digits[0], np.float32), digits[1], np.asarray(digits[2], np.float32)
  cfg = classical_mnist.tiny(classical_mnist.Config())
  for name in ("perceptron", "mlp_mse"):
    a, b = (classical_mnist.train_one(name, cfg, x, y, xt, key=jax.random.key(5), seed=5,
                                      log=lambda s: None) for _ in range(2))
    np.testing.assert_array_equal(a["pred"], b["pred"])
    for la, lb in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"])):
      np.testing.assert_array_equal(la, lb)


def test_tiny_run_end_to_end(tmp_path):
  """The command line on two classifiers (a closed form; kernels and SMO) to keep it fast:
  every classifier runs in the tests above, the MLPs through train_one as the runner calls it."""
  names = ("ridge", "svm_rbf")
  proc = run_cli("--exp=classical_mnist", "--tiny", f"--workdir={tmp_path}",
                 f"--config.classifiers={','.join(names)}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((tmp_path / "results.json").read_text())
  rows = res["metrics"]["classifiers"]
  assert tuple(rows) == names and res["config"]["classifiers"] == list(names)
  for name, r in rows.items():
    assert 0.0 <= r["test_accuracy"] <= 1.0, name
    assert r["fit_seconds"] > 0 and r["predict_seconds"] > 0 and r["hyperparameters"], name
    assert f"{name} " in proc.stdout  # one progress line per classifier
  assert res["metrics"]["test_accuracy"] == max(r["test_accuracy"] for r in rows.values())
  assert rows[res["metrics"]["best"]]["test_accuracy"] == res["metrics"]["test_accuracy"]
  assert rows["svm_rbf"]["support_vectors"] > 0 and rows["svm_rbf"]["kkt_gap"] <= 1e-3
  assert res["data"]["n_train"] == 300 and res["config"]["train_limit"] == 300
  for png in ("classifiers.png", "confusion_best.png"):
    assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  table = (tmp_path / "classifiers.md").read_text()
  assert all(f"| {name} |" in table for name in rows)
  saved = np.load(tmp_path / "classifiers.npz")
  assert saved["ridge/w"].shape == (784, 10) and saved["svm_rbf/x"].shape[1] == 784
  assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files


def test_only_one_classifier_and_the_kernel_size_guard(tmp_path):
  cfg = dataclasses.replace(classical_mnist.tiny(classical_mnist.Config()), only="lda")
  ctx = RunContext(workdir=tmp_path, data_path=None, seed=0, log=lambda s: None)
  out = classical_mnist.run(cfg, ctx)
  assert list(out["metrics"]["classifiers"]) == ["lda"] and out["metrics"]["best"] == "lda"
  assert sorted(np.load(tmp_path / "classifiers.npz")) == [
      "lda/log_prior", "lda/means", "lda/scalings", "lda/xbar"]
  with pytest.raises(UserError, match="max_kernel_points=100"):
    classical_mnist.run(dataclasses.replace(cfg, only="svm_rbf", max_kernel_points=100), ctx)


def test_bad_config_exits_2_with_one_line(tmp_path):
  proc = run_cli("--exp=classical_mnist", "--config.only=knn", f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(proc, r"config key 'only' must be among ridge, lda")
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("change, key", [
    ({"lda_shrinkage": 0.0}, "lda_shrinkage"), ({"svm_rbf_c": -1.0}, "svm_rbf_c"),
    ({"classifiers": ()}, "classifiers"), ({"classifiers": ("ridge", "svm")}, "classifiers"),
    ({"search_factors": (0.0, 1.0)}, "search_factors"), ({"mlp_ce_dropout": 1.0}, "mlp_ce_dropout"),
    ({"kfda_gamma": -0.1}, "kfda_gamma"), ({"mlp_batch_size": 0}, "batch_size"),
    ({"svm_linear_intercept_scaling": 0.0}, "svm_linear_intercept_scaling"),
])
def test_validate_names_the_bad_key(change, key):
  cfg = dataclasses.replace(classical_mnist.Config(), **change)
  with pytest.raises(UserError, match=f"config key '{key}'"):
    classical_mnist.validate(cfg)
