"""The pictures a researcher looks at, written as PNG (matplotlib, headless Agg backend)."""

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxml.io import atomic_path  # noqa: E402


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
  """images: f[n, H, W, 1 or 3] in [0, 1], shown with a title each (e.g. 'pred 3 / true 5')."""
  n = len(images)
  rows = max(1, -(-n // cols))
  fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for ax, img, t in zip(axes.flat, images, titles):
    ax.imshow(np.squeeze(img), cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
    ax.set_title(t, fontsize=7)
  if title:
    fig.suptitle(title)
  _save(fig, path)


def filters_grid(w, path, title: str = "") -> None:
  """First-layer kernels w: f[k, k, c_in, c_out]; one tile per output channel (channel mean)."""
  w = np.asarray(w).mean(axis=2)  # [k, k, c_out]
  w = (w - w.min()) / max(w.max() - w.min(), 1e-12)
  tiles = np.moveaxis(w, -1, 0)[..., None]
  image_grid(tiles, [str(i) for i in range(len(tiles))], path, title, cols=min(8, len(tiles)))
