// graphrnn: the CUDA math primitives the activation records use, then the activations
// themselves: "activation_table.cuh" is generated from graphrnn/ops/activations.py by
// graphrnn/backends/activation_c.py (gr_act_NAME, gr_dact_NAME, the GR_ACT_* codes and
// gr_activate), and put in place of its #include by the loader (codegen.expand_includes).
// Shared by the hand-written kernels (softmax.cu, hopfield_async.cu) and the generated fused
// kernels. sigmoid(x) = tanh(x / 2) / 2 + 1/2 here (the host's is 1 / (1 + exp(-x))).
// Compiles with nvcc, with NVRTC (CuPy RawModule) and, for the tests, as host C++.
#ifndef GRAPHRNN_ACTIVATIONS_CUH
#define GRAPHRNN_ACTIVATIONS_CUH

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define GR_DEVICE __device__ __forceinline__
#else
#include <math.h>
#define GR_DEVICE inline
#endif

typedef long long gr_index;

GR_DEVICE float gr_tanh(float x) { return tanhf(x); }
GR_DEVICE double gr_tanh(double x) { return tanh(x); }
GR_DEVICE float gr_exp(float x) { return expf(x); }
GR_DEVICE double gr_exp(double x) { return exp(x); }
GR_DEVICE float gr_expm1(float x) { return expm1f(x); }
GR_DEVICE double gr_expm1(double x) { return expm1(x); }
GR_DEVICE float gr_log1p(float x) { return log1pf(x); }
GR_DEVICE double gr_log1p(double x) { return log1p(x); }
GR_DEVICE float gr_abs(float x) { return fabsf(x); }
GR_DEVICE double gr_abs(double x) { return fabs(x); }

template <typename T> GR_DEVICE T gr_sigmoid(T x) {
    return gr_tanh(x * (T)0.5) * (T)0.5 + (T)0.5;
}

#include "activation_table.cuh"

// += from threads that may share the element (delayed gradient rows of a multi-step window)
template <typename T> GR_DEVICE void gr_atomic_add(T* p, T v) { atomicAdd(p, v); }

#endif  // GRAPHRNN_ACTIVATIONS_CUH
