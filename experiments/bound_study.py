r"""Trajectory-bound study: Lemma 1 and Theorem 1 of HoPA measured per inner objective.

  python -m experiments.bound_study --config=experiments/configs/bound.py:dataset=msrvtt_sim --config.scale=0.05 \
      --workdir=runs/bound

Runs :func:`hopa_jax.study.train_and_evaluate` (see its module and docs/bound.md) and
prints ``results.md``. The workdir is bound to the config (docs/runs.md): the same
config resumes (experts and distillations are reused), another one stops unless
``--fresh``.
"""

from __future__ import annotations

import os

from absl import flags
from ml_collections import config_flags

from experiments.configs import bound as config_module
from hopa_jax import study
from mmdd_jax import cli, keys

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "bound.py"),
    keys.config_help(config_module), lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (bound to the config)")
_FRESH = flags.DEFINE_bool("fresh", False, "move the workdir's old contents aside and start over")


def main(argv):
  del argv
  study.train_and_evaluate(_CONFIG.value, _WORKDIR.value, fresh=_FRESH.value)
  with open(os.path.join(_WORKDIR.value, "results.md"), encoding="utf-8") as f:
    print(f.read())


if __name__ == "__main__":
  cli.run(main, __doc__)
