"""Sequence classifier: a recurrent layer (RNN/LSTM/GRU) read out into an MLP head.

    x: f[batch, time, features] -> recurrent(hidden) -> readout -> MLP(head..., ReLU) -> logits

The seed's activity net is `hidden=128, head=(70, 30)`, read out from the last hidden state.
`cfg` is any config with the fields used below (the activity experiments' config has them all).
"""

import jax
import jax.numpy as jnp

from jaxml import nn, recurrent


def init(key, cfg, *, n_features: int, n_classes: int, dtype=jnp.float32) -> dict:
  """Params {"rnn": cell params, "head": mlp params}. Uses cfg.cell, .hidden, .head, .forget_bias."""
  k_rnn, k_head = jax.random.split(key)
  rnn = recurrent.get_cell(cfg.cell).init(k_rnn, n_features, cfg.hidden, dtype,
                                       forget_bias=cfg.forget_bias)
  head = nn.mlp_init(k_head, (cfg.hidden, *cfg.head, n_classes), dtype)
  return {"rnn": rnn, "head": head}


def features(params, x, *, cfg, mask=None):
  """The recurrent layer's summary of each sequence: f[batch, hidden].

  readout "last": the final hidden state (the last unmasked step when `mask` is given);
  readout "mean": the average hidden state over (unmasked) time steps.
  cfg.backward ("fast"/"autodiff") picks how the gradient through time is computed.
  """
  carry, hs = recurrent.run(cfg.cell, params["rnn"], x, mask=mask, hidden=cfg.hidden,
                            unroll=cfg.unroll, backward=cfg.backward)
  if cfg.readout == "last":
    return recurrent.final_hidden(cfg.cell, carry)
  if mask is None:
    return jnp.mean(hs, axis=1)
  m = mask.astype(hs.dtype)[..., None]
  return jnp.sum(hs * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


def apply(params, x, *, cfg, mask=None, train: bool = False, key=None):
  """x: f[batch, time, features] -> logits f[batch, classes].

  mask: optional f/bool[batch, time], 1 on valid steps; padded steps (0) leave the recurrent
  carry unchanged and are left out of the mean, so a series' logits do not depend on how much
  padding follows it (tests/test_variable_length.py).
  """
  h = features(params, x, cfg=cfg, mask=mask)
  k_in, k_mlp = jax.random.split(key) if (train and cfg.dropout > 0) else (None, None)
  h = nn.dropout(h, cfg.dropout, key=k_in, train=train)
  return nn.mlp(params["head"], h, activation="relu", dropout_rate=cfg.dropout, train=train,
                key=k_mlp)
