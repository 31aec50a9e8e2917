// SPDX-License-Identifier: MIT
// The public entry points of the CUDA backend, written once over a launch policy (a "device"): cuda.cuh binds
// them to exec::cuda (a stream and a cuda_workspace), cuda_emulated.hpp to exec::cuda_emulated (the host
// emulator). CUDA-free. A device D provides
//   double* scratch_doubles(std::size_t n)         workspace memory, grown when needed
//   void zero(void* p, std::size_t bytes)          stream-ordered memset
//   template <class K> void launch(const K&, index_t blocks)
//   std::size_t sort_temp_bytes(index_t n, int key_bits), void sort_pairs(...)     stable radix sort
//   void check_pointer(where, name, const void*)   debug check that a kernel may dereference the pointer
//   double* host_doubles(std::size_t n), void copy_to_host(void*, const void*, std::size_t bytes),
//   void synchronize(where), void check_launch(where)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "advantages.hpp"
#include "kl.hpp"
#include "loss.hpp"
#include "../core/workspace.hpp"
#include "../backend/kernels/advantage_kernels.hpp"
#include "../backend/kernels/token_advantage_kernels.hpp"
#include "../backend/kernels/kl_kernels.hpp"
#include "../backend/kernels/loss_kernels.hpp"

GRPO_NAMESPACE_BEGIN

/// Executors that run the block-model kernels of backend/kernels/ (exec::cuda on a GPU, exec::cuda_emulated on the
/// host) specialize this with `using workspace = ...;`, a static `device(const Exec&, workspace&)` returning their
/// launch policy, and the names their errors carry: `loss_where` ("loss_and_grad(cuda)"), `kl_where`,
/// `advantages_where` and `token_advantages_where`.
template <class Exec>
struct device_backend_traits;

namespace detail {
template <class Exec, class = void>
struct is_device_executor : std::false_type {};
template <class Exec>
struct is_device_executor<Exec, decltype(void(sizeof(device_backend_traits<Exec>)))> : std::true_type {};
template <class Exec, class R = void>
using if_device_executor = std::enable_if_t<is_device_executor<Exec>::value, R>;
template <class Exec>
using device_workspace_of = typename device_backend_traits<Exec>::workspace;
} // namespace detail

/// Optional per-group outputs in device memory (each absent or of size num_groups); see group_outputs.
struct device_group_outputs {
    vector_view<double, device_space> mean;
    vector_view<double, device_space> std;
    vector_view<std::uint8_t, device_space> zero_variance;
    vector_view<std::int64_t, device_space> count;
};

/// Doubles written by the no-sync compute_advantages: advantage_stats in field order (num_groups,
/// zero_variance_groups, zero_variance_fraction, scored, reward_mean, reward_std, advantage_mean,
/// advantage_std, advantage_min, advantage_max), then [10] an error code (0 = valid inputs; 1 bad id,
/// 2 bad reward, 3 bad token weight, 4 total whitening weight <= 1, 5 an advantage that does not fit the
/// element type), [11] the first offending row, [12] the offending value (code 5: the row's reward). [11] holds the
/// row's exact int64 bit pattern (not a double value: decode with detail::cuda::double_bits_as_int64, as
/// unpack_advantage_stats does), and so does [12] for code 1 (the bad
/// id); for codes 2, 3 and 5 [12] is the value as a double. With a non-zero code nothing else was written.
constexpr int advantage_stats_doubles = detail::cuda::adv_stats_fields;

/// Unpacks a host copy of the no-sync record; throws grpo::error when it carries an error code.
inline advantage_stats unpack_advantage_stats(const double* h, const char* where = "compute_advantages(cuda)") {
    const int code = static_cast<int>(h[10]);
    if (code != 0) {
        static const char* const names[] = {"", "groups.ids", "rewards", "token_weights", "rewards", "rewards"};
        const char* name = code >= 1 && code <= 5 ? names[code] : "rewards";
        detail::raise_argument(
            code == 1 || code >= 4 ? errc::invalid_value : errc::non_finite, where, name,
            code == 4   ? "a total whitening weight > 1"
            : code == 5 ? "rewards whose advantages fit the output type"
                        : "valid values",
            code == 4 ? std::string("a smaller total weight")
                      : "an invalid value at index " +
                            std::to_string(static_cast<long long>(detail::cuda::double_bits_as_int64(h[11]))));
    }
    advantage_stats st;
    st.num_groups = static_cast<index_t>(h[0]);
    st.zero_variance_groups = static_cast<index_t>(h[1]);
    st.zero_variance_fraction = h[2];
    st.scored = static_cast<index_t>(h[3]);
    st.reward_mean = h[4];
    st.reward_std = h[5];
    st.advantage_mean = h[6];
    st.advantage_std = h[7];
    st.advantage_min = h[8];
    st.advantage_max = h[9];
    return st;
}

namespace detail {
namespace cuda {

/// A host_space view never reaches a kernel (compile time); with debug checks the device also checks the pointer.
template <class D, class V>
void check_device_view(D& dev, const char* where, const char* name, const V& v) {
    static_assert(std::is_same<typename V::memory_space, device_space>::value,
                  "grpo (CUDA): every view passed to the CUDA backend must be in device_space");
    if (v.present() && !v.empty()) dev.check_pointer(where, name, v.data());
}

/// The call's host-side checks (shapes, configuration, device pointers) and the kernels' view of it.
template <class T, class D>
device_loss_views<T> checked_loss_views(D& dev, const char* where, const loss_inputs<T, device_space>& in,
                                        const loss_outputs<T, device_space>& out, const loss_config& cfg,
                                        loss_params& p) {
    static_assert(is_loss_element<T>::value,
                  "grpo::loss_and_grad (CUDA): element type must be float, double, __half or __nv_bfloat16");
    p = check_loss_call(where, in, out, cfg);
    check_device_view(dev, where, "logp", in.logp);
    check_device_view(dev, where, "old_logp", in.old_logp);
    check_device_view(dev, where, "ref_logp", in.ref_logp);
    check_device_view(dev, where, "advantages", in.advantages);
    check_device_view(dev, where, "mask", in.mask);
    check_device_view(dev, where, "lengths", in.lengths);
    check_device_view(dev, where, "grad_logp", out.grad_logp);
    check_device_view(dev, where, "per_token_loss", out.per_token_loss);
    check_device_view(dev, where, "sampling_logp", in.sampling_logp);
    check_device_view(dev, where, "ratio", out.ratio);
    check_device_view(dev, where, "entropy", in.entropy);
    check_device_view(dev, where, "grad_entropy", out.grad_entropy);
    // The scratch size fits: rows * (2 + partials) doubles plus a few.
    (void)checked_add(where, "rows", checked_mul(where, "rows", in.logp.rows(), 2 + doubles_of(sizeof(loss_partials))),
                      64);
    return {in.logp,       in.old_logp,        in.ref_logp,      in.advantages, in.mask,    in.lengths,
            out.grad_logp, out.per_token_loss, in.sampling_logp, out.ratio,     in.entropy, out.grad_entropy};
}

/// Checks the call and launches the loss; the record goes to `d_stats`, or with nullptr to the workspace's
/// own record. Returns where it went. `scratch`, when given, receives the call's scratch layout (the per-row
/// partials stay there until the workspace's next use).
template <class T, class D>
const loss_record* run_loss(D& dev, const char* where, const loss_inputs<T, device_space>& in,
                            const loss_outputs<T, device_space>& out, const loss_config& cfg, loss_record* d_record,
                            loss_scratch* scratch = nullptr) {
    loss_params p;
    const device_loss_views<T> v = checked_loss_views(dev, where, in, out, cfg, p);
    dev.check_pointer(where, "d_record", d_record);
    // Values, and global_token_count against this call's tokens (validation::full), are checked on device by
    // loss_check_kernel before anything is written.
    const index_t rows = in.logp.rows();
    // The top-entropy quantile and the covariance selection each sort one key per token, in turn, in scratch
    // after the loss scratch (only when they are computed here).
    const bool quantile = p.entropy_quantile_needed(), covariance = p.covariance_selection();
    const bool sorts = quantile || covariance;
    const index_t tokens = sorts ? checked_mul(where, "rows", rows, in.logp.cols()) : 0;
    const std::size_t sort_bytes = sorts ? dev.sort_temp_bytes(tokens, 64) : 0;
    (void)checked_mul(where, "rows", tokens, 64); // keys and payloads (32 bytes a token) fit, with room
    const std::size_t sort_doubles =
        sorts ? token_sort_doubles(static_cast<std::size_t>(tokens), static_cast<std::size_t>(rows), sort_bytes) : 0;
    double* base = dev.scratch_doubles(loss_scratch_doubles(rows) + sort_doubles);
    loss_scratch s = loss_layout(base, rows);
    if (sorts)
        token_sort_layout(s, base + loss_scratch_doubles(rows), static_cast<std::size_t>(tokens),
                          static_cast<std::size_t>(rows), sort_bytes);
    if (d_record == nullptr) d_record = s.record;
    dev.zero(s.counters, 3 * sizeof(unsigned long long));
    const bool check_values = cfg.checks == validation::full;
    const bool pre_pass = p.checks_global_tokens(check_values) ||
                          (cfg.agg == aggregation::token_mean && !(cfg.global_token_count > 0)) || sorts;
    const index_t blocks = grid_for_items(rows);
    const bool need_samp = cfg.sampling != sampling_correction::none;
    if (pre_pass)
        dev.launch(loss_check_kernel<T>{v, s, check_values, p.with_kl(), need_samp, p.entropy_given,
                                        cfg.global_token_count, p.checks_global_tokens(check_values)},
                   blocks);
    const index_t token_blocks = grid_for_items(tokens, loss_block, 65535);
    if (quantile && tokens > 0) {
        dev.launch(entropy_keys_kernel<T>{v, s}, token_blocks);
        dev.sort_pairs(s.keys_in, s.keys_out, s.values_in, s.values_out, tokens, 64, s.sort_temp, s.sort_temp_bytes);
    }
    if (quantile) dev.launch(entropy_threshold_kernel{s, p.entropy_quantile}, 1);
    if (covariance) {
        dev.launch(cov_means_kernel<T>{v, s, p.token.objective.cov}, blocks);
        if (tokens > 0) {
            dev.launch(cov_keys_kernel<T>{v, p, s}, token_blocks);
            dev.sort_pairs(s.keys_in, s.keys_out, s.values_in, s.values_out, tokens, 64, s.sort_temp,
                           s.sort_temp_bytes);
            dev.launch(cov_threshold_kernel{s, p.cov_ratio, tokens}, 1);
        }
    }
    dev.launch(loss_main_kernel<T>{v, p, s, pre_pass, cfg.global_token_count, d_record}, blocks);
    dev.check_launch(where);
    if (scratch != nullptr) *scratch = s;
    return d_record;
}

/// What the first round of a data-parallel loss step learns on device: the first bad value (validation::full),
/// this call's unmasked tokens and its rows with tokens.
struct loss_count_record {
    loss_value_error error;
    double tokens;
    double nonempty;
};

/// The first round of dist::loss_and_grad on device views: the call's checks and loss_check_kernel alone, waited
/// for. Writes no output.
template <class T, class D>
loss_count_record run_loss_counts(D& dev, const char* where, const loss_inputs<T, device_space>& in,
                                  const loss_outputs<T, device_space>& out, const loss_config& cfg) {
    loss_params p;
    const device_loss_views<T> v = checked_loss_views(dev, where, in, out, cfg, p);
    const index_t rows = in.logp.rows();
    const loss_scratch s = loss_layout(dev.scratch_doubles(loss_scratch_doubles(rows)), rows);
    dev.zero(s.counters, 3 * sizeof(unsigned long long));
    const bool check_values = cfg.checks == validation::full;
    dev.launch(loss_check_kernel<T>{v, s, check_values, p.with_kl(), cfg.sampling != sampling_correction::none,
                                    p.entropy_given, 0.0, false},
               grid_for_items(rows));
    dev.check_launch(where);
    constexpr std::size_t error_doubles = doubles_of(sizeof(loss_value_error));
    double* h = dev.host_doubles(error_doubles + 2);
    dev.copy_to_host(h, s.error, sizeof(loss_value_error));
    dev.copy_to_host(h + error_doubles, s.total, 2 * sizeof(double));
    dev.synchronize(where);
    loss_count_record r;
    std::memcpy(&r.error, h, sizeof(loss_value_error));
    r.tokens = h[error_doubles];
    r.nonempty = h[error_doubles + 1];
    return r;
}

/// The second round: the pass with the step's normalizers, then its record and per-row partials (rows of them,
/// into `row_partials`, host memory), waited for.
template <class T, class D>
loss_record run_loss_rows(D& dev, const char* where, const loss_inputs<T, device_space>& in,
                          const loss_outputs<T, device_space>& out, const loss_config& cfg,
                          loss_partials* row_partials) {
    loss_scratch s;
    const loss_record* d_record = run_loss(dev, where, in, out, cfg, nullptr, &s);
    const index_t rows = in.logp.rows();
    constexpr std::size_t record_doubles = doubles_of(sizeof(loss_record));
    const std::size_t partial_doubles = static_cast<std::size_t>(rows) * doubles_of(sizeof(loss_partials));
    double* h = dev.host_doubles(record_doubles + partial_doubles);
    dev.copy_to_host(h, d_record, sizeof(loss_record));
    if (rows > 0) dev.copy_to_host(h + record_doubles, s.partials, partial_doubles * sizeof(double));
    dev.synchronize(where);
    const loss_record r = *reinterpret_cast<const loss_record*>(h); // (host_doubles is aligned for it)
    if (rows > 0) std::memcpy(row_partials, h + record_doubles, partial_doubles * sizeof(double));
    return r;
}

template <class T, class D>
loss_stats run_loss_sync(D& dev, const char* where, const loss_inputs<T, device_space>& in,
                         const loss_outputs<T, device_space>& out, const loss_config& cfg) {
    const loss_record* d_record = run_loss(dev, where, in, out, cfg, nullptr);
    loss_record* h = reinterpret_cast<loss_record*>(dev.host_doubles(doubles_of(sizeof(loss_record))));
    dev.copy_to_host(h, d_record, sizeof(loss_record));
    dev.synchronize(where);
    return checked_stats(*h, in.logp.cols(), where);
}

/// Checks a per_token_kl call, validates the values on device (loss_check_kernel, logp standing in for the
/// advantages), runs kl_kernel and waits for its record: the CPU backend's grpo::error on a bad value.
template <class T, class D>
kl_stats run_kl_sync(D& dev, const char* where, const kl_inputs<T, device_space>& in,
                     const kl_outputs<T, device_space>& out, const kl_config& cfg) {
    static_assert(is_loss_element<T>::value,
                  "grpo::per_token_kl (CUDA): element type must be float, double, __half or __nv_bfloat16");
    const kl_params k = check_kl_call(where, in, out, cfg);
    check_device_view(dev, where, "logp", in.logp);
    check_device_view(dev, where, "ref_logp", in.ref_logp);
    check_device_view(dev, where, "mask", in.mask);
    check_device_view(dev, where, "lengths", in.lengths);
    check_device_view(dev, where, "kl", out.kl);
    check_device_view(dev, where, "grad_logp", out.grad_logp);
    const index_t rows = in.logp.rows();
    (void)checked_add(where, "rows", checked_mul(where, "rows", rows, 2 + doubles_of(sizeof(loss_partials))), 64);
    const device_loss_views<T> v{in.logp,       {},     in.ref_logp, in.logp, in.mask, in.lengths,
                                 out.grad_logp, out.kl, {},          {},      {},      {}};
    loss_scratch s = loss_layout(dev.scratch_doubles(loss_scratch_doubles(rows)), rows);
    dev.zero(s.counters, 3 * sizeof(unsigned long long));
    const bool check_values = cfg.checks == validation::full;
    const index_t blocks = grid_for_items(rows);
    if (check_values) dev.launch(loss_check_kernel<T>{v, s, true, true, false, false, 0.0, false}, blocks);
    dev.launch(kl_kernel<T>{v, k, s, check_values, s.record}, blocks);
    dev.check_launch(where);
    loss_record* h = reinterpret_cast<loss_record*>(dev.host_doubles(doubles_of(sizeof(loss_record))));
    dev.copy_to_host(h, s.record, sizeof(loss_record));
    dev.synchronize(where);
    const loss_stats st = checked_stats(*h, in.logp.cols(), where);
    kl_stats out_stats;
    out_stats.kl_sum = st.kl_loss;
    out_stats.kl_mean = st.kl_mean;
    out_stats.token_count = st.token_count;
    return out_stats;
}

/// Host-side checks of a CUDA compute_advantages call: the CPU's shape and configuration checks, then that
/// every view is device memory. Values (ids in range, finite rewards, token weights >= 0) live in device memory
/// and are checked by adv_validate_kernel.
template <class T, class D>
void check_device_advantage_call(D& dev, const char* where, vector_view<const T, device_space> rewards,
                                 const device_groups& g, vector_view<T, device_space> advantages,
                                 const advantage_config& cfg, const device_group_outputs& go,
                                 vector_view<const double, device_space> token_weights) {
    check_advantage_shapes<T, device_space>(where, rewards, g, advantages, cfg, go, token_weights);
    check_device_view(dev, where, "rewards", rewards);
    check_device_view(dev, where, "advantages", advantages);
    if (!g.is_contiguous()) check_device_view(dev, where, "groups.ids", g.ids());
    check_device_view(dev, where, "group_outputs.mean", go.mean);
    check_device_view(dev, where, "group_outputs.std", go.std);
    check_device_view(dev, where, "group_outputs.zero_variance", go.zero_variance);
    check_device_view(dev, where, "group_outputs.count", go.count);
    check_device_view(dev, where, "token_weights", token_weights);
}

template <class D>
adv_scratch adv_scratch_for(D& dev, index_t n, index_t k, bool by_id) {
    const std::size_t sort_bytes = by_id ? dev.sort_temp_bytes(n, adv_key_bits(k)) : 0;
    const std::size_t bytes = adv_layout(n, k, by_id, sort_bytes, nullptr, nullptr);
    adv_scratch s;
    adv_layout(n, k, by_id, sort_bytes, dev.scratch_doubles((bytes + sizeof(double) - 1) / sizeof(double)), &s);
    return s;
}

/// Checks the call and launches the advantages; the record goes to `d_stats`, or with nullptr to the
/// workspace's own record. Returns where it went.
template <class T, class D>
const double* run_advantages(D& dev, const char* where, vector_view<const T, device_space> rewards,
                             const device_groups& g, vector_view<T, device_space> advantages,
                             const advantage_config& cfg, double* d_stats, const device_group_outputs& per_group,
                             vector_view<const double, device_space> token_weights) {
    static_assert(std::is_floating_point<T>::value,
                  "grpo::compute_advantages (CUDA): rewards and advantages must have the same float/double type");
    check_device_advantage_call<T>(dev, where, rewards, g, advantages, cfg, per_group, token_weights);
    dev.check_pointer(where, "d_stats", d_stats);

    const index_t n = rewards.size();
    const index_t k = g.num_groups(n);
    const bool by_id = !g.is_contiguous();
    // Every size adv_layout adds up (at most 40 bytes a row, 112 a group, plus alignment) fits std::ptrdiff_t.
    (void)checked_add(where, "rows/num_groups", checked_mul(where, "rows", n, 64),
                      checked_mul(where, "num_groups", k, 128));
    const adv_scratch s = adv_scratch_for(dev, n, k, by_id);
    if (d_stats == nullptr) d_stats = s.stats;
    adv_params p{};
    p.n = n;
    p.k = k;
    p.group_size = by_id ? 0 : g.size();
    p.contiguous = !by_id;
    p.reject_nan = cfg.nan == nan_rewards::reject;
    p.whiten = cfg.estimator == advantage_estimator::group_centered_batch_whitened;
    p.ap = cfg.params();
    p.whiten_epsilon = cfg.whiten_epsilon;
    const adv_views<T> v{
        rewards,        advantages, g.ids(), token_weights, per_group.mean, per_group.std, per_group.zero_variance,
        per_group.count};
    const index_t elem_blocks = grid_for_items(n > k ? n : k, adv_elem_block, 65535);

    dev.zero(s.errors, adv_error_slots * sizeof(unsigned long long));
    dev.zero(s.slots, adv_slots * sizeof(unsigned long long));
    if (n > 0) dev.launch(adv_validate_kernel<T>{v, p, s}, elem_blocks);
    if (by_id && k > 0) { // groups without rows keep begin = end = 0, so the group kernel sees count 0
        dev.zero(s.begin, static_cast<std::size_t>(k) * sizeof(std::int64_t));
        dev.zero(s.end, static_cast<std::size_t>(k) * sizeof(std::int64_t));
    }
    if (by_id && n > 0) {
        dev.sort_pairs(s.keys_in, s.keys_out, s.rows_in, s.rows_out, n, adv_key_bits(k), s.sort_temp,
                       s.sort_temp_bytes);
        dev.launch(adv_offsets_kernel{s.keys_out, n, k, s.errors, s.begin, s.end}, elem_blocks);
    }
    if (k > 0) dev.launch(adv_group_kernel<T>{v, p, s}, grid_for_items(k));
    // The batch reductions: chunks of adv_chunk rows, as many blocks as there are chunks (up to a cap).
    const index_t batch_blocks = grid_for_items(adv_chunks(n), 1, adv_reduce_max_blocks);
    for (int phase = 0; phase < 3; ++phase) dev.launch(adv_batch_kernel<T>{v, p, s, phase}, batch_blocks);
    if (n > 0) dev.launch(adv_range_kernel<T>{v, p, s}, elem_blocks);
    if (n > 0 || k > 0) dev.launch(adv_write_kernel<T>{v, p, s}, elem_blocks);
    const index_t stats_blocks = grid_for_items(adv_chunks(n > k ? n : k), 1, adv_reduce_max_blocks);
    for (int phase = 1; phase < 3; ++phase) dev.launch(adv_stats_kernel<T>{v, p, s, d_stats, phase}, stats_blocks);
    dev.check_launch(where);
    return d_stats;
}

template <class T, class D>
std::vector<T> download_strided(D& dev, const char* where, vector_view<const T, device_space> v) {
    std::vector<T> h;
    if (!v.present() || v.empty()) return h;
    h.resize(static_cast<std::size_t>((v.size() - 1) * v.stride() + 1));
    dev.copy_to_host(h.data(), v.data(), h.size() * sizeof(T));
    dev.synchronize(where);
    return h;
}

/// Error path of the syncing overload (the device recorded invalid values, nothing was written): copies the
/// inputs to the host and runs the CPU backend on them, which throws the same grpo::error (same message) the
/// CPU backend throws for these inputs.
template <class T, class D>
[[noreturn]] void raise_advantage_value_error(D& dev, const char* where, const double* h,
                                              vector_view<const T, device_space> rewards, const device_groups& g,
                                              const advantage_config& cfg,
                                              vector_view<const double, device_space> token_weights) {
    const index_t n = rewards.size();
    const std::vector<T> r = download_strided(dev, where, rewards);
    const std::vector<double> w = download_strided(dev, where, token_weights);
    std::vector<std::int64_t> ids;
    if (!g.is_contiguous()) ids = download_strided(dev, where, g.ids());
    std::vector<T> adv(static_cast<std::size_t>(n));
    const groups hg =
        g.is_contiguous()
            ? groups::contiguous(g.size())
            : groups::by_id(vector_view<const std::int64_t>(ids.data(), n, g.ids().stride()), g.num_groups(n));
    compute_advantages(exec::host{}, vector_view<const T>(r.data(), n, rewards.stride()), hg,
                       vector_view<T>(adv.data(), n), cfg, group_outputs{},
                       token_weights.present() && !token_weights.empty()
                           ? vector_view<const double>(w.data(), token_weights.size(), token_weights.stride())
                           : vector_view<const double>());
    (void)unpack_advantage_stats(h,
                                 where); // the CPU did not throw (a value on an fp edge): report the device's finding
    raise_argument(errc::invalid_value, where, "rewards", "valid values", "invalid values reported by the device");
}

template <class T, class D>
advantage_stats run_advantages_sync(D& dev, const char* where, vector_view<const T, device_space> rewards,
                                    const device_groups& g, vector_view<T, device_space> advantages,
                                    const advantage_config& cfg, const device_group_outputs& per_group,
                                    vector_view<const double, device_space> token_weights) {
    const double* d_stats = run_advantages(dev, where, rewards, g, advantages, cfg, nullptr, per_group, token_weights);
    double* h = dev.host_doubles(advantage_stats_doubles);
    dev.copy_to_host(h, d_stats, advantage_stats_doubles * sizeof(double));
    dev.synchronize(where);
    if (h[10] != 0) raise_advantage_value_error<T>(dev, where, h, rewards, g, cfg, token_weights);
    return unpack_advantage_stats(h, where);
}

/// Checks a device token_advantages call and launches it (token_advantage_kernels.hpp); returns the record.
template <class T, class D>
const double* run_token_advantages(D& dev, const char* where, const token_advantage_inputs<T, device_space>& in,
                                   const token_advantage_outputs<T, device_space>& out,
                                   const token_advantage_config& cfg) {
    static_assert(std::is_floating_point<T>::value,
                  "grpo::token_advantages (CUDA): element type must be float or double");
    check_token_advantage_shapes(where, in, out, cfg);
    check_device_view(dev, where, "rewards", in.rewards);
    check_device_view(dev, where, "mask", in.mask);
    check_device_view(dev, where, "baselines", in.baselines);
    check_device_view(dev, where, "old_logp", in.old_logp);
    check_device_view(dev, where, "sum_pi_squared", in.sum_pi_squared);
    check_device_view(dev, where, "is_weights", in.is_weights);
    check_device_view(dev, where, "advantages", out.advantages);
    check_device_view(dev, where, "returns", out.returns);
    tok_params p{};
    p.rows = in.rewards.rows();
    p.cols = in.rewards.cols();
    p.cells = checked_mul(where, "rewards", p.rows, p.cols);
    p.est = cfg.estimator;
    p.otb = cfg.optimal_baseline();
    p.tir = cfg.estimator == token_estimator::tir_optimal_token_baseline;
    p.zero_tail = cfg.zero_tail();
    p.gamma = cfg.gamma;
    p.whiten_epsilon = cfg.whiten_epsilon;
    p.otb_epsilon = cfg.otb_epsilon;
    const bool by_id = p.otb && !in.prompts.is_contiguous();
    if (by_id) check_device_view(dev, where, "prompts.ids", in.prompts.ids());
    p.k = p.otb ? in.prompts.num_groups(p.rows) : 0;
    p.contiguous = !by_id;
    p.group_size = p.otb && !by_id ? in.prompts.size() : 0;
    // Every size tok_layout adds up (at most 3 doubles a cell, 2 a group position, 7 a row and 7 a group, plus
    // alignment) fits std::ptrdiff_t.
    (void)checked_add(
        where, "rewards", checked_mul(where, "rewards", p.cells, 32),
        checked_add(where, "prompts", checked_mul(where, "prompts", checked_mul(where, "prompts", p.k, p.cols), 16),
                    checked_mul(where, "rows/prompts", checked_add(where, "rows", p.rows, p.k), 64)));
    const std::size_t sort_bytes = by_id ? dev.sort_temp_bytes(p.rows, adv_key_bits(p.k)) : 0;
    const std::size_t bytes = tok_layout(p, by_id, sort_bytes, nullptr, nullptr);
    tok_scratch s;
    tok_layout(p, by_id, sort_bytes, dev.scratch_doubles((bytes + sizeof(double) - 1) / sizeof(double)), &s);
    const tok_views<T> v{in.rewards,
                         in.mask,
                         in.old_logp,
                         in.sum_pi_squared,
                         in.is_weights,
                         in.baselines,
                         by_id ? in.prompts.ids() : vector_view<const std::int64_t, device_space>(),
                         out.advantages,
                         out.returns};

    dev.zero(s.slots, tok_slots * sizeof(unsigned long long));
    dev.launch(tok_validate_kernel<T>{v, p, s},
               grid_for_items(p.cells > p.rows ? p.cells : p.rows, adv_elem_block, 65535));
    if (by_id && p.k > 0) { // groups without rows keep begin = end = 0
        dev.zero(s.begin, static_cast<std::size_t>(p.k) * sizeof(std::int64_t));
        dev.zero(s.end, static_cast<std::size_t>(p.k) * sizeof(std::int64_t));
    }
    if (by_id && p.rows > 0) {
        dev.sort_pairs(s.keys_in, s.keys_out, s.rows_in, s.rows_out, p.rows, adv_key_bits(p.k), s.sort_temp,
                       s.sort_temp_bytes);
        // adv_offsets_kernel skips its work when any of the five slots it reads is set: here the flag, then the
        // pivot and counters, still 0 at this point.
        static_assert(tok_slots >= adv_error_slots, "adv_offsets_kernel reads adv_error_slots slots");
        dev.launch(adv_offsets_kernel{s.keys_out, p.rows, p.k, s.slots, s.begin, s.end},
                   grid_for_items(p.rows, adv_elem_block, 65535));
    }
    const index_t row_blocks = grid_for_items(p.rows, tok_row_block, 65535);
    dev.launch(tok_row_kernel<T>{v, p, s}, row_blocks);
    const index_t chunk_blocks = grid_for_items(adv_chunks(p.cells), 1, adv_reduce_max_blocks);
    for (int phase = 0; phase < 3; ++phase) dev.launch(tok_moments_kernel<T>{v, p, s, phase}, chunk_blocks);
    if (p.otb && p.k > 0) dev.launch(tok_group_kernel<T>{v, p, s}, grid_for_items(p.k, 1, 65535));
    dev.launch(tok_write_kernel<T>{v, p, s, true}, row_blocks);
    dev.launch(tok_write_kernel<T>{v, p, s, false}, row_blocks);
    for (int phase = 1; phase < 3; ++phase) dev.launch(tok_stats_kernel<T>{v, p, s, s.stats, phase}, chunk_blocks);
    dev.check_launch(where);
    return s.stats;
}

/// A host copy of a device matrix view's span, and the host view over it with the same strides.
template <class T, class D>
struct host_matrix_copy {
    std::vector<T> data;
    matrix_view<const T> view;
    host_matrix_copy(D& dev, const char* where, matrix_view<const T, device_space> m) {
        if (!m.present()) return;
        if (m.empty()) { // present but empty: a non-null pointer that is never read
            view = matrix_view<const T>(&placeholder(), m.rows(), m.cols());
            return;
        }
        const index_t span = (m.rows() - 1) * m.row_stride() + (m.cols() - 1) * m.col_stride() + 1;
        data.resize(static_cast<std::size_t>(span));
        dev.copy_to_host(data.data(), m.data(), data.size() * sizeof(T));
        dev.synchronize(where);
        view = matrix_view<const T>(data.data(), m.rows(), m.cols(), m.row_stride(), m.col_stride());
    }
    static const T& placeholder() {
        static const T x{};
        return x;
    }
};

/// token_advantages on device, waiting once for the record; bad values (the device's flag) rerun the CPU
/// backend's checks on host copies of the inputs, which throw the CPU's grpo::error. Outputs untouched then.
template <class T, class D>
token_advantage_stats run_token_advantages_sync(D& dev, const char* where,
                                                const token_advantage_inputs<T, device_space>& in,
                                                const token_advantage_outputs<T, device_space>& out,
                                                const token_advantage_config& cfg) {
    const double* d_stats = run_token_advantages(dev, where, in, out, cfg);
    double* h = dev.host_doubles(tok_stats_fields);
    dev.copy_to_host(h, d_stats, tok_stats_fields * sizeof(double));
    dev.synchronize(where);
    if (h[tok_stats_fields - 1] != 0) {
        const host_matrix_copy<T, D> rewards(dev, where, in.rewards), mask(dev, where, in.mask),
            old_logp(dev, where, in.old_logp), sum_pi_squared(dev, where, in.sum_pi_squared),
            is_weights(dev, where, in.is_weights);
        const std::vector<T> baselines = download_strided(dev, where, in.baselines);
        std::vector<std::int64_t> ids;
        const bool by_id = cfg.optimal_baseline() && !in.prompts.is_contiguous();
        if (by_id) ids = download_strided(dev, where, in.prompts.ids());
        token_advantage_inputs<T> hin;
        hin.rewards = rewards.view;
        hin.mask = mask.view;
        hin.old_logp = old_logp.view;
        hin.sum_pi_squared = sum_pi_squared.view;
        hin.is_weights = is_weights.view;
        if (in.baselines.present())
            hin.baselines =
                vector_view<const T>(baselines.empty() ? &host_matrix_copy<T, D>::placeholder() : baselines.data(),
                                     in.baselines.size(), in.baselines.stride());
        const index_t rows = in.rewards.rows();
        hin.prompts = by_id
                          ? groups::by_id(vector_view<const std::int64_t>(ids.data(), rows, in.prompts.ids().stride()),
                                          in.prompts.num_groups(rows))
                          : groups::contiguous(in.prompts.size());
        std::vector<T> adv(static_cast<std::size_t>(in.rewards.size()));
        token_advantage_outputs<T> hout;
        hout.advantages = matrix_view<T>(adv.data(), rows, in.rewards.cols());
        token_advantages(exec::host{}, hin, hout, cfg); // throws the CPU backend's error
        raise_argument(errc::invalid_value, where, "rewards", "valid values", "invalid values reported by the device");
    }
    token_advantage_stats st;
    st.tokens = h[0];
    st.return_mean = h[1];
    st.return_std = h[2];
    st.advantage_mean = h[3];
    st.advantage_std = h[4];
    st.advantage_min = h[5];
    st.advantage_max = h[6];
    return st;
}

} // namespace cuda
} // namespace detail

/// Fused loss + gradient + diagnostics on device, without a host sync: the results are written to `d_record`
/// (device memory of sizeof(loss_record) bytes) in stream order; copy it back once the stream has reached it
/// and read it with checked_stats(). Same formulas, options and errors as loss_and_grad(exec::host, ...) (TRL
/// compute_loss / verl compute_policy_loss + kl_penalty + agg_loss). Shapes and configuration are checked on
/// the host before any launch (grpo::error). With validation::full (the default) the values are checked on
/// device first, as the CPU backend checks them (lengths in [0, cols], mask in {0,1}, finite inputs at unmasked
/// tokens; one more read of the inputs): on a bad value nothing is written but `d_record->error`, which
/// checked_stats() turns into the CPU backend's grpo::error. With validation::shapes_only, lengths outside
/// [0, cols] are clamped. Element types: float and double (math in that type), also __half and __nv_bfloat16
/// (converted to float on load, fp32 math, grad_logp / per_token_loss written in the input type). Per-row and
/// batch sums are in double for every type.
/// Workspace: the call holds `ws` (basic_workspace_lease) while it checks and enqueues, and throws grpo::error
/// (errc::in_use) when another call holds it; the lease ends when the work is enqueued, not when it completes,
/// so `ws` must not be used by a call on another stream before this work has completed (as before).
template <class Exec, class T>
detail::if_device_executor<Exec> loss_and_grad(const Exec& ex, const loss_inputs<T, device_space>& in,
                                               const loss_outputs<T, device_space>& out, const loss_config& cfg,
                                               detail::device_workspace_of<Exec>& ws, loss_record* d_record) {
    constexpr const char* where = device_backend_traits<Exec>::loss_where;
    const basic_workspace_lease<detail::device_workspace_of<Exec>> lease(ws, where);
    if (d_record == nullptr)
        detail::raise_argument(errc::invalid_value, where, "d_record", "a device buffer of sizeof(loss_record) bytes",
                               "nullptr");
    auto dev = device_backend_traits<Exec>::device(ex, ws);
    detail::cuda::run_loss(dev, where, in, out, cfg, d_record);
}

/// Host views given to a device executor: a compile error that names the fix (a kernel must never receive a host
/// pointer).
template <class Exec, class T, class... Rest>
detail::if_device_executor<Exec, loss_stats> loss_and_grad(const Exec&, const loss_inputs<T, host_space>&,
                                                           const loss_outputs<T, host_space>&, const loss_config&,
                                                           Rest&&...) {
    static_assert(detail::always_false<T>::value,
                  "grpo::loss_and_grad: device executors take device_space views (loss_inputs<T, device_space>); "
                  "host_space views go to exec::host");
    return {};
}

/// Fused loss + gradient + diagnostics on device; waits for the stream once to return the scalars. Bad values
/// and a global_token_count below the call's tokens (validation::full) throw the CPU backend's grpo::error
/// after the wait, with the outputs untouched. The call holds `ws` until it returns (grpo::error, errc::in_use,
/// when another call holds it).
template <class Exec, class T>
detail::if_device_executor<Exec, loss_stats> loss_and_grad(const Exec& ex, const loss_inputs<T, device_space>& in,
                                                           const loss_outputs<T, device_space>& out,
                                                           const loss_config& cfg,
                                                           detail::device_workspace_of<Exec>& ws) {
    constexpr const char* where = device_backend_traits<Exec>::loss_where;
    const basic_workspace_lease<detail::device_workspace_of<Exec>> lease(ws, where);
    auto dev = device_backend_traits<Exec>::device(ex, ws);
    return detail::cuda::run_loss_sync(dev, where, in, out, cfg);
}

/// The standalone per-token KL on device (per_token_kl(exec::host, ...)'s counterpart): KL_it and
/// d KL_it / d logp_it, with the loss's estimators; waits for the stream once to return the sums. Shapes and
/// configuration are checked on the host before any launch; with validation::full (the default) the values are
/// checked on device first, and a bad one throws the CPU backend's grpo::error with the outputs untouched
/// (without it, lengths outside [0, cols] are clamped). Element types as loss_and_grad. The call holds `ws`
/// until it returns (grpo::error, errc::in_use, when another call holds it).
template <class Exec, class T>
detail::if_device_executor<Exec, kl_stats> per_token_kl(const Exec& ex, const kl_inputs<T, device_space>& in,
                                                        const kl_outputs<T, device_space>& out, const kl_config& cfg,
                                                        detail::device_workspace_of<Exec>& ws) {
    constexpr const char* where = device_backend_traits<Exec>::kl_where;
    const basic_workspace_lease<detail::device_workspace_of<Exec>> lease(ws, where);
    auto dev = device_backend_traits<Exec>::device(ex, ws);
    return detail::cuda::run_kl_sync(dev, where, in, out, cfg);
}

/// Group-relative advantages on device, without a host sync: the CUDA counterpart of
/// compute_advantages(exec::host, ...) with device_space views (TRL _compute_advantages / verl
/// compute_grpo_outcome_advantage and relatives). Shapes and configuration are checked on the host before any
/// launch (same grpo::error messages as the CPU backend). Values (ids in [0, num_groups), finite rewards or NaN
/// with nan_rewards::ignore, token weights finite >= 0, total whitening weight > 1) are checked on device: on
/// failure nothing is written to `advantages` / `per_group` and the record in `d_stats`
/// (advantage_stats_doubles device doubles, see there) carries the error code.
/// Rewards and advantages: float or double (same type). Deterministic; no float atomics.
/// Workspace: held (basic_workspace_lease; errc::in_use when another call holds it) while the call checks and
/// enqueues only; `ws` must not be used by a call on another stream before this work has completed (as before).
template <class Exec, class R, class T>
detail::if_device_executor<Exec> compute_advantages(const Exec& ex, vector_view<R, device_space> rewards,
                                                    const device_groups& g, vector_view<T, device_space> advantages,
                                                    const advantage_config& cfg, detail::device_workspace_of<Exec>& ws,
                                                    double* d_stats, const device_group_outputs& per_group = {},
                                                    vector_view<const double, device_space> token_weights = {}) {
    static_assert(std::is_same<std::remove_const_t<R>, T>::value,
                  "grpo::compute_advantages (CUDA): rewards and advantages must have the same float/double type");
    constexpr const char* where = device_backend_traits<Exec>::advantages_where;
    const basic_workspace_lease<detail::device_workspace_of<Exec>> lease(ws, where);
    if (d_stats == nullptr)
        detail::raise_argument(errc::invalid_value, where, "d_stats", "a device buffer of advantage_stats_doubles",
                               "nullptr");
    auto dev = device_backend_traits<Exec>::device(ex, ws);
    detail::cuda::run_advantages<T>(dev, where, rewards, g, advantages, cfg, d_stats, per_group, token_weights);
}

/// Group-relative advantages on device; waits for the stream once to return the statistics. Invalid values
/// throw the same grpo::error as the CPU backend (nothing is written to the outputs). The call holds `ws` until
/// it returns (grpo::error, errc::in_use, when another call holds it).
template <class Exec, class R, class T>
detail::if_device_executor<Exec, advantage_stats> compute_advantages(
    const Exec& ex, vector_view<R, device_space> rewards, const device_groups& g,
    vector_view<T, device_space> advantages, const advantage_config& cfg, detail::device_workspace_of<Exec>& ws,
    const device_group_outputs& per_group = {}, vector_view<const double, device_space> token_weights = {}) {
    static_assert(std::is_same<std::remove_const_t<R>, T>::value,
                  "grpo::compute_advantages (CUDA): rewards and advantages must have the same float/double type");
    constexpr const char* where = device_backend_traits<Exec>::advantages_where;
    const basic_workspace_lease<detail::device_workspace_of<Exec>> lease(ws, where);
    auto dev = device_backend_traits<Exec>::device(ex, ws);
    return detail::cuda::run_advantages_sync<T>(dev, where, rewards, g, advantages, cfg, per_group, token_weights);
}

/// Convenience overload with a temporary workspace (allocates and frees device memory: not for hot loops).
template <class Exec, class R, class T>
detail::if_device_executor<Exec, advantage_stats> compute_advantages(
    const Exec& ex, vector_view<R, device_space> rewards, const device_groups& g,
    vector_view<T, device_space> advantages, const advantage_config& cfg = {},
    const device_group_outputs& per_group = {}, vector_view<const double, device_space> token_weights = {}) {
    detail::device_workspace_of<Exec> ws;
    return compute_advantages(ex, rewards, g, advantages, cfg, ws, per_group, token_weights);
}

/// Token-level advantages on device (same estimators, formulas, checks and errors as token_advantages(exec::host,
/// ...): REINFORCE++, ReMax, the optimal token baseline and its TIR variant; see api/advantages.hpp). Waits for
/// the stream once to return the statistics; invalid values throw the CPU backend's grpo::error after the wait,
/// outputs untouched. Each group's baseline sums run over its rows in row order, as on the CPU; the batch sums
/// are chunked block reductions. Deterministic; no float atomics. The call holds `ws` until it returns.
template <class Exec, class T>
detail::if_device_executor<Exec, token_advantage_stats> token_advantages(
    const Exec& ex, const token_advantage_inputs<T, device_space>& in,
    const token_advantage_outputs<T, device_space>& out, const token_advantage_config& cfg,
    detail::device_workspace_of<Exec>& ws) {
    constexpr const char* where = device_backend_traits<Exec>::token_advantages_where;
    const basic_workspace_lease<detail::device_workspace_of<Exec>> lease(ws, where);
    auto dev = device_backend_traits<Exec>::device(ex, ws);
    return detail::cuda::run_token_advantages_sync<T>(dev, where, in, out, cfg);
}

/// Convenience overload with a temporary workspace (allocates and frees device memory: not for hot loops).
template <class Exec, class T>
detail::if_device_executor<Exec, token_advantage_stats> token_advantages(
    const Exec& ex, const token_advantage_inputs<T, device_space>& in,
    const token_advantage_outputs<T, device_space>& out, const token_advantage_config& cfg = {}) {
    detail::device_workspace_of<Exec> ws;
    return token_advantages(ex, in, out, cfg, ws);
}

GRPO_NAMESPACE_END
