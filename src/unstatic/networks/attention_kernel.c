/* Attention for CPU inference, one block of queries at a time: softmax(q k^T) v (Vaswani et al. 2017, Eq. 1),
 * with the block's scores kept in a per-thread scratch buffer that stays in the L1/L2 cache.
 *
 * Built at first use by unstatic/networks/cpu_kernel.py with the machine's compiler (gcc -O3 -march=native
 * -fopenmp). Plain C with GCC/Clang vector types, no intrinsics: it builds for any CPU, and the compiler maps
 * the 8-float vectors onto AVX2/AVX-512 registers (or pairs of SSE/NEON ones).
 *
 * Layout (the Python side prepares it; every length is padded so that no loop here has a tail):
 *   q   [G, Np, d]   queries, already multiplied by log2(e)/sqrt(d): the scores come out in log2 units and the
 *                    exponential is exp2 (the same softmax, Eq. 1, in base 2)
 *   kt  [G, d, Mp]   keys, transposed;  vt [G, d, Mp]   values, transposed (rows of Mp key positions)
 *   out [G, Np, d], or with heads > 1 [G / heads, Np, heads, d]: the layout the attention's output projection
 *                    reads ([batch, tokens, heads * d]), written in place of a transposing copy afterwards
 * Np is a multiple of ROWS, Mp of 2 * VL and d of 2; key positions M..Mp-1 are padding (zeros in kt and vt).
 *
 * Why it beats PyTorch's fused CPU kernel on the narrow heads of diffusion U-Nets (head dim up to 16): ROWS queries
 * share every key and value load, the softmax runs on rows that are still in cache, and the exponential is a
 * short polynomial on whole vectors.
 */
#include <stdlib.h>
#include <string.h>

#include "vector_math.h"

#define ROWS 4 /* queries per block: 2 x ROWS vector accumulators, few enough for the 16 registers of AVX2 */

/* The scratch rows are aligned to 64 bytes and Mp is a multiple of 2 * VL: whole-vector accesses, never split. */
static inline vf load_scratch(const float *p) { return *(const vf *)p; }
static inline void store_scratch(float *p, vf v) { *(vf *)p = v; }

/* Scores of ROWS queries (rows q_stride apart) against all Mp keys, s[r][j] = sum_c q[r][c] kt[c][j], and each
 * row's maximum over the M real keys (taken while the scores are still in registers). */
static void scores(const float *restrict q, const float *restrict kt, float *restrict s, float *restrict max,
                   long d, long M, long Mp, long q_stride)
{
    vf lane_max[ROWS];
    for (int r = 0; r < ROWS; ++r)
        lane_max[r] = splat(-1e30f);
    for (long j = 0; j < Mp; j += 2 * VL) {
        vf acc[ROWS][2] = {{{0}}};
        for (long c = 0; c < d; ++c) {
            const vf k0 = load(kt + c * Mp + j), k1 = load(kt + c * Mp + j + VL);
            for (int r = 0; r < ROWS; ++r) {
                const vf qrc = splat(q[r * q_stride + c]);
                acc[r][0] += qrc * k0;
                acc[r][1] += qrc * k1;
            }
        }
        for (int r = 0; r < ROWS; ++r) {
            store_scratch(s + r * Mp + j, acc[r][0]);
            store_scratch(s + r * Mp + j + VL, acc[r][1]);
            if (j + 2 * VL <= M)
                lane_max[r] = vmax(lane_max[r], vmax(acc[r][0], acc[r][1]));
        }
    }
    for (int r = 0; r < ROWS; ++r) {
        for (long j = M; j < Mp; ++j) /* padding keys: nothing after the exponential */
            s[r * Mp + j] = -1e30f;
        max[r] = lane_max[r][0];
        for (int w = 1; w < VL; ++w)
            max[r] = lane_max[r][w] > max[r] ? lane_max[r][w] : max[r];
        for (long j = M / (2 * VL) * (2 * VL); j < M; ++j) /* the real keys of a partly padded last chunk */
            max[r] = s[r * Mp + j] > max[r] ? s[r * Mp + j] : max[r];
    }
}

/* In place: s <- 2^(s - max) along one row of Mp scores; returns 1 / the row's sum. */
static float exp2_row(float *restrict s, float max, long Mp)
{
    vf lane_sum = {0};
    for (long j = 0; j < Mp; j += VL) {
        const vf e = exp2_nonpositive(load_scratch(s + j) - max);
        store_scratch(s + j, e);
        lane_sum += e;
    }
    return 1.0f / hsum(lane_sum);
}

/* out[r][c] = inv_sum[r] * sum_j p[r][j] vt[c][j] for ROWS rows of unnormalised probabilities p, two value
 * channels at a time (each probability load then feeds two multiply-adds); out's rows are out_stride apart. */
static void values(const float *restrict p, const float *restrict vt, const float *restrict inv_sum,
                   float *restrict out, long d, long Mp, long out_stride)
{
    for (long c = 0; c < d; c += 2) {
        const float *restrict v0 = vt + c * Mp, *restrict v1 = v0 + Mp;
        vf acc[ROWS][2] = {{{0}}};
        for (long j = 0; j < Mp; j += VL) {
            const vf a = load(v0 + j), b = load(v1 + j);
            for (int r = 0; r < ROWS; ++r) {
                const vf prob = load_scratch(p + r * Mp + j);
                acc[r][0] += prob * a;
                acc[r][1] += prob * b;
            }
        }
        for (int r = 0; r < ROWS; ++r) {
            out[r * out_stride + c] = hsum(acc[r][0]) * inv_sum[r];
            out[r * out_stride + c + 1] = hsum(acc[r][1]) * inv_sum[r];
        }
    }
}

/* The padding the caller must apply: queries to a multiple of rows(), keys to a multiple of keys(), head
 * dimension to a multiple of 2. */
int unstatic_attention_rows(void) { return ROWS; }
int unstatic_attention_keys(void) { return 2 * VL; }

/* Returns 0, or 1 when a thread's scratch buffer could not be allocated (the caller then falls back).
 * row_max and row_inv_sum ([G, Np]) may be NULL; where given they receive each query row's score maximum and
 * 1 / its sum of exponentials, which the backward pass needs to recompute the probabilities. heads: 1 for out
 * [G, Np, d], else the number of heads folded into G (batch-major) for out [G / heads, Np, heads, d]. */
int unstatic_attention(const float *q, const float *kt, const float *vt, float *out, float *row_max,
                       float *row_inv_sum, long G, long Np, long M, long Mp, long d, long heads, int threads)
{
    const long out_stride = heads * d; /* between one query's output row and the next */
    const long blocks = Np / ROWS;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *s = aligned_alloc(64, sizeof(float) * ROWS * Mp); /* a multiple of 64 bytes, as C11 asks */
        failed = s == NULL;
#pragma omp for schedule(static)
        for (long t = 0; t < G * blocks; ++t) {
            if (s == NULL)
                continue;
            const long g = t / blocks, n0 = (t % blocks) * ROWS;
            float max[ROWS], inv_sum[ROWS];
            scores(q + (g * Np + n0) * d, kt + g * d * Mp, s, max, d, M, Mp, d);
            for (int r = 0; r < ROWS; ++r)
                inv_sum[r] = exp2_row(s + r * Mp, max[r], Mp);
            float *o = out + ((g / heads) * Np + n0) * out_stride + (g % heads) * d;
            values(s, vt + g * d * Mp, inv_sum, o, d, Mp, out_stride);
            if (row_max != NULL)
                for (int r = 0; r < ROWS; ++r) {
                    row_max[g * Np + n0 + r] = max[r];
                    row_inv_sum[g * Np + n0 + r] = inv_sum[r];
                }
        }
        free(s);
    }
    return failed;
}

/* The gradients of one block of ROWS queries, from probabilities p recomputed out of the forward pass's row
 * maxima and sums (as FlashAttention does: Dao et al. 2022, Sec. 3.1 and Appendix B.4):
 *   dp = dout v^T,  D_r = dout_r . out_r,  ds = p * (dp - D)   (softmax backward; ds is the gradient of the
 *   natural-unit scores), and in the transposed layout: dvt[c][j] += sum_r p[r][j] dout[r][c],
 *   dkt[c][j] += sum_r ds[r][j] q[r][c],  dq[r][c] = sum_j ds[r][j] kt[c][j].
 * s holds the block's scores on entry and ds on return; dp is scratch. The rows of out, dout and dq are
 * stride apart (q's are d apart). */
static void block_backward(const float *restrict q, const float *restrict kt, const float *restrict vt,
                           const float *restrict out, const float *restrict dout, const float *restrict max,
                           const float *restrict inv_sum, float *restrict s, float *restrict dp,
                           float *restrict dq, float *restrict dkt, float *restrict dvt, long d, long M, long Mp,
                           long stride)
{
    float unused[ROWS], delta[ROWS], ones[ROWS];
    scores(dout, vt, dp, unused, d, M, Mp, stride);
    for (int r = 0; r < ROWS; ++r) {
        float total = 0.0f;
        for (long c = 0; c < d; ++c)
            total += dout[r * stride + c] * out[r * stride + c];
        delta[r] = total;
        ones[r] = 1.0f;
    }
    for (long j = 0; j < Mp; j += VL) {
        vf p[ROWS], ds[ROWS];
        for (int r = 0; r < ROWS; ++r) {
            p[r] = exp2_nonpositive(load_scratch(s + r * Mp + j) - max[r]) * inv_sum[r];
            ds[r] = p[r] * (load_scratch(dp + r * Mp + j) - delta[r]);
            store_scratch(s + r * Mp + j, ds[r]);
        }
        for (long c = 0; c < d; ++c) {
            vf dv = load(dvt + c * Mp + j), dk = load(dkt + c * Mp + j);
            for (int r = 0; r < ROWS; ++r) {
                dv += p[r] * dout[r * stride + c];
                dk += ds[r] * q[r * d + c];
            }
            store(dvt + c * Mp + j, dv);
            store(dkt + c * Mp + j, dk);
        }
    }
    values(s, kt, ones, dq, d, Mp, stride);
}

/* The backward pass of unstatic_attention, in its layout: out, dout and dq as its out (heads as there), dkt,
 * dvt [G, d, Mp], which the caller zeroes (they are accumulated). q is the scaled query of the forward pass, so
 * dkt comes out multiplied by log2(e) and dq lacks the 1/sqrt(d): the caller rescales. Each thread owns whole
 * heads (g), so the key and value gradients need no synchronisation. Returns 0, or 1 when scratch could not be
 * allocated. */
int unstatic_attention_backward(const float *q, const float *kt, const float *vt, const float *out,
                                const float *dout, const float *row_max, const float *row_inv_sum, float *dq,
                                float *dkt, float *dvt, long G, long Np, long M, long Mp, long d, long heads,
                                int threads)
{
    const long stride = heads * d;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *s = aligned_alloc(64, sizeof(float) * ROWS * Mp), *dp = aligned_alloc(64, sizeof(float) * ROWS * Mp);
        failed = s == NULL || dp == NULL;
#pragma omp for schedule(static)
        for (long g = 0; g < G; ++g) {
            if (s == NULL || dp == NULL)
                continue;
            for (long n0 = 0; n0 < Np; n0 += ROWS) {
                const long row = g * Np + n0;
                const long at = ((g / heads) * Np + n0) * stride + (g % heads) * d; /* out, dout, dq */
                float unused[ROWS];
                scores(q + row * d, kt + g * d * Mp, s, unused, d, M, Mp, d);
                block_backward(q + row * d, kt + g * d * Mp, vt + g * d * Mp, out + at, dout + at, row_max + row,
                               row_inv_sum + row, s, dp, dq + at, dkt + g * d * Mp, dvt + g * d * Mp, d, M, Mp,
                               stride);
            }
        }
        free(s);
        free(dp);
    }
    return failed;
}
