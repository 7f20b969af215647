"""Frozen-dataclass configs: command-line overrides, validation and serialisation.

Every experiment's config is a frozen dataclass whose defaults are its documentation. The runner
turns `--config.KEY=VALUE` strings into typed values here, checked against the type of the
default, so a typo or a wrong type fails before any work starts.
"""

import dataclasses
import types
import typing
from typing import Any, Literal, Mapping

from jaxml.errors import UserError


def field_types(cfg_cls) -> dict[str, Any]:
  """Maps each field name of a config dataclass to its resolved type annotation."""
  hints = typing.get_type_hints(cfg_cls)
  return {f.name: hints[f.name] for f in dataclasses.fields(cfg_cls)}


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_value(key: str, text: str, tp: Any) -> Any:
  """Parses the command-line string `text` as a value of type `tp` (raises UserError)."""
  origin = typing.get_origin(tp)
  args = typing.get_args(tp)
  bad = lambda what: UserError(
      f"config key '{key}' expects {what}, got {text!r}; fix the value in --config.{key}=...")
  if origin in (typing.Union, types.UnionType):  # Optional[X]: 'none' means None.
    if text.lower() == "none" and type(None) in args:
      return None
    inner = [a for a in args if a is not type(None)]
    return parse_value(key, text, inner[0])
  if origin is Literal:
    if text not in args:
      raise bad("one of " + ", ".join(map(str, args)))
    return text
  if origin is tuple:  # tuple[int, ...] written as 70,30 (empty string: empty tuple).
    elem = args[0]
    parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
    return tuple(parse_value(key, p.strip(), elem) for p in parts)
  if tp is bool:
    if text.lower() in _TRUE:
      return True
    if text.lower() in _FALSE:
      return False
    raise bad("true or false")
  if tp is int:
    try:
      return int(text)
    except ValueError:
      raise bad("an integer") from None
  if tp is float:
    try:
      return float(text)
    except ValueError:
      raise bad("a number") from None
  if tp is str:
    return text
  raise TypeError(f"config field '{key}' has unsupported type {tp}")


def apply_overrides(cfg, overrides: Mapping[str, str]):
  """Returns `cfg` with string `overrides` parsed and applied; unknown keys list the valid ones."""
  types_ = field_types(type(cfg))
  unknown = [k for k in overrides if k not in types_]
  if unknown:
    raise UserError(
        f"unknown config key(s) {', '.join(unknown)} for {type(cfg).__name__}; "
        f"valid keys: {', '.join(types_)}")
  values = {k: parse_value(k, v, types_[k]) for k, v in overrides.items()}
  return dataclasses.replace(cfg, **values)


def check_choices(cfg) -> None:
  """Raises UserError if a Literal-typed field holds a value outside its choices."""
  for name, tp in field_types(type(cfg)).items():
    if typing.get_origin(tp) is Literal and getattr(cfg, name) not in typing.get_args(tp):
      raise UserError(f"config key '{name}' must be one of {typing.get_args(tp)}, "
                      f"got {getattr(cfg, name)!r}")


def require(ok: bool, key: str, what: str, value: Any) -> None:
  """Config validation helper: UserError naming the key unless `ok`."""
  if not ok:
    raise UserError(f"config key '{key}' must be {what}, got {value!r}; "
                    f"fix it with --config.{key}=...")


def to_dict(cfg) -> dict[str, Any]:
  """The config as a JSON-ready dict (tuples become lists)."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def import_modules(names: str) -> list:
  """Imports the comma-separated Python modules `names` (e.g. a file of your own that registers
  a cell in jaxml.recurrent.CELLS), so what they register exists before the run is built.
  A module that cannot be found is a UserError."""
  import importlib
  out = []
  for name in (n.strip() for n in names.split(",")):
    if not name:
      continue
    try:
      out.append(importlib.import_module(name))
    except ModuleNotFoundError as e:
      if e.name is None or not name.startswith(e.name):
        raise  # the module exists but imports something missing: its own bug, with traceback
      raise UserError(f"--imports: no module named {name!r}; put {name}.py in the current "
                      f"directory or on PYTHONPATH") from None
  return out
