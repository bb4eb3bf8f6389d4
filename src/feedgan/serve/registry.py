"""The model registry: trained runs on disk, loaded as data (never pickle).

A registry is a folder of runs as ``feedgan train`` (or ``bench --save-models`` / ``demo``) writes
them: ``DIR/<run>/models/<model>/model.json`` + ``model.safetensors``, with the run's
``metrics.json`` next to them. Each saved model is one entry, named ``<run>`` when the run holds a
single model (``00003-train-ease``) and ``<run>/<model>`` otherwise. A request may also name a
model *kind* (``ease``): the newest entry of that kind answers.

Each entry also carries what ``model.json`` says the model predicts, read without loading any
weights: ``target`` (the action it predicts, None for a model fitted on every action), ``aux`` (its
auxiliary actions and weights) and ``propensities`` (its class has ``predict_proba``: it gives
P(target | user, shown item)). :meth:`Registry.for_action` finds a model by the action it predicts.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..rec.base import Recommender, registry as model_classes


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class Entry:
    name: str
    kind: str
    path: Path
    metrics: dict = field(default_factory=dict)
    target: str | None = None  # the action the model predicts (None: fitted on every action)
    aux: dict = field(default_factory=dict)  # auxiliary action -> weight
    propensities: bool = False  # the model has predict_proba

    def public(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": str(self.path), "metrics": self.metrics,
                "target": self.target, "aux": self.aux, "propensities": self.propensities}


class LoadedModel:
    """A recommender plus what serving needs from it: popularity for the fallback, id lookups."""

    def __init__(self, entry: Entry, model: Recommender):
        self.entry, self.model = entry, model
        # raw id (in the store's text form) -> index; dict lookups beat a pandas Index per request
        self.user_index = {str(r): k for k, r in enumerate(model.user_ids_.values.tolist())}
        self.item_index = {str(r): k for k, r in enumerate(model.item_ids_.values.tolist())}
        # (n_items,) counts of the target action (of every action for a model without a target)
        self.popularity = np.asarray(model.seen.sum(0)).ravel().astype(np.float32)


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
        import feedgan.rec  # noqa: F401  (defines every model class, to tell which give propensities)

        classes = model_classes()
        for run in sorted(p for p in self.root.iterdir() if p.is_dir()):
            models = sorted(m for m in (run / "models").glob("*") if (m / "model.json").exists())
            metrics = {}
            if (run / "metrics.json").exists():
                try:
                    metrics = json.loads((run / "metrics.json").read_text())
                except json.JSONDecodeError:
                    metrics = {}
            for m in models:
                meta = json.loads((m / "model.json").read_text())
                kind = meta["model"]
                name = run.name if len(models) == 1 else f"{run.name}/{m.name}"
                target = meta.get("target")
                aux = meta.get("aux") or {}
                out.append(Entry(name, kind, m, _summary(metrics, m.name),
                                 target=str(target) if target is not None else None,
                                 aux={str(a): float(w) for a, w in aux.items()} if isinstance(aux, dict) else {},
                                 propensities=hasattr(classes.get(kind), "predict_proba")))
        return out

    def targets(self, propensities: bool = False) -> list[str]:
        """The actions some entry predicts (``propensities``: only entries with ``predict_proba``)."""
        entries = self._entries if self._entries is not None else self.entries()
        return sorted({e.target for e in entries if e.target is not None and (e.propensities or not propensities)})

    def for_action(self, action: str, prefer: str | None = None, propensities: bool = False) -> Entry | None:
        """The entry that predicts ``action``: ``prefer`` (an entry name, e.g. the active model) when
        it does, else the newest such entry; None when none does. Rescans the folder once on a miss.
        ``propensities``: only entries whose model has ``predict_proba``."""
        for entries in (self._entries, None):
            entries = entries if entries is not None else self.entries()
            fit = [e for e in entries if e.target == action and (e.propensities or not propensities)]
            if fit:
                return next((e for e in fit if e.name == prefer), fit[-1])
        return None

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
