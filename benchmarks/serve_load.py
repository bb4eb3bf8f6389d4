"""Load test of `feedgan serve` on loopback: latency percentiles and throughput.

    python benchmarks/serve_load.py                       # EASE on ML-1M, 16 clients, 20 s per phase
    python benchmarks/serve_load.py --seconds 10 --clients 16
    python benchmarks/serve_load.py --phases health --seconds 8 --clients 4
    python benchmarks/serve_load.py --render               # rewrite the docs table from the saved JSON

Trains EASE (l2=1000, the value tuned in docs/benchmarks.md) on the ML-1M implicit train file into
a temporary registry, starts the real server (`feedgan serve`, one uvicorn process, with a token,
so writes carry ``Authorization``) on 127.0.0.1, and drives it with ``--clients`` concurrent
keep-alive HTTP clients (spread over at most 4 client processes, so the Python clients are not one
GIL) for each phase in ``--phases``:

* ``read``: ``GET /users/{id}/recommendations?n=20`` for random known users;
* ``mixed``: the same, with one request in five a ``POST /interactions`` of one new interaction;
* ``health``: ``GET /health`` (the store then holds the ~1M imported training interactions).

Client and server share the machine's cores, as they would on a 2-core box. Merges the phases run
into ``docs/benchmarks/serve-load.json`` (each phase keeps the command that measured it) and
rewrites the table between the ``serve-load`` markers of ``docs/serve.md``, each row marked
against the targets. ``--dry-run`` prints only. Traffic goes to 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import secrets
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
DOC = ROOT / "docs" / "serve.md"
BEGIN, END = "<!-- serve-load: begin (written by benchmarks/serve_load.py) -->", "<!-- serve-load: end -->"
TARGETS = {"p99_ms": 20.0, "reads_per_s": 300.0}  # p99: every row; reads/s: GET recommendations rows
PHASES = {"read": ("recs", 0.0), "mixed": ("recs", 0.2), "health": ("health", 0.0)}  # read path, write share
REQUEST = {"recs": "GET recommendations", "health": "GET /health", "write": "POST interactions"}


def client(port: int, users: list, items: list, threads: int, seconds: float, write_share: float, seed: int,
           read_path: str, token: str, out):
    """One client process: ``threads`` keep-alive connections in a loop until the deadline."""
    import threading

    lat: list[tuple[str, float, int]] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def loop(k: int):
        rng = random.Random(seed * 1000 + k)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.perf_counter() < deadline:
            if rng.random() < write_share:
                body = json.dumps({"user": rng.choice(users), "item": rng.choice(items), "action": "view"})
                t0 = time.perf_counter()
                conn.request("POST", "/interactions", body, auth)
                kind = "write"
            else:
                t0 = time.perf_counter()
                conn.request("GET", "/health" if read_path == "health" else
                             f"/users/{rng.choice(users)}/recommendations?n=20")
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


def phase(port: int, users, items, clients: int, seconds: float, name: str, token: str) -> dict:
    read_path, write_share = PHASES[name]
    procs, q = [], mp.get_context("fork").Queue()
    n_proc = min(4, clients)
    for p in range(n_proc):
        threads = clients // n_proc + (1 if p < clients % n_proc else 0)
        procs.append(mp.get_context("fork").Process(target=client, args=(port, users, items, threads, seconds,
                                                                          write_share, p, read_path, token, q)))
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    lat = [x for _ in procs for x in q.get()]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    out = {"clients": clients, "seconds": wall, "write_share": write_share, "read_path": read_path}
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
    ap.add_argument("--phases", default="read,mixed,health", help=f"comma-separated, of {', '.join(PHASES)}")
    ap.add_argument("--render", action="store_true", help="only rewrite the docs table from the saved JSON")
    ap.add_argument("--dry-run", action="store_true", help="measure and print; write nothing")
    args = ap.parse_args()
    if args.render:
        return write_doc(json.loads(OUT.read_text()))
    names = [p.strip() for p in args.phases.split(",") if p.strip()]
    if unknown := set(names) - set(PHASES):
        ap.error(f"unknown phase(s) {sorted(unknown)}; valid: {', '.join(PHASES)}")
    results = measure(names, args.seconds, args.clients)
    if results is None:
        return
    for name, r in results.items():
        for kind in ("read", "write"):
            if kind in r:
                x = r[kind]
                print(f"{name:6s} {kind:5s} {x['per_s']:7.0f}/s  p50 {x['p50_ms']:6.1f} ms  p99 {x['p99_ms']:6.1f} ms  "
                      f"errors {x['errors']}", flush=True)
    if args.dry_run:
        return
    from feedgan.io import write_json

    command = f"python benchmarks/serve_load.py --seconds {args.seconds:g} --clients {args.clients} --phases {','.join(names)}"
    saved = json.loads(OUT.read_text()) if OUT.exists() else {"phases": {}}
    for r in results.values():
        r["command"] = command
    saved.update({"cpus": os.cpu_count(), "model": "EASE l2=1000 on ML-1M (3,628 items)", "targets": TARGETS,
                  "phases": {**saved["phases"], **results}})
    write_json(OUT, saved)
    write_doc(saved)


def measure(names: list[str], seconds: float, clients: int) -> dict | None:
    """Train, start the server, warm it up, run each phase; None when the data is not there."""
    path = DATA / "movielens-1m" / "lightgcnpp-implicit-split"
    if not path.exists():
        print(f"skip: {path} not found (set FEEDGAN_DATA)")
        return None
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
    token = secrets.token_urlsafe(24)
    server = subprocess.Popen([sys.executable, "-c", "from feedgan.cli import app; app()", "serve", "--registry",
                               str(tmp / "runs"), "--db", str(tmp / "feed.db"), "--port", str(port)],
                              env={**os.environ, "FEEDGAN_TOKEN": token})
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
        phase(port, users, items, clients, 3.0, "read", token)  # warm-up: caches, allocator, connections
        return {name: phase(port, users, items, clients, seconds, name, token) for name in names}
    finally:
        server.terminate()
        server.wait(timeout=30)


def write_doc(saved: dict) -> None:
    """The table between the markers of docs/serve.md, each row against the targets."""
    from markers import write_section

    lines = ["", "| phase | request | requests/s | p50 ms | p90 ms | p99 ms | errors | targets |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    commands = []
    for name, r in saved["phases"].items():
        commands += [r["command"]] if r.get("command") not in commands else []
        for kind in ("read", "write"):
            if kind in r:
                x = r[kind]
                lines.append(f"| {name} | {REQUEST['write' if kind == 'write' else r.get('read_path', 'recs')]} "
                             f"| {x['per_s']:.0f} | {x['p50_ms']:.1f} | {x['p90_ms']:.1f} | {x['p99_ms']:.1f} "
                             f"| {x['errors']} | {_verdict(r, kind)} |")
    lines += ["", f"Targets ({saved['cpus']} CPU cores): p99 under {TARGETS['p99_ms']:.0f} ms on every row; at least "
              f"{TARGETS['reads_per_s']:.0f} requests/s on the recommendation rows. Measured by "
              + "; ".join(f"`{c}`" for c in commands) + " (traffic to 127.0.0.1 only).", ""]
    write_section(DOC, BEGIN, END, lines, "serve-load")


def _verdict(r: dict, kind: str) -> str:
    x = r[kind]
    p99 = "met" if x["p99_ms"] < TARGETS["p99_ms"] else "**missed**"
    out = [f"p99 < {TARGETS['p99_ms']:.0f} ms: {p99} ({x['p99_ms']:.0f} ms)"]
    if kind == "read" and r.get("read_path", "recs") == "recs":
        out.append(f">= {TARGETS['reads_per_s']:.0f}/s: {'met' if x['per_s'] >= TARGETS['reads_per_s'] else '**missed**'}")
    return "; ".join(out)


if __name__ == "__main__":
    main()
