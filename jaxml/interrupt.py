"""Graceful interruption: SIGTERM or Ctrl-C asks the running train loop to checkpoint and stop.

The runner calls `install()`. While a checkpointing train loop runs (inside `watching()`), the
first SIGTERM/SIGINT only sets a flag: the loop finishes the step it is in (loop mode) or the
epoch program (scan mode, one XLA call), writes a checkpoint of exactly that point and raises
`Interrupted`; rerunning the same command continues from there with the same numbers. With no
such loop running, or on a second signal, the signal raises `Interrupted` at once and the last
completed checkpoint (always whole, see jaxml/checkpoint.py) is where a rerun resumes.
"""

import contextlib
import signal
import threading

_requested = threading.Event()
_state = {"watchers": 0, "signum": signal.SIGTERM}


class Interrupted(Exception):
  """The run was stopped by a signal; exit status 128 + signal number (143 SIGTERM, 130 SIGINT)."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.exit_status = 128 + int(signum)


def requested() -> bool:
  """True once a signal asked the watching loop to stop."""
  return _requested.is_set()


def signal_name() -> str:
  return signal.Signals(_state["signum"]).name


def stopped(where: str) -> Interrupted:
  """The exception a watching loop raises once it has saved its checkpoint `where`."""
  return Interrupted(f"interrupted by {signal_name()}; saved a checkpoint {where}: rerun the "
                     f"same command to resume from there", _state["signum"])


@contextlib.contextmanager
def watching():
  """Marks a loop that checks `requested()` and checkpoints before raising `Interrupted`."""
  _state["watchers"] += 1
  try:
    yield
  finally:
    _state["watchers"] -= 1


def _handler(signum, frame):
  _state["signum"] = signum
  if _state["watchers"] and not _requested.is_set():
    _requested.set()
    print(f"{signal_name()} received: saving a checkpoint where training stands "
          f"(send it again to stop at once)", flush=True)
    return
  raise Interrupted(f"interrupted by {signal_name()}; rerun the same command to resume from "
                    f"the last checkpoint", signum)


def install() -> None:
  """Routes SIGTERM and SIGINT to the handler above (main thread only)."""
  _requested.clear()
  signal.signal(signal.SIGTERM, _handler)
  signal.signal(signal.SIGINT, _handler)
