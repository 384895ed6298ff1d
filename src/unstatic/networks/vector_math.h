/* Vector types and math shared by unstatic's C kernels (attention_kernel.c, group_norm_kernel.c).
 *
 * Plain C with GCC/Clang vector types, no intrinsics: the kernels build for any CPU, and the compiler maps the
 * 8-float vectors onto AVX2/AVX-512 registers (or pairs of SSE/NEON ones).
 */
#ifndef UNSTATIC_VECTOR_MATH_H
#define UNSTATIC_VECTOR_MATH_H

#define VL 8   /* floats per vector */

typedef float vf __attribute__((vector_size(4 * VL)));
typedef float vf_unaligned __attribute__((vector_size(4 * VL), aligned(4)));
typedef int vi __attribute__((vector_size(4 * VL)));

static inline vf load(const float *p) { return *(const vf_unaligned *)p; }
static inline void store(float *p, vf v) { *(vf_unaligned *)p = v; }
static inline vf splat(float x) { return (vf){0} + x; }
static inline vf vmax(vf a, vf b) { vi a_wins = a > b; return (vf)(((vi)a & a_wins) | ((vi)b & ~a_wins)); }
static inline float hsum(vf v)
{
    float total = 0.0f;
    for (int w = 0; w < VL; ++w)
        total += v[w];
    return total;
}

/* 2^x for x <= 0 on a vector, relative error below 3e-7 for x >= -126 and exactly 0 below -126.5 (next to
 * the row maximum's 1 such a term cannot change a float32 sum). x = n + f with n = round(x), |f| <= 1/2, and
 * 2^x = 2^n 2^f: 2^f by a degree-5 polynomial (a relative-error minimax fit on [-1/2, 1/2], error 2.6e-7,
 * the float32 rounding of its inputs' order; degree 6 cost 5 % more of the kernel for nothing a float32
 * softmax keeps), 2^n written straight into the exponent bits. */
static inline vf exp2_nonpositive(vf x)
{
    const vf shifter = splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer, ties to even */
    const vf t = x + shifter;             /* for |x| < 2^22 its bits are those of 1.5 * 2^23, plus n */
    const vf n = t - shifter;
    const vf f = x - n;
    vf p = splat(1.29157e-3f);
    p = p * f + 9.66853e-3f;
    p = p * f + 5.551689e-2f;
    p = p * f + 2.4022265e-1f;
    p = p * f + 6.9314647e-1f;
    p = p * f + 1.00000004f;
    /* The biased exponent n + 127 straight from t's bits (no conversion), cleared to 0, the float 0, where it
     * is negative (two integer operations instead of a float clamp of x, a compare and a blend). Below -2^22
     * (padding keys' -1e30) t's bits are those of a negative float: negative here too, so also 0. */
    vi biased = (vi)t - (0x4B400000 - 127);
    biased &= ~(biased >> 31);
    return p * (vf)(biased << 23);
}

#endif
