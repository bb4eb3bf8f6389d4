"""Whole users as data: the one representation every synthetic-user generator fits and samples.

A :class:`Profiles` holds ``n_users`` users over a fixed item catalogue (the real one: generators
never invent items)::

    users    (n_users,) raw user ids
    items    (n_items,) raw item ids, the catalogue (column j of every matrix is items[j])
    actions  action -> (n_users, n_items) CSR, 1.0 where the user did that action on the item
    times    optional, action -> CSR of the same pattern holding the event's timestamp (int64 seconds)
    friends  optional (n_users, n_users) symmetric binary CSR among these users

Real logs come in with :meth:`Profiles.from_interactions`; anything a generator makes goes out with
:meth:`Profiles.to_interactions`, in the readers' schema, so every feedgan tool reads synthetic users
like real ones. ``impression`` rows (exposures, not interactions) are left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.schema import EXPOSURE, DataError, Interactions, validate
from ..sparse import binary


@dataclass
class Profiles:
    users: np.ndarray
    items: np.ndarray
    actions: dict[str, sp.csr_matrix]
    times: dict[str, sp.csr_matrix] | None = None
    friends: sp.csr_matrix | None = None
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.actions:
            raise DataError("a profile set needs at least one action")
        shape = (len(self.users), len(self.items))
        for a, m in self.actions.items():
            if m.shape != shape:
                raise ValueError(f"action {a!r}: matrix shape {m.shape} is not (users, items) = {shape}")
        if self.friends is not None and self.friends.shape != (shape[0], shape[0]):
            raise ValueError(f"friends shape {self.friends.shape} is not (users, users) = {(shape[0], shape[0])}")

    # -- sizes and views ---------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def action_names(self) -> list[str]:
        return list(self.actions)

    def union(self) -> sp.csr_matrix:
        """(n_users, n_items) binary: the user did any action on the item."""
        return binary(sum(self.actions.values()))

    def activity(self) -> np.ndarray:
        """(n_users,) events per user, over every action."""
        return np.asarray(sum(m.getnnz(1) for m in self.actions.values())).ravel()

    def subset(self, rows: np.ndarray) -> "Profiles":
        """The users ``rows`` (positions), with the friend edges among them."""
        rows = np.asarray(rows, dtype=np.int64)
        return Profiles(self.users[rows], self.items, {a: m[rows] for a, m in self.actions.items()},
                        None if self.times is None else {a: m[rows] for a, m in self.times.items()},
                        None if self.friends is None else self.friends[rows][:, rows].tocsr(), dict(self.notes))

    def split_users(self, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> tuple["Profiles", ...]:
        """Split by user (e.g. train / holdout / test): every user lands in exactly one part."""
        if not np.isclose(sum(fractions), 1.0) or min(fractions) <= 0:
            raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
        order = np.random.default_rng(seed).permutation(self.n_users)
        cuts = np.round(np.cumsum(fractions)[:-1] * self.n_users).astype(int)
        return tuple(self.subset(np.sort(part)) for part in np.split(order, cuts))

    # -- in and out --------------------------------------------------------------------------------
    @classmethod
    def from_interactions(cls, inter: Interactions, items: np.ndarray | None = None) -> "Profiles":
        """Every user of ``inter`` with their actions over ``items`` (default: every item of the log;
        rows on other items are dropped and counted in ``notes``)."""
        f = inter.frame[inter.frame["action"] != EXPOSURE]
        if len(f) == 0:
            raise DataError("the log has no interactions besides impressions", file=inter.source)
        users = np.asarray(pd.unique(f["user"]))
        items = np.asarray(pd.unique(f["item"])) if items is None else np.asarray(items)
        u = pd.Index(users).get_indexer(f["user"])
        i = pd.Index(items).get_indexer(f["item"])
        keep = i >= 0
        actions, times = {}, ({} if "timestamp" in f.columns else None)
        act = f["action"].astype(str).to_numpy()
        for a in pd.unique(act[keep]):
            sel = keep & (act == a)
            actions[str(a)] = binary(sp.coo_matrix((np.ones(sel.sum()), (u[sel], i[sel])),
                                                    shape=(len(users), len(items))))
            if times is not None:  # the latest event of each (user, item, action)
                times[str(a)] = _latest(u[sel], i[sel], f["timestamp"].to_numpy()[sel], (len(users), len(items)))
        friends = None
        if inter.social is not None and len(inter.social):
            s = pd.Index(users).get_indexer(inter.social["src"])
            d = pd.Index(users).get_indexer(inter.social["dst"])
            ok = (s >= 0) & (d >= 0) & (s != d)
            m = sp.coo_matrix((np.ones(ok.sum()), (s[ok], d[ok])), shape=(len(users), len(users)))
            friends = binary(m + m.T)
        return cls(users, items, actions, times, friends, {"rows_off_catalogue": int((~keep).sum())})

    def to_interactions(self, source: str = "<synthetic>") -> Interactions:
        """The profiles as a validated log (one row per user, item, action; timestamps where known)."""
        frames = []
        for a, m in self.actions.items():
            coo = m.tocoo()
            part = pd.DataFrame({"user": self.users[coo.row], "item": self.items[coo.col], "action": a,
                                 "weight": np.ones(coo.nnz, dtype=np.float32)})
            if self.times is not None and a in self.times:
                t = self.times[a].tocsr()  # (an action without events: no lookup, which scipy refuses when empty)
                part["timestamp"] = (np.asarray(t[coo.row, coo.col]).ravel() if coo.nnz else np.zeros(0)).astype(np.int64)
            frames.append(part)
        frame = pd.concat(frames, ignore_index=True)
        social = None
        if self.friends is not None and self.friends.nnz:
            coo = sp.triu(self.friends, k=1).tocoo()
            social = pd.DataFrame({"src": self.users[coo.row], "dst": self.users[coo.col]})
        return validate(frame, social=social, source=source)


def _latest(u: np.ndarray, i: np.ndarray, ts: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR holding, at each (u, i), the largest timestamp among its rows."""
    key = u.astype(np.int64) * shape[1] + i
    order = np.lexsort((ts, key))  # by key, then time: the last row of each key is its latest event
    key, ts = key[order], ts[order]
    last = np.r_[key[1:] != key[:-1], True]
    k = key[last]
    return sp.csr_matrix((ts[last].astype(np.float64), (k // shape[1], k % shape[1])), shape=shape)
