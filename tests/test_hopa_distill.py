"""Distillation (SPEC §3.5): rollout gradients, tesla vs full, traces, resume, experts."""

import dataclasses
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hopa_jax import distill as dl
from hopa_jax import experts as ex
from hopa_jax import objectives as obj
from mmdd_jax import heads as heads_lib
from mmdd_jax import loop

DIMS = {"vision": 5, "audio": 4, "text": 3}
OUT = 4


def _heads(key, dtype=jnp.float32):
  p = heads_lib.init_heads(key, DIMS, out_dim=OUT)
  return jax.tree_util.tree_map(lambda a: a.astype(dtype), p)


def _syn(key, n, dtype=jnp.float32):
  return {m: jax.random.normal(jax.random.fold_in(key, i), (n, d), dtype)
          for i, (m, d) in enumerate(DIMS.items())}


def _traj(key, e=2, t=4, dtype=jnp.float32):
  """Fake expert trajectories: a random walk from random heads, leaves [E, T+1, ...]."""
  p0 = _heads(key, dtype)
  def walk(k):
    steps = [p0]
    for s in range(t):
      steps.append(heads_lib.perturb(jax.random.fold_in(k, s), steps[-1], 0.05))
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *steps)
  ws = [walk(jax.random.fold_in(key, 100 + i)) for i in range(e)]
  return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ws)


def _cfg(**kw):
  base = dict(n=6, sim_rank=2, syn_steps=3, mini_batch=3, expert_epochs=1, max_start_epoch=2,
              lr_data=1.0, lr_lr=1e-3, lr_sim=1.0)
  base.update(kw)
  return dl.DistillConfig(**base)


def _problem(cfg, dtype=jnp.float32, seed=0):
  key = jax.random.key(seed)
  traj = _traj(key, dtype=dtype)
  theta0 = jax.tree_util.tree_map(lambda a: a[0, 0], traj)
  theta_star = jax.tree_util.tree_map(lambda a: a[0, 1], traj)
  syn = _syn(jax.random.fold_in(key, 7), cfg.n, dtype)
  state = dl.init_state(jax.random.PRNGKey(seed), cfg, syn, 0.1)
  sim = jax.tree_util.tree_map(lambda a: a.astype(dtype), state.sim)
  if "R" in sim:  # make Ŝ non-trivial so its gradient path is exercised
    sim = dict(sim, R=0.3 * jax.random.normal(jax.random.fold_in(key, 9), sim["R"].shape, dtype))
  idxs = dl.batch_indices(jax.random.key(3), cfg.n, cfg.syn_steps, cfg.mini_batch)
  bkeys = jax.random.split(jax.random.key(4), cfg.syn_steps)
  return traj, theta0, theta_star, syn, jnp.log(jnp.asarray(0.1, dtype)), sim, idxs, bkeys


@pytest.mark.parametrize("objective", ["hopa", "3pair"])
def test_check_grads_rollout_full(objective):
  with jax.enable_x64(True):
    cfg = _cfg(objective=objective, sim_kind="fixed" if objective == "infonce" else "lowrank")
    _, th0, ths, syn, log_lr, sim, idxs, bkeys = _problem(cfg, jnp.float64)
    inner = dl.make_inner_loss(cfg)
    @jax.jit
    def f(syn, log_lr, sim):
      return dl.match_loss(dl.student_rollout(inner, th0, syn, log_lr, sim, idxs, bkeys), th0, ths)
    check_grads(f, (syn, log_lr, sim), order=1, modes=["rev"], eps=1e-5, atol=1e-4, rtol=1e-4)
    loss, grads = jax.jit(lambda *a: dl.full_loss_and_grads(inner, *a))(
        th0, ths, syn, log_lr, sim, idxs, bkeys)
    chex.assert_trees_all_close(grads, jax.grad(f, argnums=(0, 1, 2))(syn, log_lr, sim),
                                rtol=1e-10, atol=1e-12)


def student_rollout_loop(inner, theta0, syn, log_lr, sim, idxs, bkeys):
  """Python-loop reference of :func:`hopa_jax.distill.student_rollout`."""
  eta = jnp.exp(log_lr)
  theta = theta0
  for i in range(idxs.shape[0]):
    g = jax.grad(inner)(theta, syn, sim, idxs[i], bkeys[i])
    theta = jax.tree_util.tree_map(lambda p, q: p - eta * q, theta, g)
  return theta


def test_scan_equals_python_loop():
  cfg = _cfg(blend=True, objective="3pair")
  _, th0, _, syn, log_lr, sim, idxs, bkeys = _problem(cfg)
  inner = dl.make_inner_loss(cfg)
  a = jax.jit(lambda s: dl.student_rollout(inner, th0, s, log_lr, sim, idxs, bkeys))(syn)
  b = jax.jit(lambda s: student_rollout_loop(inner, th0, s, log_lr, sim, idxs, bkeys))(syn)
  chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-6)


def _cos(a, b):
  a = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(a)])
  b = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(b)])
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), float(
      np.linalg.norm(a - b) / np.linalg.norm(b))


TESLA_TOL = 0.05  # relative L2 error of tesla vs full gradients at η = 1e-3 (documented)


def test_tesla_matches_full_small_eta():
  """With a small step size the dropped terms (order η·syn_steps·‖∇²L‖) vanish: tesla's
  feature, Ŝ and log η gradients agree with the exact ones to ``TESLA_TOL``; the
  loss is identical."""
  with jax.enable_x64(True):
    cfg = _cfg(objective="3pair")
    _, th0, ths, syn, _, sim, idxs, bkeys = _problem(cfg, jnp.float64)
    log_lr = jnp.log(jnp.asarray(1e-3, jnp.float64))
    inner = dl.make_inner_loss(cfg)
    full = jax.jit(lambda *a: dl.full_loss_and_grads(inner, *a))
    tesla = jax.jit(lambda *a: dl.tesla_loss_and_grads(inner, *a))
    lf, gf = full(th0, ths, syn, log_lr, sim, idxs, bkeys)
    lt, gt = tesla(th0, ths, syn, log_lr, sim, idxs, bkeys)
    np.testing.assert_allclose(float(lt), float(lf), rtol=1e-10)
    for i, name in enumerate(["syn", "log_lr", "sim"]):
      cos, rel = _cos(gt[i], gf[i])
      assert rel < TESLA_TOL, (name, cos, rel)
    # A single student step has no earlier-step dependence: tesla is exact.
    lf, gf = full(th0, ths, syn, log_lr, sim, idxs[:1], bkeys[:1])
    lt, gt = tesla(th0, ths, syn, log_lr, sim, idxs[:1], bkeys[:1])
    chex.assert_trees_all_close(gt, gf, rtol=1e-8, atol=1e-12)


def _temp_bytes(mode, steps):
  cfg = _cfg(grad_mode=mode, syn_steps=steps, n=8, mini_batch=4, objective="3pair")
  _, th0, ths, syn, log_lr, sim, _, _ = _problem(cfg)
  idxs = dl.batch_indices(jax.random.key(3), cfg.n, steps, cfg.mini_batch)
  bkeys = jax.random.split(jax.random.key(4), steps)
  f = jax.jit(lambda *a: dl.make_loss_and_grads(cfg)(*a))
  ma = f.lower(th0, ths, syn, log_lr, sim, idxs, bkeys).compile().memory_analysis()
  if ma is None:
    pytest.skip("memory_analysis unavailable on this backend")
  return ma.temp_size_in_bytes


def test_tesla_memory_constant_in_syn_steps():
  t4, t32 = _temp_bytes("tesla", 4), _temp_bytes("tesla", 32)
  f4, f32 = _temp_bytes("full", 4), _temp_bytes("full", 32)
  assert t32 <= t4 * 1.1 + 4096, (t4, t32)
  assert f32 > f4, (f4, f32)


def test_step_traced_once_and_runs():
  cfg = _cfg()
  traj, *_ = _problem(cfg)
  state = dl.init_state(jax.random.PRNGKey(0), cfg, _syn(jax.random.key(1), cfg.n), 0.1)
  step = jax.jit(chex.assert_max_traces(dl.make_distill_step(cfg, jit=False), n=1),
                 donate_argnums=(0,))
  for _ in range(3):
    state, m = step(state, traj)
  assert int(state.step) == 3 and np.isfinite(float(m["loss"]))


# Objectives are checked one by one in test_hopa_proxy.py; here each distinct
# distillation path (rank-2 proxy, tesla mode, blending, no mining, bind pairs).
@pytest.mark.parametrize("method", ["rank2", "tesla", "repblend"])
def test_method_steps(method):
  spec = dl.method_spec(method)
  cfg = _cfg(objective=spec["objective"], grad_mode=spec["grad_mode"], blend=spec["blend"],
             sim_kind="lowrank" if spec["mining"] else "fixed",
             obj=obj.ObjectiveConfig(**spec["obj"]))
  traj, *_ = _problem(cfg)
  state = dl.init_state(jax.random.PRNGKey(0), cfg, _syn(jax.random.key(1), cfg.n), 0.1)
  state, m = dl.make_distill_step(cfg)(state, traj)
  assert np.isfinite(float(m["loss"])), method


def test_resume_equals_uninterrupted(tmp_path):
  cfg = _cfg(objective="3pair", iterations=5)
  traj, *_ = _problem(cfg)
  init = lambda: dl.init_state(jax.random.PRNGKey(0), cfg, _syn(jax.random.key(1), cfg.n), 0.1)
  ref = dl.distill(init(), traj, cfg, ckpt_dir=str(tmp_path / "a"), ckpt_every=2, log_every=1)
  d = str(tmp_path / "b")
  dl.distill(init(), traj, cfg, ckpt_dir=d, ckpt_every=2, stop_at=3)   # "killed" at 3
  res = dl.distill(init(), traj, cfg, ckpt_dir=d, ckpt_every=2)        # resumes from 2
  assert int(res.step) == 5
  for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(res)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_before_the_opt_state_rename_resumes(tmp_path):
  """A checkpoint written when DistillState's optimizer field was still ``opt`` (before
  the rename to ``opt_state``, issue 21) resumes bit-identically to an uninterrupted run."""
  import flax
  from typing import Any

  @flax.struct.dataclass
  class OldState:   # the field layout of the checkpoints written before the rename
    syn: dict
    log_lr: Any
    sim: dict
    opt: Any
    syn_scale: dict
    key: Any
    step: Any

  cfg = _cfg(objective="3pair", iterations=5)
  traj, *_ = _problem(cfg)
  init = lambda: dl.init_state(jax.random.PRNGKey(0), cfg, _syn(jax.random.key(1), cfg.n), 0.1)
  ref = dl.distill(init(), traj, cfg)
  part = dl.distill(init(), traj, cfg, stop_at=2)
  old = OldState(**{("opt" if f.name == "opt_state" else f.name): getattr(part, f.name)
                    for f in dataclasses.fields(part)})
  d = str(tmp_path / "old")
  loop.save(loop.checkpoint_manager(d), 2, old, d)
  res = dl.distill(init(), traj, cfg, ckpt_dir=d, ckpt_every=2)   # resumes from 2
  assert int(res.step) == 5
  for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(res)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def saved_epochs(directory: str) -> list[int]:
  """The epochs whose expert snapshots ``directory`` holds."""
  if not os.path.isdir(directory):
    return []
  return sorted(loop.checkpoint_manager(directory, None).all_steps())


def test_experts_resume(tmp_path):
  key = jax.random.key(0)
  p0 = _heads(key)
  xs = {m: np.asarray(v) for m, v in _syn(jax.random.key(2), 20).items()}
  cfg = ex.ExpertConfig(num_experts=3, epochs=3, lr=0.1, batch_size=8, init_noise=0.01,
                        objective="3pair")
  ref = ex.train_experts(key, p0, xs, cfg, str(tmp_path / "a"))
  leaf = jax.tree_util.tree_leaves(ref)[0]
  assert leaf.shape[:2] == (3, 4)
  d = str(tmp_path / "b")
  assert ex.train_experts(key, p0, xs, cfg, d, stop_at=1) is None
  assert saved_epochs(d) == [0, 1]
  res = ex.train_experts(key, p0, xs, cfg, d)
  assert saved_epochs(d) == [0, 1, 2, 3]
  chex.assert_trees_all_close(ref, res, rtol=0, atol=0)
  # Experts differ (noise + batch order) and move.
  assert not np.allclose(np.asarray(leaf[0, 3]), np.asarray(leaf[1, 3]))
  assert not np.allclose(np.asarray(leaf[0, 0]), np.asarray(leaf[0, 3]))


def test_every_learnable_moves_with_the_default_optimizer():
  """The project's rule (adam, lrs relative to the data's scale): in a few iterations
  the features move by a non-negligible fraction of their spread, η moves, and Ŝ
  leaves the identity (off-diagonal mass appears). Logged in the step's metrics."""
  cfg = dl.DistillConfig(n=6, sim_rank=2, syn_steps=3, mini_batch=3, expert_epochs=1,
                         max_start_epoch=2, objective="3pair")
  assert (cfg.optimizer, cfg.lr_data, cfg.lr_lr, cfg.lr_sim) == ("adam", 0.01, 0.01, 0.01)
  traj, *_ = _problem(cfg)
  syn0 = {m: np.asarray(v) for m, v in _syn(jax.random.key(1), cfg.n).items()}
  scale = dl.feature_scale(syn0)
  state = dl.init_state(jax.random.PRNGKey(0), cfg, syn0, 0.1, scale)
  step = dl.make_distill_step(cfg)
  for _ in range(10):
    state, m = step(state, traj)
  for k in ("update_syn", "update_sim", "sim_offdiag", "sim_diag_min", "lr"):
    assert np.isfinite(float(m[k])), k
  moved = np.mean([np.sqrt(np.mean((np.asarray(state.syn[k]) - syn0[k]) ** 2)) / scale[k]
                   for k in syn0])
  assert moved > 0.02, moved                      # ≥ 2 % of the spread in 10 steps
  assert abs(float(jnp.exp(state.log_lr)) - 0.1) > 0.1 * 0.02
  assert float(m["sim_offdiag"]) > 1e-3
  assert float(m["update_syn"]) > 0


def test_sgd_optimizer_and_frozen_learnables():
  """``optimizer=sgd`` is SPEC's: the jitted step moves the features and η (SGD on raw
  η, tests/test_hopa_math_fixes.py); ``learn_lr=False`` and a fixed Ŝ are frozen by
  optax.set_to_zero inside the one multi_transform."""
  cfg = _cfg(optimizer="sgd", lr_lr=1e-4, sim_kind="fixed", objective="3pair")
  traj, *_ = _problem(cfg)
  state = dl.init_state(jax.random.PRNGKey(0), cfg, _syn(jax.random.key(1), cfg.n), 0.1)
  assert all(float(v) == 1.0 for v in state.syn_scale.values())  # sgd: absolute lr
  syn0 = jax.tree_util.tree_map(np.asarray, state.syn)
  lr0 = float(state.log_lr)
  params = dl.learnables(state)
  state, m = dl.make_distill_step(cfg)(state, traj)
  assert float(state.log_lr) != lr0 and np.isfinite(float(m["lr"])) and state.sim == {}
  assert any(not np.array_equal(syn0[k], np.asarray(state.syn[k])) for k in syn0)
  frozen = dl.make_optimizer(dataclasses.replace(cfg, learn_lr=False))
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  u, _ = frozen.update(grads, frozen.init(params), params)
  assert float(u["log_lr"]) == 0.0
  with pytest.raises(ValueError, match="optimizer: expected"):
    _cfg(optimizer="rmsprop").validate()
