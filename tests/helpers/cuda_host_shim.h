// Test-only: lets the CUDA sources in kernels/ and the generated fused kernels compile as host
// C++ (g++ -include this file), so the tests can run them on the CPU over NumPy arrays. A
// "launch" sets blockIdx/threadIdx and calls the kernel once per thread, in order; kernels that
// cooperate through __syncthreads() are run with one thread per block.
#pragma once
#include <math.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict
#define __syncthreads() ((void)0)

struct gr_host_dim3 { unsigned x, y, z; };
static gr_host_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0};
static gr_host_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};

extern "C" void gr_host_set(unsigned block, unsigned thread, unsigned block_dim,
                            unsigned grid_dim) {
    blockIdx.x = block;
    threadIdx.x = thread;
    blockDim.x = block_dim;
    gridDim.x = grid_dim;
}

template <typename T> inline T atomicAdd(T* p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
