"""The service under hostile input, over real HTTP: uvicorn on a free loopback port in a thread.

Fuzzed requests never get a 5xx nor lose the keep-alive connection; bodies over the limit are
refused before they are read; writes and admin calls need the token; a clean stop leaves every
acknowledged row in the database file itself.
"""
import http.client
import json
import socket
import threading
import time
import urllib.parse

import numpy as np
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serve import free_port, small_dataset

from feedgan.data.dataset import IdMap
from feedgan.rec.baselines import EASE
from feedgan.serve import create_app
from feedgan.serve.store import Store

TOKEN = "t0ken-for-tests"


class ThreadServer:
    """``create_app(...)`` served by uvicorn in a thread of this process, ready (``/health`` 200)
    unless ``wait_ready=False``; ``stop`` shuts it down cleanly (the app's shutdown runs, as on SIGINT)."""

    def __init__(self, app, wait_ready: bool = True):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while wait_ready and self.call("GET", "/health")[0] != 200:  # the first start's import is done
            if time.time() > deadline:
                raise RuntimeError("server not ready: /health never said ok")
            time.sleep(0.02)

    def call(self, method: str, path: str, body=None, token: str | None = None, raw: bytes | None = None,
             conn: http.client.HTTPConnection | None = None):
        """(status, parsed body, whether the server closes the connection) over one keep-alive connection."""
        conn = conn or self.conn
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, data, headers)
        r = conn.getresponse()
        text = r.read().decode()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = text
        return r.status, parsed, r.will_close

    def stop(self):
        self.conn.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    EASE(l2=5.0).fit(small_dataset()).save(root / "00001-train-ease" / "models" / "ease")
    return root


@pytest.fixture(scope="module")
def open_server(registry, tmp_path_factory):
    """No token configured (loopback only): writes are open, as before tokens existed."""
    s = ThreadServer(create_app(registry, tmp_path_factory.mktemp("open") / "feed.db"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def str_server(tmp_path_factory):
    """A model over text ids ("u1000", "p500", ...): the store's ids are text."""
    root = tmp_path_factory.mktemp("str-runs")
    ds = small_dataset()
    ds.user_ids = IdMap(np.array([f"u{u}" for u in ds.user_ids.values]), "user")
    ds.item_ids = IdMap(np.array([f"p{i}" for i in ds.item_ids.values]), "item")
    EASE(l2=5.0).fit(ds).save(root / "00001-train-ease" / "models" / "ease")
    s = ThreadServer(create_app(root, tmp_path_factory.mktemp("str") / "feed.db"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def token_server(registry, tmp_path_factory):
    s = ThreadServer(create_app(registry, tmp_path_factory.mktemp("tok") / "feed.db", token=TOKEN,
                                max_body_bytes=64 * 1024))
    yield s
    s.stop()


# -- ids: one rule, no aliasing, no 500 --------------------------------------------------------------
NOT_INT_IDS = ["²", "①", "١٢٣", "--5", "-0", "007", "+5", " 12", "9" * 4301, str(2**63), str(-2**63 - 1), "12\n"]


@pytest.mark.parametrize("raw", NOT_INT_IDS)
def test_non_ascii_or_out_of_range_int_ids_get_422_and_keep_the_connection(open_server, raw):
    path = f"/users/{urllib.parse.quote(raw, safe='')}/history"
    status, body, closes = open_server.call("GET", path)
    assert status == 422 and "ASCII digits" in body["error"], body
    status, body, closes = open_server.call("POST", "/interactions", {"user": raw, "item": 501})
    assert status == 422 and "nothing stored" in body["error"] and not closes, body


def test_unicode_digits_do_not_alias_an_int_user(open_server):
    open_server.call("POST", "/interactions", {"user": 1010, "item": 502, "action": "like"})
    before = open_server.call("GET", "/users/1010/history")[1]["interactions"]
    assert open_server.call("POST", "/interactions", {"user": "١٠١٠", "item": 503})[0] == 422
    assert open_server.call("GET", "/users/1010/history")[1]["interactions"] == before
    assert open_server.call("GET", f"/users/{2**63 - 1}/history")[0] == 404  # in range: a valid, unknown id


def test_text_store_keeps_unicode_digits_as_their_own_ids(str_server):
    assert str_server.call("POST", "/interactions", {"user": "١٢٣", "item": "post-2"})[0] == 201
    assert str_server.call("POST", "/interactions", {"user": "123", "item": "post-3"})[0] == 201
    hist = str_server.call("GET", f"/users/{urllib.parse.quote('١٢٣')}/history")[1]["interactions"]
    assert [h["item"] for h in hist] == ["post-2"]
    status, body, _ = str_server.call("POST", "/interactions", {"user": "\ud800", "item": "post-4"})
    assert status == 422 and "user" in body["error"], body


# -- fuzz: no request gets a 5xx or drops the connection --------------------------------------------
ODD = st.sampled_from(NOT_INT_IDS + ["\ud800", "\x00", "", "abc", "1e3", "0x10", "٣", "𝟘"])
ID = st.one_of(st.integers(min_value=-2**70, max_value=2**70), st.text(max_size=12), ODD,
               st.floats(allow_nan=True), st.booleans(), st.none())
VALUE = st.one_of(ID, st.lists(ID, max_size=3), st.dictionaries(st.text(max_size=4), ID, max_size=2))
INTERACTION = st.fixed_dictionaries({"user": ID, "item": ID}, optional={
    "action": st.one_of(st.text(max_size=70), ODD), "weight": VALUE, "timestamp": VALUE, "extra": VALUE})
SEGMENT = st.one_of(ID.map(lambda v: str(v).encode("utf-8", "surrogatepass")), st.binary(max_size=8))  # raw bytes
QUERY = st.dictionaries(st.sampled_from(["n", "model", "action", "exclude_seen", "limit"]),
                        st.one_of(VALUE.map(lambda v: str(v).encode("utf-8", "surrogatepass")),
                                  st.sampled_from(["1", "0", "-1", "1001", "ease", "share"])),
                        max_size=3)


@st.composite
def requests(draw):
    kind = draw(st.sampled_from(["recs", "history", "similar", "post", "batch", "predict", "activate", "raw"]))
    seg = urllib.parse.quote(draw(SEGMENT), safe="%")
    query = urllib.parse.urlencode(draw(QUERY))
    if kind in ("recs", "history", "similar"):
        where = {"recs": "users/{}/recommendations", "history": "users/{}/history", "similar": "items/{}/similar"}
        return "GET", f"/{where[kind].format(seg)}?{query}", None
    if kind == "post":
        return "POST", "/interactions", json.dumps(draw(INTERACTION)).encode()
    if kind == "batch":
        return "POST", "/interactions", json.dumps({"interactions": draw(st.lists(INTERACTION, max_size=4))}).encode()
    if kind == "predict":
        body = {"user": draw(ID), "items": draw(st.lists(ID, max_size=4)), "action": draw(st.none() | ODD)}
        return "POST", "/predict", json.dumps(body).encode()
    if kind == "activate":
        return "POST", f"/models/{seg}/activate", None
    return "POST", draw(st.sampled_from(["/interactions", "/predict"])), draw(st.binary(max_size=40))


@settings(max_examples=250, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(req=requests())
def test_fuzzed_requests_never_5xx_nor_drop_the_connection(open_server, str_server, req):
    method, path, body = req
    for server in (open_server, str_server):
        status, resp, closes = server.call(method, path, raw=body)
        assert status < 500 and not closes, (method, path, body, status, resp)


# -- body size ----------------------------------------------------------------------------------------
def _raw_exchange(port: int, head: bytes, chunks, read_timeout: float = 5.0) -> tuple[int, dict, float]:
    """Send ``head`` then ``chunks`` (stopping when the server answers or resets), read the answer."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(head)
        try:
            for c in chunks:
                s.sendall(c)
        except OSError:
            pass  # the server answered and closed while we were still sending
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
                got = s.recv(65536)
                if not got:
                    break
                data += got
        except ConnectionResetError:
            pass
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}"), time.perf_counter() - t0


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_body_over_the_limit_by_content_length_is_refused_unread(token_server):
    head = (b"POST /interactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 55000000\r\n\r\n")
    status, body, seconds = _raw_exchange(token_server.port, head, [b'{"interactions": [' + b" " * 1000])
    assert status == 413 and "65,536 bytes" in body["error"] and "split" in body["error"], body
    assert seconds < 3.0  # answered from the headers, the 55 MB never read


def test_chunked_body_over_the_limit_is_cut_off_while_streaming(token_server):
    head = (b"POST /interactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b" " * 16384
    chunks = (b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(2000))  # 32 MB if all were sent
    status, body, seconds = _raw_exchange(token_server.port, head, chunks)
    assert status == 413 and "65,536 bytes" in body["error"], body
    assert seconds < 3.0
    # a body under the limit still works, on the same server
    assert token_server.call("POST", "/interactions", {"user": 1001, "item": 501}, token=TOKEN)[0] == 201


# -- auth -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,body", [
    ("POST", "/interactions", {"user": 1001, "item": 501}),
    ("POST", "/models/ease/activate", None),
])
def test_writes_and_admin_need_the_token(token_server, method, path, body):
    count = token_server.call("GET", "/health")[1]["store"]["interactions"]
    for token, words in ((None, "needs a token"), ("wrong", "invalid token"), (TOKEN[:-1], "invalid token")):
        status, resp, _ = token_server.call(method, path, body, token=token)
        assert status == 401 and words in resp["error"], resp
    assert token_server.call("GET", "/health")[1]["store"]["interactions"] == count  # nothing stored
    assert token_server.call(method, path, body, token=TOKEN)[0] in (200, 201)


def test_reads_are_open_by_default_and_models_show_no_absolute_paths(token_server, registry):
    assert token_server.call("GET", "/users/1003/recommendations?n=3")[0] == 200
    assert token_server.call("POST", "/predict", {"user": 1003, "items": [500]})[0] == 422  # a read: no 401
    status, body, _ = token_server.call("GET", "/models")
    assert status == 200 and body["models"][0]["path"] == "00001-train-ease/models/ease"
    assert str(registry) not in json.dumps(body)
    health = token_server.call("GET", "/health")[1]
    assert health["store"]["path"] == "feed.db"


def test_reads_can_require_the_token(registry, tmp_path):
    s = ThreadServer(create_app(registry, tmp_path / "feed.db", token=TOKEN, protect_reads=True))
    try:
        for path in ("/users/1003/recommendations", "/models", "/metrics", "/users/1003/history"):
            assert s.call("GET", path)[0] == 401
            assert s.call("GET", path, token=TOKEN)[0] == 200
        assert s.call("GET", "/health")[0] == 200  # liveness stays open
    finally:
        s.stop()


def test_an_empty_token_is_refused(registry, tmp_path):
    with pytest.raises(ValueError, match="token"):
        create_app(registry, tmp_path / "feed.db", token="  ")


# -- shutdown and health --------------------------------------------------------------------------------
def test_clean_stop_leaves_every_acknowledged_row_in_the_db_file(registry, tmp_path):
    s = ThreadServer(create_app(registry, tmp_path / "feed.db"))
    for k in range(15):
        assert s.call("POST", "/interactions", {"user": 3000 + k, "item": 500 + k})[0] == 201
    n = s.call("GET", "/health")[1]["store"]["interactions"]
    s.stop()
    wal = tmp_path / "feed.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    alone = tmp_path / "copy" / "feed.db"  # the db file alone, as a plain file copy would take it
    alone.parent.mkdir()
    alone.write_bytes((tmp_path / "feed.db").read_bytes())
    assert Store(alone).count() == n
