"""Per-epoch checkpoints with orbax: arrays through `StandardSave`, bookkeeping through JSON.

Orbax writes each step into a temporary directory and renames it when complete, so a kill
mid-save leaves the previous checkpoint intact. We keep the last two.
"""

import json
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxml.errors import UserError


def latest_epoch_on_disk(directory) -> int | None:
  """The newest complete checkpoint's epoch in `directory`, read from the folder names alone
  (orbax renames a step's temporary folder to its number only once the step is complete)."""
  d = Path(directory)
  epochs = [int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit()] if d.is_dir() \
      else []
  return max(epochs) if epochs else None


def resume_point(directory) -> str | None:
  """Where a rerun in `directory` resumes, in words ("epoch 3", or "epoch 2 + step 17 of epoch 3"
  for a checkpoint taken mid-epoch at a signal); None when there is no checkpoint."""
  epoch = latest_epoch_on_disk(directory)
  if epoch is None:
    return None
  try:  # orbax's JsonSave writes the bookkeeping as plain JSON in <epoch>/meta/metadata
    partial = json.loads((Path(directory) / str(epoch) / "meta" / "metadata").read_text()).get(
        "partial")
  except (OSError, ValueError, AttributeError):
    partial = None  # unreadable bookkeeping is reported when the checkpoint is restored
  if partial:
    return f"epoch {epoch - 1} + step {partial['steps_done']} of epoch {epoch}"
  return f"epoch {epoch}"


def refuse_another_run(directory, meta: dict, signature, fingerprint: str, *,
                       replicas: int = 1) -> None:
  """Raises UserError (one line naming --restart) unless the checkpoint whose JSON part is
  `meta` was written by the same run (`signature`: config, data; None skips that check), with
  the same number of replicas (networks trained together: seeds x ensemble members; a
  checkpoint without the field has one)
  and the same computation (`fingerprint` of the lowered programs,
  jaxml.train.computation_fingerprint)."""
  fix = "pass --restart to start over or choose another --workdir"
  if meta.get("replicas", 1) != replicas:
    raise UserError(f"{directory} holds a run of {meta.get('replicas', 1)} network(s) trained "
                    f"together and this run has {replicas} (--seeds x ensemble members); {fix}")
  if signature is not None and meta.get("signature") != signature:
    raise UserError(f"{directory} holds a run with a different config or data; {fix}")
  if meta.get("fingerprint") != fingerprint:
    raise UserError(f"{directory} holds a run of a different computation (the model, loss "
                    f"or optimizer code changed since it was written: fingerprint "
                    f"{meta.get('fingerprint')} vs {fingerprint}), so continuing it would mix two "
                    f"models; {fix}")


class Checkpointer:
  """Saves and restores `(tree, meta)` pairs keyed by epoch in `directory`."""

  def __init__(self, directory, max_to_keep: int = 2):
    self.directory = Path(directory).absolute()
    self._mgr = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             enable_async_checkpointing=False))

  def latest_epoch(self) -> int | None:
    return self._mgr.latest_step()

  def save(self, epoch: int, tree, meta: dict) -> None:
    if epoch in self._mgr.all_steps():  # a mid-epoch checkpoint of this epoch, now complete
      self._mgr.delete(epoch)
    self._mgr.save(epoch, args=ocp.args.Composite(tree=ocp.args.StandardSave(tree),
                                                  meta=ocp.args.JsonSave(meta)), force=True)
    self._mgr.wait_until_finished()

  def read_meta(self, epoch: int) -> dict:
    """The JSON bookkeeping saved at `epoch`, without touching the arrays."""
    try:
      out = self._mgr.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as e:
      raise UserError(f"checkpoint {self.directory}/{epoch} is unreadable ({type(e).__name__}); "
                      f"rerun with --restart to start over") from None
    return dict(out["meta"])

  def restore(self, epoch: int, like):
    """Restores the tree saved at `epoch` into the structure (and dtypes) of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      out = self._mgr.restore(epoch, args=ocp.args.Composite(
          tree=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax raises many types for unreadable or mismatched data.
      raise UserError(f"checkpoint {self.directory}/{epoch} cannot be restored "
                      f"({type(e).__name__}); rerun with --restart to start over") from None
    # Orbax may hand back plain tuples for optax's named tuples: rebuild `like`'s structure.
    tree = jax.tree.unflatten(jax.tree.structure(like), jax.tree.leaves(out["tree"]))
    return tree, dict(out["meta"])

  def close(self) -> None:
    self._mgr.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
