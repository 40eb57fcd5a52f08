// Every kernel entry point, one pair of declarations per op, the same names
// on the CPU (namespace cpu) and on CUDA (namespace cuda). The binding file
// validates arguments, fills a params struct and calls one of these.
#pragma once
#include "params.h"

namespace fastconv {

#define FASTCONV_DECLARE_KERNELS                                              \
  void conv2d_forward(const ConvParams& p, const ExecContext& ctx);          \
  void conv2d_backward(const ConvParams& p, const ExecContext& ctx);         \
  void conv1x1_forward(const ConvParams& p, const ExecContext& ctx);         \
  void conv1x1_backward(const ConvParams& p, const ExecContext& ctx);        \
  void max_pool2d_forward(const PoolParams& p, const ExecContext& ctx);      \
  void max_pool2d_backward(const PoolParams& p, const ExecContext& ctx);     \
  void avg_pool2d_forward(const PoolParams& p, const ExecContext& ctx);      \
  void avg_pool2d_backward(const PoolParams& p, const ExecContext& ctx);     \
  void relu_forward(const ReluParams& p, const ExecContext& ctx);            \
  void relu_backward(const ReluParams& p, const ExecContext& ctx);

namespace cpu { FASTCONV_DECLARE_KERNELS }
namespace cuda {
FASTCONV_DECLARE_KERNELS
int device_count();          // 0 when no driver or no device
const char* runtime_info();  // e.g. "CUDA 13.0, 1 device(s): NVIDIA H100 ..."
}

#undef FASTCONV_DECLARE_KERNELS

}  // namespace fastconv
