"""Fitting heads: one jitted program, ``lax.scan`` over epochs and steps.

:func:`make_fit` builds ``fit(params, data, key) -> (params, epoch_losses)`` for any
pure ``loss_fn(params, batch, idx)``; ``idx`` are the batch's row indices (so a loss
can slice per-instance targets such as a learned similarity matrix). Each epoch is a
fresh permutation from ``fold_in(key, epoch)``; the remainder that does not fill a
batch is dropped (every row is still seen across epochs). ``vmap`` over ``key`` runs
several seeds in one program.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

LossFn = Callable[[Any, Any, jax.Array], jax.Array]


def make_fit(loss_fn: LossFn, tx: optax.GradientTransformation, *, epochs: int,
             batch_size: int, n: int, track: Callable | None = None,
             track_every: int = 1) -> Callable:
  """Returns a jitted ``fit(params, data, key)`` for data with ``n`` rows.

  With ``track`` (a pure ``params -> scalar``), ``fit`` returns ``(params, epoch_losses,
  tracked)`` with ``track`` evaluated after every ``track_every``-th epoch and after the
  last (e.g. validation accuracy); the other epochs read ``-inf``."""
  bs = min(batch_size, n)
  steps = max(n // bs, 1)

  def fit(params, data, key):
    def step(carry, idx):
      params, opt_state = carry
      batch = jax.tree_util.tree_map(lambda a: a[idx], data)
      loss, grads = jax.value_and_grad(loss_fn)(params, batch, idx)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    def epoch(carry, e):
      perm = jax.random.permutation(jax.random.fold_in(key, e), n)[: steps * bs]
      carry, losses = jax.lax.scan(step, carry, perm.reshape(steps, bs))
      if track is None:
        return carry, losses.mean()
      due = ((e + 1) % track_every == 0) | (e == epochs - 1)
      value = jax.lax.cond(due, lambda p: jnp.asarray(track(p), jnp.float32),
                           lambda p: jnp.float32(-jnp.inf), carry[0])
      return carry, (losses.mean(), value)

    (params, _), out = jax.lax.scan(epoch, (params, tx.init(params)), jnp.arange(epochs))
    if track is None:
      return params, out
    return params, out[0], out[1]

  return jax.jit(fit)
