"""Trajectory-bound study (hopa_jax.bound): Lemma 1 and Theorem 1 on tiny problems."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hopa_jax import bound
from hopa_jax import objectives as obj_lib
from mmdd_jax import heads

DIMS = {"vision": 5, "audio": 4, "text": 3}
ETA = 0.1
STEPS = 3


def _problem(seed, n_real=10, n_syn=4, out_dim=4, noise=0.3, dtype=jnp.float64):
  key = jax.random.key(seed)
  p0 = heads.init_heads(key, DIMS, out_dim=out_dim)
  p0 = jax.tree_util.tree_map(lambda a: a.astype(dtype), p0)
  real = {m: jax.random.normal(jax.random.fold_in(key, 10 + i), (n_real, d), dtype)
          for i, (m, d) in enumerate(DIMS.items())}
  syn = {m: v[:n_syn] + noise * jax.random.normal(jax.random.fold_in(key, 50 + i),
                                                  (n_syn, v.shape[1]), dtype)
         for i, (m, v) in enumerate(real.items())}
  return key, p0, real, syn


def _student_path(objective, p0, syn, targets, eta, steps):
  loss = bound.make_loss(objective)
  g = jax.jit(jax.grad(lambda p: loss(p, syn, targets)))
  path, th = [], p0
  for _ in range(steps):
    path.append(th)
    th = jax.tree_util.tree_map(lambda a, b: a - eta * b, th, g(th))
  return path


def test_lemma1_rhs_by_hand():
  m = jnp.array([1.0, 2.0, 3.0])
  # η(1+ηL)^2·1 + η(1+ηL)·2 + η·3 with η = 0.5, L = 2 → 0.5·4 + 0.5·2·2 + 0.5·3
  assert float(bound.lemma1_rhs(m, 0.5, 2.0)) == pytest.approx(2.0 + 2.0 + 1.5)


@pytest.mark.parametrize("seed,objective", [(0, "hopa"), (1, "3pair"), (2, "infonce")])
def test_endpoint_gap_never_exceeds_bound(seed, objective):
  """Lemma 1 with L from the exact Hessian (jax.hessian of the flat params) along the
  student path; the power iteration on HVPs agrees with the exact top |eigenvalue|."""
  with jax.enable_x64(True):
    key, p0, real, syn = _problem(seed)
    targets = jnp.eye(4, dtype=jnp.float64)
    study = bound.make_study(objective, eta=ETA, steps=STEPS, power_iters=300, power_tol=1e-12,
                             sensitivities=False)
    tr = study(p0, real, syn, targets, key)
    s = bound.summarize(tr, ETA)
    # L from the exact Hessian along the student path; power iteration agrees.
    loss = bound.make_loss(objective)
    exact = jax.jit(lambda p: bound.exact_hessian_norm(
        lambda q: loss(q, real, jnp.eye(10, dtype=jnp.float64)), p))
    l_exact = np.array([float(exact(p)) for p in _student_path(objective, p0, syn, targets,
                                                               ETA, STEPS)])
    np.testing.assert_allclose(np.asarray(tr.lipschitz), l_exact, rtol=1e-6)
    gap = float(tr.gap[-1])
    assert gap > 0
    assert gap <= float(bound.lemma1_rhs(tr.mismatch, ETA, l_exact.max()))
    assert s["held"] and s["held_secant"] and s["ratio"] >= 1.0
    assert s["L"] >= s["L_secant"]
    # the block norm stacks the branches
    stacked = np.sqrt(sum(np.asarray(v) ** 2 for v in tr.mismatch_branch.values()))
    np.testing.assert_allclose(np.asarray(tr.mismatch), stacked, rtol=1e-12)


def test_identical_data_gives_zero_mismatch_and_gap():
  key, p0, real, _ = _problem(5, dtype=jnp.float32)
  study = bound.make_study("3pair", eta=ETA, steps=2, power_iters=5, sensitivities=False)
  tr = study(p0, real, real, jnp.eye(10, dtype=jnp.float32), key)
  assert float(jnp.max(tr.mismatch)) == 0.0 and float(jnp.max(tr.gap)) == 0.0
  s = bound.summarize(tr, ETA)
  assert s["bound"] == 0.0 and s["held"]


def _embeddings(seed, b=6, m=3, d=8, dtype=jnp.float32):
  z = jax.random.normal(jax.random.key(seed), (b, m, d), dtype)
  z = z + 1.5 * jax.random.normal(jax.random.key(seed + 100), (b, 1, d), dtype)  # shared part
  z = heads.l2_normalize(z)
  return {name: z[:, j] for j, name in enumerate(["vision", "audio", "text"][:m])}


def test_svd_factors_reconstruct():
  zs = _embeddings(0)
  sigma, a, vt = bound.svd_factors(zs)
  z = jnp.stack(list(zs.values()), 1)
  np.testing.assert_allclose(jnp.einsum("bmk,bk,bkd->bmd", a, sigma, vt), z, atol=1e-5)
  np.testing.assert_allclose(jnp.einsum("bkd,bld->bkl", vt, vt),
                             jnp.broadcast_to(jnp.eye(3), (6, 3, 3)), atol=1e-4)


@pytest.mark.parametrize("x64", [False, True])
def test_hopa_principal_part_is_single_mode(x64):
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    zs = _embeddings(1, dtype=dtype)
    y = jnp.eye(6, dtype=dtype)
    cfg = obj_lib.ObjectiveConfig()
    sens = lambda f: jax.jit(functools.partial(  # noqa: E731
        bound.spectral_sensitivities, functools.partial(f, cfg=cfg)))(zs, y)
    s_hopa = sens(bound.hopa_principal)
    s_pair = sens(obj_lib.three_pair)
    eps = 1e-12 if x64 else 1e-5
    lead = float(jnp.max(jnp.abs(s_hopa[:, 0])))
    assert lead == pytest.approx(1.0 / (cfg.tau_mod * 6), rel=1e-4)   # −σ_1/τ, mean over B
    assert float(jnp.max(jnp.abs(s_hopa[:, 1:]))) <= eps * lead
    assert float(jnp.min(jnp.max(jnp.abs(s_pair[:, 1:]), axis=1))) > 1e-3
    # every pairwise objective is full-spectrum
    for name in ("tbind", "vbind", "infonce"):
      s = sens(obj_lib.get_objective(name))
      assert float(jnp.max(jnp.abs(s[:, 1:]))) > 1e-3, name


def test_full_hopa_sensitivity_is_the_softmax_denominator():
  # L_inst depends on Z only through v_1, so ∂L/∂σ_k = (softmax_k − δ_k1)/(τ·B).
  with jax.enable_x64(True):
    zs = _embeddings(2, dtype=jnp.float64)
    cfg = obj_lib.ObjectiveConfig()
    s = bound.spectral_sensitivities(functools.partial(obj_lib.hopa, cfg=cfg), zs,
                                     jnp.eye(6, dtype=jnp.float64))
    sigma, _, _ = bound.svd_factors(zs)
    expected = (jax.nn.softmax(sigma / cfg.tau_mod, -1) - jnp.eye(3)[0][None, :]) / (cfg.tau_mod * 6)
    np.testing.assert_allclose(s, expected, atol=1e-12)


def test_pairwise_cosine_sum_closed_form():
  with jax.enable_x64(True):
    zs = _embeddings(3, dtype=jnp.float64)
    s = bound.spectral_sensitivities(bound.pairwise_cosine_sum, zs, jnp.eye(6))
    np.testing.assert_allclose(s, bound.pairwise_cosine_sum_sensitivity(zs), atol=1e-12)
    assert float(jnp.min(jnp.abs(s[:, 1]))) > 1e-6
