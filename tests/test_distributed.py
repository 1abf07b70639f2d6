"""Multi-process runs (mmdd_jax.distributed) and the row-per-job sweep.

The 2-process tests launch ``tests/distributed_worker.py`` on this machine: two
processes of one CPU device each (loopback coordinator on a free port, gloo collectives)
and, beside them, the reference — one process on two fake CPU devices, the same 2-device
mesh. HoPA (experts sharded over the processes, distillation with
``trajectories_per_iter=2``: the two segments split over the processes, evaluation) and
ImageBindDC (classes sharded over the processes) must give **bit-identical** results
and outputs (same arithmetic on the same mesh; the cross-process all-reduce sums two
values in the same order), and only process 0 may write the workdir. Every subprocess
runs under a timeout, so a hung collective fails the test instead of hanging CI.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmdd_jax import distributed, workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "distributed_worker.py")
TIMEOUT_S = 420   # the whole group; a healthy run takes well under a minute on 2 idle cores


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env():
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", distributed.ENV_ADDRESS, distributed.ENV_NUM, distributed.ENV_ID)
         and not k.startswith(("SLURM_", "OMPI_"))}
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_PLATFORMS"] = "cpu"
  return env


def _run_all(cmds, logs, timeout=TIMEOUT_S):
  """Starts every command, waits for all within ``timeout`` (killing all on expiry);
  returns the exit codes."""
  procs = []
  for cmd, log in zip(cmds, logs):
    f = open(log, "w")
    procs.append((subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(),
                                   cwd=ROOT, start_new_session=True), f))
  codes = []
  try:
    for p, _ in procs:
      codes.append(p.wait(timeout=timeout))
  except subprocess.TimeoutExpired:
    for p, _ in procs:
      if p.poll() is None:
        p.kill()
    pytest.fail(f"a process did not finish within {timeout} s (hung collective?); logs: {logs}")
  finally:
    for p, f in procs:
      if p.poll() is None:
        p.kill()
      f.close()
  return codes


def _tail(path, n=25):
  with open(path) as f:
    return "".join(f.readlines()[-n:])


@pytest.fixture(scope="module")
def two_process_runs(tiny_store, tiny_cls_store, tmp_path_factory):
  d = tmp_path_factory.mktemp("dist")
  port = _free_port()
  addr = f"127.0.0.1:{port}"
  common = [sys.executable, WORKER]
  stores = [tiny_store.root, tiny_cls_store.root]
  cmds = [common + [str(d / "one"), *stores, str(d / "out1")],
          common + [str(d / "two"), *stores, str(d / "out2"), addr, "2", "0"],
          common + [str(d / "two"), *stores, str(d / "out2"), addr, "2", "1"]]
  logs = [str(d / f"{n}.log") for n in ("one", "p0", "p1")]
  codes = _run_all(cmds, logs)
  for code, log in zip(codes, logs):
    assert code == 0, f"{log} (exit {code}):\n{_tail(log)}"
  read = lambda p: json.load(open(p))
  return {"one": read(d / "out1" / "0.json"), "p0": read(d / "out2" / "0.json"),
          "p1": read(d / "out2" / "1.json"), "dir": d}


@pytest.mark.slow
def test_two_processes_equal_one_process(two_process_runs):
  one, p0, p1 = (two_process_runs[k] for k in ("one", "p0", "p1"))
  assert one["process_count"] == 1 and p0["process_count"] == p1["process_count"] == 2
  assert (p0["process_index"], p1["process_index"]) == (0, 1)
  for task in ("hopa", "bindc"):
    assert p0[task] == p1[task], task                # every process holds the same result
    assert p0[task] == one[task], task               # bit-identical to one process
  # the experts really were sharded and the run really used two segments per iteration
  hopa = two_process_runs["dir"] / "two" / "hopa"
  recs = [json.loads(l) for l in open(hopa / "metrics.jsonl")]
  dist = [r for r in recs if r.get("stage") == "distill"]
  assert dist and all(len(r["expert"]) == 2 and len(r["start"]) == 2 for r in dist)
  assert [len(r["loss"]) for r in recs if r.get("stage") == "experts"] == [2, 2]


@pytest.mark.slow
def test_only_process_0_writes(two_process_runs):
  # Process 1's only writes are its part of Orbax's multi-process checkpoint protocol.
  others = [w for w in two_process_runs["p1"]["writes"]
            if not w.endswith("/array_metadatas/process_1")]
  assert others == []
  assert two_process_runs["p1"]["writes"]          # (the recorder did see them)
  for task in ("hopa", "bindc"):
    assert any(w.startswith(f"{task}/results.json") or w == f"{task}/results.json"
               for w in two_process_runs["p0"]["writes"])
  # and the workdir is the same as a one-process run's (a rerun reads it: finished)
  one, two = two_process_runs["dir"] / "one", two_process_runs["dir"] / "two"
  for task in ("hopa", "bindc"):
    a, b = json.load(open(one / task / "config.json")), json.load(open(two / task / "config.json"))
    assert a["fingerprint"] == b["fingerprint"]  # the topology is not part of the binding


@pytest.mark.slow
def test_row_per_job_sweep_shares_experts(tiny_store, tmp_path):
  """Two independent sweep jobs (only=1/2, only=2/2) run disjoint rows at the same time
  against one shared experts directory: one trains the experts, the other waits on its
  lock and reads them; the merge step (sweep.cells) sees every row."""
  sys.path.insert(0, os.path.join(ROOT, "tests"))
  import distributed_worker
  from hopa_jax import sweep
  wd = str(tmp_path / "sweep")
  cmds = [[sys.executable, WORKER, "--sweep", wd, tiny_store.root, f"{k}/2"] for k in (1, 2)]
  logs = [str(tmp_path / f"job{k}.log") for k in (1, 2)]
  codes = _run_all(cmds, logs)
  for code, log in zip(codes, logs):
    assert code == 0, f"{log} (exit {code}):\n{_tail(log)}"
  c = distributed_worker.sweep_config(tiny_store.root)
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
