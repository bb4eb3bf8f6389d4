"""The discriminator detector and the adversarial attack, measured on the halves protocol of
benchmarks/moderation.py.

    PYTHONPATH=src python benchmarks/moderation_disc_probe.py --datasets ml100k,sim --seeds 0,1,2

Per data set and seed the real users are split into two halves (``moderation.halves``): the attack
scored is injected into one, the supervised detectors' training attacks into the other (seed
``1000 + seed``), so no detector meets a scored user, real or fake. Both supervised detectors are
fitted on the same training log (the training half plus the fakes of every training attack), the
feature detector on its profile features, the discriminator on its profile rows and features.

(a) ``features`` vs ``discriminator`` on each classic attack (uniform timestamps) trained on the
    other three (leave one attack out), and on generated ``vae`` fakes trained on all four.
(b) The adversarial attack (``adversarial``) and its unrefined start (``template``: the same fakes
    with ``generator_params={"epochs": 0}``), both with real users' timelines (``timing="real"``,
    so the timestamps give nothing away): pca-varselect, anomaly, ``features`` / ``discriminator``
    trained on the four classic kinds (real timing), and ``features-same`` / ``discriminator-same``
    trained on fakes of the same kind from the other half and another seed (other targets).

Prints one markdown table (ROC-AUC and TPR at 1% FPR, mean ± std over seeds) to stdout, progress to
stderr. One torch thread. ML-100K is read from ``../shared/data/movielens-100k`` and skipped when absent.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
import torch
from moderation import combined as training_log, halves, load

from feedgan.moderation.attacks import ATTACKS, inject
from feedgan.moderation.detect import (
    FeatureDetector,
    anomaly_scores,
    detection_metrics,
    pca_varselect,
    profile_features,
)
from feedgan.moderation.discriminator import DiscriminatorDetector

SIZE, FILLER = 0.05, 0.03
TEMPLATE = {"epochs": 0}
METRICS = ("roc_auc", "tpr_at_1pct_fpr")


def supervised(train_log, train_labels, test, seed: int) -> dict[str, pd.Series]:
    """Scores of the scored log's users by both supervised detectors fitted on the training log."""
    feats = profile_features(test.interactions)
    fd = FeatureDetector(seed=seed).fit(profile_features(train_log), train_labels)
    dd = DiscriminatorDetector(seed=seed).fit(train_log, train_labels)
    return {"features": fd.score(feats), "discriminator": dd.score(test.interactions).loc[feats.index]}


def measure(scores: dict[str, pd.Series], labels: pd.Series, out: dict) -> None:
    for name, s in scores.items():
        m = detection_metrics(s, labels.loc[s.index])
        for k in METRICS:
            out.setdefault(name, {}).setdefault(k, []).append(m[k])


def run(name: str, seeds: list[int]) -> dict:
    data = load(name)
    inter = None if data is None else data.inter
    if inter is None:
        return {}
    rows: dict[str, dict] = {}
    for seed in seeds:
        t0 = time.perf_counter()
        seen, unseen = halves(inter, seed)
        classic = {k: inject(seen, k, size=SIZE, filler=FILLER, seed=1000 + seed) for k in ATTACKS}
        # (a) leave one classic attack out; generated fakes against all four
        for kind in ATTACKS + ("generated vae",):
            if kind in ATTACKS:
                test = inject(unseen, kind, size=SIZE, filler=FILLER, seed=seed)
                train = [classic[k] for k in ATTACKS if k != kind]
            else:
                test = inject(unseen, "generated", generator="vae", size=SIZE, seed=seed)
                train = list(classic.values())
            log, labels = training_log(train)
            measure(supervised(log, labels, test, seed), test.labels, rows.setdefault(f"(a) {kind}", {}))
        # (b) the adversarial attack and its template start, real timelines
        classic_real = [inject(seen, k, size=SIZE, filler=FILLER, seed=1000 + seed, timing="real") for k in ATTACKS]
        log, labels = training_log(classic_real)
        for row, params in (("adversarial", None), ("template", TEMPLATE)):
            test = inject(unseen, "adversarial", size=SIZE, filler=FILLER, seed=seed, timing="real",
                          generator_params=params)
            same = inject(seen, "adversarial", size=SIZE, filler=FILLER, seed=1000 + seed, timing="real",
                          generator_params=params)
            feats = profile_features(test.interactions)
            scores = {"pca-varselect": pca_varselect(test.interactions).loc[feats.index],
                      "anomaly": anomaly_scores(feats, seed=seed), **supervised(log, labels, test, seed)}
            same_log, same_labels = training_log([same])
            scores.update({f"{k}-same": v for k, v in supervised(same_log, same_labels, test, seed).items()})
            measure(scores, test.labels, rows.setdefault(f"(b) {row}", {}))
        print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    return rows


def table(results: dict[str, dict], n_seeds: int) -> str:
    lines = ["| data | attack | detector | ROC-AUC | TPR at 1% FPR |", "|---|---|---|---:|---:|"]
    for data, rows in results.items():
        for attack, dets in rows.items():
            for det, ms in dets.items():
                cells = " | ".join(f"{np.mean(ms[k]):.3f} ± {np.std(ms[k]):.3f}" for k in METRICS)
                lines.append(f"| {data} | {attack} | {det} | {cells} |")
    lines.append(f"\nAttack size {SIZE:.0%}, filler {FILLER:.0%}, {n_seeds} seeds (mean ± std).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="ml100k,sim")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    results = {name: r for name in args.datasets.split(",") if (r := run(name, seeds))}
    if results:
        print(table(results, len(seeds)))
    print(f"total {time.perf_counter() - t0:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
