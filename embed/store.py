"""Embedding store, format v1 (SPEC §2): the only contract between the PyTorch
embedding stage and the JAX methods.

Layout of a store directory::

    manifest.json                       format version, encoder, modalities, splits, hashes
    <split>/<modality>.features.npy     pre-head backbone features   [N, d_m]
    <split>/<modality>.embeddings.npy   final unit-norm embeddings   [N, e]
    <split>/labels.npy                  int class ids                 [N]   (optional)
    <split>/ids.json                    stable instance ids           [N]
    <split>/captions.json               raw text per instance         [N]   (optional)
    heads.npz                           projection-head weights per modality (optional)

Modality names are ImageBind's: ``vision`` (images and video), ``audio``, ``text``,
``depth``; their one-letter codes (``V A T D``) name retrieval directions.

Writing is resumable and atomic: :class:`StoreWriter` writes row *shards* under
``<split>/.shards/`` (each shard to a temporary name, then ``os.replace``), skips
shards that already exist on a rerun, and :meth:`StoreWriter.finalize` concatenates
them, hashes every file and writes the manifest last (also atomically). A store
without ``manifest.json`` is therefore an unfinished one.

This module imports numpy only (never torch, never JAX).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
HEADS = "heads.npz"
MODALITY_LETTERS = {"vision": "V", "audio": "A", "text": "T", "depth": "D"}
NORM_TOL = 1e-2  # |‖e‖ - 1| allowed for stored embeddings (float16 rounding)


class StoreError(ValueError):
  """A store is missing, malformed or inconsistent. The message names the file,
  the field, the expected and the found value."""


def _err(path: str, field: str, expected: Any, found: Any, hint: str = "") -> StoreError:
  msg = f"{path}: field '{field}': expected {expected}, found {found}"
  if hint:
    msg += f" ({hint})"
  return StoreError(msg)


# ----------------------------------------------------------------------------- io


# manifest fields outside a store's content digest (the creation command names paths)
DIGEST_EXCLUDES = frozenset({"command"})


def content_digest(root: str) -> str:
  """``sha256:<hex>`` of the store's manifest (canonical JSON) without
  :data:`DIGEST_EXCLUDES`: the identity of its content (every file's sha256 is listed in
  the manifest). Every workdir is bound to it (:func:`mmdd_jax.workdir.store_digest`)."""
  with open(os.path.join(root, MANIFEST), encoding="utf-8") as f:
    manifest = json.load(f)
  body = {k: v for k, v in manifest.items() if k not in DIGEST_EXCLUDES}
  blob = json.dumps(body, sort_keys=True, separators=(",", ":"))
  return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while True:
      b = f.read(chunk)
      if not b:
        break
      h.update(b)
  return h.hexdigest()


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _named(e: OSError, path: str) -> OSError:
  """``e`` naming ``path`` when it names no file (a failed ``write``/``close``: disk
  full, I/O error) or only the temporary file of an atomic write."""
  fn = e.filename
  if e.errno is None or (fn is not None and not os.path.basename(str(fn)).startswith(".tmp-")):
    return e
  return OSError(e.errno, e.strerror, path)   # the errno's subclass (OSError picks it)


@contextlib.contextmanager
def named_os_errors(path: str):
  """Re-raises an :class:`OSError` that names no file (e.g. ``ENOSPC`` from a
  ``write``) as one naming ``path``, so its one-line report says where."""
  try:
    yield
  except OSError as e:
    ne = _named(e, path)
    if ne is e:
      raise
    raise ne from e


@contextlib.contextmanager
def _atomic_path(path: str):
  """Yields a temporary path in the destination's directory; renames on success.
  An OS error names ``path`` (never the temporary file, never nothing)."""
  with named_os_errors(path):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=d)
    os.close(fd)
    try:
      yield tmp
      os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; give the usual umask mode
      os.replace(tmp, path)
    except BaseException:
      with contextlib.suppress(OSError):
        os.remove(tmp)
      raise


def atomic_save_npy(path: str, array: np.ndarray) -> None:
  with _atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.save(f, np.asarray(array))


def atomic_write_text(path: str, text: str) -> None:
  with _atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)


def atomic_write_json(path: str, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def atomic_save_npz(path: str, arrays: Mapping[str, np.ndarray]) -> None:
  with _atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


# ----------------------------------------------------------------------- checks


def check_finite_cast(stored: np.ndarray, source: np.ndarray, *, where: str, field: str,
                      dtype: str) -> None:
  """A :class:`StoreError` when ``stored`` (``source`` cast to the store's ``dtype``)
  holds a NaN or inf: the count, and whether the cast made them (float16 overflows
  beyond ±65504)."""
  bad = ~np.isfinite(stored)
  if not bad.any():
    return
  count = int(bad.sum())
  with np.errstate(invalid="ignore"):
    made = count - int((~np.isfinite(np.asarray(source, np.float64))).sum())
  hint = (f"{made} made by the cast: |value| > {float(np.finfo(dtype).max):g}, the largest "
          f"{dtype}; store float32 or rescale" if made > 0
          else "non-finite before the cast")
  raise _err(where, field, f"finite values after the cast to {dtype}",
             f"{count} non-finite of {stored.size}", hint)


def check_heads(arrays: Mapping[str, np.ndarray], dims: Mapping[str, tuple[int, int]],
                path: str) -> None:
  """``heads.npz`` against the manifest: for every modality ``m`` with dims ``(d, e)``
  (feature, embedding), ``m/ln_scale`` and ``m/ln_bias`` of shape ``(d,)``,
  ``m/kernel`` ``(d, e)`` and an optional ``m/bias`` ``(e,)``; all floating point and
  finite. Keys of other modalities are ignored."""
  for m, (d, e) in dims.items():
    want = {"ln_scale": (d,), "ln_bias": (d,), "kernel": (d, e)}
    if f"{m}/bias" in arrays:
      want["bias"] = (e,)
    for f, shape in want.items():
      key = f"{m}/{f}"
      if key not in arrays:
        raise _err(path, key, f"an array of shape {shape} (manifest modalities.{m})",
                   f"no such key (keys: {sorted(arrays)[:8]})")
      a = arrays[key]
      if a.shape != shape:
        raise _err(path, key, f"shape {shape} (manifest modalities.{m}: feature_dim {d}, "
                   f"embedding_dim {e})", a.shape)
      if not np.issubdtype(a.dtype, np.floating):
        raise _err(path, key, "floating-point weights", a.dtype)
      finite = np.isfinite(a)
      if not finite.all():
        raise _err(path, key, "finite weights", f"{int((~finite).sum())} NaN or inf of {a.size}")


# ------------------------------------------------------------------------- writer


@dataclass(frozen=True)
class ModalitySpec:
  feature_dim: int
  embedding_dim: int
  dtype: str = "float32"

  def to_json(self) -> dict:
    return {"feature_dim": self.feature_dim, "embedding_dim": self.embedding_dim,
            "dtype": self.dtype}


class StoreWriter:
  """Writes a v1 store shard by shard; rerunning with the same arguments resumes.

  Args:
    root: the store directory.
    modalities: ``{name: ModalitySpec}``.
    encoder: encoder name recorded in the manifest.
    checkpoint_sha256: hash of the encoder checkpoint (or a simulator tag).
    class_names: optional list of class names; labels must lie in
      ``[0, len(class_names))``.
    command: the creation command recorded in the manifest.
    extra: any extra JSON-able metadata (e.g. simulator parameters).
  """

  def __init__(self, root: str, modalities: Mapping[str, ModalitySpec], *,
               encoder: str, checkpoint_sha256: str = "",
               class_names: Sequence[str] | None = None,
               command: str | None = None, extra: Mapping[str, Any] | None = None):
    self.root = root
    self.modalities = dict(modalities)
    for name in self.modalities:
      if name not in MODALITY_LETTERS:
        raise _err(root, "modalities", f"one of {sorted(MODALITY_LETTERS)}", repr(name))
    self.encoder = encoder
    self.checkpoint_sha256 = checkpoint_sha256
    self.class_names = list(class_names) if class_names is not None else None
    self.command = command if command is not None else " ".join(sys.argv)
    self.extra = dict(extra or {})
    self.skipped: list[dict] = []
    os.makedirs(root, exist_ok=True)

  # -- shards
  def _shard_dir(self, split: str) -> str:
    return os.path.join(self.root, split, ".shards")

  def _shard_done(self, split: str, index: int) -> str:
    return os.path.join(self._shard_dir(split), f"{index:06d}.done.json")

  def has_shard(self, split: str, index: int) -> bool:
    """True when shard ``index`` of ``split`` was completely written before."""
    return os.path.exists(self._shard_done(split, index))

  def write_shard(self, split: str, index: int, *, ids: Sequence[str],
                  features: Mapping[str, np.ndarray],
                  embeddings: Mapping[str, np.ndarray],
                  labels: np.ndarray | None = None,
                  captions: Sequence[str] | None = None,
                  skipped: Sequence[Mapping[str, Any]] = ()) -> None:
    """Writes one shard atomically: arrays first, the ``.done.json`` marker last."""
    n = len(ids)
    d = self._shard_dir(split)
    for name, spec in self.modalities.items():
      for kind, arrs, dim in (("features", features, spec.feature_dim),
                              ("embeddings", embeddings, spec.embedding_dim)):
        if name not in arrs:
          raise _err(f"{split}/shard {index}", f"{name}.{kind}", "an array", "nothing")
        a = np.asarray(arrs[name])
        if a.shape != (n, dim):
          raise _err(f"{split}/shard {index}", f"{name}.{kind}.shape", (n, dim), a.shape)
        with np.errstate(over="ignore", invalid="ignore"):
          stored = a.astype(spec.dtype)
        check_finite_cast(stored, a, where=f"{split}/shard {index}", field=f"{name}.{kind}",
                          dtype=spec.dtype)
        atomic_save_npy(os.path.join(d, f"{index:06d}.{name}.{kind}.npy"), stored)
    if labels is not None:
      atomic_save_npy(os.path.join(d, f"{index:06d}.labels.npy"),
                      np.asarray(labels, np.int32))
    meta = {"ids": list(map(str, ids)), "n": n,
            "captions": list(captions) if captions is not None else None,
            "has_labels": labels is not None, "skipped": list(skipped)}
    atomic_write_json(self._shard_done(split, index), meta)

  def write_split(self, split: str, **kw) -> None:
    """Writes a whole split as one shard (index 0)."""
    self.write_shard(split, 0, **kw)

  def write_heads(self, heads: Mapping[str, np.ndarray]) -> None:
    """Writes ``heads.npz`` (checked like :func:`validate` checks it: every modality's
    keys, shapes against the specs, float and finite)."""
    path = os.path.join(self.root, HEADS)
    arrays = {k: np.asarray(v) for k, v in heads.items()}
    check_heads(arrays, {m: (s.feature_dim, s.embedding_dim) for m, s in self.modalities.items()},
                path)
    atomic_save_npz(path, arrays)

  def write_array(self, name: str, array: np.ndarray) -> None:
    """An extra top-level ``.npy`` file (e.g. a distilled set's ``similarity.npy``):
    written before the manifest and listed (with its sha256) in it, so a store is
    complete or unfinished, never finished without it."""
    if os.sep in name or not name.endswith(".npy") or name.startswith("."):
      raise _err(self.root, "extra array", "a top-level file name ending in .npy", repr(name))
    atomic_save_npy(os.path.join(self.root, name), array)
    self._arrays = sorted(set(getattr(self, "_arrays", [])) | {name})

  # -- finalize
  def _split_shards(self, split: str) -> list[int]:
    d = self._shard_dir(split)
    if not os.path.isdir(d):
      return []
    return sorted(int(f.split(".")[0]) for f in os.listdir(d) if f.endswith(".done.json"))

  def finalize(self, splits: Iterable[str] | None = None, keep_shards: bool = False) -> dict:
    """Concatenates shards per split, hashes files and writes ``manifest.json``."""
    if splits is None:
      splits = sorted(s for s in os.listdir(self.root)
                      if os.path.isdir(self._shard_dir(s)))
    manifest_splits = {}
    skipped_all = []
    for split in splits:
      idx = self._split_shards(split)
      if not idx:
        raise _err(os.path.join(self.root, split), "shards", "at least one finished shard", 0)
      metas = []
      for i in idx:
        with open(self._shard_done(split, i), encoding="utf-8") as f:
          metas.append(json.load(f))
      sd = os.path.join(self.root, split)
      ids = [x for m in metas for x in m["ids"]]
      if len(set(ids)) != len(ids):
        raise _err(sd, "ids", "unique instance ids", f"{len(ids) - len(set(ids))} duplicates")
      for m in metas:
        skipped_all.extend({**s, "split": split} for s in m.get("skipped", []))
      for name in self.modalities:
        for kind in ("features", "embeddings"):
          parts = [np.load(os.path.join(self._shard_dir(split), f"{i:06d}.{name}.{kind}.npy"))
                   for i in idx]
          atomic_save_npy(os.path.join(sd, f"{name}.{kind}.npy"), np.concatenate(parts))
      if all(m["has_labels"] for m in metas):
        labs = np.concatenate([np.load(os.path.join(self._shard_dir(split), f"{i:06d}.labels.npy"))
                               for i in idx])
        atomic_save_npy(os.path.join(sd, "labels.npy"), labs)
      atomic_write_json(os.path.join(sd, "ids.json"), ids)
      if all(m["captions"] is not None for m in metas):
        atomic_write_json(os.path.join(sd, "captions.json"),
                          [c for m in metas for c in m["captions"]])
      manifest_splits[split] = {"count": len(ids)}
      if not keep_shards:
        shutil.rmtree(self._shard_dir(split))
    files = {}
    for split in manifest_splits:
      sd = os.path.join(self.root, split)
      for f in sorted(os.listdir(sd)):
        p = os.path.join(sd, f)
        if os.path.isfile(p) and not f.startswith("."):
          files[f"{split}/{f}"] = sha256_file(p)
    if os.path.exists(os.path.join(self.root, HEADS)):
      files[HEADS] = sha256_file(os.path.join(self.root, HEADS))
    for name in getattr(self, "_arrays", []):
      files[name] = sha256_file(os.path.join(self.root, name))
    manifest = {
        "format_version": FORMAT_VERSION,
        "encoder": {"name": self.encoder, "checkpoint_sha256": self.checkpoint_sha256},
        "modalities": {k: v.to_json() for k, v in self.modalities.items()},
        "splits": manifest_splits,
        "class_names": self.class_names,
        "command": self.command,
        "files": files,
        "skipped": skipped_all + self.skipped,
        "extra": self.extra,
    }
    atomic_write_json(os.path.join(self.root, MANIFEST), manifest)
    return manifest


def write_store(root: str, modalities: Mapping[str, ModalitySpec],
                splits: Mapping[str, Mapping[str, Any]], *, heads=None,
                arrays: Mapping[str, np.ndarray] | None = None, **kw) -> dict:
  """One-call writer: ``splits = {split: dict(ids=..., features=..., embeddings=...,
  labels=..., captions=...)}``; ``arrays``: extra top-level ``.npy`` files
  (:meth:`StoreWriter.write_array`). Returns the manifest.

  Writing over a finished store first removes its manifest, so a store being
  rewritten (and one whose rewrite was killed) reads as unfinished, never as a mix."""
  with contextlib.suppress(FileNotFoundError):
    os.remove(os.path.join(root, MANIFEST))
  w = StoreWriter(root, modalities, **kw)
  for split, data in splits.items():
    w.write_split(split, **data)
  if heads is not None:
    w.write_heads(heads)
  for name, a in (arrays or {}).items():
    w.write_array(name, a)
  return w.finalize(list(splits))


# ------------------------------------------------------------------------- reader


class Store:
  """Read-only view of a v1 store. Arrays are memory-mapped."""

  def __init__(self, root: str):
    self.root = root
    mpath = os.path.join(root, MANIFEST)
    if not os.path.isdir(root):
      raise _err(root, "directory", "an existing store directory", "nothing")
    if not os.path.exists(mpath):
      raise _err(mpath, MANIFEST, "a manifest (store finished with StoreWriter.finalize)",
                 "no file", "the store is missing or was not finished")
    try:
      with open(mpath, encoding="utf-8") as f:
        self.manifest = json.load(f)
    except (ValueError, OSError) as e:
      raise _err(mpath, MANIFEST, "valid JSON", f"parse error: {e}") from None
    if not isinstance(self.manifest, dict):
      raise _err(mpath, MANIFEST, "a JSON object", type(self.manifest).__name__)
    v = self.manifest.get("format_version")
    if v != FORMAT_VERSION:
      raise _err(mpath, "format_version", FORMAT_VERSION, v)
    for key in ("modalities", "splits", "files"):
      if key not in self.manifest:
        raise _err(mpath, key, "present", "missing")

  # -- metadata
  @property
  def modalities(self) -> list[str]:
    return list(self.manifest["modalities"])

  @property
  def splits(self) -> list[str]:
    return list(self.manifest["splits"])

  @property
  def class_names(self) -> list[str] | None:
    return self.manifest.get("class_names")

  @property
  def num_classes(self) -> int | None:
    c = self.class_names
    return None if c is None else len(c)

  def spec(self, modality: str) -> ModalitySpec:
    return ModalitySpec(**self.manifest["modalities"][modality])

  def count(self, split: str) -> int:
    self._check_split(split)
    return int(self.manifest["splits"][split]["count"])

  def require_modalities(self, names: Iterable[str], where: str = "config") -> None:
    for name in names:
      if name not in self.manifest["modalities"]:
        raise _err(os.path.join(self.root, MANIFEST), "modalities",
                   f"to contain '{name}' (asked for by the {where})", sorted(self.modalities))

  def _check_split(self, split: str) -> None:
    if split not in self.manifest["splits"]:
      raise _err(os.path.join(self.root, MANIFEST), "splits", f"to contain '{split}'",
                 sorted(self.splits))

  def _path(self, split: str, name: str) -> str:
    return os.path.join(self.root, split, name)

  # -- arrays
  def features(self, split: str, modality: str) -> np.ndarray:
    self._check_split(split)
    self.require_modalities([modality])
    return np.load(self._path(split, f"{modality}.features.npy"), mmap_mode="r")

  def embeddings(self, split: str, modality: str) -> np.ndarray:
    self._check_split(split)
    self.require_modalities([modality])
    return np.load(self._path(split, f"{modality}.embeddings.npy"), mmap_mode="r")

  def labels(self, split: str) -> np.ndarray | None:
    self._check_split(split)
    p = self._path(split, "labels.npy")
    return np.load(p, mmap_mode="r") if os.path.exists(p) else None

  def ids(self, split: str) -> list[str]:
    self._check_split(split)
    with open(self._path(split, "ids.json"), encoding="utf-8") as f:
      return json.load(f)

  def captions(self, split: str) -> list[str] | None:
    p = self._path(split, "captions.json")
    if not os.path.exists(p):
      return None
    with open(p, encoding="utf-8") as f:
      return json.load(f)

  def heads(self) -> dict[str, np.ndarray] | None:
    p = os.path.join(self.root, HEADS)
    if not os.path.exists(p):
      return None
    with np.load(p) as z:
      return {k: z[k] for k in z.files}

  def info(self) -> str:
    m = self.manifest
    lines = [f"store {self.root}", f"  format v{m['format_version']}, encoder "
             f"{m['encoder'].get('name')} (sha256 {str(m['encoder'].get('checkpoint_sha256'))[:12]})"]
    for name, s in m["modalities"].items():
      lines.append(f"  modality {name} ({MODALITY_LETTERS[name]}): features {s['feature_dim']}, "
                   f"embeddings {s['embedding_dim']}, {s['dtype']}")
    for split, s in m["splits"].items():
      lab = "labels" if os.path.exists(self._path(split, "labels.npy")) else "no labels"
      lines.append(f"  split {split}: {s['count']} instances, {lab}")
    if m.get("class_names"):
      cn = m["class_names"]
      lines.append(f"  {len(cn)} classes: {', '.join(cn[:8])}{' …' if len(cn) > 8 else ''}")
    lines.append(f"  heads.npz: {'yes' if os.path.exists(os.path.join(self.root, HEADS)) else 'no'}")
    if m.get("skipped"):
      lines.append(f"  skipped files: {len(m['skipped'])}")
    lines.append(f"  command: {m.get('command')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- validate

DTYPES = ("float32", "float16")


def _load_npy(path: str, what: str):
  """``np.load(path, mmap_mode="r")`` with a :class:`StoreError` for a missing,
  truncated or non-.npy file."""
  if not os.path.exists(path):
    raise _err(path, what, "present", "missing")
  try:
    return np.load(path, mmap_mode="r", allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise _err(path, what, "a readable .npy array", f"{type(e).__name__}: {e}") from None


def _load_json(path: str, what: str):
  if not os.path.exists(path):
    raise _err(path, what, "present", "missing")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (ValueError, OSError) as e:
    raise _err(path, what, "valid JSON", f"{type(e).__name__}: {e}") from None


def _check_manifest(st: "Store") -> None:
  """Schema and types of the manifest (every field a reader uses)."""
  m, mp = st.manifest, os.path.join(st.root, MANIFEST)
  if not isinstance(m, dict):
    raise _err(mp, MANIFEST, "a JSON object", type(m).__name__)
  if not isinstance(m.get("encoder"), dict):
    raise _err(mp, "encoder", "an object with the encoder's name and checkpoint_sha256",
               m.get("encoder"))
  mods = m["modalities"]
  if not isinstance(mods, dict) or not mods:
    raise _err(mp, "modalities", "a non-empty object {name: {feature_dim, embedding_dim, dtype}}",
               mods)
  for name, spec in mods.items():
    if name not in MODALITY_LETTERS:
      raise _err(mp, "modalities", f"names among {sorted(MODALITY_LETTERS)}", name)
    if not isinstance(spec, dict):
      raise _err(mp, f"modalities.{name}", "an object", spec)
    for f in ("feature_dim", "embedding_dim"):
      v = spec.get(f)
      if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise _err(mp, f"modalities.{name}.{f}", "an integer ≥ 1", v)
    if spec.get("dtype", "float32") not in DTYPES:
      raise _err(mp, f"modalities.{name}.dtype", f"one of {DTYPES}", spec.get("dtype"))
  splits = m["splits"]
  if not isinstance(splits, dict) or not splits:
    raise _err(mp, "splits", "a non-empty object {split: {count}}", splits)
  for split, spec in splits.items():
    c = spec.get("count") if isinstance(spec, dict) else None
    if not isinstance(c, int) or isinstance(c, bool) or c < 0:
      raise _err(mp, f"splits.{split}.count", "an integer ≥ 0", c)
  if not isinstance(m["files"], dict):
    raise _err(mp, "files", "an object {relative path: sha256}", type(m["files"]).__name__)
  cn = m.get("class_names")
  if cn is not None and (not isinstance(cn, list) or not cn
                         or not all(isinstance(c, str) for c in cn)):
    raise _err(mp, "class_names", "null or a non-empty list of strings",
               f"{type(cn).__name__} {str(cn)[:60]}")


def validate(root: str, modalities: Iterable[str] | None = None, *,
             check_hashes: bool = True, require_splits: Sequence[str] = (),
             nonempty: Sequence[str] = (), chunk_rows: int = 65536) -> Store:
  """Checks a store end to end; raises :class:`StoreError` (one line naming the file,
  the field, the expected and the found value) on the first problem — never another
  exception, whatever the damage.

  Checks: the manifest (presence, version, schema and types); ``modalities`` (e.g.
  from a config) present; the splits ``require_splits`` present and ``nonempty`` ones
  with ≥ 1 row; every file listed with a matching sha256 (``check_hashes``); per
  split: ``ids.json`` a list of unique strings, feature and embedding files present
  and readable, of the declared dtype, with the split's row count and the declared
  dims; finite values and unit-norm embeddings over all rows (chunked, vectorised);
  integer ``labels.npy`` in ``[0, num_classes)``; ``captions.json`` of the right length;
  no id in two splits; ``heads.npz`` (when present) readable, with every modality's
  keys, shapes against the manifest's dims, float and finite (:func:`check_heads`).
  """
  try:
    return _validate(root, modalities, check_hashes, require_splits, nonempty, chunk_rows)
  except StoreError:
    raise
  except Exception as e:  # noqa: BLE001 — a damaged store must give one line, not a traceback
    raise _err(root, "store", "a readable v1 store", f"{type(e).__name__}: {e}") from None


def _validate(root, modalities, check_hashes, require_splits, nonempty, chunk_rows) -> Store:
  st = Store(root)
  _check_manifest(st)
  mp = os.path.join(root, MANIFEST)
  if modalities is not None:
    st.require_modalities(modalities)
  for split in require_splits:
    if split not in st.splits:
      raise _err(mp, "splits", f"to contain '{split}'", sorted(st.splits))
  for split in nonempty:
    if split in st.splits and st.count(split) < 1:
      raise _err(mp, f"splits.{split}.count", "≥ 1 row", 0)
  if check_hashes:
    for rel, digest in st.manifest["files"].items():
      p = os.path.join(root, rel)
      if not os.path.exists(p):
        raise _err(p, "file", "present (listed in manifest.files)", "missing")
      found = sha256_file(p)
      if found != digest:
        raise _err(p, "sha256", digest, found, "file corrupted or changed after writing; "
                   "check_hashes=False skips this check")
  nc = st.num_classes
  split_of: dict[str, str] = {}   # id -> the first split holding it
  for split in st.splits:
    expected = st.count(split)
    ids = _load_json(st._path(split, "ids.json"), "ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
      raise _err(st._path(split, "ids.json"), "ids", "a list of strings", type(ids).__name__)
    if len(ids) != expected:
      raise _err(st._path(split, "ids.json"), "length", expected, len(ids))
    if len(set(ids)) != len(ids):
      seen, dup = set(), None
      for i in ids:
        if i in seen:
          dup = i
          break
        seen.add(i)
      raise _err(st._path(split, "ids.json"), "ids", "unique ids", f"'{dup}' repeated")
    for i in ids:   # no instance in two splits (an id in train and test is leakage)
      other = split_of.setdefault(i, split)
      if other != split:
        raise _err(st._path(split, "ids.json"), "ids", f"no id shared with split '{other}' "
                   "(an instance in two splits leaks between them)",
                   f"'{i}' in both '{other}' and '{split}'")
    for name in st.modalities:
      spec = st.spec(name)
      for kind, dim in (("features", spec.feature_dim), ("embeddings", spec.embedding_dim)):
        p = st._path(split, f"{name}.{kind}.npy")
        a = _load_npy(p, f"{name}.{kind}")
        if a.ndim != 2 or a.shape[0] != expected:
          raise _err(p, "rows", f"{expected} (split '{split}' count)",
                     a.shape[0] if a.ndim else a.shape)
        if a.shape[1] != dim:
          raise _err(p, f"{kind[:-1]}_dim", dim, a.shape[1])
        if str(a.dtype) != spec.dtype:
          raise _err(p, "dtype", f"{spec.dtype} (manifest modalities.{name}.dtype)", a.dtype)
        for s0 in range(0, expected, chunk_rows):
          blk = np.asarray(a[s0:s0 + chunk_rows], np.float32)
          bad = ~np.isfinite(blk).all(axis=1)
          if bad.any():
            r = s0 + int(np.argmax(bad))
            raise _err(p, f"row {r}", "finite values", "NaN or inf")
          if kind == "embeddings":
            norms = np.linalg.norm(blk.astype(np.float64), axis=1)
            off = np.abs(norms - 1.0) > NORM_TOL
            if off.any():
              r = s0 + int(np.argmax(off))
              raise _err(p, f"row {r} norm", f"1 ± {NORM_TOL} (unit-norm embeddings)",
                         f"{norms[r - s0]:.4g}")
    lp = st._path(split, "labels.npy")
    if os.path.exists(lp):
      labs = _load_npy(lp, "labels")
      if labs.shape != (expected,):
        raise _err(lp, "shape", (expected,), labs.shape)
      if not np.issubdtype(labs.dtype, np.integer):
        raise _err(lp, "dtype", "integer class ids", labs.dtype)
      if nc is None:
        raise _err(mp, "class_names", "a list (labels.npy exists)", None)
      if expected and (labs.min() < 0 or labs.max() >= nc):
        bad = int(labs[(labs < 0) | (labs >= nc)][0])
        raise _err(lp, "label", f"in [0, {nc})", bad)
    cp = st._path(split, "captions.json")
    if os.path.exists(cp):
      caps = _load_json(cp, "captions")
      if not isinstance(caps, list) or len(caps) != expected:
        raise _err(cp, "length", expected, len(caps) if isinstance(caps, list) else type(caps).__name__)
  hp = os.path.join(root, HEADS)
  if os.path.exists(hp):
    try:
      with np.load(hp, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001
      raise _err(hp, "heads", "a readable .npz archive", f"{type(e).__name__}: {e}") from None
    check_heads(arrays, {m: (st.spec(m).feature_dim, st.spec(m).embedding_dim)
                         for m in st.modalities}, hp)
  return st


# --------------------------------------------------------------------------- merge


def merge(root: str) -> dict:
  """Merges shards written by several workers (``--num-shards``) and writes the
  manifest. Reads the writer's parameters from ``<root>/.writer.json``."""
  p = os.path.join(root, ".writer.json")
  if not os.path.exists(p):
    raise _err(p, ".writer.json", "written by the embedding stage", "no file")
  with open(p, encoding="utf-8") as f:
    cfg = json.load(f)
  w = StoreWriter(root, {k: ModalitySpec(**v) for k, v in cfg["modalities"].items()},
                  encoder=cfg["encoder"], checkpoint_sha256=cfg.get("checkpoint_sha256", ""),
                  class_names=cfg.get("class_names"), command=cfg.get("command"),
                  extra=cfg.get("extra"))
  expected = (cfg.get("extra") or {}).get("shards") or {}
  for split, k in expected.items():
    found = w._split_shards(split)
    if found != list(range(int(k))):
      missing = sorted(set(range(int(k))) - set(found))
      raise _err(os.path.join(root, split, ".shards"), "finished shards",
                 f"0..{int(k) - 1} ({k} shards)", f"missing {missing[:10]}",
                 "a worker did not finish; rerun it with the same arguments")
  manifest = w.finalize(cfg.get("splits"))
  validate(root)
  return manifest


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
  ap = argparse.ArgumentParser(prog="python -m embed.store",
                               description="Inspect, validate or merge an embedding store (format v1).")
  sub = ap.add_subparsers(dest="cmd", required=True)
  p_info = sub.add_parser("info", help="print a summary of a store")
  p_info.add_argument("dir", help="store directory")
  p_val = sub.add_parser("validate", help="check a store; exit 0 if valid, 1 with the problem otherwise")
  p_val.add_argument("dir", help="store directory")
  p_val.add_argument("--modalities", default=None,
                     help="comma-separated modalities that must be present (e.g. vision,audio,text)")
  p_val.add_argument("--no-hashes", action="store_true", help="skip sha256 checks (faster)")
  p_merge = sub.add_parser("merge", help="merge the shards of a sharded embedding run and validate")
  p_merge.add_argument("dir", help="store directory")
  args = ap.parse_args(argv)
  try:
    if args.cmd == "info":
      print(Store(args.dir).info())
    elif args.cmd == "validate":
      mods = args.modalities.split(",") if args.modalities else None
      st = validate(args.dir, mods, check_hashes=not args.no_hashes)
      print(f"valid: {args.dir} ({', '.join(f'{s}={st.count(s)}' for s in st.splits)})")
    elif args.cmd == "merge":
      m = merge(args.dir)
      counts = ", ".join(f"{s}={v['count']}" for s, v in m["splits"].items())
      print(f"merged: {args.dir} ({counts})")
  except StoreError as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    return 1
  except Exception as e:  # noqa: BLE001 — one line for any damaged store
    print(f"error: {args.dir}: {type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
