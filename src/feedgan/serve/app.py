"""The HTTP API: recommendations from registered models over an embedded interaction store.

    app = create_app(registry="runs", db="feedgan.db")   # then: uvicorn, or `feedgan serve`

Ids in URLs and bodies are the raw ids clients know. A recommendation folds in the user's stored
history (models with ``fold_in``) or uses the user's learned vector (the others), so an
interaction posted a moment ago counts at once, without retraining. Users a model cannot score
get the most popular items, with ``"fallback": "popularity"`` in the response.

Target actions. A model fitted with a target (``fit(ds, target="share", aux={...})``) predicts one
action: ``?action=share`` picks such a model (the active one when it predicts that action, else
the newest entry that does; 404 listing the actions some model predicts when none does). Its
fold-in history is built per action from the store -- ``{target: rows, aux: rows, ...}`` for the
model's target and auxiliary actions (``friends`` the model derives itself, for users it knows)
-- united with the user's fit-time rows, and exclude-seen drops the user's *target* items only (a
liked item can still be recommended for sharing). Models without a target work as before (every
stored action counts, every touched item is excluded). ``POST /predict`` gives P(target | user,
shown item) from models with ``predict_proba`` (the propensity models).

Caching. A recommendation response is rendered once and reused while the user's stored history
is unchanged (:mod:`~feedgan.serve.cache`; ``rec_cache`` responses, 0: off): a write for that user,
from any process on the store, makes the next answer fresh, and activating a model empties it.
Cached answers of the active model are served on the event loop; scoring runs in the thread pool.

Fit and types. A posted action must be known (:meth:`Service.known_actions`; ``allow_actions`` /
``feedgan serve --allow-action`` adds one), else a 422 listing the known ones. A model answers (and
can be activated) only when it fits the store: the same id type and at least half of its item ids
in the store (409 otherwise; an empty store fits any model). Every id in a response has the
store's id type: ints in a store of integer ids, text otherwise.

Start. On a first start (an empty store) the active model's training rows are imported in the
background (:mod:`~feedgan.serve.startup`): the service answers at once, ``/health`` is a 503
``"starting"`` with the rows done so far, and the endpoints that read or write the store are 503s
with ``Retry-After`` until the import is done (or a 503 naming the failure when it failed: the store
then holds none of it). ``/docs`` (Swagger UI) and ``/redoc`` load their scripts and styles from
``/docs-assets``, never from a CDN.

Access and limits. With a token (``create_app(..., token=...)``, ``feedgan serve --token`` or
``FEEDGAN_TOKEN``), writes and admin calls -- every method but GET and HEAD, except ``POST
/predict``, which stores nothing -- need ``Authorization: Bearer <token>`` (401 otherwise; compared
in constant time); ``protect_reads=True`` asks it of reads too, ``/health`` excepted. A request
body over ``max_body_bytes`` is a 413, from its ``Content-Length`` before a byte is read, or as soon
as a chunked body passes the limit. Both checks run on the headers and the raw byte stream, before
any JSON is parsed.
"""
from __future__ import annotations

import contextlib
import hmac
import json
import math
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import scipy.sparse as sp
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from starlette.concurrency import run_in_threadpool

from ..data.schema import ACTIONS, EXPOSURE
from ..rec.base import FRIENDS, top_n
from . import moderation
from .cache import TopNCache
from .metrics import Metrics
from .registry import LoadedModel, Registry, UnknownModelError
from .startup import TrainImport
from .store import IdTypeError, Interaction, Store

MAX_BATCH = 10_000  # interactions per POST
MAX_N = 1_000  # items per list, and items per /predict request
MAX_BODY_BYTES = 4 * 1024 * 1024  # a full batch of 10,000 interactions with long text ids fits
MIN_KNOWN_ITEMS = 0.5  # a model answers only when at least this share of its item ids is in the store
DOCS_ASSETS = "/docs-assets"  # Swagger UI's and ReDoc's scripts and styles, served from the installed package
REC_CACHE = 10_000  # recommendation responses kept (about 1-2 KB each at n=20)

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
    interactions: list[InteractionIn] = Field(max_length=MAX_BATCH)  # checked before the items: cheap


class PredictIn(BaseModel):
    """Which user, which shown items, which action to give probabilities for."""

    model_config = ConfigDict(extra="forbid")
    user: Id = Field(description="raw user id; the model must have seen this user at fit (else 404)")
    items: list[Id] = Field(min_length=1, description=f"raw item ids, at most {MAX_N} (413 above); "
                                                      "items the model does not know get p = null, known = false")
    action: str | None = Field(None, min_length=1, max_length=64,
                               description="the action to predict; default: the model's own target")
    model: str | None = Field(None, min_length=1, description="an entry name or model kind; default: the active "
                                                             "model if it predicts `action`, else the newest that does")


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


async def _send_error(send, status: int, message: str, headers: tuple = ()) -> None:
    """A JSON ``{"error": message}`` response, straight from ASGI middleware (the app is not called)."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == name), None)


class _Auth:
    """ASGI middleware: the bearer token on writes and admin calls (and on reads with ``protect_reads``)."""

    def __init__(self, app, token: str, protect_reads: bool):
        self.app, self.token, self.protect_reads = app, token.encode(), protect_reads

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self._needs_token(scope["method"], scope["path"]):
            problem = self._problem(_header(scope, b"authorization"))
            if problem is not None:
                return await _send_error(send, 401, problem, ((b"www-authenticate", b'Bearer realm="feedgan"'),))
        await self.app(scope, receive, send)

    def _needs_token(self, method: str, path: str) -> bool:
        if path == "/health":
            return False
        read = method in ("GET", "HEAD") or (method == "POST" and path == "/predict")
        return self.protect_reads or not read

    def _problem(self, header: bytes | None) -> str | None:
        """Why ``header`` does not authorise the call, or None when it does."""
        scheme, _, given = (header or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            return ("this call needs a token: send the header `Authorization: Bearer <token>` with the token "
                    "the service was started with (--token or FEEDGAN_TOKEN)")
        if not hmac.compare_digest(given.strip(), self.token):
            return "invalid token in the Authorization header: use the token the service was started with"
        return None


class _BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413, never buffered nor parsed whole.
    The body is read here (bounded) and handed on to the app in one piece."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")  # the server has checked it is a number
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _send_error(send, 413, self._message(f"of {int(declared):,} bytes "))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await _send_error(send, 413, self._message(""))
            more = message.get("more_body", False)
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay():
            nonlocal body
            if body is None:
                return await receive()  # after the body: wait for the disconnect, as the server would
            message, body = body, None
            return message

        await self.app(scope, replay, send)

    def _message(self, size: str) -> str:
        return (f"request body {size}is over the limit of {self.max_bytes:,} bytes: split it into smaller batches "
                f"(at most {MAX_BATCH:,} interactions per POST), or start the service with a larger --max-body-bytes")


class Service:
    """The state behind the endpoints: store, registry, the active model, and the first start's
    import of training rows (``startup``: the app starts it; ``startup.run()`` runs it here)."""

    def __init__(self, registry: str | Path, db: str | Path, import_train: bool = True, accept_loss: bool = False,
                 allow_actions: tuple[str, ...] = (), import_report=None, rec_cache: int = REC_CACHE):
        self.store = Store(db, accept_loss=accept_loss)
        self.registry = Registry(registry)
        self.cache = TopNCache(rec_cache)
        self.metrics = Metrics(self.cache)
        self.allow_actions = set(allow_actions)
        self._fits_store: set[str] = set()  # entries whose item ids were found in the store
        self.active: str | None = None
        saved = self.store.get_meta("active_model")
        entries = self.registry.entries()
        if saved is not None and any(e.name == saved for e in entries):
            self.active = saved
        elif entries:
            self.active = entries[-1].name
        rows = None
        if self.active is not None and import_train and self.store.count() == 0:
            m = self.registry.load(self.active).model  # here: a broken model stops the start
            # a target model's per-action matrices keep their action names (not its weighted input)
            data = m.train_ if m.target_ is None else {m.target_: m.seen_, **m.channels_}
            rows = (m.user_ids_.values, m.item_ids_.values, data)
        # an empty store gets the active model's training rows as history: the app starts the import
        self.startup = TrainImport(self.store, self.active, rows, import_report)

    def model(self, name: str | None) -> LoadedModel:
        name = name or self.active
        if name is None:
            raise HTTPException(503, f"no model in the registry {self.registry.root}; train one with "
                                     f"`feedgan train ease ... --runs-dir {self.registry.root}`")
        try:
            lm = self.registry.load(name)
        except UnknownModelError as e:
            raise HTTPException(404, str(e)) from None
        self._check_fits_store(lm)
        return lm

    def _check_fits_store(self, lm: LoadedModel) -> None:
        """409 unless the model was trained on the store's catalogue: the same id type, and at
        least :data:`MIN_KNOWN_ITEMS` of its item ids in the store. An empty store fits any model.
        Stored items are never removed, so a model that fits once fits for good (cached)."""
        if lm.entry.name in self._fits_store or self.store.id_type is None:
            return
        name, kind = lm.entry.name, _id_type(lm.model)
        if kind != self.store.id_type:
            raise HTTPException(409, f"model {name} was trained on {kind} ids, but this store's ids are "
                                     f"{self.store.id_type}s: it belongs to another dataset; serve it with its own "
                                     "--db, or retrain it on this store's data")
        known = self.store.known_items(list(lm.item_index))
        if known < MIN_KNOWN_ITEMS * len(lm.item_index):
            raise HTTPException(409, f"model {name} does not fit this store: only {known:,} of its "
                                     f"{len(lm.item_index):,} item ids are in the store (at least "
                                     f"{MIN_KNOWN_ITEMS:.0%} must be): it was trained on another dataset; serve it "
                                     "with its own --db, or retrain it on this store's data")
        self._fits_store.add(name)

    def known_actions(self) -> set[str]:
        """The actions a posted interaction may carry: the standard ones, those already stored, those
        the registry's models predict or read, and those the service was started to allow."""
        return {*ACTIONS, EXPOSURE, *self.store.actions(), *self.registry.actions(), *self.allow_actions}

    def check_actions(self, rows: list[InteractionIn]) -> None:
        known = self.known_actions()
        for k, r in enumerate(rows):
            if r.action not in known:
                shown = sorted(known)[:30]
                listed = ", ".join(shown) + (f", ... ({len(known)} in all)" if len(known) > len(shown) else "")
                raise HTTPException(422, f"nothing stored: interactions[{k}].action: unknown action {r.action!r}; "
                                         f"known actions: {listed} (start the service with "
                                         f"--allow-action {r.action} to accept a new one)")

    def typed(self, raw, lm: LoadedModel, kind: str | None = None):
        """An id in the store's type (the model's while the store is empty): one type in every response."""
        return self.store.typed(str(raw), kind or self.store.id_type or _id_type(lm.model))

    def pick(self, model: str | None, action: str | None) -> LoadedModel:
        """The model that answers: ``model`` (checked against ``action``), or with ``action`` the
        active model when it predicts that action, else the newest entry that does."""
        if action is None:
            return self.model(model)
        if model is not None:
            lm = self.model(model)
            if lm.model.target_ != action:
                raise HTTPException(422, f"model {lm.entry.name} predicts {_what(lm.model.target_)}, not {action!r}; "
                                         f"drop one of model= and action=, or {self._actions_hint()}")
            return lm
        entry = self.registry.for_action(action, prefer=self.active)
        if entry is None:
            raise HTTPException(404, f"no model predicts action {action!r}{self._aux_note(action)}; "
                                     f"{self._actions_hint()}")
        return self.model(entry.name)

    def _actions_hint(self) -> str:
        valid = self.registry.targets()
        if not valid:
            return "valid actions: none (no model in the registry was trained with a target action)"
        return "valid actions: " + ", ".join(valid)

    def _aux_note(self, action: str) -> str:
        users = [e.name for e in self.registry.entries() if action in e.aux]
        return f" (it is an auxiliary action of {', '.join(users)})" if users else ""

    def canonical(self, raw: str | int, field: str) -> str:
        try:
            return self.store.canonical(raw, field)
        except IdTypeError as e:
            raise HTTPException(422, str(e)) from None

    # -- recommendation logic ---------------------------------------------------------------------
    def recommend(self, user: str, n: int, model: str | None, exclude_seen: bool, action: str | None = None) -> dict:
        lm = self.pick(model, action)
        return self._recommend(lm, self.canonical(user, "user"), n, exclude_seen)

    def cached_body(self, user: str, n: int, model: str | None, exclude_seen: bool,
                    action: str | None) -> bytes | None:
        """The cached response of the active model's recommendations, or None -- without loading a
        model, scanning the registry or scoring, so it may run on the event loop. Only a request for
        the active model (no ``model``, no ``action``) whose model is loaded and fits the store is
        looked up; anything else is None, and :meth:`recommend_body` answers it."""
        if model is not None or action is not None or self.active not in self._fits_store or self.cache.size == 0:
            return None
        lm = self.registry.loaded(self.active)
        if lm is None:
            return None
        uid = self.canonical(user, "user")
        return self.cache.get((lm.entry.name, uid, n, exclude_seen), self.store.last_seq(uid))

    def recommend_body(self, user: str, n: int, model: str | None, exclude_seen: bool,
                       action: str | None = None) -> bytes:
        """:meth:`recommend` as a rendered JSON body, from the cache while the user's stored history
        is unchanged (:class:`~feedgan.serve.cache.TopNCache`)."""
        lm = self.pick(model, action)  # first: a model that does not fit the store is a 409, cached or not
        uid = self.canonical(user, "user")
        if self.cache.size == 0:
            return JSONResponse(self._recommend(lm, uid, n, exclude_seen)).body
        key, version = (lm.entry.name, uid, n, exclude_seen), self.store.last_seq(uid)  # version before computing
        body = self.cache.get(key, version)
        if body is None:
            body = JSONResponse(self._recommend(lm, uid, n, exclude_seen)).body
            self.cache.put(key, version, body)
        return body

    def _recommend(self, lm: LoadedModel, uid: str, n: int, exclude_seen: bool) -> dict:
        m = lm.model
        if m.target_ is not None:
            return self._recommend_target(lm, uid, n, exclude_seen)
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
        return {"user": self.typed(uid, lm), "model": lm.entry.name, "action": None, "fallback": fallback,
                "items": self._items(lm, items, values)}

    def _recommend_target(self, lm: LoadedModel, uid: str, n: int, exclude_seen: bool) -> dict:
        """A model with a target: per-action history (store + fit time), target items excluded."""
        m = lm.model
        stored = self.store.items_by_action(uid)
        u = lm.user_index.get(uid, -1)
        fit_rows = {m.target_: m.seen_, **m.channels_}
        cols = {}
        for a in [m.target_, *(a for a in m.aux_ if a != FRIENDS)]:
            got = {lm.item_index[i] for i in stored.get(a, ()) if i in lm.item_index}
            if u >= 0 and a in fit_rows:
                X = fit_rows[a]
                got.update(X.indices[X.indptr[u]:X.indptr[u + 1]].tolist())
            cols[a] = sorted(got)
        seen = cols[m.target_]
        fallback = None
        if m.fold_in and any(cols.values()):
            history = {a: _one_row(c, m.n_items_) for a, c in cols.items()}
            # friends' rows come from the model's social graph, for users it knows
            scores = m.score(users=[u] if u >= 0 and FRIENDS in m.aux_ else None, history=history)
        elif not m.fold_in and u >= 0:
            scores = m.score(users=[u])
        else:
            scores, fallback = lm.popularity[None, :].copy(), "popularity"
        items, values = _top(scores, seen if exclude_seen else [], n)
        return {"user": self.typed(uid, lm), "model": lm.entry.name, "action": m.target_, "fallback": fallback,
                "items": self._items(lm, items, values)}

    def predict(self, req: PredictIn) -> dict:
        """P(action | user, shown item) for each requested item, from a model with ``predict_proba``."""
        if len(req.items) > MAX_N:
            raise HTTPException(413, f"{len(req.items)} items; the limit is {MAX_N} per request: split it")
        lm = self._proba_model(req.model, req.action)
        m = lm.model
        uid = self.canonical(req.user, "user")
        u = lm.user_index.get(uid, -1)
        if u < 0:
            raise HTTPException(404, f"unknown user {req.user!r} for model {lm.entry.name}: it gives probabilities "
                                     "only for users seen at fit (train it again to include new users)")
        idx = np.array([lm.item_index.get(self.canonical(it, f"items[{k}]"), -1) for k, it in enumerate(req.items)])
        known = idx >= 0
        p = np.full(len(idx), np.nan)
        if known.any():
            p[known] = np.asarray(m.predict_proba(np.full(int(known.sum()), u), idx[known]), dtype=np.float64)
        probs = [{"item": it, "p": float(v) if ok and math.isfinite(v) else None, "known": bool(ok)}
                 for it, v, ok in zip(req.items, p, known)]
        return {"user": req.user, "action": m.target_, "model": lm.entry.name, "probabilities": probs}

    def _proba_model(self, model: str | None, action: str | None) -> LoadedModel:
        def which() -> str:
            have = [f"{e.name} ({_what(e.target)})" for e in self.registry.entries() if e.propensities]
            return "models that give probabilities: " + (", ".join(have) or "none in the registry")

        if model is None and action is not None:
            entry = self.registry.for_action(action, prefer=self.active, propensities=True)
            if entry is None:
                others = [e.name for e in self.registry.entries() if e.target == action]
                note = f" (these predict it but give no probabilities: {', '.join(others)})" if others else ""
                raise HTTPException(404, f"no model gives probabilities for action {action!r}{note}; {which()}")
            model = entry.name
        lm = self.pick(model, action)
        if not callable(getattr(lm.model, "predict_proba", None)):
            raise HTTPException(422, f"model {lm.entry.name} ({lm.model.name}) gives no probabilities; {which()}")
        return lm

    def similar(self, item: str, n: int, model: str | None) -> dict:
        lm = self.model(model)
        m = lm.model
        iid = self.canonical(item, "item")
        i = lm.item_index.get(iid, -1)
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
        return {"item": self.typed(iid, lm), "model": lm.entry.name,
                "items": self._items(lm, items, values)}

    def _items(self, lm: LoadedModel, items: np.ndarray, values: np.ndarray) -> list[dict]:
        raw, kind = lm.model.item_ids_.raw(items).tolist(), self.store.id_type or _id_type(lm.model)
        return [{"item": self.typed(r, lm, kind), "score": float(v)} for r, v in zip(raw, values)]


def _what(target: str | None) -> str:
    return f"action {target!r}" if target is not None else "every action (no target)"


def _one_row(cols: list[int], n_items: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(cols), np.float32), (np.zeros(len(cols), int), cols)), shape=(1, n_items))


def _top(scores: np.ndarray, exclude: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``n`` items of one user's (n_items,) scores, skipping ``exclude``: shared :func:`top_n`."""
    s = np.asarray(scores, dtype=np.float32).reshape(1, -1)  # (1, n_items)
    cols = np.unique(np.asarray(exclude, dtype=np.int64))
    mask = sp.csr_matrix((np.ones(len(cols), np.float32), cols, [0, len(cols)]), shape=s.shape)
    items, values = top_n(s, n, exclude=mask)
    keep = items[0] >= 0
    return items[0][keep], values[0][keep]


def _relative(path: Path, root: Path) -> str:
    """``path`` inside the registry, never the server's absolute layout."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _id_type(m) -> str:
    """``"int"`` or ``"str"``: the model's id type, by the store's rule (:meth:`Store.import_matrix`)."""
    return "int" if m.user_ids_.values.dtype.kind in "iu" and m.item_ids_.values.dtype.kind in "iu" else "str"


def create_app(registry: str | Path, db: str | Path, import_train: bool = True, *, token: str | None = None,
               protect_reads: bool = False, max_body_bytes: int = MAX_BODY_BYTES, accept_loss: bool = False,
               allow_actions: tuple[str, ...] = (), import_report=None, rec_cache: int = REC_CACHE) -> FastAPI:
    """The FastAPI app over ``registry`` (a runs folder) and the SQLite file ``db``.

    ``token``: writes and admin calls need it (reads too with ``protect_reads``); None: no token,
    for a service only loopback clients reach. ``max_body_bytes``: the largest request body.
    ``accept_loss``: open a store holding fewer interactions than were acknowledged (see
    :class:`~feedgan.serve.store.Store`). ``allow_actions``: actions posted interactions may carry
    besides the known ones (:meth:`Service.known_actions`). ``import_report``: called as the first
    start's import of training rows goes (:class:`~feedgan.serve.startup.TrainImport`; e.g.
    :class:`~feedgan.serve.startup.ImportLog`). ``rec_cache``: how many recommendation responses
    to keep for reuse until the user's history changes (0: none; :mod:`~feedgan.serve.cache`).
    Starting the app starts that import in the background; stopping it stops the import (nothing of
    it stored), checkpoints and closes the store."""
    if token is not None and not token.strip():
        raise ValueError("the token is empty: give a non-empty --token / FEEDGAN_TOKEN, or none at all")
    if protect_reads and token is None:
        raise ValueError("protecting reads needs a token: give --token or FEEDGAN_TOKEN")
    if max_body_bytes < 1:
        raise ValueError(f"the body limit must be a positive number of bytes, got {max_body_bytes}")
    for name in allow_actions:
        if not 1 <= len(name) <= 64 or name != name.strip():
            raise ValueError(f"--allow-action {name!r}: an action is 1 to 64 characters without surrounding spaces")
    svc = Service(registry, db, import_train, accept_loss, tuple(allow_actions), import_report, rec_cache)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        svc.startup.start()
        yield
        svc.startup.stop()  # a running import rolls back
        svc.store.close()  # the WAL checkpointed into the .db file: it alone holds every row

    # /docs and /redoc load Swagger UI and ReDoc from /docs-assets (files shipped in a package), not a CDN
    app = FastAPIOffline(title="feedgan", version="0.1.0", lifespan=lifespan, static_url=DOCS_ASSETS,
                         description="Recommendations from feedgan models over an embedded interaction store.")
    app.state.service = svc
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    if token is not None:
        app.add_middleware(_Auth, token=token.strip(), protect_reads=protect_reads)
    app.add_middleware(_Timing, metrics=svc.metrics)  # added last: outermost, so refusals are counted too

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            if e.get("type") == "too_long" and tuple(e.get("loc", ()))[-2:] == ("Batch", "interactions"):
                n = e.get("ctx", {}).get("actual_length")
                return JSONResponse({"error": f"batch of {n} interactions; the limit is {MAX_BATCH}: split it"},
                                    status_code=413)
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body",)) or "body"
            if e.get("type") == "json_invalid":
                problems.append(f"body is not valid JSON ({e.get('ctx', {}).get('error', e['msg'])})")
            else:
                problems.append(f"{where}: {e['msg']}")
        return JSONResponse({"error": "invalid request: " + "; ".join(problems[:5])}, status_code=422)

    async def ready() -> None:  # async: no thread hop for a check that reads two attributes
        svc.startup.check()  # 503 (with Retry-After while starting) until the first start's import is done

    needs_store = [Depends(ready)]
    app.include_router(moderation.router(svc, InteractionIn, MAX_BATCH, MAX_N, needs_store))

    @app.get("/health")
    def health(response: Response) -> dict:
        """Readiness: 200 ``"ok"``; 503 ``"starting"`` while the training rows are imported (``import``:
        rows done and total), or ``"failed"`` when that import failed (``import.error`` says why)."""
        if svc.startup.status != "ok":
            response.status_code = 503
        return {"status": svc.startup.status, "active_model": svc.active, "import": svc.startup.state(), "store": {
            "path": svc.store.path.name, "schema_version": svc.store.version, "interactions": svc.store.count()}}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return svc.metrics.render()

    @app.post("/interactions", status_code=201, dependencies=needs_store)
    def add_interactions(payload: InteractionIn | Batch) -> dict:
        """Store one interaction or a batch (``{"interactions": [...]}``, at most 10,000) atomically."""
        rows = payload.interactions if isinstance(payload, Batch) else [payload]  # at most MAX_BATCH (413)
        svc.check_actions(rows)
        try:
            n = svc.store.add([Interaction(r.user, r.item, r.action, r.timestamp, r.weight) for r in rows])
        except (IdTypeError, ValueError) as e:
            raise HTTPException(422, f"nothing stored: {e}") from None
        svc.metrics.add_stored(n)
        return {"stored": n}

    @app.get("/users/{user_id}/recommendations", dependencies=needs_store)
    async def recommendations(
        user_id: str,
        n: Annotated[int, Query(ge=1, le=MAX_N, description="how many items")] = 20,
        model: Annotated[str | None, Query(description="entry name or model kind; default: the active model")] = None,
        exclude_seen: Annotated[bool, Query(description="leave out items the user already has (for a model with a "
                                                        "target: items they took the target action on)")] = True,
        action: Annotated[str | None, Query(min_length=1, max_length=64, description=(
            "the action to recommend for (e.g. `share`): the active model if it predicts it, else the newest "
            "model that does; 404 listing the valid actions when none does"))] = None,
    ) -> dict:
        """Top-``n`` items for a user, best first, from their stored history (folded in at request time).

        A model with a target action reads the history per action (target + auxiliary actions) and
        excludes only the target's items. ``fallback`` is ``"popularity"`` when the model cannot score
        this user; ``action`` is the model's target (null for a model fitted on every action)."""
        body = svc.cached_body(user_id, n, model, exclude_seen, action)  # on the event loop: no thread hop
        if body is None:  # scoring (and any model load) in the thread pool, beside the event loop
            body = await run_in_threadpool(svc.recommend_body, user_id, n, model, exclude_seen, action)
        return Response(body, media_type="application/json")

    @app.get("/users/{user_id}/history", dependencies=needs_store)
    def history(user_id: str, limit: Annotated[int | None, Query(ge=1)] = None) -> dict:
        uid = svc.canonical(user_id, "user")
        if not svc.store.has_user(uid):
            raise HTTPException(404, f"unknown user {user_id!r}: nothing stored for them")
        return {"user": svc.store.typed(uid), "interactions": svc.store.history(uid, limit)}

    @app.get("/items/{item_id}/similar", dependencies=needs_store)
    def similar(item_id: str, n: Annotated[int, Query(ge=1, le=MAX_N)] = 20, model: str | None = None) -> dict:
        return svc.similar(item_id, n, model)

    @app.post("/predict", dependencies=needs_store)
    def predict(req: PredictIn) -> dict:
        """P(action | user, shown item) for each item, from a model with ``predict_proba``.

        Returns ``{"user", "action", "model", "probabilities": [{"item", "p", "known"}, ...]}`` in
        the order asked; an item the model does not know gets ``p: null, known: false``. 404: an
        unknown user, or no model gives probabilities for ``action``; 422: the named model gives no
        probabilities or predicts another action; 413: more than 1,000 items."""
        return svc.predict(req)

    @app.get("/models")
    def models() -> dict:
        """Every registered model: name, kind, target action, auxiliary actions, whether it gives
        probabilities (``propensities``), headline metrics; ``broken``: the damaged runs and why."""
        entries = svc.registry.entries()  # a fresh scan; targets() reads it
        return {"active": svc.active, "actions": svc.registry.targets(),
                "models": [{**e.public(), "path": _relative(e.path, svc.registry.root)} for e in entries],
                "broken": svc.registry.broken}

    @app.post("/models/{name:path}/activate", dependencies=needs_store)
    def activate(name: str) -> dict:
        lm = svc.model(name)  # loads it: a broken model fails here, not on the next request
        svc.active = lm.entry.name
        svc.store.set_meta("active_model", svc.active)
        svc.cache.clear()
        return {"active": svc.active}

    return app
