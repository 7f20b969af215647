"""One core for a benchmark process (benchmarks.speed --threads=1, benchmarks.recurrent_ab).

Imports nothing heavy: it must run before jax (or torch) starts its thread pools, since a
thread's CPU affinity is inherited only by the threads it creates afterwards, and XLA reads
XLA_FLAGS when its backend starts.
"""

import os

SINGLE_THREAD_XLA = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")


def pin_to_one_core(cpu: int | None = None) -> int:
  """Pins this process to one CPU (the last it may use, or `cpu`) and makes XLA's Eigen
  single-threaded (and OpenMP, unless set). Returns the CPU."""
  allowed = sorted(os.sched_getaffinity(0))
  cpu = allowed[-1] if cpu is None else cpu
  os.sched_setaffinity(0, {cpu})
  flags = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = " ".join([flags, *(f for f in SINGLE_THREAD_XLA if f not in flags)])
  os.environ.setdefault("OMP_NUM_THREADS", "1")
  return cpu
