"""ImageBind-shaped projection heads as pure functions, Linen style: ``apply_head(params,
x)`` on plain parameter pytrees named as Flax Linen names them.

Each modality's head is ``LayerNorm → Linear (no bias) → L2
normalise``, as ImageBind's (SPEC §2). Parameters are plain pytrees,
``{modality: {"LayerNorm_0": {"scale", "bias"}, "Dense_0": {"kernel"[, "bias"]}}}``,
so that rollouts differentiate through them explicitly (``tests/test_heads.py`` checks
them against the equivalent Linen module).

Two more head architectures, for evaluating a set with heads its distillation never
used (the cross-architecture analysis, ``docs/analyses.md``):

* the two-layer MLP head ``LayerNorm → Linear + bias → GELU → Linear + bias → L2
  normalise``, params ``{"LayerNorm_0", "Dense_0", "Dense_1"}`` (:func:`init_mlp_heads`);
* ImageBind's head with a residual two-layer MLP branch,
  ``h = LayerNorm(x)``, ``y = h W + GELU(h R₀ + b₀) R₁ + b₁ → L2 normalise``, params
  ``{"LayerNorm_0", "Dense_0", "Residual_0", "Residual_1"}``
  (:func:`add_residual_mlp`; with ``R₁ = 0, b₁ = 0`` it equals the linear head).

The params' structure says which head a subtree is: :func:`apply_head` applies any.

A store's heads (:func:`pretrained_heads`), applied in blocks (:func:`embed_split`) and
scored by retrieval (:func:`evaluate_heads_retrieval`), serve every method and the
reference rows.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from embed import store as store_lib
from mmdd_jax import retrieval

LN_EPS = 1e-6
NORM_EPS = 1e-12


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """``x / ‖x‖`` with a safe gradient at 0."""
  sq = jnp.sum(x * x, axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, NORM_EPS))


def _lead(v: jax.Array, ndim: int) -> jax.Array:
  """``v`` ([k]) reshaped to broadcast against an ``ndim``-rank array explicitly."""
  return v.reshape((1,) * (ndim - 1) + (-1,))


def _head(ln: Mapping, dense: Mapping, x: jax.Array, normalize: bool) -> jax.Array:
  mu = jnp.mean(x, -1, keepdims=True)
  var = jnp.mean(jnp.square(x - mu), -1, keepdims=True)
  y = (x - mu) * jax.lax.rsqrt(var + LN_EPS)
  y = y * _lead(ln["scale"], y.ndim) + _lead(ln["bias"], y.ndim)
  y = y @ dense["kernel"]
  if "bias" in dense:
    y = y + _lead(dense["bias"], y.ndim)
  return l2_normalize(y) if normalize else y


def _mlp_head(params: Mapping, x: jax.Array, normalize: bool) -> jax.Array:
  h = _head(params["LayerNorm_0"], params["Dense_0"], x, normalize=False)
  y = jax.nn.gelu(h) @ params["Dense_1"]["kernel"]
  y = y + _lead(params["Dense_1"]["bias"], y.ndim)
  return l2_normalize(y) if normalize else y


def _residual_head(params: Mapping, x: jax.Array, normalize: bool) -> jax.Array:
  ln = params["LayerNorm_0"]
  mu = jnp.mean(x, -1, keepdims=True)
  var = jnp.mean(jnp.square(x - mu), -1, keepdims=True)
  h = (x - mu) * jax.lax.rsqrt(var + LN_EPS)
  h = h * _lead(ln["scale"], h.ndim) + _lead(ln["bias"], h.ndim)
  y = h @ params["Dense_0"]["kernel"]
  if "bias" in params["Dense_0"]:
    y = y + _lead(params["Dense_0"]["bias"], y.ndim)
  r0, r1 = params["Residual_0"], params["Residual_1"]
  u = jax.nn.gelu(h @ r0["kernel"] + _lead(r0["bias"], y.ndim))
  y = y + u @ r1["kernel"] + _lead(r1["bias"], y.ndim)
  return l2_normalize(y) if normalize else y


def apply_head(params: Mapping, x: jax.Array, *, normalize: bool = True) -> jax.Array:
  """Pure function: one modality's head on ``x`` ([N, d] or [d]); ``params`` is that
  modality's subtree (its structure, bias or not, ``Dense_1`` or not, says which
  head). For ImageBind's head equal to the Linen module ``LayerNorm → Dense → L2
  normalise`` applied with these params (``tests/test_heads.py``)."""
  if "Dense_1" in params:
    return _mlp_head(params, x, normalize)
  if "Residual_0" in params:
    return _residual_head(params, x, normalize)
  return _head(params["LayerNorm_0"], params["Dense_0"], x, normalize)


def apply_heads(params: Mapping, xs: Mapping[str, jax.Array], *,
                normalize: bool = True) -> dict[str, jax.Array]:
  """All modalities: ``{m: head_m(xs[m])}`` for the modalities in ``params``."""
  return {m: apply_head(params[m], xs[m], normalize=normalize) for m in params}


# The key of a random head's kernel, ``fold_in(key_m, KERNEL_STREAM)``: what Flax Linen's
# ``Module.init`` derived for a module's second parameter (the first 4 bytes of the
# sha1 of its counter, 2) when these heads were initialised through a Linen module;
# kept so that every random head drawn before stays the same (tests/test_heads.py).
KERNEL_STREAM = int.from_bytes(hashlib.sha1(bytes([2])).digest()[:4], "big")


def init_heads(key: jax.Array, feature_dims: Mapping[str, int], out_dim: int = 1024) -> dict:
  """Random ImageBind heads, bias-free as ImageBind's (checked against its model code;
  SPEC §2's depth bias is not in the released model): LayerNorm identity, lecun-normal
  kernels; modality ``i`` (in name order) draws from ``fold_in(key, i)``."""
  init = jax.nn.initializers.lecun_normal()
  params = {}
  for i, (m, d) in enumerate(sorted(feature_dims.items())):
    k = jax.random.fold_in(jax.random.fold_in(key, i), KERNEL_STREAM)
    params[m] = {"LayerNorm_0": {"scale": jnp.ones((d,)), "bias": jnp.zeros((d,))},
                 "Dense_0": {"kernel": init(k, (d, out_dim))}}
  return params


def init_mlp_heads(key: jax.Array, feature_dims: Mapping[str, int], out_dim: int = 1024,
                   hidden: int | None = None) -> dict:
  """Random two-layer MLP heads (module docstring): LayerNorm identity, lecun-normal
  kernels, zero biases; ``hidden`` (default ``out_dim``) units."""
  hidden = out_dim if hidden is None else hidden
  init = jax.nn.initializers.lecun_normal()
  params = {}
  for i, (m, d) in enumerate(sorted(feature_dims.items())):
    k0, k1 = jax.random.split(jax.random.fold_in(key, i))
    params[m] = {"LayerNorm_0": {"scale": jnp.ones((d,)), "bias": jnp.zeros((d,))},
                 "Dense_0": {"kernel": init(k0, (d, hidden)), "bias": jnp.zeros((hidden,))},
                 "Dense_1": {"kernel": init(k1, (hidden, out_dim)), "bias": jnp.zeros((out_dim,))}}
  return params


def add_residual_mlp(key: jax.Array, params: Mapping, hidden: int | None = None) -> dict:
  """Linear heads ``params`` plus a residual two-layer MLP branch each (module
  docstring): ``R₀`` lecun-normal, ``b₀ = 0``, ``R₁ = 0``, ``b₁ = 0``, so the result
  starts equal to ``params``; ``hidden`` (default the output dim) units."""
  init = jax.nn.initializers.lecun_normal()
  out = {}
  for i, m in enumerate(sorted(params)):
    p = params[m]
    d, e = p["Dense_0"]["kernel"].shape
    h = e if hidden is None else hidden
    out[m] = {**p, "Residual_0": {"kernel": init(jax.random.fold_in(key, i), (d, h)),
                                  "bias": jnp.zeros((h,))},
              "Residual_1": {"kernel": jnp.zeros((h, e)), "bias": jnp.zeros((e,))}}
  return {m: out[m] for m in params}


def head_dims(params: Mapping) -> tuple[dict[str, int], int]:
  """``({modality: input dim}, output dim)`` of a params pytree (either head)."""
  dims = {m: int(p["LayerNorm_0"]["scale"].shape[0]) for m, p in params.items()}
  last = [p["Dense_1" if "Dense_1" in p else "Dense_0"]["kernel"].shape[1] for p in params.values()]
  return dims, int(last[0])


def heads_from_npz(arrays: Mapping[str, np.ndarray], modalities=None) -> dict:
  """Builds the params pytree from ``heads.npz`` keys ``<m>/ln_scale``, ``<m>/ln_bias``,
  ``<m>/kernel`` ``[d_in, out]`` and optional ``<m>/bias``."""
  mods = sorted({k.split("/")[0] for k in arrays}) if modalities is None else list(modalities)
  params = {}
  for m in mods:
    for f in ("ln_scale", "ln_bias", "kernel"):
      if f"{m}/{f}" not in arrays:
        raise KeyError(f"heads.npz: field '{m}/{f}': expected an array, found nothing "
                       f"(available: {sorted(arrays)})")
    dense = {"kernel": jnp.asarray(arrays[f"{m}/kernel"], jnp.float32)}
    if f"{m}/bias" in arrays:
      dense["bias"] = jnp.asarray(arrays[f"{m}/bias"], jnp.float32)
    params[m] = {"LayerNorm_0": {"scale": jnp.asarray(arrays[f"{m}/ln_scale"], jnp.float32),
                                 "bias": jnp.asarray(arrays[f"{m}/ln_bias"], jnp.float32)},
                 "Dense_0": dense}
  return params


def heads_to_npz(params: Mapping) -> dict[str, np.ndarray]:
  out = {}
  for m, p in params.items():
    if "Dense_1" in p or "Residual_0" in p:
      raise ValueError(f"heads_to_npz: modality '{m}': expected ImageBind's linear head, "
                       "found an MLP head (heads.npz holds linear heads only)")
    out[f"{m}/ln_scale"] = np.asarray(p["LayerNorm_0"]["scale"])
    out[f"{m}/ln_bias"] = np.asarray(p["LayerNorm_0"]["bias"])
    out[f"{m}/kernel"] = np.asarray(p["Dense_0"]["kernel"])
    if "bias" in p["Dense_0"]:
      out[f"{m}/bias"] = np.asarray(p["Dense_0"]["bias"])
  return out


def perturb(key: jax.Array, params, scale: float):
  """Adds ``N(0, scale²)`` noise to every leaf (per-expert initial noise)."""
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(
      tree, [l + scale * jax.random.normal(k, l.shape, l.dtype) for l, k in zip(leaves, keys)])


# ------------------------------------------------------------------ a store's heads


def pretrained_heads(st: store_lib.Store, modalities=None) -> dict:
  """The store's ``heads.npz`` as a params pytree (``modalities``: default the store's);
  a store without one stops with one line."""
  arrays = st.heads()
  if arrays is None:
    raise store_lib.StoreError(f"{st.root}/heads.npz: field 'heads': expected the encoder's "
                               "projection heads, found no file")
  return heads_from_npz(arrays, modalities or st.modalities)


def embed_split(params: Mapping, xs: Mapping[str, np.ndarray], batch: int = 4096) -> dict:
  """Applies heads in blocks; returns NumPy embeddings."""
  f = jax.jit(apply_heads)
  n = len(next(iter(xs.values())))
  outs = [f(params, {m: jnp.asarray(v[s:s + batch]) for m, v in xs.items()}) for s in range(0, n, batch)]
  return {m: np.concatenate([np.asarray(o[m]) for o in outs]) for m in params}


def evaluate_heads_retrieval(params: Mapping, test_xs: Mapping[str, np.ndarray]):
  """:func:`mmdd_jax.retrieval.retrieval_metrics` of the heads' embeddings of ``test_xs``."""
  return retrieval.retrieval_metrics(embed_split(params, test_xs))
