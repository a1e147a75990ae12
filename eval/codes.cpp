#include <eval/codes.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include <faiss/impl/FaissAssert.h>

#include <eval/text_table.h>
#include <eval/writers.h>

namespace faiss_gmm {
namespace eval {

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

const char kKMeansPrefix[] = "k-means ";
const char kGmmPrefix[] = "GMM ";
/// The near-cap target: this fraction of the lower of the two best
/// recalls (the curves flatten at the cap itself).
const double kCapFraction = 0.97;

/// Splits at the commas outside parentheses; throws on unbalanced ones.
std::vector<std::string> split_top_level(const std::string& list) {
    std::vector<std::string> items(1);
    int depth = 0;
    for (char c : list) {
        depth += c == '(' ? 1 : c == ')' ? -1 : 0;
        FAISS_THROW_IF_NOT_FMT(
            depth >= 0, "--codes: unbalanced ')' in \"%s\"", list.c_str());
        if (c == ',' && depth == 0) {
            items.emplace_back();
        } else {
            items.back() += c;
        }
    }
    FAISS_THROW_IF_NOT_FMT(
        depth == 0, "--codes: unbalanced '(' in \"%s\"", list.c_str());
    return items;
}

bool is_refinement(const std::string& token) {
    return token == "RFlat" ||
           (token.size() > 8 && token.rfind("Refine(", 0) == 0 &&
            token.back() == ')');
}

int find_index(const EvalReport& report, const std::string& name) {
    for (size_t i = 0; i < report.indexes.size(); i++) {
        if (report.indexes[i].name == name) {
            return int(i);
        }
    }
    FAISS_THROW_FMT("per-code table: no index \"%s\" in the run", name.c_str());
}

double max_recall(const IndexResult& index) {
    double best = kNaN;
    for (const SearchRow& row : index.rows) {
        if (std::isfinite(row.recall_at_k) &&
            !(row.recall_at_k <= best)) { // NaN best: take the first
            best = row.recall_at_k;
        }
    }
    return best;
}

/**
 * ratio[m][t] = k-means cost / GMM cost of the pair c at targets[t] under
 * code_measures()[m], bound[m][t] whether either cost is an upper bound.
 */
void pair_ratios(
    const EvalReport& report,
    const std::vector<double>& targets,
    const CodeComparison& c,
    std::vector<std::vector<double>>* ratio,
    std::vector<std::vector<bool>>* bound) {
    for (CostMeasure m : code_measures()) {
        const TargetSummary s = summarize_targets(report, targets, m);
        std::vector<double> ratios;
        std::vector<bool> bounds;
        for (size_t t = 0; t < s.targets.size(); t++) {
            ratios.push_back(s.cost[c.kmeans][t] / s.cost[c.gmm][t]);
            bounds.push_back(
                s.upper_bound[c.kmeans][t] || s.upper_bound[c.gmm][t]);
        }
        ratio->push_back(ratios);
        bound->push_back(bounds);
    }
}

/// Three ratios "a / b / c", "*" after an indicative one.
std::string ratio_cell(const CodeComparison& c, size_t m) {
    std::string cell;
    for (size_t t = 0; t < c.ratio[m].size(); t++) {
        cell += (t ? " / " : "") + format_number(c.ratio[m][t], "%.2f") +
                (c.bound[m][t] && std::isfinite(c.ratio[m][t]) ? "*" : "");
    }
    return cell;
}

/// Column header of a measure's ratios.
const char* measure_header(CostMeasure m) {
    switch (m) {
    case CostMeasure::UniqueVectors:
        return "distances";
    case CostMeasure::EntriesScanned:
        return "entries";
    case CostMeasure::BytesScanned:
        return "bytes scanned";
    case CostMeasure::SearchTime:
        return "QPS";
    }
    FAISS_THROW_FMT("unknown CostMeasure %d", int(m));
}

std::string csv_value(double v) {
    return std::isfinite(v) ? format_number(v, "%.10g") : "";
}

} // namespace

std::string CodeVariant::factory_suffix() const {
    return "," + code + (refine.empty() ? "" : "," + refine);
}

std::vector<CodeVariant> parse_code_list(const std::string& list) {
    std::vector<CodeVariant> codes;
    for (const std::string& item : split_top_level(list)) {
        FAISS_THROW_IF_NOT_FMT(
            !item.empty(), "--codes: empty item in \"%s\"", list.c_str());
        CodeVariant v;
        v.label = item;
        const size_t plus = item.find('+');
        v.code = item.substr(0, plus);
        if (plus != std::string::npos) {
            v.refine = item.substr(plus + 1);
            FAISS_THROW_IF_NOT_FMT(
                is_refinement(v.refine),
                "--codes: \"%s\": the refinement after '+' must be RFlat or "
                "Refine(<code>)",
                item.c_str());
        }
        FAISS_THROW_IF_NOT_FMT(
            !v.code.empty() && v.code.find_first_of("(),") == std::string::npos,
            "--codes: \"%s\": no IVF code before the refinement",
            item.c_str());
        for (const CodeVariant& other : codes) {
            FAISS_THROW_IF_NOT_FMT(
                other.label != v.label,
                "--codes: \"%s\" given twice",
                item.c_str());
        }
        codes.push_back(v);
    }
    return codes;
}

std::vector<double> code_targets() {
    return {0.90, 0.95, 0.99};
}

std::vector<CostMeasure> code_measures() {
    return {
        CostMeasure::UniqueVectors,
        CostMeasure::EntriesScanned,
        CostMeasure::BytesScanned,
        CostMeasure::SearchTime};
}

std::vector<IndexSpec> code_specs(
    int64_t nlist,
    const std::vector<CodeVariant>& codes,
    const GmmOverrides& gmm) {
    FAISS_THROW_IF_NOT_MSG(!codes.empty(), "--codes: no code");
    const std::string ivf = "IVF" + std::to_string(nlist);
    std::vector<IndexSpec> specs;
    for (const CodeVariant& c : codes) {
        specs.push_back(
            {kKMeansPrefix + c.label,
             ivf + c.factory_suffix(),
             {},
             ModelSource::SharedKMeans,
             {}});
        specs.push_back(
            {kGmmPrefix + c.label,
             ivf + "_GMM" + c.factory_suffix(),
             gmm,
             ModelSource::SharedGmm,
             {}});
    }
    return specs;
}

std::vector<CodeComparison>
compare_codes(const EvalReport& report, const std::vector<CodeVariant>& codes) {
    std::vector<CodeComparison> out;
    const std::vector<CostMeasure> measures = code_measures();
    const size_t bytes = size_t(
        std::find(measures.begin(), measures.end(), CostMeasure::BytesScanned) -
        measures.begin());
    for (const CodeVariant& code : codes) {
        CodeComparison c;
        c.label = code.label;
        c.kmeans = find_index(report, kKMeansPrefix + code.label);
        c.gmm = find_index(report, kGmmPrefix + code.label);
        const IndexResult& km = report.indexes[c.kmeans];
        const IndexResult& gm = report.indexes[c.gmm];
        c.kmeans_bytes_per_vector = km.bytes_per_vector();
        c.gmm_bytes_per_vector = gm.bytes_per_vector();
        c.replication = gm.replication;
        c.kmeans_max_recall = max_recall(km);
        c.gmm_max_recall = max_recall(gm);
        c.memory_factor = c.gmm_bytes_per_vector / c.kmeans_bytes_per_vector;
        c.cap_target = std::floor(
                           100 * kCapFraction *
                           std::min(c.kmeans_max_recall, c.gmm_max_recall)) /
                       100;
        pair_ratios(report, code_targets(), c, &c.ratio, &c.bound);
        std::vector<std::vector<double>> cap_ratio;
        std::vector<std::vector<bool>> cap_bound;
        pair_ratios(report, {c.cap_target}, c, &cap_ratio, &cap_bound);
        for (size_t m = 0; m < measures.size(); m++) {
            c.cap_ratio.push_back(cap_ratio[m][0]);
            c.cap_bound.push_back(cap_bound[m][0]);
        }
        // memory against scanning at the highest target both reach
        c.verdict_target = c.cap_target;
        c.scan_factor = c.cap_ratio[bytes];
        for (size_t t = 0; t < c.ratio[bytes].size(); t++) {
            if (std::isfinite(c.ratio[bytes][t])) {
                c.verdict_target = code_targets()[t];
                c.scan_factor = c.ratio[bytes][t];
            }
        }
        out.push_back(c);
    }
    return out;
}

std::string format_code_table(
    const EvalReport& report, const std::vector<CodeComparison>& codes) {
    std::ostringstream out;
    const std::string k = std::to_string(report.k);
    std::string targets;
    for (double t : code_targets()) {
        targets += (targets.empty() ? "" : " / ") + format_number(t, "%.2f");
    }
    out << "Per code: ratio k-means / GMM at recall@" << k << " " << targets
        << " (> 1: the GMM needs less; QPS: the GMM's QPS / k-means's, "
        << report.threads
        << " CPU threads; n/a: a side does not reach the target; "
           "*: reached at the cheapest setting, indicative)\n";
    std::vector<std::string> header = {
        "code", "repl", "B/vec k-means", "B/vec GMM"};
    for (CostMeasure m : code_measures()) {
        header.push_back(measure_header(m));
    }
    header.push_back("max R@" + k + " k-means / GMM");
    header.push_back("near cap: R@" + k + ": dist / entr / bytes / QPS");
    TextTable table(header);
    for (const CodeComparison& c : codes) {
        std::vector<std::string> cells = {
            c.label,
            format_number(c.replication, "%.2f"),
            format_number(c.kmeans_bytes_per_vector, "%.1f"),
            format_number(c.gmm_bytes_per_vector, "%.1f")};
        for (size_t m = 0; m < c.ratio.size(); m++) {
            cells.push_back(ratio_cell(c, m));
        }
        cells.push_back(
            format_number(c.kmeans_max_recall, "%.4f") + " / " +
            format_number(c.gmm_max_recall, "%.4f"));
        std::string cap = format_number(c.cap_target, "%.2f") + ":";
        for (size_t m = 0; m < c.cap_ratio.size(); m++) {
            cap += (m ? " / " : " ") + format_number(c.cap_ratio[m], "%.2f") +
                   (c.cap_bound[m] && std::isfinite(c.cap_ratio[m]) ? "*" : "");
        }
        cells.push_back(cap);
        table.add_row(cells);
    }
    out << table.str();
    out << "B/vec: index memory per vector (list codes and ids of every "
           "copy, spill records, coarse model, code parameters, "
           "refinement). Near cap: the ratios at recall@"
        << k << " = " << kCapFraction
        << " x the lower of the two max recalls (rounded down to 0.01).\n";
    std::vector<std::string> costly;
    for (const CodeComparison& c : codes) {
        out << "  " << c.label << ": memory/vector GMM / k-means "
            << format_number(c.memory_factor, "%.2f");
        if (std::isnan(c.scan_factor)) {
            out << "; no recall target that both reach in bytes scanned\n";
            continue;
        }
        out << ", bytes scanned k-means / GMM "
            << format_number(c.scan_factor, "%.2f") << " at R@" << k << " "
            << format_number(c.verdict_target, "%.2f") << ": spill "
            << (c.scan_factor < 1 ? "costs memory and scans more"
                : c.spill_costs_more_memory()
                    ? "costs more memory than it saves in scanning"
                    : "saves more in scanning than it costs in memory")
            << "\n";
        if (c.spill_costs_more_memory()) {
            costly.push_back(c.label);
        }
    }
    out << "Spill costs more memory than it saves in scanning for: ";
    if (costly.empty()) {
        out << "no code";
    }
    for (size_t i = 0; i < costly.size(); i++) {
        out << (i ? ", " : "") << costly[i];
    }
    out << "\n";
    return out.str();
}

void write_codes_csv(
    const std::vector<CodeComparison>& codes, const std::string& path) {
    std::ofstream out(path);
    FAISS_THROW_IF_NOT_FMT(out.good(), "cannot write %s", path.c_str());
    out << "code,replication,kmeans_bytes_per_vector,gmm_bytes_per_vector,"
           "memory_factor,kmeans_max_recall,gmm_max_recall";
    for (CostMeasure m : code_measures()) {
        for (double t : code_targets()) {
            out << ",ratio_" << cost_measure_name(m) << "_" << t;
        }
    }
    out << ",cap_target";
    for (CostMeasure m : code_measures()) {
        out << ",cap_ratio_" << cost_measure_name(m);
    }
    out << ",verdict_target,scan_factor,spill_costs_more_memory\n";
    for (const CodeComparison& c : codes) {
        out << csv_field(c.label) << "," << csv_value(c.replication) << ","
            << csv_value(c.kmeans_bytes_per_vector) << ","
            << csv_value(c.gmm_bytes_per_vector) << ","
            << csv_value(c.memory_factor) << ","
            << csv_value(c.kmeans_max_recall) << ","
            << csv_value(c.gmm_max_recall);
        for (const auto& ratios : c.ratio) {
            for (double r : ratios) {
                out << "," << csv_value(r);
            }
        }
        out << "," << csv_value(c.cap_target);
        for (double r : c.cap_ratio) {
            out << "," << csv_value(r);
        }
        out << "," << csv_value(c.verdict_target) << ","
            << csv_value(c.scan_factor) << ","
            << (std::isnan(c.scan_factor)     ? ""
                : c.spill_costs_more_memory() ? "1"
                                              : "0")
            << "\n";
    }
    out.flush();
    FAISS_THROW_IF_NOT_FMT(out.good(), "error while writing %s", path.c_str());
}

} // namespace eval
} // namespace faiss_gmm
