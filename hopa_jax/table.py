r"""HoPA's retrieval table on one dataset: every method, Random, Zero-shot and Full.

Each (method, n) row is :func:`hopa_jax.run.train_and_evaluate` in
``<workdir>/<method>_n<n>/``; methods of one inner objective share experts
(``<workdir>/experts_<objective>/``, trained once, with the lr_teacher choice cached
there). Resumable: a finished row (its workdir bound to the same config) is read,
not rerun; a killed row resumes from its checkpoints. :func:`write_table` writes
``table.md``, ``table.json`` and ``avg_r1.png`` (avg R@1 by method).
"""

from __future__ import annotations

import os
from typing import Callable

from absl import logging

from hopa_jax import distill as dl
from mmdd_jax import distributed, results
from mmdd_jax import stage as stage_lib

PAPER_METHODS = ("zero_shot", "full", "random", "mtt_vl", "tesla", "lors", "repblend", "hopa")
ABLATIONS = ("3pair", "tbind", "vbind", "rank2", "no_mining")
METHOD_SETS = {"paper": PAPER_METHODS, "ablations": ABLATIONS, "all": PAPER_METHODS + ABLATIONS}
BASELINE_ROWS = ("random", "full")   # evaluated once per objective of the table's methods


def methods_of(spec: str) -> list[str]:
  """``paper`` | ``ablations`` | ``all`` | comma-separated method names."""
  names = list(METHOD_SETS.get(spec, [m for m in spec.split(",") if m]))
  for m in names:
    dl.method_spec(m)
  return names


def plan(methods, eval_objective: str | None) -> list[tuple[str, str | None]]:
  """``[(method, eval objective or None = the config's)]`` in table order. With
  ``eval.objective=None`` every set is evaluated with its own inner objective, so
  Random and Full get one row per objective among the distilled methods (each
  method is compared with Random and Full under its own evaluation)."""
  if eval_objective is not None:
    return [(m, None) for m in methods]
  objs = []
  for m in methods:
    spec = dl.method_spec(m)
    if spec["optimize"] and spec["objective"] not in objs:
      objs.append(spec["objective"])
  out = []
  for m in methods:
    if m in BASELINE_ROWS:
      out += [(m, o) for o in (objs or [dl.method_spec(m)["objective"]])]
    else:
      out.append((m, None))
  return out


def experts_name(spec: dict) -> str:
  """One experts directory per inner objective *with its overrides* (rank2's rank-2
  proxy, no_lmod's missing term train their own experts)."""
  extra = "".join(f"_{k}{v}" for k, v in sorted(spec["obj"].items()))
  return f"experts_{spec['objective']}{extra}"


def label(method: str, objective: str | None) -> str:
  return method if objective is None else f"{method}[{objective}]"


def at_n(config, n: int):
  """A copy of ``config`` at ``n``: the per-n defaults of ``experiments/configs/hopa.py``
  (HoPA's Appendix B.2: ``sim_rank``, ``sim_alpha``, ``iterations``, ``max_start_epoch``
  and, with ``optimizer=sgd``, ``lr_sim``) follow ``n`` where they still hold the
  config's own default for its ``n``; keys set to anything else are kept."""
  from experiments.configs import hopa as hopa_config
  c = config.copy_and_resolve_references()
  if n != c.n:
    fam = hopa_config.family(c.dataset)
    old = hopa_config._TABLE[fam][hopa_config.bucket(c.n)]
    new = hopa_config._TABLE[fam][hopa_config.bucket(n)]
    for k, o, v in zip(("lr_sim", "sim_rank", "sim_alpha", "iterations", "max_start_epoch"),
                       old, new):
      if k == "lr_sim" and c.distill.optimizer != "sgd":
        continue
      if c.distill[k] == o:
        c.distill[k] = v
  c.n = n
  return c


def row_plans(config, workdir: str, methods, ns) -> list[tuple[str, str, object]]:
  """Every row as ``(label, workdir, Plan)`` in table order: each row's config
  (:func:`at_n`, the method, the row's evaluation objective, the shared experts)
  resolved and checked once (:func:`hopa_jax.plan.resolve`), before any row runs."""
  from hopa_jax import plan as plan_lib
  out = []
  for n in ns:
    for method, objective in plan(methods, config.eval.objective):
      spec = dl.method_spec(method)
      if spec["rows"] != "subset" and n != ns[0]:
        continue  # reference rows do not depend on n
      c = at_n(config, n)
      c.method = method
      if objective is not None:
        c.eval.objective = objective
      c.experts_dir = c.experts_dir or os.path.join(workdir, experts_name(spec))
      name = label(method, objective).replace("[", "_").replace("]", "")
      wd = os.path.join(workdir, f"{name}_n{n}" if spec["rows"] == "subset" else name)
      out.append((label(method, objective), wd, plan_lib.resolve(c)))
  return out


def rows_for(config, workdir: str, methods, ns,
             train_and_evaluate: Callable | None = None) -> list[dict]:
  """:func:`run_rows` of :func:`row_plans`."""
  return run_rows(row_plans(config, workdir, methods, ns), train_and_evaluate)


def run_rows(plans, train_and_evaluate: Callable | None = None) -> list[dict]:
  """Runs (or reads) every row of ``plans`` (:func:`row_plans`), passing each its Plan;
  returns the results dicts in table order. With ``train_and_evaluate=None`` only
  finished rows are read (nothing runs)."""
  rows = []
  for name, wd, p in plans:
    got = stage_lib.finished_run(wd, p)   # its config on the store's current content
    if got is None and train_and_evaluate is not None:
      logging.warning("table row %s n=%s -> %s", name, p.n, wd)
      got = train_and_evaluate(p, wd)
    rows += [dict(r, method=name) for r in got or []]
  return rows


def plot(rows, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  labels = [f"{r['method']}" + (f"\nn={r['n_syn']}" if r["n_syn"] else "") for r in rows]
  vals = [r["avg"]["R@1"] for r in rows]
  errs = [(r.get("avg_std") or {}).get("R@1", 0.0) for r in rows]
  fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(rows)), 3.2))
  ax.bar(range(len(rows)), vals, yerr=errs, color="tab:blue", capsize=3)
  ax.set_xticks(range(len(rows)), labels, fontsize=7)
  lo = min(vals) - 1.0
  ax.set_ylim(lo, max(vals) + 0.8)
  ax.set_ylabel("avg R@1 (%)")
  ax.set_title(os.path.basename(os.path.dirname(path)) or "retrieval", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_table(workdir: str, rows, title: str) -> str:
  md = results.write_results(workdir, rows, title=title)
  lines = ["", "| method | n | avg R@1 | avg R@5 | eval objective | eval lr | eval epochs | "
           "lr_teacher | η | min |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    ev = r.get("eval") or {}
    pm = lambda k: f"{r['avg'][k]:.2f} ± {(r.get('avg_std') or {}).get(k, 0):.2f}"
    eta = r.get("learned_lr")
    zs = r["method"] == "zero_shot"
    lines.append(f"| {r['method']} | {'—' if zs else r['n_syn'] or 'all'} | {pm('R@1')} | "
                 f"{pm('R@5')} | {'—' if zs else ev.get('objective')} | {ev.get('lr')} | "
                 f"{ev.get('epochs')} | "
                 f"{r.get('lr_teacher', '')} | "
                 f"{'' if eta is None else f'{eta:.4g}'} | "
                 f"{sum(r['time_s'].values()) / 60:.1f} |")
  md += "\n".join(lines) + "\n"

  def write():   # several processes: the writer's files, the others wait
    results.atomic_write_text(os.path.join(workdir, "table.md"), md)
    results.atomic_write_json(os.path.join(workdir, "table.json"), results.jsonable(rows))
    if rows:
      plot(rows, os.path.join(workdir, "avg_r1.png"))
  distributed.on_writer(write, f"writing {os.path.join(workdir, 'table.md')}")
  return md


def run_table(config, workdir: str, methods: str = "paper", ns=(100,), *,
              tables_only: bool = False) -> str:
  """Every row of ``methods`` (:func:`methods_of`) at every ``n``; returns the table."""
  from hopa_jax import plan, run
  plan.resolve(config)   # a bad config stops before any directory exists
  plans = row_plans(config, workdir, methods_of(methods), list(ns))   # and a bad row
  distributed.on_writer(lambda: os.makedirs(workdir, exist_ok=True), f"creating {workdir}")
  rows = run_rows(plans, None if tables_only else run.train_and_evaluate)
  return write_table(workdir, rows, f"{config.dataset}: retrieval (%)")
