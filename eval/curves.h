/**
 * Recall-versus-cost curves and their interpolation: the cost an index needs
 * to reach a recall target, and the recall it reaches at a given cost.
 * Both interpolate linearly in log(cost), which is how such curves are
 * plotted and where they are close to straight.
 */

#pragma once

#include <vector>

namespace faiss_gmm {
namespace eval {

/// One measured operating point of an index (e.g. one nprobe).
struct CurvePoint {
    double cost = 0;   ///< cost per query (e.g. distance computations), > 0
    double recall = 0; ///< recall at that cost, in [0, 1]
};

/**
 * The smallest cost at which the curve reaches recall >= target: the first
 * point (by increasing cost) that reaches it, interpolated log-linearly with
 * the point before it. When the cheapest point already reaches the target
 * its cost is returned (the curve says nothing about cheaper settings).
 * Returns NaN when no point reaches the target. Points need not be sorted;
 * costs must be > 0.
 */
double cost_at_recall(std::vector<CurvePoint> curve, double target);

/**
 * The recall the curve reaches at the given cost, interpolated linearly in
 * log(cost) between the two measured points around it; where several points
 * share a cost, the best recall among them. Returns NaN when cost lies
 * outside [cheapest cost, dearest cost] (no extrapolation), except above a
 * curve whose dearest point has recall 1: a sweep stops there because more
 * probes cannot lose a neighbour, so the recall stays 1.
 */
double recall_at_cost(std::vector<CurvePoint> curve, double cost);

} // namespace eval
} // namespace faiss_gmm
