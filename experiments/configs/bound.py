r"""Trajectory-bound study (SPEC §5; HoPA Lemma 1 and Theorem 1): ``hopa_jax.study``.

  python -m experiments.bound_study --config=experiments/configs/bound.py:dataset=msrvtt_sim,scale=0.05 \
      --workdir=runs/bound

``objective``, ``experts`` and ``distill`` are HoPA's keys (``experiments/configs/hopa.py``)
with the study's defaults: one real expert per objective gives the start points θ₀
(snapshot ``study.start_epoch``; ``experts.lr`` explicit: the study selects nothing on
validation, and it is the distillation's initial η); ``distill`` is the short
distillation of the 'distilled' rows (HoPA's adam rule; ``distill.mini_batch`` capped at
``study.n``). ``local=1`` shrinks everything to a short CPU run.
"""

from __future__ import annotations

from experiments.configs import common
from experiments.configs import hopa

_DISTILL = {**hopa.DISTILL, "distill.iterations": (200, ">=0", "distillation iterations per "
            "objective (0 = no distilled rows unless study.distilled_store); a short "
            "distillation, not a converged one")}
KEYS = {
    "dataset": ("msrvtt_sim", None, "a store directory, or a simulator name "
                "(embed.simulate.DATASETS)"),
    **common.variant(common.STORE, {"scale": 0.1}),
    "seed": (0, ">=0", "simulator seed and root key (mmdd_jax.rng streams: real_batch, "
             "random_set, experts/<objective>, distill/<objective>, power/<objective>)"),
    "local": (False, None, "1: a seconds-long CPU run (scale 0.02, hopa+3pair, T=4, n=10, …)"),
    "progress": (True, None, "progress bars (bookkeeping: not part of the config fingerprint)"),
    **hopa.OBJECTIVE,
    **common.variant(hopa.EXPERTS, {"experts.num_experts": 1, "experts.epochs": 4,
                                    "experts.lr": 0.01}),
    **common.variant(_DISTILL, {"distill.syn_steps": 8, "distill.max_start_epoch": 2}),
    "study.objectives": (("hopa", "3pair", "tbind", "vbind", "infonce"),
                         hopa.objective_names, "inner objectives, "
                         "'+'-separated (hopa_jax.objectives.OBJECTIVES)"),
    "study.T": (16, ">=1", "SGD steps of both rollouts"),
    "study.eta": (0.01, ">0", "step size η shared by both rollouts"),
    "study.n": (100, ">=1", "synthetic instances (Random: n random real train instances)"),
    "study.real_batch": (512, ">=0", "fixed real subset for the deterministic real gradient "
                         "(0 = all)"),
    "study.power_iters": (50, ">=1", "power iterations (HVPs) per step for L_t"),
    "study.power_tol": (1e-4, ">0", "power iteration stops at this relative change"),
    "study.start_epoch": (2, ">=0", "θ₀ = expert 0 after this many epochs"),
    "study.distilled_store": ("", None, "a distilled store (train split = the synthetic set, "
                              "similarity.npy = Ŝ) used with every objective; '' = distill"),
}
HELP = common.helps(KEYS)


def ranges() -> dict:
  return common.rules(KEYS)


def get_config(arg: str | None = None):
  """The study config; see the module docstring and :data:`HELP`."""
  kv = common.parse_arg(arg)
  c = common.build(KEYS)
  c.local = common.convert("local", kv.get("local", "0"), False)
  if c.local:
    c.update_from_flattened_dict({
        "scale": 0.02, "study.objectives": ("hopa", "3pair"), "study.T": 4, "study.n": 10,
        "study.real_batch": 48, "study.power_iters": 15, "study.power_tol": 1e-3,
        "study.start_epoch": 1, "experts.epochs": 2, "experts.batch_size": 32,
        "distill.iterations": 3, "distill.syn_steps": 2, "distill.mini_batch": 5,
        "distill.expert_epochs": 1, "distill.max_start_epoch": 1, "distill.sim_rank": 2})
  return common.check(common.apply_overrides(c, kv, skip=("local",)), ranges())
