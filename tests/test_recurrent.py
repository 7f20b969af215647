"""Recurrent cells and the scan runner, for every cell in the registry `recurrent.CELLS`.

Properties that hold for any correct cell (parametrized over the registry, so a cell registered
anywhere before collection is checked too): the scan equals a Python loop, jit and unroll change
nothing, the fast backward equals `jax.grad` of the plain scan, both equal finite differences,
padding is invisible. Then the seed's equations: tests named `..._seeds_...` compare the three
seed cells with tests/reference_bptt.py (the seed's per-gate forward and hand BPTT), and with
flax's cells on mapped weights, so a deliberate change of a cell fails only those, by name.
"""

import flax.linen as flax_nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxml import recurrent
from jaxml.errors import UserError
from jaxml.gradcheck import check_grad, rel_error
from tests import reference_bptt

CELL_NAMES = sorted(recurrent.CELLS)
SEED_CELLS = ["rnn", "lstm", "gru"]
F64 = jnp.float64
B, T, N_IN, H = 3, 6, 2, 5
# Ragged lengths, one sequence with a hole in the middle, one fully real.
MASK = jnp.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1]], F64)


def _setup(kind, batch=B, time=T, seed=0):
  """Params perturbed away from their init (so no coordinate is special), inputs, a non-zero
  initial carry, and fixed random projections to make a scalar of the outputs."""
  k = jax.random.split(jax.random.key(seed), 6)
  cell = recurrent.CELLS[kind]
  params = cell.init(k[0], N_IN, H, F64, forget_bias=0.5)
  params = jax.tree.map(lambda v, kk: v + 0.2 * jax.random.normal(kk, v.shape, F64), params,
                        jax.tree.unflatten(jax.tree.structure(params),
                                           jax.random.split(k[1], len(jax.tree.leaves(params)))))
  x = jax.random.normal(k[2], (batch, time, N_IN), F64)
  zero = cell.zero_carry(batch, H, F64)
  carry = jax.tree.map(lambda z, kk: 0.5 * jax.random.normal(kk, z.shape, F64), zero,
                       jax.tree.unflatten(jax.tree.structure(zero),
                                          jax.random.split(k[3], len(jax.tree.leaves(zero)))))
  proj_h = jax.random.normal(k[4], (batch, time, H), F64)
  proj_c = jax.random.normal(k[5], (batch, H), F64)
  return params, x, carry, proj_h, proj_c


def _objective(kind, backward, mask, reverse, proj_h, proj_c):
  """A scalar of every output and every final-carry leaf, as a function of all inputs."""

  def f(params, x, carry):
    final, hs = recurrent.run(kind, params, x, carry, mask, reverse=reverse, backward=backward)
    out = jnp.sum(jnp.sin(hs) * proj_h)
    for leaf in jax.tree.leaves(final):
      out = out + jnp.sum(leaf.reshape(leaf.shape[0], -1)[:, :H] * proj_c)
    return out

  return f


def _loop_reference(kind, params, x, carry):
  """The plain per-step cell in a Python loop: what the scan runner must reproduce."""
  cell = recurrent.cell_fn(kind)
  hs = []
  for t in range(x.shape[1]):
    carry, h = cell(params, carry, x[:, t])
    hs.append(h)
  return carry, jnp.stack(hs, axis=1)


# ----------------------------------------------------------------------------- any cell
@pytest.mark.parametrize("kind", CELL_NAMES)
def test_scan_matches_python_loop(kind, allclose):
  params, x, carry, _, _ = _setup(kind)
  for backward in recurrent.BACKWARDS:
    assert allclose(recurrent.run(kind, params, x, carry, backward=backward),
                    _loop_reference(kind, params, x, carry), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", CELL_NAMES)
def test_jit_and_unroll_change_nothing(kind, allclose):
  params, x, carry, _, _ = _setup(kind)
  eager = recurrent.run(kind, params, x, carry)
  jitted = jax.jit(lambda p, x, c: recurrent.run(kind, p, x, c))(params, x, carry)
  unrolled = recurrent.run(kind, params, x, carry, unroll=2)
  assert allclose(eager, jitted, rtol=1e-12, atol=1e-12)
  assert allclose(eager, unrolled, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", CELL_NAMES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_fast_backward_equals_autodiff_of_the_scan(kind, masked, reverse):
  params, x, carry, proj_h, proj_c = _setup(kind)
  mask = MASK if masked else None
  args = (params, x, carry)
  f_fast = _objective(kind, "fast", mask, reverse, proj_h, proj_c)
  f_auto = _objective(kind, "autodiff", mask, reverse, proj_h, proj_c)
  # Two code paths: only "fast" goes through a custom_vjp.
  assert "custom_vjp" in str(jax.make_jaxpr(f_fast)(*args))
  assert "custom_vjp" not in str(jax.make_jaxpr(f_auto)(*args))
  np.testing.assert_allclose(f_fast(*args), f_auto(*args), rtol=1e-14)
  g_fast = jax.jit(jax.grad(f_fast, argnums=(0, 1, 2)))(*args)
  g_auto = jax.jit(jax.grad(f_auto, argnums=(0, 1, 2)))(*args)
  assert jax.tree.structure(g_fast) == jax.tree.structure(g_auto)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_fast), jax.tree.leaves(g_auto)):
    assert rel_error(a, b) < 1e-10, (jax.tree_util.keystr(path), rel_error(a, b))


@pytest.mark.parametrize("kind", CELL_NAMES)
@pytest.mark.parametrize("backward", recurrent.BACKWARDS)
def test_gradient_matches_finite_differences(kind, backward):
  params, x, carry, proj_h, proj_c = _setup(kind)
  f = _objective(kind, backward, MASK, False, proj_h, proj_c)
  res = check_grad(lambda a: f(*a), (params, x, carry), mode="all")
  assert res.max_rel_error < 1e-7, res.max_rel_error
  assert np.abs(res.analytic).max() > 1e-2  # the check compared something non-trivial


@pytest.mark.parametrize("kind", CELL_NAMES)
def test_fast_backward_under_vmap_and_unroll(kind):
  params, x, carry, proj_h, _ = _setup(kind)
  f = lambda p, x, unroll: jnp.sum(recurrent.run(kind, p, x, carry, MASK, unroll=unroll)[1]
                                   * proj_h)
  g1 = jax.grad(f)(params, x, 1)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
  jax.tree.map(close, g1, jax.grad(f)(params, x, 3))
  gv = jax.vmap(jax.grad(f), in_axes=(None, 0, None))(params, jnp.stack([x, 2.0 * x]), 1)
  jax.tree.map(lambda a, b: close(a[0], b), gv, g1)


@pytest.mark.parametrize("kind", CELL_NAMES)
def test_mask_makes_padding_invisible(kind, allclose):
  """A sequence padded with extra masked steps ends in the same state as the unpadded one."""
  params, x, carry, _, _ = _setup(kind, batch=1, time=3)
  padded = jnp.concatenate([x, 7.0 * jnp.ones((1, 4, N_IN), F64)], axis=1)
  mask = jnp.array([[1, 1, 1, 0, 0, 0, 0]], F64)
  for backward in recurrent.BACKWARDS:
    short = recurrent.run(kind, params, x, carry, backward=backward)[0]
    long = recurrent.run(kind, params, padded, carry, mask, backward=backward)[0]
    assert allclose(short, long, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backward", recurrent.BACKWARDS)
def test_the_input_projection_runs_inside_the_time_loop(backward):
  """Speed, not numbers (issue 19): on XLA:CPU a loop reading gate slices of a hoisted
  [T, B, G] projection runs 2-2.5x slower, so every matmul of the forward is in the scan."""
  params, x, carry, _, _ = _setup("lstm")
  jaxpr = jax.make_jaxpr(lambda p, x: recurrent.run("lstm", p, x, carry, backward=backward))(
      params, x).jaxpr

  def top_level_dots(jaxpr):
    n = 0
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        n += 1
      elif eqn.primitive.name in ("jit", "pjit", "custom_vjp_call", "custom_vjp_call_jaxpr"):
        inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr", eqn.params.get("fun_jaxpr")))
        n += top_level_dots(getattr(inner, "jaxpr", inner)) if inner is not None else 0
    return n

  assert top_level_dots(jaxpr) == 0
  assert "scan" in str(jaxpr)


def test_a_cell_replaced_at_run_time_is_the_one_that_runs(monkeypatch):
  """The runner looks the cell up when it runs: replacing CELLS["gru"] changes the outputs and
  gradients of both backward modes."""
  params, x, carry, proj_h, proj_c = _setup("gru")
  before = {b: jax.grad(_objective("gru", b, MASK, False, proj_h, proj_c))(params, x, carry)
            for b in recurrent.BACKWARDS}
  gru = recurrent.CELLS["gru"]

  def relu_gru_step(p, h, xp_t):  # the candidate's tanh replaced by relu
    xz, xr, xc = jnp.split(xp_t, 3, axis=-1)
    hz, hr = jnp.split(h @ p["w_h"], 2, axis=-1)
    z, r = jax.nn.sigmoid(xz + hz), jax.nn.sigmoid(xr + hr)
    h = (1.0 - z) * h + z * jax.nn.relu(xc + (r * h) @ p["u_c"])
    return h, h

  monkeypatch.setitem(recurrent.CELLS, "gru", gru._replace(step=relu_gru_step))
  after = {b: jax.grad(_objective("gru", b, MASK, False, proj_h, proj_c))(params, x, carry)
           for b in recurrent.BACKWARDS}
  for b in recurrent.BACKWARDS:
    assert rel_error(before[b]["u_c"], after[b]["u_c"]) > 1e-2, b
  assert rel_error(after["fast"]["u_c"], after["autodiff"]["u_c"]) < 1e-10


def test_a_step_that_mixes_batch_rows_gets_the_same_gradient_from_both_backwards():
  """The fast backward reads its weight gradients off the step's mixing equations, summed over
  steps, so it holds for a step that mixes rows too (here batch normalisation over the batch)."""
  base = recurrent.CELLS["rnn"]

  def batchnorm_step(p, h, xp_t):
    a = xp_t + h @ p["w_h"]
    h = jnp.tanh((a - 0.5 * a.mean(0)) / (a.std(0) + 1e-3))  # (0.5: b keeps a gradient)
    return h, h

  cell = base._replace(step=batchnorm_step)
  params, x, carry, proj_h, _ = _setup("rnn")
  with pytest.MonkeyPatch.context() as mp:
    mp.setitem(recurrent.CELLS, "bn_rnn", cell)
    grads = {b: jax.grad(lambda p, x: jnp.sum(recurrent.run("bn_rnn", p, x, carry, MASK,
                                                               backward=b)[1] * proj_h),
                         argnums=(0, 1))(params, x) for b in recurrent.BACKWARDS}
  for a, b in zip(jax.tree.leaves(grads["fast"]), jax.tree.leaves(grads["autodiff"])):
    assert rel_error(a, b) < 1e-10, rel_error(a, b)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["fast"])) > 1e-3


def test_the_fast_backward_forms_no_weight_gradient_inside_the_time_loop():
  """Its backward loop carries the state cotangent only: the weights' gradients are one matmul
  (or sum) per weight after the loop, so nothing a while loop computes has w_h's shape, while
  autodiff's backward loop accumulates h^T dz into it every step."""
  import re
  params, x, carry, _, _ = _setup("lstm")
  params = jax.tree.map(lambda a: a.astype(jnp.float32), params)
  x, carry = x.astype(jnp.float32), jax.tree.map(lambda a: a.astype(jnp.float32), carry)

  def made_in_loops(backward):
    """The shapes of the values computed (not just passed through) in the while bodies."""
    f = lambda p: jnp.sum(recurrent.run("lstm", p, x, carry, backward=backward)[1])
    hlo = jax.jit(jax.grad(f)).lower(params).compile().as_text()
    shapes = set()
    for body in re.findall(r"body=%?([\w.\-]+)", hlo):
      text = re.search(r"^%?" + re.escape(body) + r" .*?\n(.*?)^\}", hlo, re.M | re.S).group(1)
      for shape, op in re.findall(r"= f32\[([\d,]*)\]\S* ([\w\-]+)\(", text):
        if op not in ("get-tuple-element", "parameter", "tuple", "bitcast", "copy"):
          shapes.add(shape)
    return shapes

  w_h = ",".join(map(str, params["w_h"].shape))
  assert w_h in made_in_loops("autodiff")  # it sees a weight gradient in a loop
  assert w_h not in made_in_loops("fast")


def test_unknown_cell_and_backward_are_user_errors():
  params, x, carry, _, _ = _setup("gru")
  with pytest.raises(UserError, match="backward"):
    recurrent.run("gru", params, x, carry, backward="hand")
  with pytest.raises(UserError, match="registered cells: .*gru"):
    recurrent.run("nope", params, x, carry)


# ----------------------------------------------------------------------------- the seed's cells
def _seed_check(kind, with_mask_of_ones):
  params, x, carry, proj_h, proj_c = _setup(kind)
  w = reference_bptt.per_gate(kind, params)
  h0, c0 = (carry, None) if kind != "lstm" else carry
  steps, hs_ref, h_ref, c_ref = reference_bptt.forward(kind, w, np.asarray(x), np.asarray(h0),
                                                       None if c0 is None else np.asarray(c0))
  mask = jnp.ones((B, T), F64) if with_mask_of_ones else None
  run = lambda p, x, c: recurrent.run(kind, p, x, c, mask)
  (final, hs), vjp = jax.vjp(run, params, x, carry)
  msg = (f"recurrent.{kind}_step no longer matches the seed's {kind.upper()} equations "
         f"(tests/reference_bptt.py)")
  np.testing.assert_allclose(hs, hs_ref, rtol=1e-12, atol=1e-12, err_msg=msg)
  np.testing.assert_allclose(recurrent.final_hidden(kind, final), h_ref, rtol=1e-12,
                             atol=1e-12, err_msg=msg)
  # Cotangents for every output; the seed's hand BPTT must give the library's gradients.
  d_hs = np.asarray(proj_h)
  d_final = (proj_c, 0.5 * proj_c) if kind == "lstm" else proj_c
  d_params, d_x, d_carry = vjp((d_final, jnp.asarray(d_hs)))
  grads, dx_ref, dh0_ref, dc0_ref = reference_bptt.backward(
      kind, w, steps, d_hs, *(np.asarray(d) for d in jax.tree.leaves(d_final)))
  got = reference_bptt.per_gate(kind, d_params)
  msg = msg.replace("equations", "hand-derived BPTT")
  for name, ref in grads.items():
    np.testing.assert_allclose(got[name], ref, rtol=1e-10, atol=1e-12, err_msg=f"{name}: {msg}")
  np.testing.assert_allclose(d_x, dx_ref, rtol=1e-10, atol=1e-12, err_msg=msg)
  d_h0 = d_carry[0] if kind == "lstm" else d_carry
  np.testing.assert_allclose(d_h0, dh0_ref, rtol=1e-10, atol=1e-12, err_msg=msg)
  if kind == "lstm":
    np.testing.assert_allclose(d_carry[1], dc0_ref, rtol=1e-10, atol=1e-12, err_msg=msg)


@pytest.mark.parametrize("kind", SEED_CELLS)
@pytest.mark.parametrize("masked", [False, True])
def test_cell_matches_the_seeds_equations_and_hand_bptt(kind, masked):
  _seed_check(kind, masked)


def test_lstm_and_rnn_match_the_seeds_cells_in_flax():
  """A peer implementation as oracle: flax's LSTMCell and SimpleCell compute the seed's LSTM and
  tanh RNN (flax's GRUCell applies r after U_h, the cuDNN variant, so it is not the seed's)."""
  params, x, (h0, c0), _, _ = _setup("lstm")
  w = reference_bptt.per_gate("lstm", params)
  variables = {"params": {
      **{f"i{g}": {"kernel": w["W_" + g]} for g in "ifgo"},
      **{f"h{g}": {"kernel": w["U_" + g], "bias": w["b_" + g]} for g in "ifgo"}}}
  cell = flax_nn.LSTMCell(features=H, param_dtype=F64, dtype=F64)
  carry, want = (c0, h0), []
  for t in range(T):
    carry, h = cell.apply(variables, carry, x[:, t])
    want.append(h)
  got = recurrent.run("lstm", params, x, (h0, c0))[1]
  np.testing.assert_allclose(got, jnp.stack(want, 1), rtol=1e-12,
                             err_msg="lstm_step no longer matches flax.linen.LSTMCell")

  params, x, h, _, _ = _setup("rnn")
  variables = {"params": {"i": {"kernel": params["w_x"], "bias": params["b"]},
                          "h": {"kernel": params["w_h"]}}}
  cell, want, carry = flax_nn.SimpleCell(features=H, param_dtype=F64, dtype=F64), [], h
  for t in range(T):
    carry, out = cell.apply(variables, carry, x[:, t])
    want.append(out)
  np.testing.assert_allclose(recurrent.run("rnn", params, x, h)[1], jnp.stack(want, 1),
                             rtol=1e-12, err_msg="rnn_step no longer matches flax SimpleCell")
