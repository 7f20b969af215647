"""Face data (crops, Yale names, directory layouts) and both face experiments end to end."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxml.data import faces
from jaxml.errors import UserError
from tests.test_run_cli import assert_one_line_error, run_cli

YALE_CONDITIONS = ("centerlight", "glasses", "happy", "leftlight", "noglasses", "normal")


def synthetic_subject(subject: int, variant: int, rng, size=(60, 80)) -> np.ndarray:
  """A 'face' of a synthetic subject: a subject-specific arrangement of a disc and a bar on a
  grey background, jittered and re-lit per variant. uint8[H, W]."""
  h, w = size
  yy, xx = np.mgrid[:h, :w]
  cy, cx = h / 2 + rng.integers(-2, 3), w / 2 + rng.integers(-2, 3)
  angle = 2 * np.pi * subject / 7
  img = 0.3 + 0.1 * rng.random() + 0.002 * variant * (xx - w / 2)  # lighting gradient
  disc = (yy - cy - 12 * np.sin(angle)) ** 2 + (xx - cx - 12 * np.cos(angle)) ** 2 < 64
  img = np.where(disc, 0.9, img)
  bar_row = int(cy + (subject % 3 - 1) * 10)
  img[bar_row:bar_row + 3 + subject % 2 * 3, int(cx) - 15:int(cx) + 15] = 0.05
  img = img + rng.normal(0, 0.03, img.shape)
  return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_yale_dir(root, n_subjects=4, conditions=YALE_CONDITIONS, seed=0):
  """subject01.centerlight, ... as extension-less GIFs (as Yale ships them), plus a readme."""
  rng = np.random.default_rng(seed)
  root.mkdir(parents=True, exist_ok=True)
  for s in range(1, n_subjects + 1):
    for v, cond in enumerate(conditions):
      Image.fromarray(synthetic_subject(s, v, rng)).save(root / f"subject{s:02d}.{cond}",
                                                         format="GIF")
  (root / "Readme.txt").write_text("not an image")
  return root


@pytest.mark.parametrize("name, expected", [
    ("subject01.happy", (1, "happy")),
    ("subject15.centerlight", (15, "centerlight")),
    ("subject07.glasses.gif", (7, "glasses")),
    ("Subject03.GIF", (3, "")),
    ("subject02.sleepy.PNG", (2, "sleepy")),
    ("subject1.wink", (1, "wink")),
    ("Readme.txt", None),
    ("subjectA.happy", None),
    ("subject01", None),
    ("my_subject01.happy", None),
])
def test_parse_yale_name(name, expected):
  assert faces.parse_yale_name(name) == expected


def test_load_yale_layout(tmp_path):
  d = write_yale_dir(tmp_path / "yale", n_subjects=3)
  data = faces.load_identities(str(d), height=20, width=24)
  assert data.layout == "yale" and data.class_names == ["subject01", "subject02", "subject03"]
  assert data.x.shape == (18, 20, 24) and data.x.dtype == np.float32
  assert 0 <= data.x.min() and data.x.max() <= 1
  np.testing.assert_array_equal(np.bincount(data.y), [6, 6, 6])
  for f, y in zip(data.files, data.y):  # the label is the number in the file name
    assert faces.parse_yale_name(f.split("/")[-1])[0] == y + 1


def test_load_folder_layout_and_bad_directories(tmp_path):
  rng = np.random.default_rng(1)
  for i, person in enumerate(["alice", "bob"]):
    (tmp_path / "people" / person).mkdir(parents=True)
    for k in range(3):
      Image.fromarray(synthetic_subject(i, k, rng)).save(tmp_path / "people" / person / f"{k}.png")
  data = faces.load_identities(str(tmp_path / "people"), height=16, width=16)
  assert data.layout == "folders" and data.class_names == ["alice", "bob"]
  np.testing.assert_array_equal(data.y, [0, 0, 0, 1, 1, 1])

  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="neither Yale-named files"):
    faces.load_identities(str(tmp_path / "empty"), height=16, width=16)
  with pytest.raises(UserError, match="--data_path=DIR"):
    faces.load_identities(None, height=16, width=16)
  (tmp_path / "people" / "carol").mkdir()
  Image.fromarray(synthetic_subject(3, 0, rng)).save(tmp_path / "people" / "carol" / "0.png")
  with pytest.raises(UserError, match="too few images: carol"):
    faces.load_identities(str(tmp_path / "people"), height=16, width=16)
  bad = write_yale_dir(tmp_path / "corrupt", n_subjects=2)
  (bad / "subject02.happy").write_bytes(b"GIF89a truncated")
  with pytest.raises(UserError, match="cannot read image .*subject02.happy"):
    faces.load_identities(str(bad), height=16, width=16)


def test_face_crops_and_normalisation():
  crops = faces.face_crops(30, seed=0)
  assert crops["x"].shape == (230, 25, 25) and crops["x"].dtype == np.float32
  assert crops["y"].sum() == 100 and (crops["y"][crops["group"] == "lfw face"] == 1).all()
  assert "camera" not in set(crops["group"]) and "astronaut" not in set(crops["group"])
  assert 0 <= crops["x"].min() and crops["x"].max() <= 1
  z = faces.normalize_crops(crops["x"][:5])
  np.testing.assert_allclose(z.mean(axis=(1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(z.std(axis=(1, 2)), 1, atol=1e-4)
  flat = faces.normalize_crops(np.full((1, 25, 25), 0.5, np.float32))
  assert np.isfinite(flat).all() and np.abs(flat).max() == 0  # no division by ~0


def test_face_detect_tiny_end_to_end(tmp_path):
  photo = tmp_path / "photo.png"  # a small photo keeps the pyramid short
  Image.fromarray(faces.load_photo(None)[0][::2, ::2].__mul__(255).astype(np.uint8)).save(photo)
  proc = run_cli("--exp=face_detect", "--tiny", f"--workdir={tmp_path / 'run'}",
                 f"--data_path={photo}", "--config.min_face=60", "--config.max_face=100")
  assert proc.returncode == 0, proc.stderr[-2000:]
  res = json.loads((tmp_path / "run" / "results.json").read_text())
  m = res["metrics"]
  assert 0.5 <= m["test_accuracy"] <= 1 and isinstance(m["detections"], list)
  for d in m["detections"]:
    x0, y0, x1, y1 = d["box"]
    assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256 and 0 <= d["score"] <= 1
  for png in ("detections.png", "test_errors.png", "confusion_test.png"):
    assert (tmp_path / "run" / png).stat().st_size > 0
  with pytest.raises(UserError, match="is not a file"):
    faces.load_photo(str(tmp_path / "nope.png"))
  (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
  with pytest.raises(UserError, match="cannot read image"):
    faces.load_photo(str(tmp_path / "bad.png"))


def test_face_recognition_tiny_end_to_end(tmp_path):
  d = write_yale_dir(tmp_path / "yale", n_subjects=4)
  proc = run_cli("--exp=face_recognition", "--tiny", f"--workdir={tmp_path / 'run'}",
                 f"--data_path={d}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  m = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
  for k in ("test_accuracy", "eigenfaces_test_accuracy", "fisherfaces_test_accuracy"):
    assert 0 <= m[k] <= 1, k
  # Shapes this distinct are easy for the classical baselines even on 4 training images each.
  assert m["eigenfaces_test_accuracy"] == 1.0 and m["fisherfaces_test_accuracy"] == 1.0
  for png in ("confusion_test.png", "confusion_eigenfaces.png", "confusion_fisherfaces.png",
              "test_examples.png"):
    assert (tmp_path / "run" / png).stat().st_size > 0
  missing = run_cli("--exp=face_recognition", "--tiny", f"--workdir={tmp_path / 'bad'}")
  assert_one_line_error(missing, "needs --data_path=DIR")
  assert not (tmp_path / "bad" / "results.json").exists()
