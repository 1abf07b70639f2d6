"""Adapters for the papers' datasets (SPEC §6). Layouts: docs/embedding.md.

Every adapter returns splits ``train`` and ``test`` (the names the JAX side reads)
with instances in a deterministic order. Media files are not opened here.
"""

from __future__ import annotations

import csv
import json
import os
import random
from typing import Sequence

from embed.datasets.base import (AUDIO_EXTS, VIDEO_EXTS, Dataset, Item, err, find_media,
                                 require_file)


def _first_existing(root: str, names: Sequence[str], what: str) -> str:
  for n in names:
    p = os.path.join(root, n)
    if os.path.exists(p):
      return p
  raise err(os.path.join(root, names[0]), what,
            f"one of {list(names)} under --root (see docs/embedding.md)", "no file")


def _read_csv(path: str, required: Sequence[str]) -> list[dict]:
  require_file(path, "index")
  with open(path, encoding="utf-8", newline="") as f:
    rd = csv.DictReader(f)
    missing = [c for c in required if c not in (rd.fieldnames or [])]
    if missing:
      raise err(path, "header", f"columns {list(required)}", rd.fieldnames)
    return list(rd)


def _load_json(path: str):
  require_file(path, "index")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise err(path, "json", "valid JSON", f"parse error {e}") from e


def _class_names(root: str, found: Sequence[str]) -> list[str]:
  p = os.path.join(root, "class_names.txt")
  if os.path.exists(p):
    with open(p, encoding="utf-8") as f:
      return [ln.strip() for ln in f if ln.strip()]
  return sorted(set(found))


# ---------------------------------------------------------------------------- MSR-VTT


def _labelled_rows(root: str, index_name: str, label_col: str):
  """Rows of ``<root>/<index_name>`` (columns ``id``, ``split``, ``label_col``), checked:
  returns ``(class_names, [(split, row, class id), …])``; a bad split or label names the row."""
  index = os.path.join(root, index_name)
  rows = _read_csv(index, ["id", "split", label_col])
  class_names = _class_names(root, [r[label_col] for r in rows])
  lookup = {n: i for i, n in enumerate(class_names)}
  out = []
  for i, r in enumerate(rows):
    sp = r["split"].strip()
    if sp not in ("train", "test"):
      raise err(f"{index} row {i + 2}", "split", "'train' or 'test'", repr(sp))
    if r[label_col] not in lookup:
      raise err(f"{index} row {i + 2}", label_col, "a name in class_names.txt", repr(r[label_col]))
    out.append((sp, r, lookup[r[label_col]]))
  return class_names, out


def msrvtt(root: str) -> Dataset:
  """MSR-VTT, 1kA split (9k train videos, 1k test video–sentence pairs): V, A, T.

  Train instances use each video's first caption (lowest ``sen_id``); test instances
  the JSFusion sentence. Audio is the video's audio track. Labels: the 20 MSR-VTT
  categories (names from ``category.txt`` if present, else ``category_XX``).
  """
  data = _load_json(_first_existing(root, ["MSRVTT_data.json", "msrvtt_data/MSRVTT_data.json"],
                                    "MSRVTT_data.json"))
  train_csv = _first_existing(root, ["MSRVTT_train.9k.csv", "msrvtt_data/MSRVTT_train.9k.csv"],
                              "train list")
  test_csv = _first_existing(root, ["MSRVTT_JSFUSION_test.csv",
                                    "msrvtt_data/MSRVTT_JSFUSION_test.csv"], "test list")
  vdir = os.path.join(root, "videos", "all")
  if not os.path.isdir(vdir):
    vdir = os.path.join(root, "videos")
  cats = {v["video_id"]: int(v["category"]) for v in data.get("videos", []) if "category" in v}
  first_caption: dict[str, tuple[int, str]] = {}
  for s in data.get("sentences", []):
    vid, sid = s["video_id"], int(s.get("sen_id", 0))
    if vid not in first_caption or sid < first_caption[vid][0]:
      first_caption[vid] = (sid, s["caption"])
  cat_txt = os.path.join(root, "category.txt")
  if os.path.exists(cat_txt):
    with open(cat_txt, encoding="utf-8") as f:
      names = {}
      for ln in f:
        parts = ln.strip().rsplit(None, 1)
        if len(parts) == 2 and parts[1].isdigit():
          names[int(parts[1])] = parts[0]
    class_names = [names.get(i, f"category_{i:02d}") for i in range(20)]
  else:
    class_names = [f"category_{i:02d}" for i in range(20)]
  use_labels = bool(cats)

  def item(vid, caption):
    path = find_media(vdir, vid, VIDEO_EXTS)
    return Item(id=vid, vision=path, audio=path, text=caption,
                label=cats.get(vid, None) if use_labels else None)

  train = []
  for r in _read_csv(train_csv, ["video_id"]):
    vid = r["video_id"]
    if vid not in first_caption:
      raise err(train_csv, f"video_id {vid}", "a video with captions in MSRVTT_data.json", "none")
    train.append(item(vid, first_caption[vid][1]))
  test = [item(r["video_id"], r["sentence"])
          for r in _read_csv(test_csv, ["video_id", "sentence"])]
  if use_labels and any(it.label is None for it in train + test):
    use_labels = False
    train = [Item(**{**it.__dict__, "label": None}) for it in train]
    test = [Item(**{**it.__dict__, "label": None}) for it in test]
  return Dataset("msrvtt", ("vision", "audio", "text"), {"train": train, "test": test},
                 class_names if use_labels else None, extra={"split": "1kA"}).check()


# ------------------------------------------------------------------------- VGGSound-S


def _vggsound_rows(path: str) -> list[tuple[str, int, str, str]]:
  require_file(path, "index")
  rows = []
  with open(path, encoding="utf-8", newline="") as f:
    for ln, r in enumerate(csv.reader(f), 1):
      if not r or (ln == 1 and not r[1].strip().isdigit()):
        continue  # blank line or a header
      if len(r) < 4:
        raise err(f"{path}:{ln}", "row", "ytid,start_seconds,label,split", r)
      rows.append((r[0].strip(), int(r[1]), r[2].strip(), r[3].strip()))
  return rows


def vggsound_s(root: str, seed: int = 0, n_train: int = 10000, n_test: int = 2000) -> Dataset:
  """VGGSound-S: ``n_train`` train / ``n_test`` test clips sampled (seed recorded) from
  VGGSound's official ``vggsound.csv`` lists, among the clips present under ``video/``.
  V, A, T (text = the class label); labels = VGGSound's 309 classes (sorted names)."""
  index = _first_existing(root, ["vggsound.csv"], "vggsound.csv")
  rows = _vggsound_rows(index)
  class_names = sorted({r[2] for r in rows})
  lookup = {n: i for i, n in enumerate(class_names)}
  vdir = os.path.join(root, "video")
  splits, extra = {}, {"seed": seed, "index": "vggsound.csv", "official": {}, "on_disk": {}}
  for split, official, n in (("train", "train", n_train), ("test", "test", n_test)):
    cand = []
    for ytid, start, label, sp in rows:
      if sp != official:
        continue
      stem = f"{ytid}_{start:06d}"
      path = find_media(vdir, stem, VIDEO_EXTS)
      if os.path.exists(path):
        cand.append(Item(id=stem, vision=path, audio=path, text=label, label=lookup[label]))
    cand.sort(key=lambda it: it.id)
    extra["official"][split] = sum(1 for r in rows if r[3] == official)
    extra["on_disk"][split] = len(cand)
    if len(cand) < n:
      raise err(vdir, f"{split} clips", f"at least {n} of the official '{official}' list on disk",
                len(cand))
    rng = random.Random(f"vggsound_s:{seed}:{split}")
    picked = sorted(rng.sample(range(len(cand)), n))
    splits[split] = [cand[i] for i in picked]
  return Dataset("vggsound_s", ("vision", "audio", "text"), splits, class_names, extra).check()


# ------------------------------------------------------------------------------ DiDeMo


def didemo(root: str) -> Dataset:
  """DiDeMo, official split (``train_data.json`` / ``test_data.json``): V, A, T.

  Text: all descriptions of a video joined in annotation order (paragraph-to-video
  retrieval, the usual protocol); audio: the video's audio track."""
  vdir = os.path.join(root, "videos")
  splits = {}
  for split in ("train", "test"):
    path = _first_existing(root, [f"{split}_data.json"], f"{split}_data.json")
    anns = _load_json(path)
    if not isinstance(anns, list):
      raise err(path, "top level", "a list of annotations", type(anns).__name__)
    paragraphs: dict[str, list[str]] = {}
    for a in anns:
      if "video" not in a or "description" not in a:
        raise err(path, "annotation", "keys 'video' and 'description'", sorted(a))
      paragraphs.setdefault(a["video"], []).append(a["description"].strip())
    items = []
    for video in sorted(paragraphs):
      stem = os.path.splitext(video)[0]
      p = find_media(vdir, stem, VIDEO_EXTS + (os.path.splitext(video)[1] or ".mp4",))
      items.append(Item(id=stem, vision=p, audio=p, text=" ".join(paragraphs[video])))
    splits[split] = items
  return Dataset("didemo", ("vision", "audio", "text"), splits, None).check()


# --------------------------------------------------------------------------------- AVE


def ave(root: str) -> Dataset:
  """AVE (28 audio-visual event classes): V, A; splits from ``trainSet.txt`` /
  ``testSet.txt`` (lines ``Category&VideoID&Quality&Start&End``)."""
  base = os.path.join(root, "AVE_Dataset") if os.path.isdir(os.path.join(root, "AVE_Dataset")) else root
  vdir = os.path.join(base, "AVE")

  def read(name):
    path = _first_existing(base, [name], name)
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
      for ln, line in enumerate(f, 1):
        parts = line.strip().split("&")
        if len(parts) < 2 or parts[0] == "Category":
          continue
        out.append((parts[0], parts[1]))
    if not out:
      raise err(path, "lines", "Category&VideoID&Quality&StartTime&EndTime", "none")
    return out

  tr, te = read("trainSet.txt"), read("testSet.txt")
  class_names = _class_names(base, [c for c, _ in tr + te])
  lookup = {n: i for i, n in enumerate(class_names)}

  def items(rows):
    res, seen = [], set()
    for cat, vid in rows:
      if vid in seen:
        continue
      seen.add(vid)
      p = find_media(vdir, vid, VIDEO_EXTS)
      res.append(Item(id=vid, vision=p, audio=p, label=lookup[cat]))
    return res

  return Dataset("ave", ("vision", "audio"), {"train": items(tr), "test": items(te)},
                 class_names).check()


# ---------------------------------------------------------------------------- VGGS-10K


def vggs10k(root: str) -> Dataset:
  """VGGS-10K (audio-visual classification): ``vggs10k.csv`` with columns
  ``id,label,split`` (split ``train``/``test``) and clips ``video/<id>.<ext>``
  (audio from ``audio/<id>.wav`` if present, else the video's track). V, A."""
  class_names, rows = _labelled_rows(root, "vggs10k.csv", "label")
  splits = {"train": [], "test": []}
  for sp, r, label in rows:
    v = find_media(os.path.join(root, "video"), r["id"], VIDEO_EXTS)
    a = find_media(os.path.join(root, "audio"), r["id"], AUDIO_EXTS)
    splits[sp].append(Item(id=r["id"], vision=v, audio=a if os.path.exists(a) else v,
                           label=label))
  return Dataset("vggs10k", ("vision", "audio"), splits, class_names).check()


# ------------------------------------------------------------------------------ NYU-v2


def nyuv2(root: str) -> Dataset:
  """NYU-v2 (depth + scene-class text): ``nyuv2.csv`` with columns ``id,split,scene``
  and depth maps ``depth/<id>.npy`` (metres) or ``depth/<id>.png`` (16-bit, mm). D, T
  (text = the scene name, underscores as spaces); labels = scene classes."""
  class_names, rows = _labelled_rows(root, "nyuv2.csv", "scene")
  splits = {"train": [], "test": []}
  for sp, r, label in rows:
    d = find_media(os.path.join(root, "depth"), r["id"], (".npy", ".png"))
    splits[sp].append(Item(id=r["id"], depth=d, text=r["scene"].replace("_", " "),
                           label=label))
  return Dataset("nyuv2", ("depth", "text"), splits, class_names).check()
