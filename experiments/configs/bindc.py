r"""ImageBindDC (SPEC §4): ``--config=experiments/configs/bindc.py:local=1``.

The keys, their defaults, rules and meanings: ``bindc_jax.plan.KEYS`` (``--help`` lists
them). Switches (``arg``): ``dataset``; ``local=1`` shrinks a run to seconds on a CPU.
Every other key: ``--config.a.b=`` (tuples as Python literals,
``--config.method="('dm', 'bindc')"``).
"""

from bindc_jax import plan
from mmdd_jax import keys

KEYS = plan.KEYS
SWITCHES = ("dataset", "local")


def get_config(arg: str | None = None):
  c, _ = keys.switched(KEYS, arg, SWITCHES)
  if c.local:
    c.update_from_flattened_dict({
        "scale": 0.05, "distill.iterations": 20, "distill.real_batch": 32,
        "loss.dist.num_freqs": 128, "eval.runs": 2, "eval.epochs": 5, "eval.min_steps": 20,
        "select.iterations": 5, "select.runs": 1, "select.grid": (0.01, 0.1),
        "log_every": 10, "ckpt_every": 10})
  return c
