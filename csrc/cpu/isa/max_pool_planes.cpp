// Max pooling of 16 planes at once, compiled once per ISA (see gemm.cpp):
//   xt  [input pixel][16 planes]    yt, it  [output pixel][16 planes]
// the kernel of max_pool2d.cpp's small-map path (cpu_features.h MaxPlanesFn).
// Each lane runs torch's scan: taps in window order, a lane takes v when
// v > max or v is NaN. The selects are bitwise (and / andnot / or on the
// compare mask): GCC turns them into mask blends for the ISA being compiled,
// where a vector ?: was split into one branch per lane.
#include <cstdint>

#include "common/cpu_features.h"

#ifndef FASTCONV_ISA
#error "FASTCONV_ISA must name the instruction set being compiled"
#endif

namespace fastconv::cpu::FASTCONV_ISA {
namespace {

constexpr int kLanes = 16;

template <typename T, typename I>
void max_planes(const int64_t* __restrict first, const int64_t* __restrict begin, const int64_t* __restrict tap,
                int64_t npix, const T* __restrict xt, T* __restrict yt, I* __restrict it) {
  static_assert(sizeof(T) == sizeof(I), "index lanes as wide as the data");
  typedef T VT __attribute__((vector_size(kLanes * sizeof(T))));
  typedef I VI __attribute__((vector_size(kLanes * sizeof(I))));
  typedef T VTU __attribute__((vector_size(kLanes * sizeof(T)), aligned(alignof(T))));
  typedef I VIU __attribute__((vector_size(kLanes * sizeof(I)), aligned(alignof(I))));
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

}  // namespace

void max_planes_f32(const int64_t* first, const int64_t* begin, const int64_t* tap, int64_t npix, const float* xt,
                    float* yt, int32_t* it) {
  max_planes<float, int32_t>(first, begin, tap, npix, xt, yt, it);
}

void max_planes_f64(const int64_t* first, const int64_t* begin, const int64_t* tap, int64_t npix, const double* xt,
                    double* yt, int64_t* it) {
  max_planes<double, int64_t>(first, begin, tap, npix, xt, yt, it);
}

}  // namespace fastconv::cpu::FASTCONV_ISA
