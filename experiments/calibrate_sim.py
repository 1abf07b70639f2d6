"""Calibrates a simulator's constants against the papers' method-agnostic rows.

  python -m experiments.calibrate_sim --dataset msrvtt_sim [--iters 8]

Runs :func:`mmdd_jax.calibrate.calibrate` (retrieval sets: the per-modality
reliabilities against the paper's Full R@1; classification sets: the class strength
against the full-data accuracy; never against a distillation method) and prints the
constants to paste into ``embed/simulate.py``'s ``DATASETS``. Writes nothing.
"""

from __future__ import annotations

from absl import flags

from mmdd_jax import calibrate, cli

_DATASET = flags.DEFINE_string("dataset", None, "simulator to calibrate (a key of "
                               "embed.simulate.DATASETS with a paper Full row)")
_ITERS = flags.DEFINE_integer("iters", 8, "maximum calibration iterations", lower_bound=1)
_TOL = flags.DEFINE_float("tol", 1.5, "stop when every pair / the accuracy is within this "
                          "many points", lower_bound=0.0)
_SEED = flags.DEFINE_integer("seed", 0, "simulator seed")
_RUNS = flags.DEFINE_integer("runs", 5, "evaluation runs per classification measurement",
                             lower_bound=1)
_LO = flags.DEFINE_float("lo", 0.0, "lower end of the class-strength bracket")
_HI = flags.DEFINE_float("hi", 4.0, "upper end of the class-strength bracket")


def main(argv):
  del argv
  if not _DATASET.value:
    raise ValueError("--dataset: expected a simulator name, found none")
  spec = calibrate.calibrate(_DATASET.value, iters=_ITERS.value, tol=_TOL.value,
                             seed=_SEED.value, runs=_RUNS.value, lo=_LO.value, hi=_HI.value,
                             log=lambda s: print(s, flush=True))
  print("calibrated:", spec)


if __name__ == "__main__":
  cli.run(main, __doc__)
