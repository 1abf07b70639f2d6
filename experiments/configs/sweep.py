r"""The HoPA paper's Tables 1–3, 5 and the ablations by one resumable sweep (issues 19, 20).

  python -m experiments.hopa_sweep --workdir=runs/sweep
  python -m experiments.hopa_sweep --workdir=runs/sweep --config=experiments/configs/sweep.py:only=1/4

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

from experiments.configs import common
from experiments.configs import hopa

DATASETS = ("msrvtt_sim", "vggsound_s_sim", "didemo_sim")

PHASES = (
    "msrvtt_sim/100/main/cpu/0",
    "vggsound_s_sim/100/main/cpu/0",
    "didemo_sim/100/main/cpu/0",
    "all/100/ablations/cpu/0",
    "msrvtt_sim/100/main/cpu/1|2",
    "all/200/main/cpu/0",
    "all/500/main/cpu/0",
    "msrvtt_sim/100/main|ablations/spec/0",
    # Beyond issue 19's columns (issue 20: "at every n the CPU allows").
    "msrvtt_sim/100/ablations/cpu/1|2",
    "all/200|500/ablations/cpu/0",
)

BUDGETS = {"cpu": (10, 10, 0.5, 16, 5), "spec": (20, 10, 1.0, 16, 5)}
KEYS = {
    "base": ("progress=0", None, "overrides of experiments/configs/hopa.py applied to every "
             "row (e.g. 'scale=1,data_dir=runs/data'; dataset, n, method, seed and the "
             "budget's keys are the sweep's)"),
    "datasets": (DATASETS, None, "what 'all' in a phase means"),
    "phases": (PHASES, None, "the priority order: DATASETS/NS/SETS/BUDGET/SEEDS per phase, "
               "items joined by '|' (module docstring); rows already planned by an earlier "
               "phase are not repeated"),
    "method_sets.main": (("zero_shot", "full", "random", "mtt_vl", "tesla", "lors", "repblend",
                          "hopa", "3pair", "tbind", "vbind"), None, "Tables 1–3 and 5: the "
                         "reference rows, the baselines and the pairwise variants (Random / "
                         "Full are evaluated once per inner objective of the distilled "
                         "methods, hopa_jax.table.plan)"),
    "method_sets.ablations": (("no_lmod", "no_linst", "no_mining", "rank2"), None,
                              "Figure 2 / Table 10 and Table 6 (issue 20)"),
    "common_objective": ("infonce", hopa.objective_names, "the one evaluation "
                         "objective of the common-evaluation view (every distilled set, Random "
                         "and Full; docs/results.md says why infonce)"),
    **{f"budgets.{b}.{k}": (v, rule, f"{b} budget: {meaning}")
       for b, values in BUDGETS.items()
       for k, v, rule, meaning in zip(
           ("num_experts", "expert_epochs", "iterations", "syn_steps", "eval_runs"), values,
           (">=1", ">=1", "(0,1]", ">=1", ">=1"),
           ("expert trajectories", "epochs per expert", "fraction of the config's "
            "distillation iterations (SPEC §3.7: 2000 / 2000 / 3000 at n = 100 / 200 / 500)",
            "student steps per iteration", "evaluation runs (must equal every budget's)"))},
    "only": ("", None, "'' = every row; 'k/N' = the k-th of N interleaved parts of the row list "
             "(run N jobs against one workdir; rows are locked, experts shared)"),
    "max_rows": (0, ">=0", "stop after computing this many rows (0 = no limit; finished rows "
                 "read do not count)"),
    "time_limit_min": (0.0, ">=0", "start no row after this many minutes of the sweep (0 = no "
                       "limit; a row started runs to its end: benchmarks/gpu_session.sh's time "
                       "box)"),
    "prune_experts": (True, None, "delete an experts directory's trajectories once every row "
                      "of the plan that uses it has finished (≈ 1.2 GB per cpu group at scale "
                      "1; the config and lr_teacher choice stay)"),
    "dry_run": (False, None, "print the planned rows (order, workdir, finished or not) and "
                "stop"),
}
HELP = common.helps(KEYS)


def ranges() -> dict:
  return common.rules(KEYS)


def get_config(arg: str | None = None):
  return common.check(common.apply_overrides(common.build(KEYS), common.parse_arg(arg)),
                      ranges())
