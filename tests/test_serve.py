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
import pandas as pd
import pytest
import scipy.sparse as sp

from feedgan.data.dataset import DataConfig, Dataset, IdMap, Part, prepare
from feedgan.data.schema import validate
from feedgan.rec.base import Recommender
from feedgan.rec.baselines import EASE
from feedgan.rec.bpr import BPR
from feedgan.serve.store import MIGRATIONS, IdTypeError, Interaction, Store

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

    def __init__(self, registry, db, test_models: bool = False, env: dict | None = None, args: list | None = None):
        self.port = free_port()
        code = "from feedgan.cli import app; app()"
        if test_models:  # define this file's test-only model classes in the server process too
            code = ("import importlib.util as u; s = u.spec_from_file_location('serve_test_models', "
                    f"{os.path.abspath(__file__)!r}); s.loader.exec_module(u.module_from_spec(s)); " + code)
        self.proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--registry", str(registry), "--db", str(db),
                                      "--port", str(self.port), *(args or [])], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env={**os.environ, "FEEDGAN_NO_PROGRESS": "1", **(env or {})})
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

    def call(self, method: str, path: str, body=None, raw: bytes | None = None, token: str | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method, headers=headers)
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
    assert status == 200 and body["store"]["schema_version"] == len(MIGRATIONS)
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
    assert history[-1]["item"] == before[0] and history[-1]["action"] == "like"


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


def test_ids_have_the_store_type_in_history_recommendations_and_similar_items(server):
    hist = server.call("GET", "/users/1003/history")[1]
    recs = server.call("GET", "/users/1003/recommendations?n=10&model=ease")[1]
    similar = server.call("GET", "/items/505/similar?n=5&model=ease")[1]
    ids = [hist["user"], recs["user"], similar["item"], *(h["item"] for h in hist["interactions"]),
           *items_of(recs), *items_of(similar)]
    assert {type(i) for i in ids} == {int}, ids  # an integer store: every id an integer
    assert not {h["item"] for h in hist["interactions"]} & set(items_of(recs))  # comparable: seen items excluded


def test_unknown_action_is_refused_listing_the_known_ones(server):
    count = server.call("GET", "/health")[1]["store"]["interactions"]
    status, body = server.call("POST", "/interactions", {"user": 1003, "item": 501, "action": "liek"})
    assert status == 422 and "interactions[0].action" in body["error"] and "'liek'" in body["error"], body
    assert all(a in body["error"] for a in ("like", "share", "impression", "--allow-action liek")), body
    batch = {"interactions": [{"user": 1003, "item": 501, "action": "like"}, {"user": 1003, "item": 502,
                                                                              "action": "Share"}]}
    status, body = server.call("POST", "/interactions", batch)
    assert status == 422 and "interactions[1].action" in body["error"] and "nothing stored" in body["error"]
    assert server.call("GET", "/health")[1]["store"]["interactions"] == count
    assert server.call("POST", "/interactions", {"user": 1003, "item": 501, "action": "comment"})[0] == 201


def test_allow_action_adds_one_that_the_store_then_keeps(registry, tmp_path):
    db = tmp_path / "feed.db"
    s = Server(registry, db, args=["--allow-action", "bookmark"])
    try:
        assert s.call("POST", "/interactions", {"user": 1003, "item": 501, "action": "bookmark"}) == (201, {"stored": 1})
        assert s.call("POST", "/interactions", {"user": 1003, "item": 501, "action": "bookmarks"})[0] == 422
    finally:
        s.stop()
    s = Server(registry, db)  # without the flag: an action the store holds stays known
    try:
        assert s.call("POST", "/interactions", {"user": 1004, "item": 502, "action": "bookmark"})[0] == 201
        assert [h["action"] for h in s.call("GET", "/users/1003/history")[1]["interactions"]][-1] == "bookmark"
    finally:
        s.stop()


def test_a_model_of_another_dataset_is_refused(tmp_path):
    """Runs, oldest first: EASE on other item ids, EASE on text ids, EASE on this store's data (active)."""
    ds, other, text = small_dataset(), small_dataset(), small_dataset()
    other.item_ids = IdMap(ITEM_IDS + 10_000, "item")
    text.user_ids = IdMap(np.array([f"u{u}" for u in USER_IDS]), "user")
    text.item_ids = IdMap(np.array([f"{i}" for i in ITEM_IDS]), "item")  # the same digits, as text
    for k, d in enumerate((other, text, ds), 1):
        EASE(l2=5.0).fit(d).save(tmp_path / "runs" / f"0000{k}-train-ease" / "models" / "ease")
    s = Server(tmp_path / "runs", tmp_path / "feed.db")
    try:
        assert s.call("GET", "/health")[1]["active_model"] == "00003-train-ease"
        status, body = s.call("POST", "/models/00001-train-ease/activate")
        assert status == 409 and "only 0 of its 40 item ids are in the store" in body["error"], body
        status, body = s.call("POST", "/models/00002-train-ease/activate")
        assert status == 409 and "str ids" in body["error"] and "ints" in body["error"], body
        assert s.call("GET", "/health")[1]["active_model"] == "00003-train-ease"  # unchanged
        assert s.call("GET", "/users/1003/recommendations?model=00001-train-ease")[0] == 409
        assert s.call("GET", "/items/10505/similar?model=00001-train-ease")[0] == 409
        assert s.call("POST", "/models/00003-train-ease/activate") == (200, {"active": "00003-train-ease"})
    finally:
        s.stop()


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
        assert s.call("GET", "/users/2007/history")[1]["interactions"][0]["item"] == 507
    finally:
        s.stop()  # SIGINT: a clean stop checkpoints, so the .db file alone holds every row
    assert not (tmp_path / "feed.db-wal").exists() or (tmp_path / "feed.db-wal").stat().st_size == 0


# -- the store on its own -------------------------------------------------------------------------
def test_store_migrates_once_and_batches_are_atomic(tmp_path):
    st = Store(tmp_path / "s.db")
    assert st.version == len(MIGRATIONS)
    st.add([Interaction(1, 2), Interaction(1, 3, "like", 1.7e9, 2.0)])
    with pytest.raises(IdTypeError, match=r"interactions\[1\]\.item"):
        st.add([Interaction(2, 2), Interaction(2, "x")])
    with pytest.raises(ValueError, match="weight"):
        st.add([Interaction(2, 2, weight=float("nan"))])
    assert st.count() == 2 and not st.has_user("2")
    st.close()
    again = Store(tmp_path / "s.db")  # reopening applies nothing twice
    assert again.version == len(MIGRATIONS) and again.count() == 2 and again.id_type == "int"
    assert [h["item"] for h in again.history("1")] == [2, 3]  # read back in the store's id type


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


# -- target actions, auxiliary actions and propensities -------------------------------------------
class ItemRatePropensity(Recommender):
    """A tiny test-only model with ``predict_proba``: the mean of the user's and the item's smoothed
    fit-time target rates, in (0, 1)."""

    name = "test-item-rate-propensity"
    fold_in = False

    def __init__(self, smoothing: float = 1.0):
        self.smoothing = smoothing

    def _fit(self, X, progress=None):
        T, a = self.seen, float(self.smoothing)
        p0 = T.nnz / (T.shape[0] * T.shape[1])
        self.user_rate_ = (np.asarray(T.sum(1)).ravel() + a * p0) / (T.shape[1] + a)
        self.item_rate_ = (np.asarray(T.sum(0)).ravel() + a * p0) / (T.shape[0] + a)

    def _score(self, users, history):
        return (self.user_rate_[users][:, None] + self.item_rate_[None, :]) / 2

    def predict_proba(self, users, items):
        return (self.user_rate_[np.asarray(users)] + self.item_rate_[np.asarray(items)]) / 2


def action_log() -> pd.DataFrame:
    """Views, likes and shares of two taste groups: users 1000-1029 act on items 500-519, the rest
    on 520-539; a like or a share always comes with a view."""
    rng = np.random.default_rng(1)
    rows = []
    for u in range(N_USERS):
        block = np.arange(20) if u < 30 else np.arange(20, 40)
        for i in rng.choice(block, 10, replace=False):
            rows.append((USER_IDS[u], ITEM_IDS[i], "view"))
            if rng.random() < 0.6:
                rows.append((USER_IDS[u], ITEM_IDS[i], "like"))
            if rng.random() < 0.4:
                rows.append((USER_IDS[u], ITEM_IDS[i], "share"))
    return pd.DataFrame(rows, columns=["user", "item", "action"])


@pytest.fixture(scope="module")
def action_registry(tmp_path_factory):
    """Runs, oldest first: a model on every action, a propensity model for likes, two share models."""
    root = tmp_path_factory.mktemp("action-runs")
    inter = validate(action_log())
    ds = prepare(inter, DataConfig(split="random", target_action="share"))
    EASE(l2=10).fit(prepare(inter, DataConfig(split="random"))).save(root / "00001-train-ease" / "models" / "ease")
    ItemRatePropensity().fit(ds, target="like", aux={"view": 1.0}).save(
        root / "00002-train-rate" / "models" / "test-item-rate-propensity")
    EASE(l2=100).fit(ds, aux={"like": 1.0}).save(root / "00003-train-ease" / "models" / "ease")
    EASE(l2=10).fit(ds, aux={"view": 1.0, "like": 1.0}).save(root / "00004-train-ease" / "models" / "ease")
    return root


@pytest.fixture(scope="module")
def action_server(action_registry, tmp_path_factory):
    s = Server(action_registry, tmp_path_factory.mktemp("action-db") / "feed.db", test_models=True)
    yield s
    s.stop()


def test_registry_lists_targets_and_target_model_imports_its_actions(action_server, action_registry):
    body = action_server.call("GET", "/models")[1]
    assert body["active"] == "00004-train-ease" and body["actions"] == ["like", "share"]
    by_name = {m["name"]: m for m in body["models"]}
    assert by_name["00001-train-ease"]["target"] is None and not by_name["00001-train-ease"]["propensities"]
    assert by_name["00002-train-rate"]["target"] == "like" and by_name["00002-train-rate"]["propensities"]
    assert by_name["00004-train-ease"]["aux"] == {"view": 1.0, "like": 1.0}
    # the active share model's per-action matrices were imported under their own action names
    m = Recommender.load(action_registry / "00004-train-ease" / "models" / "ease")
    health = action_server.call("GET", "/health")[1]
    assert health["store"]["interactions"] == m.seen_.nnz + sum(c.nnz for c in m.channels_.values())
    hist = action_server.call("GET", "/users/1001/history")[1]["interactions"]
    assert {h["action"] for h in hist} == {"view", "like", "share"} and {h["source"] for h in hist} == {"import"}
    u = m.user_ids_.index(np.array([1001]))[0]
    shared = set(m.item_ids_.raw(m.seen_[u].indices).tolist())
    assert {h["item"] for h in hist if h["action"] == "share"} == shared


def test_action_picks_the_model_that_predicts_it(action_server):
    call = action_server.call
    status, body = call("GET", "/users/1003/recommendations?n=5&action=share")
    assert status == 200 and body["model"] == "00004-train-ease" and body["action"] == "share"
    assert body["fallback"] is None and len(body["items"]) == 5
    body = call("GET", "/users/1003/recommendations?n=5&action=like")[1]
    assert body["model"] == "00002-train-rate" and body["action"] == "like"  # no fold-in: its user vector
    assert call("GET", "/users/1003/recommendations?n=5")[1]["model"] == "00004-train-ease"  # the active one
    old = call("GET", "/users/1003/recommendations?n=5&model=00001-train-ease")[1]
    assert old["action"] is None and old["model"] == "00001-train-ease"
    assert call("GET", "/users/1003/recommendations?action=share&model=ease")[1]["model"] == "00004-train-ease"
    # the active model answers for its own action even when a newer model predicts it too
    assert call("POST", "/models/00003-train-ease/activate")[0] == 200
    try:
        assert call("GET", "/users/1003/recommendations?action=share")[1]["model"] == "00003-train-ease"
        assert call("GET", "/users/1003/recommendations?action=like")[1]["model"] == "00002-train-rate"
    finally:
        assert call("POST", "/models/00004-train-ease/activate")[0] == 200


def test_target_recommendations_exclude_only_target_items(action_server):
    call = action_server.call
    hist = call("GET", "/users/1005/history")[1]["interactions"]
    shared = {int(h["item"]) for h in hist if h["action"] == "share"}
    viewed = {int(h["item"]) for h in hist if h["action"] == "view"}
    recs = items_of(call("GET", "/users/1005/recommendations?n=15&action=share")[1])
    assert not shared & set(recs)
    assert (viewed - shared) & set(recs)  # viewed but not shared: still a share candidate
    everything = items_of(call("GET", "/users/1005/recommendations?n=15&model=00001-train-ease")[1])
    assert not viewed & set(everything)  # the old all-actions model excludes every touched item


def test_posted_like_and_share_change_the_next_answer(action_server):
    call = action_server.call
    url = "/users/1007/recommendations?n=40&action=share"  # every item the user has not shared
    before = {x["item"]: x["score"] for x in call("GET", url)[1]["items"]}
    assert all(500 <= i < 520 for i in list(before)[:3])  # the user's taste group first
    assert max(abs(v) for i, v in before.items() if i >= 520) < 1e-6  # nothing of the other group yet
    likes = [530, 531, 532, 533, 534]  # the other group's items, never touched by this user
    batch = {"interactions": [{"user": 1007, "item": i, "action": "like"} for i in likes]}
    assert call("POST", "/interactions", batch) == (201, {"stored": 5})
    after = {x["item"]: x["score"] for x in call("GET", url)[1]["items"]}
    assert list(after) != list(before) and max(v for i, v in after.items() if i >= 520) > 0.1  # counted at once
    assert set(likes) <= set(after) and len(after) == len(before)  # a like is not the target: nothing excluded
    top = next(iter(after))
    assert call("POST", "/interactions", {"user": 1007, "item": top, "action": "share"})[0] == 201
    again = items_of(call("GET", url)[1])
    assert top not in again and len(again) == len(after) - 1  # a share is the target: now excluded


def test_new_user_with_only_auxiliary_actions_is_folded_in(action_server):
    call = action_server.call
    body = call("GET", "/users/777777/recommendations?n=5&action=share")[1]
    assert body["fallback"] == "popularity"
    batch = {"interactions": [{"user": 777777, "item": 521 + k, "action": "like"} for k in range(4)]}
    assert call("POST", "/interactions", batch)[0] == 201
    body = call("GET", "/users/777777/recommendations?n=5&action=share")[1]
    assert body["fallback"] is None and all(520 <= i < 540 for i in items_of(body))


@pytest.mark.parametrize("query,status,words", [
    ("action=view", 404, ["no model predicts action 'view'", "auxiliary action", "valid actions: like, share"]),
    ("action=bogus", 404, ["'bogus'", "valid actions: like, share"]),
    ("action=%F0%9F%98%80%00", 404, ["valid actions: like, share"]),
    ("action=", 422, ["action"]),
    ("action=" + "x" * 65, 422, ["action"]),
    ("action=share&model=00001-train-ease", 422, ["every action", "valid actions: like, share"]),
    ("action=like&model=00004-train-ease", 422, ["action 'share', not 'like'"]),
])
def test_bad_action_gets_4xx_listing_valid_actions(action_server, query, status, words):
    got, body = action_server.call("GET", f"/users/1003/recommendations?{query}")
    assert got == status, body
    assert all(w in body["error"] for w in words), body


def test_predict_probabilities(action_server, action_registry):
    m = Recommender.load(action_registry / "00002-train-rate" / "models" / "test-item-rate-propensity")
    status, body = action_server.call("POST", "/predict", {"user": 1003, "items": [500, 531, 999999, "501"],
                                                           "action": "like"})
    assert status == 200, body
    assert (body["user"], body["action"], body["model"]) == (1003, "like", "00002-train-rate")
    u = m.user_ids_.index(np.array([1003]))
    want = m.predict_proba(np.repeat(u, 3), m.item_ids_.index(np.array([500, 531, 501])))
    got = body["probabilities"]
    assert [p["item"] for p in got] == [500, 531, 999999, "501"]  # as asked, in order
    assert [p["known"] for p in got] == [True, True, False, True] and got[2]["p"] is None
    assert np.allclose([got[0]["p"], got[1]["p"], got[3]["p"]], want) and all(0 < p < 1 for p in want)
    # the model by name (its own target is the action), or by kind
    for req in ({"model": "00002-train-rate"}, {"model": "test-item-rate-propensity", "action": "like"}):
        body = action_server.call("POST", "/predict", {"user": 1003, "items": [500], **req})[1]
        assert body["action"] == "like" and np.isclose(body["probabilities"][0]["p"], want[0])


@pytest.mark.parametrize("req,status,words", [
    ({"action": "share"}, 404, ["no model gives probabilities for action 'share'", "00004-train-ease",
                                "00002-train-rate (action 'like')"]),
    ({"action": "bogus"}, 404, ["'bogus'", "00002-train-rate (action 'like')"]),
    ({"model": "00004-train-ease"}, 422, ["gives no probabilities", "00002-train-rate (action 'like')"]),
    ({}, 422, ["00004-train-ease", "gives no probabilities"]),  # the active model, a share EASE
    ({"model": "00002-train-rate", "action": "share"}, 422, ["action 'like', not 'share'"]),
    ({"model": "nope", "action": "like"}, 404, ["unknown model"]),
    ({"action": "like", "user": 5}, 404, ["unknown user 5", "seen at fit"]),
    ({"action": "like", "user": "abc"}, 422, ["integers"]),
    ({"action": "like", "items": ["x"]}, 422, ["items[0]", "integers"]),
    ({"action": "like", "items": []}, 422, ["items"]),
    ({"action": "like", "items": list(range(1001))}, 413, ["1001 items", "1000"]),
    ({"action": "like", "colour": "red"}, 422, ["colour"]),
    ({"action": ""}, 422, ["action"]),
])
def test_predict_errors(action_server, req, status, words):
    got, body = action_server.call("POST", "/predict", {"user": 1003, "items": [500, 501], **req})
    assert got == status, body
    assert all(w in body["error"] for w in words), body


def test_store_imports_per_action_matrices(tmp_path):
    st = Store(tmp_path / "s.db")
    eye = sp.csr_matrix(np.eye(2, dtype=np.float32))
    n = st.import_matrix(np.array([10, 11]), np.array([5, 6]), {"share": eye, "view": sp.csr_matrix(np.ones((2, 2)))})
    assert n == 6 and st.count() == 6
    assert {a: sorted(v) for a, v in st.items_by_action("10").items()} == {"share": ["5"], "view": ["5", "6"]}
    assert [h["source"] for h in st.history("11")] == ["import"] * 3


def test_predict_with_the_real_propensity_model(tmp_path):
    """The service over the library's logistic propensity model (in process: no server needed)."""
    propensity = pytest.importorskip("feedgan.rec.propensity")
    from feedgan.serve.app import PredictIn, Service

    ds = prepare(validate(action_log()), DataConfig(split="random", target_action="like"))
    lr = propensity.LogisticPropensity().fit(ds, aux=("view",))
    lr.save(tmp_path / "runs" / "00001-train-logreg" / "models" / "logreg-propensity")
    svc = Service(tmp_path / "runs", tmp_path / "feed.db")
    assert [e.propensities for e in svc.registry.entries()] == [True]
    out = svc.predict(PredictIn(user=1003, items=[500, 530, 999999], action="like"))
    u = lr.user_ids_.index(np.array([1003]))
    want = lr.predict_proba(np.repeat(u, 2), lr.item_ids_.index(np.array([500, 530])))
    got = out["probabilities"]
    assert out["model"] == "00001-train-logreg" and out["action"] == "like"
    assert np.allclose([got[0]["p"], got[1]["p"]], want) and got[2] == {"item": 999999, "p": None, "known": False}
    assert svc.recommend("1003", 5, None, True, action="like")["model"] == "00001-train-logreg"
