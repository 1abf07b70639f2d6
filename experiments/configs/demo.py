r"""The demo's settings (``python -m experiments.demo``, ``make demo``).

A CPU-sized trajectory-matching setting (the paper's is 20 experts × 10 epochs, 2000
iterations of 16 student steps: see docs/hopa.md) and ImageBindDC's 1-ipc table at a
small scale. Every row — Zero-shot, Full, Random and the distilled sets — is evaluated
by the same validation-selected protocol (docs/hopa.md, docs/bindc.md).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common

HELP = {
    "scale": "msrvtt_sim scale of the retrieval table",
    "seed": "simulator seed and every key",
    "n": "synthetic instances of Random / LoRS / HoPA",
    "methods": "rows of the retrieval table (hopa_jax.table plans Random/Full per objective)",
    "hopa": "overrides of experts/configs/hopa.py for the retrieval rows",
    "cls_scale": "vggs10k_sim scale of the classification table",
    "cls_iterations": "ImageBindDC / DM / MMD / AVDD iterations",
    "bindc": "overrides of experiments/configs/bindc.py for the classification rows",
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.scale = 0.2
  c.seed = 0
  c.n = 50
  c.methods = ("zero_shot", "full", "random", "lors", "hopa")
  c.hopa = ("num_experts=4,experts.epochs=6,max_start_epoch=3,expert_epochs=2,iterations=200,"
            "syn_steps=8,eval.runs=3,eval.lrs=0.003+0.01+0.03+0.1,eval.max_epochs=40,"
            "eval.patience=6,log_every=25,experts.lr_grid=0.03+0.1+0.3,progress=0")
  c.cls_scale = 0.25
  c.cls_iterations = 200
  c.bindc = ("ipc=1,num_freqs=512,select.iterations=50,progress=1,"
             "method=random+herding+dm+mmd+avdd+bindc+full")
  return common.apply_overrides(c, common.parse_arg(arg))
