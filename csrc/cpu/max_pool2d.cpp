// max_pool2d on the CPU, float32 and float64, dense NCHW.
//   forward:  x (N, C, H, W) -> y (N, C, P, Q) and, when p.indices is set,
//             indices (N, C, P, Q) int64 = h * W + w inside the (n, c) plane.
//             Padding acts as -inf. Exactly torch's scan: window rows then
//             columns in order, update when `v > max || isnan(v)`, so the
//             first maximum wins ties and the last NaN of a window wins; a
//             window of only -inf reports its first in-input position.
//   backward: gx (N, C, H, W) = 0, then gx[plane][indices] += gy, in output
//             order (deterministic, the same sums as torch). Indices outside
//             [0, H*W) are skipped: torch's forward itself reports one past
//             the plane for a window that lies wholly in the padding (e.g.
//             H = 1, kernel 2, padding 1, dilation 2), which has no input to
//             receive a gradient (torch's backward would write out of bounds).
// Variants (forward):
//   - column lanes (float32 on AVX-512, column stride 1 or 2, 10 or more
//     output columns, see taps_chosen): 16 output columns of a row per
//     vector, each tap one masked load (stride 2: two and a permute), taken
//     over all of the paths below (csrc/cpu/isa/max_pool.cpp);
//   - padded rows (column stride 1, see padded_rows_chosen): each plane's rows
//     copied between -inf columns, 16 neighbouring outputs scanned per load
//     (csrc/cpu/isa/max_pool.cpp, compiled per ISA);
//   - outputs as lanes (small and mid-size planes whose windows all lie inside
//     the input, see gather_chosen): 16 consecutive outputs of the flat output,
//     several planes side by side, each tap one gather (the same file; on
//     AVX-512 float32, where a vector's taps lie within 128 inputs, permutes
//     of those inputs loaded once; the tables kept for the last 8 plane
//     geometries);
//   - planes as lanes (the other small and mid-size planes, see planes_chosen):
//     16 planes transposed into [pixel][plane], every window scanned once for
//     all 16 (the same file), transposed back;
//   - row kernels (column strides above 1: large planes, and 2x2 / stride 2
//     with rows of 32 or more): per output row, border columns go through a
//     scalar torch-exact loop; interior columns use
//     . unrolled 2x2/s2, 3x3/s2 kernels (dilation 1) for rows whose
//       window lies inside the input: value and index stay in registers;
//     . otherwise a tap-major loop (one vectorised pass per window tap over
//       the output row, state in a small per-thread buffer) for any kernel,
//       stride, dilation and clipped rows.
//   Indices are tracked in lanes as wide as the data, so that SSE2 selects
//   them with the same mask: int32 for float32 (planes below 2^31 elements,
//   else int64, not vectorised), and double (exact integers) for float64.
//   Parallel over output rows (N*C*P, contiguous per thread); large outputs
//   are staged per block of rows and written with non-temporal stores.
//   The forward is compiled for the baseline ISA and again for AVX2 and
//   AVX-512 (function target attributes; the ISA follows fastconv's
//   dispatcher, cpu::active_isa_name(), so FASTCONV_ISA applies).
// Backward: parallel over (n, c) planes; each plane is accumulated in a
//   cache-resident per-thread buffer and streamed out when gx is large.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <type_traits>
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

// Output bytes above which results are staged and streamed past the cache.
constexpr int64_t kStreamBytes = int64_t(64) << 20;
// Work (input reads) below which one thread runs everything.
constexpr int64_t kSerialWork = int64_t(1) << 16;


inline int nthreads(const ExecContext& ctx) { return ctx.num_threads < 1 ? 1 : ctx.num_threads; }

// Copies n bytes, with non-temporal stores for the 16-byte aligned body.
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

// Output positions o whose window [o*s - pad, o*s - pad + keff) lies inside [0, in).
inline void interior_range(int64_t in, int64_t out, int64_t keff, int64_t stride, int64_t pad,
                           int64_t& lo, int64_t& hi) {
  lo = std::min(out, (pad + stride - 1) / stride);
  int64_t num = in - keff + pad;
  hi = num < 0 ? lo : std::max(lo, std::min(out, num / stride + 1));
}

template <typename T>
constexpr T neg_inf() { return -std::numeric_limits<T>::infinity(); }

// torch's update rule.
template <typename T>
inline bool takes(T v, T m) { return v > m || v != v; }

// The window of output pixel (oh, ow) clipped to the input as torch's
// cpu_max_pool loop clips it: rows [h0, h1) and columns [w0, w1), in steps of
// the dilation; h0 * W + w0 is the index a window of only -inf reports.
struct Clipped {
  int64_t h0, h1, w0, w1;
};
inline Clipped clip_window(const PoolParams& p, int64_t oh, int64_t ow) {
  Clipped c{oh * p.stride_h - p.pad_h, 0, ow * p.stride_w - p.pad_w, 0};
  c.h1 = std::min(c.h0 + (p.kernel_h - 1) * p.dil_h + 1, p.H);
  c.w1 = std::min(c.w0 + (p.kernel_w - 1) * p.dil_w + 1, p.W);
  while (c.h0 < 0) c.h0 += p.dil_h;
  while (c.w0 < 0) c.w0 += p.dil_w;
  return c;
}

// One output element, exactly torch's cpu_max_pool loop.
template <typename T>
inline void max_scalar(const T* xp, const PoolParams& p, int64_t oh, int64_t ow, T& out, int64_t& oidx) {
  const Clipped c = clip_window(p, oh, ow);
  int64_t mi = c.h0 * p.W + c.w0;
  T m = neg_inf<T>();
  for (int64_t ih = c.h0; ih < c.h1; ih += p.dil_h)
    for (int64_t iw = c.w0; iw < c.w1; iw += p.dil_w) {
      const int64_t k = ih * p.W + iw;
      const T v = xp[k];
      if (takes(v, m)) { m = v; mi = k; }
    }
  out = m;
  oidx = mi;
}

// Unrolled interior kernel: window rows h0 .. h0+KH-1 all inside the input,
// columns [lo, hi) interior, dilation 1. I: index lane type.
template <typename T, typename I, bool IDX, int KH, int KW, int SW>
void max_interior_unrolled(const T* __restrict xp, int64_t W, int64_t h0, int64_t pad_w,
                           int64_t lo, int64_t hi, T* __restrict yrow, I* __restrict ibuf) {
  const T* __restrict r0 = xp + h0 * W;
  const I base = I(h0 * W - pad_w);
  const I Wi = I(W);
#pragma omp simd
  for (int64_t ow = lo; ow < hi; ++ow) {
    const int64_t c0 = ow * SW - pad_w;
    const I c = I(ow) * I(SW);
    T m = r0[c0];
    I id = base + c;
    for (int kh = 0; kh < KH; ++kh)
      for (int kw = 0; kw < KW; ++kw) {
        if (kh == 0 && kw == 0) continue;
        const T v = r0[kh * W + c0 + kw];
        const bool u = takes(v, m);
        m = u ? v : m;
        if (IDX) id = u ? I(base + I(kh) * Wi + I(kw) + c) : id;
      }
    yrow[ow] = m;
    if (IDX) ibuf[ow] = id;
  }
}

// One tap pass: state (m, id) over ow in [lo, hi) updated with
// v = row[ow * SW + off] (SW = 0: runtime stride sw).
template <typename T, typename I, bool IDX, int SW>
void max_tap(const T* __restrict row, int64_t off, I base, int64_t sw, int64_t lo, int64_t hi,
             T* __restrict m, I* __restrict id) {
  const int64_t s = SW ? SW : sw;
#pragma omp simd
  for (int64_t ow = lo; ow < hi; ++ow) {
    const T v = row[ow * s + off];
    const bool u = takes(v, m[ow]);
    m[ow] = u ? v : m[ow];
    if (IDX) id[ow] = u ? I(base + I(ow) * I(s)) : id[ow];
  }
}

template <typename T, typename I, bool IDX>
void max_tap_dispatch(const T* row, int64_t off, I base, int64_t sw, int64_t lo, int64_t hi, T* m, I* id) {
  if (sw == 2) max_tap<T, I, IDX, 2>(row, off, base, sw, lo, hi, m, id);
  else max_tap<T, I, IDX, 0>(row, off, base, sw, lo, hi, m, id);
}

enum class Spec { none, k2s2, k3s2 };

// Index lanes -> int64 output (int32: vectorised; double: exact integers).
template <typename I>
inline void widen(const I* __restrict ibuf, int64_t* __restrict irow, int64_t lo, int64_t hi) {
  for (int64_t ow = lo; ow < hi; ++ow) irow[ow] = int64_t(ibuf[ow]);
}


// One output row oh of one plane into yrow / irow (irow unused unless IDX).
template <typename T, typename I, bool IDX>
void max_row(const PoolParams& p, Spec spec, int64_t lo, int64_t hi, const T* xp, int64_t oh, T* yrow,
             int64_t* irow, T* mbuf, I* ibuf) {
  const int64_t W = p.W, H = p.H;
  for (int64_t ow = 0; ow < lo; ++ow) {
    int64_t k;
    max_scalar(xp, p, oh, ow, yrow[ow], k);
    if (IDX) irow[ow] = k;
  }
  for (int64_t ow = hi; ow < p.Q; ++ow) {
    int64_t k;
    max_scalar(xp, p, oh, ow, yrow[ow], k);
    if (IDX) irow[ow] = k;
  }
  if (lo >= hi) return;
  const int64_t ih0 = oh * p.stride_h - p.pad_h;
  if (spec != Spec::none && ih0 >= 0 && ih0 + p.kernel_h <= H) {
    switch (spec) {
      case Spec::k2s2: max_interior_unrolled<T, I, IDX, 2, 2, 2>(xp, W, ih0, p.pad_w, lo, hi, yrow, ibuf); break;
      case Spec::k3s2: max_interior_unrolled<T, I, IDX, 3, 3, 2>(xp, W, ih0, p.pad_w, lo, hi, yrow, ibuf); break;
      default: break;
    }
    if (IDX) widen(ibuf, irow, lo, hi);
    return;
  }
  // Tap-major generic path over the interior columns.
  int64_t h = ih0;
  const int64_t h1 = std::min(ih0 + (p.kernel_h - 1) * p.dil_h + 1, H);
  while (h < 0) h += p.dil_h;
  const T ninf = neg_inf<T>();
  const I first = I(h * W - p.pad_w);
  const I sw = I(p.stride_w);
  for (int64_t ow = lo; ow < hi; ++ow) {
    mbuf[ow] = ninf;
    if (IDX) ibuf[ow] = I(first + I(ow) * sw);
  }
  for (; h < h1; h += p.dil_h) {
    const T* row = xp + h * W;
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const int64_t off = kw * p.dil_w - p.pad_w;
      max_tap_dispatch<T, I, IDX>(row, off, I(h * W + off), p.stride_w, lo, hi, mbuf, ibuf);
    }
  }
  std::memcpy(yrow + lo, mbuf + lo, size_t(hi - lo) * sizeof(T));
  if (IDX) widen(ibuf, irow, lo, hi);
}

template <typename T>
struct FwdJob {
  const PoolParams* p;
  Spec spec;
  int64_t lo, hi;  // interior output columns
  int64_t rb, re;  // this thread's output rows (flat over N*C*P)
  bool stream;
  int64_t blk;     // rows per staging block when streaming
};

// One thread's share of the forward: rows [rb, re).
template <typename T, typename I, bool IDX>
void fwd_thread(const FwdJob<T>& j) {
  const PoolParams& p = *j.p;
  const int64_t P = p.P, Q = p.Q, HW = p.H * p.W;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  int64_t* ind = p.indices;
  const bool stream = j.stream;
  const int64_t blk = j.blk;
  std::vector<T> mbuf = std::vector<T>(size_t(Q));
  std::vector<I> ibuf(IDX ? size_t(Q) : 0);
  std::vector<T> ystage(stream ? size_t(blk * Q) : 0);
  std::vector<int64_t> istage(stream && IDX ? size_t(blk * Q) : 0);
  for (int64_t b = j.rb; b < j.re; b += (stream ? blk : j.re - j.rb)) {
    const int64_t e = stream ? std::min(j.re, b + blk) : j.re;
    for (int64_t r = b; r < e; ++r) {
      const int64_t nc = r / P, oh = r - nc * P;
      T* yrow = stream ? ystage.data() + (r - b) * Q : y + r * Q;
      int64_t* irow = IDX ? (stream ? istage.data() + (r - b) * Q : ind + r * Q) : nullptr;
      max_row<T, I, IDX>(p, j.spec, j.lo, j.hi, x + nc * HW, oh, yrow, irow, mbuf.data(), ibuf.data());
    }
    if (stream) {
      stream_copy(y + b * Q, ystage.data(), size_t((e - b) * Q) * sizeof(T));
      if (IDX) stream_copy(ind + b * Q, istage.data(), size_t((e - b) * Q) * sizeof(int64_t));
    }
  }
  if (stream) stream_fence();
}

#if FC_POOL_X86_MULTI
// The same code compiled for AVX-512 / AVX2 (flatten inlines every callee
// into these bodies, so the vectorised loops use the wider registers).
template <typename T, typename I, bool IDX>
FC_POOL_TARGET_AVX512 void fwd_thread_avx512(const FwdJob<T>& j) { fwd_thread<T, I, IDX>(j); }
template <typename T, typename I, bool IDX>
FC_POOL_TARGET_AVX2 void fwd_thread_avx2(const FwdJob<T>& j) { fwd_thread<T, I, IDX>(j); }
#endif

template <typename T, typename I, bool IDX>
void fwd_impl(const PoolParams& p, const ExecContext& ctx) {
  const int64_t NC = p.N * p.C, P = p.P, Q = p.Q;
  const int64_t rows = NC * P;
  if (rows <= 0 || Q <= 0) return;
  Spec spec = Spec::none;
  if (p.dil_h == 1 && p.dil_w == 1) {
    if (p.kernel_h == 2 && p.kernel_w == 2 && p.stride_w == 2) spec = Spec::k2s2;
    else if (p.kernel_h == 3 && p.kernel_w == 3 && p.stride_w == 2) spec = Spec::k3s2;
  }
  int64_t lo, hi;
  interior_range(p.W, Q, (p.kernel_w - 1) * p.dil_w + 1, p.stride_w, p.pad_w, lo, hi);

  const int64_t out_bytes = rows * Q * int64_t(sizeof(T) + (IDX ? sizeof(int64_t) : 0));
  const bool stream = out_bytes >= kStreamBytes;
  // rows per staging block: about 32 KiB of output
  const int64_t blk = stream ? std::max<int64_t>(1, (int64_t(32) << 10) / (Q * int64_t(sizeof(T) + 8))) : 0;
  const int64_t work = rows * Q * p.kernel_h * p.kernel_w;
  const int nt = work < kSerialWork ? 1 : nthreads(ctx);

  const int isa = isa_level();
#pragma omp parallel num_threads(nt)
  {
    const ThreadShare sh = thread_share(rows);
    FwdJob<T> job{&p, spec, lo, hi, sh.b, sh.e, stream, blk};
#if FC_POOL_X86_MULTI
    if (isa == 2) fwd_thread_avx512<T, I, IDX>(job);
    else if (isa == 1) fwd_thread_avx2<T, I, IDX>(job);
    else
#endif
      fwd_thread<T, I, IDX>(job);
  }
}

// ---- small maps: planes as lanes ---------------------------------------------
// Output rows shorter than a few vectors leave the row kernels above running
// partial vectors and the scalar border loop, whose compares mispredict on
// random data (2x2 / 3x3 pools of 5x5 to 28x28 maps: 1-5 GB/s). Here
// kPlanes planes are transposed side by side into [pixel][plane], each window
// is scanned once with the planes as lanes - its clipping and tap order are
// geometry, the same for every plane, so each lane runs exactly torch's scan
// (max_scalar) - and the results are transposed back.
constexpr int kPlanes = 16;
// Taken when a block's transposed planes fit in L2 and the output rows are
// narrower than kPlanesMinRowQ, or the kernel is not 2x2 / stride 2 (measured
// here, 2 threads: 5x5 to 28x28 maps 1.7-6.5x over the row kernels; 3x3 pools
// of 64x64 to 112x112 maps 1.1-1.4x; 2x2 / stride 2 on 64x64 and 112x112
// maps 0.4x, where the row kernel has no border and streams its output).
constexpr int64_t kPlanesMinRowQ = 32;
constexpr int64_t kPlanesMaxBytes = int64_t(1) << 20;

// Every output pixel's window as max_scalar scans it: taps [begin[o],
// begin[o + 1]) of tap (positions h * W + w) and the index first[o] that a
// window of only -inf (or wholly in the padding) reports.
struct Windows {
  std::vector<int64_t> first, begin, tap;
};

Windows windows_of(const PoolParams& p) {
  Windows w;
  const int64_t PQ = p.P * p.Q;
  w.first.resize(size_t(PQ));
  w.begin.resize(size_t(PQ + 1));
  w.tap.reserve(size_t(PQ * p.kernel_h * p.kernel_w));
  for (int64_t oh = 0, o = 0; oh < p.P; ++oh)
    for (int64_t ow = 0; ow < p.Q; ++ow, ++o) {
      const Clipped c = clip_window(p, oh, ow);
      w.first[size_t(o)] = c.h0 * p.W + c.w0;
      w.begin[size_t(o)] = int64_t(w.tap.size());
      for (int64_t ih = c.h0; ih < c.h1; ih += p.dil_h)
        for (int64_t iw = c.w0; iw < c.w1; iw += p.dil_w) w.tap.push_back(ih * p.W + iw);
    }
  w.begin[size_t(PQ)] = int64_t(w.tap.size());
  return w;
}

bool planes_chosen(const PoolParams& p, size_t elem) {
  if (p.H * p.W * kPlanes * int64_t(elem) > kPlanesMaxBytes) return false;
  const bool k2s2 = p.kernel_h == 2 && p.kernel_w == 2 && p.stride_w == 2 && p.dil_h == 1 && p.dil_w == 1;
  return p.Q < kPlanesMinRowQ || !k2s2;
}

struct PlanesJob {
  const PoolParams* p;
  const Windows* win;
  int64_t b0, b1;  // this thread's blocks of kPlanes planes
};

template <typename T, typename I> MaxPlanesFn<T, I> max_planes_fn();
template <> MaxPlanesFn<float, int32_t> max_planes_fn() { return kernels().smax_planes; }
template <> MaxPlanesFn<double, int64_t> max_planes_fn() { return kernels().dmax_planes; }

// The index lanes' bits (I-sized words stored as T) to int64 indices, per
// ISA: compiled for the baseline (SSE2 widening, 16-byte stores) it was a
// quarter of the planes path's samples on GoogLeNet 3a's 3x3 pool (AVX-512:
// a seventh; that pool 1.06x faster).
template <typename T, typename I>
inline void widen_bits(const T* __restrict bits, int64_t* __restrict dst, int64_t n) {
  for (int64_t e = 0; e < n; ++e) {
    I v;
    std::memcpy(&v, bits + e, sizeof(I));
    dst[e] = int64_t(v);
  }
}

#if FC_POOL_X86_MULTI
template <typename T, typename I>
FC_POOL_TARGET_AVX512 void widen_bits_avx512(const T* bits, int64_t* dst, int64_t n) {
  widen_bits<T, I>(bits, dst, n);
}
template <typename T, typename I>
FC_POOL_TARGET_AVX2 void widen_bits_avx2(const T* bits, int64_t* dst, int64_t n) {
  widen_bits<T, I>(bits, dst, n);
}
#endif

template <typename T, typename I>
void widen_bits_dispatch(const T* bits, int64_t* dst, int64_t n) {
#if FC_POOL_X86_MULTI
  const int isa = isa_level();
  if (isa == 2) { widen_bits_avx512<T, I>(bits, dst, n); return; }
  if (isa == 1) { widen_bits_avx2<T, I>(bits, dst, n); return; }
#endif
  widen_bits<T, I>(bits, dst, n);
}

// I: index lanes as wide as T (int32 / int64), so one compare mask selects both.
template <typename T, typename I, bool IDX>
void planes_thread(const PlanesJob& j) {
  const PoolParams& p = *j.p;
  const Windows& win = *j.win;
  const int64_t NC = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const TransposeFn<T> transpose = gemm_tile<T>().transpose;
  const MaxPlanesFn<T, I> kernel = max_planes_fn<T, I>();
  // [pixel][plane] buffers; in a partial block the lanes past its last plane
  // hold zeros or an earlier block's values: scanned like the others, never stored
  std::vector<T> xt(static_cast<size_t>(HW * kPlanes), T(0));
  std::vector<T> yt(static_cast<size_t>(PQ * kPlanes));
  std::vector<I> it(IDX ? static_cast<size_t>(PQ * kPlanes) : 0);
  std::vector<T> ibits(IDX ? static_cast<size_t>(PQ * kPlanes) : 0);
  for (int64_t blk = j.b0; blk < j.b1; ++blk) {
    const int64_t nc0 = blk * kPlanes;
    const int np = int(std::min<int64_t>(kPlanes, NC - nc0));
    transpose(x + nc0 * HW, HW, np, HW, xt.data(), kPlanes);
    kernel(win.first.data(), win.begin.data(), win.tap.data(), PQ, xt.data(), yt.data(), IDX ? it.data() : nullptr);
    transpose(yt.data(), kPlanes, int(PQ), np, y + nc0 * PQ, PQ);
    if (IDX) {  // the index lanes' bits travel through the same transpose
      T* bits = ibits.data();
      transpose(reinterpret_cast<const T*>(it.data()), kPlanes, int(PQ), np, bits, PQ);
      widen_bits_dispatch<T, I>(bits, p.indices + nc0 * PQ, np * PQ);
    }
  }
}

template <typename T, typename I, bool IDX>
void planes_impl(const PoolParams& p, const ExecContext& ctx, const Windows& win) {
  const int64_t NC = p.N * p.C, PQ = p.P * p.Q;
  if (NC <= 0 || PQ <= 0) return;
  const int64_t nblk = (NC + kPlanes - 1) / kPlanes;
  const int64_t work = NC * (p.H * p.W + int64_t(win.tap.size()));
  const int nt = work < kSerialWork ? 1 : int(std::min<int64_t>(nthreads(ctx), nblk));
#pragma omp parallel num_threads(nt)
  {
    const ThreadShare sh = thread_share(nblk);
    planes_thread<T, I, IDX>(PlanesJob{&p, &win, sh.b, sh.e});
  }
}

// ---- column stride 1: rows padded with -inf ---------------------------------
// With stride_w = 1, 16 neighbouring outputs of a row read 16 neighbouring
// input columns at every tap, so a row kernel needs no transpose. The input
// rows a block of output rows reads are copied into a buffer whose rows carry
// -inf on both sides (few planes: each cut into such blocks across the
// threads), and every tap
// of the unclipped window is one unaligned load for 16 outputs. This is
// torch's scan: a -inf from the padding never takes (neither > max nor NaN),
// so the real taps meet the same updates in the same order, and the index
// starts at the clipped window's first in-input position as in max_scalar.
// Window rows outside the input are the same for all lanes: skipped.
constexpr int kRowLanes = 16;

struct PaddedRows {
  int64_t pitch;               // buffer row length; input column c at c + pad_w
  std::vector<int64_t> first;  // per output column, whole vectors: clipped first column
};

PaddedRows padded_rows_of(const PoolParams& p) {
  PaddedRows r;
  const int64_t nvec = (p.Q + kRowLanes - 1) / kRowLanes;
  r.pitch = std::max(nvec * kRowLanes + (p.kernel_w - 1) * p.dil_w, p.pad_w + p.W);
  r.first.resize(size_t(nvec * kRowLanes));
  for (int64_t ow = 0; ow < int64_t(r.first.size()); ++ow) r.first[size_t(ow)] = clip_window(p, 0, ow).w0;
  return r;
}

template <typename T, typename I> MaxRowsFn<T, I> max_rows_fn();
template <> MaxRowsFn<float, int32_t> max_rows_fn() { return kernels().smax_rows; }
template <> MaxRowsFn<double, int64_t> max_rows_fn() { return kernels().dmax_rows; }

template <typename T, typename I, bool IDX>
void padded_rows_impl(const PoolParams& p, const ExecContext& ctx) {
  const int64_t NC = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
  if (NC <= 0 || PQ <= 0) return;
  const PaddedRows rows = padded_rows_of(p);
  const std::vector<I> first(rows.first.begin(), rows.first.end());
  const MaxRowsFn<T, I> kernel = max_rows_fn<T, I>();
  const int64_t work = NC * (HW + PQ * p.kernel_h * p.kernel_w);
  const int nt = work < kSerialWork ? 1 : nthreads(ctx);
  // few planes: each split into row chunks, so that every thread has work
  const int64_t chunks = std::min<int64_t>(p.P, NC >= 4 * nt ? 1 : (4 * nt + NC - 1) / NC);
  // input rows read by a chunk's output rows
  const int64_t buf_rows =
      std::min(p.H, ((p.P + chunks - 1) / chunks - 1) * p.stride_h + (p.kernel_h - 1) * p.dil_h + 1);
#pragma omp parallel num_threads(nt)
  {
    const ThreadShare sh = thread_share(NC * chunks);
    std::vector<T> buf(size_t(buf_rows * rows.pitch), neg_inf<T>());
    MaxRowsArgs<T, I> a{p.H, p.W, p.P, p.Q, rows.pitch, p.kernel_h, p.kernel_w, p.stride_h, p.pad_h, p.pad_w,
                        p.dil_h, p.dil_w, 0, 0, first.data(), nullptr, buf.data(), nullptr, nullptr};
    for (int64_t item = sh.b; item < sh.e; ++item) {
      const int64_t nc = item / chunks, c = item % chunks;
      a.p0 = p.P * c / chunks;
      a.p1 = p.P * (c + 1) / chunks;
      a.x = static_cast<const T*>(p.x) + nc * HW;
      a.y = static_cast<T*>(p.y) + nc * PQ;
      a.indices = IDX ? p.indices + nc * PQ : nullptr;
      kernel(a);
    }
  }
}

// Taken for column stride 1 wherever the planes path is not, and over it when
// the rows fill most of their vectors (measured here, 2 threads, 3x3 pools:
// rows of 14 and 28 1.45 and 1.35x faster than planes, 12 even, 9 and 17
// 0.8 and 0.92x; 56 to 224 columns 1.2-1.6x faster than planes or the row kernels).
bool padded_rows_chosen(const PoolParams& p, size_t elem) {
  if (p.stride_w != 1) return false;
  // float32's index lanes are int32: every lane's index, also past Q, fits
  if (elem == 4 && (p.H + 2) * (p.W + p.Q + kRowLanes + (p.kernel_w - 1) * p.dil_w) >= (int64_t(1) << 31))
    return false;
  if (!planes_chosen(p, elem)) return true;
  const int64_t lanes = (p.Q + kRowLanes - 1) / kRowLanes * kRowLanes;
  return p.Q >= 32 || (p.Q >= 12 && 4 * p.Q >= 3 * lanes);
}

// ---- small planes, windows inside the input: outputs as lanes ----------------
// Where every window lies inside the input (no padding reached, no partial
// ceil_mode window), 16 consecutive outputs of the flat NCHW output - several
// small planes side by side - are scanned at once: each tap is one gather
// through a table of offsets that repeats every lcm(16, PQ) outputs, and the
// results are stored in place, with no transposes (measured here, 2 threads,
// against the planes path: AlexNet pool5, 5x5 -> 2x2, 1.75x faster; 3x3 / 6x6
// to 7x7 / 14x14 maps 1.15-1.3x; LeNet's 10x10 and 8x8 maps even). On
// AVX-512 float32, where each vector's taps lie within kGatherWindow inputs,
// the vector loads that span once and permutes each tap out of it (measured
// here against the gathers, interleaved: 2 threads, LeNet's 10x10 2x2 pool
// 1.04-1.09x, AlexNet pool5 1.10-1.16x, VGG pool5 1.14x; 1 thread 1.16x and
// 1.28x).
constexpr int64_t kGatherMaxPeriod = 1024;  // outputs per table period

template <typename T, typename I> MaxGatherFn<T, I> max_gather_fn();
template <> MaxGatherFn<float, int32_t> max_gather_fn() { return kernels().smax_gather; }
template <> MaxGatherFn<double, int64_t> max_gather_fn() { return kernels().dmax_gather; }

int64_t gather_period(const PoolParams& p) { return std::lcm<int64_t>(16, p.P * p.Q); }

bool gather_chosen(const PoolParams& p, size_t elem, const Windows& win) {
  if (!planes_chosen(p, elem) || gather_period(p) > kGatherMaxPeriod) return false;
  const int64_t taps = p.kernel_h * p.kernel_w;
  for (size_t o = 0; o + 1 < win.begin.size(); ++o)
    if (win.begin[o + 1] - win.begin[o] != taps) return false;
  return true;
}

// The tables of one plane geometry: offsets and indices of every tap of the
// outputs of a period, and on AVX-512 float32 the window form (offsets
// relative to each vector's span, and the pair masks). N and C do not enter.
template <typename T, typename I>
struct GatherPlan {
  int64_t per = 0, pvecs = 0, taps = 0;
  std::vector<int32_t> off;
  std::vector<I> idx;
  std::vector<int32_t> lo, span;  // window form only (pair_mask not empty)
  std::vector<uint16_t> pair_mask;
};

template <typename T, typename I>
std::shared_ptr<const GatherPlan<T, I>> build_gather_plan(const PoolParams& p, const Windows& win) {
  auto plan = std::make_shared<GatherPlan<T, I>>();
  const int64_t HW = p.H * p.W, PQ = p.P * p.Q, taps = p.kernel_h * p.kernel_w;
  const int64_t per = gather_period(p), pvecs = per / 16;
  plan->per = per;
  plan->pvecs = pvecs;
  plan->taps = taps;
  std::vector<int32_t>& off = plan->off;
  std::vector<I>& idx = plan->idx;
  off.resize(size_t(per * taps));
  idx.resize(size_t(per * taps));
  for (int64_t f = 0; f < per; ++f) {
    const int64_t plane = f / PQ, o = f % PQ, j = f / 16, lane = f % 16;
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t k = win.tap[size_t(win.begin[size_t(o)] + t)];
      off[size_t((j * taps + t) * 16 + lane)] = int32_t(plane * HW + k);
      idx[size_t((j * taps + t) * 16 + lane)] = I(k);
    }
  }
  // AVX-512 float32: where every vector's taps lie within kGatherWindow
  // inputs, the vector loads them and permutes (offsets made relative)
  if constexpr (std::is_same_v<T, float>) {
    if (kernels().smax_gather_window != nullptr) {
      std::vector<int32_t> lo(static_cast<size_t>(pvecs)), span(static_cast<size_t>(pvecs));
      bool fits = true;
      for (int64_t j = 0; j < pvecs && fits; ++j) {
        const auto [mn, mx] = std::minmax_element(off.begin() + j * taps * 16, off.begin() + (j + 1) * taps * 16);
        lo[size_t(j)] = *mn;
        span[size_t(j)] = *mx - *mn + 1;
        fits = span[size_t(j)] <= kGatherWindow;
      }
      if (fits) {
        plan->pair_mask.assign(size_t(pvecs * taps * 4), 0);
        for (int64_t j = 0; j < pvecs; ++j)
          for (int64_t t = 0; t < taps; ++t)
            for (int64_t l = 0; l < 16; ++l) {
              int32_t& o = off[size_t((j * taps + t) * 16 + l)];
              o -= lo[size_t(j)];
              plan->pair_mask[size_t((j * taps + t) * 4 + o / 32)] |= uint16_t(1u << l);
            }
        plan->lo = std::move(lo);
        plan->span = std::move(span);
      }
    }
  }
  return plan;
}

// The plans of the last few plane geometries that took this path: a training
// loop pools the same shapes every step, and building the tables cost about
// 8 us a call (measured here: LeNet's pool2, 64x16x10x10, about 40 us a call
// in all with two threads). Shared, read-only once built; a mutex guards the
// slots (calls may come from several Python threads).
struct PlaneGeometry {
  int64_t v[13];
  bool operator==(const PlaneGeometry& o) const { return std::equal(std::begin(v), std::end(v), std::begin(o.v)); }
};

PlaneGeometry plane_geometry(const PoolParams& p) {
  return {{p.H, p.W, p.P, p.Q, p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w,
           int64_t(p.ceil_mode)}};
}

template <typename T, typename I>
class GatherPlanCache {
 public:
  std::shared_ptr<const GatherPlan<T, I>> find(const PlaneGeometry& key) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Slot& s : slots_)
      if (s.plan && s.key == key) return s.plan;
    return nullptr;
  }
  void insert(const PlaneGeometry& key, std::shared_ptr<const GatherPlan<T, I>> plan) {
    std::lock_guard<std::mutex> lock(mu_);
    slots_[next_] = {key, std::move(plan)};
    next_ = (next_ + 1) % slots_.size();
  }

 private:
  struct Slot {
    PlaneGeometry key;
    std::shared_ptr<const GatherPlan<T, I>> plan;
  };
  std::mutex mu_;
  std::array<Slot, 8> slots_{};
  size_t next_ = 0;
};

template <typename T, typename I>
GatherPlanCache<T, I>& gather_plans() {
  static GatherPlanCache<T, I> cache;
  return cache;
}

template <typename T, typename I, bool IDX>
void gather_impl(const PoolParams& p, const ExecContext& ctx, const GatherPlan<T, I>& plan) {
  const int64_t NC = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
  const int64_t total = NC * PQ;
  if (total <= 0) return;
  const int64_t per = plan.per, taps = plan.taps;
  const bool window = !plan.pair_mask.empty();
  MaxGatherFn<T, I> kernel = max_gather_fn<T, I>();
  if constexpr (std::is_same_v<T, float>)
    if (window) kernel = kernels().smax_gather_window;
  const int64_t nper = (total + per - 1) / per;
  const int64_t work = total * taps;
  const int nt = work < kSerialWork ? 1 : int(std::min<int64_t>(nthreads(ctx), nper));
#pragma omp parallel num_threads(nt)
  {
    const ThreadShare sh = thread_share(nper);
    MaxGatherArgs<T, I> a{taps, plan.pvecs, (per / PQ) * HW, plan.off.data(), plan.idx.data(),
                          static_cast<const T*>(p.x), static_cast<T*>(p.y), IDX ? p.indices : nullptr, sh.b * per,
                          std::min(total, sh.e * per)};
    if (window) {
      a.lo = plan.lo.data();
      a.span = plan.span.data();
      a.pair_mask = plan.pair_mask.data();
    }
    if (a.f0 < a.f1) kernel(a);
  }
}

// ---- float32 on AVX-512: output columns as lanes, taps as loads -------------
// (cpu_features.h MaxTapsArgs) Column strides 1 and 2, any window up to
// kMaxTapsKW columns, padding, dilation and ceil_mode: clipping is masked
// loads of -inf, so there is no border code, no staging copy, no transpose
// and no gather. Taken for output rows of kTapsMinQ or more (measured here,
// 2 threads, against the paths below: 3x3 / stride 2 pools of 24x24 to
// 112x112 maps 1.3-1.8x faster - AlexNet, ZFNet and ResNet's stem pools -
// 23x23 1.09x; 2x2 / stride 2 on 24x24 to 32x32 maps 1.5-1.8x, 64x64 to
// 224x224 0.93-1.07x; 3x3 / stride 1 pad 1 on 16x16 to 56x56 1.0-1.2x; with
// fewer output columns most of each vector idles: 5, 6 and 7 columns
// 0.67x, 0.8x and 0.79x of the gathered outputs).
constexpr int64_t kTapsMinQ = 10;

bool taps_chosen(const PoolParams& p, size_t elem) {
  if (elem != 4 || kernels().smax_taps == nullptr || p.Q < kTapsMinQ) return false;
  if ((p.stride_w != 1 && p.stride_w != 2) || p.kernel_w > kMaxTapsKW) return false;
  return p.H * p.W + 2 * p.W + 64 < (int64_t(1) << 31);  // int32 index lanes
}

void taps_impl(const PoolParams& p, const ExecContext& ctx) {
  const int64_t rows = p.N * p.C * p.P;
  if (rows <= 0 || p.Q <= 0) return;
  std::vector<int32_t> first(size_t((p.Q + 15) / 16 * 16));
  for (int64_t ow = 0; ow < int64_t(first.size()); ++ow) first[size_t(ow)] = int32_t(clip_window(p, 0, ow).w0);
  const int64_t work = rows * p.Q * p.kernel_h * p.kernel_w;
  const int nt = work < kSerialWork ? 1 : nthreads(ctx);
  const MaxTapsFn kernel = kernels().smax_taps;
#pragma omp parallel num_threads(nt)
  {
    const ThreadShare sh = thread_share(rows);
    const MaxTapsArgs a{p.H, p.W, p.P, p.Q, p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w,
                        p.dil_h, p.dil_w, first.data(), static_cast<const float*>(p.x), static_cast<float*>(p.y),
                        p.indices, sh.b, sh.e};
    if (a.r0 < a.r1) kernel(a);
  }
}

template <typename T>
void fwd_dispatch(const PoolParams& p, const ExecContext& ctx) {
  if (taps_chosen(p, sizeof(T))) {
    taps_impl(p, ctx);
    return;
  }
  const bool small = p.H * p.W < (int64_t(1) << 31);
  if (padded_rows_chosen(p, sizeof(T))) {
    using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
    if (p.indices == nullptr) padded_rows_impl<T, I, false>(p, ctx);
    else padded_rows_impl<T, I, true>(p, ctx);
    return;
  }
  if (planes_chosen(p, sizeof(T))) {
    using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
    const PlaneGeometry key = plane_geometry(p);
    std::shared_ptr<const GatherPlan<T, I>> plan = gather_plans<T, I>().find(key);
    const Windows win = plan ? Windows{} : windows_of(p);
    if (!plan && gather_chosen(p, sizeof(T), win)) {
      plan = build_gather_plan<T, I>(p, win);
      gather_plans<T, I>().insert(key, plan);
    }
    if (plan) {
      if (p.indices == nullptr) gather_impl<T, I, false>(p, ctx, *plan);
      else gather_impl<T, I, true>(p, ctx, *plan);
      return;
    }
    if (p.indices == nullptr) planes_impl<T, I, false>(p, ctx, win);
    else planes_impl<T, I, true>(p, ctx, win);
    return;
  }
  if (p.indices == nullptr) {
    fwd_impl<T, int64_t, false>(p, ctx);
  } else if (sizeof(T) == 8) {
    fwd_impl<T, double, true>(p, ctx);
  } else if (small) {
    fwd_impl<T, int32_t, true>(p, ctx);
  } else {
    fwd_impl<T, int64_t, true>(p, ctx);
  }
}

template <typename T>
void bwd_impl(const PoolParams& p, const ExecContext& ctx) {
  const int64_t NC = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
  if (NC <= 0 || HW <= 0) return;
  const T* gy = static_cast<const T*>(p.gy);
  const int64_t* ind = p.indices;
  T* gx = static_cast<T*>(p.gx);
  const bool stage = NC * HW * int64_t(sizeof(T)) >= kStreamBytes &&
                     HW * int64_t(sizeof(T)) <= (int64_t(1) << 20);
  const int64_t work = NC * (HW + PQ);
  const int nt = work < kSerialWork ? 1 : std::min<int64_t>(nthreads(ctx), NC);
#pragma omp parallel num_threads(nt)
  {
    std::vector<T> buf(stage ? size_t(HW) : 0);
#pragma omp for schedule(static)
    for (int64_t nc = 0; nc < NC; ++nc) {
      T* g = stage ? buf.data() : gx + nc * HW;
      std::memset(static_cast<void*>(g), 0, size_t(HW) * sizeof(T));
      const T* gyp = gy + nc * PQ;
      const int64_t* ip = ind + nc * PQ;
      for (int64_t o = 0; o < PQ; ++o) {
        const int64_t k = ip[o];
        if (static_cast<uint64_t>(k) < static_cast<uint64_t>(HW)) g[k] += gyp[o];
      }
      if (stage) stream_copy(gx + nc * HW, g, size_t(HW) * sizeof(T));
    }
    if (stage) stream_fence();
  }
}

}  // namespace

void max_pool2d_forward(const PoolParams& p, const ExecContext& ctx) {
  if (p.dtype == DType::f64) fwd_dispatch<double>(p, ctx);
  else fwd_dispatch<float>(p, ctx);
}

void max_pool2d_backward(const PoolParams& p, const ExecContext& ctx) {
  if (p.dtype == DType::f64) bwd_impl<double>(p, ctx);
  else bwd_impl<float>(p, ctx);
}

}  // namespace cpu
}  // namespace fastconv
