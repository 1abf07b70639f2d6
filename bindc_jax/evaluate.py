"""Classification evaluation of a distilled set (SPEC §4).

With validation rows (:func:`evaluate_selected`, the default of :mod:`bindc_jax.run`)
the number of epochs is not fixed but chosen on validation, identically for every row
(:func:`mmdd_jax.classification.evaluate_with_validation`): the heads train for up to
:func:`epochs_for` epochs (at least ``epochs``, and at least ``min_steps`` steps) and the
best validation epoch is kept. The head is ``linear`` (SPEC) or ``mlp``.

One linear head per modality is trained on the distilled embeddings (Adam, lr 1e-3,
cross-entropy summed over modalities); the prediction is the mean of the heads'
softmaxes; test accuracy is reported over ``runs`` independent head initialisations
(vmapped). The protocol is :func:`mmdd_jax.classification.evaluate_runs`; the Full row
applies it to the whole real train split, the Random row to ``ipc`` random real rows per
class.

A distilled set of ``C·ipc`` rows gives only ``epochs`` Adam steps with a batch of
``min(batch_size, C·ipc)``; ``min_steps`` raises the number of epochs so that every set
gets at least that many steps (the Full row is unaffected when it already has more).
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import numpy as np

from mmdd_jax import classification


def flatten(syn: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """``{m: [C, ipc, d]}`` → ``({m: [C·ipc, d]}, labels [C·ipc])`` (class-major)."""
  first = next(iter(syn.values()))
  c, ipc = first.shape[:2]
  xs = {m: np.asarray(v).reshape(c * ipc, -1) for m, v in syn.items()}
  return xs, np.repeat(np.arange(c, dtype=np.int32), ipc)


def epochs_for(n: int, epochs: int, batch_size: int, min_steps: int) -> int:
  steps_per_epoch = max(n // min(batch_size, n), 1)
  return max(epochs, math.ceil(min_steps / steps_per_epoch))


def evaluate(key: jax.Array, train_xs: Mapping[str, np.ndarray], train_y: np.ndarray,
             test_xs: Mapping[str, np.ndarray], test_y: np.ndarray, num_classes: int, *,
             runs: int = 5, epochs: int = 30, lr: float = 1e-3, batch_size: int = 256,
             min_steps: int = 0, head: str = "linear", hidden: int = 256) -> list[float]:
  """Test accuracies (%) of ``runs`` heads trained on ``train_xs`` for a fixed number of
  epochs (:func:`epochs_for`; no validation split)."""
  n = int(np.asarray(train_y).shape[0])
  ep = epochs_for(n, epochs, batch_size, min_steps)
  return classification.evaluate_runs(key, train_xs, np.asarray(train_y), test_xs,
                                      np.asarray(test_y), num_classes, runs=runs, epochs=ep,
                                      lr=lr, batch_size=batch_size, head=head, hidden=hidden)


def evaluate_selected(key: jax.Array, train_xs: Mapping[str, np.ndarray], train_y: np.ndarray,
                      val_xs: Mapping[str, np.ndarray], val_y: np.ndarray,
                      test_xs: Mapping[str, np.ndarray] | None, test_y: np.ndarray | None,
                      num_classes: int, *, runs: int = 5, epochs: int = 30, lr: float = 1e-3,
                      batch_size: int = 256, min_steps: int = 0, head: str = "linear",
                      hidden: int = 256) -> dict:
  """Epochs chosen on ``val`` (up to :func:`epochs_for`), then test accuracies.

  Returns ``{"epochs", "val_accuracy", "test"}`` (``test`` None without test rows)."""
  n = int(np.asarray(train_y).shape[0])
  ep = epochs_for(n, epochs, batch_size, min_steps)
  return classification.evaluate_with_validation(
      key, train_xs, np.asarray(train_y), val_xs, np.asarray(val_y), test_xs,
      None if test_y is None else np.asarray(test_y), num_classes, runs=runs, max_epochs=ep,
      lr=lr, batch_size=batch_size, head=head, hidden=hidden)
