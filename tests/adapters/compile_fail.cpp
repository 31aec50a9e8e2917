// SPDX-License-Identifier: MIT
// Misuse that the adapters reject at compile time; tests/adapters/CMakeLists.txt builds each case and
// expects the static_assert's message. GRPO_FAIL_CASE 0 must compile (the control).
#if GRPO_FAIL_CASE < 100
#include <grpo/adapters/eigen.hpp>
#else
#include <grpo/adapters/xtensor.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xview.hpp>
#endif

int main() {
#if GRPO_FAIL_CASE < 100
    Eigen::MatrixXd a = Eigen::MatrixXd::Zero(2, 2), b = Eigen::MatrixXd::Zero(2, 2);
#if GRPO_FAIL_CASE == 0
    return static_cast<int>(grpo::eigen::matrix(a).rows()) - 2;
#elif GRPO_FAIL_CASE == 1 // a lazy sum has no storage
    auto v = grpo::eigen::matrix(a + b);
#elif GRPO_FAIL_CASE == 2 // an element-wise function has no storage
    auto v = grpo::eigen::matrix(a.array().exp());
#elif GRPO_FAIL_CASE == 3 // a temporary matrix would dangle
    auto v = grpo::eigen::matrix(Eigen::MatrixXd(a));
#endif
#else
    xt::xarray<double> a = {{1.0, 2.0}, {3.0, 4.0}};
#if GRPO_FAIL_CASE == 100
    return static_cast<int>(grpo::xtensor::matrix(a).rows()) - 2;
#elif GRPO_FAIL_CASE == 101 // a lazy expression has no storage
    auto v = grpo::xtensor::matrix(a + a);
#elif GRPO_FAIL_CASE == 102 // an index (keep) view is not strided
    auto v = grpo::xtensor::matrix(xt::view(a, xt::keep(1, 0), xt::all()));
#elif GRPO_FAIL_CASE == 103 // a temporary container would dangle
    auto v = grpo::xtensor::matrix(xt::xarray<double>(a));
#elif GRPO_FAIL_CASE == 104 // view() needs a static rank
    auto v = grpo::xtensor::view(a);
#endif
#endif
#if GRPO_FAIL_CASE != 0 && GRPO_FAIL_CASE != 100
    return static_cast<int>(v.rows());
#endif
}
