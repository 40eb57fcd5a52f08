// conv2d on CUDA (also conv1d with H = R = P = 1, and the fast path of conv1x1).
//   x (N, C, H, W)   w (K, C/groups, R, S)   b (K)   y (N, K, P, Q)      dense NCHW, one dtype
//   dtypes: float32, float64, float16, bfloat16 (half types accumulate in float32)
//
// Variants, in the order of this file:
//   1. reference kernels: one thread per output element (forward y, backward-data gx, backward-weight gw),
//      int64 indexing. Selected by p.variant == Variant::reference, used for problems whose GEMM sizes do not
//      fit 32-bit indices, and as the direct kernel for forward / backward-data when the GEMM N dimension is
//      tiny (depthwise and near-depthwise convolutions).
//   2. block reductions, one block per output value with a fixed-order tree (deterministic): the bias
//      gradient, and the weight gradient when K/groups < 8 (depthwise), where GEMM tiles would be empty.
//   3. implicit GEMM, one per group (blockIdx.z), C[M x Ng] = A[M x Kr] * B[Kr x Ng]:
//        forward        M = N*P*Q  Ng = K/groups  Kr = C/groups*R*S  A = im2col(x)        B = w^T
//        backward-data  M = N*H*W  Ng = C/groups  Kr = K/groups*R*S  A = col(gy) (the taps
//                       of gy that reach each input position, zero where stride skips it)   B = w
//        backward-wt    M = K/grp  Ng = C/grp*R*S Kr = N*P*Q        A = gy                   B = im2col(x)
//      Each 128 x 64 output tile is computed by one block of 256 threads that loops over the whole reduction
//      in a fixed order, so backward-weight is deterministic (no atomics, no split-K, no workspace).
//      Tiles are staged through double-buffered shared memory from registers (the next tile's global loads
//      are in flight while the current one is multiplied). Each thread loads one contiguous run of the
//      reduction index per tile; runs that are contiguous and aligned in memory (weights in the forward,
//      gy in backward-weight) use 8/16-byte vector loads.
//        a. SIMT kernel (float32 with allow_tf32 false, float64): BK = 8, an 8 x 4 register tile per thread.
//        b. tensor-core kernel (mma.sync, sm_80+): BK = 16, 8 warps as 4 (M) x 2 (N), 32 x 32 per warp;
//           float32 with allow_tf32: m16n8k8 TF32 (operands rounded with cvt.rna.tf32), float16 / bfloat16:
//           m16n8k16 with float32 accumulation.
//   4. launchers: conv2d_forward / conv2d_backward and the selection between the above.
//
// NOT VERIFIED ON A GPU. This file and the other csrc/cuda/*.cu have only been compiled (sm_80 and sm_90, no
// warnings, no register spills); nothing has run. What remains to verify on a GPU (scripts/gpu-check.sh runs
// tests/test_cuda.py, which covers the first four points):
//   - forward / backward-data / backward-weight of every path against torch (odd shapes, groups, stride,
//     padding, dilation, conv1d and 1x1): SIMT float32 / float64, TF32, float16, bfloat16 mma.sync, the direct
//     and block-reduce kernels (K/groups < 16, < 8), the reference variant; pooling (both the 1- and the
//     4-elements-per-thread kernels) and relu (vector and scalar paths), NaN / tie behaviour against torch;
//   - the mma.sync fragment layouts (A row-major 16x8 / 16x16, B "col" 8x8 / 16x8, C 16x8) as written below
//     (taken from the PTX ISA tables / CUTLASS's SM80 atoms, not checked by running);
//   - the vector-load paths (weights when C/g*R*S % V == 0, gy when P*Q % V == 0) and their alignment checks;
//   - bitwise determinism of the weight / bias gradients, CUDA-graph capture, side streams, cuda:1;
//   - performance (no tuning was possible): tile sizes, occupancy (80-130 registers per thread in the GEMM
//     kernels), bank conflicts, the lack of ldmatrix / cp.async, and backward-weight parallelism: one block per
//     128 x 64 tile of K/g x C/g*R*S gives few blocks for small layers (a caller-provided workspace would allow
//     a deterministic fixed-order split-K).
#include <climits>
#include <type_traits>

#include "common.cuh"

namespace fastconv {
namespace cuda {
namespace {

// =============================================================================================
// 1. Reference kernels (one thread per output element).
// =============================================================================================

template <typename T>
__global__ void conv_fwd_reference(ConvParams p) {
  using A = acc_t<T>;
  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  const T* b = static_cast<const T*>(p.b);
  T* y = static_cast<T*>(p.y);
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t total = p.N * p.K * p.P * p.Q;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t q = i % p.Q;
    const int64_t pp = (i / p.Q) % p.P;
    const int64_t k = (i / (p.Q * p.P)) % p.K;
    const int64_t n = i / (p.Q * p.P * p.K);
    const int64_t g = k / Kg;
    A acc = b ? to_acc(b[k]) : A(0);
    for (int64_t c = 0; c < Cg; ++c) {
      const T* xp = x + ((n * p.C + g * Cg + c) * p.H) * p.W;
      const T* wp = w + ((k * Cg + c) * p.R) * p.S;
      for (int64_t r = 0; r < p.R; ++r) {
        const int64_t h = pp * p.stride_h - p.pad_h + r * p.dil_h;
        if (h < 0 || h >= p.H) continue;
        for (int64_t s = 0; s < p.S; ++s) {
          const int64_t ww = q * p.stride_w - p.pad_w + s * p.dil_w;
          if (ww < 0 || ww >= p.W) continue;
          acc += to_acc(xp[h * p.W + ww]) * to_acc(wp[r * p.S + s]);
        }
      }
    }
    y[i] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void conv_bwd_data_reference(ConvParams p) {
  using A = acc_t<T>;
  const T* gy = static_cast<const T*>(p.gy);
  const T* w = static_cast<const T*>(p.w);
  T* gx = static_cast<T*>(p.gx);
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t total = p.N * p.C * p.H * p.W;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t xw = i % p.W;
    const int64_t xh = (i / p.W) % p.H;
    const int64_t c = (i / (p.W * p.H)) % p.C;
    const int64_t n = i / (p.W * p.H * p.C);
    const int64_t g = c / Cg, cg = c - g * Cg;
    A acc = A(0);
    for (int64_t kg = 0; kg < Kg; ++kg) {
      const int64_t k = g * Kg + kg;
      const T* gyp = gy + (n * p.K + k) * p.P * p.Q;
      const T* wp = w + ((k * Cg + cg) * p.R) * p.S;
      for (int64_t r = 0; r < p.R; ++r) {
        const int64_t th = xh + p.pad_h - r * p.dil_h;
        if (th < 0 || th % p.stride_h != 0) continue;
        const int64_t pp = th / p.stride_h;
        if (pp >= p.P) continue;
        for (int64_t s = 0; s < p.S; ++s) {
          const int64_t tw = xw + p.pad_w - s * p.dil_w;
          if (tw < 0 || tw % p.stride_w != 0) continue;
          const int64_t q = tw / p.stride_w;
          if (q >= p.Q) continue;
          acc += to_acc(gyp[pp * p.Q + q]) * to_acc(wp[r * p.S + s]);
        }
      }
    }
    gx[i] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void conv_bwd_weight_reference(ConvParams p) {
  using A = acc_t<T>;
  const T* gy = static_cast<const T*>(p.gy);
  const T* x = static_cast<const T*>(p.x);
  T* gw = static_cast<T*>(p.gw);
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t total = p.K * Cg * p.R * p.S;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t s = i % p.S;
    const int64_t r = (i / p.S) % p.R;
    const int64_t cg = (i / (p.S * p.R)) % Cg;
    const int64_t k = i / (p.S * p.R * Cg);
    const int64_t c = (k / Kg) * Cg + cg;
    A acc = A(0);
    for (int64_t n = 0; n < p.N; ++n) {
      const T* gyp = gy + (n * p.K + k) * p.P * p.Q;
      const T* xp = x + (n * p.C + c) * p.H * p.W;
      for (int64_t pp = 0; pp < p.P; ++pp) {
        const int64_t h = pp * p.stride_h - p.pad_h + r * p.dil_h;
        if (h < 0 || h >= p.H) continue;
        for (int64_t q = 0; q < p.Q; ++q) {
          const int64_t ww = q * p.stride_w - p.pad_w + s * p.dil_w;
          if (ww < 0 || ww >= p.W) continue;
          acc += to_acc(gyp[pp * p.Q + q]) * to_acc(xp[h * p.W + ww]);
        }
      }
    }
    gw[i] = from_acc<T>(acc);
  }
}

// =============================================================================================
// 2. Block reductions (deterministic): one block per output value, each thread sums a fixed subset
//    (warps over rows p, lanes over columns q: coalesced, no index division), then a fixed tree in shared
//    memory. The result does not depend on scheduling, so it is bitwise reproducible.
//    a. bias gradient: gb[k] = sum over n, p, q of gy[n, k, p, q]
//    b. weight gradient for convolutions with very few output channels per group (depthwise and near
//       depthwise), where a 128-row GEMM tile would be almost empty: gw[k, c, r, s] =
//       sum over n, p, q of gy[n, k, p, q] * x[n, g*Cg + c, p*sh - ph + r*dh, q*sw - pw + s*dw]
// =============================================================================================

constexpr int kRedThreads = 256;

template <typename T>
__device__ __forceinline__ void block_reduce_store(acc_t<T> v, T* out) {
  __shared__ acc_t<T> red[kRedThreads];
  red[threadIdx.x] = v;
  __syncthreads();
#pragma unroll
  for (int width = kRedThreads / 2; width > 0; width >>= 1) {
    if (threadIdx.x < width) red[threadIdx.x] += red[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = from_acc<T>(red[0]);
}

template <typename T>
__global__ void __launch_bounds__(kRedThreads) conv_bias_grad_kernel(ConvParams p) {
  using A = acc_t<T>;
  const T* gy = static_cast<const T*>(p.gy);
  const int64_t k = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  A acc = A(0);
  for (int64_t n = 0; n < p.N; ++n) {
    const T* plane = gy + (n * p.K + k) * p.P * p.Q;
    for (int64_t pp = warp; pp < p.P; pp += kRedThreads / 32)
      for (int64_t q = lane; q < p.Q; q += 32) acc += to_acc(plane[pp * p.Q + q]);
  }
  block_reduce_store<T>(acc, static_cast<T*>(p.gb) + k);
}

template <typename T>
__global__ void __launch_bounds__(kRedThreads) conv_bwd_weight_blockreduce(ConvParams p) {
  using A = acc_t<T>;
  const T* gy = static_cast<const T*>(p.gy);
  const T* x = static_cast<const T*>(p.x);
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t i = blockIdx.x;
  const int64_t s = i % p.S;
  const int64_t r = (i / p.S) % p.R;
  const int64_t cg = (i / (p.S * p.R)) % Cg;
  const int64_t k = i / (p.S * p.R * Cg);
  const int64_t c = (k / Kg) * Cg + cg;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // taps that fall outside the image contribute nothing: restrict q to w = q*sw + woff in [0, W)
  const int64_t woff = s * p.dil_w - p.pad_w;
  const int64_t q_lo = woff >= 0 ? 0 : (-woff + p.stride_w - 1) / p.stride_w;
  const int64_t q_hi = p.W - woff <= 0 ? 0 : min(p.Q, (p.W - woff + p.stride_w - 1) / p.stride_w);
  A acc = A(0);
  for (int64_t n = 0; n < p.N; ++n) {
    const T* gyp = gy + (n * p.K + k) * p.P * p.Q;
    const T* xp = x + (n * p.C + c) * p.H * p.W + woff;
    for (int64_t pp = warp; pp < p.P; pp += kRedThreads / 32) {
      const int64_t h = pp * p.stride_h - p.pad_h + r * p.dil_h;
      if (h < 0 || h >= p.H) continue;
      const T* grow = gyp + pp * p.Q;
      const T* xrow = xp + h * p.W;
      for (int64_t q = q_lo + lane; q < q_hi; q += 32) acc += to_acc(grow[q]) * to_acc(xrow[q * p.stride_w]);
    }
  }
  block_reduce_store<T>(acc, static_cast<T*>(p.gw) + i);
}

// =============================================================================================
// 3. Implicit GEMM.
// =============================================================================================

enum Mode : int { kFwd = 0, kBwdData = 1, kBwdWeight = 2 };

struct GemmArgs {
  const void* x;
  const void* w;
  const void* b;
  const void* gy;
  void* out;
  int N, C, H, W, K, P, Q, R, S, Cg, Kg;
  int sh, sw, ph, pw, dh, dw;
  int M, Ng, Kr;  // GEMM sizes of one group
  FastDiv dPQ, dQ, dHW, dW, dRS, dS, dsh, dsw;
  bool vecA, vecB;  // the run of V reduction indices a thread loads may use one vector load
};

// ----- The three problems. For each operand: a per-thread row context, built once per block, and a
// loader for V consecutive reduction indices kk0 .. kk0+V-1 (zero outside the matrix or the image).

template <int MODE, typename T> struct Problem;

// forward: A(m = (n,p,q), kk = (c,r,s)) = x[n, g*Cg+c, p*sh-ph+r*dh, q*sw-pw+s*dw];  B(kk, j) = w[g*Kg+j, kk]
template <typename T>
struct Problem<kFwd, T> {
  static constexpr bool kAKFast = false, kBKFast = true;
  struct RowA { const T* base; int h0, w0; bool ok; };
  struct RowB { const T* base; bool ok; };

  static __device__ __forceinline__ RowA row_a(const GemmArgs& a, int m, int g) {
    RowA ra;
    ra.ok = m < a.M;
    int n, pq, p, q;
    a.dPQ.divmod(ra.ok ? m : 0, n, pq);
    a.dQ.divmod(pq, p, q);
    ra.base = static_cast<const T*>(a.x) + (int64_t(n) * a.C + int64_t(g) * a.Cg) * a.H * a.W;
    ra.h0 = p * a.sh - a.ph;
    ra.w0 = q * a.sw - a.pw;
    return ra;
  }
  template <int V>
  static __device__ __forceinline__ void load_a(const GemmArgs& a, const RowA& ra, int kk0, T (&r)[V]) {
    int c, rs, rr, s;
    a.dRS.divmod(kk0, c, rs);
    a.dS.divmod(rs, rr, s);
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const int h = ra.h0 + rr * a.dh, w = ra.w0 + s * a.dw;
      const bool in = ra.ok && (kk0 + v) < a.Kr && unsigned(h) < unsigned(a.H) && unsigned(w) < unsigned(a.W);
      r[v] = in ? ra.base[(int64_t(c) * a.H + h) * a.W + w] : zero_value<T>();
      if (++s == a.S) { s = 0; if (++rr == a.R) { rr = 0; ++c; } }
    }
  }
  static __device__ __forceinline__ RowB row_b(const GemmArgs& a, int j, int g) {
    RowB rb;
    rb.ok = j < a.Ng;
    rb.base = static_cast<const T*>(a.w) + int64_t(g * a.Kg + (rb.ok ? j : 0)) * a.Kr;
    return rb;
  }
  template <int V>
  static __device__ __forceinline__ void load_b(const GemmArgs& a, const RowB& rb, int kk0, T (&r)[V]) {
    if (a.vecB && rb.ok && kk0 + V <= a.Kr) {
      load_vec<T, V>(rb.base + kk0, r);
      return;
    }
#pragma unroll
    for (int v = 0; v < V; ++v) r[v] = (rb.ok && kk0 + v < a.Kr) ? rb.base[kk0 + v] : zero_value<T>();
  }
  static __device__ __forceinline__ void store(const GemmArgs& a, int m, int j, int g, acc_t<T> v) {
    int n, pq;
    a.dPQ.divmod(m, n, pq);
    const int k = g * a.Kg + j;
    if (a.b) v += to_acc(static_cast<const T*>(a.b)[k]);
    static_cast<T*>(a.out)[(int64_t(n) * a.K + k) * (int64_t(a.P) * a.Q) + pq] = from_acc<T>(v);
  }
};

// backward-data: A(m = (n,h,w), kk = (k,r,s)) = gy[n, g*Kg+k, p, q] where p*sh = h+ph-r*dh (else 0), same for q;
//                B(kk, c) = w[g*Kg+k, c, r, s]
template <typename T>
struct Problem<kBwdData, T> {
  static constexpr bool kAKFast = false, kBKFast = true;
  struct RowA { const T* base; int hp, wp; bool ok; };
  struct RowB { const T* base; bool ok; };

  static __device__ __forceinline__ RowA row_a(const GemmArgs& a, int m, int g) {
    RowA ra;
    ra.ok = m < a.M;
    int n, hw, h, w;
    a.dHW.divmod(ra.ok ? m : 0, n, hw);
    a.dW.divmod(hw, h, w);
    ra.base = static_cast<const T*>(a.gy) + (int64_t(n) * a.K + int64_t(g) * a.Kg) * a.P * a.Q;
    ra.hp = h + a.ph;
    ra.wp = w + a.pw;
    return ra;
  }
  template <int V>
  static __device__ __forceinline__ void load_a(const GemmArgs& a, const RowA& ra, int kk0, T (&r)[V]) {
    int k, rs, rr, s;
    a.dRS.divmod(kk0, k, rs);
    a.dS.divmod(rs, rr, s);
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const int th = ra.hp - rr * a.dh, tw = ra.wp - s * a.dw;
      bool in = ra.ok && (kk0 + v) < a.Kr && th >= 0 && tw >= 0;
      int p = 0, q = 0;
      if (in) {
        p = a.dsh.div(th);
        q = a.dsw.div(tw);
        in = p * a.sh == th && q * a.sw == tw && p < a.P && q < a.Q;
      }
      r[v] = in ? ra.base[(int64_t(k) * a.P + p) * a.Q + q] : zero_value<T>();
      if (++s == a.S) { s = 0; if (++rr == a.R) { rr = 0; ++k; } }
    }
  }
  static __device__ __forceinline__ RowB row_b(const GemmArgs& a, int c, int g) {
    RowB rb;
    rb.ok = c < a.Ng;
    rb.base = static_cast<const T*>(a.w) + (int64_t(g) * a.Kg * a.Cg + (rb.ok ? c : 0)) * (a.R * a.S);
    return rb;
  }
  template <int V>
  static __device__ __forceinline__ void load_b(const GemmArgs& a, const RowB& rb, int kk0, T (&r)[V]) {
    int k, rs;
    a.dRS.divmod(kk0, k, rs);
    const int RS = a.R * a.S;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const bool in = rb.ok && (kk0 + v) < a.Kr;
      r[v] = in ? rb.base[int64_t(k) * a.Cg * RS + rs] : zero_value<T>();
      if (++rs == RS) { rs = 0; ++k; }
    }
  }
  static __device__ __forceinline__ void store(const GemmArgs& a, int m, int c, int g, acc_t<T> v) {
    int n, hw;
    a.dHW.divmod(m, n, hw);
    static_cast<T*>(a.out)[(int64_t(n) * a.C + g * a.Cg + c) * (int64_t(a.H) * a.W) + hw] = from_acc<T>(v);
  }
};

// backward-weight: A(k, kk = (n,p,q)) = gy[n, g*Kg+k, p, q];
//                  B(kk, j = (c,r,s)) = x[n, g*Cg+c, p*sh-ph+r*dh, q*sw-pw+s*dw]
template <typename T>
struct Problem<kBwdWeight, T> {
  static constexpr bool kAKFast = true, kBKFast = true;
  struct RowA { const T* base; bool ok; };
  struct RowB { const T* base; int hoff, woff; bool ok; };

  static __device__ __forceinline__ RowA row_a(const GemmArgs& a, int k, int g) {
    RowA ra;
    ra.ok = k < a.M;
    ra.base = static_cast<const T*>(a.gy) + int64_t(g * a.Kg + (ra.ok ? k : 0)) * a.P * a.Q;
    return ra;
  }
  template <int V>
  static __device__ __forceinline__ void load_a(const GemmArgs& a, const RowA& ra, int kk0, T (&r)[V]) {
    int n, pq;
    a.dPQ.divmod(kk0, n, pq);
    const int64_t nstride = int64_t(a.K) * a.P * a.Q;
    // vecA: P*Q % V == 0, so a run that starts at a multiple of V stays inside one (n, k) plane.
    if (a.vecA && ra.ok && kk0 + V <= a.Kr) {
      load_vec<T, V>(ra.base + n * nstride + pq, r);
      return;
    }
    const int PQ = a.P * a.Q;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const bool in = ra.ok && (kk0 + v) < a.Kr;
      r[v] = in ? ra.base[n * nstride + pq] : zero_value<T>();
      if (++pq == PQ) { pq = 0; ++n; }
    }
  }
  static __device__ __forceinline__ RowB row_b(const GemmArgs& a, int j, int g) {
    RowB rb;
    rb.ok = j < a.Ng;
    int c, rs, rr, s;
    a.dRS.divmod(rb.ok ? j : 0, c, rs);
    a.dS.divmod(rs, rr, s);
    rb.base = static_cast<const T*>(a.x) + (int64_t(g) * a.Cg + c) * a.H * a.W;
    rb.hoff = rr * a.dh - a.ph;
    rb.woff = s * a.dw - a.pw;
    return rb;
  }
  template <int V>
  static __device__ __forceinline__ void load_b(const GemmArgs& a, const RowB& rb, int kk0, T (&r)[V]) {
    int n, pq, p, q;
    a.dPQ.divmod(kk0, n, pq);
    a.dQ.divmod(pq, p, q);
    const int64_t nstride = int64_t(a.C) * a.H * a.W;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const int h = p * a.sh + rb.hoff, w = q * a.sw + rb.woff;
      const bool in = rb.ok && (kk0 + v) < a.Kr && unsigned(h) < unsigned(a.H) && unsigned(w) < unsigned(a.W);
      r[v] = in ? rb.base[n * nstride + int64_t(h) * a.W + w] : zero_value<T>();
      if (++q == a.Q) { q = 0; if (++p == a.P) { p = 0; ++n; } }
    }
  }
  static __device__ __forceinline__ void store(const GemmArgs& a, int k, int j, int g, acc_t<T> v) {
    static_cast<T*>(a.out)[int64_t(g * a.Kg + k) * a.Ng + j] = from_acc<T>(v);
  }
};

constexpr int kGemmThreads = 256;
constexpr int kBM = 128, kBN = 64;

// Which (row, first reduction column) of a ROWS x BK tile thread `tid` loads: one run of
// V = ROWS*BK/256 consecutive reduction columns. K-fast: neighbouring threads take neighbouring runs of the
// same row (coalesced when memory is contiguous along the reduction); otherwise neighbouring threads take
// neighbouring rows (coalesced when memory is contiguous along M, as x along q).
template <int ROWS, int BK, bool KFAST>
struct TileMap {
  static constexpr int V = ROWS * BK / kGemmThreads;
  static constexpr int kRuns = BK / V;  // runs per row
  static_assert(V >= 1 && BK % V == 0, "tile map");
  static __device__ __forceinline__ int row(int tid) { return KFAST ? tid / kRuns : tid % ROWS; }
  static __device__ __forceinline__ int col(int tid) { return (KFAST ? tid % kRuns : tid / ROWS) * V; }
};

// ----- 3a. SIMT kernel: float32 / float64, 128 x 64 x 8 tiles, 8 x 4 outputs per thread.
template <int MODE, typename T>
__global__ void __launch_bounds__(kGemmThreads) conv_gemm_simt(const GemmArgs a) {
  using Prob = Problem<MODE, T>;
  constexpr int BK = 8;
  using MapA = TileMap<kBM, BK, Prob::kAKFast>;
  using MapB = TileMap<kBN, BK, Prob::kBKFast>;
  constexpr int VA = MapA::V, VB = MapB::V;
  __shared__ T As[2][BK][kBM + 4];
  __shared__ T Bs[2][BK][kBN + 4];

  const int tid = threadIdx.x;
  const int g = blockIdx.z;
  const int m0 = blockIdx.x * kBM, n0 = blockIdx.y * kBN;
  const int a_row = MapA::row(tid), a_col = MapA::col(tid);
  const int b_row = MapB::row(tid), b_col = MapB::col(tid);
  const auto ra = Prob::row_a(a, m0 + a_row, g);
  const auto rb = Prob::row_b(a, n0 + b_row, g);

  T va[VA], vb[VB];
  auto stage_to_smem = [&](int st) {
#pragma unroll
    for (int v = 0; v < VA; ++v) As[st][a_col + v][a_row] = va[v];
#pragma unroll
    for (int v = 0; v < VB; ++v) Bs[st][b_col + v][b_row] = vb[v];
  };

  const int tx = tid % 16, ty = tid / 16;  // rows tx*4 + {0..3} and 64 + tx*4 + {0..3}; cols ty*4 + {0..3}
  T acc[8][4];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = T(0);

  const int nk = (a.Kr + BK - 1) / BK;
  if (nk > 0) {
    Prob::template load_a<VA>(a, ra, a_col, va);
    Prob::template load_b<VB>(a, rb, b_col, vb);
    stage_to_smem(0);
    __syncthreads();
  }
  for (int kt = 0; kt < nk; ++kt) {
    const int st = kt & 1;
    const bool more = kt + 1 < nk;
    if (more) {
      const int k0 = (kt + 1) * BK;
      Prob::template load_a<VA>(a, ra, k0 + a_col, va);
      Prob::template load_b<VB>(a, rb, k0 + b_col, vb);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      T fa[8], fb[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        fa[i] = As[st][kk][tx * 4 + i];
        fa[4 + i] = As[st][kk][64 + tx * 4 + i];
        fb[i] = Bs[st][kk][ty * 4 + i];
      }
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fma(fa[i], fb[j], acc[i][j]);
    }
    if (more) stage_to_smem(st ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + (i < 4 ? tx * 4 + i : 64 + tx * 4 + (i - 4));
    if (m >= a.M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + ty * 4 + j;
      if (n < a.Ng) Prob::store(a, m, n, g, acc[i][j]);
    }
  }
}

// ----- 3b. Tensor-core kernel (sm_80+): 128 x 64 x 16 tiles, 8 warps (4 along M x 2 along N), each warp
// 32 x 32 = 2 x 4 mma tiles of 16 x 8. Shared tiles are stored row-major along the reduction (As[m][k],
// Bs[n][k]) with a pad that makes the fragment reads conflict-free (row pitch 20 words for TF32, 12 words
// for 16-bit types).
template <typename T> struct MmaTraits;
template <> struct MmaTraits<float> {  // TF32: smem holds tf32-rounded floats
  using S = float;
  static constexpr int kPad = 4;
  static __device__ __forceinline__ S to_smem(float v) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
    return __uint_as_float(r);
  }
};
template <> struct MmaTraits<__half> {
  using S = __half;
  static constexpr int kPad = 8;
  static __device__ __forceinline__ S to_smem(__half v) { return v; }
};
template <> struct MmaTraits<__nv_bfloat16> {
  using S = __nv_bfloat16;
  static constexpr int kPad = 8;
  static __device__ __forceinline__ S to_smem(__nv_bfloat16 v) { return v; }
};

__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <typename T>
__device__ __forceinline__ void mma_16bit(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (std::is_same<T, __half>::value) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

template <typename S>
__device__ __forceinline__ uint32_t lds32(const S* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

template <int MODE, typename T>
__global__ void __launch_bounds__(kGemmThreads) conv_gemm_mma(const GemmArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // mma.sync with TF32 / bf16 needs sm_80; the launcher never selects this kernel below sm_80
#else
  using Prob = Problem<MODE, T>;
  using Tr = MmaTraits<T>;
  using S = typename Tr::S;
  constexpr int BK = 16, LD = BK + Tr::kPad;
  using MapA = TileMap<kBM, BK, Prob::kAKFast>;
  using MapB = TileMap<kBN, BK, Prob::kBKFast>;
  constexpr int VA = MapA::V, VB = MapB::V;
  __shared__ __align__(16) S As[2][kBM][LD];
  __shared__ __align__(16) S Bs[2][kBN][LD];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int gq = lane >> 2, tq = lane & 3;      // fragment row group / thread-in-group
  const int wm = (warp & 3) * 32, wn = (warp >> 2) * 32;
  const int g = blockIdx.z;
  const int m0 = blockIdx.x * kBM, n0 = blockIdx.y * kBN;
  const int a_row = MapA::row(tid), a_col = MapA::col(tid);
  const int b_row = MapB::row(tid), b_col = MapB::col(tid);
  const auto ra = Prob::row_a(a, m0 + a_row, g);
  const auto rb = Prob::row_b(a, n0 + b_row, g);

  T va[VA], vb[VB];
  auto stage_to_smem = [&](int st) {
    S sa[VA], sb[VB];
#pragma unroll
    for (int v = 0; v < VA; ++v) sa[v] = Tr::to_smem(va[v]);
#pragma unroll
    for (int v = 0; v < VB; ++v) sb[v] = Tr::to_smem(vb[v]);
    // runs are V-aligned inside a row whose pitch is a multiple of 16 bytes: vector stores
    store_vec<S, VA>(&As[st][a_row][a_col], sa);
    store_vec<S, VB>(&Bs[st][b_row][b_col], sb);
  };

  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

  const int nk = (a.Kr + BK - 1) / BK;
  if (nk > 0) {
    Prob::template load_a<VA>(a, ra, a_col, va);
    Prob::template load_b<VB>(a, rb, b_col, vb);
    stage_to_smem(0);
    __syncthreads();
  }
  for (int kt = 0; kt < nk; ++kt) {
    const int st = kt & 1;
    const bool more = kt + 1 < nk;
    if (more) {
      const int k0 = (kt + 1) * BK;
      Prob::template load_a<VA>(a, ra, k0 + a_col, va);
      Prob::template load_b<VB>(a, rb, k0 + b_col, vb);
    }
    if constexpr (std::is_same<T, float>::value) {
#pragma unroll
      for (int ks = 0; ks < BK; ks += 8) {
        uint32_t fa[2][4], fb[4][2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const int r = wm + i * 16 + gq;
          fa[i][0] = lds32(&As[st][r][ks + tq]);
          fa[i][1] = lds32(&As[st][r + 8][ks + tq]);
          fa[i][2] = lds32(&As[st][r][ks + tq + 4]);
          fa[i][3] = lds32(&As[st][r + 8][ks + tq + 4]);
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int c = wn + j * 8 + gq;
          fb[j][0] = lds32(&Bs[st][c][ks + tq]);
          fb[j][1] = lds32(&Bs[st][c][ks + tq + 4]);
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) mma_tf32(acc[i][j], fa[i], fb[j]);
      }
    } else {
      uint32_t fa[2][4], fb[4][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r = wm + i * 16 + gq;
        fa[i][0] = lds32(&As[st][r][2 * tq]);
        fa[i][1] = lds32(&As[st][r + 8][2 * tq]);
        fa[i][2] = lds32(&As[st][r][2 * tq + 8]);
        fa[i][3] = lds32(&As[st][r + 8][2 * tq + 8]);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int c = wn + j * 8 + gq;
        fb[j][0] = lds32(&Bs[st][c][2 * tq]);
        fb[j][1] = lds32(&Bs[st][c][2 * tq + 8]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_16bit<T>(acc[i][j], fa[i], fb[j]);
    }
    if (more) stage_to_smem(st ^ 1);
    __syncthreads();
  }

  // C fragment: c0 (gq, 2tq), c1 (gq, 2tq+1), c2 (gq+8, 2tq), c3 (gq+8, 2tq+1)
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int hi = 0; hi < 2; ++hi) {
      const int m = m0 + wm + i * 16 + gq + hi * 8;
      if (m >= a.M) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int n = n0 + wn + j * 8 + 2 * tq + e;
          if (n < a.Ng) Prob::store(a, m, n, g, acc[i][j][hi * 2 + e]);
        }
    }
#endif
}

// =============================================================================================
// 4. Launchers.
// =============================================================================================

bool fits_int32(int64_t v) { return v >= 0 && v < INT_MAX; }

// Fills the GEMM description of one mode; returns false when a size does not fit the 32-bit index math
// or the grid limits (the caller then falls back to the reference kernel).
bool make_gemm(const ConvParams& p, int mode, GemmArgs& a, dim3& grid) {
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  int64_t M, Ng, Kr;
  if (mode == kFwd) { M = p.N * p.P * p.Q; Ng = Kg; Kr = Cg * p.R * p.S; }
  else if (mode == kBwdData) { M = p.N * p.H * p.W; Ng = Cg; Kr = Kg * p.R * p.S; }
  else { M = Kg; Ng = Cg * p.R * p.S; Kr = p.N * p.P * p.Q; }
  const int64_t dims[] = {p.N, p.C, p.H, p.W, p.K, p.P, p.Q, p.R, p.S, M, Ng, Kr,
                          p.H * p.W, p.P * p.Q, p.stride_h, p.stride_w, p.pad_h + p.H, p.pad_w + p.W,
                          p.dil_h * p.R, p.dil_w * p.S, p.stride_h * p.P + p.dil_h * p.R,
                          p.stride_w * p.Q + p.dil_w * p.S, Kr + 64, M + kBM, Ng + kBN};
  for (int64_t d : dims)
    if (!fits_int32(d)) return false;
  const int64_t gx = (M + kBM - 1) / kBM, gy = (Ng + kBN - 1) / kBN;
  if (gx > INT_MAX || gy > 65535 || p.groups > 65535) return false;
  grid = dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(p.groups));

  a.x = p.x; a.w = p.w; a.b = p.b; a.gy = p.gy;
  a.out = mode == kFwd ? p.y : (mode == kBwdData ? p.gx : p.gw);
  a.N = int(p.N); a.C = int(p.C); a.H = int(p.H); a.W = int(p.W);
  a.K = int(p.K); a.P = int(p.P); a.Q = int(p.Q); a.R = int(p.R); a.S = int(p.S);
  a.Cg = int(Cg); a.Kg = int(Kg);
  a.sh = int(p.stride_h); a.sw = int(p.stride_w); a.ph = int(p.pad_h); a.pw = int(p.pad_w);
  a.dh = int(p.dil_h); a.dw = int(p.dil_w);
  a.M = int(M); a.Ng = int(Ng); a.Kr = int(Kr);
  a.dPQ = FastDiv(p.P * p.Q); a.dQ = FastDiv(p.Q); a.dHW = FastDiv(p.H * p.W); a.dW = FastDiv(p.W);
  a.dRS = FastDiv(p.R * p.S); a.dS = FastDiv(p.S); a.dsh = FastDiv(p.stride_h); a.dsw = FastDiv(p.stride_w);
  a.vecA = false;
  a.vecB = false;
  return true;
}

int device_sm(int device) {
  int major = 0;
  FC_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major;
}

template <int MODE, typename T>
void launch_simt(GemmArgs a, dim3 grid, cudaStream_t stream) {
  constexpr int VA = TileMap<kBM, 8, Problem<MODE, T>::kAKFast>::V;
  constexpr int VB = TileMap<kBN, 8, Problem<MODE, T>::kBKFast>::V;
  constexpr int vbytes_a = VA * sizeof(T) < 16 ? VA * sizeof(T) : 16;
  constexpr int vbytes_b = VB * sizeof(T) < 16 ? VB * sizeof(T) : 16;
  if (MODE == kFwd) a.vecB = a.Kr % VB == 0 && aligned_to(a.w, vbytes_b);
  if (MODE == kBwdWeight) a.vecA = (a.P * a.Q) % VA == 0 && aligned_to(a.gy, vbytes_a);
  conv_gemm_simt<MODE, T><<<grid, kGemmThreads, 0, stream>>>(a);
  FC_LAUNCH_CHECK("conv_gemm_simt");
}

template <int MODE, typename T>
void launch_mma(GemmArgs a, dim3 grid, cudaStream_t stream) {
  constexpr int VA = TileMap<kBM, 16, Problem<MODE, T>::kAKFast>::V;
  constexpr int VB = TileMap<kBN, 16, Problem<MODE, T>::kBKFast>::V;
  constexpr int vbytes_a = VA * sizeof(T) < 16 ? VA * sizeof(T) : 16;
  constexpr int vbytes_b = VB * sizeof(T) < 16 ? VB * sizeof(T) : 16;
  if (MODE == kFwd) a.vecB = a.Kr % VB == 0 && aligned_to(a.w, vbytes_b);
  if (MODE == kBwdWeight) a.vecA = (a.P * a.Q) % VA == 0 && aligned_to(a.gy, vbytes_a);
  conv_gemm_mma<MODE, T><<<grid, kGemmThreads, 0, stream>>>(a);
  FC_LAUNCH_CHECK("conv_gemm_mma");
}

// Runs one GEMM mode with the tiled kernels; false if the sizes need the reference kernel instead.
template <int MODE>
bool run_gemm(const ConvParams& p, const ExecContext& ctx) {
  GemmArgs a;
  dim3 grid;
  if (!make_gemm(p, MODE, a, grid)) return false;
  if (a.M == 0 || a.Ng == 0) return true;  // nothing to write
  cudaStream_t stream = stream_of(ctx);
  const bool tensor_cores = device_sm(ctx.device_index) >= 8;
  switch (p.dtype) {
    case DType::f64: launch_simt<MODE, double>(a, grid, stream); return true;
    case DType::f32:
      if (p.allow_tf32 && tensor_cores) launch_mma<MODE, float>(a, grid, stream);
      else launch_simt<MODE, float>(a, grid, stream);
      return true;
    case DType::f16:
      if (!tensor_cores) return false;
      launch_mma<MODE, __half>(a, grid, stream);
      return true;
    case DType::bf16:
      if (!tensor_cores) return false;
      launch_mma<MODE, __nv_bfloat16>(a, grid, stream);
      return true;
  }
  return false;
}

template <typename T>
void launch_reference(const ConvParams& p, int mode, cudaStream_t stream) {
  const int64_t Cg = p.C / p.groups;
  if (mode == kFwd) {
    const int64_t n = p.N * p.K * p.P * p.Q;
    if (n == 0) return;
    conv_fwd_reference<T><<<grid_for(n), kEltThreads, 0, stream>>>(p);
    FC_LAUNCH_CHECK("conv_fwd_reference");
  } else if (mode == kBwdData) {
    const int64_t n = p.N * p.C * p.H * p.W;
    if (n == 0) return;
    conv_bwd_data_reference<T><<<grid_for(n), kEltThreads, 0, stream>>>(p);
    FC_LAUNCH_CHECK("conv_bwd_data_reference");
  } else {
    const int64_t n = p.K * Cg * p.R * p.S;
    if (n == 0) return;
    conv_bwd_weight_reference<T><<<grid_for(n), kEltThreads, 0, stream>>>(p);
    FC_LAUNCH_CHECK("conv_bwd_weight_reference");
  }
}

void run_reference(const ConvParams& p, int mode, cudaStream_t stream) {
  FC_DISPATCH_FLOAT(p.dtype, "conv2d", [&] { launch_reference<scalar_t>(p, mode, stream); });
}

// The GEMM N dimension below which the direct (one thread per output) kernel beats a 64-wide tile.
constexpr int64_t kDirectMaxN = 16;
// Output channels per group below which the weight gradient uses one block per weight (GEMM rows empty).
constexpr int64_t kBlockReduceMaxK = 8;

}  // namespace

namespace detail {
void conv_bias_grad(const ConvParams& p, cudaStream_t stream) {
  if (p.K == 0) return;
  FC_DISPATCH_FLOAT(p.dtype, "conv2d_backward", [&] {
    conv_bias_grad_kernel<scalar_t><<<static_cast<unsigned>(p.K), kRedThreads, 0, stream>>>(p);
    FC_LAUNCH_CHECK("conv_bias_grad_kernel");
  });
}
}  // namespace detail

namespace {
// Weight gradient by block reductions (depthwise-like problems); false if the grid would be too large.
bool run_bwd_weight_blockreduce(const ConvParams& p, cudaStream_t stream) {
  const int64_t n = p.K * (p.C / p.groups) * p.R * p.S;
  if (n > INT_MAX) return false;
  if (n == 0) return true;
  FC_DISPATCH_FLOAT(p.dtype, "conv2d_backward", [&] {
    conv_bwd_weight_blockreduce<scalar_t><<<static_cast<unsigned>(n), kRedThreads, 0, stream>>>(p);
    FC_LAUNCH_CHECK("conv_bwd_weight_blockreduce");
  });
  return true;
}
}  // namespace

void conv2d_forward(const ConvParams& p, const ExecContext& ctx) {
  DeviceGuard guard(ctx.device_index);
  const bool direct = p.variant == Variant::reference || p.K / p.groups < kDirectMaxN;
  if (direct || !run_gemm<kFwd>(p, ctx)) run_reference(p, kFwd, stream_of(ctx));
}

void conv2d_backward(const ConvParams& p, const ExecContext& ctx) {
  DeviceGuard guard(ctx.device_index);
  cudaStream_t stream = stream_of(ctx);
  const bool ref = p.variant == Variant::reference;
  if (p.gx) {
    const bool direct = ref || p.C / p.groups < kDirectMaxN;
    if (direct || !run_gemm<kBwdData>(p, ctx)) run_reference(p, kBwdData, stream);
  }
  if (p.gw) {
    bool done = false;
    if (!ref && p.K / p.groups < kBlockReduceMaxK) done = run_bwd_weight_blockreduce(p, stream);
    if (!ref && !done) done = run_gemm<kBwdWeight>(p, ctx);
    if (!done) run_reference(p, kBwdWeight, stream);
  }
  if (p.gb) detail::conv_bias_grad(p, stream);
}

}  // namespace cuda
}  // namespace fastconv
