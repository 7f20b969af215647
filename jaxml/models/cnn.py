"""Image classifiers: the seeds' CNN and LeNet-5, as init/apply pure functions.

    seed_cnn: conv 5x5x32 (same) + ReLU -> pool 2 -> conv 5x5x64 (same) + ReLU -> pool 2
              -> dense 1024 + ReLU -> dropout -> dense classes
    lenet5:   C1 conv 5x5x6 (same) + act -> S2 pool 2 -> C3 conv 5x5x16 (valid) + act
              -> S4 pool 2 -> C5 120 + act -> F6 84 + act -> classes

x: f[batch, H, W, channels] (NHWC), any H, W and class count. LeNet-5's C5 is a 5x5 convolution
over S4's 5x5 maps (on 28x28 input), which is the same as a dense layer over the flattened S4;
we write it as dense so that other image sizes (faces: 25x25) work unchanged. Uses cfg.arch (a
key of `ARCHS`), .pool ("max"/"avg"), .activation (LeNet-5 only: "relu"/"tanh"), .dropout.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxml import nn


def _features(h: int, w: int, size: tuple[int, int], arch: str) -> tuple[int, int]:
  if size[0] < 1 or size[1] < 1:
    raise ValueError(f"{arch} needs larger images than {h}x{w}")
  return size


def seed_cnn_init(key, cfg, *, input_shape, n_classes: int, dtype=jnp.float32) -> dict:
  h, w, c = input_shape
  fh, fw = _features(h, w, (h // 2 // 2, w // 2 // 2), "seed_cnn")
  k = jax.random.split(key, 5)
  return {"conv1": nn.conv2d_init(k[0], 5, c, 32, dtype),
          "conv2": nn.conv2d_init(k[1], 5, 32, 64, dtype),
          "dense1": nn.dense_init(k[2], fh * fw * 64, 1024, dtype),
          "out": nn.dense_init(k[3], 1024, n_classes, dtype)}


def seed_cnn_apply(params, x, *, cfg, train: bool = False, key=None):
  pool = nn.POOLS[cfg.pool]
  h = pool(jax.nn.relu(nn.conv2d(params["conv1"], x)))
  h = pool(jax.nn.relu(nn.conv2d(params["conv2"], h)))
  h = jax.nn.relu(nn.dense(params["dense1"], h.reshape(h.shape[0], -1)))
  h = nn.dropout(h, cfg.dropout, key=key, train=train)
  return nn.dense(params["out"], h)


def lenet5_init(key, cfg, *, input_shape, n_classes: int, dtype=jnp.float32) -> dict:
  h, w, c = input_shape
  fh, fw = _features(h, w, ((h // 2 - 4) // 2, (w // 2 - 4) // 2), "lenet5")
  k = jax.random.split(key, 5)
  return {"c1": nn.conv2d_init(k[0], 5, c, 6, dtype),
          "c3": nn.conv2d_init(k[1], 5, 6, 16, dtype),
          "c5": nn.dense_init(k[2], fh * fw * 16, 120, dtype),
          "f6": nn.dense_init(k[3], 120, 84, dtype),
          "out": nn.dense_init(k[4], 84, n_classes, dtype)}


def lenet5_apply(params, x, *, cfg, train: bool = False, key=None):
  pool = nn.POOLS[cfg.pool]
  act = nn.ACTIVATIONS[cfg.activation]
  h = pool(act(nn.conv2d(params["c1"], x)))
  h = pool(act(nn.conv2d(params["c3"], h, padding="VALID")))
  h = act(nn.dense(params["c5"], h.reshape(h.shape[0], -1)))
  h = act(nn.dense(params["f6"], h))
  h = nn.dropout(h, cfg.dropout, key=key, train=train)
  return nn.dense(params["out"], h)


@dataclasses.dataclass(frozen=True)
class Arch:
  """One image classifier: init(key, cfg, *, input_shape, n_classes, dtype) -> params and
  apply(params, x, *, cfg, train, key) -> logits; `first_layer` names its first convolution."""
  init: Callable
  apply: Callable
  first_layer: str
  title: str                        # for plot titles and logs


ARCHS: dict[str, Arch] = {
    "seed_cnn": Arch(seed_cnn_init, seed_cnn_apply, "conv1", "seed CNN"),
    "lenet5": Arch(lenet5_init, lenet5_apply, "c1", "LeNet-5"),
}


def init(key, cfg, *, input_shape, n_classes: int, dtype=jnp.float32) -> dict:
  """input_shape = (H, W, channels)."""
  return ARCHS[cfg.arch].init(key, cfg, input_shape=input_shape, n_classes=n_classes,
                              dtype=dtype)


def apply(params, x, *, cfg, train: bool = False, key=None):
  """x: f[batch, H, W, channels] -> logits f[batch, classes]."""
  return ARCHS[cfg.arch].apply(params, x, cfg=cfg, train=train, key=key)


def first_layer_filters(params, cfg) -> jnp.ndarray:
  """The first convolution's kernels f[k, k, c_in, c_out], for pictures."""
  return params[ARCHS[cfg.arch].first_layer]["w"]
