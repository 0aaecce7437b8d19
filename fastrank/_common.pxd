# cython: language_level=3
"""Inline ``nogil`` helpers shared by the training (_sgd) and scoring (_ranking) kernels.

Everything here is plain C: no Python objects, no GIL, no allocation.
"""

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
    """
    int FASTRANK_HAVE_OPENMP
    void FASTRANK_PREFETCH(const void* address) noexcept nogil


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
    # Eight independent partial sums: the compiler can vectorise this without -ffast-math and
    # the summation order (hence the result) is the same on every run.
    cdef float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef int i = 0
    while i + 8 <= n:
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
        s4 += a[i + 4] * b[i + 4]
        s5 += a[i + 5] * b[i + 5]
        s6 += a[i + 6] * b[i + 6]
        s7 += a[i + 7] * b[i + 7]
        i += 8
    while i < n:
        s0 += a[i] * b[i]
        i += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


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
