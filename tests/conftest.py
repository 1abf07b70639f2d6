"""Strict test numerics (equinox / neural-tangents style).

* ``jax_numpy_rank_promotion='raise'``: implicit rank broadcasting is an error.
* four fake CPU devices, so sharding code paths run on CI's CPU.
* float64 is *not* enabled globally; gradient checks enable it locally with
  ``jax.experimental.enable_x64``.
* one persistent XLA compilation cache for the whole test run (both xdist workers and
  every subprocess a test starts inherit it through the environment): the suite compiles
  the same tiny programs many times (binaries, notebooks, the demo at ``local=1``); a
  cache hit runs the executable XLA compiled, so results are unchanged (the golden
  test, tests/test_plan_golden.py, checks bits). Set ``JAX_COMPILATION_CACHE_DIR`` to
  choose the directory, or to '' to switch it off.
"""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"mmdd-jax-test-xla-cache-{os.getuid()}"))
if os.environ["JAX_COMPILATION_CACHE_DIR"]:
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

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
