#include <faiss_gmm/index_factory.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <typeinfo>
#include <vector>

#include <faiss/AutoTune.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/index_factory.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/impl/ClassName.h>
#include <faiss_gmm/impl/FastScanCodes.h>

namespace faiss_gmm {

namespace {

/// Largest nlist a GMM token may ask for.
constexpr uint64_t kMaxNlist = uint64_t(1) << 24;

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

/// The value of a "k_factor=<x>" token: finite and >= 1.
float parse_k_factor(const std::string& token) {
    const std::string value = token.substr(token.find('=') + 1);
    char* end = nullptr;
    const float v = std::strtof(value.c_str(), &end);
    FAISS_THROW_IF_NOT_FMT(
        !value.empty() && end == value.c_str() + value.size() &&
            std::isfinite(v) && v >= 1,
        "set_index_parameters: '%s': k_factor must be a number >= 1",
        token.c_str());
    return v;
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
        "[_closure<x>][_soar<x>][_rair<x>][_nospill])",
        token.c_str());
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

bool is_letter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/// Parsed "IVF<nlist>[k|M]_GMM[sph|diag|tied]{_option}".
struct GmmToken {
    uint64_t nlist = 0;
    IVFGMMBuildParameters params;
};

/// Parses a GMM token; options are set through the parameter key table.
GmmToken parse_gmm_token(const std::string& token) {
    FAISS_THROW_IF_NOT_FMT(
        token.find_first_of(" \t\n") == std::string::npos,
        "index_factory: token '%s' contains whitespace",
        token.c_str());
    if (token.compare(0, 3, "IVF") != 0) {
        throw_malformed(token);
    }
    size_t p = 3;
    GmmToken out;
    uint64_t& nlist = out.nlist;
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

    IVFGMMBuildParameters& params = out.params;
    if (token.compare(p, 4, "diag") == 0) {
        params.gmm.covariance = CovarianceType::Diagonal;
        p += 4;
    } else if (token.compare(p, 3, "sph") == 0) {
        params.gmm.covariance = CovarianceType::Spherical;
        p += 3;
    } else if (token.compare(p, 4, "tied") == 0) {
        params.gmm.covariance = CovarianceType::TiedSpherical;
        p += 4;
    } else if (token.compare(p, 4, "full") == 0) {
        params.gmm.covariance = CovarianceType::Full;
        p += 4;
    }

    // options: "_<name><value>" pieces, name in letters, value a number
    std::string rule_option; // the option that chose the spill rule
    std::vector<std::string> seen;
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
        FAISS_THROW_IF_NOT_FMT(
            std::find(seen.begin(), seen.end(), name) == seen.end(),
            "index_factory: option '%s' repeated in token '%s'",
            name.c_str(),
            token.c_str());
        seen.push_back(name);
        SpillRule rule_chosen = SpillRule::None;
        bool chooses_rule = true;
        if (name == "nospill") {
            FAISS_THROW_IF_NOT_FMT(
                value.empty(),
                "index_factory: option '%s' of token '%s' takes no value",
                whole.c_str(),
                token.c_str());
        } else {
            const ParameterKey* key = find_factory_option(name);
            if (!key) {
                std::string known = "nospill";
                for (const ParameterKey& k : ivfgmm_parameter_keys()) {
                    if (k.factory_option) {
                        known += std::string(", ") + k.factory_option;
                    }
                }
                FAISS_THROW_FMT(
                    "index_factory: unknown option '%s' in token '%s' "
                    "(known: %s)",
                    whole.c_str(),
                    token.c_str(),
                    known.c_str());
            }
            FAISS_THROW_IF_NOT_FMT(
                !value.empty(),
                "index_factory: option '%s' of token '%s' needs a value",
                whole.c_str(),
                token.c_str());
            try {
                set_build_parameter(&params, key->name, value);
            } catch (const faiss::FaissException& e) {
                FAISS_THROW_FMT(
                    "index_factory: option '%s' of token '%s': %s",
                    whole.c_str(),
                    token.c_str(),
                    e.what());
            }
            const std::string k = key->name;
            rule_chosen = k == "tau"             ? SpillRule::Posterior
                          : k == "closure_ratio" ? SpillRule::Closure
                          : k == "soar_lambda"   ? SpillRule::Soar
                          : k == "rair_lambda"   ? SpillRule::Rair
                                                 : SpillRule::None;
            chooses_rule = k == "tau" || k == "closure_ratio" ||
                           k == "soar_lambda" || k == "rair_lambda";
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
            params.spill.rule = rule_chosen;
        }
    }
    const bool has_max_assign =
        std::find(seen.begin(), seen.end(), "m") != seen.end();
    const bool has_temperature =
        std::find(seen.begin(), seen.end(), "T") != seen.end();
    if (params.spill.rule == SpillRule::None) {
        FAISS_THROW_IF_NOT_FMT(
            !has_max_assign || params.spill.max_assign == 1,
            "index_factory: token '%s' combines nospill with m%d",
            token.c_str(),
            params.spill.max_assign);
        params.spill.max_assign = 1;
    }
    FAISS_THROW_IF_NOT_FMT(
        !has_temperature || params.spill.rule == SpillRule::Posterior,
        "index_factory: token '%s': option T applies to the posterior "
        "spill rule only, not to the %s rule",
        token.c_str(),
        spill_rule_name(params.spill.rule));
    FAISS_THROW_IF_NOT_FMT(
        uint64_t(params.spill.max_assign) <= nlist,
        "index_factory: token '%s': max lists per vector %d exceeds "
        "nlist %llu",
        token.c_str(),
        params.spill.max_assign,
        (unsigned long long)nlist);
    return out;
}

/**
 * The IndexIVFGMM of "<gmm token>,<code...>": FAISS builds
 * "IVF<nlist>,<code...>" and the GMM index takes it over as its code. A
 * refinement suffix (",RFlat", ",Refine(...)") makes FAISS build an
 * IndexRefine around the IVF index: the GMM index then takes the IVF
 * index's place in it.
 */
faiss::Index* build_gmm_index(
    int d,
    const std::string& gmm_token,
    const std::string& code,
    const std::string& description) {
    const GmmToken parsed = parse_gmm_token(gmm_token);
    if (code == "Flat") {
        return new IndexIVFGMM(d, size_t(parsed.nlist), parsed.params);
    }
#if !FAISS_GMM_HAS_RABITQ
    FAISS_THROW_IF_NOT_FMT(
        code.rfind("RaBitQ", 0) != 0,
        "index_factory: code '%s' after GMM token '%s' in '%s' needs FAISS "
        ">= 1.11 (IndexIVFRaBitQ); this build uses FAISS %s, which has no "
        "RaBitQ",
        code.c_str(),
        gmm_token.c_str(),
        description.c_str(),
        faiss_version_compiled());
#endif
    const std::string faiss_string =
        "IVF" + std::to_string(parsed.nlist) + "," + code;
    std::unique_ptr<faiss::Index> built;
    try {
        built.reset(faiss::index_factory(d, faiss_string.c_str()));
    } catch (const faiss::FaissException& e) {
        FAISS_THROW_FMT(
            "index_factory: code '%s' after GMM token '%s' in '%s' is not "
            "a FAISS IVF code (%s)",
            code.c_str(),
            gmm_token.c_str(),
            description.c_str(),
            e.what());
    }
    auto* refine = dynamic_cast<faiss::IndexRefine*>(built.get());
    faiss::Index* coded = refine ? refine->base_index : built.get();
    auto* ivf = dynamic_cast<faiss::IndexIVF*>(coded);
    FAISS_THROW_IF_NOT_FMT(
        ivf,
        "index_factory: code '%s' after GMM token '%s' in '%s' is not "
        "supported: FAISS builds a %s for it, not an IVF index (the GMM "
        "quantizer takes IVF codes: Flat, SQ..., PQ..., PQ<m>x4fs, RaBitQ)",
        code.c_str(),
        gmm_token.c_str(),
        description.c_str(),
        impl::class_name(*coded).c_str());
    FAISS_THROW_IF_NOT_FMT(
        !impl::is_unsupported_fast_scan(*ivf),
        "index_factory: code '%s' after GMM token '%s' in '%s' is not "
        "supported: FAISS builds a %s, a fast-scan code other than PQ, "
        "which FAISS scans only in its interleaved blocks (the fast-scan "
        "code the GMM quantizer takes is PQ<m>x4fs[r])",
        code.c_str(),
        gmm_token.c_str(),
        description.c_str(),
        impl::class_name(*coded).c_str());
    if (!refine) {
        built.release();
        return new IndexIVFGMM(ivf, parsed.params);
    }
    FAISS_THROW_IF_NOT_FMT(
        refine->own_fields,
        "index_factory: FAISS built an IndexRefine that does not own its "
        "base index for '%s'",
        description.c_str());
    refine->base_index = new IndexIVFGMM(ivf, parsed.params);
    refine->is_trained = false;
    return built.release();
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

    // IDMap / IDMap2, as a prefix or a suffix (FAISS accepts both): the
    // IndexIVFGMM stores ids itself (add_with_ids, remove_ids, reconstruct
    // by id), so the wrapper is not built. A faiss::IndexIDMap around it
    // would mislabel results after remove_ids (IndexIDMap assumes that its
    // sub-index renumbers vectors after a removal).
    const std::string& head = tokens.front();
    const std::string& tail = tokens.back();
    if (tokens.size() > 1 && (head == "IDMap" || head == "IDMap2" ||
                              tail == "IDMap" || tail == "IDMap2")) {
        bool prefix = head == "IDMap" || head == "IDMap2";
        std::vector<std::string> rest(
            tokens.begin() + (prefix ? 1 : 0), tokens.end() - (prefix ? 0 : 1));
        return build_gmm_chain(d, rest, description);
    }

    // the core: "<gmm token>,<code>" (the code may itself hold commas)
    if (!is_gmm_token(head)) {
        FAISS_THROW_FMT(
            "index_factory: unsupported token '%s' before the GMM token "
            "in '%s' (allowed: FAISS vector transforms, IDMap, IDMap2)",
            head.c_str(),
            description.c_str());
    }
    FAISS_THROW_IF_NOT_FMT(
        tokens.size() >= 2,
        "index_factory: GMM token '%s' must be followed by a code (',Flat', "
        "',SQ8', ...) in '%s'",
        head.c_str(),
        description.c_str());
    std::string code = tokens[1];
    for (size_t t = 2; t < tokens.size(); t++) {
        code += "," + tokens[t];
    }
    return build_gmm_index(d, head, code, description);
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
        } else if (
            auto* refine = dynamic_cast<const faiss::IndexRefine*>(index)) {
            index = refine->base_index;
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
        // k_factor belongs to the IndexRefine wrapper, the rest to the GMM
        faiss::IndexRefine* refine = nullptr;
        for (faiss::Index* i = index; i && i != gmm;) {
            if (auto* r = dynamic_cast<faiss::IndexRefine*>(i)) {
                refine = r;
                i = r->base_index;
            } else if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(i)) {
                i = pt->index;
            } else if (auto* idmap = dynamic_cast<faiss::IndexIDMap*>(i)) {
                i = idmap->index;
            } else {
                break;
            }
        }
        std::string rest;
        float k_factor = 0;
        for (const std::string& token : split_tokens(description)) {
            if (token.rfind("k_factor=", 0) == 0) {
                FAISS_THROW_IF_NOT_FMT(
                    refine,
                    "set_index_parameters: '%s': no IndexRefine around the "
                    "IndexIVFGMM",
                    token.c_str());
                k_factor = parse_k_factor(token);
            } else if (!token.empty()) {
                rest += (rest.empty() ? "" : ",") + token;
            }
        }
        gmm->set_search_parameters(rest);
        if (refine && k_factor > 0) {
            refine->k_factor = k_factor;
        }
    } else {
        faiss::ParameterSpace().set_index_parameters(
            index, description.c_str());
    }
}

} // namespace faiss_gmm
