// SPDX-License-Identifier: MIT
// Non-owning strided views of the caller's memory: the only way data enters grpo.
//
// Rank 1 (vector_view) and rank 2 (matrix_view, rows = completions, columns = token positions). Strides
// are counted in elements, like torch, xtensor and DLPack (ggml's byte strides are converted by its adapter).
// A stride of 0 is allowed for read-only views (const element type): a per-completion advantage broadcast
// over tokens is then a matrix_view with column stride 0, exactly what torch's expand() produces.
// The memory-space tag says who may dereference the pointer; host algorithms static_assert host_space and
// the CUDA backend static_asserts device_space, so a host pointer can never reach a kernel by accident.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "config.hpp"
#include "checked.hpp"
#include "error.hpp"

GRPO_NAMESPACE_BEGIN

using index_t = std::ptrdiff_t;

/// Memory that the CPU may dereference.
struct host_space {
    static constexpr const char* name = "host";
};
/// Memory that only CUDA device code may dereference (cudaMalloc, torch CUDA tensors, ggml CUDA buffers).
struct device_space {
    static constexpr const char* name = "device";
};

namespace detail {

inline std::string to_str(index_t v) { return std::to_string(static_cast<long long>(v)); }

inline void check_extent_and_stride(const char* what, const char* name, index_t extent, index_t stride, bool read_only,
                                    index_t other_extent = 1) {
    if (extent < 0) raise_argument(errc::shape_mismatch, what, name, "a non-negative extent", to_str(extent));
    if (stride < 0) raise_argument(errc::invalid_value, what, name, "a non-negative stride", to_str(stride));
    // Stride 0 makes distinct elements share memory; a view without elements has none to share.
    if (stride == 0 && extent > 1 && other_extent > 0 && !read_only)
        raise_argument(errc::invalid_value, what, name,
                       "a non-zero stride (stride 0 is allowed only for read-only views)", "stride 0");
}

/// An extent or stride of any integer type as index_t (a container's size_t size() fits unless it exceeds
/// PTRDIFF_MAX); what does not fit is an error, never a silent wrap.
template <class I>
index_t as_index(const char* what, const char* name, I v) {
    static_assert(std::is_integral<I>::value && !std::is_same<I, bool>::value,
                  "grpo views: extents and strides must be integers");
    constexpr index_t max = std::numeric_limits<index_t>::max();
    if constexpr (std::is_signed<I>::value) {
        if (static_cast<long double>(v) > static_cast<long double>(max) ||
            static_cast<long double>(v) < static_cast<long double>(std::numeric_limits<index_t>::min()))
            raise_argument(errc::shape_mismatch, what, name, "a value that fits index_t", std::to_string(v));
    } else if (static_cast<std::uint64_t>(v) > static_cast<std::uint64_t>(max)) {
        raise_argument(errc::shape_mismatch, what, name, "a value that fits index_t", std::to_string(v));
    }
    return static_cast<index_t>(v);
}

template <class...>
struct always_false : std::false_type {};

/// Containers a view may be made of whole: std::vector and std::array, whose elements are contiguous by
/// definition. Other types with data() and size() (Eigen maps and blocks, strided spans) may have strides, so
/// they go through their adapters or an explicit (pointer, extents, strides) view instead.
template <class Container>
struct is_contiguous_container_type : std::false_type {};
template <class U, class A>
struct is_contiguous_container_type<std::vector<U, A>> : std::true_type {};
template <class U, std::size_t N>
struct is_contiguous_container_type<std::array<U, N>> : std::true_type {};
template <class Container, class T, class = void>
struct is_contiguous_container : std::false_type {};
template <class Container, class T>
struct is_contiguous_container<Container, T, std::void_t<decltype(std::declval<Container&>().data())>>
    : std::integral_constant<bool, is_contiguous_container_type<std::remove_cv_t<Container>>::value &&
                                       std::is_convertible<decltype(std::declval<Container&>().data()), T*>::value> {};

// The message of the static_assert a mistaken view conversion reaches (a string literal, as static_assert needs).
#define GRPO_VIEW_CONVERSION_ERROR                                                                              \
    "grpo: a view converts only to a view of the same element type (adding const) in the same memory space. A " \
    "mask must have the element type of logp: convert an integer or bool mask to float/double once. Host "      \
    "executors take host_space views, exec::cuda device_space views."

/// A view of U in space S2 converts to a view of T in Space only when the element type is the same (adding
/// const) and the space is the same. The rejected conversions that hosts write by mistake (an integer or bool
/// mask for float inputs, host views for a device call or device views for a host call) reach a static_assert
/// through this trait; other element-type mismatches (float vs double) stay plain overload failures, so the
/// float/double overload sets keep resolving.
template <class U, class S2, class T, class Space>
constexpr bool is_mistaken_view_conversion =
    !std::is_same<S2, Space>::value || (!std::is_same<std::remove_cv_t<U>, std::remove_cv_t<T>>::value &&
                                        !std::is_floating_point<std::remove_cv_t<U>>::value);

/// Elements from the first to the last one a view addresses, plus one, checked so that neither it nor its size
/// in bytes overflows: then every index computation inside the view (i * stride + j * col_stride) is in range.
inline index_t checked_span(const char* what, index_t rows, index_t row_stride, index_t cols, index_t col_stride,
                            std::size_t element_bytes) {
    if (rows == 0 || cols == 0) return 0;
    const index_t span = checked_add(
        what, "extents/strides", checked_mul(what, "extents/strides", rows - 1, row_stride),
        checked_add(what, "extents/strides", checked_mul(what, "extents/strides", cols - 1, col_stride), 1));
    (void)checked_mul(what, "extents/strides", span, static_cast<index_t>(element_bytes));
    (void)checked_mul(what, "rows/cols", rows, cols); // size() must be representable too
    return span;
}

} // namespace detail

/// Rank-1 strided view: element i lives at data[i * stride].
template <class T, class Space = host_space>
class vector_view {
public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;
    using memory_space = Space;

    /// An absent view: optional inputs left default-constructed are "not given".
    constexpr vector_view() noexcept = default;

    /// Views `size` elements starting at `data`, `stride` elements apart. Throws grpo::error on a negative
    /// size or stride, a null pointer with size > 0, or stride 0 on a writable view.
    vector_view(T* data, index_t size, index_t stride = 1) : data_(data), size_(size), stride_(stride) {
        detail::check_extent_and_stride("vector_view", "size/stride", size, stride, std::is_const<T>::value);
        (void)detail::checked_span("vector_view", size, stride, 1, 1, sizeof(T));
        if (data == nullptr && size > 0)
            detail::raise_argument(errc::invalid_value, "vector_view", "data", "a non-null pointer", "nullptr");
    }

    /// The same from any integer types (size_t sizes, int literals): values beyond index_t are an error.
    template <class S, class St = index_t,
              std::enable_if_t<std::is_integral<S>::value && std::is_integral<St>::value &&
                                   !(std::is_same<S, index_t>::value && std::is_same<St, index_t>::value),
                               int> = 0>
    vector_view(T* data, S size, St stride = 1)
        : vector_view(data, detail::as_index("vector_view", "size", size),
                      detail::as_index("vector_view", "stride", stride)) {}

    /// Every element of a std::vector or std::array, so the extent cannot disagree with the storage. Host memory
    /// only.
    template <class Container, std::enable_if_t<detail::is_contiguous_container<Container, T>::value &&
                                                    std::is_same<Space, host_space>::value,
                                                int> = 0>
    vector_view(Container& c) // NOLINT: implicit, like std::span
        : vector_view(c.data(), detail::as_index("vector_view", "size", c.size())) {}

    /// A view of mutable data converts to a view of const data.
    template <class U,
              class = std::enable_if_t<std::is_convertible<U (*)[], T (*)[]>::value && !std::is_same<U, T>::value>>
    constexpr vector_view(const vector_view<U, Space>& other) noexcept
        : data_(other.data()), size_(other.size()), stride_(other.stride()) {}

    /// Conversions hosts write by mistake: a compile error that says what to do instead.
    template <class U, class S2, std::enable_if_t<detail::is_mistaken_view_conversion<U, S2, T, Space>, int> = 0>
    vector_view(const vector_view<U, S2>&) { // NOLINT: implicit so that the mistake reaches the static_assert
        static_assert(detail::always_false<U>::value, GRPO_VIEW_CONVERSION_ERROR);
    }

    GRPO_HOST_DEVICE constexpr T* data() const noexcept { return data_; }
    GRPO_HOST_DEVICE constexpr index_t size() const noexcept { return size_; }
    GRPO_HOST_DEVICE constexpr index_t stride() const noexcept { return stride_; }
    GRPO_HOST_DEVICE constexpr bool empty() const noexcept { return size_ == 0; }
    /// True unless default-constructed (an optional input that was not given).
    GRPO_HOST_DEVICE constexpr bool present() const noexcept { return data_ != nullptr; }
    GRPO_HOST_DEVICE constexpr T& operator[](index_t i) const noexcept { return data_[i * stride_]; }

private:
    T* data_ = nullptr;
    index_t size_ = 0;
    index_t stride_ = 1;
};

/// Rank-2 strided view: element (i, j) lives at data[i * row_stride + j * col_stride].
/// Rows are completions and columns token positions throughout grpo.
template <class T, class Space = host_space>
class matrix_view {
public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;
    using memory_space = Space;

    /// An absent view: optional inputs left default-constructed are "not given".
    constexpr matrix_view() noexcept = default;

    /// Contiguous row-major rows x cols.
    matrix_view(T* data, index_t rows, index_t cols) : matrix_view(data, rows, cols, cols, 1) {}
    /// The same from any integer types (size_t extents, int literals): values beyond index_t are an error.
    template <class R, class C,
              std::enable_if_t<std::is_integral<R>::value && std::is_integral<C>::value &&
                                   !(std::is_same<R, index_t>::value && std::is_same<C, index_t>::value),
                               int> = 0>
    matrix_view(T* data, R rows, C cols)
        : matrix_view(data, detail::as_index("matrix_view", "rows", rows),
                      detail::as_index("matrix_view", "cols", cols)) {}

    /// General strided view. Throws grpo::error on negative extents or strides, a null pointer with
    /// elements, stride 0 on a writable view, or a writable view whose elements overlap each other.
    matrix_view(T* data, index_t rows, index_t cols, index_t row_stride, index_t col_stride)
        : data_(data), rows_(rows), cols_(cols), row_stride_(row_stride), col_stride_(col_stride) {
        constexpr bool read_only = std::is_const<T>::value;
        detail::check_extent_and_stride("matrix_view", "rows/row_stride", rows, row_stride, read_only, cols);
        detail::check_extent_and_stride("matrix_view", "cols/col_stride", cols, col_stride, read_only, rows);
        (void)detail::checked_span("matrix_view", rows, row_stride, cols, col_stride, sizeof(T));
        if (data == nullptr && rows > 0 && cols > 0)
            detail::raise_argument(errc::invalid_value, "matrix_view", "data", "a non-null pointer", "nullptr");
        // A writable view must map distinct (i, j) to distinct addresses: one axis must step past the last element
        // of the other, so that rows (or columns) occupy disjoint address intervals (row-major, column-major and
        // padded layouts all do). The products cannot overflow: checked_span bounded (n - 1) * stride + 1.
        if (!read_only && rows > 1 && cols > 1 && row_stride < (cols - 1) * col_stride + 1 &&
            col_stride < (rows - 1) * row_stride + 1)
            detail::raise_argument(
                errc::aliasing, "matrix_view", "row_stride/col_stride", "non-overlapping strides for a writable view",
                "row_stride " + detail::to_str(row_stride) + ", col_stride " + detail::to_str(col_stride) + " for " +
                    detail::to_str(rows) + "x" + detail::to_str(cols));
    }

    /// rows x cols row-major over a std::vector or std::array, which must hold exactly rows * cols elements
    /// (grpo::error otherwise): a wrong extent cannot read past the storage. Host memory only.
    template <class Container, class R, class C,
              std::enable_if_t<detail::is_contiguous_container<Container, T>::value &&
                                   std::is_same<Space, host_space>::value && std::is_integral<R>::value &&
                                   std::is_integral<C>::value,
                               int> = 0>
    matrix_view(Container& c, R rows, C cols)
        : matrix_view(c.data(), detail::as_index("matrix_view", "rows", rows),
                      detail::as_index("matrix_view", "cols", cols)) {
        const index_t held = detail::as_index("matrix_view", "container size", c.size());
        if (held != rows_ * cols_)
            detail::raise_argument(errc::shape_mismatch, "matrix_view", "container",
                                   "rows * cols = " + detail::to_str(rows_ * cols_) + " elements",
                                   detail::to_str(held) + " elements");
    }

    /// The general form from any integer types.
    template <class R, class C, class RS, class CS,
              std::enable_if_t<std::is_integral<R>::value && std::is_integral<C>::value &&
                                   std::is_integral<RS>::value && std::is_integral<CS>::value &&
                                   !(std::is_same<R, index_t>::value && std::is_same<C, index_t>::value &&
                                     std::is_same<RS, index_t>::value && std::is_same<CS, index_t>::value),
                               int> = 0>
    matrix_view(T* data, R rows, C cols, RS row_stride, CS col_stride)
        : matrix_view(data, detail::as_index("matrix_view", "rows", rows),
                      detail::as_index("matrix_view", "cols", cols),
                      detail::as_index("matrix_view", "row_stride", row_stride),
                      detail::as_index("matrix_view", "col_stride", col_stride)) {}

    /// A view of mutable data converts to a view of const data.
    template <class U,
              class = std::enable_if_t<std::is_convertible<U (*)[], T (*)[]>::value && !std::is_same<U, T>::value>>
    constexpr matrix_view(const matrix_view<U, Space>& other) noexcept
        : data_(other.data()),
          rows_(other.rows()),
          cols_(other.cols()),
          row_stride_(other.row_stride()),
          col_stride_(other.col_stride()) {}

    /// Conversions hosts write by mistake (an integer or bool mask for float inputs, a view of the other memory
    /// space): a compile error that says what to do instead.
    template <class U, class S2, std::enable_if_t<detail::is_mistaken_view_conversion<U, S2, T, Space>, int> = 0>
    matrix_view(const matrix_view<U, S2>&) { // NOLINT: implicit so that the mistake reaches the static_assert
        static_assert(detail::always_false<U>::value, GRPO_VIEW_CONVERSION_ERROR);
    }

    GRPO_HOST_DEVICE constexpr T* data() const noexcept { return data_; }
    GRPO_HOST_DEVICE constexpr index_t rows() const noexcept { return rows_; }
    GRPO_HOST_DEVICE constexpr index_t cols() const noexcept { return cols_; }
    GRPO_HOST_DEVICE constexpr index_t row_stride() const noexcept { return row_stride_; }
    GRPO_HOST_DEVICE constexpr index_t col_stride() const noexcept { return col_stride_; }
    GRPO_HOST_DEVICE constexpr index_t size() const noexcept { return rows_ * cols_; }
    GRPO_HOST_DEVICE constexpr bool empty() const noexcept { return rows_ == 0 || cols_ == 0; }
    /// True unless default-constructed (an optional input that was not given).
    GRPO_HOST_DEVICE constexpr bool present() const noexcept { return data_ != nullptr; }
    GRPO_HOST_DEVICE constexpr T& operator()(index_t i, index_t j) const noexcept {
        return data_[i * row_stride_ + j * col_stride_];
    }
    /// Pointer to the first element of row i (columns are col_stride() apart).
    GRPO_HOST_DEVICE constexpr T* row_data(index_t i) const noexcept { return data_ + i * row_stride_; }

private:
    T* data_ = nullptr;
    index_t rows_ = 0;
    index_t cols_ = 0;
    index_t row_stride_ = 0;
    index_t col_stride_ = 1;
};

/// Contiguous rank-1 view of a pointer and a size.
template <class T>
vector_view<T> make_vector_view(T* data, index_t size) {
    return vector_view<T>(data, size);
}
/// Contiguous row-major rank-2 view.
template <class T>
matrix_view<T> make_matrix_view(T* data, index_t rows, index_t cols) {
    return matrix_view<T>(data, rows, cols);
}

/// A per-completion vector seen as a [size, cols] matrix whose row i repeats v[i] (column stride 0):
/// how a per-sequence advantage reaches the per-token loss without a copy.
template <class T, class Space>
matrix_view<const T, Space> broadcast_to_tokens(vector_view<const T, Space> v, index_t cols) {
    return matrix_view<const T, Space>(v.data(), v.size(), cols, v.stride(), 0);
}
template <class T, class Space, class = std::enable_if_t<!std::is_const<T>::value>>
matrix_view<const T, Space> broadcast_to_tokens(vector_view<T, Space> v, index_t cols) {
    return broadcast_to_tokens(vector_view<const T, Space>(v), cols);
}

namespace detail {

/// Half-open byte range [first, last) touched by a view; empty views touch nothing.
struct byte_range {
    std::uintptr_t first = 0;
    std::uintptr_t last = 0;
    bool overlaps(const byte_range& o) const { return first < o.last && o.first < last; }
};

template <class T, class S>
byte_range range_of(const vector_view<T, S>& v) {
    if (!v.present() || v.empty()) return {};
    auto base = reinterpret_cast<std::uintptr_t>(v.data());
    return {base, base + static_cast<std::uintptr_t>((v.size() - 1) * v.stride() + 1) * sizeof(T)};
}
template <class T, class S>
byte_range range_of(const matrix_view<T, S>& m) {
    if (!m.present() || m.empty()) return {};
    auto base = reinterpret_cast<std::uintptr_t>(m.data());
    auto span = (m.rows() - 1) * m.row_stride() + (m.cols() - 1) * m.col_stride() + 1;
    return {base, base + static_cast<std::uintptr_t>(span) * sizeof(T)};
}

} // namespace detail

GRPO_NAMESPACE_END
