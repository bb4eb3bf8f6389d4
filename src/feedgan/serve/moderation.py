"""Moderation endpoints: account scores over the stored interactions.

    POST /accounts/score   {"user": id} | {"history": [interaction, ...]}, optional "detector"
                           -> {"score", "percentile", "reasons", "detector", "users_scored", ...}
    GET  /moderation/queue?n=50&detector=anomaly
                           -> {"queue": [{"user", "score", "rank", "reasons"}, ...], "users", "detector",
                               "store_version"}

Scores come from :class:`~feedgan.moderation.scoring.AccountScorer` over every stored interaction.
A scorer is built on the first call for a detector (the store read whole, the profile features, the
detector fitted) and kept until the store changes: ``store_version`` is the number of stored
interactions it was built from (rows are only ever added, so every acknowledged write changes it),
and the next call after a write builds a fresh one. A queue or a stored user's score then reads the
cached scorer; a posted history costs one feature pass over the whole store (see scoring).

Errors: 409 when the store holds too few users to compare an account against; 404 for a user with
nothing stored; 422 naming the field of a bad history or id. ``POST /accounts/score`` follows the
service's token rule for POSTs (it needs the token when one is set); the queue is a read.
"""
# no ``from __future__ import annotations``: FastAPI and pydantic read the route and body annotations,
# which name values local to :func:`router` (``max_n``, the interaction model)
import threading
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from ..data.schema import DataError, Interactions
from ..moderation.cli import DETECTORS
from ..moderation.scoring import AccountScorer, TooFewUsersError, UnknownUserError
from .store import IdTypeError

DEFAULT_QUEUE = 50
Detector = Literal[DETECTORS]  # "pca-varselect", "anomaly"


def _score_body(interaction_model, max_rows: int):
    """The request body of ``POST /accounts/score``, over the service's interaction schema."""

    class ScoreIn(BaseModel):
        """A stored user (``user``) or an account's history (``history``), and the detector."""

        model_config = ConfigDict(extra="forbid")
        user: StrictInt | StrictStr | None = Field(None, description="raw id of a stored user")
        history: list[interaction_model] | None = Field(
            None, min_length=1, max_length=max_rows,
            description=f"one account's interactions, as POST /interactions takes them (at most {max_rows:,})")
        detector: Detector = "anomaly"

        @model_validator(mode="after")
        def one_of(self):
            if (self.user is None) == (self.history is None):
                raise ValueError('give either "user" (a stored user) or "history" (interactions), not '
                                 + ("both" if self.user is not None else "neither"))
            return self

    return ScoreIn


class Scorers:
    """One :class:`AccountScorer` per detector, for the store as it is now (rebuilt after a write)."""

    def __init__(self, store):
        self.store = store
        self._lock = threading.Lock()  # one build at a time; callers meanwhile wait for it
        self._version: int | None = None
        self._log: Interactions | None = None
        self._features: pd.DataFrame | None = None
        self._scorers: dict[str, AccountScorer] = {}

    def get(self, detector: str) -> tuple[AccountScorer, int]:
        """The scorer of the current store and the store version (stored interactions) it was built from."""
        with self._lock:
            if self._version != self.store.count():
                self._log, self._version = self._read()
                self._features, self._scorers = None, {}
            if detector not in self._scorers:
                try:
                    scorer = AccountScorer(self._log, detector, features=self._features)
                except TooFewUsersError as e:
                    raise HTTPException(409, f"the store has {e.what}: post more users' interactions "
                                             "(POST /interactions) first") from None
                except DataError as e:
                    raise HTTPException(409, f"the stored interactions cannot be scored: {e.what} "
                                             f"({e.fix})") from None
                self._features, self._scorers[detector] = scorer.features, scorer
            return self._scorers[detector], self._version

    def _read(self) -> tuple[Interactions, int]:
        """Every stored interaction as a log (ids in their stored text form), and how many there are.
        The timestamp column is kept only when every row has one."""
        rows = self.store.rows()
        frame = pd.DataFrame(rows, columns=["user", "item", "action", "timestamp", "weight"])
        frame["timestamp"] = frame["timestamp"].astype(np.float64)
        if frame["timestamp"].isna().any() or frame.empty:
            frame = frame.drop(columns="timestamp")
        frame["action"] = frame["action"].astype("category")
        frame["weight"] = frame["weight"].astype(np.float64)
        return Interactions(frame=frame, source="the store"), len(rows)


def router(svc, interaction_model, max_rows: int, max_n: int, dependencies: list) -> APIRouter:
    """The moderation routes over ``svc`` (a :class:`~feedgan.serve.app.Service`); ``interaction_model``:
    the body model of one posted interaction; ``max_rows``: the most rows of a history; ``max_n``:
    the longest queue; ``dependencies``: those of every store-reading route (the start's import)."""
    scorers = Scorers(svc.store)
    ScoreIn = _score_body(interaction_model, max_rows)
    api = APIRouter(dependencies=dependencies, tags=["moderation"])

    @api.post("/accounts/score")
    def score(req: ScoreIn) -> dict:
        """How machine-made an account looks: a stored user's score (``{"user": id}``) or that of a
        posted history scored against the stored users (``{"history": [...]}``). ``percentile``: the
        share of stored users scoring at most this; ``reasons``: the three profile features farthest
        from the users' mean. 409: too few stored users; 404: unknown user; 422: a bad history."""
        rows = None if req.history is None else _history_rows(svc, req.history)
        uid = None if req.user is None else _canonical(svc, req.user, "user")
        scorer, version = scorers.get(req.detector)
        if uid is not None:
            try:
                out = scorer.score_user(uid)
            except UnknownUserError:
                raise HTTPException(404, f"unknown user {req.user!r}: nothing stored for them; score their "
                                         'interactions instead with {"history": [...]}') from None
            out["user"] = svc.store.typed(out["user"])
        else:
            try:
                out = {"user": None, "rank": None, **scorer.score_history(rows)}
            except DataError as e:
                raise HTTPException(422, f"{e.what} ({e.fix})") from None
        return {**out, "detector": req.detector, "users_scored": scorer.users, "store_version": version}

    @api.get("/moderation/queue")
    def queue(n: Annotated[int, Query(ge=1, le=max_n, description="how many users")] = DEFAULT_QUEUE,
              detector: Annotated[Detector, Query(description="the unsupervised detector")] = "anomaly") -> dict:
        """The users most likely machine-made, highest score first, with the features behind each
        score (the queue ``feedgan moderate scan`` writes, over the stored interactions)."""
        scorer, version = scorers.get(detector)
        rows = [{**q, "user": svc.store.typed(q["user"])} for q in scorer.queue(n)]
        return {"queue": rows, "users": scorer.users, "detector": detector, "store_version": version}

    return api


def _canonical(svc, raw, field: str) -> str:
    try:
        return svc.store.canonical(raw, field)
    except IdTypeError as e:
        raise HTTPException(422, str(e)) from None


def _history_rows(svc, history: list) -> pd.DataFrame:
    """A posted history as rows of the stored log's id form; 422 naming the first bad field."""
    known = svc.known_actions()
    first = _canonical(svc, history[0].user, "history[0].user")
    for k, r in enumerate(history):
        if _canonical(svc, r.user, f"history[{k}].user") != first:
            raise HTTPException(422, f"history[{k}].user: a history is one account's interactions, but row 0 is "
                                     f"user {history[0].user!r} and row {k} user {r.user!r}: post one account's rows")
        if r.action not in known:
            raise HTTPException(422, f"history[{k}].action: unknown action {r.action!r}; known actions: "
                                     f"{', '.join(sorted(known))}")
    return pd.DataFrame({"item": [_canonical(svc, r.item, f"history[{k}].item") for k, r in enumerate(history)],
                         "action": [r.action for r in history],
                         "timestamp": np.array([np.nan if r.timestamp is None else r.timestamp for r in history]),
                         "weight": np.array([r.weight for r in history], dtype=np.float64)})
