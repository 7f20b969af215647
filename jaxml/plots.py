"""The pictures a researcher looks at, written as PNG (matplotlib, headless Agg backend).

Every plot of every experiment lives here; an experiment chooses what to show and calls these.
"""

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxml.io import atomic_path


class _Pyplot:
  """matplotlib.pyplot, imported on first use: its import is a large share of a command line's
  start (a one-line error included; BUILD_NOTES "Gotchas"), and most never draw."""

  def __getattr__(self, name):
    import matplotlib
    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot
    return getattr(matplotlib.pyplot, name)


plt = _Pyplot()


def _save(fig, path) -> None:
  with atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
  plt.close(fig)


def training_curves(history: Sequence[dict], path, title: str = "") -> None:
  """Loss (per step and per epoch), accuracy, and validation error per epoch, side by side."""
  epochs = [r["epoch"] for r in history]
  has_acc = "train_accuracy" in history[0]
  fig, axes = plt.subplots(1, 3 if has_acc else 1, figsize=(15 if has_acc else 5.5, 4))
  axes = np.atleast_1d(axes)
  ax = axes[0]
  steps = [r.get("step_losses", []) for r in history]
  if all(steps):  # per-step training loss, faint, placed at fractional epochs
    xs = np.concatenate([e - 1 + (np.arange(len(s)) + 1) / len(s) for e, s in zip(epochs, steps)])
    ax.plot(xs, np.concatenate(steps), color="tab:blue", alpha=0.25, lw=0.7, label="train (step)")
  ax.plot(epochs, [r["train_loss"] for r in history], "o-", color="tab:blue", ms=3,
          label="train (epoch mean)")
  ax.plot(epochs, [r["val_loss"] for r in history], "o-", color="tab:orange", ms=3,
          label="validation")
  ax.set(xlabel="epoch", ylabel="cross-entropy (nats)", title="loss")
  ax.set_yscale("log")
  ax.legend()
  if has_acc:
    axes[1].plot(epochs, [r["train_accuracy"] for r in history], "o-", ms=3, label="train")
    axes[1].plot(epochs, [r["val_accuracy"] for r in history], "o-", ms=3, label="validation")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    axes[1].legend()
    axes[2].plot(epochs, [1 - r["val_accuracy"] for r in history], "o-", color="tab:red", ms=3)
    axes[2].set(xlabel="epoch", ylabel="error rate", title="validation error")
  for ax in axes:
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title, y=1.03)
  _save(fig, path)


def _mean_band(histories: Sequence[Sequence[dict]], key: str):
  """(epochs, mean, min, max) of `key` over the seeds' histories, at each epoch over the seeds
  that trained it (a seed that stopped early drops out of the later epochs)."""
  by_epoch = {}
  for hist in histories:
    for r in hist:
      by_epoch.setdefault(r["epoch"], []).append(r[key])
  epochs = sorted(by_epoch)
  vals = [np.asarray(by_epoch[e], np.float64) for e in epochs]
  return (np.array(epochs), np.array([v.mean() for v in vals]), np.array([v.min() for v in vals]),
          np.array([v.max() for v in vals]))


def _band(ax, histories, key, label, color, transform=lambda v: v, style="o-"):
  epochs, mean, lo, hi = _mean_band(histories, key)
  mean, lo, hi = transform(mean), transform(lo), transform(hi)
  ax.plot(epochs, mean, style, color=color, ms=3, label=f"{label} (mean)")
  ax.fill_between(epochs, np.minimum(lo, hi), np.maximum(lo, hi), color=color, alpha=0.2,
                  lw=0, label=f"{label} (min-max)")


def seed_curves(histories: Sequence[Sequence[dict]], path, title: str = "") -> None:
  """`training_curves` of several seeds: the mean over seeds per epoch with a min-max band
  (at each epoch over the seeds still training, so the mean steps where one stops early)."""
  has_acc = "train_accuracy" in histories[0][0]
  fig, axes = plt.subplots(1, 3 if has_acc else 1, figsize=(15 if has_acc else 5.5, 4))
  axes = np.atleast_1d(axes)
  _band(axes[0], histories, "train_loss", "train", "tab:blue")
  _band(axes[0], histories, "val_loss", "validation", "tab:orange")
  axes[0].set(xlabel="epoch", ylabel="cross-entropy (nats)", title="loss")
  axes[0].set_yscale("log")
  if has_acc:
    _band(axes[1], histories, "train_accuracy", "train", "tab:blue")
    _band(axes[1], histories, "val_accuracy", "validation", "tab:orange")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    _band(axes[2], histories, "val_accuracy", "validation", "tab:red", lambda v: 1 - v)
    axes[2].set(xlabel="epoch", ylabel="error rate", title="validation error")
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(f"{title}: mean over {len(histories)} seeds, band min-max".strip(": "), y=1.03)
  _save(fig, path)


def confusion_matrix(labels, predictions, n_classes: int) -> np.ndarray:
  """int[true, predicted] counts."""
  cm = np.zeros((n_classes, n_classes), np.int64)
  np.add.at(cm, (np.asarray(labels), np.asarray(predictions)), 1)
  return cm


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path, title: str = "") -> None:
  """Row-normalised colours with raw counts written in each cell."""
  n = len(class_names)
  rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
  fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.6 + 0.7 * n))
  ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
  for i in range(n):
    for j in range(n):
      ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
              color="white" if rates[i, j] > 0.5 else "black")
  ax.set_xticks(range(n), class_names, rotation=45, ha="right")
  ax.set_yticks(range(n), class_names)
  ax.set(xlabel="predicted", ylabel="true", title=title)
  _save(fig, Path(path))


def image_grid(images, titles: Sequence[str], path, title: str = "", cols: int = 10) -> None:
  """images: f[n, H, W, 1 or 3] in [0, 1], shown with a title each (e.g. 'pred 3 / true 5').

  Drawn as one mosaic in one axes, each tile 1.2 inches wide with its title above it: one
  subplot per image was several times slower to draw (BUILD_NOTES "Gotchas")."""
  imgs = np.clip(np.asarray(images, np.float32), 0, 1)
  if imgs.shape[-1] == 1:
    imgs = np.repeat(imgs, 3, axis=-1)
  n, h, w = imgs.shape[:3]
  cols = max(1, min(cols, n))
  rows = max(1, -(-n // cols))
  lines = max([str(t).count("\n") + 1 for t in titles] or [1])
  per_inch = w / 1.2                             # data units (pixels of the tiles) per inch
  gap = max(1, round(0.1 * per_inch))            # between columns
  head = max(1, round((0.04 + 0.14 * lines) * per_inch))  # the title lines above each tile
  cell_w, cell_h = w + gap, h + head
  canvas = np.ones((rows * cell_h, cols * cell_w, 3), np.float32)  # white between tiles
  fig = plt.figure(figsize=(canvas.shape[1] / per_inch, canvas.shape[0] / per_inch))
  ax = fig.add_axes((0, 0, 1, 1))
  for i, (img, t) in enumerate(zip(imgs, titles)):
    r, c = divmod(i, cols)
    y0, x0 = r * cell_h + head, c * cell_w
    canvas[y0:y0 + h, x0:x0 + w] = img
    ax.text(x0 + w / 2, y0 - 0.5, t, ha="center", va="bottom", fontsize=7)
  ax.imshow(canvas, interpolation="nearest", aspect="auto")
  ax.set_axis_off()
  if title:
    fig.suptitle(title, y=1 + 0.25 / fig.get_figheight())
  _save(fig, path)


def filters_grid(w, path, title: str = "") -> None:
  """First-layer kernels w: f[k, k, c_in, c_out]; one tile per output channel (channel mean)."""
  w = np.asarray(w).mean(axis=2)  # [k, k, c_out]
  w = (w - w.min()) / max(w.max() - w.min(), 1e-12)
  tiles = np.moveaxis(w, -1, 0)[..., None]
  image_grid(tiles, [str(i) for i in range(len(tiles))], path, title, cols=min(8, len(tiles)))


def bar_chart(values: dict, path, title: str = "", ylabel: str = "") -> None:
  """One bar per name, its value written above; the y axis starts 0.1 below the smallest."""
  names, vals = list(values), list(values.values())
  fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(names), 4))
  bars = ax.bar(range(len(names)), vals, color="tab:blue")
  ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
  for bar, a in zip(bars, vals):
    ax.text(bar.get_x() + bar.get_width() / 2, a + 0.005, f"{a:.3f}", ha="center", fontsize=8)
  ax.set(ylabel=ylabel, title=title, ylim=(max(0.0, min(vals) - 0.1), 1.0))
  ax.grid(axis="y", alpha=0.3)
  _save(fig, path)


def run_curves(histories: dict, path, *, title: str = "", ylabel: str = "loss",
               train_label: str = "train") -> None:
  """Train (solid) and validation (dashed) loss per epoch, one colour per run.

  histories: {run name: [{"epoch", "train_loss", "val_loss"}, ...]}, or {run name: [history
  per seed]} for several seeds: then the mean over seeds with a min-max band."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for (name, hist), color in zip(histories.items(), colors):
    if hist and isinstance(hist[0], list):  # several seeds
      _band(ax, hist, "train_loss", f"{name} {train_label}", color)
      _band(ax, hist, "val_loss", f"{name} validation", color, style="s--")
      continue
    epochs = [r["epoch"] for r in hist]
    ax.plot(epochs, [r["train_loss"] for r in hist], "o-", ms=2, color=color,
            label=f"{name} {train_label}")
    ax.plot(epochs, [r["val_loss"] for r in hist], "s--", ms=2, color=color,
            label=f"{name} validation")
  ax.set(xlabel="epoch", ylabel=ylabel, title=title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  _save(fig, path)


def labelled_points(xy, labels: Sequence[str], path, *, title: str = "", xlabel: str = "",
                    ylabel: str = "") -> None:
  """A scatter of xy: f[n, 2] with each point's label written beside it (e.g. a word map)."""
  xy = np.asarray(xy)
  fig, ax = plt.subplots(figsize=(13, 11))
  ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.4)
  for (px, py), label in zip(xy, labels):
    ax.annotate(label, (px, py), fontsize=7)
  ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
  _save(fig, path)


def boxes_on_image(image, boxes, scores, path, title: str = "") -> None:
  """A grey image f[H, W] in [0, 1] with boxes (x0, y0, x1, y1) and their scores drawn on it."""
  fig, ax = plt.subplots(figsize=(7, 7 * image.shape[0] / image.shape[1]))
  ax.imshow(image, cmap="gray", vmin=0, vmax=1)
  for (x0, y0, x1, y1), s in zip(boxes, scores):
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", lw=2))
    ax.text(x0, y0 - 3, f"{s:.2f}", color="lime", fontsize=9, va="bottom")
  ax.set_title(title, fontsize=9)
  ax.axis("off")
  _save(fig, path)


# ----------------------------------------------------------------------------- image mosaics
def mosaic(images, cols: int, pad: int = 1) -> np.ndarray:
  """images f[n, h, w] or f[n, h, w, 3] in [0, 1] -> one image, rows of `cols` tiles on white."""
  images = np.asarray(images)
  n, h, w = images.shape[:3]
  rows = -(-n // cols)
  out = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad) + images.shape[3:], np.float32)
  for i, im in enumerate(images):
    r, c = divmod(i, cols)
    out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = im
  return out


def filter_images(w) -> np.ndarray:
  """Dense weights w: f[P*P, units] -> f[units, P, P], each unit's weights scaled to [0, 1] by
  its own min and max (what a per-subplot imshow does)."""
  w = np.asarray(w, np.float64).T
  lo, hi = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
  w = (w - lo) / np.maximum(hi - lo, 1e-12)
  side = int(round(math.sqrt(w.shape[1])))
  return w.reshape(len(w), side, side)


def _show(ax, image, title: str = "") -> None:
  ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1,
            interpolation="nearest")
  ax.set_title(title, fontsize=9)
  ax.axis("off")


def mosaics(panels: Sequence[tuple[np.ndarray, str]], path, title: str = "") -> None:
  """Mosaic images (from `mosaic`) side by side, each with its title: [(image, title), ...]."""
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
  for ax, (image, t) in zip(axes[0], panels):
    _show(ax, image, t)
  if title:
    fig.suptitle(title)
  _save(fig, path)


def dense_filters(w, path, title: str = "") -> None:
  """Every unit of a dense layer on square inputs (w: f[P*P, units]) as a P x P tile."""
  tiles = filter_images(w)
  cols = math.ceil(math.sqrt(len(tiles)))
  fig, ax = plt.subplots(figsize=(0.55 * cols + 0.5, 0.55 * cols + 0.8))
  _show(ax, mosaic(tiles, cols), title)
  _save(fig, path)


def patches_before_after(before, after, path, titles: tuple[str, str], cols: int = 20) -> None:
  """Patches before (f[n, h, w, 3] RGB or f[n, h, w]) above, the same after (f[n, h, w]) below."""
  fig, axes = plt.subplots(2, 1, figsize=(12, 13))
  _show(axes[0], mosaic(np.clip(before, 0, 1), cols), titles[0])
  _show(axes[1], mosaic(after, cols), titles[1])
  _save(fig, path)


def reconstructions(x, recon, path, title: str = "", per_row: int = 10) -> None:
  """Rows of `per_row` inputs x: f[n, P*P], each row followed by its reconstructions."""
  x, recon = np.asarray(x), np.asarray(recon)
  side = int(round(math.sqrt(x.shape[1])))
  rows = []
  for s in range(0, len(x), per_row):
    rows += [x[s:s + per_row], recon[s:s + per_row]]
  tiles = np.concatenate([np.pad(r, ((0, per_row - len(r)), (0, 0)), constant_values=1)
                          for r in rows])
  fig, ax = plt.subplots(figsize=(0.8 * per_row, 0.85 * len(rows) + 0.6))
  _show(ax, mosaic(tiles.reshape(-1, side, side), per_row), title)
  _save(fig, path)


def cost_curves(history: Sequence[dict], path, title: str = "", ylabel: str = "J") -> None:
  """Train and held-out cost (keys train_J, val_J) per epoch or per iteration, log scale."""
  step = "epoch" if history and "epoch" in history[0] else "iteration"
  fig, ax = plt.subplots(figsize=(6, 4))
  xs = [r[step] for r in history]
  ax.plot(xs, [r["train_J"] for r in history], "o-", ms=2, label=f"train {ylabel}")
  ax.plot(xs, [r["val_J"] for r in history], "o-", ms=2, label=f"held-out {ylabel}")
  ax.set(xlabel=step, ylabel=ylabel, title=title, yscale="log")
  ax.grid(alpha=0.3)
  ax.legend()
  _save(fig, path)
