"""Issue 17, items 1–3: a result is bound to the data and seeds that made it.

* a workdir (HoPA, ImageBindDC, re-evaluation, table rows) is bound to its store's
  *content*: the same command on a changed store is refused with one line (or, with
  ``--fresh``, recomputed) — never answered with the old results;
* a shared experts directory is bound to the seed (key), the exact train rows and the
  settings, locked while written (a second run waits, then reads), and a run that is
  refused writes nothing there (not even the teacher-lr cache);
* outputs are complete or absent: ``similarity.npy`` is listed in the distilled
  store's manifest; ``results.md`` is derived when ``results.json`` exists without it.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from embed import store as store_lib
from experiments.configs import hopa as hopa_config
from hopa_jax import plan as hopa_plan
from hopa_jax import run as hopa_run
from mmdd_jax import keys, results
from mmdd_jax import stage as stage_lib
from mmdd_jax import workdir as workdir_lib

BASE = {"progress": False, "distill.iterations": 2, "eval.runs": 1, "eval.max_epochs": 2}


def _hopa(root, **flat):
  """A tiny HoPA config (local=1, n=8) on ``root`` (``flat``: dotted keys, ``a__b`` = ``a.b``)."""
  return keys.override(hopa_config.get_config(f"dataset={root},local=1,n=8"), {
      **BASE, **{k.replace("__", "."): v for k, v in flat.items()}})


def _copy_store(src: str, dst: str) -> str:
  shutil.copytree(src, dst)
  return dst


@contextlib.contextmanager
def _edited(root: str, rel: str, fn):
  """Changes one array of a store and re-hashes it in the manifest (so the store still
  validates: only its content changed); restores both afterwards."""
  path = os.path.join(root, rel)
  mpath = os.path.join(root, store_lib.MANIFEST)
  saved = {p: open(p, "rb").read() for p in (path, mpath)}
  try:
    a = np.load(path)
    np.save(path, fn(a.copy()))
    with open(mpath, encoding="utf-8") as f:
      m = json.load(f)
    m["files"][rel] = store_lib.sha256_file(path)
    with open(mpath, "w", encoding="utf-8") as f:
      json.dump(m, f)
    yield
  finally:
    for p, b in saved.items():
      open(p, "wb").write(b)


def _bump(a):
  a[0, 0] += 0.5
  return a


@pytest.fixture(scope="module")
def finished(tiny_store, tmp_path_factory):
  """One finished HoPA run (explicit lr, its own experts dir) on a private copy of the
  tiny store: ``(store root, config, workdir, experts dir, results)``."""
  d = tmp_path_factory.mktemp("bound")
  root = _copy_store(tiny_store.root, str(d / "s"))
  ex = str(d / "ex")
  cfg = _hopa(root, experts__lr=0.1, experts_dir=ex)
  wd = str(d / "wd")
  rows = results.jsonable(hopa_run.train_and_evaluate(cfg, wd))
  return root, cfg, wd, ex, rows


def _copy_wd(wd: str, dst) -> str:
  shutil.copytree(wd, str(dst), ignore=shutil.ignore_patterns(".lock"))
  return str(dst)


def test_store_digest_covers_content_not_command(tiny_store, tmp_path):
  root = _copy_store(tiny_store.root, str(tmp_path / "s"))
  d0 = workdir_lib.store_digest(root)
  mpath = os.path.join(root, store_lib.MANIFEST)
  m = json.load(open(mpath, encoding="utf-8"))
  m["command"] = "another command line"
  json.dump(m, open(mpath, "w", encoding="utf-8"))
  assert workdir_lib.store_digest(root) == d0
  with _edited(root, "train/vision.features.npy", _bump):
    assert workdir_lib.store_digest(root) != d0
  assert workdir_lib.store_digest(root) == d0


def test_hopa_workdir_bound_to_store_content(finished, tmp_path):
  root, cfg, wd0, _, first = finished
  wd = _copy_wd(wd0, tmp_path / "wd")
  assert hopa_run.train_and_evaluate(cfg, wd) == first          # same data: read back
  assert hopa_run.train_and_evaluate(hopa_plan.resolve(cfg), wd) == first   # its Plan: same
  assert stage_lib.finished_run(wd, hopa_plan.resolve(cfg)) == first
  with _edited(root, "train/vision.features.npy", _bump):       # one train value
    before = sorted(os.listdir(wd))
    with pytest.raises(workdir_lib.RunError, match=r"holds a run of other data \(content "
                       r"changed: store: sha256:"):
      hopa_run.train_and_evaluate(cfg, wd)
    assert sorted(os.listdir(wd)) == before                       # nothing touched
    assert stage_lib.finished_run(wd, hopa_plan.resolve(cfg)) is None   # a table never reads it
    c2 = cfg.copy_and_resolve_references()
    c2.experts_dir = str(tmp_path / "ex2")                        # (the old experts: other data)
    again = hopa_run.train_and_evaluate(c2, wd, fresh=True)       # --fresh recomputes
    assert again[0]["n_syn"] == first[0]["n_syn"]
  assert any(n.startswith("wd.old-") for n in os.listdir(tmp_path))


def test_killed_run_on_changed_test_split_is_refused(finished, tmp_path):
  """A run killed after distillation is not resumed (and evaluated) on a new test set."""
  root, cfg, wd0, _, _ = finished
  wd = _copy_wd(wd0, tmp_path / "wd")
  os.remove(os.path.join(wd, "results.json"))                     # as if killed before eval
  with _edited(root, "test/text.features.npy", lambda a: a[::-1].copy()):
    with pytest.raises(workdir_lib.RunError, match="other data"):
      hopa_run.train_and_evaluate(cfg, wd)


def test_old_record_without_data_is_refused(finished, tmp_path):
  _, cfg, wd0, _, _ = finished
  wd = _copy_wd(wd0, tmp_path / "wd")
  rec = json.load(open(os.path.join(wd, "config.json"), encoding="utf-8"))
  rec.pop("data")
  json.dump(rec, open(os.path.join(wd, "config.json"), "w", encoding="utf-8"))
  with pytest.raises(workdir_lib.RunError, match="data not recorded"):
    hopa_run.train_and_evaluate(cfg, wd)


def test_experts_dir_bound_to_seed_and_data(finished, tmp_path):
  root, cfg, _, ex, _ = finished
  rec = json.load(open(os.path.join(ex, "expert_config.json"), encoding="utf-8"))
  assert rec["data"].startswith("sha256:") and rec["key"]
  c1 = cfg.copy_and_resolve_references()
  c1.seed = 1
  with pytest.raises(ValueError, match=r"differing: key \(another seed\)"):
    hopa_run.train_and_evaluate(c1, str(tmp_path / "b"))
  other = _copy_store(root, str(tmp_path / "s2"))                 # same shapes, other values
  with _edited(other, "train/audio.features.npy", _bump):
    c2 = cfg.copy_and_resolve_references()
    c2.dataset = other
    with pytest.raises(ValueError, match=r"differing: data \(other train rows"):
      hopa_run.train_and_evaluate(c2, str(tmp_path / "c"))


def test_refused_run_writes_nothing_into_shared_experts(tiny_store, tmp_path):
  """With experts.lr unset, a seed=1 run sharing seed 0's experts is refused before
  its lr probe runs, and the shared teacher_lr.json is untouched."""
  ex = str(tmp_path / "ex")
  base = dict(experts__lr=None, experts_dir=ex)
  hopa_run.train_and_evaluate(_hopa(tiny_store.root, **base), str(tmp_path / "a"))
  names = sorted(os.listdir(ex))
  snap = {n: open(os.path.join(ex, n), "rb").read() for n in ("teacher_lr.json", "expert_config.json")}
  with pytest.raises(ValueError, match="another seed"):
    hopa_run.train_and_evaluate(_hopa(tiny_store.root, **base, seed=1), str(tmp_path / "b"))
  assert {n: open(os.path.join(ex, n), "rb").read() for n in snap} == snap
  assert sorted(os.listdir(ex)) == names


_CONCURRENT = r"""
import sys
import numpy as np
from embed import store as store_lib
from hopa_jax import experts as ex
from mmdd_jax import data, heads, rng
st = store_lib.Store(sys.argv[1])
xs = data.load_split(st, "train", "features")
p0 = heads.pretrained_heads(st, st.modalities)
cfg = ex.ExpertConfig(num_experts=2, epochs=3, lr=0.1, batch_size=16)
traj = ex.train_experts(rng.stream(rng.root(0), "experts"), p0, xs, cfg, sys.argv[2])
import jax
print("SUM", float(sum(np.asarray(l).astype(np.float64).sum() for l in jax.tree_util.tree_leaves(traj))))
"""


def test_two_runs_share_a_new_experts_dir(tiny_store, tmp_path):
  """Two processes start at once on one new experts dir: one trains, the other waits
  (saying so in one line) and reads the same experts; both finish (before, the second
  died with a raw Orbax FileNotFoundError)."""
  ex = str(tmp_path / "ex")
  env = {**os.environ, "PYTHONPATH": os.getcwd()}
  procs = [subprocess.Popen([sys.executable, "-c", _CONCURRENT, tiny_store.root, ex],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
           for _ in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  sums = [next(l for l in out.splitlines() if l.startswith("SUM")) for out, _ in outs]
  assert sums[0] == sums[1]
  assert sum("waiting for it to finish" in err for _, err in outs) <= 1


def test_distilled_similarity_listed_in_manifest(finished, tmp_path):
  _, _, wd, _, _ = finished
  d = _copy_store(os.path.join(wd, "distilled"), str(tmp_path / "distilled"))
  st = store_lib.validate(d)
  assert "similarity.npy" in st.manifest["files"]
  # a store whose Ŝ is not listed (an unfinished write) is refused before any work
  m = dict(st.manifest)
  m["files"] = {k: v for k, v in m["files"].items() if k != "similarity.npy"}
  json.dump(m, open(os.path.join(d, store_lib.MANIFEST), "w", encoding="utf-8"))
  from experiments.configs import evaluate as eval_config
  c = keys.override(eval_config.get_config(), {"store": d, "progress": False, "eval.runs": 1,
                                              "eval.max_epochs": 2})
  with pytest.raises(store_lib.StoreError, match="similarity.npy.*missing from the manifest"):
    hopa_run.evaluate_store(c, str(tmp_path / "ev"))
  assert not os.path.exists(tmp_path / "ev")


def test_results_md_derived_when_missing(finished, tmp_path):
  _, cfg, wd0, _, _ = finished
  wd = _copy_wd(wd0, tmp_path / "wd")
  md = open(os.path.join(wd, "results.md"), encoding="utf-8").read()
  os.remove(os.path.join(wd, "results.md"))
  hopa_run.train_and_evaluate(cfg, wd)
  assert open(os.path.join(wd, "results.md"), encoding="utf-8").read() == md


def test_bindc_workdir_bound_to_store_content(tiny_cls_store, tmp_path):
  from experiments.configs import bindc as bindc_config
  from bindc_jax import run as bindc_run
  root = _copy_store(tiny_cls_store.root, str(tmp_path / "s"))
  cfg = keys.override(bindc_config.get_config(f"dataset={root},local=1"),
                      {"method": ("random",), "progress": False})
  wd = str(tmp_path / "wd")
  bindc_run.train_and_evaluate(cfg, wd)
  with _edited(root, "test/labels.npy", lambda a: np.roll(a, 1)):   # permuted test labels
    with pytest.raises(workdir_lib.RunError, match="other data"):
      bindc_run.train_and_evaluate(cfg, wd)


def test_older_numerics_are_refused(finished, tmp_path, monkeypatch):
  """A change of the code's numerics (workdir.NUMERICS) makes old workdirs and experts
  another run: refused with one line, not read as finished."""
  _, cfg, wd0, ex, _ = finished
  wd = _copy_wd(wd0, tmp_path / "wd")
  monkeypatch.setattr(workdir_lib, "NUMERICS", "test-bump")
  assert stage_lib.finished_run(wd, hopa_plan.resolve(cfg)) is None
  with pytest.raises(workdir_lib.RunError, match="older numerics"):
    hopa_run.train_and_evaluate(cfg, wd)
  c = cfg.copy_and_resolve_references()
  with pytest.raises(ValueError, match="numerics"):
    hopa_run.train_and_evaluate(c, str(tmp_path / "new"))    # the shared experts too
