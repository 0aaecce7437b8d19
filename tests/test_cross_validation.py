"""fastrank.cross_validation: exact, disjoint partitions with each split's rule checked by brute force."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from fastrank.cross_validation import (
    item_cold_start_split,
    leave_k_out_split,
    random_train_test_split,
    temporal_split,
    user_cold_start_split,
)

SPLITS = {
    "random": lambda m, **kw: random_train_test_split(m, random_state=kw.get("seed", 0)),
    "leave_k_out": lambda m, **kw: leave_k_out_split(m, k=2, random_state=kw.get("seed", 0)),
    "temporal": lambda m, **kw: temporal_split(m, timestamps_for(m)),
    "item_cold_start": lambda m, **kw: item_cold_start_split(m, random_state=kw.get("seed", 0)),
    "user_cold_start": lambda m, **kw: user_cold_start_split(m, random_state=kw.get("seed", 0)),
}


def random_matrix(n_users=40, n_items=30, density=0.2, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < density) * rng.integers(1, 6, (n_users, n_items))
    return sp.coo_matrix(dense.astype(dtype))


def timestamps_for(matrix, seed=1):
    """Integer timestamps (beyond float32's exact range, with ties) on the entries of ``matrix``."""
    coo = sp.coo_matrix(matrix).tocsr().tocoo()
    rng = np.random.default_rng(seed)
    times = 2**40 + rng.integers(0, 50, coo.nnz)
    return sp.coo_matrix((times, (coo.row, coo.col)), shape=coo.shape)


def entries(matrix):
    coo = sp.coo_matrix(matrix)
    return {(int(r), int(c)): v for r, c, v in zip(coo.row, coo.col, coo.data)}


def assert_partition(interactions, train, test):
    """train and test: COO of the input's shape and dtype, disjoint, exactly the canonical entries."""
    canonical = sp.csr_matrix(interactions)
    canonical.sum_duplicates()
    for part in (train, test):
        assert sp.isspmatrix_coo(part)
        assert part.shape == canonical.shape and part.dtype == canonical.dtype
        coordinates = list(zip(part.row.tolist(), part.col.tolist()))
        assert len(coordinates) == len(set(coordinates)), "duplicate entries in a split"
    train_entries, test_entries = entries(train), entries(test)
    assert not set(train_entries) & set(test_entries)
    assert {**train_entries, **test_entries} == entries(canonical)


# ---------------------------------------------------------------- shared properties

@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_split_is_an_exact_partition(split, seed):
    interactions = random_matrix(seed=seed)
    train, test = SPLITS[split](interactions, seed=seed)
    assert_partition(interactions, train, test)
    assert train.nnz > 0 and test.nnz > 0


@pytest.mark.parametrize("split", list(SPLITS))
def test_splits_sum_duplicates_first_and_keep_values_and_dtype(split):
    rows = np.array([0, 0, 1, 2, 2, 3, 3, 3, 4, 4])
    cols = np.array([0, 0, 1, 2, 3, 0, 1, 2, 3, 3])
    data = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], dtype=np.int64)
    interactions = sp.coo_matrix((data, (rows, cols)), shape=(6, 5))  # (0,0) and (4,3) appear twice
    train, test = SPLITS[split](interactions)
    assert_partition(interactions, train, test)
    merged = {**entries(train), **entries(test)}
    assert merged[(0, 0)] == 3 and merged[(4, 3)] == 19
    assert train.dtype == test.dtype == np.int64


def test_explicit_zeros_are_entries_and_dense_input_works():
    interactions = sp.csr_matrix((np.array([0.0, 1.0, 2.0, 0.0]), ([0, 1, 2, 3], [0, 1, 2, 3])), shape=(4, 4))
    train, test = random_train_test_split(interactions, test_percentage=0.5, random_state=0)
    assert train.nnz + test.nnz == 4
    assert_partition(interactions, train, test)
    dense = interactions.toarray()
    train, test = random_train_test_split(dense, test_percentage=0.5, random_state=0)
    assert train.nnz + test.nnz == 2  # dense zeros are not entries


@pytest.mark.parametrize("split", ["random", "item_cold_start", "user_cold_start", "leave_k_out"])
def test_seeded_splits_are_reproducible_and_seed_dependent(split):
    interactions = random_matrix()
    first = SPLITS[split](interactions, seed=5)
    second = SPLITS[split](interactions, seed=5)
    other = SPLITS[split](interactions, seed=6)
    assert entries(first[1]) == entries(second[1])
    assert entries(first[1]) != entries(other[1])


# ---------------------------------------------------------------- random split

def test_random_split_matches_lightfm_rule():
    interactions = random_matrix(seed=3)
    canonical = interactions.tocsr().tocoo()
    train, test = random_train_test_split(interactions, test_percentage=0.3, random_state=np.random.RandomState(7))
    # LightFM: shuffle arange(nnz) with the RandomState, first int((1 - p) * nnz) go to train
    order = np.arange(canonical.nnz)
    np.random.RandomState(7).shuffle(order)
    cutoff = int(0.7 * canonical.nnz)
    expected_test = {(int(canonical.row[k]), int(canonical.col[k])) for k in order[cutoff:]}
    assert set(entries(test)) == expected_test
    assert train.nnz == cutoff and test.nnz == canonical.nnz - cutoff
    # an int seed is the same as a RandomState with that seed; a Generator works too
    assert entries(random_train_test_split(interactions, 0.3, random_state=7)[1]) == entries(test)
    train, test = random_train_test_split(interactions, 0.3, random_state=np.random.default_rng(0))
    assert_partition(interactions, train, test)



@pytest.mark.parametrize("layout", ["shuffled_coo", "csc"])
def test_random_split_shuffles_entries_in_lightfm_order(layout):
    # LightFM shuffles the entries in the order tocoo() gives them: a COO read from a file keeps
    # the file's order and a CSC goes column by column, so sorting first would pick other entries
    canonical = random_matrix(seed=5).tocsr().tocoo()
    if layout == "shuffled_coo":
        permutation = np.random.default_rng(1).permutation(canonical.nnz)
        interactions = sp.coo_matrix((canonical.data[permutation], (canonical.row[permutation],
                                      canonical.col[permutation])), shape=canonical.shape)
    else:
        interactions = canonical.tocsc()
    given = interactions.tocoo()
    order = np.arange(given.nnz)
    np.random.RandomState(11).shuffle(order)
    cutoff = int(0.8 * given.nnz)
    expected_test = {(int(given.row[k]), int(given.col[k])) for k in order[cutoff:]}
    train, test = random_train_test_split(interactions, random_state=11)
    assert set(entries(test)) == expected_test
    assert_partition(interactions, train, test)
    assert set(entries(test)) != set(entries(random_train_test_split(canonical, random_state=11)[1]))

@pytest.mark.parametrize("percentage, n_test", [(0.0, 0), (1.0, 10), (0.25, 3)])
def test_random_split_sizes_at_the_edges(percentage, n_test):
    interactions = sp.coo_matrix((np.ones(10), (np.arange(10), np.arange(10))), shape=(10, 10))
    train, test = random_train_test_split(interactions, percentage, random_state=0)
    assert test.nnz == n_test and train.nnz == 10 - n_test


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(test_percentage=1.5), ValueError, "test_percentage"),
        (dict(test_percentage=-0.1), ValueError, "test_percentage"),
        (dict(test_percentage="half"), ValueError, "test_percentage"),
        (dict(random_state="seed"), TypeError, "random_state"),
        (dict(random_state=-1), ValueError, "random_state"),
        (dict(random_state=2**32), ValueError, "random_state"),
    ],
)
def test_random_split_rejects_bad_parameters(arguments, error, message):
    with pytest.raises(error, match=message):
        random_train_test_split(random_matrix(), **arguments)


@pytest.mark.parametrize(
    "matrix, error, message",
    [
        (None, TypeError, "None"),
        ("matrix", TypeError, "str"),
        (np.zeros(5), ValueError, "2-D"),
        (np.array([[1.0, np.nan]]), ValueError, "NaN"),
        (np.array([["a", "b"]]), TypeError, "real numbers"),
        (sp.coo_matrix((np.ones(2), (np.array([0, 5]), np.array([0, 1]))), shape=(6, 2)), None, None),
    ],
)
def test_splits_reject_bad_matrices(matrix, error, message):
    if error is None:  # a valid control case: the same call succeeds
        assert_partition(matrix, *random_train_test_split(matrix, random_state=0))
        return
    for split in (random_train_test_split, item_cold_start_split, user_cold_start_split, leave_k_out_split):
        with pytest.raises(error, match=message):
            split(matrix)


def test_malformed_sparse_input_is_rejected():
    coo = sp.coo_matrix((np.ones(2), (np.array([0, 1]), np.array([0, 1]))), shape=(2, 2))
    coo.row[1] = 7  # corrupt after construction
    with pytest.raises(ValueError, match="outside the matrix shape"):
        random_train_test_split(coo)


# ---------------------------------------------------------------- leave k out

@pytest.mark.parametrize("k", [1, 3])
def test_leave_k_out_takes_k_entries_of_each_user_with_more_than_k(k):
    interactions = random_matrix(density=0.15, seed=4)
    counts = np.diff(interactions.tocsr().indptr)
    assert (counts <= k).any() and (counts > k).any()  # both kinds of user are present
    train, test = leave_k_out_split(interactions, k=k, random_state=0)
    assert_partition(interactions, train, test)
    test_counts = np.bincount(test.row, minlength=interactions.shape[0])
    np.testing.assert_array_equal(test_counts, np.where(counts > k, k, 0))
    train_counts = np.bincount(train.row, minlength=interactions.shape[0])
    np.testing.assert_array_equal(train_counts, np.where(counts > k, counts - k, counts))


def test_leave_k_out_by_timestamp_takes_each_users_latest():
    interactions = random_matrix(density=0.3, seed=5)
    timestamps = timestamps_for(interactions, seed=2)
    train, test = leave_k_out_split(interactions, k=2, timestamps=timestamps)
    assert_partition(interactions, train, test)
    times = entries(timestamps)
    expected = set()
    for user in range(interactions.shape[0]):
        mine = sorted(((t, c) for (r, c), t in times.items() if r == user))
        if len(mine) > 2:
            expected |= {(user, c) for _, c in mine[-2:]}  # ties: the higher item id counts as later
    assert set(entries(test)) == expected


@pytest.mark.parametrize("k, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_leave_k_out_rejects_bad_k(k, error):
    with pytest.raises(error, match="k must"):
        leave_k_out_split(random_matrix(), k=k)


# ---------------------------------------------------------------- temporal

@pytest.mark.parametrize("percentage", [0.2, 0.5, 0.77])
def test_temporal_split_cuts_at_the_sorted_timestamp_quantile(percentage):
    interactions = random_matrix(seed=6)
    timestamps = timestamps_for(interactions, seed=3)
    train, test = temporal_split(interactions, timestamps, test_percentage=percentage)
    assert_partition(interactions, train, test)
    times = entries(timestamps)
    ordered = sorted(times.values())
    cutoff = ordered[math.floor(len(ordered) * (1 - percentage))]
    assert set(entries(train)) == {key for key, t in times.items() if t < cutoff}
    assert set(entries(test)) == {key for key, t in times.items() if t >= cutoff}
    assert max(times[key] for key in entries(train)) < min(times[key] for key in entries(test))
    # values are the interactions', not the timestamps'
    assert entries(test) == {key: v for key, v in entries(interactions.tocsr()).items() if key in entries(test)}


def test_temporal_split_compares_large_integer_timestamps_exactly():
    # 2**40 + 1 and 2**40 + 2 are the same float32: a float32 cast would tie them
    interactions = sp.coo_matrix(np.ones((1, 4)))
    timestamps = sp.coo_matrix((2**40 + np.array([1, 2, 3, 4]), ([0, 0, 0, 0], [0, 1, 2, 3])), shape=(1, 4))
    train, test = temporal_split(interactions, timestamps, test_percentage=0.5)
    assert sorted(test.col.tolist()) == [2, 3] and sorted(train.col.tolist()) == [0, 1]


def test_temporal_split_edges():
    interactions = random_matrix()
    timestamps = timestamps_for(interactions)
    train, test = temporal_split(interactions, timestamps, test_percentage=0.0)
    assert test.nnz == 0 and train.nnz == interactions.nnz
    train, test = temporal_split(interactions, timestamps, test_percentage=1.0)
    assert train.nnz == 0 and test.nnz == interactions.nnz


def test_temporal_split_rejects_mismatched_timestamps():
    interactions = random_matrix()
    timestamps = timestamps_for(interactions).tocsr()
    with pytest.raises(ValueError, match="shape"):
        temporal_split(interactions, sp.coo_matrix((3, 3)))
    missing = timestamps.copy()
    missing.data[0] = 0
    missing.eliminate_zeros()
    with pytest.raises(ValueError, match="same sparsity pattern"):
        temporal_split(interactions, missing)
    coo = timestamps.tocoo()
    doubled = sp.coo_matrix((np.r_[coo.data, coo.data[:1]], (np.r_[coo.row, coo.row[:1]], np.r_[coo.col, coo.col[:1]])),
                            shape=coo.shape)
    with pytest.raises(ValueError, match="duplicate"):
        temporal_split(interactions, doubled)
    with pytest.raises(TypeError, match="timestamps"):
        temporal_split(interactions, None)
    nan_times = sp.coo_matrix((np.r_[np.nan, coo.data[1:].astype(float)], (coo.row, coo.col)), shape=coo.shape)
    with pytest.raises(ValueError, match="NaN"):
        temporal_split(interactions, nan_times)


# ---------------------------------------------------------------- cold start

@pytest.mark.parametrize("percentage", [0.2, 0.5])
def test_item_cold_start_moves_whole_items(percentage):
    dense = random_matrix(n_items=37, seed=7).toarray()
    dense[:, 5] = 0  # an item without entries is never a test item
    interactions = sp.csr_matrix(dense)
    train, test = item_cold_start_split(interactions, test_percentage=percentage, random_state=3)
    assert_partition(interactions, train, test)
    present = np.unique(interactions.tocoo().col)
    test_items = np.unique(test.col)
    assert test_items.size == present.size - int((1 - percentage) * present.size)
    assert not set(test_items) & set(train.col.tolist())
    assert 5 not in test_items
    column_counts = np.diff(interactions.tocsc().indptr)
    assert test.nnz == column_counts[test_items].sum()


def test_user_cold_start_moves_whole_users():
    interactions = random_matrix(n_users=50, seed=8)
    train, test = user_cold_start_split(interactions, test_percentage=0.3, random_state=1)
    assert_partition(interactions, train, test)
    present = np.unique(interactions.tocoo().row)
    test_users = np.unique(test.row)
    assert test_users.size == present.size - int(0.7 * present.size)
    assert not set(test_users) & set(train.row.tolist())


@pytest.mark.parametrize("split", [item_cold_start_split, user_cold_start_split])
def test_cold_start_rejects_bad_fractions(split):
    with pytest.raises(ValueError, match="test_percentage"):
        split(random_matrix(), test_percentage=2)


@pytest.mark.parametrize("split", ["temporal", "item_cold_start", "user_cold_start"])
def test_fractions_count_as_the_decimals_they_are_written(split):
    """In float64 (1 - 0.9) * 10 is 0.9999999999999998: 0.9 of 10 items went all 10 to test,
    leaving train empty. The counts are floor(n * (1 - fraction)) of the decimal fraction."""
    from fractions import Fraction

    for n in (3, 7, 10, 30, 90):
        matrix = sp.csr_matrix(np.eye(n, dtype=np.float32))
        for text in ("0.1", "0.2", "0.3", "0.7", "0.9"):
            fraction = float(text)
            if split == "temporal":
                times = matrix.copy()
                times.data = np.arange(n, dtype=np.float64)
                train, _ = temporal_split(matrix, times, test_percentage=fraction)
            else:
                splitter = item_cold_start_split if split == "item_cold_start" else user_cold_start_split
                train, _ = splitter(matrix, test_percentage=fraction, random_state=0)
            assert train.nnz == math.floor(n * (1 - Fraction(text))), (n, text)
