r"""Cross-architecture evaluation of distilled stores (``python -m experiments.cross_arch``).

  python -m experiments.cross_arch --stores=runs/table/hopa_n100/distilled \
      --workdir=runs/cross_arch --config.heads="('linear_pretrained', 'mlp')"

The keys: ``hopa_jax.plan.CROSS_ARCH_KEYS`` (``objective`` and ``eval`` are the
re-evaluation's; ``heads`` replaces ``eval.head``). ``local=1`` shrinks the evaluation
to a seconds-long run (tests).
"""

from hopa_jax import plan
from mmdd_jax import keys

KEYS = plan.CROSS_ARCH_KEYS
SWITCHES = ("local",)


def get_config(arg: str | None = None):
  c, _ = keys.switched(KEYS, arg, SWITCHES)
  if c.local:
    c.update_from_flattened_dict({"eval.runs": 2, "eval.lrs": (0.01, 0.1),
                                  "eval.max_epochs": 3, "eval.patience": 2})
  return c
