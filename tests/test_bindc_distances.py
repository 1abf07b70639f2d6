"""CFD / MMD / mean matching: properties, NumPy references, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bindc_jax import distances as D


def np_cfd(x, y, t, alpha=0.5, beta=0.5):
  """Direct NumPy evaluation of SPEC §4's formula (complex arithmetic)."""
  phi_x = np.exp(1j * x @ t.T).mean(0)
  phi_y = np.exp(1j * y @ t.T).mean(0)
  ax, ay = np.abs(phi_x), np.abs(phi_y)
  phase = 2 * (ax * ay - phi_x.real * phi_y.real - phi_x.imag * phi_y.imag)
  return np.mean(np.sqrt(alpha * (ax - ay) ** 2 + beta * np.maximum(phase, 1e-12)))


def _sets(seed=0, n=40, m=7, d=5):
  r = np.random.default_rng(seed)
  return (r.standard_normal((n, d)).astype(np.float32),
          (0.5 * r.standard_normal((m, d)) + 0.3).astype(np.float32))


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.5), (1.0, 0.0), (0.2, 0.9)])
def test_cfd_matches_numpy(key, alpha, beta):
  x, y = _sets()
  t = D.sample_frequencies(key, 64, x.shape[1])
  cfg = D.DistanceConfig(alpha=alpha, beta=beta)
  got = jax.jit(D.cfd, static_argnums=3)(x, y, t, cfg)
  np.testing.assert_allclose(got, np_cfd(x, y, np.asarray(t, np.float64), alpha, beta),
                             rtol=1e-4, atol=1e-6)


def test_cfd_zero_symmetric_nonnegative(key):
  x, y = _sets(1)
  t = D.sample_frequencies(key, 128, x.shape[1], scale=0.7)
  cfg = D.DistanceConfig()
  assert float(D.cfd(x, x, t, cfg)) < 1e-3          # float32 rounding of the phase term
  with jax.enable_x64(True):                        # exactly sqrt(β·1e-12) from the clamp
    x64 = jnp.asarray(x, jnp.float64)
    v = D.cfd(x64, x64, jnp.asarray(t, jnp.float64), cfg)
    np.testing.assert_allclose(v, np.sqrt(0.5e-12), rtol=1e-3)
  np.testing.assert_allclose(D.cfd(x, y, t, cfg), D.cfd(y, x, t, cfg), rtol=1e-6)
  assert float(D.cfd(x, y, t, cfg)) > 1e-2
  for s in range(5):
    a, b = _sets(10 + s, n=9, m=3)
    assert float(D.cfd(a, b, t, cfg)) >= 0.0
  # permutation invariance within a set
  np.testing.assert_allclose(D.cfd(x[::-1], y, t, cfg), D.cfd(x, y, t, cfg), rtol=1e-5)


def test_cfd_separates_equal_means_different_variances(key):
  r = np.random.default_rng(0)
  z = r.standard_normal((2000, 4)).astype(np.float32)
  z = (z - z.mean(0)) / z.std(0)        # exactly zero mean
  a, b = 0.3 * z, 1.5 * z
  t = D.sample_frequencies(key, 256, 4)
  assert float(D.mean_matching(a, b)) < 1e-10
  assert float(D.cfd(a, b, t)) > 0.1
  assert float(D.mmd(a, b)) > 1e-2


def test_cfd_requires_frequencies():
  x, y = _sets()
  with pytest.raises(ValueError, match="'t'"):
    D.cfd(x, y, None)


def np_mmd(x, y, h):
  k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / h)
  return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def test_mmd_matches_numpy_fixed_and_median():
  x, y = _sets(2)
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  np.testing.assert_allclose(D.mmd(x, y, None, D.DistanceConfig(bandwidth=1.5)),
                             np_mmd(x64, y64, 2 * 1.5 ** 2), rtol=1e-4, atol=1e-6)
  z = np.concatenate([x64, y64])
  d = ((z[:, None] - z[None]) ** 2).sum(-1)
  h = np.median(d[~np.eye(len(z), dtype=bool)])
  np.testing.assert_allclose(D.mmd(x, y, None, D.DistanceConfig()), np_mmd(x64, y64, h),
                             rtol=1e-4, atol=1e-6)
  assert abs(float(D.mmd(x, x))) < 1e-5


def test_mean_matching_and_registry(key):
  x, y = _sets(3)
  np.testing.assert_allclose(D.mean_matching(x, y), ((x.mean(0) - y.mean(0)) ** 2).sum(),
                             rtol=1e-5)
  t = D.sample_frequencies(key, 16, x.shape[1])
  for name in D.DISTANCES:
    v = D.distance(x, y, t, D.DistanceConfig(), name)
    assert np.isfinite(float(v))
  with pytest.raises(ValueError, match="distance"):
    D.get_distance("wasserstein")


def test_frequencies_depend_only_on_key(key):
  a = D.sample_frequencies(key, 8, 3, scale=2.0)
  b = D.sample_frequencies(key, 8, 3, scale=2.0)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (8, 3)


def test_grads_float64():
  with jax.enable_x64(True):
    r = np.random.default_rng(0)
    x = jnp.asarray(r.standard_normal((6, 3)))
    y = jnp.asarray(r.standard_normal((4, 3)) * 0.5)
    t = jnp.asarray(r.standard_normal((5, 3)))
    cfg = D.DistanceConfig(bandwidth=1.0)
    check_grads(lambda s: D.cfd(x, s, t, cfg), (y,), order=1, modes=("rev",), eps=1e-6)
    check_grads(lambda s: D.mmd(x, s, None, cfg), (y,), order=1, modes=("rev",))
    check_grads(lambda s: D.mmd(x, s, None, D.DistanceConfig()), (y,), order=1, modes=("rev",))
    check_grads(lambda s: D.mean_matching(x, s), (y,), order=1, modes=("rev",))


def test_cfd_gradient_finite_for_identical_and_single_point(key):
  x, _ = _sets()
  t = D.sample_frequencies(key, 32, x.shape[1])
  g = jax.grad(lambda s: D.cfd(x, s, t))(x)
  assert np.isfinite(np.asarray(g)).all()
  g1 = jax.grad(lambda s: D.cfd(x, s, t))(x[:1])
  assert np.isfinite(np.asarray(g1)).all()
  g0 = jax.grad(lambda s: D.cfd(x, s, t))(jnp.zeros_like(x[:2]))
  assert np.isfinite(np.asarray(g0)).all()


def np_class_cf(x, mask, t):
  """NumPy reference: complex mean of exp(i tᵀx) over each class's valid rows."""
  out = []
  for xc, mc in zip(x, mask):
    out.append(np.exp(1j * xc[mc] @ t.T).mean(0) if mc.any() else np.zeros(len(t), complex))
  return np.stack(out)


@pytest.mark.parametrize("chunk", [1, 5, 256])
def test_class_characteristic_functions_match_numpy(key, chunk):
  r = np.random.default_rng(4)
  x = r.standard_normal((3, 12, 5)).astype(np.float32)
  mask = np.ones((3, 12), bool)
  mask[1, 7:] = False                     # a short class (padded rows must not count)
  mask[2, :] = False                      # an empty class gives 0
  t = D.sample_frequencies(key, 32, 5)
  re, im = jax.jit(D.class_characteristic_functions, static_argnums=3)(x, mask, t, chunk)
  ref = np_class_cf(x.astype(np.float64), mask, np.asarray(t, np.float64))
  np.testing.assert_allclose(re, ref.real, atol=2e-6)
  np.testing.assert_allclose(im, ref.imag, atol=2e-6)


def test_cfd_from_stats_equals_cfd(key):
  x, y = _sets(5)
  t = D.sample_frequencies(key, 64, x.shape[1])
  for cfg in (D.DistanceConfig(), D.DistanceConfig(alpha=0.2, beta=0.9)):
    re, im = D.class_characteristic_functions(x[None], np.ones((1, len(x)), bool), t)
    got = D.cfd_from_stats((re[0], im[0]), y, t, cfg)
    np.testing.assert_allclose(got, D.cfd(x, y, t, cfg), rtol=1e-5)
    np.testing.assert_allclose(D.cfd_from_stats(D.characteristic_function(x, t), y, t, cfg),
                               D.cfd(x, y, t, cfg), rtol=1e-6)
  with pytest.raises(ValueError, match="'t'"):
    D.cfd_from_stats((re[0], im[0]), y, None)


def test_cfd_from_stats_grads_float64():
  with jax.enable_x64(True):
    r = np.random.default_rng(1)
    x = jnp.asarray(r.standard_normal((6, 3)))
    y = jnp.asarray(r.standard_normal((4, 3)) * 0.5)
    t = jnp.asarray(r.standard_normal((5, 3)))
    cf = D.characteristic_function(x, t)
    check_grads(lambda s: D.cfd_from_stats(cf, s, t), (y,), order=1, modes=("rev",), eps=1e-6)
    np.testing.assert_allclose(jax.grad(lambda s: D.cfd_from_stats(cf, s, t))(y),
                               jax.grad(lambda s: D.cfd(x, s, t))(y), rtol=1e-10)
