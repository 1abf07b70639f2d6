r"""What a distilled set looks like (the HoPA paper's Figure 3, in the project's setting).

  python -m experiments.inspect_distilled --store=runs/hopa/distilled [--k=5 --instances=4]

For a distilled store written by experiments.hopa: per modality, the k nearest real
training instances (ids, cosine, labels and, where the source store has them, captions)
of a few distilled instances, with each one's initial real row, as neighbours.md and
neighbours.json; and a 2-D PCA of real vs initial vs distilled embeddings per modality
(projection.png). Written next to the store (<store>/../inspect_distilled/ unless
--out). Calls hopa_jax.inspect_distilled.inspect_store.
"""

from absl import flags

from hopa_jax import inspect_distilled
from mmdd_jax import cli

_STORE = flags.DEFINE_string("store", None, "distilled store directory (<hopa workdir>/distilled)")
_OUT = flags.DEFINE_string("out", "", "output directory ('' = <store>/../inspect_distilled)")
_K = flags.DEFINE_integer("k", 5, "nearest real instances per distilled instance and modality",
                          lower_bound=1)
_INSTANCES = flags.DEFINE_integer("instances", 4, "distilled instances shown (evenly spaced)",
                                  lower_bound=1)
_MAX_PLOT = flags.DEFINE_integer("max_plot_real", 3000, "real rows drawn in the plot "
                                 "(a seeded subsample; the PCA uses them all)", lower_bound=1)
_CHECK = flags.DEFINE_bool("check_hashes", True, "verify the stores' sha256 hashes first")


def main(argv):
  del argv
  out = inspect_distilled.inspect_store(_STORE.value, out_dir=_OUT.value or None, k=_K.value,
                                        instances=_INSTANCES.value,
                                        max_plot_real=_MAX_PLOT.value,
                                        check_hashes=_CHECK.value)
  with open(out["md"], encoding="utf-8") as f:
    print("".join(f.readlines()[:12]))
  print("\n".join(inspect_distilled.main_paths(out)))


if __name__ == "__main__":
  flags.mark_flags_as_required(["store"])
  cli.run(main, __doc__)
