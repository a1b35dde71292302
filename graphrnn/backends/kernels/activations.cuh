// graphrnn: activations and their local derivatives as device functions, shared by the
// hand-written kernels (softmax.cu, hopfield_async.cu) and the generated fused kernels
// (graphrnn/codegen_cuda.py). The arithmetic follows graphrnn/ops/activations.py step for step
// (sigmoid(x) = tanh(x / 2) / 2 + 1/2; straight-through derivatives for sign/step/bernoulli).
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

// activation codes (hopfield_async.cu takes one as an argument)
#define GR_ACT_IDENTITY 0
#define GR_ACT_TANH 1
#define GR_ACT_SIGMOID 2
#define GR_ACT_RELU 3
#define GR_ACT_SIGN 4
#define GR_ACT_STEP 5
#define GR_ACT_BERNOULLI 6

GR_DEVICE float gr_tanh(float x) { return tanhf(x); }
GR_DEVICE double gr_tanh(double x) { return tanh(x); }
GR_DEVICE float gr_exp(float x) { return expf(x); }
GR_DEVICE double gr_exp(double x) { return exp(x); }

template <typename T> GR_DEVICE T gr_sigmoid(T x) {
    return gr_tanh(x * (T)0.5) * (T)0.5 + (T)0.5;
}
template <typename T> GR_DEVICE T gr_relu(T x) { return x > (T)0 ? x : (T)0; }
template <typename T> GR_DEVICE T gr_sign(T x) { return x >= (T)0 ? (T)1 : (T)-1; }
template <typename T> GR_DEVICE T gr_step(T x) { return x >= (T)0 ? (T)1 : (T)0; }
// fires (1) where the run's uniform draw u is below sigmoid(x / temperature)
template <typename T> GR_DEVICE T gr_bernoulli(T x, T u, T inv_temperature) {
    return u < gr_sigmoid(x * inv_temperature) ? (T)1 : (T)0;
}

// g * act'(x) given the value v = act(x) (tanh, sigmoid) or the input x (relu, bernoulli)
template <typename T> GR_DEVICE T gr_dtanh(T g, T v) { return ((T)1 - v * v) * g; }
template <typename T> GR_DEVICE T gr_dsigmoid(T g, T v) { return ((T)1 - v) * v * g; }
template <typename T> GR_DEVICE T gr_drelu(T g, T x) { return x > (T)0 ? g : (T)0; }
template <typename T> GR_DEVICE T gr_dbernoulli(T g, T x, T inv_temperature, T temperature) {
    T s = gr_sigmoid(x * inv_temperature);
    return s * ((T)1 - s) * (g / temperature);
}

// act(x) by code, for kernels that take the activation as an argument
template <typename T> GR_DEVICE T gr_activate(int code, T x, T u, T inv_temperature) {
    switch (code) {
        case GR_ACT_TANH: return gr_tanh(x);
        case GR_ACT_SIGMOID: return gr_sigmoid(x);
        case GR_ACT_RELU: return gr_relu(x);
        case GR_ACT_SIGN: return gr_sign(x);
        case GR_ACT_STEP: return gr_step(x);
        case GR_ACT_BERNOULLI: return gr_bernoulli(x, u, inv_temperature);
        default: return x;
    }
}

// += from threads that may share the element (delayed gradient rows of a multi-step window)
template <typename T> GR_DEVICE void gr_atomic_add(T* p, T v) { atomicAdd(p, v); }

#endif  // GRAPHRNN_ACTIVATIONS_CUH
