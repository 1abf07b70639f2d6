"""The one selection rule (lr of the synthetic set, evaluation epochs) and the MLP head."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from bindc_jax import losses as L
from bindc_jax import distances
from bindc_jax import init as init_lib
from bindc_jax import distill as D
from bindc_jax import select as S
from mmdd_jax import classification


def _data(seed=0, C=3, mods=("audio", "vision"), d=8, n=12):
  r = np.random.default_rng(seed)
  labels = np.concatenate([np.arange(C), r.integers(0, C, n * C - C)])
  xs = {m: r.standard_normal((len(labels), d)).astype(np.float32) for m in mods}
  xs = {m: v / np.linalg.norm(v, axis=-1, keepdims=True) for m, v in xs.items()}
  xs_c, mask, _ = init_lib.group_by_class(xs, labels, C)
  return xs_c, mask


def test_choose_best_and_ties_to_smaller_lr():
  assert S.choose([0.01, 0.1, 1.0], [50.0, 70.0, 60.0]) == 0.1
  assert S.choose([0.01, 0.1, 1.0], [70.0, 70.0, 60.0]) == 0.01


def test_normalize_rows_unit_norm_per_instance():
  g = {"a": jnp.array([[[3.0, 0.0], [0.0, 0.0]]]), "b": jnp.array([[[4.0], [0.0]]])}
  out, _ = D.normalize_rows().update(g, None)
  np.testing.assert_allclose(out["a"][0, 0], [0.6, 0.0], rtol=1e-6)
  np.testing.assert_allclose(out["b"][0, 0], [0.8], rtol=1e-6)
  assert float(jnp.abs(out["a"][0, 1]).sum()) == 0.0  # a row without gradient stays put


@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_normalised_step_length_independent_of_loss_scale(key, scale):
  """The same lr moves each synthetic instance by lr whatever the loss's scale."""
  xs_c, mask = _data()
  syn0 = init_lib.initialize("herding", key, xs_c, mask, 2)
  lc = dataclasses.replace(D.method_loss_config("dm", L.LossConfig()), lam_uni=scale)
  cfg = D.DistillConfig(loss=lc, iterations=1, real_batch=8, lr=0.01, momentum=0.0,
                        project=False, normalize=True)
  s0 = D.init_state(syn0, cfg)
  s1, _ = D.make_step(cfg, 8)(s0, (xs_c, jnp.asarray(mask)), key)
  moved = np.sqrt(sum(np.sum((np.asarray(s1.syn[m]) - np.asarray(s0.syn[m])) ** 2, -1)
                      for m in syn0))
  np.testing.assert_allclose(moved, 0.01, rtol=1e-4)


def test_select_lr_same_rule_for_every_method(key, monkeypatch):
  """The grid, the budget, the key and the initial set are the same for every method;
  only the score decides; normalised updates are forced."""
  xs_c, mask = _data()
  syn0 = init_lib.initialize("herding", key, xs_c, mask, 1)
  runs = []

  def fake_distill(s0, xs, m, cfg, k, **kw):   # the "state" is the initial set itself
    runs.append((cfg, k, s0))
    return s0
  monkeypatch.setattr(S.distill_lib, "init_state", lambda s0, cfg: s0)
  monkeypatch.setattr(S.distill_lib, "distill", fake_distill)
  monkeypatch.setattr(S.distill_lib, "synthetic",
                      lambda s: {mm: np.asarray(v) for mm, v in s.items()})
  seen = {}
  for method in ("dm", "mmd", "avdd", "cfd_only", "bindc"):
    lc = D.method_loss_config(method, L.LossConfig(dist=distances.DistanceConfig(num_freqs=16)))
    cfg = D.DistillConfig(loss=lc, iterations=50, real_batch=8, lr=0.5)
    calls = []

    def score(syn, calls=calls):
      calls.append(syn)
      return -float(len(calls) % 2 == 0)  # candidates 1, 3 tie at 0 -> smaller lr
    runs.clear()
    sel = S.select_lr(syn0, xs_c, mask, cfg, key, score, grid=(0.1, 0.01, 0.03), iterations=2)
    assert sel["grid"] == [0.01, 0.03, 0.1] and sel["iterations"] == 2
    assert sel["lr"] == 0.01 and len(calls) == 3
    assert [r[0].lr for r in runs] == [0.01, 0.03, 0.1]
    assert all(r[0].normalize and r[0].iterations == 2 and r[0].loss == lc for r in runs)
    assert all(r[1] is key and r[2] is syn0 for r in runs)
    seen[method] = (tuple(sel["grid"]), sel["iterations"], sel["rule"])
  assert len(set(seen.values())) == 1


def test_select_lr_runs_real_distillation(key):
  xs_c, mask = _data()
  syn0 = init_lib.initialize("herding", key, xs_c, mask, 1)
  cfg = D.DistillConfig(loss=D.method_loss_config("dm"), iterations=50, real_batch=8)
  sets = []
  sel = S.select_lr(syn0, xs_c, mask, cfg, key, lambda s: sets.append(s) or 0.0,
                    grid=(0.01, 0.1), iterations=2)
  assert sel["lr"] == 0.01 and len(sets) == 2
  d = [np.abs(s["audio"] - np.asarray(syn0["audio"])).max() for s in sets]
  assert 0 < d[0] < d[1]


def test_select_epochs_rule():
  curve = np.array([[10.0, 50.0, 50.0, 40.0], [20.0, 50.0, 60.0, 40.0]])
  assert classification.select_epochs(curve) == 3
  assert classification.select_epochs(np.array([[1.0, 2.0, 2.0]])) == 2


def test_mlp_head_learns_xor_where_linear_cannot(key):
  x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32) * 2 - 1
  y = np.array([0, 1, 1, 0])
  xs, ys = {"a": np.tile(x, (16, 1))}, np.tile(y, 16)
  mlp = classification.evaluate_runs(key, xs, ys, {"a": x}, y, 2, runs=2, epochs=200,
                                     lr=0.03, batch_size=16, head="mlp", hidden=16)
  lin = classification.evaluate_runs(key, xs, ys, {"a": x}, y, 2, runs=2, epochs=200,
                                     lr=0.03, batch_size=16, head="linear")
  assert min(mlp) == 100.0 and max(lin) <= 75.0
  p = classification.init_head("mlp", key, {"a": 2, "b": 3}, 4, hidden=5)
  assert p["b"]["hidden"]["kernel"].shape == (3, 5) and p["b"]["kernel"].shape == (5, 4)
  with pytest.raises(ValueError, match="evaluation head"):
    classification.init_head("convnet", key, {"a": 2}, 4)


def test_evaluate_with_validation_reads_test_only_at_the_end(key):
  r = np.random.default_rng(0)
  y = np.arange(60) % 3
  x = (np.eye(3)[y] + 0.3 * r.standard_normal((60, 3))).astype(np.float32)
  sel = classification.evaluate_with_validation(
      key, {"a": x[:40]}, y[:40], {"a": x[40:]}, y[40:], None, None, 3, runs=2, max_epochs=20,
      lr=0.05, batch_size=8)
  assert sel["test"] is None and 1 <= sel["epochs"] <= 20
  # the choice does not depend on the test rows
  for test_y in (y[40:], (y[40:] + 1) % 3):
    out = classification.evaluate_with_validation(
        key, {"a": x[:40]}, y[:40], {"a": x[40:]}, y[40:], {"a": x[40:]}, test_y, 3, runs=2,
        max_epochs=20, lr=0.05, batch_size=8)
    assert out["epochs"] == sel["epochs"] and len(out["test"]) == 2


def test_binary_selection_ignores_test_split(tmp_path, monkeypatch, tiny_cls_store):
  """Selections (lr, epochs) of every row are the same whatever the test split holds,
  distillation sees only the train part, and the chosen lr is recorded."""
  from bindc_jax import run
  from experiments.configs import bindc as cfg_lib
  from mmdd_jax import data as data_lib
  from mmdd_jax import keys

  def config():
    return keys.override(cfg_lib.get_config(f"local=1,dataset={tiny_cls_store.root}"), {
        "progress": False, "method": ("random", "dm", "full"), "distill.iterations": 3,
        "select.iterations": 2, "select.grid": (0.01, 0.1), "eval.runs": 1,
        "eval.min_steps": 5, "eval.epochs": 3})
  sizes = []
  real_group = run.init_lib.group_by_class
  monkeypatch.setattr(run.init_lib, "group_by_class",
                      lambda xs, y, c: sizes.append(len(y)) or real_group(xs, y, c))
  a = run.train_and_evaluate(config(), str(tmp_path / "a"))
  real_load = data_lib.load_split

  def noisy_test(st, split, kind="features", modalities=None):
    out = real_load(st, split, kind, modalities)
    if split == "test":
      r = np.random.default_rng(1)
      out = {m: r.standard_normal(v.shape).astype(np.float32) for m, v in out.items()}
    return out
  monkeypatch.setattr(data_lib, "load_split", noisy_test)
  b = run.train_and_evaluate(config(), str(tmp_path / "b"))
  assert [(r["method"], r["head"]) for r in a] == [
      ("random", "linear"), ("dm", "linear"), ("full", "linear")]
  for ra, rb in zip(a, b):
    assert ra["selection"] == rb["selection"]
  dm = a[1]["selection"]
  assert dm["lr"] in (0.01, 0.1) and dm["lr_grid"] == [0.01, 0.1] and dm["lr_rule"] == "validation"
  assert a[0]["selection"]["lr"] is None and a[0]["selection"]["eval_epochs"] >= 1
  n_val = a[0]["selection"]["val_rows"]
  assert sizes[0] == a[0]["selection"]["train_rows"] and n_val > 0


def test_tables_configs_and_markdown(tmp_path):
  """Every group of the tables is a valid config under every budget, and the tables are
  written from whatever groups have finished."""
  import json
  import os
  from bindc_jax import run, tables as T
  from experiments.configs import bindc as cfg_lib
  base = cfg_lib.get_config()
  base.scale = 0.5
  for budget in T.BUDGETS:
    for group, _ in T.GROUPS:
      c = T.group_config(base, group, budget)
      run.check_config(c)
      assert c.eval.heads == ("linear", "mlp") and c.select.enabled and c.val_fraction > 0
      assert c.scale == 0.5 and not c.progress
  assert T.group_config(base, "vggs10k_ipc1", "spec").distill.iterations == 2000
  assert T.group_config(base, "ave_audio_ipc1", "smoke").modalities == ("audio",)
  assert base.distill.iterations == 2000 and base.eval.heads == ("linear",)  # not modified
  with pytest.raises(ValueError, match="only"):
    T.run_tables(base, str(tmp_path), only=["nope"])
  rows = [{"method": "dm", "head": h, "n_syn": 1, "accuracy": 50.0, "accuracy_std": 1.0,
           "selection": {"lr": 0.03}} for h in ("linear", "mlp")]
  os.makedirs(tmp_path / "vggs10k_ipc1")
  with open(tmp_path / "vggs10k_ipc1" / "results.json", "w") as f:
    json.dump(rows, f)
  md = T.write_tables(str(tmp_path), "reduced")
  assert "| DM | 50.0 ± 1.0 [36.5] | — [43.9] | — [49.0] | 0.03/–/– |" in md
  assert (tmp_path / "tables.md").exists()
