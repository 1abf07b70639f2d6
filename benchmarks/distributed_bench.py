r"""Multi-process throughput: the experts and HoPA's ``trajectories_per_iter`` > 1 with
1 and with 2 processes (``jax.distributed``, loopback coordinator, CPU devices, gloo),
measured in the same run and printed as a ratio.

  python benchmarks/distributed_bench.py            # E=8 experts, K=4 segments
  python benchmarks/distributed_bench.py --quick    # smaller, about a minute on a CPU

Each configuration is launched as fresh processes (1 process of 1 device; then 2
processes of 1 device each, one global mesh); every process runs the library's own jitted
programs on the global mesh — one epoch of every expert (``hopa_jax.experts.make_epoch_fn``,
experts sharded over the mesh, as ``train_experts`` does) and one distillation iteration
(``hopa_jax.distill.make_distill_step`` with ``trajectories_per_iter=K``, segments split
over the mesh, as ``distill`` does) — on random data at the given shapes, times
``--reps`` calls after one warm-up (compile excluded) and reports the mean wall time
(and process 0's CPU time: on a machine shared with other jobs, two processes can get
more of its cores than one, which the wall-time ratio then includes). Checkpoints,
metrics and evaluation are not timed. Throughput: expert-epochs/s and segments/s.

On one machine the two processes share its cores (XLA's CPU backend already runs one
process's ops on several threads), so the ratio measures the cost of the multi-process
machinery here, not the scaling across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def worker(args) -> None:
  from mmdd_jax import distributed
  distributed.initialize(args.address, args.num, args.pid, timeout_s=120)
  import jax
  import jax.numpy as jnp
  import numpy as np
  from hopa_jax import distill as dl
  from hopa_jax import experts as ex
  from mmdd_jax import heads as heads_lib, sharding

  dims = {"vision": args.dim, "audio": args.dim, "text": args.dim}
  r = np.random.default_rng(0)
  xs = {m: r.normal(size=(args.rows, d)).astype(np.float32) for m, d in dims.items()}
  p0 = heads_lib.init_heads(jax.random.key(0), dims, out_dim=args.out)
  out = {"process_count": jax.process_count(), "devices": jax.device_count(),
         "platform": jax.devices()[0].platform}

  # experts: one epoch of every expert, experts sharded over the global mesh
  ecfg = ex.ExpertConfig(num_experts=args.experts, epochs=1, lr=0.1, batch_size=args.batch)
  params, keys = ex.init_experts(jax.random.key(1), p0, ecfg)
  params = sharding.shard_leading(params)
  data = sharding.replicate({m: jnp.asarray(v) for m, v in xs.items()})
  lrs = jnp.full((args.experts,), 0.1, jnp.float32)
  fn = ex.make_epoch_fn(ecfg, args.rows)
  params, loss = fn(params, keys, data, jnp.asarray(0, jnp.int32), lrs)
  jax.block_until_ready(loss)
  t0, c0 = time.perf_counter(), time.process_time()
  for t in range(args.reps):
    params, loss = fn(params, keys, data, jnp.asarray(t + 1, jnp.int32), lrs)
  jax.block_until_ready(loss)
  out["experts_s_per_epoch"] = (time.perf_counter() - t0) / args.reps
  out["experts_cpu_s_per_epoch"] = (time.process_time() - c0) / args.reps
  out["expert_epochs_per_s"] = args.experts / out["experts_s_per_epoch"]

  # distillation: K segments per iteration, split over the global mesh
  snaps = 4
  traj = jax.tree_util.tree_map(
      lambda a: a[None, None] + 0.01 * jnp.asarray(
          r.normal(size=(args.experts, snaps, *a.shape)), jnp.float32), p0)
  cfg = dl.DistillConfig(n=args.n, objective="hopa", sim_kind="lowrank", sim_rank=4,
                         syn_steps=args.syn_steps, mini_batch=args.mini_batch,
                         expert_epochs=2, max_start_epoch=2, iterations=1,
                         trajectories_per_iter=args.segments)
  state = dl.init_state(jax.random.key(2), cfg, {m: v[: args.n] for m, v in xs.items()}, 0.01)
  state, traj = sharding.replicate(state), sharding.replicate(traj)
  step = dl.make_distill_step(cfg)
  state, m = step(state, traj)
  jax.block_until_ready(m["loss"])
  t0, c0 = time.perf_counter(), time.process_time()
  for _ in range(args.reps):
    state, m = step(state, traj)
  jax.block_until_ready(m["loss"])
  out["distill_s_per_iter"] = (time.perf_counter() - t0) / args.reps
  out["distill_cpu_s_per_iter"] = (time.process_time() - c0) / args.reps
  out["segments_per_s"] = args.segments / out["distill_s_per_iter"]
  if distributed.is_writer():
    with open(args.out_json, "w") as f:
      json.dump(out, f)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(num: int, args, tmp: str) -> dict:
  out_json = os.path.join(tmp, f"p{num}.json")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = env.get("JAX_PLATFORMS", "cpu")
  addr = f"127.0.0.1:{_free_port()}"
  shape = ["--experts", str(args.experts), "--segments", str(args.segments), "--rows",
           str(args.rows), "--dim", str(args.dim), "--out", str(args.out), "--batch",
           str(args.batch), "--n", str(args.n), "--syn_steps", str(args.syn_steps),
           "--mini_batch", str(args.mini_batch), "--reps", str(args.reps)]
  procs = []
  for pid in range(num):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--out_json", out_json, *shape]
    if num > 1:
      cmd += ["--address", addr, "--num", str(num), "--pid", str(pid)]
    procs.append(subprocess.Popen(cmd, env=env))
  for p in procs:
    if p.wait(timeout=args.timeout) != 0:
      raise SystemExit(f"worker failed (exit {p.returncode})")
  with open(out_json) as f:
    return json.load(f)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true", help="smaller shapes and fewer reps")
  ap.add_argument("--experts", type=int, default=8)
  ap.add_argument("--segments", type=int, default=4, help="trajectories_per_iter K")
  ap.add_argument("--rows", type=int, default=1024, help="real train rows")
  ap.add_argument("--dim", type=int, default=256, help="feature dim of every modality")
  ap.add_argument("--out", type=int, default=256, help="embedding dim of the heads")
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--n", type=int, default=50)
  ap.add_argument("--syn_steps", type=int, default=8)
  ap.add_argument("--mini_batch", type=int, default=25)
  ap.add_argument("--reps", type=int, default=5)
  ap.add_argument("--timeout", type=int, default=900, help="per launch (a hung collective)")
  ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--out_json", help=argparse.SUPPRESS)
  ap.add_argument("--address", help=argparse.SUPPRESS)
  ap.add_argument("--num", type=int, default=1, help=argparse.SUPPRESS)
  ap.add_argument("--pid", type=int, default=0, help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker:
    return worker(args)
  if args.quick:
    args.experts, args.segments, args.rows, args.dim, args.out = 4, 2, 512, 128, 128
    args.n, args.syn_steps, args.reps = 20, 4, 3
  with tempfile.TemporaryDirectory() as tmp:
    one = launch(1, args, tmp)
    two = launch(2, args, tmp)
  print(f"# distributed_bench ({one['platform']}; E={args.experts} experts, K={args.segments} "
        f"segments, rows={args.rows}, dim={args.dim}→{args.out}, n={args.n}, "
        f"syn_steps={args.syn_steps}, reps={args.reps}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
  print("| processes × devices | experts: s/epoch (CPU s of process 0) | expert-epochs/s | "
        "distill K: s/iter (CPU s of process 0) | segments/s |")
  print("|---|---|---|---|---|")
  for r in (one, two):
    print(f"| {r['process_count']} × {r['devices'] // r['process_count']} | "
          f"{r['experts_s_per_epoch']:.3f} ({r['experts_cpu_s_per_epoch']:.3f}) | "
          f"{r['expert_epochs_per_s']:.2f} | {r['distill_s_per_iter']:.3f} "
          f"({r['distill_cpu_s_per_iter']:.3f}) | {r['segments_per_s']:.2f} |")
  print(f"| ratio 2 processes / 1 | | {two['expert_epochs_per_s'] / one['expert_epochs_per_s']:.2f}× "
        f"| | {two['segments_per_s'] / one['segments_per_s']:.2f}× |")


if __name__ == "__main__":
  main()
