"""Inputs found by fuzzing the public API that once crashed the process, corrupted memory or
raised an exception other than ValueError/TypeError. Each must now be refused with a clear
ValueError or TypeError before any kernel runs."""

import json
import os
import stat
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

from fastrank import FastRank, _sgd, evaluation
from fastrank._estimator import MAX_THREADS
from fastrank._validation import to_csr
from fastrank.cross_validation import item_cold_start_split, leave_k_out_split
from fastrank.data import Dataset
from fastrank.debias import inverse_propensity_weights

N_USERS, N_ITEMS = 5, 7


def interactions():
    rng = np.random.default_rng(3)
    dense = (rng.random((N_USERS, N_ITEMS)) < 0.5).astype(np.float32)
    dense[:, 0] = 1.0  # every user has a positive
    return sp.csr_matrix(dense)


@pytest.fixture
def trained():
    return FastRank(no_components=4, loss="warp", random_state=0).fit(interactions(), epochs=1)


# --------------------------------------------------------------------------- edited index arrays


def lil_with_column(column, dtype=np.float32):
    matrix = sp.lil_matrix(interactions().astype(dtype))
    matrix.rows[0] = [column]
    matrix.data[0] = [1]
    return matrix


@pytest.mark.parametrize("dtype", [np.float32, np.int8])  # (narrow integers take their own path)
@pytest.mark.parametrize("column", [99, 10**8, -3])
def test_hand_edited_lil_indices_are_rejected(column, dtype, trained):
    """lil keeps its indices in Python lists; scipy's conversion to CSR copies bad ones through,
    which reached the kernels (a segfault for 10**8, silent out-of-bounds access else)."""
    bad = lil_with_column(column, dtype)
    calls = [
        lambda: FastRank(no_components=4).fit(bad, epochs=1),
        lambda: trained.recommend(0, filter_interactions=bad),
        lambda: evaluation.precision_at_k(trained, bad),
        lambda: item_cold_start_split(bad),
        lambda: inverse_propensity_weights(bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="malformed"):
            call()


@pytest.mark.parametrize("n_values", [64, 0])
def test_lil_rows_with_more_or_fewer_values_than_columns_are_rejected(n_values, trained):
    """scipy's lil conversion sizes its output by the column lists and copies the value lists
    into it: 64 values for one column wrote past the buffer (the process aborted with a
    corrupted heap, often after the call returned); fewer values left other rows' values as
    uninitialised memory."""
    bad = sp.lil_matrix(interactions())
    bad.data[0] = [1.0] * n_values
    calls = [
        lambda: FastRank(no_components=4).fit(bad, epochs=1),
        lambda: trained.predict_rank(bad),
        lambda: trained.recommend(0, filter_interactions=bad),
        lambda: evaluation.auc_score(trained, bad),
        lambda: item_cold_start_split(bad),
        lambda: leave_k_out_split(interactions(), timestamps=bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="malformed lil matrix: row 0 has"):
            call()


@pytest.mark.parametrize("dtype, values", [(np.int8, [100, 100]), (np.uint8, [200, 100]), (np.int16, [30000, 30000])])
def test_duplicates_of_narrow_integers_are_summed_without_wrapping(dtype, values):
    """scipy sums duplicates in the matrix's own type: 100 + 100 in int8 became -56, which the
    logistic loss then trained as a negative, and the splits returned."""
    rows, cols = [0, 0, 1], [1, 1, 2]
    for matrix in (sp.coo_matrix((np.array(values + [5], dtype), (rows, cols)), shape=(2, 3)),
                   sp.csr_matrix((np.array(values + [5], dtype), [1, 1, 2], [0, 2, 3]), shape=(2, 3))):
        model = FastRank(no_components=2, loss="logistic", random_state=0).fit(matrix, epochs=1)
        assert model.predict_rank(matrix).nnz == 2  # two entries: the duplicates were summed
        np.testing.assert_array_equal(to_csr(matrix, "interactions").toarray()[0], [0, sum(values), 0])
        # the splits keep the input's dtype, where this sum does not fit: refused, not wrapped
        with pytest.raises(ValueError, match="sum does not fit its dtype"):
            item_cold_start_split(matrix)
    fitting = sp.coo_matrix((np.array([3, 4, 5], dtype), (rows, cols)), shape=(2, 3))
    train, test = leave_k_out_split(fitting, k=1, random_state=0)
    assert train.dtype == dtype and (train + test).toarray()[0, 1] == 7


# --------------------------------------------------------------------------- thread counts


@pytest.mark.parametrize("num_threads", [MAX_THREADS + 1, 100_000, 2**31, np.int64(2**40)])
def test_huge_num_threads_is_a_value_error(num_threads, trained):
    """OpenMP runtimes crash or exit the process when asked for that many threads."""
    calls = [
        lambda: FastRank(no_components=4).fit(interactions(), num_threads=num_threads),
        lambda: trained.predict(0, np.arange(N_ITEMS), num_threads=num_threads),
        lambda: trained.predict_rank(interactions(), num_threads=num_threads),
        lambda: trained.recommend(0, num_threads=num_threads),
        lambda: trained.similar_items(0, num_threads=num_threads),
        lambda: evaluation.auc_score(trained, interactions(), num_threads=num_threads),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=f"num_threads must be <= {MAX_THREADS}"):
            call()


def test_the_largest_thread_count_still_works(trained):
    scores = trained.predict(0, np.arange(N_ITEMS), num_threads=MAX_THREADS)
    np.testing.assert_array_equal(scores, trained.predict(0, np.arange(N_ITEMS)))


# --------------------------------------------------------------------------- k


@pytest.mark.parametrize("k", [2**31, 2**70])
def test_huge_k_is_a_value_error(k, trained):
    calls = [
        lambda: evaluation.precision_at_k(trained, interactions(), k=k),
        lambda: evaluation.ndcg_at_k(trained, interactions(), k=k),
        lambda: evaluation.ranking_metrics(trained, interactions(), k=k),
        lambda: trained.recommend(0, k=k),
        lambda: trained.similar_users(0, k=k),
        lambda: leave_k_out_split(interactions(), k=k),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="k must be <="):
            call()


# --------------------------------------------------------------------------- arrays set by hand


def narrower(model):
    return np.ascontiguousarray(model.item_embeddings[:, :2])


@pytest.mark.parametrize(
    "name, value, error, problem",
    [
        ("user_biases", None, TypeError, "user_biases must be a float32 numpy array, got NoneType"),
        ("item_embeddings", [1.0, 2.0], TypeError, "got list"),
        ("item_embeddings", "text", TypeError, "got str"),
        ("item_embeddings", np.zeros((N_ITEMS, 4)), TypeError, "got a float64 array"),
        ("item_embeddings", np.zeros(N_ITEMS, np.float32), ValueError, "must be 2-D"),
        ("item_embeddings", narrower, ValueError, r"item_embeddings has shape \(7, 2\)"),
        ("user_embeddings", np.zeros((N_USERS, 400), np.float32), ValueError,
         # scoring compares the sides' widths, training the fitted one
         r"item_embeddings has shape \(7, 4\); the model needs \(7, 400\) .*the width of user_embeddings"
         r"|user_embeddings has shape \(5, 400\); the model needs \(5, 4\) .*no_components as fitted"),
        ("item_biases", np.zeros(3, np.float32), ValueError, "one per row of item_embeddings"),
    ],
)
def test_inconsistent_public_arrays_are_refused_by_every_entry_point(trained, name, value, error, problem):
    """The kernels index the arrays by shape alone: a narrower or shorter array assigned by hand
    gave out-of-bounds reads (NaN or garbage scores), heap corruption in training, or a segfault."""
    setattr(trained, name, value(trained) if callable(value) else value)
    calls = [
        lambda: trained.predict(0, np.arange(N_ITEMS)),
        lambda: trained.predict_rank(interactions()),
        lambda: trained.recommend(np.arange(N_USERS)),
        lambda: evaluation.auc_score(trained, interactions()),
        lambda: trained.fit_partial(interactions()),
        lambda: trained.save("never-written.npz"),
    ]
    for call in calls:
        with pytest.raises(error, match=problem):
            call()


@pytest.mark.parametrize("name", ["_item_embedding_acc", "_user_bias_acc"])
def test_missing_or_mismatched_optimizer_state_is_refused_by_training(trained, name):
    setattr(trained, name, None)
    with pytest.raises(TypeError, match=f"{name} must be a float32 numpy array"):
        trained.fit_partial(interactions())
    setattr(trained, name, np.ones((2, 4) if "embedding" in name else 2, dtype=np.float32))
    with pytest.raises(ValueError, match=f"{name} has shape"):
        trained.fit_partial(interactions())


def test_consistent_replacement_arrays_still_score(trained):
    """Scoring with other (consistent) factors is legitimate, also of another width."""
    rng = np.random.default_rng(0)
    trained.user_embeddings = rng.random((N_USERS, 3), dtype=np.float32)
    trained.item_embeddings = rng.random((N_ITEMS, 3), dtype=np.float32)
    expected = trained.user_embeddings[1] @ trained.item_embeddings.T + trained.user_biases[1] + trained.item_biases
    np.testing.assert_allclose(trained.predict(1, np.arange(N_ITEMS)), expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"user_embeddings has shape \(5, 3\); the model needs \(5, 4\)"):
        trained.fit_partial(interactions())  # training needs the fitted width (and its state)


def test_read_only_and_fortran_order_parameters_score_everywhere(trained, tmp_path):
    """predict raised Cython's "buffer source array is read-only" (a memory-mapped model, as
    np.load(mmap_mode="r") gives) and "ndarray is not C-contiguous", naming no array."""
    expected = trained.predict(np.repeat(np.arange(N_USERS), N_ITEMS), np.tile(np.arange(N_ITEMS), N_USERS))
    top = trained.recommend(np.arange(N_USERS), k=3)
    np.save(tmp_path / "items.npy", trained.item_embeddings)
    for value in (np.load(tmp_path / "items.npy", mmap_mode="r"), np.asfortranarray(trained.item_embeddings)):
        trained.item_embeddings = value
        scores = trained.predict(np.repeat(np.arange(N_USERS), N_ITEMS), np.tile(np.arange(N_ITEMS), N_USERS))
        np.testing.assert_array_equal(scores, expected)
        np.testing.assert_array_equal(trained.recommend(np.arange(N_USERS), k=3)[0], top[0])


def test_an_array_assigned_to_a_model_never_fitted_is_not_a_fitted_model():
    model = FastRank(no_components=4)
    model.item_embeddings = np.zeros((N_ITEMS, 4), np.float32)
    for call in (lambda: model.recommend(0), lambda: model.fit_partial(interactions())):
        with pytest.raises(ValueError, match="state is incomplete"):
            call()


# --------------------------------------------------------------------------- save and load


def saved_contents(model, tmp_path):
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as archive:
        contents = dict(archive)
    return contents, json.loads(str(contents["metadata"]))


def write_edited(tmp_path, contents, metadata=None):
    if metadata is not None:
        contents = dict(contents, metadata=np.array(json.dumps(metadata)))
    path = tmp_path / "edited.npz"
    np.savez(path, **contents)
    return path


@pytest.mark.parametrize(
    "key, value",
    [
        ("n_users", float("inf")),
        ("n_users", -5),
        ("n_users", "5"),
        ("n_users", 5.7),
        ("n_items", True),
        ("fitted_components", float("inf")),
        ("fitted_components", 0),
    ],
)
def test_load_rejects_impossible_counts(trained, tmp_path, key, value):
    contents, metadata = saved_contents(trained, tmp_path)
    metadata[key] = value
    with pytest.raises(ValueError, match="invalid model metadata"):
        FastRank.load(write_edited(tmp_path, contents, metadata))


@pytest.mark.parametrize("state", [-1, 2**200])
def test_load_rejects_an_impossible_generator_state(trained, tmp_path, state):
    contents, metadata = saved_contents(trained, tmp_path)
    metadata["rng_state"]["state"]["state"] = state
    with pytest.raises(ValueError, match="invalid model metadata"):
        FastRank.load(write_edited(tmp_path, contents, metadata))


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_load_rejects_non_positive_adagrad_accumulators(trained, tmp_path, value):
    contents, _ = saved_contents(trained, tmp_path)
    contents["item_embedding_acc"] = contents["item_embedding_acc"].copy()
    contents["item_embedding_acc"][2, 1] = value
    with pytest.raises(ValueError, match="item_embedding_acc holds values impossible for adagrad"):
        FastRank.load(write_edited(tmp_path, contents))


def test_load_and_load_extra_reject_a_single_array_file(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.arange(3))
    for load in (FastRank.load, FastRank.load_extra):
        with pytest.raises(ValueError, match="not an .npz archive"):
            load(path)


@pytest.mark.parametrize("extra", [[1, 2], "abc", 3])
def test_save_rejects_extra_that_is_not_a_mapping(trained, tmp_path, extra):
    with pytest.raises(TypeError, match="extra must be a dict"):
        trained.save(tmp_path / "model.npz", extra=extra)
    assert not (tmp_path / "model.npz").exists()


def test_numpy_scalar_parameters_are_saved_as_plain_numbers(tmp_path):
    model = FastRank(no_components=np.int64(4), learning_rate=np.float32(0.05), random_state=np.int64(3))
    model.fit(interactions(), epochs=1)
    model.save(tmp_path / "model.npz")
    loaded = FastRank.load(tmp_path / "model.npz")
    assert loaded.no_components == 4 and type(loaded.no_components) is int
    assert loaded.learning_rate == pytest.approx(0.05) and loaded.random_state == 3
    np.testing.assert_array_equal(loaded.predict(0, np.arange(N_ITEMS)), model.predict(0, np.arange(N_ITEMS)))


@pytest.mark.parametrize("name, value", [("no_components", -5), ("learning_rate", float("nan"))])
def test_save_refuses_parameters_set_invalid_after_fit(trained, tmp_path, name, value):
    setattr(trained, name, value)
    with pytest.raises(ValueError, match=name):
        trained.save(tmp_path / "model.npz")
    assert not (tmp_path / "model.npz").exists()


@pytest.mark.parametrize("name, value", [("learning_rate", Fraction(1, 20)), ("rho", Fraction(1, 2)),
                                         ("learning_rate", np.longdouble("0.05"))])
def test_parameters_of_any_real_type_are_saved_as_plain_numbers(tmp_path, name, value):
    """JSON cannot write a Fraction or a long double: save raised a TypeError naming neither."""
    model = FastRank(no_components=4, random_state=0, **{name: value}).fit(interactions(), epochs=1)
    model.save(tmp_path / "model.npz")
    loaded = FastRank.load(tmp_path / "model.npz")
    assert type(getattr(loaded, name)) is float and getattr(loaded, name) == float(value)


def test_save_refuses_an_extra_key_too_long_for_a_zip_member(trained, tmp_path):
    with pytest.raises(ValueError, match="too long"):  # was struct.error from the zip writer
        trained.save(tmp_path / "model.npz", extra={"k" * 70_000: np.arange(2)})
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_save_never_replaces_a_node_that_is_not_a_regular_file(trained, tmp_path):
    """save writes a temporary file and renames it over the destination: that replaced a FIFO or
    a device (`fastrank train --output /dev/null` run as root replaced /dev/null) and a symlink
    itself instead of writing to its target."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        trained.save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with pytest.raises(ValueError, match="not a regular file"):
        trained.save(tmp_path)  # a directory
    target, link = tmp_path / "target.npz", tmp_path / "link.npz"
    link.symlink_to(target)
    trained.save(link)
    assert link.is_symlink() and target.is_file()
    np.testing.assert_array_equal(FastRank.load(target).item_embeddings, trained.item_embeddings)
    assert sorted(os.listdir(tmp_path)) == ["link.npz", "pipe", "target.npz"]


@pytest.mark.parametrize("edit", [
    lambda metadata: metadata.update(fitted_schedule=["adagrad"]),
    lambda metadata: metadata.update(fitted_schedule={}),
])
def test_load_rejects_a_schedule_that_is_not_a_string(trained, tmp_path, edit):
    contents, metadata = saved_contents(trained, tmp_path)
    edit(metadata)
    with pytest.raises(ValueError, match="fitted_schedule must be a string"):  # was TypeError: unhashable
        FastRank.load(write_edited(tmp_path, contents, metadata))


def test_load_rejects_metadata_nested_too_deeply(trained, tmp_path):
    contents, _ = saved_contents(trained, tmp_path)
    contents["metadata"] = np.array("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="unreadable metadata"):  # was RecursionError
        FastRank.load(write_edited(tmp_path, contents))


# --------------------------------------------------------------------------- other entry points


@pytest.mark.parametrize("not_a_model", [None, "m", object()])
def test_evaluation_functions_need_a_fastrank_model(not_a_model):
    for function in (evaluation.precision_at_k, evaluation.auc_score, evaluation.popq_at_1,
                     evaluation.popularity_rank_correlation, evaluation.ranking_metrics):
        with pytest.raises(TypeError, match="model must be a fitted FastRank"):
            function(not_a_model, interactions())


def test_dataset_weight_beyond_the_float_range_is_a_value_error():
    dataset = Dataset()
    dataset.fit(["a"], ["x"])
    with pytest.raises(ValueError, match="weights must be finite"):
        dataset.build_interactions([("a", "x", 2**2000)])


@pytest.mark.parametrize("records, normalize, message", [
    ([("a", {"f1": 1e308}), ("a", {"f1": 1e308})], True, "weights overflow"),
    ([("a", {"f1": 1e308}), ("a", {"f1": 1e308})], False, "weights overflow"),
    ([("a", {"f1": 1e308, "f2": 1e308})], True, "sum beyond the float range"),
])
def test_dataset_weights_whose_sum_overflows_are_a_value_error(records, normalize, message):
    """Normalising divided an infinite sum away: the user's row came back all zeros, silently."""
    dataset = Dataset(user_identity_features=False)
    dataset.fit(["a", "b"], ["x"], user_features=["f1", "f2"])
    with pytest.raises(ValueError, match=message):
        dataset.build_user_features(records + [("b", {"f2": 1.0})], normalize=normalize)


def test_inverse_propensity_weights_stay_finite_for_a_large_power():
    """popularity ** -power underflowed to 0 everywhere, and the normalisation made all NaN."""
    weights = inverse_propensity_weights(interactions(), power=1100).data
    assert np.all(np.isfinite(weights))
    assert weights.mean() == pytest.approx(1.0, rel=1e-6)
    assert weights.max() > weights.min()  # the rarest items still weigh most


def test_complex_weight_column_is_refused():
    pd = pytest.importorskip("pandas")
    dataset = Dataset()
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "weight": [1 + 0j, 2j]})
    dataset.fit(frame["user"], frame["item"])
    with pytest.raises(TypeError, match="must be numeric"):
        dataset.build_interactions_from_frame(frame, "user", "item", weight_col="weight")


def test_timedelta_ids_are_refused(trained):
    with pytest.raises(TypeError, match="must be integers"):
        trained.predict(0, np.array([1, 2], dtype="timedelta64[s]"))


# --------------------------------------------------------------------------- hangs


@pytest.mark.parametrize("loss", ["warp", "warp-kos"])
def test_users_with_every_item_do_not_spend_max_sampled_draws(loss):
    """Every draw of such a user hits a positive: each of its examples drew max_sampled
    candidates in a loop Ctrl-C cannot stop (1e7 draws took 4.5 s; 2**31 - 2 is accepted).
    Run in a child process, so that a regression times out instead of hanging the suite."""
    script = textwrap.dedent(f"""
        import numpy as np, scipy.sparse as sp
        from fastrank import FastRank
        dense = np.ones((4, 6), dtype=np.float32)
        dense[3, 1:] = 0  # one user with negatives: training still has work to do
        FastRank(no_components=4, loss="{loss}", max_sampled=2**31 - 2, random_state=0).fit(
            sp.csr_matrix(dense), epochs=1)
        print("done")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr


# --------------------------------------------------------------------------- divergence


def overflowing_user_features():
    """Identity plus one feature of weight 1e30 shared by every user: finite parameters whose
    representations overflow float32."""
    return sp.csr_matrix(np.hstack([np.eye(N_USERS), np.full((N_USERS, 1), 1e30)]).astype(np.float32))


@pytest.mark.parametrize("loss", ["warp", "bpr", "warp-kos", "logistic"])
def test_scores_that_overflow_are_reported_as_divergence(loss):
    """Parameters stayed finite while every score was NaN/inf: training silently stopped and
    predict returned NaN; the kernel now reports such scores."""
    model = FastRank(no_components=4, loss=loss, random_state=0)
    with pytest.raises(ValueError, match="Training diverged: scores overflowed float32"):
        model.fit(interactions(), user_features=overflowing_user_features(), epochs=2)


@pytest.mark.parametrize("loss, params", [
    ("warp", dict(learning_rate=1e6)),
    ("warp-kos", dict(learning_rate=1e6)),
    ("bpr", dict(learning_rate=1e6)),
    ("warp-kos", dict(learning_schedule="sgd", learning_rate=1e3)),
])
def test_huge_steps_are_reported_as_divergence(loss, params):
    with pytest.raises(ValueError, match="Training diverged"):
        FastRank(no_components=4, loss=loss, random_state=0, **params).fit(interactions(), epochs=5)


def test_a_diverged_model_refuses_every_use_until_fit_starts_again(tmp_path):
    model = FastRank(no_components=4, loss="bpr", learning_rate=1e10, random_state=0)
    with pytest.raises(ValueError, match="Training diverged"):
        model.fit(interactions(), epochs=3)
    calls = [
        lambda: model.predict(0, np.arange(N_ITEMS)),
        lambda: model.recommend([0], k=3),
        lambda: evaluation.auc_score(model, interactions()),
        lambda: model.fit_partial(interactions()),
        lambda: model.save(tmp_path / "model.npz"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="training diverged: call fit to start again"):
            call()
    assert not (tmp_path / "model.npz").exists()
    model.set_params(learning_rate=0.05).fit(interactions(), epochs=2)
    assert np.all(np.isfinite(model.predict(0, np.arange(N_ITEMS))))


@pytest.mark.parametrize("array, value", [("item_embeddings", np.nan), ("item_biases", np.inf),
                                          ("user_embeddings", -np.inf)])
def test_non_finite_representations_are_refused_by_ranking(trained, array, value, tmp_path):
    """NaN scores have no rank: metrics came out above 1 (precision 2, AUC 1.5)."""
    replaced = getattr(trained, array).copy()
    replaced.flat[1] = value
    setattr(trained, array, replaced)
    calls = [
        lambda: trained.predict_rank(interactions()),
        lambda: evaluation.precision_at_k(trained, interactions()),
        lambda: evaluation.auc_score(trained, interactions()),
        lambda: trained.recommend([0, 1]),
    ]
    if array.endswith("embeddings"):  # similarity reads the embeddings alone
        calls.append(lambda: getattr(trained, "similar_" + array.split("_")[0] + "s")(0))
    for call in calls:
        with pytest.raises(ValueError, match="representations contain NaN or infinite values"):
            call()
    # predict and the metrics built on it (which returned NaN scores and numbers computed from
    # them), and save (which wrote a file that load refused)
    for call in (lambda: trained.predict(0, np.arange(N_ITEMS)),
                 lambda: evaluation.popq_at_1(trained, interactions()),
                 lambda: evaluation.popularity_rank_correlation(trained, interactions())):
        with pytest.raises(ValueError, match="scores contain NaN or infinite values"):
            call()
    with pytest.raises(ValueError, match=f"cannot save this model: array {array} contains non-finite"):
        trained.save(tmp_path / "model.npz")
    assert not (tmp_path / "model.npz").exists()


@pytest.mark.parametrize("key, edit, problem", [
    ("item_embeddings", lambda a: a.astype(np.float64), "must be a float32 numpy array"),
    ("item_embeddings", lambda a: a[:, 0].copy(), "must be 2-D"),
    ("user_biases", lambda a: a[:2], r"user_biases has shape \(2,\)"),
    ("item_bias_acc", lambda a: a[:3], r"item_bias_acc has shape \(3,\)"),
])
def test_load_checks_array_shapes_like_arrays_set_by_hand(trained, tmp_path, key, edit, problem):
    contents, _ = saved_contents(trained, tmp_path)
    contents[key] = edit(contents[key])
    with pytest.raises(ValueError, match=problem):
        FastRank.load(write_edited(tmp_path, contents))


# --------------------------------------------------------------------------- threads and re-entry


def test_features_whose_conversion_refits_the_model_are_refused_by_the_kernel():
    """predict read the model's column count, then converted the features, whose __array__
    re-fitted the model to one item: the kernel read row 399,999 of a 1-row array (a segfault;
    garbage scores with fewer columns)."""
    n_features = 1000
    model = FastRank(no_components=4, random_state=0)
    model.fit(sp.csr_matrix(np.ones((2, 2), np.float32)), epochs=0,
              item_features=sp.csr_matrix(([1.0, 1.0], ([0, 1], [0, n_features - 1])), shape=(2, n_features)))

    class RefittingFeatures:
        def __array__(self, dtype=None, copy=None):
            model.fit(sp.csr_matrix(np.ones((2, 1), np.float32)), epochs=0)  # now 1 item feature
            dense = np.zeros((2, n_features), np.float32)
            dense[:, n_features - 1] = 1
            return dense

    with pytest.raises(ValueError, match="item feature id 999 is beyond the model's 1 item feature rows"):
        model.predict([0, 1], [0, 1], item_features=RefittingFeatures())


def test_kernels_refuse_arrays_that_do_not_fit_the_call(trained):
    """Another thread may replace a model's arrays after the estimator checked them: the kernels
    check what they are given (fit_partial's 200,000 items once reached a 1-row model, and
    adagrad ran over an sgd model's missing accumulators)."""
    from fastrank import _ranking

    scores = np.empty(2, dtype=np.float32)
    with pytest.raises(ValueError, match="item id 99 is beyond the 7 item rows"):
        _ranking.predict_pairs(np.array([0, 1], np.int32), np.array([0, 99], np.int32), None, trained.user_embeddings,
                               trained.user_biases, None, trained.item_embeddings, trained.item_biases, scores, 1)
    with pytest.raises(ValueError, match="item biases and embeddings have different numbers of rows"):
        _ranking.predict_pairs(np.array([0], np.int32), np.array([0], np.int32), None, trained.user_embeddings,
                               trained.user_biases, None, trained.item_embeddings, trained.item_biases[:3],
                               scores[:1], 1)
    model = FastRank(no_components=4, loss="warp", random_state=0)
    calls = []
    original = _sgd.run_epoch

    def record(**arguments):
        calls.append(arguments)
        return original(**arguments)

    import fastrank._estimator as estimator_module
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(estimator_module._sgd, "run_epoch", record)
        model.fit(interactions(), epochs=1)
    arguments = calls[0]
    for change, message in [
        (dict(n_items=10**6), "too few for"),
        (dict(schedule=_sgd.SCHEDULES["adadelta"]), "optimizer state does not match"),
        (dict(no_components=8), "no_components=8"),
        (dict(max_sampled=0), "max_sampled must be >= 1"),
        (dict(item_parameters=(None,) * 6), "item embeddings"),
    ]:
        with pytest.raises(ValueError, match=message):
            original(**dict(arguments, **change))


def test_fit_partial_and_save_wait_for_a_training_call_on_the_same_model(trained, tmp_path):
    """fit, fit_partial and save of one model run one at a time (fit_partial during fit gave the
    kernel arrays replaced half-way; save during fit wrote files missing arrays)."""
    import threading

    from fastrank._estimator import _training_lock

    started, finished = threading.Event(), threading.Event()

    def save():
        started.set()
        trained.save(tmp_path / "model.npz")
        finished.set()

    with _training_lock(trained):  # as a fit running in another thread holds it
        worker = threading.Thread(target=save)
        worker.start()
        assert started.wait(10)
        assert not finished.wait(0.5)  # save waits for the training call
    assert finished.wait(30)
    worker.join()
    FastRank.load(tmp_path / "model.npz")


@pytest.mark.skipif(not hasattr(os, "fork") or not _sgd.openmp_enabled(), reason="needs fork and OpenMP")
def test_threads_in_a_child_forked_after_threads_ran_fall_back_to_one():
    """libgomp cannot start threads in a child forked after its pool ran: a multiprocessing Pool
    with the 'fork' method hung at its first parallel call. Run in a child process, with a
    timeout, so that a regression fails instead of hanging the suite."""
    script = textwrap.dedent("""
        import multiprocessing, warnings
        import numpy as np, scipy.sparse as sp
        from fastrank import FastRank

        data = sp.random(200, 100, density=0.05, format="csr", random_state=0)

        def job(seed):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                FastRank(loss="warp", random_state=seed).fit(data, epochs=1, num_threads=2)
            return any("forked after fastrank ran threads" in str(w.message) for w in caught)

        if __name__ == "__main__":
            FastRank(loss="warp", random_state=0).fit(data, epochs=1, num_threads=2)
            with multiprocessing.get_context("fork").Pool(2) as pool:
                print(pool.map(job, [1, 2]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[True, True]", result.stderr
