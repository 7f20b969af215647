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
"""

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's mallopt numbers (malloc.h)
_done = {"value": None}


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
