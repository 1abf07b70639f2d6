"""Siamese augmentation in embedding space (DSA's idea on ImageBind embeddings).

One key draws the augmentation *parameters* of a step; the same parameters are
applied to the real and the synthetic batch of that step (Zhao & Bilen, "Dataset
Condensation with Differentiable Siamese Augmentation", ICML 2021):

* feature dropout: one Bernoulli mask over the embedding dimensions (per modality),
  rescaled by ``1/(1−p)``;
* Gaussian jitter: one shift ``δ ~ N(0, σ² I)`` per modality added to every row;
* within-class mixup: one ``λ ~ U(1 − mixup, 1)`` for the step; each batch mixes with
  a permutation of itself (the batches hold one class, so mixup stays within class;
  the permutation is shared by all modalities so that instances stay paired).

Rows are re-normalised to the unit sphere afterwards (``renormalize=True``). With all
strengths 0 the augmentation is the identity. The operations are differentiable in the
synthetic batch.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp

from mmdd_jax import rng
from mmdd_jax import keys as keys_lib
from mmdd_jax.heads import l2_normalize


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Strengths of the siamese augmentation (0 disables a component); the strengths are
  config keys ``augment.<field>`` (:func:`mmdd_jax.keys.field`). Mixup draws
  ``λ ~ U(1 − mixup, 1)``; ``renormalize`` projects augmented rows back to the unit
  sphere."""
  dropout: float = keys_lib.field(0.0, ">=0", "siamese feature-dropout probability (0 = off)")
  jitter: float = keys_lib.field(0.0, ">=0", "siamese Gaussian shift σ (0 = off)")
  mixup: float = keys_lib.field(0.0, ">=0", "siamese within-class mixup strength (0 = off)")
  renormalize: bool = True

  @property
  def enabled(self) -> bool:
    return self.dropout > 0 or self.jitter > 0 or self.mixup > 0


def draw(key: jax.Array, dims: Mapping[str, int], cfg: AugmentConfig) -> dict:
  """The step's augmentation parameters (shared by the real and synthetic batches)."""
  params = {"lam": 1.0 - cfg.mixup * jax.random.uniform(rng.stream(key, "mixup")),
            "perm_key": rng.stream(key, "permutation"), "mask": {}, "shift": {}}
  for m, d in sorted(dims.items()):
    km = rng.stream(key, f"modality/{m}")
    keep = jax.random.bernoulli(rng.stream(km, "dropout"), 1.0 - cfg.dropout, (d,))
    params["mask"][m] = keep.astype(jnp.float32) / (1.0 - cfg.dropout)
    params["shift"][m] = cfg.jitter * jax.random.normal(rng.stream(km, "jitter"), (d,))
  return params


def apply(params: dict, xs: Mapping[str, jax.Array], cfg: AugmentConfig) -> dict[str, jax.Array]:
  """Applies drawn parameters to one batch ``{m: [n, d]}``."""
  n = next(iter(xs.values())).shape[0]
  # the permutation depends on the key and the batch size only: shared over modalities
  perm = jax.random.permutation(jax.random.fold_in(params["perm_key"], n), n)
  out = {}
  for m, x in xs.items():
    y = x
    if cfg.mixup > 0:
      y = params["lam"] * y + (1.0 - params["lam"]) * y[perm]
    if cfg.dropout > 0:
      y = y * params["mask"][m].astype(y.dtype)[None, :]
    if cfg.jitter > 0:
      y = y + params["shift"][m].astype(y.dtype)[None, :]
    if cfg.renormalize and cfg.enabled:
      y = l2_normalize(y)
    out[m] = y
  return out


def siamese(key: jax.Array, real: Mapping[str, jax.Array], syn: Mapping[str, jax.Array],
            cfg: AugmentConfig) -> tuple[dict, dict]:
  """Same augmentation draw (from ``key``) applied to the real and synthetic batch."""
  if not cfg.enabled:
    return dict(real), dict(syn)
  params = draw(key, {m: int(v.shape[-1]) for m, v in real.items()}, cfg)
  return apply(params, real, cfg), apply(params, syn, cfg)
