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
