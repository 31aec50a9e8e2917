// SPDX-License-Identifier: MIT
// Training metrics: names (TRL / verl), the logger's step records, and the JSONL, CSV and TensorBoard sinks (the
// event file decoded here by an independent reader; tests/metrics/ reads it with TensorBoard's own).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <grpo/grpo.hpp>

#include "catch.hpp"

namespace {

namespace fs = std::filesystem;

/// A fresh, empty directory under the system's temporary directory, removed at scope exit.
struct temp_dir {
    fs::path path;
    temp_dir() {
        static int n = 0;
        path = fs::temp_directory_path() /
               ("grpo_test_metrics_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) +
                "_" + std::to_string(n++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

/// Keeps every record it is handed; throws grpo::error (errc::io) while `fail` is set.
struct recording_sink : grpo::metrics_sink {
    std::vector<grpo::metric_record>* out;
    bool* fail;
    recording_sink(std::vector<grpo::metric_record>* o, bool* f) : out(o), fail(f) {}
    void write(const grpo::metric_record& r) override {
        if (*fail) throw grpo::error(grpo::errc::io, "recording_sink: failing on purpose");
        out->push_back(r);
    }
};

grpo::errc code_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const grpo::error& e) {
        return e.code();
    }
    return grpo::errc::ok;
}

// ---- An independent reader of TFRecord files and of the Event fields grpo writes ----

std::uint32_t crc32c_bitwise(const std::string& s) { // bit by bit, without a table
    std::uint32_t c = 0xFFFFFFFFu;
    for (const char ch : s) {
        c ^= static_cast<unsigned char>(ch);
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}
std::uint32_t masked(std::uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }
std::uint64_t le(const std::string& s, std::size_t at, int bytes) {
    std::uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(s[at + static_cast<std::size_t>(i)]);
    return v;
}

/// The records of a TFRecord file; REQUIREs both CRCs of each.
std::vector<std::string> read_records(const std::string& file) {
    std::vector<std::string> out;
    std::size_t at = 0;
    while (at < file.size()) {
        REQUIRE(file.size() - at >= 12);
        const std::uint64_t len = le(file, at, 8);
        REQUIRE(le(file, at + 8, 4) == masked(crc32c_bitwise(file.substr(at, 8))));
        REQUIRE(file.size() - at - 12 >= len + 4);
        const std::string data = file.substr(at + 12, len);
        REQUIRE(le(file, at + 12 + len, 4) == masked(crc32c_bitwise(data)));
        out.push_back(data);
        at += 12 + len + 4;
    }
    return out;
}

struct decoded_event {
    double wall_time = 0;
    std::int64_t step = 0;
    std::string file_version;
    std::vector<std::pair<std::string, float>> scalars;
};

std::uint64_t varint(const std::string& s, std::size_t& at) {
    std::uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
        REQUIRE(at < s.size());
        const auto b = static_cast<unsigned char>(s[at++]);
        v |= std::uint64_t(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
}

/// Decodes the fields of a message: calls f(field, wire type, payload or value).
template <class F>
void fields(const std::string& m, F f) {
    std::size_t at = 0;
    while (at < m.size()) {
        const std::uint64_t key = varint(m, at);
        const int wire = static_cast<int>(key & 7), field = static_cast<int>(key >> 3);
        if (wire == 0) {
            f(field, wire, std::string(), varint(m, at));
        } else if (wire == 1 || wire == 5) {
            const int n = wire == 1 ? 8 : 4;
            REQUIRE(m.size() - at >= std::size_t(n));
            f(field, wire, m.substr(at, std::size_t(n)), 0);
            at += std::size_t(n);
        } else {
            REQUIRE(wire == 2);
            const std::uint64_t len = varint(m, at);
            REQUIRE(m.size() - at >= len);
            f(field, wire, m.substr(at, len), 0);
            at += len;
        }
    }
}

decoded_event decode_event(const std::string& m) {
    decoded_event e;
    fields(m, [&](int field, int wire, const std::string& bytes, std::uint64_t v) {
        if (field == 1) {
            REQUIRE(wire == 1);
            const std::uint64_t bits = le(bytes, 0, 8);
            std::memcpy(&e.wall_time, &bits, 8);
        } else if (field == 2) {
            REQUIRE(wire == 0);
            e.step = static_cast<std::int64_t>(v);
        } else if (field == 3) {
            e.file_version = bytes;
        } else {
            REQUIRE(field == 5);
            fields(bytes, [&](int vf, int, const std::string& value, std::uint64_t) {
                REQUIRE(vf == 1);
                std::string tag;
                float x = 0;
                bool has_value = false;
                fields(value, [&](int f2, int w2, const std::string& b2, std::uint64_t) {
                    if (f2 == 1) tag = b2;
                    else {
                        REQUIRE((f2 == 2 && w2 == 5));
                        const auto bits = static_cast<std::uint32_t>(le(b2, 0, 4));
                        std::memcpy(&x, &bits, 4);
                        has_value = true;
                    }
                });
                REQUIRE(has_value);
                e.scalars.emplace_back(tag, x);
            });
        }
    });
    return e;
}

grpo::metric_record sample_record() {
    grpo::metric_record r;
    r.step = 7;
    r.wall_time = 1733312345.25;
    r.set("reward", 0.1);
    r.set("kl", 1e-300);
    r.set("nan", std::numeric_limits<double>::quiet_NaN());
    r.set("inf", std::numeric_limits<double>::infinity());
    r.set("neg/inf", -std::numeric_limits<double>::infinity());
    r.set("quote\"back\\slash, comma", -2.5);
    r.set("unicode/\xc3\xbc\xe2\x82\xac", 3); // u-umlaut, euro sign
    return r;
}

} // namespace

TEST_CASE("metrics: names are checked (UTF-8, no control characters, not reserved)", "[metrics]") {
    const auto ok = [](const std::string& n) {
        return code_of([&] { grpo::detail::check_metric_name("test", n); }) == grpo::errc::ok;
    };
    CHECK(ok("reward"));
    CHECK(ok("rewards/exact match/mean"));
    CHECK(ok("\xc3\xbc\xe2\x82\xac\xf0\x9f\x98\x80")); // 2, 3 and 4-byte sequences
    CHECK(ok(std::string(1024, 'a')));
    CHECK(!ok(""));
    CHECK(!ok(std::string(1025, 'a')));
    CHECK(!ok("step"));
    CHECK(!ok("wall_time"));
    CHECK(!ok("a\nb"));
    CHECK(!ok("a\tb"));
    CHECK(!ok(std::string("a\0b", 3)));
    CHECK(!ok("a\x7f"));
    CHECK(!ok("\xc0\xaf"));         // overlong '/'
    CHECK(!ok("\xe0\x80\xaf"));     // overlong, 3 bytes
    CHECK(!ok("\xed\xa0\x80"));     // a surrogate
    CHECK(!ok("\xf4\x90\x80\x80")); // above U+10FFFF
    CHECK(!ok("\xe2\x82"));         // truncated
    CHECK(!ok("\x80"));             // a lone continuation byte
    CHECK(!ok("\xc3\x28"));         // a bad continuation byte
}

TEST_CASE("metrics: a record keeps first positions and last values", "[metrics]") {
    grpo::metric_record r;
    r.set("b", 1);
    r.set("a", 2);
    r.set("b", 3);
    REQUIRE(r.values.size() == 2);
    CHECK(r.values[0].first == "b");
    CHECK(r.values[0].second == 3);
    CHECK(*r.find("a") == 2);
    CHECK(r.find("c") == nullptr);
    CHECK(code_of([&] { r.set("step", 1); }) == grpo::errc::invalid_value);
    CHECK(r.values.size() == 2);
}

TEST_CASE("metrics: a step's metrics under TRL's and verl's names", "[metrics]") {
    grpo::step_metrics m;
    m.step = 3;
    m.reward_mean = 0.5;
    m.reward_std = 0.25;
    m.reward_function_names = {"exact_match", "format"};
    m.reward_function_means = {0.4, 1.0};
    m.reward_function_stds = {0.5, 0.0};
    m.zero_variance_fraction = 0.125;
    m.advantage_mean = 0.01;
    m.advantage_std = 0.9;
    m.advantage_min = -1.5;
    m.advantage_max = 1.25;
    m.loss = 0.3;
    m.policy_loss = 0.2;
    m.kl_mean = 0.05;
    m.kl_loss = 0.04;
    m.clip_fraction_low = 0.01;
    m.clip_fraction_high = 0.02;
    m.clip_fraction_region = 0.03;
    m.dual_clip_fraction = 0.004;
    m.ratio_mean = 1.001;
    m.approx_kl = 0.002;
    m.completion_length_mean = 12.5;
    m.completion_length_min = 3;
    m.completion_length_max = 20;
    m.truncated_fraction = 0.0625;
    m.tokens = 400;
    m.dropped_groups = 2;
    m.masked_truncated = 4;
    m.updates = 2;
    m.reference_refreshed = true;

    grpo::metric_record trl, verl;
    grpo::add_step_metrics(trl, m, grpo::metric_names::trl);
    grpo::add_step_metrics(verl, m, grpo::metric_names::verl);
    const auto at = [](const grpo::metric_record& r, const char* name) {
        const double* v = r.find(name);
        INFO(name);
        REQUIRE(v != nullptr);
        return *v;
    };
    // TRL GRPOTrainer's keys (its _metrics / log_history).
    CHECK(at(trl, "reward") == 0.5);
    CHECK(at(trl, "reward_std") == 0.25);
    CHECK(at(trl, "rewards/exact_match/mean") == 0.4);
    CHECK(at(trl, "rewards/exact_match/std") == 0.5);
    CHECK(at(trl, "rewards/format/mean") == 1.0);
    CHECK(at(trl, "frac_reward_zero_std") == 0.125);
    CHECK(at(trl, "kl") == 0.05);
    CHECK(at(trl, "loss") == 0.3);
    CHECK(at(trl, "clip_ratio/low_mean") == 0.01);
    CHECK(at(trl, "clip_ratio/high_mean") == 0.02);
    CHECK(at(trl, "clip_ratio/region_mean") == 0.03);
    CHECK(at(trl, "completions/mean_length") == 12.5);
    CHECK(at(trl, "completions/min_length") == 3);
    CHECK(at(trl, "completions/max_length") == 20);
    CHECK(at(trl, "completions/clipped_ratio") == 0.0625);
    // verl's keys (metric_utils.compute_data_metrics, the actor's update_policy).
    CHECK(at(verl, "critic/score/mean") == 0.5);
    CHECK(at(verl, "critic/advantages/mean") == 0.01);
    CHECK(at(verl, "critic/advantages/min") == -1.5);
    CHECK(at(verl, "critic/advantages/max") == 1.25);
    CHECK(at(verl, "actor/pg_loss") == 0.2);
    CHECK(at(verl, "actor/kl_loss") == 0.04);
    CHECK(at(verl, "actor/pg_clipfrac") == 0.03);
    CHECK(at(verl, "actor/pg_clipfrac_lower") == 0.004);
    CHECK(at(verl, "actor/ppo_kl") == 0.002);
    CHECK(at(verl, "response_length/mean") == 12.5);
    CHECK(at(verl, "response_length/max") == 20);
    CHECK(at(verl, "response_length/clip_ratio") == 0.0625);
    // grpo's own, under both.
    for (const auto* r : {&trl, &verl}) {
        CHECK(at(*r, "frac_reward_zero_std") == 0.125);
        CHECK(at(*r, "rewards/format/std") == 0.0);
        CHECK(at(*r, "num_loss_tokens") == 400);
        CHECK(at(*r, "dropped_groups") == 2);
        CHECK(at(*r, "masked_truncated_completions") == 4);
        CHECK(at(*r, "updates") == 2);
        CHECK(at(*r, "reference_refreshed") == 1);
    }
    CHECK(trl.values.size() == verl.values.size());
    CHECK(trl.find("actor/pg_loss") == nullptr);
    CHECK(verl.find("reward") == nullptr);

    // A reward function whose name makes an invalid metric name: nothing is added.
    grpo::metric_record r;
    r.set("keep", 1);
    m.reward_function_names[1] = "bad\nname";
    CHECK(code_of([&] { grpo::add_step_metrics(r, m); }) == grpo::errc::invalid_value);
    CHECK(r.values.size() == 1);
}

TEST_CASE("metrics: the logger writes a step once the next begins, at flush and at destruction", "[metrics]") {
    std::vector<grpo::metric_record> a, b;
    bool fail_a = false, fail_b = false;
    {
        grpo::metrics_logger log;
        log.add_sink(std::make_unique<recording_sink>(&a, &fail_a));
        log.add_sink(std::make_unique<recording_sink>(&b, &fail_b));
        CHECK(code_of([&] { log.add_sink(nullptr); }) == grpo::errc::invalid_value);
        log.log(1, "reward", 0.5);
        log.log(1, "eval_accuracy", 0.25);
        log.log(1, "reward", 0.75); // the last value wins
        CHECK(a.empty());
        log.log(2, "reward", 1.0);
        REQUIRE(a.size() == 1);
        CHECK(a[0].step == 1);
        REQUIRE(a[0].values.size() == 2);
        CHECK(*a[0].find("reward") == 0.75);
        CHECK(*a[0].find("eval_accuracy") == 0.25);
        CHECK(a[0].wall_time > 1.6e9); // seconds since the epoch, after 2020
        // Steps never go back; the rejected value is not logged.
        CHECK(code_of([&] { log.log(1, "late", 1.0); }) == grpo::errc::invalid_value);
        CHECK(code_of([&] { log.log(-1, "x", 1.0); }) == grpo::errc::invalid_value);
        CHECK(code_of([&] { log.log(2, "a\nb", 1.0); }) == grpo::errc::invalid_value);
        log.flush();
        REQUIRE(a.size() == 2);
        CHECK(a[1].values.size() == 1);
        log.flush(); // nothing pending
        CHECK(a.size() == 2);
        CHECK(code_of([&] { log.log(1, "late", 1.0); }) == grpo::errc::invalid_value);
        // A failing sink: the others still get the record, the error propagates, the new value is kept.
        log.log(3, "x", 3);
        fail_a = true;
        CHECK(code_of([&] { log.log(4, "x", 4); }) == grpo::errc::io);
        CHECK(b.size() == 3);
        CHECK(b[2].step == 3);
        fail_a = false;
        log.log(5, "y", 5); // writes step 4
        REQUIRE(a.size() == 3);
        CHECK(a[2].step == 4);
        log.log(5, "z", 6); // pending at destruction
    }
    REQUIRE(a.size() == 4);
    CHECK(a[3].step == 5);
    CHECK(a[3].values.size() == 2);
    CHECK(b.size() == 5);
}

TEST_CASE("metrics: JSONL lines hold every value exactly, non-finite as null", "[metrics]") {
    temp_dir d;
    {
        grpo::jsonl_sink s(d / "m.jsonl");
        s.write(sample_record());
        grpo::metric_record r;
        r.step = 8;
        r.wall_time = 0.5;
        s.write(r);
        // Flushed at each write: the file holds both lines before the sink is destroyed.
        CHECK(slurp(d / "m.jsonl") ==
              "{\"step\": 7, \"wall_time\": 1733312345.25, \"reward\": 0.1, \"kl\": 1e-300, \"nan\": null, \"inf\": "
              "null, \"neg/inf\": null, \"quote\\\"back\\\\slash, comma\": -2.5, \"unicode/\xc3\xbc\xe2\x82\xac\": "
              "3}\n{\"step\": 8, \"wall_time\": 0.5}\n");
    }
    {
        grpo::jsonl_sink s(d / "m.jsonl", true); // append
        grpo::metric_record r;
        r.step = 9;
        r.set("x", 0.30000000000000004); // shortest text that reads back exactly
        s.write(r);
    }
    const std::string all = slurp(d / "m.jsonl");
    CHECK(all.substr(all.rfind("{\"step\": 9")) == "{\"step\": 9, \"wall_time\": 0, \"x\": 0.30000000000000004}\n");
    CHECK(code_of([&] { grpo::jsonl_sink s(d / "no/such/dir/m.jsonl"); }) == grpo::errc::io);
}

TEST_CASE("metrics: CSV rows, and a column first seen later widens the whole table", "[metrics]") {
    temp_dir d;
    grpo::csv_sink s(d / "m.csv");
    grpo::metric_record r;
    r.step = 1;
    r.wall_time = 10;
    r.set("reward", 0.5);
    r.set("a,b", std::numeric_limits<double>::quiet_NaN());
    s.write(r);
    CHECK(slurp(d / "m.csv") == "step,wall_time,reward,\"a,b\"\n1,10,0.5,nan\n");
    grpo::metric_record r2;
    r2.step = 2;
    r2.wall_time = 11;
    r2.set("eval \"acc\"", 0.25);
    r2.set("reward", -std::numeric_limits<double>::infinity());
    s.write(r2);
    grpo::metric_record r3;
    r3.step = 3;
    r3.wall_time = 12;
    r3.set("reward", 1e-310);
    s.write(r3);
    CHECK(slurp(d / "m.csv") == "step,wall_time,reward,\"a,b\",\"eval \"\"acc\"\"\"\n"
                                "1,10,0.5,nan,\n"
                                "2,11,-inf,,0.25\n"
                                "3,12,1e-310,,\n");
    CHECK(!fs::exists(d / "m.csv.tmp"));
}

TEST_CASE("metrics: CRC-32C matches the standard check values", "[metrics]") {
    const auto crc = [](const std::string& s) {
        return grpo::detail::crc32c(reinterpret_cast<const unsigned char*>(s.data()), s.size());
    };
    CHECK(crc("123456789") == 0xE3069283u);           // the CRC catalogue's check value
    CHECK(crc(std::string(32, '\0')) == 0x8A9136AAu); // RFC 3720, B.4
    CHECK(crc(std::string(32, '\xff')) == 0x62A8AB43u);
    std::string inc;
    for (int i = 0; i < 32; ++i) inc += static_cast<char>(i);
    CHECK(crc(inc) == 0x46DD794Eu);
    for (const auto& s : {std::string(), std::string("a"), inc}) CHECK(crc(s) == crc32c_bitwise(s));
}

TEST_CASE("metrics: the TensorBoard event file decodes to the logged scalars", "[metrics]") {
    temp_dir d;
    std::string path;
    {
        grpo::tensorboard_sink s(d / "run");
        path = s.path();
        CHECK(fs::path(path).parent_path() == fs::path(d / "run"));
        CHECK(fs::path(path).filename().string().rfind("events.out.tfevents.", 0) == 0);
        s.write(sample_record());
        grpo::metric_record big;
        big.step = std::int64_t(1) << 40;
        big.wall_time = 2.0;
        for (int k = 0; k < 300; ++k) big.set("tag/" + std::to_string(k), k * 0.5);
        big.set("huge", 1e300); // float32: inf
        s.write(big);
    }
    const std::vector<std::string> recs = read_records(slurp(path));
    REQUIRE(recs.size() == 3);
    const decoded_event v = decode_event(recs[0]);
    CHECK(v.file_version == "brain.Event:2");
    CHECK(v.wall_time > 1.6e9);
    CHECK(v.scalars.empty());

    const decoded_event e = decode_event(recs[1]);
    const grpo::metric_record want = sample_record();
    CHECK(e.step == 7);
    CHECK(e.wall_time == 1733312345.25);
    REQUIRE(e.scalars.size() == want.values.size());
    for (std::size_t k = 0; k < want.values.size(); ++k) {
        CHECK(e.scalars[k].first == want.values[k].first);
        const auto f = static_cast<float>(want.values[k].second);
        if (std::isnan(f)) CHECK(std::isnan(e.scalars[k].second));
        else CHECK(e.scalars[k].second == f);
    }
    const decoded_event e2 = decode_event(recs[2]);
    CHECK(e2.step == std::int64_t(1) << 40);
    REQUIRE(e2.scalars.size() == 301);
    CHECK(e2.scalars[299].first == "tag/299");
    CHECK(e2.scalars[299].second == 149.5f);
    CHECK(std::isinf(e2.scalars[300].second));

    // Two sinks on one directory in the same second get two files.
    grpo::tensorboard_sink s1(d / "two"), s2(d / "two");
    CHECK(s1.path() != s2.path());
    // A directory that cannot be created.
    { std::ofstream(d / "file") << "x"; }
    CHECK(code_of([&] { grpo::tensorboard_sink s(d / "file/run"); }) == grpo::errc::io);
}

TEST_CASE("metrics: log_to_directory writes all three files; write failures are grpo::error", "[metrics]") {
    temp_dir d;
    {
        grpo::metrics_logger log(grpo::metric_names::verl);
        grpo::log_to_directory(log, d / "run");
        CHECK(log.names() == grpo::metric_names::verl);
        log.log(1, "critic/score/mean", 0.5);
        log.log(2, "critic/score/mean", 0.75);
        CHECK(code_of([&] { grpo::log_to_directory(log, d / "x", 0); }) == grpo::errc::invalid_value);
        CHECK(code_of([&] { grpo::log_to_directory(log, d / "x", 8); }) == grpo::errc::invalid_value);
    }
    CHECK(slurp(d / "run/metrics.csv").find("\n2,") != std::string::npos);
    const std::string jl = slurp(d / "run/metrics.jsonl");
    CHECK(jl.find("\"critic/score/mean\": 0.75}") != std::string::npos);
    int events = 0;
    for (const auto& f : fs::directory_iterator(d.path / "run"))
        if (f.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
            events += 1;
            CHECK(read_records(slurp(f.path().string())).size() == 3);
        }
    CHECK(events == 1);
#if defined(__linux__)
    // A device that accepts no data: the write (flushed at once) fails with errc::io.
    if (fs::exists("/dev/full")) {
        grpo::jsonl_sink full("/dev/full", true);
        CHECK(code_of([&] { full.write(sample_record()); }) == grpo::errc::io);
    }
#endif
}

TEST_CASE("metrics: the trainer logs each step; the host adds a held-out value to it", "[metrics][train_step]") {
    // A one-token policy: token 1 with probability sigmoid(theta); reward 1 for token 1.
    struct sampler : grpo::group_sampler<int, double> {
        int calls = 0;
        grpo::index_t max_tokens() const override { return 1; }
        void sample(const int*, grpo::index_t n, grpo::index_t g, grpo::rollout_buffer<double>& out) override {
            for (grpo::index_t i = 0; i < n * g; ++i) {
                out.tokens()(i, 0) = static_cast<grpo::token_id>((i + calls) % 2);
                out.old_logp()(i, 0) = std::log(0.5);
                out.lengths()[i] = 1;
                out.truncated()[i] = 0;
            }
            ++calls;
        }
    } s;
    grpo::policy_callbacks<double> cb;
    cb.current_logp = [](const grpo::rollout_batch<double>& b, grpo::matrix_view<double> out) {
        for (grpo::index_t i = 0; i < b.rows(); ++i) out(i, 0) = std::log(0.5);
    };
    cb.apply_gradient = [](const grpo::rollout_batch<double>&, grpo::matrix_view<const double>) {};
    grpo::train_config cfg;
    cfg.group_size = 4;
    grpo::trainer<int, double> tr(s, cb, cfg);
    grpo::outcome_rewards<int> rw;
    rw.add("one", [](const int&, const grpo::completion_view& c) { return c.tokens[0] == 1 ? 1.0 : 0.0; });
    tr.set_outcome_rewards(rw);

    std::vector<grpo::metric_record> got;
    bool fail = false;
    grpo::metrics_logger log;
    log.add_sink(std::make_unique<recording_sink>(&got, &fail));
    tr.set_metrics_logger(&log);
    const int prompts[2] = {0, 1};
    const grpo::step_metrics m1 = tr.step(prompts, 2);
    log.log(tr.steps_done(), "eval_accuracy", 0.5);
    CHECK(m1.reward_function_names == std::vector<std::string>{"one"});
    REQUIRE(m1.reward_function_stds.size() == 1);
    CHECK(m1.reward_function_stds[0] == Approx(std::sqrt(8 * 0.25 / 7)));
    CHECK(m1.completion_length_min == 1);
    CHECK(m1.completion_length_max == 1);
    CHECK(got.empty());
    tr.step(prompts, 2);
    REQUIRE(got.size() == 1);
    CHECK(got[0].step == 1);
    CHECK(*got[0].find("reward") == m1.reward_mean);
    CHECK(*got[0].find("rewards/one/mean") == 0.5);
    CHECK(*got[0].find("eval_accuracy") == 0.5);
    grpo::metric_record want;
    grpo::add_step_metrics(want, m1);
    CHECK(got[0].values.size() == want.values.size() + 1);
    log.flush();
    CHECK(got.size() == 2);
    tr.set_metrics_logger(nullptr);
    tr.step(prompts, 2);
    log.flush();
    CHECK(got.size() == 2);
}
