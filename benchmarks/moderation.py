"""Fake-account detection on real rating logs: classic attacks injected, detectors scored honestly.

    PYTHONPATH=src python benchmarks/moderation.py --datasets filmtrust,ml100k,sim --seeds 0,1,2

For each data set, attack and seed, fake users are injected at 5% of the users with 3% filler
(:func:`feedgan.moderation.attacks.inject`), and every detector scores every user. The attacks: the
classic kinds (random, average, bandwagon, segment) with uniform timestamps; the same kinds with real
users' timelines (``timing="real"``, rows ``<kind> real-timing``); and generator-made fakes
(``generated vae``, ``generated independent``: a feedgan.synth generator fitted on the log's real
users). The detectors:

* ``pca-varselect``: unsupervised, no attack size given;
* ``anomaly``: IsolationForest on the profile features, unsupervised;
* ``features``: a gradient-boosted classifier on the profile features, trained on the *other* classic
  kinds with the same timing (leave one attack out: the attack it is scored on was never seen in
  training); on generated fakes it is trained on all four classic kinds (uniform timing);
* ``features-gen``: the same classifier trained on generator-made fakes instead: both generators for
  a classic attack, the *other* generator for a generated one.

The real users are split at random into two halves per seed: the attack scored is injected into one
half, the supervised detector's training attacks into the other, so it never sees a scored user (real
or fake) and cannot learn who the real users are.

Metrics (:func:`feedgan.moderation.detect.detection_metrics`): ROC-AUC, PR-AUC, TPR at 1% FPR and
precision at a review budget of 5% of the users (a budget a team would set; not the true attack
size), mean ± std over seeds. Writes ``docs/benchmarks/moderation.json`` and the table between the
markers of ``docs/moderation.md``. Real data comes from ``../shared/data`` and is skipped when absent.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from markers import write_section

from feedgan.data.readers import read
from feedgan.data.simulate import SimulationConfig, simulate
from feedgan.io import atomic_open
from feedgan.moderation.attacks import ATTACKS, GENERATED, inject
from feedgan.moderation.detect import (FeatureDetector, anomaly_scores, detection_metrics, pca_varselect,
                                       profile_features)

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "moderation.md"
BEGIN, END = "<!-- moderation-benchmark:begin -->", "<!-- moderation-benchmark:end -->"
DATASETS = {"filmtrust": ("filmtrust", "filmtrust"), "ml100k": ("movielens-100k", "movielens")}
METRICS = ("roc_auc", "pr_auc", "tpr_at_1pct_fpr", "precision_at_budget")
GENERATORS = ("vae", "independent")
DETECTORS = ("pca-varselect", "anomaly", "features", "features-gen")
# row name -> the attack injected: inject() keywords
ATTACK_ROWS = {**{k: {"kind": k} for k in ATTACKS},
               **{f"{k} real-timing": {"kind": k, "timing": "real"} for k in ATTACKS},
               **{f"generated {g}": {"kind": GENERATED, "generator": g} for g in GENERATORS}}


def load(name: str):
    if name == "sim":
        return simulate(SimulationConfig(n_users=2000, n_items=1500, seed=0)).interactions
    folder, fmt = DATASETS[name]
    path = Path(os.environ.get("FEEDGAN_DATA") or REPO.parent / "shared" / "data") / folder
    if not path.exists():
        print(f"{name}: {path} not found, skipped", file=sys.stderr)
        return None
    return read(path, fmt)


def run(name: str, seeds: list[int], size: float, filler: float) -> dict | None:
    inter = load(name)
    if inter is None:
        return None
    n_users = inter.frame["user"].nunique()
    budget = max(1, round(0.05 * (n_users - n_users // 2)))  # 5% of the scored half's real users
    cache: dict = {}
    out = {"data": name, "users": int(n_users), "size": size, "filler": filler, "budget": budget, "rows": {}}
    for row, attack in ATTACK_ROWS.items():
        per = {d: {m: [] for m in METRICS} for d in DETECTORS}
        timing = attack.get("timing", "uniform")
        for seed in seeds:
            t0 = time.perf_counter()
            seen, unseen = halves(inter, seed)  # the supervised detector never sees a test user, real or fake
            test = inject(unseen, **attack, size=size, filler=filler, seed=seed)
            feats = profile_features(test.interactions)
            labels = test.labels.loc[feats.index]
            scores = {"pca-varselect": pca_varselect(test.interactions), "anomaly": anomaly_scores(feats, seed=seed)}
            # supervised: the other classic kinds (same timing) or the other generators, another seed, the same data
            classic = [{"kind": k, "timing": timing} for k in ATTACKS if k != attack["kind"]]
            generated = [{"kind": GENERATED, "generator": g} for g in GENERATORS if g != attack.get("generator")]
            for d, train_attacks in (("features", classic), ("features-gen", generated)):
                train = [training_set(seen, a, size, filler, seed, cache) for a in train_attacks]
                det = FeatureDetector().fit(_concat([f for f, _ in train]), _concat([y for _, y in train]))
                scores[d] = det.score(feats)
            for d, s in scores.items():
                m = detection_metrics(s.loc[labels.index], labels, review_budget=budget)
                for key in METRICS:
                    per[d][key].append(m[key])
            print(f"{name} {row} seed {seed}: " + ", ".join(
                f"{d} AUC {per[d]['roc_auc'][-1]:.3f} TPR@1% {per[d]['tpr_at_1pct_fpr'][-1]:.3f}" for d in per)
                + f" ({time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True)
        out["rows"][row] = {d: {k: [float(np.mean(v)), float(np.std(v))] for k, v in ms.items()}
                            for d, ms in per.items()}
    out["seeds"] = seeds
    return out


def training_set(seen, attack: dict, size: float, filler: float, seed: int, cache: dict):
    """(features, labels) of ``attack`` (inject() keywords) injected into the training half (seed ``1000 + seed``),
    cached."""
    key = (tuple(sorted(attack.items())), seed)
    if key not in cache:
        t = inject(seen, **attack, size=size, filler=filler, seed=1000 + seed)
        f = profile_features(t.interactions)
        cache[key] = (f, t.labels.loc[f.index])
    return cache[key]


def halves(inter, seed: int):
    """The log split by user into two random halves (seeded): detectors are trained on one, scored on the other."""
    users = inter.frame["user"].unique()
    seen = set(np.random.default_rng(seed).permutation(users)[: len(users) // 2].tolist())
    mask = inter.frame["user"].isin(seen)
    return inter.with_frame(inter.frame.loc[mask]), inter.with_frame(inter.frame.loc[~mask])


def _concat(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def write_docs(results: list[dict]) -> None:
    lines = ["", "| data | attack | detector | ROC-AUC | PR-AUC | TPR at 1% FPR | precision at budget |",
             "|---|---|---|---:|---:|---:|---:|"]
    for res in results:
        for kind, dets in res["rows"].items():
            for d, ms in dets.items():
                cells = " | ".join(f"{ms[k][0]:.3f} ± {ms[k][1]:.3f}" for k in METRICS)
                lines.append(f"| {res['data']} | {kind} | {d} | {cells} |")
    r0 = results[0]
    lines += ["", f"Attack size {r0['size']:.0%} of the users, filler {r0['filler']:.0%} of the items, "
              f"{len(r0['seeds'])} seeds (mean ± std); review budget 5% of the users. Reproduce: "
              "`PYTHONPATH=src python benchmarks/moderation.py`.", ""]
    write_section(DOC, BEGIN, END, lines, "moderation-benchmark")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="filmtrust,ml100k,sim")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=float, default=0.05)
    ap.add_argument("--filler", type=float, default=0.03)
    args = ap.parse_args()
    results = [r for name in args.datasets.split(",")
               if (r := run(name, list(map(int, args.seeds.split(","))), args.size, args.filler)) is not None]
    if not results:
        return
    with atomic_open(REPO / "docs" / "benchmarks" / "moderation.json") as fh:
        fh.write(json.dumps(results, indent=2) + "\n")
    write_docs(results)


if __name__ == "__main__":
    main()
