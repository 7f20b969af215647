"""Where does an activity model's gradient spike, and is the spike real? A float64 replay.

    python -m benchmarks.grad_spike --exp=lstm_activity [--data_path=...] [--config.KEY=VALUE]

Trains the experiment's default recipe (its config, model, loss, optax optimizer and
`jaxml.train.make_step`, on its own standardised training split) and logs every step's gradient
norm before clipping. At the first step whose norm exceeds `--jump` x the median of the
previous steps it stops and replays that step's batch and parameters in float64:

* the gradient by `backward="fast"`, by `backward="autodiff"` and, along the gradient's own
  direction, by a central finite difference of the loss: if they agree, the spike is the
  loss surface's, not a wrong backward pass;
* the gradient norm per parameter array, and the norm of dL/dx_t per time step t: a cotangent
  that grows geometrically from the last step back to the first is the exploding-gradient
  signature (Bengio et al. 1994; Pascanu et al. 2013);
* the largest singular value of each recurrent weight matrix at the spike and at step 0;
* what clipping to `grad_clip` and then Adam do with that step (the update's norm).

Writes the per-step log and the replay to `--out` (json), prints a summary.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import activity
from experiments.run import build, split_config_args
from jaxml import runtime, train
from jaxml.data import activity as activity_data
from jaxml.pipeline import classifier_loss_fn


def _model(cfg, n_features, n_classes):
  """(init_fn, loss_fn) of the experiment's model: activity.model_fns and the loop's loss."""
  init_fn, apply_fn = activity.model_fns(cfg, n_features, n_classes)
  return init_fn, classifier_loss_fn(apply_fn)


def _flat_norms(tree) -> dict:
  return {jax.tree_util.keystr(k): float(jnp.linalg.norm(v.ravel()))
          for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def replay(cfg, params, batch, key, n_classes: int) -> dict:
  """The float64 analysis of one step (module docstring)."""
  jax.config.update("jax_enable_x64", True)
  p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
  b64 = {k: jnp.asarray(v, jnp.float64 if v.dtype.kind == "f" else v.dtype)
         for k, v in batch.items()}
  loss_of = lambda c: _model(c, batch["x"].shape[-1], n_classes)[1]
  grads = {}
  for mode in ("fast", "autodiff"):
    loss_fn = loss_of(dataclasses.replace(cfg, backward=mode))
    (loss, _), grads[mode] = jax.value_and_grad(loss_fn, has_aux=True)(
        p64, b64, train=True, key=key)
  g = grads["autodiff"]
  gnorm = float(jnp.sqrt(sum(jnp.vdot(a, a) for a in jax.tree.leaves(g))))
  rel_fast = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-300))
                 for a, b in zip(jax.tree.leaves(grads["fast"]), jax.tree.leaves(g)))
  loss_fn = loss_of(cfg)
  f = lambda p: loss_fn(p, b64, train=True, key=key)[0]
  direction = jax.tree.map(lambda a: a / gnorm, g)
  fd = {}
  for eps in (1e-4, 1e-6):
    up = f(jax.tree.map(lambda p, d: p + eps * d, p64, direction))
    down = f(jax.tree.map(lambda p, d: p - eps * d, p64, direction))
    fd[str(eps)] = float((up - down) / (2 * eps))
  # dL/dx_t per time step: the cotangent reaching each input, from the last step back.
  x_grad = jax.grad(lambda x: loss_fn(p64, dict(b64, x=x), train=True, key=key)[0])(b64["x"])
  per_step = np.asarray(jnp.linalg.norm(x_grad, axis=(0, 2)))
  return {"loss": float(loss), "grad_norm": gnorm, "fast_vs_autodiff_max_rel": rel_fast,
          "directional_derivative": {"autodiff": gnorm, "finite_difference": fd},
          "grad_norm_per_array": _flat_norms(g),
          "dL_dx_norm_per_step": per_step.tolist(),
          "dL_dx_last_over_first": float(per_step[0] / max(per_step[-1], 1e-300))}


def spectral(params) -> dict:
  """Largest singular value of each recurrent weight matrix (every 2-D array but w_x)."""
  return {jax.tree_util.keystr(k): float(np.linalg.norm(np.asarray(v, np.float64), 2))
          for k, v in jax.tree_util.tree_leaves_with_path(params["rnn"])
          if v.ndim == 2 and "w_x" not in jax.tree_util.keystr(k)}


def main():
  argv, overrides = split_config_args(sys.argv[1:])
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--exp", required=True, choices=("rnn_activity", "lstm_activity",
                                                  "gru_activity"))
  p.add_argument("--data_path", default=None)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--jump", type=float, default=10.0)
  p.add_argument("--warm_steps", type=int, default=20, help="steps before a spike can count")
  p.add_argument("--follow", action="store_true",
                 help="do not stop at the first spike: train the whole run and log, per "
                      "epoch, the largest |g|, the loss and the recurrent weights' norms")
  p.add_argument("--out", default="grad_spike.json")
  args = p.parse_args(argv)
  runtime.keep_freed_memory()
  _, cfg = build(args.exp, "default", False, overrides)
  data = activity_data.load_activity(args.data_path)
  splits, notes = activity.prepare_splits(data, cfg, args.seed)
  cfg, _ = activity.scaled_by_data(cfg, notes["n_train"], data.x_train.shape[1],
                                   notes["n_val"])
  x, y, *mask = splits["train"]
  train_data = {"x": jnp.asarray(x), "y": jnp.asarray(y),
                "weight": jnp.ones(len(y), jnp.float32),
                **({"mask": jnp.asarray(mask[0])} if mask else {})}
  n = len(y)
  steps_per_epoch = n // cfg.batch_size
  n_classes = len(data.class_names)
  init_fn, loss_fn = _model(cfg, x.shape[-1], n_classes)
  optimizer = train.make_optimizer(cfg, steps_per_epoch)
  params = init_fn(jax.random.key(args.seed))
  start_spectral = spectral(params)
  state = {"step": jnp.zeros((), jnp.int32), "params": params,
           "opt_state": optimizer.init(params)}
  step = jax.jit(train.make_step(loss_fn, optimizer))
  log, found, epochs_log = [], None, []
  key = jax.random.key(args.seed + 1)
  plan, step_key = train._epoch_plan(n, cfg.batch_size, replicas=1)  # the loop's batches
  for epoch in range(cfg.epochs):
    step_root, idx = plan(jax.random.fold_in(key, epoch))
    for i, batch_idx in enumerate(np.asarray(idx)):
      k = step_key(step_root, i)
      before = state["params"]
      state, m = step(state, train_data, jnp.asarray(batch_idx), k)
      norm = float(m["grad_norm"])
      log.append({"epoch": epoch + 1, "step": len(log), "loss": float(m["loss"] / m["count"]),
                  "grad_norm": norm, "update_norm": float(m["update_norm"])})
      past = [r["grad_norm"] for r in log[:-1]]
      if (not found and len(past) >= args.warm_steps
          and norm > args.jump * np.median(past)):
        log[-1].update(median_grad_norm_before=float(np.median(past)),
                       median_update_norm_before=float(np.median(
                           [r["update_norm"] for r in log[:-1]])))
        found = (before, {k2: v[batch_idx] for k2, v in train_data.items()}, k, log[-1])
        if not args.follow:
          break
    if args.follow:
      rows = log[-steps_per_epoch:]
      epochs_log.append({"epoch": epoch + 1,
                         "loss": float(np.mean([r["loss"] for r in rows])),
                         "grad_norm_max": max(r["grad_norm"] for r in rows),
                         "param_norm": float(jnp.sqrt(sum(
                             jnp.vdot(a, a) for a in jax.tree.leaves(state["params"])))),
                         "spectral_norm": spectral(state["params"])})
      e = epochs_log[-1]
      if (epoch + 1) % max(cfg.epochs // 20, 1) == 0:
        print(f"epoch {epoch + 1}: loss {e['loss']:.4g}  max |g| {e['grad_norm_max']:.3g}  "
              f"|params| {e['param_norm']:.4g}  recurrent spectral norms "
              + " ".join(f"{k} {v:.3g}" for k, v in e["spectral_norm"].items()), flush=True)
    elif found:
      break
  out = {"exp": args.exp, "data": data.source, "config": dataclasses.asdict(cfg),
         "steps": log, "epochs": epochs_log, "spectral_norm_at_init": start_spectral}
  if found:
    before, batch, k, row = found
    print(f"first spike: step {row['step']} (epoch {row['epoch']}): |g| {row['grad_norm']:.3g}"
          f" vs median {row['median_grad_norm_before']:.3g} before")
    out["spike"] = dict(row, spectral_norm=spectral(before), replay=replay(cfg, before, batch, k, n_classes),
                        at_init=replay(cfg, params, batch, k, n_classes))
    r, r0 = out["spike"]["replay"], out["spike"]["at_init"]

    print(f"float64: |g| {r['grad_norm']:.4g}; fast vs autodiff max rel {r['fast_vs_autodiff_max_rel']:.2g};"
          f" directional derivative autodiff {r['grad_norm']:.6g} vs finite differences "
          f"{r['directional_derivative']['finite_difference']}")
    print(f"|dL/dx_t|: first step / last step = {r['dL_dx_last_over_first']:.3g} "
          f"(the same batch at the initial parameters: {r0['dL_dx_last_over_first']:.3g}, "
          f"|g| {r0['grad_norm']:.3g})")
    print(f"update norm (after clipping and {cfg.optimizer}): median "
          f"{row['median_update_norm_before']:.3g} before, at the spike {row['update_norm']:.3g}")
    top = sorted(r["grad_norm_per_array"].items(), key=lambda kv: -kv[1])[:4]
    print("largest per-array norms: " + ", ".join(f"{k} {v:.3g}" for k, v in top))
    print(f"spectral norms at init {start_spectral}, at the spike {out['spike']['spectral_norm']}")
  else:
    print(f"no step's |g| exceeded {args.jump}x the running median in {len(log)} steps")
  Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
