"""Recurrent cells: forward against a Python loop, gradients against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxml import recurrent
from jaxml.gradcheck import check_grad

CELLS = ["rnn", "lstm", "gru"]
F64 = jnp.float64


def _setup(kind, batch=2, time=4, n_in=3, hidden=4, seed=0):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  params = recurrent.CELLS[kind].init(k1, n_in, hidden, F64, forget_bias=0.5)
  # Perturb the biases away from their init so every bias coordinate matters in the check.
  params = dict(params, b=params["b"] + 0.1 * jax.random.normal(k3, params["b"].shape, F64))
  x = jax.random.normal(k2, (batch, time, n_in), F64)
  carry = jax.tree.map(lambda z: 0.3 * jnp.ones_like(z),
                       recurrent.CELLS[kind].zero_carry(batch, hidden, F64))
  return params, x, carry


def _loop_reference(kind, params, x, carry):
  """The plain per-step cell in a Python loop: what the scan runner must reproduce."""
  cell = recurrent.cell_fn(kind)
  hs = []
  for t in range(x.shape[1]):
    carry, h = cell(params, carry, x[:, t])
    hs.append(h)
  return carry, jnp.stack(hs, axis=1)


@pytest.mark.parametrize("kind", CELLS)
def test_scan_matches_python_loop(kind, allclose):
  params, x, carry = _setup(kind)
  got = recurrent.run(kind, params, x, carry)
  want = _loop_reference(kind, params, x, carry)
  assert allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", CELLS)
def test_jit_matches_no_jit(kind, allclose):
  params, x, carry = _setup(kind)
  eager = recurrent.run(kind, params, x, carry)
  jitted = jax.jit(lambda p, x, c: recurrent.run(kind, p, x, c))(params, x, carry)
  assert allclose(eager, jitted, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", CELLS)
def test_unroll_does_not_change_results(kind, allclose):
  params, x, carry = _setup(kind, time=5)
  assert allclose(recurrent.run(kind, params, x, carry),
                  recurrent.run(kind, params, x, carry, unroll=2), rtol=1e-12, atol=1e-12)


def _objective(kind, x, proj_h, proj_c):
  """A scalar of all outputs and the final carry, with fixed random weights."""

  def f(inputs):
    params, carry = inputs
    final, hs = recurrent.run(kind, params, x, carry)
    out = jnp.sum(hs * proj_h)
    for leaf in jax.tree.leaves(final):
      out = out + jnp.sum(leaf * proj_c)
    return out

  return f


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("time", [3, 5])
def test_gradient_wrt_params_and_initial_carry(kind, time):
  params, x, carry = _setup(kind, time=time)
  kh, kc = jax.random.split(jax.random.key(1))
  proj_h = jax.random.normal(kh, (2, time, 4), F64)
  proj_c = jax.random.normal(kc, (2, 4), F64)
  res = check_grad(_objective(kind, x, proj_h, proj_c), (params, carry), mode="all")
  assert res.max_rel_error < 1e-6, res.max_rel_error
  assert np.abs(res.analytic).max() > 1e-3  # the check compared something non-trivial


@pytest.mark.parametrize("kind", CELLS)
def test_gradient_through_mask(kind):
  params, x, carry = _setup(kind, time=5)
  mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], F64)
  f = lambda p: jnp.sum(jnp.sin(recurrent.final_hidden(kind, recurrent.run(kind, p, x, carry,
                                                                           mask)[0])))
  res = check_grad(f, params, mode="all")
  assert res.max_rel_error < 1e-6, res.max_rel_error


@pytest.mark.parametrize("kind", CELLS)
def test_mask_makes_padding_invisible(kind, allclose):
  """A sequence padded with extra masked steps ends in the same state as the unpadded one."""
  params, x, carry = _setup(kind, batch=1, time=3)
  padded = jnp.concatenate([x, 7.0 * jnp.ones((1, 4, 3), F64)], axis=1)
  mask = jnp.array([[1, 1, 1, 0, 0, 0, 0]], F64)
  short = recurrent.run(kind, params, x, carry)[0]
  long = recurrent.run(kind, params, padded, carry, mask)[0]
  assert allclose(short, long, rtol=1e-12, atol=1e-12)


def test_gru_matches_seed_equations():
  """One GRU step written out gate by gate, as in the seed (reset gate applied to h before U_h)."""
  params, x, carry = _setup("gru", batch=1, time=1)
  h, xt, H = carry, x[:, 0], 4
  wz, wr, wh = jnp.split(params["w_x"], 3, axis=1)
  bz, br, bh = jnp.split(params["b"], 3)
  uz, ur = jnp.split(params["w_h"], 2, axis=1)
  z = jax.nn.sigmoid(xt @ wz + h @ uz + bz)
  r = jax.nn.sigmoid(xt @ wr + h @ ur + br)
  cand = jnp.tanh(xt @ wh + (r * h) @ params["u_c"] + bh)
  want = (1 - z) * h + z * cand
  got = recurrent.cell_fn("gru")(params, carry, xt)[1]
  np.testing.assert_allclose(got, want, rtol=1e-12)
  assert want.shape == (1, H)
