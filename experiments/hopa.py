r"""HoPA / trajectory-matching baselines: experts → distillation → retrieval evaluation.

  python -m experiments.hopa --config=experiments/configs/hopa.py:dataset=msrvtt_sim,n=100,method=hopa \
      --workdir=runs/hopa

Calls hopa_jax.run.train_and_evaluate; the workdir's files are described there and in
docs/runs.md. A killed run resumes; a rerun with another config stops (--fresh starts
over, moving the old contents aside).
"""

from absl import flags
from ml_collections import config_flags

from experiments.configs import hopa as hopa_config
from hopa_jax import run
from mmdd_jax import cli, keys, results

_CONFIG = config_flags.DEFINE_config_file(
    "config", hopa_config.__file__, keys.config_help(hopa_config))
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (bound to the config; a "
                               "rerun with the same config resumes)")
_FRESH = flags.DEFINE_bool("fresh", False, "start over in a workdir made by another config "
                           "(its contents are moved to <workdir>.old-<time>/)")


def main(argv):
  del argv
  rows = run.train_and_evaluate(_CONFIG.value, _WORKDIR.value, fresh=_FRESH.value)
  print(results.results_table(rows))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, __doc__)
