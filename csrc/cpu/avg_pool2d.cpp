// avg_pool2d on the CPU, float32 and float64, dense NCHW.
//   forward:  x (N, C, H, W) -> y (N, C, P, Q), padding counts as zeros.
//   backward: gy (N, C, P, Q) -> gx (N, C, H, W), fully overwritten.
// Divisor rules, as torch's CPU kernel: with ih0 = oh*sH - pH,
//   ih1 = min(ih0 + kH, H + pH) (likewise for w), pool_size = (ih1-ih0)(iw1-iw0);
//   then the window is clipped to the input. divisor_override wins; else
//   count_include_pad ? pool_size : number of real elements. A window with no
//   real element gives 0 (and no gradient).
// The window sums run in torch's order (rows, then columns, from 0) and the
// backward adds gy / divisor into gx in torch's output order, so results are
// the same bits as torch's, except the global case below.
// Variants:
//   - global pooling (kernel = (H, W), no padding, P = Q = 1): one mean per
//     plane (float32 summed in blocks of float lanes, blocks added in double),
//     backward a broadcast per plane;
//   - windowed forward, float32 on AVX-512 with column stride 1 or 2 (see
//     taps_chosen): 16 output columns of a row per vector, each tap one
//     masked load, the sums in torch's order (csrc/cpu/isa/avg_pool.cpp);
//   - other windowed forward: per output row, border columns by a scalar loop,
//     interior columns by unrolled 2x2/s2, 3x3/s2, 3x3/s1 kernels when the
//     window's rows are all inside, else by one vectorised pass per tap;
//     parallel over output rows, large outputs staged and streamed;
//   - windows that tile the map (kernel = stride, no padding) backward: per
//     plane the deltas widened in one pass and copied to their input rows,
//     each input written once (tiled_plane);
//   - other windowed backward: per plane in a cache-resident buffer: per output row
//     the deltas gy / divisor, then for each input row of the window either a
//     gather pass (stride 1 or 2, kernel width 2 or 3: each input adds its
//     deltas in one read-modify-write) or one vectorised scatter-add pass per
//     tap (taps from the right), so that each input sees its outputs in
//     torch's order; parallel over planes, streamed out when gx is large.
//   The windowed kernels are compiled for the baseline ISA and again for AVX2
//   and AVX-512 (function target attributes; the ISA follows fastconv's
//   dispatcher, cpu::active_isa_name(), so FASTCONV_ISA applies).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/cpu_features.h"
#include "common/kernels.h"

#include "cpu/target_attrs.h"

namespace fastconv {
namespace cpu {

namespace {

constexpr int64_t kStreamBytes = int64_t(64) << 20;
constexpr int64_t kSerialWork = int64_t(1) << 16;


inline int nthreads(const ExecContext& ctx) { return ctx.num_threads < 1 ? 1 : ctx.num_threads; }

inline void stream_copy(void* dst, const void* src, size_t n) {
#if defined(__SSE2__)
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  size_t head = (16 - (reinterpret_cast<uintptr_t>(d) & 15)) & 15;
  if (head > n) head = n;
  std::memcpy(d, s, head);
  d += head; s += head; n -= head;
  for (; n >= 64; n -= 64, d += 64, s += 64) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 16));
    __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 32));
    __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 48), e);
  }
  for (; n >= 16; n -= 16, d += 16, s += 16)
    _mm_stream_si128(reinterpret_cast<__m128i*>(d), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
  std::memcpy(d, s, n);
#else
  std::memcpy(dst, src, n);
#endif
}

inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

inline void interior_range(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad,
                           int64_t& lo, int64_t& hi) {
  lo = std::min(out, (pad + stride - 1) / stride);
  int64_t num = in - k + pad;
  hi = num < 0 ? lo : std::max(lo, std::min(out, num / stride + 1));
}

// Window of output o along one axis: real range [b, e) and the divisor
// factor (padded size or real size).
struct Span {
  int64_t b, e, pad_size;
};
inline Span span(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t in) {
  int64_t i0 = o * stride - pad;
  int64_t i1 = std::min(i0 + k, in + pad);
  Span s;
  s.pad_size = i1 - i0;
  s.b = std::max<int64_t>(i0, 0);
  s.e = std::min(i1, in);
  return s;
}

// Divisor of output (oh, ow), or 0 when the window holds no real element.
inline int64_t divisor(const PoolParams& p, const Span& sh, const Span& sw) {
  if (sh.b >= sh.e || sw.b >= sw.e) return 0;
  if (p.divisor_override != 0) return p.divisor_override;
  if (p.count_include_pad) return sh.pad_size * sw.pad_size;
  return (sh.e - sh.b) * (sw.e - sw.b);
}

// ---------------------------------------------------------------- global
template <typename T>
double plane_sum(const T* __restrict x, int64_t n) {
  double total = 0;
  constexpr int64_t B = 256;
  for (int64_t b = 0; b < n; b += B) {
    const int64_t e = std::min(n, b + B);
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = b; i < e; ++i) s += x[i];
    total += double(s);
  }
  return total;
}

template <typename T>
void global_fwd(const PoolParams& p, const ExecContext& ctx) {
  const int64_t NC = p.N * p.C, HW = p.H * p.W;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const double div = double(p.divisor_override != 0 ? p.divisor_override : HW);
  const int nt = NC * HW < kSerialWork ? 1 : nthreads(ctx);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nc = 0; nc < NC; ++nc) y[nc] = T(plane_sum(x + nc * HW, HW) / div);
}

template <typename T>
void global_bwd(const PoolParams& p, const ExecContext& ctx) {
  const int64_t NC = p.N * p.C, HW = p.H * p.W;
  const T* gy = static_cast<const T*>(p.gy);
  T* gx = static_cast<T*>(p.gx);
  const T div = T(p.divisor_override != 0 ? p.divisor_override : HW);
  const int nt = NC * HW < kSerialWork ? 1 : nthreads(ctx);
  const bool stream = NC * HW * int64_t(sizeof(T)) >= kStreamBytes;
#pragma omp parallel num_threads(nt)
  {
    std::vector<T> buf(stream ? size_t(std::min<int64_t>(HW, 4096)) : 0);
#pragma omp for schedule(static)
    for (int64_t nc = 0; nc < NC; ++nc) {
      const T d = gy[nc] / div;  // torch: grad_output / divide_factor, added to 0
      T* g = gx + nc * HW;
      if (!stream) {
        for (int64_t i = 0; i < HW; ++i) g[i] = d;
      } else {
        const int64_t B = int64_t(buf.size());
        for (int64_t i = 0; i < B; ++i) buf[size_t(i)] = d;
        for (int64_t i = 0; i < HW; i += B)
          stream_copy(g + i, buf.data(), size_t(std::min(B, HW - i)) * sizeof(T));
      }
    }
    if (stream) stream_fence();
  }
}

// ---------------------------------------------------------------- forward
template <typename T>
inline T sum_scalar(const T* xp, int64_t W, const Span& sh, const Span& sw) {
  T s = 0;
  for (int64_t h = sh.b; h < sh.e; ++h)
    for (int64_t w = sw.b; w < sw.e; ++w) s += xp[h * W + w];
  return s;
}

template <typename T, int KH, int KW, int SW>
void avg_interior_unrolled(const T* __restrict xp, int64_t W, int64_t h0, int64_t pad_w, int64_t lo,
                           int64_t hi, T div, T* __restrict yrow) {
  const T* __restrict r0 = xp + h0 * W;
#pragma omp simd
  for (int64_t ow = lo; ow < hi; ++ow) {
    const int64_t c0 = ow * SW - pad_w;
    T s = T(0) + r0[c0];  // torch starts from 0 (turns -0 into +0)
    for (int kh = 0; kh < KH; ++kh)
      for (int kw = 0; kw < KW; ++kw) {
        if (kh == 0 && kw == 0) continue;
        s += r0[kh * W + c0 + kw];
      }
    yrow[ow] = s / div;
  }
}

template <typename T, int SW>
void add_tap(const T* __restrict row, int64_t off, int64_t sw, int64_t lo, int64_t hi, T* __restrict acc) {
  const int64_t s = SW ? SW : sw;
#pragma omp simd
  for (int64_t ow = lo; ow < hi; ++ow) acc[ow] += row[ow * s + off];
}

enum class Spec { none, k2s2, k3s2, k3s1 };

template <typename T>
void avg_row(const PoolParams& p, Spec spec, int64_t lo, int64_t hi, const T* xp, int64_t oh, T* yrow,
             T* acc) {
  const int64_t W = p.W;
  const Span sh = span(oh, p.stride_h, p.pad_h, p.kernel_h, p.H);
  auto border = [&](int64_t ow) {
    const Span sw = span(ow, p.stride_w, p.pad_w, p.kernel_w, W);
    const int64_t d = divisor(p, sh, sw);
    yrow[ow] = d == 0 ? T(0) : T(sum_scalar(xp, W, sh, sw) / T(d));
  };
  for (int64_t ow = 0; ow < lo; ++ow) border(ow);
  for (int64_t ow = hi; ow < p.Q; ++ow) border(ow);
  if (lo >= hi) return;
  if (sh.b >= sh.e) {
    for (int64_t ow = lo; ow < hi; ++ow) yrow[ow] = T(0);
    return;
  }
  // interior columns: full kernel width inside the input
  const int64_t d = p.divisor_override != 0 ? p.divisor_override
                    : p.count_include_pad   ? sh.pad_size * p.kernel_w
                                            : (sh.e - sh.b) * p.kernel_w;
  const T div = T(d);
  const int64_t ih0 = oh * p.stride_h - p.pad_h;
  if (spec != Spec::none && ih0 >= 0 && ih0 + p.kernel_h <= p.H) {
    switch (spec) {
      case Spec::k2s2: avg_interior_unrolled<T, 2, 2, 2>(xp, W, ih0, p.pad_w, lo, hi, div, yrow); return;
      case Spec::k3s2: avg_interior_unrolled<T, 3, 3, 2>(xp, W, ih0, p.pad_w, lo, hi, div, yrow); return;
      case Spec::k3s1: avg_interior_unrolled<T, 3, 3, 1>(xp, W, ih0, p.pad_w, lo, hi, div, yrow); return;
      default: break;
    }
  }
  for (int64_t ow = lo; ow < hi; ++ow) acc[ow] = T(0);
  for (int64_t h = sh.b; h < sh.e; ++h) {
    const T* row = xp + h * W;
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const int64_t off = kw - p.pad_w;
      if (p.stride_w == 1) add_tap<T, 1>(row, off, 1, lo, hi, acc);
      else if (p.stride_w == 2) add_tap<T, 2>(row, off, 2, lo, hi, acc);
      else add_tap<T, 0>(row, off, p.stride_w, lo, hi, acc);
    }
  }
#pragma omp simd
  for (int64_t ow = lo; ow < hi; ++ow) yrow[ow] = acc[ow] / div;
}

struct FwdJob {
  const PoolParams* p;
  Spec spec;
  int64_t lo, hi;  // interior output columns
  int64_t rb, re;  // this thread's output rows (flat over N*C*P)
  bool stream;
  int64_t blk;     // rows per staging block when streaming
};

template <typename T>
void fwd_thread(const FwdJob& j) {
  const PoolParams& p = *j.p;
  const int64_t P = p.P, Q = p.Q, HW = p.H * p.W;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const bool stream = j.stream;
  const int64_t blk = j.blk;
  std::vector<T> acc = std::vector<T>(size_t(Q));
  std::vector<T> ystage(stream ? size_t(blk * Q) : 0);
  for (int64_t b = j.rb; b < j.re; b += (stream ? blk : j.re - j.rb)) {
    const int64_t e = stream ? std::min(j.re, b + blk) : j.re;
    for (int64_t r = b; r < e; ++r) {
      const int64_t nc = r / P, oh = r - nc * P;
      T* yrow = stream ? ystage.data() + (r - b) * Q : y + r * Q;
      avg_row<T>(p, j.spec, j.lo, j.hi, x + nc * HW, oh, yrow, acc.data());
    }
    if (stream) stream_copy(y + b * Q, ystage.data(), size_t((e - b) * Q) * sizeof(T));
  }
  if (stream) stream_fence();
}

#if FC_POOL_X86_MULTI
template <typename T>
FC_POOL_TARGET_AVX512 void fwd_thread_avx512(const FwdJob& j) { fwd_thread<T>(j); }
template <typename T>
FC_POOL_TARGET_AVX2 void fwd_thread_avx2(const FwdJob& j) { fwd_thread<T>(j); }
#endif

// float32 on AVX-512: 16 output columns of a row per vector, each tap a
// masked load (cpu_features.h AvgTapsArgs), for column strides 1 and 2.
// Measured here, 2 threads, against the row kernels above: LeNet's 2x2 pool
// of 28x28 maps 1.38x faster, 10x10 1.22x; 3x3 / stride 2 on 56x56 1.57x,
// 3x3 / stride 1 on 14x14 4.0x; but 2x2 / stride 2 on 112x112 0.89x (the
// unrolled row kernel's long rows) and 3x3 on 6x6 (2 output columns) 0.92x.
constexpr int64_t kTapsMinQ = 4;
constexpr int64_t kTapsMaxQ2x2 = 32;
bool taps_chosen(const PoolParams& p, size_t elem) {
  if (elem != 4 || kernels().savg_taps == nullptr || (p.stride_w != 1 && p.stride_w != 2)) return false;
  if (p.Q < kTapsMinQ) return false;
  if (p.kernel_w == 2 && p.stride_w == 2 && p.Q >= kTapsMaxQ2x2) return false;
  return true;
}

void taps_fwd(const PoolParams& p, const ExecContext& ctx) {
  const int64_t rows = p.N * p.C * p.P;
  std::vector<float> col_factor(size_t((p.Q + 15) / 16 * 16), 0.0f);
  for (int64_t ow = 0; ow < p.Q; ++ow) {
    const Span sw = span(ow, p.stride_w, p.pad_w, p.kernel_w, p.W);
    col_factor[size_t(ow)] = float(p.divisor_override != 0 ? p.divisor_override
                                   : p.count_include_pad   ? sw.pad_size
                                                           : sw.e - sw.b);
  }
  const int64_t work = rows * p.Q * p.kernel_h * p.kernel_w;
  const int nt = work < kSerialWork ? 1 : nthreads(ctx);
  const AvgTapsFn kernel = kernels().savg_taps;
#pragma omp parallel num_threads(nt)
  {
    const ThreadShare sh = thread_share(rows);
    const AvgTapsArgs a{p.H, p.W, p.P, p.Q, p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w,
                        p.count_include_pad, p.divisor_override, col_factor.data(), static_cast<const float*>(p.x),
                        static_cast<float*>(p.y), sh.b, sh.e};
    if (a.r0 < a.r1) kernel(a);
  }
}

template <typename T>
void windowed_fwd(const PoolParams& p, const ExecContext& ctx) {
  if (taps_chosen(p, sizeof(T))) {
    taps_fwd(p, ctx);
    return;
  }
  const int64_t rows = p.N * p.C * p.P, Q = p.Q;
  Spec spec = Spec::none;
  if (p.kernel_h == 2 && p.kernel_w == 2 && p.stride_w == 2) spec = Spec::k2s2;
  else if (p.kernel_h == 3 && p.kernel_w == 3 && p.stride_w == 2) spec = Spec::k3s2;
  else if (p.kernel_h == 3 && p.kernel_w == 3 && p.stride_w == 1) spec = Spec::k3s1;
  int64_t lo, hi;
  interior_range(p.W, Q, p.kernel_w, p.stride_w, p.pad_w, lo, hi);
  const bool stream = rows * Q * int64_t(sizeof(T)) >= kStreamBytes;
  const int64_t blk = stream ? std::max<int64_t>(1, (int64_t(32) << 10) / (Q * int64_t(sizeof(T)))) : 0;
  const int64_t work = rows * Q * p.kernel_h * p.kernel_w;
  const int nt = work < kSerialWork ? 1 : nthreads(ctx);
  const int isa = isa_level();
#pragma omp parallel num_threads(nt)
  {
    const ThreadShare sh = thread_share(rows);
    FwdJob job{&p, spec, lo, hi, sh.b, sh.e, stream, blk};
#if FC_POOL_X86_MULTI
    if (isa == 2) fwd_thread_avx512<T>(job);
    else if (isa == 1) fwd_thread_avx2<T>(job);
    else
#endif
      fwd_thread<T>(job);
  }
}

// ---------------------------------------------------------------- backward
// g[ow * s + off] += d[ow] for ow in [lo, hi)
template <typename T, int SW>
void scatter_tap(T* __restrict g, int64_t off, int64_t sw, int64_t lo, int64_t hi, const T* __restrict d) {
  const int64_t s = SW ? SW : sw;
#pragma omp simd
  for (int64_t ow = lo; ow < hi; ++ow) g[ow * s + off] += d[ow];
}

// Stride 2, taps kw+1 and kw in one pass (they touch inputs of different
// parity, so each input still receives its deltas in the same order):
// g[2ow + off + 1] += d[ow] for ow in [lo1, hi1), g[2ow + off] += d[ow] for
// ow in [lo0, hi0).
template <typename T>
void scatter_pair_s2(T* __restrict g, int64_t off, int64_t lo1, int64_t hi1, int64_t lo0, int64_t hi0,
                     const T* __restrict d) {
  const int64_t lo = std::max(lo0, lo1), hi = std::min(hi0, hi1);
  if (lo >= hi) {
    scatter_tap<T, 2>(g, off + 1, 2, lo1, hi1, d);
    scatter_tap<T, 2>(g, off, 2, lo0, hi0, d);
    return;
  }
  for (int64_t ow = lo1; ow < lo; ++ow) g[2 * ow + off + 1] += d[ow];
  for (int64_t ow = lo0; ow < lo; ++ow) g[2 * ow + off] += d[ow];
#pragma omp simd
  for (int64_t ow = lo; ow < hi; ++ow) {
    g[2 * ow + off] += d[ow];
    g[2 * ow + off + 1] += d[ow];
  }
  for (int64_t ow = hi; ow < hi1; ++ow) g[2 * ow + off + 1] += d[ow];
  for (int64_t ow = hi; ow < hi0; ++ow) g[2 * ow + off] += d[ow];
}

// Stride 2, a single tap: g[2ow + off] += d[ow] for ow in [lo, hi). The
// neighbours 2ow + off + 1 get + 0 (an exact no-op: the sums start at +0
// and so are never -0) so that the stores have no gaps and vectorise.
template <typename T>
void scatter_single_s2(T* __restrict g, int64_t off, int64_t lo, int64_t hi, int64_t W,
                       const T* __restrict d) {
  int64_t hi2 = hi;
  while (hi2 > lo && 2 * (hi2 - 1) + off + 1 >= W) --hi2;
#pragma omp simd
  for (int64_t ow = lo; ow < hi2; ++ow) {
    g[2 * ow + off] += d[ow];
    g[2 * ow + off + 1] += T(0);
  }
  for (int64_t ow = hi2; ow < hi; ++ow) g[2 * ow + off] += d[ow];
}

// Gather forms (one read-modify-write of each input per output row, so no
// store-to-load stalls between passes). dp is the delta row with K zeros on
// each side: dp[K + ow] = d[ow] (adding the zeros is exact: the sums start at
// +0 and so are never -0). Each input adds its deltas in increasing ow.
// Stride 1: g[w] += d[w + pW - kw] for kw = K-1 .. 0.
template <typename T, int K>
void gather_row_s1(T* __restrict g, int64_t W, int64_t pad_w, const T* __restrict dp) {
  const T* __restrict base = dp + K + pad_w;
#pragma omp simd
  for (int64_t w = 0; w < W; ++w) {
    T acc = g[w];
    for (int kw = K - 1; kw >= 0; --kw) acc += base[w - kw];
    g[w] = acc;
  }
}

// Stride 2: with u = w + pW, u = 2j gets d[j - kw/2] for even kw, u = 2j + 1
// gets d[j - (kw-1)/2] for odd kw, kw from K-1 down.
template <typename T, int K>
inline T gather_s2_one(T acc, int64_t u, const T* dpk) {
  const int64_t j = u >> 1;
  const int par = int(u & 1);
  for (int kw = K - 1; kw >= 0; --kw)
    if ((kw & 1) == par) acc += dpk[j - (kw - par) / 2];
  return acc;
}

template <typename T, int K>
void gather_row_s2(T* __restrict g, int64_t W, int64_t pad_w, const T* __restrict dp) {
  const T* __restrict dpk = dp + K;
  // pairs u = 2j, 2j + 1 with both w = u - pW inside [0, W)
  const int64_t jb = (pad_w + 1) / 2;
  const int64_t je = std::max(jb, (W + pad_w) / 2);  // 2j + 1 - pW <= W - 1
  for (int64_t w = 0; w < std::min(W, 2 * jb - pad_w); ++w) g[w] = gather_s2_one<T, K>(g[w], w + pad_w, dpk);
#pragma omp simd
  for (int64_t j = jb; j < je; ++j) {
    T a0 = g[2 * j - pad_w], a1 = g[2 * j + 1 - pad_w];
    for (int kw = K - 1; kw >= 0; --kw) {
      if ((kw & 1) == 0) a0 += dpk[j - kw / 2];
      else a1 += dpk[j - (kw - 1) / 2];
    }
    g[2 * j - pad_w] = a0;
    g[2 * j + 1 - pad_w] = a1;
  }
  for (int64_t w = std::max<int64_t>(0, 2 * je - pad_w); w < W; ++w)
    g[w] = gather_s2_one<T, K>(g[w], w + pad_w, dpk);
}

struct BwdJob {
  const PoolParams* p;
  int64_t lo, hi;            // interior output columns
  const int64_t* tap_lo;     // per kw: valid ow range
  const int64_t* tap_hi;
  int64_t nb, ne;            // this thread's planes
  bool stage;
  bool tiled;                // windows tile the map (see tiled_plane)
};

// Windows that tile the map (kernel = stride, no padding, every window
// inside): each input gets one delta, or none past the last window, so a
// plane is written once, with no zeroing or read-modify-write pass. The
// deltas of the whole plane are widened in one flat pass (each repeated kw
// times: the rows of the plane's first input rows, back to back), then each
// is copied to its kh input rows. Against the gather form, whose per-row
// setup and remainders dominate on short rows (2 threads, 2-core AVX2 EPYC):
// LeNet's 2x2/s2 backward, 64 x 6 x 28x28, 157-173 us -> 74-96 us; 3x3/s3 on
// 32 x 64 x 27x27 1.89 ms -> 0.32 ms; 2x2/s2 on 8 x 64 x 112x112 2.85 ms ->
// 2.15 ms. d + 0 keeps torch's +0 for a -0 delta (torch adds the delta to a
// zeroed gx).
template <typename T, int KW>
void widen_deltas(const T* __restrict gy, int64_t n, T div, int64_t kw, T* __restrict dw) {
  if constexpr (KW > 0) {
#pragma omp simd
    for (int64_t f = 0; f < n; ++f)
      for (int s = 0; s < KW; ++s) dw[f * KW + s] = gy[f] / div + T(0);
  } else {
    for (int64_t f = 0; f < n; ++f)
      for (int64_t s = 0; s < kw; ++s) dw[f * kw + s] = gy[f] / div + T(0);
  }
}

// n elements from s to d (not overlapping) in 32-byte moves, the last one
// ending at n (overlapping the one before): rows of a few vectors, no
// remainder loop, and no memmove call (which GCC makes of the plain loop;
// the empty asm hides the index from that pattern match). conv2d.cpp's
// copy_row (byte pieces of 64 / 16 / 4, and zero fills) in its place made
// LeNet's backward 1.15-1.2x slower, one build per process.
template <typename T>
inline void copy_row_short(T* __restrict d, const T* __restrict s, int64_t n) {
  typedef T V __attribute__((vector_size(32), aligned(alignof(T))));
  constexpr int64_t L = 32 / int64_t(sizeof(T));
  if (n < L) {
    for (int64_t i = 0; i < n; ++i) d[i] = s[i];
    return;
  }
  for (int64_t i = 0; i + L < n; i += L) {
    *reinterpret_cast<V*>(d + i) = *reinterpret_cast<const V*>(s + i);
    asm("" : "+r"(i));
  }
  *reinterpret_cast<V*>(d + n - L) = *reinterpret_cast<const V*>(s + n - L);
}

template <typename T>
void tiled_plane(const PoolParams& p, const T* __restrict gyp, T* __restrict g, T* __restrict dw) {
  const int64_t P = p.P, Q = p.Q, W = p.W, kh = p.kernel_h, kw = p.kernel_w, Wd = Q * kw;
  const T div = T(p.divisor_override != 0 ? p.divisor_override : kh * kw);
  if (kw == 2) widen_deltas<T, 2>(gyp, P * Q, div, kw, dw);
  else if (kw == 3) widen_deltas<T, 3>(gyp, P * Q, div, kw, dw);
  else widen_deltas<T, 0>(gyp, P * Q, div, kw, dw);
  for (int64_t oh = 0; oh < P; ++oh)
    for (int64_t r = 0; r < kh; ++r) {
      T* gr = g + (oh * kh + r) * W;
      copy_row_short(gr, dw + oh * Wd, Wd);
      std::fill(gr + Wd, gr + W, T(0));
    }
  std::fill(g + P * kh * W, g + p.H * W, T(0));
}

template <typename T>
void bwd_thread(const BwdJob& j) {
  const PoolParams& p = *j.p;
  const int64_t P = p.P, Q = p.Q, H = p.H, W = p.W, HW = H * W, PQ = P * Q;
  const T* gy = static_cast<const T*>(p.gy);
  T* gx = static_cast<T*>(p.gx);
  const int64_t lo = j.lo, hi = j.hi;
  std::vector<T> buf(j.stage ? size_t(HW) : 0);
  // delta row with kernel_w zeros on each side (gather forms read around it)
  const int64_t K = p.kernel_w;
  std::vector<T> dpad = std::vector<T>(size_t(Q + W + 2 * K + p.pad_w + 2));
  T* dptr = dpad.data() + K;
  std::vector<T> widened(j.tiled ? size_t(PQ * K) : 0);  // tiled_plane's widened deltas
  const int gather = p.stride_w == 1 ? (K == 2 ? 12 : K == 3 ? 13 : 0)
                     : p.stride_w == 2 ? (K == 2 ? 22 : K == 3 ? 23 : 0) : 0;
  for (int64_t nc = j.nb; nc < j.ne; ++nc) {
    T* g = j.stage ? buf.data() : gx + nc * HW;
    const T* gyp = gy + nc * PQ;
    if (j.tiled) {
      tiled_plane<T>(p, gyp, g, widened.data());
      if (j.stage) stream_copy(gx + nc * HW, g, size_t(HW) * sizeof(T));
      continue;
    }
    std::memset(static_cast<void*>(g), 0, size_t(HW) * sizeof(T));
    for (int64_t oh = 0; oh < P; ++oh) {
      const Span sh = span(oh, p.stride_h, p.pad_h, p.kernel_h, H);
      if (sh.b >= sh.e) continue;
      const T* grow = gyp + oh * Q;
      // deltas gy / divisor; the interior columns share one divisor
      for (int64_t ow = 0; ow < Q; ++ow) {
        if (ow == lo && lo < hi) { ow = hi - 1; continue; }
        const Span sw = span(ow, p.stride_w, p.pad_w, p.kernel_w, W);
        const int64_t dv = divisor(p, sh, sw);
        dptr[ow] = dv == 0 ? T(0) : T(grow[ow] / T(dv));
      }
      if (lo < hi) {
        const T div = T(p.divisor_override != 0 ? p.divisor_override
                        : p.count_include_pad   ? sh.pad_size * p.kernel_w
                                                : (sh.e - sh.b) * p.kernel_w);
        T* dd = dptr;
#pragma omp simd
        for (int64_t ow = lo; ow < hi; ++ow) dd[ow] = grow[ow] / div;
      }
      if (gather != 0) {
        for (int64_t h = sh.b; h < sh.e; ++h) {
          T* gr = g + h * W;
          switch (gather) {
            case 12: gather_row_s1<T, 2>(gr, W, p.pad_w, dpad.data()); break;
            case 13: gather_row_s1<T, 3>(gr, W, p.pad_w, dpad.data()); break;
            case 22: gather_row_s2<T, 2>(gr, W, p.pad_w, dpad.data()); break;
            default: gather_row_s2<T, 3>(gr, W, p.pad_w, dpad.data()); break;
          }
        }
        continue;
      }
      const T* dd = dptr;
      // taps from the right: each input sees its outputs in increasing ow
      for (int64_t h = sh.b; h < sh.e; ++h) {
        T* gr = g + h * W;
        int64_t kw = p.kernel_w - 1;
        if (p.stride_w == 2) {
          for (; kw >= 1; kw -= 2)
            scatter_pair_s2<T>(gr, kw - 1 - p.pad_w, j.tap_lo[kw], j.tap_hi[kw], j.tap_lo[kw - 1],
                               j.tap_hi[kw - 1], dd);
          if (kw == 0) scatter_single_s2<T>(gr, -p.pad_w, j.tap_lo[0], j.tap_hi[0], W, dd);
          continue;
        }
        for (; kw >= 0; --kw) {
          const int64_t off = kw - p.pad_w;
          if (p.stride_w == 1) scatter_tap<T, 1>(gr, off, 1, j.tap_lo[kw], j.tap_hi[kw], dd);
          else if (p.stride_w == 2) scatter_tap<T, 2>(gr, off, 2, j.tap_lo[kw], j.tap_hi[kw], dd);
          else scatter_tap<T, 0>(gr, off, p.stride_w, j.tap_lo[kw], j.tap_hi[kw], dd);
        }
      }
    }
    if (j.stage) stream_copy(gx + nc * HW, g, size_t(HW) * sizeof(T));
  }
  if (j.stage) stream_fence();
}

#if FC_POOL_X86_MULTI
template <typename T>
FC_POOL_TARGET_AVX512 void bwd_thread_avx512(const BwdJob& j) { bwd_thread<T>(j); }
template <typename T>
FC_POOL_TARGET_AVX2 void bwd_thread_avx2(const BwdJob& j) { bwd_thread<T>(j); }
#endif

template <typename T>
void windowed_bwd(const PoolParams& p, const ExecContext& ctx) {
  const int64_t NC = p.N * p.C, Q = p.Q, W = p.W, HW = p.H * p.W, PQ = p.P * Q;
  int64_t lo, hi;
  interior_range(W, Q, p.kernel_w, p.stride_w, p.pad_w, lo, hi);
  const bool stage = NC * HW * int64_t(sizeof(T)) >= kStreamBytes && HW * int64_t(sizeof(T)) <= (int64_t(1) << 20);
  const int64_t work = NC * (HW + PQ * p.kernel_h * p.kernel_w);
  const int nt = work < kSerialWork ? 1 : int(std::min<int64_t>(nthreads(ctx), NC));
  // Valid ow range per tap kw: 0 <= ow*sW - pW + kw < W.
  std::vector<int64_t> tap_lo(size_t(p.kernel_w)), tap_hi(size_t(p.kernel_w));
  for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
    const int64_t off = kw - p.pad_w;  // w = ow*s + off
    int64_t a = off >= 0 ? 0 : (-off + p.stride_w - 1) / p.stride_w;
    int64_t num = W - 1 - off;
    int64_t b = num < 0 ? 0 : num / p.stride_w + 1;
    a = std::min(a, Q);
    b = std::max(a, std::min(b, Q));
    tap_lo[size_t(kw)] = a;
    tap_hi[size_t(kw)] = b;
  }
  const bool tiled = p.stride_h == p.kernel_h && p.stride_w == p.kernel_w && p.pad_h == 0 && p.pad_w == 0 &&
                     p.P * p.kernel_h <= p.H && Q * p.kernel_w <= W;
  const int isa = isa_level();
#pragma omp parallel num_threads(nt)
  {
    const ThreadShare sh = thread_share(NC);
    BwdJob job{&p, lo, hi, tap_lo.data(), tap_hi.data(), sh.b, sh.e, stage, tiled};
#if FC_POOL_X86_MULTI
    if (isa == 2) bwd_thread_avx512<T>(job);
    else if (isa == 1) bwd_thread_avx2<T>(job);
    else
#endif
      bwd_thread<T>(job);
  }
}

inline bool is_global(const PoolParams& p) {
  return p.P == 1 && p.Q == 1 && p.kernel_h == p.H && p.kernel_w == p.W && p.pad_h == 0 && p.pad_w == 0;
}

template <typename T>
void fwd_impl(const PoolParams& p, const ExecContext& ctx) {
  if (p.N * p.C <= 0 || p.P <= 0 || p.Q <= 0) return;
  if (is_global(p)) global_fwd<T>(p, ctx);
  else windowed_fwd<T>(p, ctx);
}

template <typename T>
void bwd_impl(const PoolParams& p, const ExecContext& ctx) {
  if (p.N * p.C <= 0 || p.H * p.W <= 0) return;
  if (is_global(p)) global_bwd<T>(p, ctx);
  else windowed_bwd<T>(p, ctx);
}

}  // namespace

void avg_pool2d_forward(const PoolParams& p, const ExecContext& ctx) {
  if (p.dtype == DType::f64) fwd_impl<double>(p, ctx);
  else fwd_impl<float>(p, ctx);
}

void avg_pool2d_backward(const PoolParams& p, const ExecContext& ctx) {
  if (p.dtype == DType::f64) bwd_impl<double>(p, ctx);
  else bwd_impl<float>(p, ctx);
}

}  // namespace cpu
}  // namespace fastconv
