"""The demo (experiments/demo.py) and its compact summary (mmdd_jax.summary)."""

import io
import json
import math
import os
import subprocess
import sys
import time

import pytest

from mmdd_jax import keys
from experiments.configs import demo as demo_config
from experiments.configs import hopa as hopa_config
from hopa_jax import table
from mmdd_jax import summary


def _ret(method, n, r1, s1, objective="hopa", r5=40.0):
  return {"method": method, "n_syn": n, "runs": 3, "retrieval": {"VT": {"R@1": r1}},
          "avg": {"R@1": r1, "R@5": r5},
          "avg_std": {"R@1": s1, "R@5": 0.1}, "eval": {"objective": objective},
          "time_s": {"eval": 30.0, "distill": 30.0}}


def _cls(method, ipc, acc, std, head="linear"):
  return {"method": method, "n_syn": ipc, "runs": 5, "retrieval": None, "accuracy": acc,
          "accuracy_std": std, "head": head, "time_s": {"eval": 6.0}}


ROWS = [
    {**_ret("zero_shot", None, 20.75, 0.0), "eval": {"objective": None}, "runs": 1},
    _ret("random[hopa]", 100, 20.97, 0.03),
    _ret("random[3pair]", 100, 20.74, 0.07, "3pair"),
    _ret("hopa", 100, 21.70, 0.04),
    _ret("lors", 100, 21.29, 0.08, "3pair"),
    _ret("full[hopa]", None, 22.10, 0.06),
]


def test_every_key_has_help_and_the_default_meets_the_resolution_rule():
  from experiments import demo
  c = demo_config.get_config()
  assert keys.missing_help(c, demo_config.KEYS) == []
  assert demo.check_resolution(c) == (1000, 1000)      # one hit = 0.1 point, both tasks
  # Random is planned under the distilled methods' own evaluation objectives.
  hcfg, bcfg = demo.configs(c)
  assert hcfg.eval.objective is None and hcfg.experts.lr is None   # both selected on validation
  assert hcfg.n == c.n and hcfg.eval.protocol == "select" and bcfg.ipc == 1
  plan = table.plan(c.methods, hcfg.eval.objective)
  assert ("random", "hopa") in plan and ("full", "hopa") in plan and ("hopa", None) in plan
  assert set(bcfg.method) == {"random", "herding", "dm", "bindc", "full"}


def test_row_keys_are_set_the_ml_collections_way():
  """The demo's ``hopa`` / ``bindc`` sections: any key of the row config files from the
  command line (``--config.hopa.a.b=``), tuples as Python literals; unset keys keep the
  row file's default; an unknown key stops with one line."""
  from absl import flags
  from ml_collections import config_flags
  from experiments import demo
  def parse(*overrides):
    argv = ["demo", f"--config={demo_config.__file__}", *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=fv, sys_argv=argv)
    fv(argv)
    return fv.config
  hcfg, bcfg = demo.configs(parse("--config.hopa.distill.iterations=500",
                                  "--config.hopa.eval.lrs=(0.01, 0.1)",
                                  "--config.hopa.distill.lr_data=0.02", "--config.bindc.ipc=2"))
  assert (hcfg.distill.iterations, hcfg.eval.lrs, hcfg.distill.lr_data) == (500, (0.01, 0.1), 0.02)
  assert hcfg.distill.syn_steps == 8   # the demo's budget; unset keys: hopa.py's defaults
  assert hcfg.distill.lr_lr == hopa_config.get_config().distill.lr_lr
  assert bcfg.ipc == 2 and bcfg.distill.iterations == 200
  with pytest.raises((flags.Error, AttributeError), match="nonsense"):   # as for any key
    parse("--config.hopa.nonsense=1")
  with pytest.raises(ValueError, match=r"^config key 'hopa.distill.iterations': expected ≥ 1, "
                                       r"found 0$"):   # one line, the demo's key name
    demo.configs(parse("--config.hopa.distill.iterations=0"))


def test_resolution_rule_stops_before_any_work(tmp_path):
  from experiments import demo
  with pytest.raises(ValueError, match="config key 'scale': expected a test split of ≥ 1000 rows"):
    demo.check_resolution(keys.override(demo_config.get_config(), {"scale": 0.5}))
  with pytest.raises(ValueError, match="cls_scale"):
    demo.check_resolution(keys.override(demo_config.get_config(), {"cls_scale": 0.25}))
  r = subprocess.run([sys.executable, "-m", "experiments.demo", f"--workdir={tmp_path / 'w'}",
                      "--config=experiments/configs/demo.py", "--config.scale=0.5"],
                     capture_output=True, text=True)
  assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
  assert not (tmp_path / "w").exists()


def test_delta_is_against_random_of_the_same_evaluation_and_n():
  hopa, lors, full = ROWS[3], ROWS[4], ROWS[5]
  assert summary.random_for(hopa, ROWS) is ROWS[1]
  assert summary.random_for(lors, ROWS) is ROWS[2]
  assert summary.random_for(full, ROWS) is ROWS[1]          # Full: Random of its evaluation
  assert summary.random_for(ROWS[0], ROWS) is None and summary.random_for(ROWS[1], ROWS) is None
  d, s = summary.delta(hopa, ROWS[1])
  assert d == pytest.approx(0.73) and s == pytest.approx(math.sqrt(0.04 ** 2 + 0.03 ** 2))
  # Another n has no Random at equal n: no Δ.
  assert summary.random_for(_ret("hopa", 200, 22.0, 0.1), ROWS) is None
  cls = [_cls("random", 1, 18.6, 0.2), _cls("bindc", 1, 55.1, 0.3), _cls("random", 1, 17.0, 0.4, "mlp"),
         _cls("full", None, 67.5, 0.1)]
  assert summary.random_for(cls[1], cls) is cls[0]
  assert summary.delta(cls[1], cls[0], "accuracy")[0] == pytest.approx(36.5)
  assert summary.random_for(cls[3], cls) is cls[0]


def test_compact_tables():
  t = summary.retrieval_table(ROWS).splitlines()
  assert len(t) == 2 + len(ROWS)
  assert t[0].split("|")[1:-1] == [c.ljust(len(c)) for c in t[0].split("|")[1:-1]]
  assert "| HoPA " in t[5] and "+0.73 ± 0.05" in t[5] and "| 100 |" in t[5].replace(" ", " ")
  assert "| Zero-shot " in t[2] and " — " in t[2]
  assert "−" not in t[4] and "-0.23" not in t[4]             # Random[3pair] has no Δ itself
  assert "+0.55 ± 0.11" in t[6]                              # LoRS vs Random[3pair]
  assert len({len(line) for line in t}) == 1                 # columns padded
  c = summary.classification_table([_cls("random", 1, 18.6, 0.2), _cls("bindc", 1, 55.1, 0.3)])
  assert "ImageBindDC" in c and "+36.5 ± 0.4" in c


def test_plot_writes_one_png(tmp_path):
  p = tmp_path / "x" / "demo.png"
  summary.plot(str(p), ROWS, [_cls("random", 1, 18.6, 0.2), _cls("dm", 1, 55.0, 0.3),
                              _cls("full", None, 67.5, 0.1)])
  assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_prints_each_stage_once_in_order(tmp_path):
  out = io.StringIO()
  prog = summary.Progress(out=out, poll_s=0.01)
  path = tmp_path / "metrics.jsonl"

  def write(**r):
    with open(path, "a") as f:
      f.write(json.dumps(r) + "\n")

  stages = [("HoPA", "experts", summary.has_record(stage="lr_teacher")),
            ("HoPA", "distill", summary.has_record(stage="experts", step=2)),
            ("HoPA", "eval", summary.count_records(2, stage="distill"))]
  with prog.watch(str(path), "retrieval", ("HoPA", "lr_teacher selection"), stages):
    for r in ({"stage": "lr_teacher"}, {"stage": "experts", "step": 1},
              {"stage": "experts", "step": 2}, {"stage": "distill", "step": 1},
              {"stage": "distill", "step": 2}):
      write(**r)
      time.sleep(0.05)
    time.sleep(0.1)
  lines = out.getvalue().splitlines()
  assert [l.split("] ", 1)[1] for l in lines] == [
      "retrieval · HoPA · lr_teacher selection", "retrieval · HoPA · experts",
      "retrieval · HoPA · distill", "retrieval · HoPA · eval"]


def test_demo_runs_at_a_tiny_size(tmp_path):
  """The demo's whole code path (both tasks, every stage) at local=1: one screen of
  output, the files, and a rerun reads the finished rows."""
  wd = tmp_path / "w"
  cmd = [sys.executable, "-m", "experiments.demo", f"--workdir={wd}",
         "--config=experiments/configs/demo.py:local=1", f"--config.data_dir={tmp_path / 'd'}",
         "--config.cls_methods=('random', 'herding', 'bindc', 'full')"]
  r = subprocess.run(cmd, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-3000:]
  out = r.stdout.splitlines()
  assert len(out) <= 40, r.stdout
  assert r.stderr.strip() == "", r.stderr[-3000:]
  text = r.stdout
  for s in ("retrieval · HoPA n=10 · lr_teacher selection", "retrieval · HoPA n=10 · distill",
            "classification · ImageBindDC · lr selection", "| Random[hopa] ", "| HoPA ",
            "| Full[hopa] ", "| ImageBindDC ", "Δ R@1 vs Random", "demo finished in"):
    assert s in text, s
  for f in ("summary.md", "retrieval.md", "retrieval.json", "classification.md",
            "classification.json", "demo.png"):
    assert (wd / f).exists(), f
  rows = json.load(open(wd / "retrieval.json"))
  assert [x["method"] for x in rows] == ["zero_shot", "random[hopa]", "hopa", "full[hopa]"]
  assert all(x["eval"]["protocol"] == "select" for x in rows if x["method"] != "zero_shot")
  assert "VT R@1" in (wd / "retrieval.md").read_text()
  budget, tables = (wd / "summary.md").read_text().split("\n\n", 1)
  assert budget in text and tables.strip() in text         # summary.md: what was printed
  again = subprocess.run(cmd, capture_output=True, text=True)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "· distill" not in again.stdout                   # nothing trained again

  def cells(out):   # every table row without its minutes (a rerun times its reading)
    return [l.rsplit("|", 2)[0] for l in out.splitlines() if l.startswith("| ")]
  assert cells(again.stdout) == cells(text) and len(cells(text)) == (1 + 4) + (1 + 4)
