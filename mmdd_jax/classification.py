"""Classification evaluation: one head per modality, prediction = mean of the heads'
softmaxes (ImageBindDC's protocol, SPEC §4).

Heads (``HEADS``): ``linear`` (SPEC) or ``mlp`` (one hidden ReLU layer of ``hidden``
units — a small stand-in for the paper's ConvNet evaluation network). The parameter
pytree says which head it is (an ``mlp`` head has a ``hidden`` layer), so every
function below takes either.

Selection of the number of epochs (:func:`evaluate_with_validation`): heads are trained
for ``max_epochs`` while their accuracy on validation rows (carved from train, see
:func:`mmdd_jax.data.validation_split`) is recorded after every ``⌈max_epochs /
CHECKPOINTS⌉``-th epoch (every epoch up to 30 epochs; at most about 30 checkpoints, to
keep the cost flat for tiny sets that train for hundreds of one-step epochs) and after the
last; the checkpoint with the best mean validation accuracy over runs (earliest on ties)
is chosen, and the same heads
(same keys, so the same first epochs) are retrained for exactly that many epochs and
evaluated once on the test rows. The rule names no method: it is applied to Full,
Random and every distilled set alike.

The run axis of :func:`fit_runs` is split over the global mesh (every device of every
process) when it divides the device count evenly, replicated otherwise
(:mod:`mmdd_jax.sharding`). Runs never mix, so two processes give the accuracies of one
process on the same mesh bit for bit; on another device count the heads can differ in
the last bits (XLA compiles the bias gradients' batch reduction differently for another
number of runs per device; measured in docs/runs.md).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmdd_jax import data, distributed, retrieval, sharding, train


def init_linear(key: jax.Array, dims: Mapping[str, int], num_classes: int) -> dict:
  params = {}
  for i, (m, d) in enumerate(sorted(dims.items())):
    k = jax.random.fold_in(key, i)
    params[m] = {"kernel": jax.random.normal(k, (d, num_classes)) / jnp.sqrt(d),
                 "bias": jnp.zeros((num_classes,))}
  return params


HEADS = ("linear", "mlp")
CHECKPOINTS = 30  # validation checkpoints per epoch-selection run (at most ~this many)


def init_mlp(key: jax.Array, dims: Mapping[str, int], num_classes: int,
             hidden: int = 256) -> dict:
  """One hidden ReLU layer per modality (He-normal, zero biases)."""
  params = {}
  for i, (m, d) in enumerate(sorted(dims.items())):
    k1, k2 = jax.random.split(jax.random.fold_in(key, i))
    params[m] = {"hidden": {"kernel": jax.random.normal(k1, (d, hidden)) * jnp.sqrt(2.0 / d),
                            "bias": jnp.zeros((hidden,))},
                 "kernel": jax.random.normal(k2, (hidden, num_classes)) / jnp.sqrt(hidden),
                 "bias": jnp.zeros((num_classes,))}
  return params


def init_head(kind: str, key: jax.Array, dims: Mapping[str, int], num_classes: int,
              hidden: int = 256) -> dict:
  """``kind`` in :data:`HEADS`."""
  if kind == "linear":
    return init_linear(key, dims, num_classes)
  if kind == "mlp":
    return init_mlp(key, dims, num_classes, hidden)
  raise ValueError(f"evaluation head: expected one of {HEADS}, found '{kind}'")


def _logits(p: Mapping, x: jax.Array) -> jax.Array:
  if "hidden" in p:
    x = jax.nn.relu(x @ p["hidden"]["kernel"] + jnp.expand_dims(p["hidden"]["bias"], 0))
  return x @ p["kernel"] + jnp.expand_dims(p["bias"], 0)


def logits_per_modality(params: Mapping, xs: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  return {m: _logits(p, xs[m]) for m, p in params.items()}


def predict_proba(params: Mapping, xs: Mapping[str, jax.Array]) -> jax.Array:
  """Mean over modalities of the softmax of each head."""
  lg = logits_per_modality(params, xs)
  return jnp.mean(jnp.stack([jax.nn.softmax(l, -1) for l in lg.values()]), 0)


def accuracy(proba: np.ndarray, labels: np.ndarray, where: str = "test split") -> float:
  """Percent correct; ties in the argmax go to the lowest class index. Non-finite
  probabilities (NaN inputs or a diverged head) are refused, naming the first bad row."""
  retrieval.check_finite_rows(proba, f"{where}: class probabilities")
  return float(100.0 * np.mean(np.argmax(np.asarray(proba), -1) == np.asarray(labels)))


def ce_loss(params, batch, idx):
  del idx
  xs, y = batch
  lg = logits_per_modality(params, xs)
  return sum(optax.softmax_cross_entropy_with_integer_labels(l, y).mean() for l in lg.values())


def _as_f32(xs: Mapping) -> dict[str, jax.Array]:
  return {m: jnp.asarray(v, jnp.float32) for m, v in xs.items()}


def fit_runs(key: jax.Array, train_xs: Mapping, train_y, num_classes: int, *, runs: int = 5,
             epochs: int = 30, lr: float = 1e-3, batch_size: int = 256, head: str = "linear",
             hidden: int = 256, track_xs: Mapping | None = None, track_y=None,
             track_every: int = 1):
  """``runs`` heads trained (vmapped over keys) on ``(train_xs, train_y)``.

  Returns ``(params [runs, …], curve)``; ``curve`` is ``[runs, epochs]`` accuracies (%)
  on ``(track_xs, track_y)`` after every ``track_every``-th epoch and the last (``-inf``
  elsewhere) when those are given, else ``None``."""
  train_xs = _as_f32(train_xs)
  ty = jnp.asarray(train_y, jnp.int32)
  n = int(ty.shape[0])
  track = None
  if track_xs is not None:
    vx, vy = _as_f32(track_xs), jnp.asarray(track_y, jnp.int32)
    track = lambda p: 100.0 * jnp.mean(jnp.argmax(predict_proba(p, vx), -1) == vy)
  fit = train.make_fit(ce_loss, optax.adam(lr), epochs=epochs, batch_size=batch_size, n=n,
                       track=track, track_every=track_every)
  dims = {m: v.shape[1] for m, v in train_xs.items()}
  keys = jax.random.split(key, runs)
  p0 = jax.vmap(lambda k: init_head(head, k, dims, num_classes, hidden))(keys)
  # the run axis split over the global mesh when it divides evenly (module docstring)
  p0, data = sharding.shard_leading(p0), sharding.replicate((train_xs, ty))
  out = jax.vmap(fit, in_axes=(0, None, 0))(p0, data, keys)
  return out[0], (distributed.to_host(out[2]) if track is not None else None)


def test_accuracies(params, test_xs: Mapping, test_y) -> list[float]:
  """Accuracies (%) of vmapped ``params`` (leading axis = runs) on the test rows."""
  proba = distributed.to_host(jax.vmap(predict_proba, in_axes=(0, None))(params, _as_f32(test_xs)))
  return [accuracy(p, np.asarray(test_y)) for p in proba]


def evaluate_runs(key: jax.Array, train_xs: Mapping, train_y, test_xs: Mapping, test_y,
                  num_classes: int, *, runs: int = 5, epochs: int = 30, lr: float = 1e-3,
                  batch_size: int = 256, head: str = "linear",
                  hidden: int = 256) -> list[float]:
  """Trains ``runs`` fresh heads (vmapped) for ``epochs`` and returns test accuracies (%)."""
  params, _ = fit_runs(key, train_xs, train_y, num_classes, runs=runs, epochs=epochs, lr=lr,
                       batch_size=batch_size, head=head, hidden=hidden)
  return test_accuracies(params, test_xs, test_y)


def select_epochs(curve: np.ndarray) -> int:
  """The selection rule (:func:`mmdd_jax.data.first_best`): the epoch count (1-based)
  with the best mean validation accuracy over runs; the earliest on ties. ``curve`` is ``[runs, epochs]`` (``-inf`` at
  epochs without a validation checkpoint, which are never chosen)."""
  mean = np.asarray(curve, np.float64).mean(0)
  return data.first_best(mean) + 1


def evaluate_with_validation(key: jax.Array, train_xs: Mapping, train_y, val_xs: Mapping,
                             val_y, test_xs: Mapping | None, test_y, num_classes: int, *,
                             runs: int = 5, max_epochs: int = 30, lr: float = 1e-3,
                             batch_size: int = 256, head: str = "linear", hidden: int = 256
                             ) -> dict:
  """Epochs chosen on validation (module docstring), then one test evaluation.

  Returns ``{"epochs", "val_accuracy" (mean at the chosen epoch), "test": [per run] or
  None when ``test_xs`` is None (selection only: the test rows are not touched)}``."""
  kw = dict(runs=runs, lr=lr, batch_size=batch_size, head=head, hidden=hidden)
  every = max(1, -(-max_epochs // CHECKPOINTS))
  _, curve = fit_runs(key, train_xs, train_y, num_classes, epochs=max_epochs,
                      track_xs=val_xs, track_y=val_y, track_every=every, **kw)
  ep = select_epochs(curve)
  out = {"epochs": ep, "val_accuracy": float(curve[:, ep - 1].mean()), "test": None}
  if test_xs is not None:
    params, _ = fit_runs(key, train_xs, train_y, num_classes, epochs=ep, **kw)
    out["test"] = test_accuracies(params, test_xs, test_y)
  return out
