"""FastRank.recommend, similar_items and similar_users against plain numpy/Python references.

``recommend`` must equal ranking every candidate by ``predict`` with the filtered items removed,
ties by the lower item id, and return ``predict``'s scores; ``similar_*`` must equal a cosine
similarity of the representations computed here, the query excluded.

As in test_evaluation.py, the models get dyadic parameters (multiples of 1/64, feature weights
1, 1/2, 1/4), so that every score is exact in float32 and comparisons can be exact, ties
included. For the similarity tests the embeddings are powers of two times integer 8-vectors of
squared norm 64, scaled by 1/8: their norms are exact powers of two and their cosines exact.
"""

import functools

import numpy as np
import pytest
import scipy.sparse as sp

from fastrank import FastRank, _ranking

N_USERS, N_ITEMS = 25, 30


# ---------------------------------------------------------------------------- models and data

def dyadic(rng, shape, denominator=64):
    return (rng.integers(-denominator, denominator + 1, size=shape) / denominator).astype(np.float32)


def make_model(n_users=N_USERS, n_items=N_ITEMS, user_features=None, item_features=None, no_components=4,
               seed=0):
    """A fitted FastRank whose parameters are then replaced by dyadic values."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    dense[0, 0] = 1.0
    model = FastRank(no_components=no_components, loss="warp", random_state=seed)
    model.fit(sp.csr_matrix(dense), user_features=user_features, item_features=item_features, epochs=2)
    for name in ("user_embeddings", "user_biases", "item_embeddings", "item_biases"):
        array = getattr(model, name)
        array[...] = dyadic(rng, array.shape)
    return model


def make_tied_model(seed=0):
    """Items 3..9 identical, items 12, 15, 18 identical, coarse user vectors: many exact ties."""
    model = make_model(seed=seed)
    rng = np.random.default_rng(seed + 100)
    model.item_embeddings[3:10] = model.item_embeddings[3]
    model.item_biases[3:10] = model.item_biases[3]
    model.item_embeddings[[12, 15, 18]] = model.item_embeddings[18]
    model.item_biases[[12, 15, 18]] = model.item_biases[18]
    model.user_embeddings[...] = dyadic(rng, model.user_embeddings.shape, denominator=2)
    return model


def dyadic_features(rng, n_rows, n_shared):
    """[identity | shared] with shared weights in {1, 1/2, 1/4}."""
    shared = (rng.random((n_rows, n_shared)) < 0.4) * rng.choice([1.0, 0.5, 0.25], size=(n_rows, n_shared))
    return sp.csr_matrix(np.hstack([np.eye(n_rows), shared]).astype(np.float32))


def random_filter(rng, n_rows, n_items, density=0.3):
    seen = rng.random((n_rows, n_items)) < density
    seen[1] = False  # an empty row
    seen[2, :-2] = True  # only two items left
    seen[3] = True  # nothing left
    return sp.csr_matrix(seen.astype(np.float32))


# ---------------------------------------------------------------------------- references

def reference_recommend(model, user_ids, k, user_features=None, item_features=None, filter_interactions=None,
                        items=None):
    """Rank the candidates of each user by predict, filtered items removed, ties by lower id."""
    n_items = model.item_embeddings.shape[0] if item_features is None else item_features.shape[0]
    candidates = np.arange(n_items) if items is None else np.unique(items)
    k = min(k, len(candidates))  # the documented width
    ids = np.full((len(user_ids), k), -1, dtype=np.int32)
    scores = np.full((len(user_ids), k), -np.inf, dtype=np.float32)
    for row, user in enumerate(user_ids):
        seen = set() if filter_interactions is None else set(sp.csr_matrix(filter_interactions)[user].indices)
        left = np.array([item for item in candidates if item not in seen], dtype=np.int64)
        if left.size == 0:
            continue
        predicted = model.predict(np.full(left.size, user), left, user_features=user_features,
                                  item_features=item_features)
        ranked = sorted(zip(-predicted.astype(np.float64), left))[:k]
        ids[row, :len(ranked)] = [item for _, item in ranked]
        scores[row, :len(ranked)] = [-score for score, _ in ranked]
    return ids, scores


def cosine_reference(embeddings, query_ids, k):
    """Top-k by cosine similarity (float64), query excluded, zero vectors similar to nothing (0)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    norms = np.sqrt((embeddings ** 2).sum(axis=1))
    unit = np.zeros_like(embeddings)
    unit[norms > 0] = embeddings[norms > 0] / norms[norms > 0, None]
    k = min(k, len(embeddings))  # the documented width
    ids = np.full((len(query_ids), k), -1, dtype=np.int32)
    sims = np.full((len(query_ids), k), -np.inf)
    for row, query in enumerate(query_ids):
        similarity = unit @ unit[query]
        ranked = sorted((-similarity[j], j) for j in range(len(embeddings)) if j != query)[:k]
        ids[row, :len(ranked)] = [j for _, j in ranked]
        sims[row, :len(ranked)] = [-s for s, _ in ranked]
    return ids, sims


@functools.lru_cache(maxsize=None)
def exact_unit_directions():
    """Distinct integer 8-vectors of squared norm 64, divided by 8: unit vectors with dyadic
    entries (about a thousand directions, cosines multiples of 1/64)."""
    candidates = np.random.default_rng(0).integers(-5, 6, size=(100_000, 8))
    return np.unique(candidates[(candidates ** 2).sum(axis=1) == 64], axis=0) / 8.0


def exact_cosine_embeddings(rng, n_rows):
    """Rows = 2**e * (unit dyadic direction); some repeated directions (exact ties, also at other
    scales) and some zero rows."""
    directions = exact_unit_directions()
    rows = directions[rng.choice(len(directions), n_rows)] * rng.choice([0.25, 0.5, 1.0, 2.0], (n_rows, 1))
    rows[5] = rows[2]
    rows[9] = rows[2] * 4.0
    rows[11] = -rows[2]
    rows[14] = 0.0
    rows[17] = 0.0
    return rows.astype(np.float32)


def assert_recommendations_equal(actual, expected):
    (ids, scores), (expected_ids, expected_scores) = actual, expected
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    assert ids.shape == expected_ids.shape and scores.shape == expected_scores.shape
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores)


# ---------------------------------------------------------------------------- recommend

@pytest.mark.parametrize("tied", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("k", [1, 5, N_ITEMS, N_ITEMS + 7])
def test_recommend_equals_ranking_by_predict(k, tied):
    model = make_tied_model() if tied else make_model()
    users = np.arange(N_USERS)
    assert_recommendations_equal(model.recommend(users, k=k), reference_recommend(model, users, k))
    seen = random_filter(np.random.default_rng(1), N_USERS, N_ITEMS)
    assert_recommendations_equal(model.recommend(users, k=k, filter_interactions=seen),
                                 reference_recommend(model, users, k, filter_interactions=seen))


def test_recommend_ties_go_to_the_lower_id():
    model = make_model()
    model.item_embeddings[...] = 0.0
    model.item_biases[...] = 0.0
    model.item_biases[[4, 20]] = 1.0
    ids, scores = model.recommend([0, 1], k=6)
    np.testing.assert_array_equal(ids, [[4, 20, 0, 1, 2, 3]] * 2)
    np.testing.assert_array_equal(scores - model.user_biases[[0, 1], None],
                                  [[1, 1, 0, 0, 0, 0]] * 2)


def test_recommend_scores_equal_predict_of_returned_pairs():
    rng = np.random.default_rng(2)
    user_features = dyadic_features(rng, N_USERS, 3)
    item_features = dyadic_features(rng, N_ITEMS, 4)
    model = make_model(user_features=user_features, item_features=item_features, seed=2)
    users = np.array([0, 7, 7, 24, 3])  # repeats allowed
    seen = random_filter(rng, N_USERS, N_ITEMS)
    ids, scores = model.recommend(users, k=8, user_features=user_features, item_features=item_features,
                                  filter_interactions=seen)
    assert_recommendations_equal((ids, scores), reference_recommend(
        model, users, 8, user_features, item_features, filter_interactions=seen))
    valid = ids >= 0
    pair_users = np.broadcast_to(users[:, None], ids.shape)[valid]
    predicted = model.predict(pair_users, ids[valid], user_features=user_features, item_features=item_features)
    np.testing.assert_array_equal(scores[valid], predicted)
    assert np.all(np.isfinite(scores[valid])) and np.all(np.isneginf(scores[~valid]))
    assert all(np.all(np.diff(row[np.isfinite(row)]) <= 0) for row in scores)
    for row, user in enumerate(users):  # no filtered item is returned
        assert not set(ids[row][ids[row] >= 0]) & set(seen[user].indices)


def test_recommend_candidate_subset():
    model = make_tied_model(seed=3)
    users = np.arange(N_USERS)
    items = np.array([17, 3, 9, 3, 12, 0, 18, 29])  # unsorted, with a repeat
    for k in (1, 4, 7, 10):
        assert_recommendations_equal(model.recommend(users, k=k, items=items),
                                     reference_recommend(model, users, k, items=items))
    seen = random_filter(np.random.default_rng(3), N_USERS, N_ITEMS, density=0.5)
    ids, scores = model.recommend(users, k=10, items=items, filter_interactions=seen)
    assert_recommendations_equal((ids, scores), reference_recommend(model, users, 10, filter_interactions=seen,
                                                                    items=items))
    assert set(ids[ids >= 0]) <= set(items)


def test_recommend_pads_when_k_exceeds_candidates():
    model = make_model(seed=4)
    # no wider than the candidates (a k of 2**31 - 2 once filled tens of GiB with padding)
    for k in (5, 2**31 - 2):
        ids, scores = model.recommend([0, 3], k=k, items=[2, 11, 6, 11])
        assert ids.shape == scores.shape == (2, 3)
        assert sorted(ids[0]) == [2, 6, 11]
    assert model.recommend([0], k=2**31 - 2)[0].shape == (1, N_ITEMS)
    # rows that filtering leaves shorter are padded
    seen = sp.csr_matrix(([1.0], ([0], [ids[0, 0]])), shape=(N_USERS, N_ITEMS))
    ids, scores = model.recommend([0, 3], k=5, items=[2, 11, 6], filter_interactions=seen)
    np.testing.assert_array_equal(ids[0, 2:], -1)
    assert np.all(np.isneginf(scores[0, 2:])) and np.all(ids[1] >= 0)
    # every candidate filtered: a full row of padding
    seen = sp.csr_matrix(np.ones((N_USERS, N_ITEMS), dtype=np.float32))
    ids, scores = model.recommend([5], k=3, filter_interactions=seen)
    np.testing.assert_array_equal(ids, [[-1, -1, -1]])
    assert np.all(np.isneginf(scores))


def test_recommend_int_user_id():
    model = make_model(seed=5)
    for user in (0, 7, np.int64(7), np.int32(N_USERS - 1)):
        ids, scores = model.recommend(user, k=4)
        assert ids.shape == scores.shape == (1, 4)
        assert_recommendations_equal((ids, scores), model.recommend([int(user)], k=4))
        assert_recommendations_equal((ids, scores), reference_recommend(model, [int(user)], 4))


def test_recommend_empty_user_list():
    model = make_model(seed=5)
    ids, scores = model.recommend(np.array([], dtype=np.int64), k=3)
    assert ids.shape == scores.shape == (0, 3)


# ---------------------------------------------------------------------------- cold start

def cold_start_model(seed=6, n_user_shared=3, n_item_shared=4):
    rng = np.random.default_rng(seed)
    user_features = dyadic_features(rng, N_USERS, n_user_shared)
    item_features = dyadic_features(rng, N_ITEMS, n_item_shared)
    model = make_model(user_features=user_features, item_features=item_features, seed=seed)
    return model, user_features, item_features


def feature_row(n_identity, shared):
    return sp.csr_matrix(np.r_[np.zeros(n_identity), shared].astype(np.float32)[None, :])


def test_cold_start_user_from_shared_features():
    """A new user row with shared features only (no identity column) is ranked by the
    representation those features give: computed here by hand from the model's parameters."""
    model, user_features, item_features = cold_start_model()
    shared = model.user_embeddings[N_USERS:].astype(np.float64), model.user_biases[N_USERS:].astype(np.float64)
    new_a, new_b = np.array([1.0, 0.0, 0.5]), np.array([0.0, 1.0, 0.25])
    extended = sp.vstack([user_features, feature_row(N_USERS, new_a), feature_row(N_USERS, new_b)]).tocsr()
    item_repr = item_features.toarray() @ model.item_embeddings.astype(np.float64)
    item_bias = item_features.toarray() @ model.item_biases.astype(np.float64)
    results = {}
    for new_user, weights in ((N_USERS, new_a), (N_USERS + 1, new_b)):
        user_repr, user_bias = weights @ shared[0], weights @ shared[1]
        by_hand = item_repr @ user_repr + item_bias + user_bias
        order = sorted(range(N_ITEMS), key=lambda item: (-by_hand[item], item))[:6]
        ids, scores = model.recommend(new_user, k=6, user_features=extended, item_features=item_features)
        np.testing.assert_array_equal(ids[0], order)
        np.testing.assert_array_equal(scores[0], by_hand[order].astype(np.float32))
        results[new_user] = ids[0]
    assert not np.array_equal(results[N_USERS], results[N_USERS + 1])
    # known users are unaffected by the extra rows
    assert_recommendations_equal(
        model.recommend(np.arange(N_USERS), k=6, user_features=extended, item_features=item_features),
        model.recommend(np.arange(N_USERS), k=6, user_features=user_features, item_features=item_features))


def test_cold_start_item_from_shared_features():
    """A new item row (shared features only) is a candidate scored by its features."""
    model, user_features, item_features = cold_start_model(seed=7)
    new_a, new_b = np.array([1.0, 0.0, 0.5, 0.0]), np.array([0.0, 0.5, 0.0, 1.0])
    extended = sp.vstack([item_features, feature_row(N_ITEMS, new_a), feature_row(N_ITEMS, new_b)]).tocsr()
    n_all = N_ITEMS + 2
    item_repr = extended.toarray() @ model.item_embeddings.astype(np.float64)
    item_bias = extended.toarray() @ model.item_biases.astype(np.float64)
    new_repr = new_a @ model.item_embeddings[N_ITEMS:].astype(np.float64)
    np.testing.assert_array_equal(item_repr[N_ITEMS], new_repr)  # the identity part plays no role
    user_repr = user_features.toarray() @ model.user_embeddings.astype(np.float64)
    user_bias = user_features.toarray() @ model.user_biases.astype(np.float64)
    by_hand = user_repr @ item_repr.T + item_bias + user_bias[:, None]
    assert not np.array_equal(by_hand[:, N_ITEMS], by_hand[:, N_ITEMS + 1])
    ids, scores = model.recommend(np.arange(N_USERS), k=n_all, user_features=user_features, item_features=extended)
    for user in range(N_USERS):
        order = sorted(range(n_all), key=lambda item: (-by_hand[user, item], item))
        np.testing.assert_array_equal(ids[user], order)
        np.testing.assert_array_equal(scores[user], by_hand[user, order].astype(np.float32))
    # among a candidate subset, with a filter that has a column for every item row
    seen = sp.csr_matrix(([1.0], ([0], [N_ITEMS + 1])), shape=(N_USERS, n_all))
    ids, _ = model.recommend(np.arange(3), k=3, user_features=user_features, item_features=extended,
                             items=[N_ITEMS, N_ITEMS + 1, 4, 8], filter_interactions=seen)
    for user in range(3):
        candidates = [N_ITEMS, 4, 8] if user == 0 else [N_ITEMS, N_ITEMS + 1, 4, 8]
        order = sorted(candidates, key=lambda item: (-by_hand[user, item], item))[:3]
        np.testing.assert_array_equal(ids[user], order)
    with pytest.raises(ValueError, match="columns"):
        model.recommend(0, user_features=user_features, item_features=extended,
                        filter_interactions=sp.csr_matrix((N_USERS, N_ITEMS), dtype=np.float32))


# ---------------------------------------------------------------------------- similar items / users

def similarity_model(seed=8):
    model = make_model(no_components=8, seed=seed)
    rng = np.random.default_rng(seed)
    model.item_embeddings[...] = exact_cosine_embeddings(rng, N_ITEMS)
    model.user_embeddings[...] = exact_cosine_embeddings(rng, N_USERS)
    return model


@pytest.mark.parametrize("k", [1, 4, N_ITEMS - 1, N_ITEMS + 5])
def test_similar_items_equal_cosine_reference(k):
    model = similarity_model()
    queries = np.arange(N_ITEMS)
    ids, sims = model.similar_items(queries, k=k)
    expected_ids, expected_sims = cosine_reference(model.item_embeddings, queries, k)
    assert ids.dtype == np.int32 and sims.dtype == np.float32 and ids.shape == (N_ITEMS, min(k, N_ITEMS))
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(sims, expected_sims.astype(np.float32))
    assert not np.any(ids == queries[:, None])  # never the query itself
    # duplicates and scaled copies of item 2 are perfectly similar, ties by id; -item 2 is opposite
    top, top_sims = model.similar_items(2, k=2)
    if k >= 2:
        np.testing.assert_array_equal(top, [[5, 9]])
        np.testing.assert_array_equal(top_sims, [[1.0, 1.0]])
    # a zero vector: similarity 0 to everything, so the lowest ids other than itself come first
    zero_ids, zero_sims = model.similar_items(14, k=3)
    np.testing.assert_array_equal(zero_ids, [[0, 1, 2]])
    np.testing.assert_array_equal(zero_sims, 0.0)


@pytest.mark.parametrize("k", [1, 6, N_USERS + 2])
def test_similar_users_equal_cosine_reference(k):
    model = similarity_model(seed=9)
    queries = np.array([0, 2, 5, 9, 11, 14, 17, N_USERS - 1, 2])
    ids, sims = model.similar_users(queries, k=k)
    expected_ids, expected_sims = cosine_reference(model.user_embeddings, queries, k)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(sims, expected_sims.astype(np.float32))
    assert_recommendations_equal(model.similar_users(int(queries[1]), k=k), (ids[1:2], sims[1:2]))


def test_similar_with_features_uses_feature_representations():
    """With a feature matrix the representation of a row is the weighted sum of its features'
    embeddings (non-exact here, so compared with a tolerance on the similarities)."""
    rng = np.random.default_rng(10)
    item_features = dyadic_features(rng, N_ITEMS, 4)
    user_features = dyadic_features(rng, N_USERS, 3)
    model = make_model(user_features=user_features, item_features=item_features, seed=10)
    for method, features, embeddings in (("similar_items", item_features, model.item_embeddings),
                                         ("similar_users", user_features, model.user_embeddings)):
        n_rows = features.shape[0]
        representations = features.toarray() @ embeddings.astype(np.float64)
        ids, sims = getattr(model, method)(np.arange(n_rows), k=5, **{method.split("_")[1][:-1] + "_features":
                                                                       features})
        _, expected_sims = cosine_reference(representations, np.arange(n_rows), 5)
        np.testing.assert_allclose(sims, expected_sims, atol=2e-6)
        norms = np.linalg.norm(representations, axis=1)
        for query in range(n_rows):
            assert query not in ids[query]
            own = representations[ids[query]] @ representations[query] / (norms[ids[query]] * norms[query])
            np.testing.assert_allclose(sims[query], own, atol=2e-6)


# ---------------------------------------------------------------------------- threads

def test_two_threads_equal_one_thread():
    rng = np.random.default_rng(11)
    n_users, n_items = 300, 200
    user_features = dyadic_features(rng, n_users, 3)
    model = make_model(n_users, n_items, user_features=user_features, seed=11)
    seen = random_filter(rng, n_users, n_items)
    users = np.arange(n_users)
    for kwargs in ({}, {"filter_interactions": seen}, {"items": np.arange(0, n_items, 3)}):
        one = model.recommend(users, k=10, user_features=user_features, num_threads=1, **kwargs)
        two = model.recommend(users, k=10, user_features=user_features, num_threads=2, **kwargs)
        assert_recommendations_equal(two, one)
    assert_recommendations_equal(model.similar_items(np.arange(n_items), k=7, num_threads=2),
                                 model.similar_items(np.arange(n_items), k=7, num_threads=1))
    assert_recommendations_equal(
        model.similar_users(users, k=7, user_features=user_features, num_threads=2),
        model.similar_users(users, k=7, user_features=user_features, num_threads=1))
    assert_recommendations_equal(
        model.recommend(users[:40], k=10, user_features=user_features, filter_interactions=seen, num_threads=2),
        reference_recommend(model, users[:40], 10, user_features=user_features, filter_interactions=seen))


# ---------------------------------------------------------------------------- bad input

def test_recommend_bad_inputs_raise():
    model, user_features, item_features = cold_start_model(seed=12)
    ok = dict(user_features=user_features, item_features=item_features)
    for k in (0, -1):
        with pytest.raises(ValueError, match="k"):
            model.recommend(0, k=k, **ok)
    for k in (2.5, "3", None, True, np.float64(3.0)):
        with pytest.raises(TypeError, match="k"):
            model.recommend(0, k=k, **ok)
    # user ids out of range or negative
    for user_ids in (N_USERS, [0, N_USERS], -1, [-1], np.array([3, -2])):
        with pytest.raises(ValueError, match="user_ids"):
            model.recommend(user_ids, **ok)
    with pytest.raises(ValueError, match="user_ids"):  # beyond the model's users without features
        FastRank(no_components=2).fit(sp.identity(4, format="csr")).recommend(4)
    for user_ids in ([0.5], "0", None, [[0, 1]]):
        with pytest.raises((TypeError, ValueError), match="user_ids"):
            model.recommend(user_ids, **ok)
    # candidate items out of range
    for items in ([N_ITEMS], [0, -1], [1, N_ITEMS + 4]):
        with pytest.raises(ValueError, match="items"):
            model.recommend(0, items=items, **ok)
    with pytest.raises(TypeError, match="items"):
        model.recommend(0, items=[1.5], **ok)
    # filter_interactions: wrong number of columns, too few rows
    with pytest.raises(ValueError, match="columns"):
        model.recommend(0, filter_interactions=sp.csr_matrix((N_USERS, N_ITEMS - 1), dtype=np.float32), **ok)
    with pytest.raises(ValueError, match="columns"):
        model.recommend(0, filter_interactions=sp.csr_matrix((N_USERS, N_ITEMS + 1), dtype=np.float32), **ok)
    with pytest.raises(ValueError, match="filter_interactions"):
        model.recommend([1, 10], filter_interactions=sp.csr_matrix((10, N_ITEMS), dtype=np.float32), **ok)
    # feature matrices with the wrong column count
    with pytest.raises(ValueError, match="user_features"):
        model.recommend(0, user_features=user_features[:, :-1], item_features=item_features)
    with pytest.raises(ValueError, match="item_features"):
        model.recommend(0, user_features=user_features, item_features=sp.hstack([item_features, item_features]))
    with pytest.raises(ValueError, match="user_features"):
        model.recommend(0, user_features=sp.identity(N_USERS, format="csr"), item_features=item_features)


def test_similar_bad_inputs_raise():
    model, user_features, item_features = cold_start_model(seed=13)
    for method, n_rows, features, name in (("similar_items", N_ITEMS, item_features, "item"),
                                           ("similar_users", N_USERS, user_features, "user")):
        call = getattr(model, method)
        ok = {f"{name}_features": features}
        for k in (0, -2):
            with pytest.raises(ValueError, match="k"):
                call(0, k=k, **ok)
        with pytest.raises(TypeError, match="k"):
            call(0, k=1.0, **ok)
        for ids in (n_rows, [n_rows + 3], -1, [0, -1]):
            with pytest.raises(ValueError, match=f"{name}_ids"):
                call(ids, **ok)
        with pytest.raises(TypeError, match=f"{name}_ids"):
            call([0.0], **ok)
        with pytest.raises(ValueError, match=f"{name}_features"):
            call(0, **{f"{name}_features": features[:, 1:]})


def test_unfitted_model_raises():
    model = FastRank()
    for call in (lambda: model.recommend(0), lambda: model.similar_items(0), lambda: model.similar_users(0)):
        with pytest.raises(ValueError, match="not fitted"):
            call()


# ---------------------------------------------------------------------------- memory

def test_block_size_bounds_the_scoring_block():
    for n_queries, n_items in [(3000, 5000), (10 ** 6, 10 ** 5), (2, 3), (10 ** 7, 7)]:
        size = _ranking.block_size(n_queries, n_items)
        assert 1 <= size <= n_queries
        assert size * n_items <= 2 ** 23
    assert _ranking.block_size(3000, 5000) < 3000  # the smoke test below spans two blocks


def test_recommend_large_smoke():
    """recommend for 3,000 users x 5,000 items (two scoring blocks, two threads): right shapes,
    and a sample of users, both sides of the block boundary included, equals the reference."""
    rng = np.random.default_rng(14)
    n_users, n_items, d = 3000, 5000, 16
    model = make_model(30, 30, no_components=d, seed=14)
    model.user_embeddings = dyadic(rng, (n_users, d))
    model.user_biases = dyadic(rng, n_users)
    model.item_embeddings = dyadic(rng, (n_items, d))
    model.item_biases = dyadic(rng, n_items)
    seen = sp.random(n_users, n_items, density=0.01, format="csr", random_state=14, dtype=np.float32)
    ids, scores = model.recommend(np.arange(n_users), k=10, filter_interactions=seen, num_threads=2)
    assert ids.shape == scores.shape == (n_users, 10)
    assert ids.min() >= 0 and np.all(np.isfinite(scores))
    boundary = _ranking.block_size(n_users, n_items)
    sample = np.r_[0, boundary - 1, boundary, n_users - 1, rng.choice(n_users, 4, replace=False)]
    all_scores = (model.user_embeddings[sample].astype(np.float64) @ model.item_embeddings.T.astype(np.float64)
                  + model.item_biases + model.user_biases[sample, None])
    for row, user in enumerate(sample):
        s = all_scores[row].copy()
        s[seen[user].indices] = -np.inf
        order = np.lexsort((np.arange(n_items), -s))[:10]
        np.testing.assert_array_equal(ids[user], order)
        np.testing.assert_array_equal(scores[user], s[order].astype(np.float32))


def test_cold_start_user_without_any_feature():
    """An all-zero feature row has a zero representation and bias: items rank by their biases."""
    model, user_features, item_features = cold_start_model(seed=15)
    extended = sp.vstack([user_features, sp.csr_matrix((1, user_features.shape[1]))]).tocsr()
    ids, scores = model.recommend(N_USERS, k=5, user_features=extended, item_features=item_features)
    item_bias = item_features.toarray() @ model.item_biases.astype(np.float64)
    order = sorted(range(N_ITEMS), key=lambda item: (-item_bias[item], item))[:5]
    np.testing.assert_array_equal(ids[0], order)
    np.testing.assert_array_equal(scores[0], item_bias[order].astype(np.float32))
