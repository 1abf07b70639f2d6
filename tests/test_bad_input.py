"""Issue 13: bad input stops before any work with one line naming the file/field or
config key, the expected and the found value; nothing is trained or written."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import evaluate as evaluate_config
from experiments.configs import hopa as hopa_config
from hopa_jax import run as hopa_run
from mmdd_jax import keys

# (get_config switches, other keys) → the one line. The config is built as a binary
# builds it (switches, then --config.a.b= keys: strings as on the command line) and
# refused by the one check (hopa_jax.plan.resolve), before any work.
BAD_HOPA_CONFIGS = {
    "distill.lr_data=-0.5": ("", {"distill.lr_data": -0.5},
                             r"'distill.lr_data': expected > 0, found -0.5"),
    "n=0": ("n=0", {}, r"'n': expected ≥ 1, found 0"),
    "ckpt_every=0": ("", {"ckpt_every": 0}, r"'ckpt_every': expected ≥ 1, found 0"),
    "experts.num_experts=0": ("", {"experts.num_experts": 0},
                              r"'experts.num_experts': expected ≥ 1, found 0"),
    "iterations=0": ("", {"distill.iterations": 0}, r"'distill.iterations': expected ≥ 1, found 0"),
    "eval.runs=0": ("", {"eval.runs": 0}, r"'eval.runs': expected ≥ 1, found 0"),
    "method=bogus": ("method=bogus", {}, r"'method': expected one of \[.*found 'bogus'"),
    "eval.protocol=bogus": ("", {"eval.protocol": "bogus"},
                            r"'eval.protocol': expected one of \['select', 'paper'\]"),
    "eval.lrs=0.1+-1": ("", {"eval.lrs": "(0.1, -1)"}, r"'eval.lrs': expected > 0 for every item"),
    "val_fraction=0": ("", {"val_fraction": "0"}, r"'val_fraction': expected in \(0, 1\), found 0.0"),
    "scale=2": ("", {"scale": "2"}, r"'scale': expected in \(0, 1\], found 2.0"),
    "pos_from=both": ("", {"objective.pos_from": "both"},
                      r"'objective.pos_from': expected one of \['targets', 'identity'\]"),
    "optimizer=rmsprop": ("optimizer=rmsprop", {},
                          r"'distill.optimizer': expected one of \('adam', 'sgd'\)|"
                          r"'distill.optimizer': expected one of \['adam', 'sgd'\]"),
    "n=abc": ("", {"n": "abc"}, r"'n': expected int, found 'abc'"),
    "nope=1": ("", {"nope": 1}, r"'nope': unknown"),
}


@pytest.mark.parametrize("arg", sorted(BAD_HOPA_CONFIGS))
def test_bad_config_is_one_line_at_parse_time(arg):
  switches, flat, match = BAD_HOPA_CONFIGS[arg]
  with pytest.raises(ValueError, match=match) as e:
    hopa_run.resolve(keys.override(hopa_config.get_config(switches), flat))
  assert "\n" not in str(e.value) and "config key" in str(e.value)


def test_evaluate_lr_zero_is_refused_not_replaced():
  with pytest.raises(ValueError, match=r"'lr': expected > 0, found 0.0"):
    hopa_run.plan_lib.resolve_evaluate(keys.override(evaluate_config.get_config(),
                                                     {"store": "x", "lr": 0.0}))


def test_inconsistent_config_stops_before_the_workdir(tiny_store, tmp_path):
  """max_start_epoch + expert_epochs beyond the experts' epochs used to fail after
  training the experts."""
  c = keys.override(hopa_config.get_config(f"dataset={tiny_store.root},local=1"),
                    {"distill.max_start_epoch": 9, "progress": False})
  with pytest.raises(ValueError, match="max_start_epoch \\+ expert_epochs"):
    hopa_run.train_and_evaluate(c, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


def _copy(store, tmp_path):
  d = tmp_path / "store"
  shutil.copytree(store.root, d)
  return d


def _no_hash(d):
  m = json.loads((d / "manifest.json").read_text())
  m["files"] = {}
  (d / "manifest.json").write_text(json.dumps(m))


def _edit_npy(d, rel, edit, keep_hashes=False):
  a = np.load(d / rel)
  np.save(d / rel, edit(a))
  if not keep_hashes:
    _no_hash(d)   # the content check, not the hash, is under test


def _nan_row(a):
  a[1] = np.nan
  return a


def _bump(a):
  a[0, 0] += 1.0
  return a


_nan_test_row = lambda d: _edit_npy(d, "test/text.features.npy", _nan_row)
_short_train = lambda d: _edit_npy(d, "train/audio.features.npy", lambda a: a[:-1])
_tamper = lambda d: _edit_npy(d, "train/vision.features.npy", _bump, keep_hashes=True)


def _empty_test(d):
  m = json.loads((d / "manifest.json").read_text())
  m["splits"]["test"]["count"] = 0
  (d / "manifest.json").write_text(json.dumps(m))


BAD_STORES = {
    "nan_test_row": (_nan_test_row, r"test/text.features.npy: field 'row 1': expected finite"),
    "short_train": (_short_train, r"train/audio.features.npy: field 'rows': expected"),
    "sha256": (_tamper, r"train/vision.features.npy: field 'sha256'"),
    "empty_test": (_empty_test, r"field 'splits.test.count': expected ≥ 1 row, found 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_STORES))
def test_bad_store_stops_before_any_work(tiny_store, tmp_path, case):
  d = _copy(tiny_store, tmp_path)
  damage, match = BAD_STORES[case]
  damage(d)
  c = hopa_config.get_config(f"dataset={d},local=1,n=8")
  c.progress = False
  with pytest.raises(ValueError, match=match) as e:
    hopa_run.train_and_evaluate(c, str(tmp_path / "w"))
  assert "\n" not in str(e.value)
  assert not os.path.exists(tmp_path / "w")   # nothing trained, nothing written


def test_sha256_check_can_be_skipped(tiny_store, tmp_path):
  from mmdd_jax import data
  d = _copy(tiny_store, tmp_path)
  _tamper(d)
  assert data.resolve_store(str(d), check_hashes=False).count("train") > 0


def test_binary_exit_2_one_line_nothing_written(tiny_store, tmp_path):
  d = _copy(tiny_store, tmp_path)
  _nan_test_row(d)
  wd = tmp_path / "w"
  for arg, match in (([f"--config=experiments/configs/hopa.py:dataset={d},local=1"],
                      "expected finite values"),
                     (["--config=experiments/configs/hopa.py", "--config.distill.lr_data=-1"],
                      "'distill.lr_data': expected > 0")):
    r = subprocess.run([sys.executable, "-m", "experiments.hopa", f"--workdir={wd}", *arg],
                       capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and match in lines[0], r.stderr[-2000:]
    assert not os.path.exists(wd)


BAD_OTHER_CONFIGS = [
    ("bindc", {"ipc": 0}, r"'ipc': expected ≥ 1, found 0"),
    ("bindc", {"distill.real_batch": 0}, r"'distill.real_batch': expected ≥ 1, found 0"),
    ("bindc", {"loss.dist.num_freqs": 0}, r"'loss.dist.num_freqs': expected ≥ 1, found 0"),
    ("bindc", {"init": "bogus"}, r"'init': expected one of \['herding', 'random', 'noise'\]"),
    ("bindc", {"distill.lr": -0.5}, r"'distill.lr': expected > 0, found -0.5"),
    ("bindc", {"method": ("dm", "bogus")}, r"'method': expected one of .* for every item"),
    ("bindc", {"eval.runs": 0}, r"'eval.runs': expected ≥ 1, found 0"),
    ("bindc", {"ckpt_every": 0}, r"'ckpt_every': expected ≥ 1, found 0"),
    ("bindc", {"distill.cfd_real": "pooled", "augment.jitter": 0.1},   # between keys
     r"'distill.cfd_real': expected 'sampled' with the siamese augmentation.*augment.jitter"),
    ("bindc", {"augment.mixup": -0.1}, r"'augment.mixup': expected ≥ 0, found -0.1"),
    ("reference", {"task": "bogus"}, r"'task': expected one of"),
    ("reference", {"full.runs": 0}, r"'full.runs': expected ≥ 1, found 0"),
    ("bound", {"study.T": 0}, r"'study.T': expected ≥ 1, found 0"),
    ("bound", {"study.eta": -1.0}, r"'study.eta': expected > 0"),
]


def _check_other(module: str, c) -> None:
  """The one check each binary reaches: the family's resolve (reference: its key table)."""
  from bindc_jax import plan as bindc_plan
  from hopa_jax import plan as hopa_plan
  if module == "bindc":
    bindc_plan.resolve(c)
  elif module == "bound":
    hopa_plan.resolve_study(c)
  else:
    from experiments.configs import reference
    keys.check(c, reference.KEYS)


@pytest.mark.parametrize("module,flat,match", BAD_OTHER_CONFIGS,
                         ids=[f"{m}-{next(iter(f))}" for m, f, _ in BAD_OTHER_CONFIGS])
def test_bad_config_other_binaries(module, flat, match):
  import importlib
  cfg = importlib.import_module(f"experiments.configs.{module}")
  with pytest.raises(ValueError, match=match) as e:
    _check_other(module, keys.override(cfg.get_config(), flat))
  assert "\n" not in str(e.value)


def test_bindc_bad_store_stops_before_any_work(tiny_cls_store, tmp_path):
  """A string class_names used to make ImageBindDC silently drop classes."""
  from bindc_jax import run as bindc_run
  from experiments.configs import bindc as bindc_config
  d = _copy(tiny_cls_store, tmp_path)
  m = json.loads((d / "manifest.json").read_text())
  m["class_names"] = "".join(m["class_names"])
  (d / "manifest.json").write_text(json.dumps(m))
  c = keys.override(bindc_config.get_config(f"dataset={d},local=1"),
                    {"progress": False, "method": ("dm",)})
  with pytest.raises(ValueError, match=r"field 'class_names': expected null or a non-empty list"):
    bindc_run.train_and_evaluate(c, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


def test_section_keys_are_declared_once_on_the_dataclass_fields():
  """A section key's meaning and rule are its dataclass field's (mmdd_jax.keys.field);
  a library dataclass built by hand is checked by the same rules (validate())."""
  import dataclasses
  from bindc_jax import augment, distances, distill as bindc_distill, losses
  from bindc_jax import plan as bindc_plan
  from hopa_jax import distill as dl, evaluate as ev, experts as ex, objectives as obj
  from hopa_jax import plan as hopa_plan
  sections = [(hopa_plan.KEYS, "objective", obj.ObjectiveConfig),
              (hopa_plan.KEYS, "experts", ex.ExpertConfig),
              (hopa_plan.KEYS, "distill", dl.DistillConfig),
              (hopa_plan.EVALUATE_KEYS, "eval", ev.EvalConfig),
              (bindc_plan.KEYS, "distill", bindc_distill.DistillConfig),
              (bindc_plan.KEYS, "loss", losses.LossConfig),
              (bindc_plan.KEYS, "loss.dist", distances.DistanceConfig),
              (bindc_plan.KEYS, "augment", augment.AugmentConfig)]
  for table, prefix, cls in sections:
    fields = {f.name: f.metadata["key"] for f in dataclasses.fields(cls) if "key" in f.metadata}
    names = [k[len(prefix) + 1:] for k in table if k.startswith(prefix + ".")]
    names = [n for n in names if "." not in n and n != "bindc_lr"]   # bindc_lr: plan's own
    assert names and set(names) <= set(fields), (prefix, set(names) - set(fields))
    for n in names:
      rule, meaning, _ = fields[n]
      assert table[f"{prefix}.{n}"][2] == meaning, (prefix, n)
  with pytest.raises(ValueError, match=r"^sim_rank: expected ≥ 1, found 0$"):
    dl.DistillConfig(sim_rank=0).validate()
  with pytest.raises(ValueError, match=r"^eval lrs: expected > 0 for every item"):
    ev.EvalConfig(lrs=(0.1, -1.0)).validate()
