"""MovieLens 100K (GroupLens), with item genres and user demographics as features.

The data is read from the extracted GroupLens archive ``<data_home>/ml-100k/`` or from the archive
itself, ``<data_home>/ml-100k.zip`` (members ``ml-100k/<file>``, read without extracting), or from
the copy LightFM caches, ``movielens100k/movielens.zip`` under the data home or, when no
``data_home`` is given, under LightFM's ``~/lightfm_data``. When none exists the archive is
downloaded from GroupLens and verified against its published
SHA-256 (``ML100K_SHA256``, 4,924,029 bytes) and its structure (every needed member present,
CRCs intact) before it is moved into place. The MovieLens license forbids redistribution: the
data is never bundled with fastrank.
"""

import io
import os
import zipfile

import numpy as np
import scipy.sparse as sp

from fastrank._validation import is_real
from fastrank.datasets import _home

__all__ = ["fetch_movielens"]

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
FOLDER = "ml-100k"
ARCHIVE = "ml-100k.zip"
# Where LightFM's fetch_movielens keeps the same archive (its home is always ~/lightfm_data)
LIGHTFM_ARCHIVE = os.path.join("movielens100k", "movielens.zip")
LIGHTFM_HOME = os.path.join("~", "lightfm_data")
REQUIRED_FILES = ("ua.base", "ua.test", "u.item", "u.user", "u.genre", "u.occupation")

# Age buckets (lower bounds, labels) of the user features: the MovieLens 1M groups.
AGE_BUCKETS = (
    (0, "under 18"),
    (18, "18-24"),
    (25, "25-34"),
    (35, "35-44"),
    (45, "45-49"),
    (50, "50-55"),
    (56, "56+"),
)


class _Folder:
    def __init__(self, path):
        self.path = path

    def read(self, name):
        with open(os.path.join(self.path, name), "rb") as handle:
            return handle.read()

    def describe(self, name):
        return os.path.join(self.path, name)


class _Archive:
    def __init__(self, path):
        self.path = path
        self.archive = _open_archive(path)

    def read(self, name):
        try:
            return self.archive.read(f"{FOLDER}/{name}")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as error:
            raise OSError(f"{self.describe(name)} could not be read: {error}") from None

    def describe(self, name):
        return f"{self.path}:{FOLDER}/{name}"


def _open_archive(path):
    """Open the zip and check it has every needed member; corrupt archives raise ``OSError``."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError) as error:
        raise OSError(f"{path} is not a readable zip archive: {error}") from None
    names = set(archive.namelist())
    missing = [name for name in REQUIRED_FILES if f"{FOLDER}/{name}" not in names]
    if missing:
        archive.close()
        members = ", ".join(f"{FOLDER}/{name}" for name in missing)
        raise OSError(f"{path} is not the MovieLens 100K archive: it lacks {members}")
    return archive


def _check_download(path):
    """Structure check of a downloaded archive: the members are present and their CRCs hold."""
    archive = _open_archive(path)
    with archive:
        try:
            bad = archive.testzip()
        except (zipfile.BadZipFile, EOFError, ValueError) as error:
            raise OSError(f"{path} is corrupt: {error}") from None
    if bad is not None:
        raise OSError(f"{path} is corrupt: member {bad} fails its CRC check")


def _source(data_home, download_if_missing):
    home = _home.get_data_home(data_home)
    folder = os.path.join(home, FOLDER)
    archive = os.path.join(home, ARCHIVE)
    if os.path.isdir(folder) and all(os.path.isfile(os.path.join(folder, name)) for name in REQUIRED_FILES):
        return _Folder(folder)
    # LightFM's cached copy is the GroupLens archive under another name: reuse it, not download again
    lightfm_archives = [os.path.join(home, LIGHTFM_ARCHIVE)]
    if data_home is None:
        lightfm_archives.append(os.path.join(os.path.expanduser(LIGHTFM_HOME), LIGHTFM_ARCHIVE))
    for path in [archive] + lightfm_archives:
        if os.path.isfile(path):
            return _Archive(path)
    if not download_if_missing:
        raise _home.missing_error("MovieLens 100K", [folder + os.sep, archive] + lightfm_archives,
                                  download_if_missing)
    _home.download(ML100K_URL, archive, sha256=ML100K_SHA256, validate=_check_download)
    return _Archive(archive)


def _lines(source, name, encoding="utf-8"):
    try:
        text = source.read(name).decode(encoding)
    except UnicodeDecodeError as error:
        raise ValueError(f"{source.describe(name)} is not {encoding} text: {error}") from None
    return [line for line in text.splitlines() if line.strip()]


def _fields(source, name, n_fields, encoding="utf-8"):
    rows = []
    for number, line in enumerate(_lines(source, name, encoding), start=1):
        fields = line.split("|")
        if len(fields) != n_fields:
            raise ValueError(
                f"{source.describe(name)} line {number} has {len(fields)} '|'-separated fields, expected {n_fields}"
            )
        rows.append(fields)
    return rows


def _integer(value, where):
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not an integer") from None


def _consecutive_ids(rows, source, name):
    ids = [_integer(fields[0], f"{source.describe(name)} line {n}") for n, fields in enumerate(rows, start=1)]
    if ids != list(range(1, len(ids) + 1)):
        raise ValueError(f"{source.describe(name)} must list ids 1..{len(ids)} in order")
    if not ids:
        raise ValueError(f"{source.describe(name)} is empty")


def _genres(source):
    pairs = _fields(source, "u.genre", 2)
    genres = {}
    for number, (genre, index) in enumerate(pairs, start=1):
        genres[_integer(index, f"{source.describe('u.genre')} line {number}")] = genre
    if sorted(genres) != list(range(len(genres))):
        raise ValueError(f"{source.describe('u.genre')} must number its genres 0..{len(genres) - 1}")
    return [genres[index] for index in range(len(genres))]


def _items(source, n_genres):
    rows = _fields(source, "u.item", 5 + n_genres, encoding="latin-1")
    _consecutive_ids(rows, source, "u.item")
    titles = np.array([fields[1] for fields in rows])
    flags = np.array([[_integer(flag, f"{source.describe('u.item')} line {n}") for flag in fields[5:]]
                      for n, fields in enumerate(rows, start=1)], dtype=np.float32).reshape(len(rows), n_genres)
    if not np.isin(flags, (0, 1)).all():
        raise ValueError(f"{source.describe('u.item')} has genre flags other than 0 and 1")
    return titles, flags


def _users(source):
    rows = _fields(source, "u.user", 5)
    _consecutive_ids(rows, source, "u.user")
    return rows


def _ratings(source, name, shape, min_rating):
    try:
        table = np.loadtxt(io.BytesIO(source.read(name)), dtype=np.int64, ndmin=2)
    except ValueError as error:
        raise ValueError(f"{source.describe(name)} is not a table of integers: {error}") from None
    if table.size == 0:
        table = table.reshape(0, 4)
    if table.shape[1] != 4:
        raise ValueError(f"{source.describe(name)} has {table.shape[1]} columns, expected 4 "
                         "(user, item, rating, timestamp)")
    users, items, ratings = table[:, 0] - 1, table[:, 1] - 1, table[:, 2]
    if table.shape[0] and (users.min() < 0 or users.max() >= shape[0] or items.min() < 0 or items.max() >= shape[1]):
        raise ValueError(f"{source.describe(name)} has user or item ids outside 1..{shape[0]} / 1..{shape[1]}")
    keep = ratings >= min_rating
    # int32 ratings, as LightFM returns them
    matrix = sp.csr_matrix((ratings[keep].astype(np.int32), (users[keep], items[keep])), shape=shape)
    matrix.sum_duplicates()
    return matrix.tocoo()


def _user_features(source, rows, indicator_features):
    occupations = [line.strip() for line in _lines(source, "u.occupation")]
    n_users = len(rows)
    genders = sorted({fields[2] for fields in rows} | {"F", "M"})
    labels = [f"user:{fields[0]}" for fields in rows] if indicator_features else []
    offset = len(labels)
    age_column = {label: offset + k for k, (_, label) in enumerate(AGE_BUCKETS)}
    labels += [f"age:{label}" for _, label in AGE_BUCKETS]
    gender_column = {gender: len(labels) + k for k, gender in enumerate(genders)}
    labels += [f"gender:{gender}" for gender in genders]
    occupation_column = {name: len(labels) + k for k, name in enumerate(occupations)}
    labels += [f"occupation:{name}" for name in occupations]
    row_index, col_index = [], []
    for user, fields in enumerate(rows):
        where = f"{source.describe('u.user')} line {user + 1}"
        age = _integer(fields[1], where)
        if age < 0:
            raise ValueError(f"{where}: negative age {age}")
        bucket = [label for lower, label in AGE_BUCKETS if age >= lower][-1]
        if fields[3] not in occupation_column:
            raise ValueError(f"{where}: occupation {fields[3]!r} is not listed in u.occupation")
        columns = [age_column[bucket], gender_column[fields[2]], occupation_column[fields[3]]]
        if indicator_features:
            columns.insert(0, user)
        row_index += [user] * len(columns)
        col_index += columns
    features = sp.csr_matrix((np.ones(len(row_index), dtype=np.float32), (row_index, col_index)),
                             shape=(n_users, len(labels)))
    return features, np.array(labels)


def fetch_movielens(data_home=None, indicator_features=True, genre_features=False, min_rating=0.0,
                    download_if_missing=True, *, user_features=False):
    """MovieLens 100K ratings with its ``ua`` train/test split and optional features.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        Directory holding ``ml-100k/`` (the extracted GroupLens archive), ``ml-100k.zip`` or
        LightFM's cached ``movielens100k/movielens.zip``; defaults to ``$FASTRANK_DATA``, else
        ``~/fastrank_data`` (see :func:`get_data_home`), and then LightFM's cache in
        ``~/lightfm_data``. The positional parameters are LightFM's, in its order.
    indicator_features : bool, default True
        Give every item (and, with ``user_features``, every user) an identity column.
    genre_features : bool, default False
        Add one column per genre (19) to the item features, 1 where the movie has the genre.
    min_rating : float, default 0.0
        Keep only ratings >= ``min_rating`` (in both train and test).
    download_if_missing : bool, default True
        Download the archive from GroupLens when nothing is on disk; otherwise raise ``OSError``.
    user_features : bool, default False, keyword-only
        Also return user features: age bucket (7 groups), gender and occupation (21), one-hot
        (not offered by LightFM).

    Returns
    -------
    dict
        ``train`` : scipy.sparse.coo_matrix of shape (943, 1682), int32 (as LightFM's)
            Ratings (1-5) from ``ua.base``; row = user id - 1, column = item id - 1.
        ``test`` : scipy.sparse.coo_matrix of shape (943, 1682), int32
            Ratings from ``ua.test`` (10 per user, disjoint from train).
        ``item_features`` : scipy.sparse.csr_matrix of shape (1682, n_item_features), float32
            Identity columns first (if ``indicator_features``), then the genres (if
            ``genre_features``); weights 1, not normalised.
        ``item_feature_labels`` : numpy str array of shape (n_item_features,)
            The movie title for identity columns (as LightFM), ``"genre:<name>"`` for genres.
        ``item_labels`` : numpy str array of shape (1682,)
            Movie titles.
        ``user_features`` : scipy.sparse.csr_matrix of shape (943, n_user_features), float32
            Only with ``user_features=True``: identity columns (if ``indicator_features``), then
            7 age buckets, the genders, the 21 occupations (one of each per user, weight 1).
        ``user_feature_labels`` : numpy str array of shape (n_user_features,)
            Only with ``user_features=True``: ``"user:<id>"``, ``"age:<bucket>"``,
            ``"gender:<F|M>"``, ``"occupation:<name>"``.

    Raises
    ------
    ValueError
        If both ``indicator_features`` and ``genre_features`` are False, ``min_rating`` is not a
        number, or a file does not have the GroupLens layout.
    OSError
        If the data is absent and ``download_if_missing`` is False, the download fails or is
        rejected (checksum), or the archive on disk is corrupt.
    """
    if not (indicator_features or genre_features):
        raise ValueError("at least one of indicator_features and genre_features must be True")
    if not is_real(min_rating) or np.isnan(min_rating):
        raise ValueError(f"min_rating must be a number, got {min_rating!r}")
    source = _source(data_home, download_if_missing)
    try:
        genres = _genres(source)
        titles, flags = _items(source, len(genres))
        user_rows = _users(source)
        shape = (len(user_rows), len(titles))
        result = {
            "train": _ratings(source, "ua.base", shape, min_rating),
            "test": _ratings(source, "ua.test", shape, min_rating),
        }
        blocks, labels = [], []
        if indicator_features:
            blocks.append(sp.identity(shape[1], dtype=np.float32, format="csr"))
            labels.append(titles)
        if genre_features:
            blocks.append(sp.csr_matrix(flags))
            labels.append(np.array([f"genre:{genre}" for genre in genres]))
        result["item_features"] = _csr(sp.hstack(blocks, format="csr"))
        result["item_feature_labels"] = np.concatenate(labels)
        result["item_labels"] = titles
        if user_features:
            features, user_labels = _user_features(source, user_rows, indicator_features)
            result["user_features"] = _csr(features)
            result["user_feature_labels"] = user_labels
    finally:
        if isinstance(source, _Archive):
            source.archive.close()
    return result


def _csr(matrix):
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.indptr = matrix.indptr.astype(np.int32, copy=False)
    matrix.indices = matrix.indices.astype(np.int32, copy=False)
    return matrix
