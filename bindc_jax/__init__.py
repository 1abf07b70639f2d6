"""ImageBindDC in JAX (SPEC §4): characteristic-function distribution matching of
per-class ImageBind embeddings with uni-, cross- and joint-modal alignment for any
number of modalities, herding initialisation, siamese augmentation, the DM / MMD /
AVDD baselines and the linear-head classification evaluation."""

from bindc_jax.augment import AugmentConfig, siamese
from bindc_jax.distances import (DISTANCES, DistanceConfig, cfd, cfd_from_stats,
                                 characteristic_function, class_characteristic_functions,
                                 distance, get_distance, mean_matching, median_bandwidth, mmd,
                                 sample_frequencies)
from bindc_jax.distill import (METHODS, DistillConfig, DistillState, distill, init_state,
                               make_run, make_step, method_loss_config)
from bindc_jax.evaluate import evaluate, evaluate_distilled, evaluate_selected, flatten
from bindc_jax.init import group_by_class, herding, herding_indices, initialize, random_indices
from bindc_jax import select
from bindc_jax.select import DEFAULT_GRID, choose, select_lr
from bindc_jax.losses import (NCFM_SCALE, LossConfig, avdd_loss, bindc_loss, class_loss,
                              cross_loss, dm_loss, joint_loss, uni_loss)

__all__ = [
    "AugmentConfig", "siamese", "DISTANCES", "DistanceConfig", "cfd", "cfd_from_stats",
    "characteristic_function", "class_characteristic_functions", "distance", "get_distance",
    "mean_matching", "median_bandwidth", "mmd", "sample_frequencies", "METHODS", "DistillConfig",
    "DistillState", "distill", "init_state", "make_run", "make_step", "method_loss_config",
    "evaluate", "evaluate_distilled", "evaluate_selected", "flatten", "DEFAULT_GRID",
    "choose", "select_lr", "group_by_class", "herding",
    "herding_indices", "initialize", "random_indices", "NCFM_SCALE", "LossConfig",
    "avdd_loss", "bindc_loss", "class_loss", "cross_loss", "dm_loss", "joint_loss",
    "uni_loss",
]
