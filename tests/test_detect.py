"""Box geometry, IoU, non-max suppression and the pyramid detector on hand-made cases."""

import numpy as np
import pytest

from jaxml import detect


def test_iou_hand_cases():
  a = np.array([[0, 0, 10, 10]])
  b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [2, 2, 4, 4], [20, 0, 30, 5]])
  np.testing.assert_allclose(detect.iou(a, b)[0], [1.0, 50 / 150, 0.0, 4 / 100, 0.0])
  assert detect.iou(b, b).shape == (5, 5)
  np.testing.assert_allclose(np.diag(detect.iou(b, b)), 1.0)
  np.testing.assert_allclose(detect.iou(b, a)[:, 0], detect.iou(a, b)[0])  # symmetric
  # A degenerate (zero-area) box overlaps nothing, rather than dividing by zero.
  assert detect.iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 0.0


def test_nms_keeps_the_best_of_each_cluster():
  boxes = np.array([[0, 0, 10, 10],     # cluster A, score 0.8
                    [1, 0, 11, 10],     # cluster A, IoU 0.82 with the first, score 0.9 (best)
                    [50, 50, 60, 60],   # alone, 0.5
                    [0, 5, 10, 15],     # IoU 45/155 = 0.29 with box 1: kept at 0.5, dropped at 0.25
                    [52, 50, 62, 60]])  # IoU 0.67 with box 2, lower score: dropped
  scores = np.array([0.8, 0.9, 0.5, 0.7, 0.4])
  np.testing.assert_array_equal(detect.nms(boxes, scores, iou_threshold=0.5), [1, 3, 2])
  np.testing.assert_array_equal(detect.nms(boxes, scores, iou_threshold=0.25), [1, 2])
  np.testing.assert_array_equal(detect.nms(boxes, scores, 0.5, max_boxes=2), [1, 3])
  assert len(detect.nms(np.zeros((0, 4)), np.zeros(0), 0.5)) == 0
  # Equal scores: the lower index wins.
  np.testing.assert_array_equal(detect.nms(boxes[:2], np.array([0.5, 0.5]), 0.5), [0])


def test_sliding_windows_boxes_match_patches():
  img = np.arange(12 * 9, dtype=np.float32).reshape(12, 9)  # H=12 rows, W=9 columns
  patches, boxes = detect.sliding_windows(img, 4, 2)
  assert patches.shape == (5 * 3, 4, 4) and boxes.shape == (15, 4)
  for p, (x0, y0, x1, y1) in zip(patches, boxes.astype(int)):
    np.testing.assert_array_equal(p, img[y0:y1, x0:x1])  # x = column, y = row
  assert boxes[:, 2].max() <= 9 and boxes[:, 3].max() <= 12
  assert len(detect.sliding_windows(img, 13, 1)[0]) == 0


def test_pyramid_scales_cover_the_size_range():
  scales = detect.pyramid_scales(400, 300, window=25, min_size=50, max_size=1000, step=2.0)
  np.testing.assert_allclose(scales, [25 / 50, 25 / 100, 25 / 200])  # 400 > shorter side 300


@pytest.mark.parametrize("where", [(40, 70), (150, 20)])
def test_detect_finds_a_square_in_photo_coordinates(where):
  # A white 50x50 square on black, in a non-square photo. The "classifier" scores a window by
  # how well it matches a white 15x15 centre with a 5-pixel black border, so the right window
  # is 50 * 25 / 15 pixels wide and centred on the square.
  x0, y0 = where
  photo = np.zeros((200, 260), np.float32)
  photo[y0:y0 + 50, x0:x0 + 50] = 1.0
  template = np.zeros((25, 25), np.float32)
  template[5:20, 5:20] = 1.0
  score = lambda w: 1.0 - np.abs(w[..., 0] - template).mean(axis=(1, 2))
  boxes, scores = detect.detect(score, photo, window=25, stride=1, min_size=40, max_size=150,
                                step=1.1, threshold=0.8, iou_threshold=0.2)
  side = 50 * 25 / 15
  expected = [x0 + 25 - side / 2, y0 + 25 - side / 2, x0 + 25 + side / 2, y0 + 25 + side / 2]
  assert len(boxes) >= 1 and scores[0] == scores.max()
  assert detect.iou(boxes[:1], [expected])[0, 0] > 0.8, (boxes[0], expected)
  # After NMS no two kept boxes overlap by more than the threshold.
  overlaps = detect.iou(boxes, boxes)[np.triu_indices(len(boxes), 1)]
  assert (overlaps <= 0.2).all()


def test_containment_suppresses_nested_boxes_that_iou_keeps():
  boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40], [90, 90, 140, 140]])
  scores = np.array([0.9, 0.8, 0.7])
  np.testing.assert_allclose(detect.containment(boxes[:1], boxes)[0], [1.0, 1.0, 100 / 2500])
  assert detect.iou(boxes[0], boxes[1])[0, 0] < 0.1  # IoU alone keeps the nested box
  np.testing.assert_array_equal(detect.nms(boxes, scores, 0.3), [0, 1, 2])
  np.testing.assert_array_equal(detect.nms(boxes, scores, 0.3, containment_threshold=0.6), [0, 2])


def test_neighbour_counts_and_min_neighbours():
  # Three windows around (0..10) and one isolated window; the isolated one has only itself.
  boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60]], float)
  np.testing.assert_array_equal(detect.neighbour_counts(boxes[[0, 3]], boxes, 0.3), [3, 1])
  scores = {0: 0.9, 1: 0.8, 2: 0.7, 3: 0.95}
  table = {tuple(b): scores[i] for i, b in enumerate(boxes)}
  photo = np.zeros((70, 70), np.float32)
  # A score_fn that ignores pixels: detect's windows are looked up by position instead.
  windows, wboxes = detect.pyramid_windows(photo, window=10, stride=1, min_size=10, max_size=10,
                                           step=2.0)
  s = np.array([table.get(tuple(b), 0.0) for b in wboxes])
  kept, _ = detect.detect(lambda w: s, photo, window=10, stride=1, min_size=10, max_size=10,
                          step=2.0, threshold=0.5, iou_threshold=0.3, min_neighbours=2)
  np.testing.assert_array_equal(kept, boxes[:1])
  kept, _ = detect.detect(lambda w: s, photo, window=10, stride=1, min_size=10, max_size=10,
                          step=2.0, threshold=0.5, iou_threshold=0.3, min_neighbours=1)
  np.testing.assert_array_equal(kept, boxes[[3, 0]])
