"""Sparse autoencoder on 16x16 natural-image patches (`sparse_ae`) and the seed's 3x3 sweep
(`sparse_ae_sweep`).

    python -m experiments.run --exp=sparse_ae                       # embedded photo patches
    python -m experiments.run --exp=sparse_ae --data_path=data1.h5  # the seed's file
    python -m experiments.run --exp=sparse_ae --preset=seed         # the seed: SGD, lambda 5e-4
    python -m experiments.run --exp=sparse_ae_sweep                 # L_hid x lambda, 9 runs

Net and cost (the seed's Q1, jaxml/models/sparse_autoencoder.py): 256 -> L_hid sigmoid -> 256
sigmoid, J = 1/(2N) sum ||x - y||^2 + lam/2 (|W1|^2 + |W2|^2) + beta sum_b KL(rho || rho_b).
The patches are preprocessed as in the seed (jaxml/data/patches.py). 10% of them are held out:
both solvers report J on them, and the SGD loop keeps the epoch with the lowest held-out J; the
metrics are measured on all patches, like the seed's J. Default: L-BFGS, lambda 1e-4 (see
`default_preset` for why); the seed preset: the seed's SGD setting and cost.

Solvers: `sgd` is mini-batch training through `jaxml.train.fit` with the TrainConfig optimizer
(the seed's: SGD, lr 0.075, momentum 0.85, batch 32, 200 epochs; rho_b is then the mean over
the 32 patches of a batch, as in the seed's code); `lbfgs` is optax's L-BFGS with its zoom line
search on the full training set (as UFLDL does), rho_b over all patches, through
`jaxml.lbfgs.lbfgs_fit`. Both follow `jax.grad` of the J they report; the seed's hand-derived
gradient is a test reference (tests/test_sparse_ae.py).

Writes patches_before_after.png (200 random patches, RGB and preprocessed), filters.png (W1's
column of every hidden unit as a 16x16 image), reconstructions.png, cost.png, results.json.
The sweep writes sweep_filters_h{16,49,100}.png (the three lambdas side by side, the seed's
figures 4-6), sweep_table.md and one subfolder per run with its checkpoint.
"""

import dataclasses
import math
import shutil
import time
from pathlib import Path
from typing import Literal

import jax
import numpy as np
import optax

from experiments.base import Experiment, ReportInfo, RunContext, first_existing
from jaxml import config as config_lib
from jaxml import plots
from jaxml.config import require
from jaxml.data import patches as patch_data
from jaxml.data.splits import stratified_holdout
from jaxml.errors import UserError
from jaxml.io import write_text
from jaxml.lbfgs import lbfgs_fit
from jaxml.models import sparse_autoencoder as sae
from jaxml.train import TrainConfig, fit, validate_train_config


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
  """Model, cost and solver settings; mini-batch optimisation settings come from TrainConfig.

  The defaults below are the seed's; `default_preset` changes the ones our recipe measures
  better (module docstring of `default_preset`).
  """
  # --- model and cost
  hidden: int = 64                  # L_hid, hidden units (seed: 64)
  lam: float = 5e-4                 # lambda, Tikhonov weight on W1 and W2 (seed: 5e-4)
  beta: float = 2.0                 # beta, weight of the KL sparsity term (seed: 2)
  rho: float = 0.025                # rho, target mean activation of a hidden unit (seed: 0.025)
  tied_init: bool = True            # initialise W2 = W1^T, as the seed does
  # --- solver
  solver: Literal["sgd", "lbfgs"] = "sgd"  # mini-batch (TrainConfig optimizer) or full-batch
  lbfgs_iters: int = 400            # L-BFGS iterations at most (UFLDL: 400)
  lbfgs_memory: int = 10            # L-BFGS history pairs
  lbfgs_tol: float = 1e-5           # stop when the gradient's global norm falls below this
  lbfgs_log_every: int = 25         # iterations per progress line and checkpoint
  # --- data
  n_patches: int = 10240            # embedded default: patches sampled (the seed's file: 10240)
  # --- optimisation: the seed's mini-batch setting (TrainConfig fields whose default differs)
  optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd"
  learning_rate: float = 0.075      # eta (seed: 0.075)
  momentum: float = 0.85            # alpha (seed: 0.85), heavy ball: v = alpha v + eta g
  batch_size: int = 32              # patches per step (seed: 32)
  epochs: int = 200                 # seed: 200
  patience: int = 0                 # all epochs, then the lowest held-out J (seed: no stopping)
  val_fraction: float = 0.1         # patches held out to watch J on unseen data
  eval_batch_size: int = 4096       # held-out J in batches this large (KL over each batch)


@dataclasses.dataclass(frozen=True)
class SweepConfig(Config):
  """The seed's part d: every pair of hidden size and lambda (`hidden` and `lam` are ignored)."""
  sweep_hidden: tuple[int, ...] = (16, 49, 100)      # L_hid values (seed: 16, 49, 100)
  sweep_lam: tuple[float, ...] = (0.0, 2e-4, 1e-3)   # lambda values (seed: 0, 2e-4, 1e-3)


def seed_preset(cls=Config) -> Config:
  return cls()


def default_preset(cls=Config) -> Config:
  """Our recipe: full-batch L-BFGS (400 iterations) and lambda 1e-4 (UFLDL's value, inside the
  seed's sweep range): with the seed's lambda 5e-4 even the minimum of J leaves the
  reconstruction MSE ratio around 0.5 on photo patches. Measurements: BUILD_NOTES.md, "The
  sparse autoencoder", "Why the default lambda is 1e-4"."""
  return cls(solver="lbfgs", lam=1e-4)


def tiny(cfg: Config) -> Config:
  """A seconds-long run for smoke tests: few patches and units, two epochs or a few L-BFGS steps."""
  cfg = dataclasses.replace(cfg, hidden=4, n_patches=320, epochs=2, lbfgs_iters=4,
                            lbfgs_log_every=2)
  if isinstance(cfg, SweepConfig):
    cfg = dataclasses.replace(cfg, sweep_hidden=(4, 9), sweep_lam=(0.0, 1e-3))
  return cfg


def validate(cfg: Config) -> None:
  config_lib.check_choices(cfg)
  validate_train_config(cfg)
  require(cfg.hidden >= 1, "hidden", "a positive integer", cfg.hidden)
  require(cfg.lam >= 0 and math.isfinite(cfg.lam), "lam", ">= 0", cfg.lam)
  require(cfg.beta >= 0 and math.isfinite(cfg.beta), "beta", ">= 0", cfg.beta)
  require(0 < cfg.rho < 1, "rho", "in (0, 1)", cfg.rho)
  require(cfg.lbfgs_iters >= 1, "lbfgs_iters", "a positive integer", cfg.lbfgs_iters)
  require(cfg.lbfgs_memory >= 1, "lbfgs_memory", "a positive integer", cfg.lbfgs_memory)
  require(cfg.lbfgs_tol >= 0, "lbfgs_tol", ">= 0", cfg.lbfgs_tol)
  require(cfg.lbfgs_log_every >= 1, "lbfgs_log_every", "a positive integer",
          cfg.lbfgs_log_every)
  require(cfg.n_patches >= 20, "n_patches", "at least 20", cfg.n_patches)
  if isinstance(cfg, SweepConfig):
    require(len(cfg.sweep_hidden) > 0 and all(h >= 1 for h in cfg.sweep_hidden),
            "sweep_hidden", "positive sizes such as 16,49,100", cfg.sweep_hidden)
    require(len(cfg.sweep_lam) > 0 and all(v >= 0 for v in cfg.sweep_lam), "sweep_lam",
            "values >= 0 such as 0,2e-4,1e-3", cfg.sweep_lam)


# ----------------------------------------------------------------------------- data
def load_data(cfg: Config, ctx: RunContext):
  """(preprocessed x f32[N, P*P], RGB patches, train/val indices, data notes)."""
  data = patch_data.load_patches(ctx.data_path, n_embedded=cfg.n_patches)
  x = patch_data.preprocess(data.rgb)
  # stratified_holdout with one class is a plain random holdout, fixed by --seed.
  keep, held = stratified_holdout(np.zeros(len(x), np.int32), cfg.val_fraction, ctx.seed)
  if len(keep) < cfg.batch_size and cfg.solver == "sgd":
    raise UserError(f"only {len(keep)} training patches for batch_size={cfg.batch_size}; "
                    f"lower --config.batch_size or pass more patches")
  notes = dict(data.describe(), n_train=len(keep), n_val=len(held))
  ctx.log(f"data: {data.source}: {len(x)} patches {data.rgb.shape[2]}x{data.rgb.shape[3]} "
          f"({len(keep)} train / {len(held)} held out)")
  return x, data.rgb, keep, held, notes


# ----------------------------------------------------------------------------- solvers
def make_loss_fn(cfg: Config):
  """The train loop's loss: J on a batch; as sums, J times the batch's patch count, so an
  epoch's train loss is the mean J over its batches (the seed's)."""

  def loss_fn(params, batch, *, train, key):
    del key  # deterministic model
    count = batch["weight"].sum()
    if train:  # full batches only: every weight is 1
      j = sae.objective(params, batch["x"], cfg)
    else:
      j = sae.cost_terms(params, batch["x"], cfg, batch["weight"])["total"]
    return j, {"loss": j * count, "count": count}

  return loss_fn


def train_sgd(cfg: Config, params, x_train, x_val, *, key, log, ckpt_dir, signature):
  """Mini-batch training through the generic train loop. Returns (params, history, info)."""
  result = fit(cfg, params=params, loss_fn=make_loss_fn(cfg), train_data={"x": x_train},
               val_data={"x": x_val}, key=key, log=log, checkpoint_dir=ckpt_dir,
               run_signature=signature)
  history = [{"epoch": r["epoch"], "train_J": r["train_loss"], "val_J": r["val_loss"],
              "grad_norm": r["grad_norm"], "seconds": r["seconds"]} for r in result.history]
  info = {"best_epoch": result.best_epoch, "epochs_run": len(result.history),
          "stop_reason": result.stop_reason, "compile_s": result.compile_s,
          "seconds_per_epoch": result.seconds_per_epoch}
  if result.resumed_from is not None:
    info["resumed_from_epoch"] = result.resumed_from
  return result.params, history, info


def train_lbfgs(cfg: Config, params, x_train, x_val, *, log, ckpt_dir, signature):
  """Full-batch L-BFGS through `jaxml.lbfgs.lbfgs_fit` (a checkpoint every cfg.lbfgs_log_every
  iterations). Returns (params, history, info)."""
  j_of = jax.jit(lambda p, x: sae.objective(p, x, cfg))
  x_dev, x_val = jax.device_put(x_train), jax.device_put(x_val)
  result = lbfgs_fit(lambda p, x: sae.objective(p, x, cfg), params, x_dev,
                     max_iter=cfg.lbfgs_iters, tol=cfg.lbfgs_tol, log_every=cfg.lbfgs_log_every,
                     memory=cfg.lbfgs_memory, grad_size=optax.tree.norm,
                     monitor=lambda p: {"train_J": float(j_of(p, x_dev)),
                                        "val_J": float(j_of(p, x_val))},
                     checkpoint_dir=ckpt_dir, run_signature=signature, log=log)
  info = {"iterations": result.iterations, "stop_reason": result.stop_reason,
          "compile_s": result.compile_s, "seconds_per_iteration": result.seconds_per_iteration}
  if result.resumed_from is not None:
    info["resumed_from_iteration"] = result.resumed_from
  return result.params, result.history, info


def train(cfg: Config, x, keep, held, *, key, workdir: Path, restart: bool, log, signature):
  """Initialises and trains one autoencoder with cfg.solver. Returns (params, history, info)."""
  k_init, k_train = jax.random.split(key)
  params = sae.init(k_init, n_in=x.shape[1], n_hidden=cfg.hidden, tied_init=cfg.tied_init)
  ckpt = workdir / "checkpoints"
  if restart and ckpt.exists():
    shutil.rmtree(ckpt)
  t0 = time.perf_counter()
  if cfg.solver == "sgd":
    out = train_sgd(cfg, params, x[keep], x[held], key=k_train, log=log, ckpt_dir=ckpt,
                    signature=signature)
  else:
    out = train_lbfgs(cfg, params, x[keep], x[held], log=log, ckpt_dir=ckpt,
                      signature=signature)
  out[2]["train_s"] = time.perf_counter() - t0
  return out


# ----------------------------------------------------------------------------- evaluation
def evaluate(params, x, cfg: Config) -> dict:
  """J and its terms, the sparsity and the reconstruction quality on x: f[n, L_in]."""
  terms = jax.device_get(jax.jit(lambda p, x: sae.cost_terms(p, x, cfg))(params, x))
  recon = np.asarray(jax.jit(sae.apply)(params, x))
  baseline = np.mean((x - x.mean(axis=0)) ** 2)  # predicting the mean patch
  rho_hat = np.asarray(terms["rho_hat"])
  return {"J": float(terms["total"]), "mse_term": float(terms["mse"]),
          "tikhonov_term": float(terms["tikhonov"]), "kl_term": float(terms["kl"]),
          "mean_activation": float(rho_hat.mean()),
          "mean_activation_over_rho": float(rho_hat.mean() / cfg.rho),
          "unit_activation_min": float(rho_hat.min()),
          "unit_activation_max": float(rho_hat.max()),
          "reconstruction_mse": float(np.mean((x - recon) ** 2)),
          "reconstruction_mse_ratio": float(np.mean((x - recon) ** 2) / baseline)}


# ----------------------------------------------------------------------------- pictures
def plot_before_after(rgb, x, path, seed: int) -> None:
  """200 random patches: RGB (the seed's figure 1) above, preprocessed (its figure 2) below."""
  idx = np.random.default_rng(seed).choice(len(x), size=min(200, len(x)), replace=False)
  side = rgb.shape[-1]
  plots.patches_before_after(
      np.moveaxis(rgb[idx], 1, -1), x[idx].reshape(-1, side, side), path,
      (f"{len(idx)} random patches before preprocessing (RGB)",
       "after: luminosity, patch mean removed, clipped at 3 std, mapped to [0.1, 0.9]"))


# ----------------------------------------------------------------------------- experiments
def _signature(cfg, ctx: RunContext, notes: dict) -> dict:
  return {"config": config_lib.to_dict(cfg), "seed": ctx.seed, "data": notes}


def run(cfg: Config, ctx: RunContext) -> dict:
  t0 = time.perf_counter()
  x, rgb, keep, held, notes = load_data(cfg, ctx)
  data_s = time.perf_counter() - t0
  plot_before_after(rgb, x, ctx.workdir / "patches_before_after.png", ctx.seed)
  params, history, info = train(cfg, x, keep, held, key=jax.random.key(ctx.seed),
                                workdir=ctx.workdir, restart=ctx.restart, log=ctx.log,
                                signature=_signature(cfg, ctx, notes))
  metrics = evaluate(params, x, cfg)
  held_out = evaluate(params, x[held], cfg)
  metrics.update(val_J=held_out["J"],
                 val_reconstruction_mse_ratio=held_out["reconstruction_mse_ratio"])
  desc = f"L_hid={cfg.hidden}, lambda={cfg.lam:g}, beta={cfg.beta:g}, rho={cfg.rho:g}"
  plots.dense_filters(params["w1"], ctx.workdir / "filters.png", f"first-layer weights ({desc})")
  plots.reconstructions(x[held][:30], sae.apply(params, x[held][:30]),
                        ctx.workdir / "reconstructions.png",
                        "held-out patches (odd rows) and their reconstructions (even rows)")
  if history:
    plots.cost_curves(history, ctx.workdir / "cost.png", f"{cfg.solver}: {desc}")
  ctx.log(f"J {metrics['J']:.4f} = mse {metrics['mse_term']:.4f} + tikhonov "
          f"{metrics['tikhonov_term']:.4f} + kl {metrics['kl_term']:.4f}; mean activation "
          f"{metrics['mean_activation']:.4f} (rho {cfg.rho:g}); reconstruction MSE ratio "
          f"{metrics['reconstruction_mse_ratio']:.3f}")
  timing = {"data_s": data_s, **{k: v for k, v in info.items() if k.endswith("_s") or
                                 k.startswith("seconds")}}
  solver = {k: v for k, v in info.items() if k not in timing}
  return {"metrics": dict(metrics, **solver), "timing": timing, "history": history,
          "data": notes}


def _run_name(hidden: int, lam: float) -> str:
  return f"h{hidden}_lam{lam:g}"


def markdown_table(rows: list[dict], cfg: SweepConfig, source: str) -> str:
  lines = [f"Sparse autoencoder sweep on {source}: beta={cfg.beta:g}, rho={cfg.rho:g}, "
           f"solver {cfg.solver}; terms of J on all patches.", "",
           "| L_hid | lambda | J | MSE term | Tikhonov term | KL term | mean activation | "
           "MSE ratio | train s |", "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['hidden']} | {r['lam']:g} | {r['J']:.4f} | {r['mse_term']:.4f} | "
                 f"{r['tikhonov_term']:.4f} | {r['kl_term']:.4f} | {r['mean_activation']:.4f} | "
                 f"{r['reconstruction_mse_ratio']:.3f} | {r['train_s']:.1f} |")
  return "\n".join(lines) + "\n"


def run_sweep(cfg: SweepConfig, ctx: RunContext) -> dict:
  t0 = time.perf_counter()
  x, rgb, keep, held, notes = load_data(cfg, ctx)
  data_s = time.perf_counter() - t0
  plot_before_after(rgb, x, ctx.workdir / "patches_before_after.png", ctx.seed)
  rows, metrics = [], {}
  # Each run is a plain Config, so its checkpoint does not depend on the rest of the grid.
  base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Config)}
  for hidden in cfg.sweep_hidden:
    panels = []
    for lam in cfg.sweep_lam:
      one = Config(**dict(base, hidden=hidden, lam=lam))
      name = _run_name(hidden, lam)
      ctx.log(f"--- {name}")
      params, _, info = train(one, x, keep, held, key=jax.random.key(ctx.seed),
                              workdir=ctx.workdir / name, restart=ctx.restart,
                              log=lambda m, name=name: ctx.log(f"[{name}] {m}"),
                              signature=_signature(one, ctx, notes))
      m = evaluate(params, x, one)
      metrics[name] = m
      rows.append(dict(m, hidden=hidden, lam=lam, train_s=info["train_s"]))
      panels.append((plots.mosaic(plots.filter_images(params["w1"]),
                                  math.ceil(math.sqrt(hidden))),
                     f"lambda = {lam:g}\nJ {m['J']:.3f}, mean act. {m['mean_activation']:.3f}, "
                     f"MSE ratio {m['reconstruction_mse_ratio']:.2f}"))
    plots.mosaics(panels, ctx.workdir / f"sweep_filters_h{hidden}.png",
                  f"first-layer weights, L_hid = {hidden} (beta={cfg.beta:g}, rho={cfg.rho:g})")
  write_text(ctx.workdir / "sweep_table.md", markdown_table(rows, cfg, notes["source"]))
  ctx.log(markdown_table(rows, cfg, notes["source"]))
  return {"metrics": metrics,
          "timing": {"data_s": data_s, "train_s": sum(r["train_s"] for r in rows)},
          "sweep": rows, "data": notes}


def headline(results: dict) -> str:
  m = results["metrics"]
  return (f"J {m['J']:.3f}, mean activation {m['mean_activation']:.4f}, "
          f"MSE ratio {m['reconstruction_mse_ratio']:.3f}")


def sweep_headline(results: dict) -> str:
  m = results["metrics"]
  js = [v["J"] for v in m.values()]
  rs = [v["reconstruction_mse_ratio"] for v in m.values()]
  return (f"{len(m)} (L_hid, lambda): J {min(js):.3f}-{max(js):.3f}, MSE ratio "
          f"{min(rs):.3f}-{max(rs):.3f} (sweep_table.md)")


_DIFFERENCES = ("Seed: its data1.h5 patches. Without DATA_ROOT/data1.h5 we use 10240 16x16 "
                "patches of the colour photos in the scikit-image / scikit-learn wheels. Our "
                "default is full-batch L-BFGS with lambda 1e-4 (seed: momentum SGD, lambda 5e-4).")
SPARSE_AE = Experiment(
    name="sparse_ae", description="sparse autoencoder 256-64-256 on 16x16 image patches",
    presets={"default": default_preset(), "seed": seed_preset()},
    tiny=tiny, validate=validate, run=run,
    report=ReportInfo(project="003_9ba3fd9f2b4c427d.txt", seed_figure="- (figure 3, filters only)",
                      differences=_DIFFERENCES, key_figures=("filters.png",),
                      data=lambda root: first_existing(root, "data1.h5"), headline=headline,
                      typical_s=(41, 16, 21, 27)))
SPARSE_AE_SWEEP = Experiment(
    name="sparse_ae_sweep", description="sparse autoencoder, L_hid x lambda sweep (3x3)",
    presets={"default": default_preset(SweepConfig), "seed": seed_preset(SweepConfig)},
    tiny=tiny, validate=validate, run=run_sweep,
    report=ReportInfo(project="003_9ba3fd9f2b4c427d.txt",
                      seed_figure="- (figures 4-6, filters only)",
                      differences=_DIFFERENCES + " The sweep: L_hid in {16, 49, 100} x lambda in "
                                                 "{0, 2e-4, 1e-3}, the seed's figures 4-6.",
                      key_figures=("sweep_filters_h49.png", "sweep_filters_h16.png",
                                   "sweep_filters_h9.png"),
                      data=lambda root: first_existing(root, "data1.h5"),
                      headline=sweep_headline, typical_s=(250, 94, 38, 59)))
