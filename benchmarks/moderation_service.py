"""Latency of the moderation endpoints of `feedgan serve`, cold (the call that builds the scorer) and warm.

    PYTHONPATH=src python benchmarks/moderation_service.py                  # ML-100K-sized simulation
    PYTHONPATH=src python benchmarks/moderation_service.py --data ml100k    # ../shared/data/movielens-100k

Fills a temporary store with the log plus 5% ``average``-attack fakes (3% filler), starts the real
server (`feedgan serve`, one uvicorn process, an empty registry) on 127.0.0.1 and times, per detector:

* ``cold``: ``GET /moderation/queue?n=50`` right after one ``POST /interactions`` (the store changed,
  so this call reads the store and builds the scorer: features, and the detector fitted);
* ``warm``: the same queue call again (median of ``--repeat``), ``POST /accounts/score`` of a stored
  user, and of a posted history (one real user's rows, under a new id).

The client is one keep-alive connection in this process; it shares the machine's cores with the
server. Prints a Markdown table; nothing is written. Traffic goes to 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from feedgan.data.simulate import simulate
from feedgan.moderation.attacks import inject
from feedgan.serve.store import Interaction, Store

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))
DETECTORS = ("anomaly", "pca-varselect")


def load(name: str):
    if name == "ml100k":
        from feedgan.data.readers import read

        return read(DATA / "movielens-100k", "movielens")
    return simulate(n_users=943, n_items=1682, seed=0).interactions


def fill(db: Path, frame) -> None:
    store = Store(db)
    cols = [c for c in ("user", "item", "action", "timestamp", "weight") if c in frame.columns]
    rows = frame[cols].itertuples(index=False)
    store.add([Interaction(str(r.user), str(r.item), str(r.action), float(getattr(r, "timestamp", np.nan))
                           if "timestamp" in cols else None, float(r.weight)) for r in rows])
    store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def call(self, method: str, path: str, body=None) -> tuple[int, dict, float]:
        t0 = time.perf_counter()
        self.conn.request(method, path, None if body is None else json.dumps(body),
                          {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        out = json.loads(r.read())
        return r.status, out, time.perf_counter() - t0


def start(registry: Path, db: Path) -> tuple[subprocess.Popen, Client]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from feedgan.cli import app; app()", "serve", "--registry",
                             str(registry), "--db", str(db), "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "FEEDGAN_NO_PROGRESS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            c = Client(port)
            if c.call("GET", "/health")[0] == 200:
                return proc, c
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="sim", choices=("sim", "ml100k"))
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    log = inject(load(args.data), "average", size=0.05, filler=0.03, seed=0).interactions
    frame = log.frame
    real = frame["user"].iloc[0]
    history = [{"user": "probe", "item": str(r.item), "action": str(r.action), "weight": float(r.weight),
                **({"timestamp": float(r.timestamp)} if log.has_timestamps else {})}
               for r in frame[frame["user"] == real].itertuples(index=False)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "feed.db"
        fill(db, frame)
        proc, c = start(Path(tmp) / "runs", db)
        try:
            for k, det in enumerate(DETECTORS):
                write = {"user": str(real), "item": str(frame["item"].iloc[k]), "action": "view", "weight": 1.0,
                         **({"timestamp": float(frame["timestamp"].iloc[0])} if log.has_timestamps else {})}
                assert c.call("POST", "/interactions", write)[0] == 201
                status, body, cold = c.call("GET", f"/moderation/queue?n=50&detector={det}")
                assert status == 200, body
                times = {"queue": [], "user": [], "history": []}
                for _ in range(args.repeat):
                    times["queue"].append(c.call("GET", f"/moderation/queue?n=50&detector={det}")[2])
                    times["user"].append(c.call("POST", "/accounts/score", {"user": str(real), "detector": det})[2])
                    s, out, t = c.call("POST", "/accounts/score", {"history": history, "detector": det})
                    assert s == 200, out
                    times["history"].append(t)
                results.append((det, body["users"], body["store_version"], cold,
                                *(float(np.median(times[key])) for key in ("queue", "user", "history"))))
        finally:
            c.conn.close()
            proc.terminate()
            proc.wait(timeout=30)
    users = frame["user"].astype(str)
    fakes = users[users.str.startswith("fake-")].nunique()
    print(f"{args.data}: {users.nunique():,} users ({fakes:,} of them fakes), {len(frame):,} interactions; the "
          f"posted history: {len(history)} rows; warm figures are medians of {args.repeat}\n")
    print("| detector | users | interactions | cold queue s | warm queue ms | stored user ms | posted history ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for det, n_users, version, cold, q, u, h in results:
        print(f"| {det} | {n_users:,} | {version:,} | {cold:.2f} | {q * 1e3:.1f} | {u * 1e3:.1f} | {h * 1e3:.0f} |")


if __name__ == "__main__":
    main()
