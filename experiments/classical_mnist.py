"""Classical classifiers on MNIST, each written in JAX (`jaxml.classical`), trained one by one.

    python -m experiments.run --exp=classical_mnist                  # embedded 5000 digits
    python -m experiments.run --exp=classical_mnist --data_path=DIR  # idx: 5000 train, 10k test
    python -m experiments.run --exp=classical_mnist --config.only=svm_rbf
    python -m experiments.run --exp=classical_mnist --config.search=true   # holdout search first

Classifiers (the seed's list, with the kernel variants it skipped): ridge (regularised least
squares), lda / kfda (Fisher, linear and kernel), perceptron / kernel_perceptron, logistic,
svm_linear / svm_rbf / svm_poly, mlp_ce / mlp_mse (one hidden ReLU layer, the two error
functions); `mlp_linear` (the seed's activation-free "MLP") on request. Every classifier sees
the same flattened pixels in [0, 1], float32; kernel methods hold an n x n Gram matrix, hence
`train_limit` 5000 (the bar is set for 5000 training digits) and `max_kernel_points`.

Measured accuracies and run times: README.md and BUILD_NOTES.md.

Writes results.json (metrics.classifiers.<name>.{test_accuracy, fit_seconds,
predict_seconds, hyperparameters, ...}, metrics.test_accuracy of the best), classifiers.png
(test accuracies), classifiers.md (the table), confusion_best.png and classifiers.npz (every
fitted parameter, written atomically). fit_seconds include jit compilation (a fresh process
compiles each classifier once); see benchmarks/classical.py for warm timings.
"""

import dataclasses
import time
from typing import Any, Callable, Literal

import jax
import numpy as np

from experiments.base import Experiment, ReportInfo, RunContext, first_existing
from jaxml import config as config_lib
from jaxml import plots
from jaxml.classical import fisher, least_squares, logistic, mlp, perceptron, svm
from jaxml.classical.common import grid, holdout_search, predict
from jaxml.classical.kernels import Kernel, resolve_gamma
from jaxml.config import require
from jaxml.data.mnist import load_mnist
from jaxml.errors import UserError
from jaxml.io import atomic_path
from jaxml.train import TrainConfig, validate_train_config

DEFAULT_CLASSIFIERS = ("ridge", "lda", "kfda", "perceptron", "kernel_perceptron", "logistic",
                       "svm_linear", "svm_rbf", "svm_poly", "mlp_ce", "mlp_mse")
ALL_CLASSIFIERS = DEFAULT_CLASSIFIERS + ("mlp_linear",)
KERNEL_CLASSIFIERS = ("kfda", "kernel_perceptron", "svm_rbf", "svm_poly")
KernelChoice = Literal["linear", "poly", "rbf", "sigmoid"]


@dataclasses.dataclass(frozen=True)
class Config:
  """Every hyper-parameter, with scikit-learn's names where it has one (alpha, C, gamma...).

  Defaults were chosen on the embedded training digits only, never the test set: the holdout
  search (`search=true`, factors 0.1-10), then 4-fold cross-validation between near-ties; see
  BUILD_NOTES.md for both and for the measured accuracies.
  """
  classifiers: tuple[str, ...] = DEFAULT_CLASSIFIERS  # trained in this order
  only: str = ""                    # train just this one (e.g. svm_rbf); overrides classifiers
  train_limit: int = 5000           # stratified subset of the training images (0 = all)
  max_kernel_points: int = 12000    # kernel methods refuse more training points (n^2 floats)
  kernel_block: int = 1024          # rows of kernel values formed at a time (memory only)
  # --- holdout search over the main hyper-parameters (off: use the values below)
  search: bool = False              # search, then refit on all training data with the winner
  search_fraction: float = 0.2      # share of the training data held out to score candidates
  search_factors: tuple[float, ...] = (0.3, 1.0, 3.0)  # multiply each searched value
  # --- regularised least squares
  ridge_alpha: float = 300.0        # L2 weight alpha (searched)
  # --- Fisher: LDA
  lda_shrinkage: float = 0.3        # (1-s) S_W + s tr(S_W)/d I, scikit-learn's meaning (searched)
  # --- Fisher: kernel (KFDA)
  kfda_kernel: KernelChoice = "rbf"
  kfda_gamma: float = 0.027         # kernel width (~2x "scale" on MNIST); 0 = "scale" (searched)
  kfda_degree: int = 3              # poly kernel only
  kfda_coef0: float = 1.0           # poly / sigmoid offset
  kfda_reg: float = 1e-5            # mu, weight of ||w||^2 in the within-class scatter (searched)
  kfda_landmarks: int = 0           # 0 = exact; m > 0 = Nystroem with m landmarks
  # --- perceptron
  perceptron_epochs: int = 10       # passes over the training data
  perceptron_average: bool = True   # averaged perceptron (False: last weights)
  # --- kernel perceptron (dual)
  kperc_kernel: KernelChoice = "poly"
  kperc_gamma: float = 0.4          # (gamma <x, x'> + coef0)^degree; 0 = "scale" (searched)
  kperc_degree: int = 3             # poly only
  kperc_coef0: float = 1.0          # poly / sigmoid offset
  kperc_epochs: int = 5             # passes over the training data
  kperc_average: bool = True        # averaged dual coefficients (False: last ones)
  # --- multinomial logistic regression
  logistic_c: float = 0.1           # inverse L2 strength C, as LogisticRegression(C) (searched)
  logistic_max_iter: int = 300      # L-BFGS iterations at most
  # --- linear SVM (one-vs-rest, squared hinge, primal L-BFGS)
  svm_linear_c: float = 0.03        # C, as LinearSVC(C) (searched)
  svm_linear_intercept_scaling: float = 1.0  # LinearSVC's: bias penalised as b^2 / s^2; inf: not
  svm_linear_max_iter: int = 1000   # L-BFGS iterations at most (5000 digits: ~300 to converge)
  # --- kernel SVMs (one-vs-one dual, SMO)
  svm_rbf_c: float = 3.0            # box bound C (searched)
  svm_rbf_gamma: float = 0.027      # ~2x "scale" (1 / (d Var(x)) = 0.0134 on MNIST) (searched)
  svm_poly_c: float = 3.0           # box bound C (searched)
  svm_poly_gamma: float = 0.0       # 0 = "scale"
  svm_poly_degree: int = 3          # polynomial degree
  svm_poly_coef0: float = 1.0       # polynomial offset (SVC's default: 0)
  svm_tol: float = 1e-3             # stop when the maximal KKT violation is below this (libsvm)
  svm_max_iter: int = 100_000       # SMO steps at most (all pairs run together)
  # --- MLP (mlp_ce, mlp_mse, mlp_linear)
  mlp_hidden: tuple[int, ...] = (512,)  # hidden layer sizes (mlp_linear: the seed's 256,256)
  mlp_activation: Literal["relu", "tanh", "sigmoid"] = "relu"  # between layers
  mlp_ce_dropout: float = 0.5       # on hidden units in training, cross-entropy net
  mlp_mse_dropout: float = 0.2      # the same for the squared-error net
  mlp_optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
  mlp_learning_rate: float = 1e-3   # peak step size
  mlp_lr_schedule: Literal["constant", "cosine"] = "cosine"  # cosine decays to 0 over the epochs
  mlp_batch_size: int = 64          # examples per step
  mlp_epochs: int = 60              # epochs (or ceil(mlp_max_steps / steps per epoch))
  mlp_max_steps: int = 0            # if > 0: train this many steps instead of mlp_epochs
  mlp_patience: int = 0             # early-stop patience in epochs (0: full schedule)
  mlp_val_fraction: float = 0.1     # holdout for choosing the best epoch


def seed_preset() -> Config:
  """The seed's settings: scikit-learn's defaults (RidgeClassifier alpha 1, LDA without
  shrinkage (here the least that keeps S_W invertible), Perceptron, LogisticRegression C 1
  with 100 lbfgs steps, LinearSVC C 1, SVC C 1 with gamma "scale" and poly coef0 0) and its
  TensorFlow MLP (Adam 0.01, batch 128, 1000 steps, no dropout; its linear 256-256 net is
  `mlp_linear`). The kernel variants it skipped keep our defaults."""
  return Config(classifiers=DEFAULT_CLASSIFIERS + ("mlp_linear",), ridge_alpha=1.0,
                lda_shrinkage=1e-4, perceptron_average=False, logistic_c=1.0,
                logistic_max_iter=100, svm_linear_c=1.0, svm_rbf_c=1.0, svm_rbf_gamma=0.0,
                svm_poly_c=1.0, svm_poly_coef0=0.0, mlp_ce_dropout=0.0, mlp_mse_dropout=0.0,
                mlp_learning_rate=0.01, mlp_lr_schedule="constant", mlp_batch_size=128,
                mlp_max_steps=1000)


def tiny(cfg: Config) -> Config:
  """Seconds-long: 300 training digits, few passes and iterations, a small MLP."""
  return dataclasses.replace(cfg, train_limit=300, perceptron_epochs=2, kperc_epochs=1,
                             logistic_max_iter=20, svm_linear_max_iter=20, svm_max_iter=2000,
                             mlp_hidden=(16,), mlp_epochs=2, mlp_max_steps=0,
                             search_factors=(0.5, 2.0))


def validate(cfg: Config) -> None:
  config_lib.check_choices(cfg)
  names = (cfg.only,) if cfg.only else cfg.classifiers
  require(bool(names), "classifiers", "at least one classifier", cfg.classifiers)
  for name in names:
    require(name in ALL_CLASSIFIERS, "only" if cfg.only else "classifiers",
            f"among {', '.join(ALL_CLASSIFIERS)}", name)
  require(cfg.train_limit >= 0, "train_limit", ">= 0 (0 = all)", cfg.train_limit)
  require(cfg.max_kernel_points >= 1, "max_kernel_points", "a positive integer",
          cfg.max_kernel_points)
  require(cfg.kernel_block >= 1, "kernel_block", "a positive integer", cfg.kernel_block)
  require(0 < cfg.search_fraction < 1, "search_fraction", "in (0, 1)", cfg.search_fraction)
  require(bool(cfg.search_factors) and all(f > 0 for f in cfg.search_factors), "search_factors",
          "positive factors such as 0.3,1,3", cfg.search_factors)
  for key in ("ridge_alpha", "kfda_reg", "logistic_c", "svm_linear_c",
              "svm_linear_intercept_scaling", "svm_rbf_c", "svm_poly_c", "svm_tol",
              "mlp_learning_rate"):
    require(getattr(cfg, key) > 0, key, "a positive number", getattr(cfg, key))
  require(0 < cfg.lda_shrinkage <= 1, "lda_shrinkage",
          "in (0, 1] (MNIST's within-class covariance is singular without it)", cfg.lda_shrinkage)
  for key in ("kfda_gamma", "kperc_gamma", "svm_rbf_gamma", "svm_poly_gamma"):
    require(getattr(cfg, key) >= 0, key, ">= 0 (0 = scale)", getattr(cfg, key))
  for key in ("kfda_degree", "kperc_degree", "svm_poly_degree", "perceptron_epochs",
              "kperc_epochs", "logistic_max_iter", "svm_linear_max_iter", "svm_max_iter"):
    require(getattr(cfg, key) >= 1, key, "a positive integer", getattr(cfg, key))
  require(cfg.kfda_landmarks >= 0, "kfda_landmarks", ">= 0 (0 = exact)", cfg.kfda_landmarks)
  for key in ("mlp_ce_dropout", "mlp_mse_dropout"):
    require(0 <= getattr(cfg, key) < 1, key, "in [0, 1)", getattr(cfg, key))
  require(all(h >= 1 for h in cfg.mlp_hidden), "mlp_hidden", "positive sizes such as 256,128",
          cfg.mlp_hidden)
  validate_train_config(_train_config(cfg))


def _train_config(cfg: Config) -> TrainConfig:
  return TrainConfig(optimizer=cfg.mlp_optimizer, learning_rate=cfg.mlp_learning_rate,
                     lr_schedule=cfg.mlp_lr_schedule, batch_size=cfg.mlp_batch_size,
                     epochs=cfg.mlp_epochs, max_steps=cfg.mlp_max_steps,
                     patience=cfg.mlp_patience, val_fraction=cfg.mlp_val_fraction)


# ----------------------------------------------------------------------------- classifiers
@dataclasses.dataclass(frozen=True)
class Spec:
  """How the experiment drives one classifier of jaxml.classical."""
  hyper: Callable[[Config], dict]       # its hyper-parameters, read from the config
  fit: Callable[..., dict]              # (hp, x, y, key, cfg) -> fitted parameters
  decision: Callable[..., Any]          # (hp, params, x, cfg) -> scores f[n, K]
  search: tuple[str, ...] = ()          # the hyper-parameters a holdout search varies


def _kernel(hp: dict) -> Kernel:
  return Kernel(hp["kernel"], hp.get("gamma", 0.0), hp.get("degree", 3), hp.get("coef0", 0.0))


def _kernel_hp(name, gamma, degree, coef0) -> dict:
  return Kernel(name, gamma, degree, coef0).describe()


def _mlp(loss: str, linear: bool = False) -> Spec:
  def hyper(cfg):
    hidden = (256, 256) if linear else cfg.mlp_hidden
    return {"loss": loss, "hidden": list(hidden),
            "activation": "identity" if linear else cfg.mlp_activation,
            "dropout": 0.0 if linear else getattr(cfg, f"mlp_{loss}_dropout"),
            **{k: v for k, v in dataclasses.asdict(_train_config(cfg)).items()
               if k in ("optimizer", "learning_rate", "lr_schedule", "batch_size", "epochs",
                        "max_steps", "val_fraction")}}

  def fit(hp, x, y, key, cfg):
    return mlp.mlp_fit(x, y, key, n_classes=10, hidden=tuple(hp["hidden"]),
                       activation=hp["activation"], loss=loss, train=_train_config(cfg),
                       dropout=hp["dropout"])

  return Spec(hyper, fit, lambda hp, p, x, cfg: mlp.mlp_decision(p, x, activation=hp["activation"]))


SPECS: dict[str, Spec] = {
    "ridge": Spec(
        lambda cfg: {"alpha": cfg.ridge_alpha},
        lambda hp, x, y, key, cfg: least_squares.ridge_fit(x, y, n_classes=10, alpha=hp["alpha"]),
        lambda hp, p, x, cfg: least_squares.ridge_decision(p, x), search=("alpha",)),
    "lda": Spec(
        lambda cfg: {"shrinkage": cfg.lda_shrinkage},
        lambda hp, x, y, key, cfg: fisher.lda_fit(x, y, n_classes=10,
                                                  shrinkage=min(hp["shrinkage"], 1.0)),
        lambda hp, p, x, cfg: fisher.lda_decision(p, x), search=("shrinkage",)),
    "kfda": Spec(
        lambda cfg: dict(_kernel_hp(cfg.kfda_kernel, cfg.kfda_gamma, cfg.kfda_degree,
                                    cfg.kfda_coef0), reg=cfg.kfda_reg,
                         landmarks=cfg.kfda_landmarks),
        lambda hp, x, y, key, cfg: fisher.kfda_fit(
            x, y, n_classes=10, kernel=_kernel(hp), reg=hp["reg"], landmarks=hp["landmarks"],
            block_rows=cfg.kernel_block),
        lambda hp, p, x, cfg: fisher.kfda_decision(p, x, kernel=_kernel(hp),
                                                   block_rows=cfg.kernel_block),
        search=("gamma", "reg")),
    "perceptron": Spec(
        lambda cfg: {"epochs": cfg.perceptron_epochs, "average": cfg.perceptron_average},
        lambda hp, x, y, key, cfg: perceptron.perceptron_fit(
            x, y, key, n_classes=10, epochs=hp["epochs"], average=hp["average"]),
        lambda hp, p, x, cfg: perceptron.perceptron_decision(p, x)),
    "kernel_perceptron": Spec(
        lambda cfg: dict(_kernel_hp(cfg.kperc_kernel, cfg.kperc_gamma, cfg.kperc_degree,
                                    cfg.kperc_coef0), epochs=cfg.kperc_epochs,
                         average=cfg.kperc_average),
        lambda hp, x, y, key, cfg: perceptron.kernel_perceptron_fit(
            x, y, key, n_classes=10, kernel=_kernel(hp), epochs=hp["epochs"],
            average=hp["average"], block_rows=cfg.kernel_block),
        lambda hp, p, x, cfg: perceptron.kernel_perceptron_decision(
            p, x, kernel=_kernel(hp), block_rows=cfg.kernel_block),
        search=("gamma",)),
    "logistic": Spec(
        lambda cfg: {"C": cfg.logistic_c, "max_iter": cfg.logistic_max_iter},
        lambda hp, x, y, key, cfg: logistic.logistic_fit(x, y, n_classes=10, c=hp["C"],
                                                         max_iter=hp["max_iter"]),
        lambda hp, p, x, cfg: logistic.logistic_decision(p, x), search=("C",)),
    "svm_linear": Spec(
        lambda cfg: {"C": cfg.svm_linear_c, "intercept_scaling": cfg.svm_linear_intercept_scaling,
                     "max_iter": cfg.svm_linear_max_iter},
        lambda hp, x, y, key, cfg: svm.linear_svm_fit(
            x, y, n_classes=10, c=hp["C"], intercept_scaling=hp["intercept_scaling"],
            max_iter=hp["max_iter"]),
        lambda hp, p, x, cfg: svm.linear_svm_decision(p, x), search=("C",)),
    "svm_rbf": Spec(
        lambda cfg: dict(_kernel_hp("rbf", cfg.svm_rbf_gamma, 3, 0.0), C=cfg.svm_rbf_c),
        lambda hp, x, y, key, cfg: svm.svm_fit(
            x, y, n_classes=10, kernel=_kernel(hp), c=hp["C"], tol=cfg.svm_tol,
            max_iter=cfg.svm_max_iter, block_rows=cfg.kernel_block),
        lambda hp, p, x, cfg: svm.svm_decision(p, x, kernel=_kernel(hp),
                                               block_rows=cfg.kernel_block),
        search=("C", "gamma")),
    "svm_poly": Spec(
        lambda cfg: dict(_kernel_hp("poly", cfg.svm_poly_gamma, cfg.svm_poly_degree,
                                    cfg.svm_poly_coef0), C=cfg.svm_poly_c),
        lambda hp, x, y, key, cfg: svm.svm_fit(
            x, y, n_classes=10, kernel=_kernel(hp), c=hp["C"], tol=cfg.svm_tol,
            max_iter=cfg.svm_max_iter, block_rows=cfg.kernel_block),
        lambda hp, p, x, cfg: svm.svm_decision(p, x, kernel=_kernel(hp),
                                               block_rows=cfg.kernel_block),
        search=("C",)),
    "mlp_ce": _mlp("ce"),
    "mlp_mse": _mlp("mse"),
    "mlp_linear": _mlp("ce", linear=True),
}

# What results.json reports besides accuracy and time: solver diagnostics worth a glance.
DIAGNOSTICS = {"iterations": "iterations", "objective": "objective",
               "mistakes": "mistakes_per_epoch", "kkt_gap": "kkt_gap"}


def hyperparameters(name: str, cfg: Config, x) -> dict:
  """The classifier's hyper-parameters, gamma=0 ("scale") resolved on the training data x
  (once, so that a search scales the resolved value)."""
  hp = SPECS[name].hyper(cfg)
  if hp.get("gamma") == 0:
    hp["gamma"] = resolve_gamma(_kernel(hp), x).gamma
  return hp


def train_one(name: str, cfg: Config, x, y, x_test, *, key, seed: int, log=print) -> dict:
  """Fits classifier `name` (after a holdout search if cfg.search) and predicts x_test.

  Returns {"params", "pred", "hyperparameters", "fit_seconds", "predict_seconds", ...}."""
  spec = SPECS[name]
  hp = hyperparameters(name, cfg, x)
  out = {}
  t0 = time.perf_counter()
  searched = [k for k in spec.search if k in hp]  # a linear kernel has no gamma
  if cfg.search and searched:
    def fit_predict(cand, x_fit, y_fit, x_val):
      decision = lambda p, x: spec.decision(cand, p, x, cfg)
      return predict(decision, spec.fit(cand, x_fit, y_fit, key, cfg), x_val)
    hp, table = holdout_search(grid(hp, cfg.search_factors, searched), fit_predict, x, y,
                               val_fraction=cfg.search_fraction, seed=seed)
    out["search"] = table
    out["search_seconds"] = time.perf_counter() - t0
    log(f"  {name}: searched {', '.join(searched)} over {len(table)} candidates in "
        f"{out['search_seconds']:.1f}s; best " + ", ".join(f"{k}={hp[k]:.4g}" for k in searched))
  t0 = time.perf_counter()
  params = jax.block_until_ready(spec.fit(hp, x, y, key, cfg))
  out["fit_seconds"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  out["pred"] = predict(lambda p, x: spec.decision(hp, p, x, cfg), params, x_test)
  out["predict_seconds"] = time.perf_counter() - t0
  for k, label in DIAGNOSTICS.items():
    if k in params:
      v = np.asarray(params[k])
      out[label] = v.tolist() if k == "mistakes" else float(v.max())
  if "x" in params and name != "kfda":  # support vectors / mistake-driven examples kept
    out["support_vectors"] = int(params["x"].shape[0])
  return dict(out, params=params, hyperparameters=hp)


# ----------------------------------------------------------------------------- outputs
def save_params(path, fitted: dict) -> None:
  """Every fitted parameter as classifiers.npz, keys '<classifier>/<path in the pytree>'."""
  arrays = {}
  for name, params in fitted.items():
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    for key_path, leaf in leaves:
      arrays[f"{name}/{jax.tree_util.keystr(key_path, simple=True, separator='/')}"] = \
          np.asarray(leaf)
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez_compressed(f, **arrays)  # pixels compress ~4x


def markdown_table(rows: dict, source: str) -> str:
  lines = [f"Classical classifiers on {source}", "",
           "| classifier | test accuracy | fit s | predict s | hyper-parameters |",
           "| --- | ---: | ---: | ---: | --- |"]
  for name, r in rows.items():
    hp = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in r["hyperparameters"].items())
    lines.append(f"| {name} | {r['test_accuracy']:.4f} | {r['fit_seconds']:.2f} | "
                 f"{r['predict_seconds']:.2f} | {hp} |")
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- run
def run(cfg: Config, ctx: RunContext) -> dict:
  names = (cfg.only,) if cfg.only else tuple(cfg.classifiers)
  t_start = time.perf_counter()
  data = load_mnist(ctx.data_path, train_limit=cfg.train_limit)
  x = np.asarray(data.x_train.reshape(len(data.x_train), -1), np.float32)
  x_test = np.asarray(data.x_test.reshape(len(data.x_test), -1), np.float32)
  y, y_test = data.y_train, data.y_test
  if len(data.class_names) != 10:
    raise UserError(f"{data.source} has {len(data.class_names)} classes; this experiment "
                    f"expects the 10 MNIST classes")
  big = [n for n in names if n in KERNEL_CLASSIFIERS
         and not (n == "kfda" and cfg.kfda_landmarks)]
  if big and len(y) > cfg.max_kernel_points:
    raise UserError(f"{', '.join(big)} hold an n x n Gram matrix and n = {len(y)} training "
                    f"points exceeds max_kernel_points={cfg.max_kernel_points}; set "
                    f"--config.train_limit=5000 (or kfda_landmarks for KFDA)")
  ctx.log(f"data: {data.source}: {len(y)} train / {len(y_test)} test, {x.shape[1]} features; "
          f"classifiers: {', '.join(names)}")
  load_s = time.perf_counter() - t_start
  root = jax.random.key(ctx.seed)
  rows, fitted, preds = {}, {}, {}
  for name in names:
    key = jax.random.fold_in(root, ALL_CLASSIFIERS.index(name))  # the same whatever else runs
    r = train_one(name, cfg, x, y, x_test, key=key, seed=ctx.seed, log=ctx.log)
    fitted[name], preds[name] = r.pop("params"), r.pop("pred")
    rows[name] = dict(test_accuracy=float(np.mean(preds[name] == y_test)), **r)
    ctx.log(f"{name:18s} test accuracy {rows[name]['test_accuracy']:.4f}  "
            f"fit {r['fit_seconds']:6.2f}s  predict {r['predict_seconds']:5.2f}s")
  best = max(rows, key=lambda n: rows[n]["test_accuracy"])
  source = data.source.split(" (")[0]
  plots.bar_chart({n: r["test_accuracy"] for n, r in rows.items()},
                  ctx.workdir / "classifiers.png", f"classical classifiers on {source}",
                  ylabel="test accuracy")
  with atomic_path(ctx.workdir / "classifiers.md") as tmp:
    with open(tmp, "w") as f:
      f.write(markdown_table(rows, data.source))
  cm = plots.confusion_matrix(y_test, preds[best], len(data.class_names))
  plots.plot_confusion(cm, data.class_names, ctx.workdir / "confusion_best.png",
                       f"{best} on {source} (test accuracy {rows[best]['test_accuracy']:.3f})")
  save_params(ctx.workdir / "classifiers.npz", fitted)
  return {"metrics": {"classifiers": rows, "test_accuracy": rows[best]["test_accuracy"],
                      "best": best},
          "timing": {"load_s": load_s,
                     "fit_s": sum(r["fit_seconds"] for r in rows.values()),
                     "predict_s": sum(r["predict_seconds"] for r in rows.values()),
                     "search_s": sum(r.get("search_seconds", 0.0) for r in rows.values())},
          "data": data.describe(),
          "confusion_best": cm.tolist()}


def headline(results: dict) -> str:
  """The report's cell: the best classifier and how many ran."""
  m = results["metrics"]["classifiers"]
  best = max(m, key=lambda k: m[k]["test_accuracy"])
  return f"best {best} {m[best]['test_accuracy']:.3f} ({len(m)} classifiers, table below)"


def classifier_table(results: dict) -> list:
  """The report's table under the experiment: one row per classifier, seed preset and default.
  results: {preset: results.json or None (not run or failed)}."""
  per = {p: (r["metrics"]["classifiers"] if r else {}) for p, r in results.items()}
  names = list(dict.fromkeys(k for p in ("default", "seed") for k in per.get(p, {})))
  if not names:
    return []
  rows = ["| classifier | seed's figure | ours, `--preset=seed` | ours, default | fit s "
          "(seed / default) |", "|---|---|---|---|---|"]
  for name in names:
    acc = lambda p: (f"{per[p][name]['test_accuracy']:.3f}" if name in per.get(p, {}) else
                     "not in this preset" if results.get(p) else "no result")
    fit = " / ".join(f"{per[p][name]['fit_seconds']:.1f}" if name in per.get(p, {}) else "-"
                     for p in ("seed", "default"))
    rows.append(f"| {name} | - (not in the seed's text) | {acc('seed')} | {acc('default')} "
                f"| {fit} |")
  return rows


EXPERIMENT = Experiment(
    name="classical_mnist",
    description="ridge, Fisher (LDA, KFDA), perceptrons, logistic, SVMs, MLPs in JAX",
    presets={"default": Config(), "seed": seed_preset()},
    tiny=tiny, validate=validate, run=run,
    report=ReportInfo(
        project="000_0ca520ce5284708a.txt",
        seed_figure="- (accuracies computed but the summary cell's output is not in the "
                    "seed's text)",
        differences="Seed: scikit-learn on MNIST. Ours are written in JAX; the seed preset is "
                    "scikit-learn's defaults plus the seed's activation-free MLP (mlp_linear), "
                    "the default our tuned hyper-parameters. Embedded data: 4000 train / 1000 "
                    "test digits.",
        key_figures=("classifiers.png",), data=lambda root: first_existing(root, "mnist"),
        headline=headline, extra_table=classifier_table, typical_s=(30, 26, 80, 73)))
