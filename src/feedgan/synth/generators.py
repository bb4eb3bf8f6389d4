"""Generators of whole synthetic users: fit on real train users, sample new ones.

Every generator follows one contract::

    gen = GENERATORS["vae"](epochs=50).fit(train, seed=0)   # train: Profiles (real train users)
    synth = gen.sample(10_000, seed=1)                         # Profiles: users "synth-0000001", ...
    gen.save("runs/x/generator"); same = Generator.load("runs/x/generator")   # JSON + safetensors

A sample has the train catalogue (the same ``items``, in the same columns) and the same actions;
``times`` when the train users had timestamps; ``friends`` among the sampled users when they had a
friend graph. Everything random comes from ``seed`` (numpy ``default_rng`` and a CPU
``torch.Generator``), so a fitted generator, or its saved copy, gives the same users for the same seed.

The generators
--------------
* ``copy``: resamples real train users under new ids (rows and times unchanged): every train user
  once per ``n_train`` sampled (a random order, the remainder without replacement); the ``c``-th copy
  of a user is friends with the ``c``-th copies of their real friends. The privacy control: every
  privacy test must catch it.
* ``independent``: the floor. A user's events per action are one real train user's counts (drawn
  at random); the items of each action are drawn without replacement by that action's item popularity,
  independently of each other and of the other actions.
* ``vae``: Mult-VAE (:class:`feedgan.rec.multvae.MultVAE`, its network and training) on the union of
  the actions; a user is a code ``z`` drawn from a Gaussian fitted to the train users' codes (their
  aggregate posterior's mean and covariance: no real user's own code is reused; ``prior="standard"``
  takes ``N(0, I)``), decoded to item probabilities, from which ``k`` items are drawn without
  replacement, ``k`` a real train user's activity. With ``dp_epsilon`` the network is trained with
  DP-SGD and the prior is ``N(0, I)`` (see :class:`VAEGenerator` for what the guarantee covers).
* ``gan``: the ``vae`` sampler with a GAN-learned prior (see :mod:`feedgan.synth.gan`): the same
  Mult-VAE, and codes from a generator that maps noise and the user's activity bucket to a code,
  trained against draws of the train users' posteriors; decoded and drawn as in ``vae``.
* ``simulator``: :mod:`feedgan.data.simulate`'s model fitted to the train users (see
  :class:`SimulatorGenerator`): item topics are clusters of the real items, communities and their topic
  interests are fitted, and a user's ``k`` items come from the simulator's organic feed (topic by
  interest, item by real popularity); friends from the simulator's friend graph with homophily.

``vae``, ``gan`` and ``simulator`` make a user's *union* profile (the items touched); the actions on each
touched item are then drawn from the train funnel: action ``a`` with probability
``P(a | item touched) = (n_ia + m * g_a) / (n_i + m)`` (``n_i`` train users touched item ``i``, ``n_ia``
of them did ``a``, ``g_a`` the global share, ``m`` = ``smoothing``), independently per action; a pair
that drew none gets the item's most likely action. Per-user action habits are not modelled.

Timestamps (when train has them): users are put in ``TIME_BUCKETS`` buckets by activity (quantiles
of the train users'), so a heavy user gets a heavy user's rhythm. A user's first event time is drawn
from the first event times of the train users in their bucket; their touched items come in random
order, the gap from one item's first event to the next is drawn from the gaps of that bucket's train
users, and action ``a`` on an item happens a real offset (pooled per action) after that item's first
event. A timeline longer than the log's period is compressed to fit, and a user's start is moved so
the timeline ends inside the period. Friends (when train has them; ``simulator`` draws its own):
each user's degree is a real train user's degree (at most ``n - 1``), and the edges are a plain
configuration model among the sampled users (stubs paired at random; self-loops and repeats dropped),
so degrees match and who befriends whom carries no signal.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.numpy import save_file

from ..data.schema import TS_MAX, TS_MIN, DataError
from ..io import ArtifactError, atomic_path, read_json, read_safetensors, write_json
from ..params import check_params
from .profiles import Profiles

FORMAT = "feedgan-synth-generator"
POOL_MAX = 200_000  # time gaps / offsets kept from train (a random subset beyond this)
TIME_BUCKETS = 8  # activity buckets of the time pools: a heavy user gets a heavy user's rhythm
CHUNK = 4096  # users per decoded batch when sampling (CHUNK x n_items floats at a time)


def synth_ids(n: int) -> np.ndarray:
    """(n,) ids ``synth-0000001`` ... (object array of str)."""
    return np.array([f"synth-{i:07d}" for i in range(1, n + 1)], dtype=object)


def top_k_rows(logits: torch.Tensor, k: np.ndarray, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per row ``r`` of ``logits`` (B, I), ``k[r]`` distinct items drawn without replacement with
    probabilities ``softmax(logits[r])`` (Gumbel top-k). Returns CSR ``indptr`` (B + 1,), ``indices``.
    Items with logit ``-inf`` are never drawn: ``k`` must not exceed the finite ones."""
    k = np.asarray(k, dtype=np.int64)
    indptr = np.r_[0, np.cumsum(k)]
    if logits.shape[0] == 0 or k.max(initial=0) == 0:
        return indptr, np.zeros(0, dtype=np.int64)
    noise = torch.empty(logits.shape).exponential_(generator=gen).clamp_min_(1e-30)  # (B, I) Exp(1)
    keys = logits.float().cpu() - noise.log()  # + Gumbel(0, 1)
    top = torch.topk(keys, int(k.max()), dim=1).indices.numpy()  # (B, k_max), best first
    keep = np.arange(top.shape[1])[None, :] < k[:, None]
    return indptr, top[keep]


def weighted_rows(weights: np.ndarray, k: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per user ``r``, ``k[r]`` distinct items drawn without replacement with probabilities
    proportional to ``weights`` (I,), shared by every user. Returns CSR ``indptr``, ``indices``
    (see :func:`distinct_rows`)."""
    cdf = np.cumsum(weights, dtype=np.float64)
    n_items = len(weights)

    def draw(users, m):
        return np.minimum(np.searchsorted(cdf, rng.random(int(m.sum())) * cdf[-1], side="right"), n_items - 1)

    def logits(users):
        with np.errstate(divide="ignore"):  # log 0 = -inf: never drawn
            return torch.from_numpy(np.log(weights.astype(np.float32))).expand(len(users), -1)

    k = np.minimum(np.asarray(k, dtype=np.int64), int((weights > 0).sum()))
    return distinct_rows(k, n_items, draw, logits, rng)


def distinct_rows(k: np.ndarray, n_items: int, draw, logits, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per user ``r``, ``k[r]`` distinct items drawn without replacement from the user's own item
    distribution. Returns CSR ``indptr`` (n + 1,), ``indices``.

    ``draw(users, m)`` returns ``m.sum()`` i.i.d. items, ``m[j]`` for ``users[j]`` in turn (users
    ascending); ``logits(users)`` the (len(users), I) log-probabilities of the same distributions.
    A user's items are the first ``k[r]`` distinct ones of their i.i.d. sequence, which is exactly
    successive sampling without replacement; the sequence of a user still short of ``k[r]`` distinct
    items is extended (4x longer each round). Cost ~ O(k log I) per user instead of O(I) for Gumbel
    top-k (which takes over for a user whose sequence would pass 16 x I draws: nearly the whole
    support, rare items among it). ``k`` must not exceed a user's support."""
    k = np.asarray(k, dtype=np.int64)
    n = len(k)
    chosen = [np.zeros(0, dtype=np.int64)] * n
    todo = np.flatnonzero(k > 0)
    owner, draws = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)  # the sequences so far, by user
    m = 2 * k + 8  # draws added per user this round
    while len(todo):
        extra = np.repeat(todo, m[todo])
        new = np.asarray(draw(todo, m[todo]), dtype=np.int64)
        owner, draws = np.concatenate([owner, extra]), np.concatenate([draws, new])
        order = np.argsort(owner, kind="stable")  # each user's sequence, in draw order
        owner, draws = owner[order], draws[order]
        _, first = np.unique(owner * n_items + draws, return_index=True)
        first.sort()  # first occurrences, by user then draw order
        u, item = owner[first], draws[first]
        start = np.searchsorted(u, todo)
        have = np.searchsorted(u, todo, side="right") - start
        done = have >= k[todo]
        for r, s0 in zip(todo[done], start[done]):
            chosen[r] = item[s0:s0 + k[r]]
        keep = np.isin(owner, todo[~done])
        owner, draws, todo = owner[keep], draws[keep], todo[~done]
        m = m * 4
        slow = todo[m[todo] > 16 * n_items]  # nearly the whole support, rare items among it: top-k is cheaper
        if len(slow):
            ip, idx = top_k_rows(logits(slow), k[slow], torch.Generator().manual_seed(int(rng.integers(2**62))))
            for j, r in enumerate(slow):
                chosen[r] = idx[ip[j]:ip[j + 1]]
            todo = todo[m[todo] <= 16 * n_items]
            keep = np.isin(owner, todo)
            owner, draws = owner[keep], draws[keep]
    lengths = np.array([len(c) for c in chosen], dtype=np.int64)
    return np.r_[0, np.cumsum(lengths)], np.concatenate(chosen) if n else np.zeros(0, dtype=np.int64)


def _csr(indptr: np.ndarray, indices: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary float32 CSR from row pointers and column indices (no repeats within a row)."""
    m = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=shape)
    m.sort_indices()
    return m


def _pool(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """At most POOL_MAX of ``values`` (int64), a random subset when there are more."""
    values = np.asarray(values, dtype=np.int64)
    return values if len(values) <= POOL_MAX else rng.choice(values, POOL_MAX, replace=False)


def _draw(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return pool[rng.integers(len(pool), size=n)] if len(pool) else np.zeros(n, dtype=np.int64)


def _bucketed(name: str, values: np.ndarray, bucket: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A pool of ``values`` sorted by ``bucket`` (at most POOL_MAX, a random subset beyond), as
    ``{name: values, name.at: (TIME_BUCKETS + 1,) where each bucket starts}``."""
    keep = np.arange(len(values)) if len(values) <= POOL_MAX else rng.choice(len(values), POOL_MAX, replace=False)
    order = keep[np.argsort(bucket[keep], kind="stable")]
    at = np.searchsorted(bucket[order], np.arange(TIME_BUCKETS + 1))
    return {name: values[order].astype(np.int64), f"{name}.at": at.astype(np.int64)}


def _draw_bucketed(pool: dict, name: str, bucket: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(len(bucket),) one value per entry, from the pool of its bucket (the whole pool when that is empty)."""
    values, at = pool[name], pool[f"{name}.at"]
    if len(values) == 0:
        return np.zeros(len(bucket), dtype=np.int64)
    lo, size = at[bucket], at[bucket + 1] - at[bucket]
    lo, size = np.where(size > 0, lo, 0), np.where(size > 0, size, len(values))
    return values[lo + (rng.random(len(bucket)) * size).astype(np.int64)]


class Generator:
    """Base class: fit on train :class:`Profiles`, sample new users (see the module docstring).

    Subclasses set ``name``, take their hyperparameters in the constructor (stored as given: the
    saved copy is rebuilt from them) and implement ``_fit_model(train, seed, progress)``,
    ``_draw_actions(n, rng, gen)`` and ``_state()`` / ``_set_state(arrays)``. What every generator
    learns from train (catalogue, activity, funnel, time and degree pools) is fitted here.
    """

    name: ClassVar[str] = "generator"
    smoothing: float = 5.0  # funnel smoothing toward the global action rates (a pseudo-count of users)
    dp_: dict | None = None  # the differential-privacy budget spent by fit (None: not trained with DP)

    def get_params(self) -> dict:
        sig = inspect.signature(type(self).__init__)
        return {name: getattr(self, name) for name, p in sig.parameters.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, train: Profiles, *, seed: int = 0, progress=None) -> "Generator":
        """Learn from the real train users ``train``; returns ``self``."""
        if train.n_users == 0 or train.union().nnz == 0:
            raise DataError(f"{self.name}: cannot fit a generator on no interactions",
                            fix="give it train users with at least one interaction")
        rng = np.random.default_rng(seed)
        self.items_, self.actions_ = train.items, train.action_names
        self.counts_ = np.stack([train.actions[a].getnnz(1) for a in self.actions_], 1).astype(np.int64)  # (U, A)
        union = train.union()
        self.activity_ = union.getnnz(1).astype(np.int64)  # (U,) items touched per user
        self.activity_ = self.activity_[self.activity_ > 0]
        self.funnel_ = self._funnel(train, union)
        self._fit_times(train, rng)
        self.degrees_ = None if train.friends is None else train.friends.getnnz(1).astype(np.int64)
        self._fit_model(train, seed, progress)
        return self

    def _fit_model(self, train: Profiles, seed: int, progress) -> None:
        """What the subclass learns beyond the shared pieces."""

    def _funnel(self, train: Profiles, union: sp.csr_matrix) -> np.ndarray:
        """(n_items, n_actions) smoothed P(action | item touched), see the module docstring."""
        touched = np.asarray(union.sum(0)).ravel()  # (I,) n_i
        did = np.stack([np.asarray(train.actions[a].sum(0)).ravel() for a in self.actions_], 1)  # (I, A) n_ia
        share = did.sum(0) / max(touched.sum(), 1.0)  # (A,) g_a
        m = float(self.smoothing)
        return ((did + m * share) / (touched[:, None] + m)).astype(np.float32)

    def _fit_times(self, train: Profiles, rng: np.random.Generator) -> None:
        """Pools of first-event times and item-to-item gaps (by activity bucket), per-action offsets,
        and the log's period (module docstring)."""
        self.times_ = None
        if train.times is None:
            return
        n_items = train.n_items
        events = [(a, train.times[a].tocoo()) for a in self.actions_]  # (user, item, t) per action
        key = np.concatenate([c.row.astype(np.int64) * n_items + c.col for _, c in events])
        t = np.concatenate([c.data for _, c in events]).astype(np.int64)
        order = np.argsort(key, kind="stable")
        key_s, t_s = key[order], t[order]
        pair = np.flatnonzero(np.r_[True, key_s[1:] != key_s[:-1]])  # one (user, item) each
        first_key, first_t = key_s[pair], np.minimum.reduceat(t_s, pair)  # its first event time
        user = first_key // n_items
        by = np.lexsort((first_t, user))  # each user's items in time order
        user, t_u = user[by], first_t[by]
        new_user = np.r_[True, user[1:] != user[:-1]]
        k_u = np.diff(np.r_[np.flatnonzero(new_user), len(user)])  # items per user with times
        edges = np.quantile(k_u, np.linspace(0, 1, TIME_BUCKETS + 1)[1:-1])
        bucket = np.repeat(np.searchsorted(edges, k_u, side="right"), k_u)  # (pairs,) the user's bucket
        self.times_ = {"edges": edges.astype(np.float64), "period": np.array([t.min(), t.max()], dtype=np.int64),
                       **_bucketed("starts", t_u[new_user], bucket[new_user], rng),
                       **_bucketed("gaps", np.diff(t_u)[~new_user[1:]], bucket[1:][~new_user[1:]], rng)}
        for j, (a, c) in enumerate(events):
            k = c.row.astype(np.int64) * n_items + c.col
            self.times_[f"offsets.{j}"] = _pool(c.data.astype(np.int64) - first_t[np.searchsorted(first_key, k)], rng)

    # -- sampling ---------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "items_"):
            raise RuntimeError(f"{self.name}: call fit (or load) before sample or save")

    def _check_sample(self, n) -> int:
        """``n`` as an int, once the generator is fitted and ``n`` is a positive integer."""
        self._check_fitted()
        if int(n) != n or n < 1:
            raise ValueError(f"{self.name}: the number of users to sample must be a positive integer, got {n!r}")
        return int(n)

    def sample(self, n: int, *, seed: int = 0) -> Profiles:
        """``n`` new users over the train catalogue (see the module docstring)."""
        n = self._check_sample(n)
        rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(int(seed))
        actions = self._draw_actions(n, rng, gen)
        times = self._draw_times(actions, rng) if self.times_ is not None else None
        friends = self._draw_friends(n, rng) if self.degrees_ is not None else None
        return Profiles(synth_ids(n), self.items_, actions, times, friends)

    def _draw_actions(self, n: int, rng: np.random.Generator, gen: torch.Generator) -> dict[str, sp.csr_matrix]:
        raise NotImplementedError

    def _draw_activity(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n,) items touched per user, resampled from the train users' activity."""
        k = _draw(self.activity_, n, rng)
        return np.minimum(k, len(self.items_))

    def _assign_actions(self, union: sp.csr_matrix, rng: np.random.Generator) -> dict[str, sp.csr_matrix]:
        """Actions on each touched (user, item) of ``union`` from the funnel (module docstring)."""
        p = self.funnel_[union.indices]  # (nnz, A)
        did = rng.random(p.shape) < p
        none = ~did.any(1)
        did[np.flatnonzero(none), p[none].argmax(1)] = True  # every touched pair keeps one action
        rows = np.repeat(np.arange(union.shape[0]), np.diff(union.indptr))
        out = {}
        for j, a in enumerate(self.actions_):
            m = sp.csr_matrix((np.ones(did[:, j].sum(), dtype=np.float32), (rows[did[:, j]], union.indices[did[:, j]])),
                              shape=union.shape)
            m.sort_indices()
            out[a] = m
        return out

    def _draw_times(self, actions: dict[str, sp.csr_matrix], rng: np.random.Generator) -> dict[str, sp.csr_matrix]:
        """Timestamps on the same pattern as ``actions`` (module docstring)."""
        tm = self.times_
        union = sum(actions.values()).tocsr()  # (n, I); every touched pair once
        union.sort_indices()
        n, n_items = union.shape
        k = np.diff(union.indptr)  # (n,) items per user
        rows = np.repeat(np.arange(n), k)  # (nnz,)
        bucket = np.searchsorted(tm["edges"], k, side="right")  # (n,) activity bucket
        gaps = _draw_bucketed(tm, "gaps", bucket[rows], rng)  # (nnz,)
        gaps[union.indptr[:-1][k > 0]] = 0  # a user's first item starts the clock
        elapsed = np.cumsum(gaps)
        elapsed -= np.repeat(elapsed[union.indptr[:-1][k > 0]], k[k > 0])  # running sum within each user
        span = np.zeros(n, dtype=np.int64)
        span[k > 0] = elapsed[union.indptr[1:][k > 0] - 1]
        t_min, t_max = tm["period"]
        squeeze = np.minimum(1.0, (t_max - t_min) / np.maximum(span, 1))  # (n,) a longer timeline is compressed
        elapsed = (elapsed * squeeze[rows]).astype(np.int64)
        span = (span * squeeze).astype(np.int64)
        start = np.clip(_draw_bucketed(tm, "starts", bucket, rng), t_min, t_max - span)  # it ends inside the period
        order = np.lexsort((rng.random(len(rows)), rows))  # each user's items in a random order
        first = np.empty(len(rows), dtype=np.int64)
        first[order] = np.repeat(start, k) + elapsed
        key = rows.astype(np.int64) * n_items + union.indices  # sorted: CSR order
        out = {}
        for j, (a, m) in enumerate(actions.items()):
            r = np.repeat(np.arange(n), np.diff(m.indptr)).astype(np.int64)
            t = first[np.searchsorted(key, r * n_items + m.indices)]
            t = np.clip(t + _draw(tm[f"offsets.{self.actions_.index(a)}"], m.nnz, rng), TS_MIN, TS_MAX - 1)
            out[a] = sp.csr_matrix((t.astype(np.float64), m.indices.copy(), m.indptr.copy()), shape=m.shape)
        return out

    def _draw_friends(self, n: int, rng: np.random.Generator) -> sp.csr_matrix:
        """(n, n) symmetric binary: a configuration model on degrees resampled from train."""
        deg = np.minimum(_draw(self.degrees_, n, rng), n - 1)
        stubs = rng.permutation(np.repeat(np.arange(n), deg))
        stubs = stubs[: len(stubs) // 2 * 2].reshape(-1, 2)
        stubs = stubs[stubs[:, 0] != stubs[:, 1]]
        m = sp.coo_matrix((np.ones(len(stubs), dtype=np.float32), (stubs[:, 0], stubs[:, 1])), shape=(n, n))
        m = (m + m.T).tocsr()
        m.data[:] = 1.0
        return m

    # -- persistence: JSON + safetensors, never pickle --------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def save(self, path: str | Path) -> None:
        """Write the fitted generator to the folder ``path`` (``generator.json`` + ``arrays.safetensors``)."""
        self._check_fitted()
        path = Path(path)
        arrays = {"counts": self.counts_, "activity": self.activity_, "funnel": self.funnel_}
        if self.times_ is not None:
            arrays.update({f"times.{k}": v for k, v in self.times_.items()})
        if self.degrees_ is not None:
            arrays["degrees"] = self.degrees_
        arrays.update({f"model.{k}": v for k, v in self._state().items()})
        meta = {"format": FORMAT, "version": 1, "name": self.name, "params": self.get_params(),
                "items": self.items_.tolist(), "actions": self.actions_, "times": self.times_ is not None,
                "friends": self.degrees_ is not None}
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "arrays.safetensors") as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        write_json(path / "generator.json", meta)  # last: a folder with it is complete

    @classmethod
    def load(cls, path: str | Path) -> "Generator":
        """A generator written by :meth:`save` (any kind when called on :class:`Generator`)."""
        path = Path(path)
        meta = read_json(path / "generator.json", missing=f"{path}: no generator.json; is it a `synth fit` run?")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("name") not in GENERATORS:
            raise ArtifactError(path / "generator.json", "not a feedgan synthetic-user generator")
        kind = GENERATORS[meta["name"]]
        if cls is not Generator and kind is not cls:
            raise ArtifactError(path / "generator.json", f"holds a {meta['name']!r} generator, not {cls.name!r}",
                                fix=f"load it with Generator.load or {kind.__name__}.load")
        gen = kind(**check_params(kind, meta["params"], owner=kind.name))
        arrays = read_safetensors(path / "arrays.safetensors")
        items = meta["items"]
        gen.items_ = (np.array(items, dtype=np.int64) if all(isinstance(i, int) for i in items)
                      else np.array(items, dtype=object))
        gen.actions_ = list(meta["actions"])
        gen.counts_, gen.activity_, gen.funnel_ = arrays["counts"], arrays["activity"], arrays["funnel"]
        gen.times_ = {k[len("times."):]: v for k, v in arrays.items() if k.startswith("times.")} or None
        gen.degrees_ = arrays["degrees"] if meta["friends"] else None
        gen._set_state({k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")})
        return gen


class CopyGenerator(Generator):
    """Real train users under new ids: the privacy control (it must fail every privacy test)."""

    name = "copy"

    def _fit_model(self, train, seed, progress):
        self.train_ = train

    def sample(self, n: int, *, seed: int = 0) -> Profiles:
        n = self._check_sample(n)
        rng, n_real = np.random.default_rng(seed), self.train_.n_users
        tiles = [rng.permutation(n_real) for _ in range(n // n_real)]  # every user once per tile
        rows = np.concatenate([*tiles, rng.choice(n_real, n % n_real, replace=False)])
        picked = self.train_.subset(rows)
        picked.users, picked.notes = synth_ids(n), {}
        if picked.friends is not None:  # the c-th copy of a user befriends the c-th copies of their friends
            copy_no = _occurrence(rows)
            f = picked.friends.tocoo()
            same = copy_no[f.row] == copy_no[f.col]
            picked.friends = sp.csr_matrix((f.data[same], (f.row[same], f.col[same])), shape=f.shape)
        return picked

    def _state(self):
        t = self.train_
        out = {"n_users": np.array([t.n_users], dtype=np.int64)}
        for j, a in enumerate(self.actions_):
            m = t.actions[a].copy()
            m.sort_indices()
            out[f"{j}.indptr"], out[f"{j}.indices"] = m.indptr.astype(np.int64), m.indices.astype(np.int64)
            if t.times is not None:
                out[f"{j}.times"] = _aligned_times(m, t.times[a])
        if t.friends is not None:
            out["friends.indptr"] = t.friends.indptr.astype(np.int64)
            out["friends.indices"] = t.friends.indices.astype(np.int64)
        return out

    def _set_state(self, arrays):
        n = int(arrays["n_users"][0])
        shape = (n, len(self.items_))
        actions = {a: _csr(arrays[f"{j}.indptr"], arrays[f"{j}.indices"], shape) for j, a in enumerate(self.actions_)}
        times = None
        if "0.times" in arrays:
            times = {a: sp.csr_matrix((arrays[f"{j}.times"].astype(np.float64), actions[a].indices.copy(),
                                       actions[a].indptr.copy()), shape=shape) for j, a in enumerate(self.actions_)}
        friends = _csr(arrays["friends.indptr"], arrays["friends.indices"], (n, n)) if "friends.indptr" in arrays else None
        self.train_ = Profiles(np.arange(n), self.items_, actions, times, friends)


def _occurrence(rows: np.ndarray) -> np.ndarray:
    """(n,) how many times each entry's value occurred before it in ``rows`` (0 for the first)."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    start = np.r_[0, np.flatnonzero(sorted_rows[1:] != sorted_rows[:-1]) + 1]
    run = np.arange(len(rows)) - np.repeat(start, np.diff(np.r_[start, len(rows)]))
    out = np.empty(len(rows), dtype=np.int64)
    out[order] = run
    return out


def _aligned_times(m: sp.csr_matrix, times: sp.csr_matrix) -> np.ndarray:
    """(m.nnz,) the timestamps of ``times`` at the entries of ``m`` (same pattern), in ``m``'s order."""
    t = times.tocoo()
    n_items = m.shape[1]
    key = t.row.astype(np.int64) * n_items + t.col
    order = np.argsort(key)
    want = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)).astype(np.int64) * n_items + m.indices
    return t.data[order][np.searchsorted(key[order], want)].astype(np.int64)


class IndependentGenerator(Generator):
    """The floor: a real user's events per action, each action's items drawn by its popularity alone."""

    name = "independent"

    def _fit_model(self, train, seed, progress):
        self.popularity_ = np.stack([np.asarray(train.actions[a].sum(0)).ravel() for a in self.actions_]
                                    ).astype(np.float32)  # (A, I) train users per item and action

    def _draw_actions(self, n, rng, gen):
        rows = self.counts_[rng.integers(len(self.counts_), size=n)]  # (n, A) a real user's counts
        out = {}
        for j, a in enumerate(self.actions_):
            out[a] = _csr(*weighted_rows(self.popularity_[j], rows[:, j], rng), (n, len(self.items_)))
        return out

    def _state(self):
        return {"popularity": self.popularity_}

    def _set_state(self, arrays):
        self.popularity_ = arrays["popularity"]


def _histories(train: Profiles) -> sp.csr_matrix:
    """(users with a history, n_items) the train users' union profiles."""
    X = train.union()
    return X[X.getnnz(1) > 0]


def _aggregate_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (latent,) and lower Cholesky factor (latent, latent) of the aggregate posterior of codes
    with posterior means ``mu`` and log-variances ``logvar`` (n, latent): ``Cov(mu) + mean(diag sigma^2)``."""
    latent = mu.shape[1]
    cov = torch.cov(mu.T.double()).reshape(latent, latent) + torch.diag(logvar.exp().mean(0).double())
    chol = torch.linalg.cholesky(cov + 1e-6 * torch.eye(latent, dtype=torch.float64))
    return mu.mean(0).numpy().astype(np.float32), chol.float().numpy()


def _stack(parts: list[tuple[np.ndarray, np.ndarray]], n_items: int) -> sp.csr_matrix:
    """One CSR from consecutive row blocks given as (indptr, indices)."""
    indptr, indices, offset = [np.zeros(1, dtype=np.int64)], [], 0
    for p, idx in parts:
        indptr.append(p[1:] + offset)
        indices.append(idx)
        offset += p[-1]
    indptr = np.concatenate(indptr)
    return _csr(indptr, np.concatenate(indices) if indices else np.zeros(0, np.int64), (len(indptr) - 1, n_items))


class ProfileGenerator(Generator):
    """Generators of union profiles: ``k`` items per user from per-user item logits, then actions
    from the funnel. Subclasses implement ``_logits(n, gen) -> (n, n_items)`` (a torch tensor)
    or override ``_union``."""

    def _draw_actions(self, n, rng, gen):
        k = self._draw_activity(n, rng)
        return self._assign_actions(self._union(k, gen), rng)

    def _union(self, k: np.ndarray, gen: torch.Generator) -> sp.csr_matrix:
        parts = []
        for kk in np.array_split(k, max(1, len(k) // CHUNK)):
            with torch.inference_mode():
                parts.append(top_k_rows(self._logits(len(kk), kk, gen), kk, gen))
        return _stack(parts, len(self.items_))

    def _logits(self, n: int, k: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class VAEGenerator(ProfileGenerator):
    """Mult-VAE decoding codes drawn from a fitted Gaussian (see the module docstring).

    ``prior="aggregate"`` (the default without DP) draws ``z ~ N(m, S)``, the mean and covariance of
    the train users' aggregate posterior (``S = Cov(mu_u) + mean(diag sigma_u^2)``): two moments of
    the whole train set, no user's own code. ``prior="standard"`` draws ``z ~ N(0, I)``, which only
    matches the codes when the KL weight ``beta_max`` is near 1.

    Differential privacy: with ``dp_epsilon`` set, the network is trained with DP-SGD
    (:func:`feedgan.synth.dp.fit_private_vae`: Opacus, Poisson sampling with expected batch
    ``batch_size``, per-user gradients clipped to ``dp_max_grad_norm``, RDP accountant) to spend
    at most ``dp_epsilon`` at ``dp_delta`` (default ``1 / n_train_users ** 1.1``); the unit is a
    user. ``dp_`` then records the budget spent (``epsilon_spent`` <= ``dp_epsilon``, ``delta``,
    ``noise_multiplier``, ``steps``, ...), saved with the generator and shown in the report. What
    DP covers: the item-profile model only (which items a user touches). The prior is the standard
    normal under DP: the aggregate prior's moments are computed from every train user's code
    outside DP-SGD and would void the guarantee (``prior="aggregate"`` with ``dp_epsilon`` is
    refused), and ``N(0, I)`` costs no budget (noised moments would need a share of it and their own
    accounting); a larger ``beta_max`` brings the codes closer to ``N(0, I)``.
    NOT covered: the pieces every generator fits (:meth:`Generator.fit`): the activity distribution
    (real users' item counts are resampled), the funnel rates, the time pools and the friend
    degrees are plain empirical statistics of the train users. The noise comes from seeded (not
    cryptographically secure) generators. Needs Opacus (``pip install opacus==1.6.0``).
    """

    name = "vae"

    def __init__(self, hidden: int = 600, latent: int = 200, epochs: int = 100, batch_size: int = 500,
                 lr: float = 1e-3, dropout: float = 0.5, beta_max: float = 0.2, anneal_epochs: int = 50,
                 prior: str | None = None, smoothing: float = 5.0, device: str = "cpu",
                 dp_epsilon: float | None = None, dp_delta: float | None = None, dp_max_grad_norm: float = 1.0):
        self.hidden, self.latent, self.epochs, self.batch_size, self.lr = hidden, latent, epochs, batch_size, lr
        self.dropout, self.beta_max, self.anneal_epochs, self.prior = dropout, beta_max, anneal_epochs, prior
        self.smoothing, self.device = smoothing, device
        self.dp_epsilon, self.dp_delta, self.dp_max_grad_norm = dp_epsilon, dp_delta, dp_max_grad_norm

    def _prior(self) -> str:
        """The prior in use: ``prior``, or by default "aggregate" ("standard" under DP)."""
        prior = self.prior or ("aggregate" if self.dp_epsilon is None else "standard")
        if prior not in ("aggregate", "standard"):
            raise ValueError(f"{self.name}: prior must be 'aggregate' or 'standard', got {self.prior!r}")
        if prior == "aggregate" and self.dp_epsilon is not None:
            raise ValueError(f"{self.name}: prior='aggregate' is fitted to the train users outside DP-SGD and "
                             f"would void dp_epsilon; use prior=standard (the default under DP)")
        return prior

    def _fit_model(self, train, seed, progress):
        prior = self._prior()
        X = _histories(train)
        if self.dp_epsilon is not None:
            self._fit_private(X, seed, progress)
        else:
            self.net_, self.dp_ = self._train_vae(X, seed, progress, self.epochs, self.batch_size, self.lr), None
        self.z_mean_, self.z_chol_ = np.zeros(self.latent, np.float32), np.eye(self.latent, dtype=np.float32)
        if prior == "aggregate":
            self.z_mean_, self.z_chol_ = _aggregate_gaussian(*self._encode(X))

    def _train_vae(self, X: sp.csr_matrix, seed: int, progress, epochs: int, batch_size: int, lr: float):
        """Mult-VAE's network fitted on the histories ``X`` (CPU, eval mode)."""
        from ..rec.multvae import MultVAE

        steps = max(1, -(-X.shape[0] // batch_size))  # per epoch
        vae = MultVAE(hidden=self.hidden, latent=self.latent, dropout=self.dropout, beta_max=self.beta_max,
                      anneal_steps=self.anneal_epochs * steps, epochs=epochs, batch_size=batch_size,
                      lr=lr, seed=seed, device=self.device)
        return vae.fit(X, progress=progress).network_.cpu().eval()

    def _encode(self, X: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior mean and log-variance (n, latent) of each row of ``X``."""
        from ..rec.multvae import _Batch

        with torch.inference_mode():
            return self.net_.encode(_Batch(X, np.arange(X.shape[0]), torch.device("cpu")).normalised())

    def _fit_private(self, X: sp.csr_matrix, seed: int, progress) -> None:
        """DP-SGD training of the network (:mod:`feedgan.synth.dp`); sets ``net_`` and ``dp_``."""
        from .dp import check_dp_params, fit_private_vae, require_opacus

        check_dp_params(self.name, self.dp_epsilon, self.dp_delta, self.dp_max_grad_norm, self.epochs)
        require_opacus()
        self.net_, self.dp_ = fit_private_vae(
            X, hidden=self.hidden, latent=self.latent, dropout=self.dropout, beta_max=self.beta_max,
            anneal_epochs=self.anneal_epochs, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            epsilon=self.dp_epsilon, delta=self.dp_delta, max_grad_norm=self.dp_max_grad_norm, seed=seed,
            device=self.device, progress=progress)

    @property
    def dp_epsilon_spent_(self) -> float | None:
        """The epsilon the DP training spent (None without DP)."""
        return None if self.dp_ is None else self.dp_["epsilon_spent"]

    @property
    def dp_delta_(self) -> float | None:
        return None if self.dp_ is None else self.dp_["delta"]

    def _logits(self, n, k, gen):
        eps = torch.randn(n, self.net_.latent, generator=gen)  # (n, latent)
        z = torch.from_numpy(self.z_mean_) + eps @ torch.from_numpy(self.z_chol_).T
        return self.net_.decode(z)  # (n, I)

    def _state(self):
        from .dp import budget_array

        return {"z_mean": self.z_mean_, "z_chol": self.z_chol_,
                **({} if self.dp_ is None else {"dp": budget_array(self.dp_)}),
                **{f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}}

    def _set_state(self, arrays):
        from ..rec.multvae import MultVAE

        vae = MultVAE(hidden=self.hidden, latent=self.latent)
        vae._set_state({f"network.{k[4:]}": v for k, v in arrays.items() if k.startswith("net.")})
        self.net_ = vae.network_.cpu().eval()
        self.z_mean_, self.z_chol_ = arrays["z_mean"], arrays["z_chol"]
        self.dp_ = None
        if "dp" in arrays:
            from .dp import budget_dict

            self.dp_ = budget_dict(arrays["dp"])


class GANGenerator(VAEGenerator):
    """A latent GAN on Mult-VAE (see :mod:`feedgan.synth.gan`): the ``vae`` sampler with its Gaussian
    replaced by a generator of codes, conditioned on the user's activity bucket, trained against the
    train users' codes.

    The VAE takes ``hidden``, ``latent``, ``dropout``, ``beta_max``, ``anneal_epochs`` as in ``vae``
    and ``vae_epochs``, ``vae_batch_size``, ``vae_lr``; the GAN takes ``epochs``, ``batch_size``,
    ``lr``, ``g_hidden``, ``d_hidden``, ``r1_gamma`` and ``n_buckets`` (activity quantile buckets).
    ``real_codes="sample"`` shows D a fresh draw of a train user's posterior, ``"mean"`` its mean.
    """

    name = "gan"
    prior = "aggregate"  # G starts from the aggregate-posterior Gaussian
    dp_epsilon = None     # no DP-SGD for the GAN (its prior is fitted to the train users' codes)

    def __init__(self, hidden: int = 600, latent: int = 200, vae_epochs: int = 100, vae_batch_size: int = 500,
                 vae_lr: float = 1e-3, dropout: float = 0.5, beta_max: float = 0.2, anneal_epochs: int = 50,
                 n_buckets: int = 4, g_hidden: int = 256, d_hidden: int = 256, epochs: int = 100,
                 batch_size: int = 256, lr: float = 1e-3, r1_gamma: float = 1.0, real_codes: str = "sample",
                 smoothing: float = 5.0, device: str = "cpu"):
        self.hidden, self.latent, self.vae_epochs, self.vae_batch_size = hidden, latent, vae_epochs, vae_batch_size
        self.vae_lr, self.dropout, self.beta_max, self.anneal_epochs = vae_lr, dropout, beta_max, anneal_epochs
        self.n_buckets, self.g_hidden, self.d_hidden, self.epochs = n_buckets, g_hidden, d_hidden, epochs
        self.batch_size, self.lr, self.r1_gamma, self.real_codes = batch_size, lr, r1_gamma, real_codes
        self.smoothing, self.device = smoothing, device

    def _fit_model(self, train, seed, progress):
        from .gan import bucket_edges, buckets, fit_latent_gan

        if self.real_codes not in ("mean", "sample"):
            raise ValueError(f"{self.name}: real_codes must be 'mean' or 'sample', got {self.real_codes!r}")
        X = _histories(train)
        self.net_, self.dp_ = self._train_vae(X, seed, progress, self.vae_epochs, self.vae_batch_size, self.vae_lr), None
        mu, logvar = self._encode(X)
        self.z_mean_, self.z_chol_ = _aggregate_gaussian(mu, logvar)
        self.edges_ = bucket_edges(self.activity_, self.n_buckets).astype(np.float64)
        self.G_ = fit_latent_gan(mu.numpy(), buckets(X.getnnz(1), self.edges_, self.n_buckets),
                                 mean=self.z_mean_, chol=self.z_chol_,
                                 logvar=logvar.numpy() if self.real_codes == "sample" else None,
                                 g_hidden=self.g_hidden, d_hidden=self.d_hidden, epochs=self.epochs,
                                 batch_size=self.batch_size, lr=self.lr, r1_gamma=self.r1_gamma, seed=seed,
                                 progress=progress)

    def _logits(self, n, k, gen):
        from .gan import buckets

        eps = torch.randn(n, self.latent, generator=gen)  # (n, latent)
        return self.net_.decode(self.G_(torch.cat([eps, buckets(k, self.edges_, self.n_buckets)], 1)))  # (n, I)

    def _state(self):
        return {**super()._state(), "edges": self.edges_,
                **{f"G.{k}": v.detach().cpu().numpy() for k, v in self.G_.state_dict().items()}}

    def _set_state(self, arrays):
        from .gan import LatentG

        super()._set_state(arrays)
        self.edges_ = arrays["edges"]
        self.G_ = LatentG(self.latent, self.n_buckets, self.g_hidden)
        self.G_.load_state_dict({k[2:]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                                 if k.startswith("G.")})
        self.G_.eval()


CONCENTRATION_GRID = np.geomspace(0.05, 500.0, 41)  # candidate interest concentrations (log grid)
FIT_ROUNDS = 3  # corrections of the community profiles toward the train topic shares
HEAVY_SHARE = 8  # a simulated user touching over 1/8 of the catalogue is drawn by Gumbel top-k, not by feed draws
SIM_FIELDS = ("n_users", "n_items", "n_topics", "n_communities", "mean_friends", "homophily", "degree_sigma",
              "interest_concentration")  # the SimulationConfig fields the simulator generator fits and saves


class SimulatorGenerator(Generator):
    """:mod:`feedgan.data.simulate`'s model fitted to the train users, over the real catalogue.

    A synthetic user is drawn the simulator's way: a community ``c``, interests
    ``theta ~ Dirichlet(interest_concentration * pi_c + 0.05)`` (the simulator's ``_interests``),
    then the simulator's organic feed (``_draw_organic``: a topic ~ ``theta ** interest_focus`` x the
    topic's popularity mass, an item of that topic ~ its popularity), repeated until the user has
    ``k`` distinct items (a repeat is redrawn, as the simulator does, here until none is short; a user
    with ``k`` over 1/8 of the catalogue takes a Gumbel top-k on the same odds instead, which is the same
    draw without replacement, only cheaper), ``k`` a real train user's activity. Friends come from the
    simulator's Chung-Lu graph with homophily (``_friend_graph``) over the sampled users' communities.

    Fitted on the train users: the item topics (``n_topics`` k-means clusters of the items'
    TruncatedSVD embedding of the L2-normalised item-user matrix; each simulated item *is* a real
    item, its topic its cluster); item popularity (train users per item, in place of the Zipf law
    over a random ranking, so the popularity ranks are the real ones); communities (``n_communities``
    k-means clusters of the users' topic interests, estimated as their topic shares divided by the
    topics' popularity shares): each community's interest profile ``pi_c`` (in place of a
    ``Dirichlet(community_focus)`` draw; then scaled per topic so the simulated users' topic shares are
    the train users') and size (in place of equal sizes); ``interest_concentration`` (the value on a log
    grid whose simulated users' topic concentration, the mean sum of squared topic shares of their items,
    matches the train users'); with a friend graph, ``mean_friends``,
    ``degree_sigma`` (from the degrees' mean and variance: ``exp(sigma^2) - 1 = (var - mean) / mean^2``)
    and ``homophily`` (the share of train friendships inside one fitted community). The fitted values are
    ``config_``, a :class:`~feedgan.data.simulate.SimulationConfig`; ``interest_focus`` stays at the
    simulator's default, 1.

    What the simulator's model cannot express here, and what stands in for it: the data's actions are
    not the simulator's view / like / comment / share with global rates scaled by topic affinity, so
    the actions on each touched item come from the shared per-item funnel (as for ``vae`` and ``gan``);
    activity is a real user's ``k``, not log-normal exposures times a view rate; times come from the
    shared time pools, not rounds, post creation times, item lifetimes and action delays; there are no
    authors (nobody is kept off their own posts), no social feed and no friend influence (friends do
    not steer what a user touches: the friend graph ties to interests only through communities), and
    no impressions. Items nobody touched in train have no popularity and are never drawn.
    """

    name = "simulator"

    def __init__(self, n_topics: int = 16, n_communities: int = 8, svd_dim: int = 32, smoothing: float = 5.0):
        for name, v in (("n_topics", n_topics), ("n_communities", n_communities), ("svd_dim", svd_dim)):
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{self.name}: {name} must be a positive integer, got {v!r}")
        self.n_topics, self.n_communities, self.svd_dim, self.smoothing = n_topics, n_communities, svd_dim, smoothing

    # -- fitting ----------------------------------------------------------------------------------
    def _fit_model(self, train, seed, progress):
        from ..data.simulate import SimulationConfig

        rng = np.random.default_rng(seed)
        X = train.union()  # (U, I)
        self.popularity_ = np.asarray(X.sum(0)).ravel().astype(np.float32)  # (I,) train users per item
        self.item_topic_ = self._item_topics(X, seed)
        n_topics = int(self.item_topic_.max()) + 1
        H = (X @ sp.csr_matrix((np.ones(X.shape[1]), (np.arange(X.shape[1]), self.item_topic_)),
                               shape=(X.shape[1], n_topics))).toarray()  # (U, T) items per user and topic
        H = H[H.sum(1) > 0]
        community = self._fit_communities(H, seed)
        concentration = self._fit_interests(H, community, rng)
        friends = self._fit_friends(train, X, community)
        self.config_ = SimulationConfig(n_users=max(2, train.n_users), n_items=train.n_items, n_topics=n_topics,
                                        n_communities=len(self.community_share_),
                                        interest_concentration=concentration, **friends)

    def _item_topics(self, X: sp.csr_matrix, seed: int) -> np.ndarray:
        """(I,) int64 topic of each item: k-means on the SVD embedding of its (L2-normalised) users;
        items nobody touched get topic 0 (they are never drawn)."""
        from sklearn.cluster import KMeans
        from sklearn.decomposition import TruncatedSVD
        from sklearn.preprocessing import normalize

        active = np.flatnonzero(self.popularity_ > 0)
        topic = np.zeros(X.shape[1], dtype=np.int64)
        n_topics = min(int(self.n_topics), len(active))
        if n_topics < 2:
            return topic
        A = normalize(X.T.tocsr()[active].astype(np.float64))  # (I_active, U)
        dim = min(int(self.svd_dim), A.shape[0] - 1, A.shape[1] - 1)
        emb = TruncatedSVD(dim, random_state=seed).fit_transform(A) if dim >= 2 else A.toarray()
        labels = KMeans(n_topics, n_init=3, random_state=seed).fit_predict(normalize(emb))
        topic[active] = np.unique(labels, return_inverse=True)[1]  # 0..T-1, no empty topic
        return topic

    def _topic_mass(self) -> np.ndarray:
        """(T,) float64 popularity mass of each topic."""
        return np.bincount(self.item_topic_, weights=self.popularity_.astype(np.float64),
                           minlength=int(self.item_topic_.max()) + 1)

    def _fit_communities(self, H: np.ndarray, seed: int) -> np.ndarray:
        """k-means communities of the users' interests (topic shares over topic popularity shares);
        sets ``profile_`` (C, T) and ``community_share_`` (C,); returns each user's community."""
        from sklearn.cluster import KMeans

        share = self._topic_mass() / self._topic_mass().sum()
        theta = H / H.sum(1, keepdims=True) / np.maximum(share, 1e-12)
        theta /= theta.sum(1, keepdims=True)  # (U, T) estimated interests
        n_comm = min(int(self.n_communities), len(np.unique(theta, axis=0)))
        labels = (np.zeros(len(theta), dtype=np.int64) if n_comm < 2 else
                  np.unique(KMeans(n_comm, n_init=3, random_state=seed).fit_predict(theta), return_inverse=True)[1])
        self.community_share_ = np.bincount(labels) / len(labels)
        profile = np.stack([theta[labels == c].mean(0) for c in range(len(self.community_share_))])
        self.profile_ = profile / profile.sum(1, keepdims=True)
        return labels

    def _fit_interests(self, H: np.ndarray, community: np.ndarray, rng: np.random.Generator) -> float:
        """``interest_concentration``: the grid value whose simulated users (the train users'
        communities and activity) have the train users' mean topic concentration
        ``sum_t (share of the user's items in t) ** 2``. Alternated with a correction of ``profile_``
        so that the simulated users' topic odds, weighted by activity, are the train topic shares."""
        k = H.sum(1).astype(np.int64)
        real = ((H / k[:, None]) ** 2).sum(1).mean()
        mass = self._topic_mass()
        for rounds_left in range(FIT_ROUNDS, -1, -1):
            gaps = []
            for a in CONCENTRATION_GRID:
                q = self._topic_odds(community, float(a), mass, rng)
                gaps.append(abs(((rng.multinomial(k, q) / k[:, None]) ** 2).sum(1).mean() - real))
            concentration = float(CONCENTRATION_GRID[int(np.argmin(gaps))])
            if rounds_left == 0:
                return concentration
            drawn = k @ self._topic_odds(community, concentration, mass, rng) / k.sum()  # (T,)
            self.profile_ = self.profile_ * (mass / mass.sum() / np.maximum(drawn, 1e-12))
            self.profile_ /= self.profile_.sum(1, keepdims=True)

    def _topic_odds(self, community: np.ndarray, concentration: float, mass: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
        """(U, T) the organic feed's topic probabilities for fresh interests of the given communities."""
        from ..data.simulate import _interests

        q = _interests(rng, self.profile_, community, concentration).astype(np.float64) * mass
        return q / q.sum(1, keepdims=True)

    def _fit_friends(self, train: Profiles, X: sp.csr_matrix, community: np.ndarray) -> dict:
        """The simulator's friend-graph parameters from train (no friends without a friend graph)."""
        if train.friends is None:
            return {"mean_friends": 0.0}
        deg = train.friends.getnnz(1).astype(np.float64)
        mean = float(deg.mean())
        var_soc = max(0.0, (float(deg.var()) - mean) / mean ** 2) if mean > 0 else 0.0
        label = np.full(train.n_users, -1)
        label[X.getnnz(1) > 0] = community
        f = sp.triu(train.friends, k=1).tocoo()
        ok = (label[f.row] >= 0) & (label[f.col] >= 0)
        homophily = float(np.mean(label[f.row[ok]] == label[f.col[ok]])) if ok.any() else 0.8
        return {"mean_friends": min(mean, max(1, train.n_users) - 1), "degree_sigma": float(np.sqrt(np.log1p(var_soc))),
                "homophily": homophily}

    # -- sampling ---------------------------------------------------------------------------------
    def sample(self, n: int, *, seed: int = 0) -> Profiles:
        """``n`` new users (see the class docstring)."""
        from ..data.simulate import _interests

        n = self._check_sample(n)
        rng = np.random.default_rng(seed)
        community = rng.choice(len(self.community_share_), size=n, p=self.community_share_).astype(np.int32)
        interest = _interests(rng, self.profile_, community, float(self.config_.interest_concentration))  # (n, T)
        actions = self._assign_actions(self._feed(interest, self._draw_activity(n, rng), rng), rng)
        times = self._draw_times(actions, rng) if self.times_ is not None else None
        friends = self._friends(community, rng) if self.degrees_ is not None else None
        return Profiles(synth_ids(n), self.items_, actions, times, friends)

    def _feed(self, interest: np.ndarray, k: np.ndarray, rng: np.random.Generator) -> sp.csr_matrix:
        """(n, I) union profiles: ``k[u]`` distinct items per user from the simulator's organic feed."""
        from ..data.simulate import _draw_organic

        topic, w = self.item_topic_, self.popularity_.astype(np.float64)
        n_items, n_topics = len(w), interest.shape[1]
        item_order = np.argsort(topic, kind="stable")  # the simulator's layout: items by topic
        tb = np.r_[0, np.cumsum(np.bincount(topic, minlength=n_topics))]
        cum = np.r_[0.0, np.cumsum(w[item_order])]
        mass = cum[tb[1:]] - cum[tb[:-1]]  # (T,)
        focus = float(self.config_.interest_focus)

        def draw(users, m):
            return _draw_organic(rng, m, interest[users], focus, cum, mass, tb, item_order)[1]

        def logits(users):
            q = interest[users].astype(np.float64) ** focus * mass
            with np.errstate(divide="ignore"):  # log 0 = -inf: never drawn
                out = np.log(q / q.sum(1, keepdims=True))[:, topic] + np.log(w / np.maximum(mass[topic], 1e-300))
            return torch.from_numpy(out.astype(np.float32))

        k = np.minimum(k, int((w > 0).sum()))
        heavy = k * HEAVY_SHARE > n_items  # chosen by k alone, so both ways stay exact
        light = _csr(*distinct_rows(np.where(heavy, 0, k), n_items, draw, logits, rng), (len(k), n_items))
        if not heavy.any():
            return light
        gen, rows = torch.Generator().manual_seed(int(rng.integers(2**62))), np.flatnonzero(heavy)
        blocks = np.array_split(rows, -(-len(rows) // CHUNK))  # bounds the (users, items) logits
        items = np.concatenate([top_k_rows(logits(r), k[r], gen)[1] for r in blocks])
        full = light + sp.csr_matrix((np.ones(len(items), dtype=np.float32), (np.repeat(rows, k[rows]), items)),
                                     shape=light.shape)
        full.sort_indices()
        return full

    def _friends(self, community: np.ndarray, rng: np.random.Generator) -> sp.csr_matrix:
        """(n, n) symmetric binary: the simulator's friend graph with the fitted parameters."""
        from ..data.simulate import _friend_graph, _lognormal_mean1

        n, cfg = len(community), self.config_
        sociability = _lognormal_mean1(rng, cfg.degree_sigma, n)
        a, b = _friend_graph(rng, community, sociability, len(self.community_share_),
                             min(float(cfg.mean_friends), n - 1), float(cfg.homophily))
        m = sp.coo_matrix((np.ones(2 * len(a), dtype=np.float32), (np.r_[a, b], np.r_[b, a])), shape=(n, n))
        return m.tocsr()

    # -- persistence ------------------------------------------------------------------------------
    def _state(self):
        return {"item_topic": self.item_topic_, "popularity": self.popularity_, "profile": self.profile_,
                "community_share": self.community_share_,
                "config": np.array([float(getattr(self.config_, f)) for f in SIM_FIELDS])}

    def _set_state(self, arrays):
        from ..data.simulate import SimulationConfig

        self.item_topic_, self.popularity_ = arrays["item_topic"], arrays["popularity"]
        self.profile_, self.community_share_ = arrays["profile"], arrays["community_share"]
        ints = {"n_users", "n_items", "n_topics", "n_communities"}
        self.config_ = SimulationConfig(**{f: int(v) if f in ints else float(v)
                                           for f, v in zip(SIM_FIELDS, arrays["config"])})


GENERATORS: dict[str, type[Generator]] = {g.name: g for g in (CopyGenerator, IndependentGenerator, VAEGenerator,
                                                              GANGenerator, SimulatorGenerator)}
