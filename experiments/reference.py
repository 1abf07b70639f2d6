r"""Reference rows on a dataset: Zero-shot and Full retrieval, or Full and Random
classification.

  python -m experiments.reference --dataset msrvtt_sim --scale 0.1 --workdir runs/ref

Writes ``config.json``, ``metrics.jsonl``, ``results.json`` (a list of the
foundation's results dicts, one per row) and ``results.md`` into ``--workdir``.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app, flags

from embed import simulate
from mmdd_jax import data, reference, results

FLAGS = flags.FLAGS


def define_flags():
  """Flags are defined only when this module runs as the binary (so that the demo
  and notebooks can import ``train_and_evaluate``)."""
  flags.DEFINE_string("dataset", "msrvtt_sim",
                      "a store directory, or a simulator name: " + ", ".join(sorted(simulate.DATASETS)))
  flags.DEFINE_float("scale", 1.0, "simulator scale in (0, 1] (ignored for a store directory)")
  flags.DEFINE_integer("seed", 0, "simulator seed and training key")
  flags.DEFINE_string("workdir", None, "output directory (created)")
  flags.DEFINE_string("data_dir", None, "where simulated stores are cached (default runs/data)")
  flags.DEFINE_integer("runs", 1, "Full-retrieval training runs (seeds) to average; "
                       "classification always uses --cls_runs")
  flags.DEFINE_integer("cls_runs", 5, "linear-head runs for classification rows")
  flags.DEFINE_integer("epochs", 10, "Full retrieval: epochs of SGD over the train split")
  flags.DEFINE_float("lr", 0.01, "Full retrieval: SGD learning rate")
  flags.DEFINE_integer("batch_size", 128, "Full retrieval: batch size")
  flags.DEFINE_float("tau", reference.FULL_TAU, "Full retrieval: InfoNCE temperature")
  flags.DEFINE_string("task", "auto", "retrieval, classification, or auto (from the store: "
                      "≥3 modalities or no labels → retrieval)")


def task_of(st) -> str:
  sim = (st.manifest.get("extra") or {}).get("simulator") or {}
  if "task" in sim:
    return sim["task"]
  return "classification" if (st.num_classes and len(st.modalities) == 2) else "retrieval"


def train_and_evaluate(config: dict, workdir: str) -> list[dict]:
  """Runs the reference rows described by ``config`` and writes the workdir files."""
  os.makedirs(workdir, exist_ok=True)
  results.write_config(workdir, config)
  metrics = results.MetricsWriter(workdir)
  t0 = time.time()
  st = data.resolve_store(config["dataset"], scale=config["scale"], seed=config["seed"],
                          data_dir=config.get("data_dir"))
  t_data = time.time() - t0
  key = jax.random.key(config["seed"])
  task = config["task"] if config["task"] != "auto" else task_of(st)
  rows = []
  if task == "retrieval":
    t0 = time.time()
    p0 = reference.pretrained_heads(st)
    test_xs = data.load_split(st, "test", "features")
    zs, _ = reference.evaluate_heads_retrieval(p0, test_xs)
    t_zs = time.time() - t0
    rows.append(results.make_results(dataset=config["dataset"], method="zero_shot", n_syn=0,
                                     config=config, retrieval_runs=[zs],
                                     time_s={"data": t_data, "eval": t_zs}))
    train_xs = data.load_split(st, "train", "features")
    full_runs = []
    t0 = time.time()
    for r in range(config["runs"]):
      p, losses = reference.train_full_retrieval(
          jax.random.fold_in(key, r), p0, train_xs, epochs=config["epochs"], lr=config["lr"],
          batch_size=config["batch_size"], tau=config["tau"])
      losses = np.asarray(losses)
      if not np.all(np.isfinite(losses)):
        raise FloatingPointError(f"Full training run {r}: non-finite loss {losses}")
      for e, l in enumerate(losses):
        metrics.write(stage="full", run=r, epoch=e + 1, loss=float(l))
      full_runs.append(reference.evaluate_heads_retrieval(p, test_xs)[0])
    rows.append(results.make_results(dataset=config["dataset"], method="full", n_syn=None,
                                     config=config, retrieval_runs=full_runs,
                                     time_s={"data": t_data, "train_eval": time.time() - t0}))
  else:
    t0 = time.time()
    accs = reference.reference_classification(st, key, runs=config["cls_runs"])
    rows.append(results.make_results(dataset=config["dataset"], method="full", n_syn=None,
                                     config=config, accuracy_runs=accs,
                                     time_s={"data": t_data, "train_eval": time.time() - t0}))
  for r in rows:
    metrics.write(stage="result", method=r["method"], avg=r["avg"], accuracy=r["accuracy"])
  results.write_results(workdir, rows, title=f"Reference rows: {config['dataset']} "
                        f"(scale {config['scale']:g}, seed {config['seed']})")
  return rows


def main(argv):
  del argv
  config = {k: getattr(FLAGS, k) for k in ("dataset", "scale", "seed", "data_dir", "runs",
                                           "cls_runs", "epochs", "lr", "batch_size", "tau", "task")}
  rows = train_and_evaluate(config, FLAGS.workdir)
  print(results.results_table(rows))


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("workdir")
  app.run(main)
