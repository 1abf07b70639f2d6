"""HoPA's objective with the proxy's eigendecomposition replaced by a cheap tensor
manipulation, for the efficiency analysis (paper Table 7; ``benchmarks/proxy_cost_bench.py``).

The paper times HoPA "against a baseline where SVD is replaced by computationally
negligible tensor manipulations (i.e., identity mapping and mean pooling) while
maintaining the same gradient graph structure". Here the rest of the graph is kept as
is — the heads, the per-instance Gram ``G_i = Z_i Z_iᵀ``, the singular-value softmax
``L_mod``, the proxy logits and the weighted BCE ``L_inst``
(:func:`hopa_jax.objectives.hopa_loss_from_spectrum`) — and only
:func:`hopa_jax.proxy.sym_eigh` of the ``M×M`` Gram is replaced:

``identity``
  ``(w, a) = (diag G, I)``: the eigenvalues are read off the Gram's diagonal and the
  alignment vectors are the identity, so ``σ_k = ‖z_k‖`` and ``v = z_1 / ‖z_1‖``
  (the first modality's embedding).
``mean``
  ``a_1 = 1/√M`` (mean pooling over the modalities): ``σ_1² = a_1ᵀ G a_1``,
  ``v = Σ_m z_m / ‖Σ_m z_m‖``; the trailing ``σ_k`` (``k ≥ 2``) are the square roots of
  the Gram's remaining diagonal entries.

These are *not* methods (their objective is not HoPA's and is never evaluated); they
exist to time the graph. :func:`register` adds them to
:data:`hopa_jax.objectives.OBJECTIVES` as ``hopa_identity`` and ``hopa_mean``, so the
experts (:func:`hopa_jax.experts.make_real_loss`) and the distillation
(:func:`hopa_jax.distill.make_inner_loss`) pick them by name on the very same code path
as ``hopa``. Rank 1 only.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from hopa_jax import objectives as obj_lib
from hopa_jax import proxy as proxy_lib

VARIANTS = ("identity", "mean")


def replaced_spectrum(z: jax.Array, variant: str) -> tuple[jax.Array, jax.Array]:
  """``(σ [B, M], v [B, d])`` of ``z [B, M, d]`` with the eigendecomposition of the
  Gram replaced by ``variant`` (module docstring). The Gram is still formed."""
  g = proxy_lib.gram(z)
  diag = jnp.diagonal(g, axis1=-2, axis2=-1)                       # [B, M]
  if variant == "identity":
    w = diag
    a1 = jnp.zeros_like(diag).at[:, 0].set(1.0)
  elif variant == "mean":
    m = z.shape[1]
    a1 = jnp.full(diag.shape, 1.0 / jnp.sqrt(m), z.dtype)
    lead = jnp.einsum("bm,bmn,bn->b", a1, g, a1)
    w = diag.at[:, 0].set(lead)
  else:
    raise ValueError(f"proxy variant: expected one of {VARIANTS}, found '{variant}'")
  sigma = proxy_lib.singular_values(w)
  v = jnp.einsum("bmd,bm->bd", z, a1) / sigma[:, :1]
  return sigma, v


def _objective(variant: str):
  def loss(zs: Mapping[str, jax.Array], targets: jax.Array,
           cfg: obj_lib.ObjectiveConfig = obj_lib.ObjectiveConfig()) -> jax.Array:
    if len(zs) < 2:
      raise ValueError(f"hopa_{variant} objective: expected ≥ 2 modalities, found {list(zs)}")
    if cfg.rank != 1:
      raise ValueError(f"hopa_{variant} objective: expected rank 1, found {cfg.rank}")
    sigma, v = replaced_spectrum(proxy_lib.stack_modalities(zs), variant)
    return obj_lib.hopa_loss_from_spectrum(sigma, v, targets, cfg)
  loss.__name__ = f"hopa_{variant}"
  loss.__doc__ = f"HoPA's objective with the eigendecomposition replaced by '{variant}'."
  return loss


OBJECTIVES = {f"hopa_{v}": _objective(v) for v in VARIANTS}


def register() -> list[str]:
  """Adds ``hopa_identity`` / ``hopa_mean`` to :data:`hopa_jax.objectives.OBJECTIVES`
  (idempotent); returns their names."""
  for name, f in OBJECTIVES.items():
    obj_lib.OBJECTIVES.setdefault(name, f)
  return list(OBJECTIVES)
