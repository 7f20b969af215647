"""Image classifiers: the seeds' CNN and LeNet-5, as init/apply pure functions.

    seed:   conv 5x5x32 (same) + ReLU -> pool 2 -> conv 5x5x64 (same) + ReLU -> pool 2
            -> dense 1024 + ReLU -> dropout -> dense classes
    lenet5: C1 conv 5x5x6 (same) + act -> S2 pool 2 -> C3 conv 5x5x16 (valid) + act -> S4 pool 2
            -> C5 120 + act -> F6 84 + act -> classes

x: f[batch, H, W, channels] (NHWC), any H, W and class count. LeNet-5's C5 is a 5x5 convolution
over S4's 5x5 maps (on 28x28 input), which is the same as a dense layer over the flattened S4;
we write it as dense so that other image sizes (faces: 25x25) work unchanged. Uses cfg.arch,
.pool ("max"/"avg"), .activation (LeNet-5 only: "relu"/"tanh"), .dropout.
"""

import jax
import jax.numpy as jnp

from jaxml import nn


def _after_pools(h: int, w: int, arch: str) -> tuple[int, int]:
  """Spatial size after the conv/pool stack."""
  if arch == "seed":
    return h // 2 // 2, w // 2 // 2
  return (h // 2 - 4) // 2, (w // 2 - 4) // 2


def init(key, cfg, *, input_shape, n_classes: int, dtype=jnp.float32) -> dict:
  """input_shape = (H, W, channels)."""
  h, w, c = input_shape
  fh, fw = _after_pools(h, w, cfg.arch)
  if fh < 1 or fw < 1:
    raise ValueError(f"{cfg.arch} needs larger images than {h}x{w}")
  k = jax.random.split(key, 5)
  if cfg.arch == "seed":
    return {"conv1": nn.conv2d_init(k[0], 5, c, 32, dtype),
            "conv2": nn.conv2d_init(k[1], 5, 32, 64, dtype),
            "dense1": nn.dense_init(k[2], fh * fw * 64, 1024, dtype),
            "out": nn.dense_init(k[3], 1024, n_classes, dtype)}
  return {"c1": nn.conv2d_init(k[0], 5, c, 6, dtype),
          "c3": nn.conv2d_init(k[1], 5, 6, 16, dtype),
          "c5": nn.dense_init(k[2], fh * fw * 16, 120, dtype),
          "f6": nn.dense_init(k[3], 120, 84, dtype),
          "out": nn.dense_init(k[4], 84, n_classes, dtype)}


def apply(params, x, *, cfg, train: bool = False, key=None):
  """x: f[batch, H, W, channels] -> logits f[batch, classes]."""
  pool = nn.POOLS[cfg.pool]
  if cfg.arch == "seed":
    h = pool(jax.nn.relu(nn.conv2d(params["conv1"], x)))
    h = pool(jax.nn.relu(nn.conv2d(params["conv2"], h)))
    h = jax.nn.relu(nn.dense(params["dense1"], h.reshape(h.shape[0], -1)))
    h = nn.dropout(h, cfg.dropout, key=key, train=train)
    return nn.dense(params["out"], h)
  act = nn.ACTIVATIONS[cfg.activation]
  h = pool(act(nn.conv2d(params["c1"], x)))
  h = pool(act(nn.conv2d(params["c3"], h, padding="VALID")))
  h = act(nn.dense(params["c5"], h.reshape(h.shape[0], -1)))
  h = act(nn.dense(params["f6"], h))
  h = nn.dropout(h, cfg.dropout, key=key, train=train)
  return nn.dense(params["out"], h)


def first_layer_filters(params) -> jnp.ndarray:
  """The first convolution's kernels f[k, k, c_in, c_out], for pictures."""
  return params["conv1" if "conv1" in params else "c1"]["w"]
