// relu and guided relu on the CPU, elementwise over p.n elements (any shape,
// dense), float32 and float64.
//   forward:  y = x < 0 ? 0 : x          (as torch: relu(NaN) = NaN, relu(-0) = -0);
//             x and y may alias (in place).
//   backward: mode relu:      gx = x <= 0 ? 0 : gy          (torch's threshold_backward:
//                                                         NaN in x passes gy through)
//             mode guided:    gx = x <= 0 ? 0 : relu(gy)    (captum's guided backprop)
//             mode deconvnet: gx = relu(gy)                 (x is not read)
//             gx may alias gy.
// Variants: one OpenMP-parallel vectorised loop per mode, compiled for the
// baseline ISA and again for AVX2 / AVX-512 (target_attrs.h); on x86-64 large
// tensors (beyond the cache) are written with non-temporal stores so the
// output costs one memory pass instead of read-for-ownership + write back.
#include <cstdint>
#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#define FC_RELU_SSE2 1
#endif

#include "common/kernels.h"
#include "cpu/target_attrs.h"

namespace fastconv {
namespace cpu {

namespace {

constexpr int64_t kSerialBelow = 1 << 15;  // elements: below this, one thread
// Total bytes moved above which the output is written with non-temporal
// stores (the data cannot stay in this machine's caches anyway).
constexpr int64_t kStreamBytes = int64_t(24) << 20;

// Scalar forms: these define the semantics; the SSE2 forms below match them
// bit for bit (compare + and-not, no max instructions, so NaN and -0 pass).
template <typename T>
inline T fwd(T x) { return x < T(0) ? T(0) : x; }

template <typename T, ReluMode M>
inline T bwd(T x, T g) {
  if constexpr (M == ReluMode::relu) {
    return x <= T(0) ? T(0) : g;
  } else if constexpr (M == ReluMode::guided) {
    T r = g < T(0) ? T(0) : g;
    return x <= T(0) ? T(0) : r;
  } else {
    return g < T(0) ? T(0) : g;
  }
}

// Runs body(begin, end) over [0, n) in per-thread contiguous chunks whose
// boundaries are multiples of 64 bytes.
template <typename F>
void parallel_chunks(int64_t n, int64_t elem_bytes, int num_threads, F body) {
  int nt = num_threads < 1 ? 1 : num_threads;
  if (n < kSerialBelow || nt == 1) {
    body(int64_t(0), n);
    return;
  }
  const int64_t align = 64 / elem_bytes;
#pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num();
    const int tn = omp_get_num_threads();
#else
    const int t = 0, tn = 1;
#endif
    int64_t per = (n + tn - 1) / tn;
    per = (per + align - 1) / align * align;
    int64_t b = per * t, e = b + per;
    if (e > n) e = n;
    if (b < e) body(b, e);
  }
}

#ifdef FC_RELU_SSE2
// 16-byte vector ops for float / double.
template <typename T> struct V;
template <> struct V<float> {
  using R = __m128;
  static constexpr int L = 4;
  static R load(const float* p) { return _mm_loadu_ps(p); }
  static void stream(float* p, R v) { _mm_stream_ps(p, v); }
  static R zero() { return _mm_setzero_ps(); }
  static R lt(R a, R b) { return _mm_cmplt_ps(a, b); }
  static R le(R a, R b) { return _mm_cmple_ps(a, b); }
  static R andnot(R m, R a) { return _mm_andnot_ps(m, a); }
};
template <> struct V<double> {
  using R = __m128d;
  static constexpr int L = 2;
  static R load(const double* p) { return _mm_loadu_pd(p); }
  static void stream(double* p, R v) { _mm_stream_pd(p, v); }
  static R zero() { return _mm_setzero_pd(); }
  static R lt(R a, R b) { return _mm_cmplt_pd(a, b); }
  static R le(R a, R b) { return _mm_cmple_pd(a, b); }
  static R andnot(R m, R a) { return _mm_andnot_pd(m, a); }
};

template <typename T>
inline typename V<T>::R vfwd(typename V<T>::R x) {
  return V<T>::andnot(V<T>::lt(x, V<T>::zero()), x);
}

template <typename T, ReluMode M>
inline typename V<T>::R vbwd(typename V<T>::R x, typename V<T>::R g) {
  using Q = V<T>;
  if constexpr (M == ReluMode::relu) {
    return Q::andnot(Q::le(x, Q::zero()), g);
  } else if constexpr (M == ReluMode::guided) {
    return Q::andnot(Q::le(x, Q::zero()), Q::andnot(Q::lt(g, Q::zero()), g));
  } else {
    (void)x;
    return Q::andnot(Q::lt(g, Q::zero()), g);
  }
}

// Streaming loops: scalar head up to 16-byte alignment of the output, vector
// body with non-temporal stores, scalar tail. Reads before writes of each
// element, so exact aliasing of input and output is fine.
template <typename T>
void stream_fwd(const T* x, T* y, int64_t b, int64_t e) {
  using Q = V<T>;
  int64_t i = b;
  while (i < e && (reinterpret_cast<uintptr_t>(y + i) & 15) != 0) { y[i] = fwd(x[i]); ++i; }
  for (; i + 4 * Q::L <= e; i += 4 * Q::L) {
    auto a0 = Q::load(x + i), a1 = Q::load(x + i + Q::L);
    auto a2 = Q::load(x + i + 2 * Q::L), a3 = Q::load(x + i + 3 * Q::L);
    Q::stream(y + i, vfwd<T>(a0));
    Q::stream(y + i + Q::L, vfwd<T>(a1));
    Q::stream(y + i + 2 * Q::L, vfwd<T>(a2));
    Q::stream(y + i + 3 * Q::L, vfwd<T>(a3));
  }
  for (; i < e; ++i) y[i] = fwd(x[i]);
  _mm_sfence();
}

template <typename T, ReluMode M>
void stream_bwd(const T* x, const T* g, T* gx, int64_t b, int64_t e) {
  using Q = V<T>;
  int64_t i = b;
  while (i < e && (reinterpret_cast<uintptr_t>(gx + i) & 15) != 0) { gx[i] = bwd<T, M>(x[i], g[i]); ++i; }
  for (; i + 2 * Q::L <= e; i += 2 * Q::L) {
    auto x0 = Q::load(x + i), x1 = Q::load(x + i + Q::L);
    auto g0 = Q::load(g + i), g1 = Q::load(g + i + Q::L);
    Q::stream(gx + i, vbwd<T, M>(x0, g0));
    Q::stream(gx + i + Q::L, vbwd<T, M>(x1, g1));
  }
  for (; i < e; ++i) gx[i] = bwd<T, M>(x[i], g[i]);
  _mm_sfence();
}
#endif

// Cached loops (plain C++, vectorised by the compiler), compiled for the
// baseline and again for AVX2 / AVX-512 (target_attrs.h): data that stays in
// cache moves as fast as the vectors are wide.
template <typename T>
inline void plain_fwd(const T* x, T* y, int64_t b, int64_t e) {
  // In place (x == y) or disjoint: separate loops so that GCC vectorises both
  // without a runtime overlap check (which exact aliasing would fail).
  if (x == y) {
    for (int64_t i = b; i < e; ++i) y[i] = fwd(y[i]);
  } else {
    const T* __restrict xr = x;
    T* __restrict yr = y;
    for (int64_t i = b; i < e; ++i) yr[i] = fwd(xr[i]);
  }
}

template <typename T, ReluMode M>
inline void plain_bwd(const T* x, const T* g, T* gx, int64_t b, int64_t e) {
  if (gx == g || gx == x) {
    // in place: every element is read before it is written; both inputs are
    // read through gx's own pointer where they alias it.
    if (gx == g && gx == x) {
      for (int64_t i = b; i < e; ++i) gx[i] = bwd<T, M>(gx[i], gx[i]);
    } else if (gx == g) {
      const T* __restrict xr = x;
      for (int64_t i = b; i < e; ++i) gx[i] = bwd<T, M>(xr[i], gx[i]);
    } else {
      const T* __restrict gr = g;
      for (int64_t i = b; i < e; ++i) gx[i] = bwd<T, M>(gx[i], gr[i]);
    }
  } else {
    const T* __restrict xr = x;
    const T* __restrict gr = g;
    T* __restrict o = gx;
    for (int64_t i = b; i < e; ++i) o[i] = bwd<T, M>(xr[i], gr[i]);
  }
}

#if FC_POOL_X86_MULTI
template <typename T>
FC_POOL_TARGET_AVX512 void plain_fwd_avx512(const T* x, T* y, int64_t b, int64_t e) { plain_fwd<T>(x, y, b, e); }
template <typename T>
FC_POOL_TARGET_AVX2 void plain_fwd_avx2(const T* x, T* y, int64_t b, int64_t e) { plain_fwd<T>(x, y, b, e); }
template <typename T, ReluMode M>
FC_POOL_TARGET_AVX512 void plain_bwd_avx512(const T* x, const T* g, T* gx, int64_t b, int64_t e) {
  plain_bwd<T, M>(x, g, gx, b, e);
}
template <typename T, ReluMode M>
FC_POOL_TARGET_AVX2 void plain_bwd_avx2(const T* x, const T* g, T* gx, int64_t b, int64_t e) {
  plain_bwd<T, M>(x, g, gx, b, e);
}
#endif

template <typename T>
void relu_fwd_range(const T* x, T* y, int64_t b, int64_t e, bool stream) {
#ifdef FC_RELU_SSE2
  if (stream) { stream_fwd<T>(x, y, b, e); return; }
#else
  (void)stream;
#endif
#if FC_POOL_X86_MULTI
  const int isa = isa_level();
  if (isa == 2) { plain_fwd_avx512<T>(x, y, b, e); return; }
  if (isa == 1) { plain_fwd_avx2<T>(x, y, b, e); return; }
#endif
  plain_fwd<T>(x, y, b, e);
}

template <typename T, ReluMode M>
void relu_bwd_range(const T* x, const T* g, T* gx, int64_t b, int64_t e, bool stream) {
#ifdef FC_RELU_SSE2
  if (stream) { stream_bwd<T, M>(x, g, gx, b, e); return; }
#else
  (void)stream;
#endif
#if FC_POOL_X86_MULTI
  const int isa = isa_level();
  if (isa == 2) { plain_bwd_avx512<T, M>(x, g, gx, b, e); return; }
  if (isa == 1) { plain_bwd_avx2<T, M>(x, g, gx, b, e); return; }
#endif
  plain_bwd<T, M>(x, g, gx, b, e);
}

template <typename T>
void fwd_impl(const ReluParams& p, const ExecContext& ctx) {
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const bool stream = p.n * int64_t(sizeof(T)) * 2 >= kStreamBytes;
  parallel_chunks(p.n, sizeof(T), ctx.num_threads,
                  [&](int64_t b, int64_t e) { relu_fwd_range<T>(x, y, b, e, stream); });
}

template <typename T, ReluMode M>
void bwd_impl(const ReluParams& p, const ExecContext& ctx) {
  const T* g = static_cast<const T*>(p.gy);
  // deconvnet never reads x (it may be null): point it at gy.
  const T* x = M == ReluMode::deconvnet ? g : static_cast<const T*>(p.x);
  T* gx = static_cast<T*>(p.gx);
  const bool stream = p.n * int64_t(sizeof(T)) * 3 >= kStreamBytes;
  parallel_chunks(p.n, sizeof(T), ctx.num_threads,
                  [&](int64_t b, int64_t e) { relu_bwd_range<T, M>(x, g, gx, b, e, stream); });
}

template <typename T>
void bwd_dispatch(const ReluParams& p, const ExecContext& ctx) {
  switch (p.mode) {
    case ReluMode::guided: bwd_impl<T, ReluMode::guided>(p, ctx); break;
    case ReluMode::deconvnet: bwd_impl<T, ReluMode::deconvnet>(p, ctx); break;
    default: bwd_impl<T, ReluMode::relu>(p, ctx); break;
  }
}

}  // namespace

void relu_forward(const ReluParams& p, const ExecContext& ctx) {
  if (p.n <= 0) return;
  if (p.dtype == DType::f64) fwd_impl<double>(p, ctx);
  else fwd_impl<float>(p, ctx);
}

void relu_backward(const ReluParams& p, const ExecContext& ctx) {
  if (p.n <= 0) return;
  if (p.dtype == DType::f64) bwd_dispatch<double>(p, ctx);
  else bwd_dispatch<float>(p, ctx);
}

}  // namespace cpu
}  // namespace fastconv
