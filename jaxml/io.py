"""Writing files so that a crash or a kill never leaves a half-written one.

Each writer writes a temporary file in the target's directory and renames it over the target
(`os.replace` is atomic on POSIX), so readers see the old file or the new one, never a mixture.
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path beside `path`; on success renames it to `path`, else deletes it."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
  os.close(fd)
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def write_json(path, obj) -> None:
  """Atomically writes `obj` as indented JSON."""
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=False)
      f.write("\n")



def write_text(path, text: str) -> None:
  """Atomically writes `text` (markdown tables, notes)."""
  with atomic_path(path) as tmp:
    Path(tmp).write_text(text)
