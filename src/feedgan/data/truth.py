"""The ground truth behind a simulation: true propensities, the friend boost, an oracle ranking.

:class:`GroundTruth` is the part of :class:`feedgan.data.simulate.Simulation` that answers "what
did the simulator really intend?", so that a model's scores can be compared with the truth (see
the simulator's docstring, "Ground truth for scoring"). It reads the simulation's latent
variables and the calibration constants ``simulate()`` stores in ``stats["calibration"]``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["DAY", "GroundTruth", "LOGGED_ACTIONS", "P_MAX", "unique_sorted"]

LOGGED_ACTIONS = ("view", "like", "comment", "share")
DAY = 86_400
P_MAX = 0.95             # no funnel stage converts with certainty
_ORACLE_CELLS = 1 << 22  # user x item cells per chunk in GroundTruth.oracle_scores


class GroundTruth:
    """Mixin of :class:`~feedgan.data.simulate.Simulation`: the true probabilities behind its log."""


    def _calibration(self) -> dict:
        cal = self.stats.get("calibration")
        if not cal:
            raise ValueError("this Simulation has no stats['calibration']; make it with simulate()")
        return cal

    def _window_of(self, timestamps) -> np.ndarray:
        edges = np.asarray(self._calibration()["edges"], dtype=np.int64)
        w = np.searchsorted(edges, np.asarray(timestamps, dtype=np.int64), side="right") - 1
        return np.clip(w, 0, len(edges) - 2)

    @staticmethod
    def _ids(ids, n: int, what: str) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"{what} ids must be 0-based positions below n_{what}s ({n})")
        return ids

    def _pairs(self, users, items) -> tuple[np.ndarray, np.ndarray]:
        users = self._ids(users, self.config.n_users, "user")
        items = self._ids(items, self.config.n_items, "item")
        if users.shape != items.shape:
            raise ValueError(f"users and items must be paired, got {len(users)} users and {len(items)} items")
        return users, items

    @staticmethod
    def _check_action(action: str) -> str:
        if action not in LOGGED_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(LOGGED_ACTIONS)}, got {action!r}")
        return action

    def propensity(self, users, items, action: str, *, timestamps=None, boost=None) -> np.ndarray:
        """True ``P(action | the item was shown)`` for paired 0-based ``users`` and ``items`` (float64).

        ``view``: ``min(P_MAX, c_view * affinity ** affinity_effect * boost)``; ``like``, ``comment``,
        ``share``: that times ``min(P_MAX, c_action * affinity ** affinity_effect * boost)`` (an
        action needs a view), with the calibration constants ``c`` of the time window: the window
        holding ``timestamps[k]`` when timestamps are given (exact for logged impressions), else the
        mean over the windows in which the item already existed, weighted by each window's number
        of impressions. ``boost`` (one per pair, or a scalar) is the friend-influence factor; None
        means 1, i.e. the oracle *ignores social influence* and under-predicts the realised rates
        when ``friend_influence > 0``: pass ``boost=self.friend_boost(users, items, timestamps)``
        for the exact value.
        """
        action = self._check_action(action)
        users, items = self._pairs(users, items)
        cal, cfg = self._calibration(), self.config
        b = np.ones(len(users)) if boost is None else np.broadcast_to(np.asarray(boost, np.float64), users.shape)
        score = (cfg.n_topics * self.user_interest[users, self.item_topic[items]].astype(np.float64)) \
            ** float(cfg.affinity_effect) * b
        cv, ca = np.asarray(cal["view"], np.float64), np.asarray(cal[action], np.float64)

        def at(r):   # P(action | shown) with window r's constants (r: scalar or per pair)
            p = np.minimum(P_MAX, cv[r] * score)
            return p if action == "view" else p * np.minimum(P_MAX, ca[r] * score)

        if timestamps is not None:
            ts = np.asarray(timestamps, dtype=np.int64).ravel()
            if ts.shape != users.shape:
                raise ValueError(f"timestamps must be one per pair, got {len(ts)} for {len(users)} pairs")
            return at(self._window_of(ts))
        n_imp = np.asarray(cal["impressions"], np.float64)
        edges = np.asarray(cal["edges"], np.int64)
        created = self.item_created[items]
        num, den = np.zeros(len(users)), np.zeros(len(users))
        for r in np.flatnonzero(n_imp > 0):
            wt = np.where(created < edges[r + 1], n_imp[r], 0.0)
            num += wt * at(r)
            den += wt
        fallback = den <= 0   # (cannot happen for items that were shown)
        if fallback.any():
            act = np.flatnonzero(n_imp > 0)
            num[fallback] = sum(n_imp[r] * at(r)[fallback] for r in act)
            den[fallback] = n_imp[act].sum()
        return num / den

    def friend_boost(self, users, items, timestamps) -> np.ndarray:
        """The simulator's friend-influence factor ``1 + friend_influence * log2(1 + k)`` for paired
        0-based ids shown at ``timestamps``, recomputed from the log: ``k`` counts the user's friends
        who authored the item before that window, or liked, commented on or shared it in an earlier
        window (the window of their view), the simulator's own count (a sparse ``friends @ engaged``
        per window). About 2.5 s for 5.4M impressions of 100k users."""
        users, items = self._pairs(users, items)
        ts = np.asarray(timestamps, dtype=np.int64).ravel()
        if ts.shape != users.shape:
            raise ValueError(f"timestamps must be one per pair, got {len(ts)} for {len(users)} pairs")
        cfg = self.config
        fi = float(cfg.friend_influence)
        if fi <= 0 or len(users) == 0 or len(self.social) == 0:
            return np.ones(len(users))
        n = int(cfg.n_items)
        f = self.frame
        cats = [str(a) for a in f["action"].cat.categories]
        code = f["action"].cat.codes.to_numpy()
        key = f["user"].to_numpy() * n + f["item"].to_numpy()
        is_view = code == cats.index("view")
        vkey = key[is_view]
        o = np.argsort(vkey)
        vkey, vwin = vkey[o], self._window_of(f["timestamp"].to_numpy()[is_view][o])
        ekey = unique_sorted(key[np.isin(code, [cats.index(a) for a in LOGGED_ACTIONS[1:] if a in cats])])
        ewin = vwin[np.minimum(np.searchsorted(vkey, ekey), len(vkey) - 1)]
        # an author counts from the window after the one holding the post's creation
        keys = np.concatenate([ekey, self.item_author * n + np.arange(n)])
        wins = np.concatenate([ewin, self._window_of(self.item_created)])
        o = np.lexsort((wins, keys))
        keys, wins = keys[o], wins[o]
        first = np.ones(len(keys), dtype=bool)
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        keys, wins = keys[first], wins[first]
        # per window, as the simulator does: S = friends @ (engaged before the window), then look up
        F = self.friends()
        n_users = int(cfg.n_users)
        r_q = self._window_of(ts)
        k = np.zeros(len(users))
        for r in np.unique(r_q[r_q > 0]):
            sel = np.flatnonzero(r_q == r)
            before = keys[wins < r]
            E = sp.csr_matrix((np.ones(len(before), dtype=np.float32), (before // n, before % n)),
                              shape=(n_users, n))
            S = (F @ E).tocsr()
            S.sum_duplicates()
            S.sort_indices()
            if S.nnz == 0:
                continue
            skey = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(S.indptr)) * n + S.indices
            qk = users[sel] * n + items[sel]
            j = np.minimum(np.searchsorted(skey, qk), len(skey) - 1)
            k[sel] = np.where(skey[j] == qk, S.data[j], 0.0)
            del E, S, skey
        return 1.0 + fi * np.log2(1.0 + k)

    def oracle_scores(self, users, action: str) -> np.ndarray:
        """Ground-truth ranking scores, ``(len(users), n_items)`` float32: the chance that each user
        takes ``action`` on each item over the period, from the organic feed model.

        Per window ``w``, an item is drawn ``lam = exposures_per_user * window_share * act_u *
        theta_u[t_i] ** interest_focus * weight_w(i) / sum_t theta_u[t] ** interest_focus * mass_w(t)``
        times on average (``weight_w = popularity * freshness`` at the window's midpoint, 0 before
        creation), so ``P(shown in w) = 1 - exp(-lam)``; the score is ``1 - prod_w (1 - P(shown in w)
        * propensity_w(u, i, action))``, and 0 for the user's own posts. Left out: the social feed
        share (all impressions are treated as organic), friend boost (1), that a viewed item is not
        shown again and that repeats in a window are redrawn. Users are done in chunks of about
        ``4M / n_items`` (about 3.5 s per 1000 users x 50k items); the result is ``4 * len(users) * n_items``
        bytes.
        """
        action = self._check_action(action)
        users = self._ids(users, self.config.n_users, "user")
        cal, cfg = self._calibration(), self.config
        n_items, n_topics = int(cfg.n_items), int(cfg.n_topics)
        topic, created = self.item_topic, self.item_created
        edges = np.asarray(cal["edges"], np.int64)
        span = float(edges[-1] - edges[0])
        windows = []   # (expected impressions per unit activity, item weights, topic mass, c_view, c_action)
        for r in np.flatnonzero(np.asarray(cal["impressions"]) > 0):
            w0, w1 = int(edges[r]), int(edges[r + 1])
            w = self.item_popularity.astype(np.float64) * np.exp(
                -np.maximum(0, 0.5 * (w0 + w1) - created) / (cfg.item_lifetime_days * DAY))
            w[created >= w1] = 0.0
            mass = np.bincount(topic, weights=w, minlength=n_topics)
            if mass.sum() > 0:
                windows.append((cfg.exposures_per_user * (w1 - w0) / span, w, mass,
                                float(cal["view"][r]), float(cal[action][r])))
        out = np.zeros((len(users), n_items), dtype=np.float32)
        step = max(1, _ORACLE_CELLS // n_items)
        eff, focus = float(cfg.affinity_effect), float(cfg.interest_focus)
        for lo in range(0, len(users), step):
            u = users[lo:lo + step]
            th = self.user_interest[u].astype(np.float64)
            s = (n_topics * th) ** eff
            tf = th ** focus
            act = self.user_activity[u].astype(np.float64)
            log_miss = np.zeros((len(u), n_items))
            for lam, w, mass, cv, ca in windows:
                z = tf @ mass
                a = np.where(z[:, None] > 0, lam * act[:, None] * tf / np.maximum(z, 1e-300)[:, None], 0.0)
                g = np.minimum(P_MAX, cv * s)
                if action != "view":
                    g = g * np.minimum(P_MAX, ca * s)
                p = -np.expm1(-(a[:, topic] * w)) * g[:, topic]
                log_miss += np.log1p(-p)
            sc = -np.expm1(log_miss)
            sc[self.item_author[None, :] == u[:, None]] = 0.0
            out[lo:lo + step] = sc
        return out


def unique_sorted(keys: np.ndarray, return_index: bool = False):
    """Sorted distinct ``keys`` (and the index of each one's first occurrence); sort-based, which
    beats ``np.unique``'s hash path on large int64 arrays by an order of magnitude."""
    if return_index:
        order = np.argsort(keys, kind="stable")
        k = keys[order]
    else:
        k = np.sort(keys)
    first = np.ones(len(k), dtype=bool)
    np.not_equal(k[1:], k[:-1], out=first[1:])
    return (k[first], order[first]) if return_index else k[first]
