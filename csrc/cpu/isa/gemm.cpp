// Register-tiled GEMM micro-kernel, compiled once per ISA (FASTCONV_ISA =
// avx512 / avx2 / generic; see CMakeLists.txt) into namespace
// fastconv::cpu::<isa>, plus that ISA's KernelTable (cpu_features.h).
//
//   C[i][j] (+)= sum_k A[k][i] * B[k][j]      i < MR, j < NR = NRV * L
//   A: packed panel  kc x MR, row stride lda  (conv: weights / gy^T, broadcast)
//   B: packed strip  kc x NR  (conv: im2col pixels, loaded as vectors), 64-byte aligned
//   C: row-major, leading dimension ldc (conv: y rows, or gw rows)
// MR x NRV accumulators live in registers for the whole k loop:
//   avx512: 8 x 3 zmm (24 accumulators of 32), avx2: 6 x 2 ymm (12 of 16),
//   generic: 6 x 2 16-byte vectors (GCC vector extensions, no -m flags; SSE2 on x86-64).
// Tiles of fewer rows (m_valid < MR) load and store only their valid rows;
// narrower ones (n_valid < NR) run the same kernel on a stack tile and copy
// the valid corner, so every element of C is summed in the same order
// whatever tile it lands in.
// Also here, for the same ISA: tile_offs (B rows read in place at offsets,
// for the direct conv; a narrower strip runs on fewer vectors, the last one
// masked), tile_offs_scatter (the same, each vector's lanes stored packed
// at its own offset: strips over padded rows written to y), tile_masked
// (avx512 only: tile_offs with its lanes masked per tap, the 'same' conv
// read from x in place), transpose
// (L x L shuffle blocks; packs gy^T and col^T for the weight gradient) and
// strided_copy (strided im2col rows),
// and dot_tile / dot_rows_tile (conv_gemm.h: the weight gradient with pixels
// as lanes, over a flat pixel run or over output rows read in place; avx512
// 6 x 4 zmm accumulators, avx2 / generic 4 x 3).
#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(FASTCONV_ISA_avx512) || defined(FASTCONV_ISA_avx2)
#include <immintrin.h>
#endif

#include "common/cpu_features.h"
#include "cpu/isa/conv_gemm.h"

#define FASTCONV_STR2(x) #x
#define FASTCONV_STR(x) FASTCONV_STR2(x)
#define FASTCONV_ISA_NAME_STR FASTCONV_STR(FASTCONV_ISA)

#ifndef FASTCONV_ISA
#error "FASTCONV_ISA must name the instruction set being compiled"
#endif

namespace fastconv::cpu::FASTCONV_ISA {
namespace {

#if defined(FASTCONV_ISA_avx512)
constexpr int kVecBytes = 64;
constexpr int kMR = 8, kNRV = 3;
constexpr int kDMR = 6, kDNR = 4;  // dot tile: 24 accumulators + 4 B vectors + 1 A
#elif defined(FASTCONV_ISA_avx2)
constexpr int kVecBytes = 32;
constexpr int kMR = 6, kNRV = 2;
constexpr int kDMR = 4, kDNR = 3;  // 12 accumulators + 3 B vectors (A from memory)
#else
constexpr int kVecBytes = 16;
constexpr int kMR = 6, kNRV = 2;
constexpr int kDMR = 4, kDNR = 3;
#endif

// The first n < L lanes of a vector from / to memory; nothing else is touched
// (the masked moves of the ISA, or scalar moves).
template <typename T, typename V>
__attribute__((always_inline)) inline V load_part(const T* p, int n) {
#if defined(FASTCONV_ISA_avx512)
  if constexpr (sizeof(T) == 4) return (V)_mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p);
  else return (V)_mm512_maskz_loadu_pd(__mmask8((1u << n) - 1), p);
#else
  V v{};
  for (int i = 0; i < n; ++i) v[i] = p[i];
  return v;
#endif
}

template <typename T, typename V>
__attribute__((always_inline)) inline void store_part(T* p, V v, int n) {
#if defined(FASTCONV_ISA_avx512)
  if constexpr (sizeof(T) == 4) _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), (__m512)v);
  else _mm512_mask_storeu_pd(p, __mmask8((1u << n) - 1), (__m512d)v);
#else
  for (int i = 0; i < n; ++i) p[i] = v[i];
#endif
}

// The lanes of v selected by mask, packed in lane order to p, p + 1, ...
// (compressed in registers, then one masked store).
template <typename T, typename V>
__attribute__((always_inline)) inline void store_lanes(T* p, V v, uint32_t mask) {
#if defined(FASTCONV_ISA_avx512)
  const int n = __builtin_popcount(mask);
  if constexpr (sizeof(T) == 4)
    _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), _mm512_maskz_compress_ps(__mmask16(mask), (__m512)v));
  else
    _mm512_mask_storeu_pd(p, __mmask8((1u << n) - 1), _mm512_maskz_compress_pd(__mmask8(mask), (__m512d)v));
#else
  constexpr int L = kVecBytes / int(sizeof(T));
  for (int l = 0, k = 0; l < L; ++l)
    if (mask >> l & 1u) p[k++] = v[l];
#endif
}

// A tile's accumulators from C (acc: rows i < m_rows, the last vector's
// lanes from last_lanes on left zero) or from the bias (zero without one),
// and back to C (rows i < m_rows, the last vector's lanes before last_lanes).
template <typename T, int MR, int NRV, typename V>
__attribute__((always_inline)) inline void tile_start(V (&c)[MR][NRV], const T* __restrict C, int64_t ldc, bool acc,
                                                      const T* __restrict bias, int m_rows, int last_lanes) {
  constexpr int L = kVecBytes / int(sizeof(T));
  typedef T VU __attribute__((vector_size(kVecBytes), aligned(alignof(T))));
  const bool part = last_lanes < L;
  if (acc) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NRV; ++j)
        c[i][j] = i >= m_rows                ? V{}
                  : j == NRV - 1 && part ? load_part<T, V>(C + i * ldc + j * L, last_lanes)
                                         : *reinterpret_cast<const VU*>(C + i * ldc + j * L);
  } else {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      V bv = (bias && i < m_rows ? bias[i] : T(0)) - V{};
#pragma GCC unroll 8
      for (int j = 0; j < NRV; ++j) c[i][j] = bv;
    }
  }
}

template <typename T, int MR, int NRV, typename V>
__attribute__((always_inline)) inline void tile_finish(const V (&c)[MR][NRV], T* __restrict C, int64_t ldc, int m_rows,
                                                       int last_lanes) {
  constexpr int L = kVecBytes / int(sizeof(T));
  typedef T VU __attribute__((vector_size(kVecBytes), aligned(alignof(T))));
  const bool part = last_lanes < L;
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
    if (i < m_rows)
#pragma GCC unroll 8
      for (int j = 0; j < NRV; ++j)
        if (j == NRV - 1 && part) store_part(C + i * ldc + j * L, c[i][j], last_lanes);
        else *reinterpret_cast<VU*>(C + i * ldc + j * L) = c[i][j];
}

template <typename T, int MR, int NRV, bool kOffs, bool kScatter = false>
__attribute__((always_inline)) inline void tile_full(int64_t kc, const T* __restrict A, int64_t lda,
                                                     const T* __restrict B,
                                                     const int64_t* __restrict boff, T* __restrict C,
                                                     int64_t ldc, bool acc, const T* __restrict bias,
                                                     int m_rows = MR, int last_lanes = kVecBytes / int(sizeof(T)),
                                                     const int64_t* __restrict voff = nullptr,
                                                     const uint32_t* __restrict vmask = nullptr,
                                                     const T* __restrict cin = nullptr, int64_t ldcin = 0) {
  constexpr int L = kVecBytes / int(sizeof(T));
  constexpr int NR = L * NRV;
  typedef T V __attribute__((vector_size(kVecBytes)));
  typedef T VU __attribute__((vector_size(kVecBytes), aligned(alignof(T))));
  V c[MR][NRV];
  // Rows i >= m_rows of C are neither read nor written (their A rows are
  // zero padding): a tile of fewer valid rows needs no stack copy. Nor are
  // the lanes of the last vector from last_lanes on.
  constexpr uint32_t kAll = (uint64_t(1) << L) - 1;
  if (acc && kScatter) {  // from the plain tile cin (row stride ldcin)
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NRV; ++j)
        c[i][j] = i < m_rows ? *reinterpret_cast<const VU*>(cin + i * ldcin + j * L) : V{};
  } else {
    tile_start<T, MR, NRV>(c, C, ldc, acc, bias, m_rows, last_lanes);
  }
  const T* a = A;
  const V* b = kOffs ? nullptr : reinterpret_cast<const V*>(__builtin_assume_aligned(B, kVecBytes));
  for (int64_t k = 0; k < kc; ++k) {
    V bk[NRV];
    if constexpr (kOffs) {
      const T* bp = B + boff[k];
#pragma GCC unroll 8
      for (int j = 0; j < NRV; ++j) bk[j] = *reinterpret_cast<const VU*>(bp + j * L);
    } else {
#pragma GCC unroll 8
      for (int j = 0; j < NRV; ++j) bk[j] = b[j];
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      V ai = a[i] - V{};  // broadcast (x - 0 folds to x; 0 + x would not, for x = -0)
#pragma GCC unroll 8
      for (int j = 0; j < NRV; ++j) c[i][j] += ai * bk[j];
    }
    a += lda;
    if constexpr (!kOffs) b += NRV;
  }
  if constexpr (kScatter) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
      if (i < m_rows)
#pragma GCC unroll 8
        for (int j = 0; j < NRV; ++j) {
          if (vmask[j] == kAll) *reinterpret_cast<VU*>(C + i * ldc + voff[j]) = c[i][j];
          else if (vmask[j]) store_lanes(C + i * ldc + voff[j], c[i][j], vmask[j]);
        }
  } else {
    tile_finish<T, MR, NRV>(c, C, ldc, m_rows, last_lanes);
  }
  (void)NR;
}

// Packed B (the strip is NR wide whatever n_valid): a narrower tile runs on
// a stack copy and stores its valid corner.
template <typename T>
void tile(int64_t kc, const T* A, int64_t lda, const T* B, T* C, int64_t ldc, int m_valid,
          int n_valid, bool acc, const T* bias) {
  constexpr int L = kVecBytes / int(sizeof(T));
  constexpr int NR = L * kNRV;
  if (n_valid == NR) {
    tile_full<T, kMR, kNRV, false>(kc, A, lda, B, nullptr, C, ldc, acc, bias, m_valid);
    return;
  }
  alignas(64) T tmp[kMR * NR];
  T bpad[kMR];
  for (int i = 0; i < kMR; ++i) bpad[i] = (bias && i < m_valid) ? bias[i] : T(0);
  if (acc) {
    std::memset(tmp, 0, sizeof tmp);
    for (int i = 0; i < m_valid; ++i)
      for (int j = 0; j < n_valid; ++j) tmp[i * NR + j] = C[i * ldc + j];
  }
  tile_full<T, kMR, kNRV, false>(kc, A, lda, B, nullptr, tmp, NR, acc, bias ? bpad : nullptr);
  for (int i = 0; i < m_valid; ++i)
    for (int j = 0; j < n_valid; ++j) C[i * ldc + j] = tmp[i * NR + j];
}

// B read in place needs no packed strip width: a narrower strip runs on as
// many vectors as it covers (the last one masked), so a row's tail of
// n_valid < NR columns costs its vectors, not a whole tile.
template <typename T>
void tile_offs(int64_t kc, const T* A, const T* B, const int64_t* boff, T* C, int64_t ldc,
               int m_valid, int n_valid, bool acc, const T* bias) {
  constexpr int L = kVecBytes / int(sizeof(T));
  const int nv = (n_valid + L - 1) / L, last = n_valid - (nv - 1) * L;
  static_assert(kNRV <= 3, "tile_offs: one case per vector count");
  if (nv >= 3) tile_full<T, kMR, kNRV, true>(kc, A, kMR, B, boff, C, ldc, acc, bias, m_valid, last);
  else if (nv == 2) tile_full<T, kMR, 2, true>(kc, A, kMR, B, boff, C, ldc, acc, bias, m_valid, last);
  else tile_full<T, kMR, 1, true>(kc, A, kMR, B, boff, C, ldc, acc, bias, m_valid, last);
}

// tile_offs whose columns land in C by vector: vector j's lanes selected by
// vmask[j] go, packed, to C + voff[j] (+ i ldc for row i); the rest are
// dropped. Accumulating, it adds to the plain tile cin (row stride ldcin).
// The direct conv's strips over padded rows, written straight to y without
// their garbage columns.
// Trailing vectors with no lanes to store (a block's last strip) are not
// computed.
template <typename T>
void tile_offs_scatter(int64_t kc, const T* A, const T* B, const int64_t* boff, const T* cin, int64_t ldcin,
                       T* C, int64_t ldc, int m_valid, const int64_t* voff, const uint32_t* vmask, bool acc,
                       const T* bias) {
  constexpr int L = kVecBytes / int(sizeof(T));
  int nv = kNRV;
  while (nv > 1 && vmask[nv - 1] == 0) --nv;
  static_assert(kNRV <= 3, "tile_offs_scatter: one case per vector count");
  if (nv >= 3)
    tile_full<T, kMR, kNRV, true, true>(kc, A, kMR, B, boff, C, ldc, acc, bias, m_valid, L, voff, vmask, cin, ldcin);
  else if (nv == 2)
    tile_full<T, kMR, 2, true, true>(kc, A, kMR, B, boff, C, ldc, acc, bias, m_valid, L, voff, vmask, cin, ldcin);
  else
    tile_full<T, kMR, 1, true, true>(kc, A, kMR, B, boff, C, ldc, acc, bias, m_valid, L, voff, vmask, cin, ldcin);
}

#if defined(FASTCONV_ISA_avx512)
// tile_offs under masks: vector j's lanes are masks[j * mld + q] for tap q:
// q = tap for the first run0 reduction steps, then one more every run steps
// (the 'same' conv's reduction in (r, s, c) order: a tap's lanes in the
// padding are the same for every channel, so its masks stay in mask
// registers for the whole run). The masks go on the FMAs, where they cost
// nothing: a masked-off lane of C is left as it is, whatever B holds there.
// kInside (all of B's vectors readable): B is loaded whole; otherwise the
// loads are masked too, so that lanes outside B's buffer are not read.
// (Masked loads everywhere measured ~12% slower on GoogLeNet 4a 5x5's data
// gradient: they take an FMA port each.)
template <typename T, int MR, int NRV, bool kInside>
__attribute__((always_inline)) inline void tile_masked_body(int64_t kc, const T* __restrict A,
                                                            const T* __restrict B,
                                                            const int64_t* __restrict boff,
                                                            const uint16_t* __restrict masks, int64_t mld,
                                                            int64_t tap, int64_t run0, int64_t run,
                                                            T* __restrict C,
                                                            int64_t ldc, bool acc, const T* __restrict bias,
                                                            int m_rows, int last_lanes) {
  constexpr int L = kVecBytes / int(sizeof(T));
  typedef T V __attribute__((vector_size(kVecBytes)));
  typedef T VU __attribute__((vector_size(kVecBytes), aligned(alignof(T))));
  V c[MR][NRV];
  tile_start<T, MR, NRV>(c, C, ldc, acc, bias, m_rows, last_lanes);
  const T* a = A;
  for (int64_t k = 0, n = run0; k < kc; k += n, n = run, ++tap) {
    n = n < kc - k ? n : kc - k;
    __mmask16 m[NRV];
#pragma GCC unroll 8
    for (int j = 0; j < NRV; ++j) m[j] = masks[j * mld + tap];
    const int64_t* bo = boff + k;
    for (int64_t i = 0; i < n; ++i) {
      const T* bp = B + bo[i];
      V bk[NRV];
#pragma GCC unroll 8
      for (int j = 0; j < NRV; ++j)
        if constexpr (kInside) bk[j] = *reinterpret_cast<const VU*>(bp + j * L);
        else if constexpr (sizeof(T) == 4) bk[j] = (V)_mm512_maskz_loadu_ps(m[j], bp + j * L);
        else bk[j] = (V)_mm512_maskz_loadu_pd(__mmask8(m[j]), bp + j * L);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        V ar = a[r] - V{};
#pragma GCC unroll 8
        for (int j = 0; j < NRV; ++j)
          if constexpr (sizeof(T) == 4)
            c[r][j] = (V)_mm512_mask3_fmadd_ps((__m512)ar, (__m512)bk[j], (__m512)c[r][j], m[j]);
          else c[r][j] = (V)_mm512_mask3_fmadd_pd((__m512d)ar, (__m512d)bk[j], (__m512d)c[r][j], __mmask8(m[j]));
      }
      a += MR;
    }
  }
  tile_finish<T, MR, NRV>(c, C, ldc, m_rows, last_lanes);
}

template <typename T>
void tile_masked(int64_t kc, const T* A, const T* B, const int64_t* boff, const uint16_t* masks, int64_t mld,
                 int64_t tap, int64_t run0, int64_t run, bool inside, T* C, int64_t ldc, int m_valid, int n_valid,
                 bool acc, const T* bias) {
  constexpr int L = kVecBytes / int(sizeof(T));
  const int nv = (n_valid + L - 1) / L, last = n_valid - (nv - 1) * L;
  static_assert(kNRV == 3, "tile_masked: one case per vector count");
#define FC_TILE_MASKED(NRV, IN) \
  tile_masked_body<T, kMR, NRV, IN>(kc, A, B, boff, masks, mld, tap, run0, run, C, ldc, acc, bias, m_valid, last)
  if (inside) {
    if (nv >= 3) FC_TILE_MASKED(3, true);
    else if (nv == 2) FC_TILE_MASKED(2, true);
    else FC_TILE_MASKED(1, true);
  } else {
    if (nv >= 3) FC_TILE_MASKED(3, false);
    else if (nv == 2) FC_TILE_MASKED(2, false);
    else FC_TILE_MASKED(1, false);
  }
#undef FC_TILE_MASKED
}
#endif

// L x L in-register transpose by block swaps (log2 L stages of shuffles),
// then the scalar remainder; row r of the source starts at row(r).
template <typename T, typename RowFn>
inline void transpose_from(RowFn row, int rows, int64_t cols, T* dst, int64_t ldd) {
  constexpr int L = kVecBytes / int(sizeof(T));
  typedef T V __attribute__((vector_size(kVecBytes)));
  typedef T VU __attribute__((vector_size(kVecBytes), aligned(alignof(T))));
  typedef __typeof__(V{} < V{}) M;  // integer vector of the same shape
  constexpr int kStages = L == 16 ? 4 : L == 8 ? 3 : L == 4 ? 2 : L == 2 ? 1 : 0;
  M lo[kStages > 0 ? kStages : 1], hi[kStages > 0 ? kStages : 1];  // loop invariant
  for (int st = 0, h = L / 2; st < kStages; ++st, h /= 2)
    for (int q = 0; q < L; ++q) {
      lo[st][q] = (q & h) ? L + q - h : q;
      hi[st][q] = (q & h) ? L + q : q + h;
    }
  const int rb = rows / L * L;
  const int64_t cb = cols / L * L;
  auto block = [&](V (&v)[L]) {
#pragma GCC unroll 4
    for (int st = 0; st < kStages; ++st) {
      const int h = L >> (st + 1);
#pragma GCC unroll 16
      for (int i = 0; i < L; ++i) {
        if (i & h) continue;
        const V a = v[i], b = v[i + h];
        v[i] = __builtin_shuffle(a, b, lo[st]);
        v[i + h] = __builtin_shuffle(a, b, hi[st]);
      }
    }
  };
  for (int r0 = 0; r0 < rb; r0 += L) {
    for (int64_t c0 = 0; c0 < cb; c0 += L) {
      V v[L];
#pragma GCC unroll 16
      for (int i = 0; i < L; ++i) v[i] = *reinterpret_cast<const VU*>(row(r0 + i) + c0);
      block(v);
#pragma GCC unroll 16
      for (int i = 0; i < L; ++i) *reinterpret_cast<VU*>(dst + (c0 + i) * ldd + r0) = v[i];
    }
#if defined(FASTCONV_ISA_avx512)
    if (cols > cb) {  // the last columns by masked loads, not one by one (rotated 3x3 weights, 9
                      // columns: AlexNet conv4's and ResNet's 7x7 512-channel rotated passes 1.017x)
      const int ct = int(cols - cb);
      V v[L];
#pragma GCC unroll 16
      for (int i = 0; i < L; ++i) v[i] = load_part<T, V>(row(r0 + i) + cb, ct);
      block(v);
      for (int i = 0; i < ct; ++i) *reinterpret_cast<VU*>(dst + (cb + i) * ldd + r0) = v[i];
    }
#else
    for (int64_t c = cb; c < cols; ++c)
      for (int i = 0; i < L; ++i) dst[c * ldd + r0 + i] = row(r0 + i)[c];
#endif
  }
  for (int r = rb; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r] = row(r)[c];
}

template <typename T>
void transpose(const T* src, int64_t lds, int rows, int64_t cols, T* dst, int64_t ldd) {
  transpose_from<T>([=](int r) { return src + r * lds; }, rows, cols, dst, ldd);
}

template <typename T>
void transpose_rows(const T* src, const int64_t* row_idx, int64_t lds, int rows, int64_t cols, T* dst,
                    int64_t ldd) {
  transpose_from<T>([=](int r) { return src + row_idx[r] * lds; }, rows, cols, dst, ldd);
}

template <typename T>
void strided_copy(T* __restrict d, const T* __restrict src, int64_t n, int64_t stride) {
  switch (stride) {  // constant strides let the compiler use permutes
    case 2: for (int64_t i = 0; i < n; ++i) d[i] = src[2 * i]; break;
    case 4: for (int64_t i = 0; i < n; ++i) d[i] = src[4 * i]; break;
    default: for (int64_t i = 0; i < n; ++i) d[i] = src[i * stride]; break;
  }
}

// Masks of the lane-reduction tree of dot_tile: level lev (group width
// w = L >> lev) folds pairs of vectors; src[q] = which input vector lane q of
// the result sums.
template <int L>
struct DotMasks {
  int lo[5][L] = {}, hi[5][L] = {};
  int src[L] = {};
  constexpr DotMasks() {
    int lab[L][L] = {};
    for (int v = 0; v < L; ++v)
      for (int q = 0; q < L; ++q) lab[v][q] = v;
    int nvec = L, lev = 0;
    for (int w = L; w >= 2; w /= 2, ++lev) {
      for (int q = 0; q < L; ++q) {
        const int G = q / (w / 2), pp = q % (w / 2), gg = G / 2;
        lo[lev][q] = (G % 2 ? L : 0) + gg * w + pp;
        hi[lev][q] = lo[lev][q] + w / 2;
      }
      for (int v = 0; v < nvec / 2; ++v) {
        int out[L] = {};
        for (int q = 0; q < L; ++q) {
          const int idx = lo[lev][q];
          out[q] = idx < L ? lab[2 * v][idx] : lab[2 * v + 1][idx - L];
        }
        for (int q = 0; q < L; ++q) lab[v][q] = out[q];
      }
      nvec /= 2;
    }
    for (int q = 0; q < L; ++q) src[q] = lab[0][q];
  }
};
template <int L>
constexpr DotMasks<L> kDotMasks{};

// Adds the kDMR x kDNR lane vectors of a dot tile to C: lanes summed by a
// shuffle tree (groups of L vectors, fixed order).
template <typename T, typename V>
__attribute__((always_inline)) inline void dot_finish(const V (&c)[kDMR][kDNR], T* __restrict C, int64_t ldc,
                                                      int m_valid, int n_valid) {
  constexpr int L = kVecBytes / int(sizeof(T));
  constexpr int NA = kDMR * kDNR;
  constexpr int NG = (NA + L - 1) / L;
  typedef __typeof__(V{} < V{}) M;
  // shuffle masks per level (w = L, L/2, ..., 2) and the final lane -> vector
  // map, all compile-time constants
  const DotMasks<L>& mk = kDotMasks<L>;
  const V* cf = &c[0][0];
#pragma GCC unroll 4
  for (int gi = 0; gi < NG; ++gi) {
    V r[L];
#pragma GCC unroll 16
    for (int q = 0; q < L; ++q) r[q] = gi * L + q < NA ? cf[gi * L + q] : V{};
    int nvec = L, lev = 0;
#pragma GCC unroll 5
    for (int w = L; w >= 2; w /= 2, ++lev) {
      M lo, hi;
#pragma GCC unroll 16
      for (int q = 0; q < L; ++q) { lo[q] = mk.lo[lev][q]; hi[q] = mk.hi[lev][q]; }
#pragma GCC unroll 8
      for (int v = 0; v < nvec / 2; ++v)
        r[v] = __builtin_shuffle(r[2 * v], r[2 * v + 1], lo) + __builtin_shuffle(r[2 * v], r[2 * v + 1], hi);
      nvec /= 2;
    }
    (void)nvec;
    alignas(64) T out[L];
    *reinterpret_cast<V*>(out) = r[0];
    if (m_valid == kDMR && n_valid == kDNR) {
#pragma GCC unroll 16
      for (int q = 0; q < L; ++q) {
        const int e = gi * L + mk.src[q];
        if (e < NA) C[(e / kDNR) * ldc + e % kDNR] += out[q];
      }
    } else {
      for (int q = 0; q < L; ++q) {
        const int e = gi * L + mk.src[q];
        const int i = e / kDNR, j = e % kDNR;
        if (e < NA && i < m_valid && j < n_valid) C[i * ldc + j] += out[q];
      }
    }
  }
}

// One vector of pixels of a dot tile: c[i][j] += A row i (at a + i lda) * b[j].
template <typename T, typename V>
__attribute__((always_inline)) inline void dot_step(V (&c)[kDMR][kDNR], const V (&b)[kDNR],
                                                    const T* __restrict a, int64_t lda) {
  typedef T VU __attribute__((vector_size(kVecBytes), aligned(alignof(T))));
#pragma GCC unroll 16
  for (int i = 0; i < kDMR; ++i) {
    const V av = *reinterpret_cast<const VU*>(a + i * lda);
#pragma GCC unroll 8
    for (int j = 0; j < kDNR; ++j) c[i][j] += av * b[j];
  }
}

// Weight-gradient dot tile (conv_gemm.h): lanes are pixels.
template <typename T>
void dot_tile(int64_t nv, const T* __restrict A, int64_t lda, const T* __restrict B, int64_t ldb,
              T* __restrict C, int64_t ldc, int m_valid, int n_valid) {
  constexpr int L = kVecBytes / int(sizeof(T));
  typedef T V __attribute__((vector_size(kVecBytes)));
  typedef T VU __attribute__((vector_size(kVecBytes), aligned(alignof(T))));
  V c[kDMR][kDNR];
#pragma GCC unroll 16
  for (int i = 0; i < kDMR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < kDNR; ++j) c[i][j] = V{};
  for (int64_t v = 0; v < nv; ++v) {
    V b[kDNR];
#pragma GCC unroll 8
    for (int j = 0; j < kDNR; ++j) b[j] = *reinterpret_cast<const VU*>(B + j * ldb + v * L);
    dot_step<T>(c, b, A + v * L, lda);
  }
  dot_finish(c, C, ldc, m_valid, n_valid);
}

// The dot tile over rows of a padded x copy (conv_gemm.h DotRows).
template <typename T>
void dot_rows_tile(const detail::DotRows& d, const T* __restrict A, int64_t lda, const T* __restrict B,
                   const int64_t* __restrict boff, T* __restrict C, int64_t ldc, int m_valid, int n_valid) {
  constexpr int L = kVecBytes / int(sizeof(T));
  typedef T V __attribute__((vector_size(kVecBytes)));
  typedef T VU __attribute__((vector_size(kVecBytes), aligned(alignof(T))));
  typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> I;
  typedef I M __attribute__((vector_size(kVecBytes)));
  M lane = {};
#pragma GCC unroll 16
  for (int q = 0; q < L; ++q) lane[q] = I(q);
  const M keep = lane < I(d.tail);
  V c[kDMR][kDNR];
#pragma GCC unroll 16
  for (int i = 0; i < kDMR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < kDNR; ++j) c[i][j] = V{};
  const T* bj[kDNR];
#pragma GCC unroll 8
  for (int j = 0; j < kDNR; ++j) bj[j] = B + boff[j];
  for (int64_t img = 0; img < d.nimg; ++img)
    for (int64_t row = 0; row < d.nrows; ++row) {
      const T* ar = A + img * d.a_img + row * d.a_row;
      const int64_t bo = img * d.b_img + row * d.b_row;
      for (int64_t v = 0; v < d.nfull; ++v) {
        V b[kDNR];
#pragma GCC unroll 8
        for (int j = 0; j < kDNR; ++j) b[j] = *reinterpret_cast<const VU*>(bj[j] + bo + v * L);
        dot_step<T>(c, b, ar + v * L, lda);
      }
      if (d.tail) {
        const int64_t v = d.nfull;
        V b[kDNR];
#pragma GCC unroll 8
        for (int j = 0; j < kDNR; ++j) b[j] = keep ? *reinterpret_cast<const VU*>(bj[j] + bo + v * L) : V{};
        dot_step<T>(c, b, ar + v * L, lda);
      }
    }
  dot_finish(c, C, ldc, m_valid, n_valid);
}

// Channel-lane forward tile (conv_gemm.h LaneTileFn). A border class's
// weights (woff) jump between taps, past what the hardware prefetchers
// follow: fetched by hand kPfd steps ahead (AlexNet conv4's rotated pass,
// half its FMAs in border classes, 1.02x at 8 steps, 1.04x at 16; 32 no
// better; its contiguous-weight bound was 1.06x).
constexpr int64_t kPfd = 16;
template <typename T, int MP, int NKV, bool kIdx>
__attribute__((always_inline)) inline void lane_tile_body(int64_t kc, const T* __restrict W,
                                                          const int64_t* __restrict woff,
                                                          const T* const* __restrict xp,
                                                          const int64_t* __restrict boff, T* __restrict C,
                                                          int64_t ldc, bool acc, const T* __restrict bias) {
  constexpr int L = kVecBytes / int(sizeof(T));
  constexpr int KW = NKV * L;
  typedef T V __attribute__((vector_size(kVecBytes)));
  typedef T VU __attribute__((vector_size(kVecBytes), aligned(alignof(T))));
  V c[MP][NKV];
  const T* x[MP];
#pragma GCC unroll 32
  for (int p = 0; p < MP; ++p) x[p] = xp[p];
#pragma GCC unroll 32
  for (int p = 0; p < MP; ++p)
#pragma GCC unroll 8
    for (int j = 0; j < NKV; ++j)
      c[p][j] = acc ? *reinterpret_cast<const VU*>(C + p * ldc + j * L)
                    : (bias ? *reinterpret_cast<const VU*>(bias + j * L) : V{});
  for (int64_t t = 0; t < kc; ++t) {
    const int64_t o = boff[t];
    V wv[NKV];
#pragma GCC unroll 8
    for (int j = 0; j < NKV; ++j) wv[j] = *reinterpret_cast<const V*>(W + (kIdx ? woff[t] : t * KW) + j * L);
    if (kIdx && t + kPfd < kc) {
#pragma GCC unroll 8
      for (int j = 0; j < KW * int(sizeof(T)) / 64; ++j)
        __builtin_prefetch(W + woff[t + kPfd] + j * (64 / int(sizeof(T))), 0, 3);
    }
#pragma GCC unroll 32
    for (int p = 0; p < MP; ++p) {
      const V xv = x[p][o] - V{};
#pragma GCC unroll 8
      for (int j = 0; j < NKV; ++j) c[p][j] += wv[j] * xv;
    }
  }
#pragma GCC unroll 32
  for (int p = 0; p < MP; ++p)
#pragma GCC unroll 8
    for (int j = 0; j < NKV; ++j) *reinterpret_cast<VU*>(C + p * ldc + j * L) = c[p][j];
}

template <typename T, int MP, int NKV>
void lane_tile(int64_t kc, const T* W, const int64_t* woff, const T* const* xp, const int64_t* boff, T* C,
               int64_t ldc, bool acc, const T* bias) {
  if (woff) lane_tile_body<T, MP, NKV, true>(kc, W, woff, xp, boff, C, ldc, acc, bias);
  else lane_tile_body<T, MP, NKV, false>(kc, W, nullptr, xp, boff, C, ldc, acc, bias);
}

#if defined(FASTCONV_ISA_avx512)
// Pixels per tile are capped by the general registers, one pointer each, not
// by the vector registers: with 12 pointers and 24 GCC kept some in vector
// registers and moved them back on the FMA port every step. Measured: the
// two-vector tile at 8 pixels, not 12, 1.05-1.1x on the weight gradients of
// ResNet-20's 32-channel 3x3 and GoogLeNet 3a 5x5; the one-vector tile at 12,
// not 24, 1.06x on ResNet-20's 16-channel 3x3 weight gradient.
constexpr int kLaneWideMP = 6, kLaneWideNKV = 4, kLaneNarrowMP = 8, kLaneNarrowNKV = 2, kLaneSingleMP = 12;
constexpr int kLaneMidMP = 8, kLaneMidNKV = 3;  // 48 channels (GoogLeNet 4a 5x5)
#else
constexpr int kLaneWideMP = 4, kLaneWideNKV = 3, kLaneNarrowMP = 6, kLaneNarrowNKV = 2, kLaneSingleMP = 12;
constexpr int kLaneMidMP = kLaneWideMP, kLaneMidNKV = kLaneWideNKV;  // three vectors are the wide tile here
#endif

}  // namespace

const detail::LaneKernels& lane_kernels() {
  static const detail::LaneKernels d = [] {
    detail::LaneKernels k;
    k.vec_bytes = kVecBytes;
    k.wide = {kLaneWideMP, kLaneWideNKV, &lane_tile<float, kLaneWideMP, kLaneWideNKV>,
              &lane_tile<double, kLaneWideMP, kLaneWideNKV>};
    k.narrow = {kLaneNarrowMP, kLaneNarrowNKV, &lane_tile<float, kLaneNarrowMP, kLaneNarrowNKV>,
                &lane_tile<double, kLaneNarrowMP, kLaneNarrowNKV>};
    k.mid = {kLaneMidMP, kLaneMidNKV, &lane_tile<float, kLaneMidMP, kLaneMidNKV>,
             &lane_tile<double, kLaneMidMP, kLaneMidNKV>};
    k.single = {kLaneSingleMP, 1, &lane_tile<float, kLaneSingleMP, 1>, &lane_tile<double, kLaneSingleMP, 1>};
    return k;
  }();
  return d;
}

const detail::DotKernels& dot_kernels() {
  static const detail::DotKernels d = [] {
    detail::DotKernels k;
    k.mr = kDMR;
    k.nr = kDNR;
    k.vec_bytes = kVecBytes;
    k.sdot = &dot_tile<float>;
    k.ddot = &dot_tile<double>;
    k.srows = &dot_rows_tile<float>;
    k.drows = &dot_rows_tile<double>;
    return k;
  }();
  return d;
}

double fma_peak(int num_threads, bool f64, double seconds);  // peak.cpp
// max_pool.cpp
void max_planes_f32(const int64_t* first, const int64_t* begin, const int64_t* tap, int64_t npix, const float* xt,
                    float* yt, int32_t* it);
void max_planes_f64(const int64_t* first, const int64_t* begin, const int64_t* tap, int64_t npix, const double* xt,
                    double* yt, int64_t* it);
void max_rows_f32(const MaxRowsArgs<float, int32_t>& a);
void max_rows_f64(const MaxRowsArgs<double, int64_t>& a);
void max_gather_f32(const MaxGatherArgs<float, int32_t>& a);
void max_gather_f64(const MaxGatherArgs<double, int64_t>& a);
#if defined(FASTCONV_ISA_avx512)
void max_taps_f32(const MaxTapsArgs& a);
void max_gather_window_f32(const MaxGatherArgs<float, int32_t>& a);
void avg_taps_f32(const AvgTapsArgs& a);  // avg_pool.cpp
#endif

const KernelTable& table() {
  static const KernelTable t = [] {
    KernelTable k;
    k.name = FASTCONV_ISA_NAME_STR;
    k.sgemm.mr = kMR;
    k.sgemm.nr = kNRV * kVecBytes / int(sizeof(float));
    k.sgemm.nrv = kNRV;
    k.sgemm.fn = &tile<float>;
    k.sgemm.transpose = &transpose<float>;
    k.sgemm.transpose_rows = &transpose_rows<float>;
    k.sgemm.fn_offs = &tile_offs<float>;
    k.sgemm.fn_scatter = &tile_offs_scatter<float>;
#if defined(FASTCONV_ISA_avx512)
    k.sgemm.fn_masked = &tile_masked<float>;
    k.dgemm.fn_masked = &tile_masked<double>;
#endif
    k.sgemm.strided_copy = &strided_copy<float>;
    k.dgemm.mr = kMR;
    k.dgemm.nr = kNRV * kVecBytes / int(sizeof(double));
    k.dgemm.nrv = kNRV;
    k.dgemm.fn = &tile<double>;
    k.dgemm.transpose = &transpose<double>;
    k.dgemm.transpose_rows = &transpose_rows<double>;
    k.dgemm.fn_offs = &tile_offs<double>;
    k.dgemm.fn_scatter = &tile_offs_scatter<double>;
    k.dgemm.strided_copy = &strided_copy<double>;
    k.fma_peak = &fma_peak;
    k.smax_planes = &max_planes_f32;
    k.dmax_planes = &max_planes_f64;
    k.smax_rows = &max_rows_f32;
    k.dmax_rows = &max_rows_f64;
    k.smax_gather = &max_gather_f32;
    k.dmax_gather = &max_gather_f64;
#if defined(FASTCONV_ISA_avx512)
    k.smax_taps = &max_taps_f32;
    k.smax_gather_window = &max_gather_window_f32;
    k.savg_taps = &avg_taps_f32;
#endif
    return k;
  }();
  return t;
}

}  // namespace fastconv::cpu::FASTCONV_ISA
