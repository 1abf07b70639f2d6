"""Workdir outputs shared by every binary: ``metrics.jsonl``, ``results.json`` (one
schema) and ``results.md`` (``config.json`` is :mod:`mmdd_jax.workdir`'s).

``results.json`` is a list of rows, each::

  {"dataset", "method", "n_syn" (int|null), "runs",
   "retrieval": {"VT": {"R@1", "R@5", "R@10"}, …} | null, "retrieval_std": {…} | null,
   "avg": {"R@1", "R@5", "R@10"} | null, "accuracy" | null, "accuracy_std" | null,
   "time_s": {stage: seconds}, "device", "config"}

Recalls and accuracies are percentages; means and (population) standard deviations
over runs.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping, Sequence

import numpy as np

from embed.store import atomic_write_json, atomic_write_text, named_os_errors
from mmdd_jax import distributed


def device_string() -> str:
  import jax
  d = jax.devices()
  return f"{d[0].platform}:{d[0].device_kind} x{len(d)}"


def jsonable(obj: Any) -> Any:
  if isinstance(obj, Mapping):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [jsonable(v) for v in obj]
  if isinstance(obj, (np.floating, np.integer)):
    return obj.item()
  if hasattr(obj, "to_dict"):
    return jsonable(obj.to_dict())
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


class MetricsWriter:
  """Appends one JSON object per line to ``<workdir>/metrics.jsonl`` (flushed). With
  several processes only the writer (process 0) writes; elsewhere writes and
  truncations are no-ops (:mod:`mmdd_jax.distributed`)."""

  def __init__(self, workdir: str, name: str = "metrics.jsonl"):
    self.enabled = distributed.is_writer()
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, name)

  def write(self, **record) -> None:
    if not self.enabled:
      return
    record.setdefault("time", time.time())
    with named_os_errors(self.path), open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(jsonable(record)) + "\n")

  def records(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    out = []
    with open(self.path, encoding="utf-8") as f:
      for line in f:
        line = line.strip()
        if line:
          try:
            out.append(json.loads(line))
          except json.JSONDecodeError:
            continue   # a line cut by a kill mid-write
    return out

  def truncate(self, match: Mapping[str, Any], after_step: int | None = None) -> int:
    """Drops the records whose fields equal ``match`` and whose ``step`` is beyond
    ``after_step`` (every matching record when ``after_step`` is None): what a
    resumed stage is about to write again. The file is rewritten atomically; returns
    the number of records dropped."""
    if not self.enabled:
      return 0
    recs = self.records()

    def drop(r):
      if any(r.get(k) != v for k, v in jsonable(dict(match)).items()):
        return False
      return after_step is None or (r.get("step") is not None and r["step"] > after_step)

    keep = [r for r in recs if not drop(r)]
    if len(keep) != len(recs):
      atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))
    return len(recs) - len(keep)


def summarize_retrieval(runs: Sequence[Mapping[str, Mapping[str, float]]]):
  """Mean and std per direction and recall over runs, plus the average row."""
  dirs = list(runs[0])
  ks = list(runs[0][dirs[0]])
  mean = {d: {k: float(np.mean([r[d][k] for r in runs])) for k in ks} for d in dirs}
  std = {d: {k: float(np.std([r[d][k] for r in runs])) for k in ks} for d in dirs}
  avg_runs = [{k: float(np.mean([r[d][k] for d in dirs])) for k in ks} for r in runs]
  avg = {k: float(np.mean([a[k] for a in avg_runs])) for k in ks}
  avg_std = {k: float(np.std([a[k] for a in avg_runs])) for k in ks}
  return mean, std, avg, avg_std


def make_results(*, dataset: str, method: str, n_syn: int | None, config: Any,
                 retrieval_runs: Sequence[Mapping] | None = None,
                 accuracy_runs: Sequence[float] | None = None,
                 time_s: Mapping[str, float] | None = None) -> dict:
  res = {"dataset": dataset, "method": method, "n_syn": n_syn, "runs": 0,
         "retrieval": None, "retrieval_std": None, "avg": None, "avg_std": None,
         "accuracy": None, "accuracy_std": None,
         "time_s": dict(time_s or {}), "device": device_string(), "config": jsonable(config)}
  for r, run in enumerate(retrieval_runs or []):
    for d, rec in run.items():
      for k, v in rec.items():
        if not math.isfinite(v):
          raise FloatingPointError(f"{method} on {dataset}: run {r} {d} {k}: expected a finite "
                                   f"recall, found {v}")
  for r, v in enumerate(accuracy_runs or []):
    if not math.isfinite(v):
      raise FloatingPointError(f"{method} on {dataset}: run {r} accuracy: expected a finite "
                               f"value, found {v}")
  if retrieval_runs:
    mean, std, avg, avg_std = summarize_retrieval(retrieval_runs)
    res.update(retrieval=mean, retrieval_std=std, avg=avg, avg_std=avg_std,
               runs=len(retrieval_runs))
  if accuracy_runs:
    res.update(accuracy=float(np.mean(accuracy_runs)), accuracy_std=float(np.std(accuracy_runs)),
               runs=len(accuracy_runs))
  return res


def _pm(m: float, s: float | None) -> str:
  return f"{m:.1f}" if not s else f"{m:.1f} ± {s:.1f}"


def results_table(rows: Sequence[Mapping], ks: Sequence[str] = ("R@1", "R@5")) -> str:
  """Markdown table: one row per results dict (retrieval or classification)."""
  if not rows:
    return ""
  if rows[0].get("retrieval"):
    dirs = list(rows[0]["retrieval"])
    head = ["method", "n"] + [f"{d} {k}" for d in dirs for k in ks] + [f"avg {k}" for k in ks] + ["min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
      std = r.get("retrieval_std") or {}
      cells = [r["method"], str(r["n_syn"] if r["n_syn"] is not None else "all")]
      cells += [_pm(r["retrieval"][d][k], (std.get(d) or {}).get(k)) for d in dirs for k in ks]
      cells += [_pm(r["avg"][k], (r.get("avg_std") or {}).get(k)) for k in ks]
      cells.append(f"{sum(r['time_s'].values()) / 60:.2f}")
      lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
  head = ["method", "ipc/n", "accuracy (%)", "runs", "min"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    lines.append(f"| {r['method']} | {r['n_syn'] if r['n_syn'] is not None else 'all'} | "
                 f"{_pm(r['accuracy'], r['accuracy_std'])} | {r['runs']} | "
                 f"{sum(r['time_s'].values()) / 60:.2f} |")
  return "\n".join(lines)


def write_results(workdir: str, results: Mapping | Sequence[Mapping], title: str = "",
                  table: str | None = None) -> str:
  """Writes ``results.md`` and then ``results.json`` — always a JSON list of results
  dicts, one per row, for every binary; returns the markdown.

  ``results.json`` is written last: it marks a finished run, so a kill between the two
  never leaves a finished run without its table (and :func:`read_results` derives a
  missing ``results.md`` anyway). ``table``: the markdown body under the title, for
  rows that :func:`results_table` does not fit (e.g. the bound study's); default
  :func:`results_table` of the rows. With several processes only the writer writes."""
  rows = [results] if isinstance(results, Mapping) else list(results)
  body = results_table(rows) if table is None else table.rstrip("\n")
  md = (f"# {title}\n\n" if title else "") + body + "\n"
  if not distributed.is_writer():
    return md
  atomic_write_text(os.path.join(workdir, "results.md"), md)
  atomic_write_json(os.path.join(workdir, "results.json"), jsonable(rows))
  return md


def read_results(workdir: str, title: str = "") -> list[dict]:
  """The rows of ``<workdir>/results.json``; writes ``results.md`` from them when it
  is missing (a run killed between the two files by an older version)."""
  with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
    rows = json.load(f)
  md = os.path.join(workdir, "results.md")
  if not os.path.exists(md) and isinstance(rows, list) and distributed.is_writer():
    try:
      body = results_table(rows)
    except (KeyError, TypeError, IndexError):   # rows of another shape (the bound study's)
      body = "\n".join(f"- `{json.dumps(r.get('method', r) if isinstance(r, dict) else r)}`"
                       for r in rows)
    atomic_write_text(md, (f"# {title}\n\n" if title else "") + body + "\n")
  return rows
