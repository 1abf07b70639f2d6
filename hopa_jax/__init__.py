"""HoPA (High-order Proxy Alignment) omnimodal dataset distillation in JAX.

Modules: ``proxy`` (spectrum of the per-instance modality Gram, unified feature),
``objectives`` (inner objectives by name), ``similarity`` (learnable targets Ŝ),
``experts`` (expert trajectories), ``distill`` (trajectory matching), ``evaluate``
(retrieval evaluation of a distilled set).
"""

from hopa_jax.objectives import (OBJECTIVES, ObjectiveConfig, get_objective, hopa,
                                 hopa_loss_from_spectrum, infonce, pairwise_wbce, tbind,
                                 three_pair, vbind, weighted_bce)
from hopa_jax.proxy import Proxy, proxy as omnimodal_proxy, singular_values, spectrum, sym_eigh, unified_feature
from hopa_jax.similarity import batch_targets, full_matrix, init_similarity

__all__ = [
    "OBJECTIVES", "ObjectiveConfig", "get_objective", "hopa", "hopa_loss_from_spectrum",
    "infonce", "pairwise_wbce", "tbind", "three_pair", "vbind", "weighted_bce", "Proxy",
    "omnimodal_proxy", "singular_values", "spectrum", "sym_eigh", "unified_feature", "batch_targets",
    "full_matrix", "init_similarity",
]
