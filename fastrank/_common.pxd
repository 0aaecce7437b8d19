# cython: language_level=3
"""Inline ``nogil`` helpers shared by the training (_sgd) and scoring (_ranking) kernels.

Everything here is plain C: no Python objects, no GIL, no allocation.
"""

from libc.math cimport sqrtf
from libc.stdint cimport uint64_t


cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTRANK_HAVE_OPENMP 1
    #else
    #define FASTRANK_HAVE_OPENMP 0
    #endif
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTRANK_PREFETCH(address) __builtin_prefetch((const void*)(address))
    #elif defined(_MSC_VER)
    #include <xmmintrin.h>
    #define FASTRANK_PREFETCH(address) _mm_prefetch((const char*)(address), _MM_HINT_T0)
    #else
    #define FASTRANK_PREFETCH(address) ((void)0)
    #endif
    #if defined(_MSC_VER)
    #define FASTRANK_RESTRICT __restrict
    #else
    #define FASTRANK_RESTRICT __restrict__
    #endif

    /* The innermost loops are written in C so that ``restrict`` tells the compiler the rows do
       not overlap, which lets it vectorise them at the baseline instruction set. */

    /* Dot product with eight partial sums in a fixed order: vectorisable without -ffast-math and
       the same result on every run. */
    static inline float fastrank_dot(const float* FASTRANK_RESTRICT a,
                                     const float* FASTRANK_RESTRICT b, int n) {
        float partial[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        int i = 0, j;
        for (; i + 8 <= n; i += 8)
            for (j = 0; j < 8; j++)
                partial[j] += a[i + j] * b[i + j];
        for (; i < n; i++)
            partial[0] += a[i] * b[i];
        return ((partial[0] + partial[4]) + (partial[1] + partial[5]))
             + ((partial[2] + partial[6]) + (partial[3] + partial[7]));
    }

    /* One adagrad step on a row: g = weight * gradient + alpha * row;
       row -= rate * g / sqrt(acc); acc += g^2. */
    static inline void fastrank_adagrad_row(float* FASTRANK_RESTRICT row, float* FASTRANK_RESTRICT acc,
                                            const float* FASTRANK_RESTRICT gradient, float weight,
                                            float alpha, float rate, int n) {
        int c;
        for (c = 0; c < n; c++) {
            float g = weight * gradient[c] + alpha * row[c];
            float accumulated = acc[c];
            row[c] -= rate * g / sqrtf(accumulated);
            acc[c] = accumulated + g * g;
        }
    }

    /* Gradients of loss * (score(negative) - score(positive)) with respect to the three
       representations. */
    static inline void fastrank_pairwise_gradients(float loss, const float* user, const float* positive,
                                                   const float* negative,
                                                   float* FASTRANK_RESTRICT user_gradient,
                                                   float* FASTRANK_RESTRICT positive_gradient,
                                                   float* FASTRANK_RESTRICT negative_gradient, int n) {
        int c;
        for (c = 0; c < n; c++) {
            user_gradient[c] = loss * (negative[c] - positive[c]);
            positive_gradient[c] = -loss * user[c];
            negative_gradient[c] = loss * user[c];
        }
    }

    /* Number of items ranked before ``item`` (score ``threshold``) under the tie rule "higher
       score first, then lower id": items below ``item`` count when their score is >=, items
       above it when their score is >. Branch-free, so it vectorises. */
    static inline int fastrank_count_before(const float* scores, int n, float threshold, int item) {
        int count = 0, j;
        for (j = 0; j < item; j++)
            count += scores[j] >= threshold;
        for (j = item + 1; j < n; j++)
            count += scores[j] > threshold;
        return count;
    }
    """
    int FASTRANK_HAVE_OPENMP
    int fastrank_count_before(const float* scores, int n, float threshold, int item) noexcept nogil
    void FASTRANK_PREFETCH(const void* address) noexcept nogil
    float fastrank_dot(const float* a, const float* b, int n) noexcept nogil
    void fastrank_adagrad_row(float* row, float* acc, const float* gradient, float weight, float alpha,
                              float rate, int n) noexcept nogil
    void fastrank_pairwise_gradients(float loss, const float* user, const float* positive,
                                     const float* negative, float* user_gradient, float* positive_gradient,
                                     float* negative_gradient, int n) noexcept nogil


# A feature matrix as raw CSR pointers, plus the parameters of its features.  ``identity`` means
# "row r is feature r with weight 1": the kernels then index parameter rows directly instead of
# walking a sparse identity matrix.
cdef struct FeatureSide:
    int identity
    const int* indptr
    const int* indices
    const float* values
    float* embeddings          # (n_features, no_components), C order
    float* biases              # (n_features,)
    float* embedding_acc       # adagrad: sum of squared gradients; adadelta: E[update^2]
    float* bias_acc
    float* embedding_momentum  # adadelta: E[gradient^2]; NULL for adagrad
    float* bias_momentum
    float alpha                # L2 strength applied to every touched feature


# Random numbers: splitmix64, one state per thread.  A test may script the draws instead, so
# that a numpy reference can follow exactly the same negatives and positives.
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


cdef inline void sampler_init(Sampler* sampler, uint64_t seed, int thread) noexcept nogil:
    sampler.state = seed ^ (<uint64_t>(thread + 1) * <uint64_t>0xD1B54A32D192ED03ULL)
    splitmix64(&sampler.state)
    sampler.script = NULL
    sampler.script_length = 0
    sampler.script_position = 0


cdef inline int draw_below(Sampler* sampler, int upper) noexcept nogil:
    """Uniform integer in [0, upper); ``upper`` >= 1."""
    cdef int scripted
    if sampler.script != NULL and sampler.script_position < sampler.script_length:
        scripted = sampler.script[sampler.script_position]
        sampler.script_position += 1
        return scripted % upper
    return <int>(splitmix64(&sampler.state) % <uint64_t>upper)


cdef inline int peek_below(const Sampler* sampler, int upper, int ahead) noexcept nogil:
    """The draw that :func:`draw_below` will return ``ahead`` calls from now (``ahead`` >= 1),
    without consuming anything: splitmix64 is a counter, so the future is cheap to compute.
    Used only to prefetch; a wrong guess costs nothing but the prefetch."""
    cdef uint64_t state
    cdef Py_ssize_t position
    if sampler.script != NULL:
        position = sampler.script_position + ahead - 1
        if position < sampler.script_length:
            return sampler.script[position] % upper
        return 0
    state = sampler.state + <uint64_t>(ahead - 1) * <uint64_t>0x9E3779B97F4A7C15ULL
    return <int>(splitmix64(&state) % <uint64_t>upper)


cdef inline void prefetch_floats(const float* start, int count) noexcept nogil:
    """Ask for the cache lines holding ``start[0:count]``."""
    cdef int offset
    for offset in range(0, count, 16):
        FASTRANK_PREFETCH(start + offset)


cdef inline float dot(const float* a, const float* b, int n) noexcept nogil:
    return fastrank_dot(a, b, n)


cdef inline const float* representation(const FeatureSide* side, int row, int no_components,
                                        float* buffer, float* bias) noexcept nogil:
    """Embedding and bias of one user/item: a pointer to its row (identity) or the weighted sum
    of its features' rows written into ``buffer``."""
    cdef int position, feature, c
    cdef float weight
    cdef float* source
    if side.identity:
        bias[0] = side.biases[row]
        return side.embeddings + <Py_ssize_t>row * no_components
    for c in range(no_components):
        buffer[c] = 0.0
    bias[0] = 0.0
    for position in range(side.indptr[row], side.indptr[row + 1]):
        feature = side.indices[position]
        weight = side.values[position]
        source = side.embeddings + <Py_ssize_t>feature * no_components
        for c in range(no_components):
            buffer[c] += weight * source[c]
        bias[0] += weight * side.biases[feature]
    return buffer
