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


def test_row_topk_orders_each_row_best_first_ties_to_the_lower_column():
    indptr = np.array([0, 4, 4, 8])
    cols = np.array([7, 2, 5, 0, 9, 3, 6, 1])  # unsorted within a row
    values = np.array([1, 3, 3, 2, 5, 5, -0.0, 5], np.float32)
    c, v, counts = row_topk(indptr, cols, values, 3)
    assert counts.tolist() == [3, 0, 3]
    assert c.tolist() == [2, 5, 0, 1, 3, 9]
    assert v.tolist() == [3, 3, 2, 5, 5, 5]
    c, v, _ = row_topk(indptr, cols, values, 10)
    assert c[-1] == 6 and v[-1] == 0.0 and v.dtype == np.float32


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


def test_row_topk_sorts_rows_in_groups_when_columns_are_wide():
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 6, 11)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    cols = rng.integers(0, 2**30, indptr[-1])  # 30 column bits: two rows per packed sort
    values = rng.integers(-2, 3, indptr[-1]).astype(np.float32)
    c, v, counts = row_topk(indptr, cols, values, 3)
    want = [sorted(zip(-values[a:b], cols[a:b]))[:3] for a, b in zip(indptr[:-1], indptr[1:])]
    assert counts.tolist() == [len(w) for w in want]
    assert c.tolist() == [int(col) for w in want for _, col in w]
    assert v.tolist() == [float(-neg) for w in want for neg, _ in w]


@pytest.mark.parametrize("seed", range(3))
def test_row_topk_on_long_rows_equals_a_full_sort(seed):
    """Long rows are first cut down to the entries that can make the list; the answer must not move."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 400, 25)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    cols = np.concatenate([rng.permutation(1000)[:n] for n in lengths])
    # few distinct values (ties everywhere), sorted runs in some rows (chunk maxima all alike)
    values = rng.integers(0, 6, indptr[-1]).astype(np.float32)
    values[indptr[3]:indptr[4]] = np.sort(values[indptr[3]:indptr[4]])
    k = rng.integers(0, 30, 25)
    for kk in (1, 5, k):
        c, v, counts = row_topk(indptr, cols, values, kk)
        kr = np.broadcast_to(kk, lengths.shape)
        want = [sorted(zip(-values[a:b], cols[a:b]))[:q] for a, b, q in zip(indptr[:-1], indptr[1:], kr)]
        assert counts.tolist() == [len(w) for w in want]
        assert c.tolist() == [int(col) for w in want for _, col in w]
        assert v.tolist() == [float(-neg) for w in want for neg, _ in w]


class _DenseScoredKNN(ItemKNN):
    """ItemKNN scored as a dense array: the path every metric of the sparse one must equal."""

    def _score(self, users, history):
        return (history @ self.W_).toarray()


def test_evaluate_of_sparse_scores_equals_dense_scores_to_the_bit(make_log):
    from feedgan.data.dataset import DataConfig, prepare
    from feedgan.data.schema import validate
    from feedgan.eval.metrics import evaluate

    inter = validate(make_log(n_users=80, n_items=60, n_rows=1500, seed=2, actions=("view",)), source="gen.csv")
    ds = prepare(inter, DataConfig(split="random", valid=0.1, test=0.2, seed=0))
    sparse = ItemKNN(k=5, shrink=2.0).fit(ds)
    dense = _DenseScoredKNN(k=5, shrink=2.0).fit(ds)
    assert (sparse.W_ != dense.W_).nnz == 0
    for part in ("valid", "test"):
        a = evaluate(sparse, ds, part, ks=(1, 5, 20), batch_size=16)
        assert a == evaluate(dense, ds, part, ks=(1, 5, 20), batch_size=16)
        assert a["users_evaluated"] > 20 and 0 < a["ndcg@20"] < 1
