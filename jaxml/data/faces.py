"""Face data: face/non-face crops for detection, identity-labelled faces for recognition.

Detection. `skimage.data.lfw_subset()` holds 200 grayscale 25x25 crops: 0-99 faces from Labeled
Faces in the Wild, 100-199 non-faces (mostly flat, easy background patches). A detector scanned
over a whole photo meets far harder non-faces (hair, collars, text, fur), so we add random square
crops, at random sizes, from bundled skimage photos that contain no human face (`camera` has the
cameraman and `astronaut` is the test photo, so neither is used; `chelsea` is a cat face, a
useful hard negative).

Recognition. Two directory layouts:
  * Yale faces: `subject01.centerlight`, `subject01.happy`, ... (no extension, or one such as
    `.gif`/`.png`); the subject number is in the name, files with other names are ignored;
  * folders: `person_name/*.png` (any PIL-readable image), the folder name is the identity.
Images are converted to grayscale and resized to a fixed size; pixel values in [0, 1].
"""

import dataclasses
import functools
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from skimage import data as skdata
from skimage.color import rgb2gray
from skimage.transform import resize

from jaxml.errors import UserError

FACE_WINDOW = 25  # lfw_subset's crop size, the detector's window in pixels
# Bundled skimage photos with no human face in them (camera and astronaut excluded, see above).
NEGATIVE_PHOTOS = ("brick", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
                   "hubble_deep_field", "immunohistochemistry", "moon", "page", "rocket", "text",
                   "horse", "colorwheel", "cell", "retina", "logo")
IMAGE_SUFFIXES = {".gif", ".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}


# ----------------------------------------------------------------------------- detection
def to_gray(image: np.ndarray) -> np.ndarray:
  """Any skimage/PIL array (bool, uint8, float; gray, RGB or RGBA) -> f32[H, W] in [0, 1]."""
  image = np.asarray(image)
  if image.dtype == bool:
    image = image.astype(np.float32)
  elif np.issubdtype(image.dtype, np.integer):
    image = image.astype(np.float32) / np.iinfo(image.dtype).max
  if image.ndim == 3:
    image = rgb2gray(image[..., :3]) if image.shape[-1] >= 3 else image[..., 0]
  return np.asarray(image, np.float32)


def normalize_crops(x: np.ndarray, min_std: float = 0.05) -> np.ndarray:
  """Per-crop standardisation, f[n, H, W(, C)] -> same: a face must not be told from a non-face
  by its brightness or contrast, and the detector sees every lighting. `min_std` keeps flat
  patches (sky, walls) from having their noise blown up to unit variance."""
  axes = tuple(range(1, x.ndim))
  mean = x.mean(axis=axes, keepdims=True)
  std = np.maximum(x.std(axis=axes, keepdims=True), min_std)
  return ((x - mean) / std).astype(np.float32)


def random_square_crops(image: np.ndarray, n: int, rng: np.random.Generator, *,
                        window: int = FACE_WINDOW, min_size: int = 20,
                        max_size: int = 200) -> np.ndarray:
  """n random square crops of side in [min_size, max_size] (clipped to the photo), each
  resized to window x window. image: f[H, W] in [0, 1] -> f32[n, window, window]."""
  h, w = image.shape
  hi = max(min(max_size, h, w), 1)
  out = np.empty((n, window, window), np.float32)
  for i in range(n):
    s = int(rng.integers(min(min_size, hi), hi + 1))
    r, c = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    out[i] = resize(image[r:r + s, c:c + s], (window, window), anti_aliasing=s > window)
  return out


@functools.cache
def negative_photos() -> dict[str, np.ndarray]:
  """{name: f32[H, W]} the face-free photos bundled with skimage and scikit-learn (a temple and
  a flower: more of the man-made and natural textures a detector meets). Cached (read twice
  per run: random crops, then hard-negative mining), so the arrays are read-only."""
  from sklearn.datasets import load_sample_image  # bundled JPEGs, no download
  photos = {name: to_gray(getattr(skdata, name)()) for name in NEGATIVE_PHOTOS}
  photos.update({name: to_gray(load_sample_image(f"{name}.jpg")) for name in ("china", "flower")})
  for photo in photos.values():
    photo.setflags(write=False)
  return photos


def face_crops(n_photo_negatives: int, seed: int) -> dict:
  """The face/non-face crop set.

  Returns:
    {"x": f32[n, 25, 25] in [0, 1], "y": int32[n] (1 = face), "group": str[n] (where each crop
     came from: "lfw face", "lfw non-face" or the photo's name)}.
  """
  lfw = np.asarray(skdata.lfw_subset(), np.float32)
  xs, ys = [lfw], [np.r_[np.ones(100, np.int32), np.zeros(100, np.int32)]]
  groups = [np.array(["lfw face"] * 100 + ["lfw non-face"] * 100)]
  photos = negative_photos()
  rng = np.random.default_rng(seed)
  per_photo = np.full(len(photos), n_photo_negatives // len(photos))
  per_photo[: n_photo_negatives % len(photos)] += 1
  for (name, photo), k in zip(photos.items(), per_photo):
    xs.append(random_square_crops(photo, int(k), rng))
    ys.append(np.zeros(k, np.int32))
    groups.append(np.array([name] * k))
  return {"x": np.concatenate(xs), "y": np.concatenate(ys), "group": np.concatenate(groups)}


def load_photo(path: str | None) -> tuple[np.ndarray, str]:
  """(f32[H, W] grayscale in [0, 1], description): the photo at `path`, or the astronaut."""
  if path is None:
    return to_gray(skdata.astronaut()), "skimage.data.astronaut()"
  p = Path(path)
  if not p.is_file():
    raise UserError(f"--data_path {path} is not a file; pass an image file (PNG, JPEG, ...)")
  return to_gray(_read_image(p)), str(p)


def _read_image(path: Path) -> np.ndarray:
  try:
    with Image.open(path) as im:
      im.seek(0)  # first frame of an animated GIF
      return np.asarray(im.convert("L"))
  except (UnidentifiedImageError, OSError, ValueError) as e:
    raise UserError(f"cannot read image {path} ({type(e).__name__}); "
                    f"replace or remove the file") from None


# ----------------------------------------------------------------------------- recognition
_YALE = re.compile(r"^subject(\d+)\.(.+)$", re.IGNORECASE)


def parse_yale_name(name: str) -> tuple[int, str] | None:
  """'subject01.happy' -> (1, 'happy'); 'subject07.glasses.gif' -> (7, 'glasses');
  'subject03.gif' -> (3, ''); anything else (readme files, other names) -> None."""
  m = _YALE.match(name)
  if not m:
    return None
  condition = m.group(2)
  stem, dot, ext = condition.rpartition(".")
  if f".{ext.lower()}" in IMAGE_SUFFIXES:
    condition = stem if dot else ""
  return int(m.group(1)), condition


@dataclasses.dataclass(frozen=True)
class IdentityData:
  """Identity-labelled faces: x f32[n, H, W] in [0, 1], y int32[n] in [0, len(class_names))."""
  x: np.ndarray
  y: np.ndarray
  class_names: list[str]
  files: list[str]
  layout: str             # "yale" or "folders"
  source: str

  def describe(self) -> dict:
    return {"source": self.source, "layout": self.layout, "n_images": len(self.y),
            "n_subjects": len(self.class_names), "image_size": list(self.x.shape[1:])}


def _image_files(folder: Path) -> list[Path]:
  return sorted(p for p in folder.iterdir()
                if p.is_file() and not p.name.startswith(".")
                and p.suffix.lower() in IMAGE_SUFFIXES)


def load_identities(path: str | None, *, height: int, width: int) -> IdentityData:
  """Reads a Yale-layout or folder-layout directory (see the module docstring)."""
  if path is None:
    raise UserError("face_recognition needs --data_path=DIR: a Yale faces directory "
                    "(subject01.happy, ...) or one folder of images per person")
  root = Path(path)
  if not root.is_dir():
    raise UserError(f"--data_path {path} is not a directory; pass a Yale faces directory "
                    "or one folder of images per person")
  yale = sorted((p, parsed) for p in root.iterdir()
                if p.is_file() and (parsed := parse_yale_name(p.name)) is not None)
  folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
  if yale:
    layout, items = "yale", [(p, f"subject{s:02d}") for p, (s, _) in yale]
  elif folders:
    layout, items = "folders", [(f, d.name) for d in folders for f in _image_files(d)]
  else:
    raise UserError(f"{path} has neither Yale-named files (subject01.happy, ...) nor "
                    "person_name/ folders of images; pass a directory in one of those layouts")
  names = sorted({who for _, who in items})
  counts = {n: sum(who == n for _, who in items) for n in names}
  if len(names) < 2 or min(counts.values()) < 3:
    few = [n for n, c in counts.items() if c < 3]
    raise UserError(f"{path}: need at least 2 people with 3 or more images each "
                    f"(found {len(names)} people; too few images: {', '.join(few) or 'none'}); "
                    "add images")
  index = {n: i for i, n in enumerate(names)}
  x = np.stack([resize(_read_image(p).astype(np.float32) / 255.0, (height, width),
                       anti_aliasing=True) for p, _ in items]).astype(np.float32)
  y = np.array([index[who] for _, who in items], np.int32)
  return IdentityData(x=x, y=y, class_names=names, files=[str(p) for p, _ in items],
                      layout=layout, source=str(root))
