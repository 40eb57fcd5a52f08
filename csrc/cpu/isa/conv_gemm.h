// Internal interface between csrc/cpu/conv2d.cpp (which holds the packed-GEMM
// convolution drivers) and csrc/cpu/conv1x1.cpp (which runs its fast path
// through the same drivers: for R = S = 1, stride 1, pad 0 the "im2col" packing
// degenerates to copying rows of x, i.e. a plain packed GEMM over channels).
// Not part of the kernel API (csrc/common/kernels.h).
#pragma once
#include "common/params.h"

namespace fastconv::cpu::detail {

// Packed-GEMM fast paths of conv2d, float32 / float64 by p.dtype.
void conv2d_fast_forward(const ConvParams& p, const ExecContext& ctx);
void conv2d_fast_backward(const ConvParams& p, const ExecContext& ctx);

// Dot-product tile for the weight gradient (reduction over pixels, vectorised
// along the pixels themselves, so gy rows and im2col rows are used as they lie,
// no transposes):
//   C[i * ldc + j] += sum_{p < nv L} A[i * lda + p] * B[j * ldb + p]
// for i < m_valid <= mr, j < n_valid <= nr. All mr rows of A and nr rows of B
// are read (finite). Lane l of each (i, j) sums p = l mod L in order; the L lanes
// are then added by a fixed shuffle tree: the order depends on nothing else.
template <typename T>
using DotTileFn = void (*)(int64_t nv, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                           int64_t ldc, int m_valid, int n_valid);

// The same tile over output rows, with no im2col (conv2d.cpp
// fast_backward_weight_rows): A rows k are gy planes copied with a row stride
// a_row rounded up to L (zeros past Q), B rows are read in place from a padded
// copy of x, row j of the tile starting at B + boff[j]:
//   C[i * ldc + j] += sum over img < nimg, row < nrows, v < nfull + (tail > 0), l < L of
//     A[i * lda + img * a_img + row * a_row + v L + l] * B[boff[j] + img * b_img + row * b_row + v L + l]
// In the last vector of a row (tail > 0) only lanes l < tail count: B's other
// lanes are replaced by zeros, so values past a row (finite or not) never
// enter the sum. Lane order and the reduction tree are those of DotTileFn.
struct DotRows {
  int64_t nimg, a_img, b_img, nrows, a_row, b_row, nfull;
  int tail;
};
template <typename T>
using DotRowsFn = void (*)(const DotRows& d, const T* A, int64_t lda, const T* B, const int64_t* boff, T* C,
                           int64_t ldc, int m_valid, int n_valid);

struct DotKernels {
  int mr = 0, nr = 0;    // rows of A (gy, output channels) and of B (im2col rows) per tile
  int vec_bytes = 0;     // L * sizeof(T)
  DotTileFn<float> sdot = nullptr;
  DotTileFn<double> ddot = nullptr;
  DotRowsFn<float> srows = nullptr;
  DotRowsFn<double> drows = nullptr;
};

// The dot kernels of the active ISA (cpu_features.h kernels().name).
const DotKernels& dot_kernels();

// Channel-lane tile for the forward pass (conv2d.cpp fast_forward_lanes):
// output channels are the vector lanes, pixels are broadcast from anywhere:
//   C[p * ldc + k] (+)= bias[k] + sum_{t < kc} W[woff[t] + k] * xp[p][boff[t]]
// for p < MP pixels and k < KW = NKV * L channels (woff null: woff[t] = t KW).
// xp holds one base pointer per pixel (its window's corner in a zero-padded
// copy of x), boff the offset of each reduction index (c, r, s) from it, so
// any set of pixels and any stride or dilation need no im2col and compute no
// garbage columns; woff lets a tile of border pixels skip the taps that fall
// in the padding. Every C element is one chain of FMAs in t order.
template <typename T>
using LaneTileFn = void (*)(int64_t kc, const T* W, const int64_t* woff, const T* const* xp, const int64_t* boff,
                            T* C, int64_t ldc, bool acc, const T* bias);

struct LaneTile {
  int mp = 0, nkv = 0;  // pixels and vectors of channels per tile
  LaneTileFn<float> s = nullptr;
  LaneTileFn<double> d = nullptr;
};
struct LaneKernels {
  int vec_bytes = 0;
  // avx512: 6 x 4, 8 x 2, 8 x 3, 12 x 1 vectors; avx2 / generic: 4 x 3, 6 x 2, 4 x 3 (= wide), 12 x 1
  LaneTile wide, narrow, mid, single;
};
const LaneKernels& lane_kernels();

}  // namespace fastconv::cpu::detail

namespace fastconv::cpu::avx512 { const detail::DotKernels& dot_kernels(); const detail::LaneKernels& lane_kernels(); }
namespace fastconv::cpu::avx2 { const detail::DotKernels& dot_kernels(); const detail::LaneKernels& lane_kernels(); }
namespace fastconv::cpu::generic { const detail::DotKernels& dot_kernels(); const detail::LaneKernels& lane_kernels(); }

namespace fastconv::cpu::detail {

}  // namespace fastconv::cpu::detail
