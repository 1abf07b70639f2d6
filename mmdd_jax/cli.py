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

# Errors a user can act on from their message alone.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, FloatingPointError,
               RuntimeError)
HELP_ARGS = ("--help", "-h", "--helpshort", "-?")


def print_help(doc: str) -> None:
  print((doc or "").strip() + "\n")
  print("flags:")
  print(flags.FLAGS.main_module_help())


def one_line(e: BaseException) -> str:
  msg = " ".join(str(e).split()) or type(e).__name__
  return f"error: {msg}"


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

  app.run(wrapped, argv=argv)
