"""Baselines: the shared recommender contract plus model-specific hand checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from feedgan.rec.baselines import EASE, ItemKNN, MostPopular
from rec_contract import RecommenderContract


class TestMostPopular(RecommenderContract):
    def make_model(self):
        return MostPopular()


class TestItemKNN(RecommenderContract):
    def make_model(self):
        return ItemKNN(k=10, shrink=5.0)


class TestEASE(RecommenderContract):
    def make_model(self):
        return EASE(l2=10.0)


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
