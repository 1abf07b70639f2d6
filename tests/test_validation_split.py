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
