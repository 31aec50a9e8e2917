// SPDX-License-Identifier: MIT
// Host-side argument checks shared by every backend: they run before any work and before any write.
#pragma once

#include <cmath>
#include <sstream>
#include <string>

#include "../error.hpp"
#include "../view.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {

inline std::string shape_str(index_t rows, index_t cols) {
    return "[" + to_str(rows) + ", " + to_str(cols) + "]";
}
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
inline void check_range(const char* where, const char* name, double value, double lo, double hi,
                        const char* expected) {
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

} // namespace detail
GRPO_NAMESPACE_END
