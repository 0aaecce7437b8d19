"""Bad input raises ValueError or TypeError naming the problem; never a crash or silent corruption.

Covers every public entry point of ``FastRank`` (fit, fit_partial, predict, predict_rank,
get_*_representations, save): the accepted matrix formats (every scipy sparse format, the sparray
variants, dense arrays; duplicates summed), malformed matrices, NaN/inf, mismatched sample weights
and feature matrices, bad ids, calls before fit, shrinking fit_partial, and invalid
hyperparameters (checked at fit time, not at construction). A hypothesis property test then
throws random, mostly malformed inputs at the same entry points and accepts only success or
ValueError/TypeError.

Tests whose docstring starts with "Regression" cover bugs found while writing this file (out-of-range
sparse indices reaching the kernels, float/huge scalar ids, k/n/max_sampled beyond int32, a
rejected fit_partial growing one side); they were fixed in fastrank before the file was finished.
"""

import copy
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fastrank import FastRank
from fastrank._validation import aligned_empty as _validation_aligned_empty

pytestmark = pytest.mark.filterwarnings(
    "ignore:the matrix subclass:PendingDeprecationWarning",  # np.matrix is one of the accepted inputs
    "ignore:overflow encountered in cast:RuntimeWarning",  # 1e300 -> float32 is one of the bad inputs
)

N_USERS, N_ITEMS = 6, 5
LOSSES = ["logistic", "bpr", "warp", "warp-kos"]

# A fixed 6 x 5 interaction matrix: every user and every item has a positive, some negatives.
DENSE = np.array(
    [
        [1, 0, 0, 2, 0],
        [0, 1, 0, 0, 1],
        [1, 0, 1, 0, 0],
        [0, 0, 0, 1, -1],
        [0, 3, 0, 0, 1],
        [1, 0, 1, 0, 0],
    ],
    dtype=np.float32,
)
# Non-identity feature matrices: 6 users x 3 features, 5 items x 4 features.
USER_FEATURES = np.array(
    [[1, 0, 0.5], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0.5, 0, 1], [1, 0, 0]], dtype=np.float32
)
ITEM_FEATURES = np.array(
    [[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0], [1, 0, 0, 1], [0, 0.5, 0, 1]], dtype=np.float32
)
PARAMETER_ARRAYS = ["user_embeddings", "user_biases", "item_embeddings", "item_biases"]


def interactions():
    return sp.csr_matrix(DENSE)


def model(**params):
    params.setdefault("no_components", 4)
    params.setdefault("random_state", 0)
    return FastRank(**params)


def fitted(**params):
    return model(**params).fit(interactions(), epochs=2)


def snapshot(estimator):
    return {name: getattr(estimator, name).copy() for name in PARAMETER_ARRAYS}


def assert_unchanged(estimator, before):
    for name, array in before.items():
        np.testing.assert_array_equal(getattr(estimator, name), array, err_msg=name)


@pytest.fixture(scope="module")
def trained():
    """A fitted model shared by the read-only tests (predict & co. never change it)."""
    return fitted()


@pytest.fixture(scope="module")
def trained_with_features():
    return model().fit(
        interactions(), user_features=sp.csr_matrix(USER_FEATURES), item_features=sp.csr_matrix(ITEM_FEATURES)
    )


# --------------------------------------------------------------------------- accepted formats
SPARSE_CONSTRUCTORS = {
    "coo_matrix": sp.coo_matrix,
    "csr_matrix": sp.csr_matrix,
    "csc_matrix": sp.csc_matrix,
    "lil_matrix": sp.lil_matrix,
    "dok_matrix": sp.dok_matrix,
    "bsr_matrix": sp.bsr_matrix,
    "dia_matrix": sp.dia_matrix,
    "coo_array": sp.coo_array,
    "csr_array": sp.csr_array,
    "csc_array": sp.csc_array,
    "lil_array": sp.lil_array,
    "dok_array": sp.dok_array,
    "bsr_array": sp.bsr_array,
    "dia_array": sp.dia_array,
}


def _csr_int64_unsorted(dense):
    """CSR with int64 index arrays and reversed (unsorted) column order within each row."""
    csr = sp.csr_matrix(dense)
    indices, data = csr.indices.copy(), csr.data.copy()
    for row in range(csr.shape[0]):
        start, end = csr.indptr[row], csr.indptr[row + 1]
        indices[start:end] = indices[start:end][::-1]
        data[start:end] = data[start:end][::-1]
    result = sp.csr_matrix(
        (data, indices.astype(np.int64), csr.indptr.astype(np.int64)), shape=csr.shape
    )
    result.has_sorted_indices = False
    return result


INTEGER_FORMATS = {"ndarray int64", "ndarray int8", "coo int32 data"}  # truncate fractional weights
CONVERTERS = dict(SPARSE_CONSTRUCTORS)
CONVERTERS.update(
    {
        "ndarray float64": lambda dense: np.asarray(dense, dtype=np.float64),
        "ndarray int64": lambda dense: np.asarray(dense).astype(np.int64),
        "ndarray int8": lambda dense: np.asarray(dense).astype(np.int8),
        "F-ordered ndarray": lambda dense: np.asfortranarray(dense),
        "np.matrix": lambda dense: np.asmatrix(dense),
        "list of lists": lambda dense: np.asarray(dense).tolist(),
        "csr int64 indices unsorted": _csr_int64_unsorted,
        "csr float64": lambda dense: sp.csr_matrix(np.asarray(dense, dtype=np.float64)),
        "coo int32 data": lambda dense: sp.coo_matrix(np.asarray(dense).astype(np.int32)),
    }
)


@pytest.mark.parametrize("fmt", list(CONVERTERS))
@pytest.mark.parametrize("slot", ["interactions", "user_features", "item_features", "sample_weight"])
def test_every_format_is_accepted_and_trains_like_canonical_csr(fmt, slot):
    """Same seed, one thread: a model trained from any format equals one trained from float32 CSR."""
    convert = CONVERTERS[fmt]
    canonical = {
        "interactions": sp.csr_matrix(DENSE),
        "user_features": sp.csr_matrix(USER_FEATURES),
        "item_features": sp.csr_matrix(ITEM_FEATURES),
        "sample_weight": sp.csr_matrix(np.abs(DENSE) * 2),
    }
    if slot == "sample_weight":
        # integer-valued weights so integer dtypes hold them exactly; same pattern as DENSE
        converted = dict(canonical, sample_weight=convert(np.abs(DENSE) * 2))
    elif slot == "interactions":
        converted = dict(canonical, interactions=convert(DENSE))
    else:
        source = USER_FEATURES if slot == "user_features" else ITEM_FEATURES
        if fmt in INTEGER_FORMATS:
            # integer dtypes would truncate the 0.5 weights: compare with the truncated matrix
            source = np.trunc(source)
            canonical[slot] = sp.csr_matrix(source)
        converted = dict(canonical, **{slot: convert(source)})
    reference = model(loss="logistic").fit(**canonical.copy(), epochs=2)
    candidate = model(loss="logistic").fit(**converted, epochs=2)
    for name in PARAMETER_ARRAYS:
        np.testing.assert_array_equal(getattr(candidate, name), getattr(reference, name), err_msg=name)


@pytest.mark.parametrize("fmt", list(CONVERTERS))
def test_every_format_is_accepted_by_predict_rank_and_representations(fmt, trained_with_features):
    """Scoring from any format equals scoring from canonical CSR."""
    convert = CONVERTERS[fmt]
    # integer dtypes would truncate the 0.5 feature weights: the reference uses truncated ones too
    truncate = np.trunc if fmt in INTEGER_FORMATS else (lambda array: array)
    user_features, item_features = truncate(USER_FEATURES), truncate(ITEM_FEATURES)
    test = (DENSE != 0).astype(np.float32)
    estimator = trained_with_features
    expected = estimator.predict_rank(
        sp.csr_matrix(test), user_features=sp.csr_matrix(user_features), item_features=sp.csr_matrix(item_features)
    )
    ranks = estimator.predict_rank(
        convert(test), user_features=convert(user_features), item_features=convert(item_features)
    )
    assert ranks.shape == (N_USERS, N_ITEMS) and ranks.nnz == np.count_nonzero(test)
    np.testing.assert_array_equal(ranks.toarray(), expected.toarray())
    for side, features, rows in (("user", user_features, N_USERS), ("item", item_features, N_ITEMS)):
        represent = getattr(estimator, f"get_{side}_representations")
        biases, embeddings = represent(convert(features))
        expected_biases, expected_embeddings = represent(sp.csr_matrix(features))
        assert biases.shape == (rows,) and embeddings.shape == (rows, 4)
        np.testing.assert_allclose(biases, expected_biases, rtol=1e-6)
        np.testing.assert_allclose(embeddings, expected_embeddings, rtol=1e-6)


def _split_into_duplicates(dense):
    """COO where every entry of ``dense`` is stored twice (value split in two integer-exact halves),
    in shuffled order."""
    rows, cols = np.nonzero(dense)
    values = dense[rows, cols]
    first = np.floor(values / 2)
    order = np.random.default_rng(3).permutation(2 * rows.size)
    return sp.coo_matrix(
        (
            np.concatenate([first, values - first])[order],
            (np.concatenate([rows, rows])[order], np.concatenate([cols, cols])[order]),
        ),
        shape=dense.shape,
    )


@pytest.mark.parametrize("loss", LOSSES)
def test_coo_duplicates_are_summed_in_training(loss):
    duplicated = _split_into_duplicates(DENSE)
    assert duplicated.nnz == 2 * np.count_nonzero(DENSE)
    summed = model(loss=loss).fit(sp.csr_matrix(DENSE), epochs=2)
    from_duplicates = model(loss=loss).fit(duplicated, epochs=2)
    for name in PARAMETER_ARRAYS:
        np.testing.assert_array_equal(getattr(from_duplicates, name), getattr(summed, name), err_msg=name)
    # and the caller's matrix is not modified (no in-place sum_duplicates)
    assert duplicated.nnz == 2 * np.count_nonzero(DENSE)


def test_coo_duplicates_are_summed_in_sample_weight_features_and_predict_rank(trained):
    weights = np.abs(DENSE) * 3
    reference = model().fit(
        sp.csr_matrix(DENSE), sample_weight=sp.csr_matrix(weights), user_features=sp.csr_matrix(USER_FEATURES * 2)
    )
    candidate = model().fit(
        _split_into_duplicates(DENSE),
        sample_weight=_split_into_duplicates(weights),
        user_features=_split_into_duplicates(USER_FEATURES * 2),
    )
    for name in PARAMETER_ARRAYS:
        np.testing.assert_array_equal(getattr(candidate, name), getattr(reference, name), err_msg=name)
    test = np.abs(DENSE)
    ranks = trained.predict_rank(_split_into_duplicates(test))
    expected = trained.predict_rank(sp.csr_matrix(test))
    assert ranks.shape == expected.shape == (N_USERS, N_ITEMS)
    assert ranks.nnz == expected.nnz == np.count_nonzero(test)
    np.testing.assert_array_equal(ranks.indptr, expected.indptr)
    np.testing.assert_array_equal(ranks.indices, expected.indices)
    np.testing.assert_array_equal(ranks.data, expected.data)
    assert np.all((ranks.data >= 0) & (ranks.data < N_ITEMS))


# --------------------------------------------------------------------------- malformed matrices
def _entry_points(trained, trained_with_features):
    """name -> (callable taking the bad value, the argument name the message must mention)."""
    good = interactions()
    return {
        "fit interactions": (lambda bad: model().fit(bad), "interactions"),
        "fit_partial interactions": (lambda bad: fitted().fit_partial(bad), "interactions"),
        "fit user_features": (lambda bad: model().fit(good, user_features=bad), "user_features"),
        "fit item_features": (lambda bad: model().fit(good, item_features=bad), "item_features"),
        "fit sample_weight": (lambda bad: model().fit(good, sample_weight=bad), "sample_weight"),
        "fit_partial item_features": (lambda bad: fitted().fit_partial(good, item_features=bad), "item_features"),
        "predict_rank test": (lambda bad: trained.predict_rank(bad), "test_interactions"),
        "predict_rank train": (lambda bad: trained.predict_rank(good, train_interactions=bad), "train_interactions"),
        "predict user_features": (
            lambda bad: trained_with_features.predict([0], [0], user_features=bad),
            "user_features",
        ),
        "predict item_features": (  # (with its user features: omitting them is an error of its own)
            lambda bad: trained_with_features.predict([0], [0], item_features=bad,
                                                      user_features=sp.csr_matrix(USER_FEATURES)),
            "item_features",
        ),
        "get_user_representations": (lambda bad: trained_with_features.get_user_representations(bad), "features"),
        "get_item_representations": (lambda bad: trained_with_features.get_item_representations(bad), "features"),
    }


ENTRY_POINTS = [
    "fit interactions", "fit_partial interactions", "fit user_features", "fit item_features",
    "fit sample_weight", "fit_partial item_features", "predict_rank test", "predict_rank train",
    "predict user_features", "predict item_features", "get_user_representations",
    "get_item_representations",
]
REQUIRED = {"fit interactions", "fit_partial interactions", "predict_rank test"}


def _with_poison(value, sparse=False):
    dense = DENSE.astype(np.float64).copy()
    dense[1, 1] = value
    return sp.csr_matrix(dense) if sparse else dense


# (bad value, exception type(s), regex that must match the message)
def one_d_coo_array():
    """A 1-D sparse array, or None where this scipy makes it 2-D (the case is then skipped)."""
    array = sp.coo_array(np.ones(5))
    return array if array.ndim == 1 else None


def three_d_coo_array():
    """A 3-D sparse array, or None where this scipy cannot build one (the case is then skipped)."""
    try:
        return sp.coo_array(np.ones((2, 3, 4)))
    except (TypeError, ValueError):
        return None


MALFORMED = {
    "None": (None, TypeError, "None"),
    "string": ("interactions.npz", TypeError, "str"),
    "bytes": (b"\x00\x01", TypeError, "bytes"),
    "dict": ({(0, 0): 1.0}, TypeError, "dict"),
    "set": ({1, 2}, TypeError, "set"),
    "list of strings": (["a", "b", "c"], (ValueError, TypeError), "2-D|real numbers"),
    "2-D list of strings": ([["a", "b"], ["c", "d"]], TypeError, "real numbers"),
    # (numpy < 1.24 makes a 1-D object array of it: ValueError, "must be 2-D")
    "ragged list": ([[1, 2], [3]], (TypeError, ValueError), "2-D"),
    "object array": (np.ones((3, 3), dtype=object), TypeError, "real numbers"),
    "complex array": (np.ones((3, 3), dtype=complex), TypeError, "real numbers"),
    "complex sparse": (sp.csr_matrix(np.ones((3, 3), dtype=complex)), TypeError, "real numbers"),
    "datetime array": (np.zeros((3, 3), dtype="datetime64[s]"), TypeError, "real numbers"),
    "scalar": (3.0, ValueError, "2-D"),
    "1-D array": (np.ones(5), ValueError, "2-D"),
    "1-D coo_array": (one_d_coo_array(), ValueError, "2-D"),
    "3-D array": (np.ones((2, 3, 4)), ValueError, "2-D"),
    "3-D coo_array": (three_d_coo_array(), ValueError, "2-D"),
    "shape (0, n) dense": (np.zeros((0, 5)), ValueError, "empty"),
    "shape (n, 0) dense": (np.zeros((6, 0)), ValueError, "empty"),
    "shape (0, n) sparse": (sp.csr_matrix((0, 5)), ValueError, "empty"),
    "shape (n, 0) sparse": (sp.coo_array((6, 0)), ValueError, "empty"),
    "NaN dense": (_with_poison(np.nan), ValueError, "NaN"),
    "inf dense": (_with_poison(np.inf), ValueError, "infinite"),
    "-inf dense": (_with_poison(-np.inf), ValueError, "infinite"),
    "NaN sparse": (_with_poison(np.nan, sparse=True), ValueError, "NaN"),
    "inf sparse": (_with_poison(np.inf, sparse=True), ValueError, "infinite"),
    "overflows float32": (_with_poison(1e300), ValueError, "too large|infinite"),
    "overflows float32 sparse": (_with_poison(-1e300, sparse=True), ValueError, "too large|infinite"),
    "NaN float32 coo": (sp.coo_matrix(_with_poison(np.nan).astype(np.float32)), ValueError, "NaN"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_malformed_matrix_raises_naming_the_argument_and_the_problem(entry, case, trained, trained_with_features):
    bad, expected, problem = MALFORMED[case]
    if bad is None and case != "None":
        pytest.skip("this scipy cannot build the input")
    if bad is None and entry not in REQUIRED:
        pytest.skip("None means 'not given' for optional matrices")
    call, name = _entry_points(trained, trained_with_features)[entry]
    with pytest.raises(expected, match=problem) as info:
        call(bad)
    assert name in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        sp.csr_matrix((N_USERS, N_ITEMS)),
        np.zeros((N_USERS, N_ITEMS)),
        sp.coo_array((N_USERS, N_ITEMS), dtype=np.float32),
        sp.dok_matrix((N_USERS, N_ITEMS)),
    ],
    ids=["csr", "dense zeros", "coo_array", "dok"],
)
@pytest.mark.parametrize("method", ["fit", "fit_partial", "fit_partial on fitted"])
def test_interactions_without_entries_raise(bad, method):
    estimator = fitted() if method == "fit_partial on fitted" else model()
    train = estimator.fit if method == "fit" else estimator.fit_partial
    with pytest.raises(ValueError, match="no entries"):
        train(bad)


@pytest.mark.parametrize("loss", ["bpr", "warp", "warp-kos"])
def test_ranking_loss_without_positive_entries_raises(loss):
    with pytest.raises(ValueError, match="no positive"):
        model(loss=loss).fit(-np.abs(DENSE))


def test_caller_matrices_are_not_modified():
    coo = _split_into_duplicates(DENSE)
    row, col, data = coo.row.copy(), coo.col.copy(), coo.data.copy()
    dense = DENSE.copy()
    features = sp.csr_matrix(USER_FEATURES)
    features_data = features.data.copy()
    model().fit(coo, user_features=features)
    model().fit(dense)
    np.testing.assert_array_equal(coo.row, row)
    np.testing.assert_array_equal(coo.col, col)
    np.testing.assert_array_equal(coo.data, data)
    np.testing.assert_array_equal(dense, DENSE)
    np.testing.assert_array_equal(features.data, features_data)


_MALFORMED_SPARSE_SCRIPT = textwrap.dedent(
    """
    import warnings
    import numpy as np, scipy.sparse as sp
    warnings.simplefilter("ignore")
    from fastrank import FastRank

    def csr(index, shape=(2, 5)):  # scipy's (data, indices, indptr) constructor does not bound-check
        return sp.csr_matrix((np.ones(2, np.float32), np.array([0, index], np.int32),
                              np.array([0, 1, 2], np.int32)), shape=shape)

    def csc(index):
        return sp.csc_matrix((np.ones(2, np.float32), np.array([0, index], np.int32),
                              np.array([0, 1, 2, 2, 2, 2], np.int32)), shape=(2, 5))

    def coo(array, row=0, col=0):  # indices modified after construction
        matrix = (sp.coo_array if array else sp.coo_matrix)(np.ones((2, 5), np.float32))
        rows, cols = (matrix.row, matrix.col)  # (views of coords in scipy >= 1.13, which has them)
        rows[0], cols[1] = row, col
        return matrix

    def bsr():
        matrix = sp.bsr_matrix(np.ones((2, 4), np.float32), blocksize=(1, 2))
        matrix.indices[0] = 10**6
        return matrix

    def decreasing_indptr():
        return sp.csr_matrix((np.ones(2, np.float32), np.array([0, 1], np.int32), np.array([0, 2, 1], np.int32)),
                             shape=(2, 5))

    good = sp.csr_matrix(np.ones((2, 5), np.float32))
    features = sp.csr_matrix((np.ones(5, np.float32), np.array([0, 1, 2, 3, 10**8], np.int32),
                              np.arange(6, dtype=np.int32)), shape=(5, 5))
    fitted = FastRank(no_components=4, random_state=0).fit(good, item_features=np.eye(5))
    cases = {
        "csr column 10**8": ("interactions", lambda: FastRank(no_components=4).fit(csr(10**8), epochs=3)),
        "csr column 5": ("interactions", lambda: FastRank(no_components=4).fit(csr(5), epochs=3)),
        "csr column -1": ("interactions", lambda: FastRank(no_components=4).fit(csr(-1), epochs=3)),
        "csc row 7": ("interactions", lambda: FastRank(no_components=4).fit(csc(7), epochs=3)),
        "coo_matrix row 9": ("interactions", lambda: FastRank(no_components=4).fit(coo(False, row=9))),
        "coo_array col -1": ("interactions", lambda: FastRank(no_components=4).fit(coo(True, col=-1))),
        "bsr block column": ("interactions", lambda: FastRank(no_components=4).fit(bsr())),
        "decreasing indptr": ("interactions", lambda: FastRank(no_components=4).fit(decreasing_indptr())),
        "item_features": ("item_features", lambda: FastRank(no_components=4).fit(good, item_features=features)),
        "sample_weight": ("sample_weight", lambda: FastRank(no_components=4).fit(good, sample_weight=csr(10**8))),
        "predict_rank": ("test_interactions", lambda: fitted.predict_rank(csr(10**8))),
        "predict item_features": ("item_features", lambda: fitted.predict([0], [0], item_features=features)),
        "representations": ("features", lambda: fitted.get_item_representations(features)),
    }
    for case, (name, call) in cases.items():
        try:
            call()
        except (ValueError, TypeError) as error:
            print(case, "|", "REJECTED" if name in str(error) else "UNNAMED", "|", type(error).__name__, error,
                  flush=True)
        else:
            print(case, "| ACCEPTED", flush=True)
    """
)


def test_sparse_matrices_with_out_of_range_indices_are_rejected():
    """Regression: index arrays pointing outside the shape (scipy's raw constructors and in-place
    edits do not check them) reached the nogil kernels: segfault / heap corruption. Run in a
    subprocess, since a regression would take pytest down."""
    result = subprocess.run(
        [sys.executable, "-c", _MALFORMED_SPARSE_SCRIPT], capture_output=True, text=True, timeout=120
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, f"crashed ({result.returncode}) after {lines}: {result.stderr[-500:]}"
    assert len(lines) == 13, lines
    bad = [line for line in lines if "| REJECTED |" not in line]
    assert not bad, bad


# --------------------------------------------------------------------------- sample_weight
NAN_WEIGHTS = np.abs(DENSE).astype(np.float64)
NAN_WEIGHTS[0, 0] = np.nan  # DENSE[0, 0] is an entry: same pattern, one NaN weight
@pytest.mark.parametrize(
    "weights, problem",
    [
        (sp.csr_matrix(np.abs(DENSE))[:5], "shape"),
        (np.abs(DENSE)[:, :4], "shape"),
        (np.abs(DENSE).T, "shape"),
        (np.ones((N_USERS, N_ITEMS)), "sparsity pattern"),  # more entries than interactions
        (sp.csr_matrix(np.abs(DENSE) * (np.arange(N_ITEMS) != 0)), "sparsity pattern"),  # fewer entries
        (sp.csr_matrix(np.roll(np.abs(DENSE), 1, axis=1)), "sparsity pattern"),  # same count, moved
        (sp.csr_matrix(-np.abs(DENSE)), "negative"),
        (NAN_WEIGHTS, "NaN"),
        (sp.csr_matrix(np.where(DENSE != 0, np.inf, 0)), "infinite"),
    ],
    ids=["fewer rows", "fewer cols", "transposed", "more entries", "fewer entries", "moved entries",
         "negative", "NaN", "inf"],
)
def test_bad_sample_weight_raises(weights, problem):
    with pytest.raises(ValueError, match=problem) as info:
        model().fit(interactions(), sample_weight=weights)
    assert "sample_weight" in str(info.value)


@pytest.mark.parametrize("error", [ValueError, NotImplementedError])  # LightFM raises the latter
def test_sample_weight_with_warp_kos_raises(error):
    with pytest.raises(error, match="warp-kos"):
        model(loss="warp-kos").fit(interactions(), sample_weight=sp.csr_matrix(np.abs(DENSE)))


# --------------------------------------------------------------------------- feature matrices
@pytest.mark.parametrize("side", ["user", "item"])
@pytest.mark.parametrize("delta, relation", [(-1, "too few rows"), (1, "too many rows"), (-3, "too few rows")])
@pytest.mark.parametrize("method", ["fit", "fit_partial"])
def test_fit_features_with_wrong_row_count(side, delta, relation, method):
    source = USER_FEATURES if side == "user" else ITEM_FEATURES
    rows = source.shape[0] + delta
    features = np.vstack([source, source])[:rows]
    estimator = fitted() if method == "fit_partial" else model()
    with pytest.raises(ValueError, match=relation) as info:
        getattr(estimator, method)(interactions(), **{f"{side}_features": sp.csr_matrix(features)})
    assert f"{side}_features" in str(info.value)


def other_side_features(side):
    """The training features of the side other than ``side`` (a model trained with features
    refuses to score without them)."""
    if side == "user":
        return {"item_features": sp.csr_matrix(ITEM_FEATURES)}
    return {"user_features": sp.csr_matrix(USER_FEATURES)}


@pytest.mark.parametrize("side", ["user", "item"])
@pytest.mark.parametrize("delta", [-1, 1, 5])
def test_predict_features_with_other_column_count(side, delta, trained_with_features):
    source = USER_FEATURES if side == "user" else ITEM_FEATURES
    columns = source.shape[1] + delta
    features = np.zeros((source.shape[0], columns), dtype=np.float32)
    features[:, : min(columns, source.shape[1])] = source[:, :columns]
    features[0, 0] = 1.0
    estimator = trained_with_features
    given = dict(other_side_features(side), **{f"{side}_features": features})
    for call in (
        lambda: estimator.predict([0, 1], [0, 1], **given),
        lambda: estimator.predict_rank(interactions(), **given),
        lambda: getattr(estimator, f"get_{side}_representations")(features),
    ):
        with pytest.raises(ValueError, match="columns") as info:
            call()
        assert str(source.shape[1]) in str(info.value) and str(columns) in str(info.value)


@pytest.mark.parametrize("side", ["user", "item"])
def test_identity_model_rejects_features_with_other_column_count(side, trained):
    n = N_USERS if side == "user" else N_ITEMS
    with pytest.raises(ValueError, match="columns"):
        trained.predict([0], [0], **{f"{side}_features": sp.identity(n + 1, format="csr")[:n]})
    with pytest.raises(ValueError, match="columns"):
        getattr(trained, f"get_{side}_representations")(sp.identity(n - 1, format="csr"))


@pytest.mark.parametrize("side", ["user", "item"])
@pytest.mark.parametrize("delta", [-1, 1])
def test_predict_rank_features_with_wrong_row_count(side, delta, trained_with_features):
    source = USER_FEATURES if side == "user" else ITEM_FEATURES
    features = {"user_features": USER_FEATURES, "item_features": ITEM_FEATURES}
    features[f"{side}_features"] = np.vstack([source, source])[: source.shape[0] + delta]
    with pytest.raises(ValueError, match="rows") as info:
        trained_with_features.predict_rank(interactions(), **features)
    assert f"{side}_features" in str(info.value)


@pytest.mark.parametrize("side", ["user", "item"])
def test_predict_ids_beyond_the_given_feature_rows(side, trained_with_features):
    source = USER_FEATURES if side == "user" else ITEM_FEATURES
    features = source[:2]  # too few rows for id 3
    ids = {"user_ids": [0, 0], "item_ids": [0, 0]}
    ids[f"{side}_ids"] = [1, 3]
    with pytest.raises(ValueError, match="known") as info:
        trained_with_features.predict(ids["user_ids"], ids["item_ids"], **{f"{side}_features": features},
                                      **other_side_features(side))
    assert f"{side}_ids" in str(info.value) and "3" in str(info.value)


@pytest.mark.parametrize("shape, what", [((N_USERS + 1, N_ITEMS), "users"), ((N_USERS, N_ITEMS + 2), "items")])
def test_predict_rank_with_more_users_or_items_than_the_model_knows(shape, what, trained):
    test = sp.random(*shape, density=0.5, random_state=1, format="csr")
    with pytest.raises(ValueError, match=what):
        trained.predict_rank(test)


def test_predict_rank_train_and_test_shape_mismatch(trained):
    with pytest.raises(ValueError, match="shape"):
        trained.predict_rank(interactions(), train_interactions=interactions()[:, :4])
    with pytest.raises(ValueError, match="share entries"):
        trained.predict_rank(interactions(), train_interactions=interactions())


# --------------------------------------------------------------------------- ids in predict
BAD_IDS = [
    # (user_ids, item_ids, exception, regex)
    ([-1], [0], ValueError, "user_ids.*negative"),
    ([0], [-3], ValueError, "item_ids.*negative"),
    (-1, [0, 1], ValueError, "user_ids.*negative"),
    ([N_USERS], [0], ValueError, "user_ids.*known"),
    ([0], [N_ITEMS], ValueError, "item_ids.*known"),
    (N_USERS, [0], ValueError, "user_ids.*known"),
    ([0, 1], [0, 2**31 - 1], ValueError, "item_ids.*known"),
    ([2**31], [0], ValueError, "user_ids.*overflow"),
    ([0], [2**31], ValueError, "item_ids.*overflow"),
    (2**31, [0], ValueError, "user_ids.*overflow"),
    (np.int64(2**40), [0], ValueError, "user_ids.*overflow"),
    (np.array([0, 2**32 + 1], dtype=np.int64), [0, 0], ValueError, "user_ids.*overflow"),
    ([0], np.array([2**63], dtype=np.uint64), ValueError, "item_ids.*overflow"),
    ([0], np.array([-(2**40)], dtype=np.int64), ValueError, "item_ids.*negative"),
    ([0.0], [0], TypeError, "user_ids.*integer"),
    ([0], [1.0, 2.0], TypeError, "item_ids.*integer"),
    (np.array([0.5]), np.array([0]), TypeError, "user_ids.*integer"),
    ([0], np.array([1], dtype=np.float32), TypeError, "item_ids.*integer"),
    (np.array([True]), [0], TypeError, "user_ids.*integer"),
    ([0, None], [0, 1], TypeError, "user_ids.*integer"),
    (["0"], [0], TypeError, "user_ids.*integer"),
    ("0", [0], TypeError, "user_ids.*integer"),
    (None, [0], TypeError, "user_ids.*integer"),
    ([0], None, TypeError, "item_ids.*integer"),
    ([0], [1j], TypeError, "item_ids.*integer"),
    ([0, 1], [0], ValueError, "same length"),
    ([0], [0, 1, 2], ValueError, "same length"),
    ([], [0], ValueError, "same length"),
    ([[0, 1]], [[0, 1]], ValueError, "1-D"),
    ([0], np.zeros((1, 1), dtype=np.int64), ValueError, "item_ids.*1-D"),
]


@pytest.mark.parametrize("user_ids, item_ids, expected, problem", BAD_IDS)
def test_bad_ids_in_predict(user_ids, item_ids, expected, problem, trained):
    with pytest.raises(expected, match=problem):
        trained.predict(user_ids, item_ids)


@pytest.mark.parametrize(
    "user_ids, item_ids",
    [(1.0, [0, 1]), (0, 1.5), (np.float64(2.0), [0]), (0, np.float32(1.0)), (True, [0]), (0, np.bool_(True))],
    ids=["float user scalar", "float item scalar", "np.float64 user scalar", "np.float32 item scalar",
         "bool user scalar", "np.bool item scalar"],
)
def test_non_integer_scalar_ids_raise_type_error(user_ids, item_ids, trained):
    """Regression: float scalars raised ValueError('must be 1-D') instead of TypeError."""
    with pytest.raises(TypeError, match="integer"):
        trained.predict(user_ids, item_ids)


@pytest.mark.parametrize("user_ids", [2**31, 2**63, -(2**63) - 1, 2**100, np.uint64(2**63)])
def test_scalar_user_id_outside_int32_raises_value_error(user_ids, trained):
    """Regression: Python ints outside int64 raised OverflowError from np.full(..., dtype=int64)."""
    with pytest.raises(ValueError, match="user_ids.*(overflow|negative)"):
        trained.predict(user_ids, [0, 1])


@pytest.mark.parametrize("item_ids", [2**64, [0, 2**64], [-(2**63) - 1]])
def test_item_id_outside_int64_raises(item_ids, trained):
    # becomes an object array: TypeError is acceptable as long as it names item_ids
    with pytest.raises((ValueError, TypeError), match="item_ids"):
        trained.predict(0, item_ids)


def test_good_ids_still_work(trained):
    """Guard for the id tests: the same shapes of input with valid values succeed."""
    scores = trained.predict(np.array([0, 5], dtype=np.int64), np.array([4, 0], dtype=np.uint8))
    assert scores.dtype == np.float32 and scores.shape == (2,) and np.all(np.isfinite(scores))
    assert trained.predict(3, [0, 1, 2]).shape == (3,)
    assert trained.predict(np.int32(3), 4).shape == (1,)
    assert trained.predict([], []).shape == (0,)
    np.testing.assert_array_equal(trained.predict(2, [1, 3]), trained.predict([2, 2], [1, 3]))


# --------------------------------------------------------------------------- before fit
@pytest.mark.parametrize(
    "call",
    [
        lambda m, tmp: m.predict([0], [0]),
        lambda m, tmp: m.predict(0, [0, 1]),
        lambda m, tmp: m.predict_rank(interactions()),
        lambda m, tmp: m.get_user_representations(),
        lambda m, tmp: m.get_item_representations(),
        lambda m, tmp: m.get_user_representations(USER_FEATURES),
        lambda m, tmp: m.save(tmp / "model.npz"),
    ],
    ids=["predict", "predict broadcast", "predict_rank", "get_user_representations",
         "get_item_representations", "get_user_representations features", "save"],
)
@pytest.mark.parametrize("state", ["new", "fit failed"])
def test_use_before_fit_raises(call, state, tmp_path):
    estimator = model()
    if state == "fit failed":
        with pytest.raises(ValueError):
            estimator.fit(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="not fitted"):
        call(estimator, tmp_path)
    assert not (tmp_path / "model.npz").exists()
    assert list(tmp_path.iterdir()) == []  # save leaves no temporary file behind either


# --------------------------------------------------------------------------- fit_partial shrinking
UF, IF = USER_FEATURES, ITEM_FEATURES


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        (dict(interactions=DENSE[:5], user_features=UF[:5], item_features=IF), "5 users"),
        (dict(interactions=DENSE[:, :3], user_features=UF, item_features=IF[:3]), "3 items"),
        (dict(interactions=DENSE[:1, :1], user_features=UF[:1], item_features=IF[:1]), "1 users"),
        (dict(interactions=DENSE, user_features=UF[:, :2], item_features=IF), "user_features has 2 columns"),
        (dict(interactions=DENSE, user_features=UF, item_features=IF[:, :3]), "item_features has 3 columns"),
        (dict(interactions=DENSE, user_features=UF, item_features=IF, sample_weight=np.ones((6, 5))),
         "sparsity pattern"),
        (dict(interactions=np.full((6, 5), np.inf), user_features=UF, item_features=IF), "infinite"),
        (dict(interactions=DENSE, user_features=UF[:5], item_features=IF), "too few rows"),
    ],
    ids=["fewer users", "fewer items", "far fewer users", "fewer user feature columns",
         "fewer item feature columns", "bad sample_weight", "inf interactions", "feature rows"],
)
def test_fit_partial_rejects_shrinking_and_leaves_model_unchanged(kwargs, problem):
    estimator = model().fit(interactions(), user_features=UF, item_features=IF, epochs=2)
    before = snapshot(estimator)
    with pytest.raises(ValueError, match=problem):
        estimator.fit_partial(**kwargs)
    assert_unchanged(estimator, before)
    # still usable with its original inputs
    estimator.fit_partial(interactions(), user_features=UF, item_features=IF)


def test_fit_partial_identity_model_rejects_fewer_users():
    estimator = fitted()
    before = snapshot(estimator)
    with pytest.raises(ValueError, match="users"):
        estimator.fit_partial(interactions()[:4])
    assert_unchanged(estimator, before)


def test_rejected_fit_partial_does_not_grow_the_other_side():
    """Regression: the user side grew before the item features were rejected, after which the
    model refused its original user_features everywhere."""
    estimator = model().fit(interactions(), user_features=USER_FEATURES, item_features=ITEM_FEATURES)
    before = snapshot(estimator)
    wider_users = np.hstack([USER_FEATURES, np.eye(N_USERS, 2, dtype=np.float32)])
    with pytest.raises(ValueError, match="item_features has 3 columns"):
        estimator.fit_partial(interactions(), user_features=wider_users, item_features=ITEM_FEATURES[:, :3])
    assert_unchanged(estimator, before)
    estimator.predict([0], [0], user_features=USER_FEATURES, item_features=ITEM_FEATURES)


def failing_allocation(monkeypatch, after):
    """Make the estimator's ``after``-th next parameter allocation raise MemoryError."""
    from fastrank import _estimator

    calls = []

    def allocate(shape, dtype=np.float32):
        calls.append(shape)
        if len(calls) > after:
            raise MemoryError("simulated")
        return _validation_aligned_empty(shape, dtype)

    monkeypatch.setattr(_estimator, "aligned_empty", allocate)
    return calls


@pytest.mark.parametrize("after", [0, 3, 8])
def test_memory_error_while_growing_leaves_the_model_as_it_was(monkeypatch, after):
    """The user side grew before the item side ran out of memory: the model then refused its
    own feature matrices; and fit had discarded the trained model before allocating."""
    estimator = model().fit(interactions(), epochs=1)
    twin = model().fit(interactions(), epochs=1)
    before = snapshot(estimator)
    bigger = sp.vstack([interactions(), interactions()[:2]]).tocsr()
    bigger = sp.hstack([bigger, sp.csr_matrix(np.ones((bigger.shape[0], 2), dtype=np.float32))]).tocsr()
    calls = failing_allocation(monkeypatch, after)
    for call in (lambda: estimator.fit_partial(bigger), lambda: estimator.fit(interactions())):
        with pytest.raises(MemoryError, match="the model is unchanged"):
            call()
        assert_unchanged(estimator, before)
    assert len(calls) > after
    monkeypatch.undo()
    # the generator is back where it was too: training goes on exactly as an untouched twin's
    estimator.fit_partial(bigger, epochs=1)
    twin.fit_partial(bigger, epochs=1)
    assert_unchanged(estimator, snapshot(twin))


@pytest.mark.parametrize(
    "name, value, problem",
    [("no_components", 5, "no_components changed"), ("learning_schedule", "adadelta", "learning_schedule changed")],
)
def test_fit_partial_after_changing_structural_parameters(name, value, problem):
    estimator = fitted()
    before = snapshot(estimator)
    estimator.set_params(**{name: value})
    with pytest.raises(ValueError, match=problem):
        estimator.fit_partial(interactions())
    assert_unchanged(estimator, before)
    estimator.fit(interactions())  # fit starts again and accepts the new value
    assert estimator.user_embeddings.shape[1] == estimator.no_components


# --------------------------------------------------------------------------- hyperparameters
BAD_PARAMETERS = [
    ("loss", "nope"), ("loss", "WARP"), ("loss", None), ("loss", ["warp"]), ("loss", 1),
    ("learning_schedule", "adam"), ("learning_schedule", None),
    ("no_components", 0), ("no_components", -1), ("no_components", 2.5), ("no_components", 4.0),
    ("no_components", True), ("no_components", np.True_), ("no_components", "4"), ("no_components", None),
    ("learning_rate", 0), ("learning_rate", -0.05), ("learning_rate", float("nan")),
    ("learning_rate", float("inf")), ("learning_rate", "0.05"), ("learning_rate", True), ("learning_rate", None),
    ("max_sampled", 0), ("max_sampled", -5), ("max_sampled", 2.5), ("max_sampled", True),
    ("k", 0), ("k", -1), ("k", 1.5), ("k", False),
    ("n", 0), ("n", -10), ("n", 10.0), ("n", "10"),
    ("item_alpha", -0.1), ("item_alpha", float("nan")), ("item_alpha", float("inf")), ("item_alpha", "0"),
    ("item_alpha", True), ("user_alpha", -1e-9), ("user_alpha", float("-inf")), ("user_alpha", None),
    ("rho", 0), ("rho", 1), ("rho", 1.5), ("rho", -0.5), ("rho", float("nan")), ("rho", True),
    ("epsilon", 0), ("epsilon", -1e-6), ("epsilon", float("nan")), ("epsilon", float("inf")),
    ("random_state", "seed"), ("random_state", 1.5), ("random_state", True), ("random_state", -1),
    ("random_state", [1, 2]),
    ("initial_accumulator", 0), ("initial_accumulator", -1.0), ("initial_accumulator", float("nan")),
    # an int beyond the float range, and numpy's non-finite floats
    ("learning_rate", 10**400), ("item_alpha", 10**400), ("debias_weight", 10**400),
    ("epsilon", np.float32("inf")), ("user_alpha", np.float64("nan")),
]


@pytest.mark.parametrize("method", ["fit", "fit_partial", "fit_partial on fitted"])
@pytest.mark.parametrize("name, value", BAD_PARAMETERS)
def test_bad_hyperparameter_raises_value_error_at_fit_time(name, value, method):
    if method == "fit_partial on fitted" and name == "random_state" and value == -1:
        pytest.skip("covered by test_negative_random_state_is_rejected_by_fit_partial_on_a_fitted_model")
    estimator = model(**{name: value})  # construction never validates
    assert estimator.get_params()[name] is value
    if method == "fit_partial on fitted":
        estimator = fitted().set_params(**{name: value})
        before = snapshot(estimator)
    train = estimator.fit if method == "fit" else estimator.fit_partial
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        train(interactions())
    if method == "fit_partial on fitted":
        assert_unchanged(estimator, before)
    else:
        assert getattr(estimator, "item_embeddings", None) is None


def test_constructing_with_bad_parameters_does_not_raise():
    estimator = FastRank(loss="nope", no_components=-1, learning_rate=float("nan"), random_state="x", rho=2)
    assert estimator.loss == "nope" and estimator.no_components == -1
    repr(estimator)
    estimator.set_params(loss="warp", no_components=4, learning_rate=0.05, random_state=0, rho=0.9)
    estimator.fit(interactions())  # fixed via set_params: trains


@pytest.mark.parametrize("name", ["k", "n", "max_sampled", "no_components"])
@pytest.mark.parametrize("value", [2**31, 2**63])
def test_integer_hyperparameter_too_large_for_int32_raises_value_error(name, value):
    """Regression: these passed validation, then raised OverflowError converting to a C int."""
    with pytest.raises(ValueError, match=name):
        model(loss="warp-kos", **{name: value}).fit(interactions())


def test_negative_random_state_is_rejected_by_fit_partial_on_a_fitted_model():
    estimator = fitted().set_params(random_state=-1)
    with pytest.raises(ValueError, match="random_state"):
        estimator.fit_partial(interactions())


@pytest.mark.parametrize("value", [1e39, 1e300])
def test_initial_accumulator_beyond_float32_is_rejected(value):
    with pytest.raises(ValueError, match="initial_accumulator"):
        model(initial_accumulator=value).fit(interactions())


def test_initial_accumulator_beyond_float32_makes_an_unloadable_model(tmp_path):
    """Documents the consequence of the bug above while it stands (passes once fit rejects the value)."""
    try:
        estimator = model(initial_accumulator=1e39).fit(interactions())
    except ValueError as error:
        assert "initial_accumulator" in str(error)
        return
    estimator.save(tmp_path / "model.npz")
    with pytest.raises(ValueError, match="non-finite"):
        FastRank.load(tmp_path / "model.npz")


@pytest.mark.parametrize("dtype", ["timedelta64[s]", "timedelta64[ns]"])
def test_timedelta_matrix_is_rejected(dtype):
    with pytest.raises(TypeError, match="real numbers"):
        model().fit(np.ones((N_USERS, N_ITEMS), dtype=dtype))


def test_valid_parameter_edge_values_are_accepted():
    """Guard: the boundaries just inside the valid ranges train."""
    for params in (
        dict(no_components=1, k=1, n=1, max_sampled=1, loss="warp-kos"),
        dict(no_components=np.int64(2), learning_rate=np.float32(0.01), item_alpha=0, user_alpha=0.0),
        dict(learning_schedule="adadelta", rho=1e-6, epsilon=1e-12),
        dict(learning_schedule="adadelta", rho=0.999999),
        dict(random_state=np.random.RandomState(1)),
        dict(random_state=np.random.default_rng(1)),
        dict(random_state=None, initial_accumulator=1e-3),
    ):
        estimator = model(**params).fit(interactions())
        assert np.all(np.isfinite(estimator.user_embeddings))


# --------------------------------------------------------------------------- epochs / num_threads
@pytest.mark.parametrize(
    "value, expected",
    [(-1, ValueError), (-100, ValueError), (1.5, TypeError), (2.0, TypeError), ("2", TypeError),
     (None, TypeError), (True, TypeError), (np.float64(1), TypeError)],
)
@pytest.mark.parametrize("method", ["fit", "fit_partial"])
def test_bad_epochs(value, expected, method):
    with pytest.raises(expected, match="epochs"):
        getattr(model(), method)(interactions(), epochs=value)


def test_zero_epochs_is_allowed():
    estimator = model().fit(interactions(), epochs=0)
    assert estimator.user_embeddings.shape == (N_USERS, 4)


NUM_THREADS = [(0, ValueError), (-1, ValueError), (1.5, TypeError), (1.0, TypeError), ("2", TypeError),
               (None, TypeError), (True, TypeError)]


@pytest.mark.parametrize("value, expected", NUM_THREADS)
@pytest.mark.parametrize("method", ["fit", "fit_partial", "predict", "predict_rank"])
def test_bad_num_threads(value, expected, method, trained):
    calls = {
        "fit": lambda: model().fit(interactions(), num_threads=value),
        "fit_partial": lambda: fitted().fit_partial(interactions(), num_threads=value),
        "predict": lambda: trained.predict([0], [0], num_threads=value),
        "predict_rank": lambda: trained.predict_rank(interactions(), num_threads=value),
    }
    with pytest.raises(expected, match="num_threads"):
        calls[method]()


def test_set_params_rejects_unknown_names():
    with pytest.raises(ValueError, match="no_component"):
        model().set_params(no_component=3)


# --------------------------------------------------------------------------- property test
# Each input is drawn either "plausible" (right shape, real dtype, finite) or freely malformed, so
# that both the error paths and the training/scoring paths are exercised (the event() statistics,
# shown by ``pytest --hypothesis-show-statistics``, report how often each call succeeds).
_SPARSE_FORMATS = list(SPARSE_CONSTRUCTORS.values())
_REAL_DTYPES = [np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_]
_DTYPES = _REAL_DTYPES + [np.float16, object, np.complex128]
_POISON = [None, None, np.nan, np.inf, -np.inf, 1e300, 3.4e38]
_JUNK = [None, "x", b"x", ["a", "b"], [["a"]], {"a": 1}, 3, 2.5, [[1, 2], [3]], set(), (), [[]]]
_MOSTLY_TRUE = st.sampled_from([True, True, False])


def _corrupt_sparse(draw, n_rows, n_cols):
    n_rows, n_cols = max(n_rows, 1), max(n_cols, 1)
    bad = draw(st.sampled_from([-1, -(2**20), n_cols, n_cols + 1, 10**8]))
    fmt = draw(st.sampled_from(["csr", "csc", "coo_matrix", "coo_array"]))
    if fmt in ("csr", "csc"):
        major, minor = (n_rows, n_cols) if fmt == "csr" else (n_cols, n_rows)
        bad = bad if bad < 0 or bad >= minor else minor
        indptr = np.minimum(np.arange(major + 1), 2).astype(np.int32)
        indices = np.array([0, bad][: indptr[-1]], dtype=np.int32)
        constructor = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
        return constructor((np.ones(indices.size, np.float32), indices, indptr), shape=(n_rows, n_cols))
    matrix = (sp.coo_array if fmt == "coo_array" else sp.coo_matrix)(np.ones((n_rows, n_cols), np.float32))
    rows, cols = matrix.row, matrix.col
    target = rows if draw(st.booleans()) else cols
    limit = n_rows if target is rows else n_cols
    target[draw(st.integers(0, target.size - 1))] = bad if bad < 0 or bad >= limit else limit
    return matrix


@st.composite
def matrices(draw, rows, cols, plausible=None):
    """A 'matrix' for an argument that should have shape (rows, cols)."""
    plausible = draw(_MOSTLY_TRUE) if plausible is None else plausible
    if plausible:
        kind = draw(st.sampled_from(["dense", "sparse", "sparse", "list"]))
        shape = (rows, cols)
        dtype = draw(st.sampled_from(_REAL_DTYPES))
        poison = None
    else:
        kind = draw(st.sampled_from(["dense", "sparse", "sparse", "list", "1d", "3d", "junk", "corrupt"]))
        if kind == "junk":
            return draw(st.sampled_from(_JUNK))
        n_rows = rows if draw(st.booleans()) else draw(st.integers(0, 7))
        n_cols = cols if draw(st.booleans()) else draw(st.integers(0, 7))
        shape = {"1d": (n_cols,), "3d": (n_rows, n_cols, draw(st.integers(0, 3)))}.get(kind, (n_rows, n_cols))
        dtype = draw(st.sampled_from(_DTYPES))
        poison = draw(st.sampled_from(_POISON))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0] if not plausible else [0.3, 0.7, 1.0]))
    values = rng.integers(-1, 4, size=shape).astype(np.float64) * (rng.random(shape) < density)
    if poison is not None and values.size:
        values.flat[rng.integers(values.size)] = poison
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = values.astype(dtype)
    if kind == "list":
        return array.tolist()
    if kind == "sparse" and array.ndim == 2:
        constructor = draw(st.sampled_from(_SPARSE_FORMATS))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                matrix = constructor(array)
        except (TypeError, ValueError):  # scipy refuses some dtypes (object, float16, ...)
            return array
        if draw(st.booleans()):  # store every entry twice (must be summed)
            coo = sp.coo_matrix(matrix)
            matrix = sp.coo_matrix(
                (np.concatenate([coo.data, coo.data]), (np.tile(coo.row, 2), np.tile(coo.col, 2))), shape=coo.shape
            )
        return matrix
    if kind == "corrupt":  # raw index arrays pointing outside the shape (scipy does not check them)
        return _corrupt_sparse(draw, n_rows, n_cols)
    if kind == "3d" and draw(st.booleans()) and array.dtype.kind in "biuf":
        try:
            return sp.coo_array(array.astype(np.float64))
        except (TypeError, ValueError):  # scipy before n-D sparse arrays
            return array
    return array


_ID_VALUES = st.one_of(
    st.integers(-3, 8), st.sampled_from([2**31 - 1, 2**31, 2**40, -(2**31), 2**62, 2**63, 2**64, -(2**63) - 1, 2**100])
)


@st.composite
def ids(draw, length):
    if draw(_MOSTLY_TRUE):  # plausible: valid ids of the common length in an integer container
        kind = draw(st.sampled_from(["list", "int64", "int32", "uint64", "scalar"]))
        values = draw(st.lists(st.integers(0, 4), min_size=length, max_size=length))
    else:
        kind = draw(st.sampled_from(["list", "int64", "int32", "uint64", "scalar", "float", "bool", "object",
                                     "2d", "junk"]))
        if kind == "junk":
            return draw(st.sampled_from([None, "0", b"1", 1.5, np.float32(2), [None], {0: 1}]))
        n = length if draw(st.booleans()) else draw(st.integers(0, 6))
        values = draw(st.lists(_ID_VALUES, min_size=n, max_size=n))
    if kind == "scalar":
        return values[0] if values else 0  # a Python int, possibly far outside int64
    if kind == "uint64":
        return np.array([min(abs(v), 2**64 - 1) for v in values], dtype=np.uint64)
    values_64 = [min(max(v, -(2**63)), 2**63 - 1) for v in values]  # numpy arrays hold at most int64
    if kind == "int32":
        return np.array(values_64, dtype=np.int64).astype(np.int32)
    if kind == "float":
        return np.array(values_64, dtype=np.float64)
    if kind == "bool":
        return np.array(values_64, dtype=np.int64) > 2
    if kind == "object":
        return np.array(values, dtype=object)
    if kind == "2d":
        return np.array(values_64, dtype=np.int64).reshape(1, -1)
    return np.array(values_64, dtype=np.int64) if kind == "int64" else values


# name -> (valid values, invalid values)
_PARAMETERS = {
    "loss": (LOSSES, ["nope", None]),
    "learning_schedule": (["adagrad", "adadelta", "sgd"], ["adam", "SGD", None]),
    "no_components": ([1, 2, 4], [0, -1, 2.5, True]),
    "learning_rate": ([0.05, 0.5], [0.0, -1.0, float("nan")]),
    "item_alpha": ([0.0, 0.01], [-0.1, float("inf")]),
    "user_alpha": ([0.0, 0.01], [-0.1]),
    "max_sampled": ([1, 10], [0, 1.5, 2**31]),
    "k": ([1, 3, 5], [0, 2**63]),
    "n": ([1, 2, 10], [0, -2, 2**31]),
    "rho": ([0.95, 0.5], [0.0, 1.0]),
    "epsilon": ([1e-6], [0.0]),
    "random_state": ([0, 1, None], ["x", -1]),
    "initial_accumulator": ([None, 0.1, 1.0], [0.0]),
}


@st.composite
def scenarios(draw):
    corrupt = draw(st.sets(st.sampled_from(sorted(_PARAMETERS)), max_size=2)) if not draw(_MOSTLY_TRUE) else set()
    params = {name: draw(st.sampled_from(values[name in corrupt])) for name, values in _PARAMETERS.items()}
    operation = draw(st.sampled_from(["fit", "fit_partial", "fit_partial on fitted", "predict",
                                      "predict_rank", "representations"]))
    with_features = draw(st.booleans())
    rows, cols = N_USERS + draw(st.sampled_from([0, 0, 1])), N_ITEMS + draw(st.sampled_from([0, 0, 2]))
    if with_features and operation not in ("fit", "fit_partial"):
        user_columns, item_columns = USER_FEATURES.shape[1], ITEM_FEATURES.shape[1]
    else:
        user_columns, item_columns = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    if draw(st.booleans()):  # sometimes a wrong feature column count
        user_columns, item_columns = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    optional = lambda strategy: draw(strategy) if draw(st.booleans()) else None  # noqa: E731
    length = draw(st.integers(0, 5))
    return dict(
        params=params,
        operation=operation,
        with_features=with_features,
        interactions=draw(matrices(rows, cols)),
        user_features=optional(matrices(rows, user_columns)),
        item_features=optional(matrices(cols, item_columns)),
        # "derived": the same sparsity pattern as the interactions, positive weights
        sample_weight=draw(st.sampled_from(["none", "none", "derived", "random"])),
        random_weights=draw(matrices(rows, cols)),
        epochs=draw(st.sampled_from([1, 1, 2, 0] if draw(_MOSTLY_TRUE) else [-1, 1.5, None, True])),
        num_threads=draw(st.sampled_from([1, 1, 2] if draw(_MOSTLY_TRUE) else [0, -1, 1.0, "1"])),
        user_ids=draw(ids(length)),
        item_ids=draw(ids(length)),
    )


def _indices_in_bounds(matrix):
    if matrix.format in ("csr", "csc", "bsr"):
        try:
            matrix.check_format(full_check=True)
        except ValueError:
            return False
    elif matrix.format == "coo":
        rows, cols = matrix.row, matrix.col
        return not rows.size or bool(
            rows.min() >= 0 and rows.max() < matrix.shape[0] and cols.min() >= 0 and cols.max() < matrix.shape[1]
        )
    return True


def _derived_weights(matrix):
    """Weights with the same sparsity pattern as ``matrix`` (None if it is not a real-valued matrix)."""
    if sp.issparse(matrix) and matrix.ndim == 2 and matrix.dtype.kind in "biuf":
        if not _indices_in_bounds(matrix):  # scipy's own conversion would write out of bounds
            return None
        weights = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
        weights.sum_duplicates()
        weights.data = np.abs(weights.data) + 0.5
        return weights
    try:
        array = np.asarray(matrix) if isinstance(matrix, (np.ndarray, list)) else None
    except ValueError:  # a ragged list
        return None
    if array is not None and array.ndim == 2 and array.dtype.kind in "biuf":
        return np.abs(array.astype(np.float64)) + 0.5 * (array != 0)
    return None


def _check_success(operation, estimator, result):
    if operation.startswith("fit"):
        assert result is estimator
        for name in PARAMETER_ARRAYS:
            array = getattr(estimator, name)
            assert array.dtype == np.float32 and np.all(np.isfinite(array)), name
        assert estimator.user_embeddings.shape[1] == estimator.no_components
    elif operation == "predict":
        assert result.dtype == np.float32 and result.ndim == 1 and np.all(np.isfinite(result))
    elif operation == "predict_rank":
        n_items = result.shape[1]
        assert sp.issparse(result) and np.all((result.data >= 0) & (result.data < n_items))
    else:
        for biases, embeddings in result:
            assert biases.shape[0] == embeddings.shape[0] and np.all(np.isfinite(embeddings))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(scenario=scenarios())
def test_random_inputs_only_succeed_or_raise_value_or_type_error(scenario):
    operation = scenario["operation"]
    estimator = FastRank(**scenario["params"])
    if operation != "fit" and operation != "fit_partial":
        structure = {"no_components": 4, "learning_schedule": "adagrad"}
        if operation == "fit_partial on fitted":  # keep the scenario's structure when it is valid
            structure.update(
                (name, scenario["params"][name]) for name in structure
                if not isinstance(scenario["params"][name], bool) and scenario["params"][name] in _PARAMETERS[name][0]
            )
        estimator = FastRank(random_state=0, **structure)
        if scenario["with_features"]:
            estimator.fit(interactions(), user_features=USER_FEATURES, item_features=ITEM_FEATURES)
        else:
            estimator.fit(interactions())
        if operation == "fit_partial on fitted":
            estimator.set_params(**scenario["params"])
    sample_weight = {
        "none": None,
        "derived": _derived_weights(scenario["interactions"]),
        "random": scenario["random_weights"],
    }[scenario["sample_weight"]]
    training = dict(
        user_features=scenario["user_features"],
        item_features=scenario["item_features"],
        sample_weight=sample_weight,
        epochs=scenario["epochs"],
        num_threads=scenario["num_threads"],
    )
    calls = {
        "fit": lambda: estimator.fit(scenario["interactions"], **training),
        "fit_partial": lambda: estimator.fit_partial(scenario["interactions"], **training),
        "fit_partial on fitted": lambda: estimator.fit_partial(scenario["interactions"], **training),
        "predict": lambda: estimator.predict(
            scenario["user_ids"], scenario["item_ids"], item_features=scenario["item_features"],
            user_features=scenario["user_features"], num_threads=scenario["num_threads"],
        ),
        "predict_rank": lambda: estimator.predict_rank(
            scenario["interactions"], train_interactions=sample_weight,
            item_features=scenario["item_features"], user_features=scenario["user_features"],
            num_threads=scenario["num_threads"], check_intersections=sample_weight is None,
        ),
        "representations": lambda: (
            estimator.get_user_representations(scenario["user_features"]),
            estimator.get_item_representations(scenario["item_features"]),
        ),
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = calls[operation]()
    except (ValueError, TypeError) as error:
        assert str(error), "the error message must say what is wrong"
        event(f"{operation}: {type(error).__name__}")
        return
    event(f"{operation}: success")
    _check_success(operation, estimator, result)


@pytest.mark.parametrize("side", ["user", "item"])
def test_a_model_trained_with_features_refuses_to_score_or_train_without_them(side, trained_with_features):
    """None means each id is its own feature: on a model trained with features it read tag rows
    as users or items (recommend returned tag columns as item ids, scores were off by 0.2), and
    fit_partial grew the model with the tag rows taken for ids."""
    model = copy.deepcopy(trained_with_features)
    others = other_side_features(side)
    calls = [
        lambda: model.predict([0], [0], **others),
        lambda: model.predict_rank(interactions(), **others),
        lambda: model.recommend([0], **others),
        lambda: getattr(model, f"similar_{side}s")(0),
        lambda: model.fit_partial(interactions(), **others),
    ]
    before = snapshot(model)
    for call in calls:
        with pytest.raises(ValueError, match=f"trained with {side}_features; pass them"):
            call()
    assert_unchanged(model, before)
    # the per-feature parameters are still there to read, and with its features it scores
    assert getattr(model, f"get_{side}_representations")()[1].shape[0] == model.__dict__[f"{side}_embeddings"].shape[0]
    model.predict([0], [0], user_features=sp.csr_matrix(USER_FEATURES), item_features=sp.csr_matrix(ITEM_FEATURES))


def test_the_feature_record_survives_save_and_load(trained_with_features, tmp_path):
    trained_with_features.save(tmp_path / "model.npz")
    loaded = FastRank.load(tmp_path / "model.npz")
    with pytest.raises(ValueError, match="trained with item_features"):
        loaded.predict([0], [0], user_features=sp.csr_matrix(USER_FEATURES))


def test_stored_zeros_in_features_change_nothing(trained_with_features):
    """A stored zero counted as a feature the example touched: with item_alpha its embedding
    decayed on every example of the row, and the model differed from the one without it."""
    features = sp.coo_matrix(ITEM_FEATURES)
    absent = np.argwhere(ITEM_FEATURES == 0)  # stored as explicit zeros below
    stored = sp.csr_matrix((np.r_[features.data, np.zeros(len(absent), np.float32)],
                            (np.r_[features.row, absent[:, 0]], np.r_[features.col, absent[:, 1]])),
                           shape=features.shape)
    assert stored.nnz > features.nnz  # the zeros are stored
    models = [model(item_alpha=0.05).fit(interactions(), item_features=matrix, epochs=3)
              for matrix in (features, stored)]
    np.testing.assert_array_equal(models[0].item_embeddings, models[1].item_embeddings)
