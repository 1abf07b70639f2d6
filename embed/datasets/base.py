"""Dataset adapter interface: a dataset is a list of instances per split.

An adapter reads a dataset's own on-disk layout (``docs/embedding.md`` documents
each one) and returns a :class:`Dataset`: the modalities it provides, the class
names (if any), and per split a deterministic list of :class:`Item`. Media paths are
not opened here; the embedding stage loads them (and reports missing/unreadable
files per ``--on-bad-file``). This module imports neither torch nor JAX.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

MODALITIES = ("vision", "audio", "text", "depth")


class DatasetError(ValueError):
  """The dataset's index files are missing or malformed; the message names the file,
  the field, the expected and the found value."""


def err(path: str, field: str, expected: Any, found: Any) -> DatasetError:
  return DatasetError(f"{path}: field '{field}': expected {expected}, found {found}")


@dataclasses.dataclass(frozen=True)
class Item:
  """One instance. ``vision``/``audio``/``depth`` are file paths (``audio`` may be a
  video container, whose audio track is used); ``text`` is the caption itself."""
  id: str
  vision: str | None = None
  audio: str | None = None
  text: str | None = None
  depth: str | None = None
  label: int | None = None

  def get(self, modality: str):
    return getattr(self, modality)


@dataclasses.dataclass
class Dataset:
  name: str
  modalities: tuple[str, ...]
  splits: dict[str, list[Item]]
  class_names: list[str] | None = None
  extra: dict = dataclasses.field(default_factory=dict)

  def check(self) -> "Dataset":
    """Ids unique per split; labels present for all or none, and in range."""
    for split, items in self.splits.items():
      ids = [it.id for it in items]
      if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise err(f"{self.name}/{split}", "id", "unique instance ids", f"duplicates {dup}")
      labs = [it.label for it in items]
      if any(l is not None for l in labs):
        if any(l is None for l in labs):
          raise err(f"{self.name}/{split}", "label", "a label on every instance or none",
                    "some missing")
        if self.class_names is None:
          raise err(self.name, "class_names", "a list (instances carry labels)", None)
        bad = [l for l in labs if not 0 <= l < len(self.class_names)]
        if bad:
          raise err(f"{self.name}/{split}", "label", f"in [0, {len(self.class_names)})", bad[0])
    return self


def require_file(path: str, what: str) -> str:
  if not os.path.isfile(path):
    raise err(path, what, "an existing file (see docs/embedding.md for the layout)", "no file")
  return path


def find_media(directory: str, stem: str, exts: Sequence[str]) -> str:
  """``directory/stem.<ext>`` for the first existing ext, else the first candidate
  (so that a missing file is reported by the stage with its expected name)."""
  for e in exts:
    p = os.path.join(directory, stem + e)
    if os.path.exists(p):
      return p
  return os.path.join(directory, stem + exts[0])


VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".m4a")
