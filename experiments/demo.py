r"""The main job on the embedded default data (no downloads, CPU, minutes).

  python -m experiments.demo --workdir runs/demo      # what `make demo` runs

Simulates ``msrvtt_sim`` (at ``--scale``), then prints the retrieval table
(Zero-shot and Full reference rows, and the distillation methods as they land).
Each part writes its own workdir under ``--workdir``.
"""

from __future__ import annotations

import os
import time

from absl import app, flags

from experiments import reference
from mmdd_jax import results

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "output directory")
flags.DEFINE_float("scale", 0.2, "msrvtt_sim scale for the retrieval table")
flags.DEFINE_integer("seed", 0, "simulator seed and training key")


def retrieval_rows(workdir: str, scale: float, seed: int) -> list[dict]:
  cfg = dict(dataset="msrvtt_sim", scale=scale, seed=seed, data_dir=None, runs=1, cls_runs=5,
             epochs=10, lr=0.01, batch_size=128, tau=reference.reference.FULL_TAU,
             task="retrieval")
  return reference.train_and_evaluate(cfg, os.path.join(workdir, "reference_msrvtt"))


def main(argv):
  del argv
  t0 = time.time()
  rows = retrieval_rows(FLAGS.workdir, FLAGS.scale, FLAGS.seed)
  md = results.write_results(
      FLAGS.workdir, rows,
      title=f"msrvtt_sim (scale {FLAGS.scale:g}): cross-modal retrieval, R@1 / R@5 (%)")
  print("\n" + md)
  print(f"demo finished in {(time.time() - t0) / 60:.1f} min; files under {FLAGS.workdir}")


if __name__ == "__main__":
  app.run(main)
