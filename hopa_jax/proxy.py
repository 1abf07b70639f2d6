"""Omnimodal proxy (SPEC §3.1): spectrum of the per-instance modality Gram.

Per instance ``i`` the rows of ``Z_i ∈ R^{M×d}`` are the unit-norm embeddings of its
``M`` modalities. The Gram ``G_i = Z_i Z_iᵀ`` (``M×M``) has eigenpairs
``(σ_k², a_k)``; the unified feature is ``v_i = Z_iᵀ a_1 / σ_1`` (unit norm), with the
sign of ``a_1`` chosen so that ``⟨v_i, Σ_m z_{i,m}⟩ ≥ 0`` (equivalently ``Σ a_1 ≥ 0``,
since ``a_1ᵀ G 1 = σ_1² Σ a_1``).

Everything is computed from ``eigh`` of the tiny ``M×M`` Gram, never from an SVD of
the ``d``-sized matrix.

**Degenerate spectra.** JAX's ``eigh`` derivative divides by every eigenvalue gap and
returns NaN/inf when two eigenvalues coincide (e.g. all modalities identical, two
identical modalities, or ``M−1`` equal trailing eigenvalues). :func:`sym_eigh` is
``eigh`` with a ``custom_jvp`` whose eigenvector tangent uses the *broadened* inverse
gap ``g / (g² + δ)`` (``δ = GAP_EPS``): exact for well-separated eigenvalues, zero for
exactly coinciding ones. Inside a degenerate block the eigenvectors are arbitrary and
every quantity the HoPA objective uses — ``a_1`` when the leading eigenvalue is simple,
and symmetric functions of the trailing eigenvalues (the softmax denominator) — is
invariant to rotations within the block, so dropping those terms is exact there. The
JVP rule is written with JAX primitives on top of :func:`sym_eigh` itself, so second
derivatives (the unrolled student differentiates through a gradient) are finite too.
Singular values use a guarded square root ``σ = sqrt(max(λ, SQRT_EPS))``: a zero mode
(rank-deficient ``Z_i``) then contributes a zero, finite, gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

GAP_EPS = 1e-10    # δ of the broadened inverse gap g/(g²+δ); relative to the Gram's scale (λ ≤ M)
SQRT_EPS = 1e-12   # floor under λ before the square root


def _eps(dtype, base: float) -> float:
  # float32 eigh resolves gaps only down to ~1e-6·‖G‖: broaden more in low precision.
  return base if jnp.finfo(dtype).bits >= 64 else max(base, 1e-8)


@jax.custom_jvp
def sym_eigh(g: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Eigen-decomposition of a symmetric ``[..., M, M]`` matrix, eigenvalues
  *descending*: returns ``(w [..., M], V [..., M, M])`` with ``G = V diag(w) Vᵀ``
  (columns of ``V`` are eigenvectors). Derivatives are finite at coinciding
  eigenvalues (see the module docstring)."""
  g = 0.5 * (g + jnp.swapaxes(g, -1, -2))
  w, v = jnp.linalg.eigh(g)
  return w[..., ::-1], v[..., ::-1]


@sym_eigh.defjvp
def _sym_eigh_jvp(primals, tangents):
  (g,), (dg,) = primals, tangents
  w, v = sym_eigh(g)
  dg = 0.5 * (dg + jnp.swapaxes(dg, -1, -2))
  vt = jnp.swapaxes(v, -1, -2)
  p = vt @ dg @ v                                            # [..., M, M]
  dw = jnp.diagonal(p, axis1=-2, axis2=-1)
  gap = w[..., None, :] - w[..., :, None]                   # gap[j, k] = w_k − w_j
  delta = _eps(g.dtype, GAP_EPS)
  f = gap / (gap * gap + delta)                             # 0 on the diagonal and at ties
  dv = v @ (f * p)
  return (w, v), (dw, dv)


def singular_values(w: jax.Array) -> jax.Array:
  """``σ = sqrt(λ)`` with a floor under ``λ`` (finite gradients at ``λ = 0``)."""
  return jnp.sqrt(jnp.maximum(w, _eps(w.dtype, SQRT_EPS)))


class Proxy(NamedTuple):
  """Per-instance spectral quantities.

  Attributes:
    sigma: ``[B, M]`` singular values of ``Z_i``, descending.
    v: ``[B, d]`` unified feature (rank 1) or the rank-r features
      (:func:`rank_r_features`, ``[B, d + (r−1)·M·d]``; sign-free in modes ``k ≥ 2``).
    a: ``[B, M, M]`` modality-alignment vectors (columns, descending, sign-fixed).
  """
  sigma: jax.Array
  v: jax.Array
  a: jax.Array


def stack_modalities(zs) -> jax.Array:
  """``{m: [B, d]}`` (dict order) or a ``[B, M, d]`` array → ``[B, M, d]``."""
  if isinstance(zs, dict):
    return jnp.stack([zs[m] for m in zs], axis=1)
  return zs


def gram(z: jax.Array) -> jax.Array:
  """``[B, M, d] → [B, M, M]``."""
  return jnp.einsum("bmd,bnd->bmn", z, z)


def spectrum(z: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Singular values ``[B, M]`` (descending) and sign-fixed alignment vectors
  ``[B, M, M]`` (column ``k`` is ``a_k``) of every instance's ``Z_i``."""
  w, a = sym_eigh(gram(z))
  sign = jax.lax.stop_gradient(jnp.where(jnp.sum(a, axis=-2, keepdims=True) >= 0, 1.0, -1.0))
  return singular_values(w), a * sign.astype(a.dtype)


def proxy(zs, rank: int = 1) -> Proxy:
  """The omnimodal proxy of a batch.

  Args:
    zs: ``{modality: [B, d]}`` unit-norm embeddings, or a ``[B, M, d]`` array.
    rank: ``1`` (HoPA) or ``r ≤ M`` (ablation "Rank-r": :func:`rank_r_features`,
      ``σ_1 v_1`` and the sign-free rank-one components ``σ_k a_k v_kᵀ``, ``k ≤ r``).
  Returns:
    :class:`Proxy`.
  """
  z = stack_modalities(zs)
  m = z.shape[1]
  if not 1 <= rank <= m:
    raise ValueError(f"proxy rank: expected 1 ≤ rank ≤ M={m}, found {rank}")
  sigma, a = spectrum(z)
  if rank == 1:
    v = jnp.einsum("bmd,bm->bd", z, a[..., 0]) / sigma[:, :1]
  else:
    v = rank_r_features(z, a, rank)
  return Proxy(sigma=sigma, v=v, a=a)


def rank_r_features(z: jax.Array, a: jax.Array, rank: int) -> jax.Array:
  """The Rank-r proxy (``r ≥ 2``): ``normalise([σ_1 v_1, vec(σ_2 a_2 v_2ᵀ), …,
  vec(σ_r a_r v_rᵀ)])``, ``[B, d + (r−1)·M·d]``.

  Mode 1 enters as in HoPA (``σ_1 v_1 = Z_iᵀ a_1``, sign from ``Σ a_1 ≥ 0``). Each
  further mode enters through its rank-one component of ``Z_i``,
  ``σ_k a_k v_kᵀ = a_k a_kᵀ Z_i`` (``M×d``), which is the same for ``a_k`` and
  ``−a_k``: no sign rule is needed, and none would be continuous — for well-aligned
  modalities ``a_1 ≈ 1/√M`` and every ``a_k ⊥ a_1`` has ``Σ a_k ≈ 0``, so a rule
  such as ``Σ a_k ≥ 0`` flips ``v_k`` under noise. The inner product of two
  instances' features is ``σ_1σ_1'⟨v_1, v_1'⟩ + Σ_{k≥2} σ_kσ_k' ⟨a_k, a_k'⟩⟨v_k,
  v_k'⟩`` over the norms: mode ``k`` of two instances counts in proportion to how
  alike their modality patterns ``a_k`` are. The squared norm is ``Σ_{k≤r} σ_k²``,
  and the features reduce to HoPA's ``v_1`` as ``σ_{k≥2} → 0``."""
  b = z.shape[0]
  parts = [jnp.einsum("bmd,bm->bd", z, a[..., 0])]             # σ_1 v_1, [B, d]
  for k in range(1, rank):
    sv = jnp.einsum("bmd,bm->bd", z, a[..., k])                # σ_k v_k (sign arbitrary)
    parts.append((a[..., k][:, :, None] * sv[:, None, :]).reshape(b, -1))   # a_k ⊗ σ_k v_k
  flat = jnp.concatenate(parts, axis=-1)
  return flat * jax.lax.rsqrt(jnp.maximum(jnp.sum(flat * flat, -1, keepdims=True), 1e-12))


def unified_feature(zs) -> jax.Array:
  """``v_i = Z_iᵀ a_1 / σ_1`` for every instance, ``[B, d]``."""
  return proxy(zs).v
