/**
 * The --ablation preset: the variants a reviewer asks for when a GMM
 * quantizer is claimed to beat k-means (issue 7), run in one harness on the
 * same training sample, lists machinery and queries, and one table that
 * compares them to k-means at fixed recall, counted both by unique vectors
 * and by list entries scanned, with replication beside every number.
 */

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <eval/results.h>
#include <eval/runner.h>
#include <eval/summary.h>

namespace faiss_gmm {
namespace eval {

/// Recall@k targets of the ablation table.
std::vector<double> ablation_targets();

/**
 * The ablation variants for nlist lists, in this order:
 * k-means IVF (FAISS, the baseline); k-means centroids + closure spill
 * (ratio 1.1, max 2 and 1.3, max 3), + SOAR spill (lambda 1, max 2), +
 * RAIR spill (lambda 0.5, max 2), +
 * tempered posterior spill (T 4, tau 0.02, max 2); spherical GMM without
 * spill; spherical GMM with posterior spill at T in {1, 2, 4} x tau in
 * {0.02, 0.05} (max 2); diagonal GMM without spill; spherical GMM (T 4,
 * tau 0.02) probed by posterior instead of L2; and the same with adaptive
 * probing (posterior-mass targets, nprobe = nlist as the cap).
 * Every spherical GMM variant shares one trained model.
 * @param gmm_iter EM iterations of the GMM variants, the niter key's value
 *                 ("": the default)
 */
std::vector<IndexSpec>
ablation_specs(int64_t nlist, const std::string& gmm_iter = "");

/**
 * The spill-rule preset (--spill-rules): k-means IVF (FAISS, the baseline);
 * on the k-means centroids, at most 2 lists each: closure with ratio 1000
 * (the nearest two means) and 1.2, SOAR (lambda 1), RAIR (lambda 0.5 and
 * 0.75) and tempered posterior (T 4, tau 0: always two lists); on one
 * spherical GMM: posterior (T 4, tau 0 and the defaults' tau 0.02), SOAR
 * (lambda 1) and RAIR (lambda 0.5). Every row unpruned, so the rules are
 * compared alone; all but closure 1.2 and the GMM defaults store exactly
 * two copies of each vector (equal replication).
 * @param gmm_iter EM iterations of the GMM ("": the default)
 */
std::vector<IndexSpec>
spill_rule_specs(int64_t nlist, const std::string& gmm_iter = "");

/**
 * The ablation table: per variant, replication, list-size imbalance, build
 * time (train + add), and the ratio k-means cost / variant cost at each
 * target, unique-vector and entries-scanned counting; then the same
 * variants sorted by replication, each beside the best classic spill rule
 * (k-means centroids + closure / SOAR / posterior) whose replication is no
 * larger, which is the comparison at equal memory.
 */
std::string format_ablation_table(
    const EvalReport& report,
    const TargetSummary& unique,
    const TargetSummary& entries);

/**
 * The --prune-sweep preset: k-means IVF (FAISS, the baseline), then for
 * each margin m (0: unpruned) the GMM index pruned at m (one GMM, trained
 * once, with the run's GMM build settings) and the k-means lists pruned at
 * m (k-means centroids, no spill), so the GMM's own share of the pruning
 * gain stays visible.
 * @param gmm      the run's GMM settings (--build-params and shorthands;
 *                 the search keys apply to every row besides the margin)
 */
std::vector<IndexSpec> pruning_specs(
    int64_t nlist, const std::vector<float>& margins, const GmmOverrides& gmm);

/// The k-means lists searched with the GMM index's search settings (a
/// baseline beside stock k-means IVF when those settings prune).
IndexSpec kmeans_lists_spec(int64_t nlist, const GmmOverrides& gmm);

/// The ablation table as CSV (one line per variant).
void write_ablation_csv(
    const EvalReport& report,
    const TargetSummary& unique,
    const TargetSummary& entries,
    const std::string& path);

} // namespace eval
} // namespace faiss_gmm
