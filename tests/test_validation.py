"""to_csr: every input order gives scipy's canonical CSR, through the in-order shortcut or not."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastrank import _sparse
from fastrank._validation import to_csr


def scipy_canonical(matrix):
    csr = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    csr.sum_duplicates()
    return csr


def assert_canonical_copy(result, matrix):
    expected = scipy_canonical(matrix)
    assert result.shape == expected.shape and result.dtype == np.float32
    assert result.indptr.dtype == np.int32 and result.indices.dtype == np.int32
    np.testing.assert_array_equal(result.indptr, expected.indptr)
    np.testing.assert_array_equal(result.indices, expected.indices)
    np.testing.assert_allclose(result.data, expected.data, rtol=1e-6)
    for array in (result.data, result.indices, result.indptr):
        for source in (matrix.data, getattr(matrix, "indices", matrix.data), getattr(matrix, "row", matrix.data)):
            assert not np.shares_memory(array, source)


def random_entries(rng, n_rows, n_cols, nnz):
    return rng.integers(0, n_rows, nnz), rng.integers(0, n_cols, nnz), rng.normal(size=nnz)


@pytest.mark.parametrize("seed", range(40))
def test_every_input_order_gives_the_canonical_csr(seed):
    rng = np.random.default_rng(seed)
    n_rows, n_cols = rng.integers(1, 30, size=2)
    rows, cols, values = random_entries(rng, n_rows, n_cols, rng.integers(0, 300))
    unsorted = sp.coo_matrix((values, (rows, cols)), shape=(n_rows, n_cols))
    canonical = scipy_canonical(unsorted)
    by_row = np.argsort(rows, kind="stable")  # rows grouped, columns in any order, duplicates kept
    inputs = {
        "coo unsorted": unsorted,
        "coo from csr (in order)": canonical.tocoo(),
        "coo rows grouped": sp.coo_matrix((values[by_row], (rows[by_row], cols[by_row])), shape=(n_rows, n_cols)),
        "coo int64 coords, float64": sp.coo_matrix(
            (values, (rows.astype(np.int64), cols.astype(np.int64))), shape=(n_rows, n_cols)),
        "coo array": sp.coo_array(canonical.tocoo()),
        "csr canonical": canonical,
        "csr unsorted columns": sp.csr_matrix(
            (values[by_row].astype(np.float32), cols[by_row].astype(np.int32),
             np.searchsorted(rows[by_row], np.arange(n_rows + 1)).astype(np.int32)), shape=(n_rows, n_cols)),
        "csr integers": sp.csr_matrix(np.round(canonical.toarray() * 3).astype(np.int64)),
    }
    for name, matrix in inputs.items():
        result = to_csr(matrix, "x", allow_empty=True)
        assert_canonical_copy(result, matrix)


def test_strided_index_arrays_are_accepted():
    """scipy keeps views given as coordinates or index arrays; to_csr reads them all the same."""
    rows = np.array([0, 7, 0, 7, 1, 7, 2, 7], dtype=np.int32)[::2]
    cols = np.array([0, 7, 2, 7, 1, 7, 0, 7], dtype=np.int32)[::2]
    values = np.arange(1, 9, dtype=np.float32)[::2]
    coo = sp.coo_matrix((values, (rows, cols)), shape=(3, 3))
    coo.row, coo.col, coo.data = rows, cols, values  # the constructor may have copied them
    csr = sp.csr_matrix((values, cols, np.array([0, 2, 3, 4], dtype=np.int32)), shape=(3, 3))
    csr.indices, csr.data = cols, values
    assert not (coo.row.flags.c_contiguous or csr.indices.flags.c_contiguous)
    for matrix in (coo, csr):
        np.testing.assert_array_equal(to_csr(matrix, "x").toarray(), [[1, 0, 3], [0, 5, 0], [7, 0, 0]])


def test_to_csr_leaves_the_input_alone():
    canonical = sp.random(50, 40, density=0.2, format="csr", dtype=np.float32, random_state=0)
    for matrix in (canonical, canonical.tocoo()):
        before = matrix.copy()
        result = to_csr(matrix, "x")
        result.data[:] = -1
        result.indices[:] = 0
        assert (matrix != before).nnz == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e39])
def test_in_order_input_is_still_checked_for_non_finite_values(bad):
    matrix = sp.random(20, 10, density=0.3, format="csr", dtype=np.float64, random_state=1)
    matrix.data[3] = bad
    for given in (matrix, matrix.tocoo()):
        with pytest.raises(ValueError, match="NaN or infinite"):
            to_csr(given, "interactions")


def test_sorted_rows_pointer():
    rows = np.array([1, 1, 3, 3, 3, 4], dtype=np.int32)
    np.testing.assert_array_equal(_sparse.sorted_rows_pointer(rows, 6), [0, 0, 2, 2, 5, 6, 6])
    assert _sparse.sorted_rows_pointer(np.array([0, 2, 1], dtype=np.int32), 3) is None
    np.testing.assert_array_equal(_sparse.sorted_rows_pointer(np.array([], dtype=np.int32), 2), [0, 0, 0])


def test_sorted_rows_pointer_on_long_and_empty_rows():
    """Rows of every length around the eight entries that are skipped at once, empty rows
    between them, and a fall hidden in the middle of a long row."""
    rng = np.random.default_rng(0)
    for lengths in ([7, 8, 9], [8, 0, 8, 0, 0, 16], [1, 15, 0, 17, 3], list(rng.integers(0, 40, size=300))):
        rows = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
        n_rows = len(lengths) + 2  # and empty rows at the end
        expected = np.searchsorted(rows, np.arange(n_rows + 1))
        np.testing.assert_array_equal(_sparse.sorted_rows_pointer(rows, n_rows), expected)
        if len(rows) > 12:
            fallen = rows.copy()
            fallen[len(rows) // 2] = fallen[len(rows) // 2 - 1] - 1 if fallen[len(rows) // 2 - 1] > 0 else n_rows - 1
            if np.any(np.diff(fallen) < 0):
                assert _sparse.sorted_rows_pointer(fallen, n_rows) is None


@pytest.mark.parametrize(
    "indptr, indices, canonical",
    [
        ([0, 3, 5], [0, 2, 5, 1, 4], True),
        ([0, 3, 5], [0, 5, 2, 1, 4], False),  # unsorted inside a row
        ([0, 3, 5], [0, 2, 2, 1, 4], False),  # a repeated column
        ([0, 2, 2, 2, 4], [3, 7, 0, 7], True),  # empty rows between
        ([0, 2, 2, 2, 4], [3, 7, 7, 3], False),
        ([0, 0, 2, 4, 4], [5, 6, 7, 8], True),  # no fall at a row start
        ([0, 4], [1, 2, 3, 3], False),
        ([0, 0, 0], [], True),
    ],
)
def test_has_canonical_rows(indptr, indices, canonical):
    assert _sparse.has_canonical_rows(np.array(indptr, dtype=np.int32), np.array(indices, dtype=np.int32)) is canonical
