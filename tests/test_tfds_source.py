"""tfds: loaders end to end on mocked data (offline, no TensorFlow), and their one-line failures.

Why `as_data_source_fn`: `tfds.testing.mock_data`'s default data source serves `ds[i]` but not
`ds.__getitems__(keys)` (tfds 4.9.10: it sets a `functools.partial` without `self` on a MagicMock,
so the batch read raises "TypeError: _getitems() missing ... 'record_keys'"), and its random text
could not pin the encoding. mock_data's documented hook `as_data_source_fn` replaces
`DatasetBuilder.as_data_source` instead, so `tfds.builder` (with the real feature spec) and
everything of ours around it run as they do on a prepared dataset.
"""

import importlib.util
import socket
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxml.data import imdb, mnist, tfds_source
from jaxml.errors import UserError


class FakeSource:
  """A prepared split as `as_data_source` returns it: `len`, `[i]` and, if `batched`,
  `__getitems__`; it counts the reads."""

  def __init__(self, examples, batched=True):
    self.examples, self.reads = examples, {"one": 0, "batch": 0}
    if batched:
      self.__getitems__ = self._getitems

  def __len__(self):
    return len(self.examples)

  def __getitem__(self, i):
    self.reads["one"] += 1
    return self.examples[i]

  def _getitems(self, keys):
    self.reads["batch"] += 1
    return [self.examples[k] for k in keys]


def mock_tfds(make_examples, *, batched=True):
  """`tfds.testing.mock_data` whose data source serves `make_examples(builder, split)`."""
  sources = {}

  def as_data_source(builder, split, **kwargs):
    sources[split] = FakeSource(make_examples(builder, split), batched)
    return sources[split]

  return tfds.testing.mock_data(as_data_source_fn=as_data_source), sources


def digit_examples(builder, split):
  """What tfds decodes from a prepared mnist: image u8[28, 28, 1], label int64 (checked against
  the dataset's real feature spec)."""
  image, label = builder.info.features["image"], builder.info.features["label"]
  assert image.shape == (28, 28, 1) and image.np_dtype == np.uint8 and label.num_classes == 10
  n = {"train": 12, "test": 5}[split]
  return [{"image": np.full((28, 28, 1), 20 * i, np.uint8), "label": np.int64((3 * i) % 10)}
          for i in range(n)]


@pytest.mark.parametrize("batched", [True, False], ids=["getitems", "no_getitems"])
@pytest.mark.parametrize("name, class_names", [("mnist", mnist.DIGITS),
                                               ("fashion_mnist", mnist.FASHION)])
def test_tfds_mnist_end_to_end(batched, name, class_names):
  mocked, sources = mock_tfds(digit_examples, batched=batched)
  with mocked:
    data = mnist.load_mnist(f"tfds:{name}")
  assert data.x_train.shape == (12, 28, 28, 1) and data.x_test.shape == (5, 28, 28, 1)
  assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
  np.testing.assert_allclose(data.x_train[:, 0, 0, 0], 20 * np.arange(12) / 255, rtol=1e-6)
  assert data.y_train.tolist() == [(3 * i) % 10 for i in range(12)]
  assert data.y_test.tolist() == [0, 3, 6, 9, 2]
  assert data.class_names == class_names and data.source == f"tfds {name}"
  # One batch read per split where the source has `__getitems__`; else one read per example.
  expected = {"one": 0, "batch": 1} if batched else {"one": 12, "batch": 0}
  assert sources["train"].reads == expected


# Word counts in the training texts: great 4, movie 3, plot 2, dull 1 -> Keras ids 4, 5, 6, 7.
REVIEWS = {"train": [(b"Great movie, great plot!", 1), (b"great MOVIE ... dull", 0),
                     (b"Great movie<br />plot", 1)],
           "test": [(b"dull plot, unseen", 0), (b"movie", 1)]}


def review_examples(builder, split):
  """What tfds decodes from a prepared imdb_reviews: text bytes, label int64."""
  assert isinstance(builder.info.features["text"], tfds.features.Text)
  assert builder.info.features["label"].names == ["neg", "pos"]
  return [{"text": text, "label": np.int64(label)} for text, label in REVIEWS[split]]


def test_tfds_imdb_reviews_end_to_end():
  mocked, sources = mock_tfds(review_examples)
  with mocked:
    reviews = imdb.load_reviews("tfds:imdb_reviews")
  assert sources["train"].reads == {"one": 0, "batch": 1}
  assert reviews.source == "tfds imdb_reviews"
  assert reviews.vocab[4:] == ("great", "movie", "plot", "dull")
  # Keras' imdb.load_data ids: 1 = start, 2 = out of vocabulary, rank r -> r + 3.
  assert [t.tolist() for t in reviews.tokens_train] == [[1, 4, 5, 4, 6], [1, 4, 5, 7],
                                                        [1, 4, 5, 6]]
  assert [t.tolist() for t in reviews.tokens_test] == [[1, 7, 6, 2], [1, 5]]
  assert reviews.y_train.tolist() == [1, 0, 1] and reviews.y_test.tolist() == [0, 1]
  data = imdb.encode(reviews, num_words=6, maxlen=4)  # ids >= 6 -> 2; pad after; keep the end
  assert data.x_train.tolist() == [[4, 5, 4, 2], [1, 4, 5, 2], [1, 4, 5, 2]]
  assert data.x_test.tolist() == [[1, 2, 2, 2], [1, 5, 0, 0]]


def test_tfds_wrong_kind_of_dataset_is_one_line():
  mocked, _ = mock_tfds(review_examples)
  with mocked, pytest.raises(UserError, match="not a 28x28 grey 'image'"):
    mnist.load_mnist("tfds:imdb_reviews")
  mocked, _ = mock_tfds(digit_examples)
  with mocked, pytest.raises(UserError, match="not 'text' and 'label'"):
    imdb.load_reviews("tfds:mnist")


# ----------------------------------------------------------------------------- failures


@pytest.fixture
def empty_data_dir(monkeypatch, tmp_path):
  """A tfds data dir with nothing prepared; downloading is a test failure."""
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))

  def no_download(*a, **k):
    raise AssertionError("tried to download")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
  return tmp_path


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow is installed, so mnist can be prepared")
@pytest.mark.parametrize("online", [True, False])
def test_image_dataset_without_tensorflow_names_it(empty_data_dir, monkeypatch, online):
  monkeypatch.setattr(tfds_source, "_online", lambda *a, **k: online)
  t = time.perf_counter()
  with pytest.raises(UserError, match="needs TensorFlow.*pip install tensorflow.*idx files"):
    mnist.load_mnist("tfds:mnist")
  assert time.perf_counter() - t < 10


def test_text_dataset_offline_says_so(empty_data_dir, monkeypatch):
  monkeypatch.setattr(tfds_source, "_online", lambda *a, **k: False)
  t = time.perf_counter()
  with pytest.raises(UserError, match="not prepared in .* we are offline.*storage.googleapis"):
    imdb.load_reviews("tfds:imdb_reviews")
  assert time.perf_counter() - t < 10


@pytest.mark.parametrize("error, message", [
    (ModuleNotFoundError(name="importlib_resources"), "pip install importlib_resources"),
    (ConnectionError("Name or service not known"), "downloading it into .* failed")])
def test_text_dataset_prepare_failures(empty_data_dir, monkeypatch, error, message):
  monkeypatch.setattr(tfds_source, "_online", lambda *a, **k: True)

  def fail(*a, **k):
    raise error

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)
  with pytest.raises(UserError, match=message):
    imdb.load_reviews("tfds:imdb_reviews")


def test_unknown_dataset(empty_data_dir):
  with pytest.raises(UserError, match="tfds knows no such dataset.*idx files"):
    mnist.load_mnist("tfds:no_such_dataset")


def test_tfrecord_copy_asks_for_array_record(empty_data_dir, monkeypatch):
  def tfrecord_only(*a, **k):
    raise NotImplementedError("Random access data source for file format tfrecord")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "as_data_source", tfrecord_only)
  with pytest.raises(UserError, match="--file_format=array_record"):
    imdb.load_reviews("tfds:imdb_reviews")


# ----------------------------------------------------------------------------- online probe


def test_probe_covers_the_mirror_and_the_dataset_hosts(monkeypatch):
  for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    monkeypatch.delenv(var, raising=False)
  urls = ["http://ai.stanford.edu/~amaas/aclImdb_v1.tar.gz",
          "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-images-idx3-ubyte.gz"]
  assert tfds_source.download_addresses(urls) == [("storage.googleapis.com", 443),
                                                  ("ai.stanford.edu", 80)]
  monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
  monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
  assert tfds_source.download_addresses(urls) == [("proxy.example", 3128)]


def test_online_probe_any_host_answers_and_refusals_return_at_once():
  with socket.create_server(("127.0.0.1", 0)) as server:
    listening = server.getsockname()
    with socket.create_server(("127.0.0.1", 0)) as closed:
      refused = closed.getsockname()
    assert tfds_source._online([refused, listening], timeout=3)
    t = time.perf_counter()
    assert not tfds_source._online([refused], timeout=3)
    assert time.perf_counter() - t < 1
