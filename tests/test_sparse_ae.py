"""Sparse autoencoder: jax.grad of the cost against finite differences (what training follows),
the seed's `aeCost` as a named reference, the L-BFGS solver with its checkpoints, and tiny
end-to-end runs of both experiments.

The seed's hand-derived gradient lives here only, as `seed_ae_cost` (its appendix code). That
code is right; its *written* derivation (section 1.2) is not, in five places:

1. dMSE/dW_out = W_hid^T delta_out and dMSE/dW_hid = W_out^T delta_hid multiply by the weight
   matrices (the shapes do not even agree); the factors are the layer *inputs*: H^T delta_out
   and X^T delta_hid.
2. delta_out = -sigma'(V_out) (X - Y) has no 1/N while the bias derivatives carry one, so the
   weight derivatives come out N times too large; the 1/N belongs in delta_out (the code has it).
3. dKL/dW_hid = beta[(1-rho)/(1-rho_b) - rho/rho_b], added straight onto W_hid's gradient as a
   column: rho_b depends on W_hid only through rho_b = mean_i sigma(x_i W_hid + b_hid), so the
   chain rule multiplies by 1/N, sigma'(V_hid) and the input x:
   dKL/dW_hid[a, b] = beta[...]_b (1/N) sum_i sigma'(V_hid)_ib x_ia.
4. dKL/db_hid = 0 is wrong for the same reason: it is beta[...]_b (1/N) sum_i sigma'(V_hid)_ib.
5. delta_hid = sigma'(V_hid) (W_out^T delta_out) leaves the KL term out; the corrected
       delta_hid = sigma'(V_hid) * (delta_out W_out^T + beta[(1-rho)/(1-rho_b) - rho/rho_b] / N)
   carries items 3 and 4, and then dJ/dW_hid = X^T delta_hid + lam W_hid, dJ/db_hid = sum_i
   delta_hid. That corrected form is what the appendix code computes.

(Two smaller slips: the forward pass is written Y = sigma(sigma(X W_hid)) without W_out and the
biases, and rho_b with an elementwise product X (.) W_hid where a matrix product is meant.)
`written_derivation_grad` below is the written form with slips 1-2 fixed; it fails the check.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import sparse_ae as exp
from jaxml import plots
from jaxml.gradcheck import check_grad
from jaxml.models import sparse_autoencoder as sae
from tests.test_data_patches import write_data1
from tests.test_run_cli import assert_one_line_error, run_cli, run_cli_sigterm

F64 = jnp.float64
PNG = b"\x89PNG\r\n\x1a\n"
COSTS = [dict(), dict(lam=0.0, beta=0.0), dict(lam=0.0, beta=3.0, rho=0.02)]


@dataclasses.dataclass(frozen=True)
class Cost:
  lam: float = 1e-2
  beta: float = 2.0
  rho: float = 0.1


def _problem(n=7, n_in=16, hidden=3, seed=0):
  params = sae.init(jax.random.key(seed), n_in=n_in, n_hidden=hidden, tied_init=False, dtype=F64)
  x = jax.random.uniform(jax.random.key(seed + 1), (n, n_in), F64, 0.1, 0.9)
  return params, x


def seed_ae_cost(params, data, lam, beta, rho):
  """The seed's appendix `aeCost` in numpy, as written there (row vectors for the biases)."""
  W1, W2 = np.asarray(params["w1"]), np.asarray(params["w2"])
  b1, b2 = np.asarray(params["b1"])[None], np.asarray(params["b2"])[None]
  data = np.asarray(data)
  sigmoid = lambda x: np.exp(x) / (1 + np.exp(x))
  N = len(data)
  W1_ = data.dot(W1) + b1
  hid, d_hid = sigmoid(W1_), sigmoid(W1_) * (1 - sigmoid(W1_))
  W2_ = hid.dot(W2) + b2
  out, d_out = sigmoid(W2_), sigmoid(W2_) * (1 - sigmoid(W2_))
  hid_mean = hid.mean(axis=0, keepdims=True)
  ASE = (1 / (2 * N)) * np.sum(np.power((data - out), 2))
  TYK = (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
  KL = beta * (rho * np.log(rho / hid_mean) + (1 - rho) * np.log((1 - rho) / (1 - hid_mean))).sum()
  d1 = -(data - out) / N * d_out
  dW2 = hid.T.dot(d1) + W2 * lam
  db2 = d1.sum(axis=0, keepdims=True)
  d_KL = beta * (-rho / hid_mean + (1 - rho) / (1 - hid_mean)) / N
  d2 = d_hid * (d1.dot(W2.T) + d_KL)
  dW1 = data.T.dot(d2) + W1 * lam
  db1 = d2.sum(axis=0, keepdims=True)
  return ASE + TYK + KL, {"w1": dW1, "b1": db1[0], "w2": dW2, "b2": db2[0]}


def written_derivation_grad(params, x, cfg):
  """The seed's section 1.2 as written, with its slips 1-2 fixed (inputs, not weights; the 1/N
  in delta_out) so only the KL part differs: the KL derivative is added straight onto W_hid's
  gradient, and b_hid gets no KL term."""
  n = x.shape[0]
  hid = sae.encode(params, x)
  out = sae.decode(params, hid)
  rho_hat = hid.mean(axis=0)
  d_out = -(x - out) * out * (1 - out) / n
  d_hid = (d_out @ params["w2"].T) * hid * (1 - hid)
  kl_col = cfg.beta * ((1 - cfg.rho) / (1 - rho_hat) - cfg.rho / rho_hat)
  return {"w1": x.T @ d_hid + cfg.lam * params["w1"] + kl_col, "b1": d_hid.sum(axis=0),
          "w2": hid.T @ d_out + cfg.lam * params["w2"], "b2": d_out.sum(axis=0)}


@pytest.mark.parametrize("cost", COSTS)
def test_cost_and_jax_grad_match_the_seeds_aeCost(cost):
  """A pin on the seed's equations: J and jax.grad of it equal the seed's appendix aeCost (its
  hand-derived gradient). A deliberate change of the cost fails here and only here."""
  params, x = _problem(n=11, n_in=9, hidden=5, seed=3)
  cfg = Cost(**cost)
  j_seed, g_seed = seed_ae_cost(params, x, cfg.lam, cfg.beta, cfg.rho)
  for jit in (True, False):
    fn = jax.jit(sae.ae_cost, static_argnums=2) if jit else sae.ae_cost
    j, g = fn(params, x, cfg)
    err = max(float(np.max(np.abs(np.asarray(g[k]) - g_seed[k])) / np.max(np.abs(g_seed[k])))
              for k in g_seed)
    assert float(j) == pytest.approx(j_seed, rel=1e-12) and err < 1e-10, (
        f"sparse_autoencoder.objective (J {float(j):.12g}) or jax.grad of it no longer matches "
        f"the seed's aeCost (J {j_seed:.12g}, its hand-derived gradient: largest relative "
        f"difference {err:.3g}). If you changed the cost on purpose this pin is expected to "
        f"fail; the finite-difference tests check the new cost")


@pytest.mark.parametrize("cost", COSTS)
def test_the_seeds_aeCost_gradient_against_finite_differences(cost):
  """The reference itself is right (so the pin above pins a correct gradient)."""
  params, x = _problem()
  cfg = Cost(**cost)
  res = check_grad(lambda p: sae.objective(p, x, cfg), params,
                   grad_fn=lambda p: seed_ae_cost(p, x, cfg.lam, cfg.beta, cfg.rho)[1])
  assert res.max_rel_error < 1e-7, res.max_rel_error


@pytest.mark.parametrize("term", ["mse", "tikhonov", "kl", "total"])
def test_each_term_against_finite_differences(term):
  params, x = _problem()
  cfg = Cost()
  res = check_grad(lambda p: sae.cost_terms(p, x, cfg)[term], params)
  assert res.max_rel_error < 1e-7, res.max_rel_error


def test_the_seeds_written_kl_derivative_fails_the_check():
  params, x = _problem()
  cfg = Cost()
  f = lambda p: sae.objective(p, x, cfg)
  res = check_grad(f, params, grad_fn=lambda p: written_derivation_grad(p, x, cfg))
  assert res.max_rel_error > 0.1, res.max_rel_error
  without_kl = Cost(beta=0.0)  # with beta = 0 the written form is right
  res = check_grad(lambda p: sae.objective(p, x, without_kl), params,
                   grad_fn=lambda p: written_derivation_grad(p, x, without_kl))
  assert res.max_rel_error < 1e-7


def test_larger_model_along_random_directions():
  params, x = _problem(n=20, n_in=64, hidden=10, seed=5)
  cfg = Cost(lam=5e-4, beta=2.0, rho=0.025)
  res = check_grad(lambda p: sae.objective(p, x, cfg), params, mode="directions",
                   n_directions=6)
  assert res.max_rel_error < 1e-7, res.max_rel_error


def test_training_follows_jax_grad_of_the_reported_cost(monkeypatch):
  """The train loop's gradient is jax.grad of the J that evaluation reports, also after the
  cost is edited (here: the sparsity term doubled at run time)."""
  params, x = _problem(n=8, n_in=16, hidden=4)
  cfg = exp.Config(hidden=4, rho=0.1)
  batch = {"x": x, "weight": jnp.ones(len(x), F64)}
  train_grad = lambda: jax.grad(lambda p: exp.make_loss_fn(cfg)(p, batch, train=True,
                                                                key=None)[0])(params)
  reported = lambda p: exp.evaluate(p, np.asarray(x), cfg)["J"]
  before = train_grad()
  kl = sae.kl_bernoulli
  monkeypatch.setattr(sae, "kl_bernoulli", lambda rho, r: 2 * kl(rho, r))
  after = train_grad()
  assert not np.allclose(after["b1"], before["b1"])
  np.testing.assert_allclose(float(exp.make_loss_fn(cfg)(params, batch, train=True, key=None)[0]),
                             reported(params), rtol=1e-12)
  res = check_grad(lambda p: sae.cost_terms(p, x, cfg)["total"], params,
                   grad_fn=lambda p: after)
  assert res.max_rel_error < 1e-7, res.max_rel_error


def test_weighted_cost_ignores_padding_rows():
  params, x = _problem()
  cfg = Cost()
  padded = jnp.concatenate([x, jnp.full((3, x.shape[1]), 0.5)])
  w = jnp.concatenate([jnp.ones(len(x)), jnp.zeros(3)])
  a, b = sae.cost_terms(params, x, cfg), sae.cost_terms(params, padded, cfg, w)
  for k in ("mse", "tikhonov", "kl", "total"):
    assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-12)


def test_init_ranges_and_tied_start():
  p = sae.init(jax.random.key(0), n_in=256, n_hidden=64)
  limit = np.sqrt(6 / (256 + 64))
  assert p["w1"].shape == (256, 64) and p["w2"].shape == (64, 256)
  assert p["b1"].shape == (64,) and p["b2"].shape == (256,)
  assert all(float(jnp.abs(v).max()) <= limit for v in p.values())
  assert float(jnp.abs(p["w1"]).max()) > 0.9 * limit
  np.testing.assert_array_equal(p["w2"], p["w1"].T)
  q = sae.init(jax.random.key(0), n_in=256, n_hidden=64, tied_init=False)
  assert not np.array_equal(q["w2"], q["w1"].T)


def test_one_sgd_step_changes_every_parameter():
  params, x = _problem(n=8, n_in=16, hidden=4)
  cfg = exp.Config(hidden=4, rho=0.1)
  loss_fn = exp.make_loss_fn(cfg)
  batch = {"x": x.astype(jnp.float32), "weight": jnp.ones(len(x), jnp.float32)}
  params = jax.tree.map(lambda v: v.astype(jnp.float32), params)
  grads = jax.grad(lambda p: loss_fn(p, batch, train=True, key=None)[0])(params)
  opt = optax.sgd(cfg.learning_rate, momentum=cfg.momentum)
  updates, _ = opt.update(grads, opt.init(params), params)
  new = optax.apply_updates(params, updates)
  assert all(bool(jnp.all(a != b)) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)))


def test_lbfgs_solver_checkpoints_and_reuses_a_finished_run(tmp_path):
  params, x = _problem(n=40, n_in=16, hidden=4, seed=2)
  params, x = jax.tree.map(lambda v: v.astype(jnp.float32), (params, x))
  cfg = exp.Config(hidden=4, rho=0.1, solver="lbfgs", lbfgs_iters=12, lbfgs_log_every=5,
                   lbfgs_tol=0.0)
  train = lambda sig: exp.train_lbfgs(cfg, params, np.asarray(x), np.asarray(x[:8]),
                                      log=lambda m: None, ckpt_dir=tmp_path / "c", signature=sig)
  out, history, info = train({"s": 1})
  assert [r["iteration"] for r in history] == [5, 10, 12] and info["iterations"] == 12
  assert history[-1]["train_J"] < float(sae.objective(params, x, cfg))
  assert sorted(int(p.name) for p in (tmp_path / "c").iterdir()) == [10, 12]  # orbax keeps 2
  again, _, info2 = train({"s": 1})
  assert info2["resumed_from_iteration"] == 12
  jax.tree.map(np.testing.assert_array_equal, again, out)
  with pytest.raises(exp.UserError, match="different config"):
    train({"s": 2})


def test_mosaic_and_filter_images():
  tiles = plots.filter_images(np.arange(2 * 9, dtype=np.float64).reshape(9, 2))
  assert tiles.shape == (2, 3, 3) and tiles.min() == 0 and tiles.max() == 1
  m = plots.mosaic(tiles, cols=2, pad=1)
  assert m.shape == (5, 9)
  np.testing.assert_array_equal(m[1:4, 5:8], tiles[1])


def _results(workdir):
  return json.loads((workdir / "results.json").read_text())


def test_tiny_sparse_ae_end_to_end(tmp_path):
  proc = run_cli("--exp=sparse_ae", "--tiny", f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = _results(tmp_path)
  m = res["metrics"]
  assert res["exp"] == "sparse_ae" and res["data"]["n_patches"] == 320
  assert m["J"] == pytest.approx(m["mse_term"] + m["tikhonov_term"] + m["kl_term"], rel=1e-5)
  assert 0 < m["mean_activation"] < 1 and 0 < m["reconstruction_mse_ratio"] < 2
  for png in ("filters.png", "reconstructions.png", "patches_before_after.png", "cost.png"):
    assert (tmp_path / png).read_bytes()[:8] == PNG


def test_tiny_seed_sweep_on_a_seed_format_file(tmp_path):
  data = write_data1(tmp_path / "data1.h5", n=120)
  work = tmp_path / "w"
  proc = run_cli("--exp=sparse_ae_sweep", "--preset=seed", "--tiny", f"--data_path={data}",
                 f"--workdir={work}", "--config.sweep_hidden=4,9", "--config.sweep_lam=1e-3")
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = _results(work)
  assert res["config"]["solver"] == "sgd" and res["config"]["learning_rate"] == 0.075
  assert res["data"]["source"] == "seed h5 data1.h5" and res["data"]["n_patches"] == 120
  assert sorted(res["metrics"]) == ["h4_lam0.001", "h9_lam0.001"]
  assert all(m["tikhonov_term"] > 0 for m in res["metrics"].values())
  assert "[h9_lam0.001] epoch   2/2" in proc.stdout
  for h in (4, 9):
    assert (work / f"sweep_filters_h{h}.png").read_bytes()[:8] == PNG
    assert any((work / f"h{h}_lam0.001" / "checkpoints").iterdir())
  table = (work / "sweep_table.md").read_text()
  assert "\n| 4 | 0.001 |" in table and "\n| 9 | 0.001 |" in table


def test_bad_h5_exits_2_and_writes_nothing(tmp_path):
  data = write_data1(tmp_path / "data1.h5", data=np.zeros((10, 16, 16)))
  work = tmp_path / "w"
  proc = run_cli("--exp=sparse_ae", "--tiny", f"--data_path={data}", f"--workdir={work}")
  assert_one_line_error(proc, r"'data' has shape \(10, 16, 16\)")
  assert not work.exists()


def test_sigterm_during_lbfgs_checkpoints_and_the_rerun_ends_like_one_run(tmp_path):
  """SIGTERM mid-run: the running L-BFGS chunk finishes and is checkpointed, one error line,
  status 143; the rerun resumes and ends with exactly the metrics of an uninterrupted run."""
  args = ["--exp=sparse_ae", "--tiny", "--config.lbfgs_iters=40", "--config.lbfgs_log_every=1",
          "--config.lbfgs_tol=0"]
  full = run_cli(*args, f"--workdir={tmp_path / 'full'}")
  assert full.returncode == 0, full.stderr[-2000:]
  proc, out, err = run_cli_sigterm("lbfgs iter", *args, f"--workdir={tmp_path / 'cut'}")
  assert proc.returncode == 143, err[-2000:]
  assert "SIGTERM received: saving a checkpoint" in out
  assert "Traceback" not in err and len(err.strip().splitlines()) == 1
  assert err.startswith("error: interrupted by SIGTERM; saved a checkpoint after L-BFGS "
                        "iteration"), err
  again = run_cli(*args, f"--workdir={tmp_path / 'cut'}")
  assert again.returncode == 0 and "resuming from L-BFGS iteration" in again.stdout
  a = _results(tmp_path / "full")["metrics"]
  b = _results(tmp_path / "cut")["metrics"]
  assert b.pop("resumed_from_iteration") >= 1
  assert a == b
