"""4-gram sources: the seed's data2.h5 loader, the text corpus builder (and its cache), the KJV."""

import numpy as np
import pytest

from jaxml.data import ngrams
from jaxml.errors import UserError
from tests.test_data_activity import write_h5

TEXT = ("The cat sat on the mat. The dog sat on the log!\n"
        "Did the cat see the dog? The cat, the dog and the bird sat on the mat.")


def write_data2(path, *, n=(300, 40, 40), vocab=250, seed=0, drop=(), **override):
  """A seed-format data2.h5 with random 1-based ids; `override` replaces datasets by name."""
  rng = np.random.default_rng(seed)
  arrays = {"words": np.asarray([f"w{i}".encode() for i in range(vocab)], dtype="S")}
  for s, k in zip(ngrams.SPLITS, n):
    arrays[f"{s}x"] = rng.integers(1, vocab + 1, (k, 3)).astype(np.int32)
    arrays[f"{s}d"] = rng.integers(1, vocab + 1, (k,)).astype(np.int32)
  # The activity helper writes any datasets; its own (data3.h5's) are dropped.
  return write_h5(path, drop=("trX", "trY", "tstX", "tstY", *drop), **dict(arrays, **override))


def test_tokenize_and_sentences():
  toks = ngrams.tokenize("Let there be light: and there WAS light. Don't stop!")
  assert toks == ["let", "there", "be", "light", ":", "and", "there", "was", "light", ".",
                  "don't", "stop", "!"]
  assert ngrams.sentences(toks + ["and"]) == [toks[:10], toks[10:], ["and"]]


def test_build_corpus_on_a_tiny_text():
  data = ngrams.build_corpus(TEXT * 3, vocab_size=8)
  counts = {}
  for t in ngrams.tokenize(TEXT):
    counts[t] = counts.get(t, 0) + 1
  expected_vocab = sorted(counts, key=lambda w: (-counts[w], w))[:8]
  assert data.words == tuple(expected_vocab) and data.words[0] == "the"
  # Every 4-gram inside a sentence whose four tokens are in the vocabulary, none across a '.'.
  want = []
  for sent in ngrams.sentences(ngrams.tokenize(TEXT * 3)):
    for i in range(len(sent) - 3):
      if all(t in expected_vocab for t in sent[i:i + 4]):
        want.append(tuple(expected_vocab.index(t) for t in sent[i:i + 4]))
  got = [tuple(x) + (y,) for s in ngrams.SPLITS for x, y in zip(*data.split(s))]
  assert sorted(got) == sorted(want) and len(want) >= 10
  sizes = [len(data.split(s)[1]) for s in ngrams.SPLITS]
  assert sizes == [round(0.8 * len(want)), round(0.1 * len(want)),
                   len(want) - round(0.8 * len(want)) - round(0.1 * len(want))]
  assert ("the", "cat", "sat", "on") in {tuple(data.words[i] for i in g) for g in got}
  # The split is fixed: building again gives the same arrays.
  again = ngrams.build_corpus(TEXT * 3, vocab_size=8)
  assert all(np.array_equal(a, b) for s in ngrams.SPLITS
             for a, b in zip(data.split(s), again.split(s)))


@pytest.mark.parametrize("text, match", [("", "no words"), (" \n.", "distinct tokens"),
                                         ("a b c d e f g h", "4-grams")])
def test_build_corpus_rejects_unusable_text(text, match):
  vocab = 8 if "4-grams" in match else 250
  with pytest.raises(UserError, match=match):
    ngrams.build_corpus(text, vocab_size=vocab)


def test_corpus_cache_is_reused_and_a_damaged_one_rebuilt(tmp_path):
  logs = []
  first = ngrams.corpus_from_text(TEXT * 3, source="t", vocab_size=8, cache_dir=tmp_path,
                                  log=logs.append)
  (cache,) = tmp_path.glob("ngrams_*.npz")
  second = ngrams.corpus_from_text(TEXT * 3, source="t", vocab_size=8, cache_dir=tmp_path,
                                   log=logs.append)
  assert logs and "cache" in logs[0]
  assert second.words == first.words and second.notes == first.notes
  assert np.array_equal(second.x_test, first.x_test)
  cache.write_bytes(b"garbage")
  third = ngrams.corpus_from_text(TEXT * 3, source="t", vocab_size=8, cache_dir=tmp_path,
                                  log=logs.append)
  assert len(logs) == 1 and np.array_equal(third.y_train, first.y_train)


def test_seed_h5_loader_makes_ids_zero_based(tmp_path):
  path = write_data2(tmp_path / "data2.h5")
  data = ngrams.load_ngrams(str(path))
  import h5py
  with h5py.File(path) as f:
    assert np.array_equal(data.x_train, f["trainx"][()] - 1)
    assert np.array_equal(data.y_test, f["testd"][()] - 1)
  assert data.words[0] == "w0" and len(data.words) == 250
  assert data.describe()["n_val"] == 40 and data.x_train.dtype == np.int32
  ngrams.write_seed_h5(tmp_path / "again.h5", data)
  back = ngrams.load_seed_h5(tmp_path / "again.h5")
  assert back.words == data.words and np.array_equal(back.x_val, data.x_val)


def test_seed_h5_accepts_matlab_row_vectors_and_float_ids(tmp_path):
  y = np.arange(1, 41, dtype=np.float64)[None, :]
  data = ngrams.load_seed_h5(write_data2(tmp_path / "d.h5", vald=y))
  assert np.array_equal(data.y_val, np.arange(40))


@pytest.mark.parametrize("override, match", [
    ({"drop": ("testd",)}, r"lacks dataset\(s\) testd"),
    ({"trainx": np.zeros((300, 3), np.int32)}, r"1-based, in 1\.\.250"),
    ({"valx": np.full((40, 3), 251, np.int32)}, r"\[251, 251\]"),
    ({"trainx": np.ones((10, 4), np.int32)}, r"'trainx' has shape \(10, 4\)"),
    ({"traind": np.ones((7,), np.int32)}, r"'traind' has shape \(7,\)"),
    ({"testx": np.full((40, 3), 1.5)}, "non-integer"),
    ({"words": np.zeros((5, 5))}, "'words' has shape"),
])
def test_bad_seed_h5_raises_user_error(tmp_path, override, match):
  path = write_data2(tmp_path / "data2.h5", **override)
  with pytest.raises(UserError, match=match):
    ngrams.load_ngrams(str(path))


def test_load_ngrams_dispatch_errors(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    ngrams.load_ngrams(str(tmp_path / "nope.h5"))
  bad = tmp_path / "data2.h5"
  bad.write_bytes(b"not hdf5")
  with pytest.raises(UserError, match="bad signature"):
    ngrams.load_ngrams(str(bad))
  truncated = tmp_path / "t.h5"
  truncated.write_bytes(ngrams.HDF5_SIGNATURE + b"\x00" * 64)
  with pytest.raises(UserError, match="cannot be read as HDF5"):
    ngrams.load_ngrams(str(truncated))
  binary = tmp_path / "b.txt"
  binary.write_bytes(b"\xff\xfe\x00abc")
  with pytest.raises(UserError, match="neither HDF5 nor UTF-8"):
    ngrams.load_ngrams(str(binary))
  text = tmp_path / "book.txt"
  text.write_text(TEXT * 3)
  data = ngrams.load_ngrams(str(text), vocab_size=8, cache_dir=tmp_path / "cache")
  assert data.source == "text book.txt" and len(data.words) == 8


def test_kjv_text_from_the_installed_package():
  text = ngrams.kjv_text()
  assert text.lstrip().startswith("In the beginning God created")
  assert "1:1" not in text[:200]  # verse references are stripped
  assert len(text.split()) > 700_000
