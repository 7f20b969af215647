"""Losses and metrics, kept as weighted sums so batches of any size (and padding) add up exactly.

Every metric function returns sums over the batch plus the `count` (sum of weights); the host
divides at the end of an epoch. A weight of 0 marks a padding example.
"""

import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits, labels):
  """logits: f[batch, classes], labels: int[batch] -> f[batch] (nats)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def classification_sums(logits, labels, weights=None) -> dict:
  """{"loss": sum of cross-entropy, "correct": sum of hits, "count": sum of weights}."""
  if weights is None:
    weights = jnp.ones(labels.shape, logits.dtype)
  weights = weights.astype(logits.dtype)
  ce = softmax_cross_entropy(logits, labels)
  hit = (jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype)
  return {"loss": jnp.sum(weights * ce), "correct": jnp.sum(weights * hit),
          "count": jnp.sum(weights)}


def classification_loss(logits, labels, weights=None):
  """(mean weighted cross-entropy, sums) — the `(loss, aux)` pair the train loop expects."""
  sums = classification_sums(logits, labels, weights)
  return sums["loss"] / jnp.maximum(sums["count"], 1.0), sums


def normalize_sums(sums: dict) -> dict:
  """Host side: {"loss": mean loss, "accuracy": fraction correct} from summed metrics."""
  count = max(float(sums["count"]), 1.0)
  out = {"loss": float(sums["loss"]) / count}
  if "correct" in sums:
    out["accuracy"] = float(sums["correct"]) / count
  return out
