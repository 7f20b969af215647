"""Text classifier: word embedding -> recurrent stack -> pooling over time -> one logit.

    tokens: int32[batch, time] (0 = padding, masked everywhere)
      -> embedding f[batch, time, embed_dim] -> dropout
      -> LSTM/GRU/RNN layers (optionally bidirectional) -> readout f[batch, features]
      -> dropout -> dense -> z: f[batch]; p(positive) = sigmoid(z)

The seed's IMDB net is `embed_dim=50`, dropout 0.2, one LSTM or GRU of 32 units read out from
its last state, and a sigmoid unit. `apply` returns the two logits (0, z): softmax((0, z)) =
(1 - sigmoid(z), sigmoid(z)), so the train loop's softmax cross-entropy over them *is* the seed's
binary cross-entropy on sigmoid(z), and accuracy/confusion code needs no special case.
`cfg` is any config with the fields used below (experiments/imdb.py's Config has them all).
"""

import jax
import jax.numpy as jnp

from jaxml import nn, recurrent



def init(key, cfg, *, vocab_size: int, dtype=jnp.float32) -> dict:
  """{"embed": f[vocab_size, embed_dim], "rnn": stack params, "out": dense [features, 1]}."""
  k_emb, k_rnn, k_out = jax.random.split(key, 3)
  # Keras' Embedding init, U(-0.05, 0.05): small, so early sums over time stay tame.
  embed = jax.random.uniform(k_emb, (vocab_size, cfg.embed_dim), dtype, -0.05, 0.05)
  rnn = recurrent.stack_init(k_rnn, cfg.cell, cfg.embed_dim, cfg.hidden, layers=cfg.layers,
                             bidirectional=cfg.bidirectional, dtype=dtype,
                             forget_bias=cfg.forget_bias)
  return {"embed": embed, "rnn": rnn,
          "out": nn.dense_init(k_out, readout_size(cfg), 1, dtype)}


def readout_size(cfg) -> int:
  return recurrent.readout_size(cfg.readout, cfg.hidden * (2 if cfg.bidirectional else 1))


def logit(params, tokens, *, cfg, train: bool = False, key=None):
  """tokens: int32[batch, time] -> z: f[batch], the log-odds of the positive class."""
  mask = tokens != 0
  keys = jax.random.split(key, 3) if train else [None] * 3
  x = nn.dropout(params["embed"][tokens], cfg.embed_dropout, key=keys[0], train=train)
  between = (lambda l, h: nn.dropout(h, cfg.dropout, key=jax.random.fold_in(keys[1], l),
                                     train=True)) if train else None
  hs, final = recurrent.stack_run(cfg.cell, params["rnn"], x, mask, hidden=cfg.hidden,
                                  unroll=cfg.unroll, between=between, backward=cfg.backward)
  h = nn.dropout(recurrent.readout(cfg.readout, hs, final, mask), cfg.dropout, key=keys[2], train=train)
  return nn.dense(params["out"], h)[..., 0]


def apply(params, tokens, *, cfg, train: bool = False, key=None):
  """tokens: int32[batch, time] -> logits f[batch, 2] = (0, z), see the module docstring."""
  z = logit(params, tokens, cfg=cfg, train=train, key=key)
  return jnp.stack([jnp.zeros_like(z), z], axis=-1)
