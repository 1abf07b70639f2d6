"""Parsing of big_vision-style config arguments shared by every config file.

``--config=experiments/configs/<name>.py:key=value,key=value``: the argument is a
comma-separated ``key=value`` list; list values use ``+`` as separator. Each value is
converted to the type of the key's default (booleans accept 1/0, true/false, yes/no).
"""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None) -> dict[str, str]:
  out = {}
  for item in (arg or "").split(","):
    item = item.strip()
    if not item:
      continue
    if "=" not in item:
      raise ValueError(f"config arg '{item}': expected key=value")
    k, v = item.split("=", 1)
    out[k.strip()] = v.strip()
  return out


def convert(key: str, raw: str, default):
  """``raw`` converted to the type of ``default``; a clear error otherwise."""
  if isinstance(default, bool):
    if raw.lower() in ("1", "true", "yes"):
      return True
    if raw.lower() in ("0", "false", "no"):
      return False
    raise ValueError(f"config key '{key}': expected a boolean, found '{raw}'")
  try:
    return type(default)(raw) if default is not None else raw
  except ValueError as e:
    raise ValueError(f"config key '{key}': expected {type(default).__name__}, found '{raw}'") from e


def apply_overrides(c: ml_collections.ConfigDict, kv: dict[str, str]) -> ml_collections.ConfigDict:
  """Sets every ``key=value`` of ``kv`` on ``c``; unknown keys are an error."""
  for k, raw in kv.items():
    if k not in c:
      raise ValueError(f"config key '{k}': unknown (known: {sorted(c.keys())})")
    c[k] = convert(k, raw, c[k])
  return c
