"""Reading named datasets from an HDF5 file (the seeds' data1/2/3.h5) with one-line errors."""

from pathlib import Path

import numpy as np

from jaxml.errors import UserError

# What h5py raises on damaged files: OSError on open and read, KeyError ("message not aligned")
# or RuntimeError on a corrupt object header, TypeError/ValueError on unreadable datatypes.
H5_ERRORS = (OSError, KeyError, RuntimeError, TypeError, ValueError)


def _open(path):
  """(h5py.File opened read-only, Path); UserError naming the file when it cannot be opened."""
  import h5py  # imported here: only the h5 sources need it

  path = Path(path)
  try:
    return h5py.File(path, "r"), path
  except OSError as e:
    raise UserError(f"{path} cannot be read as HDF5 ({e}); pass an intact {path.name}") from None


def read_datasets(path, keys, *, expected: str, optional=()) -> dict[str, np.ndarray]:
  """{key: array} for every key, and for each key of `optional` the file has; UserError naming
  the file when it cannot be opened, lacks a key (`expected` says what a good file holds), or a
  dataset cannot be read."""
  f, path = _open(path)
  with f:
    try:
      missing = [k for k in keys if k not in f]
      if missing:
        raise UserError(f"{path} lacks dataset(s) {', '.join(missing)} (found: "
                        f"{', '.join(sorted(f.keys())) or 'none'}); {expected}")
      return {k: np.asarray(f[k][()]) for k in (*keys, *(k for k in optional if k in f))}
    except H5_ERRORS as e:
      raise UserError(f"{path}: a dataset cannot be read ({e}); the file may be truncated") \
          from None


def read_attr(path, name: str):
  """The file's root attribute `name` (numpy value or str), or None where it has none; the
  errors of `read_datasets`."""
  f, path = _open(path)
  with f:
    try:
      return f.attrs[name] if name in f.attrs else None
    except H5_ERRORS as e:
      raise UserError(f"{path}: its attribute {name!r} cannot be read ({e})") from None
