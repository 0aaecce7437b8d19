"""Train/test splits of interaction matrices.

Every function works on the *canonical entries* of its input: duplicates summed, sorted by row
then column, explicitly stored zeros kept (they are entries). Each returns ``(train, test)``,
two ``scipy.sparse.coo_matrix`` of the input's shape and dtype that partition those entries
exactly: no entry is in both, and ``train + test`` equals the input. Values (and dtypes) are
preserved, so timestamps or ratings pass through unchanged.

- :func:`random_train_test_split`: a random fraction of the entries (LightFM-compatible).
- :func:`leave_k_out_split`: ``k`` entries of each user (random, or the latest by timestamp).
- :func:`temporal_split`: every entry at or after a timestamp quantile.
- :func:`item_cold_start_split` / :func:`user_cold_start_split`: every entry of a random
  fraction of the items (users), the cold-start setting of the LightFM paper.
"""

import math

import numpy as np
import scipy.sparse as sp

from fastrank._validation import check_positive_int, is_integer, is_real, to_csr

__all__ = [
    "random_train_test_split",
    "leave_k_out_split",
    "temporal_split",
    "item_cold_start_split",
    "user_cold_start_split",
]


def _canonical(matrix, name):
    """Canonical CSR of ``matrix`` in its own numeric dtype (duplicates summed, indices sorted)."""
    return to_csr(matrix, name, dtype=None, allow_empty=True)


def _rows_of(csr):
    return np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))


def _split(csr, in_test):
    """(train, test) COO matrices of the entries of canonical ``csr`` outside / inside ``in_test``."""
    coo = csr.tocoo()

    def part(mask):
        return sp.coo_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=csr.shape, dtype=csr.dtype)

    return part(~in_test), part(in_test)


def _check_fraction(value, name):
    if not is_real(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _random_state(random_state):
    """A ``numpy.random.RandomState`` or ``Generator`` from None, an int seed or either object."""
    if random_state is None:
        return np.random.RandomState()
    if is_integer(random_state):
        if not 0 <= random_state < 2**32:
            raise ValueError(f"random_state must be an integer in [0, 2**32), got {random_state}")
        return np.random.RandomState(int(random_state))
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    raise TypeError(
        f"random_state must be None, a non-negative int, a numpy RandomState or Generator, got {random_state!r}"
    )


def random_train_test_split(interactions, test_percentage=0.2, random_state=None):
    """Randomly split the entries of an interaction matrix (LightFM-compatible).

    The entries are shuffled and the first ``int((1 - test_percentage) * nnz)`` go to train, the
    rest to test. The shuffle visits the entries in the order LightFM's does (the input's
    ``tocoo()`` order: a COO's own, say in file order), so with the same seed (an int or a
    ``RandomState``) the split is LightFM's entry for entry, for any input without duplicate
    entries. The returned matrices hold their entries sorted by row, then column (LightFM's
    are in shuffled order; the entries are the same).

    Parameters
    ----------
    interactions : scipy sparse matrix or array-like of shape (n_users, n_items)
        Any real dtype; duplicates are summed first.
    test_percentage : float in [0, 1], default 0.2
        Fraction of the entries that go to test.
    random_state : None, int in [0, 2**32), numpy.random.RandomState or numpy.random.Generator, optional

    Returns
    -------
    train : scipy.sparse.coo_matrix of shape (n_users, n_items), dtype of ``interactions``
    test : scipy.sparse.coo_matrix of shape (n_users, n_items), dtype of ``interactions``
        Disjoint; together exactly the canonical entries of ``interactions``.

    Raises
    ------
    TypeError
        If ``interactions`` is not a numeric matrix or ``random_state`` is of the wrong type.
    ValueError
        If ``test_percentage`` is outside [0, 1] or the matrix is malformed or holds NaN.
    """
    test_percentage = _check_fraction(test_percentage, "test_percentage")
    csr = _canonical(interactions, "interactions")
    rng = _random_state(random_state)
    order = np.arange(csr.nnz)
    rng.shuffle(order)
    cutoff = int((1.0 - test_percentage) * csr.nnz)
    in_test = np.zeros(csr.nnz, dtype=bool)
    in_test[_canonical_positions(interactions, csr)[order[cutoff:]]] = True
    return _split(csr, in_test)


def _canonical_positions(matrix, csr):
    """Where each entry of sparse ``matrix``, in its ``tocoo()`` order, sits among the canonical
    entries of ``csr``; the identity when ``matrix`` is not sparse or holds duplicates.

    LightFM shuffles the entries in the order ``tocoo()`` gives them (a COO's own order, a CSC's
    column by column), so the same seed picks the same entries only if this split does too."""
    if not sp.issparse(matrix) or matrix.format == "csr" or matrix.nnz != csr.nnz:
        # CSR (and dense) entries come row by row, as the canonical ones; with duplicates the
        # entry counts differ (they were summed), and so does the split
        return np.arange(csr.nnz)
    coo = matrix.tocoo()
    by_row = np.lexsort((coo.col, coo.row))
    positions = np.empty(csr.nnz, dtype=np.int64)
    positions[by_row] = np.arange(csr.nnz)
    return positions


def leave_k_out_split(interactions, k=1, random_state=None, timestamps=None):
    """Move ``k`` entries of every user to test.

    Only users with more than ``k`` entries lose any, so every user left in test keeps at least
    one training entry; the others keep all their entries in train.

    Parameters
    ----------
    interactions : scipy sparse matrix or array-like of shape (n_users, n_items)
    k : int, default 1
        Number of entries per user in test (>= 1).
    random_state : None, int in [0, 2**32), numpy.random.RandomState or numpy.random.Generator, optional
        Chooses the entries when ``timestamps`` is None.
    timestamps : scipy sparse matrix of shape (n_users, n_items), optional
        The time of each entry, with exactly the entries of ``interactions`` (no duplicates).
        When given, each user's ``k`` latest entries go to test (ties: the higher item id is
        taken as later), which is the leave-last-k-out protocol.

    Returns
    -------
    train : scipy.sparse.coo_matrix of shape (n_users, n_items), dtype of ``interactions``
    test : scipy.sparse.coo_matrix of shape (n_users, n_items), dtype of ``interactions``

    Raises
    ------
    ValueError
        If ``k`` < 1 or ``timestamps`` has a different shape or different entries.
    TypeError
        If ``k`` is not an integer.
    """
    k = check_positive_int(k, "k")
    csr = _canonical(interactions, "interactions")
    rows = _rows_of(csr)
    if timestamps is None:
        rng = _random_state(random_state)
        keys = rng.random(csr.nnz) if isinstance(rng, np.random.Generator) else rng.random_sample(csr.nnz)
    else:
        keys = _matching_values(timestamps, csr, "timestamps")
    # Order each user's entries by key (then by column), and take the last k of each.
    order = np.lexsort((csr.indices, keys, rows))
    counts = np.diff(csr.indptr)
    position = np.arange(csr.nnz) - np.repeat(csr.indptr[:-1], counts)
    sorted_rows = rows[order]
    chosen = (position >= counts[sorted_rows] - k) & (counts[sorted_rows] > k)
    in_test = np.zeros(csr.nnz, dtype=bool)
    in_test[order[chosen]] = True
    return _split(csr, in_test)


def _matching_values(timestamps, csr, name):
    """Values of ``timestamps`` aligned with the canonical entries of ``csr``."""
    if timestamps is None:
        raise TypeError(f"{name} must be a scipy sparse matrix, got None")
    times = _canonical(timestamps, name)  # checks the structure before scipy converts it
    if times.shape != csr.shape:
        raise ValueError(f"{name} has shape {times.shape}, interactions has shape {csr.shape}")
    if sp.issparse(timestamps):
        coo = timestamps.tocoo()
        keys = coo.row.astype(np.int64) * csr.shape[1] + coo.col
        if np.unique(keys).size != keys.size:
            raise ValueError(f"{name} has duplicate entries; give one time per (user, item)")
    if not (np.array_equal(times.indptr, csr.indptr) and np.array_equal(times.indices, csr.indices)):
        raise ValueError(f"{name} must have exactly the entries of interactions (the same sparsity pattern)")
    return times.data


def temporal_split(interactions, timestamps, test_percentage=0.2):
    """Split at a point in time: test holds every entry at or after the cutoff.

    The cutoff is the timestamp at position ``floor(nnz * (1 - test_percentage))`` of the sorted
    timestamps, the product taken as the decimal fraction means (0.9 of 10 leaves 1, though
    float64 makes it 0.9999999999999998); train holds the entries strictly before it, test the
    rest (so ties at the cutoff all go to test and the test share can exceed
    ``test_percentage``). With ``test_percentage=0`` everything is in train.

    Parameters
    ----------
    interactions : scipy sparse matrix or array-like of shape (n_users, n_items)
    timestamps : scipy sparse matrix of shape (n_users, n_items)
        Any real dtype (integers are compared exactly); exactly the entries of ``interactions``,
        without duplicates.
    test_percentage : float in [0, 1], default 0.2

    Returns
    -------
    train : scipy.sparse.coo_matrix of shape (n_users, n_items), dtype of ``interactions``
    test : scipy.sparse.coo_matrix of shape (n_users, n_items), dtype of ``interactions``

    Raises
    ------
    ValueError
        If the shapes or sparsity patterns differ, ``timestamps`` has duplicates or NaN, or
        ``test_percentage`` is outside [0, 1].
    """
    test_percentage = _check_fraction(test_percentage, "test_percentage")
    csr = _canonical(interactions, "interactions")
    times = _matching_values(timestamps, csr, "timestamps")
    position = _train_count(csr.nnz, test_percentage)
    if position >= csr.nnz:
        in_test = np.zeros(csr.nnz, dtype=bool)
    else:
        cutoff = np.partition(times, position)[position]
        in_test = times >= cutoff
    return _split(csr, in_test)


def _train_count(n, test_percentage):
    """How many of ``n`` stay in train: floor(n * (1 - test_percentage)), forgiving the float's
    rounding (in float64, (1 - 0.9) * 10 is 0.9999999999999998, which put all 10 in test)."""
    exact = n * (1.0 - test_percentage)
    return min(n, math.floor(exact + 1e-9 * max(1.0, exact)))


def _cold_start(csr, test_percentage, random_state, axis):
    """Entries whose index along ``axis`` (1: items, 0: users) is one of the chosen test ids."""
    ids = csr.indices if axis == 1 else _rows_of(csr)
    present = np.unique(ids)
    rng = _random_state(random_state)
    shuffled = present.copy()
    rng.shuffle(shuffled)
    n_train = _train_count(present.size, test_percentage)
    test_ids = np.zeros(csr.shape[axis], dtype=bool)
    test_ids[shuffled[n_train:]] = True
    return _split(csr, test_ids[ids])


def item_cold_start_split(interactions, test_percentage=0.2, random_state=None):
    """Move every entry of a random fraction of the items to test (item cold start).

    Of the ``m`` items with at least one entry, ``m - floor((1 - test_percentage) * m)`` (as for
    :func:`temporal_split`) are drawn
    at random; all their entries go to test and none stays in train, so the model meets them only
    through their features. The test items are ``numpy.unique(test.col)``.

    Parameters
    ----------
    interactions : scipy sparse matrix or array-like of shape (n_users, n_items)
    test_percentage : float in [0, 1], default 0.2
        Fraction of the items (with entries) that become cold.
    random_state : None, int in [0, 2**32), numpy.random.RandomState or numpy.random.Generator, optional

    Returns
    -------
    train : scipy.sparse.coo_matrix of shape (n_users, n_items), dtype of ``interactions``
    test : scipy.sparse.coo_matrix of shape (n_users, n_items), dtype of ``interactions``
        No column has entries in both.
    """
    test_percentage = _check_fraction(test_percentage, "test_percentage")
    return _cold_start(_canonical(interactions, "interactions"), test_percentage, random_state, axis=1)


def user_cold_start_split(interactions, test_percentage=0.2, random_state=None):
    """Move every entry of a random fraction of the users to test (user cold start).

    As :func:`item_cold_start_split`, with users (rows) in place of items.

    Parameters
    ----------
    interactions : scipy sparse matrix or array-like of shape (n_users, n_items)
    test_percentage : float in [0, 1], default 0.2
        Fraction of the users (with entries) that become cold.
    random_state : None, int in [0, 2**32), numpy.random.RandomState or numpy.random.Generator, optional

    Returns
    -------
    train : scipy.sparse.coo_matrix of shape (n_users, n_items), dtype of ``interactions``
    test : scipy.sparse.coo_matrix of shape (n_users, n_items), dtype of ``interactions``
        No row has entries in both.
    """
    test_percentage = _check_fraction(test_percentage, "test_percentage")
    return _cold_start(_canonical(interactions, "interactions"), test_percentage, random_state, axis=0)
