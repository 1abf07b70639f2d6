"""Store v1: round trip, resume, CLI, and one clear error per kind of bad input."""

import json
import os
import shutil

import numpy as np
import pytest

from embed import store as S


def _unit(a):
  return a / np.linalg.norm(a, axis=1, keepdims=True)


DIMS = {"vision": (5, 4), "text": (3, 4)}


def _heads(dims=DIMS):
  rng = np.random.default_rng(2)
  out = {}
  for m, (d, e) in dims.items():
    out.update({f"{m}/ln_scale": np.ones(d, np.float32), f"{m}/ln_bias": np.zeros(d, np.float32),
                f"{m}/kernel": rng.normal(size=(d, e)).astype(np.float32)})
  return out


def _make(root, n=6, labels=True, nc=3):
  rng = np.random.default_rng(0)
  mods = {m: S.ModalitySpec(d, e) for m, (d, e) in DIMS.items()}
  split = dict(ids=[f"x{i}" for i in range(n)],
               features={"vision": rng.normal(size=(n, 5)), "text": rng.normal(size=(n, 3))},
               embeddings={"vision": _unit(rng.normal(size=(n, 4))),
                           "text": _unit(rng.normal(size=(n, 4)))},
               labels=np.arange(n) % nc if labels else None,
               captions=[f"c{i}" for i in range(n)])
  test = {**split, "ids": [f"t{i}" for i in range(n)]}
  S.write_store(str(root), mods, {"train": split, "test": test}, heads=_heads(), encoder="t",
                class_names=[f"k{i}" for i in range(nc)] if labels else None)
  return split


def test_round_trip(tmp_path):
  split = _make(tmp_path)
  st = S.validate(str(tmp_path))
  assert st.modalities == ["vision", "text"] and st.splits == ["train", "test"]
  np.testing.assert_allclose(st.features("train", "vision"), split["features"]["vision"], rtol=1e-6)
  assert isinstance(st.features("train", "vision"), np.memmap)
  np.testing.assert_array_equal(st.labels("test"), split["labels"])
  assert st.ids("train") == split["ids"] and st.captions("train") == split["captions"]
  assert st.heads()["vision/kernel"].shape == (5, 4) and st.heads()["text/kernel"].shape == (3, 4)
  assert st.num_classes == 3 and st.count("train") == 6
  assert "vision (V)" in st.info()


def test_sharded_resume(tmp_path):
  rng = np.random.default_rng(1)
  mods = {"audio": S.ModalitySpec(2, 3)}

  def shard(i):
    return dict(ids=[f"s{i}-{j}" for j in range(2)], features={"audio": rng.normal(size=(2, 2))},
                embeddings={"audio": _unit(rng.normal(size=(2, 3)))})

  w = S.StoreWriter(str(tmp_path), mods, encoder="t")
  w.write_shard("train", 0, **shard(0))
  # "killed" here; a new writer resumes and skips the finished shard
  w2 = S.StoreWriter(str(tmp_path), mods, encoder="t")
  assert w2.has_shard("train", 0) and not w2.has_shard("train", 1)
  w2.write_shard("train", 1, **shard(1))
  w2.finalize()
  st = S.validate(str(tmp_path))
  assert st.ids("train") == ["s0-0", "s0-1", "s1-0", "s1-1"]
  assert not os.path.exists(tmp_path / "train" / ".shards")
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def _expect(tmp_path, match, modalities=None):
  with pytest.raises(S.StoreError, match=match):
    S.validate(str(tmp_path), modalities)


def _rewrite_manifest(tmp_path, **kv):
  p = tmp_path / "manifest.json"
  m = json.loads(p.read_text())
  m.update(kv)
  p.write_text(json.dumps(m))


def _resave(tmp_path, rel, arr):
  arr = np.asarray(arr)
  np.save(tmp_path / rel, arr.astype(np.float32) if arr.dtype == np.float64 else arr)
  _rewrite_manifest(tmp_path, files={})  # skip hashes: we test the content check


def test_missing_manifest(tmp_path):
  _make(tmp_path)
  os.remove(tmp_path / "manifest.json")
  _expect(tmp_path, r"manifest.json.*expected a manifest")


def test_unknown_version(tmp_path):
  _make(tmp_path)
  _rewrite_manifest(tmp_path, format_version=7)
  _expect(tmp_path, r"format_version': expected 1, found 7")


def test_row_count_mismatch(tmp_path):
  _make(tmp_path)
  _resave(tmp_path, "train/text.features.npy", np.zeros((5, 3)))
  _expect(tmp_path, r"text.features.npy: field 'rows': expected 6")


def test_dim_mismatch(tmp_path):
  _make(tmp_path)
  _resave(tmp_path, "train/vision.features.npy", np.zeros((6, 7)))
  _expect(tmp_path, r"vision.features.npy: field 'feature_dim': expected 5, found 7")


def test_nan_rows(tmp_path):
  _make(tmp_path)
  a = np.ones((6, 5))
  a[3, 1] = np.nan
  _resave(tmp_path, "train/vision.features.npy", a)
  _expect(tmp_path, r"field 'row 3': expected finite values, found NaN or inf")


def test_not_unit_norm(tmp_path):
  _make(tmp_path)
  _resave(tmp_path, "test/text.embeddings.npy", np.full((6, 4), 0.9))
  _expect(tmp_path, r"text.embeddings.npy: field 'row 0 norm': expected 1 ± 0.01")


def test_label_out_of_range(tmp_path):
  _make(tmp_path)
  _resave(tmp_path, "train/labels.npy", np.array([0, 1, 2, 3, 0, 1]))
  _expect(tmp_path, r"labels.npy: field 'label': expected in \[0, 3\), found 3")


def test_sha_mismatch(tmp_path):
  _make(tmp_path)
  with open(tmp_path / "train" / "ids.json", "a") as f:
    f.write(" ")
  _expect(tmp_path, r"ids.json: field 'sha256'.*corrupted")


def test_missing_modality(tmp_path):
  _make(tmp_path)
  _expect(tmp_path, r"field 'modalities': expected to contain 'depth'", ["vision", "depth"])


def test_cli(tmp_path, capsys):
  _make(tmp_path)
  assert S.main(["info", str(tmp_path)]) == 0
  assert "split train: 6 instances" in capsys.readouterr().out
  assert S.main(["validate", str(tmp_path)]) == 0
  shutil.rmtree(tmp_path / "test")
  assert S.main(["validate", str(tmp_path)]) == 1
  assert "error:" in capsys.readouterr().err


def test_atomic_writes_use_the_umask_mode(tmp_path):
  import os
  from embed import store as S
  old = os.umask(0o022)
  try:
    S.atomic_write_text(str(tmp_path / "a.txt"), "x")
    assert (os.stat(tmp_path / "a.txt").st_mode & 0o777) == 0o644
  finally:
    os.umask(old)


# --- issue 13: every kind of damage ends in one StoreError line naming file and field ---

def _trunc(tmp_path):
  p = tmp_path / "train" / "vision.features.npy"
  p.write_bytes(p.read_bytes()[:100])
  _rewrite_manifest(tmp_path, files={})


def _json(tmp_path, rel, obj):
  (tmp_path / rel).write_text(json.dumps(obj))
  _rewrite_manifest(tmp_path, files={})


def _big(tmp_path):
  _resave(tmp_path, "test/vision.embeddings.npy", np.full((6, 4), 1e30, np.float32))


BAD_STORES = {
    "nan_test_features": (lambda p: _resave(p, "test/text.features.npy",
                                            np.where(np.eye(6, 3) > 0, np.nan, 1.0)),
                          r"test/text.features.npy: field 'row 0': expected finite"),
    "train_rows": (lambda p: _resave(p, "train/vision.embeddings.npy", _unit(np.ones((4, 4)))),
                   r"train/vision.embeddings.npy: field 'rows': expected 6"),
    "sha256": (lambda p: (p / "train" / "ids.json").write_text(json.dumps(
        [f"y{i}" for i in range(6)])), r"ids.json: field 'sha256'"),
    "not_unit_norm": (lambda p: _resave(p, "train/text.embeddings.npy", np.full((6, 4), 0.2)),
                      r"field 'row 0 norm': expected 1 ± 0.01 .*found 0.4"),
    "huge_embeddings": (_big, r"vision.embeddings.npy: field 'row 0 norm'"),
    "test_label_range": (lambda p: _resave(p, "test/labels.npy", np.array([0, 1, 2, 3, 0, 9])),
                         r"test/labels.npy: field 'label': expected in \[0, 3\), found 3"),
    "float_labels": (lambda p: _resave(p, "train/labels.npy", np.zeros(6, np.float32)),
                     r"train/labels.npy: field 'dtype': expected integer class ids, found float32"),
    "duplicate_ids": (lambda p: _json(p, "train/ids.json", ["a", "b", "c", "a", "d", "e"]),
                      r"ids.json: field 'ids': expected unique ids, found 'a' repeated"),
    "string_class_names": (lambda p: _rewrite_manifest(p, class_names="k0k1k2"),
                           r"field 'class_names': expected null or a non-empty list of strings"),
    "list_modalities": (lambda p: _rewrite_manifest(p, modalities=["vision", "text"]),
                        r"field 'modalities': expected a non-empty object"),
    "missing_ids": (lambda p: os.remove(p / "test" / "ids.json"),
                    r"test/ids.json: field '(ids|file)': expected present"),
    "truncated_npy": (_trunc, r"vision.features.npy: field 'vision.features': expected a "
                              r"readable .npy array"),
    "int32_features": (lambda p: _resave(p, "train/text.features.npy", np.zeros((6, 3), np.int32)),
                       r"field 'dtype': expected float32 .*found int32"),
    "float16_features": (lambda p: _resave(p, "train/text.features.npy",
                                           np.zeros((6, 3), np.float16)),
                         r"field 'dtype': expected float32 .*found float16"),
    "missing_encoder": (lambda p: _rewrite_manifest(p, encoder=None),
                        r"field 'encoder': expected an object"),
    "negative_count": (lambda p: _rewrite_manifest(p, splits={"train": {"count": -1},
                                                              "test": {"count": 6}}),
                       r"field 'splits.train.count': expected an integer ≥ 0, found -1"),
    "manifest_not_object": (lambda p: (p / "manifest.json").write_text("[1, 2]"),
                            r"manifest.json: field 'manifest.json': expected a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_STORES))
def test_bad_store_one_line(tmp_path, case):
  _make(tmp_path)
  damage, match = BAD_STORES[case]
  damage(tmp_path)
  with pytest.raises(S.StoreError, match=match) as e:
    S.validate(str(tmp_path))
  assert "\n" not in str(e.value)


def test_required_and_nonempty_splits(tmp_path):
  _make(tmp_path)
  with pytest.raises(S.StoreError, match=r"field 'splits': expected to contain 'val'"):
    S.validate(str(tmp_path), require_splits=("train", "val"))
  _rewrite_manifest(tmp_path, splits={"train": {"count": 6}, "test": {"count": 0}}, files={})
  with pytest.raises(S.StoreError, match=r"field 'splits.test.count': expected ≥ 1 row, found 0"):
    S.validate(str(tmp_path), nonempty=("test",), check_hashes=False)


@pytest.mark.parametrize("case", ["truncated_npy", "list_modalities", "manifest_not_object"])
def test_validate_cli_never_raw_raises(tmp_path, case, capsys):
  _make(tmp_path)
  BAD_STORES[case][0](tmp_path)
  for cmd in ("validate",) if case == "truncated_npy" else ("validate", "info"):
    assert S.main([cmd, str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err


# --- issue 17: heads.npz, ids across splits, what writers refuse -------------------------

def _edit_heads(tmp_path, edit):
  with np.load(tmp_path / "heads.npz") as z:
    arrays = {k: z[k] for k in z.files}
  edit(arrays)
  np.savez(tmp_path / "heads.npz", **arrays)
  _rewrite_manifest(tmp_path, files={})


def _set(key, value):
  return lambda a: a.__setitem__(key, value)


def _nan_kernel(a):
  a["text/kernel"] = a["text/kernel"].copy()
  a["text/kernel"][1, 2] = np.nan


BAD_HEADS = {
    "missing_key": (lambda a: a.pop("text/ln_bias"),
                    r"heads.npz: field 'text/ln_bias': expected an array of shape \(3,\).*"
                    r"found no such key"),
    "kernel_shape": (_set("vision/kernel", np.zeros((5, 2), np.float32)),
                     r"heads.npz: field 'vision/kernel': expected shape \(5, 4\) \(manifest "
                     r"modalities.vision: feature_dim 5, embedding_dim 4\), found \(5, 2\)"),
    "nan_kernel": (_nan_kernel, r"heads.npz: field 'text/kernel': expected finite weights, "
                                r"found 1 NaN or inf of 12"),
    "bias_shape": (_set("text/bias", np.zeros(3, np.float32)),
                   r"field 'text/bias': expected shape \(4,\)"),
    "int_scale": (_set("vision/ln_scale", np.ones(5, np.int64)),
                  r"field 'vision/ln_scale': expected floating-point weights, found int64"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADS))
def test_bad_heads_one_line(tmp_path, case):
  """NaN weights used to surface as "every probe lr diverged", a missing key as a
  KeyError after the workdir existed, a wrong kernel as a dot_general TypeError."""
  _make(tmp_path)
  edit, match = BAD_HEADS[case]
  _edit_heads(tmp_path, edit)
  with pytest.raises(S.StoreError, match=match) as e:
    S.validate(str(tmp_path))
  assert "\n" not in str(e.value)


def test_heads_of_other_modalities_and_a_bias_are_accepted(tmp_path):
  _make(tmp_path)
  _edit_heads(tmp_path, lambda a: a.update({"depth/kernel": np.zeros((2, 2), np.float32),
                                            "vision/bias": np.zeros(4, np.float32)}))
  S.validate(str(tmp_path))


def test_id_in_two_splits_is_leakage(tmp_path):
  _make(tmp_path)
  _json(tmp_path, "test/ids.json", ["t0", "t1", "x3", "t3", "x1", "t5"])
  with pytest.raises(S.StoreError, match=r"test/ids.json: field 'ids': expected no id shared "
                     r"with split 'train' .*found 'x3' in both 'train' and 'test'"):
    S.validate(str(tmp_path))


def _split(n):
  rng = np.random.default_rng(0)
  return dict(ids=[f"x{i}" for i in range(n)],
              features={"vision": rng.normal(size=(n, 5)), "text": rng.normal(size=(n, 3))},
              embeddings={"vision": _unit(rng.normal(size=(n, 4))),
                          "text": _unit(rng.normal(size=(n, 4)))})


def test_writer_refuses_values_the_float16_cast_makes_infinite(tmp_path):
  """A float16 store used to be finalised holding infs (|x| > 65504)."""
  mods = {m: S.ModalitySpec(d, e, "float16") for m, (d, e) in DIMS.items()}
  big = _split(6)
  big["features"]["vision"] = np.full((6, 5), 7e4)   # beyond float16's ±65504
  big["features"]["vision"][0] = 1.0
  with pytest.raises(S.StoreError, match=r"train/shard 0: field 'vision.features': expected "
                     r"finite values after the cast to float16, found 25 non-finite of 30 "
                     r"\(25 made by the cast: \|value\| > 65504") as e:
    S.write_store(str(tmp_path), mods, {"train": big}, encoder="t")
  assert "\n" not in str(e.value)
  assert not os.path.exists(tmp_path / "manifest.json")
  S.write_store(str(tmp_path / "ok"), mods, {"train": _split(6)}, encoder="t")   # fits: fine


def test_writer_refuses_nan_inputs_and_bad_heads(tmp_path):
  mods = {m: S.ModalitySpec(d, e) for m, (d, e) in DIMS.items()}
  sp = _split(6)
  sp["embeddings"]["text"][2, 0] = np.inf
  with pytest.raises(S.StoreError, match=r"field 'text.embeddings': expected finite values "
                     r"after the cast to float32, found 1 non-finite of 24 \(non-finite before"):
    S.write_store(str(tmp_path / "a"), mods, {"train": sp}, encoder="t")
  heads = _heads()
  heads["vision/kernel"] = np.full((5, 4), np.nan, np.float32)
  with pytest.raises(S.StoreError, match=r"heads.npz: field 'vision/kernel': expected finite"):
    S.write_store(str(tmp_path / "b"), mods, {"train": _split(6)}, heads=heads, encoder="t")
  assert not os.path.exists(tmp_path / "b" / "heads.npz")
  with pytest.raises(S.StoreError, match=r"heads.npz: field 'text/kernel': expected shape"):
    S.write_store(str(tmp_path / "c"), mods, {"train": _split(6)},
                  heads=_heads({"vision": (5, 4), "text": (3, 7)}), encoder="t")


def test_atomic_write_error_names_the_destination(tmp_path, monkeypatch):
  """A failed write (ENOSPC from np.savez's close) carries no file name; the
  atomic writers name the file being written, never the temporary one."""
  import errno

  def full(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(np, "savez", full)
  with pytest.raises(OSError) as e:
    S.atomic_save_npz(str(tmp_path / "heads.npz"), {"a": np.zeros(3)})
  assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "heads.npz")
  assert os.listdir(tmp_path) == []          # the temporary file is gone

  real_open = open

  def ro_open(path, *a, **k):
    if os.path.basename(str(path)).startswith(".tmp-"):
      raise OSError(errno.EROFS, "Read-only file system", str(path))
    return real_open(path, *a, **k)

  monkeypatch.setattr("builtins.open", ro_open)
  with pytest.raises(OSError) as e:
    S.atomic_write_json(str(tmp_path / "config.json"), {})
  assert e.value.errno == errno.EROFS and e.value.filename == str(tmp_path / "config.json")
