"""Contrastive losses shared by the reference (Full) protocol and the methods."""

from __future__ import annotations

from itertools import combinations
from typing import Mapping

import jax
import jax.numpy as jnp
import optax


def soft_labels(targets: jax.Array) -> jax.Array:
  """Rows of ``max(targets, 0)`` normalised to sum 1 (a zero row stays zero)."""
  y = jnp.maximum(targets, 0.0)
  return y / jnp.maximum(jnp.sum(y, axis=1, keepdims=True), 1e-12)


def info_nce(za: jax.Array, zb: jax.Array, tau: float,
             targets: jax.Array | None = None) -> jax.Array:
  """Symmetric InfoNCE (CLIP): rows of ``za`` match the same rows of ``zb``.

  With ``targets`` (e.g. learned similarities ``Ŝ[batch, batch]``) the labels are
  soft: row ``i`` of :func:`soft_labels` (queries of ``za``) and of its transpose
  (queries of ``zb``). ``targets = I`` gives the integer-label loss exactly.
  """
  logits = za @ zb.T / tau
  if targets is None:
    labels = jnp.arange(za.shape[0])
    l1 = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    l2 = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
  else:
    targets = targets.astype(logits.dtype)
    l1 = optax.softmax_cross_entropy(logits, soft_labels(targets)).mean()
    l2 = optax.softmax_cross_entropy(logits.T, soft_labels(targets.T)).mean()
  return 0.5 * (l1 + l2)


def pairwise_info_nce(zs: Mapping[str, jax.Array], tau: float,
                      targets: jax.Array | None = None) -> jax.Array:
  """Sum of symmetric InfoNCE over all unordered modality pairs."""
  mods = sorted(zs)
  return sum(info_nce(zs[a], zs[b], tau, targets) for a, b in combinations(mods, 2))
