/**
 * Tests of the evaluation harness: recall with ties, curve interpolation,
 * summary ratios, the writers, and faiss_gmm_eval end to end on a tiny
 * synthetic data set (every file written, numbers consistent).
 */

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissException.h>
#include <faiss/utils/distances.h>

#include "test_scratch.h"
#include <datasets/groundtruth.h>
#include <datasets/synthetic.h>
#include <datasets/vector_io.h>
#include <eval/ablation.h>
#include <eval/cli.h>
#include <eval/codes.h>
#include <eval/curves.h>
#include <eval/distance_matrix.h>
#include <eval/plot.h>
#include <eval/recall.h>
#include <eval/report.h>
#include <eval/runner.h>
#include <eval/summary.h>
#include <eval/writers.h>
#include <faiss_gmm/IVFGMMParameters.h>

namespace fe = faiss_gmm::eval;
namespace fd = faiss_gmm::datasets;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

using faiss_gmm::test::fresh_scratch_dir;

/// Splits one CSV line, honouring double-quoted fields.
std::vector<std::string> split_csv_line(const std::string& line) {
    std::vector<std::string> fields(1);
    bool quoted = false;
    for (size_t i = 0; i < line.size(); i++) {
        char c = line[i];
        if (quoted) {
            if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
                fields.back() += '"';
                i++;
            } else if (c == '"') {
                quoted = false;
            } else {
                fields.back() += c;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            fields.emplace_back();
        } else {
            fields.back() += c;
        }
    }
    return fields;
}

/// A CSV file as rows of column name -> value.
std::vector<std::map<std::string, std::string>>
read_csv(const std::string& path) {
    std::ifstream in(path);
    EXPECT_TRUE(in.good()) << path;
    std::string line;
    std::getline(in, line);
    std::vector<std::string> header = split_csv_line(line);
    std::vector<std::map<std::string, std::string>> rows;
    while (std::getline(in, line)) {
        std::vector<std::string> fields = split_csv_line(line);
        EXPECT_EQ(fields.size(), header.size()) << line;
        std::map<std::string, std::string> row;
        for (size_t c = 0; c < header.size() && c < fields.size(); c++) {
            row[header[c]] = fields[c];
        }
        rows.push_back(row);
    }
    return rows;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

/// Points on a line (query at the origin) for hand-made recall cases.
struct LineData {
    int d = 2;
    std::vector<float> xq = {0, 0};
    // ids 0..4 at squared distances 1, 1, 4, 9, 1 (id 4 ties ids 0 and 1)
    std::vector<float> xb = {1, 0, 0, 1, 2, 0, 3, 0, -1, 0};
    int64_t nb = 5;
};

fe::ReferenceDistances line_reference(const LineData& data) {
    // the true top 3: ids 0, 1, 4 (all at distance 1), file order 0, 1, 2
    // deliberately lists id 2 (distance 4) third, as a tie-blind ground
    // truth might; the sorted exact distances fix it
    std::vector<int32_t> gt = {0, 1, 4, 2};
    return fe::make_reference_distances(
        data.d, 1, data.xq.data(), data.nb, data.xb.data(), 4, gt.data());
}

double line_recall(const LineData& data, std::vector<int64_t> labels, int k) {
    fe::ReferenceDistances ref = line_reference(data);
    std::vector<double> dis = fe::exact_distances(
        data.d,
        1,
        data.xq.data(),
        data.nb,
        data.xb.data(),
        int(labels.size()),
        labels.data());
    return fe::recall_at_k(
        ref, k, int(labels.size()), labels.data(), dis.data());
}

} // namespace

TEST(EvalRecall, ExactDistancesAndMissingIds) {
    LineData data;
    std::vector<int64_t> ids = {3, -1, 2};
    std::vector<double> dis = fe::exact_distances(
        data.d, 1, data.xq.data(), data.nb, data.xb.data(), 3, ids.data());
    EXPECT_EQ(dis[0], 9.0);
    EXPECT_TRUE(std::isinf(dis[1]));
    EXPECT_EQ(dis[2], 4.0);
    std::vector<int64_t> bad = {5};
    EXPECT_THROW(
        fe::exact_distances(
            data.d, 1, data.xq.data(), data.nb, data.xb.data(), 1, bad.data()),
        faiss::FaissException);
}

TEST(EvalRecall, ReferenceIsSortedExactDistances) {
    LineData data;
    fe::ReferenceDistances ref = line_reference(data);
    ASSERT_EQ(ref.k, 4);
    EXPECT_EQ(ref.at(0, 0), 1.0);
    EXPECT_EQ(ref.at(0, 1), 1.0);
    EXPECT_EQ(ref.at(0, 2), 1.0);
    EXPECT_EQ(ref.at(0, 3), 4.0);
}

TEST(EvalRecall, HandMadeCasesWithTies) {
    LineData data;
    // exact answer
    EXPECT_DOUBLE_EQ(line_recall(data, {0, 1, 4}, 3), 1.0);
    // id 4 ties the 2nd neighbour at distance 1: it counts for recall@2
    EXPECT_DOUBLE_EQ(line_recall(data, {4, 0}, 2), 1.0);
    EXPECT_DOUBLE_EQ(line_recall(data, {1, 4, 0}, 1), 1.0);
    // a farther point does not count
    EXPECT_DOUBLE_EQ(line_recall(data, {0, 2}, 2), 0.5);
    EXPECT_DOUBLE_EQ(line_recall(data, {2, 3, 0}, 3), 1.0 / 3);
    // only the first k results count
    EXPECT_DOUBLE_EQ(line_recall(data, {2, 0, 1}, 1), 0.0);
    EXPECT_DOUBLE_EQ(line_recall(data, {2, 0, 1}, 3), 2.0 / 3);
    // an id returned twice counts once, -1 never
    EXPECT_DOUBLE_EQ(line_recall(data, {0, 0, 0}, 3), 1.0 / 3);
    EXPECT_DOUBLE_EQ(line_recall(data, {-1, -1, 4}, 3), 1.0 / 3);
    // recall@4: the 4th true distance is 4, so id 2 is needed or tied
    EXPECT_DOUBLE_EQ(line_recall(data, {0, 1, 4, 3}, 4), 0.75);
    EXPECT_DOUBLE_EQ(line_recall(data, {0, 1, 4, 2}, 4), 1.0);
}

TEST(EvalRecall, MeanOverQueriesAndDepthChecks) {
    // two queries, one found, one missed
    int d = 1;
    std::vector<float> xq = {0, 10};
    std::vector<float> xb = {0, 10, 5};
    std::vector<int32_t> gt = {0, 1};
    fe::ReferenceDistances ref = fe::make_reference_distances(
        d, 2, xq.data(), 3, xb.data(), 1, gt.data());
    std::vector<int64_t> labels = {0, 2};
    std::vector<double> dis =
        fe::exact_distances(d, 2, xq.data(), 3, xb.data(), 1, labels.data());
    EXPECT_DOUBLE_EQ(
        fe::recall_at_k(ref, 1, 1, labels.data(), dis.data()), 0.5);
    // k deeper than the ground truth or the results
    EXPECT_THROW(
        fe::recall_at_k(ref, 2, 2, labels.data(), dis.data()),
        faiss::FaissException);
    EXPECT_THROW(
        fe::recall_at_k(ref, 2, 1, labels.data(), dis.data()),
        faiss::FaissException);
    std::vector<int32_t> bad_gt = {0, 7};
    EXPECT_THROW(
        fe::make_reference_distances(
            d, 2, xq.data(), 3, xb.data(), 1, bad_gt.data()),
        faiss::FaissException);
}

TEST(EvalCurves, CostAtRecallIsLogLinear) {
    std::vector<fe::CurvePoint> curve = {
        {1000, 0.9}, {100, 0.5}, {10000, 0.99}};
    // halfway in recall between 100 and 1000 -> geometric mean
    EXPECT_NEAR(
        fe::cost_at_recall(curve, 0.7), std::sqrt(100.0 * 1000.0), 1e-9);
    EXPECT_NEAR(fe::cost_at_recall(curve, 0.9), 1000, 1e-9);
    EXPECT_NEAR(
        fe::cost_at_recall(curve, 0.945),
        std::exp(0.5 * (std::log(1000.0) + std::log(10000.0))),
        1e-6);
    // reached at the cheapest point: its cost
    EXPECT_EQ(fe::cost_at_recall(curve, 0.3), 100);
    // never reached
    EXPECT_TRUE(std::isnan(fe::cost_at_recall(curve, 0.995)));
    EXPECT_TRUE(std::isnan(fe::cost_at_recall({}, 0.5)));
    // a noisy, non-monotone curve: the first point reaching the target
    std::vector<fe::CurvePoint> noisy = {
        {10, 0.2}, {20, 0.6}, {40, 0.55}, {80, 0.9}};
    EXPECT_NEAR(fe::cost_at_recall(noisy, 0.6), 20, 1e-9);
    EXPECT_THROW(fe::cost_at_recall({{0, 0.5}}, 0.1), faiss::FaissException);
}

TEST(EvalCurves, RecallAtCostIsLogLinear) {
    std::vector<fe::CurvePoint> curve = {{100, 0.5}, {1000, 0.9}, {1000, 0.8}};
    EXPECT_NEAR(fe::recall_at_cost(curve, std::sqrt(1e5)), 0.7, 1e-12);
    EXPECT_NEAR(fe::recall_at_cost(curve, 100), 0.5, 1e-12);
    // equal costs: the best recall
    EXPECT_NEAR(fe::recall_at_cost(curve, 1000), 0.9, 1e-12);
    // no extrapolation
    EXPECT_TRUE(std::isnan(fe::recall_at_cost(curve, 99)));
    EXPECT_TRUE(std::isnan(fe::recall_at_cost(curve, 1001)));
    // except above a curve that reached recall 1 (a sweep stops there)
    std::vector<fe::CurvePoint> full = {{100, 0.5}, {1000, 1.0}};
    EXPECT_EQ(fe::recall_at_cost(full, 5000), 1.0);
    EXPECT_TRUE(std::isnan(fe::recall_at_cost(full, 50)));
    // round trip with cost_at_recall
    std::vector<fe::CurvePoint> c2 = {{50, 0.3}, {400, 0.8}, {3000, 0.97}};
    double cost = fe::cost_at_recall(c2, 0.9);
    EXPECT_NEAR(fe::recall_at_cost(c2, cost), 0.9, 1e-9);
}

namespace {

/// A report with a k-means-like baseline and a GMM-like index that reaches
/// every recall at half the fine cost.
fe::EvalReport two_index_report() {
    fe::EvalReport report;
    report.dataset = "hand-made";
    report.n_base = 1000;
    report.n_query = 10;
    report.d = 4;
    report.k = 10;
    const double recalls[] = {0.5, 0.8, 0.95, 1.0};
    const double fine[] = {100, 200, 400, 1000};
    for (int index = 0; index < 2; index++) {
        fe::IndexResult r;
        r.name = index == 0 ? "IVF16,Flat" : "IVF16_GMM,Flat";
        r.description = r.name;
        r.is_gmm = index == 1;
        r.nlist = 16;
        r.replication = index == 0 ? 1.0 : 1.5;
        for (int i = 0; i < 4; i++) {
            fe::SearchRow row;
            row.nprobe = int64_t(1) << i;
            row.recall_at_1 = row.recall_at_10 = row.recall_at_k = recalls[i];
            row.recall_at_100 = kNaN;
            row.coarse_distances = 0;
            row.fine_distances = index == 0 ? fine[i] : fine[i] / 2;
            row.entries_scanned = row.fine_distances * r.replication;
            r.rows.push_back(row);
        }
        report.indexes.push_back(r);
    }
    report.baseline = 0;
    return report;
}

} // namespace

TEST(EvalSummary, RatiosAndMatchedCost) {
    fe::EvalReport report = two_index_report();
    fe::TargetSummary s = fe::summarize_targets(
        report, {0.95, 0.8, 0.99}, fe::CostMeasure::UniqueVectors);
    ASSERT_EQ(s.targets, (std::vector<double>{0.8, 0.95, 0.99}));
    EXPECT_NEAR(s.cost[0][0], 200, 1e-9);
    EXPECT_NEAR(s.cost[1][0], 100, 1e-9);
    for (size_t t = 0; t < 3; t++) {
        EXPECT_NEAR(s.ratio[0][t], 1.0, 1e-12);
        EXPECT_NEAR(s.ratio[1][t], 2.0, 1e-9);
    }
    EXPECT_FALSE(s.upper_bound[0][0]);
    // 0.5 is reached at the cheapest point of both curves: upper bounds
    fe::TargetSummary low =
        fe::summarize_targets(report, {0.5}, fe::CostMeasure::UniqueVectors);
    EXPECT_TRUE(low.upper_bound[0][0]);
    EXPECT_TRUE(low.upper_bound[1][0]);
    EXPECT_EQ(low.cost[1][0], 50);
    // entries: the GMM scans 1.5x its unique count -> ratio 2 / 1.5
    fe::TargetSummary e =
        fe::summarize_targets(report, {0.8}, fe::CostMeasure::EntriesScanned);
    EXPECT_NEAR(e.ratio[1][0], 2.0 / 1.5, 1e-9);

    fe::MatchedCostSummary m =
        fe::summarize_matched_cost(report, fe::CostMeasure::UniqueVectors);
    ASSERT_EQ(m.costs.size(), 4u);
    EXPECT_EQ(m.baseline_nprobe[1], 2);
    // at the baseline's cost 200 (its recall 0.8) the GMM measured 0.95
    EXPECT_NEAR(m.recall[1][1], 0.95, 1e-12);
    EXPECT_NEAR(m.recall[0][1], 0.8, 1e-12);
    // cost 1000 is beyond the GMM's measured range (max 500), where it
    // already had recall 1
    EXPECT_EQ(m.recall[1][3], 1.0);
    // a curve that stopped short of recall 1 says nothing above its range
    report.indexes[1].rows[3].recall_at_k = 0.99;
    fe::MatchedCostSummary m2 =
        fe::summarize_matched_cost(report, fe::CostMeasure::UniqueVectors);
    EXPECT_TRUE(std::isnan(m2.recall[1][3]));
    // no baseline: ratios are n/a
    report.baseline = -1;
    fe::TargetSummary none =
        fe::summarize_targets(report, {0.8}, fe::CostMeasure::UniqueVectors);
    EXPECT_TRUE(std::isnan(none.ratio[1][0]));
    EXPECT_TRUE(
        fe::summarize_matched_cost(report, fe::CostMeasure::UniqueVectors)
            .costs.empty());
    // the tables print n/a rather than nan
    std::string table = fe::format_target_summary(report, none);
    EXPECT_NE(table.find("n/a"), std::string::npos);
    EXPECT_EQ(table.find("nan"), std::string::npos);
}

TEST(EvalWriters, CsvAndJson) {
    fe::EvalReport report = two_index_report();
    report.indexes[1].name = "odd \"name\", with comma";
    std::string dir = fresh_scratch_dir("writers");
    fe::write_results_csv(report, dir + "/results.csv");
    auto rows = read_csv(dir + "/results.csv");
    ASSERT_EQ(rows.size(), 8u);
    EXPECT_EQ(rows[4]["index"], "odd \"name\", with comma");
    EXPECT_EQ(rows[0]["recall_at_100"], ""); // NaN -> empty
    EXPECT_EQ(std::stod(rows[5]["total_distances"]), 100.0);
    EXPECT_EQ(rows[0].size(), fe::results_csv_columns().size());

    std::vector<fe::TargetSummary> targets = {fe::summarize_targets(
        report, {0.8, 0.95}, fe::CostMeasure::UniqueVectors)};
    std::vector<fe::MatchedCostSummary> matched = {
        fe::summarize_matched_cost(report, fe::CostMeasure::UniqueVectors)};
    fe::write_summary_csv(report, targets, matched, dir + "/summary.csv");
    auto summary = read_csv(dir + "/summary.csv");
    EXPECT_EQ(summary.size(), 2u * 2 + 2u * 4);
    EXPECT_EQ(summary[2]["kind"], "target");
    EXPECT_NEAR(std::stod(summary[2]["ratio_vs_baseline"]), 2.0, 1e-9);

    fe::write_results_json(report, targets, matched, dir + "/results.json");
    std::string json = read_file(dir + "/results.json");
    EXPECT_NE(json.find("\"odd \\\"name\\\", with comma\""), std::string::npos);
    EXPECT_NE(json.find("\"recall_at_100\": null"), std::string::npos);
    EXPECT_EQ(json.find("nan"), std::string::npos);
    EXPECT_THROW(
        fe::write_results_csv(report, dir + "/missing/dir/results.csv"),
        faiss::FaissException);
}

TEST(EvalRunner, DefaultsAndSweeps) {
    EXPECT_EQ(fe::default_nlist(200000), 2048);
    EXPECT_EQ(fe::default_nlist(300000), 2048);
    EXPECT_EQ(fe::default_nlist(1000000), 4096);
    EXPECT_EQ(fe::default_nlist(1), 1);
    EXPECT_EQ(fe::nprobe_sweep({}, 16), (std::vector<int64_t>{1, 2, 4, 8, 16}));
    EXPECT_EQ(fe::nprobe_sweep({}, 12), (std::vector<int64_t>{1, 2, 4, 8, 12}));
    EXPECT_EQ(fe::nprobe_sweep({64, 3, 3}, 16), (std::vector<int64_t>{3, 16}));
    EXPECT_THROW(fe::nprobe_sweep({0}, 16), faiss::FaissException);
}

TEST(EvalRunner, GmmFromCentroids) {
    // two clusters on a line around 0 and 10
    std::vector<float> x = {-1, 1, 9, 11, 10};
    std::vector<float> centroids = {0, 10};
    faiss_gmm::GaussianMixture g =
        fe::gmm_from_centroids(1, 2, centroids.data(), 5, x.data());
    EXPECT_EQ(g.means, centroids);
    EXPECT_NEAR(g.weights[0], 3.0 / 7, 1e-6);
    EXPECT_NEAR(g.weights[1], 4.0 / 7, 1e-6);
    EXPECT_NEAR(g.variances[0], 1.0, 1e-6);
    EXPECT_NEAR(g.variances[1], 2.0 / 3, 1e-6);
    EXPECT_TRUE(g.is_trained);
}

namespace {

/// 5k x 16 synthetic vectors with 100 queries and top-100 ground truth.
const fd::Dataset& tiny_dataset() {
    static const fd::Dataset data = [] {
        fd::SyntheticParameters p;
        p.n_base = 5000;
        p.n_query = 100;
        p.d = 16;
        p.n_clusters = 24;
        p.low_rank = 4;
        p.seed = 7;
        return fd::make_synthetic(p);
    }();
    return data;
}

} // namespace

TEST(EvalRunner, DefaultSweepStopsAtHighRecall) {
    fe::EvalConfig config;
    std::ostringstream log;
    fe::EvalReport report = fe::run_evaluation(
        tiny_dataset(), {{"", "IVF16,Flat", {}, {}, {}}}, config, log);
    ASSERT_EQ(report.indexes.size(), 1u);
    EXPECT_EQ(report.baseline, 0);
    const auto& rows = report.indexes[0].rows;
    ASSERT_FALSE(rows.empty());
    EXPECT_GE(rows.back().recall_at_k, fe::kDefaultSweepStopRecall);
    EXPECT_LT(rows.back().nprobe, 16) << "the tiny set reaches it early";
    for (size_t r = 0; r < rows.size(); r++) {
        EXPECT_EQ(rows[r].nprobe, int64_t(1) << r);
        if (r + 1 < rows.size()) {
            EXPECT_LT(rows[r].recall_at_k, fe::kDefaultSweepStopRecall);
        }
    }
}

TEST(EvalRunner, SharedModelsAndAdaptiveProbing) {
    // the ablation machinery: k-means centroids under a spill rule, a GMM
    // trained once and shared, adaptive probing rows
    // (unpruned: the rows at nprobe = nlist are checked to be exhaustive)
    const std::string unpruned = "prune_margin=0";
    fe::GmmOverrides closure;
    closure.build = "spill=closure,closure_ratio=1.5,max_assign=3";
    closure.search = unpruned;
    fe::GmmOverrides nospill;
    nospill.build = "spill=none,max_assign=1";
    nospill.search = unpruned;
    fe::GmmOverrides spill;
    spill.build = "spill=posterior,temperature=4,tau=0.02,max_assign=2";
    spill.search = unpruned;
    std::vector<fe::IndexSpec> specs = {
        {"k-means", "IVF16,Flat", {}, fe::ModelSource::OwnTraining, {}},
        {"closure",
         "IVF16_GMM,Flat",
         closure,
         fe::ModelSource::KMeansCentroids,
         {}},
        {"gmm nospill",
         "IVF16_GMM,Flat",
         nospill,
         fe::ModelSource::SharedGmm,
         {}},
        {"gmm spill", "IVF16_GMM,Flat", spill, fe::ModelSource::SharedGmm, {}},
        {"adaptive",
         "IVF16_GMM,Flat",
         spill,
         fe::ModelSource::SharedGmm,
         {0.5f, 0.999f}}};
    fe::EvalConfig config;
    config.nprobes = {1, 16};
    std::ostringstream log;
    fe::EvalReport report =
        fe::run_evaluation(tiny_dataset(), specs, config, log);
    ASSERT_EQ(report.indexes.size(), specs.size());
    EXPECT_EQ(report.baseline, 0);
    const auto& kmeans = report.indexes[0];
    const auto& closure_result = report.indexes[1];
    EXPECT_GT(closure_result.replication, 1.0);
    // the k-means model is reused, not retrained: its training time is
    // carried over, and k-means runs once in the whole log
    EXPECT_GE(closure_result.train_s, kmeans.train_s);
    EXPECT_NE(
        log.str().find("adopted the k-means centroids"), std::string::npos);
    EXPECT_EQ(log.str().find("training k-means"), std::string::npos)
        << log.str();
    // the GMM is trained once: its training time is carried over (with
    // the adopting index's own code training, none for Flat)
    EXPECT_GE(report.indexes[3].train_s, report.indexes[2].train_s);
    EXPECT_EQ(report.indexes[2].replication, 1.0);
    EXPECT_GT(report.indexes[3].replication, 1.0);
    for (size_t i = 0; i + 1 < specs.size(); i++) {
        SCOPED_TRACE(report.indexes[i].name);
        ASSERT_EQ(report.indexes[i].rows.size(), 2u);
        const fe::SearchRow& full = report.indexes[i].rows[1];
        EXPECT_EQ(full.recall_at_10, 1.0);
        EXPECT_EQ(full.fine_distances, 5000);
        EXPECT_EQ(full.coarse_distances, 16);
        EXPECT_NEAR(
            full.entries_scanned, double(report.indexes[i].nentries), 1e-9);
    }
    const auto& adaptive = report.indexes[4].rows;
    ASSERT_EQ(adaptive.size(), 2u);
    for (const fe::SearchRow& row : adaptive) {
        EXPECT_EQ(row.nprobe, 16);
        EXPECT_GE(row.lists_probed, 1.0);
        EXPECT_LE(row.lists_probed, 16.0);
    }
    EXPECT_FLOAT_EQ(adaptive[0].posterior_mass, 0.5f);
    EXPECT_LE(adaptive[0].lists_probed, adaptive[1].lists_probed);
    EXPECT_NE(log.str().find("adopted the shared GMM"), std::string::npos);
}

TEST(EvalAblation, PresetAndTable) {
    std::vector<fe::IndexSpec> specs = fe::ablation_specs(64, "7");
    ASSERT_EQ(specs.size(), 28u);
    EXPECT_EQ(specs[0].factory, "IVF64,Flat");
    EXPECT_EQ(specs[0].model, fe::ModelSource::OwnTraining);
    int classic = 0, shared = 0, adaptive = 0, pruned = 0;
    for (const fe::IndexSpec& spec : specs) {
        if (spec.model != fe::ModelSource::OwnTraining) {
            // a row prunes only where its name says so (the library
            // default prunes), and then in L2 probe order
            faiss_gmm::SearchParametersIVFGMM p;
            faiss_gmm::parse_search_parameters(spec.gmm.search, &p);
            const bool named = spec.name.find("prune") != std::string::npos;
            EXPECT_EQ(p.prune_margin > 0, named) << spec.name;
            EXPECT_EQ(p.min_expected_hits, 0.0f) << spec.name;
            if (named) {
                pruned++;
                EXPECT_EQ(p.probe_order, faiss_gmm::ProbeOrder::L2)
                    << spec.name;
            }
        }
        if (spec.model == fe::ModelSource::KMeansCentroids) {
            classic++;
            EXPECT_EQ(spec.name.rfind("k-means + ", 0), 0u) << spec.name;
        }
        if (spec.model == fe::ModelSource::SharedGmm) {
            shared++;
            EXPECT_EQ(spec.factory, "IVF64_GMM,Flat");
            // the EM-iteration rows set their own count
            if (spec.name.find(", EM ") == std::string::npos) {
                EXPECT_NE(spec.gmm.build.find("niter=7"), std::string::npos)
                    << spec.name;
            }
            EXPECT_NE(spec.gmm.build.find("spill="), std::string::npos)
                << spec.name;
            // every string is accepted by the key table
            faiss_gmm::IndexIVFGMM index(8, 64);
            EXPECT_NO_THROW(spec.gmm.apply(&index)) << spec.name;
        }
        if (!spec.posterior_masses.empty()) {
            adaptive++;
        }
    }
    EXPECT_EQ(classic, 8);
    EXPECT_EQ(shared, 19);
    EXPECT_EQ(adaptive, 2);
    EXPECT_EQ(pruned, 5);

    fe::EvalReport report = two_index_report();
    report.indexes[1].name = "k-means + closure";
    fe::TargetSummary u = fe::summarize_targets(
        report, fe::ablation_targets(), fe::CostMeasure::UniqueVectors);
    fe::TargetSummary e = fe::summarize_targets(
        report, fe::ablation_targets(), fe::CostMeasure::EntriesScanned);
    std::string table = fe::format_ablation_table(report, u, e);
    EXPECT_NE(table.find("k-means + closure"), std::string::npos);
    EXPECT_NE(table.find("2.00"), std::string::npos); // unique ratio
    EXPECT_NE(table.find("1.33"), std::string::npos); // entries ratio
    std::string dir = fresh_scratch_dir("ablation");
    fe::write_ablation_csv(report, u, e, dir + "/ablation.csv");
    auto rows = read_csv(dir + "/ablation.csv");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_NEAR(std::stod(rows[1]["ratio_unique_0.95"]), 2.0, 1e-9);
    EXPECT_NEAR(std::stod(rows[1]["ratio_entries_0.95"]), 2.0 / 1.5, 1e-9);
}

TEST(EvalCli, OptionErrors) {
    std::ostringstream out, err;
    EXPECT_EQ(fe::eval_main({"--bogus"}, out, err), 2);
    EXPECT_NE(err.str().find("--bogus"), std::string::npos);
    EXPECT_EQ(fe::eval_main({"--nlist", "x"}, out, err), 2);
    EXPECT_EQ(fe::eval_main({"--help"}, out, err), 0);
    EXPECT_NE(out.str().find("--ablation"), std::string::npos);
    // device 99 exists nowhere: a CUDA build rejects it before loading data
    std::ostringstream gpu_err;
    EXPECT_EQ(fe::eval_main({"--gpu", "--gpu-device", "99"}, out, gpu_err), 1);
#ifdef FAISS_GMM_WITH_GPU
    EXPECT_NE(
        gpu_err.str().find("CUDA device 99 is not usable"), std::string::npos);
#else
    EXPECT_NE(gpu_err.str().find("built without CUDA"), std::string::npos);
#endif
    fe::EvalOptions o = fe::parse_eval_options(
        {"--index",
         "A",
         "--index=B",
         "--nprobe",
         "1,4",
         "--spill-tau",
         "0.05",
         "--spill-rule",
         "closure",
         "--covariance",
         "diagonal"});
    EXPECT_EQ(o.indexes, (std::vector<std::string>{"A", "B"}));
    EXPECT_EQ(o.config.nprobes, (std::vector<int64_t>{1, 4}));
    EXPECT_EQ(o.gmm.build, "tau=0.05,spill=closure,covariance=diagonal");
    EXPECT_THROW(
        fe::parse_eval_options({"--spill-tau", "2"}), faiss::FaissException);
    EXPECT_THROW(
        fe::parse_eval_options({"--build-params", "nprobe=3"}),
        faiss::FaissException);
}

TEST(EvalCli, TinySyntheticEndToEnd) {
    // the tiny set written as a TEXMEX folder and run through the CLI
    const fd::Dataset& data = tiny_dataset();
    std::string data_dir = fresh_scratch_dir("tiny_data");
    fd::write_fvecs(
        data_dir + "/base.fvecs", data.base.data.data(), data.base.n, 16);
    fd::write_fvecs(
        data_dir + "/query.fvecs", data.query.data.data(), data.query.n, 16);
    fd::write_ivecs(
        data_dir + "/groundtruth.ivecs",
        data.groundtruth.ids.data(),
        data.groundtruth.nq,
        data.groundtruth.k);

    std::string out_dir = fresh_scratch_dir("tiny_out");
    const std::vector<std::string> indexes = {
        "IVF16,Flat", "IVF16_GMM_nospill,Flat", "IVF16_GMM,Flat"};
    std::vector<std::string> args = {
        "--dataset",
        data_dir,
        "--out",
        out_dir,
        "--nlist",
        "16",
        "--nprobe",
        "1,2,4,8,16",
        // the last rows are checked to be exhaustive
        "--search-params",
        "prune_margin=0"};
    for (const std::string& s : indexes) {
        args.push_back("--index");
        args.push_back(s);
    }
    std::ostringstream out, err;
    int status = fe::eval_main(args, out, err);
    ASSERT_EQ(status, 0) << err.str() << "\n" << out.str();

    for (const char* f :
         {"results.csv",
          "summary.csv",
          "results.json",
          "recall10.gp",
          "recall10.dat"}) {
        EXPECT_TRUE(std::filesystem::exists(out_dir + "/" + f)) << f;
    }
    if (!fe::detect_gnuplot_png_terminal().empty()) {
        EXPECT_GT(std::filesystem::file_size(out_dir + "/recall10.png"), 0u);
        EXPECT_GT(std::filesystem::file_size(out_dir + "/recall10.svg"), 0u);
    }

    auto rows = read_csv(out_dir + "/results.csv");
    const size_t n_nprobe = 5; // 1, 2, 4, 8, 16
    ASSERT_EQ(rows.size(), indexes.size() * n_nprobe);
    for (size_t i = 0; i < indexes.size(); i++) {
        bool single_assignment = i < 2;
        for (size_t r = 0; r < n_nprobe; r++) {
            auto& row = rows[i * n_nprobe + r];
            SCOPED_TRACE(row["index"] + " nprobe " + row["nprobe"]);
            EXPECT_EQ(row["index"], indexes[i]);
            EXPECT_EQ(std::stoll(row["nprobe"]), int64_t(1) << r);
            EXPECT_EQ(std::stod(row["coarse_distances"]), 16);
            double fine = std::stod(row["fine_distances"]);
            double entries = std::stod(row["entries_scanned"]);
            EXPECT_EQ(std::stod(row["total_distances"]), 16 + fine);
            EXPECT_LE(fine, entries);
            if (single_assignment) {
                EXPECT_EQ(fine, entries);
                EXPECT_EQ(std::stod(row["replication"]), 1.0);
                EXPECT_EQ(std::stoll(row["nentries"]), 5000);
            }
            EXPECT_EQ(std::stoll(row["ntotal"]), 5000);
            if (r == n_nprobe - 1) {
                // nprobe = nlist: exhaustive, every vector compared once
                EXPECT_EQ(std::stod(row["recall_at_1"]), 1.0);
                EXPECT_EQ(std::stod(row["recall_at_10"]), 1.0);
                EXPECT_EQ(std::stod(row["recall_at_100"]), 1.0);
                EXPECT_EQ(fine, 5000);
                EXPECT_EQ(entries, std::stod(row["nentries"]));
            }
            if (r > 0) {
                auto& prev = rows[i * n_nprobe + r - 1];
                EXPECT_GE(fine, std::stod(prev["fine_distances"]));
            }
        }
    }
    // the default GMM index spills: more entries than vectors
    EXPECT_GT(std::stod(rows[2 * n_nprobe]["replication"]), 1.0);
    EXPECT_EQ(
        std::stoll(rows[2 * n_nprobe]["nentries"]),
        std::llround(5000 * std::stod(rows[2 * n_nprobe]["replication"])));

    auto summary = read_csv(out_dir + "/summary.csv");
    // 4 measures x 3 indexes x 4 targets + 3 indexes x 5 baseline costs
    EXPECT_EQ(summary.size(), 4u * 3 * 4 + 3u * n_nprobe);
    for (auto& line : summary) {
        if (line["kind"] == "target" && line["index"] == indexes[0] &&
            !line["cost"].empty()) {
            EXPECT_NEAR(std::stod(line["ratio_vs_baseline"]), 1.0, 1e-12);
        }
    }
    std::string json = read_file(out_dir + "/results.json");
    EXPECT_NE(json.find("\"baseline\": \"IVF16,Flat\""), std::string::npos);
    size_t n_rows = 0;
    for (size_t pos = json.find("\"nprobe\":"); pos != std::string::npos;
         pos = json.find("\"nprobe\":", pos + 1)) {
        n_rows++;
    }
    EXPECT_EQ(n_rows, indexes.size() * n_nprobe);
    EXPECT_NE(out.str().find("ratio"), std::string::npos);
}

namespace {

/// tiny_dataset() rounded to integers (scale 8) with its ground truth
/// recomputed: the GEMM distances of the matrix are then exact, equal to
/// the fvec_L2sqr values of the indexes' own scans, so both evaluation
/// modes must agree to the last bit whatever the ties.
const fd::Dataset& tiny_integer_dataset() {
    static const fd::Dataset data = [] {
        fd::Dataset d = tiny_dataset();
        for (fd::FloatMatrix* m : {&d.base, &d.query}) {
            for (float& v : m->data) {
                v = std::round(8.0f * v);
            }
        }
        d.groundtruth = fd::compute_groundtruth(
            d.base, d.query, 100, false, fd::GroundTruthDevice::cpu);
        return d;
    }();
    return data;
}

} // namespace

TEST(EvalDistanceMatrix, EqualsDirectDistancesOnIntegerData) {
    const fd::Dataset& data = tiny_integer_dataset();
    const int d = data.base.d;
    float largest = 0;
    for (float v : data.base.data) {
        largest = std::max(largest, std::fabs(v));
    }
    // every partial sum below 2^24: float arithmetic is exact
    ASSERT_LT(4.0 * d * largest * largest, double(1 << 24));
    fe::DistanceMatrix m = fe::compute_distance_matrix(
        d,
        data.query.n,
        data.query.data.data(),
        data.base.n,
        data.base.data.data(),
        fe::kDefaultDistanceMatrixMaxBytes,
        false,
        0);
    EXPECT_EQ(m.device, "CPU (BLAS)");
    ASSERT_EQ(m.nq, data.query.n);
    ASSERT_EQ(m.nb, data.base.n);
    for (int64_t q = 0; q < m.nq; q++) {
        for (int64_t j = 0; j < m.nb; j++) {
            ASSERT_EQ(
                m.row(q)[j],
                faiss::fvec_L2sqr(data.query.row(q), data.base.row(j), d))
                << q << " " << j;
        }
    }
    // float data: the same up to rounding
    const fd::Dataset& real = tiny_dataset();
    fe::DistanceMatrix f = fe::compute_distance_matrix(
        d,
        real.query.n,
        real.query.data.data(),
        real.base.n,
        real.base.data.data(),
        fe::kDefaultDistanceMatrixMaxBytes,
        false,
        0);
    for (int64_t q = 0; q < f.nq; q += 7) {
        for (int64_t j = 0; j < f.nb; j += 3) {
            const float direct =
                faiss::fvec_L2sqr(real.query.row(q), real.base.row(j), d);
            EXPECT_NEAR(f.row(q)[j], direct, 1e-4f * (1 + direct));
        }
    }
}

TEST(EvalDistanceMatrix, MemoryGuardNamesTheSizes) {
    try {
        fe::check_distance_matrix_size(1000, 300000, 1e9);
        FAIL() << "1.2 GB must exceed a 1 GB limit";
    } catch (const faiss::FaissException& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("1000 x 300000"), std::string::npos) << msg;
        EXPECT_NE(msg.find("1200000000 bytes"), std::string::npos) << msg;
        EXPECT_NE(msg.find("--query-rows"), std::string::npos) << msg;
        EXPECT_NE(msg.find("833 queries fit"), std::string::npos) << msg;
    }
    EXPECT_NO_THROW(fe::check_distance_matrix_size(1000, 300000, 1.2e9));

    // the run fails before any training
    fe::EvalConfig config;
    config.distance_matrix = true;
    config.distance_matrix_max_bytes = 1e6;
    std::ostringstream log;
    try {
        fe::run_evaluation(
            tiny_dataset(), {{"", "IVF16,Flat", {}, {}, {}}}, config, log);
        FAIL() << "100 x 5000 floats exceed 1e6 bytes";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find("100 x 5000"), std::string::npos)
            << e.what();
    }
    EXPECT_EQ(log.str().find("training"), std::string::npos) << log.str();

    // through the command line
    EXPECT_TRUE(
        fe::parse_eval_options({"--distance-matrix"}).config.distance_matrix);
    EXPECT_EQ(
        fe::parse_eval_options({"--distance-matrix-max-gb", "0.5"})
            .config.distance_matrix_max_bytes,
        double(0.5f) * 1e9);
    std::ostringstream out, err;
    EXPECT_EQ(fe::eval_main({"--distance-matrix-max-gb", "0"}, out, err), 2);
    EXPECT_NE(err.str().find("must be > 0"), std::string::npos) << err.str();
    EXPECT_NE(fe::eval_usage().find("--distance-matrix"), std::string::npos);
}

TEST(EvalDistanceMatrix, IvfFlatWalkNeedsSequentialIds) {
    const fd::Dataset& data = tiny_integer_dataset();
    const int d = data.base.d;
    faiss::IndexFlatL2 quantizer(d);
    faiss::IndexIVFFlat ivf(&quantizer, d, 8);
    ivf.train(data.base.n, data.base.data.data());
    std::vector<faiss_gmm::idx_t> ids(data.base.n);
    for (size_t i = 0; i < ids.size(); i++) {
        ids[i] = faiss_gmm::idx_t(i) + 1; // the last id is out of range
    }
    ivf.add_with_ids(data.base.n, data.base.data.data(), ids.data());
    fe::DistanceMatrix m = fe::compute_distance_matrix(
        d,
        data.query.n,
        data.query.data.data(),
        data.base.n,
        data.base.data.data(),
        fe::kDefaultDistanceMatrixMaxBytes,
        false,
        0);
    std::vector<float> dis(size_t(data.query.n) * 10);
    std::vector<faiss_gmm::idx_t> labels(dis.size());
    try {
        fe::ivf_flat_lookup_search(
            ivf, m, data.query.data.data(), 10, dis.data(), labels.data());
        FAIL() << "id n_base is not a column of the matrix";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(
            std::string(e.what()).find("sequential ids"), std::string::npos)
            << e.what();
    }
}

TEST(EvalDistanceMatrix, EveryRowEqualsTheNormalEvaluation) {
    // k-means IVF (the probe walk), classic spill on k-means centroids, GMM
    // with and without spill, bisector pruning on both kinds of lists,
    // adaptive probing, and an index without a matrix path
    fe::GmmOverrides closure;
    closure.build = "spill=closure,closure_ratio=1.3,max_assign=3";
    fe::GmmOverrides closure_pruned = closure;
    closure_pruned.search = "prune_margin=0.4";
    fe::GmmOverrides nospill;
    nospill.build = "spill=none,max_assign=1";
    fe::GmmOverrides spill;
    spill.build = "spill=posterior,temperature=4,tau=0.02,max_assign=2";
    fe::GmmOverrides spill_pruned = spill;
    spill_pruned.search = "prune_margin=0.3";
    fe::GmmOverrides by_posterior = spill;
    by_posterior.search = "probe=posterior";
    const std::vector<fe::IndexSpec> specs = {
        {"k-means", "IVF16,Flat", {}, fe::ModelSource::OwnTraining, {}},
        {"closure",
         "IVF16_GMM,Flat",
         closure,
         fe::ModelSource::KMeansCentroids,
         {}},
        {"closure pruned",
         "IVF16_GMM,Flat",
         closure_pruned,
         fe::ModelSource::KMeansCentroids,
         {}},
        {"nospill", "IVF16_GMM,Flat", nospill, fe::ModelSource::SharedGmm, {}},
        {"spill", "IVF16_GMM,Flat", spill, fe::ModelSource::SharedGmm, {}},
        {"spill pruned",
         "IVF16_GMM,Flat",
         spill_pruned,
         fe::ModelSource::SharedGmm,
         {}},
        {"posterior",
         "IVF16_GMM,Flat",
         by_posterior,
         fe::ModelSource::SharedGmm,
         {}},
        {"adaptive",
         "IVF16_GMM,Flat",
         spill,
         fe::ModelSource::SharedGmm,
         {0.5f, 0.9f, 0.999f}},
        {"wrapped", "PCA16,IVF16,Flat", {}, fe::ModelSource::OwnTraining, {}}};
    fe::EvalConfig config;
    config.nprobes = {1, 2, 3, 5, 16};
    std::ostringstream log_normal, log_matrix;
    const fe::EvalReport normal =
        fe::run_evaluation(tiny_integer_dataset(), specs, config, log_normal);
    config.distance_matrix = true;
    const fe::EvalReport matrix =
        fe::run_evaluation(tiny_integer_dataset(), specs, config, log_matrix);
    EXPECT_TRUE(normal.distance_matrix.empty());
    EXPECT_FALSE(matrix.distance_matrix.empty());
    EXPECT_NE(
        log_matrix.str().find("distance matrix computed on"),
        std::string::npos);
    ASSERT_EQ(normal.indexes.size(), specs.size());
    ASSERT_EQ(matrix.indexes.size(), specs.size());
    for (size_t i = 0; i < specs.size(); i++) {
        const fe::IndexResult& a = normal.indexes[i];
        const fe::IndexResult& b = matrix.indexes[i];
        SCOPED_TRACE(a.name);
        const bool has_path = specs[i].name != "wrapped";
        EXPECT_EQ(
            b.description.find("[distance matrix") != std::string::npos,
            has_path)
            << b.description;
        EXPECT_EQ(a.nentries, b.nentries);
        EXPECT_EQ(a.replication, b.replication);
        ASSERT_EQ(a.rows.size(), b.rows.size());
        for (size_t r = 0; r < a.rows.size(); r++) {
            const fe::SearchRow& x = a.rows[r];
            const fe::SearchRow& y = b.rows[r];
            SCOPED_TRACE(r);
            EXPECT_EQ(x.nprobe, y.nprobe);
            EXPECT_EQ(x.posterior_mass, y.posterior_mass);
            EXPECT_EQ(x.recall_at_1, y.recall_at_1);
            EXPECT_EQ(x.recall_at_10, y.recall_at_10);
            EXPECT_EQ(x.recall_at_100, y.recall_at_100);
            EXPECT_EQ(x.coarse_distances, y.coarse_distances);
            EXPECT_EQ(x.fine_distances, y.fine_distances);
            EXPECT_EQ(x.entries_scanned, y.entries_scanned);
            EXPECT_EQ(x.lists_probed, y.lists_probed);
        }
    }
    // the rows differ from each other: the comparison is not vacuous
    EXPECT_LT(
        matrix.indexes[5].rows[1].fine_distances,
        matrix.indexes[4].rows[1].fine_distances);
    EXPECT_LT(
        matrix.indexes[0].rows[0].recall_at_10,
        matrix.indexes[0].rows[4].recall_at_10);
}

TEST(EvalCli, PruningBaselinesAndSweep) {
    // --prune-sweep: k-means IVF, then per margin the GMM (one model) and
    // the k-means lists, both pruned at that margin
    fe::GmmOverrides gmm;
    gmm.set_build("tau", "0.05");
    const std::vector<fe::IndexSpec> sweep =
        fe::pruning_specs(16, {0.0f, 0.4f}, gmm);
    ASSERT_EQ(sweep.size(), 5u);
    EXPECT_EQ(sweep[0].factory, "IVF16,Flat");
    for (size_t i = 1; i < sweep.size(); i++) {
        const bool gmm_row = i % 2 == 1;
        SCOPED_TRACE(sweep[i].name);
        EXPECT_EQ(sweep[i].factory, "IVF16_GMM,Flat");
        EXPECT_EQ(
            sweep[i].model,
            gmm_row ? fe::ModelSource::SharedGmm
                    : fe::ModelSource::KMeansCentroids);
        faiss_gmm::SearchParametersIVFGMM p;
        faiss_gmm::parse_search_parameters(sweep[i].gmm.search, &p);
        EXPECT_FLOAT_EQ(p.prune_margin, i < 3 ? 0.0f : 0.4f);
        faiss_gmm::IVFGMMBuildParameters b;
        faiss_gmm::parse_build_parameters(sweep[i].gmm.build, &b);
        EXPECT_EQ(
            b.spill.rule,
            gmm_row ? faiss_gmm::SpillRule::Posterior
                    : faiss_gmm::SpillRule::None);
        if (gmm_row) {
            EXPECT_FLOAT_EQ(b.spill.tau, 0.05f); // the run's build keys
        }
    }
    EXPECT_THROW(
        fe::parse_eval_options({"--prune-sweep", "0.3,-1"}),
        faiss::FaissException);

    // a default run (pruning on) adds the k-means lists with that pruning
    const fd::Dataset& data = tiny_dataset();
    std::string data_dir = fresh_scratch_dir("tiny_data_pruning");
    fd::write_fvecs(
        data_dir + "/base.fvecs", data.base.data.data(), data.base.n, 16);
    fd::write_fvecs(
        data_dir + "/query.fvecs", data.query.data.data(), data.query.n, 16);
    const std::string out_dir = fresh_scratch_dir("tiny_out_pruning");
    // runs the CLI on the tiny set with extra arguments; returns stdout
    auto run = [&](std::vector<std::string> extra) {
        std::vector<std::string> args = {
            "--dataset", data_dir, "--out", out_dir, "--nlist", "16"};
        args.insert(args.end(), extra.begin(), extra.end());
        std::ostringstream out, err;
        EXPECT_EQ(fe::eval_main(args, out, err), 0) << err.str();
        return out.str();
    };
    const std::string pruned = run({"--nprobe", "1,4,16"});
    std::set<std::string> names;
    for (auto& row : read_csv(out_dir + "/results.csv")) {
        names.insert(row["index"]);
    }
    EXPECT_EQ(
        names,
        (std::set<std::string>{
            "IVF16,Flat", "IVF16_GMM,Flat", "k-means lists, GMM search"}));
    // and the QPS table at matched recall
    EXPECT_NE(pruned.find("Search time per query"), std::string::npos);
    // an unpruned run does not
    const std::string unpruned =
        run({"--nprobe", "1,16", "--search-params", "prune_margin=0"});
    EXPECT_EQ(unpruned.find("k-means lists"), std::string::npos);
}

TEST(EvalCodes, ListSyntaxAndSpecs) {
    const std::vector<fe::CodeVariant> codes =
        fe::parse_code_list("Flat,SQ8,PQ16np+RFlat,PQ8np+Refine(SQfp16)");
    ASSERT_EQ(codes.size(), 4u);
    EXPECT_EQ(codes[0].code, "Flat");
    EXPECT_EQ(codes[0].refine, "");
    EXPECT_EQ(codes[2].code, "PQ16np");
    EXPECT_EQ(codes[2].refine, "RFlat");
    EXPECT_EQ(codes[3].label, "PQ8np+Refine(SQfp16)");
    EXPECT_EQ(codes[3].factory_suffix(), ",PQ8np,Refine(SQfp16)");
    for (const char* bad :
         {"",
          "SQ8,",
          "SQ8,,Flat",
          "+RFlat",
          "SQ8+Foo",
          "SQ8+RFlat+RFlat",
          "SQ8,SQ8",
          "PQ8np+Refine(SQfp16",
          "PQ8np+Refine()",
          "SQ8)"}) {
        EXPECT_THROW(fe::parse_code_list(bad), faiss::FaissException) << bad;
    }

    // per code: FAISS k-means IVF on the run's centroids, then the GMM
    // index (one shared model) with the run's GMM settings
    fe::GmmOverrides gmm;
    gmm.set_build("tau", "0.05");
    const std::vector<fe::IndexSpec> specs = fe::code_specs(64, codes, gmm);
    ASSERT_EQ(specs.size(), 2 * codes.size());
    for (size_t c = 0; c < codes.size(); c++) {
        const fe::IndexSpec& km = specs[2 * c];
        const fe::IndexSpec& g = specs[2 * c + 1];
        EXPECT_EQ(km.name, "k-means " + codes[c].label);
        EXPECT_EQ(g.name, "GMM " + codes[c].label);
        EXPECT_EQ(km.factory, "IVF64" + codes[c].factory_suffix());
        EXPECT_EQ(g.factory, "IVF64_GMM" + codes[c].factory_suffix());
        EXPECT_EQ(km.model, fe::ModelSource::SharedKMeans);
        EXPECT_EQ(g.model, fe::ModelSource::SharedGmm);
        EXPECT_TRUE(km.gmm.describe().empty());
        EXPECT_EQ(g.gmm.build, gmm.build);
    }

    // one preset at a time; memory is counted on CPU indexes only
    const fe::EvalOptions o = fe::parse_eval_options({"--codes", "SQ8+RFlat"});
    ASSERT_EQ(o.codes.size(), 1u);
    EXPECT_EQ(o.codes[0].refine, "RFlat");
    EXPECT_THROW(
        fe::parse_eval_options({"--codes", "SQ8", "--ablation"}),
        faiss::FaissException);
    EXPECT_THROW(
        fe::parse_eval_options({"--spill-rules", "--prune-sweep", "0.4"}),
        faiss::FaissException);
    EXPECT_THROW(
        fe::parse_eval_options({"--codes", "SQ8", "--gpu"}),
        faiss::FaissException);
}

TEST(EvalCodes, TinySyntheticEveryCode) {
    const int d = 16, nlist = 16;
    const std::vector<fe::CodeVariant> codes =
        fe::parse_code_list("Flat,SQ8,SQ4,SQfp16,PQ4x4np,PQ4x4np+RFlat");
    fe::EvalConfig config;
    config.nprobes = {1, 2, 4, 8, 16};
    std::ostringstream log;
    // the library's GMM defaults (spill, pruning) as the preset runs them
    const fe::EvalReport report = fe::run_evaluation(
        tiny_dataset(), fe::code_specs(nlist, codes, {}), config, log);
    ASSERT_EQ(report.indexes.size(), 2 * codes.size());
    const int64_t n = tiny_dataset().base.n;
    const std::map<std::string, int64_t> code_size = {
        {"Flat", 4 * d},
        {"SQ8", d},
        {"SQ4", d / 2},
        {"SQfp16", 2 * d},
        {"PQ4x4np", 2}};

    for (size_t c = 0; c < codes.size(); c++) {
        const fe::IndexResult& km = report.indexes[2 * c];
        const fe::IndexResult& g = report.indexes[2 * c + 1];
        SCOPED_TRACE(codes[c].label);
        EXPECT_FALSE(km.is_gmm);
        EXPECT_TRUE(g.is_gmm);
        const bool refined = !codes[c].refine.empty();
        for (const fe::IndexResult* index : {&km, &g}) {
            SCOPED_TRACE(index->name);
            const fe::IndexMemory& m = index->memory;
            EXPECT_TRUE(m.complete);
            EXPECT_EQ(index->ntotal, n);
            EXPECT_EQ(index->code_size, code_size.at(codes[c].code));
            // every copy's code and id
            EXPECT_EQ(m.codes, index->nentries * index->code_size);
            EXPECT_EQ(m.ids, index->nentries * 8);
            EXPECT_EQ(index->list_bytes, m.codes + m.ids + m.spill_records);
            EXPECT_EQ(m.refine, refined ? n * 4 * d : 0);
            EXPECT_EQ(m.transforms, 0);
            EXPECT_DOUBLE_EQ(
                index->bytes_per_vector(), double(m.total()) / double(n));
            ASSERT_EQ(index->rows.size(), config.nprobes.size());
            // spill-record bytes read per entry (0 for k-means lists)
            const double record_bytes =
                double(m.spill_records) / double(index->nentries);
            for (const fe::SearchRow& row : index->rows) {
                SCOPED_TRACE(row.nprobe);
                EXPECT_NEAR(
                    row.bytes_scanned,
                    row.entries_scanned * (index->code_size + record_bytes) +
                        row.refine_distances * 4 * d,
                    1e-6 * row.bytes_scanned);
                // every search asks for 100 results; the lists hold more
                EXPECT_EQ(row.refine_distances, refined ? 100.0 : 0.0);
                EXPECT_DOUBLE_EQ(
                    row.total_distances(),
                    row.coarse_distances + row.fine_distances +
                        row.refine_distances);
            }
        }
        // k-means lists: one copy, no records, centroids only
        EXPECT_EQ(km.replication, 1.0);
        EXPECT_EQ(km.memory.spill_records, 0);
        EXPECT_EQ(km.memory.coarse, int64_t(nlist) * d * 4);
        // the GMM spills on this set: more entries, records, the model
        // (weights, means, spherical variances) beside the quantizer
        EXPECT_GT(g.replication, 1.0);
        EXPECT_EQ(g.nentries, std::llround(double(n) * g.replication));
        EXPECT_GT(g.memory.spill_records, 0);
        EXPECT_EQ(
            g.memory.coarse,
            int64_t(nlist) * d * 4 + int64_t(nlist) * (d + 2) * 4);
        // the same code parameters on both sides (SQ ranges, PQ codebooks
        // and precomputed tables)
        EXPECT_EQ(km.memory.code_params, g.memory.code_params);
        if (codes[c].code != "Flat" && codes[c].code != "SQfp16") {
            EXPECT_GT(km.memory.code_params, 0);
        }
        EXPECT_GT(g.bytes_per_vector(), km.bytes_per_vector());
        EXPECT_GT(g.memory.codes, km.memory.codes);
    }
    // re-ranking 100 candidates exactly can only raise recall@10 over the
    // same code's own ranking (same centroids, same codebooks)
    for (size_t side = 0; side < 2; side++) {
        const fe::IndexResult& pq = report.indexes[8 + side];
        const fe::IndexResult& refined = report.indexes[10 + side];
        for (size_t r = 0; r < pq.rows.size(); r++) {
            EXPECT_EQ(
                pq.rows[r].entries_scanned, refined.rows[r].entries_scanned);
            EXPECT_GE(refined.rows[r].recall_at_10, pq.rows[r].recall_at_10);
        }
    }
    // flat codes at nprobe = nlist on the k-means lists: brute force
    EXPECT_EQ(report.indexes[0].rows.back().recall_at_10, 1.0);

    // the per-code table: a row per code, ratios finite where both sides
    // reach a target, memory against scanning
    const std::vector<fe::CodeComparison> cmp =
        fe::compare_codes(report, codes);
    ASSERT_EQ(cmp.size(), codes.size());
    for (const fe::CodeComparison& c : cmp) {
        SCOPED_TRACE(c.label);
        ASSERT_EQ(c.ratio.size(), fe::code_measures().size());
        for (const auto& ratios : c.ratio) {
            ASSERT_EQ(ratios.size(), fe::code_targets().size());
            for (size_t t = 0; t < ratios.size(); t++) {
                const bool both =
                    fe::code_targets()[t] <= c.kmeans_max_recall &&
                    fe::code_targets()[t] <= c.gmm_max_recall;
                EXPECT_EQ(std::isfinite(ratios[t]), both) << t;
                if (both) {
                    EXPECT_GT(ratios[t], 0);
                }
            }
        }
        // near the cap every code is compared, also one that never
        // reaches the fixed targets
        EXPECT_LE(
            c.cap_target, std::min(c.kmeans_max_recall, c.gmm_max_recall));
        ASSERT_EQ(c.cap_ratio.size(), fe::code_measures().size());
        for (double r : c.cap_ratio) {
            EXPECT_TRUE(std::isfinite(r) && r > 0) << r;
        }
        EXPECT_TRUE(std::isfinite(c.scan_factor));
        EXPECT_GT(c.memory_factor, 1.0);
        EXPECT_NEAR(
            c.memory_factor,
            c.gmm_bytes_per_vector / c.kmeans_bytes_per_vector,
            1e-12);
    }
    EXPECT_TRUE(std::isfinite(cmp[0].ratio[0][0])) << "Flat reaches 0.90";

    const std::string out_dir = fresh_scratch_dir("codes");
    fe::ReportPresets presets;
    presets.codes = codes;
    std::ostringstream out;
    const fe::ReportFiles files =
        fe::publish_report(report, out_dir, presets, out);
    const std::string text = out.str();
    EXPECT_NE(text.find("Per code: ratio k-means / GMM"), std::string::npos);
    EXPECT_NE(text.find("Bytes scanned per query"), std::string::npos);
    EXPECT_NE(
        text.find("Spill costs more memory than it saves in scanning for:"),
        std::string::npos);
    for (const fe::CodeVariant& c : codes) {
        EXPECT_NE(text.find("\n" + c.label + " "), std::string::npos)
            << c.label;
    }
    auto rows = read_csv(files.codes_csv);
    ASSERT_EQ(rows.size(), codes.size());
    for (size_t c = 0; c < codes.size(); c++) {
        EXPECT_EQ(rows[c]["code"], codes[c].label);
        EXPECT_NEAR(
            std::stod(rows[c]["replication"]), cmp[c].replication, 1e-9);
    }
    EXPECT_TRUE(std::filesystem::exists(out_dir + "/recall10_bytes.gp"));
    auto results = read_csv(files.results_csv);
    ASSERT_EQ(results.size(), 2 * codes.size() * config.nprobes.size());
    EXPECT_EQ(
        std::stoll(results[0]["memory_bytes"]),
        report.indexes[0].memory.total());
}

TEST(EvalAblation, SpillRulesAtEqualReplication) {
    const std::vector<fe::IndexSpec> specs = fe::spill_rule_specs(64, "5");
    ASSERT_EQ(specs.size(), 11u);
    EXPECT_EQ(specs[0].factory, "IVF64,Flat");
    int rair = 0;
    for (size_t i = 1; i < specs.size(); i++) {
        SCOPED_TRACE(specs[i].name);
        faiss_gmm::SearchParametersIVFGMM p;
        faiss_gmm::parse_search_parameters(specs[i].gmm.search, &p);
        EXPECT_EQ(p.prune_margin, 0.0f);
        faiss_gmm::IVFGMMBuildParameters b;
        faiss_gmm::parse_build_parameters(specs[i].gmm.build, &b);
        EXPECT_EQ(b.spill.max_assign, 2);
        rair += b.spill.rule == faiss_gmm::SpillRule::Rair;
        EXPECT_EQ(
            specs[i].model == fe::ModelSource::KMeansCentroids,
            specs[i].name.rfind("k-means + ", 0) == 0);
    }
    EXPECT_EQ(rair, 3);

    // the rules meant to store two copies of every vector do (equal
    // replication); closure 1.2 and the GMM defaults store fewer
    fe::EvalConfig config;
    config.nprobes = {1, 16};
    std::ostringstream log;
    const fe::EvalReport report = fe::run_evaluation(
        tiny_dataset(), fe::spill_rule_specs(16, "5"), config, log);
    for (const fe::IndexResult& index : report.indexes) {
        SCOPED_TRACE(index.name);
        const bool fewer =
            index.name == "k-means" ||
            index.name.find("closure 1.2") != std::string::npos ||
            index.name.find("defaults") != std::string::npos;
        if (fewer) {
            EXPECT_LT(index.replication, 2.0);
        } else {
            EXPECT_EQ(index.replication, 2.0);
        }
    }
}
