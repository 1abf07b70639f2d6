"""Classification evaluation: one linear head per modality, prediction = mean of
the heads' softmaxes (ImageBindDC's protocol, SPEC §4)."""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmdd_jax import train


def init_linear(key: jax.Array, dims: Mapping[str, int], num_classes: int) -> dict:
  params = {}
  for i, (m, d) in enumerate(sorted(dims.items())):
    k = jax.random.fold_in(key, i)
    params[m] = {"kernel": jax.random.normal(k, (d, num_classes)) / jnp.sqrt(d),
                 "bias": jnp.zeros((num_classes,))}
  return params


def logits_per_modality(params: Mapping, xs: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  return {m: xs[m] @ p["kernel"] + jnp.expand_dims(p["bias"], 0) for m, p in params.items()}


def predict_proba(params: Mapping, xs: Mapping[str, jax.Array]) -> jax.Array:
  """Mean over modalities of the softmax of each head."""
  lg = logits_per_modality(params, xs)
  return jnp.mean(jnp.stack([jax.nn.softmax(l, -1) for l in lg.values()]), 0)


def accuracy(proba: np.ndarray, labels: np.ndarray) -> float:
  """Percent correct; ties in the argmax go to the lowest class index."""
  return float(100.0 * np.mean(np.argmax(np.asarray(proba), -1) == np.asarray(labels)))


def ce_loss(params, batch, idx):
  del idx
  xs, y = batch
  lg = logits_per_modality(params, xs)
  return sum(optax.softmax_cross_entropy_with_integer_labels(l, y).mean() for l in lg.values())


def make_train_linear(n: int, *, epochs: int = 30, lr: float = 1e-3, batch_size: int = 256):
  """Jitted ``fit(params, (xs, y), key)`` with Adam; vmap it over keys for runs."""
  return train.make_fit(ce_loss, optax.adam(lr), epochs=epochs, batch_size=batch_size, n=n)


def evaluate_runs(key: jax.Array, train_xs: Mapping, train_y, test_xs: Mapping, test_y,
                  num_classes: int, *, runs: int = 5, epochs: int = 30, lr: float = 1e-3,
                  batch_size: int = 256, soft_labels: bool = False) -> list[float]:
  """Trains ``runs`` fresh linear heads (vmapped) and returns test accuracies (%)."""
  train_xs = {m: jnp.asarray(v, jnp.float32) for m, v in train_xs.items()}
  test_xs = {m: jnp.asarray(v, jnp.float32) for m, v in test_xs.items()}
  ty = jnp.asarray(train_y, jnp.int32)
  n = int(ty.shape[0])
  fit = make_train_linear(n, epochs=epochs, lr=lr, batch_size=batch_size)
  dims = {m: v.shape[1] for m, v in train_xs.items()}
  keys = jax.random.split(key, runs)
  p0 = jax.vmap(lambda k: init_linear(k, dims, num_classes))(keys)
  fitted, _ = jax.vmap(fit, in_axes=(0, None, 0))(p0, (train_xs, ty), keys)
  proba = jax.vmap(predict_proba, in_axes=(0, None))(fitted, test_xs)
  return [accuracy(np.asarray(p), np.asarray(test_y)) for p in proba]
