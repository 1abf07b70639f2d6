r"""What the proxy's eigendecomposition costs (HoPA paper, Table 7).

Times HoPA's expert training and distillation against the identical graph with the
eigendecomposition of the per-instance Gram replaced by the identity or by mean pooling
(:mod:`hopa_jax.proxy_variants`: same heads, Gram, L_mod softmax, proxy logits and
wBCE; same shapes, same budget), in one process:

  python benchmarks/proxy_cost_bench.py            # MSR-VTT shapes (GPU-sized experts)
  python benchmarks/proxy_cost_bench.py --quick    # MSR-VTT head shapes, fewer rows/experts

* expert training: one jitted epoch of ``--experts`` vmapped experts on ``--n_real``
  real rows (:func:`hopa_jax.experts.make_epoch_fn`, the project's expert epoch),
  reported per epoch and per expert trajectory (``--epochs`` epochs);
* the objective alone: value and gradient wrt the embeddings of one real batch (the
  only part of the graph that differs), per call;
* distillation: one jitted iteration (:func:`hopa_jax.distill.make_distill_step`, the
  project's step) per gradient mode (``full``: backprop through the unrolled student;
  ``tesla``: the paper's choice in practice), reported per 100 iterations.

Every measurement excludes compilation and one warm-up call, ends with
``jax.block_until_ready``, and is repeated ``--repeats`` times with the variants
interleaved (round-robin, so a load change on a shared machine hits all of them);
the median is reported. Ratios are ``with eigh / without``; the paper's "SVD cost"
column is ``(with − without) / with`` (its +3.5 % = (11.25 − 10.85) / 11.25 and +39.1 %
= (87.48 − 53.28) / 87.48), printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from hopa_jax import distill as dl  # noqa: E402
from hopa_jax import experts as ex  # noqa: E402
from hopa_jax import objectives as obj_lib  # noqa: E402
from hopa_jax import proxy_variants  # noqa: E402
from mmdd_jax import heads as heads_lib  # noqa: E402

VARIANTS = ("hopa", "hopa_identity", "hopa_mean")   # with eigh, then the two replacements
PAPER = {"experts": (10.85, 11.25, "min/traj"), "distill": (53.28, 87.48, "s/100 iters")}


def fake_traj(key, params0, experts: int, snapshots: int, scale: float = 1e-3):
  """Random-walk trajectories ``[E, T+1, ...]`` (the timing does not depend on them)."""
  def walk(k):
    snaps = [params0]
    for s in range(snapshots - 1):
      snaps.append(heads_lib.perturb(jax.random.fold_in(k, s), snaps[-1], scale))
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *snaps)
  ws = [walk(jax.random.fold_in(key, e)) for e in range(experts)]
  return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ws)


def expert_runner(objective: str, args, params0, xs):
  """``run() -> seconds`` for ``args.timed_epochs`` expert epochs (compiled, warmed up)."""
  cfg = ex.ExpertConfig(num_experts=args.experts, epochs=args.epochs, lr=0.01,
                        batch_size=args.batch_size, objective=objective)
  n = int(next(iter(xs.values())).shape[0])
  fn = ex.make_epoch_fn(cfg, n)
  p, keys = ex.init_experts(jax.random.PRNGKey(1), params0, cfg)
  lrs = jnp.full((cfg.num_experts,), cfg.lr, jnp.float32)
  state = {"p": p, "e": 0}

  def one():
    state["p"], loss = fn(state["p"], keys, xs, jnp.asarray(state["e"], jnp.int32), lrs)
    state["e"] += 1
    return loss

  t0 = time.perf_counter()
  jax.block_until_ready(one())                   # compile + warm-up
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(one())

  def run():
    t0 = time.perf_counter()
    for _ in range(args.timed_epochs):
      loss = one()
    jax.block_until_ready((state["p"], loss))
    if not np.all(np.isfinite(np.asarray(loss))):
      raise FloatingPointError(f"experts ({objective}): non-finite loss")
    return (time.perf_counter() - t0) / args.timed_epochs
  return run, compile_s


def distill_runner(objective: str, mode: str, args, params0, traj, xs):
  """``run() -> seconds`` per distillation iteration (compiled, warmed up)."""
  cfg = dl.DistillConfig(n=args.n, objective=objective, sim_kind="lowrank", sim_rank=10,
                         syn_steps=args.syn_steps, mini_batch=args.mini_batch, expert_epochs=2,
                         max_start_epoch=args.max_start, grad_mode=mode)
  init = {m: v[: args.n] for m, v in xs.items()}
  holder = {"s": dl.init_state(jax.random.PRNGKey(0), cfg, init, 0.01)}
  t0 = time.perf_counter()
  step = dl.make_distill_step(cfg).lower(holder["s"], traj).compile()
  compile_s = time.perf_counter() - t0
  holder["s"], m = step(holder["s"], traj)        # warm-up
  jax.block_until_ready(holder["s"])

  def run():
    t0 = time.perf_counter()
    for _ in range(args.iters):
      holder["s"], m = step(holder["s"], traj)
    jax.block_until_ready(holder["s"])
    if not np.isfinite(float(m["loss"])):
      raise FloatingPointError(f"distill ({objective}, {mode}): non-finite loss")
    return (time.perf_counter() - t0) / args.iters
  return run, compile_s


def component_runner(objective: str, args, zs):
  """``run() -> seconds`` per call of the objective's value and gradient wrt the
  embeddings of one real batch (the only part of the graph that differs)."""
  f = jax.jit(jax.value_and_grad(lambda z: obj_lib.get_objective(objective)(
      z, jnp.eye(args.batch_size, dtype=jnp.float32), obj_lib.ObjectiveConfig())))
  t0 = time.perf_counter()
  jax.block_until_ready(f(zs))
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(f(zs))

  def run():
    t0 = time.perf_counter()
    for _ in range(args.component_calls):
      out = f(zs)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / args.component_calls
  return run, compile_s


def interleaved(runners: dict, repeats: int) -> dict:
  """Median and all times per runner, the runners interleaved in every repeat."""
  times = {k: [] for k in runners}
  for _ in range(repeats):
    for k, run in runners.items():
      times[k].append(run())
  return {k: {"median": statistics.median(v), "all": v} for k, v in times.items()}


def table(stage: str, unit: str, scale: float, res: dict, compile_s: dict) -> str:
  base = res["hopa"]["median"]
  lines = [f"| {stage} | variant | {unit} (median) | min–max | compile s | "
           "with eigh / this | paper-style cost (with − this) / with |", "|---|---|---|---|---|---|---|"]
  for k in VARIANTS:
    r = res[k]
    ratio = base / r["median"]
    cost = (base - r["median"]) / base
    lines.append(f"| {stage} | {k} | {scale * r['median']:.4g} | {scale * min(r['all']):.4g}–"
                 f"{scale * max(r['all']):.4g} | {compile_s[k]:.1f} | "
                 f"{'—' if k == 'hopa' else f'{ratio:.3f}×'} | "
                 f"{'—' if k == 'hopa' else f'{100 * cost:+.1f} %'} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true",
                  help="MSR-VTT head shapes with 2 experts on 1024 rows, 3 iterations per repeat")
  ap.add_argument("--tiny", action="store_true", help="tiny shapes (a seconds-long smoke run)")
  ap.add_argument("--modes", default="tesla,full", help="distillation gradient modes")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--iters", type=int, default=None,
                  help="distillation iterations per repeat (default 10; --quick 3)")
  ap.add_argument("--n", type=int, default=100)
  ap.add_argument("--mini_batch", type=int, default=25)
  ap.add_argument("--syn_steps", type=int, default=16)
  ap.add_argument("--max_start", type=int, default=5)
  ap.add_argument("--experts", type=int, default=None,
                  help="vmapped experts (0 = skip; default 20; --quick 2)")
  ap.add_argument("--epochs", type=int, default=10, help="epochs per expert trajectory")
  ap.add_argument("--timed_epochs", type=int, default=2, help="expert epochs per repeat")
  ap.add_argument("--component_calls", type=int, default=50,
                  help="objective calls per repeat in the component timing (0 = skip)")
  ap.add_argument("--batch_size", type=int, default=128)
  ap.add_argument("--n_real", type=int, default=None,
                  help="real train instances (default 9000; --quick 1024)")
  args = ap.parse_args(argv)
  dims, out = {"vision": 1280, "audio": 768, "text": 1024}, 1024
  quick = {"iters": 3, "experts": 2, "n_real": 1024} if args.quick else {}
  for k, full in (("iters", 10), ("experts", 20), ("n_real", 9000)):
    if getattr(args, k) is None:   # an explicit flag wins over --quick
      setattr(args, k, quick.get(k, full))
  if args.tiny:
    dims, out = {"vision": 24, "audio": 16, "text": 20}, 16
    args.n, args.mini_batch, args.syn_steps, args.iters, args.repeats = 12, 4, 3, 2, 2
    args.experts, args.n_real, args.batch_size, args.timed_epochs = 2, 64, 16, 1
    args.component_calls = 2
  proxy_variants.register()
  key = jax.random.key(0)
  params0 = heads_lib.init_heads(key, dims, out_dim=out)
  xs = {m: jnp.asarray(jax.random.normal(jax.random.fold_in(key, i), (args.n_real, d)))
        for i, (m, d) in enumerate(dims.items())}
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), JAX {jax.__version__}; "
        f"dims {dims} → {out}; experts {args.experts} × batch {args.batch_size} on {args.n_real} "
        f"rows; distill n={args.n} mini_batch={args.mini_batch} syn_steps={args.syn_steps}; "
        f"repeats {args.repeats} (median)")
  out_md = []
  if args.component_calls:
    zs = heads_lib.apply_heads(params0, {m: v[: args.batch_size] for m, v in xs.items()})
    runners, comp = {}, {}
    for v in VARIANTS:
      runners[v], comp[v] = component_runner(v, args, zs)
    res = interleaved(runners, args.repeats)
    out_md.append(f"objective alone (value and gradient wrt the embeddings of one batch of "
                  f"{args.batch_size}, {args.component_calls} calls per repeat)")
    out_md.append(table("objective", "µs/call", 1e6, res, comp))
  if args.experts:
    runners, comp = {}, {}
    for v in VARIANTS:
      runners[v], comp[v] = expert_runner(v, args, params0, xs)
    res = interleaved(runners, args.repeats)
    # per trajectory: one expert's share of the vmapped epochs, times the epochs
    per_traj = args.epochs / args.experts / 60.0
    out_md.append(f"expert training: {args.timed_epochs} epochs per repeat; "
                  f"min/traj = s/epoch × {args.epochs} epochs / {args.experts} experts / 60")
    out_md.append(table("experts", "min/traj", per_traj, res, comp))
  traj = fake_traj(key, params0, 2, max(args.epochs + 1, args.max_start + 2))
  for mode in [m for m in args.modes.split(",") if m]:
    runners, comp = {}, {}
    for v in VARIANTS:
      runners[v], comp[v] = distill_runner(v, mode, args, params0, traj, xs)
    res = interleaved(runners, args.repeats)
    out_md.append(f"distillation ({mode}): {args.iters} iterations per repeat")
    out_md.append(table(f"distill {mode}", "s/100 iters", 100.0, res, comp))
  print()
  print("\n\n".join(out_md))
  print(f"\npaper (A100, MSR-VTT): experts {PAPER['experts'][0]} → {PAPER['experts'][1]} "
        f"min/traj (+3.5 %); distillation {PAPER['distill'][0]} → {PAPER['distill'][1]} "
        "s/100 iters (+39.1 %, TESLA)")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
