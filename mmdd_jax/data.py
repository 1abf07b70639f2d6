"""Resolving a dataset argument (store directory or simulator name) to a store, and
loading splits as float32 arrays."""

from __future__ import annotations

import math
import os
from typing import Iterable, Sequence

import numpy as np

from embed import simulate, store as store_lib
from mmdd_jax import distributed

DEFAULT_DATA_DIR = os.environ.get("MMDD_DATA_DIR", os.path.join("runs", "data"))


def resolve_store(dataset: str, *, scale: float = 1.0, seed: int = 0,
                  data_dir: str | None = None, modalities: Iterable[str] | None = None,
                  check: bool = True, check_hashes: bool = True,
                  splits: Sequence[str] = ("train", "test")) -> store_lib.Store:
  """``dataset`` is a store directory, or a simulator name (``msrvtt_sim`` …) whose
  store is written once under ``data_dir`` (default ``runs/data``) and reused.

  With ``check`` (every binary) the store is validated before any work
  (:func:`embed.store.validate`: schema, files, dtypes, row counts, dims, ids, labels,
  finite values, unit-norm embeddings, the ``splits`` present and non-empty, and — with
  ``check_hashes`` — every file's sha256); a problem stops with one line."""
  root = store_root(dataset, scale=scale, seed=seed, data_dir=data_dir)
  if dataset in simulate.DATASETS:
    # written once, by the writer (several processes: the others wait for it)
    distributed.on_writer(
        lambda: None if os.path.exists(os.path.join(root, store_lib.MANIFEST))
        else simulate.simulate(dataset, root, scale=scale, seed=seed), f"simulating {root}")
  if check:
    return store_lib.validate(root, modalities, check_hashes=check_hashes,
                              require_splits=splits, nonempty=splits)
  st = store_lib.Store(root)
  if modalities is not None:
    st.require_modalities(modalities)
  return st


def store_root(dataset: str, *, scale: float = 1.0, seed: int = 0,
               data_dir: str | None = None) -> str:
  """The store directory ``dataset`` names (a simulator's is not written here)."""
  if os.path.isdir(dataset) or os.sep in dataset:
    return dataset
  if dataset in simulate.DATASETS:
    digest = simulate.spec_digest(simulate.DATASETS[dataset])
    return os.path.join(data_dir or DEFAULT_DATA_DIR, f"{dataset}-scale{scale:g}-seed{seed}-{digest}")
  raise store_lib.StoreError(
      f"dataset '{dataset}': expected a store directory (with manifest.json) or one of "
      f"the simulators {sorted(simulate.DATASETS)}")


def load_split(st: store_lib.Store, split: str, kind: str = "features",
               modalities: Sequence[str] | None = None) -> dict[str, np.ndarray]:
  """``{modality: float32 [N, d]}`` for ``kind`` in {"features", "embeddings"}."""
  mods = list(modalities) if modalities is not None else st.modalities
  st.require_modalities(mods)
  get = st.features if kind == "features" else st.embeddings
  return {m: np.asarray(get(split, m), np.float32) for m in mods}


def check_subset_size(n: int, st: store_lib.Store, split: str = "train", key: str = "n") -> int:
  """``n`` synthetic instances drawn from ``split`` must satisfy ``1 ≤ n ≤ rows``."""
  rows = st.count(split)
  if not 1 <= int(n) <= rows:
    raise ValueError(f"config key '{key}': expected 1 ≤ n ≤ {rows} ({split} split of "
                     f"{st.root}), found {n}")
  return int(n)


VAL_FRACTION = 0.1
# The fewest validation rows a selection may read. Every selection scores a candidate by
# R@1 or accuracy over the k validation rows — a multiple of 100/k points — and breaks
# ties by taking the smallest candidate (:func:`choose`). With k = 1 every candidate
# scores 0 or 100, so nearly all tie and the tie rule, not the data, picks; k ≥ 10 keeps
# the score's step at ≤ 10 points, enough to tell a working candidate from a diverged
# or degenerate one. A floor against degenerate splits, not a recommended size (the
# paper datasets give hundreds of rows at val_fraction=0.1; the tests' tiny stores 16–20).
MIN_VAL_ROWS = 10


def validation_split(num_rows: int, *, frac: float = VAL_FRACTION, seed: int = 0,
                     labels: np.ndarray | None = None, key: str = "val_fraction",
                     min_rows: int = MIN_VAL_ROWS) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic ``(train_idx, val_idx)`` carved from a store's train split.

  The project's one rule for every selection (teacher lr, evaluation lr/epochs,
  distillation lr, …): selections read only the ``val_idx`` rows; methods, Random
  and Full train only on ``train_idx``; the stored test split is read once, for the
  final report. ``round(frac · num_rows)`` rows (at least 1, and one per class with
  ``labels``) are drawn from a NumPy generator seeded by ``(seed, "validation")``,
  so the split depends on the seed and the row count only — never on a method.
  With ``labels`` the draw is stratified: each class gives ``round(frac · count)``
  rows (at least 1 when it has ≥ 2 rows). Both index arrays are sorted.

  A split of fewer than ``min_rows`` rows (:data:`MIN_VAL_ROWS`, 10) is an error
  naming the config key ``key`` (the fraction's), the minimum and the fraction that
  reaches it: selections on it would be ties.
  """
  if not 0.0 < frac < 1.0:
    raise ValueError(f"config key '{key}': expected a validation fraction 0 < f < 1, found {frac}")
  if num_rows < min_rows + 1:
    raise ValueError(f"train split: expected ≥ {min_rows + 1} rows to carve a validation "
                     f"split of ≥ {min_rows} rows (config key '{key}'), found {num_rows}")
  rng = np.random.default_rng([int(seed), 0x76616C])  # "val"
  if labels is None:
    k = min(max(int(round(frac * num_rows)), 1), num_rows - 1)
    val = rng.permutation(num_rows)[:k]
  else:
    labels = np.asarray(labels)
    if labels.shape[0] != num_rows:
      raise ValueError(f"labels: expected {num_rows} rows, found {labels.shape[0]}")
    val = []
    for c in np.unique(labels):
      rows = np.flatnonzero(labels == c)
      k = int(round(frac * rows.size))
      k = min(max(k, 1 if rows.size >= 2 else 0), rows.size - 1) if rows.size >= 2 else 0
      val.append(rng.permutation(rows)[:k])
    val = np.concatenate(val) if val else np.zeros(0, np.int64)
  if val.size < min_rows:
    need = math.ceil(1000 * min_rows / num_rows) / 1000
    raise ValueError(
        f"config key '{key}': expected a validation split of ≥ {min_rows} rows (every "
        f"selection scores its candidates on it; fewer rows make them tie), found "
        f"{val.size} ({key}={frac:g} of {num_rows} train rows"
        f"{', stratified by class' if labels is not None else ''}); raise {key} to about "
        f"{need:g} or more")
  val = np.sort(val.astype(np.int64))
  mask = np.ones(num_rows, bool)
  mask[val] = False
  return np.flatnonzero(mask), val


TIE = 1e-9   # scores within this of the best tie (the rule of :func:`first_best`)


def first_best(scores: Sequence[float], *, tol: float = TIE) -> int:
  """The project's one selection rule, for every selection on validation (the lr grids,
  the classification epochs, HoPA's early stopping): the index of the best score, the
  first among ties (scores within ``tol`` of the best). A score of ``-inf`` or NaN is
  excluded: never chosen unless all are (then index 0).

  ``tol=0`` is exact ties: the form a running selection needs (HoPA's early stopping,
  which keeps only the heads of its best checkpoint so far); with ``tol > 0`` a later
  score could move the first tie to an earlier checkpoint whose heads are gone."""
  vals = [s if s == s else -math.inf for s in scores]
  best = max(vals)
  return next(i for i, s in enumerate(vals) if s >= best - tol)


def choose(candidates: Sequence[float], scores: Sequence[float]) -> float:
  """:func:`first_best` over a grid: the candidate with the best score, the smallest
  candidate among ties (scores within :data:`TIE`). Candidates scored ``-inf``
  (excluded) are never chosen unless all are."""
  order = sorted(range(len(candidates)), key=lambda i: candidates[i])
  return candidates[order[first_best([scores[i] for i in order])]]


def take_rows(xs: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
  """``{m: xs[m][idx]}`` (a copy)."""
  return {m: np.asarray(v)[idx] for m, v in xs.items()}
