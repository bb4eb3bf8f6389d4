"""Differentially private training of the vae generator: what each privacy budget costs in utility.

    PYTHONPATH=src python benchmarks/synth_dp.py --datasets sim,ml1m --epsilons inf,8,1

For each data set (the simulator's first 3,000 users as in benchmarks/synth.py, and ML-1M when
``../shared/data`` has it) and each epsilon (``inf`` = plain training), a small vae generator
(hidden 200, latent 64, 30 epochs, batch 500) is fitted on the train users (split 0.6 / 0.2 / 0.2,
seed 0) and scored: TSTR ratio over EASE, ItemKNN and most-popular on the test users, the distance
membership attack and the two-sample AUC against the holdout. One seed. Writes
``docs/benchmarks/synth-dp.json`` and the table between the markers of ``docs/synth.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import time

from markers import write_section
from synth import DOC, REPO, load

from feedgan.io import atomic_open
from feedgan.synth.detect import detection
from feedgan.synth.generators import VAEGenerator
from feedgan.synth.privacy import privacy
from feedgan.synth.report import _mean_ratio
from feedgan.synth.utility import tstr

BEGIN, END = "<!-- synth-dp:begin -->", "<!-- synth-dp:end -->"
SMALL = dict(hidden=200, latent=64, epochs=30, batch_size=500)
MODELS = ("ease", "itemknn", "most-popular")


def measure(name: str, epsilon: float) -> dict | None:
    profiles = load(name, 3000 if name == "sim" else None)
    if profiles is None:
        return None
    train, holdout, test = profiles.split_users((0.6, 0.2, 0.2), seed=0)
    params = {**SMALL, **({} if math.isinf(epsilon) else {"dp_epsilon": epsilon})}
    t0 = time.perf_counter()
    gen = VAEGenerator(**params).fit(train, seed=0)
    fit_s = time.perf_counter() - t0
    synth = gen.sample(train.n_users, seed=1)
    return {"data": name, "epsilon": epsilon, "params": params, "fit_s": round(fit_s, 1),
            "tstr_ratio": _mean_ratio(tstr(train, synth, test, models=MODELS, seed=0)),
            "mia_auc": privacy(train, holdout, synth, seed=0)["mia_distance"]["auc"],
            "two_sample_auc": detection(holdout, synth, train, seed=0)["synth"]["auc_mean"], "dp": gen.dp_}


def write_docs(rows: list[dict]) -> None:
    lines = ["", "| data | epsilon | TSTR ratio | membership AUC (distance) | two-sample AUC | noise multiplier | fit s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        dp = r["dp"] or {}
        eps = "none" if math.isinf(r["epsilon"]) else f"{r['epsilon']:g} (spent {dp.get('epsilon_spent', 0):.2f})"
        lines.append(f"| {r['data']} | {eps} | {r['tstr_ratio']:.3f} | {r['mia_auc']:.3f} | {r['two_sample_auc']:.3f} "
                     f"| {dp.get('noise_multiplier', 0):.2f} | {r['fit_s']:.1f} |")
    lines += ["", "Reproduce: `PYTHONPATH=src python benchmarks/synth_dp.py` (one seed; vae hidden 200, latent 64, "
              "30 epochs, batch 500; TSTR over EASE, ItemKNN, most-popular).", ""]
    write_section(DOC, BEGIN, END, lines, "synth-dp")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="sim,ml1m")
    ap.add_argument("--epsilons", default="inf,8,1")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = []
    for name in args.datasets.split(","):
        for eps in map(float, args.epsilons.split(",")):
            row = measure(name, eps)
            if row is not None:
                rows.append(row)
                print(json.dumps(row, default=str), flush=True)
    with atomic_open(REPO / "docs" / "benchmarks" / "synth-dp.json") as fh:
        fh.write(json.dumps(rows, indent=2, default=str) + "\n")
    write_docs(rows)


if __name__ == "__main__":
    main()
