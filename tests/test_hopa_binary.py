"""Smoke runs of hopa_jax.run (what experiments/hopa.py and experiments/evaluate.py
call; local=1), the HoPA config, the table plan and the binaries' command line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from embed import store as store_lib
from experiments.configs import evaluate as evaluate_config
from experiments.configs import hopa as hopa_config
from hopa_jax import run as hopa_bin
from hopa_jax import table as hopa_table
from mmdd_jax import keys


def test_config_defaults_and_overrides():
  c = hopa_config.get_config("dataset=vggsound_s_sim,n=500,optimizer=sgd")
  d = c.distill
  assert (d.sim_rank, d.sim_alpha, d.lr_sim, d.iterations, d.max_start_epoch) == (40, 0.1, 100.0, 3000, 7)
  c = hopa_config.get_config("dataset=vggsound_s_sim,n=500")   # adam: one relative rule
  d = c.distill
  assert (d.optimizer, d.lr_data, d.lr_lr, d.lr_sim) == ("adam", 0.01, 0.01, 0.01)
  c = hopa_config.get_config("dataset=didemo_sim,n=200,method=lors")
  c.distill.sim_alpha = 0.3
  assert (c.distill.sim_rank, c.distill.sim_alpha, c.method) == (20, 0.3, "lors")
  c = hopa_config.get_config("optimizer=sgd")
  assert (c.n, c.distill.lr_data, c.distill.lr_lr, c.distill.syn_steps, c.distill.mini_batch,
          c.experts.num_experts) == (100, 100.0, 1e-4, 16, 25, 20)
  c = hopa_config.get_config("")
  assert (c.experts.lr, c.eval.protocol, c.objective.pos_from, c.val_fraction) == (
      None, "select", "identity", 0.1)
  assert c.eval.objective is None and c.distill.grad_mode is None
  assert hopa_config.get_config("local=1").distill.iterations < 20
  # dotted keys (strings as on the command line), tuples, None
  c = keys.override(hopa_config.get_config(), {"distill.lr_data": "0.5", "distill.lr_lr": 0.2,
                                               "eval.lrs": "(0.01, 0.1)", "experts.lr": 0.3})
  assert (c.distill.lr_data, c.distill.lr_lr, c.eval.lrs, c.experts.lr) == (0.5, 0.2, (0.01, 0.1), 0.3)
  assert keys.override(c, {"experts.lr": "none"}).experts.lr is None
  # An overrides section (the demo's hopa, the sweep's base): typed keys, None = the
  # file's own default; its switches go to get_config (n=200's per-n defaults apply).
  from hopa_jax import plan as hopa_plan
  sec = keys.overrides(hopa_plan.KEYS, {"distill.lr_data": 0.5, "eval.lrs": (0.01, 0.1),
                                        "experts.lr": 0.3, "n": 200})
  assert keys.set_keys(sec) == {"n": 200, "experts.lr": 0.3, "distill.lr_data": 0.5,
                                "eval.lrs": (0.01, 0.1)}
  c = keys.from_spec(hopa_config, sec)
  assert (c.distill.lr_data, c.eval.lrs, c.experts.lr, c.n) == (0.5, (0.01, 0.1), 0.3, 200)
  assert keys.as_dict(c) == keys.as_dict(keys.override(
      hopa_config.get_config("n=200"), {"distill.lr_data": 0.5, "eval.lrs": (0.01, 0.1),
                                        "experts.lr": 0.3}))
  with pytest.raises(ValueError, match="'momentum': unknown"):   # dotted keys only
    keys.overrides(hopa_plan.KEYS, {"momentum": 0.1})
  # Every dataclass is built from its section, once (the plan).
  p = hopa_bin.resolve(hopa_config.get_config("method=rank2"))
  assert p.obj.rank == 2 and p.distill.sim_kind == "lowrank"
  assert hopa_bin.resolve(hopa_config.get_config("method=mtt_vl")).distill.sim_kind == "fixed"
  assert hopa_bin.resolve(hopa_config.get_config("method=tesla")).distill.grad_mode == "tesla"
  assert p.eval.objective == "hopa"
  assert p.experts.lr is None
  with pytest.raises(ValueError, match="unknown"):
    keys.override(hopa_config.get_config(), {"nope": 1})
  with pytest.raises(ValueError, match="expected int"):
    keys.override(hopa_config.get_config(), {"n": "abc"})


def test_smoke_binary_resume_and_reevaluate(tiny_store, tmp_path):
  cfg = hopa_config.get_config(f"dataset={tiny_store.root},local=1,n=8")
  cfg.progress = False
  wd = str(tmp_path / "run")
  rows = hopa_bin.train_and_evaluate(cfg, wd)
  res = json.load(open(os.path.join(wd, "results.json")))
  assert res[0]["method"] == "hopa" and res[0]["n_syn"] == 8 and res[0]["runs"] == cfg.eval.runs
  assert set(res[0]["time_s"]) == {"experts", "distill", "eval"}
  assert set(res[0]["retrieval"]) == {"VT", "TV", "VA", "AV", "TA", "AT"}
  for f in ("config.json", "metrics.jsonl", "results.md"):
    assert os.path.exists(os.path.join(wd, f)), f
  st = store_lib.validate(os.path.join(wd, "distilled"))
  assert st.count("train") == 8 and st.count("test") == tiny_store.count("test")
  assert st.count("val") == res[0]["config"]["val_fraction"] * tiny_store.count("train")
  assert st.manifest["extra"]["hopa"]["lr"] == pytest.approx(rows[0]["learned_lr"])
  # Selections are recorded: lr_teacher (auto, on validation) and the evaluation's.
  assert res[0]["lr_teacher"] in (0.01, 0.1)
  assert set(res[0]["lr_teacher_selection"]["val_r1"]) == {"0.01", "0.1"}
  assert res[0]["eval"]["protocol"] == "select" and res[0]["eval"]["lr"] in (0.003, 0.01, 0.03, 0.1, 0.3)
  assert len(res[0]["eval"]["epochs"]) == cfg.eval.runs and min(res[0]["eval"]["epochs"]) >= 1
  # metrics.jsonl: every loop step once
  recs = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
  steps = [r["step"] for r in recs if r.get("stage") == "distill"]
  assert steps == sorted(set(steps)) and steps[-1] == cfg.distill.iterations
  assert [r["step"] for r in recs if r.get("stage") == "experts"] == list(range(1, cfg.experts.epochs + 1))
  assert os.path.exists(os.path.join(cfg.experts_dir or os.path.join(wd, "experts"), "teacher_lr.json"))
  assert np.load(os.path.join(wd, "distilled", "similarity.npy")).shape == (8, 8)
  # A killed run resumes from the saved experts and distillation checkpoint: same set.
  syn = np.asarray(st.features("train", "vision")).copy()
  os.remove(os.path.join(wd, "results.json"))
  again = hopa_bin.train_and_evaluate(cfg, wd)
  np.testing.assert_array_equal(np.asarray(store_lib.Store(os.path.join(wd, "distilled"))
                                           .features("train", "vision")), syn)
  assert again[0]["avg"] == rows[0]["avg"]
  recs = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
  assert sum(r.get("stage") == "result" for r in recs) == 1
  assert len([r for r in recs if r.get("stage") == "eval"]) == cfg.eval.runs
  # A finished run returns its results; another config stops before touching anything.
  assert hopa_bin.train_and_evaluate(cfg, wd)[0]["avg"] == rows[0]["avg"]
  other = keys.override(hopa_config.get_config(f"dataset={tiny_store.root},local=1,n=8"),
                        {"progress": False, "seed": 1})
  with pytest.raises(RuntimeError, match=r"differing keys: seed: 0 → 1"):
    hopa_bin.train_and_evaluate(other, wd)
  # Any store can be re-evaluated.
  ev = hopa_bin.evaluate_store(keys.override(evaluate_config.get_config(), {
      "store": os.path.join(wd, "distilled"), "eval.protocol": "paper", "eval.runs": 2,
      "eval.epochs": 2, "progress": False}), str(tmp_path / "reeval"))
  assert ev[0]["eval"]["lr"] == pytest.approx(rows[0]["learned_lr"])
  assert ev[0]["runs"] == 2
  ev = hopa_bin.evaluate_store(keys.override(evaluate_config.get_config(), {
      "store": os.path.join(wd, "distilled"), "eval.objective": "3pair", "eval.runs": 2,
      "eval.max_epochs": 2, "progress": False}), str(tmp_path / "sel"))
  assert ev[0]["runs"] == 2


def test_experts_dir_bound_to_its_config(tiny_store, tmp_path):
  """Shared experts are never silently reused under another config."""
  base = {"progress": False, "distill.iterations": 2, "eval.runs": 1, "experts.lr": 0.1,
          "experts_dir": str(tmp_path / "ex")}
  switches = f"dataset={tiny_store.root},local=1,n=8"
  cfg = keys.override(hopa_config.get_config(switches), base)
  hopa_bin.train_and_evaluate(cfg, str(tmp_path / "a"))
  cfg = keys.override(hopa_config.get_config(switches), {**base, "experts.lr": 0.01})
  with pytest.raises(ValueError, match="expert_config.json.*differing: lr: 0.1 → 0.01"):
    hopa_bin.train_and_evaluate(cfg, str(tmp_path / "b"))


def test_random_method_has_no_distillation(tiny_store, tmp_path):
  cfg = keys.override(hopa_config.get_config(f"dataset={tiny_store.root},local=1,n=8,method=random"),
                      {"progress": False, "eval.objective": "3pair"})
  rows = hopa_bin.train_and_evaluate(cfg, str(tmp_path / "rnd"))
  assert rows[0]["time_s"]["experts"] == 0 and rows[0]["time_s"]["distill"] == 0
  assert rows[0]["learned_lr"] is None and rows[0]["eval"]["objective"] == "3pair"
  assert not os.path.exists(tmp_path / "rnd" / "distilled" / "similarity.npy")


@pytest.mark.parametrize("method", ["zero_shot", "full"])
def test_reference_rows_use_the_same_protocol(tiny_store, tmp_path, method):
  cfg = hopa_config.get_config(f"dataset={tiny_store.root},local=1,method={method}")
  cfg.progress = False
  rows = hopa_bin.train_and_evaluate(cfg, str(tmp_path / method))
  assert rows[0]["n_syn"] is None and rows[0]["avg"]["R@1"] >= 0
  assert rows[0]["eval"]["protocol"] == "select"
  if method == "zero_shot":
    assert rows[0]["eval"]["epochs"] == [0]


def test_table_plan_compares_like_with_like():
  """Random and Full are evaluated once per objective of the table's distilled
  methods; with one objective for every row they appear once."""
  plan = hopa_table.plan(["zero_shot", "random", "hopa", "lors", "mtt_vl", "full"], None)
  assert ("random", "hopa") in plan and ("random", "3pair") in plan and ("random", "infonce") in plan
  assert ("full", "3pair") in plan and ("hopa", None) in plan and ("zero_shot", None) in plan
  assert hopa_table.plan(["random", "hopa"], "infonce") == [("random", None), ("hopa", None)]
  assert hopa_table.label("random", "3pair") == "random[3pair]"


@pytest.mark.parametrize("binary,module", [("hopa", hopa_config), ("evaluate", evaluate_config),
                                           ("hopa_table", hopa_config)])
def test_help_lists_every_key_and_exits_0(binary, module):
  assert keys.missing_help(module.get_config(), module.KEYS) == []
  r = subprocess.run([sys.executable, "-m", f"experiments.{binary}", "--help"],
                     capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  for key in ("eval.lrs", "objective.pos_from"):
    assert key in r.stdout
  assert "--workdir" in r.stdout


def test_binary_errors_are_one_line(tiny_store, tmp_path):
  wd = tmp_path / "w"
  os.makedirs(wd)
  with open(wd / "config.json", "w") as f:
    json.dump({"fingerprint": "x", "config": {"seed": 5}}, f)
  r = subprocess.run([sys.executable, "-m", "experiments.hopa", f"--workdir={wd}",
                      f"--config=experiments/configs/hopa.py:dataset={tiny_store.root},local=1"],
                     capture_output=True, text=True)
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and str(wd) in lines[0] and "--fresh" in lines[0], r.stderr[-2000:]
  assert sorted(os.listdir(wd)) == ["config.json"]
  r = subprocess.run([sys.executable, "-m", "experiments.hopa", f"--workdir={wd}",
                      "--config=experiments/configs/hopa.py:nope=1"], capture_output=True, text=True)
  assert r.returncode != 0 and "nope" in r.stderr
