"""Load test of `feedgan serve` on loopback: latency percentiles and throughput.

    python benchmarks/serve_load.py                       # EASE on ML-1M, 16 clients, 20 s per phase
    python benchmarks/serve_load.py --seconds 10 --clients 16

Trains EASE (l2=1000, the value tuned in docs/benchmarks.md) on the ML-1M implicit train file into
a temporary registry, starts the real server (`feedgan serve`, one uvicorn process) on 127.0.0.1,
and drives it with ``--clients`` concurrent keep-alive HTTP clients (spread over 4 client
processes, so the Python clients are not one GIL) for two phases:

* ``read``: ``GET /users/{id}/recommendations?n=20`` for random known users;
* ``mixed``: the same, with one request in five a ``POST /interactions`` of one new interaction.

Client and server share the machine's cores, as they would on a 2-core box. Writes
``docs/benchmarks/serve-load.json`` and ``docs/serve.md``. Traffic goes to 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "docs" / "benchmarks" / "serve-load.json"
TARGETS = {"p99_ms": 20.0, "reads_per_s": 300.0}


def targets_line(results: dict) -> str:
    """The targets, and for each phase whether its reads met them."""
    verdicts = []
    for name, r in results.items():
        x = r["read"]
        p99 = "met" if x["p99_ms"] < TARGETS["p99_ms"] else f"missed ({x['p99_ms']:.0f} ms)"
        rate = "met" if x["per_s"] >= TARGETS["reads_per_s"] else f"missed ({x['per_s']:.0f}/s)"
        verdicts.append(f"{name}: p99 {p99}, throughput {rate}")
    return (f"Targets (2 CPU cores): p99 under {TARGETS['p99_ms']:.0f} ms and at least "
            f"{TARGETS['reads_per_s']:.0f} reads/s. Measured: " + "; ".join(verdicts) + ".")


def client(port: int, users: list, items: list, threads: int, seconds: float, write_share: float, seed: int, out):
    """One client process: ``threads`` keep-alive connections in a loop until the deadline."""
    import threading

    lat: list[tuple[str, float, int]] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def loop(k: int):
        rng = random.Random(seed * 1000 + k)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.perf_counter() < deadline:
            if rng.random() < write_share:
                body = json.dumps({"user": rng.choice(users), "item": rng.choice(items), "action": "view"})
                t0 = time.perf_counter()
                conn.request("POST", "/interactions", body, {"Content-Type": "application/json"})
                kind = "write"
            else:
                t0 = time.perf_counter()
                conn.request("GET", f"/users/{rng.choice(users)}/recommendations?n=20")
                kind = "read"
            r = conn.getresponse()
            r.read()
            mine.append((kind, time.perf_counter() - t0, r.status))
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(lat)


def phase(port: int, users, items, clients: int, seconds: float, write_share: float) -> dict:
    procs, q = [], mp.get_context("fork").Queue()
    n_proc = min(4, clients)
    for p in range(n_proc):
        threads = clients // n_proc + (1 if p < clients % n_proc else 0)
        procs.append(mp.get_context("fork").Process(target=client, args=(port, users, items, threads, seconds,
                                                                          write_share, p, q)))
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    lat = [x for _ in procs for x in q.get()]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    out = {"clients": clients, "seconds": wall, "write_share": write_share}
    for kind in ("read", "write"):
        ms = np.array([l for k, l, _ in lat if k == kind]) * 1e3
        if len(ms) == 0:
            continue
        errors = sum(1 for k, _, s in lat if k == kind and s >= 400)
        out[kind] = {"requests": int(len(ms)), "per_s": len(ms) / wall, "errors": errors,
                     "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
                     "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    path = DATA / "movielens-1m" / "lightgcnpp-implicit-split"
    if not path.exists():
        print(f"skip: {path} not found (set FEEDGAN_DATA)")
        return
    from feedgan.data.dataset import DataConfig, prepare
    from feedgan.data.readers import read
    from feedgan.rec.baselines import EASE

    tmp = Path(tempfile.mkdtemp(prefix="feedgan-load-"))
    ds = prepare(read(path, "lightgcn"), DataConfig(split="predefined", valid=0.0))
    t0 = time.perf_counter()
    model = EASE(l2=1000.0).fit(ds)
    model.save(tmp / "runs" / "00001-train-ease" / "models" / "ease")
    print(f"EASE on ML-1M: fit {time.perf_counter() - t0:.1f}s", flush=True)
    users = ds.user_ids.values.tolist()
    items = ds.item_ids.values.tolist()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", "from feedgan.cli import app; app()", "serve", "--registry",
                               str(tmp / "runs"), "--db", str(tmp / "feed.db"), "--port", str(port)])
    try:
        deadline = time.time() + 120
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start")
                time.sleep(0.5)
        phase(port, users, items, args.clients, 3.0, 0.0)  # warm-up: caches, allocator, connections
        results = {"read": phase(port, users, items, args.clients, args.seconds, 0.0),
                   "mixed": phase(port, users, items, args.clients, args.seconds, 0.2)}
    finally:
        server.terminate()
        server.wait(timeout=30)
    for name, r in results.items():
        for kind in ("read", "write"):
            if kind in r:
                x = r[kind]
                print(f"{name:6s} {kind:5s} {x['per_s']:7.0f}/s  p50 {x['p50_ms']:6.1f} ms  p99 {x['p99_ms']:6.1f} ms  "
                      f"errors {x['errors']}", flush=True)
    from feedgan.io import atomic_open, write_json

    command = f"python benchmarks/serve_load.py --seconds {args.seconds:g} --clients {args.clients}"
    write_json(OUT, {"command": command, "cpus": os.cpu_count(), "model": "EASE l2=1000 on ML-1M (3,628 items)",
                     "targets": TARGETS, "phases": results})
    lines = ["# Serving: latency and throughput", "", f"Reproduce: `{command}` (traffic to 127.0.0.1 only). "
             f"EASE (l2=1000) trained on the ML-1M implicit train file; one `feedgan serve` process; "
             f"{args.clients} keep-alive clients in 4 processes on the same {os.cpu_count()} cores as the server.", "",
             "| phase | request | requests/s | p50 ms | p90 ms | p99 ms | errors |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        for kind in ("read", "write"):
            if kind in r:
                x = r[kind]
                lines.append(f"| {name} | {'GET recommendations' if kind == 'read' else 'POST interactions'} "
                             f"| {x['per_s']:.0f} | {x['p50_ms']:.1f} | {x['p90_ms']:.1f} | {x['p99_ms']:.1f} "
                             f"| {x['errors']} |")
    lines += ["", targets_line(results)]
    with atomic_open(ROOT / "docs" / "serve.md") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
