"""Accuracy on MovieLens 100K against the thresholds of the core-engine issue.

The metrics are computed here from ``predict_rank`` with plain numpy, independently of
``fastrank.evaluation``: precision@10 divides the test items ranked in the top 10 by 10; AUC is
the fraction of (test item, negative) pairs ordered correctly, negatives being the items in
neither the user's train nor test row.
"""

import numpy as np
import pytest

from fastrank import FastRank

# loss -> (precision@10, AUC) that 6 epochs must reach (LightFM: WARP 0.205/0.937,
# BPR 0.168/0.822, logistic 0.114/0.881, WARP-KOS 0.196/0.901 on this protocol).
THRESHOLDS = {
    "warp": (0.19, 0.93),
    "bpr": (0.15, 0.80),
    "logistic": (0.10, 0.87),
    "warp-kos": (0.18, 0.89),
}


def precision_and_auc(model, train, test, num_threads):
    ranks = model.predict_rank(test, train, num_threads=num_threads).tocsr()
    n_items = test.shape[1]
    train_counts = np.diff(train.tocsr().indptr)
    precisions, aucs = [], []
    for user in range(test.shape[0]):
        user_ranks = np.sort(ranks.data[ranks.indptr[user]:ranks.indptr[user + 1]])
        if user_ranks.size == 0:
            continue
        precisions.append(np.sum(user_ranks < 10) / 10)
        n_negatives = n_items - train_counts[user] - user_ranks.size
        negatives_above = user_ranks - np.arange(user_ranks.size)
        aucs.append(np.mean(1.0 - negatives_above / n_negatives))
    return float(np.mean(precisions)), float(np.mean(aucs))


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("loss", sorted(THRESHOLDS))
def test_movielens_accuracy(movielens_split, loss, num_threads):
    train, test = movielens_split
    model = FastRank(no_components=64, learning_rate=0.05, loss=loss, random_state=0)
    model.fit(train, epochs=6, num_threads=num_threads)
    precision, auc = precision_and_auc(model, train, test, num_threads)
    min_precision, min_auc = THRESHOLDS[loss]
    assert precision >= min_precision, f"{loss}: precision@10 {precision:.3f} < {min_precision}"
    assert auc >= min_auc, f"{loss}: AUC {auc:.3f} < {min_auc}"


def test_untrained_model_is_far_below_thresholds(movielens_split):
    """The metric code can tell a trained model from a random one."""
    train, test = movielens_split
    model = FastRank(no_components=64, loss="warp", random_state=0).fit(train, epochs=0)
    precision, auc = precision_and_auc(model, train, test, 1)
    assert precision < 0.05 and auc < 0.6
