"""The ImageBind embedding stage end to end, on CPU, with a tiny random-weight ImageBind
and a small example dataset made from real offline content (tests/embed_example.py)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the embed extra (torch) is not installed: "
                            "bash scripts/install_embed.sh .venv/bin/python")
for _mod in ("av", "soundfile", "sklearn", "PIL"):
  pytest.importorskip(_mod, reason=f"{_mod} is needed to write the example dataset: "
                      "bash scripts/install_embed.sh .venv/bin/python")
try:
  from embed import imagebind_loader as L
  L.import_imagebind()
except ImportError as e:  # pragma: no cover
  pytest.skip(f"ImageBind model code not importable ({e}); run scripts/install_embed.sh",
              allow_module_level=True)

from embed import imagebind as IB  # noqa: E402
from embed import preprocess as P  # noqa: E402
from embed import store as S  # noqa: E402
from tests import embed_example  # noqa: E402

MODS = ["vision", "audio", "text", "depth"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  d = tmp_path_factory.mktemp("embed")
  data = str(d / "data")
  embed_example.make_example(data)
  torch.manual_seed(0)
  ckpt = str(d / "tiny.pt")
  L.save_checkpoint(ckpt, L.build_model(L.TINY_CONFIG), L.TINY_CONFIG)
  ref = str(d / "ref")
  assert _run(data, ckpt, ref) == 0
  return {"dir": d, "data": data, "ckpt": ckpt, "ref": ref}


def _run(data, ckpt, out, *extra):
  return IB.main(["--dataset", "manifest", "--root", data, "--checkpoint", ckpt, "--out", out,
                  "--shard-size", "2", "--batch-size", "3", "--quiet", *extra])


def _arrays(root):
  st = S.Store(root)
  out = {}
  for s in st.splits:
    for m in st.modalities:
      out[f"{s}/{m}/f"] = np.asarray(st.features(s, m))
      out[f"{s}/{m}/e"] = np.asarray(st.embeddings(s, m))
    out[f"{s}/ids"] = st.ids(s)
    out[f"{s}/labels"] = np.asarray(st.labels(s))
  return out


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    if isinstance(a[k], list):
      assert a[k] == b[k], k
    else:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_store_is_valid_and_complete(env):
  st = S.validate(env["ref"], MODS)
  assert sorted(st.splits) == ["test", "train"]
  assert st.count("train") == 5 and st.count("test") == 3
  assert st.ids("train") == ["ex00", "ex01", "ex02", "ex03", "ex04"]  # manifest order
  assert st.class_names == embed_example.NAMES
  assert st.labels("test").tolist() == [7, 3, 9]
  assert st.captions("test") == ["the digit seven", "the digit three", "the digit nine"]
  for m in MODS:
    assert st.spec(m).feature_dim == 32 and st.spec(m).embedding_dim == 32
  h = st.heads()
  assert sorted(h) == sorted(f"{m}/{k}" for m in MODS for k in ("kernel", "ln_bias", "ln_scale"))
  assert h["vision/kernel"].shape == (32, 32)
  assert st.manifest["skipped"] == []
  assert st.manifest["encoder"]["checkpoint_sha256"] == L.sha256_of(env["ckpt"])


def _np_heads(h, m, x):
  mu = x.mean(-1, keepdims=True)
  var = x.var(-1, keepdims=True)
  y = (x - mu) / np.sqrt(var + 1e-6) * h[f"{m}/ln_scale"] + h[f"{m}/ln_bias"]
  y = y @ h[f"{m}/kernel"] + h.get(f"{m}/bias", 0.0)
  return y / np.linalg.norm(y, axis=-1, keepdims=True)


def test_features_reproduce_embeddings_through_heads(env):
  st = S.Store(env["ref"])
  h = st.heads()
  for split in st.splits:
    ids = st.ids(split)
    for m in ("text", "depth"):  # single-clip modalities: exact under ImageBind's pooling
      np.testing.assert_allclose(_np_heads(h, m, np.asarray(st.features(split, m))),
                                 st.embeddings(split, m), atol=2e-5)
    img_rows = [i for i, x in enumerate(ids) if x not in ("ex01", "ex06")]  # images, not videos
    f = np.asarray(st.features(split, "vision"))[img_rows]
    np.testing.assert_allclose(_np_heads(h, "vision", f),
                               np.asarray(st.embeddings(split, "vision"))[img_rows], atol=2e-5)


def test_features_pooling_reproduces_every_modality_with_jax_heads(env):
  out = str(env["dir"] / "featpool")
  assert _run(env["data"], env["ckpt"], out, "--clip-pooling", "features") == 0
  st = S.validate(out)
  from mmdd_jax import heads as H
  params = H.heads_from_npz(st.heads())
  for split in st.splits:
    xs = {m: np.asarray(st.features(split, m)) for m in MODS}
    got = H.apply_heads(params, xs)
    for m in MODS:
      np.testing.assert_allclose(np.asarray(got[m]), st.embeddings(split, m), atol=3e-5)
  ref = S.Store(env["ref"])
  np.testing.assert_array_equal(st.features("train", "audio"), ref.features("train", "audio"))


def test_embeddings_match_imagebind_forward_and_clip_definition(env):
  model, _ = L.load_model(env["ckpt"])
  x = torch.stack([P.load_audio(os.path.join(env["data"], f"ex0{i}.wav")) for i in (0, 1)])
  f, e, fc, ec = IB.encode(model, "audio", x, return_clips=True)
  ib = torch.nn.functional.normalize(model({"audio": x})["audio"].detach(), dim=-1).numpy()
  np.testing.assert_allclose(e, ib, atol=1e-5)  # ImageBind's own output, made unit-norm
  np.testing.assert_allclose(f, fc.mean(1), atol=1e-6)
  h = IB.heads_npz(model, ["audio"])
  np.testing.assert_allclose(_np_heads(h, "audio", fc), ec, atol=2e-5)  # per clip: exact
  st = S.Store(env["ref"])
  np.testing.assert_allclose(st.embeddings("train", "audio")[:2], e, atol=1e-6)
  v = P.load_video(os.path.join(env["data"], "ex01.mp4"))[None]
  _, ev = IB.encode(model, "vision", v)
  ibv = torch.nn.functional.normalize(model({"vision": v})["vision"].detach(), dim=-1).numpy()
  np.testing.assert_allclose(ev, ibv, atol=1e-5)
  np.testing.assert_allclose(st.embeddings("train", "vision")[1], ev[0], atol=1e-6)


def test_deterministic(env):
  out = str(env["dir"] / "again")
  assert _run(env["data"], env["ckpt"], out) == 0
  _assert_same(_arrays(env["ref"]), _arrays(out))
  # other batch sizes / worker processes are checked in the kill-and-resume test


def test_resume_after_kill_loses_and_duplicates_nothing(env):
  out = str(env["dir"] / "killed")
  cmd = [sys.executable, "-m", "embed.imagebind", "--dataset", "manifest", "--root", env["data"],
         "--checkpoint", env["ckpt"], "--out", out, "--shard-size", "2", "--quiet",
         "--num-workers", "2", "--batch-size", "5"]  # a fresh process: forking is safe
  r = subprocess.run(cmd, cwd=REPO, env={**os.environ, IB.CRASH_ENV: "2"}, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 137, r.stderr
  assert not os.path.exists(os.path.join(out, S.MANIFEST))
  done = sorted(f for s in ("train", "test") if os.path.isdir(os.path.join(out, s, ".shards"))
                for f in os.listdir(os.path.join(out, s, ".shards")) if f.endswith(".done.json"))
  assert len(done) == 2
  assert _run(env["data"], env["ckpt"], out) == 0
  a, b = _arrays(env["ref"]), _arrays(out)
  for k in a:  # other batch sizes: equal up to float32 summation order
    if isinstance(a[k], list):
      assert a[k] == b[k], k
    else:
      np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
  assert _run(env["data"], env["ckpt"], out) == 0  # a finished store: nothing to do


def test_resume_with_other_settings_is_refused(env, capsys):
  out = str(env["dir"] / "mismatch")
  assert _run(env["data"], env["ckpt"], out, "--splits", "test") == 0
  assert _run(env["data"], env["ckpt"], out, "--splits", "test", "--clip-pooling", "features") == 1
  assert "extra" in capsys.readouterr().err


def test_shards_from_two_workers_merge(env, monkeypatch):
  out = str(env["dir"] / "sharded")
  assert _run(env["data"], env["ckpt"], out, "--num-shards", "2", "--shard-index", "1") == 0
  assert not os.path.exists(os.path.join(out, S.MANIFEST))
  monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun: rank 0 of 2
  monkeypatch.setenv("RANK", "0")
  assert _run(env["data"], env["ckpt"], out) == 0
  assert not os.path.exists(os.path.join(out, S.MANIFEST))
  assert S.main(["merge", out]) == 0
  _assert_same(_arrays(env["ref"]), _arrays(out))


def _broken_copy(env, name):
  d = str(env["dir"] / name)
  shutil.copytree(env["data"], d)
  with open(os.path.join(d, "ex02.png"), "wb") as f:
    f.write(b"garbage, not a PNG")
  os.remove(os.path.join(d, "ex05.wav"))
  return d


def test_bad_file_error_names_it(env, capsys):
  d = _broken_copy(env, "bad_error")
  assert _run(d, env["ckpt"], str(env["dir"] / "bad_error_out")) == 1
  err = capsys.readouterr().err
  # splits run in sorted order: the test split's missing wav is met first
  assert "ex05.wav" in err and "instance 'ex05'" in err and "no file" in err
  assert "--on-bad-file=skip" in err
  assert _run(d, env["ckpt"], str(env["dir"] / "bad_error_out2"), "--splits", "train") == 1
  err = capsys.readouterr().err
  assert "ex02.png" in err and "instance 'ex02'" in err and "undecodable" in err


def test_bad_file_skip_records_them(env):
  d = _broken_copy(env, "bad_skip")
  out = str(env["dir"] / "bad_skip_out")
  assert _run(d, env["ckpt"], out, "--on-bad-file", "skip") == 0
  st = S.validate(out)
  assert st.ids("train") == ["ex00", "ex01", "ex03", "ex04"]
  assert st.ids("test") == ["ex06", "ex07"]
  sk = {(s["split"], s["id"], s["modality"]): s for s in st.manifest["skipped"]}
  assert set(sk) == {("train", "ex02", "vision"), ("test", "ex05", "audio")}
  assert sk[("train", "ex02", "vision")]["path"].endswith("ex02.png")
  assert "no file" in sk[("test", "ex05", "audio")]["error"]
  ref = S.Store(env["ref"])
  # other batch compositions: equal up to float32 summation order
  np.testing.assert_allclose(st.embeddings("test", "text"), ref.embeddings("test", "text")[1:],
                             atol=1e-6)


def test_empty_cell_is_a_bad_instance(env, capsys):
  d = str(env["dir"] / "empty_cell")
  shutil.copytree(env["data"], d)
  p = os.path.join(d, "manifest.csv")
  lines = open(p, encoding="utf-8").read().splitlines()
  lines[2] = lines[2].replace("ex01.wav", "")
  open(p, "w", encoding="utf-8").write("\n".join(lines) + "\n")
  assert _run(d, env["ckpt"], str(env["dir"] / "empty_cell_out"), "--splits", "train") == 1
  assert "'ex01'" in capsys.readouterr().err


def test_jsonl_manifest_and_modality_subset(env):
  d = str(env["dir"] / "jsonl")
  shutil.copytree(env["data"], d)
  import csv
  rows = list(csv.DictReader(open(os.path.join(d, "manifest.csv"), encoding="utf-8")))
  os.remove(os.path.join(d, "manifest.csv"))
  with open(os.path.join(d, "manifest.jsonl"), "w", encoding="utf-8") as f:
    for r in rows:
      f.write(json.dumps({k: v for k, v in r.items() if k not in ("audio",)}) + "\n")
  out = str(env["dir"] / "jsonl_out")
  assert _run(d, env["ckpt"], out, "--modalities", "text,depth") == 0
  st = S.validate(out, ["text", "depth"])
  assert st.modalities == ["text", "depth"]
  np.testing.assert_array_equal(st.embeddings("train", "depth"),
                                S.Store(env["ref"]).embeddings("train", "depth"))


def test_missing_checkpoint_says_where_to_get_it(env, capsys):
  assert _run(env["data"], str(env["dir"] / "nope.pth"), str(env["dir"] / "x")) == 1
  err = capsys.readouterr().err
  assert "nope.pth" in err and L.OFFICIAL_CHECKPOINT_URL in err and "--checkpoint" in err


def test_bad_checkpoint_is_reported(env):
  p = str(env["dir"] / "wrong.pt")
  torch.save({"config": L.TINY_CONFIG, "state_dict": {"x": torch.zeros(1)}}, p)
  with pytest.raises(L.CheckpointError, match="missing"):
    L.load_model(p)


def test_loader_leaves_no_timm_stub_behind():
  assert "timm" not in sys.modules or hasattr(sys.modules["timm"], "__file__")


@pytest.mark.skipif(not os.environ.get("IMAGEBIND_CHECKPOINT"),
                    reason="opt-in: set IMAGEBIND_CHECKPOINT=/path/to/imagebind_huge.pth")
def test_real_checkpoint(env):
  out = str(env["dir"] / "real")
  assert IB.main(["--dataset", "manifest", "--root", env["data"], "--checkpoint",
                  os.environ["IMAGEBIND_CHECKPOINT"], "--out", out, "--splits", "test",
                  "--batch-size", "3", "--quiet"]) == 0
  st = S.validate(out, MODS)
  dims = {m: (st.spec(m).feature_dim, st.spec(m).embedding_dim) for m in MODS}
  assert dims == {"vision": (1280, 1024), "audio": (768, 1024), "text": (1024, 1024),
                  "depth": (384, 1024)}
  h = st.heads()
  for m in ("text", "depth"):
    np.testing.assert_allclose(_np_heads(h, m, np.asarray(st.features("test", m))),
                               st.embeddings("test", m), atol=1e-4)
  # Zero-shot sanity on real content: each spoken caption is nearest its own text.
  sim = np.asarray(st.embeddings("test", "audio")) @ np.asarray(st.embeddings("test", "text")).T
  assert np.isfinite(sim).all()
