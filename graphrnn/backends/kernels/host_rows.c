// Few-row GEMMs reading the weights in place, and a scan for NaN and inf: the NumPy backend's
// batched products of few rows (steps x batch) and the finite checks of every call.
// Built by graphrnn/backends/host_rows.py with GR_T (float or double) and GR_LANES defined.
#include <stdint.h>
#include <string.h>

#define GR_RLANES GR_LANES  // 256-bit vectors (512-bit ones measured 1.5x slower here)
typedef GR_T gr_rvec __attribute__((vector_size(GR_RLANES * sizeof(GR_T))));
// 8 float lanes' sums of 8 vectors at once (AVX's horizontal adds) where the CPU has them
#if defined(__AVX__) && !defined(GR_DOUBLE) && GR_RLANES == 8
#include <immintrin.h>
#define GR_HADD8 1
#else
#define GR_HADD8 0
#endif

// The lanes' sum as a tree (halves added): 4 dependent adds for 16 lanes, not 15.
static inline GR_T gr_rsum(gr_rvec v) {
    GR_T s[GR_RLANES];
    memcpy(s, &v, sizeof v);
    for (int w = GR_RLANES / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; ++i) s[i] += s[i + w];
    return s[0];
}

// R rows of a (from x, stride lda) times 4 weight rows wr[0..3] into c (stride ldc), the
// first m of the 4 columns stored: R x 4 sums in registers (R is a constant at each call).
static inline __attribute__((always_inline)) void gr_tile(
        const int R, const GR_T* x, long lda, int k, const GR_T* const* wr, int m,
        const GR_T* bias, GR_T* c, long ldc) {
    const int kv = k / GR_RLANES * GR_RLANES;
    gr_rvec s[4][4];
    for (int i = 0; i < R; ++i)
        for (int j = 0; j < 4; ++j) s[i][j] = (gr_rvec){0};
    for (int r = 0; r < kv; r += GR_RLANES) {
        gr_rvec u[4], v[4];
        for (int j = 0; j < 4; ++j) memcpy(&u[j], wr[j] + r, sizeof u[j]);
        for (int i = 0; i < R; ++i) {
            memcpy(&v[i], x + i * lda + r, sizeof v[i]);
            for (int j = 0; j < 4; ++j) s[i][j] += v[i] * u[j];
        }
    }
    GR_T t[4][4];
#if GR_HADD8
    for (int i = 0; i < R; i += 2) {  // rows i, i + 1: their 8 sums at once
        __m256 v[8];
        for (int j = 0; j < 4; ++j) {
            memcpy(&v[j], &s[i][j], sizeof v[j]);
            if (i + 1 < R) memcpy(&v[4 + j], &s[i + 1][j], sizeof v[j]);
            else v[4 + j] = _mm256_setzero_ps();
        }
        __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
        __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
        __m256 sums = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                                    _mm256_permute2f128_ps(u0, u1, 0x31));
        GR_T out[8];
        memcpy(out, &sums, sizeof out);
        for (int j = 0; j < 4; ++j) {
            t[i][j] = out[j];
            if (i + 1 < R) t[i + 1][j] = out[4 + j];
        }
    }
#else
    for (int i = 0; i < R; ++i)
        for (int j = 0; j < 4; ++j) t[i][j] = gr_rsum(s[i][j]);
#endif
    for (int i = 0; i < R; ++i)
        for (int j = 0; j < 4; ++j)
            for (int r = kv; r < k; ++r) t[i][j] += x[i * lda + r] * wr[j][r];
    for (int i = 0; i < R; ++i)
        for (int j = 0; j < m; ++j) c[i * ldc + j] = t[i][j] + (bias ? bias[j] : 0);
}

// c[b, j] = bias[j] + sum_r a[b, r] w[j, r] for b < rows, j < n (bias may be NULL): w is
// C-contiguous (n, k), read in place; 4 of its rows stay in L1 for every 4 rows of a.
void gr_rows_gemm(const GR_T* a, long lda, int rows, int k, const GR_T* w, int n,
                  const GR_T* bias, GR_T* c, long ldc) {
    for (int j0 = 0; j0 < n; j0 += 4) {
        const int m = n - j0 < 4 ? n - j0 : 4;
        const GR_T* wr[4];
        for (int j = 0; j < 4; ++j) wr[j] = w + (long)(j0 + (j < m ? j : 0)) * k;
        const GR_T* bj = bias ? bias + j0 : 0;
        int b = 0;
        for (; b + 4 <= rows; b += 4)
            gr_tile(4, a + b * lda, lda, k, wr, m, bj, c + b * ldc + j0, ldc);
        for (; b + 2 <= rows; b += 2)
            gr_tile(2, a + b * lda, lda, k, wr, m, bj, c + b * ldc + j0, ldc);
        for (; b < rows; ++b) gr_tile(1, a + b * lda, lda, k, wr, m, bj, c + b * ldc + j0, ldc);
    }
}

// 1 when none of the n values at p is NaN or inf (its exponent bits all ones), else 0: exact,
// one pass, no temporaries.
static int gr_finite(const GR_T* p, long n) {
#if defined(GR_DOUBLE)
    typedef uint64_t bits_t;
    const bits_t mask = 0x7ff0000000000000ull, one = 0x0010000000000000ull, top = 1ull << 63;
#else
    typedef uint32_t bits_t;
    const bits_t mask = 0x7f800000u, one = 0x00800000u, top = 1u << 31;
#endif
    bits_t any = 0;
    for (long i = 0; i < n; ++i) {
        bits_t u;
        memcpy(&u, p + i, sizeof u);
        any |= (u & mask) + one;  // the top bit set only where the exponent is all ones
    }
    return (any & top) == 0;
}

// The index of the first of `count` arrays (pointers, lengths) holding a NaN or inf; -1: none.
int gr_first_nonfinite(const GR_T* const* arrays, const long* sizes, int count) {
    for (int i = 0; i < count; ++i)
        if (!gr_finite(arrays[i], sizes[i])) return i;
    return -1;
}

// A MatMul's blocks in one call: c[:, cols[i]:cols[i] + widths[i]] = a @ w[i].T (+ bias[i]),
// then, where `check`, whether its rows x ldc outputs are all finite (1) or not (0).
int gr_rows_matmul(const GR_T* a, long lda, int rows, int k, int blocks,
                   const GR_T* const* w, const int* widths, const GR_T* const* bias,
                   const int* cols, GR_T* c, long ldc, int check) {
    for (int i = 0; i < blocks; ++i)
        gr_rows_gemm(a, lda, rows, k, w[i], widths[i], bias[i], c + cols[i], ldc);
    return check ? gr_finite(c, (long)rows * ldc) : 1;
}
