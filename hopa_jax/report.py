r"""The sweep's tables and claims, generated from its cells (never typed by hand).

Input: the list of cells of :func:`hopa_jax.sweep.cells` (``docs/results_cells.json``).
:func:`report_markdown` writes Tables 1–3 (both evaluation views), Table 5, the ablation
tables (Table 10 / Table 6) and the claims table, beside the paper's numbers (:data:`PAPER`
and friends, transcribed from the HoPA paper's text in /work/shared/seeds);
:func:`update_doc` replaces the generated section of ``docs/results.md`` between
:data:`BEGIN` and :data:`END`, leaving the hand-written prose around it alone.

**Values and spreads.** A cell's value is its mean over the run seeds measured (one seed:
that run's value); its std is the *larger* of the evaluation-run std (mean over the seeds)
and the std over seeds (ddof 1; only where ≥ 2 seeds were measured).

**Claims.** A claim ``X > Y`` (or ``X ≥ Y``) has margin ``m = X − Y`` and std
``s = sqrt(s_X² + s_Y²)`` (each ``s`` as above). Verdict: *holds* when ``m ≥ 2s``;
*does not hold* when ``m ≤ −2s``; *within noise* when ``|m| < 2s``. A claim over several
``n`` holds when it holds at every ``n``, does not hold when it fails at any, and is within
noise otherwise; measured at some ``n`` only, the verdict says which; *not measured yet*
when none of its cells exists.
"""

from __future__ import annotations

import math
import os
import statistics
from typing import Sequence

NS = (100, 200, 500)
BEGIN = ("<!-- BEGIN GENERATED: python -m experiments.hopa_sweep --report "
         "(from docs/results_cells.json; do not edit by hand) -->")
END = "<!-- END GENERATED: hopa_sweep -->"

FAMILIES = {"msrvtt": "MSR-VTT", "vggsound": "VGGSound-S", "didemo": "DiDeMo"}
TABLE_NO = {"msrvtt": 1, "vggsound": 2, "didemo": 3}
NAMES = {"zero_shot": "Zero-shot", "full": "Full", "random": "Random", "mtt_vl": "MTT-VL",
         "tesla": "TESLA", "lors": "LoRS", "repblend": "RepBlend", "hopa": "HoPA",
         "3pair": "3-pair", "tbind": "T-bind", "vbind": "V-bind", "no_lmod": "w/o L_mod",
         "no_linst": "w/o L_inst", "no_mining": "w/o mining", "rank2": "Rank-2"}
DISTILLED = ("mtt_vl", "tesla", "lors", "repblend", "hopa")
PAIRWISE = ("3pair", "tbind", "vbind")
ABLATIONS = ("no_mining", "no_linst", "no_lmod", "rank2")

# HoPA paper, Tables 1–3 (MSR-VTT, VGGSound-S, DiDeMo): the "Avg." R@1 / R@5 columns
# (the text kept them; the per-direction cells lost their ± separator). Full: n-independent.
PAPER = {
    "msrvtt": {
        100: {"random": (20.3, 39.0), "mtt_vl": (20.8, 39.6), "tesla": (20.8, 39.3),
              "lors": (21.6, 40.8), "repblend": (21.4, 40.5), "hopa": (21.6, 42.2)},
        200: {"random": (20.3, 39.0), "mtt_vl": (19.2, 40.2), "tesla": (19.4, 39.8),
              "lors": (20.4, 41.7), "repblend": (20.4, 41.0), "hopa": (21.9, 42.7)},
        500: {"random": (21.2, 40.3), "mtt_vl": (21.0, 41.4), "tesla": (20.8, 41.1),
              "lors": (21.8, 42.4), "repblend": (21.8, 42.2), "hopa": (22.1, 42.9)},
        "full": (22.6, 44.8)},
    "vggsound": {
        100: {"random": (12.4, 33.3), "mtt_vl": (12.7, 33.2), "tesla": (12.6, 33.7),
              "lors": (13.0, 34.0), "repblend": (12.7, 33.7), "hopa": (13.3, 35.3)},
        200: {"random": (12.6, 33.2), "mtt_vl": (12.9, 34.8), "tesla": (12.5, 33.0),
              "lors": (13.2, 35.1), "repblend": (13.2, 35.4), "hopa": (13.4, 35.7)},
        500: {"random": (12.8, 33.9), "mtt_vl": (13.0, 35.0), "tesla": (12.8, 34.2),
              "lors": (13.3, 35.6), "repblend": (13.3, 35.8), "hopa": (13.4, 36.4)},
        "full": (13.7, 37.7)},
    "didemo": {
        100: {"random": (16.0, 34.1), "mtt_vl": (16.0, 34.8), "tesla": (16.1, 35.0),
              "lors": (16.9, 36.0), "repblend": (16.9, 36.1), "hopa": (18.4, 37.2)},
        200: {"random": (16.4, 34.5), "mtt_vl": (16.1, 34.8), "tesla": (16.1, 35.0),
              "lors": (17.0, 36.8), "repblend": (16.9, 37.0), "hopa": (18.6, 37.6)},
        500: {"random": (16.7, 35.4), "mtt_vl": (16.5, 35.6), "tesla": (16.3, 35.5),
              "lors": (17.3, 37.6), "repblend": (17.1, 37.6), "hopa": (18.5, 37.8)},
        "full": (19.2, 39.7)},
}
# Table 5 (HoPA vs its pairwise variants), avg R@1 / avg R@5. Its HoPA column (and
# Tables 6 / 10's) differs from Tables 1–3's HoPA row (e.g. MSR-VTT n=100: 21.78 vs 21.6).
PAPER_T5 = {
    "msrvtt": {100: {"hopa": (21.78, 42.43), "3pair": (20.21, 42.08), "tbind": (20.42, 41.45),
                     "vbind": (21.05, 41.97)},
               200: {"hopa": (21.93, 42.73), "3pair": (19.94, 42.40), "tbind": (20.49, 41.35),
                     "vbind": (19.24, 42.28)},
               500: {"hopa": (22.25, 42.96), "3pair": (18.11, 41.60), "tbind": (20.19, 38.65),
                     "vbind": (19.85, 41.86)}},
    "vggsound": {100: {"hopa": (13.19, 34.89), "3pair": (12.78, 35.20), "tbind": (12.10, 34.01),
                       "vbind": (12.92, 35.00)},
                 200: {"hopa": (13.15, 35.51), "3pair": (12.31, 34.90), "tbind": (11.30, 33.76),
                       "vbind": (12.74, 35.51)},
                 500: {"hopa": (13.18, 35.85), "3pair": (12.50, 35.22), "tbind": (10.74, 32.93),
                       "vbind": (12.43, 34.78)}},
    "didemo": {100: {"hopa": (18.35, 37.21), "3pair": (16.30, 36.02), "tbind": (16.04, 35.08),
                     "vbind": (16.98, 36.83)},
               200: {"hopa": (18.61, 37.64), "3pair": (16.09, 36.22), "tbind": (15.81, 33.83),
                     "vbind": (15.73, 35.24)},
               500: {"hopa": (18.46, 37.76), "3pair": (14.92, 34.36), "tbind": (15.81, 33.83),
                     "vbind": (15.81, 33.83)}},
}
# Table 10 (components) and Table 6 (Rank-1 vs Rank-2): R@1 / R@5 (the paper's columns).
PAPER_ABL = {
    "msrvtt": {100: {"hopa": (21.78, 42.43), "no_mining": (20.67, 40.30),
                     "no_linst": (20.16, 38.75), "no_lmod": (20.08, 37.96), "rank2": (20.80, 39.99)},
               200: {"hopa": (21.93, 42.73), "no_mining": (21.02, 41.18),
                     "no_linst": (20.31, 38.80), "no_lmod": (19.44, 37.15), "rank2": (21.09, 39.81)},
               500: {"hopa": (22.25, 42.96), "no_mining": (21.32, 41.65),
                     "no_linst": (20.11, 38.42), "no_lmod": (19.20, 36.83), "rank2": (20.48, 39.78)}},
    "vggsound": {100: {"hopa": (13.19, 34.89), "no_mining": (12.96, 34.03),
                       "no_linst": (12.35, 33.06), "no_lmod": (11.35, 28.81), "rank2": (12.18, 32.85)},
                 200: {"hopa": (13.15, 35.33), "no_mining": (12.96, 34.49),
                       "no_linst": (12.44, 32.88), "no_lmod": (11.65, 30.41), "rank2": (12.25, 32.58)},
                 500: {"hopa": (13.18, 35.85), "no_mining": (12.89, 34.84),
                       "no_linst": (12.41, 32.48), "no_lmod": (12.06, 32.04), "rank2": (12.44, 32.54)}},
    "didemo": {100: {"hopa": (18.35, 37.21), "no_mining": (17.13, 35.57),
                     "no_linst": (15.98, 34.02), "no_lmod": (16.36, 34.97), "rank2": (16.67, 35.13)},
               200: {"hopa": (18.61, 37.64), "no_mining": (17.45, 36.72),
                     "no_linst": (15.86, 34.00), "no_lmod": (16.15, 34.20), "rank2": (17.01, 35.52)},
               500: {"hopa": (18.46, 37.76), "no_mining": (17.33, 36.99),
                     "no_linst": (15.50, 33.74), "no_lmod": (15.64, 33.42), "rank2": (16.80, 35.25)}},
}


def family(dataset: str) -> str:
  d = dataset.lower()
  for f in ("vggsound", "didemo"):
    if f in d:
      return f
  return "msrvtt"


# --- values ---

REFERENCE = ("zero_shot", "full", "random")   # nothing distilled: the same under every budget


def value(cells: Sequence[dict], dataset: str, method: str, n: int | None, budget: str,
          view: str, objective: str | None = None, metric: str = "r1") -> dict | None:
  """``{mean, std, eval_std, seed_std, seeds, same_as}`` of one cell over its seeds (module
  docstring), or None when not measured. ``objective``: the eval objective (Random / Full
  of the own view are one row per objective). Zero-shot, Full and Random do not depend
  on the budget: any budget's cell (one workdir) is theirs."""
  got = [c for c in cells if c["dataset"] == dataset and c["method"] == method
         and c["n"] == n and (c["budget"] == budget or method in REFERENCE)
         and c["view"] == view and c.get(f"avg_{metric}") is not None
         and (objective is None or c.get("eval_objective") == objective)]
  got = list({(c.get("workdir"), c["seed"], c.get("eval_objective")): c for c in got}.values())
  if not got:
    return None
  if objective is None and len({c.get("eval_objective") for c in got}) > 1:
    raise ValueError(f"{dataset} {method} n={n} {view}: several eval objectives, name one")
  vals = [c[f"avg_{metric}"] for c in got]
  mean = sum(vals) / len(vals)
  eval_std = sum(c[f"avg_{metric}_std"] or 0.0 for c in got) / len(got)
  seed_std = (math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
              if len(vals) >= 2 else None)
  return {"mean": mean, "std": max(eval_std, seed_std or 0.0), "eval_std": eval_std,
          "seed_std": seed_std, "seeds": len(vals), "same_as": got[0].get("same_as"),
          "status": got[0].get("status")}


def fmt(v: dict | None) -> str:
  if v is None:
    return "—"
  s = f"{v['mean']:.2f} ± {v['eval_std']:.2f}"
  if v["seed_std"] is not None:
    s += f" (seeds ± {v['seed_std']:.2f}, {v['seeds']})"
  return s


def _p(x: float) -> str:
  """A paper number as printed there (one decimal in Tables 1–3, two in 5 / 6 / 10)."""
  return f"{x:.1f}" if abs(x * 10 - round(x * 10)) < 1e-6 else f"{x:.2f}"


def fmt_pair(r1: dict | None, r5: dict | None, paper: tuple | None = None) -> str:
  if r1 is None and r5 is None:
    out = "—"
  else:
    out = f"{fmt(r1)} / {fmt(r5)}"
  if paper:
    out += f" [{_p(paper[0])} / {_p(paper[1])}]"
  return out


def _budgets(cells) -> list[str]:
  have = list(dict.fromkeys(c["budget"] for c in cells))
  return [b for b in ("cpu", "spec") if b in have] + [b for b in have if b not in ("cpu", "spec")]


def _ns(cells) -> list[int]:
  """The paper's n, plus any other n measured (tiny test sweeps)."""
  return sorted(set(NS) | {c["n"] for c in cells if c["n"] is not None})


def _columns(cells, dataset) -> list[tuple[int, str]]:
  """(n, budget) columns: every n at cpu, then the other budgets' n where measured."""
  cols = [(n, "cpu") for n in _ns(cells)
          if n in NS or any(c["dataset"] == dataset and c["n"] == n for c in cells)]
  for b in _budgets(cells):
    if b != "cpu":
      cols += [(n, b) for n in _ns(cells) if any(c["dataset"] == dataset and c["budget"] == b
                                                 and c["n"] == n for c in cells)]
  return cols


def _objectives(cells, dataset, method, view) -> list[str | None]:
  objs = [c.get("eval_objective") for c in cells if c["dataset"] == dataset
          and c["method"] == method and c["view"] == view]
  return list(dict.fromkeys(objs)) or [None]


# --- tables ---

def main_table(cells, dataset: str, view: str) -> str:
  fam = family(dataset)
  paper = PAPER[fam]
  cols = _columns(cells, dataset)
  head = "| method | " + " | ".join(f"n = {n} ({b})" for n, b in cols) + " |"
  lines = [head, "|---|" + "---|" * len(cols)]
  for m in ("zero_shot", "full", "random") + DISTILLED:
    for o in (_objectives(cells, dataset, m, view) if m in ("full", "random") else [None]):
      name = NAMES[m] + (f" [{o}]" if o and m in ("full", "random") and view == "own" else "")
      row = []
      for j, (n, b) in enumerate(cols):
        nn = n if m not in ("full", "zero_shot") else None
        if nn is None and j > 0:
          row.append("")
          continue
        p = paper["full"] if m == "full" else (paper.get(n, {}).get(m) if nn else None)
        row.append(fmt_pair(value(cells, dataset, m, nn, b, view, o),
                            value(cells, dataset, m, nn, b, view, o, "r5"), p))
      lines.append(f"| {name} | " + " | ".join(row) + " |")
  return "\n".join(lines)


def _rows_table(cells, methods, paper_of, view, datasets) -> str:
  budgets = _budgets(cells) or ["cpu"]
  lines = ["| dataset | n | budget | " + " | ".join(NAMES[m] for m in methods) + " |",
           "|---|---|---|" + "---|" * len(methods)]
  for d in datasets:
    fam = family(d)
    for b in budgets:
      for n in _ns(cells):
        vals = [(value(cells, d, m, n, b, view), value(cells, d, m, n, b, view, metric="r5"))
                for m in methods]
        if (b != "cpu" or n not in NS) and all(v[0] is None for v in vals):
          continue
        row = []
        for m, (r1, r5) in zip(methods, vals):
          cell = fmt_pair(r1, r5, paper_of.get(fam, {}).get(n, {}).get(m))
          if r1 is not None and r1.get("same_as"):
            cell += f" (= {NAMES.get(r1['same_as'], r1['same_as'])})"
          row.append(cell)
        lines.append(f"| {d} | {n} | {b} | " + " | ".join(row) + " |")
  return "\n".join(lines)


DEFAULT_DATASETS = ("msrvtt_sim", "vggsound_s_sim", "didemo_sim")


def _datasets(cells, defaults: Sequence[str] = ()) -> list[str]:
  ds = list(dict.fromkeys([*defaults, *(c["dataset"] for c in cells)]))
  order = {"msrvtt": 0, "vggsound": 1, "didemo": 2}
  return sorted(ds, key=lambda d: order.get(family(d), 9))


def dataset_markdown(cells, dataset: str) -> str:
  """The sweep's ``<workdir>/<dataset>/table.md``."""
  out = [f"# {dataset}: retrieval (%), avg R@1 / avg R@5, mean ± std over evaluation runs "
         "[paper]", ""]
  for view in ("own", "common"):
    out += [f"## {VIEW_TITLE[view](cells)}", "", main_table(cells, dataset, view), ""]
  out += ["## HoPA vs its pairwise variants (Table 5), own view", "",
          _rows_table(cells, ("hopa",) + PAIRWISE, PAPER_T5, "own", [dataset]), "",
          "## Ablations (Table 10 / Table 6), own view", "",
          _rows_table(cells, ("hopa",) + ABLATIONS, PAPER_ABL, "own", [dataset])]
  return "\n".join(out)


def _common_objective(cells) -> str:
  objs = [c.get("eval_objective") for c in cells if c["view"] == "common"
          and c["method"] != "zero_shot"]
  return objs[0] if objs else "the common objective"


VIEW_TITLE = {
    "own": lambda cells: "Own-objective view (each set evaluated with its own inner objective; "
                         "Random and Full once per objective)",
    "common": lambda cells: f"Common-evaluation view (every row evaluated with "
                            f"`{_common_objective(cells)}`)",
}


# --- claims ---

def _verdict(m: float, s: float) -> str:
  if m >= 2 * s and m > 0:
    return "holds"
  if m <= -2 * s and m < 0:
    return "does not hold"
  return "within noise"


def _diff(a: dict, b: dict, scale_b: float = 1.0) -> tuple[float, float, bool]:
  """(margin, its std, whether either side has a single run seed: no seed spread in the ±)."""
  return (a["mean"] - scale_b * b["mean"], math.sqrt(a["std"] ** 2 + (scale_b * b["std"]) ** 2),
          a["seeds"] < 2 or b["seeds"] < 2)


def _best(cands: list[tuple[str, dict | None]]):
  have = [(m, v) for m, v in cands if v is not None]
  if len(have) < len(cands):
    return None
  return max(have, key=lambda mv: mv[1]["mean"])


def _claim_ns(cells, d, b, view, a: str, others: Sequence[str], ns=NS):
  """Per-n margin of ``a`` over the best of ``others``. With several ``others`` of which
  some are measured, the margin is over the best measured one: a "does not hold" there
  is final (the best of all can only be higher); anything else is provisional (the
  entry's fifth item names what is missing)."""
  per = {}
  for n in ns:
    av = value(cells, d, a, n, b, view)
    cands = [(m, value(cells, d, m, n, b, view)) for m in others]
    best = _best(cands)
    missing = ()
    if best is None and len(others) > 1 and any(v is not None for _, v in cands):
      best = max(((m, v) for m, v in cands if v is not None), key=lambda mv: mv[1]["mean"])
      missing = tuple(NAMES[m] for m, v in cands if v is None)
    if av is None or best is None:
      per[n] = None
      continue
    per[n] = (*_diff(av, best[1]), NAMES[best[0]] if len(others) > 1 else None, missing)
  return per


def _summarise(per: dict) -> tuple[str, str]:
  have = {n: v for n, v in per.items() if v is not None}
  if not have:
    return "—", "not measured yet"
  have = {n: (*v, ()) if len(v) == 4 else v for n, v in have.items()}
  margins = "; ".join(f"n={n}: {m:+.2f} ± {s:.2f}" + (f" (vs {who}" + (
      f", the best measured; {', '.join(gone)} not measured yet" if gone else "") + ")"
      if who else "") for n, (m, s, _, who, gone) in have.items())
  vs = [_verdict(m, s) for m, s, _, _, _ in have.values()]
  v = ("does not hold" if "does not hold" in vs else
       "holds" if all(x == "holds" for x in vs) else "within noise")
  missing = [n for n in per if per[n] is None]
  partial = v != "does not hold" and any(gone for *_, gone in have.values())
  if missing or partial:
    v += " (so far" + (f"; n = {', '.join(map(str, missing))} not measured yet" if missing
                       else "") + ("; some baselines not measured yet" if partial else "") + ")"
  single = [n for n, (_, _, one, _, _) in have.items() if one]
  if single and len(single) == len(have):
    v += "; one run seed: the ± is over evaluation runs only"
  elif single:
    v += (f"; n = {', '.join(map(str, single))}: one run seed, the ± over evaluation runs "
          "only")
  return margins, v


def claims(cells, view: str, budget: str = "cpu",
           datasets: Sequence[str] = ()) -> list[tuple[str, str, str, str]]:
  """``[(claim, dataset, margins, verdict)]`` (module docstring for the rule)."""
  out = []
  for d in _datasets(cells, datasets):
    full_obj = "hopa" if view == "own" else None
    def add(text, per):
      out.append((text, d, *_summarise(per)))
    add("HoPA > every pairwise baseline (MTT-VL, TESLA, LoRS, RepBlend, 3-pair, T-bind, "
        "V-bind), every n", _claim_ns(cells, d, budget, view, "hopa",
                                      DISTILLED[:-1] + PAIRWISE))
    add("HoPA ≥ LoRS, every n", _claim_ns(cells, d, budget, view, "hopa", ["lors"]))
    add("HoPA ≥ RepBlend, every n", _claim_ns(cells, d, budget, view, "hopa", ["repblend"]))
    # Growth: HoPA's gain n=100→500 minus the best pairwise variant's gain.
    g = {}
    gains = {m: (value(cells, d, m, 500, budget, view), value(cells, d, m, 100, budget, view))
             for m in ("hopa",) + PAIRWISE}
    if all(a is not None and b is not None for a, b in gains.values()):
      gd = {m: _diff(a, b) for m, (a, b) in gains.items()}
      best = max(PAIRWISE, key=lambda m: gd[m][0])
      g[500] = (gd["hopa"][0] - gd[best][0], math.hypot(gd["hopa"][1], gd[best][1]),
                gd["hopa"][2] or gd[best][2], f"{NAMES[best]}; HoPA {gd['hopa'][0]:+.2f}, " +
                ", ".join(f"{NAMES[m]} {gd[m][0]:+.2f}" for m in PAIRWISE))
    else:
      g[500] = None
    add("pairwise variants stagnate or degrade from n = 100 to 500 while HoPA improves "
        "(HoPA's gain − the best pairwise gain)", g)
    h100 = value(cells, d, "hopa", 100, budget, view)
    best = _best([(m, value(cells, d, m, 500, budget, view)) for m in ("lors", "repblend")])
    per = {100: None if h100 is None or best is None else (*_diff(h100, best[1]),
                                                             f"{NAMES[best[0]]} at n=500")}
    add("HoPA at n = 100 ≥ LoRS and RepBlend at n = 500 (the paper's claim is DiDeMo's)", per)
    for metric, name in (("r1", "R@1"), ("r5", "R@5")):
      h = value(cells, d, "hopa", 500, budget, view, metric=metric)
      f = value(cells, d, "full", None, budget, view, full_obj, metric)
      per = {500: None if h is None or f is None else (*_diff(h, f, 0.95), "0.95 × Full")}
      add(f"HoPA at n = 500 ≥ 95 % of Full (avg {name})", per)
    for m, text in (("no_lmod", "L_mod helps (HoPA > w/o L_mod)"),
                    ("no_linst", "L_inst helps (HoPA > w/o L_inst)"),
                    ("no_mining", "similarity mining helps (HoPA > w/o mining)"),
                    ("rank2", "Rank-1 > Rank-2")):
      per = _claim_ns(cells, d, budget, view, "hopa", [m])
      if per[100] is not None:   # every n measured; n = 100 is required
        per = {n: v for n, v in per.items() if v is not None}
      add(text + ", every n measured", per)
  return out


def claims_table(cells, view: str, budget: str = "cpu", datasets: Sequence[str] = ()) -> str:
  lines = ["| claim | dataset | margin (avg R@1 unless named) ± std | verdict |",
           "|---|---|---|---|"]
  for text, d, margins, verdict in claims(cells, view, budget, datasets):
    lines.append(f"| {text} | {d} | {margins} | {verdict} |")
  return "\n".join(lines)


# --- the document ---

def report_markdown(cells: Sequence[dict]) -> str:
  cells = list(cells)
  commits = sorted({c.get("commit", "unknown") for c in cells})
  dates = sorted({c["date"] for c in cells if c.get("date")})
  out = [f"Generated from `docs/results_cells.json` ({len(cells)} cells"
         + (f", measured {dates[0]} … {dates[-1]}" if dates else "")
         + (f", commit{'s' if len(commits) > 1 else ''} {', '.join(c[:12] for c in commits)}"
            if commits else "") + "). Cells: avg R@1 / avg R@5 (%), mean ± std over the "
         "evaluation runs (and over run seeds where measured); the paper's avg R@1 / R@5 in "
         "brackets (its own protocol, in both views' tables); — = not measured yet. Column headers name the budget of each cell "
         "(`cpu` or `spec`, experiments/configs/sweep.py).", ""]
  ds = _datasets(cells, DEFAULT_DATASETS)
  for d in ds:
    fam = family(d)
    for view in ("own", "common"):
      out += [f"### Table {TABLE_NO[fam]} analogue — {d} ({FAMILIES[fam]}), "
              f"{VIEW_TITLE[view](cells).split(' (')[0].lower()}", "",
              main_table(cells, d, view), ""]
  for view in ("own", "common"):
    out += [f"### Table 5 analogue — HoPA vs its pairwise variants, "
            f"{VIEW_TITLE[view](cells).split(' (')[0].lower()}", "",
            _rows_table(cells, ("hopa",) + PAIRWISE, PAPER_T5, view, ds), ""]
  for view in ("own", "common"):
    out += [f"### Ablations (Table 10 / Table 6 analogue), "
            f"{VIEW_TITLE[view](cells).split(' (')[0].lower()}", "",
            _rows_table(cells, ("hopa",) + ABLATIONS, PAPER_ABL, view, ds), ""]
  for view in ("own", "common"):
    for b in _budgets(cells) or ["cpu"]:
      out += [f"### Claims — {VIEW_TITLE[view](cells).split(' (')[0].lower()}, budget `{b}`",
              "", claims_table(cells, view, b, ds), ""]
  edge = edge_table(cells)
  if edge:
    out += ["### Evaluation selections at the edge of the lr grid", "", edge, ""]
  cost = cost_table(cells)
  if cost:
    out += ["### Measured wall time of the finished rows", "", cost, ""]
  return "\n".join(out).rstrip() + "\n"


def row_kind(c: dict) -> str:
  """What a cell's workdir computed: ``distilled`` (experts, distillation, evaluation),
  ``re-evaluation`` (a common-view evaluation of a stored set), or the reference rows."""
  if c["method"] in ("zero_shot", "random", "full"):
    return NAMES[c["method"]]
  # A re-evaluation lives under the sweep's common_<objective>/ directory (hopa_jax.sweep).
  parts = (c.get("workdir") or "").split("/")
  return "re-evaluation" if f"common_{c.get('eval_objective')}" in parts else "distilled"


KIND_ORDER = ("distilled", "re-evaluation", "Full", "Random", "Zero-shot")


def cost_table(cells: Sequence[dict]) -> str:
  """Wall minutes of the finished rows (each workdir once: aliases and the common view of
  an InfoNCE row are not counted twice), per dataset, n, budget and kind, with the sum.
  Empty when no cell has minutes."""
  seen, groups, resumed = set(), {}, set()
  for c in cells:
    w = c.get("workdir")
    if c.get("minutes") is None or w in seen or w in resumed:
      continue
    if c.get("resumed"):
      resumed.add(w)
      continue
    seen.add(w)
    key = (c["dataset"], -1 if c["n"] is None else c["n"], c["budget"], row_kind(c),
           c.get("cpu") or "not recorded")
    groups.setdefault(key, []).append(float(c["minutes"]))
  if not groups:
    return ""
  order = lambda k: (k[0], KIND_ORDER.index(k[3]), k[1], k[2], k[4])
  rows, total = [], 0.0
  for k in sorted(groups, key=order):
    v = sorted(groups[k])
    total += sum(v)
    rows.append(f"| {k[0]} | {'—' if k[1] < 0 else k[1]} | {k[2]} | {k[3]} | {k[4]} | {len(v)} | "
                f"{statistics.median(v):.1f} | {v[0]:.1f}–{v[-1]:.1f} | {sum(v):.0f} |")
  return "\n".join([
      f"{len(seen)} workdirs, {total:.0f} wall minutes ({total / 60:.1f} h) in all, as each "
      "row's `sweep_provenance.json` recorded them (`minutes`; devices as in the cells). A "
      "distilled row's minutes include its experts when it was the first row of its experts "
      "group to run; a re-evaluation evaluates a stored set in the common view; Random, "
      "Full and Zero-shot do not depend on the budget. Rows are grouped by the CPU they "
      "ran on (`cpu`, recorded from 2026-12-04; earlier rows: not recorded, mostly a 2-core "
      "Intel Xeon shared with other jobs)."
      + (f" {len(resumed)} rows resumed from their checkpoints by a later process are left "
         "out (their minutes are the last process's only); rows finished before 2026-12-04 "
         "do not say whether they were resumed." if resumed else ""), "",
      "| dataset | n | budget | kind | cpu | rows | median min | min–max | total min |",
      "|---|---|---|---|---|---|---|---|---|"] + rows)


def edge_table(cells: Sequence[dict]) -> str:
  """The rows whose validation-selected evaluation lr is the smallest or largest of the
  grid (``eval_lr_edge``), once per workdir: for them the grid may not hold the best lr,
  so their number may understate what the set gives under that objective (the rule is
  still the same for every row). Empty when there are none."""
  seen, rows = set(), []
  for c in cells:
    if not c.get("eval_lr_edge") or c.get("workdir") in seen:
      continue
    seen.add(c.get("workdir"))
    ep = c.get("eval_epochs") or []
    rows.append(f"| {c['dataset']} | {c['label']} | {c['n'] if c['n'] is not None else '—'} | "
                f"{c['budget']} | seed {c['seed']} | {c.get('eval_objective') or '—'} | "
                f"{c['eval_lr']:g} ({c['eval_lr_edge']}) | "
                f"{min(ep) if ep else '—'}–{max(ep) if ep else '—'} |")
  if not rows:
    return ""
  return "\n".join([
      f"{len(rows)} of the measured rows chose an evaluation lr at an end of the grid "
      "(`eval.lrs`, the same for every row). The grid was fixed before the sweep and is "
      "not widened after seeing results; a `low` edge with selected epochs near 1 means that "
      "under that objective any training past the first epoch lowered the validation score.",
      "", "| dataset | row | n | budget | seed | eval objective | selected lr (edge) | "
      "selected epochs (min–max over runs) |", "|---|---|---|---|---|---|---|---|"] + rows)


def check_one_store(cells: Sequence[dict]) -> None:
  """One line when the cells of one dataset were computed on different store contents
  (their ``store`` digests; cells without one are not checked): a table compares the
  cells of one dataset, so they must come from the same data."""
  seen: dict[str, dict[str, int]] = {}
  for c in cells:
    if c.get("store"):
      d = seen.setdefault(c["dataset"], {})
      d[c["store"]] = d.get(c["store"], 0) + 1
  for ds, digests in seen.items():
    if len(digests) > 1:
      found = ", ".join(f"{k[:19]}… in {v}" for k, v in sorted(digests.items(), key=lambda x: -x[1]))
      raise ValueError(f"cells of {ds}: expected one store content, found {len(digests)} "
                       f"({found} cells); a table compares cells of the same data")


def update_doc(path: str, cells: Sequence[dict]) -> str:
  """Replaces the text between :data:`BEGIN` and :data:`END` in ``path`` (cells of one
  dataset must share their store content: :func:`check_one_store`)."""
  check_one_store(cells)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
    raise ValueError(f"{path}: expected the generated-section markers '{BEGIN}' … '{END}', "
                     "found none (add them where the tables go)")
  head, rest = text.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  new = head + BEGIN + "\n\n" + report_markdown(cells) + "\n" + END + tail
  from mmdd_jax import results
  results.atomic_write_text(path, new)
  return new


def plot_dataset(cells, dataset: str, path: str) -> None:
  """avg R@1 vs n per method, own and common views (cpu lines, other budgets as stars)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
  for ax, view in zip(axes, ("own", "common")):
    for m in DISTILLED + PAIRWISE + ABLATIONS + ("random",):
      obj = "hopa" if (m == "random" and view == "own") else None
      try:
        pts = [(n, value(cells, dataset, m, n, "cpu", view, obj)) for n in _ns(cells)]
      except ValueError:
        continue
      pts = [(n, v) for n, v in pts if v is not None]
      if pts:
        ax.errorbar([n for n, _ in pts], [v["mean"] for _, v in pts],
                    yerr=[v["std"] for _, v in pts], marker="o", capsize=2,
                    ls="--" if m == "random" else "-",
                    label=NAMES[m] + (" [hopa]" if obj else ""))
      for b in _budgets(cells):
        if b == "cpu":
          continue
        try:
          sp = [(n, value(cells, dataset, m, n, b, view, obj)) for n in _ns(cells)]
        except ValueError:
          continue
        sp = [(n, v) for n, v in sp if v is not None]
        if sp:
          ax.scatter([n for n, _ in sp], [v["mean"] for _, v in sp], marker="*", s=60)
    f = None
    try:
      f = value(cells, dataset, "full", None, "cpu", view, "hopa" if view == "own" else None)
    except ValueError:
      pass
    if f is not None:
      ax.axhline(f["mean"], color="k", lw=0.8, label="Full" + (" [hopa]" if view == "own" else ""))
    ax.set_xscale("log")
    ax.set_xticks(_ns(cells), [str(n) for n in _ns(cells)])
    ax.minorticks_off()
    ax.set_xlabel("n (synthetic instances)")
    ax.set_title(f"{dataset}: {view} view", fontsize=9)
  axes[0].set_ylabel("avg R@1 (%)")
  if axes[0].get_legend_handles_labels()[0]:
    axes[0].legend(fontsize=6, ncol=2, loc="best")
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
