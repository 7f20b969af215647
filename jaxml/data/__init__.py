"""Data sources, one module per family; every loader returns numpy arrays at the boundary.

Loaders validate what they read and raise `jaxml.errors.UserError` with a one-line message
naming the file, the problem and the fix; they never execute code found in a data file.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ClassificationData:
  """A labelled train/test split: x_*: f32[n, ...] (int32 word ids for text), y_*: int32[n] in
  [0, len(class_names))."""
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  class_names: tuple[str, ...]
  source: str                 # what was read, for results.json and the log
  notes: dict = dataclasses.field(default_factory=dict)  # e.g. channels used, users held out

  def describe(self) -> dict:
    return {"source": self.source, "n_train": int(len(self.y_train)),
            "n_test": int(len(self.y_test)), "input_shape": list(self.x_train.shape[1:]),
            "classes": list(self.class_names), **self.notes}
