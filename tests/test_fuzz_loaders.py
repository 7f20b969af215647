"""Property tests for every loader: damaged files end in a UserError (one line, exit 2) or load
as valid data, never in any other exception.

Each property starts from a valid file of the loader's format and damages it the way files get
damaged: truncated, bytes overwritten, replaced by random bytes, emptied; array formats also get
wrong dtypes, wrong shapes and NaNs. Example counts are small (CI time); raise
`max_examples` locally to dig deeper.
"""

import gzip

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxml.data import ClassificationData, activity, faces, imdb, mnist, ngrams, patches
from jaxml.errors import UserError
from tests.test_data_activity import wisdm_text, write_h5
from tests.test_data_imdb import ACL, write_acl, write_keras_npz
from tests.test_data_mnist import write_idx_dir
from tests.test_data_ngrams import write_data2
from tests.test_data_patches import write_data1
from tests.test_faces import write_yale_dir

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def damage(draw):
  """A function bytes -> damaged bytes."""
  kind = draw(st.sampled_from(["truncate", "overwrite", "random", "empty"]))
  cut = draw(st.floats(0.0, 0.999))
  pos = draw(st.floats(0.0, 0.999))
  junk = draw(st.binary(min_size=1, max_size=64))

  def apply(raw: bytes) -> bytes:
    if kind == "truncate":
      return raw[: int(cut * len(raw))]
    if kind == "overwrite":
      at = int(pos * len(raw))
      return raw[:at] + junk + raw[at + len(junk):]
    return junk if kind == "random" else b""

  apply.kind = kind
  return apply


def check_valid(data) -> None:
  """What a loader that did not raise must return."""
  if isinstance(data, ClassificationData):
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
      assert len(x) == len(y) and len(y) > 0
      assert np.isfinite(x).all()
      assert y.min() >= 0 and y.max() < len(data.class_names)
  elif isinstance(data, ngrams.NgramData):
    for split in ngrams.SPLITS:
      x, y = data.split(split)
      assert len(x) == len(y) and x.shape[1:] == (3,)
      assert ((x >= 0) & (x < len(data.words))).all() and ((y >= 0) & (y < len(data.words))).all()
  elif isinstance(data, patches.PatchData):
    assert data.rgb.ndim == 4 and data.rgb.shape[1] == 3 and np.isfinite(data.rgb).all()
  elif isinstance(data, faces.IdentityData):
    assert data.x.shape[0] == len(data.y) and np.isfinite(data.x).all()
    assert data.y.min() >= 0 and data.y.max() < len(data.class_names)
  else:  # imdb.Reviews
    assert len(data.tokens_train) == len(data.y_train)
    assert all(t.ndim == 1 and (t >= 0).all() for t in data.tokens_train + data.tokens_test)
    assert set(np.unique(np.concatenate([data.y_train, data.y_test]))) <= {0, 1}


def load_or_user_error(load, path):
  try:
    check_valid(load(str(path)))
  except UserError as e:
    assert "\n" not in str(e) and str(e)


def damaged_copy(d, make, dmg, name):
  """Writes a valid file with `make(path)` in directory d, then damages it in place."""
  path = d / name
  make(path)
  path.write_bytes(dmg(path.read_bytes()))
  return path


@SETTINGS
@given(dmg=damage(), member=st.sampled_from(list(mnist.IDX_FILES.values())),
       gz=st.booleans())
def test_idx_directory(tmp_path_factory, dmg, member, gz):
  d = tmp_path_factory.mktemp("fuzz")
  write_idx_dir(d, n_train=12, n_test=6, gz=gz)
  f = d / (member + (".gz" if gz else ""))
  raw = gzip.decompress(f.read_bytes()) if gz and dmg.kind != "truncate" else f.read_bytes()
  raw = dmg(raw)
  f.write_bytes(gzip.compress(raw) if gz and dmg.kind != "truncate" else raw)
  load_or_user_error(mnist.load_mnist, d)


def write_wisdm(path):
  path.write_text("\n".join(wisdm_text(users=(1, 2, 3, 4, 5), per_run=160)))


def write_text_corpus(path):
  path.write_text("In the beginning God created the heaven and the earth. " * 60)


# Single-file formats: (file name, writer of a valid file, loader given the path and a cache dir).
FILE_FORMATS = {
    "data3.h5": (write_h5, lambda p, d: activity.load_activity(p)),
    "imdb.npz": (write_keras_npz, lambda p, d: imdb.load_reviews(p)),
    "WISDM_ar_v1.1_raw.txt": (write_wisdm,
                              lambda p, d: activity.load_activity(p, window=20, stride=20)),
    "data2.h5": (write_data2, lambda p, d: ngrams.load_ngrams(p)),
    "book.txt": (write_text_corpus, lambda p, d: ngrams.load_ngrams(
        p, vocab_size=12, cache_dir=d / "cache", log=lambda m: None)),
    "data1.h5": (write_data1, lambda p, d: patches.load_patches(p)),
}


@pytest.mark.parametrize("name", FILE_FORMATS)
@SETTINGS
@given(dmg=damage())
def test_damaged_file(tmp_path_factory, name, dmg):
  write, load = FILE_FORMATS[name]
  d = tmp_path_factory.mktemp("fuzz")
  path = damaged_copy(d, write, dmg, name)
  load_or_user_error(lambda p: load(p, d), path)


H5_CONTENT = st.sampled_from([
    dict(trX=np.full((12, 10, 3), np.nan)), dict(tstX=np.array([[np.inf] * 3] * 10)[None]),
    dict(trX=np.zeros((12, 10))), dict(trX=np.array(["a"] * 12, dtype="S1")),
    dict(trY=np.eye(6)[:5]), dict(trY=np.full((12, 6), 0.5)), dict(tstY=-np.ones(6, int)),
    dict(tstX=np.zeros((6, 9, 3), np.float32)), dict(trX=np.zeros((0, 10, 3))),
])


@SETTINGS
@given(replace=H5_CONTENT, drop=st.sampled_from([(), ("trY",), ("tstX", "tstY")]))
def test_seed_h5_contents(tmp_path_factory, replace, drop):
  d = tmp_path_factory.mktemp("fuzz")
  load_or_user_error(activity.load_activity, write_h5(d / "d.h5", drop=drop, **replace))


NPZ_CONTENT = st.sampled_from([
    dict(x_train=np.zeros((6, 3, 2), np.int32)), dict(x_train=np.array(["a"] * 6)),
    dict(y_train=np.array([0.5] * 6)), dict(y_test=np.array([[0, 1]] * 4)),
    dict(x_test=np.array([None] * 4)), dict(x_train=np.full((6, 4), np.nan)),
    dict(x_test=np.array([[1, 2**40]] * 4, dtype=object)), dict(x_train=np.array(3)),
])


@SETTINGS
@given(replace=NPZ_CONTENT)
def test_keras_npz_contents(tmp_path_factory, replace):
  d = tmp_path_factory.mktemp("fuzz")
  write_keras_npz(d / "imdb.npz", **replace)
  load_or_user_error(imdb.load_reviews, d / "imdb.npz")


@SETTINGS
@given(dmg=damage(), which=st.sampled_from(sorted(ACL)))
def test_acl_directory(tmp_path_factory, dmg, which):
  d = tmp_path_factory.mktemp("fuzz")
  write_acl(d, ACL)
  f = sorted((d / which[0] / which[1]).glob("*.txt"))[0]
  f.write_bytes(dmg(f.read_bytes()))
  load_or_user_error(lambda p: imdb.load_reviews(p, cache_dir=d / "cache"), d)


@SETTINGS
@given(dmg=damage(), which=st.sampled_from(["TRAIN", "TEST"]))
def test_ts_pair(tmp_path_factory, dmg, which):
  d = tmp_path_factory.mktemp("fuzz")
  head = "@problemName X\n@classLabel true a b\n@data\n"
  rows = "".join(f"{i},{i + 1},{i + 2}:{i},0.5,1:{'ab'[i % 2]}\n" for i in range(6))
  for split in ("TRAIN", "TEST"):
    (d / f"X_{split}.ts").write_text(head + rows)
  f = d / f"X_{which}.ts"
  f.write_bytes(dmg(f.read_bytes()))
  load_or_user_error(activity.load_activity, d / "X_TRAIN.ts")


DATA2_CONTENT = st.sampled_from([
    dict(trainx=np.zeros((300, 3), np.int32)), dict(testd=np.full(40, 251)),
    dict(valx=np.full((40, 3), np.nan)), dict(trainx=np.ones((300, 4), np.int32)),
    dict(traind=np.ones(299, np.int32)), dict(words=np.zeros(3)), dict(testx=np.array([b"a"] * 40)),
])


@SETTINGS
@given(override=DATA2_CONTENT, drop=st.sampled_from([(), ("words",), ("vald",)]))
def test_seed_data2_h5_contents(tmp_path_factory, override, drop):
  d = tmp_path_factory.mktemp("fuzz")
  load_or_user_error(ngrams.load_ngrams, write_data2(d / "data2.h5", drop=drop, **override))


DATA1_CONTENT = st.sampled_from([
    dict(data=np.full((24, 3, 16, 16), np.nan)), dict(data=np.zeros((24, 16, 16))),
    dict(data=np.zeros((24, 1, 16, 16))), dict(data=np.zeros((24, 3, 16, 8))),
    dict(data=np.array([b"x"] * 24)), dict(data=np.zeros((1, 3, 16, 16))), dict(other=np.ones(3)),
])


@SETTINGS
@given(replace=DATA1_CONTENT)
def test_seed_data1_h5_contents(tmp_path_factory, replace):
  d = tmp_path_factory.mktemp("fuzz")
  load_or_user_error(patches.load_patches, write_data1(d / "data1.h5", **replace))


@settings(SETTINGS, max_examples=12)
@given(dmg=damage(), which=st.integers(0, 10))
def test_yale_directory(tmp_path_factory, dmg, which):
  d = write_yale_dir(tmp_path_factory.mktemp("fuzz"), n_subjects=2)
  f = sorted(p for p in d.iterdir() if p.name.startswith("subject"))[which]
  f.write_bytes(dmg(f.read_bytes()))
  load_or_user_error(lambda p: faces.load_identities(p, height=12, width=10), d)
