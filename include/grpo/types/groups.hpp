// SPDX-License-Identifier: MIT
// How rows form groups (contiguous blocks or an id per row), the per-group outputs and the group checks that
// every entry point taking groups shares.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "../core/check.hpp"
#include "../core/view.hpp"
#include "../math/group_stats.hpp"

GRPO_NAMESPACE_BEGIN

/// How completions are grouped: contiguous blocks of `size` rows (TRL/verl layout: prompt-major groups),
/// or an id per row in [0, num_groups) (verl's `index`/uid, any order, any group sizes). `groups` holds host
/// ids; the CUDA backend's `device_groups` holds device ids and converts implicitly from contiguous `groups`.
template <class Space>
class basic_groups {
public:
    basic_groups() = default;
    static basic_groups contiguous(index_t size) {
        basic_groups g;
        g.size_ = size;
        return g;
    }
    static basic_groups by_id(vector_view<const std::int64_t, Space> ids, index_t num_groups) {
        basic_groups g;
        g.ids_ = ids;
        g.num_groups_ = num_groups;
        g.by_id_ = true; // not ids.present(): an empty batch's ids may well have no storage
        return g;
    }
    /// device_groups from host groups: contiguous only (host ids cannot reach a kernel; grpo::error).
    template <class S = Space, class = std::enable_if_t<std::is_same<S, device_space>::value>>
    basic_groups(const basic_groups<host_space>& g) : size_(g.size()) { // NOLINT: implicit on purpose
        if (!g.is_contiguous())
            detail::raise_argument(errc::invalid_value, "device_groups", "groups",
                                   "groups::contiguous(G) or device_groups::by_id(device ids, num_groups)",
                                   "groups::by_id with host-memory ids");
    }
    bool is_contiguous() const noexcept { return !by_id_; }
    index_t size() const noexcept { return size_; }
    vector_view<const std::int64_t, Space> ids() const noexcept { return ids_; }
    index_t num_groups(index_t rows) const noexcept {
        return is_contiguous() ? (size_ > 0 ? rows / size_ : 0) : num_groups_;
    }

private:
    index_t size_ = 0;
    vector_view<const std::int64_t, Space> ids_;
    index_t num_groups_ = 0;
    bool by_id_ = false;
};
using groups = basic_groups<host_space>;
using device_groups = basic_groups<device_space>;

/// Dense group ids from the ids a host has: verl's uid strings, prompt hashes, sparse or negative int64 ids.
/// Group j is the j-th distinct id in first-seen (row) order, so the same ids always give the same groups.
/// Owns the dense ids; as_groups() views them (keep the group_index alive while the view is in use).
///   grpo::group_index gi(uids);                        // std::vector<std::string>, one uid per row
///   grpo::compute_advantages(ex, rewards, gi.as_groups(), adv);
class group_index {
public:
    group_index() = default;
    /// From int64 ids, one per row (any values, any order).
    explicit group_index(vector_view<const std::int64_t> ids) {
        if (ids.size() < 0)
            detail::raise_argument(errc::invalid_value, "group_index", "ids", "a size >= 0",
                                   detail::to_str(ids.size()));
        build(ids.size(), [&](index_t i) { return ids[i]; });
    }
    explicit group_index(const std::vector<std::int64_t>& ids)
        : group_index(vector_view<const std::int64_t>(ids.data(), static_cast<index_t>(ids.size()))) {}
    /// From string ids, one per row (verl's uid).
    explicit group_index(const std::vector<std::string>& ids) {
        build(static_cast<index_t>(ids.size()), [&](index_t i) { return std::string_view(ids[i]); });
    }
    explicit group_index(const std::vector<std::string_view>& ids) {
        build(static_cast<index_t>(ids.size()), [&](index_t i) { return ids[i]; });
    }

    /// groups::by_id over the dense ids.
    groups as_groups() const {
        return groups::by_id(vector_view<const std::int64_t>(dense_.data(), static_cast<index_t>(dense_.size())),
                             num_groups_);
    }
    index_t num_groups() const noexcept { return num_groups_; }
    index_t rows() const noexcept { return static_cast<index_t>(dense_.size()); }
    /// The dense id of every row, in [0, num_groups()).
    const std::vector<std::int64_t>& ids() const noexcept { return dense_; }
    /// The first row of group j (where its id was first seen).
    index_t first_row(index_t j) const { return first_row_.at(static_cast<std::size_t>(j)); }

private:
    template <class Key>
    void build(index_t n, const Key& key_of) {
        using K = decltype(key_of(index_t(0)));
        std::unordered_map<K, std::int64_t> seen;
        seen.reserve(static_cast<std::size_t>(n));
        dense_.resize(static_cast<std::size_t>(n));
        for (index_t i = 0; i < n; ++i) {
            const auto r = seen.emplace(key_of(i), static_cast<std::int64_t>(seen.size()));
            if (r.second) first_row_.push_back(i);
            dense_[static_cast<std::size_t>(i)] = r.first->second;
        }
        num_groups_ = static_cast<index_t>(seen.size());
    }
    std::vector<std::int64_t> dense_;
    std::vector<index_t> first_row_;
    index_t num_groups_ = 0;
};

/// Optional per-group outputs (each absent or of size num_groups).
struct group_outputs {
    vector_view<double> mean;                ///< mean of the scored rewards (0 for a group with none)
    vector_view<double> std;                 ///< std with config.std (0 below two scored rewards)
    vector_view<std::uint8_t> zero_variance; ///< 1 when every scored reward is equal (no learning signal)
    vector_view<std::int64_t> count;         ///< scored rewards in the group
};

namespace detail {

/// The group layout over n rows, for every entry point that takes groups: a contiguous size >= 1 dividing n,
/// or ids of size n with num_groups >= 0 (>= 1 when n > 0). Ids themselves are checked by check_group_ids.
template <class Space>
void check_group_layout(const char* where, index_t n, const basic_groups<Space>& g) {
    if (g.is_contiguous()) {
        if (g.size() < 1) raise_argument(errc::invalid_value, where, "groups", "a group size >= 1", to_str(g.size()));
        if (n % g.size() != 0)
            raise_argument(errc::shape_mismatch, where, "groups",
                           "a group size that divides the " + to_str(n) + " rows", to_str(g.size()));
    } else {
        check_size(where, "groups.ids", g.ids(), n);
        const index_t k = g.num_groups(n);
        if (k < 0 || (k < 1 && n > 0))
            raise_argument(errc::invalid_value, where, "num_groups", n > 0 ? "a value >= 1" : "a value >= 0",
                           to_str(k));
    }
}
/// Host ids in [0, num_groups).
inline void check_group_ids(const char* where, index_t n, const groups& g) {
    if (g.is_contiguous()) return;
    const index_t k = g.num_groups(n);
    for (index_t i = 0; i < n; ++i)
        if (g.ids()[i] < 0 || g.ids()[i] >= k)
            raise_argument(errc::invalid_value, where, "groups.ids", "ids in [0, " + to_str(k) + ")",
                           std::to_string(static_cast<long long>(g.ids()[i])) + " at index " + to_str(i));
}
/// Both checks of host groups over n rows: the layout, then the ids.
inline void check_groups(const char* where, index_t n, const groups& g) {
    check_group_layout(where, n, g);
    check_group_ids(where, n, g);
}
/// The group of row i (after check_group_layout and check_group_ids).
inline index_t group_of(const groups& g, index_t i) {
    const bool c = g.is_contiguous();
    return static_cast<index_t>(math::group_of_row(i, c ? g.size() : 0, c ? 0 : g.ids()[i]));
}

} // namespace detail
GRPO_NAMESPACE_END
