// SPDX-License-Identifier: MIT
// CPU backend of the standalone per-token KL: math::kl_penalty at every unmasked token, rows in parallel, the
// row sums added in row order (results do not depend on the thread count).
#pragma once

#include <algorithm>

#include "../../types/kl_types.hpp"
#include "loss.hpp"

GRPO_NAMESPACE_BEGIN
namespace detail {
namespace cpu {

/// Validation (as the loss checks logp and ref_logp, before any write), then one pass writing KL_it and
/// d KL_it / d logp_it. `v` holds logp, ref_logp, mask and lengths, with logp standing in for the advantages
/// (so check_row's finiteness checks are the loss's, and report logp first); grad and per_token are the outputs.
template <class T>
kl_stats per_token_kl(const exec::host& ex, const loss_views<T>& v, const kl_params& k, bool check_values,
                      workspace& ws) {
    constexpr const char* where = "per_token_kl";
    const index_t rows = v.logp.rows(), cols = v.logp.cols();
    if (rows == 0 || cols == 0) return kl_stats{};
    double* row_sums = ws.doubles(static_cast<std::size_t>(checked_mul(where, "rows", rows, 2)), where);
    const index_t grain = row_grain(cols);
    if (check_values) {
        parallel_for(ex, rows, grain, [&](index_t first, index_t last) {
            for (index_t i = first; i < last; ++i)
                row_sums[2 * i] = static_cast<double>(check_row(v, i, true, true, false, false).code);
        });
        for (index_t i = 0; i < rows; ++i)
            if (row_sums[2 * i] != 0)
                raise_loss_value_error(where, bad_value_at(v, i, check_row(v, i, true, true, false, false)), cols);
    }
    using C = T;
    parallel_for(ex, rows, grain, [&](index_t first, index_t last) {
        for (index_t i = first; i < last; ++i) {
            const index_t end = valid_end(v, i);
            double sum = 0, n = 0;
            for (index_t t = 0; t < cols; ++t) {
                const bool valid = t < end && (!v.mask.present() || v.mask(i, t) != T(0));
                const math::kl_term<C> kl =
                    valid ? k.at(C(v.logp(i, t)), C(v.ref_logp(i, t))) : math::kl_term<C>{C(0), C(0)};
                const C value = kl.value, grad = kl.grad;
                sum += static_cast<double>(value);
                n += valid ? 1 : 0;
                if (v.per_token.present()) v.per_token(i, t) = value;
                if (v.grad.present()) v.grad(i, t) = grad;
            }
            row_sums[2 * i] = sum;
            row_sums[2 * i + 1] = n;
        }
    });
    kl_stats st;
    for (index_t i = 0; i < rows; ++i) {
        st.kl_sum += row_sums[2 * i];
        st.token_count += row_sums[2 * i + 1];
    }
    st.kl_mean = st.token_count > 0 ? st.kl_sum / st.token_count : 0.0;
    return st;
}

} // namespace cpu
} // namespace detail
GRPO_NAMESPACE_END
