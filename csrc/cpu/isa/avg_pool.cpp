// Average pooling forward kernel of avg_pool2d.cpp, compiled once per ISA (see
// gemm.cpp); only the AVX-512 object defines it (cpu_features.h AvgTapsArgs):
//   x [N*C][H][W] -> y [N*C*P][Q], float32, 16 output columns of a row per
//   vector; each tap one masked load (column stride 2: two and a permute that
//   keeps the even lanes), the columns outside the row loaded as 0.
// Each lane sums its window as torch does: from +0, the window's rows inside
// the input, then its columns, in order (a padding column adds +0, which
// leaves every sum as it is, since none is -0), then divides by the divisor.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/cpu_features.h"
#include "cpu/isa/pool_lanes.h"
#if defined(FASTCONV_ISA_avx512)
#include <immintrin.h>
#endif

#ifndef FASTCONV_ISA
#error "FASTCONV_ISA must name the instruction set being compiled"
#endif

namespace fastconv::cpu::FASTCONV_ISA {

#if defined(FASTCONV_ISA_avx512)
namespace {

using pool_lanes::cols_in;

// The window sums of 16 output columns from input column c0 on, rows
// [h0, h1) (FULL: every tap's columns inside the row, plain loads; else loads
// masked by mk[kw][0 / 1]).
template <int SW, int KW, bool FULL>
__attribute__((always_inline)) inline __m512 window_sum(const float* xp, int64_t W, int64_t h0, int64_t h1,
                                                        int64_t c0, int64_t kwn, const uint16_t* mk,
                                                        __m512i evens) {
  __m512 s = _mm512_setzero_ps();
  const int64_t n = KW ? KW : kwn;
  for (int64_t ih = h0; ih < h1; ++ih) {
    const float* row = xp + ih * W + c0;
#pragma GCC unroll 4
    for (int64_t kw = 0; kw < n; ++kw) {
      const float* p = row + kw;
      __m512 v;
      if constexpr (SW == 1) {
        v = FULL ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(__mmask16(mk[2 * kw]), p);
      } else {
        const __m512 lo = FULL ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(__mmask16(mk[2 * kw]), p);
        const __m512 hi = FULL ? _mm512_loadu_ps(p + 16) : _mm512_maskz_loadu_ps(__mmask16(mk[2 * kw + 1]), p + 16);
        v = _mm512_permutex2var_ps(lo, evens, hi);
      }
      s = _mm512_add_ps(s, v);
    }
  }
  return s;
}

template <int SW, int KW>
void avg_taps(const AvgTapsArgs& a) {
  const int64_t W = a.W, HW = a.H * a.W, P = a.P, Q = a.Q;
  const int64_t kwn = KW ? KW : a.kernel_w;
  const int64_t nvec = (Q + 15) / 16;
  const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  std::vector<uint16_t> masks(static_cast<size_t>(nvec * kwn * 2));
  std::vector<char> full(static_cast<size_t>(nvec));
  for (int64_t v = 0; v < nvec; ++v) {
    const int64_t c0 = v * 16 * SW - a.pad_w;
    full[size_t(v)] = c0 >= 0 && c0 + (kwn - 1) + 16 * SW <= W;
    for (int64_t kw = 0; kw < kwn; ++kw) {
      masks[size_t((v * kwn + kw) * 2)] = cols_in(c0 + kw, W);
      masks[size_t((v * kwn + kw) * 2 + 1)] = cols_in(c0 + kw + 16, W);
    }
  }
  int64_t nc = a.r0 / P, oh = a.r0 % P;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const float* xp = a.x + nc * HW;
    // the window's rows: padded extent [i0, i1) and the rows inside [h0, h1)
    const int64_t i0 = oh * a.stride_h - a.pad_h, i1 = std::min(i0 + a.kernel_h, a.H + a.pad_h);
    const int64_t h0 = std::max<int64_t>(i0, 0), h1 = std::min(i1, a.H);
    const float row_factor = float(a.count_include_pad ? i1 - i0 : h1 - h0);
    float* yrow = a.y + r * Q;
    for (int64_t v = 0; v < nvec; ++v) {
      const int64_t q0 = v * 16;
      const __mmask16 kq = __mmask16((1u << std::min<int64_t>(16, Q - q0)) - 1u);
      const int64_t c0 = q0 * SW - a.pad_w;
      const uint16_t* mk = masks.data() + v * kwn * 2;
      const __m512 s = full[size_t(v)] ? window_sum<SW, KW, true>(xp, W, h0, h1, c0, kwn, mk, evens)
                                       : window_sum<SW, KW, false>(xp, W, h0, h1, c0, kwn, mk, evens);
      const __m512 cf = _mm512_loadu_ps(a.col_factor + q0);
      const __m512 div = a.divisor_override != 0 ? cf : _mm512_mul_ps(_mm512_set1_ps(row_factor), cf);
      _mm512_mask_storeu_ps(yrow + q0, kq, _mm512_div_ps(s, div));
    }
    if (++oh == P) { oh = 0; ++nc; }
  }
}

}  // namespace

void avg_taps_f32(const AvgTapsArgs& a) {
  const bool s2 = a.stride_w == 2;
  if (a.kernel_w == 2) s2 ? avg_taps<2, 2>(a) : avg_taps<1, 2>(a);
  else if (a.kernel_w == 3) s2 ? avg_taps<2, 3>(a) : avg_taps<1, 3>(a);
  else s2 ? avg_taps<2, 0>(a) : avg_taps<1, 0>(a);
}
#endif

}  // namespace fastconv::cpu::FASTCONV_ISA
