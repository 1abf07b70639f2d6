r"""Re-evaluation of a store as a distilled set (``python -m experiments.evaluate``).

  python -m experiments.evaluate --config=experiments/configs/evaluate.py:store=runs/hopa/distilled \
      --workdir=runs/hopa_reeval

``objective`` and ``eval`` are HoPA's keys (``experiments/configs/hopa.py``), so a
re-evaluation reads the same keys and defaults as the run that made the store.
"""

from __future__ import annotations

from experiments.configs import common
from experiments.configs import hopa
from hopa_jax import evaluate

KEYS = {
    "store": ("", None, "store directory to evaluate (its train split is the training set)"),
    "test_store": ("", None, "store whose test split is scored ('' = store)"),
    "seed": (0, ">=0", "evaluation key"),
    "lr": (common.placeholder(float), ">0", "eval.protocol=paper: learning rate (None: the "
           "store's learned η, else 0.01)"),
    "check_hashes": common.STORE["check_hashes"],
    "progress": (True, None, "progress bars"),
    **hopa.OBJECTIVE,
    **common.variant(hopa.EVAL, {"eval.objective": "hopa"}),
    "eval.head": ("linear_pretrained", evaluate.HEADS, "heads trained: linear_pretrained (the "
                  "store's heads.npz) | linear_random | mlp (two-layer, random init) | "
                  "mlp_residual (pretrained + a zero-init residual MLP) — "
                  "hopa_jax.evaluate.HEADS, docs/analyses.md"),
}
HELP = common.helps(KEYS)


def ranges() -> dict:
  return common.rules(KEYS)


def get_config(arg: str | None = None):
  return common.check(common.apply_overrides(common.build(KEYS), common.parse_arg(arg)),
                      ranges())
