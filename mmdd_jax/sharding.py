"""Data-parallel placement with ``jax.sharding`` (Mesh / NamedSharding, no pmap).

The project's parallel axes are leading batch axes of vmapped programs: experts
(HoPA), classes (ImageBindDC), evaluation runs. :func:`shard_leading` places such an
axis across all devices of a 1-D mesh when it divides evenly and replicates
otherwise; jit then partitions the vmapped computation accordingly (GSPMD). On one
device it is a no-op placement.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "batch"


def mesh(devices=None) -> Mesh:
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
      return jax.device_put(x, NamedSharding(m, P()))
    return jax.device_put(x, leading_sharding(m, x.shape[0], x.ndim))

  return jax.tree_util.tree_map(put, tree)


def replicate(tree, m: Mesh | None = None):
  m = m if m is not None else mesh()
  return jax.tree_util.tree_map(lambda x: jax.device_put(x, NamedSharding(m, P())), tree)
