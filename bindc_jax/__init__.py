"""ImageBindDC in JAX (SPEC §4): characteristic-function distribution matching of
per-class ImageBind embeddings with uni-, cross- and joint-modal alignment for any
number of modalities, herding initialisation, siamese augmentation, the DM / MMD /
AVDD baselines and the linear-head classification evaluation.

Modules: :mod:`~bindc_jax.distances`, :mod:`~bindc_jax.losses`, :mod:`~bindc_jax.augment`,
:mod:`~bindc_jax.init`, :mod:`~bindc_jax.distill` (the loop), :mod:`~bindc_jax.select`
(the lr selection rule), :mod:`~bindc_jax.evaluate`, :mod:`~bindc_jax.run` (config →
workdir → results, what ``experiments/bindc.py`` calls) and :mod:`~bindc_jax.tables`.
The package exports no names: import its modules (``from bindc_jax import distill``;
``distill.distill`` is the loop).
"""
