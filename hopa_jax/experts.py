"""Expert trajectories (SPEC §3.5): ``num_experts`` SGD runs on the real train split.

All experts train in one jitted program: ``vmap`` over experts of a ``lax.scan`` over
the mini-batch steps of an epoch. The Python loop runs over *epochs* only, to save a
snapshot after each (epoch 0 = the initial heads included) with Orbax under
``<workdir>/experts/``. A killed run restarts from the last saved epoch and keeps
what was saved; since every expert's batches come from ``fold_in(key_e, epoch)`` the
resumed trajectories are identical to uninterrupted ones.

Trajectories are returned as the heads' params pytree with leaves
``[E, epochs + 1, ...]`` (expert, snapshot).

With several processes (:mod:`mmdd_jax.distributed`) the expert axis is split over the
global mesh (every process trains its own experts), each snapshot is one Orbax
multi-process checkpoint, and the record files are the writer's.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import optax

from hopa_jax import objectives as obj_lib
from mmdd_jax import data, heads as heads_lib
from mmdd_jax import distributed, loop, results, rng, sharding
from mmdd_jax import stage as stage_lib
from mmdd_jax import workdir as workdir_lib
from mmdd_jax import keys as keys_lib
from mmdd_jax import train as train_lib


@dataclasses.dataclass(frozen=True)
class ExpertConfig:
  """The experts' training; the key fields are config keys ``experts.<field>``
  (:func:`mmdd_jax.keys.field`). ``lr`` None: selected on validation from ``lr_grid``
  (:func:`select_teacher_lr`) before the experts train (the run configs' default,
  ``hopa_jax.plan.EXPERTS``). ``objective`` (an inner objective of
  :data:`hopa_jax.objectives.OBJECTIVES`) and ``obj`` are the method's."""
  num_experts: int = keys_lib.field(20, ">=1", "expert trajectories E")
  epochs: int = keys_lib.field(10, ">=1", "epochs per expert (snapshots 0..epochs)")
  lr: float | None = keys_lib.field(
      0.01, ">0", "lr_teacher; None: one probe expert per lr of experts.lr_grid, the best "
      "validation avg R@1 after experts.epochs wins (SPEC/paper: 0.01)", typ=float)
  lr_grid: tuple = keys_lib.field((0.01, 0.03, 0.1, 0.3, 1.0), ">0",
                                  "the lr_teacher selection grid")
  batch_size: int = keys_lib.field(128, ">=1", "real mini-batch of the experts")
  init_noise: float = keys_lib.field(1e-3, ">=0", "per-expert N(0, σ²) on the pretrained "
                                     "heads [R]")
  objective: str = "hopa"
  obj: obj_lib.ObjectiveConfig = obj_lib.ObjectiveConfig()


def make_real_loss(objective: str, ocfg: obj_lib.ObjectiveConfig) -> Callable:
  """``loss(params, xs) `` on real data (targets ``I``)."""
  f = obj_lib.get_objective(objective)

  def loss(params, xs):
    zs = heads_lib.apply_heads(params, xs)
    b = next(iter(xs.values())).shape[0]
    return f(zs, jnp.eye(b, dtype=jnp.float32), ocfg)
  return loss


@functools.lru_cache(maxsize=8)
def make_epoch_fn(cfg: ExpertConfig, n: int) -> Callable:
  """Jitted ``epoch(params_E, keys_E, xs, epoch, lrs_E) -> (params_E, mean_loss_E)``:
  one epoch (:func:`mmdd_jax.train.make_epoch`, plain SGD) of every expert, vmapped;
  expert ``e`` at step size ``lrs_E[e]``. The step size is an argument so that the
  teacher-lr probe (:func:`select_teacher_lr`) runs a whole lr grid in one program."""
  loss = make_real_loss(cfg.objective, cfg.obj)
  tx = optax.sgd(1.0)
  epoch = train_lib.make_epoch(lambda p, batch, idx: loss(p, batch), tx,
                               batch_size=cfg.batch_size, n=n)

  def one(params, key, xs, e, lr):
    params, _, mean_loss = epoch(params, tx.init(params), xs, key, e, lr)
    return params, mean_loss

  return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, 0)), donate_argnums=(0,))


def select_teacher_lr(key: jax.Array, params0, train_xs: Mapping[str, np.ndarray],
                      val_xs: Mapping[str, np.ndarray], cfg: ExpertConfig, *,
                      progress: bool = False) -> dict:
  """``lr_teacher=auto``: the project's one rule for every inner objective.

  One probe expert per lr of the log grid ``cfg.lr_grid`` (all in one vmapped program, the same
  initial noise and batches for every lr) trains ``cfg.epochs`` epochs on the train
  rows; each is scored on the *validation* rows (avg R@1 over ordered modality pairs)
  after every epoch. The selected lr is the one whose probe ends (after
  ``cfg.epochs`` epochs, where the experts end) with the best validation avg R@1;
  a probe with a non-finite loss is excluded; ties go to the smaller lr
  (:func:`mmdd_jax.data.choose`, the project's one rule :func:`mmdd_jax.data.first_best`).
  The epochs are not selected: every probe is scored where the experts will end.

  Returns ``{"lr", "grid", "val_r1": {lr: [epoch 0..T]}, "rule"}``.
  """
  from hopa_jax import evaluate as ev  # (evaluate imports nothing from experts)
  grid = tuple(sorted(float(g) for g in cfg.lr_grid))
  xs = {m: jnp.asarray(v, jnp.float32) for m, v in train_xs.items()}
  n = int(next(iter(xs.values())).shape[0])
  pcfg = dataclasses.replace(cfg, num_experts=1, lr=None)
  p1, k1 = init_experts(key, params0, pcfg)
  g = len(grid)
  params = jax.tree_util.tree_map(lambda a: jnp.repeat(a, g, axis=0), p1)
  keys = jnp.repeat(k1, g, axis=0)
  lrs = jnp.asarray(grid, jnp.float32)
  score = ev.make_val_scorer(val_xs)
  epoch_fn = make_epoch_fn(pcfg, n)
  curves = [np.asarray(score(params))]
  finite = np.ones(g, bool)
  it = range(cfg.epochs)
  if progress:
    from tqdm.auto import tqdm
    it = tqdm(it, desc=f"lr_teacher probe ({cfg.objective})", unit="epoch", leave=False)
  for t in it:
    params, losses = epoch_fn(params, keys, xs, jnp.asarray(t, jnp.int32), lrs)
    finite &= np.isfinite(np.asarray(losses))
    curves.append(np.asarray(score(params)))
  curves = np.stack(curves, 1)                      # [G, T+1]
  final = np.where(finite & np.all(np.isfinite(curves), 1), curves[:, -1], -np.inf)
  if not np.any(np.isfinite(final)):
    raise FloatingPointError(f"experts.lr=None (selection): every probe lr in {grid} diverged "
                             f"(objective {cfg.objective}); set experts.lr explicitly")
  return {"lr": data.choose(grid, list(final)), "grid": list(grid), "rule": "best validation avg R@1 after "
          f"{cfg.epochs} epochs; non-finite excluded; ties to the smaller lr",
          "val_r1": {str(lr): [round(float(v), 3) for v in c] for lr, c in zip(grid, curves)}}


def init_experts(key: jax.Array, params0, cfg: ExpertConfig):
  """Pretrained heads plus per-expert noise, stacked ``[E, ...]``; per-expert keys."""
  keys = jax.random.split(key, cfg.num_experts)
  noise_keys = jax.vmap(lambda k: rng.stream(k, "init_noise"))(keys)
  p = jax.vmap(lambda k: heads_lib.perturb(k, params0, cfg.init_noise))(noise_keys)
  return p, keys


def train_experts(key: jax.Array, params0, train_xs: Mapping[str, np.ndarray],
                  cfg: ExpertConfig, directory: str, *, progress: bool = False,
                  metrics: results.MetricsWriter | None = None, tags: Mapping | None = None,
                  stop_at: int | None = None, digest: str | None = None):
  """Trains (or resumes) the experts and returns the stacked trajectories.

  The loop is :func:`mmdd_jax.loop.run_loop` with one step per epoch: every epoch is
  checkpointed (all kept: they are the trajectories), and the epoch-0 heads too.

  Args:
    key: experts' key (expert ``e`` uses ``split(key, E)[e]``).
    params0: pretrained heads (one modality subtree each).
    train_xs: ``{modality: [N, d_m]}`` real train features.
    cfg: :class:`ExpertConfig` with a resolved ``lr``.
    directory: Orbax directory; step ``t`` holds every expert's heads after epoch ``t``.
    progress: a progress bar over epochs.
    metrics: JSONL records ``{**tags, "step": epoch, "loss": [E]}``.
    tags: the records' stage fields (default ``{"stage": "experts"}``; several expert
      sets in one workdir need distinct tags, since a resume drops its own records).
    stop_at: stop after this epoch (a killed run, in tests); returns None then.
    digest: :func:`data_digest` of ``(params0, train_xs)`` when the caller has it.

  The directory is locked while the experts are trained or read
  (:func:`mmdd_jax.workdir.shared_lock`: a second run sharing it waits) and bound to
  :func:`identity` (config, key, data): experts of another seed, store content or
  setting are refused with one line, never silently reused.
  Returns:
    Params pytree with leaves ``[E, epochs + 1, ...]``.
  """
  if cfg.lr is None:
    raise ValueError("experts.lr: expected a resolved step size (select_teacher_lr), found None")
  xs = {m: jnp.asarray(v, jnp.float32) for m, v in train_xs.items()}
  n = int(next(iter(xs.values())).shape[0])
  p_init, keys = init_experts(key, params0, cfg)
  like = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), p_init)
  with workdir_lib.shared_lock(directory, "experts being trained"):
    _bind_config(directory, identity(key, params0, train_xs, cfg, digest))
    return _train_bound(cfg, directory, xs, n, p_init, keys, like, progress=progress,
                        metrics=metrics, tags=tags, stop_at=stop_at)


def _train_bound(cfg, directory, xs, n, p_init, keys, like, *, progress, metrics, tags, stop_at):
  # Data-parallel over experts: the expert axis is split across devices when it
  # divides evenly (jax.sharding; a no-op on one device), the data replicated.
  xs = sharding.replicate(xs)
  epoch_fn = make_epoch_fn(cfg, n)
  lrs = jnp.full((cfg.num_experts,), cfg.lr, jnp.float32)

  def advance(state, start, num):
    params = state["params"]
    for t in range(start, start + num):
      params, losses = epoch_fn(params, keys, xs, jnp.asarray(t, jnp.int32), lrs)
    return {"params": params}, {"loss": losses}

  loop.run_loop({"params": sharding.shard_leading(p_init)}, advance, cfg.epochs,
                ckpt_dir=directory, ckpt_every=1, keep=None, save_initial=True, log_every=1,
                metrics=metrics,
                tags=dict(tags) if tags is not None else {"stage": "experts"}, progress=progress, desc="experts",
                stop_at=stop_at)
  if stop_at is not None and stop_at < cfg.epochs:
    return None
  return load_trajectories(directory, like, cfg.epochs)


RNG_VERSION = "named-streams-1"
RECORD = "expert_config.json"


def data_digest(params0, train_xs: Mapping[str, np.ndarray]) -> str:
  """sha256 of exactly what the experts learn from: the initial heads and the train
  rows (every array's dtype, shape and bytes, in key order). Independent of how the
  caller got them (store, validation split, subset), so experts are never reused for
  other data."""
  import hashlib
  h = hashlib.sha256()
  for name, tree in (("heads", params0), ("train", dict(train_xs))):
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    for path, leaf in leaves:
      a = np.ascontiguousarray(np.asarray(leaf))
      h.update(f"{name}{jax.tree_util.keystr(path)}:{a.dtype.str}:{a.shape};".encode())
      h.update(a.tobytes())
  return "sha256:" + h.hexdigest()


def identity(key: jax.Array, params0, train_xs: Mapping[str, np.ndarray],
             cfg: ExpertConfig, digest: str | None = None) -> dict:
  """What a set of experts is bound to: its :class:`ExpertConfig` (but the lr grid),
  the shapes of the heads, the key convention and the key itself (so another seed is
  other experts), and :func:`data_digest` of the data."""
  shapes = {m: [list(np.shape(l)) for l in jax.tree_util.tree_leaves(p)] for m, p in params0.items()}
  conf = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "lr_grid"}
  kd = np.asarray(jax.random.key_data(key)).reshape(-1).tolist()
  return json.loads(json.dumps(results.jsonable(
      {"config": conf, "shapes": shapes, "rng": RNG_VERSION, "key": kd,
       "numerics": workdir_lib.NUMERICS, "data": digest or data_digest(params0, train_xs)})))


def _read_record(directory: str) -> dict | None:
  path = os.path.join(directory, RECORD)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (ValueError, OSError) as e:
    raise ValueError(f"{path}: field '{RECORD}': expected the JSON record of the experts' "
                     f"config, found an unreadable file ({e}); remove the experts directory") from None


def check_experts(directory: str, ident: Mapping, *, ignore_lr: bool = False) -> bool:
  """Raises ``ValueError`` (one line: what differs) when ``directory`` holds experts
  bound to another identity; returns True when it holds experts of this one, False
  when it holds none yet. ``ignore_lr``: compare everything but the step size (the
  check made *before* the lr is selected, so a run that will be refused writes
  nothing into the shared directory, not even the lr probe's cache)."""
  old = _read_record(directory)
  if old is None:
    if os.path.isdir(directory) and loop.checkpoint_manager(directory, None).latest_step() is not None:
      raise ValueError(f"{directory}: field '{RECORD}': expected the record of the config "
                       "that made these experts, found checkpoints without one (an older "
                       "version's experts); use another experts_dir or remove it")
    return False
  diff = []
  oc, nc = old.get("config") or {}, ident["config"]
  for k in sorted(set(oc) | set(nc)):
    if ignore_lr and k == "lr":
      continue
    if oc.get(k) != nc.get(k):
      diff.append(f"{k}: {oc.get(k, '<absent>')!r} → {nc.get(k, '<absent>')!r}")
  if old.get("rng") != ident["rng"]:
    diff.append("rng (experts drawn with an older key convention)")
  if old.get("numerics") != ident["numerics"]:
    diff.append(f"numerics {old.get('numerics', '<absent>')!r} → {ident['numerics']!r} "
                "(experts of code whose results differ)")
  if old.get("shapes") != ident["shapes"]:
    diff.append("head shapes")
  if old.get("key") != ident["key"]:
    diff.append("key (another seed)")
  if old.get("data") != ident["data"]:
    diff.append("data (other train rows or heads: another store's content, val_fraction "
                f"or seed; {str(old.get('data'))[:19]}… → {str(ident['data'])[:19]}…)")
  if diff:
    raise ValueError(f"{directory}: field '{RECORD}': expected experts of this run, found "
                     f"experts of another (differing: {'; '.join(diff)}); use another "
                     "experts_dir or remove it")
  return True


def _bind_config(directory: str, ident: Mapping) -> None:
  """Experts are shared between runs (``experts_dir``): the directory is bound to the
  :func:`identity` that made it, and another stops with one line (the record is
  written like every bound cache, :func:`mmdd_jax.stage.write_json`)."""
  if not check_experts(directory, ident):
    stage_lib.write_json(os.path.join(directory, RECORD), dict(ident))


def load_trajectories(directory: str, like, epochs: int):
  """Stacks the saved snapshots ``0..epochs`` into leaves ``[E, epochs + 1, ...]``."""
  mngr = loop.checkpoint_manager(directory, None)
  if distributed.process_count() > 1:   # every process reads the whole snapshot
    rep = sharding.replicated_sharding()
    like = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep),
                                  like)
  snaps = [mngr.restore(t, args=ocp.args.StandardRestore({"params": like}))["params"]
           for t in range(epochs + 1)]
  # Snapshots may come back with different placements (saved before/after sharding,
  # or on another device count): stack on the host.
  return jax.tree_util.tree_map(lambda *a: jnp.asarray(np.stack([np.asarray(x) for x in a], 1)),
                                *snaps)
