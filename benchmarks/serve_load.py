"""Load test of `feedgan serve` on loopback with a real HTTP client (wrk), beside the in-process cost.

    python benchmarks/serve_load.py                                   # this tree, 16 connections, 10 s per run
    python benchmarks/serve_load.py --variant before=/tmp/old/src --variant after=src --rounds 3
    python benchmarks/serve_load.py --variant nocache=src::--rec-cache=0 --variant cache=src --publish
    python benchmarks/serve_load.py --render                          # rewrite the docs table from docs JSON

Trains EASE (l2=1000, the value tuned in docs/benchmarks.md) on the ML-1M implicit train file into a
temporary registry and starts one real server (`feedgan serve`, with a token, so writes carry
``Authorization``) per ``--variant LABEL=SRC[::ARGS]``: ``SRC`` is the source folder the server
imports feedgan from (an older checkout's ``src`` to compare against), ``ARGS`` extra
``feedgan serve`` arguments (space-separated). Every server imports the ~1M training interactions
into its own store before the runs start. Then, for ``--rounds`` rounds, each variant in turn gets
one ``wrk`` run of ``--seconds`` at ``--connections`` connections per phase:

* ``read``: ``GET /users/{id}/recommendations?n=20`` for uniformly random known users;
* ``mixed``: the same with one request in five a ``POST /interactions`` of one new interaction;
* ``health``: ``GET /health``.

Variants take turns (A, B, A, B, ...), so on a shared machine each step is judged by its ratio to
the previous variant within a round (median and spread over the rounds), not by absolute numbers
from different moments. The recommendation cache's hits and misses (``/metrics``) are read around
each run. Beside that, the in-process cost of one recommendation request (the ASGI app called
directly: routing, validation, store read, scoring, top-n, JSON; no HTTP) is timed per variant in
its own process, cold (each user once) and warm (the same users again).

Client and servers share the machine's cores, as they would on a 2-core box. Writes
``runs/serve-load.json``; ``--publish`` writes ``docs/benchmarks/serve-load.json`` and the table
between the ``serve-load`` markers of ``docs/serve.md``. Traffic goes to 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEEDGAN_DATA", ROOT.parent / "shared" / "data"))
RUNS_OUT = ROOT / "runs" / "serve-load.json"
DOCS_OUT = ROOT / "docs" / "benchmarks" / "serve-load.json"
DOC = ROOT / "docs" / "serve.md"
BEGIN, END = "<!-- serve-load: begin (written by benchmarks/serve_load.py) -->", "<!-- serve-load: end -->"
TARGETS = {"p99_ms": 20.0, "reads_per_s": 1000.0}  # recommendations at 16 connections on 2 cores
PHASES = {"read": 0.0, "mixed": 0.2, "health": None}  # phase -> share of writes (None: GET /health)
IN_PROCESS_USERS = 300

LUA = """
local users = {%(users)s}
local items = {%(items)s}
local share = %(share)s
local token = "%(token)s"
local counter = 0
function setup(thread) counter = counter + 1; thread:set("id", counter) end
function init(args) math.randomseed(os.time() * 1000 + id) end
function request()
  if share == nil then return wrk.format("GET", "/health") end
  if math.random() < share then
    local body = string.format('{"user":%%d,"item":%%d,"action":"view"}', users[math.random(#users)],
                               items[math.random(#items)])
    return wrk.format("POST", "/interactions", {["Content-Type"] = "application/json",
                      ["Authorization"] = "Bearer " .. token}, body)
  end
  return wrk.format("GET", "/users/" .. users[math.random(#users)] .. "/recommendations?n=20")
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests":%%d,"seconds":%%.3f,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,' ..
    '"errors":%%d}\\n', summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=SRC[::ARGS]",
                    help="a server to measure, in order (default: current=src); repeatable")
    ap.add_argument("--seconds", type=float, default=10.0, help="per wrk run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--phases", default="read,mixed,health", help=f"comma-separated, of {', '.join(PHASES)}")
    ap.add_argument("--publish", action="store_true", help="write docs/benchmarks/serve-load.json and docs/serve.md")
    ap.add_argument("--render", action="store_true", help="only rewrite the docs table from the published JSON")
    args = ap.parse_args()
    if args.render:  # the summary recomputed from the saved runs, then the table
        from feedgan.io import write_json

        saved = json.loads(DOCS_OUT.read_text())
        saved["summary"] = summarise(saved["variants"], list(next(iter(saved["summary"].values()))), saved["runs"])
        write_json(DOCS_OUT, saved)
        return write_doc(saved)
    if shutil.which("wrk") is None:
        ap.error("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    names = [p.strip() for p in args.phases.split(",") if p.strip()]
    if unknown := set(names) - set(PHASES):
        ap.error(f"unknown phase(s) {sorted(unknown)}; valid: {', '.join(PHASES)}")
    variants = [parse_variant(v) for v in args.variant or ["current=src"]]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped: the servers are stopped too (finally)
    result = measure(variants, names, args)
    if result is None:
        return
    result["command"] = "python benchmarks/serve_load.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    from feedgan.io import write_json

    write_json(RUNS_OUT, result)
    print(f"wrote {RUNS_OUT}")
    if args.publish:
        write_json(DOCS_OUT, result)
        write_doc(result)
        print(f"wrote {DOCS_OUT} and the table in {DOC}")


def parse_variant(text: str) -> dict:
    label, sep, rest = text.partition("=")
    if not sep or not label:
        raise SystemExit(f"--variant {text!r}: write LABEL=SRC or LABEL=SRC::ARGS (e.g. cache=src::--rec-cache=0)")
    src, _, extra = rest.partition("::")
    path = (ROOT / src).resolve() if not Path(src).is_absolute() else Path(src)
    if not (path / "feedgan" / "serve" / "app.py").exists():
        raise SystemExit(f"--variant {label}: {path} holds no feedgan/serve/app.py: give a folder holding feedgan/")
    return {"label": label, "src": str(path), "args": extra.split()}


def measure(variants: list[dict], names: list[str], args) -> dict | None:
    """Train, start every variant's server, time the in-process cost, run the rounds; None without data."""
    path = DATA / "movielens-1m" / "lightgcnpp-implicit-split"
    if not path.exists():
        print(f"skip: {path} not found (set FEEDGAN_DATA)")
        return None
    from feedgan.data.dataset import DataConfig, prepare
    from feedgan.data.readers import read
    from feedgan.rec.baselines import EASE

    tmp = Path(tempfile.mkdtemp(prefix="feedgan-load-"))
    ds = prepare(read(path, "lightgcn"), DataConfig(split="predefined", valid=0.0))
    EASE(l2=1000.0).fit(ds).save(tmp / "runs" / "00001-train-ease" / "models" / "ease")
    users, items = ds.user_ids.values.tolist(), ds.item_ids.values.tolist()
    token = secrets.token_urlsafe(24)
    load = [os.getloadavg()]
    servers = []
    try:
        for k, v in enumerate(variants):
            servers.append(start_server(v, tmp / "runs", tmp / f"feed-{k}.db", token))
        scripts = {name: write_lua(tmp / f"{name}.lua", users, items, PHASES[name], token) for name in names}
        runs = []
        for r in range(args.rounds):
            for v, (_, port) in zip(variants, servers):
                v.setdefault("in_process_runs", []).append(in_process(v, tmp, users))
                print(f"round {r} {v['label']:12s} in process ms {v['in_process_runs'][-1]}", flush=True)
                for name in names:
                    before = cache_counts(port)
                    x = wrk(port, scripts[name], args)
                    x.update(round=r, variant=v["label"], phase=name, cache=_delta(before, cache_counts(port)))
                    runs.append(x)
                    print(f"round {r} {v['label']:12s} {name:6s} {x['per_s']:7.0f}/s  p50 {x['p50_ms']:6.1f} ms  "
                          f"p99 {x['p99_ms']:6.1f} ms  errors {x['errors']}  cache {x['cache']}", flush=True)
            load.append(os.getloadavg())
        for v in variants:
            v["in_process_ms"] = {k: float(np.median([x[k] for x in v["in_process_runs"]])) for k in ("cold", "warm")}
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"cpus": os.cpu_count(), "load_average_1m": [round(x[0], 2) for x in load], "client": wrk_version(),
            "connections": args.connections, "wrk_threads": args.threads, "seconds": args.seconds,
            "rounds": args.rounds, "model": "EASE l2=1000 on ML-1M (3,628 items)", "targets": TARGETS,
            "variants": variants, "runs": runs, "summary": summarise(variants, names, runs)}


def start_server(v: dict, registry: Path, db: Path, token: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FEEDGAN_TOKEN": token, "FEEDGAN_NO_PROGRESS": "1", "PYTHONPATH": v["src"]}
    proc = subprocess.Popen([sys.executable, "-c", "from feedgan.cli import app; app()", "serve", "--registry",
                             str(registry), "--db", str(db), "--port", str(port), *v["args"]],
                            env=env, stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"the server of variant {v['label']} did not start")
        time.sleep(0.5)


def write_lua(path: Path, users: list, items: list, share: float | None, token: str) -> Path:
    path.write_text(LUA % {"users": ",".join(map(str, users)), "items": ",".join(map(str, items)),
                           "share": "nil" if share is None else repr(share), "token": token})
    return path


def wrk(port: int, script: Path, args) -> dict:
    out = subprocess.run(["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.seconds:g}s",
                          "-s", str(script), f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True)
    m = re.search(r"^WRK (\{.*\})$", out.stdout, re.MULTILINE)
    if m is None:
        raise RuntimeError(f"no summary in wrk's output:\n{out.stdout}\n{out.stderr}")
    x = json.loads(m.group(1))
    return {"requests": x["requests"], "per_s": x["requests"] / x["seconds"], "errors": x["errors"],
            **{f"{k}_ms": x[f"{k}_us"] / 1e3 for k in ("p50", "p90", "p99", "max")}}


def wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)  # exits 1
    return (out.stdout or out.stderr).splitlines()[0].strip()


def cache_counts(port: int) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    return {k: int(v) for k, v in re.findall(r"^feedgan_recommendation_cache_(hits|misses)_total (\d+)$", text, re.MULTILINE)}


def _delta(before: dict, after: dict) -> dict | None:
    return {k: after[k] - before.get(k, 0) for k in after} or None


IN_PROCESS = r"""
import asyncio, json, sys, time
import numpy as np
from feedgan.serve.app import create_app
registry, db, users, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4:]
rec_cache = next((int(a.split("=")[1]) for a in args if a.startswith("--rec-cache=")), None)
app = create_app(registry, db, **({} if rec_cache is None else {"rec_cache": rec_cache}))
if app.state.service.startup.status == "starting":  # an empty store: import the training rows here
    app.state.service.startup.run()

async def call(path):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"n=20", "root_path": "",
             "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    sent = []
    async def receive(): return {"type": "http.request", "body": b"", "more_body": False}
    async def send(m): sent.append(m)
    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent

async def main():
    await call(f"/users/{users[-1]}/recommendations")
    out = {}
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        for u in users[:-1]:
            await call(f"/users/{u}/recommendations")
        out[label] = round((time.perf_counter() - t0) / (len(users) - 1) * 1e3, 3)
    print("INPROC " + json.dumps(out))
asyncio.run(main())
app.state.service.store.close()  # the WAL checkpointed: the .db file alone is the next run's store
"""


def in_process(v: dict, tmp: Path, users: list) -> dict:
    """ms per recommendation request through the ASGI app, no HTTP: cold (each user once), warm (again).
    The first run imports the training rows into a store that later runs start from a copy of."""
    rng = np.random.default_rng(len(v.get("in_process_runs", [])))
    picked = [int(u) for u in rng.choice(users, IN_PROCESS_USERS + 1, replace=False)]
    db, template = tmp / "inproc.db", tmp / "inproc-template.db"
    if template.exists():
        for suffix in ("", "-acked"):
            shutil.copyfile(f"{template}{suffix}", f"{db}{suffix}")
    out = subprocess.run([sys.executable, "-c", IN_PROCESS, str(tmp / "runs"), str(db), json.dumps(picked), *v["args"]],
                         env={**os.environ, "PYTHONPATH": v["src"], "FEEDGAN_NO_PROGRESS": "1"},
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the in-process run of variant {v['label']} failed:\n{out.stderr[-3000:]}")
    for leftover in (f"{db}-wal", f"{db}-shm"):  # empty after the checkpoint; never carried to another copy
        if os.path.exists(leftover):
            os.unlink(leftover)
    for suffix in ("", "-acked"):
        os.replace(f"{db}{suffix}", f"{template}{suffix}")  # the same rows: the next run's copy
    return json.loads(re.search(r"^INPROC (\{.*\})$", out.stdout, re.MULTILINE).group(1))


def summarise(variants: list[dict], names: list[str], runs: list[dict]) -> dict:
    """Per variant and phase: medians over the rounds, and the per-round ratio to the previous variant."""
    out = {}
    for k, v in enumerate(variants):
        out[v["label"]] = {}
        for name in names:
            mine = [x for x in runs if x["variant"] == v["label"] and x["phase"] == name]
            row = {key: float(np.median([x[key] for x in mine])) for key in ("per_s", "p50_ms", "p99_ms")}
            hits = [x["cache"] for x in mine if x.get("cache")]
            asked = sum(h["hits"] + h["misses"] for h in hits)
            if asked and PHASES[name] is not None:  # a server with the cache, asked for recommendations
                row["cache_hit_share"] = sum(h["hits"] for h in hits) / asked
            if k > 0:
                prev = {x["round"]: x for x in runs if x["variant"] == variants[k - 1]["label"] and x["phase"] == name}
                for key in ("per_s", "p99_ms"):
                    ratios = [x[key] / prev[x["round"]][key] for x in mine if x["round"] in prev]
                    row[f"{key}_ratio"] = {"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios)}
            out[v["label"]][name] = row
    return out


def write_doc(saved: dict) -> None:
    """The per-step table between the markers of docs/serve.md."""
    from markers import write_section

    head = ("| step | phase | requests/s | p50 ms | p99 ms | req/s vs previous step | p99 vs previous step "
            "| cache hits | in process ms (cold / warm) |")
    lines = ["", head, "|---|---|---:|---:|---:|---|---|---:|---|"]
    for v in saved["variants"]:
        for name, row in saved["summary"][v["label"]].items():
            ratio = {k: (f"{row[k]['median']:.2f}x ({row[k]['min']:.2f}-{row[k]['max']:.2f})" if k in row else "")
                     for k in ("per_s_ratio", "p99_ms_ratio")}
            hit = f"{row['cache_hit_share']:.0%}" if "cache_hit_share" in row else ""
            cost = v["in_process_ms"]
            lines.append(f"| {v['label']} | {name} | {row['per_s']:.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} "
                         f"| {ratio['per_s_ratio']} | {ratio['p99_ms_ratio']} | {hit} "
                         f"| {cost['cold']:.2f} / {cost['warm']:.2f} |")
    load = saved["load_average_1m"]
    lines += ["", f"{saved['client'].split(' Copyright')[0]}, {saved['connections']} connections, {saved['wrk_threads']} threads, "
              f"{saved['seconds']:g} s per run, {saved['rounds']} interleaved rounds (medians; ratios per round, "
              f"median and range); {saved['cpus']} CPU cores shared with other work (1-minute load average "
              f"{min(load):.1f}-{max(load):.1f} before the servers' own load), so absolute figures are low and only "
              f"the ratios compare. Targets: p99 under {TARGETS['p99_ms']:.0f} ms and at least "
              f"{TARGETS['reads_per_s']:,.0f} recommendations/s. Steps: "
              + "; ".join(f"`{v['label']}`: `{' '.join(['feedgan serve', *v['args']])}` from {_where(v['src'])}"
                          for v in saved["variants"])
              + f". Measured by `{saved['command']}` (traffic to 127.0.0.1 only).", ""]
    write_section(DOC, BEGIN, END, lines, "serve-load")


def _where(src: str) -> str:
    path = Path(src).resolve()
    return "this tree" if path == (ROOT / "src").resolve() else f"`{path}`"


if __name__ == "__main__":
    main()
