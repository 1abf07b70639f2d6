"""Expert trajectories (SPEC §3.5): ``num_experts`` SGD runs on the real train split.

All experts train in one jitted program: ``vmap`` over experts of a ``lax.scan`` over
the mini-batch steps of an epoch. The Python loop runs over *epochs* only, to save a
snapshot after each (epoch 0 = the initial heads included) with Orbax under
``<workdir>/experts/``. A killed run restarts from the last saved epoch and keeps
what was saved; since every expert's batches come from ``fold_in(key_e, epoch)`` the
resumed trajectories are identical to uninterrupted ones.

Trajectories are returned as the heads' params pytree with leaves
``[E, epochs + 1, ...]`` (expert, snapshot).
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

from embed.store import atomic_write_json
from hopa_jax import objectives as obj_lib
from mmdd_jax import data, heads as heads_lib
from mmdd_jax import sharding


@dataclasses.dataclass(frozen=True)
class ExpertConfig:
  """Attributes:
    num_experts: number of expert runs ``E``.
    epochs: SGD epochs per expert (snapshots ``0..epochs``).
    lr: lr_teacher (plain SGD, no momentum).
    batch_size: real mini-batch size.
    init_noise: std of the per-expert Gaussian noise added to the pretrained heads. [R]
    objective: inner objective name (:data:`hopa_jax.objectives.OBJECTIVES`).
    obj: :class:`hopa_jax.objectives.ObjectiveConfig`.
  """
  num_experts: int = 20
  epochs: int = 10
  lr: float = 0.01
  batch_size: int = 128
  init_noise: float = 1e-3
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
  one epoch of every expert (vmapped; expert ``e`` at step size ``lrs_E[e]``),
  scanning over mini-batches. The step size is an argument so that the teacher-lr
  probe (:func:`select_teacher_lr`) runs a whole lr grid in one program."""
  loss = make_real_loss(cfg.objective, cfg.obj)
  bs = min(cfg.batch_size, n)
  steps = max(n // bs, 1)

  def one(params, key, xs, epoch, lr):
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)[: steps * bs]

    def step(p, idx):
      batch = {m: v[idx] for m, v in xs.items()}
      l, g = jax.value_and_grad(loss)(p, batch)
      return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), l

    params, losses = jax.lax.scan(step, params, perm.reshape(steps, bs))
    return params, losses.mean()

  return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, 0)), donate_argnums=(0,))


TEACHER_LR_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


def select_teacher_lr(key: jax.Array, params0, train_xs: Mapping[str, np.ndarray],
                      val_xs: Mapping[str, np.ndarray], cfg: ExpertConfig,
                      grid=TEACHER_LR_GRID, *, progress: bool = False) -> dict:
  """``lr_teacher=auto``: the project's one rule for every inner objective.

  One probe expert per lr of the log ``grid`` (all in one vmapped program, the same
  initial noise and batches for every lr) trains ``cfg.epochs`` epochs on the train
  rows; each is scored on the *validation* rows (avg R@1 over ordered modality pairs)
  after every epoch. The selected lr is the one whose probe ends (after
  ``cfg.epochs`` epochs, where the experts end) with the best validation avg R@1;
  a probe with a non-finite loss is excluded; ties go to the smaller lr.

  Returns ``{"lr", "grid", "val_r1": {lr: [epoch 0..T]}, "rule"}``.
  """
  from hopa_jax import evaluate as ev  # (evaluate imports nothing from experts)
  grid = tuple(sorted(float(g) for g in grid))
  xs = {m: jnp.asarray(v, jnp.float32) for m, v in train_xs.items()}
  n = int(next(iter(xs.values())).shape[0])
  pcfg = dataclasses.replace(cfg, num_experts=1)
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
    raise FloatingPointError(f"lr_teacher=auto: every probe lr in {grid} diverged "
                             f"(objective {cfg.objective}); set lr_teacher explicitly")
  return {"lr": data.choose(grid, list(final)), "grid": list(grid), "rule": "best validation avg R@1 after "
          f"{cfg.epochs} epochs; non-finite excluded; ties to the smaller lr",
          "val_r1": {str(lr): [round(float(v), 3) for v in c] for lr, c in zip(grid, curves)}}


def init_experts(key: jax.Array, params0, cfg: ExpertConfig):
  """Pretrained heads plus per-expert noise, stacked ``[E, ...]``; per-expert keys."""
  keys = jax.random.split(key, cfg.num_experts)
  noise_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
  p = jax.vmap(lambda k: heads_lib.perturb(k, params0, cfg.init_noise))(noise_keys)
  return p, keys


def _manager(directory: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
                                           enable_async_checkpointing=False))


def train_experts(key: jax.Array, params0, train_xs: Mapping[str, np.ndarray],
                  cfg: ExpertConfig, directory: str, *, progress: bool = False,
                  log_fn: Callable | None = None, stop_after: int | None = None):
  """Trains (or resumes) the experts and returns the stacked trajectories.

  Args:
    key: experts' key (expert ``e`` uses ``split(key, E)[e]``).
    params0: pretrained heads (one modality subtree each).
    train_xs: ``{modality: [N, d_m]}`` real train features.
    cfg: :class:`ExpertConfig`.
    directory: Orbax directory; step ``t`` holds every expert's heads after epoch ``t``.
    progress: tqdm bar over epochs.
    log_fn: called as ``log_fn(epoch=t, loss=[E])`` after each trained epoch.
    stop_after: stop after this epoch (simulates a killed run in tests).
  Returns:
    Params pytree with leaves ``[E, epochs + 1, ...]``.
  """
  xs = {m: jnp.asarray(v, jnp.float32) for m, v in train_xs.items()}
  n = int(next(iter(xs.values())).shape[0])
  mngr = _manager(directory)
  p_init, keys = init_experts(key, params0, cfg)
  like = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), p_init)
  _bind_config(directory, cfg, params0)
  latest = mngr.latest_step()
  if latest is None:
    mngr.save(0, args=ocp.args.StandardSave({"params": p_init}))
    start, params = 0, p_init
  else:
    if latest > cfg.epochs:
      raise ValueError(f"{directory}: field 'latest epoch': expected ≤ epochs={cfg.epochs}, "
                       f"found {latest} (experts from another config?)")
    params = mngr.restore(latest, args=ocp.args.StandardRestore({"params": like}))["params"]
    start = latest
  # Data-parallel over experts: the expert axis is split across devices when it
  # divides evenly (jax.sharding; a no-op on one device), the data replicated.
  params = sharding.shard_leading(params)
  xs = sharding.replicate(xs)
  epoch_fn = make_epoch_fn(cfg, n)
  it = range(start, cfg.epochs)
  if progress:
    from tqdm.auto import tqdm
    it = tqdm(it, desc="experts", unit="epoch", initial=start, total=cfg.epochs)
  for t in it:
    if stop_after is not None and t >= stop_after:
      break
    params, losses = epoch_fn(params, keys, xs, jnp.asarray(t, jnp.int32),
                              jnp.full((cfg.num_experts,), cfg.lr, jnp.float32))
    losses = np.asarray(losses)
    if not np.all(np.isfinite(losses)):
      raise FloatingPointError(f"experts: non-finite loss at epoch {t + 1}: {losses}")
    mngr.save(t + 1, args=ocp.args.StandardSave({"params": params}))
    if log_fn is not None:
      log_fn(epoch=t + 1, loss=losses)
  mngr.wait_until_finished()
  if stop_after is not None and stop_after < cfg.epochs:
    return None
  return load_trajectories(directory, like, cfg.epochs, mngr)


def _bind_config(directory: str, cfg: ExpertConfig, params0) -> None:
  """Experts are shared between runs (``experts_dir``): the directory is bound to the
  :class:`ExpertConfig` that made it, and another config stops with one line."""
  shapes = {m: [list(np.shape(l)) for l in jax.tree_util.tree_leaves(p)] for m, p in params0.items()}
  ident = json.loads(json.dumps({"config": dataclasses.asdict(cfg), "shapes": shapes}))
  path = os.path.join(directory, "expert_config.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
    if old != ident:
      diff = sorted(k for k in set(old["config"]) | set(ident["config"])
                    if old["config"].get(k) != ident["config"].get(k))
      raise ValueError(f"{directory}: field 'expert_config.json': expected experts of this "
                       f"config, found experts of another (differing: {diff or ['shapes']}); "
                       "use another experts_dir or remove it")
    return
  os.makedirs(directory, exist_ok=True)
  if _manager(directory).latest_step() is not None:
    return  # experts written before configs were recorded: accepted as they are
  atomic_write_json(path, ident)


def load_trajectories(directory: str, like, epochs: int, mngr=None):
  """Stacks the saved snapshots ``0..epochs`` into leaves ``[E, epochs + 1, ...]``."""
  mngr = mngr or _manager(directory)
  snaps = [mngr.restore(t, args=ocp.args.StandardRestore({"params": like}))["params"]
           for t in range(epochs + 1)]
  # Snapshots may come back with different placements (saved before/after sharding,
  # or on another device count): stack on the host.
  return jax.tree_util.tree_map(lambda *a: jnp.asarray(np.stack([np.asarray(x) for x in a], 1)),
                                *snaps)


def saved_epochs(directory: str) -> list[int]:
  if not os.path.isdir(directory):
    return []
  return sorted(_manager(directory).all_steps())
