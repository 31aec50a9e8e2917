// SPDX-License-Identifier: MIT
// Size arithmetic that cannot wrap: every product or sum of extents, strides and counts that grpo computes
// from caller-supplied values goes through these, so an overflowing size is a grpo::error, never UB or a
// short allocation followed by an out-of-bounds write.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "error.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {

inline std::string int_str(long long v) { return std::to_string(v); }

/// a * b for non-negative a, b, or grpo::error naming `what` when the product exceeds PTRDIFF_MAX.
inline std::ptrdiff_t checked_mul(const char* where, const char* what, std::ptrdiff_t a, std::ptrdiff_t b) {
    std::ptrdiff_t r = 0;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
        raise_argument(errc::invalid_value, where, what, "sizes whose product fits in std::ptrdiff_t",
                       int_str(a) + " * " + int_str(b));
    return r;
}
/// a + b for non-negative a, b, or grpo::error naming `what` when the sum exceeds PTRDIFF_MAX.
inline std::ptrdiff_t checked_add(const char* where, const char* what, std::ptrdiff_t a, std::ptrdiff_t b) {
    std::ptrdiff_t r = 0;
    if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r))
        raise_argument(errc::invalid_value, where, what, "sizes whose sum fits in std::ptrdiff_t",
                       int_str(a) + " + " + int_str(b));
    return r;
}

/// Number of `bytes_each`-byte elements in `count` objects, as a byte count that fits in std::ptrdiff_t.
inline std::size_t checked_bytes(const char* where, const char* what, std::ptrdiff_t count, std::size_t bytes_each) {
    return static_cast<std::size_t>(checked_mul(where, what, count, static_cast<std::ptrdiff_t>(bytes_each)));
}

/// Largest scratch allocation grpo asks the allocator for, in bytes. Larger requests are errc::out_of_memory
/// without an allocation attempt. Default: no limit beyond std::ptrdiff_t. A host (or a fuzzing or sanitizer
/// build, where a failed allocation aborts instead of throwing) may define it lower before including grpo.
#ifndef GRPO_MAX_SCRATCH_BYTES
#define GRPO_MAX_SCRATCH_BYTES PTRDIFF_MAX
#endif

/// Resizes (or assigns) a std::vector as scratch, turning std::bad_alloc / std::length_error into a grpo::error
/// (errc::out_of_memory) that names the call. The vector is unchanged when it throws.
template <class V, class F>
void grow_or_raise(const char* where, const char* what, std::ptrdiff_t count, F&& action) {
    constexpr std::size_t elem = sizeof(typename V::value_type);
    if (count < 0 || static_cast<std::size_t>(count) > V().max_size() ||
        static_cast<std::size_t>(count) > static_cast<std::size_t>(GRPO_MAX_SCRATCH_BYTES) / elem)
        raise_argument(errc::out_of_memory, where, what,
                       "scratch within the allocator's limit (" +
                           int_str(static_cast<long long>(GRPO_MAX_SCRATCH_BYTES)) + " bytes)",
                       int_str(count) + " elements of " + int_str(static_cast<long long>(elem)) + " bytes");
#if GRPO_HAS_EXCEPTIONS
    try {
        action();
    } catch (const std::bad_alloc&) {
        raise_argument(errc::out_of_memory, where, what, "scratch memory for " + int_str(count) + " elements",
                       "an allocation failure");
    } catch (const std::length_error&) {
        raise_argument(errc::out_of_memory, where, what, "scratch memory for " + int_str(count) + " elements",
                       "a length error");
    }
#else
    action();
#endif
}

/// A std::vector<T> of `count` copies of `value`, or grpo::error (errc::out_of_memory).
template <class T>
std::vector<T> make_scratch(const char* where, const char* what, std::ptrdiff_t count, const T& value = T()) {
    std::vector<T> v;
    grow_or_raise<std::vector<T>>(where, what, count, [&] { v.assign(static_cast<std::size_t>(count), value); });
    return v;
}
/// v.assign(count, value), or grpo::error (errc::out_of_memory) with v unchanged.
template <class T, class A>
void assign_scratch(const char* where, const char* what, std::vector<T, A>& v, std::ptrdiff_t count,
                    const T& value = T()) {
    grow_or_raise<std::vector<T, A>>(where, what, count, [&] {
        if (static_cast<std::size_t>(count) > v.capacity()) {
            std::vector<T, A> fresh(static_cast<std::size_t>(count), value); // strong guarantee: build, then swap
            v.swap(fresh);
        } else {
            v.assign(static_cast<std::size_t>(count), value);
        }
    });
}

} // namespace detail
GRPO_NAMESPACE_END
