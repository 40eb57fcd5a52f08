// relu and guided relu on CUDA, elementwise over n elements of any shape (dense).
//   forward:  y = max(x, 0); NaN propagates (torch's relu).
//   backward: mode relu       gx = gy where x > 0, else 0
//             mode guided     gx = gy where x > 0 and gy > 0, else 0
//             mode deconvnet  gx = gy where gy > 0, else 0
//   The masks are selects, not products (gy * 0 would turn inf into NaN). As torch's threshold_backward
//   (`x <= 0 ? 0 : gy`), a NaN in x lets the gradient through; the same rule is used for the gy mask.
//   float32, float64, float16, bfloat16. In place (y == x, or gx == gy) is allowed: every element is read
//   before it is written by the same thread.
// Variants: a 128-bit vectorised grid-stride kernel (float4 / double2 / 8 halves) when every pointer is
// 16-byte aligned, with a scalar tail; a scalar grid-stride kernel otherwise.
// Not run on a GPU yet (see csrc/cuda/conv2d.cu for what remains to verify).
#include "common.cuh"

namespace fastconv {
namespace cuda {
namespace {

template <typename T>
__device__ __forceinline__ T relu1(T v) {
  const acc_t<T> a = to_acc(v);
  return (a > 0 || a != a) ? v : zero_value<T>();  // keeps NaN (and its payload), maps -0 and negatives to +0
}

template <typename T>
__device__ __forceinline__ T relu_grad1(T g, T x, int mode) {
  const acc_t<T> xa = to_acc(x), ga = to_acc(g);
  const bool pass_x = !(xa <= 0);  // x > 0, or NaN (as torch)
  const bool pass_g = !(ga <= 0);
  const bool pass = mode == int(ReluMode::relu) ? pass_x : (mode == int(ReluMode::guided) ? pass_x && pass_g : pass_g);
  return pass ? g : zero_value<T>();
}

// 16 bytes of T, loaded and stored as one uint4.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};

template <typename T>
__global__ void relu_fwd_vec(const T* x, T* y, int64_t npack) {
  using P = Pack<T>;
  const P* xp = reinterpret_cast<const P*>(x);
  P* yp = reinterpret_cast<P*>(y);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < npack; i += int64_t(gridDim.x) * blockDim.x) {
    P a = xp[i];
#pragma unroll
    for (int e = 0; e < P::kN; ++e) a.v[e] = relu1(a.v[e]);
    yp[i] = a;
  }
}

template <typename T>
__global__ void relu_fwd_scalar(const T* x, T* y, int64_t begin, int64_t n) {
  for (int64_t i = begin + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = relu1(x[i]);
}

template <typename T>
__global__ void relu_bwd_vec(const T* gy, const T* x, T* gx, int64_t npack, int mode) {
  using P = Pack<T>;
  const P* gp = reinterpret_cast<const P*>(gy);
  const P* xp = reinterpret_cast<const P*>(x);
  P* op = reinterpret_cast<P*>(gx);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < npack; i += int64_t(gridDim.x) * blockDim.x) {
    P g = gp[i];
    const P a = xp[i];
#pragma unroll
    for (int e = 0; e < P::kN; ++e) g.v[e] = relu_grad1(g.v[e], a.v[e], mode);
    op[i] = g;
  }
}

template <typename T>
__global__ void relu_bwd_scalar(const T* gy, const T* x, T* gx, int64_t begin, int64_t n, int mode) {
  for (int64_t i = begin + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    gx[i] = relu_grad1(gy[i], x[i], mode);
}

}  // namespace

void relu_forward(const ReluParams& p, const ExecContext& ctx) {
  if (p.n == 0) return;
  DeviceGuard guard(ctx.device_index);
  cudaStream_t stream = stream_of(ctx);
  FC_DISPATCH_FLOAT(p.dtype, "relu", [&] {
    using T = scalar_t;
    const T* x = static_cast<const T*>(p.x);
    T* y = static_cast<T*>(p.y);
    constexpr int kN = Pack<T>::kN;
    int64_t done = 0;
    if (aligned_to(x, 16) && aligned_to(y, 16)) {
      const int64_t npack = p.n / kN;
      if (npack > 0) {
        relu_fwd_vec<T><<<grid_for(npack), kEltThreads, 0, stream>>>(x, y, npack);
        FC_LAUNCH_CHECK("relu_fwd_vec");
      }
      done = npack * kN;
    }
    if (done < p.n) {
      relu_fwd_scalar<T><<<grid_for(p.n - done), kEltThreads, 0, stream>>>(x, y, done, p.n);
      FC_LAUNCH_CHECK("relu_fwd_scalar");
    }
  });
}

void relu_backward(const ReluParams& p, const ExecContext& ctx) {
  if (p.n == 0) return;
  DeviceGuard guard(ctx.device_index);
  cudaStream_t stream = stream_of(ctx);
  const int mode = static_cast<int>(p.mode);
  FC_DISPATCH_FLOAT(p.dtype, "relu_backward", [&] {
    using T = scalar_t;
    const T* gy = static_cast<const T*>(p.gy);
    const T* x = static_cast<const T*>(p.x);
    T* gx = static_cast<T*>(p.gx);
    constexpr int kN = Pack<T>::kN;
    int64_t done = 0;
    if (aligned_to(gy, 16) && aligned_to(x, 16) && aligned_to(gx, 16)) {
      const int64_t npack = p.n / kN;
      if (npack > 0) {
        relu_bwd_vec<T><<<grid_for(npack), kEltThreads, 0, stream>>>(gy, x, gx, npack, mode);
        FC_LAUNCH_CHECK("relu_bwd_vec");
      }
      done = npack * kN;
    }
    if (done < p.n) {
      relu_bwd_scalar<T><<<grid_for(p.n - done), kEltThreads, 0, stream>>>(gy, x, gx, done, p.n, mode);
      FC_LAUNCH_CHECK("relu_bwd_scalar");
    }
  });
}

}  // namespace cuda
}  // namespace fastconv
