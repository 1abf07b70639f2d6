r"""The ImageBindDC tables on the simulators (issue 11), by one resumable command.

  python -m experiments.bindc_tables --workdir runs/bindc_tables [--budget reduced] \
      [--only vggs10k_ipc1,nyuv2_ipc1,...]

Runs, one after the other, the groups of :data:`GROUPS` (each an
``experiments.bindc.train_and_evaluate`` call in ``<workdir>/<group>/``) and writes
``<workdir>/tables.md`` beside the papers' numbers. Every group, method, lr selection
and evaluation is cached in its workdir (Orbax checkpoints, ``selection/``, ``eval/``), so
a rerun of the same command resumes where it stopped and ``tables.md`` is rewritten from
whatever has finished. Every row uses the same selection rule (validation split carved
from train, lr of the synthetic set and evaluation epochs chosen on it) and both
evaluation heads (linear and MLP).

Budgets (``--budget``): ``spec`` = SPEC §4 (2000 iterations, 4096 frequencies, lr
selection 100 steps per candidate); ``reduced`` (default, what a 2-core CPU shared with
other jobs finishes in about an hour) = 300 iterations, 1024 frequencies, 60 selection
steps per candidate; ``smoke`` = seconds per group, for tests.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags, logging

from experiments import bindc
from experiments.configs import bindc as bindc_config

BUDGETS = {
    "spec": "iterations=2000,num_freqs=4096,select_iterations=100",
    "reduced": "iterations=300,num_freqs=1024,select_iterations=60",
    "smoke": "local=1,iterations=4,select_iterations=2,lr_grid=0.01+0.1,eval_runs=2",
}

MAIN = "random+herding+dm+mmd+avdd+bindc"

# (group name, config overrides). Full does not depend on ipc: it runs with ipc 1.
GROUPS: list[tuple[str, str]] = [
    ("vggs10k_ipc1", f"dataset=vggs10k_sim,ipc=1,method={MAIN}+full"),
    ("nyuv2_ipc1", f"dataset=nyuv2_sim,ipc=1,method={MAIN}+full"),
    ("ave_audio_ipc1", "dataset=ave_sim,ipc=1,modalities=audio,method=mmd+cfd_only"),
    ("ave_ipc10", "dataset=ave_sim,ipc=10,method=mmd+cfd_only+bindc_no_cross+bindc_no_joint+bindc+full"),
    ("vggs10k_ipc10", f"dataset=vggs10k_sim,ipc=10,method={MAIN}"),
    ("vggs10k_ipc20", f"dataset=vggs10k_sim,ipc=20,method={MAIN}"),
    ("nyuv2_ipc5", f"dataset=nyuv2_sim,ipc=5,method={MAIN}"),
    ("nyuv2_ipc10", f"dataset=nyuv2_sim,ipc=10,method={MAIN}"),
]

# The papers' numbers (ImageBindDC paper, Tables 1-2 and the AVE ablations).
PAPER = {
    "vggs10k": {"random": (15.44, 32.01, 45.10), "dm": (36.54, 43.85, 49.01),
                "avdd": (40.41, 48.08, 48.86), "bindc": (42.66, 55.23, 55.30),
                "full": (68.24,)},
    "nyuv2": {"random": (60.60, 73.85, 88.38), "dm": (67.97, 89.08, 96.89),
              "avdd": (72.22, 95.92, 98.62), "bindc": (80.43, 97.30, 98.73), "full": (98.62,)},
    "ave": {("audio", "mmd"): 27.87, ("audio", "cfd_only"): 32.33, ("va", "mmd"): 69.26,
            ("va", "cfd_only"): 70.34, ("va", "bindc"): 73.67},
}
IPCS = {"vggs10k": (1, 10, 20), "nyuv2": (1, 5, 10)}
NAMES = {"random": "Random", "herding": "Herding", "dm": "DM", "mmd": "MMD", "avdd": "AVDD",
         "bindc": "ImageBindDC", "full": "Full", "cfd_only": "CFD uni only",
         "bindc_no_cross": "uni + joint", "bindc_no_joint": "uni + cross"}

FLAGS = flags.FLAGS


def config_arg(group: str, budget: str, scale: str, data_dir: str) -> str:
  over = dict(GROUPS)[group]
  arg = f"{BUDGETS[budget]},{over},eval_heads=linear+mlp,progress=0,scale={scale}"
  return arg + (f",data_dir={data_dir}" if data_dir else "")


def run(workdir: str, budget: str, only=(), scale: str = "1", data_dir: str = "",
        log=print) -> dict[str, list[dict]]:
  """Runs the groups (resuming) and returns ``{group: rows}`` for those that finished."""
  out = {}
  for group, _ in GROUPS:
    if only and group not in only:
      continue
    wd = os.path.join(workdir, group)
    t0 = time.time()
    cfg = bindc_config.get_config(config_arg(group, budget, scale, data_dir))
    rows = bindc.train_and_evaluate(cfg, wd)
    out[group] = rows
    log(f"[{group}] done in {(time.time() - t0) / 60:.1f} min")
    write_tables(workdir, budget, scale)
  return out


def load_rows(workdir: str) -> dict[str, list[dict]]:
  out = {}
  for group, _ in GROUPS:
    p = os.path.join(workdir, group, "results.json")
    if os.path.exists(p):
      with open(p, encoding="utf-8") as f:
        r = json.load(f)
      out[group] = r if isinstance(r, list) else [r]
  return out


def _cell(rows, method, head):
  for r in rows:
    if r["method"] == method and r.get("head", "linear") == head:
      return f"{r['accuracy']:.1f} ± {r['accuracy_std']:.1f}"
  return "—"


def _lr(rows, method):
  for r in rows:
    if r["method"] == method and (r.get("selection") or {}).get("lr") is not None:
      return f"{r['selection']['lr']:g}"
  return "–"


def write_tables(workdir: str, budget: str, scale: str = "1") -> str:
  """``tables.md`` from the finished groups (missing cells: —)."""
  res = load_rows(workdir)
  lines = [f"Budget `{budget}` ({BUDGETS[budget]}), simulator scale {scale}; accuracy % "
           "(mean ± std over the evaluation runs); paper in brackets; lr = the synthetic "
           "set's step length chosen on validation (linear / MLP head rows share it).", ""]
  for ds in ("vggs10k", "nyuv2"):
    ipcs = IPCS[ds]
    for head in ("linear", "mlp"):
      lines += [f"### {ds}_sim — {head} head", "",
                "| method | " + " | ".join(f"{i} ipc" for i in ipcs) + " | lr (" +
                "/".join(str(i) for i in ipcs) + ") |",
                "|---|" + "---|" * (len(ipcs) + 1)]
      for m in ("random", "herding", "dm", "mmd", "avdd", "bindc", "full"):
        cells, lrs = [], []
        for j, ipc in enumerate(ipcs):
          rows = res.get(f"{ds}_ipc{ipc}", [])
          if m == "full" and ipc != 1:
            cells.append("")
            continue
          paper = PAPER[ds].get(m)
          ptxt = f" [{paper[j]:.1f}]" if paper and j < len(paper) else ""
          cells.append(_cell(rows, m, head) + ptxt)
          lrs.append(_lr(rows, m))
        lines.append(f"| {NAMES[m]} | " + " | ".join(cells) + f" | {'/'.join(lrs) if set(lrs) - {'–'} else ''} |")
      lines.append("")
  for head in ("linear", "mlp"):
    lines += [f"### ave_sim ablations — {head} head", "",
              "| configuration | ipc | accuracy | paper | lr |", "|---|---|---|---|---|"]
    a1 = res.get("ave_audio_ipc1", [])
    a10 = res.get("ave_ipc10", [])
    for m in ("mmd", "cfd_only"):
      lines.append(f"| {'MMD' if m == 'mmd' else 'CFD'} (audio only) | 1 | {_cell(a1, m, head)} | "
                   f"{PAPER['ave'][('audio', m)]} | {_lr(a1, m).strip('–')} |")
    for m, name in (("mmd", "MMD (video+audio)"), ("cfd_only", "CFD (video+audio) = uni only"),
                    ("bindc_no_cross", "uni + joint"), ("bindc_no_joint", "uni + cross"),
                    ("bindc", "uni + cross + joint (ImageBindDC)"), ("full", "Full")):
      p = PAPER["ave"].get(("va", m), "improved" if m.startswith("bindc_no") else
                           ("75.0" if m == "full" else ""))
      lines.append(f"| {name} | {10 if m != 'full' else 'all'} | {_cell(a10, m, head)} | {p} | "
                   f"{_lr(a10, m).strip('–')} |")
    lines.append("")
  md = "\n".join(lines)
  with open(os.path.join(workdir, "tables.md"), "w", encoding="utf-8") as f:
    f.write(md + "\n")
  return md


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  if not FLAGS.tables_only:
    run(FLAGS.workdir, FLAGS.budget, FLAGS.only, FLAGS.scale, FLAGS.data_dir)
  print(write_tables(FLAGS.workdir, FLAGS.budget, FLAGS.scale))


def define_flags() -> None:
  """Defined only when run as a binary, so the module imports (tests, other
  binaries) without flag clashes."""
  flags.DEFINE_string("workdir", "runs/bindc_tables", "output directory (reruns resume)")
  flags.DEFINE_enum("budget", "reduced", sorted(BUDGETS), "see the module docstring")
  flags.DEFINE_list("only", [], "group names to run (default: all, in order)")
  flags.DEFINE_string("data_dir", "", "where simulated stores are cached (default runs/data)")
  flags.DEFINE_string("scale", "1", "simulator scale")
  flags.DEFINE_bool("tables_only", False, "only rewrite tables.md from the finished groups")


if __name__ == "__main__":
  define_flags()
  app.run(main)
