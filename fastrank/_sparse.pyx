# cython: language_level=3
"""Sparse-input kernels: the checks that let ``fastrank._validation.to_csr`` skip work.

scipy's COO -> CSR conversion scatters every entry and ``sum_duplicates`` then sorts every row,
even when the input is already in order, which is the usual case (a COO made from a CSR, or a
split of one; a CSR from scipy). These kernels tell, in passes that vectorise, whether it is:
then the CSR is the input's own arrays (copied) and its row pointer. Input out of order goes
through scipy as before. ``canonical_csr_arrays`` checks a CSR matrix's structure itself; for the
others the caller range-checks the indices first.
"""

import numpy as np
from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t

from fastrank._common cimport rows_are_canonical


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
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1
    cdef int canonical
    if n_rows < 0 or indptr[n_rows] > indices.shape[0]:
        raise ValueError("indptr does not match indices")
    with nogil:
        canonical = rows_are_canonical(&indptr[0], &indices[0] if indices.shape[0] > 0 else NULL, n_rows)
    return bool(canonical)


ctypedef fused index_t:
    int
    int64_t

ctypedef fused value_t:
    float
    double


cdef int copy_checked_rows(const index_t* indptr, const index_t* indices, const value_t* data, index_t column_bound,
                           Py_ssize_t first_row, Py_ssize_t last_row, const int* new_indptr, int* new_indices,
                           float* new_data) noexcept nogil:
    """Copy the entries of rows ``first_row:last_row`` of a CSR matrix whose row pointer rises
    (checked, and copied to ``new_indptr`` already) into the int32/float32 arrays; 1 if a column
    is outside ``[0, column_bound)``, a value not finite as a float32 or a row not strictly
    rising, else 0. One simple loop per job, each of which vectorises: one loop doing
    everything, with a branch per entry, took twice as long."""
    cdef Py_ssize_t entry, start = indptr[first_row], stop = indptr[last_row]
    cdef int outside = 0, nonfinite = 0  # (int: see rows_are_canonical)
    for entry in range(start, stop):
        # (compared in the indices' own type: a mixed-width comparison did not vectorise)
        outside += (indices[entry] < 0) | (indices[entry] >= column_bound)
    for entry in range(start, stop):
        new_indices[entry] = <int>indices[entry]
    for entry in range(start, stop):
        new_data[entry] = <float>data[entry]
    for entry in range(start, stop):
        # NaN or infinite (a float64 beyond the float32 range became inf); x - x is 0 for every
        # finite x (the build has no -ffast-math)
        nonfinite += new_data[entry] - new_data[entry] != 0
    if outside or nonfinite:
        return 1
    return not rows_are_canonical(new_indptr + first_row, new_indices, last_row - first_row)


# Each thread copies and checks at least this many entries: below it, starting a thread costs
# more than it saves.
cdef Py_ssize_t ENTRIES_PER_THREAD = 16384


def canonical_csr_arrays(const index_t[::1] indptr, const index_t[::1] indices, const value_t[::1] data,
                         Py_ssize_t n_cols, int num_threads=1):
    """Copies of a CSR matrix's arrays as int32 and float32, when it is already canonical.

    One call in C stands for scipy's structural check, the check for sorted rows without
    duplicates, the conversion of every array and the check for finite values, which
    ``fit_partial`` made through numpy and scipy: on MovieLens 100K those took 0.21 ms of each
    call once an epoch had taken the caches, this 0.08-0.13 ms (with the scipy matrix around it).

    Parameters
    ----------
    indptr : int32 or int64 array of shape (n_rows + 1,)
    indices : array of shape (nnz,), of indptr's type
    data : float32 or float64 array of shape (nnz,)
    n_cols : int
        Number of columns.
    num_threads : int, default 1
        Threads that copy and check runs of rows (of at least ``ENTRIES_PER_THREAD`` entries each).

    Returns
    -------
    tuple of (indptr int32 (n_rows + 1,), indices int32 (nnz,), data float32 (nnz,)), or None
        None unless ``indptr`` rises from 0 to ``nnz`` (the length of ``indices`` and
        ``data``), every row's columns rise strictly within ``[0, n_cols)``, ``nnz`` is below
        2**31 - 1 and every value is finite as a float32: the caller then takes the general
        path, which names the problem or sorts the rows.
    """
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, nnz = indices.shape[0], row
    cdef int pointer_falls = 0, thread, n_threads
    if (n_rows < 0 or data.shape[0] != nnz or nnz >= 2147483647 or not 0 <= n_cols < 2147483647
            or indptr[0] != 0 or indptr[n_rows] != nnz):
        return None
    with nogil:
        for row in range(n_rows):
            pointer_falls += indptr[row + 1] < indptr[row]
    if pointer_falls:
        return None
    out_indptr = np.empty(n_rows + 1, dtype=np.int32)
    out_indices = np.empty(nnz, dtype=np.int32)
    out_data = np.empty(nnz, dtype=np.float32)
    cdef int[::1] new_indptr = out_indptr
    cdef int[::1] new_indices = out_indices
    cdef float[::1] new_data = out_data
    cdef int* indices_out = &new_indices[0] if nnz > 0 else NULL
    cdef float* data_out = &new_data[0] if nnz > 0 else NULL
    cdef const index_t* indices_in = &indices[0] if nnz > 0 else NULL
    cdef const value_t* data_in = &data[0] if nnz > 0 else NULL
    # each thread a run of rows holding about nnz / n_threads entries
    n_threads = <int>max(1, min(num_threads, nnz // ENTRIES_PER_THREAD))
    cut_array = np.searchsorted(np.asarray(indptr), [nnz * thread // n_threads for thread in range(n_threads + 1)])
    cut_array[0], cut_array[n_threads] = 0, n_rows
    cdef const Py_ssize_t[::1] first_rows = cut_array.astype(np.intp)
    cdef int[::1] bad = np.zeros(n_threads, dtype=np.int32)
    with nogil:
        for row in range(n_rows + 1):
            new_indptr[row] = <int>indptr[row]
    with nogil, parallel(num_threads=n_threads):
        for thread in prange(n_threads, schedule="static", chunksize=1):
            bad[thread] = copy_checked_rows(&indptr[0], indices_in, data_in, <index_t>n_cols, first_rows[thread],
                                            first_rows[thread + 1], &new_indptr[0], indices_out, data_out)
    for thread in range(n_threads):
        if bad[thread]:
            return None
    return out_indptr, out_indices, out_data
