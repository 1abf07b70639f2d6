"""ImageBindDC alignment losses and the distribution-matching baselines (SPEC §4).

All losses are pure functions of one class's batches: ``real = {m: [B, d]}`` and
``syn = {m: [n, d]}`` (unit-norm embeddings per modality ``m``; the modalities are
taken in sorted order, so pairs ``m < m'`` are well defined for any M ≥ 2), plus the
CFD frequencies ``t`` (``None`` when no CFD term is active). ``distill`` vmaps them
over classes.

ImageBindDC::

  L_uni   = Σ_m w_m D(e_m, ẽ_m)                         D = CFD (or MMD, linear)
  L_cross = Σ_{m<m'} (1 − mean_{i,j} cos(e_m,i ⊙ e_m',i , ẽ_m,j ⊙ ẽ_m',j))      [R]
  L_joint = Σ_{m<m'} (1 − cos(Ē_m ⊙ Ẽ_m', Ē_m' ⊙ Ẽ_m))   Ē, Ẽ class means         [R]
  L       = λ_uni · s · L_uni + λ_cross · L_cross + λ_joint · L_joint

with ``s = uni_scale = 300`` (NCFM's scale of the CFD term) a named config value.

Baselines: DM ``Σ_m ‖μ_m − μ̃_m‖²``; AVDD
``DM + Σ_{m<m'} λ_icm ‖(μ_m + μ_m') − (μ̃_m + μ̃_m')‖² + λ_cgm ‖(μ_m + μ̃_m') − (μ_m' + μ̃_m)‖²``
(the papers' two-modality formula summed over pairs for M > 2).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Mapping

import jax
import jax.numpy as jnp

from bindc_jax import distances as dist_lib
from mmdd_jax import keys as keys_lib

NCFM_SCALE = 300.0
COS_EPS = 1e-12

Batch = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Static loss options (hashable; closed over by the jitted step).

  The weights are config keys ``loss.<field>`` (:func:`mmdd_jax.keys.field`); the method
  fixes ``kind`` (``"bindc"``: uni/cross/joint alignment, ``"dm"`` or ``"avdd"``),
  ``distance`` (the uni-modal distance, a key of ``distances.DISTANCES``) and the
  component switches ``use_uni`` / ``use_cross`` / ``use_joint`` (ablations);
  ``modality_weights``: optional ``((modality, weight), …)`` for L_uni (default 1).
  """
  kind: str = "bindc"
  distance: str = "cfd"
  dist: dist_lib.DistanceConfig = dist_lib.DistanceConfig()
  use_uni: bool = True
  use_cross: bool = True
  use_joint: bool = True
  lam_uni: float = keys_lib.field(1.0, ">=0", "weight λ_uni of the uni-modal term")
  lam_cross: float = keys_lib.field(10.0, ">=0", "weight λ_cross of the cross-modal term")
  lam_joint: float = keys_lib.field(10.0, ">=0", "weight λ_joint of the joint-modal term")
  uni_scale: float = keys_lib.field(NCFM_SCALE, ">0", "scale s of the uni-modal term (NCFM's "
                                    "300)")
  modality_weights: tuple[tuple[str, float], ...] = ()
  lam_icm: float = keys_lib.field(10.0, ">=0", "AVDD weight of the implicit cross-matching "
                                  "term")
  lam_cgm: float = keys_lib.field(10.0, ">=0", "AVDD weight of the cross-modal gap-matching "
                                  "term")

  def needs_frequencies(self) -> bool:
    return self.kind == "bindc" and self.use_uni and dist_lib.needs_frequencies(self.distance)


def _pairs(xs: Batch) -> list[tuple[str, str]]:
  mods = sorted(xs)
  if len(mods) < 2:
    raise ValueError(f"alignment losses: expected at least 2 modalities, found {mods}")
  return list(itertools.combinations(mods, 2))


def _cos_matrix(a: jax.Array, b: jax.Array) -> jax.Array:
  an = a * jax.lax.rsqrt(jnp.maximum(jnp.sum(a * a, -1, keepdims=True), COS_EPS))
  bn = b * jax.lax.rsqrt(jnp.maximum(jnp.sum(b * b, -1, keepdims=True), COS_EPS))
  return an @ bn.T


def _cos(a: jax.Array, b: jax.Array) -> jax.Array:
  return _cos_matrix(a[None, :], b[None, :])[0, 0]


def uni_loss(real: Batch, syn: Batch, t: jax.Array | None, cfg: LossConfig = LossConfig(),
             real_cf: Mapping[str, tuple[jax.Array, jax.Array]] | None = None) -> jax.Array:
  """``Σ_m w_m D(real_m, syn_m)`` (unscaled).

  With ``real_cf = {m: (Re Φ, Im Φ)}`` (precomputed on ``t``; CFD only) the real side
  of D is that characteristic function instead of ``real`` (``distances.cfd_from_stats``).
  """
  w = dict(cfg.modality_weights)
  if real_cf is not None:
    if cfg.distance != "cfd":
      raise ValueError(f"uni_loss: argument 'real_cf': precomputed real statistics need "
                       f"distance 'cfd', found '{cfg.distance}'")
    return sum(w.get(m, 1.0) * dist_lib.cfd_from_stats(real_cf[m], syn[m], t, cfg.dist)
               for m in sorted(syn))
  fn = dist_lib.get_distance(cfg.distance)
  return sum(w.get(m, 1.0) * fn(real[m], syn[m], t, cfg.dist) for m in sorted(real))


def cross_loss(real: Batch, syn: Batch) -> jax.Array:
  """``Σ_{m<m'} 1 − mean over real×syn pairs of cos(e_m ⊙ e_m', ẽ_m ⊙ ẽ_m')``."""
  total = 0.0
  for a, b in _pairs(real):
    total = total + 1.0 - jnp.mean(_cos_matrix(real[a] * real[b], syn[a] * syn[b]))
  return total


def joint_loss(real: Batch, syn: Batch) -> jax.Array:
  """``Σ_{m<m'} 1 − cos(Ē_m ⊙ Ẽ_m', Ē_m' ⊙ Ẽ_m)`` with class means Ē (real), Ẽ (syn)."""
  mr = {m: jnp.mean(v, 0) for m, v in real.items()}
  ms = {m: jnp.mean(v, 0) for m, v in syn.items()}
  total = 0.0
  for a, b in _pairs(real):
    total = total + 1.0 - _cos(mr[a] * ms[b], mr[b] * ms[a])
  return total


def bindc_loss(real: Batch, syn: Batch, t: jax.Array | None, cfg: LossConfig = LossConfig(),
               real_cf: Mapping[str, tuple[jax.Array, jax.Array]] | None = None
               ) -> tuple[jax.Array, dict]:
  """ImageBindDC total loss and its components ``{"uni", "cross", "joint"}``
  (``real_cf``: see :func:`uni_loss`; the cross and joint terms always use ``real``)."""
  zero = jnp.zeros((), jnp.result_type(*[v.dtype for v in syn.values()]))
  uni = uni_loss(real, syn, t, cfg, real_cf) if cfg.use_uni else zero
  cross = cross_loss(real, syn) if cfg.use_cross else zero
  joint = joint_loss(real, syn) if cfg.use_joint else zero
  total = cfg.lam_uni * cfg.uni_scale * uni + cfg.lam_cross * cross + cfg.lam_joint * joint
  return total, {"uni": uni, "cross": cross, "joint": joint}


def dm_loss(real: Batch, syn: Batch) -> jax.Array:
  """DM: ``Σ_m ‖mean real_m − mean syn_m‖²``."""
  return sum(dist_lib.mean_matching(real[m], syn[m]) for m in sorted(real))


def avdd_loss(real: Batch, syn: Batch, lam_icm: float = 10.0, lam_cgm: float = 10.0
              ) -> tuple[jax.Array, dict]:
  """AVDD: DM + λ_icm·ICM + λ_cgm·CGM, the last two summed over modality pairs."""
  mr = {m: jnp.mean(v, 0) for m, v in real.items()}
  ms = {m: jnp.mean(v, 0) for m, v in syn.items()}
  sq = lambda v: jnp.sum(v * v)
  dm = sum(sq(mr[m] - ms[m]) for m in sorted(real))
  icm = cgm = 0.0
  for a, b in _pairs(real):
    icm = icm + sq((mr[a] + mr[b]) - (ms[a] + ms[b]))
    cgm = cgm + sq((mr[a] + ms[b]) - (mr[b] + ms[a]))
  return dm + lam_icm * icm + lam_cgm * cgm, {"dm": dm, "icm": icm, "cgm": cgm}


def class_loss(real: Batch, syn: Batch, t: jax.Array | None, cfg: LossConfig = LossConfig(),
               real_cf: Mapping[str, tuple[jax.Array, jax.Array]] | None = None
               ) -> tuple[jax.Array, dict]:
  """The loss of one class for ``cfg.kind``; returns ``(loss, components)``.
  ``real_cf`` (precomputed real characteristic functions) is used by ``bindc`` only."""
  if cfg.kind == "bindc":
    return bindc_loss(real, syn, t, cfg, real_cf)
  if cfg.kind == "dm":
    loss = dm_loss(real, syn)
    return loss, {"dm": loss}
  if cfg.kind == "avdd":
    return avdd_loss(real, syn, cfg.lam_icm, cfg.lam_cgm)
  raise ValueError(f"loss kind: expected one of ['avdd', 'bindc', 'dm'], found '{cfg.kind}'")
