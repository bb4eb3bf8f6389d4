"""Hyperparameters typed by the constructor that takes them.

The annotation of each constructor argument (else the type of its default) says what it takes:
bool, int, float, str, a tuple or list of those, each optionally ``None``. Two uses::

    parse_params(EASE, {"l2": "5e2"})              # text from the command line -> {"l2": 500.0}
    check_params(EASE, {"l2": "../../etc/passwd"})  # values read from a run folder -> ParamError

Text is parsed by that type (``5e2`` is a float, ``400,400`` or ``[400, 400]`` a tuple of ints,
``none`` is None where None is allowed); stored values must already have it (JSON numbers, booleans,
strings, lists). Either way a wrong value raises :class:`ParamError` naming the parameter and the
type it expects; unknown names are errors too.
"""
from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping

_SCALARS = (bool, int, float, str)
_NAMES = {bool: "a boolean (true or false)", int: "an integer", float: "a number", str: "a string"}
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}
_BAD = object()  # a value that is not of the type asked for


class ParamError(ValueError):
    """A hyperparameter that the constructor does not take, or a value of the wrong type."""


@dataclass(frozen=True)
class Param:
    """What one constructor argument takes: ``kind`` (a scalar type, tuple or list; None when the
    annotation says nothing checkable), whether None is allowed, and the element types of a sequence
    (one type for any length, or one per position)."""

    name: str
    kind: type | None
    nullable: bool = False
    items: tuple[type, ...] | type | None = None
    default: Any = inspect.Parameter.empty

    def describe(self) -> str:
        if self.kind in (tuple, list):
            if isinstance(self.items, tuple):
                what = f"a {self.kind.__name__} of {len(self.items)} ({', '.join(_short(t) for t in self.items)})"
            else:
                what = f"a {self.kind.__name__}" + (f" of {_short(self.items)}s" if self.items else "")
        else:
            what = _NAMES.get(self.kind, "a value")
        what += " or none" if self.nullable else ""
        if self.default is not inspect.Parameter.empty and not callable(self.default):
            what += f" (default {self.default!r})"
        return what


def _short(t: type) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(t, t.__name__)


def signature_params(target: type) -> dict[str, Param]:
    """Name -> :class:`Param` for every argument of ``target``'s constructor (a class or dataclass)."""
    hints = typing.get_type_hints(target.__init__)
    out = {}
    for name, p in inspect.signature(target).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = p.default
        if default is not p.empty and type(default).__name__ == "_HAS_DEFAULT_FACTORY_CLASS":
            default = p.empty  # a dataclass default_factory: no plain default to show
        out[name] = _param(name, hints.get(name), default)
    return out


def _param(name: str, hint, default) -> Param:
    """A :class:`Param` from an annotation such as ``int | None``, ``tuple[float, float]`` or ``tuple``."""
    nullable = default is None
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = nullable or len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else None
    origin, args = typing.get_origin(hint) or hint, typing.get_args(hint)
    if origin in (tuple, list):
        items: tuple[type, ...] | type | None = None
        if args and Ellipsis not in args and origin is tuple and all(a in _SCALARS for a in args):
            items = tuple(args)
        elif args and args[0] in _SCALARS:
            items = args[0]
        elif isinstance(default, (tuple, list)) and default and len({type(v) for v in default}) == 1:
            items = type(default[0]) if type(default[0]) in _SCALARS else None
        return Param(name, origin, nullable, items, default)
    if origin in _SCALARS:
        return Param(name, origin, nullable, None, default)
    if hint is None and default is not inspect.Parameter.empty and type(default) in _SCALARS:
        return Param(name, type(default), nullable, None, default)
    return Param(name, None, nullable, None, default)


def parse_params(target: type, texts: Mapping[str, str], owner: str | None = None) -> dict[str, Any]:
    """Values from text (``{"l2": "5e2"}``), each parsed by the type ``target`` takes it as."""
    spec = _known(target, texts, owner)
    return {k: _parse(spec[k], str(v), owner or target.__name__) for k, v in texts.items()}


def check_params(target: type, values: Mapping[str, Any], owner: str | None = None) -> dict[str, Any]:
    """Stored values (from JSON), each checked against the type ``target`` takes it as; tuples come
    back as tuples (JSON has only lists) and integers given for a float as floats."""
    spec = _known(target, values, owner)
    return {k: _check(spec[k], v, owner or target.__name__) for k, v in values.items()}


def _known(target: type, names, owner: str | None) -> dict[str, Param]:
    spec = signature_params(target)
    unknown = sorted(set(names) - set(spec))
    if unknown:
        raise ParamError(f"{owner or target.__name__} has no hyperparameter {', '.join(map(repr, unknown))}; "
                         f"it has {', '.join(spec) or 'none'}")
    return spec


def _wrong(p: Param, value, owner: str) -> ParamError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ParamError(f"{owner}: hyperparameter {p.name} must be {p.describe()}, got {shown}")


# -- text ---------------------------------------------------------------------------------------------
def _parse(p: Param, text: str, owner: str):
    text = text.strip()
    if p.nullable and text.lower() in _NONE:
        return None
    parts = None
    if p.kind in (tuple, list):
        inner = text[1:-1] if text[:1] + text[-1:] in ("[]", "()") else text
        parts = [t.strip() for t in inner.split(",")]
        parts = parts[:-1] if parts and not parts[-1] else parts  # "(400,)" and "" -> one and none
    return _typed(p, text, parts, _from_text, owner)


def _typed(p: Param, raw, items: list | None, convert, owner: str):
    """``raw`` converted to ``p``'s type by ``convert(kind, value) -> value | _BAD``, element-wise
    over ``items`` for a tuple/list parameter (``items`` None there: not a sequence)."""
    if p.kind in (tuple, list):
        if items is None or (isinstance(p.items, tuple) and len(items) != len(p.items)):
            raise _wrong(p, raw, owner)
        kinds = p.items if isinstance(p.items, tuple) else [p.items] * len(items)
        out = [convert(k, v) for k, v in zip(kinds, items)]
        if any(v is _BAD for v in out):
            raise _wrong(p, raw, owner)
        return p.kind(out)
    out = convert(p.kind, raw)
    if out is _BAD:
        raise _wrong(p, raw, owner)
    return out


def _from_text(kind: type | None, text: str):
    """``text`` read as ``kind`` (None: a number if it reads as one, else the text), or ``_BAD``."""
    try:
        if kind is bool:
            return text.lower() in _TRUE if text.lower() in _TRUE | _FALSE else _BAD
        if kind is int:
            return _integer(text)
        if kind is float:
            return _finite(float(text))
        if kind is str:
            return text
        return _number_or_text(text)
    except (ValueError, OverflowError):
        return _BAD


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        f = float(text)  # "1e3" is an integer written as a float
        if not f.is_integer():
            raise
        return int(f)


def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError("not finite")
    return x


def _number_or_text(text: str):
    """Nothing to go by: a number if the text reads as one, else the text."""
    for read in (int, float):
        try:
            return read(text)
        except ValueError:
            pass
    return text


# -- stored values ------------------------------------------------------------------------------------
def _check(p: Param, value, owner: str):
    if value is None and p.nullable:
        return None
    return _typed(p, value, list(value) if isinstance(value, (list, tuple)) else None, _scalar, owner)


def _scalar(kind: type | None, value):
    """``value`` as ``kind`` when it already is one (an int counts as a float), else ``_BAD``."""
    if kind is None:
        return value if value is None or isinstance(value, _SCALARS) else _BAD
    if kind is bool:
        return value if isinstance(value, bool) else _BAD
    if isinstance(value, bool):
        return _BAD  # True is an int to Python, not to a hyperparameter
    if kind is int:
        return value if isinstance(value, int) else _BAD
    if kind is float:
        try:
            return _finite(float(value)) if isinstance(value, (int, float)) else _BAD
        except (ValueError, OverflowError):  # NaN, infinity, an int beyond float range
            return _BAD
    return value if isinstance(value, kind) else _BAD
