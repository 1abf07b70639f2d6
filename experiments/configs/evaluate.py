r"""Re-evaluation of a store as a distilled set (``python -m experiments.evaluate``).

  python -m experiments.evaluate --config=experiments/configs/evaluate.py \
      --config.store=runs/hopa/distilled --workdir=runs/hopa_reeval

The keys: ``hopa_jax.plan.EVALUATE_KEYS`` (``objective`` and ``eval`` are HoPA's, so a
re-evaluation reads the same keys and defaults as the run that made the store).
"""

from hopa_jax import plan
from mmdd_jax import keys

KEYS = plan.EVALUATE_KEYS


def get_config(arg: str | None = None):
  return keys.switched(KEYS, arg)[0]
