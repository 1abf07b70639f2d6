"""The one selection rule for the learning rate of every distribution-matching method.

Rule (applied identically to DM, MMD, AVDD, CFD-only, ImageBindDC and every ablation;
it names no method):

1. Updates are *normalised* (:func:`bindc_jax.distill.normalize_rows`): each synthetic
   instance moves by ``lr`` (times the momentum factor) along its gradient direction,
   so one grid of step lengths means the same thing for every loss, whatever its scale.
2. Each ``lr`` of the grid (default ``0.003, 0.01, 0.03, 0.1``) distils the set from the
   same initialisation and key for a short budget (``select_iterations`` steps) on the
   **train part** of the train split.
3. Each candidate set is scored by ``score_fn``: the validation accuracy of heads trained
   on it, with the evaluation epochs chosen on validation too
   (:func:`mmdd_jax.classification.evaluate_with_validation`, no test rows read).
4. The ``lr`` with the best score wins; ties go to the smaller ``lr``.

The chosen value, the grid and the scores are returned (and recorded in
``results.json``). SPEC's fixed rates stay reachable with ``select.enabled=False`` in the
config. Each candidate is one :func:`bindc_jax.distill.distill` (the project's loop driver).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax

from bindc_jax import distill as distill_lib
from mmdd_jax import data

DEFAULT_GRID = (0.003, 0.01, 0.03, 0.1)


# The best score's ``lr``; the smallest ``lr`` among ties (the project's one tie rule).
choose = data.choose


def select_lr(syn0: Mapping[str, Any], xs_c: Mapping[str, Any], mask: Any,
              cfg: distill_lib.DistillConfig, key: jax.Array,
              score_fn: Callable[[dict], float], *, grid: Sequence[float] = DEFAULT_GRID,
              iterations: int = 100, log_fn: Callable[..., None] | None = None) -> dict:
  """Runs the rule (module docstring) and returns ``{"lr", "grid", "scores",
  "iterations", "rule"}``.

  Args:
    syn0: the initial synthetic set ``{m: [C, ipc, d]}`` (the one the final run uses).
    xs_c, mask: the real train-part rows per class (never validation or test rows).
    cfg: the method's :class:`DistillConfig`; its ``lr`` is replaced by each candidate and
      ``normalize`` is forced on.
    key: the distillation key (the same for every candidate).
    score_fn: ``syn -> validation accuracy``.
    grid: candidate step lengths.
    iterations: the short budget per candidate.
    log_fn: called as ``log_fn(lr=..., score=...)`` after each candidate.
  """
  grid = sorted(float(g) for g in grid)
  if not grid:
    raise ValueError("lr grid: expected at least one learning rate, found none")
  scores = []
  for lr in grid:
    c = dataclasses.replace(cfg, lr=lr, normalize=True, iterations=int(iterations))
    syn = distill_lib.synthetic(distill_lib.distill(distill_lib.init_state(syn0, c), xs_c,
                                                    mask, c, key))
    scores.append(float(score_fn(syn)))
    if log_fn is not None:
      log_fn(lr=lr, score=scores[-1])
  return {"lr": choose(grid, scores), "grid": grid, "scores": scores,
          "iterations": int(iterations),
          "rule": "normalised updates; argmax validation accuracy over the grid after a "
                  "short distillation; ties -> smaller lr"}
