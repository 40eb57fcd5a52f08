// FMA peak of this ISA, compiled once per ISA into fastconv::cpu::<isa>.
// Each OpenMP thread runs kAcc independent chains acc = acc * m + a on full
// vectors (FMA instructions on avx2 / avx512; multiply + add on generic),
// enough chains to cover the FMA latency times the number of FMA pipes, for
// about `seconds` of wall time. GFLOP/s = 2 flops per lane per FMA; each
// thread's rate is taken over its own CPU time (CLOCK_THREAD_CPUTIME_ID), so
// that time spent descheduled on a shared machine does not lower the limit,
// and the rates are summed over threads (use at most one thread per core).
#include <omp.h>
#include <time.h>

#include <cstdint>

namespace fastconv::cpu::FASTCONV_ISA {
namespace {

#if defined(FASTCONV_ISA_avx512)
constexpr int kVecBytes = 64;
constexpr int kAcc = 16;
#elif defined(FASTCONV_ISA_avx2)
constexpr int kVecBytes = 32;
constexpr int kAcc = 12;
#else
constexpr int kVecBytes = 16;
constexpr int kAcc = 12;
#endif

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

template <typename T>
double run(int num_threads, double seconds) {
  typedef T V __attribute__((vector_size(kVecBytes)));
  constexpr int L = kVecBytes / int(sizeof(T));
  constexpr int64_t kInner = 4096;
  double rate = 0;
  volatile T sink = 0;
#pragma omp parallel num_threads(num_threads) reduction(+ : rate)
  {
    V acc[kAcc];
    for (int i = 0; i < kAcc; ++i) acc[i] = V{} + T(1) + T(i) * T(1e-3);
    V m = V{} + T(0.999999);
    V a = V{} + T(1e-6);
#pragma omp barrier
    const double t0 = omp_get_wtime(), c0 = thread_cpu_seconds();
    int64_t iters = 0;
    double t1 = t0;
    do {
      for (int64_t it = 0; it < kInner; ++it) {
#pragma GCC unroll 16
        for (int i = 0; i < kAcc; ++i) acc[i] = acc[i] * m + a;
      }
      // keep m and a opaque so the chains cannot be folded
#if defined(__x86_64__) || defined(__i386__)
      __asm__ volatile("" : "+x"(m), "+x"(a));
#else
      __asm__ volatile("" : : "r"(&m), "r"(&a) : "memory");
#endif
      iters += kInner;
      t1 = omp_get_wtime();
    } while (t1 - t0 < seconds);
    V s = acc[0];
    for (int i = 1; i < kAcc; ++i) s += acc[i];
    T r = 0;
    for (int l = 0; l < L; ++l) r += s[l];
    sink = sink + r;
    const double cpu = thread_cpu_seconds() - c0;
    if (cpu > 0) rate += 2.0 * double(iters) * kAcc * L / cpu * 1e-9;
  }
  (void)sink;
  return rate;
}

}  // namespace

double fma_peak(int num_threads, bool f64, double seconds) {
  if (num_threads < 1) num_threads = 1;
  if (seconds <= 0) seconds = 0.05;
  return f64 ? run<double>(num_threads, seconds) : run<float>(num_threads, seconds);
}

}  // namespace fastconv::cpu::FASTCONV_ISA
