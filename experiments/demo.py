r"""The main job on the embedded default data (no downloads, CPU, minutes).

  python -m experiments.demo --workdir runs/demo      # what `make demo` runs

Simulates msrvtt_sim and prints a retrieval table like HoPA's Table 1 (Zero-shot, Full,
Random, LoRS and HoPA at the same n, every row evaluated by the same
validation-selected protocol; <workdir>/avg_r1.png plots avg R@1 by method), then
simulates vggs10k_sim and prints ImageBindDC's 1-ipc classification table (Random,
Herding, DM, MMD, AVDD, ImageBindDC, Full). Settings: experiments/configs/demo.py.
"""

import os
import time

from absl import flags
from ml_collections import config_flags

from bindc_jax import run as bindc_run
from experiments.configs import bindc as bindc_config
from experiments.configs import common
from experiments.configs import demo as demo_config
from experiments.configs import hopa as hopa_config
from hopa_jax import run as hopa_run
from hopa_jax import table
from mmdd_jax import cli, results, workdir

_CONFIG = config_flags.DEFINE_config_file(
    "config", demo_config.__file__, common.config_help(demo_config))
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "output directory (one workdir per row)")
_FRESH = flags.DEFINE_bool("fresh", False, "start over: the workdir's old contents (rows and "
                           "shared experts) are moved to <workdir>.old-<time>/")


def main(argv):
  del argv
  c, wd, t0 = _CONFIG.value, _WORKDIR.value, time.time()
  hcfg = hopa_config.get_config(f"dataset=msrvtt_sim,scale={c.scale},seed={c.seed},n={c.n},"
                                + c.hopa)
  if _FRESH.value and workdir.move_aside(wd):
    print(f"{wd}: --fresh: the previous demo was moved aside")
  rows = table.rows_for(hcfg, wd, list(c.methods), [c.n], hopa_run.train_and_evaluate)
  table.plot(rows, os.path.join(wd, "avg_r1.png"))
  md = results.write_results(wd, rows, title=f"msrvtt_sim (scale {c.scale:g}): cross-modal "
                             "retrieval, R@1 / R@5 (%)")
  print("\n" + md)
  bcfg = bindc_config.get_config(f"dataset=vggs10k_sim,scale={c.cls_scale},seed={c.seed},"
                                 f"distill.iterations={c.cls_iterations},{c.bindc}")
  cls = bindc_run.train_and_evaluate(bcfg, os.path.join(wd, "bindc_vggs10k"))
  print(f"\n# vggs10k_sim (scale {c.cls_scale:g}), 1 ipc: classification accuracy (%, mean ± "
        f"std over {cls[0]['runs']} runs; bindc = ImageBindDC)\n\n"
        f"{bindc_run.results_table(cls)}\n")
  print(f"demo finished in {(time.time() - t0) / 60:.1f} min; files under {wd}")


if __name__ == "__main__":
  cli.run(main, __doc__)
