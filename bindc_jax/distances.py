"""Distribution distances between a real and a synthetic set of embeddings.

Every distance has one signature, ``fn(real, syn, t, cfg) -> scalar``:

* ``real``: ``[n, d]`` real samples, ``syn``: ``[m, d]`` synthetic samples;
* ``t``: ``[num_freqs, d]`` frequencies for CFD (sampled *outside* the loss with
  :func:`sample_frequencies` from an explicit key), ignored (may be ``None``) by the
  other distances;
* ``cfg``: a :class:`DistanceConfig` (static, hashable).

Registered in :data:`DISTANCES`:

``cfd``
  Characteristic-function distance in NCFM's amplitude/phase form (SPEC §4)::

    Φ_X(t) = mean_j exp(i tᵀx_j)
    CFD = mean_t sqrt( α (|Φ_X(t)| − |Φ_X̃(t)|)²
                       + β · max(2(|Φ_X||Φ_X̃| − Re_X Re_X̃ − Im_X Im_X̃), 1e-12) )

  The phase term is ``|Φ_X − Φ_X̃|² − (|Φ_X| − |Φ_X̃|)² ≥ 0`` up to rounding; the clamp
  makes the square root differentiable everywhere (so CFD of identical sets is
  ``sqrt(β·1e-12) ≈ 7e-7``, not exactly 0).

  :func:`cfd_from_stats` is the same distance with the real side's characteristic
  function precomputed (:func:`class_characteristic_functions` evaluates it for every
  class over all its rows); ``distill``'s ``cfd_real="pooled"`` mode uses it.
``mmd``
  Squared MMD with a Gaussian kernel ``k(x, y) = exp(−‖x − y‖² / h)`` (biased V-statistic).
  ``h = 2 σ²`` for a fixed ``cfg.bandwidth = σ``; with ``bandwidth=None`` the median
  heuristic ``h = median of the pooled off-diagonal squared distances`` (held constant
  under differentiation).
``linear``
  Linear-kernel MMD = mean matching (DM): ``‖mean X − mean X̃‖²``.

References:
  Wang et al., "Dataset Distillation with Neural Characteristic Function: A Minmax
  Perspective" (NCFM), CVPR 2025. Zhao & Bilen, "Dataset Condensation with Distribution
  Matching" (DM), WACV 2023. Gretton et al., "A Kernel Two-Sample Test", JMLR 2012.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from mmdd_jax import keys as keys_lib

PHASE_CLAMP = 1e-12
AMP_EPS = 1e-24  # |Φ| = sqrt(max(Re² + Im², AMP_EPS)): finite gradient at Φ = 0


@dataclasses.dataclass(frozen=True)
class DistanceConfig:
  """Static options of the distances; each field is a config key ``loss.dist.<field>``
  (:func:`mmdd_jax.keys.field`)."""
  alpha: float = keys_lib.field(0.5, ">=0", "CFD amplitude weight α")
  beta: float = keys_lib.field(0.5, ">=0", "CFD phase weight β")
  num_freqs: int = keys_lib.field(4096, ">=1", "CFD frequencies per step (NCFM: 4096)")
  freq_scale: float = keys_lib.field(1.0, ">0", "CFD frequencies t ~ N(0, freq_scale² I)")
  bandwidth: float | None = keys_lib.field(None, ">0", "MMD Gaussian σ (None: median "
                                           "heuristic)", typ=float)


def sample_frequencies(key: jax.Array, num: int, dim: int, scale: float = 1.0,
                       dtype=jnp.float32) -> jax.Array:
  """``[num, dim]`` frequencies ``t ~ N(0, scale² I)`` for :func:`cfd`."""
  return scale * jax.random.normal(key, (num, dim), dtype)


def characteristic_function(x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Empirical characteristic function of the rows of ``x`` ``[n, d]`` at ``t``
  ``[k, d]``: returns ``(Re Φ, Im Φ)``, each ``[k]``."""
  arg = x @ t.T                                   # [n, k]
  return jnp.mean(jnp.cos(arg), axis=0), jnp.mean(jnp.sin(arg), axis=0)


def _amplitude(re: jax.Array, im: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.maximum(re * re + im * im, AMP_EPS))


def _terms_from_cf(real_cf: tuple[jax.Array, jax.Array], syn_cf: tuple[jax.Array, jax.Array]
                   ) -> tuple[jax.Array, jax.Array]:
  (re_x, im_x), (re_y, im_y) = real_cf, syn_cf
  amp_x, amp_y = _amplitude(re_x, im_x), _amplitude(re_y, im_y)
  amp = (amp_x - amp_y) ** 2
  phase = 2.0 * (amp_x * amp_y - re_x * re_y - im_x * im_y)
  return amp, jnp.maximum(phase, PHASE_CLAMP)


def cfd_terms(real: jax.Array, syn: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-frequency amplitude term ``(|Φ_X|−|Φ_X̃|)²`` and clamped phase term, each ``[k]``."""
  return _terms_from_cf(characteristic_function(real, t), characteristic_function(syn, t))


def _require_t(t, where: str) -> None:
  if t is None:
    raise ValueError(f"{where}: argument 't': expected frequencies [num_freqs, dim] from "
                     "sample_frequencies(key, ...), found None")


def cfd(real: jax.Array, syn: jax.Array, t: jax.Array | None,
        cfg: DistanceConfig = DistanceConfig()) -> jax.Array:
  """Characteristic-function distance (NCFM form); see the module docstring."""
  _require_t(t, "cfd")
  amp, phase = cfd_terms(real, syn, t)
  return jnp.mean(jnp.sqrt(cfg.alpha * amp + cfg.beta * phase))


def cfd_from_stats(real_cf: tuple[jax.Array, jax.Array], syn: jax.Array, t: jax.Array | None,
                   cfg: DistanceConfig = DistanceConfig()) -> jax.Array:
  """:func:`cfd` with the real side given as its characteristic function.

  ``real_cf = (Re Φ_X, Im Φ_X)``, each ``[k]``, evaluated on the same frequencies ``t``
  ``[k, d]`` (e.g. by :func:`class_characteristic_functions` over a whole class); only
  the synthetic side ``syn`` ``[m, d]`` is evaluated here, so a step costs ``m`` rows
  instead of ``n + m``. ``cfd(real, syn, t) == cfd_from_stats(characteristic_function(
  real, t), syn, t)`` up to rounding.
  """
  _require_t(t, "cfd_from_stats")
  amp, phase = _terms_from_cf(real_cf, characteristic_function(syn, t))
  return jnp.mean(jnp.sqrt(cfg.alpha * amp + cfg.beta * phase))


def class_characteristic_functions(x: jax.Array, mask: jax.Array, t: jax.Array,
                                   chunk: int = 256) -> tuple[jax.Array, jax.Array]:
  """Characteristic function of every class's valid rows, without gradient.

  Args:
    x: ``[C, N, d]`` rows per class (padded, as from ``init.group_by_class``).
    mask: ``[C, N]`` valid rows.
    t: ``[k, d]`` frequencies.
    chunk: rows per class evaluated at a time (bounds memory at ``C·chunk·k``).

  Returns:
    ``(Re Φ, Im Φ)``, each ``[C, k]``: the mean of ``exp(i tᵀx_j)`` over the valid rows
    of each class (a class without valid rows gives 0).
  """
  x, t = jax.lax.stop_gradient(x), jax.lax.stop_gradient(t)
  num_c, n, d = x.shape
  chunk = max(1, min(chunk, n))
  steps = -(-n // chunk)
  pad = steps * chunk - n
  w = jnp.pad(jnp.asarray(mask, t.dtype), ((0, 0), (0, pad)))
  x = jnp.pad(x.astype(t.dtype), ((0, 0), (0, pad), (0, 0)))
  xs = jnp.swapaxes(x.reshape(num_c, steps, chunk, d), 0, 1)      # [S, C, chunk, d]
  ws = jnp.swapaxes(w.reshape(num_c, steps, chunk), 0, 1)         # [S, C, chunk]

  def body(acc, xw):
    xc, wc = xw
    arg = jnp.einsum("cnd,kd->cnk", xc, t)
    return (acc[0] + jnp.einsum("cn,cnk->ck", wc, jnp.cos(arg)),
            acc[1] + jnp.einsum("cn,cnk->ck", wc, jnp.sin(arg))), None

  zero = jnp.zeros((num_c, t.shape[0]), t.dtype)
  (re, im), _ = jax.lax.scan(body, (zero, zero), (xs, ws))
  count = jnp.maximum(jnp.sum(w, 1), 1.0)[:, None]
  return re / count, im / count


def sq_dists(x: jax.Array, y: jax.Array) -> jax.Array:
  """``[n, m]`` squared Euclidean distances (clamped at 0)."""
  xx = jnp.sum(x * x, -1)[:, None]
  yy = jnp.sum(y * y, -1)[None, :]
  return jnp.maximum(xx + yy - 2.0 * x @ y.T, 0.0)


def median_bandwidth(real: jax.Array, syn: jax.Array) -> jax.Array:
  """Median of the off-diagonal pooled squared distances (no gradient)."""
  z = jax.lax.stop_gradient(jnp.concatenate([real, syn], 0))
  d = sq_dists(z, z)
  n = z.shape[0]
  off = jnp.where(jnp.eye(n, dtype=bool), jnp.nan, d)
  return jnp.maximum(jnp.nanmedian(off), 1e-12)


def mmd(real: jax.Array, syn: jax.Array, t: jax.Array | None = None,
        cfg: DistanceConfig = DistanceConfig()) -> jax.Array:
  """Squared Gaussian-kernel MMD (biased); ``t`` is ignored."""
  del t
  if cfg.bandwidth is None:
    h = median_bandwidth(real, syn)
  else:
    h = 2.0 * cfg.bandwidth ** 2
  kxx = jnp.exp(-sq_dists(real, real) / h).mean()
  kyy = jnp.exp(-sq_dists(syn, syn) / h).mean()
  kxy = jnp.exp(-sq_dists(real, syn) / h).mean()
  return kxx + kyy - 2.0 * kxy


def mean_matching(real: jax.Array, syn: jax.Array, t: jax.Array | None = None,
                  cfg: DistanceConfig = DistanceConfig()) -> jax.Array:
  """Linear-kernel MMD: ``‖mean(real) − mean(syn)‖²`` (DM); ``t`` and ``cfg`` ignored."""
  del t, cfg
  diff = jnp.mean(real, 0) - jnp.mean(syn, 0)
  return jnp.sum(diff * diff)


Distance = Callable[[jax.Array, jax.Array, "jax.Array | None", DistanceConfig], jax.Array]
DISTANCES: dict[str, Distance] = {"cfd": cfd, "mmd": mmd, "linear": mean_matching}


def get_distance(name: str) -> Distance:
  """Looks a distance up in :data:`DISTANCES`."""
  if name not in DISTANCES:
    raise ValueError(f"distance: expected one of {sorted(DISTANCES)}, found '{name}'")
  return DISTANCES[name]


def distance(real: jax.Array, syn: jax.Array, t: jax.Array | None,
             cfg: DistanceConfig = DistanceConfig(), name: str = "cfd") -> jax.Array:
  """Dispatches to the registered distance ``name`` (same signature for all)."""
  return get_distance(name)(real, syn, t, cfg)


def needs_frequencies(name: str) -> bool:
  return name == "cfd"
