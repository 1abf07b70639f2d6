"""The one way to run a stage (:mod:`mmdd_jax.stage`): records dropped on entry (a rerun
never duplicates them), ``time_s`` filled, and the bound JSON cache (hit, miss on
another identity, nothing written when the caller refuses)."""

import json
import os

import pytest

from mmdd_jax import stage


def _stages(wd):
  return stage.Stages(str(wd), time_s=("a", "b"))


def _run(wd, *, fail_after: int | None = None):
  """A toy run: stage ``a`` writes 3 records, stage ``b`` one per item; a kill after
  ``fail_after`` of ``b``'s records."""
  st = _stages(wd)
  with st.stage("a", time="a") as s:
    for i in range(3):
      s.write(step=i)
  with st.stage("b", method="m", time="b") as s:
    for i in range(2):
      if fail_after is not None and i == fail_after:
        raise RuntimeError("killed")
      s.write(item=i)
  return st


def test_rerun_does_not_duplicate_records(tmp_path):
  with pytest.raises(RuntimeError, match="killed"):
    _run(tmp_path, fail_after=1)
  st = _run(tmp_path)   # the rerun recomputes every stage
  recs = [{k: v for k, v in r.items() if k != "time"} for r in st.metrics.records()]
  assert recs == [{"stage": "a", "step": 0}, {"stage": "a", "step": 1}, {"stage": "a", "step": 2},
                  {"stage": "b", "method": "m", "item": 0}, {"stage": "b", "method": "m", "item": 1}]
  assert list(st.metrics.records()[0]) == ["stage", "step", "time"]   # tags, fields, time


def test_truncation_is_by_tags(tmp_path):
  st = _stages(tmp_path)
  for m in ("x", "y"):
    with st.stage("eval", method=m) as s:
      s.write(acc=1)
  with st.stage("eval", method="x") as s:   # only x's record is dropped and rewritten
    s.write(acc=2)
  with st.stage("loop", truncate=False) as s:   # a loop that resumes truncates itself
    s.write(step=1)
  with st.stage("loop", truncate=False) as s:
    s.write(step=2)
  got = [(r["stage"], r.get("method"), r.get("acc"), r.get("step")) for r in st.metrics.records()]
  assert got == [("eval", "y", 1, None), ("eval", "x", 2, None), ("loop", None, None, 1),
                 ("loop", None, None, 2)]


def test_time_s_filled(tmp_path):
  st = _run(tmp_path)
  assert list(st.time_s) == ["a", "b"] and all(v >= 0.0 for v in st.time_s.values())
  untouched = _stages(tmp_path / "u")
  assert untouched.time_s == {"a": 0.0, "b": 0.0}   # a stage that did not run: 0
  row = {"load": 1.5}
  with untouched.stage("eval", time="eval", time_s=row) as s:
    pass
  assert list(row) == ["load", "eval"] and row["eval"] == s.seconds >= 0.0
  assert untouched.time_s == {"a": 0.0, "b": 0.0}
  with untouched.stage(time="a"):   # no name: no records, no truncation
    pass
  with untouched.stage(time="a"):   # a stage run in parts adds up
    pass
  assert untouched.time_s["a"] >= 0.0 and untouched.metrics.records() == []
  t = {}
  with stage.timed(t, "data"):
    pass
  assert set(t) == {"data"}


def test_cached_without_identity(tmp_path):
  path = str(tmp_path / "sel" / "m.json")
  calls = []

  def compute():
    calls.append(1)
    return {"lr": 0.1, "scores": (1.0, 2.0)}

  first = stage.cached(path, compute)
  assert first == {"lr": 0.1, "scores": (1.0, 2.0)}   # as computed
  assert json.load(open(path)) == {"lr": 0.1, "scores": [1.0, 2.0]}
  assert stage.cached(path, compute) == {"lr": 0.1, "scores": [1.0, 2.0]} and len(calls) == 1


def test_cached_bound_to_identity(tmp_path):
  path = str(tmp_path / "teacher_lr.json")
  calls = []

  def compute():
    calls.append(1)
    return {"lr": 0.01 * len(calls)}

  ident = {"seed": 0, "key": (1, 2)}
  got = stage.cached(path, compute, ident=ident)
  assert got == {"lr": 0.01, "ident": {"seed": 0, "key": [1, 2]}}
  assert json.load(open(path)) == got
  assert stage.cached(path, compute, ident={"seed": 0, "key": [1, 2]}) == got   # hit
  assert len(calls) == 1
  other = stage.cached(path, compute, ident={"seed": 1, "key": [1, 2]})   # miss: recomputed
  assert other == {"lr": 0.02, "ident": {"seed": 1, "key": [1, 2]}} and len(calls) == 2
  assert json.load(open(path)) == other


def test_cached_refused_writes_nothing(tmp_path):
  path = str(tmp_path / "ex" / "teacher_lr.json")
  seen = []

  def refuse(value):
    seen.append(value)
    raise ValueError("ex: holds experts of another run")

  with pytest.raises(ValueError, match="another run"):
    stage.cached(path, lambda: {"lr": 0.1}, ident={"seed": 0}, accept=refuse)
  assert seen == [{"lr": 0.1, "ident": {"seed": 0}}] and not os.path.exists(path)
  stage.cached(path, lambda: {"lr": 0.1}, ident={"seed": 0}, accept=lambda v: None)
  before = open(path, "rb").read()
  with pytest.raises(ValueError):   # a hit is checked too, and left as it is
    stage.cached(path, lambda: {"lr": 0.3}, ident={"seed": 0}, accept=refuse)
  with pytest.raises(ValueError):   # a miss that is refused leaves the old record
    stage.cached(path, lambda: {"lr": 0.3}, ident={"seed": 5}, accept=refuse)
  assert open(path, "rb").read() == before


def test_finished_row_bound_to_config_and_store(tiny_store, tmp_path):
  from mmdd_jax import results, workdir as workdir_lib
  wd = str(tmp_path / "row")
  cfg = {"seed": 0, "n": 8}
  stores = {"store": tiny_store.root}
  with workdir_lib.open_workdir(wd, cfg, data={"store": workdir_lib.store_digest(tiny_store)}):
    assert stage.finished(wd, cfg, stores) is None   # not finished
    results.write_results(wd, [{"method": "x"}], table="t")
  assert stage.finished(wd, cfg, stores) == [{"method": "x"}]
  assert stage.finished(wd, {"seed": 1, "n": 8}, stores) is None        # another config
  assert stage.finished(wd, cfg, {"store": str(tmp_path / "none")}) is None   # no store
