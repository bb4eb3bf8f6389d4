"""The service's API docs render with no network: `/docs` (Swagger UI) and `/redoc` in headless Chromium.

    python benchmarks/docs_offline.py            # needs Chromium: `apt-get install chromium`

Starts `feedgan serve` on a free loopback port (an empty registry and store in a temporary folder),
opens each page in headless Chromium with every host but 127.0.0.1 unresolvable (as on a machine
without network), and checks the rendered DOM: the API's title, and one rendered operation per
operation of `/openapi.json`. Writes docs/benchmarks/docs_offline.json and the marked section of
docs/serve.md; exits 1 when a page does not render.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "docs_offline.json"
DOC = ROOT / "docs" / "serve.md"
BEGIN, END = "<!-- docs-offline: begin (written by benchmarks/docs_offline.py) -->", "<!-- docs-offline: end -->"
COMMAND = "python benchmarks/docs_offline.py"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no host but loopback: offline
                  "--virtual-time-budget=15000"]  # let the page's scripts fetch /openapi.json and render


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def start_server(tmp: Path, port: int) -> subprocess.Popen:
    (tmp / "runs").mkdir()
    env = {**os.environ, "FEEDGAN_NO_PROGRESS": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-c", "from feedgan.cli import app; app()", "serve", "--registry",
                             str(tmp / "runs"), "--db", str(tmp / "feed.db"), "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while True:
        try:
            if get(port, "/health")[0] == 200:
                return proc
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("feedgan serve did not start within 60 s")
        time.sleep(0.3)


def render(chromium: str, url: str, profile: Path) -> tuple[str, float]:
    """The DOM of ``url`` after its scripts ran, and the seconds Chromium took."""
    t0 = time.perf_counter()
    out = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120, check=False)
    return out.stdout, time.perf_counter() - t0


def operations(schema: dict) -> list[str]:
    return [f"{m.upper()} {p}" for p, ops in schema["paths"].items() for m in ops]


def check_swagger(dom: str, title: str) -> dict:
    """Swagger UI renders each operation as a ``div.opblock`` and the title as ``h1.title``."""
    return {"operations_rendered": len(re.findall(r'class="opblock opblock-', dom)),
            "title_rendered": bool(re.search(rf'<h\d class="title">{re.escape(title)}\b', dom))}


def check_redoc(dom: str, title: str) -> dict:
    """ReDoc gives each operation a ``data-section-id="operation/..."`` and the title an ``h1``."""
    return {"operations_rendered": len(set(re.findall(r'data-section-id="operation/([^"]+)"', dom))),
            "title_rendered": bool(re.search(rf"<h1[^>]*>{re.escape(title)}\b", dom))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    ap.add_argument("--no-write", action="store_true", help="check only; write neither the JSON nor the doc")
    args = ap.parse_args()
    if not args.chromium:
        raise SystemExit("Chromium not found: install it (Debian: apt-get install chromium) or pass --chromium PATH")
    version = subprocess.run([args.chromium, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp, port = Path(tmp), free_port()
        proc = start_server(tmp, port)
        try:
            schema = json.loads(get(port, "/openapi.json")[1])
            want, title = operations(schema), schema["info"]["title"]
            pages = {}
            for path, check in (("/docs", check_swagger), ("/redoc", check_redoc)):
                dom, seconds = render(args.chromium, f"http://127.0.0.1:{port}{path}", tmp / f"profile{len(pages)}")
                got = check(dom, title)
                pages[path] = {**got, "operations_in_schema": len(want), "dom_bytes": len(dom),
                               "seconds": round(seconds, 2),
                               "ok": got["title_rendered"] and got["operations_rendered"] == len(want)}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result = {"command": COMMAND, "chromium": version, "network": "every host but 127.0.0.1 unresolvable",
              "pages": pages, "ok": all(p["ok"] for p in pages.values())}
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write(result)
    sys.exit(0 if result["ok"] else 1)


def write(result: dict) -> None:
    from markers import write_section

    from feedgan.io import atomic_open

    with atomic_open(OUT) as fh:
        fh.write(json.dumps(result, indent=2) + "\n")
    rows = [f"| `{path}` | {p['operations_rendered']} of {p['operations_in_schema']} | "
            f"{'yes' if p['title_rendered'] else '**no**'} | {p['seconds']:.1f} | {'ok' if p['ok'] else '**blank**'} |"
            for path, p in result["pages"].items()]
    lines = ["", "| page | operations rendered | title rendered | seconds | result |", "|---|---:|---|---:|---|",
             *rows, "", f"{result['chromium']}, headless, {result['network']}; measured by `{COMMAND}`.", ""]
    write_section(DOC, BEGIN, END, lines, "docs-offline")


if __name__ == "__main__":
    main()
