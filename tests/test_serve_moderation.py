"""Moderation endpoints over real HTTP: a simulated log with planted segment-attack fakes in the store,
the review queue, scores of stored users and of posted histories, the cache across writes, bad input
and the token."""
import numpy as np
import pandas as pd
import pytest
from test_serve_http import TOKEN, ThreadServer

from feedgan.data.schema import validate
from feedgan.data.simulate import simulate
from feedgan.moderation.attacks import inject
from feedgan.moderation.cli import review_queue
from feedgan.moderation.detect import anomaly_scores, pca_varselect, profile_features
from feedgan.serve import create_app
from feedgan.serve.store import Interaction, Store

N_REAL, HELD_OUT = 200, 3   # real users in the store; real users and fakes kept out of it, posted as histories
COLUMNS = ["user", "item", "action", "timestamp", "weight"]


def _rated(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The viewed pairs of a simulated log, rated 1..5 = item quality + user leniency + noise."""
    pairs = frame[frame["action"] == "view"].drop_duplicates(["user", "item"])[["user", "item", "timestamp"]]
    item_bias = rng.normal(0, 0.7, frame["item"].max() + 1)
    user_bias = rng.normal(0, 0.5, frame["user"].max() + 1)
    raw = 3.5 + item_bias[pairs["item"]] + user_bias[pairs["user"]] + rng.normal(0, 1.0, len(pairs))
    return pairs.assign(action="view", weight=np.clip(np.round(raw), 1, 5))


@pytest.fixture(scope="module")
def planted():
    """The stored log (N_REAL real users + 10 segment-attack fakes) and HELD_OUT real and fake histories."""
    log = _rated(simulate(n_users=N_REAL + HELD_OUT, n_items=150, exposures_per_user=200, seed=0)
                 .interactions.frame, np.random.default_rng(0))
    held_real = log[log["user"] >= N_REAL]
    attacked = inject(validate(log[log["user"] < N_REAL]), "segment", size=(10 + HELD_OUT) / N_REAL,
                      filler=0.05, seed=0).interactions.frame
    fakes = sorted(u for u in attacked["user"].unique() if u.startswith("fake-"))
    held_fake = attacked[attacked["user"].isin(fakes[10:])]
    stored = attacked[~attacked["user"].isin(fakes[10:])][COLUMNS].reset_index(drop=True)
    stored["action"] = stored["action"].astype(str)
    return {"stored": stored, "fakes": set(fakes[:10]), "held_real": held_real, "held_fake": held_fake}


def _fill(db, frame: pd.DataFrame) -> None:
    store = Store(db)
    store.add([Interaction(u, int(i), a, None if pd.isna(t) else float(t), float(w))
               for u, i, a, t, w in frame[COLUMNS].itertuples(index=False)])
    store.close()


@pytest.fixture(scope="module")
def server(planted, tmp_path_factory):
    root = tmp_path_factory.mktemp("mod")
    _fill(root / "feed.db", planted["stored"])
    s = ThreadServer(create_app(root / "runs", root / "feed.db"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def small_token_server(tmp_path_factory):
    """Three users only, and a token."""
    root = tmp_path_factory.mktemp("mod-small")
    rows = pd.DataFrame({"user": [f"u{k % 3}" for k in range(12)], "item": list(range(12)), "action": "view",
                         "timestamp": 1.7e9 + np.arange(12.0), "weight": 1.0})
    _fill(root / "feed.db", rows)
    s = ThreadServer(create_app(root / "runs", root / "feed.db", token=TOKEN))
    yield s
    s.stop()


def _history(frame: pd.DataFrame, user="someone") -> dict:
    return {"history": [{"user": user, "item": int(i), "action": "view", "timestamp": float(t), "weight": float(w)}
                        for i, t, w in frame[["item", "timestamp", "weight"]].itertuples(index=False)]}


def test_queue_ranks_the_planted_fakes_near_the_top(server, planted):
    status, body, _ = server.call("GET", "/moderation/queue?n=20")
    assert status == 200, body
    assert body["users"] == N_REAL + 10 and body["detector"] == "anomaly"
    assert body["store_version"] == len(planted["stored"])
    queue = body["queue"]
    assert [q["rank"] for q in queue] == list(range(1, 21))
    scores = [q["score"] for q in queue]
    assert scores == sorted(scores, reverse=True)
    assert all(len(q["reasons"]) == 3 and "(z=" in q["reasons"][0] for q in queue)
    found = sum(q["user"] in planted["fakes"] for q in queue)
    assert found >= 8, queue  # 8 of the 10 fakes among the top 20 of 210 users (at random: about 1)


@pytest.mark.parametrize("detector", ["anomaly", "pca-varselect"])
def test_queue_is_the_scan_queue_of_the_stored_log(server, planted, detector):
    """The service scores the store exactly as `feedgan moderate scan` scores the same log."""
    log = validate(planted["stored"])
    features = profile_features(log)
    scores = anomaly_scores(features) if detector == "anomaly" else pca_varselect(log).reindex(features.index)
    expected = review_queue(scores, features)
    body = server.call("GET", f"/moderation/queue?n=1000&detector={detector}")[1]
    assert body["detector"] == detector and len(body["queue"]) == len(expected)
    got = pd.DataFrame(body["queue"])
    assert got["score"].to_numpy() == pytest.approx(expected["score"].to_numpy(), abs=1e-9)
    assert set(got["user"].head(20)) == set(expected["user"].astype(str).head(20))
    assert got["reasons"].iloc[0] == [expected[f"reason_{j}"].iloc[0] for j in (1, 2, 3)]


def test_a_posted_fake_history_scores_above_a_real_one(server, planted):
    def percentiles(frame):
        out = []
        for user, rows in frame.groupby("user"):
            status, body, _ = server.call("POST", "/accounts/score", _history(rows))
            assert status == 200 and body["user"] is None and body["users_scored"] == N_REAL + 10, body
            assert 0 <= body["percentile"] <= 100 and len(body["reasons"]) == 3
            out.append(body["percentile"])
        return out

    fake, real = percentiles(planted["held_fake"]), percentiles(planted["held_real"])
    assert min(fake) >= 90, (fake, real)           # a new fake lands in the top tenth of the stored users
    assert np.mean(fake) > np.mean(real) + 20, (fake, real)


def test_a_stored_users_score_is_their_queue_entry(server, planted):
    queue = server.call("GET", "/moderation/queue?n=1000")[1]["queue"]
    for entry in (queue[0], queue[len(queue) // 2]):
        status, body, _ = server.call("POST", "/accounts/score", {"user": entry["user"]})
        assert status == 200, body
        assert body["score"] == entry["score"] and body["rank"] == entry["rank"]
        assert body["reasons"] == entry["reasons"] and body["user"] == entry["user"]
    assert server.call("POST", "/accounts/score", {"user": queue[0]["user"]})[1]["percentile"] == 100.0
    mid = server.call("POST", "/accounts/score", {"user": queue[len(queue) // 2]["user"]})[1]["percentile"]
    assert 40 < mid < 60


@pytest.mark.parametrize("body,status,words", [
    ({"user": "nobody"}, 404, "unknown user 'nobody'"),
    ({}, 422, "either"),
    ({"user": "0", "history": [{"user": "x", "item": 1}]}, 422, "not both"),
    ({"history": []}, 422, "history"),
    ({"history": [{"user": "x", "item": 1, "timestamp": 1.7e9}, {"user": "x", "item": 2, "action": "liek",
                                                                 "timestamp": 1.7e9}]}, 422, "history[1].action"),
    ({"history": [{"user": "x", "item": 1, "timestamp": 1.7e9}, {"user": "y", "item": 2, "timestamp": 1.7e9}]},
     422, "history[1].user"),
    ({"history": [{"user": "x", "item": 1, "timestamp": 1.7e9}, {"user": "x", "item": 2}]}, 422,
     "history[1].timestamp"),
    ({"history": [{"user": "x", "item": 1, "action": "impression", "timestamp": 1.7e9}]}, 422, "acted on nothing"),
    ({"history": [{"user": "x", "item": 1, "weight": "heavy"}]}, 422, "history.0.weight"),
    ({"user": "0", "detector": "oracle"}, 422, "detector"),
])
def test_bad_requests_name_the_field(server, body, status, words):
    got, resp, closes = server.call("POST", "/accounts/score", body)
    assert got == status and words in resp["error"] and not closes, resp


@pytest.mark.parametrize("query", ["n=0", "n=1001", "detector=oracle", "n=ten"])
def test_queue_arguments_are_bounded(server, query):
    status, body, _ = server.call("GET", f"/moderation/queue?{query}")
    assert status == 422 and body["error"].startswith("invalid request"), body


def test_too_few_users_is_a_409_with_the_fix_and_scoring_needs_the_token(small_token_server):
    s = small_token_server
    status, body, _ = s.call("GET", "/moderation/queue")                     # a read: open
    assert status == 409 and "only 3 users" in body["error"] and "POST /interactions" in body["error"], body
    assert s.call("POST", "/accounts/score", {"user": "u1"})[0] == 401
    assert s.call("POST", "/accounts/score", {"user": "u1"}, token="wrong")[0] == 401
    status, body, _ = s.call("POST", "/accounts/score", {"user": "u1"}, token=TOKEN)
    assert status == 409 and "at least 10" in body["error"], body


def test_an_int_id_store_without_timestamps_answers_int_ids(tmp_path):
    """Imported training rows carry no timestamp: the scorer then goes without the timing features."""
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"user": np.repeat(np.arange(1000, 1012), 5), "item": rng.integers(500, 540, 60),
                         "action": "like", "timestamp": np.nan, "weight": 1.0})
    _fill(tmp_path / "feed.db", rows)
    s = ThreadServer(create_app(tmp_path / "runs", tmp_path / "feed.db"))
    try:
        queue = s.call("GET", "/moderation/queue?n=3")[1]["queue"]
        assert all(isinstance(q["user"], int) for q in queue), queue
        body = s.call("POST", "/accounts/score", {"user": "1003"})[1]
        assert body["user"] == 1003 and body["users_scored"] == 12
        for row in ({"user": 77, "item": 501, "action": "like"}, {"user": 77, "item": 501, "timestamp": 1.7e9}):
            status, body, _ = s.call("POST", "/accounts/score", {"history": [row]})
            assert status == 200 and not any("span_days" in r for r in body["reasons"]), body
        status, body, _ = s.call("POST", "/accounts/score", {"user": "u1"})
        assert status == 422 and "ASCII digits" in body["error"], body
        status, body, _ = s.call("POST", "/accounts/score", {"history": [{"user": 7, "item": "p1"}]})
        assert status == 422 and "history[0].item" in body["error"], body
    finally:
        s.stop()


def test_requests_are_counted_in_the_metrics(server):
    top = server.call("GET", "/moderation/queue?n=1")[1]["queue"][0]["user"]
    server.call("POST", "/accounts/score", {"user": top})
    text = server.call("GET", "/metrics")[1]
    assert 'route="/moderation/queue",status="200"' in text and 'route="/accounts/score"' in text


def test_a_write_rebuilds_the_scorer(server, planted):
    """Last in the file: it adds a user to the store."""
    before = server.call("GET", "/moderation/queue?n=1000")[1]
    items = planted["stored"]["item"].unique()[:40]
    bot = [{"user": "bot-1", "item": int(i), "action": "view", "timestamp": 1.7e9 + k, "weight": 5.0}
           for k, i in enumerate(items)]
    assert server.call("POST", "/interactions", {"interactions": bot})[0] == 201
    after = server.call("GET", "/moderation/queue?n=1000")[1]
    assert after["store_version"] == before["store_version"] + len(bot)
    assert after["users"] == before["users"] + 1
    entry = next(q for q in after["queue"] if q["user"] == "bot-1")
    scored = server.call("POST", "/accounts/score", {"user": "bot-1"})[1]
    assert scored["score"] == entry["score"] and scored["store_version"] == after["store_version"]
