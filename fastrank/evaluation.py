"""Ranking metrics with LightFM's signatures and semantics.

Every function ranks all items for each user with :meth:`FastRank.predict_rank` (items in
``train_interactions`` are not candidates; an item's rank is the number of candidates scoring
strictly higher, so tied items share the better rank) and returns one float32 value per user
that has test interactions, or one per user with ``preserve_rows=True`` (0 for users without
test interactions).
"""

import numpy as np

__all__ = ["precision_at_k", "recall_at_k", "auc_score", "reciprocal_rank"]


def _ranks(model, test_interactions, train_interactions, user_features, item_features, num_threads,
           check_intersections):
    return model.predict_rank(
        test_interactions,
        train_interactions=train_interactions,
        user_features=user_features,
        item_features=item_features,
        num_threads=num_threads,
        check_intersections=check_intersections,
    )


def _per_user(ranks, values, preserve_rows):
    """Select the users with test interactions unless ``preserve_rows``."""
    values = values.astype(np.float32)
    if preserve_rows:
        return values
    return values[np.diff(ranks.indptr) > 0]


def _entry_rows(ranks):
    """Row (user) index of every stored entry of a CSR."""
    return np.repeat(np.arange(ranks.shape[0]), np.diff(ranks.indptr))


def _hits_per_user(ranks, k):
    return np.bincount(_entry_rows(ranks), weights=(ranks.data < k), minlength=ranks.shape[0])


def _check_k(k):
    from fastrank._validation import check_positive_int

    return check_positive_int(k, "k")


def precision_at_k(model, test_interactions, train_interactions=None, k=10, user_features=None,
                   item_features=None, preserve_rows=False, num_threads=1, check_intersections=True):
    """Fraction of the top ``k`` that are test items, per user (divided by ``k``, as in LightFM).

    Parameters
    ----------
    model : FastRank
    test_interactions : sparse matrix of shape (n_users, n_items)
    train_interactions : sparse matrix of shape (n_users, n_items), optional
        Items to leave out of the ranking.
    k : int, default 10
    user_features, item_features : sparse matrices, optional
    preserve_rows : bool, default False
    num_threads : int, default 1
    check_intersections : bool, default True

    Returns
    -------
    float32 array of shape (n_users_with_test,) or (n_users,)
    """
    k = _check_k(k)
    ranks = _ranks(model, test_interactions, train_interactions, user_features, item_features,
                   num_threads, check_intersections)
    values = _hits_per_user(ranks, k) / k
    return _per_user(ranks, values, preserve_rows)


def recall_at_k(model, test_interactions, train_interactions=None, k=10, user_features=None,
                item_features=None, preserve_rows=False, num_threads=1, check_intersections=True):
    """Fraction of each user's test items that are in the top ``k``.

    Parameters and returns as :func:`precision_at_k`.
    """
    k = _check_k(k)
    ranks = _ranks(model, test_interactions, train_interactions, user_features, item_features,
                   num_threads, check_intersections)
    counts = np.diff(ranks.indptr)
    values = _hits_per_user(ranks, k) / np.maximum(counts, 1)
    return _per_user(ranks, values, preserve_rows)


def auc_score(model, test_interactions, train_interactions=None, user_features=None, item_features=None,
              preserve_rows=False, num_threads=1, check_intersections=True):
    """Probability that a test item outranks a random non-interacted item, per user.

    Negatives are the items in neither the user's test nor train row. Parameters and returns as
    :func:`precision_at_k` (without ``k``).
    """
    ranks = _ranks(model, test_interactions, train_interactions, user_features, item_features,
                   num_threads, check_intersections)
    n_users, n_items = ranks.shape
    counts = np.diff(ranks.indptr)
    if train_interactions is None:
        n_train = np.zeros(n_users)
    else:
        from fastrank._validation import to_csr

        n_train = np.diff(to_csr(train_interactions, "train_interactions").indptr)
    values = np.zeros(n_users)
    for user in np.flatnonzero(counts):
        user_ranks = np.sort(ranks.data[ranks.indptr[user]:ranks.indptr[user + 1]])
        # Other test items scored above this one are not negatives.
        negatives_above = user_ranks - np.arange(user_ranks.shape[0])
        n_negatives = n_items - counts[user] - n_train[user]
        values[user] = 1.0 - negatives_above.mean() / n_negatives if n_negatives > 0 else 0.5
    return _per_user(ranks, values, preserve_rows)


def reciprocal_rank(model, test_interactions, train_interactions=None, user_features=None,
                    item_features=None, preserve_rows=False, num_threads=1, check_intersections=True):
    """1 / (1 + rank of the best-ranked test item), per user.

    Parameters and returns as :func:`auc_score`.
    """
    ranks = _ranks(model, test_interactions, train_interactions, user_features, item_features,
                   num_threads, check_intersections)
    best = np.full(ranks.shape[0], np.inf)
    np.minimum.at(best, _entry_rows(ranks), ranks.data)
    values = 1.0 / (1.0 + best)  # 0 for users without test items
    return _per_user(ranks, values, preserve_rows)
