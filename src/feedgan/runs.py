"""Run folders: ``runs/NNNNN-name/`` numbered in creation order, never overwritten."""
from __future__ import annotations

import re
from pathlib import Path

_RUN = re.compile(r"^(\d{5})-")


def check_runs_root(root: str | Path) -> Path:
    """``root`` as a folder for run folders: one that exists or can be made, never a file (checked before
    a long job starts, so its end does not fail on it)."""
    root = Path(root)
    blocker = next((p for p in (root, *root.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ValueError(f"{root}: {'it' if blocker == root else blocker} is a file, and run folders go "
                                 "in a folder; pass another --runs-dir")
    return root


def new_run_dir(root: str | Path = "runs", name: str = "run") -> Path:
    """Create and return the next free ``root/NNNNN-name`` folder (safe against concurrent runs)."""
    root = check_runs_root(root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := _RUN.match(p.name))]
    number = max(taken, default=0) + 1
    while True:
        path = root / f"{number:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


def find_run(spec: str | Path, root: str | Path = "runs") -> Path:
    """A run folder from a path, a number (``3`` or ``00003``) or a full folder name."""
    path = Path(spec)
    if path.is_dir():
        return path
    root = Path(root)
    if str(spec).isdigit() and root.is_dir():
        hits = [p for p in root.iterdir() if p.name.startswith(f"{int(spec):05d}-")]
        if hits:
            return hits[0]
    raise FileNotFoundError(f"no run {spec!r} (looked for a folder, or a number under {root}/)")
