"""The seed's hand-derived CNN backward passes: a test reference (tests/test_cnn.py), never
used in training, which differentiates jaxml.models.cnn with `jax.grad`.

Notation (the seed's): layer l computes x^l = conv(o^{l-1}, w^l) + b^l and o^l = a(x^l);
delta^l = dL/dx^l is the error arriving at layer l. Everything is NHWC / HWIO.

The seed's conv-weight derivation is right in its first lines and then mixes indices: from its
fourth line on it writes delta^l_{i,j,c} (indexed by the *input* channel c) where it must be
delta^l_{i,j,d} (the *output* channel d of the filter w_{.,.,c,d}). The corrected formula is

    dL/dw_{m',n',c,d} = sum_{i,j} delta^l_{i,j,d} * o^{l-1}_{i+m', j+n', c}
    dL/db_d           = sum_{i,j} delta^l_{i,j,d}

summed over the batch too. The seed also writes the max-pooling block of output (i, j) as
i <= m < i + N, which is a stride-1 (overlapping) window; its pooling has stride N, so the block
is N*i <= m < N*i + N. Both corrected forms are implemented below and checked in
tests/test_cnn.py (the tests named for the seed). The error passed further down (not derived
in the seed) is the 'full' correlation of delta with the flipped kernel:

    dL/do^{l-1}_{p,q,c} = sum_{m,n,d} delta^l_{p-m, q-n, d} * w_{m,n,c,d}.
"""

import jax.numpy as jnp
import numpy as np


def _pad_same(x, k: int):
  lo = (k - 1) // 2
  return jnp.pad(x, ((0, 0), (lo, k - 1 - lo), (lo, k - 1 - lo), (0, 0)))


def conv_weight_grad(delta, o_prev, k: int, padding: str = "SAME"):
  """dL/dw: f[k, k, C, D] from delta f[B, H', W', D] and the layer input o_prev f[B, H, W, C]."""
  o = _pad_same(o_prev, k) if padding == "SAME" else o_prev
  h, w = delta.shape[1], delta.shape[2]
  rows = []
  for m in range(k):
    cols = []
    for n in range(k):
      window = o[:, m:m + h, n:n + w, :]  # o^{l-1}_{i+m, j+n, c} for every output (i, j)
      cols.append(jnp.einsum("bijd,bijc->cd", delta, window))
    rows.append(jnp.stack(cols))
  return jnp.stack(rows)


def conv_bias_grad(delta):
  """dL/db: f[D] = sum over batch and positions of delta."""
  return jnp.sum(delta, axis=(0, 1, 2))


def conv_input_grad(delta, w, in_shape, padding: str = "SAME"):
  """dL/do^{l-1}: each output error is spread back over the input patch it was computed from."""
  k = w.shape[0]
  b, h, ww, c = in_shape
  lo = (k - 1) // 2 if padding == "SAME" else 0
  ph, pw = (h + k - 1, ww + k - 1) if padding == "SAME" else (h, ww)
  grad = jnp.zeros((b, ph, pw, c), delta.dtype)
  hd, wd = delta.shape[1], delta.shape[2]
  for m in range(k):
    for n in range(k):
      grad = grad.at[:, m:m + hd, n:n + wd, :].add(jnp.einsum("bijd,cd->bijc", delta, w[m, n]))
  return grad[:, lo:lo + h, lo:lo + ww, :]


def max_pool_backward(delta, x, size: int = 2):
  """Max-pooling: the error of each block goes to its winning unit; the others get zero.

  x: the pooling input f[B, H, W, C]; delta: error of the output f[B, H//size, W//size, C].
  (Ties would split the choice; test inputs have none.)"""
  b, h, w, c = x.shape
  hs, ws = h // size, w // size
  blocks = x[:, :hs * size, :ws * size].reshape(b, hs, size, ws, size, c)
  win = blocks == blocks.max(axis=(2, 4), keepdims=True)
  g = (win * delta[:, :, None, :, None, :]).reshape(b, hs * size, ws * size, c)
  return jnp.zeros_like(x).at[:, :hs * size, :ws * size].set(g)


def avg_pool_backward(delta, x_shape, size: int = 2):
  """Average pooling: every unit of a block gets the block's error times 1 / N^2."""
  b, h, w, c = x_shape
  g = jnp.repeat(jnp.repeat(delta, size, axis=1), size, axis=2) / (size * size)
  return jnp.zeros(x_shape, delta.dtype).at[:, :g.shape[1], :g.shape[2]].set(g)


def relu_backward(delta, x):
  return delta * (x > 0)


def _seed_cnn_forward(params, x, pool: str):
  """The seed net's forward pass written out (ReLU, no dropout), keeping what backprop needs."""
  from jaxml import nn
  pool_fn = nn.POOLS[pool]
  c1, c2, d1, d2 = (params["conv1"], params["conv2"], params["dense1"], params["out"])
  x1 = nn.conv2d(c1, x); o1 = jnp.maximum(x1, 0); p1 = pool_fn(o1)
  x2 = nn.conv2d(c2, p1); o2 = jnp.maximum(x2, 0); p2 = pool_fn(o2)
  f = p2.reshape(len(x), -1)
  x3 = f @ d1["w"] + d1["b"]; o3 = jnp.maximum(x3, 0)
  logits = o3 @ d2["w"] + d2["b"]
  return logits, (x1, o1, p1, x2, o2, p2, f, x3, o3)


def seed_cnn_logits(params, x, pool: str = "max"):
  """The seed net's logits f[B, classes] by the seed's layer equations (no dropout)."""
  return _seed_cnn_forward(params, x, pool)[0]


def seed_cnn_grads(params, x, labels, pool: str = "max"):
  """dL/dparams of the seed CNN (no dropout) by the hand-derived rules above, chained layer by
  layer; L is the mean softmax cross-entropy of `seed_cnn_logits`. The seed's model is what
  jaxml.models.cnn.seed_cnn_apply computes today; tests/test_cnn.py pins that it still does."""
  c1, c2, d1, d2 = (params["conv1"], params["conv2"], params["dense1"], params["out"])
  logits, (x1, o1, p1, x2, o2, p2, f, x3, o3) = _seed_cnn_forward(params, x, pool)
  p = jnp.exp(logits - logits.max(-1, keepdims=True)); p = p / p.sum(-1, keepdims=True)
  onehot = jnp.asarray(np.eye(logits.shape[-1]))[labels]
  d_logits = (p - onehot) / len(x)                    # softmax + cross-entropy, mean over batch
  g_out = {"w": o3.T @ d_logits, "b": d_logits.sum(0)}
  d3 = relu_backward(d_logits @ d2["w"].T, x3)
  g_d1 = {"w": f.T @ d3, "b": d3.sum(0)}
  d_p2 = (d3 @ d1["w"].T).reshape(p2.shape)
  back = (lambda d, o: max_pool_backward(d, o)) if pool == "max" else (
      lambda d, o: avg_pool_backward(d, o.shape))
  d2_ = relu_backward(back(d_p2, o2), x2)
  g_c2 = {"w": conv_weight_grad(d2_, p1, c2["w"].shape[0]), "b": conv_bias_grad(d2_)}
  d_p1 = conv_input_grad(d2_, c2["w"], p1.shape)
  d1_ = relu_backward(back(d_p1, o1), x1)
  g_c1 = {"w": conv_weight_grad(d1_, x, c1["w"].shape[0]), "b": conv_bias_grad(d1_)}
  return {"conv1": g_c1, "conv2": g_c2, "dense1": g_d1, "out": g_out}
