"""Seconds per BPR epoch on ML-1M: feedgan now, feedgan at an earlier commit, and implicit's BPR.

    python benchmarks/bpr_speed.py                         # timing -> runs/bpr-speed.json
    python benchmarks/bpr_speed.py --quality --seeds 0,1   # plus test NDCG@20 after the benchmark's fit
    python benchmarks/bpr_speed.py --publish               # write docs/benchmarks/bpr-speed.json instead
    python benchmarks/bpr_speed.py --sgd-lr 20             # plus feedgan's BPR with optimizer="sgd"

Timing: one-epoch fits on the ML-1M train matrix (LightGCN++ split), at one thread, in one
process and interleaved (baseline, current, implicit, baseline, current, implicit, ...), so a
machine that gets busier moves every contestant alike; the report gives each round's ratio and
their median and range. The baseline is ``src/feedgan/rec/bpr.py`` as it was at ``--baseline``
(a git revision), loaded from git beside the current module. implicit (the CPU build) is optional:
without it the implicit column is left out. ``--quality`` refits both feedgan versions on train +
valid with the setting ``docs/benchmarks/ml1m.json`` chose for BPR and scores the test part, seed by
seed, the way the benchmark tables do. ``--sgd-lr`` adds the current module with ``optimizer="sgd"``
at that learning rate (the rest of the setting unchanged) to both the timing and the quality check.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from feedgan.data.dataset import DataConfig, prepare
from feedgan.data.readers import read
from feedgan.eval.metrics import evaluate
from feedgan.io import write_json
from feedgan.rec import bpr as current

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))
ML1M = DATA / "movielens-1m" / "lightgcnpp-implicit-split"
PUBLISHED = ROOT / "docs" / "benchmarks" / "bpr-speed.json"
LOCAL = ROOT / "runs" / "bpr-speed.json"
BASELINE = "f861720"  # the hand-written step before kept buffers and the direct hand-over of its gradient


def baseline_module(rev: str):
    """``feedgan.rec.bpr`` as it was at git revision ``rev`` (imported under another name)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/feedgan/rec/bpr.py"], check=True,
                            capture_output=True, text=True).stdout
    name = "feedgan.rec._bpr_baseline"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "feedgan.rec"
    exec(compile(source, f"{rev}:src/feedgan/rec/bpr.py", "exec"), module.__dict__)  # noqa: S102 (our own git history)
    sys.modules[name] = module
    return module


def bpr_setting() -> dict:
    """The BPR row's parameters in the published ML-1M table."""
    table = json.loads((ROOT / "docs" / "benchmarks" / "ml1m.json").read_text())
    return next(r["params"] for r in table["rows"] if r["model"] == "bpr")


def implicit_epoch():
    """A one-epoch fit of implicit's BPR (64 factors, one thread), or None without implicit."""
    try:
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError:
        return None

    def fit(X, factors: int) -> None:
        BayesianPersonalizedRanking(factors=factors, iterations=1, num_threads=1,
                                    random_state=0).fit(X, show_progress=False)
    return fit


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def time_epochs(X, old, factors: int, rounds: int, sgd_lr: float | None) -> dict:
    """Interleaved one-epoch fits: ``rounds`` of (baseline, current[, current-sgd], implicit)."""
    params = {"factors": factors, "lr": 3e-3, "reg": 3e-3, "epochs": 1, "batch_size": 2048, "seed": 0}
    contestants = {"baseline": lambda: old.BPR(**params).fit(X), "current": lambda: current.BPR(**params).fit(X)}
    if sgd_lr is not None:
        sgd = {**params, "lr": sgd_lr, "optimizer": "sgd"}
        contestants["current-sgd"] = lambda: current.BPR(**sgd).fit(X)
    imp = implicit_epoch()
    if imp is not None:
        Xf = X.astype(np.float32)
        contestants["implicit"] = lambda: imp(Xf, factors)
    for fn in contestants.values():  # warm-up: first-call costs stay out of the rounds
        fn()
    seconds = {k: [] for k in contestants}
    for _ in range(rounds):
        for k, fn in contestants.items():
            seconds[k].append(timed(fn))
    out = {"factors": factors, "seconds": seconds}
    ours = [k for k in seconds if k != "implicit"]
    for k in ours[1:]:
        out[f"baseline/{k}"] = spread([b / c for b, c in zip(seconds["baseline"], seconds[k])])
    if "implicit" in seconds:
        for k in ours:
            out[f"{k}/implicit"] = spread([s / i for s, i in zip(seconds[k], seconds["implicit"])])
    return out


def quality(ds, old, rev: str, seeds: list[int], sgd_lr: float | None) -> dict:
    """Test NDCG@20 / Recall@20 after the benchmark's refit on train + valid, old and new (and the
    new with SGD), per seed."""
    params = bpr_setting()
    versions = [("baseline", old, params), ("current", current, params)]
    if sgd_lr is not None:
        versions.append(("current-sgd", current, {**params, "lr": sgd_lr, "optimizer": "sgd"}))
    rows = []
    for seed in seeds:
        for label, module, setting in versions:
            t0 = time.perf_counter()
            model = module.BPR(**setting, seed=seed).fit(ds, parts=("train", "valid"))
            fit_s = time.perf_counter() - t0
            scores = evaluate(model, ds, "test", ks=(20,))
            rows.append({"version": label, "seed": seed, "fit_s": round(fit_s, 2),
                         "ndcg@20": scores["ndcg@20"], "recall@20": scores["recall@20"]})
            print(rows[-1], flush=True)
    out = {"params": params, "baseline": rev, "rows": rows}
    if sgd_lr is not None:
        out["current-sgd"] = {"optimizer": "sgd", "lr": sgd_lr}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the version to compare with")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per table size")
    ap.add_argument("--factors", default="64,128")
    ap.add_argument("--quality", action="store_true", help="also compare test NDCG@20 after the benchmark's fit")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--sgd-lr", type=float, default=None,
                    help='also time (and with --quality, score) optimizer="sgd" at this learning rate')
    ap.add_argument("--publish", action="store_true", help="write docs/benchmarks/bpr-speed.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    old = baseline_module(args.baseline)
    ds = prepare(read(ML1M, "lightgcn"), DataConfig(path=str(ML1M), format="lightgcn", split="predefined",
                                                     valid=0.1, test=0.2, seed=0))
    X = ds.matrix("train").tocsr()
    command = "python " + " ".join(["benchmarks/bpr_speed.py", *sys.argv[1:]])
    result = {"data": "ml1m (LightGCN++ split), train part", "pairs": int(X.nnz), "threads": 1,
              "batch_size": 2048, "baseline": args.baseline, "command": command, "timing": []}
    for factors in [int(f) for f in args.factors.split(",")]:
        result["timing"].append(time_epochs(X, old, factors, args.rounds, args.sgd_lr))
        print(json.dumps({k: v for k, v in result["timing"][-1].items() if k != "seconds"}), flush=True)
    out = PUBLISHED if args.publish else LOCAL
    if args.quality:
        seeds = [int(s) for s in args.seeds.split(",")]
        result["quality"] = {**quality(ds, old, args.baseline, seeds, args.sgd_lr), "command": command}
    elif out.exists():  # a timing-only run keeps the quality check already there (it has its own command)
        kept = json.loads(out.read_text()).get("quality")
        if kept and kept.get("command") and kept.get("baseline", args.baseline) == args.baseline:
            result["quality"] = kept
    write_json(out, result)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
