"""The embedding stage: ImageBind (PyTorch, frozen) features and embeddings → store v1.

    python -m embed.imagebind --dataset manifest --root DIR --checkpoint imagebind_huge.pth \\
        --out runs/stores/mine [--splits train,test] [--device cuda] [--batch-size 16] \\
        [--num-workers 4] [--num-shards N --shard-index I] [--on-bad-file error|skip]

Per modality it stores (SPEC §2):

* ``features`` — the trunk output that feeds ImageBind's projection head: the CLS
  token (vision, audio, depth) or the end-of-text token (text); for multi-clip inputs
  (video: 5 clips × 3 crops; audio: 3 clips) the mean over clips;
* ``embeddings`` — ImageBind's final output made unit-norm. ImageBind normalises
  each clip's projection, scales it (text ×logit scale, audio ×20, depth ×5) and
  averages over clips; the store keeps ``normalize(mean_clips(normalize(head(clip))))``
  (``--clip-pooling imagebind``, default). With ``--clip-pooling features`` the
  embedding is ``normalize(head(mean_clips(trunk)))`` instead, so that
  ``heads.npz`` applied to the stored features reproduces it exactly for every
  modality. Single-clip inputs (images, text, depth) agree under both;
* ``heads.npz`` — the checkpoint's head weights in the shared key format
  (``<m>/ln_scale``, ``<m>/ln_bias``, ``<m>/kernel`` ``[d_in, out]``, ``<m>/bias`` if the
  linear layer has one — ImageBind's released heads have none).

Rows are cut into shards of ``--shard-size`` instances in the adapter's deterministic
order; every finished shard is written atomically (:class:`embed.store.StoreWriter`), so
a killed run resumes at the first unfinished shard with no row lost or duplicated.
With ``--num-shards N --shard-index I`` (or under ``torchrun``: ``RANK``/``WORLD_SIZE``)
worker ``I`` writes the shards ``k ≡ I (mod N)``; then ``python -m embed.store merge OUT``
concatenates and validates. A missing or unreadable media file stops the run with
its name (``--on-bad-file error``) or drops that instance and records it in the
manifest's ``skipped`` list (``--on-bad-file skip``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np

from embed import store as store_lib
from embed.datasets import ADAPTERS, load_dataset
from embed.datasets.base import Dataset, Item

WRITER_JSON = ".writer.json"
CRASH_ENV = "EMBED_IMAGEBIND_CRASH_AFTER_SHARDS"  # tests: os._exit after K new shards
CLIP_POOLINGS = ("imagebind", "features")


class StageError(RuntimeError):
  """A run cannot proceed (bad media with --on-bad-file=error, mismatching resume)."""


# ------------------------------------------------------------------------- model


def head_parts(model, modality: str):
  """``(LayerNorm, Linear)`` of one modality's projection head."""
  import torch.nn as nn
  head = model.modality_heads[modality]
  mods = list(head.proj) if hasattr(head, "proj") else list(head)
  ln = [m for m in mods if isinstance(m, nn.LayerNorm)]
  lin = [m for m in mods if isinstance(m, nn.Linear)]
  if len(ln) != 1 or len(lin) != 1:
    raise StageError(f"ImageBind head '{modality}': expected one LayerNorm and one Linear, "
                     f"found {[type(m).__name__ for m in mods]}")
  return ln[0], lin[0]


def heads_npz(model, modalities: Sequence[str]) -> dict[str, np.ndarray]:
  """The checkpoint's projection heads in ``mmdd_jax.heads.heads_from_npz`` format."""
  out = {}
  for m in modalities:
    ln, lin = head_parts(model, m)
    out[f"{m}/ln_scale"] = ln.weight.detach().cpu().numpy().astype(np.float32)
    out[f"{m}/ln_bias"] = ln.bias.detach().cpu().numpy().astype(np.float32)
    out[f"{m}/kernel"] = lin.weight.detach().cpu().numpy().T.astype(np.float32).copy()
    if lin.bias is not None:
      out[f"{m}/bias"] = lin.bias.detach().cpu().numpy().astype(np.float32)
  return out


def modality_spec(model, modality: str, dtype: str) -> store_lib.ModalitySpec:
  ln, lin = head_parts(model, modality)
  return store_lib.ModalitySpec(int(ln.normalized_shape[0]), int(lin.out_features), dtype)


def encode(model, modality: str, x, *, clip_pooling: str = "imagebind",
           return_clips: bool = False):
  """Runs one modality through ImageBind; returns numpy ``(features, embeddings)``.

  Args:
    model: an ``ImageBindModel`` in eval mode.
    modality: ``vision``/``audio``/``text``/``depth``.
    x: a batch as ImageBind takes it: images ``[B,3,224,224]``, videos
      ``[B,S,3,T,224,224]``, audio ``[B,S,1,128,204]``, text ``[B,77]``, depth
      ``[B,1,224,224]``. ``ndim >= 5`` means ``S`` clips per instance (ImageBind's rule).
    clip_pooling: see the module docstring.
    return_clips: also return the per-clip ``(features, unit embeddings)``
      ``[B, S, ·]`` (for tests).
  """
  import torch
  import torch.nn.functional as F
  with torch.inference_mode():
    multi = x.ndim >= 5
    b = x.shape[0]
    s = x.shape[1] if multi else 1
    flat = x.reshape(b * s, *x.shape[2:]) if multi else x
    pre = model.modality_preprocessors[modality](**{modality: flat})
    tokens = model.modality_trunks[modality](**pre["trunk"])
    head_in = pre["head"]
    if modality == "text":
      feat = tokens[torch.arange(tokens.shape[0], device=tokens.device), head_in["seq_len"]]
    else:
      feat = tokens[:, 0]
    clip_emb = F.normalize(model.modality_heads[modality](tokens, **head_in).float(), dim=-1)
    feat = feat.float().reshape(b, s, -1)
    clip_emb = clip_emb.reshape(b, s, -1)
    features = feat.mean(dim=1)
    if clip_pooling == "imagebind":
      emb = F.normalize(clip_emb.mean(dim=1), dim=-1)
    elif clip_pooling == "features":
      ln, lin = head_parts(model, modality)
      emb = F.normalize(lin(ln(features)).float(), dim=-1)
    else:
      raise ValueError(f"clip_pooling: expected one of {CLIP_POOLINGS}, found {clip_pooling!r}")
    res = (features.cpu().numpy(), emb.cpu().numpy())
    if return_clips:
      res += (feat.cpu().numpy(), clip_emb.cpu().numpy())
    return res


# -------------------------------------------------------------------------- data


class _ShardItems:
  """Map-style dataset for a torch DataLoader: loads and preprocesses one instance.

  Returns ``(position, {modality: tensor | str}, bad | None)``; never raises for bad
  media, so that the main process decides (error or skip)."""

  def __init__(self, items: Sequence[Item], modalities: Sequence[str], opts: Mapping[str, Any]):
    self.items = list(items)
    self.modalities = list(modalities)
    self.opts = dict(opts)

  def __len__(self):
    return len(self.items)

  def __getitem__(self, i):
    import torch
    if torch.utils.data.get_worker_info() is not None:
      return self._load(i)
    # In the main process: per-item ops are small, and torch's intra-op threads only
    # contend (measured 1 ms vs 190 ms per filterbank on a busy 2-core machine).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
      return self._load(i)
    finally:
      torch.set_num_threads(n)

  def _load(self, i):
    from embed import preprocess as P
    it = self.items[i]
    out = {}
    for m in self.modalities:
      src = it.get(m)
      if src is None:
        return i, None, {"id": it.id, "modality": m, "path": None,
                         "error": f"no '{m}' given for this instance in the dataset index"}
      try:
        if m == "text":
          out[m] = src
        elif m == "vision":
          out[m] = P.load_vision(src)
        elif m == "audio":
          out[m] = P.load_audio(src, silence_if_missing=self.opts.get("silent_if_no_audio", False))
        elif m == "depth":
          out[m] = P.load_depth(src, kind=self.opts.get("depth_input", "depth"))
      except (P.MediaError, OSError, ValueError) as e:
        return i, None, {"id": it.id, "modality": m, "path": src, "error": str(e)}
    return i, out, None


def _collate(batch):
  return batch


def _encode_batch(model, modalities, loaded: list[dict], device: str, clip_pooling: str,
                  batch_size: int):
  """Encodes a list of per-instance dicts; groups same-shaped tensors (images vs videos)."""
  import torch
  from embed import preprocess as P
  n = len(loaded)
  feats, embs = {}, {}
  for m in modalities:
    f_out = [None] * n
    e_out = [None] * n
    if m == "text":
      groups = {(): list(range(n))}
      toks = P.tokenize([d[m] for d in loaded])
    else:
      groups: dict[tuple, list[int]] = {}
      for j, d in enumerate(loaded):
        groups.setdefault(tuple(d[m].shape), []).append(j)
    for _, idx in sorted(groups.items()):
      for s in range(0, len(idx), batch_size):
        sub = idx[s:s + batch_size]
        x = toks[sub] if m == "text" else torch.stack([loaded[j][m] for j in sub])
        f, e = encode(model, m, x.to(device), clip_pooling=clip_pooling)
        for k, j in enumerate(sub):
          f_out[j], e_out[j] = f[k], e[k]
    feats[m] = np.stack(f_out) if n else None
    embs[m] = np.stack(e_out) if n else None
  return feats, embs


# -------------------------------------------------------------------------- run


def _writer_config(specs, encoder, sha, class_names, splits, extra, command) -> dict:
  return {"modalities": {k: v.to_json() for k, v in specs.items()}, "encoder": encoder,
          "checkpoint_sha256": sha, "class_names": class_names, "splits": list(splits),
          "extra": extra, "command": command}


def _fingerprint(cfg: Mapping) -> dict:
  return {k: v for k, v in cfg.items() if k != "command"}


def _shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
  k = max(1, math.ceil(n / shard_size))
  return [(i * shard_size, min((i + 1) * shard_size, n)) for i in range(k)]


def run(args: argparse.Namespace) -> dict | None:
  """Runs the stage; returns the manifest when this process finalised the store."""
  import torch
  from tqdm import tqdm
  from embed import imagebind_loader

  num_shards, shard_index = args.num_shards, args.shard_index
  if num_shards is None and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
    num_shards, shard_index = int(os.environ["WORLD_SIZE"]), int(os.environ.get("RANK", 0))
  num_shards = num_shards or 1
  shard_index = shard_index or 0
  if not 0 <= shard_index < num_shards:
    raise StageError(f"--shard-index: expected in [0, {num_shards}), found {shard_index}")
  device = args.device
  if device is None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cuda" and "LOCAL_RANK" in os.environ:
    device = f"cuda:{int(os.environ['LOCAL_RANK'])}"

  ds: Dataset = load_dataset(args.dataset, args.root, **_adapter_kwargs(args))
  splits = args.splits.split(",") if args.splits else sorted(ds.splits)
  for s in splits:
    if s not in ds.splits:
      raise StageError(f"--splits: expected splits of dataset '{args.dataset}' "
                       f"({sorted(ds.splits)}), found '{s}'")
  modalities = args.modalities.split(",") if args.modalities else list(ds.modalities)
  for m in modalities:
    if m not in ds.modalities:
      raise StageError(f"--modalities: expected a subset of {list(ds.modalities)}, found '{m}'")

  torch.manual_seed(0)
  t0 = time.time()
  model, config = imagebind_loader.load_model(args.checkpoint, device)
  sha = imagebind_loader.sha256_of(args.checkpoint)
  encoder = "imagebind_huge" if config is None else "imagebind(custom config)"
  specs = {m: modality_spec(model, m, args.dtype) for m in modalities}
  has_labels = ds.class_names is not None and all(
      it.label is not None for s in splits for it in ds.splits[s])
  shard_plan = {s: _shard_ranges(len(ds.splits[s]), args.shard_size) for s in splits}
  extra = {"dataset": args.dataset, "root": os.path.abspath(args.root),
           "dataset_extra": ds.extra, "model_config": config, "clip_pooling": args.clip_pooling,
           "shard_size": args.shard_size, "shards": {s: len(r) for s, r in shard_plan.items()},
           "on_bad_file": args.on_bad_file, "depth_input": args.depth_input,
           "silent_if_no_audio": args.silent_if_no_audio}
  command = " ".join(["python -m embed.imagebind"] + list(args.argv))
  cfg = _writer_config(specs, encoder, sha, ds.class_names if has_labels else None, splits,
                       extra, command)
  out = args.out
  wpath = os.path.join(out, WRITER_JSON)
  if os.path.exists(wpath):
    with open(wpath, encoding="utf-8") as f:
      old = json.load(f)
    if _fingerprint(old) != _fingerprint(json.loads(json.dumps(cfg))):
      diff = sorted(k for k in set(old) | set(cfg) if k != "command" and
                    json.dumps(old.get(k), sort_keys=True) != json.dumps(cfg.get(k), sort_keys=True))
      raise StageError(f"{wpath}: fields {diff}: expected the settings of the run that started "
                       "this store (to resume it), found different ones; use a new --out")
    if os.path.exists(os.path.join(out, store_lib.MANIFEST)):
      print(f"store already complete: {out}")
      return None
  os.makedirs(out, exist_ok=True)
  store_lib.atomic_write_json(wpath, cfg)
  writer = store_lib.StoreWriter(out, specs, encoder=encoder, checkpoint_sha256=sha,
                                 class_names=cfg["class_names"], command=command, extra=extra)
  writer.write_heads(heads_npz(model, modalities))

  todo = [(s, k, a, b) for s in splits for k, (a, b) in enumerate(shard_plan[s])
          if k % num_shards == shard_index and not writer.has_shard(s, k)]
  crash_after = int(os.environ.get(CRASH_ENV, "0") or 0)
  opts = {"depth_input": args.depth_input, "silent_if_no_audio": args.silent_if_no_audio}
  bar = tqdm(total=sum(b - a for _, _, a, b in todo), unit="inst", disable=args.quiet,
             desc=f"embed {args.dataset} [{shard_index + 1}/{num_shards}]")
  written = 0
  for split, k, a, b in todo:
    items = ds.splits[split][a:b]
    loader = torch.utils.data.DataLoader(
        _ShardItems(items, modalities, opts), batch_size=args.batch_size,
        num_workers=args.num_workers, collate_fn=_collate, shuffle=False)
    ids, labels, captions, skipped = [], [], [], []
    feats = {m: [] for m in modalities}
    embs = {m: [] for m in modalities}
    for batch in loader:
      good = []
      for pos, data, bad in batch:
        if bad is not None:
          if args.on_bad_file == "error":
            where = "" if bad["path"] and bad["error"].startswith(bad["path"]) else \
                f"{bad['path'] or '(no file)'}: "
            raise StageError(
                f"instance '{bad['id']}' (split {split}), {bad['modality']}: {where}"
                f"{bad['error']}. Fix or remove the file, or pass --on-bad-file=skip to "
                "record and skip such instances.")
          skipped.append(bad)
          continue
        good.append((items[pos], data))
      if good:
        f, e = _encode_batch(model, modalities, [d for _, d in good], device,
                             args.clip_pooling, args.batch_size)
        for m in modalities:
          feats[m].append(f[m])
          embs[m].append(e[m])
        for it, d in good:
          ids.append(it.id)
          labels.append(it.label)
          if "text" in modalities:
            captions.append(d["text"])
      bar.update(len(batch))
    cat = lambda xs, d: np.concatenate(xs) if xs else np.zeros((0, d), np.float32)  # noqa: E731
    writer.write_shard(
        split, k, ids=ids,
        features={m: cat(feats[m], specs[m].feature_dim) for m in modalities},
        embeddings={m: cat(embs[m], specs[m].embedding_dim) for m in modalities},
        labels=np.asarray(labels, np.int32) if has_labels else None,
        captions=captions if "text" in modalities else None, skipped=skipped)
    written += 1
    if crash_after and written >= crash_after:
      bar.close()
      sys.stdout.flush()
      os._exit(137)  # simulated kill (tests): no cleanup, no finalize
  bar.close()
  if num_shards > 1:
    print(f"worker {shard_index}/{num_shards}: shards written under {out}; when every worker "
          f"has finished run: python -m embed.store merge {out}")
    return None
  manifest = writer.finalize(splits)
  store_lib.validate(out)
  counts = ", ".join(f"{s}={v['count']}" for s, v in manifest["splits"].items())
  print(f"store written: {out} ({counts}; {len(manifest['skipped'])} skipped) "
        f"in {time.time() - t0:.1f}s")
  return manifest


def _adapter_kwargs(args) -> dict:
  kw = {}
  if args.index:
    kw["index"] = args.index
  if args.seed is not None:
    kw["seed"] = args.seed
  return kw


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(
      prog="python -m embed.imagebind",
      description="Embed a dataset with a frozen ImageBind checkpoint into an embedding store "
                  "(format v1; see docs/embedding.md).")
  ap.add_argument("--dataset", required=True, choices=sorted(ADAPTERS),
                  help="dataset adapter (its on-disk layout is in docs/embedding.md)")
  ap.add_argument("--root", required=True, help="the dataset's local directory")
  ap.add_argument("--checkpoint", required=True,
                  help="local ImageBind checkpoint: the official imagebind_huge.pth or a "
                       "{'config','state_dict'} file (never downloaded)")
  ap.add_argument("--out", required=True, help="store directory to write (resumable)")
  ap.add_argument("--splits", default=None, help="comma-separated splits (default: all)")
  ap.add_argument("--modalities", default=None,
                  help="comma-separated subset of the dataset's modalities (default: all)")
  ap.add_argument("--index", default=None, help="manifest adapter: the CSV/JSONL index "
                  "(default ROOT/manifest.csv or ROOT/manifest.jsonl)")
  ap.add_argument("--seed", type=int, default=None,
                  help="vggsound_s: sampling seed (default 0; recorded in the manifest)")
  ap.add_argument("--device", default=None, help="torch device (default: cuda if available)")
  ap.add_argument("--batch-size", type=int, default=16, help="instances per forward pass")
  ap.add_argument("--num-workers", type=int, default=0, help="DataLoader decoding workers")
  ap.add_argument("--shard-size", type=int, default=512, help="instances per resumable shard")
  ap.add_argument("--num-shards", type=int, default=None,
                  help="number of workers (default: WORLD_SIZE under torchrun, else 1)")
  ap.add_argument("--shard-index", type=int, default=None,
                  help="this worker's index in [0, num-shards) (default: RANK under torchrun)")
  ap.add_argument("--on-bad-file", choices=("error", "skip"), default="error",
                  help="a missing/unreadable media file: stop with its name (error) or skip "
                       "the instance and record it in manifest.json 'skipped' (skip)")
  ap.add_argument("--clip-pooling", choices=CLIP_POOLINGS, default="imagebind",
                  help="multi-clip embeddings: ImageBind's mean of normalised clip embeddings "
                       "(imagebind) or the head applied to the mean clip feature (features)")
  ap.add_argument("--depth-input", choices=("depth", "disparity"), default="depth",
                  help="depth files hold depth in metres (.npy; 16-bit PNG in mm) or disparity")
  ap.add_argument("--silent-if-no-audio", action="store_true",
                  help="a video without an audio track gives silence instead of a bad file")
  ap.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                  help="dtype of the stored arrays")
  ap.add_argument("--quiet", action="store_true", help="no progress bar")
  return ap


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = build_parser().parse_args(argv)
  args.argv = argv
  from embed import imagebind_loader, preprocess
  from embed.datasets.base import DatasetError
  try:
    run(args)
  except (StageError, DatasetError, imagebind_loader.CheckpointError, preprocess.MediaError,
          store_lib.StoreError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
