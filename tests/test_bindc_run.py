"""bindc_jax.run and the binaries: outputs, workdir binding (resume, another config,
--fresh), --help, the nested config and its help."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bindc_jax import plan as plan_lib
from bindc_jax import run
from experiments.configs import bindc as cfg_lib
from mmdd_jax import keys, results
from mmdd_jax import workdir as wd_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(store, **extra):
  """The smoke config: switches, then dotted keys (``extra``: ``a__b=`` for ``a.b``)."""
  return keys.override(cfg_lib.get_config(f"local=1,dataset={store.root}"), {
      "progress": False, "method": ("herding", "bindc"), "eval.runs": 5,
      **{k.replace("__", "."): v for k, v in extra.items()}})


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, tiny_cls_store):
  wd = str(tmp_path_factory.mktemp("bindc_run") / "w")
  rows = run.train_and_evaluate(_cfg(tiny_cls_store), wd)
  return wd, rows


def _snapshot(d):
  return {os.path.join(r, n): os.path.getmtime(os.path.join(r, n))
          for r, _, ns in os.walk(d) for n in ns}


def test_outputs(smoke):
  wd, rows = smoke
  assert [r["method"] for r in rows] == ["herding", "bindc"]
  for r in rows:
    assert 0 <= r["accuracy"] <= 100 and r["runs"] == 5 and r["n_syn"] == 1
  for f in ("config.json", "metrics.jsonl", "results.json", "results.md"):
    assert os.path.exists(os.path.join(wd, f)), f
  assert [r["accuracy"] for r in results.read_results(wd)] == [r["accuracy"] for r in rows]
  from embed import store
  st = store.validate(os.path.join(wd, "distilled-bindc"))
  assert st.count("train") == st.num_classes
  out = subprocess.run([sys.executable, "-m", "embed.store", "info",
                        os.path.join(wd, "distilled-herding")], capture_output=True, text=True)
  assert out.returncode == 0 and "split train" in out.stdout
  stages = {(r["stage"], r.get("method")) for r in results.MetricsWriter(wd).records()}
  assert {("distill", "bindc"), ("lr_select", "bindc"), ("eval", "herding"),
          ("eval", "bindc")} <= stages


def test_same_config_resumes_without_duplicate_records(smoke, tiny_cls_store):
  wd, rows = smoke
  before = results.MetricsWriter(wd).records()
  again = run.train_and_evaluate(_cfg(tiny_cls_store, progress=True), wd)
  assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
  after = results.MetricsWriter(wd).records()
  strip = lambda recs: [{k: v for k, v in r.items() if k != "time"} for r in recs]
  assert sorted(map(json.dumps, strip(after))) == sorted(map(json.dumps, strip(before)))


def test_another_config_is_refused_without_touching_the_workdir(smoke, tiny_cls_store):
  wd, _ = smoke
  before = _snapshot(wd)
  with pytest.raises(wd_lib.RunError) as e:
    run.train_and_evaluate(_cfg(tiny_cls_store, seed=1), wd)
  assert wd in str(e.value) and "seed" in str(e.value) and "\n" not in str(e.value)
  out = subprocess.run(
      [sys.executable, "-m", "experiments.bindc",
       f"--config=experiments/configs/bindc.py:local=1,dataset={tiny_cls_store.root}",
       "--config.progress=False", "--config.method=('herding', 'bindc')", "--config.eval.runs=5",
       "--config.distill.lr=0.1", f"--workdir={wd}"], capture_output=True, text=True, cwd=ROOT)
  assert out.returncode == 2, out.stderr
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and wd in lines[0] and "distill.lr" in lines[0], out.stderr
  assert _snapshot(wd) == before


def test_fresh_moves_the_old_run_aside(smoke, tiny_cls_store, tmp_path):
  wd = str(tmp_path / "w")
  shutil.copytree(smoke[0], wd)
  cfg = _cfg(tiny_cls_store, method=("random",), eval__runs=1)
  rows = run.train_and_evaluate(cfg, wd, fresh=True)
  assert [r["method"] for r in rows] == ["random"]
  aside = [n for n in os.listdir(tmp_path) if n.startswith("w.old-")]
  assert len(aside) == 1 and os.path.isdir(tmp_path / aside[0] / "ckpt" / "bindc")
  assert not os.path.exists(os.path.join(wd, "ckpt"))
  assert wd_lib.read_config(wd)["method"] == ["random"]


def test_help_lists_nested_keys_with_meanings():
  out = subprocess.run([sys.executable, "-m", "experiments.bindc", "--help"],
                       capture_output=True, text=True, cwd=ROOT)
  assert out.returncode == 0, out.stderr
  text = " ".join(out.stdout.split())   # absl wraps the help lines
  for key in ("distill.iterations", "select.grid", "loss.dist.num_freqs", "eval.heads"):
    assert f"{key} = " in text and cfg_lib.KEYS[key][2] in text, key
  assert "--workdir" in text and "--fresh" in text


def test_config_keys_types_and_help():
  c = cfg_lib.get_config()
  assert keys.missing_help(c, cfg_lib.KEYS) == []
  assert keys.missing_help(cfg_lib.get_config("local=1"), cfg_lib.KEYS) == []
  assert c.method == ("bindc",) and c.progress is True and c.local is False
  assert c.select.enabled is True and c.distill.project is True
  assert c.loss.dist.bandwidth is None and c.select.grid == (0.003, 0.01, 0.03, 0.1)
  c = keys.override(cfg_lib.get_config(), {
      "method": ("random", "herding", "dm", "bindc", "full"), "loss.dist.bandwidth": 0.5,
      "select.enabled": False, "distill.iterations": 7, "loss.dist.num_freqs": 512,
      "select.iterations": 50})
  assert c.method == ("random", "herding", "dm", "bindc", "full")
  assert c.loss.dist.bandwidth == 0.5 and c.select.enabled is False
  assert (c.distill.iterations, c.loss.dist.num_freqs, c.select.iterations) == (7, 512, 50)
  # the dataclasses are built from the sections
  dm, bindc = run.distill_config(c, "dm"), run.distill_config(c, "bindc")
  assert dm.lr == 0.5 and bindc.lr == 1e-3 and not dm.normalize
  assert bindc.loss.dist.bandwidth == 0.5 and bindc.loss.dist.num_freqs == 512
  assert dm.loss.kind == "dm" and bindc.iterations == 7
  assert run.distill_config(c, "random") is None
  with pytest.raises(ValueError, match="'iterations': unknown"):   # an overrides section:
    keys.overrides(plan_lib.KEYS, {"iterations": 3})                # dotted keys only
  with pytest.raises(ValueError, match="unknown"):
    keys.override(cfg_lib.get_config(), {"nonsense": 1})
  with pytest.raises(ValueError, match="not a switch"):
    cfg_lib.get_config("nonsense=1")
  with pytest.raises(ValueError, match="method"):
    run.check_config(keys.override(cfg_lib.get_config(), {"method": ("dm", "nope")}))
  with pytest.raises(ValueError, match="eval.heads"):
    run.check_config(keys.override(cfg_lib.get_config(), {"eval.heads": ("cnn",)}))
  with pytest.raises(ValueError, match="select.enabled"):
    run.check_config(keys.override(cfg_lib.get_config(), {"val_fraction": 0.0}))


def test_modality_subset(tmp_path, tiny_cls_store):
  """The paper's "Audio only" ablation: a modality subset; an absent one is a clear error."""
  from embed.store import Store, StoreError
  base = dict(method=("dm",), eval__runs=2, distill__iterations=2, select__enabled=False,
              val_fraction=0.0)
  rows = run.train_and_evaluate(_cfg(tiny_cls_store, **base, modalities=("audio",)),
                                str(tmp_path / "a"))
  assert rows[0]["accuracy"] is not None and rows[0]["selection"]["lr_rule"] == "fixed"
  assert Store(str(tmp_path / "a" / "distilled")).modalities == ["audio"]
  with pytest.raises(StoreError, match="expected to contain 'depth'"):
    run.train_and_evaluate(_cfg(tiny_cls_store, **base, modalities=("depth",)),
                           str(tmp_path / "b"))
  assert np.isfinite(rows[0]["accuracy"])


def test_renamed_keys_keep_the_old_workdirs_bound():
  """val_frac → val_fraction and eval.batch → eval.batch_size (HoPA's names): workdirs
  record and fingerprint the old names (mmdd_jax.workdir.RENAMED), so a finished
  workdir made before the rename stays bound to its config."""
  c = cfg_lib.get_config()
  old = c.to_dict()
  old["val_frac"] = old.pop("val_fraction")
  old["eval"]["batch"] = old["eval"].pop("batch_size")
  assert wd_lib.fingerprint(c) == wd_lib.fingerprint(old)
  assert wd_lib.differing_keys(old, c.to_dict()) == []
  rec = wd_lib.recorded(c)
  assert rec["val_frac"] == 0.1 and "val_fraction" not in rec and rec["eval"]["batch"] == 256
  assert wd_lib.recorded(old) == rec                       # already recorded: unchanged
  c.val_fraction = 0.2
  assert wd_lib.differing_keys(old, c.to_dict()) == ["val_frac"]
  from experiments.configs import hopa as hopa_config   # HoPA's own names are unchanged
  h = hopa_config.get_config()
  assert wd_lib.recorded(h) == results.jsonable(h.to_dict())
