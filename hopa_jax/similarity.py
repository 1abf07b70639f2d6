"""Learnable similarity targets ("similarity mining", LoRS; SPEC §3.3).

``Ŝ = diag(a) + (α / r) · L Rᵀ`` with ``a = 1``, ``L ~ N(0, 1)``, ``R = 0`` at
initialisation (so ``Ŝ₀ = I``). Kinds:

* ``"lowrank"`` (default): params ``{"a": [n], "L": [n, r], "R": [n, r]}``;
* ``"full"``: params ``{"S": [n, n]}`` initialised to ``I``;
* ``"fixed"``: no params (``{}``), ``Ŝ = I`` ("w/o similarity mining").

:func:`batch_targets` slices ``Ŝ[idx, idx]`` without forming the ``n×n`` matrix for
the low-rank kind (batch indices are distinct, so the diagonal part is
``diag(a[idx])``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

KINDS = ("lowrank", "full", "fixed")


def _check(kind: str) -> None:
  if kind not in KINDS:
    raise ValueError(f"similarity kind: expected one of {KINDS}, found '{kind}'")


def init_similarity(key: jax.Array, n: int, kind: str = "lowrank", rank: int = 10) -> dict:
  """Initial params with ``Ŝ₀ = I``."""
  _check(kind)
  if kind == "lowrank":
    if rank < 1:
      raise ValueError(f"sim_rank: expected ≥ 1, found {rank}")
    return {"a": jnp.ones((n,), jnp.float32),
            "L": jax.random.normal(key, (n, rank), jnp.float32),
            "R": jnp.zeros((n, rank), jnp.float32)}
  if kind == "full":
    return {"S": jnp.eye(n, dtype=jnp.float32)}
  return {}


def batch_targets(params: dict, idx: jax.Array, kind: str = "lowrank",
                  alpha: float = 1.0) -> jax.Array:
  """``Ŝ[idx, idx]`` (``[B, B]``) for distinct indices ``idx``."""
  _check(kind)
  b = idx.shape[0]
  if kind == "lowrank":
    r = params["L"].shape[1]
    low = (alpha / r) * (jnp.asarray(params["L"])[idx] @ jnp.asarray(params["R"])[idx].T)
    return jnp.diag(jnp.asarray(params["a"])[idx]) + low
  if kind == "full":
    return jnp.asarray(params["S"])[idx][:, idx]
  return jnp.eye(b, dtype=jnp.float32)


def full_matrix(params: dict, n: int, kind: str = "lowrank", alpha: float = 1.0) -> jax.Array:
  """The whole ``n×n`` ``Ŝ`` (for saving / inspection)."""
  return batch_targets(params, jnp.arange(n), kind, alpha)


def summary(params: dict, n: int, kind: str = "lowrank", alpha: float = 1.0) -> dict:
  """Scalars for the metrics log: ``sim_diag_min`` / ``sim_diag_mean`` and
  ``sim_offdiag`` (RMS of the off-diagonal entries) of ``Ŝ``; empty for ``fixed``."""
  _check(kind)
  if kind == "fixed":
    return {}
  s = full_matrix(params, n, kind, alpha)
  d = jnp.diagonal(s)
  off = s - jnp.diag(d)
  return {"sim_diag_min": jnp.min(d), "sim_diag_mean": jnp.mean(d),
          "sim_offdiag": jnp.sqrt(jnp.sum(off * off) / max(n * (n - 1), 1))}
