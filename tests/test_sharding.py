"""Data parallelism: the train loop on 4 (simulated CPU) devices gives the 1-device numbers.

XLA's device count is fixed when jax starts, so the comparison runs in a subprocess started
with XLA_FLAGS=--xla_force_host_platform_device_count=4 (the same flag lets anyone try
multi-device code on a laptop).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import dataclasses, json
import jax, numpy as np
from jaxml import nn, recurrent
from jaxml.losses import classification_loss
from jaxml.train import TrainConfig, data_mesh, fit, make_optimizer, train_step

assert jax.device_count() == 4, jax.devices()
rng = np.random.default_rng(0)
x = rng.standard_normal((96, 6, 3)).astype(np.float32)
y = (x[:, :, 0].sum(1) > 0).astype(np.int32)

def init(key):
  k1, k2 = jax.random.split(key)
  return {"rnn": recurrent.gru_init(k1, 3, 8), "head": nn.mlp_init(k2, (8, 8, 2))}

def loss_fn(p, batch, *, train, key):
  _, hs = recurrent.run("gru", p["rnn"], batch["x"], hidden=8)
  logits = nn.mlp(p["head"], hs.mean(1), dropout_rate=0.2, train=train, key=key)
  return classification_loss(logits, batch["y"], batch["weight"])

out = {}
for devices in (4, 1):
  cfg = TrainConfig(optimizer="adam", learning_rate=1e-2, batch_size=16, epochs=3, patience=0,
                    devices=devices)
  for mode in ("scan", "loop"):
    r = fit(dataclasses.replace(cfg, epoch_mode=mode), params=init(jax.random.key(0)),
            loss_fn=loss_fn, train_data={"x": x[:80], "y": y[:80]},
            val_data={"x": x[80:], "y": y[80:]}, key=jax.random.key(1), log=lambda m: None)
    out[f"{devices}-{mode}"] = {
        "step_losses": [l for row in r.history for l in row["step_losses"]],
        "val_loss": [row["val_loss"] for row in r.history],
        "params": [np.asarray(a).ravel().tolist() for a in jax.tree.leaves(r.params)]}

# Replicas x data shards (--seeds): two seeds vmapped, each one's batch split over the devices.
for devices in (4, 1):
  cfg = TrainConfig(optimizer="adam", learning_rate=1e-2, batch_size=16, epochs=2, patience=0,
                    devices=devices)
  params = jax.tree.map(lambda *a: np.stack(a), init(jax.random.key(0)), init(jax.random.key(5)))
  rs = fit(cfg, params=params, loss_fn=loss_fn, train_data={"x": x[:80], "y": y[:80]},
           val_data={"x": x[80:], "y": y[80:]}, key=jax.random.split(jax.random.key(1), 2),
           log=lambda m: None, replicas=2)
  out[f"{devices}-replicas"] = {"step_losses": [l for r in rs for row in r.history
                                                for l in row["step_losses"]]}

# The step really is data-parallel: its batch is split 4 ways and gradients are all-reduced.
mesh = data_mesh(4)
sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
params = init(jax.random.key(0))
opt = make_optimizer(TrainConfig(), 5)
state = {"step": 0, "params": params, "opt_state": opt.init(params)}
batch = jax.device_put({"x": x[:16], "y": y[:16], "weight": np.ones(16, np.float32)}, sharding)
step = jax.jit(lambda s, b, k: train_step(loss_fn, opt, s, b, k))
hlo = step.lower(state, batch, jax.random.key(2)).compile().as_text()
out["all_reduce"] = "all-reduce" in hlo
out["batch_shards"] = len(batch["x"].addressable_shards)
print(json.dumps(out))
'''


def _four_devices_env() -> dict:
  flags = os.environ.get("XLA_FLAGS", "")  # tests/conftest.py's, kept
  return dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=4".strip())


def test_four_devices_give_the_one_device_losses_and_parameters():
  env = _four_devices_env()
  proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["all_reduce"] and out["batch_shards"] == 4
  for mode in ("scan", "loop"):
    one, four = out[f"1-{mode}"], out[f"4-{mode}"]
    assert len(one["step_losses"]) == 15  # 3 epochs x 5 steps, dropout on
    np.testing.assert_allclose(four["step_losses"], one["step_losses"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(four["val_loss"], one["val_loss"], rtol=1e-5, atol=1e-6)
    for a, b in zip(four["params"], one["params"]):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  one, four = out["1-replicas"]["step_losses"], out["4-replicas"]["step_losses"]
  assert len(one) == 20  # 2 replicas x 2 epochs x 5 steps
  np.testing.assert_allclose(four, one, rtol=1e-5, atol=1e-6)


def test_a_batch_that_does_not_split_over_the_devices_is_a_user_error(tmp_path):
  env = _four_devices_env()
  proc = subprocess.run([sys.executable, "-m", "experiments.run", "--exp=gru_activity", "--tiny",
                         "--config.batch_size=6", f"--workdir={tmp_path}"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().startswith("error: batch_size=6 does not split over 4")
  assert "Traceback" not in proc.stderr and not (tmp_path / "results.json").exists()
