# cython: language_level=3
"""Sparse-input kernels: the checks that let ``fastrank._validation.to_csr`` skip work.

scipy's COO -> CSR conversion scatters every entry and ``sum_duplicates`` then sorts every row,
even when the input is already in order, which is the usual case (a COO made from a CSR, or a
split of one; a CSR from scipy). These kernels tell, in passes that vectorise, whether it is:
then the CSR is the input's own arrays (copied) and its row pointer. Input out of order goes
through scipy as before. The caller range-checks the indices first.
"""

import numpy as np


def sorted_rows_pointer(const int[::1] rows, int n_rows):
    """The CSR row pointer of COO entries already grouped by row, or None if they are not.

    Parameters
    ----------
    rows : int32 array of shape (nnz,)
        Row of each entry, each in ``[0, n_rows)`` (checked by the caller).
    n_rows : int

    Returns
    -------
    int32 array of shape (n_rows + 1,) or None
        ``indptr`` such that row ``r``'s entries are ``indptr[r]:indptr[r + 1]`` when ``rows``
        never decreases; None otherwise.
    """
    cdef Py_ssize_t nnz = rows.shape[0], entry, descents = 0
    cdef int row = 0
    with nogil:
        for entry in range(1, nnz):
            descents += rows[entry] < rows[entry - 1]
    if descents:
        return None
    indptr_array = np.empty(n_rows + 1, dtype=np.int32)
    cdef int[::1] indptr = indptr_array
    with nogil:
        entry = 0
        while entry < nnz:
            # rows never fall, so when the eighth entry ahead is in a row already started, so are
            # the seven before it: skip them at once (rows hold tens of entries in usual data)
            if entry + 8 <= nnz and rows[entry + 7] < row:
                entry += 8
                continue
            while row <= rows[entry]:
                indptr[row] = <int>entry
                row += 1
            entry += 1
        while row <= n_rows:
            indptr[row] = <int>nnz
            row += 1
    return indptr_array


def has_canonical_rows(const int[::1] indptr, const int[::1] indices):
    """Whether every row's columns rise strictly (sorted, no duplicates).

    Parameters
    ----------
    indptr : int32 array of shape (n_rows + 1,)
        Rising from 0 to at most ``len(indices)`` (a checked CSR's).
    indices : int32 array of shape (nnz,)

    Returns
    -------
    bool
    """
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, row, entry, nnz, descents = 0, row_start_descents = 0
    if n_rows < 0 or indptr[n_rows] > indices.shape[0]:
        raise ValueError("indptr does not match indices")
    nnz = indptr[n_rows]
    # In canonical rows the columns fall only where a row starts: count every fall (one pass
    # over the entries, without a branch), then those at the first entry of a row.
    with nogil:
        for entry in range(1, nnz):
            descents += indices[entry] <= indices[entry - 1]
        for row in range(1, n_rows):
            # the first row starting at this position (empty rows before it start there too)
            if 0 < indptr[row] < nnz and indptr[row] > indptr[row - 1]:
                row_start_descents += indices[indptr[row]] <= indices[indptr[row] - 1]
    return descents == row_start_descents
