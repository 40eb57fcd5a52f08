// Argument checks shared by the binding and the kernels. A failed check throws
// fastconv::ArgError (mapped to Python ValueError) or fastconv::TypeErr
// (TypeError); the message names the argument and what was expected.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace fastconv {

struct ArgError : std::invalid_argument { using std::invalid_argument::invalid_argument; };
struct TypeErr : std::invalid_argument { using std::invalid_argument::invalid_argument; };
struct RuntimeErr : std::runtime_error { using std::runtime_error::runtime_error; };

namespace detail {
inline void build(std::ostringstream&) {}
template <typename T, typename... Rest>
void build(std::ostringstream& os, const T& v, const Rest&... rest) { os << v; build(os, rest...); }
template <typename... Args>
std::string str(const Args&... args) { std::ostringstream os; build(os, args...); return os.str(); }
}  // namespace detail

}  // namespace fastconv

// FC_CHECK(cond, "weight", "expected 4 dimensions, got ", ndim)
#define FC_CHECK(cond, argname, ...)                                                    \
  do {                                                                                  \
    if (!(cond))                                                                        \
      throw ::fastconv::ArgError(::fastconv::detail::str(argname, ": ", __VA_ARGS__));  \
  } while (0)

#define FC_CHECK_TYPE(cond, argname, ...)                                               \
  do {                                                                                  \
    if (!(cond))                                                                        \
      throw ::fastconv::TypeErr(::fastconv::detail::str(argname, ": ", __VA_ARGS__));   \
  } while (0)

#define FC_FAIL_RUNTIME(...) throw ::fastconv::RuntimeErr(::fastconv::detail::str(__VA_ARGS__))
