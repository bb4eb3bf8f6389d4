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
Rows are solved in batches of users of similar length (padded to the longest, float32, PyTorch).

Unseen users fold in by the exact solve against the fitted item vectors, so ``fold_in = True``.
The item vectors start at N(0, init_std^2 / factors), seeded; the user vectors are solved first.
The paper's guidance: large ``factors`` (128 and up), about 16 epochs, ``unobserved`` and ``reg``
tuned on validation (both scale with the data; the grid in :mod:`feedgan.eval.bench`).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .base import Recommender

SOLVERS = ("cg", "exact")
BATCH_FLOATS = 1 << 24     # per batch of rows, at most this many floats in the padded gather (B * L * d)
                           # and in the normal-equation matrices (B * d * d): 64 MB each


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
        XT = X.T.tocsr()                                               # (n_items, n_users)
        gen = torch.Generator().manual_seed(int(self.seed))
        d = int(self.factors)
        H = torch.randn(X.shape[1], d, generator=gen) * (self.init_std / np.sqrt(d))
        task = None if progress is None else progress.add_task(f"fit {self.name}", total=int(self.epochs))
        W = torch.zeros(X.shape[0], d)
        for _ in range(int(self.epochs)):
            W = self._solve_rows(X, H, W if self.solver == "cg" else None)      # (n_users, d)
            H = self._solve_rows(XT, W, H if self.solver == "cg" else None)     # (n_items, d)
            if task is not None:
                progress.advance(task, 1)
        self.item_factors_ = H.numpy()

    def _solve_rows(self, X: sp.csr_matrix, V: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """Each row's least-squares vector against the fixed other side ``V`` (n_cols, d): exact without
        ``start``, else ``cg_steps`` conjugate-gradient steps from ``start`` (n_rows, d)."""
        n_rows, n_cols = X.shape
        d = V.shape[1]
        G = self.unobserved * (V.T @ V)                                # (d, d) the all-pairs term
        counts = np.diff(X.indptr)
        lam = torch.from_numpy((self.reg * (counts + self.unobserved * n_cols) ** self.nu).astype(np.float32))
        out = torch.zeros(n_rows, d)
        order = np.argsort(counts, kind="stable")
        eye = torch.eye(d)
        for rows in _batches(counts[order], d, square=start is None):
            rows = order[rows]
            longest = max(1, int(counts[rows[-1]]))
            E, x = _padded(X, rows, V, longest)                         # (B, L, d), (B, L)
            b = (E * x[:, :, None]).sum(1)                              # (B, d)
            at = torch.from_numpy(rows)
            if start is not None:
                out[at] = _cg(E, G, lam[at], b, start[at], int(self.cg_steps))
                continue
            A = E.transpose(1, 2) @ E + G + lam[at, None, None] * eye   # (B, d, d)
            L, info = torch.linalg.cholesky_ex(A)
            if int(info.max()):
                raise ValueError(f"{self.name}: a normal-equation matrix is not positive definite; raise reg")
            out[at] = torch.cholesky_solve(b[:, :, None], L)[:, :, 0]
        return out

    def _score(self, users, history):
        H = torch.from_numpy(self.item_factors_)
        W = self._solve_rows(sp.csr_matrix(history, dtype=np.float32), H)  # (B, d) folded-in user vectors
        return (W @ H.T).numpy()


def _cg(E: torch.Tensor, G: torch.Tensor, lam: torch.Tensor, b: torch.Tensor, x: torch.Tensor,
        steps: int) -> torch.Tensor:
    """``steps`` conjugate-gradient steps on ``(E^T E + G + lam I) w = b`` per row, from ``x`` (B, d).

    ``E`` (B, L, d) padded with zero rows, ``G`` (d, d) shared, ``lam`` (B,). The matrix is never
    formed: ``A p = E^T (E p) + p G + lam p``."""
    def matvec(p):
        return torch.einsum("bld,bl->bd", E, torch.einsum("bld,bd->bl", E, p)) + p @ G + lam[:, None] * p
    r = b - matvec(x)
    p = r.clone()
    rr = (r * r).sum(1)                                                # (B,)
    for _ in range(steps):
        Ap = matvec(p)
        alpha = rr / (p * Ap).sum(1).clamp_min(1e-20)
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * Ap
        new = (r * r).sum(1)
        p = r + (new / rr.clamp_min(1e-20))[:, None] * p
        rr = new
    return x


def _batches(sorted_counts: np.ndarray, d: int, square: bool = True):
    """Slices of rows (sorted by length, ascending) whose padded gather (and, with ``square``, the
    (B, d, d) normal-equation matrices) fit BATCH_FLOATS."""
    start, n = 0, len(sorted_counts)
    cap = max(1, BATCH_FLOATS // (d * d)) if square else n
    while start < n:
        # the longest row of a batch is its last; take as many rows as fit at the longest length
        stop = start + 1
        while stop < n and stop - start < cap and (stop - start + 1) * max(1, sorted_counts[stop]) * d <= BATCH_FLOATS:
            stop += 1
        yield slice(start, stop)
        start = stop


def _padded(X: sp.csr_matrix, rows: np.ndarray, V: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The vectors of each row's columns, zero-padded to ``length``: (B, length, d), and their values (B, length)."""
    starts, ends = X.indptr[rows], X.indptr[rows + 1]
    n = ends - starts
    if not n.any():                                                    # rows without entries: a zero gather
        return torch.zeros(len(rows), 1, V.shape[1]), torch.zeros(len(rows), 1)
    slot = np.arange(length)[None, :]                                  # (1, L)
    valid = slot < n[:, None]                                          # (B, L)
    at = np.where(valid, starts[:, None] + slot, 0)
    cols = torch.from_numpy(X.indices[at].astype(np.int64))
    vals = torch.from_numpy(np.where(valid, X.data[at], 0.0).astype(np.float32))
    E = V[cols] * torch.from_numpy(valid)[:, :, None]
    return E, vals
