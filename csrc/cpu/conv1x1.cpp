// conv1x1 on the CPU: the 1x1 channel reduction (R = S = 1, stride 1, pad 0,
// groups 1), float32 and float64 (p.dtype).
//
//   x (N, C, H, W)   w (K, C) (stored as (K, C, 1, 1))   b (K)   y (N, K, H, W)
//   per image n, with HW = H W:  y[n] (K x HW) = w (K x C) . x[n] (C x HW) + b
//   backward:  gx[n] = w^T gy[n],  gw = sum_n gy[n] x[n]^T,  gb = sum_n,hw gy
//
// Variants (p.variant):
//   reference  plain loops over (n, k) / (n, c) / k with double accumulators.
//   fast       packed GEMM over channels, no im2col: it runs the packed-GEMM
//              drivers of conv2d.cpp (csrc/cpu/isa/conv_gemm.h), whose forward
//              reads the rows of x in place as the GEMM's B (or, with a long
//              reduction on a small map, runs on channel lanes), whose weight
//              gradient reduces over pixels, and whose data gradient is the
//              forward GEMM with w^T; the same micro-kernels do the FMAs.
#include <cstdint>
#include <vector>

#include "common/check.h"
#include "common/kernels.h"
#include "cpu/isa/conv_gemm.h"

namespace fastconv::cpu {
namespace {

// ---- reference ---------------------------------------------------------------

template <typename T>
void ref_forward(const ConvParams& p, int nt) {
  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  const T* b = static_cast<const T*>(p.b);
  T* y = static_cast<T*>(p.y);
  const int64_t HW = p.H * p.W;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nk = 0; nk < p.N * p.K; ++nk) {
    const int64_t n = nk / p.K, k = nk % p.K;
    std::vector<double> acc(size_t(HW), b ? double(b[k]) : 0.0);
    for (int64_t c = 0; c < p.C; ++c) {
      const double wv = double(w[k * p.C + c]);
      const T* xr = x + (n * p.C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) acc[size_t(i)] += wv * double(xr[i]);
    }
    for (int64_t i = 0; i < HW; ++i) y[nk * HW + i] = T(acc[size_t(i)]);
  }
}

template <typename T>
void ref_backward(const ConvParams& p, int nt) {
  const T* gy = static_cast<const T*>(p.gy);
  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  T* gx = static_cast<T*>(p.gx);
  T* gw = static_cast<T*>(p.gw);
  T* gb = static_cast<T*>(p.gb);
  const int64_t HW = p.H * p.W;
  if (gx) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t nc = 0; nc < p.N * p.C; ++nc) {
      const int64_t n = nc / p.C, c = nc % p.C;
      std::vector<double> acc(size_t(HW), 0.0);
      for (int64_t k = 0; k < p.K; ++k) {
        const double wv = double(w[k * p.C + c]);
        const T* gr = gy + (n * p.K + k) * HW;
        for (int64_t i = 0; i < HW; ++i) acc[size_t(i)] += wv * double(gr[i]);
      }
      for (int64_t i = 0; i < HW; ++i) gx[nc * HW + i] = T(acc[size_t(i)]);
    }
  }
  if (gw || gb) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < p.K; ++k) {
      if (gb) {
        double acc = 0.0;
        for (int64_t n = 0; n < p.N; ++n)
          for (int64_t i = 0; i < HW; ++i) acc += double(gy[(n * p.K + k) * HW + i]);
        gb[k] = T(acc);
      }
      if (gw)
        for (int64_t c = 0; c < p.C; ++c) {
          double acc = 0.0;
          for (int64_t n = 0; n < p.N; ++n) {
            const T* gr = gy + (n * p.K + k) * HW;
            const T* xr = x + (n * p.C + c) * HW;
            for (int64_t i = 0; i < HW; ++i) acc += double(gr[i]) * double(xr[i]);
          }
          gw[k * p.C + c] = T(acc);
        }
    }
  }
}

// ---- fast: the packed GEMM drivers with a 1x1 geometry -------------------------

ConvParams as_1x1(const ConvParams& p) {
  ConvParams q = p;
  q.R = q.S = 1;
  q.P = p.H;
  q.Q = p.W;
  q.stride_h = q.stride_w = 1;
  q.pad_h = q.pad_w = 0;
  q.dil_h = q.dil_w = 1;
  q.groups = 1;
  return q;
}

int threads_of(const ExecContext& ctx) { return ctx.num_threads < 1 ? 1 : ctx.num_threads; }

void check_dtype(const ConvParams& p) {
  FC_CHECK(p.dtype == DType::f32 || p.dtype == DType::f64, "input",
           "the CPU conv1x1 supports float32 and float64 only");
}

}  // namespace

// ---- entry points --------------------------------------------------------------

void conv1x1_forward(const ConvParams& p, const ExecContext& ctx) {
  check_dtype(p);
  const ConvParams q = as_1x1(p);
  if (q.variant == Variant::reference) {
    if (q.dtype == DType::f64) ref_forward<double>(q, threads_of(ctx));
    else ref_forward<float>(q, threads_of(ctx));
    return;
  }
  detail::conv2d_fast_forward(q, ctx);
}

void conv1x1_backward(const ConvParams& p, const ExecContext& ctx) {
  check_dtype(p);
  const ConvParams q = as_1x1(p);
  if (q.variant == Variant::reference) {
    if (q.dtype == DType::f64) ref_backward<double>(q, threads_of(ctx));
    else ref_backward<float>(q, threads_of(ctx));
    return;
  }
  detail::conv2d_fast_backward(q, ctx);
}

}  // namespace fastconv::cpu
