r"""HoPA throughput: ms per distillation iteration per gradient mode, expert training
time and memory, at MSR-VTT shapes (n=100, mini-batch 25, 16 student steps, heads
V 1280 / A 768 / T 1024 → 1024) on random data.

  python benchmarks/hopa_bench.py            # MSR-VTT shapes (GPU-sized experts)
  python benchmarks/hopa_bench.py --quick    # tiny shapes, seconds on a CPU

Prints a table: per mode the compile time, ms/iteration (mean over ``--iters``
iterations after one warm-up), XLA's temp buffer size of the compiled step (which
grows with ``syn_steps`` in ``full`` mode and not in ``tesla`` mode), and the peak
device memory (``memory_stats`` where the backend has it, else the process's max RSS).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from hopa_jax import distill as dl  # noqa: E402
from hopa_jax import experts as ex  # noqa: E402
from hopa_jax import objectives as obj_lib  # noqa: E402
from mmdd_jax import heads as heads_lib  # noqa: E402


def peak_memory_mb() -> tuple[float, str]:
  stats = jax.devices()[0].memory_stats()
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20, "device peak"
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "max RSS"


def fake_traj(key, params0, experts: int, snapshots: int, scale: float = 1e-3):
  def walk(k):
    snaps = [params0]
    for s in range(snapshots - 1):
      snaps.append(heads_lib.perturb(jax.random.fold_in(k, s), snaps[-1], scale))
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *snaps)
  ws = [walk(jax.random.fold_in(key, e)) for e in range(experts)]
  return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ws)


def bench_mode(mode: str, args, params0, traj, xs) -> dict:
  cfg = dl.DistillConfig(n=args.n, objective=args.objective, sim_kind="lowrank", sim_rank=10,
                         syn_steps=args.syn_steps, mini_batch=args.mini_batch, expert_epochs=2,
                         max_start_epoch=args.max_start, grad_mode=mode)
  init = {m: v[: args.n] for m, v in xs.items()}
  state = dl.init_state(jax.random.PRNGKey(0), cfg, init, 0.01)
  step = dl.make_distill_step(cfg)
  t0 = time.perf_counter()
  compiled = step.lower(state, traj).compile()
  t_compile = time.perf_counter() - t0
  ma = compiled.memory_analysis()
  temp_mb = ma.temp_size_in_bytes / 2**20 if ma is not None else float("nan")
  state, m = compiled(state, traj)          # warm-up
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  for _ in range(args.iters):
    state, m = compiled(state, traj)
  jax.block_until_ready(state)
  ms = 1e3 * (time.perf_counter() - t0) / args.iters
  if not np.isfinite(float(m["loss"])):
    raise FloatingPointError(f"{mode}: non-finite loss")
  return dict(mode=mode, compile_s=t_compile, ms_per_iter=ms, temp_mb=temp_mb)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true", help="tiny shapes (CPU smoke)")
  ap.add_argument("--modes", default="full,tesla")
  ap.add_argument("--objective", default="hopa", choices=sorted(obj_lib.OBJECTIVES))
  ap.add_argument("--iters", type=int, default=20)
  ap.add_argument("--n", type=int, default=100)
  ap.add_argument("--mini_batch", type=int, default=25)
  ap.add_argument("--syn_steps", type=int, default=16)
  ap.add_argument("--max_start", type=int, default=5)
  ap.add_argument("--experts", type=int, default=20, help="experts trained (0 = skip)")
  ap.add_argument("--epochs", type=int, default=10, help="expert epochs")
  ap.add_argument("--n_real", type=int, default=9000, help="real train instances")
  args = ap.parse_args(argv)
  dims = {"vision": 1280, "audio": 768, "text": 1024}
  out = 1024
  if args.quick:
    dims, out = {"vision": 64, "audio": 48, "text": 32}, 32
    args.n, args.mini_batch, args.syn_steps, args.iters = 20, 5, 4, 5
    args.experts, args.epochs, args.n_real = 2, 7, 256
  key = jax.random.key(0)
  params0 = heads_lib.init_heads(key, dims, out_dim=out)
  xs = {m: np.asarray(jax.random.normal(jax.random.fold_in(key, i), (args.n_real, d)))
        for i, (m, d) in enumerate(dims.items())}
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); dims {dims} → {out}; "
        f"n={args.n} mini_batch={args.mini_batch} syn_steps={args.syn_steps} "
        f"objective={args.objective}")
  rows = []
  t_exp = float("nan")
  snapshots = max(args.epochs + 1, args.max_start + 2)
  if args.experts:
    cfg = ex.ExpertConfig(num_experts=args.experts, epochs=args.epochs, objective=args.objective)
    with tempfile.TemporaryDirectory() as d:
      t0 = time.perf_counter()
      traj = ex.train_experts(jax.random.PRNGKey(1), params0, xs, cfg, d)
      jax.block_until_ready(traj)
      t_exp = time.perf_counter() - t0
    traj = jax.tree_util.tree_map(lambda a: a[:2], traj)   # 2 experts suffice for timing
  else:
    traj = fake_traj(key, params0, 2, snapshots)
  for mode in args.modes.split(","):
    rows.append(bench_mode(mode, args, params0, traj, xs))
  mem, mem_kind = peak_memory_mb()
  print(f"\nexperts: {args.experts} × {args.epochs} epochs on {args.n_real} instances: "
        f"{t_exp:.1f} s (incl. compile and Orbax snapshots)")
  print(f"{mem_kind}: {mem:.0f} MiB\n")
  print("| mode | compile (s) | ms / iteration | XLA temp (MiB) |")
  print("|---|---|---|---|")
  for r in rows:
    print(f"| {r['mode']} | {r['compile_s']:.1f} | {r['ms_per_iter']:.1f} | {r['temp_mb']:.1f} |")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
