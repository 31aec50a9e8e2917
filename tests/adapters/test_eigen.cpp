// SPDX-License-Identifier: MIT
// grpo/adapters/eigen.hpp: every storage layout Eigen can hand us gives the loss and gradient of the same
// numbers through raw pointers; outputs land in Eigen storage; bad strides and shapes throw grpo::error.
#include <grpo/adapters/eigen.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fixture.hpp"

using grpo::index_t;
using grpo_adapter_test::check_matches;
using grpo_adapter_test::reference_loss;

namespace {

template <class T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ColMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using DynStride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;

/// Runs the reference loss with every input taken from Eigen objects of type A (through grpo::eigen::matrix)
/// and the gradient written through grpo::eigen::matrix(grad); returns the stats.
template <class T, class A, class G>
grpo::loss_stats run(const A& logp, const A& old_logp, const A& ref_logp, const A& adv, const A& mask, G&& grad) {
    grpo::loss_inputs<T> in;
    in.logp = grpo::eigen::matrix(logp);
    in.old_logp = grpo::eigen::matrix(old_logp);
    in.ref_logp = grpo::eigen::matrix(ref_logp);
    in.advantages = grpo::eigen::matrix(adv);
    in.mask = grpo::eigen::matrix(mask);
    grpo::loss_outputs<T> out;
    out.grad_logp = grpo::eigen::matrix(std::forward<G>(grad));
    return grpo::loss_and_grad(grpo::exec::host{}, in, out, reference_loss<T>::config());
}

/// Five Eigen objects of one type M holding the reference inputs.
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
                auto t = m.transpose();
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

} // namespace

TEMPLATE_TEST_CASE("eigen: the reference case is not trivial", "[eigen]", float, double) {
    const reference_loss<TestType> r;
    CHECK(r.stats.token_count == 12);
    CHECK(r.stats.clip_fraction_region > 0);
    CHECK(r.stats.kl_loss > 0);
}

TEMPLATE_TEST_CASE("eigen: plain matrices, both storage orders, inputs and outputs", "[eigen]", float, double) {
    using T = TestType;
    constexpr index_t R = reference_loss<T>::rows, C = reference_loss<T>::cols;
    const reference_loss<T> r;

    SECTION("row-major") {
        inputs<T, RowMajor<T>> x([&] { return RowMajor<T>(R, C); });
        RowMajor<T> grad = RowMajor<T>::Constant(R, C, T(-9));
        const auto v = grpo::eigen::matrix(x.logp);
        CHECK(v.row_stride() == C);
        CHECK(v.col_stride() == 1);
        check_matches(run<T>(x.logp, x.old_logp, x.ref_logp, x.adv, x.mask, grad), grad, r.stats, r.grad);
    }
    SECTION("column-major (Eigen's default)") {
        inputs<T, ColMajor<T>> x([&] { return ColMajor<T>(R, C); });
        ColMajor<T> grad = ColMajor<T>::Constant(R, C, T(-9));
        const auto v = grpo::eigen::matrix(x.logp);
        CHECK(v.row_stride() == 1);
        CHECK(v.col_stride() == R);
        check_matches(run<T>(x.logp, x.old_logp, x.ref_logp, x.adv, x.mask, grad), grad, r.stats, r.grad);
    }
    SECTION("Eigen::Array, row-major inputs into a column-major output") {
        using A = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        inputs<T, A> x([&] { return A(R, C); });
        Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic> grad =
            Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic>::Constant(R, C, T(-9));
        check_matches(run<T>(x.logp, x.old_logp, x.ref_logp, x.adv, x.mask, grad), grad, r.stats, r.grad);
    }
    SECTION("fixed-size matrices") {
        using F = Eigen::Matrix<T, 3, 5, Eigen::RowMajor>;
        inputs<T, F> x([&] { return F(); });
        Eigen::Matrix<T, 3, 5> grad;
        check_matches(run<T>(x.logp, x.old_logp, x.ref_logp, x.adv, x.mask, grad), grad, r.stats, r.grad);
    }
}

TEMPLATE_TEST_CASE("eigen: Map with inner and outer strides over raw buffers", "[eigen]", float, double) {
    using T = TestType;
    constexpr index_t R = reference_loss<T>::rows, C = reference_loss<T>::cols;
    const reference_loss<T> r;
    // Every buffer holds the values with the given strides; unused slots hold NaN (never read).
    const auto buffer = [](index_t rs, index_t cs, const std::vector<T>& v) {
        std::vector<T> b(static_cast<std::size_t>((R - 1) * rs + (C - 1) * cs + 1),
                         std::numeric_limits<T>::quiet_NaN());
        reference_loss<T>::fill(b.data(), rs, cs, v);
        return b;
    };
    struct layout {
        const char* name;
        index_t rs, cs;
    };
    for (const layout l :
         {layout{"row-major contiguous", C, 1}, layout{"row-major, padded rows", C + 3, 1},
          layout{"row-major, inner stride 2", 2 * C + 1, 2}, layout{"column-major contiguous", 1, R},
          layout{"column-major, padded columns", 1, R + 2}, layout{"column-major, inner stride 3", 3, 3 * R + 1}}) {
        INFO(l.name);
        const auto logp = buffer(l.rs, l.cs, r.logp), old_logp = buffer(l.rs, l.cs, r.old_logp),
                   ref_logp = buffer(l.rs, l.cs, r.ref_logp), adv = buffer(l.rs, l.cs, r.adv),
                   mask = buffer(l.rs, l.cs, r.mask);
        std::vector<T> grad_buf(buffer(l.rs, l.cs, r.grad).size(), T(-9));
        // The same storage described to Eigen both ways: row-major (outer = row stride, inner = column
        // stride) and column-major (outer = column stride, inner = row stride).
        using RM = Eigen::Map<const RowMajor<T>, Eigen::Unaligned, DynStride>;
        using CM = Eigen::Map<const ColMajor<T>, Eigen::Unaligned, DynStride>;
        {
            const auto m = [&](const std::vector<T>& b) { return RM(b.data(), R, C, DynStride(l.rs, l.cs)); };
            Eigen::Map<RowMajor<T>, Eigen::Unaligned, DynStride> grad(grad_buf.data(), R, C, DynStride(l.rs, l.cs));
            const auto v = grpo::eigen::matrix(m(logp));
            static_assert(std::is_same<decltype(v), const grpo::matrix_view<const T>>::value, "Map<const> gives const");
            CHECK(v.row_stride() == l.rs);
            CHECK(v.col_stride() == l.cs);
            check_matches(run<T>(m(logp), m(old_logp), m(ref_logp), m(adv), m(mask), grad), grad, r.stats, r.grad);
        }
        std::fill(grad_buf.begin(), grad_buf.end(), T(-9));
        {
            const auto m = [&](const std::vector<T>& b) { return CM(b.data(), R, C, DynStride(l.cs, l.rs)); };
            Eigen::Map<ColMajor<T>, Eigen::Unaligned, DynStride> grad(grad_buf.data(), R, C, DynStride(l.cs, l.rs));
            const auto v = grpo::eigen::matrix(m(logp));
            CHECK(v.row_stride() == l.rs);
            CHECK(v.col_stride() == l.cs);
            check_matches(run<T>(m(logp), m(old_logp), m(ref_logp), m(adv), m(mask), grad), grad, r.stats, r.grad);
        }
    }
}

TEMPLATE_TEST_CASE("eigen: blocks, Ref and transposes (non-contiguous)", "[eigen]", float, double) {
    using T = TestType;
    constexpr index_t R = reference_loss<T>::rows, C = reference_loss<T>::cols;
    const reference_loss<T> r;

    SECTION("blocks of larger matrices, both orders, gradient into a block (the rest untouched)") {
        inputs<T, ColMajor<T>> big([&] { return ColMajor<T>::Zero(R + 4, C + 3); });
        // Move the values into the block at (2, 1) of each big matrix.
        for (ColMajor<T>* m : {&big.logp, &big.old_logp, &big.ref_logp, &big.adv, &big.mask}) {
            const ColMajor<T> v = m->topLeftCorner(R, C);
            m->setConstant(std::numeric_limits<T>::quiet_NaN());
            m->block(2, 1, R, C) = v;
        }
        RowMajor<T> grad_big = RowMajor<T>::Constant(R + 2, C + 4, T(-9));
        const auto blk = [](const ColMajor<T>& m) { return m.block(2, 1, R, C); };
        const auto v = grpo::eigen::matrix(blk(big.logp));
        CHECK(v.row_stride() == 1);
        CHECK(v.col_stride() == R + 4);
        check_matches(run<T>(blk(big.logp), blk(big.old_logp), blk(big.ref_logp), blk(big.adv), blk(big.mask),
                             grad_big.block(1, 3, R, C)),
                      grad_big.block(1, 3, R, C), r.stats, r.grad);
        CHECK((grad_big.leftCols(3).array() == T(-9)).all());
        CHECK((grad_big.topRows(1).array() == T(-9)).all());
        CHECK((grad_big.bottomRows(1).array() == T(-9)).all());
        CHECK((grad_big.rightCols(1).array() == T(-9)).all());
    }
    SECTION("Ref<const MatrixX> inputs (with an outer stride) and a Ref<MatrixX> output") {
        inputs<T, ColMajor<T>> big([&] { return ColMajor<T>::Zero(R + 1, C); });
        ColMajor<T> grad = ColMajor<T>::Constant(R + 1, C, T(-9));
        using CRef = Eigen::Ref<const ColMajor<T>>;
        const auto ref = [](const ColMajor<T>& m) { return CRef(m.topRows(R)); };
        Eigen::Ref<ColMajor<T>> g = grad.topRows(R);
        CHECK(grpo::eigen::matrix(ref(big.logp)).col_stride() == R + 1);
        check_matches(run<T>(ref(big.logp), ref(big.old_logp), ref(big.ref_logp), ref(big.adv), ref(big.mask), g), g,
                      r.stats, r.grad);
        CHECK((grad.bottomRows(1).array() == T(-9)).all());
    }
    SECTION("Ref<const RowMajor, 0, Stride<Dynamic, Dynamic>> of a transposed column-major matrix") {
        // Storage is C x R column-major = R x C row-major after transpose(): a zero-copy Ref.
        inputs<T, ColMajor<T>> st([&] { return ColMajor<T>(C, R); }, /*transposed=*/true);
        using TRef = Eigen::Ref<const RowMajor<T>, 0, DynStride>;
        const auto ref = [](const ColMajor<T>& m) { return TRef(m.transpose()); };
        RowMajor<T> grad = RowMajor<T>::Constant(R, C, T(-9));
        check_matches(run<T>(ref(st.logp), ref(st.old_logp), ref(st.ref_logp), ref(st.adv), ref(st.mask), grad), grad,
                      r.stats, r.grad);
    }
    SECTION("transpose() expressions, and a transposed block of the gradient") {
        // Values live transposed in C x R row-major storage: the R x C view has row stride 1, column stride R.
        inputs<T, RowMajor<T>> st([&] { return RowMajor<T>(C, R); }, /*transposed=*/true);
        const auto tv = grpo::eigen::matrix(st.logp.transpose());
        CHECK(tv.rows() == R);
        CHECK(tv.row_stride() == 1);
        CHECK(tv.col_stride() == R);
        // Gradient into the transpose of a block of a larger column-major matrix: strides (R + 2, 1).
        ColMajor<T> gbig = ColMajor<T>::Constant(C + 1, R + 2, T(-9));
        auto gT = gbig.block(1, 1, C, R).transpose();
        const auto gv = grpo::eigen::matrix(gT);
        CHECK(gv.row_stride() == C + 1);
        CHECK(gv.col_stride() == 1);
        grpo::loss_inputs<T> in;
        in.logp = grpo::eigen::matrix(st.logp.transpose());
        in.old_logp = grpo::eigen::matrix(st.old_logp.transpose());
        in.ref_logp = grpo::eigen::matrix(st.ref_logp.transpose());
        in.advantages = grpo::eigen::matrix(st.adv.transpose());
        in.mask = grpo::eigen::matrix(st.mask.transpose());
        grpo::loss_outputs<T> out;
        out.grad_logp = gv;
        const auto s = grpo::loss_and_grad(grpo::exec::host{}, in, out, reference_loss<T>::config());
        check_matches(s, gT, r.stats, r.grad);
        CHECK((gbig.row(0).array() == T(-9)).all());
        CHECK((gbig.col(0).array() == T(-9)).all());
        CHECK((gbig.col(R + 1).array() == T(-9)).all());
    }
}

TEMPLATE_TEST_CASE("eigen: vectors (per-completion advantages, lengths) and view()", "[eigen]", float, double) {
    using T = TestType;
    constexpr index_t R = reference_loss<T>::rows, C = reference_loss<T>::cols;
    const reference_loss<T> r;
    RowMajor<T> logp(R, C), old_logp(R, C), ref_logp(R, C);
    reference_loss<T>::fill(logp, r.logp);
    reference_loss<T>::fill(old_logp, r.old_logp);
    reference_loss<T>::fill(ref_logp, r.ref_logp);
    Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> lengths(R);
    for (index_t i = 0; i < R; ++i) lengths(i) = r.lengths[static_cast<std::size_t>(i)];

    const auto run_seq = [&](grpo::vector_view<const T> adv) {
        grpo::loss_inputs<T> in;
        in.logp = grpo::eigen::view(logp);
        in.old_logp = grpo::eigen::view(old_logp);
        in.ref_logp = grpo::eigen::view(ref_logp);
        in.advantages = grpo::broadcast_to_tokens(adv, C);
        in.lengths = grpo::eigen::view(lengths);
        RowMajor<T> grad = RowMajor<T>::Constant(R, C, T(-9));
        grpo::loss_outputs<T> out;
        out.grad_logp = grpo::eigen::view(grad);
        const auto s = grpo::loss_and_grad(grpo::exec::host{}, in, out, reference_loss<T>::config());
        check_matches(s, grad, r.stats_seq, r.grad_seq);
    };
    static_assert(std::is_same<decltype(grpo::eigen::view(lengths)), grpo::vector_view<std::int64_t>>::value,
                  "view() of a compile-time vector is a vector_view");
    static_assert(std::is_same<decltype(grpo::eigen::view(logp)), grpo::matrix_view<T>>::value,
                  "view() of a matrix is a matrix_view");

    SECTION("VectorX") {
        Eigen::Matrix<T, Eigen::Dynamic, 1> adv(R);
        for (index_t i = 0; i < R; ++i) adv(i) = r.adv_seq[static_cast<std::size_t>(i)];
        run_seq(grpo::eigen::view(adv));
    }
    SECTION("a row of a column-major matrix (stride = outer stride)") {
        ColMajor<T> m = ColMajor<T>::Constant(4, R + 2, std::numeric_limits<T>::quiet_NaN());
        for (index_t i = 0; i < R; ++i) m(2, i + 1) = r.adv_seq[static_cast<std::size_t>(i)];
        const auto v = grpo::eigen::view(m.row(2).segment(1, R));
        CHECK(v.stride() == 4);
        run_seq(v);
    }
    SECTION("a column of a row-major matrix, and a one-column dynamic matrix through vector()") {
        RowMajor<T> m = RowMajor<T>::Constant(R, 3, std::numeric_limits<T>::quiet_NaN());
        for (index_t i = 0; i < R; ++i) m(i, 1) = r.adv_seq[static_cast<std::size_t>(i)];
        CHECK(grpo::eigen::view(m.col(1)).stride() == 3);
        run_seq(grpo::eigen::view(m.col(1)));
        const RowMajor<T> one_col = m.middleCols(1, 1);
        run_seq(grpo::eigen::vector(one_col));
        const RowMajor<T> one_row = one_col.transpose();
        run_seq(grpo::eigen::vector(one_row));
    }
    SECTION("Map with InnerStride<Dynamic>") {
        std::vector<T> buf(static_cast<std::size_t>(3 * R), std::numeric_limits<T>::quiet_NaN());
        for (index_t i = 0; i < R; ++i) buf[static_cast<std::size_t>(3 * i)] = r.adv_seq[static_cast<std::size_t>(i)];
        Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>, Eigen::Unaligned, Eigen::InnerStride<>> m(
            buf.data(), R, Eigen::InnerStride<>(3));
        run_seq(grpo::eigen::view(m));
    }
}

TEMPLATE_TEST_CASE("eigen: map() turns grpo views back into Eigen maps", "[eigen]", float, double) {
    using T = TestType;
    std::vector<T> buf(12);
    for (std::size_t k = 0; k < buf.size(); ++k) buf[k] = T(k);
    const grpo::matrix_view<T> v(buf.data(), 3, 2, 4, 2); // rows 4 apart, columns 2 apart
    auto m = grpo::eigen::map(v);
    CHECK(m.rows() == 3);
    CHECK(m.cols() == 2);
    CHECK(m(2, 1) == T(10));
    m(1, 1) = T(-1);
    CHECK(buf[6] == T(-1));
    const auto back = grpo::eigen::matrix(m);
    CHECK(back.data() == v.data());
    CHECK(back.row_stride() == 4);
    CHECK(back.col_stride() == 2);
    const grpo::vector_view<const T> vv(buf.data(), 4, 3);
    const auto mv = grpo::eigen::map(vv);
    CHECK(mv(3) == T(9));
    static_assert(std::is_const<std::remove_pointer_t<decltype(mv.data())>>::value, "const view maps to const");
}

TEMPLATE_TEST_CASE("eigen: errors", "[eigen][errors]", float, double) {
    using T = TestType;
    std::vector<T> buf(64, T(0));

    SECTION("vector() of a matrix with several rows and columns") {
        RowMajor<T> m = RowMajor<T>::Zero(2, 3);
        try {
            (void)grpo::eigen::vector(m);
            FAIL("no error");
        } catch (const grpo::error& e) {
            CHECK(e.code() == grpo::errc::shape_mismatch);
            CHECK(std::string(e.what()).find("one row or one column") != std::string::npos);
            CHECK(std::string(e.what()).find("2x3") != std::string::npos);
        }
    }
    SECTION("a writable Map whose elements overlap") {
        Eigen::Map<RowMajor<T>, Eigen::Unaligned, DynStride> m(buf.data(), 3, 3, DynStride(1, 1));
        try {
            (void)grpo::eigen::matrix(m);
            FAIL("no error");
        } catch (const grpo::error& e) {
            CHECK(e.code() == grpo::errc::aliasing);
        }
        // The same overlapping storage is fine as a read-only input.
        const Eigen::Map<const RowMajor<T>, Eigen::Unaligned, DynStride> c(buf.data(), 3, 3, DynStride(1, 1));
        CHECK(grpo::eigen::matrix(c).row_stride() == 1);
    }
    SECTION("stride 0: a broadcast is a valid input, never a valid output") {
        Eigen::Map<const RowMajor<T>, Eigen::Unaligned, DynStride> b(buf.data(), 3, 4, DynStride(1, 0));
        const auto v = grpo::eigen::matrix(b);
        CHECK(v.col_stride() == 0);
        Eigen::Map<RowMajor<T>, Eigen::Unaligned, DynStride> w(buf.data(), 3, 4, DynStride(1, 0));
        CHECK_THROWS_AS(grpo::eigen::matrix(w), grpo::error);
    }
    SECTION("a gradient of the wrong shape is rejected and left untouched") {
        constexpr index_t R = reference_loss<T>::rows, C = reference_loss<T>::cols;
        const reference_loss<T> r;
        RowMajor<T> logp(R, C), adv(R, C);
        reference_loss<T>::fill(logp, r.logp);
        reference_loss<T>::fill(adv, r.adv);
        ColMajor<T> grad = ColMajor<T>::Constant(C, R, T(-9)); // transposed shape
        grpo::loss_inputs<T> in;
        in.logp = grpo::eigen::matrix(logp);
        in.advantages = grpo::eigen::matrix(adv);
        grpo::loss_outputs<T> out;
        out.grad_logp = grpo::eigen::matrix(grad);
        try {
            (void)grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});
            FAIL("no error");
        } catch (const grpo::error& e) {
            CHECK(e.code() == grpo::errc::shape_mismatch);
            CHECK(std::string(e.what()).find("grad_logp") != std::string::npos);
        }
        CHECK((grad.array() == T(-9)).all());
    }
    SECTION("a gradient Map that aliases logp") {
        constexpr index_t R = reference_loss<T>::rows, C = reference_loss<T>::cols;
        Eigen::Map<RowMajor<T>> m(buf.data(), R, C);
        m.setConstant(T(-1));
        grpo::loss_inputs<T> in;
        in.logp = grpo::eigen::matrix(std::as_const(m));
        in.advantages = grpo::eigen::matrix(std::as_const(m));
        grpo::loss_outputs<T> out;
        out.grad_logp = grpo::eigen::matrix(m);
        try {
            (void)grpo::loss_and_grad(grpo::exec::host{}, in, out, grpo::loss_config{});
            FAIL("no error");
        } catch (const grpo::error& e) {
            CHECK(e.code() == grpo::errc::aliasing);
        }
    }
}
