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
