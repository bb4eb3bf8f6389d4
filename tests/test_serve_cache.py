"""The recommendation cache, over HTTP against real server processes: answers equal the uncached
path, a write (from the service or another process on the store) makes the next answer fresh, and
activating a model empties it."""
import re

import pytest
from test_serve import Server, items_of, registry  # noqa: F401  (the module-scoped registry fixture)

from feedgan.serve.store import Interaction, Store

QUERIES = ["", "?n=5", "?n=7&exclude_seen=false", "?model=ease", "?model=ease&n=3", "?model=bpr&n=4"]


@pytest.fixture(scope="module")
def servers(registry, tmp_path_factory):  # noqa: F811
    """(cached, uncached): the same registry, each over its own copy of the imported training rows."""
    cached = Server(registry, tmp_path_factory.mktemp("cached") / "feed.db")
    uncached = Server(registry, tmp_path_factory.mktemp("uncached") / "feed.db", args=["--rec-cache", "0"])
    yield cached, uncached
    cached.stop()
    uncached.stop()


def cache_counts(server) -> dict:
    text = server.call("GET", "/metrics")[1]
    return {k: int(v) for k, v in re.findall(r"^feedgan_recommendation_cache_(hits|misses)_total (\d+)$", text, re.MULTILINE)}


def both(servers, path: str) -> tuple[dict, dict]:
    cached, uncached = servers
    a, b = cached.call("GET", path), uncached.call("GET", path)
    assert a[0] == b[0] == 200
    return a[1], b[1]


def test_cached_answers_equal_the_uncached_path(servers):
    cached, _ = servers
    start = cache_counts(cached)
    for user in (1003, 1040, 424242):  # two taste groups and a user nobody knows (popularity)
        for q in QUERIES:
            for _ in range(2):  # the second time from the cache
                a, b = both(servers, f"/users/{user}/recommendations{q}")
                assert a == b
    counts = cache_counts(cached)
    asked = 3 * len(QUERIES)
    assert counts["misses"] - start["misses"] == asked and counts["hits"] - start["hits"] == asked


def test_a_write_makes_the_next_answer_fresh(servers):
    cached, _ = servers
    for q in ("", "?model=ease"):  # the active model (answered on the event loop) and one named
        before = both(servers, f"/users/1005/recommendations{q}")[0]
        hits = cache_counts(cached)["hits"]
        assert both(servers, f"/users/1005/recommendations{q}")[0] == before
        assert cache_counts(cached)["hits"] == hits + 1
        top = items_of(before)[0]
        for s in servers:
            assert s.call("POST", "/interactions", {"user": 1005, "item": top, "action": "like"})[0] == 201
        after, fresh = both(servers, f"/users/1005/recommendations{q}")
        assert top not in items_of(after) and after == fresh


def test_a_write_for_another_user_keeps_the_cached_answer(servers):
    cached, _ = servers
    cached.call("GET", "/users/1006/recommendations")
    assert cached.call("POST", "/interactions", {"user": 1007, "item": 510, "action": "like"})[0] == 201
    hits = cache_counts(cached)["hits"]
    cached.call("GET", "/users/1006/recommendations")
    assert cache_counts(cached)["hits"] == hits + 1


def test_a_write_from_another_process_on_the_store_is_seen(servers, registry, tmp_path):  # noqa: F811
    """A second process writing to the store (another worker, a script) invalidates this one's answer."""
    db = tmp_path / "feed.db"
    s = Server(registry, db)
    try:
        before = s.call("GET", "/users/1008/recommendations?model=ease")[1]
        assert s.call("GET", "/users/1008/recommendations?model=ease")[1] == before  # now cached
        top = items_of(before)[0]
        other = Store(db)
        other.add([Interaction(1008, top, "like")])
        other.close()
        after = s.call("GET", "/users/1008/recommendations?model=ease")[1]
        assert top not in items_of(after)
    finally:
        s.stop()


def test_activating_a_model_empties_the_cache(servers):
    cached, _ = servers
    cached.call("GET", "/users/1009/recommendations")
    active = cached.call("GET", "/models")[1]["active"]
    assert cached.call("POST", "/models/ease/activate")[0] == 200
    assert cached.call("GET", "/users/1009/recommendations")[1]["model"] == "00001-train-ease"
    assert cached.call("POST", f"/models/{active}/activate")[0] == 200
    misses = cache_counts(cached)["misses"]
    assert cached.call("GET", "/users/1009/recommendations")[1]["model"] == active
    assert cache_counts(cached)["misses"] == misses + 1  # computed again, not the answer from before


def test_a_negative_cache_size_is_refused(registry, tmp_path):  # noqa: F811
    with pytest.raises(RuntimeError, match="rec-cache"):
        Server(registry, tmp_path / "feed.db", args=["--rec-cache", "-1"])
