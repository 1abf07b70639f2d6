"""The bound study (hopa_jax.study, local=1) and its binary's --help and config keys."""

import json
import os
import subprocess
import sys

from experiments.configs import bound as bound_config
from hopa_jax import plan as plan_lib
from hopa_jax import study
from mmdd_jax import keys, results


def test_every_key_has_help():
  assert keys.missing_help(bound_config.get_config(), bound_config.KEYS) == []
  assert keys.missing_help(bound_config.get_config("local=1"), bound_config.KEYS) == []


def test_config_sections_build_the_library_dataclasses():
  c = keys.override(bound_config.get_config("local=1"), {
      "objective.tau_nce": 0.1, "objective.clip_targets": False, "objective.pos_from": "targets",
      "distill.grad_mode": "tesla", "study.objectives": ("hopa", "infonce")})
  d = c.to_dict()
  ocfg = study.objective_config(d)
  assert (ocfg.tau_nce, ocfg.clip_targets, ocfg.pos_from) == (0.1, False, "targets")
  assert plan_lib.study_objectives(d) == ["hopa", "infonce"]
  ecfg = study.expert_config(d, "hopa", ocfg)
  assert (ecfg.epochs, ecfg.lr, ecfg.batch_size, ecfg.obj) == (2, 0.01, 32, ocfg)
  dcfg = study.distill_config(d, 10, "infonce", ocfg)
  assert (dcfg.sim_kind, dcfg.grad_mode, dcfg.n, dcfg.mini_batch) == ("fixed", "tesla", 10, 5)
  assert study.distill_config(bound_config.get_config().to_dict(), 10, "hopa", ocfg).grad_mode == "full"


def test_bound_study_smoke(tiny_store, tmp_path):
  cfg = keys.override(bound_config.get_config(f"local=1,dataset={tiny_store.root}"), {
      "study.objectives": ("hopa", "3pair"), "study.T": 2, "study.power_iters": 5,
      "distill.iterations": 2, "progress": False})
  rows = study.train_and_evaluate(cfg, str(tmp_path))
  assert [(r["objective"], r["synthetic"]) for r in rows] == [
      ("hopa", "random"), ("hopa", "distilled"), ("3pair", "random"), ("3pair", "distilled")]
  assert all(r["held_secant"] for r in rows)
  for f in ("results.md", "results.json", "bound.jsonl", "config.json", "mismatch.png",
            "gap_vs_bound.png", "sensitivity.png"):
    assert os.path.getsize(tmp_path / f) > 0, f
  md = (tmp_path / "results.md").read_text()
  assert "| hopa | random |" in md and "bound/gap" in md
  saved = results.read_results(str(tmp_path))
  assert isinstance(saved, list) and [r["synthetic"] for r in saved] == [r["synthetic"] for r in rows]
  recs = [json.loads(l) for l in (tmp_path / "bound.jsonl").read_text().splitlines()]
  assert len(recs) == 4 and len(recs[0]["steps"]["gap"]) == 3
  # HoPA's principal-mode part: no sensitivity beyond the leading mode (float32)
  principal = recs[0]["sens_syn"]["hopa_principal"]
  assert max(principal[1:]) <= 1e-5 * principal[0]
  # A rerun of the same config resumes (experts and distillations reused), same rows.
  again = study.train_and_evaluate(cfg, str(tmp_path))
  assert [r["endpoint_gap"] for r in again] == [r["endpoint_gap"] for r in rows]


def test_binary_help_lists_nested_keys():
  h = subprocess.run([sys.executable, "-m", "experiments.bound_study", "--help"],
                     capture_output=True, text=True)
  assert h.returncode == 0, h.stderr[-2000:]
  for key in ("study.objectives", "experts.lr", "distill.iterations", "objective.tau_nce",
              "--workdir", "--fresh"):
    assert key in h.stdout, key


def test_bad_input_stops_before_the_workdir(tiny_store, tmp_path):
  import pytest
  bad = subprocess.run([sys.executable, "-m", "experiments.bound_study",
                        "--config=experiments/configs/bound.py:local=1", "--config.study.T=0",
                        f"--workdir={tmp_path / 'w'}"], capture_output=True, text=True)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
      "error: config key 'study.T': expected ≥ 1, found 0"]
  cfg = bound_config.get_config(f"local=1,dataset={tiny_store.root}")
  cfg.study.n = 100000
  with pytest.raises(ValueError, match="config key 'study.n'"):
    study.train_and_evaluate(cfg, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
