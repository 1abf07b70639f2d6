"""Finished sweep rows carried between machines and sessions (``--archive`` of
``python -m experiments.hopa_sweep``; also the cells of ``python -m experiments.cross_arch``,
which are bound to store contents the same way).

A finished row is its workdir's binding (``config.json``: config, store content digest,
numerics version) and results (``results.json``, ``results.md``) plus the sweep's
``sweep_provenance.json`` (commit, date, minutes). Those few small files are all a
finished row needs to be *read* again: :func:`save` copies them from a sweep workdir into
an archive directory (committed under ``docs/sweep_rows/``), :func:`restore` copies them
back into a (new) sweep workdir where the row has not finished there. A restored row is
read only if it is still bound to the current config, store content and numerics
(:func:`mmdd_jax.workdir.finished_results`); otherwise the sweep computes it again. The
simulated stores are deterministic up to numpy's BLAS kernel: machines whose OpenBLAS
runs the reference kernel write the same manifest digest, so rows of a simulator are
read there; elsewhere the sweep stops with one line saying how to write the reference
bytes (:mod:`embed.simulate`, "Bytes across machines"; :func:`hopa_jax.sweep.check_data`). Checkpoints, experts and distilled
stores are not archived, but a distilled store's ``manifest.json`` is: its content
digest binds the row's common-view re-evaluation, so a finished re-evaluation is read; one
that has not finished waits until its row is recomputed (the sweep says so).
"""

from __future__ import annotations

import os
import shutil

FILES = ("config.json", "results.json", "results.md", "sweep_provenance.json",
         os.path.join("distilled", "manifest.json"))


def _finished_dirs(root: str):
  for d, _, names in os.walk(root):
    if "results.json" in names and "config.json" in names:
      yield os.path.relpath(d, root)


def save(workdir: str, archive: str) -> int:
  """Copies the files of every finished row of ``workdir`` into ``archive`` (same
  relative paths); returns the number of rows."""
  n = 0
  for rel in _finished_dirs(workdir):
    if "/experts_" in f"/{rel}" or rel.startswith(".") or ".old-" in rel:
      continue
    _copy_row(workdir, archive, rel)
    n += 1
  return n


def saver(workdir: str, archive: str):
  """A ``save(workdir, archive)`` to call after every row or cell: the writer process
  copies, every process waits for it (:func:`mmdd_jax.distributed.on_writer`)."""
  from mmdd_jax import distributed
  return lambda: distributed.on_writer(lambda: save(workdir, archive), f"archiving to {archive}")


def _copy_row(src_root: str, dst_root: str, rel: str) -> None:
  for f in FILES:
    src = os.path.join(src_root, rel, f)
    if os.path.exists(src):
      dst = os.path.join(dst_root, rel, f)
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      shutil.copy2(src, dst)


def restore(archive: str, workdir: str) -> int:
  """Copies archived rows into ``workdir`` where that row has no ``results.json`` and no
  ``config.json`` of its own (a row started here is never overwritten); returns the
  number of rows restored."""
  if not os.path.isdir(archive):
    return 0
  n = 0
  for rel in _finished_dirs(archive):
    dst = os.path.join(workdir, rel)
    if os.path.exists(os.path.join(dst, "results.json")) or os.path.exists(
        os.path.join(dst, "config.json")):
      continue
    _copy_row(archive, workdir, rel)
    n += 1
  return n
