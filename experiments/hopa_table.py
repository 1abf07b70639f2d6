r"""HoPA's retrieval table on one dataset: every method, Random, Zero-shot and Full.

  python -m experiments.hopa_table --workdir=runs/hopa_table \
      --config=experiments/configs/hopa.py:dataset=msrvtt_sim --methods=paper --ns=100

Each (method, n) runs ``experiments.hopa``'s ``train_and_evaluate`` in
``<workdir>/<method>_n<n>/``; methods of one inner objective share experts
(``<workdir>/experts_<objective>/``, trained once, with the lr_teacher choice cached
there). Resumable: a row whose ``results.json`` exists for the same config is read,
not rerun; a killed row resumes from its checkpoints. Writes ``table.md``,
``table.json`` and ``avg_r1.png`` (avg R@1 by method) into ``--workdir``.
"""

from __future__ import annotations

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

from hopa_jax import distill as dl
from mmdd_jax import results

PAPER_METHODS = ("zero_shot", "full", "random", "mtt_vl", "tesla", "lors", "repblend", "hopa")
ABLATIONS = ("3pair", "tbind", "vbind", "rank2", "no_mining")
FLAGS = flags.FLAGS


BASELINE_ROWS = ("random", "full")   # evaluated once per objective of the table's methods


def plan(methods, eval_objective: str) -> list[tuple[str, str | None]]:
  """``[(method, eval objective or None = the config's)]`` in table order. With
  ``eval_objective=method`` every set is evaluated with its own inner objective, so
  Random and Full get one row per objective among the distilled methods (each
  method is compared with Random and Full under its own evaluation)."""
  if eval_objective != "method":
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


def rows_for(config, workdir: str, methods, ns, train_and_evaluate=None) -> list[dict]:
  """Runs (or reads) every row; returns the results dicts in table order. With
  ``train_and_evaluate=None`` only finished rows are read (nothing runs)."""
  rows = []
  base = dict(config.to_dict() if hasattr(config, "to_dict") else config)
  for n in ns:
    for method, objective in plan(methods, base.get("eval_objective", "method")):
      spec = dl.method_spec(method)
      if spec["rows"] != "subset" and n != ns[0]:
        continue  # reference rows do not depend on n
      c = dict(base, method=method, n=n)
      if objective is not None:
        c["eval_objective"] = objective
      c["experts_dir"] = c.get("experts_dir") or os.path.join(workdir, experts_name(spec))
      name = label(method, objective).replace("[", "_").replace("]", "")
      wd = os.path.join(workdir, f"{name}_n{n}" if spec["rows"] == "subset" else name)
      path = os.path.join(wd, "results.json")
      if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
          got = json.load(f)[0]
        if got.get("config") == results.jsonable(c):
          rows.append(dict(got, method=label(method, objective)))
          continue
      if train_and_evaluate is None:
        continue
      logging.warning("table row %s n=%s -> %s", label(method, objective), n, wd)
      rows += [dict(r, method=label(method, objective)) for r in train_and_evaluate(c, wd)]
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
  results.atomic_write_text(os.path.join(workdir, "table.md"), md)
  results.atomic_write_json(os.path.join(workdir, "table.json"), results.jsonable(rows))
  plot(rows, os.path.join(workdir, "avg_r1.png"))
  return md


def main(argv):
  del argv
  from experiments import hopa
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  methods = {"paper": PAPER_METHODS, "ablations": ABLATIONS,
             "all": PAPER_METHODS + ABLATIONS}.get(FLAGS.methods, FLAGS.methods.split(","))
  ns = [int(v) for v in FLAGS.ns.split(",")]
  rows = rows_for(FLAGS.config, FLAGS.workdir, list(methods), ns,
                  None if FLAGS.tables_only else hopa.train_and_evaluate)
  print(write_table(FLAGS.workdir, rows, f"{FLAGS.config.dataset}: retrieval (%)"))


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", "experiments/configs/hopa.py",
                                  "base config (keys: experiments/configs/hopa.py)",
                                  lock_config=False)
  flags.DEFINE_string("workdir", None, "output directory (resumable)")
  flags.DEFINE_string("methods", "paper", "paper | ablations | all | comma-separated methods")
  flags.DEFINE_string("ns", "100", "comma-separated synthetic set sizes")
  flags.DEFINE_bool("tables_only", False, "only read finished rows and write the table")
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
