/* One-token decode step kernels for longchat (runtime/native.py builds and loads this file).
 *
 * A decode step on a CPU is ~25 small torch operations a layer around four weight products;
 * at 1k tokens their dispatch cost as much as the products. These functions do a layer's
 * work between the products in one call each: the norms and residuals, RoPE with the KV cache
 * append, attention over a bf16 cache, and the gated activation.
 *
 * Conventions: the residual stream is fp32; what goes into a weight product (and comes out of
 * one) is bf16, as torch's weight-only int4/int8 kernels take and return it. bf16 is handled
 * as its bits (uint16_t), rounded to nearest even as torch rounds. Written for any CPU that has
 * a C compiler; OpenMP is used where the compiler has it.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define TILE 64       /* keys scored at a time (online softmax) */
#define MAX_REP 16    /* query heads per KV head */
#define MAX_DIM 256   /* head dimension */
#define MAX_PARTS 64  /* key ranges attended in parallel */

static inline float bf2f(uint16_t h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

static inline uint16_t f2bf(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    uint32_t u = v.u;
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* exp(x) for x <= 88, in a form the compiler vectorises: 2^i * 2^f, i = round(x log2 e),
 * |f| <= 1/2, 2^f by a degree-6 polynomial (Cephes' exp2f coefficients; ~2 ulp). */
static inline float exp_v(float x) {
    float t = x * 1.44269504088896341f;
    t = t < -126.0f ? -126.0f : t;
    float i = (t + 12582912.0f) - 12582912.0f; /* round to nearest: 1.5 * 2^23 */
    float f = t - i;
    float p = 1.535336188319500e-4f;
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)((int32_t)i + 127) << 23;
    return p * v.f;
}

static void norm_into(const float *x, const float *w, uint16_t *out, int c, float eps) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < c; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)c + eps);
    for (int i = 0; i < c; i++) out[i] = f2bf(w[i] * (x[i] * r));
}

/* out = bf16(w * x / rms(x)) */
void lc_norm(const float *x, const float *w, uint16_t *out, int c, float eps) {
    norm_into(x, w, out, c, eps);
}

/* x += y (+ bias); then out = bf16(w * x / rms(x)) when w is given */
void lc_add_norm(float *x, const uint16_t *y, const float *bias, const float *w, uint16_t *out, int c, float eps) {
    if (bias)
        for (int i = 0; i < c; i++) x[i] += bf2f(y[i]) + bias[i];
    else
        for (int i = 0; i < c; i++) x[i] += bf2f(y[i]);
    if (w) norm_into(x, w, out, c, eps);
}

/* out = bf16(silu(gate) * up) for gu = [gate | up], each n wide */
void lc_silu_mul(const uint16_t *gu, const float *bias, uint16_t *out, int n) {
    for (int i = 0; i < n; i++) {
        float g = bf2f(gu[i]), u = bf2f(gu[n + i]);
        if (bias) {
            g += bias[i];
            u += bias[n + i];
        }
        out[i] = f2bf(g / (1.0f + exp_v(g < -88.0f ? 88.0f : -g)) * u);
    }
}

static void rope_into(const float *x, const float *cos, const float *sin, float *out, int d) {
    int half = d / 2;
    for (int i = 0; i < half; i++) out[i] = x[i] * cos[i] + (-x[i + half]) * sin[i];
    for (int i = half; i < d; i++) out[i] = x[i] * cos[i] + x[i - half] * sin[i];
}

/* s[r][j] = scale * q_r . k_{t0 + j} for the n keys from t0 (k rows of d bf16), the dot product
 * rounded to bf16 first, as a bf16 matmul returns it (torch's step did so, and greedy answers
 * that sit on a tie stay what they were; docs/decode.md). q is given both as fp32 and as bf16
 * bits (its values are bf16's). */
static void score_tile(const float *q, const uint16_t *qb, const uint16_t *k, long t0, int n, int nrep, int d,
                       float scale, float s[][TILE]) {
#if defined(__AVX512BF16__)
    if (d % 32 == 0) { /* bf16 pairs multiplied and summed in fp32 by the CPU itself */
        for (int j = 0; j < n; j++) {
            const uint16_t *kr = k + (t0 + j) * d;
            for (int r = 0; r < nrep; r++) {
                const uint16_t *qr = qb + (long)r * d;
                __m512 acc = _mm512_setzero_ps();
                for (int i = 0; i < d; i += 32)
                    acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(qr + i), (__m512bh)_mm512_loadu_si512(kr + i));
                s[r][j] = bf2f(f2bf(_mm512_reduce_add_ps(acc))) * scale;
            }
        }
        return;
    }
#endif
    (void)qb;
    float row[MAX_DIM];
    for (int j = 0; j < n; j++) {
        const uint16_t *kr = k + (t0 + j) * d;
#pragma omp simd
        for (int i = 0; i < d; i++) row[i] = bf2f(kr[i]);
        for (int r = 0; r < nrep; r++) {
            const float *qr = q + (long)r * d;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int i = 0; i < d; i++) dot += qr[i] * row[i];
            s[r][j] = bf2f(f2bf(dot)) * scale;
        }
    }
}

/* acc[r] += sum_j p[r][j] v_j over the n value rows v (d bf16 each) */
static void accumulate_tile(float p[][TILE], const uint16_t *v, int n, int nrep, int d, float *acc) {
#if defined(__AVX512F__)
    if (d % 16 == 0) {
        float vt[TILE * MAX_DIM]; /* the tile widened once, read nrep times */
        for (long i = 0; i < (long)n * d; i += 16)
            _mm512_storeu_ps(vt + i, _mm512_castsi512_ps(_mm512_slli_epi32(
                                         _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(v + i))), 16)));
        for (int r = 0; r < nrep; r++)
            for (int i = 0; i < d; i += 16) {
                __m512 a = _mm512_loadu_ps(acc + (long)r * d + i);
                for (int j = 0; j < n; j++) a = _mm512_fmadd_ps(_mm512_set1_ps(p[r][j]), _mm512_loadu_ps(vt + (long)j * d + i), a);
                _mm512_storeu_ps(acc + (long)r * d + i, a);
            }
        return;
    }
#endif
    float row[MAX_DIM];
    for (int j = 0; j < n; j++) {
        const uint16_t *vr = v + (long)j * d;
#pragma omp simd
        for (int i = 0; i < d; i++) row[i] = bf2f(vr[i]);
        for (int r = 0; r < nrep; r++) {
            float w = p[r][j], *a = acc + (long)r * d;
#pragma omp simd
            for (int i = 0; i < d; i++) a[i] += w * row[i];
        }
    }
}

/* Softmax attention of the nrep query rows q (nrep x d) over keys [lo, hi) of one head's
 * cache (rows of d bf16): unnormalised output acc (nrep x d), row maxima m and sums l. */
static void attend_range(const float *q, const uint16_t *qb, const uint16_t *k, const uint16_t *v, long lo, long hi,
                         int nrep, int d, float scale, float *acc, float *m, float *l) {
    float s[MAX_REP][TILE];
    for (int r = 0; r < nrep; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        memset(acc + (long)r * d, 0, sizeof(float) * d);
    }
    for (long t0 = lo; t0 < hi; t0 += TILE) {
        int n = (int)((hi - t0) < TILE ? (hi - t0) : TILE);
        score_tile(q, qb, k, t0, n, nrep, d, scale, s);
        for (int r = 0; r < nrep; r++) {
            float mt = m[r];
            float *sr = s[r];
#pragma omp simd reduction(max : mt)
            for (int j = 0; j < n; j++) mt = sr[j] > mt ? sr[j] : mt;
            float corr = expf(m[r] - mt); /* 0 on the first tile (m = -inf) */
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < n; j++) {
                sr[j] = exp_v(sr[j] - mt);
                sum += sr[j];
            }
            l[r] = l[r] * corr + sum;
            m[r] = mt;
            if (corr != 1.0f) {
                float *a = acc + (long)r * d;
                for (int i = 0; i < d; i++) a[i] *= corr;
            }
        }
        accumulate_tile(s, v + t0 * d, n, nrep, d, acc);
    }
}

/* The attention of one decode step at position `pos`:
 * - qkv: the qkv product's row, bf16, [q (hq*d) | k (hkv*d) | v (hkv*d)], plus `bias` (fp32) if given;
 * - q and k are rotated with cos/sin (d each, fp32); k and v are stored at `pos` in the caches
 *   kc, vc (hkv x cap x d, bf16);
 * - q is rounded to bf16 (the product that reads a bf16 cache takes bf16 queries);
 * - out (hq*d, bf16): softmax(q k^T * scale) v over the pos + 1 cached keys.
 * Key ranges are attended in parallel and merged (each with its own maximum and sum).
 * Returns 0; -1 for shapes past the fixed limits (the caller checks them first), -2 without memory. */
int lc_attend(const uint16_t *qkv, const float *bias, const float *cos, const float *sin, uint16_t *kc, uint16_t *vc,
              long cap, long pos, int hq, int hkv, int d, float scale, int threads, uint16_t *out) {
    int nrep = hq / hkv;
    if (nrep > MAX_REP || d > MAX_DIM || hq % hkv || pos >= cap) return -1;
    float x[MAX_DIM], rot[MAX_DIM];
    long n = pos + 1;
    int parts = threads < 1 ? 1 : (threads > MAX_PARTS ? MAX_PARTS : threads);
    if (n < 256L * parts) parts = n / 256 > 0 ? (int)(n / 256) : 1; /* a range of 256 keys at least */
    /* the rotated queries, then per part and head: acc (d), maximum m and sum l */
    float *qs = malloc(sizeof(float) * ((long)hq * d + (long)parts * hq * (d + 2)) + sizeof(uint16_t) * hq * d);
    if (!qs) return -2;
    float *acc = qs + (long)hq * d, *ms = acc + (long)parts * hq * d, *ls = ms + (long)parts * hq;
    uint16_t *qb = (uint16_t *)(ls + (long)parts * hq);
    for (int h = 0; h < hq + 2 * hkv; h++) {
        const uint16_t *src = qkv + (long)h * d;
        for (int i = 0; i < d; i++) x[i] = bf2f(src[i]) + (bias ? bias[(long)h * d + i] : 0.0f);
        if (h < hq) {
            rope_into(x, cos, sin, rot, d);
            for (int i = 0; i < d; i++) {
                qb[(long)h * d + i] = f2bf(rot[i]);
                qs[(long)h * d + i] = bf2f(qb[(long)h * d + i]);
            }
        } else if (h < hq + hkv) {
            rope_into(x, cos, sin, rot, d);
            uint16_t *dst = kc + ((long)(h - hq) * cap + pos) * d;
            for (int i = 0; i < d; i++) dst[i] = f2bf(rot[i]);
        } else {
            uint16_t *dst = vc + ((long)(h - hq - hkv) * cap + pos) * d;
            for (int i = 0; i < d; i++) dst[i] = f2bf(x[i]);
        }
    }
#pragma omp parallel for num_threads(parts) schedule(static) if (parts > 1)
    for (int p = 0; p < parts; p++) {
        long lo = n * p / parts, hi = n * (p + 1) / parts;
        for (int g = 0; g < hkv; g++) {
            const uint16_t *k = kc + (long)g * cap * d, *v = vc + (long)g * cap * d;
            long at = (long)p * hq + (long)g * nrep;
            attend_range(qs + (long)g * nrep * d, qb + (long)g * nrep * d, k, v, lo, hi, nrep, d, scale, acc + at * d,
                         ms + at, ls + at);
        }
    }
    for (int h = 0; h < hq; h++) {
        float m = -INFINITY;
        for (int p = 0; p < parts; p++) m = ms[(long)p * hq + h] > m ? ms[(long)p * hq + h] : m;
        float total = 0.0f;
        for (int i = 0; i < d; i++) x[i] = 0.0f;
        for (int p = 0; p < parts; p++) {
            long at = (long)p * hq + h;
            if (ls[at] == 0.0f) continue;
            float w = expf(ms[at] - m);
            total += ls[at] * w;
            const float *a = acc + at * d;
            for (int i = 0; i < d; i++) x[i] += a[i] * w;
        }
        for (int i = 0; i < d; i++) out[(long)h * d + i] = f2bf(x[i] / total);
    }
    free(qs);
    return 0;
}
