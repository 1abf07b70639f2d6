"""HoPA (High-order Proxy Alignment) omnimodal dataset distillation in JAX.

Modules: ``proxy`` (spectrum of the per-instance modality Gram, unified feature),
``objectives`` (inner objectives by name), ``similarity`` (learnable targets Ŝ),
``experts`` (expert trajectories), ``distill`` (trajectory matching), ``evaluate``
(retrieval evaluation of a distilled set), ``run`` (config → workdir → results, what
``experiments/hopa.py`` calls).

The package exports no names: import its modules (``from hopa_jax import proxy``).
"""
