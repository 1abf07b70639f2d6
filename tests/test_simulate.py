"""Simulators: determinism, shapes, and that heads.npz reproduces the embeddings."""

import hashlib
import os

import jax.numpy as jnp
import numpy as np
import pytest

from embed import simulate, store
from mmdd_jax import heads


def _digest(root):
  h = hashlib.sha256()
  for dp, _, fs in sorted(os.walk(root)):
    for f in sorted(fs):
      if f != "manifest.json":
        h.update(open(os.path.join(dp, f), "rb").read())
  return h.hexdigest()


def test_deterministic(tmp_path):
  a = simulate.simulate("nyuv2_sim", str(tmp_path / "a"), scale=0.05, seed=0)
  b = simulate.simulate("nyuv2_sim", str(tmp_path / "b"), scale=0.05, seed=0)
  c = simulate.simulate("nyuv2_sim", str(tmp_path / "c"), scale=0.05, seed=1)
  assert _digest(a.root) == _digest(b.root)
  assert _digest(a.root) != _digest(c.root)
  assert a.manifest["files"] == b.manifest["files"]


@pytest.mark.parametrize("name", sorted(simulate.DATASETS))
def test_every_dataset_valid(tmp_path, name):
  spec = simulate.DATASETS[name]
  st = store.validate(simulate.simulate(name, str(tmp_path / name), scale=0.01).root)
  assert st.modalities == list(spec.modalities)
  for m in st.modalities:
    assert st.features("train", m).shape[1] == simulate.FEATURE_DIMS[m]
    assert st.embeddings("test", m).shape[1] == 1024
  assert (st.labels("train") is not None) == spec.has_labels


def test_full_scale_sizes():
  assert simulate.DATASETS["msrvtt_sim"].n_train == 9000
  assert simulate.DATASETS["msrvtt_sim"].n_test == 1000
  assert simulate.DATASETS["vggsound_s_sim"].n_test == 2000
  assert simulate.DATASETS["didemo_sim"].n_test == 1004
  assert simulate.DATASETS["vggs10k_sim"].num_classes == 10
  assert simulate.DATASETS["ave_sim"].num_classes == 28


def test_heads_reproduce_embeddings(tiny_store):
  p = heads.heads_from_npz(tiny_store.heads())
  for m in tiny_store.modalities:
    x = jnp.asarray(np.asarray(tiny_store.features("test", m)))
    e = heads.apply_head(p[m], x, modality=m)
    np.testing.assert_allclose(np.asarray(e), tiny_store.embeddings("test", m), atol=2e-4)


def test_cli(tmp_path, capsys):
  out = str(tmp_path / "s")
  assert simulate.main(["--dataset", "ave_sim", "--scale", "0.02", "--out", out]) == 0
  assert "modality audio (A)" in capsys.readouterr().out
  store.validate(out)


def test_bad_args(tmp_path):
  with pytest.raises(ValueError, match="unknown simulated dataset 'nope'"):
    simulate.simulate("nope", str(tmp_path))
  with pytest.raises(ValueError, match=r"scale: expected a value in \(0, 1\], found 2"):
    simulate.simulate("ave_sim", str(tmp_path), scale=2)
