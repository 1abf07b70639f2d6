"""Distillation loop: vmapped step vs per-class loop, unit sphere, resume, binary smoke."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bindc_jax as B
import importlib

D = importlib.import_module("bindc_jax.distill")  # the package re-exports the function `distill`
from bindc_jax import losses as L


def _data(seed=0, C=3, mods=("audio", "vision"), d=8, n=12):
  r = np.random.default_rng(seed)
  labels = np.concatenate([np.arange(C), r.integers(0, C, n * C - C)])
  xs = {m: r.standard_normal((len(labels), d)).astype(np.float32) for m in mods}
  xs = {m: v / np.linalg.norm(v, axis=-1, keepdims=True) for m, v in xs.items()}
  xs_c, mask, _ = B.group_by_class(xs, labels, C)
  return xs_c, mask


def _cfg(**kw):
  lc = L.LossConfig(dist=B.DistanceConfig(num_freqs=16), **kw.pop("loss", {}))
  return B.DistillConfig(loss=lc, iterations=kw.pop("iterations", 6), real_batch=8,
                         syn_batch=kw.pop("syn_batch", 32), **kw)


def test_vmapped_loss_equals_per_class_loop(key):
  xs_c, mask = _data(mods=("audio", "text", "vision"))
  syn = B.initialize("random", key, xs_c, mask, 2)
  cfg = _cfg()
  loss_fn = D.make_loss(cfg, 8)
  k = jax.random.key(3)
  total, aux = loss_fn(syn, (xs_c, jnp.asarray(mask)), k)
  # the same draws, class by class
  k_t, k_c = jax.random.split(k)
  t = B.sample_frequencies(k_t, 16, 8)
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
  syn0 = B.initialize("herding", key, xs_c, mask, 3)
  cfg = dataclasses.replace(_cfg(syn_batch=2), loss=B.method_loss_config(
      method, L.LossConfig(dist=B.DistanceConfig(num_freqs=16))))
  syn, state = B.distill(syn0, xs_c, mask, cfg, key, log_every=3, progress=False)
  assert int(state.step) == 6
  for m, v in syn.items():
    assert v.shape == (3, 3, 8) and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, rtol=1e-5)
    assert not np.allclose(v, syn0[m])


def test_resume_is_bit_identical(key, tmp_path):
  xs_c, mask = _data(1)
  syn0 = B.initialize("herding", key, xs_c, mask, 2)
  cfg = _cfg(iterations=8, augment=B.AugmentConfig(dropout=0.2, jitter=0.05, mixup=0.3))
  straight, s1 = B.distill(syn0, xs_c, mask, cfg, key, log_every=2, progress=False)
  ck = str(tmp_path / "ck")
  part, sp = B.distill(syn0, xs_c, mask, cfg, key, log_every=2, ckpt_dir=ck, ckpt_every=4,
                       progress=False, stop_at=4)
  assert int(sp.step) == 4
  resumed, s2 = B.distill(syn0, xs_c, mask, cfg, key, log_every=2, ckpt_dir=ck, ckpt_every=4,
                          progress=False)
  assert int(s2.step) == 8
  for m in straight:
    np.testing.assert_array_equal(straight[m], resumed[m])
  jax.tree_util.tree_map(np.testing.assert_array_equal, s1.opt_state, s2.opt_state)


def test_nan_is_a_hard_error(key):
  xs_c, mask = _data()
  syn0 = B.initialize("herding", key, xs_c, mask, 1)
  cfg = _cfg(lr=float("nan"), loss=dict(kind="dm"))
  with pytest.raises(FloatingPointError, match="non-finite"):
    B.distill(syn0, xs_c, mask, cfg, key, log_every=3, progress=False)


def test_methods_registry():
  assert B.method_loss_config("random") is None
  assert B.method_loss_config("cfd_only").use_cross is False
  assert B.method_loss_config("mmd").distance == "mmd"
  with pytest.raises(ValueError, match="method"):
    B.method_loss_config("nope")


def test_three_modalities_on_msrvtt(tiny_store, key):
  from mmdd_jax import data
  tr = data.load_split(tiny_store, "train", "embeddings")
  assert len(tr) == 3
  xs_c, mask, _ = B.group_by_class(tr, np.asarray(tiny_store.labels("train")),
                                   tiny_store.num_classes)
  syn0 = B.initialize("herding", key, xs_c, mask, 1)
  cfg = _cfg(iterations=2)
  syn, _ = B.distill(syn0, xs_c, mask, cfg, key, log_every=2, progress=False)
  assert set(syn) == {"audio", "text", "vision"} and np.isfinite(syn["text"]).all()


def test_binary_smoke(tmp_path):
  from experiments import bindc
  from experiments.configs import bindc as cfg_lib
  wd = str(tmp_path / "w")
  cfg = cfg_lib.get_config(f"local=1,progress=0,data_dir={tmp_path / 'data'},"
                           "method=herding+bindc,eval_runs=5")
  rows = bindc.train_and_evaluate(cfg, wd)
  assert [r["method"] for r in rows] == ["herding", "bindc"]
  for r in rows:
    assert 0 <= r["accuracy"] <= 100 and r["runs"] == 5 and r["n_syn"] == 1
  for f in ("config.json", "metrics.jsonl", "results.json", "results.md"):
    assert os.path.exists(os.path.join(wd, f)), f
  with open(os.path.join(wd, "results.json")) as f:
    assert json.load(f)[1]["accuracy"] == rows[1]["accuracy"]
  from embed import store
  st = store.validate(os.path.join(wd, "distilled-bindc"))
  assert st.count("train") == st.num_classes and st.spec("vision").feature_dim == 1024
  out = subprocess.run([sys.executable, "-m", "embed.store", "info",
                        os.path.join(wd, "distilled-herding")], capture_output=True, text=True)
  assert out.returncode == 0 and "split train" in out.stdout
  with pytest.raises(ValueError, match="config key"):
    cfg_lib.get_config("nonsense=1")


def test_binary_modality_subset(tmp_path):
  """The paper's "Audio only" ablation: a modality subset; an absent one is a clear error."""
  from embed.store import StoreError
  from experiments import bindc
  from experiments.configs import bindc as cfg_lib
  base = f"local=1,progress=0,data_dir={tmp_path / 'data'},method=dm,eval_runs=2,iterations=2"
  rows = bindc.train_and_evaluate(cfg_lib.get_config(base + ",modalities=audio"), str(tmp_path / "a"))
  assert rows[0]["accuracy"] is not None
  from embed import store
  assert store.Store(str(tmp_path / "a" / "distilled")).modalities == ["audio"]
  with pytest.raises(StoreError, match="expected to contain 'depth'"):
    bindc.train_and_evaluate(cfg_lib.get_config(base + ",modalities=depth"), str(tmp_path / "b"))
