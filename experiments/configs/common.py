"""Shared by every config file: big_vision-style arguments, nested sections, key help.

``--config=experiments/configs/<name>.py:key=value,key=value``: the argument is a
comma-separated ``key=value`` list. A key is a dotted path into the nested config
(``distill.lr_data=0.02``) or, when unique, a leaf name (``lr_data=0.02``). Values are
converted to the type of the key's default: booleans accept 1/0, true/false, yes/no;
tuples (grids) take ``+``-separated items (``eval.lrs=0.01+0.1``); keys whose
default is None (placeholders) take ``none`` or a value of their type. The usual
``--config.distill.lr_data=0.02`` flag overrides work as well (ml_collections).

Each config module keeps a ``HELP`` dict: dotted key → meaning. :func:`describe` turns
a config and its help into the key listing that every binary's ``--help`` prints; a
test checks that every key has a help line.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


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


def _scalar(key: str, raw: str, typ):
  if typ is bool:
    if raw.lower() in ("1", "true", "yes"):
      return True
    if raw.lower() in ("0", "false", "no"):
      return False
    raise ValueError(f"config key '{key}': expected a boolean (1/0, true/false), found '{raw}'")
  if typ is None or typ is str:
    return raw
  try:
    return typ(raw)
  except ValueError:
    raise ValueError(f"config key '{key}': expected {typ.__name__}, found '{raw}'") from None


def convert(key: str, raw: str, default, typ=None):
  """``raw`` converted to the type of ``default`` (``typ`` for a None placeholder)."""
  if default is None:
    if raw.lower() in ("none", ""):
      return None
    return _scalar(key, raw, typ)
  if isinstance(default, tuple):
    item_typ = type(default[0]) if default else float
    items = tuple(_scalar(key, v.strip(), item_typ) for v in raw.split("+") if v.strip())
    if not items:
      raise ValueError(f"config key '{key}': expected items joined by '+', found '{raw}'")
    return items
  return _scalar(key, raw, type(default))


def leaves(c: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Dotted paths of every leaf of ``c``."""
  out = []
  for k in c.keys():
    v = c[k]
    if isinstance(v, ml_collections.ConfigDict):
      out += leaves(v, f"{prefix}{k}.")
    else:
      out.append(f"{prefix}{k}")
  return out


def resolve(c: ml_collections.ConfigDict, key: str) -> str:
  """The dotted path ``key`` names: itself, or the one leaf with that name."""
  paths = leaves(c)
  if key in paths:
    return key
  hits = [p for p in paths if p.rsplit(".", 1)[-1] == key]
  if len(hits) == 1:
    return hits[0]
  if hits:
    raise ValueError(f"config key '{key}': ambiguous, expected one of {hits}")
  raise ValueError(f"config key '{key}': unknown (see --help for the keys)")


def _get(c, path):
  *parents, leaf = path.split(".")
  for p in parents:
    c = c[p]
  return c, leaf


def apply_overrides(c: ml_collections.ConfigDict, kv: dict[str, str],
                    skip: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """Sets every ``key=value`` of ``kv`` (but ``skip``, the presets a config already
  read) on ``c``; unknown or ambiguous keys are an error."""
  for k, raw in kv.items():
    if k in skip:
      continue
    path = resolve(c, k)
    parent, leaf = _get(c, path)
    default = parent[leaf]
    typ = parent.get_ref(leaf).get_type() if default is None else None
    parent[leaf] = convert(path, raw, default, typ)
  return c


def _rule(rule):
  """``(test, description)`` of a range rule: ``">0"``, ``">=0"``, ``">=1"``,
  ``"(0,1)"``, ``"(0,1]"``, or a tuple of allowed values."""
  if isinstance(rule, (tuple, list)):
    return (lambda v: v in rule), f"one of {list(rule)}"
  tests = {">0": (lambda v: v > 0, "> 0"), ">=0": (lambda v: v >= 0, "≥ 0"),
           ">=1": (lambda v: v >= 1, "≥ 1"), "(0,1)": (lambda v: 0 < v < 1, "in (0, 1)"),
           "(0,1]": (lambda v: 0 < v <= 1, "in (0, 1]")}
  return tests[rule]


def check(c: ml_collections.ConfigDict, ranges: dict) -> ml_collections.ConfigDict:
  """Range-checks ``c`` against ``ranges`` (dotted key → rule, see :func:`_rule`): one
  ``ValueError`` line naming the key, the expected range and the found value. A None
  (placeholder) passes; a tuple (grid) is checked item by item and must not be empty."""
  for path, rule in ranges.items():
    parent, leaf = _get(c, path)
    v = parent[leaf]
    if v is None:
      continue
    ok, desc = _rule(rule)
    items = v if isinstance(v, tuple) else (v,)
    try:
      good = bool(items) and all(ok(x) for x in items)
    except TypeError:
      good = False
    if not good:
      raise ValueError(f"config key '{path}': expected {desc}"
                       f"{' for every item' if isinstance(v, tuple) else ''}, found {v!r}")
  return c


def placeholder(typ):
  """A key whose default is None (set it to a ``typ`` value, or ``none``)."""
  return config_dict.placeholder(typ)


def describe(c: ml_collections.ConfigDict, help_: dict[str, str]) -> str:
  """One line per key: ``dotted.key = default  meaning``."""
  lines = []
  for p in leaves(c):
    parent, leaf = _get(c, p)
    v = parent[leaf]
    shown = "+".join(str(x) for x in v) if isinstance(v, tuple) else repr(v)
    lines.append(f"{p} = {shown} — {help_.get(p, '(undocumented)')}")
  return "\n".join(lines)


def config_help(module) -> str:
  """The ``--config`` flag's help: every key of ``module.get_config()`` with its
  default and meaning (``module.HELP``)."""
  c = module.get_config()
  local = "; local=1 shrinks everything to a seconds-long run" if "local" in c else ""
  return ("config file and overrides, e.g. " + module.__name__.replace(".", "/") +
          ".py:key=value,key=value (a key is a dotted path or a unique leaf name" + local +
          "). Keys and defaults:\n" + describe(c, module.HELP))


def missing_help(c: ml_collections.ConfigDict, help_: dict[str, str]) -> list[str]:
  """Keys of ``c`` without a help line, and help lines without a key."""
  keys = set(leaves(c))
  return sorted((keys - set(help_)) | (set(help_) - keys))


# --- the store keys every run config has ---

STORE_HELP = {
    "scale": "simulator scale in (0, 1] (ignored for a store directory)",
    "data_dir": "where simulated stores are cached ('' = runs/data)",
    "check_hashes": "verify the store's sha256 hashes before the run (False: skip, for very "
                    "large stores; the other checks always run)",
}


# --- the inner objective: one section shared by HoPA, the experts and the bound study ---

def objective() -> ml_collections.ConfigDict:
  """Mirrors :class:`hopa_jax.objectives.ObjectiveConfig` (``ObjectiveConfig(**c)``);
  a method's own settings (``rank``, ``use_mod``, ``use_inst``) override these."""
  return ml_collections.ConfigDict(dict(
      tau_mod=0.1, tau_inst=0.2, lam_inst=1.0, use_mod=True, use_inst=True, rank=1,
      # Every method's published temperature: LoRS's 0.07 for the pairwise wBCE (its
      # code; RepBlend and HoPA's pairwise variants follow LoRS), CLIP's 0.07 for
      # InfoNCE, HoPA's 0.1 / 0.2 for its own objective (docs/hopa.md).
      tau_pair=0.07, tau_nce=0.07, beta=0.5,
      # Not in SPEC: measured, with targets outside [0, 1] the BCE is unbounded below
      # and LoRS diverges at lr_sim 10 (docs/hopa.md).
      clip_targets=True,
      pos_from="identity",
      # Not in SPEC: an instance's own pair keeps a target ≥ beta (docs/hopa.md).
      diag_floor=True))


OBJECTIVE_HELP = {
    "objective.tau_mod": "temperature of the singular-value softmax (L_mod) [R]",
    "objective.tau_inst": "temperature of the proxy similarity logits (L_inst) [R]",
    "objective.lam_inst": "weight λ_inst of L_inst [R]",
    "objective.use_mod": "keep L_mod (the method 'no_lmod' turns it off)",
    "objective.use_inst": "keep L_inst (the method 'no_linst' turns it off)",
    "objective.rank": "proxy rank (1 = HoPA; the method 'rank2' sets 2)",
    "objective.tau_pair": "temperature of the pairwise wBCE logits (LoRS's published 0.07)",
    "objective.tau_nce": "temperature of pairwise InfoNCE (MTT-VL, TESLA; CLIP's 0.07)",
    "objective.beta": "positive threshold of the weighted BCE (pos = Ŝ > beta)",
    "objective.clip_targets": "clip learned targets Ŝ to [0, 1] in the wBCE (not in SPEC; "
                              "docs/hopa.md)",
    "objective.pos_from": "wBCE positives: 'identity' (an instance's own pair) or 'targets' "
                          "(SPEC/LoRS: Ŝ > beta; docs/hopa.md)",
    "objective.diag_floor": "an instance's own pair keeps a target ≥ beta and stays a "
                            "positive (not in SPEC; docs/hopa.md); False = SPEC/LoRS",
}


OBJECTIVE_RANGES = {  # checked with each config's ranges()
    "objective.tau_mod": ">0", "objective.tau_inst": ">0", "objective.lam_inst": ">=0",
    "objective.rank": ">=1", "objective.tau_pair": ">0", "objective.tau_nce": ">0",
    "objective.beta": "(0,1)", "objective.pos_from": ("targets", "identity"),
}
