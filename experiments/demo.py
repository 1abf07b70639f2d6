r"""The main job on the embedded default data (no downloads, CPU, minutes).

  python -m experiments.demo --workdir runs/demo      # what `make demo` runs

Shows what distillation buys: a distilled set beside a random one at equal n, with
Δ ± std, on enough test rows that one hit is ≤ 0.1 point. Prints one progress line
per stage, then one compact table per task (method, n, headline metric, Δ vs Random
± std, minutes):

* retrieval on msrvtt_sim: Zero-shot, Random, HoPA, Full (avg R@1 / R@5 over the six
  directions);
* classification on vggs10k_sim (v2 simulator), 1 ipc: Random, Herding, DM,
  ImageBindDC, Full (accuracy).

Files under ``--workdir``: ``summary.md`` (the two tables as printed),
``retrieval.md`` / ``retrieval.json`` (per-direction R@1 / R@5, every row's
selection record), ``classification.md`` / ``classification.json``, ``demo.png``
(avg R@1 and accuracy by method, Random and Full as reference lines) and one workdir
per row. A rerun reads finished rows. Settings: experiments/configs/demo.py.
"""

from __future__ import annotations

import dataclasses
import os
import time

from absl import flags, logging
from ml_collections import config_flags

from bindc_jax import run as bindc_run
from embed import simulate
from experiments.configs import bindc as bindc_config
from experiments.configs import demo as demo_config
from experiments.configs import hopa as hopa_config
from bindc_jax import plan as bindc_plan
from hopa_jax import plan as hopa_plan
from hopa_jax import run as hopa_run
from hopa_jax import table
from mmdd_jax import cli, data, distributed, keys, results, summary, workdir

_CONFIG = config_flags.DEFINE_config_file(
    "config", demo_config.__file__, keys.config_help(demo_config))
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "output directory (one workdir per row)")
_FRESH = flags.DEFINE_bool("fresh", False, "start over: the workdir's old contents (rows and "
                           "shared experts) are moved to <workdir>.old-<time>/")

RETRIEVAL = "msrvtt_sim"
CLASSIFICATION = "vggs10k_sim"


def retrieval_dataset(c) -> str:
  """The retrieval store: msrvtt_sim at ``scale``; with ``train_scale ≠ scale`` a store
  of the same generative model with the scale's test split (the same rows: the split's
  draws depend on its size and the seed only) and ``9000 · train_scale`` train rows,
  written once under ``data_dir``. Returns a simulator name or a store directory."""
  if c.train_scale == c.scale:
    return RETRIEVAL
  spec = simulate.DATASETS[RETRIEVAL]
  n_test = int(round(spec.n_test * c.scale))
  spec = dataclasses.replace(spec, n_train=int(round(spec.n_train * c.train_scale)),
                             n_test=n_test)
  root = os.path.join(c.data_dir or data.DEFAULT_DATA_DIR,
                      f"{RETRIEVAL}-train{spec.n_train}-test{n_test}-seed{c.seed}-"
                      f"{simulate.spec_digest(spec)}")
  if not os.path.exists(os.path.join(root, "manifest.json")):
    simulate.simulate(RETRIEVAL, root, seed=c.seed, spec=spec,
                      command=f"python -m experiments.demo ({RETRIEVAL}: {spec.n_train} train "
                              f"rows, the test split of scale {c.scale:g})")
  return root


def configs(c):
  """``(hopa config, bindc config)`` of every row; bad keys stop here, before any work."""
  dd = {"data_dir": c.data_dir} if c.data_dir else {}
  hcfg = keys.from_spec(hopa_config, dict(dataset=RETRIEVAL, scale=c.scale, seed=c.seed, n=c.n,
                                          **dd), c.hopa)
  bcfg = keys.from_spec(bindc_config, dict(dataset=CLASSIFICATION, scale=c.cls_scale,
                                           seed=c.seed, method=tuple(c.cls_methods), **dd),
                        c.bindc)
  for name, resolve, rc in (("hopa", hopa_plan.resolve, hcfg), ("bindc", bindc_plan.resolve, bcfg)):
    try:
      resolve(rc)
    except ValueError as e:   # the demo's keys are checked first: a bad row key is the section's
      msg = str(e)
      raise ValueError(msg.replace("config key '", f"config key '{name}.", 1)
                       if msg.startswith("config key '") else msg) from None
  return hcfg, bcfg


def check_resolution(c) -> tuple[int, int]:
  """Test rows of both tasks; below ``min_test_rows`` (unless ``local``) one line stops
  the demo before any work."""
  n_ret = int(round(simulate.DATASETS[RETRIEVAL].n_test * c.scale))
  n_cls = int(round(simulate.DATASETS[CLASSIFICATION].n_test * c.cls_scale))
  if not c.local:
    for key, rows in (("scale", n_ret), ("cls_scale", n_cls)):
      if rows < c.min_test_rows:
        raise ValueError(f"config key '{key}': expected a test split of ≥ {c.min_test_rows} "
                         f"rows (one hit ≤ {100 / c.min_test_rows:.2g} point), found {rows}")
  return n_ret, n_cls


def _hit(rows: int) -> str:
  p = 100 / rows
  return f"one hit = {p:.2g} point{'s' if p > 1 else ''}"


def budget_lines(hcfg, bcfg, c, st, cst) -> list[str]:
  """What every row of each task shares (stated before the rows run)."""
  e, d, v = hcfg.experts, hcfg.distill, hcfg.eval
  nr, nc = st.count("test"), cst.count("test")
  return [f"retrieval, every row: {RETRIEVAL} {nr} test rows ({_hit(nr)} per direction) / "
          f"{st.count('train')} train; n = {c.n}; {v.runs} eval runs",
          f"  HoPA: {e.num_experts} experts × {e.epochs} epochs, {d.iterations} iterations × "
          f"{d.syn_steps} student steps",
          f"classification, every row: {CLASSIFICATION} {nc} test rows ({_hit(nc)}) / "
          f"{cst.count('train')} train; {bcfg.ipc} ipc; {bcfg.distill.iterations} distillation "
          f"iterations; {bcfg.eval.runs} eval runs"]


def retrieval_rows(hcfg, c, wd: str, prog: summary.Progress) -> list[dict]:
  def run_row(p, rwd):   # p: the row's hopa_jax.plan.Plan
    spec = p.spec
    label = summary.display_name(table.label(
        p.method, p.config["eval"]["objective"] if p.method in table.BASELINE_ROWS else None))
    label += f" n={p.n}" if spec["rows"] == "subset" else ""
    metrics = os.path.join(rwd, "metrics.jsonl")
    stages = []
    if spec["optimize"]:
      first = "lr_teacher selection" if p.experts.lr is None else "experts"
      if p.experts.lr is None:
        stages.append(("experts", summary.has_record(stage="lr_teacher")))
      stages += [("distill", summary.has_record(stage="experts", step=p.experts.epochs)),
                 ("eval", summary.has_record(stage="distill", step=p.distill.iterations))]
    else:
      first = "eval" if spec["rows"] != "none" else "eval (pretrained heads)"
    with prog.watch(metrics, "retrieval", (label, first), [(label, s, f) for s, f in stages]):
      return hopa_run.train_and_evaluate(p, rwd)

  return table.rows_for(hcfg, wd, list(c.methods), [c.n], run_row)


def classification_rows(bcfg, wd: str, prog: summary.Progress) -> list[dict]:
  if os.path.exists(os.path.join(wd, "results.json")):
    # A finished run: bindc_run reads it (or stops with one line if the workdir is bound
    # to another config); no stage lines, as for the finished retrieval rows.
    return bindc_run.train_and_evaluate(bcfg, wd)
  names = list(bcfg.method)
  grid = len(bcfg.select.grid)
  stages, first = [], None
  for i, m in enumerate(names):
    optimised = m not in bindc_run.SELECTION_METHODS and m != "full"
    steps = (["lr selection"] if optimised and bcfg.select.enabled else []) + \
            (["distill"] if optimised else []) + ["eval"]
    prev = summary.has_record(stage="eval", method=names[i - 1]) if i else None
    for s in steps:
      row = summary.display_name(m)
      if prev is None:
        first = (row, s)
      else:
        stages.append((row, s, prev))
      prev = (summary.count_records(grid, stage="lr_select", method=m) if s == "lr selection"
              else summary.has_record(stage="distill", method=m, step=bcfg.distill.iterations))
  with prog.watch(os.path.join(wd, "metrics.jsonl"), "classification", first, stages):
    return bindc_run.train_and_evaluate(bcfg, wd)


def train_and_evaluate(c, wd: str, *, fresh: bool = False, prog: summary.Progress | None = None):
  """Both tasks into ``wd``; returns ``(retrieval rows, classification rows, summary)``."""
  prog = prog or summary.Progress()
  keys.check(c, demo_config.KEYS)   # the demo's keys, then every row's (configs)
  hcfg, bcfg = configs(c)
  check_resolution(c)
  if fresh and workdir.move_aside(wd):
    prog.line(f"{wd}: --fresh: the previous demo was moved aside")
  os.makedirs(wd, exist_ok=True)
  prog.line("simulate", f"{RETRIEVAL}, {CLASSIFICATION} (stores cached under "
            f"{c.data_dir or data.DEFAULT_DATA_DIR})")
  hcfg.dataset = retrieval_dataset(c)
  st = data.resolve_store(hcfg.dataset, scale=hcfg.scale, seed=c.seed,
                          data_dir=c.data_dir or None, check_hashes=False)
  cst = data.resolve_store(CLASSIFICATION, scale=c.cls_scale, seed=c.seed,
                           data_dir=c.data_dir or None, check_hashes=False)
  n_ret, n_cls = st.count("test"), cst.count("test")
  budget = budget_lines(hcfg, bcfg, c, st, cst)
  print("\n".join(budget), flush=True)

  ret = retrieval_rows(hcfg, c, wd, prog)
  cls = classification_rows(bcfg, os.path.join(wd, "classification"), prog)

  ret_title = f"retrieval · {RETRIEVAL}, {n_ret} test rows · avg of 6 directions (%)"
  cls_title = (f"classification · {CLASSIFICATION}, {n_cls} test rows · {bcfg.ipc} ipc, "
               "linear heads, accuracy (%)")
  note = (f"Δ: vs Random of the same evaluation at equal n (Full: vs that Random); "
          f"± = √(s² + s_R²), s: std over {hcfg.eval.runs} / {bcfg.eval.runs} eval runs")
  md = (f"{ret_title}\n{summary.retrieval_table(ret)}\n\n{cls_title}\n"
        f"{summary.classification_table(cls)}\n{note}\n")
  if not distributed.is_writer():   # process 0 writes the summary files
    return ret, cls, md
  results.atomic_write_text(os.path.join(wd, "summary.md"), "\n".join(budget) + "\n\n" + md)
  for name, rows, title, body in (
      ("retrieval", ret, ret_title,
       results.results_table(ret) + "\n\n" + summary.selection_table(ret)),
      ("classification", cls, cls_title, bindc_run.results_table(cls))):
    results.atomic_write_text(os.path.join(wd, f"{name}.md"), f"# {title}\n\n{body}\n")
    results.atomic_write_json(os.path.join(wd, f"{name}.json"), results.jsonable(rows))
  summary.plot(os.path.join(wd, "demo.png"), ret, cls,
               titles=(f"{RETRIEVAL} retrieval ({n_ret} test rows)",
                       f"{CLASSIFICATION} classification, {bcfg.ipc} ipc ({n_cls} test rows)"))
  return ret, cls, md


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)   # the table's per-row notices: the progress lines say it
  prog = summary.Progress()
  _, _, md = train_and_evaluate(_CONFIG.value, _WORKDIR.value, fresh=_FRESH.value, prog=prog)
  print("\n" + md.rstrip("\n"))
  print(f"demo finished in {(time.time() - prog.t0) / 60:.1f} min · files under {_WORKDIR.value}/ "
        "(summary.md, retrieval.md, classification.md, demo.png)")


if __name__ == "__main__":
  cli.run(main, __doc__)
