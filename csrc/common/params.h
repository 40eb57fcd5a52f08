// Plain parameter structs shared by the CPU and CUDA kernels and the binding.
// No torch, no pybind11: pointers, sizes and a stream. All tensors are dense,
// contiguous NCHW (the binding checks this before any kernel runs).
#pragma once
#include <cstdint>

namespace fastconv {

enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };
enum class DeviceType : int { cpu = 0, cuda = 1 };

// Which implementation of a conv to run: the optimised one or the plain loop
// kept beside it for tests and benchmarks.
enum class Variant : int { fast = 0, reference = 1 };

struct ExecContext {
  DeviceType device = DeviceType::cpu;
  int device_index = 0;
  void* stream = nullptr;  // cudaStream_t on CUDA, unused on the CPU
  int num_threads = 1;     // OpenMP threads on the CPU
};

// conv2d, conv1d (H = R = P = 1) and conv1x1 (R = S = 1, stride 1, pad 0).
//   x  (N, C, H, W)          w  (K, C/groups, R, S)    b  (K)
//   y  (N, K, P, Q)  with P = (H + 2 pad_h - dil_h (R - 1) - 1) / stride_h + 1
// Forward reads x, w, b (b may be null) and writes every element of y.
// Backward reads gy, x, w and writes whichever of gx, gw, gb is non-null;
// each is fully overwritten (no accumulation into the caller's memory).
struct ConvParams {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t K = 0, R = 0, S = 0;
  int64_t P = 0, Q = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;
  int64_t groups = 1;
  DType dtype = DType::f32;
  Variant variant = Variant::fast;
  bool allow_tf32 = false;  // CUDA float32: may use TF32 tensor cores (torch.backends.cudnn.allow_tf32)

  const void* x = nullptr;
  const void* w = nullptr;
  const void* b = nullptr;
  void* y = nullptr;

  const void* gy = nullptr;
  void* gx = nullptr;
  void* gw = nullptr;
  void* gb = nullptr;
};

// max_pool2d and avg_pool2d.
//   x (N, C, H, W) -> y (N, C, P, Q); indices (N, C, P, Q) int64, the flat
//   offset h * W + w of the chosen input inside its (n, c) plane, as torch.
// Padding of max pooling is -inf; of average pooling, zeros.
struct PoolParams {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t P = 0, Q = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;        // max pooling only
  bool ceil_mode = false;
  bool count_include_pad = true;       // avg pooling only
  int64_t divisor_override = 0;        // avg pooling only; 0 means none
  DType dtype = DType::f32;

  const void* x = nullptr;
  void* y = nullptr;
  int64_t* indices = nullptr;          // max pooling: written by forward (may be null), read by backward

  const void* gy = nullptr;
  void* gx = nullptr;                  // backward overwrites every element of gx
};

// relu and guided relu, elementwise over n elements.
//   forward:   y = max(x, 0)            (NaN propagates, as torch)
//   backward:  gx = gy * [x > 0]                       mode relu
//              gx = gy * [x > 0] * [gy > 0]            mode guided
//              gx = gy * [gy > 0]                      mode deconvnet
//   The masks are selects, as torch's threshold_backward (x <= 0 ? 0 : gy):
//   a NaN in x passes the gradient, an inf gradient never turns into NaN.
enum class ReluMode : int { relu = 0, guided = 1, deconvnet = 2 };

struct ReluParams {
  int64_t n = 0;
  DType dtype = DType::f32;
  ReluMode mode = ReluMode::relu;
  const void* x = nullptr;   // forward input; backward: the forward input (or output: same sign mask)
  void* y = nullptr;
  const void* gy = nullptr;
  void* gx = nullptr;
};

}  // namespace fastconv
