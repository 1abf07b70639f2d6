"""The shared run layer: the loop driver (resume, metrics truncation, NaN errors) and
workdir integrity (config binding, --fresh, the lock) — on toy states, in seconds."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmdd_jax import loop, results, workdir as wd


def _advance(key):
  def advance(state, start, n):
    def body(x, t):
      x = x + 0.1 * jax.random.normal(jax.random.fold_in(key, t), x.shape)
      return x, {"loss": jnp.sum(x ** 2), "vec": x[:2]}
    x, ms = jax.lax.scan(body, state["x"], jnp.arange(start, start + n))
    return {"x": x}, jax.tree_util.tree_map(lambda a: a[-1], ms)
  return advance


def _run(tmp_path, **kw):
  m = results.MetricsWriter(str(tmp_path))
  state = {"x": jnp.zeros((3,), jnp.float32)}
  out = loop.run_loop(state, _advance(jax.random.key(0)), 10, ckpt_dir=str(tmp_path / "ckpt"),
                      ckpt_every=5, log_every=2, metrics=m, tags={"stage": "toy"}, **kw)
  return out, m


def test_kill_between_log_and_checkpoint_resumes_without_duplicates(tmp_path):
  ref, _ = _run(tmp_path / "ref")
  _run(tmp_path / "cut", stop_at=8)   # logged 6 and 8, last checkpoint at 5
  steps = [r["step"] for r in results.MetricsWriter(str(tmp_path / "cut")).records()]
  assert steps == [2, 4, 6, 8]
  out, m = _run(tmp_path / "cut")
  assert [r["step"] for r in m.records()] == [2, 4, 6, 8, 10]
  np.testing.assert_array_equal(np.asarray(out["x"]), np.asarray(ref["x"]))
  assert m.records()[-1]["vec"] == results.MetricsWriter(str(tmp_path / "ref")).records()[-1]["vec"]


def test_truncate_keeps_other_stages(tmp_path):
  m = results.MetricsWriter(str(tmp_path))
  m.write(stage="a", step=1)
  m.write(stage="b", step=5)
  m.write(stage="a", step=7)
  m.write(stage="eval", run=0)
  assert m.truncate({"stage": "a"}, after_step=3) == 1
  assert m.truncate({"stage": "eval"}) == 1
  assert [(r["stage"], r.get("step")) for r in m.records()] == [("a", 1), ("b", 5)]


def test_non_finite_metric_names_step_and_quantity(tmp_path):
  def advance(state, start, n):
    bad = jnp.where(start + n >= 4, jnp.nan, 1.0)
    return state, {"loss": jnp.float32(1.0), "grad_norm": bad}
  with pytest.raises(FloatingPointError, match=r"toy: non-finite grad_norm at step 4"):
    loop.run_loop({"x": jnp.zeros(2)}, advance, 6, log_every=2, desc="toy")


def test_save_initial_keeps_every_snapshot(tmp_path):
  state = {"x": jnp.zeros((2,), jnp.float32)}
  d = str(tmp_path / "snaps")
  loop.run_loop(state, _advance(jax.random.key(1)), 3, ckpt_dir=d, ckpt_every=1, keep=None,
                save_initial=True)
  assert sorted(loop.checkpoint_manager(d, None).all_steps()) == [0, 1, 2, 3]


CFG = {"seed": 0, "distill": {"lr": 0.1, "log_every": 5}, "progress": True}


def test_rerun_with_another_config_stops_before_touching_anything(tmp_path):
  d = str(tmp_path / "w")
  with wd.open_workdir(d, CFG):
    results.MetricsWriter(d).write(stage="x", step=1)
  before = {n: os.path.getmtime(os.path.join(d, n)) for n in os.listdir(d)}
  other = {**CFG, "seed": 1, "distill": {"lr": 0.2, "log_every": 5}}
  with pytest.raises(wd.RunError) as e:
    with wd.open_workdir(d, other):
      pass
  msg = str(e.value)
  assert d in msg and "seed" in msg and "distill.lr" in msg and "\n" not in msg
  assert {n: os.path.getmtime(os.path.join(d, n)) for n in os.listdir(d)} == before
  # bookkeeping keys do not change a result: same fingerprint, the run resumes
  with wd.open_workdir(d, {**CFG, "progress": False, "distill": {"lr": 0.1, "log_every": 9}}):
    pass


def test_fresh_moves_old_contents_aside(tmp_path):
  d = str(tmp_path / "w")
  with wd.open_workdir(d, CFG):
    results.MetricsWriter(d).write(stage="x", step=1)
  other = {**CFG, "seed": 3}
  with wd.open_workdir(d, other, fresh=True):
    pass
  aside = [n for n in os.listdir(tmp_path) if n.startswith("w.old-")]
  assert len(aside) == 1
  assert os.path.exists(tmp_path / aside[0] / "metrics.jsonl")
  assert not os.path.exists(os.path.join(d, "metrics.jsonl"))
  assert wd.read_config(d)["seed"] == 3
  with open(os.path.join(d, "config.json")) as f:
    assert json.load(f)["fingerprint"] == wd.fingerprint(other)


def test_concurrent_run_is_refused(tmp_path):
  d = str(tmp_path / "w")
  with wd.open_workdir(d, CFG):
    with pytest.raises(wd.RunError, match="another run is using this workdir"):
      with wd.open_workdir(d, CFG):
        pass
  with wd.open_workdir(d, CFG):   # released with the first run
    pass


def test_files_get_umask_modes(tmp_path):
  d = str(tmp_path / "w")
  old = os.umask(0o022)
  try:
    with wd.open_workdir(d, CFG):
      pass
  finally:
    os.umask(old)
  assert os.stat(os.path.join(d, "config.json")).st_mode & 0o777 == 0o644


def test_second_process_is_refused_while_a_run_holds_the_workdir(tmp_path):
  """The lock holds across processes (and dies with its holder)."""
  import subprocess
  import sys
  import time
  d = str(tmp_path / "w")
  code = ("import sys, time; from mmdd_jax import workdir as wd\n"
          f"with wd.open_workdir({d!r}, {CFG!r}):\n"
          "  print('locked', flush=True); time.sleep(60)\n")
  p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
  try:
    assert p.stdout.readline().strip() == "locked"
    with pytest.raises(wd.RunError, match=rf"{d}: another run is using this workdir \(pid {p.pid}"):
      with wd.open_workdir(d, CFG):
        pass
  finally:
    p.kill()
    p.wait()
  time.sleep(0.1)
  with wd.open_workdir(d, CFG):   # a killed holder leaves no stale lock
    pass
