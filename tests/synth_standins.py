"""Stand-in generators for testing the synthetic-data metrics: a copier and an independent sampler.

They act on Profiles directly (the metrics only need their output), so the metric tests do not
depend on any real generator."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from feedgan.data.simulate import SimulationConfig, simulate
from feedgan.synth import Profiles


def sim_profiles(n_users: int = 1200, n_items: int = 300, seed: int = 0) -> Profiles:
    """A simulated multi-action log with times and friends, as Profiles."""
    return Profiles.from_interactions(simulate(SimulationConfig(n_users=n_users, n_items=n_items, seed=seed))
                                      .interactions)


def renamed(p: Profiles, prefix: str = "synth") -> Profiles:
    """The same profiles under new user ids (a synthetic set that copies ``p`` user for user)."""
    users = np.array([f"{prefix}-{i:07d}" for i in range(p.n_users)])
    return Profiles(users, p.items, dict(p.actions), p.times, p.friends)


def copy_sample(p: Profiles, n: int | None = None, seed: int = 0) -> Profiles:
    """Copy-real: ``n`` users of ``p`` drawn without replacement (all of them, shuffled, by default)."""
    rng = np.random.default_rng(seed)
    rows = rng.permutation(p.n_users)[: p.n_users if n is None else n]
    return renamed(p.subset(rows))


def independent_sample(p: Profiles, n: int, seed: int = 0, *, uniform: bool = False) -> Profiles:
    """Popularity x activity: each user's profile size drawn from ``p``'s, its items drawn without
    replacement by ``p``'s item popularity (or uniformly), all as ``p``'s first action."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice(p.union().getnnz(1), n)
    pop = p.union().getnnz(0).astype(np.float64) + 1e-3
    prob = None if uniform else pop / pop.sum()
    cols = [rng.choice(p.n_items, min(s, p.n_items), replace=False, p=prob) for s in sizes]
    rows = np.repeat(np.arange(n), [len(c) for c in cols])
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, np.concatenate(cols))), shape=(n, p.n_items))
    return Profiles(np.array([f"synth-{i:07d}" for i in range(n)]), p.items, {p.action_names[0]: m})
