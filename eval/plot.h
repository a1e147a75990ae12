/**
 * The recall@k versus distance-computations plot, drawn by gnuplot: the
 * data (recall<k>.dat) and the script (recall<k>.gp) are always written to
 * the output folder, so the figure can be redrawn or restyled; the PNG and
 * SVG are drawn when a gnuplot executable is found.
 */

#pragma once

#include <string>

#include <eval/results.h>
#include <eval/summary.h>

namespace faiss_gmm {
namespace eval {

/// What write_plot produced.
struct PlotFiles {
    std::string data;   ///< curve data, one gnuplot data block per index
    std::string script; ///< the gnuplot script
    std::string png;    ///< the PNG, empty when it was not drawn
    std::string svg;    ///< the SVG, empty when it was not drawn
    /// why the images were not drawn (empty when they were)
    std::string warning;
};

/// The PNG terminal of the gnuplot on PATH: "pngcairo" when available, else
/// "png"; empty when gnuplot is missing or has neither.
std::string detect_gnuplot_png_terminal();

/**
 * Writes recall<k>.dat and recall<k>.gp into out_dir and, when gnuplot is
 * available, runs it to draw recall<k>.png and recall<k>.svg: recall@k
 * against total distance computations per query (coarse + fine, unique),
 * log x, one curve per index. Another measure plots recall@k against that
 * cost instead, in recall<k>_<cost_measure_name>.*. Never throws for a
 * missing or failing gnuplot (the warning says what happened); throws when
 * the files cannot be written.
 */
PlotFiles write_plot(
    const EvalReport& report,
    const std::string& out_dir,
    CostMeasure measure = CostMeasure::UniqueVectors);

} // namespace eval
} // namespace faiss_gmm
