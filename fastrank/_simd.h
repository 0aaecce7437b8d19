/* Innermost numeric loops of the fastrank kernels, in C.
 *
 * Written in C so that `restrict` tells the compiler that rows do not overlap and the loops
 * vectorise at the baseline instruction set (SSE2 on x86-64; no -march=native). On x86 with
 * GCC or clang each loop is also compiled for AVX2+FMA and chosen once at run time by CPU
 * detection: adagrad's square root and division per coordinate dominate training, and AVX2
 * does eight of them per instruction instead of four. Results are reproducible run to run on a
 * given machine; machines with and without AVX2 round differently (FMA).
 */
#ifndef FASTRANK_SIMD_H
#define FASTRANK_SIMD_H

#include <math.h>
#include <stddef.h>
#include <string.h>
#include <stdlib.h>

#if defined(_MSC_VER)
#define FASTRANK_RESTRICT __restrict
#else
#define FASTRANK_RESTRICT __restrict__
#endif

#if defined(__GNUC__) || defined(__clang__)
/* GCC counts a prefetch as free of side effects, so a function that only prefetches is "pure" and
   a call to it, having no result to use, can be deleted: whole prefetch stages disappeared from
   builds where the compiler could prove their loops finite. The empty volatile asm is a side
   effect (it emits nothing), which keeps them. */
static inline __attribute__((always_inline)) void fastrank_prefetch(const void* address) {
    __builtin_prefetch(address);
    __asm__ __volatile__("");
}
#define FASTRANK_PREFETCH(address) fastrank_prefetch((const void*)(address))
#elif defined(_MSC_VER)
#include <xmmintrin.h>
#define FASTRANK_PREFETCH(address) _mm_prefetch((const char*)(address), _MM_HINT_T0)
#else
#define FASTRANK_PREFETCH(address) ((void)0)
#endif

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FASTRANK_X86_DISPATCH 1
#define FASTRANK_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

/* One stored entry of a feature row: the feature (column) and its weight. A row's ids and
   weights sit side by side, so reaching a row costs one cache line, not one per array. */
typedef struct {
    int feature;
    float weight;
} fastrank_feature_entry;

#if defined(__GNUC__) || defined(__clang__)
#define FASTRANK_VECTOR_EXTENSIONS 1
typedef float fastrank_float4 __attribute__((vector_size(16)));
#endif

/* ---- dot product: eight lanes of partial sums, combined in a fixed order ---------------- */
#ifdef FASTRANK_VECTOR_EXTENSIONS
#define FASTRANK_DEFINE_DOT(name, attributes)                                                   \
    static attributes float name(const float* a, const float* b, int n) {                      \
        fastrank_float4 low = {0.0f, 0.0f, 0.0f, 0.0f}, high = {0.0f, 0.0f, 0.0f, 0.0f};     \
        fastrank_float4 a0, a1, b0, b1, sum;                                                   \
        float total;                                                                           \
        int i = 0;                                                                             \
        for (; i + 8 <= n; i += 8) {                                                           \
            memcpy(&a0, a + i, sizeof(a0));                                                    \
            memcpy(&a1, a + i + 4, sizeof(a1));                                                \
            memcpy(&b0, b + i, sizeof(b0));                                                    \
            memcpy(&b1, b + i + 4, sizeof(b1));                                                \
            low += a0 * b0;                                                                    \
            high += a1 * b1;                                                                   \
        }                                                                                      \
        sum = low + high;                                                                      \
        total = (sum[0] + sum[2]) + (sum[1] + sum[3]);                                         \
        for (; i < n; i++)                                                                     \
            total += a[i] * b[i];                                                              \
        return total;                                                                          \
    }
#else
#define FASTRANK_DEFINE_DOT(name, attributes)                                                   \
    static attributes float name(const float* a, const float* b, int n) {                      \
        float partial[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};                 \
        int i = 0, j;                                                                          \
        for (; i + 8 <= n; i += 8)                                                             \
            for (j = 0; j < 8; j++)                                                            \
                partial[j] += a[i + j] * b[i + j];                                             \
        for (; i < n; i++)                                                                     \
            partial[0] += a[i] * b[i];                                                         \
        return ((partial[0] + partial[4]) + (partial[1] + partial[5]))                         \
             + ((partial[2] + partial[6]) + (partial[3] + partial[7]));                        \
    }
#endif

/* ---- adagrad: g = weight * gradient + alpha * row; row -= rate * g / sqrt(acc); acc += g^2
 * Adagrad and SGD have a second loop without the L2 term, for alpha == 0 (the default): one
 * multiply fewer per component, and no read of the row for the L2 term. */
static inline float fastrank_adagrad_step(float value, float g, float* acc, float rate) {
    /* one coordinate: returns the moved value and adds g^2 to the accumulator */
    float accumulated = *acc;
    *acc = accumulated + g * g;
    return value - rate * g / sqrtf(accumulated);
}
#define FASTRANK_ADAGRAD_LOOP(step_gradient)                                                    \
    for (c = 0; c < n; c++) {                                                                  \
        float g = step_gradient;                                                               \
        row[c] = fastrank_adagrad_step(row[c], g, acc + c, rate);                              \
    }
#define FASTRANK_DEFINE_ADAGRAD(name, attributes)                                               \
    static attributes void name(float* FASTRANK_RESTRICT row, float* FASTRANK_RESTRICT acc,    \
                                const float* FASTRANK_RESTRICT gradient, float weight,         \
                                float alpha, float rate, int n) {                              \
        int c;                                                                                 \
        if (alpha == 0.0f)                                                                     \
            FASTRANK_ADAGRAD_LOOP(weight * gradient[c])                                        \
        else                                                                                   \
            FASTRANK_ADAGRAD_LOOP(weight * gradient[c] + alpha * row[c])                       \
    }

/* ---- adadelta (Zeiler 2012): E[g^2] decays into `momentum`, E[dx^2] into `acc` ------------ */
#define FASTRANK_DEFINE_ADADELTA(name, attributes)                                              \
    static attributes void name(float* FASTRANK_RESTRICT row, float* FASTRANK_RESTRICT acc,    \
                                float* FASTRANK_RESTRICT momentum,                             \
                                const float* FASTRANK_RESTRICT gradient, float weight,         \
                                float alpha, float rho, float eps, int n) {                    \
        int c;                                                                                 \
        for (c = 0; c < n; c++) {                                                              \
            float g = weight * gradient[c] + alpha * row[c];                                   \
            float squared = rho * momentum[c] + (1.0f - rho) * g * g;                          \
            float step = sqrtf(acc[c] + eps) / sqrtf(squared + eps) * g;                       \
            momentum[c] = squared;                                                             \
            acc[c] = rho * acc[c] + (1.0f - rho) * step * step;                                \
            row[c] -= step;                                                                    \
        }                                                                                      \
    }

/* ---- plain SGD: row -= rate * (weight * gradient + alpha * row) ------------------------- */
#define FASTRANK_DEFINE_SGD(name, attributes)                                                   \
    static attributes void name(float* FASTRANK_RESTRICT row, const float* FASTRANK_RESTRICT gradient, \
                                float weight, float alpha, float rate, int n) {                \
        int c;                                                                                 \
        if (alpha == 0.0f)                                                                     \
            for (c = 0; c < n; c++)                                                            \
                row[c] -= rate * (weight * gradient[c]);                                       \
        else                                                                                   \
            for (c = 0; c < n; c++)                                                            \
                row[c] -= rate * (weight * gradient[c] + alpha * row[c]);                      \
    }

/* ---- the user's gradient of loss * (score(negative) - score(positive)) -------------------
 * (the items' gradients are -loss and loss times the user's representation, which their updates
 * read in place) */
#define FASTRANK_DEFINE_PAIRWISE(name, attributes)                                              \
    static attributes void name(float loss, const float* positive, const float* negative,     \
                                float* FASTRANK_RESTRICT user_gradient, int n) {               \
        int c;                                                                                 \
        for (c = 0; c < n; c++)                                                                \
            user_gradient[c] = loss * (negative[c] - positive[c]);                             \
    }

/* ---- one pairwise step on rows of their own (no side features), in one pass ----------------
 * The same arithmetic, in the same order per coordinate, as the user's pairwise gradient above
 * followed by the positive's, the negative's and the user's row updates: every gradient is taken
 * from the rows before any of them moves, g_user = loss * (negative - positive), g_positive =
 * -loss * user and g_negative = loss * user, each plus alpha times its own row. One pass reads and
 * writes each row once, where the separate updates wrote the user's gradient out, read it back,
 * and looped over the coordinates four times. The three rows are distinct: the negative is never
 * the positive. */
#define FASTRANK_PAIRWISE_ADAGRAD_LOOP(user_l2, positive_l2, negative_l2)                      \
    for (c = 0; c < n; c++) {                                                                  \
        float u = user[c], p = positive[c], q = negative[c];                                   \
        float gu = loss * (q - p) user_l2;                                                     \
        float gp = -loss * u positive_l2;                                                      \
        float gq = loss * u negative_l2;                                                       \
        positive[c] = fastrank_adagrad_step(p, gp, positive_acc + c, rate);                    \
        negative[c] = fastrank_adagrad_step(q, gq, negative_acc + c, rate);                    \
        user[c] = fastrank_adagrad_step(u, gu, user_acc + c, rate);                            \
    }
#define FASTRANK_DEFINE_PAIRWISE_ADAGRAD(name, attributes)                                      \
    static attributes void name(float* FASTRANK_RESTRICT user, float* FASTRANK_RESTRICT user_acc, \
                                float* FASTRANK_RESTRICT positive, float* FASTRANK_RESTRICT positive_acc, \
                                float* FASTRANK_RESTRICT negative, float* FASTRANK_RESTRICT negative_acc, \
                                float loss, float user_alpha, float item_alpha, float rate, int n) { \
        ptrdiff_t c;                                                                           \
        if (user_alpha == 0.0f && item_alpha == 0.0f)                                          \
            FASTRANK_PAIRWISE_ADAGRAD_LOOP(, , )                                               \
        else                                                                                   \
            FASTRANK_PAIRWISE_ADAGRAD_LOOP(+ user_alpha * u, + item_alpha * p, + item_alpha * q) \
    }
#define FASTRANK_PAIRWISE_SGD_LOOP(user_l2, positive_l2, negative_l2)                          \
    for (c = 0; c < n; c++) {                                                                  \
        float u = user[c], p = positive[c], q = negative[c];                                   \
        float gu = loss * (q - p);                                                             \
        positive[c] = p - rate * (-loss * u positive_l2);                                      \
        negative[c] = q - rate * (loss * u negative_l2);                                       \
        user[c] = u - rate * (gu user_l2);                                                     \
    }
#define FASTRANK_DEFINE_PAIRWISE_SGD(name, attributes)                                          \
    static attributes void name(float* FASTRANK_RESTRICT user, float* FASTRANK_RESTRICT positive, \
                                float* FASTRANK_RESTRICT negative, float loss, float user_alpha, \
                                float item_alpha, float rate, int n) {                         \
        ptrdiff_t c;                                                                           \
        if (user_alpha == 0.0f && item_alpha == 0.0f)                                          \
            FASTRANK_PAIRWISE_SGD_LOOP(, , )                                                   \
        else                                                                                   \
            FASTRANK_PAIRWISE_SGD_LOOP(+ user_alpha * u, + item_alpha * p, + item_alpha * q)   \
    }

/* ---- items ranked before `item` (score `threshold`): higher score, or equal and lower id --
 * Counting stops early, in blocks of 512 items, once it reaches `limit`: callers that only need
 * to know whether an item is in the top k pass a limit and read any count >= limit as "not". */
#define FASTRANK_DEFINE_COUNT_BEFORE(name, attributes)                                          \
    static attributes int name(const float* scores, int n, float threshold, int item, int limit) { \
        int count = 0, j = 0, stop;                                                            \
        while (j < item) {                                                                     \
            stop = item - j > 512 ? j + 512 : item;                                            \
            for (; j < stop; j++)                                                              \
                count += scores[j] >= threshold;                                               \
            if (count >= limit)                                                                \
                return count;                                                                  \
        }                                                                                      \
        for (j = item + 1; j < n;) {                                                           \
            stop = n - j > 512 ? j + 512 : n;                                                  \
            for (; j < stop; j++)                                                              \
                count += scores[j] > threshold;                                                \
            if (count >= limit)                                                                \
                return count;                                                                  \
        }                                                                                      \
        return count;                                                                          \
    }

/* ---- weighted sum of feature rows: out = sum_f weight_f * embeddings[feature_f] -----------
 * Returns sum_f weight_f * biases[feature_f]. Columns are taken in blocks of 32 so each block's
 * partial sums stay in registers across all the features of the row and are stored once. */
#define FASTRANK_DEFINE_WEIGHTED_SUM(name, attributes)                                          \
    static attributes float name(float* FASTRANK_RESTRICT out, const float* embeddings,        \
                                 const float* biases, const fastrank_feature_entry* entries,   \
                                 int count, int n) {                                           \
        float bias = 0.0f, block[32];                                                          \
        int c0, c, f, width;                                                                   \
        for (c0 = 0; c0 < n; c0 += 32) {                                                       \
            width = n - c0 < 32 ? n - c0 : 32;                                                 \
            for (c = 0; c < 32; c++)                                                           \
                block[c] = 0.0f;                                                               \
            for (f = 0; f < count; f++) {                                                      \
                const float* FASTRANK_RESTRICT source =                                        \
                    embeddings + (ptrdiff_t)entries[f].feature * n + c0;                       \
                float weight = entries[f].weight;                                              \
                if (width == 32) {                                                             \
                    for (c = 0; c < 32; c++)                                                   \
                        block[c] += weight * source[c];                                        \
                } else {                                                                       \
                    for (c = 0; c < width; c++)                                                \
                        block[c] += weight * source[c];                                        \
                }                                                                              \
            }                                                                                  \
            memcpy(out + c0, block, (size_t)width * sizeof(float));                            \
        }                                                                                      \
        for (f = 0; f < count; f++)                                                            \
            bias += entries[f].weight * biases[entries[f].feature];                            \
        return bias;                                                                           \
    }

/* ---- k-OS selection: (score, item) packed into one integer key ------------------------------
 * The high half is the score's bits mapped so that unsigned order is float order (-0.0 is made
 * +0.0 first, so the two zeros tie as floats do); the low half is the item id inverted, so that
 * among equal scores the lower id ranks first. Descending keys are then the ranking order, and
 * comparing two keys is one integer comparison instead of two float and two integer ones. */
static inline unsigned long long fastrank_rank_key(float score, int item) {
    unsigned int bits;
    float canonical = score + 0.0f;
    memcpy(&bits, &canonical, sizeof(bits));
    bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    return ((unsigned long long)bits << 32) | (unsigned long long)(0xFFFFFFFFu - (unsigned int)item);
}

static inline float fastrank_key_score(unsigned long long key) {
    unsigned int bits = (unsigned int)(key >> 32);
    float score;
    bits = (bits & 0x80000000u) ? (bits & 0x7FFFFFFFu) : ~bits;
    memcpy(&score, &bits, sizeof(score));
    return score;
}

static inline int fastrank_key_item(unsigned long long key) {
    return (int)(0xFFFFFFFFu - (unsigned int)key);
}

static int fastrank_compare_keys_descending(const void* left, const void* right) {
    unsigned long long a = *(const unsigned long long*)left, b = *(const unsigned long long*)right;
    return (a < b) - (a > b);
}

#define FASTRANK_ORDER_PAIR(a, b)                                                               \
    do {                                                                                        \
        unsigned long long high_ = (a) > (b) ? (a) : (b), low_ = (a) > (b) ? (b) : (a);         \
        (a) = high_;                                                                            \
        (b) = low_;                                                                             \
    } while (0)

/* The key at 0-based position k of `keys[0:count]` in descending order (k < count).
 *
 * Up to 10 keys (k-OS's default n is 10) go through a sorting network of 29 compare-exchanges
 * held in registers: no branches to mispredict and no loop over pairs; missing keys are 0,
 * below every real key (whose low half is never 0), so they sort last. Up to 32 keys, counting
 * each key's predecessors (branch-free); beyond, qsort (which reorders `keys`). Repeated draws of
 * one item are equal keys: any of them is the same (score, item). */
static inline unsigned long long fastrank_kth_key(unsigned long long* keys, int count, int k) {
    int i, j, before, equal;
    if (count <= 10) {
        unsigned long long v[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        for (i = 0; i < count; i++)
            v[i] = keys[i];
        FASTRANK_ORDER_PAIR(v[4], v[9]); FASTRANK_ORDER_PAIR(v[3], v[8]); FASTRANK_ORDER_PAIR(v[2], v[7]);
        FASTRANK_ORDER_PAIR(v[1], v[6]); FASTRANK_ORDER_PAIR(v[0], v[5]); FASTRANK_ORDER_PAIR(v[1], v[4]);
        FASTRANK_ORDER_PAIR(v[6], v[9]); FASTRANK_ORDER_PAIR(v[0], v[3]); FASTRANK_ORDER_PAIR(v[5], v[8]);
        FASTRANK_ORDER_PAIR(v[0], v[2]); FASTRANK_ORDER_PAIR(v[3], v[6]); FASTRANK_ORDER_PAIR(v[7], v[9]);
        FASTRANK_ORDER_PAIR(v[0], v[1]); FASTRANK_ORDER_PAIR(v[2], v[4]); FASTRANK_ORDER_PAIR(v[5], v[7]);
        FASTRANK_ORDER_PAIR(v[8], v[9]); FASTRANK_ORDER_PAIR(v[1], v[2]); FASTRANK_ORDER_PAIR(v[4], v[6]);
        FASTRANK_ORDER_PAIR(v[7], v[8]); FASTRANK_ORDER_PAIR(v[3], v[5]); FASTRANK_ORDER_PAIR(v[2], v[5]);
        FASTRANK_ORDER_PAIR(v[6], v[8]); FASTRANK_ORDER_PAIR(v[1], v[3]); FASTRANK_ORDER_PAIR(v[4], v[7]);
        FASTRANK_ORDER_PAIR(v[2], v[3]); FASTRANK_ORDER_PAIR(v[6], v[7]); FASTRANK_ORDER_PAIR(v[3], v[4]);
        FASTRANK_ORDER_PAIR(v[5], v[6]); FASTRANK_ORDER_PAIR(v[4], v[5]);
        return v[k];
    }
    if (count > 32) {
        qsort(keys, (size_t)count, sizeof(keys[0]), fastrank_compare_keys_descending);
        return keys[k];
    }
    for (j = 0; j < count; j++) {
        before = 0;
        equal = 0;
        for (i = 0; i < count; i++) {
            before += keys[i] > keys[j];
            equal += keys[i] == keys[j];
        }
        if (before <= k && k < before + equal)
            return keys[j];
    }
    return keys[k];
}

/* ---- membership in a sorted array, by a branch-free binary search (no mispredictions) ----- */
static inline int fastrank_sorted_contains(const int* values, int n, int key) {
    const int* base = values;
    if (n <= 0)
        return 0;
    while (n > 1) {
        int half = n / 2;
        base = (base[half] <= key) ? base + half : base;
        n -= half;
    }
    return *base == key;
}

FASTRANK_DEFINE_DOT(fastrank_dot_base, inline)

static inline void fastrank_score_rows_base(const float* user, const float* embeddings, const float* biases,
                                            ptrdiff_t bias_stride, const int* ids, int count, int n, float* scores) {
    int j;
    for (j = 0; j < count; j++)
        scores[j] = fastrank_dot_base(user, embeddings + (ptrdiff_t)ids[j] * n, n) + biases[ids[j] * bias_stride];
}

FASTRANK_DEFINE_ADAGRAD(fastrank_adagrad_row_base, inline)
FASTRANK_DEFINE_ADADELTA(fastrank_adadelta_row_base, inline)
FASTRANK_DEFINE_SGD(fastrank_sgd_row_base, inline)
FASTRANK_DEFINE_PAIRWISE(fastrank_user_pairwise_gradient_base, inline)
FASTRANK_DEFINE_PAIRWISE_ADAGRAD(fastrank_pairwise_adagrad_base, inline)
FASTRANK_DEFINE_PAIRWISE_SGD(fastrank_pairwise_sgd_base, inline)
FASTRANK_DEFINE_COUNT_BEFORE(fastrank_count_before_base, inline)

/* ---- scores of a tile of query rows against panels of packed targets ----------------------
 * Targets are packed in panels of 16: target t of panel p, column k, at
 * packed[(p * width + k) * 16 + t]. A tile is FASTRANK_TILE_ROWS query rows of `width` floats,
 * `query_stride` apart (a short tile is padded by the caller). For rows r < n_rows and panels p in
 * [first_panel, last_panel):
 *     out[r * out_stride + p * 16 + t] = sum over k of queries[r][k] * target[k],
 * accumulated from 0 in increasing k. Every score is the same sequence of operations wherever it
 * sits in a tile or panel: equal rows score equal, and the score a held-out item is ranked by is
 * the one its candidates are compared with. */
#define FASTRANK_TILE_ROWS 6
#define FASTRANK_PANEL 16

static inline void fastrank_score_tile_base(const float* queries, ptrdiff_t query_stride, int n_rows, int width,
                                            const float* packed, int first_panel, int last_panel, float* out,
                                            ptrdiff_t out_stride) {
    int p, k, r, t;
    float sums[FASTRANK_TILE_ROWS][FASTRANK_PANEL];
    for (p = first_panel; p < last_panel; p++) {
        const float* panel = packed + (ptrdiff_t)p * width * FASTRANK_PANEL;
        memset(sums, 0, sizeof(sums));
        for (k = 0; k < width; k++)
            for (r = 0; r < FASTRANK_TILE_ROWS; r++) {
                float query = queries[r * query_stride + k];
                for (t = 0; t < FASTRANK_PANEL; t++)
                    sums[r][t] += query * panel[k * FASTRANK_PANEL + t];
            }
        for (r = 0; r < n_rows; r++)
            memcpy(out + r * out_stride + (ptrdiff_t)p * FASTRANK_PANEL, sums[r], sizeof(sums[r]));
    }
}

/* ---- exact ranks of several held-out items of one row of scores --------------------------
 * counts[g] = fastrank_count_before(scores, n, thresholds[g], items[g], no limit) for g < m, with
 * `items` ascending. The baseline counts one item at a time; the AVX2 version counts four per pass
 * over the scores (one load of each score, four comparisons). */
static inline void fastrank_count_before_many_base(const float* scores, int n, const float* thresholds,
                                                   const int* items, int m, int* counts) {
    int g;
    for (g = 0; g < m; g++)
        counts[g] = fastrank_count_before_base(scores, n, thresholds[g], items[g], n);
}
FASTRANK_DEFINE_WEIGHTED_SUM(fastrank_weighted_sum_base, inline)

static inline float fastrank_weighted_score_base(float* out, float* bias_out, const float* user,
                                                 const float* embeddings, const float* biases,
                                                 const fastrank_feature_entry* entries, int count, int n) {
    float bias = fastrank_weighted_sum_base(out, embeddings, biases, entries, count, n);
    *bias_out = bias;
    return fastrank_dot_base(user, out, n) + bias;
}

#ifdef FASTRANK_X86_DISPATCH
#include <immintrin.h>

/* With AVX2 the dot product takes eight lanes per instruction, in two independent sums. */
typedef float fastrank_float8 __attribute__((vector_size(32)));

/* The eight lanes of a partial sum added in one fixed order (every AVX2 dot product uses it):
   ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7)). Written with shuffles, six instructions:
   GCC compiled the scalar expression to fifteen (each lane taken out on its own), 8% of a
   WARP-kOS epoch's instructions on MovieLens 100K. Each addition is the same, so the result is
   bit for bit the scalar expression's. */
static FASTRANK_TARGET_AVX2 inline float fastrank_lanes_total(fastrank_float8 sum) {
    __m256 all = (__m256)sum;
    __m128 halves = _mm_add_ps(_mm256_castps256_ps128(all), _mm256_extractf128_ps(all, 1));
    /* lanes 0 and 2: (s0 + s4) + (s1 + s5) and (s2 + s6) + (s3 + s7) */
    __m128 pairs = _mm_add_ps(halves, _mm_movehdup_ps(halves));
    return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehl_ps(pairs, pairs)));
}

static FASTRANK_TARGET_AVX2 float fastrank_dot_avx2(const float* a, const float* b, int n) {
    fastrank_float8 low = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    fastrank_float8 high = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    fastrank_float8 a0, a1, b0, b1;
    float total;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        memcpy(&a0, a + i, sizeof(a0));
        memcpy(&a1, a + i + 8, sizeof(a1));
        memcpy(&b0, b + i, sizeof(b0));
        memcpy(&b1, b + i + 8, sizeof(b1));
        low += a0 * b0;
        high += a1 * b1;
    }
    if (i + 8 <= n) {
        memcpy(&a0, a + i, sizeof(a0));
        memcpy(&b0, b + i, sizeof(b0));
        low += a0 * b0;
        i += 8;
    }
    total = fastrank_lanes_total(low + high);
    for (; i < n; i++)
        total += a[i] * b[i];
    return total;
}

/* Scores of several rows against one vector: scores[j] = dot(user, rows[j]) + biases[ids[j]], with
   rows[j] = embeddings + ids[j] * n. Two rows at a time, each summed exactly as
   fastrank_dot_avx2 sums (same lanes, same order, so the same result), but with four
   independent chains in flight instead of two. */
static FASTRANK_TARGET_AVX2 void fastrank_score_rows_avx2(const float* user, const float* embeddings,
                                                          const float* biases, ptrdiff_t bias_stride,
                                                          const int* ids, int count,
                                                          int n, float* scores) {
    int j = 0, i;
    for (; j + 2 <= count; j += 2) {
        const float* first = embeddings + (ptrdiff_t)ids[j] * n;
        const float* second = embeddings + (ptrdiff_t)ids[j + 1] * n;
        fastrank_float8 low0 = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}, high0 = low0;
        fastrank_float8 low1 = low0, high1 = low0;
        fastrank_float8 u0, u1, a0, a1, b0, b1;
        float total0, total1;
        for (i = 0; i + 16 <= n; i += 16) {
            memcpy(&u0, user + i, sizeof(u0));
            memcpy(&u1, user + i + 8, sizeof(u1));
            memcpy(&a0, first + i, sizeof(a0));
            memcpy(&a1, first + i + 8, sizeof(a1));
            memcpy(&b0, second + i, sizeof(b0));
            memcpy(&b1, second + i + 8, sizeof(b1));
            low0 += u0 * a0;
            high0 += u1 * a1;
            low1 += u0 * b0;
            high1 += u1 * b1;
        }
        if (i + 8 <= n) {
            memcpy(&u0, user + i, sizeof(u0));
            memcpy(&a0, first + i, sizeof(a0));
            memcpy(&b0, second + i, sizeof(b0));
            low0 += u0 * a0;
            low1 += u0 * b0;
            i += 8;
        }
        total0 = fastrank_lanes_total(low0 + high0);
        total1 = fastrank_lanes_total(low1 + high1);
        for (; i < n; i++) {
            total0 += user[i] * first[i];
            total1 += user[i] * second[i];
        }
        scores[j] = total0 + biases[ids[j] * bias_stride];
        scores[j + 1] = total1 + biases[ids[j + 1] * bias_stride];
    }
    for (; j < count; j++)
        scores[j] = fastrank_dot_avx2(user, embeddings + (ptrdiff_t)ids[j] * n, n) + biases[ids[j] * bias_stride];
}

/* Adagrad with AVX2: 1/sqrt(acc) from the hardware estimate refined by one Newton-Raphson step
   (relative error about 1e-7, like a float division) instead of a square root and a division,
   which cost several times more. Accumulators are always >= initial_accumulator > 0. Without the
   L2 term (alpha == 0, the default) each 8 floats take eight multiply-add unit operations, not
   nine. */
/* One adagrad step on eight coordinates of gradient `g`: stores the new accumulators at `acc`
   and returns the moved values. */
static FASTRANK_TARGET_AVX2 inline __attribute__((always_inline)) __m256 fastrank_adagrad_step_avx2(
        __m256 value, __m256 g, float* acc, __m256 rates) {
    const __m256 half = _mm256_set1_ps(0.5f), three_halves = _mm256_set1_ps(1.5f);
    __m256 accumulated = _mm256_loadu_ps(acc);
    __m256 inverse_root = _mm256_rsqrt_ps(accumulated);
    inverse_root = _mm256_mul_ps(inverse_root,
                                 _mm256_fnmadd_ps(_mm256_mul_ps(half, accumulated),
                                                  _mm256_mul_ps(inverse_root, inverse_root), three_halves));
    _mm256_storeu_ps(acc, _mm256_fmadd_ps(g, g, accumulated));
    return _mm256_fnmadd_ps(_mm256_mul_ps(rates, g), inverse_root, value);
}

/* The index is a ptrdiff_t: with an int, every iteration sign-extended it again for each address
   (7 of the loop's 22 instructions). */
static FASTRANK_TARGET_AVX2 inline __attribute__((always_inline)) void fastrank_adagrad_loop_avx2(
        float* FASTRANK_RESTRICT row, float* FASTRANK_RESTRICT acc, const float* FASTRANK_RESTRICT gradient,
        float weight, float alpha, float rate, int n, const int with_l2) {
    const __m256 weights = _mm256_set1_ps(weight), alphas = _mm256_set1_ps(alpha);
    const __m256 rates = _mm256_set1_ps(rate);
    ptrdiff_t c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256 value = _mm256_loadu_ps(row + c);
        __m256 g = with_l2 ? _mm256_fmadd_ps(weights, _mm256_loadu_ps(gradient + c), _mm256_mul_ps(alphas, value))
                           : _mm256_mul_ps(weights, _mm256_loadu_ps(gradient + c));
        _mm256_storeu_ps(row + c, fastrank_adagrad_step_avx2(value, g, acc + c, rates));
    }
    if (c < n)
        fastrank_adagrad_row_base(row + c, acc + c, gradient + c, weight, alpha, rate, (int)(n - c));
}

/* The pairwise step of FASTRANK_DEFINE_PAIRWISE_ADAGRAD with AVX2: each vector of coordinates
   goes through exactly the operations of the user's pairwise gradient and the three
   fastrank_adagrad_loop_avx2 updates (a multiply by the user's weight 1 is exact, so it is left
   out), and the last n % 8 through the same base loops, so a step gives the same bits either way. */
static FASTRANK_TARGET_AVX2 inline __attribute__((always_inline)) void fastrank_pairwise_adagrad_loop_avx2(
        float* FASTRANK_RESTRICT user, float* FASTRANK_RESTRICT user_acc, float* FASTRANK_RESTRICT positive,
        float* FASTRANK_RESTRICT positive_acc, float* FASTRANK_RESTRICT negative,
        float* FASTRANK_RESTRICT negative_acc, float loss, float user_alpha, float item_alpha, float rate, int n,
        const int with_l2) {
    const __m256 losses = _mm256_set1_ps(loss), negated_losses = _mm256_set1_ps(-loss);
    const __m256 user_alphas = _mm256_set1_ps(user_alpha), item_alphas = _mm256_set1_ps(item_alpha);
    const __m256 rates = _mm256_set1_ps(rate);
    float user_gradient[8];
    ptrdiff_t c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256 u = _mm256_loadu_ps(user + c), p = _mm256_loadu_ps(positive + c), q = _mm256_loadu_ps(negative + c);
        __m256 gu = _mm256_mul_ps(losses, _mm256_sub_ps(q, p));
        __m256 gp = with_l2 ? _mm256_fmadd_ps(negated_losses, u, _mm256_mul_ps(item_alphas, p))
                            : _mm256_mul_ps(negated_losses, u);
        __m256 gq = with_l2 ? _mm256_fmadd_ps(losses, u, _mm256_mul_ps(item_alphas, q)) : _mm256_mul_ps(losses, u);
        if (with_l2)
            gu = _mm256_add_ps(gu, _mm256_mul_ps(user_alphas, u));
        _mm256_storeu_ps(positive + c, fastrank_adagrad_step_avx2(p, gp, positive_acc + c, rates));
        _mm256_storeu_ps(negative + c, fastrank_adagrad_step_avx2(q, gq, negative_acc + c, rates));
        _mm256_storeu_ps(user + c, fastrank_adagrad_step_avx2(u, gu, user_acc + c, rates));
    }
    if (c < n) {
        fastrank_user_pairwise_gradient_base(loss, positive + c, negative + c, user_gradient, (int)(n - c));
        fastrank_adagrad_row_base(positive + c, positive_acc + c, user + c, -loss, item_alpha, rate, (int)(n - c));
        fastrank_adagrad_row_base(negative + c, negative_acc + c, user + c, loss, item_alpha, rate, (int)(n - c));
        fastrank_adagrad_row_base(user + c, user_acc + c, user_gradient, 1.0f, user_alpha, rate, (int)(n - c));
    }
}

static FASTRANK_TARGET_AVX2 void fastrank_pairwise_adagrad_avx2(
        float* FASTRANK_RESTRICT user, float* FASTRANK_RESTRICT user_acc, float* FASTRANK_RESTRICT positive,
        float* FASTRANK_RESTRICT positive_acc, float* FASTRANK_RESTRICT negative,
        float* FASTRANK_RESTRICT negative_acc, float loss, float user_alpha, float item_alpha, float rate, int n) {
    if (user_alpha == 0.0f && item_alpha == 0.0f)
        fastrank_pairwise_adagrad_loop_avx2(user, user_acc, positive, positive_acc, negative, negative_acc, loss,
                                            user_alpha, item_alpha, rate, n, 0);
    else
        fastrank_pairwise_adagrad_loop_avx2(user, user_acc, positive, positive_acc, negative, negative_acc, loss,
                                            user_alpha, item_alpha, rate, n, 1);
}

static FASTRANK_TARGET_AVX2 void fastrank_adagrad_row_avx2(
        float* FASTRANK_RESTRICT row, float* FASTRANK_RESTRICT acc, const float* FASTRANK_RESTRICT gradient,
        float weight, float alpha, float rate, int n) {
    if (alpha == 0.0f)
        fastrank_adagrad_loop_avx2(row, acc, gradient, weight, alpha, rate, n, 0);
    else
        fastrank_adagrad_loop_avx2(row, acc, gradient, weight, alpha, rate, n, 1);
}

FASTRANK_DEFINE_ADADELTA(fastrank_adadelta_row_avx2, FASTRANK_TARGET_AVX2)
FASTRANK_DEFINE_SGD(fastrank_sgd_row_avx2, FASTRANK_TARGET_AVX2)
FASTRANK_DEFINE_PAIRWISE(fastrank_user_pairwise_gradient_avx2, FASTRANK_TARGET_AVX2)
FASTRANK_DEFINE_PAIRWISE_SGD(fastrank_pairwise_sgd_avx2, FASTRANK_TARGET_AVX2)
FASTRANK_DEFINE_COUNT_BEFORE(fastrank_count_before_avx2, FASTRANK_TARGET_AVX2)

/* Six rows by two vectors of eight targets: twelve independent sums in registers, so the fused
   multiply-adds of one panel column overlap their latency; per column two target loads and six
   broadcasts feed twelve multiply-adds. */
static FASTRANK_TARGET_AVX2 void fastrank_score_tile_avx2(const float* queries, ptrdiff_t query_stride, int n_rows,
                                                          int width, const float* packed, int first_panel,
                                                          int last_panel, float* out, ptrdiff_t out_stride) {
    const float* q0 = queries;
    const float* q1 = queries + query_stride;
    const float* q2 = queries + 2 * query_stride;
    const float* q3 = queries + 3 * query_stride;
    const float* q4 = queries + 4 * query_stride;
    const float* q5 = queries + 5 * query_stride;
    int p, k;
    for (p = first_panel; p < last_panel; p++) {
        const float* panel = packed + (ptrdiff_t)p * width * FASTRANK_PANEL;
        float* row = out + (ptrdiff_t)p * FASTRANK_PANEL;
        __m256 s00 = _mm256_setzero_ps(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00;
        __m256 s30 = s00, s31 = s00, s40 = s00, s41 = s00, s50 = s00, s51 = s00;
        for (k = 0; k < width; k++) {
            __m256 low = _mm256_loadu_ps(panel + k * FASTRANK_PANEL);
            __m256 high = _mm256_loadu_ps(panel + k * FASTRANK_PANEL + 8);
            __m256 query;
#define FASTRANK_TILE_ROW_STEP(query_row, low_sum, high_sum)                                   \
            query = _mm256_broadcast_ss((query_row) + k);                                       \
            low_sum = _mm256_fmadd_ps(query, low, low_sum);                                     \
            high_sum = _mm256_fmadd_ps(query, high, high_sum);
            FASTRANK_TILE_ROW_STEP(q0, s00, s01)
            FASTRANK_TILE_ROW_STEP(q1, s10, s11)
            FASTRANK_TILE_ROW_STEP(q2, s20, s21)
            FASTRANK_TILE_ROW_STEP(q3, s30, s31)
            FASTRANK_TILE_ROW_STEP(q4, s40, s41)
            FASTRANK_TILE_ROW_STEP(q5, s50, s51)
#undef FASTRANK_TILE_ROW_STEP
        }
#define FASTRANK_STORE_TILE_ROW(r, low_sum, high_sum)                                         \
        if (n_rows > (r)) {                                                                     \
            _mm256_storeu_ps(row + (r) * out_stride, low_sum);                                  \
            _mm256_storeu_ps(row + (r) * out_stride + 8, high_sum);                             \
        }
        FASTRANK_STORE_TILE_ROW(0, s00, s01)
        FASTRANK_STORE_TILE_ROW(1, s10, s11)
        FASTRANK_STORE_TILE_ROW(2, s20, s21)
        FASTRANK_STORE_TILE_ROW(3, s30, s31)
        FASTRANK_STORE_TILE_ROW(4, s40, s41)
        FASTRANK_STORE_TILE_ROW(5, s50, s51)
#undef FASTRANK_STORE_TILE_ROW
    }
}

typedef int fastrank_int8 __attribute__((vector_size(32)));

/* Scores [start, stop) against four thresholds: the first `after` of them (whose items lie before
   `start`) count higher scores only, the others higher or equal ones (the tie rule, as in
   fastrank_count_before). A vector comparison is -1 where true, so subtracting counts. Always
   inlined with `after` a constant, so each span gets its own branch-free loop. */
static FASTRANK_TARGET_AVX2 inline __attribute__((always_inline)) void fastrank_count_span_avx2(
        const float* scores, int start, int stop, int after, const float* thresholds,
        fastrank_int8* counted, int* tail_counts) {
    const fastrank_float8 zero = {0};  /* zero + scalar: the scalar in every lane */
    fastrank_float8 t0 = zero + thresholds[0], t1 = zero + thresholds[1], t2 = zero + thresholds[2];
    fastrank_float8 t3 = zero + thresholds[3], v;
    int j = start, g;
    for (; j + 8 <= stop; j += 8) {
        memcpy(&v, scores + j, sizeof(v));
        counted[0] -= after > 0 ? (fastrank_int8)(v > t0) : (fastrank_int8)(v >= t0);
        counted[1] -= after > 1 ? (fastrank_int8)(v > t1) : (fastrank_int8)(v >= t1);
        counted[2] -= after > 2 ? (fastrank_int8)(v > t2) : (fastrank_int8)(v >= t2);
        counted[3] -= after > 3 ? (fastrank_int8)(v > t3) : (fastrank_int8)(v >= t3);
    }
    for (; j < stop; j++)
        for (g = 0; g < 4; g++)
            tail_counts[g] += g < after ? scores[j] > thresholds[g] : scores[j] >= thresholds[g];
}

/* Four thresholds per pass; a last group of fewer is padded with NaN thresholds, which no
   comparison counts, and items at `n` (empty spans). */
static FASTRANK_TARGET_AVX2 void fastrank_count_before_many_avx2(const float* scores, int n,
                                                                 const float* thresholds, const int* items,
                                                                 int m, int* counts) {
    int first, g, lane, size;
    for (first = 0; first < m; first += 4) {
        float group[4];
        int bound[4], tail_counts[4] = {0, 0, 0, 0};
        fastrank_int8 counted[4] = {{0}, {0}, {0}, {0}};
        size = m - first < 4 ? m - first : 4;
        for (g = 0; g < 4; g++) {
            group[g] = g < size ? thresholds[first + g] : NAN;
            bound[g] = g < size ? items[first + g] : n;
        }
        fastrank_count_span_avx2(scores, 0, bound[0], 0, group, counted, tail_counts);
        fastrank_count_span_avx2(scores, bound[0], bound[1], 1, group, counted, tail_counts);
        fastrank_count_span_avx2(scores, bound[1], bound[2], 2, group, counted, tail_counts);
        fastrank_count_span_avx2(scores, bound[2], bound[3], 3, group, counted, tail_counts);
        fastrank_count_span_avx2(scores, bound[3], n, 4, group, counted, tail_counts);
        for (g = 0; g < size; g++) {
            int total = tail_counts[g];
            for (lane = 0; lane < 8; lane++)
                total += counted[g][lane];
            counts[first + g] = total;
        }
    }
}
FASTRANK_DEFINE_WEIGHTED_SUM(fastrank_weighted_sum_avx2_any, FASTRANK_TARGET_AVX2)

/* The weighted feature sum with the partial sums of 32 columns held in four registers across all
   features of the row (no store/reload per feature); other widths take the generic loop. With a
   ``user`` vector it also returns the sum's score against it, taken from the registers instead of
   reloading ``out``, its lanes added in fastrank_dot_avx2's order (so the score equals
   dot(user, out) + bias); without one it returns the bias. Always inlined, so that each caller
   gets the loop without the branches on ``user``. */
static FASTRANK_TARGET_AVX2 inline __attribute__((always_inline)) float fastrank_feature_sum_avx2(
        float* FASTRANK_RESTRICT out, float* bias_out, const float* user, const float* embeddings,
        const float* biases, const fastrank_feature_entry* entries, int count, int n) {
    fastrank_float8 low = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}, high = low, u0, u1, u2, u3;
    int c0, f;
    float bias = 0.0f;
    if (n % 32 != 0 || count == 0) {
        bias = fastrank_weighted_sum_avx2_any(out, embeddings, biases, entries, count, n);
        *bias_out = bias;
        return user == NULL ? bias : fastrank_dot_avx2(user, out, n) + bias;
    }
    for (c0 = 0; c0 < n; c0 += 32) {
        const float* source = embeddings + (ptrdiff_t)entries[0].feature * n + c0;
        __m256 weight = _mm256_set1_ps(entries[0].weight);
        __m256 s0 = _mm256_mul_ps(weight, _mm256_loadu_ps(source));
        __m256 s1 = _mm256_mul_ps(weight, _mm256_loadu_ps(source + 8));
        __m256 s2 = _mm256_mul_ps(weight, _mm256_loadu_ps(source + 16));
        __m256 s3 = _mm256_mul_ps(weight, _mm256_loadu_ps(source + 24));
#define FASTRANK_ADD_FEATURE_COLUMNS                                                            \
        source = embeddings + (ptrdiff_t)entries[f].feature * n + c0;                          \
        weight = _mm256_set1_ps(entries[f].weight);                                            \
        s0 = _mm256_fmadd_ps(weight, _mm256_loadu_ps(source), s0);                             \
        s1 = _mm256_fmadd_ps(weight, _mm256_loadu_ps(source + 8), s1);                         \
        s2 = _mm256_fmadd_ps(weight, _mm256_loadu_ps(source + 16), s2);                        \
        s3 = _mm256_fmadd_ps(weight, _mm256_loadu_ps(source + 24), s3);
        /* The first block of columns also sums the biases, from the entries it has just read
           (a loop of their own after the columns was a sixth of a feature sum's instructions).
           Same order of features, each added with one explicit fused multiply-add; trained
           values can differ from builds before this in the last bits. */
        if (c0 == 0) {
            bias = fmaf(entries[0].weight, biases[entries[0].feature], bias);
            for (f = 1; f < count; f++) {
                FASTRANK_ADD_FEATURE_COLUMNS
                bias = fmaf(entries[f].weight, biases[entries[f].feature], bias);
            }
        } else {
            for (f = 1; f < count; f++) {
                FASTRANK_ADD_FEATURE_COLUMNS
            }
        }
#undef FASTRANK_ADD_FEATURE_COLUMNS
        _mm256_storeu_ps(out + c0, s0);
        _mm256_storeu_ps(out + c0 + 8, s1);
        _mm256_storeu_ps(out + c0 + 16, s2);
        _mm256_storeu_ps(out + c0 + 24, s3);
        if (user != NULL) {
            memcpy(&u0, user + c0, sizeof(u0));
            memcpy(&u1, user + c0 + 8, sizeof(u1));
            memcpy(&u2, user + c0 + 16, sizeof(u2));
            memcpy(&u3, user + c0 + 24, sizeof(u3));
            low += u0 * (fastrank_float8)s0;
            high += u1 * (fastrank_float8)s1;
            low += u2 * (fastrank_float8)s2;
            high += u3 * (fastrank_float8)s3;
        }
    }
    *bias_out = bias;
    return user == NULL ? bias : fastrank_lanes_total(low + high) + bias;
}

static FASTRANK_TARGET_AVX2 float fastrank_weighted_sum_avx2(
        float* FASTRANK_RESTRICT out, const float* embeddings, const float* biases,
        const fastrank_feature_entry* entries, int count, int n) {
    float bias;
    return fastrank_feature_sum_avx2(out, &bias, NULL, embeddings, biases, entries, count, n);
}

static FASTRANK_TARGET_AVX2 float fastrank_weighted_score_avx2(
        float* FASTRANK_RESTRICT out, float* bias_out, const float* user, const float* embeddings,
        const float* biases, const fastrank_feature_entry* entries, int count, int n) {
    return fastrank_feature_sum_avx2(out, bias_out, user, embeddings, biases, entries, count, n);
}

/* Set once at module import (under the GIL), read by every thread afterwards. */
static int fastrank_use_avx2 = 0;

static void fastrank_detect_cpu(int allow_avx2) {
    __builtin_cpu_init();
    fastrank_use_avx2 = allow_avx2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#define FASTRANK_DISPATCH(function, ...) \
    (fastrank_use_avx2 ? function##_avx2(__VA_ARGS__) : function##_base(__VA_ARGS__))
#else
static int fastrank_use_avx2 = 0;
static void fastrank_detect_cpu(int allow_avx2) { (void)allow_avx2; }
#define FASTRANK_DISPATCH(function, ...) function##_base(__VA_ARGS__)
#endif

static inline float fastrank_dot(const float* a, const float* b, int n) {
    return FASTRANK_DISPATCH(fastrank_dot, a, b, n);
}

static inline void fastrank_score_rows(const float* user, const float* embeddings, const float* biases,
                                       ptrdiff_t bias_stride, const int* ids, int count, int n, float* scores) {
    FASTRANK_DISPATCH(fastrank_score_rows, user, embeddings, biases, bias_stride, ids, count, n, scores);
}

static inline void fastrank_adagrad_row(float* row, float* acc, const float* gradient, float weight,
                                        float alpha, float rate, int n) {
    FASTRANK_DISPATCH(fastrank_adagrad_row, row, acc, gradient, weight, alpha, rate, n);
}

static inline void fastrank_adadelta_row(float* row, float* acc, float* momentum, const float* gradient,
                                         float weight, float alpha, float rho, float eps, int n) {
    FASTRANK_DISPATCH(fastrank_adadelta_row, row, acc, momentum, gradient, weight, alpha, rho, eps, n);
}

static inline void fastrank_sgd_row(float* row, const float* gradient, float weight, float alpha, float rate,
                                    int n) {
    FASTRANK_DISPATCH(fastrank_sgd_row, row, gradient, weight, alpha, rate, n);
}

static inline void fastrank_user_pairwise_gradient(float loss, const float* positive, const float* negative,
                                                   float* user_gradient, int n) {
    FASTRANK_DISPATCH(fastrank_user_pairwise_gradient, loss, positive, negative, user_gradient, n);
}

static inline void fastrank_pairwise_adagrad(float* user, float* user_acc, float* positive, float* positive_acc,
                                             float* negative, float* negative_acc, float loss, float user_alpha,
                                             float item_alpha, float rate, int n) {
    FASTRANK_DISPATCH(fastrank_pairwise_adagrad, user, user_acc, positive, positive_acc, negative, negative_acc, loss,
                      user_alpha, item_alpha, rate, n);
}

static inline void fastrank_pairwise_sgd(float* user, float* positive, float* negative, float loss, float user_alpha,
                                         float item_alpha, float rate, int n) {
    FASTRANK_DISPATCH(fastrank_pairwise_sgd, user, positive, negative, loss, user_alpha, item_alpha, rate, n);
}

static inline int fastrank_count_before(const float* scores, int n, float threshold, int item, int limit) {
    return FASTRANK_DISPATCH(fastrank_count_before, scores, n, threshold, item, limit);
}

static inline void fastrank_score_tile(const float* queries, ptrdiff_t query_stride, int n_rows, int width,
                                       const float* packed, int first_panel, int last_panel, float* out,
                                       ptrdiff_t out_stride) {
    FASTRANK_DISPATCH(fastrank_score_tile, queries, query_stride, n_rows, width, packed, first_panel, last_panel,
                      out, out_stride);
}

static inline void fastrank_count_before_many(const float* scores, int n, const float* thresholds,
                                              const int* items, int m, int* counts) {
    FASTRANK_DISPATCH(fastrank_count_before_many, scores, n, thresholds, items, m, counts);
}

static inline float fastrank_weighted_sum(float* out, const float* embeddings, const float* biases,
                                          const fastrank_feature_entry* entries, int count, int n) {
    return FASTRANK_DISPATCH(fastrank_weighted_sum, out, embeddings, biases, entries, count, n);
}

static inline float fastrank_weighted_score(float* out, float* bias_out, const float* user,
                                            const float* embeddings, const float* biases,
                                            const fastrank_feature_entry* entries, int count, int n) {
    return FASTRANK_DISPATCH(fastrank_weighted_score, out, bias_out, user, embeddings, biases, entries, count, n);
}

static int fastrank_simd_level(void) { return fastrank_use_avx2 ? 2 : 1; }

#endif /* FASTRANK_SIMD_H */
