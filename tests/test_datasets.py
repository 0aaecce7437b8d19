"""fastrank.datasets: data home, MovieLens 100K (real data and fake archives), StackExchange (synthetic
files of the real schema), downloads through a substituted opener, and the synthetic generators.

No test uses the network: an autouse fixture replaces the opener, and fails any test that reaches
it without asking for it.
"""

import hashlib
import io
import math
import os
import zipfile
from pathlib import Path
from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import data_home, require_file

from fastrank import FastRank
from fastrank.cross_validation import item_cold_start_split, user_cold_start_split
from fastrank.datasets import (
    _home,
    fetch_movielens,
    fetch_stackexchange,
    get_data_home,
    make_hybrid,
    make_popularity_triangle,
)
from fastrank.datasets import movielens, stackexchange


class Opener:
    """Stands in for ``urllib.request.urlopen``: serves ``payload`` (or raises ``error``), records URLs."""

    def __init__(self, payload=None, error=None):
        self.payload, self.error, self.urls = payload, error, []

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        if self.error is not None:
            raise self.error
        return io.BytesIO(self.payload)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    guard = Opener(error=AssertionError("a test tried to use the network"))
    monkeypatch.setattr(_home, "urlopen", guard)
    yield
    assert guard.urls == [], f"network access attempted: {guard.urls}"


def serve(monkeypatch, payload=None, error=None):
    opener = Opener(payload, error)
    monkeypatch.setattr(_home, "urlopen", opener)
    return opener


def no_partial_files(directory):
    return not any(name.endswith(".part") for name in os.listdir(directory))


# ---------------------------------------------------------------- data home

def test_data_home_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FASTRANK_DATA", raising=False)
    assert get_data_home() == str(tmp_path / "fastrank_data")
    monkeypatch.setenv("FASTRANK_DATA", str(tmp_path / "from_env"))
    assert get_data_home() == str(tmp_path / "from_env")
    assert get_data_home(tmp_path / "argument") == str(tmp_path / "argument")
    assert get_data_home("~/x") == str(tmp_path / "x")
    monkeypatch.setenv("FASTRANK_DATA", "")
    assert get_data_home() == str(tmp_path / "fastrank_data")
    assert not (tmp_path / "fastrank_data").exists()  # resolving does not create it


# ---------------------------------------------------------------- MovieLens: the real data

def real_home():
    require_file(data_home() / "ml-100k" / "ua.base")
    return data_home()


def read_table(name):
    return np.loadtxt(data_home() / "ml-100k" / name, dtype=np.int64)


def test_movielens_ratings_and_default_item_features():
    data = fetch_movielens(real_home(), download_if_missing=False)
    assert set(data) == {"train", "test", "item_features", "item_feature_labels", "item_labels"}
    train, test = data["train"], data["test"]
    for matrix, name, count in ((train, "ua.base", 90570), (test, "ua.test", 9430)):
        assert sp.isspmatrix_coo(matrix) and matrix.shape == (943, 1682) and matrix.dtype == np.int32  # LightFM's
        assert matrix.nnz == count
        table = read_table(name)
        expected = sp.coo_matrix((table[:, 2], (table[:, 0] - 1, table[:, 1] - 1)), shape=(943, 1682))
        np.testing.assert_array_equal(matrix.toarray(), expected.toarray())
    assert train.multiply(test).nnz == 0
    everything = read_table("u.data")
    assert train.nnz + test.nnz == everything.shape[0]
    assert np.diff(test.tocsr().indptr).tolist() == [10] * 943
    features = data["item_features"]
    assert sp.isspmatrix_csr(features) and features.dtype == np.float32 and features.shape == (1682, 1682)
    assert (features != sp.identity(1682)).nnz == 0
    assert data["item_labels"][0] == "Toy Story (1995)" and data["item_labels"].shape == (1682,)
    assert data["item_feature_labels"].tolist() == data["item_labels"].tolist()


def test_movielens_genres_match_u_item():
    data = fetch_movielens(real_home(), genre_features=True, download_if_missing=False)
    with open(data_home() / "ml-100k" / "u.item", encoding="latin-1") as handle:
        flags = np.array([[int(v) for v in line.rstrip("\n").split("|")[-19:]] for line in handle if line.strip()])
    features = data["item_features"]
    assert features.shape == (1682, 1682 + 19)
    np.testing.assert_array_equal(features[:, 1682:].toarray(), flags)
    assert (features[:, :1682] != sp.identity(1682)).nnz == 0
    labels = data["item_feature_labels"]
    assert labels[1682:].tolist()[:3] == ["genre:unknown", "genre:Action", "genre:Adventure"]
    assert labels[-1] == "genre:Western" and labels.shape == (1701,)
    toy_story = {labels[column] for column in features[0].indices if column >= 1682}
    assert toy_story == {"genre:Animation", "genre:Children's", "genre:Comedy"}
    only_genres = fetch_movielens(real_home(), indicator_features=False, genre_features=True,
                                  download_if_missing=False)
    assert only_genres["item_features"].shape == (1682, 19)
    np.testing.assert_array_equal(only_genres["item_features"].toarray(), flags)


def age_bucket(age):
    for upper, label in ((18, "under 18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"),
                         (56, "50-55")):
        if age < upper:
            return label
    return "56+"


def test_movielens_user_features():
    data = fetch_movielens(real_home(), user_features=True, download_if_missing=False)
    features, labels = data["user_features"], data["user_feature_labels"]
    assert sp.isspmatrix_csr(features) and features.dtype == np.float32
    assert features.shape == (943, 943 + 7 + 2 + 21) and labels.shape == (features.shape[1],)
    assert (features[:, :943] != sp.identity(943)).nnz == 0
    with open(data_home() / "ml-100k" / "u.user", encoding="latin-1") as handle:
        users = [line.strip().split("|") for line in handle if line.strip()]
    for row, (user_id, age, gender, occupation, _) in enumerate(users):
        got = {labels[column] for column in features[row].indices}
        assert got == {f"user:{user_id}", f"age:{age_bucket(int(age))}", f"gender:{gender}",
                       f"occupation:{occupation}"}, row
    assert features.data.tolist() == [1.0] * features.nnz
    column = labels.tolist().index("gender:F")
    assert features[:, column].nnz == 273
    without_identity = fetch_movielens(real_home(), user_features=True, indicator_features=False, genre_features=True,
                                       download_if_missing=False)
    assert without_identity["user_features"].shape == (943, 30)
    assert np.diff(without_identity["user_features"].indptr).tolist() == [3] * 943


def test_movielens_min_rating():
    data = fetch_movielens(real_home(), min_rating=4.0, download_if_missing=False)
    for matrix, name in ((data["train"], "ua.base"), (data["test"], "ua.test")):
        assert matrix.nnz == int((read_table(name)[:, 2] >= 4).sum())
        assert matrix.data.min() == 4
    assert data["train"].shape == (943, 1682)
    # LightFM's positional order: (data_home, indicator_features, genre_features, min_rating, ...)
    positional = fetch_movielens(real_home(), True, False, 4.0, False)
    assert (positional["train"] != data["train"]).nnz == 0 and "user_features" not in positional
    with pytest.raises(TypeError):
        fetch_movielens(real_home(), True, False, 4.0, False, True)  # user_features is keyword-only


def test_movielens_trains_a_model_with_user_and_genre_features():
    data = fetch_movielens(real_home(), genre_features=True, user_features=True, min_rating=4.0,
                           download_if_missing=False)
    model = FastRank(no_components=8, loss="warp", random_state=0)
    model.fit(data["train"], user_features=data["user_features"], item_features=data["item_features"], epochs=1)
    scores = model.predict(0, np.arange(1682), user_features=data["user_features"],
                           item_features=data["item_features"])
    assert scores.shape == (1682,) and np.all(np.isfinite(scores))


@pytest.mark.parametrize("arguments, message", [
    (dict(indicator_features=False, genre_features=False), "at least one"),
    (dict(min_rating="4"), "min_rating"),
    (dict(min_rating=float("nan")), "min_rating"),
])
def test_movielens_rejects_bad_parameters(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        fetch_movielens(tmp_path, download_if_missing=False, **arguments)


# ---------------------------------------------------------------- MovieLens: fake archives

GENRES = [f"genre{g}" for g in range(19)]


def fake_movielens_files():
    """A tiny dataset in the GroupLens layout: 3 users, 4 items."""
    def flags(*on):
        return "|".join("1" if g in on else "0" for g in range(19))

    items = [
        f"1|Alpha (1990)|01-Jan-1990||http://a|{flags(0, 3)}",
        f"2|Caf\xe9 (1995)|01-Jan-1995||http://b|{flags(18)}",
        f"3|Gamma (1997)|||http://c|{flags(1, 2, 3)}",
        f"4|Delta (1998)|01-Jan-1998||http://d|{flags()}",
    ]
    return {
        "u.genre": "".join(f"{genre}|{g}\n" for g, genre in enumerate(GENRES)).encode() + b"\n",
        "u.occupation": b"artist\ndoctor\n",
        "u.user": b"1|17|F|artist|12345\n2|30|M|doctor|55555\n3|60|F|artist|00000\n",
        "u.item": ("\n".join(items) + "\n").encode("latin-1"),
        "ua.base": b"1\t1\t5\t100\n1\t3\t2\t101\n2\t2\t4\t102\n3\t4\t1\t103\n",
        "ua.test": b"2\t1\t3\t104\n3\t3\t5\t105\n",
        "u.data": b"",
    }


def write_zip(path, files, folder="ml-100k"):
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(f"{folder}/{name}", content)
    return path


def check_fake(data):
    np.testing.assert_array_equal(data["train"].toarray(), [[5, 0, 2, 0], [0, 4, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(data["test"].toarray(), [[0, 0, 0, 0], [3, 0, 0, 0], [0, 0, 5, 0]])
    assert data["item_labels"].tolist() == ["Alpha (1990)", "Caf\xe9 (1995)", "Gamma (1997)", "Delta (1998)"]
    genres = data["item_features"][:, 4:].toarray()
    expected = np.zeros((4, 19))
    expected[0, [0, 3]] = expected[1, 18] = expected[2, [1, 2, 3]] = 1
    np.testing.assert_array_equal(genres, expected)
    labels = data["user_feature_labels"].tolist()
    assert labels[:3] == ["user:1", "user:2", "user:3"]
    assert labels[-2:] == ["occupation:artist", "occupation:doctor"]
    rows = [{labels[c] for c in data["user_features"][row].indices} for row in range(3)]
    assert rows[0] == {"user:1", "age:under 18", "gender:F", "occupation:artist"}
    assert rows[1] == {"user:2", "age:25-34", "gender:M", "occupation:doctor"}
    assert rows[2] == {"user:3", "age:56+", "gender:F", "occupation:artist"}


def test_movielens_reads_the_zip_archive(tmp_path):
    write_zip(tmp_path / "ml-100k.zip", fake_movielens_files())
    check_fake(fetch_movielens(tmp_path, genre_features=True, user_features=True, download_if_missing=False))


def test_movielens_reads_lightfms_cached_archive(tmp_path, monkeypatch):
    # LightFM keeps the same archive as <home>/movielens100k/movielens.zip (home ~/lightfm_data)
    lightfm_home = tmp_path / "lightfm_data"
    (lightfm_home / "movielens100k").mkdir(parents=True)
    write_zip(lightfm_home / "movielens100k" / "movielens.zip", fake_movielens_files())
    check_fake(fetch_movielens(lightfm_home, genre_features=True, user_features=True, download_if_missing=False))
    # with no data_home, after fastrank's own home, LightFM's default home is searched too
    monkeypatch.setenv("FASTRANK_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(movielens, "LIGHTFM_HOME", str(lightfm_home))
    check_fake(fetch_movielens(genre_features=True, user_features=True, download_if_missing=False))
    monkeypatch.setattr(movielens, "LIGHTFM_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(OSError, match="nowhere.*download_if_missing=False"):
        fetch_movielens(download_if_missing=False)


def test_movielens_reads_the_extracted_folder_first(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for name, content in fake_movielens_files().items():
        (folder / name).write_bytes(content)
    (tmp_path / "ml-100k.zip").write_bytes(b"not a zip: must not be read while the folder is complete")
    check_fake(fetch_movielens(tmp_path, genre_features=True, user_features=True, download_if_missing=False))
    (folder / "ua.test").unlink()  # an incomplete folder falls back to the archive, here corrupt
    with pytest.raises(OSError, match="not a readable zip"):
        fetch_movielens(tmp_path, download_if_missing=False)


def test_movielens_missing_without_download_raises_oserror(tmp_path):
    with pytest.raises(OSError, match="MovieLens 100K was not found.*download_if_missing=False"):
        fetch_movielens(tmp_path / "empty", download_if_missing=False)
    assert not (tmp_path / "empty").exists()


@pytest.mark.parametrize("change, error, message", [
    (lambda files: files.pop("u.user"), OSError, "lacks ml-100k/u.user"),
    (lambda files: files.update({"u.item": b"1|only three|fields\n"}), ValueError, "u.item line 1 has 3"),
    (lambda files: files.update({"ua.base": b"1\t1\t5\n"}), ValueError, "3 columns, expected 4"),
    (lambda files: files.update({"ua.base": b"1\t9\t5\t100\n"}), ValueError, "outside"),
    (lambda files: files.update({"ua.test": b"1\tx\t5\t100\n"}), ValueError, "not a table of integers"),
    (lambda files: files.update({"u.user": b"2|17|F|artist|1\n1|30|M|doctor|2\n"}), ValueError, "ids 1..2 in order"),
    (lambda files: files.update({"u.user": b"1|17|F|pilot|1\n2|30|M|doctor|2\n3|6|F|artist|3\n"}),
     ValueError, "'pilot' is not listed"),
    (lambda files: files.update({"u.genre": b"a|0\nb|2\n"}), ValueError, "genres 0..1"),
])
def test_movielens_rejects_archives_of_the_wrong_schema(tmp_path, change, error, message):
    files = fake_movielens_files()
    change(files)
    write_zip(tmp_path / "ml-100k.zip", files)
    with pytest.raises(error, match=message):
        fetch_movielens(tmp_path, user_features=True, download_if_missing=False)


def test_movielens_rejects_a_corrupt_zip(tmp_path):
    (tmp_path / "ml-100k.zip").write_bytes(b"PK\x03\x04 truncated garbage")
    with pytest.raises(OSError, match="not a readable zip"):
        fetch_movielens(tmp_path, download_if_missing=False)


def test_movielens_download_is_verified_and_atomic(tmp_path, monkeypatch):
    payload = write_zip(io.BytesIO(), fake_movielens_files()).getvalue()
    home = tmp_path / "home"
    # the real GroupLens checksum rejects the fake archive: nothing is left behind
    opener = serve(monkeypatch, payload)
    with pytest.raises(OSError, match="SHA-256 mismatch"):
        fetch_movielens(home)
    assert opener.urls == [movielens.ML100K_URL]
    assert not (home / "ml-100k.zip").exists() and no_partial_files(home)
    # with the checksum of the served bytes it is accepted, stored and read
    monkeypatch.setattr(movielens, "ML100K_SHA256", hashlib.sha256(payload).hexdigest())
    check_fake(fetch_movielens(home, genre_features=True, user_features=True))
    assert (home / "ml-100k.zip").read_bytes() == payload and no_partial_files(home)
    serve(monkeypatch, error=AssertionError("second download"))
    check_fake(fetch_movielens(home, genre_features=True, user_features=True))  # now read from disk


def test_movielens_download_structure_check_and_transfer_errors(tmp_path, monkeypatch):
    files = fake_movielens_files()
    files.pop("ua.test")
    payload = write_zip(io.BytesIO(), files).getvalue()
    monkeypatch.setattr(movielens, "ML100K_SHA256", hashlib.sha256(payload).hexdigest())
    serve(monkeypatch, payload)
    with pytest.raises(OSError, match="lacks ml-100k/ua.test"):
        fetch_movielens(tmp_path)
    assert os.listdir(tmp_path) == []
    serve(monkeypatch, error=OSError("connection refused"))
    with pytest.raises(OSError, match="connection refused"):
        fetch_movielens(tmp_path)
    assert os.listdir(tmp_path) == []


def test_movielens_checksum_is_the_grouplens_archive():
    assert movielens.ML100K_SHA256 == "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
    assert movielens.ML100K_URL == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"


# ---------------------------------------------------------------- StackExchange

def stackexchange_arrays(rows, cols, times, shape, tags=None, n_tags=3):
    tags = tags if tags is not None else [(q, q % n_tags) for q in range(shape[1])]
    return {
        "interactions_row": np.asarray(rows, dtype=np.int32),
        "interactions_col": np.asarray(cols, dtype=np.int32),
        "interactions_data": np.asarray(times, dtype=np.int64),
        "interactions_shape": np.array([shape], dtype=np.int64),  # stored as a 1x2 array
        "features_row": np.array([q for q, _ in tags], dtype=np.int32),
        "features_col": np.array([t for _, t in tags], dtype=np.int32),
        "features_data": np.ones(len(tags), dtype=np.float32),
        "features_shape": np.array([[shape[1], n_tags]], dtype=np.int64),
        "labels": np.array([f"tag{t}" for t in range(n_tags)]),
    }


def write_stackexchange(home, arrays, dataset="crossvalidated"):
    folder = home / "stackexchange" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "data.npz", **arrays)
    return folder / "data.npz"


def handmade():
    # (user, question, time); (0, 0) answered twice: 10 + 50 = 60 after merging
    entries = [(0, 0, 10), (0, 0, 50), (0, 1, 20), (0, 2, 30), (1, 0, 40), (1, 1, 45), (1, 3, 55), (2, 2, 70),
               (2, 3, 5)]
    rows, cols, times = zip(*entries)
    return stackexchange_arrays(rows, cols, times, (3, 4))


def test_stackexchange_handmade_split(tmp_path):
    write_stackexchange(tmp_path, handmade())
    # merged times sorted: 5 20 30 40 45 55 60 70; position floor(8 * 0.75) = 6 -> cutoff 60
    data = fetch_stackexchange("crossvalidated", test_set_fraction=0.25, data_home=tmp_path,
                               download_if_missing=False)
    # train counts: user 0 -> 2, user 1 -> 3, user 2 -> 1 (dropped: needs more than 1)
    assert data["train"].shape == data["test"].shape == (2, 4)
    np.testing.assert_array_equal(data["train"].toarray(), [[0, 1, 1, 0], [1, 1, 0, 1]])
    np.testing.assert_array_equal(data["test"].toarray(), [[1, 0, 0, 0], [0, 0, 0, 0]])
    assert data["train"].dtype == np.float32 and sp.isspmatrix_coo(data["train"])
    keep_all = fetch_stackexchange("crossvalidated", test_set_fraction=0.25, min_training_interactions=0,
                                   data_home=tmp_path, download_if_missing=False)
    np.testing.assert_array_equal(keep_all["test"].toarray(), [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]])


def expected_split(arrays, fraction, minimum):
    """The split rule, by brute force over Python dicts."""
    merged = defaultdict(int)
    for r, c, t in zip(arrays["interactions_row"], arrays["interactions_col"], arrays["interactions_data"]):
        merged[(int(r), int(c))] += int(t)
    ordered = sorted(merged.values())
    cutoff = ordered[math.floor(len(ordered) * (1 - fraction))]
    train = {key for key, t in merged.items() if t < cutoff}
    test = {key for key, t in merged.items() if t >= cutoff}
    n_users = int(arrays["interactions_shape"].ravel()[0])
    counts = [sum(1 for r, _ in train if r == user) for user in range(n_users)]
    # LightFM filters only when the minimum is above 0: at 0 a user without training entries stays
    kept = [user for user in range(n_users) if minimum == 0 or counts[user] > minimum]
    renumber = {user: row for row, user in enumerate(kept)}
    return ({(renumber[r], c) for r, c in train if r in renumber},
            {(renumber[r], c) for r, c in test if r in renumber}, len(kept))


@pytest.mark.parametrize("fraction, minimum", [(0.2, 1), (0.5, 0), (0.3, 3), (0.9, 2), (0.9, 0)])
def test_stackexchange_split_rule(tmp_path, fraction, minimum):
    rng = np.random.default_rng(0)
    n = 400
    rows = np.minimum(rng.geometric(0.12, n) - 1, 19)  # skewed activity among users 0-19
    rows[:25] = np.arange(25)  # every user answers at least once; users 20-24 exactly once
    cols = rng.integers(0, 40, n)  # many duplicate (user, question) pairs
    times = rng.integers(1_300_000_000, 1_300_000_300, n)  # few distinct values: ties at the cutoff
    arrays = stackexchange_arrays(rows, cols, times, (25, 40))
    write_stackexchange(tmp_path, arrays, "stackoverflow")
    data = fetch_stackexchange("stackoverflow", test_set_fraction=fraction, min_training_interactions=minimum,
                               data_home=tmp_path, download_if_missing=False)
    train, test, n_kept = expected_split(arrays, fraction, minimum)
    assert n_kept == 25 if minimum == 0 else 0 < n_kept < 25
    assert data["train"].shape == data["test"].shape == (n_kept, 40)
    got_train = set(zip(data["train"].row.tolist(), data["train"].col.tolist()))
    got_test = set(zip(data["test"].row.tolist(), data["test"].col.tolist()))
    assert got_train == train and got_test == test
    assert data["train"].nnz == len(train) and data["test"].nnz == len(test)  # no duplicates left
    assert set(data["train"].data.tolist()) | set(data["test"].data.tolist()) == {1.0}
    if minimum == 0 and fraction == 0.9:  # the case that tells the two rules apart is there
        assert (data["train"].getnnz(axis=1) == 0).any()


def test_stackexchange_item_features(tmp_path):
    arrays = handmade()
    write_stackexchange(tmp_path, arrays)
    kwargs = dict(data_home=tmp_path, download_if_missing=False)
    identity = fetch_stackexchange("crossvalidated", **kwargs)
    assert identity["item_features"].shape == (4, 4) and (identity["item_features"] != sp.identity(4)).nnz == 0
    assert identity["item_feature_labels"].tolist() == [f"question_id:{q}" for q in range(4)]
    tags = np.zeros((4, 3))
    tags[[0, 1, 2, 3], [0, 1, 2, 0]] = 1
    only_tags = fetch_stackexchange("crossvalidated", indicator_features=False, tag_features=True, **kwargs)
    np.testing.assert_array_equal(only_tags["item_features"].toarray(), tags)
    assert only_tags["item_feature_labels"].tolist() == ["tag0", "tag1", "tag2"]
    both = fetch_stackexchange("crossvalidated", tag_features=True, **kwargs)
    np.testing.assert_array_equal(both["item_features"].toarray(), np.hstack([np.eye(4), tags]))
    assert both["item_features"].dtype == np.float32 and sp.isspmatrix_csr(both["item_features"])
    assert both["item_feature_labels"].tolist()[3:] == ["question_id:3", "tag0", "tag1", "tag2"]


@pytest.mark.parametrize("arguments, message", [
    (dict(dataset="mathoverflow"), "dataset must be one of"),
    (dict(test_set_fraction=0.0), "strictly between 0 and 1"),
    (dict(test_set_fraction=1.0), "strictly between 0 and 1"),
    (dict(min_training_interactions=-1), "min_training_interactions"),
    (dict(min_training_interactions=1.5), "min_training_interactions"),
    (dict(indicator_features=False, tag_features=False), "at least one"),
])
def test_stackexchange_rejects_bad_parameters(tmp_path, arguments, message):
    write_stackexchange(tmp_path, handmade())
    arguments = {"dataset": "crossvalidated", **arguments}
    with pytest.raises(ValueError, match=message):
        fetch_stackexchange(data_home=tmp_path, download_if_missing=False, **arguments)


def corrupt(arrays, **changes):
    arrays = dict(arrays)
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    return arrays


@pytest.mark.parametrize("changes, message", [
    (dict(features_col=None), "missing features_col"),
    (dict(labels=None, interactions_data=None), "missing interactions_data, labels"),
    (dict(interactions_row=np.array([0, 1], dtype=np.int32)), "differ in length"),
    (dict(interactions_col=np.full(9, 4, dtype=np.int32)), "outside its shape"),
    (dict(interactions_shape=np.array([3, 4, 5])), "two non-negative integers"),
    (dict(interactions_data=np.full(9, np.nan)), "NaN"),
    (dict(features_shape=np.array([[5, 3]])), "5 rows but interactions has 4 questions"),
    (dict(labels=np.array(["a", "b"])), "labels must be 3 strings"),
    (dict(interactions_row=np.zeros((9, 1), dtype=np.int32)), "must be 1-D"),
    (dict(interactions_data=np.array(["t"] * 9)), "values of"),
])
def test_stackexchange_rejects_files_of_the_wrong_schema(tmp_path, changes, message):
    path = write_stackexchange(tmp_path, corrupt(handmade(), **changes))
    with pytest.raises(ValueError, match=message) as error:
        fetch_stackexchange("crossvalidated", data_home=tmp_path, download_if_missing=False)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("content", [b"", b"this is not an npz archive", b"PK\x03\x04\x14\x00 broken"])
def test_stackexchange_rejects_corrupt_files(tmp_path, content):
    folder = tmp_path / "stackexchange" / "crossvalidated"
    folder.mkdir(parents=True)
    (folder / "data.npz").write_bytes(content)
    with pytest.raises(OSError, match="not a readable npz"):
        fetch_stackexchange("crossvalidated", data_home=tmp_path, download_if_missing=False)


def test_stackexchange_rejects_pickled_and_single_array_files(tmp_path):
    folder = tmp_path / "stackexchange" / "crossvalidated"
    folder.mkdir(parents=True)
    arrays = handmade()
    arrays["labels"] = np.array(["tag0", "tag1", "tag2"], dtype=object)  # needs pickle to load
    with open(folder / "data.npz", "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(OSError, match="corrupt.*allow_pickle"):
        fetch_stackexchange("crossvalidated", data_home=tmp_path, download_if_missing=False)
    with open(folder / "data.npz", "wb") as handle:
        np.save(handle, np.arange(3))
    with pytest.raises(ValueError, match="single .npy array"):
        fetch_stackexchange("crossvalidated", data_home=tmp_path, download_if_missing=False)


def test_stackexchange_missing_without_download_raises_oserror(tmp_path):
    with pytest.raises(OSError, match="StackExchange dataset 'stackoverflow' was not found"):
        fetch_stackexchange("stackoverflow", data_home=tmp_path, download_if_missing=False)


def test_stackexchange_download(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    np.savez(buffer, **handmade())
    opener = serve(monkeypatch, buffer.getvalue())
    data = fetch_stackexchange("crossvalidated", test_set_fraction=0.25, data_home=tmp_path)
    assert opener.urls == [stackexchange.RELEASE_URL + "stackexchange_crossvalidated.npz"]
    assert opener.urls[0].startswith("https://github.com/maciejkula/lightfm_datasets/releases/download/v0.1.0/")
    folder = tmp_path / "stackexchange" / "crossvalidated"
    assert (folder / "data.npz").read_bytes() == buffer.getvalue() and no_partial_files(folder)
    np.testing.assert_array_equal(data["train"].toarray(), [[0, 1, 1, 0], [1, 1, 0, 1]])


def test_stackexchange_download_of_a_bad_file_leaves_nothing(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    np.savez(buffer, **corrupt(handmade(), labels=None))
    for payload, message in ((b"<html>rate limited</html>", "not a readable npz"),
                             (buffer.getvalue(), "missing labels")):
        serve(monkeypatch, payload)
        with pytest.raises(OSError, match=message):
            fetch_stackexchange("crossvalidated", data_home=tmp_path)
        folder = tmp_path / "stackexchange" / "crossvalidated"
        assert os.listdir(folder) == []


# ---------------------------------------------------------------- synthetic: triangle

@pytest.mark.parametrize("n_users, n_items, boundary", [(200, 200, 200), (7, 5, 6), (4, 9, 0), (3, 3, -1)])
def test_popularity_triangle_definition(n_users, n_items, boundary):
    matrix = make_popularity_triangle(n_users, n_items, boundary)
    assert sp.isspmatrix_coo(matrix) and matrix.shape == (n_users, n_items) and matrix.dtype == np.float32
    expected = [[1.0 if u + i <= boundary else 0.0 for i in range(n_items)] for u in range(n_users)]
    np.testing.assert_array_equal(matrix.toarray(), expected)
    assert matrix.nnz == sum(map(sum, expected))


def test_popularity_triangle_defaults_and_popularity():
    matrix = make_popularity_triangle()
    # user 0 and user 1 see all 200 items (i <= 200 - u), then one fewer per user: 200 + (2 + ... + 200)
    assert matrix.shape == (200, 200) and matrix.nnz == 200 + (200 * 201 // 2 - 1) == 20299
    popularity = np.asarray(matrix.sum(axis=0)).ravel()
    np.testing.assert_array_equal(popularity, np.minimum(200, 201 - np.arange(200)))


@pytest.mark.parametrize("arguments", [dict(n_users=0), dict(n_items=2.5), dict(boundary="200")])
def test_popularity_triangle_rejects_bad_parameters(arguments):
    with pytest.raises(ValueError):
        make_popularity_triangle(**arguments)


# ---------------------------------------------------------------- synthetic: hybrid

HYBRID = dict(n_users=400, n_items=300, n_user_features=20, n_item_features=20, density=0.05)


def test_make_hybrid_structure():
    data = make_hybrid(**HYBRID, random_state=0)
    interactions = data["interactions"]
    assert sp.isspmatrix_coo(interactions) and interactions.shape == (400, 300) and interactions.dtype == np.float32
    assert set(interactions.data.tolist()) == {1.0}
    assert interactions.nnz == len(set(zip(interactions.row.tolist(), interactions.col.tolist())))
    assert abs(interactions.nnz / (400 * 300) - 0.05) < 0.01
    assert np.diff(interactions.tocsr().indptr).min() >= 1  # every user has interactions
    merged = (data["train"] + data["test"]).tocsr()
    assert (merged != interactions.tocsr()).nnz == 0 and data["train"].multiply(data["test"]).nnz == 0
    assert abs(data["test"].nnz / interactions.nnz - 0.2) < 0.01
    for side, n_rows in (("user", 400), ("item", 300)):
        features = data[f"{side}_features"]
        assert sp.isspmatrix_csr(features) and features.shape == (n_rows, 20) and features.dtype == np.float32
        np.testing.assert_allclose(np.asarray(features.sum(axis=1)).ravel(), 1.0, rtol=1e-6)
        assert data[f"{side}_feature_labels"].shape == (20,)
        tastes = data[f"{side}_tastes"]
        assert tastes.shape == (n_rows, 8)
        np.testing.assert_allclose(np.linalg.norm(tastes, axis=1), 1.0)
    np.testing.assert_allclose(data["item_popularity"].sum(), 1.0)
    again = make_hybrid(**HYBRID, random_state=0)
    assert (again["interactions"] != interactions).nnz == 0
    assert (make_hybrid(**HYBRID, random_state=1)["interactions"] != interactions).nnz > 0


def test_make_hybrid_tastes_are_carried_by_the_features():
    data = make_hybrid(**HYBRID, random_state=2)
    for side in ("user", "item"):
        features = data[f"{side}_features"].toarray()
        tastes = data[f"{side}_tastes"]
        # rows with the same features have the same taste; different features, different tastes
        _, first, groups = np.unique(features, axis=0, return_index=True, return_inverse=True)
        assert first.size < features.shape[0]  # some rows do share their features
        np.testing.assert_allclose(tastes, tastes[first][groups.ravel()], atol=1e-12)
        assert np.unique(np.round(tastes, 9), axis=0).shape[0] == first.size
    # interactions follow taste matches and popularity
    coo = data["interactions"]
    matches = np.sum(data["user_tastes"][coo.row] * data["item_tastes"][coo.col], axis=1)
    baseline = data["user_tastes"] @ data["item_tastes"].T
    assert matches.mean() > baseline.mean() + 0.2
    counts = np.bincount(coo.col, minlength=300)
    order = np.argsort(-data["item_popularity"])
    assert counts[order[:30]].mean() > 3 * counts[order[-150:]].mean()


def test_make_hybrid_extremes():
    flat = make_hybrid(**{**HYBRID, "density": 0.02}, popularity_exponent=0.0, random_state=0)
    np.testing.assert_allclose(flat["item_popularity"], 1 / 300)
    popularity_only = make_hybrid(**HYBRID, taste_strength=0.0, random_state=0)
    coo = popularity_only["interactions"]
    matches = np.sum(popularity_only["user_tastes"][coo.row] * popularity_only["item_tastes"][coo.col], axis=1)
    assert abs(matches.mean()) < 0.1  # no taste signal at all


@pytest.mark.parametrize("arguments", [
    dict(n_users=0), dict(n_item_features=-3), dict(density=0.0), dict(density=1.5),
    dict(popularity_exponent=-1.0), dict(popularity_exponent=float("nan")), dict(n_tastes=0),
    dict(features_per_row=0), dict(test_percentage=1.5), dict(taste_strength=float("inf")),
])
def test_make_hybrid_rejects_bad_parameters(arguments):
    with pytest.raises(ValueError):
        make_hybrid(**{**HYBRID, **arguments}, random_state=0)


def auc(scores, test, candidates):
    """Mean over test users of the fraction of (positive, candidate negative) pairs ranked correctly."""
    test = test.tocsr()
    values = []
    for user in np.flatnonzero(np.diff(test.indptr)):
        positive = np.isin(candidates, test.indices[test.indptr[user]:test.indptr[user + 1]])
        row = scores[user, candidates]
        difference = row[positive][:, None] - row[~positive][None, :]
        values.append(np.mean(difference > 0) + 0.5 * np.mean(difference == 0))
    return float(np.mean(values))


def scores_of(model, user_features=None, item_features=None):
    user_biases, user_embeddings = model.get_user_representations(user_features)
    item_biases, item_embeddings = model.get_item_representations(item_features)
    return user_embeddings @ item_embeddings.T + user_biases[:, None] + item_biases[None, :]


def test_features_beat_popularity_for_cold_start_users():
    data = make_hybrid(**HYBRID, random_state=0)
    train, test = user_cold_start_split(data["interactions"], test_percentage=0.25, random_state=0)
    model = FastRank(no_components=16, loss="warp", random_state=0)
    model.fit(train, user_features=data["user_features"], epochs=20)
    items = np.arange(300)
    model_auc = auc(scores_of(model, user_features=data["user_features"]), test, items)
    popularity = np.asarray(train.tocsr().sum(axis=0), dtype=np.float64)
    popularity_auc = auc(np.repeat(popularity, 400, axis=0), test, items)
    assert popularity_auc > 0.7  # popularity is a strong baseline here...
    assert model_auc > popularity_auc + 0.02  # ...and the features' tastes add to it


def test_features_rank_cold_start_items():
    data = make_hybrid(**HYBRID, random_state=1)
    train, test = item_cold_start_split(data["interactions"], test_percentage=0.25, random_state=1)
    cold = np.unique(test.col)
    model = FastRank(no_components=16, loss="warp", random_state=0)
    model.fit(train, item_features=data["item_features"], epochs=20)
    # training popularity knows nothing of cold items (all 0: AUC 0.5); the features do
    assert auc(scores_of(model, item_features=data["item_features"]), test, cold) > 0.6


def test_the_datasets_subpackage_is_packaged():
    # setuptools lists packages explicitly: a missing entry would leave fastrank.datasets out of wheels
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert '"fastrank.datasets"' in pyproject or "[tool.setuptools.packages.find]" in pyproject
