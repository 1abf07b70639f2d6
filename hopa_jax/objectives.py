"""Inner objectives (SPEC §3.2, §3.4): pure functions of a batch's embeddings.

Every objective has the signature ``loss(zs, targets, cfg) -> scalar`` with
``zs = {modality: [B, e]}`` unit-norm embeddings (dict order = modality order),
``targets [B, B]`` (``I`` on real data, ``Ŝ[batch, batch]`` on synthetic data) and
``cfg`` an :class:`ObjectiveConfig`. :func:`get_objective` selects one by name:

=========  ===============================================================
``hopa``   ``L_mod + λ_inst·L_inst`` on the omnimodal proxy (switches ``use_mod``,
           ``use_inst`` give the "w/o L_mod" / "w/o L_inst" ablations; ``rank``
           the Rank-r proxy)
``3pair``  wBCE over every unordered modality pair (LoRS for M = 3; HoPA's "3-pair")
``tbind``  wBCE over the pairs (m, text) for every other modality m
``vbind``  wBCE over the pairs (m, vision) for every other modality m
``infonce`` symmetric InfoNCE over every unordered pair (MTT-VL's CLIP-style experts)
=========  ===============================================================
"""

from __future__ import annotations

import dataclasses
from itertools import combinations
from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from hopa_jax import proxy as proxy_lib
from mmdd_jax import keys as keys_lib
from mmdd_jax import losses as mm_losses


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """Static (hashable) hyperparameters of the inner objectives; each field is a config
  key ``objective.<field>`` (:func:`mmdd_jax.keys.field`: default, rule, meaning).

  Temperatures: one rule for every method, its published value — LoRS's
  ``--temperature 0.07`` (``logit_scale = log(1/temperature)``, not trained during
  distillation) for the pairwise wBCE, which RepBlend keeps and HoPA's pairwise
  variants follow ("wBCE following Xu et al."); CLIP's 0.07 (the MTT-VL experts') for
  InfoNCE (docs/hopa.md).

  The defaults here are SPEC/LoRS's (``clip_targets``, ``pos_from="targets"``,
  ``diag_floor`` off); the run configs turn the three departures on for every
  objective alike (``hopa_jax.plan.OBJECTIVE``, docs/hopa.md). Without clipping,
  targets outside [0, 1] make the BCE unbounded below (LoRS diverges at lr_sim 10);
  with ``pos_from="targets"`` mining can push a diagonal target below β and turn an
  instance's own pair into a negative (measured: 82 % of LoRS's diagonal below 0 on
  msrvtt_sim); ``diag_floor`` floors the batch targets' diagonal at ``beta`` (after
  ``clip_targets``) and, with ``pos_from="targets"``, adds it to the positives. Real
  data (``Y = I``) is unchanged by all three.
  """
  tau_mod: float = keys_lib.field(0.1, ">0", "temperature of the singular-value softmax "
                                  "(L_mod) [R]")
  tau_inst: float = keys_lib.field(0.2, ">0", "temperature of the proxy similarity logits "
                               "(L_inst) [R]")
  lam_inst: float = keys_lib.field(1.0, ">=0", "weight λ_inst of L_inst [R]")
  use_mod: bool = keys_lib.field(True, None, "keep L_mod (the method 'no_lmod' turns it off)")
  use_inst: bool = keys_lib.field(True, None, "keep L_inst (the method 'no_linst' turns it off)")
  rank: int = keys_lib.field(1, ">=1", "proxy rank (1 = HoPA; the method 'rank2' sets 2)")
  tau_pair: float = keys_lib.field(0.07, ">0", "temperature of the pairwise wBCE logits (LoRS's "
                               "published 0.07)")
  tau_nce: float = keys_lib.field(0.07, ">0", "temperature of pairwise InfoNCE (MTT-VL, TESLA; "
                              "CLIP's 0.07)")
  beta: float = keys_lib.field(0.5, "(0,1)", "positive threshold of the weighted BCE (pos = Ŝ > "
                           "beta)")
  clip_targets: bool = keys_lib.field(False, None, "clip learned targets Ŝ to [0, 1] in the wBCE "
                                  "(not in SPEC: else LoRS diverges at lr_sim 10; docs/hopa.md)")
  pos_from: str = keys_lib.field("targets", ("targets", "identity"), "wBCE positives: 'identity' "
                             "(an instance's own pair) or 'targets' (SPEC/LoRS: Ŝ > beta)")
  diag_floor: bool = keys_lib.field(False, None, "an instance's own pair keeps a target ≥ beta "
                                "and stays a positive (not in SPEC; docs/hopa.md); False = "
                                "SPEC/LoRS")


POS_FROM = ("targets", "identity")


def prepare_targets(targets: jax.Array, cfg: ObjectiveConfig) -> jax.Array:
  """The targets an objective trains with: ``clip_targets`` clips to [0, 1], then
  ``diag_floor`` floors the diagonal (an instance's own pair) at ``beta``.
  The floor is a hard one: a diagonal entry below it gets no gradient."""
  targets = jnp.clip(targets, 0.0, 1.0) if cfg.clip_targets else targets
  if cfg.diag_floor:
    if targets.shape[0] != targets.shape[1]:
      raise ValueError(f"diag_floor: expected square targets, found shape {targets.shape}")
    d = jnp.diagonal(targets)
    eye = jnp.eye(targets.shape[0], dtype=targets.dtype)
    targets = targets + eye * (jnp.maximum(d, cfg.beta) - d)[:, None]
  return targets


def weighted_bce(logits: jax.Array, targets: jax.Array, beta: float = 0.5,
                 pos_from: str = "targets", diag_pos: bool = False) -> jax.Array:
  """LoRS's weighted BCE (SPEC §3.2), log-sigmoid form.

  ``ℓ = −Y log σ(S) − (1−Y) log(1−σ(S))``; ``pos = Y > β`` (``pos_from="targets"``;
  with ``diag_pos`` the diagonal is a positive too) or ``pos = I``
  (``pos_from="identity"``, square logits);
  ``wBCE = ½ (Σ_pos ℓ / |pos| + Σ_neg ℓ / |neg|)`` (an empty set contributes 0).

  Exact ``log σ`` / ``log(1 − σ)`` via ``log_sigmoid`` (SPEC). LoRS's code computes
  ``log(σ(S) + 1e-6)`` and ``log(1 − σ(S) + 1e-6)``: the same loss while
  ``σ, 1−σ ≫ 1e-6``, but for ``|S| ≳ 10`` (cosines near ±1 at ``τ = 0.07``) its
  gradient ``σ(1−σ)/(1−σ+ε)`` falls short of the exact ``σ`` (by ~55 % at
  ``S = 14``); docs/hopa.md.
  """
  targets = targets.astype(logits.dtype)
  ell = -targets * jax.nn.log_sigmoid(logits) - (1.0 - targets) * jax.nn.log_sigmoid(-logits)
  if pos_from == "identity":
    pos = jnp.eye(logits.shape[0], logits.shape[1], dtype=logits.dtype)
  elif pos_from == "targets":
    pos = jax.lax.stop_gradient(targets > beta).astype(logits.dtype)
    if diag_pos:
      pos = jnp.maximum(pos, jnp.eye(logits.shape[0], logits.shape[1], dtype=logits.dtype))
  else:
    raise ValueError(f"pos_from: expected one of {POS_FROM}, found '{pos_from}'")
  neg = 1.0 - pos
  lp = jnp.sum(ell * pos) / jnp.maximum(jnp.sum(pos), 1.0)
  ln = jnp.sum(ell * neg) / jnp.maximum(jnp.sum(neg), 1.0)
  return 0.5 * (lp + ln)


def hopa_loss_from_spectrum(sigma: jax.Array, v: jax.Array, targets: jax.Array,
                            cfg: ObjectiveConfig = ObjectiveConfig()) -> jax.Array:
  """HoPA's objective as a function of the spectrum (for the bound study, SPEC §5).

  Args:
    sigma: ``[B, M]`` singular values per instance, descending.
    v: ``[B, d]`` proxies (unit norm for rank 1).
    targets: ``[B, B]``.
    cfg: :class:`ObjectiveConfig`.
  Returns:
    ``L_mod + λ_inst·L_inst`` (terms switched off by ``cfg`` are dropped).
  """
  total = jnp.zeros((), sigma.dtype)
  if cfg.use_mod:
    logp = jax.nn.log_softmax(sigma / cfg.tau_mod, axis=-1)
    total = total + jnp.mean(-logp[:, 0])
  if cfg.use_inst:
    s = v @ v.T / cfg.tau_inst
    total = total + cfg.lam_inst * weighted_bce(s, prepare_targets(targets, cfg), cfg.beta,
                                                cfg.pos_from, cfg.diag_floor)
  return total


def hopa(zs: Mapping[str, jax.Array], targets: jax.Array,
         cfg: ObjectiveConfig = ObjectiveConfig()) -> jax.Array:
  """HoPA: ``L_mod + λ_inst·L_inst`` on the omnimodal proxy (SPEC §3.2)."""
  if len(zs) < 2:
    raise ValueError(f"hopa objective: expected ≥ 2 modalities, found {list(zs)}")
  p = proxy_lib.proxy(zs, rank=cfg.rank)
  return hopa_loss_from_spectrum(p.sigma, p.v, targets, cfg)


def pairs_all(mods) -> list[tuple[str, str]]:
  return list(combinations(list(mods), 2))


def pairs_bind(mods, anchor: str) -> list[tuple[str, str]]:
  """Every other modality paired with ``anchor`` (ImageBind-style binding)."""
  mods = list(mods)
  if anchor not in mods:
    raise ValueError(f"{anchor}-bind objective: expected modality '{anchor}' among the "
                     f"store's modalities, found {mods}")
  return [(m, anchor) for m in mods if m != anchor]


def pairwise_wbce(zs: Mapping[str, jax.Array], targets: jax.Array, cfg: ObjectiveConfig,
                  pairs) -> jax.Array:
  """Sum over ``pairs`` of ``wBCE(⟨z_{i,m}, z_{j,m'}⟩/τ_pair, Y)``."""
  if not pairs:
    raise ValueError(f"pairwise objective: expected ≥ 1 modality pair, found none for {list(zs)}")
  targets = prepare_targets(targets, cfg)
  return sum(weighted_bce(zs[a] @ zs[b].T / cfg.tau_pair, targets, cfg.beta, cfg.pos_from,
                          cfg.diag_floor)
             for a, b in pairs)


def three_pair(zs, targets, cfg: ObjectiveConfig = ObjectiveConfig()) -> jax.Array:
  """wBCE summed over all unordered modality pairs ("3-pair" for M = 3; LoRS)."""
  return pairwise_wbce(zs, targets, cfg, pairs_all(zs))


def tbind(zs, targets, cfg: ObjectiveConfig = ObjectiveConfig()) -> jax.Array:
  """wBCE over (m, text) for every modality m ≠ text."""
  return pairwise_wbce(zs, targets, cfg, pairs_bind(zs, "text"))


def vbind(zs, targets, cfg: ObjectiveConfig = ObjectiveConfig()) -> jax.Array:
  """wBCE over (m, vision) for every modality m ≠ vision."""
  return pairwise_wbce(zs, targets, cfg, pairs_bind(zs, "vision"))


def infonce(zs, targets, cfg: ObjectiveConfig = ObjectiveConfig()) -> jax.Array:
  """Symmetric InfoNCE over all unordered pairs (MTT-VL's experts; the evaluation
  objective, as the Full reference row). The labels are the rows of
  ``max(targets, 0)`` normalised to sum 1: with ``targets = I`` (real data, sets
  without similarity mining) this is the usual integer-label InfoNCE; with learned
  ``Ŝ[batch, batch]`` it is LoRS's soft-label form."""
  if len(zs) < 2:
    raise ValueError(f"infonce objective: expected ≥ 2 modalities, found {list(zs)}")
  targets = prepare_targets(targets, cfg)
  return mm_losses.pairwise_info_nce({m: zs[m] for m in zs}, cfg.tau_nce, targets)


OBJECTIVES: dict[str, Callable] = {
    "hopa": hopa, "3pair": three_pair, "tbind": tbind, "vbind": vbind, "infonce": infonce,
}


def names() -> tuple:
  """The registered objectives' names (a rule read at check time:
  :mod:`hopa_jax.proxy_variants` registers more)."""
  return tuple(sorted(OBJECTIVES))


def get_objective(name: str) -> Callable:
  """The objective registered under ``name`` (see the module docstring)."""
  if name not in OBJECTIVES:
    raise ValueError(f"objective: expected one of {sorted(OBJECTIVES)}, found '{name}'")
  return OBJECTIVES[name]
