// max_pool2d on CUDA.
//   x (N, C, H, W) -> y (N, C, P, Q), indices (N, C, P, Q) int64 = h * W + w inside the (n, c) plane.
//   Dense NCHW; float32, float64, float16, bfloat16 (compared in float32 for the half types).
//   Windows: stride, padding (-inf), dilation, ceil_mode (P, Q come from the binding). As torch: the first
//   maximum in row-major window order wins ties; a NaN is taken as the maximum (`v > max || isnan(v)`, so
//   the last NaN of the window gives the index) and propagates to y.
// Variants (no separate reference: the kernels are already the plain loops), grid-stride, 32-bit index math
// when the tensor allows it, each thread handling 4 consecutive elements of a row with 128-bit (or 64-bit for
// the half types) stores when the row length is a multiple of 4 and the pointers are aligned, 1 otherwise:
//   forward:  one thread per output element (or 4): y and indices.
//   backward: gather, one thread per input element (or 4): walks the outputs whose window can contain it
//             and sums gy where indices points at it, in a fixed order (deterministic, no atomics, writes
//             every element of gx, so no zero-fill pass).
// Not run on a GPU yet (see csrc/cuda/conv2d.cu for what remains to verify).
#include <climits>

#include "common.cuh"

namespace fastconv {
namespace cuda {
namespace {

// Each thread produces V consecutive elements of one row (V = 4 when the row length is a multiple of 4
// and the pointers are aligned, then stored with vector stores; V = 1 otherwise).

template <typename T, typename I, int V>
__global__ void max_pool2d_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t* __restrict__ ind,
                                      I total, I H, I W, I P, I Q, I kh, I kw, I sh, I sw, I ph, I pw, I dh,
                                      I dw) {
  using A = acc_t<T>;
  const I QV = Q / V;  // total = N*C*P*QV
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I q0 = (i % QV) * V;
    const I p = (i / QV) % P;
    const I nc = i / (QV * P);
    const T* plane = x + int64_t(nc) * H * W;
    I hstart = p * sh - ph;
    const I hend = min(hstart + (kh - 1) * dh + 1, H);
    if (hstart < 0) hstart += ((-hstart + dh - 1) / dh) * dh;
    T out[V];
    int64_t out_idx[V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
      I wstart = (q0 + v) * sw - pw;
      const I wend = min(wstart + (kw - 1) * dw + 1, W);
      if (wstart < 0) wstart += ((-wstart + dw - 1) / dw) * dw;
      A best = -INFINITY;
      I best_idx = hstart * W + wstart;
      for (I h = hstart; h < hend; h += dh)
        for (I w = wstart; w < wend; w += dw) {
          const A val = to_acc(plane[h * W + w]);
          if (val > best || val != val) {
            best = val;
            best_idx = h * W + w;
          }
        }
      out[v] = from_acc<T>(best);
      out_idx[v] = best_idx;
    }
    const int64_t o = int64_t(i) * V;
    store_vec<T, V>(y + o, out);
    if (ind) store_vec<int64_t, V>(ind + o, out_idx);
  }
}

template <typename T, typename I, int V>
__global__ void max_pool2d_bwd_kernel(const T* __restrict__ gy, const int64_t* __restrict__ ind,
                                      T* __restrict__ gx, I total, I H, I W, I P, I Q, I kh, I kw, I sh,
                                      I sw, I ph, I pw, I dh, I dw) {
  using A = acc_t<T>;
  const I WV = W / V;  // total = N*C*H*WV
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I w0 = (i % WV) * V;
    const I h = (i / WV) % H;
    const I nc = i / (WV * H);
    // outputs p whose window [p*sh - ph, p*sh - ph + (kh-1)*dh] contains h (as torch's p_start / p_end)
    const I ext_h = (kh - 1) * dh + 1, ext_w = (kw - 1) * dw + 1;
    const I pstart = (h + ph < ext_h) ? 0 : (h + ph - ext_h) / sh + 1;
    const I pend = min((h + ph) / sh + 1, P);
    const int64_t base = int64_t(nc) * P * Q;
    T out[V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const I w = w0 + v;
      const I qstart = (w + pw < ext_w) ? 0 : (w + pw - ext_w) / sw + 1;
      const I qend = min((w + pw) / sw + 1, Q);
      const int64_t target = int64_t(h) * W + w;
      A acc = A(0);
      for (I p = pstart; p < pend; ++p)
        for (I q = qstart; q < qend; ++q) {
          const int64_t o = base + int64_t(p) * Q + q;
          if (ind[o] == target) acc += to_acc(gy[o]);
        }
      out[v] = from_acc<T>(acc);
    }
    store_vec<T, V>(gx + int64_t(i) * V, out);
  }
}

constexpr int kVec = 4;

template <typename T, typename I>
void launch_fwd(const PoolParams& p, cudaStream_t stream) {
  const int64_t total = p.N * p.C * p.P * p.Q;
  const int vbytes = kVec * sizeof(T) < 16 ? kVec * sizeof(T) : 16;
  const bool vec = p.Q % kVec == 0 && aligned_to(p.y, vbytes) && (!p.indices || aligned_to(p.indices, 16));
#define FC_MAXPOOL_FWD(V)                                                                                    \
  max_pool2d_fwd_kernel<T, I, V><<<grid_for(total / V), kEltThreads, 0, stream>>>(                           \
      static_cast<const T*>(p.x), static_cast<T*>(p.y), p.indices, I(total / V), I(p.H), I(p.W), I(p.P),      \
      I(p.Q), I(p.kernel_h), I(p.kernel_w), I(p.stride_h), I(p.stride_w), I(p.pad_h), I(p.pad_w), I(p.dil_h), \
      I(p.dil_w))
  if (vec) FC_MAXPOOL_FWD(kVec);
  else FC_MAXPOOL_FWD(1);
#undef FC_MAXPOOL_FWD
  FC_LAUNCH_CHECK("max_pool2d_fwd_kernel");
}

template <typename T, typename I>
void launch_bwd(const PoolParams& p, cudaStream_t stream) {
  const int64_t total = p.N * p.C * p.H * p.W;
  const int vbytes = kVec * sizeof(T) < 16 ? kVec * sizeof(T) : 16;
  const bool vec = p.W % kVec == 0 && aligned_to(p.gx, vbytes);
#define FC_MAXPOOL_BWD(V)                                                                                      \
  max_pool2d_bwd_kernel<T, I, V><<<grid_for(total / V), kEltThreads, 0, stream>>>(                             \
      static_cast<const T*>(p.gy), p.indices, static_cast<T*>(p.gx), I(total / V), I(p.H), I(p.W), I(p.P),     \
      I(p.Q), I(p.kernel_h), I(p.kernel_w), I(p.stride_h), I(p.stride_w), I(p.pad_h), I(p.pad_w), I(p.dil_h),   \
      I(p.dil_w))
  if (vec) FC_MAXPOOL_BWD(kVec);
  else FC_MAXPOOL_BWD(1);
#undef FC_MAXPOOL_BWD
  FC_LAUNCH_CHECK("max_pool2d_bwd_kernel");
}

// 32-bit index math when every index (with the grid-stride overshoot and window extents) fits.
bool small_pool(const PoolParams& p) {
  const int64_t lim = INT_MAX / 2;
  return p.N * p.C * p.H * p.W < lim && p.N * p.C * p.P * p.Q < lim &&
         (p.P + 1) * p.stride_h + p.kernel_h * p.dil_h + p.pad_h < lim &&
         (p.Q + 1) * p.stride_w + p.kernel_w * p.dil_w + p.pad_w < lim;
}

}  // namespace

void max_pool2d_forward(const PoolParams& p, const ExecContext& ctx) {
  if (p.N * p.C * p.P * p.Q == 0) return;
  DeviceGuard guard(ctx.device_index);
  FC_DISPATCH_FLOAT(p.dtype, "max_pool2d", [&] {
    if (small_pool(p)) launch_fwd<scalar_t, int>(p, stream_of(ctx));
    else launch_fwd<scalar_t, int64_t>(p, stream_of(ctx));
  });
}

void max_pool2d_backward(const PoolParams& p, const ExecContext& ctx) {
  if (p.N * p.C * p.H * p.W == 0) return;
  DeviceGuard guard(ctx.device_index);
  FC_DISPATCH_FLOAT(p.dtype, "max_pool2d_backward", [&] {
    if (small_pool(p)) launch_bwd<scalar_t, int>(p, stream_of(ctx));
    else launch_bwd<scalar_t, int64_t>(p, stream_of(ctx));
  });
}

}  // namespace cuda
}  // namespace fastconv
