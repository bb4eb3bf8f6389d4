"""Seeded, reproducible train/valid/test splits of an interaction log.

Splits work on (user, item) *pairs*, not rows: every action a user took on one item (view, like,
share, ...) lands in the same part, so a like in test can never leak through a view in train.

:func:`split` returns one code per row of ``inter.frame``:

====  ==============  ===========================================================
code  name            meaning
====  ==============  ===========================================================
0     train           fit on these
1     valid           targets for model selection
2     test            targets touched once, after selection
3     valid_input     history of held-out validation users (``by-user`` only)
4     test_input      history of held-out test users (``by-user`` only)
====  ==============  ===========================================================

Methods
-------
``random``          per-user random holdout: each user's pairs are shuffled and cut by fraction
``leave-last-out``  per user, the latest pair is test and the one before it valid (needs timestamps)
``temporal``        one global time cut: the latest ``test`` fraction of pairs is test, etc.
``by-user``         strong generalisation: whole users are held out; their pairs are cut into a
                    fold-in history (``*_input``) and targets (fraction ``target``)
``predefined``      the log's own ``part`` column (train/test files); validation, when the files
                    have none, is cut from train per user, never from test

A target action
---------------
``split(..., target_action="share")`` holds out pairs *of that action*: the unit is still the
(user, item) pair, but only pairs with a ``share`` row are candidates, and each method above runs
on them (leave-last-out and temporal on the time of the target row). The target row of a held-out
pair goes to valid/test; the pair's other (auxiliary) rows, such as the view before the share:

- ``aux_in_train=True`` (default, the realistic setting: the platform knows who viewed what) stay
  in the user's history (train, or the fold-in part of a by-user split). With the temporal split
  only those before the cut do; later auxiliary rows go to the part their own time falls in.
- ``aux_in_train=False`` go with the target row into its held-out part.

Pairs without a target row stay in the history (predefined: in their file's part). A held-out
pair's target row is never in the history, whatever the setting (predefined: the files decide, as
without a target; a like shipped in both the train and the test file stays in both).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import DataError, Interactions

TRAIN, VALID, TEST, VALID_INPUT, TEST_INPUT = range(5)
PART_NAMES = ("train", "valid", "test", "valid_input", "test_input")
METHODS = ("random", "leave-last-out", "temporal", "by-user", "predefined")


def _pairs(frame: pd.DataFrame):
    """Factorise rows into (user, item) pairs. Returns (pair_of_row, pair_user, n_pairs)."""
    u, _ = pd.factorize(frame["user"], sort=True)
    i, items = pd.factorize(frame["item"], sort=True)
    key = u.astype(np.int64) * len(items) + i
    uniq, pair_of_row = np.unique(key, return_inverse=True)
    return pair_of_row, (uniq // len(items)).astype(np.int64), len(uniq)


def _rank_within(group: np.ndarray, sort_key: np.ndarray):
    """Position of each element inside its group when the group is ordered by ``sort_key``.

    Returns (rank, group_size) per element; both vectorised, no loop over groups.
    """
    order = np.lexsort((sort_key, group))
    g_sorted = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g_sorted)) + 1]
    sizes = np.diff(np.r_[starts, len(group)])
    rank_sorted = np.arange(len(group)) - np.repeat(starts, sizes)
    rank, size = np.empty_like(rank_sorted), np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    size[order] = np.repeat(sizes, sizes)
    return rank, size


def _holdout(group: np.ndarray, rng: np.random.Generator, valid: float, test: float) -> np.ndarray:
    """Per-group random holdout by fraction; every group keeps at least one training element."""
    rank, size = _rank_within(group, rng.random(len(group)))
    n_test = np.minimum(np.floor(test * size + 0.5), size - 1)
    n_valid = np.minimum(np.floor(valid * size + 0.5), size - 1 - n_test)
    codes = np.full(len(group), TRAIN, dtype=np.int8)
    codes[rank < n_test + n_valid] = VALID
    codes[rank < n_test] = TEST
    return codes


def _check_fractions(valid: float, test: float) -> None:
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise DataError(f"split fractions valid={valid}, test={test} must be >= 0 and sum to less than 1",
                        fix="e.g. --valid 0.1 --test 0.2")


def split(inter: Interactions, method: str = "random", *, valid: float = 0.1, test: float = 0.2,
          target: float = 0.2, seed: int = 0, target_action: str | None = None,
          aux_in_train: bool = True) -> np.ndarray:
    """Assign every row of ``inter.frame`` to a part (codes above). Deterministic for a seed.

    With ``target_action``, only that action's pairs are held out (see the module docstring)."""
    if method not in METHODS:
        raise DataError(f"unknown split {method!r}", fix=f"use one of {', '.join(METHODS)}")
    _check_fractions(valid, test)
    if target_action is not None:
        return _split_target(inter, method, valid=valid, test=test, target=target, seed=seed,
                             action=target_action, aux_in_train=aux_in_train)
    return _split_pairs(inter, method, valid=valid, test=test, target=target, seed=seed)


def _split_pairs(inter: Interactions, method: str, *, valid: float, test: float, target: float,
                 seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = inter.frame
    pair_of_row, pair_user, n_pairs = _pairs(frame)

    if method == "random":
        pair_codes = _holdout(pair_user, rng, valid, test)
    elif method == "leave-last-out":
        pair_ts = _pair_time(inter, pair_of_row, n_pairs, method)
        # ties broken at random, so equal timestamps do not favour low item ids
        rank, size = _rank_within(pair_user, pair_ts + rng.random(n_pairs) * 0.5)
        from_end = size - 1 - rank
        n_hold = 1 + (valid > 0)
        pair_codes = np.full(n_pairs, TRAIN, dtype=np.int8)
        enough = size > n_hold  # users keep at least one training pair
        pair_codes[enough & (from_end == 0) & (test > 0)] = TEST
        if valid > 0:
            pair_codes[enough & (from_end == (1 if test > 0 else 0))] = VALID
    elif method == "temporal":
        pair_ts = _pair_time(inter, pair_of_row, n_pairs, method)
        t_test = np.quantile(pair_ts, 1 - test) if test > 0 else np.inf
        t_valid = np.quantile(pair_ts, 1 - test - valid) if valid > 0 else t_test
        pair_codes = np.full(n_pairs, TRAIN, dtype=np.int8)
        pair_codes[pair_ts >= t_valid] = VALID
        pair_codes[pair_ts >= t_test] = TEST
    elif method == "by-user":
        n_users = int(pair_user.max()) + 1
        user_rank = rng.permutation(n_users)
        n_test_u, n_valid_u = int(round(test * n_users)), int(round(valid * n_users))
        role = np.full(n_users, TRAIN, dtype=np.int8)
        role[user_rank < n_test_u + n_valid_u] = VALID
        role[user_rank < n_test_u] = TEST
        targets = _holdout(pair_user, rng, 0.0, target) == TEST  # (n_pairs,) target vs fold-in
        pair_role = role[pair_user]
        pair_codes = pair_role.copy()
        pair_codes[(pair_role == VALID) & ~targets] = VALID_INPUT
        pair_codes[(pair_role == TEST) & ~targets] = TEST_INPUT
    else:  # predefined
        return _predefined(inter, pair_of_row, pair_user, n_pairs, rng, valid)
    return pair_codes[pair_of_row]


def _pair_time(inter: Interactions, pair_of_row: np.ndarray, n_pairs: int, method: str) -> np.ndarray:
    if not inter.has_timestamps:
        raise DataError(f"the {method} split needs timestamps and this log has none", file=inter.source,
                        fix="use --split random or by-user, or a log with a timestamp column")
    first = np.full(n_pairs, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, pair_of_row, inter.frame["timestamp"].to_numpy())
    return first.astype(np.float64)


def _predefined(inter, pair_of_row, pair_user, n_pairs, rng, valid) -> np.ndarray:
    if not inter.has_parts:
        raise DataError("the predefined split needs a log with train/test parts", file=inter.source,
                        fix="read train and test files with a split-aware format (lightgcn, cfgan) or use --split random")
    part = inter.frame["part"].astype(str).to_numpy()
    codes = np.select([part == "train", part == "valid", part == "test"], [TRAIN, VALID, TEST]).astype(np.int8)
    if (codes == VALID).any() or valid == 0:
        return codes
    # validation is cut from the training pairs of each user, with the share of *training* pairs
    # that makes `valid` a fraction of that user's train pairs.
    train_pairs = np.zeros(n_pairs, dtype=bool)
    train_pairs[pair_of_row[codes == TRAIN]] = True
    idx = np.flatnonzero(train_pairs)
    pair_codes = np.full(n_pairs, TRAIN, dtype=np.int8)
    held = _holdout(pair_user[idx], rng, 0.0, valid) == TEST
    pair_codes[idx[held]] = VALID
    out = codes.copy()
    is_train = codes == TRAIN
    out[is_train] = pair_codes[pair_of_row[is_train]]
    return out


def _split_target(inter: Interactions, method: str, *, valid: float, test: float, target: float, seed: int,
                  action: str, aux_in_train: bool) -> np.ndarray:
    """Hold out pairs of ``action`` only; auxiliary rows follow ``aux_in_train`` (module docstring)."""
    from .schema import EXPOSURE

    frame = inter.frame
    actions = [str(a) for a in frame["action"].cat.categories]
    if action not in actions:
        raise DataError(f"target action {action!r} is not in this log", file=inter.source,
                        fix=f"use one of {', '.join(a for a in actions if a != EXPOSURE)}")
    is_t = (frame["action"] == action).to_numpy()
    pair_of_row, pair_user, n_pairs = _pairs(frame)
    # the target rows alone, split by the chosen method: the same code path as a plain split
    sub = inter.with_frame(frame[is_t])
    t_codes = _split_pairs(sub, method, valid=valid, test=test, target=target, seed=seed)
    pair_code = np.full(n_pairs, -1, dtype=np.int8)  # -1: the pair has no target row
    pair_code[pair_of_row[is_t]] = t_codes  # one code per pair: a pair's target rows share it
    held = np.isin(pair_code, (VALID, TEST))  # (n_pairs,) held-out target pairs

    # where a user's history goes: train, or the fold-in part of a held-out user (by-user)
    n_users = int(pair_user.max()) + 1
    home = np.full(n_users, TRAIN, dtype=np.int8)
    if method == "by-user":
        t_user = pair_user[pair_of_row[is_t]]
        for code, part_input in ((VALID, VALID_INPUT), (TEST, TEST_INPUT)):
            home[t_user[np.isin(t_codes, (code, part_input))]] = part_input
    row_user = pair_user[pair_of_row]
    aux_code = home[row_user]
    if method == "predefined":
        own = inter.frame["part"].astype(str).to_numpy()
        aux_code = np.select([own == "train", own == "valid", own == "test"], [TRAIN, VALID, TEST]).astype(np.int8)
        aux_code = np.where(aux_code == TRAIN, home[row_user], aux_code).astype(np.int8)
    elif method == "temporal":
        # other rows are history only when they happened before the cut
        ts = frame["timestamp"].to_numpy()
        cut_valid, cut_test = _cuts(sub, t_codes)
        aux_code = np.where(ts >= cut_test, TEST, np.where(ts >= cut_valid, VALID, aux_code)).astype(np.int8)
    codes = aux_code.copy()
    codes[is_t] = t_codes
    aux_held = ~is_t & held[pair_of_row]
    if not aux_in_train:
        codes[aux_held] = pair_code[pair_of_row[aux_held]]
    return codes


def _cuts(sub: Interactions, t_codes: np.ndarray) -> tuple[float, float]:
    """The first target time of the valid and test parts of a temporal split (inf when empty)."""
    ts = sub.frame["timestamp"].to_numpy()
    def first(code):
        m = t_codes == code
        return float(ts[m].min()) if m.any() else np.inf
    t_test = first(TEST)
    t_valid = min(first(VALID), t_test)
    return t_valid, t_test
