"""Variable-length sequences end to end: the .ts reader's lengths, masked statistics, padding
that cannot change a prediction or a gradient, and a tiny run on a variable-length .ts pair."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.activity import Config, prepare_splits
from jaxml import recurrent
from jaxml.data import activity
from jaxml.data.splits import channel_stats, holdout_splits, length_mask, standardize
from jaxml.errors import UserError
from jaxml.losses import classification_loss
from jaxml.models import sequence_classifier
from jaxml.pipeline import make_predict
from tests.test_run_cli import run_cli

F64 = jnp.float64
TS_HEAD = ("# a hand-written variable-length set\n@problemName X\n@timeStamps false\n"
           "@missing true\n@univariate false\n@dimensions 2\n@equalLength false\n"
           "@classLabel true up down\n@data\n")


def ts_case(values: np.ndarray, label: str, pad: int = 0, pad_token: str = "NaN") -> str:
  """One .ts line from f[length, channels]; `pad` trailing missing values on every dimension."""
  dims = [",".join([f"{v:.4f}" for v in values[:, c]] + [pad_token] * pad)
          for c in range(values.shape[1])]
  return ":".join(dims) + ":" + label


def write_ts_pair(d, n_train=24, n_test=8, channels=3, lengths=(5, 13), seed=0):
  """NAME_TRAIN.ts / NAME_TEST.ts: class "up" ramps up, "down" ramps down, lengths varying;
  every third case padded with trailing NaN, every fifth with '?'. Returns the lengths."""
  rng = np.random.default_rng(seed)
  out = {}
  for split, n in (("TRAIN", n_train), ("TEST", n_test)):
    rows, ls = [], []
    for i in range(n):
      length = int(rng.integers(*lengths))
      sign = 1.0 if i % 2 == 0 else -1.0
      x = sign * np.linspace(0, 1, length)[:, None] + 0.1 * rng.standard_normal((length, channels))
      pad = 3 if i % 3 == 0 else 0
      rows.append(ts_case(x, "up" if sign > 0 else "down", pad, "?" if i % 5 == 0 else "NaN"))
      ls.append(length)
    (d / f"X_{split}.ts").write_text(TS_HEAD + "\n".join(rows) + "\n")
    out[split] = ls
  return out


# ----------------------------------------------------------------------------- reader
def test_ts_reader_keeps_each_series_length(tmp_path):
  rows = [ts_case(np.arange(6.0).reshape(3, 2), "up"),             # 3 steps
          ts_case(np.arange(10.0).reshape(5, 2), "down"),          # 5 steps
          ts_case(np.ones((2, 2)), "up", pad=4),                   # 2 steps + NaN padding
          ts_case(np.ones((4, 2)), "down", pad=1, pad_token="?")]  # 4 steps + '?' padding
  (tmp_path / "X_TRAIN.ts").write_text(TS_HEAD + "\n".join(rows) + "\n")
  # the test file's longest series (7) is longer than the train file's: both padded to 7
  (tmp_path / "X_TEST.ts").write_text(TS_HEAD + ts_case(np.full((7, 2), 2.0), "up") + "\n")
  data = activity.load_activity(str(tmp_path / "X_TRAIN.ts"))
  assert data.variable_length
  assert data.len_train.tolist() == [3, 5, 2, 4] and data.len_test.tolist() == [7]
  assert data.x_train.shape == (4, 7, 2) and data.x_test.shape == (1, 7, 2)
  np.testing.assert_array_equal(data.x_train[1, :5], np.arange(10.0).reshape(5, 2))
  assert not data.x_train[1, 5:].any() and not data.x_train[2, 2:].any()  # padding is 0
  assert data.y_train.tolist() == [0, 1, 0, 1]
  info = data.describe()["series_length"]
  assert (info["variable"], info["min"], info["max"]) == (True, 2, 7)
  # a channel group keeps the lengths
  acc = activity.select_channels(data, "all")
  assert acc.len_train.tolist() == [3, 5, 2, 4]


def test_equal_length_ts_has_no_lengths(tmp_path):
  head = "@problemName X\n@classLabel true a b\n@data\n"
  (tmp_path / "X_TRAIN.ts").write_text(head + "1,2,3:4,5,6:a\n" * 2 + "1,2,3:4,5,6:b\n" * 2)
  (tmp_path / "X_TEST.ts").write_text(head + "1,2,3:4,5,6:a\n")
  data = activity.load_activity(str(tmp_path / "X_TRAIN.ts"))
  assert data.len_train is None and data.len_test is None and not data.variable_length
  assert "series_length" not in data.describe()
  splits, _ = holdout_splits(data, 0.5, seed=0)
  assert all(len(v) == 2 for v in splits.values())  # (x, y) as before


@pytest.mark.parametrize("row, message", [
    ("1,NaN,3:4,5,6:up", "NaN or infinite"),        # a gap inside a series stays an error
    ("1,2,?:4,5,6:up", "unequal length"),           # dimensions of one case must agree
    ("1,2,3:4,x,6:up", "non-number"),
    ("NaN,NaN:?,?:up", "no values"),
    ("1,2,3:up", "channel count"),
])
def test_ts_reader_rejects_bad_variable_length_cases(tmp_path, row, message):
  (tmp_path / "X_TRAIN.ts").write_text(TS_HEAD + "1,2:3,4:up\n" + row + "\n")
  (tmp_path / "X_TEST.ts").write_text(TS_HEAD + "1,2:3,4:down\n")
  with pytest.raises(UserError, match=message):
    activity.load_activity(str(tmp_path / "X_TRAIN.ts"))


# ----------------------------------------------------------------------------- statistics
def test_masked_statistics_use_valid_steps_and_padding_stays_zero(tmp_path):
  lengths = write_ts_pair(tmp_path)
  data = activity.load_activity(str(tmp_path / "X_TRAIN.ts"))
  assert data.len_train.tolist() == lengths["TRAIN"] and data.len_test.tolist() == lengths["TEST"]
  splits, _ = prepare_splits(data, Config(), seed=0)
  x, _, mask = splits["train"]
  assert mask.shape == x.shape[:2] and set(np.unique(mask)) == {0.0, 1.0}
  valid = x[mask > 0]
  np.testing.assert_allclose(valid.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(valid.std(0), 1, atol=1e-4)
  for xs, _, m in splits.values():
    assert not xs[m == 0].any()
  # the statistics equal those of the concatenated valid steps
  raw = np.concatenate([data.x_train[i, :n] for i, n in enumerate(data.len_train)])
  mean, std = channel_stats(data.x_train, mask=length_mask(data.len_train, data.x_train.shape[1]))
  np.testing.assert_allclose(mean, raw.mean(0), rtol=1e-5)
  np.testing.assert_allclose(std, raw.std(0), rtol=1e-5)
  z = standardize(data.x_train, mean, std)  # without a mask the padding would move
  assert z[length_mask(data.len_train, z.shape[1]) == 0].any()


# ----------------------------------------------------------------------------- the model
def _padded_batch(key, lengths, steps, n_in=3):
  """Series of the given lengths, padded to `steps` with large random values, and their mask."""
  k1, k2 = jax.random.split(key)
  series = [jax.random.normal(jax.random.fold_in(k1, i), (n, n_in), F64)
            for i, n in enumerate(lengths)]
  garbage = 5.0 * jax.random.normal(k2, (len(lengths), steps, n_in), F64)
  x = jnp.stack([jnp.concatenate([s, garbage[i, len(s):]]) for i, s in enumerate(series)])
  return series, x, jnp.asarray(length_mask(np.array(lengths), steps), F64)


def _model(cell, readout, backward="fast", **kw):
  cfg = dataclasses.replace(Config(cell=cell), hidden=4, head=(5,), readout=readout,
                            backward=backward, **kw)
  params = sequence_classifier.init(jax.random.key(0), cfg, n_features=3, n_classes=3, dtype=F64)
  params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape, F64),
                        params)
  return cfg, params


@pytest.mark.parametrize("cell, readout, bidirectional, conv", [
    *((c, r, False, {}) for c in sorted(recurrent.CELLS) for r in ("last", "mean")),
    ("gru", "max", False, {}), ("lstm", "mean_max", True, {}), ("gru", "last", True, {}),
    ("gru", "last", False, dict(conv=(4, 3), conv_width=3)),
    ("lstm", "mean", True, dict(conv=(4,), conv_width=4))])
def test_padding_cannot_change_the_logits(cell, readout, bidirectional, conv):
  """A padded batch (padding filled with large values, not zeros) gives each series the logits
  it gets alone and unpadded; with and without jit. A right-to-left cell starts at each
  series' own last real step; a conv front end sees the padding as its own zero padding."""
  cfg, params = _model(cell, readout, bidirectional=bidirectional, **conv)
  lengths = [1, 4, 7, 2, 7]
  series, x, mask = _padded_batch(jax.random.key(2), lengths, steps=9)
  one_by_one = jnp.concatenate([sequence_classifier.apply(params, s[None], cfg=cfg)
                                for s in series])
  apply = lambda p, x, m: sequence_classifier.apply(p, x, cfg=cfg, mask=m)
  for f in (apply, jax.jit(apply)):
    np.testing.assert_allclose(f(params, x, mask), one_by_one, rtol=1e-10, atol=1e-12)
  # and the mask matters: without it the padding does change them
  assert not np.allclose(sequence_classifier.apply(params, x, cfg=cfg), one_by_one)


@pytest.mark.parametrize("cell, backward, conv", [
    *((c, b, ()) for c in sorted(recurrent.CELLS) for b in ("fast", "autodiff")),
    ("gru", "autodiff", (4,))])
def test_padding_cannot_change_the_gradient(cell, backward, conv):
  """The loss gradient of a padded, masked batch equals that of the series run one by one."""
  cfg, params = _model(cell, "mean", backward, conv=conv)
  lengths, y = [3, 6, 1, 6], jnp.array([0, 1, 2, 1])
  series, x, mask = _padded_batch(jax.random.key(3), lengths, steps=8)
  padded = lambda p: classification_loss(
      sequence_classifier.apply(p, x, cfg=cfg, mask=mask), y)[0]
  alone = lambda p: sum(classification_loss(sequence_classifier.apply(p, s[None], cfg=cfg),
                                            y[i:i + 1])[0] for i, s in enumerate(series)) / 4
  g_padded, g_alone = jax.grad(padded)(params), jax.grad(alone)(params)
  for a, b in zip(jax.tree.leaves(g_padded), jax.tree.leaves(g_alone)):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_predict_passes_the_mask_and_pads_rows_with_an_empty_mask():
  seen = []

  def apply_fn(p, x, mask):
    jax.debug.callback(lambda m: seen.append(np.asarray(m)), mask)
    return (x[..., 0] * mask).sum(1, keepdims=True)

  predict = make_predict(apply_fn, batch_size=4)
  x = np.ones((5, 3, 1), np.float32)
  mask = length_mask(np.array([1, 2, 3, 1, 2]), 3)
  np.testing.assert_array_equal(predict({}, x, mask)[:, 0], [1, 2, 3, 1, 2])
  assert not seen[-1][1:].any()  # the last batch's 3 padding rows have an all-zero mask
  np.testing.assert_array_equal(make_predict(lambda p, x: x[:, 0], 4)({}, x), x[:, 0])


# ----------------------------------------------------------------------------- end to end
def test_tiny_gru_activity_on_a_variable_length_ts_pair(tmp_path):
  lengths = write_ts_pair(tmp_path)
  work = tmp_path / "work"
  proc = run_cli("--exp=gru_activity", "--tiny", f"--data_path={tmp_path / 'X_TRAIN.ts'}",
                 f"--workdir={work}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((work / "results.json").read_text())
  info = res["data"]["series_length"]
  every = lengths["TRAIN"] + lengths["TEST"]
  assert info["variable"] and (info["min"], info["max"]) == (min(every), max(every))
  assert res["data"]["input_shape"] == [max(every), 3]
  assert 0.0 <= res["metrics"]["test_accuracy"] <= 1.0
  assert f"{min(every)}-{max(every)} steps" in proc.stdout + proc.stderr
