"""Implicit alternating least squares (iALS), with the recipe of Rendle et al., RecSys 2022.

The loss over user vectors ``w_u`` and item vectors ``h_i`` (both ``factors`` long)::

    sum_{(u,i) observed} (x_ui - w_u.h_i)^2                       # fit the observed entries
  + unobserved * sum_{all u,i} (w_u.h_i)^2                        # pull every other score towards 0
  + reg * (sum_u (n_u + unobserved * n_items)^nu |w_u|^2          # frequency-scaled L2 (nu = 1:
         + sum_i (n_i + unobserved * n_users)^nu |h_i|^2)          #   heavy users/items pay more)

``x_ui`` is the input's weight (1 on a binary log; the stacked weight with ``aux``), ``n_u`` and
``n_i`` the numbers of observed entries in the row and column. Each half-epoch solves every row's
normal equations ``(E_u^T E_u + unobserved * H^T H + reg_u I) w_u = E_u^T x_u`` with ``E_u`` the
vectors of the user's items and the shared Gramian ``H^T H`` computed once (the trick that makes
the all-pairs term cheap). ``solver="cg"`` (the default) takes ``cg_steps`` conjugate-gradient
steps from the row's previous vector, as implicit's ALS does: each step costs a product with
``E_u`` and the Gramian, O(n_u d + d^2), where ``solver="exact"`` (a Cholesky factorisation per
row, O(d^3 + n_u d^2)) reaches the exact minimiser of each half-step; both minimise the same loss.
Everything is float32 PyTorch. The conjugate-gradient product never forms ``E_u``: ``E_u p_u`` for
every row at once is a sampled product on the observed pattern (one dot per entry) and ``E_u^T``
of that a sparse-dense product, O(nnz d) per step with no padding. The exact solver gathers
``E_u`` for batches of rows of similar length (padded to the longest with a zero vector) to form
``E_u^T E_u`` by batched matrix products. What does not change between epochs (the sparse
structure, each row's regularisation, the batch plan) is built once per fit and side.

Unseen users fold in by the exact solve against the fitted item vectors, so ``fold_in = True``.
The item vectors start at N(0, init_std^2 / factors), seeded; the user vectors are solved first.
The paper's guidance: large ``factors`` (128 and up), about 16 epochs, ``unobserved`` and ``reg``
tuned on validation (both scale with the data; the grid in :mod:`feedgan.eval.bench`).
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from .base import Recommender

SOLVERS = ("cg", "exact")
BATCH_FLOATS = 1 << 24     # exact solver, per batch of rows: at most this many floats in the padded gather
                           # (B * L * d) and in the normal-equation matrices (B * d * d): 64 MB each
PAD_RATIO, PAD_FLOOR = 1.1, 32   # exact solver: a batch's longest row is at most PAD_RATIO x max(its shortest,
                                 # PAD_FLOOR) long, so padding adds about 6% to the gather and products
CHOLESKY_BLOCK = 32        # batched Cholesky factorises blocks of this size and updates the rest by bmm


class IALS(Recommender):
    """iALS with frequency-scaled regularisation (module docstring). ``fold_in``: solves the user's row."""

    name = "ials"

    def __init__(self, factors: int = 128, reg: float = 0.01, unobserved: float = 0.1, nu: float = 1.0,
                 epochs: int = 16, init_std: float = 0.1, solver: str = "cg", cg_steps: int = 3, seed: int = 0):
        self.factors, self.reg, self.unobserved, self.nu = factors, reg, unobserved, nu
        self.epochs, self.init_std, self.solver, self.cg_steps, self.seed = epochs, init_std, solver, cg_steps, seed

    def _check(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"{self.name}: solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        for name in ("factors", "epochs", "cg_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{self.name}: {name} must be a positive integer, got {v!r} (e.g. {name}=16)")
        for name in ("reg", "unobserved", "init_std"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
                raise ValueError(f"{self.name}: {name} must be a positive number, got {v!r}")
        if not isinstance(self.nu, (int, float)) or not 0 <= self.nu <= 1:
            raise ValueError(f"{self.name}: nu must be between 0 (plain L2) and 1 (frequency-scaled), got {self.nu!r}")

    def _fit(self, X, progress=None):
        self._check()
        X = sp.csr_matrix(X, dtype=np.float32)
        gen = torch.Generator().manual_seed(int(self.seed))
        d = int(self.factors)
        H = torch.randn(X.shape[1], d, generator=gen) * (self.init_std / np.sqrt(d))
        task = None if progress is None else progress.add_task(f"fit {self.name}", total=int(self.epochs))
        exact = self.solver == "exact"
        users, items = self._rows(X, d, exact), self._rows(X.T.tocsr(), d, exact)
        W = torch.zeros(X.shape[0], d)
        for _ in range(int(self.epochs)):
            W = self._solve_rows(users, H, None if exact else W)      # (n_users, d)
            H = self._solve_rows(items, W, None if exact else H)      # (n_items, d)
            if task is not None:
                progress.advance(task, 1)
        self.item_factors_ = H.numpy()

    def _rows(self, X: sp.csr_matrix, d: int, exact: bool) -> "_Rows":
        """The fixed structure of one side's least-squares rows: ``X`` (n_rows, n_cols), factors ``d``."""
        counts = np.diff(X.indptr)
        lam = self.reg * (counts + self.unobserved * X.shape[1]) ** self.nu
        return _Rows(X, torch.from_numpy(lam.astype(np.float32)), _plan(X, d) if exact else None)

    def _solve_rows(self, rows: "_Rows", V: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """Each row's least-squares vector against the fixed other side ``V`` (n_cols, d): exact without
        ``start``, else ``cg_steps`` conjugate-gradient steps from ``start`` (n_rows, d)."""
        G = self.unobserved * (V.T @ V)                                # (d, d) the all-pairs term
        b = rows.values @ V                                            # (n_rows, d) E_u^T x_u
        if start is not None:
            return _cg(rows.pattern, V, G, rows.lam, b, start, int(self.cg_steps))
        out = torch.zeros_like(b)
        padded = torch.cat([V, V.new_zeros(1, V.shape[1])])           # (n_cols + 1, d): the last row pads
        for at, cols, length in rows.plan:
            E = padded.index_select(0, cols).view(len(at), length, -1)  # (B, L, d)
            A = torch.baddbmm(G.expand(len(at), -1, -1), E.transpose(1, 2), E)   # (B, d, d) E^T E + G
            A.diagonal(dim1=1, dim2=2).add_(rows.lam[at, None])
            L, info = _cholesky(A)
            if int(info.max()):
                raise ValueError(f"{self.name}: a normal-equation matrix is not positive definite; raise reg")
            y = torch.linalg.solve_triangular(L, b[at, :, None], upper=False)              # L y = b
            out[at] = torch.linalg.solve_triangular(L.mT, y, upper=True)[:, :, 0]          # L^T w = y
        return out

    def _score(self, users, history):
        H = torch.from_numpy(self.item_factors_)
        rows = self._rows(sp.csr_matrix(history, dtype=np.float32), H.shape[1], exact=True)
        W = self._solve_rows(rows, H)                                  # (B, d) folded-in user vectors
        return (W @ H.T).numpy()


class _Rows:
    """One side's rows for a fit: the observed entries as sparse tensors (``values`` with the weights,
    ``pattern`` with ones), each row's regularisation ``lam`` (n_rows,), and for the exact solver the
    batch plan: (row ids (B,), padded column ids (B * L,) with n_cols for padding, L) per batch."""

    def __init__(self, X: sp.csr_matrix, lam: torch.Tensor, plan: list | None):
        X = X if X.has_sorted_indices else X.sorted_indices()          # the CSR layout sparse kernels expect
        crow = torch.from_numpy(X.indptr.astype(np.int64))
        col = torch.from_numpy(X.indices.astype(np.int64))
        self.values = _csr(crow, col, torch.from_numpy(X.data.astype(np.float32)), X.shape)
        self.pattern = _csr(crow, col, torch.ones(X.nnz), X.shape)
        self.lam, self.plan = lam, plan


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    with warnings.catch_warnings():                                    # "sparse CSR support is in beta"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size=tuple(shape), check_invariants=False)


def _cg(P: torch.Tensor, V: torch.Tensor, G: torch.Tensor, lam: torch.Tensor, b: torch.Tensor, x: torch.Tensor,
        steps: int) -> torch.Tensor:
    """``steps`` conjugate-gradient steps on ``(E^T E + G + lam I) w = b`` per row, from ``x`` (n_rows, d).

    ``P`` (n_rows, n_cols) the sparse pattern of observed entries, ``V`` (n_cols, d), ``G`` (d, d)
    shared, ``lam`` (n_rows,). The matrix is never formed: ``A p = E^T (E p) + p G + lam p`` where
    ``E p`` is one dot per observed entry (a sampled product on ``P``) and ``E^T`` of it a sparse product."""
    Vt = V.T.contiguous()                                              # (d, n_cols)

    def matvec(p):
        Ep = torch.sparse.sampled_addmm(P, p, Vt, beta=0.0)           # (n_rows, n_cols) sparse: p_u . v_i
        return torch.addmm(lam[:, None] * p, p, G).add_(Ep @ V)
    r = b - matvec(x)
    p = r.clone()
    rr = (r * r).sum(1)                                                # (n_rows,)
    for _ in range(steps):
        Ap = matvec(p)
        alpha = rr / (p * Ap).sum(1).clamp_min(1e-20)
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * Ap
        new = (r * r).sum(1)
        p = r + (new / rr.clamp_min(1e-20))[:, None] * p
        rr = new
    return x


def _cholesky(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower Cholesky factors of a batch ``A`` (B, n, n) and LAPACK's info (B,), > 0 where one is not positive
    definite. Blocked: the leading block is factorised, the rest updated by a triangular solve and bmm
    (faster than LAPACK's per-matrix factorisation at these sizes)."""
    n = A.shape[-1]
    if n <= CHOLESKY_BLOCK:
        return torch.linalg.cholesky_ex(A)
    k = n // 2
    L11, info1 = _cholesky(A[:, :k, :k])
    L21 = torch.linalg.solve_triangular(L11.mT, A[:, k:, :k], upper=True, left=False)   # A21 L11^-T
    L22, info2 = _cholesky(torch.baddbmm(A[:, k:, k:], L21, L21.mT, alpha=-1))        # the Schur complement
    L = torch.zeros_like(A)
    L[:, :k, :k], L[:, k:, :k], L[:, k:, k:] = L11, L21, L22
    return L, torch.maximum(info1, info2)


def _plan(X: sp.csr_matrix, d: int) -> list:
    """The exact solver's batches: rows sorted by length, each batch's (row ids, padded column ids, L)."""
    counts = np.diff(X.indptr)
    order = np.argsort(counts, kind="stable")
    plan = []
    for s in _batches(counts[order], d):
        rows = order[s]
        length = max(1, int(counts[rows[-1]]))
        slot = np.arange(length)[None, :]                              # (1, L)
        valid = slot < counts[rows][:, None]                           # (B, L)
        at = np.where(valid, X.indptr[rows][:, None] + slot, X.nnz)
        cols = np.append(X.indices, X.shape[1])[at]                    # padding points at the zero row
        plan.append((torch.from_numpy(rows.astype(np.int64)), torch.from_numpy(cols.reshape(-1).astype(np.int64)),
                     length))
    return plan


def _batches(sorted_counts: np.ndarray, d: int):
    """Slices of rows (sorted by length, ascending) whose padded gather (B, L, d) and normal-equation
    matrices (B, d, d) fit BATCH_FLOATS and whose lengths differ by at most PAD_RATIO; the longest
    row of a batch is its last."""
    start, n = 0, len(sorted_counts)
    cap = max(1, BATCH_FLOATS // (d * d))
    while start < n:
        window = sorted_counts[start:start + cap]                      # a batch takes at most cap rows
        # (k + 1) rows padded to the (k + 1)-th row's length: non-decreasing in k, so a search finds the most that fit
        floats = np.arange(1, len(window) + 1) * np.maximum(1, window) * d
        similar = np.searchsorted(window, PAD_RATIO * max(window[0], PAD_FLOOR), side="right")
        take = min(cap, int(similar), max(1, int(np.searchsorted(floats, BATCH_FLOATS, side="right"))))
        yield slice(start, start + take)
        start += take
