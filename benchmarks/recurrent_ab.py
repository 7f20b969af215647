"""Interleaved single-core A/B of the recurrent backward modes, timed by CPU time (issue 19).

    python -m benchmarks.recurrent_ab                         # fast vs autodiff (+ torch), ~3 min
    python -m benchmarks.recurrent_ab --cases=lstm_activity,rec_lstm --rounds=20
    python -m benchmarks.recurrent_ab --variants=fast,autodiff --torch=off --out=/tmp/ab.json

On a machine shared with other jobs a wall clock measures the others' load; this measures the
work: the process is pinned to one core (`os.sched_setaffinity`, before jax starts, so XLA's
thread pools see one CPU), XLA's Eigen runs single-threaded and torch gets one thread, and each
call is timed by the CPU time of the whole process (`time.process_time`: every thread of it, so
nothing the call does on a helper thread is missed). The variants are interleaved round robin
(`--per_round` calls each, `--rounds` times) so a slow minute hits every variant alike; medians
are reported, with the median ratio of each variant to the first.

Cases (the experiments' shapes, benchmarks/speed.py's synthetic inputs):
  gru_activity, lstm_activity, lstm_imdb   the real jitted train step (loss, `jax.grad`,
      clipping, the optax update: `jaxml.train.make_step`, state donated) with the config's
      `backward` set to each variant; torch (if importable, `--torch=auto`) is the same net's
      step (benchmarks/torch_models.py) on one thread.
  rec_gru, rec_lstm (B=32, T=150, n_in=3, H=128, unmasked), rec_bilstm (the IMDB layer:
      bidirectional, n_in=50, H=64, B=64, T=256, masked)   the recurrence alone: `jax.grad`
      of sum(hs * fixed projection) w.r.t. the cell's params and x.
A variant is a `backward=` name in `jaxml.recurrent.BACKWARDS`.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pinning import pin_to_one_core  # noqa: E402  (imports no jax)

MODEL_CASES = ("gru_activity", "lstm_activity", "lstm_imdb")
REC_CASES = {  # name: (cell, n_in, hidden, batch, time, bidirectional+masked)
    "rec_gru": ("gru", 3, 128, 32, 150, False),
    "rec_lstm": ("lstm", 3, 128, 32, 150, False),
    "rec_bilstm": ("lstm", 50, 64, 64, 256, True),
}
def cpu_timed(fn, n: int) -> list:
  """CPU seconds (all of this process' threads) of each of n calls of fn()."""
  out = []
  for _ in range(n):
    t0 = time.process_time()
    fn()
    out.append(time.process_time() - t0)
  return out


def model_runner(name: str, backward: str):
  """(run one real train step and wait) for the benchmark `name` with cfg.backward=backward."""
  from benchmarks import speed
  case = speed.make_case(name, speed.Sizes(), backward=backward)
  run_one, _ = speed.jax_side(case, speed.Sizes())
  return run_one


def torch_runner(name: str):
  from benchmarks import speed
  torch, tm = speed.import_torch("auto", 1)
  if torch is None:
    return None
  return speed.torch_side(torch, tm, speed.make_case(name, speed.Sizes()), speed.Sizes())


def rec_runner(name: str, backward: str):
  """(run the jitted gradient of the recurrence alone and wait) for REC_CASES[name]."""
  import jax
  import jax.numpy as jnp
  from jaxml import recurrent
  kind, n_in, hidden, batch, steps, bi = REC_CASES[name]
  k = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(k[0], (batch, steps, n_in), jnp.float32)
  proj = jax.random.normal(k[1], (batch, steps, (2 if bi else 1) * hidden), jnp.float32)
  if bi:
    lengths = jax.random.randint(k[2], (batch,), steps // 4, steps + 1)
    mask = (jnp.arange(steps)[None, :] < lengths[:, None]).astype(jnp.float32)
    params = recurrent.stack_init(k[3], kind, n_in, hidden, bidirectional=True)
    loss = lambda p, x: jnp.sum(recurrent.stack_run(kind, p, x, mask, hidden=hidden,
                                                    backward=backward)[0] * proj)
  else:
    params = recurrent.get_cell(kind).init(k[3], n_in, hidden, jnp.float32)
    loss = lambda p, x: jnp.sum(recurrent.run(kind, p, x, hidden=hidden,
                                              backward=backward)[1] * proj)
  grad = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile()
  return lambda: jax.block_until_ready(grad(params, x))


def measure(case: str, variants: list, rounds: int, per_round: int, warmup: int,
            with_torch: bool, log) -> dict:
  import numpy as np
  runners = {}
  for v in variants:
    runners[v] = (model_runner if case in MODEL_CASES else rec_runner)(case, v)
  if with_torch and case in MODEL_CASES:
    t = torch_runner(case)
    if t is not None:
      runners["torch"] = t
  for run in runners.values():
    cpu_timed(run, warmup)
  times = {v: [] for v in runners}
  for _ in range(rounds):
    for v, run in runners.items():
      times[v] += cpu_timed(run, per_round)
  first = variants[0]
  out = {}
  for v, ts in times.items():
    ms = np.asarray(ts) * 1e3
    q25, q50, q75 = np.percentile(ms, [25, 50, 75])
    out[v] = {"cpu_ms": float(q50), "cpu_ms_iqr": [float(q25), float(q75)],
              "cpu_ms_min": float(ms.min()), "calls": len(ts),
              f"over_{first}": float(q50 / np.median(np.asarray(times[first]) * 1e3))}
  log(f"{case}: " + ", ".join(f"{v} {r['cpu_ms']:.1f} ms [{r['cpu_ms_iqr'][0]:.1f}, "
                              f"{r['cpu_ms_iqr'][1]:.1f}]" for v, r in out.items()))
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--cases", default=",".join([*MODEL_CASES, *REC_CASES]))
  ap.add_argument("--variants", default="fast,autodiff",
                  help="backward= names (jaxml.recurrent.BACKWARDS); the first is the baseline")
  ap.add_argument("--rounds", type=int, default=10)
  ap.add_argument("--per_round", type=int, default=3)
  ap.add_argument("--warmup", type=int, default=2)
  ap.add_argument("--torch", choices=("auto", "off"), default="auto")
  ap.add_argument("--cpu", type=int, default=None, help="the core to pin to (default: the last)")
  ap.add_argument("--out", default="", help="JSON path (optional)")
  args = ap.parse_args(argv)
  cpu = pin_to_one_core(args.cpu)
  from jaxml import recurrent
  from jaxml.runtime import keep_freed_memory
  keep_freed_memory()
  variants = [v for v in args.variants.split(",") if v]
  cases = [c for c in args.cases.split(",") if c]
  bad = [v for v in variants if v not in recurrent.BACKWARDS]
  bad += [c for c in cases if c not in MODEL_CASES and c not in REC_CASES]
  if bad:
    print(f"error: unknown variant(s)/case(s) {','.join(bad)}", file=sys.stderr)
    return 2
  log = lambda msg: print(msg, file=sys.stderr, flush=True)
  results = {"cpu": cpu, "load_average_start": os.getloadavg(), "variants": variants,
             "timing": "process CPU time per call, pinned to one core, XLA single-threaded, "
                       "variants interleaved round robin; medians"}
  for case in cases:
    results[case] = measure(case, variants, args.rounds, args.per_round, args.warmup,
                            args.torch == "auto", log)
  results["load_average_end"] = os.getloadavg()
  if args.out:
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
