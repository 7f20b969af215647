"""Human-activity sequences from accelerometers: three sources behind `load_activity`.

* the seed's `data3.h5`: `trX` f[N, 150, 3], `trY` one-hot [N, 6], `tstX`, `tstY`; classes
  downstairs, jogging, sitting, standing, upstairs, walking (the seed's file: 3000 / 600);
* the public WISDM v1.1 raw file (`WISDM_ar_v1.1_raw.txt`, records `user,activity,timestamp,
  x,y,z;` at 20 Hz): cut into windows per (user, activity) run, train/test split by user;
* UEA/sktime `.ts` files (`NAME_TRAIN.ts` beside `NAME_TEST.ts`), equal or variable length
  (`@equalLength false`, or trailing NaN/'?' padding): each series keeps its own length, x is
  zero-padded to the longest series of both files and `len_train`/`len_test` hold the lengths.
  The embedded default is BasicMotions, which sktime ships: a smartwatch's 3-axis accelerometer
  and 3-axis gyroscope at 10 Hz, 100 steps, 4 activities (standing, running, walking,
  badminton), 40 train / 40 test. `--data_path=sktime:NAME` reads any other set sktime ships,
  e.g. `sktime:JapaneseVowels` (12 channels, 7-29 steps: variable length, 270 / 370).

Every loader returns `ClassificationData` with x: f32[n, time, channels], y: int32[n] (and
int32[n] lengths for variable-length .ts data; None elsewhere).
"""

import dataclasses
import importlib.util
import re
from pathlib import Path

import numpy as np

from jaxml.data import ClassificationData
from jaxml.data.h5 import read_attr, read_datasets
from jaxml.data.splits import require_finite
from jaxml.errors import UserError

SEED_CLASSES = ("downstairs", "jogging", "sitting", "standing", "upstairs", "walking")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Channel groups of the UEA multivariate motion sets (BasicMotions: accelerometer x, y, z then
# gyroscope x, y, z). Sources with three channels only have the accelerometer.
CHANNEL_GROUPS = {"all": None, "accelerometer": (0, 1, 2), "gyroscope": (3, 4, 5)}
FIX_HINT = ("pass the seed's data3.h5, WISDM_ar_v1.1_raw.txt, a NAME_TRAIN.ts file or "
            "sktime:NAME, or omit --data_path for the embedded BasicMotions")


def load_activity(data_path: str | None, *, channels: str = "all", window: int = 150,
                  stride: int = 150, test_user_fraction: float = 0.2) -> ClassificationData:
  """Loads the activity data that `data_path` names (None: embedded BasicMotions)."""
  if data_path is None:
    data = load_ts(basic_motions_path())
  elif data_path.startswith(SKTIME_PREFIX):  # e.g. sktime:JapaneseVowels (variable length)
    data = load_ts(sktime_ts_path(data_path[len(SKTIME_PREFIX):]))
  else:
    path = Path(data_path)
    if path.is_dir():
      path = _find_in_dir(path)
    if not path.is_file():
      raise UserError(f"--data_path {data_path} does not exist; {FIX_HINT}")
    with open(path, "rb") as f:
      head = f.read(8)
    if head == HDF5_SIGNATURE:
      data = load_seed_h5(path)
    elif path.suffix.lower() in (".h5", ".hdf5"):
      raise UserError(f"{path} is not an HDF5 file (bad signature); pass the seed's data3.h5")
    elif path.suffix.lower() == ".ts":
      data = load_ts(path)
    else:
      data = load_wisdm(path, window=window, stride=stride,
                        test_user_fraction=test_user_fraction)
  return select_channels(data, channels)


def _find_in_dir(d: Path) -> Path:
  for name in ("data3.h5", "WISDM_ar_v1.1_raw.txt"):
    if (d / name).is_file():
      return d / name
  ts = sorted(d.glob("*_TRAIN.ts"))
  if ts:
    return ts[0]
  raise UserError(f"{d} holds no data3.h5, WISDM_ar_v1.1_raw.txt or *_TRAIN.ts; {FIX_HINT}")


def select_channels(data: ClassificationData, channels: str) -> ClassificationData:
  """Keeps a channel group; a 3-channel source (accelerometer only) accepts 'accelerometer'."""
  n_ch = data.x_train.shape[-1]
  idx = CHANNEL_GROUPS[channels]
  if idx is None or (n_ch == 3 and channels == "accelerometer"):
    names = "all" if n_ch != 3 else "accelerometer x, y, z"
    return _with_notes(data, channels=names if channels == "all" else channels)
  if max(idx) >= n_ch:
    raise UserError(f"--config.channels={channels} needs 6 channels but {data.source} has "
                    f"{n_ch}; use --config.channels=all")
  return dataclasses.replace(data, x_train=data.x_train[..., idx], x_test=data.x_test[..., idx],
                             notes=dict(data.notes, channels=f"{channels} (columns {list(idx)})"))


def _with_notes(data: ClassificationData, **notes) -> ClassificationData:
  return dataclasses.replace(data, notes=dict(data.notes, **notes))


# ----------------------------------------------------------------------------- seed h5
def load_seed_h5(path) -> ClassificationData:
  """The seed's data3.h5 (trX, trY, tstX, tstY); labels one-hot or integer. An optional trS
  (int[n_train], who recorded each training window) becomes `groups_train`."""
  arrays = read_datasets(path, ("trX", "trY", "tstX", "tstY"), optional=("trS",),
                         expected="the seed's data3.h5 has trX, trY, tstX, tstY")
  for k in ("trX", "tstX"):
    a = arrays[k]
    if a.ndim != 3 or a.shape[0] == 0 or a.shape[1] < 2 or not np.issubdtype(a.dtype, np.number):
      raise UserError(f"{path}: {k} has shape {a.shape} and dtype {a.dtype}; expected numbers "
                      f"of shape [samples, time, channels] such as [3000, 150, 3]")
  if arrays["trX"].shape[1:] != arrays["tstX"].shape[1:]:
    raise UserError(f"{path}: trX {arrays['trX'].shape} and tstX {arrays['tstX'].shape} differ "
                    f"in time steps or channels; both must be [samples, time, channels]")
  n_classes = None
  labels = {}
  for xk, yk in (("trX", "trY"), ("tstX", "tstY")):
    y = arrays[yk]
    if y.shape[0] != arrays[xk].shape[0]:
      raise UserError(f"{path}: {yk} has {y.shape[0]} rows but {xk} has "
                      f"{arrays[xk].shape[0]} samples; they must match")
    labels[yk], k = _labels(y, path, yk)
    n_classes = max(n_classes or 0, k)
  x_tr, x_te = arrays["trX"].astype(np.float32), arrays["tstX"].astype(np.float32)
  require_finite(x_tr, f"{path}: trX")
  require_finite(x_te, f"{path}: tstX")
  names = _h5_class_names(path, n_classes)
  groups = arrays.get("trS")
  if groups is not None and (groups.shape != (len(x_tr),)
                             or not np.issubdtype(groups.dtype, np.integer)):
    raise UserError(f"{path}: trS has shape {groups.shape} and dtype {groups.dtype}; expected "
                    f"one integer subject id per training window, shape [{len(x_tr)}] (or no "
                    f"trS)")
  return ClassificationData(x_tr, labels["trY"], x_te, labels["tstY"], names,
                            f"seed h5 {Path(path).name}", groups_train=groups)


def _h5_class_names(path, n_classes: int) -> tuple[str, ...]:
  """The file's `class_names` attribute (comma-separated, or a list of strings) where it has
  one; else the seed's six WISDM activities for six classes (data3.h5 has no names), else
  class_0, class_1, ..."""
  raw = read_attr(path, "class_names")
  if raw is None:
    return SEED_CLASSES if n_classes == len(SEED_CLASSES) else tuple(
        f"class_{i}" for i in range(n_classes))
  items = [raw] if isinstance(raw, (str, bytes)) else list(np.ravel(raw))
  items = [v.decode() if isinstance(v, bytes) else str(v) for v in items]
  names = tuple(n.strip() for v in items for n in (v.split(",") if len(items) == 1 else [v]))
  if len(names) != n_classes or not all(names):
    raise UserError(f"{path}: its class_names attribute names {len(names)} class(es) "
                    f"({', '.join(names)}) but the labels have {n_classes}; write one name per "
                    f"class, comma-separated, or drop the attribute")
  return names


def _labels(y: np.ndarray, path, key: str):
  """int32 labels from one-hot rows [N, K] or integer labels [N]; returns (labels, K)."""
  if y.ndim == 2:
    if not np.isfinite(y).all() or not np.isin(y, (0, 1)).all() or not (y.sum(1) == 1).all():
      raise UserError(f"{path}: {key} is 2-D but not one-hot (each row needs a single 1); "
                      f"store one-hot rows [samples, classes] or integer labels [samples]")
    return y.argmax(1).astype(np.int32), y.shape[1]
  if y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and y.size and y.min() >= 0:
    return y.astype(np.int32), int(y.max()) + 1
  raise UserError(f"{path}: {key} has shape {y.shape} and dtype {y.dtype}; expected one-hot "
                  f"[samples, classes] or non-negative integer labels [samples]")


# ----------------------------------------------------------------------------- WISDM raw
_WISDM_ACTIVITIES = {name.capitalize(): name for name in SEED_CLASSES}


def parse_wisdm(text: str):
  """Parses WISDM raw records. Returns (records, skipped) with records a list of
  (user, activity index, x, y, z) in file order and `skipped` the count of malformed records.
  """
  records, skipped = [], 0
  for raw in re.split(r"[;\n]", text):
    raw = raw.strip().rstrip(",")
    if not raw:
      continue
    parts = raw.split(",")
    if len(parts) != 6:
      skipped += 1
      continue
    user, act, _, x, y, z = (p.strip() for p in parts)
    try:
      rec = (int(user), SEED_CLASSES.index(_WISDM_ACTIVITIES[act.capitalize()]),
             float(x), float(y), float(z))
    except (ValueError, KeyError):
      skipped += 1
      continue
    if not all(np.isfinite(rec[2:])):
      skipped += 1
      continue
    records.append(rec)
  return records, skipped


def wisdm_windows(records, window: int, stride: int):
  """Cuts each maximal run of one (user, activity) into windows f[n, window, 3].

  Returns (x, y, users). Runs shorter than `window` are dropped.
  """
  xs, ys, users = [], [], []
  if not records:
    return np.zeros((0, window, 3), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int64)
  arr = np.asarray(records, np.float64)
  keys = arr[:, 0] * 100 + arr[:, 1]
  breaks = np.flatnonzero(np.diff(keys) != 0) + 1
  for run in np.split(np.arange(len(arr)), breaks):
    for s in range(0, len(run) - window + 1, stride):
      seg = arr[run[s:s + window]]
      xs.append(seg[:, 2:5])
      ys.append(int(seg[0, 1]))
      users.append(int(seg[0, 0]))
  if not xs:
    return np.zeros((0, window, 3), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int64)
  return (np.stack(xs).astype(np.float32), np.asarray(ys, np.int32), np.asarray(users))


def load_wisdm(path, *, window: int = 150, stride: int = 150,
               test_user_fraction: float = 0.2) -> ClassificationData:
  """WISDM v1.1 raw file -> windows, with a fixed split by user (no user in both parts)."""
  try:
    text = Path(path).read_text(encoding="utf-8", errors="strict")
  except UnicodeDecodeError:
    raise UserError(f"{path} is not a text file; pass WISDM_ar_v1.1_raw.txt, a data3.h5 "
                    f"or a NAME_TRAIN.ts") from None
  records, skipped = parse_wisdm(text)
  if not records:
    raise UserError(f"{path} holds no WISDM records ('user,activity,timestamp,x,y,z;'); "
                    f"{FIX_HINT}")
  x, y, users = wisdm_windows(records, window, stride)
  uniq = np.unique(users)
  if len(uniq) < 2:
    raise UserError(f"{path}: windows of length {window} come from {len(uniq)} user(s); the "
                    f"split by user needs at least 2 (lower --config.window?)")
  # The test users are fixed (seed 0), not tied to --seed, so every run tests on the same people.
  n_test = min(max(1, int(round(test_user_fraction * len(uniq)))), len(uniq) - 1)
  test_users = np.sort(np.random.default_rng(0).permutation(uniq)[:n_test])
  te = np.isin(users, test_users)
  return ClassificationData(
      x[~te], y[~te], x[te], y[te], SEED_CLASSES, f"WISDM raw {Path(path).name}",
      {"records": len(records), "malformed_records_skipped": skipped,
       "window": window, "stride": stride, "test_users": test_users.tolist()},
      groups_train=users[~te])


# ----------------------------------------------------------------------------- UEA .ts
SKTIME_PREFIX = "sktime:"  # --data_path=sktime:NAME: a UEA/UCR set shipped inside sktime


def sktime_ts_path(name: str = "BasicMotions") -> Path:
  """NAME_TRAIN.ts inside the installed sktime package (found without importing it)."""
  spec = importlib.util.find_spec("sktime")
  if spec is None or not spec.submodule_search_locations:
    raise UserError("the embedded data needs sktime (pip install sktime), or pass "
                    "--data_path=data3.h5")
  root = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
  path = root / name / f"{name}_TRAIN.ts"
  if not path.is_file():
    shipped = sorted(p.parent.name for p in root.glob("*/*_TRAIN.ts"))
    raise UserError(f"the installed sktime has no {name}/{name}_TRAIN.ts; valid sktime:NAME: "
                    f"{', '.join(shipped) or 'none (reinstall sktime)'}")
  return path


def basic_motions_path() -> Path:
  return sktime_ts_path("BasicMotions")


def _ts_values(text: str) -> np.ndarray:
  """One dimension of a .ts case, "1.0,2.5,?" -> f64[steps] ('?' and NaN read as NaN)."""
  return np.array([np.nan if v.strip() == "?" else v for v in text.split(",")], np.float64)


def read_ts(path):
  """One UEA `.ts` file -> (series list of f32[length_i, channels], labels list[str], class names).

  Series may differ in length (`@equalLength false`, or equal-length files padded with NaN/'?'):
  trailing missing values are padding and are cut off, so each series keeps its own length. The
  dimensions of one case must have one length; a missing value inside a series is an error
  (raised by `load_ts`).
  """
  path = Path(path)
  try:
    lines = path.read_text(encoding="utf-8").splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"{path} cannot be read as a .ts text file ({e})") from None
  class_names, series, labels, in_data = None, [], [], False
  for ln, line in enumerate(lines, 1):
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    if not in_data:
      low = line.lower()
      if low.startswith("@classlabel"):
        parts = line.split()
        if len(parts) > 2 and parts[1].lower() == "true":
          class_names = tuple(parts[2:])
      elif low.startswith("@data"):
        in_data = True
      continue
    fields = line.split(":")
    try:
      dims = [_ts_values(f) for f in fields[:-1]]
    except ValueError:
      raise UserError(f"{path}:{ln}: a series holds a non-number; the file is corrupt") from None
    if not dims:
      raise UserError(f"{path}:{ln}: a case has a label but no series values; the file is "
                      f"corrupt")
    lengths = [_valid_length(d) for d in dims]
    if len(set(lengths)) != 1:
      raise UserError(f"{path}:{ln}: the dimensions of one series have unequal length "
                      f"({', '.join(map(str, lengths))} values); every dimension of a case "
                      f"needs the same number of values")
    if lengths[0] == 0:
      raise UserError(f"{path}:{ln}: a series has no values (all missing); drop that case")
    series.append(np.stack([d[:lengths[0]] for d in dims], axis=-1).astype(np.float32))
    labels.append(fields[-1].strip())
  if not in_data or not series:
    raise UserError(f"{path} has no @data section with series; pass a UEA .ts file")
  if class_names is None:
    raise UserError(f"{path} has no '@classLabel true ...' line; it is not a labelled .ts file")
  if len({s.shape[1] for s in series}) != 1:
    raise UserError(f"{path}: series differ in channel count "
                    f"({sorted({s.shape[1] for s in series})}); every case needs the same "
                    f"dimensions")
  return series, labels, class_names


def _valid_length(values: np.ndarray) -> int:
  """Steps before the trailing run of NaN (the padding of a shorter series)."""
  finite = np.flatnonzero(~np.isnan(values))
  return int(finite[-1]) + 1 if finite.size else 0


def pad_series(series: list, steps: int) -> tuple[np.ndarray, np.ndarray]:
  """Series f32[length_i, channels] -> (x f32[n, steps, channels] zero-padded, int32[n] lengths)."""
  x = np.zeros((len(series), steps, series[0].shape[1]), np.float32)
  for i, s in enumerate(series):
    x[i, :len(s)] = s
  return x, np.array([len(s) for s in series], np.int32)


def load_ts(train_path) -> ClassificationData:
  """NAME_TRAIN.ts and its sibling NAME_TEST.ts."""
  train_path = Path(train_path)
  if not train_path.name.upper().endswith("_TRAIN.TS"):
    raise UserError(f"{train_path}: pass the NAME_TRAIN.ts file (NAME_TEST.ts is found beside it)")
  test_path = train_path.with_name(train_path.name[: -len("_TRAIN.ts")] + "_TEST.ts")
  if not test_path.is_file():
    raise UserError(f"{test_path} not found; a .ts train file needs its _TEST.ts beside it")
  s_tr, l_tr, names = read_ts(train_path)
  s_te, l_te, _ = read_ts(test_path)
  unknown = sorted(set(l_tr + l_te) - set(names))
  if unknown:
    raise UserError(f"{train_path}: labels {unknown} are not in its @classLabel list")
  if s_tr[0].shape[1] != s_te[0].shape[1]:
    raise UserError(f"{train_path} and {test_path.name} differ in channels "
                    f"({s_tr[0].shape[1]} vs {s_te[0].shape[1]})")
  steps = max(len(s) for s in s_tr + s_te)   # train and test padded to one length
  x_tr, len_tr = pad_series(s_tr, steps)
  x_te, len_te = pad_series(s_te, steps)
  # NaN left after cutting the trailing padding lies inside a series (padding itself is 0 here)
  require_finite(x_tr, str(train_path))
  require_finite(x_te, str(test_path))
  equal = len({len(s) for s in s_tr + s_te}) == 1
  lower = tuple(n.lower() for n in names)
  to_int = lambda ls: np.array([names.index(l) for l in ls], np.int32)
  return ClassificationData(x_tr, to_int(l_tr), x_te, to_int(l_te), lower,
                            f"UEA {train_path.name[:-len('_TRAIN.ts')]} (.ts)",
                            len_train=None if equal else len_tr,
                            len_test=None if equal else len_te)
