"""top_n: the one top-n selection, on dense and sparse scores, against a written-out reference."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from feedgan.rec.base import row_topk, top_n
from feedgan.rec.baselines import ItemKNN, RP3beta


def _reference(scores: np.ndarray, n: int, exclude: np.ndarray | None):
    """Row by row: unmasked items sorted by score (highest first), equal scores lower item first;
    -inf and missing slots are item -1 with score -inf."""
    B, m = scores.shape
    idx = np.full((B, n), -1, np.int64)
    val = np.full((B, n), -np.inf, np.float32)
    for b in range(B):
        cand = [(float(scores[b, j]), j) for j in range(m)
                if (exclude is None or exclude[b, j] == 0) and scores[b, j] != -np.inf]
        for r, (s, j) in enumerate(sorted(cand, key=lambda p: (-p[0], p[1]))[:n]):
            idx[b, r], val[b, r] = j, s
    return idx, val


def _tied_scores(rng, B=9, m=30, density=0.4):
    """Small integer scores (many ties), sparse: most items score 0; some rows nearly empty."""
    S = (rng.integers(1, 4, (B, m)) * (rng.random((B, m)) < density)).astype(np.float32)
    S[0] = 0.0  # a row with no positive score: zeros compete, lower items first
    S[1, :] = 0.0
    S[1, 3] = 2.0
    return S


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [1, 4, 10, 40])
def test_top_n_dense_and_sparse_equal_the_reference_with_ties(seed, n):
    rng = np.random.default_rng(seed)
    S = _tied_scores(rng)
    E = (rng.random(S.shape) < 0.3).astype(np.float32)
    E[2] = 1.0  # everything masked: an empty list
    for exclude in (None, E):
        want = _reference(S, n, exclude)
        mask = None if exclude is None else sp.csr_matrix(exclude)
        for scores in (S, torch.from_numpy(S.copy()), sp.csr_matrix(S)):
            got = top_n(scores, n, exclude=mask)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_top_n_keeps_negative_and_infinite_scores_in_place():
    S = np.array([[-1.0, 0.0, -np.inf, 2.0, -1.0], [-np.inf] * 5], np.float32)
    want = _reference(S, 5, None)
    for scores in (S, sp.csr_matrix(S)):
        got = top_n(scores, 5)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert want[0][0].tolist() == [3, 1, 0, 4, -1]


def test_sparse_top_n_leaves_its_input_as_it_was():
    S = sp.csr_matrix(np.array([[0, 3, 1, 2], [5, 0, 0, 4]], np.float32))
    S = S[:, [3, 2, 1, 0]][:, [3, 2, 1, 0]]  # unsorted column indices
    S.has_sorted_indices = False
    before = (S.indptr.copy(), S.indices.copy(), S.data.copy())
    top_n(S, 2, exclude=sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0]])))
    for a, b in zip(before, (S.indptr, S.indices, S.data)):
        np.testing.assert_array_equal(a, b)


def test_row_topk_orders_each_row_best_first_ties_in_stored_order():
    indptr = np.array([0, 4, 4, 7])
    values = np.array([1, 3, 3, 2, 5, 5, 5], np.float32)
    pos, counts = row_topk(indptr, values, 3)
    assert counts.tolist() == [3, 0, 3]
    assert pos.tolist() == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("cls", [ItemKNN, RP3beta])
def test_sparse_item_models_recommend_what_their_dense_scores_rank(cls):
    rng = np.random.default_rng(3)
    X = sp.csr_matrix((rng.random((50, 35)) < 0.12).astype(np.float32))
    m = cls(k=4).fit(X)
    users = np.arange(50)
    dense = m.score(users)  # (50, 35): the same scores as an array
    assert isinstance(dense, np.ndarray) and dense.shape == (50, 35)
    for n in (3, 20, 35):
        items, values = m.recommend(users, n=n)
        want = _reference(dense, n, X.toarray())
        np.testing.assert_array_equal(items, want[0])
        np.testing.assert_array_equal(values, want[1])
