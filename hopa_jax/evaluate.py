"""Retrieval evaluation of a set of instances: distilled, Random or Full (SPEC §3.6).

Fresh heads start from the pretrained heads (plus a small per-run noise so that runs
differ when the batch is the whole set) and train on the set's features with one
evaluation objective and the set's targets ``Ŝ[batch, batch]`` (``I`` without
similarity mining): SGD with momentum and weight decay, batch ``min(128, n)``.
Every run's heads are scored on the real test split with
:func:`mmdd_jax.retrieval.retrieval_metrics`.

Two protocols (``EvalConfig.protocol``):

``"select"`` (default; the project's rule, SPEC §3.6 "Protocol selection")
  One rule for every row — each distilled set, Random and Full alike:

  1. *lr*: one probe run per learning rate of the log grid ``lrs`` (all probes in
     one vmapped program) trains with early stopping (below); the lr with the best
     validation avg R@1 wins (ties: the smaller lr). The set's learned ``η`` is not
     used: the student's step size and the evaluation's lr are separate things.
  2. *epochs*: ``runs`` runs at that lr; each run's heads are scored on the
     validation split (carved from train, never the test split) every ``val_every``
     epochs; a run keeps the heads of its best validation avg R@1 (epoch ≥ 1) and
     stops after ``patience`` checks without improvement or at ``max_epochs``.
  3. Those heads, one per run, are scored once on the test split.

``"paper"`` (SPEC §3.6, the LoRS protocol)
  ``epochs`` epochs at ``lr = the learned η`` with a ×0.1 step at the halfway
  epoch; the final heads are scored. No validation data is read.

Head architectures (``EvalConfig.head``; the cross-architecture analysis,
``docs/analyses.md``): which heads the evaluation trains, the same for every row.

``"linear_pretrained"`` (default)
  ImageBind's linear heads from the store's ``heads.npz`` plus ``init_noise`` per run
  (the heads the set was distilled for).
``"linear_random"``
  the same linear architecture from a random initialisation
  (:func:`mmdd_jax.heads.init_heads`, one draw per run).
``"mlp"``
  a two-layer MLP head per modality from a random initialisation
  (:func:`mmdd_jax.heads.init_mlp_heads`, hidden width ``mlp_hidden``, default the
  embedding dimension; one draw per run).
``"mlp_residual"``
  ImageBind's pretrained linear heads (+ ``init_noise``) with a residual two-layer MLP
  branch whose output layer starts at zero (:func:`mmdd_jax.heads.add_residual_mlp`,
  hidden width ``mlp_hidden``): training starts at the pretrained heads, but in an
  architecture the distillation never used.

Random initialisations come from ``rng.stream(run key, "head_init")``; the selection
rule (lr grid, early stopping on validation) is the same for every head.

All runs of one lr are one vmapped, jitted epoch program; the host loop over epochs
only syncs the ``[runs]`` validation scores.

Sharded evaluation (:mod:`mmdd_jax.sharding`): the run axis of every vmapped program —
the ``len(lrs)`` probes of the lr grid, then the ``runs`` runs — is split over the
global mesh (every device of every process, :mod:`mmdd_jax.distributed`) when it
divides the device count evenly, and replicated otherwise; the training and
validation features are replicated. Each device trains its own runs (vmapped runs
never mix): two processes give bit-identical results to one process on the same mesh
(tests/test_distributed.py), and a 4-device mesh gave the 1-device results bit for bit
in the case measured (docs/runs.md) — not guaranteed for every shape, since XLA may
compile a run's reductions differently for another number of runs per device. The
``[runs]`` losses and validation scores come back to every process
(:func:`mmdd_jax.distributed.to_host`), which then takes the same early-stopping
decisions, and the selected heads are gathered to the host before the test split is
scored. One device: a no-op placement.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hopa_jax import objectives as obj_lib
from hopa_jax import similarity as sim_lib
from mmdd_jax import heads as heads_lib
from mmdd_jax import data, distributed, faults, loop, rng, sharding
from mmdd_jax import keys as keys_lib
from mmdd_jax import train as train_lib

PROTOCOLS = ("select", "paper")
HEADS = ("linear_pretrained", "linear_random", "mlp", "mlp_residual")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """One evaluation protocol (module docstring) for every row of a table; the key fields
  are config keys ``eval.<field>`` (:func:`mmdd_jax.keys.field`). ``obj`` (the objective's
  settings), ``sim_kind`` / ``sim_alpha`` (how to read ``Ŝ`` params) and ``mlp_hidden``
  are set by the code."""
  protocol: str = keys_lib.field("select", PROTOCOLS, "select: lr and epochs on validation | "
                                 "paper: SPEC §3.6 (fixed epochs at the learned η)")
  runs: int = keys_lib.field(5, ">=1", "evaluation runs (mean ± std)")
  objective: str = keys_lib.field(
      "hopa", obj_lib.names, "None = the set's own inner objective (Random/Full rows set it "
      "per objective, experiments.hopa_table does) | an objective for every row", typ=str)
  obj: obj_lib.ObjectiveConfig = obj_lib.ObjectiveConfig()
  lrs: tuple = keys_lib.field((0.001, 0.003, 0.01, 0.03, 0.1, 0.3), ">0",
                              "select: the lr grid")
  max_epochs: int = keys_lib.field(100, ">=1", "select: early stopping on validation avg R@1 …")
  patience: int = keys_lib.field(10, ">=1", "select: … stops after this many checks without "
                                 "improvement")
  val_every: int = keys_lib.field(1, ">=1", "select: … checked every this many epochs")
  epochs: int = keys_lib.field(100, ">=1", "paper: fixed epochs, lr ×0.1 at half")
  batch_size: int = keys_lib.field(128, ">=1", "evaluation batch")
  momentum: float = keys_lib.field(0.9, ">=0", "evaluation SGD momentum")
  weight_decay: float = keys_lib.field(5e-4, ">=0", "evaluation weight decay")
  init_noise: float = keys_lib.field(1e-3, ">=0", "per-run noise on the pretrained heads [R]")
  sim_kind: str = keys_lib.field("fixed", sim_lib.KINDS, "how to read the set's Ŝ params")
  sim_alpha: float = keys_lib.field(1.0, ">0", "scale α of a low-rank Ŝ")
  head: str = keys_lib.field(
      "linear_pretrained", HEADS, "heads trained: linear_pretrained (the store's heads.npz) | "
      "linear_random | mlp (two-layer, random init) | mlp_residual (pretrained + a zero-init "
      "residual MLP) — hopa_jax.evaluate.HEADS, docs/analyses.md")
  mlp_hidden: int | None = keys_lib.field(None, ">=1", "head mlp / mlp_residual: hidden units "
                                          "(None: the embedding dimension)", typ=int)

  def validate(self) -> None:
    """A config built by hand (a resolved config was checked by its key table): every
    field's rule."""
    keys_lib.check_fields(self, "eval ")


def make_trainer(loss_fn: Callable, n: int, cfg: EvalConfig):
  """``(init, epoch)``: ``epoch(params, opt, key, e, lr, data)`` runs epoch ``e`` of
  SGD (momentum, weight decay) at step size ``lr`` — :func:`mmdd_jax.train.make_epoch`,
  the project's one epoch — vmapped over a leading run axis of
  ``params``/``opt``/``key``/``lr``. The lr is an argument (SGD's momentum trace does
  not depend on it), so runs with different lrs share one program."""
  tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                   optax.sgd(1.0, momentum=cfg.momentum))
  epoch = train_lib.make_epoch(loss_fn, tx, batch_size=cfg.batch_size, n=n)

  def one(params, opt, key, e, lr, data):
    return epoch(params, opt, data, key, e, lr)

  run = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, 0, None)))
  return jax.vmap(tx.init), run


def val_avg_r1(zs: Mapping[str, jax.Array]) -> jax.Array:
  """Average over ordered modality pairs of R@1 (%), pessimistic ties, in JAX
  (the same rank rule as :func:`mmdd_jax.retrieval.true_ranks`; a query row with a
  non-finite score is a miss)."""
  mods = list(zs)
  hits = []
  for a in mods:
    for b in mods:
      if a != b:
        sim = zs[a] @ zs[b].T
        own = jnp.diagonal(sim)[:, None]
        rank = jnp.sum(sim >= own, axis=1) - 1
        # A NaN score compares False everywhere (rank −1): count it as a miss, so a
        # diverged head can never win a validation selection.
        ok = jnp.all(jnp.isfinite(sim), axis=1)
        hits.append(jnp.mean((rank < 1) & ok))
  return 100.0 * jnp.mean(jnp.stack(hits))


def make_val_scorer(val_xs: Mapping[str, jax.Array]) -> Callable:
  """Jitted ``score(params [R, ...]) -> [R]`` validation avg R@1 of stacked heads."""
  val = {m: jnp.asarray(v, jnp.float32) for m, v in val_xs.items()}
  return jax.jit(jax.vmap(lambda p: val_avg_r1(heads_lib.apply_heads(p, val))))


def record(cfg: EvalConfig, out: Mapping) -> dict:
  """What ``results.json`` keeps of an :func:`evaluate_set` result (``"eval"``)."""
  return {"protocol": cfg.protocol, "objective": cfg.objective, "head": cfg.head,
          "lr": out["lr"], "epochs": out["epochs"], "val_r1": out["val_r1"],
          "lr_grid": out["lr_grid"]}


def init_head(key: jax.Array, params0, cfg: EvalConfig):
  """One run's initial heads (``cfg.head``, module docstring); ``params0``: the
  pretrained heads (their shapes fix the random heads' input and output dims)."""
  if cfg.head == "linear_pretrained":
    return heads_lib.perturb(rng.stream(key, "init_noise"), params0, cfg.init_noise)
  dims, out = heads_lib.head_dims(params0)
  k = rng.stream(key, "head_init")
  if cfg.head == "mlp_residual":
    p = heads_lib.perturb(rng.stream(key, "init_noise"), params0, cfg.init_noise)
    return heads_lib.add_residual_mlp(k, p, hidden=cfg.mlp_hidden)
  if cfg.head == "linear_random":
    return heads_lib.init_heads(k, dims, out_dim=out)
  return heads_lib.init_mlp_heads(k, dims, out_dim=out, hidden=cfg.mlp_hidden)


def _init_params(keys, params0, cfg: EvalConfig):
  return jax.vmap(lambda k: init_head(k, params0, cfg))(keys)


def make_loss(cfg: EvalConfig, sim_params: Mapping | None) -> Callable:
  f = obj_lib.get_objective(cfg.objective)
  sim_params = dict(sim_params or {})
  kind = cfg.sim_kind if sim_params else "fixed"

  def loss_fn(params, batch, idx):
    y = sim_lib.batch_targets(sim_params, idx, kind, cfg.sim_alpha)
    return f(heads_lib.apply_heads(params, batch), y, cfg.obj)
  return loss_fn


def train_early_stopping(keys, params0, xs, val_xs, lrs, cfg: EvalConfig, loss_fn, *,
                         progress: bool = False, desc: str = "eval",
                         ckpt_dir: str | None = None, save_every_s: float = 60.0):
  """Runs ``len(keys)`` runs (run ``r`` at ``lrs[r]``) with early stopping on the
  validation avg R@1: each run keeps the heads of its checkpoint chosen by
  :func:`mmdd_jax.data.first_best` over its checks so far (exact ties, ``tol=0``: the
  earliest best). The runs stop together, when every run has gone ``patience`` checks
  without a new best (or at ``max_epochs``): a run past its own patience trains on while
  another run improves, and a later check can still become its best (docs/hopa.md).
  Returns ``(best_params [R, ...], best_val [R], best_epoch [R])``.

  ``ckpt_dir``: resumable. After a validation check, when ``save_every_s`` seconds
  have passed since the last save (and always when the runs end), everything the loop
  carries — heads, optimizer state, best heads, scores so far, epoch — is saved there
  (Orbax, one checkpoint kept); a call that finds one goes on from it, bit-identically
  (every draw is a function of the epoch), and one that finds the finished state
  returns it without training. An evaluation of the whole train set under wide heads
  takes hours on a CPU: a killed one loses at most ``save_every_s`` of it."""
  n = int(next(iter(xs.values())).shape[0])
  init, epoch = make_trainer(loss_fn, n, cfg)
  score = make_val_scorer(val_xs)
  params, opt, lrs, xs = _placed(keys, params0, xs, lrs, cfg, init)
  r = len(keys)
  best = jax.tree_util.tree_map(jnp.copy, params)
  best_val = np.full(r, -np.inf)
  best_epoch = np.zeros(r, np.int64)
  waited = np.zeros(r, np.int64)
  history = [[] for _ in range(r)]   # per run: the validation scores of its checks so far
  start, done = 0, False
  mngr = loop.checkpoint_manager(ckpt_dir, keep=1) if ckpt_dir else None

  def carried(epochs: int):
    """What the loop carries after ``epochs`` epochs (the checkpoint's tree)."""
    hist = np.zeros((r, cfg.max_epochs), np.float32)   # at most one check per epoch
    for i, h in enumerate(history):
      hist[i, :len(h)] = h
    return {"params": params, "opt": opt, "best": best,
            "best_val": best_val.astype(np.float32), "best_epoch": best_epoch.astype(np.int32),
            "waited": waited.astype(np.int32), "history": hist,
            "checks": np.asarray(len(history[0]), np.int32),
            "epoch": np.asarray(epochs, np.int32), "done": np.asarray(done)}

  if mngr is not None and mngr.latest_step() is not None:
    try:
      got = loop.restore(mngr, mngr.latest_step(), carried(0))
    except ValueError as err:
      raise ValueError(f"{ckpt_dir}: expected an evaluation checkpoint of this config's "
                       f"{r} runs and heads, found another ({' '.join(str(err).split())[:160]})"
                       ) from None
    params, opt, best = got["params"], got["opt"], got["best"]
    best_val = np.asarray(got["best_val"]).astype(np.float64)
    best_epoch = np.asarray(got["best_epoch"]).astype(np.int64)
    waited = np.asarray(got["waited"]).astype(np.int64)
    start, done = int(got["epoch"]), bool(got["done"])
    history = [list(h[:int(got["checks"])]) for h in np.asarray(got["history"])]
  bar = None
  if progress and distributed.is_writer() and not done:
    from tqdm.auto import tqdm
    bar = tqdm(total=cfg.max_epochs, initial=start, desc=desc, unit="epoch", leave=False)
  saved = time.monotonic()
  for e in range(start, 0 if done else cfg.max_epochs):
    params, opt, losses = epoch(params, opt, keys, jnp.asarray(e, jnp.int32), lrs, xs)
    if bar is not None:
      bar.update(1)
    if (e + 1) % cfg.val_every and e + 1 != cfg.max_epochs:
      continue
    losses = distributed.to_host(losses)
    if not np.all(np.isfinite(losses)):
      raise FloatingPointError(f"evaluate: non-finite training loss at epoch {e + 1} "
                               f"(lrs {distributed.to_host(lrs).tolist()}): {losses.tolist()}")
    s = distributed.to_host(score(params))
    for h, v in zip(history, s):
      h.append(v)
    improved = np.array([data.first_best(h, tol=0.0) == len(h) - 1 for h in history])
    best_val = np.where(improved, s, best_val)
    best_epoch = np.where(improved, e + 1, best_epoch)
    waited = np.where(improved, 0, waited + 1)
    best = _keep_improved(sharding.shard_leading(improved), best, params)
    done = bool(np.all(waited >= cfg.patience)) or e + 1 == cfg.max_epochs
    if mngr is not None and (done or _agreed(time.monotonic() - saved >= save_every_s)):
      loop.save(mngr, e + 1, carried(e + 1), ckpt_dir)
      saved = time.monotonic()
    if done:
      break
  if bar is not None:
    bar.close()
  if mngr is not None:
    with faults.writing(ckpt_dir):
      mngr.close()
  return best, best_val, best_epoch


def _agreed(flag: bool) -> bool:
  """One decision for every process (process 0's), so that they save together."""
  return bool(distributed.broadcast(flag)) if distributed.process_count() > 1 else flag


@jax.jit
def _keep_improved(imp, best, params):
  """``best`` with the runs where ``imp`` holds replaced by ``params``."""
  return jax.tree_util.tree_map(
      lambda b, p: jnp.where(imp.reshape((-1,) + (1,) * (p.ndim - 1)), p, b), best, params)


def _placed(keys, params0, xs, lrs, cfg: EvalConfig, init):
  """The runs' initial heads, optimizer state and lrs with the run axis split over the
  global mesh (replicated when it does not divide evenly), and the features replicated
  (module docstring)."""
  params = sharding.shard_leading(_init_params(keys, params0, cfg))
  # (placed like the epoch program's outputs, so its second call does not recompile)
  opt = sharding.shard_leading(init(params))
  lrs = sharding.shard_leading(jnp.asarray(lrs, jnp.float32))
  return params, opt, lrs, sharding.replicate(xs)


def select_lr(key, params0, xs, val_xs, cfg: EvalConfig, loss_fn, *, progress=False,
              ckpt_dir: str | None = None):
  """Step 1 of ``select``: one probe per grid lr; returns ``(lr, {lr: best val})``."""
  keys = jax.random.split(rng.stream(key, "lr_grid"), len(cfg.lrs))
  _, vals, _ = train_early_stopping(keys, params0, xs, val_xs, list(cfg.lrs), cfg, loss_fn,
                                    progress=progress, desc="eval lr grid", ckpt_dir=ckpt_dir)
  grid = {float(lr): float(v) for lr, v in zip(cfg.lrs, vals)}
  return data.choose(list(grid), list(grid.values())), grid


def evaluate_set(key: jax.Array, params0, xs: Mapping[str, np.ndarray],
                 test_xs: Mapping[str, np.ndarray], cfg: EvalConfig, *,
                 val_xs: Mapping[str, np.ndarray] | None = None,
                 sim_params: Mapping | None = None, learned_lr: float | None = None,
                 progress: bool = False, ckpt_dir: str | None = None) -> dict:
  """Trains ``cfg.runs`` heads on ``xs`` and scores them on ``test_xs``.

  Returns ``{"runs": [per-run retrieval dicts], "lr": float, "epochs": [per run],
  "val_r1": [per run] | None, "lr_grid": {lr: val} | None}``.

  ``ckpt_dir`` (protocol ``select``): the lr grid and the runs resume from their
  checkpoints there (:func:`train_early_stopping`), removed once the test split is
  scored; the caller writes the result right after.
  """
  xs = {m: jnp.asarray(v, jnp.float32) for m, v in xs.items()}
  loss_fn = make_loss(cfg, sim_params)
  keys = jax.random.split(key, cfg.runs)
  out = {"lr_grid": None, "val_r1": None}
  if cfg.protocol == "select":
    if val_xs is None:
      raise ValueError("eval protocol 'select': expected a validation split, found none")
    val = {m: jnp.asarray(v, jnp.float32) for m, v in val_xs.items()}
    grid_ckpt, runs_ckpt = ((os.path.join(ckpt_dir, "lr_grid"), os.path.join(ckpt_dir, "runs"))
                            if ckpt_dir else (None, None))
    lr, grid = select_lr(key, params0, xs, val, cfg, loss_fn, progress=progress,
                         ckpt_dir=grid_ckpt)
    params, vals, epochs = train_early_stopping(keys, params0, xs, val, [lr] * cfg.runs, cfg,
                                                loss_fn, progress=progress, desc="eval runs",
                                                ckpt_dir=runs_ckpt)
    out.update(lr_grid=grid, val_r1=[float(v) for v in vals])
    out["epochs"] = [int(e) for e in epochs]
  else:
    if learned_lr is None:
      raise ValueError("eval protocol 'paper': expected the set's step size η, found none")
    lr = float(learned_lr)
    params = paper_runs(keys, params0, xs, lr, cfg, loss_fn)
    out["epochs"] = [cfg.epochs] * cfg.runs
  out["lr"] = lr
  params = distributed.to_host(params)   # the runs' heads on every process
  out["runs"] = [heads_lib.evaluate_heads_retrieval(
      jax.tree_util.tree_map(lambda a: a[r], params), test_xs)[0] for r in range(cfg.runs)]
  if ckpt_dir:   # every process takes this branch (one looking at the directory could
    # find it already removed by the writer and skip the collective the writer waits in)
    distributed.on_writer(lambda: os.path.isdir(ckpt_dir) and shutil.rmtree(ckpt_dir),
                          "removing the evaluation checkpoints")
  return out


def paper_runs(keys, params0, xs, lr: float, cfg: EvalConfig, loss_fn):
  """SPEC §3.6's fixed protocol: ``epochs`` epochs, ×0.1 at the halfway epoch."""
  n = int(next(iter(xs.values())).shape[0])
  init, epoch = make_trainer(loss_fn, n, cfg)
  params, opt, _, xs = _placed(keys, params0, xs, [lr] * len(keys), cfg, init)
  for e in range(cfg.epochs):
    lr_e = lr * (0.1 if e >= cfg.epochs // 2 and cfg.epochs > 1 else 1.0)
    lrs = sharding.shard_leading(jnp.full((len(keys),), lr_e, jnp.float32))
    params, opt, losses = epoch(params, opt, keys, jnp.asarray(e, jnp.int32), lrs, xs)
  losses = distributed.to_host(losses)
  if not np.all(np.isfinite(losses)):
    raise FloatingPointError(f"evaluate: non-finite training loss (lr={lr}): {losses}")
  return params
