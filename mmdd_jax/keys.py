"""Config keys as one table: the defaults, the one check and ``--help`` read off it.

A method family declares each config key once: on the library dataclass's field
(:func:`field`; the family's table takes the section with :func:`section`) or, for a
key no dataclass holds, as a row of its table (``hopa_jax.plan.KEYS``,
``bindc_jax.plan.KEYS``, …): dotted key → ``(default, rule, meaning)``. :func:`build`
makes the nested ``ConfigDict`` of the defaults (what ``get_config`` starts from),
:func:`check` is the one range check (called by the family's ``resolve``), and
:func:`config_help` is the ``--config`` flag's help. A rule is None (any value),
``">0"``, ``">=0"``, ``">=1"``, ``"(0,1)"``, ``"(0,1]"``, a tuple of allowed values, or a
function returning them (read at check time: registries such as
``hopa_jax.objectives.OBJECTIVES`` grow at run time); a tuple value (a grid) is checked
item by item; None (a placeholder) always passes.

Keys are set the ml_collections way: ``--config.a.b=value`` on the command line (tuples
as Python literals, ``--config.eval.lrs='(0.01, 0.1)'``), ``config.a.b = value`` or
:func:`override` (``{"a.b": value}``, one line for an unknown key or a bad string) in
code. ``get_config(arg)`` reads only its few switches from ``arg``
(:func:`switched`: ``dataset=…,n=…,local=1``).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
from typing import Any, Mapping

import ml_collections
from ml_collections import config_dict

placeholder = config_dict.placeholder   # a key whose default is None (``none`` or a value)


def _tree(keys: dict, leaf) -> ml_collections.ConfigDict:
  """The nested config of ``keys``' dotted paths, each leaf ``leaf(default)``."""
  c = ml_collections.ConfigDict()
  for path, (default, _, _) in keys.items():
    *parents, name = path.split(".")
    node = c
    for p in parents:
      if p not in node:
        node[p] = ml_collections.ConfigDict()
      node = node[p]
    node[name] = leaf(default)
  return c


def build(keys: dict) -> ml_collections.ConfigDict:
  """The nested config of ``keys``' defaults (dotted key → (default, rule, meaning))."""
  # A placeholder is a FieldReference (and a section a ConfigDict): a fresh one per
  # config, or setting one config's key would set it in every config built from the table.
  return _tree(keys, lambda d: (placeholder(d.get_type())
                               if isinstance(d, config_dict.FieldReference)
                               else copy.deepcopy(d) if isinstance(d, ml_collections.ConfigDict)
                               else d))


def overrides(keys: dict, values: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """A section that overrides another config file's keys (the demo's ``hopa`` /
  ``bindc``, the sweep's ``base``): every key of that file's table ``keys``, typed, None
  (= that file's own default, e.g. its per-n value) unless ``values`` (dotted key →
  value) sets it. Set like any key: ``--config.hopa.distill.iterations=500``;
  :func:`from_spec` applies the keys set."""
  c = _tree(keys, lambda d: placeholder(
      d.get_type() if isinstance(d, config_dict.FieldReference) else type(d)))
  return override(c, dict(values or {}))


def set_keys(section: ml_collections.ConfigDict) -> dict:
  """The keys an :func:`overrides` section sets (dotted key → value; None = not set)."""
  flat = as_dict(section)

  def walk(d, prefix=""):
    for k, v in d.items():
      if isinstance(v, dict):
        yield from walk(v, f"{prefix}{k}.")
      elif v is not None:
        yield prefix + k, v
  return dict(walk(flat))


def plan_of(config_or_plan: Any, cls: type, resolve) -> Any:
  """``config_or_plan`` when it is already a ``cls`` (a plan resolved by a table or the
  sweep, which resolve every row before any directory exists), else ``resolve(config)``:
  a run resolves and checks its config once, whoever calls it."""
  return config_or_plan if isinstance(config_or_plan, cls) else resolve(config_or_plan)


def as_dict(config: Any) -> dict:
  """The config as plain nested data (lists back to tuples: the dataclasses are hashed)."""
  d = config.to_dict() if hasattr(config, "to_dict") else dict(config)

  def fix(v):
    if isinstance(v, dict):
      return {k: fix(x) for k, x in v.items()}
    return tuple(v) if isinstance(v, list) else v
  return fix(d)


def variant(keys: dict, defaults: dict, rules: dict | None = None) -> dict:
  """``keys`` with other defaults (``defaults``: dotted key → value) and narrower rules
  (``rules``); the meanings stay those of ``keys``."""
  rules = rules or {}
  assert set(defaults) | set(rules) <= set(keys), sorted(set(defaults) | set(rules) - set(keys))
  return {k: (defaults.get(k, d), rules.get(k, r), h) for k, (d, r, h) in keys.items()}


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
  """The string ``raw`` as a value of ``default``'s type (``typ`` for a None
  placeholder; a tuple from a Python literal, ``(0.01, 0.1)``)."""
  if default is None:
    if raw.lower() in ("none", ""):
      return None
    if typ is tuple:   # an overrides section's tuple key: a Python literal, items as written
      try:
        v = ast.literal_eval(raw)
      except (ValueError, SyntaxError):
        v = raw
      return tuple(v) if isinstance(v, (tuple, list)) else (v,)
    return _scalar(key, raw, typ)
  if isinstance(default, tuple):
    try:
      v = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      v = raw
    items = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    want = type(default[0]) if default else float
    return tuple(_scalar(key, str(x), want) if isinstance(x, str) or want is not str
                 else x for x in items)
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


def override(c: ml_collections.ConfigDict, flat: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Sets every dotted key of ``flat`` on ``c`` (``update_from_flattened_dict`` with one
  line for an unknown key; a string value is converted to the key's type)."""
  paths = set(leaves(c))
  for k, v in flat.items():
    if k not in paths:
      raise ValueError(f"config key '{k}': unknown (see --help for the keys)")
    parent, leaf = _get(c, k)
    # A placeholder (a None-default key, a FieldReference) takes "none" back to None.
    if (isinstance(v, str) and v.lower() == "none"
        and isinstance(getattr(parent, "_fields", {}).get(leaf), config_dict.FieldReference)):
      parent[leaf] = None
      continue
    if isinstance(v, str) and not isinstance(parent[leaf], str):
      default = parent[leaf]
      typ = parent.get_ref(leaf).get_type() if default is None else None
      v = convert(k, v, default, typ)
    parent[leaf] = v
  return c


def parse_switches(arg: str | None, **switches) -> dict:
  """``get_config``'s ``arg`` (``key=value,…``, big_vision style): the switches given,
  only those named in ``switches`` (name=an example value: the type they take)."""
  out = {}
  for item in filter(None, (s.strip() for s in (arg or "").split(","))):
    k, eq, raw = item.partition("=")
    k = k.strip()
    if not eq:
      raise ValueError(f"config arg '{item}': expected key=value")
    if k not in switches:
      raise ValueError(f"config key '{k}': not a switch of the config file (expected one of "
                       f"{sorted(switches)}; set other keys with --config.{k}=…)")
    out[k] = convert(k, raw.strip(), switches[k])
  return out


def _switch_paths(switches) -> dict:
  """Switch name → dotted key (a bare name is its own top-level key)."""
  return dict(switches) if isinstance(switches, Mapping) else {s: s for s in switches}


def switched(keys: dict, arg: str | None, switches=()) -> tuple[ml_collections.ConfigDict, dict]:
  """``get_config(arg)``'s opening: the defaults of ``keys`` with the switches that
  ``arg`` gives set (``switches``: names of top-level keys, or a mapping name → dotted
  key; a switch takes its key's type). Returns the config and the switches given."""
  paths = _switch_paths(switches)
  given = parse_switches(arg, **{s: keys[p][0] for s, p in paths.items()})
  return override(build(keys), {paths[s]: v for s, v in given.items()}), given


def from_spec(module, *specs: Mapping | ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``module.get_config`` with the keys of ``specs`` set (dicts ``{dotted key: value}`` or
  :func:`overrides` sections; a later one wins): the file's switches
  (``module.SWITCHES``, names or name → dotted key) go to ``get_config``, the other keys
  are set on the result (:func:`override`). Unchecked (the family's ``resolve`` checks)."""
  items = {}
  for spec in specs:
    items.update(set_keys(spec) if isinstance(spec, ml_collections.ConfigDict) else spec)
  paths = _switch_paths(getattr(module, "SWITCHES", ()))
  by_path = {p: s for s, p in paths.items()}
  arg = ",".join(f"{by_path[k]}={v}" for k, v in items.items() if k in by_path)
  return override(module.get_config(arg), {k: v for k, v in items.items() if k not in by_path})


_TESTS = {">0": (lambda v: v > 0, "> 0"), ">=0": (lambda v: v >= 0, "≥ 0"),
          ">=1": (lambda v: v >= 1, "≥ 1"), "(0,1)": (lambda v: 0 < v < 1, "in (0, 1)"),
          "(0,1]": (lambda v: 0 < v <= 1, "in (0, 1]")}


def broken(rule, v) -> str | None:
  """None when ``v`` keeps ``rule`` (None passes; a tuple item by item, not empty), else
  what was expected."""
  if rule is None or v is None:
    return None
  rule = rule() if callable(rule) else rule
  ok, desc = ((lambda x: x in rule), f"one of {list(rule)}") if isinstance(rule, (tuple, list)) \
      else _TESTS[rule]
  items = tuple(v) if isinstance(v, (tuple, list)) else (v,)
  try:
    good = bool(items) and all(ok(x) for x in items)
  except TypeError:
    good = False
  return None if good else desc + (" for every item" if isinstance(v, (tuple, list)) else "")


def check(c: Mapping, keys: dict) -> None:
  """The one range check of ``c`` against ``keys``' rules: one ``ValueError`` line
  naming the key, the expected range and the found value. A key ``c`` lacks is not
  checked (a config assembled from sections, e.g. the sweep's re-evaluation rows, whose
  library dataclass then takes its own default)."""
  for path, (_, rule, _) in keys.items():
    try:
      parent, leaf = _get(c, path)
      v = parent[leaf]
    except KeyError:
      continue
    want = broken(rule, v)
    if want:
      raise ValueError(f"config key '{path}': expected {want}, found {v!r}")


# --------------------------------------------------- keys declared on dataclass fields


def field(default, rule=None, meaning: str = "", typ: type | None = None):
  """A dataclass field that is (or may be) a config key: its default, its rule (as in a
  table) and its meaning (``--help``) in one place. ``typ``: the type of a None default
  (the config's placeholder)."""
  return dataclasses.field(default=default, metadata={"key": (rule, meaning, typ)})


def section(cls, prefix: str, *, exclude=(), only=None, defaults=None, rules=None) -> dict:
  """The key table of ``cls``'s :func:`field` s: ``prefix.name`` → ``(default, rule,
  meaning)`` in field order (``prefix`` "": top-level keys), without ``exclude``
  (fields the code fixes) or only ``only``; ``defaults`` / ``rules`` (name → value):
  this config's own default / a narrower rule of a field."""
  out = {}
  for f in dataclasses.fields(cls):
    if "key" not in f.metadata or f.name in exclude or (only is not None and f.name not in only):
      continue
    rule, meaning, typ = f.metadata["key"]
    default = (defaults or {}).get(f.name, f.default)
    if default is None:
      default = placeholder(typ)
    out[f"{prefix}.{f.name}" if prefix else f.name] = (
        default, (rules or {}).get(f.name, rule), meaning)
  unknown = set(defaults or {}) | set(rules or {})
  assert unknown <= {k.rsplit(".", 1)[-1] for k in out}, sorted(unknown)
  return out


def check_fields(obj, prefix: str = "") -> None:
  """The rules of ``obj``'s :func:`field` s (a dataclass built by hand, not from a
  resolved config): one ``ValueError`` line, ``{prefix}{field}: expected …, found …``."""
  for f in dataclasses.fields(obj):
    if "key" in f.metadata:
      v = getattr(obj, f.name)
      want = broken(f.metadata["key"][0], v)
      if want:
        raise ValueError(f"{prefix}{f.name}: expected {want}, found {v!r}")


def _sections(keys: dict) -> list[str]:
  return [p for p, (d, _, _) in keys.items() if isinstance(d, ml_collections.ConfigDict)]


def _listed(c: ml_collections.ConfigDict, keys: dict) -> list[str]:
  """The keys ``--help`` lists: the leaves of ``c``, an :func:`overrides` section as one."""
  secs, out = _sections(keys), []
  for p in leaves(c):
    sec = next((s for s in secs if p.startswith(s + ".")), None)
    if sec is None:
      out.append(p)
    elif sec not in out:
      out.append(sec)
  return out


def describe(c: ml_collections.ConfigDict, keys: dict) -> str:
  """One line per key: ``dotted.key = default — meaning`` (an :func:`overrides` section:
  ``section.* = {the keys it sets} — meaning``)."""
  flat = c.to_dict()

  def shown(p):
    v = flat
    for k in p.split("."):
      v = v[k]
    return repr(v)

  secs = _sections(keys)

  def line(p):
    meaning = keys[p][2] if p in keys else "(undocumented)"
    if p in secs:
      parent, leaf = _get(c, p)
      return f"{p}.* = {set_keys(parent[leaf])!r} — {meaning}"
    return f"{p} = {shown(p)} — {meaning}"
  return "\n".join(line(p) for p in _listed(c, keys))


def config_help(module) -> str:
  """The ``--config`` flag's help: the file's switches and every key of
  ``module.get_config()`` with its default and meaning (``module.KEYS``)."""
  c = module.get_config()
  path = module.__name__.replace(".", "/") + ".py"
  switches = getattr(module, "SWITCHES", ())
  arg = (f"{path}:" + ",".join(f"{s}=…" for s in switches) + " (switches: " +
         ", ".join(switches) + "), then ") if switches else f"{path}, then "
  return ("config file, e.g. " + arg + "--config.a.b=value for any key (tuples as Python "
          "literals). Keys and defaults:\n" + describe(c, module.KEYS))


def missing_help(c: ml_collections.ConfigDict, keys: dict) -> list[str]:
  """Keys of ``c`` without a help line, and help lines without a key."""
  have = set(_listed(c, keys))
  return sorted((have - set(keys)) | (set(keys) - have))


STORE = {   # the store keys of every run config
    "scale": (1.0, "(0,1]", "simulator scale in (0, 1] (ignored for a store directory)"),
    "data_dir": ("", None, "where simulated stores are cached ('' = runs/data)"),
    "check_hashes": (True, None, "verify the store's sha256 hashes before the run (False: "
                     "skip, for very large stores; the other checks always run)"),
}
