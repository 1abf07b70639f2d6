"""Trajectory-bound study (SPEC §5; HoPA Lemma 1 and Theorem 1), measured with ``jax.grad``.

**Lemma 1.** Real and student rollouts of plain SGD from a shared start ``θ₀``::

  θ_{t+1} = θ_t − η g_t(θ_t)          (real data, targets I)
  θ̃_{t+1} = θ̃_t − η g̃_t(θ̃_t)        (synthetic data, targets I or Ŝ)

satisfy ``‖θ_T − θ̃_T‖ ≤ Σ_{t<T} η (1+ηL)^{T−1−t} ‖g_t(θ̃_t) − g̃_t(θ̃_t)‖`` when
``‖g_t(θ_t) − g_t(θ̃_t)‖ ≤ L ‖θ_t − θ̃_t‖`` (the proof's only use of ``L``).
:func:`make_study` rolls both out in one ``lax.scan`` and measures per step:

* the gradient mismatch ``‖g_t(θ̃_t) − g̃_t(θ̃_t)‖`` per modality branch (top-level key
  of the heads' params) and stacked (block Euclidean norm);
* ``L_t = ‖∇²ℓ_real(θ̃_t)‖₂``, the local Lipschitz constant of the real gradient field at
  the student point, by power iteration on Hessian-vector products
  (``jax.jvp`` of ``jax.grad``), with its convergence (last relative change, iterations);
* the *secant* constant ``‖g_t(θ_t) − g_t(θ̃_t)‖ / ‖θ_t − θ̃_t‖`` — the exact quantity the
  proof needs, available for free since the real rollout evaluates ``g_t(θ_t)``;
* the gap ``‖θ_t − θ̃_t‖`` (``t = 0..T``; the endpoint discrepancy is its last entry);
* the spectral sensitivities ``∂L/∂σ_k`` (Theorem 1, see below) on the real batch and
  on the synthetic set at ``θ̃_t``.

:func:`summarize` forms the Lemma-1 right-hand side with ``L = max_t L_t`` (the
largest local estimate along the student path; SPEC §5) and, as a certified check,
with ``L_sec = max_t`` secant (for which the inequality holds by the proof, up to
rounding). The bound with ``L_hvp`` is guaranteed only if the Hessian norm along the
student path dominates the secants; ``summarize`` reports ``lipschitz_dominates`` so a
reader sees when it does not.

**Deterministic gradients.** The lemma is for deterministic gradient fields, so every
step uses the *same* fixed real batch (the whole real array passed in; the study binary
passes a fixed random subset of the train split) and the whole synthetic set.

**Theorem 1 (spectral sensitivities).** For instance ``i`` with ``Z_i = A_i diag(σ_i)
V_iᵀ`` (``A_i`` the sign-fixed eigenvectors of the Gram, ``V_i = Z_iᵀ A_i diag(σ_i)⁻¹``
the right singular vectors), :func:`spectral_sensitivities` evaluates the library's own
objective on the reconstructed embeddings ``Z_i(σ) = A_i diag(σ) V_iᵀ`` with ``A, V``
held fixed and returns ``∂L/∂σ_{ik}`` by ``jax.grad`` (not finite differences). For
HoPA the proxy is recomputed from ``Z(σ)`` through ``eigh`` inside the objective, so the
zeros below are measured, not assumed.

Which part of HoPA is "single-mode": ``L_mod = mean_i −log softmax(σ_i/τ)_1 =
mean_i [−σ_{i1}/τ + logsumexp(σ_i/τ)]``. Its numerator depends on ``σ_1`` only; its
log-sum-exp denominator involves every ``σ_k`` (sensitivity ``softmax_k/τ`` per instance,
tiny when ``σ_1`` dominates but not zero). ``L_inst`` depends on ``Z`` only through the
leading right singular vector ``v_1`` (zero sensitivity to every ``σ_k`` with the
singular vectors fixed). The *principal-mode part* of Theorem 1 is therefore
:func:`hopa_principal` ``= mean_i(−σ_{i1}/τ_mod) + λ_inst L_inst`` — the HoPA objective
without the softmax denominator; its sensitivity to modes ``k ≥ 2`` is zero to float
precision. The full ``hopa`` objective's is reported too (small, non-zero). Pairwise
objectives (3-pair, T-bind, V-bind, InfoNCE) are full-spectrum: e.g. the pairwise cosine
sum ``Σ_{m<m'} ⟨z_m, z_m'⟩ = ½(Σ_k σ_k² ⟨a_k, 1⟩² − Σ_k σ_k²)`` has
``∂/∂σ_k = σ_k(⟨a_k, 1⟩² − 1)`` (:func:`pairwise_cosine_sum_sensitivity`).
"""

from __future__ import annotations

import functools
import importlib
from typing import Callable, Mapping, NamedTuple, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax.tree_utils as otu
from jax.flatten_util import ravel_pytree

from hopa_jax import objectives as obj_lib
# ``hopa_jax/__init__`` re-exports the function ``proxy``, which shadows the submodule
# attribute; take the module itself.
proxy_lib = importlib.import_module("hopa_jax.proxy")
from mmdd_jax import heads as heads_lib

# --------------------------------------------------------------------------- objectives


def hopa_principal(zs: Mapping[str, jax.Array], targets: jax.Array,
                   cfg: obj_lib.ObjectiveConfig = obj_lib.ObjectiveConfig()) -> jax.Array:
  """HoPA's principal-mode part (Theorem 1): ``mean_i(−σ_{i1}/τ_mod) + λ_inst·L_inst``.

  ``L_mod``'s numerator plus the proxy term; it depends on ``Z_i`` only through the
  leading singular triple. Used for sensitivities, not for training.
  """
  p = proxy_lib.proxy(zs, rank=1)
  total = jnp.zeros((), p.sigma.dtype)
  if cfg.use_mod:
    total = total + jnp.mean(-p.sigma[:, 0] / cfg.tau_mod)
  if cfg.use_inst:
    s = p.v @ p.v.T / cfg.tau_inst
    total = total + cfg.lam_inst * obj_lib.weighted_bce(s, targets, cfg.beta, cfg.pos_from)
  return total


def pairwise_cosine_sum(zs: Mapping[str, jax.Array], targets=None, cfg=None) -> jax.Array:
  """``Σ_i Σ_{m<m'} ⟨z_{i,m}, z_{i,m'}⟩`` (the intra-instance part of pairwise losses)."""
  del targets, cfg
  z = proxy_lib.stack_modalities(zs)
  s = jnp.sum(z, axis=1)
  return 0.5 * (jnp.sum(s * s) - jnp.sum(z * z))


SENSITIVITY_OBJECTIVES: dict[str, Callable] = {"hopa_principal": hopa_principal,
                                               "pairwise_cosine_sum": pairwise_cosine_sum}


def get_sensitivity_objective(name: str) -> Callable:
  """A registered inner objective or one of :data:`SENSITIVITY_OBJECTIVES`."""
  if name in SENSITIVITY_OBJECTIVES:
    return SENSITIVITY_OBJECTIVES[name]
  return obj_lib.get_objective(name)


def make_loss(objective: str, ocfg: obj_lib.ObjectiveConfig = obj_lib.ObjectiveConfig()
              ) -> Callable:
  """``loss(params, xs, targets) -> scalar``: heads applied to features, then the
  objective ``objective`` (a name in :data:`hopa_jax.objectives.OBJECTIVES`)."""
  f = obj_lib.get_objective(objective)

  def loss(params, xs, targets):
    return f(heads_lib.apply_heads(params, xs), targets, ocfg)
  return loss


# ------------------------------------------------------------------- spectral sensitivities


def svd_factors(zs) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(σ [B, M], A [B, M, M], Vt [B, M, d])`` with ``Z_i = A_i diag(σ_i) Vt_i``.

  From ``eigh`` of the ``M×M`` Gram (never an SVD of the ``d``-sized matrix);
  ``Vt_i = diag(σ_i)⁻¹ A_iᵀ Z_i``. Requires ``Z_i`` of full row rank (σ_M > 0).
  """
  z = proxy_lib.stack_modalities(zs)
  sigma, a = proxy_lib.spectrum(z)
  vt = jnp.einsum("bmd,bmk->bkd", z, a) / sigma[..., None]
  return sigma, a, vt


def spectral_sensitivities(loss_fn: Callable, zs: Mapping[str, jax.Array],
                           targets: jax.Array) -> jax.Array:
  """``∂L/∂σ_{ik}`` for every instance ``i`` and mode ``k`` (``[B, M]``), by ``jax.grad``.

  Args:
    loss_fn: ``loss_fn(zs, targets) -> scalar`` (e.g. ``functools.partial`` of an
      objective with its config).
    zs: ``{modality: [B, d]}`` embeddings (dict order = rows of ``Z_i``).
    targets: ``[B, B]``.
  Returns:
    The gradient of ``loss_fn({m: Z(σ)[:, m]}, targets)`` with respect to ``σ`` at the
    actual singular values, singular vectors held fixed.
  """
  mods = list(zs)
  sigma, a, vt = jax.tree_util.tree_map(jax.lax.stop_gradient, svd_factors(zs))

  def f(s):
    zr = jnp.einsum("bmk,bk,bkd->bmd", a, s, vt)
    return loss_fn({m: zr[:, j] for j, m in enumerate(mods)}, targets)
  return jax.grad(f)(sigma)


def pairwise_cosine_sum_sensitivity(zs) -> jax.Array:
  """Closed form ``∂/∂σ_k Σ_{m<m'}⟨z_m, z_m'⟩ = σ_k(⟨a_k, 1⟩² − 1)``, ``[B, M]``."""
  sigma, a, _ = svd_factors(zs)
  return sigma * (jnp.sum(a, axis=1) ** 2 - 1.0)


# ---------------------------------------------------------------------------- Lipschitz


class PowerResult(NamedTuple):
  """Top ``|eigenvalue|`` of a Hessian by power iteration.

  Attributes:
    value: ``‖H v‖`` for the final unit ``v`` (a lower bound on ``‖H‖₂`` that converges
      to it).
    vector: the final unit vector (flat).
    rel_change: relative change of ``value`` in the last iteration.
    iters: iterations run.
  """
  value: jax.Array
  vector: jax.Array
  rel_change: jax.Array
  iters: jax.Array


def _normalize(v):
  return v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(v.dtype).tiny)


def power_iteration(matvec: Callable, v0: jax.Array, *, iters: int = 50,
                    tol: float = 1e-4) -> PowerResult:
  """Power iteration for the largest ``|eigenvalue|`` of a symmetric operator.

  Stops after ``iters`` iterations or when the relative change of ``‖H v‖`` drops below
  ``tol`` (at least 2 iterations). ``lax.while_loop``: usable inside ``scan``/``jit``.
  """
  v0 = _normalize(v0)
  one = jnp.ones((), v0.dtype)

  def cond(c):
    i, _, _, rel = c
    return (i < iters) & ((i < 2) | (rel > tol))

  def body(c):
    i, v, lam, _ = c
    w = matvec(v)
    new = jnp.linalg.norm(w)
    rel = jnp.abs(new - lam) / jnp.maximum(new, jnp.finfo(v.dtype).tiny)
    return i + 1, _normalize(w), new, rel

  i, v, lam, rel = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), v0, 0 * one, one))
  return PowerResult(lam, v, rel, i)


def hvp_flat(f: Callable, params):
  """``(x0, matvec)``: flat params and ``v ↦ ∇²f(params) v`` (``jax.jvp`` of ``jax.grad``)."""
  x0, unravel = ravel_pytree(params)
  g = jax.grad(lambda x: f(unravel(x)))
  return x0, lambda v: jax.jvp(g, (x0,), (v,))[1]


def hessian_norm(f: Callable, params, key: jax.Array, *, iters: int = 50, tol: float = 1e-4,
                 v0: jax.Array | None = None) -> PowerResult:
  """``‖∇²f(params)‖₂`` by power iteration on Hessian-vector products."""
  x0, mv = hvp_flat(f, params)
  if v0 is None:
    v0 = jax.random.normal(key, x0.shape, x0.dtype)
  return power_iteration(mv, v0, iters=iters, tol=tol)


def exact_hessian_norm(f: Callable, params) -> jax.Array:
  """``max |eig(jax.hessian(f)(flat params))|`` — for tiny problems (tests)."""
  x0, unravel = ravel_pytree(params)
  h = jax.hessian(lambda x: f(unravel(x)))(x0)
  return jnp.max(jnp.abs(jnp.linalg.eigvalsh(0.5 * (h + h.T))))


# ------------------------------------------------------------------------------ rollout


def branch_norms(t: Mapping) -> dict:
  """``{branch: ‖t[branch]‖}`` over the top-level keys (modality heads)."""
  return {m: otu.tree_norm(t[m]) for m in t}


@flax.struct.dataclass
class StudyTrace:
  """Per-step measurements of one real-vs-synthetic rollout (``T`` steps).

  Attributes:
    mismatch: ``[T]`` stacked ``‖g_t(θ̃_t) − g̃_t(θ̃_t)‖``.
    mismatch_branch: ``{branch: [T]}`` the same per modality head.
    lipschitz: ``[T]`` power-iteration ``‖∇²ℓ_real(θ̃_t)‖₂``.
    power_rel_change: ``[T]`` last relative change of the power iteration.
    power_iters: ``[T]`` iterations used.
    secant: ``[T]`` ``‖g_t(θ_t) − g_t(θ̃_t)‖ / ‖θ_t − θ̃_t‖`` (0 where the gap is 0).
    gap: ``[T+1]`` ``‖θ_t − θ̃_t‖``, ``t = 0..T``.
    loss_real: ``[T]`` real loss at ``θ_t``; loss_syn: ``[T]`` synthetic loss at ``θ̃_t``.
    sens_real / sens_syn: ``{objective: [T, M]}`` ``B · mean_i |∂L/∂σ_{ik}|`` on the real
      batch / synthetic set at ``θ̃_t`` (``B`` the batch size, so the two sets compare).
  """
  mismatch: jax.Array
  mismatch_branch: dict
  lipschitz: jax.Array
  power_rel_change: jax.Array
  power_iters: jax.Array
  secant: jax.Array
  gap: jax.Array
  loss_real: jax.Array
  loss_syn: jax.Array
  sens_real: dict
  sens_syn: dict


def sensitivity_names(objective: str) -> tuple[str, ...]:
  """The rollout objective, plus HoPA's principal-mode part when it is ``hopa``."""
  return (objective, "hopa_principal") if objective == "hopa" else (objective,)


def make_study(objective: str, *, eta: float, steps: int,
               ocfg: obj_lib.ObjectiveConfig = obj_lib.ObjectiveConfig(),
               power_iters: int = 50, power_tol: float = 1e-4,
               sensitivities: bool = True, jit: bool = True) -> Callable:
  """Builds ``study(params0, real_xs, syn_xs, syn_targets, key) -> StudyTrace``.

  Args:
    objective: inner objective name (:data:`hopa_jax.objectives.OBJECTIVES`).
    eta: SGD step size ``η`` shared by both rollouts.
    steps: ``T``.
    ocfg: objective hyperparameters.
    power_iters, power_tol: power-iteration budget per step. The first step starts
      from a random vector (``key``); later steps warm-start from the previous step's
      vector plus a small random component (``fold_in(key, t)``).
    sensitivities: also record the spectral sensitivities per step.
    jit: return the jitted function.
  Returns:
    ``study``: ``params0`` the heads' params; ``real_xs`` / ``syn_xs`` ``{m: [N|n, d_m]}``
    (used whole at every step: deterministic gradients); ``syn_targets`` ``[n, n]``
    (``I`` or ``Ŝ``); ``key`` for the power-iteration start vectors.
  """
  loss = make_loss(objective, ocfg)
  sens_fns = {name: functools.partial(get_sensitivity_objective(name), cfg=ocfg)
              for name in sensitivity_names(objective)}

  def sens(params, xs, targets):
    zs = heads_lib.apply_heads(params, xs)
    b = targets.shape[0]
    return {name: b * jnp.mean(jnp.abs(spectral_sensitivities(f, zs, targets)), axis=0)
            for name, f in sens_fns.items()}

  def study(params0, real_xs, syn_xs, syn_targets, key):
    n_real = next(iter(real_xs.values())).shape[0]
    real_targets = jnp.eye(n_real, dtype=syn_targets.dtype)
    real_loss = lambda p: loss(p, real_xs, real_targets)  # noqa: E731
    syn_loss = lambda p: loss(p, syn_xs, syn_targets)  # noqa: E731
    x0, _ = ravel_pytree(params0)
    k_init, k_jit = jax.random.split(key)
    v_init = jax.random.normal(k_init, x0.shape, x0.dtype)

    def step(carry, t):
      theta, theta_s, v_prev = carry
      l_real, g_teacher = jax.value_and_grad(real_loss)(theta)
      g_real = jax.grad(real_loss)(theta_s)
      l_syn, g_syn = jax.value_and_grad(syn_loss)(theta_s)
      mb = branch_norms(otu.tree_sub(g_real, g_syn))
      mis = jnp.sqrt(sum(jnp.square(v) for v in mb.values()))
      gap = otu.tree_norm(otu.tree_sub(theta, theta_s))
      dg = otu.tree_norm(otu.tree_sub(g_teacher, g_real))
      secant = jnp.where(gap > 0, dg / jnp.where(gap > 0, gap, 1.0), 0.0)
      jitter = jax.random.normal(jax.random.fold_in(k_jit, t), v_prev.shape, v_prev.dtype)
      v0 = _normalize(v_prev) + 1e-2 * _normalize(jitter)
      pw = hessian_norm(real_loss, theta_s, key, iters=power_iters, tol=power_tol, v0=v0)
      out = dict(mismatch=mis, mismatch_branch=mb, lipschitz=pw.value,
                 power_rel_change=pw.rel_change, power_iters=pw.iters, secant=secant, gap=gap,
                 loss_real=l_real, loss_syn=l_syn)
      if sensitivities:
        out["sens_real"] = sens(theta_s, real_xs, real_targets)
        out["sens_syn"] = sens(theta_s, syn_xs, syn_targets)
      return ((otu.tree_add_scale(theta, -eta, g_teacher),
               otu.tree_add_scale(theta_s, -eta, g_syn), pw.vector), out)

    (theta_t, theta_s_t, _), tr = jax.lax.scan(step, (params0, params0, v_init),
                                               jnp.arange(steps))
    end_gap = otu.tree_norm(otu.tree_sub(theta_t, theta_s_t))
    return StudyTrace(mismatch=tr["mismatch"], mismatch_branch=tr["mismatch_branch"],
                      lipschitz=tr["lipschitz"], power_rel_change=tr["power_rel_change"],
                      power_iters=tr["power_iters"], secant=tr["secant"],
                      gap=jnp.concatenate([tr["gap"], end_gap[None]]),
                      loss_real=tr["loss_real"], loss_syn=tr["loss_syn"],
                      sens_real=tr.get("sens_real", {}), sens_syn=tr.get("sens_syn", {}))

  return jax.jit(study) if jit else study


def lemma1_rhs(mismatch, eta: float, lipschitz) -> jax.Array:
  """``Σ_{t<T} η (1+ηL)^{T−1−t} m_t`` for per-step mismatches ``m [T]``."""
  mismatch = jnp.asarray(mismatch)
  t = mismatch.shape[0]
  powers = jnp.arange(t - 1, -1, -1, dtype=mismatch.dtype)
  return jnp.sum(eta * (1.0 + eta * lipschitz) ** powers * mismatch)


def summarize(trace: StudyTrace, eta: float) -> dict:
  """Scalars of one rollout (host floats).

  Keys: ``mean_mismatch``, ``mismatch_branch`` ({branch: mean}), ``L`` (max over steps
  of the power-iteration estimates), ``L_secant`` (max secant), ``endpoint_gap``,
  ``bound`` (Lemma 1 with ``L``), ``bound_secant`` (with ``L_secant``; certified),
  ``ratio`` (bound / gap), ``held`` (gap ≤ bound), ``held_secant``,
  ``lipschitz_dominates`` (``L ≥ L_secant``), ``power_max_rel_change``,
  ``power_max_iters``, ``sens_real``/``sens_syn`` ({objective: per-mode mean over
  steps}).
  """
  mis = np.asarray(trace.mismatch, np.float64)
  big_l = float(np.max(np.asarray(trace.lipschitz)))
  l_sec = float(np.max(np.asarray(trace.secant)))
  gap = float(np.asarray(trace.gap)[-1])
  bound = float(lemma1_rhs(mis, eta, big_l))
  bound_sec = float(lemma1_rhs(mis, eta, l_sec))
  out = dict(
      mean_mismatch=float(mis.mean()),
      mismatch_branch={m: float(np.mean(np.asarray(v))) for m, v in trace.mismatch_branch.items()},
      L=big_l, L_secant=l_sec, endpoint_gap=gap, bound=bound, bound_secant=bound_sec,
      ratio=bound / gap if gap > 0 else float("inf"),
      held=bool(gap <= bound), held_secant=bool(gap <= bound_sec * (1 + 1e-5) + 1e-12),
      lipschitz_dominates=bool(big_l >= l_sec),
      power_max_rel_change=float(np.max(np.asarray(trace.power_rel_change))),
      power_max_iters=int(np.max(np.asarray(trace.power_iters))),
      sens_real={k: np.asarray(v).mean(axis=0).tolist() for k, v in trace.sens_real.items()},
      sens_syn={k: np.asarray(v).mean(axis=0).tolist() for k, v in trace.sens_syn.items()},
  )
  return out


__all__: Sequence[str] = [
    "hopa_principal", "pairwise_cosine_sum", "SENSITIVITY_OBJECTIVES",
    "get_sensitivity_objective", "make_loss", "svd_factors", "spectral_sensitivities",
    "pairwise_cosine_sum_sensitivity", "PowerResult", "power_iteration", "hvp_flat",
    "hessian_norm", "exact_hessian_norm", "branch_norms", "StudyTrace", "sensitivity_names",
    "make_study", "lemma1_rhs", "summarize",
]
