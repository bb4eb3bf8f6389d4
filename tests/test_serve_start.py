"""The service as a person meets it first: docs that load offline, and a first start that answers at
once while the training rows are imported (over real HTTP: uvicorn on a loopback port)."""
import http.client
import json
import re
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest
from test_serve import N_USERS, Server, small_dataset
from test_serve_http import TOKEN, ThreadServer

import feedgan.progress
from feedgan.rec.baselines import EASE
from feedgan.serve import create_app
from feedgan.serve import store as store_module
from feedgan.serve.registry import Registry
from feedgan.serve.startup import ImportLog, TrainImport
from feedgan.serve.store import Store

ROWS = N_USERS * 6  # the training pairs of small_dataset()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    EASE(l2=5.0).fit(small_dataset()).save(root / "00001-train-ease" / "models" / "ease")
    return root


def fetch(port: int, path: str, token: str | None = None) -> tuple[int, dict, bytes]:
    """(status, headers with lower-case names, body) of one GET."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def asset_urls(html: str) -> list[str]:
    return re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", html) + re.findall(r"<link[^>]*\bhref=\"([^\"]+)\"", html)


WANT_TYPE = {".js": ("javascript", 100_000), ".css": ("text/css", 10_000), ".png": ("image/png", 500)}


# -- docs, offline ----------------------------------------------------------------------------------
def test_docs_pages_load_every_script_and_style_from_the_service(registry, tmp_path):
    s = ThreadServer(create_app(registry, tmp_path / "feed.db"))
    try:
        for page, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
            status, headers, body = fetch(s.port, page)
            html = body.decode()
            assert status == 200 and headers["content-type"].startswith("text/html")
            urls = asset_urls(html)
            assert any(u.endswith(script) for u in urls), urls
            assert not re.search(r"https?://|cdn", html, re.IGNORECASE)  # nothing from another host
            for url in urls:
                assert url.startswith("/") and not url.startswith("//"), url
                kind, least = WANT_TYPE[url[url.rfind("."):]]
                status, headers, content = fetch(s.port, url)
                assert status == 200 and kind in headers["content-type"] and len(content) > least, url
    finally:
        s.stop()


def test_docs_and_their_assets_follow_the_read_rule(registry, tmp_path):
    s = ThreadServer(create_app(registry, tmp_path / "feed.db", token=TOKEN, protect_reads=True))
    try:
        html = fetch(s.port, "/docs", TOKEN)[2].decode()
        for path in ("/docs", "/openapi.json", *asset_urls(html)):
            assert fetch(s.port, path)[0] == 401, path  # as every read with --protect-reads
            assert fetch(s.port, path, TOKEN)[0] == 200, path
    finally:
        s.stop()


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package chromium) to render /docs")
def test_docs_render_in_headless_chromium_with_no_network(registry, tmp_path):
    """Swagger UI draws one operation block per operation of /openapi.json, with every host but
    loopback unresolvable (benchmarks/docs_offline.py does the same for /docs and /redoc)."""
    s = ThreadServer(create_app(registry, tmp_path / "feed.db"))
    try:
        schema = json.loads(fetch(s.port, "/openapi.json")[2])
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                              "--disable-component-update", "--disable-sync", "--no-first-run",
                              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
                              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                              "--dump-dom", f"http://127.0.0.1:{s.port}/docs"],
                             capture_output=True, text=True, timeout=60, check=False).stdout
    finally:
        s.stop()
    rendered = re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom)
    assert sorted(rendered) == sorted(p for p, ops in schema["paths"].items() for _ in ops)
    assert re.search(r'<h\d class="title">feedgan\b', dom)


# -- the first start's import -----------------------------------------------------------------------
class HoldImport:
    """An import report that holds the import after its first chunk until ``release`` is set, or
    fails it there with ``fail``."""

    def __init__(self, fail: Exception | None = None):
        self.reached, self.release, self.fail = threading.Event(), threading.Event(), fail

    def __call__(self, imp: TrainImport) -> None:
        if imp.status == "starting" and imp.rows_done > 0 and not self.reached.is_set():
            self.reached.set()
            if self.fail is not None:
                raise self.fail
            assert self.release.wait(30)


def wait_for_health(s: ThreadServer, status: str) -> dict:
    deadline = time.time() + 30
    while (body := s.call("GET", "/health")[1])["status"] != status:
        assert time.time() < deadline, body
        time.sleep(0.02)
    return body


def test_first_start_answers_at_once_and_503s_store_calls_until_imported(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "WRITE_CHUNK", 100)
    hold = HoldImport()
    s = ThreadServer(create_app(registry, tmp_path / "feed.db", import_report=hold), wait_ready=False)
    try:
        assert hold.reached.wait(30)
        status, body, _ = s.call("GET", "/health")
        assert status == 503 and body["status"] == "starting" and body["store"]["interactions"] == 0
        assert body["import"]["rows_done"] == 100 and body["import"]["rows_total"] == ROWS
        status, headers, text = fetch(s.port, "/users/1003/recommendations?n=3")
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert f"starting: 100 of {ROWS} training rows" in text.decode()
        assert s.call("POST", "/interactions", {"user": 1003, "item": 501})[0] == 503
        assert s.call("GET", "/models")[0] == 200 and fetch(s.port, "/docs")[0] == 200  # need no store
        hold.release.set()
        body = wait_for_health(s, "ok")
        assert body["store"]["interactions"] == ROWS and body["import"]["rows_done"] == ROWS
        status, recs, _ = s.call("GET", "/users/1003/recommendations?n=3")
        assert status == 200 and len(recs["items"]) == 3
        assert s.call("POST", "/interactions", {"user": 1003, "item": 501})[0] == 201
    finally:
        hold.release.set()
        s.stop()


def test_a_failed_import_is_reported_and_stores_nothing(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "WRITE_CHUNK", 100)
    hold = HoldImport(fail=OSError("disk full"))
    s = ThreadServer(create_app(registry, tmp_path / "feed.db", import_report=hold), wait_ready=False)
    try:
        body = wait_for_health(s, "failed")
        assert s.call("GET", "/health")[0] == 503
        assert "disk full" in body["import"]["error"] and body["store"]["interactions"] == 0
        status, headers, text = fetch(s.port, "/users/1003/history")
        assert status == 503 and "retry-after" not in headers
        assert "failed (disk full)" in text.decode() and "holds none of them" in text.decode()
    finally:
        s.stop()
    with sqlite3.connect(tmp_path / "feed.db") as conn:  # not one row of the rolled-back import
        assert conn.execute("SELECT COUNT(*) FROM interactions").fetchone()[0] == 0


def test_stopping_during_the_import_stores_nothing_and_the_next_start_imports_again(registry, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setattr(store_module, "WRITE_CHUNK", 100)
    hold = HoldImport()
    s = ThreadServer(create_app(registry, tmp_path / "feed.db", import_report=hold), wait_ready=False)
    assert hold.reached.wait(30)
    stopper = threading.Thread(target=s.stop)
    stopper.start()
    time.sleep(0.3)  # the shutdown has asked the import to stop
    hold.release.set()
    stopper.join(30)
    assert not stopper.is_alive() and Store(tmp_path / "feed.db").count() == 0
    s = ThreadServer(create_app(registry, tmp_path / "feed.db"))
    try:
        assert s.call("GET", "/health")[1]["store"]["interactions"] == ROWS
    finally:
        s.stop()


# -- the import on the console ----------------------------------------------------------------------
def training_rows(registry) -> tuple:
    m = Registry(registry).load("00001-train-ease").model
    return m.user_ids_.values, m.item_ids_.values, m.train_


def test_import_prints_a_start_line_progress_lines_and_an_end_line(registry, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(store_module, "WRITE_CHUNK", 100)
    monkeypatch.setattr(feedgan.progress, "LINE_EVERY_S", 0.0)
    monkeypatch.setenv("FEEDGAN_PROGRESS", "lines")
    monkeypatch.delenv("FEEDGAN_NO_PROGRESS", raising=False)
    lines = []
    TrainImport(Store(tmp_path / "feed.db"), "00001-train-ease", training_rows(registry), ImportLog(lines.append)).run()
    assert lines[0].startswith(f"importing the {ROWS} training rows of model 00001-train-ease")
    assert re.fullmatch(rf"imported {ROWS} training rows in \d+\.\d s: ready", lines[-1]) and len(lines) == 2
    progress = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("importing training rows")]
    assert [ln.split(": ")[1].split(",")[0] for ln in progress] == [f"{k}/{ROWS}" for k in (100, 200, 300, ROWS)]


def test_a_failed_import_prints_one_error_line(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "WRITE_CHUNK", 100)
    lines = []
    log, hold = ImportLog(lines.append), HoldImport(fail=OSError("disk full"))

    def report(imp):
        log(imp)
        hold(imp)

    imp = TrainImport(Store(tmp_path / "feed.db"), "00001-train-ease", training_rows(registry), report)
    imp.run()
    assert imp.status == "failed" and len(lines) == 2 and lines[0].startswith("importing the ")
    assert re.fullmatch(r"error: the import of model 00001-train-ease's training rows failed after \d+\.\d s "
                        r"\(disk full\); the store holds none of them", lines[1])
    assert Store(tmp_path / "feed.db").count() == 0


def test_feedgan_serve_prints_the_import_start_and_end(registry, tmp_path):
    s = Server(registry, tmp_path / "feed.db")
    s.stop()
    out = s.proc.stdout.read().decode()
    assert f"importing the {ROWS} training rows of model 00001-train-ease" in out
    assert re.search(rf"imported {ROWS} training rows in \d+\.\d s: ready", out), out
