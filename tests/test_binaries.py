"""Smoke tests of the foundation binaries at tiny scale."""

import json
import os

from experiments import reference


def _cfg(dataset, **kw):
  c = dict(dataset=dataset, scale=0.02, seed=0, data_dir=None, runs=1, cls_runs=2, epochs=1,
           lr=0.01, batch_size=64, tau=0.07, task="auto")
  c.update(kw)
  return c


def test_reference_retrieval(tmp_path):
  wd = str(tmp_path / "w")
  rows = reference.train_and_evaluate(_cfg("msrvtt_sim", data_dir=str(tmp_path / "d")), wd)
  assert [r["method"] for r in rows] == ["zero_shot", "full"]
  for f in ("config.json", "metrics.jsonl", "results.json", "results.md"):
    assert os.path.exists(os.path.join(wd, f))
  res = json.load(open(os.path.join(wd, "results.json")))
  assert set(res[0]["retrieval"]) == {"VT", "TV", "VA", "AV", "TA", "AT"}
  assert 0 <= res[1]["avg"]["R@1"] <= 100


def test_reference_classification(tmp_path):
  wd = str(tmp_path / "w")
  rows = reference.train_and_evaluate(_cfg("nyuv2_sim", scale=0.1, data_dir=str(tmp_path / "d")), wd)
  assert rows[0]["accuracy"] is not None and rows[0]["runs"] == 2
  assert "full" in open(os.path.join(wd, "results.md")).read()
