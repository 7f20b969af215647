"""Fit and predict seconds of each jaxml.classical classifier against scikit-learn's counterpart.

    python benchmarks/classical.py                      # embedded digits: 4000 train / 1000 test
    python benchmarks/classical.py --data_path=DIR --n_train=5000   # MNIST idx files
    python benchmarks/classical.py --only=svm_rbf,logistic --repeats=5

Both sides get the same float32 pixels in [0, 1] and the same hyper-parameters (the
classical_mnist experiment's defaults). Ours is timed twice: the first fit in the process
(including jit compilation, what a one-off run pays) and the median of `--repeats` warm fits
(compiled code, what a search or a second run pays). Predict times are warm. scikit-learn
runs with its default BLAS threads; JAX with XLA's. Prints one markdown table.
"""

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import discriminant_analysis, linear_model, neural_network, svm  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from experiments import classical_mnist as exp  # noqa: E402
from jaxml.data.mnist import load_mnist  # noqa: E402


def sklearn_counterpart(name: str, hp: dict, cfg: exp.Config):
  """(label, estimator) with our hyper-parameters, or None where scikit-learn has none."""
  mlp_kw = dict(hidden_layer_sizes=tuple(hp.get("hidden", ())), solver="adam",
                learning_rate_init=cfg.mlp_learning_rate, batch_size=cfg.mlp_batch_size,
                max_iter=cfg.mlp_epochs, alpha=1e-4, random_state=0)
  return {
      "ridge": lambda: ("RidgeClassifier", linear_model.RidgeClassifier(alpha=hp.get("alpha"))),
      "lda": lambda: ("LinearDiscriminantAnalysis(eigen)",
                      discriminant_analysis.LinearDiscriminantAnalysis(
                          solver="eigen", shrinkage=hp.get("shrinkage"))),
      "perceptron": lambda: ("Perceptron (not averaged)",
                             linear_model.Perceptron(max_iter=hp.get("epochs"), tol=None,
                                                     random_state=0)),
      "logistic": lambda: ("LogisticRegression(lbfgs)",
                           linear_model.LogisticRegression(C=hp.get("C"),
                                                           max_iter=hp.get("max_iter"))),
      "svm_linear": lambda: ("LinearSVC", svm.LinearSVC(C=hp.get("C"))),
      "svm_rbf": lambda: ("SVC(rbf)", svm.SVC(C=hp.get("C"), gamma=hp.get("gamma"))),
      "svm_poly": lambda: ("SVC(poly)", svm.SVC(kernel="poly", C=hp.get("C"),
                                                gamma=hp.get("gamma"), degree=hp.get("degree"),
                                                coef0=hp.get("coef0"))),
      "mlp_ce": lambda: ("MLPClassifier", neural_network.MLPClassifier(**mlp_kw)),
      "mlp_mse": lambda: ("MLPRegressor on one-hot", neural_network.MLPRegressor(**mlp_kw)),
  }.get(name, lambda: None)()


def timed(f):
  t0 = time.perf_counter()
  out = jax.block_until_ready(f())
  return out, time.perf_counter() - t0


def bench_ours(name, cfg, x, y, xt, yt, repeats: int) -> dict:
  spec, hp = exp.SPECS[name], exp.hyperparameters(name, cfg, x)
  key = jax.random.key(0)
  fit = lambda: spec.fit(hp, x, y, key, cfg)
  params, first = timed(fit)
  warm = [timed(fit)[1] for _ in range(repeats)]
  spec.decision(hp, params, xt, cfg)  # compile
  scores, pred_s = timed(lambda: spec.decision(hp, params, xt, cfg))
  acc = float(np.mean(np.asarray(scores).argmax(-1) == yt))
  return {"hp": hp, "first": first, "warm": float(np.median(warm)), "predict": pred_s, "acc": acc}


def bench_sklearn(name, hp, cfg, x, y, xt, yt):
  made = sklearn_counterpart(name, hp, cfg)
  if made is None:
    return None
  label, est = made
  target = np.eye(10, dtype=np.float32)[y] if name == "mlp_mse" else y
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    _, fit_s = timed(lambda: est.fit(x, target))
  out, pred_s = timed(lambda: est.predict(xt))
  pred = np.asarray(out).argmax(-1) if name == "mlp_mse" else out
  return {"label": label, "fit": fit_s, "predict": pred_s, "acc": float(np.mean(pred == yt))}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--data_path", default=None, help="MNIST idx directory (default: embedded)")
  ap.add_argument("--n_train", type=int, default=5000, help="training digits (at most)")
  ap.add_argument("--repeats", type=int, default=3, help="warm fits of ours, median reported")
  ap.add_argument("--only", default="", help="comma-separated classifier names")
  args = ap.parse_args()
  cfg = exp.Config()
  data = load_mnist(args.data_path, train_limit=args.n_train)
  x = data.x_train.reshape(len(data.x_train), -1).astype(np.float32)
  xt = data.x_test.reshape(len(data.x_test), -1).astype(np.float32)
  y, yt = data.y_train, data.y_test
  names = [n for n in args.only.split(",") if n] or list(exp.DEFAULT_CLASSIFIERS)
  print(f"{data.source}: {len(y)} train / {len(yt)} test; {os.cpu_count()} CPUs, "
        f"jax {jax.__version__} on {jax.default_backend()}\n", flush=True)
  rows = ["| classifier | ours acc | ours fit s (first, incl. compile) | ours fit s (warm) | "
          "ours predict s | scikit-learn | sklearn acc | sklearn fit s | sklearn predict s |",
          "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
  for name in names:
    ours = bench_ours(name, cfg, x, y, xt, yt, args.repeats)
    sk = bench_sklearn(name, ours["hp"], cfg, x, y, xt, yt)
    theirs = (f"{sk['label']} | {sk['acc']:.4f} | {sk['fit']:.2f} | {sk['predict']:.2f}"
              if sk else "none | | |")
    rows.append(f"| {name} | {ours['acc']:.4f} | {ours['first']:.2f} | {ours['warm']:.2f} | "
                f"{ours['predict']:.2f} | {theirs} |")
    print(rows[-1], file=sys.stderr, flush=True)  # progress
  print("\n".join(rows))


if __name__ == "__main__":
  main()
