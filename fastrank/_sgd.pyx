# cython: language_level=3
"""Training kernels: one Hogwild-parallel (or stratified, see ``stratified_examples``) SGD epoch
for each loss.

Kernels only. Every argument is validated and converted by ``fastrank._estimator`` before it
gets here; this module unpacks arrays into C pointers under the GIL and then runs one ``nogil``
OpenMP region. Threads update shared parameters without locks (Hogwild), each with its own
random number generator and scratch buffers.
"""

cimport cython
cimport numpy as cnp
import numpy as np
from math import gcd
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport expf, logf, sqrtf, floorf, fabsf, tanhf, isfinite
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy

from fastrank._common cimport (
    splitmix64,
    FASTRANK_HAVE_OPENMP, FASTRANK_PREFETCH, FeatureSide, fastrank_adagrad_row, fastrank_adadelta_row, fastrank_sgd_row, fastrank_user_pairwise_gradient,
    fastrank_pairwise_adagrad, fastrank_pairwise_sgd,
    fastrank_detect_cpu, fastrank_simd_level, fastrank_sorted_contains, fastrank_rank_key, fastrank_key_score,
    fastrank_key_item, fastrank_kth_key, Sampler, sampler_init, sampler_start_example, example_stream, stream_draw, draw_below, peek_below,
    prefetch_floats, rows_are_canonical, fastrank_team_barrier, fastrank_claim, fastrank_team_size,
    fastrank_take_block, fastrank_block_state, fastrank_block_trained, fastrank_wait_a_little,
    dot, representation, scored_representation, fastrank_score_rows, point_feature_rows,
)

cdef enum:
    DEBIAS_NONE = 0
    DEBIAS_ZEROSUM = 1
    DEBIAS_POS2NEG2 = 2

cdef enum:
    SCHEDULE_ADAGRAD = 0
    SCHEDULE_ADADELTA = 1
    SCHEDULE_SGD = 2

# Learning-schedule codes shared with the estimator.
SCHEDULES = {"adagrad": SCHEDULE_ADAGRAD, "adadelta": SCHEDULE_ADADELTA, "sgd": SCHEDULE_SGD}

cdef enum:
    C_LOGISTIC = 0
    C_BPR = 1
    C_WARP = 2
    C_WARP_KOS = 3

# Popularity-debiasing regulariser codes shared with the estimator.
DEBIAS = {None: DEBIAS_NONE, "zerosum": DEBIAS_ZEROSUM, "pos2neg2": DEBIAS_POS2NEG2}

# Constants are C constants, not module variables, so that the compiler folds them: loops over
# PREFETCHED_FEATURES features, or up to PREFETCH_DRAWS candidates, become straight code.
cdef extern from *:
    """
    #define FASTRANK_DEBIAS_CLIP 9.0f
    #define FASTRANK_ONE 1.0f
    #define FASTRANK_ZERO 0.0f
    #define FASTRANK_MAX_LOSS 10.0f
    """
    # |score sum/difference| is clipped here inside -log(1 - tanh(.)), keeping it finite (about 17.3).
    const float DEBIAS_CLIP "FASTRANK_DEBIAS_CLIP"
    # Float constants: a bare 1.0 is a C double and would drag the arithmetic into double precision.
    const float ONE "FASTRANK_ONE"
    const float ZERO "FASTRANK_ZERO"
    # WARP's rank weight is clipped here for numerical stability.
    const float MAX_LOSS "FASTRANK_MAX_LOSS"

# Loss codes shared with the estimator.
LOGISTIC = C_LOGISTIC
BPR = C_BPR
WARP = C_WARP
WARP_KOS = C_WARP_KOS

cdef enum:
    # A BPR example whose user has interacted with (nearly) every item is skipped after this many
    # draws that all hit positives, instead of looping forever.
    BPR_TRIES = 100
    # How many WARP candidates ahead of the one being scored are prefetched.
    PREFETCH_DRAWS = 4
    CACHE_LINE_BYTES = 64
    FLOATS_PER_LINE = 16
    # Blocks' claim counters (run_epoch) this many int64 apart: two cache lines, since cores
    # also fetch a line's neighbour.
    CLAIM_STRIDE = 16
    # Examples a thread claims at a time from a block (run_epoch): about 0.1-0.2 ms of WARP, so
    # the last claims even out the threads' finishing times, and one claim per this many
    # examples costs nothing measurable.
    CLAIM_EXAMPLES = 256
    # With features: how many draws before its rows a candidate's CSR feature ids are prefetched.
    IDS_AHEAD = 2
cdef enum:
    # Feature path: how many features at the start of a CSR row are prefetched. In matrices built
    # by fastrank.data (and LightFM's Dataset) the first is the row's own identity feature, used
    # by that row alone and so rarely cached; features shared by many rows mostly stay cached, and
    # prefetching them too measured slower (WARP with item and user features: 8 -> 1 cut epoch
    # time by about 20%, the prefetches of cached lines costing more than the misses they saved).
    PREFETCHED_FEATURES = 1
    # k-OS with features: how many sampled positives ahead of the one being scored are prefetched.
    # (2 -> 4: epoch time 0.943, 0.966 and 0.995 of before on the 50,000-user set with user and
    # item features, three runs of alternating process pairs, the last in a quiet moment; 6 was
    # even with 2, and all of them at once, 10, 2% slower)
    KOS_ROWS_AHEAD = 4
# Models whose parameters and optimizer state (both sides) take at most this many bytes stay in
# the caches of one core, where software prefetching only adds instructions: on MovieLens 100K
# (1.4 MB) WARP epochs took 10% less time without it, WARP-kOS 5%, logistic 6%, BPR 1%; at 4 MB
# it was even, and at 14 MB WARP took 37% more time without it.
DEFAULT_PREFETCH_ABOVE_BYTES = 2 * 1024 * 1024
cdef Py_ssize_t prefetch_above_bytes = DEFAULT_PREFETCH_ABOVE_BYTES
MAX_BPR_TRIES = BPR_TRIES


cdef Py_ssize_t swap_threshold(Py_ssize_t* threshold, Py_ssize_t default, Py_ssize_t size_bytes) noexcept:
    """Set a size threshold (-1: its default) and return the previous one (the test hooks)."""
    cdef Py_ssize_t previous = threshold[0]
    threshold[0] = default if size_bytes < 0 else size_bytes
    return previous


def set_prefetch_threshold(Py_ssize_t size_bytes):
    """Test hook: prefetch only for models of more than ``size_bytes`` bytes of parameters and
    optimizer state (a quarter of that for BPR; 0: always; -1 restores the default). Returns the
    previous threshold."""
    return swap_threshold(&prefetch_above_bytes, DEFAULT_PREFETCH_ABOVE_BYTES, size_bytes)


cdef Py_ssize_t side_bytes(tuple parameters):
    """Bytes of one side's parameter and optimizer-state arrays."""
    cdef Py_ssize_t total = 0
    for array in parameters:
        if array is not None:
            total += array.nbytes
    return total


def is_cache_aligned(cnp.ndarray array):
    """Whether ``array`` is C-contiguous and empty or starting on a 64-byte boundary: what the
    kernels want of a parameter array (:func:`fastrank._validation.cache_aligned`). numpy's
    ``array.ctypes.data`` takes a microsecond, and ``fit_partial`` asks of every array each call."""
    return cnp.PyArray_IS_C_CONTIGUOUS(array) and (
        cnp.PyArray_SIZE(array) == 0 or <uintptr_t>cnp.PyArray_DATA(array) % CACHE_LINE_BYTES == 0)


def openmp_enabled():
    """Whether the kernels were compiled with OpenMP."""
    return bool(FASTRANK_HAVE_OPENMP)


def select_instruction_set(bint allow_avx2):
    """Choose the inner loops once, at import: AVX2+FMA when allowed and the CPU has it.

    Returns "avx2" or "baseline".
    """
    fastrank_detect_cpu(allow_avx2)
    return "avx2" if fastrank_simd_level() == 2 else "baseline"


cdef void fisher_yates(uint64_t seed, int* order, Py_ssize_t n) noexcept nogil:
    """A uniformly random permutation of ``0 .. n-1`` into ``order``."""
    cdef Py_ssize_t i, j
    cdef int swap
    cdef uint64_t state = seed
    for i in range(n):
        order[i] = <int>i
    for i in range(n - 1, 0, -1):
        # multiply-shift instead of a 64-bit modulo (several times cheaper); n < 2**31
        j = <Py_ssize_t>(((splitmix64(&state) >> 32) * <uint64_t>(i + 1)) >> 32)
        swap = order[i]
        order[i] = order[j]
        order[j] = swap


cdef inline Py_ssize_t block_start(Py_ssize_t n, int blocks, int block) noexcept nogil:
    """Where block ``block`` of ``blocks`` equal, contiguous ranges of ``n`` examples starts: the
    cut of :func:`shuffled_examples`, and of :func:`run_epoch` given no block bounds."""
    return n * block // blocks


def equal_block_bounds(Py_ssize_t n, int n_blocks):
    """int64 array of shape (n_blocks + 1,): the bounds of ``n_blocks`` equal, contiguous blocks
    of ``n`` examples (:func:`block_start`)."""
    return np.array([block_start(n, n_blocks, block) for block in range(n_blocks + 1)], dtype=np.int64)


cdef inline uint64_t block_seed(uint64_t seed, int blocks, int block) noexcept nogil:
    """The shuffling seed of one block: ``seed`` itself when there is one block, so that a
    single-thread epoch visits the same order as an unblocked shuffle."""
    cdef uint64_t state
    if blocks == 1:
        return seed
    state = seed + <uint64_t>(block + 1) * <uint64_t>0x9E3779B97F4A7C15
    return splitmix64(&state)


cdef enum:
    # floats per task of first_nonfinite: 64 KiB, about a microsecond. Dealt round-robin, tasks this
    # small even out the threads (with 256 KiB tasks, MovieLens 100K's four arrays made five, and
    # one of two threads checked 125k of 170k floats: 22 us of a 26 us check)
    FINITE_CHECK_CHUNK = 1 << 14


cdef uint32_t has_nonfinite(const float* values, Py_ssize_t n) noexcept nogil:
    """1 if any of ``values[0:n]`` is NaN or infinite (all exponent bits set), else 0: integer
    tests on the bits, which vectorise, unlike float comparisons that must keep NaN semantics."""
    cdef const uint32_t* bits = <const uint32_t*>values
    cdef uint32_t found = 0
    cdef Py_ssize_t i
    for i in range(n):
        found |= (bits[i] & 0x7F800000U) == 0x7F800000U
    return found


# (for the tests: where the tasks of first_nonfinite cut an array)
FINITE_CHECK_TASK_FLOATS = FINITE_CHECK_CHUNK


def first_nonfinite(tuple arrays, int num_threads=1):
    """The position in ``arrays`` of the first array holding a NaN or an infinity, or -1.

    Parameters
    ----------
    arrays : tuple of float32 C-contiguous arrays, any shapes
        The arrays are cut into chunks of ``FINITE_CHECK_CHUNK`` floats, all checked in one
        parallel region (four regions, one per array, took twice as long on a small model).
    num_threads : int, default 1

    Returns
    -------
    int
    """
    cdef Py_ssize_t n_arrays = len(arrays), n_tasks = 0, task, size, offset, index
    cdef const float** task_values
    cdef Py_ssize_t* task_sizes
    cdef Py_ssize_t* task_arrays
    cdef uint32_t* found  # per task
    cdef cnp.ndarray array
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    for index in range(n_arrays):
        array = arrays[index]
        if array is None or array.dtype != np.float32 or not cnp.PyArray_IS_C_CONTIGUOUS(array):
            raise ValueError("first_nonfinite needs C-contiguous float32 arrays")
        n_tasks += (cnp.PyArray_SIZE(array) + FINITE_CHECK_CHUNK - 1) // FINITE_CHECK_CHUNK
    task_values = <const float**>malloc(max(n_tasks, 1) * sizeof(float*))
    task_sizes = <Py_ssize_t*>malloc(max(n_tasks, 1) * sizeof(Py_ssize_t))
    task_arrays = <Py_ssize_t*>malloc(max(n_tasks, 1) * sizeof(Py_ssize_t))
    found = <uint32_t*>malloc(max(n_tasks, 1) * sizeof(uint32_t))
    if task_values == NULL or task_sizes == NULL or task_arrays == NULL or found == NULL:
        free(task_values)
        free(task_sizes)
        free(task_arrays)
        free(found)
        raise MemoryError("fastrank could not allocate the finiteness check")
    task = 0
    for index in range(n_arrays):
        array = arrays[index]
        size = cnp.PyArray_SIZE(array)
        for offset in range(0, size, FINITE_CHECK_CHUNK):
            task_values[task] = <const float*>cnp.PyArray_DATA(array) + offset
            task_sizes[task] = min(<Py_ssize_t>FINITE_CHECK_CHUNK, size - offset)
            task_arrays[task] = index
            task += 1
    with nogil, parallel(num_threads=max(1, min(<Py_ssize_t>num_threads, n_tasks))):
        for task in prange(n_tasks, schedule="static", chunksize=1):
            found[task] = has_nonfinite(task_values[task], task_sizes[task])
    index = n_arrays
    for task in range(n_tasks - 1, -1, -1):
        if found[task]:
            index = task_arrays[task]
    free(task_values)
    free(task_sizes)
    free(task_arrays)
    free(found)
    return -1 if index == n_arrays else index


def run_order(unsigned long long seed, Py_ssize_t n, int run_length):
    """A permutation of ``0 .. n-1`` made of runs of ``run_length`` consecutive ids (the last run
    may be shorter), the runs in the random order :func:`shuffled_order` gives for ``seed``.

    Returns
    -------
    int32 array of shape (n,)
    """
    if n < 0 or n >= 2**31 - 1 or run_length < 1:
        raise ValueError(f"run_order needs 0 <= n < 2**31 - 1 and run_length >= 1, got {n}, {run_length}")
    cdef Py_ssize_t n_runs = (n + run_length - 1) // run_length, run, position = 0, first, id_
    order = np.empty(n, dtype=np.int32)
    runs = shuffled_order(seed, n_runs)
    cdef int[::1] out = order
    cdef const int[::1] run_ids = runs
    with nogil:
        for run in range(n_runs):
            first = <Py_ssize_t>run_ids[run] * run_length
            for id_ in range(first, min(first + run_length, n)):
                out[position] = <int>id_
                position += 1
    return order


def shuffled_order(unsigned long long seed, Py_ssize_t n):
    """The visiting order :func:`shuffled_examples` uses for ``seed`` with one block: int32
    array of shape (n,)."""
    order = np.empty(n, dtype=np.int32)
    cdef int[::1] view = order
    if n > 0:
        with nogil:
            fisher_yates(seed, &view[0], n)
    return order


cdef void shuffle_in_place(uint64_t seed, int* users, int* items, float* labels, float* weights,
                           Py_ssize_t n) noexcept nogil:
    """Apply the swaps :func:`fisher_yates` makes for ``seed`` to the example arrays themselves
    (``labels``/``weights`` may be NULL): the result is ``array[order]`` for the permutation
    :func:`shuffled_order` returns, without allocating the permutation."""
    cdef Py_ssize_t i, j
    cdef int swap_int
    cdef float swap_float
    cdef uint64_t state = seed
    for i in range(n - 1, 0, -1):
        j = <Py_ssize_t>(((splitmix64(&state) >> 32) * <uint64_t>(i + 1)) >> 32)
        swap_int = users[i]
        users[i] = users[j]
        users[j] = swap_int
        swap_int = items[i]
        items[i] = items[j]
        items[j] = swap_int
        if labels != NULL:
            swap_float = labels[i]
            labels[i] = labels[j]
            labels[j] = swap_float
        if weights != NULL:
            swap_float = weights[i]
            weights[i] = weights[j]
            weights[j] = swap_float


cdef int check_bounds(const int64_t* bounds, Py_ssize_t n_ranges, Py_ssize_t n) noexcept nogil:
    """0 when ``bounds`` (``n_ranges + 1`` entries: a row pointer, block bounds) rises from 0 to
    ``n``; else 1."""
    cdef Py_ssize_t i
    if bounds[0] != 0 or bounds[n_ranges] != n:
        return 1
    for i in range(n_ranges):
        if bounds[i + 1] < bounds[i]:
            return 1
    return 0


cdef int check_ranges(const int64_t[:, ::1] ranges, Py_ssize_t n) noexcept nogil:
    """0 when every row of ``ranges`` (n_ranges, 2) is a range ``start <= stop`` within
    ``[0, n]``; else 1."""
    cdef Py_ssize_t i
    for i in range(ranges.shape[0]):
        if not 0 <= ranges[i, 0] <= ranges[i, 1] <= n:
            return 1
    return 0


cdef void check_user_order(const int[::1] user_order) except *:
    """Raise ValueError unless ``user_order`` is a permutation of ``0 .. n_users - 1``."""
    cdef Py_ssize_t i, n_users = user_order.shape[0]
    cdef int user, failed = 0
    cdef unsigned char[::1] seen = np.zeros(max(n_users, 1), dtype=np.uint8)
    with nogil:
        for i in range(n_users):
            user = user_order[i]
            if user < 0 or user >= n_users or seen[user]:
                failed = 1
                break
            seen[user] = 1
    if failed:
        raise ValueError("user_order must be a permutation of the user ids")


cdef inline void fill_ints(int* out, Py_ssize_t count, int value) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(count):
        out[j] = value


cdef void copy_in_user_order(const int* items, const float* labels, const float* weights,
                             const int64_t* user_starts, const int* user_order, Py_ssize_t n_users,
                             int* out_users, int* out_items, float* out_labels, float* out_weights) noexcept nogil:
    """Copy each user's run of examples (``user_starts[u]:user_starts[u + 1]``) to the output,
    the users in ``user_order`` (NULL: in id order), and write each example's user."""
    cdef Py_ssize_t i, start, count, position = 0
    cdef int user
    if user_order == NULL:  # the examples as they are: one copy of each array
        for user in range(n_users):
            fill_ints(out_users + user_starts[user], user_starts[user + 1] - user_starts[user], user)
        count = user_starts[n_users]
        memcpy(out_items, items, count * sizeof(int))
        if labels != NULL:
            memcpy(out_labels, labels, count * sizeof(float))
        if weights != NULL:
            memcpy(out_weights, weights, count * sizeof(float))
        return
    for i in range(n_users):
        user = user_order[i]
        start = user_starts[user]
        count = user_starts[user + 1] - start
        fill_ints(out_users + position, count, user)
        memcpy(out_items + position, items + start, count * sizeof(int))
        if labels != NULL:
            memcpy(out_labels + position, labels + start, count * sizeof(float))
        if weights != NULL:
            memcpy(out_weights + position, weights + start, count * sizeof(float))
        position += count


def shuffled_examples(unsigned long long seed, const int64_t[::1] user_starts, const int[::1] items,
                      const float[::1] labels=None, const float[::1] weights=None,
                      const int[::1] user_order=None, int n_blocks=1):
    """The training examples in a random order, as new arrays, cut into blocks of users.

    Parameters
    ----------
    seed : int
        Seed of the shuffle.
    user_starts : int64 array of shape (n_users + 1,)
        The examples are sorted by user, user ``u``'s at positions
        ``user_starts[u]:user_starts[u + 1]`` (a CSR row pointer, rising from 0 to n_examples).
        It stands for an array of each example's user, which would add four bytes per example
        to the peak memory of ``fit``.
    items : int32 array of shape (n_examples,)
        Each example's item.
    labels, weights : float32 array of shape (n_examples,) or None
        Per-example values and weights; None is returned in the place of a None.
    user_order : int32 array of shape (n_users,), optional
        A permutation of the user ids. The examples are laid out user by user in this order,
        then cut into ``n_blocks`` blocks of equal size (only a user at a cut is in two), and
        each block is shuffled within itself (the blocks in parallel, one thread each). None:
        one block, the whole set shuffled.
    n_blocks : int, default 1
        How many blocks to cut.

    Returns
    -------
    users, items : int32 arrays of shape (n_examples,)
        The examples of block 0 (in a random order), then those of block 1, and so on.
    labels, weights : float32 arrays of shape (n_examples,) or None
        Shuffled with them.
    bounds : int64 array of shape (n_blocks + 1,)
        Block ``b`` is at positions ``bounds[b]:bounds[b + 1]``.

    ``fit`` gives each thread one block (:func:`run_epoch`'s ``block_bounds``), so a user's rows
    are updated by one thread only (but at the end of an epoch, when a thread done with its
    block helps finish another's): on small models, threads writing the same rows (every
    user's, under a global shuffle) is what limits the speed-up. With one block the order is
    ``array[shuffled_order(seed, n)]`` of the arrays sorted by user.

    Shuffles in place, in C: numpy's permutation plus fancy-index gathers cost a noticeable
    share of an epoch on small data sets, and a permutation array would add four bytes per
    example to the peak memory of ``fit``.
    """
    cdef Py_ssize_t n = items.shape[0]
    cdef Py_ssize_t n_users = user_starts.shape[0] - 1
    cdef Py_ssize_t start, stop
    cdef int block
    if (labels is not None and labels.shape[0] != n) or (weights is not None and weights.shape[0] != n):
        raise ValueError("the example arrays must have the same length")
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
    if user_order is None and n_blocks != 1:
        raise ValueError("more than one block needs user_order")
    if user_order is not None and user_starts.shape[0] != user_order.shape[0] + 1:
        raise ValueError("user_starts must have one entry more than user_order")
    if n_users < 0 or check_bounds(&user_starts[0], n_users, n):
        raise ValueError("user_starts must rise from 0 to the number of examples")
    out_users = np.empty(n, dtype=np.int32)
    out_items = np.empty(n, dtype=np.int32)
    out_labels = None if labels is None else np.empty(n, dtype=np.float32)
    out_weights = None if weights is None else np.empty(n, dtype=np.float32)
    bounds = equal_block_bounds(n, n_blocks)
    cdef int[::1] u = out_users
    cdef int[::1] it = out_items
    cdef float[::1] lab
    cdef float[::1] w
    cdef float* label_pointer = NULL
    cdef float* weight_pointer = NULL
    if user_order is not None:
        check_user_order(user_order)
    cdef const int64_t[::1] cuts = bounds
    if n == 0:
        return out_users, out_items, out_labels, out_weights, bounds
    if out_labels is not None:
        lab = out_labels
        label_pointer = &lab[0]
    if out_weights is not None:
        w = out_weights
        weight_pointer = &w[0]
    with nogil:
        copy_in_user_order(&items[0], &labels[0] if labels is not None else NULL,
                           &weights[0] if weights is not None else NULL, &user_starts[0],
                           &user_order[0] if user_order is not None else NULL, n_users,
                           &u[0], &it[0], label_pointer, weight_pointer)
    with nogil, parallel(num_threads=n_blocks):
        for block in prange(n_blocks, schedule="static", chunksize=1):
            start = cuts[block]
            stop = cuts[block + 1]
            if stop - start > 1:
                shuffle_in_place(block_seed(seed, n_blocks, block), &u[start], &it[start],
                                 label_pointer + start if label_pointer != NULL else NULL,
                                 weight_pointer + start if weight_pointer != NULL else NULL, stop - start)
    return out_users, out_items, out_labels, out_weights, bounds


# Item rows in a cache-resident model are shared between cores under Hogwild: on MovieLens 100K,
# 2 threads ran WARP epochs only 1.57x as fast as one, while two models trained at once (two
# processes, or two Python threads) each kept their one-thread speed. Stratified SGD
# (Gemulla et al., KDD 2011) removes the sharing: users are cut into runs and items into as many
# groups, and a block trains one user run's examples whose item is in one group, drawing
# negatives from that group only; blocks of different runs and groups share no row and train at
# once. Every (user run, item group) cell is visited once per epoch. With one stratum per thread
# the rounds were separated by barriers, at which a thread waited for the slowest block of the
# round; with one stratum more than threads (FPSGD's grid, Zhuang et al., RecSys 2013) a thread
# done early takes any block whose predecessors are trained (train_strata).
#
# Groups are made of chunks of consecutive item ids filling a page of embeddings: with groups of
# single items, the cores' hardware prefetchers pulled the neighbouring rows, owned by the other
# group, and the epoch took 4.4 ms instead of 3.6 ms (WARP, MovieLens 100K, 2 threads; 7.2 ms on
# one thread).
STRATUM_CHUNK_BYTES = 4096
# But a chunk holds at most this share of its group's items (1 / STRATUM_CHUNK_SHARE), down to
# whole cache lines of rows: a positive's negatives are drawn in its own group, which always
# holds its chunk, and where item ids follow popularity (ids given by frequency rank) the items
# of a chunk are alike, so they were drawn against each other n_strata times as often as without
# strata. On 2,000 users x 600 items (136,000 power-law positives, popularity all there is to
# learn) with ids by popularity, WARP at 2 threads (3 groups of 200 items) reached test p@10
# 0.250 with chunks of 16 items, 0.273 with 8, 0.284 with 4 and 0.285 with 2, against 0.287 on
# one thread (4 seeds); with random ids, and on MovieLens 100K and ml-latest-small with ids by
# popularity, chunks of 16 lost nothing. Smaller chunks cost time on MovieLens 100K (2 threads,
# epoch for epoch): WARP 1.015x with chunks of 8, 1.06x with 4; BPR and logistic even with 8.
STRATUM_CHUNK_SHARE = 50
cdef enum:
    BIASES_PER_LINE = CACHE_LINE_BYTES // sizeof(float)
# With 2 strata, each cell was cut into parts of about this many examples, visited in turn: with
# one round per cell, a user met the positives of one group for a long stretch and WARP lost
# precision (test p@10 0.202 against 0.206 on one thread, 4 seeds); with parts of this size it
# was 0.205, and the extra barriers (there were barriers then) cost under 10% of the epoch. fit
# scales it to its number of strata (see _estimator), keeping the examples per user of a block.
STRATUM_PART_EXAMPLES = 2048
# The layout's second balancing pass runs for at most this many runs (its cost grows as the
# cube of the run count: 2.4 ms for 16 runs on MovieLens 100K).
cdef enum:
    MAX_STRATA_REBALANCED = 5


def stratum_chunk_items(int no_components, int n_items=0, int n_strata=0):
    """How many consecutive item ids make one chunk of a group.

    A page of float32 embeddings, rounded to whole cache lines of biases (16 floats); but at most
    ``1 / STRATUM_CHUNK_SHARE`` of a group's ``n_items // n_strata`` items when ``n_items`` and
    ``n_strata`` are given, down to the fewest rows that fill whole cache lines (so that no line
    of embeddings or of their optimizer state is written by two groups; the biases train in
    private copies per group, see :func:`run_epoch`).

    Parameters
    ----------
    no_components : int
        Embedding width (float32 columns).
    n_items : int, default 0
        Number of items (0: no cap by group size).
    n_strata : int, default 0
        Number of item groups (0: no cap by group size).

    Returns
    -------
    int
        Items per chunk, >= 1.
    """
    cdef int width = max(1, no_components)
    cdef int rows = STRATUM_CHUNK_BYTES // (4 * width)
    cdef int chunk = max(BIASES_PER_LINE, rows // BIASES_PER_LINE * BIASES_PER_LINE)
    # rows of 4 * width bytes fill whole 64-byte lines every line_rows rows
    cdef int line_rows = BIASES_PER_LINE // gcd(width, BIASES_PER_LINE)
    cdef int most
    if n_items > 0 and n_strata > 0:
        most = n_items // (n_strata * STRATUM_CHUNK_SHARE)
        if most < chunk:
            chunk = max(line_rows, most // line_rows * line_rows)
    return chunk


# Models up to this size (parameters and optimizer state, both sides) train in strata: those that
# stay in one core's caches, where Hogwild's shared rows cost the most (DEFAULT_PREFETCH_ABOVE_BYTES).
DEFAULT_STRATA_UP_TO_BYTES = DEFAULT_PREFETCH_ABOVE_BYTES
cdef Py_ssize_t strata_up_to_bytes = DEFAULT_STRATA_UP_TO_BYTES


def set_strata_threshold(Py_ssize_t size_bytes):
    """Test hook: train in strata only models of at most ``size_bytes`` bytes of parameters and
    optimizer state (0: never; -1 restores the default). Returns the previous threshold."""
    return swap_threshold(&strata_up_to_bytes, DEFAULT_STRATA_UP_TO_BYTES, size_bytes)


def small_enough_for_strata(tuple user_parameters, tuple item_parameters):
    """Whether a model is small enough to train in strata (``DEFAULT_STRATA_UP_TO_BYTES``)."""
    return 0 < side_bytes(user_parameters) + side_bytes(item_parameters) <= strata_up_to_bytes


cdef struct StratumSource:
    const int64_t* user_starts
    const int* user_order
    const int64_t* run_first_user   # run t owns user_order[run_first_user[t]:run_first_user[t + 1]]
    const int* items
    const float* labels
    const float* weights
    int n_items
    int n_strata


cdef struct StratumTarget:
    int* users
    int* items
    float* labels
    float* weights
    const int* item_group
    const int64_t* cell_start        # cell (run, round) starts at cell_start[run * n_strata + round]
    int* group_starts                # NULL, or where each user's examples of each group start (see
    int* grouped_items               # stratified_examples' group_positives)


cdef void group_user_items(const StratumSource* source, const StratumTarget* target, int user,
                           int* fill) noexcept nogil:
    """A counting sort of one user's examples by the group of their item, into ``grouped_items``
    (the user's own slice of it) and ``group_starts`` (``fill``: n_strata ints of scratch)."""
    cdef int n_groups = source.n_strata, group
    cdef int64_t position, at = <int64_t>user * (n_groups + 1)
    for group in range(n_groups):
        fill[group] = 0
    for position in range(source.user_starts[user], source.user_starts[user + 1]):
        fill[target.item_group[source.items[position]]] += 1
    target.group_starts[at] = <int>source.user_starts[user]
    for group in range(n_groups):
        target.group_starts[at + group + 1] = target.group_starts[at + group] + fill[group]
        fill[group] = target.group_starts[at + group]
    for position in range(source.user_starts[user], source.user_starts[user + 1]):
        group = target.item_group[source.items[position]]
        target.grouped_items[fill[group]] = source.items[position]
        fill[group] += 1


cdef int count_run_items(const StratumSource* source, int run, int64_t* counts) noexcept nogil:
    """Add one run's examples to ``counts[item]``; returns 1 at an item id outside
    [0, n_items) (counting stops there)."""
    cdef int64_t k, position
    cdef int user, item
    for k in range(source.run_first_user[run], source.run_first_user[run + 1]):
        user = source.user_order[k]
        for position in range(source.user_starts[user], source.user_starts[user + 1]):
            item = source.items[position]
            if item < 0 or item >= source.n_items:
                return 1
            counts[item] += 1
    return 0


cdef inline void place_example(const StratumSource* source, const StratumTarget* target, int64_t slot, int user,
                               int item, int64_t position) noexcept nogil:
    """Write the example at ``position`` of the source (``user``, ``item``, its label and weight)
    into ``slot`` of the layout."""
    target.users[slot] = user
    target.items[slot] = item
    if source.labels != NULL:
        target.labels[slot] = source.labels[position]
    if source.weights != NULL:
        target.weights[slot] = source.weights[position]


cdef void scatter_into_two_cells(const StratumSource* source, const StratumTarget* target, int run,
                                 int64_t* filled) noexcept nogil:
    """:func:`scatter_run`'s loop for two strata: each example goes to one of the run's two
    cells, whose fill counters stay in registers. With the counters in memory (``filled``, as
    for more strata), an example bound for the same cell as the one before waits for that
    counter's store, half of the time with two cells: the loop took 45-48 us per run on
    MovieLens 100K, against 32 us this way. (With more cells a repeat is rarer, and each run
    scatters fewer examples.)"""
    cdef int64_t first = filled[0], second = filled[1], slot, position, k
    cdef int user, item, to_second
    for k in range(source.run_first_user[run], source.run_first_user[run + 1]):
        user = source.user_order[k]
        for position in range(source.user_starts[user], source.user_starts[user + 1]):
            item = source.items[position]
            # the run's round r trains group (run + r) % 2: group ^ run is the round
            to_second = target.item_group[item] ^ run
            slot = second if to_second else first
            second += to_second
            first += 1 - to_second
            place_example(source, target, slot, user, item, position)
    filled[0] = first
    filled[1] = second


cdef int scatter_run(const StratumSource* source, const StratumTarget* target, int run,
                     uint64_t seed) noexcept nogil:
    """Move one run's examples into its cells, then shuffle each cell in place (a new order for
    each ``seed``); returns 1 when its counters cannot be allocated.

    The examples are read once, in user order, and written in order into the run's own cells,
    which the shuffles then find in the core's cache. (Shuffling while scattering, by drawing
    each example's slot among those filled so far, took 0.157 ms against 0.134 ms for this
    layout on MovieLens 100K with 2 user runs: its random reads and writes all missed the cache.)"""
    cdef int n_strata = source.n_strata, round_, user, item
    cdef int64_t k, position, slot, start
    cdef int64_t* filled = <int64_t*>malloc(n_strata * (sizeof(int64_t) + sizeof(int)))
    cdef int* fill  # group_user_items' scratch, after the cells' fill counters
    if filled == NULL:
        return 1
    fill = <int*>(filled + n_strata)
    for round_ in range(n_strata):
        filled[round_] = target.cell_start[run * n_strata + round_]
    if n_strata == 2 and target.group_starts == NULL:
        scatter_into_two_cells(source, target, run, filled)
    else:
        for k in range(source.run_first_user[run], source.run_first_user[run + 1]):
            user = source.user_order[k]
            if target.group_starts != NULL:
                group_user_items(source, target, user, fill)
            for position in range(source.user_starts[user], source.user_starts[user + 1]):
                item = source.items[position]
                round_ = target.item_group[item] - run
                if round_ < 0:
                    round_ += n_strata
                slot = filled[round_]
                filled[round_] = slot + 1
                place_example(source, target, slot, user, item, position)
    for round_ in range(n_strata):
        start = target.cell_start[run * n_strata + round_]
        if filled[round_] - start > 1:
            shuffle_in_place(block_seed(seed, n_strata, round_), target.users + start, target.items + start,
                             target.labels + start if target.labels != NULL else NULL,
                             target.weights + start if target.weights != NULL else NULL, filled[round_] - start)
    free(filled)
    return 0


cdef void cut_users_into_runs(const int64_t[::1] user_starts, const int[::1] user_order, int n_strata,
                              int64_t[::1] run_first_user) noexcept:
    """Cut ``user_order`` into ``n_strata`` user runs: run ``t`` starts at the first user whose
    examples begin at or after ``t / n_strata`` of all examples (laid out in that order), so
    that runs differ by less than one user's examples and no user is in two runs."""
    cdef Py_ssize_t n_users = user_order.shape[0], k = 0
    cdef int64_t position = 0, n = user_starts[n_users]
    cdef int run, user
    run_first_user[0] = 0
    for run in range(1, n_strata):
        while k < n_users and position < block_start(n, n_strata, run):
            user = user_order[k]
            position += user_starts[user + 1] - user_starts[user]
            k += 1
        run_first_user[run] = k
    run_first_user[n_strata] = n_users


cdef int64_t epoch_length(const int64_t[:, ::1] cell_load, int n_strata) noexcept:
    """Examples of the fullest cell of each round, summed over rounds (cell_load[run, group])."""
    cdef int64_t total = 0, most
    cdef int round_, run
    for round_ in range(n_strata):
        most = 0
        for run in range(n_strata):
            most = max(most, cell_load[run, (run + round_) % n_strata])
        total += most
    return total


cdef void move_chunk(int64_t[:, ::1] cell_load, const int64_t[:, ::1] chunk_load, int chunk, int source,
                     int target, int n_strata) noexcept:
    cdef int run
    for run in range(n_strata):
        cell_load[run, source] -= chunk_load[chunk, run]
        cell_load[run, target] += chunk_load[chunk, run]


cdef void group_chunks_evenly(uint64_t seed, const int64_t[:, ::1] chunk_load, int n_strata,
                              int[::1] chunk_group) noexcept:
    """Put each chunk of items (``chunk_load[chunk, run]``: the run's examples of its items)
    in one of ``n_strata`` groups, so that every round of :func:`stratified_examples` gives its
    runs about the same number of examples."""
    cdef int n_chunks = chunk_load.shape[0], chunk, group, lightest, run, round_, sweep, candidate
    cdef Py_ssize_t j, n = 0
    cdef int64_t growth, best_growth, load
    cdef int64_t[:, ::1] cell_load = np.zeros((n_strata, n_strata), dtype=np.int64)  # [run, group]
    cdef int64_t[::1] round_most = np.zeros(n_strata, dtype=np.int64)
    cdef int64_t[::1] group_chunks = np.zeros(n_strata, dtype=np.int64)
    cdef int[::1] chunk_order = np.empty(n_chunks, dtype=np.int32)
    for chunk in range(n_chunks):
        for run in range(n_strata):
            n += chunk_load[chunk, run]
    fisher_yates(seed ^ <uint64_t>0xA0761D6478BD642FULL, &chunk_order[0], n_chunks)
    # The chunks, in a random order, each go to the group whose choice lengthens the epoch least:
    # run t trains group g in round (g - t) % n_strata, and a round lasts as long as its
    # fullest cell, so the growth is the sum over runs of how far the cell passes its round's
    # fullest (ties: the group with the fewest chunks, which also spreads unseen items). The
    # first n_strata chunks seed one group each, so that no group is empty.
    for j in range(n_chunks):
        chunk = chunk_order[j]
        lightest = <int>j
        if j >= n_strata:
            best_growth = -1
            for group in range(n_strata):
                growth = 0
                for run in range(n_strata):
                    round_ = (group - run + n_strata) % n_strata
                    load = cell_load[run, group] + chunk_load[chunk, run]
                    if load > round_most[round_]:
                        growth += load - round_most[round_]
                if best_growth < 0 or growth < best_growth or (
                        growth == best_growth and group_chunks[group] < group_chunks[lightest]):
                    best_growth = growth
                    lightest = group
        chunk_group[chunk] = lightest
        group_chunks[lightest] += 1
        for run in range(n_strata):
            round_ = (lightest - run + n_strata) % n_strata
            cell_load[run, lightest] += chunk_load[chunk, run]
            round_most[round_] = max(round_most[round_], cell_load[run, lightest])
    # A heavy chunk drawn late can leave rounds uneven that earlier choices would have evened out:
    # then move chunks, in the same random order, wherever that shortens the epoch (up to two
    # sweeps; each try costs n_strata**2, so only for a few runs).
    for sweep in range(2 if n_strata <= MAX_STRATA_REBALANCED else 0):
        if epoch_length(cell_load, n_strata) * n_strata * 100 <= n * 101:
            break  # within 1% of even rounds
        for j in range(n_chunks):
            chunk = chunk_order[j]
            group = chunk_group[chunk]
            if group_chunks[group] == 1:
                continue  # no group is emptied
            best_growth = epoch_length(cell_load, n_strata)
            lightest = group
            for candidate in range(n_strata):
                if candidate == group:
                    continue
                move_chunk(cell_load, chunk_load, chunk, group, candidate, n_strata)
                growth = epoch_length(cell_load, n_strata)
                move_chunk(cell_load, chunk_load, chunk, candidate, group, n_strata)
                if growth < best_growth:
                    best_growth = growth
                    lightest = candidate
            if lightest != group:
                move_chunk(cell_load, chunk_load, chunk, group, lightest, n_strata)
                chunk_group[chunk] = lightest
                group_chunks[group] -= 1
                group_chunks[lightest] += 1


def stratified_examples(unsigned long long seed, const int64_t[::1] user_starts, const int[::1] items,
                        const float[::1] labels, const float[::1] weights, const int[::1] user_order,
                        int n_strata, int n_items, int chunk_items,
                        Py_ssize_t part_examples=STRATUM_PART_EXAMPLES, bint group_positives=False,
                        int num_threads=0):
    """Lay out one epoch's examples for stratified training (see the comment above).

    Parameters
    ----------
    seed : int
        Seed of the random grouping of the items and of the order within each cell.
    user_starts : int64 array of shape (n_users + 1,)
        The examples sorted by user, user ``u``'s at ``user_starts[u]:user_starts[u + 1]`` (as in
        :func:`shuffled_examples`).
    items : int32 array of shape (n_examples,)
        Each example's item; every value must be in ``[0, n_items)``.
    labels, weights : float32 arrays of shape (n_examples,) or None
        Per-example values and weights, moved with the examples (None stays None).
    user_order : int32 array of shape (n_users,)
        A permutation of the user ids, cut into ``n_strata`` user runs of about equal numbers
        of examples (never inside a user's): user run ``t`` holds the users of the ``t``-th.
    n_strata : int
        Number of user runs and of item groups (>= 2). ``fit`` takes one more than its threads,
        so that a thread done with a block usually finds another ready (see
        :func:`train_strata`).
    n_items : int
        Number of items.
    chunk_items : int
        Items are grouped in chunks of this many consecutive ids (:func:`stratum_chunk_items`);
        there must be at least ``n_strata`` chunks.
    part_examples : int, default STRATUM_PART_EXAMPLES
        Target number of examples of one block.
    group_positives : bool, default False
        Also sort each user's examples by group, for WARP-kOS, whose examples are its positives
        and which samples them among the user's positives in the block's group.
    num_threads : int, default 0
        Threads that lay the user runs out (0: one per user run).

    Returns
    -------
    users, items : int32 arrays of shape (n_examples,)
        The same examples, cell by cell: cell ``(t, round)`` holds user run ``t``'s examples
        whose item is in group ``(t + round) % n_strata``, in a uniformly random order (a new
        one for each seed); the cells lie user run by user run, and round by round within one.
    labels, weights : float32 arrays of shape (n_examples,) or None
        Moved with them.
    block_ranges : int64 array of shape (n_blocks, 2)
        Block ``b = (part * n_strata + round) * n_strata + t`` is the ``part``-th of the
        ``n_parts`` equal slices (sizes differ by at most one) of cell ``(t, round)``, at positions
        ``block_ranges[b, 0]:block_ranges[b, 1]``; ``n_blocks = n_parts * n_strata ** 2``.
    candidate_items : int32 array of shape (n_items,)
        The item ids, group by group.
    block_candidates : int64 array of shape (n_blocks, 2)
        The range of ``candidate_items`` that block ``b`` draws negatives from (its group).
    rounds : int
        ``n_parts * n_strata``, :func:`run_epoch`'s ``rounds``: each round holds one block of
        every user run and every item group.
    block_groups : int32 array of shape (n_blocks,)
        The group of each block's candidates.
    group_starts : int32 array of shape (n_users * (n_strata + 1),), or None
        With ``group_positives``: user ``u``'s examples whose item is in group ``g`` are
        ``grouped_items[group_starts[u * (n_strata + 1) + g]:group_starts[u * (n_strata + 1)
        + g + 1]]`` (:func:`run_epoch`'s ``group_positive_starts``); else None.
    grouped_items : int32 array of shape (n_examples,), or None
        With ``group_positives``: the examples' items, user by user (in id order, each at its
        own ``user_starts`` range) and group by group within a user, in their order there
        (:func:`run_epoch`'s ``group_positive_indices``); else None.

    The groups are balanced by number of examples, greedily, visiting the chunks in a random
    order, so that the blocks of a round have about the same work and no pair of items is
    kept apart in every epoch. Each user run's users' examples are read once and scattered
    into its cells, then those are shuffled (user runs in parallel): the layout replaces
    :func:`shuffled_examples` for stratified epochs.
    """
    cdef Py_ssize_t n = items.shape[0], n_users = user_order.shape[0], i
    cdef int n_chunks, chunk, group, run, round_, part, n_parts, block, n_blocks
    cdef int64_t size, most = 0, start
    if n_strata < 2:
        raise ValueError(f"stratified training needs at least 2 strata, got {n_strata}")
    if chunk_items < 1:
        raise ValueError(f"chunk_items must be >= 1, got {chunk_items}")
    if part_examples < 1:
        raise ValueError(f"part_examples must be >= 1, got {part_examples}")
    if num_threads < 0:
        raise ValueError(f"num_threads must be >= 0, got {num_threads}")
    if num_threads == 0:
        num_threads = n_strata
    if (labels is not None and labels.shape[0] != n) or (weights is not None and weights.shape[0] != n):
        raise ValueError("the example arrays must have the same length")
    if user_starts.shape[0] != n_users + 1:
        raise ValueError("user_starts must have one entry more than user_order")
    if group_positives and n >= 2147483647:
        raise ValueError("grouping the positives needs fewer than 2**31 - 1 examples")
    if check_bounds(&user_starts[0], n_users, n):
        raise ValueError("user_starts must rise from 0 to the number of examples")
    check_user_order(user_order)
    n_chunks = (n_items + chunk_items - 1) // chunk_items
    if n_chunks < n_strata:
        raise ValueError(f"{n_items} items in chunks of {chunk_items} make fewer groups than the {n_strata} strata")

    cdef int64_t[::1] run_first_user = np.empty(n_strata + 1, dtype=np.int64)
    cut_users_into_runs(user_starts, user_order, n_strata, run_first_user)
    cdef StratumSource source
    source.user_starts = &user_starts[0]
    source.user_order = &user_order[0] if n_users > 0 else NULL
    source.run_first_user = &run_first_user[0]
    source.items = &items[0] if n > 0 else NULL
    source.labels = &labels[0] if n > 0 and labels is not None else NULL
    source.weights = &weights[0] if n > 0 and weights is not None else NULL
    source.n_items = n_items
    source.n_strata = n_strata

    # item_load[run, item]: the run's examples of that item (threads in parallel), which
    # also checks the item ids before anything is written
    cdef int64_t[:, ::1] item_load = np.zeros((n_strata, n_items), dtype=np.int64)
    cdef int[1] failed  # (an array: a variable assigned in a prange would be lastprivate)
    failed[0] = 0
    with nogil, parallel(num_threads=num_threads):
        for run in prange(n_strata, schedule="static", chunksize=1):
            if count_run_items(&source, run, &item_load[run, 0]):
                failed[0] = 1
    if failed[0]:
        raise ValueError(f"item ids must be in [0, {n_items})")

    cdef int64_t[:, ::1] chunk_load = np.zeros((n_chunks, n_strata), dtype=np.int64)
    cdef int[::1] chunk_group = np.empty(n_chunks, dtype=np.int32)
    cdef int[::1] item_group = np.empty(max(n_items, 1), dtype=np.int32)
    for chunk in range(n_chunks):
        for run in range(n_strata):
            for i in range(chunk * chunk_items, min(n_items, (chunk + 1) * chunk_items)):
                chunk_load[chunk, run] += item_load[run, i]
    group_chunks_evenly(seed, chunk_load, n_strata, chunk_group)
    for chunk in range(n_chunks):
        for i in range(chunk * chunk_items, min(n_items, (chunk + 1) * chunk_items)):
            item_group[i] = chunk_group[chunk]

    # cells[run, round]: run's examples whose item is in group (run + round) % n_strata
    cdef int64_t[:, ::1] cells = np.zeros((n_strata, n_strata), dtype=np.int64)
    for run in range(n_strata):
        for chunk in range(n_chunks):
            round_ = chunk_group[chunk] - run
            if round_ < 0:
                round_ += n_strata
            cells[run, round_] += chunk_load[chunk, run]
    for run in range(n_strata):
        for round_ in range(n_strata):
            most = max(most, cells[run, round_])
    n_parts = <int>max(1, (most + part_examples // 2) // part_examples)
    n_blocks = n_parts * n_strata * n_strata

    # cells run by run, each run's round by round; block b = (part * n_strata + round)
    # * n_strata + run holds a cell's examples j with ceil(part * s / n_parts) <= j <
    # ceil((part + 1) * s / n_parts), for a cell of s examples
    cdef int64_t[::1] cell_start = np.empty(n_strata * n_strata, dtype=np.int64)
    start = 0
    for run in range(n_strata):
        for round_ in range(n_strata):
            cell_start[run * n_strata + round_] = start
            start += cells[run, round_]
    block_ranges = np.empty((n_blocks, 2), dtype=np.int64)
    cdef int64_t[:, ::1] ranges = block_ranges
    for part in range(n_parts):
        for round_ in range(n_strata):
            for run in range(n_strata):
                block = (part * n_strata + round_) * n_strata + run
                size = cells[run, round_]
                start = cell_start[run * n_strata + round_]
                ranges[block, 0] = start + (part * size + n_parts - 1) // n_parts
                ranges[block, 1] = start + ((part + 1) * size + n_parts - 1) // n_parts

    out_users = np.empty(n, dtype=np.int32)
    out_items = np.empty(n, dtype=np.int32)
    out_labels = None if labels is None else np.empty(n, dtype=np.float32)
    out_weights = None if weights is None else np.empty(n, dtype=np.float32)
    cdef int[::1] u = out_users
    cdef int[::1] it = out_items
    cdef float[::1] lab = out_labels
    cdef float[::1] w = out_weights
    cdef StratumTarget target
    target.users = &u[0] if n > 0 else NULL
    target.items = &it[0] if n > 0 else NULL
    target.labels = &lab[0] if n > 0 and labels is not None else NULL
    target.weights = &w[0] if n > 0 and weights is not None else NULL
    target.item_group = &item_group[0]
    target.cell_start = &cell_start[0]
    target.group_starts = NULL
    target.grouped_items = NULL
    group_starts = grouped_items = None
    cdef int[::1] starts_view
    cdef int[::1] grouped_view
    if group_positives:
        group_starts = np.zeros(n_users * (n_strata + 1), dtype=np.int32)
        grouped_items = np.empty(n, dtype=np.int32)
        starts_view = group_starts
        if n_users > 0:
            target.group_starts = &starts_view[0]
        if n > 0:
            grouped_view = grouped_items
            target.grouped_items = &grouped_view[0]
    with nogil, parallel(num_threads=num_threads):
        for run in prange(n_strata, schedule="static", chunksize=1):
            if scatter_run(&source, &target, run, block_seed(seed, n_strata, run)):
                failed[0] = 1
    if failed[0]:
        raise MemoryError("fastrank could not allocate the stratified layout's counters")

    # the item ids group by group, and each block's range of them
    cdef int64_t[::1] group_start = np.zeros(n_strata + 1, dtype=np.int64)
    for i in range(n_items):
        group_start[item_group[i] + 1] += 1
    for group in range(n_strata):
        group_start[group + 1] += group_start[group]
    candidate_items = np.empty(n_items, dtype=np.int32)
    cdef int[::1] candidates = candidate_items
    cdef int64_t[::1] filled = np.zeros(n_strata, dtype=np.int64)
    for i in range(n_items):
        group = item_group[i]
        candidates[group_start[group] + filled[group]] = <int>i
        filled[group] += 1
    block_candidates = np.empty((n_blocks, 2), dtype=np.int64)
    block_groups = np.empty(n_blocks, dtype=np.int32)
    cdef int64_t[:, ::1] candidate_ranges = block_candidates
    cdef int[::1] groups_of_blocks = block_groups
    for block in range(n_blocks):
        run = block % n_strata
        round_ = (block // n_strata) % n_strata
        group = (run + round_) % n_strata
        groups_of_blocks[block] = group
        candidate_ranges[block, 0] = group_start[group]
        candidate_ranges[block, 1] = group_start[group + 1]
    return (out_users, out_items, out_labels, out_weights, block_ranges, candidate_items, block_candidates,
            n_parts * n_strata, block_groups, group_starts, grouped_items)


cdef struct Model:
    FeatureSide users
    FeatureSide items
    int no_components
    int schedule                   # SCHEDULE_ADAGRAD, SCHEDULE_ADADELTA or SCHEDULE_SGD
    float learning_rate
    float rho
    float epsilon
    int n_items
    int max_sampled
    int k
    int n
    int debias                     # DEBIAS_NONE, DEBIAS_ZEROSUM or DEBIAS_POS2NEG2
    int prefetch                   # 0 when the model is small enough to stay cached (no prefetching)
    int prefetch_next_rows         # small model, several threads: prefetch the next example's rows only
    float debias_weight
    const int* positive_indptr     # CSR of the positive (value > 0) interactions, sorted columns
    const int* positive_indices
    const int* group_positive_starts   # stratified k-OS: user u's positives in group g are
    const int* group_positive_indices  # indices[starts[u * (n_groups + 1) + g]:...[+ g + 1]]
    int n_groups


cdef struct Workspace:
    Sampler sampler
    void* buffers_allocation          # what malloc returned for the float buffers below
    float* user_buffer                # the start of those buffers, on a cache line
    float* positive_buffer
    float* negative_buffer
    float* user_gradient
    float* positive_gradient
    float* negative_gradient
    float* second_positive_buffer     # pos2neg2: the second positive and negative
    float* second_negative_buffer
    float* second_positive_gradient
    float* second_negative_gradient
    unsigned long long* rank_keys     # k-OS: (score, item) keys of the sampled positives,
    int* sampled_ids                  # their ids
    float* sampled_scores             # and their scores
    float* sampled_reprs              # k-OS with item features: their summed representations
    float* sampled_biases             # and biases, so the chosen one is not summed again
    int nonfinite_scores              # an example's score overflowed: its step was skipped
    const int* candidates             # the items negatives are drawn from (NULL: all items)
    int n_candidates
    int group                         # stratified training: the group of those items
    Model model                       # the thread's view of the model: the shared one, but for the
                                      # private bias copies of stratified epochs (run_epoch)


cdef inline float sigmoid(float x) noexcept nogil:
    return ONE / (ONE + expf(-x))


cdef inline void update_feature(const Model* model, FeatureSide* side, int feature, float weight,
                                const float* gradient, float bias_gradient, int with_bias) noexcept nogil:
    """One adagrad/adadelta/SGD step on a feature's embedding row (and bias) with L2 ``side.alpha``."""
    cdef int d = model.no_components
    cdef float alpha = side.alpha, rate = model.learning_rate
    cdef float* embedding = side.embeddings + <Py_ssize_t>feature * d
    if model.schedule == SCHEDULE_ADAGRAD:
        fastrank_adagrad_row(embedding, side.embedding_acc + <Py_ssize_t>feature * d, gradient, weight, alpha,
                             rate, d)
        if with_bias:
            update_bias(model, side, feature, weight * bias_gradient)
    elif model.schedule == SCHEDULE_SGD:
        # no optimizer state: half the memory traffic of adagrad
        fastrank_sgd_row(embedding, gradient, weight, alpha, rate, d)
        if with_bias:
            update_bias(model, side, feature, weight * bias_gradient)
    else:
        adadelta_update_feature(model, side, feature, weight, gradient, bias_gradient, with_bias)


cdef inline void update_bias(const Model* model, FeatureSide* side, int feature, float gradient) noexcept nogil:
    """One adagrad or SGD step on a feature's bias, ``gradient`` plus its L2 term."""
    cdef Py_ssize_t b = feature * side.bias_stride
    cdef float g = gradient + side.alpha * side.biases[b]
    cdef float accumulated
    if model.schedule == SCHEDULE_ADAGRAD:
        accumulated = side.bias_acc[b]
        side.biases[b] -= model.learning_rate * g / sqrtf(accumulated)
        side.bias_acc[b] = accumulated + g * g
    else:
        side.biases[b] -= model.learning_rate * g


# Apart from update_feature, which is then small enough for the compiler to inline into each
# update: its call was 1% of a MovieLens 100K BPR epoch's instructions.
cdef void adadelta_update_feature(const Model* model, FeatureSide* side, int feature, float weight,
                                  const float* gradient, float bias_gradient, int with_bias) noexcept nogil:
    cdef int d = model.no_components
    cdef float g, step, squared
    cdef float alpha = side.alpha, rho = model.rho, eps = model.epsilon
    cdef Py_ssize_t offset = <Py_ssize_t>feature * d
    cdef Py_ssize_t b = feature * side.bias_stride
    fastrank_adadelta_row(side.embeddings + offset, side.embedding_acc + offset, side.embedding_momentum + offset,
                          gradient, weight, alpha, rho, eps, d)
    if with_bias:
        g = weight * bias_gradient + alpha * side.biases[b]
        squared = rho * side.bias_momentum[b] + (1 - rho) * g * g
        side.bias_momentum[b] = squared
        step = sqrtf(side.bias_acc[b] + eps) / sqrtf(squared + eps) * g
        side.bias_acc[b] = rho * side.bias_acc[b] + (1 - rho) * step * step
        side.biases[b] -= step


cdef inline void apply_gradient(const Model* model, FeatureSide* side, int row, float scale, const float* gradient,
                                float bias_gradient, int with_bias) noexcept nogil:
    """Spread the gradient of a user/item representation, ``scale`` times ``gradient`` (and
    ``scale`` times ``bias_gradient`` on the bias), over the features of its row."""
    cdef int position
    if side.identity:
        update_feature(model, side, row, scale, gradient, bias_gradient, with_bias)
        return
    for position in range(side.indptr[row], side.indptr[row + 1]):
        update_feature(model, side, side.entries[position].feature, side.entries[position].weight * scale,
                       gradient, bias_gradient, with_bias)


cdef inline int is_positive(const Model* model, const Workspace* work, int user, int item) noexcept nogil:
    """Whether ``item`` is among the user's (sorted) positive items. In stratified k-OS, whose
    candidates all come from the block's group, the search is among the user's positives in that
    group: a shorter list, which the step has just read to sample its positives (the search of
    all the user's positives, cold in the cache, took a quarter of the negative draws' time)."""
    cdef int count
    cdef const int* positives = user_positives(model, work, user, &count)
    return fastrank_sorted_contains(positives, count, item)


cdef inline const float* kept_before_step(const float* repr_, float* buffer, int d) noexcept nogil:
    """A representation that stays as it is while the parameters move: ``repr_`` itself when it
    is already ``buffer`` (a sum of feature rows), else a copy in ``buffer`` of the model's own
    row it points to."""
    if repr_ != buffer:
        memcpy(buffer, repr_, d * sizeof(float))
    return buffer


cdef inline void pairwise_update(Model* model, Workspace* work, int user, const float* user_repr,
                                 float user_bias, int positive, const float* positive_repr, float positive_bias,
                                 int negative, const float* negative_repr, float negative_bias,
                                 float loss, float weight) noexcept nogil:
    """Gradient step of ``loss * (score(negative) - score(positive))``, shared by BPR and WARP,
    plus the popularity-debiasing regulariser when one is set."""
    if model.debias != DEBIAS_NONE:
        debiased_update(model, work, user, user_repr, user_bias, positive, positive_repr, positive_bias,
                        negative, negative_repr, negative_bias, loss, weight)
        return
    # The negative's rows were read while it was scored, but not its optimizer state, which its
    # update below needs: ask for it now, so it arrives while the positive moves.
    if model.prefetch or model.prefetch_next_rows:
        prefetch_side_row(&model.items, negative, model.no_components, PREFETCH_STATE)
    if model.users.identity and model.items.identity and model.schedule != SCHEDULE_ADADELTA:
        pairwise_update_rows(model, user, positive, negative, loss)
        return
    # All gradients are taken from the representations before any parameter moves. The user's is
    # written out; the items' are -loss and loss times the user's representation, which their
    # updates read in place (writing those two out and reading them back cost more). The user
    # moves last, so that representation is still the one scored (a copy of it, when it was the
    # model's own row and the user moved first, was 2.6% of a MovieLens 100K BPR epoch's
    # instructions).
    fastrank_user_pairwise_gradient(loss, positive_repr, negative_repr, work.user_gradient, model.no_components)
    apply_gradient(model, &model.items, positive, -loss, user_repr, ONE, 1)
    apply_gradient(model, &model.items, negative, loss, user_repr, ONE, 1)
    # The user bias cancels in a score difference, so it gets no gradient.
    apply_gradient(model, &model.users, user, ONE, work.user_gradient, 0.0, 0)


cdef inline void pairwise_update_rows(Model* model, int user, int positive, int negative, float loss) noexcept nogil:
    """:func:`pairwise_update` where users and items are their own rows (no side features): the
    three rows move in one pass (``fastrank_pairwise_adagrad``, ``fastrank_pairwise_sgd``),
    with the same arithmetic as the separate updates; the representations scored are the rows
    themselves. Callgrind, a MovieLens 100K BPR epoch with adagrad and no prefetching: 78.6M -> 56.7M
    instructions."""
    cdef Py_ssize_t d = model.no_components
    cdef FeatureSide* users = &model.users
    cdef FeatureSide* items = &model.items
    if model.schedule == SCHEDULE_ADAGRAD:
        fastrank_pairwise_adagrad(users.embeddings + user * d, users.embedding_acc + user * d,
                                  items.embeddings + positive * d, items.embedding_acc + positive * d,
                                  items.embeddings + negative * d, items.embedding_acc + negative * d,
                                  loss, users.alpha, items.alpha, model.learning_rate, model.no_components)
    else:
        fastrank_pairwise_sgd(users.embeddings + user * d, items.embeddings + positive * d,
                              items.embeddings + negative * d, loss, users.alpha, items.alpha, model.learning_rate,
                              model.no_components)
    # The user bias cancels in a score difference, so it gets no gradient.
    update_bias(model, items, positive, -loss)
    update_bias(model, items, negative, loss)


cdef inline float debias_slope(float x) noexcept nogil:
    """d/dx of -log(1 - tanh(|x|)), which is sign(x) * (1 + tanh(|x|)), with |x| clipped."""
    cdef float magnitude = fabsf(x)
    if magnitude > DEBIAS_CLIP:
        magnitude = DEBIAS_CLIP
    if x > 0:
        return ONE + tanhf(magnitude)
    if x < 0:
        return -(ONE + tanhf(magnitude))
    return ZERO


cdef inline int candidate_count(const Model* model, const Workspace* work) noexcept nogil:
    """How many items a negative is drawn from: the block's candidates, or all items."""
    return work.n_candidates if work.candidates != NULL else model.n_items


cdef inline int candidate_item(const Workspace* work, int draw) noexcept nogil:
    """The item of a draw below :func:`candidate_count`."""
    return work.candidates[draw] if work.candidates != NULL else draw


cdef inline int draw_candidate(const Model* model, Workspace* work) noexcept nogil:
    return candidate_item(work, draw_below(&work.sampler, candidate_count(model, work)))


cdef inline int peek_candidate(const Model* model, const Workspace* work, int ahead) noexcept nogil:
    return candidate_item(work, peek_below(&work.sampler, candidate_count(model, work), ahead))


cdef inline int stream_candidate(const Model* model, const Workspace* work, uint64_t stream, int ahead) noexcept nogil:
    return candidate_item(work, stream_draw(stream, candidate_count(model, work), ahead))


cdef inline int draw_negative(Model* model, Workspace* work, int user) noexcept nogil:
    """A uniformly drawn item the user has no positive interaction with, or -1 after
    ``BPR_TRIES`` draws that all hit positives."""
    cdef int tries, negative
    for tries in range(BPR_TRIES):
        negative = draw_candidate(model, work)
        if not is_positive(model, work, user, negative):
            return negative
    return -1


cdef void debiased_update(Model* model, Workspace* work, int user, const float* user_repr, float user_bias,
                          int positive, const float* positive_repr, float positive_bias,
                          int negative, const float* negative_repr, float negative_bias,
                          float loss, float weight) noexcept nogil:
    """Pairwise step plus Rhee et al.'s score regulariser (RecSys 2022).

    Every term is a function of the ranking scores s = user_repr . item_repr + item_bias (the user
    bias, which never changes a user's ranking, is left out, so it cannot absorb the
    regulariser), so the step is: coefficient c_j = d(loss)/d(s_j) for each item j involved,
    then user gradient sum_j c_j item_repr_j, item j gradient c_j user_repr, item j bias c_j.

    zerosum adds ``w * lambda * -log(1 - tanh|s_p + s_n|)``; pos2neg2 draws a second positive p2
    and a second negative n2 and adds ``w * lambda * (-log(1 - tanh|s_p - s_p2|)
    - log(1 - tanh|s_n - s_n2|))``.
    """
    cdef int d = model.no_components, c, start, count
    cdef int second_positive = -1, second_negative = -1
    cdef float strength = weight * model.debias_weight
    cdef float score_positive = dot(user_repr, positive_repr, d) + positive_bias
    cdef float score_negative = dot(user_repr, negative_repr, d) + negative_bias
    cdef float c_positive = -loss, c_negative = loss, c_second_positive = 0, c_second_negative = 0
    cdef float slope, second_bias
    cdef const float* second_positive_repr = NULL
    cdef const float* second_negative_repr = NULL
    if model.debias == DEBIAS_ZEROSUM:
        slope = strength * debias_slope(score_positive + score_negative)
        c_positive += slope
        c_negative += slope
    else:
        start = model.positive_indptr[user]
        count = model.positive_indptr[user + 1] - start
        second_positive = model.positive_indices[start + draw_below(&work.sampler, count)]
        second_positive_repr = representation(&model.items, second_positive, d, work.second_positive_buffer,
                                              &second_bias)
        slope = strength * debias_slope(
            score_positive - (dot(user_repr, second_positive_repr, d) + second_bias))
        c_positive += slope
        c_second_positive = -slope
        second_negative = draw_negative(model, work, user)
        if second_negative >= 0:
            second_negative_repr = representation(&model.items, second_negative, d,
                                                  work.second_negative_buffer, &second_bias)
            slope = strength * debias_slope(
                score_negative - (dot(user_repr, second_negative_repr, d) + second_bias))
            c_negative += slope
            c_second_negative = -slope
    # Gradients from the representations before any parameter moves.
    for c in range(d):
        work.user_gradient[c] = c_positive * positive_repr[c] + c_negative * negative_repr[c]
        work.positive_gradient[c] = c_positive * user_repr[c]
        work.negative_gradient[c] = c_negative * user_repr[c]
    if second_positive_repr != NULL:
        for c in range(d):
            work.user_gradient[c] += c_second_positive * second_positive_repr[c]
            work.second_positive_gradient[c] = c_second_positive * user_repr[c]
    if second_negative_repr != NULL:
        for c in range(d):
            work.user_gradient[c] += c_second_negative * second_negative_repr[c]
            work.second_negative_gradient[c] = c_second_negative * user_repr[c]
    apply_gradient(model, &model.users, user, ONE, work.user_gradient, ZERO, 0)
    apply_gradient(model, &model.items, positive, ONE, work.positive_gradient, c_positive, 1)
    apply_gradient(model, &model.items, negative, ONE, work.negative_gradient, c_negative, 1)
    if second_positive_repr != NULL:
        apply_gradient(model, &model.items, second_positive, ONE, work.second_positive_gradient, c_second_positive, 1)
    if second_negative_repr != NULL:
        apply_gradient(model, &model.items, second_negative, ONE, work.second_negative_gradient, c_second_negative, 1)


cdef inline void logistic_step(Model* model, Workspace* work, int user, int item, float label,
                               float weight) noexcept nogil:
    cdef float user_bias, item_bias, loss
    cdef const float* user_repr = representation(&model.users, user, model.no_components,
                                                 work.user_buffer, &user_bias)
    cdef const float* item_repr = representation(&model.items, item, model.no_components,
                                                 work.positive_buffer, &item_bias)
    cdef float score = dot(user_repr, item_repr, model.no_components) + user_bias + item_bias
    if not isfinite(score):
        work.nonfinite_scores = 1
        return
    # d/dscore of the weighted log loss; values <= 0 are negatives.
    loss = weight * (sigmoid(score) - (ONE if label > 0 else ZERO))
    # The gradients are loss times the other side's representation, which the updates read in
    # place (no gradient arrays written and read back); each must see the other's as it was
    # before the step, so an item row read from the model is kept before the item moves.
    item_repr = kept_before_step(item_repr, work.positive_buffer, model.no_components)
    apply_gradient(model, &model.items, item, loss, user_repr, ONE, 1)
    apply_gradient(model, &model.users, user, loss, item_repr, ONE, 1)


cdef inline void bpr_step(Model* model, Workspace* work, int user, int positive, float weight) noexcept nogil:
    cdef float user_bias, positive_bias, negative_bias, positive_score, negative_score
    cdef int negative = draw_negative(model, work, user)
    cdef const float* user_repr
    cdef const float* positive_repr
    cdef const float* negative_repr
    if negative < 0:
        return
    user_repr = representation(&model.users, user, model.no_components, work.user_buffer, &user_bias)
    positive_repr = scored_representation(&model.items, positive, model.no_components, user_repr,
                                          work.positive_buffer, &positive_bias, &positive_score)
    negative_repr = scored_representation(&model.items, negative, model.no_components, user_repr,
                                          work.negative_buffer, &negative_bias, &negative_score)
    if not (isfinite(positive_score) and isfinite(negative_score)):
        work.nonfinite_scores = 1
        return
    pairwise_update(model, work, user, user_repr, user_bias, positive, positive_repr, positive_bias,
                    negative, negative_repr, negative_bias, weight * sigmoid(negative_score - positive_score), weight)


cdef enum:
    # what prefetch_side_row asks for: the parameters a score reads, the optimizer state an update reads
    PREFETCH_PARAMETERS = 1
    PREFETCH_STATE = 2


cdef inline void prefetch_feature(const FeatureSide* side, int feature, int no_components, int parts) noexcept nogil:
    cdef Py_ssize_t offset = <Py_ssize_t>feature * no_components
    if parts & PREFETCH_PARAMETERS:
        prefetch_floats(side.embeddings + offset, no_components)
        FASTRANK_PREFETCH(side.biases + feature * side.bias_stride)
    if parts & PREFETCH_STATE and side.embedding_acc != NULL:
        prefetch_floats(side.embedding_acc + offset, no_components)
        FASTRANK_PREFETCH(side.bias_acc + feature * side.bias_stride)
        if side.embedding_momentum != NULL:
            prefetch_floats(side.embedding_momentum + offset, no_components)
            FASTRANK_PREFETCH(side.bias_momentum + feature * side.bias_stride)


cdef inline void prefetch_side_row(const FeatureSide* side, int row, int no_components, int parts) noexcept nogil:
    """Prefetch ``parts`` (PREFETCH_* flags) of a user's (item's) features: of its own row on the
    identity path, else of the first ``PREFETCHED_FEATURES`` features of its CSR row."""
    cdef int position, stop
    if side.identity:
        prefetch_feature(side, row, no_components, parts)
        return
    stop = min(side.indptr[row + 1], side.indptr[row] + PREFETCHED_FEATURES)
    for position in range(side.indptr[row], stop):
        prefetch_feature(side, side.entries[position].feature, no_components, parts)


cdef inline void prefetch_candidate(const Model* model, Workspace* work, int ahead) noexcept nogil:
    """Prefetch the item that the sampler will draw ``ahead`` draws from now."""
    prefetch_side_row(&model.items, peek_candidate(model, work, ahead), model.no_components,
                      PREFETCH_PARAMETERS)


cdef inline void warp_against(Model* model, Workspace* work, int user, const float* user_repr, float user_bias,
                              int positive, const float* positive_repr, float positive_bias, float positive_score,
                              float weight) noexcept nogil:
    """Draw negatives until one scores within the margin of the positive, then step on it."""
    cdef int sampled, negative
    cdef float negative_bias, negative_score, loss
    cdef const float* negative_repr
    for sampled in range(1, model.max_sampled + 1):
        negative = draw_candidate(model, work)
        if model.prefetch and sampled + PREFETCH_DRAWS <= model.max_sampled:
            # Random item rows miss the cache: keep a few future candidates on their way.
            prefetch_candidate(model, work, PREFETCH_DRAWS)
            if not model.items.identity and sampled + PREFETCH_DRAWS + IDS_AHEAD <= model.max_sampled:
                # their feature ids first, so that reading them to prefetch the rows does not stall
                prefetch_row_stage(&model.items, peek_candidate(model, work, PREFETCH_DRAWS + IDS_AHEAD), 0)
        negative_repr = representation(&model.items, negative, model.no_components,
                                       work.negative_buffer, &negative_bias)
        negative_score = dot(user_repr, negative_repr, model.no_components) + negative_bias
        if negative_score > positive_score - ONE:
            if is_positive(model, work, user, negative):
                continue
            # log of the rank estimated from the number of draws needed to find a violator
            loss = floorf(<float>((model.n_items - 1) // sampled))
            loss = weight * logf(loss if loss > ONE else ONE)
            if loss > MAX_LOSS:
                loss = MAX_LOSS
            pairwise_update(model, work, user, user_repr, user_bias, positive, positive_repr, positive_bias,
                            negative, negative_repr, negative_bias, loss, weight)
            return


cdef inline void warp_step(Model* model, Workspace* work, int user, int positive, float weight) noexcept nogil:
    cdef float user_bias, positive_bias, positive_score
    cdef const float* user_repr
    cdef const float* positive_repr
    if work.candidates == NULL and (model.positive_indptr[user + 1] - model.positive_indptr[user]
                                    >= model.n_items):
        return  # every item is a positive: max_sampled draws would all be in vain
    user_repr = representation(&model.users, user, model.no_components, work.user_buffer, &user_bias)
    positive_repr = scored_representation(&model.items, positive, model.no_components, user_repr,
                                          work.positive_buffer, &positive_bias, &positive_score)
    if not isfinite(positive_score):
        work.nonfinite_scores = 1
        return
    warp_against(model, work, user, user_repr, user_bias, positive, positive_repr, positive_bias,
                 positive_score, weight)


cdef inline int first_position(const int* ids, int count, int value) noexcept nogil:
    """The first position at which ``value`` occurs in ``ids[0:count]`` (``count`` if absent)."""
    cdef int i
    for i in range(count):
        if ids[i] == value:
            return i
    return count


cdef inline const int* user_positives(const Model* model, const Workspace* work, int user, int* count) noexcept nogil:
    """The user's positives, ``count[0]`` of them, sorted: all of them, or in stratified k-OS its
    positives in the block's group (which k-OS samples from, and checks its negatives against)."""
    cdef Py_ssize_t at
    if model.group_positive_starts != NULL:
        at = <Py_ssize_t>user * (model.n_groups + 1) + work.group
        count[0] = model.group_positive_starts[at + 1] - model.group_positive_starts[at]
        return model.group_positive_indices + model.group_positive_starts[at]
    count[0] = model.positive_indptr[user + 1] - model.positive_indptr[user]
    return model.positive_indices + model.positive_indptr[user]


cdef inline void warp_kos_step(Model* model, Workspace* work, int user) noexcept nogil:
    """k-OS WARP: the k-th best of up to n sampled positives is the positive of a WARP step."""
    cdef int count
    cdef const int* positives = user_positives(model, work, user, &count)
    cdef int sampled_count, j, earlier, positive
    cdef unsigned long long chosen
    cdef float user_bias, positive_bias
    cdef const float* user_repr
    cdef const float* positive_repr
    if count == 0 or count >= candidate_count(model, work):
        return  # no positive, or no negative among the candidates (all draws would be in vain)
    sampled_count = model.n if model.n < count else count
    for j in range(sampled_count):
        work.sampled_ids[j] = positives[draw_below(&work.sampler, count)]
    if model.prefetch and not model.items.identity:
        # Feature rows are reached through two dependent loads (CSR ids, then parameter rows): ask
        # for every draw's ids now (they arrive while the user's representation is summed), then
        # keep the draws' first rows KOS_ROWS_AHEAD draws ahead on their way. The same for the
        # first negative candidates, whose rows are then fetched while the positives are scored:
        # warp_against's own look-ahead covers only its fifth draw on, and a step draws 5.6
        # candidates on average (the 50,000-user set with features), so most draws waited.
        for j in range(sampled_count):
            prefetch_row_stage(&model.items, work.sampled_ids[j], 0)
        for j in range(1, min(PREFETCH_DRAWS + IDS_AHEAD, model.max_sampled) + 1):
            prefetch_row_stage(&model.items, peek_candidate(model, work, j), 0)
    user_repr = representation(&model.users, user, model.no_components, work.user_buffer, &user_bias)
    if model.items.identity:
        # all rows at once: the dot products overlap instead of waiting for each other
        fastrank_score_rows(user_repr, model.items.embeddings, model.items.biases, model.items.bias_stride, work.sampled_ids,
                            sampled_count, model.no_components, work.sampled_scores)
    else:
        for j in range(min(KOS_ROWS_AHEAD, sampled_count) if model.prefetch else 0):
            prefetch_side_row(&model.items, work.sampled_ids[j], model.no_components, PREFETCH_PARAMETERS)
        for j in range(1, min(PREFETCH_DRAWS, model.max_sampled) + 1 if model.prefetch else 0):
            prefetch_candidate(model, work, j)
        for j in range(sampled_count):
            if model.prefetch and j + KOS_ROWS_AHEAD < sampled_count:
                prefetch_side_row(&model.items, work.sampled_ids[j + KOS_ROWS_AHEAD], model.no_components,
                                  PREFETCH_PARAMETERS)
            earlier = first_position(work.sampled_ids, j, work.sampled_ids[j])
            if earlier < j:
                # drawn before (users with few positives draw some twice): same row, same score
                work.sampled_scores[j] = work.sampled_scores[earlier]
                continue
            scored_representation(&model.items, work.sampled_ids[j], model.no_components, user_repr,
                                  work.sampled_reprs + <Py_ssize_t>j * model.no_components,
                                  work.sampled_biases + j, work.sampled_scores + j)
    for j in range(sampled_count):
        if not isfinite(work.sampled_scores[j]):
            work.nonfinite_scores = 1
            return
        work.rank_keys[j] = fastrank_rank_key(work.sampled_scores[j], work.sampled_ids[j])
    # descending score, ties by item id: a total order, so the choice does not depend on how it is found
    chosen = fastrank_kth_key(work.rank_keys, sampled_count,
                              (model.k if model.k < sampled_count else sampled_count) - 1)
    positive = fastrank_key_item(chosen)
    # its rows were read while scoring, but not its optimizer state: that is needed only at the
    # update, after the negatives are drawn
    if model.prefetch:
        prefetch_side_row(&model.items, positive, model.no_components, PREFETCH_STATE)
    if model.items.identity:
        positive_repr = representation(&model.items, positive, model.no_components,
                                       work.positive_buffer, &positive_bias)
    else:
        j = first_position(work.sampled_ids, sampled_count, positive)
        positive_repr = work.sampled_reprs + <Py_ssize_t>j * model.no_components
        positive_bias = work.sampled_biases[j]
    warp_against(model, work, user, user_repr, user_bias, positive, positive_repr, positive_bias,
                 fastrank_key_score(chosen), ONE)


cdef inline void prefetch_search_path(const int* values, int count) noexcept nogil:
    """Prefetch what the first probes of a binary search over ``values[0:count]`` read: all of a
    short row, else the cache lines at the eighths of a long one (the first three levels)."""
    cdef int j
    if count <= 64:
        for j in range(0, count, 16):
            FASTRANK_PREFETCH(values + j)
        return
    for j in range(1, 8):
        FASTRANK_PREFETCH(values + <Py_ssize_t>count * j // 8)


cdef inline void prefetch_row_stage(const FeatureSide* side, int row, int bounds) noexcept nogil:
    """Feature path, early stages: the CSR bounds of a user's (item's) feature row when ``bounds``,
    else the row's feature ids and weights (which reads the bounds fetched a stage earlier)."""
    cdef int start
    if side.identity:
        return
    if bounds:
        FASTRANK_PREFETCH(side.indptr + row)
        return
    start = side.indptr[row]
    FASTRANK_PREFETCH(side.entries + start)


cdef inline void prefetch_example_stage(const Model* model, const Workspace* work, int loss, int user, int item,
                                        uint64_t stream, int draws, int bounds) noexcept nogil:
    """One early feature-path stage for an example: its user, its item and its first candidates."""
    cdef int j
    prefetch_row_stage(&model.users, user, bounds)
    if model.items.identity or loss == C_WARP_KOS:
        return
    prefetch_row_stage(&model.items, item, bounds)
    for j in range(1, draws + 1):
        prefetch_row_stage(&model.items, stream_candidate(model, work, stream, j), bounds)


cdef void prefetch_feature_rows_ahead(const Model* model, const Workspace* work, int loss, const int[::1] users,
                                     const int[::1] items, Py_ssize_t position, Py_ssize_t n_visits, uint64_t seed,
                                     int draws) noexcept nogil:
    """The feature-path stages of :func:`prefetch_ahead`: four examples ahead, the CSR bounds of
    the feature rows of the user, the item and its first candidates; three ahead, those rows'
    feature ids and weights; two ahead, the ids of the user's and the item's rows once more."""
    cdef int stage
    cdef Py_ssize_t ahead
    for stage in range(2):
        ahead = position + 4 - stage
        if ahead < n_visits:
            prefetch_example_stage(model, work, loss, users[ahead], items[ahead], example_stream(seed, ahead),
                                   draws, stage == 0)
    # Reading the ids to prefetch the rows one example ahead was the largest stall left in
    # profiles with side features, so they are asked for again: epochs 5% (WARP-kOS) to 15%
    # (logistic) shorter with user and item features; the same for the first candidates, or for
    # k-OS's draws, measured no gain.
    if position + 2 < n_visits:
        prefetch_row_stage(&model.users, users[position + 2], 0)
        if loss != C_WARP_KOS:
            prefetch_row_stage(&model.items, items[position + 2], 0)


cdef inline void prefetch_kos_draws(const Model* model, int user, uint64_t stream, int ids) noexcept nogil:
    """k-OS with features, ahead of a user's example: the positions of the positives it will draw
    in the user's row of positives (``ids`` false), or those positives' CSR feature ids (true)."""
    cdef int start = model.positive_indptr[user], count = model.positive_indptr[user + 1] - start
    cdef int j, offset
    for j in range(1, min(model.n, count) + 1):
        offset = stream_draw(stream, count, j)
        if ids:
            prefetch_row_stage(&model.items, model.positive_indices[start + offset], 0)
        else:
            FASTRANK_PREFETCH(model.positive_indices + start + offset)


cdef inline void prefetch_next_example(const Model* model, const Workspace* work, int loss, int user, int item,
                                       uint64_t stream, int draws) noexcept nogil:
    """The last stage, one example ahead: the rows of its user, its item and its first ``draws``
    candidates (``stream`` is the example's draw stream)."""
    cdef int j
    prefetch_side_row(&model.users, user, model.no_components, PREFETCH_PARAMETERS | PREFETCH_STATE)
    if loss == C_WARP_KOS:
        # k-OS samples among the user's positives, which are mostly popular, cache-resident items:
        # prefetching their rows measured slower on the identity path (the draws and loads cost
        # more than the misses saved); with features, their CSR feature ids come first
        if not model.items.identity:
            prefetch_kos_draws(model, user, stream, 1)
        return
    prefetch_side_row(&model.items, item, model.no_components, PREFETCH_PARAMETERS | PREFETCH_STATE)
    for j in range(1, draws + 1):
        prefetch_side_row(&model.items, stream_candidate(model, work, stream, j), model.no_components,
                          PREFETCH_PARAMETERS)


cdef inline void prefetch_ahead(const Model* model, const Workspace* work, int loss, const int[::1] users,
                                const int[::1] items, Py_ssize_t position, Py_ssize_t n_visits,
                                uint64_t seed) noexcept nogil:
    """Start loading what the next examples will touch while this one is processed.

    Memory is fetched in stages, each one reading only what an earlier stage brought in:
    three examples ahead, the CSR row bounds of the user's positives; two ahead, that row of
    positive items; one ahead, the parameter rows of the user, the item and the first sampled
    candidates (whose ids are known because each example's draws are a function of its
    position). With side features, earlier stages fetch the feature rows' ids first
    (:func:`prefetch_feature_rows_ahead`).
    """
    cdef int user, start, count, draws
    draws = 0
    if loss == C_BPR:
        draws = 1
    elif loss == C_WARP:
        draws = min(PREFETCH_DRAWS, model.max_sampled)
    if not (model.users.identity and model.items.identity):
        prefetch_feature_rows_ahead(model, work, loss, users, items, position, n_visits, seed, draws)
    if position + 3 < n_visits:
        FASTRANK_PREFETCH(model.positive_indptr + users[position + 3])
    if position + 2 < n_visits:
        user = users[position + 2]
        start = model.positive_indptr[user]
        count = model.positive_indptr[user + 1] - start
        prefetch_search_path(model.positive_indices + start, count)
        if loss == C_WARP_KOS and not model.items.identity:
            prefetch_kos_draws(model, user, example_stream(seed, position + 2), 0)
    if position + 1 < n_visits:
        prefetch_next_example(model, work, loss, users[position + 1], items[position + 1],
                              example_stream(seed, position + 1), draws)


cdef inline float* first_cache_line(void* allocation) noexcept nogil:
    """The first cache-line boundary at or after ``allocation`` (which has a spare line for it)."""
    return <float*>((<uintptr_t>allocation + CACHE_LINE_BYTES - 1) & ~(<uintptr_t>CACHE_LINE_BYTES - 1))


cdef struct PaddedBiases:
    void* allocation                # NULL: the side's biases are its own arrays
    float* biases                   # the side's own arrays, restored by unpad_biases
    float* bias_acc
    float* bias_momentum
    Py_ssize_t n_rows


cdef int pad_biases(FeatureSide* side, Py_ssize_t n_rows, PaddedBiases* saved) noexcept nogil:
    """Point ``side`` at a copy of its biases and their optimizer state with one cache line per
    feature (bias, accumulator, momentum at its start); :func:`unpad_biases` copies them back.
    Returns 1 when the copy cannot be allocated (``side`` is then unchanged)."""
    cdef Py_ssize_t row
    cdef float* line
    saved.allocation = malloc(n_rows * CACHE_LINE_BYTES + CACHE_LINE_BYTES)
    if saved.allocation == NULL:
        return 1
    saved.biases = side.biases
    saved.bias_acc = side.bias_acc
    saved.bias_momentum = side.bias_momentum
    saved.n_rows = n_rows
    line = first_cache_line(saved.allocation)
    for row in range(n_rows):
        line[row * FLOATS_PER_LINE] = side.biases[row]
        if side.bias_acc != NULL:
            line[row * FLOATS_PER_LINE + 1] = side.bias_acc[row]
        if side.bias_momentum != NULL:
            line[row * FLOATS_PER_LINE + 2] = side.bias_momentum[row]
    side.biases = line
    side.bias_acc = line + 1 if saved.bias_acc != NULL else NULL
    side.bias_momentum = line + 2 if saved.bias_momentum != NULL else NULL
    side.bias_stride = FLOATS_PER_LINE
    return 0


cdef void unpad_biases(FeatureSide* side, PaddedBiases* saved) noexcept nogil:
    """Undo :func:`pad_biases`: copy the trained values back and free the copy (nothing to do
    when ``saved.allocation`` is NULL)."""
    cdef Py_ssize_t row
    if saved.allocation == NULL:
        return
    for row in range(saved.n_rows):
        saved.biases[row] = side.biases[row * FLOATS_PER_LINE]
        if saved.bias_acc != NULL:
            saved.bias_acc[row] = side.bias_acc[row * FLOATS_PER_LINE]
        if saved.bias_momentum != NULL:
            saved.bias_momentum[row] = side.bias_momentum[row * FLOATS_PER_LINE]
    free(saved.allocation)
    saved.allocation = NULL
    side.biases = saved.biases
    side.bias_acc = saved.bias_acc
    side.bias_momentum = saved.bias_momentum
    side.bias_stride = 1


cdef enum:
    PAGE_FLOATS = 1024   # floats in a 4 KiB page


cdef struct PrivateBiases:
    # Per-epoch copies of one side's biases and their optimizer state (see run_epoch): copy c
    # holds ``n_arrays`` arrays (biases, accumulators, momenta: those the schedule has) of
    # ``n_rows`` floats, each array starting on a page of its own
    void* allocation                # NULL: no copies; the side's own arrays are trained
    float* pages                    # the first page boundary in the allocation
    Py_ssize_t n_rows
    Py_ssize_t array_floats         # n_rows rounded up to whole pages
    int n_arrays
    int n_copies


cdef int allocate_private_biases(PrivateBiases* private, const FeatureSide* side, Py_ssize_t n_rows,
                                 int n_copies) noexcept nogil:
    """Room for ``n_copies`` copies of ``side``'s bias arrays; returns 1 when it cannot be had."""
    private.n_rows = n_rows
    private.n_copies = n_copies
    private.n_arrays = 1 + (side.bias_acc != NULL) + (side.bias_momentum != NULL)
    private.array_floats = (n_rows + PAGE_FLOATS - 1) // PAGE_FLOATS * PAGE_FLOATS
    private.allocation = malloc((n_copies * private.n_arrays * private.array_floats + PAGE_FLOATS) * sizeof(float))
    if private.allocation == NULL:
        return 1
    private.pages = <float*>((<uintptr_t>private.allocation + PAGE_FLOATS * sizeof(float) - 1)
                             & ~(<uintptr_t>(PAGE_FLOATS * sizeof(float) - 1)))
    return 0


cdef inline float* private_array(const PrivateBiases* private, int copy, int array) noexcept nogil:
    return private.pages + (copy * private.n_arrays + array) * private.array_floats


cdef inline float* side_bias_array(const FeatureSide* side, int array) noexcept nogil:
    """A side's biases (0), their accumulators (1) or momenta (2)."""
    if array == 0:
        return side.biases
    return side.bias_acc if array == 1 else side.bias_momentum


cdef void fill_private_copy(const PrivateBiases* private, const FeatureSide* shared, int copy) noexcept nogil:
    cdef int array
    for array in range(private.n_arrays):
        memcpy(private_array(private, copy, array), side_bias_array(shared, array), private.n_rows * sizeof(float))


cdef void point_at_private_copy(FeatureSide* side, const PrivateBiases* private, int copy) noexcept nogil:
    side.biases = private_array(private, copy, 0)
    side.bias_acc = private_array(private, copy, 1) if private.n_arrays > 1 else NULL
    side.bias_momentum = private_array(private, copy, 2) if private.n_arrays > 2 else NULL


cdef void write_back_private(const PrivateBiases* private, const FeatureSide* shared, Py_ssize_t first,
                             Py_ssize_t last) noexcept nogil:
    """Rows ``first:last`` of the shared arrays take the value a copy changed. An epoch trains
    each row through one copy (a user's on its thread's, an item's on its group's), so at most one
    copy differs from the shared value, which is still the epoch's first; bits are compared, so
    that a NaN or a -0.0 goes back too."""
    cdef int array, copy
    cdef Py_ssize_t row
    cdef uint32_t* target
    cdef uint32_t original, value
    for array in range(private.n_arrays):
        target = <uint32_t*>side_bias_array(shared, array)
        for row in range(first, last):
            original = target[row]
            for copy in range(private.n_copies):
                value = (<const uint32_t*>private_array(private, copy, array))[row]
                if value != original:
                    target[row] = value


cdef void check_side_parameters(tuple parameters, int no_components, int schedule, str side) except *:
    """Raise unless one side's (embeddings, biases, accumulators x2, momenta x2) fit together
    and ``schedule``: the loops index them by ``no_components`` and the row count alone."""
    cdef int needed = 2 if schedule == SCHEDULE_SGD else (4 if schedule == SCHEDULE_ADAGRAD else 6)
    embeddings = parameters[0]
    if len(parameters) != 6 or embeddings is None or embeddings.ndim != 2 or embeddings.shape[1] != no_components:
        raise ValueError(f"the {side} embeddings do not have no_components={no_components} columns")
    for position in range(1, 6):
        array = parameters[position]
        if (array is None) != (position >= needed):
            raise ValueError(f"the {side} optimizer state does not match the learning schedule")
        if array is not None and array.shape[0] != embeddings.shape[0]:
            raise ValueError(f"the {side} parameter arrays have different numbers of rows")
        if array is not None and position % 2 == 0 and array.shape[1] != no_components:
            raise ValueError(f"the {side} optimizer state does not have no_components={no_components} columns")


cdef void fill_side(FeatureSide* side, object features, tuple parameters, float alpha):
    """Point ``side`` at the arrays of one side (users or items); requires the GIL."""
    cdef float[:, ::1] embeddings = parameters[0]
    cdef float[::1] biases = parameters[1]
    cdef float[:, ::1] embedding_acc
    cdef float[::1] bias_acc
    cdef float[:, ::1] embedding_momentum
    cdef float[::1] bias_momentum
    side.embeddings = &embeddings[0, 0]
    side.biases = &biases[0]
    side.embedding_acc = NULL
    side.bias_acc = NULL
    side.embedding_momentum = NULL
    side.bias_momentum = NULL
    if parameters[2] is not None:
        embedding_acc = parameters[2]
        bias_acc = parameters[3]
        side.embedding_acc = &embedding_acc[0, 0]
        side.bias_acc = &bias_acc[0]
    if parameters[4] is not None:
        embedding_momentum = parameters[4]
        bias_momentum = parameters[5]
        side.embedding_momentum = &embedding_momentum[0, 0]
        side.bias_momentum = &bias_momentum[0]
    side.bias_stride = 1
    side.alpha = alpha
    point_feature_rows(side, features)


cdef int most_positives(const int[::1] indptr) noexcept:
    """The largest row length of a CSR row-pointer array."""
    cdef Py_ssize_t row
    cdef int most = 0
    for row in range(indptr.shape[0] - 1):
        most = max(most, indptr[row + 1] - indptr[row])
    return most


cdef void run_block(Model* model, Workspace* work, int loss, const int[::1] example_users,
                    const int[::1] example_items, const float* labels, const float* weights,
                    Py_ssize_t start, Py_ssize_t stop, Py_ssize_t n_visits, uint64_t seed) noexcept nogil:
    """Train on the examples at positions ``start`` to ``stop`` (one thread's block)."""
    cdef Py_ssize_t position
    for position in range(start, stop):
        if model.prefetch:
            prefetch_ahead(model, work, loss, example_users, example_items, position, n_visits, seed)
        elif model.prefetch_next_rows and position + 1 < n_visits:
            # only the last stage, and only BPR's first candidate (see run_epoch)
            prefetch_next_example(model, work, loss, example_users[position + 1], example_items[position + 1],
                                  example_stream(seed, position + 1), 1 if loss == C_BPR else 0)
        if work.sampler.script == NULL:
            sampler_start_example(&work.sampler, seed, position)
        if loss == C_WARP:
            warp_step(model, work, example_users[position], example_items[position],
                      weights[position] if weights != NULL else ONE)
        elif loss == C_BPR:
            bpr_step(model, work, example_users[position], example_items[position],
                     weights[position] if weights != NULL else ONE)
        elif loss == C_LOGISTIC:
            logistic_step(model, work, example_users[position], example_items[position],
                          labels[position], weights[position] if weights != NULL else ONE)
        else:
            warp_kos_step(model, work, example_users[position])


cdef void train_claimed(Model* model, Workspace* work, int loss, const int[::1] example_users,
                        const int[::1] example_items, const float* labels, const float* weights,
                        int64_t* next_position, Py_ssize_t stop, Py_ssize_t n_visits, uint64_t seed) noexcept nogil:
    """Train on a block's examples ``CLAIM_EXAMPLES`` at a time, claiming each run from
    ``next_position`` (shared with the other threads), until the block up to ``stop`` is
    claimed. A thread that claims a block's runs one after another visits the positions in
    order, as :func:`run_block` would, prefetching included."""
    cdef Py_ssize_t start
    while True:
        start = <Py_ssize_t>fastrank_claim(next_position, CLAIM_EXAMPLES)
        if start >= stop:
            return
        run_block(model, work, loss, example_users, example_items, labels, weights, start,
                  min(start + <Py_ssize_t>CLAIM_EXAMPLES, stop), n_visits, seed)


cdef void check_candidates(const int[::1] candidate_items, const int64_t[:, ::1] block_candidates,
                           int n_blocks, int n_items) except *:
    """Raise ValueError unless each block has a non-empty range of candidates, all item ids."""
    cdef Py_ssize_t i, n = candidate_items.shape[0]
    cdef int block
    if block_candidates.shape[0] != n_blocks or block_candidates.shape[1] != 2:
        raise ValueError(f"block_candidates must have shape ({n_blocks}, 2)")
    for block in range(n_blocks):
        if not 0 <= block_candidates[block, 0] < block_candidates[block, 1] <= n:
            raise ValueError(f"block {block} has no valid range of candidates")
    for i in range(n):
        if not 0 <= candidate_items[i] < n_items:
            raise ValueError(f"candidate_items must be item ids below {n_items}")


cdef int check_grouped_positives(const int[::1] block_groups, const int[::1] starts, const int[::1] indices,
                                 int n_blocks, Py_ssize_t n_users, int n_items) except -1:
    """Validate stratified k-OS's arrays (see :func:`run_epoch`); returns the number of groups."""
    cdef Py_ssize_t i, n_groups
    cdef int block
    if block_groups is None or starts is None or indices is None:
        raise ValueError("stratified WARP-kOS needs block_groups, group_positive_starts and group_positive_indices")
    if block_groups.shape[0] != n_blocks:
        raise ValueError(f"block_groups must have {n_blocks} entries")
    if n_users < 1 or starts.shape[0] % n_users or starts.shape[0] // n_users < 2:
        raise ValueError("group_positive_starts must hold n_groups + 1 offsets per user")
    n_groups = starts.shape[0] // n_users - 1
    for block in range(n_blocks):
        if not 0 <= block_groups[block] < n_groups:
            raise ValueError(f"block_groups must be in [0, {n_groups})")
    if starts[0] != 0 or starts[starts.shape[0] - 1] != indices.shape[0]:
        raise ValueError("group_positive_starts must rise from 0 to the number of grouped positives")
    for i in range(1, starts.shape[0]):
        if starts[i] < starts[i - 1] or (i % (n_groups + 1) == 0 and starts[i] != starts[i - 1]):
            raise ValueError("group_positive_starts must rise, each user's last group ending where the next user's starts")
    # (counted, not raised at the first: the loop then vectorises; it runs every epoch)
    cdef int outside = 0
    for i in range(indices.shape[0]):
        outside += (indices[i] < 0) | (indices[i] >= n_items)
    if outside:
        raise ValueError(f"group_positive_indices must be item ids below {n_items}")
    # is_positive searches a user's positives in the block's group
    if indices.shape[0] > 0 and not rows_are_canonical(&starts[0], &indices[0], starts.shape[0] - 1):
        raise ValueError("group_positive_indices must be sorted, without repeats, within each user's group")
    return <int>n_groups


cdef bounds_as_ranges(const int64_t[::1] bounds):
    """Block bounds (n_blocks + 1,) as the (n_blocks, 2) ranges :func:`run_epoch` visits."""
    cdef Py_ssize_t block
    ranges_array = np.empty((bounds.shape[0] - 1, 2), dtype=np.int64)
    cdef int64_t[:, ::1] ranges = ranges_array
    for block in range(bounds.shape[0] - 1):
        ranges[block, 0] = bounds[block]
        ranges[block, 1] = bounds[block + 1]
    return ranges_array


cdef inline int stratum_group(int block, int n_strata) noexcept nogil:
    """The item group of a block in :func:`stratified_examples`' numbering."""
    return ((block // n_strata) % n_strata + block % n_strata) % n_strata


cdef inline bint stratum_block_ready(int* block_states, int block, int n_strata) noexcept nogil:
    """Whether the blocks a stratum block follows are trained: the previous round's block of its
    user run (``block - n_strata``) and that round's block of its item group (which the next run
    trained, as groups turn by one run per round). A block of the first round follows none."""
    cdef int run = block % n_strata
    cdef int previous_round = block - run - n_strata
    if previous_round < 0:
        return True
    return (fastrank_block_state(&block_states[block - n_strata]) == 2
            and fastrank_block_state(&block_states[previous_round + (run + 1) % n_strata]) == 2)


cdef inline void draw_from_block_candidates(Workspace* work, const int* candidate_pointer,
                                            const int64_t[:, ::1] block_candidates, const int[::1] block_groups,
                                            int n_groups, int block) noexcept nogil:
    """Point the sampler at ``block``'s candidates (and stratified k-OS at its group); without
    candidate blocks (``candidate_pointer`` NULL) it keeps drawing from all items."""
    if candidate_pointer == NULL:
        return
    work.candidates = candidate_pointer + block_candidates[block, 0]
    work.n_candidates = <int>(block_candidates[block, 1] - block_candidates[block, 0])
    if n_groups > 0:
        work.group = block_groups[block]


cdef void train_strata(Model* model, Workspace* work, int loss, const int[::1] example_users,
                       const int[::1] example_items, const float* labels, const float* weights,
                       const int64_t[:, ::1] block_ranges, const int* candidate_pointer,
                       const int64_t[:, ::1] block_candidates, const int[::1] block_groups, int n_groups,
                       int* block_states, int n_blocks, int n_strata, const PrivateBiases* private_users,
                       const PrivateBiases* private_items, Py_ssize_t n_visits, uint64_t seed) noexcept nogil:
    """One thread's share of a stratified epoch: take any block whose predecessors are trained
    (:func:`stratum_block_ready`), train it, mark it trained; until every block is.

    A block's predecessors are the last blocks to write its users' rows and its items' rows, so
    no two threads write one row at once, and each row sees its updates in the order of the
    blocks' numbers: the epoch trains what one thread running the blocks in that order trains,
    whatever the timing. There is no barrier: a thread done early takes the next ready block,
    which with more strata than threads there usually is (a barrier after each round made a
    thread wait for the slowest block of the round, 2% to 40% of an epoch on MovieLens 100K at
    2 threads, depending on how evenly the machine ran the two cores)."""
    cdef int first_open = 0, block, chosen, round_end, waits = 0
    while True:
        # blocks before first_open are trained; a ready block is never more than n_strata - 1
        # rounds past the round of the first open one (its predecessors reach back to that round)
        while first_open < n_blocks and fastrank_block_state(&block_states[first_open]) == 2:
            first_open += 1
        if first_open >= n_blocks:
            return
        chosen = -1
        round_end = min(n_blocks, (first_open // n_strata + n_strata) * n_strata)
        for block in range(first_open, round_end):
            if (fastrank_block_state(&block_states[block]) == 0
                    and stratum_block_ready(block_states, block, n_strata)
                    and fastrank_take_block(&block_states[block])):
                chosen = block
                break
        if chosen < 0:
            # every open block waits for one that another thread is training
            fastrank_wait_a_little(waits, 64)
            waits += 1
            continue
        waits = 0
        draw_from_block_candidates(work, candidate_pointer, block_candidates, block_groups, n_groups, chosen)
        if private_items.allocation != NULL:
            point_at_private_copy(&work.model.items, private_items, stratum_group(chosen, n_strata))
            if private_users.allocation != NULL:
                point_at_private_copy(&work.model.users, private_users, chosen % n_strata)
        run_block(&work.model if private_items.allocation != NULL else model, work, loss, example_users,
                  example_items, labels, weights, block_ranges[chosen, 0], block_ranges[chosen, 1], n_visits, seed)
        fastrank_block_trained(&block_states[chosen])


cdef bint stratum_blocks(const int64_t[:, ::1] block_candidates, int n_blocks, int n_strata) noexcept:
    """Whether candidate blocks are laid out as :func:`stratified_examples` lays them out for
    ``n_strata`` (>= 2) user runs and item groups: one block per run and round, and every block
    of a group drawing from the same candidates (the first round's block of that group's). Only
    then does each item have one private bias copy (its group's) in :func:`run_epoch`, and only
    then may :func:`train_strata` schedule the blocks."""
    cdef int block, group
    if block_candidates is None or n_strata < 2 or n_blocks % n_strata:
        return False
    for block in range(n_blocks):
        group = stratum_group(block, n_strata)
        if (block_candidates[block, 0] != block_candidates[group, 0]
                or block_candidates[block, 1] != block_candidates[group, 1]):
            return False
    return True


def run_epoch(int loss,
              const int[::1] example_users,
              const int[::1] example_items,
              const float[::1] example_labels,
              const float[::1] example_weights,
              const int[::1] positive_indptr,
              const int[::1] positive_indices,
              object user_features, tuple user_parameters, float user_alpha,
              object item_features, tuple item_parameters, float item_alpha,
              int n_items, int no_components, int schedule,
              float learning_rate, float rho, float epsilon,
              int max_sampled, int k, int n,
              int debias, float debias_weight,
              unsigned long long seed, int num_threads,
              const int[::1] script=None, const int64_t[::1] block_bounds=None,
              const int64_t[:, ::1] block_ranges=None,
              const int[::1] candidate_items=None, const int64_t[:, ::1] block_candidates=None, int rounds=1,
              const int[::1] block_groups=None, const int[::1] group_positive_starts=None,
              const int[::1] group_positive_indices=None):
    """Run one epoch of Hogwild SGD, updating the parameter arrays in place.

    Parameters
    ----------
    loss : int
        One of ``LOGISTIC``, ``BPR``, ``WARP``, ``WARP_KOS``.
    example_users, example_items : int32 array of shape (n_examples,)
        The user and item of each training example, in the (shuffled) order to visit them;
        WARP-KOS uses only the user. Visiting memory in order lets the next example's parameter
        rows be prefetched.
    example_labels, example_weights : float32 array of shape (n_examples,) or None
        Interaction value of each example (logistic: > 0 positive; required by logistic only)
        and its sample weight (None: every weight is 1).
    positive_indptr, positive_indices : int32 arrays
        CSR (users x items, sorted columns) of the positive interactions.
    user_features, item_features : None or tuple of (indptr, entries)
        Feature matrices as :func:`fastrank._validation.packed_feature_rows` makes them; None is
        the identity fast path.
    user_parameters, item_parameters : tuple of 6 arrays
        (embeddings float32 (n_features, no_components), biases float32 (n_features,),
        embedding and bias accumulators (None for sgd), embedding and bias momenta (None unless
        adadelta)).
    schedule : int
        A ``SCHEDULES`` code: adagrad, adadelta or plain SGD.
    debias, debias_weight : int, float
        Popularity-debiasing regulariser (a ``DEBIAS`` code; BPR and WARP only) and its weight.
    script : int32 array, optional
        Test hook: draws returned, in order, instead of random ones (single thread only).
    block_bounds : int64 array of shape (n_blocks + 1,), optional
        Blocks of examples (as :func:`shuffled_examples` returns them); block ``b`` goes to
        thread ``b % num_threads``, which trains it ``CLAIM_EXAMPLES`` examples at a time, and
        a thread done with its own blocks takes the unclaimed rest of the others'. None:
        ``num_threads`` equal, contiguous blocks.
    block_ranges : int64 array of shape (n_blocks, 2), optional
        Instead of ``block_bounds``: block ``b`` is at positions
        ``block_ranges[b, 0]:block_ranges[b, 1]`` (as :func:`stratified_examples` lays them out,
        not in memory order).
    candidate_items : int32 array of shape (n_candidates,), optional
        Stratified training (:func:`stratified_examples`): item ids that negatives are drawn
        from, block by block; None: every block draws from all ``n_items`` items.
    block_candidates : int64 array of shape (n_blocks, 2), optional
        With ``candidate_items``: block ``b`` draws its negatives uniformly from
        ``candidate_items[block_candidates[b, 0]:block_candidates[b, 1]]`` (a non-empty range).
        Not for WARP-kOS or pos2neg2 debiasing, which draw among the user's positives too.
        Blocks numbered as :func:`stratified_examples` numbers them for ``n_blocks // rounds``
        strata (each group's blocks drawing from one range) are stratified: each thread takes
        any block whose predecessors (the previous round's blocks of its user run and of its
        item group) are trained (:func:`train_strata`), and the identity side's biases are
        trained in per-epoch private copies, one per item group and one per user run. A user's
        examples must then all be in one run's blocks, and a block's items among its
        candidates, as the layout makes them (else two threads would write one row at once, and
        updates to a row through two copies would keep only one).
    rounds : int, default 1
        The blocks form this many rounds of ``n_blocks // rounds`` consecutive blocks (it must
        divide n_blocks). Stratified blocks (see ``block_candidates``) follow their
        predecessors; any other layout runs round by round, every thread waiting at the end of
        each round for the others.
    block_groups : int32 array of shape (n_blocks,), optional
        WARP-kOS with candidate blocks: the group of each block's candidates, in
        ``[0, n_groups)``.
    group_positive_starts, group_positive_indices : int32 arrays, optional
        WARP-kOS with candidate blocks: each user's positives, group by group, as
        :func:`stratified_examples` groups them; a block samples its k-OS positives among its
        user's positives in its group.

    Returns
    -------
    bool
        Whether some example's score was not finite (float32 overflow: huge parameters or
        feature weights); those examples were skipped, since no step can be taken from them.
    """
    cdef Model model
    cdef Py_ssize_t n_visits = example_users.shape[0]
    cdef int thread, block, n_blocks, round_, per_round, n_groups = 0
    cdef const int* candidate_pointer = NULL
    cdef int[1] allocation_failed
    cdef int[1] nonfinite_seen
    cdef Workspace* work
    cdef PaddedBiases padded_item_biases
    cdef PrivateBiases private_users, private_items
    cdef int copy_index, team, turn, claimed_block
    cdef int64_t* claims = NULL
    cdef int* block_states = NULL
    cdef bint strata
    cdef Py_ssize_t n_user_rows, n_item_rows
    cdef int scored_capacity = 1, kept_representations = 0
    cdef const int* script_pointer = NULL
    cdef Py_ssize_t script_length = 0
    cdef const float* labels = NULL
    cdef const float* weights = NULL
    if example_items.shape[0] != n_visits or (example_labels is not None and example_labels.shape[0] != n_visits) or (
            example_weights is not None and example_weights.shape[0] != n_visits):
        raise ValueError("the example arrays must have the same length")
    if loss == C_LOGISTIC and example_labels is None:
        raise ValueError("the logistic loss needs example labels")
    check_side_parameters(user_parameters, no_components, schedule, "user")
    check_side_parameters(item_parameters, no_components, schedule, "item")
    n_user_rows = len(user_parameters[1])
    n_item_rows = len(item_parameters[1])
    if k < 1 or n < 1 or max_sampled < 1:
        raise ValueError(f"k, n and max_sampled must be >= 1, got {k}, {n}, {max_sampled}")
    # identity sides index their rows by id: the ids must fit (a model replaced by another
    # thread between the estimator's checks and this call once sent 200,000 items to a 1-row model)
    if (item_features is None and n_items > n_item_rows) or (
            user_features is None and positive_indptr.shape[0] - 1 > n_user_rows):
        raise ValueError(f"the parameters have {n_user_rows} user and {n_item_rows} item rows, too few for "
                         f"{positive_indptr.shape[0] - 1} users and {n_items} items")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    if block_ranges is not None:
        if block_bounds is not None:
            raise ValueError("pass block_bounds or block_ranges, not both")
        n_blocks = block_ranges.shape[0]
        if n_blocks < 1 or block_ranges.shape[1] != 2 or check_ranges(block_ranges, n_visits):
            raise ValueError("block_ranges must be a (n_blocks, 2) array of ranges within the examples")
    else:
        if block_bounds is None:
            block_bounds = equal_block_bounds(n_visits, num_threads)
        n_blocks = block_bounds.shape[0] - 1
        if n_blocks < 1 or check_bounds(&block_bounds[0], n_blocks, n_visits):
            raise ValueError("block_bounds must rise from 0 to the number of examples")
        block_ranges = bounds_as_ranges(block_bounds)
    if rounds < 1 or n_blocks % rounds:
        raise ValueError(f"rounds must be >= 1 and divide the {n_blocks} blocks, got {rounds}")
    per_round = n_blocks // rounds
    if (candidate_items is None) != (block_candidates is None):
        raise ValueError("candidate_items and block_candidates go together")
    if candidate_items is not None:
        check_candidates(candidate_items, block_candidates, n_blocks, n_items)
        if debias == DEBIAS_POS2NEG2:
            raise ValueError("candidate blocks cannot be used with pos2neg2 debiasing")
        if loss == C_WARP_KOS:
            n_groups = check_grouped_positives(block_groups, group_positive_starts, group_positive_indices,
                                               n_blocks, positive_indptr.shape[0] - 1, n_items)
        if candidate_items.shape[0] > 0:
            candidate_pointer = &candidate_items[0]
    if n_visits > 0:
        if example_labels is not None:
            labels = &example_labels[0]
        if example_weights is not None:
            weights = &example_weights[0]
    if script is not None and script.shape[0] > 0:
        script_pointer = &script[0]
        script_length = script.shape[0]

    if loss == C_WARP_KOS:
        # no user draws more than n positives, nor more than it has
        scored_capacity = max(1, min(n, most_positives(positive_indptr)))
        if item_features is not None:
            kept_representations = scored_capacity
    fill_side(&model.users, user_features, user_parameters, user_alpha)
    fill_side(&model.items, item_features, item_parameters, item_alpha)
    model.no_components = no_components
    model.schedule = schedule
    model.learning_rate = learning_rate
    model.rho = rho
    model.epsilon = epsilon
    model.n_items = n_items
    model.max_sampled = max_sampled
    model.debias = debias
    # BPR's step is short (two scores and one update) and its negative a random row: prefetching
    # paid from a quarter of the threshold. On MovieLens 100K (1.4 MB with adagrad, 0.7 MB with
    # SGD; 512 KiB of L2 per core on the VM of 2026-12-07) BPR epochs were 2-13% shorter with it
    # in 9 of 9 alternating comparisons (adagrad and SGD), 4-7% shorter at 2 threads (2 of 2),
    # where WARP was -6% to +8%, WARP-kOS and logistic 2-7% slower. The gain is in the early stages
    # (the user's positives, which each negative's check searches): the last stage alone gained
    # nothing. It costs 35% more instructions there (56.7M -> 76.4M per epoch) and still wins.
    model.prefetch = side_bytes(user_parameters) + side_bytes(item_parameters) > (
        prefetch_above_bytes // 4 if loss == C_BPR else prefetch_above_bytes)
    # A small model stays in one core's caches, but with several threads the rows an example
    # needs were often just written by another core. Prefetching the next example's rows paid
    # for BPR and logistic on MovieLens 100K at 2 threads (epochs 10-13% shorter); for WARP it
    # cost 4-5% (its longer steps leave time for the rows to be taken back), for WARP-kOS it was
    # even (it scores cached positives). (Not in strata: see the private biases below.)
    model.prefetch_next_rows = (not model.prefetch and num_threads > 1
                                and (loss == C_BPR or loss == C_LOGISTIC))
    model.debias_weight = debias_weight
    model.k = k
    model.n = n
    model.positive_indptr = &positive_indptr[0]
    model.positive_indices = &positive_indices[0] if positive_indices.shape[0] > 0 else NULL
    model.group_positive_starts = NULL
    model.group_positive_indices = NULL
    model.n_groups = n_groups
    if n_groups > 0:
        model.group_positive_starts = &group_positive_starts[0]
        model.group_positive_indices = (&group_positive_indices[0] if group_positive_indices.shape[0] > 0
                                        else NULL)
    allocation_failed[0] = 0
    nonfinite_seen[0] = 0
    if n_visits == 0:
        return False
    # Item biases sit 16 to a cache line: with several threads on a model small enough to stay in
    # cache, every bias update takes the line from the other cores, so each item's bias and its
    # optimizer state get a line of their own for the epoch. Not in strata, which train private
    # copies of the biases (below): there the padding only spread the biases over 16 times the
    # cache (logistic epochs 1-2% longer on MovieLens 100K at 2 threads, when groups were whole
    # lines of biases).
    padded_item_biases.allocation = NULL
    if not model.prefetch and num_threads > 1 and model.items.identity and candidate_items is None:
        if pad_biases(&model.items, len(item_parameters[1]), &padded_item_biases):
            raise MemoryError("fastrank could not allocate the per-epoch copy of the item biases")
    # In strata the blocks trained at once write disjoint rows (embedding rows fill whole cache
    # lines per chunk, stratum_chunk_items), but their biases share lines and pages: with two threads on
    # MovieLens 100K each thread's logistic steps took 14% longer than alone (6% with the next
    # example prefetched), against 4% with the biases in separate arrays (and none with separate
    # models: it is not the machine, but lines the cores hand back and forth). So a stratified epoch
    # trains private copies of the biases and their optimizer state, on pages of their own: one
    # per item group, and one per user run for identity users (a user feature can be shared by
    # users of several runs, whose updates must meet in one array: Hogwild).
    private_users.allocation = NULL
    private_items.allocation = NULL
    strata = stratum_blocks(block_candidates, n_blocks, per_round)
    if strata and model.items.identity:
        if allocate_private_biases(&private_items, &model.items, n_item_rows, per_round) or (
                model.users.identity
                and allocate_private_biases(&private_users, &model.users, n_user_rows, per_round)):
            free(private_items.allocation)
            raise MemoryError("fastrank could not allocate the per-epoch copies of the biases")
        # with the biases apart, an example's rows are the thread's own: prefetching them took
        # logistic epochs 3% longer on MovieLens 100K at 2 threads, BPR epochs 2%
        model.prefetch_next_rows = False
    # Blocks without strata are claimed a run at a time, so that a thread done with its own
    # blocks takes the rest of the others' (claims[block * CLAIM_STRIDE] is the block's next
    # unclaimed position). Equal blocks did not take equal times: on the 50,000-user power-law
    # set with 2 threads one thread's share of an epoch ran up to 19% (BPR) and 9% (WARP) longer
    # than the other's, which then waited, and a shared machine's pauses of one core made it
    # worse. The sampler draws from each example's position, so the draws do not depend on which
    # thread trains an example; while two threads finish one block, its users' rows are shared
    # (Hogwild), as item rows always are. Stratified blocks are never shared: a block's user run
    # and item group must be one thread's while it trains them (train_strata).
    if candidate_pointer == NULL and rounds == 1 and num_threads > 1:
        claims = <int64_t*>malloc(n_blocks * CLAIM_STRIDE * sizeof(int64_t))
        if claims == NULL:
            unpad_biases(&model.items, &padded_item_biases)
            raise MemoryError("fastrank could not allocate the blocks' claim counters")
        for block in range(n_blocks):
            claims[block * CLAIM_STRIDE] = block_ranges[block, 0]
    if strata:
        block_states = <int*>calloc(n_blocks, sizeof(int))
        if block_states == NULL:
            free(private_items.allocation)
            free(private_users.allocation)
            raise MemoryError("fastrank could not allocate the blocks' states")
    with nogil, parallel(num_threads=num_threads):
        thread = threadid()
        work = <Workspace*>malloc(sizeof(Workspace))
        if work != NULL:
            # one cache line spare, so that the buffers can start on one (malloc gives 16 bytes):
            # 8-float loads of a buffer then never straddle two lines
            work.buffers_allocation = malloc((10 + kept_representations) * no_components * sizeof(float)
                                             + CACHE_LINE_BYTES)
            work.user_buffer = first_cache_line(work.buffers_allocation)
            work.rank_keys = <unsigned long long*>malloc(
                scored_capacity * (sizeof(unsigned long long) + sizeof(int) + 2 * sizeof(float)))
            if work.buffers_allocation == NULL or work.rank_keys == NULL:
                free(work.buffers_allocation)
                free(work.rank_keys)
                free(work)
                work = NULL
        if work == NULL:
            allocation_failed[0] = 1
        else:
            work.positive_buffer = work.user_buffer + no_components
            work.negative_buffer = work.user_buffer + 2 * no_components
            work.user_gradient = work.user_buffer + 3 * no_components
            work.positive_gradient = work.user_buffer + 4 * no_components
            work.negative_gradient = work.user_buffer + 5 * no_components
            work.second_positive_buffer = work.user_buffer + 6 * no_components
            work.second_negative_buffer = work.user_buffer + 7 * no_components
            work.second_positive_gradient = work.user_buffer + 8 * no_components
            work.second_negative_gradient = work.user_buffer + 9 * no_components
            work.sampled_ids = <int*>(work.rank_keys + scored_capacity)
            work.sampled_scores = <float*>(work.sampled_ids + scored_capacity)
            work.sampled_biases = work.sampled_scores + scored_capacity
            work.sampled_reprs = work.user_buffer + 10 * no_components
            sampler_init(&work.sampler)
            work.nonfinite_scores = 0
            work.candidates = NULL
            work.n_candidates = 0
            work.group = 0
            if thread == 0:
                work.sampler.script = script_pointer
                work.sampler.script_length = script_length
            work.model = model
        if private_items.allocation != NULL:
            for copy_index in prange(per_round, schedule="static", chunksize=1):
                fill_private_copy(&private_items, &model.items, copy_index)
                if private_users.allocation != NULL:
                    fill_private_copy(&private_users, &model.users, copy_index)
            fastrank_team_barrier()
        if block_states != NULL and work != NULL:
            train_strata(&model, work, loss, example_users, example_items, labels, weights, block_ranges,
                         candidate_pointer, block_candidates, block_groups, n_groups, block_states, n_blocks,
                         per_round, &private_users, &private_items, n_visits, seed)

        if claims != NULL:
            if work != NULL:
                # the thread's own blocks (block b is thread b % team's), then every block's rest
                team = fastrank_team_size()
                claimed_block = thread
                while claimed_block < n_blocks:
                    train_claimed(&model, work, loss, example_users, example_items, labels, weights,
                                  &claims[claimed_block * CLAIM_STRIDE], block_ranges[claimed_block, 1], n_visits, seed)
                    claimed_block = claimed_block + team
                for turn in range(n_blocks):
                    claimed_block = (thread + turn) % n_blocks
                    train_claimed(&model, work, loss, example_users, example_items, labels, weights,
                                  &claims[claimed_block * CLAIM_STRIDE], block_ranges[claimed_block, 1], n_visits, seed)
        # other layouts of candidate blocks (a test hook): a block per thread and round, and no
        # round starts before every thread is done with the last
        for round_ in range(rounds if claims == NULL and block_states == NULL else 0):
            for block in prange(round_ * per_round, (round_ + 1) * per_round, schedule="static", chunksize=1):
                if work == NULL:
                    continue
                draw_from_block_candidates(work, candidate_pointer, block_candidates, block_groups, n_groups, block)
                run_block(&model, work, loss, example_users, example_items, labels, weights, block_ranges[block, 0],
                          block_ranges[block, 1], n_visits, seed)
            if rounds > 1:
                fastrank_team_barrier()

        if private_items.allocation != NULL:
            # (the copies are trained by train_strata only, which has no barrier at its end)
            fastrank_team_barrier()
            for copy_index in prange(num_threads, schedule="static", chunksize=1):
                write_back_private(&private_items, &model.items, n_item_rows * copy_index // num_threads,
                                   n_item_rows * (copy_index + 1) // num_threads)
                if private_users.allocation != NULL:
                    write_back_private(&private_users, &model.users, n_user_rows * copy_index // num_threads,
                                       n_user_rows * (copy_index + 1) // num_threads)

        if work != NULL:
            if work.nonfinite_scores:
                nonfinite_seen[0] = 1
            free(work.buffers_allocation)
            free(work.rank_keys)
            free(work)

    unpad_biases(&model.items, &padded_item_biases)
    free(claims)
    free(block_states)
    free(private_items.allocation)
    free(private_users.allocation)
    if allocation_failed[0]:
        raise MemoryError("fastrank could not allocate per-thread training buffers")
    return bool(nonfinite_seen[0])
