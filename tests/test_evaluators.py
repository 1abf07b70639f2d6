"""Evaluators on hand-worked cases; heads; the fit loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mmdd_jax import classification, heads, results, retrieval, train


def test_ranks_hand_case():
  q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  c = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
  # scores: q0 -> [1,1,0]: own=1, other c1 ties => rank 1 (pessimistic)
  #         q1 -> [0,0,1]: own=0, c0 and c2... c2 = 1 > 0, c0 = 0 >= 0 => rank 2
  #         q2 -> [1,1,1]: own=1, two ties => rank 2
  np.testing.assert_array_equal(retrieval.true_ranks(q, c), [1, 2, 2])
  r = retrieval.recall_at_k(np.array([0, 1, 2, 9]), ks=(1, 2, 10))
  assert r == {"R@1": 25.0, "R@2": 50.0, "R@10": 100.0}


def test_constant_scorer_is_not_flattered():
  z = np.ones((5, 3))
  assert retrieval.recall_at_k(retrieval.true_ranks(z, z), ks=(1,))["R@1"] == 0.0


def test_retrieval_metrics_directions():
  e = np.eye(4)
  per, avg = retrieval.retrieval_metrics({"vision": e, "audio": e, "text": e})
  assert list(per) == ["VT", "TV", "VA", "AV", "TA", "AT"]
  assert avg == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0}
  perm = np.eye(4)[[1, 0, 2, 3]]
  per, _ = retrieval.retrieval_metrics({"depth": e, "text": perm})
  assert list(per) == ["DT", "TD"] and per["DT"]["R@1"] == 50.0
  assert retrieval.directions(["vision", "audio", "text", "depth"])[:3] == ["VA", "VT", "VD"]


def test_accuracy_and_mean_softmax():
  p = {"a": {"kernel": jnp.array([[1.0, 0.0], [0.0, 1.0]]), "bias": jnp.zeros(2)},
       "b": {"kernel": jnp.array([[0.0, 3.0], [0.0, 0.0]]), "bias": jnp.zeros(2)}}
  xs = {"a": jnp.array([[2.0, 0.0]]), "b": jnp.array([[1.0, 0.0]])}
  proba = classification.predict_proba(p, xs)
  sa = jax.nn.softmax(jnp.array([2.0, 0.0]))
  sb = jax.nn.softmax(jnp.array([0.0, 3.0]))
  np.testing.assert_allclose(proba[0], (sa + sb) / 2, rtol=1e-6)
  assert classification.accuracy(np.array([[0.5, 0.5], [0.2, 0.8]]), np.array([0, 0])) == 50.0


def test_linear_classifier_learns_separable(key):
  rng = np.random.default_rng(0)
  y = np.arange(40) % 2
  x = np.stack([y * 2.0 - 1.0, rng.normal(size=40)], 1).astype(np.float32)
  accs = classification.evaluate_runs(key, {"a": x}, y, {"a": x}, y, 2, runs=2, epochs=50,
                                      lr=0.05, batch_size=16)
  assert len(accs) == 2 and min(accs) == 100.0


def test_heads_npz_round_trip_and_normalised(key):
  p = heads.init_heads(key, {"vision": 6, "depth": 5}, out_dim=4)
  assert "bias" not in p["depth"]["Dense_0"] and "bias" not in p["vision"]["Dense_0"]
  q = heads.heads_from_npz(heads.heads_to_npz(p))
  arr = heads.heads_to_npz(p)
  arr["depth/bias"] = np.ones(4, np.float32)       # a bias in heads.npz is honoured
  pb = heads.heads_from_npz(arr)
  assert "bias" in pb["depth"]["Dense_0"]
  x = {"vision": jnp.arange(18.0).reshape(3, 6) ** 1.5, "depth": jnp.arange(15.0).reshape(3, 5)}
  a, b = heads.apply_heads(p, x), heads.apply_heads(q, x)
  xd = x["depth"]
  np.testing.assert_allclose(heads.apply_head(pb["depth"], xd, normalize=False),
                             heads.apply_head(p["depth"], xd, normalize=False) + 1.0, rtol=1e-5)
  for m in a:
    np.testing.assert_allclose(a[m], b[m], rtol=1e-6)
    np.testing.assert_allclose(jnp.linalg.norm(a[m], axis=1), 1.0, rtol=1e-5)
  with pytest.raises(KeyError, match="field 'text/ln_scale'"):
    heads.heads_from_npz({}, ["text"])


def test_l2_normalize_safe_grad():
  g = jax.grad(lambda x: heads.l2_normalize(x).sum())(jnp.zeros((1, 3)))
  assert np.all(np.isfinite(g))


def test_fit_scan_matches_python_loop(key):
  """make_fit's scanned epochs/steps equal a hand-written Python loop."""
  n, bs, epochs = 8, 4, 3
  data = {"x": jnp.arange(n * 2.0).reshape(n, 2)}
  loss = lambda p, b, idx: jnp.sum((b["x"] @ p["w"] - 1.0) ** 2)
  tx = optax.sgd(0.01)
  p0 = {"w": jnp.array([0.1, -0.2])}
  fitted, losses = train.make_fit(loss, tx, epochs=epochs, batch_size=bs, n=n)(p0, data, key)
  p, st = p0, tx.init(p0)
  for e in range(epochs):
    perm = jax.random.permutation(jax.random.fold_in(key, e), n)
    for s in range(n // bs):
      idx = perm[s * bs:(s + 1) * bs]
      g = jax.grad(loss)(p, {"x": data["x"][idx]}, idx)
      u, st = tx.update(g, st, p)
      p = optax.apply_updates(p, u)
  np.testing.assert_allclose(fitted["w"], p["w"], rtol=1e-5)
  assert losses.shape == (epochs,)


def test_results_schema_and_table():
  runs = [{"VT": {"R@1": 10.0, "R@5": 20.0, "R@10": 30.0}, "TV": {"R@1": 20.0, "R@5": 30.0, "R@10": 40.0}},
          {"VT": {"R@1": 20.0, "R@5": 20.0, "R@10": 30.0}, "TV": {"R@1": 30.0, "R@5": 30.0, "R@10": 40.0}}]
  r = results.make_results(dataset="d", method="m", n_syn=10, config={}, retrieval_runs=runs,
                           time_s={"eval": 60.0})
  assert r["retrieval"]["VT"]["R@1"] == 15.0 and r["retrieval_std"]["VT"]["R@1"] == 5.0
  assert r["avg"]["R@1"] == 20.0 and r["runs"] == 2 and r["accuracy"] is None
  for k in ("dataset", "method", "n_syn", "runs", "retrieval", "retrieval_std", "avg",
            "accuracy", "accuracy_std", "time_s", "device", "config"):
    assert k in r
  md = results.results_table([r])
  assert "| m | 10 | 15.0 ± 5.0 |" in md
  c = results.make_results(dataset="d", method="m", n_syn=None, config={}, accuracy_runs=[50.0, 60.0])
  assert "55.0 ± 5.0" in results.results_table([c])


def test_non_finite_scores_are_refused_not_ranked_as_hits():
  """A NaN row used to get rank −1 (a hit): evaluators now refuse it, naming the row."""
  import pytest
  from mmdd_jax import classification, retrieval
  rng = np.random.default_rng(0)
  z = {"vision": rng.normal(size=(6, 4)), "text": rng.normal(size=(6, 4))}
  z["text"][3] = np.nan
  with pytest.raises(retrieval.NonFiniteScores, match=r"modality 'text' embeddings.*row 3"):
    retrieval.retrieval_metrics(z)
  with pytest.raises(FloatingPointError, match="row 2"):
    classification.accuracy(np.array([[0.5, 0.5], [1, 0], [np.nan, 0.1]]), np.array([0, 0, 1]))
  from hopa_jax import evaluate as ev
  import jax.numpy as jnp
  good = {m: jnp.asarray(np.eye(6, 4)) for m in ("vision", "text")}
  bad = {"vision": good["vision"], "text": good["text"].at[0].set(jnp.nan)}
  assert float(ev.val_avg_r1(bad)) < float(ev.val_avg_r1(good))


def test_results_never_hold_nan_as_null():
  with pytest.raises(FloatingPointError, match="run 1 accuracy: expected a finite value"):
    results.make_results(dataset="d", method="m", n_syn=1, config={}, accuracy_runs=[50.0, float("nan")])
  with pytest.raises(FloatingPointError, match="run 0 VT R@1"):
    results.make_results(dataset="d", method="m", n_syn=1, config={},
                         retrieval_runs=[{"VT": {"R@1": float("nan")}}])
