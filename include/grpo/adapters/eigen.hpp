// SPDX-License-Identifier: MIT
// Eigen adapter: grpo views of Eigen storage, and Eigen maps of grpo views. Include it yourself (it is not
// part of grpo/grpo.hpp) and link grpo::eigen (find_package(grpo CONFIG COMPONENTS eigen)).
//
//   grpo::eigen::matrix(x)  matrix_view of any Eigen object with storage: Matrix, Array, Map, Ref, Block,
//                           Transpose (of those), row- or column-major, any inner/outer stride.
//   grpo::eigen::vector(x)  vector_view of the same, when x has one row or one column.
//   grpo::eigen::view(x)    vector(x) when x is a vector at compile time (VectorXd, RowVectorXf, m.col(j),
//                           ...), matrix(x) otherwise.
//   grpo::eigen::map(v)     Eigen::Map over a grpo view (row-major, Stride<Dynamic, Dynamic>): the way back.
//
// Constness follows x.data(): a const object, Map<const ...> or Ref<const ...> gives a view of const
// elements (an input); a mutable lvalue or a Map/Ref/Block of mutable storage gives a writable view (an
// output such as grad_logp, written straight into the Eigen storage). Element (i, j) of the view is
// x(i, j): the strides are Eigen's rowStride()/colStride(), i.e. (innerStride, outerStride) for column-major
// and (outerStride, innerStride) for row-major storage, in elements.
// Expressions without storage (m + n, m.array().exp(), m.replicate(...), m.reverse(), ...) are rejected at
// compile time: evaluate them into a Matrix first. A view of a temporary Matrix/Array is rejected too (it
// would dangle). Strides that grpo's views refuse (negative, or overlapping for a writable view) throw
// grpo::error.
#pragma once

#include <type_traits>
#include <utility>

#include <Eigen/Core>

#include "../core/view.hpp"

GRPO_NAMESPACE_BEGIN
namespace eigen {
namespace detail {

template <class X>
using xpr_t = std::remove_cv_t<std::remove_reference_t<X>>;

/// True when X (an Eigen expression type) addresses its coefficients through data() and strides.
template <class X>
constexpr bool has_storage() {
    return (Eigen::internal::traits<xpr_t<X>>::Flags & Eigen::DirectAccessBit) != 0;
}

template <class D>
std::true_type is_eigen_object(const Eigen::EigenBase<D>*);
std::false_type is_eigen_object(...);

template <class X>
constexpr void check_expression() {
    static_assert(decltype(is_eigen_object(std::declval<xpr_t<X>*>()))::value,
                  "grpo::eigen: the argument is not an Eigen object");
    static_assert(has_storage<X>(),
                  "grpo::eigen: this Eigen expression has no storage (no data()/strides): evaluate it into a "
                  "Matrix or Array first, e.g. Eigen::MatrixXd tmp = expr;");
    static_assert(
        !(std::is_rvalue_reference<X&&>::value && std::is_base_of<Eigen::PlainObjectBase<xpr_t<X>>, xpr_t<X>>::value),
        "grpo::eigen: a view of a temporary Matrix/Array would dangle; pass a named object");
}

/// The element type of the view: x.data()'s pointee, so constness follows the Eigen object.
template <class X>
using element_t = std::remove_pointer_t<decltype(std::declval<X&>().data())>;

} // namespace detail

/// matrix_view of an Eigen object with storage; element (i, j) is x(i, j). See the file comment.
template <class X>
auto matrix(X&& x) {
    detail::check_expression<X>();
    using T = detail::element_t<X>;
    return matrix_view<T>(x.data(), static_cast<index_t>(x.rows()), static_cast<index_t>(x.cols()),
                          static_cast<index_t>(x.rowStride()), static_cast<index_t>(x.colStride()));
}

/// vector_view of an Eigen object with storage that has one column (or one row); element i is x(i).
/// Throws grpo::error (shape_mismatch) when x has more than one row and more than one column.
template <class X>
auto vector(X&& x) {
    detail::check_expression<X>();
    using T = detail::element_t<X>;
    const index_t rows = static_cast<index_t>(x.rows()), cols = static_cast<index_t>(x.cols());
    if (cols == 1) return vector_view<T>(x.data(), rows, static_cast<index_t>(x.rowStride()));
    if (rows == 1 || rows * cols == 0)
        return vector_view<T>(x.data(), rows * cols, static_cast<index_t>(x.colStride()));
    grpo::detail::raise_argument(errc::shape_mismatch, "eigen::vector", "x", "one row or one column",
                                 grpo::detail::to_str(rows) + "x" + grpo::detail::to_str(cols));
}

/// vector(x) for compile-time vectors (IsVectorAtCompileTime), matrix(x) for everything else.
template <class X>
auto view(X&& x) {
    detail::check_expression<X>();
    if constexpr (detail::xpr_t<X>::IsVectorAtCompileTime) return eigen::vector(std::forward<X>(x));
    else return eigen::matrix(std::forward<X>(x));
}

/// Row-major dynamic Eigen matrix type with the element type (and constness) of a view.
template <class T>
using map_matrix_t = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Eigen::Map over a grpo matrix_view (no copy): rows, columns and strides as in the view.
template <class T>
Eigen::Map<std::conditional_t<std::is_const<T>::value, const map_matrix_t<T>, map_matrix_t<T>>, Eigen::Unaligned,
           Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>
map(const matrix_view<T, host_space>& v) {
    using M = std::conditional_t<std::is_const<T>::value, const map_matrix_t<T>, map_matrix_t<T>>;
    return Eigen::Map<M, Eigen::Unaligned, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>(
        v.data(), v.rows(), v.cols(), Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(v.row_stride(), v.col_stride()));
}

/// Eigen::Map over a grpo vector_view (no copy), as a column vector with the view's stride.
template <class T>
Eigen::Map<std::conditional_t<std::is_const<T>::value, const Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>,
                              Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>>,
           Eigen::Unaligned, Eigen::InnerStride<Eigen::Dynamic>>
map(const vector_view<T, host_space>& v) {
    using V = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>;
    using M = std::conditional_t<std::is_const<T>::value, const V, V>;
    return Eigen::Map<M, Eigen::Unaligned, Eigen::InnerStride<Eigen::Dynamic>>(
        v.data(), v.size(), Eigen::InnerStride<Eigen::Dynamic>(v.stride()));
}

} // namespace eigen
GRPO_NAMESPACE_END
