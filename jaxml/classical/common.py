"""Helpers the classical classifiers share: 1-of-K targets, L-BFGS, a holdout search.

Conventions of `jaxml.classical`: a classifier is a pair of pure functions
`<name>_fit(x, y, *, n_classes, <hyper-parameters>) -> params` (a dict of arrays) and
`<name>_decision(params, x) -> scores f[n, n_classes]` whose argmax is the predicted class.
x: f[n, d] (flattened images), y: int[n] in [0, n_classes). Every function keeps the dtype of
x: the experiment passes float32, the tests float64.
"""

import itertools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxml.data.splits import stratified_holdout
from jaxml.lbfgs import lbfgs_steps


def one_hot(y, n_classes: int, dtype=jnp.float32):
  """int[n] -> f[n, n_classes] with t[i, y_i] = 1: the 1-of-K target coding."""
  return jax.nn.one_hot(y, n_classes, dtype=dtype)


def predict(decision_fn: Callable, params, x) -> np.ndarray:
  """Predicted classes int[n]: the argmax of a classifier's scores."""
  return np.asarray(jnp.argmax(decision_fn(params, x), axis=-1))


def lbfgs_minimize(fun: Callable, params, *args, max_iter: int, tol: float):
  """Minimises the smooth `fun(params, *args)` with optax's L-BFGS (zoom line search).

  Stops after `max_iter` iterations or when the largest gradient component falls below `tol`
  (scipy's L-BFGS-B `pgtol`, which scikit-learn's lbfgs solvers set to their `tol`).
  Traceable: call it inside `jax.jit`. Returns (params, iterations, final value).
  """
  opt = optax.lbfgs()
  params, state = lbfgs_steps(lambda p: fun(p, *args), opt, params, opt.init(params),
                              until=max_iter, tol=tol)
  return params, optax.tree.get(state, "count"), optax.tree.get(state, "value")


def grid(base: dict, factors: Sequence[float], keys: Sequence[str]) -> list[dict]:
  """Candidates around `base`: every product of `factors` applied to the values of `keys`
  (multiplicative, since regularisation strengths and kernel widths act on a log scale)."""
  out = []
  for combo in itertools.product(factors, repeat=len(keys)):
    out.append(dict(base, **{k: base[k] * f for k, f in zip(keys, combo)}))
  return out


def holdout_search(candidates: Sequence[dict], fit_predict: Callable, x, y, *,
                   val_fraction: float, seed: int) -> tuple[dict, list[dict]]:
  """Picks the candidate with the best accuracy on a stratified holdout of the training data.

  Args:
    candidates: hyper-parameter dicts to try.
    fit_predict: (hyper-parameters, x_fit, y_fit, x_val) -> predicted classes int[n_val].
  Returns:
    (best candidate, [{**candidate, "val_accuracy"}, ...] in the order tried); ties go to the
    candidate tried first.
  """
  keep, held = stratified_holdout(np.asarray(y), val_fraction, seed)
  table = []
  for hp in candidates:
    pred = fit_predict(hp, x[keep], y[keep], x[held])
    table.append(dict(hp, val_accuracy=float(np.mean(np.asarray(pred) == np.asarray(y)[held]))))
  best = max(range(len(table)), key=lambda i: (table[i]["val_accuracy"], -i))
  return dict(candidates[best]), table
