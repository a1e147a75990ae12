#include <faiss_gmm/index_factory.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <vector>

#include <faiss/AutoTune.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/index_factory.h>

#include <faiss_gmm/IndexIVFGMM.h>

namespace faiss_gmm {

namespace {

/// Largest nlist a GMM token may ask for.
constexpr uint64_t kMaxNlist = uint64_t(1) << 24;
/// Largest SpillParameters::max_assign a GMM token may ask for.
constexpr int kMaxAssign = 64;

std::vector<std::string> split_tokens(const std::string& description) {
    std::vector<std::string> tokens;
    size_t begin = 0;
    while (true) {
        size_t comma = description.find(',', begin);
        tokens.push_back(description.substr(begin, comma - begin));
        if (comma == std::string::npos) {
            return tokens;
        }
        begin = comma + 1;
    }
}

bool is_gmm_token(const std::string& token) {
    return token.find("GMM") != std::string::npos;
}

bool has_gmm_token(const std::vector<std::string>& tokens) {
    for (const std::string& t : tokens) {
        if (is_gmm_token(t)) {
            return true;
        }
    }
    return false;
}

/// A finite number that fills the whole string, else throws naming it.
double parse_number(
    const std::string& text,
    const std::string& option,
    const std::string& token) {
    errno = 0;
    char* end = nullptr;
    double value = std::strtod(text.c_str(), &end);
    FAISS_THROW_IF_NOT_FMT(
        !text.empty() && end == text.c_str() + text.size() && errno == 0 &&
            std::isfinite(value),
        "index_factory: option '%s' of token '%s' has no valid number "
        "('%s')",
        option.c_str(),
        token.c_str(),
        text.c_str());
    return value;
}

/**
 * The VectorTransform that FAISS builds for `token` in dimension d, or
 * nullptr when FAISS does not read `token` as a transform. FAISS parses the
 * token, so every variant of its transforms works (PCAW64, OPQ16_64, RR...);
 * only tokens with a transform prefix are tried, so that no other index
 * (e.g. an IMI quantizer with 2^32 lists) is ever built just to probe.
 */
faiss::VectorTransform* try_parse_transform(int d, const std::string& token) {
    static const char* const transform_prefixes[] = {
        "PCA", "OPQ", "RR", "ITQ", "L2norm", "L2Norm", "Pad"};
    bool has_prefix = false;
    for (const char* prefix : transform_prefixes) {
        has_prefix = has_prefix || token.rfind(prefix, 0) == 0;
    }
    if (!has_prefix || is_gmm_token(token)) {
        return nullptr;
    }
    std::unique_ptr<faiss::Index> probe;
    try {
        probe.reset(faiss::index_factory(d, (token + ",Flat").c_str()));
    } catch (const faiss::FaissException&) {
        return nullptr;
    }
    auto* pt = dynamic_cast<faiss::IndexPreTransform*>(probe.get());
    if (!pt || pt->chain.size() != 1) {
        return nullptr;
    }
    faiss::VectorTransform* vt = pt->chain[0];
    pt->chain.clear(); // ownership moves to the caller
    return vt;
}

/// Parses "IVF<nlist>_GMM[cov]{_option}" into a new IndexIVFGMM.
[[noreturn]] void throw_malformed(const std::string& token) {
    FAISS_THROW_FMT(
        "index_factory: malformed GMM token '%s' (expected "
        "IVF<nlist>[k|M]_GMM[sph|diag][_m<int>][_tau<x>][_T<x>]"
        "[_closure<x>][_soar<x>][_nospill])",
        token.c_str());
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

bool is_letter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/// Parses "IVF<nlist>[k|M]_GMM[sph|diag|tied]{_option}" into a new
/// IndexIVFGMM.
IndexIVFGMM* parse_gmm_token(int d, const std::string& token) {
    if (token.compare(0, 3, "IVF") != 0) {
        throw_malformed(token);
    }
    size_t p = 3;
    uint64_t nlist = 0;
    const size_t digits_begin = p;
    for (; p < token.size() && is_digit(token[p]); p++) {
        nlist = nlist * 10 + uint64_t(token[p] - '0');
        FAISS_THROW_IF_NOT_FMT(
            nlist <= kMaxNlist,
            "index_factory: nlist of token '%s' exceeds %llu",
            token.c_str(),
            (unsigned long long)kMaxNlist);
    }
    if (p == digits_begin) {
        throw_malformed(token);
    }
    if (p < token.size() && (token[p] == 'k' || token[p] == 'M')) {
        nlist *= token[p] == 'k' ? 1024 : 1024 * 1024;
        p++;
    }
    FAISS_THROW_IF_NOT_FMT(
        nlist >= 1 && nlist <= kMaxNlist,
        "index_factory: nlist %llu of token '%s' is outside [1, %llu]",
        (unsigned long long)nlist,
        token.c_str(),
        (unsigned long long)kMaxNlist);
    if (token.compare(p, 4, "_GMM") != 0) {
        throw_malformed(token);
    }
    p += 4;

    GmmParameters gmm_params;
    if (token.compare(p, 4, "diag") == 0) {
        gmm_params.covariance = CovarianceType::Diagonal;
        p += 4;
    } else if (token.compare(p, 3, "sph") == 0) {
        gmm_params.covariance = CovarianceType::Spherical;
        p += 3;
    } else if (token.compare(p, 4, "tied") == 0) {
        gmm_params.covariance = CovarianceType::TiedSpherical;
        p += 4;
    }
    SpillParameters spill;

    // options: "_<name><value>" pieces, name in letters, value a number
    std::string rule_option; // the option that chose the spill rule
    bool has_max_assign = false, has_temperature = false;
    while (p < token.size()) {
        if (token[p] != '_') {
            throw_malformed(token);
        }
        const size_t end = std::min(token.find('_', p + 1), token.size());
        const std::string whole = token.substr(p + 1, end - p - 1);
        p = end;
        size_t name_len = 0;
        while (name_len < whole.size() && is_letter(whole[name_len])) {
            name_len++;
        }
        if (name_len == 0) {
            throw_malformed(token);
        }
        const std::string name = whole.substr(0, name_len);
        const std::string value = whole.substr(name_len);
        bool chooses_rule = false;
        if (name == "m") {
            FAISS_THROW_IF_NOT_FMT(
                !has_max_assign,
                "index_factory: option '%s' repeated in token '%s'",
                whole.c_str(),
                token.c_str());
            double m = parse_number(value, whole, token);
            FAISS_THROW_IF_NOT_FMT(
                m == std::floor(m) && m >= 1 && m <= kMaxAssign,
                "index_factory: option '%s' of token '%s': max lists "
                "per vector must be an integer in [1, %d]",
                whole.c_str(),
                token.c_str(),
                kMaxAssign);
            spill.max_assign = int(m);
            has_max_assign = true;
        } else if (name == "T") {
            FAISS_THROW_IF_NOT_FMT(
                !has_temperature,
                "index_factory: option '%s' repeated in token '%s'",
                whole.c_str(),
                token.c_str());
            double t = parse_number(value, whole, token);
            FAISS_THROW_IF_NOT_FMT(
                t > 0,
                "index_factory: option '%s' of token '%s': temperature "
                "must be > 0",
                whole.c_str(),
                token.c_str());
            spill.temperature = float(t);
            has_temperature = true;
        } else if (name == "tau") {
            double tau = parse_number(value, whole, token);
            FAISS_THROW_IF_NOT_FMT(
                tau >= 0 && tau <= 1,
                "index_factory: option '%s' of token '%s': tau must be "
                "in [0, 1]",
                whole.c_str(),
                token.c_str());
            spill.rule = SpillRule::Posterior;
            spill.tau = float(tau);
            chooses_rule = true;
        } else if (name == "closure") {
            double ratio = parse_number(value, whole, token);
            FAISS_THROW_IF_NOT_FMT(
                ratio >= 1,
                "index_factory: option '%s' of token '%s': closure ratio "
                "must be >= 1",
                whole.c_str(),
                token.c_str());
            spill.rule = SpillRule::Closure;
            spill.closure_ratio = float(ratio);
            chooses_rule = true;
        } else if (name == "soar") {
            double lambda = parse_number(value, whole, token);
            FAISS_THROW_IF_NOT_FMT(
                lambda >= 0,
                "index_factory: option '%s' of token '%s': SOAR lambda "
                "must be >= 0",
                whole.c_str(),
                token.c_str());
            spill.rule = SpillRule::Soar;
            spill.soar_lambda = float(lambda);
            chooses_rule = true;
        } else if (name == "nospill") {
            FAISS_THROW_IF_NOT_FMT(
                value.empty(),
                "index_factory: option '%s' of token '%s' takes no value",
                whole.c_str(),
                token.c_str());
            spill.rule = SpillRule::None;
            chooses_rule = true;
        } else {
            FAISS_THROW_FMT(
                "index_factory: unknown option '%s' in token '%s' "
                "(known: m, tau, T, closure, soar, nospill)",
                whole.c_str(),
                token.c_str());
        }
        if (chooses_rule) {
            FAISS_THROW_IF_NOT_FMT(
                rule_option.empty(),
                "index_factory: option '%s' of token '%s' conflicts with "
                "'%s' (one spill rule per token)",
                whole.c_str(),
                token.c_str(),
                rule_option.c_str());
            rule_option = whole;
        }
    }
    if (spill.rule == SpillRule::None) {
        FAISS_THROW_IF_NOT_FMT(
            !has_max_assign || spill.max_assign == 1,
            "index_factory: token '%s' combines nospill with m%d",
            token.c_str(),
            spill.max_assign);
        spill.max_assign = 1;
    }
    FAISS_THROW_IF_NOT_FMT(
        !has_temperature || spill.rule == SpillRule::Posterior,
        "index_factory: token '%s': option T applies to the posterior "
        "spill rule only, not to the %s rule",
        token.c_str(),
        spill_rule_name(spill.rule));
    FAISS_THROW_IF_NOT_FMT(
        uint64_t(spill.max_assign) <= nlist,
        "index_factory: token '%s': max lists per vector %d exceeds "
        "nlist %llu",
        token.c_str(),
        spill.max_assign,
        (unsigned long long)nlist);
    return new IndexIVFGMM(d, size_t(nlist), gmm_params, spill);
}

/// tokens hold at least one GMM token; builds the chain (grammar in header).
faiss::Index* build_gmm_chain(
    int d,
    const std::vector<std::string>& tokens,
    const std::string& description) {
    // leading vector transforms -> IndexPreTransform
    std::vector<std::unique_ptr<faiss::VectorTransform>> transforms;
    size_t first = 0;
    int d_sub = d;
    while (first + 1 < tokens.size()) {
        faiss::VectorTransform* vt = try_parse_transform(d_sub, tokens[first]);
        if (!vt) {
            break;
        }
        transforms.emplace_back(vt);
        d_sub = vt->d_out;
        first++;
    }
    if (!transforms.empty()) {
        std::vector<std::string> rest(tokens.begin() + first, tokens.end());
        std::unique_ptr<faiss::Index> sub(
            build_gmm_chain(d_sub, rest, description));
        auto pt = std::make_unique<faiss::IndexPreTransform>(sub.release());
        pt->own_fields = true;
        while (!transforms.empty()) {
            pt->prepend_transform(transforms.back().release());
            transforms.pop_back();
        }
        return pt.release();
    }

    // IDMap / IDMap2, as a prefix or a suffix (FAISS accepts both)
    const std::string& head = tokens.front();
    const std::string& tail = tokens.back();
    if (tokens.size() > 1 && (head == "IDMap" || head == "IDMap2" ||
                              tail == "IDMap" || tail == "IDMap2")) {
        bool prefix = head == "IDMap" || head == "IDMap2";
        const std::string& kind = prefix ? head : tail;
        std::vector<std::string> rest(
            tokens.begin() + (prefix ? 1 : 0), tokens.end() - (prefix ? 0 : 1));
        std::unique_ptr<faiss::Index> sub(
            build_gmm_chain(d, rest, description));
        faiss::IndexIDMap* idmap = kind == "IDMap2"
                                       ? new faiss::IndexIDMap2(sub.get())
                                       : new faiss::IndexIDMap(sub.get());
        sub.release();
        idmap->own_fields = true;
        return idmap;
    }

    // the core: exactly "<gmm token>,Flat"
    if (!is_gmm_token(head)) {
        FAISS_THROW_FMT(
            "index_factory: unsupported token '%s' before the GMM token "
            "in '%s' (allowed: FAISS vector transforms, IDMap, IDMap2)",
            head.c_str(),
            description.c_str());
    }
    FAISS_THROW_IF_NOT_FMT(
        tokens.size() >= 2,
        "index_factory: GMM token '%s' must be followed by ',Flat' in "
        "'%s'",
        head.c_str(),
        description.c_str());
    FAISS_THROW_IF_NOT_FMT(
        tokens[1] == "Flat",
        "index_factory: encoding '%s' after GMM token '%s' is not "
        "supported (only Flat) in '%s'",
        tokens[1].c_str(),
        head.c_str(),
        description.c_str());
    FAISS_THROW_IF_NOT_FMT(
        tokens.size() == 2,
        "index_factory: unsupported token '%s' after '%s,Flat' in '%s' "
        "(allowed: IDMap, IDMap2)",
        tokens[2].c_str(),
        head.c_str(),
        description.c_str());
    return parse_gmm_token(d, head);
}

} // namespace

faiss::Index*
index_factory(int d, const char* description, faiss::MetricType metric) {
    FAISS_THROW_IF_NOT_MSG(description, "index_factory: description is null");
    std::vector<std::string> tokens = split_tokens(description);
    if (!has_gmm_token(tokens)) {
        return faiss::index_factory(d, description, metric);
    }
    for (const std::string& t : tokens) {
        if (is_gmm_token(t)) {
            FAISS_THROW_IF_NOT_FMT(
                metric == faiss::METRIC_L2,
                "index_factory: GMM token '%s' needs METRIC_L2, got "
                "metric %d",
                t.c_str(),
                int(metric));
        }
    }
    FAISS_THROW_IF_NOT_FMT(
        d >= 1, "index_factory: dimension d=%d must be >= 1", d);
    return build_gmm_chain(d, tokens, description);
}

const IndexIVFGMM* try_extract_index_ivfgmm(const faiss::Index* index) {
    while (index) {
        if (auto* gmm = dynamic_cast<const IndexIVFGMM*>(index)) {
            return gmm;
        } else if (
            auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(index)) {
            index = pt->index;
        } else if (
            auto* idmap = dynamic_cast<const faiss::IndexIDMap*>(index)) {
            index = idmap->index;
        } else {
            return nullptr;
        }
    }
    return nullptr;
}

IndexIVFGMM* try_extract_index_ivfgmm(faiss::Index* index) {
    return const_cast<IndexIVFGMM*>(
        try_extract_index_ivfgmm(static_cast<const faiss::Index*>(index)));
}

void set_index_parameters(faiss::Index* index, const std::string& description) {
    FAISS_THROW_IF_NOT_MSG(index, "set_index_parameters: index is null");
    if (IndexIVFGMM* gmm = try_extract_index_ivfgmm(index)) {
        gmm->set_parameters(description);
    } else {
        faiss::ParameterSpace().set_index_parameters(
            index, description.c_str());
    }
}

} // namespace faiss_gmm
