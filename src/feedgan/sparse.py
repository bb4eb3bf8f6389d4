"""Small sparse-matrix helpers shared by the models (:mod:`feedgan.rec`), their evaluation
(:mod:`feedgan.eval`) and the saved datasets (:mod:`feedgan.data`)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def binary(m: sp.spmatrix) -> sp.csr_matrix:
    """A float32 CSR copy of ``m`` with every non-zero set to 1 (duplicates summed first, stored zeros
    dropped), indices sorted; ``m`` itself is left as it was."""
    m = sp.csr_matrix(m, dtype=np.float32, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data[:] = 1.0
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


def checked_csr(data, indices, indptr, shape: tuple[int, int], what: str) -> sp.csr_matrix:
    """A CSR matrix from stored arrays, checked first, so a damaged file cannot index out of
    bounds; a ``ValueError`` naming ``what`` says which check failed."""
    data, indices, indptr = np.asarray(data), np.asarray(indices), np.asarray(indptr)
    if indptr.ndim != 1 or len(indptr) != shape[0] + 1 or indptr.dtype.kind not in "iu" \
            or indices.dtype.kind not in "iu" or indices.ndim != 1 or data.shape != indices.shape:
        raise ValueError(f"{what}: arrays of the wrong shape or type")
    if indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
        raise ValueError(f"{what}: row pointers out of order")
    if len(indices) and (indices.min() < 0 or indices.max() >= shape[1]):
        raise ValueError(f"{what}: column index out of range")
    return sp.csr_matrix((data, indices, indptr), shape=shape)
