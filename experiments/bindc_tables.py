r"""The ImageBindDC tables on the simulators (issue 11), by one resumable command.

  python -m experiments.bindc_tables --workdir=runs/bindc_tables [--budget=reduced] \
      [--only=vggs10k_ipc1,nyuv2_ipc1] [--config.scale=0.25]

Runs the groups of bindc_jax.tables.GROUPS (each in <workdir>/<group>/, resuming) and
writes <workdir>/tables.md beside the papers' numbers. A group's config is --config,
then the budget's keys, then the group's (method, dataset, ipc, modalities), then both
evaluation heads. Budgets: spec (SPEC §4), reduced (default; about an hour on a 2-core
CPU), smoke (seconds per group with scale=0.05, for tests). See bindc_jax/tables.py.
"""

from absl import flags
from ml_collections import config_flags

from bindc_jax import tables
from experiments.configs import bindc as bindc_config
from mmdd_jax import cli, keys

_CONFIG = config_flags.DEFINE_config_file("config", bindc_config.__file__,
                                          keys.config_help(bindc_config), lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", "runs/bindc_tables", "output directory (reruns resume)")
_FRESH = flags.DEFINE_bool("fresh", False, "move each group's old contents aside and start over")
_BUDGET = flags.DEFINE_enum("budget", "reduced", sorted(tables.BUDGETS), "see the docstring")
_ONLY = flags.DEFINE_list("only", [], "group names to run (default: all, in order)")
_TABLES_ONLY = flags.DEFINE_bool("tables_only", False,
                                 "only rewrite tables.md from the finished groups")


def main(argv):
  del argv
  if _TABLES_ONLY.value:
    print(tables.write_tables(_WORKDIR.value, _BUDGET.value, _CONFIG.value.scale,
                              _CONFIG.value))
  else:
    print(tables.run_tables(_CONFIG.value, _WORKDIR.value, budget=_BUDGET.value,
                            only=_ONLY.value, fresh=_FRESH.value))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, __doc__)
