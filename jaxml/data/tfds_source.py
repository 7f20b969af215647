"""tensorflow-datasets splits through `tfds.data_source` (no TensorFlow needed), offline-safe.

Data already prepared in the tfds data directory is used as it is. Otherwise it is downloaded,
but only if tfds' host answers within 3 s: offline, `tfds` would retry for minutes, so we fail
at once with a one-line UserError instead.
"""

import socket

from jaxml.errors import UserError


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
  """True if tfds' download host answers within `timeout` seconds."""
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return True
  except OSError:
    return False


def open_split(name: str, split: str, fix: str):
  """`tfds.data_source(name, split=split)`: a random-access sequence of example dicts.

  `fix` ends the error message (what the user can pass instead).
  """
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise UserError("tfds: paths need tensorflow-datasets (pip install tensorflow-datasets)") \
        from None
  try:
    try:
      source = tfds.data_source(name, split=split, download=False)
    except KeyError:  # not prepared locally: download it, but only if we are online
      if not _online():
        raise ConnectionError("offline, and not in the local tfds data directory") from None
      source = tfds.data_source(name, split=split, download=True)
  except Exception as e:  # tfds raises several types for unknown or unprepared datasets
    msg = str(e).splitlines()[0][:150] if str(e) else ""
    raise UserError(f"tfds dataset {name!r} ({split}) is not available offline "
                    f"({type(e).__name__}: {msg}); prepare it while online "
                    f"(tfds build {name}) or {fix}") from None
  if len(source) == 0:
    raise UserError(f"tfds dataset {name!r} has an empty {split} split")
  return source
