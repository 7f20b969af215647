"""Train-step speed of jaxml's real training code beside the same nets in PyTorch (issue 9).

    python -m benchmarks.speed                              # all six, ~5 min on 2 cores
    python -m benchmarks.speed --only=cnn_mnist,gru_activity --out=/tmp/speed.json
    python -m benchmarks.speed --quick --torch=off          # tiny shapes, seconds (the test)
    python -m benchmarks.speed --batch_scale=8              # on a GPU: batches 8x the experiments'
    python -m benchmarks.speed --threads=1                  # one core each, CPU time (a busy host)

For each benchmark the jaxml side is the step the experiments train with: the experiment's
default config, its model's init/apply, its loss (classification cross-entropy) and
`jaxml.train.make_optimizer(cfg)`, run through `jaxml.train.train_step` jitted with the train
state donated and the batch gathered from device-resident data inside the jit, exactly as
`make_loop_epoch` does. Inputs are synthetic random arrays of the experiment's shapes (speed does
not depend on the values); augmentation is off on both sides. The PyTorch side
(benchmarks/torch_models.py; only when `import torch` works, else its columns are null) has the
same layers, batch, optimizer, loss and clipping, with torch.set_num_threads(cpu count, or
--torch_threads). Caveat: with as many OpenMP threads as cores, a PyTorch step waits at every
parallel region for a thread that another busy process may have descheduled; on a shared
2-core machine its steps then take 10-300x longer for minutes at a time (tight IQR, so not
mere noise). Read torch columns with the run's `load_average`, or compare --torch_threads=1.

Both sides run in this one process, interleaved (a block of jaxml steps, a block of torch steps,
repeated) so that load from other processes hits both alike; warm-up steps are excluded and
every step is timed on its own (jaxml: until its outputs are ready). Reported per benchmark:
  ms        median ms per step, and the inter-quartile range [q25, q75];
  torch_over_jaxml  torch median / jaxml median (> 1: jaxml is faster); `_best`: the same
            for the fastest step of each (`ms_min`), which other processes disturb less;
  flops     matmul + convolution FLOPs of one train step (2 per multiply-add), counted on the
            step's jaxpr with every `lax.scan` body multiplied by its length; `xla_flops` is
            the compiled step's cost_analysis()["flops"], which counts a while loop's body once
            (so it is far too low for the recurrent nets) and adds elementwise work;
  gflops_per_s / fraction_of_peak  flops / median step time, and its share of the matmul peak
            measured in this run (best of several 2048x2048 float32 matmuls, same library);
  floor_ms  the host's limit for the step: flops / the best matmul peak measured in this run;
            `over_floor` (per side) is ms / floor_ms;
  minor_faults_per_step  median minor page faults of a timed step (getrusage ru_minflt deltas;
            `_max` the worst step): near 0 once freed scratch is kept (jaxml/runtime.py);
  compile_s jax lower + compile of the step (excluded from the step times);
  memory    XLA's compiled.memory_analysis(): temp bytes (the step's scratch), argument bytes
            (train state + the resident synthetic data set) and output bytes; and the growth
            of the process' peak resident set (VmHWM, reset before the side's warm-up steps)
            over its resident set at that moment, for each side.
`machine` records the CPU model, its vector extensions (/proc/cpuinfo flags: avx2, avx512f,
avx512_bf16, amx_tile, ...), the timing mode and the XLA flags. `--threads=1` pins the process
to one core before jax starts (inherited by XLA's and torch's threads), makes XLA's Eigen
single-threaded, gives torch one thread, and times every step by the process' CPU time, so
other processes' load hardly moves the numbers (the peak is then one core's too).
Also the whole-epoch throughput (examples/s) of `make_scan_epoch` (one XLA program) against
`make_loop_epoch` (a Python loop of jitted steps) on a synthetic epoch.
Writes JSON (default benchmarks/results/speed.json) and a markdown table beside it (.md).
On a GPU (issue 20) torch runs on CUDA beside jax (--torch_device=auto) and each torch step ends
with torch.cuda.synchronize(), so both sides are timed by the same wall clock to the end of the
step's device work; `machine` records the device, the matmul precision and torch's TF32 flags.
"""

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pinning import pin_to_one_core  # noqa: E402  (imports no jax)

_PINNED = {"cpu": None}
if __name__ == "__main__" and "--threads=1" in sys.argv[1:] and hasattr(os, "sched_setaffinity"):
  _PINNED["cpu"] = pin_to_one_core()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments import activity, imdb, mnist_cnn  # noqa: E402
from experiments import ngram_lm as ngram_exp  # noqa: E402
from jaxml import runtime  # noqa: E402
from jaxml.pipeline import classifier_loss_fn  # noqa: E402
from jaxml.runtime import cpu_client_threads, keep_freed_memory, parse_pool  # noqa: E402
from jaxml.models import cnn, ngram_lm, sequence_classifier, text_classifier  # noqa: E402
from jaxml.train import make_loop_epoch, make_optimizer, make_scan_epoch, make_step  # noqa: E402

BENCHMARKS = ("cnn_mnist", "lenet5_mnist", "gru_activity", "lstm_activity", "lstm_imdb",
              "ngram_lm")
EPOCH_BENCHMARKS = ("gru_activity", "lstm_activity", "cnn_mnist")
# Each benchmark is its experiment's step, so it runs with that experiment's XLA:CPU pool size
# (Experiment.cpu_threads, what experiments.run's --cpu_threads=auto applies).
EXPERIMENTS = {e.name: e for e in (mnist_cnn.CNN, mnist_cnn.LENET5, activity.GRU, activity.LSTM,
                                   imdb.LSTM, ngram_exp.NGRAM_LM)}
IMDB_VOCAB = 500      # encode() of ../shared/data/imdb/imdb_500w_5k.npz gives vocab_size 500
ACTIVITY_SHAPE = (150, 3)  # time steps x channels of an activity window (BasicMotions, data3.h5)
ACTIVITY_CLASSES = 6       # data3.h5's WISDM activities
NGRAM_VOCAB = 250          # the seed's vocabulary (data2.h5, the embedded KJV default)


@dataclasses.dataclass(frozen=True)
class Sizes:
  """How much work one run does; `--quick` swaps in tiny shapes and few repeats."""
  image: int = 28             # MNIST side in pixels
  activity_time: int = 150    # time steps of an activity window
  imdb_maxlen: int = 0        # 0: the experiment's cfg.maxlen (256)
  shrink: bool = False        # use each experiment's tiny() config (smaller nets and batches)
  data_batches: int = 4       # resident synthetic data set = this many batches
  rounds: int = 6             # interleaved rounds of (jaxml block, torch block)
  block_s: float = 0.5        # seconds of steps per block (at least one step, at most max_block)
  max_block: int = 50         # steps per block at most
  warmup: int = 3             # untimed steps per side before timing
  epoch_steps: int = 20       # steps of the synthetic whole-epoch benchmark
  epoch_steps_cnn: int = 10   # the CNN's (its scan epoch is slow on XLA:CPU)
  epoch_repeats: int = 3      # timed epochs per mode (after one warm-up epoch), at most...
  epoch_budget_s: float = 12.0  # ...and no more once this many seconds were spent timing
  matmul_n: int = 2048        # side of the square float32 matmul for the peak
  matmul_repeats: int = 10    # best of this many (at the start and again at the end)
  batch_scale: int = 1        # every benchmark's batch times this (--batch_scale: a GPU's size)
  torch_device: str = "cpu"   # where the PyTorch twin runs ("cuda" beside jax on a GPU)


QUICK = Sizes(image=16, activity_time=12, imdb_maxlen=16, shrink=True, data_batches=2, rounds=2,
              block_s=0.02, max_block=3, warmup=1, epoch_steps=3, epoch_steps_cnn=2,
              epoch_repeats=1, epoch_budget_s=2.0, matmul_n=512, matmul_repeats=5)


@dataclasses.dataclass(frozen=True)
class Case:
  """One benchmark: the jaxml step's ingredients and its PyTorch twin."""
  name: str
  cfg: object                 # the experiment's config (a TrainConfig)
  params: dict                # the model's init
  loss_fn: Callable           # (params, batch, *, train, key) -> (loss, sums), as the experiment
  data: dict                  # synthetic numpy {"x", "y", "weight"}, data_batches * batch rows
  describe: str               # one line: what the step is
  torch_model: Callable       # (torch_models module) -> nn.Module
  torch_x: Callable           # (torch, numpy x) -> the model's input tensor


def _scaled(cfg, sizes: Sizes):
  """The config with its batch times --batch_scale (a batch large enough to keep a GPU busy)."""
  if sizes.batch_scale == 1:
    return cfg
  return dataclasses.replace(cfg, batch_size=cfg.batch_size * sizes.batch_scale)


def _labelled(rng, x, n_classes: int) -> dict:
  n = len(x)
  return {"x": x, "y": rng.integers(0, n_classes, n).astype(np.int32),
          "weight": np.ones((n,), np.float32)}


def _init(init_fn, key) -> dict:
  """The model's own init, jitted: one compilation instead of one per eager random op."""
  return jax.jit(init_fn)(key)


def case_config(name: str, sizes: Sizes, **overrides):
  """The benchmark's config: its experiment's default (tiny with --quick, the batch times
  --batch_scale) with `overrides`. Touches no jax (the XLA pool is sized from it first)."""
  if name in ("cnn_mnist", "lenet5_mnist"):
    module, cfg = mnist_cnn, mnist_cnn.default_preset(
        "seed_cnn" if name == "cnn_mnist" else "lenet5")
  elif name in ("gru_activity", "lstm_activity"):
    # batch 32 is the seed's; the default preset picks the batch by the data (8 on
    # BasicMotions), so the benchmark sets the batch the issue measures and resolves the
    # rest (epochs, patience) as for data3.h5's 2700 training windows.
    module, (cfg, _) = activity, activity.scaled_by_data(
        dataclasses.replace(activity.default_preset(name.split("_")[0]), batch_size=32),
        n_train=2700, time_steps=150, n_val=300)
  elif name == "lstm_imdb":
    module, cfg = imdb, imdb.default_preset("lstm")
  elif name == "ngram_lm":
    module, cfg = ngram_exp, ngram_exp.default_preset()
  else:
    raise ValueError(name)
  return dataclasses.replace(_scaled(module.tiny(cfg) if sizes.shrink else cfg, sizes),
                             **overrides)


def make_case(name: str, sizes: Sizes, **overrides) -> Case:
  """The experiment's default config and model with synthetic inputs of its shapes;
  `overrides` replace config fields (e.g. backward="autodiff" for benchmarks/recurrent_ab.py)."""
  rng = np.random.default_rng(0)
  key = jax.random.key(0)
  if name in ("cnn_mnist", "lenet5_mnist"):
    arch = "seed_cnn" if name == "cnn_mnist" else "lenet5"
    cfg = case_config(name, sizes, **overrides)
    shape = (sizes.image, sizes.image, 1)
    n = sizes.data_batches * cfg.batch_size
    data = _labelled(rng, rng.random((n, *shape), np.float32), 10)
    params = _init(lambda k: cnn.init(k, cfg, input_shape=shape, n_classes=10), key)
    apply_fn = lambda p, x, *, train, key: cnn.apply(p, x, cfg=cfg, train=train, key=key)

    def torch_model(tm):
      net = tm.SeedCNN if arch == "seed_cnn" else tm.LeNet5
      return net(1, sizes.image, sizes.image, 10, cfg.dropout)

    return Case(name, cfg, params, classifier_loss_fn(apply_fn), data,
                f"{arch} CNN, {sizes.image}x{sizes.image}x1, batch {cfg.batch_size}, dropout "
                f"{cfg.dropout}, {cfg.optimizer} lr {cfg.learning_rate}",
                torch_model, lambda torch, x: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
  if name in ("gru_activity", "lstm_activity"):
    cell = name.split("_")[0]
    cfg = case_config(name, sizes, **overrides)
    shape = (sizes.activity_time, ACTIVITY_SHAPE[1])
    n = sizes.data_batches * cfg.batch_size
    data = _labelled(rng, rng.standard_normal((n, *shape), np.float32), ACTIVITY_CLASSES)
    params = _init(lambda k: sequence_classifier.init(k, cfg, n_features=shape[1],
                                                     n_classes=ACTIVITY_CLASSES), key)
    apply_fn = lambda p, x, *, train, key: sequence_classifier.apply(p, x, cfg=cfg, train=train,
                                                                     key=key)
    return Case(name, cfg, params, classifier_loss_fn(apply_fn), data,
                f"{cell.upper()} {cfg.hidden}, T={shape[0]}, {shape[1]} channels, head "
                f"{'-'.join(map(str, cfg.head))}, {cfg.readout} readout, batch {cfg.batch_size}, "
                f"{cfg.optimizer} lr {cfg.learning_rate} clip {cfg.grad_clip}",
                lambda tm: tm.SequenceClassifier(cell, shape[1], cfg.hidden, cfg.head,
                                                 ACTIVITY_CLASSES),
                lambda torch, x: torch.from_numpy(x))
  if name == "lstm_imdb":
    cfg = case_config(name, sizes, **overrides)
    maxlen = sizes.imdb_maxlen or cfg.maxlen
    n = sizes.data_batches * cfg.batch_size
    # Reviews of random length padded with 0 after their end, as jaxml.data.imdb.encode pads.
    lengths = rng.integers(maxlen // 4, maxlen + 1, n)
    ids = rng.integers(1, IMDB_VOCAB, (n, maxlen)).astype(np.int32)
    ids[np.arange(maxlen)[None, :] >= lengths[:, None]] = 0
    data = _labelled(rng, ids, 2)
    params = _init(lambda k: text_classifier.init(k, cfg, vocab_size=IMDB_VOCAB), key)
    apply_fn = lambda p, x, *, train, key: text_classifier.apply(p, x, cfg=cfg, train=train,
                                                                 key=key)
    return Case(name, cfg, params, classifier_loss_fn(apply_fn), data,
                f"embed {cfg.embed_dim} -> {'bi' if cfg.bidirectional else ''}{cfg.cell.upper()} "
                f"{cfg.hidden} (masked) -> {cfg.readout}, T={maxlen}, vocab {IMDB_VOCAB}, batch "
                f"{cfg.batch_size}, {cfg.optimizer} lr {cfg.learning_rate} clip {cfg.grad_clip}",
                lambda tm: tm.TextClassifier(IMDB_VOCAB, cfg.embed_dim, cfg.hidden,
                                             cfg.embed_dropout, cfg.dropout),
                lambda torch, x: torch.from_numpy(x.astype(np.int64)))
  if name == "ngram_lm":
    cfg = case_config(name, sizes, **overrides)
    d, p = cfg.embed_dims[0], cfg.hidden_sizes[0]  # the largest of the three nets trained
    n = sizes.data_batches * cfg.batch_size
    data = _labelled(rng, rng.integers(0, NGRAM_VOCAB, (n, ngram_lm.CONTEXT)).astype(np.int32),
                     NGRAM_VOCAB)
    params = _init(lambda k: ngram_lm.init(k, vocab_size=NGRAM_VOCAB, embed_dim=d, hidden=p,
                                           scheme=cfg.init_scheme, std=cfg.init_std), key)
    return Case(name, cfg, params, ngram_lm.make_loss_fn(cfg.dropout), data,
                f"4-gram LM D={d} P={p} V={NGRAM_VOCAB}, dropout {cfg.dropout}, batch "
                f"{cfg.batch_size}, {cfg.optimizer} lr {cfg.learning_rate}",
                lambda tm: tm.NgramLM(NGRAM_VOCAB, d, p, cfg.dropout),
                lambda torch, x: torch.from_numpy(x.astype(np.int64)))
  raise ValueError(name)


# ----------------------------------------------------------------------------- measuring
def matmul_flops(jaxpr) -> float:
  """Matmul + convolution FLOPs of a (closed) jaxpr; scan bodies count `length` times, a
  cond its most expensive branch, a while loop's body once (its trip count is not static)."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    prim = eqn.primitive.name
    if prim == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(
          lhs[i] for i in lhs_contract)
    elif prim == "conv_general_dilated":
      rhs = eqn.invars[1].aval.shape
      rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, spatial..)
      per_output = rhs[rhs_spec[1]] * math.prod(rhs[i] for i in rhs_spec[2:])
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_output
    times = eqn.params.get("length", 1) if prim == "scan" else 1
    for value in eqn.params.values():
      if _is_jaxpr(value):
        total += times * matmul_flops(value)
      elif isinstance(value, (tuple, list)) and value and all(map(_is_jaxpr, value)):
        total += max(matmul_flops(v) for v in value)  # cond branches
  return total


def _is_jaxpr(value) -> bool:
  return hasattr(value, "eqns") or hasattr(getattr(value, "jaxpr", None), "eqns")


def _status_kb(field: str) -> int | None:
  try:
    for line in Path("/proc/self/status").read_text().splitlines():
      if line.startswith(field + ":"):
        return int(line.split()[1])
  except OSError:
    pass
  return None


class PeakRss:
  """Growth of the process' peak resident set over its resident set at the start, in bytes:
  Linux's VmHWM reset through /proc/self/clear_refs; elsewhere (no reset) the growth of
  ru_maxrss, which is 0 unless the process' all-time peak rises."""

  def __enter__(self):
    try:
      Path("/proc/self/clear_refs").write_text("5")
      self.start = _status_kb("VmRSS")
    except OSError:
      self.start = None
    if self.start is None:
      self.max_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return self

  def __exit__(self, *exc):
    if self.start is not None:
      self.bytes = 1024 * max(0, _status_kb("VmHWM") - self.start)
    else:
      self.bytes = 1024 * max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                              - self.max_start)


def jax_matmul_peak(n: int, repeats: int, clock: Callable = time.perf_counter) -> float:
  """GFLOP/s of the best of `repeats` jitted float32 n x n matmuls."""
  a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
  mm = jax.jit(jnp.matmul)
  mm(a, b).block_until_ready()
  best = math.inf
  for _ in range(repeats):
    t0 = clock()
    mm(a, b).block_until_ready()
    best = min(best, clock() - t0)
  return 2.0 * n ** 3 / best / 1e9


def torch_matmul_peak(torch, n: int, repeats: int, device: str = "cpu",
                      clock: Callable = time.perf_counter) -> float:
  a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
  torch.mm(a, b)
  torch_sync(torch, device)
  best = math.inf
  for _ in range(repeats):
    t0 = clock()
    torch.mm(a, b)
    torch_sync(torch, device)
    best = min(best, clock() - t0)
  return 2.0 * n ** 3 / best / 1e9


def torch_sync(torch, device: str) -> None:
  """Waits for the work queued on a CUDA device (a CUDA call returns before its kernels end),
  so a step is timed to its end as jax's is with block_until_ready."""
  if device.startswith("cuda"):
    torch.cuda.synchronize(device)


def torch_tf32(torch) -> dict | str:
  """Whether torch lets float32 matmuls / cuDNN convolutions use TF32 (or why it cannot say:
  newer releases refuse the legacy flags once the new fp32_precision API was used)."""
  try:
    return {"matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32}
  except Exception as e:  # noqa: BLE001 - a fact for the JSON, never a reason to lose the run
    return f"{type(e).__name__}: {e}"


def step_inputs(case: Case, sizes: Sizes) -> tuple[Callable, dict, dict, list, list]:
  """(the step function, its train state, resident data, batch indices, step keys)."""
  batch = case.cfg.batch_size
  optimizer = make_optimizer(case.cfg, sizes.data_batches)
  state = {"step": jnp.zeros((), jnp.int32), "params": case.params,
           "opt_state": optimizer.init(case.params)}
  data = jax.device_put(case.data)
  idx = np.arange(sizes.data_batches * batch, dtype=np.int32).reshape(-1, batch)
  idx = [jnp.asarray(i) for i in idx]
  keys = [jax.random.fold_in(jax.random.key(1), i) for i in range(len(idx))]
  return make_step(case.loss_fn, optimizer), state, data, idx, keys


def jax_side(case: Case, sizes: Sizes) -> tuple[Callable, dict]:
  """Compiles the real train step; returns (run one step and wait, facts about it)."""
  step, state, data, idx, keys = step_inputs(case, sizes)
  t0 = time.perf_counter()
  options = runtime.compiler_options(case.cfg.cpu_conv)  # as train.fit compiles it
  compiled = jax.jit(step, donate_argnums=0, compiler_options=options).lower(
      state, data, idx[0], keys[0]).compile()
  compile_s = time.perf_counter() - t0
  flops = matmul_flops(jax.make_jaxpr(step)(state, data, idx[0], keys[0]))
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  mem = compiled.memory_analysis()
  holder = {"state": state, "i": 0}

  def run_one():
    i = holder["i"] % len(idx)
    holder["state"], metrics = compiled(holder["state"], data, idx[i], keys[i])
    jax.block_until_ready((holder["state"], metrics))
    holder["i"] += 1

  info = {"compile_s": compile_s, "cpu_conv": case.cfg.cpu_conv if options else "xla",
          "flops": flops, "xla_flops": float(cost.get("flops", 0.0)),
          "xla_temp_bytes": int(mem.temp_size_in_bytes),
          "xla_argument_bytes": int(mem.argument_size_in_bytes),
          "xla_output_bytes": int(mem.output_size_in_bytes)}
  return run_one, info


def torch_side(torch, tm, case: Case, sizes: Sizes) -> Callable:
  """The PyTorch twin; returns (run one step)."""
  torch.manual_seed(0)
  cfg = case.cfg
  device = sizes.torch_device
  model = case.torch_model(tm).to(device)
  step = tm.make_step(model, optimizer=cfg.optimizer, learning_rate=cfg.learning_rate,
                      grad_clip=cfg.grad_clip, weight_decay=cfg.weight_decay)
  batch = cfg.batch_size
  xs = [case.torch_x(torch, case.data["x"][i:i + batch]).to(device)
        for i in range(0, len(case.data["y"]), batch)]
  ys = [torch.from_numpy(case.data["y"][i:i + batch].astype(np.int64)).to(device)
        for i in range(0, len(case.data["y"]), batch)]
  holder = {"i": 0}

  def run_one():
    i = holder["i"] % len(xs)
    step(xs[i], ys[i])
    torch_sync(torch, device)
    holder["i"] += 1

  return run_one


def warm_up(run_one: Callable, steps: int) -> tuple[float, int]:
  """Runs `steps` untimed steps; returns (seconds of the last one, peak RSS growth bytes)."""
  with PeakRss() as rss:
    for _ in range(steps):
      t0 = time.perf_counter()
      run_one()
      last = time.perf_counter() - t0
  return last, rss.bytes


def minor_faults() -> int:
  """Minor page faults of this process so far (a page first touched, e.g. freshly mmap'd
  scratch: what jaxml/runtime.keep_freed_memory avoids)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def interleaved(sides: dict, per_step_s: dict, sizes: Sizes,
                clock: Callable = time.perf_counter) -> tuple[dict, dict]:
  """({side: [seconds of each timed step]}, {side: [minor page faults of each step]}): rounds
  of one block of steps per side, each step timed by `clock` (wall clock, or process CPU time
  in --threads=1 mode)."""
  per_block = {k: max(1, min(sizes.max_block, round(sizes.block_s / max(per_step_s[k], 1e-6))))
               for k in sides}
  times = {k: [] for k in sides}
  faults = {k: [] for k in sides}
  for _ in range(sizes.rounds):
    for k, run_one in sides.items():
      for _ in range(per_block[k]):
        f0 = minor_faults()
        t0 = clock()
        run_one()
        times[k].append(clock() - t0)
        faults[k].append(minor_faults() - f0)
  return times, faults


def summary_ms(seconds: list) -> dict:
  q25, q50, q75 = np.percentile(np.asarray(seconds) * 1e3, [25, 50, 75])
  return {"ms": float(q50), "ms_iqr": [float(q25), float(q75)], "ms_min": 1e3 * min(seconds),
          "steps_timed": len(seconds)}


def bench(name: str, sizes: Sizes, torch, tm, peaks: dict, log,
          clock: Callable = time.perf_counter) -> dict:
  case = make_case(name, sizes)
  run_jax, info = jax_side(case, sizes)
  sides = {"jaxml": run_jax}
  per_step, rss = {}, {}
  per_step["jaxml"], rss["jaxml"] = warm_up(run_jax, sizes.warmup)
  if torch is not None:
    sides["torch"] = torch_side(torch, tm, case, sizes)
    per_step["torch"], rss["torch"] = warm_up(sides["torch"], sizes.warmup)
  times, faults = interleaved(sides, per_step, sizes, clock)
  flops = info["flops"]
  out = {"describe": case.describe, "batch": case.cfg.batch_size,
         "inputs": "synthetic random arrays of the experiment's shapes",
         "flops": flops, "xla_flops": info["xla_flops"],
         # The host's limit for this step: its matmul FLOPs at the measured matmul peak (set
         # again in main once the peak's second measurement is in).
         "floor_ms": flops / (max(peaks.values()) * 1e9) * 1e3}
  for side in ("jaxml", "torch"):
    if side not in times:
      out[side] = None
      continue
    row = summary_ms(times[side])
    row["gflops_per_s"] = flops / (row["ms"] / 1e3) / 1e9
    row["fraction_of_peak"] = row["gflops_per_s"] / peaks[side]
    row["peak_rss_growth_bytes"] = rss[side]
    row["minor_faults_per_step"] = float(np.median(faults[side]))
    row["minor_faults_per_step_max"] = int(max(faults[side]))
    if side == "jaxml":
      row.update({k: info[k] for k in ("compile_s", "cpu_conv", "xla_temp_bytes",
                                       "xla_argument_bytes", "xla_output_bytes")})
    out[side] = row
  out["torch_over_jaxml"] = (out["torch"]["ms"] / out["jaxml"]["ms"]) if out["torch"] else None
  # Fastest step over fastest step: less sensitive to other processes than the medians (a
  # 2-thread torch step stalls at every parallel region when another process holds a core).
  out["torch_over_jaxml_best"] = (out["torch"]["ms_min"] / out["jaxml"]["ms_min"]
                                  if out["torch"] else None)
  ratio = f", torch/jaxml {out['torch_over_jaxml']:.2f}" if out["torch"] else ""
  log(f"{name}: jaxml {out['jaxml']['ms']:.2f} ms"
      + (f", torch {out['torch']['ms']:.2f} ms" if out["torch"] else "") + ratio
      + f" ({case.describe})")
  return out


def epoch_throughput(name: str, sizes: Sizes, log, clock: Callable = time.perf_counter) -> dict:
  """examples/s of one synthetic epoch as a lax.scan program and as a loop of jitted steps."""
  steps = sizes.epoch_steps_cnn if name.endswith("mnist") else sizes.epoch_steps
  case = make_case(name, dataclasses.replace(sizes, data_batches=steps))
  batch = case.cfg.batch_size
  n = steps * batch
  optimizer = make_optimizer(case.cfg, steps)
  data = jax.device_put(case.data)
  out = {"steps": steps, "batch": batch}
  modes = {"scan": make_scan_epoch, "loop": make_loop_epoch}
  for mode, make in modes.items():
    epoch = make(case.loss_fn, optimizer, n, batch,
                 compiler_options=runtime.compiler_options(case.cfg.cpu_conv))
    params = jax.tree.map(jnp.array, case.params)  # a copy: each mode donates its state
    state = {"step": jnp.zeros((), jnp.int32), "params": params,
             "opt_state": optimizer.init(params)}
    key = jax.random.key(0)
    t0 = time.perf_counter()
    if mode == "scan":
      epoch = epoch.lower(state, data, key).compile()
    else:
      epoch.precompile(state, data, key)
    compile_s = time.perf_counter() - t0
    # Epochs until epoch_repeats were timed after the first (warm-up) one, or until the
    # budget is spent; an epoch slower than the whole budget is timed once, first included.
    seconds = []
    while len(seconds) <= sizes.epoch_repeats and sum(seconds) < sizes.epoch_budget_s:
      t0 = clock()
      # (make_loop_epoch may return more than (state, metrics): the next step's index.)
      state, metrics = epoch(state, data, jax.random.fold_in(key, len(seconds)))[:2]
      jax.block_until_ready((state, metrics))
      seconds.append(clock() - t0)
    timed = seconds[1:] or seconds
    s = float(np.median(timed))
    out[mode] = {"compile_s": compile_s, "s_per_epoch": s, "examples_per_s": n / s,
                 "epochs_timed": len(timed), "first_epoch_included": len(seconds) == 1}
  out["scan_over_loop"] = out["scan"]["examples_per_s"] / out["loop"]["examples_per_s"]
  log(f"{name} epoch ({steps} x {batch}): scan {out['scan']['examples_per_s']:.0f} ex/s, "
      f"loop {out['loop']['examples_per_s']:.0f} ex/s")
  return out


# ----------------------------------------------------------------------------- output
# Issue 19: every benchmark at least as fast as PyTorch, the activity GRU 1.5x.
BAR = tuple((name, "torch_over_jaxml", 1.5 if name == "gru_activity" else 1.0)
            for name in BENCHMARKS)


def check_bar(results: dict) -> list:
  """The issue's bar, for the benchmarks this run measured."""
  rows = []
  for name, what, need in BAR:
    r = results.get(name)
    if r is None:
      continue
    value = r["jaxml"]["fraction_of_peak"] if what == "fraction_of_peak" else r[what]
    rows.append({"benchmark": name, "measure": what, "need": need, "value": value,
                 "holds": None if value is None else bool(value >= need)})
  return rows


VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
                "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile",
                "amx_bf16", "amx_int8")


def cpu_info() -> dict:
  """The CPU model and which vector extensions it has (from /proc/cpuinfo, as lscpu shows
  them), so each ratio can be read against what the host's matmuls can use."""
  model, flags, family = platform.processor() or None, set(), {}
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      key, _, value = line.partition(":")
      key = key.strip()
      if key == "model name" and model in (None, "", platform.processor()):
        model = value.strip()
      elif key in ("flags", "Features") and not flags:
        flags = set(value.split())
      elif key in ("cpu family", "model") and key not in family:
        family[key] = value.strip()
  except OSError:
    pass
  return {"cpu_model": model,
          "cpu_family_model": "/".join(family[k] for k in ("cpu family", "model") if k in family)
                              or None,
          "cpu_vector_extensions": [f for f in VECTOR_FLAGS if f in flags]}


def _f(x, fmt=".2f", none="–"):
  return none if x is None else format(x, fmt)


def markdown(results: dict) -> str:
  m = results["machine"]
  lines = [f"jaxml train step vs PyTorch: {m['cpu_model']} "
           f"({', '.join(m['cpu_vector_extensions']) or 'no vector extensions listed'}); "
           + (f"--threads=1: both sides pinned to one core, timed by process CPU time; "
              if m.get("threads") == 1 else "wall clock; ")
           + f"{m['cpu_count']} CPUs (load average "
           f"{m['load_average'][0]:.1f} at the start, {m['load_average'][1]:.1f} at the end), "
           f"jax {m['jax']}, torch {m['torch'] or 'not installed'}"
           + (f" ({m['torch_threads']} threads)" if m["torch"] else "")
           + f"; matmul peak {m['matmul_n']}^2 float32: jax {_f(m['jax_matmul_gflops'], '.0f')} "
           f"GFLOP/s, torch {_f(m['torch_matmul_gflops'], '.0f')} GFLOP/s; "
           f"{m['seconds']:.0f} s in all; XLA:CPU threads: "
           f"{m['cpu_threads'] or 'one per CPU'}"
           + (f"; jax on {m['jax_device_kind']}, torch on {m['torch_device']}"
              if m.get("jax_device_kind") else "")
           + (f"; batches x{m['batch_scale']}" if m.get("batch_scale", 1) != 1 else ""), "",
           "| benchmark | batch | jaxml ms [IQR] | torch ms [IQR] | torch/jaxml (best/best) | "
           "GFLOP/step | floor ms (FLOPs/peak) | "
           "jaxml GFLOP/s (% peak) | torch GFLOP/s (% peak) | compile s | XLA temp MB | "
           "RSS peak +MB jaxml / torch | minor faults/step jaxml / torch |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for name in BENCHMARKS:
    r = results.get(name)
    if r is None:
      continue
    j, t = r["jaxml"], r["torch"]
    ms = lambda s: f"{s['ms']:.2f} [{s['ms_iqr'][0]:.2f}, {s['ms_iqr'][1]:.2f}]" if s else "–"
    rate = lambda s: (f"{s['gflops_per_s']:.1f} ({100 * s['fraction_of_peak']:.0f}%)"
                      if s else "–")
    mb = lambda b: f"{b / 2 ** 20:.1f}"
    best = f" ({r['torch_over_jaxml_best']:.2f})" if t else ""
    lines.append(f"| {name} | {r['batch']} | {ms(j)} | {ms(t)} | "
                 f"{_f(r['torch_over_jaxml'])}{best} | "
                 f"{r['flops'] / 1e9:.3f} | {r['floor_ms']:.2f} | {rate(j)} | {rate(t)} | "
                 f"{j['compile_s']:.1f} | "
                 f"{mb(j['xla_temp_bytes'])} | {mb(j['peak_rss_growth_bytes'])} / "
                 f"{mb(t['peak_rss_growth_bytes']) if t else '–'} | "
                 f"{j['minor_faults_per_step']:.0f} / "
                 f"{_f(t['minor_faults_per_step'] if t else None, '.0f')} |")
  ep = results.get("epoch_throughput") or {}
  if ep:
    lines += ["", "| whole epoch | steps x batch | scan examples/s | loop examples/s | "
              "scan / loop | compile s scan / loop |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in ep.items():
      lines.append(f"| {name} | {r['steps']} x {r['batch']} | "
                   f"{r['scan']['examples_per_s']:.0f} | {r['loop']['examples_per_s']:.0f} | "
                   f"{r['scan_over_loop']:.2f} | {r['scan']['compile_s']:.1f} / "
                   f"{r['loop']['compile_s']:.1f} |")
  if results.get("bar"):
    lines += ["", "Bar (issue 19): " + "; ".join(
        f"{b['benchmark']} {b['measure']} {_f(b['value'])} >= {b['need']}: "
        f"{'n/a' if b['holds'] is None else ('holds' if b['holds'] else 'FAILS')}"
        for b in results["bar"])]
  return "\n".join(lines) + "\n"


def import_torch(mode: str, threads: int):
  """(torch, benchmarks.torch_models) or (None, None)."""
  if mode == "off":
    return None, None
  try:
    import torch
  except ImportError:
    return None, None
  from benchmarks import torch_models
  torch.set_num_threads(threads)
  return torch, torch_models


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default="benchmarks/results/speed.json",
                  help="JSON path; the markdown table goes beside it with suffix .md")
  ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
  ap.add_argument("--quick", action="store_true", help="tiny shapes and few repeats (tests)")
  ap.add_argument("--torch", choices=("auto", "off"), default="auto",
                  help="auto: compare with PyTorch when it is installed; off: jaxml only")
  ap.add_argument("--torch_threads", type=int, default=None,
                  help="torch.set_num_threads (default: the CPU count; 1 with --threads=1)")
  ap.add_argument("--threads", type=int, choices=(0, 1), default=0,
                  help="1: pin both sides to one core (XLA's Eigen single-threaded, torch one "
                       "thread) and time each step by process CPU time, robust to other load "
                       "on a shared machine; 0 (default): all cores, wall clock")
  ap.add_argument("--epochs", default=",".join(EPOCH_BENCHMARKS),
                  help="benchmarks (of those run) whose whole-epoch throughput is measured, "
                       "scan vs loop; empty: none")
  ap.add_argument("--batch_scale", type=int, default=1,
                  help="every benchmark's batch times this (e.g. 8: a batch that keeps a GPU "
                       "busy); the resident synthetic data grows with it")
  ap.add_argument("--torch_device", default="auto",
                  help="auto: cuda when jax runs on a GPU and torch sees CUDA, else cpu; or a "
                       "torch device name")
  ap.add_argument("--cpu_threads", default="auto",
                  help="XLA:CPU worker threads of the jaxml side: auto (each benchmark's "
                       "experiment's choice, as experiments.run applies it: 1 for the "
                       "recurrent ones; benchmarks that differ run in separate processes), "
                       "all (one per CPU), or a count")
  ap.add_argument("--malloc", choices=("keep", "default"), default="keep",
                  help="keep: jaxml.runtime.keep_freed_memory() as training does (both sides); "
                       "default: glibc's defaults, to measure what it is worth")
  args = ap.parse_args(argv)
  log = lambda msg: print(msg, file=sys.stderr, flush=True)
  names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
  epoch_names = [n for n in args.epochs.split(",") if n]
  unknown = sorted((set(names) | set(epoch_names)) - set(BENCHMARKS))
  if unknown:
    print(f"error: unknown benchmark(s) {','.join(unknown)}; choose from "
          f"{','.join(BENCHMARKS)}", file=sys.stderr)
    return 2
  if args.threads == 1 and _PINNED["cpu"] is None:
    print("error: --threads=1 must pin the process before jax starts; run it as "
          "`python -m benchmarks.speed --threads=1 ...`", file=sys.stderr)
    return 2
  try:
    setting = parse_pool(args.cpu_threads)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  torch_threads = args.torch_threads or (1 if args.threads == 1 else os.cpu_count() or 1)
  clock = time.process_time if args.threads == 1 else time.perf_counter
  sizes = QUICK if args.quick else Sizes()
  if args.batch_scale < 1:
    print(f"error: --batch_scale={args.batch_scale}; pass an integer >= 1", file=sys.stderr)
    return 2
  pools = pool_sizes(names, setting,
                     dataclasses.replace(sizes, batch_scale=args.batch_scale))
  if args.threads == 0 and len(set(pools.values())) > 1:
    return run_groups(args, names, epoch_names, pools, log)
  # Before anything starts jax's backends; None where it cannot apply (pinned, or in-process).
  cpu_pool = cpu_client_threads(pools[names[0]])
  # As `fit` and the runner do; it is process-wide, so PyTorch runs under the same allocator.
  kept_freed_memory = keep_freed_memory() if args.malloc == "keep" else False
  t_start = time.perf_counter()
  load_start = os.getloadavg()[0]
  torch, tm = import_torch(args.torch, torch_threads)
  torch_device = args.torch_device
  if torch_device == "auto":
    torch_device = ("cuda" if torch is not None and torch.cuda.is_available()
                    and jax.default_backend() == "gpu" else "cpu")
  sizes = dataclasses.replace(sizes, batch_scale=args.batch_scale, torch_device=torch_device)
  peaks = {"jaxml": jax_matmul_peak(sizes.matmul_n, sizes.matmul_repeats, clock)}
  if torch is not None:
    peaks["torch"] = torch_matmul_peak(torch, sizes.matmul_n, sizes.matmul_repeats,
                                        sizes.torch_device, clock)
  results = {}
  for name in names:
    results[name] = bench(name, sizes, torch, tm, peaks, log, clock)
    results[name]["jaxml"]["cpu_threads"] = cpu_pool
  epochs = {name: epoch_throughput(name, sizes, log, clock)
            for name in epoch_names if name in names}
  # A second peak measurement at the end: the best of both (the machine is shared).
  peaks["jaxml"] = max(peaks["jaxml"],
                       jax_matmul_peak(sizes.matmul_n, sizes.matmul_repeats, clock))
  if torch is not None:
    peaks["torch"] = max(peaks["torch"],
                         torch_matmul_peak(torch, sizes.matmul_n, sizes.matmul_repeats,
                                           sizes.torch_device, clock))
  apply_peaks(results, peaks)
  results["machine"] = {
      **cpu_info(), "threads": args.threads, "pinned_cpu": _PINNED["cpu"],
      # XLA:CPU's pool size set for the jaxml side (jaxml.runtime.cpu_client_threads); None:
      # jax's default, one thread per CPU this process may use.
      "cpu_threads": cpu_pool,
      "cpu_count": os.cpu_count(), "platform": platform.platform(),
      "python": platform.python_version(), "jax": jax.__version__,
      "jax_backend": jax.default_backend(), "torch": torch.__version__ if torch else None,
      "torch_threads": torch.get_num_threads() if torch else None,
      "matmul_n": sizes.matmul_n, "jax_matmul_gflops": peaks["jaxml"],
      "torch_matmul_gflops": peaks.get("torch"), "quick": args.quick,
      # Other processes' load: 1-minute load average at the start and at the end of the run.
      "load_average": [load_start, os.getloadavg()[0]],
      "keep_freed_memory": kept_freed_memory,  # jaxml/runtime.py (both sides)
      "seconds": time.perf_counter() - t_start,
      # Accelerators (issue 20): what ran, and how a step is timed on each side.
      "jax_device_kind": jax.devices()[0].device_kind, "torch_device": torch_device,
      "batch_scale": sizes.batch_scale,
      "timing": ("process CPU time (all threads) of each step, both sides pinned to one core"
                 if args.threads == 1 else "wall clock (perf_counter)")
                + " around each step, ended when its results are ready: jax "
                  "block_until_ready, torch torch.cuda.synchronize() on CUDA",
      "floor": "floor_ms = the step's matmul+conv FLOPs / the best matmul peak measured here",
      "epoch_timing": "the same clock as the steps (compile_s: wall clock)",
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
      "torch_allow_tf32": (torch_tf32(torch)
                           if torch is not None and torch_device.startswith("cuda") else None)}
  results["epoch_throughput"] = epochs
  return write_results(results, Path(args.out), log)


def apply_peaks(results: dict, peaks: dict) -> None:
  """Each benchmark's floor (its FLOPs at the best matmul peak measured) and each side's share
  of its own library's peak, from the run's final peaks."""
  for name in BENCHMARKS:
    r = results.get(name)
    if r is None:
      continue
    r["floor_ms"] = r["flops"] / (max(p for p in peaks.values() if p) * 1e9) * 1e3
    for side in ("jaxml", "torch"):
      if r[side]:
        r[side]["fraction_of_peak"] = r[side]["gflops_per_s"] / peaks[side]
        r[side]["over_floor"] = r[side]["ms"] / r["floor_ms"]


def write_results(results: dict, out: Path, log) -> int:
  """Checks the bar, writes the JSON and the markdown table beside it, prints the table."""
  results["bar"] = check_bar(results)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=1) + "\n")
  table = markdown(results)
  out.with_suffix(".md").write_text(table)
  print(table)
  log(f"wrote {out} and {out.with_suffix('.md')} in {results['machine']['seconds']:.0f}s")
  return 0


def pool_sizes(names: list, setting, sizes: Sizes) -> dict:
  """{benchmark: XLA:CPU pool size (None: one thread per CPU)} for a parsed --cpu_threads
  (jaxml.runtime.parse_pool); `auto` as experiments.run sizes it for the benchmark's batch."""
  if setting == "auto":
    rule = {name: EXPERIMENTS[name].cpu_threads for name in names}
    return {name: rule[name](case_config(name, sizes).batch_size) if rule[name] else None
            for name in names}
  return {name: setting for name in names}


def run_groups(args, names: list, epoch_names: list, pools: dict, log) -> int:
  """One child process per pool size (XLA's CPU client, and so its pool, is process-wide),
  each running its benchmarks with both sides interleaved as usual; their results merged into
  one file, the floors recomputed from the best peaks any child measured."""
  import subprocess
  import tempfile
  t_start = time.perf_counter()
  groups = {}
  for name in names:
    groups.setdefault(pools[name], []).append(name)
  parts = []
  with tempfile.TemporaryDirectory() as tmp:
    for i, (pool, group) in enumerate(groups.items()):
      child = Path(tmp) / f"speed_{i}.json"
      cmd = [sys.executable, "-m", "benchmarks.speed", f"--only={','.join(group)}",
             f"--epochs={','.join(n for n in epoch_names if n in group)}",
             f"--cpu_threads={pool or 'all'}", f"--out={child}", f"--torch={args.torch}",
             f"--batch_scale={args.batch_scale}", f"--torch_device={args.torch_device}",
             f"--malloc={args.malloc}", *(["--quick"] if args.quick else []),
             *([f"--torch_threads={args.torch_threads}"] if args.torch_threads else [])]
      log(f"{','.join(group)}: XLA:CPU pool of {pool or 'one thread per CPU'} (own process)")
      code = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.DEVNULL).returncode
      if code != 0:
        return code
      parts.append(json.loads(child.read_text()))
  results = {name: part[name] for part in parts for name in BENCHMARKS if name in part}
  machine = dict(parts[0]["machine"])
  peaks = {"jaxml": max(p["machine"]["jax_matmul_gflops"] for p in parts),
           "torch": max((p["machine"]["torch_matmul_gflops"] or 0 for p in parts),
                        default=0) or None}
  machine.update(jax_matmul_gflops=peaks["jaxml"], torch_matmul_gflops=peaks["torch"],
                 load_average=[parts[0]["machine"]["load_average"][0],
                               parts[-1]["machine"]["load_average"][1]],
                 seconds=time.perf_counter() - t_start,
                 cpu_threads="per benchmark: " + ", ".join(
                     f"{n} {pools[n] or 'all'}" for n in names),
                 processes=len(parts))
  results["machine"] = machine
  results["epoch_throughput"] = {k: v for p in parts for k, v in p["epoch_throughput"].items()}
  apply_peaks(results, peaks)
  return write_results(results, Path(args.out), log)


if __name__ == "__main__":
  sys.exit(main())
