"""The one loop driver: chunks of jitted steps between log and checkpoint boundaries.

:func:`run_loop` is used by the experts (one step = one epoch of every expert), HoPA's
distillation and ImageBindDC's distillation. The caller supplies ``advance(state,
start, n) -> (state, metrics)``, which runs ``n`` steps from step ``start`` without a
host sync (a ``lax.scan`` or a loop of donated jitted steps); the driver owns the rest:

* **resume**: the latest Orbax checkpoint in ``ckpt_dir`` is restored (into the
  shapes, dtypes and shardings of the initial ``state``) and the loop goes on from its
  step; records of this stage beyond that step are dropped from ``metrics.jsonl``
  first (:meth:`mmdd_jax.results.MetricsWriter.truncate`), so a kill between a log step
  and the next checkpoint never duplicates steps;
* **logging**: at every ``log_every``-th step (and the last) one host sync, one JSONL
  record ``{**tags, "step", **metrics}`` and the progress bar's postfix;
* **NaN/inf**: a non-finite metric at a log step raises :class:`FloatingPointError`
  naming the stage, the step and the quantity (nothing of that chunk is checkpointed);
* **checkpoints**: every ``ckpt_every``-th step and at the end (synchronous: the next
  chunk donates the state's buffers); ``keep`` checkpoints are kept (None = all, the
  experts' trajectories), ``save_initial`` also saves step 0; an OS fault while saving
  (disk full, read-only) is an ``OSError`` naming ``ckpt_dir`` (:func:`save`).

Resume is bit-identical when every random draw is a function of the step (the
callers' convention: ``fold_in(key, step)``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

from mmdd_jax import distributed, faults, results

Advance = Callable[[Any, int, int], tuple[Any, Mapping[str, Any]]]


def checkpoint_manager(directory: str, keep: int | None = 2) -> ocp.CheckpointManager:
  with faults.writing(directory):
    return ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=False))


def save(mngr: ocp.CheckpointManager, step: int, state, directory: str) -> None:
  """Saves ``state`` as ``step`` and waits for it. An OS fault (disk full, read-only,
  …; Orbax reports it from its worker threads as a TensorStore ``ValueError``) is
  raised as an ``OSError`` naming ``directory``; the failed step is left as Orbax's
  temporary directory, which a rerun ignores."""
  with faults.writing(directory):
    mngr.save(step, args=ocp.args.StandardSave(state))
    mngr.wait_until_finished()


def abstract(tree):
  """Shapes, dtypes and shardings of ``tree`` (the restore target)."""
  def leaf(a):
    sharding = getattr(a, "sharding", None)
    return jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=sharding)
  return jax.tree_util.tree_map(leaf, tree)


def restore(mngr: ocp.CheckpointManager, step: int, state, renamed: Mapping[str, str] | None = None):
  """Checkpoint ``step`` restored into the shapes, dtypes and shardings of ``state`` (a
  ``flax.struct`` dataclass or any pytree). ``renamed`` (old field name → new): a
  checkpoint written before a field of the state dataclass was renamed stores the old
  name; it is restored under that name and put back into the renamed field, so a run
  killed before the rename resumes after it (nothing written is lost)."""
  target = abstract(state)
  try:
    return mngr.restore(step, args=ocp.args.StandardRestore(target))
  except ValueError as e:
    if not (renamed and dataclasses.is_dataclass(state)):
      raise
    mismatch = e
  # The checkpoint's tree does not match: try the fields' old names (else the first error).
  fields = [f.name for f in dataclasses.fields(target)]
  new_to_old = {new: old for old, new in renamed.items()}
  legacy = {new_to_old.get(f, f): getattr(target, f) for f in fields}
  try:
    got = mngr.restore(step, args=ocp.args.StandardRestore(legacy))
  except ValueError:
    raise mismatch from None
  return type(state)(**{f: got[new_to_old.get(f, f)] for f in fields})


def boundaries(start: int, end: int, *everies: int | None) -> list[int]:
  """The steps in ``(start, end]`` where a chunk ends: multiples of each period, and ``end``."""
  pts = {end}
  for e in everies:
    if e:
      pts.update(range(e, end, e))
  return sorted(p for p in pts if p > start)


def check_finite(metrics: Mapping[str, Any], *, desc: str, step: int) -> dict:
  """Host copies of ``metrics``; :class:`FloatingPointError` naming the first
  non-finite quantity."""
  host = {k: np.asarray(v) for k, v in distributed.to_host(dict(metrics)).items()}
  for k, v in host.items():
    if np.issubdtype(v.dtype, np.number) and not np.all(np.isfinite(v)):
      raise FloatingPointError(f"{desc}: non-finite {k} at step {step}: {v.tolist()}")
  return {k: (v.item() if v.ndim == 0 else v.tolist()) for k, v in host.items()}


def run_loop(state, advance: Advance, total: int, *, ckpt_dir: str | None = None,
             ckpt_every: int | None = None, keep: int | None = 2, save_initial: bool = False,
             log_every: int | None = None, metrics: results.MetricsWriter | None = None,
             tags: Mapping[str, Any] | None = None, progress: bool = False,
             desc: str = "loop", postfix: tuple[str, ...] = ("loss",),
             stop_at: int | None = None, renamed: Mapping[str, str] | None = None):
  """Runs (or resumes) ``total`` steps of ``advance`` from ``state``; returns the state.

  Args:
    state: the initial state (used when ``ckpt_dir`` holds no checkpoint).
    advance: ``(state, start, n) -> (state, metrics of the last step)``.
    total: total steps.
    ckpt_dir: Orbax directory (None: no checkpoints, no resume).
    ckpt_every: steps between checkpoints (None/0: only at the end).
    keep: checkpoints kept (None: all).
    save_initial: also checkpoint step 0 (the experts' epoch-0 snapshot).
    log_every: steps between log records (None/0: only the last).
    metrics: the JSONL writer (records ``{**tags, "step", **metrics}``).
    tags: fields that identify this stage's records (e.g. ``{"stage": "distill"}``).
    progress: a tqdm bar labelled ``desc`` with the ``postfix`` metrics.
    stop_at: stop after this step (tests of killed runs).
    renamed: top-level state fields renamed since older checkpoints were written (old
      name → new name): a checkpoint with the old names is restored into them
      (:func:`restore`).
  """
  tags = dict(tags or {})
  start = 0
  mngr = checkpoint_manager(ckpt_dir, keep) if ckpt_dir else None
  if mngr is not None and mngr.latest_step() is not None:
    start = int(mngr.latest_step())
    if start > total:
      raise ValueError(f"{ckpt_dir}: field 'latest step': expected ≤ {total}, found {start} "
                       "(checkpoints of another config?)")
    state = restore(mngr, start, state, renamed)
  elif mngr is not None and save_initial:
    save(mngr, 0, state, ckpt_dir)
  if metrics is not None:
    metrics.truncate(tags, after_step=start)
  end = total if stop_at is None else min(stop_at, total)
  bar = None
  if progress and distributed.is_writer():
    from tqdm.auto import tqdm
    bar = tqdm(total=total, initial=start, desc=desc, leave=False)
  pos = start
  for b in boundaries(start, end, log_every, ckpt_every):
    state, m = advance(state, pos, b - pos)
    if bar is not None:
      bar.update(b - pos)
    pos = b
    if (log_every and b % log_every == 0) or b == end:
      host = check_finite(m, desc=desc, step=b)
      if metrics is not None:
        metrics.write(**tags, step=b, **host)
      if bar is not None:
        bar.set_postfix({k: f"{host[k]:.4g}" for k in postfix
                         if k in host and isinstance(host[k], float) and math.isfinite(host[k])})
    if mngr is not None and ((ckpt_every and b % ckpt_every == 0) or b == total):
      save(mngr, b, state, ckpt_dir)
  if bar is not None:
    bar.close()
  if mngr is not None:
    with faults.writing(ckpt_dir):
      mngr.wait_until_finished()
      mngr.close()
  return state
