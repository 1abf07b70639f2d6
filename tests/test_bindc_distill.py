"""Distillation loop: vmapped step vs per-class loop, unit sphere, resume (through the
shared loop driver), pooled CFD."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bindc_jax import augment as A
from bindc_jax import distances
from bindc_jax import init as init_lib
from bindc_jax import distill as D
from bindc_jax import losses as L
from mmdd_jax import results


def _data(seed=0, C=3, mods=("audio", "vision"), d=8, n=12):
  r = np.random.default_rng(seed)
  labels = np.concatenate([np.arange(C), r.integers(0, C, n * C - C)])
  xs = {m: r.standard_normal((len(labels), d)).astype(np.float32) for m in mods}
  xs = {m: v / np.linalg.norm(v, axis=-1, keepdims=True) for m, v in xs.items()}
  xs_c, mask, _ = init_lib.group_by_class(xs, labels, C)
  return xs_c, mask


def _cfg(**kw):
  lc = L.LossConfig(dist=distances.DistanceConfig(num_freqs=16), **kw.pop("loss", {}))
  return D.DistillConfig(loss=lc, iterations=kw.pop("iterations", 6),
                         real_batch=kw.pop("real_batch", 8),
                         syn_batch=kw.pop("syn_batch", 32), **kw)


def test_vmapped_loss_equals_per_class_loop(key):
  xs_c, mask = _data(mods=("audio", "text", "vision"))
  syn = init_lib.initialize("random", key, xs_c, mask, 2)
  cfg = _cfg()
  loss_fn = D.make_loss(cfg, 8)
  k = jax.random.key(3)
  total, aux = loss_fn(syn, (xs_c, jnp.asarray(mask)), k)
  # the same draws, class by class
  k_t, k_c = jax.random.split(k)
  t = distances.sample_frequencies(k_t, 16, 8)
  keys = jax.random.split(k_c, mask.shape[0])
  ref = 0.0
  for c in range(mask.shape[0]):
    kr, _, _ = jax.random.split(keys[c], 3)
    ridx = D.sample_rows(kr, jnp.asarray(mask[c]), 8)
    real = {m: jnp.asarray(v[c])[ridx] for m, v in xs_c.items()}
    ref += float(L.bindc_loss(real, {m: v[c] for m, v in syn.items()}, t, cfg.loss)[0])
  np.testing.assert_allclose(total, ref, rtol=1e-4)


@pytest.mark.parametrize("method", ["bindc", "dm", "avdd", "mmd", "bindc_no_uni"])
def test_steps_keep_sphere_and_finite(key, method):
  xs_c, mask = _data()
  syn0 = init_lib.initialize("herding", key, xs_c, mask, 3)
  cfg = dataclasses.replace(_cfg(syn_batch=2), loss=D.method_loss_config(
      method, L.LossConfig(dist=distances.DistanceConfig(num_freqs=16))))
  state = D.distill(D.init_state(syn0, cfg), xs_c, mask, cfg, key, log_every=3, progress=False)
  syn = D.synthetic(state)
  assert int(state.step) == 6
  for m, v in syn.items():
    assert v.shape == (3, 3, 8) and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, rtol=1e-5)
    assert not np.allclose(v, syn0[m])


@pytest.mark.parametrize("cfd_real", ["sampled", "pooled"])
def test_resume_is_bit_identical(key, tmp_path, cfd_real):
  xs_c, mask = _data(1)
  syn0 = init_lib.initialize("herding", key, xs_c, mask, 2)
  if cfd_real == "sampled":
    cfg = _cfg(iterations=8, augment=A.AugmentConfig(dropout=0.2, jitter=0.05, mixup=0.3))
  else:   # pool period 3 straddles the checkpoint at step 4
    cfg = _cfg(iterations=8, cfd_real="pooled", cfd_pool_every=3)
  s1 = D.distill(D.init_state(syn0, cfg), xs_c, mask, cfg, key, log_every=2, progress=False)
  straight = D.synthetic(s1)
  ck = str(tmp_path / "ck")
  m = results.MetricsWriter(str(tmp_path))
  kw = dict(log_every=2, ckpt_dir=ck, ckpt_every=4, metrics=m, progress=False)
  sp = D.distill(D.init_state(syn0, cfg), xs_c, mask, cfg, key, stop_at=4, **kw)
  part = D.synthetic(sp)
  assert int(sp.step) == 4
  # killed after logging step 6, before the next checkpoint (8): resume restores 4
  D.distill(D.init_state(syn0, cfg), xs_c, mask, cfg, key, stop_at=6, **kw)
  s2 = D.distill(D.init_state(syn0, cfg), xs_c, mask, cfg, key, **kw)
  resumed = D.synthetic(s2)
  assert int(s2.step) == 8
  assert [r["step"] for r in m.records()] == [2, 4, 6, 8]
  assert {r["stage"] for r in m.records()} == {"distill"}
  for m in straight:
    np.testing.assert_array_equal(straight[m], resumed[m])
  jax.tree_util.tree_map(np.testing.assert_array_equal, s1.opt_state, s2.opt_state)
  jax.tree_util.tree_map(np.testing.assert_array_equal, s1.cfd_pool, s2.cfd_pool)


def test_nan_is_a_hard_error(key):
  xs_c, mask = _data()
  syn0 = init_lib.initialize("herding", key, xs_c, mask, 1)
  cfg = _cfg(lr=float("nan"), loss=dict(kind="dm"))
  with pytest.raises(FloatingPointError, match="non-finite"):
    D.distill(D.init_state(syn0, cfg), xs_c, mask, cfg, key, log_every=3, progress=False)


def test_methods_registry():
  assert D.method_loss_config("random") is None
  assert D.method_loss_config("cfd_only").use_cross is False
  assert D.method_loss_config("mmd").distance == "mmd"
  with pytest.raises(ValueError, match="method"):
    D.method_loss_config("nope")


def test_three_modalities_on_msrvtt(tiny_store, key):
  from mmdd_jax import data
  tr = data.load_split(tiny_store, "train", "embeddings")
  assert len(tr) == 3
  xs_c, mask, _ = init_lib.group_by_class(tr, np.asarray(tiny_store.labels("train")),
                                          tiny_store.num_classes)
  syn0 = init_lib.initialize("herding", key, xs_c, mask, 1)
  cfg = _cfg(iterations=2)
  syn = D.synthetic(D.distill(D.init_state(syn0, cfg), xs_c, mask, cfg, key, log_every=2,
                              progress=False))
  assert set(syn) == {"audio", "text", "vision"} and np.isfinite(syn["text"]).all()


def _equal_classes(C=3, n=10, d=8, mods=("audio", "vision")):
  """Every class has exactly n rows, so a real batch of n is a permutation of the class."""
  r = np.random.default_rng(7)
  labels = np.repeat(np.arange(C), n)
  xs = {m: r.standard_normal((C * n, d)).astype(np.float32) for m in mods}
  xs = {m: v / np.linalg.norm(v, axis=-1, keepdims=True) for m, v in xs.items()}
  xs_c, mask, _ = init_lib.group_by_class(xs, labels, C)
  return xs_c, jnp.asarray(mask)


def test_pooled_loss_equals_sampled_on_the_full_class(key):
  """Pool = the step's sampled frequencies and real batch = the whole class: the pooled
  loss and its gradient w.r.t. the synthetic set equal the per-step (sampled) ones."""
  xs_c, mask = _equal_classes()
  syn = init_lib.initialize("random", key, xs_c, np.asarray(mask), 2)
  data = (xs_c, mask)
  k = jax.random.key(5)
  sampled = D.make_loss(_cfg(real_batch=10), 10)
  pooled_cfg = _cfg(real_batch=10, cfd_real="pooled", cfd_pool_every=1)
  pooled = D.make_loss(pooled_cfg, 10)
  t = distances.sample_frequencies(jax.random.split(k)[0], 16, 8)     # the sampled mode's draw
  cf = {m: distances.class_characteristic_functions(v, mask, t) for m, v in xs_c.items()}
  pool = {"index": jnp.asarray(0, jnp.int32), "t": t, "cf": cf}
  (ls, auxs), gs = jax.value_and_grad(sampled, has_aux=True)(syn, data, k)
  (lp, auxp), gp = jax.value_and_grad(pooled, has_aux=True)(syn, data, k, pool)
  np.testing.assert_allclose(lp, ls, rtol=1e-5)
  for c in ("uni", "cross", "joint"):
    np.testing.assert_allclose(auxp[c], auxs[c], rtol=1e-5)
  for m in gs:
    assert np.isfinite(np.asarray(gp[m])).all()
    np.testing.assert_allclose(gp[m], gs[m], rtol=1e-4, atol=1e-4 * float(jnp.abs(gs[m]).max()))
  # the pool a step builds: frequencies from pool_key(base_key, step // K), real CFs of all rows
  p1 = D.refresh_pool(D.init_state(syn, pooled_cfg).cfd_pool, jnp.asarray(3), data, k,
                      dataclasses.replace(pooled_cfg, cfd_pool_every=2))
  assert int(p1["index"]) == 1
  t1 = distances.sample_frequencies(D.pool_key(k, 1), 16, 8)
  np.testing.assert_array_equal(p1["t"], t1)
  for m, v in xs_c.items():
    ref = distances.characteristic_function(jnp.asarray(v).reshape(-1, 8)[:10], t1)
    np.testing.assert_allclose(p1["cf"][m][0][0], ref[0], atol=1e-6)
  # same index: the pool is kept as it is (no real-side evaluation)
  p2 = D.refresh_pool(p1, jnp.asarray(2), data, jax.random.key(9),
                      dataclasses.replace(pooled_cfg, cfd_pool_every=2))
  np.testing.assert_array_equal(p2["t"], t1)


def test_pooled_distill_smoke_and_options(key):
  xs_c, mask = _data()
  syn0 = init_lib.initialize("herding", key, xs_c, mask, 3)
  cfg = _cfg(syn_batch=2, iterations=7, cfd_real="pooled", cfd_pool_every=3)
  state = D.distill(D.init_state(syn0, cfg), xs_c, mask, cfg, key, log_every=3, progress=False)
  syn = D.synthetic(state)
  assert int(state.step) == 7 and int(state.cfd_pool["index"]) == 2   # steps 6 // 3
  for m, v in syn.items():
    assert v.shape == (3, 3, 8) and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, rtol=1e-5)
    assert not np.allclose(v, syn0[m])
  # methods without CFD ignore the option; augmentation and bad values are errors
  dm = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, kind="dm"))
  assert D.distill(D.init_state(syn0, dm), xs_c, mask, dm, key, progress=False).cfd_pool is None
  with pytest.raises(ValueError, match="augment.dropout"):
    D.make_step(dataclasses.replace(cfg, augment=A.AugmentConfig(jitter=0.1)), 8)
  with pytest.raises(ValueError, match="cfd_real"):
    D.make_step(dataclasses.replace(cfg, cfd_real="cached"), 8)
  with pytest.raises(ValueError, match="cfd_pool_every"):
    D.make_step(dataclasses.replace(cfg, cfd_pool_every=0), 8)
