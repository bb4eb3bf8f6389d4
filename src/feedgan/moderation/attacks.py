"""Shilling attacks injected into an interaction log, every user labelled.

:func:`inject` adds ``round(size * real users)`` (at least one) fake users to a log. Each fake profile is::

    targets   the pushed items, rated the maximum
    selected  the same few items for every fake (bandwagon: the most popular; segment: the items most
              co-rated with the targets), rated the maximum; none for random and average
    filler    ``round(filler * items)`` (at least one) other items, drawn per fake at random

Filler ratings follow the attack model: random N(global mean, global std), average N(item mean,
item std), bandwagon N(global mean, global std), segment the minimum. Ratings are snapped to the
log's rating levels (or rounded when the log's ratings are integers of many values) and clipped to
its range. On implicit data (every weight 1.0) every rating is 1.0: the attacks differ only in the
items they choose.

``kind="generated"`` makes the fakes with a :mod:`feedgan.synth` generator instead (``generator``:
one of :data:`feedgan.synth.generators.GENERATORS`, default ``vae``; ``generator_params`` override
:data:`GENERATOR_DEFAULTS`, a small fast setting): it is fitted on the log's real users and samples
one user per fake, so a fake's activity, items, action mix and timestamps are those the generator
draws from real users (``filler`` is not used). Each fake then gets the targets with its most frequent
action, at one of its own event times. On rating data every generated row is rated N(item mean,
item std) like ``average`` filler, and the target rows the maximum.

``kind="adversarial"`` starts each fake from a real *template* user's items and ratings and lets a
generator trained against a discriminator choose which ``filler`` share of the template's items it
keeps and how it rates them (:mod:`feedgan.moderation.adversarial`; ``generator_params`` override
:class:`~feedgan.moderation.adversarial.AdversarialParams`, ``{"epochs": 0}`` gives the unrefined
template attack); the targets are added at the maximum, and rows, action and timing are as for the
classic kinds.

The statistics (popularity = distinct users per item, item means and spreads, the rating range) come
from the log's interaction rows; exposure rows (``impression``) are never a rating. Fake rows carry
the log's most frequent action and part ``train`` (when it has parts). Timestamps (when the log has
them) follow ``timing``: ``"uniform"`` (the default) draws each row's time uniformly over the log's
time range; ``"real"`` gives each fake a real user's timeline: a window of as many consecutive events
as the fake has rows, from a real user with at least that many (or the most active user's times,
resampled, when none has), in a random order over the fake's items. Fake user ids are ``fake-0000001``, ...; the user
column is then text, so a log with integer user ids gets them as text (``7`` -> ``"7"``), in the
social graph too, as :func:`feedgan.data.schema.validate` writes a column mixing both kinds.

Fakes have no friends by default (``friends="none"``). With ``friends="real"`` (on a log with a
social graph) each fake befriends as many real users as a random real user has friends, drawn among
the real users at random: a zero friend count no longer tells them apart, though their friends are
strangers to one another where real users' are not.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from feedgan.data.schema import EXPOSURE, DataError, Interactions
from feedgan.params import ParamError, check_params
from feedgan.synth.profiles import Profiles

ATTACKS = ("random", "average", "bandwagon", "segment")
GENERATED = "generated"
ADVERSARIAL = "adversarial"
KINDS = ATTACKS + (GENERATED, ADVERSARIAL)
TIMINGS = ("uniform", "real")
FRIENDS = ("none", "real")
# small, fast settings (seconds on ML-100K); ``generator_params`` overrides them
GENERATOR_DEFAULTS = {"vae": {"hidden": 200, "latent": 64, "epochs": 30, "anneal_epochs": 15},
                      "gan": {"hidden": 200, "latent": 64, "vae_epochs": 30, "anneal_epochs": 15, "epochs": 30}}
SELECTED_SHARE = 0.01   # bandwagon / segment: selected items as a share of the catalogue (at least one)
TARGET_POOL = 0.25      # a drawn target comes from this least-popular share of the items
MAX_LEVELS = 20         # a log with at most this many distinct ratings is on a rating scale of those levels
FAKE_PREFIX = "fake-"


@dataclass
class Injected:
    """The real log plus the fake users' rows, and which users are fake."""

    interactions: Interactions   # same schema and actions as the input
    labels: pd.Series            # index: every user id in `interactions`; 1 = injected, 0 = real (int8)
    targets: np.ndarray          # the pushed item ids (raw ids, as in the log)
    kind: str
    size: float
    filler: float                # not used by "generated" fakes (their length is the generator's)
    seed: int
    timing: str = "uniform"
    generator: str | None = None  # the feedgan.synth generator of "generated" fakes


@dataclass
class _Log:
    """What the attack models read from the real log; items are positions into ``items``."""

    items: np.ndarray        # (n_items,) raw item ids
    popularity: np.ndarray   # (n_items,) distinct users per item
    pairs: pd.DataFrame      # distinct (user, item position) pairs
    mean: np.ndarray         # (n_items,) mean rating per item
    std: np.ndarray          # (n_items,) rating spread per item (0 for an item rated once)
    global_mean: float
    global_std: float
    levels: np.ndarray       # the distinct ratings, ascending; [1.0] on implicit data

    @property
    def rated(self) -> bool:
        return len(self.levels) > 1 or self.levels[0] != 1.0

    def snap(self, ratings: np.ndarray) -> np.ndarray:
        """Ratings on the log's scale: the nearest level, or rounded when there are many integer levels."""
        lo, hi = self.levels[0], self.levels[-1]
        ratings = np.clip(ratings, lo, hi)
        if len(self.levels) <= MAX_LEVELS:
            cut = (self.levels[1:] + self.levels[:-1]) / 2  # midpoints between neighbouring levels
            return self.levels[np.searchsorted(cut, ratings)]
        if np.all(self.levels == np.round(self.levels)):
            return np.round(ratings)
        return ratings


def _read_log(frame: pd.DataFrame) -> _Log:
    codes, items = pd.factorize(frame["item"], sort=False)
    n = len(items)
    w = frame["weight"].to_numpy(dtype=np.float64)
    count = np.bincount(codes, minlength=n)
    mean = np.bincount(codes, w, minlength=n) / count
    var = np.bincount(codes, w * w, minlength=n) / count - mean ** 2
    pairs = pd.DataFrame({"user": frame["user"].to_numpy(), "item": codes}).drop_duplicates()
    return _Log(items=np.asarray(items), popularity=np.bincount(pairs["item"], minlength=n), pairs=pairs,
                mean=mean, std=np.sqrt(np.maximum(var, 0.0)), global_mean=float(w.mean()),
                global_std=float(w.std()), levels=np.unique(w))


# ---- the attack models: which items every fake shares, and how filler items are rated --------------------

def _no_selection(log: _Log, targets: np.ndarray, n: int) -> np.ndarray:
    return np.empty(0, dtype=np.int64)


def _most_popular(log: _Log, targets: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` items with the most users, targets left out (ties: first seen first)."""
    order = np.argsort(-log.popularity, kind="stable")
    return order[~np.isin(order, targets)][:n]


def _segment(log: _Log, targets: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` items rated by the most users who rated a target (ties: the more popular first)."""
    fans = log.pairs.loc[np.isin(log.pairs["item"], targets), "user"]
    co = np.bincount(log.pairs.loc[log.pairs["user"].isin(fans), "item"], minlength=len(log.items))
    order = np.lexsort((-log.popularity, -co))  # last key sorts first
    return order[~np.isin(order, targets)][:n]


def _global_normal(log: _Log, filler: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(log.global_mean, log.global_std, filler.shape)


def _item_normal(log: _Log, filler: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(log.mean[filler], log.std[filler])


def _lowest(log: _Log, filler: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.full(filler.shape, log.levels[0])


_MODELS = {"random": (_no_selection, _global_normal), "average": (_no_selection, _item_normal),
           "bandwagon": (_most_popular, _global_normal), "segment": (_segment, _lowest)}


# ---- input checks -------------------------------------------------------------------------------------------

def _share(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) <= 1:
        raise DataError(f"attack {name} {value!r} is not a share in (0, 1]",
                        fix=f"give {name} as a fraction, e.g. 0.05 for 5%")
    return float(value)


def _count(share: float, total: int) -> int:
    return max(1, round(share * total))


def _targets(targets, log: _Log, rng: np.random.Generator) -> np.ndarray:
    """Item positions of the targets: ``targets`` drawn among the least popular items, or the ids given."""
    n = len(log.items)
    if isinstance(targets, numbers.Integral) and not isinstance(targets, bool):
        if not 1 <= targets <= n:
            raise DataError(f"cannot pick {targets} target items from a log of {n} items",
                            fix=f"ask for 1 to {n} targets")
        pool = np.argsort(log.popularity, kind="stable")[:max(int(targets), math.ceil(TARGET_POOL * n))]
        return np.sort(rng.choice(pool, int(targets), replace=False))
    if isinstance(targets, (str, bytes)) or not isinstance(targets, (Sequence, np.ndarray, pd.Index, pd.Series)):
        raise DataError(f"targets {targets!r} is neither a count nor a list of item ids",
                        fix="pass a number of targets, e.g. 1, or a list of item ids, e.g. [42]")
    wanted = pd.unique(pd.Series(list(targets), dtype=object))
    if len(wanted) == 0:
        raise DataError("the list of target items is empty", fix="name at least one item id")
    at = pd.Index(log.items).get_indexer(wanted)
    if (at < 0).any():
        missing = wanted[np.flatnonzero(at < 0)[0]]
        raise DataError(f"target item {missing!r} is not in the log", fix=f"use item ids of the log, e.g. "
                        f"{', '.join(repr(i) for i in log.items[:3].tolist())}")
    return at.astype(np.int64)


def _text_ids(col: pd.Series) -> pd.Series:
    return col if col.dtype == object else col.astype(str).astype(object)


def _fake_ids(n: int, real_users: np.ndarray) -> np.ndarray:
    ids = np.array([f"{FAKE_PREFIX}{i:07d}" for i in range(1, n + 1)], dtype=object)
    taken = pd.Index(real_users).intersection(ids)
    if len(taken):
        raise DataError(f"user id {taken[0]!r} is in the log, so fake ids would collide with real users",
                        fix=f"rename the log's users whose ids start with {FAKE_PREFIX!r}")
    return ids


# ---- injection ----------------------------------------------------------------------------------------------

def inject(inter: Interactions, kind: str, *, size: float = 0.05, filler: float = 0.03,
           targets: int | Sequence = 1, seed: int = 0, timing: str = "uniform", generator: str = "vae",
           generator_params: dict | None = None, friends: str = "none") -> Injected:
    """The log plus ``round(size * real users)`` fake users of attack ``kind`` pushing ``targets``.

    ``timing`` ("uniform" or "real") sets the classic kinds' timestamps; ``generator`` and
    ``generator_params`` the generator of ``kind="generated"``; ``friends`` ("none" or "real") whether
    the fakes join the social graph (module docstring)."""
    if kind not in KINDS:
        raise DataError(f"unknown attack kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    if timing not in TIMINGS:
        raise DataError(f"unknown attack timing {timing!r}", fix=f"use one of {', '.join(TIMINGS)}")
    if friends not in FRIENDS:
        raise DataError(f"unknown attack friends {friends!r}", fix=f"use one of {', '.join(FRIENDS)}")
    if kind == GENERATED and timing != "uniform":
        raise DataError("generated fakes carry their generator's timestamps; timing applies to the classic kinds",
                        fix="leave timing at its default for kind='generated'")
    size, filler = _share(size, "size"), _share(filler, "filler")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"attack seed {seed!r} is not a non-negative integer", fix="pass e.g. seed=0")
    frame = inter.frame
    acted = frame[frame["action"] != EXPOSURE]
    if acted.empty:
        raise DataError("the log has no interactions to imitate (only exposures)", file=inter.source,
                        fix="inject into a log with views, likes or ratings")
    log = _read_log(acted)
    rng = np.random.default_rng(seed)
    pushed = _targets(targets, log, rng)
    real = frame.assign(user=_text_ids(frame["user"]))
    real_users = pd.unique(real["user"])
    fakes = _fake_ids(_count(size, len(real_users)), real_users)
    if kind == GENERATED:
        rows = _generated_rows(inter, log, pushed, fakes, generator, generator_params, seed, rng)
    else:
        n_filler = _count(filler, len(log.items))
        if kind == ADVERSARIAL:
            from .adversarial import adversarial_profiles  # torch: imported only for this attack

            items, ratings = adversarial_profiles(acted, log.items, log.levels, pushed, n_filler, len(fakes),
                                                  generator_params, seed, rng)
        else:
            items, ratings = _profiles(log, kind, pushed, n_filler, len(fakes), rng)
        rows = _fake_rows(inter, fakes, log.items[items], ratings, acted, timing, rng)

    social = inter.social
    if social is not None and real["user"].dtype != frame["user"].dtype:
        social = social.assign(src=_text_ids(social["src"]), dst=_text_ids(social["dst"]))
    if friends == "real" and social is not None:
        social = _with_friends(social, real_users, fakes, rng)
    out = pd.concat([real, rows], ignore_index=True)
    injected = replace(inter.with_frame(out, attack=kind, fake_users=len(fakes)), social=social)
    labels = pd.Series(np.r_[np.zeros(len(real_users)), np.ones(len(fakes))].astype(np.int8),
                       index=pd.Index(np.r_[real_users, fakes], dtype=object, name="user"), name="fake")
    return Injected(interactions=injected, labels=labels, targets=log.items[pushed], kind=kind, size=size,
                    filler=filler, seed=seed, timing=timing, generator=generator if kind == GENERATED else None)


def _profiles(log: _Log, kind: str, pushed: np.ndarray, n_filler: int, n_fake: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Item positions and ratings of every fake, both (n_fake, profile length): targets, selected, filler."""
    select, rate = _MODELS[kind]
    selected = select(log, pushed, _count(SELECTED_SHARE, len(log.items)))
    pool = np.setdiff1d(np.arange(len(log.items)), np.r_[pushed, selected])
    if n_filler > len(pool):
        raise DataError(f"a {kind} profile needs {n_filler} filler items but only {len(pool)} items are left "
                        f"besides the {len(pushed)} targets and {len(selected)} selected ones",
                        fix="lower filler or the number of targets")
    fill = np.stack([rng.choice(pool, n_filler, replace=False) for _ in range(n_fake)])  # (n_fake, n_filler)
    shared = np.broadcast_to(np.r_[pushed, selected], (n_fake, len(pushed) + len(selected)))
    ratings = np.ones((n_fake, shared.shape[1] + n_filler))
    if log.rated:
        ratings[:, :shared.shape[1]] = log.levels[-1]
        ratings[:, shared.shape[1]:] = log.snap(rate(log, fill, rng))
    return np.hstack([shared, fill]), ratings


def _fake_rows(inter: Interactions, fakes: np.ndarray, items: np.ndarray, ratings: np.ndarray,
               acted: pd.DataFrame, timing: str, rng: np.random.Generator) -> pd.DataFrame:
    """The fakes' rows in the log's columns; ``items`` and ``ratings`` are (n_fake, profile length)."""
    frame = inter.frame
    rows = pd.DataFrame({"user": np.repeat(fakes, items.shape[1]), "item": items.ravel()})
    action = acted["action"].value_counts().idxmax()
    rows["action"] = action
    if inter.has_timestamps:
        if timing == "real":
            rows["timestamp"] = _real_timelines(acted, items.shape, rng).ravel()
        else:
            ts = frame["timestamp"]
            rows["timestamp"] = rng.integers(ts.min(), ts.max(), size=len(rows), endpoint=True, dtype=np.int64)
    rows["weight"] = ratings.ravel()
    return _in_log_columns(inter, rows)


def _in_log_columns(inter: Interactions, rows: pd.DataFrame) -> pd.DataFrame:
    """Fake rows (user, item, action, weight[, timestamp]) with the log's dtypes, part and column order."""
    frame = inter.frame
    rows = rows.assign(item=rows["item"].astype(frame["item"].dtype), weight=rows["weight"].astype(np.float32),
                       action=pd.Categorical(rows["action"], categories=frame["action"].cat.categories))
    if inter.has_parts:
        rows["part"] = pd.Categorical(["train"] * len(rows), categories=frame["part"].cat.categories)
    return rows[[c for c in frame.columns if c in rows.columns]]


def _real_timelines(acted: pd.DataFrame, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(n_fake, length) timestamps: per fake, ``length`` consecutive events of a random real user with
    at least that many (the most active user's times resampled when none has), shuffled over its items."""
    n_fake, length = shape
    ts = acted[["user", "timestamp"]].sort_values(["user", "timestamp"], kind="stable")
    times = ts["timestamp"].to_numpy(dtype=np.int64)       # every user's events in time order, users in a row
    counts = ts.groupby("user", sort=False).size().to_numpy()  # (n_users,) in the same order
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    long_enough = np.flatnonzero(counts >= length)
    out = np.empty(shape, dtype=np.int64)
    for f in range(n_fake):
        if len(long_enough):
            u = rng.choice(long_enough)
            at = starts[u] + rng.integers(0, counts[u] - length, endpoint=True)
            window = times[at:at + length]
        else:
            u = int(np.argmax(counts))
            window = np.sort(rng.choice(times[starts[u]:starts[u] + counts[u]], length))
        out[f] = rng.permutation(window)
    return out


# ---- generator-made fakes -----------------------------------------------------------------------------------

def _generator(name: str, params: dict | None):
    """An unfitted feedgan.synth generator: :data:`GENERATOR_DEFAULTS` overridden by ``params``."""
    from feedgan.synth.generators import GENERATORS  # torch: imported only for a generated attack

    if name not in GENERATORS:
        raise DataError(f"unknown generator {name!r} for a generated attack", fix=f"use one of {', '.join(GENERATORS)}")
    if params is not None and not isinstance(params, dict):
        raise DataError(f"generator_params {params!r} is not a mapping", fix="pass e.g. generator_params={'epochs': 10}")
    cls = GENERATORS[name]
    try:
        return cls(**check_params(cls, {**GENERATOR_DEFAULTS.get(name, {}), **(params or {})}, owner=name))
    except ParamError as err:
        raise DataError(f"generated attack: {err}", fix="see feedgan.synth.generators for its hyperparameters") from None


def _generated_rows(inter: Interactions, log: _Log, pushed: np.ndarray, fakes: np.ndarray, name: str,
                    params: dict | None, seed: int, rng: np.random.Generator) -> pd.DataFrame:
    """One sampled user per fake (renamed), plus the targets; rated like average filler on rating data."""
    gen = _generator(name, params).fit(Profiles.from_interactions(inter), seed=seed)
    sample = gen.sample(len(fakes), seed=seed + 1)  # every sampled user touches at least one item
    synth = sample.to_interactions().frame
    rows = synth.assign(user=pd.Series(fakes, index=sample.users)[synth["user"]].to_numpy(),
                        action=synth["action"].astype(str))
    rows = _with_targets(rows, log.items[pushed], rng)
    item = pd.Index(log.items).get_indexer(rows["item"])
    hit = np.isin(item, pushed)
    weight = np.ones(len(rows))
    if log.rated:
        weight = log.snap(rng.normal(log.mean[item], log.std[item]))
        weight[hit] = log.levels[-1]
    cols = ["user", "item", "action"] + (["timestamp"] if inter.has_timestamps else [])
    return _in_log_columns(inter, rows[cols].assign(weight=weight))


def _with_friends(social: pd.DataFrame, real_users: np.ndarray, fakes: np.ndarray,
                  rng: np.random.Generator) -> pd.DataFrame:
    """The graph plus, per fake, as many friends as a random real user has, drawn among the real users
    at random; every edge in both directions, as the graph keeps them."""
    degree = social["src"].value_counts().reindex(real_users, fill_value=0).to_numpy()
    k = np.minimum(degree[rng.integers(len(real_users), size=len(fakes))], len(real_users))
    dst = np.concatenate([rng.choice(real_users, size=n, replace=False) for n in k]) if k.sum() else np.empty(0, object)
    src = np.repeat(fakes, k)
    return with_edges(social, src, dst)


def with_edges(social: pd.DataFrame, src: np.ndarray, dst: np.ndarray) -> pd.DataFrame:
    """``social`` (text ids) plus the edges ``src``-``dst`` in both directions, weight 1 where it has weights."""
    add = pd.DataFrame({"src": np.r_[src, dst], "dst": np.r_[dst, src]}, dtype=object)
    if "weight" in social.columns:
        add["weight"] = np.ones(len(add), dtype=social["weight"].dtype)
    return pd.concat([social, add[social.columns]], ignore_index=True)


def _with_targets(rows: pd.DataFrame, targets: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """``rows`` plus, for every fake and target it lacks, a row of the fake's most frequent action at
    one of its own event times (random)."""
    main = rows.groupby("user", sort=False)["action"].agg(lambda a: a.value_counts().idxmax())
    add = pd.DataFrame({"user": np.repeat(main.index.to_numpy(), len(targets)),
                        "item": np.tile(targets, len(main)), "action": np.repeat(main.to_numpy(), len(targets))})
    have = pd.MultiIndex.from_frame(rows[["user", "item", "action"]])
    add = add[~pd.MultiIndex.from_frame(add).isin(have)]
    if "timestamp" in rows.columns and len(add):
        own = rows.groupby("user", sort=False)["timestamp"].agg(list)
        add = add.assign(timestamp=[own[u][rng.integers(len(own[u]))] for u in add["user"]])
    return pd.concat([rows, add], ignore_index=True)
