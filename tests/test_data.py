"""fastrank.data.Dataset: mappings, matrices, LightFM compatibility, bad input, pandas, estimator."""

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from fastrank import FastRank
from fastrank.data import Dataset, IdentityFeature


def fitted(**kwargs):
    dataset = Dataset(**kwargs)
    dataset.fit(["u0", "u1", "u2"], ["i0", "i1"], user_features=["young", "old"],
                item_features=["red", "blue", "green"])
    return dataset


# ---------------------------------------------------------------- mappings and shapes

def test_fit_builds_mappings_with_identity_columns_first():
    dataset = fitted()
    user_ids, user_features, item_ids, item_features = dataset.mapping()
    assert user_ids == {"u0": 0, "u1": 1, "u2": 2}
    assert item_ids == {"i0": 0, "i1": 1}
    assert user_features == {"u0": 0, "u1": 1, "u2": 2, "young": 3, "old": 4}
    assert item_features == {"i0": 0, "i1": 1, "red": 2, "blue": 3, "green": 4}
    assert dataset.interactions_shape() == (3, 2)
    assert dataset.user_features_shape() == (3, 5)
    assert dataset.item_features_shape() == (2, 5)
    assert dataset.model_dimensions() == (5, 5)


def test_repeated_ids_are_registered_once_and_generators_are_accepted():
    dataset = Dataset()
    dataset.fit((user for user in ["a", "b", "a", "c", "b"]), iter([1, 1, 2]))
    assert dataset.mapping()[0] == {"a": 0, "b": 1, "c": 2}
    assert dataset.mapping()[2] == {1: 0, 2: 1}
    assert dataset.interactions_shape() == (3, 2)


def test_without_identity_features_only_named_features_have_columns():
    dataset = fitted(user_identity_features=False, item_identity_features=False)
    _, user_features, _, item_features = dataset.mapping()
    assert user_features == {"young": 0, "old": 1}
    assert item_features == {"red": 0, "blue": 1, "green": 2}
    assert dataset.model_dimensions() == (2, 3)
    only_users = Dataset(item_identity_features=False)
    only_users.fit(["a"], ["x", "y"])
    assert only_users.model_dimensions() == (1, 0)


def test_numpy_scalar_ids_are_stored_as_python_scalars():
    dataset = Dataset()
    dataset.fit(np.array([10, 20], dtype=np.int64), np.array(["x", "y"]))
    user_ids, _, item_ids, _ = dataset.mapping()
    assert all(type(key) is int for key in user_ids) and all(type(key) is str for key in item_ids)
    interactions, _ = dataset.build_interactions([(20, "y"), (np.int32(10), np.str_("x"))])
    assert interactions.toarray().tolist() == [[1, 0], [0, 1]]


def test_fit_partial_appends_and_keeps_every_existing_index():
    dataset = fitted()
    before = dataset.mapping()
    dataset.fit_partial(users=["u1", "u3"], items=["i2"], user_features=["old", "tall"], item_features=["red", "pink"])
    user_ids, user_features, item_ids, item_features = dataset.mapping()
    for old, new in zip(before, (user_ids, user_features, item_ids, item_features)):
        assert {key: new[key] for key in old} == old  # nothing moved
    assert user_ids["u3"] == 3 and item_ids["i2"] == 2
    # new identity columns and new features are appended in the order they were added
    assert user_features["u3"] == 5 and user_features["tall"] == 6
    assert item_features["i2"] == 5 and item_features["pink"] == 6
    assert dataset.user_features_shape() == (4, 7) and dataset.item_features_shape() == (3, 7)
    # the maps iterate in column order, as LightFM's: list(feature_map)[column] is its label
    for mapping in (user_features, item_features):
        assert list(mapping.values()) == list(range(len(mapping)))
    assert list(user_features) == ["u0", "u1", "u2", "young", "old", "u3", "tall"]


def test_fit_partial_on_a_new_dataset_and_fit_resets():
    dataset = Dataset()
    dataset.fit_partial(items=["x"])
    dataset.fit_partial(users=["a"])
    assert dataset.interactions_shape() == (1, 1)
    dataset.fit(["b", "c"], ["y"])
    assert dataset.mapping()[0] == {"b": 0, "c": 1}
    assert dataset.mapping()[2] == {"y": 0}
    assert dataset.model_dimensions() == (2, 1)


def test_ids_and_feature_names_are_separate_namespaces():
    dataset = Dataset()
    dataset.fit(["alice", "bob"], ["alice", "film"], user_features=["alice"], item_features=["bob"])
    user_ids, user_features, item_ids, item_features = dataset.mapping()
    assert user_ids == {"alice": 0, "bob": 1} and item_ids == {"alice": 0, "film": 1}
    # the feature "alice" is its own column, distinct from user alice's identity column
    assert dataset.user_features_shape() == (2, 3)
    assert user_features == {IdentityFeature("alice"): 0, "bob": 1, "alice": 2}
    assert item_features == {"alice": 0, "film": 1, "bob": 2}  # no collision on the item side
    features = dataset.build_user_features([("bob", ["alice"])], normalize=False).toarray()
    np.testing.assert_array_equal(features, [[1, 0, 0], [0, 1, 1]])
    interactions, _ = dataset.build_interactions([("alice", "alice")])
    assert interactions.toarray().tolist() == [[1, 0], [0, 0]]


def test_identity_feature_key():
    assert IdentityFeature("a") == IdentityFeature("a") and IdentityFeature("a") != IdentityFeature("b")
    assert IdentityFeature("a") != "a" and IdentityFeature("a") != ("a",)
    assert len({IdentityFeature(1), IdentityFeature(1), 1}) == 2
    assert repr(IdentityFeature("a")) == "IdentityFeature('a')"


# ---------------------------------------------------------------- interactions

def test_build_interactions_from_pairs_and_triples():
    dataset = fitted()
    interactions, weights = dataset.build_interactions(
        [("u2", "i1", 3.0), ("u0", "i0"), ("u2", "i1", 1.5), ("u1", "i1", 0.0)]
    )
    for matrix in (interactions, weights):
        assert sp.isspmatrix_coo(matrix) and matrix.shape == (3, 2)
    assert interactions.dtype == np.int32 and weights.dtype == np.float32
    np.testing.assert_array_equal(interactions.toarray(), [[1, 0], [0, 1], [0, 1]])
    np.testing.assert_array_equal(weights.toarray(), [[1, 0], [0, 0], [0, 4.5]])
    # canonical: sorted by user then item, duplicates merged, the same entries in both (zero weight kept)
    assert interactions.row.tolist() == weights.row.tolist() == [0, 1, 2]
    assert interactions.col.tolist() == weights.col.tolist() == [0, 1, 1]
    assert weights.data.tolist() == [1.0, 0.0, 4.5]


def test_build_interactions_with_no_records():
    interactions, weights = fitted().build_interactions([])
    assert interactions.shape == weights.shape == (3, 2) and interactions.nnz == weights.nnz == 0


@pytest.mark.parametrize(
    "record, error, message",
    [
        (("nobody", "i0"), ValueError, "user id 'nobody'"),
        (("u0", "nothing"), ValueError, "item id 'nothing'"),
        (("u0",), ValueError, "1 fields"),
        (("u0", "i0", 1.0, "extra"), ValueError, "4 fields"),
        (("u0", "i0", float("nan")), ValueError, "nan"),
        (("u0", "i0", float("inf")), ValueError, "inf"),
        (("u0", "i0", "heavy"), TypeError, "real number"),
        (("u0", "i0", True), TypeError, "real number"),
        ("u0", TypeError, "tuple"),
        (7, TypeError, "tuple"),
        ({"u0": "i0"}, TypeError, "tuple"),
    ],
)
def test_build_interactions_rejects_bad_records(record, error, message):
    with pytest.raises(error, match=message):
        fitted().build_interactions([("u1", "i1"), record])


def test_build_interactions_reports_the_record_position():
    with pytest.raises(ValueError, match="record 2"):
        fitted().build_interactions([("u1", "i1"), ("u0", "i0"), ("ghost", "i0")])


def test_build_interactions_rejects_a_string_instead_of_records():
    with pytest.raises(TypeError, match="iterable"):
        fitted().build_interactions("u0i0")


# ---------------------------------------------------------------- features

def test_build_item_features_normalised_with_identity():
    dataset = fitted()
    features = dataset.build_item_features([("i0", ["red", "blue"]), ("i1", {"green": 2.0})])
    assert sp.isspmatrix_csr(features) and features.dtype == np.float32
    assert features.indptr.dtype == np.int32 and features.indices.dtype == np.int32
    np.testing.assert_allclose(
        features.toarray(),
        [[1 / 3, 0, 1 / 3, 1 / 3, 0], [0, 1 / 3, 0, 0, 2 / 3]],
        rtol=1e-6,
    )
    np.testing.assert_allclose(np.asarray(abs(features).sum(axis=1)).ravel(), 1.0, rtol=1e-6)


def test_build_user_features_unnormalised_sums_repeats_and_fills_missing_rows_with_identity():
    dataset = fitted()
    features = dataset.build_user_features(
        [("u0", ["young"]), ("u0", {"young": 0.5, "old": 2.0}), ("u2", np.array(["old"]))], normalize=False
    )
    np.testing.assert_array_equal(
        features.toarray(), [[1, 0, 0, 1.5, 2.0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 1]]
    )
    assert features.has_sorted_indices and features.has_canonical_format


def test_normalize_divides_by_the_absolute_sum():
    dataset = fitted(user_identity_features=False)
    features = dataset.build_user_features([("u0", {"young": -1.0, "old": 3.0}), ("u1", ["young"]),
                                            ("u2", ["old"])])
    np.testing.assert_allclose(features.toarray(), [[-0.25, 0.75], [1, 0], [0, 1]])


def test_empty_feature_rows_cannot_be_normalised():
    dataset = fitted(user_identity_features=False)
    with pytest.raises(ValueError, match=r"cannot normalize: users \['u1', 'u2'\]"):
        dataset.build_user_features([("u0", ["young"])])
    with pytest.raises(ValueError, match=r"users \['u0'\]"):
        dataset.build_user_features([("u0", []), ("u1", ["old"]), ("u2", ["old"])])
    with pytest.raises(ValueError, match=r"users \['u2'\]"):  # all-zero weights are an empty row
        dataset.build_user_features([("u0", ["old"]), ("u1", ["old"]), ("u2", {"old": 0.0})])
    # without normalisation an empty row is allowed (the user's representation is zero)
    features = dataset.build_user_features([("u0", ["young"])], normalize=False)
    assert features.shape == (3, 2) and features.nnz == 1


@pytest.mark.parametrize(
    "record, error, message",
    [
        (("u9", ["young"]), ValueError, "user id 'u9'"),
        (("u0", ["purple"]), ValueError, "user feature 'purple'"),
        (("u0", {"purple": 1.0}), ValueError, "user feature 'purple'"),
        (("u0", ["i0"]), ValueError, "user feature 'i0'"),  # an item id is not a user feature
        (("u0", {"young": float("nan")}), ValueError, "finite"),
        (("u0", {"young": "much"}), TypeError, "real number"),
        (("u0", "young"), TypeError, "list of names or a dict"),
        (("u0", 5), TypeError, "list of names or a dict"),
        (("u0",), ValueError, "1 fields"),
        (("u0", ["young"], 1.0), ValueError, "3 fields"),
        ("u0", TypeError, "pair"),
    ],
)
def test_build_features_rejects_bad_records(record, error, message):
    with pytest.raises(error, match=message):
        fitted().build_user_features([record])


def test_a_user_id_is_not_a_user_feature():
    with pytest.raises(ValueError, match="user feature 'u1'"):
        fitted().build_user_features([("u0", ["u1"])])


# ---------------------------------------------------------------- fit validation

@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(users="abc", items=["x"]), TypeError, "users must be an iterable"),
        (dict(users=["a"], items=3.5), TypeError, "items must be an iterable"),
        (dict(users=[["a"]], items=["x"]), TypeError, "user id must be hashable"),
        (dict(users=["a"], items=[float("nan")]), ValueError, "item id must not be NaN"),
        (dict(users=["a"], items=["x"], item_features=[{}]), TypeError, "item feature name must be hashable"),
        (dict(users=["a"], items=["x"], user_features="tall"), TypeError, "user_features must be an iterable"),
        (dict(users=5, items=["x"]), TypeError, "users must be an iterable"),
    ],
)
def test_fit_rejects_bad_arguments(arguments, error, message):
    with pytest.raises(error, match=message):
        Dataset().fit(**arguments)


def test_a_rejected_fit_partial_changes_nothing():
    dataset = fitted()
    before = dataset.mapping()
    with pytest.raises(TypeError):
        dataset.fit_partial(users=["new"], items=["fresh", ["unhashable"]])
    assert dataset.mapping() == before
    with pytest.raises(TypeError):  # fit too: it had forgotten every mapping before refusing
        dataset.fit(["other"], ["fresh", ["unhashable"]])
    assert dataset.mapping() == before
    assert dataset.build_interactions([("u1", "i0")])[0].nnz == 1


# ---------------------------------------------------------------- the estimator

def test_dataset_to_fastrank_fit_and_predict():
    dataset = Dataset()
    users = [f"user{u}" for u in range(30)]
    items = [f"item{i}" for i in range(20)]
    dataset.fit(users, items, item_features=["even", "odd"])
    rng = np.random.default_rng(0)
    # users 0-14 like even items, users 15-29 odd items
    records = [(users[u], items[i], float(rng.integers(1, 4))) for u in range(30) for i in range(20)
               if (i % 2 == 0) == (u < 15) and rng.random() < 0.5]
    interactions, weights = dataset.build_interactions(records)
    item_features = dataset.build_item_features(
        [(item, ["even" if i % 2 == 0 else "odd"]) for i, item in enumerate(items)]
    )
    model = FastRank(no_components=8, loss="warp", random_state=0)
    model.fit(interactions, item_features=item_features, sample_weight=weights, epochs=30)
    _, _, item_map, _ = dataset.mapping()
    even = [item_map[f"item{i}"] for i in range(0, 20, 2)]
    odd = [item_map[f"item{i}"] for i in range(1, 20, 2)]
    scores = model.predict(0, np.arange(20), item_features=item_features)
    assert scores.dtype == np.float32 and scores.shape == (20,)
    assert scores[even].mean() > scores[odd].mean()
    scores = model.predict(29, np.arange(20), item_features=item_features)
    assert scores[odd].mean() > scores[even].mean()


def test_fit_partial_growth_keeps_model_parameters_aligned():
    dataset = fitted()
    interactions, _ = dataset.build_interactions([("u0", "i0"), ("u1", "i1"), ("u2", "i0")])
    item_features = dataset.build_item_features([("i0", ["red"]), ("i1", ["blue"])])
    model = FastRank(no_components=4, loss="bpr", random_state=0).fit(interactions, item_features=item_features)
    before = model.item_embeddings.copy()
    assert before.shape[0] == dataset.model_dimensions()[1]
    dataset.fit_partial(users=["u3"], items=["i2"], item_features=["pink"])
    interactions, _ = dataset.build_interactions([("u0", "i0"), ("u3", "i2")])
    item_features = dataset.build_item_features([("i0", ["red"]), ("i1", ["blue"]), ("i2", ["pink", "red"])])
    model.fit_partial(interactions, item_features=item_features, epochs=0)
    assert model.item_embeddings.shape[0] == dataset.model_dimensions()[1] == 7
    np.testing.assert_array_equal(model.item_embeddings[: before.shape[0]], before)


# ---------------------------------------------------------------- pandas

def test_frame_helpers_need_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match="pip install pandas"):
        Dataset.from_frame(object(), "user", "item")
    with pytest.raises(ImportError, match="needs pandas"):
        fitted().build_interactions_from_frame(object(), "user", "item")


def test_from_frame_matches_the_tuple_api():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"user": ["b", "a", "b", "c"], "item": [3, 1, 1, 3], "stars": [5.0, 4.0, 2.0, 1.0]})
    dataset = Dataset.from_frame(frame, "user", "item", item_features=["new"], user_identity_features=False)
    user_ids, user_features, item_ids, item_features = dataset.mapping()
    assert user_ids == {"b": 0, "a": 1, "c": 2} and item_ids == {3: 0, 1: 1}
    assert user_features == {} and item_features == {3: 0, 1: 1, "new": 2}
    for weight_col in (None, "stars"):
        from_frame = dataset.build_interactions_from_frame(frame, "user", "item", weight_col=weight_col)
        columns = ["user", "item"] + ([weight_col] if weight_col else [])
        from_tuples = dataset.build_interactions(frame[columns].itertuples(index=False, name=None))
        for got, expected in zip(from_frame, from_tuples):
            assert got.dtype == expected.dtype and got.shape == expected.shape == (3, 2)
            np.testing.assert_array_equal(got.toarray(), expected.toarray())
    _, weights = dataset.build_interactions_from_frame(frame, "user", "item", weight_col="stars")
    assert weights.toarray().tolist() == [[5.0, 2.0], [0.0, 4.0], [1.0, 0.0]]


def test_frame_ids_match_as_dict_keys_do():
    """The frame's ids are looked up with the mapping's own equality: 1 and 1.0 are one id, the
    string "1" another; categorical and object columns work like plain ones."""
    pd = pytest.importorskip("pandas")
    dataset = Dataset()
    dataset.fit([1, "1", 2.5], ["x", "y"])
    for users in ([1, "1", 2.5, 1], [1.0, "1", 2.5, True]):
        frame = pd.DataFrame({"user": pd.Series(users, dtype=object), "item": ["x", "y", "y", "x"], "w": 1.0})
        for column in (frame["user"], frame["user"].astype("category")):
            _, weights = dataset.build_interactions_from_frame(frame.assign(user=column), "user", "item",
                                                               weight_col="w")
            np.testing.assert_array_equal(weights.toarray(), [[2, 0], [0, 1], [0, 1]])  # rows 0 and 0 summed
    with pytest.raises(ValueError, match="user id 2 in column 'user' is not in the dataset"):
        dataset.build_interactions_from_frame(pd.DataFrame({"user": [2], "item": ["x"]}), "user", "item")


def test_frame_bad_input():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "w": [1.0, float("nan")], "s": ["1", "2"],
                          "big": [1.0, float("inf")]})
    dataset = Dataset.from_frame(frame, "user", "item")
    with pytest.raises(ValueError, match="'nope' is not a column"):
        dataset.build_interactions_from_frame(frame, "nope", "item")
    with pytest.raises(ValueError, match="column 'w' has 1 missing values"):
        dataset.build_interactions_from_frame(frame, "user", "item", weight_col="w")
    with pytest.raises(ValueError, match="non-finite value inf"):
        dataset.build_interactions_from_frame(frame, "user", "item", weight_col="big")
    with pytest.raises(TypeError, match="numeric"):
        dataset.build_interactions_from_frame(frame, "user", "item", weight_col="s")
    with pytest.raises(ValueError, match="user id 'z'"):
        dataset.build_interactions_from_frame(pd.DataFrame({"user": ["a", "z"], "item": ["x", "x"]}), "user", "item")
    with pytest.raises(ValueError, match="missing values"):
        Dataset.from_frame(pd.DataFrame({"user": ["a", None], "item": ["x", "y"]}), "user", "item")
    with pytest.raises(TypeError, match="DataFrame"):
        Dataset.from_frame({"user": ["a"], "item": ["x"]}, "user", "item")
