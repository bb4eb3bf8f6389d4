"""Speed of the synthetic-user generators (fit on the train users, sample 100k users), with a few
quick sanity figures against the holdout users (the full report is ``feedgan synth report``).

    python benchmarks/synth_generators.py --data sim --threads 2               # the simulator, 3000 users
    python benchmarks/synth_generators.py --data ml-1m --threads 2             # ../shared/data/movielens-1m
    python benchmarks/synth_generators.py --data sim --generators gan -p epochs=200

Prints one JSON line per generator: ``fit_s``, ``sample_100k_s`` and, on 3000 sampled users against
the holdout users: the activity KS distance, the item-popularity correlation and ``pair_lift``, the
share of a sample's co-occurring item pairs that co-occur at least twice as often as chance in train
(the popularity floor is near the chance level; real users sit well above it), and
``nearest_jaccard``, the mean Jaccard similarity of a sampled user to their nearest train user
(``copy`` scores 1; the holdout users' figure is the natural level).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from feedgan.data.readers import read
from feedgan.data.simulate import SimulationConfig, simulate
from feedgan.synth import Profiles
from feedgan.synth.cli import SPLIT_FRACTIONS
from feedgan.synth.generators import GENERATORS

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))


def load(name: str) -> Profiles:
    if name == "sim":
        return Profiles.from_interactions(simulate(SimulationConfig(n_users=3000, seed=0)).interactions)
    if name == "ml-1m":
        return Profiles.from_interactions(read(DATA / "movielens-1m" / "lightgcnpp-implicit-split", "lightgcn"))
    return Profiles.from_interactions(read(name))


def ks(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.union1d(a, b)
    return float(np.abs(np.searchsorted(np.sort(a), grid, "right") / len(a)
                        - np.searchsorted(np.sort(b), grid, "right") / len(b)).max())


def pair_lift(train: Profiles, sample: Profiles) -> float:
    X, Y = train.union().astype(np.float32), sample.union().astype(np.float32)
    co = (X.T @ X).toarray()
    deg = np.asarray(X.sum(0)).ravel()
    lifted = co > 2 * np.outer(deg, deg) / X.shape[0]
    c = (Y.T @ Y).toarray()
    np.fill_diagonal(c, 0)
    return float((c * lifted).sum() / max(c.sum(), 1))


def nearest_jaccard(train: Profiles, sample: Profiles, n: int = 1000) -> float:
    """Mean Jaccard similarity of each of ``n`` sampled users to their nearest train user."""
    X, Y = train.union().astype(np.float32), sample.union()[:n].astype(np.float32)
    inter = (Y @ X.T).toarray()
    union = np.asarray(Y.sum(1)) + np.asarray(X.sum(1)).T - inter
    return float((inter / np.maximum(union, 1)).max(1).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="sim")
    ap.add_argument("--generators", default=",".join(GENERATORS))
    ap.add_argument("-p", "--param", action="append", default=[], help="name=value for every trained generator")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    real = load(args.data)
    train, holdout, _ = real.split_users(SPLIT_FRACTIONS, seed=0)
    params = dict(p.split("=", 1) for p in args.param)
    base = {"data": args.data, "train_users": train.n_users, "items": train.n_items,
            "pair_lift_holdout": round(pair_lift(train, holdout), 4),
            "nearest_jaccard_holdout": round(nearest_jaccard(train, holdout), 4)}
    for name in args.generators.split(","):
        cls = GENERATORS[name]
        from feedgan.params import parse_params

        kw = parse_params(cls, {k: v for k, v in params.items() if k in cls().get_params()}, owner=name)
        t0 = time.perf_counter()
        gen = cls(**kw).fit(train, seed=0)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        gen.sample(args.n, seed=1)
        sample_s = time.perf_counter() - t0
        s = gen.sample(3000, seed=2)
        pop_h, pop_s = (np.asarray(p.union().sum(0)).ravel() for p in (holdout, s))
        print(json.dumps({**base, "generator": name, "params": kw, "fit_s": round(fit_s, 1),
                          f"sample_{args.n // 1000}k_s": round(sample_s, 1),
                          "activity_ks": round(ks(s.activity(), holdout.activity()), 3),
                          "popularity_corr": round(float(np.corrcoef(pop_h, pop_s)[0, 1]), 3),
                          "pair_lift": round(pair_lift(train, s), 4),
                          "nearest_jaccard": round(nearest_jaccard(train, s), 4)}), flush=True)


if __name__ == "__main__":
    main()
