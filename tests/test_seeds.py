"""Seeds as a batch axis (`--seeds=N`, `fit(replicas=N)`): replica r is the single run of seed
S + r, each replica early-stops on its own, a diverged replica stops alone, a multi-seed run
resumes exactly, and results.json summarises the seeds."""

import dataclasses
import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import activity, ngram_lm
from experiments.base import RunContext
from experiments.registry import EXPERIMENTS
from experiments.run import check_seeds, execute
from jaxml import nn, seeds
from jaxml.errors import DivergenceError, UserError
from jaxml.train import fit
from tests.test_ngram_lm import TEXT
from tests.test_train import CFG, _problem

# Replicas that early-stop at different epochs (patience 2, a large step).
STOPPING = dataclasses.replace(CFG, learning_rate=1.0, epochs=6, patience=2)


def _inits(n):
  return ([nn.mlp_init(jax.random.key(s), (5, 8, 2)) for s in range(n)],
          [jax.random.key(10 + s) for s in range(n)])


def _stack(trees):
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _same_run(single, replica, allclose, rtol=1e-5):
  """Replica's FitResult equals the single run's to float rounding."""
  assert (single.best_epoch, single.stop_reason) == (replica.best_epoch, replica.stop_reason)
  assert len(single.history) == len(replica.history)
  for a, b in zip(single.history, replica.history):
    for k in ("train_loss", "val_loss", "val_accuracy", "grad_norm", "param_norm"):
      np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(a["step_losses"], b["step_losses"], rtol=rtol, atol=1e-7)
  assert allclose(single.params, replica.params, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("mode", ["scan", "loop"])
def test_replica_r_is_the_single_run_and_stops_on_its_own(mode, allclose):
  """Three replicas in one vmapped program = three single runs (init, batch order, dropout
  from each one's key); they stop at different epochs, and the one that stopped first keeps
  its best parameters while the others train on (its updates masked)."""
  cfg = dataclasses.replace(STOPPING, epoch_mode=mode)
  params, loss_fn, tr, va = _problem()
  inits, keys = _inits(3)
  logs = []
  multi = fit(cfg, params=_stack(inits), loss_fn=loss_fn, train_data=tr, val_data=va,
              key=jnp.stack(keys), replicas=3, log=logs.append)
  singles = [fit(cfg, params=p, loss_fn=loss_fn, train_data=tr, val_data=va, key=k,
                 log=lambda m: None) for p, k in zip(inits, keys)]
  for single, replica in zip(singles, multi):
    _same_run(single, replica, allclose)
  epochs_run = [len(r.history) for r in multi]
  assert min(epochs_run) < max(epochs_run)  # one stopped while another went on
  first = int(np.argmin(epochs_run))
  assert multi[first].stop_reason.startswith("early stopping")
  assert any(m.startswith(f"replica {first}: stopped at epoch {epochs_run[first]}") for m in logs)
  assert any(f"{sum(n > epochs_run[first] for n in epochs_run)}/3 replicas" in m for m in logs)


def test_a_diverged_replica_stops_alone_and_all_diverged_is_divergence(allclose):
  """Replica 1's data holds an infinity: it diverges in epoch 1 and stops ("diverged: ...",
  its initial parameters kept); replica 0 trains as its single run. Both poisoned: exit 3."""
  params, loss_fn, tr, va = _problem()
  inits, keys = _inits(2)
  bad = dict(tr, x=tr["x"].copy())
  bad["x"][:, 0] = np.inf
  per_replica = lambda *ds: {k: np.stack([d[k] for d in ds]) for k in ds[0]}
  logs = []
  multi = fit(CFG, params=_stack(inits), loss_fn=loss_fn, train_data=per_replica(tr, bad),
              val_data=per_replica(va, va), key=jnp.stack(keys), replicas=2, shared_data=False,
              log=logs.append)
  single = fit(CFG, params=inits[0], loss_fn=loss_fn, train_data=tr, val_data=va, key=keys[0],
               log=lambda m: None)
  _same_run(single, multi[0], allclose)
  assert multi[1].stop_reason.startswith("diverged: non-finite loss or gradient at epoch 1")
  assert multi[1].history == [] and allclose(multi[1].params, inits[1], rtol=0, atol=0)
  assert any(m.startswith("replica 1 diverged, so it stops") for m in logs)
  with pytest.raises(DivergenceError, match="all 2 replicas diverged"):
    fit(CFG, params=_stack(inits), loss_fn=loss_fn, train_data=per_replica(bad, bad),
        val_data=per_replica(va, va), key=jnp.stack(keys), replicas=2, shared_data=False,
        log=lambda m: None)


def test_a_multi_seed_run_resumes_exactly_and_refuses_another_count(tmp_path, allclose):
  """Killed after epoch 3 is computed (before its checkpoint), the rerun resumes all replicas
  from epoch 2, stopped ones included, and ends where an uninterrupted run ends."""
  params, loss_fn, tr, va = _problem()
  inits, keys = _inits(3)
  run = lambda ck, log=lambda m: None, n=3: fit(
      STOPPING, params=_stack(inits[:n]), loss_fn=loss_fn, train_data=tr, val_data=va,
      key=jnp.stack(keys[:n]), replicas=n, checkpoint_dir=ck, log=log)
  full = run(tmp_path / "full")

  def kill_in_epoch_3(msg):
    if msg.startswith("epoch   3"):
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    run(tmp_path / "part", kill_in_epoch_3)
  logs = []
  resumed = run(tmp_path / "part", logs.append)
  assert logs[0].startswith("resuming from epoch 2 in ")
  strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
  for a, b in zip(full, resumed):
    assert allclose(a.params, b.params, rtol=0, atol=0)
    assert strip(a.history) == strip(b.history) and a.stop_reason == b.stop_reason
  with pytest.raises(UserError, match="3 network\\(s\\) trained together and this run has 2"):
    run(tmp_path / "part", n=2)


def test_gru_activity_seeds_match_single_runs_and_results_summarise_them(tmp_path):
  """The experiment end to end (in process): --seed=1 --seeds=2 trains seeds 1 and 2, each on
  its own validation split; seed 2's numbers are the --seed=2 run's; metrics is the mean,
  metrics_summary the mean, std and 95% interval."""
  cfg = activity.tiny(activity.default_preset("gru"))
  flags = types.SimpleNamespace(exp="gru_activity", preset="default", tiny=True, imports="",
                                data_path=None, workdir=str(tmp_path / "multi"), seed=1, seeds=2,
                                restart=False, compile_cache="none", cpu_threads="auto")
  assert execute(flags, {}) == 0  # the runner, as `--tiny --seed=1 --seeds=2`, in process
  out = json.loads((tmp_path / "multi" / "results.json").read_text())
  single = activity.run(cfg, RunContext(workdir=tmp_path / "single", data_path=None, seed=2,
                                        log=lambda m: None))
  assert {"metrics", "metrics_per_seed", "metrics_summary", "history_per_seed"} <= set(out)
  assert out["run"]["seeds"] == [1, 2] and len(out["metrics_per_seed"]) == 2
  assert "metrics_per_seed" not in single and "history" in single  # one seed: as before
  replica, alone = out["metrics_per_seed"][1], single["metrics"]
  assert replica["stop_reason"] == alone["stop_reason"]
  for k in ("train_loss", "val_loss", "test_loss", "test_accuracy", "val_accuracy"):
    np.testing.assert_allclose(replica[k], alone[k], rtol=1e-5)
  np.testing.assert_allclose([r["val_loss"] for r in out["history_per_seed"][1]],
                             [r["val_loss"] for r in single["history"]], rtol=1e-5)
  accs = [m["test_accuracy"] for m in out["metrics_per_seed"]]
  s = out["metrics_summary"]["test_accuracy"]
  assert s["n"] == 2 and s["mean"] == pytest.approx(np.mean(accs))
  assert s["std"] == pytest.approx(np.std(accs, ddof=1))
  assert s["ci95"][0] <= s["mean"] <= s["ci95"][1]
  assert out["metrics"]["test_accuracy"] == pytest.approx(np.mean(accs))
  assert (tmp_path / "multi" / "curves.png").stat().st_size > 0


def test_ngram_lm_seeds_share_the_data_and_match_single_runs(tmp_path):
  text = tmp_path / "book.txt"
  text.write_text(TEXT * 40)
  cfg = dataclasses.replace(ngram_lm.tiny(ngram_lm.default_preset()), vocab_size=12,
                            embed_dims=(4,), hidden_sizes=(8,), epochs=2, batch_size=20)
  ctx = lambda name, **kw: RunContext(workdir=tmp_path / name, data_path=str(text),
                                      log=lambda m: None, **kw)
  out = ngram_lm.run(cfg, ctx("multi", seed=0, seeds=2))
  single = ngram_lm.run(cfg, ctx("single", seed=1))
  np.testing.assert_allclose(out["metrics_per_seed"][1]["test_cross_entropy"],
                             single["metrics"]["test_cross_entropy"], rtol=1e-5)
  summary = out["metrics_summary"]["configs"]["D4_P8"]["test_cross_entropy"]
  assert summary["n"] == 2 and summary["std"] > 0  # two seeds, two different results
  assert ngram_lm.headline(out).startswith("test cross-entropy (nats/word, mean ± std over 2")


def test_seed_summary_and_which_experiments_take_seeds():
  s = seeds.interval([0.8, 0.9, 1.0])
  assert s["mean"] == pytest.approx(0.9) and s["std"] == pytest.approx(0.1)
  assert s["ci95"] == pytest.approx([0.9 - 4.302653 * 0.1 / 3 ** 0.5,
                                     0.9 + 4.302653 * 0.1 / 3 ** 0.5])  # t(0.975, 2 dof)
  out = seeds.summarize([{"a": 1.0, "why": "x", "c": {"b": 2}}, {"a": 3.0, "why": "y",
                                                                   "c": {"b": 4}}])
  assert out["metrics"] == {"a": 2.0, "why": ["x", "y"], "c": {"b": 3.0}}
  assert set(out["metrics_summary"]) == {"a", "c"}
  takes = {name for name, e in EXPERIMENTS.items() if e.seeds}
  assert {"gru_activity", "lenet5_mnist", "cnn_mnist", "lstm_imdb", "ngram_lm"} <= takes
  assert not takes & {"sparse_ae", "classical_mnist", "face_detect"}
  with pytest.raises(UserError, match="--seeds=2 is for the gradient-trained.*sparse_ae"):
    check_seeds(EXPERIMENTS["sparse_ae"], 2)
  with pytest.raises(UserError, match="--seeds=0; pass a positive number"):
    check_seeds(EXPERIMENTS["gru_activity"], 0)


def test_one_seed_compiles_to_the_program_of_before():
  """--seeds=1 is today's run: no vmap, the same lowered programs (fingerprints recorded from
  the train loop before replicas existed, commit 2edab65, under jax 0.10.2; x64 on, as this
  test session has it, and off)."""
  if jax.__version__ != "0.10.2":
    pytest.skip("fingerprints were recorded under jax 0.10.2")
  params, loss_fn, tr, va = _problem()
  recorded = ({"scan": "45a4c05967b3b338", "loop": "fe3f882e5c0b3b16"} if jax.config.jax_enable_x64
              else {"scan": "c910ab031365dc99", "loop": "a6429181eec0af11"})
  for mode, before in recorded.items():
    r = fit(dataclasses.replace(CFG, epoch_mode=mode), params=params, loss_fn=loss_fn,
            train_data=tr, val_data=va, key=jax.random.key(7), log=lambda m: None)
    assert r.fingerprint == before, mode


def test_an_ensemble_averages_members_that_are_single_runs(tmp_path):
  """train_classifier(ensemble=2) with 2 seeds: member 0 of seed s is the single run of key s,
  member 1 the single run of fold_in(key s, 1), and the run's logits are the log of their mean
  class probabilities; its metrics are the ensemble's, with each member's in "ensemble"."""
  from jaxml.pipeline import ensemble_logits, train_classifier
  rng = np.random.default_rng(3)
  x = rng.standard_normal((60, 5)).astype(np.float32)
  y = (x[:, 0] - x[:, 2] > 0).astype(np.int32)
  splits = {"train": (x[:32], y[:32]), "val": (x[32:44], y[32:44]), "test": (x[44:], y[44:])}
  init_fn = lambda k: nn.mlp_init(k, (5, 8, 2))
  apply_fn = lambda p, xb, *, train, key: nn.mlp(p, xb, dropout_rate=0.2, train=train, key=key)
  run = lambda name, key, **kw: train_classifier(
      CFG, splits=splits, class_names=["a", "b"], init_fn=init_fn, apply_fn=apply_fn, key=key,
      workdir=tmp_path / name, log=lambda m: None, **kw)
  seed_keys = [jax.random.key(5), jax.random.key(6)]
  out, extra = run("ens", seed_keys, ensemble=2)
  for s, k in [(1, seed_keys[1])]:  # the second seed's: replicas 2 and 3 of the program
    members = [run(f"m{s}{j}", k if j == 0 else jax.random.fold_in(k, j)) for j in range(2)]
    m = out["metrics_per_seed"][s]
    assert m["ensemble"]["size"] == 2
    for j, (single, _) in enumerate(members):
      np.testing.assert_allclose(m["ensemble"]["test_accuracy"][j],
                                 single["metrics"]["test_accuracy"], rtol=1e-6)
    want = ensemble_logits([lg["logits"]["test"] for _, lg in members])
    np.testing.assert_allclose(extra["per_seed"][s]["logits"]["test"], want, rtol=1e-5,
                               atol=1e-6)
    assert m["test_accuracy"] == pytest.approx(np.mean(want.argmax(-1) == y[44:]))
  probs = rng.dirichlet(np.ones(3), size=(2, 4))  # f[E=2, n=4, 3]
  np.testing.assert_allclose(np.exp(ensemble_logits(list(np.log(probs)))), probs.mean(0),
                             rtol=1e-6)
