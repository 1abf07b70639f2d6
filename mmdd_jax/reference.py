"""Method-agnostic reference rows: Zero-shot and Full retrieval, Full and Random
classification. The simulators are calibrated against these alone."""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from embed import store as store_lib
from mmdd_jax import classification, data, heads, losses, retrieval, train

FULL_TAU = 0.07  # CLIP's initial temperature; the Full protocol's InfoNCE


def pretrained_heads(st: store_lib.Store, modalities=None) -> dict:
  arrays = st.heads()
  if arrays is None:
    raise store_lib.StoreError(f"{st.root}/heads.npz: field 'heads': expected the encoder's "
                               "projection heads, found no file")
  return heads.heads_from_npz(arrays, modalities or st.modalities)


def embed_split(params: Mapping, xs: Mapping[str, np.ndarray], batch: int = 4096) -> dict:
  """Applies heads in blocks; returns NumPy embeddings."""
  f = jax.jit(heads.apply_heads)
  n = len(next(iter(xs.values())))
  outs = [f(params, {m: jnp.asarray(v[s:s + batch]) for m, v in xs.items()}) for s in range(0, n, batch)]
  return {m: np.concatenate([np.asarray(o[m]) for o in outs]) for m in params}


def evaluate_heads_retrieval(params: Mapping, test_xs: Mapping[str, np.ndarray]):
  return retrieval.retrieval_metrics(embed_split(params, test_xs))


def full_loss(tau: float):
  def loss(params, batch, idx):
    del idx
    return losses.pairwise_info_nce(heads.apply_heads(params, batch), tau)
  return loss


def train_full_retrieval(key: jax.Array, params0: Mapping, train_xs: Mapping[str, np.ndarray], *,
                         epochs: int = 10, lr: float = 0.01, batch_size: int = 128,
                         tau: float = FULL_TAU):
  """Full: the pretrained heads trained on all real train data (symmetric InfoNCE
  over all modality pairs, SGD)."""
  xs = {m: jnp.asarray(v) for m, v in train_xs.items()}
  n = len(next(iter(xs.values())))
  fit = train.make_fit(full_loss(tau), optax.sgd(lr), epochs=epochs, batch_size=batch_size, n=n)
  return fit(params0, xs, key)


def reference_retrieval(st: store_lib.Store, key: jax.Array, *, runs: int = 1, **full_kw):
  """Returns ``{"zero_shot": [per-direction], "full": [per-direction per run]}``."""
  mods = st.modalities
  p0 = pretrained_heads(st, mods)
  test_xs = data.load_split(st, "test", "features", mods)
  train_xs = data.load_split(st, "train", "features", mods)
  zs, _ = evaluate_heads_retrieval(p0, test_xs)
  full = []
  for r in range(runs):
    p, _ = train_full_retrieval(jax.random.fold_in(key, r), p0, train_xs, **full_kw)
    full.append(evaluate_heads_retrieval(p, test_xs)[0])
  return {"zero_shot": [zs], "full": full}


def reference_classification(st: store_lib.Store, key: jax.Array, *, runs: int = 5,
                             epochs: int = 30, lr: float = 1e-3, batch_size: int = 256):
  """Full-data linear heads on the embeddings (mean of per-modality softmaxes)."""
  if st.num_classes is None or st.labels("train") is None:
    raise store_lib.StoreError(f"{st.root}/train/labels.npy: field 'labels': expected class "
                               "labels for classification, found none")
  tr = data.load_split(st, "train", "embeddings")
  te = data.load_split(st, "test", "embeddings")
  ytr, yte = np.asarray(st.labels("train")), np.asarray(st.labels("test"))
  return classification.evaluate_runs(key, tr, ytr, te, yte, st.num_classes, runs=runs,
                                      epochs=epochs, lr=lr, batch_size=batch_size)
