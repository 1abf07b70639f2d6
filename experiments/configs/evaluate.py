r"""Re-evaluation of a store as a distilled set (``python -m experiments.evaluate``).

  python -m experiments.evaluate --config=experiments/configs/evaluate.py:store=runs/hopa/distilled \
      --workdir=runs/hopa_reeval

The ``objective`` and ``eval`` sections are HoPA's (``experiments/configs/hopa.py``), so a
re-evaluation reads the same keys and defaults as the run that made the store.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common
from experiments.configs import hopa as hopa_config

HELP = {
    "store": "store directory to evaluate (its train split is the training set)",
    "test_store": "store whose test split is scored ('' = store)",
    "seed": "evaluation key",
    "lr": "eval.protocol=paper: learning rate (None: the store's learned η, else 0.01)",
    "check_hashes": common.STORE_HELP["check_hashes"],
    "progress": "progress bars",
    **{k: v for k, v in hopa_config.HELP.items() if k.startswith(("objective.", "eval."))},
}
HELP["eval.objective"] = "evaluation objective (hopa_jax.objectives.OBJECTIVES)"
HELP["eval.head"] = ("heads trained: linear_pretrained (the store's heads.npz) | linear_random | "
                     "mlp (two-layer, random init) | mlp_residual (pretrained + a zero-init "
                     "residual MLP) — hopa_jax.evaluate.HEADS, docs/analyses.md")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  kv = common.parse_arg(arg)
  base = hopa_config.get_config()
  c = ml_collections.ConfigDict()
  c.store = ""
  c.test_store = ""
  c.seed = 0
  c.lr = common.placeholder(float)
  c.check_hashes = True
  c.progress = True
  c.objective = base.objective
  c.eval = base.eval
  c.eval.objective = "hopa"
  c.eval.head = "linear_pretrained"
  return common.check(common.apply_overrides(c, kv), ranges())


def ranges() -> dict:
  r = {k: v for k, v in hopa_config.ranges().items() if k.startswith(("objective.", "eval."))}
  from hopa_jax import evaluate
  return {**r, "seed": ">=0", "lr": ">0", "eval.head": evaluate.HEADS}
