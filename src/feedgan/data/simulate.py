"""A social-network feed simulator with known ground truth: the toolkit's built-in dataset.

``simulate()`` returns a :class:`Simulation`: an :class:`~feedgan.data.schema.Interactions` log
(views, likes, comments, shares with timestamps, plus the friend graph as ``social``) together
with the latent variables that generated it, so that a model's recovered structure can be checked
against the truth. It is what the demo and the tests run on, and what a user can feed a pipeline
before they have data of their own::

    from feedgan.data.simulate import simulate
    sim = simulate(n_users=500, seed=1)
    sim.interactions.frame.head(); sim.summary()

Generative story
----------------
1. **Communities and interests.** Each user belongs to one of ``n_communities`` communities
   (uniformly at random). Each community has a topic profile ``pi_c ~ Dirichlet(community_focus)``
   over ``n_topics`` topics (a small ``community_focus`` puts it on a few topics). A user's latent
   interest is ``theta_u ~ Dirichlet(interest_concentration * pi_c + 0.05)``: close to the
   community's profile, with some personal spread and a floor so no topic is impossible.
2. **Activity.** Each user has an activity level ``act_u ~ LogNormal(sigma=activity_sigma)``
   scaled to mean 1 (heavy-tailed: a few users see and post much more than the rest).
3. **Friend graph.** ``n_users * mean_friends / 2`` undirected friendships are drawn
   Chung-Lu style: each endpoint is picked with probability proportional to a heavy-tailed
   sociability ``~ LogNormal(sigma=degree_sigma)``; with probability ``homophily`` the second
   endpoint comes from the first one's community, otherwise from any other community.
   Self-loops and repeats are dropped (and topped up). Friendship is mutual, so ``social`` holds
   each friendship as two follow edges ``src -> dst`` and ``dst -> src``.
4. **Posts.** Each of ``n_items`` items has an author (a user, picked proportionally to
   activity), a topic drawn from the author's interests, a creation time uniform over the
   simulated period, and a latent popularity ``rank ** -popularity_exponent`` (Zipf over a random
   ranking, scaled to mean 1).
5. **Feed exposures, in ``rounds`` time windows.** In each window a user gets
   ``Poisson(exposures_per_user * act_u * window_share)`` impressions. An organic impression
   picks a topic with probability proportional to ``theta_u[t] ** interest_focus`` times the topic's
   available mass, then an item of that topic proportional to
   ``popularity * exp(-age / item_lifetime_days)`` among items already created. From the second
   window on, a share ``social_feed_share`` of the impressions of users whose friends have engaged
   comes from the friends instead: an item is drawn proportionally to the number of friends who
   authored, liked, commented on or shared it in earlier windows (a sparse product
   ``friends @ engaged``). Users are never shown their own posts, nor an item they have already
   viewed or were already shown in the window: such repeats are dropped and redrawn (a few
   times), so impressions approximate sampling without replacement.
6. **Funnel.** Each impression converts to a view, each view independently to a like, a comment
   and a share, with probability ``min(0.95, c_stage * affinity ** affinity_effect * boost)``,
   where ``affinity = n_topics * theta_u[topic_i]`` (1 for a user indifferent to topics),
   ``c_stage`` is calibrated so that the mean over the window equals the configured rate, and
   ``boost = 1 + friend_influence * log2(1 + k)`` with ``k`` the number of friends who engaged
   with the item before this window (``boost`` = 1 for most impressions). The boost makes
   realised rates somewhat above the configured ones when social influence is on.
7. **Time.** A view happens uniformly in the window, after the item's creation; the like, the
   comment and the share follow after exponential delays (about 1, 2 and 1 minutes), so
   ``view <= like <= comment <= share`` for each (user, item). All timestamps lie in
   ``[start, start + days * 86400)``.

Exposure log
------------
With ``log_impressions=True`` the log also holds one ``impression`` row (``schema.EXPOSURE``;
categories: the logged actions, then ``impression``) per realised impression, the negatives for
propensity models: a viewed one a few seconds (exponential, mean 5 s) before its view, never
before the window or the post; an unviewed one uniformly in its window after the post's creation.
An item shown but not viewed may be shown again in a later window, so a (user, item) pair can have
several impression rows; the one that led to the view is the last. Impression timestamps come from
their own random stream: dropping the impression rows gives the log without them, row for row,
and with the flag off (the default) the log is unchanged. ``summary()`` then counts impressions
from the log.

Ground truth for scoring
------------------------
(:mod:`feedgan.data.truth`, mixed into :class:`Simulation`.) :meth:`Simulation.propensity` gives the true ``P(action | shown)`` of (user, item) pairs
(``P(view | shown) * P(action | view)`` for like, comment, share) with each window's calibration
constants (``stats["calibration"]``); pass the impressions' timestamps to use their windows, and
:meth:`Simulation.friend_boost` (recomputed from the log) as ``boost`` to include friend influence:
without it the oracle assumes no social influence. :meth:`Simulation.oracle_scores` gives a full
(users x items) ranking score, the chance of the action over the period from the organic feed's
exposure model times the propensity; it leaves out the social feed, the friend boost, and the
redrawing of repeats.

Default rates and their magnitudes
----------------------------------
``view_rate`` = P(view | impression), ``like_rate``, ``comment_rate``, ``share_rate`` =
P(action | view). Their defaults (0.30, 0.07, 0.01, 0.005) are of the order reported for real
feeds, not measurements of any one platform: public impression-level logs from short-video apps
(Kuaishou's KuaiRand and KuaiRec, Tencent's Tenrec) label on the order of a third of impressions
as clicked or watched; YouTube-style public counters and creator-analytics reports put likes at a
few percent up to about ten percent of views; comments are roughly an order of magnitude rarer than
likes (about one per hundred views or fewer), and shares or forwards rarer still (a few per
thousand views). Industry engagement benchmarks (likes + comments + shares per follower or per
reach on Facebook, Instagram, X, TikTok) land in the same 0.1 % to a few percent range.

Size of the log
---------------
Rows are roughly ``n_users * exposures_per_user * view_rate * (1 + like_rate + comment_rate +
share_rate)`` (:meth:`SimulationConfig.expected_rows`), a little more with friend influence (it
raises conversion) and somewhat less when popular items are shown again to users who already
viewed them (repeats are redrawn a few times, then dropped), which matters for heavy users and
small item catalogues: at the default size about 88 % of the configured impressions and rows are
realised. ``summary()`` reports the realised numbers. ``log_impressions`` adds one row per
realised impression (about ``n_users * exposures_per_user``, three times the views at the default
rates).

Everything is vectorised with NumPy/SciPy (Python loops only over the few windows, redraws,
funnel stages and user chunks), ids and counts are int32 / float32 internally, and the
user-by-topic sampling runs in chunks of users. On two CPU cores 100k users and 1M rows take
about 5 s; a million users with ``exposures_per_user=10`` (3.4M rows) about 35 s, 1.5 GB peak RSS.
With 100k users and 50k items, ``log_impressions`` (5.4M impression rows on top of 1.9M) takes the
run from about 5.5 s to 7 s and the peak RSS from 0.5 to 0.8 GB.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from feedgan.data.schema import EXPOSURE, TS_MAX, TS_MIN, Interactions, validate
from feedgan.data.truth import DAY as _DAY
from feedgan.data.truth import LOGGED_ACTIONS, GroundTruth
from feedgan.data.truth import P_MAX as _P_MAX
from feedgan.data.truth import unique_sorted as _unique

__all__ = ["LOGGED_ACTIONS", "Simulation", "SimulationConfig", "simulate"]

_INTEREST_FLOOR = 0.05   # Dirichlet mass every topic gets in every user's interests
_CHUNK = 1 << 17         # users per chunk when sampling topics (bounds n_users x n_topics temporaries)
_CALIB_SAMPLE = 200_000  # scores used to calibrate a stage's rate
_REDRAWS = 4            # attempts to replace impressions dropped as repeats
_DELAYS = (60.0, 120.0, 60.0)  # mean seconds view->like, like->comment, comment->share
_IMPRESSION_LEAD = 5.0   # mean seconds from an impression to its view
_IMPRESSION_STREAM = 1   # SeedSequence spawn key of the generator that only impression rows use


@dataclass
class SimulationConfig:
    """Sizes, rates and knobs of the simulated network (see the module docstring for the model)."""

    # sizes
    n_users: int = 2000
    n_items: int = 3000
    n_topics: int = 16
    n_communities: int = 8
    # friend graph
    mean_friends: float = 12.0      # mean number of friends (degree) per user
    homophily: float = 0.8          # share of friend edges inside one's community
    degree_sigma: float = 1.0       # log-normal sigma of sociability (heavy-tailed degrees)
    # users
    community_focus: float = 0.3    # Dirichlet alpha of a community's topic profile (small = few topics)
    interest_concentration: float = 4.0  # how closely a user's interests follow the community's
    exposures_per_user: float = 60.0     # mean impressions per user over the whole period
    activity_sigma: float = 1.0     # log-normal sigma of user activity (heavy-tailed impressions, posts)
    # items
    popularity_exponent: float = 1.1  # Zipf exponent of latent item popularity
    item_lifetime_days: float = 7.0   # e-folding time of an item's feed weight after creation
    # feed and funnel
    interest_focus: float = 1.0     # exponent on interest when the feed picks a topic (0 = ignore interests)
    affinity_effect: float = 1.0    # exponent on affinity in conversion probabilities (0 = none)
    view_rate: float = 0.30         # P(view | impression)
    like_rate: float = 0.07         # P(like | view)
    comment_rate: float = 0.01      # P(comment | view)
    share_rate: float = 0.005       # P(share | view)
    # social contagion
    friend_influence: float = 1.0   # conversion boost per doubling of engaged friends (0 = none)
    social_feed_share: float = 0.2  # share of impressions drawn from friends' engagements (0 = none)
    rounds: int = 5                 # time windows; friends' engagements act from the next window on
    # time and randomness
    start: int = 1_672_531_200      # 2023-01-01 00:00:00 UTC
    days: int = 30
    seed: int = 0
    # exposure log
    log_impressions: bool = False   # also log an `impression` row for every item shown (acted on or not)

    def __post_init__(self) -> None:
        def fail(name: str, what: str) -> None:
            raise ValueError(f"SimulationConfig.{name} must be {what}, got {getattr(self, name)!r}")

        for name in ("n_users", "n_items", "n_topics", "n_communities", "rounds", "days"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                fail(name, "a positive integer")
        if self.n_users < 2:
            fail("n_users", "at least 2")
        if self.n_communities > self.n_users:
            fail("n_communities", f"at most n_users ({self.n_users})")
        for name in ("mean_friends", "degree_sigma", "activity_sigma", "popularity_exponent",
                     "interest_focus", "affinity_effect", "friend_influence"):
            v = getattr(self, name)
            if not _is_real(v) or v < 0:
                fail(name, "a finite number >= 0")
        for name in ("community_focus", "interest_concentration", "exposures_per_user",
                     "item_lifetime_days"):
            v = getattr(self, name)
            if not _is_real(v) or v <= 0:
                fail(name, "a finite number > 0")
        if self.mean_friends > self.n_users - 1:
            fail("mean_friends", f"at most n_users - 1 ({self.n_users - 1})")
        for name in ("homophily", "social_feed_share"):
            v = getattr(self, name)
            if not _is_real(v) or not 0 <= v <= 1:
                fail(name, "a share between 0 and 1")
        if not _is_real(self.view_rate) or not 0 < self.view_rate <= _P_MAX:
            fail("view_rate", f"a probability in (0, {_P_MAX}]")
        for name in ("like_rate", "comment_rate", "share_rate"):
            v = getattr(self, name)
            if not _is_real(v) or not 0 <= v <= _P_MAX:
                fail(name, f"a probability in [0, {_P_MAX}]")
        if not _is_int(self.start) or self.start < TS_MIN or self.start + self.days * _DAY > TS_MAX:
            fail("start", "Unix seconds such that start + days * 86400 falls before 2100")
        if not _is_int(self.seed) or self.seed < 0:
            fail("seed", "a non-negative integer")
        if not isinstance(self.log_impressions, (bool, np.bool_)):
            fail("log_impressions", "True or False")

    @property
    def end(self) -> int:
        """First second after the simulated period."""
        return int(self.start) + int(self.days) * _DAY

    def expected_rows(self) -> int:
        """Approximate number of logged rows, before friend influence and dropped repeats."""
        shown = self.n_users * self.exposures_per_user
        rows = shown * self.view_rate * (1 + self.like_rate + self.comment_rate + self.share_rate)
        return int(round(rows + (shown if self.log_impressions else 0)))


@dataclass
class Simulation(GroundTruth):
    """A simulated log and the ground truth behind it (ids are 0-based positions)."""

    interactions: Interactions   # the log (views, likes, comments, shares [, impressions]) + social graph
    config: SimulationConfig
    user_interest: np.ndarray    # (n_users, n_topics) float32, rows sum to 1
    user_community: np.ndarray   # (n_users,) int32
    user_activity: np.ndarray    # (n_users,) float32, mean 1
    item_topic: np.ndarray       # (n_items,) int32
    item_author: np.ndarray      # (n_items,) int64 user id
    item_popularity: np.ndarray  # (n_items,) float32 latent popularity, mean 1
    item_created: np.ndarray     # (n_items,) int64 Unix seconds
    stats: dict = field(default_factory=dict)  # counts not visible in the log; "calibration": per-window
    #   "edges" (rounds + 1 Unix seconds), "impressions" and the constants c of "view", "like", ... (lists)

    @property
    def frame(self) -> pd.DataFrame:
        return self.interactions.frame

    @property
    def social(self) -> pd.DataFrame:
        return self.interactions.social

    def affinity(self, users, items) -> np.ndarray:
        """Ground-truth affinity ``n_topics * theta_u[topic_i]`` (1 = indifferent) of paired ids."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        t = self.config.n_topics
        return (t * self.user_interest[users, self.item_topic[items]]).astype(np.float32)

    def friends(self) -> sp.csr_matrix:
        """Symmetric (n_users, n_users) 0/1 friendship matrix."""
        s = self.social
        n = self.config.n_users
        return sp.csr_matrix((np.ones(len(s), dtype=np.float32), (s["src"].to_numpy(), s["dst"].to_numpy())),
                             shape=(n, n))

    def summary(self) -> dict:
        """Action mix, conversion rates, activity, popularity, degree and density statistics."""
        cfg, f = self.config, self.frame
        every = {str(a): int(c) for a, c in f["action"].value_counts().items()}
        counts = {a: every.get(a, 0) for a in LOGGED_ACTIONS}
        views = counts["view"]
        logged = EXPOSURE in f["action"].cat.categories   # impressions from the log when it has them
        imps = every.get(EXPOSURE, 0) if logged else int(self.stats.get("impressions", 0))
        is_view = (f["action"] == "view").to_numpy()
        vu = f["user"].to_numpy()[is_view]
        vi = f["item"].to_numpy()[is_view]
        per_user = np.bincount(vu, minlength=cfg.n_users)
        per_item = np.sort(np.bincount(vi, minlength=cfg.n_items))[::-1]
        top = max(1, cfg.n_items // 10)
        src = self.social["src"].to_numpy()
        dst = self.social["dst"].to_numpy()
        degree = np.bincount(src, minlength=cfg.n_users)
        within = float((self.user_community[src] == self.user_community[dst]).mean()) if len(src) else float("nan")
        return {
            "users": cfg.n_users,
            "items": cfg.n_items,
            "rows": len(f),
            "actions": counts,
            "impressions": imps,
            "impressions_logged": bool(logged),
            "social_impressions": int(self.stats.get("social_impressions", 0)),
            "conversion": {
                "view|impression": views / imps if imps else float("nan"),
                "like|view": counts["like"] / views if views else float("nan"),
                "comment|view": counts["comment"] / views if views else float("nan"),
                "share|view": counts["share"] / views if views else float("nan"),
            },
            "density": views / (cfg.n_users * cfg.n_items),
            "active_users": int((per_user > 0).sum()),
            "active_items": int((per_item > 0).sum()),
            "views_per_user": {"mean": float(per_user.mean()), "median": float(np.median(per_user)),
                               "max": int(per_user.max())},
            "top10pct_items_view_share": float(per_item[:top].sum() / max(1, views)),
            "friends": {"edges": len(src) // 2, "mean_degree": float(degree.mean()),
                        "median_degree": float(np.median(degree)), "max_degree": int(degree.max()),
                        "within_community": within},
            "period": {"start": int(cfg.start), "end": cfg.end, "days": int(cfg.days)},
        }


def simulate(config: SimulationConfig | None = None, **overrides) -> Simulation:
    """Simulate a social network's feed log; ``overrides`` replace fields of ``config``.

    >>> sim = simulate(n_users=300, n_items=400, seed=3)   # doctest: +SKIP
    """
    cfg = config if config is not None else SimulationConfig()
    if not isinstance(cfg, SimulationConfig):
        raise ValueError(f"config must be a SimulationConfig, got {type(cfg).__name__}")
    if overrides:
        known = {f.name for f in fields(SimulationConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown SimulationConfig field(s) {unknown}; known: {sorted(known)}")
        cfg = replace(cfg, **overrides)
    rng = np.random.default_rng(int(cfg.seed))
    n_users, n_items, n_topics = int(cfg.n_users), int(cfg.n_items), int(cfg.n_topics)

    # 1-2. communities, interests, activity
    community = rng.integers(0, cfg.n_communities, size=n_users).astype(np.int32)
    profile = rng.dirichlet(np.full(n_topics, float(cfg.community_focus)), size=cfg.n_communities)
    interest = _interests(rng, profile, community, float(cfg.interest_concentration))
    activity = _lognormal_mean1(rng, cfg.activity_sigma, n_users)
    sociability = _lognormal_mean1(rng, cfg.degree_sigma, n_users)

    # 3. friend graph (undirected, a < b)
    fa, fb = _friend_graph(rng, community, sociability, int(cfg.n_communities),
                           float(cfg.mean_friends), float(cfg.homophily))

    # 4. posts
    author = _pick(np.concatenate([[0.0], np.cumsum(activity, dtype=np.float64)]),
                   rng.random(n_items) * float(activity.sum(dtype=np.float64)))
    topic = np.empty(n_items, dtype=np.int32)
    for lo in range(0, n_items, _CHUNK):
        hi = min(n_items, lo + _CHUNK)
        cdf = np.cumsum(interest[author[lo:hi]], axis=1)
        u = rng.random(hi - lo, dtype=np.float32)[:, None] * cdf[:, -1:]
        topic[lo:hi] = np.minimum((cdf <= u).sum(axis=1), n_topics - 1)
    ranks = rng.permutation(n_items).astype(np.float64) + 1.0
    popularity = ranks ** -float(cfg.popularity_exponent)
    popularity = (popularity / popularity.mean()).astype(np.float32)
    start, end = int(cfg.start), cfg.end
    created = start + rng.integers(0, end - start, size=n_items, dtype=np.int64)

    # 5-7. feed rounds (impression timestamps come from their own stream: the log is the same without them)
    irng = None
    if cfg.log_impressions:
        irng = np.random.default_rng(np.random.SeedSequence(int(cfg.seed), spawn_key=(_IMPRESSION_STREAM,)))
    log, imps, stats = _run_feed(rng, cfg, interest, activity, fa, fb, author, topic, popularity, created, irng)

    u, i, a, t = log
    if len(u) == 0:
        raise ValueError("the simulation logged no interactions; raise exposures_per_user, n_users or view_rate")
    order = np.argsort(t, kind="stable")
    frame = pd.DataFrame({
        "user": u[order].astype(np.int64),
        "item": i[order].astype(np.int64),
        "action": pd.Categorical.from_codes(a[order], categories=list(LOGGED_ACTIONS)),
        "timestamp": t[order],
        "weight": np.ones(len(u), dtype=np.float32),
    })
    del u, i, a, t, order, log
    src = np.concatenate([fa, fb]).astype(np.int64)
    dst = np.concatenate([fb, fa]).astype(np.int64)
    eorder = np.lexsort((dst, src))
    social = pd.DataFrame({"src": src[eorder], "dst": dst[eorder]})
    inter = validate(frame, social=social, source=f"simulate(seed={cfg.seed})")
    inter.notes.update({"simulated": True, "seed": int(cfg.seed)})
    del frame
    if imps is not None:
        inter = _with_impressions(inter, imps)
        del imps
    return Simulation(interactions=inter, config=cfg, user_interest=interest, user_community=community,
                      user_activity=activity, item_topic=topic, item_author=author.astype(np.int64),
                      item_popularity=popularity, item_created=created, stats=stats)


# ----------------------------------------------------------------------------- helpers

def _with_impressions(inter: Interactions, imps) -> Interactions:
    """Merge impression rows (user, item, ts) into a validated, time-sorted log.

    The rows are made here with the log's own dtypes and timestamps inside the period, so only the
    logged actions go through :func:`validate` (its string normalisation of ``action`` would cost
    seconds on millions of impression rows). An impression sorts before a logged row with the same
    timestamp, and dropping the impression rows gives back the log without them, row for row.
    """
    f = inter.frame
    iu, ii, it = imps
    m = len(it)
    o = np.argsort(it, kind="stable")
    t = np.concatenate([it[o], f["timestamp"].to_numpy()])
    order = np.argsort(t, kind="stable")  # two sorted runs: a cheap merge
    cols = {"timestamp": t[order]}
    del t
    for name, x in (("user", iu), ("item", ii)):   # one column at a time bounds the temporaries
        col = np.empty(len(order), dtype=np.int64)
        col[:m] = x[o]
        col[m:] = f[name].to_numpy()
        cols[name] = col[order]
        del col
    cats = [str(a) for a in f["action"].cat.categories] + [EXPOSURE]
    codes = np.concatenate([np.full(m, len(cats) - 1, dtype=np.int8),
                            f["action"].cat.codes.to_numpy().astype(np.int8)])[order]
    del order, o
    frame = pd.DataFrame({"user": cols["user"], "item": cols["item"],
                          "action": pd.Categorical.from_codes(codes, categories=cats),
                          "timestamp": cols["timestamp"], "weight": np.ones(len(codes), dtype=np.float32)},
                         copy=False)   # fresh arrays: no need to copy (or consolidate) them
    return replace(inter, frame=frame, notes={**inter.notes, "impressions": m})


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _lognormal_mean1(rng: np.random.Generator, sigma: float, n: int) -> np.ndarray:
    x = rng.lognormal(0.0, float(sigma), size=n)
    return (x / x.mean()).astype(np.float32)


def _pick(cum: np.ndarray, x: np.ndarray, lo=None, hi=None) -> np.ndarray:
    """Index ``j`` with ``cum[j] <= x < cum[j+1]`` (``cum`` starts at 0); zero-width slots never win."""
    j = np.searchsorted(cum, x, side="right") - 1
    if lo is None:
        return np.clip(j, 0, len(cum) - 2)
    return np.clip(j, lo, hi - 1)


def _interests(rng, profile, community, concentration):
    """(n_users, n_topics) float32 interests ``theta_u ~ Dirichlet(concentration * profile[c_u] + floor)``
    (``profile``: (n_communities, n_topics) rows summing to 1; ``community``: (n_users,) ints)."""
    interest = np.empty((len(community), profile.shape[1]), dtype=np.float32)
    for lo in range(0, len(community), _CHUNK):
        hi = min(len(community), lo + _CHUNK)
        alpha = concentration * profile[community[lo:hi]] + _INTEREST_FLOOR
        g = rng.standard_gamma(alpha) + 1e-30
        interest[lo:hi] = g / g.sum(axis=1, keepdims=True)
    return interest


def _friend_graph(rng, community, sociability, n_comm, mean_friends, homophily):
    """Undirected Chung-Lu graph with homophily; returns (a, b) int32 with a < b, no repeats.

    Within-community and between-community edges are drawn (and topped up after dropping
    self-loops and repeats) separately, so the within share is ``homophily`` up to rounding.
    """
    n = len(community)
    m = int(round(n * mean_friends / 2))
    order = np.argsort(community, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(community, minlength=n_comm))])
    cum = np.concatenate([[0.0], np.cumsum(sociability[order], dtype=np.float64)])
    total = cum[-1]
    single = n_comm == 1 or np.count_nonzero(bounds[1:] - bounds[:-1]) == 1
    m_in = m if single else int(round(m * homophily))
    groups = []
    for inside, target in ((True, m_in), (False, m - m_in)):
        keys = np.empty(0, dtype=np.int64)
        for _ in range(8):  # top up what self-loops and repeats removed
            need = target - len(keys)
            if need <= 0:
                break
            k = int(need * 1.25) + 16
            a = order[_pick(cum, rng.random(k) * total)]
            ca = community[a]
            lo, hi = cum[bounds[ca]], cum[bounds[ca + 1]]
            w_in = hi - lo
            r = rng.random(k)
            if inside:
                x = lo + r * w_in
            else:
                x = r * (total - w_in)
                x = np.where(x >= lo, x + w_in, x)   # skip over one's own community's block
            b = order[_pick(cum, x)]
            ok = (a != b) & (community[b] == ca if inside else community[b] != ca)
            a, b = a[ok].astype(np.int64), b[ok].astype(np.int64)
            keys = _unique(np.concatenate([keys, np.minimum(a, b) * n + np.maximum(a, b)]))
        if len(keys) > target:
            keys = rng.choice(keys, size=target, replace=False)
        groups.append(keys)
    keys = np.sort(np.concatenate(groups))
    return (keys // n).astype(np.int32), (keys % n).astype(np.int32)


def _draw_organic(rng, counts, interest, focus, cum, mass, tb, item_order):
    """``counts[u]`` feed impressions per user: topic ~ interest ** focus x topic mass, then an item
    of that topic ~ its weight (``cum``: cumulative weights of items sorted by topic, ``tb``: topic
    bounds in that order). Chunks of users bound the (users x topics) temporaries."""
    n_users, n_topics = interest.shape
    us, its = [np.empty(0, np.int32)], [np.empty(0, np.int32)]
    if mass.sum() <= 0:
        return us[0], its[0]
    for lo in range(0, n_users, _CHUNK):
        hi = min(n_users, lo + _CHUNK)
        cnt = counts[lo:hi]
        if not cnt.any():
            continue
        m = interest[lo:hi].astype(np.float64) ** focus * mass
        cdf = np.cumsum(m / m.sum(axis=1, keepdims=True), axis=1)
        cdf[:, -1] = 1.0
        rows = np.repeat(np.arange(hi - lo, dtype=np.int64), cnt)
        flat = (cdf + np.arange(hi - lo)[:, None]).ravel()
        t = np.searchsorted(flat, rows + rng.random(len(rows)), side="right") - rows * n_topics
        t = np.clip(t, 0, n_topics - 1)
        del flat, cdf, m
        x = cum[tb[t]] + rng.random(len(rows)) * mass[t]
        pos = _pick(cum, x, tb[t], tb[t + 1])
        us.append((rows + lo).astype(np.int32))
        its.append(item_order[pos].astype(np.int32))
    return np.concatenate(us), np.concatenate(its)


def _draw_social(rng, counts, S, scum):
    """``counts[u]`` items per user from row ``u`` of ``S`` (friends' engagement counts) ~ the count."""
    if S is None or not counts.any():
        return np.empty(0, np.int32), np.empty(0, np.int32)
    su = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    p0, p1 = S.indptr[su], S.indptr[su + 1]
    x = scum[p0] + rng.random(len(su)) * (scum[p1] - scum[p0])
    pos = _pick(scum, x, p0, p1)
    return su.astype(np.int32), S.indices[pos].astype(np.int32)


def _calibrate(score: np.ndarray, rate: float) -> float:
    """``c`` such that ``mean(min(c * score, P_MAX)) == rate`` (on a strided subsample)."""
    if rate <= 0 or len(score) == 0:
        return 0.0
    s = score[:: max(1, len(score) // _CALIB_SAMPLE)].astype(np.float64)
    mean = s.mean()
    if mean <= 0:
        return 0.0
    lo, hi = 0.0, rate / mean
    for _ in range(60):
        if np.minimum(hi * s, _P_MAX).mean() >= rate:
            break
        lo, hi = hi, hi * 2
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if np.minimum(mid * s, _P_MAX).mean() < rate:
            lo = mid
        else:
            hi = mid
    return hi


def _in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    j = np.searchsorted(sorted_keys, keys)
    j = np.minimum(j, len(sorted_keys) - 1)
    return sorted_keys[j] == keys


def _run_feed(rng, cfg, interest, activity, fa, fb, author, topic, popularity, created, irng=None):
    """Rounds of impressions -> funnel; returns the log (user, item, action code, ts), the realised
    impressions (user, item, ts; None unless ``irng`` is given: it draws their timestamps, so the
    main ``rng`` stream is the same with and without them) and counts, including the per-window
    calibration constants the ground truth (:meth:`Simulation.propensity`) needs."""
    n_users, n_items, n_topics = interest.shape[0], len(topic), interest.shape[1]
    start, end = int(cfg.start), cfg.end
    edges = start + np.round(np.linspace(0, end - start, int(cfg.rounds) + 1)).astype(np.int64)
    item_order = np.argsort(topic, kind="stable")
    tb = np.concatenate([[0], np.cumsum(np.bincount(topic, minlength=n_topics))])
    social_on = (cfg.friend_influence > 0 or cfg.social_feed_share > 0) and len(fa) > 0
    friends = None
    if social_on:
        friends = sp.csr_matrix((np.ones(2 * len(fa), dtype=np.float32),
                                 (np.concatenate([fa, fb]), np.concatenate([fb, fa]))),
                                shape=(n_users, n_users))
    focus = float(cfg.interest_focus)
    eff = float(cfg.affinity_effect)
    rates = (float(cfg.view_rate), float(cfg.like_rate), float(cfg.comment_rate), float(cfg.share_rate))
    seen = np.empty(0, dtype=np.int64)             # sorted keys user * n_items + item already viewed
    eng_u, eng_i = [], []                          # engagements (like/comment/share) so far
    out_u, out_i, out_a, out_t = [], [], [], []
    imp_u, imp_i, imp_t = [], [], []               # realised impressions (only with irng)
    n_imp = n_soc_imp = 0
    calib = {"edges": [int(e) for e in edges], "impressions": [0] * int(cfg.rounds),
             **{a: [0.0] * int(cfg.rounds) for a in LOGGED_ACTIONS}}

    for r in range(int(cfg.rounds)):
        w0, w1 = int(edges[r]), int(edges[r + 1])
        if w1 <= w0:
            continue
        share = (w1 - w0) / (end - start)
        n_r = rng.poisson(cfg.exposures_per_user * share * activity.astype(np.float64)).astype(np.int64)

        # friends' engagement before this window: S = friends @ engaged  (users x items counts)
        S = None
        if social_on and r > 0:
            old = created < w0
            eu = np.concatenate(eng_u + [author[old].astype(np.int32)])
            ei = np.concatenate(eng_i + [np.flatnonzero(old).astype(np.int32)])
            E = sp.csr_matrix((np.ones(len(eu), dtype=np.float32), (eu, ei)), shape=(n_users, n_items))
            E.sum_duplicates()
            E.data[:] = 1.0
            S = (friends @ E).tocsr()
            S.sum_duplicates()
            S.sort_indices()
            del E, eu, ei
            if S.nnz == 0:
                S = None
        n_soc = np.zeros(n_users, dtype=np.int64)
        if S is not None and cfg.social_feed_share > 0:
            has = np.diff(S.indptr) > 0
            n_soc[has] = rng.binomial(n_r[has], float(cfg.social_feed_share))
        n_org = n_r - n_soc

        # impressions: organic (interest x popularity x freshness) and social (friends' engagements);
        # own posts, already viewed items and repeats are dropped and redrawn a few times
        w = popularity.astype(np.float64) * np.exp(
            -np.maximum(0, 0.5 * (w0 + w1) - created) / (cfg.item_lifetime_days * _DAY))
        w[created >= w1] = 0.0
        cum = np.concatenate([[0.0], np.cumsum(w[item_order])])
        mass = cum[tb[1:]] - cum[tb[:-1]]
        del w
        scum = None if S is None else np.concatenate([[0.0], np.cumsum(S.data, dtype=np.float64)])
        got_u, got_i, got_s = [], [], []
        got_key = np.empty(0, dtype=np.int64)
        for _ in range(_REDRAWS):
            ou, oi = _draw_organic(rng, n_org, interest, focus, cum, mass, tb, item_order)
            su, si = _draw_social(rng, n_soc, S, scum)
            iu = np.concatenate([ou, su])
            ii = np.concatenate([oi, si])
            soc = np.concatenate([np.zeros(len(ou), dtype=bool), np.ones(len(su), dtype=bool)])
            del ou, oi, su, si
            key = iu.astype(np.int64) * n_items + ii
            keep = (author[ii] != iu) & ~_in_sorted(seen, key) & ~_in_sorted(got_key, key)
            key, first = _unique(key[keep], return_index=True)
            iu, ii, soc = iu[keep][first], ii[keep][first], soc[keep][first]
            got_u.append(iu); got_i.append(ii); got_s.append(soc)
            got_key = np.sort(np.concatenate([got_key, key]), kind="stable")
            n_org = n_org - np.bincount(iu[~soc], minlength=n_users)
            n_soc = n_soc - np.bincount(iu[soc], minlength=n_users)
            if not n_org.any() and not n_soc.any():
                break
        del got_key, scum, cum
        iu, ii, soc = np.concatenate(got_u), np.concatenate(got_i), np.concatenate(got_s)
        del got_u, got_i, got_s
        if len(iu) == 0:
            continue
        key = iu.astype(np.int64) * n_items + ii
        n_imp += len(iu)
        n_soc_imp += int(soc.sum())
        del soc

        # funnel
        score = (n_topics * interest[iu, topic[ii]]) ** eff
        boost = None
        if S is not None and cfg.friend_influence > 0:
            skey = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(S.indptr)) * n_items + S.indices
            j = np.minimum(np.searchsorted(skey, key), len(skey) - 1)
            k = np.where(skey[j] == key, S.data[j], 0.0).astype(np.float32)
            boost = 1.0 + float(cfg.friend_influence) * np.log2(1.0 + k)
            del skey, j, k
        c = _calibrate(score, rates[0])
        calib["impressions"][r] = len(iu)
        calib["view"][r] = float(c)
        p = c * score if boost is None else c * score * boost
        v = rng.random(len(iu)) < np.minimum(p, _P_MAX)
        vu, vi, vs = iu[v], ii[v], score[v]
        vb = None if boost is None else boost[v]
        seen = np.sort(np.concatenate([seen, key[v]]), kind="stable")
        if irng is not None:
            imp_u.append(iu); imp_i.append(ii)
        else:
            del iu, ii
        del score, boost, key, p
        lo_t = np.maximum(created[vi], w0)
        t_view = lo_t + (rng.random(len(vu)) * (w1 - lo_t)).astype(np.int64)
        if irng is not None:
            # shown just before the view (a few seconds, never before the window or the post), or,
            # for an impression without a view, uniformly in the window after the post's creation
            ti = np.empty(len(v), dtype=np.int64)
            gap = np.ceil(irng.exponential(_IMPRESSION_LEAD, len(vu))).astype(np.int64)
            ti[v] = t_view - np.minimum(gap, t_view - lo_t)
            lo_n = np.maximum(created[imp_i[-1][~v]], w0)
            ti[~v] = lo_n + (irng.random(len(lo_n)) * (w1 - lo_n)).astype(np.int64)
            imp_t.append(ti)
            del ti, gap, lo_n
        del v
        out_u.append(vu); out_i.append(vi)
        out_a.append(np.zeros(len(vu), dtype=np.int8)); out_t.append(t_view)
        t_prev = t_view
        engaged = np.zeros(len(vu), dtype=bool)
        for stage in (1, 2, 3):
            t_prev = t_prev + np.ceil(rng.exponential(_DELAYS[stage - 1], len(vu))).astype(np.int64)
            c = _calibrate(vs, rates[stage])
            calib[LOGGED_ACTIONS[stage]][r] = float(c)
            if c <= 0:
                continue
            p = c * vs if vb is None else c * vs * vb
            hit = rng.random(len(vu)) < np.minimum(p, _P_MAX)
            engaged |= hit
            out_u.append(vu[hit]); out_i.append(vi[hit])
            out_a.append(np.full(int(hit.sum()), stage, dtype=np.int8))
            out_t.append(np.minimum(t_prev[hit], end - 1))
        eng_u.append(vu[engaged]); eng_i.append(vi[engaged])

    if out_u:
        log = (np.concatenate(out_u), np.concatenate(out_i), np.concatenate(out_a), np.concatenate(out_t))
    else:
        log = (np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int8), np.empty(0, np.int64))
    imps = None
    if irng is not None:
        imps = ((np.concatenate(imp_u), np.concatenate(imp_i), np.concatenate(imp_t)) if imp_u else
                (np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int64)))
    return log, imps, {"impressions": n_imp, "social_impressions": n_soc_imp, "friend_edges": len(fa),
                       "calibration": calib}
