"""What every config file shares: its key table, the ``key=value`` argument, checks, --help.

A config module declares each key once, in ``KEYS``: dotted key → ``(default, rule,
meaning)``. :func:`build` makes the nested ``ConfigDict`` of the defaults; ``HELP``
(:func:`helps`) and ``ranges()`` (:func:`rules`) are read off the same table, so
``--help`` (:func:`config_help`) and :func:`check` cannot drift from the keys. A rule is
None (any value), ``">0"``, ``">=0"``, ``">=1"``, ``"(0,1)"``, ``"(0,1]"``, a tuple of
allowed values, or a function returning them (read at check time: registries such as
``hopa_jax.objectives.OBJECTIVES`` grow at run time); a tuple value (a grid) is checked item by item; None (a placeholder)
always passes.

``get_config(arg)``, big_vision style: ``arg`` is a comma-separated ``key=value`` list:
the few switches that change many defaults (``dataset``, ``n``, ``local``, …) and any
key, as a dotted path (``distill.lr_data=0.02``) or a unique leaf name
(``lr_data=0.02``). Values take the default's type (booleans 1/0, true/false, yes/no;
tuples ``+``-joined; placeholders ``none``). ``--config.a.b=value`` flags work as well
(ml_collections); the binaries check them with :func:`check` (the same rules).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

placeholder = config_dict.placeholder   # a key whose default is None (``none`` or a value)


def build(keys: dict) -> ml_collections.ConfigDict:
  """The nested config of ``keys``' defaults (dotted key → (default, rule, meaning))."""
  c = ml_collections.ConfigDict()
  for path, (default, _, _) in keys.items():
    *parents, leaf = path.split(".")
    node = c
    for p in parents:
      if p not in node:
        node[p] = ml_collections.ConfigDict()
      node = node[p]
    # A placeholder is a FieldReference: a fresh one per config, or setting one
    # config's key would set it in every config built from the table.
    node[leaf] = (placeholder(default.get_type()) if isinstance(default, config_dict.FieldReference)
                  else default)
  return c


def variant(keys: dict, defaults: dict) -> dict:
  """``keys`` with other defaults (``defaults``: dotted key → value); rules and meanings
  stay those of ``keys``."""
  assert set(defaults) <= set(keys), sorted(set(defaults) - set(keys))
  return {k: (defaults.get(k, d), r, h) for k, (d, r, h) in keys.items()}


def helps(keys: dict) -> dict:
  return {k: v[2] for k, v in keys.items()}


def rules(keys: dict) -> dict:
  return {k: v[1] for k, v in keys.items() if v[1] is not None}


def parse_arg(arg: str | None) -> dict[str, str]:
  out = {}
  for item in filter(None, (s.strip() for s in (arg or "").split(","))):
    if "=" not in item:
      raise ValueError(f"config arg '{item}': expected key=value")
    k, v = item.split("=", 1)
    out[k.strip()] = v.strip()
  return out


def _scalar(key: str, raw: str, typ):
  if typ is bool:
    if raw.lower() in ("1", "true", "yes", "0", "false", "no"):
      return raw.lower() in ("1", "true", "yes")
    raise ValueError(f"config key '{key}': expected a boolean (1/0, true/false), found '{raw}'")
  try:
    return raw if typ in (None, str) else typ(raw)
  except ValueError:
    raise ValueError(f"config key '{key}': expected {typ.__name__}, found '{raw}'") from None


def convert(key: str, raw: str, default, typ=None):
  """``raw`` converted to the type of ``default`` (``typ`` for a None placeholder)."""
  if default is None:
    return None if raw.lower() in ("none", "") else _scalar(key, raw, typ)
  if isinstance(default, tuple):
    items = tuple(_scalar(key, v.strip(), type(default[0]) if default else float)
                  for v in raw.split("+") if v.strip())
    if not items:
      raise ValueError(f"config key '{key}': expected items joined by '+', found '{raw}'")
    return items
  return _scalar(key, raw, type(default))


def leaves(c: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Dotted paths of every leaf of ``c``."""
  out = []
  for k, v in c.items():
    out += leaves(v, f"{prefix}{k}.") if isinstance(v, ml_collections.ConfigDict) else [prefix + k]
  return out


def _get(c, path):
  *parents, leaf = path.split(".")
  for p in parents:
    c = c[p]
  return c, leaf


def apply_overrides(c: ml_collections.ConfigDict, kv: dict[str, str],
                    skip: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """Sets every ``key=value`` of ``kv`` but ``skip`` on ``c``; a key is a dotted path or
  a unique leaf name (unknown or ambiguous: an error)."""
  paths = leaves(c)
  for k, raw in kv.items():
    if k in skip:
      continue
    hits = [k] if k in paths else [p for p in paths if p.rsplit(".", 1)[-1] == k]
    if len(hits) != 1:
      raise ValueError(f"config key '{k}': " + (f"ambiguous, expected one of {hits}" if hits
                       else "unknown (see --help for the keys)"))
    parent, leaf = _get(c, hits[0])
    default = parent[leaf]
    typ = parent.get_ref(leaf).get_type() if default is None else None
    parent[leaf] = convert(hits[0], raw, default, typ)
  return c


_TESTS = {">0": (lambda v: v > 0, "> 0"), ">=0": (lambda v: v >= 0, "≥ 0"),
          ">=1": (lambda v: v >= 1, "≥ 1"), "(0,1)": (lambda v: 0 < v < 1, "in (0, 1)"),
          "(0,1]": (lambda v: 0 < v <= 1, "in (0, 1]")}


def check(c: ml_collections.ConfigDict, ranges: dict) -> ml_collections.ConfigDict:
  """Range-checks ``c`` (``ranges``: dotted key → rule): one ``ValueError`` line naming
  the key, the expected range and the found value."""
  for path, rule in ranges.items():
    parent, leaf = _get(c, path)
    v = parent[leaf]
    if v is None:
      continue
    rule = rule() if callable(rule) else rule
    ok, desc = ((lambda x: x in rule), f"one of {list(rule)}") if isinstance(rule, (tuple, list)) \
        else _TESTS[rule]
    items = v if isinstance(v, tuple) else (v,)
    try:
      good = bool(items) and all(ok(x) for x in items)
    except TypeError:
      good = False
    if not good:
      raise ValueError(f"config key '{path}': expected {desc}"
                       f"{' for every item' if isinstance(v, tuple) else ''}, found {v!r}")
  return c


def describe(c: ml_collections.ConfigDict, help_: dict[str, str]) -> str:
  """One line per key: ``dotted.key = default — meaning``."""
  flat = c.to_dict()
  def shown(p):
    v = flat
    for k in p.split("."):
      v = v[k]
    return "+".join(str(x) for x in v) if isinstance(v, tuple) else repr(v)
  return "\n".join(f"{p} = {shown(p)} — {help_.get(p, '(undocumented)')}" for p in leaves(c))


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


STORE = {   # the store keys of every run config
    "scale": (1.0, "(0,1]", "simulator scale in (0, 1] (ignored for a store directory)"),
    "data_dir": ("", None, "where simulated stores are cached ('' = runs/data)"),
    "check_hashes": (True, None, "verify the store's sha256 hashes before the run (False: "
                     "skip, for very large stores; the other checks always run)"),
}
