r"""Cross-architecture evaluation of distilled stores (``python -m experiments.cross_arch``).

  python -m experiments.cross_arch --stores=runs/table/hopa_n100/distilled \
      --workdir=runs/cross_arch --config=experiments/configs/cross_arch.py:heads=linear_pretrained+mlp

``objective`` and ``eval`` are the re-evaluation's (``experiments/configs/evaluate.py``):
one evaluation for every store, row and head; ``heads`` replaces ``eval.head``.
``local=1`` shrinks the evaluation to a seconds-long run (tests).
"""

from __future__ import annotations

from experiments.configs import common
from experiments.configs import evaluate
from hopa_jax import cross_arch, evaluate as hopa_evaluate

KEYS = {
    "heads": (hopa_evaluate.HEADS, hopa_evaluate.HEADS, "head architectures, '+'-separated: "
              "linear_pretrained | linear_random | mlp | mlp_residual (hopa_jax.evaluate.HEADS)"),
    "rows": (cross_arch.ROWS, cross_arch.ROWS, "rows per store, '+'-separated: distilled | "
             "random (its initial real rows) | full (every real train row but the validation "
             "ones)"),
    "seed": (0, ">=0", "evaluation key (the same for every cell)"),
    "local": (False, None, "shrink the evaluation to a seconds-long run (smoke tests)"),
    "check_hashes": common.STORE["check_hashes"],
    "progress": (True, None, "progress bars"),
    **{k: v for k, v in evaluate.KEYS.items()
       if k.startswith(("objective.", "eval.")) and k != "eval.head"},
}
HELP = common.helps(KEYS)


def ranges() -> dict:
  return common.rules(KEYS)


def get_config(arg: str | None = None):
  kv = common.parse_arg(arg)
  c = common.build(KEYS)
  c.local = common.convert("local", kv.get("local", "0"), False)
  if c.local:
    c.update_from_flattened_dict({"eval.runs": 2, "eval.lrs": (0.01, 0.1),
                                  "eval.max_epochs": 3, "eval.patience": 2})
  return common.check(common.apply_overrides(c, kv), ranges())
