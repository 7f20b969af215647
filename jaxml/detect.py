"""Object detection with a window classifier: image pyramid, sliding windows, IoU and NMS.

A detector here is any `score_fn(windows f32[n, s, s, 1]) -> f32[n]` (the probability that a
window holds the object, e.g. a face/non-face CNN). `detect` runs it over every `window`-sized
patch, at `stride` pixels, of each level of an image pyramid, keeps scores above a threshold and
removes overlapping boxes by greedy non-max suppression. All functions are pure and work on
numpy arrays; boxes are f[n, 4] = (x0, y0, x1, y1) in the photo's pixel coordinates, x = column,
y = row, x1/y1 exclusive (a box covering pixels 0..24 is (0, 0, 25, 25)).
"""

import numpy as np
from skimage.transform import resize


def box_area(boxes: np.ndarray) -> np.ndarray:
  """boxes: f[..., 4] -> f[...]; degenerate (inverted) boxes have area 0."""
  return (np.clip(boxes[..., 2] - boxes[..., 0], 0, None)
          * np.clip(boxes[..., 3] - boxes[..., 1], 0, None))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Intersection over union of every pair: a: f[n, 4], b: f[m, 4] -> f[n, m] in [0, 1]."""
  a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
  lo = np.maximum(a[:, None, :2], b[None, :, :2])
  hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
  inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
  union = box_area(a)[:, None] + box_area(b)[None, :] - inter
  return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def containment(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Intersection over the smaller box's area, a: f[n, 4], b: f[m, 4] -> f[n, m]: 1 when one
  box lies inside the other, however different their sizes (where IoU can be small)."""
  a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
  lo = np.maximum(a[:, None, :2], b[None, :, :2])
  hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
  inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
  smaller = np.minimum(box_area(a)[:, None], box_area(b)[None, :])
  return np.where(smaller > 0, inter / np.maximum(smaller, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        max_boxes: int = 0, containment_threshold: float = 1.0) -> np.ndarray:
  """Greedy non-max suppression: int[k] indices of kept boxes, best score first.

  The best remaining box is kept and every box overlapping it by IoU > iou_threshold (or, when
  containment_threshold < 1, with more than that share of the smaller box inside the other:
  a window on part of the same object at another scale) dropped, until none remain (or
  `max_boxes` > 0 are kept). Ties keep the lower index, so the result does not depend on sort
  stability.
  """
  boxes, scores = np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1)
  order = np.lexsort((np.arange(len(scores)), -scores))
  keep = []
  while len(order) and (max_boxes <= 0 or len(keep) < max_boxes):
    i, order = order[0], order[1:]
    keep.append(i)
    drop = iou(boxes[i], boxes[order])[0] > iou_threshold
    if containment_threshold < 1:
      drop |= containment(boxes[i], boxes[order])[0] > containment_threshold
    order = order[~drop]
  return np.asarray(keep, np.int64)


def neighbour_counts(kept: np.ndarray, boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
  """int[k]: how many of `boxes` (f[n, 4], the windows above threshold, the kept ones among
  them) overlap each kept box (f[k, 4]) by IoU > iou_threshold. A real object fires at
  several neighbouring positions and scales; a chance pattern at few (Viola & Jones 2004,
  OpenCV's minNeighbors)."""
  return (iou(kept, boxes) > iou_threshold).sum(axis=1)


def pyramid_scales(height: int, width: int, *, window: int, min_size: float, max_size: float,
                   step: float) -> list[float]:
  """Down-scaling factors (<= 1 shrinks the photo) so that a `window`-pixel window covers
  objects from `min_size` to `max_size` photo pixels, each `step` times larger than the last.
  Sizes beyond the photo's shorter side are dropped."""
  sizes, s = [], float(min_size)
  while s <= min(max_size, height, width) + 1e-9:
    sizes.append(s)
    s *= step
  return [window / s for s in sizes]


def sliding_windows(image: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
  """Every window x window patch at `stride` pixels.

  Args:
    image: f[H, W] (grayscale).
  Returns:
    (patches f[n, window, window], boxes f[n, 4] in this image's pixel coordinates).
  """
  h, w = image.shape
  if h < window or w < window:
    return np.zeros((0, window, window), image.dtype), np.zeros((0, 4))
  view = np.lib.stride_tricks.sliding_window_view(image, (window, window))[::stride, ::stride]
  rows, cols = view.shape[:2]
  y0, x0 = np.meshgrid(np.arange(rows) * stride, np.arange(cols) * stride, indexing="ij")
  boxes = np.stack([x0, y0, x0 + window, y0 + window], -1).reshape(-1, 4).astype(np.float64)
  return view.reshape(-1, window, window), boxes


def pyramid_windows(image: np.ndarray, *, window: int, stride: int, min_size: float,
                    max_size: float, step: float) -> tuple[np.ndarray, np.ndarray]:
  """All windows of every pyramid level: (patches f32[n, window, window], boxes f[n, 4] in the
  original photo's coordinates). image: f[H, W] grayscale in [0, 1]."""
  h, w = image.shape
  patches, boxes = [], []
  for scale in pyramid_scales(h, w, window=window, min_size=min_size, max_size=max_size,
                              step=step):
    size = (max(window, round(h * scale)), max(window, round(w * scale)))
    # anti_aliasing: windows must look like the (downsampled) training crops, not aliased.
    level = resize(image, size, anti_aliasing=scale < 1, preserve_range=True)
    p, b = sliding_windows(level.astype(np.float32), window, stride)
    patches.append(p)
    boxes.append(b * np.array([w / size[1], h / size[0]] * 2))
  if not patches:
    return np.zeros((0, window, window), np.float32), np.zeros((0, 4))
  return np.concatenate(patches), np.concatenate(boxes)


def detect(score_fn, image: np.ndarray, *, window: int, stride: int, min_size: float,
           max_size: float, step: float, threshold: float, iou_threshold: float,
           max_boxes: int = 0, containment_threshold: float = 1.0,
           min_neighbours: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Multi-scale sliding-window detection followed by non-max suppression.

  Args:
    score_fn: f32[n, window, window, 1] -> f[n] object probability.
    image: f[H, W] grayscale in [0, 1].
    min_neighbours: a kept box needs this many windows above threshold (itself included)
      overlapping it by IoU > iou_threshold.
  Returns:
    (boxes f[k, 4] (x0, y0, x1, y1) photo pixels, scores f[k]), best first.
  """
  patches, boxes = pyramid_windows(image, window=window, stride=stride, min_size=min_size,
                                   max_size=max_size, step=step)
  if len(patches) == 0:
    return np.zeros((0, 4)), np.zeros((0,))
  scores = np.asarray(score_fn(patches[..., None]), np.float64)
  hit = np.flatnonzero(scores >= threshold)
  keep = hit[nms(boxes[hit], scores[hit], iou_threshold, 0, containment_threshold)]
  keep = keep[neighbour_counts(boxes[keep], boxes[hit], iou_threshold) >= min_neighbours]
  if max_boxes > 0:
    keep = keep[:max_boxes]
  return boxes[keep], scores[keep]
