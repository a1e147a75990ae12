#include <eval/writers.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace eval {

namespace {

/// Full precision, NaN/Inf as the given text.
std::string number(double v, const char* non_finite) {
    if (!std::isfinite(v)) {
        return non_finite;
    }
    char buf[64];
    snprintf(buf, sizeof(buf), "%.10g", v);
    return buf;
}

std::string csv_number(double v) {
    return number(v, "");
}

std::string json_number(double v) {
    return number(v, "null");
}

std::ofstream open_for_writing(const std::string& path) {
    std::ofstream out(path);
    FAISS_THROW_IF_NOT_FMT(out.good(), "cannot write %s", path.c_str());
    return out;
}

void finish(std::ofstream& out, const std::string& path) {
    out.flush();
    FAISS_THROW_IF_NOT_FMT(out.good(), "error while writing %s", path.c_str());
}

} // namespace

std::string json_quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\t':
            out += "\\t";
            break;
        case '\r':
            out += "\\r";
            break;
        default:
            if ((unsigned char)c < 0x20) {
                char buf[8];
                snprintf(buf, sizeof(buf), "\\u%04x", c);
                out += buf;
            } else {
                out += c;
            }
        }
    }
    return out + "\"";
}

std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) {
        return s;
    }
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') {
            out += '"';
        }
        out += c;
    }
    return out + "\"";
}

std::vector<std::string> results_csv_columns() {
    return {
        "index",
        "description",
        "is_gmm",
        "nlist",
        "nprobe",
        "posterior_mass",
        "lists_probed",
        "recall_at_1",
        "recall_at_10",
        "recall_at_100",
        "k",
        "recall_at_k",
        "coarse_distances",
        "fine_distances",
        "total_distances",
        "entries_scanned",
        "total_entries",
        "refine_distances",
        "bytes_scanned",
        "replication",
        "imbalance",
        "ntotal",
        "nentries",
        "list_bytes",
        "code_size",
        "memory_bytes",
        "bytes_per_vector",
        "train_s",
        "add_s",
        "search_s",
        "qps"};
}

void write_results_csv(const EvalReport& report, const std::string& path) {
    std::ofstream out = open_for_writing(path);
    std::vector<std::string> columns = results_csv_columns();
    for (size_t c = 0; c < columns.size(); c++) {
        out << (c ? "," : "") << columns[c];
    }
    out << "\n";
    for (const IndexResult& index : report.indexes) {
        for (const SearchRow& row : index.rows) {
            out << csv_field(index.name) << "," << csv_field(index.description)
                << "," << (index.is_gmm ? 1 : 0) << "," << index.nlist << ","
                << row.nprobe << "," << csv_number(row.posterior_mass) << ","
                << csv_number(row.lists_probed) << ","
                << csv_number(row.recall_at_1) << ","
                << csv_number(row.recall_at_10) << ","
                << csv_number(row.recall_at_100) << "," << report.k << ","
                << csv_number(row.recall_at_k) << ","
                << csv_number(row.coarse_distances) << ","
                << csv_number(row.fine_distances) << ","
                << csv_number(row.total_distances()) << ","
                << csv_number(row.entries_scanned) << ","
                << csv_number(row.total_entries()) << ","
                << csv_number(row.refine_distances) << ","
                << csv_number(row.bytes_scanned) << ","
                << csv_number(index.replication) << ","
                << csv_number(index.imbalance) << "," << index.ntotal << ","
                << index.nentries << "," << index.list_bytes << ","
                << index.code_size << ","
                << (index.memory.complete ? std::to_string(index.memory.total())
                                          : std::string())
                << "," << csv_number(index.bytes_per_vector()) << ","
                << csv_number(index.train_s) << "," << csv_number(index.add_s)
                << "," << csv_number(row.search_s) << "," << csv_number(row.qps)
                << "\n";
        }
    }
    finish(out, path);
}

void write_summary_csv(
    const EvalReport& report,
    const std::vector<TargetSummary>& targets,
    const std::vector<MatchedCostSummary>& matched,
    const std::string& path) {
    std::ofstream out = open_for_writing(path);
    out << "kind,measure,index,k,target_recall,cost,cost_is_upper_bound,"
           "ratio_vs_baseline,recall\n";
    for (const TargetSummary& s : targets) {
        for (size_t i = 0; i < report.indexes.size(); i++) {
            for (size_t t = 0; t < s.targets.size(); t++) {
                out << "target," << cost_measure_name(s.measure) << ","
                    << csv_field(report.indexes[i].name) << "," << report.k
                    << "," << csv_number(s.targets[t]) << ","
                    << csv_number(s.cost[i][t]) << ","
                    << (s.upper_bound[i][t] ? 1 : 0) << ","
                    << csv_number(s.ratio[i][t]) << ",\n";
            }
        }
    }
    for (const MatchedCostSummary& s : matched) {
        for (size_t i = 0; i < s.recall.size(); i++) {
            for (size_t c = 0; c < s.costs.size(); c++) {
                out << "matched_cost," << cost_measure_name(s.measure) << ","
                    << csv_field(report.indexes[i].name) << "," << report.k
                    << ",," << csv_number(s.costs[c]) << ",,,"
                    << csv_number(s.recall[i][c]) << "\n";
            }
        }
    }
    finish(out, path);
}

void write_results_json(
    const EvalReport& report,
    const std::vector<TargetSummary>& targets,
    const std::vector<MatchedCostSummary>& matched,
    const std::string& path) {
    std::ofstream out = open_for_writing(path);
    out << "{\n";
    out << "  \"dataset\": " << json_quote(report.dataset) << ",\n";
    out << "  \"description\": " << json_quote(report.description) << ",\n";
    out << "  \"n_base\": " << report.n_base << ",\n";
    out << "  \"n_query\": " << report.n_query << ",\n";
    out << "  \"d\": " << report.d << ",\n";
    out << "  \"n_train\": " << report.n_train << ",\n";
    out << "  \"k\": " << report.k << ",\n";
    out << "  \"search_k\": " << report.search_k << ",\n";
    out << "  \"threads\": " << report.threads << ",\n";
    out << "  \"gpu\": " << json_quote(report.gpu) << ",\n";
    out << "  \"distance_matrix\": " << json_quote(report.distance_matrix)
        << ",\n";
    out << "  \"baseline\": "
        << (report.baseline < 0
                ? std::string("null")
                : json_quote(report.indexes[report.baseline].name))
        << ",\n";
    out << "  \"indexes\": [\n";
    for (size_t i = 0; i < report.indexes.size(); i++) {
        const IndexResult& index = report.indexes[i];
        out << "    {\"name\": " << json_quote(index.name)
            << ", \"description\": " << json_quote(index.description)
            << ", \"is_gmm\": " << (index.is_gmm ? "true" : "false")
            << ", \"nlist\": " << index.nlist
            << ", \"train_s\": " << json_number(index.train_s)
            << ", \"add_s\": " << json_number(index.add_s)
            << ", \"ntotal\": " << index.ntotal
            << ", \"nentries\": " << index.nentries
            << ", \"replication\": " << json_number(index.replication)
            << ", \"imbalance\": " << json_number(index.imbalance)
            << ", \"list_bytes\": " << index.list_bytes
            << ", \"code_size\": " << index.code_size << ",\n";
        const IndexMemory& m = index.memory;
        out << "     \"memory\": {\"codes\": " << m.codes
            << ", \"ids\": " << m.ids
            << ", \"spill_records\": " << m.spill_records
            << ", \"coarse\": " << m.coarse
            << ", \"code_params\": " << m.code_params
            << ", \"refine\": " << m.refine
            << ", \"transforms\": " << m.transforms
            << ", \"total\": " << m.total()
            << ", \"complete\": " << (m.complete ? "true" : "false")
            << "}, \"bytes_per_vector\": "
            << json_number(index.bytes_per_vector()) << ",\n";
        out << "     \"rows\": [\n";
        for (size_t r = 0; r < index.rows.size(); r++) {
            const SearchRow& row = index.rows[r];
            out << "       {\"nprobe\": " << row.nprobe
                << ", \"posterior_mass\": " << json_number(row.posterior_mass)
                << ", \"lists_probed\": " << json_number(row.lists_probed)
                << ", \"recall_at_1\": " << json_number(row.recall_at_1)
                << ", \"recall_at_10\": " << json_number(row.recall_at_10)
                << ", \"recall_at_100\": " << json_number(row.recall_at_100)
                << ", \"recall_at_k\": " << json_number(row.recall_at_k)
                << ", \"coarse_distances\": "
                << json_number(row.coarse_distances)
                << ", \"fine_distances\": " << json_number(row.fine_distances)
                << ", \"total_distances\": "
                << json_number(row.total_distances())
                << ", \"entries_scanned\": " << json_number(row.entries_scanned)
                << ", \"refine_distances\": "
                << json_number(row.refine_distances)
                << ", \"bytes_scanned\": " << json_number(row.bytes_scanned)
                << ", \"search_s\": " << json_number(row.search_s)
                << ", \"qps\": " << json_number(row.qps) << "}"
                << (r + 1 < index.rows.size() ? "," : "") << "\n";
        }
        out << "     ]}" << (i + 1 < report.indexes.size() ? "," : "") << "\n";
    }
    out << "  ],\n";
    out << "  \"targets\": [\n";
    bool first = true;
    for (const TargetSummary& s : targets) {
        for (size_t i = 0; i < report.indexes.size(); i++) {
            for (size_t t = 0; t < s.targets.size(); t++) {
                out << (first ? "" : ",\n") << "    {\"measure\": "
                    << json_quote(cost_measure_name(s.measure))
                    << ", \"index\": " << json_quote(report.indexes[i].name)
                    << ", \"target_recall\": " << json_number(s.targets[t])
                    << ", \"cost\": " << json_number(s.cost[i][t])
                    << ", \"cost_is_upper_bound\": "
                    << (s.upper_bound[i][t] ? "true" : "false")
                    << ", \"ratio_vs_baseline\": " << json_number(s.ratio[i][t])
                    << "}";
                first = false;
            }
        }
    }
    out << "\n  ],\n";
    out << "  \"matched_cost\": [\n";
    first = true;
    for (const MatchedCostSummary& s : matched) {
        for (size_t i = 0; i < s.recall.size(); i++) {
            for (size_t c = 0; c < s.costs.size(); c++) {
                out << (first ? "" : ",\n") << "    {\"measure\": "
                    << json_quote(cost_measure_name(s.measure))
                    << ", \"index\": " << json_quote(report.indexes[i].name)
                    << ", \"cost\": " << json_number(s.costs[c])
                    << ", \"recall\": " << json_number(s.recall[i][c]) << "}";
                first = false;
            }
        }
    }
    out << "\n  ]\n}\n";
    finish(out, path);
}

} // namespace eval
} // namespace faiss_gmm
