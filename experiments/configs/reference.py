r"""Reference rows (``mmdd_jax.reference``): Zero-shot and Full retrieval, or Full
classification, on one dataset.

  python -m experiments.reference --config=experiments/configs/reference.py:dataset=msrvtt_sim,scale=0.1 \
      --workdir=runs/ref

``arg`` is a comma-separated ``key=value`` list (a key is a dotted path or a unique leaf
name). Defaults are the flag-based binary's before the nested config (same numbers).
The Full retrieval temperature is ``full.tau`` (CLIP's 0.07, the protocol the
simulators are calibrated with), deliberately not the distillation's
``objective.tau_nce``.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the reference config; see the module docstring and :data:`HELP`."""
  kv = common.parse_arg(arg)
  c = ml_collections.ConfigDict()
  c.dataset = "msrvtt_sim"
  c.scale = 1.0
  c.data_dir = ""
  c.seed = 0
  c.task = "auto"
  c.check_hashes = True
  c.full = ml_collections.ConfigDict(dict(runs=1, epochs=10, lr=0.01, batch_size=128, tau=0.07))
  c.classification = ml_collections.ConfigDict(dict(runs=5, epochs=30, lr=1e-3, batch_size=256))
  return common.check(common.apply_overrides(c, kv), ranges())


def ranges() -> dict:
  """Every numeric key's range and every enumerated key's values (checked at parse time)."""
  return {"scale": "(0,1]", "seed": ">=0", "task": ("auto", "retrieval", "classification"),
          "full.runs": ">=1", "full.epochs": ">=1", "full.lr": ">0", "full.batch_size": ">=1",
          "full.tau": ">0", "classification.runs": ">=1", "classification.epochs": ">=1",
          "classification.lr": ">0", "classification.batch_size": ">=1"}


HELP = {
    **common.STORE_HELP,
    "dataset": "a store directory, or a simulator name (embed.simulate.DATASETS)",
    "seed": "simulator seed and root key (Full run r: fold_in(key, r))",
    "task": "retrieval | classification | auto (from the store: the simulator's task, else "
            "classification for a labelled two-modality store)",
    "full.runs": "Full retrieval: training runs (seeds) averaged",
    "full.epochs": "Full retrieval: SGD epochs over the train split",
    "full.lr": "Full retrieval: SGD learning rate",
    "full.batch_size": "Full retrieval: batch size",
    "full.tau": "Full retrieval: symmetric InfoNCE temperature (mmdd_jax.reference.FULL_TAU; "
                "not objective.tau_nce)",
    "classification.runs": "Full classification: linear-head runs averaged",
    "classification.epochs": "Full classification: epochs",
    "classification.lr": "Full classification: learning rate",
    "classification.batch_size": "Full classification: batch size",
}
