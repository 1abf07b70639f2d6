"""Shared JAX core of the project: ImageBind-shaped heads, fitting heads on a store,
retrieval and classification evaluators, results files. Both method packages
(``hopa_jax``, ``bindc_jax``) import this; it imports neither."""

from mmdd_jax.heads import (ImageBindHead, apply_head, apply_heads, heads_from_npz,
                            heads_to_npz, init_heads, l2_normalize, perturb)
from mmdd_jax.losses import info_nce, pairwise_info_nce
from mmdd_jax.retrieval import directions, recall_at_k, retrieval_metrics, true_ranks
from mmdd_jax.train import make_fit

__all__ = [
    "ImageBindHead", "apply_head", "apply_heads", "heads_from_npz", "heads_to_npz",
    "init_heads", "l2_normalize", "perturb", "info_nce", "pairwise_info_nce", "directions",
    "recall_at_k", "retrieval_metrics", "true_ranks", "make_fit",
]
