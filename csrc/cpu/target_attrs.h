// Per-ISA clones of plain C++ loops, for kernels that live outside csrc/cpu/isa
// (pooling, relu), and the threads' shares of a pooling loop: a function is compiled for the baseline ISA and, on x86-64 with
// GCC/Clang, again for AVX2 and AVX-512 through target attributes; isa_level()
// follows the dispatcher's choice (cpu::active_isa_name(), which honours
// FASTCONV_ISA) so every kernel uses the same instruction set.
#pragma once
#include <cstdint>
#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/cpu_features.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FC_POOL_X86_MULTI 1
#define FC_POOL_TARGET_AVX512                                                                   \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi,bmi2,popcnt,lzcnt," \
                        "prefer-vector-width=512"),                                           \
                 flatten, noinline))
#define FC_POOL_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,popcnt,lzcnt"), flatten, noinline))
#else
#define FC_POOL_X86_MULTI 0
#endif

namespace fastconv::cpu {

// 2: AVX-512, 1: AVX2, 0: baseline (the ISA fastconv's dispatcher chose).
inline int isa_level() {
  static const int level = [] {
    const char* n = active_isa_name();
    return std::strcmp(n, "avx512") == 0 ? 2 : std::strcmp(n, "avx2") == 0 ? 1 : 0;
  }();
  return level;
}

// Inside a parallel region: the calling thread's contiguous share [b, e) of
// n items (the whole range without OpenMP).
struct ThreadShare {
  int64_t b, e;
};
inline ThreadShare thread_share(int64_t n) {
#ifdef _OPENMP
  const int64_t t = omp_get_thread_num(), tn = omp_get_num_threads();
#else
  const int64_t t = 0, tn = 1;
#endif
  return {n * t / tn, n * (t + 1) / tn};
}

}  // namespace fastconv::cpu
