"""Account scores against one population: a review queue, a stored user's score, and the score of
an account's history that is not in the log.

    scorer = AccountScorer(log, detector="anomaly")   # features and the detector, once per log
    scorer.queue(50)              # [{"user", "score", "rank", "reasons"}, ...], highest score first
    scorer.score_user(user_id)    # {"user", "score", "rank", "percentile", "reasons"}
    scorer.score_history(rows)    # {"score", "percentile", "reasons"} of a history not in the log

The queue is the one ``feedgan moderate scan`` writes (:func:`~feedgan.moderation.cli.review_queue`:
the same scores, order and reasons). ``percentile`` is the share of the log's users, in percent,
whose score is at most this one (100: no stored user scores higher).

A posted history is scored as one more account of the log: its rows are appended under a temporary
user id and :func:`~feedgan.moderation.detect.profile_features` is computed on the whole log, so
its rarity and deviation features are measured against the stored users' items. ``anomaly`` then
scores its feature row with the IsolationForest fitted on the stored users (their scores do not
move); ``pca-varselect``, which has no fitted model to reuse (it ranks users by their weight in
the log's own principal components), is run again on the log plus the history, and the history's
percentile is read among the stored users of that run. Either way one call costs one feature pass
(``pca-varselect``: and one truncated SVD) over the whole log. Reasons are the history's three
features farthest from the population's mean, as in the queue.

The timing features need a timestamp on every row: when the log has them, so must a posted history;
when it has none, a history's timestamps are not used.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.schema import EXPOSURE, DataError, Interactions
from .cli import DETECTORS, reasons, review_queue
from .detect import AnomalyDetector, pca_varselect, profile_features

MIN_USERS = 10          # fewer users than this are no population to compare an account against
HISTORY_ID = "history"  # the posted history's temporary user id (made unique against the log's users)
ROW_COLUMNS = ("item", "action", "timestamp", "weight")


class TooFewUsersError(DataError):
    """The log has too few users to score anyone against."""


class UnknownUserError(DataError):
    """A user the log does not hold."""


class AccountScorer:
    """Every user of ``log`` scored by ``detector`` (``"anomaly"`` or ``"pca-varselect"``); see the
    module docstring. ``features``: :func:`profile_features` of ``log``, when already computed."""

    def __init__(self, log: Interactions, detector: str = "anomaly", seed: int = 0,
                 features: pd.DataFrame | None = None):
        if detector not in DETECTORS:
            raise DataError(f"unknown detector {detector!r}", fix=f"use one of {', '.join(DETECTORS)}")
        self.log, self.detector, self.seed = log, detector, seed
        n_users = log.frame["user"].nunique()
        if n_users < MIN_USERS:
            raise TooFewUsersError(f"only {n_users} users to compare accounts against; scoring needs at least "
                                   f"{MIN_USERS}", file=log.source, fix="add more users' interactions first")
        self.features = profile_features(log) if features is None else features   # (n_users, n_features)
        if detector == "anomaly":
            self._forest = AnomalyDetector(seed).fit(self.features)
            scores = self._forest.score(self.features)
        else:
            scores = pca_varselect(log).reindex(self.features.index)
        self.scores = scores                                             # (n_users,) index: user
        table = review_queue(scores, self.features)                      # highest first, rank 1..n
        why = [c for c in table.columns if c.startswith("reason_")]
        rows = zip(table["user"].tolist(), table["score"], table["rank"], table[why].itertuples(index=False))
        self._queue = [{"user": u, "score": float(s), "rank": int(r), "reasons": list(rs)} for u, s, r, rs in rows]
        self._rank = {q["user"]: k for k, q in enumerate(self._queue)}
        self._sorted = np.sort(scores.to_numpy(dtype=np.float64))       # for percentiles

    @property
    def users(self) -> int:
        return len(self.features)

    def queue(self, n: int) -> list[dict]:
        """The ``n`` highest-scored users, highest first: ``{"user", "score", "rank", "reasons"}``."""
        return self._queue[:n]

    def percentile(self, score: float, among: np.ndarray | None = None) -> float:
        """The share (percent) of users (of ``among``, sorted; default the log's) scoring at most ``score``."""
        ranked = self._sorted if among is None else among
        return float(100.0 * np.searchsorted(ranked, score, side="right") / len(ranked))

    def score_user(self, user) -> dict:
        """A stored user's score, rank, percentile and reasons; :class:`UnknownUserError` otherwise."""
        k = self._rank.get(user)
        if k is None:
            raise UnknownUserError(f"unknown user {user!r}: nothing of theirs in the log",
                                   fix="score their history instead")
        row = self._queue[k]
        return {**row, "percentile": self.percentile(row["score"])}

    def score_history(self, rows: pd.DataFrame) -> dict:
        """Score an account's ``rows`` (columns ``item``, ``action``, ``weight`` and ``timestamp``,
        ids in the log's id type) as one more user of the log: ``{"score", "percentile", "reasons"}``."""
        temp = self._temporary_id()
        appended = self._appended(rows, temp)
        features = profile_features(appended).reindex(columns=self.features.columns, fill_value=0.0)
        why = reasons(features)[features.index.get_loc(temp)]            # z-scores over the log + history
        if self.detector == "anomaly":
            score, among = float(self._forest.score(features.loc[[temp]]).iloc[0]), None
        else:
            run = pca_varselect(appended)
            score = float(run.loc[temp])
            among = np.sort(run.drop(temp).to_numpy(dtype=np.float64))
        return {"score": score, "percentile": self.percentile(score, among), "reasons": why}

    def _temporary_id(self):
        """A user id the log does not hold, of its id type."""
        users = self.log.frame["user"]
        if users.dtype.kind in "iu":
            return int(users.max()) + 1
        taken, k, temp = set(users.astype(str)), 0, HISTORY_ID
        while temp in taken:
            k += 1
            temp = f"{HISTORY_ID}-{k}"
        return temp

    def _appended(self, rows: pd.DataFrame, temp) -> Interactions:
        """The log plus ``rows`` as user ``temp``; a DataError naming the field for a history that cannot count."""
        if len(rows) == 0:
            raise DataError("history: no rows", fix="post at least one interaction of the account")
        if (rows["action"] == EXPOSURE).all():
            raise DataError(f"history: every row is an {EXPOSURE!r} row, so the account acted on nothing",
                            fix="post the account's views, likes, comments or shares")
        frame = self.log.frame
        cols = [c for c in ROW_COLUMNS if c in frame.columns]
        if self.log.has_timestamps:
            missing = rows["timestamp"].isna().to_numpy() if "timestamp" in rows else np.ones(len(rows), bool)
            if missing.any():
                raise DataError(f"history[{int(np.flatnonzero(missing)[0])}].timestamp: missing, and every stored "
                                "row has one (the timing features need them)",
                                fix="give each row its timestamp (seconds since the epoch)")
        added = rows[[c for c in cols if c in rows]].assign(user=temp)
        both = pd.concat([frame[["user", *cols]], added[["user", *cols]]], ignore_index=True)
        both["action"] = both["action"].astype(str)
        return Interactions(frame=both, source=self.log.source)
