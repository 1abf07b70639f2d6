r"""The sweep's common view without the learned Ŝ (a post-hoc diagnostic; hopa_jax.targets_view).

  python -m experiments.identity_targets --sweep=runs/sweep --workdir=runs/identity_targets
  python -m experiments.identity_targets --sweep=runs/sweep --workdir=runs/identity_targets \
      --cells=docs/identity_targets.json --doc=docs/identity_targets.md

Every finished common-view cell of the sweep (--config, the sweep's config; --sweep, its
directory) whose distilled store lists a learned Ŝ is evaluated again with the sweep's own
re-evaluation config and targets='identity', each cell in its own workdir under --workdir
(a finished one is read). --cells merges the cells into the committed list (cells measured
on other machines are kept), --doc rewrites the generated table of that document from it.
"""

import json
import os

from absl import flags
from ml_collections import config_flags

from experiments.configs import sweep as sweep_config
from hopa_jax import targets_view
from mmdd_jax import cli, keys, results

_CONFIG = config_flags.DEFINE_config_file(
    "config", sweep_config.__file__, keys.config_help(sweep_config))
_SWEEP = flags.DEFINE_string("sweep", None, "the sweep's directory (its finished rows are read)")
_WORKDIR = flags.DEFINE_string("workdir", None, "this diagnostic's directory (resumable)")
_CELLS = flags.DEFINE_string("cells", "", "a JSON list of cells to merge the measured ones "
                             "into (docs/identity_targets.json; '' = none)")
_DOC = flags.DEFINE_string("doc", "", "a document whose generated table is rewritten from "
                           "--cells (docs/identity_targets.md; '' = none)")


def main(argv):
  del argv
  for name, v in (("--sweep", _SWEEP.value), ("--workdir", _WORKDIR.value)):
    if not v:
      raise ValueError(f"{name}: expected a directory, found none")
  if not os.path.isdir(_SWEEP.value):
    raise ValueError(f"--sweep: expected the sweep's directory, found no {_SWEEP.value}")
  if _DOC.value and not _CELLS.value:
    raise ValueError("--doc: expected --cells too (the table is generated from it), found none")
  old = []
  if _CELLS.value and os.path.exists(_CELLS.value):
    with open(_CELLS.value, encoding="utf-8") as f:
      old = json.load(f)
    if not isinstance(old, list):
      raise ValueError(f"{_CELLS.value}: expected a JSON list of cells, found "
                       f"{type(old).__name__}")
  os.makedirs(_WORKDIR.value, exist_ok=True)
  cells = targets_view.run(_CONFIG.value, _SWEEP.value, _WORKDIR.value)
  results.atomic_write_json(os.path.join(_WORKDIR.value, "identity_cells.json"), cells)
  print(targets_view.markdown(cells))
  if _CELLS.value:
    merged = targets_view.merge(old, cells)
    results.atomic_write_json(_CELLS.value, merged)
    if _DOC.value:
      targets_view.update_doc(_DOC.value, merged)
    print(f"{len(cells)} cells measured, {len(merged)} in {_CELLS.value}")


if __name__ == "__main__":
  cli.run(main, __doc__)
