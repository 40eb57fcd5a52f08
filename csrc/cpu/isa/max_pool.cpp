// Max pooling kernels of max_pool2d.cpp, compiled once per ISA (see gemm.cpp):
//   max_planes: 16 planes per pass, the small-map path (cpu_features.h MaxPlanesFn)
//     xt  [input pixel][16 planes]    yt, it  [output pixel][16 planes]
//   max_rows: one plane with column stride 1, N output columns per vector
//     buf [H][pitch] rows padded with -inf    y, indices  [P][Q]
//     (cpu_features.h MaxRowsFn)
//   max_gather: small planes, windows inside the input, 16 outputs per pass
//     gathered by a table of tap offsets    y, indices  NCHW as they are
//     (cpu_features.h MaxGatherFn)
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

#include "common/cpu_features.h"
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
  for (int64_t f = a.f0; f < a.f1;) {
    const int64_t q = f / per, j = (f % per) / kLanes;
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

}  // namespace

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
