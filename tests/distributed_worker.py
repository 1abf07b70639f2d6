"""One process of the 2-process tests (:mod:`tests.test_distributed`).

  python tests/distributed_worker.py [--kill] BASE HOPA_STORE BINDC_STORE OUT [ADDRESS NUM ID]
  python tests/distributed_worker.py --sweep WORKDIR STORE K/N

Runs, in ``BASE/hopa``, one HoPA run (experts + distillation with
``trajectories_per_iter=2`` + the ``select`` evaluation, whose lr grid and runs are
sharded) and, in ``BASE/bindc``, one ImageBindDC run (its evaluation runs sharded);
then one ``paper``-protocol HoPA evaluation (:func:`hopa_jax.evaluate.evaluate_set`,
two sharded runs). Without ADDRESS the process runs alone on two fake CPU devices (the
reference: the same mesh as two processes of one device each). Every file this process
creates, replaces or opens for writing under BASE is recorded (Python-level writes);
the record, the results rows and digests of the outputs go to ``OUT/<id>.json``.

``--kill``: only the HoPA run, and process :data:`KILLED_ID` dies
(``os._exit(KILLED_EXIT)``, no cleanup) as the distillation starts, i.e. after the
experts stage is saved; it writes its record first. The other process is then left
to the launcher (the test kills it), as a job launcher would.

``--sweep``: one job of a row-per-job sweep (:func:`sweep_config`, ``only=K/N``), a
single process; it prints the rows it ran.
"""

import builtins
import hashlib
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
KILLED_ID = 1
KILLED_EXIT = 75


def sweep_config(store):
  """A tiny sweep whose two distilled rows share one experts directory."""
  from experiments.configs import sweep as sweep_cfg
  c = sweep_cfg.get_config()
  c.base.update_from_flattened_dict({"dataset": store, "local": True, "progress": False,
                                     "experts.lr": 0.1, "eval.protocol": "paper",
                                     "eval.epochs": 1, "eval.runs": 1,
                                     "distill.max_start_epoch": 1})
  c.datasets = (store,)
  c.phases = ("all/8/main/cpu/0",)
  c.method_sets.main = ("hopa", "no_mining")
  c.common_objective = "hopa"     # the common view is each row's own: no re-evaluation
  c.budgets.cpu.update(dict(num_experts=2, expert_epochs=2, iterations=1.0, syn_steps=2,
                            eval_runs=1))
  return c


def sweep_job(workdir, store, only):
  os.environ["JAX_PLATFORMS"] = "cpu"
  import jax
  _compilation_cache(jax)
  from hopa_jax import sweep
  c = sweep_config(store)
  c.only = only
  sweep.run_sweep(c, workdir, log=lambda line: print(line, flush=True))
  print(f"cpu_s {time.process_time():.1f}", flush=True)


def main(argv):
  if argv[1] == "--sweep":
    return sweep_job(*argv[2:5])
  kill = argv[1] == "--kill"
  if kill:
    argv = argv[1:]
  base, hopa_store, bindc_store, out = argv[1:5]
  base = os.path.abspath(base)
  if len(argv) > 5:
    addr, num, pid = argv[5], int(argv[6]), int(argv[7])
  else:
    addr, num, pid = None, 1, 0
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
  os.environ["JAX_PLATFORMS"] = "cpu"
  from mmdd_jax import distributed
  distributed.initialize(addr, num, pid, timeout_s=120)
  import jax
  jax.config.update("jax_numpy_rank_promotion", "raise")
  _compilation_cache(jax)
  assert jax.device_count() == 2, jax.devices()

  writes = []
  _record_writes(base, writes)
  rec = {"process_count": jax.process_count(), "process_index": jax.process_index()}

  def dump():
    rec["writes"] = sorted(set(writes))
    rec["cpu_s"] = time.process_time()   # (the test reports it, for the suite's budget)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{pid}.json"), "w") as f:
      json.dump(rec, f)

  if kill:
    from hopa_jax import distill
    real = distill.distill

    def dying(*a, **k):
      if jax.process_index() == KILLED_ID:
        dump()
        os._exit(KILLED_EXIT)
      return real(*a, **k)
    distill.distill = dying
    _hopa(os.path.join(base, "hopa"), hopa_store)
    raise AssertionError("the killed run went on past the distillation")
  for task, fn, store in (("hopa", _hopa, hopa_store), ("bindc", _bindc, bindc_store)):
    rows, digests = fn(os.path.join(base, task), store)
    rec[task] = {"rows": [_numbers(r) for r in rows], "digests": digests}
  rec["paper_eval"] = _paper_eval(hopa_store)
  dump()


def _compilation_cache(jax):
  """``$MMDD_TEST_COMPILATION_CACHE``: a persistent compilation cache shared by the
  test's processes (programs this process compiles more than once, e.g. a jit rebuilt per
  call, and those another process compiled before, come from it: same executables).
  (``jax_share_binary_between_hosts``, process 0 handing its executables to the others,
  hung a 2-process run here on 2026-12-01: not used.)"""
  d = os.environ.get("MMDD_TEST_COMPILATION_CACHE")
  if d:
    jax.config.update("jax_compilation_cache_dir", d)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def _record_writes(workdir, writes):
  """Records paths under ``workdir`` this process writes (Python-level writes)."""
  def note(p):
    p = os.path.abspath(os.fspath(p))
    if p.startswith(workdir):
      writes.append(os.path.relpath(p, workdir))

  real_open = builtins.open

  def open_(file, mode="r", *a, **k):
    if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
      note(file)
    return real_open(file, mode, *a, **k)
  builtins.open = open_
  for name in ("replace", "rename", "mkdir", "makedirs"):
    real = getattr(os, name)

    def wrapped(*a, _real=real, _name=name, **k):
      note(a[1] if _name in ("replace", "rename") else a[0])
      return _real(*a, **k)
    setattr(os, name, wrapped)


def _numbers(row):
  keep = ("method", "n_syn", "avg", "retrieval", "accuracy", "accuracy_std", "learned_lr", "head")
  return {k: row.get(k) for k in keep if k in row}


def _digest(arrays):
  import numpy as np
  h = hashlib.sha256()
  for k in sorted(arrays):
    h.update(k.encode())
    h.update(np.ascontiguousarray(np.asarray(arrays[k])).tobytes())
  return h.hexdigest()


def _hopa(workdir, store):
  import numpy as np
  from experiments.configs import hopa as hopa_config
  from hopa_jax import run
  from mmdd_jax import distributed
  c = hopa_config.get_config(f"dataset={store},local=1,n=8")
  c.update_from_flattened_dict({
      "progress": False, "experts.lr": 0.1, "experts.epochs": 2, "distill.trajectories_per_iter": 2,
      "distill.max_start_epoch": 1, "distill.iterations": 2, "distill.syn_steps": 2,
      "eval.protocol": "select", "eval.lrs": (0.01, 0.1), "eval.max_epochs": 2, "eval.runs": 2})
  rows = run.train_and_evaluate(c, workdir)
  from hopa_jax import experts as ex
  edir = os.path.join(workdir, "experts")
  like = None
  import jax
  from embed import store as store_lib
  digests = {}
  # the trajectories every process reads back, and the distilled store (the writer's)
  from mmdd_jax import data
  st = store_lib.Store(store)
  p0 = __import__("mmdd_jax.heads", fromlist=["x"]).pretrained_heads(st, st.modalities)
  cfg = run.experts_config(c, 0.1)
  p_init, _ = ex.init_experts(jax.random.key(0), p0, cfg)
  like = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), p_init)
  traj = ex.load_trajectories(edir, like, cfg.epochs)
  digests["experts"] = _digest({jax.tree_util.keystr(p): v for p, v in
                                jax.tree_util.tree_leaves_with_path(traj)})
  distributed.barrier("read")
  dst = store_lib.Store(os.path.join(workdir, "distilled"))
  digests["distilled"] = _digest({m: np.asarray(dst.features("train", m)) for m in dst.modalities})
  return rows, digests


def _bindc(workdir, store):
  import numpy as np
  from bindc_jax import run
  from embed import store as store_lib
  from experiments.configs import bindc as bindc_config
  c = bindc_config.get_config(f"dataset={store},local=1")
  c.ipc = 1
  c.progress = False
  c.select.enabled = False
  c.distill.iterations, c.log_every, c.eval.runs, c.eval.epochs = 4, 2, 2, 1
  rows = run.train_and_evaluate(c, workdir)
  dst = store_lib.Store(os.path.join(workdir, "distilled"))
  return rows, {"distilled": _digest({m: np.asarray(dst.embeddings("train", m))
                                      for m in dst.modalities})}


def _paper_eval(store):
  """The ``paper`` protocol (fixed epochs, no validation): two runs, sharded."""
  import jax
  from embed import store as store_lib
  from hopa_jax import evaluate as ev
  from mmdd_jax import data, heads
  st = store_lib.Store(store)
  p0 = heads.pretrained_heads(st, st.modalities)
  xs = {m: v[:8] for m, v in data.load_split(st, "train", "features", st.modalities).items()}
  test = data.load_split(st, "test", "features", st.modalities)
  cfg = ev.EvalConfig(protocol="paper", runs=2, epochs=2, batch_size=4)
  out = ev.evaluate_set(jax.random.key(3), p0, xs, test, cfg, learned_lr=0.05)
  return {"runs": out["runs"], "lr": out["lr"]}


if __name__ == "__main__":
  main(sys.argv)
