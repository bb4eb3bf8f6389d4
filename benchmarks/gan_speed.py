"""Training speed of the GAN recommenders, and how much of the machine's matmul throughput it uses.

    python benchmarks/gan_speed.py                  # CPU (all cores torch sees) -> runs/gan-speed.json
    python benchmarks/gan_speed.py --device cuda    # the same on a GPU, when there is one
    python benchmarks/gan_speed.py --publish        # write docs/benchmarks/gan-speed.json instead

The JSON records the OpenMP waiting policy (``OMP_WAIT_POLICY``; on a busy machine the default
spin-then-sleep wait makes every multi-threaded kernel wait for a descheduled thread) and the load
averages before and after. For each (dataset, model) it times one-epoch fits with the configuration the benchmarks report,
each beside its own reference (a plain float32 matmul measured just before it), so a machine that
gets busier halfway through moves both. It reports the median seconds per epoch, condition rows
per second (an epoch passes over every row), the floating-point work of one epoch (counted exactly
with ``torch.utils.flop_counter`` on a separate one-epoch run) and so the achieved GFLOP/s, as the
median fraction of the matmul reference over the timed epochs. "Time to the selected epoch"
multiplies seconds per epoch by the epoch that validation chose in ``docs/benchmarks/<dataset>.json``
(or the authors' budget when the model has not been benchmarked there yet). Results go to
``runs/gan-speed.json``; ``--publish`` writes the tracked ``docs/benchmarks/gan-speed.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from feedgan.data.dataset import DataConfig, prepare
from feedgan.data.readers import read
from feedgan.io import write_json
from feedgan.rec.cfgan import CFGAN
from feedgan.rec.easegan import EASEGAN

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))
PUBLISHED = ROOT / "docs" / "benchmarks" / "gan-speed.json"
LOCAL = ROOT / "runs" / "gan-speed.json"

DATASETS = {  # bench name -> (path, format)
    "ml100k-cfgan": ("cfgan-original-splits/ML100K", "cfgan"),
    "ml1m": ("movielens-1m/lightgcnpp-implicit-split", "lightgcn"),
    "gowalla": ("lightgcn-gowalla", "lightgcn"),
}
# (dataset, label, model, epochs timed, the authors' epoch budget when nothing was benchmarked)
CASES = [
    ("ml100k-cfgan", "cfgan", lambda: CFGAN(), 10, 400),
    ("ml100k-cfgan", "easegan", lambda: EASEGAN(l2=500.0), 10, 50),
    ("ml1m", "cfgan", lambda: CFGAN(scheme="ZP", s_zr=0.9, s_pm=0.9, alpha=0.03, g_hidden=(300,), d_hidden=(250,),
                                    lr_g=1e-4, lr_d=5e-5, batch_g=256, batch_d=512, g_steps=1, d_steps=1), 3, 400),
    ("ml1m", "easegan", lambda: EASEGAN(l2=1000.0, batch_size=256), 3, 50),
    # item-based CFGAN on Gowalla conditions on 41k item rows of 30k users: user-based is the
    # cheaper direction there; EASE-GAN's 41k x 41k weight (plus Adam state) exceeds 24 GB
    ("gowalla", "cfgan", lambda: CFGAN(mode="user", scheme="ZP", s_zr=0.9, s_pm=0.9, g_hidden=(300,),
                                       d_hidden=(250,), batch_g=256, batch_d=512, g_steps=1, d_steps=1), 1, 400),
]


def matmul_gflops(device: str, n: int = 1024, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return reps * 2 * n**3 / (time.perf_counter() - t0) / 1e9


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def selected_epoch(dataset: str, label: str, default: int) -> tuple[int, str]:
    f = ROOT / "docs" / "benchmarks" / f"{dataset}.json"
    if f.exists():
        for r in json.loads(f.read_text())["rows"]:
            if r["model"] == label and "epochs" in r["params"]:
                return int(r["params"]["epochs"]), "chosen on validation"
    return default, "epoch cap, not benchmarked here yet"


def measure(dataset: str, label: str, make, epochs: int, budget: int, data, device: str) -> dict:
    X = data.matrix("train")
    probe = make()
    rows = X.shape[1] if getattr(probe, "mode", "user") == "item" else X.shape[0]  # conditions per epoch
    with FlopCounterMode(display=False) as counter:  # one epoch, counted (slow, not timed)
        make().set_params(epochs=1, device=device).fit(data, parts=("train", "valid"))
    flops = counter.get_total_flops()
    secs, peaks = [], []
    for i in range(epochs):  # each timed epoch beside its own matmul reference
        peaks.append(matmul_gflops(device))
        model = make().set_params(epochs=1, device=device, seed=i)
        t0 = time.perf_counter()
        model.fit(data, parts=("train", "valid"))  # no validation part: the timed run does not evaluate
        sync(device)
        secs.append(time.perf_counter() - t0)
    sec = statistics.median(secs)
    fractions = [flops / s / 1e9 / p for s, p in zip(secs, peaks)]
    chosen, source = selected_epoch(dataset, label, budget)
    return {"dataset": dataset, "model": label, "device": device, "epochs_timed": epochs, "s_per_epoch": sec,
            "s_per_epoch_all": secs, "rows_per_s": rows / sec, "gflop_per_epoch": flops / 1e9,
            "achieved_gflops": flops / sec / 1e9, "matmul_gflops": statistics.median(peaks),
            "matmul_gflops_all": peaks, "fraction_of_matmul": statistics.median(fractions),
            "selected_epoch": chosen, "selected_epoch_source": source, "time_to_selected_s": sec * chosen}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--publish", action="store_true", help=f"write {PUBLISHED.relative_to(ROOT)} (default: "
                    f"{LOCAL.relative_to(ROOT)})")
    args = ap.parse_args()
    if not DATA.exists():
        print(f"skip: {DATA} not found (set FEEDGAN_DATA)")
        return
    out = PUBLISHED if args.publish else LOCAL
    print(f"{args.device}, {torch.get_num_threads()} threads -> {out}", flush=True)
    rows, load_before = [], os.getloadavg()  # 1, 5, 15-minute load averages before and after
    for name in args.datasets.split(","):
        path, fmt = DATASETS[name]
        data = prepare(read(DATA / path, fmt), DataConfig(split="predefined", valid=0.0))
        for dataset, label, make, epochs, budget in CASES:
            if dataset != name:
                continue
            r = measure(dataset, label, make, epochs, budget, data, args.device)
            rows.append(r)
            print(f"{dataset:13s} {label:8s} {r['s_per_epoch']:7.2f} s/epoch {r['rows_per_s']:9.0f} rows/s "
                  f"{r['achieved_gflops']:6.1f} GFLOP/s ({r['fraction_of_matmul']:.0%} of matmul), "
                  f"{r['time_to_selected_s'] / 60:.1f} min to epoch {r['selected_epoch']}", flush=True)
    old = json.loads(out.read_text())["rows"] if out.exists() else []
    keep = [r for r in old if (r["dataset"], r["model"], r["device"]) not in
            {(n["dataset"], n["model"], n["device"]) for n in rows}]
    out.parent.mkdir(parents=True, exist_ok=True)
    policy = os.environ.get("OMP_WAIT_POLICY")
    write_json(out, {"threads": torch.get_num_threads(), "omp_wait_policy": policy or "(default)",
                     "load_average": [round(x, 1) for x in load_before + os.getloadavg()],
                     "command": (f"OMP_WAIT_POLICY={policy} " if policy else "") + "python benchmarks/gan_speed.py "
                     f"--device {args.device} --datasets {args.datasets}", "rows": keep + rows})


if __name__ == "__main__":
    main()
