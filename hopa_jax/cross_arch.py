r"""Cross-architecture evaluation of distilled sets (the HoPA paper's Table 4, in the
project's setting; ``python -m experiments.cross_arch``, ``docs/analyses.md``).

The project distils *pre-head features* (the inputs of ImageBind's projection heads),
so a set distilled for ImageBind's heads cannot be fed to another encoder's trunk
(LanguageBind, OmniBind): what can carry over is the set's value to *heads* the
distillation never used. Each distilled store is evaluated with every head
architecture of ``config.heads`` (:data:`hopa_jax.evaluate.HEADS`: ImageBind's linear
heads from the pretrained weights, the same linear heads from a random
initialisation, a two-layer MLP head per modality from a random initialisation, the
pretrained heads with a zero-initialised residual MLP branch),
and so are its two reference rows under the same heads:

``distilled``  the store's train split (synthetic features; ``similarity.npy`` targets
               when the store has them, else ``I``);
``random``     the real train instances the distillation started from
               (``extra.hopa.init_ids`` in the source store): the project's Random row
               for that ``n`` and seed;
``full``       every real train instance of the source store except the validation
               rows (the store's ``val`` split, by id): the project's Full row.

Every cell is :func:`hopa_jax.evaluate.evaluate_set` under the ``select`` protocol —
lr and epochs chosen on the store's validation split by the same rule for every row
and head — scored once on the store's test split, in its own workdir
``<workdir>/cells/…`` (bound to the cell's config; a finished cell is read, not rerun;
a Full cell is shared by the stores of one source store and validation split).
:func:`write_table` writes ``table.md``, ``table.json`` and ``cross_arch.png``.

A cell is bound to the *content* of the stores it reads (:func:`mmdd_jax.workdir.store_digest`
of the source store, and of the distilled store for a ``distilled`` cell), never to
their paths, and its directory name is made of those digests: a finished cell is read
again wherever the same stores are, and ``--archive`` (:mod:`hopa_jax.sweep_archive`)
carries finished cells between machines and sessions (``docs/cross_arch_cells/``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from absl import logging

from embed import store as store_lib
from hopa_jax import evaluate as ev
from hopa_jax import inspect_distilled
from hopa_jax import plan as plan_lib
from mmdd_jax import data, distributed, heads as heads_lib, results, rng
from mmdd_jax import stage as stage_lib
from mmdd_jax import workdir as workdir_lib

ROWS = plan_lib.CROSS_ARCH_ROWS


def _sha(obj: Any) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass
class StoreSets:
  """A distilled store and its reference rows (module docstring)."""
  root: str
  source: str
  method: str
  n: int
  label: str
  digest: str          # content digest of the distilled store
  source_digest: str   # content digest of the source store
  train: dict          # row -> {modality: [N, d]}
  sim: dict | None     # {"S": [n, n]} for the distilled row, or None
  val_xs: dict
  test_xs: dict
  params0: dict
  init_ids: list
  val_ids: list
  test_ids: list


def load_sets(store_dir: str, *, check_hashes: bool = True,
              rows: Sequence[str] = ROWS) -> StoreSets:
  """Reads a distilled store (written by ``experiments.hopa``) and its source store;
  bad input stops with one line naming the file and field."""
  root = os.path.abspath(store_dir)
  st = store_lib.validate(root, check_hashes=check_hashes, require_splits=("train", "val", "test"),
                          nonempty=("train", "val", "test"))
  mpath = os.path.join(root, store_lib.MANIFEST)
  src = inspect_distilled.source_store(st, check_hashes=check_hashes)
  extra = st.manifest["extra"]["hopa"]
  mods = st.modalities
  src_ids = src.ids("train")
  pos = {i: r for r, i in enumerate(src_ids)}
  init_ids, val_ids = list(extra["init_ids"]), st.ids("val")
  for what, ids in (("extra.hopa.init_ids", init_ids), ("val split ids", val_ids)):
    missing = [i for i in ids if i not in pos]
    if missing:
      raise store_lib.StoreError(f"{mpath}: field '{what}': expected ids of the train split of "
                                 f"{src.root}, found {len(missing)} that are not (e.g. "
                                 f"'{missing[0]}')")
  n = st.count("train")
  if len(init_ids) != n:
    raise store_lib.StoreError(f"{mpath}: field 'extra.hopa.init_ids': expected {n} ids "
                               f"(the train split's rows), found {len(init_ids)}")
  train = {}
  if "distilled" in rows:
    train["distilled"] = data.load_split(st, "train", "features", mods)
  if "random" in rows or "full" in rows:
    all_train = data.load_split(src, "train", "features", mods)
    if "random" in rows:
      train["random"] = data.take_rows(all_train, np.asarray([pos[i] for i in init_ids]))
    if "full" in rows:
      val = set(val_ids)
      train["full"] = data.take_rows(all_train, np.asarray(
          [r for r, i in enumerate(src_ids) if i not in val]))
    del all_train
  s_hat = inspect_distilled.load_similarity(st)
  sim = {"S": s_hat} if s_hat is not None else None
  parent = os.path.basename(os.path.dirname(root)) if os.path.basename(root) == "distilled" else ""
  name = parent or os.path.basename(root)
  digest = workdir_lib.store_digest(root)
  return StoreSets(root=root, source=os.path.abspath(src.root),
                   method=str(extra.get("method", "store")), n=n,
                   label=f"{name}-{digest.split(':')[-1][:6]}", digest=digest,
                   source_digest=workdir_lib.store_digest(src.root), train=train, sim=sim,
                   val_xs=data.load_split(st, "val", "features", mods),
                   test_xs=data.load_split(st, "test", "features", mods),
                   params0=heads_lib.pretrained_heads(st, mods),
                   init_ids=init_ids, val_ids=val_ids, test_ids=st.ids("test"))


def eval_config(p: plan_lib.CrossArchPlan, head: str, sim: bool) -> ev.EvalConfig:
  """The cell's :class:`hopa_jax.evaluate.EvalConfig`: the plan's with ``head``."""
  return dataclasses.replace(p.eval, head=head, sim_kind="full" if sim else "fixed")


def cell_config(p: plan_lib.CrossArchPlan, sets: StoreSets, row: str, head: str) -> dict:
  """What a cell's result depends on besides its data (:func:`cell_data`); no path."""
  cfg = {"row": row, "head": head, "seed": int(p.seed),
         "val_ids_sha256": _sha(sets.val_ids), "test_ids_sha256": _sha(sets.test_ids),
         "objective": results.jsonable(p.config["objective"]),
         "eval": results.jsonable(p.config["eval"])}
  if row == "random":
    cfg["init_ids_sha256"] = _sha(sets.init_ids)
  return cfg


def cell_data(sets: StoreSets, row: str) -> dict:
  """The content digests a cell is bound to: the source store's (the real rows and the
  splits), and the distilled store's for a ``distilled`` cell."""
  d = {"source_store": sets.source_digest}
  if row == "distilled":
    d["store"] = sets.digest
  return d


def cell_dir(workdir: str, sets: StoreSets, row: str, head: str) -> str:
  if row == "full":   # shared by every store of this source and validation split
    src = os.path.basename(os.path.normpath(sets.source))
    key = _sha([sets.source_digest, sets.val_ids, sets.test_ids])[:8]
    return os.path.join(workdir, "cells", f"full-{src}-{key}", head)
  return os.path.join(workdir, "cells", sets.label, f"{row}_{head}")


def run_cell(p: plan_lib.CrossArchPlan, sets: StoreSets, row: str, head: str,
             workdir: str) -> dict:
  """Evaluates (or reads) one cell; returns its results dict (with ``row``, ``head``,
  ``store``)."""
  conf = cell_config(p, sets, row, head)
  wd = cell_dir(workdir, sets, row, head)
  tags = {"row": row, "head": head, "store": sets.root, "label": sets.label}
  with workdir_lib.open_workdir(wd, conf, data=cell_data(sets, row)):
    if os.path.exists(os.path.join(wd, "results.json")):
      return dict(results.read_results(wd)[0], **tags)
    logging.warning("cross_arch cell %s %s %s -> %s", sets.label, row, head, wd)
    sim = sets.sim if row == "distilled" else None
    cfg = eval_config(p, head, sim is not None)
    stages = stage_lib.Stages(wd)
    with stages.stage(time="eval"):
      out = ev.evaluate_set(rng.stream(rng.root(p.seed), "eval"), sets.params0, sets.train[row],
                            sets.test_xs, cfg, val_xs=sets.val_xs, sim_params=sim,
                            progress=p.progress, ckpt_dir=os.path.join(wd, "eval_ckpt"))
    n = len(next(iter(sets.train[row].values())))
    res = results.make_results(dataset=sets.source, method=sets.method if row == "distilled" else row,
                               n_syn=n if row != "full" else None, config=conf,
                               retrieval_runs=out["runs"], time_s=stages.time_s)
    res["eval"] = ev.record(cfg, out)
    with stages.stage("result") as s:
      s.write(avg=res["avg"], eval=res["eval"])
    results.write_results(wd, [res], title=f"{row} of {sets.root} with {head} heads")
    return dict(res, **tags)


def run_table(config, workdir: str, stores: Sequence[str], *,
              on_cell: Callable[[], None] | None = None) -> str:
  """Every (store, row, head) cell; writes and returns the table (module docstring).
  ``on_cell`` is called after every cell (``--archive`` saves the finished ones)."""
  p = plan_lib.resolve_cross_arch(config)   # the one check, before any store is read
  if not stores:
    raise ValueError("--stores: expected at least one distilled store directory, found none")
  all_sets = [load_sets(s, check_hashes=p.check_hashes, rows=p.rows) for s in stores]
  os.makedirs(workdir, exist_ok=True)
  cells = []
  for sets in all_sets:            # every store is checked before any cell runs
    for row in p.rows:
      for head in p.heads:
        cells.append(run_cell(p, sets, row, head, workdir))
        if on_cell is not None:
          on_cell()
    sets.train.clear()
  return write_table(workdir, cells, heads=list(p.heads), rows=list(p.rows))


def _pm(r: Mapping, k: str = "R@1") -> str:
  return f"{r['avg'][k]:.2f} ± {(r.get('avg_std') or {}).get(k, 0.0):.2f}"


def write_table(workdir: str, cells: Sequence[Mapping], *, heads: Sequence[str],
                rows: Sequence[str]) -> str:
  """``table.md`` (avg R@1 and R@5, mean ± std over evaluation runs; distilled − random
  per head), ``table.json`` (every cell) and ``cross_arch.png``."""
  by = {(x["label"], x["row"], x["head"]): x for x in cells}
  labels = list(dict.fromkeys(x["label"] for x in cells))
  lines = ["# Cross-architecture evaluation (Table 4 analogue)", "",
           "avg R@1 / avg R@5 (%) over the six retrieval directions, mean ± std over "
           "evaluation runs; lr and epochs selected on validation (one rule for every cell).", ""]
  for label in labels:
    one = next(x for x in cells if x["label"] == label)
    lines += [f"## {label}", "", f"store `{one['store']}` (method {by.get((label, 'distilled', heads[0]), one)['method']}, "
              f"n = {next((x['n_syn'] for x in cells if x['label'] == label and x['row'] != 'full'), '—')})", "",
              "| row | " + " | ".join(f"{h} R@1 | {h} R@5" for h in heads) + " |",
              "|---|" + "---|---|" * len(heads)]
    for row in rows:
      cs = [by.get((label, row, h)) for h in heads]
      lines.append(f"| {row} | " + " | ".join(
          f"{_pm(x)} | {_pm(x, 'R@5')}" if x else "— | —" for x in cs) + " |")
    if "distilled" in rows and "random" in rows:
      gaps = []
      for h in heads:
        d, r = by.get((label, "distilled", h)), by.get((label, "random", h))
        gaps.append(f"{d['avg']['R@1'] - r['avg']['R@1']:+.2f} | {d['avg']['R@5'] - r['avg']['R@5']:+.2f}"
                    if d and r else "— | —")
      lines.append("| distilled − random | " + " | ".join(gaps) + " |")
    lines += ["", "| row | head | eval lr | eval epochs | min |", "|---|---|---|---|---|"]
    for row in rows:
      for h in heads:
        x = by.get((label, row, h))
        if x:
          lines.append(f"| {row} | {h} | {x['eval']['lr']} | {x['eval']['epochs']} | "
                       f"{sum(x['time_s'].values()) / 60:.2f} |")
    lines.append("")
  md = "\n".join(lines) + "\n"
  if not distributed.is_writer():   # process 0 writes the table files
    return md
  results.atomic_write_text(os.path.join(workdir, "table.md"), md)
  results.atomic_write_json(os.path.join(workdir, "table.json"), results.jsonable(list(cells)))
  if cells:
    plot(cells, labels, heads, rows, os.path.join(workdir, "cross_arch.png"))
  return md


def plot(cells, labels, heads, rows, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  by = {(x["label"], x["row"], x["head"]): x for x in cells}
  fig, axes = plt.subplots(1, len(labels), figsize=(max(4.0, 1.6 * len(heads)) * len(labels), 3.2),
                           squeeze=False)
  width = 0.8 / len(rows)
  for ax, label in zip(axes[0], labels):
    for j, row in enumerate(rows):
      xs = [by.get((label, row, h)) for h in heads]
      ax.bar([i + j * width for i in range(len(heads))],
             [x["avg"]["R@1"] if x else 0.0 for x in xs], width,
             yerr=[(x.get("avg_std") or {}).get("R@1", 0.0) if x else 0.0 for x in xs],
             label=row, capsize=2)
    ax.set_xticks([i + width * (len(rows) - 1) / 2 for i in range(len(heads))], heads, fontsize=8)
    ax.set_ylabel("avg R@1 (%)")
    ax.set_title(label, fontsize=8)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
