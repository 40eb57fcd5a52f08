// CUDA runtime queries for fastconv.info() and the binding: how many devices there are (0, not an error, when
// the driver or the device is missing, so a CUDA build imports and runs its CPU ops on any machine), and a
// one-line description of the runtime, the driver, the devices and the architectures compiled in.
#include <mutex>
#include <sstream>
#include <string>

#include "common.cuh"

namespace fastconv {
namespace cuda {

int device_count() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) error so later calls do not see it
    return 0;
  }
  return n;
}

namespace {
std::string describe() {
  std::ostringstream os;
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  os << "CUDA runtime " << rt / 1000 << "." << (rt % 1000) / 10;
  if (cudaDriverGetVersion(&drv) == cudaSuccess && drv > 0)
    os << ", driver " << drv / 1000 << "." << (drv % 1000) / 10;
  else
    os << ", no driver";
  cudaGetLastError();
#ifdef __CUDA_ARCH_LIST__
#define FC_STR2(...) #__VA_ARGS__
#define FC_STR(...) FC_STR2(__VA_ARGS__)
  os << ", compiled for __CUDA_ARCH__ " << FC_STR(__CUDA_ARCH_LIST__);
#undef FC_STR
#undef FC_STR2
#endif
  const int n = device_count();
  os << ", " << n << " device(s)";
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
      cudaGetLastError();
      os << (i ? "; " : ": ") << "[" << i << "] (properties unavailable)";
      continue;
    }
    os << (i ? "; " : ": ") << "[" << i << "] " << prop.name << " (sm_" << prop.major << prop.minor << ", "
       << (prop.totalGlobalMem >> 20) << " MiB)";
  }
  return os.str();
}
}  // namespace

const char* runtime_info() {
  static std::once_flag once;
  static std::string info;
  std::call_once(once, [] { info = describe(); });
  return info.c_str();
}

}  // namespace cuda
}  // namespace fastconv
