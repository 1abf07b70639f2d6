"""One randomness convention: a typed root key per run, named streams under it.

``root(seed)`` is ``jax.random.key(seed)``; every consumer takes its own stream,
``stream(key, "experts")``, a ``fold_in`` by a stable 31-bit hash of the name (no
magic numbers, no order dependence between consumers); a loop's step ``t`` uses
``fold_in(stream, t)``. State that Orbax checkpoints holds ``key_data(key)`` (raw
``uint32`` words) and wraps it back with :func:`wrap`.
"""

from __future__ import annotations

import zlib

import jax


def root(seed: int) -> jax.Array:
  return jax.random.key(int(seed))


def stream(key: jax.Array, name: str) -> jax.Array:
  """The key of the named stream ``name`` under ``key``."""
  return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def data(key: jax.Array) -> jax.Array:
  """Raw ``uint32`` words of a typed key (checkpointable); raw keys pass through."""
  return jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def wrap(raw: jax.Array) -> jax.Array:
  """A typed key from raw words (typed keys pass through)."""
  return raw if jax.dtypes.issubdtype(raw.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(raw)
