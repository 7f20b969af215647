"""Process settings that make XLA:CPU training steps faster; each is explained where it is set.

`keep_freed_memory()`: XLA's CPU runtime allocates an executable's temporaries afresh on every
call (35 MB for the activity GRU's train step, 62 MB for the seed CNN's, 146 MB for the IMDB
LSTM's). glibc serves blocks over 32 MB with mmap and hands them back to the kernel on free, so
every step page-faults its whole working set in again: ~10 ms of the GRU step's 24 ms. Serving
every block from the heap (M_MMAP_MAX = 0) and not trimming it (M_TRIM_THRESHOLD = 1 GiB) keeps
those pages mapped between steps. Measured on the 2-core CPU (`python -m benchmarks.speed`,
ms per train step, before -> after): activity GRU 25.0 -> 14.2, activity LSTM 28.5 -> 18.1,
seed CNN 74.8 -> 57.0. The cost: up to 1 GiB of freed memory stays with the process. The env
variables MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ do the same but must be set before
Python starts; mallopt's own mmap threshold cannot go above 32 MB, hence M_MMAP_MAX.
XLA's worker threads allocate from glibc's secondary arenas, which glibc trims regardless of
the trim threshold, so their blocks were faulted in again every step too; one arena
(M_ARENA_MAX = 1, set before those threads first allocate) keeps them (BUILD_NOTES "Speed").

`cpu_client_threads(n)`: the size of XLA:CPU's worker pool, set when jax creates its CPU
client; one thread runs a recurrent step's loop of small kernels faster (its docstring), up to
`ONE_THREAD_ROWS` rows a step (`recurrent_pool`).

`compiler_options(cpu_conv)`: per-program XLA options for TrainConfig.cpu_conv. "eigen" gives
every convolution to XLA's own Eigen kernels instead of YNNPACK, which XLA:CPU picks where it
takes the shape and which runs the seed CNN's convolutions slower (its docstring).
"""

import ctypes
import ctypes.util
import dataclasses
import os
import sys
import typing
from typing import Literal

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's mallopt numbers (malloc.h)
_done = {"value": None}
# A recurrent step over at most this many rows (batch x ensemble members x seeds) runs faster on
# one XLA thread than on two; above it the matmuls are wide enough to share (BUILD_NOTES "One
# XLA thread for the recurrent steps": 32 and 128 rows faster on one, 160 even, 256 slower).
ONE_THREAD_ROWS = 128


def keep_freed_memory() -> bool:
  """Makes glibc keep freed memory for reuse (see the module docstring). Idempotent; returns
  whether it applied (False off Linux/glibc, e.g. macOS or musl, where nothing is changed)."""
  if _done["value"] is not None:
    return _done["value"]
  ok = False
  if sys.platform.startswith("linux"):
    try:
      libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
      mallopt = getattr(libc, "mallopt", None)
      if mallopt is not None and hasattr(libc, "gnu_get_libc_version"):  # glibc only
        ok = (bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
              and bool(mallopt(_M_ARENA_MAX, 1)))
    except OSError:
      ok = False
  _done["value"] = ok
  return ok


def cpu_client_threads(n: int | None) -> int | None:
  """Sizes XLA:CPU's worker-thread pool at `n` threads (None: jax's default, one per CPU).

  XLA:CPU sizes the pool that runs a program's kernels from the process' CPU affinity when
  jax creates its CPU client, and no XLA flag changes it. A recurrent train step is a loop
  of small kernels (a [32, 128] x [128, 512] matmul and its elementwise gates), which two
  threads pass back and forth at every step; one thread runs them faster (BUILD_NOTES "One
  XLA thread for the recurrent steps" has the measurements), while a CNN step needs every
  core. So only the CPU client is created under an `n`-CPU mask, then the calling thread gets
  its full mask back: every later thread (data loading, checkpointing, PyTorch, a GPU client)
  may use every core, while the threads XLA started stay on the `n` CPUs, counted from the
  one this process was running on (the scheduler's pick, so two runs started side by side
  usually land on different cores); left free to move they were slower (BUILD_NOTES).

  Must run before jax starts its backends (any `jax.devices()` or array); returns the pool
  size set (None: left as it was, also where it cannot apply: no sched_setaffinity, as on
  macOS, `n` >= the CPUs this process may use, or the backends already started). Once set
  it holds for the process (the client is process-wide) and later calls return it."""
  if n is None or not hasattr(os, "sched_setaffinity"):
    return None
  if n < 1:
    raise ValueError(f"cpu_client_threads({n}): pass a positive thread count or None")
  from jax._src import xla_bridge  # no public hook sizes the pool; this is jax's own factory
  cpu = xla_bridge._backend_factories.get("cpu")
  if cpu is not None and getattr(cpu.factory, "jaxml_threads", None) is not None:
    return cpu.factory.jaxml_threads
  cpus = sorted(os.sched_getaffinity(0))
  if n >= len(cpus) or cpu is None or xla_bridge.backends_are_initialized():
    return None
  make = cpu.factory

  def make_narrow():
    here = _current_cpu()
    first = cpus.index(here) if here in cpus else len(cpus) - n
    os.sched_setaffinity(0, [cpus[(first + i) % len(cpus)] for i in range(n)])
    try:
      return make()
    finally:
      os.sched_setaffinity(0, cpus)

  make_narrow.jaxml_threads = n
  xla_bridge._backend_factories["cpu"] = dataclasses.replace(cpu, factory=make_narrow)
  return n


def _current_cpu() -> int | None:
  """The CPU the calling thread runs on now (Linux /proc; None elsewhere)."""
  try:
    stat = open("/proc/thread-self/stat").read()
    return int(stat.rsplit(")", 1)[1].split()[36])  # field 39, "processor"
  except (OSError, ValueError, IndexError):
    return None


def cpu_pool_size() -> int | None:
  """The pool size cpu_client_threads set in this process (None: jax's default)."""
  from jax._src import xla_bridge
  cpu = xla_bridge._backend_factories.get("cpu")
  return getattr(getattr(cpu, "factory", None), "jaxml_threads", None)


def recurrent_pool(rows: int) -> int | None:
  """The pool size for a recurrent train step over `rows` rows: 1 up to ONE_THREAD_ROWS, else
  None (one thread per CPU). What the activity and IMDB experiments' --cpu_threads=auto uses."""
  return 1 if rows <= ONE_THREAD_ROWS else None


# XLA:CPU (jaxlib 0.10) hands dots, reductions and convolutions ("individual_convolution") to
# YNNPACK; the option lists the kinds it may take, so this list is that default without the
# convolutions, which then run on XLA's Eigen kernels (tests/test_cnn.py checks that this is
# all it changes). The option is per compilation, so one process can hold both.
EIGEN_CONV_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                      "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
CpuConv = Literal["xla", "eigen"]  # TrainConfig.cpu_conv's type
CPU_CONV = typing.get_args(CpuConv)
_CONV_PROBE: dict = {}


def compiler_options(cpu_conv: str) -> dict | None:
  """jax.jit's `compiler_options` for TrainConfig.cpu_conv: None (XLA's defaults) for "xla",
  off the CPU backend, or where this jaxlib refuses the option or computes other numbers with
  it; EIGEN_CONV_OPTIONS for "eigen" otherwise.

  Why: on the 2-core CPU measured, the seed CNN's 32 -> 64-channel convolution and its two
  gradients ran faster on Eigen's kernels than on YNNPACK's, and so did the whole train step
  (BUILD_NOTES "Convolutions on Eigen" has the numbers). The options change which library runs a
  convolution, not what it computes: before first use the gradient of a small convolution is
  compiled both ways and compared (float rounding only), once per process; a refusal or a
  mismatch warns and keeps XLA's defaults."""
  if cpu_conv not in CPU_CONV:
    raise ValueError(f"cpu_conv={cpu_conv!r}; valid: {', '.join(CPU_CONV)}")
  import jax
  if cpu_conv == "xla" or jax.default_backend() != "cpu":
    return None
  if "eigen" not in _CONV_PROBE:
    _CONV_PROBE["eigen"] = _eigen_conv_agrees()
  return dict(EIGEN_CONV_OPTIONS) if _CONV_PROBE["eigen"] else None


def _eigen_conv_agrees() -> bool:
  """Whether a conv's value and gradients compiled with EIGEN_CONV_OPTIONS equal XLA's default
  compilation's (float32 probe: 4 images of 10x10x3, 3x3x3x8 filters, SAME)."""
  import warnings
  import jax
  import jax.numpy as jnp
  from jaxml import nn

  def loss(w, x):
    y = nn.conv2d_lax(w, x, "SAME")
    return jnp.sum(jnp.tanh(y)), y

  kw, kx = jax.random.split(jax.random.key(0))
  args = (jax.random.normal(kw, (3, 3, 3, 8)) * 0.3, jax.random.normal(kx, (4, 10, 10, 3)))
  grad = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
  try:
    want = jax.jit(grad)(*args)
    got = jax.jit(grad, compiler_options=EIGEN_CONV_OPTIONS)(*args)
  except Exception as e:  # this jaxlib lacks the option or a kind it names
    warnings.warn(f"jaxml: cpu_conv='eigen' is not available here ({str(e).splitlines()[0]}); "
                  f"using XLA's default convolutions")
    return False
  ok = all(bool(jnp.allclose(a, b, rtol=1e-5, atol=1e-5))
           for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)))
  if not ok:
    warnings.warn("jaxml: convolutions compiled for Eigen differ from XLA's default ones on a "
                  "probe; using XLA's default convolutions")
  return ok


def parse_pool(value: str) -> int | str | None:
  """A --cpu_threads value: "auto" (the experiment's rule), None for "all" (one thread per
  CPU) or a positive pool size; ValueError naming the valid values otherwise."""
  if value == "auto":
    return value
  if value == "all":
    return None
  if value.isdigit() and int(value) > 0:
    return int(value)
  raise ValueError(f"--cpu_threads={value}; valid: auto, all or a positive thread count")
