"""Shared JAX core of the project: ImageBind-shaped heads, fitting heads on a store,
retrieval and classification evaluators, results files. Both method packages
(``hopa_jax``, ``bindc_jax``) import this; it imports neither.

The package exports no names: import its modules (``from mmdd_jax import heads``)."""
