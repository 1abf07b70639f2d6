r"""Cross-architecture evaluation of distilled stores (``python -m experiments.cross_arch``).

  python -m experiments.cross_arch --stores=runs/table/hopa_n100/distilled \
      --workdir=runs/cross_arch --config=experiments/configs/cross_arch.py:heads=linear_pretrained+mlp

The ``objective`` and ``eval`` sections are the re-evaluation's
(``experiments/configs/evaluate.py``, i.e. HoPA's with ``eval.objective=hopa``): one
evaluation for every store, row and head; ``heads`` replaces ``eval.head``.
``local=1`` shrinks the evaluation to a seconds-long run (tests).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common
from experiments.configs import evaluate as evaluate_config

HELP = {
    "heads": "head architectures, '+'-separated: linear_pretrained | linear_random | mlp | "
             "mlp_residual (hopa_jax.evaluate.HEADS)",
    "rows": "rows per store, '+'-separated: distilled | random (its initial real rows) | full "
            "(every real train row but the validation ones)",
    "seed": "evaluation key (the same for every cell)",
    "local": "shrink the evaluation to a seconds-long run (smoke tests)",
    "check_hashes": common.STORE_HELP["check_hashes"],
    "progress": "progress bars",
    **{k: v for k, v in evaluate_config.HELP.items()
       if k.startswith(("objective.", "eval.")) and k != "eval.head"},
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  kv = common.parse_arg(arg)
  local = common.convert("local", kv.get("local", "0"), False)
  base = evaluate_config.get_config()
  c = ml_collections.ConfigDict()
  c.heads = ("linear_pretrained", "linear_random", "mlp", "mlp_residual")
  c.rows = ("distilled", "random", "full")
  c.seed = 0
  c.local = local
  c.check_hashes = True
  c.progress = True
  c.objective = base.objective
  c.eval = base.eval
  del c.eval["head"]
  if local:
    c.eval.runs = 2
    c.eval.lrs = (0.01, 0.1)
    c.eval.max_epochs = 3
    c.eval.patience = 2
  return common.check(common.apply_overrides(c, kv), ranges())


def ranges() -> dict:
  from hopa_jax import cross_arch, evaluate
  r = {k: v for k, v in evaluate_config.ranges().items()
       if k.startswith(("objective.", "eval.")) and k != "eval.head"}
  return {**r, "seed": ">=0", "heads": evaluate.HEADS, "rows": cross_arch.ROWS}
