// graphrnn: row softmax, forward and backward, one block per row of ``cols`` elements.
// NumPy twin: graphrnn/kernels_numpy.py (softmax_forward, softmax_backward). Semantics as
// graphrnn/ops/activations.py: y = exp(x - max x) / sum exp(x - max x); with a leak a,
// y = a * softmax(x) + (1 - a) * prev. Backward: with a leak, gprev += (1 - a) g and g <- a g;
// then dx = g * s - s * sum(g * s), where s = softmax(x).
// Pointers are bases plus element offsets (``*_off``), so one launch covers rows
// [off, off + rows * cols) of each array and the same arrays serve every step.
#include "activations.cuh"
#include "reduce.cuh"

template <typename T>
GR_DEVICE void gr_row_stats(const T* x, int cols, T* red, T* mx, T* total) {
    T m = x[0];
    for (int j = threadIdx.x; j < cols; j += blockDim.x) m = x[j] > m ? x[j] : m;
    m = gr_block_max(m, red);
    T s = (T)0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) s += gr_exp(x[j] - m);
    *mx = m;
    *total = gr_block_sum(s, red);
}

template <typename T>
GR_DEVICE void gr_softmax_forward(const T* x, T* y, const T* prev, int rows, int cols, T leak,
                                  T one_minus_leak, int has_leak, T* red) {
    const int row = blockIdx.x;
    if (row >= rows) return;  // uniform per block: no thread reaches a barrier alone
    const T* xr = x + (gr_index)row * cols;
    T* yr = y + (gr_index)row * cols;
    const T* pr = prev + (gr_index)row * cols;
    T m, s;
    gr_row_stats(xr, cols, red, &m, &s);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        T v = gr_exp(xr[j] - m) / s;
        if (has_leak) v = v * leak + pr[j] * one_minus_leak;
        yr[j] = v;
    }
}

template <typename T>
GR_DEVICE void gr_softmax_backward(const T* x, const T* y, const T* g, T* dx, T* gprev,
                                   int rows, int cols, T leak, T one_minus_leak, int has_leak,
                                   T* red) {
    const int row = blockIdx.x;
    if (row >= rows) return;
    const gr_index o = (gr_index)row * cols;
    T m = (T)0, s = (T)1;
    if (has_leak) gr_row_stats(x + o, cols, red, &m, &s);
    T dot = (T)0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const T gj = has_leak ? g[o + j] * leak : g[o + j];
        const T vj = has_leak ? gr_exp(x[o + j] - m) / s : y[o + j];
        dot += gj * vj;
        if (has_leak) gprev[o + j] += one_minus_leak * g[o + j];
    }
    dot = gr_block_sum(dot, red);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const T gj = has_leak ? g[o + j] * leak : g[o + j];
        const T vj = has_leak ? gr_exp(x[o + j] - m) / s : y[o + j];
        dx[o + j] = gj * vj - vj * dot;
    }
}

#define GR_SOFTMAX_KERNELS(T, SUFFIX)                                                         \
    extern "C" __global__ void gr_softmax_forward_##SUFFIX(                                  \
        const T* x, gr_index x_off, T* y, gr_index y_off, const T* prev, gr_index prev_off,  \
        int rows, int cols, T leak, T one_minus_leak, int has_leak) {                        \
        __shared__ T red[GR_BLOCK];                                                          \
        gr_softmax_forward(x + x_off, y + y_off, prev + prev_off, rows, cols, leak,          \
                           one_minus_leak, has_leak, red);                                   \
    }                                                                                        \
    extern "C" __global__ void gr_softmax_backward_##SUFFIX(                                 \
        const T* x, gr_index x_off, const T* y, gr_index y_off, const T* g, gr_index g_off,  \
        T* dx, gr_index dx_off, T* gprev, gr_index gprev_off, int rows, int cols, T leak,    \
        T one_minus_leak, int has_leak) {                                                    \
        __shared__ T red[GR_BLOCK];                                                          \
        gr_softmax_backward(x + x_off, y + y_off, g + g_off, dx + dx_off, gprev + gprev_off, \
                            rows, cols, leak, one_minus_leak, has_leak, red);                \
    }

GR_SOFTMAX_KERNELS(float, f32)
GR_SOFTMAX_KERNELS(double, f64)
