#include <eval/summary.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include <faiss/impl/FaissAssert.h>

#include <eval/text_table.h>

namespace faiss_gmm {
namespace eval {

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

} // namespace

const char* cost_measure_name(CostMeasure measure) {
    switch (measure) {
    case CostMeasure::UniqueVectors:
        return "unique";
    case CostMeasure::EntriesScanned:
        return "entries";
    case CostMeasure::SearchTime:
        return "time_us";
    case CostMeasure::BytesScanned:
        return "bytes";
    }
    FAISS_THROW_FMT("unknown CostMeasure %d", int(measure));
}

double row_cost(const SearchRow& row, CostMeasure measure) {
    switch (measure) {
    case CostMeasure::UniqueVectors:
        return row.total_distances();
    case CostMeasure::EntriesScanned:
        return row.total_entries();
    case CostMeasure::SearchTime:
        return row.qps > 0 ? 1e6 / row.qps : kNaN;
    case CostMeasure::BytesScanned:
        return row.bytes_scanned;
    }
    FAISS_THROW_FMT("unknown CostMeasure %d", int(measure));
}

std::vector<CurvePoint>
recall_curve(const IndexResult& index, CostMeasure measure) {
    std::vector<CurvePoint> curve;
    for (const SearchRow& row : index.rows) {
        double cost = row_cost(row, measure);
        if (std::isfinite(row.recall_at_k) && std::isfinite(cost) && cost > 0) {
            curve.push_back({cost, row.recall_at_k});
        }
    }
    return curve;
}

TargetSummary summarize_targets(
    const EvalReport& report,
    const std::vector<double>& targets,
    CostMeasure measure) {
    TargetSummary summary;
    summary.measure = measure;
    summary.targets = targets;
    std::sort(summary.targets.begin(), summary.targets.end());
    for (const IndexResult& index : report.indexes) {
        std::vector<CurvePoint> curve = recall_curve(index, measure);
        const CurvePoint* cheapest = nullptr;
        for (const CurvePoint& p : curve) {
            if (!cheapest || p.cost < cheapest->cost ||
                (p.cost == cheapest->cost && p.recall > cheapest->recall)) {
                cheapest = &p;
            }
        }
        std::vector<double> costs;
        std::vector<bool> bounds;
        for (double target : summary.targets) {
            costs.push_back(cost_at_recall(curve, target));
            bounds.push_back(cheapest && cheapest->recall >= target);
        }
        summary.cost.push_back(costs);
        summary.upper_bound.push_back(bounds);
    }
    for (size_t i = 0; i < report.indexes.size(); i++) {
        std::vector<double> ratios;
        for (size_t t = 0; t < summary.targets.size(); t++) {
            ratios.push_back(
                report.baseline < 0
                    ? kNaN
                    : summary.cost[report.baseline][t] / summary.cost[i][t]);
        }
        summary.ratio.push_back(ratios);
    }
    return summary;
}

MatchedCostSummary
summarize_matched_cost(const EvalReport& report, CostMeasure measure) {
    MatchedCostSummary summary;
    summary.measure = measure;
    if (report.baseline < 0) {
        return summary;
    }
    const IndexResult& base = report.indexes[report.baseline];
    std::vector<std::pair<double, int64_t>> points;
    for (const SearchRow& row : base.rows) {
        double cost = row_cost(row, measure);
        if (std::isfinite(cost) && cost > 0) {
            points.emplace_back(cost, row.nprobe);
        }
    }
    std::sort(points.begin(), points.end());
    for (const auto& p : points) {
        summary.costs.push_back(p.first);
        summary.baseline_nprobe.push_back(p.second);
    }
    for (const IndexResult& index : report.indexes) {
        std::vector<CurvePoint> curve = recall_curve(index, measure);
        std::vector<double> recalls;
        for (double cost : summary.costs) {
            recalls.push_back(recall_at_cost(curve, cost));
        }
        summary.recall.push_back(recalls);
    }
    return summary;
}

std::string format_number(double value, const char* format) {
    if (std::isnan(value)) {
        return "n/a";
    }
    char buf[64];
    snprintf(buf, sizeof(buf), format, value);
    return buf;
}

std::string format_rows_table(const EvalReport& report) {
    std::string k = std::to_string(report.k);
    bool extra_k = report.k != 1 && report.k != 10 && report.k != 100;
    std::vector<std::string> header = {
        "index", "nprobe", "lists", "R@1", "R@10", "R@100"};
    if (extra_k) {
        header.push_back("R@" + k);
    }
    bool refined = false;
    for (const IndexResult& index : report.indexes) {
        for (const SearchRow& row : index.rows) {
            refined = refined || row.refine_distances > 0;
        }
    }
    header.push_back("coarse");
    header.push_back("fine");
    if (refined) {
        header.push_back("refine");
    }
    for (const char* h :
         {"total", "entries", "bytes", "repl", "search_s", "QPS"}) {
        header.push_back(h);
    }
    TextTable table(header);
    for (const IndexResult& index : report.indexes) {
        for (const SearchRow& row : index.rows) {
            std::string nprobe = std::to_string(row.nprobe);
            if (row.posterior_mass > 0) {
                nprobe += format_number(row.posterior_mass, " m=%.7g");
            }
            std::vector<std::string> cells = {
                index.name,
                nprobe,
                format_number(row.lists_probed, "%.1f"),
                format_number(row.recall_at_1, "%.4f"),
                format_number(row.recall_at_10, "%.4f"),
                format_number(row.recall_at_100, "%.4f")};
            if (extra_k) {
                cells.push_back(format_number(row.recall_at_k, "%.4f"));
            }
            cells.push_back(format_number(row.coarse_distances, "%.0f"));
            cells.push_back(format_number(row.fine_distances, "%.0f"));
            if (refined) {
                cells.push_back(format_number(row.refine_distances, "%.0f"));
            }
            cells.push_back(format_number(row.total_distances(), "%.0f"));
            cells.push_back(format_number(row.entries_scanned, "%.0f"));
            cells.push_back(format_number(row.bytes_scanned, "%.0f"));
            cells.push_back(format_number(index.replication, "%.3f"));
            cells.push_back(format_number(row.search_s, "%.3f"));
            cells.push_back(format_number(row.qps, "%.0f"));
            table.add_row(cells);
        }
    }
    return table.str();
}

std::string
format_target_summary(const EvalReport& report, const TargetSummary& summary) {
    std::string k = std::to_string(report.k);
    std::ostringstream out;
    const bool time = summary.measure == CostMeasure::SearchTime;
    if (time) {
        out << "Search time per query (microseconds, "
            << (report.gpu.empty()
                    ? std::to_string(report.threads) + " CPU threads"
                    : "GPU indexes on " + report.gpu)
            << "; 1e6 / QPS) to reach recall@" << k;
    } else if (summary.measure == CostMeasure::BytesScanned) {
        out << "Bytes scanned per query (codes of the list entries scanned, "
               "their spill records, refinement reads) to reach recall@"
            << k;
    } else {
        out << "Distance computations per query ("
            << cost_measure_name(summary.measure) << ": coarse + "
            << (summary.measure == CostMeasure::UniqueVectors
                    ? "fine, each vector once"
                    : "list entries scanned")
            << ") to reach recall@" << k;
    }
    if (report.baseline >= 0) {
        out << "; ratio = " << report.indexes[report.baseline].name
            << " / index (> 1: " << (time ? "more QPS" : "fewer")
            << " than the baseline)";
    }
    out << "\n";
    std::vector<std::string> header = {
        "index", "repl", "imbal", "lists_MB", "build_s"};
    for (double t : summary.targets) {
        header.push_back(format_number(t, "@%.2f"));
        header.push_back("ratio");
    }
    TextTable table(header);
    bool any_bound = false;
    for (size_t i = 0; i < report.indexes.size(); i++) {
        const IndexResult& index = report.indexes[i];
        std::vector<std::string> cells = {
            index.name,
            format_number(index.replication, "%.3f"),
            format_number(index.imbalance, "%.2f"),
            format_number(index.list_bytes / 1e6, "%.1f"),
            format_number(index.train_s + index.add_s, "%.1f")};
        for (size_t t = 0; t < summary.targets.size(); t++) {
            bool bound = summary.upper_bound[i][t] ||
                         (report.baseline >= 0 &&
                          summary.upper_bound[report.baseline][t]);
            std::string mark = bound ? "*" : "";
            any_bound = any_bound || bound;
            cells.push_back(
                format_number(summary.cost[i][t], time ? "%.1f" : "%.0f") +
                (summary.upper_bound[i][t] ? "*" : ""));
            cells.push_back(format_number(summary.ratio[i][t], "%.3f") + mark);
        }
        table.add_row(cells);
    }
    out << table.str();
    if (any_bound) {
        out << "* reached already at the cheapest measured setting: the cost "
               "is an upper bound and the ratio only indicative (add smaller "
               "nprobe values or a larger nlist)\n";
    }
    return out.str();
}

std::string format_matched_cost(
    const EvalReport& report, const MatchedCostSummary& summary) {
    if (report.baseline < 0 || summary.costs.empty()) {
        return "No baseline index: no matched-cost view.\n";
    }
    std::ostringstream out;
    out << "Recall@" << report.k << " at the baseline's costs ("
        << cost_measure_name(summary.measure)
        << " distance computations per query; n/a: outside the index's "
           "measured range)\n";
    auto cell = [&](size_t i, size_t c) {
        double r = summary.recall[i][c];
        std::string text = format_number(r, "%.4f");
        if (int(i) != report.baseline && !std::isnan(r)) {
            double base_recall = summary.recall[report.baseline][c];
            text += format_number(100 * (r - base_recall), " (%+.1f)");
        }
        return text;
    };
    // One column per index reads best for a few indexes; many indexes (the
    // ablation) get one row each instead.
    const bool row_per_index = report.indexes.size() > 4;
    std::vector<std::string> header;
    if (row_per_index) {
        header.push_back("index \\ cost (baseline nprobe)");
        for (size_t c = 0; c < summary.costs.size(); c++) {
            header.push_back(
                format_number(summary.costs[c], "%.0f") + " (" +
                std::to_string(summary.baseline_nprobe[c]) + ")");
        }
    } else {
        header = {"cost", "nprobe"};
        for (const IndexResult& index : report.indexes) {
            header.push_back(index.name);
        }
    }
    TextTable table(header);
    if (row_per_index) {
        for (size_t i = 0; i < report.indexes.size(); i++) {
            std::vector<std::string> cells = {report.indexes[i].name};
            for (size_t c = 0; c < summary.costs.size(); c++) {
                cells.push_back(cell(i, c));
            }
            table.add_row(cells);
        }
    } else {
        for (size_t c = 0; c < summary.costs.size(); c++) {
            std::vector<std::string> cells = {
                format_number(summary.costs[c], "%.0f"),
                std::to_string(summary.baseline_nprobe[c])};
            for (size_t i = 0; i < report.indexes.size(); i++) {
                cells.push_back(cell(i, c));
            }
            table.add_row(cells);
        }
    }
    out << table.str();
    return out.str();
}

} // namespace eval
} // namespace faiss_gmm
