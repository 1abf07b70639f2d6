"""Retrieval evaluation of a distilled set (SPEC §3.6).

Fresh heads start from the pretrained heads (plus a small per-run noise so that runs
differ when the batch is the whole set), train on the distilled features with the
method's inner objective and targets ``Ŝ[batch, batch]``: SGD momentum 0.9, weight
decay 5e-4, lr = the learned ``η``, batch ``min(128, n)``, ``epochs`` epochs with a
×0.1 step at the halfway epoch. All runs are one vmapped program
(:func:`mmdd_jax.train.make_fit`); each run's final heads are scored on the real test
split with :func:`mmdd_jax.retrieval.retrieval_metrics`.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hopa_jax import objectives as obj_lib
from hopa_jax import similarity as sim_lib
from mmdd_jax import heads as heads_lib
from mmdd_jax import reference, train


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Attributes: runs, epochs, batch_size, momentum, weight_decay, init_noise (per-run
  std added to the pretrained heads, [R]), objective / obj (inner objective),
  sim_kind / sim_alpha (how to read ``Ŝ`` params)."""
  runs: int = 5
  epochs: int = 100
  batch_size: int = 128
  momentum: float = 0.9
  weight_decay: float = 5e-4
  init_noise: float = 1e-3
  objective: str = "hopa"
  obj: obj_lib.ObjectiveConfig = obj_lib.ObjectiveConfig()
  sim_kind: str = "fixed"
  sim_alpha: float = 1.0


def make_optimizer(lr: float, n: int, cfg: EvalConfig) -> optax.GradientTransformation:
  steps_per_epoch = max(n // min(cfg.batch_size, n), 1)
  boundary = (cfg.epochs // 2) * steps_per_epoch
  sched = optax.piecewise_constant_schedule(lr, {boundary: 0.1}) if boundary > 0 else lr
  return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.sgd(sched, momentum=cfg.momentum))


def train_runs(key: jax.Array, params0, xs: Mapping[str, np.ndarray], lr: float,
               cfg: EvalConfig, sim_params: Mapping | None = None):
  """Trains ``cfg.runs`` heads (vmapped over keys); returns stacked params ``[R, ...]``."""
  xs = {m: jnp.asarray(v, jnp.float32) for m, v in xs.items()}
  n = int(next(iter(xs.values())).shape[0])
  f = obj_lib.get_objective(cfg.objective)
  sim_params = dict(sim_params or {})
  kind = cfg.sim_kind if sim_params else "fixed"

  def loss_fn(params, batch, idx):
    y = sim_lib.batch_targets(sim_params, idx, kind, cfg.sim_alpha)
    return f(heads_lib.apply_heads(params, batch), y, cfg.obj)

  fit = train.make_fit(loss_fn, make_optimizer(float(lr), n, cfg), epochs=cfg.epochs,
                       batch_size=cfg.batch_size, n=n)
  keys = jax.random.split(key, cfg.runs)
  p0 = jax.vmap(lambda k: heads_lib.perturb(jax.random.fold_in(k, 1), params0,
                                            cfg.init_noise))(keys)
  params, losses = jax.vmap(fit, in_axes=(0, None, 0))(p0, xs, keys)
  losses = np.asarray(losses)
  if not np.all(np.isfinite(losses)):
    raise FloatingPointError(f"evaluate: non-finite training loss (lr={lr}): {losses[:, -1]}")
  return params


def evaluate_distilled(key: jax.Array, params0, syn_xs: Mapping[str, np.ndarray],
                       test_xs: Mapping[str, np.ndarray], lr: float, cfg: EvalConfig,
                       sim_params: Mapping | None = None, *, progress: bool = False
                       ) -> list[dict]:
  """Per-run retrieval metrics (``[{"VT": {"R@1", "R@5", "R@10"}, …}, …]``)."""
  params = train_runs(key, params0, syn_xs, lr, cfg, sim_params)
  it = range(cfg.runs)
  if progress:
    from tqdm.auto import tqdm
    it = tqdm(it, desc="eval", unit="run")
  out = []
  for r in it:
    p = jax.tree_util.tree_map(lambda a: a[r], params)
    out.append(reference.evaluate_heads_retrieval(p, test_xs)[0])
  return out
