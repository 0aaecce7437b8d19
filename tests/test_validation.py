"""to_csr: every input order gives scipy's canonical CSR, through the in-order shortcut or not."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastrank import _sparse
from fastrank._validation import CsrArrays, to_csr


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


def assert_general_path_takes(matrix, sortable):
    """to_csr's general path, given a matrix the C fast path declined: the canonical copy of one
    it can sort, else a ValueError naming the problem."""
    if sortable:
        assert_canonical_copy(to_csr(matrix, "x"), matrix)
    else:
        with pytest.raises(ValueError, match="malformed|NaN or infinite"):
            to_csr(matrix, "x")


def random_entries(rng, n_rows, n_cols, nnz):
    return rng.integers(0, n_rows, nnz), rng.integers(0, n_cols, nnz), rng.normal(size=nnz)


def int64_csr(csr, dtype):
    """The same matrix with int64 index arrays (scipy's constructor may make them int32)."""
    copy = sp.csr_matrix(csr, dtype=dtype, copy=True)
    copy.indptr, copy.indices = copy.indptr.astype(np.int64), copy.indices.astype(np.int64)
    return copy


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
        "csr int64 indices, float64": int64_csr(canonical, np.float64),
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


def coo_rows_arrays(rows):
    """A COO matrix's arrays with entries at these rows (in row order, columns 0, 1, ... in each)."""
    rows = np.asarray(rows, dtype=np.int32)
    starts = np.searchsorted(rows, rows)
    return rows, (np.arange(rows.shape[0]) - starts).astype(np.int32), np.ones(rows.shape[0], dtype=np.float32)


def test_coo_row_pointer():
    rows = np.array([1, 1, 3, 3, 3, 4], dtype=np.int32)
    np.testing.assert_array_equal(_sparse.canonical_coo_arrays(*coo_rows_arrays(rows), 6, 5)[0], [0, 0, 2, 2, 5, 6, 6])
    assert _sparse.canonical_coo_arrays(*coo_rows_arrays([0, 2, 1]), 3, 5) is None
    np.testing.assert_array_equal(_sparse.canonical_coo_arrays(*coo_rows_arrays([]), 2, 5)[0], [0, 0, 0])


def test_coo_row_pointer_on_long_and_empty_rows():
    """Rows of every length around the eight entries that are skipped at once, empty rows
    between them, and a fall hidden in the middle of a long row."""
    rng = np.random.default_rng(0)
    for lengths in ([7, 8, 9], [8, 0, 8, 0, 0, 16], [1, 15, 0, 17, 3], list(rng.integers(0, 40, size=300))):
        rows = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
        n_rows = len(lengths) + 2  # and empty rows at the end
        expected = np.searchsorted(rows, np.arange(n_rows + 1))
        np.testing.assert_array_equal(_sparse.canonical_coo_arrays(*coo_rows_arrays(rows), n_rows, 50)[0], expected)
        if len(rows) > 12:
            fallen = rows.copy()
            fallen[len(rows) // 2] = fallen[len(rows) // 2 - 1] - 1 if fallen[len(rows) // 2 - 1] > 0 else n_rows - 1
            if np.any(np.diff(fallen) < 0):
                _, cols, data = coo_rows_arrays(rows)
                assert _sparse.canonical_coo_arrays(fallen, cols, data, n_rows, 50) is None


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
def test_canonical_rows(indptr, indices, canonical):
    indptr, indices = np.array(indptr, dtype=np.int32), np.array(indices, dtype=np.int32)
    out = _sparse.canonical_csr_arrays(indptr, indices, np.ones(indices.shape[0], dtype=np.float32), 10)
    assert (out is not None) is canonical


def canonical_example():
    # rows: [0, 2], [], [1, 3, 4]
    return (np.array([0, 2, 2, 5], dtype=np.int32), np.array([0, 2, 1, 3, 4], dtype=np.int32),
            np.array([1.0, -2.0, 3.5, 0.0, 7.0]))


@pytest.mark.parametrize("index_type", [np.int32, np.int64])
@pytest.mark.parametrize("value_type", [np.float32, np.float64])
def test_canonical_csr_arrays_copies_a_canonical_matrix(index_type, value_type):
    indptr, indices, data = canonical_example()
    out = _sparse.canonical_csr_arrays(indptr.astype(index_type), indices.astype(index_type),
                                       data.astype(value_type), 5)
    assert [array.dtype for array in out] == [np.int32, np.int32, np.float32]
    for result, source in zip(out, (indptr, indices, data)):
        np.testing.assert_array_equal(result, source)
    empty = _sparse.canonical_csr_arrays(np.zeros(3, dtype=np.int32), np.zeros(0, dtype=np.int32),
                                         np.zeros(0, dtype=np.float32), 4)
    assert empty[0].tolist() == [0, 0, 0] and empty[1].shape == empty[2].shape == (0,)


@pytest.mark.parametrize("change", [
    "unsorted row", "repeated column", "column too large", "negative column", "nan", "inf",
    "beyond float32", "falling indptr", "indptr past the entries", "indptr not from 0", "short data"])
def test_canonical_csr_arrays_leaves_everything_else_to_the_general_path(change):
    """Anything but a well-formed canonical matrix with finite float32 values gives None, and
    to_csr then sorts the rows or names the problem as before."""
    indptr, indices, data = canonical_example()
    if change == "unsorted row":
        indices[3], indices[4] = 4, 3
    elif change == "repeated column":
        indices[4] = 3
    elif change == "column too large":
        indices[4] = 5
    elif change == "negative column":
        indices[2] = -1
    elif change == "nan":
        data[1] = np.nan
    elif change == "inf":
        data[1] = -np.inf
    elif change == "beyond float32":
        data[1] = 1e39
    elif change == "falling indptr":
        indptr[1:3] = [3, 2]
    elif change == "indptr past the entries":
        indptr[3] = 6
    elif change == "indptr not from 0":
        indptr[0] = 1
    elif change == "short data":
        data = data[:-1]
    assert _sparse.canonical_csr_arrays(indptr, indices, data, 5) is None
    matrix = sp.csr_matrix((3, 5), dtype=np.float64)
    matrix.indptr, matrix.indices, matrix.data = indptr, indices, data
    assert_general_path_takes(matrix, sortable=change in ("unsorted row", "repeated column"))


@pytest.mark.parametrize("num_threads", [1, 2, 3, 8])
def test_canonical_csr_arrays_on_several_threads(num_threads):
    """Runs of rows checked and copied by several threads (a matrix large enough for them): the
    same arrays as one thread, and a bad entry in any thread's run still gives None."""
    matrix = sp.random(600, 300, density=0.4, format="csr", dtype=np.float64, random_state=3)
    matrix.sort_indices()
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    assert indices.shape[0] >= 4 * 16384  # enough entries for every thread count here to split
    out = _sparse.canonical_csr_arrays(indptr, indices, data, 300, num_threads)
    for result, source in zip(out, (indptr, indices, data.astype(np.float32))):
        np.testing.assert_array_equal(result, source)
    for at in (0, indices.shape[0] // 3, indices.shape[0] // 2 + 7, indices.shape[0] - 1):
        bad_value = data.copy()
        bad_value[at] = np.nan
        assert _sparse.canonical_csr_arrays(indptr, indices, bad_value, 300, num_threads) is None
        bad_column = indices.copy()
        bad_column[at] = 300
        assert _sparse.canonical_csr_arrays(indptr, bad_column, data, 300, num_threads) is None
        row = np.searchsorted(indptr, at, side="right") - 1
        if indptr[row + 1] - indptr[row] >= 2:  # a row out of order
            unsorted = indices.copy()
            unsorted[indptr[row]:indptr[row + 1]] = unsorted[indptr[row]:indptr[row + 1]][::-1]
            assert _sparse.canonical_csr_arrays(indptr, unsorted, data, 300, num_threads) is None
    converted = to_csr(matrix, "x", num_threads=num_threads)
    np.testing.assert_array_equal(converted.toarray(), matrix.toarray().astype(np.float32))


def canonical_coo_example():
    # rows: [0, 2], [], [1, 3, 4], [] (the last row and the middle one empty)
    return (np.array([0, 0, 2, 2, 2], dtype=np.int32), np.array([0, 2, 1, 3, 4], dtype=np.int32),
            np.array([1.0, -2.0, 3.5, 0.0, 7.0]))


@pytest.mark.parametrize("index_type", [np.int32, np.int64])
@pytest.mark.parametrize("value_type", [np.float32, np.float64, np.int32, np.int64])
def test_canonical_coo_arrays_copies_a_matrix_in_row_order(index_type, value_type):
    rows, cols, data = canonical_coo_example()
    data = np.round(data) if np.dtype(value_type).kind == "i" else data
    out = _sparse.canonical_coo_arrays(rows.astype(index_type), cols.astype(index_type), data.astype(value_type), 4, 5)
    assert [array.dtype for array in out] == [np.int32, np.int32, np.float32]
    for result, expected in zip(out, ([0, 2, 2, 5, 5], cols, data)):
        np.testing.assert_array_equal(result, expected)
    empty = _sparse.canonical_coo_arrays(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32),
                                         np.zeros(0, dtype=np.float32), 3, 4)
    assert empty[0].tolist() == [0, 0, 0, 0] and empty[1].shape == empty[2].shape == (0,)
    first_row_empty = _sparse.canonical_coo_arrays(rows + 1, cols, data, 4, 5)
    assert first_row_empty[0].tolist() == [0, 0, 2, 2, 5]


# (array, position, new value) edits that make canonical_coo_example's matrix something else
COO_CHANGES = {
    "unsorted row": [("cols", 3, 4), ("cols", 4, 3)], "repeated entry": [("cols", 4, 3)],
    "rows falling": [("rows", 1, 2), ("rows", 2, 0)], "row too large": [("rows", 4, 4)],
    "negative row": [("rows", 0, -1)], "column too large": [("cols", 4, 5)], "negative column": [("cols", 2, -1)],
    "nan": [("data", 1, np.nan)], "inf": [("data", 1, -np.inf)], "beyond float32": [("data", 1, 1e39)],
}


COO_SHORTENED = {"short data": "data", "short columns": "cols"}


@pytest.mark.parametrize("change", list(COO_CHANGES) + list(COO_SHORTENED))
def test_canonical_coo_arrays_leaves_everything_else_to_the_general_path(change):
    """Anything but coordinates in (row, column) order inside the shape, with finite float32
    values, gives None, and to_csr then sorts the entries or names the problem as before."""
    arrays = dict(zip(("rows", "cols", "data"), canonical_coo_example()))
    if change in COO_SHORTENED:
        arrays[COO_SHORTENED[change]] = arrays[COO_SHORTENED[change]][:-1]
        assert _sparse.canonical_coo_arrays(arrays["rows"], arrays["cols"], arrays["data"], 4, 5) is None
        return  # scipy refuses to hold such a matrix
    for array, position, value in COO_CHANGES[change]:
        arrays[array][position] = value
    assert _sparse.canonical_coo_arrays(arrays["rows"], arrays["cols"], arrays["data"], 4, 5) is None
    matrix = sp.coo_matrix((4, 5), dtype=np.float64)
    matrix.row, matrix.col, matrix.data = arrays["rows"], arrays["cols"], arrays["data"]
    assert_general_path_takes(matrix, sortable=change in ("unsorted row", "repeated entry", "rows falling"))


@pytest.mark.parametrize("num_threads", [1, 2, 3, 8])
def test_canonical_coo_arrays_on_several_threads(num_threads):
    """Runs of entries checked and copied by several threads, each writing the row pointer of
    its rows: the same arrays as scipy's, and a bad entry in any thread's run (its first and last
    included, where the order check reaches into the run before) still gives None."""
    csr = sp.random(600, 300, density=0.4, format="csr", dtype=np.float64, random_state=4)
    csr.sort_indices()
    dense = csr.toarray()
    dense[[0, 1, 250, 251, 599]] = 0  # empty rows at the start, the end, and inside a thread's run
    coo = sp.coo_matrix(dense)
    rows, cols, data = coo.row.astype(np.int32), coo.col.astype(np.int32), coo.data
    nnz = rows.shape[0]
    assert nnz >= 4 * 16384  # enough entries for every thread count here to split
    expected = sp.csr_matrix(dense.astype(np.float32))
    out = _sparse.canonical_coo_arrays(rows, cols, data, 600, 300, num_threads)
    for result, source in zip(out, (expected.indptr, expected.indices, expected.data)):
        np.testing.assert_array_equal(result, source)
    cuts = [nnz * thread // num_threads for thread in range(1, num_threads)]
    for at in [0, nnz - 1] + cuts + [cut - 1 for cut in cuts]:
        bad_value = data.copy()
        bad_value[at] = np.inf
        assert _sparse.canonical_coo_arrays(rows, cols, bad_value, 600, 300, num_threads) is None
        bad_column = cols.copy()
        bad_column[at] = 300
        assert _sparse.canonical_coo_arrays(rows, bad_column, data, 600, 300, num_threads) is None
        bad_row = rows.copy()
        bad_row[at] = 600
        assert _sparse.canonical_coo_arrays(bad_row, cols, data, 600, 300, num_threads) is None
        if at > 0:  # this entry before the one ahead of it
            swapped_rows, swapped_cols = rows.copy(), cols.copy()
            swapped_rows[[at - 1, at]] = swapped_rows[[at, at - 1]]
            swapped_cols[[at - 1, at]] = swapped_cols[[at, at - 1]]
            assert _sparse.canonical_coo_arrays(swapped_rows, swapped_cols, data, 600, 300, num_threads) is None
    converted = to_csr(coo, "x", num_threads=num_threads)
    np.testing.assert_array_equal(converted.toarray(), dense.astype(np.float32))


def test_arrays_only_gives_the_arrays_of_the_same_csr():
    """fit's interaction check skips the scipy matrix: the fast and the general path give the same
    arrays as to_csr's matrix, and CsrArrays.to_scipy makes that matrix back."""
    canonical = sp.random(30, 20, density=0.3, format="csr", dtype=np.float64, random_state=5)
    unsorted = canonical.tocoo()
    order = np.random.default_rng(0).permutation(unsorted.nnz)
    unsorted = sp.coo_matrix((unsorted.data[order], (unsorted.row[order], unsorted.col[order])), shape=(30, 20))
    for matrix in (canonical, canonical.tocoo(), unsorted, canonical.toarray(), canonical.tolil()):
        expected = to_csr(matrix, "x")
        arrays = to_csr(matrix, "x", arrays_only=True)
        assert isinstance(arrays, CsrArrays) and arrays.shape == expected.shape == (30, 20)
        assert arrays.nnz == expected.nnz
        for name in ("indptr", "indices", "data"):
            np.testing.assert_array_equal(getattr(arrays, name), getattr(expected, name))
            assert getattr(arrays, name).dtype == getattr(expected, name).dtype
        np.testing.assert_array_equal(arrays.to_scipy().toarray(), expected.toarray())
