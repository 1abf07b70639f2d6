"""What every binary in ``experiments/`` shares: ``--help`` and one-line errors.

:func:`run` replaces ``absl.app.run``:

* ``--help`` (``-h``, ``--helpshort``) prints the binary's docstring, its flags and,
  for a config flag, every config key with its default and meaning; exits 0;
* an expected error (bad config or input, a workdir bound to another config, a locked
  workdir, a diverged run) is printed as **one line** on stderr and exits 2; so is an
  OS fault (no space left, read-only file system, permission denied, a file where a
  directory belongs, …), naming the path (:mod:`mmdd_jax.faults`: the error's file,
  else the directory being written, else the workdir);
* Ctrl-C (SIGINT) prints one line — nothing written is lost, rerunning the same
  command resumes — and exits 130;
* while a run fails that way, what Orbax's background threads print about it is
  held back (it is printed when a run ends any other way);
* set ``MMDD_DEBUG=1`` for tracebacks (and nothing held back);
* ``--coordinator_address``, ``--num_processes``, ``--process_id`` (or the
  environment, or a detected SLURM / Open MPI launch) make it one process of a
  multi-process run (:func:`mmdd_jax.distributed.initialize`, before any JAX work).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

from absl import app, flags, logging

from mmdd_jax import distributed, faults, workdir

# The process topology: flags of every binary, never config keys (a workdir's
# fingerprint does not depend on how many processes made it).
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "multi-process run: host:port of process 0's coordinator "
    f"(default ${distributed.ENV_ADDRESS}; none and no SLURM/Open MPI launch: one process)")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, f"multi-process run: number of processes (default ${distributed.ENV_NUM})")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, f"multi-process run: this process's id 0..num_processes-1 (default "
    f"${distributed.ENV_ID}); process 0 writes the workdir")

# The project's errors: a user acts on their one-line message alone ("<file or key>:
# expected …, found …"). ValueError covers StoreError and every config/input check;
# RunError a bound or locked workdir; FloatingPointError a diverged loop or non-finite
# scores. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, workdir.RunError, FloatingPointError)
HELP_ARGS = ("--help", "-h", "--helpshort", "-?")


def print_help(doc: str) -> None:
  print((doc or "").strip() + "\n")
  print("flags:")
  print(flags.FLAGS.main_module_help())


def one_line(e: BaseException) -> str:
  msg = " ".join(str(e).split()) or type(e).__name__
  return f"error: {msg}"


def fault_line(e: BaseException, where: str | None = None) -> str | None:
  """The one line for ``e`` when it is expected (a project error, an OS fault found
  anywhere in its cause chain); None for a bug (which keeps its traceback)."""
  if isinstance(e, USER_ERRORS) and not faults.TENSORSTORE_OS_ERROR.search(str(e)):
    return one_line(e)
  err = faults.os_error(e)
  if err is not None:
    return "error: " + " ".join(faults.describe(err, where).split())
  return None


def _workdir_flag() -> str | None:
  try:
    return flags.FLAGS["workdir"].value if "workdir" in flags.FLAGS else None
  except Exception:  # noqa: BLE001 — flags not parsed yet
    return None


def _print_line(line: str) -> None:
  if sys.stderr.isatty():
    sys.stderr.write("\r\x1b[2K")   # over a progress bar left mid-line
  print(line, file=sys.stderr)


def _flag_error_line(e: Exception) -> str:
  """The useful line of a flag-parsing error: for a config file, the last line of the
  wrapped traceback (``ValueError: config key …``) without its type."""
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  last = lines[-1] if lines else type(e).__name__
  for prefix in ("ValueError: ", "StoreError: ", "KeyError: ", "AttributeError: "):
    if last.startswith(prefix):
      last = last[len(prefix):]
  return f"error: {last}"


def parse_flags(argv: list[str]) -> list[str]:
  """``absl`` flag parsing, with a bad flag or config key as one line and exit 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    if os.environ.get("MMDD_DEBUG"):
      raise
    print(_flag_error_line(e), file=sys.stderr)
    sys.exit(2)


def _initialize() -> None:
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


def run(main: Callable[[list[str]], None], doc: str = "", argv: list[str] | None = None) -> None:
  """``absl.app.run(main)`` with ``--help`` exiting 0 and one-line errors (exit 2)."""
  argv = list(sys.argv if argv is None else argv)
  if any(a in HELP_ARGS for a in argv[1:]):
    print_help(doc)
    sys.exit(0)

  def wrapped(args):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    if len(args) > 1:
      raise app.UsageError(f"unexpected arguments: {args[1:]}")
    if os.environ.get("MMDD_DEBUG"):   # everything printed; a swallowed Ctrl-C still stops
      hook = sys.unraisablehook
      sys.unraisablehook = lambda u: faults.redeliver_interrupt(u) or hook(u)
      try:
        _initialize()
        main(args)
      finally:
        sys.unraisablehook = hook
      return
    quiet = faults.QuietBackground().install()
    try:
      _initialize()
      main(args)
    except KeyboardInterrupt:
      quiet.drop()
      _print_line(faults.interrupted_line(_workdir_flag()))
      signal.signal(signal.SIGINT, signal.SIG_DFL)   # a second Ctrl-C while exiting: no traceback
      sys.exit(faults.INTERRUPTED_EXIT)
    except SystemExit:
      quiet.release()
      raise
    except Exception as e:  # noqa: BLE001 — expected errors end in one line, bugs re-raise
      line = fault_line(e, _workdir_flag())
      if line is None:
        quiet.release()
        raise
      quiet.drop()
      _print_line(line)
      sys.exit(2)
    quiet.release()

  try:
    app.run(wrapped, argv=argv, flags_parser=parse_flags)
  except KeyboardInterrupt:   # before main (flag parsing, the config file)
    if os.environ.get("MMDD_DEBUG"):
      raise
    _print_line(faults.interrupted_line())
    sys.exit(faults.INTERRUPTED_EXIT)
