r"""Trajectory-bound study: Lemma 1 and Theorem 1 of HoPA measured per inner objective.

:func:`train_and_evaluate` runs the study of a config of ``experiments/configs/bound.py``
in a workdir (bound to that config, locked: :func:`mmdd_jax.workdir.open_workdir`).
For every objective in ``study.objectives``: train a real expert trajectory with that
objective (:func:`hopa_jax.experts.train_experts`, from the pretrained heads; section
``experts``) and take ``θ₀`` = its snapshot after ``study.start_epoch`` epochs; then
roll out ``study.T`` SGD steps of size ``study.eta`` on a fixed real batch and on two
synthetic sets, with :func:`hopa_jax.bound.make_study`:

* **random** — ``study.n`` random real train instances, targets ``I``;
* **distilled** — the train split of ``study.distilled_store`` (targets its
  ``similarity.npy`` if present, else ``I``), or, without a store, a short distillation
  with that objective (:mod:`hopa_jax.distill`, section ``distill``,
  ``distill.iterations`` iterations on the same experts; similarity mining except for
  InfoNCE). With neither, the distilled rows are skipped and ``results.md`` says so.

Writes ``config.json``, ``results.json`` (a list: one row per objective × synthetic
set), ``bound.jsonl`` (the same rows with every per-step array), ``results.md``
(objective × {mean mismatch, L, endpoint gap, bound, bound/gap, …}), ``metrics.jsonl``
(the distillations' logs) and the plots ``mismatch.png``, ``gap_vs_bound.png``,
``sensitivity.png``. Experts are cached under ``<workdir>/experts/<objective>``, the
distillations under ``<workdir>/distill_ckpt/<objective>`` (Orbax; a rerun of the same
config reuses them).

Randomness (:mod:`mmdd_jax.rng`, root ``seed``): streams ``real_batch`` and
``random_set`` (the fixed subsets), ``experts/<objective>``, ``distill/<objective>``
and ``power/<objective>`` (power-iteration start vectors, shared by an objective's
synthetic sets), so adding an objective never changes another's numbers.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from embed import store as store_lib
from hopa_jax import bound
from hopa_jax import distill as dl
from hopa_jax import experts as ex
from hopa_jax import inspect_distilled
from hopa_jax import similarity as sim_lib
from hopa_jax import plan as plan_lib
from mmdd_jax import data, distributed, heads as heads_lib, keys, results, rng
from mmdd_jax import stage as stage_lib
from mmdd_jax import workdir as wd

# The config → dataclass builders live with the plan (hopa_jax.plan.resolve_study).
objective_config = plan_lib.study_objective_config
expert_config = plan_lib.study_expert_config
distill_config = plan_lib.study_distill_config


# ----------------------------------------------------------------------- files, tables


def load_distilled(path: str, mods) -> tuple[dict, np.ndarray | None]:
  """Synthetic features (train split) and ``Ŝ`` (``similarity.npy``) of a distilled store."""
  st = store_lib.Store(path)
  st.require_modalities(mods)
  syn = data.load_split(st, "train", "features", mods)
  return syn, inspect_distilled.load_similarity(st)


def _to_list(x):
  return np.asarray(x).tolist()


def trace_record(trace: bound.StudyTrace) -> dict:
  return dict(mismatch=_to_list(trace.mismatch),
              mismatch_branch={m: _to_list(v) for m, v in trace.mismatch_branch.items()},
              lipschitz=_to_list(trace.lipschitz), secant=_to_list(trace.secant),
              power_rel_change=_to_list(trace.power_rel_change),
              power_iters=_to_list(trace.power_iters), gap=_to_list(trace.gap),
              loss_real=_to_list(trace.loss_real), loss_syn=_to_list(trace.loss_syn),
              sens_real_steps={k: _to_list(v) for k, v in trace.sens_real.items()},
              sens_syn_steps={k: _to_list(v) for k, v in trace.sens_syn.items()})


def _fmt(x: float) -> str:
  return f"{x:.3g}"


def study_table(records) -> str:
  """Markdown: one row per objective × synthetic set."""
  head = ["objective", "synthetic", "mean mismatch", "L (HVP, max)", "L secant (max)",
          "endpoint gap", "bound", "bound/gap", "held", "sens k=1 (syn)", "sens k≥2 (syn)"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in records:
    sens = {k: v for k, v in r["sens_syn"].items()}
    cell = []
    for k in sens:
      s = sens[k]
      cell.append((k, s[0], max(s[1:]) if len(s) > 1 else 0.0))
    s1 = "; ".join(f"{_fmt(a)}" + (f" ({k})" if len(cell) > 1 else "") for k, a, _ in cell)
    s2 = "; ".join(f"{_fmt(b)}" + (f" ({k})" if len(cell) > 1 else "") for k, _, b in cell)
    lines.append("| " + " | ".join([
        r["objective"], r["synthetic"], _fmt(r["mean_mismatch"]), _fmt(r["L"]),
        _fmt(r["L_secant"]), _fmt(r["endpoint_gap"]), _fmt(r["bound"]), _fmt(r["ratio"]),
        "yes" if r["held"] else "NO", s1, s2]) + " |")
  return "\n".join(lines)


def _save(fig, path: str) -> str:
  import matplotlib.pyplot as plt
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def plot_study(records, workdir: str) -> list[str]:
  """``mismatch.png``, ``gap_vs_bound.png``, ``sensitivity.png``; returns the paths."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  paths = []
  styles = {"random": "--", "distilled": "-"}
  fig, ax = plt.subplots(figsize=(6, 4))
  for r in records:
    ax.plot(np.arange(len(r["mismatch_steps"])), r["mismatch_steps"], styles.get(r["synthetic"], ":"),
            color=f"C{sorted({q['objective'] for q in records}).index(r['objective'])}",
            label=f"{r['objective']} / {r['synthetic']}")
  ax.set_xlabel("step t")
  ax.set_ylabel(r"$\|g_t(\tilde\theta_t) - \tilde g_t(\tilde\theta_t)\|$")
  ax.set_yscale("log")
  ax.set_title("gradient mismatch per step")
  ax.legend(fontsize=7)
  paths.append(_save(fig, os.path.join(workdir, "mismatch.png")))

  fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(records) + 2), 4))
  x = np.arange(len(records))
  ax.bar(x - 0.2, [r["endpoint_gap"] for r in records], 0.4, label="endpoint gap ‖θ_T − θ̃_T‖")
  ax.bar(x + 0.2, [r["bound"] for r in records], 0.4, label="Lemma-1 bound")
  ax.set_xticks(x, [f"{r['objective']}\n{r['synthetic']}" for r in records], fontsize=7)
  ax.set_yscale("log")
  ax.legend(fontsize=8)
  ax.set_title("endpoint gap vs bound")
  paths.append(_save(fig, os.path.join(workdir, "gap_vs_bound.png")))

  bars = []
  for r in records:
    for k, v in r["sens_syn"].items():
      bars.append((f"{k}\n{r['synthetic']}", v))
  m = max(len(v) for _, v in bars)
  fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(bars) + 2), 4))
  x = np.arange(len(bars))
  w = 0.8 / m
  for k in range(m):
    vals = [v[k] if k < len(v) else 0.0 for _, v in bars]
    ax.bar(x + (k - (m - 1) / 2) * w, np.maximum(vals, 1e-12), w, label=f"mode k={k + 1}")
  ax.set_xticks(x, [b for b, _ in bars], fontsize=7)
  ax.set_yscale("log")
  ax.set_ylabel(r"$B\cdot$ mean$_i |\partial L/\partial\sigma_{ik}|$ (synthetic, mean over steps)")
  ax.set_title("spectral sensitivities (Theorem 1); floor 1e-12")
  ax.legend(fontsize=8)
  paths.append(_save(fig, os.path.join(workdir, "sensitivity.png")))
  return paths



# ------------------------------------------------------------------------------- the run


def train_and_evaluate(config: Any, workdir: str, *, fresh: bool = False) -> list[dict]:
  """Runs the study for ``config`` (keys of ``experiments/configs/bound.py``) in
  ``workdir``; returns the rows of ``results.json`` (one per objective × synthetic set)."""
  plan = keys.plan_of(config, plan_lib.StudyPlan, plan_lib.resolve_study)
  # Then the store(s), before the workdir is touched.
  st = data.resolve_store(**plan.store)
  n = data.check_subset_size(plan.n, st, key="study.n")
  if plan.distilled_store:
    store_lib.validate(plan.distilled_store, st.modalities, require_splits=("train",),
                       nonempty=("train",))
  bound = {"store": wd.store_digest(st)}
  if plan.distilled_store:
    bound["distilled_store"] = wd.store_digest(plan.distilled_store)
  with wd.open_workdir(workdir, plan.config, fresh=fresh, data=bound):
    return _study(plan, st, n, workdir)


def _study(plan: plan_lib.StudyPlan, st: store_lib.Store, n: int, workdir: str) -> list[dict]:
  progress = plan.progress
  mods = st.modalities
  train_xs = data.load_split(st, "train", "features", mods)
  n_real = st.count("train")
  p0 = heads_lib.pretrained_heads(st, mods)
  ocfg = plan.obj
  lr0 = plan.lr
  root = rng.root(plan.seed)

  rb = int(plan.real_batch) or n_real
  perm = np.asarray(jax.random.permutation(rng.stream(root, "real_batch"), n_real))
  real_idx = np.sort(perm[:min(rb, n_real)])
  real_xs = {m: jnp.asarray(train_xs[m][real_idx]) for m in mods}
  rand_idx = np.sort(np.asarray(jax.random.permutation(rng.stream(root, "random_set"), n_real))[:n])
  random_syn = {m: train_xs[m][rand_idx] for m in mods}

  iterations = plan.iterations
  store_syn, store_sim = None, None
  if plan.distilled_store:
    store_syn, store_sim = load_distilled(plan.distilled_store, mods)
    note = (f"distilled rows: the set in `{plan.distilled_store}` "
            f"(targets {'its similarity.npy' if store_sim is not None else 'I'}), "
            "used with every objective.")
  elif iterations > 0:
    note = (f"distilled rows: {iterations} iterations of trajectory matching "
            "per objective (hopa_jax.distill, its own experts; mining except InfoNCE), "
            "initialised from the Random set — a short distillation, not a converged one.")
  else:
    note = "distilled rows skipped: no `study.distilled_store` given and `distill.iterations=0`."

  jsonl = os.path.join(workdir, "bound.jsonl")
  if os.path.exists(jsonl):
    os.remove(jsonl)   # derived from the rows below; rewritten by every run
  writer = results.MetricsWriter(workdir, "bound.jsonl")
  # the stages per objective: experts → distillation (loops that resume from their
  # checkpoints) → the study of each set; time_s per row
  stages = stage_lib.Stages(workdir)
  rows = []
  for objective in plan.objectives:
    time_s = {}
    with stages.stage("experts", objective=objective, truncate=False,
                      time="experts_and_distill", time_s=time_s) as s:
      traj = ex.train_experts(rng.stream(rng.stream(root, "experts"), objective), p0,
                              train_xs, plan.experts[objective],
                              os.path.join(workdir, "experts", objective), progress=progress,
                              metrics=s.metrics, tags=s.tags)
      theta0 = jax.tree_util.tree_map(lambda a: a[0, plan.start_epoch], traj)

    sets = [("random", random_syn, np.eye(n, dtype=np.float32))]
    if store_syn is not None:
      nn_ = len(next(iter(store_syn.values())))
      sets.append(("distilled", store_syn,
                   store_sim if store_sim is not None else np.eye(nn_, dtype=np.float32)))
    elif iterations > 0:
      with stages.stage("distill", objective=objective, truncate=False,
                        time="experts_and_distill", time_s=time_s) as s:
        dcfg = plan.distill[objective]
        state = dl.init_state(rng.stream(rng.stream(root, "distill"), objective), dcfg,
                              random_syn, lr0, dl.feature_scale(train_xs))
        state = dl.distill(state, traj, dcfg,
                           ckpt_dir=os.path.join(workdir, "distill_ckpt", objective),
                           log_every=max(iterations // 4, 1), metrics=s.metrics,
                           tags=s.tags, progress=progress)
        syn = {m: np.asarray(v) for m, v in state.syn.items()}
        sim = (np.asarray(sim_lib.full_matrix(state.sim, n, dcfg.sim_kind, dcfg.sim_alpha))
               if dcfg.sim_kind != "fixed" else np.eye(n, dtype=np.float32))
        scale_ratio = max(float(np.abs(syn[m]).max() / max(np.abs(random_syn[m]).max(), 1e-12))
                          for m in mods)
        if not all(np.all(np.isfinite(v)) for v in syn.values()) or scale_ratio > 1e3:
          note += (f"\n\n{objective}: the distillation diverged (feature scale ×{scale_ratio:.3g} "
                   "of the initial set); its distilled row is skipped — lower lr_data / lr_sim.")
        else:
          sets.append(("distilled", syn, sim.astype(np.float32)))
    del traj

    study = bound.make_study(objective, eta=plan.eta, steps=plan.T, ocfg=ocfg,
                             power_iters=plan.power_iters, power_tol=plan.power_tol)
    k_pow = rng.stream(rng.stream(root, "power"), objective)
    for sname, syn, targets in sets:
      row_time = dict(time_s)
      with stages.stage(time="study", time_s=row_time):
        trace = study(theta0, real_xs, {m: jnp.asarray(syn[m]) for m in mods},
                      jnp.asarray(targets), k_pow)
        trace = jax.device_get(trace)
        for q in ("mismatch", "gap"):
          v = np.asarray(getattr(trace, q))
          if not np.all(np.isfinite(v)):
            raise FloatingPointError(f"bound study {objective}/{sname}: non-finite {q} at step "
                                     f"{int(np.argmin(np.isfinite(v)))}")
        summ = bound.summarize(trace, plan.eta)
      row = dict(dataset=plan.store["dataset"], objective=objective, synthetic=sname,
                 n_syn=len(next(iter(syn.values()))), real_batch=len(real_idx), T=plan.T,
                 eta=plan.eta, start_epoch=plan.start_epoch, **summ,
                 mismatch_steps=_to_list(trace.mismatch), gap_steps=_to_list(trace.gap),
                 time_s=row_time)
      writer.write(**row, steps=trace_record(trace))
      rows.append(row)
      logging.info("%s/%s: gap %.3g bound %.3g", objective, sname, row["endpoint_gap"],
                   row["bound"])

  title = (f"Trajectory-bound study on {plan.store['dataset']} (scale {plan.store['scale']}, "
           f"T={plan.T}, η={plan.eta}, n={n}, real batch {len(real_idx)}, "
           f"θ₀ = expert epoch {plan.start_epoch})")
  held = all(r["held"] for r in rows)
  body = (f"{study_table(rows)}\n\n"
          f"Bound held in every row: {'yes' if held else 'NO'}; bound/gap from "
          f"{min(r['ratio'] for r in rows):.3g} to {max(r['ratio'] for r in rows):.3g}.\n\n"
          "L is the largest power-iteration estimate of ‖∇²ℓ_real‖ along the student path; "
          "'L secant' is max_t ‖g(θ_t) − g(θ̃_t)‖/‖θ_t − θ̃_t‖, the constant the proof uses. "
          "Sensitivities: B·mean_i |∂L/∂σ_ik| on the synthetic set, mean over steps; for hopa "
          "the first value is the full objective, the second its principal-mode part "
          "(hopa_principal).\n\n" + note)
  results.write_results(workdir, rows, title=title, table=body)
  if distributed.is_writer():   # process 0 writes the figure (results.* already are)
    plot_study(rows, workdir)
  return rows
