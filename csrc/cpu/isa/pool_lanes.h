// Shared by the AVX-512 pooling kernels (max_pool.cpp, avg_pool.cpp), which
// take 16 output columns of a row per vector.
#pragma once
#include <algorithm>
#include <cstdint>

namespace fastconv::cpu::pool_lanes {

// The lanes j of a 16-float load at column c of a row whose column c + j lies
// inside [0, W): the load mask that reads the row's own values only.
inline uint16_t cols_in(int64_t c, int64_t W) {
  const int64_t lo = std::max<int64_t>(0, -c), hi = std::min<int64_t>(16, W - c);
  if (hi <= lo) return 0;
  return uint16_t(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

}  // namespace fastconv::cpu::pool_lanes
