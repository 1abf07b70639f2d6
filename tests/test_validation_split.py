"""The validation split carved from train: deterministic, disjoint, method-free."""

import numpy as np
import pytest

from mmdd_jax import data


def test_split_is_deterministic_disjoint_and_complete():
  tr, va = data.validation_split(1000, seed=3)
  tr2, va2 = data.validation_split(1000, seed=3)
  np.testing.assert_array_equal(va, va2)
  np.testing.assert_array_equal(tr, tr2)
  assert va.size == 100 and tr.size == 900
  assert np.intersect1d(tr, va).size == 0
  np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(1000))
  _, va3 = data.validation_split(1000, seed=4)
  assert not np.array_equal(va, va3)


def test_stratified_split_keeps_every_class_in_train_and_val():
  labels = np.repeat(np.arange(5), [2, 3, 10, 40, 45])
  tr, va = data.validation_split(labels.size, seed=0, labels=labels)
  for c in range(5):
    assert (labels[va] == c).sum() >= 1
    assert (labels[tr] == c).sum() >= 1
  assert np.intersect1d(tr, va).size == 0 and tr.size + va.size == labels.size


@pytest.mark.parametrize("n,frac", [(1, 0.1), (10, 0.0), (10, 1.0)])
def test_bad_arguments(n, frac):
  with pytest.raises(ValueError, match="expected"):
    data.validation_split(n, frac=frac)


def test_a_split_below_the_minimum_is_an_error_naming_the_key():
  """val_fraction=0.001 of 180 rows used to give a 1-row split: every selection a tie."""
  with pytest.raises(ValueError, match=r"config key 'val_fraction': expected a validation split "
                     r"of ≥ 10 rows .*found 1 \(val_fraction=0.001 of 180 train rows\); raise "
                     r"val_fraction to about 0.056 or more") as e:
    data.validation_split(180, frac=0.001)
  assert "\n" not in str(e.value)
  assert data.validation_split(180, frac=0.056)[1].size == 10
  with pytest.raises(ValueError, match=r"config key 'val_frac': .*found 5 .*stratified"):
    data.validation_split(50, frac=0.1, labels=np.arange(50) % 5, key="val_frac")
  with pytest.raises(ValueError, match=r"train split: expected ≥ 11 rows"):
    data.validation_split(10, frac=0.5)


def test_the_tiny_test_stores_clear_the_minimum(tiny_store, tiny_cls_store):
  """The stores every run test uses, at their default fractions (0.1)."""
  assert data.validation_split(tiny_store.count("train"))[1].size >= data.MIN_VAL_ROWS
  y = np.asarray(tiny_cls_store.labels("train"))
  assert data.validation_split(y.size, labels=y)[1].size >= data.MIN_VAL_ROWS
