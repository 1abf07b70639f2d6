"""The distillation loop: all classes in one jitted, vmapped step.

State is a :class:`DistillState` (``flax.struct.dataclass``): the step counter, the
synthetic embeddings ``{m: [C, ipc, d]}`` and the optax state. One step:

1. ``key = fold_in(base_key, step)``; frequencies ``t`` for CFD are drawn once per
   step from it (shared by all classes and modalities);
2. per class (``vmap``): a real batch of ``real_batch`` rows of that class (without
   replacement while the class is large enough), a synthetic batch of ``syn_batch``
   of the ``ipc`` rows (all of them when ``ipc ≤ syn_batch``), the siamese
   augmentation, the class loss (:func:`bindc_jax.losses.class_loss`);
3. the sum of the class losses is differentiated w.r.t. the synthetic set (each
   class's rows receive only their class's gradient) and SGD with momentum updates it.

**Unit sphere.** The synthetic embeddings are normalised on use (the losses see
``ẽ / ‖ẽ‖``) *and*, with ``project=True`` (default), projected back onto the sphere
after every update, so the parameters stay unit-norm and the step size keeps its
meaning. The distilled set that is returned is always unit-norm.

:func:`make_run` builds a jitted ``run(state, data, base_key)`` that ``lax.scan``-s
a fixed number of steps (donating the state); :func:`distill` hands it to the project's
one loop driver (:func:`mmdd_jax.loop.run_loop`: progress bar, JSONL metrics, a hard
error on NaN/inf at log steps, Orbax checkpoints and resume, bit-identical since every
random draw is a function of ``(base_key, step)``).

**Pooled real side** (``cfd_real="pooled"``, not in the paper; default ``"sampled"``):
the CFD frequencies are a pool ``t`` drawn from ``fold_in(stream(base_key,
"cfd_pool"), step // cfd_pool_every)`` and kept for ``cfd_pool_every`` steps; when the
pool changes, the step evaluates every class's real characteristic function over *all*
its real rows on the pool (no gradient) and keeps it in ``state.cfd_pool``; the other
steps evaluate only the synthetic side (:func:`bindc_jax.distances.cfd_from_stats`). The
real side of the CFD is then the class's exact empirical CF, not a ``real_batch``-row
estimate; the cross and joint terms still use the step's sampled real batch. The siamese
augmentation cannot reach a precomputed real side, so the two are exclusive.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bindc_jax import augment as aug_lib
from bindc_jax import distances as dist_lib
from bindc_jax import losses as loss_lib
from mmdd_jax import distributed, loop, results, rng, sharding
from mmdd_jax import keys as keys_lib
from mmdd_jax.heads import l2_normalize


@flax.struct.dataclass
class DistillState:
  step: jax.Array                      # int32 scalar
  syn: dict                            # {m: [C, ipc, d]}
  opt_state: Any
  # cfd_real="pooled" only: {"index": pool number, "t": [k, d], "cf": {m: (Re, Im) [C, k]}}
  cfd_pool: Any = None


CFD_REAL = ("sampled", "pooled")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """Static options of the distillation loop; the key fields are config keys
  ``distill.<field>`` (:func:`mmdd_jax.keys.field`). ``cfd_real``: only methods whose
  loss uses CFD are affected (module docstring). ``normalize`` (the run's
  ``select.enabled``): divide each synthetic instance's gradient (all modalities
  together) by its norm before SGD, so that ``lr`` is a step length on the sphere
  whatever the loss's scale (CFD·300 and DM gradients differ by ~300×); this is what
  lets one learning-rate grid serve every method (:mod:`bindc_jax.select`). False = SPEC.
  """
  loss: loss_lib.LossConfig = loss_lib.LossConfig()
  augment: aug_lib.AugmentConfig = aug_lib.AugmentConfig()
  iterations: int = keys_lib.field(2000, ">=1", "distillation steps (SPEC: 2000)")
  real_batch: int = keys_lib.field(128, ">=1", "real rows per class and step")
  syn_batch: int = keys_lib.field(32, ">=1", "synthetic rows per class and step")
  lr: float = keys_lib.field(0.5, ">0", "SGD rate of the synthetic set when "
                             "select.enabled=False (SPEC 0.5)")
  momentum: float = keys_lib.field(0.5, ">=0", "SGD momentum")
  project: bool = keys_lib.field(True, None, "renormalise the synthetic set onto the sphere "
                                 "after every update")
  normalize: bool = False
  cfd_real: str = keys_lib.field("sampled", CFD_REAL, "CFD real side: sampled (SPEC, per "
                                 "step) | pooled (whole-class CF on a frequency pool; "
                                 "docs/bindc.md 'Pooled CFD'; not with augment)")
  cfd_pool_every: int = keys_lib.field(50, ">=1", "steps per frequency pool (cfd_real=pooled)")


def uses_pool(cfg: DistillConfig) -> bool:
  """Whether ``cfg`` runs the pooled real side (validating the pooled-mode options)."""
  if cfg.cfd_real not in CFD_REAL:
    raise ValueError(f"cfd_real: expected one of {list(CFD_REAL)}, found '{cfg.cfd_real}'")
  if cfg.cfd_real != "pooled" or not cfg.loss.needs_frequencies():
    return False
  if cfg.cfd_pool_every < 1:
    raise ValueError(f"cfd_pool_every: expected >= 1, found {cfg.cfd_pool_every}")
  if cfg.augment.enabled:
    raise ValueError("cfd_real=pooled precomputes the real side, so the siamese augmentation "
                     "(augment.dropout, augment.jitter, augment.mixup) cannot apply: set them "
                     "to 0 or use cfd_real=sampled")
  return True


def init_pool(syn: Mapping[str, jax.Array], cfg: DistillConfig) -> dict:
  """An empty frequency pool (``index = -1``: the first step fills it)."""
  v = next(iter(syn.values()))
  k = cfg.loss.dist.num_freqs
  zero = lambda: jnp.zeros((v.shape[0], k), jnp.float32)  # distinct buffers (donated)
  return {"index": jnp.asarray(-1, jnp.int32),
          "t": jnp.zeros((k, v.shape[-1]), jnp.float32),
          "cf": {m: (zero(), zero()) for m in syn}}


def pool_key(base_key: jax.Array, index) -> jax.Array:
  return jax.random.fold_in(rng.stream(base_key, "cfd_pool"), index)


def refresh_pool(pool: dict, step: jax.Array, data, base_key: jax.Array,
                 cfg: DistillConfig) -> dict:
  """The pool for ``step``: ``pool`` itself while ``step // cfd_pool_every`` is its
  index, else new frequencies and every class's real characteristic function on them
  (``lax.cond``: the real side is evaluated only when the pool changes)."""
  index = (step // cfg.cfd_pool_every).astype(jnp.int32)
  dcfg = cfg.loss.dist

  def compute(_):
    xs_c, mask = data
    t = dist_lib.sample_frequencies(pool_key(base_key, index), dcfg.num_freqs,
                                    pool["t"].shape[-1], dcfg.freq_scale)
    cf = {m: dist_lib.class_characteristic_functions(xs_c[m], mask, t) for m in pool["cf"]}
    return {"index": index, "t": t, "cf": cf}

  return jax.lax.cond(index != pool["index"], compute, lambda _: pool, None)


# Methods: a LossConfig override, or None for the selection-only baselines.
METHODS: dict[str, dict | None] = {
    "bindc": dict(kind="bindc"),
    "cfd_only": dict(kind="bindc", use_cross=False, use_joint=False),
    "mmd": dict(kind="bindc", distance="mmd", use_cross=False, use_joint=False),
    "bindc_mmd": dict(kind="bindc", distance="mmd"),
    "bindc_no_uni": dict(kind="bindc", use_uni=False),
    "bindc_no_cross": dict(kind="bindc", use_cross=False),
    "bindc_no_joint": dict(kind="bindc", use_joint=False),
    "dm": dict(kind="dm"),
    "avdd": dict(kind="avdd"),
    "random": None,
    "herding": None,
}


def method_loss_config(method: str, base: loss_lib.LossConfig = loss_lib.LossConfig()
                       ) -> loss_lib.LossConfig | None:
  """The :class:`LossConfig` of ``method`` (``None`` for ``random`` / ``herding``)."""
  if method not in METHODS:
    raise ValueError(f"method: expected one of {sorted(METHODS)}, found '{method}'")
  over = METHODS[method]
  return None if over is None else dataclasses.replace(base, **over)


def normalize_rows(eps: float = 1e-12) -> optax.GradientTransformation:
  """Scales the gradient of each synthetic instance ``[c, i]`` (jointly over the
  modalities' ``{m: [C, ipc, d]}`` leaves) to unit norm; zero rows stay zero."""

  def update(updates, state, params=None):
    del params
    sq = sum(jnp.sum(jnp.square(g), -1, keepdims=True) for g in jax.tree.leaves(updates))
    inv = jax.lax.rsqrt(jnp.maximum(sq, eps))
    return jax.tree.map(lambda g: g * inv, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(cfg: DistillConfig) -> optax.GradientTransformation:
  """SGD with momentum (after :func:`normalize_rows` when ``cfg.normalize``). The learning
  rate is a value of the optimizer state (``inject_hyperparams``), not a constant of the
  compiled step, so the lr candidates of :mod:`bindc_jax.select` share one compilation."""
  sgd = optax.inject_hyperparams(optax.sgd, static_args=("momentum",))(
      learning_rate=cfg.lr, momentum=cfg.momentum)
  return optax.chain(normalize_rows(), sgd) if cfg.normalize else sgd


def init_state(syn: Mapping[str, jax.Array], cfg: DistillConfig) -> DistillState:
  syn = {m: l2_normalize(jnp.asarray(v, jnp.float32)) for m, v in syn.items()}
  return DistillState(step=jnp.zeros((), jnp.int32), syn=syn,
                      opt_state=make_optimizer(cfg).init(syn),
                      cfd_pool=init_pool(syn, cfg) if uses_pool(cfg) else None)


def sample_rows(key: jax.Array, mask: jax.Array, size: int) -> jax.Array:
  """``size`` random indices of the valid rows of ``mask`` (without replacement while
  possible, then cycling through the same permutation)."""
  count = jnp.maximum(jnp.sum(mask), 1)
  perm = jnp.argsort(jax.random.uniform(key, mask.shape) + 2.0 * (~mask))
  return perm[jnp.arange(size) % count]


def make_loss(cfg: DistillConfig, real_batch: int) -> Callable:
  """``loss(syn, data, key, pool=None) -> (total, aux)`` summed over classes (vmapped);
  with a ``pool`` (pooled mode) its frequencies and real CFs replace the step's draw."""
  lcfg = cfg.loss

  def per_class(real_c, mask_c, syn_c, t, key, cf_c):
    kr, ks, ka = jax.random.split(key, 3)
    ridx = sample_rows(kr, mask_c, real_batch)
    real_b = {m: v[ridx] for m, v in real_c.items()}
    ipc = next(iter(syn_c.values())).shape[0]
    if ipc > cfg.syn_batch:
      sidx = sample_rows(ks, jnp.ones((ipc,), bool), cfg.syn_batch)
      syn_c = {m: v[sidx] for m, v in syn_c.items()}
    syn_b = {m: l2_normalize(v) for m, v in syn_c.items()}
    real_b, syn_b = aug_lib.siamese(ka, real_b, syn_b, cfg.augment)
    return loss_lib.class_loss(real_b, syn_b, t, lcfg, cf_c)

  def loss(syn, data, key, pool=None):
    xs_c, mask = data
    num_classes = mask.shape[0]
    k_t, k_c = jax.random.split(key)
    t = cf = None
    if pool is not None:
      t, cf = pool["t"], pool["cf"]
    elif lcfg.needs_frequencies():
      dim = next(iter(syn.values())).shape[-1]
      t = dist_lib.sample_frequencies(k_t, lcfg.dist.num_freqs, dim, lcfg.dist.freq_scale)
    keys = jax.random.split(k_c, num_classes)
    losses, comps = jax.vmap(per_class, in_axes=(0, 0, 0, None, 0, 0))(
        xs_c, mask, syn, t, keys, cf)
    aux = {"loss": jnp.mean(losses), **{k: jnp.mean(v) for k, v in comps.items()}}
    return jnp.sum(losses), aux

  return loss


def make_step(cfg: DistillConfig, real_batch: int) -> Callable:
  """``step(state, data, base_key) -> (state, metrics)`` (not jitted; see :func:`make_run`)."""
  tx = make_optimizer(cfg)
  loss_fn = make_loss(cfg, real_batch)
  pooled = uses_pool(cfg)

  def step(state: DistillState, data, base_key):
    key = jax.random.fold_in(base_key, state.step)
    pool = refresh_pool(state.cfd_pool, state.step, data, base_key, cfg) if pooled else None
    grads, aux = jax.grad(loss_fn, has_aux=True)(state.syn, data, key, pool)
    updates, opt_state = tx.update(grads, state.opt_state, state.syn)
    syn = optax.apply_updates(state.syn, updates)
    if cfg.project:
      syn = {m: l2_normalize(v) for m, v in syn.items()}
    aux["grad_norm"] = optax.tree_utils.tree_norm(grads)
    return DistillState(step=state.step + 1, syn=syn, opt_state=opt_state, cfd_pool=pool), aux

  return step


def make_run(cfg: DistillConfig, real_batch: int, length: int) -> Callable:
  """Cached, jitted ``run(state, data, base_key) -> (state, metrics of the last step)``:
  ``lax.scan`` over ``length`` steps with the state donated. The learning rate is read
  from the state (:func:`make_optimizer`), so configs differing only in ``lr`` share it."""
  return _make_run(dataclasses.replace(cfg, lr=0.0), real_batch, length)


@functools.lru_cache(maxsize=32)
def _make_run(cfg: DistillConfig, real_batch: int, length: int) -> Callable:
  step = make_step(cfg, real_batch)

  def run(state, data, base_key):
    def body(s, _):
      return step(s, data, base_key)
    state, metrics = jax.lax.scan(body, state, None, length=length)
    return state, jax.tree.map(lambda a: a[-1], metrics)

  return jax.jit(run, donate_argnums=0)


def effective_real_batch(cfg: DistillConfig, mask: np.ndarray) -> int:
  return int(min(cfg.real_batch, int(np.asarray(mask).sum(1).max())))


def distill(state: DistillState, xs_c: Mapping[str, Any], mask: Any,
            cfg: DistillConfig, base_key: jax.Array, *, log_every: int | None = None,
            ckpt_dir: str | None = None, ckpt_every: int | None = None,
            metrics: results.MetricsWriter | None = None,
            tags: Mapping[str, Any] | None = None, progress: bool = False,
            desc: str = "distill", stop_at: int | None = None) -> DistillState:
  """Runs ``cfg.iterations`` steps from ``state`` (or resumes from ``ckpt_dir``) with
  :func:`mmdd_jax.loop.run_loop`; the same shape as HoPA's
  :func:`hopa_jax.distill.distill` (a state in, the final state out).

  Args:
    state: the initial state, :func:`init_state` of the initial synthetic set
      ``{m: [C, ipc, d]}`` (used when ``ckpt_dir`` holds no checkpoint).
    xs_c, mask: real data per class (:func:`bindc_jax.init.group_by_class`).
    cfg: :class:`DistillConfig`.
    base_key: the run's key; step ``s`` uses ``fold_in(base_key, s)``.
    log_every: steps between host syncs (metrics record, NaN check, progress); None:
      only the last step.
    ckpt_dir: Orbax checkpoint directory; the latest checkpoint there is restored.
    ckpt_every: steps between checkpoints (None: only at the end).
    metrics: the JSONL writer; one record ``{**tags, "step", "loss", …}`` per log step.
    tags: fields identifying this loop's records (default ``{"stage": "distill"}``).
    progress: show a progress bar labelled ``desc``.
    stop_at: stop after this step (tests of killed runs); default: the end.

  Returns:
    The final state (its unit-norm synthetic set: :func:`synthetic`).
  """
  data = ({m: jnp.asarray(v, jnp.float32) for m, v in xs_c.items()}, jnp.asarray(mask, bool))
  rb = effective_real_batch(cfg, np.asarray(mask))
  # Data-parallel over classes with jax.sharding: the class axis of the real data and
  # of the state is split across devices when it divides evenly (no-op on one device).
  data = sharding.shard_leading(data)
  state = sharding.shard_leading(state)

  def advance(state, start, n):
    del start   # the state carries its step; every draw is a function of it
    return make_run(cfg, rb, n)(state, data, base_key)

  state = loop.run_loop(state, advance, cfg.iterations, ckpt_dir=ckpt_dir,
                        ckpt_every=ckpt_every, log_every=log_every, metrics=metrics,
                        tags=tags or {"stage": "distill"}, progress=progress, desc=desc,
                        stop_at=stop_at)
  return state


def synthetic(state: DistillState) -> dict:
  """The state's synthetic set ``{m: [C, ipc, d]}``, unit-norm, on the host (several
  processes: every process gathers the classes of the others)."""
  return distributed.to_host({m: l2_normalize(v) for m, v in state.syn.items()})
