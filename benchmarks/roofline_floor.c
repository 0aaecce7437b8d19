/* Roofline-style floor for one fastrank training epoch (compiled and loaded by roofline.py).
 *
 * Each function performs, for every training positive, exactly the dot products and adagrad row
 * updates that the corresponding fastrank loss performs -- and nothing else: no sampling, no
 * rejection of positive negatives, no branching on the loss, no Python. The rows to touch come
 * from index arrays generated beforehand in numpy, so the caller decides the access pattern
 * (random rows in epoch order, sequential rows, or a cache-resident handful) and thereby
 * separates memory latency from arithmetic.
 *
 * The arithmetic is fastrank's own: this file includes fastrank/_simd.h and calls its dot
 * product and adagrad row update (g = coefficient * source[c]; row[c] -= lr * g / sqrt(acc[c]);
 * acc[c] += g * g), with the same runtime choice of AVX2+FMA or the portable baseline. Gradients are fused into the
 * row updates (one pass per row, no gradient buffers except the user's, which must be formed
 * before the item rows move), so this is a lower bound on fastrank's arithmetic and traffic.
 * Item biases get the same scalar adagrad step as in fastrank (BPR/WARP: both items; logistic:
 * the user and the item).
 *
 * Build: cc -O3 -shared -fPIC -I fastrank -o roofline_floor.so roofline_floor.c -lm
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* fastrank's own inner loops (dot product, adagrad row update, runtime AVX2+FMA dispatch), so the
   floor does exactly fastrank's arithmetic. */
#include "_simd.h"

#define FLOOR_MAX_COMPONENTS 4096
#define FLOOR_PREFETCH(address) __builtin_prefetch((const void*)(address))

/* Choose the inner loops as fastrank does at import; returns 2 for AVX2+FMA, 1 for baseline. */
int floor_simd_level(void) {
    fastrank_detect_cpu(1);
    return fastrank_simd_level();
}

int floor_max_components(void) { return FLOOR_MAX_COMPONENTS; }

static inline void prefetch_row(const float* row, int n) {
    int c;
    for (c = 0; c < n; c += 16)
        FLOOR_PREFETCH(row + c);
}

/* Prefetch what an adagrad step on parameter row `index` touches: its embedding row and accumulator
   row, and its bias and bias accumulator when `biases` is not NULL. */
static inline void prefetch_parameters(const float* rows, const float* accumulators, const float* biases,
                                       const float* bias_accumulators, int32_t index, int d) {
    prefetch_row(rows + (size_t)index * d, d);
    prefetch_row(accumulators + (size_t)index * d, d);
    if (biases != NULL) {
        FLOOR_PREFETCH(biases + index);
        FLOOR_PREFETCH(bias_accumulators + index);
    }
}

#define floor_dot(a, b, n) fastrank_dot((a), (b), (n))

/* row -= lr * g / sqrt(acc); acc += g * g, with g = coefficient * source[c] */
static inline void floor_adagrad(float* row, float* acc, const float* source, float coefficient, float lr, int n) {
    fastrank_adagrad_row(row, acc, source, coefficient, 0.0f, lr, n);
}

static inline void floor_adagrad_scalar(float* value, float* acc, float g, float lr) {
    float accumulated = *acc;
    *value -= lr * g / sqrtf(accumulated);
    *acc = accumulated + g * g;
}

static inline float floor_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* One pairwise (BPR/WARP) step on rows u (user), p (positive), q (negative) with loss weight
   `loss`: gradients of loss * (score(q) - score(p)), the user's formed before anything moves. */
static inline void pairwise_step(float* u, float* ua, float* p, float* pa, float* q, float* qa, float* pb,
                                 float* pba, float* qb, float* qba, float loss, float lr, int d, float* gu) {
    int c;
    for (c = 0; c < d; c++)
        gu[c] = loss * (q[c] - p[c]);
    floor_adagrad(p, pa, u, -loss, lr, d);
    floor_adagrad(q, qa, u, loss, lr, d);
    floor_adagrad(u, ua, gu, 1.0f, lr, d);
    floor_adagrad_scalar(pb, pba, -loss, lr);
    floor_adagrad_scalar(qb, qba, loss, lr);
}

/* BPR: per positive 2 dots (user . positive, user . negative), 3 row updates, 2 bias updates.
   `prefetch` > 0 prefetches the rows of the example that many positions ahead (0: none). */
double floor_bpr(const int32_t* users, const int32_t* positives, const int32_t* negatives, int64_t n,
                 float* ue, float* ua, float* ie, float* ia, float* ib, float* iba, int d, float lr,
                 int prefetch) {
    float gu[FLOOR_MAX_COMPONENTS];
    double total = 0.0;
    int64_t k;
    if (d > FLOOR_MAX_COMPONENTS)
        return NAN;
    for (k = 0; k < n; k++) {
        size_t u = (size_t)users[k] * d, p = (size_t)positives[k] * d, q = (size_t)negatives[k] * d;
        float xp, xq, loss;
        if (prefetch > 0 && k + prefetch < n) {
            prefetch_parameters(ue, ua, NULL, NULL, users[k + prefetch], d);
            prefetch_parameters(ie, ia, ib, iba, positives[k + prefetch], d);
            prefetch_parameters(ie, ia, ib, iba, negatives[k + prefetch], d);
        }
        xp = floor_dot(ue + u, ie + p, d) + ib[positives[k]];
        xq = floor_dot(ue + u, ie + q, d) + ib[negatives[k]];
        loss = floor_sigmoid(xq - xp);
        pairwise_step(ue + u, ua + u, ie + p, ia + p, ie + q, ia + q, ib + positives[k], iba + positives[k],
                      ib + negatives[k], iba + negatives[k], loss, lr, d, gu);
        total += loss;
    }
    return total;
}

/* Logistic (all entries positive): per positive 1 dot, 2 row updates (user, item), 2 bias updates. */
double floor_logistic(const int32_t* users, const int32_t* items, int64_t n, float* ue, float* ua,
                      float* ub, float* uba, float* ie, float* ia, float* ib, float* iba, int d, float lr,
                      int prefetch) {
    float gu[FLOOR_MAX_COMPONENTS];
    double total = 0.0;
    int64_t k;
    int c;
    if (d > FLOOR_MAX_COMPONENTS)
        return NAN;
    for (k = 0; k < n; k++) {
        int32_t user = users[k], item = items[k];
        size_t u = (size_t)user * d, i = (size_t)item * d;
        float loss;
        if (prefetch > 0 && k + prefetch < n) {
            prefetch_parameters(ue, ua, ub, uba, users[k + prefetch], d);
            prefetch_parameters(ie, ia, ib, iba, items[k + prefetch], d);
        }
        loss = floor_sigmoid(floor_dot(ue + u, ie + i, d) + ub[user] + ib[item]) - 1.0f;
        for (c = 0; c < d; c++)
            gu[c] = loss * ie[i + c];
        floor_adagrad(ie + i, ia + i, ue + u, loss, lr, d);
        floor_adagrad(ue + u, ua + u, gu, 1.0f, lr, d);
        floor_adagrad_scalar(ub + user, uba + user, loss, lr);
        floor_adagrad_scalar(ib + item, iba + item, loss, lr);
        total += loss;
    }
    return total;
}

/* WARP with a precomputed schedule: positive k scores its positive (1 dot) and counts[k]
   negatives taken in order from `negatives` (counts[k] dots); when violators[k] >= 0 (it is then
   the last of those negatives) a pairwise step with weight coefficient[k] follows on it (3 row
   updates, 2 bias updates). The schedule comes from fastrank's measured draws per positive;
   scores are summed (so no dot can be optimised away) but never compared. Candidates are
   prefetched like fastrank does (embedding row and bias), plus the accumulator row of the
   example's violator. */
double floor_warp(const int32_t* users, const int32_t* positives, const int32_t* negatives,
                  const int32_t* counts, const int32_t* violators, const float* coefficient, int64_t n,
                  int64_t n_negatives, float* ue, float* ua, float* ie, float* ia, float* ib, float* iba,
                  int d, float lr, int prefetch) {
    float gu[FLOOR_MAX_COMPONENTS];
    double total = 0.0;
    int64_t k, cursor = 0;
    int j;
    if (d > FLOOR_MAX_COMPONENTS)
        return NAN;
    for (k = 0; k < n; k++) {
        size_t u = (size_t)users[k] * d, p = (size_t)positives[k] * d;
        int count = counts[k];
        int32_t violator = violators[k];
        if (prefetch > 0 && k + prefetch < n) {
            int32_t fv = violators[k + prefetch];
            prefetch_parameters(ue, ua, NULL, NULL, users[k + prefetch], d);
            prefetch_parameters(ie, ia, ib, iba, positives[k + prefetch], d);
            if (fv >= 0) {
                prefetch_row(ia + (size_t)fv * d, d);
                FLOOR_PREFETCH(iba + fv);
            }
        }
        total += floor_dot(ue + u, ie + p, d) + ib[positives[k]];
        for (j = 0; j < count; j++) {
            int64_t at = cursor + j;
            int32_t q = negatives[at];
            if (prefetch > 0 && at + prefetch < n_negatives) {
                int32_t fq = negatives[at + prefetch];
                prefetch_row(ie + (size_t)fq * d, d);
                FLOOR_PREFETCH(ib + fq);
            }
            total += floor_dot(ue + u, ie + (size_t)q * d, d) + ib[q];
        }
        cursor += count;
        if (violator >= 0) {
            size_t q = (size_t)violator * d;
            pairwise_step(ue + u, ua + u, ie + p, ia + p, ie + q, ia + q, ib + positives[k], iba + positives[k],
                          ib + violator, iba + violator, coefficient[k], lr, d, gu);
        }
    }
    return total;
}
