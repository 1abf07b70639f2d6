"""Smoke test of the bound-study binary (local=1)."""

import json
import os

from experiments import bound_study
from experiments.configs import bound as bound_config


def test_bound_study_smoke(tiny_store, tmp_path):
  cfg = bound_config.get_config(
      f"local=1,dataset={tiny_store.root},objectives=hopa+3pair,T=2,power_iters=5,"
      "distill_iterations=2,progress=0")
  rows = bound_study.run_study(cfg, str(tmp_path))
  assert [(r["objective"], r["synthetic"]) for r in rows] == [
      ("hopa", "random"), ("hopa", "distilled"), ("3pair", "random"), ("3pair", "distilled")]
  assert all(r["held_secant"] for r in rows)
  for f in ("results.md", "bound.jsonl", "config.json", "mismatch.png", "gap_vs_bound.png",
            "sensitivity.png"):
    assert os.path.getsize(tmp_path / f) > 0, f
  md = (tmp_path / "results.md").read_text()
  assert "| hopa | random |" in md and "bound/gap" in md
  recs = [json.loads(l) for l in (tmp_path / "bound.jsonl").read_text().splitlines()]
  assert len(recs) == 4 and len(recs[0]["steps"]["gap"]) == 3
  # HoPA's principal-mode part: no sensitivity beyond the leading mode (float32)
  principal = recs[0]["sens_syn"]["hopa_principal"]
  assert max(principal[1:]) <= 1e-5 * principal[0]
