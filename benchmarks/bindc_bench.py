r"""ImageBindDC distillation time and peak memory on a VGGS-10K-shaped problem.

10 classes, 2 modalities (vision, audio), 1024-d unit-norm embeddings, 800 real rows
per class (VGGS-10K's 8000 train), ``ipc`` in {1, 10, 20}, SPEC's 2000 iterations,
real batch 128, synthetic batch 32, 4096 CFD frequencies. Times the jitted scan of
all iterations (compile excluded, reported separately) per method.

  python benchmarks/bindc_bench.py            # full shape, paper's iteration count
  python benchmarks/bindc_bench.py --quick    # CPU: 50 iterations, 1024 frequencies,
                                              # seconds extrapolated to 2000 iterations

Peak memory: the device's ``peak_bytes_in_use`` where the backend reports it (GPU);
on CPU the process's peak RSS (``ru_maxrss``), which includes the Python runtime.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import bindc_jax as B  # noqa: E402
import importlib  # noqa: E402

D = importlib.import_module("bindc_jax.distill")


def peak_mb() -> float:
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2 ** 20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true", help="CPU-sized run (see the docstring)")
  ap.add_argument("--methods", default="bindc,cfd_only,dm,avdd,mmd")
  ap.add_argument("--ipc", default="1,10,20")
  ap.add_argument("--iterations", type=int, default=2000)
  ap.add_argument("--num-freqs", type=int, default=4096)
  a = ap.parse_args(argv)
  iters = 50 if a.quick else a.iterations
  freqs = 1024 if a.quick else a.num_freqs
  C, per, d = 10, 800, 1024
  r = np.random.default_rng(0)
  labels = np.repeat(np.arange(C), per)
  xs = {m: r.standard_normal((C * per, d)).astype(np.float32) for m in ("vision", "audio")}
  xs = {m: v / np.linalg.norm(v, axis=-1, keepdims=True) for m, v in xs.items()}
  xs_c, mask, _ = B.group_by_class(xs, labels, C)
  data = ({m: jnp.asarray(v) for m, v in xs_c.items()}, jnp.asarray(mask))
  print(f"device {jax.devices()[0].device_kind}; {iters} iterations"
        f"{' (extrapolated to %d)' % a.iterations if a.quick else ''}; {freqs} frequencies")
  print("| method | ipc | compile s | run s | s / 2000 it | peak MB |")
  print("|---|---|---|---|---|---|")
  key = jax.random.key(0)
  for method in a.methods.split(","):
    for ipc in map(int, a.ipc.split(",")):
      lc = B.method_loss_config(method, B.LossConfig(dist=B.DistanceConfig(num_freqs=freqs)))
      cfg = B.DistillConfig(loss=lc, iterations=iters)
      syn0 = B.initialize("random", key, xs_c, mask, ipc)
      run = D.make_run(cfg, 128, iters)
      t0 = time.perf_counter()
      compiled = run.lower(B.init_state(syn0, cfg), data, key).compile()
      tc = time.perf_counter() - t0
      state = B.init_state(syn0, cfg)
      t0 = time.perf_counter()
      state, m = compiled(state, data, key)
      jax.block_until_ready(state.syn)
      ts = time.perf_counter() - t0
      print(f"| {method} | {ipc} | {tc:.1f} | {ts:.2f} | {ts * 2000 / iters:.1f} | "
            f"{peak_mb():.0f} |", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
