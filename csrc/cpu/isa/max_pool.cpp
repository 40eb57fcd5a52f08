// Max pooling kernels of max_pool2d.cpp, compiled once per ISA (see gemm.cpp):
//   max_planes: 16 planes per pass, the small-map path (cpu_features.h MaxPlanesFn)
//     xt  [input pixel][16 planes]    yt, it  [output pixel][16 planes]
//   max_rows: one plane with column stride 1, N output columns per vector
//     buf [H][pitch] rows padded with -inf    y, indices  [P][Q]
//     (cpu_features.h MaxRowsFn)
//   max_gather: small planes, windows inside the input, 16 outputs per pass
//     gathered by a table of tap offsets    y, indices  NCHW as they are
//     (cpu_features.h MaxGatherFn); on AVX-512 float32 also max_gather_window,
//     the same outputs read by permutes from the loaded span of inputs
//   max_taps (AVX-512 float32): one plane row's 16 output columns per vector,
//     each tap a masked load (column stride 2: two and a permute)
//     x [N*C][H][W]    y, indices  [N*C*P][Q]  (cpu_features.h MaxTapsArgs)
// Each lane runs torch's scan: taps in window order, a lane takes v when
// v > max or v is NaN. The selects are bitwise (and / andnot / or on the
// compare mask): GCC turns them into mask blends for the ISA being compiled,
// where a vector ?: was split into one branch per lane. The vectors are the
// ISA's own width (N lanes: 16 floats on avx512, 8 on avx2, 4 in generic's
// 16 bytes), and the 16-lane groups of the tables and layouts go N lanes at
// a time: GCC lowers a compare on a vector wider than the ISA's one lane at
// a time (16-float vectors on avx2 were scalar code, 1-9% of the copy
// bandwidth on the forward passes of AlexNet's and ResNet's pools).
#include <algorithm>
#include <cstdint>
#include <cstring>
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
namespace {

constexpr int kLanes = 16;  // lanes of the layouts and tables (cpu_features.h)
#if defined(FASTCONV_ISA_avx512)
constexpr int kVecBytes = 64;
#elif defined(FASTCONV_ISA_avx2)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif

// The kernels' vector types: N data lanes (T) and index lanes (I) as wide
// as the data; the U forms load and store at the element's alignment.
template <typename T, typename I>
struct Lanes {
  static_assert(sizeof(T) == sizeof(I), "index lanes as wide as the data");
  static constexpr int N = kVecBytes / int(sizeof(T));
  static_assert(kLanes % N == 0, "a lane group is whole vectors");
  typedef T VT __attribute__((vector_size(kVecBytes)));
  typedef I VI __attribute__((vector_size(kVecBytes)));
  typedef T VTU __attribute__((vector_size(kVecBytes), aligned(alignof(T))));
  typedef I VIU __attribute__((vector_size(kVecBytes), aligned(alignof(I))));
};

template <typename T, typename I>
void max_planes(const int64_t* __restrict first, const int64_t* __restrict begin, const int64_t* __restrict tap,
                int64_t npix, const T* __restrict xt, T* __restrict yt, I* __restrict it) {
  using VT = typename Lanes<T, I>::VT;
  using VI = typename Lanes<T, I>::VI;
  using VTU = typename Lanes<T, I>::VTU;
  using VIU = typename Lanes<T, I>::VIU;
  constexpr int N = Lanes<T, I>::N;
  const VT ninf = VT{} - __builtin_inf();
  for (int64_t o = 0; o < npix; ++o)
    for (int j = 0; j < kLanes; j += N) {
      VI m = (VI)ninf;  // the running max's bits
      VI id = VI{} + I(first[o]);
      for (int64_t t = begin[o]; t < begin[o + 1]; ++t) {
        const int64_t k = tap[t];
        const VT v = *reinterpret_cast<const VTU*>(xt + k * kLanes + j);
        const VI u = (v > (VT)m) | (v != v);
        m = ((VI)v & u) | (m & ~u);
        if (it) id = ((VI{} + I(k)) & u) | (id & ~u);
      }
      *reinterpret_cast<VTU*>(yt + o * kLanes + j) = (VT)m;
      if (it) *reinterpret_cast<VIU*>(it + o * kLanes + j) = id;
    }
}

// A vector's index lanes to as many int64 at dst, in two halves (a whole
// 16-lane conversion went through the stack).
template <typename I, typename VI>
inline void store_wide(VI id, int64_t* dst) {
  constexpr int n = int(sizeof(VI) / sizeof(I));
  typedef int64_t VLH __attribute__((vector_size(n / 2 * sizeof(int64_t)), aligned(alignof(int64_t))));
  typedef I VH __attribute__((vector_size(n / 2 * sizeof(I))));
  if constexpr (sizeof(I) == sizeof(int64_t)) {
    std::memcpy(dst, &id, sizeof(id));
  } else if constexpr (n == 16) {
    *reinterpret_cast<VLH*>(dst) = __builtin_convertvector(__builtin_shufflevector(id, id, 0, 1, 2, 3, 4, 5, 6, 7), VLH);
    *reinterpret_cast<VLH*>(dst + 8) =
        __builtin_convertvector(__builtin_shufflevector(id, id, 8, 9, 10, 11, 12, 13, 14, 15), VLH);
  } else {
    VH h[2];
    std::memcpy(h, &id, sizeof(id));
    *reinterpret_cast<VLH*>(dst) = __builtin_convertvector(h[0], VLH);
    *reinterpret_cast<VLH*>(dst + n / 2) = __builtin_convertvector(h[1], VLH);
  }
}

// NV vectors of output row oh from column ow0 = v0 N on, side by side:
// each lane's scan is a chain of dependent compares and selects, so one
// vector at a time ran at the chain's latency (3x3 windows on 28x28 maps:
// 1.3x slower than four at once on a 2-core AVX2 EPYC, in cycles per call;
// the winning tap's offset is blended as one broadcast, its lanes' columns
// added once at the end).
template <typename T, typename I, int KW, int NV>
__attribute__((always_inline)) inline void max_rows_vectors(const MaxRowsArgs<T, I>& a, int64_t oh, int64_t h0,
                                                            int64_t h1, int64_t hb, int64_t v0,
                                                            typename Lanes<T, I>::VI iota) {
  using VT = typename Lanes<T, I>::VT;
  using VI = typename Lanes<T, I>::VI;
  constexpr int N = Lanes<T, I>::N;  // output columns per vector
  using VTU = typename Lanes<T, I>::VTU;
  using VIU = typename Lanes<T, I>::VIU;
  T* yrow = a.y + oh * a.Q;
  int64_t* irow = a.indices ? a.indices + oh * a.Q : nullptr;
  VT m[NV];
  VI id[NV];
  // id: the winning tap's offset ih W + kw dw, the same for every lane
  // (its column, ow - pad_w, added at the end), or first - ow + pad_w
  // while no tap has won
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    m[v] = VT{} - __builtin_inf();
    id[v] = *reinterpret_cast<const VIU*>(a.first + (v0 + v) * N) + I(h0 * a.W) - iota - I((v0 + v) * N - a.pad_w);
  }
  for (int64_t ih = h0; ih < h1; ih += a.dil_h) {
    const T* r = a.buf + (ih - hb) * a.pitch + v0 * N;
    const int64_t kwn = KW ? KW : a.kernel_w, dw = a.dil_w;
#pragma GCC unroll 4
    for (int64_t kw = 0; kw < kwn; ++kw) {
      const VI tap = VI{} + I(ih * a.W + kw * dw);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const VT t = *reinterpret_cast<const VTU*>(r + v * N + kw * dw);
        const VI u = (t > m[v]) | (t != t);
        m[v] = (VT)(((VI)t & u) | ((VI)m[v] & ~u));
        if (irow) id[v] = (tap & u) | (id[v] & ~u);
      }
    }
  }
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) id[v] += iota + I((v0 + v) * N - a.pad_w);
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const int64_t ow0 = (v0 + v) * N;
    // a row's last vector may spill into the next rows, when this call writes them after it
    const int64_t n = (oh * a.Q + ow0 + N <= a.p1 * a.Q) ? N : std::min<int64_t>(N, a.Q - ow0);
    if (n == N) {
      *reinterpret_cast<VTU*>(yrow + ow0) = m[v];
      if (irow) store_wide<I>(id[v], irow + ow0);
    } else {
      int64_t wide[N];
      store_wide<I>(id[v], wide);
      std::memcpy(yrow + ow0, &m[v], size_t(n) * sizeof(T));
      if (irow) std::memcpy(irow + ow0, wide, size_t(n) * sizeof(int64_t));
    }
  }
}

constexpr int kNV = 4;  // vectors side by side (2 and 3 measured no faster)
// KW: the kernel width when fixed at compile time (taps unrolled), 0 at run time.
template <typename T, typename I, int KW>
void max_rows(const MaxRowsArgs<T, I>& a) {
  using VI = typename Lanes<T, I>::VI;
  constexpr int N = Lanes<T, I>::N;  // output columns per vector
  VI iota;
  for (int l = 0; l < N; ++l) iota[l] = I(l);
  const int64_t nvec = (a.Q + N - 1) / N;
  const int64_t hb = std::max<int64_t>(0, a.p0 * a.stride_h - a.pad_h);
  const int64_t he = std::min(a.H, (a.p1 - 1) * a.stride_h - a.pad_h + (a.kernel_h - 1) * a.dil_h + 1);
  for (int64_t h = hb; h < he; ++h) {
    T* __restrict dst = a.buf + (h - hb) * a.pitch + a.pad_w;
    const T* __restrict src = a.x + h * a.W;
    for (int64_t c = 0; c < a.W; ++c) dst[c] = src[c];
  }
  for (int64_t oh = a.p0; oh < a.p1; ++oh) {
    const int64_t ih0 = oh * a.stride_h - a.pad_h;
    int64_t h0 = ih0;
    while (h0 < 0) h0 += a.dil_h;
    const int64_t h1 = std::min(ih0 + (a.kernel_h - 1) * a.dil_h + 1, a.H);
    int64_t v0 = 0;
    for (; v0 + kNV <= nvec; v0 += kNV) max_rows_vectors<T, I, KW, kNV>(a, oh, h0, h1, hb, v0, iota);
    switch (nvec - v0) {
      case 3: max_rows_vectors<T, I, KW, 3>(a, oh, h0, h1, hb, v0, iota); break;
      case 2: max_rows_vectors<T, I, KW, 2>(a, oh, h0, h1, hb, v0, iota); break;
      case 1: max_rows_vectors<T, I, KW, 1>(a, oh, h0, h1, hb, v0, iota); break;
      default: break;
    }
  }
}

// A vector of values base[o[lane]] (AVX-512 float32: one gather instruction).
template <typename T, typename VT>
__attribute__((always_inline)) inline VT gather(const T* base, const int32_t* o) {
#if defined(FASTCONV_ISA_avx512)
  if constexpr (sizeof(T) == 4) {
    return (VT)_mm512_i32gather_ps(_mm512_loadu_si512(o), base, 4);
  }
#endif
  constexpr int n = int(sizeof(VT) / sizeof(T));
  VT v;
#pragma GCC unroll 16
  for (int l = 0; l < n; ++l) v[l] = base[o[l]];
  return v;
}

template <typename T, typename I>
void max_gather(const MaxGatherArgs<T, I>& a) {
  using VT = typename Lanes<T, I>::VT;
  using VI = typename Lanes<T, I>::VI;
  using VTU = typename Lanes<T, I>::VTU;
  using VIU = typename Lanes<T, I>::VIU;
  const VT ninf = VT{} - __builtin_inf();
  const int64_t per = a.period_vecs * kLanes, tl = a.taps * kLanes;
  // period q and its vector j of output f, counted rather than divided
  int64_t q = a.f0 / per, j = (a.f0 % per) / kLanes;
  for (int64_t f = a.f0; f < a.f1; ++j == a.period_vecs ? (j = 0, ++q) : 0) {
    const T* base = a.x + q * a.period_in;
    const int32_t* off = a.off + j * tl;
    const I* ix = a.idx + j * tl;
    const int64_t n = std::min<int64_t>(kLanes, a.f1 - f);
    if (n == kLanes) {
      for (int h = 0; h < kLanes; h += Lanes<T, I>::N) {
        VT m = ninf;
        VI id = *reinterpret_cast<const VIU*>(ix + h);
        for (int64_t t = 0; t < a.taps; ++t) {
          const VT v = gather<T, VT>(base, off + t * kLanes + h);
          const VI u = (v > m) | (v != v);
          m = (VT)(((VI)v & u) | ((VI)m & ~u));
          if (a.indices) id = (*reinterpret_cast<const VIU*>(ix + t * kLanes + h) & u) | (id & ~u);
        }
        *reinterpret_cast<VTU*>(a.y + f + h) = m;
        if (a.indices) store_wide<I>(id, a.indices + f + h);
      }
    } else {  // the last outputs: their lanes' taps only (the rest may lie past x)
      for (int64_t l = 0; l < n; ++l) {
        T m = -__builtin_inf();
        I id = ix[l];
        for (int64_t t = 0; t < a.taps; ++t) {
          const T v = base[off[t * kLanes + l]];
          if (v > m || v != v) { m = v; id = ix[t * kLanes + l]; }
        }
        a.y[f + l] = m;
        if (a.indices) a.indices[f + l] = int64_t(id);
      }
    }
    f += n;
  }
}


#if defined(FASTCONV_ISA_avx512)
// max_gather's outputs with the taps read from registers: a vector's span
// of inputs (at most 128) is loaded once, and each tap is one permute per
// pair of registers its lanes read, merged by the pair's lane mask.
template <int PAIRS>
__attribute__((always_inline)) inline __m512 window_tap(const __m512* R, __m512i rel, const uint16_t* pm) {
  __m512 v = _mm512_permutex2var_ps(R[0], rel, R[1]);
  if constexpr (PAIRS > 1) v = _mm512_mask_mov_ps(v, __mmask16(pm[1]), _mm512_permutex2var_ps(R[2], rel, R[3]));
  if constexpr (PAIRS > 2) v = _mm512_mask_mov_ps(v, __mmask16(pm[2]), _mm512_permutex2var_ps(R[4], rel, R[5]));
  if constexpr (PAIRS > 3) v = _mm512_mask_mov_ps(v, __mmask16(pm[3]), _mm512_permutex2var_ps(R[6], rel, R[7]));
  return v;
}

template <int PAIRS>
__attribute__((always_inline)) inline void window_vector(const MaxGatherArgs<float, int32_t>& a, const float* w,
                                                         int64_t span, const int32_t* rel, const int32_t* ix,
                                                         const uint16_t* pm, int64_t f) {
  __m512 R[2 * PAIRS];
#pragma GCC unroll 8
  for (int r = 0; r < 2 * PAIRS; ++r) {
    const int64_t lanes = std::max<int64_t>(0, std::min<int64_t>(16, span - 16 * r));
    R[r] = _mm512_maskz_loadu_ps(__mmask16((1u << lanes) - 1u), w + 16 * r);
  }
  __m512 m = _mm512_set1_ps(-__builtin_inff());
  __m512i id = _mm512_loadu_si512(ix);
  for (int64_t t = 0; t < a.taps; ++t) {
    const __m512 v = window_tap<PAIRS>(R, _mm512_loadu_si512(rel + t * kLanes), pm + t * 4);
    const __mmask16 u = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    m = _mm512_mask_mov_ps(m, u, v);
    id = _mm512_mask_mov_epi32(id, u, _mm512_loadu_si512(ix + t * kLanes));
  }
  _mm512_storeu_ps(a.y + f, m);
  if (a.indices) {
    _mm512_storeu_si512(a.indices + f, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(id)));
    _mm512_storeu_si512(a.indices + f + 8, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(id, 1)));
  }
}

void max_gather_window(const MaxGatherArgs<float, int32_t>& a) {
  const int64_t per = a.period_vecs * kLanes, tl = a.taps * kLanes;
  int64_t q = a.f0 / per, j = (a.f0 % per) / kLanes;
  for (int64_t f = a.f0; f < a.f1; f += kLanes, ++j == a.period_vecs ? (j = 0, ++q) : 0) {
    const float* base = a.x + q * a.period_in;
    const int32_t* rel = a.off + j * tl;
    const int32_t* ix = a.idx + j * tl;
    if (a.f1 - f < kLanes) {  // the last outputs: their lanes' taps only (the rest may lie past x)
      for (int64_t l = 0; l < a.f1 - f; ++l) {
        float m = -__builtin_inff();
        int32_t id = ix[l];
        for (int64_t t = 0; t < a.taps; ++t) {
          const float v = base[a.lo[j] + rel[t * kLanes + l]];
          if (v > m || v != v) { m = v; id = ix[t * kLanes + l]; }
        }
        a.y[f + l] = m;
        if (a.indices) a.indices[f + l] = int64_t(id);
      }
      break;
    }
    const float* w = base + a.lo[j];
    const int64_t span = a.span[j];
    const uint16_t* pm = a.pair_mask + j * a.taps * 4;
    switch ((span + 31) / 32) {
      case 1: window_vector<1>(a, w, span, rel, ix, pm, f); break;
      case 2: window_vector<2>(a, w, span, rel, ix, pm, f); break;
      case 3: window_vector<3>(a, w, span, rel, ix, pm, f); break;
      default: window_vector<4>(a, w, span, rel, ix, pm, f); break;
    }
  }
}

using pool_lanes::cols_in;

// One window row's taps for 16 output columns from input column c0 on: a
// chain over kw in order (FULL: every tap's columns inside the row, plain
// loads; else loads masked by mk[kw][0 / 1], the lanes outside read -inf).
// rid starts as the caller's index vector for tap 0; tap kw's index is
// rb + kwoff[kw] (rb: the row's base index plus each lane's column).
template <int SW, int KW, bool FULL>
__attribute__((always_inline)) inline void row_taps(const float* row, int64_t c0, int64_t kwn, int64_t dw,
                                                    const uint16_t* mk, __m512 ninf, __m512i evens, __m512i rb,
                                                    const __m512i* kwoff, __m512& rm, __m512i& rid) {
  auto tap = [&](int64_t kw) {
    const float* p = row + c0 + kw * dw;
    if constexpr (SW == 1) {
      return FULL ? _mm512_loadu_ps(p) : _mm512_mask_loadu_ps(ninf, __mmask16(mk[2 * kw]), p);
    } else {
      const __m512 lo = FULL ? _mm512_loadu_ps(p) : _mm512_mask_loadu_ps(ninf, __mmask16(mk[2 * kw]), p);
      const __m512 hi = FULL ? _mm512_loadu_ps(p + 16) : _mm512_mask_loadu_ps(ninf, __mmask16(mk[2 * kw + 1]), p + 16);
      return _mm512_permutex2var_ps(lo, evens, hi);
    }
  };
  if constexpr (SW == 2 && KW != 0) {
    // dilation 1: taps kw and kw + 1 are the even and the odd lanes of one
    // pair of loads, whose masks hold for both (measured against a pair of
    // loads per tap, 2 threads: VGG's 2x2 pools 1.11x and 1.15x, 3x3 / stride
    // 2 pools 1.02-1.07x)
    if (dw == 1) {
      const __m512i odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
      __m512 t[KW];
#pragma GCC unroll 4
      for (int kw = 0; kw < KW; kw += 2) {
        const float* p = row + c0 + kw;
        const __m512 lo = FULL ? _mm512_loadu_ps(p) : _mm512_mask_loadu_ps(ninf, __mmask16(mk[2 * kw]), p);
        const __m512 hi =
            FULL ? _mm512_loadu_ps(p + 16) : _mm512_mask_loadu_ps(ninf, __mmask16(mk[2 * kw + 1]), p + 16);
        t[kw] = _mm512_permutex2var_ps(lo, evens, hi);
        if (kw + 1 < KW) t[kw + 1] = _mm512_permutex2var_ps(lo, odds, hi);
      }
      rm = t[0];
#pragma GCC unroll 4
      for (int kw = 1; kw < KW; ++kw) {
        const __mmask16 u = _mm512_cmp_ps_mask(t[kw], rm, _CMP_GT_OQ) | _mm512_cmp_ps_mask(t[kw], t[kw], _CMP_UNORD_Q);
        rm = _mm512_mask_mov_ps(rm, u, t[kw]);
        rid = _mm512_mask_add_epi32(rid, u, rb, kwoff[kw]);
      }
      return;
    }
  }
  rm = tap(0);
  const int64_t n = KW ? KW : kwn;
#pragma GCC unroll 4
  for (int64_t kw = 1; kw < n; ++kw) {
    const __m512 v = tap(kw);
    const __mmask16 u = _mm512_cmp_ps_mask(v, rm, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    rm = _mm512_mask_mov_ps(rm, u, v);
    rid = _mm512_mask_add_epi32(rid, u, rb, kwoff[kw]);
  }
}

// One output row's 16 columns from q0 on: its window rows [h0, h1) in
// steps of dil_h, each a chain (row_taps), merged in order - a later row
// takes a lane if its max is greater or NaN, which is the same scan (the
// first maximum wins, the last NaN wins). A single chain over all the taps
// ran at its latency.
template <int SW, int KW, bool FULL>
__attribute__((always_inline)) inline void window(const MaxTapsArgs& a, const float* xp, int64_t h0, int64_t h1,
                                                  int64_t q0, const uint16_t* mk, __m512 ninf, __m512i evens,
                                                  __m512i lane_col, const __m512i* kwoff, __m512& m, __m512i& id) {
  const int64_t W = a.W, c0 = q0 * SW - a.pad_w;
  const __m512i cols = _mm512_add_epi32(lane_col, _mm512_set1_epi32(int32_t(c0)));
  // the first row's tap 0 starts at the clipped window's first column, so that
  // a window of only -inf reports it
  id = _mm512_add_epi32(_mm512_loadu_si512(a.first + q0), _mm512_set1_epi32(int32_t(h0 * W)));
  m = ninf;
  if (h0 >= h1) return;
  row_taps<SW, KW, FULL>(xp + h0 * W, c0, a.kernel_w, a.dil_w, mk, ninf, evens,
                         _mm512_add_epi32(cols, _mm512_set1_epi32(int32_t(h0 * W))), kwoff, m, id);
  for (int64_t ih = h0 + a.dil_h; ih < h1; ih += a.dil_h) {
    const __m512i rb = _mm512_add_epi32(cols, _mm512_set1_epi32(int32_t(ih * W)));
    __m512 rm;
    __m512i rid = rb;
    row_taps<SW, KW, FULL>(xp + ih * W, c0, a.kernel_w, a.dil_w, mk, ninf, evens, rb, kwoff, rm, rid);
    const __mmask16 u = _mm512_cmp_ps_mask(rm, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(rm, rm, _CMP_UNORD_Q);
    m = _mm512_mask_mov_ps(m, u, rm);
    id = _mm512_mask_mov_epi32(id, u, rid);
  }
}

template <int SW, int KW>
void max_taps(const MaxTapsArgs& a) {
  const int64_t W = a.W, HW = a.H * a.W, P = a.P, Q = a.Q;
  const int64_t kwn = KW ? KW : a.kernel_w, dw = a.dil_w;
  const int64_t nvec = (Q + 15) / 16;
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  // a lane's column offset within its tap vector
  const __m512i lane_col = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32(SW));
  // per vector of output columns: whether every tap's loads lie inside the
  // row, else each tap's load masks
  std::vector<uint16_t> masks(static_cast<size_t>(nvec * kwn * 2));
  std::vector<char> full(static_cast<size_t>(nvec));
  __m512i kwoff[kMaxTapsKW];
  for (int64_t kw = 0; kw < kwn; ++kw) kwoff[kw] = _mm512_set1_epi32(int32_t(kw * dw));
  for (int64_t v = 0; v < nvec; ++v) {
    const int64_t c0 = v * 16 * SW - a.pad_w;
    full[size_t(v)] = c0 >= 0 && c0 + (kwn - 1) * dw + 16 * SW <= W;
    for (int64_t kw = 0; kw < kwn; ++kw) {
      const int64_t c = c0 + kw * dw;
      masks[size_t((v * kwn + kw) * 2)] = cols_in(c, W);
      masks[size_t((v * kwn + kw) * 2 + 1)] = cols_in(c + 16, W);
    }
  }
  int64_t nc = a.r0 / P, oh = a.r0 % P;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const float* xp = a.x + nc * HW;
    int64_t h0 = oh * a.stride_h - a.pad_h;
    const int64_t h1 = std::min(h0 + (a.kernel_h - 1) * a.dil_h + 1, a.H);
    while (h0 < 0) h0 += a.dil_h;
    float* yrow = a.y + r * Q;
    int64_t* irow = a.indices ? a.indices + r * Q : nullptr;
    for (int64_t v = 0; v < nvec; ++v) {
      const int64_t q0 = v * 16;
      const uint16_t* mk = masks.data() + v * kwn * 2;
      __m512 m;
      __m512i id;
      if (full[size_t(v)]) window<SW, KW, true>(a, xp, h0, h1, q0, mk, ninf, evens, lane_col, kwoff, m, id);
      else window<SW, KW, false>(a, xp, h0, h1, q0, mk, ninf, evens, lane_col, kwoff, m, id);
      const __mmask16 kq = __mmask16((1u << std::min<int64_t>(16, Q - q0)) - 1u);
      _mm512_mask_storeu_ps(yrow + q0, kq, m);
      if (irow) {
        _mm512_mask_storeu_epi64(irow + q0, __mmask8(kq), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(id)));
        _mm512_mask_storeu_epi64(irow + q0 + 8, __mmask8(kq >> 8),
                                 _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(id, 1)));
      }
    }
    if (++oh == P) { oh = 0; ++nc; }
  }
}
#endif

}  // namespace

#if defined(FASTCONV_ISA_avx512)
void max_gather_window_f32(const MaxGatherArgs<float, int32_t>& a) { max_gather_window(a); }

void max_taps_f32(const MaxTapsArgs& a) {
  const bool s2 = a.stride_w == 2;
  if (a.kernel_w == 2) s2 ? max_taps<2, 2>(a) : max_taps<1, 2>(a);
  else if (a.kernel_w == 3) s2 ? max_taps<2, 3>(a) : max_taps<1, 3>(a);
  else s2 ? max_taps<2, 0>(a) : max_taps<1, 0>(a);
}
#endif

void max_gather_f32(const MaxGatherArgs<float, int32_t>& a) { max_gather<float, int32_t>(a); }
void max_gather_f64(const MaxGatherArgs<double, int64_t>& a) { max_gather<double, int64_t>(a); }

void max_rows_f32(const MaxRowsArgs<float, int32_t>& a) {
  if (a.kernel_w == 3) max_rows<float, int32_t, 3>(a);
  else if (a.kernel_w == 2) max_rows<float, int32_t, 2>(a);
  else max_rows<float, int32_t, 0>(a);
}
void max_rows_f64(const MaxRowsArgs<double, int64_t>& a) {
  if (a.kernel_w == 3) max_rows<double, int64_t, 3>(a);
  else if (a.kernel_w == 2) max_rows<double, int64_t, 2>(a);
  else max_rows<double, int64_t, 0>(a);
}

void max_planes_f32(const int64_t* first, const int64_t* begin, const int64_t* tap, int64_t npix, const float* xt,
                    float* yt, int32_t* it) {
  max_planes<float, int32_t>(first, begin, tap, npix, xt, yt, it);
}

void max_planes_f64(const int64_t* first, const int64_t* begin, const int64_t* tap, int64_t npix, const double* xt,
                    double* yt, int64_t* it) {
  max_planes<double, int64_t>(first, begin, tap, npix, xt, yt, it);
}

}  // namespace fastconv::cpu::FASTCONV_ISA
