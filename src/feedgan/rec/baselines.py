"""Strong non-GAN baselines: the yardstick every GAN recommender is measured against.

All are vectorised (sparse products, dense blocks in PyTorch); none loops over users or items.

============  =======  ===================================================================
model         fold-in  idea
============  =======  ===================================================================
MostPopular   yes      items ranked by how many users interacted with them
ItemKNN       yes      cosine item-item similarity with shrinkage, top-k neighbours kept
EASE          yes      closed-form linear item-item autoencoder (Steck 2019), zero diagonal
============  =======  ===================================================================
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .base import Recommender


class MostPopular(Recommender):
    """Ranks items by training popularity; the same list for everyone."""

    name = "most-popular"

    def __init__(self):
        pass

    def _fit(self, X, progress=None):
        self.popularity_ = np.asarray(X.sum(0)).ravel().astype(np.float32)  # (n_items,)

    def _score(self, users, history):
        return np.broadcast_to(self.popularity_, (history.shape[0], self.n_items_)).copy()


def _topk_sparse(S: sp.csr_matrix, k: int, block: int = 2048) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of every row of ``S`` (dense blocks through torch.topk)."""
    n = S.shape[0]
    k = min(k, S.shape[1])
    rows, cols, vals = [], [], []
    for start in range(0, n, block):
        dense = torch.from_numpy(S[start:start + block].toarray())  # (b, n_items)
        v, c = torch.topk(dense, k, dim=1)
        keep = v > 0
        rows.append((torch.arange(start, start + dense.shape[0])[:, None].expand_as(c))[keep].numpy())
        cols.append(c[keep].numpy())
        vals.append(v[keep].numpy())
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=S.shape,
                         dtype=np.float32)


class _SparseItemModel(Recommender):
    """Shared scoring for models whose state is a sparse item-item matrix ``W_`` (n_items, n_items)."""

    def _score(self, users, history):
        return (history @ self.W_).toarray()

    def _state(self):
        W = self.W_
        return {"W_indptr": W.indptr.astype(np.int64), "W_indices": W.indices.astype(np.int64), "W_data": W.data}

    def _set_state(self, state):
        self.W_ = sp.csr_matrix((state["W_data"], state["W_indices"], state["W_indptr"]),
                                shape=(self.n_items_, self.n_items_))


class ItemKNN(_SparseItemModel):
    """Item-based k-nearest neighbours with shrunk cosine similarity.

    ``sim(i, j) = |U_i & U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink)``; each item keeps its ``k``
    most similar neighbours; a user's score for ``j`` sums the similarities from items they have.
    """

    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 10.0):
        self.k, self.shrink = k, shrink

    def _fit(self, X, progress=None):
        Xc = X.tocsc()
        co = (Xc.T @ Xc).tocsr()  # (n_items, n_items) co-occurrence counts
        co.setdiag(0)
        co.eliminate_zeros()
        norms = np.sqrt(np.asarray(Xc.sum(0)).ravel())
        co = co.tocoo()
        sim = co.data / (norms[co.row] * norms[co.col] + self.shrink + 1e-12)
        S = sp.csr_matrix((sim.astype(np.float32), (co.row, co.col)), shape=co.shape)
        # keep the top-k neighbours of each target item j (column j), stored as rows of W^T
        self.W_ = _topk_sparse(S.T.tocsr(), self.k).T.tocsr()


class EASE(Recommender):
    """Embarrassingly Shallow Autoencoder (Steck, WWW 2019).

    ``B = I - P diagMat(1 / diag(P))`` with ``P = (X^T X + l2 I)^-1``, i.e. the ridge regression
    of every item on all others with a zero diagonal. Solved with a Cholesky factorisation in
    PyTorch (float32), which stays stable at 40k items where threaded OpenBLAS ``spotrf`` crashes.
    """

    name = "ease"

    def __init__(self, l2: float = 500.0):
        self.l2 = l2

    def _fit(self, X, progress=None):
        G = torch.from_numpy((X.T @ X).toarray().astype(np.float32))  # (n_items, n_items) Gram
        G.diagonal().add_(self.l2)
        L = torch.linalg.cholesky(G)
        del G
        P = torch.cholesky_inverse(L)
        del L
        B = P / (-P.diagonal())[None, :]
        B.diagonal().zero_()
        self.B_ = B.numpy()

    def _score(self, users, history):
        return (history @ self.B_)
