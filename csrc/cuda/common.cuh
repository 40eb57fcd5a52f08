// Shared helpers for the CUDA kernels (csrc/cuda/*.cu):
//   FC_CUDA_CHECK(call)      any cudaError_t other than cudaSuccess -> fastconv::RuntimeErr naming the call
//   FC_LAUNCH_CHECK(name)    after every <<<>>> launch: cudaGetLastError (never a device synchronisation)
//   DeviceGuard              sets ctx.device_index for the scope of an op, restores the previous device
//   FC_DISPATCH_FLOAT(dtype, name, lambda)   runs the lambda with scalar_t = float/double/__half/__nv_bfloat16
//   acc_t<T>, to_acc, from_acc               float32 accumulation for the half types, float64 for float64
//   FastDiv                  32-bit division by a run-time constant (multiply + shift), for index math
//   grid_for(n, threads)     a bounded 1-D grid for grid-stride loops
//   load_vec / store_vec     V consecutive elements moved with 8- / 16-byte accesses
// Every op launches on (cudaStream_t)ctx.stream only, allocates nothing and never synchronises the host,
// so the ops can be captured into CUDA graphs.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "common/check.h"
#include "common/kernels.h"
#include "common/params.h"

#define FC_CUDA_CHECK(call)                                                                       \
  do {                                                                                            \
    cudaError_t fc_err_ = (call);                                                                 \
    if (fc_err_ != cudaSuccess)                                                                   \
      FC_FAIL_RUNTIME("CUDA error in ", #call, " at ", __FILE__, ":", __LINE__, ": ",             \
                      cudaGetErrorName(fc_err_), " (", cudaGetErrorString(fc_err_), ")");          \
  } while (0)

// Checks the launch that just happened (bad configuration, missing kernel image, ...). Asynchronous
// execution errors surface at the caller's next synchronising call, as with torch's own kernels.
#define FC_LAUNCH_CHECK(kernel_name)                                                              \
  do {                                                                                            \
    cudaError_t fc_err_ = cudaGetLastError();                                                     \
    if (fc_err_ != cudaSuccess)                                                                   \
      FC_FAIL_RUNTIME("CUDA kernel launch failed: ", kernel_name, " at ", __FILE__, ":", __LINE__, \
                      ": ", cudaGetErrorName(fc_err_), " (", cudaGetErrorString(fc_err_), ")");    \
  } while (0)

// Runs the lambda with `scalar_t` bound to the CUDA type of `dtype`.
#define FC_DISPATCH_FLOAT(dtype, name, ...)                                                       \
  [&] {                                                                                           \
    switch (dtype) {                                                                              \
      case ::fastconv::DType::f32: { using scalar_t = float; return __VA_ARGS__(); }              \
      case ::fastconv::DType::f64: { using scalar_t = double; return __VA_ARGS__(); }             \
      case ::fastconv::DType::f16: { using scalar_t = __half; return __VA_ARGS__(); }             \
      case ::fastconv::DType::bf16: { using scalar_t = __nv_bfloat16; return __VA_ARGS__(); }     \
    }                                                                                             \
    throw ::fastconv::TypeErr(::fastconv::detail::str(name, ": unsupported dtype ",               \
                                                      static_cast<int>(dtype)));                  \
  }()

namespace fastconv {
namespace cuda {

// ---------------------------------------------------------------------------------------------
// Device guard: the op runs on ctx.device_index; the caller's current device is restored after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index) : target_(index) {
    FC_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != target_) FC_CUDA_CHECK(cudaSetDevice(target_));
  }
  ~DeviceGuard() {
    if (prev_ >= 0 && prev_ != target_) cudaSetDevice(prev_);  // no throw from a destructor
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
  int target_ = 0;
};

inline cudaStream_t stream_of(const ExecContext& ctx) { return static_cast<cudaStream_t>(ctx.stream); }

// ---------------------------------------------------------------------------------------------
// Accumulation type and conversions.
template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };
template <typename T> using acc_t = typename AccType<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T> __device__ __forceinline__ T zero_value() { return from_acc<T>(acc_t<T>(0)); }

template <typename T> __device__ __forceinline__ bool is_nan(T v) {
  acc_t<T> a = to_acc(v);
  return a != a;
}

// ---------------------------------------------------------------------------------------------
// Division by a run-time constant d >= 1 for 0 <= n < 2^31 (as PyTorch's IntDivider).
struct FastDiv {
  uint32_t d = 1, mul = 0, shift = 0;
  FastDiv() = default;
  explicit FastDiv(int64_t divisor) {
    d = static_cast<uint32_t>(divisor < 1 ? 1 : divisor);
    for (shift = 0; shift < 32; ++shift)
      if ((uint64_t(1) << shift) >= d) break;
    const uint64_t one = 1;
    mul = static_cast<uint32_t>(((one << 32) * ((one << shift) - d)) / d + 1);
  }
  __device__ __forceinline__ int div(int n) const {
    const uint32_t u = static_cast<uint32_t>(n);
    return static_cast<int>((__umulhi(u, mul) + u) >> shift);
  }
  __device__ __forceinline__ void divmod(int n, int& q, int& r) const {
    q = div(n);
    r = n - q * static_cast<int>(d);
  }
};

// ---------------------------------------------------------------------------------------------
// Vector memory access.
// Loads V consecutive read-only global elements p[0..V) with 8- or 16-byte loads; p aligned to
// min(16, V*sizeof(T)).
template <typename T, int V>
__device__ __forceinline__ void load_vec(const T* p, T (&r)[V]) {
  constexpr int kBytes = V * static_cast<int>(sizeof(T));
  if constexpr (kBytes % 16 == 0) {
#pragma unroll
    for (int i = 0; i < kBytes / 16; ++i) {
      const uint4 u = __ldg(reinterpret_cast<const uint4*>(p) + i);
      memcpy(&r[i * (16 / sizeof(T))], &u, 16);
    }
  } else if constexpr (kBytes == 8) {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
    memcpy(&r[0], &u, 8);
  } else {
#pragma unroll
    for (int v = 0; v < V; ++v) r[v] = p[v];
  }
}

// Stores V consecutive elements (global or shared memory) with 8- or 16-byte stores; dst aligned to
// min(16, V*sizeof(S)).
template <typename S, int V>
__device__ __forceinline__ void store_vec(S* dst, const S (&src)[V]) {
  constexpr int kBytes = V * static_cast<int>(sizeof(S));
  if constexpr (kBytes % 16 == 0) {
#pragma unroll
    for (int i = 0; i < kBytes / 16; ++i) {
      uint4 u;
      memcpy(&u, &src[i * (16 / sizeof(S))], 16);
      reinterpret_cast<uint4*>(dst)[i] = u;
    }
  } else if constexpr (kBytes == 8) {
    uint2 u;
    memcpy(&u, &src[0], 8);
    *reinterpret_cast<uint2*>(dst) = u;
  } else {
#pragma unroll
    for (int v = 0; v < V; ++v) dst[v] = src[v];
  }
}

// ---------------------------------------------------------------------------------------------
// Launch geometry for grid-stride loops.
constexpr int kEltThreads = 256;
inline unsigned grid_for(int64_t n, int threads = kEltThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  const int64_t cap = int64_t(1) << 20;  // the grid-stride loop covers the rest
  if (blocks > cap) blocks = cap;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks);
}

inline bool aligned_to(const void* p, int bytes) {
  return (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes)) == 0;
}

// ---------------------------------------------------------------------------------------------
// Internal entry points shared between op files (not part of kernels.h).
namespace detail {
// gb[k] = sum over n, p, q of gy[n, k, p, q]; one block per channel, fixed-order tree reduction.
void conv_bias_grad(const ConvParams& p, cudaStream_t stream);
}  // namespace detail

}  // namespace cuda
}  // namespace fastconv
