// SPDX-License-Identifier: MIT
// grpo/adapters/xtensor.hpp: every storage layout xtensor can hand us gives the loss and gradient of the
// same numbers through raw pointers; outputs land in xtensor storage; bad ranks and strides throw.
#include <grpo/adapters/xtensor.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>
#include <xtensor/xstrided_view.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "fixture.hpp"

using grpo::index_t;
using grpo_adapter_test::check_matches;
using grpo_adapter_test::reference_loss;

namespace {

constexpr auto row_major = xt::layout_type::row_major;
constexpr auto column_major = xt::layout_type::column_major;

/// Runs the reference loss with every input taken through grpo::xtensor::matrix and the gradient written
/// through grpo::xtensor::matrix(grad).
template <class T, class A, class G>
grpo::loss_stats run(const A& logp, const A& old_logp, const A& ref_logp, const A& adv, const A& mask, G&& grad) {
    grpo::loss_inputs<T> in;
    in.logp = grpo::xtensor::matrix(logp);
    in.old_logp = grpo::xtensor::matrix(old_logp);
    in.ref_logp = grpo::xtensor::matrix(ref_logp);
    in.advantages = grpo::xtensor::matrix(adv);
    in.mask = grpo::xtensor::matrix(mask);
    grpo::loss_outputs<T> out;
    out.grad_logp = grpo::xtensor::matrix(std::forward<G>(grad));
    return grpo::loss_and_grad(grpo::exec::host{}, in, out, reference_loss<T>::config());
}

/// Five containers of one type M holding the reference inputs.
template <class T, class M>
struct inputs {
    M logp, old_logp, ref_logp, adv, mask;
    /// make() creates one object; the values go to m(i, j), or to the transpose of m when `transposed`.
    template <class Make>
    explicit inputs(Make make, bool transposed = false)
        : logp(make()), old_logp(make()), ref_logp(make()), adv(make()), mask(make()) {
        const reference_loss<T> r;
        const auto fill = [transposed](M& m, const std::vector<T>& v) {
            if (transposed) {
                auto t = xt::transpose(m);
                reference_loss<T>::fill(t, v);
            } else {
                reference_loss<T>::fill(m, v);
            }
        };
        fill(logp, r.logp);
        fill(old_logp, r.old_logp);
        fill(ref_logp, r.ref_logp);
        fill(adv, r.adv);
        fill(mask, r.mask);
    }
};

template <class T>
constexpr T nan() {
    return std::numeric_limits<T>::quiet_NaN();
}

} // namespace

TEMPLATE_TEST_CASE("xtensor: containers, both layouts, inputs and outputs", "[xtensor]", float, double) {
    using T = TestType;
    constexpr std::size_t R = reference_loss<T>::rows, C = reference_loss<T>::cols;
    const reference_loss<T> r;

    SECTION("xt::xtensor row-major") {
        using M = xt::xtensor<T, 2, row_major>;
        inputs<T, M> x([&] { return M({R, C}); });
        M grad = xt::xtensor<T, 2>::from_shape({R, C});
        grad.fill(T(-9));
        const auto v = grpo::xtensor::matrix(x.logp);
        CHECK(v.row_stride() == index_t(C));
        CHECK(v.col_stride() == 1);
        check_matches(run<T>(x.logp, x.old_logp, x.ref_logp, x.adv, x.mask, grad), grad, r.stats, r.grad);
    }
    SECTION("xt::xtensor column-major") {
        using M = xt::xtensor<T, 2, column_major>;
        inputs<T, M> x([&] { return M({R, C}); });
        M grad({R, C}, T(-9));
        const auto v = grpo::xtensor::matrix(x.logp);
        CHECK(v.row_stride() == 1);
        CHECK(v.col_stride() == index_t(R));
        check_matches(run<T>(x.logp, x.old_logp, x.ref_logp, x.adv, x.mask, grad), grad, r.stats, r.grad);
    }
    SECTION("xt::xarray, row-major inputs into a column-major output") {
        using M = xt::xarray<T, row_major>;
        inputs<T, M> x([&] { return M::from_shape({R, C}); });
        xt::xarray<T, column_major> grad = xt::xarray<T, column_major>::from_shape({R, C});
        grad.fill(T(-9));
        check_matches(run<T>(x.logp, x.old_logp, x.ref_logp, x.adv, x.mask, grad), grad, r.stats, r.grad);
    }
}

TEMPLATE_TEST_CASE("xtensor: xt::adapt of raw buffers with explicit strides", "[xtensor]", float, double) {
    using T = TestType;
    constexpr index_t R = reference_loss<T>::rows, C = reference_loss<T>::cols;
    const reference_loss<T> r;
    const auto buffer = [](index_t rs, index_t cs, const std::vector<T>& v) {
        std::vector<T> b(static_cast<std::size_t>((R - 1) * rs + (C - 1) * cs + 1), nan<T>());
        reference_loss<T>::fill(b.data(), rs, cs, v);
        return b;
    };
    struct layout {
        const char* name;
        index_t rs, cs;
    };
    for (const layout l : {layout{"row-major contiguous", C, 1}, layout{"row-major, padded rows", C + 3, 1},
                           layout{"row-major, column stride 2", 2 * C + 1, 2}, layout{"column-major contiguous", 1, R},
                           layout{"column-major, padded columns", 1, R + 2}}) {
        INFO(l.name);
        const auto logp = buffer(l.rs, l.cs, r.logp), old_logp = buffer(l.rs, l.cs, r.old_logp),
                   ref_logp = buffer(l.rs, l.cs, r.ref_logp), adv = buffer(l.rs, l.cs, r.adv),
                   mask = buffer(l.rs, l.cs, r.mask);
        std::vector<T> grad_buf(logp.size(), T(-9));
        const std::array<std::size_t, 2> shape{std::size_t(R), std::size_t(C)};
        const std::array<std::ptrdiff_t, 2> strides{l.rs, l.cs};
        // xtensor wants the element count (not the memory span) as the size of a strided adaptor.
        const auto a = [&](const std::vector<T>& b) {
            return xt::adapt(b.data(), R * C, xt::no_ownership(), shape, strides);
        };
        auto grad = xt::adapt(grad_buf.data(), R * C, xt::no_ownership(), shape, strides);
        const auto v = grpo::xtensor::matrix(a(logp));
        static_assert(std::is_same<decltype(v), const grpo::matrix_view<const T>>::value, "adapt of const gives const");
        CHECK(v.row_stride() == l.rs);
        CHECK(v.col_stride() == l.cs);
        check_matches(run<T>(a(logp), a(old_logp), a(ref_logp), a(adv), a(mask), grad), grad, r.stats, r.grad);
        // A temporary adaptor is fine (it owns nothing); the gradient went into grad_buf.
        CHECK(grpo::xtensor::matrix(xt::adapt(grad_buf.data(), R * C, xt::no_ownership(), shape, strides)).data() ==
              grad_buf.data());
    }
}

TEMPLATE_TEST_CASE("xtensor: views with data_offset, strided views, transposes (non-contiguous)", "[xtensor]", float,
                   double) {
    using T = TestType;
    constexpr std::size_t R = reference_loss<T>::rows, C = reference_loss<T>::cols;
    const reference_loss<T> r;
    using xt::range;

    SECTION("xt::view of a larger row-major tensor, gradient into a view (the rest untouched)") {
        using M = xt::xtensor<T, 2>;
        inputs<T, M> big([&] { return M({R + 4, C + 3}, nan<T>()); });
        // Move the values into the block at (2, 1).
        for (M* m : {&big.logp, &big.old_logp, &big.ref_logp, &big.adv, &big.mask}) {
            const M v = xt::view(*m, range(0, R), range(0, C));
            m->fill(nan<T>());
            xt::view(*m, range(2, 2 + R), range(1, 1 + C)) = v;
        }
        M gbig({R + 2, C + 4}, T(-9));
        const auto blk = [](const M& m) { return xt::view(m, range(2, 2 + R), range(1, 1 + C)); };
        const auto v = grpo::xtensor::matrix(blk(big.logp));
        CHECK(v.data() == big.logp.data() + 2 * (C + 3) + 1); // data() + data_offset()
        CHECK(v.row_stride() == index_t(C + 3));
        auto gv = xt::view(gbig, range(1, 1 + R), range(3, 3 + C));
        check_matches(run<T>(blk(big.logp), blk(big.old_logp), blk(big.ref_logp), blk(big.adv), blk(big.mask), gv), gv,
                      r.stats, r.grad);
        CHECK(xt::all(xt::equal(xt::view(gbig, 0, xt::all()), T(-9))));
        CHECK(xt::all(xt::equal(xt::view(gbig, R + 1, xt::all()), T(-9))));
        CHECK(xt::all(xt::equal(xt::view(gbig, xt::all(), range(0, 3)), T(-9))));
        CHECK(xt::all(xt::equal(xt::view(gbig, xt::all(), C + 3), T(-9))));
    }
    SECTION("xt::strided_view with steps (column stride 2) over column-major storage") {
        using M = xt::xtensor<T, 2, column_major>;
        inputs<T, M> big([&] { return M({R + 1, 2 * C}, nan<T>()); });
        for (M* m : {&big.logp, &big.old_logp, &big.ref_logp, &big.adv, &big.mask}) {
            const xt::xtensor<T, 2> v = xt::view(*m, range(0, R), range(0, C));
            m->fill(nan<T>());
            xt::strided_view(*m, {range(1, 1 + R), range(0, 2 * C, 2)}) = v;
        }
        const auto sv = [](const M& m) { return xt::strided_view(m, {range(1, 1 + R), range(0, 2 * C, 2)}); };
        const auto v = grpo::xtensor::matrix(sv(big.logp));
        CHECK(v.row_stride() == 1);
        CHECK(v.col_stride() == index_t(2 * (R + 1)));
        CHECK(v.data() == big.logp.data() + 1);
        xt::xtensor<T, 2> grad({R, C}, T(-9));
        check_matches(run<T>(sv(big.logp), sv(big.old_logp), sv(big.ref_logp), sv(big.adv), sv(big.mask), grad), grad,
                      r.stats, r.grad);
    }
    SECTION("xt::transpose of C x R storage, gradient into a transposed view") {
        using M = xt::xtensor<T, 2>;
        inputs<T, M> st([&] { return M({C, R}); }, /*transposed=*/true);
        const auto tv = grpo::xtensor::matrix(xt::transpose(st.logp));
        CHECK(tv.rows() == index_t(R));
        CHECK(tv.row_stride() == 1);
        CHECK(tv.col_stride() == index_t(R));
        M gT({C, R}, T(-9));
        auto g = xt::transpose(gT);
        const auto tp = [](const M& m) { return xt::transpose(m); };
        check_matches(run<T>(tp(st.logp), tp(st.old_logp), tp(st.ref_logp), tp(st.adv), tp(st.mask), g), g, r.stats,
                      r.grad);
    }
}

TEMPLATE_TEST_CASE("xtensor: axes of extent 1 (internal stride 0)", "[xtensor]", float, double) {
    using T = TestType;
    xt::xtensor<T, 2> row({1, 4}, T(1));
    xt::xtensor<T, 2> col({4, 1}, T(1));
    CHECK(row.strides()[0] == 0); // xtensor's broadcasting convention
    CHECK(col.strides()[1] == 0);
    const auto rv = grpo::xtensor::matrix(row); // writable, yet fine: stride 0 only on an extent-1 axis
    CHECK(rv.rows() == 1);
    CHECK(rv.col_stride() == 1);
    const auto cv = grpo::xtensor::matrix(col);
    CHECK(cv.row_stride() == 1);
    cv(3, 0) = T(5);
    CHECK(col(3, 0) == T(5));
    // A one-completion loss through such a tensor.
    xt::xtensor<T, 2> logp({1, 4}, T(-1)), adv({1, 4}, T(2)), grad({1, 4}, T(-9));
    grpo::loss_inputs<T> in;
    in.logp = grpo::xtensor::matrix(logp);
    in.advantages = grpo::xtensor::matrix(adv);
    grpo::loss_outputs<T> out;
    out.grad_logp = grpo::xtensor::matrix(grad);
    const auto s = grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});
    CHECK(s.loss == Approx(-2.0));
    CHECK(xt::all(xt::equal(grad, T(-0.5))));
}

TEMPLATE_TEST_CASE("xtensor: vectors (per-completion advantages, lengths) and view()", "[xtensor]", float, double) {
    using T = TestType;
    constexpr std::size_t R = reference_loss<T>::rows, C = reference_loss<T>::cols;
    const reference_loss<T> r;
    xt::xtensor<T, 2> logp({R, C}), old_logp({R, C}), ref_logp({R, C});
    reference_loss<T>::fill(logp, r.logp);
    reference_loss<T>::fill(old_logp, r.old_logp);
    reference_loss<T>::fill(ref_logp, r.ref_logp);
    xt::xtensor<std::int64_t, 1> lengths = xt::adapt(r.lengths, {R});

    const auto run_seq = [&](grpo::vector_view<const T> adv) {
        grpo::loss_inputs<T> in;
        in.logp = grpo::xtensor::view(logp);
        in.old_logp = grpo::xtensor::view(old_logp);
        in.ref_logp = grpo::xtensor::view(ref_logp);
        in.advantages = grpo::broadcast_to_tokens(adv, index_t(C));
        in.lengths = grpo::xtensor::view(lengths);
        xt::xtensor<T, 2> grad({R, C}, T(-9));
        grpo::loss_outputs<T> out;
        out.grad_logp = grpo::xtensor::view(grad);
        const auto s = grpo::loss_and_grad(grpo::exec::host{}, in, out, reference_loss<T>::config());
        check_matches(s, grad, r.stats_seq, r.grad_seq);
    };
    static_assert(std::is_same<decltype(grpo::xtensor::view(lengths)), grpo::vector_view<std::int64_t>>::value,
                  "view() of a rank-1 xtensor is a vector_view");
    static_assert(std::is_same<decltype(grpo::xtensor::view(logp)), grpo::matrix_view<T>>::value,
                  "view() of a rank-2 xtensor is a matrix_view");

    SECTION("xt::xtensor<T, 1>") {
        xt::xtensor<T, 1> adv = xt::adapt(r.adv_seq, {R});
        run_seq(grpo::xtensor::view(adv));
    }
    SECTION("xt::xarray of rank 1 through vector()") {
        xt::xarray<T> adv = xt::adapt(r.adv_seq, {R});
        run_seq(grpo::xtensor::vector(adv));
    }
    SECTION("a column of a row-major matrix (stride = row length, data_offset > 0)") {
        xt::xtensor<T, 2> m({R, 3}, nan<T>());
        for (std::size_t i = 0; i < R; ++i) m(i, 1) = r.adv_seq[i];
        const auto v = grpo::xtensor::vector(xt::view(m, xt::all(), 1));
        CHECK(v.stride() == 3);
        CHECK(v.data() == m.data() + 1);
        run_seq(v);
    }
}

TEMPLATE_TEST_CASE("xtensor: adapt() turns grpo views back into xtensor adaptors", "[xtensor]", float, double) {
    using T = TestType;
    std::vector<T> buf(12);
    for (std::size_t k = 0; k < buf.size(); ++k) buf[k] = T(k);
    const grpo::matrix_view<T> v(buf.data(), 3, 2, 4, 2);
    auto a = grpo::xtensor::adapt(v);
    CHECK(a.shape()[0] == 3);
    CHECK(a.shape()[1] == 2);
    CHECK(a(2, 1) == T(10));
    a(1, 1) = T(-1);
    CHECK(buf[6] == T(-1));
    const auto back = grpo::xtensor::matrix(a);
    CHECK(back.data() == v.data());
    CHECK(back.row_stride() == 4);
    CHECK(back.col_stride() == 2);
    // A broadcast (stride 0) const view round-trips as a read-only adaptor.
    const auto b = grpo::broadcast_to_tokens(grpo::vector_view<const T>(buf.data(), 3, 4), 5);
    const auto ab = grpo::xtensor::adapt(b);
    CHECK(ab(2, 4) == T(8));
    CHECK(grpo::xtensor::matrix(ab).col_stride() == 0);
    const auto av = grpo::xtensor::adapt(grpo::vector_view<const T>(buf.data(), 4, 3));
    CHECK(av(3) == T(9));
}

TEMPLATE_TEST_CASE("xtensor: errors", "[xtensor][errors]", float, double) {
    using T = TestType;
    std::vector<T> buf(64, T(0));

    SECTION("rank other than 2 for matrix(), other than 1 for vector()") {
        xt::xarray<T> cube = xt::xarray<T>::from_shape({2, 2, 2});
        try {
            (void)grpo::xtensor::matrix(cube);
            FAIL("no error");
        } catch (const grpo::error& e) {
            CHECK(e.code() == grpo::errc::shape_mismatch);
            CHECK(std::string(e.what()).find("rank-2") != std::string::npos);
            CHECK(std::string(e.what()).find("rank 3") != std::string::npos);
        }
        xt::xtensor<T, 2> m({2, 3});
        CHECK_THROWS_AS(grpo::xtensor::vector(m), grpo::error);
        xt::xtensor<T, 1> v({3});
        CHECK_THROWS_AS(grpo::xtensor::matrix(v), grpo::error);
    }
    SECTION("negative strides (a reversed range)") {
        xt::xtensor<T, 2> m({3, 4}, T(0));
        using namespace xt::placeholders;
        try {
            (void)grpo::xtensor::matrix(xt::view(m, xt::range(_, _, -1), xt::all()));
            FAIL("no error");
        } catch (const grpo::error& e) {
            CHECK(e.code() == grpo::errc::invalid_value);
            CHECK(std::string(e.what()).find("non-negative stride") != std::string::npos);
        }
    }
    SECTION("a writable adaptor whose elements overlap") {
        const std::array<std::size_t, 2> shape{3, 3};
        const std::array<std::ptrdiff_t, 2> strides{1, 1};
        auto a = xt::adapt(buf.data(), 9, xt::no_ownership(), shape, strides);
        try {
            (void)grpo::xtensor::matrix(a);
            FAIL("no error");
        } catch (const grpo::error& e) {
            CHECK(e.code() == grpo::errc::aliasing);
        }
        const T* cp = buf.data();
        CHECK(grpo::xtensor::matrix(xt::adapt(cp, 9, xt::no_ownership(), shape, strides)).row_stride() == 1);
    }
    SECTION("stride 0 on an axis of extent > 1: a valid input, never a valid output") {
        const std::array<std::size_t, 2> shape{3, 4};
        const std::array<std::ptrdiff_t, 2> strides{1, 0};
        const T* cp = buf.data();
        CHECK(grpo::xtensor::matrix(xt::adapt(cp, 12, xt::no_ownership(), shape, strides)).col_stride() == 0);
        auto w = xt::adapt(buf.data(), 12, xt::no_ownership(), shape, strides);
        CHECK_THROWS_AS(grpo::xtensor::matrix(w), grpo::error);
    }
    SECTION("a gradient of the wrong shape is rejected and left untouched") {
        constexpr std::size_t R = reference_loss<T>::rows, C = reference_loss<T>::cols;
        const reference_loss<T> r;
        xt::xtensor<T, 2> logp({R, C}), adv({R, C});
        reference_loss<T>::fill(logp, r.logp);
        reference_loss<T>::fill(adv, r.adv);
        xt::xtensor<T, 2, column_major> grad({C, R}, T(-9));
        grpo::loss_inputs<T> in;
        in.logp = grpo::xtensor::matrix(logp);
        in.advantages = grpo::xtensor::matrix(adv);
        grpo::loss_outputs<T> out;
        out.grad_logp = grpo::xtensor::matrix(grad);
        try {
            (void)grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});
            FAIL("no error");
        } catch (const grpo::error& e) {
            CHECK(e.code() == grpo::errc::shape_mismatch);
            CHECK(std::string(e.what()).find("grad_logp") != std::string::npos);
        }
        CHECK(xt::all(xt::equal(grad, T(-9))));
    }
}
