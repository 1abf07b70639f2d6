"""The project's selection rules (SPEC §3.6 "Protocol selection"): they read the
validation rows only, and they pick what they say they pick."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hopa_jax import evaluate as ev
from hopa_jax import experts as ex
from mmdd_jax import heads as heads_lib
from mmdd_jax import retrieval

DIMS = {"vision": 6, "audio": 5, "text": 4}


def _data(key, n):
  """Three modalities that share a latent (so heads can learn to align them)."""
  z = jax.random.normal(key, (n, 3))
  return {m: np.asarray(z @ jax.random.normal(jax.random.fold_in(key, i + 1), (3, d))
                        + 0.3 * jax.random.normal(jax.random.fold_in(key, 10 + i), (n, d)))
          for i, (m, d) in enumerate(DIMS.items())}


def _heads():
  return heads_lib.init_heads(jax.random.key(0), DIMS, out_dim=4)


def test_val_avg_r1_matches_numpy_evaluator():
  zs = heads_lib.apply_heads(_heads(), {m: jnp.asarray(v)
                                         for m, v in _data(jax.random.key(1), 12).items()})
  _, avg = retrieval.retrieval_metrics({m: np.asarray(v) for m, v in zs.items()})
  np.testing.assert_allclose(float(ev.val_avg_r1(zs)), avg["R@1"], rtol=1e-6)


def test_select_protocol_never_reads_the_test_split():
  """Choices (lr, epochs, validation scores) are identical whatever the test split holds."""
  xs, val = _data(jax.random.key(2), 16), _data(jax.random.key(3), 10)
  cfg = ev.EvalConfig(runs=2, objective="infonce", lrs=(0.01, 0.3), max_epochs=6, patience=2)
  key = jax.random.key(4)
  a = ev.evaluate_set(key, _heads(), xs, _data(jax.random.key(5), 8), cfg, val_xs=val)
  b = ev.evaluate_set(key, _heads(), xs, _data(jax.random.key(6), 8), cfg, val_xs=val)
  assert (a["lr"], a["epochs"], a["val_r1"], a["lr_grid"]) == (b["lr"], b["epochs"], b["val_r1"],
                                                              b["lr_grid"])
  assert a["lr"] in cfg.lrs and all(1 <= e <= cfg.max_epochs for e in a["epochs"])
  assert a["lr_grid"][a["lr"]] == max(a["lr_grid"].values())
  with pytest.raises(ValueError, match="validation split"):
    ev.evaluate_set(key, _heads(), xs, val, cfg)


def test_early_stopping_keeps_the_best_validation_heads():
  xs, val = _data(jax.random.key(7), 16), _data(jax.random.key(8), 10)
  cfg = ev.EvalConfig(runs=1, objective="infonce", max_epochs=5, patience=5)
  loss = ev.make_loss(cfg, None)
  keys = jax.random.split(jax.random.key(9), 1)
  best, best_val, best_epoch = ev.train_early_stopping(keys, _heads(), xs, val, [0.3], cfg, loss)
  again = float(ev.val_avg_r1(heads_lib.apply_heads(
      jax.tree_util.tree_map(lambda a: a[0], best), {m: jnp.asarray(v) for m, v in val.items()})))
  assert again == pytest.approx(best_val[0]) and 1 <= best_epoch[0] <= 5


def test_teacher_lr_probe_reads_validation_and_picks_the_best_final_score():
  xs, val = _data(jax.random.key(10), 32), _data(jax.random.key(11), 12)
  cfg = ex.ExpertConfig(num_experts=1, epochs=3, batch_size=8, objective="3pair",
                        lr=None, lr_grid=(0.3, 0.01))
  sel = ex.select_teacher_lr(jax.random.key(12), _heads(), xs, val, cfg)
  assert sel["grid"] == [0.01, 0.3]
  finals = {float(k): v[-1] for k, v in sel["val_r1"].items()}
  assert all(len(v) == 4 for v in sel["val_r1"].values())   # epochs 0..3
  assert finals[sel["lr"]] == max(finals.values())
  # Epoch 0 is the same heads for every lr.
  assert len({v[0] for v in sel["val_r1"].values()}) == 1


def _same(a, b):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_early_stopping_resumes_bit_identically_from_its_checkpoint(tmp_path, monkeypatch):
  """A killed evaluation goes on from its last save and ends exactly where an
  uninterrupted one does; a finished checkpoint is returned without training."""
  xs, val = _data(jax.random.key(13), 16), _data(jax.random.key(14), 10)
  cfg = ev.EvalConfig(runs=2, objective="infonce", max_epochs=9, patience=3, val_every=2)
  loss = ev.make_loss(cfg, None)
  keys = jax.random.split(jax.random.key(15), 2)
  args = (keys, _heads(), xs, val, [0.3, 0.03], cfg, loss)
  want = ev.train_early_stopping(*args)

  scorer, calls = ev.make_val_scorer, []

  def dies_at_the_third_check(v):
    score = scorer(v)
    def scored(p):
      calls.append(1)
      if len(calls) == 3:
        raise KeyboardInterrupt
      return score(p)
    return scored

  ck = str(tmp_path / "ck")
  monkeypatch.setattr(ev, "make_val_scorer", dies_at_the_third_check)
  with pytest.raises(KeyboardInterrupt):
    ev.train_early_stopping(*args, ckpt_dir=ck, save_every_s=0.0)
  monkeypatch.setattr(ev, "make_val_scorer", scorer)
  assert (tmp_path / "ck" / "4").is_dir()       # saved after the second check (epoch 4)
  got = ev.train_early_stopping(*args, ckpt_dir=ck, save_every_s=0.0)
  _same(got, want)

  def no_training(*a, **k):
    raise AssertionError("a finished evaluation trained again")
  trainer = ev.make_trainer
  monkeypatch.setattr(ev, "make_trainer", lambda *a: (trainer(*a)[0], no_training))
  _same(ev.train_early_stopping(*args, ckpt_dir=ck, save_every_s=0.0), want)


def test_evaluate_set_removes_its_checkpoints_once_scored(tmp_path):
  xs, val = _data(jax.random.key(16), 16), _data(jax.random.key(17), 10)
  cfg = ev.EvalConfig(runs=2, objective="infonce", lrs=(0.01, 0.3), max_epochs=4, patience=2)
  key, test = jax.random.key(18), _data(jax.random.key(19), 8)
  want = ev.evaluate_set(key, _heads(), xs, test, cfg, val_xs=val)
  got = ev.evaluate_set(key, _heads(), xs, test, cfg, val_xs=val, ckpt_dir=str(tmp_path / "ck"))
  assert got == want and not (tmp_path / "ck").exists()
