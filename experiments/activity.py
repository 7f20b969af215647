"""Activity recognition from accelerometer sequences with an RNN, LSTM or GRU.

    python -m experiments.run --exp=gru_activity            # embedded BasicMotions
    python -m experiments.run --exp=gru_activity --data_path=data3.h5
    python -m experiments.run --exp=lstm_activity --preset=seed --data_path=data3.h5
    python -m experiments.run --exp=gru_activity --data_path=sktime:JapaneseVowels  # 7-29 steps

Variable-length `.ts` series are zero-padded with a mask: the recurrent layer skips padded
steps (its carry is kept), so "last" reads the last valid step and "mean" averages valid steps.

Net (the seed's): recurrent layer (128 units) -> MLP 70 -> 30 (ReLU) -> softmax over classes.
The `seed` preset is the seed's training setting: SGD with momentum 0.85, lr 0.1 (GRU 0.3),
batch 32, at most 50 epochs, Xavier-uniform weights, raw (unnormalised) inputs, stopped on the
cross-entropy of the 10% held out. The seed reached test accuracy RNN 0.43, LSTM 0.65, GRU 0.81
on its data3.h5 and blamed exploding gradients. The default is our recipe: inputs standardised
per channel with training statistics, AdamW with a cosine schedule, gradient clipping, a batch
size and epoch count scaled to the data (`scaled_by_data`), on small data an ensemble of up to
5 networks averaged (and for the GRU a second, right-to-left cell), and either the last
epoch's parameters (a validation split of under 100 series cannot rank epochs) or the early
stopping of the train loop (see BUILD_NOTES.md for measurements).
"""

import dataclasses
from typing import Literal

import jax
import numpy as np

from experiments.base import Experiment, ReportInfo, RunContext, first_existing
from jaxml import config as config_lib
from jaxml import recurrent, runtime
from jaxml.config import require
from jaxml.data import activity as activity_data
from jaxml.data.splits import channel_stats, holdout_splits, standardize
from jaxml.models import sequence_classifier
from jaxml.pipeline import train_classifier
from jaxml.train import TrainConfig, validate_train_config


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
  """Model and data settings; optimisation settings are inherited from TrainConfig.

  Measured results and run times are in README.md and reports/REPORT.md.
  """
  # --- model
  cell: str = "gru"                 # a name in jaxml.recurrent.CELLS (rnn, lstm, gru, or yours)
  hidden: int = 128                 # recurrent units (seed: 128)
  head: tuple[int, ...] = (70, 30)  # ReLU MLP layer sizes after the recurrent layer (seed)
  bidirectional: bool | None = False  # add a right-to-left cell; the readout sees both.
                                    # None = by the data (the GRU's default): on while a
                                    # two-way network fits the work budget (WORK_BUDGET)
  readout: Literal["last", "mean", "max", "mean_max"] = "mean"  # over valid steps (seed: last;
                                    # LSTM default: mean_max)
  dropout: float = 0.0              # dropout on the readout and head inputs in training
  input_noise: float = 0.0          # std of Gaussian jitter added to the normalised inputs in
                                    # training (augmentation; 0 = off)
  crop: float = 0.0                 # training: keep a random window of each series, at least
                                    # (1 - crop) of its steps (augmentation; 0 = off)
  conv: tuple[int, ...] = ()        # 1-D conv front end: channels per ReLU layer (() = none)
  conv_width: int = 3               # its filter width in time steps (odd: centred)
  forget_bias: float = 1.0          # LSTM forget-gate bias at init (ignored by RNN, GRU)
  unroll: int = 1                   # lax.scan unroll factor (speed only, same numbers)
  backward: Literal["fast", "autodiff"] = "fast"  # gradient through time, both derived from
                                    # the cell's step: the "fast" custom VJP (no weight gradient
                                    # inside the loop; faster for the LSTM/GRU steps, BUILD_NOTES
                                    # "The fast backward split at the weights") or jax.grad of
                                    # the plain scan; the same numbers to float rounding
  # --- data
  normalize: Literal["channel", "none"] = "channel"  # per-channel z-score, train statistics
  channels: Literal["all", "accelerometer", "gyroscope"] = "all"  # BasicMotions: which sensor
  window: int = 150                 # WISDM raw: samples per window (7.5 s at 20 Hz, as data3.h5)
  window_stride: int = 150          # WISDM raw: step between window starts (no overlap)
  test_user_fraction: float = 0.2   # WISDM raw: share of users held out for testing
  val_by: Literal["auto", "series", "group"] = "series"  # what validation holds out: random
                                    # series (stratified), or whole people the data names
                                    # (data3.h5-layout trS, WISDM users: "group"), so it meets
                                    # new people as the test part does; auto = people where at
                                    # least 1 / val_fraction of them are named. Not the default:
                                    # early stopping on two people's loss stopped too early
                                    # (BUILD_NOTES "Validation by person")
  # --- optimisation (TrainConfig fields whose default differs here)
  optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adamw"  # Adam + decoupled decay
  weight_decay: float = 0.1         # AdamW's decay (x lr per step): in 4-fold CV on the training
                                    # series it beat plain Adam for the LSTM and GRU (BUILD_NOTES)
  learning_rate: float = 3e-3       # peak, cosine-decayed over `epochs` (LSTM default: 1e-2)
  lr_schedule: Literal["constant", "cosine"] = "cosine"
  grad_clip: float = 1.0            # global-norm clipping against exploding BPTT gradients
  batch_size: int = 0               # 0 = by the training-set size (`scaled_by_data`): 8 for a
                                    # few dozen series (BasicMotions' 36), 128 for ~5k windows
  epochs: int = 0                   # 0 = by the data: 100 for small sets, fewer for large ones
  ensemble: int = 0                 # networks trained together (other seeds) whose mean class
                                    # probabilities are the prediction; 1 = one network, 0 = by
                                    # the data: up to 5 while the run's work stays in budget
  keep: Literal["auto", "best_val", "last"] = "auto"  # parameters reported: "auto" = by the
                                    # data: the last epoch's when the validation split has
                                    # under 100 series (too few to rank epochs), else best_val
  patience: int = -1                # epochs without a better val loss before stopping (0 =
                                    # never); -1 = a fifth of the epochs (20 of 100), or 0
                                    # when keep resolves to "last"
  epoch_mode: Literal["auto", "scan", "loop"] = "auto"  # an epoch as one lax.scan (fast for
                                    # the recurrent steps) or a Python loop of jitted steps;
                                    # auto = the loop with a conv front end on CPU, where XLA
                                    # runs convolutions inside a scan ~15x slower (BUILD_NOTES
                                    # "Gotchas"), else the scan


# How each cell's default differs from Config's, each row chosen by 4-fold cross-validation on
# the training series (never the test set; benchmarks/activity_cv.py; BUILD_NOTES.md "Choosing
# the activity defaults" and "Gradient spikes on real sequences"):
# - learning_rate: on BasicMotions, checked for stability on 150-step sequences (issue 2);
# - bidirectional by the data for the GRU only (session 9): a second direction helped the GRU
#   on BasicMotions and JapaneseVowels, and not the LSTM or the RNN; on real smartphone
#   recordings of ~5k windows it helped at half the epochs (session 16, three splits by person);
# - the LSTM's mean_max readout (session 11): better than the mean on both sets.
CELL_DEFAULTS = {
    "rnn": {"learning_rate": 3e-3},
    "lstm": {"learning_rate": 1e-2, "readout": "mean_max"},
    "gru": {"learning_rate": 3e-3, "bidirectional": None},
}


def default_preset(cell: str) -> Config:
  return Config(cell=cell, **CELL_DEFAULTS[cell])


def seed_preset(cell: str) -> Config:
  """The seed's hyper-parameters (its GRU needed the larger learning rate 0.3)."""
  return Config(cell=cell, optimizer="sgd", learning_rate=0.3 if cell == "gru" else 0.1,
                momentum=0.85, lr_schedule="constant", grad_clip=0.0, batch_size=32,
                epochs=50, patience=5, normalize="none", forget_bias=0.0, readout="last",
                weight_decay=0.0, keep="best_val", ensemble=1)


# Defaults that scale with the data (issue 18). A recipe tuned on 36 series at batch 8 took 659
# noisy steps per epoch on ~5k windows, and 100 epochs of them took ~25 minutes. The batch keeps
# ~40 steps per epoch up to 10k series; the epochs keep 100 for small sets and otherwise bound
# the run's work (series x time steps x epochs), since a step's time grows with batch x time
# almost linearly on a CPU (batch 256 costs 1.8x batch 128: BUILD_NOTES).
STEPS_PER_EPOCH = 40      # target steps per epoch: batch = n_train / 40, a power of two ...
BATCH_RANGE = (8, 256)    # ... clipped to this range
EPOCH_RANGE = (10, 100)   # epochs: 100 for small sets, at least 10 for huge ones
MIN_VAL_TO_RANK = 100     # keep=auto: fewer validation series than this keep the last epoch
MAX_ENSEMBLE = 5          # ensemble=0: members while members x directions x series x steps x
                          # epochs fits the work budget (5 on BasicMotions / JapaneseVowels, 1 on
                          # data3.h5); bidirectional=None: two directions unless one two-way
                          # network at the fewest epochs would exceed the budget (~12k windows of
                          # 128 steps); epochs by the data count the directions
WORK_BUDGET = 30e6        # series x time steps x epochs per run: ~5 min of training for the
                          # GRU/LSTM-128 on the 2-core CPU of BUILD_NOTES (~38 epochs of 5.3k
                          # windows of 150 steps)


def scaled_by_data(cfg: Config, n_train: int, time_steps: int, n_val: int
                   ) -> tuple[Config, dict]:
  """Resolves batch_size=0, epochs=0, bidirectional=None, ensemble=0, keep="auto" and
  patience=-1 from the number of training series, their (padded) length and the number of
  validation series, and epoch_mode="auto" from the model and backend.

  Returns (the config to run, {field: "value (why)"} for the log; empty if nothing was
  resolved). Explicit values (--config.batch_size=32) are kept as they are.
  """
  lo, hi = BATCH_RANGE
  batch = cfg.batch_size or int(np.clip(2 ** round(np.log2(max(n_train / STEPS_PER_EPOCH, 1))),
                                        lo, hi))
  steps = max(n_train // batch, 1)
  per_epoch = n_train * time_steps  # the work of one epoch of one one-way network
  bidirectional = cfg.bidirectional if cfg.bidirectional is not None else bool(
      2 * per_epoch * EPOCH_RANGE[0] <= WORK_BUDGET)
  directions = 2 if bidirectional else 1
  epochs = cfg.epochs or int(np.clip(round(WORK_BUDGET / (directions * per_epoch)),
                                     *EPOCH_RANGE))
  work = per_epoch * epochs  # of one one-way network
  ensemble = cfg.ensemble or int(np.clip(WORK_BUDGET // (directions * work), 1, MAX_ENSEMBLE))
  keep = cfg.keep if cfg.keep != "auto" else (  # an explicit patience means early stopping
      "last" if n_val < MIN_VAL_TO_RANK and cfg.patience <= 0 else "best_val")
  patience = cfg.patience if cfg.patience >= 0 else (
      0 if keep == "last" else max(epochs // 5, 5))
  resolved = {name: value for name, value, by_data in (
      ("batch_size", batch, cfg.batch_size == 0), ("epochs", epochs, cfg.epochs == 0),
      ("bidirectional", bidirectional, cfg.bidirectional is None),
      ("ensemble", ensemble, cfg.ensemble == 0),
      ("keep", keep, cfg.keep == "auto"), ("patience", patience, cfg.patience == -1))
      if by_data}
  why = {k: f"{v} (by the data: {n_train} training series of {time_steps} steps, {steps} steps "
            f"per epoch, {n_val} validation series)" for k, v in resolved.items()}
  if cfg.epoch_mode == "auto":
    loop = bool(cfg.conv) and jax.default_backend() == "cpu"
    resolved["epoch_mode"] = "loop" if loop else "scan"
    if loop:
      why["epoch_mode"] = "loop (a conv front end on CPU, where convolutions inside a scan are slow)"
  return dataclasses.replace(cfg, **resolved), why


def tiny(cfg: Config) -> Config:
  """A seconds-long run for smoke tests: small net, few epochs, one network."""
  return dataclasses.replace(cfg, hidden=8, head=(6,), epochs=2, patience=0, batch_size=8,
                             ensemble=1)


def validate(cfg: Config) -> None:
  config_lib.check_choices(cfg)
  require(cfg.batch_size >= 0, "batch_size", "a positive integer, or 0 (by the data)",
          cfg.batch_size)
  require(cfg.epochs >= 0, "epochs", "a positive integer, or 0 (by the data)", cfg.epochs)
  require(cfg.ensemble >= 0, "ensemble", "a positive integer (1: one network), or 0 (by the "
          "data)", cfg.ensemble)
  require(cfg.patience >= -1, "patience", ">= 0 (0: never), or -1 (a fifth of the epochs)",
          cfg.patience)
  validate_train_config(scaled_by_data(cfg, n_train=1000, time_steps=100, n_val=100)[0])
  require(cfg.cell in recurrent.CELLS, "cell",
          f"a registered cell ({', '.join(recurrent.CELLS)})", cfg.cell)
  require(cfg.hidden >= 1, "hidden", "a positive integer", cfg.hidden)
  require(all(h >= 1 for h in cfg.head), "head", "positive layer sizes such as 70,30", cfg.head)
  require(all(c >= 1 for c in cfg.conv), "conv", "positive channel counts such as 64,64 (or "
          "empty: no conv front end)", cfg.conv)
  require(cfg.conv_width >= 1, "conv_width", "a positive integer", cfg.conv_width)
  require(0 <= cfg.dropout < 1, "dropout", "in [0, 1)", cfg.dropout)
  require(cfg.input_noise >= 0, "input_noise", ">= 0 (0: off)", cfg.input_noise)
  require(0 <= cfg.crop < 1, "crop", "in [0, 1) (0: off)", cfg.crop)
  require(cfg.unroll >= 1, "unroll", "a positive integer", cfg.unroll)
  require(cfg.window >= 2, "window", "at least 2", cfg.window)
  require(cfg.window_stride >= 1, "window_stride", "a positive integer", cfg.window_stride)
  require(0 < cfg.test_user_fraction < 1, "test_user_fraction", "in (0, 1)",
          cfg.test_user_fraction)


def prepare_splits(data, cfg: Config, seed: int) -> tuple[dict, dict]:
  """Holds out cfg.val_fraction of the training data (random series, stratified, or whole
  people: cfg.val_by) and normalises every split with statistics of the remaining training
  part only. Returns (splits, notes).

  Variable-length data gives (x, y, mask) splits: the statistics use valid steps only and the
  padding stays 0.
  """
  splits, notes = holdout_splits(data, cfg.val_fraction, seed, by=cfg.val_by)
  if cfg.normalize == "channel":
    x_train, _, *mask_train = splits["train"]
    mean, std = channel_stats(x_train, mask=mask_train[0] if mask_train else None)
    splits = {k: (standardize(x, mean, std, *mask), y, *mask)
              for k, (x, y, *mask) in splits.items()}
    notes["normalization"] = {"mean": mean.tolist(), "std": std.tolist()}
  return splits, notes


def _steps(data) -> str:
  """'100 steps', or '7-29 steps (padded to 29)' for variable-length series."""
  if not data.variable_length:
    return f"{data.x_train.shape[1]} steps"
  lengths = np.concatenate([data.len_train, data.len_test])
  return f"{lengths.min()}-{lengths.max()} steps (padded to {data.x_train.shape[1]})"


def run(cfg: Config, ctx: RunContext) -> dict:
  data = activity_data.load_activity(ctx.data_path, channels=cfg.channels, window=cfg.window,
                                     stride=cfg.window_stride,
                                     test_user_fraction=cfg.test_user_fraction)
  return train_on(data, cfg, ctx)


def model_fns(cfg: Config, n_features: int, n_classes: int):
  """(init_fn: key -> params, apply_fn: (params, x, *, train, key, mask=None) -> logits), the
  experiment's model as jaxml.pipeline.train_classifier takes it."""
  init_fn = lambda k: sequence_classifier.init(k, cfg, n_features=n_features,
                                               n_classes=n_classes)
  apply_fn = lambda p, x, *, train, key, mask=None: sequence_classifier.apply(
      p, x, cfg=cfg, mask=mask, train=train, key=key)
  return init_fn, apply_fn


def train_on(data, cfg: Config, ctx: RunContext) -> dict:
  """Trains and tests on loaded ClassificationData (benchmarks/activity_cv.py passes folds)."""
  # Every seed its own validation split and normalisation, as its single run (--seeds).
  splits = ctx.per_seed(lambda seed: prepare_splits(data, cfg, seed)[0])
  notes = prepare_splits(data, cfg, ctx.seed)[1]  # sizes; the statistics are --seed's
  described = dict(data.describe(), **notes)
  val = (f"{notes['n_val']} val (people {', '.join(map(str, notes['val_groups']))})"
         if notes["val_by"] == "group" else f"{notes['n_val']} val")
  ctx.log(f"data: {data.source}: {notes['n_train']} train / {val} / "
          f"{len(data.y_test)} test, {_steps(data)} x {data.x_train.shape[2]} "
          f"channels ({described['channels']}), classes {', '.join(data.class_names)}")
  cfg, why = scaled_by_data(cfg, notes["n_train"], data.x_train.shape[1], notes["n_val"])
  for name, text in why.items():
    ctx.log(f"{name} {text}")
  ctx.cpu_pool(cfg.batch_size * cfg.ensemble * ctx.seeds)  # rows of a step, now it is known
  init_fn, apply_fn = model_fns(cfg, data.x_train.shape[-1], len(data.class_names))
  out, _ = train_classifier(
      cfg, splits=splits, class_names=data.class_names, init_fn=init_fn, apply_fn=apply_fn,
      key=ctx.per_seed(jax.random.key), workdir=ctx.workdir, log=ctx.log, restart=ctx.restart,
      signature={"config": config_lib.to_dict(cfg), **ctx.seed_signature,
                 "data": data.describe()},
      title=f"{cfg.cell.upper()} on {data.source}", ensemble=cfg.ensemble)
  return dict(out, data=described, config=config_lib.to_dict(cfg))


# How experiments/report.py shows these experiments (one record per cell, the seed's figures).
_REPORT = ReportInfo(
    project="003_9ba3fd9f2b4c427d.txt",
    differences="Seed: its data3.h5, 3000 train / 600 test windows of 150 steps x 3 "
                "accelerometer axes, 6 activities. Without DATA_ROOT/data3.h5 we use "
                "BasicMotions (UEA, shipped in sktime): 40 train / 40 test series of 100 "
                "steps x 6 channels, 4 activities, a different and much smaller task, so its "
                "numbers are not comparable with the seed's. The seed preset keeps the "
                "seed's SGD (lr 0.1, GRU 0.3, momentum 0.85, 50 epochs) at batch 32, i.e. "
                "one step per epoch on 36 training series, and stops early (patience 5).",
    data=lambda root: first_existing(root, "data3.h5", "WISDM_ar_v1.1_raw.txt"))
REPORT = {
    "rnn": dataclasses.replace(_REPORT, seed_figure="0.4316 test (0.43 train), data3.h5",
                               typical_s=(8, 26, 20, 22)),
    "lstm": dataclasses.replace(_REPORT, seed_figure="0.6533 test (0.7855 train), data3.h5",
                                typical_s=(9, 32, 30, 30)),
    "gru": dataclasses.replace(_REPORT, seed_figure="0.81 test (0.9485 train), data3.h5",
                               typical_s=(8, 28, 28, 29)),
}


def _experiment(cell: str) -> Experiment:
  return Experiment(
      name=f"{cell}_activity",
      description=f"{cell.upper()} (128) -> MLP 70-30 activity classifier",
      presets={"default": default_preset(cell), "seed": seed_preset(cell)},
      tiny=tiny, validate=validate, run=run, report=REPORT[cell], seeds=True,
      cpu_threads=runtime.recurrent_pool)  # a loop of small kernels: one XLA thread is faster


RNN, LSTM, GRU = (_experiment(c) for c in ("rnn", "lstm", "gru"))
