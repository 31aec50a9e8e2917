// SPDX-License-Identifier: MIT
// Shared pieces of grpo's libFuzzer harnesses (tests/fuzz/fuzz_*.cpp):
//   fuzz_input      a byte reader that draws sizes (small mostly, sometimes hostile), strides, extreme doubles,
//                   out-of-range enum values and flags; reading past the end yields zeros.
//   finding()       prints "GRPO-FUZZ FINDING [tag]: ..." and aborts: every oracle violation goes through it,
//                   so a crash log names the broken property.
//   call_checked()  runs a call that may only succeed or throw grpo::error; anything else is a finding.
//   buffers         byte snapshots (outputs untouched on error, inputs never written), sentinel fill, bitwise
//                   comparison, address sets for real element overlap.
//   layouts         matrix/vector layouts over a bounded buffer (contiguous, padded, column-major, broadcast,
//                   random strides, hostile strides), with the span computed in 128-bit arithmetic.
// Memory is bounded: a buffer is only allocated when its span is below kMaxElems; a larger (hostile) extent is
// only ever passed as a read-only view with both strides 0 over a one-element buffer, or as a view the library
// must reject.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <grpo/grpo.hpp>

namespace fuzz {

using grpo::index_t;

/// Largest buffer (in elements) a harness allocates from fuzz-driven sizes: 8 Mi elements, <= 64 MiB.
constexpr std::int64_t kMaxElems = std::int64_t(1) << 23;

/// Environment switches for triage (never needed in CI):
///   GRPO_FUZZ_SKIP=tag1,tag2   findings with these tags end the input quietly instead of aborting, so that a
///                              run can look past a known finding;
///   GRPO_FUZZ_NO_HOSTILE=1     no hostile extents/strides (they end in sanitizer reports that cannot be skipped);
///   GRPO_FUZZ_VERBOSE=1        harnesses describe each input on stderr.
inline const char* env(const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != 0 ? v : nullptr;
}
inline bool verbose() {
    static const bool v = env("GRPO_FUZZ_VERBOSE") != nullptr;
    return v;
}
inline bool hostile_enabled() {
    static const bool v = env("GRPO_FUZZ_NO_HOSTILE") == nullptr;
    return v;
}
/// Thrown by finding() for a tag listed in GRPO_FUZZ_SKIP; LLVMFuzzerTestOneInput returns on it.
struct skip_input {};
inline bool skipped(const char* tag) {
    const char* list = env("GRPO_FUZZ_SKIP");
    if (list == nullptr) return false;
    const std::string l = std::string(",") + list + ",";
    return l.find(std::string(",") + tag + ",") != std::string::npos;
}

[[noreturn]] inline void finding(const char* tag, const char* fmt, ...) {
    if (skipped(tag)) throw skip_input{};
    std::fprintf(stderr, "\nGRPO-FUZZ FINDING [%s]: ", tag);
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fprintf(stderr, "\n");
    std::fflush(stderr);
    std::abort();
}

/// Result of a call that may only succeed or throw grpo::error.
struct outcome {
    bool ok = true;
    grpo::errc code = grpo::errc::ok;
    std::string message;
};

/// Runs f(); grpo::error -> {false, code}; any other exception -> finding (the library promises grpo::error).
template <class F>
outcome call_checked(const char* what, F&& f) {
    outcome o;
    try {
        f();
    } catch (const skip_input&) {
        throw;
    } catch (const grpo::error& e) {
        o.ok = false;
        o.code = e.code();
        o.message = e.what();
        if (e.code() == grpo::errc::ok) finding("errc-ok", "%s threw grpo::error with errc::ok: %s", what, e.what());
    } catch (const std::bad_alloc&) {
        finding("bad-alloc", "%s threw std::bad_alloc (a size the library should reject with grpo::error)", what);
    } catch (const std::exception& e) {
        finding("foreign-exception", "%s threw a non-grpo exception: %s", what, e.what());
    } catch (...) {
        finding("foreign-exception", "%s threw a non-std exception", what);
    }
    return o;
}

// ---------------------------------------------------------------------------------------------------------
// The byte reader

class fuzz_input {
public:
    fuzz_input(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}

    std::size_t remaining() const { return n_ - pos_; }
    std::uint8_t u8() { return pos_ < n_ ? p_[pos_++] : 0; }
    std::uint16_t u16() { return std::uint16_t(u8() | (u8() << 8)); }
    std::uint32_t u32() { return std::uint32_t(u16()) | (std::uint32_t(u16()) << 16); }
    std::uint64_t u64() { return std::uint64_t(u32()) | (std::uint64_t(u32()) << 32); }
    bool flag() { return (u8() & 1) != 0; }
    /// True with probability about num/256.
    bool chance(int num) { return u8() < num; }
    /// Uniform-ish in [lo, hi] (inclusive), lo <= hi.
    std::int64_t range(std::int64_t lo, std::int64_t hi) {
        const std::uint64_t span = std::uint64_t(hi) - std::uint64_t(lo);
        if (span == 0) return lo;
        const std::uint64_t r = span < 256 ? u8() : span < 65536 ? u16() : u64();
        return std::int64_t(std::uint64_t(lo) + (span == ~std::uint64_t(0) ? r : r % (span + 1)));
    }

    /// Extents and counts that break arithmetic on their own: negative, or so large (>= 2^60) that any per-element
    /// scratch or stride product overflows. (A merely large extent, e.g. 3e9 rows, is a legal if unaffordable
    /// request and is not drawn alone; see hostile_pair.)
    static const std::vector<std::int64_t>& hostile_sizes() {
        static const std::vector<std::int64_t> v = {
            -1,
            -2,
            std::numeric_limits<std::int64_t>::min(),
            std::numeric_limits<std::int64_t>::max(),
            std::numeric_limits<std::int64_t>::max() - 1,
            std::int64_t(1) << 62,
            (std::int64_t(1) << 62) + 1,
            std::int64_t(1) << 61,
            (std::int64_t(1) << 63) / 11 + 1, // times sizeof(row_partials)/8 overflows
            (std::int64_t(1) << 60) + 3,
            -(std::int64_t(1) << 62),
        };
        return v;
    }
    std::int64_t hostile_size() { return hostile_sizes()[u8() % hostile_sizes().size()]; }
    /// Two extents whose product overflows int64 although each fits: (3037000500, 3037000500) or (2^32, 2^32).
    std::int64_t hostile_pair() { return flag() ? std::int64_t(3037000500) : std::int64_t(1) << 32; }

    /// A size: mostly in [0, small_max], sometimes larger (up to big_max, bounded), rarely hostile.
    std::int64_t size(std::int64_t small_max, std::int64_t big_max = 0, bool allow_hostile = true) {
        const std::uint8_t k = u8();
        if (allow_hostile && hostile_enabled() && k >= 250) return hostile_size();
        if (big_max > small_max && k >= 235) return range(small_max + 1, big_max);
        return range(0, small_max);
    }

    /// Doubles that break arithmetic (finite ones first).
    static const std::vector<double>& extreme_doubles() {
        static const std::vector<double> v = {
            0.0, -0.0, 1.0, -1.0, 1e38, -1e38, 3e38, -3e38, 1e-300, -1e-300, 4.9e-324, 2.2250738585072009e-308, 1e-45,
            1.17549435e-38, 88.8, -88.8, 709.9, -709.9, 103.0, -103.0, 745.2, 1e308, -1e308, 1.7e308, 1e-7, 0.5, 2.0,
            20.0, -20.0, 1e10, -1e10,
            // non-finite last: index >= kFiniteExtremes
            std::numeric_limits<double>::quiet_NaN(), -std::numeric_limits<double>::quiet_NaN(),
            std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()};
        return v;
    }
    static constexpr int kFiniteExtremes = 31;

    /// A finite value in [-scale, scale] with 16-bit resolution.
    double moderate(double scale) { return (double(u16()) / 32767.5 - 1.0) * scale; }

    /// A double: `tame` -> moderate values only; otherwise a mix of moderate, small integers and extremes
    /// (non-finite ones only when allow_nonfinite).
    double value(bool tame, bool allow_nonfinite, double scale = 4.0) {
        if (tame) return moderate(scale);
        const std::uint8_t k = u8();
        if (k < 150) return moderate(scale);
        if (k < 190) return double(int(u8() % 7) - 3);
        const int n = allow_nonfinite ? int(extreme_doubles().size()) : kFiniteExtremes;
        return extreme_doubles()[u8() % n];
    }

    /// An enum value: usually one of the `count` valid ones, sometimes an out-of-range one (count..count+9, 255).
    template <class E>
    E enum_value(int count, bool allow_invalid = true) {
        const std::uint8_t k = u8();
        if (allow_invalid && k >= 248) {
            const int bad[] = {count, count + 1, 7, 9, 255, -1};
            return static_cast<E>(bad[u8() % 6]);
        }
        return static_cast<E>(k % count);
    }

    /// A configuration double: mostly from `usual`, sometimes an extreme (NaN, Inf, negative, huge).
    double config_double(std::initializer_list<double> usual) {
        const std::uint8_t k = u8();
        if (k < 200) return *(usual.begin() + (u8() % usual.size()));
        if (k < 230) return moderate(4.0);
        return extreme_doubles()[u8() % extreme_doubles().size()];
    }

private:
    const std::uint8_t* p_;
    std::size_t n_;
    std::size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------------------
// Buffers

inline bool bits_equal(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
inline bool bits_equal(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

/// A copy of a byte range, to compare after a call.
class snapshot {
public:
    snapshot() = default;
    snapshot(const void* p, std::size_t bytes)
        : p_(p), bytes_(static_cast<const unsigned char*>(p), static_cast<const unsigned char*>(p) + bytes) {}
    /// Offset of the first changed byte, or -1.
    std::ptrdiff_t first_change() const {
        const auto* q = static_cast<const unsigned char*>(p_);
        for (std::size_t k = 0; k < bytes_.size(); ++k)
            if (q[k] != bytes_[k]) return static_cast<std::ptrdiff_t>(k);
        return -1;
    }
    void restore() const {
        if (!bytes_.empty()) std::memcpy(const_cast<void*>(p_), bytes_.data(), bytes_.size());
    }

private:
    const void* p_ = nullptr;
    std::vector<unsigned char> bytes_;
};

/// Fills with a recognizable byte pattern (0xA5 0x5A ...): a float/double there is a small odd value, so a
/// write of 0 or of any computed value changes it.
inline void fill_sentinel(void* p, std::size_t bytes) {
    auto* q = static_cast<unsigned char*>(p);
    for (std::size_t k = 0; k < bytes; ++k) q[k] = (k & 1) ? 0x5A : 0xA5;
}

// ---------------------------------------------------------------------------------------------------------
// Layouts

/// How a [rows, cols] view lies in its buffer.
struct layout {
    std::int64_t rows = 0, cols = 0, rs = 0, cs = 1, offset = 0;
    __int128 span = 0;  ///< elements from the buffer start to one past the last element (0 when empty)
    bool backed = true; ///< span fits in kMaxElems (the buffer holds it); else a 1-element buffer
};

inline __int128 span_of(std::int64_t rows, std::int64_t cols, std::int64_t rs, std::int64_t cs, std::int64_t offset) {
    if (rows <= 0 || cols <= 0) return offset;
    return __int128(offset) + __int128(rows - 1) * rs + __int128(cols - 1) * cs + 1;
}

/// Draws the strides of a [rows, cols] view. Read-only views may broadcast (stride 0); `hostile` allows
/// negative and huge strides (the view constructor or the call must reject them).
inline layout draw_layout(fuzz_input& in, std::int64_t rows, std::int64_t cols, bool read_only, bool hostile = true) {
    layout L;
    L.rows = rows;
    L.cols = cols;
    const std::uint8_t k = in.u8() % 16;
    // Strides are computed in 128 bits and saturated, so that hostile extents do not overflow here.
    const __int128 r = rows > 0 ? rows : 1, c = cols > 0 ? cols : 1;
    __int128 rs = c, cs = 1;
    switch (k) {
    default: break;                          // row-major contiguous (0..7)
    case 8: rs = c + in.u8() % 5 + 1; break; // padded rows
    case 9:
        rs = 1;
        cs = r;
        break; // column-major
    case 10:
        rs = 1;
        cs = r + in.u8() % 3 + 1;
        break;                              // padded column-major
    case 11: rs = read_only ? 0 : c; break; // every row the same
    case 12:
        rs = read_only ? 1 : c;
        cs = read_only ? 0 : 1;
        break; // broadcast over tokens
    case 13:
        rs = in.u8() % 6;
        cs = in.u8() % 4;
        break; // anything small
    case 14:
        rs = c * 2;
        cs = 2;
        break; // every other element
    case 15:
        if (hostile && hostile_enabled()) {
            const __int128 bad[] = {-1,
                                    -c,
                                    __int128(1) << 62,
                                    std::numeric_limits<std::int64_t>::max(),
                                    __int128(1) << 40,
                                    std::numeric_limits<std::int64_t>::min()};
            if (in.flag()) rs = bad[in.u8() % 6];
            else cs = bad[in.u8() % 6];
        }
        break;
    }
    auto sat = [](__int128 v) {
        const __int128 hi = std::numeric_limits<std::int64_t>::max(), lo = std::numeric_limits<std::int64_t>::min();
        return std::int64_t(v > hi ? hi : v < lo ? lo : v);
    };
    L.rs = sat(rs);
    L.cs = sat(cs);
    L.offset = in.chance(40) ? std::int64_t(in.u8() % 4) : 0;
    L.span = span_of(rows, cols, L.rs, L.cs, L.offset);
    if (L.span > kMaxElems || L.span < 0) {
        // Too big to back: read-only views broadcast one element; writable ones stay unbacked (must be rejected).
        if (read_only) {
            L.rs = 0;
            L.cs = 0;
            L.offset = 0;
            L.span = rows > 0 && cols > 0 ? 1 : 0;
        } else {
            L.backed = false;
        }
    }
    return L;
}

/// Element offsets (from the buffer start) of every (i, j) of a backed layout, or of those where keep(i, j).
template <class Keep>
std::vector<std::int64_t> offsets_of(const layout& L, Keep keep) {
    std::vector<std::int64_t> out;
    if (!L.backed || L.rows <= 0 || L.cols <= 0) return out;
    for (std::int64_t i = 0; i < L.rows; ++i)
        for (std::int64_t j = 0; j < L.cols; ++j)
            if (keep(i, j)) out.push_back(L.offset + i * L.rs + j * L.cs);
    return out;
}

/// True when two element-offset sets in the same buffer share an element.
inline bool share_element(const std::vector<std::int64_t>& a, const std::vector<std::int64_t>& b) {
    std::set<std::int64_t> s(a.begin(), a.end());
    for (std::int64_t x : b)
        if (s.count(x)) return true;
    return false;
}

/// True when distinct (i, j) of a layout map to the same element.
inline bool self_overlapping(const layout& L) {
    const auto all = offsets_of(L, [](std::int64_t, std::int64_t) { return true; });
    std::set<std::int64_t> s(all.begin(), all.end());
    return s.size() != all.size();
}

/// Thread pools shared by every run (creating threads per input would dominate the cost).
inline grpo::thread_pool& pool(unsigned threads) {
    static grpo::thread_pool p2(2), p3(3);
    return threads == 2 ? p2 : p3;
}

/// |a - b| <= rel * max(1, |a|, |b|), NaN only with NaN (the CUDA tests' `close`).
inline bool close(double a, double b, double rel) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    if (std::isinf(a) || std::isinf(b)) return a == b;
    return std::fabs(a - b) <= rel * std::fmax(1.0, std::fmax(std::fabs(a), std::fabs(b)));
}

} // namespace fuzz

/// The libFuzzer entry point of a harness whose `run<T>(fuzz_input&)` takes the element type: the first byte
/// picks double or float; skip_input (a known finding skipped with GRPO_FUZZ_SKIP) ends the input quietly.
#define GRPO_FUZZ_ENTRY_FLOAT_AND_DOUBLE()                                              \
    extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { \
        fuzz::fuzz_input in(data, size);                                                \
        try {                                                                           \
            if (in.flag()) run<double>(in);                                             \
            else run<float>(in);                                                        \
        } catch (const fuzz::skip_input&) {}                                            \
        return 0;                                                                       \
    }
