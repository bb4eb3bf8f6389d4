"""Strong non-GAN baselines: the yardstick every GAN recommender is measured against.

All are vectorised (sparse products, dense blocks in PyTorch); none loops over users or items.

============  =======  ===================================================================
model         fold-in  idea
============  =======  ===================================================================
MostPopular   yes      items ranked by how many users interacted with them
ItemKNN       yes      cosine item-item similarity with shrinkage, top-k neighbours kept
RP3beta       yes      two-step random walk item -> user -> item, penalised by popularity
PureSVD       yes      truncated SVD; a history is projected on the item factors
EASE          yes      closed-form linear item-item autoencoder (Steck 2019), zero diagonal
============  =======  ===================================================================
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .base import Recommender, row_topk


class MostPopular(Recommender):
    """Ranks items by training popularity; the same list for everyone."""

    name = "most-popular"

    def __init__(self):
        pass

    def _fit(self, X, progress=None):
        self.popularity_ = np.asarray(X.sum(0)).ravel().astype(np.float32)  # (n_items,)

    def _score(self, users, history):
        return np.broadcast_to(self.popularity_, (history.shape[0], self.n_items_)).copy()


def _blockwise_topk(block_fn, n_rows: int, n_cols: int, k: int, block: int = 1024) -> sp.csr_matrix:
    """Build a sparse matrix row block by row block, keeping the ``k`` largest positive entries of
    each row. ``block_fn(start, stop)`` returns the dense rows (stop - start, n_cols) as a tensor,
    so the full dense matrix never exists (41k x 41k floats would be 6.7 GB)."""
    k = min(k, n_cols)
    rows, cols, vals = [], [], []
    for start in range(0, n_rows, block):
        dense = block_fn(start, min(start + block, n_rows))  # (b, n_cols)
        v, c = torch.topk(dense, k, dim=1)
        keep = v > 0
        rows.append(torch.arange(start, start + dense.shape[0])[:, None].expand_as(c)[keep].numpy())
        cols.append(c[keep].numpy())
        vals.append(v[keep].numpy())
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n_rows, n_cols), dtype=np.float32)


def _dense(m: sp.spmatrix) -> torch.Tensor:
    return torch.from_numpy(m.toarray().astype(np.float32, copy=False))


class _SparseItemModel(Recommender):
    """Shared scoring for models whose state is a sparse item-item matrix ``W_`` (n_items, n_items)."""

    def _score(self, users, history):
        return history @ self.W_  # (B, n_items) sparse: top-n reads the stored scores alone

    def _state(self):
        W = self.W_
        return {"W_indptr": W.indptr.astype(np.int64), "W_indices": W.indices.astype(np.int64), "W_data": W.data}

    def _set_state(self, state):
        self.W_ = sp.csr_matrix((state["W_data"], state["W_indices"], state["W_indptr"]),
                                shape=(self.n_items_, self.n_items_))


class ItemKNN(_SparseItemModel):
    """Item-based k-nearest neighbours with shrunk cosine similarity.

    ``sim(i, j) = |U_i & U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink)``; each item keeps its ``k``
    most similar neighbours (among equal similarities, the lower item index); a user's score for
    ``j`` sums the similarities from items they have. The fit never forms a dense row: the
    co-occurrence counts of ``block`` target items at a time stay sparse while they are pruned.
    """

    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 10.0):
        self.k, self.shrink = k, shrink

    def _fit(self, X, progress=None, block: int = 2048):
        XT = X.T.tocsr()  # (n_items, n_users)
        norms = np.sqrt(np.asarray(X.sum(0)).ravel()).astype(np.float32)  # (n_items,)
        n = self.n_items_
        # S is symmetric: row j of S holds the candidate neighbours of target item j; keep its k
        # best, so that W[i, j] = sim(i, j) for i among j's neighbours (W is the kept rows, transposed)
        parts = [self._neighbours(XT[start:start + block] @ X, start, norms) for start in range(0, n, block)]
        counts = np.concatenate([c for c, _, _ in parts])  # (n_items,) neighbours kept per target
        indptr = np.concatenate([[0], np.cumsum(counts)])
        nbrs = np.concatenate([i for _, i, _ in parts])
        sims = np.concatenate([v for _, _, v in parts])
        self.W_ = sp.csc_matrix((sims, nbrs, indptr), shape=(n, n)).tocsr()

    def _neighbours(self, co: sp.csr_matrix, start: int, norms: np.ndarray):
        """The kept neighbours of target items start:start + b from their co-occurrence rows ``co``
        (b, n_items), sparse throughout: (counts (b,), neighbour items, similarities), each target's
        best first, equal similarities to the lower item.

        ``sim = co / (|U_i|^.5 |U_j|^.5 + shrink)`` in float32 on the stored (positive) counts only;
        the self-pair scores 0 and, like any non-positive similarity, is never kept."""
        co = co.tocsr()
        rows = np.repeat(np.arange(start, start + co.shape[0]), np.diff(co.indptr))  # (nnz,) target item
        denom = norms[rows]
        denom *= norms[co.indices]
        denom += np.float32(self.shrink)
        sim = np.divide(co.data, denom, out=denom, dtype=np.float32)
        sim[co.indices == rows] = 0.0
        nbrs, sim, counts = row_topk(co.indptr, co.indices, sim, min(self.k, self.n_items_))
        keep = sim > 0  # the self-pair only reaches a list shorter than k
        counts = np.bincount(np.repeat(np.arange(co.shape[0]), counts)[keep], minlength=co.shape[0])
        return counts, nbrs[keep], sim[keep]


class RP3beta(_SparseItemModel):
    """Random walk item -> user -> item, popularity-penalised (Paudel et al. 2017).

    ``W[i, j] = (P_iu P_uj)[i, j] ** alpha / pop(j) ** beta`` with row-stochastic transition
    matrices; each source item ``i`` keeps its ``k`` strongest targets.
    """

    name = "rp3beta"

    def __init__(self, k: int = 200, alpha: float = 1.0, beta: float = 0.5):
        self.k, self.alpha, self.beta = k, alpha, beta

    def _fit(self, X, progress=None):
        pop = np.asarray(X.sum(0)).ravel()  # (n_items,)
        user_deg = np.asarray(X.sum(1)).ravel()
        P_ui = sp.diags(1.0 / np.maximum(user_deg, 1)) @ X  # (n_users, n_items) user -> item
        P_iu = (sp.diags(1.0 / np.maximum(pop, 1)) @ X.T).tocsr()  # (n_items, n_users) item -> user
        penalty = torch.from_numpy((1.0 / np.maximum(pop, 1) ** self.beta).astype(np.float32))

        def block(start, stop):
            walk = _dense(P_iu[start:stop] @ P_ui)  # (b, n_items) two-step transition probabilities
            walk[torch.arange(stop - start), torch.arange(start, stop)] = 0.0
            return walk.pow_(self.alpha) * penalty[None, :]

        self.W_ = _blockwise_topk(block, self.n_items_, self.n_items_, self.k)


class PureSVD(Recommender):
    """Truncated SVD of the interaction matrix (Cremonesi et al. 2010): ``score = x V V^T``.

    Folds in any history through the item factors ``V`` (n_items, factors).
    """

    name = "puresvd"

    seed_matters = False  # the seed only draws svds' start vector; the top-k subspace is the same

    def __init__(self, factors: int = 64, seed: int = 0):
        self.factors, self.seed = factors, seed

    def _fit(self, X, progress=None):
        from scipy.sparse.linalg import svds

        k = min(self.factors, min(X.shape) - 1)
        rng = np.random.default_rng(self.seed)
        _, _, vt = svds(X.astype(np.float64), k=k, v0=rng.random(min(X.shape)))
        self.V_ = np.ascontiguousarray(vt.T.astype(np.float32))  # (n_items, k)

    def _score(self, users, history):
        return (history @ self.V_) @ self.V_.T


class _Stages:
    """Stage tasks (``gram``, ``solve``) of a closed-form fit on a progress object, or nothing without one."""

    def __init__(self, progress, name: str):
        self.progress, self.name = progress, name

    def start(self, what: str, total: int):
        return None if self.progress is None else self.progress.add_task(f"fit {self.name}: {what}", total=total)

    def advance(self, task, n: int) -> None:
        if task is not None:
            self.progress.advance(task, n)


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
        if not self.l2 > 0:
            raise ValueError(f"{self.name}: l2 must be a positive number, got {self.l2} (e.g. l2=500)")
        n = X.shape[1]
        XT = X.T.tocsr()  # (n_items, n_users)
        stage = _Stages(progress, self.name)
        gram = stage.start("gram X^T X", n)
        G = torch.empty(n, n, dtype=torch.float32)  # (n_items, n_items) Gram, filled block by block
        for start in range(0, n, 2048):  # avoids a huge sparse X^T X intermediate
            G[start:start + 2048] = _dense(XT[start:start + 2048] @ X)
            stage.advance(gram, min(2048, n - start))
        G.diagonal().add_(self.l2)
        solve = stage.start("solve (Cholesky inverse)", 1)
        # two n x n buffers at peak: G, then its Cholesky factor, then the inverse (in place after)
        L, info = torch.linalg.cholesky_ex(G)
        del G
        if int(info):
            raise ValueError(f"{self.name}: X^T X + l2 I is not positive definite at l2={self.l2}; use a larger l2")
        P = torch.cholesky_inverse(L)  # comes back column-major
        del L
        stage.advance(solve, 1)
        # P is symmetric, so its transpose is the same matrix in row-major order: scoring
        # (history @ B, one row of B per interaction) is ~10x faster on rows that are contiguous
        P = P.mT if not P.is_contiguous() else P
        B = P.div_(-P.diagonal().clone()[None, :])  # B_ij = -P_ij / P_jj
        B.diagonal().zero_()
        self.B_ = B.numpy()

    def _score(self, users, history):
        return (history @ self.B_)
