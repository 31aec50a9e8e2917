// SPDX-License-Identifier: MIT
// The communicator concept data-parallel grpo runs on, and the deterministic collectives built on it: gathers
// in rank order, sums in a fixed order, and errors that every rank sees. The transports (MPI, c10d, NCCL) are
// adapters; this header needs none of them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/checked.hpp"
#include "../core/error.hpp"
#include "../core/view.hpp"

GRPO_NAMESPACE_BEGIN
namespace dist {

/// A communicator is any type C with
///   int  c.rank() const;   // this process, in [0, size)
///   int  c.size() const;   // processes in the group, >= 1
///   void c.all_gather(const void* send, std::size_t bytes, void* recv) const;
///        // every rank passes the same byte count; recv (size() * bytes) receives every rank's bytes in
///        // rank order; it blocks until this rank's recv is complete; transport failures throw.
/// grpo's adapters provide mpi_communicator (<grpo/adapters/mpi.hpp>), c10d_communicator
/// (<grpo/adapters/c10d.hpp>) and nccl_communicator (<grpo/adapters/nccl.hpp>); self_communicator is the
/// one-process group. Every reduction grpo does across ranks is built from this one primitive: the partials
/// are gathered and combined in rank order on every rank, never by a floating-point all-reduce whose order
/// the transport picks, so results do not depend on the transport, the rank count or the run.
struct self_communicator {
    int rank() const noexcept { return 0; }
    int size() const noexcept { return 1; }
    void all_gather(const void* send, std::size_t bytes, void* recv) const {
        if (bytes != 0 && send != recv) std::memmove(recv, send, bytes);
    }
};

namespace detail {

using grpo::detail::raise;
using grpo::detail::raise_argument;
using grpo::detail::to_str;

/// rank() and size() as the contract requires, else grpo::error naming the entry point.
template <class Comm>
void check_communicator(const char* where, const Comm& comm) {
    const int size = comm.size(), rank = comm.rank();
    if (size < 1)
        raise_argument(errc::invalid_value, where, "comm", "a communicator of size >= 1", "size " + to_str(size));
    if (rank < 0 || rank >= size)
        raise_argument(errc::invalid_value, where, "comm", "a rank in [0, " + to_str(size) + ")",
                       "rank " + to_str(rank));
}

/// Every rank's `count` trivially copyable values, in rank order (count is the same on every rank).
template <class T, class Comm>
std::vector<T> all_gather_fixed(const char* where, const Comm& comm, const T* send, std::size_t count) {
    static_assert(std::is_trivially_copyable<T>::value, "gathered values are sent as bytes");
    const auto size = static_cast<std::size_t>(comm.size());
    const std::size_t bytes =
        grpo::detail::checked_bytes(where, "the gathered values", static_cast<index_t>(count), sizeof(T));
    std::vector<T> out = grpo::detail::make_scratch<T>(
        where, "the gathered values",
        grpo::detail::checked_mul(where, "the gathered values", static_cast<index_t>(count),
                                  static_cast<index_t>(size)));
    if (!out.empty()) comm.all_gather(send, bytes, out.data());
    return out;
}

/// A local failure made collective: every rank calls this at the same point with its own error (or none);
/// when any rank failed, every rank throws the lowest failing rank's error, its message prefixed with that
/// rank ("rank 2: grpo::..."), so that no rank is left waiting in a later collective.
template <class Comm>
void agree_on_errors(const char* where, const Comm& comm, errc local_code, const std::string& local_message) {
    const std::int64_t mine[2] = {static_cast<std::int64_t>(local_code),
                                  static_cast<std::int64_t>(local_code == errc::ok ? 0 : local_message.size())};
    const std::vector<std::int64_t> all = all_gather_fixed(where, comm, mine, 2);
    std::int64_t longest = 0;
    int first = -1;
    for (int r = 0; r < comm.size(); ++r) {
        const auto k = static_cast<std::size_t>(r) * 2;
        if (all[k] != 0 && first < 0) first = r;
        longest = std::max(longest, all[k + 1]);
    }
    if (first < 0) return;
    // The messages, padded to the longest (every rank passes the same byte count).
    std::string padded(static_cast<std::size_t>(longest), '\0');
    if (local_code != errc::ok) std::memcpy(&padded[0], local_message.data(), local_message.size());
    const std::vector<char> text = all_gather_fixed(where, comm, padded.data(), padded.size());
    const auto at = static_cast<std::size_t>(first);
    const std::string message(text.data() + at * static_cast<std::size_t>(longest),
                              static_cast<std::size_t>(all[at * 2 + 1]));
    const auto code = static_cast<errc>(all[at * 2]);
    if (first == comm.rank()) raise(code, message);
    raise(code, "rank " + to_str(first) + ": " + message);
}

/// Runs f() and makes its grpo::error collective (agree_on_errors); f's other exceptions propagate as they are.
template <class Comm, class F>
void collectively(const char* where, const Comm& comm, F&& f) {
#if GRPO_HAS_EXCEPTIONS
    errc code = errc::ok;
    std::string message;
    try {
        f();
    } catch (const grpo::error& e) {
        code = e.code() == errc::ok ? errc::invalid_value : e.code();
        message = e.what();
    }
    agree_on_errors(where, comm, code, message);
#else
    f(); // a failure aborts this process (and the transport the others)
    (void)where;
    (void)comm;
#endif
}

/// Every rank's values, concatenated in rank order, when ranks hold different counts; `counts` receives each
/// rank's count. One gather of the counts, one of the values padded to the largest count.
template <class T, class Comm>
std::vector<T> all_gather_varying(const char* where, const Comm& comm, const T* send, index_t count,
                                  std::vector<index_t>& counts) {
    const std::int64_t mine = count;
    const std::vector<std::int64_t> all = all_gather_fixed(where, comm, &mine, 1);
    counts.assign(all.begin(), all.end());
    index_t longest = 0, total = 0;
    for (const index_t c : counts) {
        if (c < 0) raise_argument(errc::communication, where, "comm", "counts >= 0 from every rank", to_str(c));
        longest = std::max(longest, c);
        total = grpo::detail::checked_add(where, "the gathered values", total, c);
    }
    std::vector<T> padded = grpo::detail::make_scratch<T>(where, "the gathered values", longest);
    if (count > 0) std::copy(send, send + count, padded.begin());
    const std::vector<T> gathered = all_gather_fixed(where, comm, padded.data(), padded.size());
    std::vector<T> out = grpo::detail::make_scratch<T>(where, "the gathered values", total);
    std::size_t at = 0;
    for (std::size_t r = 0; r < counts.size(); ++r) {
        const auto c = static_cast<std::size_t>(counts[r]);
        std::copy(gathered.begin() + static_cast<std::ptrdiff_t>(r * static_cast<std::size_t>(longest)),
                  gathered.begin() + static_cast<std::ptrdiff_t>(r * static_cast<std::size_t>(longest) + c),
                  out.begin() + static_cast<std::ptrdiff_t>(at));
        at += c;
    }
    return out;
}

} // namespace detail

/// Where this rank's rows start in the batch all ranks hold together (rows concatenated in rank order), and
/// how many there are in all.
struct row_span {
    index_t offset = 0; ///< rows on lower ranks
    index_t total = 0;  ///< rows on every rank
};

/// Sums `values` (count of them, the same count on every rank) over the ranks in rank order: on every rank,
/// out[k] = ((v_0[k] + v_1[k]) + v_2[k]) + ..., accumulated in double and rounded to T once, the same bits
/// whatever the transport. `out` may be `values`. For parameter gradients of a data-parallel step
/// (docs/distributed.md); a collective: every rank calls it. Each rank receives every rank's values (size() *
/// count), so for large models a transport's own reduction with a fixed order may be cheaper.
template <class Comm, class T>
void all_sum(const Comm& comm, const T* values, index_t count, T* out) {
    static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                  "grpo::dist::all_sum: float or double values");
    const char* where = "dist::all_sum";
    detail::check_communicator(where, comm);
    if (count < 0) detail::raise_argument(errc::invalid_value, where, "count", "a count >= 0", detail::to_str(count));
    const std::vector<T> all = detail::all_gather_fixed(where, comm, values, static_cast<std::size_t>(count));
    const auto n = static_cast<std::size_t>(count);
    for (std::size_t k = 0; k < n; ++k) {
        double s = static_cast<double>(all[k]);
        for (std::size_t r = 1; r < static_cast<std::size_t>(comm.size()); ++r)
            s += static_cast<double>(all[r * n + k]);
        out[k] = static_cast<T>(s);
    }
}

} // namespace dist
GRPO_NAMESPACE_END
