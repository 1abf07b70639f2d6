r"""Re-evaluates any store as a distilled set (retrieval, SPEC §3.6).

  python -m experiments.evaluate --store runs/hopa/distilled --workdir runs/hopa_reeval

Fresh heads start from the store's ``heads.npz`` (the pretrained heads), train on the
store's ``train`` split features and are scored on its ``test`` split (or on
``--test_store``'s). Targets are ``similarity.npy`` when the store has one (else
``I``); the objective is ``--objective`` (default ``hopa``, the HoPA binary's
evaluation objective).

``--protocol=select`` (default, when the store has a ``val`` split — the distilled
stores written by ``experiments.hopa`` do): the lr from a grid and the epochs by
early stopping on that validation split (:mod:`hopa_jax.evaluate`).
``--protocol=paper``: ``--epochs`` epochs at ``--lr`` (default: the learned ``η`` in
the manifest's ``extra.hopa.lr``, else 0.01), ×0.1 at the halfway epoch.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app, flags, logging

from embed import store as store_lib
from hopa_jax import evaluate as ev
from hopa_jax import objectives as obj_lib
from mmdd_jax import data, reference, results

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defined only when run as a binary (importable without flag clashes)."""
  flags.DEFINE_string("store", None, "store directory to evaluate (its train split is the "
                      "training set)")
  flags.DEFINE_string("test_store", None, "store whose test split is scored (default --store)")
  flags.DEFINE_string("workdir", None, "output directory")
  flags.DEFINE_enum("protocol", "select", list(ev.PROTOCOLS),
                    "select: lr grid + early stopping on the store's val split; paper: fixed")
  flags.DEFINE_float("lr", None, "paper protocol: learning rate (default: the store's "
                     "learned η, else 0.01)")
  flags.DEFINE_string("objective", "hopa", "evaluation objective: "
                      + ", ".join(sorted(obj_lib.OBJECTIVES)))
  flags.DEFINE_integer("runs", 5, "evaluation runs (vmapped over keys)")
  flags.DEFINE_integer("epochs", 100, "paper protocol: epochs (lr ×0.1 at the halfway epoch)")
  flags.DEFINE_integer("batch_size", 128, "batch size (n if smaller)")
  flags.DEFINE_integer("seed", 0, "evaluation key")


def train_and_evaluate(config: dict, workdir: str) -> list[dict]:
  """``config`` keys: store, test_store, protocol, lr, objective, runs, epochs,
  batch_size, seed."""
  os.makedirs(workdir, exist_ok=True)
  results.write_config(workdir, config)
  st = store_lib.Store(config["store"])
  test_st = store_lib.Store(config["test_store"]) if config.get("test_store") else st
  extra = (st.manifest.get("extra") or {}).get("hopa") or {}
  lr = config.get("lr") or extra.get("lr") or 0.01
  objective = config.get("objective") or "hopa"
  protocol = config.get("protocol") or "select"
  sim = None
  sim_path = os.path.join(st.root, extra.get("similarity") or "similarity.npy")
  if os.path.exists(sim_path):
    sim = {"S": np.load(sim_path)}
  mods = st.modalities
  test_st.require_modalities(mods, where=f"{st.root} modalities")
  xs = data.load_split(st, "train", "features", mods)
  test_xs = data.load_split(test_st, "test", "features", mods)
  val_xs = None
  if protocol == "select":
    if "val" not in st.splits:
      raise store_lib.StoreError(f"{st.root}: field 'splits': expected a 'val' split for "
                                 f"--protocol=select, found {sorted(st.splits)} "
                                 "(use --protocol=paper)")
    val_xs = data.load_split(st, "val", "features", mods)
  p0 = reference.pretrained_heads(st, mods)
  cfg = ev.EvalConfig(protocol=protocol, runs=config["runs"], epochs=config["epochs"],
                      batch_size=config["batch_size"], objective=objective,
                      sim_kind="full" if sim is not None else "fixed")
  t0 = time.time()
  out = ev.evaluate_set(jax.random.PRNGKey(config["seed"]), p0, xs, test_xs, cfg, val_xs=val_xs,
                        sim_params=sim, learned_lr=lr, progress=True)
  runs = out["runs"]
  lr = out["lr"]
  n = len(next(iter(xs.values())))
  res = results.make_results(dataset=test_st.root, method=extra.get("method", "store"), n_syn=n,
                             config=dict(config, lr_used=lr, objective_used=objective),
                             retrieval_runs=runs, time_s={"eval": time.time() - t0})
  res["eval"] = ev.record(cfg, out)
  results.MetricsWriter(workdir).write(stage="result", avg=res["avg"], eval=res["eval"])
  results.write_results(workdir, [res], title=f"re-evaluation of {st.root}")
  return [res]


def main(argv):
  del argv
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = {k: getattr(FLAGS, k) for k in ("store", "test_store", "protocol", "lr", "objective", "runs",
                                           "epochs", "batch_size", "seed")}
  print(results.results_table(train_and_evaluate(config, FLAGS.workdir)))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["store", "workdir"])
  app.run(main)
