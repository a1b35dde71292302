// graphrnn: the embedding (IR op Gather): a row gather forward and its gradient, a
// deterministic segmented sum over the rows sorted by token. NumPy twin:
// graphrnn/backends/kernels_numpy.py (gather_rows, scatter_add_sorted). Semantics as
// graphrnn/ops/gather.py: out[r] = scale * table[tok[r]]; d table[v] = scale * sum of d out[r]
// over the rows r with tok[r] = v.
// Token buffers are width 1 and hold the ids as numbers (exact to 2^24 in float32); the caller
// has checked them against the vocabulary. Pointers are bases plus element offsets (``*_off``).
#include "activations.cuh"

// Forward: one thread per (row, column), a grid-stride loop over rows * cols elements.
template <typename T>
GR_DEVICE void gr_gather_forward(const T* tok, const T* table, T* out, gr_index rows, int cols,
                                 T scale) {
    const gr_index n = rows * cols;
    const gr_index stride = (gr_index)blockDim.x * gridDim.x;
    for (gr_index i = (gr_index)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const gr_index r = i / cols;
        const int j = (int)(i - r * cols);
        out[i] = scale * table[(gr_index)tok[r] * cols + j];
    }
}

// Gradient: one block per distinct token (segment s of the sorted rows: ``order[starts[s]]``
// to ``order[starts[s + 1] - 1]``), its threads over the columns. Each sum runs over the
// segment's rows in sorted order (row order within a token: a stable sort), so the result is
// the same bits in every run; rows of tokens that never occur are left as they are (zero).
template <typename T>
GR_DEVICE void gr_gather_grad(const T* tok, const T* dout, const int* order, const int* starts,
                              int segments, int cols, T scale, T* grad) {
    const int s = blockIdx.x;
    if (s >= segments) return;
    const int first = starts[s], end = starts[s + 1];
    const gr_index v = (gr_index)tok[order[first]];
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        T acc = (T)0;
        for (int k = first; k < end; ++k) acc += dout[(gr_index)order[k] * cols + j];
        grad[v * cols + j] = scale * acc;
    }
}

#define GR_EMBEDDING_KERNELS(T, SUFFIX)                                                      \
    extern "C" __global__ void gr_gather_forward_##SUFFIX(                                  \
        const T* tok, gr_index tok_off, const T* table, T* out, gr_index out_off,           \
        gr_index rows, int cols, T scale) {                                                 \
        gr_gather_forward(tok + tok_off, table, out + out_off, rows, cols, scale);          \
    }                                                                                       \
    extern "C" __global__ void gr_gather_grad_##SUFFIX(                                     \
        const T* tok, gr_index tok_off, const T* dout, gr_index dout_off, const int* order, \
        const int* starts, int segments, int cols, T scale, T* grad) {                      \
        gr_gather_grad(tok + tok_off, dout + dout_off, order, starts, segments, cols, scale,\
                       grad);                                                               \
    }

GR_EMBEDDING_KERNELS(float, f32)
GR_EMBEDDING_KERNELS(double, f64)
