"""ImageBindDC config: ``--config=experiments/configs/bindc.py:key=value,key=value``.

Keys (all overridable from the argument string; ``local=1`` shrinks everything so a
run takes seconds on a CPU):

* ``dataset`` store directory or simulator name (``vggs10k_sim``, ``ave_sim``,
  ``nyuv2_sim``, ``msrvtt_sim`` …); ``scale``, ``data_dir`` for simulators.
* ``method`` one method or several joined by ``+`` (e.g. ``random+herding+dm+avdd+bindc+full``):
  ``bindc`` (CFD uni + cross + joint), ``cfd_only``, ``mmd`` (Gaussian-MMD uni only),
  ``bindc_mmd``, ``bindc_no_uni``, ``bindc_no_cross``, ``bindc_no_joint``, ``dm``, ``avdd``,
  ``random``, ``herding``, ``full`` (the real train split).
* ``ipc`` synthetic instances per class; ``seed``.
* ``modalities`` ``+``-separated subset of the store's modalities (e.g. ``audio`` for the
  paper's "Audio only" CFD-vs-MMD ablation); empty = all.
* ``iterations`` (SPEC 2000), ``real_batch`` 128, ``syn_batch`` 32, ``momentum`` 0.5,
  ``init`` (herding | random | noise), ``project`` (renormalise after each update).
* selection (``bindc_jax.select``, docs/bindc.md "Selection rule"): ``val_frac`` 0.1 (the
  stratified validation split carved from train; every selection reads only it, and
  methods / Random / Full train only on the rest), ``lr_select`` 1 (the synthetic set's
  learning rate chosen by one rule for every method: normalised updates, each of
  ``lr_grid`` ``0.003+0.01+0.03+0.1`` distilled for ``select_iterations`` 100 steps and
  scored by validation accuracy of ``select_runs`` 2 heads; ties → smaller lr).
  ``lr_select=0`` restores SPEC's fixed rates: plain SGD at ``lr`` 0.5, and ``bindc_lr``
  (default 1e-3; < 0 = ``lr``) for the CFD family. ``val_frac=0`` additionally trains on
  the whole train split with a fixed number of evaluation epochs (the old protocol).
* loss: ``lam_uni`` 1, ``lam_cross`` 10, ``lam_joint`` 10, ``uni_scale`` 300, ``alpha``
  0.5, ``beta`` 0.5, ``num_freqs`` 4096, ``freq_scale`` 1, ``bandwidth`` (MMD σ; 0 =
  median heuristic), ``lam_icm`` 10, ``lam_cgm`` 10.
* CFD real side (beyond the paper): ``cfd_real`` ``sampled`` (default, SPEC: the step's
  ``real_batch`` rows on fresh frequencies) or ``pooled`` (the whole class's real
  characteristic function, precomputed on a frequency pool redrawn every
  ``cfd_pool_every`` steps, default 50; each step evaluates only the synthetic side;
  exclusive with the augmentation). See docs/bindc.md, "Pooled CFD".
* augmentation: ``aug_dropout``, ``aug_jitter``, ``aug_mixup`` (0 = off).
* evaluation: ``eval_heads`` ``linear`` (``mlp``: one hidden ReLU layer of ``eval_hidden``
  256 units; ``linear+mlp`` reports both, one results row each), ``eval_runs`` 5,
  ``eval_epochs`` 30, ``eval_lr`` 1e-3, ``eval_batch`` 256, ``eval_min_steps`` 300. With a
  validation split the heads train for up to max(``eval_epochs``, enough epochs for
  ``eval_min_steps`` steps) and the epoch count with the best mean validation accuracy is
  used (the same rule for every row, Full and Random included).
* bookkeeping: ``log_every``, ``ckpt_every``, ``progress``.
"""

import ml_collections

from experiments.configs import common

def get_config(arg: str = "") -> ml_collections.ConfigDict:
  a = common.parse_arg(arg)
  c = ml_collections.ConfigDict()
  c.dataset = "vggs10k_sim"
  c.scale = 1.0
  c.data_dir = ""
  c.method = "bindc"
  c.modalities = ""
  c.ipc = 1
  c.seed = 0
  c.init = "herding"
  c.iterations = 2000
  c.real_batch = 128
  c.syn_batch = 32
  c.lr = 0.5                 # SPEC's fixed rate (lr_select=0 only)
  c.momentum = 0.5
  # lr_select=0 only: with uni_scale 300 the CFD gradients are ~100x larger than DM's
  # (docs/bindc.md, "Notes"); < 0: same as lr.
  c.bindc_lr = 1e-3
  c.project = 1
  c.val_frac = 0.1
  c.lr_select = 1
  c.lr_grid = "0.003+0.01+0.03+0.1"
  c.select_iterations = 100
  c.select_runs = 2
  c.lam_uni, c.lam_cross, c.lam_joint, c.uni_scale = 1.0, 10.0, 10.0, 300.0
  c.alpha, c.beta, c.num_freqs, c.freq_scale = 0.5, 0.5, 4096, 1.0
  c.bandwidth = 0.0          # 0: median heuristic
  c.lam_icm, c.lam_cgm = 10.0, 10.0
  # Real side of the CFD: "sampled" (SPEC, per step) or "pooled" (whole-class CF on a
  # frequency pool kept cfd_pool_every steps; benchmarks/RESULTS.md). Not with aug_*.
  c.cfd_real = "sampled"
  c.cfd_pool_every = 50
  c.aug_dropout, c.aug_jitter, c.aug_mixup = 0.0, 0.0, 0.0
  c.eval_heads = "linear"
  c.eval_hidden = 256
  c.eval_runs, c.eval_epochs, c.eval_lr, c.eval_batch, c.eval_min_steps = 5, 30, 1e-3, 256, 300
  c.log_every = 100
  c.ckpt_every = 500
  c.progress = 1
  c.local = 0
  local = int(a.get("local", 0))
  if local:
    c.local = 1
    c.scale = 0.05
    c.iterations = 20
    c.num_freqs = 128
    c.real_batch = 32
    c.eval_runs = 2
    c.eval_epochs = 5
    c.eval_min_steps = 20
    c.select_iterations = 5
    c.select_runs = 1
    c.lr_grid = "0.01+0.1"
    c.log_every = 10
    c.ckpt_every = 10
  return common.apply_overrides(c, a)
