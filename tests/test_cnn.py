"""Convolution, pooling and the CNNs.

Gradient tests check properties of any correct model (jax.grad against central differences);
tests named for the seed pin the seed's equations (its cross-correlation formula, its
hand-derived conv/pooling backward rules and their routing through the seed net,
jaxml/backprop.py), so a deliberate model change reads as "no longer the seed's", not
"gradient wrong"."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.mnist_cnn import Config
from jaxml import backprop, nn
from jaxml.augment import random_affine, random_shift
from jaxml.gradcheck import check_grad
from jaxml.losses import classification_loss
from jaxml.models import cnn

F64 = jnp.float64


def _rand(key, shape):
  return jax.random.normal(jax.random.key(key), shape, F64)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv_matches_the_seed_cross_correlation_formula(padding):
  x, params = _rand(0, (2, 6, 7, 3)), {"w": _rand(1, (3, 3, 3, 4)), "b": _rand(2, (4,))}
  y = nn.conv2d(params, x, padding)
  xp = backprop._pad_same(x, 3) if padding == "SAME" else x
  want = np.zeros(y.shape)
  for i in range(y.shape[1]):
    for j in range(y.shape[2]):
      patch = xp[:, i:i + 3, j:j + 3, :]  # I(i+m, j+n, c)
      want[:, i, j, :] = np.einsum("bmnc,mncd->bd", patch, params["w"]) + params["b"]
  np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv_backward_matches_the_seeds_hand_derived_rules(padding):
  x, params = _rand(0, (2, 6, 6, 2)), {"w": _rand(1, (5, 5, 2, 3)), "b": _rand(2, (3,))}
  y, vjp = jax.vjp(lambda p, x: nn.conv2d(p, x, padding), params, x)
  delta = _rand(3, y.shape)
  g_params, g_x = vjp(delta)
  np.testing.assert_allclose(backprop.conv_weight_grad(delta, x, 5, padding), g_params["w"],
                             rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(backprop.conv_bias_grad(delta), g_params["b"], rtol=1e-12)
  np.testing.assert_allclose(backprop.conv_input_grad(delta, params["w"], x.shape, padding), g_x,
                             rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape, padding", [((5, 5, 1, 6), "SAME"), ((5, 5, 1, 6), "VALID"),
                                            ((4, 4, 2, 3), "SAME"), ((3, 3, 3, 16), "VALID")])
def test_im2col_forward_is_the_definition_and_its_gradient_is_the_definitions(shape, padding):
  """The shortcut impl="auto" takes for small patches and few filters (LeNet-5's C1): the
  same values as conv2d_lax and, by construction, the same VJP (even kernels: XLA's SAME)."""
  assert nn.use_im2col(shape)
  x = _rand(0, (3, 9, 8, shape[2]))
  params = {"w": _rand(1, shape), "b": _rand(2, (shape[3],))}
  fast = lambda p, x: nn.conv2d(p, x, padding)
  slow = lambda p, x: nn.conv2d(p, x, padding, impl="lax")
  assert "custom_vjp" in str(jax.make_jaxpr(fast)(params, x))
  np.testing.assert_allclose(jax.jit(fast)(params, x), slow(params, x), rtol=1e-12, atol=1e-12)
  y, vjp_fast = jax.vjp(fast, params, x)
  _, vjp_slow = jax.vjp(slow, params, x)
  delta = _rand(3, y.shape)
  for a, b in zip(jax.tree.leaves(vjp_fast(delta)), jax.tree.leaves(vjp_slow(delta))):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_an_edited_im2col_forward_is_caught_and_the_definition_used(monkeypatch):
  monkeypatch.setattr(nn, "_IM2COL_CHECKED", {})
  monkeypatch.setattr(nn, "conv2d_im2col_forward", lambda w, x, padding: 0 * x[..., :1])
  x, params = _rand(0, (2, 7, 7, 1)), {"w": _rand(1, (5, 5, 1, 6)), "b": _rand(2, (6,))}
  with pytest.warns(UserWarning, match="differs from conv2d_lax"):
    y = nn.conv2d(params, x)
  np.testing.assert_allclose(y, nn.conv2d(params, x, impl="lax"), rtol=1e-12)


def test_pooling_backward_matches_the_seeds_hand_derived_routing():
  x = _rand(0, (2, 6, 6, 3))  # continuous values: no ties inside a block
  for pool, manual in (("max", lambda d: backprop.max_pool_backward(d, x)),
                       ("avg", lambda d: backprop.avg_pool_backward(d, x.shape))):
    y, vjp = jax.vjp(nn.POOLS[pool], x)
    delta = _rand(1, y.shape)
    np.testing.assert_allclose(manual(delta), vjp(delta)[0], rtol=1e-12, atol=1e-12)
  # max: exactly one unit of each block receives the error; avg: each gets 1/N^2 of it
  d = jnp.ones((2, 3, 3, 3), F64)
  assert float(backprop.max_pool_backward(d, x).sum()) == 2 * 3 * 3 * 3
  np.testing.assert_allclose(backprop.avg_pool_backward(d, x.shape), 0.25)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_conv_and_pool_gradients_against_finite_differences(pool):
  x = _rand(0, (2, 6, 6, 2))
  params = {"w": _rand(1, (3, 3, 2, 2)), "b": _rand(2, (2,))}
  proj = _rand(3, (2, 3, 3, 2))
  f = lambda p: jnp.sum(jnp.tanh(nn.POOLS[pool](nn.conv2d(p, x))) * proj)
  res = check_grad(f, params, mode="all")
  assert res.max_rel_error < 1e-6, res.max_rel_error


def _tiny_seed_net(pool, arch="seed_cnn"):
  cfg = dataclasses.replace(Config(), arch=arch, pool=pool, dropout=0.0)
  # The seed net's structure (conv-pool-conv-pool-dense-out) at a checkable size.
  k = jax.random.split(jax.random.key(1), 4)
  params = {"conv1": nn.conv2d_init(k[0], 5, 1, 3, F64), "conv2": nn.conv2d_init(k[1], 5, 3, 4, F64),
            "dense1": nn.dense_init(k[2], 2 * 2 * 4, 6, F64), "out": nn.dense_init(k[3], 6, 3, F64)}
  params = jax.tree.map(lambda p: p + 0.05 * _rand(5, p.shape), params)
  x, y = jnp.abs(_rand(6, (4, 8, 8, 1))), jnp.array([0, 1, 2, 1])
  return cfg, params, x, y


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_seed_cnn_matches_the_seeds_hand_backprop_routing(pool):
  """A pin on the seed's equations, not a gradient check: jaxml/backprop.py chains the seed's
  hand-derived conv, pooling and ReLU backward rules. A deliberate change of the model (another
  activation, another layer) fails here and only here; the gradient tests below still hold."""
  cfg, params, x, y = _tiny_seed_net(pool)
  loss = lambda p: classification_loss(cnn.apply(p, x, cfg=cfg), y)[0]
  auto = jax.grad(loss)(params)
  hand = backprop.seed_cnn_grads(params, x, y, pool)
  err = max(float(jnp.max(jnp.abs(a - h)) / jnp.max(jnp.abs(h)))
            for a, h in zip(jax.tree.leaves(auto), jax.tree.leaves(hand)))
  assert err < 1e-9, (
      f"cnn.apply(arch='seed_cnn', pool={pool!r}) no longer matches the seed's conv/{pool}-pool/"
      f"ReLU backprop routing (jaxml/backprop.py: seed_cnn_grads): largest relative difference "
      f"{err:.3g}. If you changed the model on purpose, this pin is expected to fail; the "
      f"gradient tests check the new model")


def test_the_seeds_hand_backprop_routing_against_finite_differences():
  """The reference itself is right: the seed's chained rules equal central differences of the
  seed net's loss as the reference writes it (ReLU, max-pool)."""
  cfg, params, x, y = _tiny_seed_net("max")
  loss = lambda p: classification_loss(backprop.seed_cnn_logits(p, x, "max"), y)[0]
  res = check_grad(loss, params, mode="all", grad_fn=lambda p: backprop.seed_cnn_grads(p, x, y,
                                                                                        "max"))
  assert res.max_rel_error < 1e-6, res.max_rel_error


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_seed_cnn_loss_gradient_against_finite_differences(pool):
  """jax.grad of the whole net's loss, every coordinate: holds for any correct model."""
  cfg, params, x, y = _tiny_seed_net(pool)
  loss = lambda p: classification_loss(cnn.apply(p, x, cfg=cfg), y)[0]
  res = check_grad(loss, params, mode="all")
  assert res.max_rel_error < 1e-6, res.max_rel_error
  assert np.abs(res.analytic).max() > 1e-3  # the check compared something non-trivial


@pytest.mark.parametrize("arch, pool, act", [("lenet5", "avg", "tanh"), ("lenet5", "max", "relu"),
                                             ("seed_cnn", "max", "relu")])
def test_cnn_loss_gradient_along_directions(arch, pool, act):
  """Every registered architecture at its real size on 28x28 input, along random directions."""
  cfg = dataclasses.replace(Config(), arch=arch, pool=pool, activation=act, dropout=0.0)
  params = cnn.init(jax.random.key(0), cfg, input_shape=(28, 28, 1), n_classes=10, dtype=F64)
  params = jax.tree.map(lambda p: p + 0.01 * _rand(2, p.shape), params)
  x, y = jnp.abs(_rand(1, (3, 28, 28, 1))), jnp.array([1, 5, 9])
  loss = lambda p: classification_loss(cnn.apply(p, x, cfg=cfg), y)[0]
  res = check_grad(loss, params, mode="directions", n_directions=4)
  assert res.max_rel_error < 1e-6, res.max_rel_error


@pytest.mark.parametrize("arch", sorted(cnn.ARCHS))
def test_cnn_takes_other_image_sizes_and_class_counts(arch):
  cfg = dataclasses.replace(Config(), arch=arch)
  params = cnn.init(jax.random.key(0), cfg, input_shape=(25, 25, 3), n_classes=2)
  assert cnn.apply(params, jnp.zeros((5, 25, 25, 3), jnp.float32), cfg=cfg).shape == (5, 2)
  assert cnn.first_layer_filters(params, cfg).shape[:3] == (5, 5, 3)


def test_random_shift_moves_images_by_whole_pixels():
  x = jnp.zeros((8, 10, 10, 1)).at[:, 5, 5, 0].set(1.0)
  y = random_shift(x, jax.random.key(0), 2)
  assert y.shape == x.shape and np.allclose(y.sum(axis=(1, 2, 3)), 1.0)
  pos = np.argwhere(np.asarray(y[..., 0]) == 1.0)[:, 1:]
  assert (np.abs(pos - 5) <= 2).all() and len({tuple(p) for p in pos}) > 1


def test_random_affine_identity_and_rotation():
  x = jax.random.uniform(jax.random.key(0), (3, 12, 12, 1), jnp.float32)
  same = random_affine(x, jax.random.key(1), max_shift=0.0, max_rotate_deg=0.0, max_scale=0.0)
  np.testing.assert_allclose(same, x, atol=1e-6)
  dot = jnp.zeros((1, 11, 11, 1), jnp.float32).at[0, 5, 9, 0].set(1.0)  # right of centre
  moved = random_affine(dot, jax.random.key(2), max_shift=0.0, max_rotate_deg=90.0,
                        max_scale=0.0)
  r, c = np.unravel_index(np.argmax(np.asarray(moved[0, ..., 0])), (11, 11))
  assert abs(np.hypot(r - 5, c - 5) - 4) < 1.0  # rotation keeps the distance to the centre


@pytest.mark.parametrize("size", [(8, 8), (25, 25), (7, 10)])
def test_pooling_equals_reduce_window_including_odd_sizes(size):
  """Pools are reshape-based (faster gradient on CPU); same values and gradients as
  lax.reduce_window with VALID padding, which drops a last odd row/column (faces: 25 -> 12)."""
  x = _rand(0, (2, *size, 3))  # continuous values: no ties inside a block
  ref = {"max": lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                                (1, 2, 2, 1), "VALID"),
         "avg": lambda x: jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1),
                                                (1, 2, 2, 1), "VALID") / 4}
  for kind, pool in nn.POOLS.items():
    y, vjp = jax.vjp(pool, x)
    y_ref, vjp_ref = jax.vjp(ref[kind], x)
    assert y.shape == (2, size[0] // 2, size[1] // 2, 3)
    np.testing.assert_array_equal(y, y_ref)
    delta = _rand(1, y.shape)
    np.testing.assert_allclose(vjp(delta)[0], vjp_ref(delta)[0], rtol=1e-15, atol=0)


# ----------------------------------------------------------------------------- cpu_conv="eigen"
def _ynn_fusions(hlo: str) -> tuple[int, int]:
  """(YNNPACK fusions, those of them holding a convolution) in an optimised HLO module's text."""
  bodies, name = {}, None
  for line in hlo.splitlines():
    if line.startswith("%") and line.rstrip().endswith("{"):
      name = line.split()[0][1:]
      bodies[name] = ""
    elif name is not None:
      bodies[name] += line + "\n"
  calls = [line.split("calls=%")[1].split(",")[0] for line in hlo.splitlines()
           if '"__ynn_fusion"' in line and "calls=%" in line]
  return len(calls), sum(" convolution(" in bodies.get(c, "") for c in calls)


def test_eigen_conv_moves_only_the_convolutions_and_keeps_the_numbers():
  """cpu_conv="eigen" (the MNIST CNNs' default) compiles the same program with every
  convolution on XLA's Eigen kernels: the seed CNN's real-size float32 loss gradient is the
  default compilation's to float rounding, and only the convolutions left YNNPACK."""
  from jaxml import runtime
  options = runtime.compiler_options("eigen")
  if options is None and jax.__version__ != "0.10.2":  # the jaxlib this was measured on
    pytest.skip(f"jax {jax.__version__} refuses EIGEN_CONV_OPTIONS (runtime warned); XLA's "
                f"defaults are used")
  assert options == runtime.EIGEN_CONV_OPTIONS  # this jaxlib takes it and the probe agreed
  assert runtime.compiler_options("xla") is None
  with pytest.raises(ValueError, match="valid: xla, eigen"):
    runtime.compiler_options("mkl")
  cfg = dataclasses.replace(Config(), dropout=0.0)
  params = cnn.init(jax.random.key(0), cfg, input_shape=(28, 28, 1), n_classes=10)
  x, y = jnp.abs(_rand(1, (8, 28, 28, 1))).astype(jnp.float32), jnp.arange(8) % 10
  grad = jax.grad(lambda p: classification_loss(cnn.apply(p, x, cfg=cfg), y)[0])
  default = jax.jit(grad).lower(params).compile()
  eigen = jax.jit(grad, compiler_options=options).lower(params).compile()
  (n_default, conv_default), (n_eigen, conv_eigen) = (_ynn_fusions(c.as_text())
                                                      for c in (default, eigen))
  if conv_default == 0:
    pytest.skip("this jaxlib's XLA:CPU gives no convolution to YNNPACK: nothing to move")
  assert conv_eigen == 0 and n_eigen == n_default - conv_default, (n_default, conv_default,
                                                                   n_eigen, conv_eigen)
  for a, b in zip(jax.tree.leaves(default(params)), jax.tree.leaves(eigen(params))):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(a))))


def test_eigen_conv_gradient_against_finite_differences():
  """The seed net's loss gradient compiled with cpu_conv="eigen", along random directions."""
  from jaxml import runtime
  cfg, params, x, y = _tiny_seed_net("max")
  loss = lambda p: classification_loss(cnn.apply(p, x, cfg=cfg), y)[0]
  grad = jax.jit(jax.grad(loss), compiler_options=runtime.compiler_options("eigen"))
  res = check_grad(loss, params, mode="directions", n_directions=4, grad_fn=grad)
  assert res.max_rel_error < 1e-6, res.max_rel_error


def test_fit_compiles_with_the_configs_cpu_conv(monkeypatch):
  """train.fit passes cfg.cpu_conv to runtime.compiler_options for what it compiles."""
  from jaxml import runtime, train
  asked = []
  real = runtime.compiler_options
  monkeypatch.setattr(runtime, "compiler_options", lambda v: asked.append(v) or real(v))
  cfg = dataclasses.replace(Config(), dropout=0.0, epochs=1, batch_size=4, patience=0)
  cfg = dataclasses.replace(cfg, arch="lenet5")
  params = cnn.init(jax.random.key(0), cfg, input_shape=(12, 12, 1), n_classes=3)
  from jaxml.pipeline import classifier_loss_fn
  loss_fn = classifier_loss_fn(lambda p, x, *, train, key: cnn.apply(p, x, cfg=cfg))
  data = {"x": np.abs(np.random.default_rng(0).standard_normal((8, 12, 12, 1))).astype(
      np.float32), "y": np.arange(8, dtype=np.int32) % 3}
  train.fit(cfg, params=params, loss_fn=loss_fn, train_data=data, val_data=data,
            key=jax.random.key(0), log=lambda m: None)
  assert asked == ["eigen"]


def test_the_fingerprint_tells_the_compilations_apart():
  """A checkpoint of an Eigen-compiled run does not resume under XLA's default compilation (or
  after the probe fell back to it): the options are part of computation_fingerprint."""
  from jaxml import runtime, train
  lowered = jax.jit(lambda w, x: nn.conv2d_lax(w, x, "SAME")).lower(
      jnp.ones((3, 3, 1, 2)), jnp.ones((1, 5, 5, 1)))
  plain = train.computation_fingerprint(lowered)
  assert train.computation_fingerprint(lowered, compiler_options=None) == plain
  assert train.computation_fingerprint(
      lowered, compiler_options=runtime.EIGEN_CONV_OPTIONS) != plain
