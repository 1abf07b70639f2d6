"""The one selection rule (:func:`mmdd_jax.data.first_best`) and the selections built on
it: the lr grids (:func:`mmdd_jax.data.choose`), the classification epochs
(:func:`mmdd_jax.classification.select_epochs`) and HoPA's early stopping
(:func:`hopa_jax.evaluate.train_early_stopping`), each checked against the rule it
implemented before it used ``first_best``."""

import math

import numpy as np

from mmdd_jax import classification, data


def test_first_best_earliest_of_ties_and_excluded_scores():
  assert data.first_best([1.0, 3.0, 2.0]) == 1
  assert data.first_best([3.0, 1.0, 3.0]) == 0
  assert data.first_best([3.0 - 1e-10, 3.0]) == 0          # within TIE: a tie
  assert data.first_best([3.0 - 1e-10, 3.0], tol=0.0) == 1  # exact ties only
  assert data.first_best([-math.inf, 1.0, -math.inf]) == 1
  assert data.first_best([float("nan"), 1.0]) == 1
  assert data.first_best([-math.inf, -math.inf]) == 0        # all excluded: the first


def _old_choose(candidates, scores):
  best = max(scores)
  return min(c for c, s in zip(candidates, scores) if s >= best - 1e-9)


def _old_select_epochs(curve):
  mean = np.asarray(curve, np.float64).mean(0)
  return int(np.flatnonzero(mean >= mean.max() - 1e-9)[0]) + 1


def test_choose_and_select_epochs_equal_their_former_rules():
  r = np.random.default_rng(0)
  for trial in range(300):
    g = int(r.integers(1, 7))
    cands = list(r.permutation([0.001, 0.003, 0.01, 0.03, 0.1, 0.3])[:g].tolist())
    scores = (r.integers(0, 4, g) * 12.5).tolist()
    if trial % 3 == 0:
      scores = [s if r.random() > 0.3 else -math.inf for s in scores]
    if trial % 5 == 0:
      scores = list(np.asarray(scores, np.float32))        # the teacher probe's dtype
    assert data.choose(cands, scores) == _old_choose(cands, scores)
    curve = r.integers(0, 5, (int(r.integers(1, 4)), int(r.integers(1, 40)))) * 20.0
    curve = curve.astype(np.float32)
    curve[:, r.random(curve.shape[1]) < 0.4] = -np.inf
    assert classification.select_epochs(curve) == _old_select_epochs(curve)


def test_running_first_best_equals_strict_improvement():
  """HoPA's early stopping: "the check becomes the first best (tol 0)" is "the score
  beats the best so far" (the rule it ran before)."""
  r = np.random.default_rng(1)
  for _ in range(200):
    s = (r.integers(0, 5, int(r.integers(1, 30))) * 6.25).astype(np.float32)
    best, hist = -np.inf, []
    for v in s:
      hist.append(v)
      assert (data.first_best(hist, tol=0.0) == len(hist) - 1) == (v > best)
      best = max(best, v)
