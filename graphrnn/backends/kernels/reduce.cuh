// graphrnn: block-wide reductions for kernels that run one block per row (softmax.cu,
// hopfield_async.cu). blockDim.x must be a power of two no larger than GR_BLOCK; ``red`` is a
// __shared__ array of GR_BLOCK elements. Every thread of the block gets the result.
#ifndef GRAPHRNN_REDUCE_CUH
#define GRAPHRNN_REDUCE_CUH

#include "activations.cuh"

#define GR_BLOCK 256

template <typename T> GR_DEVICE T gr_block_sum(T v, T* red) {
    const unsigned tid = threadIdx.x;
    red[tid] = v;
    __syncthreads();
    for (unsigned s = blockDim.x >> 1; s > 0; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        __syncthreads();
    }
    const T r = red[0];
    __syncthreads();
    return r;
}

template <typename T> GR_DEVICE T gr_block_max(T v, T* red) {
    const unsigned tid = threadIdx.x;
    red[tid] = v;
    __syncthreads();
    for (unsigned s = blockDim.x >> 1; s > 0; s >>= 1) {
        if (tid < s && red[tid + s] > red[tid]) red[tid] = red[tid + s];
        __syncthreads();
    }
    const T r = red[0];
    __syncthreads();
    return r;
}

#endif  // GRAPHRNN_REDUCE_CUH
