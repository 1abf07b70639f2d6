"""Omnimodal proxy, objectives and similarity mining (SPEC §3.1–3.4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
enable_x64 = jax.enable_x64
from jax.test_util import check_grads

from hopa_jax import objectives as obj
from hopa_jax import proxy as px
from hopa_jax import similarity as sim


def _unit(x):
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def _random_zs(key, b=4, m=3, d=6, dtype=jnp.float32):
  z = _unit(jax.random.normal(key, (b, m, d), dtype))
  return z


def test_proxy_matches_svd():
  with enable_x64(True):
    z = _random_zs(jax.random.key(1), dtype=jnp.float64)
    p = px.proxy(z)
    for i in range(z.shape[0]):
      u, s, vt = np.linalg.svd(np.asarray(z[i]), full_matrices=False)
      np.testing.assert_allclose(np.asarray(p.sigma[i]), s, rtol=1e-10)
      v1 = vt[0] * np.sign(vt[0] @ np.asarray(z[i]).sum(0))
      np.testing.assert_allclose(np.asarray(p.v[i]), v1, atol=1e-10)
      assert float(p.v[i] @ z[i].sum(0)) >= 0
    np.testing.assert_allclose(np.linalg.norm(np.asarray(p.v), axis=-1), 1.0, rtol=1e-10)


def test_rank2_unit_features():
  """Rank-2: ``[σ₁v₁, vec(σ₂a₂v₂ᵀ)]`` normalised, ``d + M·d`` wide (sign-free in mode 2,
  tests/test_hopa_math_fixes.py)."""
  with enable_x64(True):
    z = _random_zs(jax.random.key(2), dtype=jnp.float64)
    p2 = px.proxy(z, rank=2)
    assert p2.v.shape == (4, 6 + 3 * 6)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(p2.v), axis=-1), 1.0, rtol=1e-10)
  with pytest.raises(ValueError, match="rank"):
    px.proxy(z, rank=4)


def _hopa_scalar(z, rank=1):
  y = jnp.eye(z.shape[0], dtype=z.dtype)
  zs = {f"m{k}": z[:, k] for k in range(z.shape[1])}
  return obj.hopa(zs, y, obj.ObjectiveConfig(rank=rank))


@pytest.mark.parametrize("rank", [1, 2])
def test_check_grads_proxy_random(rank):
  with enable_x64(True):
    z = _random_zs(jax.random.key(3), dtype=jnp.float64)
    check_grads(lambda z: _hopa_scalar(z, rank), (z,), order=3 - rank, modes=["rev"], eps=1e-5)
    width = 6 + (rank - 1) * 3 * 6
    check_grads(lambda z: jnp.sum(px.proxy(z, rank).v * jnp.arange(1.0 * width)[None, :]), (z,),
                order=1, modes=["fwd", "rev"], eps=1e-5)


def _degenerate_cases(dtype):
  k = jax.random.key(4)
  base = _unit(jax.random.normal(k, (4, 1, 8), dtype))
  other = _unit(jax.random.normal(jax.random.fold_in(k, 1), (4, 2, 8), dtype))
  all_same = jnp.concatenate([base, base, base], axis=1)                 # λ = (3, 0, 0)
  two_same = jnp.concatenate([base, base, other[:, :1]], axis=1)         # one zero mode
  # M−1 trailing eigenvalues equal: rows with equal pairwise cosine c → λ = (1+2c, 1−c, 1−c)
  e = jnp.eye(8, dtype=dtype)[:3]
  c = 0.5
  simplex = _unit(e + c * jnp.ones((3, 8), dtype) / jnp.sqrt(8.0).astype(dtype))
  g = simplex @ simplex.T
  equi = jnp.linalg.cholesky(jnp.full((3, 3), c, dtype) + (1 - c) * jnp.eye(3, dtype=dtype))
  equi = jnp.concatenate([equi, jnp.zeros((3, 5), dtype)], axis=1)       # exact equicorrelated rows
  equi = jnp.broadcast_to(equi, (4, 3, 8))
  del g
  return {"all_same": all_same, "two_same": two_same, "trailing_equal": equi}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_degenerate_grads_finite(dtype):
  """All modalities identical, two identical, M−1 equal trailing eigenvalues: the
  value, gradient and grad-of-grad (rank 1 and rank 2) stay finite."""
  with enable_x64(dtype == "float64"):
    dt = jnp.float64 if dtype == "float64" else jnp.float32
    cases = _degenerate_cases(dt)
    zs = jnp.stack(list(cases.values()))                                 # [C, B, M, d]
    tangent = jax.random.normal(jax.random.key(5), zs.shape[1:], dt)

    def all_derivs(z):
      g1 = jax.grad(_hopa_scalar)(z)
      hvp = jax.grad(lambda z: jnp.vdot(jax.grad(_hopa_scalar)(z), tangent))(z)
      g2 = jax.grad(lambda z: _hopa_scalar(z, 2))(z)
      return px.proxy(z).v, g1, hvp, g2

    outs = jax.jit(jax.vmap(all_derivs))(zs)
    for name, o in zip(("v", "grad", "grad_of_grad", "grad_rank2"), outs):
      for c, case in enumerate(cases):
        assert np.all(np.isfinite(np.asarray(o[c]))), (case, name)


def test_all_same_gradient_value():
  """All modalities identical: v = z, σ = (√3, 0, 0); the gradient must equal that of
  the closed form (the L_inst part seen through v = z and L_mod constant in the
  tangent directions that keep rows identical)."""
  with enable_x64(True):
    z = _degenerate_cases(jnp.float64)["all_same"]
    p = px.proxy(z)
    np.testing.assert_allclose(np.asarray(p.v), np.asarray(z[:, 0]), atol=1e-8)
    np.testing.assert_allclose(np.asarray(p.sigma[:, 0]), np.sqrt(3.0), rtol=1e-8)
    # Directional derivative along a tangent that moves all rows together.
    t = jax.random.normal(jax.random.key(6), z[:, :1].shape, jnp.float64)
    t = jnp.broadcast_to(t, z.shape)
    f = lambda s: _hopa_scalar(_unit(z + s * t))
    num = (f(1e-6) - f(-1e-6)) / 2e-6
    ana = jax.jvp(f, (0.0,), (1.0,))[1]
    np.testing.assert_allclose(float(ana), float(num), rtol=1e-5)


def _zs(key, b=5, dims=(("vision", 6), ("audio", 6), ("text", 6)), dtype=jnp.float32):
  return {m: _unit(jax.random.normal(jax.random.fold_in(key, i), (b, d), dtype))
          for i, (m, d) in enumerate(dims)}


def test_weighted_bce_hand_computed():
  s = jnp.array([[2.0, -1.0], [0.5, 3.0]])
  y = jnp.eye(2)
  ell = np.array([[np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0))],
                  [np.log1p(np.exp(0.5)), np.log1p(np.exp(-3.0))]])
  want = 0.5 * ((ell[0, 0] + ell[1, 1]) / 2 + (ell[0, 1] + ell[1, 0]) / 2)
  np.testing.assert_allclose(float(obj.weighted_bce(s, y)), want, rtol=1e-6)
  # log-sigmoid form: finite for huge logits.
  assert np.isfinite(float(obj.weighted_bce(jnp.array([[1e4, -1e4], [-1e4, 1e4]]), y)))


@pytest.mark.parametrize("name", sorted(obj.OBJECTIVES))
def test_check_grads_objectives(name):
  with enable_x64(True):
    zs = _zs(jax.random.key(7), dtype=jnp.float64)
    y = jnp.eye(5, dtype=jnp.float64) * 0.9 + 0.05
    f = obj.get_objective(name)
    check_grads(lambda zs: f(zs, y, obj.ObjectiveConfig()), (zs,), order=2, modes=["rev"],
                eps=1e-5)
    if name != "infonce":  # targets are differentiable (similarity mining)
      check_grads(lambda y: f(zs, y, obj.ObjectiveConfig()), (y,), order=1, modes=["rev"],
                  eps=1e-5)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_objectives_any_num_modalities(m):
  names = ["vision", "text", "audio", "depth"][:m]
  zs = _zs(jax.random.key(8), dims=tuple((n, 6) for n in names))
  y = jnp.eye(5)
  for name in obj.OBJECTIVES:
    val = obj.get_objective(name)(zs, y, obj.ObjectiveConfig())
    assert np.isfinite(float(val)), name
  assert obj.pairs_bind(names, "text") == [(n, "text") for n in names if n != "text"]
  assert len(obj.pairs_all(names)) == m * (m - 1) // 2


def test_hopa_switches_and_spectrum_entry():
  zs = _zs(jax.random.key(9))
  y = jnp.eye(5)
  full = obj.hopa(zs, y, obj.ObjectiveConfig())
  no_mod = obj.hopa(zs, y, obj.ObjectiveConfig(use_mod=False))
  no_inst = obj.hopa(zs, y, obj.ObjectiveConfig(use_inst=False))
  np.testing.assert_allclose(float(full), float(no_mod + no_inst), rtol=1e-5)
  p = px.proxy(zs)
  dsig = jax.grad(lambda s: obj.hopa_loss_from_spectrum(s, p.v, y))(p.sigma)
  assert np.all(np.asarray(dsig[:, 0]) < 0) and np.all(np.asarray(dsig[:, 1:]) > 0)


def test_unknown_names():
  with pytest.raises(ValueError, match="objective"):
    obj.get_objective("nope")
  with pytest.raises(ValueError, match="text"):
    obj.tbind(_zs(jax.random.key(0), dims=(("vision", 4), ("audio", 4))), jnp.eye(5))
  with pytest.raises(ValueError, match="similarity kind"):
    sim.init_similarity(jax.random.key(0), 4, "nope")


@pytest.mark.parametrize("kind", sim.KINDS)
def test_similarity_init_identity(kind):
  p = sim.init_similarity(jax.random.key(0), 7, kind, rank=3)
  np.testing.assert_array_equal(np.asarray(sim.full_matrix(p, 7, kind, 0.5)), np.eye(7))
  idx = jnp.array([4, 1, 6])
  np.testing.assert_array_equal(np.asarray(sim.batch_targets(p, idx, kind)), np.eye(3))


def test_similarity_lowrank_slice():
  p = sim.init_similarity(jax.random.key(0), 6, "lowrank", rank=2)
  p = dict(p, R=jax.random.normal(jax.random.key(1), (6, 2)), a=jnp.arange(6.0))
  full = sim.full_matrix(p, 6, "lowrank", 0.5)
  idx = jnp.array([5, 0, 3])
  np.testing.assert_allclose(np.asarray(sim.batch_targets(p, idx, "lowrank", 0.5)),
                             np.asarray(full)[np.ix_([5, 0, 3], [5, 0, 3])], rtol=1e-6)
  want = np.diag(np.arange(6.0)) + 0.25 * np.asarray(p["L"]) @ np.asarray(p["R"]).T
  np.testing.assert_allclose(np.asarray(full), want, rtol=1e-5, atol=1e-6)


def test_wbce_positives_from_identity_ignore_target_values():
  """pos_from='identity': an instance's own pair stays a positive even when mining
  drives its target below β (with 'targets' it would become a negative)."""
  from hopa_jax import objectives as O
  logits = jnp.array([[2.0, -1.0], [0.5, 1.0]])
  y = jnp.array([[-0.5, 0.0], [0.0, 1.0]])          # diagonal 0 pushed below β
  ell = -y * jax.nn.log_sigmoid(logits) - (1 - y) * jax.nn.log_sigmoid(-logits)
  eye = jnp.eye(2)
  want = 0.5 * (jnp.sum(ell * eye) / 2 + jnp.sum(ell * (1 - eye)) / 2)
  np.testing.assert_allclose(O.weighted_bce(logits, y, 0.5, "identity"), want, rtol=1e-6)
  pos = (y > 0.5).astype(jnp.float32)
  want_t = 0.5 * (jnp.sum(ell * pos) / 1 + jnp.sum(ell * (1 - pos)) / 3)
  np.testing.assert_allclose(O.weighted_bce(logits, y, 0.5, "targets"), want_t, rtol=1e-6)
  with pytest.raises(ValueError, match="pos_from"):
    O.weighted_bce(logits, y, 0.5, "bogus")


def test_infonce_soft_labels_reduce_to_integer_labels():
  from mmdd_jax import losses as L
  k1, k2 = jax.random.split(jax.random.key(0))
  za = jax.random.normal(k1, (5, 3))
  zb = jax.random.normal(k2, (5, 3))
  np.testing.assert_allclose(L.info_nce(za, zb, 0.1, jnp.eye(5)), L.info_nce(za, zb, 0.1),
                             rtol=1e-6)
  y = jnp.eye(5).at[0, 1].set(1.0).at[2, 2].set(-1.0)   # negatives clipped, rows normalised
  lab = np.asarray(L.soft_labels(y))
  np.testing.assert_allclose(lab.sum(1), [1, 1, 0, 1, 1], atol=1e-6)
  np.testing.assert_allclose(lab[0, :2], [0.5, 0.5])
