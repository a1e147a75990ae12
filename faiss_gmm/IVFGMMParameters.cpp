#include <faiss_gmm/IVFGMMParameters.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/impl/EnumNames.h>

namespace faiss_gmm {

namespace {

const impl::EnumName<ProbeOrder> kProbeOrderNames[] = {
    {ProbeOrder::L2, "l2"},
    {ProbeOrder::Posterior, "posterior"},
};

const impl::EnumName<SpillRule> kSpillRuleNames[] = {
    {SpillRule::None, "none"},
    {SpillRule::Posterior, "posterior"},
    {SpillRule::Closure, "closure"},
    {SpillRule::Soar, "soar"},
    {SpillRule::Rair, "rair"},
};

const impl::EnumName<TrainDevice> kTrainDeviceNames[] = {
    {TrainDevice::Auto, "auto"},
    {TrainDevice::Cpu, "cpu"},
    {TrainDevice::Gpu, "gpu"},
};

/// primary=l2|posterior spells SpillParameters::primary_is_nearest_mean
const impl::EnumName<bool> kPrimaryNames[] = {
    {true, "l2"},
    {false, "posterior"},
};

const impl::EnumName<bool> kBoolNames[] = {
    {false, "0"},
    {true, "1"},
    {false, "false"},
    {true, "true"},
};

} // namespace

const char* probe_order_name(ProbeOrder order) {
    return impl::enum_name(kProbeOrderNames, order, "probe order");
}

ProbeOrder probe_order_from_name(const std::string& name) {
    return impl::enum_from_name(kProbeOrderNames, name, "probe order");
}

const char* spill_rule_name(SpillRule rule) {
    return impl::enum_name(kSpillRuleNames, rule, "spill rule");
}

SpillRule spill_rule_from_name(const std::string& name) {
    return impl::enum_from_name(kSpillRuleNames, name, "spill rule");
}

const char* train_device_name(TrainDevice device) {
    return impl::enum_name(kTrainDeviceNames, device, "train device");
}

TrainDevice train_device_from_name(const std::string& name) {
    return impl::enum_from_name(kTrainDeviceNames, name, "train device");
}

/*************************************************************
 * check()
 *************************************************************/

void SpillParameters::check(const char* who) const {
    spill_rule_name(rule); // throws on a value outside the enum
    FAISS_THROW_IF_NOT_FMT(
        max_assign >= 1 && max_assign <= kMaxAssign,
        "%s: spill max_assign=%d must be in [1, %d]",
        who,
        max_assign,
        kMaxAssign);
    FAISS_THROW_IF_NOT_FMT(
        tau >= 0 && tau <= 1, "%s: spill tau=%g must be in [0, 1]", who, tau);
    FAISS_THROW_IF_NOT_FMT(
        temperature > 0 && std::isfinite(temperature),
        "%s: spill temperature=%g must be finite and > 0",
        who,
        temperature);
    FAISS_THROW_IF_NOT_FMT(
        closure_ratio >= 1 && std::isfinite(closure_ratio),
        "%s: spill closure_ratio=%g must be finite and >= 1",
        who,
        closure_ratio);
    FAISS_THROW_IF_NOT_FMT(
        soar_lambda >= 0 && std::isfinite(soar_lambda),
        "%s: spill soar_lambda=%g must be finite and >= 0",
        who,
        soar_lambda);
    FAISS_THROW_IF_NOT_FMT(
        rair_lambda >= 0 && std::isfinite(rair_lambda),
        "%s: spill rair_lambda=%g must be finite and >= 0",
        who,
        rair_lambda);
}

void IVFGMMBuildParameters::check(const char* who) const {
    gmm.check(who);
    spill.check(who);
    train_device_name(train_device);
}

void IVFGMMSearchOptions::check(const char* who) const {
    probe_order_name(probe_order);
    FAISS_THROW_IF_NOT_FMT(
        posterior_mass >= 0 && posterior_mass <= 1,
        "%s: posterior_mass=%g must be in [0, 1]",
        who,
        posterior_mass);
    FAISS_THROW_IF_NOT_FMT(
        mass_temperature > 0 && std::isfinite(mass_temperature),
        "%s: mass_temperature=%g must be finite and > 0",
        who,
        mass_temperature);
    FAISS_THROW_IF_NOT_FMT(
        distance_ratio == 0 ||
            (distance_ratio >= 1 && std::isfinite(distance_ratio)),
        "%s: distance_ratio=%g must be 0 (off) or finite and >= 1",
        who,
        distance_ratio);
    FAISS_THROW_IF_NOT_FMT(
        prune_margin >= 0 && std::isfinite(prune_margin),
        "%s: prune_margin=%g must be finite and >= 0 (0 = off)",
        who,
        prune_margin);
    FAISS_THROW_IF_NOT_FMT(
        min_expected_hits >= 0 && std::isfinite(min_expected_hits),
        "%s: min_expected_hits=%g must be finite and >= 0 (0 = off)",
        who,
        min_expected_hits);
    FAISS_THROW_IF_NOT_FMT(
        probe_order == ProbeOrder::L2 || distance_ratio == 0,
        "%s: distance_ratio=%g needs probe order l2, not %s",
        who,
        distance_ratio,
        probe_order_name(probe_order));
}

SearchParametersIVFGMM::SearchParametersIVFGMM(
    size_t nprobe_in, size_t max_codes_in, const IVFGMMSearchOptions& options)
    : IVFGMMSearchOptions(options) {
    nprobe = nprobe_in;
    max_codes = max_codes_in;
}

void SearchParametersIVFGMM::check(const char* who) const {
    FAISS_THROW_IF_NOT_FMT(
        nprobe >= 1 && nprobe <= kMaxNprobe,
        "%s: nprobe=%zu must be in [1, %zu]",
        who,
        nprobe,
        kMaxNprobe);
    IVFGMMSearchOptions::check(who);
    check_unsupported_ivf_fields(*this, who);
}

/*************************************************************
 * the key table
 *************************************************************/

namespace {

/// What a key's setter and getter work on: one of the two is null.
struct Target {
    IVFGMMBuildParameters* build;
    SearchParametersIVFGMM* search;
};
struct ConstTarget {
    const IVFGMMBuildParameters* build;
    const SearchParametersIVFGMM* search;
};

/// A key with its setter and getter (captureless lambdas below).
struct KeyEntry {
    ParameterKey key;
    void (*set)(Target t, const std::string& value, const std::string& key);
    std::string (*get)(ConstTarget t);
};

[[noreturn]] void throw_bad_value(
    const std::string& key, const std::string& value, const char* expected) {
    FAISS_THROW_FMT(
        "parameter %s=%s: %s", key.c_str(), value.c_str(), expected);
}

/// A finite number that fills the whole string.
double to_number(const std::string& value, const std::string& key) {
    errno = 0;
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size() || errno != 0 ||
        !std::isfinite(v)) {
        throw_bad_value(key, value, "not a finite number");
    }
    return v;
}

/// A number that is finite as a float too (1e39 would become inf).
float to_float(const std::string& value, const std::string& key) {
    const double v = to_number(value, key);
    if (std::fabs(v) > double(std::numeric_limits<float>::max())) {
        throw_bad_value(key, value, "outside the float range");
    }
    return float(v);
}

/// A decimal integer in [lo, hi] that fills the whole string.
int64_t to_integer(
    const std::string& value, const std::string& key, int64_t lo, int64_t hi) {
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || end != value.c_str() + value.size() || errno != 0) {
        throw_bad_value(key, value, "not an integer (or out of range)");
    }
    if (v < lo || v > hi) {
        FAISS_THROW_FMT(
            "parameter %s=%s: must be in [%" PRId64 ", %" PRId64 "]",
            key.c_str(),
            value.c_str(),
            lo,
            hi);
    }
    return int64_t(v);
}

std::string float_text(double v, int digits) {
    char buf[64];
    snprintf(buf, sizeof(buf), "%.*g", digits, v);
    return buf;
}
std::string float_text(float v) {
    return float_text(double(v), 9); // round-trips every float
}
std::string float_text(double v) {
    return float_text(v, 17); // round-trips every double
}

/// Named enums through their table, with the key in the message.
template <class E, size_t N>
E to_enum(
    const impl::EnumName<E> (&table)[N],
    const std::string& value,
    const std::string& key) {
    try {
        return impl::enum_from_name(table, value, key.c_str());
    } catch (const faiss::FaissException& e) {
        FAISS_THROW_FMT(
            "parameter %s=%s: %s", key.c_str(), value.c_str(), e.what());
    }
}

#define FAISS_GMM_BUILD_KEY(NAME, FACTORY, HELP, SET, GET)                     \
    KeyEntry {                                                                 \
        {NAME, ParameterPhase::Build, FACTORY, HELP},                          \
            [](Target t, const std::string& v, const std::string& key) {       \
                IVFGMMBuildParameters& p = *t.build;                           \
                (void)key;                                                     \
                SET;                                                           \
            },                                                                 \
            [](ConstTarget t) -> std::string {                                 \
                const IVFGMMBuildParameters& p = *t.build;                     \
                return GET;                                                    \
            }                                                                  \
    }
#define FAISS_GMM_SEARCH_KEY(NAME, HELP, SET, GET)                             \
    KeyEntry {                                                                 \
        {NAME, ParameterPhase::Search, nullptr, HELP},                         \
            [](Target t, const std::string& v, const std::string& key) {       \
                SearchParametersIVFGMM& p = *t.search;                         \
                (void)key;                                                     \
                SET;                                                           \
            },                                                                 \
            [](ConstTarget t) -> std::string {                                 \
                const SearchParametersIVFGMM& p = *t.search;                   \
                return GET;                                                    \
            }                                                                  \
    }

const std::vector<KeyEntry>& key_entries() {
    static const std::vector<KeyEntry> entries = {
        // ---- build: EM training (GmmParameters) ----
        FAISS_GMM_BUILD_KEY(
            "covariance",
            nullptr,
            "spherical | diagonal | tied | full: covariance of the components",
            p.gmm.covariance = covariance_type_from_name(v),
            covariance_type_name(p.gmm.covariance)),
        FAISS_GMM_BUILD_KEY(
            "niter",
            nullptr,
            "EM iterations, >= 0",
            p.gmm.niter =
                int(to_integer(v, key, 0, GmmParameters::kMaxIterations)),
            std::to_string(p.gmm.niter)),
        FAISS_GMM_BUILD_KEY(
            "tol",
            nullptr,
            "stop when the mean log-likelihood gains less (nats), >= 0",
            p.gmm.tol = to_number(v, key),
            float_text(p.gmm.tol)),
        FAISS_GMM_BUILD_KEY(
            "reg_covar",
            nullptr,
            "variance floor relative to the data's variance, >= 0",
            p.gmm.reg_covar = to_float(v, key),
            float_text(p.gmm.reg_covar)),
        FAISS_GMM_BUILD_KEY(
            "init",
            nullptr,
            "kmeans | kmeans++ | random: initialisation of the means",
            p.gmm.init = gmm_init_from_name(v),
            gmm_init_name(p.gmm.init)),
        FAISS_GMM_BUILD_KEY(
            "kmeans_niter",
            nullptr,
            "Lloyd iterations of the k-means initialisation, >= 0",
            p.gmm.kmeans_niter =
                int(to_integer(v, key, 0, GmmParameters::kMaxIterations)),
            std::to_string(p.gmm.kmeans_niter)),
        FAISS_GMM_BUILD_KEY(
            "seed",
            nullptr,
            "seed of every random choice of training",
            p.gmm.seed = to_integer(
                v,
                key,
                std::numeric_limits<int64_t>::min(),
                std::numeric_limits<int64_t>::max()),
            std::to_string(p.gmm.seed)),
        FAISS_GMM_BUILD_KEY(
            "max_points_per_component",
            nullptr,
            "training points per component at most (0: all), >= 0",
            p.gmm.max_points_per_component =
                int(to_integer(v, key, 0, std::numeric_limits<int>::max())),
            std::to_string(p.gmm.max_points_per_component)),
        FAISS_GMM_BUILD_KEY(
            "min_component_count",
            nullptr,
            "re-seed a component whose expected count falls below, >= 0",
            p.gmm.min_component_count = to_number(v, key),
            float_text(p.gmm.min_component_count)),
        FAISS_GMM_BUILD_KEY(
            "block_size",
            nullptr,
            "points per E-step block of the CPU trainer, >= 1",
            p.gmm.block_size =
                to_integer(v, key, 1, GmmParameters::kMaxBlockSize),
            std::to_string(p.gmm.block_size)),
        FAISS_GMM_BUILD_KEY(
            "train_verbose",
            nullptr,
            "0 | 1: one line per EM iteration",
            p.gmm.verbose = to_enum(kBoolNames, v, key),
            p.gmm.verbose ? "1" : "0"),
        FAISS_GMM_BUILD_KEY(
            "train_device",
            nullptr,
            "auto | cpu | gpu: where train() runs EM",
            p.train_device = to_enum(kTrainDeviceNames, v, key),
            train_device_name(p.train_device)),
        // ---- build: spill rule of add() (SpillParameters) ----
        FAISS_GMM_BUILD_KEY(
            "spill",
            nullptr,
            "none | posterior | closure | soar | rair: the spill rule",
            p.spill.rule = to_enum(kSpillRuleNames, v, key),
            spill_rule_name(p.spill.rule)),
        FAISS_GMM_BUILD_KEY(
            "max_assign",
            "m",
            "lists per vector at most, primary included, in [1, 1024]",
            p.spill.max_assign = int(to_integer(v, key, 1, kMaxAssign)),
            std::to_string(p.spill.max_assign)),
        FAISS_GMM_BUILD_KEY(
            "tau",
            "tau",
            "posterior rule: tempered-posterior threshold, in [0, 1]",
            p.spill.tau = to_float(v, key),
            float_text(p.spill.tau)),
        FAISS_GMM_BUILD_KEY(
            "temperature",
            "T",
            "posterior rule: temperature of the posterior, > 0",
            p.spill.temperature = to_float(v, key),
            float_text(p.spill.temperature)),
        FAISS_GMM_BUILD_KEY(
            "closure_ratio",
            "closure",
            "closure rule: squared-distance ratio to the nearest mean, >= 1",
            p.spill.closure_ratio = to_float(v, key),
            float_text(p.spill.closure_ratio)),
        FAISS_GMM_BUILD_KEY(
            "soar_lambda",
            "soar",
            "SOAR rule: weight of the parallel residual, >= 0",
            p.spill.soar_lambda = to_float(v, key),
            float_text(p.spill.soar_lambda)),
        FAISS_GMM_BUILD_KEY(
            "rair_lambda",
            "rair",
            "RAIR rule: weight of the residuals' inner product, >= 0",
            p.spill.rair_lambda = to_float(v, key),
            float_text(p.spill.rair_lambda)),
        FAISS_GMM_BUILD_KEY(
            "primary",
            nullptr,
            "l2 | posterior: primary list of the posterior and none rules",
            p.spill.primary_is_nearest_mean = to_enum(kPrimaryNames, v, key),
            p.spill.primary_is_nearest_mean ? "l2" : "posterior"),
        // ---- search (SearchParametersIVFGMM) ----
        FAISS_GMM_SEARCH_KEY(
            "nprobe",
            "lists probed per query (capped at nlist), >= 1",
            p.nprobe = size_t(to_integer(v, key, 1, int64_t(kMaxNprobe))),
            std::to_string(p.nprobe)),
        FAISS_GMM_SEARCH_KEY(
            "max_codes",
            "stop after the list where this many unique vectors were "
            "compared (0: no limit)",
            p.max_codes = size_t(
                to_integer(v, key, 0, std::numeric_limits<int64_t>::max())),
            std::to_string(p.max_codes)),
        FAISS_GMM_SEARCH_KEY(
            "probe",
            "l2 | posterior: order in which lists are probed",
            p.probe_order = to_enum(kProbeOrderNames, v, key),
            probe_order_name(p.probe_order)),
        FAISS_GMM_SEARCH_KEY(
            "posterior_mass",
            "stop probing at this posterior mass (0: off), in [0, 1]",
            p.posterior_mass = to_float(v, key),
            float_text(p.posterior_mass)),
        FAISS_GMM_SEARCH_KEY(
            "mass_temperature",
            "temperature of posterior_mass, > 0",
            p.mass_temperature = to_float(v, key),
            float_text(p.mass_temperature)),
        FAISS_GMM_SEARCH_KEY(
            "distance_ratio",
            "probe only means within this squared-distance ratio of the "
            "nearest (0: off, else >= 1)",
            p.distance_ratio = to_float(v, key),
            float_text(p.distance_ratio)),
        FAISS_GMM_SEARCH_KEY(
            "prune_margin",
            "bisector list pruning margin (0: off), >= 0",
            p.prune_margin = to_float(v, key),
            float_text(p.prune_margin)),
        FAISS_GMM_SEARCH_KEY(
            "min_expected_hits",
            "model-based list pruning threshold (0: off), >= 0",
            p.min_expected_hits = to_float(v, key),
            float_text(p.min_expected_hits)),
    };
    return entries;
}

#undef FAISS_GMM_BUILD_KEY
#undef FAISS_GMM_SEARCH_KEY

const KeyEntry* find_entry(const std::string& name) {
    for (const KeyEntry& e : key_entries()) {
        if (name == e.key.name) {
            return &e;
        }
    }
    return nullptr;
}

const KeyEntry& entry_of_phase(const std::string& name, ParameterPhase phase) {
    const KeyEntry* e = find_entry(name);
    if (!e) {
        std::string known;
        for (const KeyEntry& k : key_entries()) {
            if (k.key.phase == phase) {
                known += known.empty() ? "" : ", ";
                known += k.key.name;
            }
        }
        FAISS_THROW_FMT(
            "unknown %s parameter '%s' (known: %s)",
            phase == ParameterPhase::Build ? "build" : "search",
            name.c_str(),
            known.c_str());
    }
    FAISS_THROW_IF_NOT_FMT(
        e->key.phase == phase,
        "'%s' is a %s parameter, not a %s parameter",
        name.c_str(),
        e->key.phase == ParameterPhase::Build ? "build" : "search",
        phase == ParameterPhase::Build ? "build" : "search");
    return *e;
}

std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t");
    if (b == std::string::npos) {
        return "";
    }
    const size_t e = s.find_last_not_of(" \t");
    return s.substr(b, e - b + 1);
}

/// Applies every "key=value" of description to t, then checks the result.
/// Works on a copy so that the caller's parameters change only on success.
template <class Params>
void parse_into(
    const std::string& description,
    Params* params,
    ParameterPhase phase,
    const char* who) {
    FAISS_THROW_IF_NOT_FMT(params, "%s: parameters are null", who);
    Params work = *params;
    Target t{nullptr, nullptr};
    if constexpr (std::is_same<Params, IVFGMMBuildParameters>::value) {
        t.build = &work;
    } else {
        t.search = &work;
    }
    size_t start = 0;
    while (start < description.size()) {
        size_t end = description.find(',', start);
        if (end == std::string::npos) {
            end = description.size();
        }
        const std::string token = trim(description.substr(start, end - start));
        FAISS_THROW_IF_NOT_FMT(
            !token.empty() || end == description.size(),
            "%s: empty token in '%s'",
            who,
            description.c_str());
        start = end + 1;
        if (token.empty()) {
            continue;
        }
        const size_t eq = token.find('=');
        FAISS_THROW_IF_NOT_FMT(
            eq != std::string::npos,
            "%s: token '%s' is not key=value",
            who,
            token.c_str());
        const std::string key = trim(token.substr(0, eq));
        const std::string value = trim(token.substr(eq + 1));
        try {
            entry_of_phase(key, phase).set(t, value, key);
        } catch (const faiss::FaissException& e) {
            FAISS_THROW_FMT("%s: %s", who, e.what());
        }
    }
    work.check(who);
    *params = work;
}

template <class Params>
std::string format_phase(const Params& params, ParameterPhase phase) {
    ConstTarget t{nullptr, nullptr};
    if constexpr (std::is_same<Params, IVFGMMBuildParameters>::value) {
        t.build = &params;
    } else {
        t.search = &params;
    }
    std::string out;
    for (const KeyEntry& e : key_entries()) {
        if (e.key.phase == phase) {
            out += out.empty() ? "" : ",";
            out += std::string(e.key.name) + "=" + e.get(t);
        }
    }
    return out;
}

} // namespace

const std::vector<ParameterKey>& ivfgmm_parameter_keys() {
    static const std::vector<ParameterKey> keys = [] {
        std::vector<ParameterKey> k;
        for (const KeyEntry& e : key_entries()) {
            k.push_back(e.key);
        }
        return k;
    }();
    return keys;
}

const ParameterKey* find_parameter_key(const std::string& name) {
    const KeyEntry* e = find_entry(name);
    return e ? &e->key : nullptr;
}

const ParameterKey* find_factory_option(const std::string& option) {
    for (const KeyEntry& e : key_entries()) {
        if (e.key.factory_option && option == e.key.factory_option) {
            return &e.key;
        }
    }
    return nullptr;
}

void set_build_parameter(
    IVFGMMBuildParameters* params,
    const std::string& key,
    const std::string& value) {
    parse_into(
        key + "=" + value,
        params,
        ParameterPhase::Build,
        "set_build_parameter");
}

void set_search_parameter(
    SearchParametersIVFGMM* params,
    const std::string& key,
    const std::string& value) {
    parse_into(
        key + "=" + value,
        params,
        ParameterPhase::Search,
        "set_search_parameter");
}

void parse_build_parameters(
    const std::string& description,
    IVFGMMBuildParameters* params,
    const char* who) {
    parse_into(description, params, ParameterPhase::Build, who);
}

void parse_search_parameters(
    const std::string& description,
    SearchParametersIVFGMM* params,
    const char* who) {
    parse_into(description, params, ParameterPhase::Search, who);
}

std::string format_build_parameters(const IVFGMMBuildParameters& params) {
    return format_phase(params, ParameterPhase::Build);
}

std::string format_search_parameters(const SearchParametersIVFGMM& params) {
    return format_phase(params, ParameterPhase::Search);
}

std::string parameter_help(ParameterPhase phase) {
    size_t width = 0;
    for (const KeyEntry& e : key_entries()) {
        if (e.key.phase == phase) {
            width = std::max(width, std::string(e.key.name).size());
        }
    }
    std::string out;
    for (const KeyEntry& e : key_entries()) {
        if (e.key.phase == phase) {
            std::string name = e.key.name;
            name.resize(width + 2, ' ');
            out += "  " + name + e.key.help + "\n";
        }
    }
    return out;
}

} // namespace faiss_gmm
