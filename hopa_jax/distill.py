"""Trajectory-matching distillation (SPEC §3.5) for HoPA and the pairwise baselines.

The whole learnable state is one :class:`DistillState`; one jitted iteration is
built by :func:`make_distill_step` (state donated). An iteration samples an expert
``e`` and a start epoch ``s`` from the step key, unrolls ``syn_steps`` student SGD
steps from ``θ₀ = θ_e[s]`` on synthetic mini-batches with the learnable step size
``η = exp(log_lr)``, and matches ``θ* = θ_e[s + expert_epochs]`` with the branch-wise
normalised distance ``Σ_m ‖θ̂_m − θ*_m‖² / ‖θ₀_m − θ*_m‖²``.

Gradient modes:

* ``full``: backprop through the unrolled ``lax.scan`` (``jax.checkpoint`` per step:
  memory grows with ``syn_steps`` by one set of heads per step);
* ``tesla``: constant memory (TESLA). Pass 1 runs the student and accumulates
  ``G = Σ_i g_i``; then ``c = 2(η(θ*−θ₀) + η²G)/D`` per branch and pass 2 re-runs the
  student, accumulating ``∂/∂x ⟨c, g_i(θ_i, x)⟩`` for every step. ``η``'s gradient
  comes from ``‖θ₀ − ηG − θ*‖²/D`` with ``G`` held fixed. **Approximation:** the
  dependence of ``θ_i`` on the learnables through earlier steps is dropped (the
  ``θ_i`` are treated as constants), so tesla gradients differ from full ones by
  terms of relative order ``η·syn_steps·‖∇²L‖``; the tests bound that gap on a tiny
  problem.

**Several segments per iteration** (``trajectories_per_iter = K > 1``; not in the paper,
whose algorithm is ``K = 1``, the default and exactly today's iteration): ``K`` segments
(expert and start epoch drawn independently, with replacement) are unrolled side by
side (``vmap``; the segment axis is split over the devices of the global mesh when
``K`` divides their number, :mod:`mmdd_jax.sharding`), each on its own synthetic
mini-batches, and the *mean* of their matching losses is differentiated: one update of
the learnables per iteration, from a ``K``-segment average gradient.

Methods (:data:`METHODS`) select the inner objective, similarity mining, gradient
mode and representation blending; ``random`` has no optimisation at all; ``full``
(all train rows) and ``zero_shot`` (no training) are the reference rows.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from hopa_jax import objectives as obj_lib
from hopa_jax import similarity as sim_lib
from mmdd_jax import heads as heads_lib
from mmdd_jax import distributed, loop, results, rng, sharding
from mmdd_jax import keys as keys_lib

GRAD_MODES = ("full", "tesla")
OPTIMIZERS = ("adam", "sgd")

# name -> (objective, mining, grad_mode, blend, objective-config overrides)
METHODS: dict[str, dict] = {
    "hopa": dict(objective="hopa", mining=True, grad_mode="full"),
    "rank2": dict(objective="hopa", mining=True, grad_mode="full", obj=dict(rank=2)),
    "no_mining": dict(objective="hopa", mining=False, grad_mode="full"),
    "no_lmod": dict(objective="hopa", mining=True, grad_mode="full", obj=dict(use_mod=False)),
    "no_linst": dict(objective="hopa", mining=True, grad_mode="full", obj=dict(use_inst=False)),
    # LoRS (Tables 1–3) and HoPA's "3-pair" variant (Table 5) coincide: the paper
    # describes 3-pair as "all three pairwise alignments with the wBCE loss between
    # modalities following (Xu et al., 2024)" inside its LoRS-based pipeline (similarity
    # mining, trajectory matching), i.e. LoRS for M = 3; it names no difference (the
    # two tables' numbers differ with no stated cause; docs/hopa.md). One cell serves both.
    "lors": dict(objective="3pair", mining=True, grad_mode="full"),
    "3pair": dict(objective="3pair", mining=True, grad_mode="full"),
    "tbind": dict(objective="tbind", mining=True, grad_mode="full"),
    "vbind": dict(objective="vbind", mining=True, grad_mode="full"),
    "mtt_vl": dict(objective="infonce", mining=False, grad_mode="full"),
    "tesla": dict(objective="infonce", mining=False, grad_mode="tesla"),
    "repblend": dict(objective="3pair", mining=True, grad_mode="full", blend=True),
    "random": dict(objective="hopa", mining=False, grad_mode="full", optimize=False),
    # Reference rows (no set is distilled): the evaluation on all train rows, and the
    # pretrained heads untrained.
    "full": dict(objective="hopa", mining=False, grad_mode="full", optimize=False, rows="all"),
    "zero_shot": dict(objective="hopa", mining=False, grad_mode="full", optimize=False,
                      rows="none"),
}


def method_spec(name: str) -> dict:
  """Defaults of method ``name`` with every field present."""
  if name not in METHODS:
    raise ValueError(f"method: expected one of {sorted(METHODS)}, found '{name}'")
  spec = dict(objective="hopa", mining=True, grad_mode="full", blend=False, optimize=True,
              obj={}, rows="subset")
  spec.update(METHODS[name])
  return spec


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """Static configuration of one distillation (hashable; closed over by the step).

  The key fields are config keys ``distill.<field>`` (``n`` the top-level ``n``;
  :func:`mmdd_jax.keys.field`: default, rule, meaning); ``objective``, ``obj``,
  ``blend`` and ``sim_kind="fixed"`` are the method's (:data:`METHODS`). Learning
  rates: with ``adam`` the features' lr is *relative* — modality ``m`` moves by about
  ``lr_data · scale_m`` per coordinate and step, ``scale_m`` the RMS spread of the real
  features (``DistillState.syn_scale``), so every learnable moves at the data's own
  scale whatever the gradient scale; ``log η`` and ``Ŝ`` (both O(1)) move by about
  ``lr_lr`` / ``lr_sim``. With ``sgd`` (SPEC §3.5) they are SPEC's absolute lrs, and
  ``lr_lr`` applies to raw ``η`` as in MTT/LoRS (:func:`sgd_on_raw_lr`; ``log η`` is only
  how the state stores it). ``trajectories_per_iter``: module docstring.
  """
  n: int = keys_lib.field(100, ">=1", "synthetic instances")
  objective: str = keys_lib.field("hopa", obj_lib.names, "inner objective (the method's)")
  obj: obj_lib.ObjectiveConfig = obj_lib.ObjectiveConfig()
  sim_kind: str = keys_lib.field("lowrank", sim_lib.KINDS, "similarity mining Ŝ: lowrank | "
                                 "full (fixed when the method has none)")
  sim_rank: int = keys_lib.field(10, ">=1", "rank r of the low-rank Ŝ")
  sim_alpha: float = keys_lib.field(1.0, ">0", "scale α of the low-rank Ŝ")
  syn_steps: int = keys_lib.field(16, ">=1", "student SGD steps per iteration")
  mini_batch: int = keys_lib.field(25, ">=1", "synthetic mini-batch of the student")
  expert_epochs: int = keys_lib.field(2, ">=1", "target offset: θ* = θ[start + "
                                      "expert_epochs]")
  max_start_epoch: int = keys_lib.field(5, ">=1", "start epochs s ~ U{0..max_start_epoch−1}")
  grad_mode: str = keys_lib.field("full", GRAD_MODES, "None = the method's (full; tesla for "
                                  "method=tesla) | full | tesla", typ=str)
  optimizer: str = keys_lib.field("adam", OPTIMIZERS, "adam (normalised updates, lr_data "
                                  "relative to the features' spread) | sgd (SPEC §3.5/§3.7: "
                                  "momentum, lr_data 100, lr_lr 1e-4)")
  lr_data: float = keys_lib.field(0.01, ">0", "lr of the synthetic features")
  lr_lr: float = keys_lib.field(0.01, ">0", "lr of the student step size: of log η (adam) | "
                                "of raw η, as MTT/LoRS (sgd; η clamped ≥ 1e-6)")
  lr_sim: float = keys_lib.field(0.01, ">0", "lr of the Ŝ parameters")
  blend: bool = False     # RepBlend's representation blending of every student mini-batch
  learn_lr: bool = keys_lib.field(True, None, "learn the student step size η (else it stays "
                                  "at the experts' lr)")
  momentum: float = keys_lib.field(0.5, ">=0", "SGD momentum (optimizer=sgd)")
  lr_min: float = keys_lib.field(1e-6, ">0", "sgd: the floor under the learned η after each "
                                 "update (MTT/LoRS keep η raw; LoRS optionally clamps it)")
  iterations: int = keys_lib.field(2000, ">=1", "distillation iterations")
  trajectories_per_iter: int = keys_lib.field(
      1, ">=1", "expert segments matched per iteration, losses averaged (vmapped, split over "
      "the devices; 1 = the paper's algorithm; at 1 the key is left out of the fingerprint)")

  def validate(self, num_snapshots: int | None = None) -> None:
    """A config built by hand (a resolved config was checked by its key table, and
    :meth:`check_segments` by ``resolve``): every field's rule, then the segments."""
    keys_lib.check_fields(self)
    self.check_segments(num_snapshots)

  def check_segments(self, num_snapshots: int | None) -> None:
    """The one rule between keys: the last target ``θ[max_start_epoch − 1 +
    expert_epochs]`` is a snapshot of ``num_snapshots`` (None: not checked)."""
    if num_snapshots is not None and self.max_start_epoch - 1 + self.expert_epochs > num_snapshots - 1:
      raise ValueError(
          f"config keys 'distill.max_start_epoch' + 'distill.expert_epochs': expected "
          f"max_start_epoch + expert_epochs − 1 ≤ experts.epochs = {num_snapshots - 1} (the "
          f"last target is θ[max_start_epoch − 1 + expert_epochs]), found "
          f"{self.max_start_epoch} + {self.expert_epochs} − 1")


@flax.struct.dataclass
class DistillState:
  """Everything that changes during distillation (one pytree; checkpointed whole)."""
  syn: dict          # {modality: [n, d_m]} synthetic features
  log_lr: jax.Array  # log η
  sim: dict          # Ŝ params (empty for "fixed")
  opt_state: Any     # one optax state over learnables(state) (multi_transform)
  syn_scale: dict    # {modality: scalar} real features' RMS spread (adam's lr unit)
  key: jax.Array     # raw words of the base key (mmdd_jax.rng.data); iteration t uses fold_in(key, t)
  step: jax.Array    # int32 iteration counter


# DistillState fields renamed since checkpoints were first written (old → new): a
# distillation killed before the rename resumes from its checkpoint (mmdd_jax.loop.restore).
RENAMED_FIELDS = {"opt": "opt_state"}   # the same name as ImageBindDC's state


def learnables(state: DistillState) -> dict:
  """The learnable pytree ``{"syn", "log_lr", "sim"}`` that the optimizer updates."""
  return {"syn": state.syn, "log_lr": state.log_lr, "sim": state.sim}


def _labels(params: dict) -> dict:
  return {"syn": jax.tree_util.tree_map(lambda _: "syn", params["syn"]), "log_lr": "lr",
          "sim": jax.tree_util.tree_map(lambda _: "sim", params["sim"])}


def sgd_on_raw_lr(learning_rate: float, momentum: float,
                  lr_min: float) -> optax.GradientTransformation:
  """SGD (with momentum) on the raw step size ``η``, for a state that stores ``log η``.

  MTT and LoRS learn ``syn_lr`` itself with ``torch.optim.SGD(lr=lr_lr, momentum)``
  (LoRS then optionally clamps it from below). Applied to ``log η`` instead, the same
  ``lr_lr`` moves ``η`` by ``η²`` times their step (chain rule twice:
  ``∂L/∂log η = η ∂L/∂η`` and ``Δη ≈ η Δlog η``), so at ``η = 0.01`` the learned
  step size would be frozen. This transformation receives ``∂L/∂log η`` and the
  ``log η`` param, recovers ``g = ∂L/∂η = (∂L/∂log η)/η``, runs ``optax.sgd`` on
  ``η`` (PyTorch's momentum convention: ``b ← μ b + g``, ``η ← η − lr·b``), clamps
  ``η ≥ lr_min`` (the log needs a positive ``η``) and returns the matching
  ``log η`` update."""
  inner = optax.sgd(learning_rate, momentum=momentum)

  def init_fn(params):
    return inner.init(params)

  tmap = jax.tree_util.tree_map

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("sgd_on_raw_lr: expected the log η params, found None")
    eta = tmap(jnp.exp, params)
    u, state = inner.update(tmap(lambda g, e: g / e, updates, eta), state, eta)
    return tmap(lambda e, d, p: jnp.log(jnp.maximum(e + d, lr_min)) - p, eta, u, params), state

  return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(cfg: DistillConfig) -> optax.GradientTransformation:
  """One ``optax.multi_transform`` over :func:`learnables`: ``η`` frozen
  (``learn_lr=False``) and a fixed ``Ŝ`` get ``optax.set_to_zero``. With ``sgd``,
  ``η`` is updated as MTT/LoRS do, by SGD on raw ``η`` (:func:`sgd_on_raw_lr`)."""
  def opt(lr):
    return optax.adam(lr) if cfg.optimizer == "adam" else optax.sgd(lr, momentum=cfg.momentum)
  lr_opt = (opt(cfg.lr_lr) if cfg.optimizer == "adam"
            else sgd_on_raw_lr(cfg.lr_lr, cfg.momentum, cfg.lr_min))
  return optax.multi_transform(
      {"syn": opt(cfg.lr_data),
       "lr": lr_opt if cfg.learn_lr else optax.set_to_zero(),
       "sim": opt(cfg.lr_sim) if cfg.sim_kind != "fixed" else optax.set_to_zero()},
      _labels)


def feature_scale(xs: Mapping[str, np.ndarray]) -> dict:
  """``{m: sqrt(mean_j Var_j(x_m))}``: the RMS per-coordinate spread of real features."""
  return {m: float(np.sqrt(np.mean(np.var(np.asarray(v, np.float64), axis=0)))) for m, v in xs.items()}


def init_state(key: jax.Array, cfg: DistillConfig, init_syn: Mapping[str, np.ndarray],
               lr0: float, syn_scale: Mapping[str, float] | None = None) -> DistillState:
  """Synthetic features from ``init_syn`` (``n`` real instances), ``η₀ = lr0``,
  ``Ŝ₀ = I``. ``key``: the distillation's key (typed or raw).
  ``syn_scale`` (``adam``'s unit of feature movement; default: the spread of
  ``init_syn``) is best computed on the real train features (:func:`feature_scale`)."""
  syn = {m: jnp.asarray(v, jnp.float32) for m, v in init_syn.items()}
  for m, v in syn.items():
    if v.shape[0] != cfg.n:
      raise ValueError(f"init_syn['{m}']: expected {cfg.n} rows (n), found {v.shape[0]}")
  scale = dict(syn_scale) if syn_scale is not None else feature_scale(init_syn)
  scale = {m: jnp.asarray(scale[m] if cfg.optimizer == "adam" else 1.0, jnp.float32) for m in syn}
  key = rng.wrap(key)
  ksim, kstate = rng.stream(key, "similarity"), rng.stream(key, "steps")
  sim = sim_lib.init_similarity(ksim, cfg.n, cfg.sim_kind, cfg.sim_rank)
  log_lr = jnp.log(jnp.asarray(lr0, jnp.float32))
  params = {"syn": syn, "log_lr": log_lr, "sim": sim}
  return DistillState(syn=syn, log_lr=log_lr, sim=sim,
                      opt_state=make_optimizer(cfg).init(params),
                      syn_scale=scale, key=rng.data(kstate), step=jnp.zeros((), jnp.int32))


def make_inner_loss(cfg: DistillConfig) -> Callable:
  """``inner(theta, syn, sim, idx, bkey)``: the inner objective on the synthetic
  mini-batch ``idx`` with targets ``Ŝ[idx, idx]`` (and blending for RepBlend)."""
  f = obj_lib.get_objective(cfg.objective)

  def inner(theta, syn, sim, idx, bkey):
    xs = {m: jnp.asarray(v)[idx] for m, v in syn.items()}
    if cfg.blend:
      kl, kp = jax.random.split(bkey)
      lam = jax.random.beta(kl, 1.0, 1.0)
      perm = jax.random.permutation(kp, idx.shape[0])
      xs = {m: lam * x + (1.0 - lam) * x[perm] for m, x in xs.items()}
    y = sim_lib.batch_targets(sim, idx, cfg.sim_kind, cfg.sim_alpha)
    return f(heads_lib.apply_heads(theta, xs), y, cfg.obj)
  return inner


def batch_indices(key: jax.Array, n: int, steps: int, batch: int) -> jax.Array:
  """``[steps, batch]`` indices: consecutive chunks of fresh permutations of ``n``."""
  batch = min(batch, n)
  need = steps * batch
  reps = math.ceil(need / n)
  perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, reps))
  return perms.reshape(-1)[:need].reshape(steps, batch)


def _sqnorm(tree) -> jax.Array:
  return otu.tree_norm(tree, squared=True)


def branch_denominators(theta0, theta_star) -> dict:
  """``D_m = ‖θ₀_m − θ*_m‖²`` per modality branch (floored)."""
  diff = otu.tree_sub(theta0, theta_star)
  return {m: jnp.maximum(_sqnorm(diff[m]), 1e-30) for m in theta0}


def match_loss(theta_hat, theta0, theta_star) -> jax.Array:
  """Eq. 7: ``Σ_m ‖θ̂_m − θ*_m‖² / ‖θ₀_m − θ*_m‖²``."""
  den = branch_denominators(theta0, theta_star)
  diff = otu.tree_sub(theta_hat, theta_star)
  return sum(_sqnorm(diff[m]) / den[m] for m in theta0)


def student_rollout(inner: Callable, theta0, syn, log_lr, sim, idxs, bkeys, *,
                    remat: bool = True):
  """``syn_steps`` SGD steps (``lax.scan``; each step under ``jax.checkpoint``)."""
  eta = jnp.exp(log_lr)

  def body(theta, xs):
    idx, bkey = xs
    g = jax.grad(inner)(theta, syn, sim, idx, bkey)
    return jax.tree_util.tree_map(lambda p, q: p - eta * q, theta, g), None

  if remat:
    body = jax.checkpoint(body)
  theta, _ = jax.lax.scan(body, theta0, (idxs, bkeys))
  return theta


def full_loss_and_grads(inner, theta0, theta_star, syn, log_lr, sim, idxs, bkeys):
  """Matching loss and its exact gradient wrt ``(syn, log_lr, sim)``."""
  def f(syn, log_lr, sim):
    th = student_rollout(inner, theta0, syn, log_lr, sim, idxs, bkeys)
    return match_loss(th, theta0, theta_star)
  loss, grads = jax.value_and_grad(f, argnums=(0, 1, 2))(syn, log_lr, sim)
  return loss, grads


def tesla_loss_and_grads(inner, theta0, theta_star, syn, log_lr, sim, idxs, bkeys):
  """Matching loss and TESLA's constant-memory gradient (see the module docstring)."""
  eta = jnp.exp(log_lr)
  tmap = jax.tree_util.tree_map
  ginner = jax.grad(inner)

  def fwd(carry, xs):
    theta, gsum = carry
    idx, bkey = xs
    g = ginner(theta, syn, sim, idx, bkey)
    return (tmap(lambda p, q: p - eta * q, theta, g), otu.tree_add(gsum, g)), None

  zeros = otu.tree_zeros_like(theta0)
  (_, gsum), _ = jax.lax.scan(fwd, (theta0, zeros), (idxs, bkeys))
  den = branch_denominators(theta0, theta_star)
  theta_hat = tmap(lambda p, q: p - eta * q, theta0, gsum)
  resid = otu.tree_sub(theta_hat, theta_star)
  loss = sum(_sqnorm(resid[m]) / den[m] for m in theta0)
  c = {m: tmap(lambda r: -2.0 * eta * r / den[m], resid[m]) for m in theta0}
  dlog_lr = eta * sum(-2.0 * otu.tree_vdot(resid[m], gsum[m]) / den[m] for m in theta0)

  def bwd(carry, xs):
    theta, acc_syn, acc_sim = carry
    idx, bkey = xs
    g, vjp = jax.vjp(lambda s, q: ginner(theta, s, q, idx, bkey), syn, sim)
    d_syn, d_sim = vjp(c)
    return (tmap(lambda p, q: p - eta * q, theta, g), otu.tree_add(acc_syn, d_syn),
            otu.tree_add(acc_sim, d_sim)), None

  init = (theta0, otu.tree_zeros_like(syn), otu.tree_zeros_like(sim))
  (_, g_syn, g_sim), _ = jax.lax.scan(bwd, init, (idxs, bkeys))
  return loss, (g_syn, dlog_lr, g_sim)


def make_loss_and_grads(cfg: DistillConfig) -> Callable:
  inner = make_inner_loss(cfg)
  fn = full_loss_and_grads if cfg.grad_mode == "full" else tesla_loss_and_grads
  return lambda *a: fn(inner, *a)


def sample_segment(key: jax.Array, traj, cfg: DistillConfig):
  """``(θ₀, θ*)`` from a random expert and start epoch; ``traj`` leaves ``[E, T+1, …]``."""
  leaf = jax.tree_util.tree_leaves(traj)[0]
  num_experts = leaf.shape[0]
  ke, ks = jax.random.split(key)
  e = jax.random.randint(ke, (), 0, num_experts)
  s = jax.random.randint(ks, (), 0, cfg.max_start_epoch)
  theta0 = jax.tree_util.tree_map(lambda a: a[e, s], traj)
  theta_star = jax.tree_util.tree_map(lambda a: a[e, s + cfg.expert_epochs], traj)
  return theta0, theta_star, e, s


@functools.lru_cache(maxsize=16)
def make_distill_step(cfg: DistillConfig, *, jit: bool = True) -> Callable:
  """``step(state, traj) -> (state, metrics)``: one distillation iteration.

  ``traj`` (expert trajectories, leaves ``[E, T+1, ...]``) is an argument, not a
  closure constant; ``state`` is donated. Randomness: ``fold_in(state.key, state.step)``.
  Metrics: the matching loss, ``η``, the features' gradient norm, the RMS feature
  update in units of ``syn_scale`` (``update_syn``), the ``Ŝ`` update norm and
  ``Ŝ``'s diagonal / off-diagonal summary (:func:`hopa_jax.similarity.summary`).
  Cached per ``cfg`` (a resumed run in the same process reuses the compiled step).
  ``cfg`` is checked by its maker (``hopa_jax.plan.resolve``, :func:`distill`).
  """
  loss_and_grads = make_loss_and_grads(cfg)
  tx = make_optimizer(cfg)
  num = cfg.trajectories_per_iter

  def one_segment(kseg, kb, kx, traj, syn, log_lr, sim):
    theta0, theta_star, e, s = sample_segment(kseg, traj, cfg)
    idxs = batch_indices(kb, cfg.n, cfg.syn_steps, cfg.mini_batch)
    bkeys = jax.random.split(kx, cfg.syn_steps)
    loss, grads = loss_and_grads(theta0, theta_star, syn, log_lr, sim, idxs, bkeys)
    return loss, grads, e, s

  def segments(kseg, kb, kx, traj, syn, log_lr, sim):
    """``K > 1``: ``K`` segments from ``split(key, K)`` of each stream, vmapped (the
    segment axis split over the mesh), their losses and gradients averaged."""
    keys = [jax.random.split(k, num) for k in (kseg, kb, kx)]
    keys = [jax.lax.with_sharding_constraint(
        k, sharding.leading_sharding(sharding.mesh(), num, k.ndim)) for k in keys]
    loss, grads, e, s = jax.vmap(one_segment, in_axes=(0, 0, 0, None, None, None, None))(
        *keys, traj, syn, log_lr, sim)
    mean = lambda a: jnp.mean(a, axis=0)
    return mean(loss), jax.tree_util.tree_map(mean, grads), e, s

  def step(state: DistillState, traj):
    k = jax.random.fold_in(rng.wrap(state.key), state.step)
    kseg, kb, kx = (rng.stream(k, s) for s in ("segment", "batches", "blend"))
    fn = one_segment if num == 1 else segments   # 1: the paper's iteration, unchanged
    loss, (g_syn, g_lr, g_sim), e, s = fn(kseg, kb, kx, traj, state.syn, state.log_lr,
                                         state.sim)
    params = learnables(state)
    grads = {"syn": g_syn, "log_lr": g_lr, "sim": g_sim}
    u, opt_state = tx.update(grads, state.opt_state, params)
    u = dict(u, syn={m: state.syn_scale[m] * v for m, v in u["syn"].items()})
    new_params = optax.apply_updates(params, u)
    new = state.replace(syn=new_params["syn"], log_lr=new_params["log_lr"],
                        sim=new_params["sim"], opt_state=opt_state, step=state.step + 1)
    syn_move = jnp.sqrt(sum(_sqnorm(v / state.syn_scale[m]) for m, v in u["syn"].items())
                        / sum(v.size for v in state.syn.values()))
    metrics = {"loss": loss, "lr": jnp.exp(new.log_lr), "grad_syn": jnp.sqrt(_sqnorm(g_syn)),
               "update_syn": syn_move, "update_sim": jnp.sqrt(_sqnorm(u["sim"])),
               "expert": e, "start": s}
    metrics.update(sim_lib.summary(new.sim, cfg.n, cfg.sim_kind, cfg.sim_alpha))
    return new, metrics

  return jax.jit(step, donate_argnums=(0,)) if jit else step


def distill(state: DistillState, traj, cfg: DistillConfig, *, ckpt_dir: str | None = None,
            ckpt_every: int | None = None, log_every: int | None = 50,
            metrics: results.MetricsWriter | None = None, tags: Mapping | None = None,
            progress: bool = False, stop_at: int | None = None) -> DistillState:
  """Runs (or resumes from ``ckpt_dir``) ``cfg.iterations`` distillation iterations
  with the project's loop driver (:func:`mmdd_jax.loop.run_loop`).

  Args:
    state: the initial state (used when ``ckpt_dir`` holds no checkpoint).
    traj: expert trajectories, leaves ``[E, T+1, ...]``.
    cfg: :class:`DistillConfig`.
    ckpt_dir: Orbax directory (every ``ckpt_every`` iterations and at the end).
    log_every: host sync, NaN/inf check and one ``metrics`` record period.
    metrics: JSONL writer; records ``{**tags, "step", **step metrics}``.
    tags: the records' stage fields (default ``{"stage": "distill"}``).
    progress: a progress bar.
    stop_at: stop after this many iterations in total (a killed run, in tests).
  Returns:
    The final state.
  """
  num_snapshots = jax.tree_util.tree_leaves(traj)[0].shape[1]
  cfg.check_segments(num_snapshots)   # the trajectories given (resolve checked the config)
  step_fn = make_distill_step(cfg)
  if distributed.process_count() > 1 or cfg.trajectories_per_iter > 1:
    # one program over the global mesh: the state and the trajectories replicated (the
    # segments are split inside the step); one process and K = 1 keep today's placement
    state, traj = sharding.replicate(state), sharding.replicate(traj)

  def advance(state, start, num):
    del start
    for _ in range(num):
      state, m = step_fn(state, traj)
    return state, m

  return loop.run_loop(state, advance, cfg.iterations, ckpt_dir=ckpt_dir, ckpt_every=ckpt_every,
                       log_every=log_every, metrics=metrics,
                       tags=dict(tags) if tags is not None else {"stage": "distill"},
                       progress=progress, desc="distill", postfix=("loss", "lr"),
                       stop_at=stop_at, renamed=RENAMED_FIELDS)
