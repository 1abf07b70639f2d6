r"""HoPA / trajectory-matching baselines: experts → distillation → retrieval evaluation.

  python -m experiments.hopa --config=experiments/configs/hopa.py:dataset=msrvtt_sim,n=100,method=hopa \
      --workdir=runs/hopa

Writes into ``--workdir``: ``config.json``, ``metrics.jsonl``, ``results.json`` (the
foundation schema; ``time_s`` per stage: experts / distill / eval), ``results.md``,
``experts/`` (Orbax, one step per epoch), ``distill_ckpt/`` (Orbax) and
``distilled/`` (the distilled set as a store: synthetic features, their
pretrained-head embeddings, the real test split, ``heads.npz``, ``similarity.npy``
and the learned step size in the manifest's ``extra.hopa``). A killed run resumes
where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from embed import store as store_lib
from hopa_jax import distill as dl
from hopa_jax import evaluate as ev
from hopa_jax import experts as ex
from hopa_jax import objectives as obj_lib
from hopa_jax import similarity as sim_lib
from mmdd_jax import data, heads as heads_lib, reference, results

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Flags are defined only when run as a binary, so that other binaries (the demo)
  can import :func:`train_and_evaluate` without flag clashes."""
  config_flags.DEFINE_config_file(
      "config", None, "config file and arg, e.g. experiments/configs/hopa.py:"
      "dataset=msrvtt_sim,n=100,method=hopa (keys and defaults: see the config file)",
      lock_config=False)
  flags.DEFINE_string("workdir", None, "output directory (created; a rerun resumes)")


def _get(config, k, default=None):
  return config[k] if k in config else default


def _floats(key: str, raw) -> tuple:
  """A ``+``-separated list of numbers (``0.01+0.1``) or a sequence."""
  items = raw.split("+") if isinstance(raw, str) else list(raw)
  try:
    out = tuple(float(v) for v in items if str(v).strip())
  except ValueError as e:
    raise ValueError(f"config key '{key}': expected numbers joined by '+', found '{raw}'") from e
  if not out:
    raise ValueError(f"config key '{key}': expected at least one number, found '{raw}'")
  return out


def objective_config(config, method: str | None = None) -> obj_lib.ObjectiveConfig:
  spec = dl.method_spec(method or config["method"])
  kw = dict(tau_mod=config["tau_mod"], tau_inst=config["tau_inst"], lam_inst=config["lam_inst"],
            tau_pair=config["tau_pair"], tau_nce=config["tau_nce"],
            clip_targets=bool(_get(config, "clip_targets", False)),
            pos_from=_get(config, "pos_from", "targets"))
  kw.update(spec["obj"])
  return obj_lib.ObjectiveConfig(**kw)


def method_objective(config) -> str:
  """The method's inner objective (experts and student). Random has none."""
  return dl.method_spec(config["method"])["objective"]


def distill_config(config) -> dl.DistillConfig:
  spec = dl.method_spec(config["method"])
  return dl.DistillConfig(
      n=config["n"], objective=spec["objective"], obj=objective_config(config),
      sim_kind=config["sim_kind"] if spec["mining"] else "fixed", sim_rank=config["sim_rank"],
      sim_alpha=config["sim_alpha"], syn_steps=config["syn_steps"],
      mini_batch=config["mini_batch"], expert_epochs=config["expert_epochs"],
      max_start_epoch=config["max_start_epoch"],
      grad_mode=config["grad_mode"] or spec["grad_mode"], optimizer=config["optimizer"],
      lr_data=config["lr_data"], lr_lr=config["lr_lr"], lr_sim=config["lr_sim"],
      blend=spec["blend"])


def teacher_lr(config) -> float | None:
  """``lr_teacher``: a number, or ``auto`` (None: select on validation)."""
  raw = str(config["lr_teacher"]).strip()
  if raw == "auto":
    return None
  try:
    lr = float(raw)
  except ValueError as e:
    raise ValueError(f"config key 'lr_teacher': expected 'auto' or a number > 0, found '{raw}'") from e
  if not lr > 0:
    raise ValueError(f"config key 'lr_teacher': expected 'auto' or a number > 0, found '{raw}'")
  return lr


def experts_config(config, lr: float) -> ex.ExpertConfig:
  return ex.ExpertConfig(num_experts=config["num_experts"], epochs=config["teacher_epochs"],
                         lr=lr, batch_size=config["teacher_batch"],
                         init_noise=config["expert_noise"], objective=method_objective(config),
                         obj=objective_config(config))


def eval_config(config, sim_kind: str) -> ev.EvalConfig:
  """One evaluation for every row: objective ``eval_objective`` with the method's
  objective settings (targets, temperatures) — the same for Random, every method and
  Full; ``eval_objective=method`` uses each method's inner objective instead."""
  objective = config["eval_objective"]
  if objective == "method":
    objective = method_objective(config)
  return ev.EvalConfig(protocol=config["eval_protocol"], runs=config["eval_runs"],
                       objective=objective, obj=objective_config(config),
                       lrs=_floats("eval_lrs", config["eval_lrs"]),
                       max_epochs=config["eval_max_epochs"], patience=config["eval_patience"],
                       val_every=config["eval_val_every"], epochs=config["eval_epochs"],
                       batch_size=config["eval_batch"], momentum=config["eval_momentum"],
                       weight_decay=config["eval_wd"], init_noise=config["eval_noise"],
                       sim_kind=sim_kind, sim_alpha=config["sim_alpha"])


def resolve_teacher_lr(config, key, p0, train_xs, val_xs, edir: str, progress: bool) -> dict:
  """The experts' lr: explicit, or ``auto`` (:func:`hopa_jax.experts.select_teacher_lr`,
  validation rows only), cached as ``<experts_dir>/teacher_lr.json`` so methods that
  share experts share the choice."""
  lr = teacher_lr(config)
  if lr is not None:
    return {"lr": lr, "rule": "explicit"}
  path = os.path.join(edir, "teacher_lr.json")
  probe_cfg = experts_config(config, 0.0)
  grid = _floats("lr_teacher_grid", config["lr_teacher_grid"])
  ident = {"objective": probe_cfg.objective, "obj": results.jsonable(dataclasses.asdict(probe_cfg.obj)),
           "epochs": probe_cfg.epochs, "batch_size": probe_cfg.batch_size,
           "grid": list(grid), "seed": config["seed"], "val_fraction": config["val_fraction"]}
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      cached = json.load(f)
    if cached.get("ident") == ident:
      return cached
  sel = ex.select_teacher_lr(key, p0, train_xs, val_xs, probe_cfg, grid, progress=progress)
  sel["ident"] = ident
  os.makedirs(edir, exist_ok=True)
  store_lib.atomic_write_json(path, results.jsonable(sel))
  return sel


def write_distilled(path: str, st: store_lib.Store, params0, syn: dict, test_xs: dict, *,
                    lr: float, sim_full: np.ndarray | None, method: str, objective: str,
                    source_ids: list[str], config: Any, val_xs: dict | None = None,
                    val_ids: list[str] | None = None) -> store_lib.Store:
  """The distilled set as a v1 store (train = synthetic, val = the real validation
  rows it was selected on, test = the real test split)."""
  mods = st.modalities
  emb = reference.embed_split(params0, syn)
  test_emb = {m: np.asarray(st.embeddings("test", m), np.float32) for m in mods}
  n = len(next(iter(syn.values())))
  specs = {m: store_lib.ModalitySpec(syn[m].shape[1], emb[m].shape[1], "float32") for m in mods}
  splits = {
      "train": dict(ids=[f"syn-{i:05d}" for i in range(n)],
                    features={m: np.asarray(syn[m], np.float32) for m in mods},
                    embeddings={m: emb[m] for m in mods}),
      "test": dict(ids=list(st.ids("test")), features=test_xs, embeddings=test_emb,
                   captions=st.captions("test")),
  }
  if val_xs is not None:
    splits["val"] = dict(ids=list(val_ids), features={m: np.asarray(val_xs[m]) for m in mods},
                         embeddings=reference.embed_split(params0, val_xs))
  extra = {"hopa": {"method": method, "objective": objective,
                    "lr": float(lr) if lr is not None else None,
                    "similarity": "similarity.npy" if sim_full is not None else None,
                    "source_store": os.path.abspath(st.root), "init_ids": source_ids,
                    "config": results.jsonable(config)}}
  store_lib.write_store(path, specs, splits, heads=heads_lib.heads_to_npz(params0),
                        encoder=st.manifest["encoder"].get("name", "unknown") + "+hopa_distilled",
                        checkpoint_sha256=str(st.manifest["encoder"].get("checkpoint_sha256", "")),
                        command=f"python -m experiments.hopa (method={method})", extra=extra)
  if sim_full is not None:
    store_lib.atomic_save_npy(os.path.join(path, "similarity.npy"), sim_full.astype(np.float32))
  return store_lib.Store(path)


def train_and_evaluate(config, workdir: str) -> list[dict]:
  """Experts → distillation → evaluation for ``config`` (a ConfigDict or dict with the
  keys of ``experiments/configs/hopa.py``); returns ``[results dict]``.

  The store's train split is divided once (:func:`mmdd_jax.data.validation_split`,
  ``val_fraction``, by ``seed``) into train rows (experts, initialisation, Random)
  and validation rows (every selection: ``lr_teacher=auto`` and the evaluation's lr
  and epochs). The test split is scored once, at the end.
  """
  config = dict(config.to_dict() if hasattr(config, "to_dict") else config)
  os.makedirs(workdir, exist_ok=True)
  results.write_config(workdir, config)
  metrics = results.MetricsWriter(workdir)
  progress = bool(_get(config, "progress", True))
  method = config["method"]
  spec = dl.method_spec(method)
  st = data.resolve_store(config["dataset"], scale=config["scale"], seed=config["seed"],
                          data_dir=config["data_dir"] or None)
  mods = st.modalities
  all_train = data.load_split(st, "train", "features", mods)
  test_xs = data.load_split(st, "test", "features", mods)
  tr_idx, val_idx = data.validation_split(st.count("train"), frac=config["val_fraction"],
                                          seed=config["seed"])
  train_xs, val_xs = data.take_rows(all_train, tr_idx), data.take_rows(all_train, val_idx)
  del all_train
  n = data.check_subset_size(config["n"], st) if spec["rows"] == "subset" else len(tr_idx)
  if n > len(tr_idx):
    raise ValueError(f"config key 'n': expected ≤ {len(tr_idx)} (train rows after the "
                     f"validation split), found {n}")
  p0 = reference.pretrained_heads(st, mods)
  key = jax.random.PRNGKey(config["seed"])
  k_exp, k_init, k_dist, k_eval = jax.random.split(key, 4)
  time_s = {"experts": 0.0, "distill": 0.0, "eval": 0.0}

  # Initialisation: n random real train instances (all modalities of the same instance).
  init_rows = (np.sort(np.asarray(jax.random.permutation(k_init, len(tr_idx)))[:n])
               if spec["rows"] == "subset" else np.arange(len(tr_idx)))
  init_syn = {m: train_xs[m][init_rows] for m in mods}
  ids = st.ids("train")
  source_ids = [ids[i] for i in tr_idx[init_rows]]
  dcfg = distill_config(config)
  lr, sim_params, syn, extra = None, None, init_syn, {}

  if spec["optimize"]:
    t0 = time.time()
    edir = config["experts_dir"] or os.path.join(workdir, "experts")
    sel = resolve_teacher_lr(config, jax.random.fold_in(k_exp, 1), p0, train_xs, val_xs, edir,
                             progress)
    extra["lr_teacher"] = sel["lr"]
    extra["lr_teacher_selection"] = {k: v for k, v in sel.items() if k != "ident"}
    metrics.write(stage="lr_teacher", **extra["lr_teacher_selection"])
    ecfg = experts_config(config, sel["lr"])
    traj = ex.train_experts(
        k_exp, p0, train_xs, ecfg, edir, progress=progress,
        log_fn=lambda epoch, loss: metrics.write(stage="experts", epoch=epoch,
                                                 loss=[float(l) for l in loss]))
    time_s["experts"] = time.time() - t0

    t0 = time.time()
    state = dl.init_state(k_dist, dcfg, init_syn, sel["lr"], dl.feature_scale(train_xs))
    state = dl.distill(state, traj, dcfg, config["iterations"],
                       ckpt_dir=os.path.join(workdir, "distill_ckpt"),
                       ckpt_every=config["ckpt_every"], log_every=config["log_every"],
                       progress=progress,
                       log_fn=lambda **m: metrics.write(stage="distill", **m))
    del traj
    syn = {m: np.asarray(v) for m, v in state.syn.items()}
    lr = float(np.exp(np.asarray(state.log_lr)))
    sim_params = state.sim if dcfg.sim_kind != "fixed" else None
    time_s["distill"] = time.time() - t0

  sim_full = (np.asarray(sim_lib.full_matrix(sim_params, n, dcfg.sim_kind, dcfg.sim_alpha))
              if sim_params else None)
  t0 = time.time()
  ecfg = eval_config(config, dcfg.sim_kind if sim_params else "fixed")
  if ecfg.protocol == "paper" and lr is None:
    lr = teacher_lr(config) or 0.01  # Random: the paper's lr_teacher (SPEC §3.7)
  if spec["rows"] == "none":   # zero-shot: the pretrained heads, untrained
    out = {"runs": [reference.evaluate_heads_retrieval(p0, test_xs)[0]], "lr": None,
           "epochs": [0], "val_r1": [float(ev.val_avg_r1(reference.embed_split(p0, val_xs)))],
           "lr_grid": None}
  else:
    out = ev.evaluate_set(k_eval, p0, syn, test_xs, ecfg, val_xs=val_xs, sim_params=sim_params,
                          learned_lr=lr, progress=progress)
  runs = out["runs"]
  time_s["eval"] = time.time() - t0
  for r, per in enumerate(runs):
    metrics.write(stage="eval", run=r, retrieval=per, epochs=out["epochs"][r],
                  val_r1=(out["val_r1"] or [None] * len(runs))[r])

  if spec["rows"] == "subset":
    write_distilled(os.path.join(workdir, "distilled"), st, p0, syn, test_xs, lr=lr,
                    sim_full=sim_full, method=method, objective=method_objective(config),
                    source_ids=source_ids, config=config, val_xs=val_xs,
                    val_ids=[ids[i] for i in val_idx])
  n_syn = n if spec["rows"] == "subset" else None
  res = results.make_results(dataset=config["dataset"], method=method, n_syn=n_syn, config=config,
                             retrieval_runs=runs, time_s=time_s)
  res.update(extra)
  res["learned_lr"] = lr if spec["optimize"] else None
  res["eval"] = ev.record(ecfg, out)
  metrics.write(stage="result", method=method, avg=res["avg"], avg_std=res["avg_std"],
                eval=res["eval"])
  results.write_results(workdir, [res], title=f"{method} on {config['dataset']} (n={n})")
  return [res]


def main(argv):
  del argv
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  rows = train_and_evaluate(FLAGS.config, FLAGS.workdir)
  print(results.results_table(rows))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
