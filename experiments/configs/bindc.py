r"""ImageBindDC config: ``--config=experiments/configs/bindc.py:key=value,key=value``.

Nested sections mirror the library's dataclasses (``bindc_jax.run`` builds them):
``distill`` ↔ :class:`bindc_jax.distill.DistillConfig` (its scalar fields, plus
``bindc_lr``), ``loss`` ↔ :class:`bindc_jax.losses.LossConfig` (the weights; ``kind``,
``distance`` and the ``use_*`` switches are fixed by the method), ``loss.dist`` ↔
:class:`bindc_jax.distances.DistanceConfig`, ``augment`` ↔
:class:`bindc_jax.augment.AugmentConfig`; ``select`` is the lr selection rule
(:mod:`bindc_jax.select`) and ``eval`` the evaluation protocol (:mod:`bindc_jax.evaluate`).
Every key and its meaning: :data:`HELP` (``python -m experiments.bindc --help``).

A key is a dotted path (``distill.iterations=300``) or a unique leaf name
(``num_freqs=1024``); tuples take ``+``-separated items (``method=dm+bindc``,
``select.grid=0.01+0.1``). ``local=1`` shrinks everything so a run takes seconds on a CPU.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  kv = common.parse_arg(arg)
  local = common.convert("local", kv.get("local", "0"), False)
  c = ml_collections.ConfigDict()
  c.dataset = "vggs10k_sim"
  c.scale = 1.0
  c.data_dir = ""
  c.method = ("bindc",)
  c.modalities = ("all",)
  c.ipc = 1
  c.seed = 0
  c.init = "herding"
  c.val_frac = 0.1
  c.distill = ml_collections.ConfigDict(dict(
      iterations=2000, real_batch=128, syn_batch=32,
      lr=0.5,                 # SPEC's fixed rate (select.enabled=False only)
      # select.enabled=False only: with uni_scale 300 the CFD gradients are ~100x larger
      # than DM's (docs/bindc.md, "Notes"); SPEC: the same as lr (bindc_lr=0.5).
      bindc_lr=1e-3,
      momentum=0.5, project=True,
      # Real side of the CFD: "sampled" (SPEC, per step) or "pooled" (whole-class CF on a
      # frequency pool kept cfd_pool_every steps; benchmarks/RESULTS.md). Not with augment.
      cfd_real="sampled", cfd_pool_every=50))
  c.loss = ml_collections.ConfigDict(dict(
      lam_uni=1.0, lam_cross=10.0, lam_joint=10.0, uni_scale=300.0, lam_icm=10.0,
      lam_cgm=10.0,
      dist=ml_collections.ConfigDict(dict(
          alpha=0.5, beta=0.5, num_freqs=4096, freq_scale=1.0,
          bandwidth=common.placeholder(float)))))   # None: median heuristic
  c.augment = ml_collections.ConfigDict(dict(dropout=0.0, jitter=0.0, mixup=0.0))
  c.select = ml_collections.ConfigDict(dict(
      enabled=True, grid=(0.003, 0.01, 0.03, 0.1), iterations=100, runs=2))
  c.eval = ml_collections.ConfigDict(dict(
      heads=("linear",), hidden=256, runs=5, epochs=30, lr=1e-3, batch=256, min_steps=300))
  c.log_every = 100
  c.ckpt_every = 500
  c.check_hashes = True
  c.progress = True
  c.local = local
  if local:
    c.scale = 0.05
    c.distill.iterations = 20
    c.distill.real_batch = 32
    c.loss.dist.num_freqs = 128
    c.eval.runs = 2
    c.eval.epochs = 5
    c.eval.min_steps = 20
    c.select.iterations = 5
    c.select.runs = 1
    c.select.grid = (0.01, 0.1)
    c.log_every = 10
    c.ckpt_every = 10
  return common.check(common.apply_overrides(c, kv), ranges())


def ranges() -> dict:
  """Every numeric key's range and every enumerated key's values (checked at parse time)."""
  from bindc_jax import distill
  from mmdd_jax import classification
  return {
      "scale": "(0,1]", "method": tuple(distill.METHODS) + ("full",),
      "modalities": ("all", "vision", "audio", "text", "depth"), "ipc": ">=1", "seed": ">=0",
      "init": ("herding", "random", "noise"), "val_frac": ">=0",
      "distill.iterations": ">=1", "distill.real_batch": ">=1", "distill.syn_batch": ">=1",
      "distill.lr": ">0", "distill.bindc_lr": ">0", "distill.momentum": ">=0",
      "distill.cfd_real": distill.CFD_REAL, "distill.cfd_pool_every": ">=1",
      "loss.lam_uni": ">=0", "loss.lam_cross": ">=0", "loss.lam_joint": ">=0",
      "loss.uni_scale": ">0", "loss.lam_icm": ">=0", "loss.lam_cgm": ">=0",
      "loss.dist.alpha": ">=0", "loss.dist.beta": ">=0", "loss.dist.num_freqs": ">=1",
      "loss.dist.freq_scale": ">0", "loss.dist.bandwidth": ">0",
      "augment.dropout": ">=0", "augment.jitter": ">=0", "augment.mixup": ">=0",
      "select.grid": ">0", "select.iterations": ">=1", "select.runs": ">=1",
      "eval.heads": classification.HEADS, "eval.hidden": ">=1", "eval.runs": ">=1",
      "eval.epochs": ">=1", "eval.lr": ">0", "eval.batch": ">=1", "eval.min_steps": ">=0",
      "log_every": ">=1", "ckpt_every": ">=1",
  }


HELP = {
    **common.STORE_HELP,
    "dataset": "store directory or simulator name with class labels (vggs10k_sim, ave_sim, "
               "nyuv2_sim, msrvtt_sim, …)",
    "method": "methods, '+'-joined: bindc (CFD uni + cross + joint), cfd_only, mmd, bindc_mmd, "
              "bindc_no_uni, bindc_no_cross, bindc_no_joint, dm, avdd, random, herding, full "
              "(the real train part)",
    "modalities": "'+'-joined subset of the store's modalities (audio: the paper's 'Audio "
                  "only' ablation); all = every modality",
    "ipc": "synthetic instances per class",
    "seed": "root of every random stream (validation split, init, distillation, evaluation)",
    "init": "initialisation of the optimised methods: herding | random | noise",
    "val_frac": "stratified validation split carved from train; every selection reads only "
                "it (0: none, SPEC's fixed epochs and rates; needs select.enabled=False)",
    "distill.iterations": "distillation steps (SPEC: 2000)",
    "distill.real_batch": "real rows per class and step",
    "distill.syn_batch": "synthetic rows per class and step",
    "distill.lr": "SGD rate of the synthetic set when select.enabled=False (SPEC 0.5)",
    "distill.bindc_lr": "SGD rate of the CFD-family methods when select.enabled=False "
                        "(measured departure from SPEC, docs/bindc.md; SPEC: = distill.lr)",
    "distill.momentum": "SGD momentum",
    "distill.project": "renormalise the synthetic set onto the sphere after every update",
    "distill.cfd_real": "CFD real side: sampled (SPEC, per step) | pooled (whole-class CF on "
                        "a frequency pool; docs/bindc.md 'Pooled CFD'; not with augment)",
    "distill.cfd_pool_every": "steps per frequency pool (cfd_real=pooled)",
    "loss.lam_uni": "weight λ_uni of the uni-modal term",
    "loss.lam_cross": "weight λ_cross of the cross-modal term",
    "loss.lam_joint": "weight λ_joint of the joint-modal term",
    "loss.uni_scale": "scale s of the uni-modal term (NCFM's 300)",
    "loss.lam_icm": "AVDD weight of the implicit cross-matching term",
    "loss.lam_cgm": "AVDD weight of the cross-modal gap-matching term",
    "loss.dist.alpha": "CFD amplitude weight α",
    "loss.dist.beta": "CFD phase weight β",
    "loss.dist.num_freqs": "CFD frequencies per step (NCFM: 4096)",
    "loss.dist.freq_scale": "CFD frequencies t ~ N(0, freq_scale² I)",
    "loss.dist.bandwidth": "MMD Gaussian σ (None: median heuristic)",
    "augment.dropout": "siamese feature-dropout probability (0 = off)",
    "augment.jitter": "siamese Gaussian shift σ (0 = off)",
    "augment.mixup": "siamese within-class mixup strength (0 = off)",
    "select.enabled": "choose the synthetic set's lr on validation with normalised updates "
                      "(docs/bindc.md 'Selection rule'); False: SPEC's plain SGD at distill.lr",
    "select.grid": "candidate step lengths, '+'-joined",
    "select.iterations": "distillation steps per candidate (≤ distill.iterations)",
    "select.runs": "heads per candidate's validation score",
    "eval.heads": "evaluation heads, '+'-joined: linear (SPEC) | mlp; one results row each",
    "eval.hidden": "MLP head's hidden units",
    "eval.runs": "evaluation runs (head initialisations) per row",
    "eval.epochs": "epochs (with a validation split: the upper bound of the choice)",
    "eval.lr": "Adam rate of the heads",
    "eval.batch": "evaluation batch size",
    "eval.min_steps": "raise the epochs so every set gets at least this many steps",
    "log_every": "steps between metrics records and NaN checks",
    "ckpt_every": "steps between Orbax checkpoints (and at the end)",
    "progress": "progress bars",
    "local": "seconds-long run: scale 0.05, 20 iterations, 128 frequencies, 2 eval runs, "
             "select.grid 0.01+0.1 with 5 steps",
}
