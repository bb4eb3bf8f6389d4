"""Baselines: model-specific hand checks (the shared contract runs in test_every_model.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from feedgan.rec.baselines import EASE, ItemKNN, MostPopular, PureSVD, RP3beta


# -- MostPopular ------------------------------------------------------------------------------------
def test_most_popular_ranks_by_count():
    # item users: item0 1, item1 4, item2 2, item3 3 (weights are binarised: the 5 counts once)
    X = sp.csr_matrix(np.array([[0, 1, 1, 1],
                                [0, 1, 0, 1],
                                [0, 5, 1, 1],
                                [1, 1, 0, 0],
                                [0, 0, 0, 0]], dtype=np.float32))
    m = MostPopular().fit(X)
    np.testing.assert_array_equal(m.popularity_, [1, 4, 2, 3])
    items, scores = m.recommend([4], n=4)
    assert items[0].tolist() == [1, 3, 2, 0]
    assert scores[0].tolist() == [4, 3, 2, 1]
    items, _ = m.recommend([3], n=4)  # has items 0 and 1
    assert items[0].tolist() == [3, 2, -1, -1]
    # the same ranking for everyone
    s = m.score([0, 1, 2])
    assert (s == s[0]).all()


# -- ItemKNN ----------------------------------------------------------------------------------------
# users x items; |U_0| = 3, |U_1| = 3, |U_2| = 2
X3 = sp.csr_matrix(np.array([[1, 1, 0],
                             [1, 1, 1],
                             [1, 0, 1],
                             [0, 1, 0]], dtype=np.float32))
SHRINK = 1.0
# co-occurrence: (0,1) users 0,1 -> 2; (0,2) users 1,2 -> 2; (1,2) user 1 -> 1
S01 = 2 / (math.sqrt(3) * math.sqrt(3) + SHRINK)  # = 2 / 4 = 0.5
S02 = 2 / (math.sqrt(3) * math.sqrt(2) + SHRINK)  # = 2 / 3.449 = 0.5798
S12 = 1 / (math.sqrt(3) * math.sqrt(2) + SHRINK)  # = 1 / 3.449 = 0.2899


def test_itemknn_shrunk_cosine():
    m = ItemKNN(k=10, shrink=SHRINK).fit(X3)
    expect = np.array([[0, S01, S02],
                       [S01, 0, S12],
                       [S02, S12, 0]])
    np.testing.assert_allclose(m.W_.toarray(), expect, rtol=1e-6)
    # user 3 has item 1 only: scores are row 1 of W
    np.testing.assert_allclose(m.score([3])[0], [S01, 0, S12], rtol=1e-6)
    # user 2 has items 0 and 2: score(1) = S01 + S12
    np.testing.assert_allclose(m.score([2])[0, 1], S01 + S12, rtol=1e-6)


def test_itemknn_keeps_top_k_neighbours_per_target_item():
    m = ItemKNN(k=1, shrink=SHRINK).fit(X3)
    # column j keeps its single most similar item i:
    #   col 0: max(S10=0.5, S20=0.58) -> item 2; col 1: max(S01=0.5, S21=0.29) -> item 0;
    #   col 2: max(S02=0.58, S12=0.29) -> item 0
    expect = np.array([[0, S01, S02],
                       [0, 0, 0],
                       [S02, 0, 0]])
    np.testing.assert_allclose(m.W_.toarray(), expect, rtol=1e-6)
    assert (m.W_.getnnz(0) <= 1).all()


# -- EASE -------------------------------------------------------------------------------------------
def test_ease_zero_diagonal(dataset_for_ease):
    m = EASE(l2=10.0).fit(dataset_for_ease)
    assert m.B_.shape == (dataset_for_ease.n_items,) * 2
    assert m.B_.dtype == np.float32
    np.testing.assert_array_equal(np.diag(m.B_), 0.0)
    assert np.abs(m.B_).sum() > 0
    # scoring adds one row of B per interaction: rows must be contiguous (a column-major B made
    # full-ranking evaluation on 41k items ~100x slower)
    assert m.B_.flags["C_CONTIGUOUS"]


@pytest.fixture(scope="module")
def dataset_for_ease():
    from rec_contract import contract_dataset

    return contract_dataset(seed=1)


def test_ease_closed_form():
    X = np.array([[1, 1, 0, 0],
                  [0, 1, 1, 0],
                  [1, 1, 1, 1],
                  [0, 0, 1, 1],
                  [1, 0, 0, 1]], dtype=np.float64)
    l2 = 2.0
    P = np.linalg.inv(X.T @ X + l2 * np.eye(4))
    B = np.eye(4) - P / np.diag(P)[None, :]  # B_ij = -P_ij / P_jj, zero diagonal
    assert np.allclose(np.diag(B), 0)
    m = EASE(l2=l2).fit(sp.csr_matrix(X))
    np.testing.assert_allclose(m.B_, B, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.score(np.arange(5)), X @ B, rtol=1e-4, atol=1e-5)


def _reference_knn(X: sp.csr_matrix, k: int, shrink: float) -> np.ndarray:
    """A slow ItemKNN written out: the float32 shrunk cosine of every pair, then for each target
    item its k most similar others (positive only), equal similarities to the lower item."""
    D = X.toarray().astype(np.float32)
    norms = np.sqrt(D.sum(0)).astype(np.float32)
    n = D.shape[1]
    W = np.zeros((n, n), np.float32)
    for j in range(n):
        sims = []
        for i in range(n):
            co = np.float32(D[:, i] @ D[:, j])
            if i != j and co > 0:
                sims.append((co / (norms[j] * norms[i] + np.float32(shrink) + np.float32(1e-12)), i))
        for s, i in sorted(sims, key=lambda p: (-p[0], p[1]))[:k]:
            W[i, j] = s
    return W


@pytest.mark.parametrize("seed", range(4))
def test_itemknn_equals_a_written_out_reference_with_ties_to_the_lower_item(seed):
    rng = np.random.default_rng(seed)
    # few users: many pairs of items share the same co-occurrence and popularity (ties)
    X = sp.csr_matrix((rng.random((12, 40)) < 0.3).astype(np.float32))
    for k, shrink in ((3, 0.0), (7, 10.0), (60, 2.5)):
        m = ItemKNN(k=k, shrink=shrink).fit(X)
        np.testing.assert_array_equal(m.W_.toarray(), _reference_knn(X, k, shrink))
        assert m.W_.has_sorted_indices and m.W_.dtype == np.float32


def test_itemknn_fit_in_blocks_equals_one_block():
    rng = np.random.default_rng(5)
    X = sp.csr_matrix((rng.random((30, 50)) < 0.2).astype(np.float32))
    whole = ItemKNN(k=5).fit(X).W_
    m = ItemKNN(k=5)
    m.fit(X)
    m._fit(m.train_, block=7)  # blocks of 7 target items, the last one short
    assert (m.W_ != whole).nnz == 0


# -- RP3beta ----------------------------------------------------------------------------------------
# users x items; user degrees 2, 3, 1, 1; item popularity 3, 2, 2
X4 = sp.csr_matrix(np.array([[1, 1, 0],
                             [1, 1, 1],
                             [0, 0, 1],
                             [1, 0, 0]], dtype=np.float32))
POP = np.array([3.0, 2.0, 2.0])
# P3 = P_iu @ P_ui, the two-step item -> user -> item walk, worked by hand:
#   from i0 (users 0, 1, 3, each 1/3): 1/3 ([1/2, 1/2, 0] + [1/3, 1/3, 1/3] + [1, 0, 0]) = [11/18, 5/18, 1/9]
#   from i1 (users 0, 1, each 1/2):    1/2 ([1/2, 1/2, 0] + [1/3, 1/3, 1/3])             = [5/12, 5/12, 1/6]
#   from i2 (users 1, 2, each 1/2):    1/2 ([1/3, 1/3, 1/3] + [0, 0, 1])                 = [1/6, 1/6, 2/3]
P3 = np.array([[11 / 18, 5 / 18, 1 / 9],
               [5 / 12, 5 / 12, 1 / 6],
               [1 / 6, 1 / 6, 2 / 3]])
# the self-loop is dropped: it only ever scores an item the user already has (always excluded)
P3_OFF = P3 * (1 - np.eye(3))


def test_rp3beta_alpha_1_beta_0_is_p3():
    assert np.allclose(P3.sum(1), 1)  # the hand walk is a transition matrix
    m = RP3beta(k=10, alpha=1.0, beta=0.0).fit(X4)
    np.testing.assert_allclose(m.W_.toarray(), P3_OFF, rtol=1e-6)
    # user 3 has item 0 only: scores are row 0 of W, so item 1 (5/18) comes before item 2 (1/9)
    np.testing.assert_allclose(m.score([3])[0], P3_OFF[0], rtol=1e-6)
    items, _ = m.recommend([3], n=3)
    assert items[0].tolist() == [1, 2, -1]


def test_rp3beta_powers_the_walk_and_divides_by_popularity():
    alpha, beta = 0.7, 0.4
    m = RP3beta(k=10, alpha=alpha, beta=beta).fit(X4)
    np.testing.assert_allclose(m.W_.toarray(), P3_OFF ** alpha / POP[None, :] ** beta, rtol=1e-5)
    # from i2 the walk ties i0 and i1 at 1/6; the penalty puts the less popular i1 first
    penalised = RP3beta(k=10, alpha=1.0, beta=1.0).fit(X4)
    assert penalised.W_[2, 1] == pytest.approx(1 / 12) and penalised.W_[2, 0] == pytest.approx(1 / 18)


def test_rp3beta_keeps_top_k_targets_per_source_item():
    m = RP3beta(k=1, alpha=1.0, beta=0.0).fit(X4)
    W = m.W_.toarray()
    assert (m.W_.getnnz(1) == 1).all()  # each source item (row) keeps one target
    assert W[0, 1] == pytest.approx(5 / 18) and W[1, 0] == pytest.approx(5 / 12)
    assert W[2].max() == pytest.approx(1 / 6)


# -- PureSVD ----------------------------------------------------------------------------------------
def _planted_ratings(seed=0, n_users=30, n_items=12):
    rng = np.random.default_rng(seed)
    X = (rng.random((n_users, n_items)) < 0.3).astype(np.float64)
    X[: n_users // 2, : n_items // 2] = 1.0  # a block, so the top singular values are well apart
    return X


@pytest.mark.parametrize("factors", [1, 3, 5])
def test_puresvd_is_the_rank_k_reconstruction(factors):
    X = _planted_ratings()
    U, s, Vt = np.linalg.svd(X, full_matrices=False)  # dense reference, singular values descending
    assert s[factors - 1] - s[factors] > 1e-3  # the rank-k subspace is unique
    reconstruction = (U[:, :factors] * s[:factors]) @ Vt[:factors]  # (n_users, n_items)
    m = PureSVD(factors=factors).fit(sp.csr_matrix(X))
    assert m.V_.shape == (X.shape[1], factors)
    np.testing.assert_allclose(m.score(np.arange(X.shape[0])), reconstruction, atol=1e-4)
    # a new user folds in through the item factors: x V V^T, the projection onto the top-k items space
    x = np.zeros((1, X.shape[1]))
    x[0, [0, 7]] = 1.0
    projector = Vt[:factors].T @ Vt[:factors]
    np.testing.assert_allclose(m.score([0], history=sp.csr_matrix(x)), x @ projector, atol=1e-4)


def test_puresvd_caps_factors_below_the_smaller_dimension():
    X = _planted_ratings(n_users=30, n_items=6)
    m = PureSVD(factors=64).fit(sp.csr_matrix(X))
    assert m.V_.shape == (6, 5)
