// Max pooling kernels of max_pool2d.cpp, compiled once per ISA (see gemm.cpp):
//   max_planes: 16 planes at once, the small-map path (cpu_features.h MaxPlanesFn)
//     xt  [input pixel][16 planes]    yt, it  [output pixel][16 planes]
//   max_rows: one plane with column stride 1, 16 output columns at once
//     buf [H][pitch] rows padded with -inf    y, indices  [P][Q]
//     (cpu_features.h MaxRowsFn)
//   max_gather: small planes, windows inside the input, 16 outputs at once
//     gathered by a table of tap offsets    y, indices  NCHW as they are
//     (cpu_features.h MaxGatherFn)
// Each lane runs torch's scan: taps in window order, a lane takes v when
// v > max or v is NaN. The selects are bitwise (and / andnot / or on the
// compare mask): GCC turns them into mask blends for the ISA being compiled,
// where a vector ?: was split into one branch per lane.
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

constexpr int kLanes = 16;

// The kernels' vector types: kLanes data lanes (T) and index lanes (I) as wide
// as the data; the U forms load and store at the element's alignment.
template <typename T, typename I>
struct Lanes {
  static_assert(sizeof(T) == sizeof(I), "index lanes as wide as the data");
  typedef T VT __attribute__((vector_size(kLanes * sizeof(T))));
  typedef I VI __attribute__((vector_size(kLanes * sizeof(I))));
  typedef T VTU __attribute__((vector_size(kLanes * sizeof(T)), aligned(alignof(T))));
  typedef I VIU __attribute__((vector_size(kLanes * sizeof(I)), aligned(alignof(I))));
};

template <typename T, typename I>
void max_planes(const int64_t* __restrict first, const int64_t* __restrict begin, const int64_t* __restrict tap,
                int64_t npix, const T* __restrict xt, T* __restrict yt, I* __restrict it) {
  using VT = typename Lanes<T, I>::VT;
  using VI = typename Lanes<T, I>::VI;
  using VTU = typename Lanes<T, I>::VTU;
  using VIU = typename Lanes<T, I>::VIU;
  const VT ninf = VT{} - __builtin_inf();
  for (int64_t o = 0; o < npix; ++o) {
    VI m = (VI)ninf;  // the running max's bits
    VI id = VI{} + I(first[o]);
    for (int64_t t = begin[o]; t < begin[o + 1]; ++t) {
      const int64_t k = tap[t];
      const VT v = *reinterpret_cast<const VTU*>(xt + k * kLanes);
      const VI u = (v > (VT)m) | (v != v);
      m = ((VI)v & u) | (m & ~u);
      if (it) id = ((VI{} + I(k)) & u) | (id & ~u);
    }
    *reinterpret_cast<VTU*>(yt + o * kLanes) = (VT)m;
    if (it) *reinterpret_cast<VIU*>(it + o * kLanes) = id;
  }
}

// 16 index lanes to 16 int64 at dst, in two halves (a whole 16-lane
// conversion went through the stack).
template <typename I, typename VI>
inline void store_wide(VI id, int64_t* dst) {
  typedef int64_t VLH __attribute__((vector_size(8 * sizeof(int64_t)), aligned(alignof(int64_t))));
  if constexpr (sizeof(I) == sizeof(int64_t)) {
    std::memcpy(dst, &id, sizeof(id));
  } else {
    *reinterpret_cast<VLH*>(dst) = __builtin_convertvector(__builtin_shufflevector(id, id, 0, 1, 2, 3, 4, 5, 6, 7), VLH);
    *reinterpret_cast<VLH*>(dst + 8) =
        __builtin_convertvector(__builtin_shufflevector(id, id, 8, 9, 10, 11, 12, 13, 14, 15), VLH);
  }
}

// KW: the kernel width when fixed at compile time (taps unrolled), 0 at run time.
template <typename T, typename I, int KW>
void max_rows(const MaxRowsArgs<T, I>& a) {
  using VT = typename Lanes<T, I>::VT;
  using VI = typename Lanes<T, I>::VI;
  typedef int64_t VL __attribute__((vector_size(kLanes * sizeof(int64_t))));
  using VTU = typename Lanes<T, I>::VTU;
  using VIU = typename Lanes<T, I>::VIU;
  const VT ninf = VT{} - __builtin_inf();
  VI iota;
  for (int l = 0; l < kLanes; ++l) iota[l] = I(l);
  const int64_t nvec = (a.Q + kLanes - 1) / kLanes;
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
    T* yrow = a.y + oh * a.Q;
    int64_t* irow = a.indices ? a.indices + oh * a.Q : nullptr;
    for (int64_t v = 0; v < nvec; ++v) {
      const int64_t ow0 = v * kLanes;
      VT m = ninf;
      VI id = *reinterpret_cast<const VIU*>(a.first + ow0) + I(h0 * a.W);
      for (int64_t ih = h0; ih < h1; ih += a.dil_h) {
        const T* r = a.buf + (ih - hb) * a.pitch + ow0;
        const VI base = iota + I(ih * a.W - a.pad_w + ow0);
        const int64_t kwn = KW ? KW : a.kernel_w, dw = a.dil_w;
#pragma GCC unroll 4
        for (int64_t kw = 0; kw < kwn; ++kw) {
          const VT t = *reinterpret_cast<const VTU*>(r + kw * dw);
          const VI u = (t > m) | (t != t);
          m = (VT)(((VI)t & u) | ((VI)m & ~u));
          if (irow) id = ((base + I(kw * dw)) & u) | (id & ~u);
        }
      }
      // a row's last vector may spill into the next rows, when this call writes them after it
      const int64_t n = (oh * a.Q + ow0 + kLanes <= a.p1 * a.Q) ? kLanes : std::min<int64_t>(kLanes, a.Q - ow0);
      if (n == kLanes) {
        *reinterpret_cast<VTU*>(yrow + ow0) = m;
        if (irow) store_wide<I>(id, irow + ow0);
      } else {
        const VL wide = __builtin_convertvector(id, VL);
        std::memcpy(yrow + ow0, &m, size_t(n) * sizeof(T));
        if (irow) std::memcpy(irow + ow0, &wide, size_t(n) * sizeof(int64_t));
      }
    }
  }
}

// 16 values base[o[lane]] (AVX-512 float32: one gather instruction).
template <typename T, typename VT>
__attribute__((always_inline)) inline VT gather16(const T* base, const int32_t* o) {
#if defined(FASTCONV_ISA_avx512)
  if constexpr (sizeof(T) == 4) {
    return (VT)_mm512_i32gather_ps(_mm512_loadu_si512(o), base, 4);
  }
#endif
  VT v;
  for (int l = 0; l < kLanes; ++l) v[l] = base[o[l]];
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
      VT m = ninf;
      VI id = *reinterpret_cast<const VIU*>(ix);
      for (int64_t t = 0; t < a.taps; ++t) {
        const VT v = gather16<T, VT>(base, off + t * kLanes);
        const VI u = (v > m) | (v != v);
        m = (VT)(((VI)v & u) | ((VI)m & ~u));
        if (a.indices) id = (*reinterpret_cast<const VIU*>(ix + t * kLanes) & u) | (id & ~u);
      }
      *reinterpret_cast<VTU*>(a.y + f) = m;
      if (a.indices) store_wide<I>(id, a.indices + f);
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
