// graphrnn: math primitives for the CPU kernels, the C twin of activations.cuh. The NumPy backend
// compiles generated fused chains (graphrnn/codegen.py, target "host") with this header: loops
// over (t, b, j) that the C compiler vectorises, so float exp/tanh/sigmoid are written here
// branch-free (NumPy's float32 exp and tanh run at scalar speed on some CPUs); double uses
// libm.
// The activations themselves are the records' C text (the generated "activation_table.h").
#ifndef GRAPHRNN_HOST_H
#define GRAPHRNN_HOST_H

#include <math.h>
#include <stdint.h>

typedef long long gr_index;

// "no two iterations of the next loop touch the same element": each (b, j) is independent
#if defined(__clang__)
#define GR_VECTORIZE _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define GR_VECTORIZE _Pragma("GCC ivdep")
#else
#define GR_VECTORIZE
#endif

// e^x for float, vectorisable: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two parts so
// n ln2 is exact), e^r by its Taylor series to r^7 (truncation < 2^-27 relative), times 2^n
// built in the exponent bits. n is rounded by adding 1.5 * 2^23, whose float then holds n in
// its low bits: no float-to-int conversion, so NaN passes through as NaN. Within 1 ulp on
// [-87, 88]; saturates outside that range (at e^88 and e^-87.3, whose uses here, sigmoid and
// tanh, are then exactly 1, 0 or +-1).
static inline float gr_expf(float x) {
    const float xc = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
    const float shift = 12582912.0f;  // 1.5 * 2^23
    union { float f; int32_t i; } k, scale;
    k.f = xc * 1.44269504f + shift;
    const float n = k.f - shift;
    const float r = (xc - n * 0.693145752f) - n * 1.42860677e-6f;
    float p = 1.98412698e-4f;  // 1/7!
    p = p * r + 1.38888889e-3f;
    p = p * r + 8.33333333e-3f;
    p = p * r + 4.16666667e-2f;
    p = p * r + 1.66666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    scale.i = (k.i - 0x4b400000 + 127) << 23;  // 0x4b400000: the bits of 1.5 * 2^23
    return p * scale.f;
}

// tanh for float: x P(x^2) / Q(x^2), a rational fit (degree 4 over 4 in x^2, fitted for
// relative error on [0, 9]; graphrnn's own coefficients) on x clamped to [-9, 9], where
// tanh rounds to +-1 in float. No exp and no branch; within 8 ulp of tanh, odd, exactly
// bounded by 1; NaN in, NaN out.
static inline float gr_tanhf(float x) {
    const float c = x < 9.0f ? (x > -9.0f ? x : -9.0f) : 9.0f;
    const float s = c * c;
    const float p = (((1.33533667e-8f * s + 2.06082175e-5f) * s + 3.49553989e-3f) * s
                     + 1.33809868e-1f) * s + 9.99999980e-1f;
    const float q = (((7.77604660e-7f * s + 3.28555266e-4f) * s + 2.58768040e-2f) * s
                     + 4.67143025e-1f) * s + 1.0f;
    const float t = c * p / q;
    const float y = t < 1.0f ? (t > -1.0f ? t : -1.0f) : 1.0f;
    return x == x ? y : x;
}

static inline float gr_sigmoidf(float x) { return 1.0f / (1.0f + gr_expf(-x)); }
static inline double gr_sigmoidd(double x) { return 1.0 / (1.0 + exp(-x)); }

#define gr_exp(x) _Generic((x), float: gr_expf, default: exp)(x)
#define gr_tanh(x) _Generic((x), float: gr_tanhf, default: tanh)(x)
#define gr_sigmoid(x) _Generic((x), float: gr_sigmoidf, default: gr_sigmoidd)(x)
#define gr_expm1(x) _Generic((x), float: expm1f, default: expm1)(x)
#define gr_log1p(x) _Generic((x), float: log1pf, default: log1p)(x)
#define gr_abs(x) _Generic((x), float: fabsf, default: fabs)(x)

// the activations (gr_act_NAME, gr_dact_NAME), generated from graphrnn/ops/activations.py by
// graphrnn/backends/activation_c.py and put in place of this #include by the loader
#include "activation_table.h"

// one thread runs the whole window in order, so a shared delayed row is a plain +=
#define gr_atomic_add(p, v) (*(p) += (v))

#endif  // GRAPHRNN_HOST_H
