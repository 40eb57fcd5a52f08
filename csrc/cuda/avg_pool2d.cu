// avg_pool2d on CUDA.
//   x (N, C, H, W) -> y (N, C, P, Q), dense NCHW; float32, float64, float16, bfloat16 (float32 sums for the
//   half types). Padding is zeros. Divisor exactly as torch (aten AvgPool2d.cu):
//     window [hstart, hend) with hend = min(hstart + kh, H + pad_h) (ceil_mode windows are clipped to the
//     padded input); pool_size = its area before clipping to the input;
//     divisor = divisor_override if non-zero, else pool_size if count_include_pad, else the clipped area;
//     a window with no input element gives 0.
// Variants (grid-stride, 32-bit index math when the tensor allows; each thread handles 4 consecutive elements
// of a row with one 128-bit (64-bit for the half types) store when the row length is a multiple of 4 and the
// output is aligned, 1 element otherwise):
//   forward:  one thread per output (or 4).
//   backward: gather, one thread per input (or 4): sums gy / divisor over the windows that contain it in a
//             fixed order (deterministic, no atomics; every element of gx is written).
// Not run on a GPU yet (see csrc/cuda/conv2d.cu for what remains to verify).
#include <climits>

#include "common.cuh"

namespace fastconv {
namespace cuda {
namespace {

struct AvgWin {
  int64_t kh, kw, sh, sw, ph, pw, divisor_override;
  bool count_include_pad;
};

// The window of output (p, q): clipped bounds and the divisor; false when it holds no input element.
template <typename I>
__device__ __forceinline__ bool avg_window(I p, I q, I H, I W, const AvgWin& a, I& h0, I& h1, I& w0, I& w1,
                                           I& divisor) {
  h0 = p * I(a.sh) - I(a.ph);
  w0 = q * I(a.sw) - I(a.pw);
  h1 = min(h0 + I(a.kh), H + I(a.ph));
  w1 = min(w0 + I(a.kw), W + I(a.pw));
  const I pool_size = (h1 - h0) * (w1 - w0);
  h0 = max(h0, I(0));
  w0 = max(w0, I(0));
  h1 = min(h1, H);
  w1 = min(w1, W);
  if (h0 >= h1 || w0 >= w1) return false;
  if (a.divisor_override) divisor = I(a.divisor_override);
  else if (a.count_include_pad) divisor = pool_size;
  else divisor = (h1 - h0) * (w1 - w0);
  return true;
}

// Each thread produces V consecutive elements of one row (V = 4 when the row length is a multiple of 4
// and the output pointer is aligned, then stored with one vector store; V = 1 otherwise).

template <typename T, typename I, int V>
__global__ void avg_pool2d_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, I total, I H, I W, I P, I Q,
                                      const AvgWin win) {
  using A = acc_t<T>;
  const I QV = Q / V;  // total = N*C*P*QV
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I q0 = (i % QV) * V;
    const I p = (i / QV) % P;
    const I nc = i / (QV * P);
    const T* plane = x + int64_t(nc) * H * W;
    T out[V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
      I h0, h1, w0, w1, divisor;
      if (!avg_window(p, q0 + v, H, W, win, h0, h1, w0, w1, divisor)) {
        out[v] = zero_value<T>();
        continue;
      }
      A sum = A(0);
      for (I h = h0; h < h1; ++h)
        for (I w = w0; w < w1; ++w) sum += to_acc(plane[h * W + w]);
      out[v] = from_acc<T>(sum / static_cast<A>(divisor));
    }
    store_vec<T, V>(y + int64_t(i) * V, out);
  }
}

template <typename T, typename I, int V>
__global__ void avg_pool2d_bwd_kernel(const T* __restrict__ gy, T* __restrict__ gx, I total, I H, I W, I P,
                                      I Q, const AvgWin win) {
  using A = acc_t<T>;
  const I WV = W / V;  // total = N*C*H*WV
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I wb = (i % WV) * V;
    const I h = (i / WV) % H;
    const I nc = i / (WV * H);
    // padded coordinates, as torch: outputs p with p*sh <= h+ph < p*sh + kh
    const I hp = h + I(win.ph);
    const I pstart = (hp < I(win.kh)) ? 0 : (hp - I(win.kh)) / I(win.sh) + 1;
    const I pend = min(hp / I(win.sh) + 1, P);
    const T* g = gy + int64_t(nc) * P * Q;
    T out[V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const I wp = wb + v + I(win.pw);
      const I qstart = (wp < I(win.kw)) ? 0 : (wp - I(win.kw)) / I(win.sw) + 1;
      const I qend = min(wp / I(win.sw) + 1, Q);
      A acc = A(0);
      for (I p = pstart; p < pend; ++p)
        for (I q = qstart; q < qend; ++q) {
          I h0, h1, w0, w1, divisor;
          if (!avg_window(p, q, H, W, win, h0, h1, w0, w1, divisor)) continue;
          acc += to_acc(g[int64_t(p) * Q + q]) / static_cast<A>(divisor);
        }
      out[v] = from_acc<T>(acc);
    }
    store_vec<T, V>(gx + int64_t(i) * V, out);
  }
}

constexpr int kVec = 4;

AvgWin make_win(const PoolParams& p) {
  return AvgWin{p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.divisor_override,
                p.count_include_pad};
}

bool small_pool(const PoolParams& p) {
  const int64_t lim = INT_MAX / 2;
  return p.N * p.C * p.H * p.W < lim && p.N * p.C * p.P * p.Q < lim &&
         (p.P + 1) * p.stride_h + p.kernel_h + p.pad_h + p.H < lim &&
         (p.Q + 1) * p.stride_w + p.kernel_w + p.pad_w + p.W < lim && p.kernel_h * p.kernel_w < lim &&
         p.divisor_override < lim && p.divisor_override > -lim;
}

template <typename T, typename I>
void launch_fwd(const PoolParams& p, cudaStream_t stream) {
  const int64_t total = p.N * p.C * p.P * p.Q;
  const int vbytes = kVec * sizeof(T) < 16 ? kVec * sizeof(T) : 16;
  const bool vec = p.Q % kVec == 0 && aligned_to(p.y, vbytes);
#define FC_AVGPOOL_FWD(V)                                                                                   \
  avg_pool2d_fwd_kernel<T, I, V><<<grid_for(total / V), kEltThreads, 0, stream>>>(                          \
      static_cast<const T*>(p.x), static_cast<T*>(p.y), I(total / V), I(p.H), I(p.W), I(p.P), I(p.Q),       \
      make_win(p))
  if (vec) FC_AVGPOOL_FWD(kVec);
  else FC_AVGPOOL_FWD(1);
#undef FC_AVGPOOL_FWD
  FC_LAUNCH_CHECK("avg_pool2d_fwd_kernel");
}

template <typename T, typename I>
void launch_bwd(const PoolParams& p, cudaStream_t stream) {
  const int64_t total = p.N * p.C * p.H * p.W;
  const int vbytes = kVec * sizeof(T) < 16 ? kVec * sizeof(T) : 16;
  const bool vec = p.W % kVec == 0 && aligned_to(p.gx, vbytes);
#define FC_AVGPOOL_BWD(V)                                                                                   \
  avg_pool2d_bwd_kernel<T, I, V><<<grid_for(total / V), kEltThreads, 0, stream>>>(                          \
      static_cast<const T*>(p.gy), static_cast<T*>(p.gx), I(total / V), I(p.H), I(p.W), I(p.P), I(p.Q),     \
      make_win(p))
  if (vec) FC_AVGPOOL_BWD(kVec);
  else FC_AVGPOOL_BWD(1);
#undef FC_AVGPOOL_BWD
  FC_LAUNCH_CHECK("avg_pool2d_bwd_kernel");
}

}  // namespace

void avg_pool2d_forward(const PoolParams& p, const ExecContext& ctx) {
  if (p.N * p.C * p.P * p.Q == 0) return;
  DeviceGuard guard(ctx.device_index);
  FC_DISPATCH_FLOAT(p.dtype, "avg_pool2d", [&] {
    if (small_pool(p)) launch_fwd<scalar_t, int>(p, stream_of(ctx));
    else launch_fwd<scalar_t, int64_t>(p, stream_of(ctx));
  });
}

void avg_pool2d_backward(const PoolParams& p, const ExecContext& ctx) {
  if (p.N * p.C * p.H * p.W == 0) return;
  DeviceGuard guard(ctx.device_index);
  FC_DISPATCH_FLOAT(p.dtype, "avg_pool2d_backward", [&] {
    if (small_pool(p)) launch_bwd<scalar_t, int>(p, stream_of(ctx));
    else launch_bwd<scalar_t, int64_t>(p, stream_of(ctx));
  });
}

}  // namespace cuda
}  // namespace fastconv
