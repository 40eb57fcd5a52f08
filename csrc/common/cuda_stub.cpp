// Compiled instead of csrc/cuda/*.cu when fastconv is built without CUDA
// (FASTCONV_CUDA=OFF, or AUTO with no nvcc). The binding refuses CUDA tensors
// before reaching these, so they only guard against a direct misuse.
#include "check.h"
#include "kernels.h"

namespace fastconv::cuda {

namespace {
[[noreturn]] void unavailable() { FC_FAIL_RUNTIME("fastconv was built without CUDA (rebuild with FASTCONV_CUDA=ON)"); }
}  // namespace

void conv2d_forward(const ConvParams&, const ExecContext&) { unavailable(); }
void conv2d_backward(const ConvParams&, const ExecContext&) { unavailable(); }
void conv1x1_forward(const ConvParams&, const ExecContext&) { unavailable(); }
void conv1x1_backward(const ConvParams&, const ExecContext&) { unavailable(); }
void max_pool2d_forward(const PoolParams&, const ExecContext&) { unavailable(); }
void max_pool2d_backward(const PoolParams&, const ExecContext&) { unavailable(); }
void avg_pool2d_forward(const PoolParams&, const ExecContext&) { unavailable(); }
void avg_pool2d_backward(const PoolParams&, const ExecContext&) { unavailable(); }
void relu_forward(const ReluParams&, const ExecContext&) { unavailable(); }
void relu_backward(const ReluParams&, const ExecContext&) { unavailable(); }
int device_count() { return 0; }
const char* runtime_info() { return "not compiled in"; }

}  // namespace fastconv::cuda
