"""The neural 4-gram model: forward pass, embedding lookup, gradients, and tiny end-to-end runs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import ngram_lm as exp
from jaxml.gradcheck import check_grad
from jaxml.models import ngram_lm
from tests.test_data_ngrams import TEXT, write_data2
from tests.test_run_cli import assert_one_line_error, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def _params(dtype=jnp.float64, *, v=7, d=2, p=3, scheme="normal", std=0.5):
  return ngram_lm.init(jax.random.key(0), vocab_size=v, embed_dim=d, hidden=p, scheme=scheme,
                       std=std, dtype=dtype)


def _batch(n=9, v=7, seed=1):
  rng = np.random.default_rng(seed)
  return {"x": jnp.asarray(rng.integers(0, v, (n, 3)), jnp.int32),
          "y": jnp.asarray(rng.integers(0, v, (n,)), jnp.int32),
          "weight": jnp.asarray(np.r_[np.ones(n - 1), 0.0])}  # the last row is padding


def test_embedding_lookup_equals_the_one_hot_product():
  params = _params(jnp.float32, v=11, d=4)
  x = _batch(v=11)["x"]
  one_hot = jax.nn.one_hot(x, 11)                        # [batch, 3, V]
  product = (one_hot @ params["embed"]).reshape(len(x), -1)
  np.testing.assert_allclose(ngram_lm.embed(params, x), product, rtol=1e-6)


def test_forward_pass_against_a_numpy_reference():
  params = jax.tree.map(np.asarray, _params())
  x = np.asarray(_batch()["x"])
  h_in = np.concatenate([params["embed"][x[:, k]] for k in range(3)], axis=1)
  h = 1 / (1 + np.exp(-(h_in @ params["hidden"]["w"] + params["hidden"]["b"])))
  want = h @ params["out"]["w"] + params["out"]["b"]
  np.testing.assert_allclose(ngram_lm.apply(params, jnp.asarray(x)), want, rtol=1e-10)
  np.testing.assert_allclose(jax.jit(ngram_lm.apply)(params, jnp.asarray(x)), want, rtol=1e-10)


def test_loss_gradient_against_finite_differences_float64():
  params, batch = _params(), _batch()
  f = lambda p: ngram_lm.loss_fn(p, batch)[0]
  result = check_grad(f, params, mode="all")
  assert result.max_rel_error < 1e-7, result.max_rel_error
  # Rows of words that no context uses get no gradient (the lookup is a scatter-add).
  unused = sorted(set(range(7)) - set(np.asarray(batch["x"][:-1]).ravel()))
  g = jax.grad(f)(params)["embed"]
  assert all(np.all(g[i] == 0) for i in unused)


def test_loss_is_the_weighted_mean_cross_entropy():
  params, batch = _params(), _batch()
  logits = np.asarray(ngram_lm.apply(params, batch["x"]))
  logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  ce = -logp[np.arange(len(logits)), np.asarray(batch["y"])]
  loss, sums = ngram_lm.loss_fn(params, batch)
  assert float(loss) == pytest.approx(ce[:-1].mean(), rel=1e-10)
  assert float(sums["count"]) == len(ce) - 1


def test_dropout_only_in_training_and_keyed():
  params, batch = _params(jnp.float32, std=0.01, scheme="xavier"), _batch()
  loss_fn = ngram_lm.make_loss_fn(0.5)
  ev = loss_fn(params, batch, train=False)[0]
  assert ev == ngram_lm.loss_fn(params, batch)[0]
  a = loss_fn(params, batch, train=True, key=jax.random.key(1))[0]
  b = loss_fn(params, batch, train=True, key=jax.random.key(2))[0]
  assert a != ev and a != b
  with pytest.raises(ValueError, match="PRNG key"):
    loss_fn(params, batch, train=True, key=None)


def test_init_schemes():
  p = _params(jnp.float32, v=250, d=32, p=256, std=0.01)
  assert p["embed"].shape == (250, 32) and p["hidden"]["w"].shape == (96, 256)
  assert p["out"]["w"].shape == (256, 250) and p["out"]["b"].shape == (250,)
  assert all(abs(float(jnp.std(a)) - 0.01) < 1e-3 for a in jax.tree.leaves(p))  # seed: N(0, .01)
  x = _params(jnp.float32, v=250, d=32, p=256, scheme="xavier", std=0.1)
  assert float(jnp.abs(x["hidden"]["b"]).max()) == 0.0
  assert float(jnp.abs(x["hidden"]["w"]).max()) <= (6 / (96 + 256)) ** 0.5


def test_top_k_is_sorted_and_matches_argsort():
  params, x = _params(), _batch()["x"]
  ids, probs = ngram_lm.top_k(params, x, 4)
  full = np.asarray(jax.nn.softmax(ngram_lm.apply(params, x)))
  assert np.all(np.diff(np.asarray(probs), axis=1) <= 0)
  np.testing.assert_allclose(probs, np.take_along_axis(full, np.asarray(ids), 1))
  np.testing.assert_array_equal(np.asarray(ids)[:, 0], full.argmax(axis=1))


def test_validate_rejects_mismatched_sizes():
  from jaxml.errors import UserError
  import dataclasses
  with pytest.raises(UserError, match="hidden_sizes"):
    exp.validate(dataclasses.replace(exp.default_preset(), hidden_sizes=(4,)))
  with pytest.raises(UserError, match="dropout"):
    exp.validate(dataclasses.replace(exp.default_preset(), dropout=1.0))


def test_tiny_run_on_a_seed_format_file(tmp_path):
  data = write_data2(tmp_path / "data2.h5", n=(600, 100, 100))
  work = tmp_path / "w"
  proc = run_cli("--exp=ngram_lm", "--tiny", f"--data_path={data}", f"--workdir={work}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((work / "results.json").read_text())
  m = res["metrics"]
  assert sorted(m["configs"]) == ["D2_P4", "D4_P8"]
  assert m["test_cross_entropy"] == m["configs"][m["best_config"]]["test_cross_entropy"]
  # Random ids: nothing to learn, so the cross-entropy stays near log(250) = 5.52 nats.
  assert all(5.3 < c["test_cross_entropy"] < 5.8 for c in m["configs"].values())
  assert res["data"]["source"] == "seed h5 data2.h5" and res["data"]["n_train"] == 600
  assert "[D4_P8] epoch   2/2" in proc.stdout
  for png in ("cross_entropy.png", "embeddings.png"):
    assert (work / png).read_bytes()[:8] == PNG
  preds = (work / "predictions.txt").read_text()
  assert preds.count(" -> ") == 10 and "[actual: w" in preds
  assert any((work / "D2_P4" / "checkpoints").iterdir())


def test_tiny_seed_preset_on_a_text_file_learns(tmp_path):
  # In-process (no interpreter start-up): the runner's part is covered by the test above.
  import dataclasses
  from experiments.base import RunContext
  text = tmp_path / "book.txt"
  text.write_text(TEXT * 40)
  cfg = dataclasses.replace(exp.tiny(exp.seed_preset()), vocab_size=12, embed_dims=(4,),
                            hidden_sizes=(8,), epochs=30, batch_size=20)
  exp.validate(cfg)
  logs = []
  out = exp.run(cfg, RunContext(workdir=tmp_path / "w", data_path=str(text), seed=0,
                                log=logs.append))
  assert cfg.optimizer == "sgd" and cfg.learning_rate == 0.15 and cfg.momentum == 0.85
  hist = out["history"]["D4_P8"]
  assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.3  # it learns a repeated text
  assert out["metrics"]["best_config"] == "D4_P8" and out["data"]["vocab_size"] == 12
  assert list((tmp_path / "w" / "cache").glob("ngrams_*.npz"))
  assert (tmp_path / "w" / "predictions.txt").read_text().count(" -> ") == 5
  assert any(m.startswith("[D4_P8] epoch  30/30") for m in logs)


def test_bad_data_exits_2_and_writes_nothing(tmp_path):
  data = write_data2(tmp_path / "data2.h5", valx=np.full((40, 3), 300, np.int32))
  work = tmp_path / "w"
  proc = run_cli("--exp=ngram_lm", "--tiny", f"--data_path={data}", f"--workdir={work}")
  assert_one_line_error(proc, r"'valx' holds word ids in \[300, 300\]")
  assert not work.exists()
