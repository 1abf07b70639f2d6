r"""What a distilled set looks like (the HoPA paper's Figure 3, in the project's setting;
``python -m experiments.inspect_distilled``, ``docs/analyses.md``).

The project distils pre-head features, so there are no pixels or waveforms to show;
what can be shown is where the distilled instances sit among the real ones. For a
distilled store written by ``experiments.hopa`` (train = synthetic,
``extra.hopa.source_store`` and ``extra.hopa.init_ids`` give the real source store and
the real rows each synthetic instance started from), :func:`inspect_store` writes, next
to the store (``<store>/../inspect_distilled/`` by default):

``neighbours.md`` / ``neighbours.json``
  per modality, for a few distilled instances, the ``k`` nearest real training
  instances (the source store's train rows but the validation ones) by cosine
  similarity of the embeddings under the store's (pretrained) heads — the embeddings
  the distillation matched — with their ids, similarities, class labels and, where
  the source store has them, captions; the instance's own initial row, its similarity
  and rank; and per-modality summaries over the whole set (mean cosine of a distilled
  instance to its initial row and to its nearest real row, how often that nearest row
  is its own initial one).
``projection.png``
  per modality, a 2-D PCA of the real embeddings (the axes are fitted on the real rows
  alone) with the initial and the distilled instances projected on the same axes, a
  line from each initial instance to its distilled one.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from embed import store as store_lib
from mmdd_jax import data, distributed, heads as heads_lib, results

DEFAULT_DIR = "inspect_distilled"


def source_store(st: store_lib.Store, *, check_hashes: bool = True,
                 require_splits=("train",)) -> store_lib.Store:
  """The real store a distilled store ``st`` (written by ``experiments.hopa``) came from:
  ``extra.hopa.source_store`` resolved against ``st``'s root (absolute in stores written
  before 2026-12-01), checked against ``extra.hopa.source_manifest_sha256`` where
  recorded; bad input stops with one line naming the file and field."""
  mpath = os.path.join(st.root, store_lib.MANIFEST)
  extra = (st.manifest.get("extra") or {}).get("hopa") or {}
  for field in ("source_store", "init_ids"):
    if not extra.get(field):
      raise store_lib.StoreError(f"{mpath}: field 'extra.hopa.{field}': expected a distilled "
                                 "store written by experiments.hopa (with its source store "
                                 "and initial rows), found none")
  src_root = os.path.normpath(os.path.join(st.root, extra["source_store"]))
  if not os.path.isfile(os.path.join(src_root, store_lib.MANIFEST)):
    raise store_lib.StoreError(f"{mpath}: field 'extra.hopa.source_store': expected the source "
                               f"store (relative to this store), found no store at {src_root}")
  want = extra.get("source_manifest_sha256")
  found = store_lib.sha256_file(os.path.join(src_root, store_lib.MANIFEST))
  if want and found != want:
    raise store_lib.StoreError(f"{mpath}: field 'extra.hopa.source_manifest_sha256': expected "
                               f"{want} (the store distilled from), found {found} at {src_root} "
                               "(the source store changed since)")
  return store_lib.validate(src_root, st.modalities, check_hashes=check_hashes,
                            require_splits=tuple(require_splits), nonempty=tuple(require_splits))


SIMILARITY = "similarity.npy"   # default name of a distilled store's learned Ŝ


def similarity_name(manifest: dict) -> str:
  """The file name of a distilled store's learned Ŝ: ``extra.hopa.similarity``, else
  :data:`SIMILARITY`."""
  return (((manifest or {}).get("extra") or {}).get("hopa") or {}).get("similarity") or SIMILARITY


def load_similarity(st: store_lib.Store) -> np.ndarray | None:
  """A distilled store's learned Ŝ ([n, n] float32, ``n`` = its train rows), or None when
  it has none (its targets are ``I``). The one reader every consumer uses (evaluation,
  cross-architecture, the bound study): a file that is present but not listed in the
  manifest (an unfinished write, or a store of an older version), a manifest that names
  one that is absent, a wrong shape or a non-finite entry stops with one line naming the
  file and field."""
  mpath = os.path.join(st.root, store_lib.MANIFEST)
  name = similarity_name(st.manifest)
  path = os.path.join(st.root, name)
  named = bool(((st.manifest.get("extra") or {}).get("hopa") or {}).get("similarity"))
  listed = name in (st.manifest.get("files") or {})
  present = os.path.exists(path)
  if not present and not listed and not named:
    return None
  if not listed:
    raise store_lib.StoreError(
        f"{mpath}: field 'files': expected '{name}' listed (the distilled set's Ŝ), found it "
        "missing from the manifest (an unfinished write, or a store of an older version); "
        "rewrite the store")
  if not present:
    raise store_lib.StoreError(f"{mpath}: field 'files': expected '{name}' (listed) at {path}, "
                               "found no file")
  sim = np.load(path)
  n = st.count("train")
  if sim.shape != (n, n):
    raise store_lib.StoreError(f"{path}: field 'shape': expected {(n, n)} (the train split's "
                               f"rows squared), found {tuple(sim.shape)}")
  if not np.all(np.isfinite(sim)):
    raise store_lib.StoreError(f"{path}: field 'values': expected finite entries, found "
                               f"{int(np.size(sim) - np.isfinite(sim).sum())} non-finite")
  return np.asarray(sim, np.float32)


def cosines(query: np.ndarray, bank: np.ndarray) -> np.ndarray:
  """``[Q, B]`` cosine similarities of the rows of ``query`` and ``bank``."""
  q = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
  b = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
  return q @ b.T


def nearest(sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """``(indices [Q, k], cosines [Q, k])`` of the ``k`` largest entries of each row of
  ``sim`` (descending; ties to the lower index)."""
  idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
  return idx, np.take_along_axis(sim, idx, axis=1)


def pca_2d(real: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(mean [d], components [2, d], explained variance ratio [2])`` of ``real``."""
  mu = real.mean(0)
  _, s, vt = np.linalg.svd(real - mu, full_matrices=False)
  var = s * s
  return mu, vt[:2], var[:2] / max(var.sum(), 1e-30)


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  na = np.maximum(np.linalg.norm(a, axis=1), 1e-12)
  nb = np.maximum(np.linalg.norm(b, axis=1), 1e-12)
  return np.sum(a * b, axis=1) / (na * nb)


def inspect_store(store_dir: str, *, out_dir: str | None = None, k: int = 5,
                  instances: int = 4, max_plot_real: int = 3000, check_hashes: bool = True,
                  seed: int = 0) -> dict:
  """Writes the neighbours and the projection of a distilled store (module
  docstring); returns ``{"md", "json", "png", "summary"}`` (paths and summaries).

  Args:
    store_dir: the distilled store (``<hopa workdir>/distilled``).
    out_dir: where to write (default ``<store_dir>/../inspect_distilled``).
    k: nearest real instances per distilled instance and modality.
    instances: how many distilled instances (evenly spaced over the set's rows).
    max_plot_real: real rows drawn in the plot (a seeded subsample; PCA uses them all).
  """
  if k < 1 or instances < 1:
    raise ValueError(f"k / instances: expected ≥ 1, found {k} / {instances}")
  root = os.path.abspath(store_dir)
  st = store_lib.validate(root, check_hashes=check_hashes, require_splits=("train",),
                          nonempty=("train",))
  mpath = os.path.join(root, store_lib.MANIFEST)
  src = source_store(st, check_hashes=check_hashes)
  extra = st.manifest["extra"]["hopa"]
  mods = st.modalities
  n = st.count("train")
  init_ids = list(extra["init_ids"])
  src_ids = src.ids("train")
  pos = {i: r for r, i in enumerate(src_ids)}
  missing = [i for i in init_ids if i not in pos]
  if len(init_ids) != n or missing:
    raise store_lib.StoreError(
        f"{mpath}: field 'extra.hopa.init_ids': expected {n} ids of the train split of "
        f"{src.root}, found {len(init_ids)} ids, {len(missing)} of them not there")
  val = set(st.ids("val")) if "val" in st.splits else set()
  real_rows = np.asarray([r for r, i in enumerate(src_ids) if i not in val])
  init_rows = np.asarray([pos[i] for i in init_ids])
  if np.any(np.isin(init_rows, np.asarray([pos[i] for i in val if i in pos], np.int64))):
    raise store_lib.StoreError(f"{mpath}: field 'extra.hopa.init_ids': expected train rows "
                               "outside the validation split, found some inside it")
  p0 = heads_lib.pretrained_heads(st, mods)
  syn = heads_lib.embed_split(p0, data.load_split(st, "train", "features", mods))
  real_all = heads_lib.embed_split(p0, data.load_split(src, "train", "features", mods))
  real = {m: v[real_rows] for m, v in real_all.items()}
  init = {m: v[init_rows] for m, v in real_all.items()}
  captions = src.captions("train")
  labels = src.labels("train")
  labels = None if labels is None else np.asarray(labels)
  names = src.class_names
  syn_ids = st.ids("train")
  picks = sorted(set(np.linspace(0, n - 1, min(instances, n)).round().astype(int).tolist()))
  kk = min(k, len(real_rows))

  def describe(row: int) -> dict:
    d = {"id": src_ids[row]}
    if labels is not None:
      c = int(labels[row])
      d["label"] = names[c] if names and 0 <= c < len(names) else c
    if captions is not None:
      d["caption"] = captions[row]
    return d

  summary, per_mod = {}, {}
  for m in mods:
    sim = cosines(syn[m], real[m])
    idx, cos = nearest(sim, kk)
    own_col = np.searchsorted(real_rows, init_rows)            # real_rows is sorted
    own_cos = sim[np.arange(n), own_col]
    own_rank = 1 + np.sum(sim > own_cos[:, None], axis=1)      # 1: nothing closer
    summary[m] = {"cos_to_initial_mean": float(np.mean(_cos_rows(syn[m], init[m]))),
                  "cos_to_nearest_real_mean": float(np.mean(cos[:, 0])),
                  "nearest_is_initial_frac": float(np.mean(own_rank == 1)),
                  "initial_rank_median": float(np.median(own_rank))}
    insts = []
    for i in picks:
      insts.append({
          "synthetic": syn_ids[i], "initial": describe(int(init_rows[i])),
          "cos_to_initial": float(own_cos[i]),
          "initial_rank": int(own_rank[i]),
          "neighbours": [dict(describe(int(real_rows[j])), rank=r + 1, cos=float(c))
                         for r, (j, c) in enumerate(zip(idx[i, :kk], cos[i, :kk]))]})
    per_mod[m] = insts
  out_dir = out_dir or os.path.join(os.path.dirname(root), DEFAULT_DIR)
  os.makedirs(out_dir, exist_ok=True)
  record = {"store": root, "source_store": os.path.abspath(src.root),
            "method": extra.get("method"), "n": n, "k": kk, "instances": picks,
            "real_rows": int(len(real_rows)), "space": "embeddings under the store's heads.npz",
            "summary": summary, "modalities": per_mod}
  paths = {"json": os.path.join(out_dir, "neighbours.json"),
           "md": os.path.join(out_dir, "neighbours.md"),
           "png": os.path.join(out_dir, "projection.png")}
  if not distributed.is_writer():   # process 0 writes the files
    return dict(paths, summary=summary)
  results.atomic_write_json(paths["json"], results.jsonable(record))
  results.atomic_write_text(paths["md"], to_markdown(record))
  plot_projection(real, init, syn, paths["png"], title=f"{extra.get('method', 'distilled')} "
                  f"n={n}: {os.path.basename(os.path.normpath(src.root))}",
                  max_real=max_plot_real, seed=seed, picks=picks, ids=syn_ids)
  return dict(paths, summary=summary)


def _cell(s) -> str:
  return str(s).replace("|", "\\|")


def to_markdown(rec: dict) -> str:
  lines = [f"# Nearest real training instances of distilled instances", "",
           f"Store `{rec['store']}` (method {rec['method']}, n = {rec['n']}); real rows: the "
           f"{rec['real_rows']} train rows of `{rec['source_store']}` outside the validation split. "
           f"Cosine similarity of the {rec['space']}.", "",
           "| modality | cos(distilled, its initial) | cos(distilled, nearest real) | nearest "
           "is its initial | median rank of its initial |", "|---|---|---|---|---|"]
  for m, s in rec["summary"].items():
    lines.append(f"| {m} | {s['cos_to_initial_mean']:.3f} | {s['cos_to_nearest_real_mean']:.3f} | "
                 f"{100 * s['nearest_is_initial_frac']:.0f} % | {s['initial_rank_median']} |")
  for m, insts in rec["modalities"].items():
    lines += ["", f"## {m}"]
    for inst in insts:
      ini = inst["initial"]
      lines += ["", f"**{inst['synthetic']}** — initialised from `{ini['id']}`"
                + (f" ({_cell(ini['label'])})" if "label" in ini else "")
                + (f": “{_cell(ini['caption'])}”" if "caption" in ini else "")
                + f"; cos to it {inst['cos_to_initial']:.3f}, its rank {inst['initial_rank']}", "",
                "| rank | id | cos | label | caption |", "|---|---|---|---|---|"]
      for nb in inst["neighbours"]:
        lines.append(f"| {nb['rank']} | `{nb['id']}` | {nb['cos']:.3f} | "
                     f"{_cell(nb.get('label', ''))} | {_cell(nb.get('caption', ''))} |")
  return "\n".join(lines) + "\n"


def plot_projection(real: dict, init: dict, syn: dict, path: str, *, title: str = "",
                    max_real: int = 3000, seed: int = 0, picks: Sequence[int] = (),
                    ids: Sequence[str] | None = None) -> None:
  """Per modality: real (grey), initial (blue) and distilled (red ×) embeddings on the
  real rows' two principal axes, a line from each initial to its distilled instance;
  the ``picks`` (the instances of ``neighbours.md``) are circled and numbered."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  mods = list(real)
  fig, axes = plt.subplots(1, len(mods), figsize=(3.6 * len(mods), 3.6), squeeze=False)
  rs = np.random.default_rng(seed)
  for ax, m in zip(axes[0], mods):
    mu, comp, evr = pca_2d(np.asarray(real[m], np.float64))
    proj = lambda x: (np.asarray(x, np.float64) - mu) @ comp.T
    r = real[m] if len(real[m]) <= max_real else real[m][rs.choice(len(real[m]), max_real, replace=False)]
    pr, pi, ps = proj(r), proj(init[m]), proj(syn[m])
    ax.scatter(pr[:, 0], pr[:, 1], s=3, c="0.75", label="real", linewidths=0)
    for a, b in zip(pi, ps):
      ax.plot([a[0], b[0]], [a[1], b[1]], c="tab:purple", lw=0.6, alpha=0.7)
    ax.scatter(pi[:, 0], pi[:, 1], s=10, c="tab:blue", label="initial", linewidths=0)
    ax.scatter(ps[:, 0], ps[:, 1], s=14, c="tab:red", marker="x", label="distilled", linewidths=0.8)
    for i in picks:
      ax.scatter(ps[i, 0], ps[i, 1], s=90, facecolors="none", edgecolors="k", linewidths=0.8)
      ax.annotate(ids[i] if ids is not None else str(i), ps[i], xytext=(4, 4), textcoords="offset points", fontsize=6)
    ax.set_title(m, fontsize=9)
    ax.set_xlabel(f"PC1 ({100 * evr[0]:.1f} %)", fontsize=8)
    ax.set_ylabel(f"PC2 ({100 * evr[1]:.1f} %)", fontsize=8)
    ax.tick_params(labelsize=7)
  axes[0][0].legend(fontsize=7, loc="best")
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main_paths(out: dict) -> Sequence[str]:
  return [out["md"], out["json"], out["png"]]
