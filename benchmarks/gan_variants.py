"""Every GAN-recommender variant tried, with its validation curve (the losers included).

    python benchmarks/gan_variants.py                       # ML-100K (CFGAN split), seed 0
    python benchmarks/gan_variants.py --dataset ciao-cfgan

A design probe, not a result table: each variant trains once (seed 0) on train with 10% of it cut
off as validation, and NDCG@20 on that validation part is recorded every few epochs. The test
split is never read. The variants that looked worth it go to the full protocol in
``benchmarks/baselines.py`` (tuned, 5 seeds, test once). Writes
``docs/benchmarks/gan-variants-<dataset>.json``; ``benchmarks/gan_report.py`` puts it in the docs.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from cfgan_replication import SETTINGS

from feedgan.data.dataset import DataConfig, prepare
from feedgan.data.readers import read
from feedgan.eval.metrics import evaluate
from feedgan.io import write_json
from feedgan.rec.baselines import EASE
from feedgan.rec.cfgan import CFGAN
from feedgan.rec.easegan import EASEGAN

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))
DATASETS = {"ml100k-cfgan": ("cfgan-original-splits/ML100K", "cfgan"),
            "ciao-cfgan": ("cfgan-original-splits/Ciao", "cfgan")}

# CFGAN variants start from the authors' setting for the dataset (ML-100K: item-based ZP; Ciao:
# item-based ZR), with the non-saturating loss; the epoch budget is shortened on ML-100K
CF = {"ml100k-cfgan": {**SETTINGS["ml100k"][1], "epochs": 100, "eval_every": 10, "patience": None},
      "ciao-cfgan": {**SETTINGS["ciao"][1], "eval_every": 25, "patience": None}}
EG = dict(epochs=30, eval_every=5, patience=None)
# (name, what it tests, model given the CFGAN base setting)
VARIANTS = [
    ("cfgan", "CFGAN, the authors' setting for the dataset (non-saturating loss)", lambda cf: CFGAN(**cf)),
    ("cfgan-minimax", "the same with the paper's minimax G loss", lambda cf: CFGAN(**{**cf, "loss": "minimax"})),
    ("cfgan-linear", "the same with a linear (not sigmoid) generator output",
     lambda cf: CFGAN(**{**cf, "g_output": "linear"})),
    ("cfgan-l2", "the same with L2 1e-3 on G and D (the public configurations' value)",
     lambda cf: CFGAN(**{**cf, "l2": 1e-3})),
    ("cfgan-l2-linear", "L2 1e-3 and a linear output together",
     lambda cf: CFGAN(**{**cf, "l2": 1e-3, "g_output": "linear"})),
    ("cfgan-ae", "the same generator without D (masked reconstruction only)",
     lambda cf: CFGAN(**{**cf, "adversarial": False})),
    ("cfgan-noise", "CFGAN with 64 Gaussian noise inputs appended to the condition",
     lambda cf: CFGAN(**{**cf, "noise_dim": 64})),
    ("cfgan-hinge", "CFGAN with the hinge loss", lambda cf: CFGAN(**{**cf, "loss": "hinge"})),
    ("cfgan-user", "CFGAN user-based (conditions are users)", lambda cf: CFGAN(**{**cf, "mode": "user"})),
    ("easegan-ease-init", "EASE-GAN from the tuned EASE (l2=500), dropout 0.25, adv 0.1, lr 1e-4",
     lambda cf: EASEGAN(l2=500.0, dropout=0.25, adv_weight=0.1, lr_g=1e-4, **EG)),
    ("easegan-ease-init-noD", "the same without D (denoising EASE)",
     lambda cf: EASEGAN(l2=500.0, dropout=0.25, adversarial=False, lr_g=1e-4, **EG)),
    ("easegan-ease-init-fast", "EASE-GAN from l2=500, adv 0.3, lr 3e-4",
     lambda cf: EASEGAN(l2=500.0, dropout=0.25, adv_weight=0.3, lr_g=3e-4, **EG)),
    ("easegan-weak-init", "EASE-GAN from an under-regularised EASE (l2=50), dropout 0.5, adv 0.3, lr 3e-4",
     lambda cf: EASEGAN(l2=50.0, dropout=0.5, adv_weight=0.3, lr_g=3e-4, **EG)),
    ("easegan-weak-init-noD", "the same without D",
     lambda cf: EASEGAN(l2=50.0, dropout=0.5, adversarial=False, lr_g=3e-4, **EG)),
    ("easegan-hinge-strong", "EASE-GAN from l2=500 with the hinge loss at full weight (adv 1.0), lr 1e-3",
     lambda cf: EASEGAN(l2=500.0, dropout=0.25, adv_weight=1.0, loss="hinge", lr_g=1e-3, **EG)),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml100k-cfgan", choices=sorted(DATASETS))
    ap.add_argument("--only", default=None, help="comma-separated variant names")
    args = ap.parse_args()
    if not DATA.exists():
        print(f"skip: {DATA} not found (set FEEDGAN_DATA)")
        return
    path, fmt = DATASETS[args.dataset]
    data = prepare(read(DATA / path, fmt), DataConfig(split="predefined", valid=0.1, seed=0))
    ease_valid = {l2: evaluate(EASE(l2=l2).fit(data), data, "valid", ks=(20,))["ndcg@20"] for l2 in (50.0, 200.0, 500.0)}
    out = ROOT / "docs" / "benchmarks" / f"gan-variants-{args.dataset}.json"
    rows = []
    for name, what, make in VARIANTS:
        if args.only and name not in args.only.split(","):
            continue
        t0 = time.perf_counter()
        model = make(CF[args.dataset]).fit(data)
        curve = [[int(e), float(v)] for e, v in model.valid_history_]
        best = max(curve, key=lambda ev: ev[1])
        rows.append({"variant": name, "what": what, "params": model.get_params(), "curve": curve,
                     "best_epoch": best[0], "best_valid_ndcg@20": best[1], "fit_s": time.perf_counter() - t0})
        print(f"{name:24s} best valid NDCG@20 {best[1]:.4f} at epoch {best[0]} ({rows[-1]['fit_s']:.0f} s)", flush=True)
    if out.exists():  # keep the variants not re-run now, in the listed order
        done = {r["variant"] for r in rows}
        rows += [r for r in json.loads(out.read_text())["rows"] if r["variant"] not in done]
        order = [v[0] for v in VARIANTS]
        rows.sort(key=lambda r: order.index(r["variant"]) if r["variant"] in order else len(order))
    write_json(out, {"dataset": args.dataset, "seed": 0, "threads": torch.get_num_threads(),
                     "ease_valid_ndcg@20": {str(k): v for k, v in ease_valid.items()},
                     "command": f"python benchmarks/gan_variants.py --dataset {args.dataset}", "rows": rows})


if __name__ == "__main__":
    main()
