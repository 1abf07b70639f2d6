"""Strict test numerics (equinox / neural-tangents style).

* ``jax_numpy_rank_promotion='raise'``: implicit rank broadcasting is an error.
* four fake CPU devices, so sharding code paths run on CI's CPU.
* float64 is *not* enabled globally; gradient checks enable it locally with
  ``jax.experimental.enable_x64``.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
  return jax.random.key(0)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
  """A tiny simulated 3-modality retrieval store (msrvtt_sim at a small scale)."""
  from embed import simulate
  d = tmp_path_factory.mktemp("stores") / "msrvtt_tiny"
  return simulate.simulate("msrvtt_sim", str(d), scale=0.02, seed=0)


@pytest.fixture(scope="session")
def tiny_cls_store(tmp_path_factory):
  """A tiny simulated 2-modality classification store (vggs10k_sim)."""
  from embed import simulate
  d = tmp_path_factory.mktemp("stores") / "vggs10k_tiny"
  return simulate.simulate("vggs10k_sim", str(d), scale=0.02, seed=0)
