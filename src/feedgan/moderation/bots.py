"""Bot accounts with known behaviour, added to a simulated network.

    from feedgan.data.simulate import simulate
    from feedgan.moderation.bots import add_bots
    sim = simulate(n_users=2000, n_items=1500, seed=0)
    bots = add_bots(sim, "promoter", share=0.05, seed=0)    # an Injected, as attacks.inject returns
    bots.interactions, bots.labels, bots.targets

Where :func:`feedgan.moderation.attacks.inject` imitates shilling profiles in any log, a bot here
acts on the simulated platform's own posts, with the platform's clock, authors and friend graph,
by a script whose every parameter is known (:data:`BEHAVIOURS`):

* ``promoter``: pushes the posts of a few promoted authors (drawn among the users who post least, so
  the push is visible). For each of their posts, each bot views it with probability ``hit`` within
  an exponential delay (mean ``reaction_s``) of its creation, likes it with ``like`` and shares it with
  ``share``. It hides behind ``camouflage`` views of posts drawn by popularity, at uniform times, each
  liked at the real users' like-per-view rate. ``targets`` = the promoted posts.
* ``liker``: an engagement farm on a schedule. Every ``interval_s`` seconds (± ``jitter`` of it)
  over ``active_days`` days from a random start, the bot views a post created in the day before
  (by popularity; one it has not acted on yet) and likes it with ``like``. No comments, no shares, no targets.
* ``follower``: a friend farm. Each bot befriends ``friends`` real users drawn uniformly across
  communities (no homophily) and views ``views`` posts by popularity, liking none. No targets.

Ids, labels and the text user column follow :func:`~feedgan.moderation.attacks.inject`. Friend
edges of bots are added to the social graph in both directions.
"""
from __future__ import annotations

import numbers
from dataclasses import replace

import numpy as np
import pandas as pd

from ..data.schema import DataError
from ..data.simulate import Simulation
from .attacks import Injected, _fake_ids, _in_log_columns, _share, _text_ids, with_edges

BEHAVIOURS: dict[str, dict] = {
    "promoter": dict(authors=3, hit=0.8, reaction_s=120.0, like=0.9, share=0.3, camouflage=20),
    "liker": dict(interval_s=1800.0, jitter=0.05, active_days=3.0, like=0.6),
    "follower": dict(friends=50, views=5),
}
_DAY = 86_400


def add_bots(sim: Simulation, behaviour: str, *, share: float = 0.05, seed: int = 0, **params) -> Injected:
    """``sim``'s log plus ``round(share * users)`` (at least one) bots of ``behaviour``; ``params``
    override that behaviour's defaults in :data:`BEHAVIOURS`."""
    if not isinstance(sim, Simulation):
        raise DataError(f"add_bots needs a Simulation (feedgan.data.simulate.simulate(...)), got {type(sim).__name__}",
                        fix="for a log that is not simulated, use feedgan.moderation.attacks.inject")
    if behaviour not in BEHAVIOURS:
        raise DataError(f"unknown bot behaviour {behaviour!r}", fix=f"use one of {', '.join(BEHAVIOURS)}")
    unknown = sorted(set(params) - set(BEHAVIOURS[behaviour]))
    if unknown:
        raise DataError(f"unknown {behaviour} bot parameter {unknown[0]!r}",
                        fix=f"{behaviour} takes {', '.join(BEHAVIOURS[behaviour])}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"bot seed {seed!r} is not a non-negative integer", fix="pass e.g. seed=0")
    share = _share(share, "share")
    p = {**BEHAVIOURS[behaviour], **params}
    inter = sim.interactions
    real = inter.frame.assign(user=_text_ids(inter.frame["user"]))
    real_users = pd.unique(real["user"])
    bots = _fake_ids(max(1, round(share * len(real_users))), real_users)
    rng = np.random.default_rng(seed)
    rows, edges, targets = _SCRIPTS[behaviour](_World(sim), bots, p, rng)
    rows = rows.drop_duplicates(["user", "item", "action"])     # a post drawn twice is acted on once
    frame = pd.concat([real, _in_log_columns(inter, rows)], ignore_index=True)
    social = inter.social
    if social is not None:
        social = social.assign(src=_text_ids(social["src"]), dst=_text_ids(social["dst"]))
        if edges is not None:
            social = with_edges(social, *edges)
    out = replace(inter.with_frame(frame, attack=f"bots:{behaviour}", fake_users=len(bots)), social=social)
    labels = pd.Series(np.r_[np.zeros(len(real_users)), np.ones(len(bots))].astype(np.int8),
                       index=pd.Index(np.r_[real_users, bots], dtype=object, name="user"), name="fake")
    return Injected(interactions=out, labels=labels, targets=np.asarray(targets, dtype=np.int64),
                    kind=f"bots:{behaviour}", size=share, filler=0.0, seed=seed, timing="script")


class _World:
    """What the scripts read from the simulation: posts, their authors and times, popularity, the clock."""

    def __init__(self, sim: Simulation):
        f = sim.frame
        views = f.loc[f["action"] == "view", "item"].to_numpy()
        n_items = len(sim.item_author)
        self.popularity = np.bincount(views, minlength=n_items).astype(np.float64) + 1.0   # (n_items,)
        self.created = sim.item_created                                                 # (n_items,) Unix s
        self.author = sim.item_author
        self.community = sim.user_community
        self.start, self.end = int(sim.config.start), int(sim.config.end)
        likes = int((f["action"] == "like").sum())
        self.like_rate = likes / max(1, len(views))

    def popular(self, n: int, rng: np.random.Generator, pool: np.ndarray | None = None) -> np.ndarray:
        """``n`` posts drawn by popularity (from ``pool`` when given)."""
        pool = np.arange(len(self.popularity)) if pool is None else pool
        w = self.popularity[pool]
        return rng.choice(pool, size=n, p=w / w.sum())

    def clip(self, ts: np.ndarray) -> np.ndarray:
        return np.clip(ts, self.start, self.end - 1).astype(np.int64)


def _rows(users, items, actions, ts) -> pd.DataFrame:
    return pd.DataFrame({"user": np.asarray(users, dtype=object), "item": np.asarray(items, dtype=np.int64),
                         "action": np.asarray(actions, dtype=object), "timestamp": np.asarray(ts, dtype=np.int64),
                         "weight": 1.0})


def _funnel(world: _World, users, items, seen_at, like: float, share: float, rng) -> list[pd.DataFrame]:
    """A view at ``seen_at``, a like after it with probability ``like``, a share after that with ``share``."""
    users, items, seen_at = np.asarray(users, dtype=object), np.asarray(items), world.clip(np.asarray(seen_at))
    out = [_rows(users, items, ["view"] * len(items), seen_at)]
    liked = rng.random(len(items)) < like
    like_at = world.clip(seen_at + rng.exponential(30.0, len(items)).astype(np.int64))
    out.append(_rows(users[liked], items[liked], ["like"] * int(liked.sum()), like_at[liked]))
    shared = liked & (rng.random(len(items)) < share)
    out.append(_rows(users[shared], items[shared], ["share"] * int(shared.sum()),
                     world.clip(like_at[shared] + rng.exponential(60.0, int(shared.sum())).astype(np.int64))))
    return out


def _promoter(world: _World, bots: np.ndarray, p: dict, rng):
    posts_by = np.bincount(world.author, minlength=len(world.community))
    posting = np.flatnonzero(posts_by > 0)
    quiet = posting[np.argsort(posts_by[posting], kind="stable")][: max(int(p["authors"]), 1) * 4]
    promoted = rng.choice(quiet, size=min(int(p["authors"]), len(quiet)), replace=False)
    targets = np.flatnonzero(np.isin(world.author, promoted))                          # the promoted posts
    hit = rng.random((len(bots), len(targets))) < p["hit"]                             # (n_bots, n_targets)
    b, t = np.nonzero(hit)
    delay = rng.exponential(p["reaction_s"], len(t))
    parts = _funnel(world, bots[b], targets[t], world.created[targets[t]] + delay, p["like"], p["share"], rng)
    n_cam = int(p["camouflage"])
    cam = world.popular(len(bots) * n_cam, rng)
    parts += _funnel(world, np.repeat(bots, n_cam), cam, rng.integers(world.start, world.end, len(cam)),
                     world.like_rate, 0.0, rng)
    return pd.concat(parts, ignore_index=True), None, targets


def _liker(world: _World, bots: np.ndarray, p: dict, rng):
    n_ticks = max(1, int(p["active_days"] * _DAY / p["interval_s"]))
    latest = max(world.start, world.end - int(p["active_days"] * _DAY))
    first = rng.integers(world.start, latest, len(bots), endpoint=True)                # (n_bots,)
    steps = p["interval_s"] * (1.0 + p["jitter"] * rng.uniform(-1, 1, (len(bots), n_ticks)))
    ts = first[:, None] + np.cumsum(steps, axis=1)                                     # (n_bots, n_ticks)
    items = np.empty(ts.shape, dtype=np.int64)
    for b in range(len(bots)):          # each tick a post of the day before the bot has not acted on yet
        taken = np.zeros(len(world.created), dtype=bool)
        for j, at in enumerate(ts[b]):
            fresh = (world.created <= at) & (world.created > at - _DAY) & ~taken
            pool = np.flatnonzero(fresh if fresh.any() else ~taken)
            items[b, j] = world.popular(1, rng, pool)[0]
            taken[items[b, j]] = True
    ts, items = ts.ravel(), items.ravel()
    parts = _funnel(world, np.repeat(bots, n_ticks), items, ts, p["like"], 0.0, rng)
    return pd.concat(parts, ignore_index=True), None, np.empty(0, dtype=np.int64)


def _follower(world: _World, bots: np.ndarray, p: dict, rng):
    n_real = len(world.community)
    k = min(int(p["friends"]), n_real)
    friends = np.stack([rng.choice(n_real, size=k, replace=False) for _ in bots])      # (n_bots, k)
    edges = (np.repeat(bots, k), friends.ravel().astype(str).astype(object))
    n_views = int(p["views"])
    items = world.popular(len(bots) * n_views, rng)
    parts = _funnel(world, np.repeat(bots, n_views), items, rng.integers(world.start, world.end, len(items)),
                    0.0, 0.0, rng)
    return pd.concat(parts, ignore_index=True), edges, np.empty(0, dtype=np.int64)


_SCRIPTS = {"promoter": _promoter, "liker": _liker, "follower": _follower}
