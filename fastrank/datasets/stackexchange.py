"""StackExchange question-answering data (LightFM's ``fetch_stackexchange``, same split).

Users are answerers, items are questions; an interaction means the user answered the question.
The files are LightFM's ``lightfm_datasets`` v0.1.0 release assets. No checksum is published for
them, so a download is accepted only when it passes :func:`load_stackexchange_npz`'s schema check
(all arrays present, consistent lengths, indices inside the stored shapes).
"""

import math
import os
import zipfile

import numpy as np
import scipy.sparse as sp

from fastrank._validation import is_integer, is_real
from fastrank.datasets import _home

__all__ = ["fetch_stackexchange"]

RELEASE_URL = "https://github.com/maciejkula/lightfm_datasets/releases/download/v0.1.0/"
DATASETS = ("crossvalidated", "stackoverflow")
# Known SHA-256 digests of the release assets (none published); add them here when known.
SHA256 = {}

_MATRICES = ("interactions", "features")
_PARTS = ("row", "col", "data", "shape")


def load_stackexchange_npz(path):
    """Read and validate a StackExchange ``data.npz`` (LightFM's schema).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    interactions : scipy.sparse.coo_matrix of shape (n_users, n_questions)
        Values are answer timestamps, in the file's dtype; duplicates not yet merged.
    features : scipy.sparse.coo_matrix of shape (n_questions, n_tags)
    labels : numpy str array of shape (n_tags,)
        Tag names.

    Raises
    ------
    OSError
        If the file cannot be read as an npz archive.
    ValueError
        If an array is missing or the arrays are inconsistent.
    """
    try:
        archive = np.load(os.fspath(path), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise OSError(f"{path} is not a readable npz archive: {error}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a single .npy array, not an npz archive")
    with archive:
        names = set(archive.files)
        expected = {f"{matrix}_{part}" for matrix in _MATRICES for part in _PARTS} | {"labels"}
        missing = sorted(expected - names)
        if missing:
            raise ValueError(f"{path} does not have the StackExchange schema: missing {', '.join(missing)}")
        try:
            arrays = {name: archive[name] for name in expected}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise OSError(f"{path} is corrupt: {error}") from None
    matrices = {matrix: _coo(arrays, matrix, path) for matrix in _MATRICES}
    interactions, features = matrices["interactions"], matrices["features"]
    if features.shape[0] != interactions.shape[1]:
        raise ValueError(
            f"{path}: features has {features.shape[0]} rows but interactions has {interactions.shape[1]} questions"
        )
    labels = arrays["labels"]
    if labels.ndim != 1 or labels.dtype.kind not in "US" or labels.shape[0] != features.shape[1]:
        raise ValueError(
            f"{path}: labels must be {features.shape[1]} strings (one per tag), got {labels.dtype} array of shape "
            f"{labels.shape}"
        )
    if labels.dtype.kind == "S":
        labels = labels.astype(str)
    return interactions, features, labels


def _coo(arrays, matrix, path):
    shape = arrays[f"{matrix}_shape"].ravel()
    if shape.shape != (2,) or shape.dtype.kind not in "iu" or shape.min() < 0:
        raise ValueError(f"{path}: {matrix}_shape must hold two non-negative integers, got {shape!r}")
    row, col, data = (arrays[f"{matrix}_{part}"] for part in ("row", "col", "data"))
    for name, array in (("row", row), ("col", col), ("data", data)):
        if array.ndim != 1:
            raise ValueError(f"{path}: {matrix}_{name} must be 1-D, got shape {array.shape}")
    if not (row.shape == col.shape == data.shape):
        raise ValueError(
            f"{path}: {matrix}_row, _col and _data differ in length ({row.size}, {col.size}, {data.size})"
        )
    if row.dtype.kind not in "iu" or col.dtype.kind not in "iu" or data.dtype.kind not in "iuf":
        raise ValueError(f"{path}: {matrix} has indices of dtype {row.dtype}/{col.dtype} and values of {data.dtype}")
    n_rows, n_cols = (int(value) for value in shape)
    if row.size and (row.min() < 0 or row.max() >= n_rows or col.min() < 0 or col.max() >= n_cols):
        raise ValueError(f"{path}: {matrix} has an index outside its shape {(n_rows, n_cols)}")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: {matrix}_data has NaN or infinite values")
    return sp.coo_matrix((data, (row, col)), shape=(n_rows, n_cols))


def fetch_stackexchange(dataset, test_set_fraction=0.2, min_training_interactions=1, data_home=None,
                        indicator_features=True, tag_features=False, download_if_missing=True):
    """StackExchange answers split by time into train and test (LightFM-compatible).

    Reads ``<data_home>/stackexchange/<dataset>/data.npz``, downloading LightFM's
    ``stackexchange_<dataset>.npz`` when missing. The split follows LightFM exactly:

    1. duplicate (user, question) entries are merged by summing their values (timestamps), as
       ``scipy.sparse.coo_matrix.sum_duplicates`` does;
    2. the cutoff is the value at position ``floor(nnz * (1 - test_set_fraction))`` of the sorted
       values; train holds the entries strictly before the cutoff, test the others;
    3. when ``min_training_interactions`` > 0, only users with more than that many training
       entries are kept: the other users' rows are removed from both matrices (0 keeps every
       user, also those whose entries all fell in test);
    4. every value becomes 1.

    Parameters
    ----------
    dataset : {"crossvalidated", "stackoverflow"}
    test_set_fraction : float in (0, 1), default 0.2
    min_training_interactions : int >= 0, default 1
    data_home : str or os.PathLike, optional
        See :func:`fastrank.datasets.get_data_home`.
    indicator_features : bool, default True
        Identity column per question.
    tag_features : bool, default False
        One column per tag, 1 where the question carries the tag.
    download_if_missing : bool, default True

    Returns
    -------
    dict
        ``train`` : scipy.sparse.coo_matrix of shape (n_kept_users, n_questions), float32
        ``test`` : scipy.sparse.coo_matrix of shape (n_kept_users, n_questions), float32
            Values 1; row ``r`` of both is the ``r``-th kept user in the file's order.
        ``item_features`` : scipy.sparse.csr_matrix of shape (n_questions, n_item_features), float32
            Identity columns first (``indicator_features``), then the tags (``tag_features``).
        ``item_feature_labels`` : numpy str array of shape (n_item_features,)
            ``"question_id:<i>"`` for identity columns, the tag names for tags.

    Raises
    ------
    ValueError
        For an unknown ``dataset``, a fraction outside (0, 1), a negative or non-integer
        ``min_training_interactions``, both feature kinds disabled, or a file without the schema.
    OSError
        If the file is absent and ``download_if_missing`` is False, the download fails, or the file
        is unreadable.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if not is_real(test_set_fraction) or not 0.0 < test_set_fraction < 1.0:
        raise ValueError(f"test_set_fraction must be a number strictly between 0 and 1, got {test_set_fraction!r}")
    if not is_integer(min_training_interactions) or min_training_interactions < 0:
        raise ValueError(f"min_training_interactions must be a non-negative integer, got {min_training_interactions!r}")
    if not (indicator_features or tag_features):
        raise ValueError("at least one of indicator_features and tag_features must be True")

    path = os.path.join(_home.get_data_home(data_home), "stackexchange", dataset, "data.npz")
    if not os.path.isfile(path):
        if not download_if_missing:
            raise _home.missing_error(f"StackExchange dataset {dataset!r}", [path], download_if_missing)
        _home.download(f"{RELEASE_URL}stackexchange_{dataset}.npz", path, sha256=SHA256.get(dataset),
                       validate=load_stackexchange_npz)
    interactions, tags, labels = load_stackexchange_npz(path)

    interactions = interactions.copy()
    interactions.sum_duplicates()
    if interactions.nnz == 0:
        raise ValueError(f"{path}: interactions has no entries")
    position = math.floor(interactions.nnz * (1.0 - test_set_fraction))
    cutoff = np.sort(interactions.data)[position]
    in_train = interactions.data < cutoff

    def part(mask):
        return sp.csr_matrix(
            (np.ones(int(mask.sum()), dtype=np.float32), (interactions.row[mask], interactions.col[mask])),
            shape=interactions.shape,
        )

    train, test = part(in_train), part(~in_train)
    if min_training_interactions > 0:  # LightFM keeps every user at 0, even one with no training entry
        keep = np.diff(train.indptr) > min_training_interactions
        train, test = train[keep], test[keep]

    n_questions = interactions.shape[1]
    blocks, feature_labels = [], []
    if indicator_features:
        blocks.append(sp.identity(n_questions, dtype=np.float32, format="csr"))
        feature_labels.append(np.array([f"question_id:{question}" for question in range(n_questions)]))
    if tag_features:
        blocks.append(sp.csr_matrix(tags, dtype=np.float32))
        feature_labels.append(labels)
    features = sp.csr_matrix(sp.hstack(blocks, format="csr"), dtype=np.float32)
    features.sum_duplicates()
    features.indptr = features.indptr.astype(np.int32, copy=False)
    features.indices = features.indices.astype(np.int32, copy=False)
    return {
        "train": train.tocoo(),
        "test": test.tocoo(),
        "item_features": features,
        "item_feature_labels": np.concatenate(feature_labels),
    }
