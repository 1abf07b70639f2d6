r"""ImageBindDC: ``--config=experiments/configs/bindc.py:key=value,key=value``.

Sections mirror the library's dataclasses (``bindc_jax.run`` builds them): ``distill`` ↔
``bindc_jax.distill.DistillConfig`` (plus ``bindc_lr``), ``loss`` ↔
``bindc_jax.losses.LossConfig`` (the weights; the method fixes the rest), ``loss.dist`` ↔
``DistanceConfig``, ``augment`` ↔ ``AugmentConfig``; ``select`` is the lr selection rule
(:mod:`bindc_jax.select`), ``eval`` the protocol (:mod:`bindc_jax.evaluate`). Tuples take
``+``-joined items (``method=dm+bindc``). ``local=1`` shrinks a run to seconds on a CPU.
"""

from __future__ import annotations

from bindc_jax import distill
from experiments.configs import common
from mmdd_jax import classification

KEYS = {
    "dataset": ("vggs10k_sim", None, "store directory or simulator name with class labels "
                "(vggs10k_sim, ave_sim, nyuv2_sim, msrvtt_sim, …)"),
    **common.STORE,
    "method": (("bindc",), tuple(distill.METHODS) + ("full",), "methods, '+'-joined: bindc "
               "(CFD uni + cross + joint), cfd_only, mmd, bindc_mmd, bindc_no_uni, "
               "bindc_no_cross, bindc_no_joint, dm, avdd, random, herding, full (the real "
               "train part)"),
    "modalities": (("all",), ("all", "vision", "audio", "text", "depth"), "'+'-joined subset "
                   "of the store's modalities (audio: the paper's 'Audio only' ablation); all "
                   "= every modality"),
    "ipc": (1, ">=1", "synthetic instances per class"),
    "seed": (0, ">=0", "root of every random stream (validation split, init, distillation, "
             "evaluation)"),
    "init": ("herding", ("herding", "random", "noise"), "initialisation of the optimised "
             "methods: herding | random | noise"),
    "val_frac": (0.1, ">=0", "stratified validation split carved from train; every selection "
                 "reads only it (0: none, SPEC's fixed epochs and rates; needs "
                 "select.enabled=False)"),
    "distill.iterations": (2000, ">=1", "distillation steps (SPEC: 2000)"),
    "distill.real_batch": (128, ">=1", "real rows per class and step"),
    "distill.syn_batch": (32, ">=1", "synthetic rows per class and step"),
    "distill.lr": (0.5, ">0", "SGD rate of the synthetic set when select.enabled=False (SPEC "
                   "0.5)"),
    "distill.bindc_lr": (1e-3, ">0", "SGD rate of the CFD-family methods when "
                         "select.enabled=False (CFD gradients ~100x DM's at uni_scale 300: a "
                         "measured departure from SPEC, docs/bindc.md; SPEC: = distill.lr)"),
    "distill.momentum": (0.5, ">=0", "SGD momentum"),
    "distill.project": (True, None, "renormalise the synthetic set onto the sphere after "
                        "every update"),
    "distill.cfd_real": ("sampled", distill.CFD_REAL, "CFD real side: sampled (SPEC, per "
                         "step) | pooled (whole-class CF on a frequency pool; docs/bindc.md "
                         "'Pooled CFD'; not with augment)"),
    "distill.cfd_pool_every": (50, ">=1", "steps per frequency pool (cfd_real=pooled)"),
    "loss.lam_uni": (1.0, ">=0", "weight λ_uni of the uni-modal term"),
    "loss.lam_cross": (10.0, ">=0", "weight λ_cross of the cross-modal term"),
    "loss.lam_joint": (10.0, ">=0", "weight λ_joint of the joint-modal term"),
    "loss.uni_scale": (300.0, ">0", "scale s of the uni-modal term (NCFM's 300)"),
    "loss.lam_icm": (10.0, ">=0", "AVDD weight of the implicit cross-matching term"),
    "loss.lam_cgm": (10.0, ">=0", "AVDD weight of the cross-modal gap-matching term"),
    "loss.dist.alpha": (0.5, ">=0", "CFD amplitude weight α"),
    "loss.dist.beta": (0.5, ">=0", "CFD phase weight β"),
    "loss.dist.num_freqs": (4096, ">=1", "CFD frequencies per step (NCFM: 4096)"),
    "loss.dist.freq_scale": (1.0, ">0", "CFD frequencies t ~ N(0, freq_scale² I)"),
    "loss.dist.bandwidth": (common.placeholder(float), ">0", "MMD Gaussian σ (None: median "
                            "heuristic)"),
    "augment.dropout": (0.0, ">=0", "siamese feature-dropout probability (0 = off)"),
    "augment.jitter": (0.0, ">=0", "siamese Gaussian shift σ (0 = off)"),
    "augment.mixup": (0.0, ">=0", "siamese within-class mixup strength (0 = off)"),
    "select.enabled": (True, None, "choose the synthetic set's lr on validation with "
                       "normalised updates (docs/bindc.md 'Selection rule'); False: SPEC's "
                       "plain SGD at distill.lr"),
    "select.grid": ((0.003, 0.01, 0.03, 0.1), ">0", "candidate step lengths, '+'-joined"),
    "select.iterations": (100, ">=1", "distillation steps per candidate (≤ "
                          "distill.iterations)"),
    "select.runs": (2, ">=1", "heads per candidate's validation score"),
    "eval.heads": (("linear",), classification.HEADS, "evaluation heads, '+'-joined: linear "
                   "(SPEC) | mlp; one results row each"),
    "eval.hidden": (256, ">=1", "MLP head's hidden units"),
    "eval.runs": (5, ">=1", "evaluation runs (head initialisations) per row"),
    "eval.epochs": (30, ">=1", "epochs (with a validation split: the upper bound of the "
                    "choice)"),
    "eval.lr": (1e-3, ">0", "Adam rate of the heads"),
    "eval.batch": (256, ">=1", "evaluation batch size"),
    "eval.min_steps": (300, ">=0", "raise the epochs so every set gets at least this many "
                       "steps"),
    "log_every": (100, ">=1", "steps between metrics records and NaN checks"),
    "ckpt_every": (500, ">=1", "steps between Orbax checkpoints (and at the end)"),
    "progress": (True, None, "progress bars"),
    "local": (False, None, "seconds-long run: scale 0.05, 20 iterations, 128 frequencies, 2 "
              "eval runs, select.grid 0.01+0.1 with 5 steps"),
}
HELP = common.helps(KEYS)


def ranges() -> dict:
  return common.rules(KEYS)


def get_config(arg: str = ""):
  kv = common.parse_arg(arg)
  c = common.build(KEYS)
  c.local = common.convert("local", kv.get("local", "0"), False)
  if c.local:
    c.update_from_flattened_dict({
        "scale": 0.05, "distill.iterations": 20, "distill.real_batch": 32,
        "loss.dist.num_freqs": 128, "eval.runs": 2, "eval.epochs": 5, "eval.min_steps": 20,
        "select.iterations": 5, "select.runs": 1, "select.grid": (0.01, 0.1),
        "log_every": 10, "ckpt_every": 10})
  return common.check(common.apply_overrides(c, kv), ranges())
