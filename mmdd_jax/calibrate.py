"""Calibrates a simulator's constants against the papers' method-agnostic rows.

Retrieval sets: the per-modality reliabilities ``r_m`` are fitted so that the Full
protocol's R@1 (averaged over the two directions of each modality pair) matches the
paper's Full row. With three modalities the three pair correlations ``ρ_ab = √(r_a r_b)``
determine the ``r_m`` exactly; each pair's ``log ρ`` is moved by a secant step on
``logit(R@1)``. Classification sets: the class strength is bisected so that the
full-data linear-head accuracy matches the paper. For the v2 classification simulators
that accuracy is measured with the Full row's protocol of ``experiments/bindc.py``
(linear heads on the train part of the stratified validation split, epochs chosen on
validation, mean over ``runs`` 5 runs on the test split); the class structure's other
constants are fixed beforehand (``embed.simulate.ClassStructure``) and never tuned here.

Never calibrate against a distillation method: only Full / Zero-shot / full-data rows
(:mod:`mmdd_jax.reference`). The binary is ``experiments/calibrate_sim.py``; it prints
the constants to paste into ``embed/simulate.py``'s ``DATASETS``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tempfile
from typing import Callable

import jax
import numpy as np

from embed import simulate
from mmdd_jax import classification, data, reference

# Paper Full rows (R@1 per direction) and full-data accuracies, issue 2 / the papers.
PAPER_FULL_R1 = {
    "msrvtt_sim": {"VT": 37.1, "TV": 36.2, "VA": 24.4, "AV": 22.8, "TA": 9.0, "AT": 6.1},
    "vggsound_s_sim": {"VT": 6.8, "TV": 8.6, "VA": 28.0, "AV": 26.6, "TA": 7.5, "AT": 4.8},
    "didemo_sim": {"VT": 32.7, "TV": 31.9, "VA": 20.7, "AV": 19.5, "TA": 5.6, "AT": 4.8},
}
PAPER_FULL_ACC = {"vggs10k_sim": 68.2, "nyuv2_sim": 98.6, "ave_sim": 75.0}


def _logit(p: float) -> float:
  p = min(max(p / 100.0, 1e-3), 1 - 1e-3)
  return math.log(p / (1 - p))


def measure_retrieval(spec, seed):
  with tempfile.TemporaryDirectory() as d:
    st = simulate.simulate(spec.name, d, spec=spec, seed=seed)
    r = reference.reference_retrieval(st, jax.random.key(seed))
  return r["zero_shot"][0], r["full"][0]


def pair_r1(per_dir, a, b):
  return 0.5 * (per_dir[a + b]["R@1"] + per_dir[b + a]["R@1"])


def calibrate_retrieval(spec: simulate.SimSpec, iters: int = 8, tol: float = 1.5, seed: int = 0,
                        log: Callable[[str], None] = print) -> simulate.SimSpec:
  """Fits ``spec.reliability`` to the paper's Full pair R@1 (secant steps on
  ``logit(R@1)`` per pair's ``log ρ``); returns the calibrated spec."""
  letters = {"vision": "V", "audio": "A", "text": "T"}
  mods = list(spec.modalities)
  pairs = list(itertools.combinations(mods, 2))
  target = {p: 0.5 * (PAPER_FULL_R1[spec.name][letters[p[0]] + letters[p[1]]]
                      + PAPER_FULL_R1[spec.name][letters[p[1]] + letters[p[0]]]) for p in pairs}
  prev = {}
  for it in range(iters):
    zs, full = measure_retrieval(spec, seed)
    got = {p: pair_r1(full, letters[p[0]], letters[p[1]]) for p in pairs}
    log(f"iter {it}: r={dict(spec.reliability)} full pair R@1="
          f"{ {letters[a] + letters[b]: round(v, 1) for (a, b), v in got.items()} } "
          f"target={ {letters[a] + letters[b]: v for (a, b), v in target.items()} } "
          f"zero-shot avg={np.mean([v['R@1'] for v in zs.values()]):.1f} "
          f"full avg={np.mean([v['R@1'] for v in full.values()]):.1f}")
    if all(abs(got[p] - target[p]) <= tol for p in pairs):
      break
    log_rho = {p: 0.5 * (math.log(spec.reliability[p[0]]) + math.log(spec.reliability[p[1]]))
               for p in pairs}
    new_log_rho = {}
    for p in pairs:
      err = _logit(target[p]) - _logit(got[p])
      slope = 6.0  # d logit(R@1) / d log ρ, first guess; secant afterwards
      if p in prev and abs(log_rho[p] - prev[p][0]) > 1e-6:
        s = (_logit(got[p]) - prev[p][1]) / (log_rho[p] - prev[p][0])
        if s > 0.5:
          slope = s
      new_log_rho[p] = log_rho[p] + float(np.clip(err / slope, -0.4, 0.4))
      prev[p] = (log_rho[p], _logit(got[p]))
    (a, b), (a2, c), (b2, c2) = pairs
    lr = {a: new_log_rho[(a, b)] + new_log_rho[(a, c)] - new_log_rho[(b, c)],
          b: new_log_rho[(a, b)] + new_log_rho[(b, c)] - new_log_rho[(a, c)],
          c: new_log_rho[(a, c)] + new_log_rho[(b, c)] - new_log_rho[(a, b)]}
    rel = {m: float(np.clip(math.exp(v), 0.01, 0.99)) for m, v in lr.items()}
    spec = dataclasses.replace(spec, reliability={m: round(rel[m], 4) for m in mods})
  return spec


def full_accuracy(st, seed: int, runs: int = 5) -> list[float]:
  """The Full row of ``experiments/bindc.py`` (linear heads, validation-chosen epochs)."""
  tr = data.load_split(st, "train", "embeddings")
  te = data.load_split(st, "test", "embeddings")
  y, yte = np.asarray(st.labels("train")), np.asarray(st.labels("test"))
  tr_idx, va_idx = data.validation_split(len(y), seed=seed, labels=y)
  ep = max(30, math.ceil(300 / max(len(tr_idx) // min(256, len(tr_idx)), 1)))
  return classification.evaluate_with_validation(
      jax.random.fold_in(jax.random.key(seed), 1), data.take_rows(tr, tr_idx), y[tr_idx],
      data.take_rows(tr, va_idx), y[va_idx], te, yte, st.num_classes, runs=runs,
      max_epochs=ep)["test"]


def calibrate_classification(spec: simulate.SimSpec, iters: int = 8, tol: float = 1.5,
                             seed: int = 0, runs: int = 5, lo: float = 0.0, hi: float = 4.0,
                             log: Callable[[str], None] = print) -> simulate.SimSpec:
  """Bisects ``spec.class_strength`` in ``[lo, hi]`` until the full-data accuracy is
  within ``tol`` points of the paper's; returns the calibrated spec."""
  target = PAPER_FULL_ACC[spec.name]
  for it in range(iters):
    with tempfile.TemporaryDirectory() as d:
      st = simulate.simulate(spec.name, d, spec=spec, seed=seed)
      if spec.version == 1:
        acc = float(np.mean(reference.reference_classification(st, jax.random.key(seed), runs=3)))
      else:
        acc = float(np.mean(full_accuracy(st, seed, runs)))
    log(f"iter {it}: class_strength={spec.class_strength:.4f} accuracy={acc:.1f} target={target}")
    if abs(acc - target) <= tol:
      break
    if acc < target:
      lo = spec.class_strength
    else:
      hi = spec.class_strength
    spec = dataclasses.replace(spec, class_strength=round(0.5 * (lo + hi), 4))
  return spec


def calibrate(dataset: str, *, iters: int = 8, tol: float = 1.5, seed: int = 0, runs: int = 5,
              lo: float = 0.0, hi: float = 4.0,
              log: Callable[[str], None] = print) -> simulate.SimSpec:
  """The calibrated spec of the simulator ``dataset`` (a key of ``simulate.DATASETS``
  with a paper row in :data:`PAPER_FULL_R1` or :data:`PAPER_FULL_ACC`)."""
  if dataset not in simulate.DATASETS:
    raise ValueError(f"dataset: expected one of {sorted(simulate.DATASETS)}, found '{dataset}'")
  spec = simulate.DATASETS[dataset]
  if spec.name in PAPER_FULL_R1:
    return calibrate_retrieval(spec, iters, tol, seed, log=log)
  if spec.name in PAPER_FULL_ACC:
    return calibrate_classification(spec, iters, tol, seed, runs, lo, hi, log=log)
  raise ValueError(f"dataset: expected a simulator with a paper Full row "
                   f"({sorted(PAPER_FULL_R1) + sorted(PAPER_FULL_ACC)}), found '{dataset}'")
