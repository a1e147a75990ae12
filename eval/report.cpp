#include <eval/report.h>

#include <algorithm>
#include <filesystem>

#include <faiss/impl/FaissAssert.h>

#include <eval/ablation.h>
#include <eval/plot.h>
#include <eval/summary.h>
#include <eval/writers.h>

namespace faiss_gmm {
namespace eval {

std::vector<double> default_targets() {
    return {0.80, 0.90, 0.95, 0.99};
}

ReportFiles publish_report(
    const EvalReport& report,
    const std::string& out_dir,
    const ReportPresets& presets,
    std::ostream& out) {
    std::error_code error;
    std::filesystem::create_directories(out_dir, error);
    FAISS_THROW_IF_NOT_FMT(
        !error,
        "cannot create output folder %s: %s",
        out_dir.c_str(),
        error.message().c_str());

    std::vector<double> targets = default_targets();
    if (presets.ablation) {
        for (double t : ablation_targets()) {
            if (std::find(targets.begin(), targets.end(), t) == targets.end()) {
                targets.push_back(t);
            }
        }
    }
    std::vector<TargetSummary> target_summaries = {
        summarize_targets(report, targets, CostMeasure::UniqueVectors),
        summarize_targets(report, targets, CostMeasure::EntriesScanned),
        summarize_targets(report, targets, CostMeasure::SearchTime),
        summarize_targets(report, targets, CostMeasure::BytesScanned)};
    std::vector<MatchedCostSummary> matched = {
        summarize_matched_cost(report, CostMeasure::UniqueVectors)};

    out << "\n== " << report.dataset << ": " << report.n_base << " x "
        << report.d << ", " << report.n_query << " queries, training sample "
        << report.n_train << ", " << report.threads << " threads"
        << (report.gpu.empty() ? "" : ", GPU " + report.gpu)
        << (report.distance_matrix.empty()
                ? ""
                : ", distance matrix on " + report.distance_matrix)
        << " ==\n\n";
    out << format_rows_table(report) << "\n";
    for (const TargetSummary& s : target_summaries) {
        out << format_target_summary(report, s) << "\n";
    }
    out << format_matched_cost(report, matched[0]) << "\n";

    ReportFiles files;
    files.results_csv = out_dir + "/results.csv";
    files.summary_csv = out_dir + "/summary.csv";
    files.results_json = out_dir + "/results.json";
    write_results_csv(report, files.results_csv);
    write_summary_csv(report, target_summaries, matched, files.summary_csv);
    write_results_json(report, target_summaries, matched, files.results_json);
    if (presets.ablation) {
        out << format_ablation_table(
                   report, target_summaries[0], target_summaries[1])
            << "\n";
        files.ablation_csv = out_dir + "/ablation.csv";
        write_ablation_csv(
            report,
            target_summaries[0],
            target_summaries[1],
            files.ablation_csv);
    }
    if (!presets.codes.empty()) {
        const std::vector<CodeComparison> codes =
            compare_codes(report, presets.codes);
        out << format_code_table(report, codes) << "\n";
        files.codes_csv = out_dir + "/codes.csv";
        write_codes_csv(codes, files.codes_csv);
        PlotFiles bytes_plot =
            write_plot(report, out_dir, CostMeasure::BytesScanned);
        if (!bytes_plot.warning.empty()) {
            out << "warning: " << bytes_plot.warning << "\n";
        }
    }
    PlotFiles plot = write_plot(report, out_dir);
    files.plot_script = plot.script;
    files.plot_png = plot.png;
    files.plot_svg = plot.svg;
    if (!plot.warning.empty()) {
        out << "warning: " << plot.warning << "\n";
    }
    out << "wrote " << files.results_csv << ", " << files.summary_csv << ", "
        << files.results_json;
    for (const std::string* f : {&files.ablation_csv, &files.codes_csv}) {
        if (!f->empty()) {
            out << ", " << *f;
        }
    }
    out << "\nplot: "
        << (files.plot_png.empty() ? plot.script + " (not drawn)"
                                   : files.plot_png + ", " + files.plot_svg)
        << "\n";
    out.flush();
    return files;
}

} // namespace eval
} // namespace faiss_gmm
