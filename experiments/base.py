"""What an experiment is, and what the runner hands it."""

import dataclasses
from pathlib import Path
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class RunContext:
  """Everything about a run that is not the config."""
  workdir: Path           # results.json, PNGs and checkpoints/ go here
  data_path: str | None   # --data_path, or None for the embedded default
  seed: int               # --seed: initialisation, validation split, batch order, dropout
  restart: bool = False   # --restart: ignore (and replace) an existing checkpoint
  log: Callable[[str], None] = print


@dataclasses.dataclass(frozen=True)
class Experiment:
  """An `--exp` name bound to its presets and its run function.

  `run(cfg, ctx)` validates inputs (raising UserError), trains, writes its pictures into
  ctx.workdir, and returns {"metrics", "timing", ...} for results.json; the runner adds
  "exp" and "config" and writes the file.
  """
  name: str
  description: str
  presets: dict[str, Any]                 # "default" (our best) and "seed" (the seed's setting)
  tiny: Callable[[Any], Any]              # shrinks a config for smoke tests (--tiny)
  validate: Callable[[Any], None]         # raises UserError for unusable config values
  run: Callable[[Any, RunContext], dict]
