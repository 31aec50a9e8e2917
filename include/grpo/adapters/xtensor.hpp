// SPDX-License-Identifier: MIT
// xtensor adapter: grpo views of xtensor storage, and xtensor adaptors of grpo views. Include it yourself
// (it is not part of grpo/grpo.hpp) and link grpo::xtensor (find_package(grpo CONFIG COMPONENTS xtensor)).
//
//   grpo::xtensor::matrix(e)  matrix_view of a rank-2 expression with storage: xt::xtensor, xt::xarray,
//                             xt::adapt(...), xt::view / xt::strided_view / xt::transpose of those, row- or
//                             column-major, any positive strides. Element (i, j) is e(i, j).
//   grpo::xtensor::vector(e)  vector_view of a rank-1 expression with storage.
//   grpo::xtensor::view(e)    vector or matrix by the static rank of e (xt::xtensor, xtensor_adaptor, ...);
//                             for dynamic-rank expressions (xt::xarray) call matrix() or vector().
//   grpo::xtensor::adapt(v)   xt::adapt over a grpo view (no copy, no ownership): the way back.
//
// The first element is e.data() + e.data_offset() (strided views keep the whole buffer in data()), the
// strides are xt::strides(e, xt::stride_type::normal), in elements. xtensor's internal strides are 0 on
// axes of extent 1 (its broadcasting convention); the normal strides are the storage ones, and grpo's views
// accept any stride on an axis of extent 0 or 1 anyway, writable or not.
// Constness follows e.data(): a const expression gives a view of const elements (an input); a mutable one
// a writable view (an output such as grad_logp, written straight into the xtensor storage).
// Expressions without storage (a + b, xt::exp(a), xt::view(a, xt::keep(...)), broadcasts, ...) are
// rejected at compile time: xt::eval them first. A rank other than 1 (vector) or 2 (matrix), or strides
// that grpo's views refuse (negative, e.g. xt::range(_, _, -1); overlapping for a writable view), throw
// grpo::error.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

#if defined(__has_include) && __has_include(<xtensor/containers/xadapt.hpp>)
#include <xtensor/containers/xadapt.hpp> // xtensor >= 0.26 layout
#include <xtensor/core/xstrides.hpp>
#include <xtensor/utils/xutils.hpp>
#else
#include <xtensor/xadapt.hpp>
#include <xtensor/xstrides.hpp>
#include <xtensor/xutils.hpp>
#endif

#include "../core/view.hpp"

GRPO_NAMESPACE_BEGIN
namespace xtensor {
namespace detail {

template <class E>
using xpr_t = std::remove_cv_t<std::remove_reference_t<E>>;

template <class E, class = void>
struct has_pointer_data : std::false_type {};
template <class E>
struct has_pointer_data<E, std::void_t<decltype(std::declval<E&>().data()), decltype(std::declval<E&>().data_offset()),
                                       decltype(std::declval<E&>().strides())>>
    : std::is_pointer<decltype(std::declval<E&>().data())> {};

/// xt::xarray / xt::xtensor own their buffer: a view of a temporary one would dangle. Adaptors (xt::adapt)
/// and views do not own theirs and may be passed as temporaries.
template <class E>
struct is_owning_container : std::false_type {};
template <class EC, ::xt::layout_type L, class SC, class Tag>
struct is_owning_container<::xt::xarray_container<EC, L, SC, Tag>> : std::true_type {};
template <class EC, std::size_t N, ::xt::layout_type L, class Tag>
struct is_owning_container<::xt::xtensor_container<EC, N, L, Tag>> : std::true_type {};

template <class E>
constexpr void check_expression() {
    static_assert(std::is_base_of<::xt::xexpression<xpr_t<E>>, xpr_t<E>>::value,
                  "grpo::xtensor: the argument is not an xtensor expression");
    static_assert(has_pointer_data<E>::value,
                  "grpo::xtensor: this xtensor expression has no storage (no data()/data_offset()/strides()): "
                  "evaluate it first, e.g. auto tmp = xt::eval(expr); or xt::xarray<double> tmp = expr;");
    static_assert(!(std::is_rvalue_reference<E&&>::value && is_owning_container<xpr_t<E>>::value),
                  "grpo::xtensor: a view of a temporary container would dangle; pass a named object");
}

template <class E>
using element_t = std::remove_pointer_t<decltype(std::declval<E&>().data())>;

/// Static rank of E, or -1 when the rank is only known at run time (xt::xarray).
template <class E, class = void>
struct static_rank : std::integral_constant<int, -1> {};
template <class E>
struct static_rank<E, std::void_t<decltype(std::tuple_size<typename xpr_t<E>::shape_type>::value)>>
    : std::integral_constant<int, static_cast<int>(std::tuple_size<typename xpr_t<E>::shape_type>::value)> {};

template <class E>
void check_rank(const char* where, const E& e, std::size_t rank) {
    if (e.dimension() != rank)
        grpo::detail::raise_argument(errc::shape_mismatch, where, "e",
                                     rank == 1 ? "a rank-1 expression" : "a rank-2 expression",
                                     "rank " + std::to_string(e.dimension()));
}

} // namespace detail

/// matrix_view of a rank-2 xtensor expression with storage; element (i, j) is e(i, j). See the file comment.
template <class E>
auto matrix(E&& e) {
    detail::check_expression<E>();
    using T = detail::element_t<E>;
    detail::check_rank("xtensor::matrix", e, 2);
    const auto s = ::xt::strides(e, ::xt::stride_type::normal);
    return matrix_view<T>(e.data() + e.data_offset(), static_cast<index_t>(e.shape()[0]),
                          static_cast<index_t>(e.shape()[1]), static_cast<index_t>(s[0]), static_cast<index_t>(s[1]));
}

/// vector_view of a rank-1 xtensor expression with storage; element i is e(i).
template <class E>
auto vector(E&& e) {
    detail::check_expression<E>();
    using T = detail::element_t<E>;
    detail::check_rank("xtensor::vector", e, 1);
    const auto s = ::xt::strides(e, ::xt::stride_type::normal);
    return vector_view<T>(e.data() + e.data_offset(), static_cast<index_t>(e.shape()[0]), static_cast<index_t>(s[0]));
}

/// vector(e) or matrix(e) by the static rank of e (1 or 2); dynamic-rank expressions need matrix()/vector().
template <class E>
auto view(E&& e) {
    detail::check_expression<E>();
    constexpr int rank = detail::static_rank<E>::value;
    static_assert(rank != -1, "grpo::xtensor::view: the rank of this expression is dynamic (xt::xarray); call "
                              "grpo::xtensor::matrix() or grpo::xtensor::vector()");
    static_assert(rank == -1 || rank == 1 || rank == 2, "grpo::xtensor::view: grpo views have rank 1 or 2");
    if constexpr (rank == 1) return xtensor::vector(std::forward<E>(e));
    else return xtensor::matrix(std::forward<E>(e));
}

/// xt::adapt over a grpo matrix_view (no copy, no ownership): shape {rows, cols}, the view's strides.
/// xtensor wants the buffer size of a strided adaptor to be its element count (rows * cols), not the memory
/// it spans, so the adaptor's storage() is not the memory: use element access, views and assignment, never
/// storage() or linear iterators, on a strided or broadcast (stride 0) view.
template <class T>
auto adapt(const matrix_view<T, host_space>& v) {
    const std::size_t count = static_cast<std::size_t>(v.rows() * v.cols());
    const std::array<std::size_t, 2> shape{static_cast<std::size_t>(v.rows()), static_cast<std::size_t>(v.cols())};
    const std::array<std::ptrdiff_t, 2> strides{v.row_stride(), v.col_stride()};
    return ::xt::adapt(v.data(), count, ::xt::no_ownership(), shape, strides);
}

/// xt::adapt over a grpo vector_view (no copy, no ownership): shape {size}, the view's stride (see above).
template <class T>
auto adapt(const vector_view<T, host_space>& v) {
    const std::size_t count = static_cast<std::size_t>(v.size());
    const std::array<std::size_t, 1> shape{static_cast<std::size_t>(v.size())};
    const std::array<std::ptrdiff_t, 1> strides{v.stride()};
    return ::xt::adapt(v.data(), count, ::xt::no_ownership(), shape, strides);
}

} // namespace xtensor
GRPO_NAMESPACE_END
