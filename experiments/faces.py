"""Faces with CNNs: face detection on photos (`face_detect`), face recognition (`face_recognition`).

    python -m experiments.run --exp=face_detect                        # astronaut photo
    python -m experiments.run --exp=face_detect --data_path=photo.jpg  # any photo
    python -m experiments.run --exp=face_recognition --data_path=yalefaces/

The seed trained its MNIST CNN on Yale faces, 20% for training and 80% for testing, and got
0.51; it had no detector. Here:

face_detect. The seed CNN (conv32-pool-conv64-pool-dense1024) as a 25x25 face/non-face
classifier on lfw_subset's 100 faces and 100 non-faces plus random crops of face-free bundled
photos; a fixed stratified 20% of those crops (split_seed, independent of --seed) is the held-out
test set. Training crops are mirrored (doubling them) and randomly shifted/rotated/scaled on the
device. Every crop is standardised on its own (mean 0, std 1), so brightness does not matter.
Then the classifier is scanned over an image pyramid of the photo (windows from min_face to
max_face pixels, stride `stride` pixels at each level) and greedy NMS keeps the best boxes.

face_recognition. Protocol: a stratified per-subject split, fixed by split_seed: test_fraction
of each subject's images (Yale: 3 of 11) is the test set; of the rest, one image per subject
(val_fraction) is the CNN's validation set (best epoch), and the baselines fit on all non-test
images. Baselines: Eigenfaces (PCA + 1-nearest-neighbour, Turk & Pentland 1991) and Fisherfaces
(PCA to n - c dimensions, then LDA, Belhumeur et al. 1997), using jaxml.classical.fisher.
The seed's 20% train / 80% test protocol is `--config.test_fraction=0.8` (Yale: 2 images per
subject left, 1 for training and 1 for validation).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from skimage.transform import resize

from experiments import mnist_cnn
from experiments.base import Experiment, ReportInfo, RunContext, first_existing
from jaxml import config as config_lib
from jaxml import detect, plots
from jaxml.augment import random_affine
from jaxml.classical.fisher import lda_decision, lda_fit
from jaxml.classical.pca import pca_fit, pca_transform
from jaxml.config import require
from jaxml.data import faces
from jaxml.data.splits import stratified_holdout
from jaxml.models import cnn
from jaxml.pipeline import make_predict, train_classifier


@dataclasses.dataclass(frozen=True)
class CNNConfig(mnist_cnn.Config):
  """The CNN (arch, pool, activation, dropout, augmentation: as for MNIST) and its training,
  shared by both experiments; the fields below are the ones added or set differently here."""
  augment_shift: float = 1.5        # random shifts of training images, in pixels (0 = off)
  augment_rotate: float = 8.0       # random rotations, degrees either way (0 = off)
  augment_scale: float = 0.08       # random scaling by a factor in [1 - s, 1 + s] (0 = off)
  test_fraction: float = 0.2        # held-out test share, stratified by class
  split_seed: int = 0               # fixes the test split (not --seed), so runs share it
  learning_rate: float = 1e-3       # peak, cosine-decayed to 0
  batch_size: int = 64
  val_fraction: float = 0.1         # of the non-test data, for choosing the epoch


def _validate_cnn(cfg: CNNConfig) -> None:
  mnist_cnn.validate(cfg)
  require(0 < cfg.test_fraction < 1, "test_fraction", "in (0, 1)", cfg.test_fraction)


def _augment(cfg: CNNConfig):
  if not (cfg.augment_shift or cfg.augment_rotate or cfg.augment_scale):
    return None
  return functools.partial(random_affine, max_shift=cfg.augment_shift,
                           max_rotate_deg=cfg.augment_rotate, max_scale=cfg.augment_scale)


def _train_cnn(cfg: CNNConfig, ctx: RunContext, splits: dict, class_names, title: str,
               data_note: dict, not_training: tuple[str, ...] = ()):
  """train_classifier with jaxml.models.cnn on splits of f32[n, H, W, 1] images.

  `not_training` names config fields that do not change the fit (detection settings): the
  checkpoint's signature leaves them out, so a rerun with another threshold reuses the fit."""
  shape = splits["train"][0].shape[1:]
  signed = {k: v for k, v in config_lib.to_dict(cfg).items() if k not in not_training}
  return train_classifier(
      cfg, splits=splits, class_names=class_names,
      init_fn=lambda k: cnn.init(k, cfg, input_shape=shape, n_classes=len(class_names)),
      apply_fn=lambda p, x, *, train, key: cnn.apply(p, x, cfg=cfg, train=train, key=key),
      augment=_augment(cfg), key=jax.random.key(ctx.seed), workdir=ctx.workdir, log=ctx.log,
      restart=ctx.restart,
      signature={"config": signed, "seed": ctx.seed, "data": data_note},
      title=title)


def _three_way(y: np.ndarray, cfg: CNNConfig, seed: int):
  """Indices (train, val, test): test fixed by cfg.split_seed, val (and the train_limit
  subset) drawn with --seed."""
  rest, test = stratified_holdout(y, cfg.test_fraction, cfg.split_seed)
  keep, val = stratified_holdout(y[rest], cfg.val_fraction, seed)
  train = rest[keep]
  if 0 < cfg.train_limit < len(train):  # a stratified subset, for learning curves
    train = train[stratified_holdout(y[train], 1 - cfg.train_limit / len(train), seed)[0]]
  return train, rest[val], test


# ============================================================================ face_detect
@dataclasses.dataclass(frozen=True)
class DetectConfig(CNNConfig):
  """Face/non-face classifier and sliding-window detector."""
  photo_negatives: int = 3000       # extra non-face crops from face-free bundled photos
  hard_negatives: int = 3000        # top-scoring windows there, added for a 2nd fit (0 = off)
  epochs: int = 12                  # the cosine schedule's length (each fit)
  min_face: float = 40.0            # smallest face searched for, photo pixels
  max_face: float = 320.0           # largest face searched for, photo pixels
  scale_step: float = 1.2           # ratio of successive window sizes in the pyramid
  stride: int = 2                   # window step at each pyramid level, in 25x25-window pixels
  threshold: float = 0.9            # face probability a window needs to be a detection
  nms_iou: float = 0.3              # NMS drops boxes overlapping a better one by more than this
  containment: float = 0.6          # ... or with more than this share of the smaller box inside
  min_neighbours: int = 3           # windows above threshold a detection needs around it
  max_detections: int = 20          # at most this many boxes after NMS


# Settings used only after training: changing them reuses the checkpointed fits.
DETECTION_ONLY = ("threshold", "nms_iou", "containment", "min_neighbours", "max_detections")


def detect_default() -> DetectConfig:
  return DetectConfig()


def detect_tiny(cfg: DetectConfig) -> DetectConfig:
  return dataclasses.replace(cfg, arch="lenet5", dropout=0.0, epochs=1, max_steps=0,
                             batch_size=16, photo_negatives=100,
                             hard_negatives=30, min_face=120.0, max_face=200.0, stride=4,
                             min_neighbours=1)


def detect_validate(cfg: DetectConfig) -> None:
  _validate_cnn(cfg)
  require(cfg.photo_negatives >= 0, "photo_negatives", ">= 0", cfg.photo_negatives)
  require(cfg.hard_negatives >= 0, "hard_negatives", ">= 0 (0 = off)", cfg.hard_negatives)
  require(faces.FACE_WINDOW <= cfg.min_face <= cfg.max_face, "min_face",
          f"between {faces.FACE_WINDOW} and max_face", cfg.min_face)
  require(cfg.scale_step > 1.01, "scale_step", "> 1.01", cfg.scale_step)
  require(1 <= cfg.stride <= faces.FACE_WINDOW, "stride", "1..25 pixels", cfg.stride)
  require(0 <= cfg.threshold <= 1, "threshold", "a probability in [0, 1]", cfg.threshold)
  require(0 <= cfg.nms_iou <= 1, "nms_iou", "in [0, 1]", cfg.nms_iou)
  require(cfg.max_detections >= 1, "max_detections", ">= 1", cfg.max_detections)
  require(0 < cfg.containment <= 1, "containment", "in (0, 1] (1 = IoU only)", cfg.containment)
  require(cfg.min_neighbours >= 1, "min_neighbours", ">= 1", cfg.min_neighbours)


def _face_probability(predict, params):
  """f32[n, 25, 25, 1] raw windows in [0, 1] -> f[n] probability of 'face'."""
  def score(windows):
    logits = predict(params, faces.normalize_crops(windows))
    return np.asarray(jax.nn.softmax(jnp.asarray(logits), -1)[:, 1])
  return score


def _mine_hard_negatives(score, n: int, cfg: DetectConfig) -> np.ndarray:
  """The n highest-scoring windows over all face-free photos: f32[n, 25, 25] in [0, 1].
  Bootstrapping (Sung & Poggio 1998): random crops rarely look like faces, the detector's own
  false alarms do."""
  windows, scores = [], []
  for photo in faces.negative_photos().values():
    shrink = 512 / max(photo.shape)  # bounds the window count on the large photos
    if shrink < 1:
      photo = resize(photo, (round(photo.shape[0] * shrink), round(photo.shape[1] * shrink)),
                     anti_aliasing=True)
    p, _ = detect.pyramid_windows(photo, window=faces.FACE_WINDOW, stride=cfg.stride * 2,
                                  min_size=cfg.min_face, max_size=cfg.max_face,
                                  step=cfg.scale_step * 1.2)
    s = score(p[..., None])
    top = np.argsort(-s)[: n]
    windows.append(p[top])
    scores.append(s[top])
  windows, scores = np.concatenate(windows), np.concatenate(scores)
  return windows[np.argsort(-scores)[:n]]


def run_detect(cfg: DetectConfig, ctx: RunContext) -> dict:
  photo, photo_name = faces.load_photo(ctx.data_path)
  crops = faces.face_crops(cfg.photo_negatives, seed=cfg.split_seed)
  x, y = crops["x"], crops["y"]
  tr, va, te = _three_way(y, cfg, ctx.seed)
  # Mirror images of the training crops only: a flipped face is a face, and the test set
  # must stay the crops as given.
  x_tr = np.concatenate([x[tr], x[tr][:, :, ::-1]])
  y_tr = np.concatenate([y[tr], y[tr]])
  prep = lambda a: faces.normalize_crops(a)[..., None]
  splits = {"train": (prep(x_tr), y_tr), "val": (prep(x[va]), y[va]),
            "test": (prep(x[te]), y[te])}
  note = {"crops": len(y), "faces": int(y.sum()), "photo_negatives": cfg.photo_negatives,
          "n_train": len(y_tr), "n_val": len(va), "n_test": len(te), "photo": photo_name}
  ctx.log(f"data: {len(y)} crops ({int(y.sum())} faces), train {len(y_tr)} (with mirrors) / "
          f"val {len(va)} / test {len(te)}; photo {photo_name} {photo.shape[1]}x{photo.shape[0]}")
  names = ["non-face", "face"]
  # With hard-negative mining the first fit is a means to an end: its files go one level down.
  first_ctx = (dataclasses.replace(ctx, workdir=ctx.workdir / "before_hard_negatives")
               if cfg.hard_negatives else ctx)
  out, extras = _train_cnn(cfg, first_ctx, splits, names, "face / non-face CNN", note,
                           DETECTION_ONLY)
  predict = make_predict(lambda p, b: cnn.apply(p, b, cfg=cfg), cfg.eval_batch_size)
  if cfg.hard_negatives:
    hard = _mine_hard_negatives(_face_probability(predict, extras["params"]),
                                cfg.hard_negatives, cfg)
    ctx.log(f"hard negatives: {len(hard)} windows from the face-free photos; fitting again")
    x_tr = np.concatenate([x_tr, hard, hard[:, :, ::-1]])
    y_tr = np.concatenate([y_tr, np.zeros(2 * len(hard), np.int32)])
    splits["train"] = (prep(x_tr), y_tr)
    note = dict(note, n_train=len(y_tr), hard_negatives=cfg.hard_negatives)
    first = out["metrics"]
    out, extras = _train_cnn(cfg, ctx, splits, names, "face / non-face CNN + hard negatives",
                             note, DETECTION_ONLY)
    out["metrics"]["before_hard_negatives_test_accuracy"] = first["test_accuracy"]
  score = _face_probability(predict, extras["params"])
  boxes, scores = detect.detect(score, photo, window=faces.FACE_WINDOW, stride=cfg.stride,
                                min_size=cfg.min_face, max_size=cfg.max_face,
                                step=cfg.scale_step, threshold=cfg.threshold,
                                iou_threshold=cfg.nms_iou, max_boxes=cfg.max_detections,
                                containment_threshold=cfg.containment,
                                min_neighbours=cfg.min_neighbours)
  detections = [{"box": [round(float(v), 1) for v in b], "score": round(float(s), 4)}
                for b, s in zip(boxes, scores)]
  ctx.log(f"{len(detections)} detections: " + "; ".join(
      f"{d['box']} p={d['score']:.3f}" for d in detections[:5]))
  plots.boxes_on_image(photo, boxes, scores, ctx.workdir / "detections.png",
                       f"{photo_name}: {len(boxes)} detection(s) (p >= {cfg.threshold}, NMS "
                       f"IoU {cfg.nms_iou}, >= {cfg.min_neighbours} windows each)")
  _error_grid(x[te], y[te], extras["logits"]["test"], ctx.workdir / "test_errors.png")
  # 97% of the crops are non-faces, so accuracy alone flatters; report each class too.
  pred = extras["logits"]["test"].argmax(-1)
  out["metrics"].update(
      test_face_recall=float((pred[y[te] == 1] == 1).mean()),
      test_nonface_accuracy=float((pred[y[te] == 0] == 0).mean()),
      test_lfw_accuracy=float((pred == y[te])[np.char.startswith(crops["group"][te],
                                                                 "lfw")].mean()))
  out["metrics"]["detections"] = detections
  out["data"] = note
  return out


def _error_grid(x, y, logits, path) -> None:
  """The held-out crops the CNN got wrong, worst first; if fewer than 10, the least sure right
  ones fill the grid, so a researcher always sees where the boundary lies."""
  p_face = np.asarray(jax.nn.softmax(jnp.asarray(logits), -1)[:, 1])
  p_true = np.where(y == 1, p_face, 1 - p_face)
  order = np.argsort(p_true)[:20]
  label = lambda i: ("FN" if y[i] else "FP") if p_true[i] < 0.5 else ("face" if y[i] else "non")
  n_wrong = int((p_true < 0.5).sum())
  plots.image_grid(x[order][..., None], [f"{label(i)} p={p_face[i]:.2f}" for i in order], path,
                   f"held-out crops, least sure first ({n_wrong} error(s): FP = non-face called "
                   f"face, FN = missed face; p = P(face))")


# ============================================================================ face_recognition
@dataclasses.dataclass(frozen=True)
class RecognitionConfig(CNNConfig):
  """Face identification on a directory of identity-labelled faces."""
  height: int = 48                  # images resized to height x width pixels (Yale: 243x320)
  width: int = 64
  test_fraction: float = 0.25       # per subject (Yale: 3 of 11 images)
  val_fraction: float = 0.125       # of the rest, per subject (Yale: 1 of 8) for the CNN's epoch
  augment_shift: float = 3.0        # pixels; faces in Yale are not aligned exactly
  batch_size: int = 16
  epochs: int = 60                  # the cosine schedule's length
  eigen_components: int = 50        # Eigenfaces' PCA dimensions (capped at n_train - 1)
  fisher_shrinkage: float = 1e-3    # LDA within-class shrinkage after PCA (keeps it invertible)


def recognition_default() -> RecognitionConfig:
  return RecognitionConfig()


def recognition_tiny(cfg: RecognitionConfig) -> RecognitionConfig:
  return dataclasses.replace(cfg, epochs=2, max_steps=0, batch_size=8, height=24, width=32)


def recognition_validate(cfg: RecognitionConfig) -> None:
  _validate_cnn(cfg)
  require(cfg.height >= 16 and cfg.width >= 16, "height", "height and width >= 16 pixels",
          (cfg.height, cfg.width))
  require(cfg.eigen_components >= 1, "eigen_components", ">= 1", cfg.eigen_components)
  require(0 <= cfg.fisher_shrinkage < 1, "fisher_shrinkage", "in [0, 1)", cfg.fisher_shrinkage)


def eigenfaces_predict(x_train, y_train, x_test, k: int) -> np.ndarray:
  """PCA to k dimensions, then the label of the nearest training face: int[n_test]."""
  pca = pca_fit(x_train, k)
  a, b = pca_transform(pca, x_train), pca_transform(pca, x_test)
  d2 = (b * b).sum(1)[:, None] - 2 * b @ a.T + (a * a).sum(1)[None, :]
  return y_train[d2.argmin(1)]


def fisherfaces_predict(x_train, y_train, x_test, n_classes: int, shrinkage: float) -> np.ndarray:
  """PCA to n - c dimensions (where the within-class scatter is full rank), then LDA's
  shared-covariance Gaussian rule in the c - 1 discriminant directions: int[n_test]."""
  pca = pca_fit(x_train, len(x_train) - n_classes)
  a, b = pca_transform(pca, x_train), pca_transform(pca, x_test)
  params = lda_fit(jnp.asarray(a, jnp.float32), jnp.asarray(y_train), n_classes=n_classes,
                   shrinkage=shrinkage)
  return np.asarray(lda_decision(params, jnp.asarray(b, jnp.float32)).argmax(-1))


def run_recognition(cfg: RecognitionConfig, ctx: RunContext) -> dict:
  data = faces.load_identities(ctx.data_path, height=cfg.height, width=cfg.width)
  tr, va, te = _three_way(data.y, cfg, ctx.seed)
  prep = lambda i: faces.normalize_crops(data.x[i])[..., None]
  splits = {"train": (prep(tr), data.y[tr]), "val": (prep(va), data.y[va]),
            "test": (prep(te), data.y[te])}
  note = dict(data.describe(), n_train=len(tr), n_val=len(va), n_test=len(te),
              protocol=f"stratified per subject: {cfg.test_fraction:g} test (split_seed "
                       f"{cfg.split_seed}), {cfg.val_fraction:g} of the rest validation")
  ctx.log(f"data: {data.layout} layout, {len(data.class_names)} people, {len(data.y)} images; "
          f"train {len(tr)} / val {len(va)} / test {len(te)}")
  out, extras = _train_cnn(cfg, ctx, splits, data.class_names, "face recognition CNN", note)

  fit_idx = np.sort(np.concatenate([tr, va]))  # the baselines need no validation set
  flat = data.x.reshape(len(data.x), -1).astype(np.float64)
  n_classes = len(data.class_names)
  preds = {"eigenfaces": eigenfaces_predict(flat[fit_idx], data.y[fit_idx], flat[te],
                                            cfg.eigen_components),
           "fisherfaces": fisherfaces_predict(flat[fit_idx], data.y[fit_idx], flat[te],
                                              n_classes, cfg.fisher_shrinkage)}
  y_te = data.y[te]
  for name, p in preds.items():
    acc = float((p == y_te).mean())
    out["metrics"][f"{name}_test_accuracy"] = acc
    cm = plots.confusion_matrix(y_te, p, n_classes)
    out["confusion"][name] = cm.tolist()
    plots.plot_confusion(cm, data.class_names, ctx.workdir / f"confusion_{name}.png",
                         f"{name} test (accuracy {acc:.3f})")
  m = out["metrics"]
  ctx.log(f"test accuracy: CNN {m['test_accuracy']:.4f}, Eigenfaces "
          f"{m['eigenfaces_test_accuracy']:.4f}, Fisherfaces {m['fisherfaces_test_accuracy']:.4f}")
  # The test faces, errors first, titled CNN prediction / truth.
  cnn_pred = extras["logits"]["test"].argmax(-1)
  order = np.argsort(cnn_pred == y_te, kind="stable")[:30]
  names = data.class_names
  plots.image_grid(data.x[te][order][..., None],
                   [f"{'WRONG ' if cnn_pred[i] != y_te[i] else ''}{names[cnn_pred[i]]}\n"
                    f"true {names[y_te[i]]}" for i in order],
                   ctx.workdir / "test_examples.png",
                   f"test faces: CNN prediction, then truth ({int((cnn_pred != y_te).sum())} "
                   f"error(s), shown first)", cols=6)
  out["data"] = note
  return out


def detect_headline(results: dict) -> str:
  m, d = results["metrics"], results.get("data", {})
  dets = m.get("detections", [])
  shown = "; ".join(f"[{', '.join(f'{v:.0f}' for v in x['box'])}] p {x['score']:.3f}"
                    for x in dets[:3])
  return (f"held-out crops {m['test_accuracy']:.3f} (face recall "
          f"{m.get('test_face_recall', float('nan')):.2f}); {len(dets)} detection(s)"
          + (f": {shown}" if shown else ""))


def recognition_headline(results: dict) -> str:
  m = results["metrics"]
  return (f"CNN {m['test_accuracy']:.3f}, Eigenfaces {m['eigenfaces_test_accuracy']:.3f}, "
          f"Fisherfaces {m['fisherfaces_test_accuracy']:.3f}")


DETECT = Experiment(name="face_detect",
                    description="25x25 face/non-face CNN + multi-scale sliding window + NMS",
                    presets={"default": detect_default()}, tiny=detect_tiny,
                    validate=detect_validate, run=run_detect,
                    report=ReportInfo(
                        project="000_0ca520ce5284708a.txt",
                        seed_figure="- (the seed runs no detector; its face task is "
                                    "recognition, below)",
                        no_seed_preset="the seed runs no detector to copy",
                        differences="Not in the seed. Trained on skimage's lfw_subset crops plus "
                                    "crops of face-free bundled photos, detects on skimage's "
                                    "astronaut photo.",
                        key_figures=("detections.png",), headline=detect_headline,
                        typical_s=(0, 246, 0, 63)))
RECOGNITION = Experiment(name="face_recognition",
                         description="face identification: CNN vs Eigenfaces and Fisherfaces",
                         presets={"default": recognition_default()}, tiny=recognition_tiny,
                         validate=recognition_validate, run=run_recognition,
                         report=ReportInfo(
                             project="000_0ca520ce5284708a.txt",
                             seed_figure="0.51 (Yale faces, test)",
                             no_seed_preset="the seed's 1000 one-image SGD steps would be 1000 "
                                            "epochs with a checkpoint each here",
                             differences="Seed: Yale faces, 1000 one-image SGD steps. No "
                                         "labelled face set ships with any package: needs "
                                         "DATA_ROOT/yalefaces/. Our split holds out 3 test / 1 "
                                         "validation image per subject (the seed's 20% train / "
                                         "80% test is --config.test_fraction=0.8).",
                             key_figures=("test_examples.png",), headline=recognition_headline,
                             data=lambda root: first_existing(
                                 root, "yalefaces",
                                 missing="needs data: identity-labelled faces: the Yale faces "
                                         "(subject01.happy, ...) or one folder of images per "
                                         "person in DATA_ROOT/yalefaces/, and pass "
                                         "--data_root=DATA_ROOT"),
                             typical_s=(0, 224, 0, 30)))
