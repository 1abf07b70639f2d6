r"""Trajectory-bound study (SPEC §5; HoPA Lemma 1 and Theorem 1): ``hopa_jax.study``.

  python -m experiments.bound_study --config=experiments/configs/bound.py:dataset=msrvtt_sim,scale=0.05 \
      --workdir=runs/bound

``arg`` is a comma-separated ``key=value`` list (big_vision style; a key is a dotted
path or a unique leaf name, tuples take ``+``: ``objectives=hopa+3pair``). ``local=1``
shrinks everything to a short CPU run (smoke tests, the notebook's small switch).

Sections: ``objective`` is the inner objective shared with HoPA and the experts
(``common.objective()``, the same defaults); ``experts`` and ``distill`` mirror
:class:`hopa_jax.experts.ExpertConfig` and :class:`hopa_jax.distill.DistillConfig`
(built as ``Cls(**section, objective=…, obj=…)``); ``study`` holds the study's own keys.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the study config; see the module docstring and :data:`HELP`."""
  kv = common.parse_arg(arg)
  local = common.convert("local", kv.get("local", "0"), False)

  c = ml_collections.ConfigDict()
  c.dataset = "msrvtt_sim"
  c.scale = 0.1
  c.data_dir = ""
  c.seed = 0
  c.local = local
  c.check_hashes = True
  c.progress = True

  c.objective = common.objective()

  # Start points θ₀: one real expert trajectory per objective; snapshot study.start_epoch.
  c.experts = ml_collections.ConfigDict(dict(
      num_experts=1, epochs=4, lr=0.01, lr_grid=(0.01, 0.03, 0.1, 0.3, 1.0), batch_size=128,
      init_noise=1e-3))

  # The short distillation of the 'distilled' rows (when study.distilled_store is empty).
  # The HoPA binary's default rule (adam, lr_data relative to the features' spread).
  c.distill = ml_collections.ConfigDict(dict(
      sim_kind="lowrank", sim_rank=10, sim_alpha=1.0, syn_steps=8, mini_batch=25,
      expert_epochs=2, max_start_epoch=2, grad_mode=common.placeholder(str), optimizer="adam",
      lr_data=0.01, lr_lr=0.01, lr_sim=0.01, momentum=0.5, learn_lr=True, iterations=200))

  c.study = ml_collections.ConfigDict(dict(
      objectives=("hopa", "3pair", "tbind", "vbind", "infonce"),
      T=16, eta=0.01, n=100, real_batch=512, power_iters=50, power_tol=1e-4, start_epoch=2,
      distilled_store=""))

  if local:
    c.scale = 0.02
    c.study.objectives = ("hopa", "3pair")
    c.study.T = 4
    c.study.n = 10
    c.study.real_batch = 48
    c.study.power_iters = 15
    c.study.power_tol = 1e-3
    c.study.start_epoch = 1
    c.experts.epochs = 2
    c.experts.batch_size = 32
    c.distill.iterations = 3
    c.distill.syn_steps = 2
    c.distill.mini_batch = 5
    c.distill.expert_epochs = 1
    c.distill.max_start_epoch = 1
    c.distill.sim_rank = 2

  return common.check(common.apply_overrides(c, kv, skip=("local",)), ranges())


def ranges() -> dict:
  """Every numeric key's range and every enumerated key's values (checked at parse time)."""
  from hopa_jax import distill, objectives
  return {
      "scale": "(0,1]", "seed": ">=0", **common.OBJECTIVE_RANGES,
      "experts.num_experts": ">=1", "experts.epochs": ">=1", "experts.lr": ">0",
      "experts.lr_grid": ">0", "experts.batch_size": ">=1", "experts.init_noise": ">=0",
      "distill.sim_kind": ("lowrank", "full"), "distill.sim_rank": ">=1",
      "distill.sim_alpha": ">0", "distill.syn_steps": ">=1", "distill.mini_batch": ">=1",
      "distill.expert_epochs": ">=1", "distill.max_start_epoch": ">=1",
      "distill.grad_mode": distill.GRAD_MODES, "distill.optimizer": distill.OPTIMIZERS,
      "distill.lr_data": ">0", "distill.lr_lr": ">0", "distill.lr_sim": ">0",
      "distill.momentum": ">=0", "distill.iterations": ">=0",
      "study.objectives": tuple(sorted(objectives.OBJECTIVES)), "study.T": ">=1",
      "study.eta": ">0", "study.n": ">=1", "study.real_batch": ">=0",
      "study.power_iters": ">=1", "study.power_tol": ">0", "study.start_epoch": ">=0"}


HELP = {
    **common.STORE_HELP,
    "dataset": "a store directory, or a simulator name (embed.simulate.DATASETS)",
    "seed": "simulator seed and root key (mmdd_jax.rng streams: real_batch, random_set, "
            "experts/<objective>, distill/<objective>, power/<objective>)",
    "local": "1: a seconds-long CPU run (scale 0.02, hopa+3pair, T=4, n=10, …)",
    "progress": "progress bars (bookkeeping: not part of the config fingerprint)",
    **common.OBJECTIVE_HELP,
    "experts.num_experts": "expert runs per objective (the study uses expert 0)",
    "experts.epochs": "SGD epochs per expert (≥ study.start_epoch; also the distillation's "
                      "expert range)",
    "experts.lr": "experts' SGD lr (explicit: the study selects nothing on validation); also "
                  "the distillation's initial η",
    "experts.lr_grid": "unused by the study (the experts section mirrors ExpertConfig; "
                       "HoPA's probe grid when experts.lr is None)",
    "experts.batch_size": "experts' real mini-batch size",
    "experts.init_noise": "std of the per-expert noise on the pretrained heads [R]",
    "distill.sim_kind": "similarity mining (lowrank | full) for every objective but infonce "
                        "(fixed)",
    "distill.sim_rank": "rank r of the low-rank Ŝ",
    "distill.sim_alpha": "scale α of the low-rank Ŝ",
    "distill.syn_steps": "student steps per distillation iteration",
    "distill.mini_batch": "synthetic mini-batch per student step (capped at study.n)",
    "distill.expert_epochs": "target offset in expert epochs",
    "distill.max_start_epoch": "start epochs s ~ U{0..max_start_epoch−1}",
    "distill.grad_mode": "full | tesla (None = full)",
    "distill.optimizer": "adam (lr_data relative to the features' spread) | sgd (SPEC §3.5)",
    "distill.lr_data": "lr of the synthetic features",
    "distill.lr_lr": "lr of log η",
    "distill.lr_sim": "lr of the Ŝ params",
    "distill.momentum": "sgd momentum",
    "distill.learn_lr": "learn η (else it stays at experts.lr)",
    "distill.iterations": "distillation iterations per objective (0 = no distilled rows unless "
                          "study.distilled_store); a short distillation, not a converged one",
    "study.objectives": "inner objectives, '+'-separated (hopa_jax.objectives.OBJECTIVES)",
    "study.T": "SGD steps of both rollouts",
    "study.eta": "step size η shared by both rollouts",
    "study.n": "synthetic instances (Random: n random real train instances)",
    "study.real_batch": "fixed real subset for the deterministic real gradient (0 = all)",
    "study.power_iters": "power iterations (HVPs) per step for L_t",
    "study.power_tol": "power iteration stops at this relative change",
    "study.start_epoch": "θ₀ = expert 0 after this many epochs",
    "study.distilled_store": "a distilled store (train split = the synthetic set, "
                             "similarity.npy = Ŝ) used with every objective; '' = distill",
}
