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


def test_reference_cli_and_help(tmp_path):
  import subprocess
  import sys
  h = subprocess.run([sys.executable, "-m", "experiments.reference", "--help"],
                     capture_output=True, text=True)
  assert "--dataset" in h.stdout and "--workdir" in h.stdout  # absl exits 1 after --help
  wd = tmp_path / "w"
  r = subprocess.run([sys.executable, "-m", "experiments.reference", "--dataset", "nyuv2_sim",
                      "--scale", "0.05", "--cls_runs", "1", "--data_dir", str(tmp_path / "d"),
                      "--workdir", str(wd)], capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "| full |" in r.stdout and (wd / "results.json").exists()
  bad = subprocess.run([sys.executable, "-m", "experiments.reference", "--dataset",
                        str(tmp_path / "nope"), "--workdir", str(wd)], capture_output=True, text=True)
  assert bad.returncode != 0 and "expected an existing store directory" in bad.stderr
