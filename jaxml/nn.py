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
def conv1d_init(key, width: int, c_in: int, c_out: int, dtype=jnp.float32) -> Params:
  """{"w": f[width, c_in, c_out] (WIO), "b": f[c_out]}; Xavier-uniform over the receptive field."""
  return {"w": xavier_uniform(key, (width, c_in, c_out), width * c_in, width * c_out, dtype),
          "b": jnp.zeros((c_out,), dtype)}


def conv1d(params: Params, x):
  """Cross-correlation over time with zero 'SAME' padding (odd widths centre the window):
  out[b, t, d] = sum_{m, c} w[m, c, d] * x[b, t + m - (width - 1) // 2, c] + b[d].
  x: f[batch, time, c_in] -> f[batch, time, c_out].

  Because the padding is zeros, a series followed by zero steps gets the same outputs on its
  own steps as the series alone: sequence models mask their padding to zero before calling it.
  """
  w = params["w"]
  y = jax.lax.conv_general_dilated(x, w, window_strides=(1,), padding="SAME",
                                   dimension_numbers=("NWC", "WIO", "NWC"))
  return y + params["b"]


def conv2d_init(key, kernel: int, c_in: int, c_out: int, dtype=jnp.float32) -> Params:
  """{"w": f[k, k, c_in, c_out] (HWIO), "b": f[c_out]}; Xavier-uniform over the receptive field."""
  fan_in, fan_out = kernel * kernel * c_in, kernel * kernel * c_out
  return {"w": xavier_uniform(key, (kernel, kernel, c_in, c_out), fan_in, fan_out, dtype),
          "b": jnp.zeros((c_out,), dtype)}


def conv2d(params: Params, x, padding: str = "SAME", impl: str = "auto"):
  """Cross-correlation (what deep-learning 'convolution' means; the seed explains why):
  out[b, i, j, d] = sum_{m, n, c} w[m, n, c, d] * x[b, i + m, j + n, c] + b[d].
  x: f[batch, H, W, c_in] (NHWC) -> f[batch, H', W', c_out]; H' = H ('SAME') or H - k + 1.

  The definition is `conv2d_lax` (XLA's convolution). impl="auto" computes the *forward* of
  small-patch, few-filter layers (`use_im2col`: LeNet-5's C1) as one matmul over the patches
  instead, which XLA:CPU runs several times faster there (BUILD_NOTES "Speed, second pass");
  its gradient is always the definition's own VJP, and its forward is compared with the
  definition on a probe before first use (`im2col_agrees`), so an edit to `conv2d_lax` counts
  or turns the shortcut off. impl="lax" always uses the definition.
  """
  w = params["w"]
  if impl not in ("auto", "lax"):
    raise ValueError(f"conv2d impl must be 'auto' or 'lax', got {impl!r}")
  if impl == "auto" and use_im2col(w.shape) and im2col_agrees(w.shape, padding):
    return _conv2d_im2col(padding, w, x) + params["b"]
  return conv2d_lax(w, x, padding) + params["b"]


def conv2d_lax(w, x, padding: str):
  """The definition: x f[B, H, W, c_in] (*) w f[k, k, c_in, c_out] -> f[B, H', W', c_out]."""
  return jax.lax.conv_general_dilated(x, w, window_strides=(1, 1), padding=padding,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


IM2COL_MAX_PATCH = 32    # c_in * k * k: LeNet-5's C1 is 25 (the seed CNN's conv1, 25 -> 32
IM2COL_MAX_FILTERS = 16  # filters, was slower with it; C3's 150-long patches too)


def use_im2col(w_shape) -> bool:
  k1, k2, c_in, c_out = w_shape
  return k1 * k2 * c_in <= IM2COL_MAX_PATCH and c_out <= IM2COL_MAX_FILTERS


def conv2d_im2col_forward(w, x, padding: str):
  """conv2d_lax's value as one matmul: the k*k shifted copies of x stacked taps-major into
  P f[c_in*k*k, B*H'*W'] and y^T = W^T P (the wide matmul, not [B*H'*W', 25] x [25, 6])."""
  k, _, c_in, c_out = w.shape
  if padding == "SAME":
    lo, hi = (k - 1) // 2, k // 2
    x = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
  b, h, wd = x.shape[0], x.shape[1] - k + 1, x.shape[2] - k + 1
  xc = jnp.moveaxis(x, -1, 0)  # [c_in, B, Hp, Wp]
  taps = jnp.stack([xc[:, :, i:i + h, j:j + wd] for i in range(k) for j in range(k)], axis=1)
  yt = jnp.transpose(w, (3, 2, 0, 1)).reshape(c_out, c_in * k * k) @ taps.reshape(-1, b * h * wd)
  return jnp.moveaxis(yt.reshape(c_out, b, h, wd), 0, -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _conv2d_im2col(padding, w, x):
  return conv2d_im2col_forward(w, x, padding)


def _conv2d_im2col_fwd(padding, w, x):
  return conv2d_im2col_forward(w, x, padding), (w, x)


def _conv2d_im2col_bwd(padding, residuals, g):
  w, x = residuals  # the gradient is the definition's: XLA's fast filter/input gradients
  return jax.vjp(lambda w, x: conv2d_lax(w, x, padding), w, x)[1](g)


_conv2d_im2col.defvjp(_conv2d_im2col_fwd, _conv2d_im2col_bwd)
_IM2COL_CHECKED: dict = {}


def im2col_agrees(w_shape, padding: str) -> bool:
  """Whether the im2col forward equals conv2d_lax for this filter shape and padding, on a
  random float32 probe (2 images of 12x12); computed once per (shape, padding), eagerly even
  inside a trace. A mismatch (someone edited one of them) warns and keeps the definition."""
  key = (tuple(w_shape), padding)
  if key not in _IM2COL_CHECKED:
    with jax.ensure_compile_time_eval():
      kw, kx = jax.random.split(jax.random.key(0))
      w = jax.random.normal(kw, w_shape, jnp.float32)
      x = jax.random.normal(kx, (2, 12, 12, w_shape[2]), jnp.float32)
      want, got = conv2d_lax(w, x, padding), conv2d_im2col_forward(w, x, padding)
      ok = want.shape == got.shape and bool(jnp.allclose(want, got, rtol=1e-4, atol=1e-4))
    if not ok:
      import warnings
      warnings.warn(f"jaxml.nn.conv2d: the im2col forward differs from conv2d_lax for filters "
                    f"{tuple(w_shape)}, padding {padding}; using conv2d_lax (the definition)")
    _IM2COL_CHECKED[key] = ok
  return _IM2COL_CHECKED[key]


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
