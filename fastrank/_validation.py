"""Input checks and conversions shared by every public entry point.

Everything that reaches a ``nogil`` kernel passes through here first: matrices become canonical
CSR (int32 indices, float32 values, duplicates summed, columns sorted, all values finite) and id
arrays become range-checked int32. Problems raise ``TypeError`` (wrong kind of object) or
``ValueError`` (right kind, bad content) naming the argument.
"""

import math
import numbers
from typing import NamedTuple, Tuple

import numpy as np
import scipy.sparse as sp

from fastrank import _sgd, _sparse

INT32_MAX = np.iinfo(np.int32).max


class CsrArrays(NamedTuple):
    """The arrays of a canonical CSR matrix, without a scipy matrix around them (``to_csr(...,
    arrays_only=True)``): building one costs 10-20 us, a share of a short ``fit_partial`` call
    that only reads the arrays.

    Attributes
    ----------
    indptr : int32 array of shape (n_rows + 1,)
    indices : int32 array of shape (nnz,)
    data : float32 array of shape (nnz,)
    shape : tuple of (n_rows, n_cols)
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: Tuple[int, int]

    @property
    def nnz(self):
        return self.indices.shape[0]

    @classmethod
    def of(cls, csr):
        return cls(csr.indptr, csr.indices, csr.data, csr.shape)

    def to_scipy(self):
        """The scipy CSR matrix of these arrays (not copied)."""
        csr = sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape, copy=False)
        csr.has_canonical_format = True
        return csr


def is_integer(value):
    """True for Python and numpy integers, but not for bools."""
    # (the exact-type test first: the abstract-class check costs a microsecond, and every
    # fit_partial call checks a dozen parameters)
    return type(value) is int or (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)))


def is_real(value):
    """True for Python and numpy real numbers, but not for bools."""
    return type(value) in (float, int) or (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)))


def is_finite_real(value):
    """True for a real number (see :func:`is_real`) that is neither NaN nor infinite."""
    if not is_real(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def to_csr(matrix, name, dtype=np.float32, allow_empty=False, num_threads=1, arrays_only=False):
    """Convert a sparse matrix or dense 2-D array to canonical CSR (float32 by default).

    Parameters
    ----------
    matrix : scipy sparse matrix/array of any format, or array-like of shape (n_rows, n_cols)
        Numeric values; duplicate entries are summed.
    name : str
        Argument name used in error messages.
    dtype : numpy dtype or None, default float32
        Value type of the result; None keeps the input's.
    allow_empty : bool, default False
        Accept a dimension of size 0.
    num_threads : int, default 1
        Threads that check and copy a canonical CSR or COO input (``_sparse``).
    arrays_only : bool, default False
        Return the result's arrays as a :class:`CsrArrays` instead of a scipy matrix.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_rows, n_cols), ``dtype`` (or its :class:`CsrArrays`)
        With int32 ``indptr``/``indices``, sorted column indices, no duplicates and finite values.

    Raises
    ------
    TypeError
        If ``matrix`` is not a matrix of numbers.
    ValueError
        If it is not 2-D, has an empty dimension, is too large for int32 indices, or holds NaN/inf.
    """
    if matrix is None:
        raise TypeError(f"{name} must be a scipy sparse matrix or a 2-D array, got None")
    if sp.issparse(matrix):
        if matrix.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got {matrix.ndim} dimensions")
        input_dtype = matrix.dtype
    else:
        if isinstance(matrix, (str, bytes, dict, set)):
            raise TypeError(f"{name} must be a scipy sparse matrix or a 2-D array, got {type(matrix).__name__}")
        try:
            dense = np.asarray(matrix)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be a scipy sparse matrix or a 2-D array: {error}") from None
        if dense.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got an array with {dense.ndim} dimension(s)")
        input_dtype = dense.dtype
    if np.dtype(input_dtype).kind not in "biuf":  # bool, signed, unsigned, float: no complex/timedelta/object
        raise TypeError(f"{name} must hold real numbers, got dtype {input_dtype}")
    dtype = input_dtype if dtype is None else dtype
    n_rows, n_cols = matrix.shape if sp.issparse(matrix) else dense.shape
    if (n_rows == 0 or n_cols == 0) and not allow_empty:
        raise ValueError(f"{name} is empty: shape {(n_rows, n_cols)}")
    if n_rows >= INT32_MAX or n_cols >= INT32_MAX:
        raise ValueError(f"{name} has shape {(n_rows, n_cols)}; each dimension must be below 2**31 - 1")
    if sp.issparse(matrix):
        arrays = _canonical_arrays(matrix, dtype, num_threads)
        if arrays is not None:
            return arrays if arrays_only else arrays.to_scipy()
        _check_sparse_structure(matrix, name)
        # scipy sums duplicates in the matrix's own type, where narrow integers wrap around
        # (int8: 100 + 100 = -56, which made a positive a negative): sum them in 64 bits
        summing_dtype = _summing_dtype(input_dtype)
        source_format = matrix.format
        if summing_dtype is not None:
            # widened entry by entry, before any conversion: conversions sum as they go, and so
            # does astype in scipy < 1.11
            try:
                coo = matrix.tocoo()
                matrix = sp.coo_matrix((coo.data.astype(summing_dtype), (coo.row, coo.col)), shape=coo.shape)
            except (ValueError, IndexError) as error:  # (indices edited out of the shape, e.g. in a lil)
                raise ValueError(f"{name} is a malformed {source_format} matrix: {error}") from None
        with np.errstate(over="ignore"):  # values too large for dtype become inf, rejected below
            csr = sp.csr_matrix(matrix, dtype=summing_dtype or dtype, copy=True)
        if source_format not in _STRUCTURE_CHECKED_FORMATS:
            # lil, dok and dia keep their indices in Python objects that can be edited by
            # hand, and their conversions copy bad indices through: check what they became
            _check_sparse_structure(csr, name, source_format)
    else:
        summing_dtype = None  # a dense array has no duplicates
        if np.issubdtype(input_dtype, np.floating) and not np.all(np.isfinite(dense)):
            raise ValueError(f"{name} contains NaN or infinite values")
        csr = sp.csr_matrix(dense.astype(dtype, copy=False))
    if csr.nnz >= INT32_MAX:
        raise ValueError(f"{name} has {csr.nnz} entries; at most 2**31 - 2 are supported")
    csr.sum_duplicates()  # also sorts the column indices
    if summing_dtype is not None:
        csr = _narrowed(csr, np.dtype(dtype), name)
    if csr.dtype.kind == "f" and not np.all(np.isfinite(csr.data)):
        raise ValueError(f"{name} contains NaN or infinite values (or values too large for {csr.dtype})")
    csr.indptr = csr.indptr.astype(np.int32, copy=False)
    csr.indices = csr.indices.astype(np.int32, copy=False)
    return CsrArrays.of(csr) if arrays_only else csr


def _summing_dtype(input_dtype):
    """The type in which to sum the duplicates of an integer matrix of ``input_dtype`` (None:
    its own). 64-bit integers sum in their own type (a wrap needs sums beyond 9.2e18)."""
    input_dtype = np.dtype(input_dtype)
    if input_dtype.kind in "iu" and input_dtype.itemsize < 8:
        return np.dtype(np.int64)
    return None


def _narrowed(csr, dtype, name):
    """``csr``, summed in 64 bits, in ``dtype``; ``ValueError`` if a sum does not fit an integer ``dtype``."""
    if dtype.kind in "iu" and csr.nnz:
        limits = np.iinfo(dtype)
        if csr.data.min() < limits.min or csr.data.max() > limits.max:
            raise ValueError(f"{name} has duplicate entries whose sum does not fit its dtype {dtype} "
                             f"([{limits.min}, {limits.max}]); convert it to a wider type first")
    return csr.astype(dtype)


def _canonical_arrays(matrix, dtype, num_threads):
    """``to_csr``'s arrays for a float32 request of a CSR or COO matrix that is already well formed
    and canonical (a CSR's rows sorted; a COO's entries in row order, each row's columns sorted),
    checked and copied by one C call (``_sparse.canonical_csr_arrays`` or
    ``canonical_coo_arrays``; scipy would sort every row again); None for any other input, which
    the general path converts or rejects with a precise message. Index and value types the C
    calls do not take (strided views, unsigned or narrow integers, booleans, float16) are
    converted for them first."""
    if matrix.format not in ("csr", "coo") or np.dtype(dtype) != np.float32:
        return None
    if matrix.format == "csr":
        first, second = matrix.indptr, matrix.indices
    else:
        first, second = matrix.coords if hasattr(matrix, "coords") else (matrix.row, matrix.col)
    data = matrix.data
    if not first.ndim == second.ndim == data.ndim == 1:
        return None
    # (an unsigned index too large for int64 wraps to a negative one, which the C calls reject)
    index_dtype = first.dtype if first.dtype == second.dtype and first.dtype in (np.int32, np.int64) else np.int64
    first = np.ascontiguousarray(first, dtype=index_dtype)
    second = np.ascontiguousarray(second, dtype=index_dtype)
    if data.dtype not in (np.float32, np.float64, np.int32, np.int64):
        with np.errstate(over="ignore"):  # too large for float32: inf, which the C calls reject
            data = np.asarray(data, dtype=np.float32)
    data = np.ascontiguousarray(data)
    n_rows, n_cols = matrix.shape
    if matrix.format == "csr":
        arrays = _sparse.canonical_csr_arrays(first, second, data, n_cols, num_threads)
        if arrays is not None and arrays[0].shape[0] != n_rows + 1:
            return None
    else:
        arrays = _sparse.canonical_coo_arrays(first, second, data, n_rows, n_cols, num_threads)
    if arrays is None:
        return None
    return CsrArrays(*arrays, matrix.shape)


_STRUCTURE_CHECKED_FORMATS = ("csr", "csc", "bsr", "coo")


def _check_sparse_structure(matrix, name, source_format=None):
    """Reject sparse matrices whose index arrays point outside their shape (lil: whose rows'
    lists of columns and values differ in length).

    scipy does not re-check index arrays that were modified or passed in unchecked, and its
    conversions (and our kernels) would then read or write out of bounds. ``source_format``
    names the format the caller passed when ``matrix`` is a conversion of it.
    """
    n_rows, n_cols = matrix.shape
    try:
        if matrix.format in ("csr", "csc", "bsr"):
            matrix.check_format(full_check=True)
        elif matrix.format == "coo":
            rows, cols = matrix.coords if hasattr(matrix, "coords") else (matrix.row, matrix.col)
            if rows.shape != cols.shape or rows.shape != matrix.data.shape:
                raise ValueError("row, column and data arrays differ in length")
            if rows.size and (rows.min() < 0 or rows.max() >= n_rows or cols.min() < 0 or cols.max() >= n_cols):
                raise ValueError("an index lies outside the matrix shape")
        elif matrix.format == "lil":
            _check_lil_lengths(matrix)
    except (ValueError, IndexError, TypeError) as error:
        raise ValueError(f"{name} is a malformed {source_format or matrix.format} matrix: {error}") from None


def _check_lil_lengths(matrix):
    """:func:`_check_sparse_structure` for lil: each row's lists of columns and of values have one
    length. scipy's lil conversions size their output by the column lists and copy the value lists
    into it: a longer value list (an edit by hand) wrote past the buffer and crashed the process, a
    shorter one left garbage values."""
    n_rows = matrix.shape[0]
    rows, values = matrix.rows, matrix.data
    if rows.shape != (n_rows,) or values.shape != (n_rows,):
        raise ValueError(f"rows and data must have one list per row ({n_rows})")
    row_lengths = np.fromiter(map(len, rows), dtype=np.int64, count=n_rows)
    value_lengths = np.fromiter(map(len, values), dtype=np.int64, count=n_rows)
    mismatched = np.flatnonzero(row_lengths != value_lengths)
    if mismatched.size:
        row = int(mismatched[0])
        raise ValueError(f"row {row} has {row_lengths[row]} column indices but {value_lengths[row]} values")


def check_interactions(interactions, name="interactions", num_threads=1, arrays_only=False):
    """Canonical CSR of an interaction matrix that must have at least one entry (``num_threads``
    and ``arrays_only``: see :func:`to_csr`)."""
    csr = to_csr(interactions, name, num_threads=num_threads, arrays_only=arrays_only)
    if csr.nnz == 0:
        raise ValueError(f"{name} has no entries")
    return csr


def is_identity_pattern(csr):
    """True when row ``r`` of ``csr`` is exactly feature ``r`` with weight 1 (an identity matrix,
    possibly with unused extra columns): such matrices take the kernels' direct-index path."""
    n_rows = csr.shape[0]
    return (
        csr.shape[1] >= n_rows
        and csr.nnz == n_rows
        and np.array_equal(csr.indptr, np.arange(n_rows + 1))
        and np.array_equal(csr.indices, np.arange(n_rows))
        and bool(np.all(csr.data == 1.0))
    )


def check_features(features, n_rows, name, n_columns=None):
    """Validate an optional feature matrix.

    Parameters
    ----------
    features : None, scipy sparse matrix or array-like of shape (n_rows, n_features)
    n_rows : int or None
        Required number of rows (users or items); None skips the check.
    name : str
        Argument name used in error messages.
    n_columns : int, optional
        Required number of columns (the model's feature count).

    Returns
    -------
    csr_matrix or None
        Canonical CSR without stored zeros, or None for "no features" (the identity).
    """
    if features is None:
        return None
    csr = to_csr(features, name)
    # a stored zero adds nothing to a representation, but it counted as a feature touched by
    # every example of its row, which user_alpha/item_alpha then decayed
    if csr.nnz and not np.all(csr.data):
        csr.eliminate_zeros()
    if n_rows is not None and csr.shape[0] != n_rows:
        relation = "too few" if csr.shape[0] < n_rows else "too many"
        raise ValueError(f"{name} has {relation} rows: {csr.shape[0]}, expected {n_rows}")
    if n_columns is not None and csr.shape[1] != n_columns:
        raise ValueError(
            f"{name} has {csr.shape[1]} columns but the model was trained with {n_columns} features"
        )
    return csr


# Parameter rows start on cache-line boundaries when their arrays do (64 components of float32 are
# four lines); a row that straddles five lines costs a fifth load per access, and two threads
# updating neighbouring rows then share a line.
CACHE_LINE = 64


def aligned_empty(shape, dtype=np.float32):
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary.

    Parameters
    ----------
    shape : int or tuple of int
    dtype : numpy dtype, default float32

    Returns
    -------
    ndarray of ``shape`` and ``dtype`` (a view into a slightly larger byte buffer)
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if np.isscalar(shape) else tuple(shape)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(size + CACHE_LINE, dtype=np.uint8)
    offset = -buffer.ctypes.data % CACHE_LINE
    return buffer[offset:offset + size].view(dtype).reshape(shape)


def cache_aligned(array):
    """``array`` itself when it is C-contiguous and starts on a 64-byte boundary (or is empty),
    else an aligned copy of it (same shape, dtype and values)."""
    if _sgd.is_cache_aligned(array):
        return array
    aligned = aligned_empty(array.shape, array.dtype)
    aligned[...] = array
    return aligned


def packed_feature_rows(csr):
    """A canonical CSR feature matrix in the layout the kernels read, or None when ``csr`` is None.

    Returns
    -------
    indptr : int32 array of shape (n_rows + 1,)
        Row ``r``'s entries are ``entries[indptr[r]:indptr[r + 1]]``.
    entries : int32 array of shape (nnz, 2), C order
        Each stored entry's column, then the bit pattern of its float32 weight. Keeping a row's
        ids and weights side by side lets a kernel reach a row through one cache line instead of
        one per array (WARP-kOS and BPR epochs with side features about 10% shorter).
    """
    if csr is None:
        return None
    entries = np.empty((csr.nnz, 2), dtype=np.int32)
    entries[:, 0] = csr.indices
    entries[:, 1] = np.asarray(csr.data, dtype=np.float32).view(np.int32)
    return np.ascontiguousarray(csr.indptr, dtype=np.int32), entries


def check_sample_weight(sample_weight, interactions):
    """Per-entry weights aligned with ``interactions.data``.

    Parameters
    ----------
    sample_weight : scipy sparse matrix or array-like, same shape and sparsity pattern as interactions
    interactions : canonical CSR from :func:`check_interactions`

    Returns
    -------
    float32 array of shape (interactions.nnz,)
    """
    weights = to_csr(sample_weight, "sample_weight")
    if weights.shape != interactions.shape:
        raise ValueError(
            f"sample_weight has shape {weights.shape}, interactions has shape {interactions.shape}"
        )
    if not (
        np.array_equal(weights.indptr, interactions.indptr)
        and np.array_equal(weights.indices, interactions.indices)
    ):
        raise ValueError("sample_weight must have the same sparsity pattern (the same entries) as interactions")
    if np.any(weights.data < 0):
        raise ValueError("sample_weight must not contain negative weights")
    return np.ascontiguousarray(weights.data, dtype=np.float32)


def check_ids(ids, name):
    """Convert ids to a 1-D int32 array of non-negative values.

    Raises
    ------
    TypeError
        If ``ids`` are not integers.
    ValueError
        If ids are negative, do not fit in int32, or the array is not 1-D.
    """
    if is_integer(ids):
        ids = [ids]
    if isinstance(ids, (str, bytes)) or ids is None:
        raise TypeError(f"{name} must be an integer or an array of integers, got {type(ids).__name__}")
    if np.ndim(ids) == 0:
        raise TypeError(f"{name} must be an integer or an array of integers, got {ids!r}")
    try:
        array = np.asarray(ids)
    except (OverflowError, ValueError) as error:
        raise ValueError(f"{name} could not be read as an integer array: {error}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got {array.ndim} dimension(s)")
    if array.size == 0:
        return np.zeros(0, dtype=np.int32)
    if array.dtype.kind not in "iu":  # (numpy counts timedelta64 among its integer types)
        raise TypeError(f"{name} must be integers, got dtype {array.dtype}")
    if array.min() < 0:
        raise ValueError(f"{name} contains a negative id: {array.min()}")
    if array.max() > INT32_MAX:
        raise ValueError(f"{name} contains id {array.max()} which overflows int32")
    return np.ascontiguousarray(array, dtype=np.int32)


def check_id_scalar(value, name):
    """Range-check a single integer id (any Python int, however large) and return it."""
    if value < 0:
        raise ValueError(f"{name} is negative: {value}")
    if value > INT32_MAX:
        raise ValueError(f"{name} {value} overflows int32")
    return int(value)


def check_id_range(ids, upper, name, what):
    """Raise ``ValueError`` unless every id is below ``upper``."""
    if ids.size and ids.max() >= upper:
        raise ValueError(f"{name} contains id {ids.max()} but only {upper} {what} are known (ids 0..{upper - 1})")


def check_positive_int(value, name, maximum=INT32_MAX - 1):
    """Raise unless ``value`` is an integer in 1..``maximum`` (by default the largest count the
    kernels' int32 arithmetic takes); returns it as int."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)
