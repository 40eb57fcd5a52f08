// conv2d on the CPU, float32 and float64 (p.dtype), with groups, stride, zero
// padding and dilation; conv1d arrives here as H = R = 1.
//
//   x  (N, C, H, W)   w  (K, C/G, R, S)   b  (K)   y  (N, K, P, Q)   dense NCHW
//   G = groups, Cg = C/G, Kg = K/G; group g maps x channels [g Cg, (g+1) Cg)
//   to y channels [g Kg, (g+1) Kg). CRS = Cg R S is the reduction length.
//
// Variants (p.variant):
//   reference  direct nested loops, double accumulators, OpenMP over outputs.
//   fast       packed GEMM per (image, group, block of output pixels):
//              y[k][pix] = sum_crs W[k][crs] * col[crs][pix]
//              W packed once per call into MR-row panels; the register-tiled
//              MR x NR micro-kernel (csrc/cpu/isa/gemm.cpp, chosen at run time
//              by csrc/common/cpu_features.cpp) does the FMAs, cache-blocked
//              over CRS. B (col) comes from one of:
//              - "direct": a per-thread zero-padded copy of the input rows of
//                a block of output rows (split into stride phase planes when
//                the stride is > 1); each B row is a contiguous run of it
//                (no im2col; each x element copied at most once);
//              - "same" (stride 1, P = H, Q = W, maps up to 56x56, AVX-512):
//                instead of "direct", x read in place, each tap's lanes that
//                fall in the padding masked off (csrc/cpu/isa/gemm.cpp
//                tile_masked): no copy, no garbage columns;
//              - otherwise: a per-thread im2col panel for a block of output
//                pixels and of CRS, in NR-column strips (never the whole batch);
//              - small maps ("flat"): the same panels over the pixels of all
//                images of a group as one axis, so a 7x7 map fills its strips
//                (many output channels, where the direct path would compute
//                mostly garbage columns and partial strips);
//              - plain 1x1 (stride 1, no padding): x itself, read in place
//                (B row c = channel c of the image), nothing copied (avx2,
//                96 or more output channels: a strip's rows packed per
//                reduction block).
//              Or, wherever pixel strips would waste columns and Kg is a
//              sum of lane tile widths ("lanes", the usual path for 3x3 and
//              5x5 layers; panels of mixed widths): output channels as lanes,
//              every pixel broadcast from its own window of x, read in place
//              or from a copy blocked by 8 / 16 channels (lanes_x_block)
//              (conv_gemm.h LaneTileFn), no im2col, no garbage columns;
//              border pixels are tiled by class and skip their padding taps.
//   backward, fast:
//     gx  stride 1: a forward pass over gy with the weights transposed per
//         group and rotated 180 degrees, padding dil (R-1) - pad (may be < 0).
//         (its padding taps skipped when the pass runs on lanes, which lay
//         out the rotated weights straight from w).
//         stride > 1, few input channels, or a rotated pass that would be
//         mostly padding taps (unpadded layers on small maps) unless the
//         layer has at most 16 output channels or the pass runs on lanes
//         with a reduction of at most 4096: gcol = W^T gy
//         per block of pixels (whole images spanned on small maps), scattered
//         (col2im) into gx; each thread owns gx[block of images][channel block].
//     gw  gw[k][crs] = sum_n sum_pix gy[n][k][pix] col[n][crs][pix], pixels
//         as the reduction; each task owns a block of (k, crs) and sums over n
//         and pixels in one fixed order, so gw is bitwise identical for any
//         thread count. On output maps up to 64x64 (128x128 with 16 or
//         more input channels), where Kg is a sum of
//         lane tile widths: "lanes", the forward's lane tiles with
//         the reduction indices (c, r, s) as its rows, gy transposed per image
//         so that output channels are the lanes, the sum over pixels in
//         registers. Otherwise three paths, chosen by shape: "rows" (padded,
//         strided or dilated layers with few output channels whose output
//         rows nearly fill whole vectors): no im2col, each x row copied once
//         into padded stride phase planes and read in place per tap and
//         output row; "dot" (PQ a multiple of the vector width, or Kg <= ~144
//         output channels): pixels are the vector lanes, gy / x rows read in
//         place or copied pixel-contiguous, a dot-product micro-kernel with a
//         lane-reducing epilogue, no transposes; "gemm" otherwise: gy^T and
//         col^T packed by transposing copies, then the forward micro-kernel.
//         gb (sum of gy over n, P, Q) is fused into the tasks of the first
//         crs block.
//
// Reads top to bottom: reference, fast forward, fast backward, entry points.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <numeric>
#include <omp.h>
#include <vector>

#include "common/check.h"
#include "common/cpu_features.h"
#include "common/kernels.h"
#include "cpu/isa/conv_gemm.h"
#include "cpu/target_attrs.h"

namespace fastconv::cpu {
namespace {

struct Geo {
  int64_t N, C, H, W, K, R, S, P, Q;
  int64_t sh, sw, ph, pw, dh, dw, G;
  int64_t Cg, Kg, RS, CRS, HW, PQ;
};

Geo geo_of(const ConvParams& p) {
  Geo g{p.N, p.C, p.H, p.W, p.K, p.R, p.S, p.P, p.Q, p.stride_h, p.stride_w, p.pad_h, p.pad_w,
        p.dil_h, p.dil_w, p.groups, 0, 0, 0, 0, 0, 0};
  g.Cg = g.C / g.G;
  g.Kg = g.K / g.G;
  g.RS = g.R * g.S;
  g.CRS = g.Cg * g.RS;
  g.HW = g.H * g.W;
  g.PQ = g.P * g.Q;
  return g;
}

int threads_of(const ExecContext& ctx) { return ctx.num_threads < 1 ? 1 : ctx.num_threads; }

// 1x1, stride 1, no padding: the rows of the im2col matrix are the rows of x.
bool plain_1x1(const Geo& g) { return g.RS == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0; }

// ============================================================================
// Reference: direct loops.
// ============================================================================

template <typename T>
void ref_forward(const Geo& g, const T* x, const T* w, const T* b, T* y, int nt) {
  const int64_t total = g.N * g.K;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nk = 0; nk < total; ++nk) {
    const int64_t n = nk / g.K, k = nk % g.K, grp = k / g.Kg;
    for (int64_t oh = 0; oh < g.P; ++oh)
      for (int64_t ow = 0; ow < g.Q; ++ow) {
        double acc = b ? double(b[k]) : 0.0;
        for (int64_t c = 0; c < g.Cg; ++c)
          for (int64_t r = 0; r < g.R; ++r) {
            const int64_t ih = oh * g.sh - g.ph + r * g.dh;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t s = 0; s < g.S; ++s) {
              const int64_t iw = ow * g.sw - g.pw + s * g.dw;
              if (iw < 0 || iw >= g.W) continue;
              acc += double(x[((n * g.C + grp * g.Cg + c) * g.H + ih) * g.W + iw]) *
                     double(w[((k * g.Cg + c) * g.R + r) * g.S + s]);
            }
          }
        y[(nk * g.P + oh) * g.Q + ow] = T(acc);
      }
  }
}

template <typename T>
void ref_backward(const Geo& g, const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb, int nt) {
  if (gx) {
    const int64_t total = g.N * g.C;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t nc = 0; nc < total; ++nc) {
      const int64_t n = nc / g.C, ci = nc % g.C, grp = ci / g.Cg, c = ci % g.Cg;
      for (int64_t ih = 0; ih < g.H; ++ih)
        for (int64_t iw = 0; iw < g.W; ++iw) {
          double acc = 0.0;
          for (int64_t k = grp * g.Kg; k < (grp + 1) * g.Kg; ++k)
            for (int64_t r = 0; r < g.R; ++r) {
              const int64_t th = ih + g.ph - r * g.dh;  // = oh * sh
              if (th < 0 || th % g.sh) continue;
              const int64_t oh = th / g.sh;
              if (oh >= g.P) continue;
              for (int64_t s = 0; s < g.S; ++s) {
                const int64_t tw = iw + g.pw - s * g.dw;
                if (tw < 0 || tw % g.sw) continue;
                const int64_t ow = tw / g.sw;
                if (ow >= g.Q) continue;
                acc += double(gy[((n * g.K + k) * g.P + oh) * g.Q + ow]) *
                       double(w[((k * g.Cg + c) * g.R + r) * g.S + s]);
              }
            }
          gx[(nc * g.H + ih) * g.W + iw] = T(acc);
        }
    }
  }
  if (gw || gb) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < g.K; ++k) {
      const int64_t grp = k / g.Kg;
      if (gb) {
        double acc = 0.0;
        for (int64_t n = 0; n < g.N; ++n)
          for (int64_t i = 0; i < g.PQ; ++i) acc += double(gy[(n * g.K + k) * g.PQ + i]);
        gb[k] = T(acc);
      }
      if (!gw) continue;
      for (int64_t c = 0; c < g.Cg; ++c)
        for (int64_t r = 0; r < g.R; ++r)
          for (int64_t s = 0; s < g.S; ++s) {
            double acc = 0.0;
            for (int64_t n = 0; n < g.N; ++n)
              for (int64_t oh = 0; oh < g.P; ++oh) {
                const int64_t ih = oh * g.sh - g.ph + r * g.dh;
                if (ih < 0 || ih >= g.H) continue;
                for (int64_t ow = 0; ow < g.Q; ++ow) {
                  const int64_t iw = ow * g.sw - g.pw + s * g.dw;
                  if (iw < 0 || iw >= g.W) continue;
                  acc += double(gy[((n * g.K + k) * g.P + oh) * g.Q + ow]) *
                         double(x[((n * g.C + grp * g.Cg + c) * g.H + ih) * g.W + iw]);
                }
              }
            gw[((k * g.Cg + c) * g.R + r) * g.S + s] = T(acc);
          }
    }
  }
}

// ============================================================================
// Fast: packed GEMM.
// ============================================================================

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Side loops (weight packing, small reductions) below this many elements run
// on the calling thread: one parallel region fewer per call matters on a
// busy machine and for small layers.
constexpr int64_t kSerialBelow = int64_t(1) << 18;
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// 64-byte aligned scratch, sized once before a parallel region (so that an
// allocation failure throws in the calling thread), sliced per thread.
template <typename T>
struct Scratch {
  T* p = nullptr;
  int64_t per_thread = 0;
  Scratch(int64_t elems_per_thread, int nt) {
    per_thread = round_up(std::max<int64_t>(elems_per_thread, 1), 64 / int64_t(sizeof(T)));
    const size_t bytes = size_t(per_thread) * sizeof(T) * size_t(nt);
    p = static_cast<T*>(std::aligned_alloc(64, round_up(int64_t(bytes), 64)));
    if (!p) throw std::bad_alloc();
  }
  ~Scratch() { std::free(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* slice(int t) const { return p + int64_t(t) * per_thread; }
};

// Reduction (CRS) block and output-pixel block of the forward GEMM.
template <typename T> constexpr int64_t kKC = sizeof(T) == 4 ? 256 : 192;
constexpr int64_t kPixelBlockTarget = 256;
// Virtual pixels per block of the direct path (the path choices weigh its
// columns at kPixelBlockTarget): 512 against 256, measured here, 1.05-1.15x
// on the few-channel layers (LeNet conv1, VGG conv1_1, AlexNet conv1, the
// ResNet stem), ZFNet conv1 0.96x, the others within noise.
constexpr int64_t kDirectBlockTarget = 512;
// Layers take the flat path (fast_forward_flat) instead of the
// direct one when they have at least this many output channels per group and
// the direct blocking computes less than this share of useful columns.
constexpr int64_t kFlatMinKg = 128;
constexpr double kFlatBelowEff = 0.9;
// ... and the channel-lane path (fast_forward_lanes) below this share. (The
// two-vector tile at stride 1 had a lower bar, 0.85, until its per-block
// setup and copy-out got cheaper: 32 channels on 16x16 to 32x32 maps are
// now 1.06-1.15x over direct, 96 -> 32 channels on 28x28 1.21x.)
constexpr double kLanesBelowEff = 0.97;
// A plain 1x1 layer takes lanes only with at least this long a reduction;
// shorter ones read x in place (fast_forward_1x1). Measured here on 14x14
// maps: in place 1.05-1.5x over lanes with 64-192 input channels (the data
// gradients of those layers) ...
constexpr int64_t kLanesMin1x1CRS = 256;
// ... and only where the in-place path's vectors would be less than this
// share pixels: 7x7 maps (49 pixels in 64 lanes) 1.34-1.4x on lanes with
// 512 and 2048 channels. On 14x14 maps (196 in 208) lanes once measured
// 1.02-1.07x faster with 480 channels; on the present paths in place is
// 1.07-1.14x faster with 1024 -> 256 and 256 -> 1024 channels, even with 480.
constexpr double kLanes1x1BelowVecEff = 0.9;

// Output pixels in blocks of whole NR strips, about kPixelBlockTarget pixels
// each, rebalanced so that the last block is not tiny.
struct PixelBlocks {
  int64_t npb, nc;  // blocks, pixels per block
};
PixelBlocks pixel_blocks(int64_t npix, int64_t nr) {
  const int64_t nstrips_all = ceil_div(npix, nr);
  int64_t spb = std::min(std::max<int64_t>(1, kPixelBlockTarget / nr), nstrips_all);
  int64_t npb = ceil_div(nstrips_all, spb);
  spb = ceil_div(nstrips_all, npb);
  npb = ceil_div(nstrips_all, spb);
  return {npb, spb * nr};
}

// Task index of the per-image forward paths (direct, 1x1 in place, im2col)
// as (panel group, pixel block, group, image), panel group fastest.
struct ImageBlockTask {
  int64_t kb, pb, grp, n;
};
ImageBlockTask image_block_task(int64_t task, int64_t nkb, int64_t npb, int64_t G) {
  return {task % nkb, (task / nkb) % npb, (task / (nkb * npb)) % G, task / (nkb * npb * G)};
}

// Output-channel panels split into groups (more tasks) when the other task
// dimensions give fewer than 4 tasks per thread.
struct PanelGroups {
  int64_t nkb, pans_per_kb;
};
PanelGroups panel_groups(int64_t npan, int64_t other_tasks, int nt) {
  int64_t nkb = 1;
  if (other_tasks < 4 * nt) nkb = std::min(npan, ceil_div(4 * nt, other_tasks));
  const int64_t pans_per_kb = ceil_div(npan, nkb);
  return {ceil_div(npan, pans_per_kb), pans_per_kb};
}

// d[i] = xr[iw0 + i * sw] for i < len, zero where the column is outside
// [0, W). Inline loops: these runs are short (a piece of one output row).
template <typename T>
__attribute__((optimize("no-tree-loop-distribute-patterns"))) inline void copy_run(
    T* __restrict d, const T* __restrict xr, int64_t iw0, int64_t len, int64_t sw, int64_t W) {
  if (sw == 1) {
    const int64_t lo = std::clamp<int64_t>(-iw0, 0, len);
    const int64_t hi = std::clamp<int64_t>(W - iw0, lo, len);
    for (int64_t i = 0; i < lo; ++i) d[i] = T(0);
    const T* src = xr + iw0;
    for (int64_t i = lo; i < hi; ++i) d[i] = src[i];
    for (int64_t i = hi; i < len; ++i) d[i] = T(0);
  } else {  // columns in range: i in [lo, hi)
    const int64_t lo = std::clamp<int64_t>(iw0 < 0 ? ceil_div(-iw0, sw) : 0, 0, len);
    const int64_t hi = std::clamp<int64_t>(iw0 < W ? ceil_div(W - iw0, sw) : 0, lo, len);
    for (int64_t i = 0; i < lo; ++i) d[i] = T(0);
    const T* src = xr + iw0;
    if (hi - lo >= 16) gemm_tile<T>().strided_copy(d + lo, src + lo * sw, hi - lo, sw);
    else for (int64_t i = lo; i < hi; ++i) d[i] = src[i * sw];
    for (int64_t i = hi; i < len; ++i) d[i] = T(0);
  }
}

// n >= W bytes from s (or zeros, s null) to d in W-byte pieces, the last
// one overlapping; a fixed-size memcpy compiles to vector moves.
template <size_t W>
inline void copy_pieces(unsigned char* d, const unsigned char* s, int64_t n) {
  alignas(64) static const unsigned char zeros[W] = {};
  int64_t i = 0;
  for (; i + int64_t(W) <= n; i += W) std::memcpy(d + i, s ? s + i : zeros, W);
  if (i < n) std::memcpy(d + n - W, s ? s + n - W : zeros, W);
}

// n bytes from src (or zeros, src null) to dst, inline: for the short runs
// of small maps, where a memcpy / memset call (or an inlined rep stos)
// costs more than the bytes.
inline void copy_short(void* dst, const void* src, int64_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  if (n >= 64) copy_pieces<64>(d, s, n);
  else if (n >= 16) copy_pieces<16>(d, s, n);
  else if (n >= 4) copy_pieces<4>(d, s, n);
  else for (int64_t i = 0; i < n; ++i) d[i] = s ? s[i] : 0;
}

// n elements from src to dst (src null: zeros): copy_short for short runs,
// the library call for long ones.
template <typename T>
inline void copy_row(T* dst, const T* src, int64_t n) {
  const int64_t bytes = n * int64_t(sizeof(T));
  if (bytes > 512) src ? std::memcpy(dst, src, size_t(bytes)) : std::memset(dst, 0, size_t(bytes));
  else copy_short(dst, src, bytes);
}

// One im2col row: out[t] = x_c[oh*sh - ph + r*dh][ow*sw - pw + s*dw] for the
// output pixels pix0 + t, t < npix (zero outside the input).
template <typename T>
inline void im2col_row(const Geo& g, const T* xc, int64_t r, int64_t s, int64_t pix0, int64_t npix,
                       T* out) {
  int64_t oh = pix0 / g.Q, ow = pix0 % g.Q, t = 0;
  const int64_t roff = r * g.dh - g.ph, soff = s * g.dw - g.pw;
  while (t < npix) {
    const int64_t len = std::min(g.Q - ow, npix - t);
    const int64_t ih = oh * g.sh + roff;
    if (ih < 0 || ih >= g.H) std::memset(out + t, 0, size_t(len) * sizeof(T));
    else copy_run(out + t, xc + ih * g.W, ow * g.sw + soff, len, g.sw, g.W);
    t += len;
    ow = 0;
    ++oh;
  }
}

// im2col_row for the weight gradient's dot path: the in-range part of each
// stride-1 run by memcpy (long panels of short runs), else as im2col_row.
template <typename T>
inline void im2col_row_wg(const Geo& g, const T* xc, int64_t r, int64_t s, int64_t pix0, int64_t npix,
                          T* out) {
  if (g.sw != 1) { im2col_row(g, xc, r, s, pix0, npix, out); return; }
  int64_t oh = pix0 / g.Q, ow = pix0 % g.Q, t = 0;
  const int64_t roff = r * g.dh - g.ph, soff = s * g.dw - g.pw;
  while (t < npix) {
    const int64_t len = std::min(g.Q - ow, npix - t);
    const int64_t ih = oh * g.sh + roff;
    if (ih < 0 || ih >= g.H) {
      std::memset(out + t, 0, size_t(len) * sizeof(T));
    } else {
      const int64_t iw0 = ow + soff;
      const int64_t lo = std::clamp<int64_t>(-iw0, 0, len);
      const int64_t hi = std::clamp<int64_t>(g.W - iw0, lo, len);
      if (lo > 0) std::memset(out + t, 0, size_t(lo) * sizeof(T));
      std::memcpy(out + t + lo, xc + ih * g.W + iw0 + lo, size_t(hi - lo) * sizeof(T));
      if (hi < len) std::memset(out + t + hi, 0, size_t(len - hi) * sizeof(T));
    }
    t += len;
    ow = 0;
    ++oh;
  }
}

// im2col panel for reduction rows [k0, k0 + kc) and pixels [pix0, pix0 + npix)
// of one image and group (xg = its first channel), written straight into
// NR-column strips: dst[strip][kk][j], zero-padded to whole strips.
// col0: the strip column the first pixel lands in (the flat path packs a
// block that spans images as several calls); zero_tail: zero the columns
// after the last pixel up to the end of its strip.
template <typename T>
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void pack_im2col(
    const Geo& g, const T* xg, int64_t k0, int64_t kc, int64_t pix0, int64_t npix, int nr, T* dst,
    int64_t col0 = 0, bool zero_tail = true) {
  const int64_t strip_stride = kc * nr;
  const int64_t col_end = col0 + npix;
  const int64_t tail = zero_tail ? ceil_div(col_end, nr) * nr - col_end : 0;
  T* tail_dst = dst + (col_end / nr) * strip_stride + col_end % nr;
  int64_t c = k0 / g.RS, r = (k0 / g.S) % g.R, s = k0 % g.S;  // advanced incrementally
  const int64_t oh0 = pix0 / g.Q, ow0 = pix0 % g.Q;
  // The input rows of this pixel block, per channel; channel c + ahead is
  // prefetched when channel c starts (first touches would otherwise stall on
  // memory latency: the access pattern is too scattered for the hardware).
  const int64_t ih_lo = std::max<int64_t>(0, oh0 * g.sh - g.ph);
  const int64_t ih_hi = std::min<int64_t>(g.H, ((pix0 + npix - 1) / g.Q) * g.sh - g.ph + (g.R - 1) * g.dh + 1);
  const int64_t pf_bytes = ih_hi > ih_lo ? (ih_hi - ih_lo) * g.W * int64_t(sizeof(T)) : 0;
  const int64_t ahead = std::max<int64_t>(2, ceil_div(2048, g.RS * npix));
  const int64_t c_end = ceil_div(k0 + kc, g.RS);
  for (int64_t kk = 0; kk < kc; ++kk) {
    const T* xc = xg + c * g.HW;
    if (r == 0 && s == 0 && c + ahead < c_end) {
      const char* base = reinterpret_cast<const char*>(xg + (c + ahead) * g.HW + ih_lo * g.W);
      for (int64_t off = 0; off < pf_bytes; off += 64) __builtin_prefetch(base + off, 0, 3);
    }
    const int64_t roff = r * g.dh - g.ph, soff = s * g.dw - g.pw;
    T* drow = dst + kk * nr;
    int64_t oh = oh0, ow = ow0, t = 0;
    int64_t st = col0 / nr, j = col0 % nr;  // strip and column of pixel t
    while (t < npix) {      // one output row at a time, cut at strip boundaries
      const int64_t seg = std::min(g.Q - ow, npix - t);
      const int64_t ih = oh * g.sh + roff;
      const bool inside = ih >= 0 && ih < g.H;
      const T* xr = xc + (inside ? ih : 0) * g.W;
      int64_t done = 0;
      while (done < seg) {
        const int64_t len = std::min<int64_t>(seg - done, nr - j);
        T* d = drow + st * strip_stride + j;
        if (inside) copy_run(d, xr, (ow + done) * g.sw + soff, len, g.sw, g.W);
        else for (int64_t i = 0; i < len; ++i) d[i] = T(0);
        done += len;
        j += len;
        if (j == nr) { j = 0; ++st; }
      }
      t += seg;
      ow = 0;
      ++oh;
    }
    for (int64_t i = 0; i < tail; ++i) tail_dst[kk * nr + i] = T(0);
    if (++s == g.S) { s = 0; if (++r == g.R) { r = 0; ++c; } }
  }
}

// Weights (G*Kg, CRS) row-major -> per group, per MR-row panel: [crs][MR],
// zero rows past Kg. Panel (grp, pn) starts at ((grp * npan + pn) * CRS) * MR.
template <typename T>
void pack_weights(const T* w, int64_t G, int64_t Kg, int64_t CRS, int mr, T* dst, int nt) {
  const int64_t npan = ceil_div(Kg, mr);
#pragma omp parallel for num_threads(nt) schedule(static) if (G * Kg * CRS > kSerialBelow)
  for (int64_t gp = 0; gp < G * npan; ++gp) {
    const int64_t grp = gp / npan, pn = gp % npan;
    T* d = dst + gp * CRS * mr;
    for (int i = 0; i < mr; ++i) {
      const int64_t k = pn * mr + i;
      if (k < Kg) {
        const T* src = w + (grp * Kg + k) * CRS;
        for (int64_t crs = 0; crs < CRS; ++crs) d[crs * mr + i] = src[crs];
      } else {
        for (int64_t crs = 0; crs < CRS; ++crs) d[crs * mr + i] = T(0);
      }
    }
  }
}

template <typename T>
void fill_bias(const Geo& g, const T* b, T* y, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t nk = 0; nk < g.N * g.K; ++nk)
    std::fill(y + nk * g.PQ, y + (nk + 1) * g.PQ, b ? b[nk % g.K] : T(0));
}

// No im2col ("direct"): per task (image, group, block of output rows, block
// of k panels) the thread copies the input rows of the block, zero-padded,
// into xpad once; then every B row of the GEMM is a contiguous run of xpad.
// Stride 1: xpad[c][row][u] (u < Wv, the row pitch: direct_pitch); for the
// "virtual" output pixel v = oh_local * Wv + ow, (c, r, s) reads
// xpad[c][oh_local + r dil_h][ow + s dil_w] = xpad + boff[crs] + v. With
// Wv = Q + dil_w (S-1) a row holds both its paddings; with the shorter
// Wv = max(Q, W + pw) it holds its left padding and the data only, and the
// right padding it reaches into (at most pw - 1 past Wv) is the next row's
// left padding: pw garbage columns per row instead of 2 pw (GoogLeNet 4a
// 5x5 on 14x14: 14 of 16 columns instead of 14 of 18).
// Stride > 1: the padded input is split into sh x sw phase planes,
// phase (a, b) holding padded rows i sh + a and columns j sw + b, so tap
// (r, s) of output (oh, ow) reads phase ((r dh) % sh, (s dw) % sw) at
// (oh + (r dh) / sh, ow + (s dw) / sw): again a contiguous run per tap, with
// Wv = Q + (dw (S-1)) / sw. Phases no tap reads are not built.
// Columns ow >= Q are computed and dropped: the tiles of the last reduction
// block store each vector's lanes of real columns packed into y (fn_scatter:
// AVX-512 compresses them in registers), those of earlier blocks go to a
// per-thread C block. Copying C to y instead took 39% of VGG conv1_1's
// forward (3 input channels: one reduction block) and 10% of AlexNet conv1's.
// Each x element is copied at most once instead of R S times.
// Returns false (and does nothing) when the padded block would be too large
// for a per-thread buffer; the caller then takes the im2col path.
struct DirectBlocking {
  int64_t ob;  // output rows per block
  double eff;  // output pixels / computed columns (the rest: garbage columns, partial strips)
};

int64_t direct_wv(const Geo& g) { return g.Q + (g.dw * (g.S - 1)) / g.sw; }

// Output rows per block of the direct path with row pitch Wv: the count
// (virtual pixels up to 2x the target) that wastes least on garbage columns
// and partial strips (computed in units of nr columns); of counts that tie,
// the one nearest the target (at vector granularity LeNet conv1's 28 rows
// of 32 tie at every count: one row per block was 1.6x slower).
DirectBlocking direct_blocking(const Geo& g, int nr, int64_t Wv, int64_t target = kPixelBlockTarget) {
  DirectBlocking best{1, -1.0};
  auto off_target = [&](int64_t rows) { return std::abs(rows * Wv - target); };
  for (int64_t cand = 1; cand <= g.P && (cand == 1 || cand * Wv <= 2 * target); ++cand) {
    const int64_t nb = ceil_div(g.P, cand), last = g.P - (nb - 1) * cand;
    const double computed = double((nb - 1) * round_up(cand * Wv, nr) + round_up(last * Wv, nr));
    const double eff = double(g.P * g.Q) / computed;
    if (eff > best.eff * 1.0001 || (eff > best.eff * 0.9999 && off_target(cand) < off_target(best.ob)))
      best = {cand, eff};
  }
  return best;
}

// Row pitch of the direct path's padded block: max(Q, W + pw) at stride 1
// where that computes over 5% fewer columns than direct_wv (GoogLeNet 3a /
// 4a 5x5 data gradients 1.14x / 1.08x faster), else direct_wv (at the same
// column count ResNet's 56x56 3x3 forward measured 0.85x on the shorter
// pitch, in two runs). Columns are counted in vectors (vw), as the path
// computes them: a 16x16 map at pitch 17 takes 17 vectors against 18
// (ResNet-20's 32-channel 3x3 forward 1.06-1.08x, its data gradient
// 1.03-1.08x; counted in whole strips the two tied). The path choices
// (lanes, flat) weigh direct_wv's columns: their thresholds were measured
// against it.
int64_t direct_pitch(const Geo& g, int vw) {
  const int64_t wv = direct_wv(g);
  if (g.sw != 1) return wv;
  const int64_t shorter = std::max(g.Q, g.W + g.pw);
  return direct_blocking(g, vw, shorter).eff > 1.05 * direct_blocking(g, vw, wv).eff ? shorter : wv;
}

// Where the direct path's tiles land in y (fn_scatter): for each vector of
// L virtual pixels (rows of pitch Wv, nrows of them), the lanes of real
// columns (< Q) and the y offset of the first of them, from the block's
// first row.
struct VectorScatter {
  std::vector<int64_t> off;
  std::vector<uint32_t> mask;
};

VectorScatter vector_scatter(int64_t nrows, int64_t Wv, int64_t Q, int64_t L, int64_t nvec) {
  VectorScatter vs{std::vector<int64_t>(size_t(nvec), 0), std::vector<uint32_t>(size_t(nvec), 0)};
  for (int64_t v = 0, row = 0, col = 0; v < nvec; ++v) {  // (row, col): virtual pixel v L + l
    bool first = true;
    for (int64_t l = 0; l < L; ++l) {
      if (row < nrows && col < Q) {
        vs.mask[size_t(v)] |= uint32_t(1) << l;
        if (first) vs.off[size_t(v)] = row * Q + col;
        first = false;
      }
      if (++col == Wv) { col = 0; ++row; }
    }
  }
  return vs;
}

template <typename T>
bool fast_forward_direct(const Geo& g, const T* x, const T* wpack, const T* b, T* y, int nt,
                         int64_t npan) {
  const GemmTile<T>& tk = gemm_tile<T>();
  const int mr = tk.mr, nr = tk.nr;
  const int64_t Wv = direct_pitch(g, nr / tk.nrv);
  // a block's last strip runs on only the vectors it needs (tile_offs,
  // fn_scatter): its rows are chosen at vector granularity
  const int64_t ob = direct_blocking(g, nr / tk.nrv, Wv, kDirectBlockTarget).ob;
  const int64_t npb = ceil_div(g.P, ob);
  const int64_t row_reach = (g.dh * (g.R - 1)) / g.sh;  // rows of a phase beyond the block's
  const int64_t rows_in = ob + row_reach;
  const int64_t ps = rows_in * Wv;  // phase stride in xpad
  const int64_t nph = g.sh * g.sw;
  std::vector<char> phase_used(size_t(nph), 0);
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s) phase_used[size_t(((r * g.dh) % g.sh) * g.sw + (s * g.dw) % g.sw)] = 1;
  const int64_t cs = nph * ps;  // channel stride in xpad
  const int64_t xpad_elems = g.Cg * cs + (g.dw * (g.S - 1)) / g.sw + g.pw + 2 * nr + 64;
  if (xpad_elems * int64_t(sizeof(T)) > (int64_t(16) << 20)) return false;
  const int64_t nst_max = ceil_div(ob * Wv, nr), ldcb = nst_max * nr;
  const int nrv = tk.nrv;
  const bool to_y = Wv == g.Q;  // no garbage columns (e.g. 1x1): tiles go straight to y, no scatter
  const int64_t last_rows = g.P - (npb - 1) * ob;
  const VectorScatter scatter_full =
      to_y ? VectorScatter{} : vector_scatter(ob, Wv, g.Q, nr / nrv, ceil_div(ob * Wv, nr) * nrv);
  const VectorScatter scatter_last =
      to_y ? VectorScatter{} : vector_scatter(last_rows, Wv, g.Q, nr / nrv, ceil_div(last_rows * Wv, nr) * nrv);

  const auto [nkb, pans_per_kb] = panel_groups(npan, g.N * g.G * npb, nt);

  std::vector<int64_t> boff(size_t(g.CRS));
  for (int64_t c = 0, i = 0; c < g.Cg; ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s)
        boff[size_t(i++)] = c * cs + (((r * g.dh) % g.sh) * g.sw + (s * g.dw) % g.sw) * ps +
                            ((r * g.dh) / g.sh) * Wv + (s * g.dw) / g.sw;

  // Reduction blocks of equal length (a 288-long reduction as 288, not 256 +
  // 32: each block reloads and stores every C tile; ResNet-20's 32-channel
  // 3x3 1.05x, VGG conv1_2 1.05x).
  const int64_t KC = g.CRS <= kKC<T> * 3 / 2 ? g.CRS : round_up(ceil_div(g.CRS, ceil_div(g.CRS, kKC<T>)), 8);
  // Garbage columns (Wv > Q): the tiles of all but the last reduction block
  // go to a per-thread C block, the last one's straight to y without them.
  const int64_t cbuf_elems = Wv != g.Q && KC < g.CRS ? pans_per_kb * mr * ldcb : 0;
  const int64_t xpad_al = round_up(xpad_elems, 16);
  Scratch<T> scratch(xpad_al + cbuf_elems, nt);
  const int64_t ntasks = g.N * g.G * npb * nkb;

#pragma omp parallel num_threads(nt)
  {
    T* xpad = scratch.slice(omp_get_thread_num());
    T* cbuf = xpad + xpad_al;
    std::memset(xpad, 0, size_t(xpad_elems) * sizeof(T));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      const auto [kb, pb, grp, n] = image_block_task(task, nkb, npb, g.G);
      const int64_t oh0 = pb * ob, nrows = std::min(ob, g.P - oh0);
      const int64_t rin = nrows + row_reach;  // rows of each phase plane
      const int64_t pn0 = kb * pans_per_kb, pn1 = std::min(npan, pn0 + pans_per_kb);
      const T* xg = x + (n * g.C + grp * g.Cg) * g.HW;
      const int64_t ih_lo = std::max<int64_t>(0, oh0 * g.sh - g.ph);
      const int64_t ih_hi = std::min(g.H, (oh0 + rin) * g.sh - g.ph);
      const int64_t pf_bytes = ih_hi > ih_lo ? (ih_hi - ih_lo) * g.W * int64_t(sizeof(T)) : 0;
      const int64_t ahead = std::max<int64_t>(2, ceil_div(4096, std::max<int64_t>(pf_bytes, 1)));
      for (int64_t c = 0; c < g.Cg; ++c) {
        if (c + ahead < g.Cg) {  // first touches of x: prefetch a few channels ahead
          const char* base = reinterpret_cast<const char*>(xg + (c + ahead) * g.HW + ih_lo * g.W);
          for (int64_t off = 0; off < pf_bytes; off += 64) __builtin_prefetch(base + off, 0, 3);
        }
        for (int64_t a = 0; a < g.sh; ++a)
          for (int64_t bb = 0; bb < g.sw; ++bb) {
            if (!phase_used[size_t(a * g.sw + bb)]) continue;
            T* dp = xpad + c * cs + (a * g.sw + bb) * ps;
            for (int64_t vr = 0; vr < rin; ++vr) {
              const int64_t ih = (oh0 + vr) * g.sh + a - g.ph;
              T* d = dp + vr * Wv;
              if (ih < 0 || ih >= g.H) std::memset(d, 0, size_t(Wv) * sizeof(T));
              else copy_run(d, xg + c * g.HW + ih * g.W, bb - g.pw, Wv, g.sw, g.W);
            }
          }
      }
      T* yg = y + (n * g.K + grp * g.Kg) * g.PQ;
      const int64_t nst = ceil_div(nrows * Wv, nr);
      const VectorScatter& vs = nrows == ob ? scatter_full : scatter_last;
      for (int64_t k0 = 0; k0 < g.CRS; k0 += KC) {
        const int64_t kc = std::min(KC, g.CRS - k0);
        const bool acc = k0 > 0;
        for (int64_t st = 0; st < nst; ++st)
          for (int64_t pn = pn0; pn < pn1; ++pn) {
            const int64_t m0 = pn * mr;
            const int mv = int(std::min<int64_t>(mr, g.Kg - m0));
            const T* ap = wpack + ((grp * npan + pn) * g.CRS + k0) * mr;
            const T* bias = (!acc && b) ? b + grp * g.Kg + m0 : nullptr;
            if (to_y)
              tk.fn_offs(kc, ap, xpad + st * nr, boff.data() + k0, yg + m0 * g.PQ + oh0 * g.Q + st * nr,
                         g.PQ, mv, int(std::min<int64_t>(nr, nrows * g.Q - st * nr)), acc, bias);
            else if (k0 + kc < g.CRS)  // whole vectors: the last block reads them all back
              tk.fn_offs(kc, ap, xpad + st * nr, boff.data() + k0, cbuf + (pn - pn0) * mr * ldcb + st * nr, ldcb,
                         mv, int(std::min<int64_t>(nr, round_up(nrows * Wv - st * nr, nr / nrv))), acc, bias);
            else
              tk.fn_scatter(kc, ap, xpad + st * nr, boff.data() + k0, cbuf + (pn - pn0) * mr * ldcb + st * nr,
                            ldcb, yg + m0 * g.PQ + oh0 * g.Q, g.PQ, mv, vs.off.data() + st * nrv,
                            vs.mask.data() + st * nrv, acc, bias);
          }
      }
    }
  }
  return true;
}

// 'Same' stride-1 layers (P = H, Q = W: each pixel's window centred on it
// up to the padding), where the masked tile exists (AVX-512): B is x itself.
// Tap (r, s, c) of output pixel p of an image is x_image[p + boff], boff =
// c HW + (r dh - ph) W + s dw - pw, for every pixel alike; the lanes whose
// tap falls in the padding (which in x is a neighbouring row, or outside x)
// are masked off: they add nothing. So no padded copy, no garbage columns (the
// direct path's padded rows compute Q + pw of every Q), and tiles go
// straight to y. Padding taps still cost their FMAs. The
// reduction runs in (r, s, c) order, weights packed so, for the masks of a
// tap to stay in registers over its Cg channels. Taken where the direct
// path would run, on maps up to 56x56 (measured against direct: GoogLeNet
// 4a / 3a 5x5 data gradients 1.13x / 1.12x, ResNet-20's 16-channel 3x3
// forward and data gradient 1.17x / 1.12x, 3-channel 32x32 1.1x; 3-channel
// maps 64x64 even, 112x112 0.95x, 224x224 0.8x).
bool same_chosen(const Geo& g, bool has_masked_tile) {
  return has_masked_tile && g.sh == 1 && g.sw == 1 && g.P == g.H && g.Q == g.W && !plain_1x1(g) &&
         g.PQ <= 56 * 56;
}

template <typename T>
void fast_forward_same(const Geo& g, const T* x, const T* w, const T* b, T* y, int nt) {
  const GemmTile<T>& tk = gemm_tile<T>();
  const int mr = tk.mr, nrv = tk.nrv, L = tk.nr / tk.nrv;
  const int64_t npan = ceil_div(g.Kg, mr);
  const std::unique_ptr<T[]> wrsc(new T[size_t(g.K * g.CRS)]);  // w as (K, R, S, Cg): all written
#pragma omp parallel for num_threads(nt) schedule(static) if (g.K * g.CRS > kSerialBelow)
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c = 0; c < g.Cg; ++c)
      for (int64_t rs = 0; rs < g.RS; ++rs)
        wrsc[size_t((k * g.RS + rs) * g.Cg + c)] = w[(k * g.Cg + c) * g.RS + rs];
  const std::unique_ptr<T[]> wpack_store(new T[size_t(g.G * npan * g.CRS * mr)]);
  T* wpack = wpack_store.get();
  pack_weights(wrsc.get(), g.G, g.Kg, g.CRS, mr, wpack, nt);

  const int64_t nvec = ceil_div(g.PQ, L);
  // masks[v RS + r S + s]: the lanes of vector v whose pixel exists and whose tap lies inside
  std::vector<uint16_t> masks(size_t(nvec * g.RS), 0);
  for (int64_t p = 0; p < g.PQ; ++p) {
    const int64_t oh = p / g.Q, ow = p % g.Q, v = p / L;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t ih = oh - g.ph + r * g.dh;
      if (ih < 0 || ih >= g.H) continue;
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t iw = ow - g.pw + s * g.dw;
        if (iw >= 0 && iw < g.W) masks[size_t(v * g.RS + r * g.S + s)] |= uint16_t(1u << (p % L));
      }
    }
  }
  std::vector<int64_t> boff(size_t(g.CRS));
  for (int64_t r = 0, i = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s)
      for (int64_t c = 0; c < g.Cg; ++c) boff[size_t(i++)] = c * g.HW + (r * g.dh - g.ph) * g.W + s * g.dw - g.pw;
  // Strips whose whole vectors, at every tap, lie inside x load them whole;
  // the others, at x's two ends, mask the loads as well as the FMAs.
  const int64_t boff_lo = *std::min_element(boff.begin(), boff.end());
  const int64_t boff_hi = *std::max_element(boff.begin(), boff.end());
  const int64_t x_elems = g.N * g.C * g.HW;
  // An image's vectors in strips of at most nrv, of near-equal size (13 as
  // 2 + 3 + 2 + 3 + 3, not 3 + 3 + 3 + 3 + 1: a one-vector tile loads as
  // much as it computes), in blocks of about kDirectBlockTarget pixels.
  const int64_t nstrip = ceil_div(nvec, int64_t(nrv));
  auto strip_vec = [&](int64_t i) { return (i * nvec) / nstrip; };  // first vector of strip i
  const int64_t spb = std::clamp<int64_t>(kDirectBlockTarget / tk.nr, 1, nstrip);
  const int64_t npb = ceil_div(nstrip, spb);
  const auto [nkb, pans_per_kb] = panel_groups(npan, g.N * g.G * npb, nt);
  const int64_t KC = g.CRS <= kKC<T> * 3 / 2 ? g.CRS : round_up(ceil_div(g.CRS, ceil_div(g.CRS, kKC<T>)), 8);
  const int64_t ntasks = g.N * g.G * npb * nkb;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t task = 0; task < ntasks; ++task) {
    const auto [kb, pb, grp, n] = image_block_task(task, nkb, npb, g.G);
    const int64_t st0 = pb * spb, st1 = std::min(nstrip, st0 + spb);
    const int64_t pn0 = kb * pans_per_kb, pn1 = std::min(npan, pn0 + pans_per_kb);
    const T* xg = x + (n * g.C + grp * g.Cg) * g.HW;
    T* yg = y + (n * g.K + grp * g.Kg) * g.PQ;
    for (int64_t k0 = 0; k0 < g.CRS; k0 += KC) {
      const int64_t kc = std::min(KC, g.CRS - k0);
      for (int64_t st = st0; st < st1; ++st) {
        const int64_t v0 = strip_vec(st), v1 = strip_vec(st + 1);
        const int ncols = int(std::min((v1 - v0) * L, g.PQ - v0 * L));
        const int64_t first = (xg - x) + v0 * L;  // x index of the strip's first pixel
        const bool inside = first + boff_lo >= 0 && first + boff_hi + (v1 - v0) * L <= x_elems;
        for (int64_t pn = pn0; pn < pn1; ++pn) {
          const int64_t m0 = pn * mr;
          const T* ap = wpack + ((grp * npan + pn) * g.CRS + k0) * mr;
          const T* bias = (k0 == 0 && b) ? b + grp * g.Kg + m0 : nullptr;
          tk.fn_masked(kc, ap, xg + v0 * L, boff.data() + k0, masks.data() + v0 * g.RS, g.RS, k0 / g.Cg,
                       g.Cg - k0 % g.Cg, g.Cg, inside, yg + m0 * g.PQ + v0 * L, g.PQ,
                       int(std::min<int64_t>(mr, g.Kg - m0)), ncols, k0 > 0, bias);
        }
      }
    }
  }
}

// Small maps: the output pixels of all images of a group form one flat axis
// f = n PQ + pix, cut into blocks of whole NR strips that may span images, so
// that a 7x7 map fills its strips (blocked per image, 49 pixels would be
// computed as 96). The im2col panel of a block is packed per image segment;
// the tiles land in a per-thread C block, copied out per segment at the end.
template <typename T>
void fast_forward_flat(const Geo& g, const T* x, const T* wpack, const T* b, T* y, int nt,
                       int64_t npan) {
  const GemmTile<T>& tk = gemm_tile<T>();
  const int mr = tk.mr, nr = tk.nr;
  const int64_t F = g.N * g.PQ;
  const auto [npb, nc] = pixel_blocks(F, nr);
  const auto [nkb, pans_per_kb] = panel_groups(npan, g.G * npb, nt);

  const int64_t KC = kKC<T>;
  const int64_t kc_max = std::min(KC, g.CRS);
  const int64_t panel_al = round_up(kc_max * nc, 16);
  Scratch<T> scratch(panel_al + pans_per_kb * mr * nc, nt);
  const int64_t ntasks = g.G * npb * nkb;

#pragma omp parallel num_threads(nt)
  {
    T* panel = scratch.slice(omp_get_thread_num());
    T* cbuf = panel + panel_al;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      const int64_t kb = task % nkb, pb = (task / nkb) % npb, grp = task / (nkb * npb);
      const int64_t f0 = pb * nc, nf = std::min(nc, F - f0), nst = ceil_div(nf, nr);
      const int64_t pn0 = kb * pans_per_kb, pn1 = std::min(npan, pn0 + pans_per_kb);
      for (int64_t k0 = 0; k0 < g.CRS; k0 += KC) {
        const int64_t kc = std::min(KC, g.CRS - k0);
        for (int64_t t = 0; t < nf;) {
          const int64_t n = (f0 + t) / g.PQ, pix = (f0 + t) % g.PQ;
          const int64_t seg = std::min(g.PQ - pix, nf - t);
          pack_im2col(g, x + (n * g.C + grp * g.Cg) * g.HW, k0, kc, pix, seg, nr, panel, t, t + seg == nf);
          t += seg;
        }
        const bool acc = k0 > 0;
        for (int64_t st = 0; st < nst; ++st)
          for (int64_t pn = pn0; pn < pn1; ++pn) {
            const int64_t m0 = pn * mr;
            const int mv = int(std::min<int64_t>(mr, g.Kg - m0));
            const T* bias = (!acc && b) ? b + grp * g.Kg + m0 : nullptr;
            tk.fn(kc, wpack + ((grp * npan + pn) * g.CRS + k0) * mr, mr, panel + st * kc * nr,
                  cbuf + (pn - pn0) * mr * nc + st * nr, nc, mv, nr, acc, bias);
          }
      }
      const int64_t k_begin = pn0 * mr, k_end = std::min(g.Kg, pn1 * mr);
      for (int64_t t = 0; t < nf;) {
        const int64_t n = (f0 + t) / g.PQ, pix = (f0 + t) % g.PQ;
        const int64_t seg = std::min(g.PQ - pix, nf - t);
        T* yn = y + (n * g.K + grp * g.Kg) * g.PQ + pix;
        for (int64_t k = k_begin; k < k_end; ++k)
          std::memcpy(yn + k * g.PQ, cbuf + (k - k_begin) * nc + t, size_t(seg) * sizeof(T));
        t += seg;
      }
    }
  }
}

// Small maps with many output channels ("lanes"): output channels are the
// vector lanes and every output pixel is broadcast from its own window
// (conv_gemm.h LaneTileFn), so that no strip is partial and no garbage column
// is computed whatever the map size, stride or dilation. Per task (group,
// block of whole images, group of channel panels) and per panel
// (lane_panels), tiles of MP pixels x KW channels read x in place (padding
// taps skipped by border class) and accumulate in a per-thread
// [pixel][channel] buffer over blocks of the reduction, then are transposed
// into y. forward_lanes_chosen says where it runs: Kg a sum of the tiles'
// widths, an image's zero-padded size within kLanesImageMax.
template <typename T> detail::LaneTileFn<T> lane_fn(const detail::LaneTile& t);
template <> detail::LaneTileFn<float> lane_fn<float>(const detail::LaneTile& t) { return t.s; }
template <> detail::LaneTileFn<double> lane_fn<double>(const detail::LaneTile& t) { return t.d; }

// The lane paths' zero-padded images (the weight gradient's copies; the
// forward's sizes, measured when it still copied): one image at most
// kLanesImageMax (VGG's 28x28 / 56x56 layers, 1.6-3.4 MiB: forward 1.05x,
// weight gradient 1.3-1.4x over their other paths); the weight gradient's
// up to kLanesWgradImageMax (a task copies only its channels: VGG conv2_2,
// 128 channels on 112x112, 6.6 MiB, 1.03-1.11x over the dot path).
constexpr int64_t kLanesImageMax = int64_t(4) << 20;
constexpr int64_t kLanesWgradImageMax = int64_t(8) << 20;

// d = nch consecutive channels of x from xc, each as H + 2 ph rows of
// W + 2 pw with its zero padding: the lane paths' padded copy. The right
// padding of a row, the left padding of the next and the padding rows
// between channels are one zero run each.
template <typename T>
inline void copy_padded_channels_body(const Geo& g, const T* xc, int64_t nch, T* d) {
  const int64_t Wp = g.W + 2 * g.pw;
  copy_row<T>(d, nullptr, g.ph * Wp + g.pw);
  T* dr = d + g.ph * Wp + g.pw;  // (row 0, column 0) of channel 0's data
  for (int64_t c = 0; c < nch; ++c) {
    const T* src = xc + c * g.HW;
    for (int64_t ih = 0; ih < g.H; ++ih, dr += Wp) {
      copy_row(dr, src + ih * g.W, g.W);
      // to the next row's first column, or past the channel's bottom padding
      // and the next channel's top padding (the last channel: its own only)
      const int64_t gap = ih + 1 < g.H ? 2 * g.pw : c + 1 < nch ? 2 * g.pw + 2 * g.ph * Wp : g.pw + g.ph * Wp;
      copy_row<T>(dr + g.W, nullptr, gap);
    }
    dr += 2 * g.ph * Wp;
  }
}

// Its short row copies in the dispatcher's vector width (ResNet-20's weight
// gradients, 16-64 channels on 32x32 to 8x8 maps: 1.01-1.10x).
#if FC_POOL_X86_MULTI
template <typename T>
FC_POOL_TARGET_AVX512 void copy_padded_channels_avx512(const Geo& g, const T* xc, int64_t nch, T* d) {
  copy_padded_channels_body<T>(g, xc, nch, d);
}
template <typename T>
FC_POOL_TARGET_AVX2 void copy_padded_channels_avx2(const Geo& g, const T* xc, int64_t nch, T* d) {
  copy_padded_channels_body<T>(g, xc, nch, d);
}
#endif

template <typename T>
void copy_padded_channels(const Geo& g, const T* xc, int64_t nch, T* d) {
#if FC_POOL_X86_MULTI
  const int isa = isa_level();
  if (isa == 2) return copy_padded_channels_avx512<T>(g, xc, nch, d);
  if (isa == 1) return copy_padded_channels_avx2<T>(g, xc, nch, d);
#endif
  copy_padded_channels_body<T>(g, xc, nch, d);
}

// The busiest of nt threads' share over an even share (1: balanced) when
// tasks of the given costs (not all zero) are handed out in order, each to
// the first free thread (schedule(dynamic, 1)).
double busiest_over_even(const std::vector<double>& cost, int nt) {
  std::vector<double> busy(size_t(std::max(nt, 1)), 0.0);
  for (double c : cost) *std::min_element(busy.begin(), busy.end()) += c;
  return *std::max_element(busy.begin(), busy.end()) * double(busy.size()) /
         std::accumulate(cost.begin(), cost.end(), 0.0);
}

// Kg output channels cut into lane panels, each as wide as one of the lane
// tiles: widest first, so that they add up to Kg (AVX-512: 208 = 64 + 64 +
// 48 + 32, GoogLeNet 4a 3x3, which no single width divides). Empty when no
// sum fits. The one-vector tile only where single_ok (the forward refuses it:
// slower than direct there, 0.85x on 16-channel layers).
struct LanePanel {
  const detail::LaneTile* tile;
  int64_t k0, kw;  // first channel within the group, channels
};

template <typename T>
std::vector<LanePanel> lane_panels(const Geo& g, bool single_ok) {
  const detail::LaneKernels& lk = detail::lane_kernels();
  const int64_t L = lk.vec_bytes / int64_t(sizeof(T));
  std::vector<LanePanel> plan;
  if (g.Kg % L) return plan;
  std::vector<const detail::LaneTile*> parts;  // distinct widths, widest first
  for (const detail::LaneTile* t : {&lk.wide, &lk.mid, &lk.narrow, &lk.single})
    if ((single_ok || t != &lk.single) &&
        std::none_of(parts.begin(), parts.end(), [&](const detail::LaneTile* q) { return q->nkv == t->nkv; }))
      parts.push_back(t);
  std::sort(parts.begin(), parts.end(), [](const auto* a, const auto* b) { return a->nkv > b->nkv; });
  const int64_t u = g.Kg / L;  // vectors of channels
  std::vector<char> fits(size_t(u + 1), 0);  // fits[v]: v vectors are a sum of the widths
  fits[0] = 1;
  for (int64_t v = 1; v <= u; ++v)
    for (const auto* t : parts) fits[size_t(v)] |= t->nkv <= v && fits[size_t(v - t->nkv)];
  if (!fits[size_t(u)]) return plan;
  for (int64_t v = u, k0 = 0; v > 0;)
    for (const auto* t : parts)
      if (t->nkv <= v && fits[size_t(v - t->nkv)]) {
        plan.push_back({t, k0, t->nkv * L});
        k0 += t->nkv * L;
        v -= t->nkv;
        break;
      }
  return plan;
}

// Whether the forward takes the lane path. Pixel strips that waste columns
// favour lanes (measured here: 1.05-1.5x over direct and flat on 3x3 / 5x5
// layers from 7x7 to 56x56 maps, 1.6x on ResNet's 8x8 stride-2 layers, 1.25x
// on GoogLeNet 4a's 208-channel 3x3 in mixed panels); few input channels and
// full-strip maps keep the direct path (lanes there: 0.25-0.7x, the
// reduction is too short for the transposed copy-out). A plain 1x1 layer
// reads x in place (fast_forward_1x1): lanes only with a long reduction and
// where a third of its columns would be partial strips.
template <typename T>
bool forward_lanes_chosen(const Geo& g) {
  // (maps up to 64x64: the per-thread [pixel][channel] buffer of a block
  // holds whole images; 56x56 was the largest measured)
  if (g.ph < 0 || g.pw < 0 || g.Cg < 8 || g.CRS < 64 || g.PQ > 4096) return false;
  const std::vector<LanePanel> plan = lane_panels<T>(g, false);
  if (plan.empty()) return false;
  const bool padded = g.ph > 0 || g.pw > 0;
  if (padded && g.Cg * (g.H + 2 * g.ph) * (g.W + 2 * g.pw) * int64_t(sizeof(T)) > kLanesImageMax) return false;
  const bool plain = plain_1x1(g);
  if (plain) {
    const int64_t L = gemm_tile<T>().nr / gemm_tile<T>().nrv;  // the in-place path's tiles end at vectors
    if (g.CRS < kLanesMin1x1CRS || double(g.PQ) / double(round_up(g.PQ, L)) >= kLanes1x1BelowVecEff) return false;
  }
  const double below = plain ? 0.9 : kLanesBelowEff;
  return direct_blocking(g, gemm_tile<T>().nr, direct_wv(g)).eff < below;
}

// Channels per block of the copy of x that the forward's lane path reads (1:
// x read in place; see fast_forward_lanes). AVX2: blocks of 8 wherever they
// are whole per group. AVX-512: blocks of 16 (a line of floats) with 128 or
// more channels per group on maps of 28x28 and more. Measured on AVX-512
// against x read in place (one thread, medians of paired runs, forward /
// rotated data-gradient pass): 256 channels on 56x56 1.055x / 1.025x, 512
// on 28x28 1.05x / 1.03x, 256 on 28x28 1.03x / 1.01x, 128 on 56x56 0.99x /
// 1.01x; but 64 on 56x56 0.93x / 1.0x, and with two threads maps of 7x7 to
// 14x14 (ResNet, AlexNet / ZFNet conv3-5, GoogLeNet 4a) 0.96-1.03x: there the
// copy costs about what it saves. Blocks of 8 and 32 measured as 16.
int64_t lanes_x_block(const Geo& g) {
  const int vec_bytes = detail::lane_kernels().vec_bytes;
  if (vec_bytes == 32) return g.Cg % 8 == 0 ? 8 : 1;
  if (vec_bytes == 64) return g.Cg % 16 == 0 && g.Cg >= 128 && g.HW >= 28 * 28 ? 16 : 1;
  return 1;
}

template <typename T>
void fast_forward_lanes(const Geo& g, const T* x, const T* w, const T* b, T* y, int nt,
                        const Geo* rotated_from = nullptr) {
  const std::vector<LanePanel> plan = lane_panels<T>(g, false);
  const int64_t npan = int64_t(plan.size());
  // Rows of C are tiled per panel by that panel's tile height: each class is
  // padded to a multiple of all of them (mpl), so no tile mixes classes.
  int64_t mpl = 1, kw_max = 0;
  std::vector<int64_t> widths;  // distinct panel widths (their border-class W offsets differ)
  for (const LanePanel& pn : plan) {
    mpl = std::lcm(mpl, int64_t(pn.tile->mp));
    kw_max = std::max(kw_max, pn.kw);
    if (std::find(widths.begin(), widths.end(), pn.kw) == widths.end()) widths.push_back(pn.kw);
  }
  // Border classes: output pixels whose windows reach into the same padding
  // rows and columns share a list of the taps inside (the rotated backward
  // pass of an unpadded 7x7 -> 5x5 layer is half padding taps); tiles never
  // mix classes. The class of all taps reads W in order (woff null). Padding
  // taps are never read, so x is read in place: a pixel's pointer is its
  // window's first tap inside, and its class's offsets count from that tap.
  // (The zero-padded copy this replaced cost 7-11% on ResNet-20's 8x8
  // layers and on AlexNet conv5's rotated pass.)
  std::vector<int64_t> row_cls(size_t(g.P)), col_cls(size_t(g.Q));
  std::vector<std::array<int64_t, 2>> row_rng, col_rng;
  auto classify = [](int64_t out, int64_t taps, int64_t stride, int64_t pad, int64_t dil, int64_t size,
                     std::vector<int64_t>& cls, std::vector<std::array<int64_t, 2>>& rng) {
    for (int64_t o = 0; o < out; ++o) {
      int64_t lo = taps, hi = 0;
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t i = o * stride - pad + t * dil;
        if (i >= 0 && i < size) { lo = std::min(lo, t); hi = t + 1; }
      }
      if (lo >= hi) lo = hi = 0;
      const std::array<int64_t, 2> key{lo, hi};
      const auto it = std::find(rng.begin(), rng.end(), key);
      cls[size_t(o)] = it - rng.begin();
      if (it == rng.end()) rng.push_back(key);
    }
  };
  classify(g.P, g.R, g.sh, g.ph, g.dh, g.H, row_cls, row_rng);
  classify(g.Q, g.S, g.sw, g.pw, g.dw, g.W, col_cls, col_rng);
  const int64_t ncls = int64_t(row_rng.size() * col_rng.size());
  // per output pixel of an image: its class, and its pointer's offset in the
  // image (its window's first tap inside; 0, never read, when none is)
  std::vector<int64_t> pix_cls(size_t(g.PQ)), pix_off(size_t(g.PQ)), cls_pixels(size_t(ncls), 0);
  for (int64_t oh = 0, pix = 0; oh < g.P; ++oh)
    for (int64_t ow = 0; ow < g.Q; ++ow, ++pix) {
      const int64_t cl = row_cls[size_t(oh)] * int64_t(col_rng.size()) + col_cls[size_t(ow)];
      const auto& rr = row_rng[size_t(row_cls[size_t(oh)])];
      const auto& ss = col_rng[size_t(col_cls[size_t(ow)])];
      pix_cls[size_t(pix)] = cl;
      ++cls_pixels[size_t(cl)];
      pix_off[size_t(pix)] = rr[0] >= rr[1] || ss[0] >= ss[1] ? 0 :
          (oh * g.sh - g.ph + rr[0] * g.dh) * g.W + (ow * g.sw - g.pw + ss[0] * g.dw);
    }
  // Tasks: blocks of whole images x groups of channel panels (each group
  // repeats its block's setup). Every class is tiled on its own, so a class
  // of few pixels per image fills its last tile only in blocks of the right
  // size: the rotated pass of AlexNet conv4 (7x7 -> 9x9) has 16 classes of
  // one pixel per image, and in its blocks of 4 images 12% of the FMAs went
  // to tile rows past a class's end. Per candidate (blocks of near-equal
  // size, the larger first; panels per task) the cost is the busiest
  // thread's tile rows x taps x channels when the tasks go in order to the
  // first free thread (schedule(dynamic, 1)); of the candidates within 1% of
  // the least, the one of fewest tasks. Blocks of at most ~256 pixels,
  // ~1024 where classes split them (padded; 2048 measured even to 1.02x
  // slower); smaller ones only down to 2 more blocks per thread. Measured against the blocks this replaced (as large, but at
  // most 1 MiB of padded images, a bound kept from when blocks were copied
  // padded; one panel group per block unless under 2 tasks per thread):
  // AlexNet conv4's rotated pass 1.1x (blocks of 11 images), conv5's 1.05x,
  // ResNet's 7x7 512-channel forward and rotated pass 1.07x, VGG conv5_1's
  // 1.03x / 1.07x; the other lane layers within 2%.
  // x may be read from a copy in blocks of xcb channels ([n][c/xcb][h][w][xcb],
  // lanes_x_block): a tile's broadcasts over a reduction block then come from
  // a few lines and pages of each tap's xcb channels, not one plane per
  // channel. Measured against x read in place (copy included), AVX2 (blocks
  // of 8, single thread, cycles): VGG conv3_2's forward 1.12x, its data
  // gradient's rotated pass 1.24x, conv4_2 1.08x, conv3_1 1.08x, 7x7
  // 512-channel 1.02x; AVX-512: see lanes_x_block. Offsets stay linear in
  // (c, r, s) and in the pixel, so the tiles are unchanged.
  const int64_t xcb = lanes_x_block(g);
  std::unique_ptr<T[]> x_blocked;
  if (xcb > 1) {
    x_blocked.reset(new T[size_t(g.N * g.C * g.HW)]);  // every element written below
    const TransposeFn<T> transpose = gemm_tile<T>().transpose;
    T* xbk = x_blocked.get();
#pragma omp parallel for num_threads(nt) schedule(static) if (g.N * g.C * g.HW > kSerialBelow)
    for (int64_t blk = 0; blk < g.N * g.C / xcb; ++blk)
      transpose(x + blk * xcb * g.HW, g.HW, int(xcb), g.HW, xbk + blk * xcb * g.HW, xcb);
    x = xbk;
  }
  // offset of (channel c, tap offset o in its plane) from a pixel's pointer
  auto x_off = [&](int64_t c, int64_t o) { return xcb > 1 ? (c / xcb * g.HW + o) * xcb + c % xcb : c * g.HW + o; };
  std::vector<int64_t> cls_taps(static_cast<size_t>(ncls));
  for (int64_t cl = 0; cl < ncls; ++cl) {
    const auto& rr = row_rng[size_t(cl / int64_t(col_rng.size()))];
    const auto& ss = col_rng[size_t(cl % int64_t(col_rng.size()))];
    cls_taps[size_t(cl)] = (rr[1] - rr[0]) * (ss[1] - ss[0]);
  }
  auto block_begin = [&](int64_t nblk, int64_t blk) {
    return blk * (g.N / nblk) + std::min(blk, g.N % nblk);
  };
  const bool padded = g.ph > 0 || g.pw > 0;
  const int64_t nblk_min = ceil_div(g.N, std::clamp<int64_t>(ceil_div(padded ? 1024 : 256, g.PQ), 1, g.N));
  struct Split { int64_t nblk, pans_per, tasks; double span; };
  std::vector<Split> splits;
  {
    std::vector<double> busy, work[2];  // busy: a min-heap of the threads' loads; work[i][p]: see below
    for (int64_t nblk = nblk_min; nblk <= std::min(g.N, nblk_min + 2 * int64_t(nt)); ++nblk) {
      const int64_t ni_small = g.N / nblk;  // blocks hold ni_small or ni_small + 1 images
      for (int i = 0; i < 2; ++i) {  // work[i][p]: panel p's tile rows x taps x channels over ni_small + i images
        work[i].assign(size_t(npan), 0.0);
        for (int64_t p = 0; p < npan; ++p)
          for (int64_t cl = 0; cl < ncls; ++cl)
            work[i][size_t(p)] += double(plan[size_t(p)].kw * cls_taps[size_t(cl)] *
                                         round_up((ni_small + i) * cls_pixels[size_t(cl)], plan[size_t(p)].tile->mp));
      }
      for (int64_t npg = 1; npg <= npan; ++npg) {
        const int64_t pp = ceil_div(npan, npg);
        if (ceil_div(npan, pp) != npg) continue;  // the same grouping as fewer groups
        busy.assign(size_t(nt), 0.0);
        for (int64_t grp = 0; grp < g.G; ++grp)
          for (int64_t blk = 0; blk < nblk; ++blk) {
            const std::vector<double>& wk = work[block_begin(nblk, blk + 1) - block_begin(nblk, blk) - ni_small];
            for (int64_t pg = 0; pg < npg; ++pg) {
              std::pop_heap(busy.begin(), busy.end(), std::greater<>());
              busy.back() += std::accumulate(wk.begin() + pg * pp, wk.begin() + std::min(npan, (pg + 1) * pp), 0.0);
              std::push_heap(busy.begin(), busy.end(), std::greater<>());
            }
          }
        splits.push_back({nblk, pp, g.G * nblk * npg, *std::max_element(busy.begin(), busy.end())});
      }
    }
  }
  const double least = std::min_element(splits.begin(), splits.end(), [](const Split& a, const Split& b) {
                         return a.span < b.span;
                       })->span;
  Split split{0, 0, 0, 0.0};
  for (const Split& c : splits)
    if (c.span <= least * 1.01 && (split.tasks == 0 || c.tasks < split.tasks)) split = c;
  const int64_t nblk = split.nblk, pans_per = split.pans_per, ntasks = split.tasks;
  const int64_t nb = ceil_div(g.N, nblk);  // the largest block
  const int64_t npg = ceil_div(npan, pans_per);
  const int64_t KC = 512;  // measured: 128 is 10% slower on 7x7 maps, 1024 and whole no faster
  constexpr int64_t kRowsPerBlock = 1024;  // rows of C per pixel block: C stays in L2 across k0

  std::vector<std::vector<int64_t>> cls_boff(static_cast<size_t>(ncls));
  std::vector<std::vector<std::vector<int64_t>>> cls_woff(  // [width][class]
      widths.size(), std::vector<std::vector<int64_t>>(size_t(ncls)));
  std::vector<char> cls_full(static_cast<size_t>(ncls));
  for (int64_t cl = 0; cl < ncls; ++cl) {
    const auto& rr = row_rng[size_t(cl / int64_t(col_rng.size()))];
    const auto& ss = col_rng[size_t(cl % int64_t(col_rng.size()))];
    cls_full[size_t(cl)] = rr[0] == 0 && rr[1] == g.R && ss[0] == 0 && ss[1] == g.S;
    for (int64_t c = 0; c < g.Cg; ++c)
      for (int64_t r = rr[0]; r < rr[1]; ++r)
        for (int64_t s = ss[0]; s < ss[1]; ++s) {
          cls_boff[size_t(cl)].push_back(x_off(c, (r - rr[0]) * g.dh * g.W + (s - ss[0]) * g.dw));
          for (size_t wi = 0; wi < widths.size(); ++wi)
            cls_woff[wi][size_t(cl)].push_back(((c * g.R + r) * g.S + s) * widths[wi]);
        }
  }
  const int64_t nf_max = nb * g.PQ, nf_al = nf_max + ncls * (mpl - 1);  // rows of C: classes padded to mpl

  // weights as [group][panel][crs][kw]: panel p of group grp at (grp Kg + k0) CRS
  T* wl = static_cast<T*>(std::aligned_alloc(64, size_t(round_up(g.K * g.CRS * int64_t(sizeof(T)), 64))));
  if (!wl) throw std::bad_alloc();
  struct Free { T* p; ~Free() { std::free(p); } } wl_free{wl};
  const TransposeFn<T> transpose = gemm_tile<T>().transpose;
  const TransposeRowsFn<T> transpose_rows = gemm_tile<T>().transpose_rows;
  // wl panel [crs][kw] = (w rows [kw][crs])^T. For the data gradient's
  // rotated pass (rotated_from: the layer, w: its weights) the same panel
  // of the rotated weights, gathered from w in one pass: per output channel
  // k of the layer, a [kw][R S] block of w transposed into R S rows of the
  // panel, taps reversed (against a rotated copy of w first: AlexNet conv4,
  // ResNet's 7x7 512-channel and VGG conv5_1 passes 1.03-1.05x).
#pragma omp parallel for num_threads(nt) schedule(static) if (g.K * g.CRS > kSerialBelow)
  for (int64_t gp = 0; gp < g.G * npan; ++gp) {
    const LanePanel& pn = plan[size_t(gp % npan)];
    const int64_t grp = gp / npan, off = (grp * g.Kg + pn.k0) * g.CRS;
    if (!rotated_from) {
      transpose(w + off, g.CRS, int(pn.kw), g.CRS, wl + off, pn.kw);
      continue;
    }
    const Geo& o = *rotated_from;  // o.Kg = g.Cg, o.Cg = g.Kg, the same taps
    for (int64_t k = 0; k < o.Kg; ++k)
      transpose(w + ((grp * o.Kg + k) * o.Cg + pn.k0) * o.RS, o.RS, int(pn.kw), o.RS,
                wl + off + (k * o.RS + o.RS - 1) * pn.kw, -pn.kw);
  }
  Scratch<T> scratch(nf_al * kw_max, nt);
#pragma omp parallel num_threads(nt)
  {
    T* cbuf = scratch.slice(omp_get_thread_num());
    std::vector<const T*> ptr(static_cast<size_t>(nf_al));
    std::vector<int64_t> pos(static_cast<size_t>(nf_max));      // pixel f -> row of C
    std::vector<int64_t> first_row(static_cast<size_t>(ncls)), count(static_cast<size_t>(ncls));
    std::vector<int64_t> next(static_cast<size_t>(ncls));
    std::vector<std::array<int64_t, 2>> tiles;  // (first row, class) of one panel's tiles
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      const int64_t pg = task % npg, blk = (task / npg) % nblk, grp = task / (npg * nblk);
      const int64_t n0 = block_begin(nblk, blk), ni = block_begin(nblk, blk + 1) - n0;
      // rows of C: the block's pixels grouped by class, each class padded to
      // a multiple of mpl rows with copies of its first pixel (never copied out)
      const T* xb = x + (n0 * g.C + grp * g.Cg) * g.HW;  // image n0 of the group
      for (int64_t cl = 0, row = 0; cl < ncls; ++cl) {
        count[size_t(cl)] = ni * cls_pixels[size_t(cl)];
        first_row[size_t(cl)] = next[size_t(cl)] = row;
        row += round_up(count[size_t(cl)], mpl);
      }
      for (int64_t i = 0, f = 0; i < ni; ++i)
        for (int64_t pix = 0; pix < g.PQ; ++pix, ++f) {
          const int64_t j = next[size_t(pix_cls[size_t(pix)])]++;
          pos[size_t(f)] = j;
          ptr[size_t(j)] = xb + i * g.C * g.HW + pix_off[size_t(pix)] * xcb;
        }
      for (int64_t cl = 0; cl < ncls; ++cl) {  // the class's first pixel repeated
        const int64_t end = first_row[size_t(cl)] + round_up(count[size_t(cl)], mpl);
        for (int64_t j = next[size_t(cl)]; j < end; ++j) ptr[size_t(j)] = ptr[size_t(first_row[size_t(cl)])];
      }
      for (int64_t p = pg * pans_per; p < std::min(npan, (pg + 1) * pans_per); ++p) {
        const LanePanel& pn = plan[size_t(p)];
        const int64_t mp = pn.tile->mp, kw = pn.kw;
        const detail::LaneTileFn<T> fn = lane_fn<T>(*pn.tile);
        const size_t wi = size_t(std::find(widths.begin(), widths.end(), kw) - widths.begin());
        const T* wp = wl + (grp * g.Kg + pn.k0) * g.CRS;
        const T* bias = b ? b + grp * g.Kg + pn.k0 : nullptr;
        tiles.clear();
        for (int64_t cl = 0; cl < ncls; ++cl)
          for (int64_t r0 = 0; r0 < count[size_t(cl)]; r0 += mp) tiles.push_back({first_row[size_t(cl)] + r0, cl});
        const int64_t ntile = int64_t(tiles.size()), tiles_per_block = ceil_div(kRowsPerBlock, mp);
        for (int64_t t0 = 0; t0 < ntile; t0 += tiles_per_block)  // pixel blocks: C stays in L2 across k0
          for (int64_t k0 = 0; k0 < g.CRS; k0 += KC)
            for (int64_t t = t0; t < std::min(ntile, t0 + tiles_per_block); ++t) {
              const auto [row, cl] = tiles[size_t(t)];
              const int64_t len = int64_t(cls_boff[size_t(cl)].size());
              T* ct = cbuf + row * kw;
              if (len == 0 && k0 == 0) {  // windows wholly in the padding: the bias alone
                for (int64_t j = 0; j < mp * kw; ++j) ct[j] = bias ? bias[j % kw] : T(0);
                continue;
              }
              if (k0 >= len) continue;
              const int64_t kc = std::min(KC, len - k0);
              const bool full = cls_full[size_t(cl)];
              fn(kc, full ? wp + k0 * kw : wp, full ? nullptr : cls_woff[wi][size_t(cl)].data() + k0,
                 ptr.data() + row, cls_boff[size_t(cl)].data() + k0, ct, kw, k0 > 0, k0 == 0 ? bias : nullptr);
            }
        // copy-out: the rows of C, in pixel order, transposed in registers
        // into the panel's y planes (gathered into a buffer first, this was
        // 8% of a 32-channel 16x16 forward)
        for (int64_t i = 0; i < ni; ++i)
          transpose_rows(cbuf, pos.data() + i * g.PQ, kw, int(g.PQ), kw,
                         y + ((n0 + i) * g.K + grp * g.Kg + pn.k0) * g.PQ, g.PQ);
      }
    }
  }
}

// Plain 1x1 layers (R = S = 1, stride 1, no padding): row c of the GEMM's B
// is channel c of the image as it lies in x, so the strips are read in place
// (tile_offs, boff[c] = c HW) and x is not copied; tiles go straight to y.
// Only a strip whose full width would read past the end of x (the tail of
// the last image) is copied, zero-padded, to a per-thread buffer; and with
// 96 or more output channels a KC block of the strip's rows is packed for
// the panels to share (see pack).
template <typename T>
void fast_forward_1x1(const Geo& g, const T* x, const T* wpack, const T* b, T* y, int nt, int64_t npan) {
  const GemmTile<T>& tk = gemm_tile<T>();
  const int mr = tk.mr, nr = tk.nr;
  const auto [npb, nc] = pixel_blocks(g.PQ, nr);
  const auto [nkb, pans_per_kb] = panel_groups(npan, g.N * g.G * npb, nt);

  // Read in place, a strip row (one line on avx2, three on avx512) straddles
  // one more line than it fills, and KC rows HW apart overflow L1 while the
  // panels sweep over them: with enough panels to share it, the rows of a
  // block are packed once per strip, and the block is cut to fill at most
  // half of a 48 KiB L1 (128 rows on avx512, 256 on avx2). Measured, 2
  // threads: AVX2 EPYC (KC 256, whole-strip tiles) 1.12-1.31x on 1x1 layers
  // of 96-1024 output channels (GoogLeNet 4a 480->192 / ->96, bottleneck
  // 1024->256, 256->1024), mixed (0.97-1.08x) at 64, which stay in place;
  // AVX-512 Xeon: 1.21x on 1024->256 and 1.15x on 256->1024 (14x14 maps),
  // 1.13x on 480->192, 1.03x on 480->96, but 0.87x on GoogLeNet 3a's 192->64
  // (28x28) and 0.95x on ResNet's 256->64 (56x56). Against KC 256, packed:
  // 1.07x on 1024->256, 1.04x on 480->192, the same on 256->1024. The
  // packed strip runs on tile_offs too (row c at c nr), so that a strip's
  // tail costs its own vectors only.
  constexpr int64_t kPackMinKg = 96, kPackedBlockBytes = 24 << 10;
  const int64_t row_bytes = nr * int64_t(sizeof(T));
  const bool pack = (row_bytes == 64 || row_bytes == 192) && g.Kg >= kPackMinKg;  // avx2, avx512
  const int64_t KC = pack ? std::min(kKC<T>, kPackedBlockBytes / row_bytes) : kKC<T>;
  std::vector<int64_t> boff(size_t(g.Cg)), boff_tail(size_t(g.Cg));
  for (int64_t c = 0; c < g.Cg; ++c) {
    boff[size_t(c)] = c * g.HW;
    boff_tail[size_t(c)] = c * nr;
  }
  const int64_t x_elems = g.N * g.C * g.HW;
  // one row of a strip (sizes as constants: the copies inline)
  auto copy_row = [row_bytes](T* d, const T* src) {
    if (row_bytes == 64) std::memcpy(d, src, 64);
    else std::memcpy(d, src, 192);
  };
  Scratch<T> scratch(g.Cg * nr, nt), packed(pack ? KC * nr : 0, nt);
  const int64_t ntasks = g.N * g.G * npb * nkb;

#pragma omp parallel num_threads(nt)
  {
    T* tail = scratch.slice(omp_get_thread_num());
    T* pk = pack ? packed.slice(omp_get_thread_num()) : nullptr;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      const auto [kb, pb, grp, n] = image_block_task(task, nkb, npb, g.G);
      const int64_t pix0 = pb * nc, npix = std::min(nc, g.PQ - pix0);
      const int64_t pn0 = kb * pans_per_kb, pn1 = std::min(npan, pn0 + pans_per_kb);
      const T* xg = x + (n * g.C + grp * g.Cg) * g.HW;
      T* yg = y + (n * g.K + grp * g.Kg) * g.PQ;
      const int64_t nst = ceil_div(npix, nr);
      for (int64_t st = 0; st < nst; ++st) {
        const int64_t j0 = pix0 + st * nr;
        const int nv = int(std::min<int64_t>(nr, g.PQ - j0));
        const T* bs = xg + j0;
        const int64_t* bo = boff.data();
        if ((n * g.C + grp * g.Cg + g.Cg - 1) * g.HW + j0 + nr > x_elems) {
          for (int64_t c = 0; c < g.Cg; ++c) {
            std::memcpy(tail + c * nr, xg + c * g.HW + j0, size_t(nv) * sizeof(T));
            std::memset(tail + c * nr + nv, 0, size_t(nr - nv) * sizeof(T));
          }
          bs = tail;
          bo = boff_tail.data();
        }
        if (st + 1 < nst) {  // the next strip's rows lie HW apart: fetched ahead by hand (56x56: 1.1x)
          const char* nx = reinterpret_cast<const char*>(bs + nr);
          for (int64_t c = 0; c < g.Cg; ++c)
            for (int64_t off = 0; off < nr * int64_t(sizeof(T)); off += 64)
              __builtin_prefetch(nx + c * g.HW * int64_t(sizeof(T)) + off, 0, 3);
        }
        for (int64_t k0 = 0; k0 < g.CRS; k0 += KC) {
          const int64_t kc = std::min(KC, g.CRS - k0);
          const bool acc = k0 > 0;
          const T* bk = bs;
          const int64_t* bko = bo + k0;
          if (pk) {
            for (int64_t c = 0; c < kc; ++c) copy_row(pk + c * nr, bs + bo[k0 + c]);
            bk = pk;
            bko = boff_tail.data();
          }
          for (int64_t pn = pn0; pn < pn1; ++pn) {
            const int64_t m0 = pn * mr;
            const int mv = int(std::min<int64_t>(mr, g.Kg - m0));
            const T* ap = wpack + ((grp * npan + pn) * g.CRS + k0) * mr;
            const T* bias = (!acc && b) ? b + grp * g.Kg + m0 : nullptr;
            tk.fn_offs(kc, ap, bk, bko, yg + m0 * g.PQ + j0, g.PQ, mv, nv, acc, bias);
          }
        }
      }
    }
  }
}

// y = conv(x, w) + b with the geometry g (w: (K, Cg, R, S) row-major).
template <typename T>
void fast_forward(const Geo& g, const T* x, const T* w, const T* b, T* y, int nt) {
  if (g.N == 0 || g.K == 0 || g.PQ == 0) return;
  if (g.CRS == 0) { fill_bias(g, b, y, nt); return; }
  const GemmTile<T>& tk = gemm_tile<T>();
  const int mr = tk.mr, nr = tk.nr;
  const int64_t npan = ceil_div(g.Kg, mr);
  if (forward_lanes_chosen<T>(g)) {  // (its own weight layout: no packed panels)
    fast_forward_lanes(g, x, w, b, y, nt);
    return;
  }
  const bool flat_ok = g.N > 1 && g.PQ < 8 * kPixelBlockTarget;
  const bool direct_ok = direct_wv(g) <= 1024;
  const bool flat_over_direct =
      flat_ok && g.Kg >= kFlatMinKg && direct_blocking(g, nr, direct_wv(g)).eff < kFlatBelowEff;
  if (direct_ok && !flat_over_direct && same_chosen(g, tk.fn_masked != nullptr)) {  // (its own weight order)
    fast_forward_same(g, x, w, b, y, nt);
    return;
  }

  // every element written by pack_weights (not aligned-critical: A is read by broadcasts)
  const std::unique_ptr<T[]> wpack_store(new T[size_t(g.G * npan * g.CRS * mr)]);
  T* wpack = wpack_store.get();
  pack_weights(w, g.G, g.Kg, g.CRS, mr, wpack, nt);
  // Flat blocks fill their strips but pay for an im2col panel (R S copies of
  // each input element) and a copy-out, shared by the Kg output channels; the
  // direct path copies each element once but computes garbage columns and
  // partial strips. Measured here (AVX-512, 3x3 and 5x5 layers): flat wins
  // from about 128 output channels when direct wastes over 10% of its columns.
  // Where the direct path cannot run (its block would not fit a per-thread
  // buffer), flat blocks cost only the copy-out over per-image ones, and win
  // wherever a map does not fill its strips.
  if (plain_1x1(g)) {
    fast_forward_1x1(g, x, wpack, b, y, nt, npan);
    return;
  }
  if (direct_ok) {
    if (flat_over_direct) {
      fast_forward_flat(g, x, wpack, b, y, nt, npan);
      return;
    }
    if (fast_forward_direct(g, x, wpack, b, y, nt, npan)) return;
  }
  const double strip_eff_image = double(g.PQ) / double(round_up(g.PQ, nr));
  if (flat_ok && strip_eff_image < 0.97) {
    fast_forward_flat(g, x, wpack, b, y, nt, npan);
    return;
  }

  const auto [npb, nc] = pixel_blocks(g.PQ, nr);
  const auto [nkb, pans_per_kb] = panel_groups(npan, g.N * g.G * npb, nt);

  const int64_t KC = kKC<T>;
  const int64_t kc_max = std::min(KC, g.CRS);
  Scratch<T> scratch(kc_max * nc, nt);
  const int64_t ntasks = g.N * g.G * npb * nkb;

#pragma omp parallel num_threads(nt)
  {
    T* panel = scratch.slice(omp_get_thread_num());
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      const auto [kb, pb, grp, n] = image_block_task(task, nkb, npb, g.G);
      const int64_t pix0 = pb * nc, npix = std::min(nc, g.PQ - pix0);
      const int64_t pn0 = kb * pans_per_kb, pn1 = std::min(npan, pn0 + pans_per_kb);
      const T* xg = x + (n * g.C + grp * g.Cg) * g.HW;
      T* yg = y + (n * g.K + grp * g.Kg) * g.PQ;
      const int64_t nst = ceil_div(npix, nr);
      for (int64_t k0 = 0; k0 < g.CRS; k0 += KC) {
        const int64_t kc = std::min(KC, g.CRS - k0);
        pack_im2col(g, xg, k0, kc, pix0, npix, nr, panel);
        const bool acc = k0 > 0;
        for (int64_t st = 0; st < nst; ++st) {
          const int64_t j0 = pix0 + st * nr;
          const int nv = int(std::min<int64_t>(nr, g.PQ - j0));
          const T* bs = panel + st * kc * nr;
          for (int64_t pn = pn0; pn < pn1; ++pn) {
            const int64_t m0 = pn * mr;
            const int mv = int(std::min<int64_t>(mr, g.Kg - m0));
            const T* ap = wpack + ((grp * npan + pn) * g.CRS + k0) * mr;
            const T* bias = (!acc && b) ? b + grp * g.Kg + m0 : nullptr;
            tk.fn(kc, ap, mr, bs, yg + m0 * g.PQ + j0, g.PQ, mv, nv, acc, bias);
          }
        }
      }
    }
  }
}

// ---- backward data -----------------------------------------------------------

// gx_c[oh*sh - ph + r*dh][ow*sw - pw + s*dw] += in[t] for the output pixels
// pix0 + t, t < npix, inside the input (the adjoint of im2col_row).
template <typename T>
inline void col2im_row(const Geo& g, T* gxc, int64_t r, int64_t s, int64_t pix0, int64_t npix,
                       const T* in) {
  int64_t oh = pix0 / g.Q, ow = pix0 % g.Q, t = 0;
  const int64_t roff = r * g.dh - g.ph, soff = s * g.dw - g.pw;
  while (t < npix) {
    const int64_t len = std::min(g.Q - ow, npix - t);
    const int64_t ih = oh * g.sh + roff;
    if (ih >= 0 && ih < g.H) {
      T* xr = gxc + ih * g.W;
      const T* src = in + t;
      const int64_t iw0 = ow * g.sw + soff;
      if (g.sw == 1) {
        const int64_t lo = std::clamp<int64_t>(-iw0, 0, len);
        const int64_t hi = std::clamp<int64_t>(g.W - iw0, lo, len);
        T* d = xr + iw0;
        for (int64_t i = lo; i < hi; ++i) d[i] += src[i];
      } else {
        for (int64_t i = 0; i < len; ++i) {
          const int64_t iw = iw0 + i * g.sw;
          if (iw >= 0 && iw < g.W) xr[iw] += src[i];
        }
      }
    }
    t += len;
    ow = 0;
    ++oh;
  }
}

// col2im_row for unpadded layers at stride 1, dilation 1 (AlexNet / ZFNet
// conv2-5): every tap lands inside the input, so output row oh adds to input
// row oh + r from column s on, with no clipping; the runs are short (Q = 5 to
// 23), so the per-run work is what counts.
template <typename T>
inline void col2im_row_valid(const Geo& g, T* gxc, int64_t r, int64_t s, int64_t pix0, int64_t npix,
                             const T* in) {
  int64_t oh = pix0 / g.Q, ow = pix0 % g.Q;
  while (npix > 0) {
    const int64_t len = std::min(g.Q - ow, npix);
    T* __restrict d = gxc + (oh + r) * g.W + s + ow;
    const T* __restrict src = in;
    for (int64_t i = 0; i < len; ++i) d[i] += src[i];
    in += len;
    npix -= len;
    ow = 0;
    ++oh;
  }
}

// A piece of one image in a block of flat pixels: gx offset of its (n, group)
// planes, first pixel, length, and position t in the block.
struct Col2imSegment {
  int64_t plane0, pix, len, t;
};

// Images per col2im block: the count (up to 2 pixel blocks' worth of pixels)
// whose flat pixels fill their NR strips best, so that a 5x5 map is not
// computed as 48 columns. Larger maps: up to 4 images where that computes
// over 5% fewer columns than one: a 23x23 map (529 pixels, 11 strips and 1
// pixel) as 4 images, not 4 x 576 columns: AlexNet / ZFNet conv2's data
// gradients 1.03-1.05x. (Smaller gains did not pay for the fewer tasks:
// ResNet's stride-2 layers on 28x28, 784 pixels, even to 0.97x.)
int64_t col2im_images_per_block(const Geo& g, int nr) {
  auto eff = [&](int64_t ni) { return double(ni * g.PQ) / double(round_up(ni * g.PQ, nr)); };
  int64_t best = 1;
  if (g.PQ >= kPixelBlockTarget) {
    for (int64_t ni = 2; ni <= std::min<int64_t>(g.N, 4); ++ni)
      if (eff(ni) > eff(best) * 1.0001) best = ni;
    return eff(best) > 1.05 * eff(1) ? best : 1;
  }
  for (int64_t ni = 2; ni <= g.N && ni * g.PQ <= 2 * kPixelBlockTarget; ++ni)
    if (eff(ni) > eff(best) * 1.0001) best = ni;
  return best;
}

// gx = col2im(W^T gy): per task (block of whole images, group, block of input
// channels) the thread computes gcol rows [c0 RS, c1 RS) for a block of flat
// output pixels f = (n - n0) PQ + pix and scatters them into gx[n0..n1)[c0..c1),
// which no other task touches. No padding taps are computed (unlike the
// rotated forward pass), at the price of the scatter.
template <typename T>
void fast_backward_data_col2im(const Geo& g, const T* gy, const T* w, T* gx, int nt) {
  const GemmTile<T>& tk = gemm_tile<T>();
  const int mr = tk.mr, nr = tk.nr;
  const int64_t nimg = col2im_images_per_block(g, nr);
  const int64_t nib = ceil_div(g.N, nimg);
  // Channel blocks: about 192 gcol rows, more blocks when tasks are few.
  int64_t cb = std::clamp<int64_t>(192 / g.RS, 1, g.Cg);
  if (nib * g.G * ceil_div(g.Cg, cb) < 4 * nt)
    cb = std::max<int64_t>(1, ceil_div(g.Cg, ceil_div(4 * nt, nib * g.G)));
  const int64_t ncb = ceil_div(g.Cg, cb);
  const int64_t rows_max = cb * g.RS, pans_max = ceil_div(rows_max, mr);

  // W^T packed per (group, channel block, panel of MR gcol rows): [k][MR],
  // rows past the block zero. A block of 64 rows of w at a time (read along
  // the rows, cached while each panel takes its MR columns of them): row by
  // row with every element written to another panel, this was 10% of ZFNet
  // conv5's data gradient; one element per row down the columns, CRS apart,
  // a cache and TLB miss each.
  constexpr int64_t kPackRows = 64;
  const std::unique_ptr<T[]> apack_store(new T[size_t(g.G * ncb * pans_max * g.Kg * mr)]);  // all written below
  T* const apack = apack_store.get();
#pragma omp parallel for num_threads(nt) schedule(static) if (g.K * g.CRS > kSerialBelow)
  for (int64_t gc = 0; gc < g.G * ncb; ++gc) {
    const int64_t grp = gc / ncb, cbi = gc % ncb;
    const int64_t m_begin = cbi * cb * g.RS, m_end = std::min(g.Cg, (cbi + 1) * cb) * g.RS;
    for (int64_t k0 = 0; k0 < g.Kg; k0 += kPackRows) {
      const int64_t k1 = std::min(g.Kg, k0 + kPackRows);
      for (int64_t pn = 0; pn < pans_max; ++pn) {
        const int64_t m0 = m_begin + pn * mr, mv = std::clamp<int64_t>(m_end - m0, 0, mr);
        T* d = apack + ((gc * pans_max + pn) * g.Kg + k0) * mr;
        const T* src = w + (grp * g.Kg + k0) * g.CRS + m0;
        for (int64_t k = k0; k < k1; ++k, d += mr, src += g.CRS) {
          for (int64_t i = 0; i < mv; ++i) d[i] = src[i];
          for (int64_t i = mv; i < mr; ++i) d[i] = T(0);
        }
      }
    }
  }

  // Flat pixels of a block of images; one image's pixels in blocks of nc.
  const int64_t flat = nimg * g.PQ;
  const int64_t nc = std::min(round_up(flat, nr), round_up(kPixelBlockTarget, nr));
  const int64_t KC = kKC<T>;
  // A task: a block of images, a group and a run of channel blocks (as few
  // runs as give 4 tasks per thread). The gy strips of a pixel block are
  // packed once, for all k, and serve every channel block of the run. One
  // task per channel block packed them once per block (ZFNet conv3's 13
  // blocks: the copies 8% of its time, 2% now, though the tile took the
  // difference there); ZFNet conv4 / conv5 and AlexNet conv2 1.07-1.08x,
  // ZFNet conv3 and AlexNet conv4 even.
  const int64_t runs = std::min(ncb, ceil_div(4 * nt, nib * g.G));
  const int64_t cbs_per_run = ceil_div(ncb, runs), nruns = ceil_div(ncb, cbs_per_run);
  Scratch<T> scratch(g.Kg * nc + pans_max * mr * nc, nt);
  const int64_t ntasks = nib * g.G * nruns;
  const bool valid_s1 = g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.ph == 0 && g.pw == 0;

#pragma omp parallel num_threads(nt)
  {
    T* panel = scratch.slice(omp_get_thread_num());  // k block k0 at panel + k0 nc: kc x NR strips
    T* gcol = panel + g.Kg * nc;
    std::vector<Col2imSegment> segs;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      const int64_t run = task % nruns, grp = (task / nruns) % g.G, ib = task / (nruns * g.G);
      const int64_t n0 = ib * nimg, n1 = std::min(g.N, n0 + nimg);
      const int64_t cb0 = run * cbs_per_run, cb1 = std::min(ncb, cb0 + cbs_per_run);
      const int64_t cr0 = cb0 * cb, cr1 = std::min(g.Cg, cb1 * cb);  // the run's channels
      const int64_t nflat = (n1 - n0) * g.PQ;
      for (int64_t n = n0; n < n1; ++n)
        std::memset(gx + (n * g.C + grp * g.Cg + cr0) * g.HW, 0, size_t((cr1 - cr0) * g.HW) * sizeof(T));
      for (int64_t f0 = 0; f0 < nflat; f0 += nc) {
        const int64_t nf = std::min(nc, nflat - f0), nst = ceil_div(nf, nr);
        for (int64_t k0 = 0; k0 < g.Kg; k0 += KC) {
          const int64_t kc = std::min(KC, g.Kg - k0);
          for (int64_t st = 0; st < nst; ++st) {  // gy rows -> strips, per image segment
            const int64_t j0 = f0 + st * nr, nv = std::min<int64_t>(nr, nflat - j0);
            T* d = panel + k0 * nc + st * kc * nr;
            for (int64_t j = 0; j < nv;) {
              const int64_t n = n0 + (j0 + j) / g.PQ, pix = (j0 + j) % g.PQ;
              const int64_t seg = std::min(g.PQ - pix, nv - j);
              const T* src = gy + (n * g.K + grp * g.Kg + k0) * g.PQ + pix;
              for (int64_t kk = 0; kk < kc; ++kk)
                std::memcpy(d + kk * nr + j, src + kk * g.PQ, size_t(seg) * sizeof(T));
              j += seg;
            }
            if (nv < nr)
              for (int64_t kk = 0; kk < kc; ++kk)
                std::memset(d + kk * nr + nv, 0, size_t(nr - nv) * sizeof(T));
          }
        }
        // the block's pieces of images, the same for every gcol row
        segs.clear();
        for (int64_t t = 0; t < nf;) {
          const int64_t n = n0 + (f0 + t) / g.PQ, pix = (f0 + t) % g.PQ;
          const int64_t seg = std::min(g.PQ - pix, nf - t);
          segs.push_back({(n * g.C + grp * g.Cg) * g.HW, pix, seg, t});
          t += seg;
        }
        for (int64_t cbi = cb0; cbi < cb1; ++cbi) {
          const int64_t c0 = cbi * cb, c1 = std::min(g.Cg, c0 + cb);
          const int64_t rows = (c1 - c0) * g.RS, npn = ceil_div(rows, mr);
          const T* ap0 = apack + ((grp * ncb + cbi) * pans_max) * g.Kg * mr;
          for (int64_t k0 = 0; k0 < g.Kg; k0 += KC) {
            const int64_t kc = std::min(KC, g.Kg - k0);
            for (int64_t st = 0; st < nst; ++st) {
              const int nv = int(std::min<int64_t>(nr, nf - st * nr));
              for (int64_t pn = 0; pn < npn; ++pn) {
                const int mv = int(std::min<int64_t>(mr, rows - pn * mr));
                tk.fn(kc, ap0 + (pn * g.Kg + k0) * mr, mr, panel + k0 * nc + st * kc * nr,
                      gcol + pn * mr * nc + st * nr, nc, mv, nv, k0 > 0, nullptr);
              }
            }
          }
          for (int64_t m = 0, c = c0, r = 0, s = 0; m < rows; ++m) {
            for (const Col2imSegment& sg : segs) {
              T* gxc = gx + sg.plane0 + c * g.HW;
              if (valid_s1) col2im_row_valid(g, gxc, r, s, sg.pix, sg.len, gcol + m * nc + sg.t);
              else col2im_row(g, gxc, r, s, sg.pix, sg.len, gcol + m * nc + sg.t);
            }
            if (++s == g.S) { s = 0; if (++r == g.R) { r = 0; ++c; } }
          }
        }
      }
    }
  }
}

// Number of (output position, tap) pairs along one dimension whose input
// position lies inside [0, size): the taps a convolution really uses.
int64_t taps_inside(int64_t size, int64_t out, int64_t taps, int64_t stride, int64_t pad, int64_t dil) {
  int64_t n = 0;
  for (int64_t o = 0; o < out; ++o)
    for (int64_t r = 0; r < taps; ++r) {
      const int64_t i = o * stride - pad + r * dil;
      n += i >= 0 && i < size;
    }
  return n;
}

// Stride-1 backward-data runs as a rotated forward pass when at least this
// share of its taps land inside gy, else col2im (measured here: col2im wins
// on the unpadded 3x3 layers of AlexNet / ZFNet, 45-67% useful, by 1.4-1.9x;
// the rotated pass on ResNet's padded 3x3, 84-94% useful, by 1.1-1.5x) ...
constexpr double kRotatedMinUseful = 0.75;
// ... unless the rotated pass runs on lanes (which skip the padding taps) and
// its reduction Kg R S is at most kRotatedLanesMaxCRS long, or the layer's
// input map at most kRotatedLanesMaxMap pixels: AlexNet conv3-5 (3456, 2304;
// 11x11 to 7x7) 1.05-1.25x over col2im; ZFNet conv3-5 (4608, 9216; 11x11 to
// 7x7) 1.02-1.11x since the lanes' image blocks are chosen by their tile
// rows and border-class weights prefetched (before, 0.9-1.0x); AlexNet conv2
// (6400; 27x27) 0.93x.
constexpr int64_t kRotatedLanesMaxCRS = 4096;
constexpr int64_t kRotatedLanesMaxMap = 16 * 16;

// gx for stride 1: a forward conv of gy with w transposed per group and
// rotated by 180 degrees: wr[g Cg + c][k][r][s] = w[g Kg + k][c][R-1-r][S-1-s].
// The forward pass that computes gx of a stride-1 layer: over gy, channels
// swapped, padding dil (R-1) - pad.
Geo rotated_geo(const Geo& g) {
  Geo t = g;
  t.C = g.K; t.H = g.P; t.W = g.Q;
  t.K = g.C; t.P = g.H; t.Q = g.W;
  t.sh = t.sw = 1;
  t.ph = g.dh * (g.R - 1) - g.ph;
  t.pw = g.dw * (g.S - 1) - g.pw;
  t.Cg = g.Kg; t.Kg = g.Cg;
  t.CRS = t.Cg * t.RS; t.HW = t.H * t.W; t.PQ = t.P * t.Q;
  return t;
}

template <typename T>
void fast_backward_data_rotated(const Geo& g, const T* gy, const T* w, T* gx, int nt) {
  const Geo rg = rotated_geo(g);
  if (rg.K > 0 && rg.PQ > 0 && rg.CRS > 0 && forward_lanes_chosen<T>(rg)) {  // rotates w as it lays it out
    fast_forward_lanes(rg, gy, w, static_cast<const T*>(nullptr), gx, nt, &g);
    return;
  }
  // wr[ci][k][r][s] = w[k][ci][R-1-r][S-1-s] per group: w read in order,
  // written in runs of R S (not gathered across the rows of w); 1x1 layers
  // by the vector transpose, 64 rows of w per piece (element by element,
  // writes Kg apart: the bottleneck 256 -> 1024 / 1024 -> 256 and GoogLeNet
  // 4a 480 -> 192 data gradients were 1.09x / 1.04x / 1.09x slower)
  const std::unique_ptr<T[]> wr(new T[size_t(g.K * g.CRS)]);  // every element written below
  if (g.RS == 1) {
    const TransposeFn<T> transpose = gemm_tile<T>().transpose;
    const int64_t pieces = ceil_div(g.Kg, int64_t(64));
#pragma omp parallel for num_threads(nt) schedule(static) if (g.K * g.CRS > kSerialBelow)
    for (int64_t gp = 0; gp < g.G * pieces; ++gp) {
      const int64_t grp = gp / pieces, k0 = gp % pieces * 64, kn = std::min<int64_t>(64, g.Kg - k0);
      transpose(w + (grp * g.Kg + k0) * g.Cg, g.Cg, int(kn), g.Cg, wr.get() + grp * g.Cg * g.Kg + k0, g.Kg);
    }
  } else {
#pragma omp parallel for num_threads(nt) schedule(static) if (g.K * g.CRS > kSerialBelow)
    for (int64_t kk = 0; kk < g.K; ++kk) {
      const int64_t grp = kk / g.Kg, k = kk % g.Kg;
      for (int64_t c = 0; c < g.Cg; ++c) {
        const T* src = w + (kk * g.Cg + c) * g.RS;
        T* dst = wr.get() + ((grp * g.Cg + c) * g.Kg + k) * g.RS;
        for (int64_t i = 0; i < g.RS; ++i) dst[i] = src[g.RS - 1 - i];
      }
    }
  }
  fast_forward(rg, gy, wr.get(), static_cast<const T*>(nullptr), gx, nt);
}

// ---- backward weight and bias -------------------------------------------------

template <typename T>
void bias_grad(const Geo& g, const T* gy, T* gb, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t k = 0; k < g.K; ++k) {
    double acc = 0.0;
    for (int64_t n = 0; n < g.N; ++n) {
      const T* src = gy + (n * g.K + k) * g.PQ;
      for (int64_t i = 0; i < g.PQ; ++i) acc += double(src[i]);
    }
    gb[k] = T(acc);
  }
}

template <typename T> detail::DotTileFn<T> dot_fn(const detail::DotKernels& d);
template <> detail::DotTileFn<float> dot_fn<float>(const detail::DotKernels& d) { return d.sdot; }
template <> detail::DotTileFn<double> dot_fn<double>(const detail::DotKernels& d) { return d.ddot; }

// gw[k][crs] = sum_n sum_pix gy[n][k][pix] col[n][crs][pix] (+ gb fused).
// Pixels are the reduction and the vector lanes: per block of KP pixels the
// task takes its gy rows (in place when PQ is a multiple of the vector
// width L and at least KP / 2, else copied over the flat pixels
// f = (n - n_begin) PQ + pix of a chunk of images, so that small feature maps
// waste no lanes and a tile's lane reduction is paid once per KP pixels, not
// once per image: 1.5x on 8x8 maps) and im2col rows
// (x rows in place for an unpadded 1x1), all pixel-contiguous: no
// transposes. The dot micro-kernel (conv_gemm.h) sums an mr x nr tile over
// the block in vector lanes, reduces the lanes by a fixed shuffle tree and
// adds the tile to gw. Tasks: (chunk of images, group, k block, crs range).
// Every gw element is summed in an order fixed by the shape (lane = pixel mod
// L within a block, the tree, blocks in order), whatever the blocking and the
// thread count. When the tasks would be too few, the images are cut into a
// fixed number of chunks (from the shape only), each summed into its own
// buffer and added in chunk order afterwards.

// Images per chunk of the weight gradient's reduction, from the shape only
// (never the thread count): enough chunks that about 16 tasks exist when the
// (k, crs) blocks alone (fine_tasks) are fewer, at most 8.
struct ImageChunks {
  int64_t per, count;
};
ImageChunks image_chunks(const Geo& g, int64_t fine_tasks) {
  const int64_t nchunks = std::clamp<int64_t>(16 / fine_tasks, 1, std::min<int64_t>(g.N, 8));
  const int64_t per = ceil_div(g.N, nchunks);
  return {per, ceil_div(g.N, per)};
}

// Task grid of the dot and rows paths: k blocks of kb rows (panels of mr) and
// crs ranges of cr (strips of nr), split further (crs first) while there are
// fewer than two tasks per thread. Splitting changes no sum.
struct WeightTasks {
  int64_t kb, cr, nkb, ncr;
};
WeightTasks weight_tasks(const Geo& g, int64_t nch, int64_t kgp, int64_t kb0, int mr, int nr, int nt) {
  int64_t kb = kb0, cr = round_up(g.CRS, nr);
  auto ntasks_of = [&] { return nch * g.G * ceil_div(kgp, kb) * ceil_div(g.CRS, cr); };
  while (nt > 1 && ntasks_of() < 2 * nt && (cr > nr || kb > mr)) {
    if (cr / nr >= kb / mr && cr > nr) cr = round_up(ceil_div(cr, 2), nr);
    else kb = round_up(ceil_div(kb, 2), mr);
  }
  return {kb, cr, ceil_div(kgp, kb), ceil_div(g.CRS, cr)};
}

// Sum of n values in double for the fused bias gradient: 32 running sums in a
// fixed pattern (sum j takes the elements i = j mod 32, in order), added
// pairwise at the end. The sums are independent lanes, so the per-ISA clones
// convert and add them as vectors (four chains of 8 on AVX-512), with the same
// result on every ISA. The scalar chains this replaces (two or four) took about
// a cycle an element: weight + bias gradient of VGG conv2_1 68 -> 64.5 ms,
// AlexNet conv1 35.1 -> 34.0 ms, GoogLeNet 3a 5x5 2.81 -> 2.69 ms.
template <typename T>
inline double bias_sum_lanes(const T* p, int64_t n) {
  double acc[32] = {};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 32; ++j) acc[j] += double(p[i + j]);
  for (int j = 0; i < n; ++i, ++j) acc[j] += double(p[i]);
  for (int w = 16; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}

#if FC_POOL_X86_MULTI
template <typename T>
FC_POOL_TARGET_AVX512 double bias_sum_avx512(const T* p, int64_t n) { return bias_sum_lanes<T>(p, n); }
template <typename T>
FC_POOL_TARGET_AVX2 double bias_sum_avx2(const T* p, int64_t n) { return bias_sum_lanes<T>(p, n); }
#endif

template <typename T>
double bias_sum(const T* p, int64_t n) {
#if FC_POOL_X86_MULTI
  const int isa = isa_level();
  if (isa == 2) return bias_sum_avx512<T>(p, n);
  if (isa == 1) return bias_sum_avx2<T>(p, n);
#endif
  return bias_sum_lanes<T>(p, n);
}

// Sums the per-chunk partial weight gradients (chunks of images, decided by the
// shape only) in chunk order, so gw and gb do not depend on the thread count.
// With nch == 1 the tasks wrote gw directly and only gb is finished here.
template <typename T>
void reduce_image_chunks(const T* partial, const double* gbacc, int64_t nch, int64_t gw_elems, int64_t K, T* gw,
                         T* gb, int nt) {
  if (nch > 1) {
#pragma omp parallel for num_threads(nt) schedule(static) if (gw_elems * nch > kSerialBelow)
    for (int64_t i = 0; i < gw_elems; ++i) {
      T s = partial[size_t(i)];
      for (int64_t ch = 1; ch < nch; ++ch) s += partial[size_t(ch * gw_elems + i)];
      gw[i] = s;
    }
  }
  if (gb) {
    for (int64_t k = 0; k < K; ++k) {
      double s = 0.0;
      for (int64_t ch = 0; ch < nch; ++ch) s += gbacc[size_t(ch * K + k)];
      gb[k] = T(s);
    }
  }
}

template <typename T>
void fast_backward_weight_dot(const Geo& g, const T* gy, const T* x, T* gw, T* gb, int nt) {
  const detail::DotKernels& dk = detail::dot_kernels();
  const detail::DotTileFn<T> dot = dot_fn<T>(dk);
  const int mr = dk.mr, nr = dk.nr;
  const int64_t L = dk.vec_bytes / int64_t(sizeof(T));
  constexpr int64_t KP = 1024;  // pixels per block (a multiple of 16)
  constexpr int64_t ldp = KP;  // panel row stride (64-byte multiple)
  const int64_t kgp = round_up(g.Kg, mr);
  // k block: all of Kg up to 144 rows, else even pieces of ~128 (the gy panel
  // stays in L2); crs sub-block of the im2col panel: ~128 KiB.
  const int64_t kb0 = kgp <= 144 ? kgp : round_up(ceil_div(kgp, ceil_div(kgp, 128)), mr);
  const int64_t cbs = std::max<int64_t>(nr, (int64_t(128) * 1024 / (ldp * int64_t(sizeof(T)))) / nr * nr);
  // chunks from the shape only: (k, crs) blocks of 64 x 64 per group
  const auto [imgs_per_chunk, nch] = image_chunks(g, g.G * ceil_div(g.Kg, 64) * ceil_div(g.CRS, 64));
  const auto [kb, cr, nkb, ncr] = weight_tasks(g, nch, kgp, kb0, mr, nr, nt);
  const int64_t ntasks = nch * g.G * nkb * ncr;
  const bool plain_rows = plain_1x1(g);
  const bool inplace = g.PQ % L == 0 && g.PQ >= KP / 2;

  Scratch<T> scratch((kb0 + cbs) * ldp, nt);
  std::vector<T> partial;  // nch > 1: per-chunk gw
  const int64_t gw_elems = g.K * g.CRS;
  if (nch > 1) partial.resize(size_t(nch * gw_elems));
  std::vector<double> gbacc(size_t(nch * g.K), 0.0);

#pragma omp parallel num_threads(nt)
  {
    T* apan = scratch.slice(omp_get_thread_num());
    T* bpan = apan + kb0 * ldp;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      int64_t rem = task;
      const int64_t cri = rem % ncr; rem /= ncr;
      const int64_t kbi = rem % nkb; rem /= nkb;
      const int64_t grp = rem % g.G; rem /= g.G;
      const int64_t chunk = rem;
      const int64_t k_lo = kbi * kb, k_hi = std::min(g.Kg, k_lo + kb);
      const int64_t c_lo = cri * cr, c_hi = std::min(g.CRS, c_lo + cr);
      const int64_t nkv = k_hi - k_lo, nkt = ceil_div(nkv, mr);
      T* gdst = (nch > 1 ? partial.data() + chunk * gw_elems : gw) + (grp * g.Kg + k_lo) * g.CRS;
      for (int64_t k = 0; k < nkv; ++k) std::memset(gdst + k * g.CRS + c_lo, 0, size_t(c_hi - c_lo) * sizeof(T));
      double* gba = (gb && cri == 0) ? gbacc.data() + chunk * g.K + grp * g.Kg : nullptr;
      const int64_t n_begin = chunk * imgs_per_chunk, n_end = std::min(g.N, n_begin + imgs_per_chunk);
      const int64_t F = (n_end - n_begin) * g.PQ;
      // rows past k_hi / past CRS up to whole tiles stay zero
      std::memset(apan, 0, size_t(nkt * mr * ldp) * sizeof(T));
      std::memset(bpan, 0, size_t(cbs * ldp) * sizeof(T));
      const int64_t kfull = inplace ? nkv / mr * mr : 0;  // gy rows read in place
      for (int64_t f0 = 0; f0 < F;) {
        int64_t kp;
        const T* abase;  // row k_lo, row stride lda
        int64_t lda;
        const T* xblk = nullptr;  // inplace: x of the image, pixel offset pixb
        int64_t pixb = 0;
        if (inplace) {
          const int64_t n = n_begin + f0 / g.PQ;
          pixb = f0 % g.PQ;
          kp = std::min(KP, g.PQ - pixb);
          abase = gy + (n * g.K + grp * g.Kg + k_lo) * g.PQ + pixb;
          lda = g.PQ;
          for (int64_t k = kfull; k < nkv; ++k)  // rows of a partial tile: copied
            std::memcpy(apan + (k - kfull) * ldp, abase + k * g.PQ, size_t(kp) * sizeof(T));
          xblk = x + (n * g.C + grp * g.Cg) * g.HW;
        } else {
          kp = std::min(KP, F - f0);
          abase = apan;
          lda = ldp;
          int64_t t = 0, f = f0;
          while (t < kp) {  // segments of one image each
            const int64_t n = n_begin + f / g.PQ, pix = f % g.PQ, len = std::min(g.PQ - pix, kp - t);
            const T* gyg = gy + (n * g.K + grp * g.Kg + k_lo) * g.PQ + pix;
            for (int64_t k = 0; k < nkv; ++k)
              std::memcpy(apan + k * ldp + t, gyg + k * g.PQ, size_t(len) * sizeof(T));
            t += len;
            f += len;
          }
        }
        const int64_t kpv = round_up(kp, L), nv = kpv / L;
        if (kpv > kp)
          for (int64_t i = 0; i < nkv; ++i) std::memset(apan + i * ldp + kp, 0, size_t(kpv - kp) * sizeof(T));
        if (gba)  // fused bias sum
          for (int64_t k = 0; k < nkv; ++k) gba[k_lo + k] += bias_sum(abase + k * lda, kp);
        for (int64_t cs = c_lo; cs < c_hi; cs += cbs) {
          const int64_t ce = std::min(c_hi, cs + cbs), ncv = ce - cs, nct = ceil_div(ncv, nr);
          const T* bbase = bpan;
          int64_t ldb = ldp, cfull = 0;
          if (inplace && plain_rows) {  // x rows in place, a partial tile copied
            bbase = xblk + cs * g.HW + pixb;
            ldb = g.HW;
            cfull = ncv / nr * nr;
            for (int64_t c = cfull; c < ncv; ++c)
              std::memcpy(bpan + (c - cfull) * ldp, bbase + c * g.HW, size_t(kp) * sizeof(T));
            for (int64_t c = ncv; c < cfull + nr && c - cfull < cbs; ++c)
              if (c >= cfull) std::memset(bpan + (c - cfull) * ldp, 0, size_t(kp) * sizeof(T));
          } else if (inplace) {
            int64_t c = cs / g.RS, r = (cs / g.S) % g.R, s = cs % g.S;
            for (int64_t crs = cs; crs < ce; ++crs) {
              im2col_row_wg(g, xblk + c * g.HW, r, s, pixb, kp, bpan + (crs - cs) * ldp);
              if (++s == g.S) { s = 0; if (++r == g.R) { r = 0; ++c; } }
            }
            for (int64_t i = ncv; i < nct * nr; ++i) std::memset(bpan + i * ldp, 0, size_t(kp) * sizeof(T));
          } else {
            int64_t t = 0, f = f0;
            while (t < kp) {
              const int64_t n = n_begin + f / g.PQ, pix = f % g.PQ, len = std::min(g.PQ - pix, kp - t);
              const T* xg = x + (n * g.C + grp * g.Cg) * g.HW;
              int64_t c = cs / g.RS, r = (cs / g.S) % g.R, s = cs % g.S;
              for (int64_t crs = cs; crs < ce; ++crs) {
                T* d = bpan + (crs - cs) * ldp + t;
                if (plain_rows) std::memcpy(d, xg + crs * g.HW + pix, size_t(len) * sizeof(T));
                else im2col_row_wg(g, xg + c * g.HW, r, s, pix, len, d);
                if (++s == g.S) { s = 0; if (++r == g.R) { r = 0; ++c; } }
              }
              t += len;
              f += len;
            }
            for (int64_t i = 0; i < ncv; ++i)
              if (kpv > kp) std::memset(bpan + i * ldp + kp, 0, size_t(kpv - kp) * sizeof(T));
            for (int64_t i = ncv; i < nct * nr; ++i) std::memset(bpan + i * ldp, 0, size_t(kpv) * sizeof(T));
          }
          for (int64_t kt = 0; kt < nkt; ++kt) {
            const bool ain = kt * mr < kfull;
            const T* at = ain ? abase + kt * mr * lda : apan + (kt * mr - kfull) * ldp;
            const int64_t la = ain ? lda : ldp;
            const int mv = int(std::min<int64_t>(mr, nkv - kt * mr));
            for (int64_t ct = 0; ct < nct; ++ct) {
              const bool bin = ct * nr < cfull;
              const T* bt = bin ? bbase + ct * nr * ldb : bpan + (ct * nr - cfull) * ldp;
              const int nvv = int(std::min<int64_t>(nr, ncv - ct * nr));
              dot(nv, at, la, bt, bin ? ldb : ldp, gdst + kt * mr * g.CRS + cs + ct * nr, g.CRS, mv, nvv);
            }
          }
        }
        f0 += kp;
      }
    }
  }
  reduce_image_chunks(partial.data(), gbacc.data(), nch, gw_elems, g.K, gw, gb, nt);
}
// Weight gradient without im2col, for padded, strided or dilated layers whose
// output rows fill their vectors (Q near a multiple of L). A block of output
// rows (or of whole images, on small maps) at a time, the task copies its gy
// rows into a panel with a row stride Qv = Q rounded up to L (zero tails) and
// the x rows its channels need, once, into a zero-padded buffer split into
// stride phase planes (fast_forward_direct's layout): tap (c, r, s) of output
// row oh is then the contiguous run xpad + boff[crs] + oh Wv, which the
// dot-rows kernel reads in place (conv_gemm.h DotRows; the lanes of a row
// past Q are masked). im2col would write R S copies of every x element
// instead. Tasks, image chunks and the order of every sum are chosen from the
// shape only, as in fast_backward_weight_dot.
template <typename T> detail::DotRowsFn<T> dot_rows_fn(const detail::DotKernels& d);
template <> detail::DotRowsFn<float> dot_rows_fn<float>(const detail::DotKernels& d) { return d.srows; }
template <> detail::DotRowsFn<double> dot_rows_fn<double>(const detail::DotKernels& d) { return d.drows; }

// Output pixels the rows path computes per useful one (its lanes past Q), and
// the most it may waste and still be chosen over im2col (LeNet's 10-pixel
// rows, 1.6: 1.2x faster by rows; 8-pixel rows, 2: even). It is chosen for few
// output channels only: im2col's copies are shared by the Kg rows of gy, and
// from 64 output channels the im2col paths were faster here (AVX-512, 3x3:
// 16 and 32 channels 1.3-1.6x faster by rows; 64-256 channels 0.85-0.95x).
constexpr double kRowsMaxWaste = 2.0;
constexpr int64_t kRowsMaxKg = 32;
// Maps the weight gradient's channel-lane path (fast_backward_weight_lanes)
// takes. Output maps up to 64x64; up to 128x128 with at least 16 input
// channels per group (VGG conv2_1, 64 channels on 112x112: 1.07x over dot;
// with 3 channels ResNet's stem, 112x112, was 1.12x slower by lanes and VGG
// conv1_1, 224x224, 1.7x). Input maps over 64x64: with 64-byte vectors, yes
// (AlexNet / ZFNet conv1, 3 channels 227x227 -> 55x55 at stride 4: 1.37x /
// 1.25x over dot; 16-64 channels 112x112 or 128x128 -> half size at stride
// 2: 1.15-1.34x); with 32-byte vectors only for few input channels: there
// the stride-2 layers of 16-64 channels were 1.04-1.2x slower by lanes, the
// two conv1 layers 1.2-1.3x faster.
constexpr int64_t kLanesMaxMap = 4096;
constexpr int64_t kLanes1x1MaxMap = 1024;
bool lanes_maps_ok(const Geo& g, int vec_bytes) {
  const bool out_ok = g.PQ <= kLanesMaxMap || (g.PQ <= 4 * kLanesMaxMap && g.Cg >= 16);
  const bool in_ok = g.HW <= kLanesMaxMap || vec_bytes >= 64 || (vec_bytes == 32 && g.Cg <= 4);
  return out_ok && in_ok;
}
double rows_waste(const Geo& g, int64_t L) { return double(round_up(g.Q, L)) / double(g.Q); }

template <typename T>
void fast_backward_weight_rows(const Geo& g, const T* gy, const T* x, T* gw, T* gb, int nt) {
  const detail::DotKernels& dk = detail::dot_kernels();
  const detail::DotRowsFn<T> rows = dot_rows_fn<T>(dk);
  const int mr = dk.mr, nr = dk.nr;
  const int64_t L = dk.vec_bytes / int64_t(sizeof(T));
  constexpr int64_t kBlockPixels = 1024;  // computed pixels per block (measured: 512 and 2048 are slower)
  const int64_t Qv = round_up(g.Q, L);
  const int64_t Wv = direct_wv(g);
  const int64_t row_reach = (g.dh * (g.R - 1)) / g.sh;
  const int64_t nph = g.sh * g.sw;
  // block: ob output rows of one image, or nbi whole images on small maps
  const int64_t ob = std::clamp<int64_t>(kBlockPixels / Qv, 1, g.P);
  const int64_t nbi_max = ob == g.P ? std::max<int64_t>(1, kBlockPixels / (g.P * Qv)) : 1;
  const int64_t rin = ob + row_reach;       // rows of each phase plane
  const int64_t ps = rin * Wv;              // phase plane stride
  const int64_t kgp = round_up(g.Kg, mr);
  const int64_t kb0 = kgp <= 144 ? kgp : round_up(ceil_div(kgp, ceil_div(kgp, 128)), mr);
  const auto [imgs_per_chunk, nch] = image_chunks(g, g.G * ceil_div(g.Kg, 64) * ceil_div(g.CRS, 64));
  const int64_t nbi = std::min(nbi_max, imgs_per_chunk);
  const int64_t is = nph * ps;              // image stride in xpad
  const int64_t cs = nbi * is;              // channel stride in xpad
  // crs sub-ranges whose channels fit ~512 KiB of xpad, whole tiles of nr
  const int64_t chans_fit = std::max<int64_t>(1, (int64_t(512) << 10) / (cs * int64_t(sizeof(T))));
  const int64_t sub_crs = std::max<int64_t>(nr, (chans_fit * g.RS) / nr * nr);
  const int64_t sub_chans = ceil_div(sub_crs, g.RS) + 1;  // a sub-range may start inside a channel
  const auto [kb, cr, nkb, ncr] = weight_tasks(g, nch, kgp, kb0, mr, nr, nt);
  const int64_t ntasks = nch * g.G * nkb * ncr;

  // offsets of the taps in a channel's planes (phase, row, column)
  std::vector<int64_t> tap(size_t(g.RS));
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s)
      tap[size_t(r * g.S + s)] = (((r * g.dh) % g.sh) * g.sw + (s * g.dw) % g.sw) * ps +
                                 ((r * g.dh) / g.sh) * Wv + (s * g.dw) / g.sw;
  std::vector<char> phase_used(size_t(nph), 0);
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s) phase_used[size_t(((r * g.dh) % g.sh) * g.sw + (s * g.dw) % g.sw)] = 1;

  const int64_t apan_elems = kb * nbi * ob * Qv;
  const int64_t xpad_elems = round_up(std::min(sub_chans, g.Cg) * cs + Qv + 2 * L, 16);
  Scratch<T> scratch(apan_elems + xpad_elems, nt);
  std::vector<T> partial;
  const int64_t gw_elems = g.K * g.CRS;
  if (nch > 1) partial.resize(size_t(nch * gw_elems));
  std::vector<double> gbacc(size_t(nch * g.K), 0.0);

#pragma omp parallel num_threads(nt)
  {
    T* apan = scratch.slice(omp_get_thread_num());
    T* xpad = apan + apan_elems;
    std::memset(xpad, 0, size_t(xpad_elems) * sizeof(T));  // the slack past the planes stays finite
    std::vector<int64_t> boff(size_t(cr + nr));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      int64_t rem = task;
      const int64_t cri = rem % ncr; rem /= ncr;
      const int64_t kbi = rem % nkb; rem /= nkb;
      const int64_t grp = rem % g.G; rem /= g.G;
      const int64_t chunk = rem;
      const int64_t k_lo = kbi * kb, k_hi = std::min(g.Kg, k_lo + kb);
      const int64_t c_lo = cri * cr, c_hi = std::min(g.CRS, c_lo + cr);
      const int64_t nkv = k_hi - k_lo, nkt = ceil_div(nkv, mr);
      T* gdst = (nch > 1 ? partial.data() + chunk * gw_elems : gw) + (grp * g.Kg + k_lo) * g.CRS;
      for (int64_t k = 0; k < nkv; ++k) std::memset(gdst + k * g.CRS + c_lo, 0, size_t(c_hi - c_lo) * sizeof(T));
      double* gba = (gb && cri == 0) ? gbacc.data() + chunk * g.K + grp * g.Kg : nullptr;
      const int64_t n_begin = chunk * imgs_per_chunk, n_end = std::min(g.N, n_begin + imgs_per_chunk);
      for (int64_t n0 = n_begin; n0 < n_end; n0 += nbi) {
        const int64_t ni = std::min(nbi, n_end - n0);
        for (int64_t oh0 = 0; oh0 < g.P; oh0 += ob) {
          const int64_t nrows = std::min(ob, g.P - oh0);
          const int64_t a_img = nrows * Qv, lda = ni * a_img;
          // A: gy rows of the block, row stride Qv, zeros past Q and past k_hi
          for (int64_t k = 0; k < nkt * mr; ++k)
            for (int64_t i = 0; i < ni; ++i) {
              T* d = apan + k * lda + i * a_img;
              if (k >= nkv) { std::memset(d, 0, size_t(a_img) * sizeof(T)); continue; }
              const T* src = gy + ((n0 + i) * g.K + grp * g.Kg + k_lo + k) * g.PQ + oh0 * g.Q;
              for (int64_t oh = 0; oh < nrows; ++oh) {
                std::memcpy(d + oh * Qv, src + oh * g.Q, size_t(g.Q) * sizeof(T));
                std::memset(d + oh * Qv + g.Q, 0, size_t(Qv - g.Q) * sizeof(T));
              }
              if (gba) gba[k_lo + k] += bias_sum(src, nrows * g.Q);  // fused bias sum
            }
          for (int64_t cs0 = c_lo; cs0 < c_hi; cs0 += sub_crs) {
            const int64_t ce = std::min(c_hi, cs0 + sub_crs), ncv = ce - cs0, nct = ceil_div(ncv, nr);
            const int64_t ch0 = cs0 / g.RS, ch1 = (ce - 1) / g.RS + 1;
            // x rows of channels [ch0, ch1) for the block's rows, per phase plane
            for (int64_t c = ch0; c < ch1; ++c)
              for (int64_t i = 0; i < ni; ++i) {
                const T* xc = x + ((n0 + i) * g.C + grp * g.Cg + c) * g.HW;
                for (int64_t a = 0; a < g.sh; ++a)
                  for (int64_t bb = 0; bb < g.sw; ++bb) {
                    if (!phase_used[size_t(a * g.sw + bb)]) continue;
                    T* dp = xpad + (c - ch0) * cs + i * is + (a * g.sw + bb) * ps;
                    for (int64_t vr = 0; vr < nrows + row_reach; ++vr) {
                      const int64_t ih = (oh0 + vr) * g.sh + a - g.ph;
                      T* d = dp + vr * Wv;
                      if (ih < 0 || ih >= g.H) std::memset(d, 0, size_t(Wv) * sizeof(T));
                      else copy_run(d, xc + ih * g.W, bb - g.pw, Wv, g.sw, g.W);
                    }
                  }
              }
            for (int64_t j = 0; j < nct * nr; ++j) {  // rows past ce repeat the first (finite, discarded)
              const int64_t crs = cs0 + (j < ncv ? j : 0);
              boff[size_t(j)] = (crs / g.RS - ch0) * cs + tap[size_t(crs % g.RS)];
            }
            const detail::DotRows dr{ni, a_img, is, nrows, Qv, Wv, g.Q / L, int(g.Q % L)};
            for (int64_t kt = 0; kt < nkt; ++kt) {
              const int mv = int(std::min<int64_t>(mr, nkv - kt * mr));
              for (int64_t ct = 0; ct < nct; ++ct)
                rows(dr, apan + kt * mr * lda, lda, xpad, boff.data() + ct * nr,
                     gdst + kt * mr * g.CRS + cs0 + ct * nr, g.CRS, mv, int(std::min<int64_t>(nr, ncv - ct * nr)));
            }
          }
        }
      }
    }
  }
  reduce_image_chunks(partial.data(), gbacc.data(), nch, gw_elems, g.K, gw, gb, nt);
}

// Weight gradient by channel lanes: the forward's lane tile with pixels and
// reduction indices swapped. gw^T[crs][k] = sum_pix x[window of pix at crs] *
// gy[k][pix]: output channels k are the lanes (gy transposed per image into
// [pixel][KW] panels), the MP rows of a tile are MP reduction indices
// (c, r, s) whose x values are broadcast from xpad + boff[crs] + pixoff[pix],
// and the sum over the task's pixels stays in registers (no lane reduction).
// Each gw element is one chain over its images and pixels in order; tasks and
// image chunks come from the shape only, as in the dot path. Returns false
// (nothing written) where the forward's lane path would.
template <typename T>
bool fast_backward_weight_lanes(const Geo& g, const T* gy, const T* x, T* gw, T* gb, int nt) {
  // (the one-vector tile too: LeNet conv2 1.6x, 16-channel 14x14 maps 1.2x)
  const std::vector<LanePanel> plan = lane_panels<T>(g, true);
  if (plan.empty() || g.ph < 0 || g.pw < 0) return false;
  const int64_t npan = int64_t(plan.size());
  int64_t mp_max = 0, kw_max = 0;
  for (const LanePanel& pn : plan) {
    mp_max = std::max<int64_t>(mp_max, pn.tile->mp);
    kw_max = std::max(kw_max, pn.kw);
  }
  const bool padded = g.ph > 0 || g.pw > 0;
  const int64_t Hp = padded ? g.H + 2 * g.ph : g.H, Wp = padded ? g.W + 2 * g.pw : g.W;
  const int64_t plane = Hp * Wp;
  if (padded && g.Cg * plane * int64_t(sizeof(T)) > kLanesWgradImageMax) return false;
  constexpr int64_t kPixBlock = 128;  // pixels per block: the gy panel slice (32 KiB) stays in L1
  // chunks of images from the shape only (as in the dot path)
  const auto [imgs_per_chunk, nch] = image_chunks(g, g.G * npan * ceil_div(g.CRS, 64));
  // A task: a chunk of images, a group, a group of channel panels and a crs
  // range. crs ranges: halved while the tasks are fewer than two per thread,
  // or while handing them out in order leaves the busiest thread over 1/16
  // above an even share. Otherwise a thread idles: GoogLeNet 4a's 3x3, 208 =
  // 64 + 64 + 64 + 16 channels in 4 tasks, 128 + 80 on 2 threads (split:
  // 9.7 -> 8.2 ms); LeNet conv2, 5 equal tasks (0.30 -> 0.21 ms). Splitting
  // crs changes no sum.
  auto split_crs = [&](int64_t pans_per) {
    const int64_t npg = ceil_div(npan, pans_per);
    auto imbalance = [&](int64_t cr) {
      std::vector<double> cost;
      for (int64_t ch = 0; ch < nch; ++ch)
        for (int64_t grp = 0; grp < g.G; ++grp)
          for (int64_t pg = 0; pg < npg; ++pg) {
            int64_t kw = 0;
            for (int64_t p = pg * pans_per; p < std::min(npan, (pg + 1) * pans_per); ++p) kw += plan[size_t(p)].kw;
            for (int64_t c0 = 0; c0 < g.CRS; c0 += cr)
              cost.push_back(double(std::min(imgs_per_chunk, g.N - ch * imgs_per_chunk)) * double(kw) *
                             double(std::min(cr, g.CRS - c0)));
          }
      return busiest_over_even(cost, nt);
    };
    int64_t cr = round_up(g.CRS, mp_max);
    while (nt > 1 && cr > mp_max && (nch * g.G * npg * ceil_div(g.CRS, cr) < 2 * nt || imbalance(cr) > 1.0625))
      cr = round_up(ceil_div(cr, 2), mp_max);
    return cr;
  };
  // Panels per task: one, or all of them, whichever moves fewer elements per
  // image: each task copies its x channels padded once (if padded), and
  // transposes gy for its panels once; so all panels in a task copy x once,
  // while one per task needs fewer crs ranges, i.e. fewer transposes of gy
  // (ResNet's 256-channel 3x3 on 14x14, 4 panels: all, 1.025x, the copies
  // were 7% of it; VGG conv2_1 and AlexNet conv1, 2 panels on large maps:
  // one, all was 1.12-1.14x slower).
  auto moved = [&](int64_t pans_per) {
    return double(padded ? ceil_div(npan, pans_per) * g.Cg * plane : 0) +
           double(ceil_div(g.CRS, split_crs(pans_per))) * double(g.Kg * g.PQ);
  };
  // 1x1 layers whose x is at least twice gy (GoogLeNet's reductions,
  // ResNet's 1024 -> 256 bottleneck and its 1x1 stride-2 downsampling): one
  // panel per task streamed the task's x once per panel from beyond L2. All
  // panels share a task, and each block of pixels runs every panel on it
  // while its x is in cache (measured on a 2-core AVX2 EPYC, interleaved
  // medians: 1024 -> 256 1.26x, 480 -> 96 / 192 / 64 1.26x / 1.07x / 1.31x,
  // 192 -> 32 / 64 1.13x / 1.02x, 64 -> 128 stride 2 1.22x, and 192 -> 96
  // on 28x28, at exactly twice, 0.95x. Left out: 256 -> 1024, where gy
  // outweighs x, 0.85x; 3x3 layers 0.87-0.98x).
  const bool x_shared = g.RS == 1 && npan > 1 && g.Cg * g.HW >= 2 * g.Kg * g.PQ;
  const int64_t pans_per = npan > 1 && (x_shared || moved(npan) < moved(1)) ? npan : 1;
  const int64_t npg = ceil_div(npan, pans_per), cr = split_crs(pans_per);
  const int64_t ncr = ceil_div(g.CRS, cr);
  const int64_t ntasks = nch * g.G * npg * ncr;
  // each panel's rows of C in a task: its crs range rounded up to its tile
  // height (the last tile may run past the range), a group's panels one
  // after another
  std::vector<int64_t> cbuf_off(size_t(npan + 1), 0);
  int64_t cbuf_elems = 0;
  for (int64_t p = 0; p < npan; ++p) {
    const int64_t first = p - p % pans_per;
    cbuf_off[size_t(p + 1)] = cbuf_off[size_t(p)] + round_up(cr, plan[size_t(p)].tile->mp) * plan[size_t(p)].kw;
    cbuf_elems = std::max(cbuf_elems, cbuf_off[size_t(p + 1)] - cbuf_off[size_t(first)]);
  }

  std::vector<int64_t> tap(size_t(g.CRS)), pixoff(size_t(g.PQ));
  for (int64_t c = 0, i = 0; c < g.Cg; ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) tap[size_t(i++)] = c * plane + r * g.dh * Wp + s * g.dw;
  for (int64_t pix = 0; pix < g.PQ; ++pix) pixoff[size_t(pix)] = (pix / g.Q) * g.sh * Wp + (pix % g.Q) * g.sw;

  // images per kernel call: ~1024 pixels, padded copies within kLanesImageMax
  // (VGG conv4_2's two images: 1.05x over one; an image over it goes alone)
  const int64_t img_elems = padded ? round_up(g.Cg * plane, 16) : 0;  // keeps the gy panel 64-byte aligned
  int64_t nb = std::clamp<int64_t>(ceil_div(1024, g.PQ), 1, imgs_per_chunk);
  if (padded) nb = std::clamp<int64_t>(std::min(nb, kLanesImageMax / (img_elems * int64_t(sizeof(T)))), 1, nb);
  const int64_t x_img = padded ? img_elems : g.C * g.HW;  // image stride of the broadcast source
  const GemmTile<T>& tk = gemm_tile<T>();
  // gy transposed per panel of a task, for all of them at once where x_shared
  const int64_t gyt_elems = nb * g.PQ * (pans_per == 1 ? kw_max : g.Kg);
  Scratch<T> scratch(nb * img_elems + gyt_elems + cbuf_elems, nt);
  std::vector<T> partial;
  const int64_t gw_elems = g.K * g.CRS;
  if (nch > 1) partial.resize(size_t(nch * gw_elems));
  std::vector<double> gbacc(size_t(nch * g.K), 0.0);

#pragma omp parallel num_threads(nt)
  {
    T* xpad = scratch.slice(omp_get_thread_num());
    T* gyt = xpad + nb * img_elems;
    T* cbuf = gyt + gyt_elems;
    std::vector<int64_t> pofs(size_t(nb * g.PQ));
    const T* xp[64];
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      const int64_t cri = task % ncr, pg = (task / ncr) % npg, grp = (task / (ncr * npg)) % g.G;
      const int64_t chunk = task / (ncr * npg * g.G);
      const int64_t pan0 = pg * pans_per, pan1 = std::min(npan, pan0 + pans_per);
      const int64_t c_lo = cri * cr, c_hi = std::min(g.CRS, c_lo + cr), ncv = c_hi - c_lo;
      const int64_t ch0 = c_lo / g.RS, ch1 = (c_hi - 1) / g.RS + 1;
      std::memset(cbuf, 0, size_t(cbuf_off[size_t(pan1)] - cbuf_off[size_t(pan0)]) * sizeof(T));
      const int64_t n_begin = chunk * imgs_per_chunk, n_end = std::min(g.N, n_begin + imgs_per_chunk);
      for (int64_t n0 = n_begin; n0 < n_end; n0 += nb) {
        const int64_t ni = std::min(nb, n_end - n0), nf = ni * g.PQ;
        for (int64_t i = 0; i < ni; ++i) {
          const T* xg = x + ((n0 + i) * g.C + grp * g.Cg) * g.HW;
          if (padded) copy_padded_channels(g, xg + ch0 * g.HW, ch1 - ch0, xpad + i * img_elems + ch0 * plane);
          for (int64_t pix = 0; pix < g.PQ; ++pix) pofs[size_t(i * g.PQ + pix)] = i * x_img + pixoff[size_t(pix)];
        }
        const T* xb = padded ? xpad : x + (n0 * g.C + grp * g.Cg) * g.HW;
        // panel pan's slice of gyt: its gy, [pixel][KW]
        auto gy_slice = [&](int64_t pan) { return gyt + (plan[size_t(pan)].k0 - plan[size_t(pan0)].k0) * nb * g.PQ; };
        // panel pan's tiles over pixels [p0, p0 + kPixBlock) of the block
        auto pixel_block = [&](int64_t pan, int64_t p0) {
          const LanePanel& pn = plan[size_t(pan)];
          const int64_t mp = pn.tile->mp, KW = pn.kw, np = std::min(kPixBlock, nf - p0);
          const detail::LaneTileFn<T> fn = lane_fn<T>(*pn.tile);
          T* cb = cbuf + cbuf_off[size_t(pan)] - cbuf_off[size_t(pan0)];
          const T* gyp = gy_slice(pan);
          for (int64_t t = 0; t < ncv; t += mp) {
            for (int64_t i = 0; i < mp; ++i) xp[i] = xb + tap[size_t(c_lo + (t + i < ncv ? t + i : 0))];
            fn(np, gyp + p0 * KW, nullptr, xp, pofs.data() + p0, cb + t * KW, KW, true, nullptr);
          }
        };
        for (int64_t pan = pan0; pan < pan1; ++pan) {
          const LanePanel& pn = plan[size_t(pan)];
          const int64_t KW = pn.kw, k0 = grp * g.Kg + pn.k0;
          double* gba = (gb && cri == 0) ? gbacc.data() + chunk * g.K + k0 : nullptr;
          T* gyp = gy_slice(pan);
          for (int64_t i = 0; i < ni; ++i) {
            // gy of the panel, transposed to [pixel][KW]
            const T* src = gy + ((n0 + i) * g.K + k0) * g.PQ;
            tk.transpose(src, g.PQ, int(KW), g.PQ, gyp + i * g.PQ * KW, KW);
            if (gba)  // fused bias sum
              for (int64_t kk = 0; kk < KW; ++kk) gba[kk] += bias_sum(src + kk * g.PQ, g.PQ);
          }
          if (!x_shared)  // while its gy slice is warm
            for (int64_t p0 = 0; p0 < nf; p0 += kPixBlock) pixel_block(pan, p0);
        }
        if (x_shared)  // the panels in turn on each pixel block's x
          for (int64_t p0 = 0; p0 < nf; p0 += kPixBlock)
            for (int64_t pan = pan0; pan < pan1; ++pan) pixel_block(pan, p0);
      }
      for (int64_t pan = pan0; pan < pan1; ++pan) {
        const LanePanel& pn = plan[size_t(pan)];
        const int64_t KW = pn.kw, k0 = grp * g.Kg + pn.k0;
        const T* cb = cbuf + cbuf_off[size_t(pan)] - cbuf_off[size_t(pan0)];
        T* gdst = (nch > 1 ? partial.data() + chunk * gw_elems : gw) + k0 * g.CRS + c_lo;
        tk.transpose(cb, KW, int(ncv), KW, gdst, g.CRS);
      }
    }
  }
  reduce_image_chunks(partial.data(), gbacc.data(), nch, gw_elems, g.K, gw, gb, nt);
  return true;
}

// gw[k][crs] = sum_n sum_pix gy[n][k][pix] col[n][crs][pix] (+ gb fused).
// Tasks: (reduction chunk, group, block of k panels, block of crs strips). The
// reduction over (n, pix) runs in a fixed order inside one task; when the
// (k, crs) tasks are too few to feed the threads, the images are cut into a
// fixed number of chunks (from the shape only, never from the thread count),
// each summed into its own buffer and added in chunk order afterwards.
template <typename T>
void fast_backward_weight_gemm(const Geo& g, const T* gy, const T* x, T* gw, T* gb, int nt) {
  const GemmTile<T>& tk = gemm_tile<T>();
  const int mr = tk.mr, nr = tk.nr;
  const int64_t npan = ceil_div(g.Kg, mr), nstr = ceil_div(g.CRS, nr);
  const auto [imgs_per_chunk, nch] = image_chunks(g, g.G * npan * nstr);

  // crs blocks of about 256 columns, k blocks of about 256 rows; then finer
  // while the tasks are fewer than 4 per thread.
  int64_t spb = std::clamp<int64_t>(256 / nr, 1, nstr);
  int64_t ppb = std::clamp<int64_t>(256 / mr, 1, npan);
  auto ntasks_of = [&] { return nch * g.G * ceil_div(npan, ppb) * ceil_div(nstr, spb); };
  while (nt > 1 && ntasks_of() < 2 * nt && (spb > 1 || ppb > 1)) {
    if (spb >= ppb && spb > 1) spb = ceil_div(spb, 2);
    else ppb = ceil_div(ppb, 2);
  }
  const int64_t nkb = ceil_div(npan, ppb), ncb = ceil_div(nstr, spb);
  const int64_t ntasks = nch * g.G * nkb * ncb;

  const bool plain_rows = plain_1x1(g);
  const int64_t KP = kKC<T>;  // pixels per reduction step
  const int64_t kp_max = std::min(KP, g.PQ);
  const int64_t lda = ppb * mr;
  const int64_t a_elems = round_up(lda * kp_max, 64 / int64_t(sizeof(T)));  // keep B 64-byte aligned
  Scratch<T> scratch(a_elems + spb * nr * kp_max + nr * kp_max, nt);
  std::vector<T> partial;  // nch > 1: per-chunk gw, then gb
  const int64_t gw_elems = g.K * g.CRS;
  if (nch > 1) partial.resize(size_t(nch * (gw_elems + g.K)));
  std::vector<double> gbacc(size_t(nch * g.K), 0.0);

#pragma omp parallel num_threads(nt)
  {
    T* apan = scratch.slice(omp_get_thread_num());
    T* bpan = apan + a_elems;
    T* rows = bpan + spb * nr * kp_max;
    std::memset(apan, 0, size_t(a_elems) * sizeof(T));  // columns past Kg stay zero
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      int64_t rem = task;
      const int64_t cbi = rem % ncb; rem /= ncb;
      const int64_t kbi = rem % nkb; rem /= nkb;
      const int64_t grp = rem % g.G; rem /= g.G;
      const int64_t chunk = rem;
      const int64_t pn0 = kbi * ppb, pn1 = std::min(npan, pn0 + ppb);
      const int64_t st0 = cbi * spb, st1 = std::min(nstr, st0 + spb);
      const int64_t k_lo = pn0 * mr, k_hi = std::min(g.Kg, pn1 * mr);
      T* gdst = nch > 1 ? partial.data() + chunk * gw_elems : gw;
      double* gba = (gb && cbi == 0) ? gbacc.data() + chunk * g.K + grp * g.Kg : nullptr;
      const int64_t n_begin = chunk * imgs_per_chunk, n_end = std::min(g.N, n_begin + imgs_per_chunk);
      bool first = true;
      for (int64_t n = n_begin; n < n_end; ++n) {
        const T* gyg = gy + (n * g.K + grp * g.Kg) * g.PQ;
        const T* xg = x + (n * g.C + grp * g.Cg) * g.HW;
        for (int64_t pix0 = 0; pix0 < g.PQ; pix0 += KP) {
          const int64_t kp = std::min(KP, g.PQ - pix0);
          // A: gy^T [t][k - k_lo] with row stride lda (vectorised transposing
          // copy); columns past k_hi stay zero. Fused bias sum, four partial
          // sums per channel in a fixed pattern (deterministic).
          tk.transpose(gyg + k_lo * g.PQ + pix0, g.PQ, int(k_hi - k_lo), kp, apan, lda);
          if (gba)
            for (int64_t k = k_lo; k < k_hi; ++k) gba[k] += bias_sum(gyg + k * g.PQ + pix0, kp);
          // B: col^T, strip-major [st][t][j]; zero columns past CRS. The nr
          // im2col rows of a strip go to `rows` (nr x kp), then one
          // vectorised transposing copy into the strip.
          const int64_t ih_lo = std::max<int64_t>(0, (pix0 / g.Q) * g.sh - g.ph);
          const int64_t ih_hi = std::min<int64_t>(
              g.H, ((pix0 + kp - 1) / g.Q) * g.sh - g.ph + (g.R - 1) * g.dh + 1);
          const int64_t pf_bytes = ih_hi > ih_lo ? (ih_hi - ih_lo) * g.W * int64_t(sizeof(T)) : 0;
          for (int64_t st = st0; st < st1; ++st) {
            if (plain_rows) {  // 1x1, stride 1, no padding: im2col rows are rows of x
              const int nvalid = int(std::min<int64_t>(nr, g.CRS - st * nr));
              T* d = bpan + (st - st0) * kp * nr;
              const int64_t crs1 = st * nr + nvalid + nr;
              for (int64_t crs = st * nr + nr; crs < std::min(g.CRS, crs1); ++crs) {
                const char* base = reinterpret_cast<const char*>(xg + crs * g.HW + pix0);
                for (int64_t off = 0; off < kp * int64_t(sizeof(T)); off += 64) __builtin_prefetch(base + off, 0, 3);
              }
              tk.transpose(xg + st * nr * g.HW + pix0, g.HW, nvalid, kp, d, nr);
              if (nvalid < nr)
                for (int64_t t = 0; t < kp; ++t)
                  for (int j = nvalid; j < nr; ++j) d[t * nr + j] = T(0);
              continue;
            }
            for (int j = 0; j < nr; ++j) {
              const int64_t crs = st * nr + j;
              T* rj = rows + j * kp;
              if (crs + nr < g.CRS && (crs + nr) % g.RS == 0) {  // first touch of a channel: prefetch
                const char* base = reinterpret_cast<const char*>(xg + ((crs + nr) / g.RS) * g.HW + ih_lo * g.W);
                for (int64_t off = 0; off < pf_bytes; off += 64) __builtin_prefetch(base + off, 0, 3);
              }
              if (crs < g.CRS) {
                const int64_t c = crs / g.RS, r = (crs / g.S) % g.R, s = crs % g.S;
                im2col_row(g, xg + c * g.HW, r, s, pix0, kp, rj);
              } else {
                std::memset(rj, 0, size_t(kp) * sizeof(T));
              }
            }
            tk.transpose(rows, kp, nr, kp, bpan + (st - st0) * kp * nr, nr);
          }
          for (int64_t st = st0; st < st1; ++st) {
            const int nv = int(std::min<int64_t>(nr, g.CRS - st * nr));
            for (int64_t pn = pn0; pn < pn1; ++pn) {
              const int mv = int(std::min<int64_t>(mr, g.Kg - pn * mr));
              tk.fn(kp, apan + (pn - pn0) * mr, lda, bpan + (st - st0) * kp * nr,
                    gdst + (grp * g.Kg + pn * mr) * g.CRS + st * nr, g.CRS, mv, nv, !first, nullptr);
            }
          }
          first = false;
        }
      }
    }
  }
  reduce_image_chunks(partial.data(), gbacc.data(), nch, gw_elems, g.K, gw, gb, nt);
}

// The weight gradient: the dot-product path where gy rows are read in place
// (PQ a multiple of the vector width) or all output channels of a group fit
// one k block (each im2col row is built once per pixel block); the
// transposing GEMM path otherwise (many output channels on feature maps of
// odd size, where the dot path would build the im2col rows once per k block).
// The choice depends on the shape only.
template <typename T>
void fast_backward_weight(const Geo& g, const T* gy, const T* x, T* gw, T* gb, int nt) {
  // Edge cases handled once here, so both paths can assume N, PQ, CRS >= 1.
  if (g.N == 0 || g.PQ == 0) {
    if (gw) std::memset(gw, 0, size_t(g.K * g.CRS) * sizeof(T));
    if (gb) std::memset(gb, 0, size_t(g.K) * sizeof(T));
    return;
  }
  if (g.CRS == 0) {  // no weights; only the bias gradient
    if (gb) bias_grad(g, gy, gb, nt);
    return;
  }
  const int64_t L = detail::dot_kernels().vec_bytes / int64_t(sizeof(T));
  const bool plain_rows = plain_1x1(g);
  const bool rows_ok = !plain_rows && g.Kg <= kRowsMaxKg && rows_waste(g, L) <= kRowsMaxWaste && direct_wv(g) <= 4096;
  // Channel lanes on small maps (measured here, AVX-512: 7x7-28x28 maps and
  // ResNet-20's 8x8-32x32 layers 1.0-1.6x over dot / gemm / rows, GoogLeNet
  // 3a's 5x5 on 28x28 1.3x over rows; 56x56 maps, VGG conv3_x and ResNet's
  // 64-channel 3x3 and stride-2 downsampling: 1.15-1.3x over dot). Plain
  // 1x1 layers on maps up to 32x32 too, x read in place (GoogLeNet's and
  // ResNet's bottleneck 1x1 layers on 7x7 to 28x28 maps: 1.06-1.4x over
  // gemm / dot; on 56x56 dot stays, lanes even to 0.74x).
  if ((!plain_rows || g.PQ <= kLanes1x1MaxMap) && lanes_maps_ok(g, detail::lane_kernels().vec_bytes) &&
      fast_backward_weight_lanes(g, gy, x, gw, gb, nt))
    return;
  if (rows_ok)
    fast_backward_weight_rows(g, gy, x, gw, gb, nt);
  else if (g.PQ % L == 0 || round_up(g.Kg, detail::dot_kernels().mr) <= 144)
    fast_backward_weight_dot(g, gy, x, gw, gb, nt);
  else fast_backward_weight_gemm(g, gy, x, gw, gb, nt);
}

template <typename T>
void fast_backward(const Geo& g, const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb, int nt) {
  if (gx && g.N > 0 && g.HW > 0) {
    const int mr = gemm_tile<T>().mr;
    // The rotated forward pass also multiplies the zeros of its padding: for
    // a layer without padding its padding is R - 1 on each side, and on a
    // small map most of its taps are zeros (5x5 -> 7x7 with 3x3: half).
    const double useful = double(taps_inside(g.H, g.P, g.R, g.sh, g.ph, g.dh)) *
                          double(taps_inside(g.W, g.Q, g.S, g.sw, g.pw, g.dw)) /
                          (double(g.HW) * double(g.RS));
    // With few output channels col2im's GEMM reduces over at most 2 mr of
    // them per stored column element, and is store-bound: the rotated pass,
    // whose reduction is Kg R S long, wins even on an unpadded map (LeNet
    // conv2, 6 -> 16 channels 5x5 on 14x14: 0.55 -> 0.65x of torch).
    const bool col2im_short = g.Kg <= 2 * mr && 2 * g.Cg >= mr;
    // (the lane test last: it weighs the rotated pass's blocking, needed only here)
    if (g.sh == 1 && g.sw == 1 &&
        (((g.Cg >= 2 * mr || (g.Cg >= mr && g.Cg % mr == 0)) && useful >= kRotatedMinUseful) || col2im_short ||
         ((g.Kg * g.RS <= kRotatedLanesMaxCRS || g.HW <= kRotatedLanesMaxMap) &&
          forward_lanes_chosen<T>(rotated_geo(g)))))
      fast_backward_data_rotated(g, gy, w, gx, nt);
    else
      fast_backward_data_col2im(g, gy, w, gx, nt);
  }
  if (gw) fast_backward_weight(g, gy, x, gw, gb, nt);
  else if (gb) {
    if (g.N == 0 || g.PQ == 0) std::memset(gb, 0, size_t(g.K) * sizeof(T));
    else bias_grad(g, gy, gb, nt);
  }
}

}  // namespace

// ============================================================================
// Entry points.
// ============================================================================

namespace detail {

const LaneKernels& lane_kernels() {
  static const LaneKernels* d = [] {
    const char* name = kernels().name;
    (void)name;
#ifdef FASTCONV_HAVE_ISA_avx512
    if (std::strcmp(name, "avx512") == 0) return &avx512::lane_kernels();
#endif
#ifdef FASTCONV_HAVE_ISA_avx2
    if (std::strcmp(name, "avx2") == 0) return &avx2::lane_kernels();
#endif
    return &generic::lane_kernels();
  }();
  return *d;
}

const DotKernels& dot_kernels() {
  static const DotKernels* d = [] {
    const char* name = kernels().name;
    (void)name;
#ifdef FASTCONV_HAVE_ISA_avx512
    if (std::strcmp(name, "avx512") == 0) return &avx512::dot_kernels();
#endif
#ifdef FASTCONV_HAVE_ISA_avx2
    if (std::strcmp(name, "avx2") == 0) return &avx2::dot_kernels();
#endif
    return &generic::dot_kernels();
  }();
  return *d;
}

void conv2d_fast_forward(const ConvParams& p, const ExecContext& ctx) {
  const Geo g = geo_of(p);
  const int nt = threads_of(ctx);
  if (p.dtype == DType::f64)
    fast_forward(g, static_cast<const double*>(p.x), static_cast<const double*>(p.w),
                 static_cast<const double*>(p.b), static_cast<double*>(p.y), nt);
  else
    fast_forward(g, static_cast<const float*>(p.x), static_cast<const float*>(p.w),
                 static_cast<const float*>(p.b), static_cast<float*>(p.y), nt);
}

void conv2d_fast_backward(const ConvParams& p, const ExecContext& ctx) {
  const Geo g = geo_of(p);
  const int nt = threads_of(ctx);
  if (p.dtype == DType::f64)
    fast_backward(g, static_cast<const double*>(p.gy), static_cast<const double*>(p.x),
                  static_cast<const double*>(p.w), static_cast<double*>(p.gx),
                  static_cast<double*>(p.gw), static_cast<double*>(p.gb), nt);
  else
    fast_backward(g, static_cast<const float*>(p.gy), static_cast<const float*>(p.x),
                  static_cast<const float*>(p.w), static_cast<float*>(p.gx),
                  static_cast<float*>(p.gw), static_cast<float*>(p.gb), nt);
}

}  // namespace detail

void conv2d_forward(const ConvParams& p, const ExecContext& ctx) {
  FC_CHECK(p.dtype == DType::f32 || p.dtype == DType::f64, "input",
           "the CPU conv2d supports float32 and float64 only");
  if (p.variant == Variant::reference) {
    const Geo g = geo_of(p);
    const int nt = threads_of(ctx);
    if (p.dtype == DType::f64)
      ref_forward(g, static_cast<const double*>(p.x), static_cast<const double*>(p.w),
                  static_cast<const double*>(p.b), static_cast<double*>(p.y), nt);
    else
      ref_forward(g, static_cast<const float*>(p.x), static_cast<const float*>(p.w),
                  static_cast<const float*>(p.b), static_cast<float*>(p.y), nt);
    return;
  }
  detail::conv2d_fast_forward(p, ctx);
}

void conv2d_backward(const ConvParams& p, const ExecContext& ctx) {
  FC_CHECK(p.dtype == DType::f32 || p.dtype == DType::f64, "input",
           "the CPU conv2d supports float32 and float64 only");
  if (p.variant == Variant::reference) {
    const Geo g = geo_of(p);
    const int nt = threads_of(ctx);
    if (p.dtype == DType::f64)
      ref_backward(g, static_cast<const double*>(p.gy), static_cast<const double*>(p.x),
                   static_cast<const double*>(p.w), static_cast<double*>(p.gx),
                   static_cast<double*>(p.gw), static_cast<double*>(p.gb), nt);
    else
      ref_backward(g, static_cast<const float*>(p.gy), static_cast<const float*>(p.x),
                   static_cast<const float*>(p.w), static_cast<float*>(p.gx),
                   static_cast<float*>(p.gw), static_cast<float*>(p.gb), nt);
    return;
  }
  detail::conv2d_fast_backward(p, ctx);
}

}  // namespace fastconv::cpu
