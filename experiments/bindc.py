r"""ImageBindDC: distil a labelled embedding store per class and evaluate it.

  python -m experiments.bindc --config=experiments/configs/bindc.py:dataset=vggs10k_sim,ipc=1 \
      --workdir=runs/bindc

Writes ``config.json``, ``metrics.jsonl``, ``results.json`` (one dict, or a list when
``method`` names several methods joined by ``+``), ``results.md``, the distilled set as
a v1 store (``distilled/``; ``distilled-<method>/`` for several methods) and Orbax
checkpoints (``ckpt/<method>/``; a rerun resumes). See ``docs/bindc.md``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from absl import app, flags, logging
from ml_collections import config_flags
import jax
import numpy as np

import bindc_jax as B
from bindc_jax import evaluate as eval_lib
from embed import store as store_lib
from mmdd_jax import classification
from mmdd_jax import data as data_lib
from mmdd_jax import results as results_lib

_FLAGS = {}


def define_flags():
  """Flags exist only when this module runs as the binary, so the demo and the
  notebooks can import :func:`train_and_evaluate`."""
  _FLAGS["config"] = config_flags.DEFINE_config_file(
      "config", "experiments/configs/bindc.py", "ImageBindDC config file, "
      "`path:key=value,...` (see the config's docstring; local=1 for a seconds-long run).",
      lock_config=False)
  _FLAGS["workdir"] = flags.DEFINE_string("workdir", None,
                                          "output directory (created; reruns resume)")

SELECTION_METHODS = ("random", "herding")


def loss_config(c) -> B.LossConfig:
  return B.LossConfig(
      dist=B.DistanceConfig(alpha=c.alpha, beta=c.beta, num_freqs=c.num_freqs,
                            freq_scale=c.freq_scale,
                            bandwidth=c.bandwidth if c.bandwidth > 0 else None),
      lam_uni=c.lam_uni, lam_cross=c.lam_cross, lam_joint=c.lam_joint, uni_scale=c.uni_scale,
      lam_icm=c.lam_icm, lam_cgm=c.lam_cgm)


def distill_config(c, method: str) -> B.DistillConfig | None:
  """The method's loop config. With ``lr_select`` the learning rate is set later by the
  selection rule (normalised updates); without it, SPEC's fixed rates (``lr``; the
  CFD family ``bindc_lr`` when > 0) with plain SGD."""
  lc = B.method_loss_config(method, loss_config(c))
  if lc is None:
    return None
  lr = c.bindc_lr if (lc.kind == "bindc" and c.bindc_lr > 0) else c.lr
  return B.DistillConfig(
      loss=lc, augment=B.AugmentConfig(dropout=c.aug_dropout, jitter=c.aug_jitter,
                                       mixup=c.aug_mixup),
      iterations=c.iterations, real_batch=c.real_batch, syn_batch=c.syn_batch, lr=lr,
      momentum=c.momentum, project=bool(c.project), normalize=bool(c.lr_select),
      cfd_real=c.cfd_real, cfd_pool_every=c.cfd_pool_every)


def lr_grid(c) -> list[float]:
  try:
    grid = [float(v) for v in str(c.lr_grid).split("+") if v]
  except ValueError as e:
    raise ValueError(f"config key 'lr_grid': expected learning rates joined by '+', "
                     f"found '{c.lr_grid}'") from e
  if not grid or min(grid) <= 0:
    raise ValueError(f"config key 'lr_grid': expected positive learning rates, found '{c.lr_grid}'")
  return grid


def eval_heads(c) -> list[str]:
  heads = [h for h in c.eval_heads.split("+") if h]
  for h in heads:
    if h not in classification.HEADS:
      raise ValueError(f"config key 'eval_heads': expected heads from {classification.HEADS} "
                       f"joined by '+', found '{c.eval_heads}'")
  return heads or ["linear"]


def write_distilled(path: str, st: store_lib.Store, syn: dict, rows: np.ndarray | None,
                    train_ids: list, method: str, c) -> None:
  """The distilled set as a v1 store (split ``train``).

  Selection methods (random, herding) store the selected real rows (their features,
  embeddings, ids and captions). Learned sets store the learned unit-norm embeddings;
  since nothing is learned in feature space, their ``features`` field holds the same
  embeddings (``feature_dim`` = embedding dim)."""
  mods = sorted(syn)
  ncls, ipc = syn[mods[0]].shape[:2]
  flat, labels = B.flatten(syn)
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
                           "init": c.init, "iterations": int(c.iterations)}})


def _cached(path: str, fn):
  """``fn()``'s JSON result, computed once and kept at ``path`` (for resumable tables)."""
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  out = fn()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  store_lib.atomic_write_json(path, results_lib.jsonable(out))
  return out


def train_and_evaluate(config, workdir: str) -> list[dict]:
  """Runs every method of ``config.method`` (``+``-separated); returns the results dicts
  (one per method and evaluation head)."""
  c = config
  os.makedirs(workdir, exist_ok=True)
  results_lib.write_config(workdir, c)
  metrics = results_lib.MetricsWriter(workdir)
  st = data_lib.resolve_store(c.dataset, scale=c.scale, seed=c.seed,
                              data_dir=c.data_dir or None)
  if st.num_classes is None or st.labels("train") is None or st.labels("test") is None:
    raise store_lib.StoreError(f"{st.root}/train/labels.npy: field 'labels': expected class "
                               "labels (ImageBindDC is a classification method), found none")
  mods = [m for m in c.modalities.split("+") if m] or st.modalities
  st.require_modalities(mods, where=f"config key 'modalities' ({c.modalities})")
  heads = eval_heads(c)
  grid = lr_grid(c)
  if c.lr_select and c.val_frac <= 0:
    raise ValueError("config key 'lr_select': the selection rule needs a validation split "
                     f"(val_frac > 0), found val_frac={c.val_frac}")
  t0 = time.time()
  tr_all = data_lib.load_split(st, "train", "embeddings", mods)
  te = data_lib.load_split(st, "test", "embeddings", mods)
  y_all, yte = np.asarray(st.labels("train")), np.asarray(st.labels("test"))
  # The validation split carved from train (stratified): every selection reads only its
  # rows; distillation, Random, Herding and Full use only the rest; test is read once.
  if c.val_frac > 0:
    tr_idx, va_idx = data_lib.validation_split(len(y_all), frac=c.val_frac, seed=c.seed,
                                               labels=y_all)
  else:
    tr_idx, va_idx = np.arange(len(y_all)), np.zeros(0, np.int64)
  tr, ytr = data_lib.take_rows(tr_all, tr_idx), y_all[tr_idx]
  va, yva = data_lib.take_rows(tr_all, va_idx), y_all[va_idx]
  xs_c, mask, rows_c = B.group_by_class(tr, ytr, st.num_classes)
  load_s = time.time() - t0
  methods = [m for m in c.method.split("+") if m]
  for m in methods:
    if m != "full":
      B.method_loss_config(m)  # validates the name before any work
  key = jax.random.key(c.seed)
  k_eval, k_init, k_dist = (jax.random.fold_in(key, i) for i in (1, 2, 3))
  eval_kw = dict(runs=c.eval_runs, epochs=c.eval_epochs, lr=c.eval_lr, batch_size=c.eval_batch,
                 min_steps=c.eval_min_steps, hidden=c.eval_hidden)

  def evaluate(xs, y, head):
    """Test accuracies; epochs chosen on validation when there is a validation split."""
    if c.val_frac > 0:
      return B.evaluate_selected(k_eval, xs, y, va, yva, te, yte, st.num_classes, head=head,
                                 **eval_kw)
    kw = {k: v for k, v in eval_kw.items() if k != "hidden"}
    accs = B.evaluate(k_eval, xs, y, te, yte, st.num_classes, **kw) if head == "linear" else \
        classification.evaluate_runs(k_eval, xs, y, te, yte, st.num_classes, head=head,
                                     hidden=c.eval_hidden, runs=c.eval_runs, lr=c.eval_lr,
                                     batch_size=c.eval_batch,
                                     epochs=eval_lib.epochs_for(len(y), c.eval_epochs,
                                                                  c.eval_batch, c.eval_min_steps))
    return {"epochs": None, "val_accuracy": None, "test": accs}

  def score(syn):
    """Validation accuracy of a candidate set (no test rows)."""
    xs, y = B.flatten(syn)
    return B.evaluate_selected(k_eval, xs, y, va, yva, None, None, st.num_classes,
                               head=heads[0], **{**eval_kw, "runs": c.select_runs}
                               )["val_accuracy"]

  out = []
  for method in methods:
    t1 = time.time()
    sel, syn, rows = None, None, None
    distill_s = 0.0
    if method == "full":
      xs_train, y_train = tr, ytr
    else:
      dcfg = distill_config(c, method)
      init_kind = method if method in SELECTION_METHODS else c.init
      if init_kind == "herding":
        idx = B.herding(xs_c, mask, c.ipc)
      elif init_kind == "random":
        idx = B.random_indices(k_init, mask, c.ipc)
      else:
        idx = None
      syn = (B.initialize("noise", k_init, xs_c, mask, c.ipc) if idx is None
             else B.init.gather(xs_c, idx))
      if idx is not None:  # rows of the store's train split
        rows = tr_idx[np.asarray(rows_c)[np.arange(st.num_classes)[:, None], np.asarray(idx)]]
      if dcfg is not None:
        if c.lr_select:
          log = lambda **m: metrics.write(method=method, stage="lr_select", **m)
          syn0 = syn
          sel = _cached(os.path.join(workdir, "selection", f"{method}.json"),
                        lambda: B.select_lr(syn0, xs_c, mask, dcfg, k_dist, score, grid=grid,
                                            iterations=min(c.select_iterations, c.iterations),
                                            log_fn=log))
          dcfg = dataclasses.replace(dcfg, lr=float(sel["lr"]))
        log = lambda **m: metrics.write(method=method, **m)
        syn, _ = B.distill(syn, xs_c, mask, dcfg, k_dist,
                           log_every=c.log_every, ckpt_dir=os.path.join(workdir, "ckpt", method),
                           ckpt_every=c.ckpt_every, log_fn=log, progress=bool(c.progress),
                           desc=method)
        rows = None
      syn = {m: np.asarray(v) for m, v in syn.items()}
      xs_train, y_train = B.flatten(syn)
      distill_s = time.time() - t1
      path = os.path.join(workdir, "distilled" if len(methods) == 1 else f"distilled-{method}")
      write_distilled(path, st, syn, rows, st.ids("train"), method, c)
    for head in heads:
      t2 = time.time()
      ev = _cached(os.path.join(workdir, "eval", f"{method}-{head}.json"),
                   lambda: evaluate(xs_train, y_train, head))
      res = results_lib.make_results(
          dataset=c.dataset, method=method, n_syn=None if method == "full" else c.ipc,
          config=c, accuracy_runs=ev["test"],
          time_s={"load": load_s, **({"distill": distill_s} if distill_s else {}),
                  "eval": time.time() - t2})
      res["head"] = head
      res["selection"] = {
          "val_rows": int(len(va_idx)), "train_rows": int(len(tr_idx)),
          "eval_epochs": ev["epochs"], "val_accuracy": ev["val_accuracy"],
          "lr": (float(sel["lr"]) if sel else
                 (None if method in SELECTION_METHODS + ("full",)
                  else distill_config(c, method).lr)),
          "lr_rule": "validation" if sel else ("fixed" if method not in SELECTION_METHODS + ("full",)
                                               else None),
          "lr_grid": sel["grid"] if sel else None, "lr_scores": sel["scores"] if sel else None,
          "select_iterations": sel["iterations"] if sel else None}
      metrics.write(method=method, head=head, accuracy=res["accuracy"],
                    accuracy_std=res["accuracy_std"], eval_epochs=ev["epochs"],
                    lr=res["selection"]["lr"])
      out.append(res)
  title = f"ImageBindDC — {c.dataset}, {c.ipc} ipc"
  results_lib.write_results(workdir, out[0] if len(out) == 1 else out, title)
  if len(heads) > 1:
    store_lib.atomic_write_text(os.path.join(workdir, "results.md"),
                                f"# {title}\n\n{results_table(out)}\n")
  return out


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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _FLAGS["workdir"].value is None:
    raise app.UsageError("--workdir is required")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  rows = train_and_evaluate(_FLAGS["config"].value, _FLAGS["workdir"].value)
  print(results_table(rows))


if __name__ == "__main__":
  define_flags()
  app.run(main)
