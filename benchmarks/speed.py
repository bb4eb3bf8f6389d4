"""Speed targets of the baselines on 2 CPU cores (not quality: hyperparameters are fixed, not tuned).

    python benchmarks/speed.py            # writes docs/speed.json and the table of docs/speed.md

Measures fit time (and process peak memory) of ItemKNN, RP3beta and EASE on Gowalla (LightGCN
split, train file) and EASE on ML-1M, and the time of a full-ranking evaluation of every Gowalla
test user over all 40,981 items. EASE on Gowalla runs last, so the peak RSS after it is its peak.
"""
from __future__ import annotations

import json
import os
import sys
import resource
import time
from pathlib import Path

import torch
from markers import write_section

from feedgan.data.dataset import DataConfig, prepare
from feedgan.data.readers import read
from feedgan.eval.metrics import evaluate
from feedgan.io import write_json
from feedgan.rec.baselines import EASE, ItemKNN, RP3beta

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))
BEGIN, END = "<!-- speed-table:begin -->", "<!-- speed-table:end -->"
TARGETS = {("gowalla", "itemknn"): 60, ("gowalla", "rp3beta"): 60, ("ml1m", "ease"): 10, ("gowalla", "eval"): 60}


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load(path: str) -> object:
    inter = read(DATA / path, "lightgcn")
    return prepare(inter, DataConfig(split="predefined", valid=0.0))


def main() -> None:
    if not DATA.exists():
        print(f"skip: {DATA} not found (set FEEDGAN_DATA)")
        return
    rows = []

    def timed(dataset: str, name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        secs = time.perf_counter() - t0
        rows.append({"dataset": dataset, "task": name, "seconds": secs, "peak_rss_gib": peak_gib(),
                     "target_s": TARGETS.get((dataset, name.split()[0]))})
        print(f"{dataset:8s} {name:28s} {secs:8.1f}s  peak {peak_gib():.1f} GiB", flush=True)
        return out

    ml1m = load("movielens-1m/lightgcnpp-implicit-split")
    timed("ml1m", "ease fit (l2=500)", lambda: EASE(l2=500).fit(ml1m))
    gow = load("lightgcn-gowalla")
    knn = timed("gowalla", "itemknn fit (k=100)", lambda: ItemKNN(k=100, shrink=10).fit(gow))
    res = timed("gowalla", "eval itemknn, all users", lambda: evaluate(knn, gow, "test", (20,)))
    rows[-1]["quality_untuned"] = {k: res[k] for k in ("recall@20", "ndcg@20", "users_evaluated")}
    timed("gowalla", "rp3beta fit (k=200)", lambda: RP3beta(k=200, alpha=1.0, beta=0.5).fit(gow))
    bench = ROOT / "docs" / "benchmarks" / "gowalla.json"
    if "--measure-ease" in sys.argv or not bench.exists():
        ease = timed("gowalla", "ease fit (l2=1000)", lambda: EASE(l2=1000).fit(gow))
        res = timed("gowalla", "eval ease, all users", lambda: evaluate(ease, gow, "test", (20,)))
        rows[-1]["quality_untuned"] = {k: res[k] for k in ("recall@20", "ndcg@20", "users_evaluated")}
    else:  # a 12-minute fit: reuse the one the baseline benchmark timed (same code, same machine)
        row = next((r for r in json.loads(bench.read_text())["rows"] if r["model"] == "ease"), None)
        if row is not None:
            t, l2 = row["test"], row["params"]["l2"]
            peak = row.get("peak_rss_gib_so_far", float("nan"))
            rows.append({"dataset": "gowalla", "task": f"ease fit (l2={l2:g}) [benchmarks/baselines.py]",
                         "seconds": t["fit_s"]["mean"], "peak_rss_gib": peak, "target_s": None})
            rows.append({"dataset": "gowalla", "task": "eval ease, all users [benchmarks/baselines.py]",
                         "seconds": t["eval_s"]["mean"], "peak_rss_gib": peak, "target_s": TARGETS[("gowalla", "eval")]})
    write_json(ROOT / "docs" / "speed.json", {"threads": torch.get_num_threads(), "rows": rows})
    lines = ["", "Reproduce: `python benchmarks/speed.py`. "
             "Hyperparameters are fixed, not tuned: these rows measure time, not quality. Peak RSS is the "
             "process peak so far (EASE on Gowalla runs last). EASE on Gowalla is taken from the baseline "
             "benchmark's own timing unless `--measure-ease` is given.", "",
             "| dataset | task | seconds | target s | peak RSS GiB |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['task']} | {r['seconds']:.1f} | {r['target_s'] or '-'} "
                     f"| {r['peak_rss_gib']:.1f} |")
    write_section(ROOT / "docs" / "speed.md", BEGIN, END, lines + [""], "speed-table")


if __name__ == "__main__":
    main()
