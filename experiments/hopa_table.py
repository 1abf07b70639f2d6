r"""HoPA's retrieval table on one dataset: every method, Random, Zero-shot and Full.

  python -m experiments.hopa_table --workdir=runs/hopa_table \
      --config=experiments/configs/hopa.py:dataset=msrvtt_sim --methods=paper --ns=100

Calls hopa_jax.table.run_table: one workdir per row (<workdir>/<method>_n<n>/), experts
shared per inner objective, resumable; writes table.md, table.json and avg_r1.png.
"""

from absl import flags
from ml_collections import config_flags

from experiments.configs import hopa as hopa_config
from hopa_jax import table
from mmdd_jax import cli, keys

_CONFIG = config_flags.DEFINE_config_file(
    "config", hopa_config.__file__, "base config of every row; " +
    keys.config_help(hopa_config))
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (resumable)")
_METHODS = flags.DEFINE_string("methods", "paper",
                               "paper | ablations | all | comma-separated methods")
_NS = flags.DEFINE_list("ns", ["100"], "comma-separated synthetic set sizes")
_TABLES_ONLY = flags.DEFINE_bool("tables_only", False,
                                 "only read finished rows and write the table")


def main(argv):
  del argv
  ns = [int(v) for v in _NS.value]
  print(table.run_table(_CONFIG.value, _WORKDIR.value, _METHODS.value, ns,
                        tables_only=_TABLES_ONLY.value))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, __doc__)
