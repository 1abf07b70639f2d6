r"""ImageBindDC: distil a labelled embedding store per class and evaluate it.

  python -m experiments.bindc --config=experiments/configs/bindc.py:dataset=vggs10k_sim --config.ipc=1 \
      --workdir=runs/bindc

Writes config.json, metrics.jsonl, results.json (a list: one row per method and
evaluation head), results.md, the distilled set as a v1 store (distilled/, or
distilled-<method>/ for several methods) and Orbax checkpoints (ckpt/<method>/). The
same config resumes; another config stops with one line (--fresh moves the old contents
aside). See docs/bindc.md and docs/runs.md.
"""

from absl import flags
from ml_collections import config_flags

from bindc_jax import run
from experiments.configs import bindc as bindc_config
from mmdd_jax import cli, keys

_CONFIG = config_flags.DEFINE_config_file("config", bindc_config.__file__,
                                          keys.config_help(bindc_config), lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (created; the same config "
                               "resumes, another one is refused)")
_FRESH = flags.DEFINE_bool("fresh", False, "move the workdir's old contents aside and start over")


def main(argv):
  del argv
  rows = run.train_and_evaluate(_CONFIG.value, _WORKDIR.value, fresh=_FRESH.value)
  print(run.results_table(rows))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, __doc__)
