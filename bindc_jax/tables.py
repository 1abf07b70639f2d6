"""The ImageBindDC tables on the simulators (issue 11), by one resumable call.

:func:`run_tables` runs, one after the other, the groups of :data:`GROUPS` (each a
:func:`bindc_jax.run.train_and_evaluate` in ``<workdir>/<group>/``) and writes
``<workdir>/tables.md`` beside the papers' numbers (:func:`write_tables`). Every group,
method, lr selection and evaluation is cached in its workdir, so a rerun resumes where it
stopped, and ``tables.md`` is rewritten from whatever has finished. Every row uses the
same selection rule (validation split carved from train, lr of the synthetic set and
evaluation epochs chosen on it) and both evaluation heads (linear and MLP).

A group's config is the base config (``experiments/configs/bindc.py`` with the user's
overrides: ``scale``, ``data_dir``, ``seed`` …), then the budget's keys, then the group's
keys, then ``eval.heads = linear+mlp`` and ``progress = False``.

Budgets (:data:`BUDGETS`): ``spec`` = SPEC §4 (2000 iterations, 4096 frequencies, lr
selection 100 steps per candidate); ``reduced`` (what a 2-core CPU shared with other jobs
finishes in about an hour) = 300 iterations, 1024 frequencies, 60 selection steps per
candidate; ``smoke`` = seconds per group at a small ``scale``, for tests.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import ml_collections

from bindc_jax import run
from embed.store import atomic_write_text
from mmdd_jax import distributed
from mmdd_jax import keys
from mmdd_jax import results as results_lib
from mmdd_jax import stage as stage_lib

BUDGETS: dict[str, dict[str, Any]] = {
    "spec": {"distill.iterations": 2000, "loss.dist.num_freqs": 4096, "select.iterations": 100},
    "reduced": {"distill.iterations": 300, "loss.dist.num_freqs": 1024,
                "select.iterations": 60},
    "smoke": {"distill.iterations": 4, "distill.real_batch": 32, "loss.dist.num_freqs": 128,
              "select.iterations": 2, "select.grid": (0.01, 0.1), "select.runs": 1,
              "eval.runs": 2, "eval.epochs": 5, "eval.min_steps": 20},
}

MAIN = ("random", "herding", "dm", "mmd", "avdd", "bindc")

# (group name, config keys). Full does not depend on ipc: it runs with ipc 1.
GROUPS: list[tuple[str, dict[str, Any]]] = [
    ("vggs10k_ipc1", {"dataset": "vggs10k_sim", "ipc": 1, "method": MAIN + ("full",)}),
    ("nyuv2_ipc1", {"dataset": "nyuv2_sim", "ipc": 1, "method": MAIN + ("full",)}),
    ("ave_audio_ipc1", {"dataset": "ave_sim", "ipc": 1, "modalities": ("audio",),
                        "method": ("mmd", "cfd_only")}),
    ("ave_ipc10", {"dataset": "ave_sim", "ipc": 10,
                   "method": ("mmd", "cfd_only", "bindc_no_cross", "bindc_no_joint", "bindc",
                              "full")}),
    ("vggs10k_ipc10", {"dataset": "vggs10k_sim", "ipc": 10, "method": MAIN}),
    ("vggs10k_ipc20", {"dataset": "vggs10k_sim", "ipc": 20, "method": MAIN}),
    ("nyuv2_ipc5", {"dataset": "nyuv2_sim", "ipc": 5, "method": MAIN}),
    ("nyuv2_ipc10", {"dataset": "nyuv2_sim", "ipc": 10, "method": MAIN}),
]
TABLE_KEYS = {"eval.heads": ("linear", "mlp"), "progress": False}

# The papers' numbers (ImageBindDC paper, Tables 1-2 and the AVE ablations).
PAPER = {
    "vggs10k": {"random": (15.44, 32.01, 45.10), "dm": (36.54, 43.85, 49.01),
                "avdd": (40.41, 48.08, 48.86), "bindc": (42.66, 55.23, 55.30),
                "full": (68.24,)},
    "nyuv2": {"random": (60.60, 73.85, 88.38), "dm": (67.97, 89.08, 96.89),
              "avdd": (72.22, 95.92, 98.62), "bindc": (80.43, 97.30, 98.73), "full": (98.62,)},
    "ave": {("audio", "mmd"): 27.87, ("audio", "cfd_only"): 32.33, ("va", "mmd"): 69.26,
            ("va", "cfd_only"): 70.34, ("va", "bindc"): 73.67},
}
IPCS = {"vggs10k": (1, 10, 20), "nyuv2": (1, 5, 10)}
NAMES = {"random": "Random", "herding": "Herding", "dm": "DM", "mmd": "MMD", "avdd": "AVDD",
         "bindc": "ImageBindDC", "full": "Full", "cfd_only": "CFD uni only",
         "bindc_no_cross": "uni + joint", "bindc_no_joint": "uni + cross"}


def group_config(config: ml_collections.ConfigDict, group: str, budget: str
                 ) -> ml_collections.ConfigDict:
  """The config of ``group`` under ``budget`` (module docstring)."""
  if budget not in BUDGETS:
    raise ValueError(f"budget: expected one of {sorted(BUDGETS)}, found '{budget}'")
  groups = dict(GROUPS)
  if group not in groups:
    raise ValueError(f"group: expected one of {list(groups)}, found '{group}'")
  return keys.override(config.copy_and_resolve_references(),
                       {**BUDGETS[budget], **groups[group], **TABLE_KEYS})


def run_tables(config: ml_collections.ConfigDict, workdir: str, *, budget: str = "reduced",
               only: Sequence[str] = (), fresh: bool = False, log=print) -> str:
  """Runs the groups (``only``: a subset, in :data:`GROUPS` order; each resuming) and
  returns the markdown of ``tables.md``, rewritten after every group."""
  unknown = sorted(set(only) - set(dict(GROUPS)))
  if unknown:
    raise ValueError(f"only: expected group names from {[g for g, _ in GROUPS]}, "
                     f"found {unknown}")
  # every group resolved and checked once, before any directory exists; its run reads the plan
  plans = {g: run.resolve(group_config(config, g, budget))
           for g, _ in GROUPS if not only or g in only}
  distributed.on_writer(lambda: os.makedirs(workdir, exist_ok=True), f"creating {workdir}")
  for group, p in plans.items():
    t0 = time.time()
    run.train_and_evaluate(p, os.path.join(workdir, group), fresh=fresh)
    log(f"[{group}] done in {(time.time() - t0) / 60:.1f} min")
    write_tables(workdir, budget, config.scale, config)
  return write_tables(workdir, budget, config.scale, config)


def load_rows(workdir: str, config: ml_collections.ConfigDict | None = None,
              budget: str = "reduced") -> dict[str, list[dict]]:
  """``{group: results rows}`` of the groups that have finished. With ``config`` only
  the groups whose workdir is bound to this config (at ``budget``) *and* to their
  store's current content are read (:func:`mmdd_jax.workdir.finished_results`); the
  others are left out (shown as —)."""
  out = {}
  for g, _ in GROUPS:
    wd = os.path.join(workdir, g)
    if not os.path.exists(os.path.join(wd, "results.json")):
      continue
    if config is None:
      out[g] = results_lib.read_results(wd)
      continue
    got = stage_lib.finished_run(wd, run.resolve(group_config(config, g, budget)))
    if got is not None:
      out[g] = got
  return out


def _cell(rows, method, head):
  for r in rows:
    if r["method"] == method and r.get("head", "linear") == head:
      return f"{r['accuracy']:.1f} ± {r['accuracy_std']:.1f}"
  return "—"


def _lr(rows, method):
  for r in rows:
    if r["method"] == method and (r.get("selection") or {}).get("lr") is not None:
      return f"{r['selection']['lr']:g}"
  return "–"


def _budget_text(budget: str) -> str:
  return ", ".join(f"{k}={'+'.join(map(str, v)) if isinstance(v, tuple) else v}"
                   for k, v in BUDGETS[budget].items())


def write_tables(workdir: str, budget: str, scale: float = 1.0,
                 config: ml_collections.ConfigDict | None = None) -> str:
  """``tables.md`` from the finished groups (missing cells: —; with ``config``, only
  groups bound to it and to their store's current content, :func:`load_rows`);
  returns the markdown."""
  if config is not None:
    run.check_config(config)
  res = load_rows(workdir, config, budget)
  lines = [f"Budget `{budget}` ({_budget_text(budget)}), simulator scale {scale:g}; accuracy % "
           "(mean ± std over the evaluation runs); paper in brackets; lr = the synthetic "
           "set's step length chosen on validation (linear / MLP head rows share it).", ""]
  for ds in ("vggs10k", "nyuv2"):
    ipcs = IPCS[ds]
    for head in ("linear", "mlp"):
      lines += [f"### {ds}_sim — {head} head", "",
                "| method | " + " | ".join(f"{i} ipc" for i in ipcs) + " | lr (" +
                "/".join(str(i) for i in ipcs) + ") |",
                "|---|" + "---|" * (len(ipcs) + 1)]
      for m in ("random", "herding", "dm", "mmd", "avdd", "bindc", "full"):
        cells, lrs = [], []
        for j, ipc in enumerate(ipcs):
          rows = res.get(f"{ds}_ipc{ipc}", [])
          if m == "full" and ipc != 1:
            cells.append("")
            continue
          paper = PAPER[ds].get(m)
          ptxt = f" [{paper[j]:.1f}]" if paper and j < len(paper) else ""
          cells.append(_cell(rows, m, head) + ptxt)
          lrs.append(_lr(rows, m))
        lines.append(f"| {NAMES[m]} | " + " | ".join(cells) +
                     f" | {'/'.join(lrs) if set(lrs) - {'–'} else ''} |")
      lines.append("")
  for head in ("linear", "mlp"):
    lines += [f"### ave_sim ablations — {head} head", "",
              "| configuration | ipc | accuracy | paper | lr |", "|---|---|---|---|---|"]
    a1 = res.get("ave_audio_ipc1", [])
    a10 = res.get("ave_ipc10", [])
    for m in ("mmd", "cfd_only"):
      lines.append(f"| {'MMD' if m == 'mmd' else 'CFD'} (audio only) | 1 | {_cell(a1, m, head)} | "
                   f"{PAPER['ave'][('audio', m)]} | {_lr(a1, m).strip('–')} |")
    for m, name in (("mmd", "MMD (video+audio)"), ("cfd_only", "CFD (video+audio) = uni only"),
                    ("bindc_no_cross", "uni + joint"), ("bindc_no_joint", "uni + cross"),
                    ("bindc", "uni + cross + joint (ImageBindDC)"), ("full", "Full")):
      p = PAPER["ave"].get(("va", m), "improved" if m.startswith("bindc_no") else
                           ("75.0" if m == "full" else ""))
      lines.append(f"| {name} | {10 if m != 'full' else 'all'} | {_cell(a10, m, head)} | {p} | "
                   f"{_lr(a10, m).strip('–')} |")
    lines.append("")
  md = "\n".join(lines)

  def write():   # several processes: the writer's file, the others wait
    os.makedirs(workdir, exist_ok=True)
    atomic_write_text(os.path.join(workdir, "tables.md"), md + "\n")
  distributed.on_writer(write, f"writing {os.path.join(workdir, 'tables.md')}")
  return md
