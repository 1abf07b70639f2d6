"""Smoke run of experiments/hopa.py (local=1) and experiments/evaluate.py; config."""

import json
import os

import numpy as np
import pytest

from embed import store as store_lib
from experiments import evaluate as evaluate_bin
from experiments import hopa as hopa_bin
from experiments.configs import hopa as hopa_config


def test_config_defaults_and_overrides():
  c = hopa_config.get_config("dataset=vggsound_s_sim,n=500,optimizer=sgd")
  assert (c.sim_rank, c.sim_alpha, c.lr_sim, c.iterations, c.max_start_epoch) == (40, 0.1, 100.0, 3000, 7)
  c = hopa_config.get_config("dataset=vggsound_s_sim,n=500")   # adam: one relative rule
  assert (c.optimizer, c.lr_data, c.lr_lr, c.lr_sim) == ("adam", 0.01, 0.01, 0.01)
  c = hopa_config.get_config("dataset=didemo_sim,n=200,sim_alpha=0.3,method=lors")
  assert (c.sim_rank, c.sim_alpha, c.method) == (20, 0.3, "lors")
  c = hopa_config.get_config("optimizer=sgd")
  assert (c.n, c.lr_data, c.lr_lr, c.syn_steps, c.mini_batch, c.num_experts) == (100, 100.0, 1e-4, 16, 25, 20)
  c = hopa_config.get_config("")
  assert (c.lr_teacher, c.eval_protocol, c.pos_from, c.val_fraction) == ("auto", "select", "identity", 0.1)
  assert hopa_config.get_config("local=1").iterations < 20
  with pytest.raises(ValueError, match="unknown"):
    hopa_config.get_config("nope=1")
  with pytest.raises(ValueError, match="expected int"):
    hopa_config.get_config("n=abc")


def test_smoke_binary_resume_and_reevaluate(tiny_store, tmp_path):
  cfg = hopa_config.get_config(f"dataset={tiny_store.root},local=1,n=8,progress=0")
  wd = str(tmp_path / "run")
  rows = hopa_bin.train_and_evaluate(cfg, wd)
  res = json.load(open(os.path.join(wd, "results.json")))
  assert res[0]["method"] == "hopa" and res[0]["n_syn"] == 8 and res[0]["runs"] == cfg.eval_runs
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
  assert len(res[0]["eval"]["epochs"]) == cfg.eval_runs and min(res[0]["eval"]["epochs"]) >= 1
  assert os.path.exists(os.path.join(cfg.experts_dir or os.path.join(wd, "experts"), "teacher_lr.json"))
  assert np.load(os.path.join(wd, "distilled", "similarity.npy")).shape == (8, 8)
  # A rerun resumes from the saved experts and distillation checkpoint: same set.
  syn = np.asarray(st.features("train", "vision")).copy()
  hopa_bin.train_and_evaluate(cfg, wd)
  np.testing.assert_array_equal(np.asarray(store_lib.Store(os.path.join(wd, "distilled"))
                                           .features("train", "vision")), syn)
  # Any store can be re-evaluated.
  ev = evaluate_bin.train_and_evaluate(
      dict(store=os.path.join(wd, "distilled"), test_store=None, protocol="paper", lr=None,
           objective=None, runs=2, epochs=2, batch_size=128, seed=0), str(tmp_path / "reeval"))
  assert ev[0]["config"]["lr_used"] == pytest.approx(rows[0]["learned_lr"])
  assert ev[0]["runs"] == 2
  ev = evaluate_bin.train_and_evaluate(
      dict(store=os.path.join(wd, "distilled"), test_store=None, protocol="select", lr=None,
           objective="3pair", runs=2, epochs=2, batch_size=128, seed=0), str(tmp_path / "sel"))
  assert ev[0]["runs"] == 2


def test_experts_dir_bound_to_its_config(tiny_store, tmp_path):
  """Shared experts are never silently reused under another config."""
  base = f"dataset={tiny_store.root},local=1,n=8,progress=0,iterations=2,eval_runs=1,lr_teacher=0.1"
  cfg = hopa_config.get_config(base + f",experts_dir={tmp_path / 'ex'}")
  hopa_bin.train_and_evaluate(cfg, str(tmp_path / "a"))
  cfg = hopa_config.get_config(base.replace("lr_teacher=0.1", "lr_teacher=0.01")
                               + f",experts_dir={tmp_path / 'ex'}")
  with pytest.raises(ValueError, match="expert_config.json.*differing: \\['lr'\\]"):
    hopa_bin.train_and_evaluate(cfg, str(tmp_path / "b"))


def test_random_method_has_no_distillation(tiny_store, tmp_path):
  cfg = hopa_config.get_config(f"dataset={tiny_store.root},local=1,n=8,method=random,"
                               "progress=0,eval_objective=3pair")
  rows = hopa_bin.train_and_evaluate(cfg, str(tmp_path / "rnd"))
  assert rows[0]["time_s"]["experts"] == 0 and rows[0]["time_s"]["distill"] == 0
  assert rows[0]["learned_lr"] is None and rows[0]["eval"]["objective"] == "3pair"
  assert not os.path.exists(tmp_path / "rnd" / "distilled" / "similarity.npy")


@pytest.mark.parametrize("method", ["zero_shot", "full"])
def test_reference_rows_use_the_same_protocol(tiny_store, tmp_path, method):
  cfg = hopa_config.get_config(f"dataset={tiny_store.root},local=1,method={method},progress=0")
  rows = hopa_bin.train_and_evaluate(cfg, str(tmp_path / method))
  assert rows[0]["n_syn"] is None and rows[0]["avg"]["R@1"] >= 0
  assert rows[0]["eval"]["protocol"] == "select"
  if method == "zero_shot":
    assert rows[0]["eval"]["epochs"] == [0]


def test_table_plan_compares_like_with_like():
  """Random and Full are evaluated once per objective of the table's distilled
  methods; with one objective for every row they appear once."""
  from experiments import hopa_table
  plan = hopa_table.plan(["zero_shot", "random", "hopa", "lors", "mtt_vl", "full"], "method")
  assert ("random", "hopa") in plan and ("random", "3pair") in plan and ("random", "infonce") in plan
  assert ("full", "3pair") in plan and ("hopa", None) in plan and ("zero_shot", None) in plan
  assert hopa_table.plan(["random", "hopa"], "infonce") == [("random", None), ("hopa", None)]
  assert hopa_table.label("random", "3pair") == "random[3pair]"


def test_demo_config_parses_and_plans_like_for_like():
  from experiments import demo, hopa_table
  cfg = hopa_config.get_config(f"dataset=msrvtt_sim,scale=0.2,n=50,{demo.HOPA_DEMO}")
  assert cfg.eval_objective == "method" and cfg.lr_teacher == "auto"
  plan = hopa_table.plan(demo.DEMO_METHODS, cfg.eval_objective)
  assert ("random", "hopa") in plan and ("random", "3pair") in plan
