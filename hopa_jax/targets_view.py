r"""The common view without the learned Ŝ: a diagnostic of the sweep's common view
(``python -m experiments.identity_targets``, ``docs/identity_targets.md``).

The sweep's common view (:mod:`hopa_jax.sweep`) evaluates every distilled set by one
objective (``common_objective``, InfoNCE), and a set that carries a learned similarity
matrix Ŝ (LoRS, RepBlend, HoPA, its pairwise variants and most ablations) is evaluated
with Ŝ as the targets, as LoRS and HoPA evaluate it: Ŝ is part of the distilled data.
On msrvtt_sim n = 100 every such set then scores at Random's level while every set with
Ŝ = I (MTT-VL, TESLA, HoPA w/o mining) scores well above it. This module tests the
explanation that InfoNCE reading Ŝ as soft labels causes it: every finished common-view
cell whose store lists Ŝ is evaluated again with the identical config but
``targets = 'identity'`` (the synthetic features trained towards I). Nothing else changes:
the config is the sweep's own re-evaluation config (:func:`hopa_jax.sweep.reeval_config`,
the same seed, protocol, lr grid, runs) with that one key.

Added after the sweep's results were seen (2026-12-03), so it is a *post-hoc diagnostic*,
not a third pre-registered view: no verdict of the claims table reads it.

Every cell is its own workdir ``<workdir>/<dataset>/<budget>/seed<s>/identity_<common>/
<method>_n<n>/`` bound to its config and to the store's content digest (a finished one is
read, not rerun). :func:`merge` keeps cells measured elsewhere (keyed by the store's
digest), so the committed cells file grows across machines; :func:`markdown` writes the
table from the cells alone.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from hopa_jax import distill as dl
from hopa_jax import inspect_distilled
from hopa_jax import objectives as obj_lib
from hopa_jax import plan as plan_lib
from hopa_jax import report, sweep, table
from mmdd_jax import losses as mm_losses
from mmdd_jax import results, stage as stage_lib, workdir as workdir_lib

CELL_FIELDS = ("dataset", "method", "n", "budget", "seed", "objective", "store", "avg_r1",
               "avg_r1_std", "avg_r5", "avg_r5_std", "runs", "s_dist", "label_mass",
               "common_r1", "common_r1_std", "own_r1", "own_r1_std", "random_r1",
               "random_r1_std", "eval_lr", "eval_lr_edge", "eval_epochs", "minutes", "device",
               "commit", "date", "workdir")


def targets(sc) -> list[sweep.Row]:
  """The common-view rows of the sweep plan whose set is distilled (a ``reeval`` row, or
  an ``alias`` of a distilled row whose own objective is the common one), computed once
  (rows carrying ``same_as`` are another row's). Each is returned as a ``reeval`` row of
  its distilled source."""
  out = []
  for r in sweep.plan(sc):
    if r.view != "common" or r.same_as is not None or r.source is None:
      continue
    if not dl.method_spec(r.method)["optimize"]:
      continue
    out.append(sweep.Row(**{**r.__dict__, "kind": "reeval"}))
  return out


def similarity_file(store: str) -> str | None:
  """The path of the store's learned Ŝ when its manifest lists one
  (``extra.hopa.similarity``, default ``similarity.npy``), else None."""
  try:
    with open(os.path.join(store, "manifest.json"), encoding="utf-8") as f:
      man = json.load(f)
  except (OSError, json.JSONDecodeError):
    return None
  name = inspect_distilled.similarity_name(man)
  return os.path.join(store, name) if name in (man.get("files") or {}) else None


def has_similarity(store: str) -> bool:
  """Whether the store's manifest lists its learned Ŝ."""
  return similarity_file(store) is not None


def s_distance(s: np.ndarray) -> float:
  """‖Ŝ − I‖_F (how far the targets are from I)."""
  return float(np.linalg.norm(s - np.eye(len(s))))


def label_mass(s: np.ndarray, obj: obj_lib.ObjectiveConfig) -> float:
  """The share of the soft labels off the diagonal when InfoNCE reads Ŝ as the
  evaluation does (:func:`hopa_jax.objectives.prepare_targets` with the evaluation's
  objective keys, then :func:`mmdd_jax.losses.soft_labels`), averaged over the rows of
  both directions: 0 = the labels are I, 0.9 = an instance's own pair gets 10 %."""
  t = obj_lib.prepare_targets(jnp.asarray(s), obj)
  own = [jnp.diagonal(mm_losses.soft_labels(x)) for x in (t, t.T)]
  return float(1.0 - jnp.mean(jnp.concatenate(own)))


def cell_dir(row: sweep.Row) -> str:
  return os.path.join(sweep.dataset_dir(row.dataset), row.budget, f"seed{row.seed}",
                      f"identity_{row.eval_objective}", f"{row.method}_n{row.n}")


def config(sc, sweep_workdir: str, row: sweep.Row):
  """The sweep's re-evaluation config of ``row`` with ``targets = 'identity'``."""
  c = sweep.reeval_config(sc, sweep_workdir, row)
  c.targets = "identity"
  return c


def _reference(sweep_cells: Sequence[dict], row: sweep.Row, *, view: str, label: str):
  """(avg R@1, its std) of the sweep's cell ``label`` in ``view`` at the row's dataset,
  n, budget and seed ((None, None) if not measured)."""
  for c in sweep_cells:
    if (c["dataset"], c["label"], c["n"], c["budget"], c["seed"], c["view"]) == (
        row.dataset, label, row.n, row.budget, row.seed, view):
      return c.get("avg_r1"), c.get("avg_r1_std")
  return None, None


def run(sc, sweep_workdir: str, workdir: str, *, log: Callable[[str], None] = print,
        evaluate: Callable | None = None, commit: str | None = None) -> list[dict]:
  """Evaluates (or reads) every :func:`targets` row whose own row has finished and whose
  store is complete and lists Ŝ; returns their cells (fields :data:`CELL_FIELDS`)."""
  from hopa_jax import run as run_lib
  evaluate = evaluate or run_lib.evaluate_store
  commit = commit or sweep.git_commit()
  sweep_cells = sweep.cells(sc, sweep_workdir)
  out, incomplete = [], []
  for r in targets(sc):
    store = os.path.join(sweep_workdir, r.source.path, "distilled")
    head = f"[identity] {r.dataset} {r.method} n={r.n} {r.budget} seed={r.seed}"
    if sweep.finished(sc, sweep_workdir, r.source) is None:
      continue
    s_file = similarity_file(store)
    if s_file is None:
      continue            # Ŝ = I already: its common cell is this view's
    if not sweep.store_complete(store):
      incomplete.append(r.source.path)
      continue
    c = config(sc, sweep_workdir, r)
    p = plan_lib.resolve_evaluate(c)
    wd = os.path.join(workdir, cell_dir(r))
    res = stage_lib.finished(wd, p.config, {"store": p.store})
    prov_path = os.path.join(wd, "identity_provenance.json")
    if res is None:
      log(f"{head}: running in {wd}")
      res = evaluate(p, wd)
      results.atomic_write_json(prov_path, {"commit": commit, "date": sweep._now()})
      log(f"{head}: avg R@1 {res[0]['avg']['R@1']:.2f} ± "
          f"{(res[0].get('avg_std') or {}).get('R@1', 0):.2f}")
    prov = sweep._read_json(prov_path) or {}
    x = res[0]
    s = np.load(s_file)
    avg, std, ev = x.get("avg") or {}, x.get("avg_std") or {}, x.get("eval") or {}
    common = _reference(sweep_cells, r, view="common", label=r.label)
    own = _reference(sweep_cells, r, view="own", label=r.source.label)
    rnd = _reference(sweep_cells, r, view="common",
                     label=table.label("random", r.eval_objective))
    out.append({
        "dataset": r.dataset, "method": r.method, "n": r.n, "budget": r.budget,
        "seed": r.seed, "objective": r.eval_objective,
        "store": workdir_lib.store_digest(store),
        "avg_r1": avg.get("R@1"), "avg_r1_std": std.get("R@1", 0.0),
        "avg_r5": avg.get("R@5"), "avg_r5_std": std.get("R@5", 0.0), "runs": x.get("runs"),
        "s_dist": round(s_distance(s), 4),
        "label_mass": round(label_mass(s, p.eval.obj), 4),
        "common_r1": common[0], "common_r1_std": common[1],
        "own_r1": own[0], "own_r1_std": own[1],
        "random_r1": rnd[0], "random_r1_std": rnd[1],
        "eval_lr": ev.get("lr"), "eval_lr_edge": sweep.lr_edge(ev),
        "eval_epochs": ev.get("epochs"),
        "minutes": round(sum((x.get("time_s") or {}).values()) / 60, 2),
        "device": x.get("device"), "commit": prov.get("commit", "unknown"),
        "date": prov.get("date"), "workdir": cell_dir(r),
    })
  if incomplete:
    log(f"[identity] {len(incomplete)} sets skipped, their stores incomplete (rows brought "
        f"back from another machine keep only the manifest): {', '.join(incomplete)}")
  return out


def _key(c: dict) -> tuple:
  return (c["dataset"], c["method"], c["n"], c["budget"], c["seed"], c["objective"], c["store"])


def merge(old: Sequence[dict], new: Sequence[dict]) -> list[dict]:
  """``old`` cells not measured again, then ``new`` (a cell of the same dataset, method,
  n, budget, seed, objective and store content replaces the old one)."""
  fresh = {_key(c) for c in new}
  return [c for c in old if _key(c) not in fresh] + list(new)


def _pm(v, s) -> str:
  return "—" if v is None else f"{v:.2f} ± {s or 0:.2f}"


def markdown(cells: Sequence[dict]) -> str:
  """The table, one line per cell (datasets in the sweep's order), Δ = (Ŝ = I) − (Ŝ)
  with the larger of the two evaluation spreads."""
  order = {d: i for i, d in enumerate(sweep.DATASETS)}
  rows = sorted(cells, key=lambda c: (order.get(c["dataset"], 99), c["dataset"], c["n"],
                                      c["budget"], c["seed"], c["method"]))
  lines = ["| dataset | n | budget | seed | set | own view | common, Ŝ | common, Ŝ = I | "
           "I − Ŝ | ‖Ŝ − I‖_F | labels off the diagonal | Random (common) | store |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for c in rows:
    if c["common_r1"] is None or c["avg_r1"] is None:
      delta = "—"
    else:
      spread = max(c["avg_r1_std"] or 0, c["common_r1_std"] or 0)
      delta = f"{c['avg_r1'] - c['common_r1']:+.2f} ± {spread:.2f}"
    edge = f" (lr {c['eval_lr']:g}, {c['eval_lr_edge']} edge)" if c.get("eval_lr_edge") else ""
    lines.append(
        f"| {c['dataset']} | {c['n']} | {c['budget']} | {c['seed']} | "
        f"{report.NAMES.get(c['method'], c['method'])} | {_pm(c['own_r1'], c['own_r1_std'])} | "
        f"{_pm(c['common_r1'], c['common_r1_std'])} | "
        f"{_pm(c['avg_r1'], c['avg_r1_std'])}{edge} | {delta} | {c['s_dist']:.2f} | "
        f"{'—' if c.get('label_mass') is None else format(c['label_mass'], '.0%')} | "
        f"{_pm(c['random_r1'], c['random_r1_std'])} | {c['store'][7:13]} |")
  return "\n".join(lines)


BEGIN = "<!-- identity-targets:begin (generated by experiments.identity_targets; do not edit) -->"
END = "<!-- identity-targets:end -->"


def update_doc(path: str, cells: Sequence[dict]) -> None:
  """Rewrites the generated table between :data:`BEGIN` and :data:`END` of ``path``."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  if BEGIN not in text or END not in text:
    raise ValueError(f"{path}: expected the markers '{BEGIN}' and '{END}', found "
                     f"{'neither' if BEGIN not in text and END not in text else 'one'}")
  head, rest = text.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  results.atomic_write_text(path, f"{head}{BEGIN}\n{markdown(cells)}\n{END}{tail}")
