"""Train, evaluate and draw a classifier: the steps every classification experiment shares.

An experiment supplies the data splits and the model's `init`/`apply`; this module wires them
to the train loop, evaluates the best-validation parameters on every split, and writes the
curves and confusion matrices. It returns what the runner puts in results.json.
"""

import shutil
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxml import plots
from jaxml.losses import classification_loss, classification_sums, normalize_sums
from jaxml.seeds import mean_std_text, summarize
from jaxml.train import TrainConfig, fit


def make_predict(apply_fn: Callable, batch_size: int) -> Callable:
  """(params, x f[n, ...], mask=None) -> logits f32[n, classes], in fixed-size batches so the
  model is compiled once whatever n is (the last batch is zero-padded and the padding cut off).

  apply_fn: (params, x) -> logits, or (params, x, mask) -> logits when predict gets a mask
  f[n, time] (variable-length sequences); padding rows get an all-zero mask.
  """
  apply_batch = jax.jit(apply_fn)

  def predict(params, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    n = len(x)
    nb = -(-n // batch_size)
    pad = lambda a: np.concatenate([a, np.zeros((nb * batch_size - n,) + a.shape[1:], a.dtype)])
    xp = pad(x)
    mp = None if mask is None else pad(np.asarray(mask))
    rows = lambda a, i: a[i * batch_size:(i + 1) * batch_size]
    out = [np.asarray(apply_batch(params, rows(xp, i)) if mp is None else
                      apply_batch(params, rows(xp, i), rows(mp, i))) for i in range(nb)]
    return np.concatenate(out)[:n]

  return predict


def classifier_loss_fn(apply_fn: Callable, augment: Callable | None = None) -> Callable:
  """The train loop's loss_fn for a classifier: softmax cross-entropy of apply_fn's logits on
  batch {"x", "y", "weight"}, with `augment(x, key)` applied to training batches only.

  A batch with a "mask" entry (f[batch, time], variable-length sequences) passes it on as
  `apply_fn(..., mask=batch["mask"])`; without one apply_fn is called as before.
  """

  def loss_fn(params, batch, *, train, key):
    x = batch["x"]
    if train and augment is not None:
      k_aug, key = jax.random.split(key)
      x = augment(x, k_aug)
    extra = {"mask": batch["mask"]} if "mask" in batch else {}
    logits = apply_fn(params, x, train=train, key=key, **extra)
    return classification_loss(logits, batch["y"], batch["weight"])

  return loss_fn


def train_classifier(cfg: TrainConfig, *, splits, class_names, init_fn: Callable,
                     apply_fn: Callable, key, workdir, log=print, restart: bool = False,
                     signature: dict | None = None, title: str = "",
                     augment: Callable | None = None, ensemble: int = 1) -> tuple[dict, dict]:
  """Fits `apply_fn` on splits["train"], early-stops on splits["val"], tests on splits["test"].

  Args:
    splits: {"train" | "val" | "test": (x f32[n, ...], y int32[n])}, or (x, y, mask f32[n, time])
      for variable-length sequences (1 on valid steps; see `jaxml.data.splits.length_mask`).
    init_fn: key -> params. apply_fn: (params, x, *, train, key) -> logits f[n, classes];
      with masked splits it also takes `mask=` (batches of the mask) in training and evaluation.
    key: the run's PRNG key (initialisation and training keys are split from it).
      Several seeds (`--seeds`): a list of N keys, and `splits` either one dict for all or a
      list of N (one per seed, where the split depends on the seed); replica r is trained by
      one program with the others (jaxml.train.fit, replicas=N) and evaluated exactly as a run
      given key[r] and splits[r].
    workdir: gets checkpoints/, curves.png, confusion_train.png, confusion_test.png.
    augment: optional (x, key) -> x applied to every training batch (never to evaluation).
    ensemble: E > 1 makes each run (each seed) an ensemble of E members trained together in the
      same program (replicas of `fit`, the run's own splits): member 0 is the single run given
      `key`, member j > 0 starts from `fold_in(key, j)` (its own initialisation, batch order and
      dropout). The run predicts with the members' mean class probabilities (its logits are
      their log), and every metric is the ensemble's; "ensemble" in the metrics gives each
      member's own accuracies and best epoch.
  Returns:
    ({"metrics", "timing", "history", "confusion"} for results.json,
     {"params": best parameters, "logits": {split: f32[n, classes]}} for further pictures).
    With N seeds: "metrics" (the mean over seeds), "metrics_per_seed", "metrics_summary"
    (jaxml.seeds.summarize), "history_per_seed" and "confusion" summed over seeds; the second
    dict holds the first seed's params and logits, and "per_seed" with every seed's.
    With an ensemble, "params" are member 0's (what its pictures show) while "logits" are the
    ensemble's.
  """
  workdir = Path(workdir)
  if ensemble < 1:
    raise ValueError(f"ensemble={ensemble}; need at least 1 member")
  seed_keys = key if isinstance(key, list) else [key]
  n_seeds = len(seed_keys)
  split_list = splits if isinstance(splits, list) else [splits] * n_seeds
  # Replica r = seed r // E, member r % E: every member of a seed sees that seed's splits.
  keys = [k if j == 0 else jax.random.fold_in(k, j) for k in seed_keys for j in range(ensemble)]
  replica_splits = [sp for sp in split_list for _ in range(ensemble)]
  n_replicas = len(keys)
  k_init, k_train = zip(*[jax.random.split(k) for k in keys])
  params = [init_fn(k) for k in k_init]

  loss_fn = classifier_loss_fn(apply_fn, augment)
  as_dict = lambda xy: {"x": xy[0], "y": xy[1], **({"mask": xy[2]} if len(xy) > 2 else {})}
  ckpt_dir = workdir / "checkpoints"
  if restart and ckpt_dir.exists():
    shutil.rmtree(ckpt_dir)
  t0 = time.perf_counter()
  if n_replicas == 1:
    results = [fit(cfg, params=params[0], loss_fn=loss_fn, train_data=as_dict(splits["train"]),
                   val_data=as_dict(splits["val"]), key=k_train[0], log=log,
                   checkpoint_dir=ckpt_dir, run_signature=signature)]
  else:
    shared = not isinstance(splits, list)
    data = {s: (as_dict(split_list[0][s]) if shared else
                _stack([as_dict(sp[s]) for sp in replica_splits])) for s in ("train", "val")}
    results = fit(cfg, params=_stack(params), loss_fn=loss_fn, train_data=data["train"],
                  val_data=data["val"], key=jnp.stack(k_train), log=log,
                  checkpoint_dir=ckpt_dir, run_signature=signature, replicas=n_replicas,
                  shared_data=shared)
  train_s = time.perf_counter() - t0

  def eval_apply(p, x, *mask):  # the mask, where the splits carry one, goes in as `mask=`
    return apply_fn(p, x, train=False, key=None, **({"mask": mask[0]} if mask else {}))

  predict = make_predict(eval_apply,
                         min(cfg.eval_batch_size, max(len(xy[1]) for sp in split_list
                                                 for xy in sp.values())))
  members = [results[s * ensemble:(s + 1) * ensemble] for s in range(n_seeds)]
  evaluated = [_evaluate(m, sp, predict, len(class_names)) for m, sp in zip(members, split_list)]
  results = [m[0] for m in members]  # each seed's first member: its history and pictures
  metrics, confusion, all_logits = evaluated[0]
  result = results[0]
  if ensemble > 1:
    for s, (m, _, _) in enumerate(evaluated):
      log(f"{'' if n_seeds == 1 else f'replica {s}: '}ensemble of {ensemble}: members' "
          + "  ".join(f"{name} acc {np.mean(m['ensemble'][f'{name}_accuracy']):.4f}"
                      for name in split_list[s]) + " on average")
  tag = (lambda r: "") if n_seeds == 1 else (lambda r: f"replica {r}: ")
  for r, (m, _, _) in enumerate(evaluated):
    log(f"{tag(r)}best epoch {m['best_epoch']}: " + "  ".join(
        f"{s} acc {m[f'{s}_accuracy']:.4f}" for s in split_list[r]))

  timing = {"compile_s": result.compile_s, "seconds_per_epoch": result.seconds_per_epoch,
            "train_s": train_s}
  strip = lambda h: [{k: v for k, v in r.items() if k != "step_losses"} for r in h]
  if n_seeds == 1:
    if result.history:
      plots.training_curves(result.history, workdir / "curves.png", title)
    for name in ("train", "test"):
      acc = metrics[f"{name}_accuracy"]
      plots.plot_confusion(confusion[name], class_names, workdir / f"confusion_{name}.png",
                           f"{title} {name} (accuracy {acc:.3f})".strip())
    return ({"metrics": metrics,
             "computation": {"fingerprint": result.fingerprint},
             "timing": timing,
             "history": strip(result.history),
             "confusion": {k: v.tolist() for k, v in confusion.items()}},
            {"params": result.params, "logits": all_logits})

  out = summarize([m for m, _, _ in evaluated])
  total = {name: sum(c[name] for _, c, _ in evaluated) for name in confusion}
  if any(r.history for r in results):
    plots.seed_curves([r.history for r in results], workdir / "curves.png", title)
  for name in ("train", "test"):
    acc = mean_std_text(out["metrics_summary"][f"{name}_accuracy"], 3)
    plots.plot_confusion(total[name], class_names, workdir / f"confusion_{name}.png",
                         f"{title} {name}, {n_seeds} seeds summed (accuracy {acc})".strip())
  log(f"over {n_seeds} seeds: " + "  ".join(
      f"{s} acc {mean_std_text(out['metrics_summary'][f'{s}_accuracy'])}" for s in split_list[0]))
  return (dict(out, computation={"fingerprint": result.fingerprint}, timing=timing,
               history_per_seed=[strip(r.history) for r in results],
               confusion={k: v.tolist() for k, v in total.items()}),
          {"params": result.params, "logits": all_logits,
           "per_seed": [{"params": r.params, "logits": lg}
                        for r, (_, _, lg) in zip(results, evaluated)]})


def _stack(trees: list):
  """The trees (equal structure and shapes) stacked on a new leading axis (numpy)."""
  return jax.tree.map(lambda *a: np.stack(a), *trees)


def ensemble_logits(member_logits: list) -> np.ndarray:
  """Logits of an ensemble: the log of its members' mean class probabilities.

  member_logits: E arrays f[n, classes] -> f32[n, classes] (log-probabilities; E = 1: the
  member's own log-softmax, so argmax and cross-entropy are unchanged).
  """
  logp = jax.nn.log_softmax(jnp.stack([jnp.asarray(l, jnp.float32) for l in member_logits]), -1)
  return np.asarray(jax.nn.logsumexp(logp, axis=0) - np.log(len(member_logits)))


def _scores(logits, y) -> dict:
  return normalize_sums(jax.device_get(classification_sums(jnp.asarray(logits), jnp.asarray(y))))


def _evaluate(members: list, splits: dict, predict, n_classes: int):
  """(metrics, confusion matrices, logits per split) of one run: its members' best parameters
  (one member: that replica's own logits; several: `ensemble_logits` of theirs)."""
  metrics, confusion, all_logits = {}, {}, {}
  each = {}  # ensembles: every member's own accuracy per split
  for name, (x, y, *mask) in splits.items():
    member_logits = [predict(r.params, x, *mask) for r in members]
    logits = all_logits[name] = (member_logits[0] if len(members) == 1
                                 else ensemble_logits(member_logits))
    m = _scores(logits, y)
    metrics[f"{name}_accuracy"], metrics[f"{name}_loss"] = m["accuracy"], m["loss"]
    confusion[name] = plots.confusion_matrix(y, logits.argmax(-1), n_classes)
    if len(members) > 1:
      each[f"{name}_accuracy"] = [_scores(l, y)["accuracy"] for l in member_logits]
  first = members[0]
  metrics.update(best_epoch=first.best_epoch, epochs_run=len(first.history),
                 stop_reason=first.stop_reason)
  if len(members) > 1:
    metrics["ensemble"] = dict(size=len(members), **each,
                               best_epoch=[r.best_epoch for r in members],
                               stop_reason=[r.stop_reason for r in members])
  if first.resumed_from is not None:
    metrics["resumed_from_epoch"] = first.resumed_from
  return metrics, confusion, all_logits
