"""IMDB loaders on tiny generated files: Keras npz (and what it must refuse), aclImdb.

tfds:imdb_reviews is tested in test_tfds_source.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxml.data import imdb
from jaxml.errors import UserError


def write_keras_npz(path, n_train=6, n_test=4, seed=0, **replace):
  """A Keras-layout imdb.npz: object arrays of id lists (1 = start), labels 0/1."""
  rng = np.random.default_rng(seed)
  lists = lambda n: np.array([[1] + rng.integers(2, 40, rng.integers(3, 30)).tolist()
                              for _ in range(n)] + [[1, 5]], dtype=object)[:n]
  arrays = {"x_train": lists(n_train), "y_train": np.arange(n_train) % 2,
            "x_test": lists(n_test), "y_test": np.arange(n_test) % 2}
  arrays.update(replace)
  arrays = {k: v for k, v in arrays.items() if v is not None}
  np.savez(path, **arrays)
  return arrays


def test_keras_npz_round_trip(tmp_path):
  arrays = write_keras_npz(tmp_path / "imdb.npz")
  r = imdb.load_reviews(str(tmp_path / "imdb.npz"))
  assert [t.tolist() for t in r.tokens_train] == list(arrays["x_train"])
  assert r.y_test.tolist() == [0, 1, 0, 1] and r.vocab is None
  assert imdb.load_reviews(str(tmp_path)).source == r.source  # a directory holding imdb.npz


SHARED_SUBSET = Path(__file__).resolve().parents[2] / "shared/data/imdb/imdb_500w_5k.npz"


@pytest.mark.skipif(not SHARED_SUBSET.is_file(), reason="the shared IMDB subset is not beside "
                    "this checkout (../shared/data/imdb/)")
def test_shared_subset_reads_as_documented():
  r = imdb.load_reviews(str(SHARED_SUBSET))
  assert len(r.tokens_train) == 5000 and len(r.tokens_test) == 1000
  assert np.bincount(r.y_train).tolist() == [2454, 2546]
  assert max(int(t.max()) for t in r.tokens_train) == 499


class _Evil:
  def __reduce__(self):
    import os
    return (os.system, ("touch PWNED",))


def test_npz_with_code_in_a_pickle_is_refused(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  x = np.empty(1, dtype=object)
  x[0] = _Evil()
  write_keras_npz(tmp_path / "evil.npz", x_train=x, y_train=np.array([1]))
  with pytest.raises(UserError, match="refusing to load posix.system"):
    imdb.load_reviews(str(tmp_path / "evil.npz"))
  assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("replace, message", [
    (dict(y_test=None), r"lacks y_test .*holds x_train, y_train, x_test, y_test"),
    (dict(y_train=np.array([0, 1, 2, 0, 1, 0])), r"y_train must hold 0 \(negative\) / 1"),
    (dict(y_train=np.array([0, 1])), r"y_train must be a vector of 6 labels"),
    (dict(x_train=np.array([[1.5, 2.0]] * 6)), r"x_train\[0\] is not a list of integer"),
    (dict(x_test=np.array([[1, -4], [1, 3], [1], [1]], dtype=object)), r"negative word id -4"),
])
def test_bad_npz_contents(tmp_path, replace, message):
  write_keras_npz(tmp_path / "bad.npz", **replace)
  with pytest.raises(UserError, match=message):
    imdb.load_reviews(str(tmp_path / "bad.npz"))


def test_corrupt_and_missing_files(tmp_path):
  (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
  with pytest.raises(UserError, match="not a readable .npz"):
    imdb.load_reviews(str(tmp_path / "junk.npz"))
  write_keras_npz(tmp_path / "ok.npz")
  raw = (tmp_path / "ok.npz").read_bytes()
  (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
  with pytest.raises(UserError, match="not a readable .npz"):
    imdb.load_reviews(str(tmp_path / "cut.npz"))
  with pytest.raises(UserError, match="does not exist"):
    imdb.load_reviews(str(tmp_path / "nope.npz"))
  with pytest.raises(UserError, match="--data_path is required.*imdb.npz.*aclImdb"):
    imdb.load_reviews(None)


def test_word_index_beside_the_npz_decodes(tmp_path):
  x_test = np.empty(4, dtype=object)
  x_test[:] = [[1, 4, 5, 2]] * 4
  write_keras_npz(tmp_path / "imdb.npz", x_test=x_test)
  (tmp_path / "imdb_word_index.json").write_text(json.dumps({"the": 1, "film": 2}))
  r = imdb.load_reviews(str(tmp_path / "imdb.npz"))
  assert imdb.decode(r.tokens_test[0], r.vocab) == "<start> the film <oov>"


def test_encode_cuts_vocabulary_pads_after_and_keeps_the_end():
  r = imdb.Reviews([np.array([1, 5, 9, 12, 7]), np.array([1, 4])], np.array([0, 1]),
                   [np.array([1, 30, 4])], np.array([1]), None, "test")
  d = imdb.encode(r, num_words=10, maxlen=3, truncating="pre")
  assert d.x_train.tolist() == [[9, 2, 7], [1, 4, 0]]  # 12 -> OOV, 9 < 10 stays; the end kept
  assert d.notes["vocab_size"] == 10 and d.notes["truncated_fraction"] == 0.5
  d = imdb.encode(r, num_words=100, maxlen=4, truncating="post")
  assert d.x_train.tolist() == [[1, 5, 9, 12], [1, 4, 0, 0]]
  assert d.notes["vocab_size"] == 13 and d.x_test.tolist() == [[1, 2, 4, 0]]  # 30 unseen -> OOV


def write_acl(root, reviews):
  """reviews: {(split, "pos"|"neg"): [text, ...]} as an aclImdb tree."""
  for (split, label), texts in reviews.items():
    d = root / split / label
    d.mkdir(parents=True)
    for i, t in enumerate(texts):
      (d / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(t)


ACL = {("train", "pos"): ["A great, great film.<br />Loved it!", "great acting"],
       ("train", "neg"): ["Boring film. I didn't like it", "boring boring plot"],
       ("test", "pos"): ["great plot"], ("test", "neg"): ["A dreadful film"]}


def test_acl_directory_vocab_from_train_only_and_cached(tmp_path):
  write_acl(tmp_path / "aclImdb", ACL)
  logs = []
  r = imdb.load_reviews(str(tmp_path), cache_dir=tmp_path / "cache", log=logs.append)
  # Counts on train: great 3, boring 3, film 2, ...; ties broken alphabetically.
  assert r.vocab[4:7] == ("boring", "great", "film")
  assert imdb.decode(r.tokens_train[2], r.vocab) == "<start> a great great film loved it"
  assert "didn't" in r.vocab
  assert imdb.decode(r.tokens_test[0], r.vocab) == "<start> a <oov> film"  # only in test
  assert r.y_train.tolist() == [0, 0, 1, 1] and not logs
  again = imdb.load_reviews(str(tmp_path / "aclImdb"), cache_dir=tmp_path / "cache",
                            log=logs.append)
  assert logs and "cache" in logs[0]
  assert [t.tolist() for t in again.tokens_train] == [t.tolist() for t in r.tokens_train]
  assert again.vocab == r.vocab
  (tmp_path / "aclImdb" / "test" / "pos" / "9_8.txt").write_text("new review")  # corpus changed
  logs.clear()
  assert len(imdb.load_reviews(str(tmp_path), cache_dir=tmp_path / "cache",
                               log=logs.append).tokens_test) == 3 and not logs


def test_acl_directory_missing_a_split(tmp_path):
  write_acl(tmp_path, {k: v for k, v in ACL.items() if k != ("test", "neg")})
  with pytest.raises(UserError, match="no test/neg/ directory"):
    imdb.load_reviews(str(tmp_path))
