"""The FastRank estimator contract: parameters, training state, prediction, persistence."""

import builtins
import copy
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

import fastrank
from fastrank import FastRank

LOSSES = ["warp", "bpr", "logistic", "warp-kos"]
ARRAYS = ["user_embeddings", "user_biases", "item_embeddings", "item_biases"]
STATE_ARRAYS = ARRAYS + [
    "_user_embedding_acc", "_user_bias_acc", "_item_embedding_acc", "_item_bias_acc",
    "_user_embedding_momentum", "_user_bias_momentum", "_item_embedding_momentum", "_item_bias_momentum",
]


def random_interactions(n_users=30, n_items=20, density=0.2, seed=0, negatives=False):
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < density).astype(np.float32)
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0  # every user has a positive
    if negatives:
        dense[(rng.random((n_users, n_items)) < 0.1) & (dense == 0)] = -1.0
    return sp.coo_matrix(dense)


def captured_epochs(monkeypatch, run=True):
    """Record the keyword arguments of every ``_sgd.run_epoch`` call (in the returned list);
    the epochs still run unless ``run`` is false (then each call reports no overflow)."""
    from fastrank import _sgd

    calls = []
    real_epoch = _sgd.run_epoch

    def capture(**kwargs):
        calls.append(kwargs)
        return real_epoch(**kwargs) if run else False

    monkeypatch.setattr(_sgd, "run_epoch", capture)
    return calls


def random_features(n_rows, n_features, seed=0):
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_rows, n_features)) < 0.3) * rng.random((n_rows, n_features))
    dense[np.arange(n_rows), rng.integers(0, n_features, n_rows)] += 1.0
    return sp.csr_matrix(dense.astype(np.float32))


def assert_same_state(first, second):
    for name in STATE_ARRAYS:
        a, b = getattr(first, name), getattr(second, name)
        if a is None or b is None:
            assert a is None and b is None, name
        else:
            assert a.dtype == b.dtype and np.array_equal(a, b), name


# ---------------------------------------------------------------- scikit-learn contract

def test_init_only_stores_parameters():
    model = FastRank(loss="not-a-loss", no_components=-3, random_state="x")
    assert model.loss == "not-a-loss" and model.no_components == -3 and model.random_state == "x"
    assert getattr(model, "item_embeddings", None) is None


def test_default_parameters_match_lightfm():
    expected = dict(no_components=10, k=5, n=10, learning_schedule="adagrad", loss="logistic",
                    learning_rate=0.05, rho=0.95, epsilon=1e-6, item_alpha=0.0, user_alpha=0.0,
                    max_sampled=10, random_state=None)
    params = FastRank().get_params()
    for name, value in expected.items():
        assert params[name] == value, name


def test_get_set_params_and_clone():
    sklearn_base = pytest.importorskip("sklearn.base")
    model = FastRank(no_components=7, loss="warp", random_state=3)
    assert model.set_params(learning_rate=0.1) is model
    assert model.get_params()["learning_rate"] == 0.1
    clone = sklearn_base.clone(model)
    assert clone is not model and clone.get_params() == model.get_params()
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(not_a_parameter=1)


def test_clone_of_fitted_model_is_unfitted():
    sklearn_base = pytest.importorskip("sklearn.base")
    model = FastRank(random_state=0).fit(random_interactions())
    clone = sklearn_base.clone(model)
    with pytest.raises(ValueError, match="not fitted"):
        clone.predict(0, [0])
    # as in LightFM, the parameter attributes are None before fit, and __init__ sets none of them
    for name in ("user_embeddings", "user_biases", "item_embeddings", "item_biases"):
        assert getattr(clone, name) is None and getattr(FastRank(), name) is None
        assert name not in vars(FastRank()) and getattr(model, name) is not None


def test_repr_shows_changed_parameters():
    assert repr(FastRank(loss="warp")) == "FastRank(loss='warp')"


@pytest.mark.parametrize(
    "random_state",
    [None, 0, np.random.RandomState(0), np.random.default_rng(0)],
    ids=["none", "int", "RandomState", "Generator"],
)
def test_random_state_kinds(random_state):
    model = FastRank(loss="warp", random_state=random_state).fit(random_interactions(), epochs=2)
    assert np.all(np.isfinite(model.item_embeddings))


def test_random_state_objects_are_resolved_in_fit():
    first = FastRank(loss="bpr", random_state=np.random.RandomState(5)).fit(random_interactions())
    second = FastRank(loss="bpr", random_state=np.random.RandomState(5)).fit(random_interactions())
    assert_same_state(first, second)


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("schedule", ["adagrad", "adadelta", "sgd"])
@pytest.mark.parametrize("loss", LOSSES)
def test_same_seed_one_thread_is_bit_identical(loss, schedule):
    interactions = random_interactions(negatives=True)
    user_features = random_features(30, 8)
    runs = [
        FastRank(loss=loss, learning_schedule=schedule, random_state=11).fit(
            interactions, user_features=user_features, epochs=3
        )
        for _ in range(2)
    ]
    assert_same_state(*runs)
    different = FastRank(loss=loss, learning_schedule=schedule, random_state=12).fit(
        interactions, user_features=user_features, epochs=3
    )
    assert not np.array_equal(different.item_embeddings, runs[0].item_embeddings)


@pytest.mark.parametrize("features", [False, True], ids=["identity", "features"])
@pytest.mark.parametrize("loss", LOSSES)
def test_prefetching_changes_no_result(loss, features):
    """Software prefetching (skipped for small models, forced on for the other tests by
    conftest) only moves data into caches: with and without it, training is bit-identical."""
    from fastrank import _sgd

    interactions = random_interactions(negatives=True)
    feature_matrices = dict(user_features=random_features(30, 8), item_features=random_features(20, 6, seed=1))

    def train(threshold):
        previous = _sgd.set_prefetch_threshold(threshold)
        try:
            return FastRank(loss=loss, max_sampled=30, random_state=4).fit(
                interactions, epochs=3, num_threads=1, **(feature_matrices if features else {}))
        finally:
            _sgd.set_prefetch_threshold(previous)

    assert_same_state(train(0), train(2**62))
    previous = _sgd.set_prefetch_threshold(-1)  # -1: back to the default
    assert _sgd.set_prefetch_threshold(previous) == _sgd.DEFAULT_PREFETCH_ABOVE_BYTES == 2 * 1024 * 1024


@pytest.mark.parametrize("schedule", ["adagrad", "adadelta", "sgd"])
@pytest.mark.parametrize("features", [False, True], ids=["identity", "features"])
@pytest.mark.parametrize("loss", LOSSES)
def test_small_model_thread_paths_change_no_result(monkeypatch, loss, features, schedule):
    """Several threads on a small model prefetch the next example's rows (and BPR's first draw,
    peeked, not drawn) and, on the identity path, give each item's bias and its optimizer state a
    cache line of their own for the epoch: one thread given every example through a 2-thread
    call trains exactly as a 1-thread call does (every bias, accumulator and momentum back in
    place)."""
    from fastrank import _sgd

    feature_matrices = dict(user_features=random_features(30, 8), item_features=random_features(20, 6, seed=1))
    interactions = random_interactions(negatives=loss == "logistic")
    calls = captured_epochs(monkeypatch)
    kwargs = feature_matrices if features else {}
    start = FastRank(loss=loss, learning_schedule=schedule, random_state=0).fit(interactions, epochs=1, **kwargs)
    monkeypatch.undo()
    n = calls[0]["example_users"].shape[0]
    # a small model: no staged prefetch; at 2 threads the next-row prefetch and padded item biases
    previous = _sgd.set_prefetch_threshold(2**62)
    try:
        trained = []
        for num_threads, bounds in ((1, [0, n]), (2, [0, n, n])):
            model = copy.deepcopy(start)
            arguments = dict(calls[0], num_threads=num_threads, block_bounds=np.array(bounds, dtype=np.int64),
                             user_parameters=model._side_parameters("user"),
                             item_parameters=model._side_parameters("item"))
            _sgd.run_epoch(**arguments)
            trained.append(model)
    finally:
        _sgd.set_prefetch_threshold(previous)
    assert_same_state(*trained)
    assert not np.array_equal(trained[0].item_embeddings, start.item_embeddings)


@pytest.mark.parametrize("prefetch", [False, True], ids=["cached", "prefetching"])
@pytest.mark.parametrize("sizes, num_threads", [((3000, 0), 2), ((0, 3000), 2), ((1, 2999), 2),
                                                ((900, 1700, 400), 2), ((1500, 1500), 3)], ids=str)
def test_threads_claiming_each_others_blocks_train_every_example_once(monkeypatch, sizes, num_threads, prefetch):
    """Without strata the threads claim runs of examples from the blocks, and one done with its
    own blocks takes the rest of the others'. On examples that share no row (a logistic epoch
    over one interaction per user and per item) the threads cannot interfere, so any uneven cut
    of the examples (empty blocks, more blocks than threads, more threads than blocks) must
    train exactly what one thread does: an example skipped or trained twice would show in its
    rows."""
    from fastrank import _sgd

    n = sum(sizes)
    rng = np.random.default_rng(3)
    interactions = sp.coo_matrix(
        (np.where(rng.random(n) < 0.5, 1.0, -1.0).astype(np.float32), (np.arange(n), rng.permutation(n))),
        shape=(n, n))
    calls = captured_epochs(monkeypatch)
    start = FastRank(loss="logistic", no_components=8, random_state=0).fit(interactions, epochs=1, num_threads=1)
    monkeypatch.undo()
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    previous = _sgd.set_prefetch_threshold(0 if prefetch else 2**62)
    try:
        trained = []
        for threads, block_bounds in ((1, np.array([0, n], dtype=np.int64)), (num_threads, bounds)):
            model = copy.deepcopy(start)
            _sgd.run_epoch(**dict(calls[0], num_threads=threads, block_bounds=block_bounds,
                                  user_parameters=model._side_parameters("user"),
                                  item_parameters=model._side_parameters("item")))
            trained.append(model)
    finally:
        _sgd.set_prefetch_threshold(previous)
    assert_same_state(*trained)
    assert not np.array_equal(trained[0].user_embeddings, start.user_embeddings)


def offsets_from_cache_lines(model):
    return {name: getattr(model, name).ctypes.data % 64 for name in STATE_ARRAYS if getattr(model, name) is not None}


@pytest.mark.parametrize("schedule", ["adagrad", "adadelta", "sgd"])
def test_parameter_arrays_start_on_cache_lines(tmp_path, schedule):
    """A row of 64 float32 components is four cache lines only if its array starts on one (a
    misaligned start measured 5-16% slower epochs): fit, growth, load, unpickling and arrays set by
    hand all reach the kernels aligned."""
    model = FastRank(loss="warp", learning_schedule=schedule, random_state=0).fit(random_interactions(), epochs=1)
    assert set(offsets_from_cache_lines(model).values()) == {0}
    model.fit_partial(random_interactions(n_users=35, n_items=26, seed=1), epochs=1)  # grows both sides
    assert model.user_embeddings.shape[0] == 35 and set(offsets_from_cache_lines(model).values()) == {0}
    model.save(tmp_path / "model.npz")
    assert set(offsets_from_cache_lines(FastRank.load(tmp_path / "model.npz")).values()) == {0}
    for copy_ in (FastRank.load(tmp_path / "model.npz"), pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        # aligned as soon as it exists: an array taken from it keeps following the model
        assert set(offsets_from_cache_lines(copy_).values()) == {0}
        held = copy_.item_embeddings
        before = copy_.item_embeddings.copy()
        copy_.fit_partial(random_interactions(n_users=35, n_items=26, seed=1), epochs=0)
        assert np.array_equal(copy_.item_embeddings, before)
        copy_.fit_partial(random_interactions(n_users=35, n_items=26, seed=1), epochs=1)
        assert set(offsets_from_cache_lines(copy_).values()) == {0}
        assert held is copy_.item_embeddings and not np.array_equal(held, before)
    buffer = np.zeros(model.item_embeddings.size + 4, dtype=np.float32)
    shifted = buffer[1:1 + model.item_embeddings.size].reshape(model.item_embeddings.shape)
    shifted[...] = model.item_embeddings
    model.item_embeddings = shifted  # 4 bytes past whatever alignment the buffer has
    model.fit_partial(random_interactions(n_users=35, n_items=26, seed=1), epochs=1)
    assert set(offsets_from_cache_lines(model).values()) == {0}


@pytest.mark.parametrize("shape", [0, 5, (3, 7), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float64, np.uint8])
def test_aligned_arrays(shape, dtype):
    from fastrank._validation import aligned_empty, cache_aligned

    array = aligned_empty(shape, dtype)
    assert array.shape == ((shape,) if isinstance(shape, int) else shape) and array.dtype == dtype
    assert (array.size == 0 or array.ctypes.data % 64 == 0) and array.flags.c_contiguous and array.flags.writeable
    array[...] = np.arange(array.size, dtype=dtype).reshape(array.shape)
    assert cache_aligned(array) is array
    unaligned = np.zeros(array.size + 1, dtype=dtype)[1:].reshape(array.shape)
    unaligned[...] = array
    fixed = cache_aligned(unaligned)
    assert (array.size == 0 or fixed.ctypes.data % 64 == 0) and np.array_equal(fixed, array) and fixed.dtype == dtype
    transposed = cache_aligned(np.asfortranarray(np.ones((3, 5), dtype)))
    assert transposed.flags.c_contiguous and transposed.ctypes.data % 64 == 0


def test_fit_resets_but_fit_partial_continues():
    interactions = random_interactions()
    model = FastRank(loss="warp", random_state=0)
    once = copy.deepcopy(model.fit(interactions, epochs=1))
    model.fit(interactions, epochs=1)
    assert_same_state(once, model)
    model.fit_partial(interactions, epochs=1)
    assert not np.array_equal(model.item_embeddings, once.item_embeddings)


def test_two_fit_partial_calls_equal_one_fit_with_two_epochs():
    interactions = random_interactions()
    two_calls = FastRank(loss="warp", random_state=0)
    two_calls.fit_partial(interactions, epochs=1).fit_partial(interactions, epochs=1)
    one_call = FastRank(loss="warp", random_state=0).fit(interactions, epochs=2)
    assert_same_state(two_calls, one_call)


def test_partial_fit_is_an_alias():
    assert FastRank.partial_fit is FastRank.fit_partial


def test_explicit_identity_features_equal_no_features():
    interactions = random_interactions()
    plain = FastRank(loss="warp", random_state=0).fit(interactions, epochs=2)
    explicit = FastRank(loss="warp", random_state=0).fit(
        interactions, user_features=sp.identity(30, format="coo"), item_features=sp.identity(20), epochs=2
    )
    assert_same_state(plain, explicit)


@pytest.mark.parametrize("schedule", ["adagrad", "sgd"])
@pytest.mark.parametrize("loss", ["logistic", "bpr", "warp"])
def test_features_path_learns_the_same_as_identity_in_another_feature_order(loss, schedule):
    """A permutation matrix as features must give the identity model's scores (general path; for
    BPR and WARP the identity model steps its three rows in one pass, the feature path row by row)."""
    interactions = random_interactions()
    permutation = np.random.default_rng(1).permutation(20)
    item_features = sp.csr_matrix((np.ones(20, np.float32), (np.arange(20), permutation)), shape=(20, 20))
    model = FastRank(loss=loss, learning_schedule=schedule, random_state=0).fit(
        interactions, item_features=item_features, epochs=0)
    identity = copy.deepcopy(model)
    identity._item_rows_are_features = False  # made an identity model by hand below
    identity.item_embeddings = np.ascontiguousarray(model.item_embeddings[permutation])
    identity.item_biases = np.ascontiguousarray(model.item_biases[permutation])
    if schedule == "adagrad":
        identity._item_embedding_acc = np.ascontiguousarray(model._item_embedding_acc[permutation])
        identity._item_bias_acc = np.ascontiguousarray(model._item_bias_acc[permutation])
    model.fit_partial(interactions, item_features=item_features, epochs=2)
    identity.fit_partial(interactions, epochs=2)
    users = np.repeat(np.arange(30), 20)
    items = np.tile(np.arange(20), 30)
    np.testing.assert_allclose(
        model.predict(users, items, item_features=item_features), identity.predict(users, items), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("schedule", ["adagrad", "adadelta", "sgd"])
def test_fit_partial_grows_users_items_and_features(schedule):
    small = random_interactions(n_users=30, n_items=20)
    model = FastRank(loss="warp", learning_schedule=schedule, no_components=6, random_state=0)
    model.fit(small, user_features=random_features(30, 8), epochs=2)
    before = copy.deepcopy(model)

    big = random_interactions(n_users=40, n_items=25, seed=1)
    big_user_features = sp.hstack([random_features(40, 8)[:, :8], random_features(40, 3, seed=2)]).tocsr()
    model.fit_partial(big, user_features=big_user_features, epochs=0)
    assert model.user_embeddings.shape == (11, 6) and model.item_embeddings.shape == (25, 6)
    for name in STATE_ARRAYS:
        old, new = getattr(before, name), getattr(model, name)
        if old is None:
            continue
        assert np.array_equal(new[: old.shape[0]], old), name  # existing rows kept exactly
        assert new.dtype == np.float32 and new.flags.c_contiguous
    fresh = FastRank(loss="warp", learning_schedule=schedule, no_components=6, random_state=0)
    fresh.fit(small, epochs=0)
    for name in STATE_ARRAYS[4:]:
        new_rows = getattr(model, name)
        if new_rows is None:
            continue
        assert np.all(new_rows[-3:] == getattr(fresh, name)[0]), name  # accumulators start like fresh rows
    assert np.all(model.item_biases[20:] == 0)
    assert np.all(np.abs(model.item_embeddings[20:]) <= 0.5 / 6)
    model.fit_partial(big, user_features=big_user_features, epochs=2)
    assert np.all(np.isfinite(model.predict(39, np.arange(25), user_features=big_user_features)))


def test_new_rows_added_by_fit_partial_learn():
    """After growing, the new rows train: predictions for a new user depend on its data."""
    model = FastRank(loss="warp", random_state=0).fit(random_interactions(30, 20), epochs=3)
    bigger = random_interactions(35, 20, seed=3)
    model.fit_partial(bigger, epochs=10)
    seen = bigger.tocsr()[34].indices
    scores = model.predict(34, np.arange(20))
    assert scores[seen].mean() > np.delete(scores, seen).mean()


@pytest.mark.parametrize("loss", LOSSES)
def test_training_improves_ranking_of_training_data(loss):
    interactions = random_interactions(n_users=40, n_items=30, density=0.15)
    model = FastRank(loss=loss, no_components=8, random_state=0).fit(interactions, epochs=0)
    before = model.predict_rank(interactions).data.mean()
    model.fit_partial(interactions, epochs=30)
    assert model.predict_rank(interactions).data.mean() < 0.7 * before


def test_sample_weight_changes_training_and_zero_weight_freezes_it():
    interactions = random_interactions()
    weights = interactions.copy()
    weights.data = np.full(weights.nnz, 2.0, np.float32)
    base = FastRank(loss="bpr", random_state=0).fit(interactions, epochs=1)
    weighted = FastRank(loss="bpr", random_state=0).fit(interactions, sample_weight=weights, epochs=1)
    assert not np.array_equal(base.item_embeddings, weighted.item_embeddings)
    weights.data[:] = 0.0
    untouched = FastRank(loss="warp", random_state=0).fit(interactions, epochs=0)
    frozen = FastRank(loss="warp", random_state=0).fit(interactions, sample_weight=weights, epochs=1)
    np.testing.assert_array_equal(untouched.item_embeddings, frozen.item_embeddings)


def test_divergence_raises_a_helpful_error():
    model = FastRank(loss="logistic", learning_rate=1e38, random_state=0)
    with pytest.raises(ValueError, match="learning_rate"):
        model.fit(random_interactions(negatives=True), epochs=5)


@pytest.mark.parametrize("name", ["user_embeddings", "user_biases", "item_embeddings", "item_biases"])
def test_divergence_check_names_the_array(name):
    model = FastRank(random_state=0).fit(random_interactions(), epochs=1)
    model._check_finite(num_threads=2)
    getattr(model, name).reshape(-1)[-1] = np.inf
    with pytest.raises(ValueError, match=f"diverged: {name} contains"):
        model._check_finite(num_threads=2)


@pytest.mark.parametrize("num_threads", [1, 3])
def test_first_nonfinite_finds_nan_and_inf_anywhere(num_threads):
    """The check runs in chunks (FINITE_CHECK_TASK_FLOATS floats) on several threads: a bad value
    at either end of any chunk is found; NaN payloads and both infinities count, the largest
    finite float does not."""
    from fastrank import _sgd

    chunk = _sgd.FINITE_CHECK_TASK_FLOATS
    values = np.random.default_rng(0).standard_normal(3 * chunk + 5).astype(np.float32)
    values[100] = np.finfo(np.float32).max
    values[101] = -np.finfo(np.float32).max
    values[102] = np.finfo(np.float32).tiny / 2  # subnormal
    assert _sgd.first_nonfinite((values,), num_threads) == -1
    assert _sgd.first_nonfinite((np.empty(0, dtype=np.float32),), num_threads) == -1
    assert _sgd.first_nonfinite((), num_threads) == -1
    quiet_nan_with_payload = np.array([0x7FC01234], dtype=np.uint32).view(np.float32)[0]
    for position in (0, chunk - 1, chunk, 2 * chunk - 1, 2 * chunk + 1, len(values) - 1):
        for bad in (np.nan, np.inf, -np.inf, quiet_nan_with_payload):
            broken = values.copy()
            broken[position] = bad
            assert _sgd.first_nonfinite((broken,), num_threads) == 0, (position, bad)
    with pytest.raises(ValueError, match="num_threads"):
        _sgd.first_nonfinite((values,), 0)


@pytest.mark.parametrize("num_threads", [1, 2])
def test_first_nonfinite_names_the_first_bad_array(num_threads):
    from fastrank import _sgd

    arrays = [np.zeros((70000, 3), np.float32), np.zeros(5, np.float32), np.zeros((2, 65536), np.float32)]
    assert _sgd.first_nonfinite(tuple(arrays), num_threads) == -1
    arrays[2][1, -1] = np.nan
    assert _sgd.first_nonfinite(tuple(arrays), num_threads) == 2
    arrays[0][69999, 2] = -np.inf
    assert _sgd.first_nonfinite(tuple(arrays), num_threads) == 0
    for bad in (np.zeros(4), np.zeros((4, 4), np.float32).T, None):
        with pytest.raises(ValueError, match="C-contiguous float32"):
            _sgd.first_nonfinite((arrays[1], bad), num_threads)


def test_verbose_prints_a_line_per_epoch_without_tqdm(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("tqdm hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    FastRank(random_state=0).fit(random_interactions(), epochs=3, verbose=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["Epoch 1/3 done", "Epoch 2/3 done", "Epoch 3/3 done"]


def test_verbose_uses_tqdm_when_installed(capsys):
    pytest.importorskip("tqdm")
    FastRank(random_state=0).fit(random_interactions(), epochs=2, verbose=True)
    assert "Epoch" in capsys.readouterr().err


def test_openmp_flag_and_fallback_warning(monkeypatch):
    assert isinstance(fastrank.openmp_enabled(), bool)
    monkeypatch.setattr(fastrank._estimator._sgd, "openmp_enabled", lambda: False)
    with pytest.warns(RuntimeWarning, match="without OpenMP"):
        model = FastRank(random_state=0).fit(random_interactions(), num_threads=2)
    # one block of examples, so the run is the one-thread run, bit for bit
    single = FastRank(random_state=0).fit(random_interactions(), num_threads=1)
    np.testing.assert_array_equal(model.item_embeddings, single.item_embeddings)
    np.testing.assert_array_equal(model.user_embeddings, single.user_embeddings)


# ---------------------------------------------------------------- prediction

def manual_scores(model, users, items, user_features=None, item_features=None):
    ub, ue = model.user_biases, model.user_embeddings
    ib, ie = model.item_biases, model.item_embeddings
    if user_features is not None:
        ub, ue = user_features @ ub, user_features @ ue
    if item_features is not None:
        ib, ie = item_features @ ib, item_features @ ie
    return np.sum(ue[users] * ie[items], axis=1) + ub[users] + ib[items]


def test_predict_matches_representations_with_and_without_features():
    interactions = random_interactions()
    user_features, item_features = random_features(30, 8), random_features(20, 5, seed=1)
    model = FastRank(loss="warp", random_state=0).fit(
        interactions, user_features=user_features, item_features=item_features, epochs=3
    )
    users = np.array([0, 5, 29, 29])
    items = np.array([19, 0, 3, 3])
    scores = model.predict(users, items, item_features=item_features, user_features=user_features)
    assert scores.dtype == np.float32 and scores.shape == (4,)
    np.testing.assert_allclose(scores, manual_scores(model, users, items, user_features, item_features),
                               rtol=1e-5, atol=1e-6)
    biases, embeddings = model.get_user_representations(user_features)
    np.testing.assert_allclose(embeddings, user_features @ model.user_embeddings, rtol=1e-6)
    np.testing.assert_allclose(biases, user_features @ model.user_biases, rtol=1e-6, atol=1e-7)
    biases, embeddings = model.get_item_representations()
    np.testing.assert_array_equal(embeddings, model.item_embeddings)
    assert embeddings.dtype == np.float32 and biases.dtype == np.float32


def test_predict_with_features_few_pairs_equal_the_same_pairs_in_a_large_call():
    """A call with few pairs packs only the feature rows it names (ids renumbered into them); a
    large call packs every row: the scores of the same pairs must be identical."""
    interactions = random_interactions()
    user_features, item_features = random_features(30, 8), random_features(20, 5, seed=1)
    model = FastRank(loss="warp", random_state=0).fit(
        interactions, user_features=user_features, item_features=item_features, epochs=3
    )
    rng = np.random.default_rng(3)
    users, items = rng.integers(0, 30, 400), rng.integers(0, 20, 400)
    every = model.predict(users, items, item_features=item_features, user_features=user_features)
    few = [7, 3, 7, 0]  # unsorted, one pair repeated
    scores = model.predict(users[few], items[few], item_features=item_features, user_features=user_features)
    np.testing.assert_array_equal(scores, every[few])
    np.testing.assert_allclose(every, manual_scores(model, users, items, user_features, item_features),
                               rtol=1e-5, atol=1e-6)


def test_predict_broadcasts_an_int_user_and_threads_agree():
    model = FastRank(loss="bpr", random_state=0).fit(random_interactions(), epochs=2)
    items = np.arange(20)
    one = model.predict(3, items)
    np.testing.assert_array_equal(one, model.predict(np.full(20, 3), items))
    np.testing.assert_array_equal(one, model.predict(np.int64(3), items, num_threads=2))
    np.testing.assert_allclose(one, manual_scores(model, np.full(20, 3), items), rtol=1e-5, atol=1e-6)


def brute_force_ranks(model, test, train):
    test, train = test.tocsr(), train.tocsr()
    expected = []
    for user in range(test.shape[0]):
        scores = model.predict(user, np.arange(test.shape[1])).astype(np.float64)
        candidates = np.ones(test.shape[1], bool)
        candidates[train[user].indices] = False
        ids = np.arange(test.shape[1])
        for item in test[user].indices:
            before = (scores > scores[item]) | ((scores == scores[item]) & (ids < item))
            expected.append(np.sum(before & candidates))
    return np.array(expected, dtype=np.float32)


@pytest.mark.parametrize("num_threads", [1, 2])
def test_predict_rank_matches_brute_force(num_threads):
    interactions = random_interactions(density=0.3).tocsr()
    rng = np.random.default_rng(0)
    in_test = rng.random(interactions.nnz) < 0.3
    test = interactions.copy()
    test.data = in_test.astype(np.float32)
    test.eliminate_zeros()
    train = interactions - test
    train.eliminate_zeros()
    model = FastRank(loss="warp", random_state=0).fit(train, epochs=3)
    ranks = model.predict_rank(test, train, num_threads=num_threads)
    assert ranks.dtype == np.float32 and ranks.shape == test.shape
    assert np.array_equal(ranks.indptr, test.indptr) and np.array_equal(ranks.indices, test.indices)
    np.testing.assert_array_equal(ranks.data, brute_force_ranks(model, test, train))
    with pytest.raises(ValueError, match="share"):
        model.predict_rank(interactions, train)
    model.predict_rank(interactions, train, check_intersections=False)


def test_ties_go_to_the_lower_item_id():
    model = FastRank(no_components=2, random_state=0).fit(random_interactions(n_users=2, n_items=4), epochs=0)
    model.item_embeddings[:] = 0
    model.item_biases[:] = np.array([1.0, 1.0, 0.0, 2.0], np.float32)
    test = sp.csr_matrix(np.array([[1, 1, 1, 1], [0, 0, 0, 0]], np.float32))
    ranks = model.predict_rank(test)
    np.testing.assert_array_equal(ranks.data, [1, 2, 3, 0])
    # a constant model ranks items by id: no credit for ties
    model.item_biases[:] = 0
    np.testing.assert_array_equal(model.predict_rank(test).data, [0, 1, 2, 3])


# ---------------------------------------------------------------- persistence

@pytest.mark.parametrize("schedule", ["adagrad", "adadelta", "sgd"])
def test_save_load_round_trip_is_exact(tmp_path, schedule):
    interactions = random_interactions()
    item_features = random_features(20, 6)
    model = FastRank(loss="warp-kos", learning_schedule=schedule, no_components=5, random_state=4)
    model.fit(interactions, item_features=item_features, epochs=2)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = FastRank.load(path)
    assert loaded.get_params() == model.get_params()
    assert_same_state(model, loaded)
    users, items = np.repeat(np.arange(30), 20), np.tile(np.arange(20), 30)
    np.testing.assert_array_equal(
        loaded.predict(users, items, item_features=item_features),
        model.predict(users, items, item_features=item_features),
    )
    # Training continues identically, because the random generator state is saved too.
    model.fit_partial(interactions, item_features=item_features, epochs=1)
    loaded.fit_partial(interactions, item_features=item_features, epochs=1)
    assert_same_state(model, loaded)


def test_load_rejects_truncated_and_foreign_files(tmp_path):
    model = FastRank(random_state=0).fit(random_interactions())
    path = tmp_path / "model.npz"
    model.save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        FastRank.load(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ValueError, match="not a fastrank model"):
        FastRank.load(foreign)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError) as info:
        FastRank.load(garbage)
    assert "pickle" not in str(info.value)  # numpy's advice to load it as a pickle is not passed on
    with pytest.raises(ValueError, match="not a readable fastrank model file"):
        FastRank.load(tmp_path)  # a directory
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, metadata=np.array([{"format": "fastrank-model"}], dtype=object))
    with pytest.raises(ValueError):
        FastRank.load(pickled)


def test_load_rejects_inconsistent_arrays(tmp_path):
    model = FastRank(random_state=0).fit(random_interactions())
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as archive:
        contents = dict(archive)
    contents["item_embeddings"] = contents["item_embeddings"][:, :3]
    broken = tmp_path / "broken.npz"
    np.savez(broken, **contents)
    with pytest.raises(ValueError, match="item_embeddings"):
        FastRank.load(broken)


def test_save_writes_exactly_the_given_path(tmp_path):
    model = FastRank(random_state=0).fit(random_interactions())
    path = tmp_path / "model.bin"
    model.save(str(path))
    assert path.exists() and not (tmp_path / "model.bin.npz").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_pickle_round_trip_is_exact():
    model = FastRank(loss="bpr", random_state=0).fit(random_interactions(), epochs=2)
    restored = pickle.loads(pickle.dumps(model))
    assert_same_state(model, restored)
    np.testing.assert_array_equal(restored.predict(0, np.arange(20)), model.predict(0, np.arange(20)))
    model.fit_partial(random_interactions(), epochs=1)
    restored.fit_partial(random_interactions(), epochs=1)
    assert_same_state(model, restored)


def test_rejected_fit_keeps_the_trained_model():
    model = FastRank(loss="warp", random_state=0).fit(random_interactions(), epochs=2)
    before = copy.deepcopy(model)
    with pytest.raises(TypeError):
        model.fit(None)
    with pytest.raises(ValueError):
        model.fit(random_interactions(), item_features=random_features(19, 3))
    assert_same_state(before, model)
    np.testing.assert_array_equal(model.predict(0, np.arange(20)), before.predict(0, np.arange(20)))


def test_shuffled_order_is_a_seeded_permutation():
    from fastrank._sgd import shuffled_order, shuffled_examples

    order = shuffled_order(123, 1000)
    assert order.dtype == np.int32 and np.array_equal(np.sort(order), np.arange(1000))
    assert np.array_equal(order, shuffled_order(123, 1000))
    assert not np.array_equal(order, shuffled_order(124, 1000))
    assert not np.array_equal(order, np.arange(1000))
    # one example per user: example i is user i's
    user_starts = np.arange(1001, dtype=np.int64)
    items = np.arange(1000, dtype=np.int32)[::-1].copy()
    values = np.arange(1000, dtype=np.float32) * 2
    out_users, out_items, out_labels, out_weights, bounds = shuffled_examples(
        123, user_starts, items, values, values)
    np.testing.assert_array_equal(bounds, [0, 1000])
    np.testing.assert_array_equal(out_users, order)
    np.testing.assert_array_equal(out_items, 999 - order)
    np.testing.assert_array_equal(out_labels, order * 2.0)
    np.testing.assert_array_equal(out_weights, order * 2.0)
    # without labels or weights only the ids are shuffled (no all-ones arrays are made)
    bare_users, bare_items, no_labels, no_weights, _ = shuffled_examples(123, user_starts, items)
    np.testing.assert_array_equal(bare_users, order)
    np.testing.assert_array_equal(bare_items, 999 - order)
    assert no_labels is None and no_weights is None
    with pytest.raises(ValueError, match="same length"):
        shuffled_examples(123, user_starts, items, values[:-1].copy())
    with pytest.raises(ValueError, match="user_starts"):
        shuffled_examples(123, user_starts, items[:-1].copy())
    # every position is equally likely: the first element over many seeds is spread out
    firsts = [shuffled_order(seed, 10)[0] for seed in range(2000)]
    assert np.bincount(firsts, minlength=10).min() > 120


def test_blocked_shuffle_cuts_users_in_the_given_order():
    from fastrank._sgd import shuffled_order, shuffled_examples

    rng = np.random.default_rng(0)
    n_users, n_blocks = 40, 3
    users = np.sort(rng.integers(0, n_users - 1, 2000)).astype(np.int32)  # the last user has no examples
    items = np.arange(users.size, dtype=np.int32)  # each example's own id
    labels = items.astype(np.float32) * 2
    weights = items.astype(np.float32) * 3
    user_order = rng.permutation(n_users).astype(np.int32)
    user_starts = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=user_starts[1:])
    out_users, out_items, out_labels, out_weights, bounds = shuffled_examples(
        5, user_starts, items, labels, weights, user_order=user_order, n_blocks=n_blocks)
    np.testing.assert_array_equal(bounds, [0, 666, 1333, 2000])
    # laid out user by user in user_order, then cut: sorting each block by the users' places in
    # the order gives back exactly that layout
    place = np.empty(n_users, dtype=np.int64)
    place[user_order] = np.arange(n_users)
    layout = np.argsort(place[users], kind="stable")
    for block in range(n_blocks):
        part = slice(bounds[block], bounds[block + 1])
        np.testing.assert_array_equal(np.sort(out_items[part]), np.sort(layout[part]))
        np.testing.assert_array_equal(out_users[part], users[out_items[part]])
        np.testing.assert_array_equal(out_labels[part], labels[out_items[part]])
        np.testing.assert_array_equal(out_weights[part], weights[out_items[part]])
        assert not np.array_equal(out_items[part], layout[part])  # shuffled within the block
    # a user is in two blocks only where a cut falls
    owners = {}
    for block in range(n_blocks):
        for user in np.unique(out_users[bounds[block]:bounds[block + 1]]):
            owners.setdefault(user, set()).add(block)
    assert sum(len(blocks) > 1 for blocks in owners.values()) <= n_blocks - 1
    again = shuffled_examples(5, user_starts, items, labels, weights, user_order=user_order, n_blocks=n_blocks)
    np.testing.assert_array_equal(again[1], out_items)
    # one block is the unblocked shuffle of the examples (sorted by user)
    unblocked_users, unblocked_items = shuffled_examples(5, user_starts, items)[:2]
    np.testing.assert_array_equal(unblocked_items, shuffled_order(5, users.size))
    np.testing.assert_array_equal(unblocked_users, users[unblocked_items])
    identity = np.arange(n_users, dtype=np.int32)
    np.testing.assert_array_equal(shuffled_examples(5, user_starts, items, user_order=identity)[1],
                                  shuffled_order(5, users.size))
    with pytest.raises(ValueError, match="n_blocks"):
        shuffled_examples(1, user_starts, items, user_order=user_order, n_blocks=0)
    with pytest.raises(ValueError, match="needs user_order"):
        shuffled_examples(1, user_starts, items, n_blocks=2)
    with pytest.raises(ValueError, match="one entry more"):
        shuffled_examples(1, user_starts, items, user_order=user_order[:-5], n_blocks=2)
    repeated = user_order.copy()
    repeated[1] = repeated[0]
    for bad_order in (repeated, np.where(user_order == 3, 40, user_order).astype(np.int32),
                      np.where(user_order == 3, -1, user_order).astype(np.int32)):
        with pytest.raises(ValueError, match="user_order"):
            shuffled_examples(1, user_starts, items, user_order=bad_order, n_blocks=n_blocks)
    for bad_starts in (user_starts + 1, np.minimum(user_starts, users.size - 1),
                       np.where(np.arange(n_users + 1) == 5, user_starts[7], user_starts)):
        for order, blocks in ((user_order, n_blocks), (None, 1)):
            with pytest.raises(ValueError, match="user_starts"):
                shuffled_examples(1, bad_starts.astype(np.int64), items, user_order=order, n_blocks=blocks)
    with pytest.raises(ValueError, match="user_starts"):
        shuffled_examples(1, np.zeros(0, dtype=np.int64), items[:0].copy())


def test_run_order_edges():
    from fastrank import _sgd

    assert _sgd.run_order(1, 0, 16).shape == (0,)
    np.testing.assert_array_equal(_sgd.run_order(1, 5, 16), np.arange(5))  # one short run
    order = _sgd.run_order(7, 50, 1)  # runs of one id: a plain permutation
    assert order.dtype == np.int32 and np.array_equal(np.sort(order), np.arange(50))
    np.testing.assert_array_equal(order, _sgd.shuffled_order(7, 50))
    for n, run_length in ((-1, 16), (10, 0), (2**31 - 1, 16)):
        with pytest.raises(ValueError, match="run_order"):
            _sgd.run_order(1, n, run_length)


def test_thread_user_order():
    from fastrank._estimator import _thread_user_order

    order = _thread_user_order(1000, np.random.default_rng(2))
    assert order.dtype == np.int32 and np.array_equal(np.sort(order), np.arange(1000))
    # runs of 16 consecutive ids stay together, in a random order of runs
    runs = order // 16
    assert np.count_nonzero(np.diff(runs)) == 1000 // 16  # 63 runs, each in one piece
    assert np.all(np.diff(order)[np.diff(runs) == 0] == 1)  # ids ascending within a run
    assert not np.all(np.diff(runs) > 0)  # runs not in id order
    np.testing.assert_array_equal(order, _thread_user_order(1000, np.random.default_rng(2)))
    assert not np.array_equal(order, _thread_user_order(1000, np.random.default_rng(3)))
    # the busiest users when ids follow activity (the first ids) are spread over both halves
    place = np.argsort(order)
    assert (place[:160] < 500).any() and (place[:160] >= 500).any()
    assert np.array_equal(_thread_user_order(5, np.random.default_rng(0)), np.arange(5))


@pytest.mark.skipif(not fastrank._sgd.openmp_enabled(), reason="threads need OpenMP")
def test_threads_train_on_their_own_users(monkeypatch):
    """fit lays the users out in runs of 16 ids in a random order and gives each thread one block."""
    from fastrank import _sgd

    seen = []
    real_shuffle, real_epoch = _sgd.shuffled_examples, _sgd.run_epoch

    def shuffle_spy(*args, **kwargs):
        result = real_shuffle(*args, **kwargs)
        seen.append((kwargs.get("user_order"), kwargs.get("n_blocks"), result))
        return result

    def epoch_spy(**kwargs):
        users, bounds = seen[-1][2][0], seen[-1][2][4]
        assert kwargs["example_users"] is users and kwargs["block_bounds"] is bounds
        return real_epoch(**kwargs)

    monkeypatch.setattr(_sgd, "shuffled_examples", shuffle_spy)
    monkeypatch.setattr(_sgd, "run_epoch", epoch_spy)
    interactions = random_interactions(n_users=200)
    FastRank(random_state=0).fit(interactions, epochs=2, num_threads=3)
    assert [n_blocks for _, n_blocks, _ in seen] == [3, 3]
    user_order, _, (users, _, _, _, bounds) = seen[-1]
    assert np.array_equal(np.sort(user_order), np.arange(200)) and len(bounds) == 4
    assert not np.array_equal(user_order, np.arange(200))
    owners = {}
    for block in range(3):
        for user in np.unique(users[bounds[block]:bounds[block + 1]]):
            owners.setdefault(user, set()).add(block)
    assert sum(len(blocks) > 1 for blocks in owners.values()) <= 2  # only users at the two cuts
    FastRank(random_state=0).fit(interactions, epochs=1)
    assert seen[-1][0] is None and seen[-1][1] == 1


@pytest.mark.parametrize("loss", ["warp", "bpr", "logistic"])
def test_threads_keep_each_examples_weight_and_label(loss):
    """Blocks carry weights (and logistic's labels) with their examples: users whose
    interactions all weigh 0 do not move, whatever the thread count."""
    interactions = random_interactions(n_users=200, negatives=loss == "logistic").tocsr()
    weights = interactions.copy()
    weights.data = np.where(np.repeat(np.arange(200), np.diff(weights.indptr)) < 60, 0.0, 1.5).astype(np.float32)
    start = FastRank(loss=loss, random_state=0).fit(interactions, epochs=0)
    for num_threads in (1, 3):
        model = FastRank(loss=loss, random_state=0).fit(interactions, sample_weight=weights, epochs=2,
                                                        num_threads=num_threads)
        np.testing.assert_array_equal(model.user_embeddings[:60], start.user_embeddings[:60])
        assert not np.any(np.all(model.user_embeddings[60:] == start.user_embeddings[60:], axis=1))


def test_run_epoch_rejects_bad_block_bounds(monkeypatch):
    from fastrank import _sgd

    model = FastRank(no_components=4, random_state=0).fit(random_interactions(), epochs=1)
    calls = captured_epochs(monkeypatch)
    model.fit_partial(random_interactions(), epochs=1)
    monkeypatch.undo()
    arguments = calls[0]
    n = arguments["example_users"].shape[0]
    for bounds in ([0, n + 1], [1, n], [0, n // 2, n // 4, n], [0]):
        with pytest.raises(ValueError, match="block_bounds"):
            _sgd.run_epoch(**{**arguments, "block_bounds": np.array(bounds, dtype=np.int64)})
    with pytest.raises(ValueError, match="num_threads"):
        _sgd.run_epoch(**{**arguments, "num_threads": 0})
    before = model.item_embeddings.copy()
    _sgd.run_epoch(**{**arguments, "block_bounds": np.array([0, n // 3, n // 3, n], dtype=np.int64), "num_threads": 2})
    assert not np.array_equal(before, model.item_embeddings)


@pytest.mark.parametrize("loss", ["warp", "bpr", "logistic", "warp-kos"])
def test_more_threads_than_examples(loss):
    interactions = sp.coo_matrix((np.ones(2, dtype=np.float32), ([0, 1], [1, 2])), shape=(3, 4))
    model = FastRank(no_components=4, loss=loss, random_state=0).fit(interactions, epochs=0)
    before = model.item_embeddings.copy()
    model.fit_partial(interactions, epochs=3, num_threads=4)
    assert np.isfinite(model.item_embeddings).all() and not np.array_equal(before, model.item_embeddings)


def test_save_keeps_extra_arrays(tmp_path):
    model = FastRank(random_state=0).fit(random_interactions())
    path = tmp_path / "model.npz"
    model.save(path, extra={"user_ids": np.array(["a", "b"]), "matrix": np.eye(2, dtype=np.float32)})
    extra = FastRank.load_extra(path)
    assert sorted(extra) == ["matrix", "user_ids"]
    np.testing.assert_array_equal(extra["user_ids"], ["a", "b"])
    assert_same_state(model, FastRank.load(path))
    with pytest.raises(TypeError, match="extra"):
        model.save(tmp_path / "bad.npz", extra={"objects": np.array([{}], dtype=object)})
    np.savez(tmp_path / "foreign.npz", a=np.arange(2))
    with pytest.raises(ValueError, match="not a fastrank model"):
        FastRank.load_extra(tmp_path / "foreign.npz")


def test_saved_file_has_default_permissions(tmp_path):
    import os
    import stat

    model = FastRank(random_state=0).fit(random_interactions())
    path = tmp_path / "model.npz"
    model.save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_predict_with_threads_equals_one_thread_with_user_features():
    """Regression: the per-pair biases were shared between threads in the predict kernel."""
    interactions = random_interactions(n_users=300, n_items=200, density=0.05, negatives=True)
    user_features = random_features(300, 20)
    model = FastRank(loss="logistic", random_state=0).fit(interactions, user_features=user_features, epochs=3)
    users = np.repeat(np.arange(300), 200)
    items = np.tile(np.arange(200), 300)
    one = model.predict(users, items, user_features=user_features, num_threads=1)
    for _ in range(5):
        np.testing.assert_array_equal(model.predict(users, items, user_features=user_features, num_threads=2), one)
