// conv1x1 (pointwise convolution) on CUDA: a batched GEMM per image and group.
//   x (N, C, H, W)   w (K, C/groups, 1, 1)   b (K)   y (N, K, H, W)      dense NCHW (P = H, Q = W)
//   y[n, k, hw] = b[k] + sum_c w[k, c] x[n, g*Cg + c, hw]
// Variants:
//   reference (p.variant == Variant::reference): one thread per output element, int64 indexing, for
//     forward, backward-data (gx[n, c, hw] = sum_k w[k, c] gy[n, k, hw]) and backward-weight
//     (gw[k, c] = sum_{n, hw} gy[n, k, hw] x[n, c, hw]).
//   fast: the implicit-GEMM kernels of csrc/cuda/conv2d.cu (SIMT float32/float64, mma.sync TF32 / f16 / bf16),
//     which for R = S = 1, stride 1, no padding reduce to this GEMM (the per-tap index math degenerates:
//     division by R*S = S = 1 and the bounds tests always pass). Backward-weight is one block per output
//     tile with a fixed-order reduction, so deterministic; the bias gradient is conv2d's fixed-order
//     one-block-per-channel reduction.
// Not run on a GPU yet (see csrc/cuda/conv2d.cu for what remains to verify).
#include "common.cuh"

namespace fastconv {
namespace cuda {
namespace {

template <typename T>
__global__ void conv1x1_fwd_reference(ConvParams p) {
  using A = acc_t<T>;
  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  const T* b = static_cast<const T*>(p.b);
  T* y = static_cast<T*>(p.y);
  const int64_t HW = p.H * p.W, Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t total = p.N * p.K * HW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t hw = i % HW;
    const int64_t k = (i / HW) % p.K;
    const int64_t n = i / (HW * p.K);
    const T* xp = x + (n * p.C + (k / Kg) * Cg) * HW + hw;
    const T* wp = w + k * Cg;
    A acc = b ? to_acc(b[k]) : A(0);
    for (int64_t c = 0; c < Cg; ++c) acc += to_acc(wp[c]) * to_acc(xp[c * HW]);
    y[i] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void conv1x1_bwd_data_reference(ConvParams p) {
  using A = acc_t<T>;
  const T* gy = static_cast<const T*>(p.gy);
  const T* w = static_cast<const T*>(p.w);
  T* gx = static_cast<T*>(p.gx);
  const int64_t HW = p.H * p.W, Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t total = p.N * p.C * HW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t hw = i % HW;
    const int64_t c = (i / HW) % p.C;
    const int64_t n = i / (HW * p.C);
    const int64_t g = c / Cg, cg = c - g * Cg;
    const T* gyp = gy + (n * p.K + g * Kg) * HW + hw;
    const T* wp = w + g * Kg * Cg + cg;
    A acc = A(0);
    for (int64_t k = 0; k < Kg; ++k) acc += to_acc(wp[k * Cg]) * to_acc(gyp[k * HW]);
    gx[i] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void conv1x1_bwd_weight_reference(ConvParams p) {
  using A = acc_t<T>;
  const T* gy = static_cast<const T*>(p.gy);
  const T* x = static_cast<const T*>(p.x);
  T* gw = static_cast<T*>(p.gw);
  const int64_t HW = p.H * p.W, Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t total = p.K * Cg;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t cg = i % Cg;
    const int64_t k = i / Cg;
    const int64_t c = (k / Kg) * Cg + cg;
    A acc = A(0);
    for (int64_t n = 0; n < p.N; ++n) {
      const T* gyp = gy + (n * p.K + k) * HW;
      const T* xp = x + (n * p.C + c) * HW;
      for (int64_t j = 0; j < HW; ++j) acc += to_acc(gyp[j]) * to_acc(xp[j]);
    }
    gw[i] = from_acc<T>(acc);
  }
}

template <typename T>
void reference_forward(const ConvParams& p, cudaStream_t stream) {
  const int64_t n = p.N * p.K * p.H * p.W;
  if (n == 0) return;
  conv1x1_fwd_reference<T><<<grid_for(n), kEltThreads, 0, stream>>>(p);
  FC_LAUNCH_CHECK("conv1x1_fwd_reference");
}

template <typename T>
void reference_backward(const ConvParams& p, cudaStream_t stream) {
  if (p.gx && p.N * p.C * p.H * p.W > 0) {
    conv1x1_bwd_data_reference<T><<<grid_for(p.N * p.C * p.H * p.W), kEltThreads, 0, stream>>>(p);
    FC_LAUNCH_CHECK("conv1x1_bwd_data_reference");
  }
  const int64_t nw = p.K * (p.C / p.groups);
  if (p.gw && nw > 0) {
    conv1x1_bwd_weight_reference<T><<<grid_for(nw), kEltThreads, 0, stream>>>(p);
    FC_LAUNCH_CHECK("conv1x1_bwd_weight_reference");
  }
}

// conv1x1 as a conv2d: the binding may leave R, S, P, Q, stride, padding and dilation at their defaults.
ConvParams as_pointwise(const ConvParams& in) {
  ConvParams p = in;
  p.R = p.S = 1;
  p.P = p.H;
  p.Q = p.W;
  p.stride_h = p.stride_w = 1;
  p.pad_h = p.pad_w = 0;
  p.dil_h = p.dil_w = 1;
  if (p.groups < 1) p.groups = 1;
  return p;
}

}  // namespace

void conv1x1_forward(const ConvParams& params, const ExecContext& ctx) {
  const ConvParams p = as_pointwise(params);
  if (p.variant != Variant::reference) return conv2d_forward(p, ctx);
  DeviceGuard guard(ctx.device_index);
  FC_DISPATCH_FLOAT(p.dtype, "conv1x1", [&] { reference_forward<scalar_t>(p, stream_of(ctx)); });
}

void conv1x1_backward(const ConvParams& params, const ExecContext& ctx) {
  const ConvParams p = as_pointwise(params);
  if (p.variant != Variant::reference) return conv2d_backward(p, ctx);
  DeviceGuard guard(ctx.device_index);
  FC_DISPATCH_FLOAT(p.dtype, "conv1x1_backward", [&] { reference_backward<scalar_t>(p, stream_of(ctx)); });
  if (p.gb) detail::conv_bias_grad(p, stream_of(ctx));
}

}  // namespace cuda
}  // namespace fastconv
