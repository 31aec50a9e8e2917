// SPDX-License-Identifier: MIT
// libFuzzer harness of grpo::trainer: a scripted group_sampler and scripted policy callbacks, all driven by the
// fuzz bytes. The sampler may write any lengths / tokens / log-probs / truncated flags, report any max_tokens
// (0, negative, huge), or call out.reset() with another shape; reward functions return any score (NaN =
// declined, extremes) or add process steps with any end token; the policy writes any log-probs.
//
// Oracles: the constructor and step() succeed or throw grpo::error (anything else, or a sanitizer report, is
// a finding); apply_gradient receives a [rows, max_tokens] gradient that is exactly 0 at every position the
// step masks (t >= length) and has no NaN when every log-prob and reward was tame; on success the metrics
// have no NaN (with tame scripts), updates == inner_updates (or 0 without tokens), and last_rollout() /
// last_mask() agree with what the sampler wrote.
#include <memory>

#include "fuzz_input.hpp"

namespace {

using namespace fuzz;
using grpo::index_t;

template <class T>
struct script {
    fuzz_input* in = nullptr;
    bool tame = true;      ///< every value the scripts produce is moderate and finite
    bool reshaped = false; ///< the sampler called out.reset() with another shape
    std::int64_t max_tokens = 4;
    int gradients = 0, currents = 0, refreshes = 0;
    std::int64_t expect_rows = 0, expect_cols = 0;
};

template <class T>
class scripted_sampler : public grpo::group_sampler<int, T> {
public:
    explicit scripted_sampler(script<T>& s) : s_(s) {}
    index_t max_tokens() const override { return s_.max_tokens; }
    void sample(const int* prompts, index_t num_prompts, index_t group_size, grpo::rollout_buffer<T>& out) override {
        fuzz_input& in = *s_.in;
        (void)prompts;
        if (in.chance(12)) {
            // A sampler that resizes the buffer itself: another prompt count, group size or width.
            const std::uint8_t c = in.u8() % 4;
            std::int64_t P = num_prompts, G = group_size, L = s_.max_tokens;
            if (c == 0) P = num_prompts * 2;
            else if (c == 1)
                G = std::max<std::int64_t>(1, group_size / 2),
                P = num_prompts * (group_size / std::max<std::int64_t>(G, 1));
            else if (c == 2) L = std::max<std::int64_t>(0, s_.max_tokens + (in.flag() ? 1 : -1));
            else P = std::max<std::int64_t>(0, num_prompts - 1);
            if (P >= 0 && P <= 16 && G >= 1 && G <= 16 && L >= 0 && L <= 64) {
                out.reset(P, G, L);
                s_.reshaped = true;
            }
        }
        const std::int64_t rows = out.rows(), cols = out.max_tokens();
        auto tokens = out.tokens();
        auto logp = out.old_logp();
        auto lengths = out.lengths();
        auto truncated = out.truncated();
        for (std::int64_t i = 0; i < rows; ++i) {
            const std::uint8_t c = in.u8();
            std::int64_t len = cols > 0 ? in.range(0, cols) : 0;
            if (c >= 248) len = c == 255 && hostile_enabled() ? in.hostile_size() : (c & 1) ? cols + 1 : -1;
            lengths[i] = len;
            truncated[i] = in.u8() % 3 == 0;
            for (std::int64_t t = 0; t < cols; ++t) {
                tokens(i, t) = grpo::token_id(in.u8() % 8);
                const double v = in.chance(250) ? -in.moderate(3.0) - 3.0 : in.value(false, true);
                if (!(v >= -6.0001 && v <= 0.0)) s_.tame = false;
                logp(i, t) = T(v);
            }
        }
    }

private:
    script<T>& s_;
};

template <class T>
void run(fuzz_input& in) {
    auto s = std::make_shared<script<T>>();
    s->in = &in;
    s->max_tokens = in.chance(245) ? in.range(0, 8) : (hostile_enabled() ? in.hostile_size() : 0);
    scripted_sampler<T> sampler(*s);

    grpo::train_config cfg;
    cfg.group_size =
        in.chance(245) ? in.range(1, 4) : (in.flag() || !hostile_enabled() ? in.range(-1, 0) : in.hostile_size());
    cfg.inner_updates = in.chance(245) ? int(in.range(1, 3)) : int(in.range(-1, 0));
    cfg.reference_refresh_every = in.chance(245) ? int(in.range(0, 2)) : -1;
    switch (in.u8() % 4) {
    case 1: cfg.loss = grpo::loss_config::deepseekmath(); break;
    case 2:
        cfg.loss = grpo::loss_config::verl();
        cfg.loss.beta = 0.001;
        break;
    case 3: cfg.loss = grpo::loss_config::gspo(); break;
    default: break;
    }
    if (in.chance(20)) cfg.loss.agg = in.enum_value<grpo::aggregation>(5);
    if (in.chance(20)) cfg.loss.checks = grpo::validation::shapes_only;
    cfg.advantages.estimator = in.enum_value<grpo::advantage_estimator>(grpo::advantage_estimator_count);
    cfg.aggregation = in.enum_value<grpo::reward_aggregation>(2);
    cfg.process.epsilon = in.config_double({1e-4, 0.0});
    cfg.mask_truncated_completions = in.flag();
    cfg.drop_zero_variance_groups = in.flag();

    grpo::policy_callbacks<T> policy;
    auto write_logp = [s](const grpo::rollout_batch<T>& b, grpo::matrix_view<T> out) {
        fuzz_input& fin = *s->in;
        if (out.rows() != b.rows() || out.cols() != b.max_tokens())
            finding("trainer-callback-shape", "logp view [%lld x %lld] for a rollout of [%lld x %lld]",
                    (long long)out.rows(), (long long)out.cols(), (long long)b.rows(), (long long)b.max_tokens());
        for (index_t i = 0; i < out.rows(); ++i)
            for (index_t t = 0; t < out.cols(); ++t) {
                const double v = fin.chance(250) ? -fin.moderate(3.0) - 3.0 : fin.value(false, true);
                if (!(v >= -6.0001 && v <= 0.0)) s->tame = false;
                out(i, t) = T(v);
            }
    };
    const bool has_current = in.chance(250), has_apply = in.chance(250);
    const bool has_ref = cfg.loss.beta != 0 ? in.chance(250) : in.flag();
    const bool has_refresh = cfg.reference_refresh_every > 0 ? in.chance(250) : in.flag();
    if (has_current)
        policy.current_logp = [s, write_logp](const grpo::rollout_batch<T>& b, grpo::matrix_view<T> out) {
            ++s->currents;
            write_logp(b, out);
        };
    if (has_ref) policy.reference_logp = write_logp;
    if (has_apply)
        policy.apply_gradient = [s, &cfg](const grpo::rollout_batch<T>& b, grpo::matrix_view<const T> g) {
            ++s->gradients;
            if (g.rows() != b.rows() || g.cols() != b.max_tokens())
                finding("trainer-callback-shape", "gradient [%lld x %lld] for a rollout of [%lld x %lld]",
                        (long long)g.rows(), (long long)g.cols(), (long long)b.rows(), (long long)b.max_tokens());
            for (index_t i = 0; i < g.rows(); ++i) {
                const bool dropped = cfg.mask_truncated_completions && b.is_truncated(i);
                for (index_t t = 0; t < g.cols(); ++t) {
                    const T x = g(i, t);
                    if ((t >= b.lengths[i] || dropped) && x != T(0))
                        finding("trainer-masked-gradient", "grad(%lld, %lld) = %.9g at a masked position (length %lld)",
                                (long long)i, (long long)t, double(x), (long long)b.lengths[i]);
                    // Extreme log-probs may overflow both the policy and the KL term of a token (the one NaN the
                    // loss allows; fuzz_loss checks that case token by token): only tame scripts must stay finite.
                    if (std::isnan(double(x)) && s->tame)
                        finding("nan-from-finite", "trainer: grad(%lld, %lld) is NaN", (long long)i, (long long)t);
                }
            }
        };
    if (has_refresh) policy.refresh_reference = [s] { ++s->refreshes; };

    std::unique_ptr<grpo::trainer<int, T>> tr;
    const outcome made = call_checked("trainer()", [&] { tr.reset(new grpo::trainer<int, T>(sampler, policy, cfg)); });
    if (!made.ok) return;

    // Rewards.
    if (in.chance(180)) {
        grpo::outcome_rewards<int> r;
        const int nf = int(in.range(0, 3));
        for (int f = 0; f < nf; ++f) {
            const double w = in.chance(240) ? double(in.u8() % 3) : in.value(false, true);
            if (!(std::fabs(w) <= 10)) s->tame = false; // weighted rewards near the float range are not tame
            call_checked("outcome_rewards::add", [&] {
                r.add(
                    "f",
                    [s](const int& prompt, const grpo::completion_view& c) -> double {
                        fuzz_input& fin = *s->in;
                        volatile int read_prompt = prompt; // the prompt reference must point into the caller's array
                        (void)read_prompt;
                        (void)c.tokens.size();
                        for (index_t t = 0; t < c.length(); ++t) (void)c.tokens[t];
                        const std::uint8_t k = fin.u8();
                        if (k < 30) return std::numeric_limits<double>::quiet_NaN();
                        if (k < 200) return double(k % 2);
                        const double v = fin.value(false, false);
                        if (std::fabs(v) > 10) s->tame = false;
                        return v;
                    },
                    w);
            });
        }
        tr->set_outcome_rewards(r);
    } else {
        tr->set_process_rewards([s](const int& prompt, const grpo::completion_view& c, grpo::process_steps& steps) {
            fuzz_input& fin = *s->in;
            volatile int read_prompt = prompt;
            (void)read_prompt;
            const int n = fin.u8() % 3;
            std::int64_t e = 0;
            for (int k = 0; k < n; ++k) {
                e += fin.range(0, 3);
                const std::int64_t end =
                    fin.chance(245) ? std::min<std::int64_t>(e, std::max<index_t>(c.length(), 1) - 1) : e + 100;
                steps.add(fin.chance(240) ? double(fin.u8() % 2) : fin.value(false, true), end);
            }
        });
    }

    const int nsteps = int(in.range(1, 3));
    for (int k = 0; k < nsteps; ++k) {
        const std::int64_t P =
            in.chance(245) ? in.range(1, 3) : (in.flag() || !hostile_enabled() ? in.range(-1, 0) : in.hostile_size());
        std::vector<int> prompts(static_cast<std::size_t>(P > 0 && P <= 3 ? P : 1), 0);
        const int* pp = in.chance(250) ? prompts.data() : nullptr;
        s->reshaped = false;
        s->gradients = 0;
        const int updates_before = s->gradients;
        grpo::step_metrics mt;
        const outcome r = call_checked("trainer::step", [&] { mt = tr->step(pp, P); });
        if (verbose())
            std::fprintf(stderr, "trainer<%s> step %d: P %lld G %lld max_tokens %lld reshaped %d -> %s %s\n",
                         sizeof(T) == 4 ? "float" : "double", k, (long long)P, (long long)cfg.group_size,
                         (long long)s->max_tokens, s->reshaped, r.ok ? "ok" : "threw", r.message.c_str());
        if (!r.ok) continue;
        if (mt.updates != (mt.tokens > 0 ? cfg.inner_updates : 0) || s->gradients - updates_before != mt.updates)
            finding("trainer-updates", "updates %d, tokens %g, inner_updates %d, gradients applied %d", mt.updates,
                    mt.tokens, cfg.inner_updates, s->gradients - updates_before);
        if (s->tame) {
            const double f[] = {mt.loss,       mt.policy_loss,           mt.kl_mean,       mt.reward_mean,
                                mt.reward_std, mt.advantage_mean,        mt.advantage_std, mt.clip_fraction_region,
                                mt.ratio_mean, mt.completion_length_mean};
            const char* names[] = {"loss",       "policy_loss",           "kl_mean",       "reward_mean",
                                   "reward_std", "advantage_mean",        "advantage_std", "clip_fraction_region",
                                   "ratio_mean", "completion_length_mean"};
            if (verbose()) {
                std::fprintf(stderr, "  rewards:");
                for (index_t i = 0; i < tr->last_rewards().size(); ++i)
                    std::fprintf(stderr, " %.9g", double(tr->last_rewards()[i]));
                std::fprintf(stderr, "\n");
            }
            for (int q = 0; q < 10; ++q)
                if (std::isnan(f[q]))
                    finding("nan-from-finite",
                            "trainer: step metric %s is NaN with tame scripts (estimator %d, agg %d, eps %g)", names[q],
                            int(cfg.advantages.estimator), int(cfg.aggregation), cfg.advantages.epsilon);
        }
        const grpo::rollout_batch<T> b = tr->last_rollout();
        const grpo::matrix_view<const T> m = tr->last_mask();
        if (m.rows() != b.rows() || m.cols() != b.max_tokens())
            finding("trainer-mask-shape", "last_mask [%lld x %lld] vs rollout [%lld x %lld]", (long long)m.rows(),
                    (long long)m.cols(), (long long)b.rows(), (long long)b.max_tokens());
        for (index_t i = 0; i < b.rows(); ++i)
            for (index_t t = 0; t < b.max_tokens(); ++t)
                if (m(i, t) != T(0) && m(i, t) != T(1))
                    finding("trainer-mask", "mask(%lld, %lld) = %g", (long long)i, (long long)t, double(m(i, t)));
    }
}

} // namespace

GRPO_FUZZ_ENTRY_FLOAT_AND_DOUBLE()
