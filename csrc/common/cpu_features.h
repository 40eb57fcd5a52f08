// Run-time instruction-set detection and the dispatch table of CPU
// micro-kernels. csrc/cpu/isa/*.cpp are compiled once per ISA (avx512, avx2,
// generic; see CMakeLists.txt), each into namespace fastconv::cpu::<isa>, and
// each exports one KernelTable; kernels() returns the one chosen for this CPU.
//
// FASTCONV_ISA=generic|avx2|avx512 in the environment forces a variant (read
// once, on first use); when the CPU lacks the requested one a warning goes to
// stderr and the best supported variant below it is used.
#pragma once
#include <cstdint>

namespace fastconv::cpu {

// One register-tiled GEMM tile:  C[i][j] (+)= sum_k A[k*lda + i] * B[k*nr + j]
//   A: packed panel, kc rows of mr values, row stride lda >= mr (rows of C,
//      broadcast); rows past m_valid are read, and must be finite (zero)
//   B: packed strip, kc rows of nr values (columns of C, loaded as vectors),
//      64-byte aligned, rows padded with zeros to nr
//   C: row-major, leading dimension ldc; only the m_valid x n_valid corner is
//      read (accumulate) or written
//   accumulate == false: C = bias[i] (or 0 when bias is null) + A.B
template <typename T>
using GemmTileFn = void (*)(int64_t kc, const T* A, int64_t lda, const T* B, T* C, int64_t ldc,
                            int m_valid, int n_valid, bool accumulate, const T* bias);

// The same tile with B read in place: row k of B is B + boff[k] (nr values,
// any alignment, all nr readable even when n_valid < nr). Used by the
// stride-1 convolution on a padded copy of the input (no im2col).
template <typename T>
using GemmTileOffsFn = void (*)(int64_t kc, const T* A, const T* B, const int64_t* boff, T* C,
                                int64_t ldc, int m_valid, int n_valid, bool accumulate, const T* bias);

// The offsets tile with its columns scattered by vector: lanes l of vector
// j (columns j L + l) with bit l of vmask[j] set are stored packed, in lane
// order, from C + voff[j] (+ i ldc for row i); the others are dropped.
// Accumulating, it adds to the plain nr-wide tile cin (row stride ldcin),
// not to C. For strips that span rows with columns to skip between them.
template <typename T>
using GemmTileScatterFn = void (*)(int64_t kc, const T* A, const T* B, const int64_t* boff, const T* cin,
                                   int64_t ldcin, T* C, int64_t ldc, int m_valid, const int64_t* voff,
                                   const uint32_t* vmask, bool accumulate, const T* bias);

// The offsets tile under masks (AVX-512 only; null elsewhere): at a
// reduction step B's vector j counts only in the lanes set in
// masks[j * mld + q], q = tap for the first run0 steps, then one more every
// run steps; its other lanes add nothing, whatever they hold. With inside,
// every lane of every B vector must be readable; without, the masked-off
// lanes are not read (their addresses may lie outside any buffer), at some
// cost. A is packed kc x mr (lda = mr). For 'same'
// stride-1 convolutions read in place (no padded copy), reduction in
// (r, s, c) order: the lanes whose tap (r, s) falls in the padding are
// masked off.
template <typename T>
using GemmTileMaskedFn = void (*)(int64_t kc, const T* A, const T* B, const int64_t* boff, const uint16_t* masks,
                                  int64_t mld, int64_t tap, int64_t run0, int64_t run, bool inside, T* C,
                                  int64_t ldc, int m_valid, int n_valid, bool accumulate, const T* bias);

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols (a transposing
// copy, vectorised in square blocks of the vector width).
template <typename T>
using TransposeFn = void (*)(const T* src, int64_t lds, int rows, int64_t cols, T* dst, int64_t ldd);
// The same with the source rows picked: row r is src + row_idx[r] * lds.
template <typename T>
using TransposeRowsFn = void (*)(const T* src, const int64_t* row_idx, int64_t lds, int rows, int64_t cols, T* dst,
                                 int64_t ldd);

// d[i] = src[i * stride], i < n (the strided im2col gather, stride > 1).
template <typename T>
using StridedCopyFn = void (*)(T* d, const T* src, int64_t n, int64_t stride);

template <typename T>
struct GemmTile {
  int mr = 0;  // rows of C per tile (weights broadcast)
  int nr = 0;  // columns of C per tile (a multiple of the vector width)
  int nrv = 0;  // vectors per tile row (nr / nrv lanes each)
  GemmTileFn<T> fn = nullptr;
  GemmTileOffsFn<T> fn_offs = nullptr;
  GemmTileScatterFn<T> fn_scatter = nullptr;
  GemmTileMaskedFn<T> fn_masked = nullptr;
  TransposeFn<T> transpose = nullptr;
  TransposeRowsFn<T> transpose_rows = nullptr;
  StridedCopyFn<T> strided_copy = nullptr;
};

// Max pooling with kPlanes = 16 planes as lanes (csrc/cpu/max_pool2d.cpp):
// xt is [pixel][16 planes]; for each output pixel o < npix the window is
// taps tap[begin[o]] .. tap[begin[o + 1] - 1] (input pixel numbers, in torch's
// scan order), and per lane
//   m = -inf, id = first[o];  for each tap k: if (v > m || v != v) m = v, id = k
// lands in yt[o * 16 + lane] and, when it is not null, it[o * 16 + lane].
// Index lanes are as wide as the data (int32 with float, int64 with double).
template <typename T, typename I>
using MaxPlanesFn = void (*)(const int64_t* first, const int64_t* begin, const int64_t* tap, int64_t npix,
                             const T* xt, T* yt, I* it);

// Max pooling with column stride 1, output rows [p0, p1) of one plane
// (csrc/cpu/max_pool2d.cpp): the input rows they read, from hb = the first
// one inside the input, are copied from x (H, W) into buf, row h at
// (h - hb) * pitch, input column c at buf column c + pad_w; the caller has
// filled every other column with -inf, so output column ow's tap kw is buf
// column ow + kw * dil_w: a vector of outputs, one load. Per output, over the
// window rows inside the input, then its columns:
//   m = -inf, id = h0 * W + first[ow];  each tap: if (v > m || v != v) m = v, id = its index
// (h0: the window's first row inside the input; first: the clipped window's
// first column, padded to whole vectors) lands in y[oh * Q + ow] and, when
// indices is not null, indices[oh * Q + ow]. y and indices: the plane's (P, Q).
// A row's last vector is stored whole, past Q, when the outputs it spills
// into are rows of [p0, p1), which are written after it.
template <typename T, typename I>
struct MaxRowsArgs {
  int64_t H, W, P, Q, pitch;
  int64_t kernel_h, kernel_w, stride_h, pad_h, pad_w, dil_h, dil_w;
  int64_t p0, p1;
  const I* first;
  const T* x;
  T* buf;
  T* y;
  int64_t* indices;
};
template <typename T, typename I>
using MaxRowsFn = void (*)(const MaxRowsArgs<T, I>& a);

// Max pooling of small planes whose windows all lie inside the input, with
// the outputs as lanes (csrc/cpu/max_pool2d.cpp): output f (flat over planes
// and pixels, NCHW order) of period q reads x + q * period_in + off[j][t][lane]
// at tap t, where f = q * 16 * period_vecs + j * 16 + lane; in-plane index
// idx[j][t][lane]. Per output: m = -inf, id = idx of tap 0; each tap in window
// order: if (v > m || v != v) m = v, id = its index. Outputs [f0, f1) land in
// y[f] and, when not null, indices[f]; a last partial vector runs one lane at a
// time (a whole vector's gathers could reach past the end of x).
template <typename T, typename I>
struct MaxGatherArgs {
  int64_t taps, period_vecs, period_in;
  const int32_t* off;
  const I* idx;
  const T* x;
  T* y;
  int64_t* indices;
  int64_t f0, f1;
  // MaxGatherWindowFn only: vector j's taps all lie in the span[j] <= 128
  // inputs from lo[j] on (lo relative to the period's base), off holds
  // offsets from lo[j], and pair_mask[j][t][p] marks the lanes of tap t whose
  // offsets lie in [32 p, 32 p + 32) (the kernel loads ceil(span[j] / 32)
  // pairs of registers).
  const int32_t* lo = nullptr;
  const int32_t* span = nullptr;
  const uint16_t* pair_mask = nullptr;
};
template <typename T, typename I>
using MaxGatherFn = void (*)(const MaxGatherArgs<T, I>& a);
// The same outputs with each vector's span of inputs loaded into up to eight
// registers, every tap read from them by permutes instead of a gather
// (AVX-512, float32).
using MaxGatherWindowFn = void (*)(const MaxGatherArgs<float, int32_t>& a);
constexpr int64_t kGatherWindow = 128;

// Max pooling, float32, with 16 output columns of a row as the lanes of one
// AVX-512 vector (csrc/cpu/max_pool2d.cpp): every tap of the window is one
// vector of inputs - column stride 1 one masked load, stride 2 two masked
// loads and a permute that keeps the even lanes - so no copy, transpose or
// gather comes first. Columns outside the input load as -inf, which never
// takes. Output rows [r0, r1) of the flat (N*C*P) rows; per output:
//   m = -inf, id = h0 * W + first[ow];  each window row inside the input,
//   then each tap: if (v > m || v != v) m = v, id = its index
// (h0: the window's first row inside the input; first: the clipped window's
// first column, per output column padded to whole vectors), stored to y[r][ow]
// and, when not null, indices[r][ow]. x: (N*C, H, W); H * W + 2 W < 2^31,
// stride_w 1 or 2, kernel_w at most kMaxTapsKW.
constexpr int64_t kMaxTapsKW = 16;
struct MaxTapsArgs {
  int64_t H, W, P, Q;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  const int32_t* first;
  const float* x;
  float* y;
  int64_t* indices;
  int64_t r0, r1;
};
using MaxTapsFn = void (*)(const MaxTapsArgs& a);

// Average pooling forward, float32, 16 output columns of a row per AVX-512
// vector (csrc/cpu/avg_pool2d.cpp; kernel in csrc/cpu/isa/avg_pool.cpp):
// output rows [r0, r1) of the flat (N*C*P) rows; every tap of the window
// one vector of inputs, the columns outside the input loaded as 0. Per
// output: s = +0, plus each tap inside the input, rows then columns, in
// order; y = s / divisor, where divisor = col_factor[ow] if divisor_override
// is not 0, else the window's row factor (count_include_pad: its rows within
// the padded input, else its rows inside the input) times col_factor[ow];
// col_factor: per output column, padded to whole vectors. Every window
// holds an input row and column (padding at most half the kernel, and a
// ceil_mode window starts inside the input or its left padding: the
// binding's checks), so no divisor is 0. x: (N*C, H, W); stride_w 1 or 2.
struct AvgTapsArgs {
  int64_t H, W, P, Q;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  bool count_include_pad;
  int64_t divisor_override;
  const float* col_factor;
  const float* x;
  float* y;
  int64_t r0, r1;
};
using AvgTapsFn = void (*)(const AvgTapsArgs& a);

struct KernelTable {
  const char* name = "";
  GemmTile<float> sgemm;
  GemmTile<double> dgemm;
  MaxPlanesFn<float, int32_t> smax_planes = nullptr;
  MaxPlanesFn<double, int64_t> dmax_planes = nullptr;
  MaxRowsFn<float, int32_t> smax_rows = nullptr;
  MaxRowsFn<double, int64_t> dmax_rows = nullptr;
  MaxGatherFn<float, int32_t> smax_gather = nullptr;
  MaxGatherFn<double, int64_t> dmax_gather = nullptr;
  MaxTapsFn smax_taps = nullptr;                   // AVX-512 only
  MaxGatherWindowFn smax_gather_window = nullptr;  // AVX-512 only
  AvgTapsFn savg_taps = nullptr;                   // AVX-512 only
  double (*fma_peak)(int num_threads, bool f64, double seconds) = nullptr;
};

// The table chosen for this CPU (or forced by FASTCONV_ISA).
const KernelTable& kernels();
// "avx512", "avx2" or "generic".
const char* active_isa_name();
// Measured peak of independent FMA chains with the active ISA, in GFLOP/s
// (an FMA counts as 2 flops), num_threads OpenMP threads for ~seconds.
double fma_peak_gflops(int num_threads, bool f64, double seconds);

template <typename T> inline const GemmTile<T>& gemm_tile();
template <> inline const GemmTile<float>& gemm_tile<float>() { return kernels().sgemm; }
template <> inline const GemmTile<double>& gemm_tile<double>() { return kernels().dgemm; }

// Declared by each ISA object (csrc/cpu/isa/gemm.cpp).
namespace avx512 { const KernelTable& table(); }
namespace avx2 { const KernelTable& table(); }
namespace generic { const KernelTable& table(); }

}  // namespace fastconv::cpu
