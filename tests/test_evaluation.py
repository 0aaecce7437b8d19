"""fastrank.evaluation and FastRank.predict_rank against plain numpy/Python references.

The reference is written from the definitions in the module docstring of
``fastrank.evaluation``, independently of the kernels: it scores every (user, item) pair with
``model.predict``, removes the user's train items, orders the remaining candidates by
(score descending, item id ascending) -- the documented tie rule -- and derives each metric
from the ranks of the user's test items.

Most models here are fitted, then given parameters that are small dyadic rationals (multiples
of 1/64; feature weights 1, 1/2, 1/4). Every sum and product is then exact in float32, so
``predict`` (one dot product per pair) and the blocked scoring of the ranking kernels agree
bit for bit and the comparisons can be exact, ties included. One test keeps the raw fitted
(non-dyadic) parameters.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from fastrank import FastRank, _ranking
from fastrank.evaluation import (
    auc_score,
    hit_rate_at_k,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    reciprocal_rank,
)

METRIC_KEYS = ["precision", "recall", "ndcg", "map", "hit_rate", "auc", "reciprocal_rank"]
K_FUNCTIONS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
    "hit_rate": hit_rate_at_k,
}
NO_K_FUNCTIONS = {"auc": auc_score, "reciprocal_rank": reciprocal_rank}


# ---------------------------------------------------------------------------- models and data

def dyadic(rng, shape, denominator=64):
    """Random multiples of 1/denominator in [-1, 1], float32 (exact in every sum we form)."""
    return (rng.integers(-denominator, denominator + 1, size=shape) / denominator).astype(np.float32)


def make_model(n_users, n_items, user_features=None, item_features=None, no_components=4, seed=0,
               quantize=True):
    """A fitted FastRank whose parameters are replaced by dyadic values (unless ``quantize=False``)."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    dense[0, 0] = 1.0
    interactions = sp.csr_matrix(dense)
    model = FastRank(no_components=no_components, loss="warp", random_state=seed)
    model.fit(interactions, user_features=user_features, item_features=item_features, epochs=2)
    if quantize:
        for name in ("user_embeddings", "user_biases", "item_embeddings", "item_biases"):
            array = getattr(model, name)
            array[...] = dyadic(rng, array.shape)
    return model


def dyadic_features(rng, n_rows, n_shared):
    """[identity | shared] with shared weights in {1, 1/2, 1/4}; some rows have no shared feature."""
    shared = (rng.random((n_rows, n_shared)) < 0.4) * rng.choice([1.0, 0.5, 0.25], size=(n_rows, n_shared))
    return sp.csr_matrix(np.hstack([np.eye(n_rows), shared]).astype(np.float32))


def random_split(rng, n_users, n_items, train_density=0.25, test_density=0.15):
    """Disjoint random (train, test) CSR matrices of shape (n_users, n_items)."""
    train = rng.random((n_users, n_items)) < train_density
    test = (rng.random((n_users, n_items)) < test_density) & ~train
    return train, test


def to_sparse(train, test, n_items):
    return sp.csr_matrix(train.astype(np.float32)), sp.csr_matrix(test.astype(np.float32))


def special_rows(train, test):
    """Edit the dense masks in place so that the data holds every corner case:
    users 0-1 without test items, users 2-3 with empty train rows, user 4 whose test row holds
    every non-train item (no negatives: AUC 0.5), user 5 with one test item and everything
    else in train, user 6 with a single test item at the last id."""
    n_items = train.shape[1]
    test[0:2] = False
    train[2:4] = False
    test[2, :3] = True
    test[3, -2:] = True
    test[4] = ~train[4]
    train[5] = True
    train[5, 1] = False
    test[5] = False
    test[5, 1] = True
    train[6] = False
    test[6] = False
    test[6, n_items - 1] = True
    return train, test


# ---------------------------------------------------------------------------- reference

def score_matrix(model, n_users, n_items, user_features=None, item_features=None):
    users = np.repeat(np.arange(n_users), n_items)
    items = np.tile(np.arange(n_items), n_users)
    scores = model.predict(users, items, user_features=user_features, item_features=item_features)
    return scores.reshape(n_users, n_items).astype(np.float64)


def reference_ranking(scores, excluded):
    """Candidates (items not in ``excluded``) by (score desc, item id asc); {item: 0-based rank}."""
    candidates = [item for item in range(len(scores)) if item not in excluded]
    ordered = sorted(candidates, key=lambda item: (-scores[item], item))
    return {item: position for position, item in enumerate(ordered)}


def reference_user(scores, test_items, train_items, k):
    """Every metric of one user with test items, straight from the docstring definitions."""
    test_items, train_items = set(test_items), set(train_items)
    rank = reference_ranking(scores, train_items - test_items)  # test items always ranked
    ranks = sorted(rank[item] for item in test_items)
    t = len(ranks)
    hits = [r for r in ranks if r < k]
    cutoff = min(k, t)
    ideal = sum(1.0 / np.log2(position + 2.0) for position in range(cutoff))
    negatives = [item for item in range(len(scores)) if item not in test_items and item not in train_items]
    won = sum(rank[positive] < rank[negative] for positive in test_items for negative in negatives)
    return {
        "precision": len(hits) / k,
        "precision_min": len(hits) / cutoff,
        "recall": len(hits) / t,
        "ndcg": sum(1.0 / np.log2(r + 2.0) for r in hits) / ideal,
        "map": sum((j + 1.0) / (r + 1.0) for j, r in enumerate(hits)) / cutoff,
        "hit_rate": 1.0 if hits else 0.0,
        "auc": won / (t * len(negatives)) if negatives else 0.5,
        "reciprocal_rank": 1.0 / (1.0 + ranks[0]),
    }


def reference_metrics(model, test, train, k, user_features=None, item_features=None, preserve_rows=False):
    """{metric: float64 array}, one value per user with test items (per user with preserve_rows)."""
    test, train = sp.csr_matrix(test), sp.csr_matrix(test.shape) if train is None else sp.csr_matrix(train)
    n_users, n_items = test.shape
    scores = score_matrix(model, n_users, n_items, user_features, item_features)
    out = {name: [] for name in METRIC_KEYS + ["precision_min"]}
    for user in range(n_users):
        test_items = test[user].indices
        if len(test_items) == 0:
            if preserve_rows:
                for name, values in out.items():
                    values.append(0.5 if name == "auc" else 0.0)  # LightFM's values
            continue
        for name, value in reference_user(scores[user], test_items, train[user].indices, k).items():
            out[name].append(value)
    return {name: np.array(values, dtype=np.float64) for name, values in out.items()}


def reference_ranks(model, test, train, user_features=None, item_features=None):
    """Dense (n_users, n_items) array: the rank of each test entry, 0 elsewhere."""
    test, train = sp.csr_matrix(test), sp.csr_matrix(train)
    scores = score_matrix(model, *test.shape, user_features, item_features)
    ranks = np.zeros(test.shape)
    for user in range(test.shape[0]):
        rank = reference_ranking(scores[user], set(train[user].indices) - set(test[user].indices))
        for item in test[user].indices:
            ranks[user, item] = rank[item]
    return ranks


def assert_matches(actual, expected, name):
    assert actual.dtype == np.float32, name
    assert actual.shape == expected.shape, name
    np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-7, err_msg=name)


def check_all_metrics(model, test, train, k, user_features=None, item_features=None):
    """Every public metric (and every key of ranking_metrics), both preserve_rows settings."""
    for preserve_rows in (False, True):
        expected = reference_metrics(model, test, train, k, user_features, item_features, preserve_rows)
        common = dict(train_interactions=train, user_features=user_features, item_features=item_features,
                      preserve_rows=preserve_rows)
        together = ranking_metrics(model, test, k=k, **common)
        assert sorted(together) == sorted(METRIC_KEYS)
        for name in METRIC_KEYS:
            assert_matches(together[name], expected[name], f"ranking_metrics[{name}], preserve_rows={preserve_rows}")
        for name, function in K_FUNCTIONS.items():
            assert_matches(function(model, test, k=k, **common), expected[name], f"{name}@{k} {preserve_rows}")
        for name, function in NO_K_FUNCTIONS.items():
            assert_matches(function(model, test, **common), expected[name], f"{name} {preserve_rows}")
        assert_matches(precision_at_k(model, test, k=k, denominator="min", **common), expected["precision_min"],
                       "precision denominator=min")
        assert_matches(ranking_metrics(model, test, k=k, denominator="min", **common)["precision"],
                       expected["precision_min"], "ranking_metrics denominator=min")
    return expected


# ---------------------------------------------------------------------------- scenarios

def scenario_random(seed=1, n_users=24, n_items=40):
    rng = np.random.default_rng(seed)
    model = make_model(n_users, n_items, seed=seed)
    train, test = special_rows(*random_split(rng, n_users, n_items))
    train, test = to_sparse(train, test, n_items)
    return model, test, train, {}


def scenario_ties(seed=2, n_users=20, n_items=30):
    """Groups of items with identical embeddings and biases, and coarse (1/2-step) user vectors:
    many exact ties, between test items, train items and negatives alike."""
    rng = np.random.default_rng(seed)
    model = make_model(n_users, n_items, seed=seed)
    model.item_embeddings[5:15] = model.item_embeddings[5]
    model.item_biases[5:15] = model.item_biases[5]
    model.item_embeddings[20:30:2] = model.item_embeddings[21]
    model.item_biases[20:30:2] = model.item_biases[21]
    model.item_embeddings[0] = model.item_embeddings[29]
    model.item_biases[0] = model.item_biases[29]
    model.user_embeddings[...] = dyadic(rng, model.user_embeddings.shape, denominator=2)
    train, test = special_rows(*random_split(rng, n_users, n_items, 0.3, 0.3))
    train, test = to_sparse(train, test, n_items)
    return model, test, train, {}


def scenario_constant(seed=3, n_users=12, n_items=15):
    """Every score equal: the rank of an item is its position among the candidates by id."""
    rng = np.random.default_rng(seed)
    model = make_model(n_users, n_items, seed=seed)
    for name in ("user_embeddings", "user_biases", "item_embeddings", "item_biases"):
        getattr(model, name)[...] = 0.0
    train, test = special_rows(*random_split(rng, n_users, n_items, 0.3, 0.3))
    train, test = to_sparse(train, test, n_items)
    return model, test, train, {}


def scenario_many_test(seed=4, n_users=10, n_items=130):
    """Test rows of 50-110 items (counted four held-out items per pass: many passes per row),
    with train rows and ties among and around the test items."""
    rng = np.random.default_rng(seed)
    model = make_model(n_users, n_items, seed=seed)
    model.item_embeddings[40:80:3] = model.item_embeddings[40]
    model.item_biases[40:80:3] = model.item_biases[40]
    train = rng.random((n_users, n_items)) < 0.1
    test = np.zeros((n_users, n_items), dtype=bool)
    for user in range(n_users):
        test[user, rng.choice(n_items, rng.integers(50, 111), replace=False)] = True
    test &= ~train
    train[0] = False  # an empty train row with many test items
    test[1] = ~train[1]  # every candidate is a test item: no negatives
    test[2] = False  # and a user without test items
    train, test = to_sparse(train, test, n_items)
    return model, test, train, {}


def scenario_hybrid(seed=5, n_users=20, n_items=25):
    """user_features and item_features: identity plus shared features with weights 1, 1/2, 1/4."""
    rng = np.random.default_rng(seed)
    user_features = dyadic_features(rng, n_users, 3)
    item_features = dyadic_features(rng, n_items, 4)
    model = make_model(n_users, n_items, user_features, item_features, seed=seed)
    train, test = special_rows(*random_split(rng, n_users, n_items))
    train, test = to_sparse(train, test, n_items)
    return model, test, train, {"user_features": user_features, "item_features": item_features}


def scenario_large_catalogue(seed=6, n_users=8, n_items=1700):
    """More than three 512-item counting blocks (top-k metrics stop counting early), training
    items scored above everything (never counted), test rows of 5 to 120 items, and tied groups
    straddling block boundaries."""
    rng = np.random.default_rng(seed)
    model = make_model(n_users, n_items, seed=seed)
    for start in (500, 1020, 1530):
        model.item_embeddings[start:start + 12] = model.item_embeddings[start]
        model.item_biases[start:start + 12] = model.item_biases[start]
    train = rng.random((n_users, n_items)) < 0.02
    test = np.zeros((n_users, n_items), dtype=bool)
    for user in range(n_users):
        test[user, rng.choice(n_items, (5, 30, 60, 120)[user % 4], replace=False)] = True
        test[user, 505:515] = user % 2 == 0  # test items inside a tie group
    test &= ~train
    # train items outscore every candidate: the early-stop bound must allow for them
    model.item_biases[np.flatnonzero(train.any(axis=0))] = 50.0
    train, test = to_sparse(train, test, n_items)
    return model, test, train, {}


def scenario_counting_groups(seed=7, n_users=24, n_items=203):
    """Exact ranks count several held-out items per pass over a user's scores: rows of 1 to 13
    test items (groups of four and partial groups), items next to each other and sharing one
    8-score vector, the first and last ids, a catalogue that is not a multiple of 8, and scores
    with few distinct values (ties across group members, train items and negatives)."""
    rng = np.random.default_rng(seed)
    model = make_model(n_users, n_items, seed=seed)
    model.item_embeddings[...] = dyadic(rng, model.item_embeddings.shape, denominator=1)
    model.item_biases[...] = dyadic(rng, n_items, denominator=1)
    model.user_embeddings[...] = dyadic(rng, model.user_embeddings.shape, denominator=1)
    train = rng.random((n_users, n_items)) < 0.2
    test = np.zeros((n_users, n_items), dtype=bool)
    for user in range(n_users):
        size = user % 13 + 1
        if user % 3 == 0:  # a run of neighbours from the start
            test[user, :size] = True
        elif user % 3 == 1:  # a run of neighbours up to the last id
            test[user, n_items - size:] = True
        else:
            test[user, rng.choice(n_items, size, replace=False)] = True
    train &= ~test
    train, test = to_sparse(train, test, n_items)
    return model, test, train, {}


def scenario_long_test_rows(seed=8, n_users=5, n_items=2600):
    """Exact ranks of users with more held-out items than the counting limit (2,048) are found
    by sorting them and placing every candidate by binary search; capped ranks (top-k metrics)
    are still counted. Rows of 2,200 and 2,500 test items beside short ones, with ties."""
    rng = np.random.default_rng(seed)
    model = make_model(n_users, n_items, seed=seed)
    model.item_embeddings[...] = dyadic(rng, model.item_embeddings.shape, denominator=2)
    model.item_biases[...] = dyadic(rng, n_items, denominator=2)
    train = rng.random((n_users, n_items)) < 0.03
    test = np.zeros((n_users, n_items), dtype=bool)
    for user, size in enumerate((2200, 3, 2500, 40, 0)):
        test[user, rng.choice(n_items, size, replace=False)] = True
    test &= ~train
    train, test = to_sparse(train, test, n_items)
    return model, test, train, {}


SCENARIOS = {
    "counting_groups": scenario_counting_groups,
    "large_catalogue": scenario_large_catalogue,
    "long_test_rows": scenario_long_test_rows,
    "random": scenario_random,
    "ties": scenario_ties,
    "constant": scenario_constant,
    "many_test": scenario_many_test,
    "hybrid": scenario_hybrid,
}


# ---------------------------------------------------------------------------- metrics vs reference

@pytest.mark.parametrize("k", [1, 3, 10, 500])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_metrics_equal_reference(scenario, k):
    model, test, train, features = SCENARIOS[scenario]()
    check_all_metrics(model, test, train, k, **features)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_predict_rank_equals_reference(scenario):
    model, test, train, features = SCENARIOS[scenario]()
    ranks = model.predict_rank(test, train, user_features=features.get("user_features"),
                               item_features=features.get("item_features"))
    assert sp.issparse(ranks) and ranks.shape == test.shape and ranks.dtype == np.float32
    assert np.array_equal(ranks.indptr, test.indptr) and np.array_equal(ranks.indices, test.indices)
    expected = reference_ranks(model, test, train, **features)
    np.testing.assert_array_equal(ranks.toarray(), expected)


def test_metrics_without_train():
    """train_interactions=None: every item is a candidate."""
    model, test, _, _ = scenario_random(seed=6)
    for k in (2, 7):
        check_all_metrics(model, test, None, k)


def test_constant_model_ranks_by_item_id():
    """The tie rule on a model that scores everything alike: ranks are positions by id among the
    candidates, so such a model gets no credit beyond what item order gives it."""
    model, _, _, _ = scenario_constant()
    test = sp.csr_matrix(np.array([[0, 1, 0, 1, 0] + [0] * 10, [0] * 14 + [1]], dtype=np.float32))
    train = sp.csr_matrix(np.array([[1, 0, 1, 0, 0] + [0] * 10, [0] * 15], dtype=np.float32))
    ranks = model.predict_rank(test, train).toarray()
    assert ranks[0, 1] == 0 and ranks[0, 3] == 1  # items 0 and 2 are train items, not candidates
    assert ranks[1, 14] == 14
    np.testing.assert_allclose(reciprocal_rank(model, test, train), [1.0, 1.0 / 15])
    np.testing.assert_allclose(auc_score(model, test, train), [1.0, 0.0])


def test_fitted_model_without_quantization():
    """Raw fitted (non-dyadic) parameters: the kernels' blocked scoring and predict may round differently,
    so this scenario is built without near-ties (asserted) and compared with a tolerance."""
    rng = np.random.default_rng(7)
    n_users, n_items = 20, 30
    user_features = sp.csr_matrix(np.hstack([np.eye(n_users), rng.random((n_users, 3)) < 0.5]).astype(np.float32))
    model = make_model(n_users, n_items, user_features=user_features, no_components=8, seed=7, quantize=False)
    train, test = special_rows(*random_split(rng, n_users, n_items))
    train, test = to_sparse(train, test, n_items)
    scores = np.sort(score_matrix(model, n_users, n_items, user_features), axis=1)
    assert np.diff(scores, axis=1).min() > 1e-5  # no pair of items whose order rounding could flip
    check_all_metrics(model, test, train, 5, user_features=user_features)


def test_equal_rows_score_equal_anywhere_in_a_tile():
    """Ranking scores users in tiles of 6 by panels of 16 items (the last of each padded). Every
    score is the same sequence of operations, so with raw (non-dyadic) values identical items
    still tie exactly wherever they sit (ranked by id: consecutive ranks) and identical users,
    in different tiles and tile positions, get identical ranks."""
    rng = np.random.default_rng(21)
    n_users, n_items = 14, 70
    model = make_model(n_users, n_items, no_components=8, seed=21, quantize=False)
    model.user_embeddings[...] = rng.standard_normal(model.user_embeddings.shape).astype(np.float32)
    model.item_embeddings[...] = rng.standard_normal(model.item_embeddings.shape).astype(np.float32)
    model.item_biases[...] = rng.standard_normal(n_items).astype(np.float32)
    twins = [3, 20, 37, 69]  # panel positions 3, 4, 5 and 5 (the last, padded panel)
    model.item_embeddings[twins] = model.item_embeddings[3]
    model.item_biases[twins] = model.item_biases[3]
    users = [0, 7, 13]  # tile positions 0, 1 and 1 (of the short last tile)
    model.user_embeddings[users] = model.user_embeddings[0]
    model.user_biases[users] = model.user_biases[0]
    test = sp.csr_matrix(np.ones((n_users, n_items), dtype=np.float32))
    ranks = model.predict_rank(test).toarray()
    for user in range(n_users):
        assert sorted(ranks[user]) == list(range(n_items))
        np.testing.assert_array_equal(np.diff(ranks[user, twins]), [1, 1, 1])
    np.testing.assert_array_equal(ranks[7], ranks[0])
    np.testing.assert_array_equal(ranks[13], ranks[0])


def test_dense_and_coo_inputs_equal_csr():
    model, test, train, _ = scenario_random(seed=8)
    expected = ranking_metrics(model, test, train, k=5)
    for convert in (lambda m: m.toarray(), sp.coo_matrix, sp.csc_matrix):
        actual = ranking_metrics(model, convert(test), convert(train), k=5)
        for name in METRIC_KEYS:
            np.testing.assert_array_equal(actual[name], expected[name])


# ---------------------------------------------------------------------------- LightFM semantics

def test_lightfm_semantics_shapes_and_zeros():
    """float32 arrays, one value per user with test interactions, in user order; with
    preserve_rows one per user, 0 for users without test interactions (AUC 0.5, as LightFM)."""
    model, test, train, _ = scenario_random(seed=9)
    has_test = np.diff(test.indptr) > 0
    assert not has_test.all() and has_test.any()
    functions = [lambda **kw: precision_at_k(model, test, train, k=5, **kw),
                 lambda **kw: recall_at_k(model, test, train, k=5, **kw),
                 lambda **kw: ndcg_at_k(model, test, train, k=5, **kw),
                 lambda **kw: map_at_k(model, test, train, k=5, **kw),
                 lambda **kw: hit_rate_at_k(model, test, train, k=5, **kw),
                 lambda **kw: auc_score(model, test, train, **kw),
                 lambda **kw: reciprocal_rank(model, test, train, **kw)]
    for number, function in enumerate(functions):
        compact = function()
        full = function(preserve_rows=True)
        assert isinstance(compact, np.ndarray) and compact.dtype == np.float32 and compact.ndim == 1
        assert compact.shape == (has_test.sum(),)
        assert full.dtype == np.float32 and full.shape == (test.shape[0],)
        np.testing.assert_array_equal(full[~has_test], 0.5 if number == 5 else 0.0)  # 5: auc_score
        np.testing.assert_array_equal(full[has_test], compact)
    for values in ranking_metrics(model, test, train, preserve_rows=True).values():
        assert values.dtype == np.float32 and values.shape == (test.shape[0],)


def test_precision_denominators_differ_as_documented():
    """precision@k divides by k (LightFM); denominator="min" by min(k, |test|)."""
    model, test, train, _ = scenario_random(seed=10)
    counts = np.diff(test.indptr)
    counts = counts[counts > 0]
    k = 10
    by_k = precision_at_k(model, test, train, k=k)
    by_min = precision_at_k(model, test, train, k=k, denominator="min")
    np.testing.assert_allclose(by_k * k, by_min * np.minimum(k, counts), rtol=1e-6)
    assert np.any(by_min > by_k)


# ---------------------------------------------------------------------------- threads

def test_two_threads_equal_one_thread():
    model, test, train, features = scenario_hybrid(seed=11, n_users=60, n_items=70)
    one = ranking_metrics(model, test, train, k=5, num_threads=1, **features)
    two = ranking_metrics(model, test, train, k=5, num_threads=2, **features)
    for name in METRIC_KEYS:
        np.testing.assert_array_equal(one[name], two[name])
    np.testing.assert_array_equal(precision_at_k(model, test, train, k=3, num_threads=2, **features),
                                  precision_at_k(model, test, train, k=3, num_threads=1, **features))
    np.testing.assert_array_equal(auc_score(model, test, train, num_threads=2, **features),
                                  auc_score(model, test, train, num_threads=1, **features))
    rank_one = model.predict_rank(test, train, num_threads=1, **features)
    rank_two = model.predict_rank(test, train, num_threads=2, **features)
    np.testing.assert_array_equal(rank_one.toarray(), rank_two.toarray())
    # the many-item path of the ranking kernel too
    model, test, train, _ = scenario_many_test(seed=12)
    np.testing.assert_array_equal(model.predict_rank(test, train, num_threads=2).toarray(),
                                  model.predict_rank(test, train, num_threads=1).toarray())


# ---------------------------------------------------------------------------- intersections

def test_check_intersections():
    model, test, train, _ = scenario_random(seed=13)
    overlap = train.tolil()
    overlap[6, test[6].indices[0]] = 1.0
    overlap = overlap.tocsr()
    with pytest.raises(ValueError, match="share"):
        precision_at_k(model, test, overlap)
    with pytest.raises(ValueError, match="share"):
        ranking_metrics(model, test, overlap)
    with pytest.raises(ValueError, match="share"):
        model.predict_rank(test, overlap)
    with pytest.raises(ValueError, match="share"):
        auc_score(model, test, overlap, check_intersections=True)
    # False: no error; the shared item is still ranked as a test item
    precision_at_k(model, test, overlap, check_intersections=False)
    ranks = model.predict_rank(test, overlap, check_intersections=False).toarray()
    np.testing.assert_array_equal(ranks, reference_ranks(model, test, overlap))


def test_auc_with_intersections_follows_definition():
    """Regression: with check_intersections=False an item in both the test and the train row of
    a user is ranked as a test item, and AUC's negatives (items in neither row) must not count
    it twice (it was subtracted once as a test and once as a train item)."""
    model, test, train, _ = scenario_random(seed=13)
    overlap = train.tolil()
    for user in range(2, 10):
        overlap[user, test[user].indices[0]] = 1.0
    overlap = overlap.tocsr()
    expected = reference_metrics(model, test, overlap, 5)
    actual = ranking_metrics(model, test, overlap, k=5, check_intersections=False)
    for name in METRIC_KEYS:
        assert_matches(actual[name], expected[name], name)


# ---------------------------------------------------------------------------- bad input

def test_bad_inputs_raise():
    model, test, train, _ = scenario_random(seed=14)
    n_users, n_items = test.shape
    for k in (0, -3):
        with pytest.raises(ValueError, match="k"):
            precision_at_k(model, test, train, k=k)
        with pytest.raises(ValueError, match="k"):
            ranking_metrics(model, test, train, k=k)
    for k in (2.0, "5", None, True):
        with pytest.raises(TypeError, match="k"):
            ndcg_at_k(model, test, train, k=k)
    for denominator in ("max", None, 1):
        with pytest.raises(ValueError, match="denominator"):
            precision_at_k(model, test, train, denominator=denominator)
        with pytest.raises(ValueError, match="denominator"):
            ranking_metrics(model, test, train, denominator=denominator)
    # train and test of different shapes
    for shape in ((n_users, n_items - 1), (n_users + 1, n_items)):
        with pytest.raises(ValueError, match="shape"):
            recall_at_k(model, test, sp.csr_matrix(shape, dtype=np.float32))
    # more users / items than the model knows
    with pytest.raises(ValueError, match="users"):
        auc_score(model, sp.csr_matrix((n_users + 1, n_items), dtype=np.float32))
    with pytest.raises(ValueError, match="items"):
        auc_score(model, sp.csr_matrix((n_users, n_items + 1), dtype=np.float32))
    # feature matrices with the wrong column count or row count
    with pytest.raises(ValueError, match="columns"):
        precision_at_k(model, test, train, user_features=sp.identity(n_users + 1, format="csr")[:n_users])
    with pytest.raises(ValueError, match="columns"):
        precision_at_k(model, test, train, item_features=sp.csr_matrix(np.ones((n_items, n_items + 2))))
    with pytest.raises(ValueError, match="rows"):
        precision_at_k(model, test, train, user_features=sp.identity(n_users, format="csr")[:n_users - 1])
    with pytest.raises(ValueError, match="rows"):
        reciprocal_rank(model, test, train, item_features=sp.identity(n_items, format="csr")[:n_items - 2])
    # not a matrix
    with pytest.raises(TypeError):
        precision_at_k(model, "test", train)
    with pytest.raises(TypeError):
        precision_at_k(model, None)


def test_unfitted_model_raises():
    test = sp.csr_matrix(np.eye(3, dtype=np.float32))
    model = FastRank()
    for call in (lambda: precision_at_k(model, test), lambda: auc_score(model, test),
                 lambda: ranking_metrics(model, test), lambda: model.predict_rank(test)):
        with pytest.raises(ValueError, match="not fitted"):
            call()


# ---------------------------------------------------------------------------- memory bound

def test_block_size_bounds_the_scoring_block():
    """Each thread holds one block of scores: within the budget (one row always fits), a whole
    number of 6-user tiles when six rows fit, and as large as that allows."""
    budget, tile = 2 ** 20, 6
    for n_queries, n_items in [(1, 1), (3000, 5000), (10 ** 6, 10 ** 5), (5, 10), (10 ** 6, 1),
                               (10 ** 6, 2 ** 23), (7, 2 ** 24), (10 ** 6, 2 ** 18), (100, 20000)]:
        size = _ranking.block_size(n_queries, n_items)
        assert isinstance(size, int) and 1 <= size <= n_queries
        assert size * n_items <= max(budget, n_items)  # one row always fits, however long
        if size < n_queries:
            step = tile if budget // n_items >= tile else 1
            assert size % step == 0
            assert (size + step) * n_items > budget
    # 1M users x 100k items: one block is at most 4 MiB of float32 scores per thread
    assert _ranking.block_size(10 ** 6, 10 ** 5) * 10 ** 5 * 4 <= 2 ** 22


def test_ranking_kernels_refuse_matrices_of_different_widths():
    """The kernels read both matrices with one row width: a mismatch is an error, not a read past
    the end of the narrower one."""
    users, items = np.ones((3, 5), np.float32), np.ones((4, 6), np.float32)
    indptr, indices = np.array([0, 1, 1, 1], np.int32), np.array([2], np.int32)
    empty = np.zeros(4, np.int32)
    with pytest.raises(ValueError, match="columns"):
        _ranking.rank_held_out(users, items, indptr, indices, empty, empty[:0], np.zeros(1, np.float32), 1, 3)
    with pytest.raises(ValueError, match="columns"):
        _ranking.top_k(users, items, np.arange(4, dtype=np.int32), empty, empty[:0], 4, 2,
                       np.zeros((3, 2), np.int32), np.zeros((3, 2), np.float32), 1, 3)


def test_predict_rank_across_several_blocks():
    """3,000 users x 5,000 items: the ranking kernel scores more than one block of users
    (block_size < n_users) and still equals the reference on a sample of users."""
    rng = np.random.default_rng(15)
    n_users, n_items = 3000, 5000
    assert _ranking.block_size(n_users, n_items) < n_users
    model = make_model(40, 40, no_components=8, seed=15)
    model.user_embeddings = dyadic(rng, (n_users, 8))
    model.user_biases = dyadic(rng, n_users)
    model.item_embeddings = dyadic(rng, (n_items, 8))
    model.item_biases = dyadic(rng, n_items)
    test_items = rng.integers(0, n_items, size=(n_users, 2))
    test = sp.csr_matrix((np.ones(2 * n_users, np.float32), (np.repeat(np.arange(n_users), 2), test_items.ravel())),
                         shape=(n_users, n_items))
    test.sum_duplicates()
    test.data[:] = 1.0
    ranks = model.predict_rank(test, num_threads=2)
    sample = np.r_[0, 1, rng.choice(n_users, 8, replace=False), 1676, 1677, 1678, n_users - 1]
    user_scores = model.user_embeddings[sample].astype(np.float64) @ model.item_embeddings.T.astype(np.float64)
    user_scores += model.item_biases  # the user bias does not change a user's ranking
    for row, user in enumerate(sample):
        for item in test[user].indices:
            s = user_scores[row]
            expected = np.sum(s > s[item]) + np.sum(s[:item] == s[item])
            assert ranks[user, item] == expected, (user, item)


def test_test_matrix_with_fewer_items_than_the_model():
    """As in LightFM, test/train may cover only the first items the model knows: the ranking is
    then among those items."""
    model, test, train, _ = scenario_random(seed=16)
    check_all_metrics(model, test[:, :30], train[:, :30], 5)
