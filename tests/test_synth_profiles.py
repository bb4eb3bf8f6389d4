"""Profiles: a log in, the same log out; splits by user; friends and timestamps kept."""
import numpy as np
import pandas as pd
import pytest

from feedgan.data.schema import validate
from feedgan.synth import Profiles


@pytest.fixture
def log():
    frame = pd.DataFrame({"user": [1, 1, 1, 2, 2, 3, 3, 1], "item": [10, 11, 10, 10, 12, 11, 12, 10],
                          "action": ["view", "view", "like", "view", "view", "view", "impression", "view"],
                          "timestamp": [100, 110, 120, 130, 140, 150, 160, 170]})
    social = pd.DataFrame({"src": [1, 2, 3], "dst": [2, 1, 9]})  # 9 is no user of the log
    return validate(frame, social=social)


def test_a_log_round_trips_through_profiles(log):
    p = Profiles.from_interactions(log)
    assert (p.n_users, p.n_items, sorted(p.action_names)) == (3, 3, ["like", "view"])  # impressions left out
    assert p.activity().tolist() == [3, 2, 1]  # (1,10) viewed twice counts once
    assert p.union().nnz == 5
    assert p.friends.nnz == 2 and p.friends[0, 1] == 1 and p.friends[1, 0] == 1  # 1-2 once, both ways
    assert p.times["view"][0, 0] == 170  # the latest view of (1, 10)
    back = Profiles.from_interactions(p.to_interactions())
    for a in p.actions:
        assert (back.actions[a] != p.actions[a]).nnz == 0
    assert (back.times["view"] != p.times["view"]).nnz == 0 and back.friends.nnz == 2


def test_split_users_puts_every_user_in_one_part(log):
    p = Profiles.from_interactions(log)
    parts = p.split_users((0.34, 0.33, 0.33), seed=1)
    users = np.concatenate([q.users for q in parts])
    assert sorted(users.tolist()) == [1, 2, 3] and all(q.n_items == 3 for q in parts)


def test_off_catalogue_rows_are_counted_and_shapes_checked(log):
    p = Profiles.from_interactions(log, items=np.array([10, 11]))
    assert p.n_items == 2 and p.notes["rows_off_catalogue"] == 1  # (2, 12); the impression was never counted
    with pytest.raises(ValueError, match="not \\(users, items\\)"):
        Profiles(p.users, p.items[:1], p.actions)


def test_an_action_without_events_still_writes_a_log_with_times():
    import numpy as np
    import scipy.sparse as sp

    from feedgan.synth import Profiles

    views = sp.csr_matrix(np.array([[1, 0], [0, 1]], dtype=np.float32))
    times = {"view": sp.csr_matrix(np.array([[100, 0], [0, 200]], dtype=np.float64)),
             "like": sp.csr_matrix((2, 2), dtype=np.float64)}
    p = Profiles(np.array(["u0", "u1"]), np.array(["a", "b"]), {"view": views, "like": sp.csr_matrix((2, 2))}, times)
    frame = p.to_interactions().frame
    assert len(frame) == 2 and sorted(frame["timestamp"].tolist()) == [100, 200]
