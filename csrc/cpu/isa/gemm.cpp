// Register-tiled GEMM micro-kernel, compiled once per ISA (FASTCONV_ISA =
// avx512 / avx2 / generic; see CMakeLists.txt) into namespace
// fastconv::cpu::<isa>, plus that ISA's KernelTable (cpu_features.h).
//
//   C[i][j] (+)= sum_k A[k][i] * B[k][j]      i < MR, j < NR = NRV * L
//   A: packed panel  kc x MR  (conv: weights / gy, one value broadcast per row)
//   B: packed strip  kc x NR  (conv: im2col pixels, loaded as vectors), 64-byte aligned
//   C: row-major, leading dimension ldc (conv: y rows, or gw rows)
// MR x NRV accumulators live in registers for the whole k loop:
//   avx512: 8 x 3 zmm (24 accumulators of 32), avx2: 6 x 2 ymm (12 of 16),
//   generic: 6 x 2 16-byte vectors (GCC vector extensions, no -m flags; SSE2 on x86-64).
// Partial tiles (m_valid < MR or n_valid < NR) run the same kernel on a
// stack tile and copy the valid corner, so every element of C is summed in
// the same order whatever tile it lands in.
#include <cstdint>
#include <cstring>

#include "common/cpu_features.h"

#define FASTCONV_STR2(x) #x
#define FASTCONV_STR(x) FASTCONV_STR2(x)
#define FASTCONV_ISA_NAME_STR FASTCONV_STR(FASTCONV_ISA)

#ifndef FASTCONV_ISA
#error "FASTCONV_ISA must name the instruction set being compiled"
#endif

namespace fastconv::cpu::FASTCONV_ISA {
namespace {

#if defined(FASTCONV_ISA_avx512)
constexpr int kVecBytes = 64;
constexpr int kMR = 8, kNRV = 3;
#elif defined(FASTCONV_ISA_avx2)
constexpr int kVecBytes = 32;
constexpr int kMR = 6, kNRV = 2;
#else
constexpr int kVecBytes = 16;
constexpr int kMR = 6, kNRV = 2;
#endif

template <typename T, int MR, int NRV>
__attribute__((always_inline)) inline void tile_full(int64_t kc, const T* __restrict A,
                                                     const T* __restrict B, T* __restrict C,
                                                     int64_t ldc, bool acc, const T* __restrict bias) {
  constexpr int L = kVecBytes / int(sizeof(T));
  constexpr int NR = L * NRV;
  typedef T V __attribute__((vector_size(kVecBytes)));
  typedef T VU __attribute__((vector_size(kVecBytes), aligned(alignof(T))));
  V c[MR][NRV];
  if (acc) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NRV; ++j) c[i][j] = *reinterpret_cast<const VU*>(C + i * ldc + j * L);
  } else {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      V bv = V{} + (bias ? bias[i] : T(0));
#pragma GCC unroll 8
      for (int j = 0; j < NRV; ++j) c[i][j] = bv;
    }
  }
  const T* a = A;
  const V* b = reinterpret_cast<const V*>(__builtin_assume_aligned(B, kVecBytes));
  for (int64_t k = 0; k < kc; ++k) {
    V bk[NRV];
#pragma GCC unroll 8
    for (int j = 0; j < NRV; ++j) bk[j] = b[j];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      V ai = V{} + a[i];
#pragma GCC unroll 8
      for (int j = 0; j < NRV; ++j) c[i][j] += ai * bk[j];
    }
    a += MR;
    b += NRV;
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NRV; ++j) *reinterpret_cast<VU*>(C + i * ldc + j * L) = c[i][j];
  (void)NR;
}

template <typename T>
void tile(int64_t kc, const T* A, const T* B, T* C, int64_t ldc, int m_valid, int n_valid,
          bool acc, const T* bias) {
  constexpr int L = kVecBytes / int(sizeof(T));
  constexpr int NR = L * kNRV;
  if (m_valid == kMR && n_valid == NR) {
    tile_full<T, kMR, kNRV>(kc, A, B, C, ldc, acc, bias);
    return;
  }
  alignas(64) T tmp[kMR * NR];
  T bpad[kMR];
  for (int i = 0; i < kMR; ++i) bpad[i] = (bias && i < m_valid) ? bias[i] : T(0);
  if (acc) {
    std::memset(tmp, 0, sizeof tmp);
    for (int i = 0; i < m_valid; ++i)
      for (int j = 0; j < n_valid; ++j) tmp[i * NR + j] = C[i * ldc + j];
  }
  tile_full<T, kMR, kNRV>(kc, A, B, tmp, NR, acc, bias ? bpad : nullptr);
  for (int i = 0; i < m_valid; ++i)
    for (int j = 0; j < n_valid; ++j) C[i * ldc + j] = tmp[i * NR + j];
}

}  // namespace

double fma_peak(int num_threads, bool f64, double seconds);  // peak.cpp

const KernelTable& table() {
  static const KernelTable t = [] {
    KernelTable k;
    k.name = FASTCONV_ISA_NAME_STR;
    k.sgemm.mr = kMR;
    k.sgemm.nr = kNRV * kVecBytes / int(sizeof(float));
    k.sgemm.fn = &tile<float>;
    k.dgemm.mr = kMR;
    k.dgemm.nr = kNRV * kVecBytes / int(sizeof(double));
    k.dgemm.fn = &tile<double>;
    k.fma_peak = &fma_peak;
    return k;
  }();
  return t;
}

}  // namespace fastconv::cpu::FASTCONV_ISA
