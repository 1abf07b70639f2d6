"""Multi-process runs (mmdd_jax.distributed) and the row-per-job sweep.

One shared launch (:func:`launch`) runs every subprocess these tests read, at once where
they are independent, on small stores (the simulator's shapes with feature and embedding
dimensions cut to tens: the checks are equalities between topologies, not numbers):

* the **reference**: ``tests/distributed_worker.py`` alone on two fake CPU devices (the
  same 2-device mesh as two processes of one device each), uninterrupted;
* a **killed** 2-process run (loopback coordinator on a free port, gloo collectives):
  HoPA's experts are trained sharded over the two processes and saved, then process 1
  dies as the distillation starts and the test kills process 0, as a launcher would;
* the **resumed** 2-process run in the same workdir: HoPA resumes (the experts are read,
  not retrained; distillation with ``trajectories_per_iter=2``: the two segments split
  over the processes; the evaluation's lr grid and runs sharded), then ImageBindDC
  (classes and evaluation runs sharded) and a ``paper``-protocol evaluation;
* two independent single-process **sweep jobs** (``only=1/2``, ``only=2/2``).

The resumed run must give **bit-identical** results and outputs to the uninterrupted
reference (same arithmetic on the same mesh; the cross-process all-reduce sums two
values in the same order), and only process 0 may write the workdir, in the killed run
and in the resumed one. Every subprocess runs under a timeout, so a hung collective
fails the test instead of hanging CI. Cost: the subprocesses spend most of their time
compiling; they share one persistent compilation cache (a program compiled twice comes
from it the second time — the same executable), and the killed run's experts are the
resumed run's, so the kill and resume add one short launch.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmdd_jax import distributed, workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "distributed_worker.py")
sys.path.insert(0, os.path.join(ROOT, "tests"))
import distributed_worker  # noqa: E402

TIMEOUT_S = 480   # the whole launch; a healthy one takes about a minute on 2 idle cores
GRACE_S = 5       # how long process 0 may outlive the killed process 1 before it is killed


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(cache=None):
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", distributed.ENV_ADDRESS, distributed.ENV_NUM, distributed.ENV_ID)
         and not k.startswith(("SLURM_", "OMPI_"))}
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_PLATFORMS"] = "cpu"
  env.pop("MMDD_TEST_COMPILATION_CACHE", None)
  if cache:
    env["MMDD_TEST_COMPILATION_CACHE"] = str(cache)
  return env


class _Group:
  """Subprocesses started together, each logging to its own file, under one deadline."""

  def __init__(self, deadline, cache=None):
    self.deadline, self.procs, self.cache = deadline, {}, cache

  def start(self, name, cmd, log):
    f = open(log, "w")
    self.procs[name] = (subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                         env=_env(self.cache),
                                         cwd=ROOT, start_new_session=True), f, log)

  def wait(self, name):
    p, f, log = self.procs[name]
    try:
      return p.wait(timeout=max(1.0, self.deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      self.kill_all()
      pytest.fail(f"{name} did not finish within {TIMEOUT_S} s (hung collective?); "
                  f"log {log}:\n{_tail(log)}")
    finally:
      if p.poll() is not None:
        f.close()

  def kill(self, name):
    p, f, _ = self.procs[name]
    if p.poll() is None:
      os.killpg(p.pid, signal.SIGKILL)
    code = p.wait()
    f.close()
    return code

  def kill_all(self):
    for name in self.procs:
      self.kill(name)


def _tail(path, n=25):
  with open(path) as f:
    return "".join(f.readlines()[-n:])


def _small_store(dataset, out):
  """The simulator's store at scale 0.02 with feature/embedding dims cut to tens."""
  from embed import simulate
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(simulate, "EMBED_DIM", 64)
    mp.setattr(simulate, "FEATURE_DIMS", {"vision": 40, "audio": 24, "text": 32, "depth": 16})
    return simulate.simulate(dataset, str(out), scale=0.02, seed=0)


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
  d = tmp_path_factory.mktemp("dist")
  hopa_store = _small_store("msrvtt_sim", d / "stores" / "msrvtt")
  cls_store = _small_store("vggs10k_sim", d / "stores" / "vggs10k")
  stores = [hopa_store.root, cls_store.root]
  w = [sys.executable, WORKER]
  pair = lambda args, port: [w + args + [f"127.0.0.1:{port}", "2", str(i)] for i in (0, 1)]
  # One persistent compilation cache for the launch: most of a worker's time is XLA
  # compiling, and a program compiled twice (a jit rebuilt per call, the same program in
  # another process) comes from it the second time — the same executable, so the same
  # numbers; it only saves time.
  g = _Group(time.monotonic() + TIMEOUT_S, cache=d / "compilation_cache")
  log = lambda n: str(d / f"{n}.log")
  g.start("one", w + [str(d / "one"), *stores, str(d / "out1")], log("one"))
  for k in (1, 2):
    g.start(f"job{k}", w + ["--sweep", str(d / "sweep"), hopa_store.root, f"{k}/2"], log(f"job{k}"))
  port = _free_port()
  for i, cmd in enumerate(pair(["--kill", str(d / "two"), *stores, str(d / "killed")], port)):
    g.start(f"kill{i}", cmd, log(f"kill{i}"))
  try:
    codes = {"kill1": g.wait("kill1")}
    if codes["kill1"] != distributed_worker.KILLED_EXIT:
      pytest.fail(f"kill1: expected exit {distributed_worker.KILLED_EXIT} (killed as the "
                  f"distillation starts), found {codes['kill1']}:\n{_tail(log('kill1'))}\n"
                  f"kill0:\n{_tail(log('kill0'))}")
    t = time.monotonic()
    while g.procs["kill0"][0].poll() is None and time.monotonic() - t < GRACE_S:
      time.sleep(0.2)
    codes["kill0"] = g.kill("kill0")
    killed = {"hopa": sorted(os.listdir(d / "two" / "hopa")),
              "experts": sorted(os.listdir(d / "two" / "hopa" / "experts"))}
    port = _free_port()
    for i, cmd in enumerate(pair([str(d / "two"), *stores, str(d / "out2")], port)):
      g.start(f"p{i}", cmd, log(f"p{i}"))
    for name in ("one", "p0", "p1", "job1", "job2"):
      codes[name] = g.wait(name)
  finally:
    g.kill_all()
  for name in ("one", "p0", "p1", "job1", "job2"):
    assert codes[name] == 0, f"{name} (exit {codes[name]}):\n{_tail(log(name))}"
  read = lambda p: json.load(open(p))
  return {"one": read(d / "out1" / "0.json"), "p0": read(d / "out2" / "0.json"),
          "p1": read(d / "out2" / "1.json"), "killed_p1": read(d / "killed" / "1.json"),
          "codes": codes, "killed": killed, "dir": d, "store": hopa_store.root,
          "logs": {k: log(k) for k in ("job1", "job2", "p0", "p1")}}


@pytest.mark.slow
def test_two_processes_equal_one_process(launch):
  one, p0, p1 = (launch[k] for k in ("one", "p0", "p1"))
  assert one["process_count"] == 1 and p0["process_count"] == p1["process_count"] == 2
  assert (p0["process_index"], p1["process_index"]) == (0, 1)
  for task in ("hopa", "bindc", "paper_eval"):
    assert p0[task] == p1[task], task                # every process holds the same result
    assert p0[task] == one[task], task               # bit-identical to one process
  # the experts really were sharded and the run really used two segments per iteration
  hopa = launch["dir"] / "two" / "hopa"
  recs = [json.loads(l) for l in open(hopa / "metrics.jsonl")]
  dist = [r for r in recs if r.get("stage") == "distill"]
  assert dist and all(len(r["expert"]) == 2 and len(r["start"]) == 2 for r in dist)
  assert [len(r["loss"]) for r in recs if r.get("stage") == "experts"] == [2, 2]
  # the evaluations ran (and were sharded: two runs, a two-lr grid, over two devices)
  res = json.load(open(hopa / "results.json"))[0]
  assert res["runs"] == 2 and len(res["eval"]["lr_grid"]) == 2
  assert len(p0["paper_eval"]["runs"]) == 2 and p0["paper_eval"]["runs"][0] != p0["paper_eval"]["runs"][1]
  bindc = json.load(open(launch["dir"] / "two" / "bindc" / "results.json"))
  assert all(r["runs"] == 2 for r in bindc)


@pytest.mark.slow
def test_killed_process_leaves_the_workdir_resumable(launch):
  """Process 1 died after the experts were saved (process 0 then killed): no result, the
  experts complete; the rerun with two processes resumed without retraining the experts
  and gave the uninterrupted run's results (:func:`test_two_processes_equal_one_process`
  compares the rows and digests)."""
  assert launch["codes"]["kill1"] == distributed_worker.KILLED_EXIT
  assert launch["codes"]["kill0"] != 0
  assert "results.json" not in launch["killed"]["hopa"] and "distilled" not in launch["killed"]["hopa"]
  assert "expert_config.json" in launch["killed"]["experts"]
  assert {"0", "1", "2"} <= set(launch["killed"]["experts"])      # epochs 0 (initial), 1, 2
  hopa = launch["dir"] / "two" / "hopa"
  recs = [json.loads(l) for l in open(hopa / "metrics.jsonl")]
  assert [r["step"] for r in recs if r.get("stage") == "experts"] == [1, 2]  # once each
  assert [r["step"] for r in recs if r.get("stage") == "distill"] == [2]   # log_every ≥ 2
  assert sum(r.get("stage") == "result" for r in recs) == 1
  # the experts were read, not retrained: the resumed run wrote no experts checkpoint
  assert not any(w.startswith("hopa/experts/") for w in launch["p0"]["writes"])
  assert launch["p0"]["hopa"] == launch["one"]["hopa"]


def _not_orbax(writes):
  """Writes other than a process's part of Orbax's multi-process checkpoint protocol."""
  return [w for w in writes if not w.endswith("/array_metadatas/process_1")]


@pytest.mark.slow
def test_only_process_0_writes(launch):
  for rec in (launch["killed_p1"], launch["p1"]):
    assert rec["writes"] and _not_orbax(rec["writes"]) == []    # (the recorder did see them)
  for task in ("hopa", "bindc"):
    assert f"{task}/results.json" in launch["p0"]["writes"]
  # and the workdir is bound as a one-process run's (a rerun reads it: finished)
  one, two = launch["dir"] / "one", launch["dir"] / "two"
  for task in ("hopa", "bindc"):
    a, b = json.load(open(one / task / "config.json")), json.load(open(two / task / "config.json"))
    assert a["fingerprint"] == b["fingerprint"]  # the topology is not part of the binding


@pytest.mark.slow
def test_row_per_job_sweep_shares_experts(launch):
  """Two independent sweep jobs (only=1/2, only=2/2) ran disjoint rows at the same time
  against one shared experts directory: one trained the experts, the other waited on its
  lock and read them; the merge step (sweep.cells) sees every row."""
  from hopa_jax import sweep
  wd = str(launch["dir"] / "sweep")
  logs = [launch["logs"][k] for k in ("job1", "job2")]
  c = distributed_worker.sweep_config(launch["store"])
  rows = [r for r in sweep.plan(c) if r.kind == "train"]
  ran = [[r.path for r in rows if f"running in {os.path.join(wd, r.path)}" in open(log).read()]
         for log in logs]
  assert sorted(ran[0] + ran[1]) == sorted(r.path for r in rows) and not set(ran[0]) & set(ran[1])
  assert all(len(x) == 1 for x in ran)
  # one experts directory for both rows, trained once (its records are in one row only)
  assert len({sweep.experts_dir(wd, r) for r in rows}) == 1
  trained = [any(json.loads(l).get("stage") == "experts"
                 for l in open(os.path.join(wd, r.path, "metrics.jsonl"))) for r in rows]
  assert sorted(trained) == [False, True]
  cells = sweep.cells(c, wd)
  assert len(cells) == len(sweep.plan(c)) and all(x["avg_r1"] is not None for x in cells)


# --- in-process: topology, the writer helpers alone, trajectories_per_iter ---

def test_topology_resolution():
  assert distributed.resolve(env={}) is None
  assert distributed.resolve(num_processes=1, env={}) is None
  t = distributed.resolve("h:1", 2, 1, env={})
  assert t == {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1}
  env = {distributed.ENV_ADDRESS: "h:2", distributed.ENV_NUM: "4", distributed.ENV_ID: "3"}
  assert distributed.resolve(env=env)["process_id"] == 3
  with pytest.raises(ValueError, match="--process_id.*expected the whole"):
    distributed.resolve("h:1", 2, env={})
  with pytest.raises(ValueError, match="--process_id: expected 0 ≤ id < 2"):
    distributed.resolve("h:1", 2, 2, env={})
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES: expected an integer"):
    distributed.resolve(env={distributed.ENV_NUM: "two"})


def test_cluster_detection(monkeypatch):
  for k in ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE", "SLURM_JOB_ID", "SLURM_NTASKS"):
    monkeypatch.delenv(k, raising=False)
  assert distributed.resolve(env={}) is None
  monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
  assert distributed.resolve(env={}) is None          # one task: no distributed runtime
  monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
  assert distributed.resolve(env={}) == {}            # JAX detects the rest


def test_single_process_helpers_are_plain():
  assert distributed.process_count() == 1 and distributed.is_writer()
  distributed.barrier("nothing")
  assert distributed.on_writer(lambda: 3) == 3
  with pytest.raises(OSError):
    distributed.on_writer(lambda: (_ for _ in ()).throw(OSError("disk full")))
  x = np.arange(6.0).reshape(3, 2)
  np.testing.assert_array_equal(distributed.to_host({"x": jnp.asarray(x)})["x"], x)


def test_trajectories_per_iter_default_is_out_of_the_fingerprint():
  from experiments.configs import hopa as hopa_config
  c = hopa_config.get_config("local=1")
  assert c.distill.trajectories_per_iter == 1
  old = c.to_dict()
  del old["distill"]["trajectories_per_iter"]          # a workdir made before the key
  assert workdir.fingerprint(c) == workdir.fingerprint(old)
  c.distill.trajectories_per_iter = 2
  assert workdir.fingerprint(c) != workdir.fingerprint(old)
  assert workdir.differing_keys(old, c.to_dict()) == ["distill.trajectories_per_iter"]


def test_trajectories_per_iter_averages_segments(key):
  """K = 2: the loss and the update are those of the mean of the two segments' matching
  losses, each segment drawn from split(stream, 2) of the iteration's streams; K = 1 is
  the single-segment step unchanged (the fixed-seed tests of hopa_jax.distill)."""
  from hopa_jax import distill as dl
  from mmdd_jax import rng
  r = np.random.default_rng(0)
  dims = {"audio": 6, "text": 5}
  syn = {m: r.normal(size=(8, d)).astype(np.float32) for m, d in dims.items()}
  from mmdd_jax import heads as heads_lib
  p0 = heads_lib.init_heads(jax.random.key(1), dims, out_dim=4)
  traj = jax.tree_util.tree_map(   # 3 experts × 4 snapshots around the heads
      lambda a: a[None, None] + 0.1 * jnp.asarray(r.normal(size=(3, 4, *a.shape)), jnp.float32),
      p0)
  cfg2 = dl.DistillConfig(n=8, objective="infonce", sim_kind="fixed", syn_steps=2, mini_batch=4,
                          expert_epochs=1, max_start_epoch=2, iterations=1,
                          trajectories_per_iter=2)
  state = dl.init_state(key, cfg2, syn, 0.01)
  new, m = dl.make_distill_step(cfg2)(jax.tree_util.tree_map(jnp.copy, state), traj)
  # by hand: each segment with keys split from the iteration's streams
  k = jax.random.fold_in(rng.wrap(state.key), state.step)
  ks = [jax.random.split(rng.stream(k, s), 2) for s in ("segment", "batches", "blend")]
  lag = jax.jit(dl.make_loss_and_grads(cfg2))
  losses, grads = [], []
  for i in range(2):
    th0, ths, e, s = dl.sample_segment(ks[0][i], traj, cfg2)
    idxs = dl.batch_indices(ks[1][i], 8, 2, 4)
    lo, g = lag(th0, ths, state.syn, state.log_lr, state.sim, idxs,
                jax.random.split(ks[2][i], 2))
    assert int(m["expert"][i]) == int(e) and int(m["start"][i]) == int(s)
    losses.append(lo)
    grads.append(g)
  np.testing.assert_allclose(float(m["loss"]), float(np.mean(losses)), rtol=1e-6)
  g_mean = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, *grads)
  np.testing.assert_allclose(float(m["grad_syn"]),
                             float(jnp.sqrt(sum(jnp.sum(v ** 2) for v in g_mean[0].values()))),
                             rtol=1e-5)


def test_table_writers_write_on_the_writer_only(tmp_path, monkeypatch):
  """hopa_jax.table, bindc_jax.tables and the sweep's merge step, run as process 1 of 2
  (the distributed runtime simulated: process 0 reported no error), write nothing; as
  the writer they write their files."""
  from bindc_jax import tables as bindc_tables
  from hopa_jax import cross_arch, sweep, table
  from mmdd_jax import results
  run = {"a→b": {"R@1": 10.0, "R@5": 30.0, "R@10": 50.0}}
  rows = [results.make_results(dataset="d", method="hopa", n_syn=8, config={},
                               retrieval_runs=[run], time_s={"eval": 1.0})]
  sc = distributed_worker.sweep_config("unused")

  def write_all(d):
    table.write_table(str(d / "hopa"), rows, "t")
    bindc_tables.write_tables(str(d / "bindc"), "reduced")
    sweep.write_outputs(sc, str(d / "sweep"), sweep.plan(sc))
    (d / "xa").mkdir()
    cross_arch.write_table(str(d / "xa"), [], heads=["linear_pretrained"], rows=["distilled"])
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())

  (tmp_path / "writer" / "hopa").mkdir(parents=True)
  wrote = write_all(tmp_path / "writer")
  assert {"hopa/table.md", "hopa/table.json", "hopa/avg_r1.png", "bindc/tables.md",
          "sweep/results_cells.json", "xa/table.md", "xa/table.json"} <= set(wrote)
  monkeypatch.setattr(distributed, "process_count", lambda: 2)
  monkeypatch.setattr(distributed, "process_index", lambda: 1)
  monkeypatch.setattr(distributed, "broadcast", lambda v: np.zeros_like(np.asarray(v)))
  (tmp_path / "other" / "hopa").mkdir(parents=True)
  assert write_all(tmp_path / "other") == []
