"""CFGAN seconds per epoch, this tree beside a reference revision, interleaved in one process.

    python benchmarks/cfgan_speed.py                     # vs f861720, 1 and 2 threads -> runs/cfgan-speed.json
    python benchmarks/cfgan_speed.py --pairs 5 --publish # also write docs/benchmarks/cfgan-speed.json
    OMP_WAIT_POLICY=PASSIVE python benchmarks/cfgan_speed.py   # the OpenMP runtime's waiting policy

The reference revision's ``src/feedgan`` is exported with ``git archive`` and imported as the
package ``feedgan_ref`` next to this tree's ``feedgan``, so both run in one process and every
round times all four (code, threads) settings back to back, in an order that rotates from round
to round: a machine that gets busier moves all of them. One timing is a ``fit`` of ``--epochs``
epochs of the ML-100K benchmark configuration (item-based ZP, the authors' setting) on the CFGAN
authors' split, divided by the epochs. Reported: the median over rounds of old / new (the speed-up)
and of 1-thread / 2-thread seconds (the thread scaling of each code), each with its range; the
load average around the run. The JSON keeps one run per OpenMP waiting policy. ``--check`` first fits old and new for a few epochs on a validation
split with the same seed and records whether the generators' weights are identical and both
validation NDCG@20 histories. ``--profile`` adds, per thread count, the share of one epoch's
operator time spent in the matrix products and the fused Adam step (the work a second thread can
split) against everything else (per-batch small kernels and Python), from ``torch.profiler``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))
ML100K = ("cfgan-original-splits/ML100K", "cfgan")
PUBLISHED = ROOT / "docs" / "benchmarks" / "cfgan-speed.json"
LOCAL = ROOT / "runs" / "cfgan-speed.json"
BIG_OPS = ("aten::mm", "aten::addmm", "aten::_fused_adam_")  # the kernels that split across threads


def reference_package(rev: str) -> str:
    """Export ``rev``'s ``src/feedgan`` to ``runs/cfgan-speed-ref/<rev>/feedgan_ref``; return the name."""
    home = ROOT / "runs" / "cfgan-speed-ref" / rev
    if not (home / "feedgan_ref").exists():
        blob = subprocess.run(["git", "archive", rev, "src/feedgan"], cwd=ROOT, check=True, capture_output=True).stdout
        tmp = home.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(fileobj=BytesIO(blob)) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / "src" / "feedgan").rename(tmp / "feedgan_ref")
        shutil.rmtree(home, ignore_errors=True)
        tmp.rename(home)
    sys.path.insert(0, str(home))
    return "feedgan_ref"


class Code:
    """One copy of the package: its CFGAN class and the ML-100K data prepared by its own readers."""

    def __init__(self, package: str, valid: float):
        ds = importlib.import_module(f"{package}.data.dataset")
        rd = importlib.import_module(f"{package}.data.readers")
        self.CFGAN = importlib.import_module(f"{package}.rec.cfgan").CFGAN
        log = rd.read(DATA / ML100K[0], ML100K[1])
        self.data = ds.prepare(log, ds.DataConfig(split="predefined", valid=0.0))
        self.valid_data = ds.prepare(log, ds.DataConfig(split="predefined", valid=valid, seed=0))

    def seconds_per_epoch(self, epochs: int, seed: int) -> float:
        model = self.CFGAN(epochs=epochs, seed=seed)
        t0 = time.perf_counter()
        model.fit(self.data, parts=("train", "valid"))  # no validation part: nothing is evaluated
        return (time.perf_counter() - t0) / epochs

    def checked_fit(self, epochs: int, seed: int):
        return self.CFGAN(epochs=epochs, eval_every=1, seed=seed).fit(self.valid_data, parts=("train",))


def check(old: Code, new: Code, epochs: int, seed: int) -> dict:
    a, b = old.checked_fit(epochs, seed), new.checked_fit(epochs, seed)
    wa, wb = a.generator_.state_dict(), b.generator_.state_dict()
    return {"epochs": epochs, "seed": seed, "identical_weights": all(torch.equal(wa[k], wb[k]) for k in wa),
            "max_abs_weight_diff": max(float((wa[k] - wb[k]).abs().max()) for k in wa),
            "valid_ndcg20_old": [round(v, 6) for _, v in a.valid_history_],
            "valid_ndcg20_new": [round(v, 6) for _, v in b.valid_history_]}


def op_shares(code: Code, threads: int) -> dict:
    """Share of one epoch's operator self time in BIG_OPS (profiled; slower than a timed epoch)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        code.seconds_per_epoch(1, 0)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    big = sum(e.self_cpu_time_total for e in events if e.key in BIG_OPS)
    return {"threads": threads, "big_ops": list(BIG_OPS), "share_big_ops": big / total, "op_time_s": total / 1e6}


def previous_runs(path: Path) -> dict:
    """The runs already in ``path``, by OpenMP waiting policy: a run replaces only its own policy's."""
    if not path.exists():
        return {}
    import json

    old = json.loads(path.read_text())
    return old.get("runs", {old["omp_wait_policy"]: old} if "omp_wait_policy" in old else {})


def spread(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "all": xs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="f861720", help="the revision to compare against")
    ap.add_argument("--pairs", type=int, default=3, help="rounds; each times all four settings")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per timed fit")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--check", type=int, default=3, metavar="EPOCHS", help="epochs of the equality check (0: skip)")
    ap.add_argument("--profile", action="store_true", help="record the share of time in the big kernels")
    ap.add_argument("--publish", action="store_true", help=f"write {PUBLISHED.relative_to(ROOT)} (default: "
                    f"{LOCAL.relative_to(ROOT)})")
    args = ap.parse_args()
    if not DATA.exists():
        print(f"skip: {DATA} not found (set FEEDGAN_DATA)")
        return
    from feedgan.io import write_json

    codes = {"old": Code(reference_package(args.ref), valid=0.1), "new": Code("feedgan", valid=0.1)}
    threads = [int(t) for t in args.threads.split(",")]
    out = {"ref": args.ref, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
           "epochs_per_fit": args.epochs, "load_before": os.getloadavg()}
    if args.check:
        torch.set_num_threads(threads[0])
        out["check"] = check(codes["old"], codes["new"], args.check, seed=0)
        print("check:", {k: v for k, v in out["check"].items() if not k.startswith("valid")}, flush=True)
    settings = [(c, t) for t in threads for c in codes]
    for c, t in settings:  # warm-up: first-touch allocations, thread pools
        torch.set_num_threads(t)
        codes[c].seconds_per_epoch(1, 0)
    secs: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
    for r in range(args.pairs):
        order = settings[r % len(settings):] + settings[:r % len(settings)]
        if r % 2:
            order.reverse()
        for c, t in order:
            torch.set_num_threads(t)
            secs[(c, t)].append(codes[c].seconds_per_epoch(args.epochs, seed=r))
        print(f"round {r}: " + "  ".join(f"{c}@{t}t {secs[(c, t)][-1]:.3f}" for c, t in settings), flush=True)
    out["load_after"] = os.getloadavg()
    out["s_per_epoch"] = {f"{c}@{t}": spread(v) for (c, t), v in secs.items()}
    out["speedup_old_over_new"] = {str(t): spread([o / n for o, n in zip(secs[("old", t)], secs[("new", t)])])
                                   for t in threads}
    if len(threads) > 1:
        a, b = threads[0], threads[-1]
        out[f"scaling_{a}t_over_{b}t"] = {c: spread([x / y for x, y in zip(secs[(c, a)], secs[(c, b)])]) for c in codes}
    if args.profile:
        out["op_shares"] = {c: [op_shares(codes[c], t) for t in threads] for c in codes}
    for t in threads:
        s = out["speedup_old_over_new"][str(t)]
        print(f"{t} thread(s): old / new {s['median']:.2f}x (range {s['min']:.2f}-{s['max']:.2f})")
    for k, v in out.items():
        if k.startswith("scaling"):
            print(k, {c: round(s["median"], 2) for c, s in v.items()})
    torch.set_num_threads(threads[0])
    out["command"] = "python benchmarks/cfgan_speed.py " + " ".join(sys.argv[1:])
    dest = PUBLISHED if args.publish else LOCAL
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_json(dest, {"runs": {**previous_runs(dest), out["omp_wait_policy"]: out}})
    print("->", dest)


if __name__ == "__main__":
    main()
