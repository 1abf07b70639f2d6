"""Generic adapter: a CSV or JSONL index with columns ``id, split, vision, audio, text,
depth, label``.

* ``vision``: an image or a video file; ``audio``: a wav/flac/… file, or a video whose
  audio track is used; ``depth``: a ``.npy`` map or a 16-bit ``.png``; ``text``: the
  caption itself; ``label``: a class name (or an integer id when ``class_names.txt``
  lies beside the index).
* Empty cells (or missing JSON keys / ``null``) mean the modality is absent for that
  row. The dataset's modalities are those present in at least one row; a row that
  lacks one of them is reported by the stage as a bad instance (error, or ``skip``).
* Relative paths are relative to the index file's directory.
* Row order is kept (deterministic); ``split`` defaults to ``train`` when empty.
* Class ids: ``class_names.txt`` (one name per line) beside the index if present,
  else the sorted set of label strings.
"""

from __future__ import annotations

import csv
import json
import os

from embed.datasets.base import MODALITIES, Dataset, Item, err, require_file

COLUMNS = ("id", "split", "vision", "audio", "text", "depth", "label")
INDEX_NAMES = ("manifest.csv", "manifest.jsonl")


def _rows(path: str) -> list[dict]:
  if path.endswith(".jsonl"):
    rows = []
    with open(path, encoding="utf-8") as f:
      for ln, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          r = json.loads(line)
        except json.JSONDecodeError as e:
          raise err(f"{path}:{ln}", "line", "a JSON object", f"parse error {e}") from e
        if not isinstance(r, dict):
          raise err(f"{path}:{ln}", "line", "a JSON object", type(r).__name__)
        rows.append(r)
    return rows
  with open(path, encoding="utf-8", newline="") as f:
    rd = csv.DictReader(f)
    if rd.fieldnames is None or "id" not in rd.fieldnames:
      raise err(path, "header", f"a CSV header with at least 'id' among {COLUMNS}", rd.fieldnames)
    unknown = set(rd.fieldnames) - set(COLUMNS)
    if unknown:
      raise err(path, "header", f"columns among {COLUMNS}", sorted(unknown))
    return list(rd)


def load(root: str, index: str | None = None) -> Dataset:
  """Reads ``index`` (default: ``root/manifest.csv`` or ``root/manifest.jsonl``)."""
  if index is None:
    cands = [os.path.join(root, n) for n in INDEX_NAMES if os.path.exists(os.path.join(root, n))]
    if not cands:
      raise err(os.path.join(root, INDEX_NAMES[0]), "index",
                f"one of {INDEX_NAMES} in --root (or --index PATH)", "no file")
    index = cands[0]
  require_file(index, "index")
  base = os.path.dirname(os.path.abspath(index))
  rows = _rows(index)
  present: set[str] = set()
  cleaned = []
  for i, r in enumerate(rows):
    def cell(k):
      v = r.get(k)
      if v is None:
        return None
      v = str(v) if not isinstance(v, str) else v
      return v if v.strip() != "" else None
    rid = cell("id")
    if rid is None:
      raise err(f"{index} row {i + 1}", "id", "a non-empty instance id", repr(r.get("id")))
    c = {k: cell(k) for k in COLUMNS}
    for m in MODALITIES:
      if c[m] is not None:
        present.add(m)
        if m != "text" and not os.path.isabs(c[m]):
          c[m] = os.path.join(base, c[m])
    cleaned.append(c)
  modalities = tuple(m for m in MODALITIES if m in present)
  if not modalities:
    raise err(index, "columns", f"at least one non-empty modality column of {MODALITIES}", "none")
  labels = [c["label"] for c in cleaned]
  class_names = None
  if any(l is not None for l in labels):
    cn_path = os.path.join(base, "class_names.txt")
    if os.path.exists(cn_path):
      with open(cn_path, encoding="utf-8") as f:
        class_names = [ln.strip() for ln in f if ln.strip()]
    else:
      class_names = sorted({l for l in labels if l is not None})
  lookup = {n: k for k, n in enumerate(class_names or [])}
  splits: dict[str, list[Item]] = {}
  for i, c in enumerate(cleaned):
    lab = None
    if c["label"] is not None:
      if c["label"] in lookup:
        lab = lookup[c["label"]]
      elif c["label"].lstrip("-").isdigit():
        lab = int(c["label"])
      else:
        raise err(f"{index} row {i + 1}", "label", f"one of {class_names[:5]}…", repr(c["label"]))
    split = c["split"] or "train"
    splits.setdefault(split, []).append(Item(
        id=c["id"], vision=c["vision"], audio=c["audio"], text=c["text"], depth=c["depth"],
        label=lab))
  return Dataset("manifest", modalities, splits, class_names,
                 extra={"index": os.path.abspath(index)}).check()
