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


def make_epoch(loss_fn: LossFn, tx: optax.GradientTransformation, *, batch_size: int,
               n: int) -> Callable:
  """The one epoch of the project (not jitted; callers vmap / scan / jit it):
  ``epoch(params, opt_state, data, key, e, lr=1.0) -> (params, opt_state, mean_loss)``.

  Epoch ``e`` is a fresh permutation of the ``n`` rows from ``fold_in(key, e)`` in
  batches of ``min(batch_size, n)`` (the remainder that does not fill a batch is
  dropped); each step applies ``params + lr · tx.update(grads)``. ``lr`` is a
  (traced) argument so that runs with different step sizes share one program: give
  ``tx`` unit step size (``optax.sgd(1.0)``) and the step size as ``lr``, or the
  step size inside ``tx`` and ``lr=1``. ``loss_fn(params, batch, idx)``."""
  bs = min(batch_size, n)
  steps = max(n // bs, 1)

  def epoch(params, opt_state, data, key, e, lr=1.0):
    perm = jax.random.permutation(jax.random.fold_in(key, e), n)[: steps * bs]

    def step(carry, idx):
      params, opt_state = carry
      batch = jax.tree_util.tree_map(lambda a: a[idx], data)
      loss, grads = jax.value_and_grad(loss_fn)(params, batch, idx)
      updates, opt_state = tx.update(grads, opt_state, params)
      params = jax.tree_util.tree_map(lambda p, u: p + lr * u, params, updates)
      return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state),
                                               perm.reshape(steps, bs))
    return params, opt_state, losses.mean()

  return epoch


def make_fit(loss_fn: LossFn, tx: optax.GradientTransformation, *, epochs: int,
             batch_size: int, n: int, track: Callable | None = None,
             track_every: int = 1) -> Callable:
  """Returns a jitted ``fit(params, data, key)`` for data with ``n`` rows.

  With ``track`` (a pure ``params -> scalar``), ``fit`` returns ``(params, epoch_losses,
  tracked)`` with ``track`` evaluated after every ``track_every``-th epoch and after the
  last (e.g. validation accuracy); the other epochs read ``-inf``."""
  one_epoch = make_epoch(loss_fn, tx, batch_size=batch_size, n=n)

  def fit(params, data, key):
    def epoch(carry, e):
      params, opt_state, loss = one_epoch(*carry, data, key, e)
      carry = (params, opt_state)
      if track is None:
        return carry, loss
      due = ((e + 1) % track_every == 0) | (e == epochs - 1)
      value = jax.lax.cond(due, lambda p: jnp.asarray(track(p), jnp.float32),
                           lambda p: jnp.float32(-jnp.inf), carry[0])
      return carry, (loss, value)

    (params, _), out = jax.lax.scan(epoch, (params, tx.init(params)), jnp.arange(epochs))
    if track is None:
      return params, out
    return params, out[0], out[1]

  return jax.jit(fit)
