// graphrnn: a recurrent stage's whole time loop in C, on threads (graphrnn/backends/host_loop.py
// drives it). The stage is GEMMs from earlier steps' rows feeding one element-wise chain (a
// generated kernel of graphrnn/codegen.py); each thread owns a range of the chain's columns and
// computes just the GEMM columns those read, so a step needs one barrier forward (the next
// step's GEMMs read every thread's outputs) and two backward. Weights are packed once per call.
// Define GR_T and GR_LANES first (see host_loop.h).
#include "host_loop.h"

// a generated chain kernel: steps [t0, t0 + steps), batch B, columns [j0, j1)
typedef void (*gr_chain_fn)(int t0, int steps, int B, void* const* P, int j0, int j1);

// One GEMM of the loop: at step t, C[t] (= or +=) A[t] @ X' with X' the weight packed.
// Forward: A = the source rows (read at the MatMul's delay), C = the GEMM buffer, X' =
// weight^T. Backward: A = the GEMM buffer's gradient, C = the source's gradient (at the
// delay), X' = weight.
typedef struct {
    const GR_T* a;     // A at step 0
    GR_T* c;           // C at step 0
    const GR_T* weight;  // (out, src) row-major
    GR_T* packed;      // room for this GEMM's panels (every thread's)
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

typedef struct {
    gr_chain_fn chain;
    void* const* chain_args;
    const int* bounds;  // thread i owns the chain's columns [bounds[i], bounds[i + 1])
    gr_loop_gemm* gemms;
    const gr_loop_range* ranges;
    int threads, batch, nranges, backward;
} gr_loop;

typedef struct {
    const gr_loop* loop;
    int t0, steps;
    gr_barrier barrier;
} gr_call;

static void gr_gemms(const gr_loop* L, int id, int tt) {
    for (int i = 0; i < L->nranges; ++i) {
        const gr_loop_range* r = &L->ranges[i];
        if (r->thread != id) continue;
        const gr_loop_gemm* g = &L->gemms[r->gemm];
        gr_gemm(g->a + tt * g->a_step, g->k, L->batch, g->k, g->packed + r->offset, r->count,
                g->c + tt * g->c_step + r->col, g->n, g->accumulate);
    }
}

static void gr_loop_part(void* arg, int id) {
    gr_call* call = (gr_call*)arg;
    const gr_loop* L = call->loop;
    for (int i = 0; i < L->nranges; ++i) {
        const gr_loop_range* r = &L->ranges[i];
        if (r->thread != id) continue;
        const gr_loop_gemm* g = &L->gemms[r->gemm];
        const long ld = g->transposed ? g->k : g->n;
        gr_pack(g->weight, ld, g->k, r->col, r->count, g->transposed, g->packed + r->offset);
    }
    const int j0 = L->bounds[id], j1 = L->bounds[id + 1];
    for (int s = 0; s < call->steps; ++s) {
        if (!L->backward) {
            const int tt = call->t0 + s;
            gr_gemms(L, id, tt);  // the columns this thread's chain reads: its own
            L->chain(tt, 1, L->batch, L->chain_args, j0, j1);
        } else {
            const int tt = call->t0 + call->steps - 1 - s;
            L->chain(tt, 1, L->batch, L->chain_args, j0, j1);
            gr_barrier_wait(&call->barrier);  // every column of d GEMM buffer[tt] is written
            gr_gemms(L, id, tt);
        }
        gr_barrier_wait(&call->barrier);
    }
}

// Steps [t0, t0 + steps) of the loop (backward: from the last). Returns 0, or -1 when the
// threads could not be started (then nothing ran).
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
