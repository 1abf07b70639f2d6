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
import os
import time

from absl import app, flags, logging
from ml_collections import config_flags
import jax
import numpy as np

import bindc_jax as B
from embed import store as store_lib
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
  lc = B.method_loss_config(method, loss_config(c))
  if lc is None:
    return None
  lr = c.bindc_lr if (lc.kind == "bindc" and c.bindc_lr > 0) else c.lr
  return B.DistillConfig(
      loss=lc, augment=B.AugmentConfig(dropout=c.aug_dropout, jitter=c.aug_jitter,
                                       mixup=c.aug_mixup),
      iterations=c.iterations, real_batch=c.real_batch, syn_batch=c.syn_batch, lr=lr,
      momentum=c.momentum, project=bool(c.project), cfd_real=c.cfd_real,
      cfd_pool_every=c.cfd_pool_every)


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


def train_and_evaluate(config, workdir: str) -> list[dict]:
  """Runs every method of ``config.method`` (``+``-separated); returns the results dicts."""
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
  t0 = time.time()
  tr = data_lib.load_split(st, "train", "embeddings", mods)
  te = data_lib.load_split(st, "test", "embeddings", mods)
  ytr, yte = np.asarray(st.labels("train")), np.asarray(st.labels("test"))
  xs_c, mask, rows_c = B.group_by_class(tr, ytr, st.num_classes)
  load_s = time.time() - t0
  methods = [m for m in c.method.split("+") if m]
  for m in methods:
    if m != "full":
      B.method_loss_config(m)  # validates the name before any work
  key = jax.random.key(c.seed)
  eval_kw = dict(runs=c.eval_runs, epochs=c.eval_epochs, lr=c.eval_lr, batch_size=c.eval_batch)
  out = []
  for method in methods:
    t1 = time.time()
    if method == "full":
      accs = B.evaluate(jax.random.fold_in(key, 1), tr, ytr, te, yte, st.num_classes,
                        min_steps=c.eval_min_steps, **eval_kw)
      res = results_lib.make_results(dataset=c.dataset, method="full", n_syn=None, config=c,
                                     accuracy_runs=accs,
                                     time_s={"load": load_s, "eval": time.time() - t1})
      out.append(res)
      metrics.write(method="full", accuracy=res["accuracy"], accuracy_std=res["accuracy_std"])
      continue
    dcfg = distill_config(c, method)
    init_kind = method if method in SELECTION_METHODS else c.init
    k_init = jax.random.fold_in(key, 2)
    if init_kind == "herding":
      idx = B.herding(xs_c, mask, c.ipc)
    elif init_kind == "random":
      idx = B.random_indices(k_init, mask, c.ipc)
    else:
      idx = None
    syn = (B.initialize("noise", k_init, xs_c, mask, c.ipc) if idx is None
           else B.init.gather(xs_c, idx))
    rows = np.asarray(rows_c)[np.arange(st.num_classes)[:, None], np.asarray(idx)] \
        if idx is not None else None
    if dcfg is not None:
      log = lambda **m: metrics.write(method=method, **m)
      syn, _ = B.distill(syn, xs_c, mask, dcfg, jax.random.fold_in(key, 3),
                         log_every=c.log_every, ckpt_dir=os.path.join(workdir, "ckpt", method),
                         ckpt_every=c.ckpt_every, log_fn=log, progress=bool(c.progress),
                         desc=method)
      rows = None
    syn = {m: np.asarray(v) for m, v in syn.items()}
    t2 = time.time()
    accs = B.evaluate_distilled(jax.random.fold_in(key, 1), syn, te, yte,
                                min_steps=c.eval_min_steps, **eval_kw)
    t3 = time.time()
    path = os.path.join(workdir, "distilled" if len(methods) == 1 else f"distilled-{method}")
    write_distilled(path, st, syn, rows, st.ids("train"), method, c)
    res = results_lib.make_results(dataset=c.dataset, method=method, n_syn=c.ipc, config=c,
                                   accuracy_runs=accs,
                                   time_s={"load": load_s, "distill": t2 - t1, "eval": t3 - t2})
    metrics.write(method=method, accuracy=res["accuracy"], accuracy_std=res["accuracy_std"],
                  distill_s=t2 - t1)
    out.append(res)
  title = f"ImageBindDC — {c.dataset}, {c.ipc} ipc"
  results_lib.write_results(workdir, out[0] if len(out) == 1 else out, title)
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _FLAGS["workdir"].value is None:
    raise app.UsageError("--workdir is required")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  rows = train_and_evaluate(_FLAGS["config"].value, _FLAGS["workdir"].value)
  print(results_lib.results_table(rows))


if __name__ == "__main__":
  define_flags()
  app.run(main)
