r"""Reference rows (``mmdd_jax.reference``): Zero-shot and Full retrieval, or Full
classification, on one dataset.

  python -m experiments.reference --config=experiments/configs/reference.py --config.dataset=msrvtt_sim --config.scale=0.1 \
      --workdir=runs/ref

The Full retrieval temperature is ``full.tau`` (CLIP's 0.07, the protocol the simulators
are calibrated with), deliberately not the distillation's ``objective.tau_nce``.
"""

from __future__ import annotations

from mmdd_jax import keys

KEYS = {
    "dataset": ("msrvtt_sim", None, "a store directory, or a simulator name "
                "(embed.simulate.DATASETS)"),
    **keys.STORE,
    "seed": (0, ">=0", "simulator seed and root key (Full run r: fold_in(key, r))"),
    "task": ("auto", ("auto", "retrieval", "classification"), "retrieval | classification | "
             "auto (from the store: the simulator's task, else classification for a labelled "
             "two-modality store)"),
    "full.runs": (1, ">=1", "Full retrieval: training runs (seeds) averaged"),
    "full.epochs": (10, ">=1", "Full retrieval: SGD epochs over the train split"),
    "full.lr": (0.01, ">0", "Full retrieval: SGD learning rate"),
    "full.batch_size": (128, ">=1", "Full retrieval: batch size"),
    "full.tau": (0.07, ">0", "Full retrieval: symmetric InfoNCE temperature "
                 "(mmdd_jax.reference.FULL_TAU; not objective.tau_nce)"),
    "classification.runs": (5, ">=1", "Full classification: linear-head runs averaged"),
    "classification.epochs": (30, ">=1", "Full classification: epochs"),
    "classification.lr": (1e-3, ">0", "Full classification: learning rate"),
    "classification.batch_size": (256, ">=1", "Full classification: batch size"),
}


def get_config(arg: str | None = None):
  keys.parse_switches(arg)
  return keys.build(KEYS)
