"""Seconds taken by each fidelity / detection / privacy figure on 6k real x 6k synthetic users.

    PYTHONPATH=src python benchmarks/synth_metrics_speed.py [--ml1m] [--out FILE.json]

Real users: the simulator (12,000 users over 3,700 items, split in half: train and holdout), or
with ``--ml1m`` MovieLens-1M (train file of the LightGCN split; 6,040 users, half train, half
holdout; denser profiles, so the distance products cost more). Synthetic users: 6,000 copies of
train users drawn with replacement (copy-real) and 6,000 users of an independent popularity x activity
sampler; the shadow attack refits the same control on the shadow members. Prints one JSON object: seconds per function, and the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from feedgan.data.readers import read
from feedgan.data.simulate import SimulationConfig, simulate
from feedgan.synth import Profiles
from feedgan.synth.detect import detection
from feedgan.synth.fidelity import fidelity
from feedgan.synth.privacy import (
    distance_attack,
    distance_to_closest_record,
    exact_copies,
    shadow_attack,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))
N_SYNTH = 6000


def real_users(ml1m: bool) -> Profiles:
    if ml1m:
        return Profiles.from_interactions(read(DATA / "movielens-1m/lightgcnpp-implicit-split/train.txt", "lightgcn"))
    return Profiles.from_interactions(simulate(SimulationConfig(n_users=12000, n_items=3700, seed=0)).interactions)


def copy_real(p: Profiles, n: int, seed: int = 0) -> Profiles:
    rows = np.random.default_rng(seed).choice(p.n_users, n, replace=n > p.n_users)
    q = p.subset(rows)
    return Profiles(np.array([f"synth-{i:07d}" for i in range(n)]), q.items, q.actions, q.times, q.friends)


def independent(p: Profiles, n: int, seed: int = 0) -> Profiles:
    """Profile sizes from ``p``, items by ``p``'s popularity, all as ``p``'s first action."""
    rng = np.random.default_rng(seed)
    u = p.union()
    sizes, pop = rng.choice(u.getnnz(1), n), u.getnnz(0) + 1e-3
    cols = [rng.choice(p.n_items, s, replace=False, p=pop / pop.sum()) for s in sizes]
    rows = np.repeat(np.arange(n), sizes)
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, np.concatenate(cols))), shape=(n, p.n_items))
    return Profiles(np.array([f"synth-{i:07d}" for i in range(n)]), p.items, {p.action_names[0]: m})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ml1m", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    real = real_users(args.ml1m)
    train, holdout = real.split_users((0.5, 0.5), seed=0)
    result = {"data": "ml1m" if args.ml1m else "simulator", "train": train.n_users, "holdout": holdout.n_users,
              "items": real.n_items, "mean_events_per_user": float(real.activity().mean()), "seconds": {},
              "figures": {}}
    controls = {"copy": (copy_real(train, N_SYNTH), lambda q: copy_real(q, q.n_users, seed=7)),
                "independent": (independent(train, N_SYNTH, seed=1), lambda q: independent(q, q.n_users, seed=7))}
    for name, (synth, refit) in controls.items():
        steps = {"fidelity": (fidelity, holdout, synth, train),
                 "detection (synth + ceiling)": (detection, holdout, synth, train),
                 "exact_copies": (exact_copies, train, holdout, synth),
                 "dcr": (distance_to_closest_record, train, holdout, synth),
                 "mia_distance": (distance_attack, train, holdout, synth),
                 "mia_shadow (incl. refit)": (shadow_attack, train, holdout, synth, refit)}
        secs, figs = {}, {}
        for step, (func, *inputs) in steps.items():
            t = time.perf_counter()
            figs[step] = func(*inputs)
            secs[step] = round(time.perf_counter() - t, 2)
        secs["total"] = round(sum(secs.values()), 2)
        result["seconds"][name], result["figures"][name] = secs, figs
        print(name, secs, file=sys.stderr)
    text = json.dumps(result, indent=1, default=float)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
