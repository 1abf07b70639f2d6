"""The HoPA sweep (hopa_jax.sweep, experiments.hopa_sweep) and its report (hopa_jax.report):
the plan's priority order, a tiny sweep stopped and resumed row by row, the summary's
fields, the common view's re-evaluation path, and the generated docs from hand-made cells."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from experiments.configs import sweep as sweep_config
from hopa_jax import distill as dl
from hopa_jax import report, sweep
from mmdd_jax import keys


def test_config_help_and_plan_priority_order():
  c = sweep_config.get_config()
  assert keys.missing_help(c, sweep_config.KEYS) == []
  rows = sweep.plan(c)
  own = [r for r in rows if r.view == "own"]
  # Phase 1: msrvtt_sim n=100, every method of Tables 1 and 5, cpu budget.
  k = next(i for i, r in enumerate(own) if (r.dataset, r.seed) != ("msrvtt_sim", 0))
  assert all(r.n in (100, None) and r.budget == "cpu" for r in own[:k])
  assert {r.method.split("[")[0] for r in own[:k]} == set(c.method_sets.main)
  # Phase 2: run seeds 1 and 2 of the headline comparison (Random, HoPA, LoRS) …
  j = next(i for i in range(k, len(own)) if own[i].seed == 0)
  seeds = own[k:j]
  assert {r.seed for r in seeds} == {1, 2} and {r.dataset for r in seeds} == {"msrvtt_sim"}
  assert {r.method.split("[")[0] for r in seeds} == {"random", "hopa", "lors"}
  assert own[j].dataset == "vggsound_s_sim"
  # … then issue 20's Table 4 set: vggsound_s_sim n=200 Random, HoPA (and Full) …
  t4 = next(i for i in range(j, len(own))
            if own[i].n == 100 or own[i].method == "zero_shot")
  assert {(r.dataset, r.n, r.method.split("[")[0]) for r in own[j:t4]} == {
      ("vggsound_s_sim", 200, "random"), ("vggsound_s_sim", 200, "hopa"),
      ("vggsound_s_sim", None, "full")}
  # Then vggsound_s_sim n=100, didemo, the ablations at n=100 on all three, other seeds …
  order = [(r.dataset, r.n, r.budget, r.seed, r.method in c.method_sets.ablations,
            r.method.split("[")[0]) for r in own]
  def first_index(pred):
    return next(i for i, o in enumerate(order) if pred(o))
  i_did = first_index(lambda o: o[0] == "didemo_sim")
  i_abl = first_index(lambda o: o[4])
  i_seed = first_index(lambda o: o[3] == 1 and o[5] not in ("random", "hopa", "lors"))
  i_200 = first_index(lambda o: o[1] == 200 and o[0] != "vggsound_s_sim")
  i_500 = first_index(lambda o: o[1] == 500)
  i_spec = first_index(lambda o: o[2] == "spec")
  assert i_did < i_abl < i_seed < i_200 < i_500 < i_spec
  assert {r.seed for r in own if r.dataset == "msrvtt_sim" and r.n == 100} == {0, 1, 2}
  # … the spec column (msrvtt_sim n = 100) after every main cpu cell.
  assert all(r.budget == "cpu" for r in own[:i_spec])
  assert {(r.dataset, r.n) for r in own if r.budget == "spec" and r.n} == {("msrvtt_sim", 100)}
  # Every common-view row follows its own-view row (Random / Full: once).
  for a, b in zip(rows, rows[1:]):
    if b.view == "common":
      assert a.view == "own" and (a.dataset, a.n, a.seed, a.method) == (b.dataset, b.n, b.seed, b.method)
  # Identical method entries are computed once (detected by spec, not by name).
  canon = sweep.canonical_methods(list(dl.METHODS))
  if dl.method_spec("lors") == dl.method_spec("3pair"):
    alias = [r for r in own if r.method == "3pair"]
    assert alias and all(r.kind == "alias" and r.same_as == "lors" for r in alias)
    assert canon["3pair"] == "lors"
  # Reference rows: no budget in their workdir (shared by both budgets), Full once.
  fulls = {r.path for r in own if r.method == "full" and r.dataset == "msrvtt_sim"
           and r.seed == 0}
  assert fulls == {f"msrvtt_sim/seed0/full_{o}" for o in ("hopa", "3pair", "tbind", "vbind",
                                                           "infonce")}
  # The common view: re-evaluation of the store, except where it is the own evaluation.
  com = {r.method: r for r in rows if r.view == "common" and r.dataset == "msrvtt_sim"
         and r.n == 100 and r.budget == "cpu" and r.seed == 0}
  assert com["hopa"].kind == "reeval" and com["hopa"].source.path == "msrvtt_sim/cpu/seed0/hopa_n100"
  assert com["mtt_vl"].kind == "alias" and com["random"].path == "msrvtt_sim/seed0/random_infonce_n100"
  # Budgets as config data; the cpu tier iterates half of SPEC's iterations.
  cfg = sweep.row_config(c, "W", [r for r in own if r.method == "hopa" and r.n == 500][0],
                         resolve=False)
  assert (cfg.distill.iterations, cfg.experts.num_experts, cfg.eval.runs) == (1500, 10, 5)
  assert cfg.experts_dir == "W/msrvtt_sim/cpu/seed0/experts_hopa"
  spec = sweep.row_config(c, "W", [r for r in own if r.budget == "spec" and r.method == "hopa"][0],
                          resolve=False)
  assert (spec.distill.iterations, spec.experts.num_experts, spec.distill.syn_steps) == (2000, 20, 16)
  # --only k/N: a partition of the rows, common rows with their sources.
  parts = [sweep.select(rows, f"{k}/3") for k in (1, 2, 3)]
  assert sum(map(len, parts)) == len(rows)
  for p in parts:
    for r in p:
      if r.kind == "reeval":
        assert any(x.path == r.source.path for x in p)


@pytest.mark.parametrize("bad, match", [
    ({"phases": ("msrvtt_sim/100/main/cpu",)}, "DATASETS/NS/SETS/BUDGET/SEEDS"),
    ({"phases": ("msrvtt_sim/100/nope/cpu/0",)}, "found 'nope'"),
    ({"phases": ("msrvtt_sim/100/main/fast/0",)}, "one budget"),
    ({"budgets.spec.eval_runs": 3}, "eval_runs"),
    ({"only": "4/3"}, "only"),
])
def test_bad_sweep_config_is_one_line(bad, match):
  c = keys.override(sweep_config.get_config(), bad)
  with pytest.raises(ValueError, match=match):
    sweep.select(sweep.plan(c), c.only)


def _tiny(store, **kw):
  c = sweep_config.get_config()
  c.base.update_from_flattened_dict({"dataset": store.root, "local": True, "progress": False,
                                     "experts.lr": 0.1, "eval.lrs": (0.01, 0.1),
                                     "eval.max_epochs": 2})
  c.datasets = (store.root,)
  c.phases = ("all/8/main/cpu/0",)
  c.method_sets.main = ("random", "hopa")
  c.budgets.cpu.update(dict(num_experts=2, expert_epochs=3, iterations=1.0, syn_steps=3,
                            eval_runs=2))
  for k, v in kw.items():
    c[k] = v
  return c


def test_tiny_sweep_stops_resumes_and_summarises(tiny_store, tmp_path):
  c = _tiny(tiny_store)
  wd = str(tmp_path / "sweep")
  from hopa_jax import plan as plan_lib
  from hopa_jax import run
  calls = []

  def train(p, w):
    assert isinstance(p, plan_lib.Plan)          # the sweep resolves; the run reads the plan
    calls.append(w)
    return run.train_and_evaluate(p, w)

  def reeval(p, w):
    assert isinstance(p, plan_lib.EvaluatePlan)
    calls.append(w)
    return run.evaluate_store(p, w)

  log = []
  rows = sweep.plan(c)
  assert [(r.label, r.kind) for r in rows] == [
      ("random[hopa]", "train"), ("random[infonce]", "train"), ("hopa", "train"),
      ("hopa[infonce]", "reeval")]
  sweep.run_sweep(c, wd, train=train, reeval=reeval, stop=lambda i: i >= 3, log=log.append)
  assert len(calls) == 3 and any("stopping" in l for l in log)
  first = {w: os.path.getmtime(os.path.join(w, "results.json")) for w in calls}
  # The rerun reads the finished rows and computes only the rest.
  calls.clear()
  log.clear()
  cs = sweep.run_sweep(c, wd, train=train, reeval=reeval, log=log.append)
  assert calls == [os.path.join(wd, rows[3].path)]
  assert all(os.path.getmtime(os.path.join(w, "results.json")) == t for w, t in first.items())
  assert any("[sweep 4/4]" in l and "finished in" in l for l in log)
  # The summary: every field, both views, provenance.
  saved = json.load(open(os.path.join(wd, sweep.CELLS_FILE)))
  assert saved == json.loads(json.dumps(cs)) and len(saved) == 4
  for cell in saved:
    assert set(sweep.CELL_FIELDS) <= set(cell)
    assert cell["avg_r1"] > 0 and cell["avg_r1_std"] >= 0 and cell["runs"] == 2
    assert cell["budget"] == "cpu" and cell["seed"] == 0 and cell["date"]
    assert cell["commit"] != "" and cell["status"] == "finished"
  assert {(x["label"], x["view"], x["eval_objective"]) for x in saved} == {
      ("random[hopa]", "own", "hopa"), ("random[infonce]", "common", "infonce"),
      ("hopa", "own", "hopa"), ("hopa[infonce]", "common", "infonce")}
  ddir = os.path.join(wd, sweep.dataset_dir(tiny_store.root))
  for f in ("table.md", "table.json", "avg_r1.png"):
    assert os.path.exists(os.path.join(ddir, f)), f
  assert "HoPA" in open(os.path.join(ddir, "table.md")).read()
  # Every row of the experts directory has finished: its trajectories were deleted, its
  # config and lr_teacher choice kept.
  edir = os.path.join(ddir, "cpu", "seed0", "experts_hopa")
  assert "expert_config.json" in os.listdir(edir)
  assert not [e for e in os.listdir(edir) if os.path.isdir(os.path.join(edir, e))]
  # A third run computes nothing; the dry run says every row is done.
  calls.clear()
  sweep.run_sweep(c, wd, train=train, reeval=reeval, log=log.append)
  assert calls == []
  log.clear()
  c.dry_run = True
  sweep.run_sweep(c, wd, log=log.append)
  assert len(log) == 4 and all("] done " in l for l in log)
  # The common view reads a set's own row where its objective is the common one: the
  # re-evaluation path (evaluate_store) gives the same numbers as the run's evaluation.
  c.common_objective, c.dry_run = "hopa", False
  own_row, alias = [r for r in sweep.plan(c) if r.method == "hopa"]
  assert alias.kind == "alias" and alias.source == own_row
  re_row = sweep.Row(**{**alias.__dict__, "kind": "reeval", "source": own_row, "path": "re"})
  again = run.evaluate_store(sweep.reeval_config(c, wd, re_row), str(tmp_path / "re"))
  own = next(x for x in saved if x["label"] == "hopa")
  assert again[0]["avg"]["R@1"] == pytest.approx(own["avg_r1"], abs=1e-6)
  assert again[0]["avg"]["R@5"] == pytest.approx(own["avg_r5"], abs=1e-6)


def _cell(method, n, r1, s1=0.1, *, view="own", obj=None, seed=0, budget="cpu", same_as=None,
          dataset="msrvtt_sim"):
  obj = obj or (dl.method_spec(method)["objective"] if view == "own" else "infonce")
  label = method if dl.method_spec(method)["optimize"] and view == "own" else f"{method}[{obj}]"
  return {"dataset": dataset, "method": method, "label": label, "n": n, "budget": budget,
          "seed": seed, "view": view, "eval_objective": obj, "avg_r1": r1, "avg_r1_std": s1,
          "avg_r5": r1 + 20, "avg_r5_std": s1, "runs": 5, "seeds": 1, "seed_mean_r1": None,
          "seed_std_r1": None, "seed_mean_r5": None, "seed_std_r5": None, "minutes": 1.0,
          "commit": "abc123", "date": "2026-12-01", "status": "finished", "same_as": same_as,
          "workdir": "x"}


def test_report_from_hand_made_cells(tmp_path):
  cells = [_cell("hopa", 100, 22.0, seed=s) for s in (0,)] + [
      _cell("hopa", 100, 22.3, seed=1), _cell("hopa", 100, 21.7, seed=2),
      _cell("lors", 100, 21.0), _cell("3pair", 100, 21.0, same_as="lors"),
      _cell("repblend", 100, 21.95), _cell("mtt_vl", 100, 20.5), _cell("tesla", 100, 20.4),
      _cell("tbind", 100, 23.0), _cell("vbind", 100, 20.0),
      _cell("random", 100, 20.0, obj="hopa"), _cell("random", 100, 20.1, obj="3pair"),
      _cell("full", None, 22.6, obj="hopa"), _cell("zero_shot", None, 20.7, 0.0),
      _cell("no_lmod", 100, 21.0), _cell("rank2", 100, 22.05),
      _cell("hopa", 500, 22.5), _cell("full", None, 22.0, view="common"),
      _cell("hopa", 100, 21.0, view="common")]
  cells = sweep.add_seed_spread(cells)
  v = report.value(cells, "msrvtt_sim", "hopa", 100, "cpu", "own")
  assert v["seeds"] == 3 and v["seed_std"] == pytest.approx(0.3)
  assert v["std"] == pytest.approx(0.3)        # the larger of the two spreads
  claims = {(t, d): (m, verdict) for t, d, m, verdict in report.claims(cells, "own")}
  get = lambda prefix: next(v for (t, _), v in claims.items() if t.startswith(prefix))
  assert get("HoPA ≥ LoRS")[1].startswith("holds (so far")        # +1.0 ± 0.32
  assert get("HoPA ≥ RepBlend")[1].startswith("within noise")     # +0.05
  assert get("HoPA > every pairwise")[1].startswith("does not hold")   # T-bind 23.0
  assert "vs T-bind" in get("HoPA > every pairwise")[0]
  single = "; one run seed: the ± is over evaluation runs only"
  assert get("L_mod helps")[1] == "holds" + single         # no_lmod: one seed
  assert get("Rank-1 > Rank-2")[1] == "within noise" + single
  assert get("L_inst helps")[1] == "not measured yet"
  assert get("HoPA at n = 500 ≥ 95 % of Full (avg R@1)")[1] == "holds" + single   # 22.5 vs 21.47
  assert get("pairwise variants stagnate")[1] == "not measured yet"
  # Seed spread at some n only: the verdict names the n whose ± has no seed spread.
  mixed = sweep.add_seed_spread(
      [_cell(m, 100, r, seed=s) for m, r in (("hopa", 22.0), ("lors", 21.0)) for s in (0, 1, 2)]
      + [_cell("hopa", 200, 22.0), _cell("lors", 200, 21.0)])
  mc = {t: v for t, _, _, v in report.claims(mixed, "own")}
  assert mc["HoPA ≥ LoRS, every n"].endswith(
      "; n = 200: one run seed, the ± over evaluation runs only")
  # Some baselines measured: beaten by one of them is final; beating them all is provisional.
  part = [_cell("hopa", 100, 21.7, 0.2), _cell("mtt_vl", 100, 22.8, 0.1),
          _cell("lors", 100, 21.1, 0.1)]
  pc = {t: (m, v) for t, _, m, v in report.claims(part, "own")}
  m, v = next(x for t, x in pc.items() if t.startswith("HoPA > every pairwise"))
  assert v.startswith("does not hold") and "some baselines" not in v and "vs MTT-VL, the best measured" in m
  part[1] = _cell("mtt_vl", 100, 20.8, 0.1)
  pc = {t: (m, v) for t, _, m, v in report.claims(part, "own")}
  m, v = next(x for t, x in pc.items() if t.startswith("HoPA > every pairwise"))
  assert v.startswith("holds (so far") and "some baselines not measured yet" in v
  assert "TESLA" in m and "vs LoRS, the best measured" in m
  # The document: prose outside the markers survives; the tables and claims are written.
  doc = tmp_path / "results.md"
  doc.write_text(f"# Results\n\nhand-written prose\n\n{report.BEGIN}\nold\n{report.END}\n\ntail prose\n")
  report.update_doc(str(doc), cells)
  text = doc.read_text()
  assert text.startswith("# Results\n\nhand-written prose") and text.endswith("tail prose\n")
  assert "old" not in text.split(report.BEGIN)[1].split(report.END)[0].splitlines()
  assert "### Table 1 analogue — msrvtt_sim" in text and "[21.6 / 42.2]" in text
  assert "### Claims — own-objective view, budget `cpu`" in text
  assert "(= LoRS)" in text and "seeds ± 0.30, 3" in text
  assert report.update_doc(str(doc), cells) == text           # idempotent
  assert "at the edge of the lr grid" not in text             # no cell says so
  # A row whose selected lr is an end of the grid is listed once, with its epochs.
  grid = {"0.001": 1.0, "0.01": 2.0, "0.1": 3.0}
  assert sweep.lr_edge({"lr": 0.001, "lr_grid": grid}) == "low"
  assert sweep.lr_edge({"lr": 0.1, "lr_grid": grid}) == "high"
  assert sweep.lr_edge({"lr": 0.01, "lr_grid": grid}) is None
  assert sweep.lr_edge({"lr": 0.01}) is None and sweep.lr_edge({}) is None
  edged = [dict(c) for c in cells]
  edged[-2].update(eval_lr=0.001, eval_lr_edge="low", eval_epochs=[1, 2, 1], workdir="full_x")
  edged.append(dict(edged[-2]))                               # an alias of the same workdir
  md = report.report_markdown(edged)
  assert "### Evaluation selections at the edge of the lr grid" in md
  assert md.count("| 0.001 (low) | 1–2 |") == 1
  assert md.split("### Evaluation selections")[0].split("### Claims")[-1] == \
      report.report_markdown(cells).split("### Claims")[-1].split("### Measured wall")[0]
  assert md.index("### Evaluation selections") < md.index("### Measured wall")  # nothing moves
  # The measured wall time: each workdir once (the 3-pair alias shares LoRS's), per kind.
  wc = [dict(c, workdir=(f"common_{c['eval_objective']}/" if c["view"] == "common" else "")
             + f"w{i}",
             minutes=1.0 + i) for i, c in enumerate(cells)]
  lors = next(c for c in wc if c["method"] == "lors")
  next(c for c in wc if c["method"] == "3pair")["workdir"] = lors["workdir"]
  cost = report.cost_table(wc)
  dist = [c["minutes"] for c in wc if c["n"] == 100 and c["view"] == "own"
          and c["method"] not in ("random", "3pair")]
  assert len(dist) == 11
  assert (f"| msrvtt_sim | 100 | cpu | distilled | not recorded | 11 | {sorted(dist)[5]:.1f} | "
          f"{min(dist):.1f}–{max(dist):.1f} | {sum(dist):.0f} |") in cost
  assert "| msrvtt_sim | 100 | cpu | re-evaluation | not recorded | 1 |" in cost
  assert "| msrvtt_sim | — | cpu | Full | not recorded | 2 |" in cost   # own + common objective
  assert f"{len(wc) - 1} workdirs" in cost                          # the alias once
  assert "### Measured wall time of the finished rows" in report.report_markdown(wc)
  assert report.cost_table([dict(c, minutes=None) for c in cells]) == ""
  # a row resumed from its checkpoints by a later process is left out, and said so
  lors["resumed"] = True
  cost = report.cost_table(wc)
  assert "| msrvtt_sim | 100 | cpu | distilled | not recorded | 10 |" in cost
  wc[0]["cpu"] = "AMD EPYC"                                          # one group per CPU
  assert "| AMD EPYC | 1 |" in report.cost_table(wc)
  assert f"{len(wc) - 2} workdirs" in cost and "1 rows resumed" in cost
  (tmp_path / "nomarkers.md").write_text("no markers\n")
  with pytest.raises(ValueError, match="markers"):
    report.update_doc(str(tmp_path / "nomarkers.md"), cells)
  # The binary regenerates the doc from a cells file alone.
  cf = tmp_path / "cells.json"
  cf.write_text(json.dumps(cells))
  doc.write_text(f"x\n{report.BEGIN}\n{report.END}\n")
  r = subprocess.run([sys.executable, "-m", "experiments.hopa_sweep", "--report",
                      f"--cells={cf}", f"--doc={doc}"], capture_output=True, text=True)
  assert r.returncode == 0, r.stderr
  assert doc.read_text() == text.replace("# Results\n\nhand-written prose\n\n", "x\n").replace(
      "\n\ntail prose\n", "\n")
  h = subprocess.run([sys.executable, "-m", "experiments.hopa_sweep", "--help"],
                     capture_output=True, text=True)
  assert h.returncode == 0 and "budgets.cpu.num_experts" in h.stdout
  bad = subprocess.run([sys.executable, "-m", "experiments.hopa_sweep", "--workdir=x",
                        "--config=experiments/configs/sweep.py", "--config.only=0/2"],
                       capture_output=True, text=True)
  assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "only" in bad.stderr


def test_table_rows_follow_the_per_n_defaults():
  """hopa_table's rows at another n get that n's SPEC §3.7 defaults (not the first n's),
  keys set explicitly are kept."""
  from experiments.configs import hopa as hopa_config
  from hopa_jax import table
  c = hopa_config.get_config("dataset=vggsound_s_sim")
  c.distill.sim_alpha = 0.3
  d = table.at_n(c, 500)
  ref = hopa_config.get_config("dataset=vggsound_s_sim,n=500")
  assert (d.n, d.distill.sim_rank, d.distill.iterations, d.distill.max_start_epoch) == (
      500, ref.distill.sim_rank, ref.distill.iterations, ref.distill.max_start_epoch)
  assert d.distill.sim_alpha == 0.3 and c.n == 100


def test_archive_restores_finished_rows_elsewhere(tiny_store, tmp_path, monkeypatch):
  """Finished rows survive the loss of the sweep workdir (a new session or machine):
  saved to an archive, restored into a new workdir at the same relative path, read, not
  rerun; a restored row bound to other numerics is recomputed."""
  from hopa_jax import sweep_archive
  from mmdd_jax import workdir as workdir_lib
  monkeypatch.chdir(tmp_path)
  c = _tiny(tiny_store)
  log = []
  saved = []   # after_row (the binary's --archive) archives each row as it finishes
  sweep.run_sweep(c, "sweep", stop=lambda i: i >= 2, log=log.append,
                  after_row=lambda: saved.append(sweep_archive.save("sweep", "archive")))
  assert saved == [1, 2]
  assert sweep_archive.save("sweep", "archive") == 2
  assert sweep_archive.saver("sweep", "archive")() == 2   # the binaries' (one process)
  shutil.rmtree("sweep")
  assert sweep_archive.restore("archive", "sweep") == 2
  log.clear()
  c.dry_run = True
  sweep.run_sweep(c, "sweep", log=log.append)
  assert sum("] done " in l for l in log) == 2
  assert sweep_archive.restore("archive", "sweep") == 0        # never over a row of its own
  monkeypatch.setattr(workdir_lib, "NUMERICS", "test-bump")
  log.clear()
  sweep.run_sweep(c, "sweep", log=log.append)
  assert sum("] done " in l for l in log) == 0


def test_rows_bound_to_other_store_content_stop_before_any_work(tiny_store, tmp_path,
                                                                monkeypatch):
  """A finished row bound to another content of its store (the simulator rewritten on a
  CPU with another BLAS kernel) stops the sweep with one line naming the row's
  config.json and both digests, before any row runs; every cell records its input
  store's digest, and the report refuses cells of one dataset from two store contents."""
  from hopa_jax import report
  from mmdd_jax import workdir as workdir_lib
  monkeypatch.chdir(tmp_path)
  c = _tiny(tiny_store)
  cs = sweep.run_sweep(c, "sweep", stop=lambda i: i >= 1, log=lambda _: None)
  digest = workdir_lib.store_digest(tiny_store.root)
  done = [x for x in cs if x["avg_r1"] is not None]
  assert done and all(x["store"] == digest for x in done)
  assert all(x["cpu"] == sweep.host()["cpu"] for x in done)
  with open(os.path.join("sweep", done[0]["workdir"], sweep.PROVENANCE)) as f:
    assert json.load(f)["blas"] == sweep.host()["blas"]
  cfg_path = os.path.join("sweep", done[0]["workdir"], "config.json")
  with open(cfg_path) as f:
    cfg = json.load(f)
  cfg["data"]["store"] = "sha256:" + "e" * 64
  with open(cfg_path, "w") as f:
    json.dump(cfg, f)
  calls = []
  with pytest.raises(ValueError) as e:
    sweep.run_sweep(c, "sweep", log=lambda _: None, train=lambda *a: calls.append(a))
  msg = str(e.value)
  assert "\n" not in msg and calls == []
  assert cfg_path in msg and digest[:19] in msg and "sha256:eeeeeeeeeeee" in msg
  assert "1 finished rows" in msg
  other = dict(done[0], store="sha256:" + "e" * 64)
  with pytest.raises(ValueError, match=r"cells of .*: expected one store content, found 2"):
    report.check_one_store(done + [other])
  report.check_one_store(done + [dict(done[0], store=None)])   # old cells carry none


def test_a_row_only_read_keeps_its_provenance(tiny_store, tmp_path, monkeypatch):
  """A finished row that the sweep's first look misses (on a new machine its simulator
  store is not written yet, so finished() says no) is read by its run, not recomputed,
  and its provenance (commit, date, minutes) is kept, not rewritten with the read's."""
  monkeypatch.chdir(tmp_path)
  c = _tiny(tiny_store)
  cs = sweep.run_sweep(c, "sweep", stop=lambda i: i >= 1, log=lambda _: None)
  wd = next(x["workdir"] for x in cs if x["avg_r1"] is not None)
  prov = os.path.join("sweep", wd, sweep.PROVENANCE)
  with open(prov) as f:
    before = f.read()
  real, seen = sweep.finished, set()

  def first_miss(sc, workdir, row):
    if row.path == wd and row.path not in seen:
      seen.add(row.path)
      return None
    return real(sc, workdir, row)

  monkeypatch.setattr(sweep, "finished", first_miss)
  log = []
  sweep.run_sweep(c, "sweep", stop=lambda i: i >= 1, log=log.append)
  assert any(l.endswith("finished before, read") for l in log)
  with open(prov) as f:
    assert f.read() == before
    assert json.loads(before)["resumed"] is False


def test_a_resumed_row_says_so(tiny_store, tmp_path, monkeypatch):
  """A row that an earlier process started and did not finish (its workdir bound, no
  results yet) is finished from what it left and marked ``resumed`` in its provenance
  and its cell; a row run in one go says ``resumed: false``."""
  monkeypatch.chdir(tmp_path)
  c = _tiny(tiny_store)
  cs = sweep.run_sweep(c, "sweep", stop=lambda i: i >= 1, log=lambda _: None)
  done = next(x for x in cs if x["avg_r1"] is not None)
  assert done["resumed"] is False
  wd = os.path.join("sweep", done["workdir"])
  for f in ("results.json", "results.md", sweep.PROVENANCE):   # as if killed before the end
    os.remove(os.path.join(wd, f))
  cs = sweep.run_sweep(c, "sweep", stop=lambda i: i >= 1, log=lambda _: None)
  again = next(x for x in cs if x["workdir"] == done["workdir"])
  assert again["resumed"] is True and again["avg_r1"] is not None
  with open(os.path.join(wd, sweep.PROVENANCE)) as f:
    assert json.load(f)["resumed"] is True
