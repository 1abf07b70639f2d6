r"""The HoPA paper's Tables 1–3, 5 and its ablations on the three retrieval simulators, by
one resumable sweep (issues 19, 20).

  python -m experiments.hopa_sweep --workdir=runs/sweep
  python -m experiments.hopa_sweep --workdir=runs/sweep --config=experiments/configs/sweep.py --config.dry_run=True
  python -m experiments.hopa_sweep --workdir=runs/sweep --report   # docs from what has finished
  python -m experiments.hopa_sweep --report                         # docs from docs/results_cells.json

Calls hopa_jax.sweep.run_sweep: rows in the config's priority order, each its own
hopa_jax.run workdir under --workdir (a killed sweep continues where it stopped; finished
rows are read), experts shared per (dataset, budget, seed, inner objective); after every
row it rewrites <workdir>/results_cells.json and <workdir>/<dataset>/table.md, table.json
and avg_r1.png. --report writes the cells to --cells and the generated section of --doc
(hopa_jax.report). Run long sweeps from a git worktree pinned at one commit: every cell
records `git rev-parse HEAD` of the code that computed it.
"""

import json
import os

from absl import flags
from ml_collections import config_flags

from experiments.configs import sweep as sweep_config
from hopa_jax import report, sweep, sweep_archive
from mmdd_jax import cli, keys, results

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIG = config_flags.DEFINE_config_file(
    "config", sweep_config.__file__, keys.config_help(sweep_config))
_WORKDIR = flags.DEFINE_string("workdir", None, "the sweep's directory (resumable)")
_REPORT = flags.DEFINE_bool("report", False, "run nothing: write --cells (from --workdir's "
                            "finished rows, when given) and the generated section of --doc")
_CELLS = flags.DEFINE_string("cells", os.path.join(_ROOT, "docs", "results_cells.json"),
                             "the committed summary (one JSON list of cells)")
_ARCHIVE = flags.DEFINE_string(
    "archive", "", "a directory of finished rows (docs/sweep_rows): restored into --workdir "
    "before the sweep (rows not finished there; read only if still bound to the config, the "
    "store content and the numerics), and written from it after every computed row, after the "
    "sweep and with --report "
    "(hopa_jax.sweep_archive)")
_DOC = flags.DEFINE_string("doc", os.path.join(_ROOT, "docs", "results.md"),
                           "the document whose generated section --report rewrites")


def main(argv):
  del argv
  c = _CONFIG.value
  if _REPORT.value:
    if _WORKDIR.value:
      if _ARCHIVE.value:
        print(f"{sweep_archive.save(_WORKDIR.value, _ARCHIVE.value)} finished rows -> "
              f"{_ARCHIVE.value}")
      cells = sweep.cells(c, _WORKDIR.value)
      results.atomic_write_json(_CELLS.value, cells)
    else:
      if not os.path.exists(_CELLS.value):
        raise ValueError(f"--cells: expected a cells file (or --workdir), found no {_CELLS.value}")
      with open(_CELLS.value, encoding="utf-8") as f:
        cells = json.load(f)
      if not isinstance(cells, list):
        raise ValueError(f"{_CELLS.value}: expected a JSON list of cells, found "
                         f"{type(cells).__name__}")
    report.update_doc(_DOC.value, cells)
    print(f"{len(cells)} cells -> {_CELLS.value}, {_DOC.value}")
    return
  if not _WORKDIR.value:
    raise ValueError("--workdir: expected the sweep's directory, found none")
  if _ARCHIVE.value:
    print(f"{sweep_archive.restore(_ARCHIVE.value, _WORKDIR.value)} finished rows restored "
          f"from {_ARCHIVE.value}")
  save = sweep_archive.saver(_WORKDIR.value, _ARCHIVE.value) if _ARCHIVE.value else None
  cells = sweep.run_sweep(c, _WORKDIR.value, after_row=save)
  if save is not None:
    save()
  if not c.dry_run:
    print(f"{sum(x['avg_r1'] is not None for x in cells)} cells measured -> "
          f"{os.path.join(_WORKDIR.value, sweep.CELLS_FILE)}")


if __name__ == "__main__":
  cli.run(main, __doc__)
