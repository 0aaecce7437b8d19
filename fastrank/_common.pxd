# cython: language_level=3
"""Inline ``nogil`` helpers shared by the training (_sgd) and scoring (_ranking) kernels.

Everything here is plain C: no Python objects, no GIL, no allocation.
"""

from libc.stdint cimport int64_t, uint64_t


cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTRANK_HAVE_OPENMP 1
    #else
    #define FASTRANK_HAVE_OPENMP 0
    #endif
    """
    int FASTRANK_HAVE_OPENMP


cdef extern from *:
    """
    /* Wait for every thread of the enclosing parallel region (an orphaned barrier binds to it);
       Cython's prange ends with nowait, so a loop that needs the one before it done needs this. */
    static void fastrank_team_barrier(void) {
    #ifdef _OPENMP
    #pragma omp barrier
    #endif
    }
    """
    void fastrank_team_barrier() noexcept nogil


cdef extern from *:
    """
    #if defined(_MSC_VER) && !defined(__clang__)
    #include <intrin.h>
    #endif
    #ifdef _OPENMP
    #include <omp.h>
    #endif
    /* Hand out `amount` positions from a counter that several threads draw on; returns the first.
       Relaxed order suffices: the counter only splits a range, what the positions index is
       read-only during the epoch. */
    static int64_t fastrank_claim(int64_t* next, int64_t amount) {
    #if defined(_MSC_VER) && !defined(__clang__)
        return _InterlockedExchangeAdd64((volatile __int64*)next, amount);
    #else
        return __atomic_fetch_add(next, amount, __ATOMIC_RELAXED);
    #endif
    }
    /* Threads of the enclosing parallel region: the runtime may give fewer than asked for. */
    static int fastrank_team_size(void) {
    #ifdef _OPENMP
        return omp_get_num_threads();
    #else
        return 1;
    #endif
    }
    /* A block's state in a stratified epoch (0 waiting, 1 taken, 2 trained), shared by the
       threads. Taking is a compare-and-swap, so that one thread trains each block; reading 2 with
       acquire order after the trainer stored it with release order makes the rows that block
       wrote visible to the reader, who may train them next. */
    static int fastrank_take_block(int* state) {
    #if defined(_MSC_VER) && !defined(__clang__)
        return _InterlockedCompareExchange((volatile long*)state, 1, 0) == 0;
    #else
        int waiting = 0;
        return __atomic_compare_exchange_n(state, &waiting, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
    #endif
    }
    static int fastrank_block_state(int* state) {
    #if defined(_MSC_VER) && !defined(__clang__)
        return _InterlockedOr((volatile long*)state, 0);
    #else
        return __atomic_load_n(state, __ATOMIC_ACQUIRE);
    #endif
    }
    static void fastrank_block_trained(int* state) {
    #if defined(_MSC_VER) && !defined(__clang__)
        _InterlockedExchange((volatile long*)state, 2);
    #else
        __atomic_store_n(state, 2, __ATOMIC_RELEASE);
    #endif
    }
    """
    int64_t fastrank_claim(int64_t* next, int64_t amount) noexcept nogil
    int fastrank_team_size() noexcept nogil
    int fastrank_take_block(int* state) noexcept nogil
    int fastrank_block_state(int* state) noexcept nogil
    void fastrank_block_trained(int* state) noexcept nogil


cdef extern from *:
    """
    #if defined(_WIN32)
    #ifndef WIN32_LEAN_AND_MEAN
    #define WIN32_LEAN_AND_MEAN
    #endif
    #ifndef NOMINMAX
    #define NOMINMAX
    #endif
    #include <windows.h>
    #else
    #include <sched.h>
    #endif
    #if defined(__x86_64__) || defined(__i386__)
    #include <immintrin.h>
    #endif
    /* A thread waiting for another's block: a few spin-loop hints (they free the core's shared
       resources and save power), and every `yield_every`-th wait the rest of its time slice, so
       that with more threads than cores the one it waits for gets to run. */
    static void fastrank_wait_a_little(int waits, int yield_every) {
        int i;
        for (i = 0; i < 16; i++) {
    #if defined(_MSC_VER) && !defined(__clang__)
            YieldProcessor();
    #elif defined(__x86_64__) || defined(__i386__)
            _mm_pause();
    #elif defined(__aarch64__) || defined(__arm__)
            __asm__ __volatile__("yield");
    #endif
        }
        if (yield_every > 0 && waits % yield_every == yield_every - 1) {
    #if defined(_WIN32)
            SwitchToThread();
    #else
            sched_yield();
    #endif
        }
    }
    """
    void fastrank_wait_a_little(int waits, int yield_every) noexcept nogil


cdef extern from "_simd.h":
    ctypedef struct fastrank_feature_entry:
        int feature
        float weight
    void FASTRANK_PREFETCH(const void* address) noexcept nogil
    void fastrank_detect_cpu(int allow_avx2) noexcept nogil
    int fastrank_simd_level() noexcept nogil
    float fastrank_dot(const float* a, const float* b, int n) noexcept nogil
    void fastrank_score_rows(const float* user, const float* embeddings, const float* biases, Py_ssize_t bias_stride,
                             const int* ids, int count, int n, float* scores) noexcept nogil
    float fastrank_weighted_sum(float* out, const float* embeddings, const float* biases,
                                const fastrank_feature_entry* entries, int count, int n) noexcept nogil
    float fastrank_weighted_score(float* out, float* bias_out, const float* user, const float* embeddings,
                                  const float* biases, const fastrank_feature_entry* entries, int count,
                                  int n) noexcept nogil
    void fastrank_adagrad_row(float* row, float* acc, const float* gradient, float weight, float alpha,
                              float rate, int n) noexcept nogil
    void fastrank_sgd_row(float* row, const float* gradient, float weight, float alpha, float rate,
                          int n) noexcept nogil
    void fastrank_adadelta_row(float* row, float* acc, float* momentum, const float* gradient, float weight,
                               float alpha, float rho, float eps, int n) noexcept nogil
    void fastrank_user_pairwise_gradient(float loss, const float* positive, const float* negative,
                                         float* user_gradient, int n) noexcept nogil
    void fastrank_pairwise_adagrad(float* user, float* user_acc, float* positive, float* positive_acc,
                                   float* negative, float* negative_acc, float loss, float user_alpha,
                                   float item_alpha, float rate, int n) noexcept nogil
    void fastrank_pairwise_sgd(float* user, float* positive, float* negative, float loss, float user_alpha,
                               float item_alpha, float rate, int n) noexcept nogil
    int fastrank_count_before(const float* scores, int n, float threshold, int item, int limit) noexcept nogil
    enum:
        FASTRANK_TILE_ROWS
        FASTRANK_PANEL
    void fastrank_score_tile(const float* queries, Py_ssize_t query_stride, int n_rows, int width,
                             const float* packed, int first_panel, int last_panel, float* out,
                             Py_ssize_t out_stride) noexcept nogil
    void fastrank_count_before_many(const float* scores, int n, const float* thresholds, const int* items, int m,
                                    int* counts) noexcept nogil
    int fastrank_sorted_contains(const int* values, int n, int key) noexcept nogil
    unsigned long long fastrank_rank_key(float score, int item) noexcept nogil
    float fastrank_key_score(unsigned long long key) noexcept nogil
    int fastrank_key_item(unsigned long long key) noexcept nogil
    unsigned long long fastrank_kth_key(unsigned long long* keys, int count, int k) noexcept nogil


# A feature matrix as raw CSR pointers, plus the parameters of its features.  ``identity`` means
# "row r is feature r with weight 1": the kernels then index parameter rows directly instead of
# walking a sparse identity matrix.
cdef struct FeatureSide:
    int identity
    const int* indptr
    const fastrank_feature_entry* entries   # row r: entries[indptr[r]:indptr[r + 1]]
    float* embeddings          # (n_features, no_components), C order
    float* biases              # (n_features,)
    float* embedding_acc       # adagrad: sum of squared gradients; adadelta: E[update^2]; sgd: NULL
    float* bias_acc
    float* embedding_momentum  # adadelta: E[gradient^2]; NULL for adagrad
    float* bias_momentum
    Py_ssize_t bias_stride     # distance between consecutive features' biases and their state: 1, or
                               # 16 on the identity path while several threads train a small model
                               # (_sgd.pad_biases); the feature-path sums in _simd.h assume 1
    float alpha                # L2 strength applied to every touched feature


# Random numbers: splitmix64. Every training example draws from its own stream, a pure function
# of (epoch seed, example position): so the candidates of the *next* example are known before it
# starts and can be prefetched, and the draws do not depend on which thread runs the example.
# A test may script the draws instead (one global sequence, single thread), so that a numpy
# reference can follow exactly the same negatives and positives.
cdef struct Sampler:
    uint64_t state
    const int* script
    Py_ssize_t script_length
    Py_ssize_t script_position


cdef inline uint64_t splitmix64(uint64_t* state) noexcept nogil:
    cdef uint64_t z
    state[0] += <uint64_t>0x9E3779B97F4A7C15ULL
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline int bounded(uint64_t random, int upper) noexcept nogil:
    """Map 64 random bits to [0, upper) by multiply-shift (Lemire): no 64-bit division, which
    costs tens of cycles per draw; the bias is below upper / 2**32."""
    return <int>(((random >> 32) * <uint64_t>upper) >> 32)


cdef inline uint64_t example_stream(uint64_t seed, Py_ssize_t position) noexcept nogil:
    """Starting state of the draws of the example at ``position``."""
    cdef uint64_t state = seed ^ (<uint64_t>position * <uint64_t>0xD1B54A32D192ED03ULL)
    return splitmix64(&state)


cdef inline void sampler_init(Sampler* sampler) noexcept nogil:
    sampler.state = 0
    sampler.script = NULL
    sampler.script_length = 0
    sampler.script_position = 0


cdef inline void sampler_start_example(Sampler* sampler, uint64_t seed, Py_ssize_t position) noexcept nogil:
    sampler.state = example_stream(seed, position)


cdef inline int stream_draw(uint64_t stream, int upper, int ahead) noexcept nogil:
    """The ``ahead``-th draw (1-based) below ``upper`` of a stream that starts at ``stream``."""
    cdef uint64_t state = stream + <uint64_t>(ahead - 1) * <uint64_t>0x9E3779B97F4A7C15ULL
    return bounded(splitmix64(&state), upper)


cdef inline int draw_below(Sampler* sampler, int upper) noexcept nogil:
    """Uniform integer in [0, upper); ``upper`` >= 1."""
    cdef int scripted
    if sampler.script != NULL and sampler.script_position < sampler.script_length:
        scripted = sampler.script[sampler.script_position]
        sampler.script_position += 1
        return scripted % upper
    return bounded(splitmix64(&sampler.state), upper)


cdef inline int peek_below(const Sampler* sampler, int upper, int ahead) noexcept nogil:
    """The draw that :func:`draw_below` will return ``ahead`` calls from now (``ahead`` >= 1),
    without consuming anything. Used only to prefetch; a wrong guess costs only the prefetch."""
    cdef Py_ssize_t position
    if sampler.script != NULL:
        position = sampler.script_position + ahead - 1
        if position < sampler.script_length:
            return sampler.script[position] % upper
        return 0
    return stream_draw(sampler.state, upper, ahead)


cdef inline void prefetch_floats(const float* start, int count) noexcept nogil:
    """Ask for the cache lines holding ``start[0:count]``."""
    cdef Py_ssize_t offset  # pointer-sized: no sign extension per line
    for offset in range(0, count, 16):
        FASTRANK_PREFETCH(start + offset)


cdef inline float dot(const float* a, const float* b, int n) noexcept nogil:
    return fastrank_dot(a, b, n)


cdef inline void point_feature_rows(FeatureSide* side, object features):
    """Point ``side`` at a feature matrix as ``_validation.packed_feature_rows`` makes it (None:
    identity); needs the GIL. The arrays must outlive every use of ``side``."""
    cdef const int[::1] indptr
    cdef const int[:, ::1] entries
    if features is None:
        side.identity = 1
        side.indptr = NULL
        side.entries = NULL
        return
    side.identity = 0
    indptr = features[0]
    entries = features[1]
    side.indptr = &indptr[0]
    # an empty feature matrix has no entries to point at; its rows are then all empty
    side.entries = <const fastrank_feature_entry*>&entries[0, 0] if entries.shape[0] > 0 else NULL


cdef inline const float* representation(const FeatureSide* side, int row, int no_components,
                                        float* buffer, float* bias) noexcept nogil:
    """Embedding and bias of one user/item: a pointer to its row (identity) or the weighted sum
    of its features' rows written into ``buffer``."""
    if side.identity:
        bias[0] = side.biases[row * side.bias_stride]
        return side.embeddings + <Py_ssize_t>row * no_components
    return feature_representation(side, row, no_components, buffer, bias)


cdef inline const float* feature_representation(const FeatureSide* side, int row, int no_components,
                                                float* buffer, float* bias) noexcept nogil:
    cdef int start = side.indptr[row]
    bias[0] = fastrank_weighted_sum(buffer, side.embeddings, side.biases, side.entries + start,
                                    side.indptr[row + 1] - start, no_components)
    return buffer


cdef inline const float* scored_representation(const FeatureSide* side, int row, int no_components,
                                               const float* user_repr, float* buffer, float* bias,
                                               float* score) noexcept nogil:
    """:func:`representation`, plus ``score = user_repr . representation + bias``; with features
    the score is taken while the sum is formed (the same value as summing, then a dot)."""
    cdef const float* row_repr
    if side.identity:
        row_repr = representation(side, row, no_components, buffer, bias)
        score[0] = dot(user_repr, row_repr, no_components) + bias[0]
        return row_repr
    return scored_feature_representation(side, row, no_components, user_repr, buffer, bias, score)


# Apart from scored_representation, which is then small enough for the compiler to inline into
# every step: the call it made on the identity path was 4% of a MovieLens 100K BPR epoch's
# instructions.
cdef inline const float* scored_feature_representation(const FeatureSide* side, int row, int no_components,
                                                       const float* user_repr, float* buffer, float* bias,
                                                       float* score) noexcept nogil:
    cdef int start = side.indptr[row]
    score[0] = fastrank_weighted_score(buffer, bias, user_repr, side.embeddings, side.biases, side.entries + start,
                                       side.indptr[row + 1] - start, no_components)
    return buffer


# CSR rows (or any runs given by a rising pointer array)
cdef inline int rows_are_canonical(const int* indptr, const int* indices, Py_ssize_t n_rows) noexcept nogil:
    """1 when every row's columns rise strictly (sorted, no duplicates). ``indptr`` (``n_rows + 1``
    entries, rising) bounds the rows' entries in ``indices``, from ``indptr[0]`` (0 for a whole
    matrix; a run of rows in the middle of one starts later) to ``indptr[n_rows]``."""
    cdef Py_ssize_t row, entry, first = indptr[0], stop = indptr[n_rows]
    # (int counters: at most nnz < 2**31 entries, and they vectorise twice as wide)
    cdef int falls = 0, falls_at_row_starts = 0
    # In canonical rows the columns fall only where a row starts: count every fall (one pass
    # over the entries, without a branch), then those at the first entry of a row.
    for entry in range(first + 1, stop):
        falls += indices[entry] <= indices[entry - 1]
    for row in range(1, n_rows):
        # the first row starting at this position (empty rows before it start there too)
        if first < indptr[row] < stop and indptr[row] > indptr[row - 1]:
            falls_at_row_starts += indices[indptr[row]] <= indices[indptr[row] - 1]
    return falls == falls_at_row_starts
