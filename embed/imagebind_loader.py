"""The one place that imports ImageBind's model code (a documented workaround).

ImageBind (``imagebind-unofficial==0.1.1`` on PyPI, the only release that installs
beside current torch; code CC-BY-NC-SA 4.0, which this project depends on and
never vendors) cannot be imported the ordinary way here:

* ``import imagebind`` runs the package ``__init__``, which imports ``imagebind.data``,
  which needs ``pkg_resources``, ``torchaudio`` and ``pytorchvideo`` — none of which
  installs beside the torch we use. We never need ``imagebind.data`` (the project
  has its own preprocessing, :mod:`embed.preprocess`), so :func:`import_imagebind`
  registers a bare module object named ``imagebind`` whose ``__path__`` points at the
  installed package directory; ``imagebind.models.*`` then imports without the
  package ``__init__`` ever running.
* ``imagebind.models`` does ``from timm.layers import DropPath, trunc_normal_``. timm
  requires torchvision, which fails to import beside the CPU torch wheel. When
  ``timm.layers`` cannot be imported, two small stand-ins (``DropPath``,
  ``trunc_normal_``) are placed in ``sys.modules`` *only while* ImageBind's modules
  import and removed again afterwards (ImageBind keeps its own references). Both are
  only used at construction time (initialisation) or as identity at inference
  (``DropPath`` in eval mode), so a loaded checkpoint computes the same outputs.

:func:`load_model` builds the architecture with ``pretrained=False`` (never ``True``:
that downloads to ``./.checkpoints``) and loads a *local* checkpoint:

* the official ``imagebind_huge.pth`` — a bare ``state_dict`` → ``imagebind_huge``;
* a file holding ``{"config": <ImageBindModel keyword arguments>, "state_dict": ...}``
  (how tests pass a tiny model; see :func:`save_checkpoint`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
import types
from typing import Any, Mapping

OFFICIAL_CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
HUGE_CONFIG = dict(vision_embed_dim=1280, vision_num_blocks=32, vision_num_heads=16,
                   text_embed_dim=1024, text_num_blocks=24, text_num_heads=16,
                   out_embed_dim=1024, audio_drop_path=0.1, imu_drop_path=0.7)
BPE_RELPATH = os.path.join("bpe", "bpe_simple_vocab_16e6.txt.gz")

_MODULES: dict[str, types.ModuleType] = {}


class CheckpointError(ValueError):
  """A checkpoint is missing or does not fit the architecture."""


def _timm_stub() -> dict[str, types.ModuleType]:
  """Minimal ``timm`` / ``timm.layers`` stand-ins: ``DropPath`` and ``trunc_normal_``."""
  import torch
  from torch import nn

  class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode)."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
      super().__init__()
      self.drop_prob = float(drop_prob)
      self.scale_by_keep = scale_by_keep

    def forward(self, x):
      if self.drop_prob == 0.0 or not self.training:
        return x
      keep = 1.0 - self.drop_prob
      mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
      if self.scale_by_keep and keep > 0.0:
        mask.div_(keep)
      return x * mask

  def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)

  timm = types.ModuleType("timm")
  layers = types.ModuleType("timm.layers")
  layers.DropPath = DropPath
  layers.trunc_normal_ = trunc_normal_
  timm.layers = layers
  timm.__path__ = []  # a package, so "timm.layers" resolves
  del torch
  return {"timm": timm, "timm.layers": layers}


@contextlib.contextmanager
def _temporary_modules(mods: Mapping[str, types.ModuleType]):
  saved = {k: sys.modules.get(k) for k in mods}
  sys.modules.update(mods)
  try:
    yield
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = v


def _timm_layers_importable() -> bool:
  try:
    importlib.import_module("timm.layers")
    return True
  except Exception:  # ImportError, or torchvision's RuntimeError on import
    for k in [k for k in sys.modules if k == "timm" or k.startswith("timm.")]:
      del sys.modules[k]
    return False


def import_imagebind() -> dict[str, types.ModuleType]:
  """Imports ImageBind's model modules without running the package ``__init__``.

  Returns:
    ``{"imagebind_model": ..., "multimodal_preprocessors": ..., "package_dir": str}``
    (the last as a plain string entry).

  Raises:
    ImportError: the ``imagebind-unofficial`` package (or torch) is not installed;
      the message says how to install it.
  """
  if _MODULES:
    return _MODULES
  spec = importlib.util.find_spec("imagebind") if "imagebind" not in sys.modules else None
  pkg = sys.modules.get("imagebind")
  if pkg is not None and getattr(pkg, "__path__", None):
    pkg_dir = list(pkg.__path__)[0]
  elif spec is not None and spec.submodule_search_locations:
    pkg_dir = list(spec.submodule_search_locations)[0]
  else:
    raise ImportError(
        "ImageBind's model code is not installed. Install the embed extra: "
        "`bash scripts/install_embed.sh .venv/bin/python` (torch==2.13.0 first, then "
        "`pip install --no-deps imagebind-unofficial==0.1.1` and its small runtime deps).")
  if "imagebind" not in sys.modules:
    shell = types.ModuleType("imagebind")
    shell.__path__ = [pkg_dir]
    shell.__file__ = os.path.join(pkg_dir, "__init__.py")
    shell.__doc__ = "ImageBind package shell registered by embed.imagebind_loader (no __init__ run)."
    sys.modules["imagebind"] = shell
  stub = {} if _timm_layers_importable() else _timm_stub()
  with _temporary_modules(stub):
    ib_model = importlib.import_module("imagebind.models.imagebind_model")
    mm_pre = importlib.import_module("imagebind.models.multimodal_preprocessors")
  _MODULES.update(imagebind_model=ib_model, multimodal_preprocessors=mm_pre)
  _MODULES["package_dir"] = pkg_dir  # type: ignore[assignment]
  return _MODULES


def bpe_path() -> str:
  """Path of the BPE vocabulary that ships inside the ``imagebind`` package."""
  p = os.path.join(import_imagebind()["package_dir"], BPE_RELPATH)  # type: ignore[arg-type]
  if not os.path.exists(p):
    raise FileNotFoundError(f"{p}: ImageBind's BPE vocabulary: expected the file shipped with "
                            "imagebind-unofficial, found nothing (reinstall the package)")
  return p


def build_model(config: Mapping[str, Any] | None = None):
  """``ImageBindModel(**config)``, or ``imagebind_huge(pretrained=False)`` when ``config`` is None."""
  ib = import_imagebind()["imagebind_model"]
  if config is None:
    return ib.imagebind_huge(pretrained=False)
  return ib.ImageBindModel(**dict(config))


def _missing_checkpoint_message(path: str) -> str:
  return (f"{path}: ImageBind checkpoint: expected a local file, found nothing. The official "
          f"ImageBind-Huge weights are published by Meta at {OFFICIAL_CHECKPOINT_URL} "
          "(CC-BY-NC-SA 4.0); download it yourself and pass its path with "
          "--checkpoint /path/to/imagebind_huge.pth. This stage never downloads.")


def sha256_of(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for b in iter(lambda: f.read(1 << 22), b""):
      h.update(b)
  return h.hexdigest()


def load_model(path: str, device: str = "cpu"):
  """Loads a local ImageBind checkpoint; returns ``(model in eval mode, config or None)``.

  Args:
    path: the official ``imagebind_huge.pth`` (a bare state_dict) or a
      ``{"config": {...}, "state_dict": {...}}`` file.
    device: torch device string.

  Raises:
    CheckpointError: the file is missing (the message says where the official
      checkpoint is published), unreadable, or does not match the architecture.
  """
  import torch
  if not os.path.isfile(path):
    raise CheckpointError(_missing_checkpoint_message(path))
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # noqa: BLE001 - report any unpickling problem with the path
    raise CheckpointError(f"{path}: ImageBind checkpoint: expected a torch file "
                          f"(state_dict or {{config, state_dict}}), found unreadable data: {e}") from e
  if isinstance(obj, Mapping) and "state_dict" in obj and "config" in obj:
    config, state = dict(obj["config"]), obj["state_dict"]
  elif isinstance(obj, Mapping) and obj and all(torch.is_tensor(v) for v in obj.values()):
    config, state = None, obj
  else:
    raise CheckpointError(f"{path}: field 'state_dict': expected a bare state_dict (official "
                          "imagebind_huge.pth) or {'config': ..., 'state_dict': ...}, found "
                          f"{type(obj).__name__} with keys {sorted(obj)[:5] if isinstance(obj, Mapping) else '-'}")
  model = build_model(config)
  missing, unexpected = model.load_state_dict(state, strict=False)
  if missing or unexpected:
    arch = "imagebind_huge" if config is None else f"ImageBindModel(**{config})"
    raise CheckpointError(f"{path}: field 'state_dict': expected the keys of {arch}, found "
                          f"{len(missing)} missing (e.g. {missing[:3]}) and {len(unexpected)} "
                          f"unexpected (e.g. {unexpected[:3]})")
  return model.to(device).eval(), config


def save_checkpoint(path: str, model, config: Mapping[str, Any]) -> None:
  """Writes ``{"config": config, "state_dict": model.state_dict()}`` atomically."""
  import torch
  tmp = path + ".tmp"
  torch.save({"config": dict(config), "state_dict": model.state_dict()}, tmp)
  os.replace(tmp, path)


TINY_CONFIG = dict(video_frames=2, out_embed_dim=32, vision_embed_dim=32, vision_num_blocks=1,
                   vision_num_heads=2, audio_embed_dim=32, audio_num_blocks=1, audio_num_heads=2,
                   text_embed_dim=32, text_num_blocks=1, text_num_heads=2, depth_embed_dim=32,
                   depth_num_blocks=1, depth_num_heads=2, thermal_embed_dim=32,
                   thermal_num_blocks=1, thermal_num_heads=2, imu_embed_dim=32, imu_num_blocks=1,
                   imu_num_heads=2)
"""A tiny random-weight architecture (~1.8 M parameters) for tests and smoke runs."""
