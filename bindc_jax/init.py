"""Initialising the synthetic set per class: herding, random real, or noise.

Real data are grouped per class into padded arrays (:func:`group_by_class`):
``xs[m]`` ``[C, N_max, d]`` with a validity mask ``[C, N_max]``, so that every
per-class operation is one ``vmap`` over classes.

Herding (Welling 2009; iCaRL's exemplar selection): per class, greedily pick the
sample whose addition keeps the running mean of the picks closest to the class mean,
``i_k = argmin_i ‖μ − (S_{k−1} + x_i) / k‖`` over unpicked ``i``, on the
concatenation of all modalities' embeddings. When a class has fewer than ``ipc``
samples, picks repeat (the argmin then runs over already-picked samples).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mmdd_jax import rng
from mmdd_jax.heads import l2_normalize

_PICKED = 1e30


def group_by_class(xs: Mapping[str, np.ndarray], labels: np.ndarray, num_classes: int
                   ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
  """Pads each class's rows into ``{m: [C, N_max, d]}``; returns ``(xs_c, mask, idx)``
  where ``idx`` ``[C, N_max]`` are the original row indices (-1 for padding)."""
  labels = np.asarray(labels)
  counts = np.bincount(labels, minlength=num_classes)
  if counts.min() == 0:
    raise ValueError(f"labels: expected every class in [0, {num_classes}) to have a sample, "
                     f"found empty classes {np.nonzero(counts == 0)[0].tolist()}")
  n_max = int(counts.max())
  idx = np.full((num_classes, n_max), -1, np.int64)
  for c in range(num_classes):
    rows = np.nonzero(labels == c)[0]
    idx[c, :len(rows)] = rows
  mask = idx >= 0
  safe = np.where(mask, idx, 0)
  out = {m: np.where(mask[..., None], np.asarray(v)[safe], 0).astype(np.float32)
         for m, v in xs.items()}
  return out, mask, idx


def herding_indices(x: jax.Array, mask: jax.Array, ipc: int) -> jax.Array:
  """Greedy herding on one class: ``x`` ``[N, D]``, ``mask`` ``[N]`` → ``[ipc]`` indices."""
  maskf = mask.astype(x.dtype)
  mu = jnp.sum(x * maskf[:, None], 0) / jnp.maximum(jnp.sum(maskf), 1.0)

  def pick(carry, k):
    total, picked = carry
    cand = (total[None, :] + x) / (k + 1.0)             # running mean if i is added
    d = jnp.sum((cand - mu[None, :]) ** 2, -1)
    d = d + jnp.where(picked, _PICKED, 0.0)
    d = jnp.where(mask, d, jnp.inf)
    i = jnp.argmin(d)
    return (total + x[i], picked.at[i].set(True)), i

  init = (jnp.zeros(x.shape[1:], x.dtype), jnp.zeros(x.shape[:1], bool))
  _, idx = jax.lax.scan(pick, init, jnp.arange(ipc, dtype=x.dtype))
  return idx


def herding(xs_c: Mapping[str, jax.Array], mask: jax.Array, ipc: int) -> jax.Array:
  """Per-class herding (vmapped over classes) on the concatenated modalities (sorted).

  Returns ``[C, ipc]`` indices into the padded class axis of ``xs_c``."""
  cat = jnp.concatenate([jnp.asarray(xs_c[m]) for m in sorted(xs_c)], -1)
  return jax.jit(jax.vmap(herding_indices, in_axes=(0, 0, None)), static_argnums=2)(
      cat, jnp.asarray(mask), ipc)


def random_indices(key: jax.Array, mask: jax.Array, ipc: int) -> jax.Array:
  """``[C, ipc]`` random per-class indices, without replacement while possible."""
  mask = jnp.asarray(mask)

  def one(k, m):
    count = jnp.sum(m)
    perm = jnp.argsort(jax.random.uniform(k, m.shape) + 2.0 * (~m))
    return perm[jnp.arange(ipc) % count]

  keys = jax.random.split(key, mask.shape[0])
  return jax.vmap(one)(keys, mask)


def gather(xs_c: Mapping[str, jax.Array], idx: jax.Array) -> dict[str, jax.Array]:
  """``{m: xs_c[m][c, idx[c]]}`` → ``{m: [C, ipc, d]}``."""
  return {m: jnp.take_along_axis(jnp.asarray(v), idx[..., None], axis=1) for m, v in xs_c.items()}


def noise(key: jax.Array, num_classes: int, ipc: int, dims: Mapping[str, int]
          ) -> dict[str, jax.Array]:
  """Unit-norm Gaussian noise ``{m: [C, ipc, d]}``."""
  return {m: l2_normalize(jax.random.normal(rng.stream(key, m), (num_classes, ipc, d)))
          for m, d in dims.items()}


def initialize(kind: str, key: jax.Array, xs_c: Mapping[str, jax.Array], mask: jax.Array,
               ipc: int) -> dict[str, jax.Array]:
  """``kind`` in {"herding", "random", "noise"} → synthetic set ``{m: [C, ipc, d]}``."""
  if kind == "herding":
    return gather(xs_c, herding(xs_c, mask, ipc))
  if kind == "random":
    return gather(xs_c, random_indices(key, mask, ipc))
  if kind == "noise":
    dims = {m: int(v.shape[-1]) for m, v in xs_c.items()}
    return noise(key, int(mask.shape[0]), ipc, dims)
  raise ValueError(f"init: expected one of ['herding', 'noise', 'random'], found '{kind}'")
