"""One way to run a stage: its ``metrics.jsonl`` records, its time and its caches.

Every orchestrator (``hopa_jax.run``, ``hopa_jax.study``, ``hopa_jax.cross_arch``,
``bindc_jax.run``, ``mmdd_jax.reference``) runs its stages through a :class:`Stages`
opened on its (bound, locked) workdir::

  stages = Stages(workdir, time_s=("experts", "distill", "eval"))
  with stages.stage("eval", time="eval") as s:    # drops the old "eval" records
    out = evaluate(...)
    s.write(run=0, retrieval=out)                 # {"stage": "eval", "run": 0, …}
  results.make_results(..., time_s=stages.time_s)

* **Resume.** On entry a stage drops its previous records (those whose fields equal
  its tags, :meth:`mmdd_jax.results.MetricsWriter.truncate`): a rerun recomputes the
  stage and writes them again, never twice. A stage whose loop resumes from a
  checkpoint passes ``truncate=False`` and hands ``s.metrics`` / ``s.tags`` to the
  loop, which drops only the records beyond its restored step
  (:func:`mmdd_jax.loop.run_loop`).
* **Time.** The block's wall-clock seconds are added to ``time_s[time]`` (the
  ``Stages``' own dict, or the ``time_s`` given: a per-row dict) and kept as
  ``s.seconds``.
* **Records.** ``s.write(**fields)`` writes ``{**tags, **fields}`` (plus the writer's
  ``time``).

Caches (what a rerun reuses instead of recomputing):

* :func:`cached`: a JSON result at a path, optionally bound to an identity recorded
  with it (``"ident"``: read only when it equals this run's); a new result is written
  atomically, by the writer process, once ``accept`` (e.g. "the shared directory takes
  this run") has returned.
* :func:`finished`: a finished row's results, when its workdir is bound to exactly this
  config and its stores' current content (the table and sweep rows).

With several processes only the writer writes (:mod:`mmdd_jax.distributed`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

from embed.store import MANIFEST, atomic_write_json
from mmdd_jax import data, distributed, results
from mmdd_jax import workdir as workdir_lib

IDENT = "ident"   # the field of a cached result that holds the identity it is bound to
_clock = time.perf_counter   # (``Stages.stage``'s ``time`` argument shadows the module)


@contextlib.contextmanager
def timed(time_s: dict, key: str) -> Iterator[None]:
  """Adds the block's wall-clock seconds to ``time_s[key]`` (for a stage timed before
  its workdir exists, e.g. reading the store)."""
  t0 = _clock()
  yield
  time_s[key] = time_s.get(key, 0.0) + (_clock() - t0)


@dataclasses.dataclass
class Stage:
  """A running stage: its records' tags, the run's writer and (after the block) its
  seconds."""
  metrics: results.MetricsWriter
  tags: dict
  seconds: float = 0.0

  def write(self, **fields) -> None:
    """One record ``{**tags, **fields}``."""
    self.metrics.write(**self.tags, **fields)


class Stages:
  """A run's stages in ``workdir`` (module docstring): one metrics writer (``name``,
  default ``metrics.jsonl``) and one ``time_s`` dict, ``{key: 0.0}`` for the keys
  given (a results row lists them even when a stage does not run)."""

  def __init__(self, workdir: str, time_s: Sequence[str] = (), name: str = "metrics.jsonl"):
    self.metrics = results.MetricsWriter(workdir, name)
    self.time_s = {k: 0.0 for k in time_s}

  @contextlib.contextmanager
  def stage(self, name: str | None = None, *, time: str | None = None,
            time_s: dict | None = None, truncate: bool = True, **tags) -> Iterator[Stage]:
    """Runs one stage: its records are tagged ``{"stage": name, **tags}`` (``name``
    None: a stage that writes no records), dropped on entry unless ``truncate`` is
    False, and its seconds are added to ``(time_s or self.time_s)[time]``."""
    tags = ({"stage": name} if name is not None else {}) | tags
    if truncate and tags:
      self.metrics.truncate(tags)
    s = Stage(self.metrics, tags)
    t0 = _clock()
    yield s
    s.seconds = _clock() - t0
    if time is not None:
      into = self.time_s if time_s is None else time_s
      into[time] = into.get(time, 0.0) + s.seconds


def write_json(path: str, value: Any) -> None:
  """Writes ``value`` (JSON-normalised) to ``path`` atomically, by the writer process
  (every process waits for it; a failure there reaches all as one line)."""
  def write():
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write_json(path, results.jsonable(value))
  distributed.on_writer(write, f"writing {path}")


def _read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def cached(path: str, compute: Callable[[], Any], *, ident: Any = None,
           accept: Callable[[Any], Any] | None = None) -> Any:
  """``compute()``'s JSON result, kept at ``path`` so a rerun reuses it.

  ``ident`` None: the file belongs to this run whenever it exists (it lives in a
  workdir bound to the config, so the workdir's binding covers it). Otherwise the
  result (a dict) records ``ident`` (JSON-normalised) under ``"ident"`` and is reused
  only when that equals this run's; another identity is recomputed and replaces it.

  ``accept(result)`` (when given) is called on a reused and on a new result before
  anything is written; it raises to refuse (the shared directory holds another run's
  data): then nothing is written. Returns the result as read, or as ``compute``
  returned it (with ``"ident"`` set)."""
  if ident is not None:
    ident = json.loads(json.dumps(results.jsonable(ident)))
  if os.path.exists(path):
    got = _read_json(path)
    if ident is None or (isinstance(got, dict) and got.get(IDENT) == ident):
      if accept is not None:
        accept(got)
      return got
  out = compute()
  if ident is not None:
    out[IDENT] = ident
  if accept is not None:
    accept(out)
  write_json(path, out)
  return out


def finished(workdir: str, config: Any, stores: Mapping[str, str],
             title: str = "") -> list[dict] | None:
  """The rows of a *finished* run in ``workdir`` of exactly ``config`` on the current
  content of ``stores`` (``{binding name: store root}``, e.g. ``{"store": root}``:
  :func:`mmdd_jax.workdir.finished_results`), else None — also when a store is missing
  (its manifest absent)."""
  if not os.path.exists(os.path.join(workdir, "results.json")):
    return None
  for root in stores.values():
    if not os.path.exists(os.path.join(root, MANIFEST)):
      return None
  return workdir_lib.finished_results(
      workdir, config, {k: workdir_lib.store_digest(r) for k, r in stores.items()}, title=title)


def finished_run(workdir: str, plan: Any) -> list[dict] | None:
  """:func:`finished` for a run's plan (HoPA's or ImageBindDC's ``Plan``): its config on
  the current content of its store (``plan.store``: the store's resolve keywords)."""
  s = plan.store
  root = data.store_root(s["dataset"], scale=s["scale"], seed=s["seed"],
                         data_dir=s["data_dir"])
  return finished(workdir, plan.config, {"store": root})
