"""The common view without the learned Ŝ (hopa_jax.targets_view, experiments.identity_targets):
the evaluation key that drops Ŝ, the diagnostic over a tiny sweep (read, not rerun, on a
second call), the cells' merge across machines and the generated table."""

import os
import subprocess
import sys

import pytest

from experiments.configs import evaluate as evaluate_config
from hopa_jax import evaluate as ev
from hopa_jax import run, sweep, targets_view
from mmdd_jax import keys, workdir as workdir_lib
from tests import test_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_sweep(tiny_store, tmp_path_factory):
  c = test_sweep._tiny(tiny_store)
  c.method_sets.main = ("random", "hopa", "mtt_vl")
  wd = str(tmp_path_factory.mktemp("identity") / "sweep")
  sweep.run_sweep(c, wd, log=lambda _: None)
  return c, wd


def test_targets_key_default_keeps_old_bindings_and_identity_drops_s(tiny_sweep, monkeypatch,
                                                                    tmp_path):
  c, wd = tiny_sweep
  # The default ('store') is left out of the binding: workdirs made before the key exist
  # stay bound; 'identity' is bound as any other value.
  e = evaluate_config.get_config()
  e.store = "S"
  flat = workdir_lib.result_keys(keys.as_dict(e))
  assert "targets" not in flat
  e.targets = "identity"
  assert workdir_lib.result_keys(keys.as_dict(e))["targets"] == "identity"
  bad = evaluate_config.get_config()
  bad.store, bad.targets = "S", "none"
  from hopa_jax import plan as plan_lib
  with pytest.raises(ValueError, match="targets"):
    plan_lib.resolve_evaluate(bad)
  # evaluate_set is given Ŝ under 'store' and nothing under 'identity'.
  seen = []
  real = ev.evaluate_set

  def spy(*a, sim_params=None, **kw):
    seen.append(sim_params)
    return real(*a, sim_params=sim_params, **kw)

  monkeypatch.setattr(ev, "evaluate_set", spy)
  row = next(r for r in targets_view.targets(c) if r.method == "hopa")
  store = os.path.join(wd, row.source.path, "distilled")
  assert targets_view.has_similarity(store)
  for t in ("store", "identity"):
    cfg = sweep.reeval_config(c, wd, row)
    cfg.targets = t
    run.evaluate_store(cfg, str(tmp_path / t))
  assert seen[0] is not None and "S" in seen[0] and seen[1] is None


def test_identity_view_over_a_tiny_sweep(tiny_sweep, tmp_path):
  c, wd = tiny_sweep
  # Candidates: the distilled sets' common-view cells (HoPA's re-evaluation, MTT-VL's own
  # evaluation); only a store that lists Ŝ is evaluated.
  rows = targets_view.targets(c)
  assert {r.method for r in rows} == {"hopa", "mtt_vl"} and all(r.kind == "reeval" for r in rows)
  mtt = next(r for r in rows if r.method == "mtt_vl")
  assert not targets_view.has_similarity(os.path.join(wd, mtt.source.path, "distilled"))
  calls = []

  def evaluate(p, w):
    assert p.targets == "identity" and p.eval.objective == c.common_objective
    calls.append(w)
    return run.evaluate_store(p, w)

  out = str(tmp_path / "idt")
  cells = targets_view.run(c, wd, out, evaluate=evaluate, log=lambda _: None, commit="abc")
  assert len(calls) == 1 and [x["method"] for x in cells] == ["hopa"]
  cell = cells[0]
  assert set(targets_view.CELL_FIELDS) <= set(cell)
  sc = {(x["label"], x["view"]): x for x in sweep.cells(c, wd)}
  assert cell["common_r1"] == sc[("hopa[infonce]", "common")]["avg_r1"]
  assert cell["own_r1"] == sc[("hopa", "own")]["avg_r1"]
  assert cell["random_r1"] == sc[("random[infonce]", "common")]["avg_r1"]
  assert cell["avg_r1"] > 0 and cell["runs"] == 2 and cell["commit"] == "abc"
  assert cell["store"].startswith("sha256:") and cell["s_dist"] >= 0
  assert 0 <= cell["label_mass"] <= 1
  # A second call reads the finished cell.
  calls.clear()
  again = targets_view.run(c, wd, out, evaluate=evaluate, log=lambda _: None)
  assert calls == [] and again == cells
  # Cells measured elsewhere are kept; a re-measured one replaces its old entry.
  other = dict(cell, dataset="didemo_sim", store="sha256:0000")
  stale = dict(cell, avg_r1=-1.0)
  merged = targets_view.merge([other, stale], cells)
  assert merged == [other, cell]
  md = targets_view.markdown(merged)
  assert "| HoPA |" in md and "didemo_sim" in md
  assert f"{cell['avg_r1'] - cell['common_r1']:+.2f}" in md
  doc = tmp_path / "doc.md"
  doc.write_text(f"intro\n{targets_view.BEGIN}\nold\n{targets_view.END}\nafter\n")
  targets_view.update_doc(str(doc), merged)
  text = doc.read_text()
  assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
  assert md in text
  (tmp_path / "bare.md").write_text("no markers\n")
  with pytest.raises(ValueError, match="markers"):
    targets_view.update_doc(str(tmp_path / "bare.md"), merged)


def test_binary_help_and_bad_flags_are_one_line(tmp_path):
  cmd = [sys.executable, "-m", "experiments.identity_targets"]
  h = subprocess.run(cmd + ["--help"], capture_output=True, text=True, cwd=ROOT)
  assert h.returncode == 0 and "--sweep" in h.stdout and "--cells" in h.stdout, h.stderr[-2000:]
  r = subprocess.run(cmd + [f"--sweep={tmp_path / 'nope'}", f"--workdir={tmp_path / 'w'}"],
                     capture_output=True, text=True, cwd=ROOT)
  assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-2000:]
  assert "--sweep" in r.stderr and "nope" in r.stderr
