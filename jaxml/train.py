"""The generic train loop: jit, optax, donated state, explicit keys, early stopping, checkpoints.

A model plugs in through one function

    loss_fn(params, batch, *, train: bool, key) -> (mean_loss, sums)

where `batch` is a dict of arrays with a leading batch axis (it always carries a "weight" entry,
0 for padding) and `sums` holds weighted sums ("loss", "count", optionally "correct"). The loop
owns everything else:

* the training data is put on the device once; an epoch is one jitted `lax.scan` over batches
  gathered there, or (`epoch_mode="loop"`, faster for conv nets on CPU) a Python loop over the
  same jitted step; both give the same numbers because the permutation and the step keys are
  the same;
* epoch e's key is `fold_in(key, e)`, split into the permutation key and a root whose
  `fold_in(root, step)` is the step's key (dropout), so a resumed run replays exactly the same batches and dropout;
* after each epoch: validation, early stopping on validation loss with `patience`, and a
  checkpoint holding the train state and the best-validation parameters;
* an epoch train loss above `climb_factor` x the best epoch's for `climb_epochs` epochs stops
  training like early stopping does, with stop reason "diverging: ..." (the best-validation
  parameters are kept), since such a run would only wander;
* a non-finite loss or gradient norm, or a step loss above `diverge_factor` times the run's very
  first step loss (the untrained model's), raises `DivergenceError` naming the epoch and step,
  before anything of that epoch is saved;
* data parallelism (`data_mesh`): parameters are replicated over a one-axis "data" mesh of all
  visible devices and every batch is split along it, so the same code runs on one CPU, several
  GPUs, or TPU cores (tests/test_sharding.py checks 4 simulated devices against 1);
* several seeds (`fit(replicas=N)`, `--seeds=N`): the same step, epoch plan and evaluation
  `jax.vmap`ped over a leading replica axis of the state (and of the data when each seed has its
  own split), stopped replicas masked; everything on the host runs per replica as for one
  (tests/test_seeds.py checks replica r against the single run of its key). N = 1 vmaps nothing.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxml import interrupt, runtime
from jaxml.checkpoint import Checkpointer, refuse_another_run
from jaxml.config import require
from jaxml.errors import DivergenceError, UserError
from jaxml.losses import normalize_sums


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation settings shared by every gradient-trained experiment."""
  optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"  # optax transformation
  learning_rate: float = 1e-3       # peak step size
  momentum: float = 0.0             # SGD / RMSprop momentum (0 = none)
  weight_decay: float = 0.0         # decoupled weight decay (adamw only)
  lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine decays to 0 over all epochs
  warmup_epochs: int = 0            # linear warm-up from 0 (cosine schedule only)
  grad_clip: float = 0.0            # clip gradients to this global L2 norm; 0 = no clipping
  batch_size: int = 32              # examples per step; the last partial batch is dropped
  epochs: int = 50                  # upper bound on epochs
  max_steps: int = 0                # if > 0: train ceil(max_steps / steps per epoch) epochs instead
  patience: int = 10                # stop after this many epochs without a new best val loss; 0 = never
  keep: Literal["best_val", "last"] = "best_val"  # the parameters a run reports and tests: the
                                    # epoch of lowest val loss, or the last epoch's (for a
                                    # validation split too small to rank epochs; needs
                                    # patience 0; a "diverging" stop still keeps best_val's)
  val_fraction: float = 0.1         # fraction of the training data held out for validation
  eval_batch_size: int = 512        # examples per evaluation batch (memory only, not results)
  epoch_mode: Literal["scan", "loop"] = "scan"  # epoch as one lax.scan, or a loop of jitted steps
  devices: int = 0                  # data-parallel devices (mesh axis "data"); 0 = all visible
  cpu_conv: runtime.CpuConv = "xla"  # who runs convolutions on CPU: XLA's own pick
                                    # (YNNPACK where it takes the shape) or Eigen's kernels for
                                    # all (same values to float rounding; runtime.compiler_options)
  diverge_factor: float = 1e3       # a step loss above this x the untrained model's first step
                                    # loss is divergence (exit 3): Adam keeps an absurd learning
                                    # rate finite but useless; 0 = only non-finite values count
  climb_factor: float = 3.0         # an epoch train loss above this x the best epoch's train loss
  climb_epochs: int = 3             # ... for this many epochs in a row, having lost over half
                                    # the gain since epoch 1, stops training (stop
                                    # reason "diverging"; the best-validation params are kept and
                                    # evaluated as after early stopping); 0 = never


def validate_train_config(cfg: TrainConfig) -> None:
  """Raises UserError for values no run can use."""
  require(cfg.learning_rate > 0 and math.isfinite(cfg.learning_rate), "learning_rate",
          "a positive number", cfg.learning_rate)
  require(0 <= cfg.momentum < 1, "momentum", "in [0, 1)", cfg.momentum)
  require(cfg.weight_decay >= 0, "weight_decay", ">= 0", cfg.weight_decay)
  require(cfg.grad_clip >= 0, "grad_clip", ">= 0 (0 disables clipping)", cfg.grad_clip)
  require(cfg.batch_size >= 1, "batch_size", "a positive integer", cfg.batch_size)
  require(cfg.eval_batch_size >= 1, "eval_batch_size", "a positive integer", cfg.eval_batch_size)
  require(cfg.epochs >= 1, "epochs", "a positive integer", cfg.epochs)
  require(cfg.max_steps >= 0, "max_steps", ">= 0 (0: use epochs)", cfg.max_steps)
  require(cfg.patience >= 0, "patience", ">= 0", cfg.patience)
  require(cfg.keep == "best_val" or cfg.patience == 0, "patience",
          "0 with keep=last (the last epoch is kept, so nothing may stop the run early)",
          cfg.patience)
  require(cfg.devices >= 0, "devices", ">= 0 (0: all visible devices)", cfg.devices)
  require(cfg.diverge_factor == 0 or cfg.diverge_factor > 1, "diverge_factor",
          "0 (off) or a number > 1", cfg.diverge_factor)
  require(0 < cfg.val_fraction < 1, "val_fraction", "in (0, 1)", cfg.val_fraction)
  require(cfg.climb_factor > 1, "climb_factor", "a number > 1", cfg.climb_factor)
  require(cfg.climb_epochs >= 0, "climb_epochs", ">= 0 (0: never)", cfg.climb_epochs)
  require(0 <= cfg.warmup_epochs < cfg.epochs or cfg.warmup_epochs == 0, "warmup_epochs",
          "smaller than epochs", cfg.warmup_epochs)


def num_epochs(cfg: TrainConfig, steps_per_epoch: int) -> int:
  """cfg.epochs, or enough epochs for cfg.max_steps steps when that is set."""
  return -(-cfg.max_steps // steps_per_epoch) if cfg.max_steps else cfg.epochs


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optax optimizer (with clipping and schedule) the config describes."""
  lr = cfg.learning_rate
  total = num_epochs(cfg, steps_per_epoch) * steps_per_epoch
  if cfg.lr_schedule == "cosine" and cfg.warmup_epochs == 0:
    lr = optax.cosine_decay_schedule(cfg.learning_rate, total)
  elif cfg.lr_schedule == "cosine":  # (with warm-up from 0, so step 0 would not move at all)
    lr = optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, cfg.warmup_epochs * steps_per_epoch, total, end_value=0.0)
  momentum = cfg.momentum or None
  base = {
      "sgd": lambda: optax.sgd(lr, momentum=momentum),
      "adam": lambda: optax.adam(lr),
      "adamw": lambda: optax.adamw(lr, weight_decay=cfg.weight_decay),
      # Keras' RMSprop defaults (rho 0.9, eps 1e-7), since the IMDB seed used Keras.
      "rmsprop": lambda: optax.rmsprop(lr, decay=0.9, eps=1e-7, momentum=momentum),
  }[cfg.optimizer]()
  if cfg.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), base)
  return base


# ----------------------------------------------------------------------------- steps
def train_step(loss_fn, optimizer, state, batch, key):
  """One optimizer step. Returns the new state and this step's metrics (sums + norms)."""
  (loss, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state["params"], batch, train=True, key=key)
  updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  grad_norm = optax.tree.norm(grads)
  metrics = dict(sums, grad_norm=grad_norm, update_norm=optax.tree.norm(updates),
                 finite=jnp.isfinite(loss) & jnp.isfinite(grad_norm))
  return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics


def data_mesh(devices: int = 0) -> Mesh:
  """A one-axis mesh ("data") over the first `devices` devices (0 = all): data parallelism.

  Parameters and optimizer state are replicated on every device; each batch is split along
  the "data" axis, so XLA runs the step on every device's slice and sums the gradients with an
  all-reduce. With one device the constraints are no-ops: the same code path everywhere.
  """
  available = jax.devices()
  n = devices or len(available)
  if n > len(available):
    raise UserError(f"devices={n} but only {len(available)} are visible ({available[0].platform}); "
                    f"lower --config.devices (0 = all)")
  return Mesh(np.asarray(available[:n]), ("data",))


def _shard_batch(batch, sharding):
  """Splits every array of the batch along its leading axis over the mesh (see data_mesh)."""
  return batch if sharding is None else lax.with_sharding_constraint(batch, sharding)


def make_step(loss_fn, optimizer, batch_sharding=None, *, replicas: int = 1,
              shared_data: bool = True):
  """(state, data, batch_idx int[batch], key) -> (state, metrics): gathers the batch from the
  device-resident `data` (split over the mesh when `batch_sharding` is given), then one
  `train_step`. Both epoch forms below run exactly this.

  replicas > 1 (several seeds, `fit(replicas=N)`): the same step `jax.vmap`ped over a leading
  replica axis of state, batch_idx, key and (unless `shared_data`) data, taking one more
  argument `active` bool[replicas]: a replica whose flag is False keeps its state as it was
  (a stopped seed; its metrics are computed and ignored). replicas = 1 is the plain step.
  """

  def step(state, data, batch_idx, key):
    batch = _shard_batch(jax.tree.map(lambda a: a[batch_idx], data), batch_sharding)
    return train_step(loss_fn, optimizer, state, batch, key)

  if replicas == 1:
    return step

  def replica_step(state, data, batch_idx, key, active):
    new, metrics = step(state, data, batch_idx, key)
    return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, state), metrics

  return jax.vmap(replica_step, in_axes=(0, None if shared_data else 0, 0, 0, 0))


def _batch_indices(key, n: int, batch_size: int):
  """int[steps, batch_size]: a permutation of range(n) cut into full batches."""
  steps = n // batch_size
  return jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)


def _epoch_plan(n: int, batch_size: int, replicas: int):
  """epoch_key -> (step_root, batch indices int[steps, (replicas,) batch_size]) and
  (step_root, i) -> step i's key: what one run derives from its epoch key, per replica (vmapped)
  when there are several, so replica r's batches and dropout are a single run's with its key."""

  def plan(epoch_key):
    perm_key, step_root = jax.random.split(epoch_key)
    return step_root, _batch_indices(perm_key, n, batch_size)

  if replicas == 1:
    return plan, jax.random.fold_in

  def replica_plan(epoch_keys):
    step_root, idx = jax.vmap(plan)(epoch_keys)
    return step_root, jnp.swapaxes(idx, 0, 1)  # [steps, replicas, batch]: steps lead

  return replica_plan, jax.vmap(jax.random.fold_in, in_axes=(0, None))


def make_scan_epoch(loss_fn, optimizer, n: int, batch_size: int, batch_sharding=None, *,
                    replicas: int = 1, shared_data: bool = True, compiler_options=None):
  """(state, data, epoch_key) -> (state, per-step metrics); the whole epoch is one XLA program.

  batch_sharding: optional NamedSharding splitting each batch over the "data" mesh axis.
  replicas > 1: state and epoch_key carry a leading replica axis, the epoch takes `active`
  bool[replicas] after epoch_key, and metrics are [steps, replicas] (see `make_step`).
  compiler_options: jax.jit's, for every program made here (`runtime.compiler_options`).
  """

  step = make_step(loss_fn, optimizer, batch_sharding, replicas=replicas,
                   shared_data=shared_data)
  plan, step_key = _epoch_plan(n, batch_size, replicas)

  def epoch(state, data, epoch_key, *active):
    step_root, idx = plan(epoch_key)

    def body(state, xs):
      i, batch_idx = xs
      return step(state, data, batch_idx, step_key(step_root, i), *active)

    return lax.scan(body, state, (jnp.arange(idx.shape[0]), idx))

  return jax.jit(epoch, donate_argnums=0, compiler_options=compiler_options)


def make_loop_epoch(loss_fn, optimizer, n: int, batch_size: int, batch_sharding=None, *,
                    replicas: int = 1, shared_data: bool = True, compiler_options=None):
  """Same contract and numbers as `make_scan_epoch`, but a Python loop over one jitted step.

  The step gathers its batch from `data` inside jit, so device-resident data stays on the
  device; per-step metrics stay there too until the epoch ends. XLA's CPU backend runs
  convolutions inside a `while` loop (which is what `lax.scan` becomes) ~15x slower than at top
  level (measured: seed CNN, batch 128, 1627 vs 109 ms per step), so conv nets use this mode.
  """

  jitted = {"step": jax.jit(make_step(loss_fn, optimizer, batch_sharding, replicas=replicas,
                                      shared_data=shared_data), donate_argnums=0,
                           compiler_options=compiler_options)}
  plan, step_key = _epoch_plan(n, batch_size, replicas)

  def epoch(state, data, epoch_key, *active, start_step: int = 0, should_stop=None):
    """Steps start_step.. of the epoch; stops early (between steps) when should_stop() is true.
    Returns (state, metrics of the steps run, index of the next step to run)."""
    step_root, idx = plan(epoch_key)
    rows, i = [], start_step
    while i < idx.shape[0] and not (rows and should_stop is not None and should_stop()):
      state, m = jitted["step"](state, data, idx[i], step_key(step_root, i), *active)
      rows.append(m)
      i += 1
    return state, jax.tree.map(lambda *xs: jnp.stack(xs), *rows), i

  def lower(state, data, epoch_key, *active):
    """The step, lowered for these arguments (what runs, for `computation_fingerprint`)."""
    step_root, idx = plan(epoch_key)
    return jitted["step"].lower(state, data, idx[0], step_key(step_root, 0), *active)

  def use(compiled):
    """Runs the epochs with this compiled step (from `lower(...).compile()`)."""
    jitted["step"] = compiled

  def precompile(state, data, epoch_key, *active):
    """Compiles the step ahead of time (so compile time is measured apart from epochs)."""
    use(lower(state, data, epoch_key, *active).compile())

  epoch.lower, epoch.use, epoch.precompile = lower, use, precompile
  return epoch


def make_evaluate(loss_fn, batch_size: int, batch_sharding=None, *, replicas: int = 1,
                  shared_data: bool = True, compiler_options=None):
  """(params, data) -> summed metrics over all examples (padding carries weight 0).

  replicas > 1: params (and data unless `shared_data`) carry a leading replica axis and so do
  the sums (the same evaluation, vmapped)."""

  def evaluate(params, data):
    n = data["weight"].shape[0]
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    padded = jax.tree.map(
        lambda a: jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(
            (nb, batch_size) + a.shape[1:]), data)

    def body(acc, batch):
      _, sums = loss_fn(params, _shard_batch(batch, batch_sharding), train=False, key=None)
      return jax.tree.map(jnp.add, acc, sums), None

    zero = jax.eval_shape(lambda b: loss_fn(params, b, train=False, key=None)[1],
                          jax.tree.map(lambda a: a[0], padded))
    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero)
    return lax.scan(body, zero, padded)[0]

  if replicas == 1:
    return jax.jit(evaluate, compiler_options=compiler_options)
  return jax.jit(jax.vmap(evaluate, in_axes=(0, None if shared_data else 0)),
                 compiler_options=compiler_options)


# ----------------------------------------------------------------------------- the loop
@dataclasses.dataclass
class FitResult:
  params: dict                 # best-validation parameters (host numpy arrays)
  history: list[dict]          # one row per epoch
  best_epoch: int
  stop_reason: str             # "max epochs" or "early stopping: ..."
  compile_s: float             # time to compile the epoch program (excluded from epoch times)
  seconds_per_epoch: float     # mean wall time of a training epoch + validation
  resumed_from: int | None     # epoch the run resumed after, if it did
  fingerprint: str = ""        # computation_fingerprint of the programs that trained


def _with_weight(data: dict, lead: int = 0) -> dict:
  """data with a "weight" of ones over its example axis (and the `lead` axes before it)."""
  shape = np.shape(next(iter(data.values())))[:lead + 1]
  return data if "weight" in data else dict(data, weight=np.ones(shape, np.float32))


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def _replica(tree, r: int, replicas: int):
  """Replica r's part of a tree with a leading replica axis (the tree itself for one replica)."""
  return tree if replicas == 1 else jax.tree.map(lambda a: a[r], tree)


def _epoch_key(key, epoch: int, replicas: int):
  """Epoch `epoch`'s key, fold_in(key, epoch), for each replica's key when there are several."""
  if replicas == 1:
    return jax.random.fold_in(key, epoch)
  return jax.vmap(jax.random.fold_in, in_axes=(0, None))(key, epoch)


def computation_fingerprint(*lowered, compiler_options: dict | None = None) -> str:
  """A hash of what the lowered programs compute: their StableHLO text, which holds every
  operation, shape and constant of the model, loss and optimizer but no source locations, so a
  comment or a renamed local variable leaves it unchanged while any edit that changes what runs
  changes it; and the compiler options they are compiled with, when there are any (another
  kernel library rounds differently)."""
  digest = hashlib.sha256()
  for program in lowered:
    digest.update(program.as_text().encode())
  if compiler_options:
    digest.update(json.dumps(compiler_options, sort_keys=True).encode())
  return digest.hexdigest()[:16]


@dataclasses.dataclass
class _Progress:
  """Where one replica's training stands: what a checkpoint's JSON part holds besides arrays."""
  best_params: dict
  best_val: float = math.inf
  best_epoch: int = 0
  bad_epochs: int = 0
  history: list = dataclasses.field(default_factory=list)
  stop_reason: str | None = None  # set once the replica stopped; "diverged: ..." if it diverged

  def bookkeeping(self) -> dict:
    return {"best_val": self.best_val, "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs, "history": self.history,
            "stop_reason": self.stop_reason}

  @classmethod
  def restored(cls, best_params, meta: dict) -> "_Progress":
    return cls(best_params=best_params, best_val=meta["best_val"], best_epoch=meta["best_epoch"],
               bad_epochs=meta["bad_epochs"], history=meta["history"],
               stop_reason=meta.get("stop_reason"))


DIVERGED = "diverged: "  # the stop reason's prefix of a replica that diverged (replicas > 1)


def _meta(progress: list, signature, fingerprint, **extra) -> dict:
  """A checkpoint's JSON part: one replica's bookkeeping at the top level (the layout of every
  single-seed checkpoint), several replicas' as a list under "per_replica"."""
  if len(progress) == 1:
    return {"signature": signature, "fingerprint": fingerprint, **progress[0].bookkeeping(),
            **extra}
  return {"signature": signature, "fingerprint": fingerprint, "replicas": len(progress),
          "per_replica": [p.bookkeeping() for p in progress], **extra}


def _best_params(progress: list):
  """Every replica's best parameters, stacked on a leading axis when there are several."""
  if len(progress) == 1:
    return progress[0].best_params
  return jax.tree.map(lambda *a: np.stack(a), *[p.best_params for p in progress])


def fit(cfg: TrainConfig, *, params, loss_fn: Callable, train_data: dict, val_data: dict,
        key, log: Callable[[str], None] = print, checkpoint_dir=None,
        run_signature: dict | None = None, replicas: int = 1,
        shared_data: bool = True) -> FitResult | list[FitResult]:
  """Trains `params` on `train_data`, early-stopping on `val_data`; returns the best parameters.

  Args:
    train_data, val_data: dicts of numpy arrays with equal leading length (e.g. {"x", "y"}).
    key: the run's PRNG key; epoch e uses fold_in(key, e).
    checkpoint_dir: if given, a checkpoint is written after every epoch and an existing one is
      resumed from ("resuming from epoch k" is logged) if it was made by the same computation:
      the same `run_signature` (config, data) and the same `computation_fingerprint` of the
      train and evaluation programs (model, loss, optimizer code); anything else is refused.
    replicas: N > 1 trains N independent replicas (seeds) in one program, the step `jax.vmap`ped
      over a leading replica axis that params and key carry (replica r: params[r], key[r]), and
      train_data and val_data too unless `shared_data` (one dataset for all). Replica r computes
      what `fit` with its params, key and data computes, to float rounding. Each replica
      early-stops on its own: a stopped one's updates are masked (its state stays as it was)
      while the others go on, and the run ends when all have stopped. A replica whose loss or
      gradient diverges stops with stop reason "diverged: <why>" and keeps its best parameters
      so far; DivergenceError only when every replica has diverged. Checkpoints hold all N; a
      checkpoint of another N is refused.
  Returns:
    FitResult; with replicas > 1 a list of N, one per replica.
  """
  runtime.keep_freed_memory()  # XLA:CPU re-faults each step's temporaries otherwise
  if replicas < 1:
    raise ValueError(f"replicas={replicas}; need at least 1")
  lead = 0 if replicas == 1 or shared_data else 1  # the axes before the example axis
  train_data, val_data = _with_weight(train_data, lead), _with_weight(val_data, lead)
  n = train_data["weight"].shape[-1]
  if n < cfg.batch_size:
    raise UserError(f"only {n} training examples for batch_size={cfg.batch_size}; "
                    f"lower --config.batch_size")
  steps_per_epoch = n // cfg.batch_size
  epochs = num_epochs(cfg, steps_per_epoch)
  optimizer = make_optimizer(cfg, steps_per_epoch)

  # Devices: the (small) datasets are replicated on every device and batches gathered there,
  # so an epoch needs no host round-trip; each step's batch is then split over the devices
  # (each replica's batch, with several replicas: replicas x data shards).
  mesh = data_mesh(cfg.devices)
  n_dev = mesh.devices.size
  if cfg.batch_size % n_dev:
    raise UserError(f"batch_size={cfg.batch_size} does not split over {n_dev} data-parallel "
                    f"devices; use a multiple of {n_dev} or --config.devices=1")
  by_batch, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  train_dev = jax.device_put(train_data, replicated)
  val_dev = jax.device_put(val_data, replicated)
  init_opt = optimizer.init if replicas == 1 else jax.vmap(optimizer.init)
  state = jax.device_put({"step": jnp.zeros(() if replicas == 1 else (replicas,), jnp.int32),
                          "params": params, "opt_state": init_opt(params)}, replicated)
  options = runtime.compiler_options(cfg.cpu_conv)  # None: XLA's defaults
  per_replica = dict(replicas=replicas, shared_data=shared_data, compiler_options=options)
  all_active = () if replicas == 1 else (jax.device_put(np.ones(replicas, bool), replicated),)

  # The programs, lowered first: their fingerprint decides whether a checkpoint may resume.
  make_epoch = {"scan": make_scan_epoch, "loop": make_loop_epoch}[cfg.epoch_mode]  # resolved
  epoch_fn = make_epoch(loss_fn, optimizer, n, cfg.batch_size, by_batch, **per_replica)
  eval_batch = cfg.eval_batch_size
  if replicas > 1:  # (memory only, not results) no padding past the validation set N times over
    eval_batch = min(eval_batch, -(-val_data["weight"].shape[-1] // n_dev) * n_dev)
  evaluate = make_evaluate(loss_fn, eval_batch, by_batch if eval_batch % n_dev == 0 else None,
                           **per_replica)
  lowered_epoch = epoch_fn.lower(state, train_dev, _epoch_key(key, 1, replicas), *all_active)
  lowered_eval = evaluate.lower(state["params"], val_dev)
  fingerprint = computation_fingerprint(lowered_epoch, lowered_eval, compiler_options=options)

  ckpt = Checkpointer(checkpoint_dir) if checkpoint_dir is not None else None
  try:
    state, progress, start, resumed_from, partial = _restore(
        ckpt, state, params, run_signature, fingerprint, epochs, log, replicas)
    with interrupt.watching() if ckpt is not None else contextlib.nullcontext():
      compile_s = 0.0
      if start <= epochs:
        t0 = time.perf_counter()
        compiled = lowered_epoch.compile()
        if cfg.epoch_mode == "scan":
          epoch_fn = compiled
        else:
          epoch_fn.use(compiled)
        evaluate = lowered_eval.compile()
        compile_s = time.perf_counter() - t0
        what = "epoch program" if cfg.epoch_mode == "scan" else "train step"
        log(f"compiled the {what} in {compile_s:.1f}s ({steps_per_epoch} steps/epoch"
            + (f", {replicas} replicas)" if replicas > 1 else ")"))
      loop = _Loop(cfg, epochs=epochs, steps_per_epoch=steps_per_epoch, epoch_fn=epoch_fn,
                   evaluate=evaluate, train_dev=train_dev, val_dev=val_dev, key=key, log=log,
                   ckpt=ckpt, signature=run_signature, fingerprint=fingerprint,
                   replicas=replicas, replicated=replicated)
      epoch_times = loop.run(state, progress, start, partial)
  finally:
    if ckpt is not None:
      ckpt.close()
  results = [FitResult(params=p.best_params, history=p.history, best_epoch=p.best_epoch,
                       stop_reason=p.stop_reason, compile_s=compile_s,
                       seconds_per_epoch=float(np.mean(epoch_times)) if epoch_times else 0.0,
                       resumed_from=resumed_from, fingerprint=fingerprint) for p in progress]
  return results[0] if replicas == 1 else results


def _restore(ckpt, state, params, signature, fingerprint, epochs, log, replicas):
  """(state, progress per replica, first epoch to run, epoch resumed after or None, a mid-epoch
  checkpoint's {"steps_done", "steps"} or None): from the newest checkpoint if there is one and
  it was made by the same computation, else from scratch. A checkpoint of another config, data,
  number of replicas or computation is refused (UserError)."""
  progress = [_Progress(best_params=_host(_replica(params, r, replicas)))
              for r in range(replicas)]
  if ckpt is None or ckpt.latest_epoch() is None:
    return state, progress, 1, None, None
  last = ckpt.latest_epoch()
  meta = ckpt.read_meta(last)
  refuse_another_run(ckpt.directory, meta, signature, fingerprint, replicas=replicas)
  tree, _ = ckpt.restore(last, {"state": state, "best_params": params})
  metas = [meta] if replicas == 1 else meta["per_replica"]
  progress = [_Progress.restored(_host(_replica(tree["best_params"], r, replicas)), m)
              for r, m in enumerate(metas)]
  partial = meta.get("partial")
  start, resumed_from = last + 1, last
  if partial:  # taken mid-epoch at a signal: finish epoch `last` first
    start, resumed_from = last, last - 1
    log(f"resuming from epoch {last - 1} + step {partial['steps_done']} of epoch "
        f"{last} in {ckpt.directory} (--restart starts over)")
  else:
    log(f"resuming from epoch {last} in {ckpt.directory} (--restart starts over)")
  if all(p.stop_reason for p in progress):
    start = epochs + 1  # that run had already finished; only re-evaluate.
  return tree["state"], progress, start, resumed_from, partial


class _Loop:
  """The epoch loop of `fit`, read top to bottom in `run`: train an epoch, check it, validate,
  keep the best, checkpoint, stop.

  With several replicas the epoch trains all of them at once (stopped ones masked) and every
  host-side step below (divergence check, validation row, best parameters, stop rules) runs
  per replica on its slice of the epoch's metrics, exactly as for one.

  A signal (jaxml.interrupt) makes the loop save a checkpoint where it stands and raise
  `Interrupted`: mid-epoch in loop mode, after the epoch program in scan mode.
  """

  def __init__(self, cfg, *, epochs, steps_per_epoch, epoch_fn, evaluate, train_dev, val_dev,
               key, log, ckpt, signature, fingerprint, replicas=1, replicated=None):
    self.cfg, self.epochs, self.steps_per_epoch = cfg, epochs, steps_per_epoch
    self.epoch_fn, self.evaluate = epoch_fn, evaluate
    self.train_dev, self.val_dev, self.key, self.log = train_dev, val_dev, key, log
    self.ckpt, self.signature, self.fingerprint = ckpt, signature, fingerprint
    self.replicas, self.replicated = replicas, replicated

  def run(self, state, progress: list[_Progress], start: int, partial=None) -> list[float]:
    """Trains epochs start..; updates `progress` in place; returns the epochs' wall times."""
    epoch_times = []
    for epoch in range(start, self.epochs + 1):
      t0 = time.perf_counter()
      running = [r for r, p in enumerate(progress) if p.stop_reason is None]
      state, steps = self.train_epoch(state, epoch, progress, partial)
      partial = None
      val_sums = _host(self.evaluate(state["params"], self.val_dev))
      # Several replicas: their parameters come to the host once and are sliced there.
      params = state["params"] if self.replicas == 1 else _host(state["params"])
      rows, diverged = {}, {}
      for r in running:
        steps_r = steps if self.replicas == 1 else {k: v[:, r] for k, v in steps.items()}
        step_losses = steps_r["loss"] / np.maximum(steps_r["count"], 1)
        try:
          _check_divergence(self.cfg.diverge_factor, steps_r, step_losses, progress[r].history,
                            epoch, self.ckpt)
          rows[r] = self.validate(_replica(params, r, self.replicas), epoch, steps_r,
                                  step_losses, _replica(val_sums, r, self.replicas))
        except DivergenceError as e:
          if self.replicas == 1:
            raise
          diverged[r] = str(e)
      seconds = time.perf_counter() - t0
      epoch_times.append(seconds)
      for r, row in rows.items():
        row["seconds"] = seconds
        history = progress[r].history
        best_train = min([h["train_loss"] for h in history] + [row["train_loss"]])
        if best_train > 0 and row["train_loss"] > self.cfg.climb_factor * best_train:
          row["over_best_train_loss"] = row["train_loss"] / best_train  # said in the epoch line
        self.record(row, _replica(params, r, self.replicas), progress[r])
        progress[r].stop_reason = self.stop_reason(epoch, progress[r])
      if self.replicas == 1:
        self.log(_epoch_line(rows[0], self.epochs, progress[0].best_epoch))
      elif rows:
        self.log(_replicas_epoch_line(rows, self.epochs, progress))
      for r, message in diverged.items():
        progress[r].stop_reason = DIVERGED + message
        self.log(f"replica {r} diverged, so it stops (the others go on): {message}")
      if diverged and all((p.stop_reason or "").startswith(DIVERGED) for p in progress):
        raise DivergenceError(f"all {self.replicas} replicas diverged; the last, replica "
                              f"{max(diverged)}: {diverged[max(diverged)]}")
      self.checkpoint(epoch, state, progress)
      for r in running:
        p = progress[r]
        if p.stop_reason and r not in diverged:
          self.log(("" if self.replicas == 1 else f"replica {r}: ")
                   + f"stopped at epoch {epoch} ({p.stop_reason}); "
                   + (f"kept the last epoch (val loss {p.best_val:.4f}; keep=last)"
                      if p.best_epoch == epoch and self.cfg.keep == "last" else
                      f"best val loss {p.best_val:.4f} at epoch {p.best_epoch}"))
      if all(p.stop_reason for p in progress):
        break
    return epoch_times

  def stop_reason(self, epoch: int, progress: _Progress) -> str | None:
    """Why this replica stops after `epoch`, or None while it goes on."""
    climbing = _climbing(self.cfg, progress.history)
    if climbing:
      return climbing
    if self.cfg.patience and progress.bad_epochs >= self.cfg.patience:
      return f"early stopping: no better val loss for {self.cfg.patience} epochs"
    if epoch == self.epochs:
      return "max epochs"
    return None

  def train_epoch(self, state, epoch: int, progress: list[_Progress], partial):
    """One epoch's steps (the rest of a mid-epoch checkpoint's epoch when resuming one);
    returns (state, per-step metrics on the host, [steps] or [steps, replicas] each)."""
    epoch_key = _epoch_key(self.key, epoch, self.replicas)
    active = () if self.replicas == 1 else (jax.device_put(
        np.array([p.stop_reason is None for p in progress]), self.replicated),)
    if self.cfg.epoch_mode == "scan":
      state, steps = self.epoch_fn(state, self.train_dev, epoch_key, *active)
      next_step = self.steps_per_epoch
    else:
      state, steps, next_step = self.epoch_fn(
          state, self.train_dev, epoch_key, *active,
          start_step=partial["steps_done"] if partial else 0,
          should_stop=interrupt.requested if self.ckpt is not None else None)
    steps = _host(steps)
    if partial:  # the steps this epoch ran before the mid-epoch checkpoint
      done = _decode_steps(partial["steps"])
      steps = {k: np.concatenate([done[k], v]) for k, v in steps.items()}
    if next_step < self.steps_per_epoch:  # a signal arrived mid-epoch (loop mode)
      self.ckpt.save(epoch, {"state": state, "best_params": _best_params(progress)},
                     _meta(progress, self.signature, self.fingerprint,
                           partial={"steps_done": next_step, "steps": _encode_steps(steps)}))
      raise interrupt.stopped(f"at step {next_step} of {self.steps_per_epoch} in epoch {epoch}")
    return state, steps

  def validate(self, params, epoch: int, steps: dict, step_losses, val_sums: dict) -> dict:
    """The epoch's history row: train metrics from the step sums, validation metrics (from the
    summed validation metrics `val_sums`), norms."""
    train_m = normalize_sums({k: steps[k].sum() for k in ("loss", "correct", "count")
                              if k in steps})
    val_m = normalize_sums(val_sums)
    if not math.isfinite(val_m["loss"]):
      raise DivergenceError(f"non-finite validation loss at epoch {epoch}; "
                            f"{_last_good(epoch, self.ckpt)}. Lower --config.learning_rate")
    return {"epoch": epoch,
            **{f"train_{k}": v for k, v in train_m.items()},
            **{f"val_{k}": v for k, v in val_m.items()},
            "grad_norm": float(steps["grad_norm"].mean()),  # before clipping
            "grad_norm_max": float(steps["grad_norm"].max()),
            "clipped_fraction": (float(np.mean(steps["grad_norm"] > self.cfg.grad_clip))
                                 if self.cfg.grad_clip > 0 else 0.0),
            "update_norm": float(steps["update_norm"].mean()),
            "param_norm": float(optax.tree.norm(params)),
            "step_losses": step_losses.tolist()}

  def record(self, row: dict, params, progress: _Progress) -> None:
    """Appends the row and keeps the best-validation parameters."""
    progress.history.append(row)
    last = (self.cfg.keep == "last" and row["epoch"] == self.epochs
            and _climbing(self.cfg, progress.history) is None)
    if row["val_loss"] < progress.best_val or last:
      progress.best_val, progress.best_epoch, progress.bad_epochs = (
          row["val_loss"], row["epoch"], 0)
      progress.best_params = _host(params)
    else:
      progress.bad_epochs += 1

  def checkpoint(self, epoch: int, state, progress: list[_Progress]) -> None:
    if self.ckpt is None:
      return
    self.ckpt.save(epoch, {"state": state, "best_params": _best_params(progress)},
                   _meta(progress, self.signature, self.fingerprint))
    if interrupt.requested() and not all(p.stop_reason for p in progress):
      raise interrupt.stopped(f"after epoch {epoch}")


def _encode_steps(steps: dict) -> dict:
  """Per-step metrics as JSON (values round-trip exactly: float32 -> float64 -> float32)."""
  return {k: {"dtype": str(v.dtype), "values": v.tolist()} for k, v in steps.items()}


def _decode_steps(encoded: dict) -> dict:
  return {k: np.asarray(v["values"], dtype=v["dtype"]) for k, v in encoded.items()}


def _check_divergence(factor: float, steps: dict, step_losses, history: list, epoch: int,
                      ckpt) -> None:
  """Raises DivergenceError at the first step whose loss or gradient norm is non-finite, or whose
  loss exceeds `factor` x the run's first step loss (0 turns that test off).

  The reference is the untrained model's loss (epoch 1, step 1, computed before its update), taken
  from the history a resumed run restores, so resuming does not move it.
  """
  fix = f"{_last_good(epoch, ckpt)}. Lower --config.learning_rate or set --config.grad_clip"
  if not steps["finite"].all():
    bad = int(np.argmin(steps["finite"]))
    raise DivergenceError(
        f"non-finite loss or gradient at epoch {epoch}, step {bad + 1} of {len(step_losses)} "
        f"(loss {step_losses[bad]:.3g}, grad norm {steps['grad_norm'][bad]:.3g}); {fix}")
  ref = history[0]["step_losses"][0] if history else float(step_losses[0])
  over = np.flatnonzero(step_losses > factor * ref) if factor and ref > 0 else []
  if len(over):
    bad = int(over[0])
    raise DivergenceError(
        f"loss exploded at epoch {epoch}, step {bad + 1} of {len(step_losses)}: "
        f"{step_losses[bad]:.3g}, over {factor:g}x the untrained model's {ref:.3g} "
        f"(--config.diverge_factor); {fix}")


def _last_good(epoch: int, ckpt) -> str:
  if ckpt is None:
    return "no checkpoint is kept for this run"
  if epoch == 1:
    return "no epoch completed, so no checkpoint was written"
  return f"the last good checkpoint is epoch {epoch - 1} in {ckpt.directory}"


def _climbing(cfg, history: list) -> str | None:
  """A stop reason when the epoch train loss has stayed above climb_factor x the best epoch's
  train loss for climb_epochs epochs: a run that diverges while its loss stays finite (too
  large a step for the data, exploding gradients that clipping only slows) is not left to
  wander; its best-validation parameters are what it reports."""
  k = cfg.climb_epochs
  if not k or len(history) <= k:
    return None
  best = min(r["train_loss"] for r in history[:-k])
  recent = [r["train_loss"] for r in history[-k:]]
  # ... and it has given back over half of what training gained since epoch 1: a near-zero loss
  # that triples (0.07 -> 0.24 on a few dozen series) is noise of a fitted model, not divergence.
  lost_half = min(recent) > best + 0.5 * (history[0]["train_loss"] - best)
  if best > 0 and lost_half and all(loss > cfg.climb_factor * best for loss in recent):
    return (f"diverging: train loss {recent[-1]:.4g} stayed above {cfg.climb_factor:g}x the "
            f"best epoch's {best:.4g} for {k} epochs (--config.climb_factor, climb_epochs); "
            f"lower --config.learning_rate")
  return None


def _epoch_line(row: dict, epochs: int, best_epoch: int) -> str:
  acc = lambda k: f" acc {row[k]:.4f}" if k in row else ""
  clipped = f" clip {row['clipped_fraction']:.0%}" if row.get("clipped_fraction") else ""
  return (f"epoch {row['epoch']:3d}/{epochs}  train loss {row['train_loss']:.4f}"
          f"{acc('train_accuracy')}  val loss {row['val_loss']:.4f}{acc('val_accuracy')}  "
          f"|g| {row['grad_norm']:.3g} (max {row['grad_norm_max']:.3g}{clipped})  "
          f"{row['seconds']:.2f}s" + ("  *" if best_epoch == row["epoch"] else "")
          + (f"  train loss {row['over_best_train_loss']:.1f}x its best"
             if "over_best_train_loss" in row else ""))


def _replicas_epoch_line(rows: dict, epochs: int, progress: list) -> str:
  """The epoch line of several replicas: mean ± std (over the replicas that trained this
  epoch) of train and validation loss and accuracy, with the range of validation accuracy."""
  def spread(key, digits=4):
    v = np.array([row[key] for row in rows.values()])
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {std:.{digits}f}"
  first = next(iter(rows.values()))
  acc = lambda k: f" acc {spread(k)}" if k in first else ""
  val_range = (f" [{min(r['val_accuracy'] for r in rows.values()):.3f}, "
               f"{max(r['val_accuracy'] for r in rows.values()):.3f}]"
               if "val_accuracy" in first else "")
  new_best = sum(progress[r].best_epoch == row["epoch"] for r, row in rows.items())
  return (f"epoch {first['epoch']:3d}/{epochs}  {len(rows)}/{len(progress)} replicas  "
          f"train loss {spread('train_loss')}{acc('train_accuracy')}  val loss "
          f"{spread('val_loss')}{acc('val_accuracy')}{val_range}  |g| "
          f"{np.mean([r['grad_norm'] for r in rows.values()]):.3g} (max "
          f"{max(r['grad_norm_max'] for r in rows.values()):.3g})  {first['seconds']:.2f}s"
          + (f"  * {new_best} new best" if new_best else ""))
