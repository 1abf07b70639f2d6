r"""HoPA and the trajectory-matching baselines (SPEC §3, defaults §3.7).

  python -m experiments.hopa --config=experiments/configs/hopa.py:dataset=msrvtt_sim,n=100 \
      --config.distill.iterations=500 --workdir=runs/hopa_msrvtt_100

The keys, their defaults, rules and meanings: ``hopa_jax.plan.KEYS`` (``--help`` lists
them). Switches (``arg``): ``dataset`` and ``n`` pick ``distill.lr_sim``
(``optimizer=sgd``), ``sim_rank``, ``sim_alpha``, ``iterations`` and ``max_start_epoch``
from HoPA's Appendix B.2 (MSR-VTT, VGGSound-S, DiDeMo at n = 100 / 200 / 500; the nearest
n, MSR-VTT's for other datasets); ``method``; ``optimizer`` the lrs; ``local=1`` shrinks
everything to a seconds-long run (n 20 unless given). Every other key: ``--config.a.b=``.
"""

from hopa_jax import plan
from mmdd_jax import keys

KEYS = plan.KEYS
SWITCHES = {"dataset": "dataset", "n": "n", "method": "method",
            "optimizer": "distill.optimizer", "local": "local"}

# (lr_sim, sim_rank, sim_alpha, iterations, max_start_epoch) per family and n bucket.
_TABLE = {"msrvtt": {100: (10.0, 10, 1.0, 2000, 5), 200: (10.0, 20, 0.5, 2000, 5),
                     500: (100.0, 20, 0.01, 3000, 7)},
          "vggsound": {100: (10.0, 10, 1.0, 2000, 5), 200: (10.0, 20, 1.0, 2000, 5),
                       500: (100.0, 40, 0.1, 3000, 7)},
          "didemo": {100: (10.0, 10, 1.0, 2000, 5), 200: (10.0, 20, 0.5, 2000, 5),
                     500: (100.0, 20, 0.05, 3000, 7)}}


def family(dataset: str) -> str:
  return next((f for f in ("vggsound", "didemo") if f in dataset.lower()), "msrvtt")


def bucket(n: int) -> int:
  return 100 if n <= 150 else (200 if n <= 350 else 500)


def get_config(arg: str | None = None):
  c, a = keys.switched(KEYS, arg, SWITCHES)
  d = c.distill
  lr_sim, d.sim_rank, d.sim_alpha, d.iterations, d.max_start_epoch = \
      _TABLE[family(c.dataset)][bucket(c.n)]
  if d.optimizer != "adam":
    d.lr_data, d.lr_lr, d.lr_sim = 100.0, 1e-4, lr_sim
  if c.local:
    c.update_from_flattened_dict({
        "scale": 0.05, "n": a.get("n", min(c.n, 20)), "ckpt_every": 3, "log_every": 2,
        "experts.num_experts": 2, "experts.epochs": 3, "experts.batch_size": 32,
        "experts.lr_grid": (0.01, 0.1), "distill.expert_epochs": 1,
        "distill.max_start_epoch": 2, "distill.iterations": 6, "distill.syn_steps": 3,
        "distill.mini_batch": 10, "distill.sim_rank": min(d.sim_rank, 4), "eval.runs": 2,
        "eval.epochs": 4, "eval.max_epochs": 4, "eval.patience": 2})
  return c
