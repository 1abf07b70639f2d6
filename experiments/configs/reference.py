r"""Reference rows (``mmdd_jax.reference``): Zero-shot and Full retrieval, or Full
classification, on one dataset.

  python -m experiments.reference --config=experiments/configs/reference.py --config.dataset=msrvtt_sim --config.scale=0.1 \
      --workdir=runs/ref

The keys: ``mmdd_jax.reference.KEYS``. The Full retrieval temperature is ``full.tau``
(CLIP's 0.07, the protocol the simulators are calibrated with), deliberately not the
distillation's ``objective.tau_nce``.
"""

from __future__ import annotations

from mmdd_jax import keys, reference

KEYS = reference.KEYS


def get_config(arg: str | None = None):
  return keys.switched(KEYS, arg)[0]
