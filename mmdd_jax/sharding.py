"""Data-parallel placement with ``jax.sharding`` (Mesh / NamedSharding, no pmap).

The project's parallel axes are leading batch axes of vmapped programs: experts
(HoPA), classes (ImageBindDC), evaluation runs. :func:`shard_leading` places such an
axis across all devices of a 1-D mesh when it divides evenly and replicates
otherwise; jit then partitions the vmapped computation accordingly (GSPMD). On one
device it is a no-op placement.

With several processes (:mod:`mmdd_jax.distributed`) the mesh is the *global* one,
over every process's devices (``jax.devices()``), and host arrays enter through
:func:`mmdd_jax.distributed.put` (each process hands over its own rows).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mmdd_jax import distributed

AXIS = "batch"


def mesh(devices=None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: every device of every process)."""
  devs = np.asarray(devices if devices is not None else jax.devices())
  return Mesh(devs.reshape(-1), (AXIS,))


def leading_sharding(m: Mesh, leading: int, ndim: int) -> NamedSharding:
  """Shards axis 0 over the mesh if ``leading`` divides evenly, else replicates."""
  if ndim >= 1 and leading % m.devices.size == 0:
    return NamedSharding(m, P(AXIS, *([None] * (ndim - 1))))
  return NamedSharding(m, P())


def shard_leading(tree, m: Mesh | None = None):
  """``device_put`` every leaf with its leading axis split across the mesh."""
  m = m if m is not None else mesh()

  def put(x):
    x = jax.numpy.asarray(x) if not isinstance(x, jax.Array) else x
    if x.ndim == 0 or jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return _put(x, NamedSharding(m, P()))
    return _put(x, leading_sharding(m, x.shape[0], x.ndim))

  return jax.tree_util.tree_map(put, tree)


def replicated_sharding(m: Mesh | None = None) -> NamedSharding:
  return NamedSharding(m if m is not None else mesh(), P())


def replicate(tree, m: Mesh | None = None):
  m = m if m is not None else mesh()
  return jax.tree_util.tree_map(lambda x: _put(x, NamedSharding(m, P())), tree)


def _put(x, s: NamedSharding):
  """``device_put`` in one process; across processes a global array built from each
  process's rows (typed keys and arrays already global are placed by ``device_put``)."""
  if (distributed.process_count() == 1 or s.is_fully_addressable
      or jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
      or (isinstance(x, jax.Array) and not x.is_fully_addressable)):
    return jax.device_put(x, s)
  return distributed.put(np.asarray(x), s)
