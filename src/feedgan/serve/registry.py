"""The model registry: trained runs on disk, loaded as data (never pickle).

A registry is a folder of runs as ``feedgan train`` (or ``bench --save-models`` / ``demo``) writes
them: ``DIR/<run>/models/<model>/model.json`` + ``model.safetensors``, with the run's
``metrics.json`` next to them. Each saved model is one entry, named ``<run>`` when the run holds a
single model (``00003-train-ease``) and ``<run>/<model>`` otherwise. A request may also name a
model *kind* (``ease``): the newest entry of that kind answers.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..rec.base import Recommender


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class Entry:
    name: str
    kind: str
    path: Path
    metrics: dict = field(default_factory=dict)

    def public(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": str(self.path), "metrics": self.metrics}


class LoadedModel:
    """A recommender plus what serving needs from it: popularity for the fallback, id lookups."""

    def __init__(self, entry: Entry, model: Recommender):
        self.entry, self.model = entry, model
        # raw id (in the store's text form) -> index; dict lookups beat a pandas Index per request
        self.user_index = {str(r): k for k, r in enumerate(model.user_ids_.values.tolist())}
        self.item_index = {str(r): k for k, r in enumerate(model.item_ids_.values.tolist())}
        self.popularity = np.asarray(model.train_.sum(0)).ravel().astype(np.float32)  # (n_items,)


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._loaded: dict[str, LoadedModel] = {}
        self._entries: list[Entry] | None = None  # cached scan; refreshed by entries() and on a miss
        self._lock = threading.Lock()

    def entries(self) -> list[Entry]:
        """Every saved model under the root, oldest run first (scans the folder)."""
        self._entries = self._scan()
        return self._entries

    def _scan(self) -> list[Entry]:
        out = []
        if not self.root.is_dir():
            return out
        for run in sorted(p for p in self.root.iterdir() if p.is_dir()):
            models = sorted(m for m in (run / "models").glob("*") if (m / "model.json").exists())
            metrics = {}
            if (run / "metrics.json").exists():
                try:
                    metrics = json.loads((run / "metrics.json").read_text())
                except json.JSONDecodeError:
                    metrics = {}
            for m in models:
                kind = json.loads((m / "model.json").read_text())["model"]
                name = run.name if len(models) == 1 else f"{run.name}/{m.name}"
                out.append(Entry(name, kind, m, _summary(metrics, m.name)))
        return out

    def resolve(self, name: str) -> Entry:
        """The entry called ``name``, or the newest of that kind; rescans the folder once on a miss."""
        for entries in (self._entries, None):
            entries = entries if entries is not None else self.entries()
            for e in entries:
                if e.name == name:
                    return e
            of_kind = [e for e in entries if e.kind == name or e.path.name == name]
            if of_kind:
                return of_kind[-1]
        known = ", ".join(e.name for e in entries) or f"none (train one with `feedgan train ... --runs-dir {self.root}`)"
        raise UnknownModelError(f"unknown model {name!r}; available: {known}")

    def load(self, name: str) -> LoadedModel:
        entry = self.resolve(name)
        with self._lock:
            if entry.name not in self._loaded:
                self._loaded[entry.name] = LoadedModel(entry, Recommender.load(entry.path))
            return self._loaded[entry.name]


def _summary(metrics: dict, model_dir: str) -> dict:
    """The headline numbers of a run's metrics.json (train and bench runs differ in shape)."""
    out = {}
    for part in ("valid", "test"):
        if isinstance(metrics.get(part), dict):
            out[part] = {k: v for k, v in metrics[part].items() if k in ("ndcg@20", "recall@20", "precision@10")}
    for row in metrics.get("leaderboard", metrics.get("rows", [])) or []:
        if isinstance(row, dict) and row.get("model") == model_dir and "test" in row:
            out["test"] = {k: row["test"][k]["mean"] for k in ("ndcg@20", "recall@20") if k in row["test"]}
    return out
