"""A multi-layer perceptron trained with either of the seed's two error functions.

    "ce":  softmax outputs, cross-entropy  L = -sum_k t_k log softmax(o)_k
    "mse": linear outputs, squared error   L = (1/2) sum_k (o_k - t_k)^2   (t = one_hot(y))

o = MLP(x) with `hidden` layers and a nonlinear `activation` between them (jaxml.nn.mlp,
Xavier-uniform init); the class is argmax_k o_k either way. The seed's "MLP" was
dense 256 -> dense 256 -> dense 10 with no activation at all, i.e. a linear model in disguise;
`activation="identity"` keeps that variant.

Training is the repository's generic loop (jaxml.train.fit: optax, minibatches as a lax.scan,
early stopping on a stratified validation holdout of `train.val_fraction`, best-validation
parameters returned), so everything in TrainConfig applies.

Features: pixels in [0, 1] as given; Xavier init assumes inputs of order one, which they are.
"""

from typing import Callable, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxml import nn
from jaxml.classical.common import one_hot
from jaxml.data.splits import stratified_holdout
from jaxml.losses import softmax_cross_entropy
from jaxml.train import TrainConfig, fit

Loss = Literal["ce", "mse"]


def example_losses(outputs, y, loss: Loss):
  """outputs: f[n, K], y: int[n] -> f[n], the error of each example."""
  if loss == "ce":
    return softmax_cross_entropy(outputs, y)
  return 0.5 * jnp.sum((outputs - one_hot(y, outputs.shape[-1], outputs.dtype)) ** 2, -1)


def mlp_loss(params: dict, x, y, *, activation: str, loss: Loss):
  """Mean error over the batch (the function whose gradient training follows)."""
  return example_losses(nn.mlp(params, x, activation=activation), y, loss).mean()


def mlp_fit(x, y, key, *, n_classes: int, hidden: Sequence[int], activation: str, loss: Loss,
            train: TrainConfig, dropout: float = 0.0, seed: int = 0,
            log: Callable[[str], None] = lambda s: None) -> dict:
  """x: f[n, d], y: int[n] -> {"layers": [{"w", "b"}, ...]}, the best-validation parameters.

  `dropout`: rate on the hidden units in training. `seed` picks the validation holdout;
  `key` the initialisation, batch order and dropout masks.
  """
  k_init, k_train = jax.random.split(key)
  params = nn.mlp_init(k_init, (x.shape[1], *hidden, n_classes), dtype=x.dtype)

  def loss_fn(params, batch, *, train, key):
    out = nn.mlp(params, batch["x"], activation=activation, dropout_rate=dropout, train=train,
                 key=key)
    w = batch["weight"].astype(out.dtype)
    per = example_losses(out, batch["y"], loss)
    hit = (jnp.argmax(out, -1) == batch["y"]).astype(out.dtype)
    sums = {"loss": jnp.sum(w * per), "correct": jnp.sum(w * hit), "count": jnp.sum(w)}
    return sums["loss"] / jnp.maximum(sums["count"], 1.0), sums

  keep, held = stratified_holdout(np.asarray(y), train.val_fraction, seed)
  x, y = np.asarray(x), np.asarray(y)
  result = fit(train, params=params, loss_fn=loss_fn, train_data={"x": x[keep], "y": y[keep]},
               val_data={"x": x[held], "y": y[held]}, key=k_train, log=log)
  return jax.tree.map(jnp.asarray, result.params)


def mlp_decision(params: dict, x, *, activation: str):
  """x: f[n, d] -> outputs f[n, K] (logits for "ce", fitted targets for "mse")."""
  return nn.mlp(params, x, activation=activation)
