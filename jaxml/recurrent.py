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
own matmul output; BUILD_NOTES "Speed, second pass (issue 19)".)

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
  "fast": a custom VJP derived from the same `step`, read from its jaxpr (see
    `_fast_recurrence`). The backward scan is autodiff's transpose of the scan with the weights
    held constant: it carries only the state cotangent and emits the cotangents of the step's
    "mixing" values (h @ w_h, x_t @ w_x, ... + b), so no weight gradient is formed per step; the
    weight gradients are then one matmul (or sum) per weight over all T steps after the loop.
Both the activity and IMDB experiments and `run` default to "fast" (faster than autodiff for
their LSTM and GRU steps: BUILD_NOTES "The fast backward split at the weights";
benchmarks/recurrent_ab.py times both).
tests/test_recurrent.py checks that both agree for every registered cell, and
tests/reference_bptt.py holds the seed's hand-derived BPTT as an independent reference.
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
# backward loop (per step and weight, a small [H, B] x [B, G] matmul and an add). Instead the
# step's jaxpr is split where the weights meet the data (`_split_step`):
#  * a "mixing" equation is one with an input computed from the weights alone (a weight, its
#    transpose, a broadcast bias) and an input that depends on the carry or x_t (h @ w_h,
#    x_t @ w_x, ... + b, gain * x_hat);
#  * the forward scan runs the step with a zero "probe" added to each mixing output and keeps
#    the vjp residuals with respect to (carry, x_t, probes) only, plus each mixing equation's
#    data inputs that its weight gradient reads (h_{t-1} for h @ w_h; nothing for + b);
#  * the backward scan carries the state cotangent and emits each probe's cotangent (the
#    cotangent of, e.g., h @ w_h) and x_t's; no weight gradient is formed inside the loop;
#  * after the loop the weight gradients are the vjp, with respect to the weights, of the mixing
#    equations alone, vmapped over the T steps: one big matmul (or sum) per weight, with no
#    elementwise work of the cell repeated.
# Nothing here depends on what `step` computes: it is read from its jaxpr at trace time, so an
# edited cell is split anew. The chain rule is exact for any step, rows independent or not.
def _floating(aval) -> bool:
  return jnp.issubdtype(aval.dtype, jnp.inexact)


def _is_var(v) -> bool:
  return not isinstance(v, jax.extend.core.Literal)


def _bind(eqn, invals: list) -> list:
  """Evaluates one jaxpr equation (any primitive, also those holding sub-jaxprs)."""
  bound = eqn.primitive.get_bind_params(eqn.params)  # older jax: (subfuns, params)
  subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
  with eqn.ctx.manager:
    out = eqn.primitive.bind(*subfuns, *invals, **params)
  return list(out) if eqn.primitive.multiple_results else [out]


def _live_inputs(closed) -> list:
  """For each input of a closed jaxpr: whether any output needs it (backward liveness)."""
  live = {v for v in closed.jaxpr.outvars if _is_var(v)}
  for eqn in reversed(closed.jaxpr.eqns):
    if eqn.effects or any(o in live for o in eqn.outvars):
      live.update(v for v in eqn.invars if _is_var(v))
  return [v in live for v in closed.jaxpr.invars]


class _SplitStep(NamedTuple):
  """`step` read as a jaxpr at one set of shapes (see `_split_step`)."""
  closed: Any          # the step's ClosedJaxpr over (param leaves, carry leaves, x_t)
  n_params: int        # how many of its inputs are parameter leaves
  out_tree: Any        # the treedef of (carry, h_t)
  rows: frozenset      # vars that depend on the carry or x_t
  mixing: tuple        # indices of the mixing equations
  saved: dict          # mixing index -> positions of the data inputs its weight vjp reads
  probes: tuple        # (mixing index, output position, aval) of each probe


def _split_step(step, params, carry, x_t) -> _SplitStep:
  """Reads `step`'s jaxpr at these shapes and finds its mixing equations (comment above)."""
  spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))
  closed = jax.make_jaxpr(step)(*jax.tree.map(spec, (params, carry, x_t)))
  out_tree = jax.tree.structure(jax.eval_shape(step, params, carry, x_t))
  jaxpr = closed.jaxpr
  n_params = len(jax.tree.leaves(params))
  weights = set(jaxpr.invars[:n_params])  # vars computed from the weights (and constants)
  rows = set(jaxpr.invars[n_params:])     # vars that depend on the carry or x_t
  mixing, saved, probes = [], {}, []
  for i, eqn in enumerate(jaxpr.eqns):
    ins = [v for v in eqn.invars if _is_var(v)]
    data = [j for j, v in enumerate(eqn.invars) if _is_var(v) and v in rows]
    weight = [j for j, v in enumerate(eqn.invars) if _is_var(v) and v in weights
              and v not in rows]
    if data:
      rows.update(eqn.outvars)
    elif any(v in weights for v in ins):
      weights.update(eqn.outvars)
    if not (data and weight) or not any(_floating(o.aval) for o in eqn.outvars):
      continue
    mixing.append(i)
    probes += [(i, k, o.aval) for k, o in enumerate(eqn.outvars) if _floating(o.aval)]
    # Which data inputs the weights' vjp of this equation reads (x for x @ w; none for x + b).
    avals = [v.aval for v in eqn.invars]
    def weight_vjp(vals, cts, eqn=eqn, weight=weight):
      def of_weights(*ws):
        vals_w = list(vals)
        for j, w in zip(weight, ws):
          vals_w[j] = w
        return [o for o, v in zip(_bind(eqn, vals_w), eqn.outvars) if _floating(v.aval)]
      return jax.vjp(of_weights, *[vals[j] for j in weight])[1](cts)
    cts = [o.aval for o in eqn.outvars if _floating(o.aval)]
    live = _live_inputs(jax.make_jaxpr(weight_vjp)(
        [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals],
        [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in cts]))
    saved[i] = tuple(j for j in data if live[j])
  for v in jaxpr.outvars:
    if _is_var(v) and v in weights and v not in rows:
      raise ValueError("the cell's step returns a value computed from its weights alone; use "
                       "backward='autodiff'")
  return _SplitStep(closed, n_params, out_tree, frozenset(rows), tuple(mixing), saved,
                    tuple(probes))


def _run_split(split: _SplitStep, params, carry, x_t, probes) -> tuple:
  """((carry, h_t), data inputs the weight gradients read) of the step with `probes` added to
  its mixing outputs; the same (carry, h_t) as `step` when the probes are zero."""
  jaxpr, env = split.closed.jaxpr, {}
  read = lambda v: env[v] if _is_var(v) else v.val
  for v, a in zip(jaxpr.constvars, split.closed.consts):
    env[v] = a
  for v, a in zip(jaxpr.invars, jax.tree.leaves((params, carry, x_t))):
    env[v] = a
  probe_at = {(i, k): p for (i, k, _), p in zip(split.probes, probes)}
  kept = []
  for i, eqn in enumerate(jaxpr.eqns):
    invals = [read(v) for v in eqn.invars]
    outs = _bind(eqn, invals)
    if i in split.saved:
      outs = [o + probe_at[i, k] if (i, k) in probe_at else o for k, o in enumerate(outs)]
      kept += [invals[j] for j in split.saved[i]]
    for v, o in zip(eqn.outvars, outs):
      env[v] = o
  return jax.tree.unflatten(split.out_tree, [read(v) for v in jaxpr.outvars]), kept


def _rows(a):
  """f[T, B, ...] -> f[T*B, ...]."""
  return a.reshape((-1,) + a.shape[2:])


def _merges_rows(eqn, pos) -> bool:
  """Whether a mixing equation may take the T steps' rows as one [T*B, ...] batch: a
  dot_general without batch dimensions whose only data input is its left operand, with the row
  axis 0 not contracted (so output row r is input row r). XLA runs that as one plain matmul,
  faster than the vmapped form's two-axis contraction."""
  if eqn.primitive.name != "dot_general" or tuple(pos) != (0,):
    return False
  (lhs_contract, _), (lhs_batch, _) = eqn.params["dimension_numbers"]
  return not lhs_batch and 0 not in lhs_contract


def _weight_grads(split: _SplitStep, params, kept, d_probes):
  """The weights' gradient summed over the T steps: the vjp, w.r.t. params, of the mixing
  equations alone at the kept data inputs kept[*]: f[T, ...], fed the probes' cotangents
  d_probes[*]: f[T, ...]. Each mixing equation is evaluated once for all T steps: vmapped over
  T; as one [T*B, ...] matmul (`_merges_rows`); or, when its weight vjp reads no data (x + b),
  at one step's shapes with zero data and the cotangents summed over T (the vjp is linear in
  them and does not depend on the data)."""
  it, groups = iter(kept), []
  for i in split.mixing:
    eqn = split.closed.jaxpr.eqns[i]
    pos = [j for j, v in enumerate(eqn.invars) if _is_var(v) and v in split.rows]
    data = {j: next(it) for j in split.saved[i]}
    cts = [d for (m, _, _), d in zip(split.probes, d_probes) if m == i]
    if not data:
      data = {j: jnp.zeros(eqn.invars[j].aval.shape, eqn.invars[j].aval.dtype) for j in pos}
      groups.append((i, pos, data, [c.sum(0) for c in cts], "one"))
    elif _merges_rows(eqn, pos):
      groups.append((i, pos, {j: _rows(d) for j, d in data.items()}, [_rows(c) for c in cts],
                     "rows"))
    else:
      n_steps = cts[0].shape[0]
      for j in pos:
        a = eqn.invars[j].aval
        data.setdefault(j, jnp.zeros((n_steps,) + a.shape, a.dtype))
      groups.append((i, pos, data, cts, "vmap"))

  def mixing_outputs(params):
    jaxpr, env = split.closed.jaxpr, {}
    read = lambda v: env[v] if _is_var(v) else v.val
    for v, a in zip(jaxpr.constvars, split.closed.consts):
      env[v] = a
    for v, a in zip(jaxpr.invars[:split.n_params], jax.tree.leaves(params)):
      env[v] = a
    outs, todo = [], iter(groups)
    for i, eqn in enumerate(jaxpr.eqns):
      if i in split.saved:
        _, pos, data, _, how = next(todo)
        fixed = [None if j in pos else read(v) for j, v in enumerate(eqn.invars)]

        def at(*ds, eqn=eqn, fixed=fixed, pos=pos):
          vals = list(fixed)
          for j, d in zip(pos, ds):
            vals[j] = d
          return _bind(eqn, vals)

        res = (jax.vmap(at) if how == "vmap" else at)(*[data[j] for j in pos])
        outs += [res[k] for (m, k, _) in split.probes if m == i]
      elif not any(_is_var(v) and v in split.rows for v in eqn.invars):
        for v, o in zip(eqn.outvars, _bind(eqn, [read(v) for v in eqn.invars])):
          env[v] = o
    return outs

  return jax.vjp(mixing_outputs, params)[1]([c for g in groups for c in g[3]])[0]


def _step_vjp_parts(split: _SplitStep, params, carry, x_t):
  """(out, residual leaves, rebuild(residuals) -> vjp, kept data) of the probed step at zero
  probes; the vjp is w.r.t. (carry, x_t, probes), the weights held constant."""
  zeros = [jnp.zeros(a.shape, a.dtype) for (_, _, a) in split.probes]
  out, vjp, kept = jax.vjp(lambda c, x, e: _run_split(split, params, c, x, e), carry, x_t,
                           zeros, has_aux=True)
  leaves, treedef = jax.tree.flatten(vjp)
  return out, leaves, lambda new_leaves: jax.tree.unflatten(treedef, new_leaves), kept


def _per_step(split: _SplitStep, params, carry, x_t) -> list:
  """Which vjp residuals depend on the carry or x_t (saved every step); the others are computed
  from the weights alone and taken from a vjp traced once."""
  return _depends_on_inputs(lambda c, x: _step_vjp_parts(split, params, c, x)[1], carry, x_t)


def _depends_on_inputs(fn, *args) -> list:
  """For each output leaf of fn(*args): whether it depends on args (a conservative pass over
  the jaxpr: an equation with any dependent input has only dependent outputs)."""
  closed = jax.make_jaxpr(fn)(*args)
  dependent = set(closed.jaxpr.invars)
  for eqn in closed.jaxpr.eqns:
    if any(_is_var(v) and v in dependent for v in eqn.invars):
      dependent.update(eqn.outvars)
  return [_is_var(v) and v in dependent for v in closed.jaxpr.outvars]


def _fill(own: list, per_step: list, saved):
  """A residual list: per-step ones from `saved` (in order), the others from `own`."""
  it = iter(saved)
  return [next(it) if keep else r for r, keep in zip(own, per_step)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 5, 6))
def _fast_recurrence(step, params, xp, carry, m, reverse, unroll):
  """(final carry, hs f[T, B, H]) of `step` over xp: f[T, B, ...]; the same numbers as the plain
  scan, with the backward pass described above."""
  return _masked_scan(step, params, xp, carry, m, reverse, unroll)


def _fast_fwd(step, params, xp, carry, m, reverse, unroll):
  split = _split_step(step, params, carry, xp[0])
  per_step = _per_step(split, params, carry, xp[0])

  def body(c, inputs):
    xp_t, m_t = inputs
    (new_c, h_t), res, _, kept = _step_vjp_parts(split, params, c, xp_t)
    new_c, h_t = _skip_masked(m_t, new_c, h_t, c)
    return new_c, (h_t, [r for r, keep in zip(res, per_step) if keep], kept)

  final, (hs, res, kept) = lax.scan(body, carry, (xp, m), reverse=reverse, unroll=unroll)
  return (final, hs), (params, xp, carry, m, res, kept)


def _fast_bwd(step, reverse, unroll, residuals, cotangents):
  params, xp, carry0, m, res, kept = residuals
  d_final, d_hs = cotangents
  split = _split_step(step, params, carry0, xp[0])
  per_step = _per_step(split, params, carry0, xp[0])
  # Traced once for its structure and its weight-only residuals; the rest is dead code.
  _, own, rebuild, _ = _step_vjp_parts(split, params, carry0, xp[0])
  unique = []  # probe index -> position among the distinct cotangents the loop emits

  def body(d_c, inputs):
    dy, m_t, res_t = inputs
    d_new, d_h = d_c, dy
    if m_t is not None:  # the transpose of the masked update in `_masked_scan`
      d_new, d_h = jax.tree.map(lambda d: m_t * d, d_new), m_t * d_h
    d_prev, d_x, d_probes = rebuild(_fill(own, per_step, res_t))((d_new, d_h))
    if m_t is not None:
      d_prev = jax.tree.map(lambda a, d: a + (1.0 - m_t) * d, d_prev, d_c)
    # Probes on `a @ w` and `a @ w + b` often get the very same cotangent: emit it once.
    distinct, unique[:] = [], []
    for d in d_probes:
      at = next((k for k, e in enumerate(distinct) if e is d), None)
      if at is None:
        at, distinct = len(distinct), distinct + [d]
      unique.append(at)
    return d_prev, (d_x, distinct)

  d_carry, (d_xp, distinct) = lax.scan(body, d_final, (d_hs, m, res), reverse=not reverse,
                                       unroll=unroll)
  d_params = _weight_grads(split, params, kept, [distinct[k] for k in unique])
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
