"""Neural 4-gram language model (Bengio et al. 2003; the seed's Q2): three words in, the 4th out.

    e_k = E[x_k]                       (one shared embedding row per context position, D each)
    h   = sigmoid([e_1, e_2, e_3] W_h + b_h)        h: f[batch, P]
    z   = h W_o + b_o                  logits over the V words, softmax in the loss

The embedding is indexed, never multiplied with one-hot vectors: E[x] equals onehot(x) @ E
(tests/test_ngram_lm.py) at a fraction of the cost, and its gradient is a scatter-add into the
rows that were used.
"""

from typing import Literal

import jax
import jax.numpy as jnp

from jaxml import nn
from jaxml.losses import classification_loss

Params = dict
CONTEXT = 3  # words in, the fourth predicted


def init(key, *, vocab_size: int, embed_dim: int, hidden: int,
         scheme: Literal["normal", "xavier"] = "normal", std: float = 0.01,
         dtype=jnp.float32) -> Params:
  """{"embed": f[V, D], "hidden": dense f[3D, P], "out": dense f[P, V]}.

  scheme "normal": every weight and bias N(0, std^2) (the seed's init, std 0.01);
  "xavier": Xavier-uniform dense weights, zero biases, embedding N(0, std^2).
  """
  k_e, k_h, k_o, k_bh, k_bo = jax.random.split(key, 5)
  embed = std * jax.random.normal(k_e, (vocab_size, embed_dim), dtype)
  if scheme == "xavier":
    return {"embed": embed, "hidden": nn.dense_init(k_h, CONTEXT * embed_dim, hidden, dtype),
            "out": nn.dense_init(k_o, hidden, vocab_size, dtype)}
  normal = lambda k, shape: std * jax.random.normal(k, shape, dtype)
  return {"embed": embed,
          "hidden": {"w": normal(k_h, (CONTEXT * embed_dim, hidden)), "b": normal(k_bh, (hidden,))},
          "out": {"w": normal(k_o, (hidden, vocab_size)), "b": normal(k_bo, (vocab_size,))}}


def embed(params: Params, x):
  """x: int[batch, 3] word ids -> f[batch, 3 * D], the three embeddings side by side."""
  e = jnp.take(params["embed"], x, axis=0)  # [batch, 3, D]
  return e.reshape(x.shape[0], x.shape[1] * e.shape[2])  # explicit: batch may be empty


def apply(params: Params, x, *, dropout: float = 0.0, train: bool = False, key=None):
  """x: int[batch, 3] -> logits f[batch, V] over the fourth word.

  `dropout` (training only) zeroes that fraction of the concatenated embeddings and of the
  hidden units: on a corpus of ~50k 4-grams the (32, 256) net otherwise overfits.
  """
  k_e = k_h = None
  if train and dropout > 0:
    if key is None:
      raise ValueError("dropout in training needs an explicit PRNG key")
    k_e, k_h = jax.random.split(key)
  e = nn.dropout(embed(params, x), dropout, key=k_e, train=train)
  h = jax.nn.sigmoid(nn.dense(params["hidden"], e))
  return nn.dense(params["out"], nn.dropout(h, dropout, key=k_h, train=train))


def make_loss_fn(dropout: float = 0.0):
  """The train loop's loss: (mean cross-entropy in nats per word, its weighted sums).

  batch: {"x": int[batch, 3], "y": int[batch], "weight": f[batch]}.
  """

  def loss_fn(params: Params, batch: dict, *, train: bool = False, key=None):
    logits = apply(params, batch["x"], dropout=dropout, train=train, key=key)
    return classification_loss(logits, batch["y"], batch["weight"])

  return loss_fn


loss_fn = make_loss_fn()  # without dropout: evaluation, gradient checks


def top_k(params: Params, x, k: int = 10):
  """The k most probable fourth words, best first: (ids int[batch, k], probs f[batch, k])."""
  probs = jax.nn.softmax(apply(params, x), axis=-1)
  p, ids = jax.lax.top_k(probs, k)
  return ids, p
