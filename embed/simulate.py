"""Calibrated simulators of ImageBind features for the papers' datasets.

The papers' datasets and ImageBind's weights cannot be downloaded on every machine,
so the project ships deterministic generators that write v1 stores
(:mod:`embed.store`) shaped like ImageBind's output for those datasets.

Generative model (one dataset = one draw of the "world" from ``seed``)
--------------------------------------------------------------------
* **Shared instance semantics.** Instance ``i`` of class ``y_i`` has a unit semantic
  vector ``s_i ∈ R^k``: ``s_i ∝ c·μ_{y_i} + g_i`` with class centres ``μ_y`` and
  instance noise ``g_i`` (both ``N(0, I/k)``); ``c`` is the class strength.
* **Per-modality views.** Modality ``m`` sees ``v_{i,m} = √r_m · s_i + √(1−r_m) · ξ_{i,m}``
  (``ξ`` a unit random vector in the semantic space): ``r_m`` is the modality's
  *reliability*. Two modalities of one instance agree with correlation ``≈√(r_m r_m')``,
  so the pair of the two least reliable modalities (text–audio in the retrieval sets)
  is the weakest, as in the papers.
* **Backbone features.** ``x_{i,m} = A_m v_{i,m} + B_m ν_{i,m} + σ_m ε + b_m`` in the
  modality's ImageBind trunk width ``d_m`` (V 1280, A 768, T 1024, D 384): a
  semantic block ``A_m``, a modality-specific *nuisance subspace* ``B_m`` carrying
  ``ν ~ N(0, I)``, per-modality isotropic noise ``σ_m ε`` and an offset ``b_m``.
* **Pretrained heads and embeddings.** The shared ImageBind space is ``R^1024`` with
  a random orthonormal semantic block ``U ∈ R^{1024×k}``. Each modality's pretrained
  head (LayerNorm → Linear, ImageBind-shaped) is the least-squares map from
  ``LN(x_m)`` to ``U v_{i,m} + ℓ_m U Q_m ν_{i,m} + γ_m``: ``γ_m`` is a per-modality
  constant (the *modality gap*, orthogonal to ``U``) and ``ℓ_m`` a *leak* of nuisance
  into the semantic space (the imperfection of a frozen encoder that fine-tuning a
  head can remove, so Full > Zero-shot). The stored embeddings are
  ``normalize(head_m(x_m))``, exactly what the JAX heads compute from ``heads.npz``.

Classification sets: the v2 class model (``version=2``, :class:`ClassStructure`)
-----------------------------------------------------------------------------
In v1 each class was one isotropic Gaussian around a centre, so the class mean was a
sufficient training set for a linear head: every distribution-matching method reached
the full-data accuracy at one instance per class, and matching more than the mean
(CFD vs MMD vs DM, the alignment terms) could not matter (issue 11). Real embedding
classes are not like that. The v2 model (``ave_sim``, ``vggs10k_sim``, ``nyuv2_sim``)
replaces the shared semantic vector ``s_i`` by one per modality,

``s_{i,m} ∝ c·(μ^m_{y_i} + δ^m_{y_i, j_i}) + D a_i + g_i``,

and keeps everything downstream (views, features, heads, embeddings) as above. Parts:

* **Contexts: a mixture of sub-clusters with unequal weights.** Instance ``i`` of class
  ``y`` belongs to context ``j ~ Categorical(w_y)``, ``w_y ~ Dirichlet(α·1_J)``
  (``J = 4``, ``α = 1``); the context offsets ``δ_{y,j} ~ N(0, I/k)`` (norm ≈ a centre's,
  ``sub_spread = 1``) are centred so that ``Σ_j w_yj δ_{y,j} = 0``. *Why:* a label such as
  "dog barking" covers several visual/acoustic scenes; the class mean then lies between
  its contexts and represents none of them, and which contexts a small set covers (and
  with what weight) matters — that is what distribution matching beyond the mean is for.
* **Shared anisotropic within-class variation.** ``a_i ~ N(0, σ_a² I_H)`` along ``H = 4``
  orthonormal directions ``D`` shared by all classes and modalities, with
  ``σ_a = 3 /√k`` (3× the isotropic instance noise ``g_i ~ N(0, I/k)`` per direction);
  70 % of each direction's energy lies in the span of the class centres. *Why:* real
  embeddings have a few directions of large within-class variance (recording
  conditions, lighting, background) that also carry between-class contrast; the optimal
  linear classifier then down-weights them (it whitens, as LDA does) and is **not** the
  nearest class mean, so a training set made of class means is no longer sufficient.
* **Modality-specific structure.** (i) Each modality sees its own version of a context,
  ``δ^m = √ρ δ + √(1−ρ) δ'^m`` (``ρ = modality_share = 0.5``): a context looks different
  in sound and in picture. (ii) Each modality cannot tell one pair of classes apart
  (``confusable_pairs = 1``; their centres coincide in that modality's view, ``μ^m``),
  and the pairs differ between modalities. *Why:* vision and audio (depth and text) do
  not agree perfectly on real data; each modality is blind to distinctions the other
  makes, so the modalities are complementary and the cross-/joint-modal terms of
  ImageBindDC have something to align.

These structural constants were fixed beforehand from the reasons above, the same for
the three sets; only the class strength ``c`` is calibrated (below). v1 stores stay
readable (a store is a store); ``DATASETS_V1`` regenerates them bit for bit, and v1
specs (all retrieval sets) keep their digest and their draws.

Calibration
-----------
``r_m``, ``k``, ``c`` and ``ℓ_m`` are set per dataset (table ``DATASETS``) so that at
``scale=1`` the method-agnostic rows of the papers are matched: the Full retrieval
R@1 per direction (heads trained on the whole train split, symmetric InfoNCE over all
modality pairs, SGD lr 0.01, batch 128, 10 epochs) and the full-data linear-head
accuracy (v2 sets: the Full row of ``experiments/bindc.py`` — linear heads on the train
part of the validation split, epochs chosen on validation, 5 runs). The numbers were
found with ``experiments/calibrate_sim.py`` (never against any distillation method) and
the README shows simulated vs paper.

Sizes follow the real splits at ``scale=1``; ``scale`` shrinks train and test
proportionally (retrieval gets easier on a smaller test split).

Bytes across machines
---------------------
The draws (numpy's ``Generator``) are the same everywhere, but the linear algebra goes
through numpy's BLAS/LAPACK, and OpenBLAS picks its kernels per CPU: the same code,
numpy and OpenBLAS write a store whose embeddings and heads differ in their last bit
(about 0.01 % of the embedding values by one float32 ulp, features identical) on a CPU
served by another kernel, so its content digest differs and results bound to the other
store are not read (``mmdd_jax.workdir``). :data:`REFERENCE_DIGESTS` holds the digests of
the stores the committed results were computed on (OpenBLAS ``SkylakeX`` kernels, the
Intel Xeon machines); :func:`simulate` says in one line on stderr when the store it
wrote is not that one. On an AVX-512 CPU that OpenBLAS serves with another kernel (AMD
EPYC: ``Haswell``), ``OPENBLAS_CORETYPE=SkylakeX`` reproduces the reference bytes
(measured 2026-12-04 for all six simulators; docs/results.md, "Simulated stores across
machines").

CLI::

  python -m embed.simulate --dataset msrvtt_sim --scale 0.1 --seed 0 --out DIR

This module imports numpy only.
"""

from __future__ import annotations

import argparse
import os
import sys
import zlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from embed import store as store_lib

EMBED_DIM = 1024
FEATURE_DIMS = {"vision": 1280, "audio": 768, "text": 1024, "depth": 384}
NUISANCE_DIM = 32
PRETRAIN_SAMPLES = 6000


@dataclass(frozen=True)
class ClassStructure:
  """The v2 class structure of a classification simulator (module docstring, "v2").

  Attributes:
    subclusters: contexts (sub-clusters) per class, ``J``.
    dirichlet: concentration of the per-class context weights ``w_y ~ Dir(α·1)``
      (α = 1: clearly unequal weights).
    sub_spread: norm of a context offset relative to a class centre's (before ``c``).
    modality_share: fraction of a context's offset (in variance) that the modalities
      share; the rest is drawn per modality.
    aniso_dims: number ``H`` of shared high-variance directions.
    aniso_scale: their standard deviation, in units of the isotropic instance noise's
      per-direction standard deviation.
    aniso_align: fraction (in variance) of those directions inside the span of the
      class centres (1: pure between-class directions, 0: random directions).
    confusable_pairs: per modality, class pairs that this modality cannot tell apart
      (their centres coincide in its view); the pairs differ between modalities.
  """
  subclusters: int = 4
  dirichlet: float = 1.0
  sub_spread: float = 1.0
  modality_share: float = 0.5
  aniso_dims: int = 4
  aniso_scale: float = 3.0
  aniso_align: float = 0.7
  confusable_pairs: int = 1


@dataclass(frozen=True)
class SimSpec:
  """Parameters of one simulated dataset (see the module docstring)."""
  name: str
  modalities: tuple[str, ...]
  n_train: int
  n_test: int
  num_classes: int
  k: int                                  # semantic dimension
  class_strength: float                   # c
  reliability: Mapping[str, float]        # r_m
  leak: Mapping[str, float] = field(default_factory=dict)  # ℓ_m
  noise: float = 0.3                      # σ_m (relative to the semantic block)
  gap: float = 0.6                        # ‖γ_m‖ before normalisation
  head_scale: float = 20.0                # norm of the heads' output before L2 normalisation
  has_labels: bool = True
  task: str = "retrieval"                 # or "classification"
  paper: str = ""
  version: int = 1                        # generative model: 1 (retrieval sets) or 2
  structure: ClassStructure | None = None  # v2 only


# The fields of a v1 spec, in order: its digest is the crc32 of the dataclass repr over
# these alone, so adding v2 fields changed no v1 digest (cache names, manifests).
V1_FIELDS = ("name", "modalities", "n_train", "n_test", "num_classes", "k", "class_strength",
             "reliability", "leak", "noise", "gap", "head_scale", "has_labels", "task", "paper")


# Calibrated at scale=1 with experiments/calibrate_sim.py (see README "Simulated data").
DATASETS: dict[str, SimSpec] = {
    "msrvtt_sim": SimSpec(
        "msrvtt_sim", ("vision", "audio", "text"), 9000, 1000, 20, k=48,
        class_strength=0.7, reliability={"vision": 0.6114, "audio": 0.249, "text": 0.3223},
        leak={"vision": 0.2, "audio": 0.2, "text": 0.2},
        paper="MSR-VTT 1kA (20 categories)"),
    "vggsound_s_sim": SimSpec(
        "vggsound_s_sim", ("vision", "audio", "text"), 8000, 2000, 50, k=48,
        class_strength=0.7, reliability={"vision": 0.4301, "audio": 0.426, "text": 0.1965},
        leak={"vision": 0.2, "audio": 0.2, "text": 0.2},
        paper="VGGSound-S (10k/2k from VGGSound)"),
    "didemo_sim": SimSpec(
        "didemo_sim", ("vision", "audio", "text"), 8395, 1004, 20, k=48,
        class_strength=0.7, reliability={"vision": 0.614, "audio": 0.2238, "text": 0.296},
        leak={"vision": 0.2, "audio": 0.2, "text": 0.2}, has_labels=False,
        paper="DiDeMo (official split)"),
    "ave_sim": SimSpec(
        "ave_sim", ("vision", "audio"), 3339, 402, 28, k=48, class_strength=0.7925,
        reliability={"vision": 0.6, "audio": 0.5}, leak={"vision": 0.3, "audio": 0.3},
        task="classification", paper="AVE (28 classes)", version=2,
        structure=ClassStructure()),
    "vggs10k_sim": SimSpec(
        "vggs10k_sim", ("vision", "audio"), 8000, 2000, 10, k=48, class_strength=0.55,
        reliability={"vision": 0.6, "audio": 0.5}, leak={"vision": 0.3, "audio": 0.3},
        task="classification", paper="VGGS-10K (10 classes)", version=2,
        structure=ClassStructure()),
    "nyuv2_sim": SimSpec(
        "nyuv2_sim", ("depth", "text"), 795, 654, 10, k=48, class_strength=1.8,
        reliability={"depth": 0.6, "text": 0.7}, leak={"depth": 0.3, "text": 0.3},
        task="classification", paper="NYU-v2 (10 scene classes)", version=2,
        structure=ClassStructure()),
}


# The v1 classification simulators (one isotropic Gaussian per class), kept so that their
# stores can be regenerated bit for bit: ``simulate(name, out, spec=DATASETS_V1[name])``.
DATASETS_V1: dict[str, SimSpec] = {
    "ave_sim": SimSpec(
        "ave_sim", ("vision", "audio"), 3339, 402, 28, k=48, class_strength=0.577,
        reliability={"vision": 0.6, "audio": 0.5}, leak={"vision": 0.3, "audio": 0.3},
        task="classification", paper="AVE (28 classes)"),
    "vggs10k_sim": SimSpec(
        "vggs10k_sim", ("vision", "audio"), 8000, 2000, 10, k=48, class_strength=0.3785,
        reliability={"vision": 0.6, "audio": 0.5}, leak={"vision": 0.3, "audio": 0.3},
        task="classification", paper="VGGS-10K (10 classes)"),
    "nyuv2_sim": SimSpec(
        "nyuv2_sim", ("depth", "text"), 795, 654, 10, k=48, class_strength=0.7969,
        reliability={"depth": 0.6, "text": 0.7}, leak={"depth": 0.3, "text": 0.3},
        task="classification", paper="NYU-v2 (10 scene classes)"),
}


# Content digests (embed.store.content_digest) of the scale-1, seed-0 stores the
# committed results were computed on: OpenBLAS "SkylakeX" kernels (the Intel Xeon
# machines of the sweep; the retrieval digests are those of the 105 archived rows of
# docs/sweep_rows), reproduced on an AMD EPYC with OPENBLAS_CORETYPE=SkylakeX on
# 2026-12-04, numpy 2.4.6 / OpenBLAS 0.3.31. The same machine's default kernel (Haswell)
# wrote other digests for all six.
REFERENCE_KERNEL = "SkylakeX"
REFERENCE_DIGESTS: dict[tuple[str, float, int], str] = {
    ("msrvtt_sim", 1.0, 0): "sha256:bc231167de25b00516df0e30f7c9d2fc8d623e43f68037ed021d2e78394d171d",
    ("vggsound_s_sim", 1.0, 0): "sha256:bf6b549027de65f9e387610859af9f358cca7344d3e6fe599524732fe7f3795c",
    ("didemo_sim", 1.0, 0): "sha256:c26b0b7886e1b0ea13a04ce188662a55cf72651cb0fa9f44c2736fd7c64045ca",
    ("ave_sim", 1.0, 0): "sha256:5752ce6e755f76b3a47fb45622625fa489e48437f38ee6090142fa1d67a43cc3",
    ("vggs10k_sim", 1.0, 0): "sha256:be19d0057fb5cdd8ff68ec1298f1bff0c370da627c68601f22719636ea38bb29",
    ("nyuv2_sim", 1.0, 0): "sha256:9389017001669bdafb24c361083908d3c14b0017677535f40b399948b375393a",
}


def blas_kernel() -> str:
  """The kernel family numpy's BLAS runs here (``threadpoolctl``'s ``architecture``, e.g.
  ``SkylakeX``, ``Haswell``); ``unknown`` when it cannot be told."""
  try:
    import threadpoolctl
    info = threadpoolctl.threadpool_info()
  except Exception:  # noqa: BLE001 - optional, diagnostic only
    return "unknown"
  for i in info:
    if i.get("user_api") == "blas" and "numpy" in str(i.get("filepath", "")):
      return str(i.get("architecture") or "unknown")
  arch = [i.get("architecture") for i in info if i.get("user_api") == "blas"]
  return str(arch[0]) if arch and arch[0] else "unknown"


def reference_hint() -> str:
  """How to write the reference bytes on this machine (one sentence)."""
  return (f"the simulator's last bits follow numpy's BLAS kernel ({blas_kernel()} here, "
          f"{REFERENCE_KERNEL} for the reference): on an AVX-512 CPU set "
          f"OPENBLAS_CORETYPE={REFERENCE_KERNEL} and regenerate (docs/results.md, "
          "'Simulated stores across machines')")


def reference_mismatch(root: str, dataset: str, scale: float, seed: int) -> str | None:
  """One line when the store at ``root`` (written by :func:`simulate` for ``dataset`` at
  ``scale`` / ``seed``) is not the reference store of :data:`REFERENCE_DIGESTS`; None when
  it is, or when there is no reference for those arguments."""
  want = REFERENCE_DIGESTS.get((dataset, float(scale), int(seed)))
  if want is None:
    return None
  got = store_lib.content_digest(root)
  if got == want:
    return None
  return (f"{root}: content {got[:19]}… is not the reference {dataset} store {want[:19]}… "
          f"(committed results are bound to the reference and will not be read): "
          + reference_hint())


def spec_digest(spec: SimSpec) -> str:
  """Short hash of a simulator's constants (part of cache names, so a changed
  calibration never reuses a stale cached store)."""
  if spec.version == 1:
    text = "SimSpec(" + ", ".join(f"{f}={getattr(spec, f)!r}" for f in V1_FIELDS) + ")"
  else:
    text = repr(spec)
  return format(zlib.crc32(text.encode()), "08x")


def _unit(a: np.ndarray) -> np.ndarray:
  return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _rng(spec: SimSpec, seed: int, *tags: str) -> np.random.Generator:
  key = [zlib.crc32(t.encode()) for t in (spec.name,) + tags]
  return np.random.default_rng([seed, *key])


def _layernorm(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
  mu = x.mean(-1, keepdims=True)
  var = x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps)


class _World:
  """Dataset-level draws: class centres, U, per-modality maps, pretrained heads."""

  def __init__(self, spec: SimSpec, seed: int, fit_heads: bool = True):
    self.spec = spec
    rng = _rng(spec, seed, "world")
    k = spec.k
    self.centres = rng.standard_normal((spec.num_classes, k)) / np.sqrt(k)
    basis, _ = np.linalg.qr(rng.standard_normal((EMBED_DIM, EMBED_DIM)))
    self.U = basis[:, :k]                                   # semantic block
    rest = basis[:, k:]
    self.maps = {}
    for j, m in enumerate(spec.modalities):
      d = FEATURE_DIMS[m]
      mrng = _rng(spec, seed, "modality", m)
      A = mrng.standard_normal((d, k)) / np.sqrt(k)
      B = mrng.standard_normal((d, NUISANCE_DIM)) / np.sqrt(NUISANCE_DIM)
      b = mrng.standard_normal(d) * 0.1
      Q = mrng.standard_normal((k, NUISANCE_DIM)) / np.sqrt(NUISANCE_DIM)
      gap = rest[:, j] * spec.gap
      self.maps[m] = dict(A=A, B=B, b=b, Q=Q, gap=gap)
    if spec.version == 2:
      self._init_structure(seed)
    self.heads = self._fit_heads(seed) if fit_heads else None

  def _init_structure(self, seed: int) -> None:
    """v2 draws (their own stream, so v1's draws above are untouched)."""
    spec, st = self.spec, self.spec.structure or ClassStructure()
    rng = _rng(spec, seed, "structure")
    C, J, k = spec.num_classes, st.subclusters, spec.k
    self.weights = rng.dirichlet(np.full(J, st.dirichlet), size=C)          # [C, J]

    def offsets(r):  # context offsets, centred so the weighted mean of a class is 0
      d = r.standard_normal((C, J, k)) / np.sqrt(k)
      return d - np.einsum("cj,cjk->ck", self.weights, d)[:, None, :]

    shared = offsets(rng)
    # high-variance directions: partly inside the span of the class centres (so they
    # carry class contrast and the nearest class mean is not the best linear rule)
    cspan, _ = np.linalg.qr(self.centres.T)                                 # [k, C]
    inside = cspan @ rng.standard_normal((cspan.shape[1], st.aniso_dims))
    outside = rng.standard_normal((k, st.aniso_dims))
    outside -= cspan @ (cspan.T @ outside)
    inside /= np.linalg.norm(inside, axis=0, keepdims=True)
    outside /= np.linalg.norm(outside, axis=0, keepdims=True)
    mix = np.sqrt(st.aniso_align) * inside + np.sqrt(1.0 - st.aniso_align) * outside
    self.aniso, _ = np.linalg.qr(mix)                                       # [k, H]
    self.mod_centres, self.mod_offsets = {}, {}
    for m in spec.modalities:
      mrng = _rng(spec, seed, "structure", m)
      own = offsets(mrng)
      self.mod_offsets[m] = st.sub_spread * (np.sqrt(st.modality_share) * shared
                                             + np.sqrt(1.0 - st.modality_share) * own)
      centres = self.centres.copy()
      perm = mrng.permutation(C)
      for p in range(min(st.confusable_pairs, C // 2)):
        a, b = perm[2 * p], perm[2 * p + 1]
        centres[a] = centres[b] = 0.5 * (self.centres[a] + self.centres[b])
      self.mod_centres[m] = centres

  def _semantics_v2(self, rng: np.random.Generator, n: int):
    """Labels and one unit semantic vector per modality (the v2 class model)."""
    spec, st = self.spec, self.spec.structure or ClassStructure()
    y = rng.integers(0, spec.num_classes, size=n)
    u = rng.random(n)
    j = np.minimum((u[:, None] > np.cumsum(self.weights[y], 1)).sum(1), st.subclusters - 1)
    g = rng.standard_normal((n, spec.k)) / np.sqrt(spec.k)
    a = rng.standard_normal((n, st.aniso_dims)) * st.aniso_scale / np.sqrt(spec.k)
    shared = g + a @ self.aniso.T
    c = spec.class_strength
    s = {m: _unit(c * (self.mod_centres[m][y] + self.mod_offsets[m][y, j]) + shared)
         for m in spec.modalities}
    return y, s

  def draw(self, rng: np.random.Generator, n: int):
    """Returns labels [n], views {m: [n,k]}, nuisance {m: [n, NUISANCE_DIM]}, features."""
    spec = self.spec
    if spec.version == 2:
      y, s_m = self._semantics_v2(rng, n)
    else:
      y = rng.integers(0, spec.num_classes, size=n)
      g = rng.standard_normal((n, spec.k)) / np.sqrt(spec.k)
      s = _unit(spec.class_strength * self.centres[y] + g)
      s_m = {m: s for m in spec.modalities}
    views, nuis, feats = {}, {}, {}
    for m in spec.modalities:
      r = spec.reliability[m]
      xi = _unit(rng.standard_normal((n, spec.k)))
      v = np.sqrt(r) * s_m[m] + np.sqrt(1.0 - r) * xi
      nu = rng.standard_normal((n, NUISANCE_DIM))
      mp = self.maps[m]
      d = FEATURE_DIMS[m]
      eps = rng.standard_normal((n, d)) * spec.noise
      x = v @ mp["A"].T * np.sqrt(spec.k) + nu @ mp["B"].T + eps + mp["b"]
      views[m], nuis[m], feats[m] = v, nu, x
    return y, views, nuis, feats

  def target(self, m: str, v: np.ndarray, nu: np.ndarray) -> np.ndarray:
    mp = self.maps[m]
    leak = self.spec.leak.get(m, 0.0)
    sem = v + leak * (nu @ mp["Q"].T) / np.sqrt(self.spec.k)
    return self.spec.head_scale * (sem @ self.U.T + mp["gap"])

  def _fit_heads(self, seed: int) -> dict[str, np.ndarray]:
    rng = _rng(self.spec, seed, "pretrain")
    _, views, nuis, feats = self.draw(rng, PRETRAIN_SAMPLES)
    heads = {}
    for m in self.spec.modalities:
      X = _layernorm(feats[m])
      T = self.target(m, views[m], nuis[m])
      lam = 1e-2 * X.shape[0]
      W = np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ T)
      d = X.shape[1]
      heads[f"{m}/ln_scale"] = np.ones(d, np.float32)
      heads[f"{m}/ln_bias"] = np.zeros(d, np.float32)
      heads[f"{m}/kernel"] = W.astype(np.float32)
    return heads

  def embed(self, m: str, x: np.ndarray) -> np.ndarray:
    h = self.heads
    z = _layernorm(x) * h[f"{m}/ln_scale"] + h[f"{m}/ln_bias"]
    e = z @ h[f"{m}/kernel"].astype(np.float64)
    if f"{m}/bias" in h:
      e = e + h[f"{m}/bias"]
    return _unit(e)


def simulate(dataset: str, out: str, *, scale: float = 1.0, seed: int = 0,
             dtype: str = "float32", spec: SimSpec | None = None,
             command: str | None = None) -> store_lib.Store:
  """Writes the simulated store for ``dataset`` to ``out`` and returns it."""
  if spec is None:
    if dataset not in DATASETS:
      raise ValueError(f"unknown simulated dataset '{dataset}': expected one of {sorted(DATASETS)}")
    spec = DATASETS[dataset]
  if not 0 < scale <= 1:
    raise ValueError(f"scale: expected a value in (0, 1], found {scale}")
  world = _World(spec, seed)
  splits = {}
  for split, n_full in (("train", spec.n_train), ("test", spec.n_test)):
    n = max(int(round(n_full * scale)), 2 * spec.num_classes if spec.task == "classification" else 8)
    rng = _rng(spec, seed, "split", split)
    y, _, _, feats = world.draw(rng, n)
    splits[split] = dict(
        ids=[f"{spec.name}-{split}-{i:06d}" for i in range(n)],
        features={m: feats[m].astype(np.float32) for m in spec.modalities},
        embeddings={m: world.embed(m, feats[m]).astype(np.float32) for m in spec.modalities},
        labels=y.astype(np.int32) if spec.has_labels else None,
        captions=([f"a {spec.name} clip of class {int(c)}" for c in y]
                  if "text" in spec.modalities else None),
    )
  mods = {m: store_lib.ModalitySpec(FEATURE_DIMS[m], EMBED_DIM, dtype) for m in spec.modalities}
  class_names = [f"class_{c:02d}" for c in range(spec.num_classes)] if spec.has_labels else None
  return_manifest = store_lib.write_store(
      out, mods, splits, heads=world.heads, encoder=f"simulated-imagebind:{spec.name}",
      checkpoint_sha256=f"simulator-v{spec.version}-seed{seed}", class_names=class_names,
      command=command or f"python -m embed.simulate --dataset {dataset} --scale {scale} --seed {seed} --out {out}",
      extra={"simulator": {"dataset": spec.name, "scale": scale, "seed": seed,
                           "spec_digest": spec_digest(spec),
                           "task": spec.task, "paper": spec.paper,
                           **({"version": spec.version} if spec.version != 1 else {})}})
  del return_manifest
  if spec is DATASETS.get(dataset):
    msg = reference_mismatch(out, dataset, scale, seed)
    if msg:
      print(f"embed.simulate: note: {msg}", file=sys.stderr)
  return store_lib.Store(out)


def main(argv: Sequence[str] | None = None) -> int:
  ap = argparse.ArgumentParser(prog="python -m embed.simulate",
                               description="Write a simulated ImageBind embedding store (format v1).")
  ap.add_argument("--dataset", required=True, choices=sorted(DATASETS),
                  help="which paper dataset to simulate")
  ap.add_argument("--scale", type=float, default=1.0,
                  help="fraction of the real split sizes, in (0, 1] (default 1)")
  ap.add_argument("--seed", type=int, default=0, help="world and sampling seed (default 0)")
  ap.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                  help="storage dtype of features and embeddings")
  ap.add_argument("--out", required=True, help="output store directory")
  a = ap.parse_args(argv)
  st = simulate(a.dataset, a.out, scale=a.scale, seed=a.seed, dtype=a.dtype,
                command=" ".join(["python -m embed.simulate"] + list(argv if argv is not None else sys.argv[1:])))
  print(st.info())
  return 0


if __name__ == "__main__":
  sys.exit(main())
