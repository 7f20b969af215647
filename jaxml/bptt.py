"""Hand-written backpropagation through time for the cells of `jaxml.recurrent`, as `custom_vjp`.

`recurrence(kind, rec_params, xp, carry, mask, reverse, unroll)` runs the recurrence proper on
already-projected inputs `xp: f[T, B, G*H]` (time-major) and returns `(final carry, hs: f[T, B,
H])`, the same numbers as the `lax.scan` of `recurrent.run`. Its gradient is derived by hand from
the cell equations (`jaxml/recurrent.py`'s docstring) instead of by autodiff of the scan, which
is faster on CPU for two reasons:

* the backward scan carries only dh (and dc for the LSTM) and emits the per-step pre-activation
  gradients dA_t: f[B, G*H]; the recurrent weight gradients sum_t h_{t-1}^T dA_t are then ONE
  matmul over all T*B rows after the scan, instead of T small matmul-and-adds inside the loop
  (the gradient w.r.t. the inputs `xp` is dA itself, so the input-projection weights also get
  one big matmul, done by autodiff of `recurrent.project`);
* the forward scan saves the gate activations; after it, one vectorised op over all steps turns
  them into the products of activations and derivatives the backward step needs (`local`), so
  the backward recomputes no sigmoid or tanh and each backward step is a few fused multiplies
  around its matmul(s).

Backward step per cell (m = mask at the step, dh', dc' = gradient w.r.t. the carry after the
step, dy = gradient w.r.t. the step's output; without a mask m = 1):
  all:  dh_new = m * (dh' + dy)            (h' = m h_new + (1 - m) h, y = m h_new)
  RNN:  da = dh_new * (1 - h_new^2);  dh = da U^T + (1 - m) dh'
  LSTM: dc_new = m dc' + dh_new * o * (1 - tanh(c_new)^2)
        da_i = dc_new g i (1 - i);  da_f = dc_new c f (1 - f);  da_g = dc_new i (1 - g^2)
        da_o = dh_new tanh(c_new) o (1 - o)
        dc = dc_new f + (1 - m) dc';  dh = da U^T + (1 - m) dh'
  GRU:  da_c = dh_new z (1 - h~^2);  d(r h) = da_c U_c^T
        da_z = dh_new (h~ - h) z (1 - z);  da_r = d(r h) h r (1 - r)
        dh = dh_new (1 - z) + d(r h) r + [da_z, da_r] W_h^T + (1 - m) dh'
  weights: dW_h = sum_t h_{t-1}^T dA_t (GRU: [da_z, da_r] only);
           GRU: dU_c = sum_t (r h_{t-1})^T da_c.

The mask is treated as a constant (it comes from the data): its cotangent is zero.

Editing a cell: `recurrent.py`'s step functions are the reference; the forward steps below
mirror them operation by operation (tests/test_bptt.py checks both values and gradients
against autodiff). If you change a cell's equations, change its `_*_fwd`, `_*_local` and
`_*_bwd` here too, or run with `backward="autodiff"` (the models' config field), which
differentiates the plain scan of `recurrent.run` and needs nothing else.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

KINDS = ("rnn", "lstm", "gru")


# ----------------------------------------------------------------------------- forward steps
# Each returns (new carry, acts): acts f[B, k*H] are the step's gate activations, saved for the
# backward pass. Everything else the backward step reads (`local` below) is computed from them
# after the forward scan, for all steps at once, which keeps these steps the same as the cells.
def _rnn_fwd(p, h, xp_t):
  h_new = jnp.tanh(xp_t + h @ p["w_h"])
  return h_new, None


def _lstm_fwd(p, carry, xp_t):
  h, c = carry
  i, f, g, o = jnp.split(xp_t + h @ p["w_h"], 4, axis=-1)
  i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
  c_new = f * c + i * g
  h_new = o * jnp.tanh(c_new)
  return (h_new, c_new), jnp.concatenate([i, f, g, o], axis=-1)


def _gru_fwd(p, h, xp_t):
  xz, xr, xc = jnp.split(xp_t, 3, axis=-1)
  hz, hr = jnp.split(h @ p["w_h"], 2, axis=-1)
  z = jax.nn.sigmoid(xz + hz)
  r = jax.nn.sigmoid(xr + hr)
  cand = jnp.tanh(xc + (r * h) @ p["u_c"])
  h_new = (1.0 - z) * h + z * cand
  return h_new, jnp.concatenate([z, r, cand], axis=-1)


# `local`: f[T, B, k*H], products of activations and their derivatives, from the saved acts and
# the carries before (prev) and after each step. At a skipped (masked) step the carry after is
# the old one, so these values are wrong there, but the backward multiplies them by m = 0.
def _rnn_local(acts, prev, after):
  return 1.0 - after * after


def _lstm_local(acts, prev, after):
  # dA = [dc_new, dc_new, dc_new, dh_new] * local[:4H]; dc_new = dh_new * local[4H:5H] + ...;
  # dc = dc_new * local[5H:] (= f).
  i, f, g, o = jnp.split(acts, 4, axis=-1)
  tc = jnp.tanh(after[1])
  return jnp.concatenate([g * i * (1.0 - i), prev[1] * f * (1.0 - f), i * (1.0 - g * g),
                          tc * o * (1.0 - o), o * (1.0 - tc * tc), f], axis=-1)


def _gru_local(acts, h, after):
  # da_z = dh_new * local[:H]; da_c = dh_new * local[H:2H]; da_r = d(r h) * local[2H:3H];
  # dh gets dh_new * local[3H:4H] + d(r h) * local[4H:] (= r, also needed for dU_c).
  z, r, cand = jnp.split(acts, 3, axis=-1)
  return jnp.concatenate([(cand - h) * z * (1.0 - z), z * (1.0 - cand * cand),
                          h * r * (1.0 - r), 1.0 - z, r], axis=-1)


# ----------------------------------------------------------------------------- backward steps
# Each maps (params, dh_new, dc', local) -> (gradient w.r.t. the carry before the step, but
# without a masked step's pass-through term, dA_t); dh_new already holds m * (dh' + dy) and
# dA_t is the gradient w.r.t. the projected input xp_t (= the pre-activations' gradient).
def _rnn_bwd(p, dh_new, dc_next, local, m):
  da = dh_new * local
  return da @ p["w_h"].T, da


def _lstm_bwd(p, dh_new, dc_next, local, m):
  hidden = dh_new.shape[-1]
  dc_new = dh_new * local[:, 4 * hidden:5 * hidden] + (dc_next if m is None else m * dc_next)
  da = jnp.concatenate([dc_new, dc_new, dc_new, dh_new], axis=-1) * local[:, :4 * hidden]
  return (da @ p["w_h"].T, dc_new * local[:, 5 * hidden:]), da


def _gru_bwd(p, dh_new, dc_next, local, m):
  hidden = dh_new.shape[-1]
  part = lambda k: local[:, k * hidden:(k + 1) * hidden]
  da_c = dh_new * part(1)
  d_rh = da_c @ p["u_c"].T
  da_zr = jnp.concatenate([dh_new * part(0), d_rh * part(2)], axis=-1)
  dh = dh_new * part(3) + d_rh * part(4) + da_zr @ p["w_h"].T
  return dh, jnp.concatenate([da_zr, da_c], axis=-1)


_FWD = {"rnn": _rnn_fwd, "lstm": _lstm_fwd, "gru": _gru_fwd}
_LOCAL = {"rnn": _rnn_local, "lstm": _lstm_local, "gru": _gru_local}
_BWD = {"rnn": _rnn_bwd, "lstm": _lstm_bwd, "gru": _gru_bwd}


def _scan_forward(kind, p, xp, carry, m, reverse, unroll, save):
  """The forward scan: (final carry, hs), plus with `save` the carries after every step
  (stacked, f[T, B, H] each) and the per-step gate activations f[T, B, k*H]."""
  fwd = _FWD[kind]

  def body(c, inputs):
    xp_t, m_t = inputs
    new_c, acts = fwd(p, c, xp_t)
    if m_t is not None:  # the masked update of `recurrent.run`: a skipped step keeps the carry
      new_c = jax.tree.map(lambda a, b: m_t * a + (1.0 - m_t) * b, new_c, c)
    h = new_c[0] if kind == "lstm" else new_c
    return new_c, ((new_c, acts) if save else h)

  final, out = lax.scan(body, carry, (xp, m), reverse=reverse, unroll=unroll)
  if not save:
    # An output is the new hidden state at a real step and zero at a skipped one, i.e. m * h'.
    return final, (out if m is None else out * m)
  afters, acts = out
  h_after = afters[0] if kind == "lstm" else afters
  return final, (h_after if m is None else h_after * m), afters, acts


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 5, 6))
def recurrence(kind: str, p: dict, xp, carry, m, reverse: bool, unroll: int):
  """The recurrence over projected inputs, differentiated by hand (see the module docstring).

  Args:
    kind: "rnn", "lstm" or "gru".
    p: the recurrent weights only: {"w_h"} (GRU: {"w_h", "u_c"}).
    xp: f[T, B, G*H], `recurrent.project` of the inputs, time-major.
    carry: the initial carry (LSTM: (h, c)), f[B, H] each.
    m: None, or the mask f[T, B, 1] (1 = real step, 0 = skipped: carry kept, output zero).
  Returns:
    (final carry, hs: f[T, B, H]).
  """
  return _scan_forward(kind, p, xp, carry, m, reverse, unroll, save=False)


def _recurrence_fwd(kind, p, xp, carry, m, reverse, unroll):
  final, hs, afters, acts = _scan_forward(kind, p, xp, carry, m, reverse, unroll, save=True)
  # The carries before every step: the carries after, shifted by one in scan order.
  if reverse:
    shift = lambda a, a0: jnp.concatenate([a[1:], a0[None]], axis=0)
  else:
    shift = lambda a, a0: jnp.concatenate([a0[None], a[:-1]], axis=0)
  prev = jax.tree.map(shift, afters, carry)
  local = _LOCAL[kind](acts, prev, afters)
  h_prev = prev[0] if kind == "lstm" else prev
  return (final, hs), (p, m, h_prev, local)


def _recurrence_bwd(kind, reverse, unroll, saved, cotangents):
  p, m, h_prev, local = saved
  d_final, d_hs = cotangents
  bwd = _BWD[kind]

  def body(dcarry, inputs):
    dy, m_t, local_t = inputs
    dh_next, dc_next = dcarry if kind == "lstm" else (dcarry, None)
    dh_new = dh_next + dy if m_t is None else m_t * (dh_next + dy)
    d_prev, da = bwd(p, dh_new, dc_next, local_t, m_t)
    if m_t is not None:  # a skipped step passes the carry's gradient straight through
      d_prev = jax.tree.map(lambda d, d_next: d + (1.0 - m_t) * d_next, d_prev, dcarry)
    return d_prev, da

  d_carry, da = lax.scan(body, d_final, (d_hs, m, local), reverse=not reverse, unroll=unroll)
  # Weight gradients: one matmul over all T*B rows each (the point of this module).
  hidden = h_prev.shape[-1]
  rows = lambda a: a.reshape(-1, a.shape[-1])
  if kind == "gru":
    r = local[..., 4 * hidden:]
    d_p = {"w_h": rows(h_prev).T @ rows(da[..., :2 * hidden]),
           "u_c": rows(r * h_prev).T @ rows(da[..., 2 * hidden:])}
  else:
    d_p = {"w_h": rows(h_prev).T @ rows(da)}
  d_m = None if m is None else jnp.zeros_like(m)
  return d_p, da, d_carry, d_m


recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
