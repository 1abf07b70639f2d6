"""Contrastive losses shared by the reference (Full) protocol and the methods."""

from __future__ import annotations

from itertools import combinations
from typing import Mapping

import jax
import jax.numpy as jnp
import optax


def info_nce(za: jax.Array, zb: jax.Array, tau: float) -> jax.Array:
  """Symmetric InfoNCE (CLIP): rows of ``za`` match the same rows of ``zb``."""
  logits = za @ zb.T / tau
  labels = jnp.arange(za.shape[0])
  l1 = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  l2 = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
  return 0.5 * (l1 + l2)


def pairwise_info_nce(zs: Mapping[str, jax.Array], tau: float) -> jax.Array:
  """Sum of symmetric InfoNCE over all unordered modality pairs."""
  mods = sorted(zs)
  return sum(info_nce(zs[a], zs[b], tau) for a, b in combinations(mods, 2))
