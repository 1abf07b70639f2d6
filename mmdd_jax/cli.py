"""What every binary in ``experiments/`` shares: ``--help`` and one-line errors.

:func:`run` replaces ``absl.app.run``:

* ``--help`` (``-h``, ``--helpshort``) prints the binary's docstring, its flags and,
  for a config flag, every config key with its default and meaning; exits 0;
* an expected error (bad config or input, a workdir bound to another config, a locked
  workdir, a diverged run) is printed as **one line** on stderr and exits 2; set
  ``MMDD_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from absl import app, flags, logging

from mmdd_jax import workdir

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
    try:
      main(args)
    except USER_ERRORS as e:
      if os.environ.get("MMDD_DEBUG"):
        raise
      print(one_line(e), file=sys.stderr)
      sys.exit(2)

  app.run(wrapped, argv=argv, flags_parser=parse_flags)
