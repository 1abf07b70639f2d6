r"""Compact summaries of results rows: what a method buys over Random, at a glance.

:func:`retrieval_table` and :func:`classification_table` turn the results dicts of
:mod:`mmdd_jax.results` (one per row) into one short table each — method, n, the
headline metric(s), **Δ vs Random ± std** and minutes — and :func:`plot` draws the
headline metric by method with error bars, Random and Full as reference lines.
:class:`Progress` prints one line per stage of a run (``[m:ss] task · row · stage``).

**Δ vs Random.** A row is compared with the Random row of the *same evaluation* and the
same n: for retrieval the Random row evaluated under the row's evaluation objective
(``row["eval"]["objective"]``; :func:`hopa_jax.table.plan` evaluates Random once per
objective) with ``n_syn`` equal to the row's; for classification the Random row of the
same head and ipc. Full has no Random at its n; it is compared with the Random row of
the same evaluation at the smallest n present (the headroom a distilled set could
close). ``Δ = mean_row − mean_Random`` and ``± = √(s_row² + s_Random²)``, where ``s``
is each row's standard deviation over its evaluation runs (the two rows' runs are
independent draws); it does not include distillation or simulator seeds.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Callable, Mapping, Sequence

NAMES = {"zero_shot": "Zero-shot", "random": "Random", "full": "Full", "hopa": "HoPA",
         "lors": "LoRS", "mtt_vl": "MTT-VL", "tesla": "TESLA", "repblend": "RepBlend",
         "herding": "Herding", "dm": "DM", "mmd": "MMD", "avdd": "AVDD",
         "bindc": "ImageBindDC"}


def base_method(label: str) -> str:
  """``random[hopa]`` → ``random``."""
  return label.split("[", 1)[0]


def display_name(label: str) -> str:
  """``random[hopa]`` → ``Random[hopa]``; ``bindc`` → ``ImageBindDC``."""
  base = base_method(label)
  return NAMES.get(base, base) + label[len(base):]


def minutes(row: Mapping) -> float:
  return sum((row.get("time_s") or {}).values()) / 60.0


def _eval_key(row: Mapping):
  """What makes two rows' evaluations the same: the retrieval evaluation objective, or
  the classification head."""
  if row.get("retrieval") is not None:
    return ("retrieval", (row.get("eval") or {}).get("objective"))
  return ("classification", row.get("head", "linear"))


def random_for(row: Mapping, rows: Sequence[Mapping]) -> Mapping | None:
  """The Random row ``row`` is compared with (module docstring), or None (Zero-shot,
  Random itself, or no Random row under the same evaluation)."""
  m = base_method(row["method"])
  if m in ("random", "zero_shot"):
    return None
  same = [r for r in rows if base_method(r["method"]) == "random"
          and _eval_key(r) == _eval_key(row)]
  if row.get("n_syn") is not None:
    return next((r for r in same if r.get("n_syn") == row["n_syn"]), None)
  return min(same, key=lambda r: r.get("n_syn") or 0, default=None)  # Full


def _mean_std(row: Mapping, metric: str) -> tuple[float, float]:
  if metric == "accuracy":
    return float(row["accuracy"]), float(row.get("accuracy_std") or 0.0)
  return float(row["avg"][metric]), float((row.get("avg_std") or {}).get(metric) or 0.0)


def _cell(row: Mapping, metric: str, digits: int) -> str:
  """``mean ± std``; the mean alone for a row of one run (Zero-shot)."""
  m, s = _mean_std(row, metric)
  return f"{m:.{digits}f}" if (row.get("runs") or 0) <= 1 and not s else f"{m:.{digits}f} ± {s:.{digits}f}"


def delta(row: Mapping, ref: Mapping, metric: str = "R@1") -> tuple[float, float]:
  """``(mean_row − mean_ref, √(s_row² + s_ref²))`` of avg ``metric`` (``"accuracy"``
  for classification rows)."""
  (m1, s1), (m2, s2) = _mean_std(row, metric), _mean_std(ref, metric)
  return m1 - m2, math.hypot(s1, s2)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                 right: Sequence[bool] | None = None) -> str:
  """A markdown table whose columns are padded to equal width (readable as plain text)."""
  cols = list(zip(header, *rows))
  width = [max(len(c) for c in col) for col in cols]
  right = right or [i > 0 for i in range(len(header))]

  def line(cells):
    return "| " + " | ".join(c.rjust(w) if r else c.ljust(w)
                             for c, w, r in zip(cells, width, right)) + " |"
  sep = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                       for w, r in zip(width, right)) + "|"
  return "\n".join([line(header), sep] + [line(r) for r in rows])


def _signed(d: float, s: float, digits: int = 2) -> str:
  return f"{d:+.{digits}f} ± {s:.{digits}f}"


def retrieval_table(rows: Sequence[Mapping], digits: int = 2) -> str:
  """method | n | avg R@1 | avg R@5 | Δ R@1 vs Random | min (module docstring)."""
  out = []
  for r in rows:
    ref = random_for(r, rows)
    zs = base_method(r["method"]) == "zero_shot"
    d = "" if ref is None else _signed(*delta(r, ref, "R@1"), digits)
    out.append([display_name(r["method"]), "—" if zs else str(r["n_syn"] or "all"),
                _cell(r, "R@1", digits), _cell(r, "R@5", digits),
                d, f"{minutes(r):.1f}"])
  return format_table(["method", "n", "avg R@1", "avg R@5", "Δ R@1 vs Random", "min"], out,
                      [False, True, True, True, True, True])


def classification_table(rows: Sequence[Mapping], digits: int = 1) -> str:
  """method | ipc | accuracy | Δ vs Random | min (module docstring)."""
  out = []
  for r in rows:
    ref = random_for(r, rows)
    d = "" if ref is None else _signed(*delta(r, ref, "accuracy"), digits)
    out.append([display_name(r["method"]), str(r["n_syn"] if r["n_syn"] is not None else "all"),
                _cell(r, "accuracy", digits), d, f"{minutes(r):.1f}"])
  return format_table(["method", "ipc", "accuracy (%)", "Δ vs Random", "min"], out,
                      [False, True, True, True, True])


def selection_table(rows: Sequence[Mapping]) -> str:
  """What each retrieval row's protocol chose on validation: evaluation objective, lr
  and epochs per run, lr_teacher and the learned step size η (distilled rows)."""
  out = []
  for r in rows:
    ev = r.get("eval") or {}
    eta = r.get("learned_lr")
    zs = base_method(r["method"]) == "zero_shot"      # no training: no evaluation objective
    out.append([display_name(r["method"]), "—" if zs else str(ev.get("objective") or "—"),
                "" if ev.get("lr") is None else f"{ev['lr']:g}",
                ", ".join(str(e) for e in ev.get("epochs") or []),
                "" if r.get("lr_teacher") is None else f"{r['lr_teacher']:g}",
                "" if eta is None else f"{eta:.4g}", f"{minutes(r):.2f}"])
  return format_table(["method", "eval objective", "eval lr", "eval epochs", "lr_teacher",
                       "η", "min"], out, [False, False, True, False, True, True, True])


def _panel(ax, rows: Sequence[Mapping], metric: str, ylabel: str, title: str) -> None:
  colors = ["tab:red", "tab:green", "tab:purple", "tab:brown"]
  points = [r for r in rows if base_method(r["method"]) not in ("random", "full")]
  refs = [r for r in rows if base_method(r["method"]) in ("random", "full")]
  vals = [_mean_std(r, metric) for r in points]
  ax.errorbar(range(len(points)), [v for v, _ in vals], yerr=[s for _, s in vals], fmt="o",
              color="tab:blue", capsize=4, zorder=3)
  for i, r in enumerate(refs):
    v, s = _mean_std(r, metric)
    style = "--" if base_method(r["method"]) == "random" else ":"
    c = colors[i % len(colors)]
    ax.axhline(v, ls=style, color=c, lw=1.2, label=f"{display_name(r['method'])} {v:.2f}")
    if s:
      ax.axhspan(v - s, v + s, color=c, alpha=0.12, lw=0)
  size = "n" if metric != "accuracy" else "ipc"
  ax.set_xticks(range(len(points)),
                [display_name(r["method"]) + (f"\n{size}={r['n_syn']}" if r.get("n_syn") else "")
                 for r in points], fontsize=8)
  ax.set_xlim(-0.6, max(len(points), 1) - 0.4)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7, loc="best")
  ax.grid(axis="y", alpha=0.3)


def plot(path: str, retrieval: Sequence[Mapping] = (), classification: Sequence[Mapping] = (),
         titles: tuple[str, str] = ("retrieval", "classification")) -> None:
  """One PNG: avg R@1 by method (error bars: std over evaluation runs), Random (dashed)
  and Full (dotted) as reference lines with ±std bands; a second panel for the
  classification rows' accuracy when given."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  panels = [(rows, m, y, t) for rows, m, y, t in
            ((retrieval, "R@1", "avg R@1 (%)", titles[0]),
             (classification, "accuracy", "accuracy (%)", titles[1])) if rows]
  fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5.0 * max(len(panels), 1), 3.6),
                           squeeze=False)
  for ax, (rows, m, y, t) in zip(axes[0], panels):
    _panel(ax, rows, m, y, t)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _read_records(path: str) -> list[dict]:
  import json
  if not os.path.exists(path):
    return []
  out = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        continue   # a line being written
  return out


class Progress:
  """Progress lines ``[m:ss] task · row · stage`` from one clock (no bars).

  :meth:`watch` follows a run's ``metrics.jsonl`` while it runs (a background thread
  polling the file; the run itself is not touched) and prints the next stage's line
  when its start condition — a function of the records written so far — holds."""

  def __init__(self, t0: float | None = None, out=None, poll_s: float = 0.5):
    self.t0 = time.time() if t0 is None else t0
    self.out = out or sys.stdout
    self.poll_s = poll_s

  def elapsed(self) -> str:
    s = int(time.time() - self.t0)
    return f"{s // 60:2d}:{s % 60:02d}"

  def line(self, *parts: str) -> None:
    print(f"[{self.elapsed()}] " + " · ".join(p for p in parts if p), file=self.out, flush=True)

  def watch(self, metrics_path: str, task: str, first: tuple[str, str],
            stages: Sequence[tuple[str, str, Callable[[list[dict]], bool]]] = ()):
    """Context manager: prints ``first`` (``(row, stage)``) now, then each
    ``(row, stage, started)`` of ``stages``, in order, once ``started(records)`` holds
    for the records of ``metrics_path`` written since the block began (their
    ``time`` field). Stages whose condition has not held when the block exits are not
    printed."""
    return _Watch(self, metrics_path, task, first, list(stages))


class _Watch:
  def __init__(self, prog: Progress, path: str, task: str, first, stages):
    self.prog, self.path, self.task = prog, path, task
    self.first, self.stages = first, stages
    self._stop = threading.Event()
    self._thread = None

  def _poll(self):
    while self.stages and not self._stop.wait(self.prog.poll_s):
      # Only this run's records (a resumed run's file holds earlier ones).
      recs = [r for r in _read_records(self.path) if r.get("time", math.inf) >= self._since]
      while self.stages and self.stages[0][2](recs):
        row, stage, _ = self.stages.pop(0)
        self.prog.line(self.task, row, stage)

  def __enter__(self):
    self._since = time.time()
    self.prog.line(self.task, *self.first)
    if self.stages:
      self._thread = threading.Thread(target=self._poll, daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    return False


def has_record(**fields) -> Callable[[list[dict]], bool]:
  """``started`` condition: some record has these field values."""
  return lambda recs: any(all(r.get(k) == v for k, v in fields.items()) for r in recs)


def count_records(n: int, **fields) -> Callable[[list[dict]], bool]:
  """``started`` condition: at least ``n`` records have these field values."""
  return lambda recs: sum(all(r.get(k) == v for k, v in fields.items()) for r in recs) >= n
