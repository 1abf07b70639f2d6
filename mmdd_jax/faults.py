"""Faults end in one line: OS errors (disk full, read-only, permission, a file where a
directory belongs …) and interruptions, as :func:`mmdd_jax.cli.run` reports them.

* :func:`os_error` finds the OS error behind an exception, wherever it is: the
  exception itself, its ``__cause__``/``__context__`` chain, or a TensorStore message
  (Orbax's checkpoint writes end in ``ValueError: RESOURCE_EXHAUSTED: … No space left
  on device [os_error_code='28']``);
* :func:`describe` turns it into one line naming the path (and, for a path through a
  regular file, the file in the way) and what to do;
* :func:`writing` re-raises any such error inside its block as an ``OSError`` naming
  the directory being written (for writers whose errors name a temporary file or
  nothing, e.g. Orbax's);
* :class:`QuietBackground` holds back what background threads print while a run fails
  (Orbax logs every failed write of its worker threads and, at shutdown, prints
  ``RuntimeError: Event loop is closed`` as "unraisable" exceptions): a run that ends
  in a one-line fault prints only that line; any other ending replays them.
"""

from __future__ import annotations

import _thread
import contextlib
import errno as errno_lib
import os
import re
import signal
import sys
import threading
import traceback
from typing import Iterator

INTERRUPTED_EXIT = 130   # 128 + SIGINT, the shell's convention

TENSORSTORE_OS_ERROR = re.compile(r"os_error_code='?(\d+)")
_TS_PATH = re.compile(r'(?:local file|Failed writing:|Error (?:writing|opening)[^"]*) "(/[^"]+)"')
_ORBAX_TMP = ".orbax-checkpoint-tmp"


def chain(e: BaseException) -> Iterator[BaseException]:
  """``e``, then its causes and contexts (each once, depth first)."""
  seen, todo = set(), [e]
  while todo:
    x = todo.pop(0)
    if x is None or id(x) in seen:
      continue
    seen.add(id(x))
    yield x
    todo[:0] = [x.__cause__, x.__context__]


def _tensorstore_path(msg: str) -> str | None:
  m = _TS_PATH.search(msg)
  if not m:
    return None
  path = m.group(1).rstrip("/")
  parts = path.split(os.sep)
  for i, p in enumerate(parts):
    if p.endswith(_ORBAX_TMP):        # <ckpt_dir>/<step>.orbax-checkpoint-tmp/…
      return os.sep.join(parts[:i]) or os.sep
  return path


def os_error(e: BaseException) -> OSError | None:
  """The OS error behind ``e`` (an ``OSError`` with an errno in its chain, else one
  rebuilt from a TensorStore message's ``os_error_code``), naming a file when any
  error of the chain does; None when there is none (a bug keeps its traceback)."""
  errs = [x for x in chain(e) if isinstance(x, OSError) and x.errno is not None]
  if errs:
    first = errs[0]
    name = next((x.filename for x in errs if x.filename), None)
    if first.filename or name is None:
      return first
    return OSError(first.errno, first.strerror, name)
  for x in chain(e):
    msg = str(x)
    m = TENSORSTORE_OS_ERROR.search(msg)
    if m:
      code = int(m.group(1))
      return OSError(code, os.strerror(code), _tensorstore_path(msg))
  return None


@contextlib.contextmanager
def writing(directory: str) -> Iterator[None]:
  """Inside the block, an exception caused by an OS error is re-raised as an
  ``OSError`` naming ``directory`` (the error's own file when it lies inside it)."""
  try:
    yield
  except Exception as e:  # noqa: BLE001 — only OS errors are translated, others re-raised
    err = os_error(e)
    if err is None:
      raise
    d = os.path.abspath(directory)
    fn = os.path.abspath(str(err.filename)) if err.filename else None
    name = fn if fn and (fn == d or fn.startswith(d + os.sep)) and _ORBAX_TMP not in fn else d
    raise OSError(err.errno, err.strerror or os.strerror(err.errno), name) from e


def _kind(path: str) -> str:
  if os.path.islink(path):
    return "a symbolic link"
  if os.path.isfile(path):
    return "a regular file"
  return "a non-directory"


def _not_a_directory(path: str) -> str | None:
  """The first component of ``path`` that exists and is not a directory."""
  p = os.path.abspath(path)
  parts = p.split(os.sep)
  for i in range(2, len(parts) + 1):
    q = os.sep.join(parts[:i])
    if os.path.lexists(q) and not os.path.isdir(q):
      return q
  return None


def describe(err: OSError, where: str | None = None) -> str:
  """One line (no ``error:`` prefix) for ``err``: the path, what is wrong, what to do.
  ``where`` (e.g. the workdir) is named when the error names no file."""
  code = err.errno
  name = errno_lib.errorcode.get(code, str(code))
  path = str(err.filename) if err.filename else None
  if path is None:
    path = f"{where} (a write under it)" if where else "(no path given)"
  resume = "rerun the same command to resume (what was written is kept)"
  if code in (errno_lib.EEXIST, errno_lib.ENOTDIR) and err.filename:
    bad = _not_a_directory(path)
    if bad is not None:
      via = "" if os.path.abspath(bad) == os.path.abspath(path) else f" (on the way to {path})"
      return (f"{bad}: expected a directory, found {_kind(bad)}{via}; move it or use "
              "another workdir")
  if code == errno_lib.EISDIR:
    return f"{path}: expected a file, found a directory ({name})"
  if code in (errno_lib.ENOSPC, errno_lib.EDQUOT):
    return f"{path}: no space left on the device ({name}); free some space, then {resume}"
  if code == errno_lib.EROFS:
    return f"{path}: read-only file system ({name}); use a writable workdir"
  if code in (errno_lib.EACCES, errno_lib.EPERM):
    return f"{path}: permission denied ({name}); use a workdir you can write"
  msg = err.strerror or os.strerror(code)
  return f"{path}: {msg} ({name})"


def interrupted_line(where: str | None = None) -> str:
  place = f" in {where}" if where else ""
  return (f"interrupted: nothing written is lost; rerun the same command to resume{place} "
          f"(exit {INTERRUPTED_EXIT})")


def redeliver_interrupt(u) -> bool:
  """For ``sys.unraisablehook``: a ``KeyboardInterrupt`` that landed in a finalizer or a
  gc callback (XLA's runs often), where Python cannot raise it, is delivered again, so
  that the run stops instead of going on to finish as if nothing had happened. From
  another thread, a moment later: raised in the hook, it would be swallowed again (if it
  is, the hook re-arms it once more). Returns whether ``u`` was one."""
  if u.exc_type is None or not issubclass(u.exc_type, KeyboardInterrupt):
    return False
  again = threading.Timer(0.01, _thread.interrupt_main, args=(signal.SIGINT,))
  again.daemon = True
  again.start()
  return True


class QuietBackground:
  """Holds back Orbax's error logs and "unraisable" exceptions (background threads,
  finalizers) while installed; :meth:`release` prints them (a run that did not end in
  a one-line fault), :meth:`drop` discards them and goes on discarding until exit."""

  def __init__(self):
    self.held: list = []        # log records and formatted unraisable exceptions
    self.discard = False
    self._hook = None
    self._logger = None

  def install(self) -> "QuietBackground":
    self._hook = sys.unraisablehook
    sys.unraisablehook = self._unraisable
    from absl import logging as absl_logging
    self._logger = absl_logging.get_absl_logger()
    self._logger.addFilter(self._log_filter)
    return self

  def _unraisable(self, u) -> None:
    if redeliver_interrupt(u) or self.discard:   # a swallowed Ctrl-C is never held back
      return
    head = f"{u.err_msg or 'Exception ignored in'}: {u.object!r}\n" if u.object is not None else ""
    self.held.append(head + "".join(traceback.format_exception(u.exc_type, u.exc_value,
                                                               u.exc_traceback)))

  def _log_filter(self, record) -> bool:
    path = getattr(record, "pathname", "") or ""
    if record.levelno >= 40 and f"{os.sep}orbax{os.sep}" in path:   # ERROR and above
      if not self.discard:
        self.held.append(record)
      return False
    return True

  def release(self) -> None:
    """Restores the hooks and prints what was held back."""
    logger, self._logger = self._logger, None
    if logger is not None:
      logger.removeFilter(self._log_filter)
    sys.unraisablehook = self._hook or sys.__unraisablehook__
    held, self.held = self.held, []
    for h in held:
      if isinstance(h, str):
        sys.stderr.write(h)
      elif logger is not None:
        logger.handle(h)

  def drop(self) -> None:
    """Discards what was held back, and whatever comes until exit."""
    self.discard = True
    self.held = []
