/* Group normalisation of channels-last maps, optionally followed by SiLU, forward and backward
 * (Wu & He 2018, "Group Normalization", Eq. 1-3; SiLU: Elfwing et al. 2018, x * sigmoid(x)).
 *
 * Built at first use by unstatic/networks/cpu_kernel.py, with attention_kernel.c, into one library.
 *
 * Layout: x, y, dy, dx are [B, P, C] (batch, pixels, channels: a channels-last [B, C, H, W] map, P = H * W);
 * the G groups are runs of C / G neighbouring channels; C is a multiple of VL (the Python side checks).
 * mean and rstd are [B, G]: each group's mean and 1 / sqrt(biased variance + eps), as PyTorch's GroupNorm keeps.
 *
 * Why: PyTorch's CPU GroupNorm backward on channels-last maps is ~13x slower than on NCHW ones (12 vs 0.9 ms for
 * 32 x 32 x 32 x 32 here), which made channels-last training lose what its faster convolutions win. Here every
 * pass walks the map row by row with per-channel vectors, and SiLU rides along instead of taking passes of its own.
 *
 * Sums run in float over blocks of FLUSH pixels and are carried in double, the variance is summed around the mean
 * in a second pass: float32-exact statistics without Welford's divisions.
 */
#include <math.h>
#include <stdlib.h>

#include "vector_math.h"

#define FLUSH 64 /* pixels summed in float before the block's sum joins the double total */

/* sigmoid(h) = 1 / (1 + e^-h), from 2^(-|h| log2 e) so that the exponential never overflows. */
static inline vf sigmoid(vf h)
{
    const vi negative = h < 0;
    const vf magnitude = (vf)((vi)h & 0x7fffffff); /* |h|: the sign bit cleared */
    const vf e = exp2_nonpositive(magnitude * -1.44269504f);
    const vf positive_side = 1.0f / (1.0f + e);
    return (vf)(((vi)(e * positive_side) & negative) | ((vi)positive_side & ~negative));
}

/* Pixels [p0, p1) of one sample: total[c] += sum_p f(x[p][c]), f the identity (center == NULL) or the squared
 * deviation from center[c]. Summed in float over blocks of FLUSH pixels, carried in double; the identity sums
 * x - x[p0] and adds (p1 - p0) x[p0] back in double, so that a constant channel's sum is exact, as its mean must
 * be (else 1 / sqrt(eps) times the mean's rounding shows up in the output: a fully masked image makes such maps). */
static void channel_sums(const float *restrict x, const float *restrict center, double *restrict total, long p0,
                         long p1, long C)
{
    float block[C] __attribute__((aligned(64)));
    const float *shift = center != NULL ? center : x + p0 * C;
    for (long p = p0; p < p1; p += FLUSH) {
        const long end = p + FLUSH < p1 ? p + FLUSH : p1;
        for (long c = 0; c < C; c += VL)
            store(block + c, (vf){0});
        for (long q = p; q < end; ++q)
            for (long c = 0; c < C; c += VL) {
                vf v = load(x + q * C + c) - load(shift + c);
                if (center != NULL)
                    v *= v;
                store(block + c, load(block + c) + v);
            }
        for (long c = 0; c < C; ++c)
            total[c] += block[c];
    }
    if (center == NULL)
        for (long c = 0; c < C; ++c)
            total[c] += (double)(p1 - p0) * shift[c];
}

/* Per-channel sums of x (or of its squared deviations from the per-sample channel centers [B, C]) into
 * sums [B, C], each sample's pixels split into `chunks` parts so that a batch of one still uses every thread. */
static int sample_channel_sums(const float *x, const float *centers, double *sums, long B, long P, long C,
                               int threads)
{
    const long chunks = threads;
    double *partial = calloc((size_t)(B * chunks * C), sizeof(double));
    if (partial == NULL)
        return 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long task = 0; task < B * chunks; ++task) {
        const long b = task / chunks, k = task % chunks;
        channel_sums(x + b * P * C, centers == NULL ? NULL : centers + b * C, partial + task * C, P * k / chunks,
                     P * (k + 1) / chunks, C);
    }
    for (long b = 0; b < B; ++b)
        for (long c = 0; c < C; ++c) {
            double total = 0.0;
            for (long k = 0; k < chunks; ++k)
                total += partial[(b * chunks + k) * C + c];
            sums[b * C + c] = total;
        }
    free(partial);
    return 0;
}

/* The mean over each group's channels of per-sample channel sums [B, C] divided by count: into group [B, G] and
 * spread to every channel of the group in channel [B, C]. */
static void group_means(const double *sums, double count, float *group, float *channel, long B, long C, long G)
{
    const long width = C / G;
    for (long b = 0; b < B; ++b)
        for (long g = 0; g < G; ++g) {
            double total = 0.0;
            for (long c = g * width; c < (g + 1) * width; ++c)
                total += sums[b * C + c];
            group[b * G + g] = (float)(total / count);
            for (long c = g * width; c < (g + 1) * width; ++c)
                channel[b * C + c] = group[b * G + g];
        }
}

/* Returns 0, or 1 when scratch memory could not be allocated (the caller then falls back). */
int unstatic_group_norm(const float *x, const float *gamma, const float *beta, float *y, float *mean, float *rstd,
                        long B, long P, long C, long G, float eps, int silu, int threads)
{
    const long width = C / G;
    const double count = (double)P * width;
    double *sums = malloc(sizeof(double) * B * C);
    float *center = malloc(sizeof(float) * B * C), *scale = malloc(sizeof(float) * B * C),
          *shift = malloc(sizeof(float) * B * C);
    int failed = sums == NULL || center == NULL || scale == NULL || shift == NULL;
    if (!failed)
        failed = sample_channel_sums(x, NULL, sums, B, P, C, threads);
    if (!failed) {
        group_means(sums, count, mean, center, B, C, G);
        failed = sample_channel_sums(x, center, sums, B, P, C, threads);
    }
    if (!failed) {
        group_means(sums, count, rstd, scale, B, C, G); /* the biased variance, for now */
        /* y = (x - mean) rstd gamma + beta = x scale + shift, per sample and channel */
        for (long i = 0; i < B * G; ++i)
            rstd[i] = (float)(1.0 / sqrt((double)rstd[i] + eps));
        for (long b = 0; b < B; ++b)
            for (long c = 0; c < C; ++c) {
                scale[b * C + c] = rstd[b * G + c / width] * gamma[c];
                shift[b * C + c] = beta[c] - mean[b * G + c / width] * scale[b * C + c];
            }
#pragma omp parallel for num_threads(threads) schedule(static)
        for (long row = 0; row < B * P; ++row) {
            const long b = row / P;
            for (long c = 0; c < C; c += VL) {
                vf h = load(x + row * C + c) * load(scale + b * C + c) + load(shift + b * C + c);
                store(y + row * C + c, silu ? h * sigmoid(h) : h);
            }
        }
    }
    free(sums);
    free(center);
    free(scale);
    free(shift);
    return failed;
}

/* The backward pass. With h = xhat gamma + beta, xhat = (x - mean) rstd, and dh the gradient at h (dy, or through
 * SiLU dy s (1 + h (1 - s)), s = sigmoid(h)):
 *   dbeta_c = sum dh,  dgamma_c = sum dh xhat  (over batch and pixels)
 *   dx = rstd (gamma dh - mean_group(gamma dh) - xhat mean_group(gamma dh xhat))   (Wu & He 2018; the usual
 *   normalisation backward, with the group's P x C/G elements as the set the statistics ran over).
 * dh is written into dx first (scratch), then replaced by the input gradient. dgamma and dbeta are [C]. */
int unstatic_group_norm_backward(const float *dy, const float *x, const float *mean, const float *rstd,
                                 const float *gamma, const float *beta, float *dx, float *dgamma, float *dbeta,
                                 long B, long P, long C, long G, int silu, int threads)
{
    const long width = C / G;
    const double count = (double)P * width;
    double *partial = calloc((size_t)(2 * B * threads * C), sizeof(double));
    double *parameter_sums = calloc((size_t)(2 * C), sizeof(double)); /* dbeta, dgamma before rounding */
    float *center = malloc(sizeof(float) * B * C), *inv = malloc(sizeof(float) * B * C),
          *coef = malloc(sizeof(float) * 3 * B * C);
    int failed = partial == NULL || parameter_sums == NULL || center == NULL || inv == NULL || coef == NULL;
    if (!failed) {
        for (long b = 0; b < B; ++b)
            for (long c = 0; c < C; ++c) {
                center[b * C + c] = mean[b * G + c / width];
                inv[b * C + c] = rstd[b * G + c / width];
            }
        const long chunks = threads;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (long task = 0; task < B * chunks; ++task) {
            const long b = task / chunks, k = task % chunks, p1 = P * (k + 1) / chunks;
            double *sum_dh = partial + 2 * task * C, *sum_dh_xhat = sum_dh + C;
            float block[2 * C] __attribute__((aligned(64)));
            for (long p = P * k / chunks; p < p1; p += FLUSH) {
                const long end = p + FLUSH < p1 ? p + FLUSH : p1;
                for (long c = 0; c < 2 * C; c += VL)
                    store(block + c, (vf){0});
                for (long q = p; q < end; ++q) {
                    const long at = (b * P + q) * C;
                    for (long c = 0; c < C; c += VL) {
                        const vf xhat = (load(x + at + c) - load(center + b * C + c)) * load(inv + b * C + c);
                        vf dh = load(dy + at + c);
                        if (silu) {
                            const vf h = xhat * load(gamma + c) + load(beta + c), s = sigmoid(h);
                            dh *= s * (1.0f + h * (1.0f - s));
                            store(dx + at + c, dh);
                        }
                        store(block + c, load(block + c) + dh);
                        store(block + C + c, load(block + C + c) + dh * xhat);
                    }
                }
                for (long c = 0; c < C; ++c) {
                    sum_dh[c] += block[c];
                    sum_dh_xhat[c] += block[C + c];
                }
            }
        }
        /* dx = a dh + b (x - mean) + c per sample and channel: a = rstd gamma, b = -rstd^2 m2, c = -rstd m1,
         * m1 = mean_group(gamma dh), m2 = mean_group(gamma dh xhat) */
        for (long b = 0; b < B; ++b)
            for (long g = 0; g < G; ++g) {
                double m1 = 0.0, m2 = 0.0;
                for (long c = g * width; c < (g + 1) * width; ++c) {
                    double s1 = 0.0, s2 = 0.0;
                    for (long k = 0; k < chunks; ++k) {
                        s1 += partial[(2 * (b * chunks + k)) * C + c];
                        s2 += partial[(2 * (b * chunks + k) + 1) * C + c];
                    }
                    parameter_sums[c] += s1;
                    parameter_sums[C + c] += s2;
                    m1 += gamma[c] * s1;
                    m2 += gamma[c] * s2;
                }
                m1 /= count;
                m2 /= count;
                const double r = rstd[b * G + g];
                for (long c = g * width; c < (g + 1) * width; ++c) {
                    coef[(3 * b) * C + c] = (float)(r * gamma[c]);
                    coef[(3 * b + 1) * C + c] = (float)(-r * r * m2);
                    coef[(3 * b + 2) * C + c] = (float)(-r * m1);
                }
            }
        for (long c = 0; c < C; ++c) {
            dbeta[c] = (float)parameter_sums[c];
            dgamma[c] = (float)parameter_sums[C + c];
        }
#pragma omp parallel for num_threads(threads) schedule(static)
        for (long row = 0; row < B * P; ++row) {
            const long b = row / P;
            const float *a = coef + 3 * b * C, *bx = a + C, *c0 = bx + C, *dh = silu ? dx : dy;
            for (long c = 0; c < C; c += VL) {
                const vf deviation = load(x + row * C + c) - load(center + b * C + c);
                store(dx + row * C + c, load(a + c) * load(dh + row * C + c) + load(bx + c) * deviation + load(c0 + c));
            }
        }
    }
    free(partial);
    free(parameter_sums);
    free(center);
    free(inv);
    free(coef);
    return failed;
}
