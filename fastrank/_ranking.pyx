# cython: language_level=3
"""Scoring kernels: pair scores and within-user ranks, parallel over pairs or users.

Inputs are validated by ``fastrank._estimator``; this module only unpacks them and runs ``nogil``.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY
from libc.stdlib cimport malloc, free

from fastrank._common cimport FeatureSide, dot, representation


cdef void point_side(FeatureSide* side, object features, float[:, ::1] embeddings, float[::1] biases):
    """Point ``side`` at a feature matrix (None = identity) and its parameters; needs the GIL."""
    cdef const int[::1] indptr
    cdef const int[::1] indices
    cdef const float[::1] values
    side.embeddings = &embeddings[0, 0]
    side.biases = &biases[0]
    side.embedding_acc = NULL
    side.bias_acc = NULL
    side.embedding_momentum = NULL
    side.bias_momentum = NULL
    side.alpha = 0.0
    if features is None:
        side.identity = 1
        side.indptr = NULL
        side.indices = NULL
        side.values = NULL
    else:
        side.identity = 0
        indptr = features[0]
        indices = features[1]
        values = features[2]
        side.indptr = &indptr[0]
        side.indices = &indices[0] if indices.shape[0] > 0 else NULL
        side.values = &values[0] if values.shape[0] > 0 else NULL


def predict_pairs(const int[::1] user_ids, const int[::1] item_ids,
                  object user_features, float[:, ::1] user_embeddings, float[::1] user_biases,
                  object item_features, float[:, ::1] item_embeddings, float[::1] item_biases,
                  float[::1] out, int num_threads):
    """Score ``out[i] = user_repr[user_ids[i]] . item_repr[item_ids[i]] + biases``.

    Parameters
    ----------
    user_ids, item_ids : int32 array of shape (n_pairs,)
        Rows of the user and item feature matrices, already range-checked.
    user_features, item_features : None or tuple of (indptr, indices, values) int32/int32/float32
        CSR feature matrices; None means identity.
    user_embeddings, item_embeddings : float32 array of shape (n_features, no_components)
    user_biases, item_biases : float32 array of shape (n_features,)
    out : float32 array of shape (n_pairs,)
        Receives the scores.
    num_threads : int
    """
    cdef FeatureSide users, items
    cdef int no_components = user_embeddings.shape[1]
    cdef Py_ssize_t pair, n_pairs = user_ids.shape[0]
    cdef float* buffers
    cdef const float* user_repr
    cdef const float* item_repr
    cdef float user_bias, item_bias
    cdef int[1] allocation_failed
    allocation_failed[0] = 0
    if n_pairs == 0:
        return
    point_side(&users, user_features, user_embeddings, user_biases)
    point_side(&items, item_features, item_embeddings, item_biases)
    with nogil, parallel(num_threads=num_threads):
        buffers = <float*>malloc(2 * no_components * sizeof(float))
        if buffers == NULL:
            allocation_failed[0] = 1
        for pair in prange(n_pairs, schedule="static"):
            if buffers == NULL:
                continue
            user_repr = representation(&users, user_ids[pair], no_components, buffers, &user_bias)
            item_repr = representation(&items, item_ids[pair], no_components,
                                       buffers + no_components, &item_bias)
            out[pair] = dot(user_repr, item_repr, no_components) + user_bias + item_bias
        free(buffers)
    if allocation_failed[0]:
        raise MemoryError("fastrank could not allocate scoring buffers")


def rank_test_items(const int[::1] test_indptr, const int[::1] test_indices,
                    const int[::1] train_indptr, const int[::1] train_indices,
                    object user_features, float[:, ::1] user_embeddings, float[::1] user_biases,
                    const float[:, ::1] item_repr, const float[::1] item_repr_biases,
                    float[::1] ranks, int num_threads):
    """For every test entry, the number of items scoring strictly higher for that user.

    Items in the user's training row are left out of the count (they are not candidates); the
    test item itself never counts. Ranks are 0-based.

    Parameters
    ----------
    test_indptr, test_indices : int32 arrays
        CSR (n_users x n_items) of the test interactions.
    train_indptr, train_indices : int32 arrays
        CSR of the training interactions with the same number of rows (may have no entries).
    user_features : None or tuple of CSR arrays
    user_embeddings, user_biases : float32 arrays
        User feature parameters.
    item_repr : float32 array of shape (n_items, no_components)
        Item representations, computed once by the caller.
    item_repr_biases : float32 array of shape (n_items,)
    ranks : float32 array of shape (test nnz,)
        Receives the rank of each test entry, aligned with ``test_indices``.
    num_threads : int
    """
    cdef FeatureSide users
    cdef int no_components = user_embeddings.shape[1]
    cdef int n_items = item_repr.shape[0]
    cdef int n_users = test_indptr.shape[0] - 1
    cdef int user, item, position, other, count
    cdef float user_bias, test_score
    cdef float* scores
    cdef float* user_buffer
    cdef const float* user_repr
    cdef int[1] allocation_failed
    allocation_failed[0] = 0
    if n_users <= 0 or n_items == 0:
        return
    point_side(&users, user_features, user_embeddings, user_biases)
    with nogil, parallel(num_threads=num_threads):
        scores = <float*>malloc((n_items + no_components) * sizeof(float))
        if scores == NULL:
            allocation_failed[0] = 1
        for user in prange(n_users, schedule="dynamic"):
            if scores == NULL or test_indptr[user] == test_indptr[user + 1]:
                continue
            user_buffer = scores + n_items
            user_repr = representation(&users, user, no_components, user_buffer, &user_bias)
            for item in range(n_items):
                scores[item] = dot(user_repr, &item_repr[item, 0], no_components) + item_repr_biases[item]
            # Training items are not candidates: push them below everything.
            for position in range(train_indptr[user], train_indptr[user + 1]):
                scores[train_indices[position]] = -INFINITY
            for position in range(test_indptr[user], test_indptr[user + 1]):
                item = test_indices[position]
                test_score = dot(user_repr, &item_repr[item, 0], no_components) + item_repr_biases[item]
                count = 0
                for other in range(n_items):
                    count = count + (scores[other] > test_score)
                ranks[position] = count
        free(scores)
    if allocation_failed[0]:
        raise MemoryError("fastrank could not allocate ranking buffers")
