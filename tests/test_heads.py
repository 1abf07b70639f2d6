"""The pure heads of :mod:`mmdd_jax.heads` against the Flax Linen module they replaced:
the same random initialisation (bit for bit) and the same forward pass."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmdd_jax import heads


class ImageBindHead(nn.Module):
  """LayerNorm → Dense(out_dim) → L2 normalise (the Linen module ``init_heads`` used to
  initialise through). ``normalize=False`` returns the pre-normalisation projection."""
  out_dim: int = 1024
  use_bias: bool = False
  normalize: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    # Explicit broadcasting (the tests run with jax_numpy_rank_promotion='raise',
    # which flax.linen.LayerNorm/Dense trip over); parameter names match Linen's.
    d = x.shape[-1]
    ln = self.param("LayerNorm_0", lambda k: {"scale": jnp.ones((d,)), "bias": jnp.zeros((d,))})
    dense_init = nn.initializers.lecun_normal()

    def init_dense(k):
      p = {"kernel": dense_init(k, (d, self.out_dim))}
      if self.use_bias:
        p["bias"] = jnp.zeros((self.out_dim,))
      return p

    dense = self.param("Dense_0", init_dense)
    mu = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), -1, keepdims=True)
    y = (x - mu) * jax.lax.rsqrt(var + heads.LN_EPS)
    y = y * ln["scale"].reshape(1, -1) + ln["bias"].reshape(1, -1)
    y = y @ dense["kernel"]
    if self.use_bias:
      y = y + dense["bias"].reshape(1, -1)
    return heads.l2_normalize(y) if self.normalize else y


def _linen_heads(key, dims, out_dim):
  return {m: ImageBindHead(out_dim=out_dim).init(jax.random.fold_in(key, i),
                                                 jnp.zeros((1, d), jnp.float32))["params"]
          for i, (m, d) in enumerate(sorted(dims.items()))}


def test_init_heads_equals_the_linen_module_init():
  dims = {"vision": 6, "depth": 5, "audio": 3}
  for key in (jax.random.key(0), jax.random.key(7), jax.random.PRNGKey(3)):
    p = heads.init_heads(key, dims, out_dim=4)
    ref = _linen_heads(key, dims, 4)
    assert jax.tree_util.tree_structure(p) == jax.tree_util.tree_structure(ref)
    for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(ref)):
      assert a.dtype == b.dtype
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_apply_head_equals_the_linen_module():
  key = jax.random.key(1)
  x = jax.random.normal(jax.random.key(2), (7, 6))
  for use_bias in (False, True):
    mod = ImageBindHead(out_dim=4, use_bias=use_bias)
    p = mod.init(key, x)["params"]
    p = jax.tree_util.tree_map(lambda a: a + 0.1 * jax.random.normal(key, a.shape), p)
    for normalize in (True, False):
      want = ImageBindHead(out_dim=4, use_bias=use_bias, normalize=normalize).apply(
          {"params": p}, x)
      np.testing.assert_allclose(np.asarray(heads.apply_head(p, x, normalize=normalize)),
                                 np.asarray(want), rtol=1e-6, atol=1e-6)
