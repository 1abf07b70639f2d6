"""ImageBindDC in JAX (SPEC §4): characteristic-function distribution matching of
per-class ImageBind embeddings with uni-, cross- and joint-modal alignment for any
number of modalities, herding initialisation, siamese augmentation, the DM / MMD /
AVDD baselines and the linear-head classification evaluation.

Modules: :mod:`~bindc_jax.distances`, :mod:`~bindc_jax.losses`, :mod:`~bindc_jax.augment`,
:mod:`~bindc_jax.init`, :mod:`~bindc_jax.distill` (the loop), :mod:`~bindc_jax.select`
(the lr selection rule), :mod:`~bindc_jax.evaluate`, :mod:`~bindc_jax.run` (config →
workdir → results, what ``experiments/bindc.py`` calls) and :mod:`~bindc_jax.tables`.
The package re-exports classes and helpers, never a function named like a module, so
``bindc_jax.distill`` is the module (``bindc_jax.distill.distill`` the loop).
"""

from bindc_jax.augment import AugmentConfig, siamese
from bindc_jax.distances import (DISTANCES, DistanceConfig, cfd, cfd_from_stats,
                                 characteristic_function, class_characteristic_functions,
                                 distance, get_distance, mean_matching, median_bandwidth, mmd,
                                 sample_frequencies)
from bindc_jax.distill import (METHODS, DistillConfig, DistillState, init_state, make_run,
                               make_step, method_loss_config)
from bindc_jax.evaluate import evaluate_selected, flatten
from bindc_jax.init import group_by_class, herding, herding_indices, initialize, random_indices
from bindc_jax.select import DEFAULT_GRID, choose, select_lr
from bindc_jax.losses import (NCFM_SCALE, LossConfig, avdd_loss, bindc_loss, class_loss,
                              cross_loss, dm_loss, joint_loss, uni_loss)

__all__ = [
    "AugmentConfig", "siamese", "DISTANCES", "DistanceConfig", "cfd", "cfd_from_stats",
    "characteristic_function", "class_characteristic_functions", "distance", "get_distance",
    "mean_matching", "median_bandwidth", "mmd", "sample_frequencies", "METHODS", "DistillConfig",
    "DistillState", "init_state", "make_run", "make_step", "method_loss_config",
    "evaluate_selected", "flatten", "DEFAULT_GRID", "choose", "select_lr", "group_by_class",
    "herding", "herding_indices", "initialize", "random_indices", "NCFM_SCALE", "LossConfig",
    "avdd_loss", "bindc_loss", "class_loss", "cross_loss", "dm_loss", "joint_loss",
    "uni_loss",
]
