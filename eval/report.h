/**
 * Everything a run prints and writes once it is measured: the tables on
 * stdout and results.csv, summary.csv, results.json, the plot (and, for the
 * ablation preset, ablation.csv) in the output folder.
 */

#pragma once

#include <ostream>
#include <string>
#include <vector>

#include <eval/results.h>

namespace faiss_gmm {
namespace eval {

/// Recall@k targets of the standard summary: 0.80, 0.90, 0.95, 0.99.
std::vector<double> default_targets();

/// Paths written by publish_report.
struct ReportFiles {
    std::string results_csv;  ///< one line per index and search setting
    std::string summary_csv;  ///< costs at targets, ratios, matched cost
    std::string results_json; ///< everything
    std::string ablation_csv; ///< the ablation table (ablation runs only)
    std::string plot_script;  ///< gnuplot script
    std::string plot_png;     ///< empty when gnuplot could not draw it
    std::string plot_svg;     ///< empty when gnuplot could not draw it
};

/**
 * Prints the per-row table, the target summary (both cost measures) and the
 * matched-cost table (and the ablation table when ablation is set) to out,
 * and writes the files into out_dir (created when missing). A missing
 * gnuplot is a warning on out, not an error.
 */
ReportFiles publish_report(
    const EvalReport& report,
    const std::string& out_dir,
    bool ablation,
    std::ostream& out);

} // namespace eval
} // namespace faiss_gmm
