// SPDX-License-Identifier: MIT
// Data-parallel loss on device views (exec::cuda, exec::cuda_emulated): the counterpart of the host
// dist::loss_and_grad in data_parallel.hpp, over the device backend's check kernel and its per-row partials.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "../api/device_entry.hpp"
#include "data_parallel.hpp"

GRPO_NAMESPACE_BEGIN
namespace dist {

/// dist::loss_and_grad with device views and a device executor: every rank's dLoss/dlogp (and the other
/// per-token outputs) equal, bit for bit, the device's one-process call on the whole batch (the same kernels
/// with the same normalizers), and the returned loss_stats (the same on every rank) combine every rank's per-row
/// partial sums in batch row order, so they do not depend on the rank count or the split. (The one-process
/// device call combines its rows in a block-parallel order: its statistics agree with these to rounding.)
/// Round one runs the device's check kernel (values with validation::full, this rank's token counts) and waits;
/// errors on any rank then throw on every rank before any rank's pass writes, in the one-process call's order
/// (configuration and shapes, global_sequence_count against the step's rows, values, global_token_count). Round two runs the pass with the
/// step's normalizers and copies the per-row partials back (17 doubles per row). The top-entropy threshold of the
/// whole step is not computed on device: with top_entropy_quantile < 1, pass config.entropy_threshold (grpo::error,
/// errc::unsupported, otherwise). clip_cov and kl_cov select per rank, as on the host.
/// A collective; waits for the stream twice. The workspace is held by round one, then from before the pass to
/// its end.
template <class Comm, class Exec, class T>
grpo::detail::if_device_executor<Exec, loss_stats> loss_and_grad(const Comm& comm, const Exec& ex,
                                                                 const loss_inputs<T, device_space>& in,
                                                                 const loss_outputs<T, device_space>& out,
                                                                 const loss_config& cfg,
                                                                 grpo::detail::device_workspace_of<Exec>& ws) {
    constexpr const char* where = "dist::loss_and_grad(device)";
    detail::check_communicator(where, comm);
    using grpo::detail::loss_partials;
    using traits = device_backend_traits<Exec>;
    const bool idle = !in.logp.present() || in.logp.rows() == 0;
    batch_counts local;
    loss_value_error bad_value{};
    grpo::detail::loss_params call{};
    detail::collectively(where, comm, [&] {
        if (cfg.top_entropy_quantile < 1 && cfg.entropy_threshold != cfg.entropy_threshold)
            detail::raise_argument(errc::unsupported, where, "config.entropy_threshold",
                                   "the step's threshold with top_entropy_quantile < 1 on device views (gather the "
                                   "entropies and take the quantile, as the host entry point does)",
                                   "NaN (this call's quantile)");
        if (idle) { // the configuration, and no view with rows (as the host entry point)
            call = grpo::detail::check_loss_call(where, loss_inputs<T, device_space>{}, loss_outputs<T, device_space>{},
                                                 cfg);
            detail::check_idle_views(where, in, out);
            return;
        }
        call = grpo::detail::check_loss_call(where, in, out, cfg);
        const basic_workspace_lease<grpo::detail::device_workspace_of<Exec>> lease(ws, where);
        auto dev = traits::device(ex, ws);
        const grpo::detail::cuda::loss_count_record r = grpo::detail::cuda::run_loss_counts(dev, where, in, out, cfg);
        bad_value = r.error; // thrown after the step's global_sequence_count check, the one-process order
        local.tokens = r.tokens;
        local.sequences = static_cast<double>(in.logp.rows());
        local.nonempty_sequences = r.nonempty;
    });
    const batch_counts total = detail::step_counts(where, comm, cfg, local);
    grpo::detail::check_global_sequences(where, cfg, total.sequences);
    loss_config whole = detail::with_counts(cfg, total);
    whole.checks = validation::shapes_only; // the values were checked in round one

    // Round one's bad values, then the per-row partials and the workspace, taken before the pass so that a rank
    // that cannot have them fails with every rank before any rank writes. (The pass's device scratch was sized by round one, except
    // the covariance selection's sort.)
    using lease_type = basic_workspace_lease<grpo::detail::device_workspace_of<Exec>>;
    std::vector<loss_partials> partials;
    std::optional<lease_type> lease;
    detail::collectively(where, comm, [&] {
        if (idle) return;
        if (bad_value.code != loss_error::none) grpo::detail::raise_loss_value_error(where, bad_value, in.logp.cols());
        partials = grpo::detail::make_scratch(where, "rows", in.logp.rows(), loss_partials::identity());
        lease.emplace(ws, where);
    });
    detail::check_step_tokens(where, cfg, call, total);
    detail::collectively(where, comm, [&] {
        if (idle) return;
        auto dev = traits::device(ex, ws);
        const loss_record r = grpo::detail::cuda::run_loss_rows(dev, where, in, out, whole, partials.data());
        if (r.error.code != loss_error::none) grpo::detail::raise_loss_value_error(where, r.error, in.logp.cols());
    });
    lease.reset();
    return detail::step_stats(where, comm, partials, cfg);
}

} // namespace dist
GRPO_NAMESPACE_END
