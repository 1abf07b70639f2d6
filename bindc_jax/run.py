"""ImageBindDC runs: a config (``experiments/configs/bindc.py``) and a workdir → results.

:func:`train_and_evaluate` is what ``python -m experiments.bindc`` calls (and the demo,
the tables command and the notebooks). It runs inside
:func:`mmdd_jax.workdir.open_workdir` (the workdir is bound to the config; another
config stops with one line, ``fresh=True`` moves the old contents aside; one run at a
time) and writes:

* ``metrics.jsonl``: ``{"stage": "distill", "method", "step", "loss", …}`` per log step
  (:func:`mmdd_jax.loop.run_loop`), ``{"stage": "lr_select", "method", "lr", "score"}``
  per candidate and ``{"stage": "eval", "method", "head", "accuracy", …}`` per row. A
  resumed run never duplicates records: the loop drops its records beyond the restored
  checkpoint, and a stage that runs again drops its old records first;
* ``results.json`` (a list, one row per method and evaluation head;
  :func:`mmdd_jax.results.write_results`) and ``results.md`` (:func:`results_table`);
* ``distilled/`` (``distilled-<method>/`` for several methods): the distilled set as a
  v1 store (:func:`write_distilled`);
* ``ckpt/<method>/`` (Orbax), ``selection/<method>.json`` and ``eval/<method>-<head>.json``:
  what a rerun of the same config on the same store content reuses (bit-identical
  results; the workdir is bound to both, so these caches are too).

Randomness: ``rng.root(seed)`` and the named streams ``"init"``, ``"distill"`` (the
distillation and every lr candidate) and ``"eval"``.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from bindc_jax import distill as distill_lib
from bindc_jax import evaluate as eval_lib
from bindc_jax import init as init_lib
from bindc_jax import plan as plan_lib
from bindc_jax import select as select_lib
from embed import store as store_lib
from mmdd_jax import data as data_lib
from mmdd_jax import distributed
from mmdd_jax import keys
from mmdd_jax import results as results_lib
from mmdd_jax import rng
from mmdd_jax import stage as stage_lib
from mmdd_jax import workdir as workdir_lib

SELECTION_METHODS = ("random", "herding")
ALL_MODALITIES = "all"


# The config → dataclass builders and the one check live with the plan.
loss_config, distill_config = plan_lib.loss_config, plan_lib.distill_config
methods, check_config, resolve = plan_lib.methods, plan_lib.check_config, plan_lib.resolve


# --- outputs ---

def write_distilled(path: str, st: store_lib.Store, syn: dict, rows: np.ndarray | None,
                    train_ids: list, method: str, plan: plan_lib.Plan) -> None:
  """The distilled set as a v1 store (split ``train``).

  Selection methods (random, herding) store the selected real rows (their features,
  embeddings, ids and captions). Learned sets store the learned unit-norm embeddings;
  since nothing is learned in feature space, their ``features`` field holds the same
  embeddings (``feature_dim`` = embedding dim)."""
  mods = sorted(syn)
  ncls, ipc = syn[mods[0]].shape[:2]
  flat, labels = eval_lib.flatten(syn)
  if rows is not None:
    r = rows.reshape(-1)
    feats = {m: np.asarray(st.features("train", m))[r] for m in mods}
    specs = {m: store_lib.ModalitySpec(st.spec(m).feature_dim, st.spec(m).embedding_dim)
             for m in mods}
    ids = [train_ids[i] for i in r]
    caps = st.captions("train")
    caps = [caps[i] for i in r] if caps is not None else None
  else:
    feats = flat
    specs = {m: store_lib.ModalitySpec(flat[m].shape[1], flat[m].shape[1]) for m in mods}
    ids = [f"{method}-c{k // ipc:03d}-{k % ipc:03d}" for k in range(ncls * ipc)]
    caps = None
  store_lib.write_store(
      path, specs, {"train": dict(ids=ids, features=feats, embeddings=flat, labels=labels,
                                  captions=caps)},
      encoder=st.manifest["encoder"].get("name", "unknown"),
      checkpoint_sha256=st.manifest["encoder"].get("checkpoint_sha256", ""),
      class_names=st.class_names, command=f"python -m experiments.bindc (method={method})",
      extra={"distilled": {"method": method, "ipc": int(ipc), "source": os.path.abspath(st.root),
                           "features": "real" if rows is not None else "embeddings",
                           "init": plan.init, "iterations": plan.iterations}})


def results_table(rows) -> str:
  """Markdown: method, head, ipc, test accuracy, chosen lr and evaluation epochs."""
  lines = ["| method | head | ipc/n | accuracy (%) | lr | eval epochs | val acc | min |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    s = r.get("selection") or {}
    lr = s.get("lr")
    va = s.get("val_accuracy")
    lines.append(
        f"| {r['method']} | {r.get('head', 'linear')} | "
        f"{r['n_syn'] if r['n_syn'] is not None else 'all'} | "
        f"{r['accuracy']:.1f} ± {r['accuracy_std']:.1f} | {'' if lr is None else f'{lr:g}'} | "
        f"{s.get('eval_epochs') or ''} | {'' if va is None else f'{va:.1f}'} | "
        f"{sum(r['time_s'].values()) / 60:.2f} |")
  return "\n".join(lines)


# --- the run ---

def train_and_evaluate(config, workdir: str, *, fresh: bool = False) -> list[dict]:
  """Runs every method of ``config.method`` in ``workdir`` (module docstring); returns
  the results rows (one per method and evaluation head)."""
  plan = keys.plan_of(config, plan_lib.Plan, plan_lib.resolve)   # one check
  # Then the store (the workdir is not touched yet).
  st = data_lib.resolve_store(**plan.store)
  if st.num_classes is None or st.labels("train") is None or st.labels("test") is None:
    raise store_lib.StoreError(f"{st.root}/train/labels.npy: field 'labels': expected class "
                               "labels (ImageBindDC is a classification method), found none")
  mods = st.modalities if ALL_MODALITIES in plan.modalities else list(plan.modalities)
  st.require_modalities(mods, where=f"config key 'modalities' ({'+'.join(plan.modalities)})")
  split = split_rows(plan, st)
  with workdir_lib.open_workdir(workdir, plan.config, fresh=fresh,
                                data={"store": workdir_lib.store_digest(st)}):
    return _run(plan, st, mods, split, workdir)


def split_rows(plan: plan_lib.Plan, st) -> tuple[np.ndarray, np.ndarray]:
  """The validation split carved from train (stratified): every selection reads only its
  rows; distillation, Random, Herding and Full use only the rest; test is read once.
  Computed before the workdir exists (a too-small split stops with one line)."""
  y_all = np.asarray(st.labels("train"))
  if plan.val_fraction > 0:
    return data_lib.validation_split(len(y_all), frac=plan.val_fraction, seed=plan.seed,
                                     labels=y_all, key="val_fraction")
  return np.arange(len(y_all)), np.zeros(0, np.int64)


def _run(plan: plan_lib.Plan, st, mods, split, workdir: str) -> list[dict]:
  # the stages, per method: lr selection → distillation → evaluation per head; the
  # selection and each evaluation cached in the workdir (bound to the config and store)
  stages = stage_lib.Stages(workdir)
  heads = list(plan.heads)
  with stages.stage(time="load"):
    tr_all = data_lib.load_split(st, "train", "embeddings", mods)
    te = data_lib.load_split(st, "test", "embeddings", mods)
    y_all, yte = np.asarray(st.labels("train")), np.asarray(st.labels("test"))
    tr_idx, va_idx = split
    tr, ytr = data_lib.take_rows(tr_all, tr_idx), y_all[tr_idx]
    va, yva = data_lib.take_rows(tr_all, va_idx), y_all[va_idx]
    xs_c, mask, rows_c = init_lib.group_by_class(tr, ytr, st.num_classes)
  names = list(plan.methods)
  key = rng.root(plan.seed)
  k_init, k_dist, k_eval = (rng.stream(key, s) for s in ("init", "distill", "eval"))
  ev_kw = dict(plan.eval)

  def evaluate(xs, y, head):
    """Test accuracies; epochs chosen on validation when there is a validation split."""
    if plan.val_fraction > 0:
      return eval_lib.evaluate_selected(k_eval, xs, y, va, yva, te, yte, st.num_classes,
                                        head=head, **ev_kw)
    return {"epochs": None, "val_accuracy": None,
            "test": eval_lib.evaluate(k_eval, xs, y, te, yte, st.num_classes, head=head,
                                      **ev_kw)}

  def score(syn):
    """Validation accuracy of a candidate set (no test rows)."""
    xs, y = eval_lib.flatten(syn)
    return eval_lib.evaluate_selected(k_eval, xs, y, va, yva, None, None, st.num_classes,
                                      head=heads[0], **{**ev_kw, "runs": plan.select_runs}
                                      )["val_accuracy"]

  out = []
  for method in names:
    sel, dcfg = None, None
    time_s = {"load": stages.time_s["load"]}   # this method's rows' (+ distill, eval)
    if method == "full":
      xs_train, y_train = tr, ytr
    else:
      # the distill stage's time covers the initialisation and the lr selection; its
      # loop resumes from its checkpoint (dropping only its records beyond it)
      with stages.stage("distill", method=method, truncate=False, time="distill",
                        time_s=time_s) as sd:
        dcfg = plan.distill[method]
        init_kind = method if method in SELECTION_METHODS else plan.init
        if init_kind == "herding":
          idx = init_lib.herding(xs_c, mask, plan.ipc)
        elif init_kind == "random":
          idx = init_lib.random_indices(k_init, mask, plan.ipc)
        else:
          idx = None
        syn = (init_lib.initialize(init_kind, k_init, xs_c, mask, plan.ipc) if idx is None
               else init_lib.gather(xs_c, idx))
        rows = None   # rows of the store's train split (selection methods only)
        if dcfg is None:
          rows = tr_idx[np.asarray(rows_c)[np.arange(st.num_classes)[:, None], np.asarray(idx)]]
        else:
          if plan.select:
            syn0 = syn

            def select(method=method, syn0=syn0, dcfg=dcfg):
              with stages.stage("lr_select", method=method) as s:   # computed again: its records too
                return select_lib.select_lr(
                    syn0, xs_c, mask, dcfg, k_dist, score, grid=plan.select_grid,
                    iterations=min(plan.select_iterations, plan.iterations), log_fn=s.write)
            sel = stage_lib.cached(os.path.join(workdir, "selection", f"{method}.json"), select)
            dcfg = dataclasses.replace(dcfg, lr=float(sel["lr"]))
          state = distill_lib.distill(
              distill_lib.init_state(syn, dcfg), xs_c, mask, dcfg, k_dist,
              log_every=plan.log_every, ckpt_dir=os.path.join(workdir, "ckpt", method),
              ckpt_every=plan.ckpt_every, metrics=sd.metrics, tags=sd.tags,
              progress=plan.progress, desc=method)
          syn = distill_lib.synthetic(state)
        syn = {m: np.asarray(v) for m, v in syn.items()}
        xs_train, y_train = eval_lib.flatten(syn)
      path = os.path.join(workdir, "distilled" if len(names) == 1 else f"distilled-{method}")
      distributed.on_writer(lambda: write_distilled(path, st, syn, rows, st.ids("train"),
                                                    method, plan), f"writing {path}")
    for head in heads:
      row_time = dict(time_s)
      with stages.stage("eval", method=method, head=head, time="eval", time_s=row_time) as s:
        ev = stage_lib.cached(os.path.join(workdir, "eval", f"{method}-{head}.json"),
                              lambda: evaluate(xs_train, y_train, head))
      res = results_lib.make_results(
          dataset=plan.dataset, method=method, n_syn=None if method == "full" else plan.ipc,
          config=plan.config, accuracy_runs=ev["test"], time_s=row_time)
      res["head"] = head
      res["selection"] = {
          "val_rows": int(len(va_idx)), "train_rows": int(len(tr_idx)),
          "eval_epochs": ev["epochs"], "val_accuracy": ev["val_accuracy"],
          "lr": float(sel["lr"]) if sel else (dcfg.lr if dcfg else None),
          "lr_rule": "validation" if sel else ("fixed" if dcfg else None),
          "lr_grid": sel["grid"] if sel else None, "lr_scores": sel["scores"] if sel else None,
          "select_iterations": sel["iterations"] if sel else None}
      s.write(accuracy=res["accuracy"], accuracy_std=res["accuracy_std"],
              eval_epochs=ev["epochs"], lr=res["selection"]["lr"])
      out.append(res)
  title = f"ImageBindDC — {plan.dataset}, {plan.ipc} ipc"
  results_lib.write_results(workdir, out, title, table=results_table(out))
  return out
