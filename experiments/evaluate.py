r"""Re-evaluates any store as a distilled set (retrieval, SPEC §3.6).

  python -m experiments.evaluate --store runs/hopa/distilled --workdir runs/hopa_reeval

Fresh heads start from the store's ``heads.npz`` (the pretrained heads), train on the
store's ``train`` split features and are scored on its ``test`` split (or on
``--test_store``'s). The learning rate is the learned ``η`` recorded in the
manifest's ``extra.hopa.lr`` when present, else ``--lr`` (default 0.01); targets are
``similarity.npy`` when the store has one (else ``I``); the objective is the one
recorded in ``extra.hopa.objective`` unless ``--objective`` is given.
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
  flags.DEFINE_float("lr", None, "learning rate (default: the store's learned η, else 0.01)")
  flags.DEFINE_string("objective", None, "inner objective: " + ", ".join(sorted(obj_lib.OBJECTIVES))
                      + " (default: the store's, else hopa)")
  flags.DEFINE_integer("runs", 5, "evaluation runs (vmapped over keys)")
  flags.DEFINE_integer("epochs", 100, "epochs (lr ×0.1 at the halfway epoch)")
  flags.DEFINE_integer("batch_size", 128, "batch size (n if smaller)")
  flags.DEFINE_integer("seed", 0, "evaluation key")


def train_and_evaluate(config: dict, workdir: str) -> list[dict]:
  """``config`` keys: store, test_store, lr, objective, runs, epochs, batch_size, seed."""
  os.makedirs(workdir, exist_ok=True)
  results.write_config(workdir, config)
  st = store_lib.Store(config["store"])
  test_st = store_lib.Store(config["test_store"]) if config.get("test_store") else st
  extra = (st.manifest.get("extra") or {}).get("hopa") or {}
  lr = config.get("lr") or extra.get("lr") or 0.01
  objective = config.get("objective") or extra.get("objective") or "hopa"
  sim = None
  sim_path = os.path.join(st.root, extra.get("similarity") or "similarity.npy")
  if os.path.exists(sim_path):
    sim = {"S": np.load(sim_path)}
  mods = st.modalities
  test_st.require_modalities(mods, where=f"{st.root} modalities")
  xs = data.load_split(st, "train", "features", mods)
  test_xs = data.load_split(test_st, "test", "features", mods)
  p0 = reference.pretrained_heads(st, mods)
  cfg = ev.EvalConfig(runs=config["runs"], epochs=config["epochs"],
                      batch_size=config["batch_size"], objective=objective,
                      sim_kind="full" if sim is not None else "fixed")
  t0 = time.time()
  runs = ev.evaluate_distilled(jax.random.PRNGKey(config["seed"]), p0, xs, test_xs, lr, cfg, sim,
                               progress=True)
  n = len(next(iter(xs.values())))
  res = results.make_results(dataset=test_st.root, method=extra.get("method", "store"), n_syn=n,
                             config=dict(config, lr_used=lr, objective_used=objective),
                             retrieval_runs=runs, time_s={"eval": time.time() - t0})
  results.MetricsWriter(workdir).write(stage="result", avg=res["avg"], lr=lr)
  results.write_results(workdir, [res], title=f"re-evaluation of {st.root}")
  return [res]


def main(argv):
  del argv
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = {k: getattr(FLAGS, k) for k in ("store", "test_store", "lr", "objective", "runs",
                                           "epochs", "batch_size", "seed")}
  print(results.results_table(train_and_evaluate(config, FLAGS.workdir)))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["store", "workdir"])
  app.run(main)
