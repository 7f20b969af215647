"""IMDB movie reviews (Maas et al. 2011) behind one `load_imdb`, encoded as Keras does.

Every source becomes reviews of word ids in Keras' `imdb.load_data` convention: 0 = padding,
1 = start of review, 2 = out-of-vocabulary, and the word of frequency rank r (1 = most frequent,
counted on the training split only) = r + 3. `encode` then applies the `num_words` cut (ids at or
above it become 2) and pads/truncates to a fixed length. Sources, chosen by `--data_path`:

* a Keras `imdb.npz` file (keys x_train, y_train, x_test, y_test; x_* object arrays of int
  lists), or a directory holding one. Object arrays are pickles, and unpickling can run code, so
  they are read with an unpickler that only builds numpy arrays (`read_npz`). If Keras'
  `imdb_word_index.json` sits beside it, reviews can be decoded to words;
* the raw `aclImdb` directory (`train|test/pos|neg/*.txt`): tokenized here, the vocabulary
  ranked on the training split only; both are cached in the workdir so later runs skip it;
* `tfds:imdb_reviews`: tensorflow-datasets' `data_source`, tokenized the same way.
No package ships IMDB, so there is no embedded default (`MISSING` says where to get it).
"""

import dataclasses
import hashlib
import io
import json
import pickle
import re
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from jaxml.data import ClassificationData
from jaxml.data.tfds_source import open_split, read_all
from jaxml.errors import UserError

PAD, START, OOV = 0, 1, 2
INDEX_FROM = 3  # rank r is stored as r + 3 (Keras' index_from)
CLASS_NAMES = ("negative", "positive")
KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")
FIX = ("pass --data_path=imdb.npz (Keras layout), an aclImdb directory, or tfds:imdb_reviews")
MISSING = ("IMDB is not shipped with any package, so --data_path is required: pass a Keras "
           "imdb.npz (e.g. ../shared/data/imdb/imdb_500w_5k.npz, or storage.googleapis.com/"
           "tensorflow/tf-keras-datasets/imdb.npz), the aclImdb directory from "
           "ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz, or tfds:imdb_reviews (online)")


@dataclasses.dataclass(frozen=True)
class Reviews:
  """Variable-length reviews in Keras ids: tokens_* list of int32[len], y_* int32[n] (1 = positive).

  `vocab[i]` is the word of id i (ids 0-3 are markers), or None when no word index is known.
  """
  tokens_train: list
  y_train: np.ndarray
  tokens_test: list
  y_test: np.ndarray
  vocab: tuple | None
  source: str


# ----------------------------------------------------------------------------- Keras npz
# The only globals an `np.save`d object array of int lists needs; anything else (os.system, ...)
# is refused, so a malicious file cannot run code.
_SAFE_GLOBALS = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
                 for n in ("_reconstruct", "scalar")} | {
                     ("numpy", "ndarray"), ("numpy", "dtype"),
                     ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}


class _NumpyOnlyUnpickler(pickle.Unpickler):

  def find_class(self, module, name):
    if (module, name) not in _SAFE_GLOBALS:
      raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a numpy array part")
    with warnings.catch_warnings():  # numpy 2 warns when old pickles name numpy.core
      warnings.simplefilter("ignore", DeprecationWarning)
      return super().find_class(module, name)


def read_npz(path) -> dict[str, np.ndarray]:
  """All arrays of an .npz file; object arrays via the numpy-only unpickler above."""
  path = Path(path)
  out = {}
  try:
    with zipfile.ZipFile(path) as z:
      for member in z.namelist():
        if not member.endswith(".npy"):
          continue
        buf = io.BytesIO(z.read(member))
        version = np.lib.format.read_magic(buf)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        dtype = read_header(buf)[2] if read_header else None
        if dtype is not None and dtype.hasobject:
          arr = _NumpyOnlyUnpickler(buf).load()
          if not isinstance(arr, np.ndarray):
            raise pickle.UnpicklingError(f"{member} holds a {type(arr).__name__}, not an array")
        else:
          buf.seek(0)
          arr = np.lib.format.read_array(buf, allow_pickle=False)
        out[member[:-len(".npy")]] = arr
  except (zipfile.BadZipFile, OSError, EOFError, ValueError, pickle.UnpicklingError,
          AttributeError, TypeError, IndexError) as e:
    raise UserError(f"{path} is not a readable .npz file ({type(e).__name__}: "
                    f"{str(e)[:120]}); {FIX}") from None
  return out


def _as_token_lists(x: np.ndarray, path, key: str) -> list:
  """Keras' object array of id lists (or an already padded id matrix) -> list of int32[len]."""
  if x.ndim not in (1, 2):
    raise UserError(f"{path}: {key} must be a 1-d object array of id lists or an id matrix, "
                    f"got shape {x.shape}; {FIX}")
  out = []
  for i, r in enumerate(x):
    try:
      a = np.asarray(r)
    except (ValueError, TypeError):
      a = np.asarray([], dtype=object)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
      raise UserError(f"{path}: {key}[{i}] is not a list of integer word ids; {FIX}")
    if a.size and a.min() < 0:
      raise UserError(f"{path}: {key}[{i}] has a negative word id {int(a.min())}")
    out.append((a[a != PAD] if x.ndim == 2 else a).astype(np.int32))  # a matrix is padded
  return out


def _labels(y: np.ndarray, n: int, path, key: str) -> np.ndarray:
  if y.ndim != 1 or len(y) != n:
    raise UserError(f"{path}: {key} must be a vector of {n} labels, got shape {y.shape}")
  if y.dtype.kind not in "iub" or not np.isin(y, (0, 1)).all():
    raise UserError(f"{path}: {key} must hold 0 (negative) / 1 (positive) labels")
  return y.astype(np.int32)


def load_keras_npz(path) -> Reviews:
  path = Path(path)
  arrays = read_npz(path)
  missing = [k for k in KERAS_KEYS if k not in arrays]
  if missing:
    raise UserError(f"{path} lacks {', '.join(missing)} (has {', '.join(sorted(arrays)) or 'none'})"
                    f"; a Keras imdb.npz holds {', '.join(KERAS_KEYS)}")
  tok = {s: _as_token_lists(arrays[f"x_{s}"], path, f"x_{s}") for s in ("train", "test")}
  y = {s: _labels(arrays[f"y_{s}"], len(tok[s]), path, f"y_{s}") for s in ("train", "test")}
  vocab = _keras_vocab(path.parent / "imdb_word_index.json")
  return Reviews(tok["train"], y["train"], tok["test"], y["test"], vocab,
                 f"Keras npz {path}")


def _keras_vocab(path: Path) -> tuple | None:
  """Keras' word index {word: rank} as id -> word, or None if the file is absent or unreadable."""
  if not path.is_file():
    return None
  try:
    index = json.loads(path.read_text())
    ranks = {int(r): w for w, r in index.items()}
  except (ValueError, AttributeError, OSError):
    return None
  vocab = ["<pad>", "<start>", "<oov>", "<unused>"] + [""] * max(ranks, default=0)
  for r, w in ranks.items():
    if r >= 1:
      vocab[r + INDEX_FROM] = w
  return tuple(vocab)


# ----------------------------------------------------------------------------- raw text
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
  """Lower-cased words and numbers, keeping in-word apostrophes ("don't"); HTML breaks dropped."""
  return _TOKEN.findall(text.lower().replace("<br />", " "))


def build_vocab(train_texts) -> tuple:
  """Words of the training texts by frequency (ties alphabetical): vocab[rank + 3] = word."""
  counts = Counter(w for t in train_texts for w in tokenize(t))
  ranked = sorted(counts, key=lambda w: (-counts[w], w))
  return ("<pad>", "<start>", "<oov>", "<unused>", *ranked)


def encode_texts(texts, vocab: tuple) -> list:
  ids = {w: i for i, w in enumerate(vocab) if i >= INDEX_FROM + 1}
  return [np.asarray([START] + [ids.get(w, OOV) for w in tokenize(t)], np.int32) for t in texts]


def _from_texts(train, test, source: str) -> Reviews:
  """train/test: (texts, labels). Vocabulary from the training texts only."""
  vocab = build_vocab(train[0])
  return Reviews(encode_texts(train[0], vocab), np.asarray(train[1], np.int32),
                 encode_texts(test[0], vocab), np.asarray(test[1], np.int32), vocab, source)


def _read_acl_split(root: Path, split: str):
  texts, labels = [], []
  for label, name in enumerate(("neg", "pos")):
    d = root / split / name
    if not d.is_dir():
      raise UserError(f"{root} has no {split}/{name}/ directory; an aclImdb directory holds "
                      f"train/pos, train/neg, test/pos, test/neg with one review per .txt file")
    files = sorted(d.glob("*.txt"))
    if not files:
      raise UserError(f"{d} holds no .txt reviews")
    for f in files:
      try:
        texts.append(f.read_text(encoding="utf-8", errors="replace"))
      except OSError as e:
        raise UserError(f"{f} cannot be read ({e})") from None
      labels.append(label)
  return texts, labels


def _fingerprint(root: Path) -> str:
  """Names and sizes of every review file: changes whenever the corpus does."""
  h = hashlib.sha1()
  for split in ("train", "test"):
    for name in ("neg", "pos"):
      for f in sorted((root / split / name).glob("*.txt")):
        h.update(f"{split}/{name}/{f.name}:{f.stat().st_size};".encode())
  return h.hexdigest()[:16]


def _save_cache(path: Path, reviews: Reviews) -> None:
  from jaxml.io import atomic_path
  flat = {}
  for s in ("train", "test"):
    toks = getattr(reviews, f"tokens_{s}")
    flat[f"ids_{s}"] = np.concatenate(toks) if toks else np.zeros(0, np.int32)
    flat[f"len_{s}"] = np.asarray([len(t) for t in toks], np.int64)
    flat[f"y_{s}"] = getattr(reviews, f"y_{s}")
  flat["vocab"] = np.asarray(json.dumps(reviews.vocab))  # a unicode scalar: no pickle needed
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, **flat)


def _load_cache(path: Path, source: str) -> Reviews | None:
  try:
    with np.load(path, allow_pickle=False) as z:
      split = lambda s: np.split(z[f"ids_{s}"], np.cumsum(z[f"len_{s}"])[:-1])
      return Reviews(split("train"), z["y_train"], split("test"), z["y_test"],
                     tuple(json.loads(str(z["vocab"]))), source)
  except (OSError, ValueError, KeyError):
    return None  # a damaged cache is rebuilt, never trusted


def load_acl_dir(root, cache_dir=None, log=print) -> Reviews:
  """The raw aclImdb tree; tokenized ids and vocabulary cached in `cache_dir` if given."""
  root = Path(root)
  if (root / "aclImdb").is_dir() and not (root / "train").is_dir():
    root = root / "aclImdb"
  source = f"aclImdb {root}"
  cache = Path(cache_dir) / f"imdb_{_fingerprint(root)}.npz" if cache_dir else None
  if cache is not None and cache.is_file():
    cached = _load_cache(cache, source)
    if cached is not None:
      log(f"data: tokenized reviews from the cache {cache}")
      return cached
  reviews = _from_texts(_read_acl_split(root, "train"), _read_acl_split(root, "test"), source)
  if cache is not None:
    _save_cache(cache, reviews)
  return reviews


def load_tfds(name: str) -> Reviews:
  """A tfds dataset of ('text', 'label') reviews (imdb_reviews), tokenized and ranked as
  `_from_texts` does for aclImdb; preparing it needs no TensorFlow (see `tfds_source`)."""
  splits = {}
  text = lambda t: t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t)
  for split in ("train", "test"):
    items = read_all(open_split(name, split, "pass an imdb.npz file or an aclImdb directory"))
    if not {"text", "label"} <= set(items[0]):
      raise UserError(f"tfds:{name} examples have {sorted(items[0])}, not 'text' and 'label'; "
                      f"the IMDB set is tfds:imdb_reviews")
    splits[split] = ([text(it["text"]) for it in items], [int(it["label"]) for it in items])
  return _from_texts(splits["train"], splits["test"], f"tfds {name}")


# ----------------------------------------------------------------------------- front door
def load_reviews(data_path: str | None, cache_dir=None, log=print) -> Reviews:
  """Dispatches on `data_path` (see the module docstring)."""
  if data_path is None:
    raise UserError(MISSING)
  if data_path.startswith("tfds:"):
    return load_tfds(data_path[len("tfds:"):])
  p = Path(data_path)
  if not p.exists():
    raise UserError(f"--data_path {data_path} does not exist; {FIX}")
  if p.is_dir():
    if (p / "imdb.npz").is_file():
      return load_keras_npz(p / "imdb.npz")
    return load_acl_dir(p, cache_dir, log)
  return load_keras_npz(p)


def encode(reviews: Reviews, *, num_words: int, maxlen: int, truncating: str = "pre"
           ) -> ClassificationData:
  """Fixed-length id matrices: x_* int32[n, maxlen], padded with 0 after the review (masked in
  the model); ids >= num_words become OOV. `truncating="pre"` keeps the last maxlen ids of a long
  review, as Keras' pad_sequences does by default (the seed's setting)."""

  def pad(tokens):
    x = np.zeros((len(tokens), maxlen), np.int32)
    for i, t in enumerate(tokens):
      t = t[-maxlen:] if truncating == "pre" else t[:maxlen]
      x[i, :len(t)] = np.where(t >= num_words, OOV, t)
    return x

  n_empty = sum(len(t) == 0 for t in reviews.tokens_train + reviews.tokens_test)
  if n_empty:
    raise UserError(f"{reviews.source}: {n_empty} reviews have no tokens at all; drop them")
  # Rows for ids the training split never uses would only be noise, so the embedding ends at
  # the largest training id (and never below the four marker ids).
  vocab_size = int(min(num_words, max(INDEX_FROM + 1,
                                      1 + max(int(t.max()) for t in reviews.tokens_train))))
  x_train, x_test = pad(reviews.tokens_train), pad(reviews.tokens_test)
  x_test = np.where(x_test >= vocab_size, OOV, x_test)  # words never seen in training
  notes = {"num_words": num_words, "vocab_size": vocab_size, "maxlen": maxlen,
           "truncating": truncating,
           "truncated_fraction": float(np.mean([len(t) > maxlen for t in reviews.tokens_train])),
           "mean_length": float(np.mean([len(t) for t in reviews.tokens_train]))}
  return ClassificationData(x_train, reviews.y_train, x_test, reviews.y_test, CLASS_NAMES,
                            reviews.source, notes)


def decode(ids: np.ndarray, vocab: tuple) -> str:
  """Word ids back to text (padding dropped), as the seed's decode_review."""
  return " ".join(vocab[i] if i < len(vocab) and vocab[i] else "?" for i in ids if i != PAD)
