r"""Reference rows on a dataset: Zero-shot and Full retrieval, or Full classification.

  python -m experiments.reference --config=experiments/configs/reference.py --config.dataset=msrvtt_sim --config.scale=0.1 \
      --workdir=runs/ref

Runs :func:`mmdd_jax.reference.train_and_evaluate` and prints the table. Writes
``config.json``, ``metrics.jsonl``, ``results.json`` (a list, one results dict per row)
and ``results.md`` into ``--workdir``, which is bound to the config (docs/runs.md):
another config stops with one line unless ``--fresh``.
"""

from __future__ import annotations

import os

from absl import flags
from ml_collections import config_flags

from experiments.configs import reference as config_module
from mmdd_jax import cli, keys, reference, results

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "reference.py"),
    keys.config_help(config_module), lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (bound to the config)")
_FRESH = flags.DEFINE_bool("fresh", False, "move the workdir's old contents aside and start over")


def main(argv):
  del argv
  rows = reference.train_and_evaluate(_CONFIG.value, _WORKDIR.value, fresh=_FRESH.value)
  print(results.results_table(rows))


if __name__ == "__main__":
  cli.run(main, __doc__)
