// The one binding file: Python -> validated params struct -> CPU or CUDA kernel.
//
// Tensors arrive as torch tensors, read here through their Python attributes
// (no libtorch), or as TensorArg descriptors built by fastconv/_ops.py from
// numpy arrays (pointer, shape, strides in elements, dtype name, device).
// Outputs are allocated by the caller and passed in. Every argument is
// checked here (again after the Python checks) so that a direct call into _C
// with bad arguments raises a Python exception naming the argument instead of
// crashing; nothing is written before all checks have passed.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/cpu_features.h"
#include "common/host_memory.h"
#include "common/kernels.h"
#include "common/params.h"

namespace py = pybind11;

namespace fastconv {
namespace {

enum class Scalar { f32, f64, f16, bf16, i64, other };

struct TensorArg {
  std::uintptr_t ptr = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
  std::string dtype;             // "float32", "float64", "float16", "bfloat16", "int64", ...
  DeviceType device = DeviceType::cpu;
  int device_index = 0;
  std::string other_device;      // a torch tensor on a device fastconv has no kernels for ("meta", "mps", ...)

  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  Scalar scalar() const {
    if (dtype == "float32") return Scalar::f32;
    if (dtype == "float64") return Scalar::f64;
    if (dtype == "float16") return Scalar::f16;
    if (dtype == "bfloat16") return Scalar::bf16;
    if (dtype == "int64") return Scalar::i64;
    return Scalar::other;
  }
  bool contiguous() const {
    int64_t expected = 1;
    for (int64_t d = ndim() - 1; d >= 0; --d) {
      if (shape[d] != 1 && strides[d] != expected) return false;
      expected *= shape[d];
    }
    return true;
  }
  std::string device_str() const {
    return device == DeviceType::cpu ? std::string("cpu") : "cuda:" + std::to_string(device_index);
  }
  std::string shape_str() const {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
  }
  template <typename T = void>
  T* data() const { return reinterpret_cast<T*>(ptr); }
};

// ------------------------------------------------------ torch tensors ---
// A torch.Tensor read through its Python attributes, with the C API: about
// 0.3 us a tensor, against 1.3 us for a TensorArg built in Python (a small
// layer's forward and backward pass nine tensors). The type is registered by
// fastconv._ops at import (accept_torch_tensors), so this file never imports
// torch.

PyTypeObject* g_torch_tensor = nullptr;

PyObject* interned(const char* s) { return PyUnicode_InternFromString(s); }

py::object owned(PyObject* o) {
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(o);
}

std::vector<int64_t> int_tuple(PyObject* t, const char* what) {
  FC_CHECK_TYPE(PyTuple_Check(t), what, "expected a tuple of ints");
  Py_ssize_t n = PyTuple_GET_SIZE(t);
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    v[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(t, i));
    if (v[i] == -1 && PyErr_Occurred()) throw py::error_already_set();
  }
  return v;
}

// "float32" for torch.float32; dtypes are singletons, so the name is looked
// up by identity (and the dtype kept alive by the reference taken here).
std::string dtype_name(PyObject* dtype) {
  static std::vector<std::pair<PyObject*, std::string>> names;
  for (const auto& e : names)
    if (e.first == dtype) return e.second;
  std::string s = py::str(dtype);
  if (s.rfind("torch.", 0) == 0) s = s.substr(6);
  Py_INCREF(dtype);
  names.emplace_back(dtype, s);
  return s;
}

// False when o is not a torch.Tensor; a Python error (a failed attribute) throws.
bool read_torch_tensor(PyObject* o, TensorArg& t) {
  if (!g_torch_tensor || !PyObject_TypeCheck(o, g_torch_tensor)) return false;
  static PyObject *is_cpu = interned("is_cpu"), *is_cuda = interned("is_cuda"), *get_device = interned("get_device"),
                  *device = interned("device"), *data_ptr = interned("data_ptr"), *shape = interned("shape"),
                  *stride = interned("stride"), *dtype = interned("dtype");
  if (owned(PyObject_GetAttr(o, is_cpu)).ptr() == Py_True) {
    t.device = DeviceType::cpu;
  } else if (owned(PyObject_GetAttr(o, is_cuda)).ptr() == Py_True) {
    t.device = DeviceType::cuda;
    t.device_index = static_cast<int>(PyLong_AsLong(owned(PyObject_CallMethodNoArgs(o, get_device)).ptr()));
  } else {
    t.other_device = py::str(owned(PyObject_GetAttr(o, device)));
    return true;  // refused by name in check_descriptor
  }
  py::object p = owned(PyObject_CallMethodNoArgs(o, data_ptr));
  t.ptr = static_cast<std::uintptr_t>(PyLong_AsUnsignedLongLong(p.ptr()));
  if (PyErr_Occurred()) throw py::error_already_set();
  t.shape = int_tuple(owned(PyObject_GetAttr(o, shape)).ptr(), "shape");
  t.strides = int_tuple(owned(PyObject_CallMethodNoArgs(o, stride)).ptr(), "stride");
  t.dtype = dtype_name(owned(PyObject_GetAttr(o, dtype)).ptr());
  return true;
}

// The type the kernel entry points take a tensor as: a torch.Tensor or a TensorArg.
struct Tensor : TensorArg {};

// A CPU output about to be written for the first time (see host_memory.h).
void advise_output(const TensorArg& t) {
  if (t.device != DeviceType::cpu || t.numel() == 0) return;
  std::size_t elt = 4;
  switch (t.scalar()) {
    case Scalar::f64: case Scalar::i64: elt = 8; break;
    case Scalar::f16: case Scalar::bf16: elt = 2; break;
    default: break;
  }
  cpu::advise_huge_pages(t.data(), std::size_t(t.numel()) * elt);
}

// ---------------------------------------------------------------- checks ---

void check_descriptor(const TensorArg& t, const char* name) {
  FC_CHECK(t.other_device.empty(), name, "fastconv runs on cpu and cuda tensors, got a tensor on ", t.other_device);
  FC_CHECK(t.shape.size() == t.strides.size(), name, "shape and strides differ in length");
  for (int64_t s : t.shape) FC_CHECK(s >= 0, name, "negative size in shape ", t.shape_str());
  FC_CHECK(t.numel() == 0 || t.ptr != 0, name, "null data pointer for a non-empty tensor");
  // An empty tensor has no layout to check (torch calls any empty tensor contiguous).
  FC_CHECK(t.numel() == 0 || t.contiguous(), name, "expected a contiguous tensor (the Python layer makes one)");
}

// A floating tensor of a dtype this device has kernels for.
DType check_float(const TensorArg& t, const char* name) {
  check_descriptor(t, name);
  switch (t.scalar()) {
    case Scalar::f32: return DType::f32;
    case Scalar::f64: return DType::f64;
    case Scalar::f16:
    case Scalar::bf16:
      FC_CHECK_TYPE(t.device == DeviceType::cuda, name, "dtype ", t.dtype,
                    " is supported on CUDA only; on the CPU use float32 or float64");
      return t.scalar() == Scalar::f16 ? DType::f16 : DType::bf16;
    default:
      FC_CHECK_TYPE(false, name, "expected a floating-point tensor (float32 or float64), got ", t.dtype);
  }
  return DType::f32;
}

void check_ndim(const TensorArg& t, const char* name, int64_t ndim, const char* layout) {
  FC_CHECK(t.ndim() == ndim, name, "expected a ", ndim, "-D tensor ", layout, ", got ", t.ndim(),
           "-D with shape ", t.shape_str());
}

void check_like(const TensorArg& t, const char* name, const TensorArg& ref, const char* refname) {
  FC_CHECK_TYPE(t.dtype == ref.dtype, name, "dtype ", t.dtype, " does not match ", refname, "'s dtype ", ref.dtype);
  FC_CHECK(t.device == ref.device && t.device_index == ref.device_index, name, "on device ", t.device_str(),
           " but ", refname, " is on ", ref.device_str());
}

void check_shape(const TensorArg& t, const char* name, const std::vector<int64_t>& expected) {
  TensorArg e;
  e.shape = expected;
  FC_CHECK(t.shape == expected, name, "expected shape ", e.shape_str(), ", got ", t.shape_str());
}

using Pair = std::array<int64_t, 2>;

void check_positive(const Pair& v, const char* name) {
  FC_CHECK(v[0] > 0 && v[1] > 0, name, "must be positive, got (", v[0], ", ", v[1], ")");
}
void check_nonnegative(const Pair& v, const char* name) {
  FC_CHECK(v[0] >= 0 && v[1] >= 0, name, "must be non-negative, got (", v[0], ", ", v[1], ")");
}

// Below this much work per thread, waking another OpenMP thread costs more
// than it saves (tens of microseconds on a loaded machine): tiny calls run on
// fewer threads. `work` is in multiply-adds (conv) or elements (pool, relu).
constexpr int64_t kMinWorkPerThread = int64_t(1) << 15;

int threads_for(int64_t work, int num_threads) {
  int64_t useful = std::max<int64_t>(1, work / kMinWorkPerThread);
  return static_cast<int>(std::min<int64_t>(num_threads, useful));
}

ExecContext make_context(const TensorArg& t, int num_threads, std::uintptr_t stream, int64_t work) {
  FC_CHECK(num_threads >= 1, "num_threads", "must be at least 1, got ", num_threads);
  num_threads = threads_for(work, num_threads);
  ExecContext ctx;
  ctx.device = t.device;
  ctx.device_index = t.device_index;
  ctx.stream = reinterpret_cast<void*>(stream);
  ctx.num_threads = num_threads;
#ifndef FASTCONV_WITH_CUDA
  FC_CHECK(t.device == DeviceType::cpu, "input", "is on ", t.device_str(),
           " but this fastconv was built without CUDA (rebuild with FASTCONV_CUDA=ON)");
#endif
  return ctx;
}

// ------------------------------------------------------------------ conv ---

// Output extent of a conv along one dimension; the single C++ copy of the
// formula that fastconv.conv_output_size defines for Python.
int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

struct ConvArgs {
  Pair stride, padding, dilation;
  int64_t groups;
};

ConvParams conv_params(const TensorArg& x, const TensorArg& w, const ConvArgs& a, const char* xname = "input") {
  DType dt = check_float(x, xname);
  check_float(w, "weight");
  check_ndim(x, xname, 4, "(N, C, H, W)");
  check_ndim(w, "weight", 4, "(K, C/groups, R, S)");
  check_like(w, "weight", x, xname);
  check_positive(a.stride, "stride");
  check_positive(a.dilation, "dilation");
  check_nonnegative(a.padding, "padding");
  FC_CHECK(a.groups >= 1, "groups", "must be at least 1, got ", a.groups);

  ConvParams p;
  p.N = x.shape[0]; p.C = x.shape[1]; p.H = x.shape[2]; p.W = x.shape[3];
  p.K = w.shape[0]; p.R = w.shape[2]; p.S = w.shape[3];
  FC_CHECK(p.C % a.groups == 0, "groups", "input channels ", p.C, " are not divisible by groups=", a.groups);
  FC_CHECK(p.K % a.groups == 0, "groups", "output channels ", p.K, " (weight.shape[0]) are not divisible by groups=", a.groups);
  FC_CHECK(w.shape[1] * a.groups == p.C, "weight", "expected ", p.C / a.groups, " input channels per group (input has ", p.C,
           " channels, groups=", a.groups, "), got weight of shape ", w.shape_str());
  FC_CHECK(p.R >= 1 && p.S >= 1 && p.K >= 1, "weight", "empty kernel, shape ", w.shape_str());
  p.stride_h = a.stride[0]; p.stride_w = a.stride[1];
  p.pad_h = a.padding[0];   p.pad_w = a.padding[1];
  p.dil_h = a.dilation[0];  p.dil_w = a.dilation[1];
  p.groups = a.groups;
  int64_t eff_h = p.dil_h * (p.R - 1) + 1, eff_w = p.dil_w * (p.S - 1) + 1;
  FC_CHECK(p.H + 2 * p.pad_h >= eff_h && p.W + 2 * p.pad_w >= eff_w, xname, "padded input size (",
           p.H + 2 * p.pad_h, ", ", p.W + 2 * p.pad_w, ") is smaller than the dilated kernel size (", eff_h, ", ",
           eff_w, ")");
  p.P = conv_out(p.H, p.R, p.stride_h, p.pad_h, p.dil_h);
  p.Q = conv_out(p.W, p.S, p.stride_w, p.pad_w, p.dil_w);
  FC_CHECK(p.P >= 1 && p.Q >= 1, xname, "output size (", p.P, ", ", p.Q, ") would be empty");
  p.dtype = dt;
  return p;
}

int64_t conv_work(const ConvParams& p) {
  return p.N * p.K * p.P * p.Q * (p.C / p.groups) * p.R * p.S;
}

Variant to_variant(int v) {
  FC_CHECK(v == 0 || v == 1, "variant", "expected 0 (fast) or 1 (reference), got ", v);
  return static_cast<Variant>(v);
}

void conv_forward_impl(bool one_by_one, const TensorArg& x, const TensorArg& w, const std::optional<Tensor>& b,
                       const TensorArg& y, const ConvArgs& a, int variant, bool allow_tf32, int num_threads,
                       std::uintptr_t stream) {
  ConvParams p = conv_params(x, w, a);
  if (one_by_one) {
    FC_CHECK(p.R == 1 && p.S == 1, "weight", "conv1x1 expects a 1x1 kernel, got shape ", w.shape_str());
    FC_CHECK(a.stride == (Pair{1, 1}) && a.padding == (Pair{0, 0}) && a.groups == 1, "conv1x1",
             "takes stride 1, padding 0, groups 1");
  }
  if (b) {
    check_float(*b, "bias");
    check_like(*b, "bias", x, "input");
    check_shape(*b, "bias", {p.K});
  }
  check_float(y, "output");
  check_like(y, "output", x, "input");
  check_shape(y, "output", {p.N, p.K, p.P, p.Q});
  ExecContext ctx = make_context(x, num_threads, stream, conv_work(p));
  p.variant = to_variant(variant);
  p.allow_tf32 = allow_tf32;
  p.x = x.data(); p.w = w.data(); p.b = b ? b->data() : nullptr; p.y = y.data();
  if (p.N == 0) return;
  advise_output(y);
  py::gil_scoped_release release;
  if (ctx.device == DeviceType::cuda)
    one_by_one ? cuda::conv1x1_forward(p, ctx) : cuda::conv2d_forward(p, ctx);
  else
    one_by_one ? cpu::conv1x1_forward(p, ctx) : cpu::conv2d_forward(p, ctx);
}

void conv_backward_impl(bool one_by_one, const TensorArg& gy, const TensorArg& x, const TensorArg& w,
                        const std::optional<Tensor>& gx, const std::optional<Tensor>& gw,
                        const std::optional<Tensor>& gb, const ConvArgs& a, int variant, bool allow_tf32,
                        int num_threads, std::uintptr_t stream) {
  ConvParams p = conv_params(x, w, a);
  if (one_by_one) {
    FC_CHECK(p.R == 1 && p.S == 1, "weight", "conv1x1 expects a 1x1 kernel, got shape ", w.shape_str());
    FC_CHECK(a.stride == (Pair{1, 1}) && a.padding == (Pair{0, 0}) && a.groups == 1, "conv1x1",
             "takes stride 1, padding 0, groups 1");
  }
  check_float(gy, "grad_output");
  check_like(gy, "grad_output", x, "input");
  check_shape(gy, "grad_output", {p.N, p.K, p.P, p.Q});
  if (gx) { check_float(*gx, "grad_input"); check_like(*gx, "grad_input", x, "input"); check_shape(*gx, "grad_input", x.shape); }
  if (gw) { check_float(*gw, "grad_weight"); check_like(*gw, "grad_weight", x, "input"); check_shape(*gw, "grad_weight", w.shape); }
  if (gb) { check_float(*gb, "grad_bias"); check_like(*gb, "grad_bias", x, "input"); check_shape(*gb, "grad_bias", {p.K}); }
  ExecContext ctx = make_context(x, num_threads, stream, conv_work(p));
  p.variant = to_variant(variant);
  p.allow_tf32 = allow_tf32;
  p.x = x.data(); p.w = w.data(); p.gy = gy.data();
  p.gx = gx ? gx->data() : nullptr;
  p.gw = gw ? gw->data() : nullptr;
  p.gb = gb ? gb->data() : nullptr;
  if (!p.gx && !p.gw && !p.gb) return;
  if (p.N == 0) {
    // Nothing to reduce over: the weight and bias gradients are zero. On CUDA
    // the Python layer never calls with N == 0 (it allocates zeros itself).
    FC_CHECK(ctx.device == DeviceType::cpu || (!p.gw && !p.gb), "input", "empty batch on CUDA must be handled by the caller");
    const size_t elt = p.dtype == DType::f64 ? 8 : 4;
    if (p.gw) std::memset(p.gw, 0, elt * w.numel());
    if (p.gb) std::memset(p.gb, 0, elt * p.K);
    return;
  }
  if (gx) advise_output(*gx);
  py::gil_scoped_release release;
  if (ctx.device == DeviceType::cuda)
    one_by_one ? cuda::conv1x1_backward(p, ctx) : cuda::conv2d_backward(p, ctx);
  else
    one_by_one ? cpu::conv1x1_backward(p, ctx) : cpu::conv2d_backward(p, ctx);
}

// --------------------------------------------------------------- pooling ---

// torch's pooling_output_shape: with ceil_mode the last window must start
// inside the input or its left padding.
int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  int64_t num = in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t out = num >= 0 ? num / s + 1 : -((-num + s - 1) / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

struct PoolArgs {
  Pair kernel, stride, padding, dilation;
  bool ceil_mode;
};

PoolParams pool_params(const TensorArg& x, const PoolArgs& a) {
  DType dt = check_float(x, "input");
  check_ndim(x, "input", 4, "(N, C, H, W)");
  check_positive(a.kernel, "kernel_size");
  check_positive(a.stride, "stride");
  check_positive(a.dilation, "dilation");
  check_nonnegative(a.padding, "padding");
  FC_CHECK(a.padding[0] <= a.kernel[0] / 2 && a.padding[1] <= a.kernel[1] / 2, "padding",
           "should be at most half of kernel_size, got padding (", a.padding[0], ", ", a.padding[1],
           ") for kernel_size (", a.kernel[0], ", ", a.kernel[1], ")");
  PoolParams p;
  p.N = x.shape[0]; p.C = x.shape[1]; p.H = x.shape[2]; p.W = x.shape[3];
  p.kernel_h = a.kernel[0]; p.kernel_w = a.kernel[1];
  p.stride_h = a.stride[0]; p.stride_w = a.stride[1];
  p.pad_h = a.padding[0];   p.pad_w = a.padding[1];
  p.dil_h = a.dilation[0];  p.dil_w = a.dilation[1];
  p.ceil_mode = a.ceil_mode;
  p.P = pool_out(p.H, p.kernel_h, p.stride_h, p.pad_h, p.dil_h, a.ceil_mode);
  p.Q = pool_out(p.W, p.kernel_w, p.stride_w, p.pad_w, p.dil_w, a.ceil_mode);
  FC_CHECK(p.P >= 1 && p.Q >= 1, "input", "of spatial size (", p.H, ", ", p.W, ") gives an empty output (", p.P, ", ",
           p.Q, ") for kernel_size (", p.kernel_h, ", ", p.kernel_w, ")");
  p.dtype = dt;
  return p;
}

void check_indices(const TensorArg& idx, const TensorArg& x, const PoolParams& p) {
  check_descriptor(idx, "indices");
  FC_CHECK_TYPE(idx.scalar() == Scalar::i64, "indices", "expected int64, got ", idx.dtype);
  FC_CHECK(idx.device == x.device && idx.device_index == x.device_index, "indices", "on device ", idx.device_str(),
           " but input is on ", x.device_str());
  check_shape(idx, "indices", {p.N, p.C, p.P, p.Q});
}

void max_pool2d_forward(const TensorArg& x, const TensorArg& y, const std::optional<Tensor>& indices,
                        const PoolArgs& a, int num_threads, std::uintptr_t stream) {
  PoolParams p = pool_params(x, a);
  check_float(y, "output");
  check_like(y, "output", x, "input");
  check_shape(y, "output", {p.N, p.C, p.P, p.Q});
  if (indices) check_indices(*indices, x, p);
  ExecContext ctx = make_context(x, num_threads, stream, x.numel());
  p.x = x.data(); p.y = y.data(); p.indices = indices ? indices->data<int64_t>() : nullptr;
  if (x.numel() == 0) return;
  advise_output(y);
  if (indices) advise_output(*indices);
  py::gil_scoped_release release;
  ctx.device == DeviceType::cuda ? cuda::max_pool2d_forward(p, ctx) : cpu::max_pool2d_forward(p, ctx);
}

void max_pool2d_backward(const TensorArg& gy, const TensorArg& x, const TensorArg& indices, const TensorArg& gx,
                         const PoolArgs& a, int num_threads, std::uintptr_t stream) {
  PoolParams p = pool_params(x, a);
  check_float(gy, "grad_output");
  check_like(gy, "grad_output", x, "input");
  check_shape(gy, "grad_output", {p.N, p.C, p.P, p.Q});
  check_indices(indices, x, p);
  check_float(gx, "grad_input");
  check_like(gx, "grad_input", x, "input");
  check_shape(gx, "grad_input", x.shape);
  ExecContext ctx = make_context(x, num_threads, stream, x.numel());
  p.gy = gy.data(); p.gx = gx.data(); p.indices = const_cast<int64_t*>(indices.data<int64_t>());
  if (x.numel() == 0) return;
  advise_output(gx);
  py::gil_scoped_release release;
  ctx.device == DeviceType::cuda ? cuda::max_pool2d_backward(p, ctx) : cpu::max_pool2d_backward(p, ctx);
}

PoolParams avg_params(const TensorArg& x, const PoolArgs& a, bool count_include_pad, int64_t divisor_override) {
  FC_CHECK(a.dilation == (Pair{1, 1}), "dilation", "average pooling has no dilation");
  PoolParams p = pool_params(x, a);
  FC_CHECK(divisor_override >= 0, "divisor_override", "must be positive (or None), got ", divisor_override);
  p.count_include_pad = count_include_pad;
  p.divisor_override = divisor_override;
  return p;
}

void avg_pool2d_forward(const TensorArg& x, const TensorArg& y, const PoolArgs& a, bool count_include_pad,
                        int64_t divisor_override, int num_threads, std::uintptr_t stream) {
  PoolParams p = avg_params(x, a, count_include_pad, divisor_override);
  check_float(y, "output");
  check_like(y, "output", x, "input");
  check_shape(y, "output", {p.N, p.C, p.P, p.Q});
  ExecContext ctx = make_context(x, num_threads, stream, x.numel());
  p.x = x.data(); p.y = y.data();
  if (x.numel() == 0) return;
  advise_output(y);
  py::gil_scoped_release release;
  ctx.device == DeviceType::cuda ? cuda::avg_pool2d_forward(p, ctx) : cpu::avg_pool2d_forward(p, ctx);
}

void avg_pool2d_backward(const TensorArg& gy, const TensorArg& x, const TensorArg& gx, const PoolArgs& a,
                         bool count_include_pad, int64_t divisor_override, int num_threads, std::uintptr_t stream) {
  PoolParams p = avg_params(x, a, count_include_pad, divisor_override);
  check_float(gy, "grad_output");
  check_like(gy, "grad_output", x, "input");
  check_shape(gy, "grad_output", {p.N, p.C, p.P, p.Q});
  check_float(gx, "grad_input");
  check_like(gx, "grad_input", x, "input");
  check_shape(gx, "grad_input", x.shape);
  ExecContext ctx = make_context(x, num_threads, stream, x.numel());
  p.gy = gy.data(); p.gx = gx.data();
  if (x.numel() == 0) return;
  advise_output(gx);
  py::gil_scoped_release release;
  ctx.device == DeviceType::cuda ? cuda::avg_pool2d_backward(p, ctx) : cpu::avg_pool2d_backward(p, ctx);
}

// ------------------------------------------------------------------ relu ---

void relu_forward(const TensorArg& x, const TensorArg& y, int num_threads, std::uintptr_t stream) {
  ReluParams p;
  p.dtype = check_float(x, "input");
  check_float(y, "output");
  check_like(y, "output", x, "input");
  check_shape(y, "output", x.shape);
  ExecContext ctx = make_context(x, num_threads, stream, x.numel());
  p.n = x.numel(); p.x = x.data(); p.y = y.data();
  if (p.n == 0) return;
  if (y.ptr != x.ptr) advise_output(y);
  py::gil_scoped_release release;
  ctx.device == DeviceType::cuda ? cuda::relu_forward(p, ctx) : cpu::relu_forward(p, ctx);
}

void relu_backward(const TensorArg& gy, const TensorArg& x, const TensorArg& gx, int mode, int num_threads,
                   std::uintptr_t stream) {
  ReluParams p;
  p.dtype = check_float(x, "input");
  check_float(gy, "grad_output");
  check_like(gy, "grad_output", x, "input");
  check_shape(gy, "grad_output", x.shape);
  check_float(gx, "grad_input");
  check_like(gx, "grad_input", x, "input");
  check_shape(gx, "grad_input", x.shape);
  FC_CHECK(mode >= 0 && mode <= 2, "mode", "expected 0 (relu), 1 (guided) or 2 (deconvnet), got ", mode);
  ExecContext ctx = make_context(x, num_threads, stream, x.numel());
  p.mode = static_cast<ReluMode>(mode);
  p.n = x.numel(); p.x = x.data(); p.gy = gy.data(); p.gx = gx.data();
  if (p.n == 0) return;
  if (gx.ptr != gy.ptr) advise_output(gx);
  py::gil_scoped_release release;
  ctx.device == DeviceType::cuda ? cuda::relu_backward(p, ctx) : cpu::relu_backward(p, ctx);
}

// -------------------------------------------------------------- threads ---

int g_num_threads = 0;  // 0: OpenMP's default

int get_num_threads() { return g_num_threads > 0 ? g_num_threads : omp_get_max_threads(); }
void set_num_threads(int n) {
  FC_CHECK(n >= 1, "num_threads", "must be at least 1, got ", n);
  g_num_threads = n;
}

}  // namespace
}  // namespace fastconv

namespace pybind11::detail {
template <>
struct type_caster<fastconv::Tensor> {
  PYBIND11_TYPE_CASTER(fastconv::Tensor, const_name("torch.Tensor | TensorArg"));
  bool load(handle src, bool) {
    if (fastconv::read_torch_tensor(src.ptr(), value)) return true;
    make_caster<fastconv::TensorArg> descriptor;
    if (!descriptor.load(src, false)) return false;
    static_cast<fastconv::TensorArg&>(value) = cast_op<const fastconv::TensorArg&>(descriptor);
    return true;
  }
  static handle cast(const fastconv::Tensor& t, return_value_policy policy, handle parent) {
    return make_caster<fastconv::TensorArg>::cast(static_cast<const fastconv::TensorArg&>(t), policy, parent);
  }
};
}  // namespace pybind11::detail

PYBIND11_MODULE(_C, m) {
  using namespace fastconv;
  m.doc() = "fastconv kernels (torch-free); use the fastconv package, not this module";

  py::register_exception<ArgError>(m, "ArgError", PyExc_ValueError);
  py::register_exception<TypeErr>(m, "ArgTypeError", PyExc_TypeError);
  py::register_exception<RuntimeErr>(m, "KernelError", PyExc_RuntimeError);

  py::class_<TensorArg>(m, "TensorArg")
      .def(py::init([](std::uintptr_t ptr, std::vector<int64_t> shape, std::vector<int64_t> strides, std::string dtype,
                       int device_type, int device_index) {
             FC_CHECK(device_type == 0 || device_type == 1, "device", "expected cpu (0) or cuda (1), got ", device_type);
             TensorArg t;
             t.ptr = ptr; t.shape = std::move(shape); t.strides = std::move(strides); t.dtype = std::move(dtype);
             t.device = static_cast<DeviceType>(device_type); t.device_index = device_index;
             return t;
           }),
           py::arg("ptr"), py::arg("shape"), py::arg("strides"), py::arg("dtype"), py::arg("device_type") = 0,
           py::arg("device_index") = 0)
      .def_property_readonly("shape", [](const TensorArg& t) { return t.shape; })
      .def_property_readonly("dtype", [](const TensorArg& t) { return t.dtype; });

  auto conv_args = [](Pair s, Pair p, Pair d, int64_t g) { return ConvArgs{s, p, d, g}; };

  m.def("conv2d_forward",
        [=](const Tensor& x, const Tensor& w, const std::optional<Tensor>& b, const Tensor& y, Pair stride,
            Pair padding, Pair dilation, int64_t groups, int variant, bool allow_tf32, int num_threads,
            std::uintptr_t stream) {
          conv_forward_impl(false, x, w, b, y, conv_args(stride, padding, dilation, groups), variant, allow_tf32,
                            num_threads, stream);
        },
        py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("output"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"), py::arg("variant"), py::arg("allow_tf32"), py::arg("num_threads"),
        py::arg("stream"));
  m.def("conv2d_backward",
        [=](const Tensor& gy, const Tensor& x, const Tensor& w, const std::optional<Tensor>& gx,
            const std::optional<Tensor>& gw, const std::optional<Tensor>& gb, Pair stride, Pair padding,
            Pair dilation, int64_t groups, int variant, bool allow_tf32, int num_threads, std::uintptr_t stream) {
          conv_backward_impl(false, gy, x, w, gx, gw, gb, conv_args(stride, padding, dilation, groups), variant,
                             allow_tf32, num_threads, stream);
        },
        py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("grad_input"), py::arg("grad_weight"),
        py::arg("grad_bias"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("variant"), py::arg("allow_tf32"), py::arg("num_threads"), py::arg("stream"));
  m.def("conv1x1_forward",
        [=](const Tensor& x, const Tensor& w, const std::optional<Tensor>& b, const Tensor& y, int variant,
            bool allow_tf32, int num_threads, std::uintptr_t stream) {
          conv_forward_impl(true, x, w, b, y, conv_args({1, 1}, {0, 0}, {1, 1}, 1), variant, allow_tf32, num_threads,
                            stream);
        },
        py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("output"), py::arg("variant"),
        py::arg("allow_tf32"), py::arg("num_threads"), py::arg("stream"));
  m.def("conv1x1_backward",
        [=](const Tensor& gy, const Tensor& x, const Tensor& w, const std::optional<Tensor>& gx,
            const std::optional<Tensor>& gw, const std::optional<Tensor>& gb, int variant, bool allow_tf32,
            int num_threads, std::uintptr_t stream) {
          conv_backward_impl(true, gy, x, w, gx, gw, gb, conv_args({1, 1}, {0, 0}, {1, 1}, 1), variant, allow_tf32,
                             num_threads, stream);
        },
        py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("grad_input"), py::arg("grad_weight"),
        py::arg("grad_bias"), py::arg("variant"), py::arg("allow_tf32"), py::arg("num_threads"), py::arg("stream"));

  m.def("max_pool2d_forward",
        [](const Tensor& x, const Tensor& y, const std::optional<Tensor>& idx, Pair k, Pair s, Pair p, Pair d,
           bool ceil_mode, int num_threads, std::uintptr_t stream) {
          max_pool2d_forward(x, y, idx, PoolArgs{k, s, p, d, ceil_mode}, num_threads, stream);
        },
        py::arg("input"), py::arg("output"), py::arg("indices"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"), py::arg("num_threads"), py::arg("stream"));
  m.def("max_pool2d_backward",
        [](const Tensor& gy, const Tensor& x, const Tensor& idx, const Tensor& gx, Pair k, Pair s, Pair p,
           Pair d, bool ceil_mode, int num_threads, std::uintptr_t stream) {
          max_pool2d_backward(gy, x, idx, gx, PoolArgs{k, s, p, d, ceil_mode}, num_threads, stream);
        },
        py::arg("grad_output"), py::arg("input"), py::arg("indices"), py::arg("grad_input"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"), py::arg("num_threads"),
        py::arg("stream"));
  m.def("avg_pool2d_forward",
        [](const Tensor& x, const Tensor& y, Pair k, Pair s, Pair p, bool ceil_mode, bool count_include_pad,
           int64_t divisor_override, int num_threads, std::uintptr_t stream) {
          avg_pool2d_forward(x, y, PoolArgs{k, s, p, {1, 1}, ceil_mode}, count_include_pad, divisor_override,
                             num_threads, stream);
        },
        py::arg("input"), py::arg("output"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("ceil_mode"), py::arg("count_include_pad"), py::arg("divisor_override"), py::arg("num_threads"),
        py::arg("stream"));
  m.def("avg_pool2d_backward",
        [](const Tensor& gy, const Tensor& x, const Tensor& gx, Pair k, Pair s, Pair p, bool ceil_mode,
           bool count_include_pad, int64_t divisor_override, int num_threads, std::uintptr_t stream) {
          avg_pool2d_backward(gy, x, gx, PoolArgs{k, s, p, {1, 1}, ceil_mode}, count_include_pad, divisor_override,
                              num_threads, stream);
        },
        py::arg("grad_output"), py::arg("input"), py::arg("grad_input"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("ceil_mode"), py::arg("count_include_pad"), py::arg("divisor_override"),
        py::arg("num_threads"), py::arg("stream"));

  m.def("relu_forward",
        [](const Tensor& x, const Tensor& y, int num_threads, std::uintptr_t stream) {
          relu_forward(x, y, num_threads, stream);
        },
        py::arg("input"), py::arg("output"), py::arg("num_threads"), py::arg("stream"));
  m.def("relu_backward",
        [](const Tensor& gy, const Tensor& x, const Tensor& gx, int mode, int num_threads, std::uintptr_t stream) {
          relu_backward(gy, x, gx, mode, num_threads, stream);
        },
        py::arg("grad_output"), py::arg("input"), py::arg("grad_input"), py::arg("mode"), py::arg("num_threads"),
        py::arg("stream"));
  m.def("accept_torch_tensors",
        [](py::handle tensor_type) {
          FC_CHECK_TYPE(PyType_Check(tensor_type.ptr()), "tensor_type", "expected a type (torch.Tensor)");
          Py_INCREF(tensor_type.ptr());
          g_torch_tensor = reinterpret_cast<PyTypeObject*>(tensor_type.ptr());
        },
        py::arg("tensor_type"));

  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("openmp_version", []() { return static_cast<int>(_OPENMP); });
  m.def("isa", []() { return std::string(cpu::active_isa_name()); });
  m.def("compiled_isas", []() { return std::string(FASTCONV_ISAS); });
  m.def("fma_peak_gflops",
        [](int num_threads, bool f64, double seconds) {
          FC_CHECK(num_threads >= 1, "num_threads", "must be at least 1, got ", num_threads);
          FC_CHECK(seconds > 0 && seconds <= 60, "seconds", "must be in (0, 60], got ", seconds);
          py::gil_scoped_release release;
          return cpu::fma_peak_gflops(num_threads, f64, seconds);
        },
        py::arg("num_threads"), py::arg("f64") = false, py::arg("seconds") = 0.5);
#ifdef FASTCONV_WITH_CUDA
  m.attr("cuda_compiled") = true;
#else
  m.attr("cuda_compiled") = false;
#endif
  m.def("cuda_device_count", []() { return cuda::device_count(); });
  m.def("cuda_runtime_info", []() { return std::string(cuda::runtime_info()); });
  m.attr("__version__") = FASTCONV_VERSION;
}
