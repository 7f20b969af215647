"""Natural-image patches for the sparse autoencoder, and the seed's preprocessing.

Two sources behind `load_patches`, both returning RGB patches f32[N, 3, P, P] (the seed's layout):
* the seed's `data1.h5`: one dataset `data` f[N, 3, 16, 16], RGB in [0, 1];
* the embedded default: 16x16 patches cut at random (fixed seed) from the colour photographs
  that scikit-image and scikit-learn ship inside their wheels (no download): astronaut, chelsea,
  coffee, rocket, the left motorcycle stereo view, and scikit-learn's china and flower.

`preprocess` is the seed's recipe, exactly: luminosity grayscale, per-patch mean removed, one
standard deviation over the whole set, clipped at +-3 std, then mapped to [0.1, 0.9] by the
set's min and max (sigmoid outputs can reach that range; 0 and 1 they cannot).
"""

import dataclasses
from pathlib import Path

import numpy as np

from jaxml.data.activity import HDF5_SIGNATURE
from jaxml.data.h5 import H5_ERRORS
from jaxml.data.splits import require_finite
from jaxml.errors import UserError

LUMINOSITY = (0.2126, 0.7152, 0.0722)  # Y = 0.2126 R + 0.7152 G + 0.0722 B (Rec. 709)
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")
FIX_HINT = "pass the seed's data1.h5 (dataset 'data' f[N, 3, 16, 16]) or omit --data_path"


@dataclasses.dataclass(frozen=True)
class PatchData:
  rgb: np.ndarray   # f32[N, 3, P, P], RGB (in [0, 1] for both built-in sources)
  source: str       # what was read, for results.json and the log

  def describe(self) -> dict:
    return {"source": self.source, "n_patches": int(len(self.rgb)),
            "patch_shape": list(self.rgb.shape[1:])}


def load_patches(data_path: str | None, *, n_embedded: int = 10240, seed: int = 0) -> PatchData:
  """The patches `data_path` names (a data1.h5 or a folder holding one); None: embedded."""
  if data_path is None:
    return PatchData(embedded_patches(n_embedded, seed=seed),
                     f"embedded photo patches (skimage + sklearn, {n_embedded}, seed {seed})")
  path = Path(data_path)
  if path.is_dir():
    path = path / "data1.h5"
  if not path.is_file():
    raise UserError(f"--data_path {data_path}: {path} does not exist; {FIX_HINT}")
  return PatchData(load_seed_h5(path), f"seed h5 {path.name}")


def load_seed_h5(path) -> np.ndarray:
  """The seed's data1.h5 -> f32[N, 3, P, P]; UserError for anything else."""
  import h5py  # imported here: only this source needs it

  with open(path, "rb") as f:
    if f.read(8) != HDF5_SIGNATURE:
      raise UserError(f"{path} is not an HDF5 file (bad signature); {FIX_HINT}")
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise UserError(f"{path} cannot be read as HDF5 ({e}); pass an intact data1.h5") from None
  with f:
    try:
      if "data" not in f or not isinstance(f["data"], h5py.Dataset):
        raise UserError(f"{path} has no dataset 'data' (found: "
                        f"{', '.join(sorted(f.keys())) or 'none'}); {FIX_HINT}")
      data = np.asarray(f["data"][()])
    except H5_ERRORS as e:
      raise UserError(f"{path}: dataset 'data' cannot be read ({e}); the file may be "
                      f"truncated") from None
  if (data.ndim != 4 or data.shape[0] < 2 or data.shape[1] != 3 or data.shape[2] != data.shape[3]
      or data.shape[2] < 2 or not np.issubdtype(data.dtype, np.number)):
    raise UserError(f"{path}: 'data' has shape {data.shape} and dtype {data.dtype}; expected "
                    f"numbers of shape [patches, 3, P, P] (RGB, square), e.g. [10240, 3, 16, 16]")
  with np.errstate(over="ignore"):  # values beyond float32 become inf: reported just below
    data = data.astype(np.float32)
  require_finite(data, f"{path}: 'data'")
  return data


# ----------------------------------------------------------------------------- embedded
def embedded_photos() -> list[np.ndarray]:
  """The bundled colour photographs as f32[H, W, 3] in [0, 1]."""
  try:  # scikit-learn comes with sktime and mlxtend (both dependencies of jaxml)
    import skimage.data
    from sklearn.datasets import load_sample_images
  except ImportError as e:
    raise UserError(f"the embedded patches need scikit-image and scikit-learn ({e}); "
                    f"pip install scikit-image scikit-learn, or pass --data_path=data1.h5") \
        from None
  photos = [getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS[:-1]]
  photos.append(skimage.data.stereo_motorcycle()[0])
  photos += list(load_sample_images().images)  # china.jpg, flower.jpg
  return [np.asarray(p, np.float32)[..., :3] / 255.0 for p in photos]


def sample_patches(images, n: int, size: int, seed: int) -> np.ndarray:
  """n patches f32[n, 3, size, size] at uniform random positions; each photo is drawn with
  probability proportional to its number of positions, so every position is equally likely."""
  rng = np.random.default_rng(seed)
  positions = np.array([(h - size + 1) * (w - size + 1) for h, w, _ in
                        (im.shape for im in images)], np.float64)
  which = rng.choice(len(images), size=n, p=positions / positions.sum())
  out = np.empty((n, 3, size, size), np.float32)
  for i, k in enumerate(which):
    h, w, _ = images[k].shape
    r, c = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    out[i] = images[k][r:r + size, c:c + size].transpose(2, 0, 1)
  return out


def embedded_patches(n: int = 10240, *, size: int = 16, seed: int = 0) -> np.ndarray:
  """f32[n, 3, size, size] RGB patches from the bundled photographs, fixed by `seed`."""
  return sample_patches(embedded_photos(), n, size, seed)


# ----------------------------------------------------------------------------- preprocessing
def grayscale(rgb: np.ndarray) -> np.ndarray:
  """f[N, 3, P, P] -> f64[N, P, P] luminosity."""
  r, g, b = LUMINOSITY
  rgb = np.asarray(rgb, np.float64)
  return r * rgb[:, 0] + g * rgb[:, 1] + b * rgb[:, 2]


def preprocess(rgb: np.ndarray) -> np.ndarray:
  """The seed's preprocessing: f[N, 3, P, P] RGB -> f32[N, P * P] in [0.1, 0.9].

  Y = 0.2126 R + 0.7152 G + 0.0722 B; subtract each patch's mean; clip at +-3 std (one std over
  the whole set); map to [0.1, 0.9] by 0.8 (x - min) / (max - min) + 0.1 over the whole set.
  """
  y = grayscale(rgb)
  y = y - y.mean(axis=(1, 2), keepdims=True)
  std = y.std()
  y = np.clip(y, -3 * std, 3 * std)
  lo, hi = y.min(), y.max()
  if not hi > lo:
    raise UserError("every patch is flat (constant) after removing its mean, so there is "
                    "nothing to learn; pass natural-image patches")
  return (0.8 * (y - lo) / (hi - lo) + 0.1).reshape(len(y), -1).astype(np.float32)
