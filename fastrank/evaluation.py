"""Ranking metrics with LightFM's signatures and semantics, plus NDCG, MAP and hit rate.

Every metric ranks all items for each user with :meth:`FastRank.predict_rank`, which computes
every item representation once and scores and ranks users in blocks, one block per thread:

- items in ``train_interactions`` are not candidates; the other test items are;
- **ties**: of two items with equal scores, the lower item id ranks first. This is the one tie
  rule of fastrank (``predict_rank``, the metrics and ``recommend`` all use it), so a model that
  scores everything alike gets no credit. LightFM instead gives tied items the better rank.

Each function returns a float32 array with one value per user that has test interactions, or
one per user with ``preserve_rows=True`` (for users without test interactions 0, and 0.5 for
AUC, the values LightFM gives them; LightFM's recall is NaN there).
:func:`ranking_metrics` returns them all from a single scoring pass.

Definitions, for a user with test items T (|T| = t) and 0-based ranks r:

- precision@k = |{i in T: r_i < k}| / k (LightFM's definition; ``denominator="min"`` divides by
  min(k, t) instead, as implicit does);
- recall@k = |{i in T: r_i < k}| / t;
- hit_rate@k = 1 if any r_i < k else 0;
- NDCG@k = sum over hits of 1 / log2(r_i + 2), divided by the ideal sum over the first
  min(k, t) positions;
- MAP@k (average precision at k) = sum over hits, in rank order j = 0, 1, ..., of
  (j + 1) / (r_i + 1), divided by min(k, t);
- AUC = the fraction of (test item, negative) pairs in which the test item ranks first, the
  negatives being the items in neither the user's test nor train row (0.5 if there are none);
- reciprocal rank = 1 / (1 + min r_i).
"""

import numpy as np

from fastrank._estimator import FastRank
from fastrank._validation import check_positive_int, to_csr

__all__ = [
    "precision_at_k",
    "recall_at_k",
    "auc_score",
    "reciprocal_rank",
    "ndcg_at_k",
    "map_at_k",
    "hit_rate_at_k",
    "ranking_metrics",
    "popularity_rank_correlation",
    "popq_at_1",
]

_DENOMINATORS = ("k", "min")
# What ``preserve_rows=True`` gives a user without test interactions, where it is not 0
_NO_TEST_VALUE = {"auc": 0.5}


def _check_model(model):
    if not isinstance(model, FastRank):
        raise TypeError(f"model must be a fitted FastRank, got {type(model).__name__}")


def ranking_metrics(model, test_interactions, train_interactions=None, k=10, user_features=None,
                    item_features=None, preserve_rows=False, num_threads=1, check_intersections=True,
                    denominator="k"):
    """Every metric of this module from one scoring pass.

    Parameters
    ----------
    model : FastRank
        A fitted model.
    test_interactions : sparse matrix or array of shape (n_users, n_items)
        Held-out interactions; every stored entry is a relevant item.
    train_interactions : sparse matrix or array of shape (n_users, n_items), optional
        Items that are not candidates (typically the training interactions).
    k : int, default 10
    user_features : sparse matrix of shape (n_users, n_user_features), optional
    item_features : sparse matrix of shape (n_items, n_item_features), optional
    preserve_rows : bool, default False
        Return one value per user (for users without test interactions 0, and 0.5 for AUC, as
        LightFM) instead of one per user with test interactions.
    num_threads : int, default 1
        Threads to use, 1 to 1024.
    check_intersections : bool, default True
        Raise ``ValueError`` when train and test share an entry.
    denominator : {"k", "min"}, default "k"
        Precision@k divides by k (LightFM) or by min(k, number of test items) (implicit).

    Returns
    -------
    dict of str to float32 array of shape (n_selected_users,)
        Keys ``precision``, ``recall``, ``ndcg``, ``map``, ``hit_rate``, ``auc`` and
        ``reciprocal_rank``.
    """
    return _ranking_metrics(model, test_interactions, train_interactions, k, user_features, item_features,
                            preserve_rows, num_threads, check_intersections, denominator, top_k_only=False)


def _ranking_metrics(model, test_interactions, train_interactions, k, user_features, item_features,
                     preserve_rows, num_threads, check_intersections, denominator, top_k_only):
    """:func:`ranking_metrics`; with ``top_k_only`` the ranks are exact only below ``k`` (counting
    stops early), so only precision, recall, ndcg, map and hit_rate are valid."""
    _check_model(model)
    k = check_positive_int(k, "k")
    if denominator not in _DENOMINATORS:
        raise ValueError(f"denominator must be one of {_DENOMINATORS}, got {denominator!r}")
    ranks, n_excluded = model._rank_held_out(
        test_interactions, train_interactions, item_features, user_features, num_threads, check_intersections,
        rank_cap=k if top_k_only else 0,
    )
    n_users, n_items = ranks.shape
    counts = np.diff(ranks.indptr)
    rows = np.repeat(np.arange(n_users), counts)
    # ranks sorted within each user; ``order`` is each entry's position in its user's ranking
    sorted_ranks = ranks.data[np.lexsort((ranks.data, rows))].astype(np.float64)
    order = np.arange(ranks.nnz) - np.repeat(ranks.indptr[:-1], counts)
    hit = sorted_ranks < k

    def per_user(values):
        return np.bincount(rows, weights=values, minlength=n_users)

    hits = per_user(hit.astype(np.float64))
    has_test = counts > 0
    safe_counts = np.maximum(counts, 1)
    cutoff = np.minimum(k, safe_counts)
    discounts = 1.0 / np.log2(np.arange(min(k, int(safe_counts.max(initial=1)))) + 2.0)
    ideal = np.cumsum(discounts)[cutoff - 1]

    n_negatives = n_items - counts - n_excluded
    negatives_before = per_user(sorted_ranks - order)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.where(n_negatives > 0, 1.0 - negatives_before / (safe_counts * np.maximum(n_negatives, 1)), 0.5)
    best = np.full(n_users, np.inf)
    np.minimum.at(best, rows, sorted_ranks)

    metrics = {
        "precision": hits / (k if denominator == "k" else cutoff),
        "recall": hits / safe_counts,
        "ndcg": per_user(np.where(hit, 1.0 / np.log2(sorted_ranks + 2.0), 0.0)) / ideal,
        "map": per_user(np.where(hit, (order + 1.0) / (sorted_ranks + 1.0), 0.0)) / cutoff,
        "hit_rate": (hits > 0).astype(np.float64),
        "auc": auc,
        "reciprocal_rank": 1.0 / (1.0 + best),
    }
    for name, values in metrics.items():
        # a user without test items: AUC 0.5 (no pair to order: chance, LightFM's value), else 0
        values = np.where(has_test, values, _NO_TEST_VALUE.get(name, 0.0)).astype(np.float32)
        metrics[name] = values if preserve_rows else values[has_test]
    return metrics


# Metrics that only look at the top k: their ranks need not be exact beyond k.
_TOP_K_METRICS = frozenset({"precision", "recall", "ndcg", "map", "hit_rate"})


def _metric(name, model, test_interactions, train_interactions, k, user_features, item_features,
            preserve_rows, num_threads, check_intersections, denominator="k"):
    return _ranking_metrics(
        model, test_interactions, train_interactions, k, user_features, item_features, preserve_rows,
        num_threads, check_intersections, denominator, top_k_only=name in _TOP_K_METRICS,
    )[name]


def precision_at_k(model, test_interactions, train_interactions=None, k=10, user_features=None,
                   item_features=None, preserve_rows=False, num_threads=1, check_intersections=True,
                   denominator="k"):
    """Precision@k per user: test items in the top ``k``, divided by ``k`` (LightFM).

    Parameters are those of :func:`ranking_metrics`; ``denominator="min"`` divides by
    min(k, number of the user's test items) instead.

    Returns
    -------
    float32 array of shape (n_users_with_test,), or (n_users,) with ``preserve_rows``
    """
    return _metric("precision", model, test_interactions, train_interactions, k, user_features,
                   item_features, preserve_rows, num_threads, check_intersections, denominator)


def recall_at_k(model, test_interactions, train_interactions=None, k=10, user_features=None,
                item_features=None, preserve_rows=False, num_threads=1, check_intersections=True):
    """Recall@k per user: the fraction of the user's test items in the top ``k``.

    Parameters and return as :func:`precision_at_k`, without ``denominator``.
    """
    return _metric("recall", model, test_interactions, train_interactions, k, user_features,
                   item_features, preserve_rows, num_threads, check_intersections)


def ndcg_at_k(model, test_interactions, train_interactions=None, k=10, user_features=None,
              item_features=None, preserve_rows=False, num_threads=1, check_intersections=True):
    """NDCG@k per user: binary relevance, log2 discount, ideal DCG over min(k, |test|) items.

    Parameters and return as :func:`precision_at_k`, without ``denominator``.
    """
    return _metric("ndcg", model, test_interactions, train_interactions, k, user_features,
                   item_features, preserve_rows, num_threads, check_intersections)


def map_at_k(model, test_interactions, train_interactions=None, k=10, user_features=None,
             item_features=None, preserve_rows=False, num_threads=1, check_intersections=True):
    """Average precision at k per user, normalised by min(k, |test|) (its mean is MAP@k).

    Parameters and return as :func:`precision_at_k`, without ``denominator``.
    """
    return _metric("map", model, test_interactions, train_interactions, k, user_features,
                   item_features, preserve_rows, num_threads, check_intersections)


def hit_rate_at_k(model, test_interactions, train_interactions=None, k=10, user_features=None,
                  item_features=None, preserve_rows=False, num_threads=1, check_intersections=True):
    """Hit rate@k per user: 1 if any test item is in the top ``k``, else 0.

    Parameters and return as :func:`precision_at_k`, without ``denominator``.
    """
    return _metric("hit_rate", model, test_interactions, train_interactions, k, user_features,
                   item_features, preserve_rows, num_threads, check_intersections)


def auc_score(model, test_interactions, train_interactions=None, user_features=None, item_features=None,
              preserve_rows=False, num_threads=1, check_intersections=True):
    """ROC AUC per user: how often a test item ranks before a negative item.

    Negatives are the items in neither the user's test nor train row. Parameters and return as
    :func:`precision_at_k` without ``k``.
    """
    return _metric("auc", model, test_interactions, train_interactions, 1, user_features,
                   item_features, preserve_rows, num_threads, check_intersections)


def reciprocal_rank(model, test_interactions, train_interactions=None, user_features=None,
                    item_features=None, preserve_rows=False, num_threads=1, check_intersections=True):
    """Reciprocal rank per user: 1 / (1 + rank of the best-ranked test item).

    Parameters and return as :func:`auc_score`.
    """
    return _metric("reciprocal_rank", model, test_interactions, train_interactions, 1, user_features,
                   item_features, preserve_rows, num_threads, check_intersections)


# ---------------------------------------------------------------------------- popularity bias

def _positive_scores(model, interactions, user_features, item_features, num_threads):
    """Users with at least two positives: (user, item, score, item popularity) of their positives."""
    _check_model(model)
    csr = to_csr(interactions, "interactions")
    csr.data = (csr.data > 0).astype(np.float32)
    csr.eliminate_zeros()
    popularity = np.bincount(csr.indices, minlength=csr.shape[1]).astype(np.float64)
    counts = np.diff(csr.indptr)
    users = np.repeat(np.arange(csr.shape[0]), counts)
    keep = counts[users] >= 2
    users, items = users[keep], csr.indices[keep]
    scores = model.predict(users, items, user_features=user_features, item_features=item_features,
                           num_threads=num_threads)
    return users, items, scores.astype(np.float64), popularity


def _grouped_quantiles(groups, values):
    """Quantile of each value within its group by descending value: 0 for the largest, 1 for the
    smallest, ties sharing their average rank (groups have at least two members)."""
    order = np.lexsort((-values, groups))
    sorted_groups, sorted_values = groups[order], -values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    sizes = np.diff(np.r_[starts, len(order)])
    group_start = np.repeat(starts, sizes)
    position = np.arange(len(order)) - group_start
    # runs of equal (group, value) share the mean of their positions
    new_run = np.r_[True, (np.diff(sorted_groups) != 0) | (np.diff(sorted_values) != 0)]
    run = np.cumsum(new_run) - 1
    mean_position = np.bincount(run, weights=position) / np.bincount(run)
    quantiles = np.empty(len(order))
    quantiles[order] = mean_position[run] / (np.repeat(sizes, sizes) - 1)
    return quantiles


def popularity_rank_correlation(model, interactions, user_features=None, item_features=None, num_threads=1):
    """Popularity-rank correlation for items (PRI) of Rhee, Cho and Suh (RecSys 2022).

    For each item, its popularity is the number of users with it among their positives
    (entries > 0 of ``interactions``). For each user with at least two positives, each positive
    gets its rank quantile among that user's positives by score (0 = top, 1 = bottom, average
    ranks for ties); an item's average rank is the mean of its quantiles. PRI is minus the
    Spearman correlation between popularity and average rank: +1 when popular positives are
    always ranked first, about 0 for a model without popularity bias.

    Parameters
    ----------
    model : FastRank
    interactions : sparse matrix of shape (n_users, n_items)
        Usually the training interactions.
    user_features, item_features : sparse matrices, optional
    num_threads : int, default 1
        Threads to use, 1 to 1024.

    Returns
    -------
    float
    """
    from scipy.stats import spearmanr

    users, items, scores, popularity = _positive_scores(model, interactions, user_features, item_features,
                                                        num_threads)
    if users.size == 0:
        raise ValueError("popularity_rank_correlation needs users with at least two positive interactions")
    quantiles = _grouped_quantiles(users, scores)
    seen = np.bincount(items, minlength=popularity.shape[0])
    rated = seen > 0
    average_rank = np.bincount(items, weights=quantiles, minlength=popularity.shape[0])[rated] / seen[rated]
    if np.ptp(popularity[rated]) == 0 or np.ptp(average_rank) == 0:
        return 0.0
    return float(-spearmanr(popularity[rated], average_rank)[0])


def popq_at_1(model, interactions, user_features=None, item_features=None, num_threads=1):
    """PopQ@1 of Rhee, Cho and Suh (RecSys 2022): where the top-scored positive sits in popularity.

    For each user with at least two positives, the positive the model scores highest gets its
    popularity quantile among that user's positives (0 = the most popular of them, 1 = the
    least, average ranks for ties); PopQ@1 is the mean over users. A popularity-biased model is
    near 0, an unbiased one near 0.5. Ties in score go to the lower item id.

    Parameters as :func:`popularity_rank_correlation`.

    Returns
    -------
    float
        In [0, 1].
    """
    users, items, scores, popularity = _positive_scores(model, interactions, user_features, item_features,
                                                        num_threads)
    if users.size == 0:
        raise ValueError("popq_at_1 needs users with at least two positive interactions")
    popularity_quantiles = _grouped_quantiles(users, popularity[items])
    # the top-scored positive of each user: highest score, then lowest item id
    order = np.lexsort((items, -scores, users))
    first = np.r_[True, np.diff(users[order]) != 0]
    return float(popularity_quantiles[order[first]].mean())
