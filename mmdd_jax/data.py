"""Resolving a dataset argument (store directory or simulator name) to a store, and
loading splits as float32 arrays."""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from embed import simulate, store as store_lib

DEFAULT_DATA_DIR = os.environ.get("MMDD_DATA_DIR", os.path.join("runs", "data"))


def resolve_store(dataset: str, *, scale: float = 1.0, seed: int = 0,
                  data_dir: str | None = None, modalities: Iterable[str] | None = None
                  ) -> store_lib.Store:
  """``dataset`` is a store directory, or a simulator name (``msrvtt_sim`` …) whose
  store is written once under ``data_dir`` (default ``runs/data``) and reused."""
  if os.path.isdir(dataset) or os.sep in dataset:
    st = store_lib.Store(dataset)
  elif dataset in simulate.DATASETS:
    digest = simulate.spec_digest(simulate.DATASETS[dataset])
    d = os.path.join(data_dir or DEFAULT_DATA_DIR, f"{dataset}-scale{scale:g}-seed{seed}-{digest}")
    if os.path.exists(os.path.join(d, store_lib.MANIFEST)):
      st = store_lib.Store(d)
    else:
      st = simulate.simulate(dataset, d, scale=scale, seed=seed)
  else:
    raise store_lib.StoreError(
        f"dataset '{dataset}': expected a store directory (with manifest.json) or one of "
        f"the simulators {sorted(simulate.DATASETS)}")
  if modalities is not None:
    st.require_modalities(modalities)
  return st


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
