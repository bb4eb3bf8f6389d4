"""Small shared fixtures: every test builds its own tiny data in code."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

T0 = 1_600_000_000  # 2020-09-13, a plausible Unix-seconds origin for generated logs


def random_log(n_users: int = 30, n_items: int = 40, n_rows: int = 400, seed: int = 0, *,
               actions=("view", "like", "share"), timestamps: bool = True) -> pd.DataFrame:
    """A raw (unvalidated) random interaction log with integer ids."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user": rng.integers(0, n_users, n_rows),
                          "item": rng.integers(0, n_items, n_rows),
                          "action": rng.choice(list(actions), n_rows)})
    if timestamps:
        frame["timestamp"] = rng.integers(T0, T0 + 100_000, n_rows)
    return frame


@pytest.fixture
def make_log():
    """Factory for random raw logs: ``make_log(n_users=..., n_items=..., n_rows=..., seed=...)``."""
    return random_log


@pytest.fixture
def log_inter(make_log):
    """A validated random log with timestamps and three actions (30 users, 40 items, 400 rows)."""
    from feedgan.data.schema import validate

    return validate(make_log(), source="gen.csv")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny tensors: one torch thread is faster than two and immune to a busy machine.
    Results are identical either way; the previous setting is restored at the end."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
