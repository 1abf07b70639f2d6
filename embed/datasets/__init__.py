"""Dataset adapters for the embedding stage (layouts in docs/embedding.md)."""

from __future__ import annotations

import inspect

from embed.datasets import manifest, papers
from embed.datasets.base import Dataset, DatasetError, Item

ADAPTERS = {
    "manifest": manifest.load,
    "msrvtt": papers.msrvtt,
    "vggsound_s": papers.vggsound_s,
    "didemo": papers.didemo,
    "ave": papers.ave,
    "vggs10k": papers.vggs10k,
    "nyuv2": papers.nyuv2,
}


def load_dataset(name: str, root: str, **kw) -> Dataset:
  """Runs adapter ``name`` on ``root``; keyword options an adapter does not take are ignored."""
  if name not in ADAPTERS:
    raise DatasetError(f"dataset: expected one of {sorted(ADAPTERS)}, found '{name}'")
  fn = ADAPTERS[name]
  params = inspect.signature(fn).parameters
  return fn(root, **{k: v for k, v in kw.items() if k in params})


__all__ = ["ADAPTERS", "Dataset", "DatasetError", "Item", "load_dataset"]
