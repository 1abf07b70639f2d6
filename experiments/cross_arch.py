r"""Cross-architecture evaluation (the HoPA paper's Table 4 in the project's setting).

  python -m experiments.cross_arch --workdir=runs/cross_arch \
      --stores=runs/table_vggs/hopa_n200/distilled,runs/table_msrvtt/hopa_n100/distilled

Every distilled store (written by experiments.hopa) is evaluated with every head
architecture of config.heads — ImageBind's linear heads (pretrained), the same linear
heads from a random initialisation, a two-layer MLP head per modality from a random
initialisation, the pretrained heads with a zero-initialised residual MLP — against Random (its initial real rows) and Full (every real train row
but the validation ones) under the same heads; lr and epochs are selected on the
store's validation split by one rule for every cell. The project distils pre-head
features, so a set cannot be fed to another encoder's trunk: only other heads are
measured (docs/analyses.md). One resumable workdir per cell under <workdir>/cells/;
writes <workdir>/table.md, table.json and cross_arch.png. Calls
hopa_jax.cross_arch.run_table. A cell is bound to the content of the stores it reads,
not their paths: with --archive=docs/cross_arch_cells its finished cells are restored
into --workdir first and saved there after every cell, so a new machine or session
reads them instead of evaluating them again.
"""

from absl import flags
from ml_collections import config_flags

from experiments.configs import cross_arch as cross_arch_config
from hopa_jax import cross_arch, sweep_archive
from mmdd_jax import cli, distributed, keys

_CONFIG = config_flags.DEFINE_config_file(
    "config", cross_arch_config.__file__, keys.config_help(cross_arch_config))
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (resumable)")
_STORES = flags.DEFINE_list("stores", [], "comma-separated distilled store directories "
                            "(<hopa workdir>/distilled)")
_ARCHIVE = flags.DEFINE_string(
    "archive", "", "a directory of finished cells (docs/cross_arch_cells): restored into "
    "--workdir where a cell has not started there, and saved after every cell "
    "(hopa_jax.sweep_archive)")


def main(argv):
  del argv
  archive, workdir = _ARCHIVE.value, _WORKDIR.value
  on_cell = None
  if archive:
    n = distributed.on_writer(lambda: sweep_archive.restore(archive, workdir),
                              f"restoring cells from {archive}")
    if n is not None:
      print(f"{n} finished cells restored from {archive}")
    on_cell = sweep_archive.saver(workdir, archive)
  print(cross_arch.run_table(_CONFIG.value, workdir, _STORES.value, on_cell=on_cell))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, __doc__)
