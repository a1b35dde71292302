// graphrnn: a recurrent stage's whole time loop in C, on threads (graphrnn/backends/host_loop.py
// drives it). The stage is a sequence of GEMMs and element-wise chains (generated kernels of
// graphrnn/codegen.py), each GEMM read by one chain. Each thread owns a range of every chain's
// columns and computes just the GEMM columns its ranges read, so the threads meet only after
// each chain (forward), and after each chain and each run of GEMMs (backward). Weights are
// read in place, through a table of their rows (the caller's arrays: nothing to copy, nothing
// stale), and packed once per call where a call has rows enough to repay it (`packed` set).
// Define GR_T and GR_LANES first (see host_loop.h).
#include "host_loop.h"

// a generated chain kernel: steps [t0, t0 + steps), row stride B, columns [j0, j1) of the
// batch rows [0, rows) (a layer-normalised chain: rows [j0, min(j1, rows)))
typedef void (*gr_chain_fn)(int t0, int steps, int B, void* const* P, int j0, int j1,
                            int rows);

// One GEMM of the loop: at step t, C[t] (= or +=) A[t] @ X' with X' the weight packed.
// Forward: A = the source rows (read at the MatMul's delay), C = the GEMM buffer, X' =
// weight^T. Backward: A = the GEMM buffer's gradient, C = the source's gradient (at the
// delay; NULL: the source has none, nothing to do), X' = weight.
typedef struct {
    const GR_T* a;     // A at step 0
    GR_T* c;           // C at step 0
    const GR_T* const* rows;  // the (out, src) weight: row j (src values) at rows[j]
    GR_T* packed;      // room for this GEMM's panels (every thread's); NULL: read rows in place
    long a_step, c_step;  // elements from one step to the next: B * k, B * n
    int k, n;          // A's and C's widths
    int transposed;    // X' is weight^T (forward)
    int accumulate;    // C += (backward)
} gr_loop_gemm;

// A thread's share of one GEMM: C's columns [col, col + count), panels at packed + offset.
typedef struct {
    int thread, gemm, col, count;
    long offset;
} gr_loop_range;

// One chain: its kernel (forward or backward; NULL: a backward with nothing to send), the
// kernel's pointer table, and its columns by thread: thread i owns [bounds[i], bounds[i + 1]).
typedef struct {
    gr_chain_fn fn;
    void* const* args;
    const int* bounds;
} gr_loop_chain;

// The stage's ops in order: GEMM `index` (chain 0) or chain `index` (chain 1; 2: a chain whose
// threads split the batch rows, after a GEMM: every thread waits for all its columns first)
typedef struct {
    int chain, index;
} gr_loop_op;

// An array the loop leaves alone past each sequence's end: at step t, its rows [rows[t], batch)
// are zeroed after the call (gr_loop_zero), so that what reads it after the loop sees zeros.
typedef struct {
    GR_T* base;  // step 0
    long step;   // elements from one step to the next: batch * width
    int width;   // elements of a row
} gr_loop_pad;

typedef struct {
    gr_loop_gemm* gemms;
    const gr_loop_chain* chains;
    const gr_loop_range* ranges;
    const gr_loop_op* ops;
    int nops, nranges, threads, batch, backward;
    int reverse;  // an anti-causal loop: forward from the last step down, backward from the first up
    // per step, the rows computed: [0, rows[t]) (a batch sorted by decreasing length, rows
    // past each sequence's end left alone); NULL: all `batch` rows
    const int* rows;
    const gr_loop_pad* pads;  // what gr_loop_zero zeroes
    int npads;
} gr_loop;

// the rows step tt computes
static inline int gr_loop_rows(const gr_loop* L, int tt) {
    return L->rows ? L->rows[tt] : L->batch;
}

typedef struct {
    const gr_loop* loop;
    int t0, steps;
    gr_barrier barrier;
} gr_call;

// this thread's columns of GEMM `gemm` at step tt
static void gr_loop_gemm_step(const gr_loop* L, int id, int gemm, int tt) {
    for (int i = 0; i < L->nranges; ++i) {
        const gr_loop_range* r = &L->ranges[i];
        if (r->thread != id || r->gemm != gemm) continue;
        const gr_loop_gemm* g = &L->gemms[gemm];
        if (!g->c) continue;
        const GR_T* a = g->a + tt * g->a_step;
        GR_T* c = g->c + tt * g->c_step + r->col;
        const int m = gr_loop_rows(L, tt);
        if (g->packed)
            gr_gemm(a, g->k, m, g->k, g->packed + r->offset, r->count, c, g->n,
                    g->accumulate);
        else if (g->transposed)
            gr_gemm_dot(a, g->k, m, g->k, g->rows, r->col, r->count, c, g->n,
                        g->accumulate);
        else
            gr_gemm_axpy(a, g->k, m, g->k, g->rows, r->col, r->count, c, g->n,
                         g->accumulate);
    }
}

static void gr_loop_chain_step(const gr_loop* L, int id, int chain, int tt) {
    const gr_loop_chain* ch = &L->chains[chain];
    if (ch->fn)
        ch->fn(tt, 1, L->batch, ch->args, ch->bounds[id], ch->bounds[id + 1],
               gr_loop_rows(L, tt));
}

static void gr_loop_part(void* arg, int id) {
    gr_call* call = (gr_call*)arg;
    const gr_loop* L = call->loop;
    for (int i = 0; i < L->nranges; ++i) {
        const gr_loop_range* r = &L->ranges[i];
        const gr_loop_gemm* g = &L->gemms[r->gemm];
        if (r->thread != id || !g->c || !g->packed) continue;
        gr_pack(g->rows, g->k, r->col, r->count, g->transposed, g->packed + r->offset);
    }
    // time runs down for a causal backward and an anti-causal forward: direction is data
    const int down = L->backward != L->reverse;
    for (int s = 0; s < call->steps; ++s) {
        const int tt = down ? call->t0 + call->steps - 1 - s : call->t0 + s;
        if (!L->backward) {
            // a chain reads the GEMM columns this thread computed; the next op may read any
            for (int o = 0; o < L->nops; ++o) {
                const gr_loop_op op = L->ops[o];
                if (op.chain) {
                    // 2: a chain split by batch rows reads GEMM columns of every thread
                    if (op.chain == 2) gr_barrier_wait(&call->barrier);
                    gr_loop_chain_step(L, id, op.index, tt);
                    gr_barrier_wait(&call->barrier);
                } else {
                    gr_loop_gemm_step(L, id, op.index, tt);
                }
            }
            continue;
        }
        for (int o = L->nops - 1; o >= 0; --o) {
            const gr_loop_op op = L->ops[o];
            if (op.chain) {
                gr_loop_chain_step(L, id, op.index, tt);
            } else {
                gr_loop_gemm_step(L, id, op.index, tt);
                if (o > 0 && !L->ops[o - 1].chain) continue;  // more GEMMs: no reader between
            }
            gr_barrier_wait(&call->barrier);  // every column of what the next op reads is done
        }
    }
}

// Steps [t0, t0 + steps) of the loop (from the last when backward != reverse). Returns 0, or
// -1 when the threads could not be started (then nothing ran).
int gr_loop_run(const gr_loop* L, int t0, int steps) {
    gr_call call;
    call.loop = L;
    call.t0 = t0;
    call.steps = steps;
    atomic_init(&call.barrier.arrived, 0);
    atomic_init(&call.barrier.phase, 0);
    call.barrier.threads = L->threads;
    if (L->threads == 1) {
        gr_loop_part(&call, 0);
        return 0;
    }
    return gr_run_threads(L->threads, gr_loop_part, &call);
}

// Zeroes steps [t0, t0 + steps) of the loop's pads past each row's end (rows[t] on); nothing
// without per-step rows. Returns 0.
int gr_loop_zero(const gr_loop* L, int t0, int steps) {
    if (!L->rows) return 0;
    for (int t = t0; t < t0 + steps; ++t) {
        const int r = L->rows[t];
        if (r >= L->batch) continue;
        for (int i = 0; i < L->npads; ++i) {
            const gr_loop_pad* p = &L->pads[i];
            memset(p->base + t * p->step + (long)r * p->width, 0,
                   sizeof(GR_T) * (size_t)(L->batch - r) * p->width);
        }
    }
    return 0;
}
