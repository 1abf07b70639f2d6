r"""ImageBindDC distillation time and peak memory on a VGGS-10K-shaped problem.

10 classes, 2 modalities (vision, audio), 1024-d unit-norm embeddings, 800 real rows
per class (VGGS-10K's 8000 train), ``ipc`` in {1, 10, 20}, SPEC's 2000 iterations,
real batch 128, synthetic batch 32, 4096 CFD frequencies. Times the jitted scan of
all iterations (compile excluded, reported separately) per method.

  python benchmarks/bindc_bench.py            # full shape, paper's iteration count
  python benchmarks/bindc_bench.py --quick    # CPU: 50 iterations, 1024 frequencies,
                                              # seconds extrapolated to 2000 iterations

CFD real side, per-step sampling vs the pooled option (``cfd_real``, docs/bindc.md):

  python benchmarks/bindc_bench.py --cfd-real-speed     # ImageBindDC, ipc {1, 10} x
      # {1024, 4096} frequencies: ms / iteration of "sampled" and of "pooled" for each
      # --pool-every K, and their ratio to "sampled" measured in the same process
  python benchmarks/bindc_bench.py --cfd-real-accuracy  # vggs10k_sim (--acc-scale 0.25),
      # ImageBindDC at ipc {1, 10}, --acc-iterations 300, identical settings in both
      # modes: test accuracy (--acc-runs 5 evaluation runs) and the full-class CFD of
      # the distilled set on fresh frequencies, to the train and to the test rows

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
from bindc_jax import distill as D  # noqa: E402


def peak_mb() -> float:
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2 ** 20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vggs_shape(C=10, per=800, d=1024):
  r = np.random.default_rng(0)
  labels = np.repeat(np.arange(C), per)
  xs = {m: r.standard_normal((C * per, d)).astype(np.float32) for m in ("vision", "audio")}
  xs = {m: v / np.linalg.norm(v, axis=-1, keepdims=True) for m, v in xs.items()}
  xs_c, mask, _ = B.group_by_class(xs, labels, C)
  return xs_c, mask


def cfd_real_speed(a) -> None:
  """Times ``sampled`` and ``pooled`` (each K) back to back per shape; ratio in-process."""
  iters = a.iterations if a.iterations != 2000 else 50
  xs_c, mask = _vggs_shape()
  data = ({m: jnp.asarray(v) for m, v in xs_c.items()}, jnp.asarray(mask))
  key = jax.random.key(0)
  print(f"device {jax.devices()[0].device_kind} x {os.cpu_count()} cpus; ImageBindDC, "
        f"{iters} timed iterations per row (a multiple of every K: the pool refreshes are "
        f"included), VGGS-10K shape 10 classes x 800 rows, V+A, 1024-d, real batch 128")
  print("| ipc | frequencies | cfd_real | K | compile s | ms / iteration | speed-up vs sampled |")
  print("|---|---|---|---|---|---|---|")
  for ipc in map(int, a.ipc.split(",")):
    for freqs in map(int, a.freqs.split(",")):
      lc = B.method_loss_config("bindc", B.LossConfig(dist=B.DistanceConfig(num_freqs=freqs)))
      syn0 = B.initialize("random", key, xs_c, mask, ipc)
      base = None
      modes = [("sampled", 1)] + [("pooled", int(k)) for k in a.pool_every.split(",")]
      for mode, k in modes:
        cfg = B.DistillConfig(loss=lc, iterations=iters, cfd_real=mode, cfd_pool_every=k)
        run = D.make_run(cfg, 128, iters)
        t0 = time.perf_counter()
        compiled = run.lower(B.init_state(syn0, cfg), data, key).compile()
        tc = time.perf_counter() - t0
        best = float("inf")
        for _ in range(a.repeats):
          state = B.init_state(syn0, cfg)
          jax.block_until_ready(state)
          t0 = time.perf_counter()
          state, _ = compiled(state, data, key)
          jax.block_until_ready(state.syn)
          best = min(best, time.perf_counter() - t0)
        ms = 1e3 * best / iters
        base = ms if mode == "sampled" else base
        print(f"| {ipc} | {freqs} | {mode} | {k if mode == 'pooled' else '-'} | {tc:.1f} | "
              f"{ms:.1f} | {base / ms:.2f}x |", flush=True)


def heldout_cfd(syn, xs_c, mask, key, num_freqs=4096) -> float:
  """Σ_m mean_c CFD(class c's rows of xs_c, syn_c) on fresh frequencies."""
  dim = next(iter(syn.values())).shape[-1]
  t = B.sample_frequencies(key, num_freqs, dim)
  total = 0.0
  for m in sorted(syn):
    re, im = B.class_characteristic_functions(jnp.asarray(xs_c[m]), jnp.asarray(mask), t)
    per = jax.vmap(lambda r, i, s: B.cfd_from_stats((r, i), s, t))(re, im, jnp.asarray(syn[m]))
    total += float(jnp.mean(per))
  return total


def cfd_real_accuracy(a) -> None:
  """Distils vggs10k_sim with both real sides (same settings) and evaluates."""
  from bindc_jax import run
  from experiments.configs import bindc as cfg_lib
  from mmdd_jax import data as data_lib
  modes = [("sampled", 1)] + [("pooled", int(k)) for k in a.pool_every.split(",")]
  print(f"device {jax.devices()[0].device_kind} x {os.cpu_count()} cpus; vggs10k_sim scale "
        f"{a.acc_scale}, ImageBindDC, {a.acc_iterations} iterations, {a.acc_freqs} "
        f"frequencies, {a.acc_runs} evaluation runs, all other settings the config defaults")
  print("| ipc | cfd_real | K | test accuracy % | CFD to train rows | CFD to test rows | "
        "distill s |")
  print("|---|---|---|---|---|---|---|")
  for ipc in map(int, a.ipc.split(",")):
    for mode, k in modes:
      cfg = cfg_lib.get_config("dataset=vggs10k_sim")
      cfg.update_from_flattened_dict({
          "scale": a.acc_scale, "method": ("bindc",), "ipc": ipc,
          "distill.iterations": a.acc_iterations, "loss.dist.num_freqs": a.acc_freqs,
          "eval.runs": a.acc_runs, "distill.cfd_real": mode, "distill.cfd_pool_every": k,
          "progress": False, "log_every": 50, "ckpt_every": a.acc_iterations,
          **({"data_dir": a.data_dir} if a.data_dir else {})})
      wd = os.path.join(a.workdir, f"ipc{ipc}-{mode}{k if mode == 'pooled' else ''}")
      row = run.train_and_evaluate(cfg, wd)[0]
      from embed import store as store_lib
      dst = store_lib.Store(os.path.join(wd, "distilled"))
      st = data_lib.resolve_store("vggs10k_sim", scale=a.acc_scale, seed=0,
                                  data_dir=a.data_dir or None)
      syn_flat = data_lib.load_split(dst, "train", "embeddings")
      syn_c, _, _ = B.group_by_class(syn_flat, np.asarray(dst.labels("train")), st.num_classes)
      ck = jax.random.key(12345)   # fresh frequencies, independent of both runs' keys
      cf = []
      for split in ("train", "test"):
        xs = data_lib.load_split(st, split, "embeddings")
        xs_c, mask, _ = B.group_by_class(xs, np.asarray(st.labels(split)), st.num_classes)
        cf.append(heldout_cfd(syn_c, xs_c, mask, ck))
      print(f"| {ipc} | {mode} | {k if mode == 'pooled' else '-'} | {row['accuracy']:.1f} ± "
            f"{row['accuracy_std']:.1f} | {cf[0]:.4f} | {cf[1]:.4f} | "
            f"{row['time_s']['distill']:.0f} |", flush=True)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true", help="CPU-sized run (see the docstring)")
  ap.add_argument("--methods", default="bindc,cfd_only,dm,avdd,mmd")
  ap.add_argument("--ipc", default="1,10,20")
  ap.add_argument("--iterations", type=int, default=2000)
  ap.add_argument("--num-freqs", type=int, default=4096)
  ap.add_argument("--cfd-real-speed", action="store_true",
                  help="time cfd_real=sampled vs pooled (ImageBindDC; see the docstring)")
  ap.add_argument("--cfd-real-accuracy", action="store_true",
                  help="accuracy of cfd_real=sampled vs pooled on vggs10k_sim")
  ap.add_argument("--pool-every", default="10,50", help="pooled mode's K values")
  ap.add_argument("--freqs", default="1024,4096", help="frequencies (--cfd-real-speed)")
  ap.add_argument("--repeats", type=int, default=1, help="timed repeats, best kept")
  ap.add_argument("--acc-scale", type=float, default=0.25)
  ap.add_argument("--acc-iterations", type=int, default=300)
  ap.add_argument("--acc-freqs", type=int, default=4096)
  ap.add_argument("--acc-runs", type=int, default=5)
  ap.add_argument("--data-dir", default="")
  ap.add_argument("--workdir", default="runs/bench_cfd_real")
  a = ap.parse_args(argv)
  if a.cfd_real_speed or a.cfd_real_accuracy:
    if a.ipc == "1,10,20":
      a.ipc = "1,10"
    if a.cfd_real_speed:
      cfd_real_speed(a)
    if a.cfd_real_accuracy:
      cfd_real_accuracy(a)
    return 0
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
