"""HoPA's analyses (issue 20): evaluation heads the distillation never used (Table 4
analogue), the replaced-proxy objectives of the cost benchmark (Table 7) and the
distilled-set inspection (Figure 3), on tiny shapes and a tiny distilled store."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import cross_arch as cross_arch_config
from experiments.configs import evaluate as evaluate_config
from experiments.configs import hopa as hopa_config
from hopa_jax import cross_arch
from hopa_jax import distill as dl
from hopa_jax import experts as ex
from hopa_jax import evaluate as ev
from hopa_jax import inspect_distilled
from hopa_jax import objectives as obj_lib
from hopa_jax import plan as plan_lib
from hopa_jax import proxy_variants
from hopa_jax import run as hopa_run
from embed import store as store_lib
from mmdd_jax import heads as heads_lib
from mmdd_jax import keys

DIMS = {"vision": 12, "audio": 10, "text": 8}


def _problem():
  """The deterministic tiny problem of the golden values below (NumPy-built: no eager
  JAX ops, which are slow on a loaded CPU)."""
  r = np.random.default_rng(0)
  p0 = {m: {"LayerNorm_0": {"scale": 1 + 0.1 * r.normal(size=d).astype(np.float32),
                            "bias": 0.1 * r.normal(size=d).astype(np.float32)},
            "Dense_0": {"kernel": (r.normal(size=(d, 6)) / np.sqrt(d)).astype(np.float32)}}
        for m, d in DIMS.items()}

  def mk(n):
    return {m: r.normal(size=(n, d)).astype(np.float32) for m, d in DIMS.items()}
  return p0, mk(16), mk(12), mk(20)


# evaluate_set's output on _problem() with the code before eval.head existed (main at
# 69901ee, JAX 0.10.2 on CPU): the default head must reproduce it exactly (recalls are
# rank counts; the trained heads were also compared bit for bit, see docs/analyses.md).
GOLDEN = {"lr": 1.0, "epochs": [1, 1], "val_r1": [11.111112594604492, 8.333333969116211],
          "lr_grid": {"0.1": 11.111111640930176, "1.0": 15.277779579162598},
          "runs": [{"VT": [10.0, 40.0, 60.0], "TV": [15.0, 30.0, 65.0], "VA": [0.0, 15.0, 30.0],
                    "AV": [0.0, 20.0, 25.0], "TA": [5.0, 20.0, 45.0], "AT": [0.0, 15.0, 60.0]},
                   {"VT": [15.0, 35.0, 55.00000000000001], "TV": [10.0, 35.0, 60.0],
                    "VA": [0.0, 15.0, 50.0], "AV": [5.0, 20.0, 45.0], "TA": [10.0, 30.0, 50.0],
                    "AT": [5.0, 30.0, 55.00000000000001]}]}


def test_default_head_reproduces_the_previous_evaluation():
  p0, xs, val, test = _problem()
  cfg = ev.EvalConfig(runs=2, lrs=(0.1, 1.0), max_epochs=4, patience=2, batch_size=8)
  assert cfg.head == "linear_pretrained"
  out = ev.evaluate_set(jax.random.key(5), p0, xs, test, cfg, val_xs=val)
  assert out["lr"] == GOLDEN["lr"] and out["epochs"] == GOLDEN["epochs"]
  assert out["val_r1"] == pytest.approx(GOLDEN["val_r1"], rel=1e-6)
  assert {float(k): v for k, v in GOLDEN["lr_grid"].items()} == pytest.approx(out["lr_grid"], rel=1e-6)
  for run, gold in zip(out["runs"], GOLDEN["runs"]):
    assert {d: [r["R@1"], r["R@5"], r["R@10"]] for d, r in run.items()} == gold
  assert ev.record(cfg, out)["head"] == "linear_pretrained"


def test_mlp_head_matches_its_formula_and_is_unit_norm(key):
  init = heads_lib.init_mlp_heads(key, {"vision": 5}, out_dim=4, hidden=7)["vision"]
  assert jax.tree_util.tree_map(np.shape, init) == {
      "LayerNorm_0": {"scale": (5,), "bias": (5,)}, "Dense_0": {"kernel": (5, 7), "bias": (7,)},
      "Dense_1": {"kernel": (7, 4), "bias": (4,)}}
  r = np.random.default_rng(1)
  p = jax.tree_util.tree_map(lambda a: r.normal(size=np.shape(a)).astype(np.float32), init)
  x = r.normal(size=(3, 5)).astype(np.float32)
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  y = (x - mu) / np.sqrt(var + heads_lib.LN_EPS) * np.asarray(p["LayerNorm_0"]["scale"]) \
      + np.asarray(p["LayerNorm_0"]["bias"])
  h = np.asarray(jax.nn.gelu(y @ np.asarray(p["Dense_0"]["kernel"]) + np.asarray(p["Dense_0"]["bias"])))
  z = h @ np.asarray(p["Dense_1"]["kernel"]) + np.asarray(p["Dense_1"]["bias"])
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  got = np.asarray(heads_lib.apply_head(p, jnp.asarray(x)))
  np.testing.assert_allclose(got, z, rtol=1e-5, atol=1e-6)
  assert heads_lib.head_dims({"vision": p}) == ({"vision": 5}, 4)
  with pytest.raises(ValueError, match="MLP head"):
    heads_lib.heads_to_npz({"vision": p})
  # the residual branch starts at zero: the head equals the linear one it extends
  lin = {"LayerNorm_0": p["LayerNorm_0"], "Dense_0": {"kernel": p["Dense_0"]["kernel"][:, :4]}}
  res = heads_lib.add_residual_mlp(key, {"vision": lin}, hidden=3)["vision"]
  assert res["Residual_0"]["kernel"].shape == (5, 3) and res["Residual_1"]["kernel"].shape == (3, 4)
  np.testing.assert_allclose(np.asarray(heads_lib.apply_head(res, jnp.asarray(x))),
                             np.asarray(heads_lib.apply_head(lin, jnp.asarray(x))), atol=1e-6)


def test_random_heads_train_from_their_own_init():
  p0, xs, val, test = _problem()
  k = jax.random.split(jax.random.key(0), 2)
  for head in ("linear_random", "mlp", "mlp_residual"):
    init = ev._init_params(k, p0, ev.EvalConfig(head=head))
    assert all(l.shape[0] == 2 for l in jax.tree_util.tree_leaves(init))
    w = np.asarray(init["vision"]["Dense_0"]["kernel"])
    pre = np.asarray(p0["vision"]["Dense_0"]["kernel"])
    if head == "mlp_residual":   # pretrained (+ init noise) with a branch drawn per run
      np.testing.assert_allclose(w[0], pre, atol=1e-2)
      r0 = np.asarray(init["vision"]["Residual_0"]["kernel"])
      assert not np.allclose(r0[0], r0[1])
      assert not np.any(np.asarray(init["vision"]["Residual_1"]["kernel"]))
    else:
      assert not np.allclose(w[0, :, :6], pre)     # not pretrained
      assert not np.allclose(w[0], w[1])            # a draw per run
    assert ("Dense_1" in init["vision"]) == (head == "mlp")
  cfg = ev.EvalConfig(runs=2, lrs=(0.1,), max_epochs=2, patience=1, batch_size=8, head="mlp")
  out = ev.evaluate_set(jax.random.key(5), p0, xs, test, cfg, val_xs=val)
  assert len(out["runs"]) == 2 and all(np.isfinite(v["R@1"]) for v in out["runs"][0].values())
  with pytest.raises(ValueError, match="eval head: expected one of"):
    dataclasses.replace(cfg, head="resnet").validate()


@pytest.fixture(scope="module")
def distilled(tiny_store, tmp_path_factory):
  """A tiny HoPA run (local=1): ``(workdir, results)``; its ``distilled/`` store."""
  wd = str(tmp_path_factory.mktemp("hopa") / "hopa_n8")
  cfg = keys.override(hopa_config.get_config(f"dataset={tiny_store.root},local=1,n=8"), {
      "progress": False, "distill.iterations": 2, "experts.lr": 0.1, "eval.runs": 1,
      "eval.max_epochs": 1, "eval.lrs": (0.1,)})
  return wd, hopa_run.train_and_evaluate(cfg, wd)


def test_evaluate_store_routes_eval_head(distilled, tmp_path):
  wd, _ = distilled
  c = keys.override(evaluate_config.get_config(), {
      "store": os.path.join(wd, "distilled"), "eval.head": "mlp", "eval.runs": 1,
      "eval.max_epochs": 1, "eval.lrs": (0.1,), "progress": False})
  res = hopa_run.evaluate_store(c, str(tmp_path / "reeval"))
  assert res[0]["eval"]["head"] == "mlp" and res[0]["runs"] == 1
  assert keys.missing_help(evaluate_config.get_config(), evaluate_config.KEYS) == []
  with pytest.raises(ValueError, match="config key 'eval.head'"):
    hopa_run.plan_lib.resolve_evaluate(keys.override(evaluate_config.get_config(), {
        "store": "x", "eval.head": "resnet"}))


def _ca_config(**extra):
  """``a__b=`` in ``extra`` sets ``a.b``."""
  return keys.override(cross_arch_config.get_config("local=1"), {
      "progress": False, "eval.runs": 1, "eval.lrs": (0.1,), "eval.max_epochs": 1,
      **{k.replace("__", "."): v for k, v in extra.items()}})


def test_cross_arch_rows_are_the_runs_rows(distilled, tiny_store, tmp_path):
  """With ImageBind's heads the distilled cell is experiments.evaluate's result, and the
  Random / Full cells are the HoPA run's random / full methods (same rows, rule, keys)."""
  wd, _ = distilled
  store = os.path.join(wd, "distilled")
  c = _ca_config(heads=("linear_pretrained",))
  md = cross_arch.run_table(c, str(tmp_path / "ca"), [store])
  cells = json.load(open(tmp_path / "ca" / "table.json"))
  assert {(x["row"], x["head"]) for x in cells} == {(r, "linear_pretrained") for r in cross_arch.ROWS}
  assert "distilled − random" in md and (tmp_path / "ca" / "cross_arch.png").exists()
  by = {(x["row"], x["head"]): x for x in cells}
  e = keys.override(evaluate_config.get_config(), {
      "store": store, "progress": False, "eval.runs": 1, "eval.lrs": (0.1,),
      "eval.max_epochs": 1, "eval.patience": 2})
  ref = hopa_run.evaluate_store(e, str(tmp_path / "reeval"))[0]
  assert by[("distilled", "linear_pretrained")]["retrieval"] == ref["retrieval"]
  base = {"progress": False, "eval.runs": 1, "eval.lrs": (0.1,), "eval.max_epochs": 1}
  for method in ("random", "full"):
    row = hopa_run.train_and_evaluate(keys.override(hopa_config.get_config(
        f"dataset={tiny_store.root},local=1,n=8,method={method}"), base),
        str(tmp_path / method))[0]
    assert by[(method, "linear_pretrained")]["retrieval"] == row["retrieval"], method
  # Resumable: a rerun reads every cell.
  done = tmp_path / "ca" / "cells" / cells[0]["label"] / "distilled_linear_pretrained" / "results.json"
  before = os.path.getmtime(done)
  cross_arch.run_table(c, str(tmp_path / "ca"), [store])
  assert os.path.getmtime(done) == before


def test_cross_arch_cells_bind_contents_not_paths_and_travel_in_an_archive(
    distilled, tmp_path, monkeypatch):
  """A cell's binding names no path (the stores' content digests instead), so its
  finished cells, archived, are read in a new workdir instead of evaluated again."""
  from hopa_jax import sweep_archive
  wd, _ = distilled
  store = os.path.join(wd, "distilled")
  c = _ca_config(heads=("linear_pretrained",))
  md = cross_arch.run_table(c, str(tmp_path / "a"), [store],
                            on_cell=lambda: sweep_archive.save(str(tmp_path / "a"),
                                                               str(tmp_path / "arch")))
  recs = [json.load(open(os.path.join(d, "config.json")))
          for d, _, names in os.walk(tmp_path / "a" / "cells") if "results.json" in names]
  assert len(recs) == len(cross_arch.ROWS)
  for rec in recs:
    assert str(tmp_path) not in json.dumps(rec) and os.sep + "tmp" not in json.dumps(rec["config"])
    assert set(rec["data"]) >= {"source_store"}
    assert rec["data"]["source_store"].startswith("sha256:")
  assert sweep_archive.restore(str(tmp_path / "arch"), str(tmp_path / "b")) == len(recs)

  def no_work(*a, **k):
    raise AssertionError("a restored cell was evaluated again")

  monkeypatch.setattr(cross_arch.ev, "evaluate_set", no_work)
  assert cross_arch.run_table(c, str(tmp_path / "b"), [store]) == md


def test_cross_arch_bad_input_is_one_line(tiny_store, tmp_path):
  with pytest.raises(ValueError, match="field 'splits': expected to contain 'val'"):
    cross_arch.run_table(_ca_config(), str(tmp_path / "x"), [tiny_store.root])   # not distilled
  assert not os.path.exists(tmp_path / "x")
  with pytest.raises(ValueError, match="config key 'heads'"):
    plan_lib.resolve_cross_arch(_ca_config(heads=("resnet",)))
  with pytest.raises(ValueError, match="eval.protocol"):
    plan_lib.resolve_cross_arch(_ca_config(eval__protocol="paper"))
  assert keys.missing_help(cross_arch_config.get_config(), cross_arch_config.KEYS) == []


def test_replaced_proxy_objectives_plug_into_experts_and_distillation():
  names = proxy_variants.register()
  assert set(names) <= set(obj_lib.OBJECTIVES)
  p0, xs, _, _ = _problem()
  r = np.random.default_rng(1)
  z = r.normal(size=(6, 3, 5)).astype(np.float32)
  z /= np.linalg.norm(z, axis=-1, keepdims=True)
  cfg = dl.DistillConfig(n=6, objective="hopa_mean", sim_kind="fixed", syn_steps=1,
                         mini_batch=3, expert_epochs=1, max_start_epoch=1, iterations=1)
  cfg.validate()    # the distillation takes it by name

  @jax.jit
  def everything(z, p0, xs):   # one program (eager ops are slow on a loaded CPU)
    zs = {m: z[:, i] for i, m in enumerate(DIMS)}
    return {"v": {v: proxy_variants.replaced_spectrum(z, v)[1] for v in proxy_variants.VARIANTS},
            "loss": {n: obj_lib.get_objective(n)(zs, jnp.eye(6)) for n in ("hopa", *names)},
            "experts": {n: jax.grad(ex.make_real_loss(n, obj_lib.ObjectiveConfig()))(p0, xs)
                        for n in names},
            "inner": jax.grad(dl.make_inner_loss(cfg), argnums=1)(
                p0, {m: v[:6] for m, v in xs.items()}, {}, jnp.arange(3), jax.random.key(0))}

  out = everything(z, p0, xs)
  mean = z.sum(1) / np.linalg.norm(z.sum(1), axis=-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(out["v"]["mean"]), mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(out["v"]["identity"]), z[:, 0], rtol=1e-5, atol=1e-6)
  vals = [float(v) for v in out["loss"].values()]
  assert all(np.isfinite(vals)) and len(set(vals)) == 3
  for g in (out["experts"], out["inner"]):
    assert all(np.all(np.isfinite(np.asarray(l))) for l in jax.tree_util.tree_leaves(g))


def test_inspect_distilled_writes_neighbours_and_projection(distilled, tmp_path):
  wd, _ = distilled
  store = os.path.join(wd, "distilled")
  out = inspect_distilled.inspect_store(store, k=3, instances=2)
  assert os.path.dirname(out["md"]) == os.path.join(wd, "inspect_distilled")
  rec = json.load(open(out["json"]))
  assert set(rec["modalities"]) == {"vision", "audio", "text"}
  inst = rec["modalities"]["text"][0]
  assert len(rec["modalities"]["text"]) == 2 and len(inst["neighbours"]) == 3
  assert "caption" in inst["neighbours"][0] and "label" in inst["neighbours"][0]
  cos = [nb["cos"] for nb in inst["neighbours"]]
  assert cos == sorted(cos, reverse=True) and inst["initial_rank"] >= 1
  val = set(json.load(open(os.path.join(store, "val", "ids.json"))))
  assert not val & {nb["id"] for m in rec["modalities"].values() for i in m for nb in i["neighbours"]}
  assert os.path.getsize(out["png"]) > 1000
  assert "## text" in open(out["md"]).read()


def test_distilled_store_finds_its_source_after_a_move_and_refuses_a_changed_one(
    distilled, tiny_store, tmp_path):
  """``extra.hopa.source_store`` is relative to the distilled store and bound to the
  source's manifest digest: a tree moved whole still resolves; a changed source stops
  with one line naming the digest field."""
  import shutil
  wd, _ = distilled
  st = store_lib.Store(os.path.join(wd, "distilled"))
  extra = st.manifest["extra"]["hopa"]
  assert not os.path.isabs(extra["source_store"]) and extra["source_manifest_sha256"]
  assert (os.path.realpath(inspect_distilled.source_store(st).root) ==
          os.path.realpath(tiny_store.root))
  # Move source and distilled store together, keeping their relative layout.
  common = os.path.commonpath([os.path.realpath(tiny_store.root), os.path.realpath(st.root)])
  moved = str(tmp_path / "moved")
  for d in (os.path.realpath(tiny_store.root), os.path.realpath(st.root)):
    shutil.copytree(d, os.path.join(moved, os.path.relpath(d, common)))
  st2 = store_lib.Store(os.path.join(moved, os.path.relpath(os.path.realpath(st.root), common)))
  src2 = inspect_distilled.source_store(st2, check_hashes=False)
  assert os.path.realpath(src2.root).startswith(os.path.realpath(moved))
  # A changed source (its manifest rewritten) is refused by the digest.
  mpath = os.path.join(src2.root, store_lib.MANIFEST)
  with open(mpath, "a") as f:
    f.write("\n")
  with pytest.raises(store_lib.StoreError, match="source_manifest_sha256"):
    inspect_distilled.source_store(st2, check_hashes=False)


def test_inspect_distilled_binary_help_and_run(distilled, tiny_store, tmp_path):
  wd, _ = distilled
  h = subprocess.run([sys.executable, "-m", "experiments.inspect_distilled", "--help"],
                     capture_output=True, text=True)
  assert h.returncode == 0 and "--store" in h.stdout and "--k" in h.stdout, h.stderr[-2000:]
  r = subprocess.run([sys.executable, "-m", "experiments.inspect_distilled",
                      f"--store={os.path.join(wd, 'distilled')}", f"--out={tmp_path / 'o'}",
                      "--k=2", "--instances=1"], capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  assert (tmp_path / "o" / "projection.png").exists() and "neighbours.md" in r.stdout
  bad = subprocess.run([sys.executable, "-m", "experiments.inspect_distilled",
                        f"--store={tiny_store.root}", f"--out={tmp_path / 'b'}"],
                       capture_output=True, text=True)
  assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
  assert "extra.hopa.source_store" in bad.stderr
  h = subprocess.run([sys.executable, "-m", "experiments.cross_arch", "--help"],
                     capture_output=True, text=True)
  assert h.returncode == 0 and "heads" in h.stdout and "--stores" in h.stdout, h.stderr[-2000:]


def test_every_consumer_reads_s_hat_through_one_reader(distilled, tmp_path):
  """Evaluation, cross-architecture and the bound study read a distilled store's Ŝ by
  :func:`inspect_distilled.load_similarity`: the same array, and the same one-line
  refusal of an unlisted, absent, misshapen or non-finite Ŝ (cross_arch used to read an
  unlisted file)."""
  import shutil
  from hopa_jax import study
  wd, _ = distilled
  src = os.path.join(wd, "distilled")
  st = store_lib.Store(src)
  s = inspect_distilled.load_similarity(st)
  assert s.shape == (8, 8) and s.dtype == np.float32
  np.testing.assert_array_equal(s, np.load(os.path.join(src, inspect_distilled.SIMILARITY)))
  np.testing.assert_array_equal(cross_arch.load_sets(src, rows=("distilled",)).sim["S"], s)
  np.testing.assert_array_equal(study.load_distilled(src, st.modalities)[1], s)
  # Broken copies next to the original, so that its relative source store resolves.
  d = os.path.join(wd, "distilled_broken")
  shutil.copytree(src, d)
  mpath, spath = os.path.join(d, store_lib.MANIFEST), os.path.join(d, inspect_distilled.SIMILARITY)
  man = json.load(open(mpath, encoding="utf-8"))

  def write(m):
    json.dump(m, open(mpath, "w", encoding="utf-8"))

  try:
    write({**man, "files": {k: v for k, v in man["files"].items() if k != "similarity.npy"}})
    for read in (lambda: inspect_distilled.load_similarity(store_lib.Store(d)),
                 lambda: cross_arch.load_sets(d, rows=("distilled",)),
                 lambda: study.load_distilled(d, st.modalities)):
      with pytest.raises(store_lib.StoreError, match="'files': expected 'similarity.npy' listed"):
        read()
    write(man)
    for bad, match in ((np.zeros((3, 3), np.float32), r"field 'shape': expected \(8, 8\)"),
                       (np.full((8, 8), np.nan, np.float32), "expected finite entries, found 64")):
      np.save(spath, bad)
      with pytest.raises(store_lib.StoreError, match=match):
        inspect_distilled.load_similarity(store_lib.Store(d))
    os.remove(spath)
    with pytest.raises(store_lib.StoreError, match="found no file"):
      inspect_distilled.load_similarity(store_lib.Store(d))
    # A store without Ŝ (its targets are I): None, for every consumer.
    extra = {**man["extra"], "hopa": {**man["extra"]["hopa"], "similarity": None}}
    write({**man, "extra": extra,
           "files": {k: v for k, v in man["files"].items() if k != "similarity.npy"}})
    assert inspect_distilled.load_similarity(store_lib.Store(d)) is None
    assert cross_arch.load_sets(d, rows=("distilled",), check_hashes=False).sim is None
  finally:
    shutil.rmtree(d)
