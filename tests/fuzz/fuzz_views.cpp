// SPDX-License-Identifier: MIT
// libFuzzer harness of the view constructors: vector_view / matrix_view (const and mutable, host and device
// space), make_vector_view / make_matrix_view, broadcast_to_tokens, detail::range_of, and the Eigen (Map with
// hostile strides) and xtensor adapters when their headers are found. Views are only constructed, never
// dereferenced (the pointer is a one-element buffer), so any extent or stride may be tried.
//
// Oracles: construction succeeds or throws grpo::error; an accepted view reports the extents and strides it was
// given; an accepted writable view maps distinct (i, j) to distinct elements (brute force for small extents,
// the documented stride rule otherwise) and has no zero stride over an extent > 1; negative extents and strides
// are rejected; an accepted view's element span fits in index_t and in bytes (otherwise no memory can hold it);
// detail::range_of of an accepted view does not overflow (UBSan) and covers exactly its span.
#include "fuzz_input.hpp"

#if __has_include(<Eigen/Core>)
#include <grpo/adapters/eigen.hpp>
#define GRPO_FUZZ_EIGEN 1
#endif
#if __has_include(<xtensor/xadapt.hpp>) && __has_include(<xtensor/xtensor.hpp>)
#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>
#include <grpo/adapters/xtensor.hpp>
#define GRPO_FUZZ_XTENSOR 1
#endif

namespace {

using namespace fuzz;
using grpo::index_t;

std::int64_t draw_extent(fuzz_input& in) {
    const std::uint8_t c = in.u8();
    if (c < 160) return in.range(0, 6);
    if (c < 200) return in.range(0, 5000);
    if (c < 220) return std::int64_t(3037000500);
    return in.hostile_size();
}
std::int64_t draw_stride(fuzz_input& in, std::int64_t other_extent) {
    const std::uint8_t c = in.u8();
    if (c < 100) return in.range(0, 4);
    if (c < 140) return other_extent;
    if (c < 170)
        return other_extent > -100 && other_extent < (std::int64_t(1) << 60) ? other_extent + in.range(-2, 2) : 1;
    if (c < 200) return -in.range(1, 3);
    const std::int64_t big[] = {std::int64_t(1) << 31,
                                std::int64_t(1) << 32,
                                std::int64_t(1) << 61,
                                std::int64_t(1) << 62,
                                std::numeric_limits<std::int64_t>::max(),
                                std::numeric_limits<std::int64_t>::min(),
                                std::int64_t(3037000500),
                                std::int64_t(1) << 40};
    return big[in.u8() % 8];
}

/// The largest element offset of a [rows, cols] view (128-bit, exact), or -1 when empty.
__int128 max_offset(std::int64_t rows, std::int64_t cols, std::int64_t rs, std::int64_t cs) {
    if (rows <= 0 || cols <= 0) return -1;
    return __int128(rows - 1) * rs + __int128(cols - 1) * cs;
}

template <class T, class Space>
void check_matrix(std::int64_t rows, std::int64_t cols, std::int64_t rs, std::int64_t cs, T* p, bool via_contiguous) {
    constexpr bool writable = !std::is_const<T>::value;
    grpo::matrix_view<T, Space> v;
    const outcome r = call_checked("matrix_view", [&] {
        v = via_contiguous ? grpo::matrix_view<T, Space>(p, rows, cols)
                           : grpo::matrix_view<T, Space>(p, rows, cols, rs, cs);
    });
    if (via_contiguous) rs = cols, cs = 1;
    if (!r.ok) return;
    const char* kind = writable ? "writable" : "read-only";
    if (v.rows() != rows || v.cols() != cols || v.row_stride() != rs || v.col_stride() != cs)
        finding("view-fields", "matrix_view reports other extents/strides than given");
    if (rows < 0 || cols < 0)
        finding("view-negative-extent", "%s matrix_view accepted extents %lld x %lld", kind, (long long)rows,
                (long long)cols);
    if (rs < 0 || cs < 0)
        finding("view-negative-stride", "%s matrix_view accepted strides (%lld, %lld)", kind, (long long)rs,
                (long long)cs);
    const __int128 mo = max_offset(rows, cols, rs, cs);
    if (mo >= 0) {
        const __int128 lim = std::numeric_limits<std::int64_t>::max();
        if (mo + 1 > lim || (mo + 1) * __int128(sizeof(T)) > lim)
            finding("view-unrepresentable-span",
                    "%s matrix_view [%lld x %lld] strides (%lld, %lld) accepted: its span does not fit index_t/bytes",
                    kind, (long long)rows, (long long)cols, (long long)rs, (long long)cs);
        // range_of: the byte range (UBSan checks its arithmetic).
        const grpo::detail::byte_range br = grpo::detail::range_of(v);
        const auto want = static_cast<std::uintptr_t>((mo + 1) * __int128(sizeof(T)));
        if (br.last - br.first != want)
            finding("range-of", "range_of spans %zu bytes, expected %zu", std::size_t(br.last - br.first),
                    std::size_t(want));
    }
    if (writable && rows > 0 && cols > 0) {
        if ((rows > 1 && rs == 0) || (cols > 1 && cs == 0))
            finding("writable-view-zero-stride", "writable matrix_view [%lld x %lld] strides (%lld, %lld)",
                    (long long)rows, (long long)cols, (long long)rs, (long long)cs);
        if (__int128(rows) * cols <= 4096) {
            std::set<__int128> seen;
            for (std::int64_t i = 0; i < rows; ++i)
                for (std::int64_t j = 0; j < cols; ++j)
                    if (!seen.insert(__int128(i) * rs + __int128(j) * cs).second)
                        finding(
                            "writable-view-self-overlap",
                            "writable matrix_view [%lld x %lld] strides (%lld, %lld): (%lld, %lld) repeats an element",
                            (long long)rows, (long long)cols, (long long)rs, (long long)cs, (long long)i, (long long)j);
        } else if (rows > 1 && cols > 1) {
            // Sufficient for distinct elements: one axis steps past the last element of the other (rows, or
            // columns, then occupy disjoint address intervals).
            if (!(__int128(rs) > __int128(cols - 1) * cs || __int128(cs) > __int128(rows - 1) * rs))
                finding("writable-view-self-overlap",
                        "writable matrix_view [%lld x %lld] strides (%lld, %lld) accepted", (long long)rows,
                        (long long)cols, (long long)rs, (long long)cs);
        }
    }
}

template <class T, class Space>
void check_vector(std::int64_t size, std::int64_t stride, T* p) {
    constexpr bool writable = !std::is_const<T>::value;
    grpo::vector_view<T, Space> v;
    const outcome r = call_checked("vector_view", [&] { v = grpo::vector_view<T, Space>(p, size, stride); });
    if (!r.ok) return;
    if (v.size() != size || v.stride() != stride) finding("view-fields", "vector_view reports other size/stride");
    if (size < 0 || stride < 0)
        finding("view-negative", "vector_view accepted size %lld stride %lld", (long long)size, (long long)stride);
    if (writable && size > 1 && stride == 0)
        finding("writable-view-zero-stride", "writable vector_view of %lld with stride 0", (long long)size);
    if (size > 0) {
        const __int128 mo = __int128(size - 1) * stride;
        const __int128 lim = std::numeric_limits<std::int64_t>::max();
        if (mo + 1 > lim || (mo + 1) * __int128(sizeof(T)) > lim)
            finding("view-unrepresentable-span",
                    "%s vector_view size %lld stride %lld accepted: its span does not fit index_t/bytes",
                    writable ? "writable" : "read-only", (long long)size, (long long)stride);
        (void)grpo::detail::range_of(v);
    }
}

template <class T>
void fuzz_plain(fuzz_input& in) {
    static T cell[4] = {};
    const std::int64_t rows = draw_extent(in), cols = draw_extent(in);
    const std::int64_t rs = draw_stride(in, cols), cs = draw_stride(in, rows);
    T* p = in.chance(250) ? cell : nullptr;
    const bool contiguous = in.chance(40);
    switch (in.u8() % 4) {
    case 0: check_matrix<T, grpo::host_space>(rows, cols, rs, cs, p, contiguous); break;
    case 1: check_matrix<const T, grpo::host_space>(rows, cols, rs, cs, p, contiguous); break;
    case 2: check_matrix<T, grpo::device_space>(rows, cols, rs, cs, p, contiguous); break;
    default: check_matrix<const T, grpo::device_space>(rows, cols, rs, cs, p, contiguous); break;
    }
    if (in.flag()) check_vector<T, grpo::host_space>(rows, rs, p);
    else check_vector<const T, grpo::host_space>(rows, rs, p);
    // broadcast_to_tokens of a read-only vector: a [size, cols] view with column stride 0.
    call_checked("broadcast_to_tokens", [&] {
        const grpo::vector_view<const T> v(p, rows, rs);
        const grpo::matrix_view<const T> m = grpo::broadcast_to_tokens(v, cols);
        if (m.rows() != rows || m.cols() != cols || m.col_stride() != 0)
            finding("broadcast", "broadcast_to_tokens shape");
        if (rows > 0 && cols > 0) (void)grpo::detail::range_of(m);
    });
    call_checked("make_matrix_view", [&] { (void)grpo::make_matrix_view(p, rows, cols); });
}

#ifdef GRPO_FUZZ_EIGEN
void fuzz_eigen(fuzz_input& in) {
    static double cell[64] = {};
    // Small real matrices with any inner/outer stride (Eigen does not check them): the adapter must mirror the
    // strides or reject them with grpo::error.
    const Eigen::Index rows = in.range(0, 6), cols = in.range(0, 6);
    const Eigen::Index outer = in.chance(220) ? in.range(0, 8) : Eigen::Index(draw_stride(in, rows));
    const Eigen::Index inner = in.chance(220) ? in.range(0, 3) : Eigen::Index(draw_stride(in, cols));
    using Stride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
    if (in.flag()) {
        Eigen::Map<Eigen::MatrixXd, Eigen::Unaligned, Stride> m(cell, rows, cols, Stride(outer, inner));
        grpo::matrix_view<double> v;
        const outcome r = call_checked("eigen::matrix", [&] { v = grpo::eigen::matrix(m); });
        if (r.ok) {
            if (v.rows() != rows || v.cols() != cols || v.row_stride() != m.rowStride() ||
                v.col_stride() != m.colStride())
                finding("eigen-adapter", "eigen::matrix strides (%lld, %lld), Eigen's (%lld, %lld)",
                        (long long)v.row_stride(), (long long)v.col_stride(), (long long)m.rowStride(),
                        (long long)m.colStride());
            check_matrix<double, grpo::host_space>(v.rows(), v.cols(), v.row_stride(), v.col_stride(), cell, false);
            const auto back = grpo::eigen::map(v);
            if (back.rows() != rows || back.cols() != cols) finding("eigen-adapter", "eigen::map shape");
        }
    } else {
        Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
                   Stride>
            m(reinterpret_cast<const float*>(cell), rows, cols, Stride(outer, inner));
        call_checked("eigen::matrix(const)", [&] { (void)grpo::eigen::matrix(m); });
        Eigen::Map<Eigen::VectorXd, Eigen::Unaligned, Eigen::InnerStride<Eigen::Dynamic>> vec(
            cell, rows, Eigen::InnerStride<Eigen::Dynamic>(inner));
        call_checked("eigen::vector", [&] { (void)grpo::eigen::vector(vec); });
    }
}
#endif

#ifdef GRPO_FUZZ_XTENSOR
void fuzz_xtensor(fuzz_input& in) {
    static double cell[64] = {};
    const std::size_t rows = in.u8() % 6, cols = in.u8() % 6;
    const std::array<std::size_t, 2> shape{rows, cols};
    const std::array<std::ptrdiff_t, 2> strides{std::ptrdiff_t(in.u8() % 8), std::ptrdiff_t(in.u8() % 3)};
    double* p = cell;
    auto a = xt::adapt(p, rows * cols, xt::no_ownership(), shape, strides);
    call_checked("xtensor::matrix", [&] { (void)grpo::xtensor::matrix(a); });
}
#endif

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz_input in(data, size);
    try {
        switch (in.u8() % 4) {
        case 0: fuzz_plain<float>(in); break;
        case 1: fuzz_plain<double>(in); break;
#ifdef GRPO_FUZZ_EIGEN
        case 2: fuzz_eigen(in); break;
#endif
#ifdef GRPO_FUZZ_XTENSOR
        case 3: fuzz_xtensor(in); break;
#endif
        default: fuzz_plain<std::int64_t>(in); break;
        }
    } catch (const skip_input&) {}
    return 0;
}
