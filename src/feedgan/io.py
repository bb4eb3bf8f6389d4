"""Artifact files: atomic output, and reading them back with errors that name the file.

Writing goes to a temporary file beside the target (``.NAME.XXXXXXXX.tmp``), then a rename: a crash
or an exception mid-write leaves the old file (or nothing) in place, never half a file; a killed
process may leave the temporary file, which :func:`remove_orphans` deletes.

Reading (:func:`read_json`, :func:`read_safetensors`) raises :class:`ArtifactError` for a missing,
truncated or damaged file, never a ``JSONDecodeError`` or a safetensors error.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

# what atomic_path leaves behind when the process dies before the rename: .NAME.<8 random chars>.tmp
_ORPHAN = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
DAMAGED = "the file is damaged or was not written by feedgan: restore it from a backup, or train again"


class ArtifactError(ValueError):
    """A stored artifact (run folder, model, checkpoint) cannot be used. ``str(err)`` is one line:
    the file, what is wrong with it and the fix; :meth:`relative` names the file below a root."""

    def __init__(self, file: str | Path, problem: str, fix: str | None = DAMAGED):
        self.file, self.problem, self.fix = Path(file), problem, fix
        super().__init__(self._message(str(self.file)))

    def _message(self, where: str) -> str:
        return f"{where}: {self.problem}" + (f"; {self.fix}" if self.fix else "")

    def relative(self, root: str | Path) -> str:
        """The message with the file named relative to ``root`` (no absolute paths)."""
        try:
            return self._message(self.file.relative_to(root).as_posix())
        except ValueError:
            return self._message(self.file.name)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it is renamed to ``path``."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(path, "is a folder, and a file is to be written here",
                            fix="pass a file name, or a path inside the folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
    """``open`` for writing that only replaces ``path`` once the block finishes without error."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh


def remove_orphans(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed writer left under ``folder`` (recursively); returns them."""
    folder = Path(folder)
    found = [p for p in folder.rglob(".*.tmp") if p.is_file() and _ORPHAN.match(p.name)] if folder.is_dir() else []
    for p in found:
        p.unlink(missing_ok=True)
    return found


def read_json(path: str | Path, missing: str | None = None) -> Any:
    """Parse a JSON artifact; a missing file is a ``FileNotFoundError`` (with ``missing`` as the
    message when given), an unreadable one an :class:`ArtifactError` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(missing or f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"cannot read it ({type(exc).__name__}: {exc})") from exc
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        problem = "empty" if not text.strip() else f"not valid JSON ({exc})"
        raise ArtifactError(path, f"{problem}, e.g. cut off by a crash") from exc


def read_safetensors(path: str | Path, framework: str = "numpy") -> dict:
    """Every tensor of a safetensors file (``framework`` "numpy" or "torch"), or an
    :class:`ArtifactError` naming the file when it is missing, truncated or damaged."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as load_numpy
    from safetensors.torch import load_file as load_torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "missing", "the run was not finished or was moved: train again")
    try:
        return (load_torch if framework == "torch" else load_numpy)(str(path))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(path, f"unreadable safetensors ({exc})") from exc


def safetensors_shapes(path: str | Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header alone (no weights read); :class:`ArtifactError`
    for a missing or damaged file (a truncated file fails here: its header no longer covers it)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "missing", "the run was not finished or was moved: train again")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            return {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(path, f"unreadable safetensors ({exc})") from exc


def write_json(path: str | Path, obj) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=_jsonable)
        fh.write("\n")


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    raise TypeError(f"cannot write {type(o).__name__} as JSON")
