"""The activity classifier: whole-loss gradient check and one train step."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.activity import Config
from jaxml import nn, recurrent
from jaxml.gradcheck import check_grad
from jaxml.losses import classification_loss
from jaxml.models import sequence_classifier
from jaxml.train import train_step, make_optimizer

F64 = jnp.float64


def _tiny(cell, **kw):
  cfg = dataclasses.replace(Config(cell=cell), hidden=4, head=(5,), **kw)
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  params = sequence_classifier.init(k1, cfg, n_features=3, n_classes=3, dtype=F64)
  # Non-zero biases everywhere, and ReLU pre-activations kept away from 0 (no kinks nearby).
  params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(k3, p.shape, F64), params)
  x = jax.random.normal(k2, (6, 4, 3), F64)
  y = jnp.array([0, 1, 2, 0, 1, 2])
  return cfg, params, x, y


@pytest.mark.parametrize("cell", sorted(recurrent.CELLS))
@pytest.mark.parametrize("readout", ["last", "mean"])
def test_classifier_loss_gradient(cell, readout):
  cfg, params, x, y = _tiny(cell, readout=readout)
  loss = lambda p: classification_loss(sequence_classifier.apply(p, x, cfg=cfg), y)[0]
  res = check_grad(loss, params, mode="all")
  assert res.max_rel_error < 1e-6, res.max_rel_error


@pytest.mark.parametrize("cell, readout", [("lstm", "mean_max"), ("gru", "last")])
def test_bidirectional_loss_gradient(cell, readout):
  cfg, params, x, y = _tiny(cell, readout=readout, bidirectional=True)
  assert set(params) == {"rnn", "rnn_bwd", "head"}
  loss = lambda p: classification_loss(sequence_classifier.apply(p, x, cfg=cfg), y)[0]
  res = check_grad(loss, params, mode="all")
  assert res.max_rel_error < 1e-6, res.max_rel_error


def test_conv_front_end_loss_gradient_and_shapes():
  """Finite differences against jax.grad through two conv1d layers (even width: off-centre
  'SAME' padding) into a GRU; the front end's filters are [width, c_in, c_out]."""
  cfg, params, x, y = _tiny("gru", readout="mean", conv=(4, 2), conv_width=2)
  assert [l["w"].shape for l in params["conv"]] == [(2, 3, 4), (2, 4, 2)]
  assert params["rnn"]["w_x"].shape[0] == 2
  loss = lambda p: classification_loss(sequence_classifier.apply(p, x, cfg=cfg), y)[0]
  res = check_grad(loss, params, mode="all")
  assert res.max_rel_error < 1e-6, res.max_rel_error


def test_conv1d_is_the_cross_correlation_it_documents():
  """nn.conv1d against its docstring's sum, written out with explicit zero padding."""
  k1, k2 = jax.random.split(jax.random.key(4))
  for width in (1, 2, 3, 4):
    p = nn.conv1d_init(k1, width, 3, 5, F64)
    p["b"] = jnp.arange(5.0, dtype=F64)
    x = jax.random.normal(k2, (2, 7, 3), F64)
    lo = (width - 1) // 2
    xp = jnp.pad(x, ((0, 0), (lo, width - 1 - lo), (0, 0)))
    want = sum(xp[:, m:m + 7] @ p["w"][m] for m in range(width)) + p["b"]
    np.testing.assert_allclose(nn.conv1d(p, x), want, rtol=1e-12, atol=1e-12)


def test_one_way_params_do_not_depend_on_the_new_options():
  """bidirectional=False starts exactly as before it existed (same keys, same forward cell and
  head), so recorded one-way runs stay reproducible; the reverse cell has its own key."""
  cfg = Config(cell="gru", hidden=4, head=(5,))
  one = sequence_classifier.init(jax.random.key(0), cfg, n_features=3, n_classes=3)
  two = sequence_classifier.init(jax.random.key(0), dataclasses.replace(cfg, bidirectional=True),
                                 n_features=3, n_classes=3)
  for a, b in zip(jax.tree.leaves(one["rnn"]), jax.tree.leaves(two["rnn"])):
    np.testing.assert_array_equal(a, b)
  assert two["head"]["layers"][0]["w"].shape == (8, 5)
  assert not np.allclose(two["rnn"]["w_x"], two["rnn_bwd"]["w_x"])
  # a conv front end changes the recurrent layer's input width only, not the head's start
  three = sequence_classifier.init(jax.random.key(0), dataclasses.replace(cfg, conv=(3,)),
                                   n_features=3, n_classes=3)
  for a, b in zip(jax.tree.leaves(one["head"]), jax.tree.leaves(three["head"])):
    np.testing.assert_array_equal(a, b)


def test_input_noise_only_in_training_and_keyed():
  cfg, params, x, _ = _tiny("gru", input_noise=0.3)
  a = sequence_classifier.apply(params, x, cfg=cfg)
  np.testing.assert_array_equal(a, sequence_classifier.apply(params, x, cfg=cfg, train=False,
                                                              key=jax.random.key(0)))
  b = sequence_classifier.apply(params, x, cfg=cfg, train=True, key=jax.random.key(0))
  c = sequence_classifier.apply(params, x, cfg=cfg, train=True, key=jax.random.key(1))
  assert not np.allclose(a, b) and not np.allclose(b, c)
  np.testing.assert_array_equal(b, sequence_classifier.apply(params, x, cfg=cfg, train=True,
                                                              key=jax.random.key(0)))


def test_a_time_crop_is_one_window_of_the_valid_steps_and_the_model_sees_only_it():
  """augment.random_crop_mask keeps one contiguous window of at least (1 - max_cut) of each
  series' valid steps; in training the classifier's logits are those of the window alone (the
  cropped series run unmasked), and evaluation is never cropped."""
  from jaxml.augment import random_crop_mask
  lengths = np.array([9, 6, 3, 1, 0])
  valid = (np.arange(9)[None] < lengths[:, None]).astype(np.float32)
  for seed in range(20):
    m = np.asarray(random_crop_mask(jax.random.key(seed), jnp.asarray(valid), valid.shape, 0.5))
    assert set(np.unique(m)) <= {0.0, 1.0} and np.all(m <= valid)
    for row, n in zip(m, lengths):
      kept = np.flatnonzero(row)
      assert max(np.ceil(0.5 * n), min(n, 1)) <= len(kept) <= n
      if len(kept):
        assert np.all(np.diff(kept) == 1)  # one window
  cfg, params, x, _ = _tiny("gru", crop=0.5)
  key = jax.random.key(4)
  window = np.asarray(random_crop_mask(jax.random.fold_in(key, 3), None, x.shape[:2], 0.5))
  assert window.sum() < window.size  # something was cut
  got = sequence_classifier.apply(params, x, cfg=cfg, train=True, key=key)
  for i in range(len(x)):
    kept = np.flatnonzero(window[i])
    alone = sequence_classifier.apply(params, x[i:i + 1, kept[0]:kept[-1] + 1], cfg=cfg)
    np.testing.assert_allclose(got[i], alone[0], rtol=1e-10, atol=1e-12)
  np.testing.assert_array_equal(sequence_classifier.apply(params, x, cfg=cfg),
                                sequence_classifier.apply(params, x, cfg=cfg, train=False,
                                                          key=key))


def test_directional_gradcheck_on_seed_sized_model():
  """The seed's size (128 units, head 70-30) is checked along fixed random directions."""
  cfg = Config(cell="gru")
  params = sequence_classifier.init(jax.random.key(0), cfg, n_features=3, n_classes=6, dtype=F64)
  x = jax.random.normal(jax.random.key(1), (4, 6, 3), F64)
  y = jnp.array([0, 1, 2, 3])
  loss = lambda p: classification_loss(sequence_classifier.apply(p, x, cfg=cfg), y)[0]
  res = check_grad(loss, params, mode="directions", n_directions=4)
  assert res.max_rel_error < 1e-6, res.max_rel_error


@pytest.mark.parametrize("cell", sorted(recurrent.CELLS))
def test_one_train_step_changes_every_parameter(cell):
  cfg, params, x, y = _tiny(cell, dropout=0.1)
  cfg = dataclasses.replace(cfg, optimizer="sgd", learning_rate=0.1, epochs=1)  # (0 = by the data)

  def loss_fn(p, batch, *, train, key):
    logits = sequence_classifier.apply(p, batch["x"], cfg=cfg, train=train, key=key)
    return classification_loss(logits, batch["y"], batch["weight"])

  opt = make_optimizer(cfg, steps_per_epoch=1)
  state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": opt.init(params)}
  batch = {"x": x, "y": y, "weight": jnp.ones(6, F64)}
  new, metrics = train_step(loss_fn, opt, state, batch, jax.random.key(3))
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params, new["params"])
  assert all(jax.tree.leaves(changed)), changed
  assert bool(metrics["finite"]) and int(new["step"]) == 1


def test_dropout_needs_key_and_is_off_in_eval():
  cfg, params, x, _ = _tiny("gru", dropout=0.5)
  a = sequence_classifier.apply(params, x, cfg=cfg)
  b = sequence_classifier.apply(params, x, cfg=cfg, train=False, key=jax.random.key(0))
  np.testing.assert_array_equal(a, b)
  c = sequence_classifier.apply(params, x, cfg=cfg, train=True, key=jax.random.key(0))
  assert not np.allclose(a, c)
  assert optax.tree.norm(c) > 0
