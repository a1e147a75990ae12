/**
 * Everything a run prints and writes once it is measured: the tables on
 * stdout and results.csv, summary.csv, results.json, the plot (and, for the
 * ablation preset, ablation.csv; for the --codes preset, codes.csv and a
 * plot against bytes scanned) in the output folder.
 */

#pragma once

#include <ostream>
#include <string>
#include <vector>

#include <eval/codes.h>
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
    std::string codes_csv;    ///< the per-code table (--codes runs only)
    std::string plot_script;  ///< gnuplot script
    std::string plot_png;     ///< empty when gnuplot could not draw it
    std::string plot_svg;     ///< empty when gnuplot could not draw it
};

/// The tables of a preset that a report adds to the standard ones.
struct ReportPresets {
    /// the ablation table and ablation.csv
    bool ablation = false;
    /// the codes of a --codes run: the per-code table, codes.csv and the
    /// plot against bytes scanned (empty: none)
    std::vector<CodeVariant> codes;
};

/**
 * Prints the per-row table, the target summary (every cost measure) and
 * the matched-cost table (and the presets' tables) to out, and writes the
 * files into out_dir (created when missing). A missing gnuplot is a
 * warning on out, not an error.
 */
ReportFiles publish_report(
    const EvalReport& report,
    const std::string& out_dir,
    const ReportPresets& presets,
    std::ostream& out);

} // namespace eval
} // namespace faiss_gmm
