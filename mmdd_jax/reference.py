"""Method-agnostic reference rows: Zero-shot and Full retrieval, Full classification.
The simulators are calibrated against these alone (:mod:`mmdd_jax.calibrate`).

:func:`train_and_evaluate` is the ``experiments.reference`` binary's run (config
``experiments/configs/reference.py``). The Full retrieval protocol's InfoNCE
temperature is its own key (``full.tau``, default :data:`FULL_TAU`), not the
distillation's ``objective.tau_nce``: the reference rows and the simulators'
calibration do not move when an inner objective is tuned."""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from embed import store as store_lib
from mmdd_jax import classification, data, heads, losses, results, rng, stage, train
from mmdd_jax import workdir as workdir_lib
from mmdd_jax import keys

FULL_TAU = 0.07  # CLIP's initial temperature; the Full protocol's InfoNCE

# The keys of experiments/configs/reference.py (mmdd_jax.keys); the functions' defaults
# below are read from it.
KEYS = {
    "dataset": ("msrvtt_sim", None, "a store directory, or a simulator name "
                "(embed.simulate.DATASETS)"),
    **keys.STORE,
    "seed": (0, ">=0", "simulator seed and root key (Full run r: fold_in(key, r))"),
    "task": ("auto", ("auto", "retrieval", "classification"), "retrieval | classification | "
             "auto (from the store: the simulator's task, else classification for a labelled "
             "two-modality store)"),
    "full.runs": (1, ">=1", "Full retrieval: training runs (seeds) averaged"),
    "full.epochs": (10, ">=1", "Full retrieval: SGD epochs over the train split"),
    "full.lr": (0.01, ">0", "Full retrieval: SGD learning rate"),
    "full.batch_size": (128, ">=1", "Full retrieval: batch size"),
    "full.tau": (FULL_TAU, ">0", "Full retrieval: symmetric InfoNCE temperature "
                 "(mmdd_jax.reference.FULL_TAU; not objective.tau_nce)"),
    "classification.runs": (5, ">=1", "Full classification: linear-head runs averaged"),
    "classification.epochs": (30, ">=1", "Full classification: epochs"),
    "classification.lr": (1e-3, ">0", "Full classification: learning rate"),
    "classification.batch_size": (256, ">=1", "Full classification: batch size"),
}
_D = {k: d for k, (d, _, _) in KEYS.items()}


def full_loss(tau: float):
  def loss(params, batch, idx):
    del idx
    return losses.pairwise_info_nce(heads.apply_heads(params, batch), tau)
  return loss


def train_full_retrieval(key: jax.Array, params0: Mapping, train_xs: Mapping[str, np.ndarray], *,
                         epochs: int = _D["full.epochs"], lr: float = _D["full.lr"],
                         batch_size: int = _D["full.batch_size"], tau: float = _D["full.tau"]):
  """Full: the pretrained heads trained on all real train data (symmetric InfoNCE
  over all modality pairs, SGD)."""
  xs = {m: jnp.asarray(v) for m, v in train_xs.items()}
  n = len(next(iter(xs.values())))
  fit = train.make_fit(full_loss(tau), optax.sgd(lr), epochs=epochs, batch_size=batch_size, n=n)
  return fit(params0, xs, key)


def reference_retrieval(st: store_lib.Store, key: jax.Array, *, runs: int = _D["full.runs"],
                        **full_kw):
  """Returns ``{"zero_shot": [per-direction], "full": [per-direction per run]}``."""
  mods = st.modalities
  p0 = heads.pretrained_heads(st, mods)
  test_xs = data.load_split(st, "test", "features", mods)
  train_xs = data.load_split(st, "train", "features", mods)
  zs, _ = heads.evaluate_heads_retrieval(p0, test_xs)
  full = []
  for r in range(runs):
    p, _ = train_full_retrieval(jax.random.fold_in(key, r), p0, train_xs, **full_kw)
    full.append(heads.evaluate_heads_retrieval(p, test_xs)[0])
  return {"zero_shot": [zs], "full": full}


def reference_classification(st: store_lib.Store, key: jax.Array, *,
                             runs: int = _D["classification.runs"],
                             epochs: int = _D["classification.epochs"],
                             lr: float = _D["classification.lr"],
                             batch_size: int = _D["classification.batch_size"]):
  """Full-data linear heads on the embeddings (mean of per-modality softmaxes)."""
  if st.num_classes is None or st.labels("train") is None:
    raise store_lib.StoreError(f"{st.root}/train/labels.npy: field 'labels': expected class "
                               "labels for classification, found none")
  tr = data.load_split(st, "train", "embeddings")
  te = data.load_split(st, "test", "embeddings")
  ytr, yte = np.asarray(st.labels("train")), np.asarray(st.labels("test"))
  return classification.evaluate_runs(key, tr, ytr, te, yte, st.num_classes, runs=runs,
                                      epochs=epochs, lr=lr, batch_size=batch_size)


# ------------------------------------------------------------------------------- the run


def task_of(st: store_lib.Store) -> str:
  """``retrieval`` or ``classification``: the simulator's task, else classification for
  a labelled two-modality store."""
  sim = (st.manifest.get("extra") or {}).get("simulator") or {}
  if "task" in sim:
    return sim["task"]
  return "classification" if (st.num_classes and len(st.modalities) == 2) else "retrieval"


def train_and_evaluate(config: Any, workdir: str, *, fresh: bool = False) -> list[dict]:
  """The reference rows of ``config`` (keys of ``experiments/configs/reference.py``) in
  ``workdir`` (bound to the config and locked: :func:`mmdd_jax.workdir.open_workdir`):
  Zero-shot and Full retrieval, or Full classification. Writes ``config.json``,
  ``metrics.jsonl`` (Full's epoch losses, one ``result`` record per row), ``results.json``
  (a list, one results dict per row) and ``results.md``; returns the rows.

  Keys: ``rng.root(seed)``; Full retrieval run ``r`` uses ``fold_in(key, r)``,
  classification the root key (the numbers of the flag-based binary before).
  """
  c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  keys.check(c, KEYS)   # the one check (one line naming the key), before any work
  time_s = {}
  with stage.timed(time_s, "data"):   # the store is validated before the workdir is touched
    st = data.resolve_store(c["dataset"], scale=c["scale"], seed=c["seed"],
                            data_dir=c["data_dir"] or None,
                            check_hashes=c.get("check_hashes", True))
  t_data = time_s["data"]
  with workdir_lib.open_workdir(workdir, config, fresh=fresh,
                                data={"store": workdir_lib.store_digest(st)}):
    return _reference_rows(c, st, t_data, workdir)


def _reference_rows(c: dict, st: store_lib.Store, t_data: float, workdir: str) -> list[dict]:
  # every row is recomputed by a rerun (its stages drop their old records first)
  stages = stage.Stages(workdir)
  key = rng.root(c["seed"])
  task = c["task"] if c["task"] != "auto" else task_of(st)
  full, cls = c["full"], c["classification"]
  rows = []
  if task == "retrieval":
    time_s = {"data": t_data}
    with stages.stage(time="eval", time_s=time_s):
      p0 = heads.pretrained_heads(st)
      test_xs = data.load_split(st, "test", "features")
      zs, _ = heads.evaluate_heads_retrieval(p0, test_xs)
    rows.append(results.make_results(dataset=c["dataset"], method="zero_shot", n_syn=0,
                                     config=c, retrieval_runs=[zs], time_s=time_s))
    train_xs = data.load_split(st, "train", "features")
    full_runs = []
    time_s = {"data": t_data}
    with stages.stage("full", time="train_eval", time_s=time_s) as s:
      for r in range(full["runs"]):
        p, losses = train_full_retrieval(
            jax.random.fold_in(key, r), p0, train_xs, epochs=full["epochs"], lr=full["lr"],
            batch_size=full["batch_size"], tau=full["tau"])
        losses = np.asarray(losses)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
          raise FloatingPointError(f"Full training run {r}: non-finite loss at epoch {bad[0] + 1}")
        for e, l in enumerate(losses):
          s.write(run=r, epoch=e + 1, loss=float(l))
        full_runs.append(heads.evaluate_heads_retrieval(p, test_xs)[0])
    rows.append(results.make_results(dataset=c["dataset"], method="full", n_syn=None,
                                     config=c, retrieval_runs=full_runs, time_s=time_s))
  else:
    time_s = {"data": t_data}
    with stages.stage(time="train_eval", time_s=time_s):
      accs = reference_classification(st, key, runs=cls["runs"], epochs=cls["epochs"],
                                      lr=cls["lr"], batch_size=cls["batch_size"])
    rows.append(results.make_results(dataset=c["dataset"], method="full", n_syn=None,
                                     config=c, accuracy_runs=accs, time_s=time_s))
  with stages.stage("result") as s:
    for r in rows:
      s.write(method=r["method"], avg=r["avg"], accuracy=r["accuracy"])
  results.write_results(workdir, rows, title=f"Reference rows: {c['dataset']} "
                        f"(scale {c['scale']:g}, seed {c['seed']})")
  return rows
