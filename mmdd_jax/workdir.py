"""Run integrity: a workdir is bound to the config that made it, and one run at a time.

:func:`open_workdir` is the one entry every binary's ``train_and_evaluate`` goes through:

* **Binding.** ``<workdir>/config.json`` holds the config of the run that made the
  workdir, with the fingerprint (sha256) of its result-affecting keys (every key but
  the bookkeeping ones in :data:`BOOKKEEPING`: progress bars, log and checkpoint
  periods, hash verification). A rerun with the same fingerprint resumes (checkpoints, cached stages); a
  rerun with another one stops *before touching anything* with one line naming the
  workdir and the keys that differ, unless ``fresh=True``: then the old contents are
  moved aside to ``<workdir>.old-<UTC time>/`` (never deleted) and the run starts over.
* **Lock.** An exclusive ``flock`` on ``<workdir>/.lock`` for the whole run: a second
  concurrent run in the same workdir stops with one line (the lock dies with its
  process, so a killed run never leaves a stale lock).
* Files are written atomically with the usual umask modes (:mod:`embed.store`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from typing import Any, Iterator, Mapping

from mmdd_jax import results

# Leaf names that never change a result (only how a run reports or saves itself).
BOOKKEEPING = frozenset({"progress", "log_every", "ckpt_every", "check_hashes"})
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"


class RunError(RuntimeError):
  """A run refused to start (one line: the workdir and why)."""


def flatten(config: Any, prefix: str = "") -> dict:
  """``{"a.b.c": leaf}`` of a (nested) config, JSON-normalised."""
  d = results.jsonable(config)
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, Mapping):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


def result_keys(config: Any) -> dict:
  """The flattened keys of ``config`` that can change a result."""
  return {k: v for k, v in flatten(config).items() if k.rsplit(".", 1)[-1] not in BOOKKEEPING}


def fingerprint(config: Any) -> str:
  blob = json.dumps(result_keys(config), sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(blob.encode()).hexdigest()


def differing_keys(old: Mapping, new: Mapping) -> list[str]:
  a, b = result_keys(old), result_keys(new)
  return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def _describe_diff(old: Mapping, new: Mapping, keys: list[str], limit: int = 6) -> str:
  a, b = result_keys(old), result_keys(new)
  parts = [f"{k}: {a.get(k, '<absent>')!r} → {b.get(k, '<absent>')!r}" for k in keys[:limit]]
  if len(keys) > limit:
    parts.append(f"… {len(keys) - limit} more")
  return "; ".join(parts)


def read_config(workdir: str) -> dict | None:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    try:
      d = json.load(f)
    except ValueError as e:   # JSONDecodeError, or bytes that are not UTF-8
      raise RunError(f"{path}: expected a JSON config written by a run, found a parse error "
                     f"({e}); pass --fresh to start over (the old contents are moved aside)") from None
  return d.get("config", d) if isinstance(d, dict) and "fingerprint" in d else d


def check_config(workdir: str, config: Any) -> None:
  """Raises :class:`RunError` when ``workdir`` holds a run of another config."""
  old = read_config(workdir)
  if old is None:
    return
  new = results.jsonable(config)
  keys = differing_keys(old, new)
  if keys:
    raise RunError(
        f"{workdir}: holds a run of another config (differing keys: "
        f"{_describe_diff(old, new, keys)}); pass --fresh to start over (the old contents "
        "are moved aside, not deleted) or use another workdir")


def _has_contents(workdir: str) -> bool:
  return os.path.isdir(workdir) and any(n != LOCK_FILE for n in os.listdir(workdir))


def move_aside(workdir: str) -> str | None:
  """Moves every entry of ``workdir`` (but the lock) into ``<workdir>.old-<UTC time>``;
  returns that directory (None when there was nothing to move)."""
  if not _has_contents(workdir):
    return None
  stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
  dest = f"{os.path.normpath(workdir)}.old-{stamp}"
  i = 1
  while os.path.exists(dest):
    dest = f"{os.path.normpath(workdir)}.old-{stamp}-{i}"
    i += 1
  os.makedirs(dest)
  for name in os.listdir(workdir):
    if name != LOCK_FILE:
      os.rename(os.path.join(workdir, name), os.path.join(dest, name))
  return dest


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds an exclusive lock on ``workdir`` (one run at a time)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
      raise RunError(f"{workdir}: another run is using this workdir (pid {holder}, lock "
                     f"{path}); wait for it to finish or use another workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield
  finally:
    os.close(fd)   # releases the flock


@contextlib.contextmanager
def open_workdir(workdir: str, config: Any, *, fresh: bool = False) -> Iterator[str]:
  """Binds ``workdir`` to ``config`` and locks it for the duration of the block.

  Order: the config check (nothing is created when it fails), the lock, ``fresh``'s
  move-aside (printed), then ``config.json`` (config + fingerprint) is written.
  Yields ``workdir``.
  """
  if not workdir:
    raise RunError("--workdir: expected an output directory, found none")
  if not fresh:
    check_config(workdir, config)
  with lock(workdir):
    if fresh:
      moved = move_aside(workdir)
      if moved:
        print(f"{workdir}: --fresh: the previous contents were moved to {moved}")
    else:
      check_config(workdir, config)   # again under the lock
    from embed.store import atomic_write_json
    atomic_write_json(os.path.join(workdir, CONFIG_FILE),
                      {"fingerprint": fingerprint(config), "config": results.jsonable(config)})
    yield workdir
