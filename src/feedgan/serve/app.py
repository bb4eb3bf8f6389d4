"""The HTTP API: recommendations from registered models over an embedded interaction store.

    app = create_app(registry="runs", db="feedgan.db")   # then: uvicorn, or `feedgan serve`

Ids in URLs and bodies are the raw ids clients know. A recommendation folds in the user's stored
history (models with ``fold_in``) or uses the user's learned vector (the others), so an
interaction posted a moment ago counts at once, without retraining. Users a model cannot score
get the most popular items, with ``"fallback": "popularity"`` in the response.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import scipy.sparse as sp
import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from ..rec.base import top_n
from .metrics import Metrics
from .registry import LoadedModel, Registry, UnknownModelError
from .store import IdTypeError, Interaction, Store

MAX_BATCH = 10_000  # interactions per POST
MAX_N = 1_000  # items per list

Id = StrictInt | StrictStr


class InteractionIn(BaseModel):
    """One interaction: who did what to which item, when (seconds since the epoch) and how much."""

    model_config = ConfigDict(extra="forbid")
    user: Id
    item: Id
    action: str = Field("view", min_length=1, max_length=64)
    timestamp: float | None = None
    weight: float = 1.0

    @field_validator("weight", "timestamp")
    @classmethod
    def finite(cls, v):
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interactions: list[InteractionIn]


class _Timing:
    """ASGI middleware: request count and latency per route template (cheaper than BaseHTTPMiddleware)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            self.metrics.observe(scope["method"], getattr(route, "path", "unmatched"), status[0],
                                 time.perf_counter() - t0)


class Service:
    """The state behind the endpoints: store, registry, the active model."""

    def __init__(self, registry: str | Path, db: str | Path, import_train: bool = True):
        self.store = Store(db)
        self.registry = Registry(registry)
        self.metrics = Metrics()
        self.active: str | None = None
        saved = self.store.get_meta("active_model")
        entries = self.registry.entries()
        if saved is not None and any(e.name == saved for e in entries):
            self.active = saved
        elif entries:
            self.active = entries[-1].name
        if self.active is not None and import_train and self.store.count() == 0:
            m = self.registry.load(self.active).model  # the model's training data becomes stored history
            self.store.import_matrix(m.user_ids_.values, m.item_ids_.values, m.train_)

    def model(self, name: str | None) -> LoadedModel:
        name = name or self.active
        if name is None:
            raise HTTPException(503, f"no model in the registry {self.registry.root}; train one with "
                                     f"`feedgan train ease ... --runs-dir {self.registry.root}`")
        try:
            return self.registry.load(name)
        except UnknownModelError as e:
            raise HTTPException(404, str(e)) from None

    def canonical(self, raw: str | int, field: str) -> str:
        try:
            return self.store.canonical(raw, field)
        except IdTypeError as e:
            raise HTTPException(422, str(e)) from None

    # -- recommendation logic ---------------------------------------------------------------------
    def recommend(self, user: str, n: int, model: str | None, exclude_seen: bool) -> dict:
        lm = self.model(model)
        m = lm.model
        uid = self.canonical(user, "user")
        seen = {lm.item_index[i] for i in self.store.items_of(uid) if i in lm.item_index}
        u = lm.user_index.get(uid, -1)
        if u >= 0:
            seen.update(m.train_.indices[m.train_.indptr[u]:m.train_.indptr[u + 1]].tolist())
        fallback = None
        if m.fold_in and seen:
            scores = m.score(history=_one_row(sorted(seen), m.n_items_))
        elif not m.fold_in and u >= 0:
            scores = m.score(users=[u])
        else:
            scores, fallback = lm.popularity[None, :].copy(), "popularity"
        items, values = _top(scores, sorted(seen) if exclude_seen else [], n)
        return {"user": user, "model": lm.entry.name, "fallback": fallback,
                "items": _items(m, items, values)}

    def similar(self, item: str, n: int, model: str | None) -> dict:
        lm = self.model(model)
        m = lm.model
        i = lm.item_index.get(self.canonical(item, "item"), -1)
        if i < 0:
            raise HTTPException(404, f"unknown item {item!r} for model {lm.entry.name}")
        if m.fold_in:  # what the model recommends to someone whose whole history is this item
            scores = m.score(history=_one_row([i], m.n_items_))
        elif hasattr(m, "item_factors_"):
            V = m.item_factors_ / np.linalg.norm(m.item_factors_, axis=1, keepdims=True).clip(1e-12)
            scores = (V @ V[i])[None, :]  # cosine similarity of the item vectors
        else:
            raise HTTPException(400, f"model {lm.entry.name} ({m.name}) cannot list similar items: it needs a "
                                     "user's history or item vectors; pick another with ?model=")
        items, values = _top(scores, [i], n)
        return {"item": item, "model": lm.entry.name, "items": _items(m, items, values)}


def _one_row(cols: list[int], n_items: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(cols), np.float32), (np.zeros(len(cols), int), cols)), shape=(1, n_items))


def _top(scores: np.ndarray, exclude: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    s = torch.from_numpy(np.array(scores, dtype=np.float32, copy=True).reshape(1, -1))  # (1, n_items)
    if exclude:
        s[0, torch.tensor(exclude)] = -torch.inf
    items, values = top_n(s, n)
    keep = items[0] >= 0
    return items[0][keep], values[0][keep]


def _items(m, items: np.ndarray, values: np.ndarray) -> list[dict]:
    raw = m.item_ids_.raw(items).tolist()
    return [{"item": r, "score": float(v)} for r, v in zip(raw, values)]


def create_app(registry: str | Path, db: str | Path, import_train: bool = True) -> FastAPI:
    """The FastAPI app over ``registry`` (a runs folder) and the SQLite file ``db``."""
    svc = Service(registry, db, import_train)
    app = FastAPI(title="feedgan", version="0.1.0",
                  description="Recommendations from feedgan models over an embedded interaction store.")
    app.state.service = svc
    app.add_middleware(_Timing, metrics=svc.metrics)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body",)) or "body"
            if e.get("type") == "json_invalid":
                problems.append(f"body is not valid JSON ({e.get('ctx', {}).get('error', e['msg'])})")
            else:
                problems.append(f"{where}: {e['msg']}")
        return JSONResponse({"error": "invalid request: " + "; ".join(problems[:5])}, status_code=422)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "active_model": svc.active, "store": {
            "path": str(svc.store.path), "schema_version": svc.store.version, "interactions": svc.store.count()}}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return svc.metrics.render()

    @app.post("/interactions", status_code=201)
    def add_interactions(payload: InteractionIn | Batch) -> dict:
        """Store one interaction or a batch (``{"interactions": [...]}``, at most 10,000) atomically."""
        rows = payload.interactions if isinstance(payload, Batch) else [payload]
        if len(rows) > MAX_BATCH:
            raise HTTPException(413, f"batch of {len(rows)} interactions; the limit is {MAX_BATCH}: split it")
        try:
            n = svc.store.add([Interaction(r.user, r.item, r.action, r.timestamp, r.weight) for r in rows])
        except (IdTypeError, ValueError) as e:
            raise HTTPException(422, f"nothing stored: {e}") from None
        svc.metrics.add_stored(n)
        return {"stored": n}

    @app.get("/users/{user_id}/recommendations")
    def recommendations(user_id: str, n: Annotated[int, Query(ge=1, le=MAX_N)] = 20, model: str | None = None,
                        exclude_seen: bool = True) -> dict:
        return svc.recommend(user_id, n, model, exclude_seen)

    @app.get("/users/{user_id}/history")
    def history(user_id: str, limit: Annotated[int | None, Query(ge=1)] = None) -> dict:
        uid = svc.canonical(user_id, "user")
        if not svc.store.has_user(uid):
            raise HTTPException(404, f"unknown user {user_id!r}: nothing stored for them")
        return {"user": user_id, "interactions": svc.store.history(uid, limit)}

    @app.get("/items/{item_id}/similar")
    def similar(item_id: str, n: Annotated[int, Query(ge=1, le=MAX_N)] = 20, model: str | None = None) -> dict:
        return svc.similar(item_id, n, model)

    @app.get("/models")
    def models() -> dict:
        return {"active": svc.active, "models": [e.public() for e in svc.registry.entries()]}

    @app.post("/models/{name:path}/activate")
    def activate(name: str) -> dict:
        lm = svc.model(name)  # loads it: a broken model fails here, not on the next request
        svc.active = lm.entry.name
        svc.store.set_meta("active_model", svc.active)
        return {"active": svc.active}

    return app
