"""Recurrent cells (tanh RNN, LSTM, GRU) as pure functions, and the `lax.scan` runner.

Every cell is `cell(params, carry, x_t) -> (carry, h_t)` with `x_t: f[batch, n_in]` and
`h_t: f[batch, hidden]`. Internally each cell is split in two so the runner can hoist the input
projection out of the time loop (one big matmul over all steps instead of T small ones):

  project(params, x) = x @ w_x + b          # any leading shape, gates fused along the last axis
  step(params, carry, xp_t) -> (carry, h_t) # the recurrence proper, on projected inputs

and `cell(params, carry, x_t) == step(params, carry, project(params, x_t))`. Gates are fused
into one weight matrix per input so each time step does one (LSTM, RNN) or two (GRU) matmuls.

Equations (sigma = logistic sigmoid, * = elementwise):
  RNN:  h' = tanh(x W + h U + b)                              (seed: h(t) = f_H(W_IH x + W_HH h(t-1)))
  LSTM: i, f, g, o = sigma(.), sigma(.), tanh(.), sigma(.) of  x W + h U + b
        c' = f * c + i * g;  h' = o * tanh(c')                (seed, Hochreiter & Schmidhuber)
  GRU:  z = sigma(x W_z + h U_z + b_z);  r = sigma(x W_r + h U_r + b_r)
        h~ = tanh(x W_h + (r * h) U_h + b_h);  h' = (1 - z) * h + z * h~   (seed, Cho et al. 2014)
The seed's GRU text writes the candidate as `U_h . h_{t-1} * r_t`, which reads as r * (h U_h)
(the cuDNN variant); its code applies r to h before U_h, as above, and so do we.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxml import bptt
from jaxml.nn import xavier_uniform

Params = dict


def _gate_weights(key, n_in: int, hidden: int, n_gates: int, dtype):
  """Xavier-uniform per gate block (fan = n_in, hidden), concatenated: f[n_in, n_gates*hidden]."""
  keys = jax.random.split(key, n_gates)
  return jnp.concatenate(
      [xavier_uniform(k, (n_in, hidden), n_in, hidden, dtype) for k in keys], axis=1)


def project(params: Params, x):
  """Input projection shared by all cells: f[..., n_in] -> f[..., n_gates*hidden]."""
  return x @ params["w_x"] + params["b"]


# ----------------------------------------------------------------------------- tanh RNN
def rnn_init(key, n_in: int, hidden: int, dtype=jnp.float32, **_) -> Params:
  kx, kh = jax.random.split(key)
  return {"w_x": _gate_weights(kx, n_in, hidden, 1, dtype),
          "w_h": _gate_weights(kh, hidden, hidden, 1, dtype),
          "b": jnp.zeros((hidden,), dtype)}


def rnn_step(params: Params, h, xp_t):
  h = jnp.tanh(xp_t + h @ params["w_h"])
  return h, h


# ----------------------------------------------------------------------------- LSTM
def lstm_init(key, n_in: int, hidden: int, dtype=jnp.float32, forget_bias: float = 1.0,
              **_) -> Params:
  """Gate order i, f, g, o. `forget_bias` starts the forget gate open (Jozefowicz et al. 2015)."""
  kx, kh = jax.random.split(key)
  b = jnp.zeros((4 * hidden,), dtype).at[hidden:2 * hidden].set(forget_bias)
  return {"w_x": _gate_weights(kx, n_in, hidden, 4, dtype),
          "w_h": _gate_weights(kh, hidden, hidden, 4, dtype),
          "b": b}


def lstm_step(params: Params, carry, xp_t):
  h, c = carry
  i, f, g, o = jnp.split(xp_t + h @ params["w_h"], 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return (h, c), h


# ----------------------------------------------------------------------------- GRU
def gru_init(key, n_in: int, hidden: int, dtype=jnp.float32, **_) -> Params:
  """w_x: [n_in, 3H] for (z, r, h~); w_h: [H, 2H] for (z, r); u_c: [H, H] for the candidate."""
  kx, kh, kc = jax.random.split(key, 3)
  return {"w_x": _gate_weights(kx, n_in, hidden, 3, dtype),
          "w_h": _gate_weights(kh, hidden, hidden, 2, dtype),
          "u_c": _gate_weights(kc, hidden, hidden, 1, dtype),
          "b": jnp.zeros((3 * hidden,), dtype)}


def gru_step(params: Params, h, xp_t):
  xz, xr, xc = jnp.split(xp_t, 3, axis=-1)
  hz, hr = jnp.split(h @ params["w_h"], 2, axis=-1)
  z = jax.nn.sigmoid(xz + hz)
  r = jax.nn.sigmoid(xr + hr)
  cand = jnp.tanh(xc + (r * h) @ params["u_c"])
  h = (1.0 - z) * h + z * cand
  return h, h


# ----------------------------------------------------------------------------- registry
class Cell(NamedTuple):
  """A recurrent cell: `init(key, n_in, hidden, dtype, **opts)`, `step`, and the zero carry."""
  init: Callable
  step: Callable
  zero_carry: Callable  # (batch, hidden, dtype) -> carry


def _zeros(batch, hidden, dtype):
  return jnp.zeros((batch, hidden), dtype)


CELLS: dict[str, Cell] = {
    "rnn": Cell(rnn_init, rnn_step, _zeros),
    "lstm": Cell(lstm_init, lstm_step, lambda b, h, d: (_zeros(b, h, d), _zeros(b, h, d))),
    "gru": Cell(gru_init, gru_step, _zeros),
}


def cell_fn(kind: str) -> Callable:
  """The plain per-step cell `(params, carry, x_t) -> (carry, h_t)` of the given kind."""
  step = CELLS[kind].step
  return lambda params, carry, x_t: step(params, carry, project(params, x_t))


BACKWARDS = ("bptt", "autodiff")


def run(kind: str, params: Params, x, carry=None, mask=None, *, reverse: bool = False,
        unroll: int = 1, backward: str = "bptt"):
  """Runs a cell over time with `lax.scan`.

  Args:
    kind: "rnn", "lstm" or "gru".
    x: f[batch, time, n_in], batch-major as data usually is.
    carry: initial carry (zeros if None); LSTM's carry is the pair (h, c).
    mask: optional bool/float [batch, time]; where 0 the step is skipped (carry unchanged, output
      zero), so padded positions cannot change the final state. A constant: no gradient flows
      into it with backward="bptt".
    reverse: run from the last step to the first (for a backward direction).
    backward: how the gradient through time is computed (same numbers up to float rounding):
      "bptt", the hand-written backward pass of `jaxml.bptt` (faster: the recurrent weight
      gradients become one matmul after the backward scan); "autodiff", JAX's derivative of the
      plain scan below. A cell whose `step` you edit needs its backward in bptt.py edited too,
      or "autodiff".
  Returns:
    (final carry, hs: f[batch, time, hidden]).
  """
  if backward not in BACKWARDS:
    raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
  cell = CELLS[kind]
  batch, _, _ = x.shape
  hidden = params["w_h"].shape[0]
  if carry is None:
    carry = cell.zero_carry(batch, hidden, x.dtype)
  # Time-major [T, B, G*H], as the scan walks axis 0. Transposing x (n_in wide) before the
  # projection is cheaper than transposing the G*H-wide projection, forward and backward.
  xp = project(params, jnp.swapaxes(x, 0, 1))
  m = None if mask is None else jnp.swapaxes(mask, 0, 1).astype(x.dtype)[..., None]  # [T, B, 1]

  if backward == "bptt":
    rec = {k: v for k, v in params.items() if k not in ("w_x", "b")}
    carry, hs = bptt.recurrence(kind, rec, xp, carry, m, reverse, unroll)
  elif m is None:
    body = lambda c, xp_t: cell.step(params, c, xp_t)
    carry, hs = lax.scan(body, carry, xp, reverse=reverse, unroll=unroll)
  else:
    def body(c, inputs):
      xp_t, m_t = inputs
      new_c, h_t = cell.step(params, c, xp_t)
      keep = lambda new, old: m_t * new + (1.0 - m_t) * old
      return jax.tree.map(keep, new_c, c), h_t * m_t

    carry, hs = lax.scan(body, carry, (xp, m), reverse=reverse, unroll=unroll)
  return carry, jnp.swapaxes(hs, 0, 1)


def final_hidden(kind: str, carry):
  """The hidden state h from a final carry (LSTM's carry is (h, c))."""
  return carry[0] if kind == "lstm" else carry


# ----------------------------------------------------------------------------- layer stacks
def stack_init(key, kind: str, n_in: int, hidden: int, *, layers: int = 1,
               bidirectional: bool = False, dtype=jnp.float32, **opts) -> list:
  """Params of `layers` recurrent layers, each {"fwd": cell} or {"fwd", "bwd"} (bidirectional).

  Layer l > 0 reads the previous layer's outputs (hidden, or 2*hidden when bidirectional).
  """
  init = CELLS[kind].init
  out, dirs = [], 2 if bidirectional else 1
  for k in jax.random.split(key, layers):
    k_f, k_b = jax.random.split(k)
    layer = {"fwd": init(k_f, n_in, hidden, dtype, **opts)}
    if bidirectional:
      layer["bwd"] = init(k_b, n_in, hidden, dtype, **opts)
    out.append(layer)
    n_in = dirs * hidden
  return out


def stack_run(kind: str, params: list, x, mask=None, *, unroll: int = 1,
              between: Callable | None = None, backward: str = "bptt"):
  """Runs a stack from `stack_init` over x: f[batch, time, n_in].

  A backward direction reads the sequence from its last step; with `mask` its padded steps are
  skipped like the forward ones, so it starts at each sequence's own last real step.
  `between(l, hs)`, if given, maps layer l's outputs before layer l + 1 reads them (dropout).
  `backward`: "bptt" or "autodiff", as in `run`.
  Returns (hs: f[batch, time, dirs*hidden] of the last layer,
           final: f[batch, dirs*hidden], its final hidden states (forward, then backward)).
  """
  for l, layer in enumerate(params):
    if l > 0 and between is not None:
      x = between(l, x)
    c_f, hs = run(kind, layer["fwd"], x, mask=mask, unroll=unroll, backward=backward)
    finals = [final_hidden(kind, c_f)]
    if "bwd" in layer:
      c_b, hs_b = run(kind, layer["bwd"], x, mask=mask, reverse=True, unroll=unroll,
                      backward=backward)
      hs = jnp.concatenate([hs, hs_b], axis=-1)
      finals.append(final_hidden(kind, c_b))
    x = hs
  return x, jnp.concatenate(finals, axis=-1)
