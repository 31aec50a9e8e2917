// SPDX-License-Identifier: MIT
// Host-side argument checks shared by every backend: they run before any work and before any write.
#pragma once

#include <cmath>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

#include "error.hpp"
#include "view.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {

inline std::string shape_str(index_t rows, index_t cols) { return "[" + to_str(rows) + ", " + to_str(cols) + "]"; }
inline std::string num_str(double v) {
    std::ostringstream s;
    s.precision(17);
    s << v;
    return s.str();
}

template <class T, class S>
void check_shape(const char* where, const char* name, const matrix_view<T, S>& m, index_t rows, index_t cols) {
    if (m.rows() != rows || m.cols() != cols)
        raise_argument(errc::shape_mismatch, where, name, "shape " + shape_str(rows, cols),
                       shape_str(m.rows(), m.cols()));
}
template <class T, class S>
void check_size(const char* where, const char* name, const vector_view<T, S>& v, index_t size) {
    if (v.size() != size)
        raise_argument(errc::shape_mismatch, where, name, "size " + to_str(size), "size " + to_str(v.size()));
}

/// `value` must be finite and in [lo, hi] (use +-infinity for an open side).
inline void check_range(const char* where, const char* name, double value, double lo, double hi, const char* expected) {
    if (!std::isfinite(value) || value < lo || value > hi)
        raise_argument(std::isfinite(value) ? errc::invalid_value : errc::non_finite, where, name, expected,
                       num_str(value));
}

/// Outputs may not overlap inputs or each other.
template <class A, class B>
void check_no_alias(const char* where, const char* out_name, const A& out, const char* in_name, const B& in) {
    if (range_of(out).overlaps(range_of(in)))
        raise_argument(errc::aliasing, where, out_name, std::string("memory disjoint from '") + in_name + "'",
                       "overlapping memory");
}

/// An enum value that is one of its `count` enumerators (0 .. count-1), or grpo::error naming the field: an
/// out-of-range value cast from an integer must not silently mean something else.
template <class E>
void check_enum(const char* where, const char* name, E value, int count) {
    const auto v = static_cast<long long>(value);
    if (v < 0 || v >= count)
        raise_argument(errc::invalid_value, where, name, "one of its " + std::to_string(count) + " enumerators",
                       "the value " + std::to_string(v));
}

/// A view's name and the bytes it spans (range_of), for check_outputs_disjoint.
struct named_range {
    const char* name;
    byte_range range;
};

/// Every output disjoint from every input and from every other output (absent or empty views span nothing).
/// The one aliasing rule of every entry point: list all outputs and all inputs once.
inline void check_outputs_disjoint(const char* where, std::initializer_list<named_range> outputs,
                                   std::initializer_list<named_range> inputs) {
    for (auto o = outputs.begin(); o != outputs.end(); ++o) {
        for (const named_range& in : inputs)
            if (o->range.overlaps(in.range))
                raise_argument(errc::aliasing, where, o->name, std::string("memory disjoint from '") + in.name + "'",
                               "overlapping memory");
        for (auto p = outputs.begin(); p != o; ++p)
            if (o->range.overlaps(p->range))
                raise_argument(errc::aliasing, where, o->name, std::string("memory disjoint from '") + p->name + "'",
                               "overlapping memory");
    }
}

/// The type per-token math runs in for element type T: double for double, float otherwise (float and the
/// 16-bit types, whose math is fp32).
template <class T>
using math_type_t = typename std::conditional<std::is_same<T, double>::value, double, float>::type;

/// A configuration value used in element type T's math must be representable there: |value| <= max(T)
/// (1e39 as a float beta would become inf, and 0 * inf = NaN).
template <class T>
void check_representable(const char* where, const char* name, double value) {
    using M = math_type_t<T>;
    const double limit = static_cast<double>(std::numeric_limits<M>::max());
    if (std::isfinite(value) && !(std::fabs(value) <= limit))
        raise_argument(errc::invalid_value, where, name,
                       std::string("a value representable in the ") + (sizeof(M) == 4 ? "fp32" : "fp64") +
                           " math of this element type (|x| <= " + num_str(limit) + ")",
                       num_str(value));
}

} // namespace detail
GRPO_NAMESPACE_END
