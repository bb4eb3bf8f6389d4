"""The service, driven over HTTP against a real server process on a loopback port."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import scipy.sparse as sp

from feedgan.data.dataset import Dataset, IdMap, Part
from feedgan.rec.baselines import EASE
from feedgan.rec.bpr import BPR
from feedgan.serve.store import IdTypeError, Interaction, Store

N_USERS, N_ITEMS = 60, 40
USER_IDS = np.arange(1000, 1000 + N_USERS)  # raw ids differ from indices on purpose
ITEM_IDS = np.arange(500, 500 + N_ITEMS)


def small_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    rows, cols = [], []
    for u in range(N_USERS):  # two taste groups: users < 30 like items < 20, the rest the others
        block = np.arange(20) if u < 30 else np.arange(20, 40)
        for i in rng.choice(block, 6, replace=False):
            rows.append(u)
            cols.append(i)
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS))
    empty = sp.csr_matrix((N_USERS, N_ITEMS), dtype=np.float32)
    parts = {p: Part({"view": m}) for p, m in (("train", X), ("valid", empty), ("test", empty))}
    return Dataset(IdMap(USER_IDS, "user"), IdMap(ITEM_IDS, "item"), parts)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    ds = small_dataset()
    EASE(l2=5.0).fit(ds).save(root / "00001-train-ease" / "models" / "ease")
    (root / "00001-train-ease" / "metrics.json").write_text(json.dumps({"valid": {"ndcg@20": 0.5}}))
    BPR(factors=8, epochs=5, seed=0).fit(ds).save(root / "00002-train-bpr" / "models" / "bpr")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`feedgan serve` in a subprocess; ``call`` speaks JSON over HTTP to it."""

    def __init__(self, registry, db):
        self.port = free_port()
        code = "from feedgan.cli import app; app()"
        self.proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--registry", str(registry), "--db", str(db),
                                      "--port", str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={**os.environ, "FEEDGAN_NO_PROGRESS": "1"})
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode()}")
            try:
                if self.call("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("server did not start within 60 s")

    def call(self, method: str, path: str, body=None, raw: bytes | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode()
                status = r.status
        except urllib.error.HTTPError as e:
            text, status = e.read().decode(), e.code
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def stop(self, kill: bool = False):
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory):
    s = Server(registry, tmp_path_factory.mktemp("db") / "feed.db")
    yield s
    s.stop()


def items_of(resp) -> list:
    return [x["item"] for x in resp["items"]]


def test_health_and_training_data_imported(server):
    status, body = server.call("GET", "/health")
    assert status == 200 and body["store"]["schema_version"] == 1
    assert body["store"]["interactions"] >= N_USERS * 6  # the active model's training pairs were imported
    assert body["active_model"] == "00002-train-bpr"  # the newest run


def test_recommendations_exclude_history_and_follow_taste(server):
    status, body = server.call("GET", "/users/1003/recommendations?n=5&model=ease")
    assert status == 200 and body["fallback"] is None and len(body["items"]) == 5
    seen = {x["item"] for x in server.call("GET", "/users/1003/history")[1]["interactions"]}
    recs = items_of(body)
    assert not seen & set(recs)
    assert all(500 <= i < 520 for i in recs)  # user 1003 is in the first taste group
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_new_interaction_is_folded_in_without_retraining(server):
    before = items_of(server.call("GET", "/users/1004/recommendations?n=10&model=ease")[1])
    status, body = server.call("POST", "/interactions", {"user": 1004, "item": before[0], "action": "like"})
    assert status == 201 and body == {"stored": 1}
    after = server.call("GET", "/users/1004/recommendations?n=10&model=ease")[1]
    assert before[0] not in items_of(after) and items_of(after) != before
    history = server.call("GET", "/users/1004/history")[1]["interactions"]
    assert history[-1]["item"] == str(before[0]) and history[-1]["action"] == "like"


def test_unknown_user_gets_popularity_then_personal_results(server):
    status, body = server.call("GET", "/users/999999/recommendations?n=5&model=ease")
    assert status == 200 and body["fallback"] == "popularity" and len(body["items"]) == 5
    batch = {"interactions": [{"user": 999999, "item": 530 + k} for k in range(4)]}
    assert server.call("POST", "/interactions", batch) == (201, {"stored": 4})
    body = server.call("GET", "/users/999999/recommendations?n=5&model=ease")[1]
    assert body["fallback"] is None and all(520 <= i < 540 for i in items_of(body))
    # a model without fold-in still cannot score this user: popularity, flagged
    body = server.call("GET", "/users/999999/recommendations?n=5&model=bpr")[1]
    assert body["fallback"] == "popularity" and not set(items_of(body)) & {530, 531, 532, 533}


def test_similar_items(server):
    status, body = server.call("GET", "/items/505/similar?n=5&model=ease")
    assert status == 200 and len(body["items"]) == 5 and 505 not in items_of(body)
    assert all(500 <= i < 520 for i in items_of(body))
    status, body = server.call("GET", "/items/505/similar?n=3&model=bpr")  # cosine of item vectors
    assert status == 200 and len(body["items"]) == 3
    assert server.call("GET", "/items/77/similar?model=ease")[0] == 404


@pytest.mark.parametrize("method,path,body,status,words", [
    ("GET", "/users/1003/recommendations?model=nope", None, 404, ["unknown model", "00001-train-ease"]),
    ("GET", "/users/1003/recommendations?n=-1", None, 422, ["n"]),
    ("GET", "/users/1003/recommendations?n=abc", None, 422, ["n"]),
    ("GET", "/users/abc/recommendations", None, 422, ["integers"]),
    ("GET", "/users/5/history", None, 404, ["unknown user"]),
    ("POST", "/interactions", {"user": 1.5, "item": 3}, 422, ["user"]),
    ("POST", "/interactions", {"user": 1, "item": 3, "colour": "red"}, 422, ["colour"]),
    ("POST", "/interactions", {"user": 1, "item": 3, "weight": "heavy"}, 422, ["weight"]),
])
def test_bad_requests_get_clear_4xx(server, method, path, body, status, words):
    got, resp = server.call(method, path, body)
    assert got == status, resp
    assert all(w in json.dumps(resp) for w in words), resp


def test_bad_json_oversized_and_mixed_batches_store_nothing(server):
    count = server.call("GET", "/health")[1]["store"]["interactions"]
    status, body = server.call("POST", "/interactions", raw=b'{"user": 1, "item": ')
    assert status == 422 and "JSON" in body["error"]
    big = {"interactions": [{"user": 1, "item": 2}] * 10_001}
    status, body = server.call("POST", "/interactions", big)
    assert status == 413 and "10000" in body["error"]
    mixed = {"interactions": [{"user": 1001, "item": 501}, {"user": "bob", "item": 502}]}
    status, body = server.call("POST", "/interactions", mixed)
    assert status == 422 and "nothing stored" in body["error"] and "interactions[1].user" in body["error"]
    assert server.call("GET", "/health")[1]["store"]["interactions"] == count


def test_models_activate_and_metrics(server):
    status, body = server.call("GET", "/models")
    assert status == 200 and [m["kind"] for m in body["models"]] == ["ease", "bpr"]
    assert body["models"][0]["metrics"] == {"valid": {"ndcg@20": 0.5}}
    assert server.call("POST", "/models/ease/activate") == (200, {"active": "00001-train-ease"})
    assert server.call("GET", "/users/1003/recommendations")[1]["model"] == "00001-train-ease"
    assert server.call("POST", "/models/nope/activate")[0] == 404
    status, text = server.call("GET", "/metrics")
    assert status == 200
    assert 'feedgan_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"}' in text
    assert 'feedgan_request_seconds_bucket{method="GET",route="/health",le="+Inf"}' in text
    assert server.call("GET", "/openapi.json")[1]["info"]["title"] == "feedgan"


def test_acknowledged_writes_survive_a_crash_and_a_restart(registry, tmp_path):
    db = tmp_path / "feed.db"
    s = Server(registry, db)
    base = s.call("GET", "/health")[1]["store"]["interactions"]
    s.call("POST", "/models/ease/activate")
    for k in range(20):
        assert s.call("POST", "/interactions", {"user": 2000 + k, "item": 500 + k % 40})[0] == 201
    s.stop(kill=True)  # SIGKILL: no clean shutdown
    s = Server(registry, db)
    try:
        health = s.call("GET", "/health")[1]
        assert health["store"]["interactions"] == base + 20  # nothing lost, nothing imported twice
        assert health["active_model"] == "00001-train-ease"  # the choice survives too
        assert s.call("GET", "/users/2007/history")[1]["interactions"][0]["item"] == "507"
    finally:
        s.stop()


# -- the store on its own -------------------------------------------------------------------------
def test_store_migrates_once_and_batches_are_atomic(tmp_path):
    st = Store(tmp_path / "s.db")
    assert st.version == 1
    st.add([Interaction(1, 2), Interaction(1, 3, "like", 1.7e9, 2.0)])
    with pytest.raises(IdTypeError, match=r"interactions\[1\]\.item"):
        st.add([Interaction(2, 2), Interaction(2, "x")])
    with pytest.raises(ValueError, match="weight"):
        st.add([Interaction(2, 2, weight=float("nan"))])
    assert st.count() == 2 and not st.has_user("2")
    st.close()
    again = Store(tmp_path / "s.db")  # reopening applies nothing twice
    assert again.version == 1 and again.count() == 2 and again.id_type == "int"
    assert [h["item"] for h in again.history("1")] == ["2", "3"]


def test_store_ids_keep_their_type(tmp_path):
    st = Store(tmp_path / "s.db")
    st.add([Interaction("alice", "post-1")])
    assert st.id_type == "str" and st.canonical(7) == "7"
    ints = Store(tmp_path / "i.db")
    ints.import_matrix(np.array([10, 11]), np.array([5, 6]), sp.csr_matrix(np.eye(2, dtype=np.float32)))
    assert ints.canonical("11") == "11" and ints.items_of("11") == ["6"]
    for bad in ("abc", "011", True, 1.5):
        with pytest.raises(IdTypeError):
            ints.canonical(bad)
