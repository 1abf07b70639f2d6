r"""The HoPA paper's Tables 1–3, 5 and the ablations by one resumable sweep (issues 19, 20).

  python -m experiments.hopa_sweep --workdir=runs/sweep
  python -m experiments.hopa_sweep --workdir=runs/sweep --config=experiments/configs/sweep.py --config.only=1/4

Every row is one :func:`hopa_jax.run.train_and_evaluate` workdir built from
``experiments/configs/hopa.py`` (``base`` + dataset + n + method, so the per-dataset / per-n
defaults of SPEC §3.7 apply), then the budget's keys, identical for every method.

**Budgets** (fixed before any cell was run, 2026-12-01; never changed after a result):

* ``spec`` — SPEC §3.7: 20 experts × 10 epochs, the config's iterations (2000 / 2000 /
  3000 at n = 100 / 200 / 500, every dataset), syn_steps 16, 5 evaluation runs;
* ``cpu`` — 10 experts × 10 epochs, half those iterations (1000 / 1000 / 1500),
  syn_steps 16, 5 evaluation runs (docs/results.md states its cost).

Both budgets evaluate identically (``eval_runs``), so Zero-shot, Full and Random (nothing
distilled) are computed once and shared by both.

**Phases** (priority order; a partial sweep is most useful in this order): each phase is
``DATASETS/NS/SETS/BUDGET/SEEDS`` with ``|`` between items; ``all`` = every dataset of
``datasets``; SETS name ``method_sets`` entries (or methods).
"""

from __future__ import annotations

from mmdd_jax import keys
from hopa_jax import sweep

KEYS = sweep.KEYS


def get_config(arg: str | None = None):
  return keys.switched(KEYS, arg)[0]
