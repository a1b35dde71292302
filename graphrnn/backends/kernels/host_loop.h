// graphrnn: what host_loop.c's time loops are made of: a register-tiled GEMM on weights packed
// once per call, GEMMs reading the weights in place (few rows: no packing), a spin barrier,
// and threads started for one call. Include after defining GR_T
// (float or double) and GR_LANES (GR_T values in 32 bytes); the GEMM then works on vectors of
// 32 bytes (AVX on x86, two NEON registers on ARM).
#ifndef GRAPHRNN_HOST_LOOP_H
#define GRAPHRNN_HOST_LOOP_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

typedef GR_T gr_vec __attribute__((vector_size(32)));
#if GR_LANES == 8
#define GR_SPLAT(s) ((gr_vec){s, s, s, s, s, s, s, s})
#else
#define GR_SPLAT(s) ((gr_vec){s, s, s, s})
#endif
// a packed panel: 2 vectors of columns for each row of the weight
#define GR_PANEL (2 * GR_LANES)
// rows of A per register tile: 4 x 2 accumulators, the weight's vectors loaded once for 4 FMAs
#define GR_TILE_ROWS 4
#define GR_MAX_THREADS 64

#if defined(__x86_64__) || defined(__i386__)
#define GR_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define GR_PAUSE() __asm__ __volatile__("yield")
#else
#define GR_PAUSE() ((void)0)
#endif

// Panels of columns [c0, c0 + n) of the matrix X' (k rows): dst[p][r][GR_PANEL], the last panel
// zero-padded. The weight is given by its rows (row j at w[j]): X' is the weight itself
// (X'[r][c] = w[r][c]) or, with `transposed`, its transpose (X'[r][c] = w[c][r]).
static void gr_pack(const GR_T* const* w, int k, int c0, int n, int transposed, GR_T* dst) {
    for (int p = 0; p * GR_PANEL < n; ++p) {
        const int width = n - p * GR_PANEL < GR_PANEL ? n - p * GR_PANEL : GR_PANEL;
        GR_T* panel = dst + (long)p * k * GR_PANEL;
        if (width < GR_PANEL) memset(panel, 0, sizeof(GR_T) * k * GR_PANEL);
        const int col = c0 + p * GR_PANEL;
        if (!transposed) {
            for (int r = 0; r < k; ++r)
                memcpy(panel + (long)r * GR_PANEL, w[r] + col, sizeof(GR_T) * width);
            continue;
        }
        for (int c = 0; c < width; ++c) {
            const GR_T* row = w[col + c];
            for (int r = 0; r < k; ++r) panel[(long)r * GR_PANEL + c] = row[r];
        }
    }
}

// C[i, 0:width] (= or +=) acc[i], for rows i < rows
static inline void gr_store(gr_vec acc[][2], int rows, GR_T* c, long ldc, int width,
                            int accumulate) {
    for (int i = 0; i < rows; ++i) {
        GR_T out[GR_PANEL];
        memcpy(out, &acc[i][0], sizeof acc[i][0]);
        memcpy(out + GR_LANES, &acc[i][1], sizeof acc[i][1]);
        GR_T* row = c + i * ldc;
        if (accumulate)
            for (int j = 0; j < width; ++j) row[j] += out[j];
        else
            memcpy(row, out, sizeof(GR_T) * width);
    }
}

// C[0:R, 0:width] (= or +=) A[0:R, 0:k] @ panel for R = GR_TILE_ROWS (width <= GR_PANEL):
// 2R accumulators, each row of the panel loaded once for 2R multiply-adds
static inline void gr_tile(const GR_T* a, long lda, int k, const GR_T* panel, GR_T* c,
                           long ldc, int width, int accumulate) {
    gr_vec acc[GR_TILE_ROWS][2];
    for (int i = 0; i < GR_TILE_ROWS; ++i) acc[i][0] = acc[i][1] = (gr_vec){0};
    for (int r = 0; r < k; ++r) {
        gr_vec w0, w1;
        memcpy(&w0, panel + (long)r * GR_PANEL, sizeof w0);
        memcpy(&w1, panel + (long)r * GR_PANEL + GR_LANES, sizeof w1);
        for (int i = 0; i < GR_TILE_ROWS; ++i) {
            const GR_T s = a[i * lda + r];
            const gr_vec v = GR_SPLAT(s);
            acc[i][0] += v * w0;
            acc[i][1] += v * w1;
        }
    }
    gr_store(acc, GR_TILE_ROWS, c, ldc, width, accumulate);
}

// the same for one row (a batch not a multiple of GR_TILE_ROWS; a batch of one)
static inline void gr_tile_row(const GR_T* a, int k, const GR_T* panel, GR_T* c, int width,
                               int accumulate) {
    gr_vec acc[1][2] = {{(gr_vec){0}, (gr_vec){0}}}, acc2[2] = {(gr_vec){0}, (gr_vec){0}};
    int r = 0;
    for (; r + 1 < k; r += 2) {  // two independent sums: half the dependency chain
        gr_vec w0, w1, w2, w3;
        memcpy(&w0, panel + (long)r * GR_PANEL, sizeof w0);
        memcpy(&w1, panel + (long)r * GR_PANEL + GR_LANES, sizeof w1);
        memcpy(&w2, panel + (long)(r + 1) * GR_PANEL, sizeof w2);
        memcpy(&w3, panel + (long)(r + 1) * GR_PANEL + GR_LANES, sizeof w3);
        const gr_vec v = GR_SPLAT(a[r]), u = GR_SPLAT(a[r + 1]);
        acc[0][0] += v * w0;
        acc[0][1] += v * w1;
        acc2[0] += u * w2;
        acc2[1] += u * w3;
    }
    if (r < k) {
        gr_vec w0, w1;
        memcpy(&w0, panel + (long)r * GR_PANEL, sizeof w0);
        memcpy(&w1, panel + (long)r * GR_PANEL + GR_LANES, sizeof w1);
        const gr_vec v = GR_SPLAT(a[r]);
        acc[0][0] += v * w0;
        acc[0][1] += v * w1;
    }
    acc[0][0] += acc2[0];
    acc[0][1] += acc2[1];
    gr_store(acc, 1, c, 0, width, accumulate);
}

// C[0:rows, 0:n] (= or +=) A[0:rows, 0:k] @ X'[:, c0:c0 + n], X' packed by gr_pack: a panel
// at a time (it stays in cache for every row tile)
static void gr_gemm(const GR_T* a, long lda, int rows, int k, const GR_T* packed, int n,
                    GR_T* c, long ldc, int accumulate) {
    for (int p = 0; p * GR_PANEL < n; ++p) {
        const int width = n - p * GR_PANEL < GR_PANEL ? n - p * GR_PANEL : GR_PANEL;
        const GR_T* panel = packed + (long)p * k * GR_PANEL;
        GR_T* cp = c + p * GR_PANEL;
        int r = 0;
        for (; r + GR_TILE_ROWS <= rows; r += GR_TILE_ROWS)
            gr_tile(a + r * lda, lda, k, panel, cp + r * ldc, ldc, width, accumulate);
        for (; r < rows; ++r)
            gr_tile_row(a + r * lda, k, panel, cp + r * ldc, width, accumulate);
    }
}

static inline GR_T gr_hsum(gr_vec v) {
    GR_T out[GR_LANES], s = 0;
    memcpy(out, &v, sizeof v);
    for (int i = 0; i < GR_LANES; ++i) s += out[i];
    return s;
}

// C[b, j] (= or +=) sum_r A[b, r] w[c0 + j][r] for b < rows, j < n: dot products of A's rows
// with the weight's rows read in place (a forward GEMM on few rows: no packing). 8 weight rows
// at a time stay in L1 for every row of A.
static void gr_gemm_dot(const GR_T* a, long lda, int rows, int k, const GR_T* const* w, int c0,
                        int n, GR_T* c, long ldc, int accumulate) {
    const int kv = k / GR_LANES * GR_LANES;
    for (int j0 = 0; j0 < n; j0 += 8) {
        const int m = n - j0 < 8 ? n - j0 : 8;
        for (int b = 0; b < rows; ++b) {
            const GR_T* x = a + b * lda;
            gr_vec acc[8];
            for (int j = 0; j < 8; ++j) acc[j] = (gr_vec){0};
            for (int r = 0; r < kv; r += GR_LANES) {
                gr_vec v;
                memcpy(&v, x + r, sizeof v);
                for (int j = 0; j < m; ++j) {
                    gr_vec u;
                    memcpy(&u, w[c0 + j0 + j] + r, sizeof u);
                    acc[j] += v * u;
                }
            }
            GR_T* out = c + b * ldc + j0;
            for (int j = 0; j < m; ++j) {
                const GR_T* row = w[c0 + j0 + j];
                GR_T s = gr_hsum(acc[j]);
                for (int r = kv; r < k; ++r) s += x[r] * row[r];
                out[j] = accumulate ? out[j] + s : s;
            }
        }
    }
}

// C[b, 0:n] (= or +=) sum_r A[b, r] w[r][c0:c0 + n] for b < rows: a backward GEMM on few rows
// reading the weight's rows in place, 2 vectors of columns at a time.
static void gr_gemm_axpy(const GR_T* a, long lda, int rows, int k, const GR_T* const* w, int c0,
                         int n, GR_T* c, long ldc, int accumulate) {
    for (int b = 0; b < rows; ++b) {
        const GR_T* x = a + b * lda;
        GR_T* out = c + b * ldc;
        int j = 0;
        for (; j + GR_PANEL <= n; j += GR_PANEL) {
            gr_vec s0 = (gr_vec){0}, s1 = (gr_vec){0}, t0 = (gr_vec){0}, t1 = (gr_vec){0};
            int r = 0;
            for (; r + 1 < k; r += 2) {  // two independent sums: half the dependency chain
                gr_vec w0, w1, w2, w3;
                memcpy(&w0, w[r] + c0 + j, sizeof w0);
                memcpy(&w1, w[r] + c0 + j + GR_LANES, sizeof w1);
                memcpy(&w2, w[r + 1] + c0 + j, sizeof w2);
                memcpy(&w3, w[r + 1] + c0 + j + GR_LANES, sizeof w3);
                const gr_vec v = GR_SPLAT(x[r]), u = GR_SPLAT(x[r + 1]);
                s0 += v * w0;
                s1 += v * w1;
                t0 += u * w2;
                t1 += u * w3;
            }
            if (r < k) {
                gr_vec w0, w1;
                memcpy(&w0, w[r] + c0 + j, sizeof w0);
                memcpy(&w1, w[r] + c0 + j + GR_LANES, sizeof w1);
                const gr_vec v = GR_SPLAT(x[r]);
                s0 += v * w0;
                s1 += v * w1;
            }
            gr_vec acc[1][2] = {{s0 + t0, s1 + t1}};
            gr_store(acc, 1, out + j, 0, GR_PANEL, accumulate);
        }
        for (; j < n; ++j) {
            GR_T s = 0;
            for (int r = 0; r < k; ++r) s += x[r] * w[r][c0 + j];
            out[j] = accumulate ? out[j] + s : s;
        }
    }
}

// All threads of a call wait here until every one arrives; spinning, as a step is short.
typedef struct {
    atomic_int arrived, phase;
    int threads;
} gr_barrier;

static void gr_barrier_wait(gr_barrier* b) {
    const int phase = atomic_load_explicit(&b->phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == b->threads - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&b->phase, phase + 1, memory_order_release);
        return;
    }
    for (unsigned spins = 1; atomic_load_explicit(&b->phase, memory_order_acquire) == phase;
         ++spins)
        if (spins % 1024 == 0) sched_yield(); else GR_PAUSE();  // let an oversubscribed core go
}

// One call's threads: each runs part(ctx, id) for id in [0, threads), the caller being id 0.
typedef struct {
    void (*part)(void*, int);
    void* ctx;
    int id;
    atomic_int* go;  // 1: run, -1: a thread could not be started, return at once
} gr_job;

static void* gr_thread_main(void* arg) {
    gr_job* job = (gr_job*)arg;
    int go;
    while ((go = atomic_load_explicit(job->go, memory_order_acquire)) == 0) GR_PAUSE();
    if (go > 0) job->part(job->ctx, job->id);
    return NULL;
}

// Runs part(ctx, id) on `threads` threads; returns 0, or -1 (nothing run) when the system
// would not start them all.
static int gr_run_threads(int threads, void (*part)(void*, int), void* ctx) {
    pthread_t handles[GR_MAX_THREADS];
    gr_job jobs[GR_MAX_THREADS];
    atomic_int go;
    atomic_init(&go, 0);
    int started = 1;
    for (; started < threads; ++started) {
        jobs[started] = (gr_job){part, ctx, started, &go};
        if (pthread_create(&handles[started], NULL, gr_thread_main, &jobs[started])) break;
    }
    const int ok = started == threads;
    atomic_store_explicit(&go, ok ? 1 : -1, memory_order_release);
    if (ok) part(ctx, 0);
    for (int i = 1; i < started; ++i) pthread_join(handles[i], NULL);
    return ok ? 0 : -1;
}

#endif
