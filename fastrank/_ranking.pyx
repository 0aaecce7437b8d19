# cython: language_level=3
"""Scoring kernels: pair scores, ranks of held-out items and top-k selection.

Inputs are validated by ``fastrank._estimator`` / ``fastrank.evaluation``; this module only
unpacks them and runs ``nogil``.

Ranking works on blocks of users, one block per thread at a time: the thread scores its block
against every item (the user matrix carries a column of ones and the item matrix a column of
item biases, so the product is ``user_repr . item_repr + item_bias``), then ranks the block's
users from those scores while they are still in its cache. Scoring is a small matrix product
of our own (``fastrank_score_tile``: tiles of 6 users by panels of 16 items packed once), not
BLAS: every score is computed by the same sequence of operations, and the scores never travel
to main memory and back, as a whole block of BLAS output did (with a pass to clear it first).
Memory per thread is bounded by the block: ``block_users * n_items`` floats.

Ties are broken one way everywhere: of two items with equal scores, the lower item id ranks
first. Ranks are therefore a strict order, a constant model gets no credit, and ``recommend``
agrees with the metrics.
"""

cimport cython
from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, NAN
from libc.stdlib cimport malloc, calloc, free, qsort
from libc.string cimport memcpy, memset

from fastrank._common cimport (
    FASTRANK_PANEL, FASTRANK_TILE_ROWS, FeatureSide, dot, fastrank_count_before, fastrank_count_before_many,
    fastrank_detect_cpu, fastrank_score_tile, fastrank_sorted_contains, point_feature_rows, representation,
)


cdef void point_side(FeatureSide* side, object features, const float[:, ::1] embeddings,
                     const float[::1] biases):
    """Point ``side`` at a feature matrix (None = identity) and its parameters, for scoring only
    (which never writes them: read-only arrays such as memory maps are taken); needs the GIL."""
    side.embeddings = <float*>&embeddings[0, 0]
    side.biases = <float*>&biases[0]
    side.bias_stride = 1
    side.embedding_acc = NULL
    side.bias_acc = NULL
    side.embedding_momentum = NULL
    side.bias_momentum = NULL
    side.alpha = 0.0
    point_feature_rows(side, features)


cdef void check_rows_reachable(const int[::1] ids, object features, const float[:, ::1] embeddings,
                               const float[::1] biases, str side) except *:
    """Raise unless every parameter row that scoring ``ids`` reads exists: the ids themselves on
    the identity side, else the rows of ``features`` they name and those rows' feature ids."""
    cdef Py_ssize_t n_rows = embeddings.shape[0], position
    cdef Py_ssize_t n_feature_rows
    cdef const int[::1] indptr
    cdef const int[:, ::1] entries
    if biases.shape[0] != n_rows:
        raise ValueError(f"the {side} biases and embeddings have different numbers of rows")
    n_feature_rows = n_rows
    if features is not None:
        indptr = features[0]
        entries = features[1]
        n_feature_rows = indptr.shape[0] - 1
        if indptr[0] != 0 or indptr[n_feature_rows] != entries.shape[0]:
            raise ValueError(f"the {side} feature rows are malformed")
        for position in range(entries.shape[0]):
            if entries[position, 0] < 0 or entries[position, 0] >= n_rows:
                raise ValueError(f"{side} feature id {entries[position, 0]} is beyond the model's {n_rows} "
                                 f"{side} feature rows")
    for position in range(ids.shape[0]):
        if ids[position] < 0 or ids[position] >= n_feature_rows:
            raise ValueError(f"{side} id {ids[position]} is beyond the {n_feature_rows} {side} rows")


def predict_pairs(const int[::1] user_ids, const int[::1] item_ids,
                  object user_features, const float[:, ::1] user_embeddings, const float[::1] user_biases,
                  object item_features, const float[:, ::1] item_embeddings, const float[::1] item_biases,
                  float[::1] out, int num_threads):
    """Score ``out[i] = user_repr[user_ids[i]] . item_repr[item_ids[i]] + biases``.

    Parameters
    ----------
    user_ids, item_ids : int32 array of shape (n_pairs,)
        Rows of the user and item feature matrices, already range-checked.
    user_features, item_features : None or tuple of (indptr, entries)
        Feature matrices as :func:`fastrank._validation.packed_feature_rows` makes them; None
        means identity.
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
    if item_ids.shape[0] != n_pairs or out.shape[0] != n_pairs:
        raise ValueError("user_ids, item_ids and out must have the same length")
    if item_embeddings.shape[1] != no_components:
        raise ValueError("the user and item embeddings have different widths")
    # the estimator checked all this against the model, but another thread may have replaced
    # the model's arrays since: what the loop reads is checked against what it is given
    check_rows_reachable(user_ids, user_features, user_embeddings, user_biases, "user")
    check_rows_reachable(item_ids, item_features, item_embeddings, item_biases, "item")
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
            # Assigned in the loop, so Cython makes them thread-private (taking only their address
            # would leave them shared between threads).
            user_bias = 0.0
            item_bias = 0.0
            user_repr = representation(&users, user_ids[pair], no_components, buffers, &user_bias)
            item_repr = representation(&items, item_ids[pair], no_components,
                                       buffers + no_components, &item_bias)
            out[pair] = dot(user_repr, item_repr, no_components) + user_bias + item_bias
        free(buffers)
    if allocation_failed[0]:
        raise MemoryError("fastrank could not allocate scoring buffers")


def select_instruction_set(bint allow_avx2):
    """Choose the inner loops of this module (see ``fastrank._sgd.select_instruction_set``)."""
    fastrank_detect_cpu(allow_avx2)


cdef struct Scored:
    float score
    int item


cdef inline bint ranks_before(float score_a, int item_a, float score_b, int item_b) noexcept nogil:
    """The tie rule: a higher score first; equal scores, the lower item id first."""
    return score_a > score_b or (score_a == score_b and item_a < item_b)


cdef int compare_ranked(const void* left, const void* right) noexcept nogil:
    cdef const Scored* a = <const Scored*>left
    cdef const Scored* b = <const Scored*>right
    if ranks_before(a.score, a.item, b.score, b.item):
        return -1
    if ranks_before(b.score, b.item, a.score, a.item):
        return 1
    return 0


cdef enum:
    # Panels of targets scored per pass over a block's tiles: 32 panels of 16 items (a 65-wide
    # model: 133 KB) stay in the core's cache while every tile of the block reads them.
    PANELS_PER_CHUNK = 32


@cython.cdivision(True)
cdef float* packed_targets(const float[:, ::1] targets, Py_ssize_t* stride) except NULL:
    """The targets in panels of FASTRANK_PANEL (the layout ``fastrank_score_tile`` reads), the last
    panel padded with zero rows; ``stride`` receives the padded count (a row of scores). The
    caller frees the result."""
    cdef Py_ssize_t n_targets = targets.shape[0], width = targets.shape[1], target, k
    cdef Py_ssize_t n_panels = (n_targets + FASTRANK_PANEL - 1) // FASTRANK_PANEL
    cdef float* packed = <float*>calloc(max(n_panels * width * FASTRANK_PANEL, 1), sizeof(float))
    if packed == NULL:
        raise MemoryError("fastrank could not allocate the packed scoring matrix")
    with nogil:
        for target in range(n_targets):
            for k in range(width):
                packed[((target // FASTRANK_PANEL) * width + k) * FASTRANK_PANEL + target % FASTRANK_PANEL] = \
                    targets[target, k]
    stride[0] = n_panels * FASTRANK_PANEL
    return packed


@cython.cdivision(True)
cdef void score_rows(const float[:, ::1] queries, Py_ssize_t first, int count, const float* packed,
                     float* tile, float* out, Py_ssize_t out_stride) noexcept nogil:
    """``out[r * out_stride + j] = queries[first + r] . target j`` for r < count and every target j
    packed by ``packed_targets`` (``out_stride``: its padded count; scores past the last target are
    padding). ``tile``: scratch for FASTRANK_TILE_ROWS rows of the queries' width."""
    cdef int n_panels = <int>(out_stride / FASTRANK_PANEL)
    cdef int width = queries.shape[1]
    cdef int chunk, tile_first, rows, last_full = count - count % FASTRANK_TILE_ROWS
    cdef const float* tile_rows
    if count == 0 or n_panels == 0:
        return
    if last_full < count:
        # The short last tile runs on zero rows past its end, and only its own rows are stored.
        memset(tile, 0, FASTRANK_TILE_ROWS * width * sizeof(float))
        memcpy(tile, &queries[first + last_full, 0], (count - last_full) * width * sizeof(float))
    chunk = 0
    while chunk < n_panels:
        tile_first = 0
        while tile_first < count:
            rows = min(FASTRANK_TILE_ROWS, count - tile_first)
            tile_rows = tile if tile_first == last_full else &queries[first + tile_first, 0]
            fastrank_score_tile(tile_rows, width, rows, width, packed, chunk, min(chunk + PANELS_PER_CHUNK, n_panels),
                                out + tile_first * out_stride, out_stride)
            tile_first += FASTRANK_TILE_ROWS
        chunk += PANELS_PER_CHUNK


def block_size(Py_ssize_t n_queries, Py_ssize_t n_targets, Py_ssize_t budget_floats=1 << 20):
    """Queries per block (a whole number of tiles when the budget allows) so that one block of
    scores holds at most ``budget_floats`` floats. Each thread scores and ranks its own blocks."""
    cdef Py_ssize_t size = budget_floats // max(n_targets, 1)
    if size >= FASTRANK_TILE_ROWS:
        size -= size % FASTRANK_TILE_ROWS
    return int(max(1, min(n_queries, size)))


cdef enum:
    # Exact ranks of up to this many held-out items of a user are counted by branch-free passes
    # over the scores (several items per pass); beyond, one pass places every candidate among the
    # sorted held-out items by binary search, which pays a branch misprediction at most steps.
    # Measured on 20,000-item rows: counting was faster up to 2,000 held-out items (0.43 against
    # 0.50 s for 300 users), slower from 4,000 (1.30 against 0.72 s). Ranks capped at k are always
    # counted: each count stops once it passes k (0.18 against 0.51 s with 8,000 items).
    COUNTING_LIMIT = 2048


cdef inline void count_ranks(float* scores, int n_items, const int[::1] test_indices, int start, int n_test,
                             const int[::1] exclude_indices, int exclude_start, int exclude_stop,
                             int rank_cap, float* thresholds, int* counts, float[::1] ranks) noexcept nogil:
    """Rank each held-out item by counting the items before it (``thresholds`` and ``counts``:
    scratch space for ``n_test`` values).

    Excluded items that are not held out are first overwritten with NaN in ``scores`` (the
    caller's scratch row), which no comparison counts: they are then never counted, instead of
    counted and taken back item by item. Exact ranks (``rank_cap`` 0) count several held-out
    items per pass over the scores; with ``rank_cap`` > 0 each count stops once it reaches the cap
    and is written as the cap.
    """
    cdef int j, position, excluded, count
    for position in range(exclude_start, exclude_stop):
        excluded = exclude_indices[position]
        if not fastrank_sorted_contains(&test_indices[start], n_test, excluded):
            scores[excluded] = NAN
    if rank_cap <= 0:
        for j in range(n_test):
            thresholds[j] = scores[test_indices[start + j]]
        fastrank_count_before_many(scores, n_items, thresholds, &test_indices[start], n_test, counts)
        for j in range(n_test):
            ranks[start + j] = counts[j]
        return
    for j in range(n_test):
        count = fastrank_count_before(scores, n_items, scores[test_indices[start + j]], test_indices[start + j],
                                      rank_cap)
        ranks[start + j] = rank_cap if count >= rank_cap else count


def rank_held_out(const float[:, ::1] user_matrix, const float[:, ::1] item_matrix,
                  const int[::1] test_indptr, const int[::1] test_indices,
                  const int[::1] exclude_indptr, const int[::1] exclude_indices,
                  float[::1] ranks, int num_threads, Py_ssize_t block_users, int rank_cap=0):
    """Rank of every test entry among its user's candidates (0 = first).

    Parameters
    ----------
    user_matrix : float32 array of shape (n_users, width)
        Row u: user u's representation followed by 1.
    item_matrix : float32 array of shape (n_items, width)
        Row i: item i's representation followed by its bias.
    test_indptr, test_indices : int32 arrays
        CSR (n_users x n_items, sorted columns) of the held-out items.
    exclude_indptr, exclude_indices : int32 arrays
        CSR with the same rows of items that are not candidates (e.g. training items).
    ranks : float32 array of shape (test nnz,)
        Receives, for each test entry, the number of candidates ranked before it under the tie
        rule, other test items included and excluded items not.
    num_threads : int
    block_users : int
        Users scored and ranked together by one thread (``block_size``); each thread holds
        ``block_users`` rows of scores. The items are packed once, a copy of ``item_matrix``.
    rank_cap : int, default 0
        When > 0, a rank of ``rank_cap`` or more may be written as ``rank_cap`` (exact below it):
        enough for top-k metrics with k <= ``rank_cap``, and counting stops early. 0: exact.
    """
    cdef Py_ssize_t n_users = user_matrix.shape[0]
    cdef int n_items = item_matrix.shape[0], width = user_matrix.shape[1]
    cdef Py_ssize_t first, count, user, longest = 0, stride = 0, block_index, n_blocks
    cdef int row, position, item, start, n_test, low, high, middle, j, seen
    cdef float score
    cdef float* packed
    cdef float* block
    cdef float* tile
    cdef float* scores
    cdef float* thresholds
    cdef unsigned char* marks
    cdef Scored* held
    cdef int* beaten
    cdef int[1] allocation_failed
    allocation_failed[0] = 0
    if item_matrix.shape[1] != width:
        raise ValueError(f"user_matrix has {width} columns, item_matrix {item_matrix.shape[1]}")
    if n_users == 0 or n_items == 0 or ranks.shape[0] == 0:
        return
    for user in range(n_users):
        longest = max(longest, test_indptr[user + 1] - test_indptr[user])
    packed = packed_targets(item_matrix, &stride)
    n_blocks = (n_users + block_users - 1) // block_users
    with nogil, parallel(num_threads=num_threads):
        block = <float*>malloc(block_users * stride * sizeof(float))
        tile = <float*>malloc(FASTRANK_TILE_ROWS * width * sizeof(float))
        marks = <unsigned char*>calloc(n_items, 1)
        held = <Scored*>malloc((longest + 1) * sizeof(Scored))
        beaten = <int*>malloc((longest + 1) * sizeof(int))
        thresholds = <float*>malloc((longest + 1) * sizeof(float))
        if block == NULL or tile == NULL or marks == NULL or held == NULL or beaten == NULL or thresholds == NULL:
            allocation_failed[0] = 1
        for block_index in prange(n_blocks, schedule="dynamic"):
            if block == NULL or tile == NULL or marks == NULL or held == NULL or beaten == NULL or thresholds == NULL:
                continue
            first = block_index * block_users
            count = min(block_users, n_users - first)
            score_rows(user_matrix, first, <int>count, packed, tile, block, stride)
            for row in range(<int>count):
                user = first + row
                start = test_indptr[user]
                n_test = test_indptr[user + 1] - start
                if n_test == 0:
                    continue
                scores = block + <Py_ssize_t>row * stride
                if n_test <= COUNTING_LIMIT or rank_cap > 0:
                    count_ranks(scores, n_items, test_indices, start, n_test,
                                exclude_indices, exclude_indptr[user], exclude_indptr[user + 1], rank_cap,
                                thresholds, beaten, ranks)
                    continue
                for position in range(exclude_indptr[user], exclude_indptr[user + 1]):
                    marks[exclude_indices[position]] = 1
                for j in range(n_test):
                    item = test_indices[start + j]
                    marks[item] = 1
                    held[j].score = scores[item]
                    held[j].item = item
                    beaten[j] = 0
                beaten[n_test] = 0
                qsort(held, n_test, sizeof(Scored), compare_ranked)
                # Exact ranks only (capped ones are counted above). Each candidate ranks before a
                # suffix of the sorted held-out items; find where the suffix starts and count it
                # there, then accumulate.
                for item in range(n_items):
                    if marks[item]:
                        continue
                    score = scores[item]
                    if not ranks_before(score, item, held[n_test - 1].score, held[n_test - 1].item):
                        continue
                    low = 0
                    high = n_test - 1
                    while low < high:
                        middle = (low + high) >> 1
                        if ranks_before(score, item, held[middle].score, held[middle].item):
                            high = middle
                        else:
                            low = middle + 1
                    beaten[low] = beaten[low] + 1
                seen = 0
                for j in range(n_test):
                    seen = seen + beaten[j]
                    beaten[j] = seen + j  # candidates before it, plus the held-out items before it
                for j in range(n_test):
                    # write each rank at its test entry (test columns are sorted: binary search)
                    low = start
                    high = start + n_test - 1
                    while low < high:
                        middle = (low + high) >> 1
                        if test_indices[middle] < held[j].item:
                            low = middle + 1
                        else:
                            high = middle
                    ranks[low] = beaten[j]
                for position in range(exclude_indptr[user], exclude_indptr[user + 1]):
                    marks[exclude_indices[position]] = 0
                for j in range(n_test):
                    marks[test_indices[start + j]] = 0
        free(block)
        free(tile)
        free(marks)
        free(held)
        free(beaten)
        free(thresholds)
    free(packed)
    if allocation_failed[0]:
        raise MemoryError("fastrank could not allocate ranking buffers")


cdef inline void sift_down(Scored* heap, int size, int position) noexcept nogil:
    """Restore a heap whose root is the worst-ranked entry (the next to be replaced)."""
    cdef int child
    cdef Scored moving = heap[position]
    while True:
        child = 2 * position + 1
        if child >= size:
            break
        if child + 1 < size and ranks_before(heap[child].score, heap[child].item,
                                             heap[child + 1].score, heap[child + 1].item):
            child += 1
        if ranks_before(heap[child].score, heap[child].item, moving.score, moving.item):
            break
        heap[position] = heap[child]
        position = child
    heap[position] = moving


cdef inline void sift_up(Scored* heap, int position) noexcept nogil:
    """Move a new entry up while it ranks after its parent (the root stays the worst)."""
    cdef int parent
    cdef Scored moving = heap[position]
    while position > 0:
        parent = (position - 1) >> 1
        if not ranks_before(heap[parent].score, heap[parent].item, moving.score, moving.item):
            break
        heap[position] = heap[parent]
        position = parent
    heap[position] = moving


cdef inline bint any_at_least(const float* values, int count, float threshold) noexcept nogil:
    """Whether any of ``values[0:count]`` is >= ``threshold`` (a loop the compiler vectorises)."""
    cdef int j, found = 0
    for j in range(count):
        found = found | (values[j] >= threshold)
    return found != 0


def top_k(const float[:, ::1] query_matrix, const float[:, ::1] candidate_matrix,
          const int[::1] candidate_ids, const int[::1] exclude_indptr, const int[::1] exclude_indices,
          int n_ids, int k, int[:, ::1] out_ids, float[:, ::1] out_scores, int num_threads,
          Py_ssize_t block_queries):
    """The ``k`` best candidates of every query, best first, by partial (heap) selection.

    Parameters
    ----------
    query_matrix : float32 array of shape (n_queries, width)
    candidate_matrix : float32 array of shape (n_candidates, width)
        Score of a pair = query row . candidate row.
    candidate_ids : int32 array of shape (n_candidates,)
        Item id of each candidate row (ids < ``n_ids``); ties go to the lower id.
    exclude_indptr, exclude_indices : int32 arrays
        CSR (n_queries rows, ids < n_ids) of ids that must not be returned for each query.
    n_ids : int
        Upper bound of the ids.
    k : int
    out_ids : int32 array of shape (n_queries, k)
        Receives the ids, -1 where fewer than k candidates remain.
    out_scores : float32 array of shape (n_queries, k)
        Receives the scores, -inf where fewer than k candidates remain.
    num_threads : int
    block_queries : int
        Queries scored and selected together by one thread (``block_size``). The candidates are
        packed once, a copy of ``candidate_matrix``.
    """
    cdef Py_ssize_t n_queries = query_matrix.shape[0]
    cdef int n_candidates = candidate_matrix.shape[0], width = query_matrix.shape[1]
    cdef Py_ssize_t first, count, query, stride = 0, block_index, n_blocks
    cdef int row, position, j, size, item, group, group_end
    cdef float score
    cdef float* packed
    cdef float* block
    cdef float* tile
    cdef float* scores
    cdef unsigned char* marks
    cdef Scored* heap
    cdef Scored last
    cdef int[1] allocation_failed
    allocation_failed[0] = 0
    if candidate_matrix.shape[1] != width:
        raise ValueError(f"query_matrix has {width} columns, candidate_matrix {candidate_matrix.shape[1]}")
    if n_queries == 0:
        return
    packed = packed_targets(candidate_matrix, &stride)
    n_blocks = (n_queries + block_queries - 1) // block_queries
    with nogil, parallel(num_threads=num_threads):
        block = <float*>malloc(max(block_queries * stride, 1) * sizeof(float))
        tile = <float*>malloc(FASTRANK_TILE_ROWS * width * sizeof(float))
        marks = <unsigned char*>calloc(max(n_ids, 1), 1)
        heap = <Scored*>malloc(k * sizeof(Scored))
        if block == NULL or tile == NULL or marks == NULL or heap == NULL:
            allocation_failed[0] = 1
        for block_index in prange(n_blocks, schedule="dynamic"):
            if block == NULL or tile == NULL or marks == NULL or heap == NULL:
                continue
            first = block_index * block_queries
            count = min(block_queries, n_queries - first)
            score_rows(query_matrix, first, <int>count, packed, tile, block, stride)
            for row in range(<int>count):
                query = first + row
                scores = block + <Py_ssize_t>row * stride
                for position in range(exclude_indptr[query], exclude_indptr[query + 1]):
                    marks[exclude_indices[position]] = 1
                size = 0
                for group in range(0, n_candidates, 16):
                    group_end = min(group + 16, n_candidates)
                    # once the heap is full, most candidates score below its worst entry:
                    # skip whole groups of them before touching ids and exclusion marks
                    if size == k and not any_at_least(scores + group, group_end - group, heap[0].score):
                        continue
                    for j in range(group, group_end):
                        score = scores[j]
                        if size == k and score < heap[0].score:
                            continue
                        item = candidate_ids[j]
                        if marks[item]:
                            continue
                        if size < k:
                            heap[size].score = score
                            heap[size].item = item
                            sift_up(heap, size)
                            size = size + 1
                        elif ranks_before(score, item, heap[0].score, heap[0].item):
                            heap[0].score = score
                            heap[0].item = item
                            sift_down(heap, size, 0)
                # Pop worst-first into the output from the back.
                for j in range(k - 1, -1, -1):
                    if j >= size:
                        out_ids[query, j] = -1
                        out_scores[query, j] = -INFINITY
                        continue
                    out_ids[query, j] = heap[0].item
                    out_scores[query, j] = heap[0].score
                    last = heap[size - 1]
                    size = size - 1
                    if size > 0:
                        heap[0] = last
                        sift_down(heap, size, 0)
                for position in range(exclude_indptr[query], exclude_indptr[query + 1]):
                    marks[exclude_indices[position]] = 0
        free(block)
        free(tile)
        free(marks)
        free(heap)
    free(packed)
    if allocation_failed[0]:
        raise MemoryError("fastrank could not allocate selection buffers")
