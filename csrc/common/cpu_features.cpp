// Run-time ISA detection and the choice of micro-kernel table (see
// cpu_features.h). Compiled without any -m flag.
#include "common/cpu_features.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace fastconv::cpu {
namespace {

enum Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

bool cpu_has(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case kAvx512:
#ifdef FASTCONV_HAVE_ISA_avx512
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
    case kAvx2:
#ifdef FASTCONV_HAVE_ISA_avx2
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
    default:
      return true;
  }
#else
  return isa == kGeneric;
#endif
}

const KernelTable& table_of(Isa isa) {
  switch (isa) {
#ifdef FASTCONV_HAVE_ISA_avx512
    case kAvx512: return avx512::table();
#endif
#ifdef FASTCONV_HAVE_ISA_avx2
    case kAvx2: return avx2::table();
#endif
    default: return generic::table();
  }
}

const char* isa_name(Isa isa) {
  return isa == kAvx512 ? "avx512" : isa == kAvx2 ? "avx2" : "generic";
}

const KernelTable& choose() {
  Isa best = cpu_has(kAvx512) ? kAvx512 : cpu_has(kAvx2) ? kAvx2 : kGeneric;
  Isa chosen = best;
  if (const char* env = std::getenv("FASTCONV_ISA"); env && *env) {
    Isa want;
    bool known = true;
    if (!std::strcmp(env, "avx512")) want = kAvx512;
    else if (!std::strcmp(env, "avx2")) want = kAvx2;
    else if (!std::strcmp(env, "generic")) want = kGeneric;
    else { known = false; want = best; }
    if (!known) {
      std::fprintf(stderr, "fastconv: warning: FASTCONV_ISA=%s is not one of generic, avx2, avx512; using %s\n",
                   env, isa_name(best));
    } else if (!cpu_has(want)) {
      std::fprintf(stderr, "fastconv: warning: FASTCONV_ISA=%s is not supported by this CPU or build; using %s\n",
                   env, isa_name(best));
    } else {
      chosen = want;
    }
  }
  return table_of(chosen);
}

}  // namespace

const KernelTable& kernels() {
  static const KernelTable& t = choose();  // thread-safe one-time initialisation
  return t;
}

const char* active_isa_name() { return kernels().name; }

double fma_peak_gflops(int num_threads, bool f64, double seconds) {
  return kernels().fma_peak(num_threads < 1 ? 1 : num_threads, f64, seconds);
}

}  // namespace fastconv::cpu
