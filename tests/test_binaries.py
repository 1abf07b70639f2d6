"""The reference rows (mmdd_jax.reference) and their binary at tiny scale."""

import json
import os
import subprocess
import sys

from experiments.configs import reference as ref_config
from mmdd_jax import keys, reference


def _cfg(dataset, tmp_path, extra=None):
  return keys.override(ref_config.get_config(), {
      "dataset": dataset, "scale": 0.02, "data_dir": str(tmp_path / "d"), "full.epochs": 1,
      "full.batch_size": 64, "classification.runs": 2, **(extra or {})})


def _binary(*args):
  return subprocess.run([sys.executable, "-m", "experiments.reference", *args],
                        capture_output=True, text=True)


def test_every_key_has_help():
  assert keys.missing_help(ref_config.get_config(), ref_config.KEYS) == []
  assert ref_config.get_config().full.tau == reference.FULL_TAU


def test_reference_retrieval(tmp_path):
  wd = str(tmp_path / "w")
  rows = reference.train_and_evaluate(_cfg("msrvtt_sim", tmp_path), wd)
  assert [r["method"] for r in rows] == ["zero_shot", "full"]
  for f in ("config.json", "metrics.jsonl", "results.json", "results.md"):
    assert os.path.exists(os.path.join(wd, f))
  res = json.load(open(os.path.join(wd, "results.json")))
  assert set(res[0]["retrieval"]) == {"VT", "TV", "VA", "AV", "TA", "AT"}
  assert 0 <= res[1]["avg"]["R@1"] <= 100


def test_reference_classification(tmp_path):
  wd = str(tmp_path / "w")
  rows = reference.train_and_evaluate(_cfg("nyuv2_sim", tmp_path, {"scale": 0.1}), wd)
  assert rows[0]["accuracy"] is not None and rows[0]["runs"] == 2
  assert "full" in open(os.path.join(wd, "results.md")).read()


def test_reference_cli_help_rerun_and_errors(tmp_path):
  h = _binary("--help")
  assert h.returncode == 0, h.stderr[-2000:]
  for key in ("full.tau", "classification.runs", "dataset", "--workdir", "--fresh"):
    assert key in h.stdout, key
  wd = tmp_path / "w"
  arg = ["--config=experiments/configs/reference.py", "--config.dataset=nyuv2_sim",
         "--config.scale=0.05", "--config.classification.runs=1",
         f"--config.data_dir={tmp_path / 'd'}"]
  r = _binary(*arg, f"--workdir={wd}")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "| full |" in r.stdout and (wd / "results.json").exists()
  # Another config in the same workdir: one line naming the workdir and the key; the
  # workdir is left as it was.
  before = {n: (wd / n).stat().st_mtime_ns for n in os.listdir(wd)}
  other = _binary(*arg, "--config.seed=1", f"--workdir={wd}")
  assert other.returncode == 2
  err = other.stderr.strip()
  assert len(err.splitlines()) == 1 and str(wd) in err and "seed" in err, err
  assert {n: (wd / n).stat().st_mtime_ns for n in os.listdir(wd)} == before
  bad = _binary("--config=experiments/configs/reference.py", f"--config.dataset={tmp_path / 'nope'}",
                f"--workdir={tmp_path / 'w2'}")
  assert bad.returncode == 2 and "expected an existing store directory" in bad.stderr
  assert len(bad.stderr.strip().splitlines()) == 1


def test_calibrate_sim_cli():
  from mmdd_jax import calibrate
  h = subprocess.run([sys.executable, "-m", "experiments.calibrate_sim", "--help"],
                     capture_output=True, text=True)
  assert h.returncode == 0 and "--dataset" in h.stdout, h.stderr[-2000:]
  bad = subprocess.run([sys.executable, "-m", "experiments.calibrate_sim", "--dataset=nope"],
                       capture_output=True, text=True)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
      "error: dataset: expected one of " + str(sorted(calibrate.simulate.DATASETS)) +
      ", found 'nope'"]
