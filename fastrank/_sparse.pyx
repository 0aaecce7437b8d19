# cython: language_level=3
"""Sparse-input kernels: the checks that let ``fastrank._validation.to_csr`` skip work.

scipy's COO -> CSR conversion scatters every entry and ``sum_duplicates`` then sorts every row,
even when the input is already in order, which is the usual case (a COO made from a CSR, or a
split of one; a CSR from scipy). ``canonical_csr_arrays`` and ``canonical_coo_arrays`` tell, in
passes that vectorise and on several threads, whether it is, checking the structure themselves:
then the CSR is the input's own arrays (copied) and its row pointer. Input out of order goes
through scipy as before.
"""

import numpy as np

cimport numpy as cnp
from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t

from fastrank._common cimport fastrank_team_barrier, rows_are_canonical


ctypedef fused index_t:
    int
    int64_t

ctypedef fused value_t:
    float
    double
    int       # (the values of data.Dataset's interactions: counts, converted exactly below 2**24)
    int64_t


cdef void fill_row_pointer(const index_t* rows, Py_ssize_t start, Py_ssize_t stop, int* indptr) noexcept nogil:
    """Set ``indptr[row]`` to the first entry of ``row`` for the rows after the one of entry
    ``start - 1`` (from row 0 when ``start`` is 0) up to the row of entry ``stop - 1``, of
    entries checked in order and in range (:func:`copy_checked_entries`)."""
    cdef index_t row = rows[start - 1] + 1 if start > 0 else 0
    cdef Py_ssize_t entry = start
    while entry < stop:
        # when the eighth entry ahead is in a row already started, so are the seven before it
        # (rows hold tens of entries in usual data)
        if entry + 8 <= stop and rows[entry + 7] < row:
            entry += 8
            continue
        while row <= rows[entry]:
            indptr[row] = <int>entry
            row += 1
        entry += 1


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


cdef int entry_threads(int num_threads, Py_ssize_t nnz) noexcept:
    """How many of ``num_threads`` threads share the copy of ``nnz`` entries."""
    return <int>max(1, min(num_threads, nnz // ENTRIES_PER_THREAD))


cdef struct CsrOutput:
    int* indptr
    int* indices
    float* data


cdef tuple new_csr_arrays(Py_ssize_t n_rows, Py_ssize_t nnz, CsrOutput* output):
    """New (indptr int32 (n_rows + 1,), indices int32 (nnz,), data float32 (nnz,)) arrays, whose
    data ``output`` then points to."""
    cdef cnp.ndarray indptr = np.empty(n_rows + 1, dtype=np.int32)
    cdef cnp.ndarray indices = np.empty(nnz, dtype=np.int32)
    cdef cnp.ndarray data = np.empty(nnz, dtype=np.float32)
    output.indptr = <int*>cnp.PyArray_DATA(indptr)
    output.indices = <int*>cnp.PyArray_DATA(indices)
    output.data = <float*>cnp.PyArray_DATA(data)
    return indptr, indices, data


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
    data : float32, float64, int32 or int64 array of shape (nnz,)
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
    cdef CsrOutput out
    arrays = new_csr_arrays(n_rows, nnz, &out)
    cdef const index_t* indices_in = &indices[0] if nnz > 0 else NULL
    cdef const value_t* data_in = &data[0] if nnz > 0 else NULL
    # each thread a run of rows holding about nnz / n_threads entries
    n_threads = entry_threads(num_threads, nnz)
    cut_array = np.searchsorted(np.asarray(indptr), [nnz * thread // n_threads for thread in range(n_threads + 1)])
    cut_array[0], cut_array[n_threads] = 0, n_rows
    cdef const Py_ssize_t[::1] first_rows = cut_array.astype(np.intp)
    cdef int[::1] bad = np.zeros(n_threads, dtype=np.int32)
    with nogil:
        for row in range(n_rows + 1):
            out.indptr[row] = <int>indptr[row]
    with nogil, parallel(num_threads=n_threads):
        for thread in prange(n_threads, schedule="static", chunksize=1):
            bad[thread] = copy_checked_rows(&indptr[0], indices_in, data_in, <index_t>n_cols, first_rows[thread],
                                            first_rows[thread + 1], out.indptr, out.indices, out.data)
    for thread in range(n_threads):
        if bad[thread]:
            return None
    return arrays


cdef inline int any_of(const int* flags, int count) noexcept nogil:
    cdef int i
    for i in range(count):
        if flags[i]:
            return 1
    return 0


cdef int copy_checked_entries(const index_t* rows, const index_t* cols, const value_t* data, index_t n_rows,
                              index_t n_cols, Py_ssize_t start, Py_ssize_t stop, int* new_indices,
                              float* new_data) noexcept nogil:
    """Copy entries ``start:stop`` of a COO matrix's arrays into the int32/float32 arrays; 1 if
    a row or column is outside the shape, a value not finite as a float32, or an entry not after
    the one before it in (row, column) order (the entry before ``start`` included), else 0.
    One loop per job, as in :func:`copy_checked_rows`, so that each vectorises."""
    cdef Py_ssize_t entry
    cdef int outside = 0, nonfinite = 0, disorder = 0  # (int: see rows_are_canonical)
    for entry in range(start, stop):
        outside += (rows[entry] < 0) | (rows[entry] >= n_rows) | (cols[entry] < 0) | (cols[entry] >= n_cols)
    for entry in range(start, stop):
        new_indices[entry] = <int>cols[entry]
    for entry in range(start, stop):
        new_data[entry] = <float>data[entry]
    for entry in range(start, stop):
        nonfinite += new_data[entry] - new_data[entry] != 0  # (see copy_checked_rows)
    for entry in range(max(start, 1), stop):
        disorder += (rows[entry] < rows[entry - 1]) | ((rows[entry] == rows[entry - 1]) & (cols[entry] <= cols[entry - 1]))
    return (outside | nonfinite | disorder) != 0


def canonical_coo_arrays(const index_t[::1] rows, const index_t[::1] cols, const value_t[::1] data,
                         Py_ssize_t n_rows, Py_ssize_t n_cols, int num_threads=1):
    """The CSR arrays (int32 and float32) of a COO matrix whose entries are already in row order,
    with the columns of each row rising strictly.

    One call in C stands for the range check of the coordinates, the check of their order, the
    row pointer, the copies of the columns and values and the check for finite values, which
    ``fit_partial`` made in numpy and Python (0.08 ms of each call on MovieLens 100K, warm).

    Parameters
    ----------
    rows, cols : int32 or int64 arrays of shape (nnz,), of one type
    data : float32, float64, int32 or int64 array of shape (nnz,)
    n_rows, n_cols : int
        The matrix's shape.
    num_threads : int, default 1
        Threads that check and copy runs of entries (of at least ``ENTRIES_PER_THREAD`` each).

    Returns
    -------
    tuple of (indptr int32 (n_rows + 1,), indices int32 (nnz,), data float32 (nnz,)), or None
        None unless the three arrays have one length below 2**31 - 1, every coordinate is
        inside the shape, the entries rise in (row, column) order without repeats, and every
        value is finite as a float32: the caller then takes the general path, which names the
        problem or sorts the entries.
    """
    cdef Py_ssize_t nnz = rows.shape[0], row
    cdef int thread, n_threads
    if (cols.shape[0] != nnz or data.shape[0] != nnz or nnz >= 2147483647
            or not 0 <= n_rows < 2147483647 or not 0 <= n_cols < 2147483647):
        return None
    cdef CsrOutput out
    arrays = new_csr_arrays(n_rows, nnz, &out)
    cdef const index_t* rows_in = &rows[0] if nnz > 0 else NULL
    cdef const index_t* cols_in = &cols[0] if nnz > 0 else NULL
    cdef const value_t* data_in = &data[0] if nnz > 0 else NULL
    n_threads = entry_threads(num_threads, nnz)
    cdef int[::1] bad = np.zeros(n_threads, dtype=np.int32)
    with nogil, parallel(num_threads=n_threads):
        for thread in prange(n_threads, schedule="static", chunksize=1):
            bad[thread] = copy_checked_entries(rows_in, cols_in, data_in, <index_t>n_rows, <index_t>n_cols,
                                               nnz * thread // n_threads, nnz * (thread + 1) // n_threads,
                                               out.indices, out.data)
        # the row pointer is only written once every thread's entries are known to be in range
        # and in order, so that no two threads write one of its entries
        fastrank_team_barrier()
        for thread in prange(n_threads, schedule="static", chunksize=1):
            if not any_of(&bad[0], n_threads):
                fill_row_pointer(rows_in, nnz * thread // n_threads, nnz * (thread + 1) // n_threads,
                                 out.indptr)
    if any_of(&bad[0], n_threads):
        return None
    with nogil:  # the rows after the last entry's (every row, without entries)
        for row in range((rows_in[nnz - 1] + 1) if nnz > 0 else 0, n_rows + 1):
            out.indptr[row] = <int>nnz
    return arrays
