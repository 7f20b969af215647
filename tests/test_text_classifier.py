"""The IMDB text classifier: padding cannot change a prediction; gradients through the masked
scan match finite differences; the (0, z) logits are the seed's sigmoid + binary cross-entropy."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.imdb import Config
from jaxml import recurrent
from jaxml.gradcheck import check_grad
from jaxml.losses import classification_loss
from jaxml.models import text_classifier

F64 = jnp.float64
VOCAB = 12


def _model(cell, dtype=F64, **kw):
  cfg = dataclasses.replace(Config(cell=cell), embed_dim=3, hidden=3, **kw)
  k1, k2 = jax.random.split(jax.random.key(1))
  params = text_classifier.init(k1, cfg, vocab_size=VOCAB, dtype=dtype)
  # Non-zero biases and larger embeddings, so every path carries signal.
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(k2, p.shape, dtype), params)
  return cfg, params


def _reviews(pad_to: int):
  """Three reviews of lengths 5, 2, 7 (ids 1..11), padded with 0 to `pad_to` steps."""
  rows = [[1, 4, 7, 2, 9], [1, 3], [1, 5, 5, 11, 6, 8, 10]]
  x = np.zeros((len(rows), pad_to), np.int32)
  for i, r in enumerate(rows):
    x[i, :len(r)] = r
  return jnp.asarray(x)


# Every readout, each direction setting and depth at least once (not the full product: each case
# compiles two scans, and CI time is shared).
CASES = [dict(readout="last", bidirectional=False, layers=1),
         dict(readout="last", bidirectional=True, layers=2),
         dict(readout="mean", bidirectional=True, layers=1),
         dict(readout="max", bidirectional=False, layers=2),
         dict(readout="mean_max", bidirectional=True, layers=2)]


@pytest.mark.parametrize("cell", sorted(recurrent.CELLS))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_more_padding_same_output(cell, case):
  cfg, params = _model(cell, **case)
  logit = jax.jit(lambda p, x: text_classifier.logit(p, x, cfg=cfg))
  short, long = logit(params, _reviews(7)), logit(params, _reviews(19))
  np.testing.assert_allclose(long, short, rtol=1e-12, atol=1e-12)


def test_padding_does_change_an_unmasked_run():
  """The control for the test above: without the mask, padding steps do move the state."""
  cfg, params = _model("gru")
  emb = lambda t: params["embed"][t]
  run = lambda t: recurrent.run("gru", params["rnn"][0]["fwd"], emb(t), hidden=cfg.hidden)[0]
  assert not np.allclose(run(_reviews(7)), run(_reviews(19)))


@pytest.mark.parametrize("cell", sorted(recurrent.CELLS))
@pytest.mark.parametrize("case", [dict(readout="last", bidirectional=False, layers=1),
                                  dict(readout="mean_max", bidirectional=True, layers=2)],
                         ids=["seed-net", "bi-2layer-meanmax"])
def test_loss_gradient_through_masked_scan(cell, case):
  """Every parameter coordinate (embedding rows included) against central differences."""
  cfg, params = _model(cell, **case)
  x, y = _reviews(9), jnp.array([1, 0, 1])
  loss = lambda p: classification_loss(text_classifier.apply(p, x, cfg=cfg), y)[0]
  res = check_grad(loss, params, mode="all")
  assert res.max_rel_error < 1e-6, res.max_rel_error
  unused = np.setdiff1d(np.arange(VOCAB), np.asarray(x))  # ids 0 (pad) and absent words
  assert np.all(jax.grad(loss)(params)["embed"][unused] == 0)


def test_two_logits_are_sigmoid_binary_cross_entropy():
  cfg, params = _model("lstm")
  x, y = _reviews(8), jnp.array([1, 0, 1])
  z = text_classifier.logit(params, x, cfg=cfg)
  p = jax.nn.sigmoid(z)
  bce = -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log1p(-p))
  ce = classification_loss(text_classifier.apply(params, x, cfg=cfg), y)[0]
  np.testing.assert_allclose(ce, bce, rtol=1e-12)


def test_max_readout_ignores_padding_even_when_states_are_negative():
  hs = -jnp.ones((1, 4, 2)) * jnp.arange(1, 5)[None, :, None]  # -1, -2, -3, -4 over time
  mask = jnp.array([[False, True, True, False]])
  out = recurrent.readout("max", hs, None, mask)
  np.testing.assert_array_equal(out, [[-2.0, -2.0]])
  out = recurrent.readout("mean", hs, None, mask)
  np.testing.assert_array_equal(out, [[-2.5, -2.5]])


def test_dropout_only_in_training_and_keyed():
  cfg, params = _model("gru", dtype=jnp.float32, dropout=0.5, embed_dropout=0.5,
                       layers=2)
  x = _reviews(8)
  logit = jax.jit(lambda key, train: text_classifier.logit(params, x, cfg=cfg, train=train,
                                                           key=key), static_argnums=1)
  a, b = logit(jax.random.key(0), True), logit(jax.random.key(0), True)
  c, d = logit(jax.random.key(1), True), logit(None, False)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c) and not np.allclose(a, d)
