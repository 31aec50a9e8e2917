// SPDX-License-Identifier: MIT
// libFuzzer harness of the data-parallel entry points (<grpo/distributed.hpp>) with threads as the ranks
// (dist_cases::thread_group, tests/dist/thread_communicator.hpp), float and double:
//   mode 0  dist::compute_advantages       contiguous and by_id groups straddling ranks, per-group outputs,
//                                          token weights, every estimator / policy (out-of-range enums too);
//   mode 1  dist::token_advantages         every token estimator, prompt groups, the optional inputs;
//   mode 2  dist::loss_and_grad            the fuzz_loss configuration space plus sampling correction, entropy
//                                          bonus and top-entropy mask, every optional input and output; then
//                                          dist::count_tokens + dist::with_global_counts on the same inputs;
//   mode 3  dist::with_global_counts, dist::all_sum (float and double) on drawn counts and values (NaN, Inf,
//           extremes).
// The input draws 1 to 4 ranks, a split of the rows (even, all on one rank, uneven with empty ranks), each
// rank's own layouts (padded, column-major, strided, broadcast inputs; garbage between the elements), values
// (extremes; NaN/Inf where the API must reject them), a configuration, and rare per-rank faults: a view of the
// wrong shape, an absent view on a rank with or without rows, a rank that disagrees on the group layout, the
// columns, the optional inputs, the global counts or the element type, an output over an input or over another
// output of the same rank, and rows (with zero columns) so many that their sum over the ranks overflows.
//
// Oracles (each a fuzz::finding, tag in brackets):
//  * no crash, no sanitizer report, no hang: every gather goes through a rendezvous that, instead of
//    deadlocking, reports a rank waiting in a gather that a rank which already returned or threw will never
//    reach [rank-hang; rank-hang-oom when the rank that left threw errc::out_of_memory], and gathers whose byte
//    counts differ between ranks [gather-bytes-mismatch; "-mixed-type" appended when one rank was drawn with
//    the other element type];
//  * nothing but grpo::error escapes [foreign-exception, bad-alloc, errc-ok]; every rank throws or none does
//    [partial-throw], and when they throw, with the same errc and message up to the "rank k: " prefix that
//    names another rank [error-across-ranks; error-across-ranks-oom when an errc::out_of_memory is involved];
//  * on error every rank's buffers (inputs and outputs) are byte-identical to before [error-wrote-output;
//    error-wrote-output-loss-pass for the loss's outputs, which only its loss pass writes];
//  * on success inputs are unchanged [input-modified], nothing outside the output views is written
//    [write-outside-view], every rank returns the same statistics [stats-across-ranks], and every rank's
//    outputs and the statistics equal bit for bit the one-process entry point on the concatenated batch
//    [dist-vs-one-process; dist-vs-one-process-signed-zero when the two differ only in the sign of a zero;
//    dist-vs-one-process-nonfinite-entropy-quantile when the step's top-entropy quantile is NaN; for the loss,
//    one-process-layout-dependent / one-process-layout-signed-zero when the one-process call itself gives other
//    bits for strided rows than for contiguous ones (docs/architecture.md promises the same bits)]
//    (loss: not for clip_cov and kl_cov, whose covariance selection is per rank by design,
//    docs/distributed.md); after the loss, dist::count_tokens + dist::with_global_counts give the whole batch's
//    counts [count-tokens, global-counts]; dist::all_sum is the rank-order sum [all-sum];
//  * a per-rank fault the API documents as an error ("a bad argument on any rank throws grpo::error on every
//    rank") throws [accepted-rank-fault]; a rank treated as holding no rows (its primary input, rewards or logp,
//    absent or empty) although views of it have rows throws too, as the one-process call on that rank's views
//    would [unchecked-rank-accepted];
//  * the one-process call on the concatenated batch and the dist call agree on throwing, in the directions
//    below [dist-accepted-what-one-process-rejects:ARG, dist-rejected-valid-batch:ARG, ARG the argument the
//    rejecting call named], with the same errc when both throw [errc-vs-one-process:ARG, ARG the one-process
//    call's]; a batch without elements gets "-empty" tags instead (dist-accepted-what-one-process-rejects-empty,
//    ...).
// Known findings can be looked past with GRPO_FUZZ_SKIP=tag1,tag2 (fuzz_input.hpp); GRPO_FUZZ_VERBOSE=1
// describes each input (split, configuration, the faults drawn and what the API must do) and both outcomes.
//
// Which way the throw / no-throw comparison with the one-process call must hold:
//  * one-process throws => dist throws, whenever the concatenated batch exists (every rank's views consistent
//    with its rows, the ranks agreeing on the columns and the optional inputs): the dist call's results are by
//    contract those of that batch, so whatever makes the batch invalid (a bad value, a bad configuration, group
//    sizes that do not divide the whole batch, a host-set count below the batch's tokens or rows) must make the
//    dist call fail too, also when every rank is empty;
//  * dist throws => one-process throws, only when no per-rank fault was drawn: errors that exist only in the
//    split form (a rank's view of the wrong shape, an output overlapping an input of the same rank, ranks that
//    disagree on the layout, columns, optional inputs, counts or element type) have no counterpart in the
//    concatenated batch; for those the oracle is "every rank throws" (or, for a disagreement the API does not
//    check, such as the loss's optional inputs or columns, only all-or-none and untouched buffers).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <grpo/distributed.hpp>

#include "dist/thread_communicator.hpp"
#include "fuzz_input.hpp"

namespace {

using namespace fuzz;
using grpo::index_t;

std::string strf(const char* fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

template <class T>
const char* tname() {
    return sizeof(T) == 8 ? "double" : "float";
}

// ---------------------------------------------------------------------------------------------------------
// Ranks as threads, every gather through a rendezvous that turns a deadlock into a finding

/// Thrown inside a rank's gather once the ranks can never meet again (or a gather would read past a buffer):
/// unwinds every rank, so that the harness reports instead of hanging.
struct rank_abort {};

class rendezvous {
public:
    explicit rendezvous(int size)
        : calls_(static_cast<std::size_t>(size), 0),
          bytes_(static_cast<std::size_t>(size), 0),
          left_(static_cast<std::size_t>(size), 0) {}

    /// Rank `rank` enters its next gather with `bytes`; returns once every rank is in the same gather.
    void arrive(int rank, std::size_t bytes) {
        std::unique_lock<std::mutex> lock(m_);
        const auto me = static_cast<std::size_t>(rank);
        const long k = ++calls_[me];
        bytes_[me] = bytes;
        cv_.notify_all();
        for (;;) {
            if (broken_) throw rank_abort{};
            bool all_here = true;
            for (std::size_t r = 0; r < calls_.size(); ++r) {
                if (r == me || calls_[r] >= k) continue;
                if (left_[r])
                    fail("rank-hang",
                         strf("rank %d waits in its gather #%ld (%zu bytes) but rank %zu already returned or threw "
                              "after %ld gathers",
                              rank, k, bytes, r, calls_[r]));
                all_here = false;
            }
            if (all_here) break;
            cv_.wait(lock);
        }
        // (A peer cannot be past gather k yet: it needs this rank in the transport's gather k first.)
        for (std::size_t r = 0; r < calls_.size(); ++r)
            if (bytes_[r] != bytes)
                fail("gather-bytes-mismatch", strf("gather #%ld: rank %d sends %zu bytes, rank %zu sends %zu bytes", k,
                                                   rank, bytes, r, bytes_[r]));
    }
    void leave(int rank) {
        const std::lock_guard<std::mutex> lock(m_);
        left_[static_cast<std::size_t>(rank)] = 1;
        cv_.notify_all();
    }
    bool broken() const { return broken_; }
    const std::string& tag() const { return tag_; }
    const std::string& what() const { return what_; }

private:
    [[noreturn]] void fail(const char* tag, const std::string& what) {
        if (!broken_) {
            broken_ = true;
            tag_ = tag;
            what_ = what;
        }
        cv_.notify_all();
        throw rank_abort{};
    }

    std::mutex m_;
    std::condition_variable cv_;
    std::vector<long> calls_;
    std::vector<std::size_t> bytes_;
    std::vector<char> left_;
    bool broken_ = false;
    std::string tag_, what_;
};

/// A thread_group rank whose gathers meet in the rendezvous first.
class checked_comm {
public:
    checked_comm(const dist_cases::thread_group::communicator& c, rendezvous& rv) : c_(c), rv_(&rv) {}
    int rank() const noexcept { return c_.rank(); }
    int size() const noexcept { return c_.size(); }
    void all_gather(const void* send, std::size_t bytes, void* recv) const {
        rv_->arrive(c_.rank(), bytes);
        c_.all_gather(send, bytes, recv);
    }

private:
    dist_cases::thread_group::communicator c_;
    rendezvous* rv_;
};

struct rank_result {
    enum kind_t { returned, error, aborted, bad_alloc, foreign } kind = returned;
    grpo::errc code = grpo::errc::ok;
    std::string message;
};

/// "rank k: message" -> k and "message"; -1 and the message unchanged without the prefix.
int strip_rank(const std::string& m, std::string* rest) {
    std::size_t p = 5;
    if (m.compare(0, 5, "rank ") == 0) {
        while (p < m.size() && std::isdigit(static_cast<unsigned char>(m[p]))) ++p;
        if (p > 5 && m.compare(p, 2, ": ") == 0) {
            *rest = m.substr(p + 2);
            return std::atoi(m.c_str() + 5);
        }
    }
    *rest = m;
    return -1;
}

/// Runs f(comm) on `size` ranks; the generic oracles (no hang, grpo::error only, all or none, the same error
/// everywhere). Returns true when every rank returned, false when every rank threw grpo::error (rank 0's in
/// *first_error).
template <class F>
bool run_ranks(const char* what, int size, F&& f, rank_result* first_error = nullptr, const char* tag_suffix = "") {
    std::vector<rank_result> res(static_cast<std::size_t>(size));
    rendezvous rv(size);
    dist_cases::thread_group group(size);
    group.run([&](const dist_cases::thread_group::communicator& c) {
        const checked_comm comm(c, rv);
        rank_result& out = res[static_cast<std::size_t>(c.rank())];
        try {
            f(comm);
        } catch (const rank_abort&) {
            out.kind = rank_result::aborted;
        } catch (const grpo::error& e) {
            out.kind = rank_result::error;
            out.code = e.code();
            out.message = e.what();
        } catch (const std::bad_alloc&) {
            out.kind = rank_result::bad_alloc;
        } catch (const std::exception& e) {
            out.kind = rank_result::foreign;
            out.message = e.what();
        } catch (...) {
            out.kind = rank_result::foreign;
        }
        rv.leave(c.rank());
    });
    if (rv.broken()) {
        // Name what the rank that left threw: a local scratch allocation that failed on one rank alone
        // (errc::out_of_memory outside the collective error agreement) gets a tag of its own.
        std::string left;
        bool oom = false;
        for (int r = 0; r < size; ++r) {
            const rank_result& x = res[static_cast<std::size_t>(r)];
            if (x.kind == rank_result::error) {
                left += strf(" | rank %d threw errc %d: %s", r, int(x.code), x.message.c_str());
                oom = oom || x.code == grpo::errc::out_of_memory;
            }
        }
        const std::string tag = (rv.tag() == "rank-hang" && oom ? "rank-hang-oom" : rv.tag()) + tag_suffix;
        finding(tag.c_str(), "%s, %d ranks: %s%s", what, size, rv.what().c_str(), left.c_str());
    }
    int errors = 0, returned = -1, threw = -1;
    for (int r = 0; r < size; ++r) {
        const rank_result& x = res[static_cast<std::size_t>(r)];
        if (x.kind == rank_result::bad_alloc)
            finding("bad-alloc", "%s: rank %d threw std::bad_alloc (the library promises grpo::error)", what, r);
        if (x.kind == rank_result::foreign)
            finding("foreign-exception", "%s: rank %d threw a non-grpo exception: %s", what, r, x.message.c_str());
        if (x.kind == rank_result::error) {
            if (x.code == grpo::errc::ok)
                finding("errc-ok", "%s: rank %d threw errc::ok: %s", what, r, x.message.c_str());
            ++errors;
            threw = r;
        } else {
            returned = r;
        }
    }
    if (errors != 0 && errors != size)
        finding("partial-throw", "%s, %d ranks: rank %d threw (%s) but rank %d returned", what, size, threw,
                res[static_cast<std::size_t>(threw)].message.c_str(), returned);
    if (errors == 0) return true;
    // Every rank threw: the lowest failing rank's error, "rank k: " in front of it on the other ranks.
    // (Errors of local scratch allocations that each rank raised on its own get a tag of their own.)
    std::string base, rest;
    (void)strip_rank(res[0].message, &base);
    int named_any = -1;
    bool oom = false;
    for (const rank_result& x : res) oom = oom || x.code == grpo::errc::out_of_memory;
    for (int r = 0; r < size; ++r) {
        const rank_result& x = res[static_cast<std::size_t>(r)];
        const int named = strip_rank(x.message, &rest);
        if (x.code != res[0].code || rest != base)
            finding(oom ? "error-across-ranks-oom" : "error-across-ranks",
                    "%s: rank 0 threw errc %d (%s), rank %d errc %d (%s)", what, int(res[0].code),
                    res[0].message.c_str(), r, int(x.code), x.message.c_str());
        if (named == r || named >= size || (named >= 0 && named_any >= 0 && named != named_any))
            finding("error-across-ranks", "%s: rank %d's error names rank %d: %s", what, r, named, x.message.c_str());
        if (named >= 0) named_any = named;
    }
    if (named_any >= 0 && strip_rank(res[static_cast<std::size_t>(named_any)].message, &rest) >= 0)
        finding("error-across-ranks", "%s: the ranks name rank %d, whose own error names a rank: %s", what, named_any,
                res[static_cast<std::size_t>(named_any)].message.c_str());
    if (first_error != nullptr) *first_error = res[0];
    return false;
}

// ---------------------------------------------------------------------------------------------------------
// Arrays: one view of one rank over a buffer with garbage between the view's elements

template <class E>
E garbage_value(std::size_t k) {
    if constexpr (std::is_floating_point<E>::value) {
        const double g[] = {std::numeric_limits<double>::quiet_NaN(),
                            std::numeric_limits<double>::infinity(),
                            -std::numeric_limits<double>::infinity(),
                            3e38,
                            -1e38,
                            0.5};
        return E(g[k % 6]);
    } else if constexpr (sizeof(E) == 1) {
        return E(0xA5);
    } else {
        const std::int64_t g[] = {-7, std::int64_t(1) << 40, -1, std::numeric_limits<std::int64_t>::max()};
        return E(g[k % 4]);
    }
}

/// A matrix view [rows, cols] (a vector view: cols = 1, stride rs) over `store` (its own buffer unless an
/// output was placed over another array of the same rank).
template <class E>
struct arr {
    bool present = false;
    layout L;
    std::vector<E> own;
    std::vector<E>* store = nullptr;

    std::size_t off(std::int64_t i, std::int64_t t) const {
        return static_cast<std::size_t>(L.offset + i * L.rs + t * L.cs);
    }
    E& at(std::int64_t i, std::int64_t t = 0) const { return (*store)[off(i, t)]; }
    E* base() const { return store->data() + L.offset; }
    bool nonempty() const { return present && L.rows > 0 && L.cols > 0; }
    std::int64_t rows() const { return present ? L.rows : 0; }
    grpo::matrix_view<const E> cm() const {
        return present ? grpo::matrix_view<const E>(base(), L.rows, L.cols, L.rs, L.cs) : grpo::matrix_view<const E>();
    }
    grpo::matrix_view<E> wm() const {
        return present ? grpo::matrix_view<E>(base(), L.rows, L.cols, L.rs, L.cs) : grpo::matrix_view<E>();
    }
    grpo::vector_view<const E> cv() const {
        return present ? grpo::vector_view<const E>(base(), L.rows, L.rs) : grpo::vector_view<const E>();
    }
    grpo::vector_view<E> wv() const {
        return present ? grpo::vector_view<E>(base(), L.rows, L.rs) : grpo::vector_view<E>();
    }
};

/// The byte range a present, non-empty view touches (grpo's aliasing rule works on these).
struct brange {
    std::uintptr_t lo = 0, hi = 0;
    bool overlaps(const brange& o) const { return lo < o.hi && o.lo < hi; }
};
template <class E>
brange range_of(const arr<E>& a) {
    if (!a.nonempty()) return {};
    const auto lo = reinterpret_cast<std::uintptr_t>(a.base());
    const auto span = static_cast<std::uintptr_t>((a.L.rows - 1) * a.L.rs + (a.L.cols - 1) * a.L.cs + 1);
    return {lo, lo + span * sizeof(E)};
}

layout contiguous_layout(std::int64_t rows, std::int64_t cols) {
    layout L;
    L.rows = rows;
    L.cols = cols;
    L.rs = cols;
    L.cs = 1;
    L.span = span_of(rows, cols, L.rs, L.cs, 0);
    return L;
}

/// Whether a writable view may have this layout (the view constructor's rules), and fits a buffer.
bool writable_ok(const layout& L) {
    if (!L.backed) return false;
    static double dummy[1];
    try {
        (void)grpo::matrix_view<double>(dummy, L.rows, L.cols, L.rs, L.cs);
        return true;
    } catch (const grpo::error&) {
        return false;
    }
}

layout matrix_layout(fuzz_input& in, std::int64_t rows, std::int64_t cols, bool read_only) {
    layout L = draw_layout(in, rows, cols, read_only, false);
    if (!read_only && !writable_ok(L)) L = contiguous_layout(rows, cols);
    if (!L.backed) L = contiguous_layout(rows, cols);
    return L;
}

layout vector_layout(fuzz_input& in, std::int64_t n, bool read_only) {
    layout L;
    L.rows = n;
    L.cols = 1;
    L.cs = 1;
    const std::uint8_t k = in.u8() % 8;
    L.rs = k < 5 ? 1 : k == 5 ? 2 : k == 6 ? 3 : (read_only ? 0 : 1);
    L.offset = in.chance(40) ? std::int64_t(in.u8() % 3) : 0;
    L.span = span_of(n, 1, L.rs, 1, L.offset);
    if (L.span > kMaxElems) { // a huge extent: read-only views broadcast one element
        L.rs = 0;
        L.offset = 0;
        L.span = n > 0 ? 1 : 0;
        L.backed = read_only;
    }
    return L;
}

/// The buffer of a view: its span + 2 guard elements, garbage (inputs) or the sentinel pattern (outputs).
template <class E>
void place(arr<E>& a, bool output) {
    const std::int64_t n = a.present ? std::int64_t(a.L.span) : 0;
    a.own.assign(static_cast<std::size_t>(n + 2), E());
    if (output) fill_sentinel(a.own.data(), a.own.size() * sizeof(E));
    else
        for (std::size_t k = 0; k < a.own.size(); ++k) a.own[k] = garbage_value<E>(k);
    a.store = &a.own;
}

/// Writes gen(i, t) at every element of the view (later elements win where a broadcast layout repeats one).
template <class E, class G>
void fill(arr<E>& a, G gen) {
    if (!a.present || a.L.rows <= 0 || a.L.cols <= 0) return;
    if (a.L.rows * a.L.cols > kMaxElems) { // hostile extents over one element
        a.own[a.off(0, 0)] = gen(0, 0);
        return;
    }
    for (std::int64_t i = 0; i < a.L.rows; ++i)
        for (std::int64_t t = 0; t < a.L.cols; ++t) a.own[a.off(i, t)] = gen(i, t);
}

/// The first element of `now`'s own buffer that differs from `before` outside the view (-1: none).
template <class E>
std::int64_t changed_outside(const arr<E>& now, const arr<E>& before) {
    std::vector<char> inside(now.own.size(), 0);
    if (now.store == &now.own && now.present && now.L.cols > 0 && now.L.rows * now.L.cols <= kMaxElems)
        for (std::int64_t i = 0; i < now.L.rows; ++i)
            for (std::int64_t t = 0; t < now.L.cols; ++t) inside[now.off(i, t)] = 1;
    for (std::size_t k = 0; k < now.own.size(); ++k)
        if (!inside[k] && std::memcmp(&now.own[k], &before.own[k], sizeof(E)) != 0) return std::int64_t(k);
    return -1;
}
template <class E>
bool same_bytes(const arr<E>& a, const arr<E>& b) {
    return a.own.size() == b.own.size() && std::memcmp(a.own.data(), b.own.data(), a.own.size() * sizeof(E)) == 0;
}
template <class E>
arr<E> copy_arr(const arr<E>& a) {
    arr<E> c = a;
    c.store = &c.own;
    return c;
}
template <class U, class E>
arr<U> convert_arr(const arr<E>& a) {
    arr<U> c;
    c.present = a.present;
    c.L = a.L;
    c.own.resize(a.own.size());
    for (std::size_t k = 0; k < a.own.size(); ++k) c.own[k] = static_cast<U>(a.own[k]);
    c.store = &c.own;
    return c;
}

/// True with probability about num/256, and false once the input is exhausted (reads past its end are zeros,
/// for which fuzz_input::chance is true): the rare faults and perturbations, so that a short input describes an
/// ordinary call. (Zero bytes mean "ordinary" in the value draws below too: unmasked tokens, full lengths.)
inline bool rare(fuzz_input& in, int num) { return in.u8() >= 256 - num; }

/// Rows per rank: as even as it gets, all on one rank, or uneven with empty ranks.
std::vector<std::int64_t> draw_split(fuzz_input& in, std::int64_t total, int size) {
    std::vector<std::int64_t> n(static_cast<std::size_t>(size), 0);
    const std::uint8_t k = in.u8() % 4;
    if (k == 0) {
        for (int r = 0; r < size; ++r) n[static_cast<std::size_t>(r)] = total * (r + 1) / size - total * r / size;
    } else if (k == 1) {
        n[in.u8() % static_cast<unsigned>(size)] = total;
    } else {
        std::int64_t left = total;
        for (int r = 0; r + 1 < size; ++r) {
            n[static_cast<std::size_t>(r)] = in.range(0, left);
            left -= n[static_cast<std::size_t>(r)];
        }
        n[static_cast<std::size_t>(size - 1)] = left;
    }
    return n;
}

/// One more or one fewer row or column (never below 0: negative extents are the view constructors' business,
/// fuzz_views).
void wrong_shape(fuzz_input& in, std::int64_t& rows, std::int64_t& cols) {
    std::int64_t& x = in.flag() ? rows : cols;
    x += x > 0 && in.flag() ? -1 : 1;
}

/// Views are built on the main thread first: a view constructor that throws inside a rank (before the
/// collective) would be the harness's hang, not the library's.
template <class F>
bool views_constructible(F&& build_all) {
    try {
        build_all();
        return true;
    } catch (const grpo::error&) {
        return false;
    }
}

/// Extents for the hostile mode: so large that their sum over two ranks overflows (or no scratch can hold a
/// copy), legal on their own for views with zero columns or stride 0.
std::int64_t huge_rows(fuzz_input& in) {
    const std::int64_t v[] = {std::numeric_limits<std::int64_t>::max(),
                              std::numeric_limits<std::int64_t>::max() - 1,
                              std::int64_t(1) << 62,
                              (std::int64_t(1) << 62) + 1,
                              std::int64_t(1) << 61,
                              (std::int64_t(1) << 60) + 3,
                              std::int64_t(1) << 40,
                              std::int64_t(1) << 33};
    return v[in.u8() % 8];
}

std::string split_str(const std::vector<std::int64_t>& n) {
    std::string s;
    for (std::int64_t x : n) s += (s.empty() ? "" : "/") + std::to_string(x);
    return s;
}

/// The per-rank faults drawn, with what the API must do about them.
struct faults {
    std::string must_throw;  ///< a documented per-rank error (empty: none)
    std::string unchecked;   ///< a rank without rows by its primary input whose outputs have rows
    std::string split_only;  ///< a disagreement with no counterpart in one batch (no reference)
    bool mixed_type = false; ///< one rank calls with the other element type
    bool hostile = false;    ///< extents no reference call can take
    void must(const std::string& why) {
        if (must_throw.empty()) must_throw = why;
    }
    bool any() const {
        return !must_throw.empty() || !unchecked.empty() || !split_only.empty() || mixed_type || hostile;
    }
};

/// The throw/no-throw comparison with the one-process call (see the top of this file for the directions).
/// The tag of an output that differs from the one-process call: its own when the two differ only in the sign of
/// a zero (a layout-dependent -0, see the loss's grad_entropy), so that it can be skipped on its own.
inline const char* mismatch_tag(double a, double b) {
    return a == 0 && b == 0 ? "dist-vs-one-process-signed-zero" : "dist-vs-one-process";
}

/// "argument 'NAME'" of a grpo::error message, or "".
std::string argument_of(const std::string& message) {
    const std::size_t a = message.find("argument '");
    if (a == std::string::npos) return "";
    const std::size_t b = message.find('\'', a + 10);
    return b == std::string::npos ? "" : message.substr(a + 10, b - a - 10);
}

void compare_outcomes(const char* what, const faults& f, bool dist_ok, const rank_result& dist_err, const outcome& ref,
                      bool ref_exists, bool empty_batch) {
    // (A batch without elements gets tags of its own: every rank takes the "no rows" paths, and gathered
    // copies of nothing have no storage. Otherwise the tags name the argument the rejecting call named, so that
    // GRPO_FUZZ_SKIP can look past one known cause without hiding the others.)
    const std::string suffix = empty_batch ? "-empty" : "";
    const std::string accepted =
        "dist-accepted-what-one-process-rejects" + (empty_batch ? suffix : ":" + argument_of(ref.message));
    const std::string rejected =
        "dist-rejected-valid-batch" + (empty_batch ? suffix : ":" + argument_of(dist_err.message));
    if (verbose())
        std::fprintf(stderr, "  outcome: dist %s%s | one process %s%s\n",
                     dist_ok ? "ok" : "threw: ", dist_ok ? "" : dist_err.message.c_str(),
                     !ref_exists ? "not formed"
                     : ref.ok    ? "ok"
                                 : "threw: ",
                     ref_exists && !ref.ok ? ref.message.c_str() : "");
    if (dist_ok) {
        if (!f.must_throw.empty())
            finding("accepted-rank-fault", "%s accepted a per-rank fault: %s", what, f.must_throw.c_str());
        if (!f.unchecked.empty())
            finding("unchecked-rank-accepted",
                    "%s accepted a rank that holds no rows by its primary input but has views with rows: %s", what,
                    f.unchecked.c_str());
        if (ref_exists && !ref.ok)
            finding(accepted.c_str(), "%s succeeded; the one-process call on the concatenated batch threw errc %d: %s",
                    what, int(ref.code), ref.message.c_str());
        return;
    }
    if (!ref_exists || f.any()) return;
    if (ref.ok)
        finding(rejected.c_str(),
                "%s threw errc %d (%s) with no per-rank fault; the one-process call on the concatenated batch "
                "succeeded",
                what, int(dist_err.code), dist_err.message.c_str());
    if (ref.code != dist_err.code)
        finding(("errc-vs-one-process" + (empty_batch ? suffix : ":" + argument_of(ref.message))).c_str(),
                "%s threw errc %d (%s); the one-process call errc %d (%s)", what, int(dist_err.code),
                dist_err.message.c_str(), int(ref.code), ref.message.c_str());
}

// ---------------------------------------------------------------------------------------------------------
// Mode 0: dist::compute_advantages

template <class E>
struct adv_rank {
    std::int64_t rows = 0; ///< rows of the drawn split
    bool contiguous = true, use_ws = false;
    std::int64_t G = 1, num_groups = 0;
    arr<E> rew, adv;
    arr<std::int64_t> ids, cnt;
    arr<double> tw, mean, sd;
    arr<std::uint8_t> zv;
    int alias = 0; ///< 1 adv over rew, 2 mean over tw, 3 mean over sd, 4 count over ids

    void bind() {
        rew.store = &rew.own;
        adv.store = alias == 1 ? &rew.own : &adv.own;
        ids.store = &ids.own;
        cnt.store = alias == 4 ? &ids.own : &cnt.own;
        tw.store = &tw.own;
        mean.store = alias == 2 ? &tw.own : alias == 3 ? &sd.own : &mean.own;
        sd.store = &sd.own;
        zv.store = &zv.own;
    }
    std::int64_t n() const { return rew.rows(); } ///< rewards.size() as the call sees it
    grpo::groups groups() const {
        return contiguous ? grpo::groups::contiguous(G) : grpo::groups::by_id(ids.cv(), num_groups);
    }
    grpo::group_outputs outputs() const {
        grpo::group_outputs go;
        go.mean = mean.wv();
        go.std = sd.wv();
        go.zero_variance = zv.wv();
        go.count = cnt.wv();
        return go;
    }
};

template <class U, class E>
adv_rank<U> convert_rank(const adv_rank<E>& r) {
    adv_rank<U> c;
    c.rows = r.rows;
    c.contiguous = r.contiguous;
    c.use_ws = r.use_ws;
    c.G = r.G;
    c.num_groups = r.num_groups;
    c.rew = convert_arr<U>(r.rew);
    c.adv = convert_arr<U>(r.adv);
    c.ids = r.ids;
    c.cnt = r.cnt;
    c.tw = r.tw;
    c.mean = r.mean;
    c.sd = r.sd;
    c.zv = r.zv;
    c.alias = r.alias;
    return c;
}

template <class E>
void bytes_unchanged(const char* tag, const char* what, int r, const adv_rank<E>& now, const adv_rank<E>& before,
                     bool outputs_too) {
    auto chk = [&](const auto& a, const auto& b, const char* name) {
        if (!same_bytes(a, b)) finding(tag, "%s: rank %d's %s buffer changed", what, r, name);
    };
    chk(now.rew, before.rew, "rewards");
    chk(now.ids, before.ids, "groups.ids");
    chk(now.tw, before.tw, "token_weights");
    if (outputs_too) {
        chk(now.adv, before.adv, "advantages");
        chk(now.mean, before.mean, "group_outputs.mean");
        chk(now.sd, before.sd, "group_outputs.std");
        chk(now.zv, before.zv, "group_outputs.zero_variance");
        chk(now.cnt, before.cnt, "group_outputs.count");
    } else {
        auto out = [&](const auto& a, const auto& b, const char* name) {
            const std::int64_t k = changed_outside(a, b);
            if (k >= 0)
                finding("write-outside-view", "%s: rank %d's %s buffer element %lld written", what, r, name,
                        (long long)k);
        };
        out(now.adv, before.adv, "advantages");
        out(now.mean, before.mean, "group_outputs.mean");
        out(now.sd, before.sd, "group_outputs.std");
        out(now.zv, before.zv, "group_outputs.zero_variance");
        out(now.cnt, before.cnt, "group_outputs.count");
    }
}

bool same_stats(const grpo::advantage_stats& a, const grpo::advantage_stats& b, std::string* which) {
    const std::pair<const char*, bool> f[] = {
        {"num_groups", a.num_groups == b.num_groups},
        {"zero_variance_groups", a.zero_variance_groups == b.zero_variance_groups},
        {"zero_variance_fraction", bits_equal(a.zero_variance_fraction, b.zero_variance_fraction)},
        {"scored", a.scored == b.scored},
        {"reward_mean", bits_equal(a.reward_mean, b.reward_mean)},
        {"reward_std", bits_equal(a.reward_std, b.reward_std)},
        {"advantage_mean", bits_equal(a.advantage_mean, b.advantage_mean)},
        {"advantage_std", bits_equal(a.advantage_std, b.advantage_std)},
        {"advantage_min", bits_equal(a.advantage_min, b.advantage_min)},
        {"advantage_max", bits_equal(a.advantage_max, b.advantage_max)}};
    for (const auto& x : f)
        if (!x.second) {
            *which = x.first;
            return false;
        }
    return true;
}

template <class T>
void run_advantages(fuzz_input& in, int size) {
    using U = std::conditional_t<std::is_same<T, double>::value, float, double>;
    const char* what = "dist::compute_advantages";
    grpo::advantage_config cfg;
    cfg.estimator = in.enum_value<grpo::advantage_estimator>(grpo::advantage_estimator_count);
    cfg.std = in.enum_value<grpo::std_estimator>(2);
    cfg.epsilon = in.config_double({1e-4, 1e-6, 0.0, 1e-9, 1.0});
    cfg.singleton = in.enum_value<grpo::singleton_group>(2);
    cfg.nan = in.enum_value<grpo::nan_rewards>(2);
    cfg.whiten_epsilon = in.config_double({1e-8, 0.0, 1.0});
    cfg.variance_floor = in.config_double({0.0, 0.0, 1e-6, 1.0});
    cfg.passk_scale_by_std = in.flag();

    const std::int64_t total = in.u8() < 230 ? in.range(0, 24) : in.range(25, 300);
    const std::vector<std::int64_t> split = draw_split(in, total, size);
    const bool contiguous = in.chance(150);
    std::int64_t G = 1, num_groups = 0;
    if (contiguous) {
        const std::uint8_t g = in.u8();
        G = g < 200 ? in.range(1, 8) : g < 235 ? in.range(-2, 30) : (hostile_enabled() ? in.hostile_size() : 1);
        if (g < 200 && total > 0 && total % G != 0 && in.chance(200)) G = 1; // mostly a divisor of the batch
    } else {
        const std::uint8_t g = in.u8();
        num_groups = g < 230 ? in.range(0, 8) : (hostile_enabled() ? in.hostile_size() : 0);
    }
    const bool reads_weights = grpo::detail::uses_token_weights(cfg.estimator);
    const bool with_weights = in.chance(reads_weights ? 220 : 30);
    const bool tame = in.chance(140), nan_rewards = rare(in, 60), inf_rewards = rare(in, 8);
    T pal[8];
    for (T& p : pal) {
        const std::uint8_t c = in.u8();
        p = c < 40 ? T(int(c % 3)) : T(in.value(tame, false, 3.0));
    }
    const std::int64_t id_hi = std::min<std::int64_t>(std::max<std::int64_t>(num_groups, 1), 1 << 20) - 1;

    faults f;
    std::vector<adv_rank<T>> ranks(static_cast<std::size_t>(size));
    for (int r = 0; r < size; ++r) {
        adv_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        R.rows = split[static_cast<std::size_t>(r)];
        R.use_ws = in.flag();
        R.contiguous = contiguous;
        R.G = G;
        R.num_groups = num_groups;
        bool weights = with_weights;
        if (rare(in, 6)) { // this rank disagrees on the layout or the weights
            switch (in.u8() % 3) {
            case 0: R.contiguous = !R.contiguous; break;
            case 1: {
                const std::int64_t d = in.flag() ? 1 : -1;
                if (R.G > -(std::int64_t(1) << 40) && R.G < (std::int64_t(1) << 40)) R.G += d;
                if (R.num_groups > -(std::int64_t(1) << 40) && R.num_groups < (std::int64_t(1) << 40))
                    R.num_groups += d;
                break;
            }
            default: weights = !weights; break;
            }
        }
        auto sz = [&]() { return rare(in, 6) ? std::max<std::int64_t>(0, R.rows + (in.flag() ? 1 : -1)) : R.rows; };
        R.rew.present = !rare(in, 8);
        R.rew.L = vector_layout(in, sz(), true);
        R.adv.present = !rare(in, 8);
        R.adv.L = vector_layout(in, sz(), false);
        R.ids.present = !R.contiguous && !rare(in, 6);
        R.ids.L = vector_layout(in, sz(), true);
        R.tw.present = weights;
        R.tw.L = vector_layout(in, sz(), true);
        place(R.rew, false);
        place(R.adv, true);
        place(R.ids, false);
        place(R.tw, false);
        fill(R.rew, [&](std::int64_t, std::int64_t) {
            const std::uint8_t c = in.u8();
            return nan_rewards && c >= 226   ? std::numeric_limits<T>::quiet_NaN()
                   : inf_rewards && c >= 222 ? std::numeric_limits<T>::infinity()
                                             : pal[c % 8];
        });
        fill(R.ids, [&](std::int64_t, std::int64_t) {
            const std::uint8_t c = in.u8();
            return c < 248 ? in.range(0, std::max<std::int64_t>(id_hi, 0)) : c < 252 ? num_groups : in.hostile_size();
        });
        fill(R.tw, [&](std::int64_t, std::int64_t) {
            const std::uint8_t c = in.u8();
            return c < 200 ? double(c % 9) : c < 245 ? in.moderate(4.0) : in.value(false, true);
        });
    }

    // The batch the ranks describe, and the library's documented rules: the layout, group size and weights of
    // the ranks with rows (rank 0's when none has rows) must agree; every rank's per-group outputs hold every
    // group; each rank's sizes agree and its outputs overlap none of its inputs.
    std::int64_t whole_n = 0;
    int first = -1;
    for (int r = 0; r < size; ++r) {
        const adv_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        whole_n += R.n();
        if (R.n() > 0 && first < 0) first = r;
    }
    const adv_rank<T>& F = ranks[static_cast<std::size_t>(first < 0 ? 0 : first)];
    const bool eff_contiguous = F.contiguous, eff_weights = F.tw.present;
    const std::int64_t eff_G = F.G, eff_num_groups = F.num_groups;
    for (int r = 0; r < size; ++r) {
        const adv_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        if (R.n() > 0 &&
            (R.contiguous != eff_contiguous || (R.contiguous ? R.G != eff_G : R.num_groups != eff_num_groups) ||
             R.tw.present != eff_weights))
            f.must(strf("rank %d disagrees with rank %d on the groups or the weights", r, first));
    }
    const std::int64_t k = eff_contiguous ? (eff_G > 0 ? whole_n / eff_G : 0) : eff_num_groups;

    // Per-group outputs (sized for the whole batch), aliasing, the other element type on one rank.
    for (int r = 0; r < size; ++r) {
        adv_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        const bool can = k >= 0 && k <= (1 << 16);
        auto group_out = [&](auto& a) {
            a.present = can && in.chance(90);
            const std::int64_t kk = can && rare(in, 6) ? std::max<std::int64_t>(0, k + (in.flag() ? 1 : -1)) : k;
            a.L = vector_layout(in, a.present ? kk : 0, false);
            place(a, true);
        };
        group_out(R.mean);
        group_out(R.sd);
        group_out(R.zv);
        group_out(R.cnt);
        if (rare(in, 12)) {
            const int a = 1 + in.u8() % 4;
            const bool ok = a == 1   ? R.rew.present && R.adv.present && writable_ok(R.rew.L)
                            : a == 2 ? R.tw.present && R.mean.present && writable_ok(R.tw.L)
                            : a == 3 ? R.sd.present && R.mean.present
                                     : R.ids.present && R.cnt.present && writable_ok(R.ids.L);
            if (ok) {
                R.alias = a;
                auto& out = a == 1 ? R.adv.L : a == 4 ? R.cnt.L : R.mean.L;
                out = a == 1 ? R.rew.L : a == 2 ? R.tw.L : a == 3 ? R.sd.L : R.ids.L;
            }
        }
        R.bind();
    }
    for (int r = 0; r < size; ++r) { // (after the aliasing, which moves outputs)
        const adv_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        if (R.adv.rows() != R.n())
            f.must(strf("rank %d: advantages size %lld, rewards %lld", r, (long long)R.adv.rows(), (long long)R.n()));
        if (R.contiguous && R.G < 1) f.must(strf("rank %d: group size %lld", r, (long long)R.G));
        if (!R.contiguous && R.ids.rows() != R.n()) f.must(strf("rank %d: ids size %lld", r, (long long)R.ids.rows()));
        if (R.tw.present && R.tw.rows() != R.n()) f.must(strf("rank %d: weights size %lld", r, (long long)R.tw.rows()));
        const auto size_fault = [&](const auto& a, const char* name) {
            if (a.present && a.L.rows != k)
                f.must(strf("rank %d: %s of size %lld for %lld groups", r, name, (long long)a.L.rows, (long long)k));
        };
        size_fault(R.mean, "group_outputs.mean");
        size_fault(R.sd, "group_outputs.std");
        size_fault(R.zv, "group_outputs.zero_variance");
        size_fault(R.cnt, "group_outputs.count");
        const brange outs[] = {range_of(R.adv), range_of(R.mean), range_of(R.sd), range_of(R.zv), range_of(R.cnt)};
        const brange ins[] = {range_of(R.rew), R.contiguous ? brange{} : range_of(R.ids), range_of(R.tw)};
        for (std::size_t o = 0; o < 5; ++o) {
            for (const brange& x : ins)
                if (outs[o].overlaps(x)) f.must(strf("rank %d: an output overlaps an input", r));
            for (std::size_t p = 0; p < o; ++p)
                if (outs[o].overlaps(outs[p])) f.must(strf("rank %d: two outputs overlap", r));
        }
    }
    int odd = -1;
    adv_rank<U> odd_rank;
    if (rare(in, 5)) {
        odd = in.u8() % size;
        odd_rank = convert_rank<U>(ranks[static_cast<std::size_t>(odd)]);
        odd_rank.bind();
        f.mixed_type = true;
    }
    if (verbose())
        std::fprintf(stderr,
                     "%s<%s> ranks %d split %s (as passed: whole %lld) %s G %lld num_groups %lld weights %d est %d "
                     "nan %d odd rank %d | must throw: %s\n",
                     what, tname<T>(), size, split_str(split).c_str(), (long long)whole_n,
                     contiguous ? "contiguous" : "by_id", (long long)G, (long long)num_groups, with_weights,
                     int(cfg.estimator), int(cfg.nan), odd, f.must_throw.c_str());

    // The one-process call on the concatenated batch.
    const bool ref_exists = !f.mixed_type && whole_n <= kMaxElems;
    outcome ref;
    std::vector<T> r_all(static_cast<std::size_t>(whole_n + 1)), a_all(r_all.size());
    const bool go_ok = k >= 0 && k <= (1 << 16);
    std::vector<std::int64_t> ids_all(r_all.size()), c_all(static_cast<std::size_t>(go_ok ? k + 1 : 1));
    std::vector<double> w_all(r_all.size()), m_all(c_all.size()), s_all(c_all.size());
    std::vector<std::uint8_t> z_all(c_all.size());
    grpo::advantage_stats ref_st;
    if (ref_exists) {
        std::int64_t o = 0;
        for (const adv_rank<T>& R : ranks) {
            for (std::int64_t i = 0; i < R.n(); ++i) {
                const auto at = static_cast<std::size_t>(o + i);
                r_all[at] = R.rew.at(i);
                if (!eff_contiguous && R.ids.rows() == R.n()) ids_all[at] = R.ids.at(i);
                if (eff_weights && R.tw.present && R.tw.rows() == R.n()) w_all[at] = R.tw.at(i);
            }
            o += R.n();
        }
        ref = call_checked("compute_advantages (one process)", [&] {
            const grpo::groups g =
                eff_contiguous ? grpo::groups::contiguous(eff_G)
                               : grpo::groups::by_id(grpo::vector_view<const std::int64_t>(ids_all.data(), whole_n),
                                                     eff_num_groups);
            grpo::group_outputs go;
            if (go_ok) {
                go.mean = grpo::vector_view<double>(m_all.data(), k);
                go.std = grpo::vector_view<double>(s_all.data(), k);
                go.zero_variance = grpo::vector_view<std::uint8_t>(z_all.data(), k);
                go.count = grpo::vector_view<std::int64_t>(c_all.data(), k);
            }
            ref_st = grpo::compute_advantages(grpo::exec::host{}, grpo::vector_view<const T>(r_all.data(), whole_n), g,
                                              grpo::vector_view<T>(a_all.data(), whole_n), cfg, go,
                                              eff_weights ? grpo::vector_view<const double>(w_all.data(), whole_n)
                                                          : grpo::vector_view<const double>());
        });
    }

    // The dist call.
    if (!views_constructible([&] {
            for (const adv_rank<T>& R : ranks)
                (void)R.rew.cv(), (void)R.adv.wv(), (void)R.groups(), (void)R.outputs(), (void)R.tw.cv();
            if (odd >= 0) (void)odd_rank.rew.cv(), (void)odd_rank.adv.wv(), (void)odd_rank.outputs();
        }))
        return;
    const std::vector<adv_rank<T>> before = ranks;
    const adv_rank<U> odd_before = odd_rank;
    std::vector<grpo::advantage_stats> st(static_cast<std::size_t>(size));
    rank_result err;
    const bool ok = run_ranks(
        what, size,
        [&](const checked_comm& comm) {
            const int r = comm.rank();
            auto call = [&](const auto& R) {
                grpo::workspace ws;
                st[static_cast<std::size_t>(r)] =
                    R.use_ws ? grpo::dist::compute_advantages(comm, grpo::exec::host{}, R.rew.cv(), R.groups(),
                                                              R.adv.wv(), cfg, ws, R.outputs(), R.tw.cv())
                             : grpo::dist::compute_advantages(comm, grpo::exec::host{}, R.rew.cv(), R.groups(),
                                                              R.adv.wv(), cfg, R.outputs(), R.tw.cv());
            };
            if (r == odd) call(odd_rank);
            else call(ranks[static_cast<std::size_t>(r)]);
        },
        &err, f.mixed_type ? "-mixed-type" : "");
    if (verbose() && !ok) std::fprintf(stderr, "  dist threw: %s\n", err.message.c_str());

    for (int r = 0; r < size; ++r) {
        if (r == odd) {
            const adv_rank<U>& R = odd_rank;
            bytes_unchanged(ok ? "input-modified" : "error-wrote-output", what, r, R, odd_before, !ok);
        } else {
            bytes_unchanged(ok ? "input-modified" : "error-wrote-output", what, r, ranks[static_cast<std::size_t>(r)],
                            before[static_cast<std::size_t>(r)], !ok);
        }
    }
    compare_outcomes(what, f, ok, err, ref, ref_exists, whole_n == 0);
    if (!ok) return;
    std::string which;
    for (int r = 1; r < size; ++r)
        if (!same_stats(st[static_cast<std::size_t>(r)], st[0], &which))
            finding("stats-across-ranks", "%s: rank %d's stats.%s differ from rank 0's", what, r, which.c_str());
    if (!ref_exists || !ref.ok) return;
    if (!same_stats(st[0], ref_st, &which))
        finding("dist-vs-one-process", "%s<%s>, %d ranks (%s): stats.%s differ from the one-process call", what,
                tname<T>(), size, split_str(split).c_str(), which.c_str());
    std::int64_t o = 0;
    for (int r = 0; r < size; ++r) {
        const adv_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        for (std::int64_t i = 0; i < R.n(); ++i)
            if (!bits_equal(R.adv.at(i), a_all[static_cast<std::size_t>(o + i)]))
                finding(mismatch_tag(double(R.adv.at(i)), double(a_all[static_cast<std::size_t>(o + i)])),
                        "%s<%s>, %d ranks (%s): rank %d advantages[%lld] %.17g, one process %.17g", what, tname<T>(),
                        size, split_str(split).c_str(), r, (long long)i, double(R.adv.at(i)),
                        double(a_all[static_cast<std::size_t>(o + i)]));
        o += R.n();
        for (std::int64_t j = 0; j < k; ++j) {
            const auto u = static_cast<std::size_t>(j);
            if ((R.mean.present && !bits_equal(R.mean.at(j), m_all[u])) ||
                (R.sd.present && !bits_equal(R.sd.at(j), s_all[u])) || (R.zv.present && R.zv.at(j) != z_all[u]) ||
                (R.cnt.present && R.cnt.at(j) != c_all[u]))
                finding("dist-vs-one-process", "%s<%s>: rank %d group %lld outputs differ from the one-process call",
                        what, tname<T>(), r, (long long)j);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Mode 1: dist::token_advantages

enum tok_id { K_REW, K_MASK, K_BASE, K_OLD, K_SPI, K_ISW, K_ADV, K_RET, K_N };
const char* const tok_name[K_N] = {"rewards",        "mask",       "baselines",  "old_logp",
                                   "sum_pi_squared", "is_weights", "advantages", "returns"};

template <class E>
struct tok_rank {
    std::int64_t rows = 0, cols = 0;
    arr<E> a[K_N]; // K_BASE: a vector
    arr<std::int64_t> ids;
    bool by_id = false, use_ws = false;
    std::int64_t G = 1, num_groups = 0;
    int alias[K_N] = {-1, -1, -1, -1, -1, -1, -1, -1};

    void bind() {
        for (int k = 0; k < K_N; ++k) a[k].store = alias[k] >= 0 ? &a[alias[k]].own : &a[k].own;
        ids.store = &ids.own;
    }
    std::int64_t n() const { return a[K_REW].rows(); } ///< the rows the library sees
    grpo::token_advantage_inputs<E> inputs() const {
        grpo::token_advantage_inputs<E> in;
        in.rewards = a[K_REW].cm();
        in.mask = a[K_MASK].cm();
        in.baselines = a[K_BASE].cv();
        in.prompts = by_id ? grpo::groups::by_id(ids.cv(), num_groups) : grpo::groups::contiguous(G);
        in.old_logp = a[K_OLD].cm();
        in.sum_pi_squared = a[K_SPI].cm();
        in.is_weights = a[K_ISW].cm();
        return in;
    }
    grpo::token_advantage_outputs<E> outputs() const { return {a[K_ADV].wm(), a[K_RET].wm()}; }
};

template <class U, class E>
tok_rank<U> convert_rank(const tok_rank<E>& r) {
    tok_rank<U> c;
    c.rows = r.rows;
    c.cols = r.cols;
    for (int k = 0; k < K_N; ++k) c.a[k] = convert_arr<U>(r.a[k]);
    c.ids = r.ids;
    c.by_id = r.by_id;
    c.use_ws = r.use_ws;
    c.G = r.G;
    c.num_groups = r.num_groups;
    for (int k = 0; k < K_N; ++k) c.alias[k] = r.alias[k];
    return c;
}

template <class E>
void bytes_unchanged(const char* what, int r, const tok_rank<E>& now, const tok_rank<E>& before, bool ok) {
    for (int k = 0; k < K_N; ++k) {
        if (!ok || k < K_ADV) {
            if (!same_bytes(now.a[k], before.a[k]))
                finding(ok ? "input-modified" : "error-wrote-output", "%s: rank %d's %s buffer changed", what, r,
                        tok_name[k]);
        } else {
            const std::int64_t e = changed_outside(now.a[k], before.a[k]);
            if (e >= 0)
                finding("write-outside-view", "%s: rank %d's %s element %lld written", what, r, tok_name[k],
                        (long long)e);
        }
    }
    if (!same_bytes(now.ids, before.ids))
        finding(ok ? "input-modified" : "error-wrote-output", "%s: rank %d's ids changed", what, r);
}

bool same_stats(const grpo::token_advantage_stats& a, const grpo::token_advantage_stats& b, std::string* which) {
    const std::pair<const char*, double grpo::token_advantage_stats::*> f[] = {
        {"tokens", &grpo::token_advantage_stats::tokens},
        {"return_mean", &grpo::token_advantage_stats::return_mean},
        {"return_std", &grpo::token_advantage_stats::return_std},
        {"advantage_mean", &grpo::token_advantage_stats::advantage_mean},
        {"advantage_std", &grpo::token_advantage_stats::advantage_std},
        {"advantage_min", &grpo::token_advantage_stats::advantage_min},
        {"advantage_max", &grpo::token_advantage_stats::advantage_max}};
    for (const auto& x : f)
        if (!bits_equal(a.*x.second, b.*x.second)) {
            *which = strf("%s %.17g vs %.17g", x.first, a.*x.second, b.*x.second);
            return false;
        }
    return true;
}

template <class T>
void run_token_advantages(fuzz_input& in, int size) {
    using U = std::conditional_t<std::is_same<T, double>::value, float, double>;
    const char* what = "dist::token_advantages";
    grpo::token_advantage_config cfg;
    cfg.estimator = in.enum_value<grpo::token_estimator>(grpo::token_estimator_count);
    cfg.gamma = in.config_double({1.0, 0.99, 0.9, 0.0});
    cfg.whiten_epsilon = in.config_double({1e-8, 0.0, 1.0});
    cfg.otb_epsilon = in.config_double({1e-8, 0.0, 1.0});
    cfg.tail = in.enum_value<grpo::otb_tail>(3);
    const bool hostile = hostile_enabled() && rare(in, 6);
    std::int64_t total = in.u8() < 235 ? in.range(0, 12) : in.range(13, 48);
    const std::int64_t C = hostile ? 0 : in.range(0, 10);
    std::vector<std::int64_t> split = draw_split(in, total, size);
    faults f;
    f.hostile = hostile;
    if (hostile) { // rows with no columns: one rank, or two whose sum overflows
        split[in.u8() % static_cast<unsigned>(size)] = huge_rows(in);
        if (size > 1 && in.flag()) split[in.u8() % static_cast<unsigned>(size)] = huge_rows(in);
    }
    const bool by_id = in.flag();
    const std::int64_t num_groups = in.range(0, 4);
    const std::int64_t G = rare(in, 10) ? in.range(0, 7) : in.range(1, std::max<std::int64_t>(total, 1));
    const bool remax = cfg.estimator == grpo::token_estimator::remax, otb = cfg.optimal_baseline();
    const bool with[K_N] = {true,
                            true,
                            hostile || in.chance(remax ? 240 : 60),
                            in.chance(otb ? 240 : 60),
                            in.chance(otb ? 240 : 60),
                            in.chance(80),
                            true,
                            false};
    const bool tame = in.chance(170), nonfinite = rare(in, 20), in_range = in.chance(230);

    std::vector<tok_rank<T>> ranks(static_cast<std::size_t>(size));
    for (int r = 0; r < size; ++r) {
        tok_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        R.rows = split[static_cast<std::size_t>(r)];
        R.cols = C;
        R.by_id = by_id;
        R.G = G;
        R.num_groups = num_groups;
        R.use_ws = in.flag();
        bool present[K_N];
        for (int k = 0; k < K_N; ++k) present[k] = with[k];
        present[K_RET] = in.chance(120);
        const bool huge = R.rows > kMaxElems;
        if (!huge && rare(in, 8)) { // this rank's fault
            switch (in.u8() % 6) {
            case 0: R.cols += 1; break;                           // other columns
            case 1: present[K_REW + in.u8() % 2] = false; break;  // rewards or mask absent
            case 2: present[K_ADV] = false; break;                // advantages absent
            case 3: present[K_BASE + in.u8() % 4] ^= true; break; // optional input toggled
            case 4: R.by_id = !R.by_id; break;                    // other prompt layout
            default: R.G += 1, R.num_groups += 1; break;          // other prompt group count
            }
        }
        for (int k = 0; k < K_N; ++k) {
            arr<T>& A = R.a[k];
            A.present = present[k];
            std::int64_t rr = R.rows, cc = R.cols;
            if (!huge && rare(in, 5)) wrong_shape(in, rr, cc);
            if (k == K_BASE) {
                A.L = vector_layout(in, rr, true);
            } else if (huge) {
                A.L = contiguous_layout(rr, 0);
            } else {
                A.L = matrix_layout(in, rr, cc, k < K_ADV);
            }
            place(A, k >= K_ADV);
        }
        R.ids.present = R.by_id;
        R.ids.L = vector_layout(in, huge ? R.rows : R.rows + (rare(in, 5) ? 1 : 0), true);
        place(R.ids, false);
        fill(R.ids, [&](std::int64_t, std::int64_t) {
            return rare(in, 6) ? in.range(-1, num_groups + 1) : in.range(0, std::max<std::int64_t>(num_groups - 1, 0));
        });
        fill(R.a[K_MASK], [&](std::int64_t, std::int64_t) {
            const std::uint8_t m = in.u8();
            return m < 182 ? T(1) : m < 252 ? T(0) : T(in.value(false, true));
        });
        for (int k : {K_REW, K_BASE, K_OLD, K_SPI, K_ISW})
            fill(R.a[k], [&](std::int64_t, std::int64_t) {
                double v = in.value(tame, nonfinite, 2.0);
                if (in_range && k == K_OLD) v = -std::fabs(v);
                if (in_range && k == K_SPI) v = std::isfinite(v) ? std::fabs(std::sin(v)) : v;
                if (in_range && k == K_ISW) v = std::fabs(v);
                return T(v);
            });
        if (!huge && rare(in, 10)) { // an output over an input or the other output (same layout)
            const int out = in.flag() ? K_ADV : K_RET, target = in.u8() % K_N;
            if (target != out && target != K_BASE && R.a[out].present && R.a[target].present &&
                writable_ok(R.a[target].L)) {
                R.alias[out] = target;
                R.a[out].L = R.a[target].L;
            }
        }
    }
    for (tok_rank<T>& R : ranks) R.bind();

    // The library's rules: each rank with rows (rewards' rows) checks its views and aliasing; the ranks with
    // rows agree on the columns, the prompt layout and the optional inputs.
    std::int64_t whole_n = 0;
    bool overflow = false;
    int first = -1;
    for (int r = 0; r < size; ++r) {
        const tok_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        if (__builtin_add_overflow(whole_n, R.n(), &whole_n)) overflow = true;
        if (R.n() > 0 && first < 0) first = r;
    }
    if (overflow) f.must("the ranks' rows overflow");
    const tok_rank<T>& F = ranks[static_cast<std::size_t>(first < 0 ? 0 : first)];
    const std::int64_t eff_cols = F.a[K_REW].present ? F.a[K_REW].L.cols : 0;
    for (int r = 0; r < size; ++r) {
        const tok_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        const std::int64_t n = R.n(), c = R.a[K_REW].present ? R.a[K_REW].L.cols : 0;
        if (n == 0) { // (a view with rows beside rewards without any is left unread and unwritten)
            for (int k = K_MASK; k < K_N; ++k)
                if (R.a[k].present && R.a[k].L.rows > 0)
                    f.unchecked =
                        strf("rank %d: rewards %s, %s [%lld x %lld]", r, R.a[K_REW].present ? "empty" : "absent",
                             tok_name[k], (long long)R.a[k].L.rows, (long long)R.a[k].L.cols);
            if (R.by_id && R.ids.present && R.ids.L.rows > 0)
                f.unchecked =
                    strf("rank %d: rewards without rows, prompts.ids of size %lld", r, (long long)R.ids.L.rows);
            continue;
        }
        auto shape = [&](int k, bool required) {
            const arr<T>& A = R.a[k];
            if (!A.present) {
                if (required) f.must(strf("rank %d: %s absent", r, tok_name[k]));
                return;
            }
            if (k == K_BASE ? A.L.rows != n : (A.L.rows != n || A.L.cols != c))
                f.must(strf("rank %d: %s of the wrong shape", r, tok_name[k]));
        };
        shape(K_MASK, true);
        shape(K_ADV, true);
        for (int k : {K_BASE, K_OLD, K_SPI, K_ISW, K_RET}) shape(k, false);
        if (R.by_id && R.ids.rows() != n) f.must(strf("rank %d: prompts.ids of size %lld", r, (long long)R.ids.rows()));
        const brange outs[2] = {range_of(R.a[K_ADV]), range_of(R.a[K_RET])};
        if (outs[1].overlaps(outs[0])) f.must(strf("rank %d: the outputs overlap", r));
        for (const brange& o : outs) {
            for (int k = 0; k < K_ADV; ++k)
                if (o.overlaps(range_of(R.a[k]))) f.must(strf("rank %d: an output overlaps %s", r, tok_name[k]));
            if (R.by_id && o.overlaps(range_of(R.ids))) f.must(strf("rank %d: an output overlaps the ids", r));
        }
        if (c != eff_cols || R.by_id != F.by_id || (R.by_id ? R.num_groups != F.num_groups : R.G != F.G))
            f.must(strf("rank %d disagrees with rank %d on the columns or the prompts", r, first));
        for (int k : {K_BASE, K_OLD, K_SPI, K_ISW})
            if (R.a[k].present != F.a[k].present)
                f.must(strf("rank %d disagrees with rank %d on %s", r, first, tok_name[k]));
    }
    int odd = -1;
    tok_rank<U> odd_rank;
    if (!hostile && rare(in, 5)) {
        odd = in.u8() % size;
        odd_rank = convert_rank<U>(ranks[static_cast<std::size_t>(odd)]);
        odd_rank.bind();
        f.mixed_type = true;
    }
    if (verbose())
        std::fprintf(stderr,
                     "%s<%s> ranks %d split %s cols %lld est %d gamma %g %s G %lld groups %lld odd rank %d | must "
                     "throw: %s | unchecked: %s\n",
                     what, tname<T>(), size, split_str(split).c_str(), (long long)C, int(cfg.estimator), cfg.gamma,
                     by_id ? "by_id" : "contiguous", (long long)G, (long long)num_groups, odd, f.must_throw.c_str(),
                     f.unchecked.c_str());

    // The one-process call on the concatenated batch (present views even when it has no rows).
    const bool ref_exists =
        !f.mixed_type && !hostile && f.must_throw.empty() && whole_n * std::max<std::int64_t>(eff_cols, 1) <= kMaxElems;
    outcome ref;
    grpo::token_advantage_stats ref_st;
    const std::size_t cells = ref_exists ? static_cast<std::size_t>(whole_n * eff_cols) : 0;
    std::vector<std::vector<T>> whole(K_N, std::vector<T>(cells + 1));
    std::vector<T> base_all(ref_exists ? static_cast<std::size_t>(whole_n) + 1 : 1);
    std::vector<std::int64_t> ids_all(base_all.size());
    if (ref_exists) {
        std::int64_t o = 0;
        for (const tok_rank<T>& R : ranks) {
            for (std::int64_t i = 0; i < R.n(); ++i) {
                for (int k : {K_REW, K_MASK, K_OLD, K_SPI, K_ISW})
                    if (R.a[k].present)
                        for (std::int64_t t = 0; t < eff_cols; ++t)
                            whole[k][static_cast<std::size_t>((o + i) * eff_cols + t)] = R.a[k].at(i, t);
                if (R.a[K_BASE].present) base_all[static_cast<std::size_t>(o + i)] = R.a[K_BASE].at(i);
                if (R.by_id) ids_all[static_cast<std::size_t>(o + i)] = R.ids.at(i);
            }
            o += R.n();
        }
        ref = call_checked("token_advantages (one process)", [&] {
            auto m = [&](int k) { return grpo::matrix_view<const T>(whole[k].data(), whole_n, eff_cols); };
            grpo::token_advantage_inputs<T> wi;
            wi.rewards = m(K_REW);
            wi.mask = m(K_MASK);
            if (F.a[K_BASE].present) wi.baselines = grpo::vector_view<const T>(base_all.data(), whole_n);
            if (F.a[K_OLD].present) wi.old_logp = m(K_OLD);
            if (F.a[K_SPI].present) wi.sum_pi_squared = m(K_SPI);
            if (F.a[K_ISW].present) wi.is_weights = m(K_ISW);
            wi.prompts = F.by_id ? grpo::groups::by_id(grpo::vector_view<const std::int64_t>(ids_all.data(), whole_n),
                                                       F.num_groups)
                                 : grpo::groups::contiguous(F.G);
            grpo::token_advantage_outputs<T> wo;
            wo.advantages = grpo::matrix_view<T>(whole[K_ADV].data(), whole_n, eff_cols);
            wo.returns = grpo::matrix_view<T>(whole[K_RET].data(), whole_n, eff_cols);
            ref_st = grpo::token_advantages(grpo::exec::host{}, wi, wo, cfg);
        });
    }

    if (!views_constructible([&] {
            for (const tok_rank<T>& R : ranks) (void)R.inputs(), (void)R.outputs();
            if (odd >= 0) (void)odd_rank.inputs(), (void)odd_rank.outputs();
        }))
        return;
    const std::vector<tok_rank<T>> before = ranks;
    const tok_rank<U> odd_before = odd_rank;
    std::vector<grpo::token_advantage_stats> st(static_cast<std::size_t>(size));
    rank_result err;
    const bool ok = run_ranks(
        what, size,
        [&](const checked_comm& comm) {
            const int r = comm.rank();
            auto call = [&](const auto& R) {
                grpo::workspace ws;
                st[static_cast<std::size_t>(r)] =
                    R.use_ws ? grpo::dist::token_advantages(comm, grpo::exec::host{}, R.inputs(), R.outputs(), cfg, ws)
                             : grpo::dist::token_advantages(comm, grpo::exec::host{}, R.inputs(), R.outputs(), cfg);
            };
            if (r == odd) call(odd_rank);
            else call(ranks[static_cast<std::size_t>(r)]);
        },
        &err, f.mixed_type ? "-mixed-type" : "");
    if (verbose() && !ok) std::fprintf(stderr, "  dist threw: %s\n", err.message.c_str());
    for (int r = 0; r < size; ++r) {
        if (r == odd) bytes_unchanged(what, r, odd_rank, odd_before, ok);
        else bytes_unchanged(what, r, ranks[static_cast<std::size_t>(r)], before[static_cast<std::size_t>(r)], ok);
    }
    compare_outcomes(what, f, ok, err, ref, ref_exists, whole_n == 0 || eff_cols == 0);
    if (!ok) return;
    std::string which;
    for (int r = 1; r < size; ++r)
        if (!same_stats(st[static_cast<std::size_t>(r)], st[0], &which))
            finding("stats-across-ranks", "%s: rank %d's stats.%s differ from rank 0's", what, r, which.c_str());
    if (!ref_exists || !ref.ok) return;
    if (!same_stats(st[0], ref_st, &which))
        finding("dist-vs-one-process", "%s<%s>, %d ranks (%s), estimator %d: stats.%s (dist vs one process)", what,
                tname<T>(), size, split_str(split).c_str(), int(cfg.estimator), which.c_str());
    std::int64_t o = 0;
    for (int r = 0; r < size; ++r) {
        const tok_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        for (int k : {K_ADV, K_RET})
            if (R.a[k].present)
                for (std::int64_t i = 0; i < R.n(); ++i)
                    for (std::int64_t t = 0; t < eff_cols; ++t) {
                        const T want = whole[k][static_cast<std::size_t>((o + i) * eff_cols + t)];
                        if (!bits_equal(R.a[k].at(i, t), want))
                            finding(mismatch_tag(double(R.a[k].at(i, t)), double(want)),
                                    "%s<%s>, %d ranks (%s): rank %d %s(%lld, %lld) %.17g, one process %.17g", what,
                                    tname<T>(), size, split_str(split).c_str(), r, tok_name[k], (long long)i,
                                    (long long)t, double(R.a[k].at(i, t)), double(want));
                    }
        o += R.n();
    }
}

// ---------------------------------------------------------------------------------------------------------
// Mode 2: dist::loss_and_grad (then dist::count_tokens + dist::with_global_counts)

enum loss_id { L_LOGP, L_OLD, L_REF, L_ADV, L_MASK, L_SAMP, L_ENT, L_GRAD, L_PTL, L_RATIO, L_GENT, L_N };
const char* const loss_name[L_N] = {"logp",           "old_logp",      "ref_logp",    "advantages",
                                    "mask",           "sampling_logp", "entropy",     "grad_logp",
                                    "per_token_loss", "ratio",         "grad_entropy"};

template <class T>
struct loss_rank {
    std::int64_t rows = 0, cols = 0;
    arr<T> a[L_N];
    arr<std::int64_t> len;
    int alias[L_N] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    grpo::loss_config cfg;
    bool use_ws = false;

    void bind() {
        for (int k = 0; k < L_N; ++k) a[k].store = alias[k] >= 0 ? &a[alias[k]].own : &a[k].own;
        len.store = &len.own;
    }
    /// The rows the library sees (0 on an idle rank: logp absent or without rows).
    std::int64_t n() const { return a[L_LOGP].rows(); }
    grpo::loss_inputs<T> inputs() const {
        grpo::loss_inputs<T> in;
        in.logp = a[L_LOGP].cm();
        in.old_logp = a[L_OLD].cm();
        in.ref_logp = a[L_REF].cm();
        in.advantages = a[L_ADV].cm();
        in.mask = a[L_MASK].cm();
        in.lengths = len.cv();
        in.sampling_logp = a[L_SAMP].cm();
        in.entropy = a[L_ENT].cm();
        return in;
    }
    grpo::loss_outputs<T> outputs() const {
        grpo::loss_outputs<T> out;
        out.grad_logp = a[L_GRAD].wm();
        out.per_token_loss = a[L_PTL].wm();
        out.ratio = a[L_RATIO].wm();
        out.grad_entropy = a[L_GENT].wm();
        return out;
    }
};

const std::pair<const char*, double grpo::loss_stats::*> kLossFields[] = {
    {"loss", &grpo::loss_stats::loss},
    {"policy_loss", &grpo::loss_stats::policy_loss},
    {"kl_loss", &grpo::loss_stats::kl_loss},
    {"token_count", &grpo::loss_stats::token_count},
    {"clip_fraction_low", &grpo::loss_stats::clip_fraction_low},
    {"clip_fraction_high", &grpo::loss_stats::clip_fraction_high},
    {"clip_fraction_region", &grpo::loss_stats::clip_fraction_region},
    {"dual_clip_fraction", &grpo::loss_stats::dual_clip_fraction},
    {"ratio_mean", &grpo::loss_stats::ratio_mean},
    {"ratio_min", &grpo::loss_stats::ratio_min},
    {"ratio_max", &grpo::loss_stats::ratio_max},
    {"kl_mean", &grpo::loss_stats::kl_mean},
    {"approx_kl", &grpo::loss_stats::approx_kl},
    {"sampling_weight_mean", &grpo::loss_stats::sampling_weight_mean},
    {"off_policy_mask_fraction", &grpo::loss_stats::off_policy_mask_fraction},
    {"entropy_loss", &grpo::loss_stats::entropy_loss},
    {"entropy_mean", &grpo::loss_stats::entropy_mean},
    {"entropy_mask_fraction", &grpo::loss_stats::entropy_mask_fraction},
    {"cov_selection_fraction", &grpo::loss_stats::cov_selection_fraction}};

bool same_stats(const grpo::loss_stats& a, const grpo::loss_stats& b, std::string* which) {
    for (const auto& x : kLossFields)
        if (!bits_equal(a.*x.second, b.*x.second)) {
            *which = strf("%s %.17g vs %.17g", x.first, a.*x.second, b.*x.second);
            return false;
        }
    return true;
}

grpo::loss_config draw_loss_config(fuzz_input& in) {
    constexpr double inf = std::numeric_limits<double>::infinity();
    grpo::loss_config c;
    switch (in.u8() % 10) {
    case 1: c = grpo::loss_config::verl(); break;
    case 2: c = grpo::loss_config::deepseekmath(); break;
    case 3: c = grpo::loss_config::dapo(); break;
    case 4: c = grpo::loss_config::dr_grpo(double(in.u8() % 64)); break;
    case 5: c = grpo::loss_config::gspo(); break;
    case 6: c = grpo::loss_config::clip_cov(); break;
    case 7: c = grpo::loss_config::kl_cov(); break;
    case 8: c = grpo::loss_config::gmpo(); break;
    default: break;
    }
    if (in.flag()) {
        c.epsilon_low = in.config_double({0.2, 0.0, 0.1, 0.5, 0.999, 3e-4});
        c.epsilon_high = in.config_double({0.2, 0.28, 0.0, 1.0, 10.0, 4e-4});
        c.delta = in.config_double({0.0, 0.0, 1.5, 2.0});
        c.dual_clip_c = in.config_double({0.0, 0.0, 3.0, 1.5});
        c.log_ratio_clamp = in.config_double({0.0, 0.0, 20.0, 10.0, 0.5});
        c.ratio = in.enum_value<grpo::ratio_level>(3);
        c.beta = in.config_double({0.0, 0.0, 0.04, 0.001, 1.0});
        c.kl = in.enum_value<grpo::kl_estimator>(grpo::kl_estimator_count);
        c.kl_log_ratio_clamp = in.config_double({0.0, 0.0, 20.0, 1.0});
        c.kl_value_clamp = in.config_double({0.0, 0.0, 10.0, 0.5});
        c.kl_straight_through = in.flag();
        c.agg = in.enum_value<grpo::aggregation>(5);
        c.max_completion_length = in.config_double({0.0, 0.0, 1.0, 16.0, 1024.0});
        c.loss_scale = in.config_double({1.0, 1.0, 0.5, 8.0, -1.0, 0.0});
    }
    if (in.flag()) {
        c.objective = in.enum_value<grpo::policy_objective>(grpo::policy_objective_count);
        if (c.objective == grpo::policy_objective::geo_mean && in.flag()) c.ratio = grpo::ratio_level::sequence;
        if (c.objective != grpo::policy_objective::ppo_clip && in.flag()) c.delta = c.dual_clip_c = 0;
        if (grpo::math::selects_by_covariance(c.objective) && in.flag()) c.ratio = grpo::ratio_level::token;
        c.cispo_ratio_cap = in.config_double({5.0, 1.3, 0.0, 1e30});
        c.sapo_temperature_neg = in.config_double({1.05, 0.5, 0.0, 1e-30});
        c.vespo_k_pos = in.config_double({2.0, 0.0, -3.0, 1e6});
        c.cov_ratio = in.config_double({2e-4, 0.5, 1.0, 0.0});
        c.clip_cov_lb = in.config_double({1.0, -1e30, 0.0});
        c.clip_cov_ub = in.config_double({5.0, 1e30, 0.5});
        c.kl_cov_coef = in.config_double({0.1, 0.0, -2.0, 1e30});
        c.dro_beta = in.config_double({0.1, 1.0, 0.0, 1e30});
        c.selection_seed = in.u8();
    }
    if (in.chance(90)) { // sampling correction, off-policy mask, entropy bonus and top-entropy mask
        c.sampling = in.enum_value<grpo::sampling_correction>(grpo::sampling_correction_count);
        c.sampling_ratio_min = in.config_double({0.0, 0.0, 0.5});
        c.sampling_ratio_max = in.config_double({2.0, 2.0, 1.5, 10.0});
        c.off_policy_mask_threshold = in.chance(180) ? inf : in.config_double({0.5, 0.1, 2.0});
        c.entropy_coef = in.config_double({0.0, 0.0, 0.01, -0.1});
        c.top_entropy_quantile = in.config_double({1.0, 0.2, 0.5, 0.0, 1.0});
        if (rare(in, 40)) c.entropy_threshold = in.config_double({0.5, 1.0, -1.0});
        c.kl_bias_correction = in.flag();
    }
    // Host-set counts: small ones, so that they fall between one rank's tokens and every rank's.
    if (rare(in, 70)) c.global_token_count = in.config_double({1.0, 2.0, 3.0, 5.0, 8.0, 20.0, 1e6});
    if (rare(in, 50)) c.global_sequence_count = in.config_double({1.0, 2.0, 3.0, 5.0, 8.0, 1000.0});
    c.count_empty_sequences = in.chance(170);
    c.checks = in.enum_value<grpo::validation>(2);
    return c;
}

template <class T>
void bytes_unchanged(const char* what, int r, const loss_rank<T>& now, const loss_rank<T>& before, bool ok) {
    for (int k = 0; k < L_N; ++k) {
        if (!ok || k < L_GRAD) {
            if (!same_bytes(now.a[k], before.a[k]))
                finding(ok            ? "input-modified"
                        : k >= L_GRAD ? "error-wrote-output-loss-pass"
                                      : "error-wrote-output",
                        "%s: rank %d's %s buffer changed", what, r, loss_name[k]);
        } else {
            const std::int64_t e = changed_outside(now.a[k], before.a[k]);
            if (e >= 0)
                finding("write-outside-view", "%s: rank %d's %s element %lld written", what, r, loss_name[k],
                        (long long)e);
        }
    }
    if (!same_bytes(now.len, before.len))
        finding(ok ? "input-modified" : "error-wrote-output", "%s: rank %d's lengths changed", what, r);
}

template <class T>
void run_loss(fuzz_input& in, int size) {
    const char* what = "dist::loss_and_grad";
    const grpo::loss_config cfg = draw_loss_config(in);
    const bool tame = in.chance(96);
    const bool hostile = hostile_enabled() && rare(in, 5);
    const std::uint8_t mode = in.u8();
    std::int64_t total = 0, C = 0;
    if (mode < 215) {
        total = in.range(0, 16);
        C = in.range(0, 20);
    } else {
        total = in.range(1, 6);
        C = in.range(257, 300); // more than one 256-token block per row
    }
    if (hostile) C = 0;
    std::vector<std::int64_t> split = draw_split(in, total, size);
    faults f;
    f.hostile = hostile;
    if (hostile) {
        split[in.u8() % static_cast<unsigned>(size)] = huge_rows(in);
        if (size > 1 && in.flag()) split[in.u8() % static_cast<unsigned>(size)] = huge_rows(in);
    }
    const bool entropy_needed = cfg.entropy_coef != 0 || cfg.top_entropy_quantile < 1;
    const bool with[L_N] = {true,
                            in.chance(180),
                            cfg.beta != 0 ? in.chance(245) : in.chance(60),
                            in.chance(252),
                            in.chance(150),
                            cfg.sampling != grpo::sampling_correction::none ? in.chance(245) : in.chance(30),
                            entropy_needed ? in.chance(245) : in.chance(40),
                            false,
                            false,
                            false,
                            false};
    const bool with_lengths = in.chance(100);
    // Palettes (shared by the ranks) keep inputs short while covering whole buffers.
    T pal[L_GRAD][8];
    for (int k = 0; k < L_GRAD; ++k) {
        const bool nonfinite = rare(in, 25);
        for (T& p : pal[k]) p = T(in.value(tame, nonfinite, k == L_ADV ? 2.0 : 4.0));
        if (k == L_ENT)
            for (T& p : pal[k]) p = T(std::fabs(double(p)));
    }

    std::vector<loss_rank<T>> ranks(static_cast<std::size_t>(size));
    for (int r = 0; r < size; ++r) {
        loss_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        R.rows = split[static_cast<std::size_t>(r)];
        R.cols = C;
        R.cfg = cfg;
        R.use_ws = in.flag();
        const bool huge = R.rows > kMaxElems;
        bool present[L_N];
        for (int k = 0; k < L_N; ++k) present[k] = with[k];
        present[L_GRAD] = in.chance(220);
        present[L_PTL] = in.chance(110);
        present[L_RATIO] = in.chance(60);
        present[L_GENT] = in.chance(cfg.entropy_coef != 0 ? 150 : 30);
        bool lengths = with_lengths;
        if (!huge && rare(in, 10)) { // this rank's fault
            switch (in.u8() % 6) {
            case 0: present[L_LOGP] = false; break;              // a rank with rows but no logp
            case 1: present[L_ADV] = false; break;               // required input absent
            case 2: present[L_OLD + in.u8() % 6] ^= true; break; // optional input toggled
            case 3: lengths = !lengths; break;                   // lengths toggled
            case 4: R.cols += 1; break;                          // other columns
            default:                                             // other host-set counts
                if (in.flag()) R.cfg.global_token_count += 1;
                else R.cfg.global_sequence_count += 1;
                break;
            }
        }
        for (int k = 0; k < L_N; ++k) {
            arr<T>& A = R.a[k];
            A.present = present[k];
            std::int64_t rr = R.rows, cc = R.cols;
            if (!huge && rare(in, 4)) wrong_shape(in, rr, cc);
            A.L = huge ? contiguous_layout(rr, 0) : matrix_layout(in, rr, cc, k < L_GRAD);
            place(A, k >= L_GRAD);
        }
        for (int k = 0; k < L_GRAD; ++k) {
            if (k == L_MASK) {
                fill(R.a[k], [&](std::int64_t, std::int64_t) {
                    const std::uint8_t m = in.u8();
                    return m < 162 ? T(1) : m < 252 ? T(0) : T(in.value(false, true));
                });
            } else {
                fill(R.a[k], [&](std::int64_t, std::int64_t) { return pal[k][in.u8() % 8]; });
            }
        }
        R.len.present = lengths && !huge; // (lengths are checked row by row: 2^62 rows take forever)
        R.len.L = vector_layout(in, huge ? R.rows : R.rows + (rare(in, 4) ? 1 : 0), true);
        place(R.len, false);
        fill(R.len, [&](std::int64_t, std::int64_t) {
            const std::uint8_t k = in.u8();
            const std::int64_t c = std::min<std::int64_t>(std::max<std::int64_t>(R.cols, 0), 1 << 20);
            const std::int64_t past = R.cols < std::numeric_limits<std::int64_t>::max() ? R.cols + 1 : R.cols;
            return k < 240 ? c - in.range(0, c) : k < 248 ? past : in.hostile_size();
        });
        if (!huge && rare(in, 12)) { // an output over an input or another output (same layout)
            const int out = L_GRAD + in.u8() % 4, target = in.u8() % L_N;
            if (target != out && R.a[out].present && R.a[target].present && writable_ok(R.a[target].L)) {
                R.alias[out] = target;
                R.a[out].L = R.a[target].L;
            }
        }
    }
    for (loss_rank<T>& R : ranks) R.bind();
    if (rare(in, 40)) { // host-set counts at the boundaries: the largest rank's tokens/rows, the batch's, one less
        double most_tokens = 0, all_tokens = 0, most_rows = 0, all_rows = 0;
        for (const loss_rank<T>& R : ranks) {
            if (R.n() == 0 || R.n() > kMaxElems) continue;
            grpo::dist::batch_counts c;
            if (!views_constructible([&] { c = grpo::dist::count_tokens(R.inputs()); })) continue;
            most_tokens = std::max(most_tokens, c.tokens);
            all_tokens += c.tokens;
            most_rows = std::max(most_rows, cfg.count_empty_sequences ? c.sequences : c.nonempty_sequences);
            all_rows += cfg.count_empty_sequences ? c.sequences : c.nonempty_sequences;
        }
        const double tok[] = {most_tokens, all_tokens - 1, all_tokens, all_tokens + 1};
        const double seq[] = {most_rows, all_rows - 1, all_rows, 0};
        const double t = tok[in.u8() % 4], q = in.flag() ? seq[in.u8() % 4] : 0;
        for (loss_rank<T>& R : ranks) {
            if (t >= 1) R.cfg.global_token_count = t;
            if (q >= 1) R.cfg.global_sequence_count = q;
        }
    }

    // The library's rules: each rank with rows checks its call as grpo::loss_and_grad would; the host-set counts
    // agree; a rank with no logp (or no rows) must not have outputs with rows.
    std::int64_t whole_n = 0;
    bool overflow = false;
    int first = -1;
    for (int r = 0; r < size; ++r) {
        const loss_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        if (__builtin_add_overflow(whole_n, R.n(), &whole_n)) overflow = true;
        if (R.n() > 0 && first < 0) first = r;
        const auto same = [](double a, double b) { return a == b || (a != a && b != b); };
        if (!same(R.cfg.global_token_count, ranks[0].cfg.global_token_count) ||
            !same(R.cfg.global_sequence_count, ranks[0].cfg.global_sequence_count))
            f.must(strf("rank %d's host-set counts differ from rank 0's", r));
        if (R.n() == 0) { // (a view with rows beside logp without any is left unread and unwritten)
            for (int k = L_OLD; k < L_N; ++k)
                if (R.a[k].present && R.a[k].L.rows > 0)
                    f.unchecked =
                        strf("rank %d: logp %s, %s [%lld x %lld]", r, R.a[L_LOGP].present ? "without rows" : "absent",
                             loss_name[k], (long long)R.a[k].L.rows, (long long)R.a[k].L.cols);
            if (R.len.present && R.len.L.rows > 0)
                f.unchecked = strf("rank %d: logp without rows, lengths of size %lld", r, (long long)R.len.L.rows);
            continue;
        }
        try {
            const grpo::loss_inputs<T> li = R.inputs();
            (void)grpo::detail::check_loss_call(what, li, R.outputs(), R.cfg);
            grpo::detail::check_lengths_on_host(what, li.lengths, li.logp.rows(), li.logp.cols());
        } catch (const grpo::error& e) {
            f.must(strf("rank %d's own call is invalid: %s", r, e.what()));
        }
    }
    if (overflow) f.must("the ranks' rows overflow");
    const loss_rank<T>& F = ranks[static_cast<std::size_t>(first < 0 ? 0 : first)];
    const std::int64_t eff_cols = first < 0 ? C : F.a[L_LOGP].L.cols;
    for (int r = 0; r < size; ++r) {
        const loss_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        if (R.n() == 0) continue;
        if (R.a[L_LOGP].L.cols != eff_cols) f.split_only = strf("rank %d has other columns", r);
        for (int k = L_OLD; k < L_GRAD; ++k)
            if (R.a[k].present != F.a[k].present)
                f.split_only =
                    strf("rank %d disagrees with rank %d on %s (not checked across ranks)", r, first, loss_name[k]);
        if (R.len.present != F.len.present) f.split_only = strf("rank %d disagrees with rank %d on lengths", r, first);
    }
    const bool cov = grpo::math::selects_by_covariance(cfg.objective);
    if (verbose())
        std::fprintf(
            stderr,
            "%s<%s> ranks %d split %s cols %lld objective %d agg %d ratio %d beta %g gtc %g gsc %g count_empty "
            "%d sampling %d entropy %g/%g checks %d | must throw: %s | unchecked: %s | split only: %s\n",
            what, tname<T>(), size, split_str(split).c_str(), (long long)C, int(cfg.objective), int(cfg.agg),
            int(cfg.ratio), cfg.beta, cfg.global_token_count, cfg.global_sequence_count, cfg.count_empty_sequences,
            int(cfg.sampling), cfg.entropy_coef, cfg.top_entropy_quantile, int(cfg.checks), f.must_throw.c_str(),
            f.unchecked.c_str(), f.split_only.c_str());

    // The one-process call on the concatenated batch (present views even when it has no rows).
    const bool ref_exists = f.split_only.empty() && !hostile && f.must_throw.empty() &&
                            whole_n * std::max<std::int64_t>(eff_cols, 1) <= (std::int64_t(1) << 20);
    outcome ref;
    grpo::loss_stats ref_st;
    const std::size_t cells = ref_exists ? static_cast<std::size_t>(whole_n * eff_cols) : 0;
    std::vector<std::vector<T>> whole(L_N, std::vector<T>(cells + 1));
    std::vector<std::int64_t> len_all(ref_exists ? static_cast<std::size_t>(whole_n) + 1 : 1);
    grpo::loss_inputs<T> wi;
    if (ref_exists) {
        std::int64_t o = 0;
        for (const loss_rank<T>& R : ranks) {
            for (std::int64_t i = 0; i < R.n(); ++i) {
                for (int k = 0; k < L_GRAD; ++k) // (a view the call does not use may have any shape)
                    if (R.a[k].present && R.a[k].L.rows == R.n() && R.a[k].L.cols == eff_cols)
                        for (std::int64_t t = 0; t < eff_cols; ++t)
                            whole[k][static_cast<std::size_t>((o + i) * eff_cols + t)] = R.a[k].at(i, t);
                if (R.len.present && R.len.L.rows == R.n()) len_all[static_cast<std::size_t>(o + i)] = R.len.at(i);
            }
            o += R.n();
        }
        // (A batch without rows is the call whose views are all absent: one process, logp [0 x C] beside an absent
        // view is a shape error of its own, which no rank's call has.)
        auto m = [&](int k) {
            return whole_n == 0 ? grpo::matrix_view<const T>()
                                : grpo::matrix_view<const T>(whole[k].data(), whole_n, eff_cols);
        };
        wi.logp = m(L_LOGP);
        if (F.a[L_OLD].present) wi.old_logp = m(L_OLD);
        if (F.a[L_REF].present) wi.ref_logp = m(L_REF);
        if (F.a[L_ADV].present) wi.advantages = m(L_ADV);
        if (F.a[L_MASK].present) wi.mask = m(L_MASK);
        if (F.a[L_SAMP].present) wi.sampling_logp = m(L_SAMP);
        if (F.a[L_ENT].present) wi.entropy = m(L_ENT);
        if (F.len.present && whole_n > 0) wi.lengths = grpo::vector_view<const std::int64_t>(len_all.data(), whole_n);
        if (verbose()) { // the configuration's other fields and the concatenated batch, row by row
            const grpo::loss_config& c = ranks[0].cfg;
            std::fprintf(stderr,
                         "  config: eps %g/%g delta %g dual %g lrclamp %g kl %d klclamp %g/%g st %d bias %d "
                         "sampling [%g, %g] offpolicy %g entropy threshold %g L %g scale %g gtc %g gsc %g\n",
                         c.epsilon_low, c.epsilon_high, c.delta, c.dual_clip_c, c.log_ratio_clamp, int(c.kl),
                         c.kl_log_ratio_clamp, c.kl_value_clamp, int(c.kl_straight_through), int(c.kl_bias_correction),
                         c.sampling_ratio_min, c.sampling_ratio_max, c.off_policy_mask_threshold, c.entropy_threshold,
                         c.max_completion_length, c.loss_scale, c.global_token_count, c.global_sequence_count);
            for (int k = 0; k < L_GRAD; ++k) {
                if (!F.a[k].present && k != L_LOGP) continue;
                std::fprintf(stderr, "  whole %s:", loss_name[k]);
                for (std::size_t e = 0; e < cells && e < 96; ++e)
                    std::fprintf(stderr, "%s%.9g", e % std::size_t(std::max<std::int64_t>(eff_cols, 1)) ? " " : " | ",
                                 double(whole[k][e]));
                std::fprintf(stderr, "\n");
            }
            for (std::size_t r = 0; r < ranks.size(); ++r)
                for (int k = 0; k < L_N; ++k)
                    if (ranks[r].a[k].present)
                        std::fprintf(stderr, "  rank %zu %s: [%lld x %lld] strides (%lld, %lld) offset %lld%s\n", r,
                                     loss_name[k], (long long)ranks[r].a[k].L.rows, (long long)ranks[r].a[k].L.cols,
                                     (long long)ranks[r].a[k].L.rs, (long long)ranks[r].a[k].L.cs,
                                     (long long)ranks[r].a[k].L.offset, ranks[r].alias[k] >= 0 ? " (aliased)" : "");
            if (F.len.present) {
                std::fprintf(stderr, "  whole lengths:");
                for (std::int64_t i = 0; i < whole_n && i < 48; ++i)
                    std::fprintf(stderr, " %lld", (long long)len_all[static_cast<std::size_t>(i)]);
                std::fprintf(stderr, "\n");
            }
        }
        ref = call_checked("loss_and_grad (one process)", [&] {
            grpo::loss_outputs<T> wo;
            if (whole_n > 0) {
                wo.grad_logp = grpo::matrix_view<T>(whole[L_GRAD].data(), whole_n, eff_cols);
                wo.per_token_loss = grpo::matrix_view<T>(whole[L_PTL].data(), whole_n, eff_cols);
                wo.ratio = grpo::matrix_view<T>(whole[L_RATIO].data(), whole_n, eff_cols);
                wo.grad_entropy = grpo::matrix_view<T>(whole[L_GENT].data(), whole_n, eff_cols);
            }
            ref_st = grpo::loss_and_grad(grpo::exec::host{}, wi, wo, ranks[0].cfg);
        });
    }

    if (!views_constructible([&] {
            for (const loss_rank<T>& R : ranks) (void)R.inputs(), (void)R.outputs();
        }))
        return;
    const std::vector<loss_rank<T>> before = ranks;
    std::vector<grpo::loss_stats> st(static_cast<std::size_t>(size));
    rank_result err;
    const bool ok = run_ranks(
        what, size,
        [&](const checked_comm& comm) {
            const loss_rank<T>& R = ranks[static_cast<std::size_t>(comm.rank())];
            grpo::workspace ws;
            st[static_cast<std::size_t>(comm.rank())] =
                R.use_ws ? grpo::dist::loss_and_grad(comm, grpo::exec::host{}, R.inputs(), R.outputs(), R.cfg, ws)
                         : grpo::dist::loss_and_grad(comm, grpo::exec::host{}, R.inputs(), R.outputs(), R.cfg);
        },
        &err);
    if (verbose() && !ok) std::fprintf(stderr, "  dist threw: %s\n", err.message.c_str());
    for (int r = 0; r < size; ++r)
        bytes_unchanged(what, r, ranks[static_cast<std::size_t>(r)], before[static_cast<std::size_t>(r)], ok);
    compare_outcomes(what, f, ok, err, ref, ref_exists, whole_n == 0);
    if (!ok) return;
    std::string which;
    for (int r = 1; r < size; ++r)
        if (!same_stats(st[static_cast<std::size_t>(r)], st[0], &which))
            finding("stats-across-ranks", "%s: rank %d's stats differ from rank 0's: %s", what, r, which.c_str());
    if (!ref_exists || !ref.ok) return;
    // The reference has contiguous rows, which take grpo's specialized row passes; the ranks' layouts may take the
    // general one. docs/architecture.md promises the same bits: before blaming the dist call for a difference,
    // the one-process call itself runs again with column stride 2 (the general pass, like a strided rank).
    const auto one_process_layouts_agree = [&]() -> std::string {
        if (whole_n == 0) return "";          // (no rows: no layout)
        const std::int64_t pc = 2 * eff_cols; // row stride; columns 2 apart
        std::vector<std::vector<T>> pad(L_N, std::vector<T>(static_cast<std::size_t>(whole_n * pc + 1)));
        for (int k = 0; k < L_N; ++k) {
            for (T& x : pad[k]) x = T(std::numeric_limits<double>::quiet_NaN()); // (padding: never read)
            for (std::int64_t i = 0; i < whole_n; ++i)
                for (std::int64_t t = 0; t < eff_cols; ++t)
                    pad[k][static_cast<std::size_t>(i * pc + 2 * t)] =
                        k < L_GRAD ? whole[k][static_cast<std::size_t>(i * eff_cols + t)] : T(7);
        }
        auto m = [&](int k) { return grpo::matrix_view<const T>(pad[k].data(), whole_n, eff_cols, pc, 2); };
        auto w = [&](int k) { return grpo::matrix_view<T>(pad[k].data(), whole_n, eff_cols, pc, 2); };
        grpo::loss_inputs<T> pi = wi;
        pi.logp = m(L_LOGP);
        for (int k : {L_OLD, L_REF, L_ADV, L_MASK, L_SAMP, L_ENT}) {
            const grpo::matrix_view<const T>* src[] = {nullptr,  &wi.old_logp,      &wi.ref_logp, &wi.advantages,
                                                       &wi.mask, &wi.sampling_logp, &wi.entropy};
            if (src[k]->present()) {
                if (k == L_OLD) pi.old_logp = m(k);
                if (k == L_REF) pi.ref_logp = m(k);
                if (k == L_ADV) pi.advantages = m(k);
                if (k == L_MASK) pi.mask = m(k);
                if (k == L_SAMP) pi.sampling_logp = m(k);
                if (k == L_ENT) pi.entropy = m(k);
            }
        }
        grpo::loss_outputs<T> po;
        po.grad_logp = w(L_GRAD);
        po.per_token_loss = w(L_PTL);
        po.ratio = w(L_RATIO);
        po.grad_entropy = w(L_GENT);
        grpo::loss_stats pst;
        const outcome o = call_checked("loss_and_grad (one process, column stride 2)",
                                       [&] { pst = grpo::loss_and_grad(grpo::exec::host{}, pi, po, ranks[0].cfg); });
        if (!o.ok) return "the strided call threw: " + o.message;
        std::string d;
        if (!same_stats(pst, ref_st, &d)) return "stats." + d + " (column stride 2 vs contiguous rows)";
        for (int k = L_GRAD; k < L_N; ++k)
            for (std::int64_t i = 0; i < whole_n; ++i)
                for (std::int64_t t = 0; t < eff_cols; ++t) {
                    const T a = pad[k][static_cast<std::size_t>(i * pc + 2 * t)];
                    const T b = whole[k][static_cast<std::size_t>(i * eff_cols + t)];
                    if (!bits_equal(a, b))
                        return strf("%s(%lld, %lld) %.17g strided, %.17g contiguous", loss_name[k], (long long)i,
                                    (long long)t, double(a), double(b));
                }
        return "";
    };
    // The top-entropy quantile of the step is NaN when an entropy is not finite (only validation::shapes_only
    // lets one through): such inputs get a tag of their own (NaN also means "this call's quantile").
    bool nonfinite_quantile = false;
    if (ranks[0].cfg.top_entropy_quantile < 1 && std::isnan(ranks[0].cfg.entropy_threshold) && wi.entropy.present())
        for (std::size_t e = 0; e < cells; ++e) nonfinite_quantile |= !std::isfinite(double(whole[L_ENT][e]));
    const auto blame = [&](const char* tag, const std::string& what_differs) {
        if (nonfinite_quantile && std::strcmp(tag, "dist-vs-one-process") == 0)
            finding("dist-vs-one-process-nonfinite-entropy-quantile", "%s (the step's entropy quantile is NaN)",
                    what_differs.c_str());
        const std::string layouts = one_process_layouts_agree();
        if (!layouts.empty())
            finding(
                std::strcmp(tag, "dist-vs-one-process-signed-zero") == 0 ? "one-process-layout-signed-zero"
                                                                         : "one-process-layout-dependent",
                "%s<%s>: loss_and_grad on one process differs between contiguous and strided rows: %s (objective %d "
                "agg %d ratio %d sampling %d checks %d); the dist call's difference: %s",
                what, tname<T>(), layouts.c_str(), int(cfg.objective), int(cfg.agg), int(cfg.ratio), int(cfg.sampling),
                int(cfg.checks), what_differs.c_str());
        finding(tag, "%s", what_differs.c_str());
    };
    if (!cov) {
        if (!same_stats(st[0], ref_st, &which))
            blame("dist-vs-one-process",
                  strf("%s<%s>, %d ranks (%s), objective %d agg %d: stats.%s (dist vs one process)", what, tname<T>(),
                       size, split_str(split).c_str(), int(cfg.objective), int(cfg.agg), which.c_str()));
        std::int64_t o = 0;
        for (int r = 0; r < size; ++r) {
            const loss_rank<T>& R = ranks[static_cast<std::size_t>(r)];
            for (int k = L_GRAD; k < L_N; ++k)
                if (R.a[k].present)
                    for (std::int64_t i = 0; i < R.n(); ++i)
                        for (std::int64_t t = 0; t < eff_cols; ++t) {
                            const T want = whole[k][static_cast<std::size_t>((o + i) * eff_cols + t)];
                            if (!bits_equal(R.a[k].at(i, t), want))
                                blame(mismatch_tag(double(R.a[k].at(i, t)), double(want)),
                                      strf("%s<%s>, %d ranks (%s), objective %d agg %d: rank %d %s(%lld, %lld) %.17g, "
                                           "one process %.17g (mask %g, length %lld, entropy_coef %g, token_count %g)",
                                           what, tname<T>(), size, split_str(split).c_str(), int(cfg.objective),
                                           int(cfg.agg), r, loss_name[k], (long long)i, (long long)t,
                                           double(R.a[k].at(i, t)), double(want),
                                           R.a[L_MASK].present ? double(R.a[L_MASK].at(i, t)) : 1.0,
                                           R.len.present ? (long long)R.len.at(i) : -1LL, cfg.entropy_coef,
                                           ref_st.token_count));
                        }
            o += R.n();
        }
    }

    // dist::count_tokens on every rank (a rank without logp counts nothing) + dist::with_global_counts: the
    // counts of the whole batch, exactly (integers in double), whatever the split.
    std::vector<grpo::dist::batch_counts> local(static_cast<std::size_t>(size));
    for (int r = 0; r < size; ++r) {
        const loss_rank<T>& R = ranks[static_cast<std::size_t>(r)];
        if (R.n() == 0) continue; // (an idle rank's views are not checked; it counts nothing)
        const outcome o = call_checked(
            "dist::count_tokens", [&] { local[static_cast<std::size_t>(r)] = grpo::dist::count_tokens(R.inputs()); });
        if (!o.ok)
            finding("count-tokens", "dist::count_tokens threw on rank %d of a call loss_and_grad accepted: %s", r,
                    o.message.c_str());
    }
    grpo::dist::batch_counts want;
    const outcome wo = call_checked("dist::count_tokens (one process)", [&] {
        if (whole_n > 0) want = grpo::dist::count_tokens(wi); // (no rows: no logp, nothing to count)
    });
    if (!wo.ok) finding("count-tokens", "dist::count_tokens threw on the concatenated batch: %s", wo.message.c_str());
    if (!bits_equal(want.tokens, ref_st.token_count) && !(want.tokens == 0 && ref_st.token_count == 0))
        finding("count-tokens", "count_tokens %.17g tokens, loss_and_grad's token_count %.17g", want.tokens,
                ref_st.token_count);
    std::vector<grpo::loss_config> got(static_cast<std::size_t>(size));
    if (!run_ranks("dist::with_global_counts", size, [&](const checked_comm& comm) {
            const auto r = static_cast<std::size_t>(comm.rank());
            got[r] = grpo::dist::with_global_counts(comm, ranks[r].cfg, local[r]);
        }))
        finding("global-counts", "dist::with_global_counts threw after dist::loss_and_grad accepted the same counts");
    for (int r = 0; r < size; ++r) {
        const grpo::loss_config& c = ranks[static_cast<std::size_t>(r)].cfg;
        const double tokens = c.global_token_count <= 0 ? want.tokens : c.global_token_count;
        const double seqs = c.global_sequence_count <= 0
                                ? (c.count_empty_sequences ? want.sequences : want.nonempty_sequences)
                                : c.global_sequence_count;
        const grpo::loss_config& g = got[static_cast<std::size_t>(r)];
        if (!bits_equal(g.global_token_count, tokens) || !bits_equal(g.global_sequence_count, seqs))
            finding(
                "global-counts",
                "rank %d: with_global_counts gave %.17g tokens / %.17g sequences, the whole batch has %.17g / %.17g", r,
                g.global_token_count, g.global_sequence_count, tokens, seqs);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Mode 3: dist::with_global_counts and dist::all_sum on their own

/// dist::all_sum: out[k] = ((v_0[k] + v_1[k]) + v_2[k]) + ... in double, rounded to V once, on every rank; in
/// place or not; a count the library must reject (negative, or so large that its bytes overflow) on every rank.
template <class V>
void check_all_sum(fuzz_input& in, int size) {
    const std::uint8_t c = in.u8();
    const bool hostile = hostile_enabled() && c >= 245;
    const std::int64_t count =
        hostile ? (in.flag() ? -std::int64_t(in.u8() % 3 + 1) : huge_rows(in) | (std::int64_t(1) << 61))
                : in.range(0, 16);
    const bool in_place = in.flag();
    std::vector<std::vector<V>> vals(static_cast<std::size_t>(size)), outs(static_cast<std::size_t>(size));
    for (int r = 0; r < size; ++r) {
        auto& v = vals[static_cast<std::size_t>(r)];
        v.resize(static_cast<std::size_t>(hostile ? 1 : count) + 1);
        for (V& x : v) x = V(in.value(in.chance(128), true, 1e3));
        auto& o = outs[static_cast<std::size_t>(r)];
        o.resize(v.size());
        fill_sentinel(o.data(), o.size() * sizeof(V));
    }
    const auto vals0 = vals, outs0 = outs;
    const bool sum_ok = run_ranks("dist::all_sum", size, [&](const checked_comm& comm) {
        const auto r = static_cast<std::size_t>(comm.rank());
        grpo::dist::all_sum(comm, vals[r].data(), count, in_place ? vals[r].data() : outs[r].data());
    });
    if (sum_ok && hostile) finding("accepted-rank-fault", "dist::all_sum accepted count %lld", (long long)count);
    if (!sum_ok) {
        if (!hostile) finding("dist-rejected-valid-batch", "dist::all_sum threw for count %lld", (long long)count);
        for (int r = 0; r < size; ++r)
            if (std::memcmp(vals[static_cast<std::size_t>(r)].data(), vals0[static_cast<std::size_t>(r)].data(),
                            vals[0].size() * sizeof(V)) != 0 ||
                std::memcmp(outs[static_cast<std::size_t>(r)].data(), outs0[static_cast<std::size_t>(r)].data(),
                            outs[0].size() * sizeof(V)) != 0)
                finding("error-wrote-output", "dist::all_sum threw but rank %d's buffers changed", r);
        return;
    }
    for (int r = 0; r < size; ++r) {
        const auto& o = in_place ? vals[static_cast<std::size_t>(r)] : outs[static_cast<std::size_t>(r)];
        for (std::int64_t k = 0; k < count; ++k) {
            const auto u = static_cast<std::size_t>(k);
            double s = double(vals0[0][u]);
            for (int q = 1; q < size; ++q) s += double(vals0[static_cast<std::size_t>(q)][u]);
            if (!bits_equal(o[u], V(s)))
                finding("all-sum", "rank %d: all_sum<%s>[%lld] = %.17g, rank-order sum %.17g", r, tname<V>(),
                        (long long)k, double(o[u]), double(V(s)));
        }
        const auto& o0 = in_place ? vals0[static_cast<std::size_t>(r)] : outs0[static_cast<std::size_t>(r)];
        if (std::memcmp(&o[static_cast<std::size_t>(count)], &o0[static_cast<std::size_t>(count)], sizeof(V)) != 0)
            finding("write-outside-view", "dist::all_sum wrote past count on rank %d", r);
        if (!in_place && std::memcmp(vals[static_cast<std::size_t>(r)].data(),
                                     vals0[static_cast<std::size_t>(r)].data(), vals[0].size() * sizeof(V)) != 0)
            finding("input-modified", "dist::all_sum changed rank %d's values", r);
    }
}

void run_counts(fuzz_input& in, int size) {
    // with_global_counts: sums in rank order, the host-set counts kept (and checked equal on every rank).
    std::vector<grpo::dist::batch_counts> bc(static_cast<std::size_t>(size));
    std::vector<grpo::loss_config> cfgs(static_cast<std::size_t>(size));
    grpo::loss_config base;
    base.global_token_count = in.flag() ? 0.0 : in.value(false, true, 100.0);
    base.global_sequence_count = in.flag() ? 0.0 : in.value(false, true, 100.0);
    base.count_empty_sequences = in.flag();
    base.loss_scale = in.moderate(4.0);
    bool mismatch = false;
    for (int r = 0; r < size; ++r) {
        auto& b = bc[static_cast<std::size_t>(r)];
        const bool tame = in.chance(200);
        b.tokens = tame ? double(in.u8()) : in.value(false, true, 1e6);
        b.sequences = tame ? double(in.u8() % 16) : in.value(false, true, 1e6);
        b.nonempty_sequences = tame ? double(in.u8() % 16) : in.value(false, true, 1e6);
        grpo::loss_config& c = cfgs[static_cast<std::size_t>(r)];
        c = base;
        if (r > 0 && rare(in, 8)) { // (rank 0's counts are the ones the library compares with)
            (in.flag() ? c.global_token_count : c.global_sequence_count) = in.value(false, true, 100.0);
            const auto same = [](double a, double b) { return a == b || (a != a && b != b); };
            if (!same(c.global_token_count, base.global_token_count) ||
                !same(c.global_sequence_count, base.global_sequence_count))
                mismatch = true;
        }
    }
    std::vector<grpo::loss_config> got(static_cast<std::size_t>(size));
    const bool ok = run_ranks("dist::with_global_counts", size, [&](const checked_comm& comm) {
        const auto r = static_cast<std::size_t>(comm.rank());
        got[r] = grpo::dist::with_global_counts(comm, cfgs[r], bc[r]);
    });
    if (ok && mismatch)
        finding("accepted-rank-fault", "dist::with_global_counts accepted host-set counts that differ between ranks");
    if (!ok && !mismatch) finding("dist-rejected-valid-batch", "dist::with_global_counts threw on agreeing counts");
    if (ok) {
        double tokens = 0, seqs = 0, nonempty = 0;
        for (const auto& b : bc) {
            tokens += b.tokens;
            seqs += b.sequences;
            nonempty += b.nonempty_sequences;
        }
        for (int r = 0; r < size; ++r) {
            // (each rank keeps its own host-set counts: equal on every rank, NaN up to its sign and payload)
            const grpo::loss_config& c = cfgs[static_cast<std::size_t>(r)];
            const double want_t = c.global_token_count <= 0 ? tokens : c.global_token_count;
            const double want_s =
                c.global_sequence_count <= 0 ? (c.count_empty_sequences ? seqs : nonempty) : c.global_sequence_count;
            const grpo::loss_config& g = got[static_cast<std::size_t>(r)];
            if (!bits_equal(g.global_token_count, want_t) || !bits_equal(g.global_sequence_count, want_s) ||
                !bits_equal(g.loss_scale, base.loss_scale) || g.count_empty_sequences != base.count_empty_sequences)
                finding("global-counts", "rank %d: with_global_counts gave %.17g / %.17g, expected %.17g / %.17g", r,
                        g.global_token_count, g.global_sequence_count, want_t, want_s);
        }
    }

    // all_sum, for float and double values (accumulated in double, rounded once).
    if (in.flag()) check_all_sum<float>(in, size);
    else check_all_sum<double>(in, size);
}

template <class T>
void run(fuzz_input& in) {
    const std::uint8_t entry = in.u8() % 4;
    const int size = 1 + in.u8() % 4;
    switch (entry) {
    case 0: run_advantages<T>(in, size); break;
    case 1: run_token_advantages<T>(in, size); break;
    case 2: run_loss<T>(in, size); break;
    default: run_counts(in, size); break;
    }
}

} // namespace

GRPO_FUZZ_ENTRY_FLOAT_AND_DOUBLE()
