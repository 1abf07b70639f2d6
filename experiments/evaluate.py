r"""Re-evaluates any store as a distilled set (retrieval, SPEC §3.6).

  python -m experiments.evaluate \
      --config=experiments/configs/evaluate.py --config.store=runs/hopa/distilled --workdir=runs/hopa_reeval

Fresh heads start from the store's heads.npz, train on its train split and are scored
on the test split (of test_store, default the store). eval.protocol=select (default)
needs the store's val split (distilled stores written by experiments.hopa have one);
eval.protocol=paper trains at lr (default: the store's learned η). Calls
hopa_jax.run.evaluate_store.
"""

from absl import flags
from ml_collections import config_flags

from experiments.configs import evaluate as evaluate_config
from hopa_jax import run
from mmdd_jax import cli, keys, results

_CONFIG = config_flags.DEFINE_config_file(
    "config", evaluate_config.__file__, keys.config_help(evaluate_config))
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (bound to the config)")
_FRESH = flags.DEFINE_bool("fresh", False, "start over in a workdir made by another config "
                           "(its contents are moved to <workdir>.old-<time>/)")


def main(argv):
  del argv
  print(results.results_table(run.evaluate_store(_CONFIG.value, _WORKDIR.value,
                                                 fresh=_FRESH.value)))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, __doc__)
