"""The four fixes of issue 19, item 6 (docs/hopa.md, "Numerics and implementation notes"):

* ``optimizer=sgd`` updates the raw step size ``η`` as MTT / LoRS do;
* the Rank-2 proxy is sign-free in its second mode (continuous where Σa₂ ≈ 0);
* the pairwise objectives use LoRS's published temperature 0.07 (one rule: every
  method's published value), with the exact log-sigmoid BCE;
* an instance's own pair keeps a target ≥ β (``diag_floor``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax.test_util import check_grads

enable_x64 = jax.enable_x64

from hopa_jax import distill as dl
from hopa_jax import objectives as O
from hopa_jax import proxy as px
from tests import test_hopa_distill as td


# --------------------------------------------------------------------------- 1. sgd η


def _sgd_problem(lr_lr=1e-4, eta0=0.01):
  """float64 tiny problem: the matching loss as a function of raw η, and the
  learnables ``{"syn", "log_lr", "sim"}`` at ``η0``."""
  cfg = td._cfg(optimizer="sgd", sim_kind="fixed", objective="3pair", lr_lr=lr_lr,
                lr_data=1.0, momentum=0.5)
  traj, theta0, theta_star, syn, _, sim, idxs, bkeys = td._problem(cfg, dtype=jnp.float64)
  inner = dl.make_inner_loss(cfg)

  def loss_of_log(log_lr):
    th = dl.student_rollout(inner, theta0, syn, log_lr, sim, idxs, bkeys)
    return dl.match_loss(th, theta0, theta_star)

  def loss_of_eta(eta):  # raw η, as MTT/LoRS hold it (no log anywhere)
    def body(theta, xs):
      g = jax.grad(inner)(theta, syn, sim, *xs)
      return jax.tree_util.tree_map(lambda p, q: p - eta * q, theta, g), None
    th, _ = jax.lax.scan(body, theta0, (idxs, bkeys))
    return dl.match_loss(th, theta0, theta_star)

  params = {"syn": syn, "log_lr": jnp.log(jnp.asarray(eta0, jnp.float64)), "sim": sim}
  return cfg, params, jax.jit(jax.grad(loss_of_log)), jax.jit(loss_of_eta)


def test_sgd_moves_eta_by_the_peers_step():
  """Two SGD steps (momentum 0.5) on η: the learned η equals MTT/LoRS's raw-η update
  ``b ← μb + ∂L/∂η, η ← η − lr_lr·b`` with ``∂L/∂η`` from central differences, not
  the ``η²``-times-smaller step of SGD on log η."""
  with enable_x64(True):
    lr_lr, eta0 = 1e-5, 0.01
    cfg, params, grad_of_log, loss_of_eta = _sgd_problem(lr_lr, eta0)
    tx = dl.make_optimizer(cfg)
    opt = tx.init(params)
    h = 1e-7

    def fd(eta):
      return float((loss_of_eta(eta + h) - loss_of_eta(eta - h)) / (2 * h))

    eta, buf = eta0, 0.0
    for _ in range(2):
      g_eta = fd(eta)
      assert abs(g_eta) > 1e-3                       # a real gradient to follow
      buf = 0.5 * buf + g_eta
      want = eta - lr_lr * buf
      g_log = grad_of_log(params["log_lr"])
      grads = {"syn": jax.tree_util.tree_map(jnp.zeros_like, params["syn"]), "log_lr": g_log,
               "sim": {}}
      u, opt = tx.update(grads, opt, params)
      params = dict(params, log_lr=params["log_lr"] + u["log_lr"])
      got = float(jnp.exp(params["log_lr"]))
      np.testing.assert_allclose(got - eta, want - eta, rtol=1e-6)
      # SGD on log η would have moved η by about η² times less.
      old = eta * np.expm1(-lr_lr * eta * g_eta)
      assert abs(old) < 0.02 * abs(want - eta)
      eta = want


def test_sgd_eta_clamped_positive():
  """A step that would make η negative leaves it at ``lr_min`` (finite log η)."""
  with enable_x64(True):
    cfg, params, _, _ = _sgd_problem(lr_lr=1.0, eta0=0.01)
    tx = dl.make_optimizer(cfg)
    opt = tx.init(params)
    grads = {"syn": jax.tree_util.tree_map(jnp.zeros_like, params["syn"]),
             "log_lr": jnp.asarray(0.01 * 5.0, jnp.float64), "sim": {}}   # ∂L/∂η = 5
    u, _ = tx.update(grads, opt, params)
    np.testing.assert_allclose(float(jnp.exp(params["log_lr"] + u["log_lr"])), cfg.lr_min,
                               rtol=1e-9)
  with pytest.raises(ValueError, match="lr_min"):
    td._cfg(lr_min=0.0).validate()


# --------------------------------------------------------------------------- 2. Rank-2


def _old_rank2(z):
  """The former Rank-2 proxy: normalise([σ₁v₁, σ₂v₂]) with v₂'s sign from Σa₂ ≥ 0."""
  _, a = px.spectrum(z)
  sv = jnp.einsum("bmd,bmk->bkd", z, a[..., :2]).reshape(z.shape[0], -1)
  return sv / jnp.linalg.norm(sv, axis=-1, keepdims=True)


def _symmetric_batch(t, dtype=jnp.float64):
  """4 instances in d = 8, modalities ``unit(b_i ± 0.1u)`` and ``unit(b_i + 0.03w)``:
  at ``t = 0`` mode 2 is exactly ``a₂ ∝ (1, −1, 0)`` (Σa₂ = 0); instance 0's first
  modality gets ``+t·u``, so Σa₂ changes sign at ``t = 0`` while σ₂ ≫ σ₃."""
  eye = jnp.eye(8, dtype=dtype)
  b, u, w = eye[:4], eye[4], eye[5]
  z = jnp.stack([b + 0.1 * u[None], b - 0.1 * u[None], b + 0.03 * w[None]], axis=1)     # [4, 3, 8]
  z = z.at[0, 0].add(t * u)
  return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


def _rank2_loss(z):
  y = jnp.eye(z.shape[0], dtype=z.dtype).at[0, 1].set(0.3).at[1, 0].set(0.3)
  return O.hopa({f"m{k}": z[:, k] for k in range(z.shape[1])}, y, O.ObjectiveConfig(rank=2))


def test_rank2_features_sign_free():
  """Flipping a_k (k ≥ 2) leaves the Rank-r features unchanged; they reduce to v₁
  when σ₂ = 0, and their norm² before normalising is Σ_{k≤r} σ_k²."""
  with enable_x64(True):
    z = td_random(jax.random.key(5), b=5, m=4, d=7)
    sigma, a = px.spectrum(z)
    for r in (2, 3):
      v = px.rank_r_features(z, a, r)
      for k in range(1, r):
        flip = jnp.ones(a.shape[-1]).at[k].set(-1.0)
        np.testing.assert_allclose(px.rank_r_features(z, a * flip[None, None], r), v, atol=1e-13)
      np.testing.assert_allclose(np.linalg.norm(np.asarray(v), axis=-1), 1.0, rtol=1e-12)
      assert v.shape == (5, 7 + (r - 1) * 4 * 7)
    # the unnormalised blocks have norms σ_k
    sv2 = jnp.einsum("bmd,bm->bd", z, a[..., 1])
    blk = (a[..., 1][:, :, None] * sv2[:, None, :]).reshape(5, -1)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(blk), axis=-1), sigma[:, 1], rtol=1e-10)
    same = jnp.repeat(z[:, :1], 3, axis=1)                 # σ₂ = σ₃ = 0
    v2 = px.proxy(same, rank=2).v
    np.testing.assert_allclose(v2[:, :7], px.proxy(same, rank=1).v, atol=1e-6)
    np.testing.assert_allclose(v2[:, 7:], 0.0, atol=1e-6)


def td_random(key, b, m, d, dtype=jnp.float64):
  z = jax.random.normal(key, (b, m, d), dtype)
  return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


def test_rank2_continuous_across_the_sign_boundary():
  """Along a path on which Σa₂ crosses 0 the former proxy jumps (‖Δv‖ ≈ 2σ₂/‖σ‖ and
  the loss by a step); the sign-free one moves in proportion to the step."""
  with enable_x64(True):
    ts = jnp.linspace(-1e-3, 1e-3, 41)
    zs = [_symmetric_batch(t) for t in ts]
    sums = [float(jnp.sum(px.spectrum(z)[1][0, :, 1])) for z in zs[:20]]
    # (eigh's raw sign is arbitrary; what matters is that the old rule had to decide)
    assert max(abs(s) for s in sums) < 1e-2
    new = np.array([np.asarray(px.proxy(z, rank=2).v[0]) for z in zs])
    old = np.array([np.asarray(_old_rank2(z)[0]) for z in zs])
    dnew = np.linalg.norm(np.diff(new, axis=0), axis=-1)
    dold = np.linalg.norm(np.diff(old, axis=0), axis=-1)
    assert dold.max() > 0.1                          # the flip at t = 0
    assert dnew.max() < 3 * np.median(dnew) + 1e-12 and dnew.max() < 1e-3
    lnew = np.array([float(_rank2_loss(z)) for z in zs])
    dl_new = np.abs(np.diff(lnew))
    assert dl_new.max() < 3 * np.median(dl_new) + 1e-12
    # the former loss: same objective on the former features
    y = jnp.eye(4).at[0, 1].set(0.3).at[1, 0].set(0.3)
    lold = np.array([float(O.hopa_loss_from_spectrum(px.spectrum(z)[0], _old_rank2(z), y,
                                                     O.ObjectiveConfig(rank=2))) for z in zs])
    assert np.abs(np.diff(lold)).max() > 20 * dl_new.max()


def test_rank2_check_grads_at_the_former_boundary():
  """float64 gradients (2nd order) of the Rank-2 loss at Σa₂ = 0, where the former
  proxy was not differentiable (random points: tests/test_hopa_proxy.py)."""
  with enable_x64(True):
    check_grads(jax.jit(_rank2_loss), (_symmetric_batch(0.0),), order=2, modes=["rev"],
                eps=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_rank2_finite_at_degenerate_spectra(dtype):
  """σ₁ = σ₂ = σ₃ (orthogonal modalities), σ₂ = σ₃ = 0 (identical modalities) and two
  identical modalities: Rank-2 value, gradient and grad-of-grad are finite."""
  with enable_x64(dtype == jnp.float64):
    eye = jnp.eye(6, dtype=dtype)
    cases = {
        "all_equal_sigma": [[eye[i], eye[(i + 1) % 6], eye[(i + 2) % 6]] for i in range(3)],
        "sigma2_zero": [[eye[i]] * 3 for i in range(3)],
        "two_same": [[eye[i], eye[i], eye[(i + 3) % 6]] for i in range(3)],
    }
    zs = jnp.stack([jnp.stack([jnp.stack(r) for r in c]) for c in cases.values()])
    g = jax.grad(_rank2_loss)

    def all_derivs(z):
      return _rank2_loss(z), g(z), jax.grad(lambda z: jnp.sum(g(z) ** 2))(z)

    outs = jax.jit(jax.vmap(all_derivs))(zs)
    for name, o in zip(("value", "grad", "grad_of_grad"), outs):
      for c, case in enumerate(cases):
        assert np.all(np.isfinite(np.asarray(o[c]))), (case, name)


def test_rank1_path_numerically_unchanged():
  """HoPA's rank-1 objective equals an independent numpy evaluation from the SVD
  (SPEC §3.1–3.2) at a fixed seed: the rank-2 and target changes leave it alone."""
  with enable_x64(True):
    z = td_random(jax.random.key(21), b=6, m=3, d=8)
    y = np.eye(6)
    y[0, 1] = y[1, 0] = 0.7
    y[2, 3] = 0.2
    cfg = O.ObjectiveConfig()
    got = float(O.hopa({f"m{k}": z[:, k] for k in range(3)}, jnp.asarray(y), cfg))
    zn = np.asarray(z)
    sig, v = [], []
    for i in range(6):
      _, s, vt = np.linalg.svd(zn[i], full_matrices=False)
      sig.append(s)
      v.append(vt[0] * np.sign(vt[0] @ zn[i].sum(0)))
    sig, v = np.array(sig), np.array(v)
    logits = sig / cfg.tau_mod
    lmod = np.mean(-(logits[:, 0] - np.log(np.exp(logits).sum(1))))
    s = v @ v.T / cfg.tau_inst
    ls = lambda x: -np.log1p(np.exp(-x))
    ell = -y * ls(s) - (1 - y) * ls(-s)
    pos = y > 0.5
    want = lmod + 0.5 * (ell[pos].mean() + ell[~pos].mean())
    np.testing.assert_allclose(got, want, rtol=1e-12)


# --------------------------------------------------------------------------- 3. temperatures


def test_temperatures_are_the_published_ones():
  """One rule: each method's published temperature. LoRS's wBCE 0.07 (its
  ``--temperature``; RepBlend and HoPA's pairwise variants follow LoRS), CLIP's 0.07
  for InfoNCE (MTT-VL, TESLA), HoPA's 0.1 / 0.2 (its Appendix B.2)."""
  from experiments.configs import bound as bound_config
  from experiments.configs import hopa as hopa_config
  published = dict(tau_pair=0.07, tau_nce=0.07, tau_mod=0.1, tau_inst=0.2)
  cfg = O.ObjectiveConfig()
  for c in (hopa_config.get_config(), bound_config.get_config()):
    for k, v in published.items():
      assert c.objective[k] == v == getattr(cfg, k), k


def _lors_wbce(logits, y, beta=0.5, eps=1e-6):
  """LoRS's code form: log(p + 1e-6) (for comparison only)."""
  p = jax.nn.sigmoid(logits)
  ell = -y * jnp.log(p + eps) - (1 - y) * jnp.log(1 - p + eps)
  pos = (y > beta).astype(logits.dtype)
  return 0.5 * (jnp.sum(ell * pos) / jnp.sum(pos) + jnp.sum(ell * (1 - pos)) / jnp.sum(1 - pos))


def test_exact_bce_vs_lors_eps_log():
  """At moderate logits the exact log-sigmoid wBCE equals LoRS's eps-clamped form;
  at |S| ≈ 14 (cosine ≈ 1 at τ = 0.07) LoRS's gradient on a confident wrong pair is
  ``(1−σ)/(1−σ+ε)`` of the exact one (docs/hopa.md)."""
  with enable_x64(True):
    y = jnp.eye(3, dtype=jnp.float64)
    small = jnp.array([[2.0, -1.0, 0.5], [0.3, 1.5, -2.0], [-0.7, 0.1, 3.0]], jnp.float64)
    np.testing.assert_allclose(O.weighted_bce(small, y), _lors_wbce(small, y), rtol=1e-4)
    big = small.at[0, 1].set(14.0)                         # a negative pair at cos ≈ 0.98
    g_exact = jax.grad(lambda s: O.weighted_bce(s, y))(big)[0, 1]
    g_lors = jax.grad(lambda s: _lors_wbce(s, y))(big)[0, 1]
    q = 1 - jax.nn.sigmoid(14.0)
    np.testing.assert_allclose(g_lors / g_exact, q / (q + 1e-6), rtol=1e-6)
    assert 0.4 < float(g_lors / g_exact) < 0.5             # ≈ 55 % short


# --------------------------------------------------------------------------- 4. diagonal floor


def _bad_targets():
  y = jnp.array([[-0.4, 0.6, 0.2], [0.1, 0.3, -0.2], [0.0, 0.9, 1.4]])
  return y


def test_prepare_targets_floors_the_own_pair():
  y = _bad_targets()
  on = O.ObjectiveConfig(diag_floor=True)
  got = np.asarray(O.prepare_targets(y, on))
  np.testing.assert_allclose(np.diag(got), [0.5, 0.5, 1.4])
  off = ~np.eye(3, dtype=bool)
  np.testing.assert_allclose(got[off], np.asarray(y)[off])
  clip = np.asarray(O.prepare_targets(y, O.ObjectiveConfig(diag_floor=True, clip_targets=True)))
  np.testing.assert_allclose(np.diag(clip), [0.5, 0.5, 1.0])
  np.testing.assert_allclose(clip[off], np.clip(np.asarray(y), 0, 1)[off])
  np.testing.assert_array_equal(np.asarray(O.prepare_targets(y, O.ObjectiveConfig())), y)
  with pytest.raises(ValueError, match="diag_floor"):
    O.prepare_targets(jnp.zeros((2, 3)), on)


@pytest.mark.parametrize("pos_from", ["targets", "identity"])
def test_own_pair_is_a_positive_with_target_at_least_beta(pos_from):
  """With ``diag_floor`` the wBCE sees the own pair at target max(Ŝ_ii, β), in the
  positive set, for both positive rules; a diagonal entry under the floor gets no
  gradient, one above it does."""
  y = _bad_targets()
  logits = jnp.array([[2.0, -1.0, 0.5], [0.3, 1.5, -2.0], [-0.7, 0.1, 3.0]])
  cfg = O.ObjectiveConfig(diag_floor=True, pos_from=pos_from)
  got = O.weighted_bce(logits, O.prepare_targets(y, cfg), cfg.beta, pos_from, True)
  yf = np.asarray(y).copy()
  np.fill_diagonal(yf, np.maximum(np.diag(yf), 0.5))
  ls = lambda x: -np.log1p(np.exp(-x))
  s = np.asarray(logits)
  ell = -yf * ls(s) - (1 - yf) * ls(-s)
  pos = np.eye(3, dtype=bool) | ((yf > 0.5) if pos_from == "targets" else False)
  want = 0.5 * (ell[pos].mean() + ell[~pos].mean())
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  gy = jax.grad(lambda t: O.weighted_bce(logits, O.prepare_targets(t, cfg), 0.5, pos_from,
                                         True))(y)
  assert float(gy[0, 0]) == 0.0 and float(gy[1, 1]) == 0.0 and float(gy[2, 2]) != 0.0


@pytest.mark.parametrize("name", ["hopa", "3pair", "tbind", "vbind", "infonce"])
def test_diag_floor_every_objective_alike(name):
  """Every objective applies the floor (mined targets with a negative diagonal give
  the loss of the floored targets), and real data (Y = I) is unchanged."""
  k = jax.random.key(2)
  zs = {m: jax.random.normal(jax.random.fold_in(k, i), (4, 5))
        for i, m in enumerate(("vision", "audio", "text"))}
  zs = {m: v / jnp.linalg.norm(v, axis=-1, keepdims=True) for m, v in zs.items()}
  f = O.get_objective(name)
  on, off = O.ObjectiveConfig(diag_floor=True), O.ObjectiveConfig()
  eye = jnp.eye(4)
  np.testing.assert_allclose(f(zs, eye, on), f(zs, eye, off), rtol=1e-6)
  y = eye * jnp.array([-0.3, 0.2, 0.8, 1.0])[:, None] + 0.1 * (1 - eye)
  yf = eye * jnp.array([0.5, 0.5, 0.8, 1.0])[:, None] + 0.1 * (1 - eye)
  np.testing.assert_allclose(f(zs, y, on), f(zs, yf, O.ObjectiveConfig(diag_floor=True)),
                             rtol=1e-6)
  if name != "infonce":   # wBCE: with the floor the own pair is no longer a negative
    assert abs(float(f(zs, y, on)) - float(f(zs, y, off))) > 1e-4


def test_run_configs_floor_the_diagonal():
  from experiments.configs import hopa as hopa_config
  c = hopa_config.get_config()
  assert c.objective.diag_floor is True
  c.objective.diag_floor = False   # --config.objective.diag_floor=False
  assert c.objective.diag_floor is False


# --------------------------------------------------------------------------- LoRS vs 3-pair


def test_lors_and_3pair_coincide():
  """The paper's 3-pair variant is LoRS for three modalities (docs/hopa.md)."""
  assert dl.method_spec("lors") == dl.method_spec("3pair")
