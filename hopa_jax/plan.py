r"""The HoPA family's config keys and plans: a config resolved once, before any work.

The key tables of the HoPA configs (``experiments/configs/hopa.py``, ``bound.py``,
``evaluate.py``, ``cross_arch.py``): dotted key → ``(default, rule, meaning)``
(:mod:`mmdd_jax.keys`); ``get_config`` builds its defaults from these tables and
``--help`` lists them. The sections are the library dataclasses' key fields, declared
once on the field (``objective`` ↔ ``ObjectiveConfig``, ``experts`` ↔ ``ExpertConfig``,
``distill`` ↔ ``DistillConfig``, ``eval`` ↔ ``EvalConfig``; the fields a method fixes
are added by :func:`resolve`); the other keys are declared here. :func:`resolve` (a
run), :func:`resolve_study` (the bound study) and :func:`resolve_evaluate` (a
re-evaluation) turn a config into a frozen plan: the one check (the table's rules,
then the few rules between keys), the method table (:data:`hopa_jax.distill.METHODS`)
applied once, the library dataclasses built once. The run, the study and the
re-evaluation read only their plan (``plan.config`` is the config as data: what the
workdir is bound to and what results.json records).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hopa_jax import distill as dl
from hopa_jax import evaluate as ev
from hopa_jax import experts as ex
from hopa_jax import objectives as obj_lib
from hopa_jax import similarity as sim_lib
from mmdd_jax import keys


objective_names = obj_lib.names   # read at check time (hopa_jax.proxy_variants registers more)
P = keys.placeholder

# The sections are the library dataclasses' key fields (default, rule and meaning declared
# once, on the field: mmdd_jax.keys.field), less the fields a method fixes; where a run
# config's default differs from the library's, it is named here.
# The run configs' three departures from SPEC/LoRS, for every objective alike (docs/hopa.md).
OBJECTIVE = keys.section(obj_lib.ObjectiveConfig, "objective", defaults=dict(
    clip_targets=True, pos_from="identity", diag_floor=True))
# The teacher lr is selected on validation unless given.
EXPERTS = keys.section(ex.ExpertConfig, "experts", defaults=dict(lr=None))
# grad_mode None: the method's; mining by lowrank or full Ŝ (fixed: a method without it).
DISTILL = keys.section(dl.DistillConfig, "distill", exclude=("n", "objective", "lr_min"),
                       defaults=dict(grad_mode=None),
                       rules=dict(sim_kind=tuple(k for k in sim_lib.KINDS if k != "fixed")))
# eval.objective None: the method's inner objective; the heads are a re-evaluation's key.
EVAL = keys.section(ev.EvalConfig, "eval", exclude=("sim_kind", "sim_alpha", "head",
                                                    "mlp_hidden"), defaults=dict(objective=None))
KEYS = {
    "dataset": ("msrvtt_sim", None, "store directory or simulator name "
                "(embed.simulate.DATASETS)"),
    **keys.STORE,
    **keys.section(dl.DistillConfig, "", only=("n",)),
    "method": ("hopa", tuple(dl.METHODS), "hopa | lors | mtt_vl | tesla | repblend | "
               "random | full | zero_shot | the ablations (hopa_jax.distill.METHODS)"),
    "seed": (0, ">=0", "simulator seed, validation split and every key of the run"),
    "local": (False, None, "shrink everything to a seconds-long run (smoke tests, notebooks)"),
    "val_fraction": (0.1, "(0,1)", "validation split carved from train (every selection "
                     "reads it, never test)"),
    "experts_dir": ("", None, "'' = <workdir>/experts; share one between methods of one "
                    "objective"),
    "progress": (True, None, "progress bars"),
    "log_every": (50, ">=1", "distillation iterations between metrics.jsonl records"),
    "ckpt_every": (200, ">=1", "distillation iterations between Orbax checkpoints"),
    **OBJECTIVE, **EXPERTS, **DISTILL, **EVAL,
}

_DISTILL = {**DISTILL, "distill.iterations": (200, ">=0", "distillation iterations per "
            "objective (0 = no distilled rows unless study.distilled_store); a short "
            "distillation, not a converged one")}
STUDY_KEYS = {
    "dataset": ("msrvtt_sim", None, "a store directory, or a simulator name "
                "(embed.simulate.DATASETS)"),
    **keys.variant(keys.STORE, {"scale": 0.1}),
    "seed": (0, ">=0", "simulator seed and root key (mmdd_jax.rng streams: real_batch, "
             "random_set, experts/<objective>, distill/<objective>, power/<objective>)"),
    "local": (False, None, "1: a seconds-long CPU run (scale 0.02, hopa+3pair, T=4, n=10, …)"),
    "progress": (True, None, "progress bars (bookkeeping: not part of the config fingerprint)"),
    **OBJECTIVE,
    **keys.variant(EXPERTS, {"experts.num_experts": 1, "experts.epochs": 4,
                                    "experts.lr": 0.01}),
    **keys.variant(_DISTILL, {"distill.syn_steps": 8, "distill.max_start_epoch": 2}),
    "study.objectives": (("hopa", "3pair", "tbind", "vbind", "infonce"),
                         objective_names, "inner objectives, "
                         "a tuple (hopa_jax.objectives.OBJECTIVES)"),
    "study.T": (16, ">=1", "SGD steps of both rollouts"),
    "study.eta": (0.01, ">0", "step size η shared by both rollouts"),
    "study.n": (100, ">=1", "synthetic instances (Random: n random real train instances)"),
    "study.real_batch": (512, ">=0", "fixed real subset for the deterministic real gradient "
                         "(0 = all)"),
    "study.power_iters": (50, ">=1", "power iterations (HVPs) per step for L_t"),
    "study.power_tol": (1e-4, ">0", "power iteration stops at this relative change"),
    "study.start_epoch": (2, ">=0", "θ₀ = expert 0 after this many epochs"),
    "study.distilled_store": ("", None, "a distilled store (train split = the synthetic set, "
                              "similarity.npy = Ŝ) used with every objective; '' = distill"),
}

EVALUATE_KEYS = {
    "store": ("", None, "store directory to evaluate (its train split is the training set)"),
    "test_store": ("", None, "store whose test split is scored ('' = store)"),
    "seed": (0, ">=0", "evaluation key"),
    "targets": ("store", ("store", "identity"), "what the heads are trained towards: 'store' = "
                "the store's learned Ŝ (similarity.npy) when it has one, else I; 'identity' = "
                "I even when it has one (the synthetic features without their learned "
                "targets: a diagnostic, docs/identity_targets.md)"),
    "lr": (keys.placeholder(float), ">0", "eval.protocol=paper: learning rate (None: the "
           "store's learned η, else 0.01)"),
    "check_hashes": keys.STORE["check_hashes"],
    "progress": (True, None, "progress bars"),
    **OBJECTIVE,
    **keys.section(ev.EvalConfig, "eval", exclude=("sim_kind", "sim_alpha", "mlp_hidden")),
}

CROSS_ARCH_ROWS = ("distilled", "random", "full")   # hopa_jax.cross_arch.ROWS
CROSS_ARCH_KEYS = {
    "heads": (ev.HEADS, ev.HEADS, "head architectures, a tuple of: "
              "linear_pretrained | linear_random | mlp | mlp_residual (hopa_jax.evaluate.HEADS)"),
    "rows": (CROSS_ARCH_ROWS, CROSS_ARCH_ROWS, "rows per store, a tuple of: distilled | "
             "random (its initial real rows) | full (every real train row but the validation "
             "ones)"),
    "seed": (0, ">=0", "evaluation key (the same for every cell)"),
    "local": (False, None, "shrink the evaluation to a seconds-long run (smoke tests)"),
    "check_hashes": keys.STORE["check_hashes"],
    "progress": (True, None, "progress bars"),
    # every row and head selected on validation by one rule: the select protocol only
    **keys.variant({k: v for k, v in EVALUATE_KEYS.items()
                    if k.startswith(("objective.", "eval.")) and k != "eval.head"}, {},
                   rules={"eval.protocol": ("select",)}),
}


# ------------------------------------------------------------------ config → dataclasses


as_dict = keys.as_dict


def section(c, name: str) -> dict:
  """Config section ``name`` as the keyword arguments of its dataclass."""
  return dict(as_dict(c)[name])


def objective_config(c, method: str | None = None) -> obj_lib.ObjectiveConfig:
  """``ObjectiveConfig(**config.objective)`` with the method's own settings on top
  (``method=None``: the config's; a config without a method: none)."""
  d = as_dict(c)
  m = method or d.get("method")
  return obj_lib.ObjectiveConfig(**{**d["objective"], **(dl.method_spec(m)["obj"] if m else {})})


def experts_config(c, lr: float | None = None) -> ex.ExpertConfig:
  """``ExpertConfig(**config.experts)`` with the method's objective (``lr``: instead of
  ``experts.lr``)."""
  d = as_dict(c)
  kw = dict(d["experts"])
  kw["lr"] = lr if lr is not None else kw["lr"]
  return ex.ExpertConfig(**kw, objective=dl.method_spec(d["method"])["objective"],
                         obj=objective_config(d))


def distill_config(c) -> dl.DistillConfig:
  """``DistillConfig(**config.distill)`` plus what the method fixes."""
  d = as_dict(c)
  spec = dl.method_spec(d["method"])
  kw = dict(d["distill"])
  kw["grad_mode"] = kw["grad_mode"] or spec["grad_mode"]
  if not spec["mining"]:
    kw["sim_kind"] = "fixed"
  return dl.DistillConfig(**kw, n=d["n"], objective=spec["objective"], obj=objective_config(d),
                          blend=spec["blend"])


def eval_config(c, sim_kind: str = "fixed") -> ev.EvalConfig:
  """One evaluation for every row: ``eval.objective`` (None: the method's inner
  objective) with the config's objective settings."""
  d = as_dict(c)
  kw = dict(d["eval"])
  kw["objective"] = kw["objective"] or dl.method_spec(d["method"])["objective"]
  return ev.EvalConfig(**kw, obj=objective_config(d), sim_kind=sim_kind,
                       sim_alpha=d["distill"]["sim_alpha"])


def _store(d: dict) -> dict:
  return dict(dataset=d["dataset"], scale=d["scale"], seed=d["seed"],
              data_dir=d["data_dir"] or None, check_hashes=d.get("check_hashes", True))


@dataclasses.dataclass(frozen=True)
class Plan:
  """A HoPA / baseline run (``experiments/configs/hopa.py``), resolved and checked.

  ``spec`` is the method's row of :data:`hopa_jax.distill.METHODS`; ``experts.lr`` None
  means the teacher lr is selected on validation; ``eval.sim_kind`` is ``fixed`` (the
  run sets the distilled set's); ``config`` the config as data (binding, records)."""
  config: dict
  store: dict                  # mmdd_jax.data.resolve_store's keyword arguments
  seed: int
  n: int
  method: str
  spec: dict
  val_fraction: float
  experts_dir: str
  progress: bool
  log_every: int
  ckpt_every: int
  obj: obj_lib.ObjectiveConfig
  experts: ex.ExpertConfig
  distill: dl.DistillConfig
  eval: ev.EvalConfig

  @property
  def objective(self) -> str:
    """The method's inner objective (experts and student)."""
    return self.spec["objective"]

  @property
  def title(self) -> str:
    return f"{self.method} on {self.store['dataset']} (n={self.n})"


def resolve(config: Any) -> Plan:
  """The run's :class:`Plan`: the keys' one check (the table's rules, then the one rule
  between keys), the method table applied once, the dataclasses built once (one
  ``ValueError`` line naming the config key)."""
  d = as_dict(config)
  keys.check(d, KEYS)
  spec = dl.method_spec(d["method"])
  dcfg = distill_config(d)
  dcfg.check_segments(d["experts"]["epochs"] + 1 if spec["optimize"] else None)
  ecfg = eval_config(d)
  return Plan(config=d, store=_store(d), seed=d["seed"], n=d["n"], method=d["method"],
              spec=spec, val_fraction=d["val_fraction"], experts_dir=d["experts_dir"],
              progress=bool(d["progress"]), log_every=d["log_every"],
              ckpt_every=d["ckpt_every"], obj=objective_config(d), experts=experts_config(d),
              distill=dcfg, eval=ecfg)


# ----------------------------------------------------------------------- the bound study


def study_objective_config(c) -> obj_lib.ObjectiveConfig:
  """The ``objective`` section (the same as HoPA's; clip_targets, pos_from included)."""
  return obj_lib.ObjectiveConfig(**section(c, "objective"))


def study_expert_config(c, objective: str, ocfg: obj_lib.ObjectiveConfig) -> ex.ExpertConfig:
  return ex.ExpertConfig(**section(c, "experts"), objective=objective, obj=ocfg)


def study_distill_config(c, n: int, objective: str,
                         ocfg: obj_lib.ObjectiveConfig) -> dl.DistillConfig:
  """The ``distill`` section for ``objective``: no mining for InfoNCE (``fixed``), the
  mini-batch capped at ``n``, ``grad_mode`` None = ``full``."""
  d = section(c, "distill")
  d["grad_mode"] = d.get("grad_mode") or "full"
  d["mini_batch"] = min(int(d["mini_batch"]), n)
  if objective == "infonce":
    d["sim_kind"] = "fixed"
  return dl.DistillConfig(**d, n=n, objective=objective, obj=ocfg)


def study_objectives(c) -> list[str]:
  """The study's rules between keys (after the key rules, before the workdir is bound);
  returns the objectives."""
  d = as_dict(c)
  names = list(d["study"]["objectives"])
  if d["experts"]["lr"] is None:
    raise ValueError("config key 'experts.lr': expected a learning rate (the bound study "
                     "selects nothing on validation), found None")
  if d["study"]["start_epoch"] > d["experts"]["epochs"]:
    raise ValueError(f"config key 'study.start_epoch': expected ≤ experts.epochs="
                     f"{d['experts']['epochs']}, found {d['study']['start_epoch']}")
  return names


@dataclasses.dataclass(frozen=True)
class StudyPlan:
  """The bound study (``experiments/configs/bound.py``), resolved and checked: per
  objective its experts' and (``distill.iterations`` > 0, no ``study.distilled_store``)
  its distillation's config."""
  config: dict
  store: dict
  seed: int
  progress: bool
  objectives: tuple
  obj: obj_lib.ObjectiveConfig
  experts: dict                # objective → ExpertConfig
  distill: dict                # objective → DistillConfig (empty: no distilled rows)
  iterations: int
  lr: float                    # experts.lr: the student's initial η
  n: int
  T: int
  eta: float
  real_batch: int
  power_iters: int
  power_tol: float
  start_epoch: int
  distilled_store: str


def resolve_study(config: Any) -> StudyPlan:
  d = as_dict(config)
  keys.check(d, STUDY_KEYS)
  names = study_objectives(d)
  s = d["study"]
  ocfg = study_objective_config(d)
  iterations = int(d["distill"]["iterations"])
  distill = {}
  if iterations > 0 and not s["distilled_store"]:
    for o in names:
      distill[o] = study_distill_config(d, s["n"], o, ocfg)
      distill[o].check_segments(d["experts"]["epochs"] + 1)
  return StudyPlan(
      config=d, store=_store(d), seed=d["seed"], progress=bool(d.get("progress", True)),
      objectives=tuple(names), obj=ocfg,
      experts={o: study_expert_config(d, o, ocfg) for o in names}, distill=distill,
      iterations=iterations, lr=float(d["experts"]["lr"]), n=s["n"], T=s["T"], eta=s["eta"],
      real_batch=s["real_batch"], power_iters=s["power_iters"], power_tol=s["power_tol"],
      start_epoch=s["start_epoch"], distilled_store=s["distilled_store"])


# ----------------------------------------------------------------------- re-evaluation


@dataclasses.dataclass(frozen=True)
class EvaluatePlan:
  """A store's re-evaluation (``experiments/configs/evaluate.py``), resolved and checked;
  ``eval.sim_kind`` is ``fixed`` (``full`` when the store has ``Ŝ``)."""
  config: dict
  store: str
  test_store: str
  seed: int
  lr: float | None
  check_hashes: bool
  progress: bool
  eval: ev.EvalConfig
  targets: str = "store"

  @property
  def select(self) -> bool:
    return self.eval.protocol == "select"


def resolve_evaluate(config: Any) -> EvaluatePlan:
  d = as_dict(config)
  keys.check(d, EVALUATE_KEYS)
  if not d["store"]:
    raise ValueError("config key 'store': expected a store directory, found ''")
  cfg = ev.EvalConfig(**d["eval"], obj=obj_lib.ObjectiveConfig(**d["objective"]))
  return EvaluatePlan(config=d, store=d["store"], test_store=d["test_store"], seed=d["seed"],
                      lr=d["lr"], check_hashes=d["check_hashes"], progress=bool(d["progress"]),
                      eval=cfg, targets=d["targets"])


# ------------------------------------------------------------ the cross-architecture table


@dataclasses.dataclass(frozen=True)
class CrossArchPlan:
  """The cross-architecture table (``experiments/configs/cross_arch.py``), resolved and
  checked; ``eval`` is every cell's evaluation but its head and ``sim_kind`` (set per
  cell: :func:`hopa_jax.cross_arch.eval_config`)."""
  config: dict
  seed: int
  rows: tuple
  heads: tuple
  check_hashes: bool
  progress: bool
  eval: ev.EvalConfig


def resolve_cross_arch(config: Any) -> CrossArchPlan:
  """The one check of a cross-architecture config (the key table's rules: heads and rows
  non-empty tuples of their names, the select protocol only) and its plan."""
  d = as_dict(config)
  keys.check(d, CROSS_ARCH_KEYS)
  cfg = ev.EvalConfig(**d["eval"], obj=obj_lib.ObjectiveConfig(**d["objective"]))
  return CrossArchPlan(config=d, seed=d["seed"], rows=tuple(d["rows"]),
                       heads=tuple(d["heads"]), check_hashes=bool(d["check_hashes"]),
                       progress=bool(d["progress"]), eval=cfg)
