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
    e = heads.apply_head(p[m], x)
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


# --- v2 classification simulators (issue 11) -------------------------------------------

def test_v1_digests_and_retrieval_specs_unchanged():
  """Cache names keep their digest: the retrieval specs and the v1 classification specs
  hash exactly as before the v2 fields existed."""
  want = {"msrvtt_sim": "9d935a57", "vggsound_s_sim": "3915a538", "didemo_sim": "42a8426d"}
  for name, d in want.items():
    assert simulate.DATASETS[name].version == 1
    assert simulate.spec_digest(simulate.DATASETS[name]) == d
  want_v1 = {"ave_sim": "b395263b", "vggs10k_sim": "593e8064", "nyuv2_sim": "168f833e"}
  for name, d in want_v1.items():
    assert simulate.spec_digest(simulate.DATASETS_V1[name]) == d
    assert simulate.DATASETS[name].version == 2
    assert simulate.spec_digest(simulate.DATASETS[name]) != d


def test_v1_store_still_written_and_read(tmp_path):
  st = store.validate(simulate.simulate("vggs10k_sim", str(tmp_path / "v1"), scale=0.01,
                                        spec=simulate.DATASETS_V1["vggs10k_sim"]).root)
  assert st.manifest["encoder"]["checkpoint_sha256"] == "simulator-v1-seed0"
  assert "version" not in st.manifest["extra"]["simulator"]
  v2 = simulate.simulate("vggs10k_sim", str(tmp_path / "v2"), scale=0.01)
  assert v2.manifest["extra"]["simulator"]["version"] == 2
  assert not np.array_equal(np.asarray(st.embeddings("train", "audio")),
                            np.asarray(v2.embeddings("train", "audio")))


def test_v2_structure():
  spec = simulate.DATASETS["vggs10k_sim"]
  cs = spec.structure
  w = simulate._World(spec, 0, fit_heads=False)
  C, J, k = spec.num_classes, cs.subclusters, spec.k
  # unequal context weights, offsets centred on the class centre
  assert w.weights.shape == (C, J)
  np.testing.assert_allclose(w.weights.sum(1), 1.0, atol=1e-12)
  assert np.all(w.weights.max(1) > 1.5 / J)
  for m in spec.modalities:
    np.testing.assert_allclose(np.einsum("cj,cjk->ck", w.weights, w.mod_offsets[m]), 0.0,
                               atol=1e-12)
  # shared high-variance directions: orthonormal, aniso_align of their energy between classes
  np.testing.assert_allclose(w.aniso.T @ w.aniso, np.eye(cs.aniso_dims), atol=1e-10)
  q, _ = np.linalg.qr(w.centres.T)
  inside = np.sum((q.T @ w.aniso) ** 2) / cs.aniso_dims
  assert abs(inside - cs.aniso_align) < 0.1
  # modality-specific: each modality merges its own pair of classes, and its contexts differ
  merged = {m: {c for c in range(C) if not np.allclose(w.mod_centres[m][c], w.centres[c])}
            for m in spec.modalities}
  assert all(len(v) == 2 * cs.confusable_pairs for v in merged.values())
  assert merged["vision"] != merged["audio"]
  assert not np.allclose(w.mod_offsets["vision"], w.mod_offsets["audio"])
  # the within-class covariance is anisotropic along the shared directions
  y, s = w._semantics_v2(np.random.default_rng(0), 4000)
  x = s["vision"] - np.stack([s["vision"][y == c].mean(0) for c in range(C)])[y]
  var_d = np.mean((x @ w.aniso) ** 2)
  var_all = np.mean(np.sum(x ** 2, 1)) / k
  assert var_d > 3 * var_all


def test_v2_deterministic_world():
  spec = simulate.DATASETS["nyuv2_sim"]
  a, b = (simulate._World(spec, 3, fit_heads=False) for _ in range(2))
  np.testing.assert_array_equal(a.weights, b.weights)
  np.testing.assert_array_equal(a.aniso, b.aniso)
  assert not np.array_equal(a.weights, simulate._World(spec, 4, fit_heads=False).weights)


def test_reference_digest_mismatch_is_one_line_on_stderr(tmp_path, monkeypatch, capsys):
  """A store that is not the reference bytes (another BLAS kernel) is written, and said
  so in one line naming the store, both digests and OPENBLAS_CORETYPE; the reference
  store says nothing; a custom spec or a scale without a reference is not checked."""
  from mmdd_jax import workdir
  a = simulate.simulate("nyuv2_sim", str(tmp_path / "a"), scale=0.05, seed=0)
  key = ("nyuv2_sim", 0.05, 0)
  monkeypatch.setitem(simulate.REFERENCE_DIGESTS, key, workdir.store_digest(a))
  capsys.readouterr()
  simulate.simulate("nyuv2_sim", str(tmp_path / "b"), scale=0.05, seed=0)
  assert capsys.readouterr().err == ""
  monkeypatch.setitem(simulate.REFERENCE_DIGESTS, key, "sha256:" + "0" * 64)
  simulate.simulate("nyuv2_sim", str(tmp_path / "c"), scale=0.05, seed=0)
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1
  assert str(tmp_path / "c") in err and "sha256:000000000000" in err
  assert workdir.store_digest(a)[:19] in err and "OPENBLAS_CORETYPE=SkylakeX" in err
  assert simulate.blas_kernel() in err
  simulate.simulate("nyuv2_sim", str(tmp_path / "d"), scale=0.05, seed=0,
                    spec=simulate.DATASETS_V1["nyuv2_sim"])
  assert capsys.readouterr().err == ""
  assert simulate.reference_mismatch(a.root, "nyuv2_sim", 0.1, 0) is None
  # the six references are full sha256 digests of the scale-1, seed-0 stores
  assert {k[0] for k in simulate.REFERENCE_DIGESTS} >= set(simulate.DATASETS)
  assert all(len(v) == 71 for k, v in simulate.REFERENCE_DIGESTS.items() if k[1] == 1.0)
