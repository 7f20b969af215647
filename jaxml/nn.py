"""Feed-forward building blocks as init/apply pairs over dict pytrees.

Shapes: `x: f[batch, features]`; a dense layer's params are `{"w": f[n_in, n_out], "b": f[n_out]}`.
"""

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

Params = dict


def xavier_uniform(key, shape, fan_in: int, fan_out: int, dtype=jnp.float32):
  """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010; the seed's init)."""
  limit = (6.0 / (fan_in + fan_out)) ** 0.5
  return jax.random.uniform(key, shape, dtype, -limit, limit)


def dense_init(key, n_in: int, n_out: int, dtype=jnp.float32) -> Params:
  """Xavier-uniform weights, zero bias."""
  return {"w": xavier_uniform(key, (n_in, n_out), n_in, n_out, dtype),
          "b": jnp.zeros((n_out,), dtype)}


def dense(params: Params, x):
  """x: f[..., n_in] -> f[..., n_out]."""
  return x @ params["w"] + params["b"]


ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}


def mlp_init(key, sizes: Sequence[int], dtype=jnp.float32) -> Params:
  """An MLP with layer sizes `sizes = (n_in, h1, ..., n_out)`: {"layers": [dense params, ...]}."""
  keys = jax.random.split(key, len(sizes) - 1)
  return {"layers": [dense_init(k, a, b, dtype) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]}


def dropout(x, rate: float, *, key, train: bool):
  """Inverted dropout: zeroes a fraction `rate` of units in training and rescales the rest."""
  if not train or rate == 0.0:
    return x
  if key is None:
    raise ValueError("dropout in training needs an explicit PRNG key")
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def mlp(params: Params, x, *, activation: str = "relu", dropout_rate: float = 0.0,
        train: bool = False, key=None):
  """x: f[batch, n_in] -> f[batch, n_out]; `activation` between layers, none after the last.

  Dropout (if any) is applied to the input of every hidden and output layer in training.
  """
  act = ACTIVATIONS[activation]
  layers = params["layers"]
  keys = jax.random.split(key, len(layers)) if (train and dropout_rate > 0) else [None] * len(layers)
  for i, (layer, k) in enumerate(zip(layers, keys)):
    if i > 0:
      x = dropout(act(x), dropout_rate, key=k, train=train)
    x = dense(layer, x)
  return x


# ----------------------------------------------------------------------------- convolution
def conv2d_init(key, kernel: int, c_in: int, c_out: int, dtype=jnp.float32) -> Params:
  """{"w": f[k, k, c_in, c_out] (HWIO), "b": f[c_out]}; Xavier-uniform over the receptive field."""
  fan_in, fan_out = kernel * kernel * c_in, kernel * kernel * c_out
  return {"w": xavier_uniform(key, (kernel, kernel, c_in, c_out), fan_in, fan_out, dtype),
          "b": jnp.zeros((c_out,), dtype)}


def conv2d(params: Params, x, padding: str = "SAME"):
  """Cross-correlation (what deep-learning 'convolution' means; the seed explains why):
  out[b, i, j, d] = sum_{m, n, c} w[m, n, c, d] * x[b, i + m, j + n, c] + b[d].
  x: f[batch, H, W, c_in] (NHWC) -> f[batch, H', W', c_out]; H' = H ('SAME') or H - k + 1."""
  y = jax.lax.conv_general_dilated(x, params["w"], window_strides=(1, 1), padding=padding,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + params["b"]


def _pool_blocks(x, size: int):
  """f[b, H, W, c] -> f[b, H // size, size, W // size, size, c]: the non-overlapping blocks.

  Rows and columns past the last full block are dropped (VALID pooling: 25x25 -> 12x12).
  """
  b, h, w, c = x.shape
  ho, wo = h // size, w // size
  return x[:, :ho * size, :wo * size, :].reshape(b, ho, size, wo, size, c)


def max_pool(x, size: int = 2):
  """Non-overlapping size x size max-pooling: f[b, H, W, c] -> f[b, H // size, W // size, c].

  Written as elementwise maxima of strided views rather than `lax.reduce_window`: XLA's CPU
  backend turns the reduce_window gradient into a slow select-and-scatter (seed CNN train step,
  batch 128: see BUILD_NOTES.md, "Speed"). Same values; at an exact tie inside a block the
  gradient is shared between the tied units instead of going to one of them.
  """
  blocks = _pool_blocks(x, size)
  rows = functools.reduce(jnp.maximum, [blocks[:, :, i] for i in range(size)])
  return functools.reduce(jnp.maximum, [rows[:, :, :, j] for j in range(size)])


def avg_pool(x, size: int = 2):
  """Non-overlapping size x size average-pooling: f[b, H, W, c] -> f[b, H // size, W // size, c]."""
  return jnp.mean(_pool_blocks(x, size), axis=(2, 4))


POOLS = {"max": max_pool, "avg": avg_pool}
