"""Alignment losses (M = 2 and 3), DM and AVDD against NumPy; gradients; init; augmentation."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bindc_jax import distances
from bindc_jax import init as init_lib
from bindc_jax import augment as A
from bindc_jax import losses as L


def _unit(a):
  return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _batch(seed, mods, n, d=6):
  r = np.random.default_rng(seed)
  return {m: _unit(r.standard_normal((n, d)) + 0.5 * i).astype(np.float32)
          for i, m in enumerate(mods)}


def np_cos(a, b):
  return (a / np.linalg.norm(a, axis=-1, keepdims=True)) @ (b / np.linalg.norm(b, axis=-1, keepdims=True)).T


def np_cfd(x, y, t, alpha=0.5, beta=0.5):
  px, py = np.exp(1j * x @ t.T).mean(0), np.exp(1j * y @ t.T).mean(0)
  ax, ay = np.abs(px), np.abs(py)
  ph = 2 * (ax * ay - px.real * py.real - px.imag * py.imag)
  return np.mean(np.sqrt(alpha * (ax - ay) ** 2 + beta * np.maximum(ph, 1e-12)))


def np_bindc(real, syn, t, lam=(1.0, 10.0, 10.0), s=300.0):
  mods = sorted(real)
  uni = sum(np_cfd(real[m], syn[m], t) for m in mods)
  cross = joint = 0.0
  for a, b in itertools.combinations(mods, 2):
    cross += 1 - np_cos(real[a] * real[b], syn[a] * syn[b]).mean()
    ra, rb, sa, sb = real[a].mean(0), real[b].mean(0), syn[a].mean(0), syn[b].mean(0)
    joint += 1 - np_cos((ra * sb)[None], (rb * sa)[None])[0, 0]
  return lam[0] * s * uni + lam[1] * cross + lam[2] * joint, uni, cross, joint


def np_avdd(real, syn, li=10.0, lc=10.0):
  mods = sorted(real)
  mr = {m: real[m].mean(0) for m in mods}
  ms = {m: syn[m].mean(0) for m in mods}
  sq = lambda v: float((v ** 2).sum())
  dm = sum(sq(mr[m] - ms[m]) for m in mods)
  icm = sum(sq(mr[a] + mr[b] - ms[a] - ms[b]) for a, b in itertools.combinations(mods, 2))
  cgm = sum(sq(mr[a] + ms[b] - mr[b] - ms[a]) for a, b in itertools.combinations(mods, 2))
  return dm + li * icm + lc * cgm, dm


@pytest.mark.parametrize("mods", [("audio", "vision"), ("audio", "text", "vision")])
def test_bindc_loss_matches_numpy(key, mods):
  real, syn = _batch(0, mods, 20), _batch(1, mods, 4)
  t = distances.sample_frequencies(key, 32, 6)
  cfg = L.LossConfig()
  total, comps = jax.jit(L.bindc_loss, static_argnums=3)(real, syn, t, cfg)
  ref, uni, cross, joint = np_bindc(real, syn, np.asarray(t, np.float64))
  np.testing.assert_allclose(comps["uni"], uni, rtol=1e-4)
  np.testing.assert_allclose(comps["cross"], cross, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(comps["joint"], joint, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(total, ref, rtol=1e-4)
  # modality order of the dict does not matter
  rev = lambda d: {m: d[m] for m in reversed(list(d))}
  np.testing.assert_allclose(L.bindc_loss(rev(real), rev(syn), t, cfg)[0], total, rtol=1e-6)


@pytest.mark.parametrize("mods", [("audio", "vision"), ("audio", "text", "vision")])
def test_dm_and_avdd_match_numpy(mods):
  real, syn = _batch(2, mods, 15), _batch(3, mods, 3)
  ref, dm = np_avdd(real, syn)
  got, comps = L.avdd_loss(real, syn)
  np.testing.assert_allclose(got, ref, rtol=1e-4)
  np.testing.assert_allclose(L.dm_loss(real, syn), dm, rtol=1e-4)
  np.testing.assert_allclose(comps["dm"], dm, rtol=1e-4)


def test_switches_and_scale(key):
  mods = ("audio", "vision")
  real, syn = _batch(4, mods, 10), _batch(5, mods, 2)
  t = distances.sample_frequencies(key, 16, 6)
  base = L.LossConfig()
  _, c = L.bindc_loss(real, syn, t, base)
  for flag, keep in (("use_uni", ("cross", "joint")), ("use_cross", ("uni", "joint")),
                     ("use_joint", ("uni", "cross"))):
    import dataclasses
    cfg = dataclasses.replace(base, **{flag: False})
    tot, cc = L.bindc_loss(real, syn, t, cfg)
    lam = {"uni": base.lam_uni * base.uni_scale, "cross": base.lam_cross, "joint": base.lam_joint}
    np.testing.assert_allclose(tot, sum(lam[k] * c[k] for k in keep), rtol=1e-5)
  assert base.uni_scale == L.NCFM_SCALE == 300.0
  assert not L.LossConfig(use_uni=False).needs_frequencies()
  assert not L.LossConfig(distance="mmd").needs_frequencies()
  with pytest.raises(ValueError, match="at least 2 modalities"):
    L.cross_loss({"audio": real["audio"]}, {"audio": syn["audio"]})


def test_identical_sets_give_small_loss(key):
  mods = ("audio", "text", "vision")
  real = _batch(6, mods, 8)
  t = distances.sample_frequencies(key, 16, 6)
  tot, c = L.bindc_loss(real, real, t, L.LossConfig())
  assert float(c["joint"]) < 1e-5 and float(c["uni"]) < 1e-3
  assert float(L.avdd_loss(real, real)[0]) < 1e-10


def test_loss_grads_float64():
  with jax.enable_x64(True):
    r = np.random.default_rng(0)
    mods = ("audio", "text", "vision")
    real = {m: jnp.asarray(_unit(r.standard_normal((5, 3)))) for m in mods}
    syn = {m: jnp.asarray(r.standard_normal((2, 3))) for m in mods}
    t = jnp.asarray(r.standard_normal((4, 3)))
    cfg = L.LossConfig(uni_scale=1.0)
    for kind in ("bindc", "dm", "avdd"):
      import dataclasses
      c = dataclasses.replace(cfg, kind=kind)
      f = lambda s: L.class_loss(real, s, t, c)[0]
      check_grads(f, (syn,), order=1, modes=("rev",), eps=1e-6)


def test_herding_hand_made_case():
  # class mean (0, 0); herding first picks the point nearest the mean, then the point
  # that best cancels it, never the outlier.
  x = jnp.asarray([[0.1, 0.0], [5.0, 5.0], [-0.3, 0.0], [0.25, 0.0], [-5.05, -5.0]])
  mask = jnp.asarray([True] * 5)
  idx = np.asarray(init_lib.herding_indices(x, mask, 3))
  mu = np.asarray(x).mean(0)
  # brute-force greedy reference
  ref, tot = [], np.zeros(2)
  for k in range(3):
    d = [np.inf if i in ref else np.sum(((tot + np.asarray(x[i])) / (k + 1) - mu) ** 2)
         for i in range(5)]
    ref.append(int(np.argmin(d)))
    tot += np.asarray(x[ref[-1]])
  assert idx.tolist() == ref
  assert idx[0] == 0 and len(set(idx.tolist())) == 3


def test_herding_per_class_concat_and_padding():
  r = np.random.default_rng(0)
  labels = np.asarray([0, 1, 0, 1, 1, 0, 2])
  xs = {"audio": r.standard_normal((7, 3)).astype(np.float32),
        "vision": r.standard_normal((7, 2)).astype(np.float32)}
  xs_c, mask, rows = init_lib.group_by_class(xs, labels, 3)
  assert mask.sum(1).tolist() == [3, 3, 1]
  idx = np.asarray(init_lib.herding(xs_c, mask, 2))
  for c in range(3):
    cat = np.concatenate([xs_c["audio"][c], xs_c["vision"][c]], -1)
    ref = np.asarray(init_lib.herding_indices(jnp.asarray(cat), jnp.asarray(mask[c]), 2))
    assert idx[c].tolist() == ref.tolist()
    assert mask[c][idx[c]].all()                    # never a padding row (class 2 repeats)
  syn = init_lib.initialize("herding", jax.random.key(0), xs_c, mask, 2)
  np.testing.assert_array_equal(syn["audio"][0, 0], xs["audio"][rows[0, idx[0, 0]]])
  rnd = np.asarray(init_lib.random_indices(jax.random.key(1), mask, 3))
  assert sorted(rnd[0].tolist()) == [0, 1, 2] and mask[2][rnd[2]].all()
  nz = init_lib.initialize("noise", jax.random.key(2), xs_c, mask, 4)
  np.testing.assert_allclose(np.linalg.norm(nz["vision"], axis=-1), 1.0, rtol=1e-5)
  with pytest.raises(ValueError, match="empty classes"):
    init_lib.group_by_class(xs, labels, 4)


def test_siamese_augmentation_shares_the_draw(key):
  mods = ("audio", "vision")
  real = _batch(7, mods, 6)
  cfg = A.AugmentConfig(dropout=0.3, jitter=0.1, mixup=0.5)
  # the synthetic batch equal to the real one gets exactly the same transform
  ra, sa = A.siamese(key, real, real, cfg)
  for m in mods:
    np.testing.assert_array_equal(ra[m], sa[m])
    np.testing.assert_allclose(np.linalg.norm(ra[m], axis=-1), 1.0, rtol=1e-5)
  # shared dropout mask: the same dimensions are zeroed in both batches (before jitter)
  c2 = A.AugmentConfig(dropout=0.5, renormalize=False)
  syn = _batch(8, mods, 2)
  ra, sa = A.siamese(key, real, syn, c2)
  for m in mods:
    np.testing.assert_array_equal(np.all(ra[m] == 0, 0), np.all(sa[m] == 0, 0))
  # identity when disabled
  ri, si = A.siamese(key, real, syn, A.AugmentConfig())
  np.testing.assert_array_equal(ri["audio"], real["audio"])
  # differentiable in the synthetic batch
  g = jax.grad(lambda s: sum(jnp.sum(v) for v in A.siamese(key, real, s, cfg)[1].values()))(syn)
  assert all(np.isfinite(np.asarray(v)).all() for v in g.values())


def test_avdd_with_equal_lambdas_is_a_multiple_of_dm():
  """A property of SPEC's AVDD terms worth knowing (docs/results.md): by the
  parallelogram law ICM + CGM = 2·DM for two modalities, so with λ_icm = λ_cgm = λ
  AVDD = (1 + 2λ)·DM, and with normalised updates AVDD and DM distil the same set."""
  r = np.random.default_rng(0)
  real = {m: jnp.asarray(r.standard_normal((7, 5)), jnp.float32) for m in ("audio", "vision")}
  syn = {m: jnp.asarray(r.standard_normal((2, 5)), jnp.float32) for m in ("audio", "vision")}
  total, _ = L.avdd_loss(real, syn, 10.0, 10.0)
  np.testing.assert_allclose(total, 21.0 * L.dm_loss(real, syn), rtol=1e-5)
