"""Seeds as a batch axis (issue 21): one `--seeds=8` run against 8 sequential `--seeds=1` runs.

    python -m benchmarks.seeds                        # the three models, a few minutes on 2 cores
    python -m benchmarks.seeds --only=gru_activity --replicas=4 --out=/tmp/seeds.json

For gru_activity, lenet5_mnist and ngram_lm this trains, in this process, what the experiment
trains (its default config and embedded data, its model, loss, augmentation and data split per
seed, the same key derivation as `jaxml.pipeline.train_classifier` / `experiments.ngram_lm`):
once as R replicas in one `jaxml.train.fit(replicas=R)` (seeds 0..R-1 together) and once as R
calls of `fit` one seed after the other, with the same epochs for everyone (early stopping off,
so both do exactly the same steps) and the same validation batch size (the validation set
itself; a single run's default 512 padded rows would otherwise make the sequential side slower
for a reason that is not the replica axis). Shorter than the experiments' runs, so a benchmark
takes minutes: BENCH below says what each model trains.

Reported per model, examples/s = training examples processed (R x epochs x steps x batch)
divided by
  with_compile: the whole of `fit` (tracing, compilation, epochs with their validation);
  train_only:   the epochs alone (FitResult.seconds_per_epoch x epochs: steps + validation),
and the speed-up (replicas over sequential) for both; then (unless --commands=off) the same
as whole `python -m experiments.run` processes, one `--seeds=R` against R `--seed=s` runs, as a
user would type them (start-up, data loading and pictures included). Writes JSON (default
benchmarks/results/seeds.json) and a markdown table beside it (.md), with the CPU model
(`lscpu`), the load average before and after, and the command.
"""

import argparse
import dataclasses
import functools
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxml import runtime
from jaxml.io import write_json, write_text
from jaxml.train import fit

# What each model trains here (overrides of the experiment's default preset).
BENCH = {
    "gru_activity": dict(epochs=10, patience=0),
    "lenet5_mnist": dict(epochs=2, patience=0, train_limit=1000),
    "ngram_lm": dict(epochs=2, patience=0, max_train=20000, embed_dims=(32,),
                     hidden_sizes=(256,)),
}


@dataclasses.dataclass
class Problem:
  cfg: object
  loss_fn: object
  init: object          # seed -> params
  key: object           # seed -> the train key fit gets
  data: object          # seed -> (train dict, val dict)
  shared_data: bool     # the data is the same for every seed


def _classifier(cfg, init_fn, apply_fn, data_for_seed, augment=None, shared=False) -> Problem:
  from jaxml.pipeline import classifier_loss_fn
  as_dict = lambda xy: {"x": xy[0], "y": xy[1], **({"mask": xy[2]} if len(xy) > 2 else {})}
  keys = lambda seed: jax.random.split(jax.random.key(seed))  # (init, train), as the pipeline
  return Problem(cfg, classifier_loss_fn(apply_fn, augment), lambda s: init_fn(keys(s)[0]),
                 lambda s: keys(s)[1],
                 lambda s: tuple(as_dict(data_for_seed(s)[k]) for k in ("train", "val")),
                 shared)


def gru_activity() -> Problem:
  from experiments import activity
  from jaxml.data import activity as activity_data
  from jaxml.models import sequence_classifier
  cfg = dataclasses.replace(activity.default_preset("gru"), **BENCH["gru_activity"])
  data = activity_data.load_activity(None)
  n_f, n_c = data.x_train.shape[-1], len(data.class_names)
  return _classifier(
      cfg, lambda k: sequence_classifier.init(k, cfg, n_features=n_f, n_classes=n_c),
      lambda p, x, *, train, key, mask=None: sequence_classifier.apply(
          p, x, cfg=cfg, mask=mask, train=train, key=key),
      lambda s: activity.prepare_splits(data, cfg, s)[0])


def lenet5_mnist() -> Problem:
  from experiments import mnist_cnn
  from jaxml.augment import random_affine
  from jaxml.data.mnist import load_mnist
  from jaxml.data.splits import holdout_splits
  from jaxml.models import cnn
  cfg = dataclasses.replace(mnist_cnn.default_preset("lenet5"), **BENCH["lenet5_mnist"])
  data = load_mnist(None, train_limit=cfg.train_limit)
  return _classifier(
      cfg, lambda k: cnn.init(k, cfg, input_shape=data.x_train.shape[1:],
                              n_classes=len(data.class_names)),
      lambda p, x, *, train, key: cnn.apply(p, x, cfg=cfg, train=train, key=key),
      lambda s: holdout_splits(data, cfg.val_fraction, s)[0],
      augment=functools.partial(random_affine, max_shift=cfg.augment_shift,
                                max_rotate_deg=cfg.augment_rotate, max_scale=cfg.augment_scale))


def ngram_lm() -> Problem:
  from experiments import ngram_lm as exp
  from jaxml.data import ngrams
  from jaxml.models import ngram_lm as model
  cfg = dataclasses.replace(exp.default_preset(), **BENCH["ngram_lm"])
  data = ngrams.load_ngrams(None, vocab_size=cfg.vocab_size, log=lambda m: None)
  d, p = cfg.embed_dims[0], cfg.hidden_sizes[0]
  keys = lambda s: jax.random.split(jax.random.fold_in(jax.random.key(s), d * 10007 + p))
  split = lambda s: dict(zip(("x", "y"), data.split(s)))
  train = {k: v[:cfg.max_train] for k, v in split("train").items()}
  return Problem(cfg, model.make_loss_fn(cfg.dropout),
                 lambda s: model.init(keys(s)[0], vocab_size=len(data.words), embed_dim=d,
                                      hidden=p, scheme=cfg.init_scheme, std=cfg.init_std),
                 lambda s: keys(s)[1], lambda s: (train, split("val")), True)


MODELS = {"gru_activity": gru_activity, "lenet5_mnist": lenet5_mnist, "ngram_lm": ngram_lm}


def measure_commands(name: str, replicas: int, eval_batch: int, examples: int, log) -> dict:
  """Whole `python -m experiments.run` processes as a user types them (start-up, data loading,
  compilation, training, evaluation, pictures): one --seeds=R against R --seed=s, the same
  BENCH overrides and validation batch on both sides."""
  import tempfile
  overrides = [f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
               for k, v in BENCH[name].items()] + [f"--config.eval_batch_size={eval_batch}"]
  root = Path(__file__).resolve().parents[1]
  env = dict(os.environ, PYTHONPATH=str(root))

  def run(workdir, *args) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "experiments.run", f"--exp={name}",
                           f"--workdir={workdir}", "--compile_cache=none", *overrides, *args],
                          cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode:
      raise SystemExit(f"{name} {' '.join(args)} failed: {proc.stderr[-1500:]}")
    return time.perf_counter() - t0

  with tempfile.TemporaryDirectory() as tmp:
    sequential = sum(run(Path(tmp) / f"seed{s}", f"--seed={s}") for s in range(replicas))
    together = run(Path(tmp) / "seeds", f"--seeds={replicas}")
  out = {"sequential_s": sequential, "replicas_s": together,
         "examples_per_s_sequential": examples / sequential,
         "examples_per_s_replicas": examples / together, "speedup": sequential / together}
  log(f"{name} commands: --seeds={replicas} {together:.1f}s vs {replicas} x --seeds=1 "
      f"{sequential:.1f}s; speed-up {out['speedup']:.2f}x")
  return out


def measure(name: str, replicas: int, log, commands: bool = True) -> dict:
  prob = MODELS[name]()
  seeds = range(replicas)
  data = [prob.data(s) for s in seeds]
  n_val = len(data[0][1]["y"])
  cfg = dataclasses.replace(prob.cfg, eval_batch_size=min(prob.cfg.eval_batch_size, n_val))
  stack = lambda trees: jax.tree.map(lambda *a: np.stack(a), *trees)
  quiet = lambda m: None

  def timed(**kw):
    t0 = time.perf_counter()
    out = fit(cfg, loss_fn=prob.loss_fn, log=quiet, **kw)
    return out, time.perf_counter() - t0

  sequential = {"wall_s": 0.0, "compile_s": 0.0, "train_s": 0.0}
  for s, (train, val) in zip(seeds, data):
    r, wall = timed(params=prob.init(s), key=prob.key(s), train_data=train, val_data=val)
    sequential["wall_s"] += wall
    sequential["compile_s"] += r.compile_s
    sequential["train_s"] += r.seconds_per_epoch * len(r.history)
    epochs = len(r.history)
  train, val = ((data[0][0], data[0][1]) if prob.shared_data else
                (stack([d[0] for d in data]), stack([d[1] for d in data])))
  rs, wall = timed(params=stack([prob.init(s) for s in seeds]),
                   key=jnp.stack([prob.key(s) for s in seeds]), train_data=train, val_data=val,
                   replicas=replicas, shared_data=prob.shared_data)
  batched = {"wall_s": wall, "compile_s": rs[0].compile_s,
             "train_s": rs[0].seconds_per_epoch * len(rs[0].history)}
  steps = len(data[0][0]["y"]) // cfg.batch_size
  examples = replicas * epochs * steps * cfg.batch_size
  out = {"replicas": replicas, "epochs": epochs, "steps_per_epoch": steps,
         "batch": cfg.batch_size, "examples": examples, "n_val": n_val,
         "overrides": {k: list(v) if isinstance(v, tuple) else v
                       for k, v in BENCH[name].items()}}
  for side, t in (("sequential", sequential), ("replicas", batched)):
    out[side] = dict(t, examples_per_s_with_compile=examples / t["wall_s"],
                     examples_per_s_train_only=examples / t["train_s"])
  for what in ("with_compile", "train_only"):
    key = f"examples_per_s_{what}"
    out[f"speedup_{what}"] = out["replicas"][key] / out["sequential"][key]
  log(f"{name}: {replicas} replicas {out['replicas']['wall_s']:.1f}s vs {replicas} sequential "
      f"{out['sequential']['wall_s']:.1f}s; speed-up {out['speedup_with_compile']:.2f}x with "
      f"compile, {out['speedup_train_only']:.2f}x train only")
  if commands:
    out["commands"] = measure_commands(name, replicas, cfg.eval_batch_size, examples, log)
  return out


def cpu_model() -> str:
  try:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
  except (OSError, subprocess.SubprocessError):
    return platform.processor() or "unknown"
  lines = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name")]
  return lines[0] if lines else "unknown"


def markdown(res: dict) -> str:
  lines = [f"# Seeds as a batch axis: {res['replicas']} replicas in one program vs "
           f"{res['replicas']} sequential runs", "",
           f"- command: `{res['command']}`", f"- CPU: {res['cpu']} ({res['cpu_count']} cores "
           f"visible), jax {res['jax']}; load average before {res['load_before']}, after "
           f"{res['load_after']} (a shared machine: other processes ran)", "",
           "| model | epochs x steps x batch | sequential s (compile s) | replicas s (compile s) "
           "| examples/s seq / rep, with compile | speed-up with compile | examples/s seq / rep, "
           "train only | speed-up train only |", "|---|---|---|---|---|---|---|---|"]
  for name, m in res["models"].items():
    s, r = m["sequential"], m["replicas"]
    lines.append(
        f"| {name} | {m['epochs']} x {m['steps_per_epoch']} x {m['batch']} | "
        f"{s['wall_s']:.1f} ({s['compile_s']:.1f}) | {r['wall_s']:.1f} ({r['compile_s']:.1f}) | "
        f"{s['examples_per_s_with_compile']:.0f} / {r['examples_per_s_with_compile']:.0f} | "
        f"{m['speedup_with_compile']:.2f}x | {s['examples_per_s_train_only']:.0f} / "
        f"{r['examples_per_s_train_only']:.0f} | {m['speedup_train_only']:.2f}x |")
  if all("commands" in m for m in res["models"].values()):
    lines += ["", "Whole commands (`python -m experiments.run`, start-up, data, compilation, "
              "training, evaluation and pictures; `--compile_cache=none`):", "",
              "| model | R x `--seeds=1` s | one `--seeds=R` s | examples/s seq / rep | "
              "speed-up |", "|---|---|---|---|---|"]
    for name, m in res["models"].items():
      c = m["commands"]
      lines.append(f"| {name} | {c['sequential_s']:.1f} | {c['replicas_s']:.1f} | "
                   f"{c['examples_per_s_sequential']:.0f} / {c['examples_per_s_replicas']:.0f} | "
                   f"{c['speedup']:.2f}x |")
  lines += ["", "With compile: the whole of `fit`; train only: its epochs (steps and validation). "
            "Overrides of the default presets: " + "; ".join(
                f"{n}: {m['overrides']}" for n, m in res["models"].items()) + ".", ""]
  return "\n".join(lines)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--only", default=",".join(MODELS))
  p.add_argument("--replicas", type=int, default=8)
  p.add_argument("--out", default="benchmarks/results/seeds.json")
  p.add_argument("--commands", default="on", choices=("on", "off"),
                 help="also time whole experiments.run processes (minutes)")
  args = p.parse_args(argv)
  names = args.only.split(",")
  unknown = [n for n in names if n not in MODELS]
  if unknown or args.replicas < 2:
    print(f"error: --only takes {', '.join(MODELS)} and --replicas at least 2", file=sys.stderr)
    sys.exit(2)
  runtime.keep_freed_memory()
  load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
  models = {n: measure(n, args.replicas, lambda m: print(m, flush=True),
                       commands=args.commands == "on") for n in names}
  res = {"command": "python -m benchmarks.seeds " + " ".join(sys.argv[1:] if argv is None
                                                              else argv),
         "cpu": cpu_model(), "cpu_count": os.cpu_count(), "jax": jax.__version__,
         "replicas": args.replicas, "load_before": load_before,
         "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()), "models": models}
  out = Path(args.out)
  write_json(out, res)
  write_text(out.with_suffix(".md"), markdown(res))
  print(markdown(res))


if __name__ == "__main__":
  main()
