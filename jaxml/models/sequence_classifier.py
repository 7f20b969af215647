"""Sequence classifier: a recurrent layer (RNN/LSTM/GRU) read out into an MLP head.

    x: f[batch, time, features] -> [conv1d(c, ReLU) ...] -> recurrent(hidden) -> readout
       -> MLP(head..., ReLU) -> logits

The optional convolutional front end (`cfg.conv`: channels per layer, `cfg.conv_width` wide,
zero 'SAME' padding over time) feeds the recurrent layer local features, as in LSTM-FCN
(Karim et al. 2018); none in the seed.

The seed's activity net is `hidden=128, head=(70, 30)`, read out from the last hidden state.
`cfg` is any config with the fields used below (the activity experiments' config has them all).
"""

import jax
import jax.numpy as jnp

from jaxml import augment, nn, recurrent


def init(key, cfg, *, n_features: int, n_classes: int, dtype=jnp.float32) -> dict:
  """Params {"rnn": cell params, "head": mlp params}, plus "rnn_bwd" (the right-to-left
  cell) when cfg.bidirectional and "conv": [conv1d params per layer] when cfg.conv. Uses
  cfg.cell, .hidden, .head, .forget_bias, .readout, .conv, .conv_width."""
  if not isinstance(cfg.bidirectional, bool):  # e.g. None ("by the data") left unresolved
    raise ValueError(f"cfg.bidirectional must be True or False, got {cfg.bidirectional!r}; "
                     "resolve it first (experiments.activity.scaled_by_data)")
  k_rnn, k_head = jax.random.split(key)
  cell = recurrent.get_cell(cfg.cell)
  params = {}
  if cfg.conv:  # a key of its own, so the recurrent layer and the head start as without it
    k_conv = jax.random.split(jax.random.fold_in(key, 7), len(cfg.conv))
    sizes = (n_features, *cfg.conv)
    params["conv"] = [nn.conv1d_init(k, cfg.conv_width, a, b, dtype)
                      for k, a, b in zip(k_conv, sizes[:-1], sizes[1:])]
    n_features = cfg.conv[-1]
  params["rnn"] = cell.init(k_rnn, n_features, cfg.hidden, dtype, forget_bias=cfg.forget_bias)
  per_step = cfg.hidden
  if cfg.bidirectional:
    # A key of its own, so the forward layer and the head start as in a one-way net.
    params["rnn_bwd"] = cell.init(jax.random.fold_in(k_rnn, 1), n_features, cfg.hidden, dtype,
                                  forget_bias=cfg.forget_bias)
    per_step *= 2
  params["head"] = nn.mlp_init(k_head, (recurrent.readout_size(cfg.readout, per_step),
                                        *cfg.head, n_classes), dtype)
  return params


def features(params, x, *, cfg, mask=None):
  """The recurrent layer's summary of each sequence: f[batch, F] (recurrent.readout).

  readout "last": the final hidden state (the last unmasked step when `mask` is given);
  "mean" / "max": over (unmasked) time steps; "mean_max": both. With cfg.bidirectional a
  second cell reads each series from its own last real step back, and its states are
  concatenated with the forward ones. cfg.backward ("fast"/"autodiff") picks how the
  gradient through time is computed. The conv front end (if any) runs first; its inputs and
  outputs are zeroed on masked steps, so padding reads as the convolution's own zero padding.
  """
  if "conv" in params:
    keep = None if mask is None else mask.astype(x.dtype)[..., None]
    for layer in params["conv"]:
      x = x if keep is None else x * keep
      x = jax.nn.relu(nn.conv1d(layer, x))
    x = x if keep is None else x * keep
  layer = {"fwd": params["rnn"], **({"bwd": params["rnn_bwd"]} if cfg.bidirectional else {})}
  hs, final = recurrent.stack_run(cfg.cell, [layer], x, mask, hidden=cfg.hidden,
                                  unroll=cfg.unroll, backward=cfg.backward)
  return recurrent.readout(cfg.readout, hs, final, mask)


def apply(params, x, *, cfg, mask=None, train: bool = False, key=None):
  """x: f[batch, time, features] -> logits f[batch, classes].

  mask: optional f/bool[batch, time], 1 on valid steps; padded steps (0) leave the recurrent
  carry unchanged and are left out of the mean and max, so a series' logits do not depend on
  how much padding follows it (tests/test_variable_length.py).
  In training, cfg.input_noise > 0 adds Gaussian noise of that standard deviation to every
  (valid) input value (jitter augmentation, in the units of the normalised inputs), and
  cfg.crop > 0 keeps a random window of each series, at least (1 - crop) of its valid steps
  (`augment.random_crop_mask`: the other steps are masked out).
  """
  k_in = k_mlp = None
  if train and cfg.dropout > 0:
    k_in, k_mlp = jax.random.split(key)
  if train and cfg.input_noise > 0:
    x = x + cfg.input_noise * jax.random.normal(jax.random.fold_in(key, 2), x.shape, x.dtype)
    if mask is not None:
      x = x * mask.astype(x.dtype)[..., None]  # padding stays 0, as the loader wrote it
  if train and cfg.crop > 0:
    mask = augment.random_crop_mask(jax.random.fold_in(key, 3), mask, x.shape[:2], cfg.crop)
  h = features(params, x, cfg=cfg, mask=mask)
  h = nn.dropout(h, cfg.dropout, key=k_in, train=train)
  return nn.mlp(params["head"], h, activation="relu", dropout_rate=cfg.dropout, train=train,
                key=k_mlp)
