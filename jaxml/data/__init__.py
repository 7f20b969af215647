"""Data sources, one module per family; every loader returns numpy arrays at the boundary.

Loaders validate what they read and raise `jaxml.errors.UserError` with a one-line message
naming the file, the problem and the fix; they never execute code found in a data file.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ClassificationData:
  """A labelled train/test split: x_*: f32[n, ...] (int32 word ids for text), y_*: int32[n] in
  [0, len(class_names)).

  Variable-length sequences: x_* is f32[n, T_max, channels] zero-padded after each series' end
  (train and test padded to the same T_max) and len_*: int32[n] holds each series' own length;
  None (the default) for sources whose series all have one length.
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  class_names: tuple[str, ...]
  source: str                 # what was read, for results.json and the log
  notes: dict = dataclasses.field(default_factory=dict)  # e.g. channels used, users held out
  len_train: np.ndarray | None = None  # int32[n_train] steps per series, None: all x's length
  len_test: np.ndarray | None = None   # int32[n_test]
  groups_train: np.ndarray | None = None  # int[n_train] who recorded each training series (a
                                    # person id: data3.h5-layout trS, WISDM's user), so that
                                    # validation can hold out whole people; None: unknown

  @property
  def variable_length(self) -> bool:
    return self.len_train is not None

  def describe(self) -> dict:
    out = {"source": self.source, "n_train": int(len(self.y_train)),
           "n_test": int(len(self.y_test)), "input_shape": list(self.x_train.shape[1:]),
           "classes": list(self.class_names), **self.notes}
    if self.groups_train is not None:
      out["train_groups"] = int(len(np.unique(self.groups_train)))
    if self.variable_length:  # input_shape's time axis is then the padded maximum
      lengths = np.concatenate([self.len_train, self.len_test])
      out["series_length"] = {"variable": True, "min": int(lengths.min()),
                              "max": int(lengths.max()),
                              "median": float(np.median(lengths)),
                              "train": [int(self.len_train.min()), int(self.len_train.max())],
                              "test": [int(self.len_test.min()), int(self.len_test.max())]}
    return out
