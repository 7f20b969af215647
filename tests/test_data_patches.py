"""Patch loaders and the seed's preprocessing on tiny hand-made and generated inputs."""

import h5py
import numpy as np
import pytest

from jaxml.data import patches
from jaxml.errors import UserError


def write_data1(path, n=24, side=16, seed=0, **replace):
  """A file in the seed's data1.h5 format: `data` f[n, 3, side, side] in [0, 1]."""
  arrays = {"data": np.random.default_rng(seed).uniform(0, 1, (n, 3, side, side))}
  arrays.update(replace)
  with h5py.File(path, "w") as f:
    for key, value in arrays.items():
      f[key] = value
  return path


def test_preprocess_on_a_hand_computed_example():
  # Gray patches (R = G = B, so Y equals the value: the weights sum to 1). After removing each
  # patch's mean the set holds -2 (x3), 6 and twelve 0s: mean 0, std sqrt(48 / 16) = sqrt(3),
  # so 6 is clipped to 3 sqrt(3); min -2, max 3 sqrt(3).
  gray = np.zeros((4, 2, 2))
  gray[0] = [[0, 0], [0, 8]]
  gray[1:] = 5.0
  out = patches.preprocess(np.repeat(gray[:, None], 3, axis=1))
  span = 2 + 3 * np.sqrt(3)
  zero = 0.8 * 2 / span + 0.1
  want = np.full((4, 4), zero)
  want[0] = [0.1, 0.1, 0.1, 0.9]
  assert out.dtype == np.float32 and out.shape == (4, 4)
  np.testing.assert_allclose(out, want, rtol=1e-6)


def test_luminosity_weights():
  rgb = np.zeros((3, 3, 1, 1))
  for c in range(3):
    rgb[c, c] = 1.0
  np.testing.assert_allclose(patches.grayscale(rgb).ravel(), [0.2126, 0.7152, 0.0722])


def test_preprocess_range_and_per_patch_mean():
  rgb = np.random.default_rng(1).uniform(0, 1, (50, 3, 16, 16))
  x = patches.preprocess(rgb)
  assert x.shape == (50, 256) and x.min() == pytest.approx(0.1) and x.max() == pytest.approx(0.9)
  with pytest.raises(UserError, match="flat"):
    patches.preprocess(np.ones((5, 3, 4, 4)))


def test_seed_h5_roundtrip_and_folder(tmp_path):
  write_data1(tmp_path / "data1.h5")
  data = patches.load_patches(str(tmp_path / "data1.h5"))
  assert data.rgb.shape == (24, 3, 16, 16) and data.rgb.dtype == np.float32
  assert data.source == "seed h5 data1.h5"
  assert patches.load_patches(str(tmp_path)).rgb.shape == (24, 3, 16, 16)


@pytest.mark.parametrize("replace, message", [
    (dict(data=np.zeros((24, 16, 16))), "'data' has shape"),
    (dict(data=np.zeros((24, 1, 16, 16))), "'data' has shape"),
    (dict(data=np.zeros((24, 3, 16, 8))), "'data' has shape"),
    (dict(data=np.array([b"ab"] * 24)), "'data' has shape"),
    (dict(data=np.full((4, 3, 16, 16), np.nan)), "NaN"),
])
def test_seed_h5_bad_contents(tmp_path, replace, message):
  with pytest.raises(UserError, match=message):
    patches.load_patches(str(write_data1(tmp_path / "bad.h5", **replace)))


def test_seed_h5_bad_files(tmp_path):
  with h5py.File(tmp_path / "nokey.h5", "w") as f:
    f["images"] = np.zeros((4, 3, 16, 16))
  with pytest.raises(UserError, match="no dataset 'data' \\(found: images\\)"):
    patches.load_patches(str(tmp_path / "nokey.h5"))
  (tmp_path / "text.h5").write_text("not hdf5")
  with pytest.raises(UserError, match="not an HDF5 file"):
    patches.load_patches(str(tmp_path / "text.h5"))
  with pytest.raises(UserError, match="does not exist"):
    patches.load_patches(str(tmp_path / "missing.h5"))
  good = write_data1(tmp_path / "good.h5", n=200).read_bytes()
  (tmp_path / "cut.h5").write_bytes(good[: len(good) // 2])
  with pytest.raises(UserError, match="cut.h5"):
    patches.load_patches(str(tmp_path / "cut.h5"))


def test_embedded_patches_are_fixed_by_the_seed():
  a = patches.embedded_patches(40, seed=0)
  assert a.shape == (40, 3, 16, 16) and a.dtype == np.float32
  assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.05
  np.testing.assert_array_equal(a, patches.embedded_patches(40, seed=0))
  assert not np.array_equal(a, patches.embedded_patches(40, seed=1))


def test_sample_patches_covers_every_position_and_photo():
  images = [np.arange(5 * 6 * 3, dtype=np.float32).reshape(5, 6, 3), np.ones((4, 4, 3))]
  out = patches.sample_patches(images, 400, size=4, seed=0)
  # photo 0 has 2 x 3 = 6 positions, photo 1 has 1: about 6/7 of the draws come from photo 0
  from_first = (out[:, 0, 0, 0] != 1).mean()
  assert 0.75 < from_first < 0.95
  corners = {float(p[0, 0, 0]) for p in out if p[0, 0, 0] != 1}
  assert corners == {float(images[0][r, c, 0]) for r in range(2) for c in range(3)}
