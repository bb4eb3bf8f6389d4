"""Small sparse-matrix helpers shared by the models (:mod:`feedgan.rec`) and their evaluation
(:mod:`feedgan.eval`)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def binary(m: sp.spmatrix) -> sp.csr_matrix:
    """``m`` as float32 CSR with every stored non-zero set to 1 (duplicates summed first), indices sorted."""
    m = sp.csr_matrix(m, dtype=np.float32)
    m.sum_duplicates()
    m.data[:] = 1.0
    m.eliminate_zeros()
    m.sort_indices()
    return m


def pair_lookup(M: sp.spmatrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether each ``(rows[k], cols[k])`` is a stored non-zero of ``M`` (bool (n,)), vectorised
    by a sorted-key search (no per-pair loop, no dense matrix)."""
    M = binary(M)
    n_cols = M.shape[1]
    keys = np.repeat(np.arange(M.shape[0], dtype=np.int64), np.diff(M.indptr)) * n_cols + M.indices
    q = np.asarray(rows, dtype=np.int64) * n_cols + np.asarray(cols, dtype=np.int64)
    if len(keys) == 0:
        return np.zeros(len(q), dtype=bool)
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return keys[pos] == q
