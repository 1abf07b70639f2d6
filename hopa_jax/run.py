r"""HoPA / trajectory-matching runs: experts → distillation → retrieval evaluation.

:func:`train_and_evaluate` is what ``python -m experiments.hopa`` calls (and the demo,
the table and the notebooks). It writes into ``workdir`` (bound to the config and
locked, :mod:`mmdd_jax.workdir`): ``config.json``, ``metrics.jsonl``, ``results.json``
(a list with one results dict; ``time_s`` per stage: experts / distill / eval),
``results.md``, ``experts/`` (Orbax, one step per epoch), ``distill_ckpt/`` (Orbax)
and ``distilled/`` (the distilled set as a store: synthetic features, their
pretrained-head embeddings, the real validation and test splits, ``heads.npz``,
``similarity.npy`` and the learned step size in the manifest's ``extra.hopa``). A
killed run resumes where it stopped; a finished one returns its results.

:func:`evaluate_store` re-evaluates any store as a distilled set
(``python -m experiments.evaluate``).

Both first resolve their config into a frozen plan (:mod:`hopa_jax.plan`: the one check,
the method table applied once, the dataclasses built once) and read only the plan.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from embed import store as store_lib
from hopa_jax import distill as dl
from hopa_jax import evaluate as ev
from hopa_jax import experts as ex
from hopa_jax import inspect_distilled
from hopa_jax import plan as plan_lib
from hopa_jax import similarity as sim_lib
from mmdd_jax import data, distributed, heads as heads_lib, keys, results, rng
from mmdd_jax import stage as stage_lib
from mmdd_jax import workdir as workdir_lib

# What older code reads from this module: the plan's config → dataclass builders.
section, experts_config = plan_lib.section, plan_lib.experts_config
resolve = plan_lib.resolve


def resolve_teacher_lr(plan: plan_lib.Plan, key, p0, train_xs, val_xs, edir: str, progress: bool,
                       accept=None) -> dict:
  """The experts' lr: ``experts.lr``, or (None) :func:`hopa_jax.experts.select_teacher_lr`
  on the validation rows, cached as ``<experts_dir>/teacher_lr.json`` so methods that
  share experts share the choice (:func:`mmdd_jax.stage.cached`). The cache is bound
  to the probe's config, its key and the exact train and validation rows (content
  digests; recorded as its ``"ident"``); ``accept(sel)`` (the experts directory's full
  binding) is called on every choice, and a new selection is written only once it has
  returned (a refused run writes nothing there)."""
  if plan.experts.lr is not None:
    sel = {"lr": float(plan.experts.lr), "rule": "explicit"}
    if accept is not None:
      accept(sel)
    return sel
  probe_cfg = plan.experts
  ident = {"objective": probe_cfg.objective, "obj": results.jsonable(dataclasses.asdict(probe_cfg.obj)),
           "epochs": probe_cfg.epochs, "batch_size": probe_cfg.batch_size,
           "grid": list(probe_cfg.lr_grid), "seed": plan.seed, "val_fraction": plan.val_fraction,
           "init_noise": probe_cfg.init_noise,
           "key": np.asarray(jax.random.key_data(key)).reshape(-1).tolist(),
           "train": ex.data_digest(p0, train_xs), "val": ex.data_digest({}, val_xs),
           "numerics": workdir_lib.NUMERICS}
  return stage_lib.cached(
      os.path.join(edir, "teacher_lr.json"),
      lambda: ex.select_teacher_lr(key, p0, train_xs, val_xs, probe_cfg, progress=progress),
      ident=ident, accept=accept)


def prepare_experts(plan: plan_lib.Plan, key, p0, train_xs, val_xs, edir: str, *, progress: bool = False,
                    metrics=None):
  """The lr choice and the experts' trajectories, under the experts directory's lock
  (a second run sharing it waits, then reads): first the directory's binding without
  the lr (another seed, store content, objective or setting is refused with one line
  before anything is written or computed), then the lr (explicit, cached or selected),
  then the full binding, then the lr cache and the experts. Returns ``(sel, traj)``."""
  ekey = rng.stream(key, "experts")
  with workdir_lib.shared_lock(edir, "experts being trained"):
    digest = ex.data_digest(p0, train_xs)
    ex.check_experts(edir, ex.identity(ekey, p0, train_xs, plan.experts, digest),
                     ignore_lr=True)

    def accept(sel):
      ex.check_experts(edir, ex.identity(ekey, p0, train_xs,
                                         dataclasses.replace(plan.experts, lr=sel["lr"]), digest))
    sel = resolve_teacher_lr(plan, rng.stream(key, "lr_teacher"), p0, train_xs, val_xs, edir,
                             progress, accept=accept)
    ecfg = dataclasses.replace(plan.experts, lr=sel["lr"])
    traj = ex.train_experts(ekey, p0, train_xs, ecfg, edir, progress=progress, metrics=metrics,
                            digest=digest)
  return sel, traj


def write_distilled(path: str, st: store_lib.Store, params0, syn: dict, test_xs: dict, *,
                    lr: float, sim_full: np.ndarray | None, method: str, objective: str,
                    source_ids: list[str], config: Any, val_xs: dict | None = None,
                    val_ids: list[str] | None = None) -> store_lib.Store:
  """The distilled set as a v1 store (train = synthetic, val = the real validation
  rows it was selected on, test = the real test split)."""
  mods = st.modalities
  emb = heads_lib.embed_split(params0, syn)
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
                         embeddings=heads_lib.embed_split(params0, val_xs))
  extra = {"hopa": {"method": method, "objective": objective,
                    "lr": float(lr) if lr is not None else None,
                    "similarity": inspect_distilled.SIMILARITY if sim_full is not None else None,
                    # Relative to the distilled store (a moved or copied tree still
                    # finds it), bound to the source's content by its manifest digest.
                    "source_store": os.path.relpath(os.path.abspath(st.root),
                                                    os.path.abspath(path)),
                    "source_manifest_sha256": store_lib.sha256_file(
                        os.path.join(st.root, store_lib.MANIFEST)),
                    "init_ids": source_ids,
                    "config": results.jsonable(config)}}
  arrays = ({inspect_distilled.SIMILARITY: sim_full.astype(np.float32)} if sim_full is not None
            else None)
  store_lib.write_store(path, specs, splits, heads=heads_lib.heads_to_npz(params0), arrays=arrays,
                        encoder=st.manifest["encoder"].get("name", "unknown") + "+hopa_distilled",
                        checkpoint_sha256=str(st.manifest["encoder"].get("checkpoint_sha256", "")),
                        command=f"python -m experiments.hopa (method={method})", extra=extra)
  return store_lib.Store(path)


def train_and_evaluate(config, workdir: str, *, fresh: bool = False) -> list[dict]:
  """Experts → distillation → evaluation for ``config`` (``experiments/configs/hopa.py``,
  or its :class:`hopa_jax.plan.Plan`, as the tables and the sweep pass it); returns
  ``[results dict]``.

  The store's train split is divided once (:func:`mmdd_jax.data.validation_split`,
  ``val_fraction``, by ``seed``) into train rows (experts, initialisation, Random)
  and validation rows (every selection: ``experts.lr=None`` and the evaluation's lr
  and epochs). The test split is scored once, at the end.
  """
  plan = keys.plan_of(config, plan_lib.Plan, plan_lib.resolve)   # one check
  # Then the store (validated; the workdir is not touched yet).
  st = data.resolve_store(**plan.store)
  split = data.validation_split(st.count("train"), frac=plan.val_fraction, seed=plan.seed)
  if plan.spec["rows"] == "subset":
    data.check_subset_size(plan.n, st)
    if plan.n > len(split[0]):
      raise ValueError(f"config key 'n': expected ≤ {len(split[0])} (train rows after the "
                       f"validation split), found {plan.n}")
  with workdir_lib.open_workdir(workdir, plan.config, fresh=fresh, data=data_binding(st)):
    if os.path.exists(os.path.join(workdir, "results.json")):
      # finished: the workdir is bound to this config and this store content
      return results.read_results(workdir, title=plan.title)
    return _run(plan, st, split, workdir)


def data_binding(st) -> dict:
  """What a HoPA workdir is bound to besides its config: the store's content digest."""
  return {"store": workdir_lib.store_digest(st)}


def _run(plan: plan_lib.Plan, st, split, workdir: str) -> list[dict]:
  # the stages: experts (and the lr probe) → distillation → evaluation → the result
  stages = stage_lib.Stages(workdir, time_s=("experts", "distill", "eval"))
  progress = plan.progress
  method, spec, dcfg = plan.method, plan.spec, plan.distill
  mods = st.modalities
  all_train = data.load_split(st, "train", "features", mods)
  test_xs = data.load_split(st, "test", "features", mods)
  tr_idx, val_idx = split
  train_xs, val_xs = data.take_rows(all_train, tr_idx), data.take_rows(all_train, val_idx)
  del all_train
  n = plan.n if spec["rows"] == "subset" else len(tr_idx)
  p0 = heads_lib.pretrained_heads(st, mods)
  key = rng.root(plan.seed)

  # Initialisation: n random real train instances (all modalities of the same instance).
  init_rows = (np.sort(np.asarray(jax.random.permutation(rng.stream(key, "init"),
                                                         len(tr_idx)))[:n])
               if spec["rows"] == "subset" else np.arange(len(tr_idx)))
  init_syn = {m: train_xs[m][init_rows] for m in mods}
  ids = st.ids("train")
  source_ids = [ids[i] for i in tr_idx[init_rows]]
  lr, sim_params, syn, extra = None, None, init_syn, {}

  if spec["optimize"]:
    with stages.stage("lr_teacher", time="experts") as s:
      edir = plan.experts_dir or os.path.join(workdir, "experts")
      # the experts' loop writes (and on resume truncates) its own "experts" records
      sel, traj = prepare_experts(plan, key, p0, train_xs, val_xs, edir, progress=progress,
                                  metrics=stages.metrics)
      extra["lr_teacher"] = sel["lr"]
      extra["lr_teacher_selection"] = {k: v for k, v in sel.items() if k != stage_lib.IDENT}
      s.write(**extra["lr_teacher_selection"])

    with stages.stage("distill", time="distill", truncate=False) as s:   # the loop resumes
      state = dl.init_state(rng.stream(key, "distill"), dcfg, init_syn, sel["lr"],
                            dl.feature_scale(train_xs))
      state = dl.distill(state, traj, dcfg, ckpt_dir=os.path.join(workdir, "distill_ckpt"),
                         ckpt_every=plan.ckpt_every, log_every=plan.log_every,
                         metrics=s.metrics, tags=s.tags, progress=progress)
      del traj
      syn = {m: np.asarray(v) for m, v in state.syn.items()}
      lr = float(np.exp(np.asarray(state.log_lr)))
      sim_params = state.sim if dcfg.sim_kind != "fixed" else None

  sim_full = (np.asarray(sim_lib.full_matrix(sim_params, n, dcfg.sim_kind, dcfg.sim_alpha))
              if sim_params else None)
  with stages.stage("eval", time="eval") as s:
    ecfg = dataclasses.replace(plan.eval, sim_kind=dcfg.sim_kind if sim_params else "fixed")
    if ecfg.protocol == "paper" and lr is None:
      lr = plan.experts.lr or 0.01  # Random: the paper's lr_teacher (SPEC §3.7)
    if spec["rows"] == "none":   # zero-shot: the pretrained heads, untrained
      out = {"runs": [heads_lib.evaluate_heads_retrieval(p0, test_xs)[0]], "lr": None,
             "epochs": [0], "val_r1": [float(ev.val_avg_r1(heads_lib.embed_split(p0, val_xs)))],
             "lr_grid": None}
    else:
      out = ev.evaluate_set(rng.stream(key, "eval"), p0, syn, test_xs, ecfg, val_xs=val_xs,
                            sim_params=sim_params, learned_lr=lr, progress=progress,
                            ckpt_dir=os.path.join(workdir, "eval_ckpt"))
    runs = out["runs"]
    for r, per in enumerate(runs):
      s.write(run=r, retrieval=per, epochs=out["epochs"][r],
              val_r1=(out["val_r1"] or [None] * len(runs))[r])

  if spec["rows"] == "subset":
    distributed.on_writer(lambda: write_distilled(
        os.path.join(workdir, "distilled"), st, p0, syn, test_xs, lr=lr, sim_full=sim_full,
        method=method, objective=plan.objective, source_ids=source_ids, config=plan.config,
        val_xs=val_xs, val_ids=[ids[i] for i in val_idx]), "writing the distilled store")
  n_syn = n if spec["rows"] == "subset" else None
  res = results.make_results(dataset=plan.store["dataset"], method=method, n_syn=n_syn,
                             config=plan.config,
                             retrieval_runs=runs, time_s=stages.time_s)
  res.update(extra)
  res["learned_lr"] = lr if spec["optimize"] else None
  res["eval"] = ev.record(ecfg, out)
  with stages.stage("result") as s:
    s.write(method=method, avg=res["avg"], avg_std=res["avg_std"], eval=res["eval"])
  results.write_results(workdir, [res], title=plan.title)
  return [res]


def evaluate_store(config, workdir: str, *, fresh: bool = False) -> list[dict]:
  """Re-evaluates the store ``config.store`` as a distilled set
  (``experiments/configs/evaluate.py``): fresh heads from its ``heads.npz`` train on
  its train split and are scored on the test split of ``config.test_store`` (default:
  the same store); targets ``similarity.npy`` when present, else ``I``
  (``config.targets = 'identity'``: ``I`` always). Protocol
  ``select`` reads the store's ``val`` split; ``paper`` trains at ``config.lr``
  (None: the store's learned η, else 0.01)."""
  plan = keys.plan_of(config, plan_lib.EvaluatePlan, plan_lib.resolve_evaluate)
  select = plan.select
  st = store_lib.validate(plan.store, check_hashes=plan.check_hashes,
                          require_splits=("train", "val") if select else ("train",),
                          nonempty=("train", "val") if select else ("train",))
  test_st = (store_lib.validate(plan.test_store, st.modalities, check_hashes=plan.check_hashes,
                                require_splits=("test",), nonempty=("test",))
             if plan.test_store else st)
  if not plan.test_store and (test_st.count("test") if "test" in st.splits else 0) < 1:
    raise store_lib.StoreError(f"{st.root}: field 'splits.test': expected a non-empty test "
                               "split (or config key 'test_store'), found none")
  extra = (st.manifest.get("extra") or {}).get("hopa") or {}
  store_sim = inspect_distilled.load_similarity(st)
  bound = {"store": workdir_lib.store_digest(st)}
  if plan.test_store:
    bound["test_store"] = workdir_lib.store_digest(test_st)
  with workdir_lib.open_workdir(workdir, plan.config, fresh=fresh, data=bound):
    lr = plan.lr or extra.get("lr") or 0.01
    use_sim = store_sim is not None and plan.targets == "store"
    sim = {"S": store_sim} if use_sim else None
    mods = st.modalities
    test_st.require_modalities(mods, where=f"{st.root} modalities")
    xs = data.load_split(st, "train", "features", mods)
    test_xs = data.load_split(test_st, "test", "features", mods)
    val_xs = data.load_split(st, "val", "features", mods) if select else None
    p0 = heads_lib.pretrained_heads(st, mods)
    cfg = dataclasses.replace(plan.eval, sim_kind="full" if sim is not None else "fixed")
    stages = stage_lib.Stages(workdir)
    with stages.stage(time="eval"):
      out = ev.evaluate_set(rng.stream(rng.root(plan.seed), "eval"), p0, xs, test_xs, cfg,
                            val_xs=val_xs, sim_params=sim, learned_lr=lr, progress=plan.progress,
                            ckpt_dir=os.path.join(workdir, "eval_ckpt"))
    n = len(next(iter(xs.values())))
    res = results.make_results(dataset=test_st.root, method=extra.get("method", "store"), n_syn=n,
                               config=plan.config, retrieval_runs=out["runs"],
                               time_s=stages.time_s)
    res["eval"] = ev.record(cfg, out)
    with stages.stage("result") as s:
      s.write(avg=res["avg"], eval=res["eval"])
    results.write_results(workdir, [res], title=f"re-evaluation of {st.root}")
    return [res]
