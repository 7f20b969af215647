"""MNIST loaders: idx round trip (raw and gz), header validation, embedded digits.

tfds:mnist is tested in test_tfds_source.
"""

import gzip

import numpy as np
import pytest

from jaxml.data import mnist
from jaxml.errors import UserError


def idx_bytes(a: np.ndarray) -> bytes:
  magic = (0x08 << 8) | a.ndim
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in a.shape)
  return header + a.astype(np.uint8).tobytes()


def write_idx_dir(d, n_train=20, n_test=10, gz=False, corrupt=None):
  rng = np.random.default_rng(0)
  arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
            "train-labels-idx1-ubyte": np.arange(n_train) % 10,
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
            "t10k-labels-idx1-ubyte": np.arange(n_test) % 10}
  d.mkdir(parents=True, exist_ok=True)
  for name, a in arrays.items():
    raw = idx_bytes(a)
    if corrupt and corrupt[0] == name:
      raw = corrupt[1](raw)
    if gz:
      (d / (name + ".gz")).write_bytes(gzip.compress(raw))
    else:
      (d / name).write_bytes(raw)
  return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
  arrays = write_idx_dir(tmp_path, gz=gz)
  data = mnist.load_mnist(str(tmp_path))
  np.testing.assert_array_equal(data.x_train[..., 0] * 255, arrays["train-images-idx3-ubyte"])
  np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte"])
  assert data.x_train.shape == (20, 28, 28, 1) and data.x_train.dtype == np.float32
  assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
  small = mnist.load_mnist(str(tmp_path), train_limit=10)
  assert np.bincount(small.y_train).tolist() == [1] * 10


@pytest.mark.parametrize("name, damage, message", [
    ("train-images-idx3-ubyte", lambda b: b"\x00\x00\x09\x03" + b[4:], "magic number"),
    ("train-images-idx3-ubyte", lambda b: b[:-100], "truncated or corrupt"),
    ("t10k-images-idx3-ubyte", lambda b: b[:10], "truncated inside its header"),
    ("train-labels-idx1-ubyte", lambda b: b[:8] + bytes([12]) + b[9:], "labels must be 0-9"),
    ("t10k-labels-idx1-ubyte", lambda b: b[:4] + (9).to_bytes(4, "big") + b[8:17], "9 labels"),
])
def test_bad_idx_files(tmp_path, name, damage, message):
  write_idx_dir(tmp_path, corrupt=(name, damage))
  with pytest.raises(UserError, match=message):
    mnist.load_mnist(str(tmp_path))


def test_missing_files_and_bad_gzip(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    mnist.load_mnist(str(tmp_path / "none"))
  tmp_path.joinpath("a").mkdir()
  with pytest.raises(UserError, match="has no train-images"):
    mnist.load_mnist(str(tmp_path / "a"))
  write_idx_dir(tmp_path / "g", gz=True)
  (tmp_path / "g" / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
  with pytest.raises(UserError, match="cannot be read"):
    mnist.load_mnist(str(tmp_path / "g"))


def test_images_not_28x28(tmp_path):
  d = tmp_path / "d"
  write_idx_dir(d)
  (d / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((10, 20, 20))))
  with pytest.raises(UserError, match="expected 28x28"):
    mnist.load_mnist(str(d))


def test_embedded_digits():
  data = mnist.load_mnist(None)
  assert data.x_train.shape == (4000, 28, 28, 1) and data.x_test.shape == (1000, 28, 28, 1)
  assert np.bincount(data.y_test).tolist() == [100] * 10
