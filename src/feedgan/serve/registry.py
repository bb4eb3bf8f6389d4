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

A damaged run never breaks the registry: a model whose ``model.json`` does not check out (cut off,
no ``model`` kind, hyperparameters of the wrong type) or whose ``model.safetensors`` header does not
fit it is left out of the entries and listed in :attr:`Registry.broken` as ``{"run", "reason"}``;
so is one that fails to load later (asking for it by name then says why it is broken).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import ArtifactError, read_json, safetensors_shapes
from ..rec.base import FRIENDS, Recommender, check_layout, read_model_meta


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
        self.broken: list[dict[str, str]] = []  # {"run": entry name, "reason": one line}, from the last scan
        # entry name -> (files' signature, reason) of models that failed to load; skipped until their files change
        self._failed: dict[str, tuple[tuple, str]] = {}
        self._lock = threading.Lock()

    def entries(self) -> list[Entry]:
        """Every usable saved model under the root, oldest run first (scans the folder; the
        damaged ones go to :attr:`broken`)."""
        self._entries, self.broken = self._scan()
        return self._entries

    def _scan(self) -> tuple[list[Entry], list[dict[str, str]]]:
        out, broken = [], []
        if not self.root.is_dir():
            return out, broken
        for run in sorted(p for p in self.root.iterdir() if p.is_dir()):
            models = sorted(m for m in (run / "models").glob("*") if (m / "model.json").exists())
            metrics = _read_metrics(run / "metrics.json") if models else {}
            for m in models:
                name = run.name if len(models) == 1 else f"{run.name}/{m.name}"
                failed = self._failed.get(name)
                if failed is not None and failed[0] == _signature(m):
                    broken.append({"run": name, "reason": failed[1]})
                    continue
                try:
                    out.append(_entry(name, m, _summary(metrics, m.name)))
                except ArtifactError as e:
                    broken.append({"run": name, "reason": e.relative(self.root)})
                except FileNotFoundError:  # deleted while we looked
                    continue
        return out, broken

    def targets(self, propensities: bool = False) -> list[str]:
        """The actions some entry predicts (``propensities``: only entries with ``predict_proba``)."""
        entries = self._entries if self._entries is not None else self.entries()
        return sorted({e.target for e in entries if e.target is not None and (e.propensities or not propensities)})

    def actions(self) -> set[str]:
        """The actions some entry predicts or reads: targets and auxiliary actions (not the derived ``friends``)."""
        entries = self._entries if self._entries is not None else self.entries()
        return {a for e in entries for a in (e.target, *e.aux) if a is not None and a != FRIENDS}

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
        why = next((b["reason"] for b in self.broken if b["run"] == name), None)
        if why is not None:
            raise UnknownModelError(f"model {name!r} is broken: {why}; available: {known}")
        raise UnknownModelError(f"unknown model {name!r}; available: {known}")

    def loaded(self, name: str) -> LoadedModel | None:
        """Entry ``name``'s model if it is loaded already and still among the entries of the last
        scan (never loads nor scans: :meth:`load` answers the other cases), else None."""
        if self._entries is None or not any(e.name == name for e in self._entries):
            return None
        return self._loaded.get(name)

    def load(self, name: str) -> LoadedModel:
        """The loaded model of entry ``name`` (or the newest of that kind), cached. One that fails
        to load becomes broken (:class:`UnknownModelError` saying why), the registry carries on."""
        entry = self.resolve(name)
        with self._lock:
            if entry.name not in self._loaded:
                try:
                    self._loaded[entry.name] = LoadedModel(entry, Recommender.load(entry.path))
                except (ArtifactError, FileNotFoundError) as e:
                    reason = e.relative(self.root) if isinstance(e, ArtifactError) else "model.json is gone"
                    self._mark_broken(entry, reason)
                    raise UnknownModelError(f"model {entry.name!r} is broken: {reason}") from None
            return self._loaded[entry.name]

    def _mark_broken(self, entry: Entry, reason: str) -> None:
        """Take ``entry`` out of the entries and into :attr:`broken` until its files change."""
        self._failed[entry.name] = (_signature(entry.path), reason)
        if self._entries is not None:
            self._entries = [e for e in self._entries if e.name != entry.name]
        self.broken = [b for b in self.broken if b["run"] != entry.name] + [{"run": entry.name, "reason": reason}]


def _entry(name: str, folder: Path, metrics: dict) -> Entry:
    """The entry of one saved model, from its ``model.json`` and its safetensors header (no weights
    read); :class:`ArtifactError` when either does not check out."""
    cls, _, meta = read_model_meta(folder)
    file = folder / "model.safetensors"
    check_layout(file, safetensors_shapes(file), meta)
    return Entry(name, cls.name, folder, metrics, target=meta["target"], aux=meta["aux"],
                 propensities=hasattr(cls, "predict_proba"))


def _signature(folder: Path) -> tuple:
    """What tells a rewritten model folder from the one that failed: its files' sizes and times."""
    out = []
    for f in ("model.json", "model.safetensors"):
        try:
            st = (folder / f).stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _read_metrics(file: Path) -> dict:
    """A run's metrics.json, or {} when it is missing or unreadable (the metrics are for show)."""
    try:
        metrics = read_json(file)
    except (FileNotFoundError, ArtifactError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def _summary(metrics: dict, model_dir: str) -> dict:
    """The headline numbers of a run's metrics.json (train and bench runs differ in shape); only
    finite numbers are kept."""
    out = {}
    for part in ("valid", "test"):
        if isinstance(metrics.get(part), dict):
            out[part] = {k: v for k, v in metrics[part].items()
                         if k in ("ndcg@20", "recall@20", "precision@10") and _number(v)}
    rows = metrics.get("leaderboard", metrics.get("rows", []))
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("model") == model_dir and isinstance(row.get("test"), dict):
            test = row["test"]
            out["test"] = {k: test[k]["mean"] for k in ("ndcg@20", "recall@20")
                           if isinstance(test.get(k), dict) and _number(test[k].get("mean"))}
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
