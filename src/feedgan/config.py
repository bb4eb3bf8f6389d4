"""Dataclass configs <-> YAML. Every run stores its resolved config as ``config.yaml``."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .io import atomic_open

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) from dataclasses, paths and tuples, for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj


def save_yaml(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as fh:
        yaml.safe_dump(to_dict(obj), fh, sort_keys=False)


def load_yaml(path: str | Path, cls: type[T] | None = None) -> T | dict:
    """Read YAML; with ``cls`` (a dataclass), unknown keys are an error that names them."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if cls is None:
        return data
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(names)}")
    return cls(**data)
