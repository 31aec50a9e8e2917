// SPDX-License-Identifier: MIT
// Views: indexing with strides, stride 0 for read-only broadcast, const conversion and construction errors.
#include <cstdint>
#include <array>
#include <cstddef>
#include <limits>
#include <vector>

#include "catch.hpp"
#include <grpo/grpo.hpp>

TEST_CASE("matrix_view indexes row-major, column-major and padded layouts", "[view]") {
    std::vector<float> data(20);
    for (int k = 0; k < 20; ++k) data[k] = float(k);
    grpo::matrix_view<float> rm(data.data(), 3, 4);
    CHECK(rm(1, 2) == 6.0f);
    grpo::matrix_view<float> cm(data.data(), 3, 4, 1, 3); // column-major 3x4
    CHECK(cm(1, 2) == 7.0f);
    grpo::matrix_view<const float> padded(data.data(), 3, 4, 5, 1); // row pitch 5
    CHECK(padded(2, 3) == 13.0f);
    CHECK(padded.row_data(2)[0] == 10.0f);
    grpo::vector_view<float> every_other(data.data(), 10, 2);
    CHECK(every_other[3] == 6.0f);
}

TEST_CASE("stride 0 broadcasts read-only values and is refused for writable views", "[view]") {
    std::vector<double> adv{0.5, -1.5};
    auto m = grpo::broadcast_to_tokens(grpo::vector_view<const double>(adv.data(), 2), 7);
    CHECK(m.rows() == 2);
    CHECK(m.cols() == 7);
    CHECK(m.col_stride() == 0);
    CHECK(m(1, 6) == -1.5);
    CHECK_THROWS_AS(grpo::matrix_view<double>(adv.data(), 2, 7, 1, 0), grpo::error);
    CHECK_THROWS_AS(grpo::vector_view<double>(adv.data(), 2, 0), grpo::error);
    CHECK_NOTHROW(grpo::vector_view<const double>(adv.data(), 2, 0));
}

TEST_CASE("view construction errors name the problem", "[view][errors]") {
    std::vector<float> d(12);
    auto message_of = [](auto&& f) -> std::string {
        try {
            f();
        } catch (const grpo::error& e) {
            return e.what();
        }
        return "no error";
    };
    CHECK(message_of([&] { grpo::matrix_view<float>(d.data(), -1, 3); }).find("non-negative extent") !=
          std::string::npos);
    CHECK(message_of([&] { grpo::matrix_view<float>(d.data(), 3, 3, -3, 1); }).find("non-negative stride") !=
          std::string::npos);
    CHECK(message_of([&] { grpo::matrix_view<float>(nullptr, 3, 3); }).find("non-null") != std::string::npos);
    // Overlapping writable layout: rows 2 apart but 3 columns wide.
    CHECK(message_of([&] { grpo::matrix_view<float>(d.data(), 3, 3, 2, 1); }).find("non-overlapping") !=
          std::string::npos);
    CHECK_NOTHROW(grpo::matrix_view<const float>(d.data(), 3, 3, 2, 1)); // fine to read
    grpo::error e(grpo::errc::shape_mismatch, "x");
    CHECK(e.code() == grpo::errc::shape_mismatch);
    CHECK(std::string(grpo::to_string(grpo::errc::aliasing)) == "aliasing");
}

TEST_CASE("mutable views convert to const views; absent views are 'not given'", "[view]") {
    std::vector<double> d(6);
    grpo::matrix_view<double> m(d.data(), 2, 3);
    grpo::matrix_view<const double> c = m;
    CHECK(c.data() == d.data());
    CHECK(c.row_stride() == 3);
    grpo::matrix_view<const double> absent;
    CHECK_FALSE(absent.present());
    CHECK(c.present());
    grpo::vector_view<std::int64_t> v;
    CHECK_FALSE(v.present());
}

TEST_CASE("views from containers hold exactly the container; extents of any integer type", "[view]") {
    std::vector<float> v(6, 1.0f);
    const std::vector<float>& cv = v;
    grpo::vector_view<float> a = v; // every element, no extent to get wrong
    CHECK(a.size() == 6);
    CHECK(a.data() == v.data());
    grpo::vector_view<const float> b = cv;
    CHECK(b.size() == 6);
    grpo::matrix_view<const float> m(cv, 2, 3);
    CHECK(m.rows() == 2);
    CHECK(m.row_stride() == 3);
    CHECK_THROWS_AS(grpo::matrix_view<const float>(cv, 3, 3), grpo::error); // 9 elements asked of 6
    std::array<double, 4> arr{};
    grpo::matrix_view<double> ma(arr, 2u, std::size_t(2));
    CHECK(ma.cols() == 2);
    // A strided view converts to const with its strides (not through the container constructor).
    grpo::vector_view<float> strided(v.data(), 3, 2);
    grpo::vector_view<const float> kept = strided;
    CHECK(kept.stride() == 2);
    CHECK(kept.size() == 3);
    // size_t and unsigned extents as containers give them; beyond index_t they are an error, never a wrap.
    const std::size_t rows = 2, cols = 3;
    grpo::matrix_view<float> s{v.data(), rows, cols};
    CHECK(s.size() == 6);
    CHECK_THROWS_AS(grpo::vector_view<const float>(v.data(), std::numeric_limits<std::size_t>::max()), grpo::error);
}
