import jax
import jax.numpy as jnp
import numpy as np

from mmdd_jax import sharding


def test_leading_axis_sharded_over_fake_devices():
  assert jax.device_count() == 4  # conftest's fake CPU devices
  x = sharding.shard_leading({"a": jnp.arange(8.0).reshape(4, 2), "b": jnp.ones((3, 2))})
  assert len(x["a"].sharding.device_set) == 4 and x["a"].sharding.spec[0] == sharding.AXIS
  assert x["b"].sharding.is_fully_replicated  # 3 does not divide over 4 devices
  f = jax.jit(jax.vmap(lambda r: jnp.sum(r ** 2)))
  np.testing.assert_allclose(f(x["a"]), np.sum(np.arange(8.0).reshape(4, 2) ** 2, 1))


def test_bindc_distill_sharded_over_classes_matches_unsharded(key):
  """4 classes over 4 fake devices (class axis sharded) give the same synthetic set as
  the same run placed on one device."""
  from bindc_jax import distill as D
  from mmdd_jax import sharding as sh
  rng = np.random.default_rng(0)
  xs = {m: rng.normal(size=(4, 12, 8)).astype(np.float32) for m in ("audio", "vision")}
  xs = {m: v / np.linalg.norm(v, axis=-1, keepdims=True) for m, v in xs.items()}
  mask = np.ones((4, 12), bool)
  syn0 = {m: jnp.asarray(v[:, :2]) for m, v in xs.items()}
  cfg = D.DistillConfig(iterations=3, real_batch=8, syn_batch=2, loss=D.method_loss_config("dm"))
  state = D.distill(D.init_state(syn0, cfg), xs, mask, cfg, key, progress=False)
  a = D.synthetic(state)
  assert len(state.syn["audio"].sharding.device_set) == 4  # really sharded
  one = sh.mesh(jax.devices()[:1])
  orig = sh.mesh
  try:
    sh.mesh = lambda devices=None: one
    state1 = D.distill(D.init_state(syn0, cfg), xs, mask, cfg, key, progress=False)
    b = D.synthetic(state1)
    assert len(state1.syn["audio"].sharding.device_set) == 1
  finally:
    sh.mesh = orig
  for m in a:
    np.testing.assert_allclose(a[m], b[m], rtol=1e-5, atol=1e-6)
