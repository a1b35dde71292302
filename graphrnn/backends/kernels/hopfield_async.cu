// graphrnn: one asynchronous (Hopfield) update step, one block per batch row.
// NumPy twin: graphrnn/kernels_numpy.py (hopfield_async_step). Semantics as
// NodeUpdateKernel._asynchronous (graphrnn/ops/node_update.py) and the reference interpreter:
// the state starts as the previous step's, then neurons i = order[0], order[1], ... update one
// at a time, each seeing the newest values:
//     net[i] += sum_j W[i, j] s[j];   s[i] = act(net[i])   (with a leak a: a act + (1 - a) prev[i])
// ``net`` holds the node's other terms and bias on entry (the generated net-only kernel writes
// it) and the full net input on exit. ``out`` is the node's history buffer: row ``out_row`` is
// written, row ``out_row - 1`` is the previous state. Activations: every element-wise record of
// graphrnn/ops/activations.py, by its code ``act`` (bernoulli with the run's uniforms ``u``;
// ``alpha``, ``beta`` the node's keys).
#include "activations.cuh"
#include "reduce.cuh"

template <typename T>
GR_DEVICE void gr_hopfield_step(T* out, gr_index out_row, T* net, gr_index net_row, const T* W,
                                const int* order, const T* u, gr_index u_row, int has_u, int B,
                                int N, int act, T inv_temperature, T leak, T one_minus_leak,
                                int has_leak, T alpha, T beta, T* red) {
    const int b = blockIdx.x;
    if (b >= B) return;  // uniform per block
    T* s = out + (out_row * B + b) * N;
    const T* prev = out + ((out_row - 1) * B + b) * N;
    T* h = net + (net_row * B + b) * N;
    const T* ub = has_u ? u + (u_row * B + b) * N : u;
    for (int j = threadIdx.x; j < N; j += blockDim.x) s[j] = prev[j];
    __syncthreads();
    for (int k = 0; k < N; ++k) {
        const int i = order[k];
        const T* wi = W + (gr_index)i * N;
        T partial = (T)0;
        for (int j = threadIdx.x; j < N; j += blockDim.x) partial += s[j] * wi[j];
        const T total = gr_block_sum(partial, red);
        if (threadIdx.x == 0) {
            const T x = h[i] + total;
            h[i] = x;
            T a = gr_activate(act, x, has_u ? ub[i] : (T)0, alpha, beta, inv_temperature);
            if (has_leak) a = a * leak + prev[i] * one_minus_leak;
            s[i] = a;
        }
        __syncthreads();
    }
}

#define GR_HOPFIELD_KERNEL(T, SUFFIX)                                                        \
    extern "C" __global__ void gr_hopfield_async_##SUFFIX(                                  \
        T* out, gr_index out_row, T* net, gr_index net_row, const T* W, const int* order,   \
        gr_index order_off, const T* u, gr_index u_row, int has_u, int B, int N, int act,   \
        T inv_temperature, T leak, T one_minus_leak, int has_leak, T alpha, T beta) {       \
        __shared__ T red[GR_BLOCK];                                                         \
        gr_hopfield_step(out, out_row, net, net_row, W, order + order_off, u, u_row, has_u, \
                         B, N, act, inv_temperature, leak, one_minus_leak, has_leak, alpha,  \
                         beta, red);                                                        \
    }

GR_HOPFIELD_KERNEL(float, f32)
GR_HOPFIELD_KERNEL(double, f64)
