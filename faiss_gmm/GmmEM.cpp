#include <faiss_gmm/GmmEM.h>

#include <algorithm>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <random>
#include <unordered_set>

#include <omp.h>

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/distances.h>
#include <faiss/utils/utils.h>

#include <faiss_gmm/impl/BlasCore.h>
#include <faiss_gmm/impl/GmmScoring.h>
#include <faiss_gmm/impl/RowTeam.h>

namespace faiss_gmm {

namespace {

/// Uniform integer in [0, bound), bound > 0 (modulo bias < bound / 2^64).
idx_t uniform_index(std::mt19937_64& rng, idx_t bound) {
    return idx_t(rng() % uint64_t(bound));
}

/**
 * m distinct indices of [0, n), increasing, chosen uniformly at random by
 * Floyd's algorithm: O(m) memory however large n is.
 */
std::vector<idx_t> sample_distinct(idx_t n, idx_t m, int64_t seed) {
    std::mt19937_64 rng(uint64_t(seed) ^ 0x9e3779b97f4a7c15ULL);
    std::unordered_set<idx_t> chosen;
    chosen.reserve(size_t(m) * 2);
    for (idx_t j = n - m; j < n; j++) {
        idx_t t = uniform_index(rng, j + 1);
        if (!chosen.insert(t).second) {
            chosen.insert(j);
        }
    }
    std::vector<idx_t> indices(chosen.begin(), chosen.end());
    std::sort(indices.begin(), indices.end());
    return indices;
}

/// Nearest mean of every point through index (reset, then holding the
/// means): exact L2, FAISS's blocked BLAS search or the GPU kernel.
void nearest_means(
    faiss::Index* index,
    int k,
    const float* means,
    idx_t n,
    const float* x,
    std::vector<idx_t>* assign,
    std::vector<float>* dist) {
    index->reset();
    index->add(k, means);
    assign->resize(n);
    dist->resize(n);
    index->search(n, x, 1, dist->data(), assign->data());
}

/**
 * Full covariance: weights (Laplace-smoothed counts) and covariances about
 * the given means from a hard assignment, each summed in double by one
 * dsyrk over the component's rows; components with fewer than two points
 * take diag(data variance). The variance floor is then added to every
 * diagonal (update_precision_cholesky), as the M-step adds it.
 */
void full_covariances_from_assignment(
    GaussianMixture* model,
    idx_t n,
    const float* x,
    const std::vector<idx_t>& assign,
    const std::vector<double>& count,
    const std::vector<double>& data_var_per_dim) {
    const int d = model->d, k = model->k;
    const size_t dd = size_t(d) * d;
    // rows of each component, in order
    std::vector<idx_t> begin(size_t(k) + 1, 0), rows(n);
    for (idx_t i = 0; i < n; i++) {
        begin[assign[i] + 1]++;
    }
    for (int j = 0; j < k; j++) {
        begin[j + 1] += begin[j];
    }
    std::vector<idx_t> fill(begin.begin(), begin.end() - 1);
    for (idx_t i = 0; i < n; i++) {
        rows[fill[assign[i]]++] = i;
    }
    std::vector<double> diff, moment(dd);
    for (int j = 0; j < k; j++) {
        model->weights[j] = float((count[j] + 1) / (double(n) + k));
        float* cov = model->covariances.data() + size_t(j) * dd;
        const idx_t nj = begin[j + 1] - begin[j];
        if (nj < 2) {
            std::fill(cov, cov + dd, 0.0f);
            for (int l = 0; l < d; l++) {
                cov[size_t(l) * d + l] = float(data_var_per_dim[l]);
            }
            continue;
        }
        const float* mu = model->means.data() + size_t(j) * d;
        diff.resize(size_t(nj) * d);
        for (idx_t r = 0; r < nj; r++) {
            const float* xi = x + size_t(rows[begin[j] + r]) * d;
            for (int l = 0; l < d; l++) {
                diff[size_t(r) * d + l] = double(xi[l]) - mu[l];
            }
        }
        std::fill(moment.begin(), moment.end(), 0.0);
        impl::dsyrk_ata_lower_accumulate(nj, d, diff.data(), moment.data());
        for (int r = 0; r < d; r++) {
            for (int c = 0; c <= r; c++) {
                const float v = float(moment[size_t(r) * d + c] / nj);
                cov[size_t(r) * d + c] = cov[size_t(c) * d + r] = v;
            }
        }
    }
    model->update_precision_cholesky(model->variance_floor);
}

/**
 * Weights (Laplace-smoothed counts, so none is 0) and variances about the
 * given means from a hard assignment. Components with fewer than two points
 * take the data's variance; every variance is floored. A tied model takes
 * the pooled variance sum_i ||x_i - mu_c(i)||^2 / (n d) for every component.
 */
void moments_from_assignment(
    GaussianMixture* model,
    idx_t n,
    const float* x,
    const std::vector<idx_t>& assign,
    const std::vector<double>& data_var_per_dim,
    double data_var) {
    const int d = model->d, k = model->k;
    const bool spherical = !has_per_dimension_variances(model->covariance);
    const bool tied = model->covariance == CovarianceType::TiedSpherical;
    const int vpc = model->variances_per_component();
    std::vector<double> count(k, 0.0), sq(size_t(k) * vpc, 0.0);
    for (idx_t i = 0; i < n; i++) {
        idx_t c = assign[i];
        FAISS_THROW_IF_NOT_FMT(
            c >= 0 && c < k,
            "GMM init: point %" PRId64 " has no nearest mean",
            int64_t(i));
        count[c] += 1;
        const float* xi = x + size_t(i) * d;
        const float* mu = model->means.data() + size_t(c) * d;
        double* out = sq.data() + size_t(c) * vpc;
        for (int l = 0; l < d; l++) {
            double diff = double(xi[l]) - mu[l];
            out[spherical ? 0 : l] += diff * diff;
        }
    }
    const double floor = model->variance_floor;
    if (model->covariance == CovarianceType::Full) {
        full_covariances_from_assignment(
            model, n, x, assign, count, data_var_per_dim);
        return;
    }
    if (tied) {
        double pooled_sq = 0;
        for (int j = 0; j < k; j++) {
            pooled_sq += sq[j];
        }
        const float pooled =
            float(std::max(pooled_sq / (double(n) * d), floor));
        for (int j = 0; j < k; j++) {
            model->weights[j] = float((count[j] + 1) / (double(n) + k));
            model->variances[j] = pooled;
        }
        return;
    }
    for (int j = 0; j < k; j++) {
        model->weights[j] = float((count[j] + 1) / (double(n) + k));
        for (int v = 0; v < vpc; v++) {
            double var;
            if (count[j] < 2) {
                var = spherical ? data_var : data_var_per_dim[v];
            } else {
                var =
                    sq[size_t(j) * vpc + v] / (count[j] * (spherical ? d : 1));
            }
            model->variances[size_t(j) * vpc + v] = float(std::max(var, floor));
        }
    }
}

/// k-means++ seeding by D^2 sampling; fills model->means and the nearest
/// seed of every point.
void kmeans_plus_plus(
    GaussianMixture* model,
    idx_t n,
    const float* x,
    int64_t seed,
    std::vector<idx_t>* assign) {
    const int d = model->d, k = model->k;
    std::mt19937_64 rng(uint64_t(seed) ^ 0x5851f42d4c957f2dULL);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    std::vector<float> min_dist(n, std::numeric_limits<float>::infinity());
    assign->assign(n, -1);
    idx_t chosen = uniform_index(rng, n);
    for (int c = 0; c < k; c++) {
        const float* center = x + size_t(chosen) * d;
        std::copy(center, center + d, model->means.data() + size_t(c) * d);
#pragma omp parallel for schedule(static) if (impl::worth_parallel(n, d))
        for (idx_t i = 0; i < n; i++) {
            float dist = faiss::fvec_L2sqr(x + size_t(i) * d, center, d);
            if (dist < min_dist[i]) {
                min_dist[i] = dist;
                (*assign)[i] = c;
            }
        }
        if (c + 1 == k) {
            break;
        }
        double total = 0;
        for (idx_t i = 0; i < n; i++) {
            total += min_dist[i];
        }
        if (!(total > 0)) {
            // Every point coincides with a seed: any point is as good.
            chosen = uniform_index(rng, n);
            continue;
        }
        double target = unit(rng) * total, cumulative = 0;
        chosen = -1;
        for (idx_t i = 0; i < n; i++) {
            cumulative += min_dist[i];
            if (min_dist[i] > 0 && cumulative >= target) {
                chosen = i;
                break;
            }
        }
        if (chosen < 0) { // rounding left target past the last positive term
            for (idx_t i = n - 1; i >= 0; i--) {
                if (min_dist[i] > 0) {
                    chosen = i;
                    break;
                }
            }
        }
    }
}

double min_of(const std::vector<float>& v) {
    return v.empty() ? 0.0 : double(*std::min_element(v.begin(), v.end()));
}

} // namespace

/*********************************************************************
 * CpuEStep
 *********************************************************************/

CpuEStep::CpuEStep(idx_t n, const float* x, int d, int64_t block_size)
    : n(n), x(x), d(d), block_size(block_size) {
    FAISS_THROW_IF_NOT_FMT(d >= 1, "CpuEStep: d = %d < 1", d);
    FAISS_THROW_IF_NOT_FMT(n >= 1, "CpuEStep: n = %" PRId64 " < 1", int64_t(n));
    FAISS_THROW_IF_NOT_MSG(x, "CpuEStep: x is null");
    FAISS_THROW_IF_NOT_FMT(
        block_size >= 1, "CpuEStep: block_size = %" PRId64 " < 1", block_size);
    std::vector<double> mean(d, 0.0);
    for (idx_t i = 0; i < n; i++) {
        const float* xi = x + size_t(i) * d;
        for (int l = 0; l < d; l++) {
            mean[l] += xi[l];
        }
    }
    center.resize(d);
    for (int l = 0; l < d; l++) {
        center[l] = float(mean[l] / n);
    }
}

void CpuEStep::compute(
    const GaussianMixture& model, GmmSufficientStats* stats) {
    FAISS_THROW_IF_NOT_FMT(
        model.d == d,
        "CpuEStep built for d = %d, model has d = %d",
        d,
        model.d);
    FAISS_THROW_IF_NOT_MSG(stats, "CpuEStep: stats is null");
    stats->check_shaped_for(model, "CpuEStep");
    if (model.covariance == CovarianceType::Full) {
        compute_full(model, stats);
        return;
    }
    const impl::ComponentTerms terms(model, center.data());
    const int k = model.k;
    const int gd = terms.gemm_dim;
    const bool spherical = !has_per_dimension_variances(model.covariance);
    // Statistics operand, in double: [x' | q | 1] with q = |x'|^2
    // (spherical) or x'^2 (diagonal), so that one product R^T [x' | q | 1]
    // gives sum r x', sum r q and N_k.
    const int nq = spherical ? 1 : d;
    const int sd = d + nq + 1;

    // One team over row ranges, each range end to end (products,
    // log-sum-exp, statistics) in blocks of its own with BLAS on its thread
    // (impl/RowTeam.h says why).
    const int nt = impl::row_team_size(n, k);
    const idx_t bs = impl::rows_per_thread_block(block_size, nt, n);
    // Per-range buffers, allocated here (nothing throws in the team).
    std::vector<float> operand(size_t(nt) * bs * gd),
        row_norms(size_t(nt) * bs);
    std::vector<float> resp(size_t(nt) * bs * k); // products, then r_ik
    std::vector<double> resp_double(size_t(nt) * bs * k);
    std::vector<double> stats_operand(size_t(nt) * bs * sd);
    // R^T stats_operand and the log-likelihood per range, summed in range
    // order after the team (deterministic for a thread count).
    std::vector<double> thread_moments(size_t(nt) * k * sd, 0.0);
    std::vector<double> thread_ll(nt, 0.0);

    impl::run_row_team(nt, n, [&](int t, idx_t begin, idx_t end) {
        float* t_operand = operand.data() + size_t(t) * bs * gd;
        float* t_row_norms = row_norms.data() + size_t(t) * bs;
        float* t_resp = resp.data() + size_t(t) * bs * k;
        double* t_resp_double = resp_double.data() + size_t(t) * bs * k;
        double* t_stats_operand = stats_operand.data() + size_t(t) * bs * sd;
        double* moments = thread_moments.data() + size_t(t) * k * sd;
        double t_ll = 0;
        for (idx_t i0 = begin; i0 < end; i0 += bs) {
            const idx_t nb = std::min(bs, end - i0);
            impl::prepare_operand(
                terms,
                nb,
                x + size_t(i0) * d,
                center.data(),
                t_operand,
                t_row_norms);
            impl::block_products(terms, nb, t_operand, t_resp);
            idx_t nnz = 0;
            for (idx_t i = 0; i < nb; i++) {
                float* row = t_resp + size_t(i) * k;
                impl::products_to_distances(terms, t_row_norms[i], row);
                impl::distances_to_log_joint(terms, row, row);
                t_ll += impl::softmax_row(k, row);
                for (int j = 0; j < k; j++) {
                    nnz += row[j] != 0;
                }

                const float* xc = t_operand + size_t(i) * gd; // x'
                double* so = t_stats_operand + size_t(i) * sd;
                double norm = 0;
                for (int l = 0; l < d; l++) {
                    double v = xc[l];
                    so[l] = v;
                    if (spherical) {
                        norm += v * v;
                    } else {
                        so[d + l] = v * v;
                    }
                }
                if (spherical) {
                    so[d] = norm;
                }
                so[d + nq] = 1;
            }
            if (nnz * 8 < nb * k) {
                // Mostly exact zeros (far components underflow): add
                // r * operand row for the non-zero r only.
                for (idx_t i = 0; i < nb; i++) {
                    const float* row = t_resp + size_t(i) * k;
                    const double* so = t_stats_operand + size_t(i) * sd;
                    for (int j = 0; j < k; j++) {
                        if (row[j] == 0) {
                            continue;
                        }
                        const double r = row[j];
                        double* a = moments + size_t(j) * sd;
                        for (int c = 0; c < sd; c++) {
                            a[c] += r * so[c];
                        }
                    }
                }
            } else {
                const size_t ne = size_t(nb) * k;
                for (size_t e = 0; e < ne; e++) {
                    t_resp_double[e] = t_resp[e];
                }
                impl::dgemm_atb_accumulate(
                    nb, k, sd, t_resp_double, t_stats_operand, moments);
            }
        }
        thread_ll[t] = t_ll;
    });
    double ll = 0;
    std::vector<double> moments(size_t(k) * sd, 0.0);
    for (int t = 0; t < nt; t++) {
        ll += thread_ll[t];
        const double* acc = thread_moments.data() + size_t(t) * k * sd;
        for (size_t e = 0; e < moments.size(); e++) {
            moments[e] += acc[e];
        }
    }

    stats->n += n;
    stats->log_likelihood += ll;
    for (int j = 0; j < k; j++) {
        const double* mom = moments.data() + size_t(j) * sd;
        const double* s1 = mom;     // sum r x'
        const double* s2 = mom + d; // sum r q
        const double nk = mom[d + nq];
        const float* mu = model.means.data() + size_t(j) * d;
        stats->count[j] += nk;
        // About the old mean m' = mu - center, exactly in double:
        // sum r (x' - m')^2 = sum r x'^2 - 2 m' sum r x' + N m'^2.
        double sph = s2[0];
        for (int l = 0; l < d; l++) {
            stats->sum_x[size_t(j) * d + l] += s1[l] + nk * center[l];
            double m = double(mu[l]) - center[l];
            if (spherical) {
                sph += -2 * m * s1[l] + nk * m * m;
            } else {
                double v = s2[l] - 2 * m * s1[l] + nk * m * m;
                stats->sum_sq[size_t(j) * d + l] += std::max(v, 0.0);
            }
        }
        if (spherical) {
            stats->sum_sq[j] += std::max(sph, 0.0);
        }
    }
}

void CpuEStep::compute_full(
    const GaussianMixture& model, GmmSufficientStats* stats) {
    const impl::FullComponentTerms terms(model, center.data());
    const int k = model.k;
    const size_t dd = size_t(d) * d;
    FAISS_THROW_IF_NOT_FMT(
        stats->sum_outer.size() == size_t(k) * dd,
        "CpuEStep: full-covariance statistics hold %zd second moments, "
        "expected k * d * d = %zd",
        stats->sum_outer.size(),
        size_t(k) * dd);
    const idx_t bs = std::min<idx_t>(block_size, n);
    // Two teams per block, BLAS on each calling thread (impl/RowTeam.h says
    // why): row ranges for the logits and the log-sum-exp, then components
    // for the statistics, each component's sums (one dsyrk) owned by one
    // thread, so no thread needs a copy of the k d^2 statistics.
    const int rows_team = impl::row_team_size(bs, k);
    const int components_team =
        rows_team > 1 ? std::min(k, omp_get_max_threads()) : 1;
    const idx_t range_rows = (bs + rows_team - 1) / rows_team;
    std::vector<float> work(rows_team * terms.work_floats(range_rows));
    std::vector<float> resp(size_t(bs) * k); // log-joint, then r_ik
    // sqrt(r) (x' - m'_j), one buffer per thread of the components' team
    std::vector<double> weighted(size_t(components_team) * bs * d);
    std::vector<double> count(k, 0.0), sum1(size_t(k) * d, 0.0); // r, r x'
    std::vector<double> range_ll(rows_team, 0.0);
    const impl::OpenBlasOneThread blas_on_calling_thread(
        rows_team > 1 || components_team > 1);

    for (idx_t i0 = 0; i0 < n; i0 += bs) {
        const idx_t nb = std::min(bs, n - i0);
        const float* xb = x + size_t(i0) * d;
        impl::run_row_team(rows_team, nb, [&](int r, idx_t begin, idx_t end) {
            if (begin == end) {
                return;
            }
            float* logits = resp.data() + size_t(begin) * k;
            terms.log_joint_block(
                end - begin,
                xb + size_t(begin) * d,
                center.data(),
                work.data() + r * terms.work_floats(range_rows),
                logits);
            for (idx_t i = 0; i < end - begin; i++) {
                range_ll[r] += impl::softmax_row(k, logits + size_t(i) * k);
            }
        });
        // Per component: the rows with r > 0 (far components underflow to
        // exact zeros), weighted by sqrt(r) about the old mean, into one
        // dsyrk; N_k and sum r x' in the same pass, all in double.
#pragma omp parallel for schedule(dynamic)                                     \
    num_threads(components_team) if (components_team > 1)
        for (int j = 0; j < k; j++) {
            double* w0 =
                weighted.data() + size_t(omp_get_thread_num()) * bs * d;
            const float* mu = model.means.data() + size_t(j) * d;
            double* s1 = sum1.data() + size_t(j) * d;
            idx_t nnz = 0;
            for (idx_t i = 0; i < nb; i++) {
                const float r = resp[size_t(i) * k + j];
                if (r == 0) {
                    continue;
                }
                const double sr = std::sqrt(double(r));
                const float* xi = xb + size_t(i) * d;
                double* w = w0 + size_t(nnz) * d;
                for (int l = 0; l < d; l++) {
                    // x' exactly as log_joint_block forms it (in float);
                    // the old mean minus the center exactly, in double
                    const float xc = xi[l] - center[l];
                    s1[l] += double(r) * xc;
                    w[l] = sr * (double(xc) - (double(mu[l]) - center[l]));
                }
                count[j] += r;
                nnz++;
            }
            impl::dsyrk_ata_lower_accumulate(
                nnz, d, w0, stats->sum_outer.data() + j * dd);
        }
    }
    double ll = 0;
    for (double range : range_ll) {
        ll += range;
    }

    stats->n += n;
    stats->log_likelihood += ll;
    for (int j = 0; j < k; j++) {
        // dsyrk filled the lower triangle; the upper one was equal to the
        // old lower one (the statistics are kept symmetric), so mirroring
        // gives both the new sum.
        double* so = stats->sum_outer.data() + j * dd;
        for (int r = 0; r < d; r++) {
            for (int c = 0; c < r; c++) {
                so[size_t(c) * d + r] = so[size_t(r) * d + c];
            }
        }
        stats->count[j] += count[j];
        for (int l = 0; l < d; l++) {
            stats->sum_x[size_t(j) * d + l] +=
                sum1[size_t(j) * d + l] + count[j] * center[l];
        }
    }
}

/*********************************************************************
 * Sampling and initialisation
 *********************************************************************/

idx_t subsample_training_set(
    int d,
    int k,
    idx_t n,
    const float* x,
    const GmmParameters& params,
    std::vector<float>* sample) {
    FAISS_THROW_IF_NOT_MSG(sample, "subsample_training_set: sample is null");
    FAISS_THROW_IF_NOT_FMT(d >= 1, "subsample_training_set: d = %d < 1", d);
    FAISS_THROW_IF_NOT_FMT(k >= 1, "subsample_training_set: k = %d < 1", k);
    sample->clear();
    const idx_t max_points = idx_t(k) * params.max_points_per_component;
    if (params.max_points_per_component <= 0 || n <= max_points) {
        return n;
    }
    double t0 = faiss::getmillisecs();
    std::vector<idx_t> rows = sample_distinct(n, max_points, params.seed);
    sample->resize(size_t(max_points) * d);
    float* out = sample->data();
#pragma omp parallel for schedule(                                             \
    static) if (impl::worth_parallel(max_points, d))
    for (idx_t i = 0; i < max_points; i++) {
        const float* src = x + size_t(rows[i]) * d;
        std::copy(src, src + d, out + size_t(i) * d);
    }
    if (params.verbose) {
        printf(
            "GMM: sampled %" PRId64 " of %" PRId64
            " training points (k = %d x max_points_per_component = %d) in "
            "%.2f s\n",
            int64_t(max_points),
            int64_t(n),
            k,
            params.max_points_per_component,
            (faiss::getmillisecs() - t0) / 1000);
    }
    return max_points;
}

void initialize_gmm(
    GaussianMixture* model,
    idx_t n,
    const float* x,
    const GmmParameters& params,
    faiss::Index* assign_index) {
    FAISS_THROW_IF_NOT_MSG(model, "initialize_gmm: model is null");
    const int d = model->d, k = model->k;
    FAISS_THROW_IF_NOT_FMT(d >= 1, "GMM dimension d = %d < 1", d);
    FAISS_THROW_IF_NOT_FMT(k >= 1, "GMM component count k = %d < 1", k);
    if (assign_index) {
        FAISS_THROW_IF_NOT_FMT(
            assign_index->d == d,
            "initialize_gmm: assignment index dimension %d != GMM "
            "dimension %d",
            int(assign_index->d),
            d);
        FAISS_THROW_IF_NOT_FMT(
            assign_index->metric_type == faiss::METRIC_L2,
            "initialize_gmm: assignment index metric %d is not METRIC_L2",
            int(assign_index->metric_type));
    }
    FAISS_THROW_IF_NOT_FMT(
        n >= k,
        "GMM initialisation needs n >= k points: n = %" PRId64 ", k = %d",
        int64_t(n),
        k);
    FAISS_THROW_IF_NOT_MSG(x, "initialize_gmm: x is null");
    FAISS_THROW_IF_NOT_FMT(
        params.covariance == model->covariance,
        "GmmParameters.covariance = %s but the model was built %s",
        covariance_type_name(params.covariance),
        covariance_type_name(model->covariance));
    FAISS_THROW_IF_NOT_FMT(
        params.reg_covar >= 0 && std::isfinite(params.reg_covar),
        "GmmParameters.reg_covar = %g must be finite and >= 0",
        params.reg_covar);
    impl::check_finite(n, d, x, "GMM training data");
    double t0 = faiss::getmillisecs();

    // Per-dimension variance of the data (two passes in double).
    std::vector<double> mean(d, 0.0), var(d, 0.0);
    for (idx_t i = 0; i < n; i++) {
        for (int l = 0; l < d; l++) {
            mean[l] += x[size_t(i) * d + l];
        }
    }
    for (int l = 0; l < d; l++) {
        mean[l] /= n;
    }
    for (idx_t i = 0; i < n; i++) {
        for (int l = 0; l < d; l++) {
            double diff = x[size_t(i) * d + l] - mean[l];
            var[l] += diff * diff;
        }
    }
    double data_var = 0;
    for (int l = 0; l < d; l++) {
        var[l] /= n;
        data_var += var[l];
    }
    data_var /= d;
    double floor = params.reg_covar * data_var;
    if (!(floor > 0)) {
        // reg_covar = 0 or constant data: keep variances strictly positive.
        floor = data_var > 0 ? 1e-10 * data_var : 1e-10;
    }
    model->variance_floor = float(floor);
    model->weights.assign(k, 1.0f / k);
    model->means.assign(size_t(k) * d, 0.0f);
    model->variances.assign(size_t(k) * model->variances_per_component(), 1.0f);
    if (model->covariance == CovarianceType::Full) {
        check_full_covariance_size(d, k, "GMM initialisation");
        model->covariances.assign(size_t(k) * d * d, 0.0f);
    }
    model->is_trained = false;
    model->iteration_stats.clear();

    std::vector<idx_t> assign;
    std::vector<float> dist;
    faiss::IndexFlatL2 cpu_index(d);
    faiss::Index* index = assign_index ? assign_index : &cpu_index;
    switch (params.init) {
    case GmmInit::KMeans: {
        FAISS_THROW_IF_NOT_FMT(
            params.kmeans_niter >= 1,
            "GmmParameters.kmeans_niter = %d < 1 with kmeans init",
            params.kmeans_niter);
        faiss::ClusteringParameters cp;
        cp.niter = params.kmeans_niter;
        cp.seed = int(params.seed);
        cp.verbose = params.verbose;
        // Sampling is done already (subsample_training_set).
        cp.min_points_per_centroid = 1;
        cp.max_points_per_centroid = INT_MAX;
        faiss::Clustering clus(d, k, cp);
        index->reset();
        clus.train(n, x, *index);
        std::copy(
            clus.centroids.begin(), clus.centroids.end(), model->means.begin());
        nearest_means(index, k, model->means.data(), n, x, &assign, &dist);
        break;
    }
    case GmmInit::KMeansPlusPlus:
        kmeans_plus_plus(model, n, x, params.seed, &assign);
        break;
    case GmmInit::Random: {
        std::vector<idx_t> rows = sample_distinct(n, k, params.seed);
        for (int j = 0; j < k; j++) {
            const float* src = x + size_t(rows[j]) * d;
            std::copy(src, src + d, model->means.data() + size_t(j) * d);
        }
        nearest_means(index, k, model->means.data(), n, x, &assign, &dist);
        break;
    }
    default:
        FAISS_THROW_FMT("unknown GmmInit value %d", int(params.init));
    }
    moments_from_assignment(model, n, x, assign, var, data_var);
    if (params.verbose) {
        printf(
            "GMM init: %s on %" PRId64 " points, d = %d, k = %d, %s, "
            "nearest means by %s: %.2f s; %s %.3g (reg_covar %g x mean "
            "data variance %.4g)\n",
            gmm_init_name(params.init),
            int64_t(n),
            d,
            k,
            covariance_type_name(model->covariance),
            params.init == GmmInit::KMeansPlusPlus ? "the CPU (kmeans++)"
            : assign_index                         ? "the given index"
                                                   : "a CPU IndexFlatL2",
            (faiss::getmillisecs() - t0) / 1000,
            model->covariance == CovarianceType::Full
                ? "added to every covariance's diagonal"
                : "variance floor",
            floor,
            params.reg_covar,
            data_var);
    }
}

/*********************************************************************
 * M-step and the EM loop
 *********************************************************************/

int gmm_m_step(
    GaussianMixture* model,
    const GmmSufficientStats& stats,
    const GmmParameters& params,
    int iteration) {
    FAISS_THROW_IF_NOT_MSG(model, "gmm_m_step: model is null");
    const int d = model->d, k = model->k;
    impl::check_model_shape(*model);
    const bool full = model->covariance == CovarianceType::Full;
    const size_t dd = size_t(d) * d;
    FAISS_THROW_IF_NOT_FMT(
        stats.d == d && stats.k == k && stats.covariance == model->covariance &&
            stats.count.size() == size_t(k) &&
            stats.sum_x.size() == size_t(k) * d &&
            stats.sum_sq.size() ==
                (full ? 0 : size_t(k) * model->variances_per_component()) &&
            stats.sum_outer.size() == (full ? size_t(k) * d * d : 0),
        "gmm_m_step: statistics (d=%d, k=%d, %s) do not fit the model "
        "(d=%d, k=%d, %s)",
        stats.d,
        stats.k,
        covariance_type_name(stats.covariance),
        d,
        k,
        covariance_type_name(model->covariance));
    const bool spherical = !has_per_dimension_variances(model->covariance);
    const bool tied = model->covariance == CovarianceType::TiedSpherical;
    const int vpc = model->variances_per_component();
    const double floor = model->variance_floor;
    double total = 0;
    for (int j = 0; j < k; j++) {
        total += stats.count[j];
    }
    FAISS_THROW_IF_NOT_FMT(
        total > 0 && std::isfinite(total),
        "gmm_m_step: total responsibility %g (no points?)",
        total);

    std::vector<char> alive(k, 0);
    std::vector<double> weight(k, 0.0);
    std::vector<double> mu_new(d);
    std::vector<double> shift_full(full ? d : 0); // mu_new - mu_old
    // tied: sum over alive components of sum r ||x - mu_new||^2, and of N_k
    double pooled_sq = 0, pooled_count = 0;
    for (int j = 0; j < k; j++) {
        const double nk = stats.count[j];
        if (!(nk >= params.min_component_count) || !(nk > 0)) {
            continue;
        }
        alive[j] = 1;
        weight[j] = nk / total;
        float* mu = model->means.data() + size_t(j) * d;
        double shift_sq = 0; // spherical: |mu_new - mu_old|^2
        float* var = model->variances.data() + size_t(j) * vpc;
        for (int l = 0; l < d; l++) {
            mu_new[l] = stats.sum_x[size_t(j) * d + l] / nk;
            double shift = mu_new[l] - mu[l];
            if (spherical) {
                shift_sq += shift * shift;
            } else if (full) {
                shift_full[l] = shift;
            } else {
                // sum r (x - mu_new)^2 = sum_sq - N (mu_new - mu_old)^2
                double v =
                    (stats.sum_sq[size_t(j) * d + l] - nk * shift * shift) / nk;
                var[l] = float(v >= floor ? v : floor);
            }
        }
        if (full) {
            // N Sigma = sum_outer - N (mu_new - mu_old)(mu_new - mu_old)^T,
            // the floor added to the diagonal after re-seeding
            // (update_precision_cholesky)
            const double* so = stats.sum_outer.data() + size_t(j) * dd;
            float* cov = model->covariances.data() + size_t(j) * dd;
            for (int r = 0; r < d; r++) {
                for (int c = 0; c <= r; c++) {
                    const double v = (so[size_t(r) * d + c] -
                                      nk * shift_full[r] * shift_full[c]) /
                                     nk;
                    cov[size_t(r) * d + c] = cov[size_t(c) * d + r] = float(v);
                }
            }
        } else if (tied) {
            pooled_sq += stats.sum_sq[j] - nk * shift_sq;
            pooled_count += nk;
        } else if (spherical) {
            double v = (stats.sum_sq[j] - nk * shift_sq) / (nk * d);
            var[0] = float(v >= floor ? v : floor);
        }
        for (int l = 0; l < d; l++) {
            mu[l] = float(mu_new[l]);
        }
    }

    if (tied && pooled_count > 0) {
        // Every component, dead ones included: re-seeding copies it too.
        const double v = pooled_sq / (pooled_count * d);
        std::fill(
            model->variances.begin(),
            model->variances.end(),
            float(v >= floor ? v : floor));
    }

    int n_reseeded = 0;
    if (std::count(alive.begin(), alive.end(), 1) < k) {
        FAISS_THROW_IF_NOT_FMT(
            std::count(alive.begin(), alive.end(), 1) > 0,
            "gmm_m_step: every component has N_k < min_component_count "
            "= %g (total responsibility %g)",
            params.min_component_count,
            total);
        std::mt19937_64 rng(
            uint64_t(params.seed) * 0x9e3779b97f4a7c15ULL +
            uint64_t(iteration) + 1);
        const double step = 0.5 / std::sqrt(double(d));
        for (int j = 0; j < k; j++) {
            if (alive[j]) {
                continue;
            }
            // FAISS-style split of the heaviest component: both halves move
            // half a standard deviation apart along a random sign
            // direction, share its weight and keep its variance.
            int h = -1;
            for (int c = 0; c < k; c++) {
                if (alive[c] && (h < 0 || weight[c] > weight[h])) {
                    h = c;
                }
            }
            float* mu_h = model->means.data() + size_t(h) * d;
            float* mu_j = model->means.data() + size_t(j) * d;
            const float* var_h = model->variances.data() + size_t(h) * vpc;
            float* var_j = model->variances.data() + size_t(j) * vpc;
            const float* cov_h =
                full ? model->covariances.data() + size_t(h) * dd : nullptr;
            for (int l = 0; l < d; l++) {
                // full: the new (unfloored) covariance of h, not the last
                // iteration's diagonal
                double sigma = std::sqrt(std::max(
                    double(
                        full ? cov_h[size_t(l) * d + l]
                             : var_h[spherical ? 0 : l]),
                    floor));
                double delta = (rng() & 1 ? step : -step) * sigma;
                mu_j[l] = float(mu_h[l] + delta);
                mu_h[l] = float(mu_h[l] - delta);
            }
            std::copy(var_h, var_h + vpc, var_j);
            if (full) {
                std::copy(
                    cov_h,
                    cov_h + dd,
                    model->covariances.data() + size_t(j) * dd);
            }
            weight[h] /= 2;
            weight[j] = weight[h];
            alive[j] = 1;
            n_reseeded++;
        }
    }
    double weight_sum = 0;
    for (int j = 0; j < k; j++) {
        weight_sum += weight[j];
    }
    for (int j = 0; j < k; j++) {
        model->weights[j] = float(weight[j] / weight_sum);
    }
    if (full) {
        // adds the floor to every diagonal, refreshes factors and variances
        model->update_precision_cholesky(float(floor));
    }
    return n_reseeded;
}

EmProgress::EmProgress(const GmmParameters& params)
    : niter_(params.niter), tol_(params.tol), verbose_(params.verbose) {
    FAISS_THROW_IF_NOT_FMT(
        params.niter >= 0, "GmmParameters.niter = %d < 0", params.niter);
    FAISS_THROW_IF_NOT_FMT(
        params.tol >= 0, "GmmParameters.tol = %g < 0", params.tol);
}

bool EmProgress::finish_iteration(
    GaussianMixture* model, const GmmIterationStats& is) {
    FAISS_THROW_IF_NOT_MSG(model, "EmProgress: model is null");
    model->iteration_stats.push_back(is);
    const int it = is.iteration;
    const double ll = is.log_likelihood;
    const double gain = ll - previous_ll_;
    if (verbose_) {
        if (it == 0) {
            printf("EM iter %d/%d: mean log-lik %.6g, ", it + 1, niter_, ll);
        } else {
            printf(
                "EM iter %d/%d: mean log-lik %.6g (%+.4g), ",
                it + 1,
                niter_,
                ll,
                gain);
        }
        printf(
            "%.2f s, min weight %.1e, min var %.1e, re-seeded %d\n",
            is.time_s,
            is.min_weight,
            is.min_variance,
            is.n_reseeded);
        fflush(stdout);
    }
    // A gain measured across a re-seeding compares different models.
    if (tol_ > 0 && it > 0 && previous_reseeded_ == 0 && gain < tol_) {
        if (verbose_) {
            printf(
                "EM converged after %d iterations: gain %.3g < tol %.3g\n",
                it + 1,
                gain,
                tol_);
        }
        return true;
    }
    previous_ll_ = ll;
    previous_reseeded_ = is.n_reseeded;
    return false;
}

void run_em(
    GaussianMixture* model, GmmEStep* estep, const GmmParameters& params) {
    FAISS_THROW_IF_NOT_MSG(model, "run_em: model is null");
    FAISS_THROW_IF_NOT_MSG(estep, "run_em: estep is null");
    EmProgress progress(params);
    model->check_consistency();
    model->iteration_stats.clear();
    if (params.verbose) {
        static std::once_flag said; // once per process
        std::call_once(said, [] {
            const std::string advice = impl::slow_blas_advice();
            if (!advice.empty()) {
                std::printf("EM: %s\n", advice.c_str());
            }
        });
    }
    GmmSufficientStats stats(model->d, model->k, model->covariance);
    for (int it = 0; it < params.niter; it++) {
        double t0 = faiss::getmillisecs();
        stats.reset();
        estep->compute(*model, &stats);
        FAISS_THROW_IF_NOT_FMT(
            stats.n > 0, "EM iteration %d: the E-step saw no points", it);
        const double ll = stats.log_likelihood / stats.n;
        FAISS_THROW_IF_NOT_FMT(
            std::isfinite(ll),
            "EM iteration %d: mean log-likelihood is %g",
            it,
            ll);
        GmmIterationStats is;
        is.iteration = it;
        is.log_likelihood = ll;
        is.n_reseeded = gmm_m_step(model, stats, params, it);
        is.time_s = (faiss::getmillisecs() - t0) / 1000;
        is.min_weight = float(min_of(model->weights));
        is.min_variance = float(min_of(model->variances));
        if (progress.finish_iteration(model, is)) {
            break;
        }
    }
    model->is_trained = true;
}

} // namespace faiss_gmm
