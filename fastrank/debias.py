"""Popularity debiasing helpers: inverse-propensity sample weights.

The score regularisers of Rhee, Cho and Suh (RecSys 2022) are ``FastRank(debias="zerosum")``
and ``FastRank(debias="pos2neg2")``; the bias metrics are
:func:`fastrank.evaluation.popularity_rank_correlation` and :func:`fastrank.evaluation.popq_at_1`.
"""

import numpy as np
import scipy.sparse as sp

from fastrank._validation import check_interactions, is_finite_real

__all__ = ["inverse_propensity_weights"]


def inverse_propensity_weights(interactions, power=1.0, clip=None):
    """Weights that count each interaction by popularity(item) ** -power (the IPW baseline).

    Parameters
    ----------
    interactions : sparse matrix or array of shape (n_users, n_items)
        Popularity of an item is its number of positive (> 0) entries.
    power : float, default 1.0
        0 gives uniform weights; 1 weighs each item's interactions by 1 / popularity.
    clip : float, optional
        Largest weight allowed after normalisation (> 1): larger weights are capped and the rest
        rescaled, repeatedly, so the mean stays 1 and no weight exceeds ``clip``.

    Returns
    -------
    scipy.sparse.coo_matrix of shape (n_users, n_items), float32
        Same entries as the canonical form of ``interactions`` (duplicates summed), weights
        with mean 1; usable as ``sample_weight``. Every entry is weighted by its item's
        popularity; an item without positive entries counts as popularity 1.
    """
    if not is_finite_real(power) or power < 0:
        raise ValueError(f"power must be a non-negative finite number, got {power!r}")
    if clip is not None and (not is_finite_real(clip) or clip <= 1):
        raise ValueError(f"clip must be None or a finite number > 1, got {clip!r}")
    csr = check_interactions(interactions)
    popularity = np.bincount(csr.indices[csr.data > 0], minlength=csr.shape[1]).astype(np.float64)
    # in logs, relative to the largest weight: popularity ** -power underflows to 0 for every
    # entry when power is large, and the mean normalisation would then divide 0 by 0
    log_weights = -float(power) * np.log(np.maximum(popularity[csr.indices], 1.0))
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.mean()
    if clip is not None:
        for _ in range(100):
            over = weights > clip
            if not over.any():
                break
            weights[over] = clip
            free = ~over
            # rescale the uncapped weights so that the mean returns to 1
            target = len(weights) - clip * over.sum()
            if not free.any() or target <= 0:
                break
            weights[free] *= target / weights[free].sum()
        weights = np.minimum(weights, clip)
    coo = sp.csr_matrix((weights.astype(np.float32), csr.indices, csr.indptr), shape=csr.shape).tocoo()
    return coo
