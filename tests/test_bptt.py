"""The hand-written BPTT (jaxml/bptt.py) against jax.grad of the plain scan, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxml import recurrent
from jaxml.gradcheck import check_grad, rel_error

CELLS = ["rnn", "lstm", "gru"]
F64 = jnp.float64
B, T, N_IN, H = 3, 6, 2, 5


def _setup(kind, seed=0):
  k = jax.random.split(jax.random.key(seed), 6)
  params = recurrent.CELLS[kind].init(k[0], N_IN, H, F64, forget_bias=0.5)
  # Perturb every weight away from its init so no coordinate is special (zero bias etc.).
  params = {n: v + 0.2 * jax.random.normal(jax.random.fold_in(k[1], i), v.shape, F64)
            for i, (n, v) in enumerate(sorted(params.items()))}
  x = jax.random.normal(k[2], (B, T, N_IN), F64)
  carry = jax.tree.map(lambda z: 0.5 * jax.random.normal(k[3], z.shape, F64),
                       recurrent.CELLS[kind].zero_carry(B, H, F64))
  proj_h = jax.random.normal(k[4], (B, T, H), F64)
  proj_c = jax.random.normal(k[5], (B, H), F64)
  return params, x, carry, proj_h, proj_c


# Ragged lengths, one sequence with a hole in the middle, one fully real.
MASK = jnp.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1]], F64)


def _objective(kind, backward, mask, reverse, proj_h, proj_c):
  """A scalar of every output and every final-carry leaf, as a function of all inputs."""

  def f(params, x, carry):
    final, hs = recurrent.run(kind, params, x, carry, mask, reverse=reverse, backward=backward)
    out = jnp.sum(jnp.sin(hs) * proj_h)
    for leaf in jax.tree.leaves(final):
      out = out + jnp.sum(leaf * proj_c)
    return out

  return f


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_bptt_equals_autodiff_of_the_scan(kind, masked, reverse):
  params, x, carry, proj_h, proj_c = _setup(kind)
  mask = MASK if masked else None
  args = (params, x, carry)
  f_hand = _objective(kind, "bptt", mask, reverse, proj_h, proj_c)
  f_auto = _objective(kind, "autodiff", mask, reverse, proj_h, proj_c)
  # The two really are different code paths: only "bptt" goes through a custom_vjp.
  assert "custom_vjp" in str(jax.make_jaxpr(f_hand)(*args))
  assert "custom_vjp" not in str(jax.make_jaxpr(f_auto)(*args))
  # Same forward values (the forward steps mirror the cells operation by operation).
  np.testing.assert_allclose(f_hand(*args), f_auto(*args), rtol=1e-14)
  g_hand = jax.jit(jax.grad(f_hand, argnums=(0, 1, 2)))(*args)
  g_auto = jax.jit(jax.grad(f_auto, argnums=(0, 1, 2)))(*args)
  assert jax.tree.structure(g_hand) == jax.tree.structure(g_auto)
  for path, a, b in zip(jax.tree_util.tree_leaves_with_path(g_hand), jax.tree.leaves(g_hand),
                        jax.tree.leaves(g_auto)):
    assert np.abs(b).max() > 1e-3, path[0]  # the gradient is not trivially zero
    assert rel_error(a, b) < 1e-10, (path[0], rel_error(a, b))


@pytest.mark.parametrize("kind", CELLS)
def test_bptt_is_the_default_and_forward_is_unchanged(kind):
  params, x, carry, _, _ = _setup(kind)
  for mask in (None, MASK):
    hand = recurrent.run(kind, params, x, carry, mask)
    auto = recurrent.run(kind, params, x, carry, mask, backward="autodiff")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15),
                 hand, auto)


@pytest.mark.parametrize("kind", CELLS)
def test_bptt_under_vmap_and_unroll(kind):
  """Unrolling the scans and vmapping the whole thing change nothing."""
  params, x, carry, proj_h, proj_c = _setup(kind)
  f = lambda p, x, unroll: jnp.sum(recurrent.run(kind, p, x, carry, MASK, unroll=unroll)[1]
                                   * proj_h)
  g1 = jax.grad(f)(params, x, 1)
  g3 = jax.grad(f)(params, x, 3)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
  jax.tree.map(close, g1, g3)
  xs = jnp.stack([x, 2.0 * x])
  gv = jax.vmap(jax.grad(f), in_axes=(None, 0, None))(params, xs, 1)
  jax.tree.map(lambda a, b: close(a[0], b), gv, g1)


@pytest.mark.parametrize("kind", CELLS)
def test_bptt_against_finite_differences(kind):
  params, x, carry, proj_h, proj_c = _setup(kind)
  f = _objective(kind, "bptt", MASK, False, proj_h, proj_c)
  res = check_grad(lambda a: f(*a), (params, x, carry), mode="all")
  assert res.max_rel_error < 1e-7, res.max_rel_error
  assert np.abs(res.analytic).max() > 1e-2


def test_unknown_backward_is_an_error():
  params, x, carry, _, _ = _setup("gru")
  with pytest.raises(ValueError, match="backward"):
    recurrent.run("gru", params, x, carry, backward="hand")
