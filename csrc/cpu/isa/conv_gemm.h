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

}  // namespace fastconv::cpu::detail
