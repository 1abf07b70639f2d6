"""Run integrity: a workdir is bound to the config that made it, and one run at a time.

:func:`open_workdir` is the one entry every binary's ``train_and_evaluate`` goes through:

* **Binding.** ``<workdir>/config.json`` holds the config of the run that made the
  workdir and the *data* it read (``{"store": <content digest>, …}``:
  :func:`store_digest` of every store the run reads, so a store whose content changed
  is another run even under the same path), with the fingerprint (sha256) of both: the
  result-affecting config keys (every key but the bookkeeping ones in
  :data:`BOOKKEEPING`: progress bars, log and checkpoint periods, hash verification)
  and the data digests. A rerun with the same fingerprint resumes (checkpoints, cached
  stages); a rerun with another one stops *before touching anything* with one line
  naming the workdir and what differs (config keys, or which store's content), unless
  ``fresh=True``: then the old contents are moved aside to ``<workdir>.old-<UTC time>/``
  (never deleted) and the run starts over.
* **Lock.** An exclusive ``flock`` on ``<workdir>/.lock`` for the whole run: a second
  concurrent run in the same workdir stops with one line (the lock dies with its
  process, so a killed run never leaves a stale lock). Directories shared between
  runs (experts) use :func:`shared_lock`, which *waits* for the holder instead.
* Files are written atomically with the usual umask modes (:mod:`embed.store`).
* **Several processes** (:mod:`mmdd_jax.distributed`): every process checks the
  binding; only the writer (process 0) takes the lock, moves old contents aside and
  writes ``config.json``, the others wait for it (a refusal there reaches every process
  as the same one line). Locks of shared directories are likewise the writer's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from typing import Any, Iterator, Mapping

from mmdd_jax import distributed, results

# Leaf names that never change a result (only how a run reports or saves itself).
BOOKKEEPING = frozenset({"progress", "log_every", "ckpt_every", "check_hashes"})
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"


class RunError(RuntimeError):
  """A run refused to start (one line: the workdir and why)."""


def flatten(config: Any, prefix: str = "") -> dict:
  """``{"a.b.c": leaf}`` of a (nested) config, JSON-normalised, under the recorded key
  names (:data:`RENAMED`)."""
  d = results.jsonable(config) if prefix else recorded(config)
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, Mapping):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


# Config keys renamed after workdirs existed, so that both methods use one name (issue
# 21): per family (a top-level key only its configs have) the new dotted key → the old
# one. The fingerprint, config.json and results.json keep the OLD names (:func:`recorded`),
# so a workdir made before the rename (a finished sweep row) stays bound to its config.
RENAMED = {"ipc": {"val_fraction": "val_frac", "eval.batch_size": "eval.batch"}}   # ImageBindDC


def recorded(config: Any) -> Any:
  """``config`` as workdirs record it: JSON-normalised, under the old names of
  :data:`RENAMED` (a config already under them is returned as it is)."""
  d = results.jsonable(config)
  for marker, names in RENAMED.items():
    if not (isinstance(d, dict) and marker in d):
      continue
    for new, old in names.items():
      *parents, leaf = new.split(".")
      node = d
      for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
      if not isinstance(node, dict) or leaf not in node:
        continue
      value = node.pop(leaf)
      *oparents, oleaf = old.split(".")
      onode = d
      for p in oparents:
        onode = onode.setdefault(p, {})
      onode[oleaf] = value
  return d


# Keys added after workdirs existed, at the value that reproduces the code before them
# exactly: left out of the binding at that value, so older workdirs (and their
# fingerprints) stay valid; any other value is bound as usual.
IMPLICIT_DEFAULTS = {"distill.trajectories_per_iter": 1, "targets": "store"}


def result_keys(config: Any) -> dict:
  """The flattened keys of ``config`` that can change a result (a key of
  :data:`IMPLICIT_DEFAULTS` only away from its default)."""
  return {k: v for k, v in flatten(config).items()
          if k.rsplit(".", 1)[-1] not in BOOKKEEPING
          and not (k in IMPLICIT_DEFAULTS and v == IMPLICIT_DEFAULTS[k])}


def fingerprint(config: Any, data: Mapping | None = None) -> str:
  """sha256 of the binding: the result keys, the data digests and the numerics version."""
  blob = json.dumps(binding(config, _with_numerics(data)), sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(blob.encode()).hexdigest()


# The version of the numerics: bumped by a change that moves a result *under an
# unchanged config* (a fixed formula, a new default inside the code). Every workdir and
# experts directory is bound to it, so results of older numerics are refused (one line)
# instead of being read as finished. History: "2026-12-01" — sgd-mode raw-η update,
# sign-free Rank-2 proxy (issue 19).
NUMERICS = "2026-12-01"


def _with_numerics(data: Mapping | None) -> dict:
  return {"numerics": NUMERICS, **dict(data or {})}


def store_digest(st_or_root: Any) -> str:
  """The content digest of a store (:func:`embed.store.content_digest`): sha256 of its
  manifest (canonical JSON) without the creation command. The manifest lists every
  file's sha256 (which ``embed.store.validate`` checks), so the digest covers every
  array, id, label, caption and ``heads.npz`` of the store, and its metadata."""
  from embed.store import content_digest
  return content_digest(getattr(st_or_root, "root", st_or_root))


def binding(config: Any, data: Mapping | None = None) -> dict:
  """What a workdir is bound to: the result-affecting config keys and the data."""
  return {"config": result_keys(config), "data": dict(data or {})}


def differing_keys(old: Mapping, new: Mapping) -> list[str]:
  a, b = result_keys(old), result_keys(new)
  return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def _describe_diff(old: Mapping, new: Mapping, keys: list[str], limit: int = 6) -> str:
  a, b = result_keys(old), result_keys(new)
  parts = [f"{k}: {a.get(k, '<absent>')!r} → {b.get(k, '<absent>')!r}" for k in keys[:limit]]
  if len(keys) > limit:
    parts.append(f"… {len(keys) - limit} more")
  return "; ".join(parts)


def read_record(workdir: str) -> dict | None:
  """``config.json`` as ``{"config", "data"}`` (None when absent); a record written
  before data binding existed has ``data`` None."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    try:
      d = json.load(f)
    except ValueError as e:   # JSONDecodeError, or bytes that are not UTF-8
      raise RunError(f"{path}: expected a JSON config written by a run, found a parse error "
                     f"({e}); pass --fresh to start over (the old contents are moved aside)") from None
  if isinstance(d, dict) and "fingerprint" in d:
    return {"config": d.get("config"), "data": d.get("data")}
  return {"config": d, "data": None}


def read_config(workdir: str) -> dict | None:
  rec = read_record(workdir)
  return None if rec is None else rec["config"]


def _short(v: Any) -> str:
  return v[:19] + "…" if isinstance(v, str) and v.startswith("sha256:") else repr(v)


def differences(workdir: str, config: Any, data: Mapping | None = None) -> str | None:
  """What differs between the run in ``workdir`` and ``(config, data)`` (one phrase),
  or None when it is the same run (or ``workdir`` holds none)."""
  rec = read_record(workdir)
  if rec is None:
    return None
  old, new = rec["config"], recorded(config)
  keys = differing_keys(old, new)
  if keys:
    return f"another config (differing keys: {_describe_diff(old, new, keys)})"
  new_data = _with_numerics(data)
  if rec["data"] is None:
    return ("data not recorded (made by a version that did not bind the store's content; "
            "expected " + ", ".join(f"{k} {_short(v)}" for k, v in sorted(new_data.items())) + ")")
  old_data = rec["data"]
  dk = sorted(k for k in set(old_data) | set(new_data) if old_data.get(k) != new_data.get(k))
  if "numerics" in dk:
    return (f"older numerics (made by code whose results differ: numerics "
            f"{old_data.get('numerics', '<absent>')!r} → {NUMERICS!r})")
  if dk:
    return ("other data (content changed: " + "; ".join(
        f"{k}: {_short(old_data.get(k, '<absent>'))} → {_short(new_data.get(k, '<absent>'))}"
        for k in dk) + ")")
  return None


def check_binding(workdir: str, config: Any, data: Mapping | None = None) -> None:
  """Raises :class:`RunError` when ``workdir`` holds a run of another config or of
  other data."""
  why = differences(workdir, config, data)
  if why:
    raise RunError(
        f"{workdir}: holds a run of {why}; pass --fresh to start over (the old contents "
        "are moved aside, not deleted) or use another workdir")


def finished_results(workdir: str, config: Any, data: Mapping | None = None,
                     title: str = "") -> list[dict] | None:
  """The rows of ``results.json`` when ``workdir`` holds a *finished* run of exactly
  ``(config, data)``, else None. A missing ``results.md`` (a kill between the two
  files) is derived from ``results.json`` here."""
  if not os.path.exists(os.path.join(workdir, "results.json")):
    return None
  if differences(workdir, config, data) is not None or read_record(workdir) is None:
    return None
  return results.read_results(workdir, title=title)


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


_HELD: dict[str, int] = {}   # shared_lock paths this process holds → depth


@contextlib.contextmanager
def shared_lock(directory: str, what: str = "in use") -> Iterator[None]:
  """Holds an exclusive lock on ``<directory>/.lock``, *waiting* for another process
  that holds it (printing one line saying so) — for directories several runs share,
  such as an experts directory: the second run waits for the first to finish writing
  and then reads what it wrote. Re-entrant within a process. The lock dies with its
  process (a killed holder leaves nothing stale)."""
  path = os.path.abspath(os.path.join(directory, LOCK_FILE))
  if _HELD.get(path):
    _HELD[path] += 1
    try:
      yield
    finally:
      _HELD[path] -= 1
    return

  def busy(holder):
    import sys
    print(f"{directory}: {what} by another run (pid {holder}); waiting for it to finish",
          file=sys.stderr, flush=True)
    return True   # then wait

  def take():
    os.makedirs(directory, exist_ok=True)
    stack.enter_context(_flock(path, busy))

  with contextlib.ExitStack() as stack:
    # several processes: the writer holds the lock, the others wait until it does
    distributed.on_writer(take, f"locking {directory}")
    _HELD[path] = 1
    try:
      yield
    finally:
      _HELD.pop(path, None)


@contextlib.contextmanager
def _flock(path: str, busy) -> Iterator[None]:
  """An exclusive ``flock`` on ``path`` holding this pid; when another process holds it,
  ``busy(holder pid)`` raises, or returns True to wait for it."""
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      busy(os.pread(fd, 64, 0).decode(errors="replace").strip() or "?")
      fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield
  finally:
    os.close(fd)   # releases the flock


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds an exclusive lock on ``workdir`` (one run at a time)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)

  def busy(holder):
    raise RunError(f"{workdir}: another run is using this workdir (pid {holder}, lock "
                   f"{path}); wait for it to finish or use another workdir")

  with _flock(path, busy):
    yield


@contextlib.contextmanager
def open_workdir(workdir: str, config: Any, *, data: Mapping | None = None,
                 fresh: bool = False) -> Iterator[str]:
  """Binds ``workdir`` to ``config`` and ``data`` (``{name: content digest}`` of the
  stores the run reads, :func:`store_digest`) and locks it for the block.

  Order: the binding check (nothing is created when it fails), the lock, ``fresh``'s
  move-aside (printed), then ``config.json`` (config, data, fingerprint) is written.
  Yields ``workdir``.

  With several processes (:mod:`mmdd_jax.distributed`) the lock, the move-aside and
  ``config.json`` are the writer's; every process leaves the block together.
  """
  if not workdir:
    raise RunError("--workdir: expected an output directory, found none")
  if not fresh:
    check_binding(workdir, config, data)

  def prepare():
    if fresh:
      moved = move_aside(workdir)
      if moved:
        print(f"{workdir}: --fresh: the previous contents were moved to {moved}")
    else:
      check_binding(workdir, config, data)   # again under the lock
    from embed.store import atomic_write_json
    bound = _with_numerics(data)
    atomic_write_json(os.path.join(workdir, CONFIG_FILE),
                      {"fingerprint": fingerprint(config, bound),
                       "config": recorded(config), "data": bound})

  with contextlib.ExitStack() as stack:
    distributed.on_writer(lambda: stack.enter_context(lock(workdir)), f"locking {workdir}")
    distributed.on_writer(prepare, f"binding {workdir}")
    yield workdir
    distributed.barrier(f"leaving {workdir}")
