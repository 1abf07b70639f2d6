r"""Trajectory-bound study (SPEC §5; HoPA Lemma 1 and Theorem 1): ``hopa_jax.study``.

  python -m experiments.bound_study --config=experiments/configs/bound.py:dataset=msrvtt_sim \
      --config.scale=0.05 --workdir=runs/bound

The keys: ``hopa_jax.plan.STUDY_KEYS`` (``objective``, ``experts`` and ``distill`` are
HoPA's with the study's defaults: one real expert per objective gives the start points
θ₀, ``experts.lr`` explicit; ``distill`` is the short distillation of the 'distilled'
rows). Switches: ``dataset``; ``local=1`` shrinks everything to a short CPU run.
"""

from hopa_jax import plan
from mmdd_jax import keys

KEYS = plan.STUDY_KEYS
SWITCHES = ("dataset", "local")


def get_config(arg: str | None = None):
  c, _ = keys.switched(KEYS, arg, SWITCHES)
  if c.local:
    c.update_from_flattened_dict({
        "scale": 0.02, "study.objectives": ("hopa", "3pair"), "study.T": 4, "study.n": 10,
        "study.real_batch": 48, "study.power_iters": 15, "study.power_tol": 1e-3,
        "study.start_epoch": 1, "experts.epochs": 2, "experts.batch_size": 32,
        "distill.iterations": 3, "distill.syn_steps": 2, "distill.mini_batch": 5,
        "distill.expert_epochs": 1, "distill.max_start_epoch": 1, "distill.sim_rank": 2})
  return c
