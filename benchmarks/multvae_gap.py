"""Mult-VAE on ML-1M: which setting moves it, one change at a time from the benchmark's row.

    python benchmarks/multvae_gap.py                      # every variant, seeds 0 and 1 -> runs/multvae-gap.json
    python benchmarks/multvae_gap.py --variants base,noise-0.01 --seeds 3
    python benchmarks/multvae_gap.py --publish            # also writes docs/benchmarks/multvae-gap.json
    python benchmarks/multvae_gap.py --variants base --seeds 3 --extend   # adds seed 2 to runs/multvae-gap.json

The starting point is the setting the ML-1M benchmark chose on validation (``docs/benchmarks/ml1m.json``:
50 epochs, batch 500, beta_max 0.5, anneal_steps 2000, latent 200, full reparameterisation noise).
Each variant changes one thing. For every variant and seed: a fit on train scored on validation
(the number a choice may use), then a refit on train + valid scored on test (reported, never
chosen on). Runs go one after another at a fixed thread count; the JSON is rewritten after each
run, so an interrupted ablation keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from feedgan.data.dataset import DataConfig, prepare
from feedgan.data.readers import read
from feedgan.eval.metrics import evaluate
from feedgan.eval.protocol import ModelSpec, refit_and_test
from feedgan.io import write_json
from feedgan.rec.multvae import MultVAE

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))
ML1M = "movielens-1m/lightgcnpp-implicit-split"
BASE = {"epochs": 50, "batch_size": 500, "beta_max": 0.5, "anneal_steps": 2000}  # the benchmark's chosen row
# one change each from BASE, then the two that moved it together, then RecBole's settings together
VARIANTS = {
    "base": {},
    "noise-0.01": {"noise_scale": 0.01},
    "latent-100": {"latent": 100},
    "anneal-200000": {"beta_max": 0.2, "anneal_steps": 200000},
    "noise-0.01+latent-100": {"noise_scale": 0.01, "latent": 100},
    "recbole-like": {"noise_scale": 0.01, "latent": 100, "beta_max": 0.2, "anneal_steps": 200000},
    "noise-0": {"noise_scale": 0.0},
    "beta-0.2": {"beta_max": 0.2},
    "dropout-0.2": {"dropout": 0.2},
}
KEYS = ("ndcg@20", "recall@20")


def one_run(dataset, params: dict, seed: int) -> dict:
    """Validation from a fit on train; test from a refit on train + valid."""
    t0 = time.perf_counter()
    model = MultVAE(**params, seed=seed).fit(dataset)
    valid = evaluate(model, dataset, "valid", ks=(20,))
    fit_s = time.perf_counter() - t0
    out = refit_and_test(ModelSpec(MultVAE), {**params}, dataset, ks=(20,), seed=seed)
    return {"seed": seed, "valid": {k: valid[k] for k in KEYS}, "test": {k: out["test"][k] for k in KEYS},
            "fit_valid_s": fit_s, "refit_test_s": out["fit_s"]}


def summary(runs: list[dict]) -> dict:
    """Mean and spread (max - min, and ddof=1 std) over seeds of each metric."""
    out = {}
    for part in ("valid", "test"):
        for k in KEYS:
            v = np.array([r[part][k] for r in runs])
            out[f"{part}_{k}"] = {"mean": float(v.mean()), "spread": float(v.max() - v.min()),
                                  "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    return out


def table(result: dict) -> str:
    """Markdown: one row per variant, validation first (what a choice may read), then test."""
    lines = ["| variant | change | seeds | valid NDCG@20 | valid Recall@20 | test NDCG@20 | test Recall@20 |",
             "|---|---|---|---|---|---|---|"]
    for name, row in result["variants"].items():
        s = row["summary"]
        cell = lambda key: f"{s[key]['mean']:.4f} ± {s[key]['spread'] / 2:.4f}"  # noqa: E731
        change = ", ".join(f"{k}={v}" for k, v in row["change"].items()) or "(benchmark row)"
        lines.append(f"| {name} | {change} | {len(row['runs'])} | {cell('valid_ndcg@20')} | "
                     f"{cell('valid_recall@20')} | {cell('test_ndcg@20')} | {cell('test_recall@20')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--seeds", type=int, default=2, help="model seeds 0..n-1 per variant")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "runs" / "multvae-gap.json"))
    ap.add_argument("--publish", action="store_true", help="also write docs/benchmarks/multvae-gap.json")
    ap.add_argument("--extend", action="store_true",
                    help="keep the runs already in --out and run only the seeds a variant lacks")
    args = ap.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        print(f"multvae_gap: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2
    path = DATA / ML1M
    if not path.exists():
        print(f"multvae_gap: {path} not found (set FEEDGAN_DATA to the folder holding {ML1M})", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    dataset = prepare(read(path, "lightgcn"), DataConfig(path=str(path), format="lightgcn", split="predefined",
                                                         valid=0.1, test=0.2, seed=0))
    command = "python benchmarks/multvae_gap.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"data": ML1M, "base": BASE, "threads": args.threads, "variants": {}}
    if args.extend and Path(args.out).exists():
        result = json.loads(Path(args.out).read_text())
    result["commands"] = result.get("commands", []) + [command.strip()]
    outs = [Path(args.out)] + ([ROOT / "docs" / "benchmarks" / "multvae-gap.json"] if args.publish else [])
    for name in names:
        row = result["variants"].setdefault(name, {"change": VARIANTS[name], "runs": []})
        done = {r["seed"] for r in row["runs"]}
        for seed in (s for s in range(args.seeds) if s not in done):
            run = one_run(dataset, {**BASE, **VARIANTS[name]}, seed)
            row["runs"].append(run)
            row["summary"] = summary(row["runs"])
            print(f"{name} seed {seed}: valid ndcg@20 {run['valid']['ndcg@20']:.4f}  "
                  f"test ndcg@20 {run['test']['ndcg@20']:.4f} recall@20 {run['test']['recall@20']:.4f}  "
                  f"({run['fit_valid_s'] + run['refit_test_s']:.0f} s)", flush=True)
            for out in outs:
                out.parent.mkdir(parents=True, exist_ok=True)
                write_json(out, result)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
