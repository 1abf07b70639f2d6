r"""ImageBindDC's config keys and plan: a config resolved once, before any work.

The keys of ``experiments/configs/bindc.py``, :data:`KEYS` (dotted key → ``(default,
rule, meaning)``, :mod:`mmdd_jax.keys`). The sections that mirror the library's
dataclasses are their key fields, declared once on the field: ``distill`` ↔
:class:`bindc_jax.distill.DistillConfig` (plus ``bindc_lr``), ``loss`` ↔
:class:`bindc_jax.losses.LossConfig` (the weights; the method fixes the rest),
``loss.dist`` ↔ ``DistanceConfig``, ``augment`` ↔ ``AugmentConfig``; ``select`` (the lr
selection rule, :mod:`bindc_jax.select`), ``eval`` (the protocol,
:mod:`bindc_jax.evaluate`) and the top-level keys are declared here. :func:`resolve`
checks a config once (the table's rules, then the rules between keys) and builds each
method's loop config once; the run and the tables read only the :class:`Plan`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bindc_jax import augment as aug_lib
from bindc_jax import distances as dist_lib
from bindc_jax import distill as distill_lib
from bindc_jax import losses as loss_lib
from mmdd_jax import classification
from mmdd_jax import keys
from mmdd_jax.keys import as_dict
from mmdd_jax import workdir as workdir_lib

KEYS = {
    "dataset": ("vggs10k_sim", None, "store directory or simulator name with class labels "
                "(vggs10k_sim, ave_sim, nyuv2_sim, msrvtt_sim, …)"),
    **keys.STORE,
    "method": (("bindc",), tuple(distill_lib.METHODS) + ("full",), "methods (a tuple): bindc "
               "(CFD uni + cross + joint), cfd_only, mmd, bindc_mmd, bindc_no_uni, "
               "bindc_no_cross, bindc_no_joint, dm, avdd, random, herding, full (the real "
               "train part)"),
    "modalities": (("all",), ("all", "vision", "audio", "text", "depth"), "a tuple, the subset "
                   "of the store's modalities (audio: the paper's 'Audio only' ablation); all "
                   "= every modality"),
    "ipc": (1, ">=1", "synthetic instances per class"),
    "seed": (0, ">=0", "root of every random stream (validation split, init, distillation, "
             "evaluation)"),
    "init": ("herding", ("herding", "random", "noise"), "initialisation of the optimised "
             "methods: herding | random | noise"),
    "val_fraction": (0.1, ">=0", "stratified validation split carved from train; every selection "
                 "reads only it (0: none, SPEC's fixed epochs and rates; needs "
                 "select.enabled=False)"),
    # the sections are the library dataclasses' key fields (mmdd_jax.keys.field)
    **keys.section(distill_lib.DistillConfig, "distill"),
    "distill.bindc_lr": (1e-3, ">0", "SGD rate of the CFD-family methods when "
                         "select.enabled=False (CFD gradients ~100x DM's at uni_scale 300: a "
                         "measured departure from SPEC, docs/bindc.md; SPEC: = distill.lr)"),
    **keys.section(loss_lib.LossConfig, "loss"),
    **keys.section(dist_lib.DistanceConfig, "loss.dist"),
    **keys.section(aug_lib.AugmentConfig, "augment"),
    "select.enabled": (True, None, "choose the synthetic set's lr on validation with "
                       "normalised updates (docs/bindc.md 'Selection rule'); False: SPEC's "
                       "plain SGD at distill.lr"),
    "select.grid": ((0.003, 0.01, 0.03, 0.1), ">0", "candidate step lengths (a tuple)"),
    "select.iterations": (100, ">=1", "distillation steps per candidate (≤ "
                          "distill.iterations)"),
    "select.runs": (2, ">=1", "heads per candidate's validation score"),
    "eval.heads": (("linear",), classification.HEADS, "evaluation heads (a tuple): linear "
                   "(SPEC) | mlp; one results row each"),
    "eval.hidden": (256, ">=1", "MLP head's hidden units"),
    "eval.runs": (5, ">=1", "evaluation runs (head initialisations) per row"),
    "eval.epochs": (30, ">=1", "epochs (with a validation split: the upper bound of the "
                    "choice)"),
    "eval.lr": (1e-3, ">0", "Adam rate of the heads"),
    "eval.batch_size": (256, ">=1", "evaluation batch size"),
    "eval.min_steps": (300, ">=0", "raise the epochs so every set gets at least this many "
                       "steps"),
    "log_every": (100, ">=1", "steps between metrics records and NaN checks"),
    "ckpt_every": (500, ">=1", "steps between Orbax checkpoints (and at the end)"),
    "progress": (True, None, "progress bars"),
    "local": (False, None, "seconds-long run: scale 0.05, 20 iterations, 128 frequencies, 2 "
              "eval runs, select.grid 0.01+0.1 with 5 steps"),
}


def loss_config(c) -> loss_lib.LossConfig:
  """``LossConfig(**config.loss)`` with ``dist = DistanceConfig(**config.loss.dist)``
  (the method then fixes ``kind``, ``distance`` and the ``use_*`` switches)."""
  d = as_dict(c)
  weights = {k: v for k, v in d["loss"].items() if k != "dist"}
  return loss_lib.LossConfig(**weights, dist=dist_lib.DistanceConfig(**d["loss"]["dist"]))


def distill_config(c, method: str) -> distill_lib.DistillConfig | None:
  """The method's loop config (None for ``random`` / ``herding``): ``DistillConfig(
  **config.distill)`` with the method's loss, ``augment`` and ``normalize =
  select.enabled``. The rate is ``distill.lr`` (the CFD family: ``distill.bindc_lr``);
  with ``select.enabled`` it is replaced by the selected one."""
  d = as_dict(c)
  lc = distill_lib.method_loss_config(method, loss_config(d))
  if lc is None:
    return None
  fields = dict(d["distill"])
  bindc_lr = fields.pop("bindc_lr")
  if lc.kind == "bindc":
    fields["lr"] = bindc_lr
  return distill_lib.DistillConfig(**fields, loss=lc,
                                   augment=aug_lib.AugmentConfig(**d["augment"]),
                                   normalize=bool(d["select"]["enabled"]))


def methods(c) -> list[str]:
  """``config.method`` (checked by the key table's rule)."""
  return list(as_dict(c)["method"])


def check_config(c) -> None:
  """The config's one check (one line each): the key table's rules, then the rules
  between keys."""
  d = as_dict(c)
  keys.check(d, KEYS)
  if d["select"]["enabled"] and d["val_fraction"] <= 0:
    raise ValueError("config key 'select.enabled': the selection rule needs a validation "
                     f"split (val_fraction > 0), found val_fraction={d['val_fraction']}")
  aug = {k: v for k, v in d["augment"].items() if v}
  losses = [distill_lib.method_loss_config(m) for m in d["method"] if m != "full"]
  if (d["distill"]["cfd_real"] == "pooled" and aug
      and any(lc is not None and lc.needs_frequencies() for lc in losses)):
    raise ValueError("config key 'distill.cfd_real': expected 'sampled' with the siamese "
                     "augmentation (pooled precomputes the real side), found 'pooled' with "
                     + ", ".join(f"augment.{k}={v}" for k, v in aug.items()))


@dataclasses.dataclass(frozen=True)
class Plan:
  """An ImageBindDC run, resolved and checked: ``distill`` maps each method to its loop
  config (None: a selection method or ``full``); ``config`` is the config as data
  (what the workdir is bound to and results.json records, under the key names of
  :data:`mmdd_jax.workdir.RENAMED`)."""
  config: dict
  store: dict                  # mmdd_jax.data.resolve_store's keyword arguments
  dataset: str
  seed: int
  methods: tuple
  modalities: tuple
  ipc: int
  init: str
  val_fraction: float
  distill: dict
  iterations: int              # distill.iterations (the selection's cap, the manifest)
  select: bool
  select_grid: tuple
  select_iterations: int
  select_runs: int
  heads: tuple
  eval: dict                   # bindc_jax.evaluate's keyword arguments
  log_every: int
  ckpt_every: int
  progress: bool


def resolve(config: Any) -> Plan:
  """The run's :class:`Plan` (one ``ValueError`` line naming the config key)."""
  d = as_dict(config)
  check_config(d)
  names = tuple(methods(d))
  e, s = d["eval"], d["select"]
  return Plan(
      config=workdir_lib.recorded(d), store=dict(dataset=d["dataset"], scale=d["scale"], seed=d["seed"],
                           data_dir=d["data_dir"] or None,
                           check_hashes=d.get("check_hashes", True)),
      dataset=d["dataset"], seed=d["seed"], methods=names, modalities=tuple(d["modalities"]),
      ipc=d["ipc"], init=d["init"], val_fraction=d["val_fraction"],
      distill={m: None if m == "full" else distill_config(d, m) for m in names},
      iterations=int(d["distill"]["iterations"]), select=bool(s["enabled"]),
      select_grid=tuple(s["grid"]), select_iterations=s["iterations"], select_runs=s["runs"],
      heads=tuple(e["heads"]),
      eval=dict(runs=e["runs"], epochs=e["epochs"], lr=e["lr"], batch_size=e["batch_size"],
                min_steps=e["min_steps"], hidden=e["hidden"]),
      log_every=d["log_every"], ckpt_every=d["ckpt_every"], progress=d["progress"])
