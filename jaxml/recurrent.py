"""Recurrent cells (tanh RNN, LSTM, GRU) as pure functions, the open cell registry, the scan runner.

A cell is a `Cell(init, step, zero_carry)` record in `CELLS` (the extension point: register a
record there and every recurrent experiment accepts `--config.cell=NAME`):

  init(key, n_in, hidden, dtype, **opts) -> params   # a dict with "w_x": f[n_in, G], "b": f[G]
  step(params, carry, xp_t) -> (carry, h_t)          # the recurrence, on projected inputs
  zero_carry(batch, hidden, dtype) -> carry          # any pytree of f[batch, ...] leaves
  readout(carry) -> f[batch, hidden]                 # optional: the carry's hidden state

`xp_t = project(params, x_t) = x_t @ w_x + b` (f[batch, G], G = gates x hidden) is shared by
all cells, so `step` is only the recurrence; the runner calls `project` inside the time loop,
step by step. (Hoisting it out of the loop as one big matmul was the obvious layout, and is
2-2.5x slower on XLA:CPU: a loop-body fusion that reads several gate slices of a
dynamic-sliced [T, B, G] array runs ~10x slower per element than one that slices the step's
own matmul output; BUILD_NOTES "Speed, second pass (issue 19)".) `step` must treat batch rows
independently (true of any per-example cell, also with layer normalisation over features; not
of batch normalisation): the fast backward below relies on it and the tests check it for every
registered cell.

Equations (sigma = logistic sigmoid, * = elementwise):
  RNN:  h' = tanh(x W + h U + b)                              (seed: h(t) = f_H(W_IH x + W_HH h(t-1)))
  LSTM: i, f, g, o = sigma(.), sigma(.), tanh(.), sigma(.) of  x W + h U + b
        c' = f * c + i * g;  h' = o * tanh(c')                (seed, Hochreiter & Schmidhuber)
  GRU:  z = sigma(x W_z + h U_z + b_z);  r = sigma(x W_r + h U_r + b_r)
        h~ = tanh(x W_h + (r * h) U_h + b_h);  h' = (1 - z) * h + z * h~   (seed, Cho et al. 2014)
The seed's GRU text writes the candidate as `U_h . h_{t-1} * r_t`, which reads as r * (h U_h)
(the cuDNN variant); its code applies r to h before U_h, as above, and so do we.

Gradients (`run(..., backward=...)`), both computed from `step` itself, so an edited or new cell
needs nothing else:
  "autodiff": `jax.grad` of the plain masked `lax.scan` below.
  "fast": a custom VJP derived from the same `step` (see `_fast_recurrence`). The backward scan
    is autodiff's transpose of the scan with the weights held constant, so it carries only the
    state cotangent and does no weight-gradient work per step; the weight gradients are then one
    vjp of `step` over all T*B (carry, input) rows at once (one big matmul per weight).
`run` defaults to "fast"; the activity and IMDB experiments default to "autodiff", which is as
fast or faster on their GRU/LSTM steps since the projection runs in the loop (issue 19,
benchmarks/recurrent_ab.py: one core, CPU time, interleaved).
tests/test_recurrent.py checks that both agree for every registered cell, and
tests/reference_rnn.py holds the seed's hand-derived BPTT as an independent reference.
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.extend
import jax.numpy as jnp
from jax import lax

from jaxml.errors import UserError
from jaxml.nn import xavier_uniform

Params = dict


def gate_weights(key, n_in: int, hidden: int, n_gates: int, dtype):
  """Xavier-uniform per gate block (fan = n_in, hidden), concatenated: f[n_in, n_gates*hidden]."""
  keys = jax.random.split(key, n_gates)
  return jnp.concatenate(
      [xavier_uniform(k, (n_in, hidden), n_in, hidden, dtype) for k in keys], axis=1)


def project(params: Params, x):
  """Input projection shared by all cells: f[..., n_in] -> f[..., G]."""
  return x @ params["w_x"] + params["b"]


# ----------------------------------------------------------------------------- tanh RNN
def rnn_init(key, n_in: int, hidden: int, dtype=jnp.float32, **_) -> Params:
  kx, kh = jax.random.split(key)
  return {"w_x": gate_weights(kx, n_in, hidden, 1, dtype),
          "w_h": gate_weights(kh, hidden, hidden, 1, dtype),
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
  return {"w_x": gate_weights(kx, n_in, hidden, 4, dtype),
          "w_h": gate_weights(kh, hidden, hidden, 4, dtype),
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
  return {"w_x": gate_weights(kx, n_in, hidden, 3, dtype),
          "w_h": gate_weights(kh, hidden, hidden, 2, dtype),
          "u_c": gate_weights(kc, hidden, hidden, 1, dtype),
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
def zeros_carry(batch: int, hidden: int, dtype):
  """The carry of a cell whose state is one f[batch, hidden] array."""
  return jnp.zeros((batch, hidden), dtype)


def first_leaf(carry):
  """Default readout: the carry itself if it is an array, else its first leaf (LSTM: h of (h, c))."""
  return jax.tree.leaves(carry)[0]


class Cell(NamedTuple):
  """A recurrent cell: `init(key, n_in, hidden, dtype, **opts)`, `step`, the zero carry, and how
  the hidden state is read from a carry (see the module docstring)."""
  init: Callable
  step: Callable
  zero_carry: Callable  # (batch, hidden, dtype) -> carry
  readout: Callable = first_leaf  # carry -> f[batch, hidden]


CELLS: dict[str, Cell] = {
    "rnn": Cell(rnn_init, rnn_step, zeros_carry),
    "lstm": Cell(lstm_init, lstm_step,
                 lambda b, h, d: (zeros_carry(b, h, d), zeros_carry(b, h, d))),
    "gru": Cell(gru_init, gru_step, zeros_carry),
}


def get_cell(name: str) -> Cell:
  """The registered cell `name`, looked up now (so a cell registered or replaced at run time is
  the one used); a UserError lists the valid names."""
  if name not in CELLS:
    raise UserError(f"unknown cell {name!r}; registered cells: {', '.join(CELLS)} (register a "
                    f"new one in jaxml.recurrent.CELLS; README 'Modifying a model')")
  return CELLS[name]


def cell_fn(kind: str) -> Callable:
  """The plain per-step cell `(params, carry, x_t) -> (carry, h_t)` of the given kind."""
  return functools.partial(_projected_step, get_cell(kind).step)


BACKWARDS = ("fast", "autodiff")


# ----------------------------------------------------------------------------- the time loop
def _skip_masked(m_t, new_c, h_t, c):
  """Where m_t is 0 the step is skipped: the old carry is kept and the output is zero."""
  if m_t is None:
    return new_c, h_t
  return jax.tree.map(lambda a, b: m_t * a + (1.0 - m_t) * b, new_c, c), m_t * h_t


def _masked_scan(step, params, xp, carry, m, reverse, unroll):
  """`step` over time: (final carry, hs f[T, B, H]).

  xp: f[T, B, ...], the step's inputs (`run` passes x itself, projected inside `step`);
  m: None or f[T, B, 1]; where 0 the step is skipped (carry kept, output zero).
  """

  def body(c, inputs):
    xp_t, m_t = inputs
    new_c, h_t = step(params, c, xp_t)
    new_c, h_t = _skip_masked(m_t, new_c, h_t, c)
    return new_c, h_t

  return lax.scan(body, carry, (xp, m), reverse=reverse, unroll=unroll)


# The fast backward. Autodiff of the scan accumulates every weight gradient inside the
# backward loop (per step and weight, a small [H, B] x [B, G] matmul and an add). Instead:
#  * the forward scan takes `jax.vjp` of `step` at every step and saves its residuals (what
#    autodiff would save), except those without a batch axis (the weights themselves, or values
#    computed from them alone), which each rebuilt vjp takes from its own trace;
#  * the backward scan rebuilds each step's vjp from its residuals and carries only the state
#    cotangent; the weight part of that vjp is unused, and XLA removes it from the loop;
#  * rows are independent, so the weight cotangents summed over steps are the vjp of `step`
#    traced once for all T*B rows, fed the same residuals: one big matmul per weight; the
#    inputs' cotangents come from the same vjp, vectorised, instead of out of the loop.
# Nothing here depends on what `step` computes; `_per_row` checks the row independence it needs.
def _step_vjp_parts(step, params, carry, xp_t):
  """(out, residuals, rebuild(residuals) -> vjp function) of `step` at (carry, xp_t)."""
  out, vjp = jax.vjp(step, params, carry, xp_t)
  leaves, treedef = jax.tree.flatten(vjp)
  return out, leaves, lambda new_leaves: jax.tree.unflatten(treedef, new_leaves)


def _per_row(step, params, carry, xp):
  """Which of the step's vjp residuals have a batch axis (a bool per residual), read from their
  shapes when the step is traced for B rows and for T*B rows.

  xp: f[T, B, ...], the step's inputs; carry: the f[B, ...] initial carry. Raises ValueError
  for a step whose residuals are not per row (e.g. batch normalisation over the batch).
  """
  n_steps, batch = xp.shape[:2]
  rows = lambda a: jax.ShapeDtypeStruct((n_steps * batch,) + a.shape[1:], a.dtype)
  residuals = lambda c, x: _step_vjp_parts(step, params, c, x)[1]
  one = jax.eval_shape(residuals, carry, xp[0])
  many = jax.eval_shape(residuals, jax.tree.map(rows, carry), rows(xp[0]))
  if len(one) != len(many):
    raise ValueError("the cell's step traces differently for other batch sizes; use "
                     "backward='autodiff'")
  from_inputs = _depends_on_inputs(residuals, carry, xp[0])
  flags = []
  for a, b, dep in zip(one, many, from_inputs):
    if a.shape[:1] == (batch,) and b.shape == rows(a).shape:
      flags.append(True)
    elif a.shape == b.shape and not dep:  # computed from the weights alone
      flags.append(False)
    else:
      raise ValueError(f"a residual of the cell's step has shape {a.shape} for {batch} rows but "
                       f"{b.shape} for {n_steps * batch} and depends on the inputs: `step` must "
                       f"treat batch rows independently (or use backward='autodiff')")
  return flags


def _depends_on_inputs(fn, *args) -> list:
  """For each output leaf of fn(*args): whether it depends on args (a conservative pass over
  the jaxpr: an equation with any dependent input has only dependent outputs)."""
  closed = jax.make_jaxpr(fn)(*args)
  dependent = set(closed.jaxpr.invars)
  for eqn in closed.jaxpr.eqns:
    if any(not isinstance(v, jax.extend.core.Literal) and v in dependent for v in eqn.invars):
      dependent.update(eqn.outvars)
  return [not isinstance(v, jax.extend.core.Literal) and v in dependent for v in closed.jaxpr.outvars]


def _fill(own: list, per_row: list, batched):
  """A residual list: batched ones from `batched` (in order), the others from `own`."""
  it = iter(batched)
  return [next(it) if keep else r for r, keep in zip(own, per_row)]


def _rows(a):
  """f[T, B, ...] -> f[T*B, ...]."""
  return a.reshape((-1,) + a.shape[2:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 5, 6))
def _fast_recurrence(step, params, xp, carry, m, reverse, unroll):
  """(final carry, hs f[T, B, H]) of `step` over xp: f[T, B, ...]; the same numbers as the plain
  scan, with the backward pass described above."""
  return _masked_scan(step, params, xp, carry, m, reverse, unroll)


def _fast_fwd(step, params, xp, carry, m, reverse, unroll):
  per_row = _per_row(step, params, carry, xp)

  def body(c, inputs):
    xp_t, m_t = inputs
    (new_c, h_t), saved, _ = _step_vjp_parts(step, params, c, xp_t)
    new_c, h_t = _skip_masked(m_t, new_c, h_t, c)
    return new_c, (h_t, [r for r, keep in zip(saved, per_row) if keep])

  final, (hs, saved) = lax.scan(body, carry, (xp, m), reverse=reverse, unroll=unroll)
  return (final, hs), (params, xp, carry, m, saved)


def _fast_bwd(step, reverse, unroll, residuals, cotangents):
  params, xp, carry0, m, saved = residuals
  d_final, d_hs = cotangents
  per_row = _per_row(step, params, carry0, xp)
  # Each traced once for its structure and its weight-only residuals; the rest is dead code.
  _, own_step, rebuild_step = _step_vjp_parts(step, params, carry0, xp[0])
  zero_rows = lambda a: jnp.zeros((xp.shape[0] * xp.shape[1],) + a.shape[1:], a.dtype)
  _, own_rows, rebuild_rows = _step_vjp_parts(step, params, jax.tree.map(zero_rows, carry0),
                                              zero_rows(xp[0]))

  def body(d_c, inputs):
    dy, m_t, saved_t = inputs
    d_new, d_h = d_c, dy
    if m_t is not None:  # the transpose of the masked update in `_masked_scan`
      d_new, d_h = jax.tree.map(lambda d: m_t * d, d_new), m_t * d_h
    _, d_prev, _ = rebuild_step(_fill(own_step, per_row, saved_t))((d_new, d_h))
    if m_t is not None:
      d_prev = jax.tree.map(lambda a, d: a + (1.0 - m_t) * d, d_prev, d_c)
    return d_prev, (d_new, d_h)

  d_carry, d_out = lax.scan(body, d_final, (d_hs, m, saved), reverse=not reverse,
                            unroll=unroll)
  # The weights' and the inputs' gradients: one vjp over all T*B rows.
  vjp_rows = rebuild_rows(_fill(own_rows, per_row, [_rows(r) for r in saved]))
  d_params, _, d_xp = vjp_rows(jax.tree.map(_rows, d_out))
  d_xp = d_xp.reshape(xp.shape)
  d_m = None if m is None else jnp.zeros_like(m)
  return d_params, d_xp, d_carry, d_m


_fast_recurrence.defvjp(_fast_fwd, _fast_bwd)


def _projected_step(step, params: Params, carry, x_t):
  """`step` on the projected input: the per-step cell (params, carry, x_t) -> (carry, h_t)."""
  return step(params, carry, project(params, x_t))


def run(kind: str, params: Params, x, carry=None, mask=None, *, hidden: int | None = None,
        reverse: bool = False, unroll: int = 1, backward: str = "fast"):
  """Runs the registered cell `kind` over time with `lax.scan`.

  Args:
    kind: a name in CELLS ("rnn", "lstm", "gru", or one you registered).
    x: f[batch, time, n_in], batch-major as data usually is.
    carry: initial carry (the cell's zero_carry(batch, hidden) if None; then `hidden` is needed).
    mask: optional bool/float [batch, time]; where 0 the step is skipped (carry unchanged, output
      zero), so padded positions cannot change the final state. A constant: no gradient flows
      into it.
    reverse: run from the last step to the first (for a backward direction).
    backward: "fast" or "autodiff": how the gradient through time is computed (module
      docstring); the same numbers up to float rounding, for any cell.
  Returns:
    (final carry, hs: f[batch, time, hidden]).
  """
  if backward not in BACKWARDS:
    raise UserError(f"backward must be one of {', '.join(BACKWARDS)}, got {backward!r}; fix it "
                    f"with --config.backward=...")
  cell = get_cell(kind)
  if carry is None:
    if hidden is None:
      raise TypeError("recurrent.run needs `carry` or `hidden` to build the zero carry")
    carry = cell.zero_carry(x.shape[0], hidden, x.dtype)
  xs = jnp.swapaxes(x, 0, 1)  # time-major [T, B, n_in], as the scan walks axis 0
  m = None if mask is None else jnp.swapaxes(mask, 0, 1).astype(x.dtype)[..., None]  # [T, B, 1]
  # The input projection runs inside the loop, step by step (module docstring, "Speed").
  step = functools.partial(_projected_step, cell.step)
  if backward == "fast":
    carry, hs = _fast_recurrence(step, params, xs, carry, m, reverse, unroll)
  else:
    carry, hs = _masked_scan(step, params, xs, carry, m, reverse, unroll)
  return carry, jnp.swapaxes(hs, 0, 1)


def final_hidden(kind: str, carry):
  """The hidden state f[batch, hidden] of a final carry, as the cell reads it out."""
  return get_cell(kind).readout(carry)


# ----------------------------------------------------------------------------- readouts
READOUTS = ("last", "mean", "max", "mean_max")


def readout(kind: str, hs, final, mask=None):
  """A sequence's summary from a layer's outputs. hs: f[B, T, F], final: f[B, F] -> f[B, F or 2F].

  "last": `final`, the final hidden states (each direction's last real step); "mean"/"max":
  over real steps only (`mask`: bool/float [B, T], 1 = real; None = all real); "mean_max":
  both, concatenated (2F features).
  """
  if kind not in READOUTS:
    raise UserError(f"readout must be one of {', '.join(READOUTS)}, got {kind!r}; fix it "
                    f"with --config.readout=...")
  if kind == "last":
    return final
  if mask is None:
    mean, mx = jnp.mean(hs, axis=1), jnp.max(hs, axis=1)
  else:
    m = mask.astype(bool)[..., None]
    mean = jnp.sum(jnp.where(m, hs, 0.0), 1) / jnp.maximum(jnp.sum(m, 1), 1).astype(hs.dtype)
    mx = jnp.max(jnp.where(m, hs, -jnp.inf), axis=1)
    mx = jnp.where(jnp.any(m, axis=1), mx, 0.0)  # an all-padding row would give -inf
  return {"mean": mean, "max": mx, "mean_max": jnp.concatenate([mean, mx], -1)}[kind]


def readout_size(kind: str, per_step: int) -> int:
  """Features `readout(kind, ...)` gives for per-step outputs of size per_step."""
  return 2 * per_step if kind == "mean_max" else per_step


# ----------------------------------------------------------------------------- layer stacks
def stack_init(key, kind: str, n_in: int, hidden: int, *, layers: int = 1,
               bidirectional: bool = False, dtype=jnp.float32, **opts) -> list:
  """Params of `layers` recurrent layers, each {"fwd": cell} or {"fwd", "bwd"} (bidirectional).

  Layer l > 0 reads the previous layer's outputs (hidden, or 2*hidden when bidirectional).
  """
  init = get_cell(kind).init
  out, dirs = [], 2 if bidirectional else 1
  for k in jax.random.split(key, layers):
    k_f, k_b = jax.random.split(k)
    layer = {"fwd": init(k_f, n_in, hidden, dtype, **opts)}
    if bidirectional:
      layer["bwd"] = init(k_b, n_in, hidden, dtype, **opts)
    out.append(layer)
    n_in = dirs * hidden
  return out


def stack_run(kind: str, params: list, x, mask=None, *, hidden: int, unroll: int = 1,
              between: Callable | None = None, backward: str = "fast") -> tuple[Any, Any]:
  """Runs a stack from `stack_init` over x: f[batch, time, n_in].

  A backward direction reads the sequence from its last step; with `mask` its padded steps are
  skipped like the forward ones, so it starts at each sequence's own last real step.
  `between(l, hs)`, if given, maps layer l's outputs before layer l + 1 reads them (dropout).
  `backward`: "fast" or "autodiff", as in `run`.
  Returns (hs: f[batch, time, dirs*hidden] of the last layer,
           final: f[batch, dirs*hidden], its final hidden states (forward, then backward)).
  """
  for l, layer in enumerate(params):
    if l > 0 and between is not None:
      x = between(l, x)
    opts = dict(mask=mask, hidden=hidden, unroll=unroll, backward=backward)
    c_f, hs = run(kind, layer["fwd"], x, **opts)
    finals = [final_hidden(kind, c_f)]
    if "bwd" in layer:
      c_b, hs_b = run(kind, layer["bwd"], x, reverse=True, **opts)
      hs = jnp.concatenate([hs, hs_b], axis=-1)
      finals.append(final_hidden(kind, c_b))
    x = hs
  return x, jnp.concatenate(finals, axis=-1)
