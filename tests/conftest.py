"""Shared fixtures: the MovieLens 100K protocol of the accuracy tests."""

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_home():
    """``$FASTRANK_DATA`` if set, else ``../shared/data`` next to the repository."""
    configured = os.environ.get("FASTRANK_DATA")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


def require_file(path):
    """Return ``path`` if it exists; otherwise skip (or fail when FASTRANK_REQUIRE_DATA=1)."""
    if path.exists():
        return path
    message = f"MovieLens data not found at {path} (set FASTRANK_DATA)"
    if os.environ.get("FASTRANK_REQUIRE_DATA", "") not in ("", "0"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def prefetch_in_every_model():
    """Training skips software prefetching for models small enough to stay cached, which every
    test model is; the tests make the kernels prefetch anyway, so that their prefetch paths (which
    read ids and row bounds ahead of the example) run on every edge case here.
    test_estimator checks that prefetching changes no result."""
    from fastrank import _sgd

    previous = _sgd.set_prefetch_threshold(0)
    yield
    _sgd.set_prefetch_threshold(previous)


@pytest.fixture(scope="session")
def movielens_split():
    """ml-100k positives (rating >= 4), a fixed random 80/20 split, as (train, test) COO."""
    ratings = np.loadtxt(require_file(data_home() / "ml-100k" / "u.data"), dtype=np.int64)
    positives = ratings[ratings[:, 2] >= 4]
    in_train = np.random.RandomState(42).rand(positives.shape[0]) < 0.8

    def matrix(rows):
        values = np.ones(rows.shape[0], dtype=np.float32)
        return sp.coo_matrix((values, (rows[:, 0] - 1, rows[:, 1] - 1)), shape=(943, 1682))

    return matrix(positives[in_train]), matrix(positives[~in_train])
