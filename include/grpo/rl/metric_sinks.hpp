// SPDX-License-Identifier: MIT
// Metric sinks that write files: JSONL (one object per step), CSV (one row per step) and TensorBoard event files
// written directly (TFRecord framing with masked CRC-32C, and the few protobuf fields of an Event with scalar
// summaries, encoded by hand: no protobuf runtime). Every write is flushed to the operating system before it
// returns. log_to_directory() puts all three in one run directory.
#pragma once

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "../core/error.hpp"
#include "metrics.hpp"

GRPO_NAMESPACE_BEGIN

namespace detail {

/// A file opened for writing; every failure throws grpo::error (errc::io) naming the file and the reason.
class output_file {
public:
    output_file(std::string path, const char* mode, const char* where) : path_(std::move(path)), where_(where) {
        open(mode);
    }
    ~output_file() {
        if (f_ != nullptr) std::fclose(f_);
    }
    output_file(const output_file&) = delete;
    output_file& operator=(const output_file&) = delete;

    const std::string& path() const noexcept { return path_; }
    /// Writes and flushes to the operating system.
    void write(const std::string& bytes) {
        if (f_ == nullptr) fail("write to", "the file is closed after an earlier failure");
        if (std::fwrite(bytes.data(), 1, bytes.size(), f_) != bytes.size() || std::fflush(f_) != 0)
            fail("write to", std::strerror(errno));
    }
    /// Replaces the file's content with `bytes` (written beside it, then renamed over it) and reopens it for
    /// appending.
    void replace(const std::string& bytes) {
        const std::string tmp = path_ + ".tmp";
        {
            output_file t(tmp, "wb", where_);
            t.write(bytes);
        }
        if (f_ != nullptr) std::fclose(f_);
        f_ = nullptr;
        if (std::rename(tmp.c_str(), path_.c_str()) != 0) fail("rename " + tmp + " to", std::strerror(errno));
        open("ab");
    }
    /// The file's content as written so far.
    std::string read() const {
        std::ifstream in(path_, std::ios::binary);
        std::ostringstream s;
        s << in.rdbuf();
        if (!in.good() && !in.eof()) fail("read", "the stream failed");
        return s.str();
    }

private:
    void open(const char* mode) {
        f_ = std::fopen(path_.c_str(), mode);
        if (f_ == nullptr) fail("open", std::strerror(errno));
    }
    [[noreturn]] void fail(const std::string& what, const std::string& why) const {
        raise(errc::io, std::string("grpo::") + where_ + ": cannot " + what + " '" + path_ + "': " + why);
    }

    std::string path_;
    const char* where_;
    std::FILE* f_ = nullptr;
};

/// The shortest decimal text that reads back as exactly v (std::to_chars; locale-independent): "nan", "inf" and
/// "-inf" for the non-finite values.
inline std::string shortest_decimal(double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

/// A JSON string literal (metric names are UTF-8 without control characters: only " and \ need escaping).
inline std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + '"';
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a space at either end.
inline std::string csv_field(const std::string& s) {
    const bool quote = s.find_first_of(",\"") != std::string::npos || s.front() == ' ' || s.back() == ' ';
    if (!quote) return s;
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + '"';
}

// ---- TensorBoard event files: TFRecord framing and the Event / Summary protobuf messages ----

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord frames use it.
inline std::uint32_t crc32c(const unsigned char* p, std::size_t n) {
    static const std::array<std::uint32_t, 256> table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    std::uint32_t c = 0xFFFFFFFFu;
    for (std::size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/// TFRecord's masked CRC: rotate right by 15, add a constant (so that CRCs of CRCs stay well distributed).
inline std::uint32_t masked_crc32c(const std::string& bytes) {
    const std::uint32_t c = crc32c(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

inline void put_le(std::string& out, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFFu);
}

/// One TFRecord: uint64 length, masked CRC of the length, data, masked CRC of the data (all little-endian).
inline std::string tfrecord(const std::string& data) {
    std::string len;
    put_le(len, data.size(), 8);
    std::string out = len;
    put_le(out, masked_crc32c(len), 4);
    out += data;
    put_le(out, masked_crc32c(data), 4);
    return out;
}

inline void put_varint(std::string& out, std::uint64_t v) {
    while (v >= 0x80) {
        out += static_cast<char>((v & 0x7Fu) | 0x80u);
        v >>= 7;
    }
    out += static_cast<char>(v);
}
/// A length-delimited field (wire type 2): strings and embedded messages.
inline void put_bytes_field(std::string& out, int field, const std::string& bytes) {
    put_varint(out, static_cast<std::uint64_t>(field) << 3 | 2u);
    put_varint(out, bytes.size());
    out += bytes;
}

/// tensorflow.Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; } with
/// Summary { repeated Value value = 1; } and Value { string tag = 1; float simple_value = 2; }: the scalars as
/// TensorBoard's own writers (tf.summary v1, torch.utils.tensorboard) store them, in float32.
inline std::string event_message(double wall_time, std::int64_t step, const std::string* file_version,
                                 const metric_record* scalars) {
    std::string ev;
    ev += static_cast<char>(1 << 3 | 1); // wall_time, fixed64
    std::uint64_t bits = 0;
    std::memcpy(&bits, &wall_time, sizeof bits);
    put_le(ev, bits, 8);
    if (step != 0) {
        put_varint(ev, 2 << 3 | 0); // step, varint (two's complement for negatives, as protobuf's int64)
        put_varint(ev, static_cast<std::uint64_t>(step));
    }
    if (file_version != nullptr) put_bytes_field(ev, 3, *file_version);
    if (scalars != nullptr) {
        std::string summary;
        for (const auto& nv : scalars->values) {
            std::string value;
            put_bytes_field(value, 1, nv.first);
            value += static_cast<char>(2 << 3 | 5); // simple_value, fixed32
            const auto f = static_cast<float>(nv.second);
            std::uint32_t fb = 0;
            std::memcpy(&fb, &f, sizeof fb);
            put_le(value, fb, 4);
            put_bytes_field(summary, 1, value);
        }
        put_bytes_field(ev, 5, summary);
    }
    return ev;
}

inline std::string host_name() {
#if defined(__unix__) || defined(__APPLE__)
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) == 0 && buf[0] != '\0') {
        std::string h(buf);
        for (char& c : h) // keep the file name a plain name
            if (c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = '_';
        return h;
    }
#endif
    return "localhost";
}

inline long process_id() {
#if defined(__unix__) || defined(__APPLE__)
    return static_cast<long>(getpid());
#else
    return 0;
#endif
}

} // namespace detail

/// JSON Lines: one object per step, {"step": 3, "wall_time": 1733312345.25, "reward": 0.5, ...}, in the record's
/// order, each number the shortest text that reads back exactly; NaN and infinities (which JSON cannot hold) are
/// written as null. Truncates the file, or appends to it with append = true.
class jsonl_sink final : public metrics_sink {
public:
    /// Throws grpo::error (errc::io) when the file cannot be opened.
    explicit jsonl_sink(const std::string& path, bool append = false)
        : file_(path, append ? "ab" : "wb", "jsonl_sink") {}
    void write(const metric_record& r) override {
        std::string line = "{\"step\": " + std::to_string(r.step) + ", \"wall_time\": " + number(r.wall_time);
        for (const auto& nv : r.values) line += ", " + detail::json_string(nv.first) + ": " + number(nv.second);
        line += "}\n";
        const std::lock_guard<std::mutex> lock(m_);
        file_.write(line);
    }
    const std::string& path() const noexcept { return file_.path(); }

private:
    static std::string number(double v) { return std::isfinite(v) ? detail::shortest_decimal(v) : "null"; }
    std::mutex m_;
    detail::output_file file_;
};

/// CSV: a header "step,wall_time,<names>" and one row per step, a cell empty where the step has no value, NaN
/// and infinities as nan, inf, -inf. A name first seen after the header was written adds a column: the file is
/// rewritten with the wider header (its earlier rows get empty cells), so the file is always one table.
class csv_sink final : public metrics_sink {
public:
    /// Throws grpo::error (errc::io) when the file cannot be opened. Truncates the file.
    explicit csv_sink(const std::string& path) : file_(path, "wb", "csv_sink") {}
    void write(const metric_record& r) override {
        const std::lock_guard<std::mutex> lock(m_);
        std::vector<std::string> added;
        for (const auto& nv : r.values) {
            bool known = false;
            for (const auto& c : columns_) known = known || c == nv.first;
            for (const auto& c : added) known = known || c == nv.first;
            if (!known) added.push_back(nv.first);
        }
        if (!header_written_ || !added.empty()) {
            std::string content;
            if (header_written_) content = file_.read();
            std::vector<std::string> columns = columns_;
            columns.insert(columns.end(), added.begin(), added.end());
            std::string header = "step,wall_time";
            for (const auto& c : columns) header += "," + detail::csv_field(c);
            header += '\n';
            if (!header_written_) {
                file_.write(header);
            } else {
                // Old rows are numbers only: each line gets one empty cell per new column.
                std::string body;
                const std::string pad(added.size(), ',');
                std::size_t pos = content.find('\n');
                pos = pos == std::string::npos ? content.size() : pos + 1;
                while (pos < content.size()) {
                    const std::size_t end = content.find('\n', pos);
                    const std::size_t stop = end == std::string::npos ? content.size() : end;
                    body.append(content, pos, stop - pos);
                    body += pad;
                    body += '\n';
                    pos = stop + 1;
                }
                file_.replace(header + body);
            }
            columns_ = std::move(columns);
            header_written_ = true;
        }
        std::string row = std::to_string(r.step) + "," + detail::shortest_decimal(r.wall_time);
        for (const auto& c : columns_) {
            row += ',';
            if (const double* v = r.find(c)) row += detail::shortest_decimal(*v);
        }
        row += '\n';
        file_.write(row);
    }
    const std::string& path() const noexcept { return file_.path(); }

private:
    std::mutex m_;
    detail::output_file file_;
    std::vector<std::string> columns_;
    bool header_written_ = false;
};

/// TensorBoard event file in `logdir` (created if missing): events.out.tfevents.<unix time>.<host>.<pid>.<n>, as
/// TensorBoard's own writers name theirs. Each step is one Event with a scalar summary per metric (tag = the
/// metric's name, simple_value = its value in float32); TensorBoard's reader shows them as scalars. The first
/// record is the file-version event ("brain.Event:2").
class tensorboard_sink final : public metrics_sink {
public:
    /// Throws grpo::error (errc::io) when the directory cannot be created or the file opened.
    explicit tensorboard_sink(const std::string& logdir) : file_(open_path(logdir), "wb", "tensorboard_sink") {
        const std::string version = "brain.Event:2";
        const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        file_.write(detail::tfrecord(detail::event_message(now, 0, &version, nullptr)));
    }
    void write(const metric_record& r) override {
        const std::string rec = detail::tfrecord(detail::event_message(r.wall_time, r.step, nullptr, &r));
        const std::lock_guard<std::mutex> lock(m_);
        file_.write(rec);
    }
    /// The event file's path.
    const std::string& path() const noexcept { return file_.path(); }

private:
    static std::string open_path(const std::string& logdir) {
        std::error_code ec;
        std::filesystem::create_directories(logdir, ec);
        if (ec)
            detail::raise(errc::io,
                          "grpo::tensorboard_sink: cannot create the directory '" + logdir + "': " + ec.message());
        static std::atomic<unsigned> counter{0};
        const auto secs = static_cast<long long>(
            std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                .count());
        const std::string name = "events.out.tfevents." + std::to_string(secs) + "." + detail::host_name() + "." +
                                 std::to_string(detail::process_id()) + "." + std::to_string(counter++);
        return (std::filesystem::path(logdir) / name).string();
    }
    std::mutex m_;
    detail::output_file file_;
};

/// Which files log_to_directory writes (a bit set).
enum metric_files : unsigned {
    metric_jsonl = 1,       ///< <dir>/metrics.jsonl
    metric_csv = 2,         ///< <dir>/metrics.csv
    metric_tensorboard = 4, ///< <dir>/events.out.tfevents.*
    metric_all_files = 7,
};

/// Adds sinks writing one run to `dir` (created if missing): metrics.jsonl, metrics.csv (both truncated) and a
/// TensorBoard event file, as `files` selects. `tensorboard --logdir <dir>` then shows the run. Throws grpo::error
/// (errc::io) when the directory or a file cannot be created (the sinks created before stay added).
inline void log_to_directory(metrics_logger& logger, const std::string& dir, unsigned files = metric_all_files) {
    if ((files & ~unsigned(metric_all_files)) != 0 || files == 0)
        detail::raise_argument(errc::invalid_value, "log_to_directory", "files",
                               "a non-empty combination of metric_jsonl, metric_csv, metric_tensorboard",
                               std::to_string(files));
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec)
        detail::raise(errc::io, "grpo::log_to_directory: cannot create the directory '" + dir + "': " + ec.message());
    const std::filesystem::path d(dir);
    if (files & metric_jsonl) logger.add_sink(std::make_unique<jsonl_sink>((d / "metrics.jsonl").string()));
    if (files & metric_csv) logger.add_sink(std::make_unique<csv_sink>((d / "metrics.csv").string()));
    if (files & metric_tensorboard) logger.add_sink(std::make_unique<tensorboard_sink>(dir));
}

GRPO_NAMESPACE_END
