r"""The demo's settings (``python -m experiments.demo``, ``make demo``).

One budget for every row, chosen by time (≤ 10 min with installation on a 2-core CPU)
and by one resolution rule: **enough test rows that one hit is ≤ 0.1 point**
(≥ 1,000 test rows, ``min_test_rows``; the demo stops before any work if a config
breaks it, unless ``local=1``). Never chosen by which method wins.

* Retrieval: msrvtt_sim's test split at ``scale`` 1 (its 1,000 rows) with
  ``train_scale`` 0.4 of its 9,000 train rows (3,600: the same generative model and
  seed; ``train_scale=1`` is the standard scale-1 store). The train split sets the
  cost of the experts and of Full (≈ 4.5 min alone at 9,000 rows on 2 cores), not the
  resolution. Rows: Zero-shot, Random, HoPA, Full, Random and Full evaluated under
  each distilled method's objective (``hopa_jax.table.plan``), so HoPA is read against
  Random at the same n under the same evaluation. ``hopa`` holds a CPU-sized
  trajectory-matching budget (the paper's: 20 experts × 10 epochs, 2000 iterations of
  16 student steps, docs/hopa.md) and the evaluation keys every row shares. LoRS with
  its own Random and Full (``--config.methods="(..., 'lors')"``) adds ≈ 3 min and 9 output lines, so
  it is not in the default.
* Classification: vggs10k_sim (v2 simulator) at ``cls_scale`` 0.5 (1,000 test rows),
  1 ipc: Random, Herding, DM, ImageBindDC, Full.

Every row is evaluated by the validation-selected protocol (docs/hopa.md,
docs/bindc.md) on a validation split carved from train (10 %); the test split is read
once.
"""

from __future__ import annotations

from bindc_jax import distill as bindc_distill
from bindc_jax import plan as bindc_plan
from mmdd_jax import keys
from hopa_jax import distill as hopa_distill
from hopa_jax import plan as hopa_plan

KEYS = {
    "seed": (0, ">=0", "simulator seed and every key"),
    "data_dir": keys.STORE["data_dir"],
    "local": (False, None, "seconds-long run at a tiny size (tests; breaks the resolution "
              "rule)"),
    "min_test_rows": (1000, ">=1", "the resolution rule: the demo stops before any work if a "
                      "task's test split has fewer rows (one hit ≤ 100/min_test_rows points)"),
    "scale": (1.0, "(0,1]", "msrvtt_sim scale of the retrieval test split (1,000 · scale "
              "rows)"),
    "train_scale": (0.4, "(0,1]", "msrvtt_sim scale of the retrieval train split (9,000 · "
                    "train_scale rows, 10% of them validation; = scale: the standard store)"),
    "n": (100, ">=1", "synthetic instances of Random / HoPA (/ LoRS)"),
    "methods": (("zero_shot", "random", "hopa", "full"), tuple(hopa_distill.METHODS), "rows "
                "of the retrieval table (hopa_jax.table plans Random/Full per objective)"),
    "hopa": (keys.overrides(hopa_plan.KEYS, {
        "experts.num_experts": 4, "experts.epochs": 6, "distill.max_start_epoch": 3,
        "distill.expert_epochs": 2, "distill.iterations": 300, "distill.syn_steps": 8,
        "experts.lr_grid": (0.03, 0.1, 0.3), "eval.runs": 3,
        "eval.lrs": (0.003, 0.01, 0.03, 0.1), "eval.max_epochs": 40, "eval.patience": 6,
        "log_every": 25, "progress": False}), None,
        "keys of experiments/configs/hopa.py set for every retrieval row "
        "(--config.hopa.distill.iterations=…; None: that file's default)"),
    "cls_scale": (0.5, "(0,1]", "vggs10k_sim scale of the classification table (test split "
                  "2,000 · cls_scale rows)"),
    "cls_methods": (("random", "herding", "dm", "bindc", "full"),
                    tuple(bindc_distill.METHODS) + ("full",), "rows of the classification "
                    "table (bindc methods and full)"),
    "bindc": (keys.overrides(bindc_plan.KEYS, {
        "ipc": 1, "distill.iterations": 200, "loss.dist.num_freqs": 512,
        "select.iterations": 50, "log_every": 25, "progress": False}), None,
        "keys of experiments/configs/bindc.py set for every classification row "
        "(--config.bindc.distill.iterations=…; None: that file's default)"),
}
SWITCHES = ("local",)


def get_config(arg: str | None = None):
  c, _ = keys.switched(KEYS, arg, SWITCHES)
  if c.local:   # the rows' own local=1 sizes, not the demo's budget
    c.update_from_flattened_dict({"scale": 0.05, "train_scale": 0.05, "n": 10,
                                  "cls_scale": 0.05})
    c.hopa = keys.overrides(hopa_plan.KEYS, {"local": True, "progress": False,
                                             "eval.lrs": (0.01, 0.1)})
    c.bindc = keys.overrides(bindc_plan.KEYS, {"local": True, "progress": False})
  return c
