"""Synthetic interaction data with known structure (no download).

- :func:`make_popularity_triangle`: the "popularity triangle" of Rhee, Cho and Suh, *Countering
  Popularity Bias by Regularizing Score Differences* (RecSys 2022): user ``u`` has interacted
  with item ``i`` iff ``u + i <= boundary``, so item popularity falls linearly with the item id
  while every user's taste is "the most popular items" only.
- :func:`make_hybrid`: interactions driven by latent tastes that the user and item features
  carry, plus power-law item popularity, for testing hybrid and cold-start recommendation.
"""

import numpy as np
import scipy.sparse as sp

from fastrank._validation import is_integer, is_real

__all__ = ["make_popularity_triangle", "make_hybrid"]


def _positive(value, name):
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def make_popularity_triangle(n_users=200, n_items=200, boundary=200):
    """The popularity-triangle interactions of Rhee et al. (RecSys 2022).

    Parameters
    ----------
    n_users : int, default 200
    n_items : int, default 200
    boundary : int, default 200
        User ``u`` has interacted with item ``i`` (both 0-based) iff ``u + i <= boundary``.

    Returns
    -------
    scipy.sparse.coo_matrix of shape (n_users, n_items), float32
        1 for each interaction, in row-major order. Item ``i`` has ``min(n_users, boundary - i + 1)``
        interactions (0 when ``i > boundary``).
    """
    n_users = _positive(n_users, "n_users")
    n_items = _positive(n_items, "n_items")
    if not is_integer(boundary):
        raise ValueError(f"boundary must be an integer, got {boundary!r}")
    users, items = np.nonzero(np.add.outer(np.arange(n_users), np.arange(n_items)) <= boundary)
    return sp.coo_matrix((np.ones(users.size, dtype=np.float32), (users, items)), shape=(n_users, n_items))


def _random_generator(random_state):
    if random_state is None or is_integer(random_state):
        if random_state is not None and random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**32, size=4, dtype=np.uint64))
    raise TypeError(f"random_state must be None, an int, a numpy RandomState or Generator, got {random_state!r}")


def _memberships(rng, n_rows, n_features, per_row):
    """CSR (n_rows, n_features), float32: ``per_row`` features drawn with replacement per row,
    repeats adding up, rows L1-normalised."""
    cols = rng.integers(0, n_features, size=(n_rows, per_row))
    rows = np.repeat(np.arange(n_rows), per_row)
    matrix = sp.csr_matrix((np.full(rows.size, 1.0 / per_row), (rows, cols.ravel())), shape=(n_rows, n_features))
    matrix.sum_duplicates()
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.indptr = matrix.indptr.astype(np.int32)
    matrix.indices = matrix.indices.astype(np.int32)
    return matrix


def _unit_rows(matrix):
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def make_hybrid(n_users=1000, n_items=1000, n_user_features=50, n_item_features=50, density=0.02,
                popularity_exponent=1.0, random_state=None, *, n_tastes=8, features_per_row=3,
                taste_strength=4.0, test_percentage=0.2):
    """Implicit feedback generated from latent tastes that the features carry.

    The generative model:

    1. every user feature and every item feature gets a latent taste vector (``n_tastes``
       standard normal components);
    2. every user draws ``features_per_row`` of the user features uniformly with replacement; its
       feature row holds the counts divided by ``features_per_row`` (L1-normalised), and its taste
       is the weighted sum of those features' vectors scaled to unit length. Items likewise. The
       tastes are therefore a function of the features alone: two users with the same features
       behave alike, and a model that learns feature embeddings can recommend to users or for
       items it has never seen (cold start);
    3. item popularity follows a power law: the items are put in random order and the one at
       position ``r`` (0-based) gets weight ``(r + 1) ** -popularity_exponent``;
    4. each user answers ``1 + Poisson(max(density * n_items - 1, 0))`` (at most ``n_items``) distinct
       items, drawn without replacement with probability proportional to
       ``popularity_i * exp(taste_strength * taste_u . taste_i)``.

    Interactions thus mix a taste signal (recoverable from the features) with a popularity
    signal (the same for everyone); ranking by popularity alone ignores the first.

    Parameters
    ----------
    n_users, n_items : int, default 1000
    n_user_features, n_item_features : int, default 50
    density : float in (0, 1], default 0.02
        Expected fraction of the items each user interacts with.
    popularity_exponent : float >= 0, default 1.0
        0 makes every item equally popular a priori.
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator, optional
    n_tastes : int, default 8
        Dimension of the latent tastes.
    features_per_row : int, default 3
        Feature draws per user and per item.
    taste_strength : float >= 0, default 4.0
        Weight of the taste match against popularity (0: popularity only).
    test_percentage : float in [0, 1], default 0.2
        Fraction of the interactions in ``test`` (a random split as
        :func:`fastrank.cross_validation.random_train_test_split`).

    Returns
    -------
    dict
        ``interactions`` : scipy.sparse.coo_matrix of shape (n_users, n_items), float32
            Every interaction (value 1).
        ``train``, ``test`` : scipy.sparse.coo_matrix of shape (n_users, n_items), float32
            A random partition of ``interactions``.
        ``user_features`` : scipy.sparse.csr_matrix of shape (n_users, n_user_features), float32
            L1-normalised memberships (no identity columns; stack ``scipy.sparse.identity`` to add them).
        ``user_feature_labels`` : numpy str array of shape (n_user_features,)
        ``item_features`` : scipy.sparse.csr_matrix of shape (n_items, n_item_features), float32
        ``item_feature_labels`` : numpy str array of shape (n_item_features,)
        ``user_tastes`` : float64 array of shape (n_users, n_tastes)
            The unit taste vectors (ground truth).
        ``item_tastes`` : float64 array of shape (n_items, n_tastes)
        ``item_popularity`` : float64 array of shape (n_items,)
            The a-priori popularity weights, summing to 1.
    """
    from fastrank.cross_validation import random_train_test_split

    n_users = _positive(n_users, "n_users")
    n_items = _positive(n_items, "n_items")
    n_user_features = _positive(n_user_features, "n_user_features")
    n_item_features = _positive(n_item_features, "n_item_features")
    n_tastes = _positive(n_tastes, "n_tastes")
    features_per_row = _positive(features_per_row, "features_per_row")
    if not is_real(density) or not 0.0 < density <= 1.0:
        raise ValueError(f"density must be a number in (0, 1], got {density!r}")
    for name, value in (("popularity_exponent", popularity_exponent), ("taste_strength", taste_strength)):
        if not is_real(value) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    if not is_real(test_percentage) or not 0.0 <= test_percentage <= 1.0:
        raise ValueError(f"test_percentage must be a number in [0, 1], got {test_percentage!r}")
    rng = _random_generator(random_state)

    user_features = _memberships(rng, n_users, n_user_features, features_per_row)
    item_features = _memberships(rng, n_items, n_item_features, features_per_row)
    user_tastes = _unit_rows(user_features @ rng.standard_normal((n_user_features, n_tastes)))
    item_tastes = _unit_rows(item_features @ rng.standard_normal((n_item_features, n_tastes)))
    # log-space, so that steep power laws do not underflow to zero weights
    log_popularity = np.empty(n_items)
    log_popularity[rng.permutation(n_items)] = -float(popularity_exponent) * np.log(np.arange(n_items) + 1.0)
    log_popularity -= np.logaddexp.reduce(log_popularity)
    popularity = np.exp(log_popularity)

    counts = np.minimum(1 + rng.poisson(max(density * n_items - 1.0, 0.0), size=n_users), n_items)
    rows, cols = [], []
    block = max(1, 2**22 // n_items)  # users per block: a few MB of scores at a time
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        logits = taste_strength * (user_tastes[start:stop] @ item_tastes.T) + log_popularity
        # Gumbel top-k: the k largest perturbed logits are a draw without replacement.
        keys = logits + rng.gumbel(size=logits.shape)
        order = np.argsort(-keys, axis=1)
        take = np.arange(n_items) < counts[start:stop, None]
        block_rows = np.broadcast_to(np.arange(start, stop)[:, None], order.shape)
        rows.append(block_rows[take])
        cols.append(order[take])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    interactions = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)),
                                 shape=(n_users, n_items)).tocoo()
    train, test = random_train_test_split(interactions, test_percentage=test_percentage,
                                          random_state=np.random.RandomState(rng.integers(0, 2**32)))
    return {
        "interactions": interactions,
        "train": train,
        "test": test,
        "user_features": user_features,
        "user_feature_labels": np.array([f"user_feature:{j}" for j in range(n_user_features)]),
        "item_features": item_features,
        "item_feature_labels": np.array([f"item_feature:{j}" for j in range(n_item_features)]),
        "user_tastes": user_tastes,
        "item_tastes": item_tastes,
        "item_popularity": popularity,
    }
