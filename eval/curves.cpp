#include <eval/curves.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace eval {

namespace {

/// Sorted by cost; among equal costs only the best recall is kept.
std::vector<CurvePoint> normalized(std::vector<CurvePoint> curve) {
    for (const CurvePoint& p : curve) {
        FAISS_THROW_IF_NOT_FMT(
            p.cost > 0 && std::isfinite(p.cost),
            "curve point with cost %g: costs must be finite and > 0",
            p.cost);
    }
    std::sort(
        curve.begin(),
        curve.end(),
        [](const CurvePoint& a, const CurvePoint& b) {
            return a.cost < b.cost || (a.cost == b.cost && a.recall > b.recall);
        });
    std::vector<CurvePoint> out;
    for (const CurvePoint& p : curve) {
        if (out.empty() || p.cost != out.back().cost) {
            out.push_back(p);
        }
    }
    return out;
}

} // namespace

double cost_at_recall(std::vector<CurvePoint> curve, double target) {
    std::vector<CurvePoint> points = normalized(std::move(curve));
    for (size_t i = 0; i < points.size(); i++) {
        if (points[i].recall < target) {
            continue;
        }
        if (i == 0) {
            return points[0].cost;
        }
        const CurvePoint& lo = points[i - 1];
        const CurvePoint& hi = points[i];
        // lo.recall < target <= hi.recall, so the division is safe.
        double t = (target - lo.recall) / (hi.recall - lo.recall);
        return std::exp(
            std::log(lo.cost) + t * (std::log(hi.cost) - std::log(lo.cost)));
    }
    return std::numeric_limits<double>::quiet_NaN();
}

double recall_at_cost(std::vector<CurvePoint> curve, double cost) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<CurvePoint> points = normalized(std::move(curve));
    if (points.empty() || !(cost > 0)) {
        return nan;
    }
    // Costs measured by different runs of the same quantity (e.g. n_base
    // fine distances at nprobe = nlist) may differ in the last bits.
    const double slack = 1e-9;
    if (cost < points.front().cost * (1 - slack)) {
        return nan;
    }
    if (cost > points.back().cost * (1 + slack)) {
        return points.back().recall >= 1 ? 1.0 : nan;
    }
    if (cost <= points.front().cost) {
        return points.front().recall;
    }
    for (size_t i = 1; i < points.size(); i++) {
        if (cost > points[i].cost) {
            continue;
        }
        const CurvePoint& lo = points[i - 1];
        const CurvePoint& hi = points[i];
        double t = (std::log(cost) - std::log(lo.cost)) /
                   (std::log(hi.cost) - std::log(lo.cost));
        return lo.recall + t * (hi.recall - lo.recall);
    }
    return points.back().recall;
}

} // namespace eval
} // namespace faiss_gmm
