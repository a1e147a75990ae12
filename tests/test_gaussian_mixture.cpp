/**
 * GaussianMixture, the CPU E-step and the shared EM driver, against a dense
 * float64 reference EM written here, plus scoring, errors and real SIFT.
 */

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <omp.h>

#include <faiss/impl/FaissException.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmEM.h>
#include <faiss_gmm/GmmSufficientStats.h>

using namespace faiss_gmm;

namespace {

/// n points around k_true random centers; cluster c has its own scale and,
/// per dimension, a different spread (so diagonal models have work to do).
std::vector<float> make_blobs(idx_t n, int d, int k_true, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> center_dist(-10, 10);
    std::uniform_real_distribution<float> scale_dist(0.3f, 1.5f);
    std::normal_distribution<float> normal(0, 1);
    std::vector<float> centers(size_t(k_true) * d), scales(size_t(k_true) * d);
    for (auto& c : centers) {
        c = center_dist(rng);
    }
    for (auto& s : scales) {
        s = scale_dist(rng);
    }
    std::vector<float> x(size_t(n) * d);
    for (idx_t i = 0; i < n; i++) {
        int c = int(i % k_true);
        for (int l = 0; l < d; l++) {
            x[i * d + l] = centers[c * d + l] + scales[c * d + l] * normal(rng);
        }
    }
    return x;
}

/// A dense float64 EM: full n x k responsibilities, direct (x - mu)^2.
struct ReferenceEM {
    int d, k;
    bool spherical; ///< one variance per component (spherical or tied)
    bool tied;      ///< that variance is pooled over the components
    std::vector<double> w, mu, var;
    double floor;

    explicit ReferenceEM(const GaussianMixture& m)
        : d(m.d),
          k(m.k),
          spherical(m.covariance != CovarianceType::Diagonal),
          tied(m.covariance == CovarianceType::TiedSpherical),
          w(m.weights.begin(), m.weights.end()),
          mu(m.means.begin(), m.means.end()),
          var(m.variances.begin(), m.variances.end()),
          floor(m.variance_floor) {}

    double log_joint(const float* x, int j) const {
        double lj = std::log(w[j]);
        for (int l = 0; l < d; l++) {
            double v = spherical ? var[j] : var[j * d + l];
            double diff = x[l] - mu[j * d + l];
            lj -= 0.5 * (std::log(2 * M_PI * v) + diff * diff / v);
        }
        return lj;
    }

    /// Returns the mean log-likelihood; fills r (n x k).
    double e_step(idx_t n, const float* x, std::vector<double>* r) const {
        r->resize(size_t(n) * k);
        double ll = 0;
        for (idx_t i = 0; i < n; i++) {
            double* ri = r->data() + i * k;
            double mx = -INFINITY;
            for (int j = 0; j < k; j++) {
                ri[j] = log_joint(x + i * d, j);
                mx = std::max(mx, ri[j]);
            }
            double s = 0;
            for (int j = 0; j < k; j++) {
                s += std::exp(ri[j] - mx);
            }
            double lz = mx + std::log(s);
            for (int j = 0; j < k; j++) {
                ri[j] = std::exp(ri[j] - lz);
            }
            ll += lz;
        }
        return ll / n;
    }

    void m_step(idx_t n, const float* x, const std::vector<double>& r) {
        double pooled_sq = 0, pooled_count = 0;
        for (int j = 0; j < k; j++) {
            double nk = 0;
            std::vector<double> m(d, 0.0);
            for (idx_t i = 0; i < n; i++) {
                nk += r[i * k + j];
                for (int l = 0; l < d; l++) {
                    m[l] += r[i * k + j] * x[i * d + l];
                }
            }
            for (int l = 0; l < d; l++) {
                m[l] /= nk;
            }
            std::vector<double> sq(d, 0.0);
            for (idx_t i = 0; i < n; i++) {
                for (int l = 0; l < d; l++) {
                    double diff = x[i * d + l] - m[l];
                    sq[l] += r[i * k + j] * diff * diff;
                }
            }
            w[j] = nk / n;
            for (int l = 0; l < d; l++) {
                mu[j * d + l] = m[l];
            }
            if (spherical) {
                double s = 0;
                for (int l = 0; l < d; l++) {
                    s += sq[l];
                }
                var[j] = std::max(s / (nk * d), floor);
                pooled_sq += s;
                pooled_count += nk;
            } else {
                for (int l = 0; l < d; l++) {
                    var[j * d + l] = std::max(sq[l] / nk, floor);
                }
            }
        }
        if (tied) {
            std::fill(
                var.begin(),
                var.end(),
                std::max(pooled_sq / (pooled_count * d), floor));
        }
    }
};

/// Runs f and returns the message of the faiss::FaissException it throws.
template <class F>
std::string exception_message(F&& f) {
    try {
        f();
    } catch (const faiss::FaissException& e) {
        return e.what();
    }
    ADD_FAILURE() << "no faiss::FaissException thrown";
    return "";
}

bool model_is_finite(const GaussianMixture& m) {
    for (float v : m.weights) {
        if (!std::isfinite(v)) {
            return false;
        }
    }
    for (float v : m.means) {
        if (!std::isfinite(v)) {
            return false;
        }
    }
    for (float v : m.variances) {
        if (!std::isfinite(v)) {
            return false;
        }
    }
    return true;
}

void compare_with_reference(CovarianceType cov) {
    const int d = 8, k = 5;
    const idx_t n = 2000;
    std::vector<float> x = make_blobs(n, d, 4, 7);
    GmmParameters params;
    params.covariance = cov;
    params.init = GmmInit::Random;
    params.seed = 11;
    params.niter = 6;
    params.tol = 0;
    params.min_component_count = 1e-6; // no re-seeding in this comparison
    GaussianMixture model(d, k, cov);
    initialize_gmm(&model, n, x.data(), params);
    ReferenceEM ref(model);
    // Several blocks, the last one partial.
    CpuEStep estep(n, x.data(), d, 300);
    run_em(&model, &estep, params);
    ASSERT_EQ(model.iteration_stats.size(), size_t(params.niter));

    std::vector<double> r;
    for (int it = 0; it < params.niter; it++) {
        double ll = ref.e_step(n, x.data(), &r);
        EXPECT_NEAR(
            model.iteration_stats[it].log_likelihood, ll, 1e-5 * std::abs(ll))
            << "iteration " << it;
        ref.m_step(n, x.data(), r);
    }
    for (int j = 0; j < k; j++) {
        EXPECT_NEAR(model.weights[j], ref.w[j], 1e-5) << "component " << j;
    }
    for (size_t i = 0; i < ref.mu.size(); i++) {
        EXPECT_NEAR(model.means[i], ref.mu[i], 1e-4) << "mean value " << i;
    }
    for (size_t i = 0; i < ref.var.size(); i++) {
        EXPECT_NEAR(model.variances[i], ref.var[i], 1e-4 * ref.var[i])
            << "variance value " << i;
    }
    model.check_consistency();
}

} // namespace

TEST(GaussianMixture, EmMatchesFloat64ReferenceSpherical) {
    compare_with_reference(CovarianceType::Spherical);
}

TEST(GaussianMixture, EmMatchesFloat64ReferenceDiagonal) {
    compare_with_reference(CovarianceType::Diagonal);
}

TEST(GaussianMixture, EmMatchesFloat64ReferenceTied) {
    compare_with_reference(CovarianceType::TiedSpherical);
}

namespace {

/// All variances of a tied model are one value: returns it after checking.
float shared_variance(const GaussianMixture& gmm) {
    EXPECT_EQ(gmm.variances.size(), size_t(gmm.k));
    for (int j = 1; j < gmm.k; j++) {
        EXPECT_EQ(gmm.variances[j], gmm.variances[0]) << "component " << j;
    }
    return gmm.variances[0];
}

} // namespace

TEST(GaussianMixture, TiedMStepPoolsHandMadeStatistics) {
    const int d = 2, k = 3;
    GaussianMixture gmm(d, k, CovarianceType::TiedSpherical);
    gmm.means = {0, 0, 10, 10, 5, -5};
    gmm.variances = {7, 7, 7};
    gmm.variance_floor = 1e-3f;
    GmmParameters params;
    params.covariance = CovarianceType::TiedSpherical;
    params.min_component_count = 1;
    GmmSufficientStats stats(d, k, CovarianceType::TiedSpherical);
    ASSERT_EQ(stats.sum_sq.size(), size_t(k));
    // Component 2 holds N = 0.5 < min_component_count: it is re-seeded and
    // takes no part in the pooled variance.
    stats.count = {4, 6, 0.5};
    stats.sum_x = {4, -8, 66, 54, 2.5, -2.5};
    stats.sum_sq = {30, 50, 1000};
    stats.n = 10;
    // New means (1, -2) and (11, 9): shifts (1, -2) and (1, -1), so
    // sum r ||x - mu_new||^2 = 30 - 4 * 5 = 10 and 50 - 6 * 2 = 38.
    const double pooled = (10.0 + 38.0) / (d * (4.0 + 6.0));
    EXPECT_EQ(gmm_m_step(&gmm, stats, params, 0), 1);
    for (int j = 0; j < k; j++) {
        EXPECT_EQ(gmm.variances[j], float(pooled)) << "component " << j;
    }
    EXPECT_FLOAT_EQ(gmm.means[0], 1);
    EXPECT_FLOAT_EQ(gmm.means[1], -2);
    gmm.check_consistency();

    // Floored like every variance.
    gmm.means = {0, 0, 10, 10, 5, -5};
    gmm.variance_floor = 100;
    EXPECT_EQ(gmm_m_step(&gmm, stats, params, 0), 1);
    for (int j = 0; j < k; j++) {
        EXPECT_EQ(gmm.variances[j], 100.0f) << "component " << j;
    }
}

TEST(GaussianMixture, TiedEmKeepsOnePooledVariance) {
    const int d = 6, k = 5;
    const idx_t n = 1500;
    // Blobs of different scales: a per-component fit would differ.
    std::vector<float> x = make_blobs(n, d, 4, 91);
    GmmParameters params;
    params.covariance = CovarianceType::TiedSpherical;
    params.kmeans_niter = 5;
    params.max_points_per_component = 0;
    GaussianMixture gmm(d, k, CovarianceType::TiedSpherical);
    initialize_gmm(&gmm, n, x.data(), params);

    // Init: the pooled variance of the hard assignment to the nearest mean.
    double init_sq = 0;
    for (idx_t i = 0; i < n; i++) {
        double best = INFINITY;
        for (int j = 0; j < k; j++) {
            double dist = 0;
            for (int l = 0; l < d; l++) {
                double diff = double(x[i * d + l]) - gmm.means[j * d + l];
                dist += diff * diff;
            }
            best = std::min(best, dist);
        }
        init_sq += best;
    }
    EXPECT_NEAR(shared_variance(gmm), init_sq / (n * d), 1e-5 * init_sq / n);

    CpuEStep estep(n, x.data(), d, 256);
    GmmSufficientStats stats(d, k, CovarianceType::TiedSpherical);
    double previous_ll = -INFINITY;
    for (int it = 0; it < 12; it++) {
        stats.reset();
        estep.compute(gmm, &stats);
        const double ll = stats.log_likelihood / stats.n;
        EXPECT_GE(ll, previous_ll - 1e-6 * std::abs(ll)) << "iteration " << it;
        previous_ll = ll;
        double pooled_sq = 0, pooled_count = 0;
        for (int j = 0; j < k; j++) {
            const double nk = stats.count[j];
            ASSERT_GE(nk, params.min_component_count) << "component " << j;
            double shift_sq = 0;
            for (int l = 0; l < d; l++) {
                double shift =
                    stats.sum_x[j * d + l] / nk - gmm.means[j * d + l];
                shift_sq += shift * shift;
            }
            pooled_sq += stats.sum_sq[j] - nk * shift_sq;
            pooled_count += nk;
        }
        ASSERT_EQ(gmm_m_step(&gmm, stats, params, it), 0);
        const double expected = pooled_sq / (pooled_count * d);
        EXPECT_NEAR(shared_variance(gmm), expected, 1e-6 * expected)
            << "iteration " << it;
        gmm.check_consistency();
    }

    // train() ends the same way: one variance, recorded as the minimum.
    GaussianMixture trained(d, k, CovarianceType::TiedSpherical);
    trained.train(n, x.data(), params);
    const float v = shared_variance(trained);
    EXPECT_EQ(trained.iteration_stats.back().min_variance, v);
}

TEST(GaussianMixture, TrainAndScoreBasic) {
    const int d = 16, k = 8;
    const idx_t n = 4000;
    std::vector<float> x = make_blobs(n, d, k, 3);
    for (CovarianceType cov :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GaussianMixture gmm(d, k, cov);
        GmmParameters params;
        params.covariance = cov;
        params.niter = 8;
        params.max_points_per_component = 0;
        gmm.train(n, x.data(), params);
        EXPECT_TRUE(gmm.is_trained);
        EXPECT_TRUE(model_is_finite(gmm));
        gmm.check_consistency();
        ASSERT_FALSE(gmm.iteration_stats.empty());
        std::vector<float> post(n);
        std::vector<idx_t> comp(n);
        gmm.top_posteriors(n, x.data(), 1, post.data(), comp.data());
        std::vector<float> lj(size_t(n) * k);
        gmm.log_joint(n, x.data(), lj.data());
        for (idx_t i = 0; i < n; i++) {
            const float* row = lj.data() + i * k;
            idx_t best = std::max_element(row, row + k) - row;
            ASSERT_EQ(comp[i], best) << "point " << i;
        }
        double ll = gmm.mean_log_likelihood(n, x.data());
        EXPECT_GE(ll, gmm.iteration_stats.back().log_likelihood - 1e-3);
    }
}

namespace {

/// log sum_j exp(log_joint_j) of the reference model at one point, double.
double reference_log_density(const ReferenceEM& ref, const float* x) {
    double mx = -INFINITY;
    std::vector<double> lj(ref.k);
    for (int j = 0; j < ref.k; j++) {
        lj[j] = ref.log_joint(x, j);
        mx = std::max(mx, lj[j]);
    }
    double s = 0;
    for (int j = 0; j < ref.k; j++) {
        s += std::exp(lj[j] - mx);
    }
    return mx + std::log(s);
}

GaussianMixture trained_model(
    CovarianceType cov, idx_t n, const std::vector<float>& x, int d, int k) {
    GaussianMixture gmm(d, k, cov);
    GmmParameters params;
    params.covariance = cov;
    params.niter = 6;
    params.kmeans_niter = 5;
    params.max_points_per_component = 0;
    gmm.train(n, x.data(), params);
    return gmm;
}

} // namespace

TEST(GaussianMixture, LogLikelihoodNeverDecreases) {
    const int d = 12, k = 10;
    const idx_t n = 3000;
    std::vector<float> x = make_blobs(n, d, 6, 21);
    for (CovarianceType cov :
         {CovarianceType::Spherical,
          CovarianceType::Diagonal,
          CovarianceType::TiedSpherical}) {
        for (GmmInit init :
             {GmmInit::KMeans, GmmInit::KMeansPlusPlus, GmmInit::Random}) {
            GaussianMixture gmm(d, k, cov);
            GmmParameters params;
            params.covariance = cov;
            params.init = init;
            params.niter = 25;
            params.kmeans_niter = 5;
            params.tol = 0;
            params.max_points_per_component = 0;
            gmm.train(n, x.data(), params);
            const auto& st = gmm.iteration_stats;
            ASSERT_EQ(st.size(), size_t(params.niter));
            for (size_t it = 1; it < st.size(); it++) {
                if (st[it - 1].n_reseeded > 0) {
                    continue; // a re-seeding changes the model
                }
                EXPECT_GE(
                    st[it].log_likelihood,
                    st[it - 1].log_likelihood -
                        1e-6 * std::abs(st[it - 1].log_likelihood))
                    << covariance_type_name(cov) << " " << gmm_init_name(init)
                    << " iteration " << it;
            }
            EXPECT_TRUE(model_is_finite(gmm));
            gmm.check_consistency();
        }
    }
}

TEST(GaussianMixture, ConvergenceStopsOnTolerance) {
    const int d = 6, k = 4;
    const idx_t n = 2000;
    std::vector<float> x = make_blobs(n, d, 4, 5);
    GaussianMixture gmm(d, k, CovarianceType::Spherical);
    GmmParameters params;
    params.init = GmmInit::Random;
    params.niter = 50;
    params.tol = 1e6; // the second iteration cannot gain that much
    gmm.train(n, x.data(), params);
    EXPECT_EQ(gmm.iteration_stats.size(), 2u);
    EXPECT_TRUE(gmm.is_trained);
}

TEST(GaussianMixture, TrainingIsDeterministic) {
    const int d = 10, k = 7;
    const idx_t n = 3000;
    std::vector<float> x = make_blobs(n, d, 5, 8);
    for (CovarianceType cov :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GmmParameters params;
        params.covariance = cov;
        params.max_points_per_component = 200; // subsampling too
        params.kmeans_niter = 5;
        params.block_size = 512;
        GaussianMixture a(d, k, cov), b(d, k, cov);
        a.train(n, x.data(), params);
        b.train(n, x.data(), params);
        EXPECT_EQ(a.weights, b.weights);
        EXPECT_EQ(a.means, b.means);
        EXPECT_EQ(a.variances, b.variances);
    }
}

TEST(GaussianMixture, EStepDoesNotDependOnBlockSize) {
    const int d = 9, k = 6;
    const idx_t n = 1000;
    std::vector<float> x = make_blobs(n, d, 4, 13);
    for (CovarianceType cov :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GaussianMixture gmm = trained_model(cov, n, x, d, k);
        GmmSufficientStats whole(d, k, cov), tiny(d, k, cov);
        CpuEStep(n, x.data(), d, 4096).compute(gmm, &whole);
        CpuEStep(n, x.data(), d, 7).compute(gmm, &tiny);
        EXPECT_EQ(whole.n, n);
        EXPECT_EQ(tiny.n, n);
        EXPECT_NEAR(
            whole.log_likelihood,
            tiny.log_likelihood,
            1e-6 * std::abs(whole.log_likelihood));
        double total = 0;
        for (int j = 0; j < k; j++) {
            total += whole.count[j];
            EXPECT_NEAR(whole.count[j], tiny.count[j], 1e-3);
        }
        EXPECT_NEAR(total, double(n), 1e-2);
        for (size_t i = 0; i < whole.sum_x.size(); i++) {
            EXPECT_NEAR(
                whole.sum_x[i],
                tiny.sum_x[i],
                1e-5 * (1 + std::abs(whole.sum_x[i])));
        }
        for (size_t i = 0; i < whole.sum_sq.size(); i++) {
            EXPECT_NEAR(
                whole.sum_sq[i],
                tiny.sum_sq[i],
                1e-4 * (1 + std::abs(whole.sum_sq[i])));
        }
    }
}

TEST(GaussianMixture, EStepAndScoringDoNotDependOnThreadCount) {
    // Enough work (n k >= 2^16) for one team of row ranges
    // (impl/RowTeam.h): 3 ranges of an odd n, each in several blocks, give
    // what one thread gives, to the fp32 rounding of the logits (blocks of
    // other sizes round their products differently, as in
    // EStepDoesNotDependOnBlockSize); so do scans called from inside a
    // parallel region (a thread then runs every range itself).
    const int d = 12, k = 24, m = 3;
    const idx_t n = 20011;
    const std::vector<float> x = make_blobs(n, d, 8, 17);
    const int threads_before = omp_get_max_threads();
    for (CovarianceType cov :
         {CovarianceType::Spherical,
          CovarianceType::Diagonal,
          CovarianceType::Full}) {
        SCOPED_TRACE(covariance_type_name(cov));
        const GaussianMixture gmm = trained_model(cov, n, x, d, k);
        GmmSufficientStats stats[2] = {
            GmmSufficientStats(d, k, cov), GmmSufficientStats(d, k, cov)};
        std::vector<float> density[2], post[2];
        std::vector<idx_t> comp[2];
        for (int run = 0; run < 2; run++) {
            omp_set_num_threads(run == 0 ? 1 : 3);
            CpuEStep(n, x.data(), d, 3000).compute(gmm, &stats[run]);
            density[run].resize(n);
            gmm.log_density(n, x.data(), density[run].data());
            post[run].resize(size_t(n) * m);
            comp[run].resize(size_t(n) * m);
            gmm.top_posteriors(
                n, x.data(), m, post[run].data(), comp[run].data());
        }
        omp_set_num_threads(threads_before);
        EXPECT_EQ(stats[1].n, n);
        EXPECT_NEAR(
            stats[0].log_likelihood,
            stats[1].log_likelihood,
            1e-6 * std::abs(stats[0].log_likelihood));
        for (int j = 0; j < k; j++) {
            EXPECT_NEAR(stats[0].count[j], stats[1].count[j], 1e-3);
        }
        for (size_t i = 0; i < stats[0].sum_x.size(); i++) {
            EXPECT_NEAR(
                stats[0].sum_x[i],
                stats[1].sum_x[i],
                1e-5 * (1 + std::abs(stats[0].sum_x[i])));
        }
        for (size_t i = 0; i < stats[0].sum_sq.size(); i++) {
            EXPECT_NEAR(
                stats[0].sum_sq[i],
                stats[1].sum_sq[i],
                1e-4 * (1 + std::abs(stats[0].sum_sq[i])));
        }
        ASSERT_EQ(stats[0].sum_outer.size(), stats[1].sum_outer.size());
        for (size_t i = 0; i < stats[0].sum_outer.size(); i++) {
            EXPECT_NEAR(
                stats[0].sum_outer[i],
                stats[1].sum_outer[i],
                1e-4 * (1 + std::abs(stats[0].sum_outer[i])));
        }
        for (idx_t i = 0; i < n; i++) {
            ASSERT_NEAR(density[0][i], density[1][i], 1e-3) << "row " << i;
        }
        EXPECT_EQ(comp[0], comp[1]);
        for (size_t e = 0; e < post[0].size(); e++) {
            ASSERT_NEAR(post[0][e], post[1][e], 1e-4) << "entry " << e;
        }
        // Two halves scored by the two threads of a parallel region.
        std::vector<float> nested(n);
        const idx_t half = n / 2;
#pragma omp parallel num_threads(2)
        {
            const idx_t begin = omp_get_thread_num() == 0 ? 0 : half;
            const idx_t end = omp_get_thread_num() == 0 ? half : n;
            gmm.log_density(
                end - begin,
                x.data() + size_t(begin) * d,
                nested.data() + begin);
        }
        for (idx_t i = 0; i < n; i++) {
            ASSERT_NEAR(density[0][i], nested[i], 1e-3) << "row " << i;
        }
    }
}

TEST(GaussianMixture, ReseedsEmptyComponent) {
    const int d = 5, k = 4;
    const idx_t n = 1200;
    std::vector<float> x = make_blobs(n, d, 3, 17);
    for (CovarianceType cov :
         {CovarianceType::Spherical,
          CovarianceType::Diagonal,
          CovarianceType::TiedSpherical}) {
        GmmParameters params;
        params.covariance = cov;
        params.init = GmmInit::Random;
        params.niter = 4;
        params.tol = 0;
        GaussianMixture gmm(d, k, cov);
        initialize_gmm(&gmm, n, x.data(), params);
        // Component 2 sits far from every point: it gets no responsibility.
        for (int l = 0; l < d; l++) {
            gmm.means[2 * d + l] = 1e4f;
        }
        CpuEStep estep(n, x.data(), d);
        GmmSufficientStats stats(d, k, cov);
        estep.compute(gmm, &stats);
        EXPECT_EQ(stats.count[2], 0.0);

        GaussianMixture stepped = gmm;
        int heaviest =
            int(std::max_element(stats.count.begin(), stats.count.end()) -
                stats.count.begin());
        EXPECT_EQ(gmm_m_step(&stepped, stats, params, 0), 1);
        stepped.check_consistency(); // tied: all variances still equal
        // The re-seeded component is half of the heaviest one: same
        // variance, same weight, mean close to it.
        EXPECT_FLOAT_EQ(stepped.weights[2], stepped.weights[heaviest]);
        int vpc = stepped.variances_per_component();
        for (int v = 0; v < vpc; v++) {
            EXPECT_EQ(
                stepped.variances[2 * vpc + v],
                stepped.variances[heaviest * vpc + v]);
        }
        for (int l = 0; l < d; l++) {
            double sigma = std::sqrt(
                stepped.variances[heaviest * vpc + (vpc == 1 ? 0 : l)]);
            EXPECT_NEAR(
                stepped.means[2 * d + l],
                stepped.means[heaviest * d + l],
                2 * sigma);
            EXPECT_NE(
                stepped.means[2 * d + l], stepped.means[heaviest * d + l]);
        }

        // Through run_em: counted once, then the component lives.
        run_em(&gmm, &estep, params);
        ASSERT_EQ(gmm.iteration_stats.size(), size_t(params.niter));
        EXPECT_EQ(gmm.iteration_stats[0].n_reseeded, 1);
        for (int it = 1; it < params.niter; it++) {
            EXPECT_EQ(gmm.iteration_stats[it].n_reseeded, 0);
        }
        gmm.check_consistency(); // tied: all variances still equal
        EXPECT_TRUE(model_is_finite(gmm));
        stats.reset();
        estep.compute(gmm, &stats);
        EXPECT_GT(stats.count[2], params.min_component_count);
    }
}

TEST(GaussianMixture, VarianceFloorIsRespected) {
    const int d = 4, k = 3;
    const idx_t n = 900;
    // Two blobs and 300 copies of one point: that component collapses.
    std::vector<float> x = make_blobs(n, d, 2, 31);
    for (idx_t i = 0; i < 300; i++) {
        for (int l = 0; l < d; l++) {
            x[i * d + l] = 50.0f + l;
        }
    }
    double data_var = 0;
    for (int l = 0; l < d; l++) {
        double m = 0, s = 0;
        for (idx_t i = 0; i < n; i++) {
            m += x[i * d + l];
        }
        m /= n;
        for (idx_t i = 0; i < n; i++) {
            s += (x[i * d + l] - m) * (x[i * d + l] - m);
        }
        data_var += s / n;
    }
    data_var /= d;
    for (CovarianceType cov :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GmmParameters params;
        params.covariance = cov;
        params.reg_covar = 1e-2f;
        params.kmeans_niter = 5;
        params.max_points_per_component = 0;
        GaussianMixture gmm(d, k, cov);
        gmm.train(n, x.data(), params);
        EXPECT_NEAR(gmm.variance_floor, 1e-2 * data_var, 1e-6 * data_var);
        int at_floor = 0;
        for (float v : gmm.variances) {
            EXPECT_GE(v, gmm.variance_floor);
            at_floor += v == gmm.variance_floor;
        }
        EXPECT_GE(at_floor, 1) << covariance_type_name(cov);
        for (const auto& st : gmm.iteration_stats) {
            EXPECT_GE(st.min_variance, gmm.variance_floor);
        }
        gmm.check_consistency();
    }
}

TEST(GaussianMixture, LogDensityMatchesFloat64BruteForce) {
    const int d = 16, k = 9;
    const idx_t n = 1500;
    std::vector<float> x = make_blobs(n, d, 6, 41);
    // Far from the origin too: the expansion must not lose the distances.
    std::vector<float> shifted = x;
    for (auto& v : shifted) {
        v += 1000.0f;
    }
    for (CovarianceType cov :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        for (const std::vector<float>* data : {&x, &shifted}) {
            GaussianMixture gmm = trained_model(cov, n, *data, d, k);
            ReferenceEM ref(gmm);
            std::vector<float> density(n), lj(size_t(n) * k);
            gmm.log_density(n, data->data(), density.data());
            gmm.log_joint(n, data->data(), lj.data());
            double mean = 0;
            for (idx_t i = 0; i < n; i++) {
                const float* xi = data->data() + i * d;
                double expected = reference_log_density(ref, xi);
                mean += expected;
                ASSERT_NEAR(
                    density[i], expected, 1e-3 * (1 + std::abs(expected)))
                    << "point " << i;
                for (int j = 0; j < k; j++) {
                    double e = ref.log_joint(xi, j);
                    ASSERT_NEAR(lj[i * k + j], e, 1e-3 * (1 + std::abs(e)))
                        << "point " << i << " component " << j;
                }
            }
            mean /= n;
            EXPECT_NEAR(
                gmm.mean_log_likelihood(n, data->data()),
                mean,
                1e-5 * std::abs(mean));
        }
    }
}

TEST(GaussianMixture, TopPosteriors) {
    const int d = 8, k = 6;
    const idx_t n = 800;
    // One blob for six components: posteriors overlap.
    std::vector<float> x = make_blobs(n, d, 1, 51);
    for (CovarianceType cov :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GaussianMixture gmm = trained_model(cov, n, x, d, k);
        ReferenceEM ref(gmm);
        const int m = 3;
        std::vector<float> post(n * m), post_all(n * k), post_hot(n * k);
        std::vector<idx_t> comp(n * m), comp_all(n * k), comp_hot(n * k);
        gmm.top_posteriors(n, x.data(), m, post.data(), comp.data());
        gmm.top_posteriors(n, x.data(), k, post_all.data(), comp_all.data());
        gmm.top_posteriors(
            n, x.data(), k, post_hot.data(), comp_hot.data(), 4.0f);
        double top1 = 0, top1_hot = 0;
        for (idx_t i = 0; i < n; i++) {
            const float* xi = x.data() + i * d;
            double lz = reference_log_density(ref, xi);
            double sum = 0;
            for (int r = 0; r < m; r++) {
                idx_t c = comp[i * m + r];
                ASSERT_GE(c, 0);
                ASSERT_LT(c, k);
                if (r > 0) {
                    ASSERT_LE(post[i * m + r], post[i * m + r - 1]);
                    ASSERT_NE(c, comp[i * m + r - 1]);
                }
                EXPECT_NEAR(
                    post[i * m + r],
                    std::exp(ref.log_joint(xi, int(c)) - lz),
                    1e-4);
                EXPECT_EQ(c, comp_all[i * k + r]);
                sum += post[i * m + r];
            }
            ASSERT_LE(sum, 1 + 1e-5);
            double sum_all = 0, sum_hot = 0;
            for (int r = 0; r < k; r++) {
                sum_all += post_all[i * k + r];
                sum_hot += post_hot[i * k + r];
                // A temperature changes the posteriors, not their order.
                EXPECT_EQ(comp_hot[i * k + r], comp_all[i * k + r]);
            }
            EXPECT_NEAR(sum_all, 1, 1e-5);
            EXPECT_NEAR(sum_hot, 1, 1e-5);
            EXPECT_LE(post_hot[i * k], post_all[i * k] + 1e-6);
            top1 += post_all[i * k];
            top1_hot += post_hot[i * k];
        }
        // T = 4 flattens the posteriors.
        EXPECT_LT(top1_hot, top1 - 0.01 * n);
    }
}

TEST(GaussianMixture, BicAicByHand) {
    const int d = 2, k = 2;
    const std::vector<float> x = {0, 0, 1, -1, 3, 1, 4, 2, -2, 1};
    const idx_t n = 5;
    for (CovarianceType cov :
         {CovarianceType::Spherical,
          CovarianceType::Diagonal,
          CovarianceType::TiedSpherical}) {
        GaussianMixture gmm(d, k, cov);
        gmm.weights = {0.3f, 0.7f};
        gmm.means = {0, 0, 3, 1};
        if (cov == CovarianceType::Spherical) {
            gmm.variances = {1, 2};
        } else if (cov == CovarianceType::Diagonal) {
            gmm.variances = {1, 1, 2, 2};
        } else {
            gmm.variances = {1, 1};
        }
        const double var1 = gmm.variances.back();
        // Spherical and diagonal describe the same densities here.
        double ll = 0;
        for (idx_t i = 0; i < n; i++) {
            double a = x[i * 2], b = x[i * 2 + 1];
            double p0 = 0.3 / (2 * M_PI * 1) * std::exp(-(a * a + b * b) / 2);
            double p1 =
                0.7 / (2 * M_PI * var1) *
                std::exp(-((a - 3) * (a - 3) + (b - 1) * (b - 1)) / (2 * var1));
            ll += std::log(p0 + p1);
        }
        // weights, means, then 2, 4 or 1 (shared) variances
        size_t p = cov == CovarianceType::Spherical  ? 1 + 4 + 2
                   : cov == CovarianceType::Diagonal ? 1 + 4 + 4
                                                     : 1 + 4 + 1;
        EXPECT_EQ(gmm.n_parameters(), p);
        EXPECT_NEAR(gmm.bic(n, x.data()), -2 * ll + p * std::log(5.0), 1e-4);
        EXPECT_NEAR(gmm.aic(n, x.data()), -2 * ll + 2.0 * p, 1e-4);
        EXPECT_NEAR(gmm.mean_log_likelihood(n, x.data()), ll / n, 1e-5);
    }
}

TEST(GaussianMixture, SubsamplingIsSeededAndDistinct) {
    const int d = 3, k = 4;
    const idx_t n = 5000;
    std::vector<float> x(n * d);
    for (idx_t i = 0; i < n; i++) {
        x[i * d] = float(i);
        x[i * d + 1] = float(i % 97);
        x[i * d + 2] = -float(i);
    }
    GmmParameters params;
    params.max_points_per_component = 100;
    params.seed = 77;
    std::vector<float> a, b, c;
    EXPECT_EQ(subsample_training_set(d, k, n, x.data(), params, &a), 400);
    EXPECT_EQ(subsample_training_set(d, k, n, x.data(), params, &b), 400);
    params.seed = 78;
    EXPECT_EQ(subsample_training_set(d, k, n, x.data(), params, &c), 400);
    ASSERT_EQ(a.size(), 400u * d);
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    std::vector<idx_t> rows;
    for (idx_t j = 0; j < 400; j++) {
        idx_t row = idx_t(a[j * d]);
        ASSERT_GE(row, 0);
        ASSERT_LT(row, n);
        EXPECT_EQ(a[j * d + 1], x[row * d + 1]);
        EXPECT_EQ(a[j * d + 2], x[row * d + 2]);
        rows.push_back(row);
    }
    std::sort(rows.begin(), rows.end());
    EXPECT_EQ(std::unique(rows.begin(), rows.end()), rows.end());

    params.max_points_per_component = 0;
    EXPECT_EQ(subsample_training_set(d, k, n, x.data(), params, &a), n);
    EXPECT_TRUE(a.empty());
    params.max_points_per_component = 1250; // k * 1250 = n: no sampling
    EXPECT_EQ(subsample_training_set(d, k, n, x.data(), params, &a), n);
    EXPECT_TRUE(a.empty());
}

TEST(GaussianMixture, BadInputThrowsNamingTheValue) {
    const int d = 4, k = 2;
    const idx_t n = 50;
    std::vector<float> x = make_blobs(n, d, 2, 61);
    GaussianMixture gmm(d, k, CovarianceType::Spherical);

    std::vector<float> bad = x;
    bad[3 * d + 2] = NAN;
    std::string msg = exception_message([&] { gmm.train(n, bad.data()); });
    EXPECT_NE(msg.find("nan"), std::string::npos) << msg;
    EXPECT_NE(msg.find("row 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("column 2"), std::string::npos) << msg;

    bad = x;
    bad[7 * d + 0] = -INFINITY;
    bad[9 * d + 1] = INFINITY;
    msg = exception_message([&] { gmm.train(n, bad.data()); });
    EXPECT_NE(msg.find("-inf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("row 7"), std::string::npos) << msg;
    EXPECT_NE(msg.find("column 0"), std::string::npos) << msg;

    GaussianMixture big(d, 60, CovarianceType::Spherical);
    msg = exception_message([&] { big.train(n, x.data()); });
    EXPECT_NE(msg.find("n = 50"), std::string::npos) << msg;
    EXPECT_NE(msg.find("k = 60"), std::string::npos) << msg;

    msg = exception_message(
        [] { GaussianMixture(0, 3, CovarianceType::Spherical); });
    EXPECT_NE(msg.find("d = 0"), std::string::npos) << msg;
    msg = exception_message(
        [] { GaussianMixture(3, 0, CovarianceType::Diagonal); });
    EXPECT_NE(msg.find("k = 0"), std::string::npos) << msg;
    GaussianMixture untouched;
    msg = exception_message([&] { untouched.train(n, x.data()); });
    EXPECT_NE(msg.find("d = 0"), std::string::npos) << msg;

    msg = exception_message([] { covariance_type_from_name("fulll"); });
    EXPECT_NE(msg.find("'fulll'"), std::string::npos) << msg;
    EXPECT_EQ(covariance_type_from_name("full"), CovarianceType::Full);
    msg = exception_message([] { gmm_init_from_name("kmeans+++"); });
    EXPECT_NE(msg.find("'kmeans+++'"), std::string::npos) << msg;

    GmmParameters diag;
    diag.covariance = CovarianceType::Diagonal;
    msg = exception_message([&] { gmm.train(n, x.data(), diag); });
    EXPECT_NE(msg.find("diagonal"), std::string::npos) << msg;
    EXPECT_NE(msg.find("spherical"), std::string::npos) << msg;

    gmm.train(n, x.data());
    std::vector<float> post(n * 3);
    std::vector<idx_t> comp(n * 3);
    msg = exception_message(
        [&] { gmm.top_posteriors(n, x.data(), 3, post.data(), comp.data()); });
    EXPECT_NE(msg.find("m = 3"), std::string::npos) << msg;
    msg = exception_message([&] {
        gmm.top_posteriors(n, x.data(), 1, post.data(), comp.data(), 0.0f);
    });
    EXPECT_NE(msg.find("temperature = 0"), std::string::npos) << msg;

    GaussianMixture broken = gmm;
    broken.variances[1] = -1;
    msg = exception_message([&] { broken.check_consistency(); });
    EXPECT_NE(msg.find("-1"), std::string::npos) << msg;
    broken = gmm;
    broken.weights[0] = 0.9f;
    msg = exception_message([&] { broken.check_consistency(); });
    EXPECT_NE(msg.find("sum"), std::string::npos) << msg;
    broken = gmm;
    broken.means.pop_back();
    msg = exception_message([&] { broken.check_consistency(); });
    EXPECT_NE(msg.find("means"), std::string::npos) << msg;

    GaussianMixture tied(d, 3, CovarianceType::TiedSpherical);
    tied.variances = {2, 2, 2.5f};
    msg = exception_message([&] { tied.check_consistency(); });
    EXPECT_NE(msg.find("component 2 is 2.5"), std::string::npos) << msg;
}

TEST(GaussianMixture, NamesRoundTrip) {
    for (CovarianceType cov :
         {CovarianceType::Spherical,
          CovarianceType::Diagonal,
          CovarianceType::TiedSpherical}) {
        EXPECT_EQ(covariance_type_from_name(covariance_type_name(cov)), cov);
    }
    EXPECT_EQ(covariance_type_from_name("sph"), CovarianceType::Spherical);
    EXPECT_EQ(covariance_type_from_name("diag"), CovarianceType::Diagonal);
    EXPECT_STREQ(covariance_type_name(CovarianceType::TiedSpherical), "tied");
    EXPECT_EQ(
        covariance_type_from_name("tied-spherical"),
        CovarianceType::TiedSpherical);
    for (GmmInit init :
         {GmmInit::KMeans, GmmInit::KMeansPlusPlus, GmmInit::Random}) {
        EXPECT_EQ(gmm_init_from_name(gmm_init_name(init)), init);
    }
}

namespace {

/// The first max_rows vectors of a .bvecs file as floats (empty if absent).
std::vector<float>
read_bvecs_prefix(const std::string& path, idx_t max_rows, int* d) {
    std::vector<float> out;
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) {
        return out;
    }
    int dim = 0;
    std::vector<unsigned char> row;
    for (idx_t i = 0; i < max_rows; i++) {
        if (fread(&dim, sizeof(dim), 1, f) != 1) {
            break;
        }
        if (dim <= 0 || dim > 100000 || (*d && dim != *d)) {
            ADD_FAILURE() << path << ": bad dimension " << dim << " at row "
                          << i;
            break;
        }
        *d = dim;
        row.resize(dim);
        if (fread(row.data(), 1, dim, f) != size_t(dim)) {
            ADD_FAILURE() << path << ": truncated at row " << i;
            break;
        }
        out.insert(out.end(), row.begin(), row.end());
    }
    fclose(f);
    return out;
}

} // namespace

TEST(GaussianMixture, RealSiftEm) {
    const std::string path =
        std::string(FAISS_GMM_SHARED_DATASETS) + "/sift-debian-a/base.bvecs";
    int d = 0;
    std::vector<float> x = read_bvecs_prefix(path, 20000, &d);
    if (x.empty()) {
        GTEST_SKIP() << "real SIFT data not found at " << path
                     << " (../shared/datasets is not shipped with the project)";
    }
    const idx_t n = idx_t(x.size() / d);
    ASSERT_EQ(d, 128);
    for (CovarianceType cov :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        const int k = 64;
        GaussianMixture gmm(d, k, cov);
        GmmParameters params;
        params.covariance = cov;
        params.niter = 6;
        params.tol = 0;
        params.kmeans_niter = 5;
        params.max_points_per_component = 0;
        gmm.train(n, x.data(), params);
        gmm.check_consistency();
        EXPECT_TRUE(model_is_finite(gmm));
        const auto& st = gmm.iteration_stats;
        ASSERT_EQ(st.size(), size_t(params.niter));
        for (size_t it = 1; it < st.size(); it++) {
            EXPECT_TRUE(std::isfinite(st[it].log_likelihood));
            if (st[it - 1].n_reseeded == 0) {
                EXPECT_GE(
                    st[it].log_likelihood,
                    st[it - 1].log_likelihood -
                        1e-6 * std::abs(st[it - 1].log_likelihood))
                    << covariance_type_name(cov) << " iteration " << it;
            }
        }
        EXPECT_GT(st.back().log_likelihood, st.front().log_likelihood);
        double ll = gmm.mean_log_likelihood(n, x.data());
        EXPECT_TRUE(std::isfinite(ll));
        printf(
            "SIFT %ld x %d, k = %d %s: mean log-lik %.3f -> %.3f after %d "
            "iterations (scored %.3f)\n",
            long(n),
            d,
            k,
            covariance_type_name(cov),
            st.front().log_likelihood,
            st.back().log_likelihood,
            int(st.size()),
            ll);
    }
}

TEST(GaussianMixture, EStepStatisticsMatchFloat64) {
    const int d = 10;
    const idx_t n = 2400;
    // Separated blobs far from the origin (responsibilities mostly exact
    // zeros: the sparse accumulation) and one blob for all components (dense
    // responsibilities: the dgemm path).
    std::vector<float> separated = make_blobs(n, d, 24, 71);
    for (auto& v : separated) {
        v = v * 30 + 500;
    }
    std::vector<float> overlapping = make_blobs(n, d, 1, 72);
    for (CovarianceType cov :
         {CovarianceType::Spherical,
          CovarianceType::Diagonal,
          CovarianceType::TiedSpherical}) {
        for (const std::vector<float>* data : {&separated, &overlapping}) {
            const int k = data == &separated ? 24 : 6;
            GaussianMixture gmm = trained_model(cov, n, *data, d, k);
            if (data == &separated) {
                // One component per blob (point i is in blob i % 24), so
                // that a k-means local optimum cannot merge two blobs.
                std::vector<double> mean(size_t(k) * d, 0.0);
                for (idx_t i = 0; i < n; i++) {
                    for (int l = 0; l < d; l++) {
                        mean[(i % k) * d + l] += (*data)[i * d + l] * k / n;
                    }
                }
                gmm.means.assign(mean.begin(), mean.end());
                std::fill(gmm.weights.begin(), gmm.weights.end(), 1.0f / k);
                std::fill(gmm.variances.begin(), gmm.variances.end(), 900.0f);
            }
            // Statistics about means that are not the new ones.
            for (auto& m : gmm.means) {
                m += 0.25f;
            }
            ReferenceEM ref(gmm);
            std::vector<double> r;
            double ll = ref.e_step(n, data->data(), &r) * n;
            GmmSufficientStats stats(d, k, cov);
            CpuEStep(n, data->data(), d, 256).compute(gmm, &stats);
            EXPECT_NEAR(stats.log_likelihood, ll, 1e-5 * std::abs(ll));
            if (data == &separated) {
                idx_t nonzero = 0;
                for (double v : r) {
                    nonzero +=
                        v > 1e-15; // below the fp32 softmax's exp(-30) cut
                }
                // Few enough non-zeros for the sparse accumulation.
                ASSERT_LT(nonzero * 8, n * k);
            }
            for (int j = 0; j < k; j++) {
                double nk = 0, sph = 0;
                std::vector<double> sx(d, 0.0), sq(d, 0.0);
                for (idx_t i = 0; i < n; i++) {
                    double ri = r[i * k + j];
                    nk += ri;
                    for (int l = 0; l < d; l++) {
                        double xv = (*data)[i * d + l];
                        double diff = xv - gmm.means[j * d + l];
                        sx[l] += ri * xv;
                        sq[l] += ri * diff * diff;
                        sph += ri * diff * diff;
                    }
                }
                EXPECT_NEAR(stats.count[j], nk, 1e-4 * (1 + nk));
                for (int l = 0; l < d; l++) {
                    EXPECT_NEAR(
                        stats.sum_x[j * d + l],
                        sx[l],
                        1e-4 * (1 + std::abs(sx[l])));
                    if (cov == CovarianceType::Diagonal) {
                        EXPECT_NEAR(
                            stats.sum_sq[j * d + l], sq[l], 1e-4 * (1 + sq[l]))
                            << "component " << j << " dim " << l;
                    }
                }
                if (cov != CovarianceType::Diagonal) {
                    EXPECT_NEAR(stats.sum_sq[j], sph, 1e-4 * (1 + sph))
                        << "component " << j;
                }
            }
        }
    }
}

/*********************************************************************
 * Full covariance
 *********************************************************************/

namespace {

/// n points around k_true centres, cluster c drawn as centre_c + A_c z with
/// a random dense A_c (z ~ N(0, I)): strongly correlated, anisotropic
/// clusters that a diagonal model cannot describe.
std::vector<float> make_correlated_blobs(
    idx_t n, int d, int k_true, uint64_t seed, double center_range = 8) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> center_dist(
        -center_range, center_range);
    std::normal_distribution<double> normal(0, 1);
    std::vector<double> centers(size_t(k_true) * d);
    std::vector<double> mix(size_t(k_true) * d * d);
    for (auto& c : centers) {
        c = center_dist(rng);
    }
    for (auto& a : mix) {
        a = 0.6 * normal(rng);
    }
    std::vector<float> x(size_t(n) * d);
    std::vector<double> z(d);
    for (idx_t i = 0; i < n; i++) {
        const int c = int(i % k_true);
        for (auto& v : z) {
            v = normal(rng);
        }
        const double* a = mix.data() + size_t(c) * d * d;
        for (int r = 0; r < d; r++) {
            double v = centers[size_t(c) * d + r];
            for (int l = 0; l < d; l++) {
                v += a[size_t(r) * d + l] * z[l];
            }
            x[size_t(i) * d + r] = float(v);
        }
    }
    return x;
}

/// In-place lower Cholesky factor of a row-major SPD matrix (double); false
/// when it is not positive definite. The test's own, independent of LAPACK.
bool cholesky_lower(int d, std::vector<double>* a) {
    std::vector<double>& m = *a;
    for (int j = 0; j < d; j++) {
        double s = m[size_t(j) * d + j];
        for (int l = 0; l < j; l++) {
            s -= m[size_t(j) * d + l] * m[size_t(j) * d + l];
        }
        if (!(s > 0)) {
            return false;
        }
        const double ljj = std::sqrt(s);
        m[size_t(j) * d + j] = ljj;
        for (int i = j + 1; i < d; i++) {
            double t = m[size_t(i) * d + j];
            for (int l = 0; l < j; l++) {
                t -= m[size_t(i) * d + l] * m[size_t(j) * d + l];
            }
            m[size_t(i) * d + j] = t / ljj;
        }
        for (int l = j + 1; l < d; l++) {
            m[size_t(j) * d + l] = 0;
        }
    }
    return true;
}

/// A textbook float64 EM for full covariances: dense n x k
/// responsibilities, log N through a Cholesky factor of Sigma (forward
/// substitution), Sigma = sum r (x - mu)(x - mu)^T / N_k + floor I.
struct FullReferenceEM {
    int d, k;
    std::vector<double> w, mu, cov; ///< k, k x d, k x d x d
    double floor;

    explicit FullReferenceEM(const GaussianMixture& m)
        : d(m.d),
          k(m.k),
          w(m.weights.begin(), m.weights.end()),
          mu(m.means.begin(), m.means.end()),
          cov(m.covariances.begin(), m.covariances.end()),
          floor(m.variance_floor) {}

    std::vector<double> factors; ///< k x d x d lower Cholesky factors of cov

    /// Factors every covariance (before log_joint).
    void factor() {
        factors = cov;
        for (int j = 0; j < k; j++) {
            std::vector<double> l(
                cov.begin() + size_t(j) * d * d,
                cov.begin() + size_t(j + 1) * d * d);
            EXPECT_TRUE(cholesky_lower(d, &l)) << "component " << j;
            std::copy(l.begin(), l.end(), factors.begin() + size_t(j) * d * d);
        }
    }

    /// log pi_j + log N(x | j) for every j, from the factors of cov.
    void log_joint(const float* x, double* out) const {
        std::vector<double> y(d);
        for (int j = 0; j < k; j++) {
            const double* l = factors.data() + size_t(j) * d * d;
            // L y = x - mu: ||y||^2 = (x - mu)^T Sigma^-1 (x - mu)
            double q = 0, log_det = 0;
            for (int r = 0; r < d; r++) {
                double t = double(x[r]) - mu[size_t(j) * d + r];
                for (int c = 0; c < r; c++) {
                    t -= l[size_t(r) * d + c] * y[c];
                }
                y[r] = t / l[size_t(r) * d + r];
                q += y[r] * y[r];
                log_det += 2 * std::log(l[size_t(r) * d + r]);
            }
            out[j] =
                std::log(w[j]) - 0.5 * (d * std::log(2 * M_PI) + log_det + q);
        }
    }

    double e_step(idx_t n, const float* x, std::vector<double>* r) {
        factor();
        r->resize(size_t(n) * k);
        double ll = 0;
        for (idx_t i = 0; i < n; i++) {
            double* ri = r->data() + i * k;
            log_joint(x + i * d, ri);
            double mx = *std::max_element(ri, ri + k);
            double s = 0;
            for (int j = 0; j < k; j++) {
                s += std::exp(ri[j] - mx);
            }
            double lz = mx + std::log(s);
            for (int j = 0; j < k; j++) {
                ri[j] = std::exp(ri[j] - lz);
            }
            ll += lz;
        }
        return ll / n;
    }

    void m_step(idx_t n, const float* x, const std::vector<double>& r) {
        for (int j = 0; j < k; j++) {
            double nk = 0;
            std::vector<double> m(d, 0.0), s(size_t(d) * d, 0.0);
            for (idx_t i = 0; i < n; i++) {
                nk += r[i * k + j];
                for (int l = 0; l < d; l++) {
                    m[l] += r[i * k + j] * x[i * d + l];
                }
            }
            for (int l = 0; l < d; l++) {
                m[l] /= nk;
            }
            std::vector<double> diff(d);
            for (idx_t i = 0; i < n; i++) {
                const double rij = r[i * k + j];
                if (rij == 0) {
                    continue;
                }
                for (int a = 0; a < d; a++) {
                    diff[a] = x[i * d + a] - m[a];
                }
                for (int a = 0; a < d; a++) {
                    const double rda = rij * diff[a];
                    double* row = s.data() + size_t(a) * d;
                    for (int b = 0; b <= a; b++) {
                        row[b] += rda * diff[b];
                    }
                }
            }
            for (int a = 0; a < d; a++) {
                for (int b = a + 1; b < d; b++) {
                    s[size_t(a) * d + b] = s[size_t(b) * d + a];
                }
            }
            w[j] = nk / n;
            for (int l = 0; l < d; l++) {
                mu[size_t(j) * d + l] = m[l];
            }
            for (int a = 0; a < d; a++) {
                for (int b = 0; b < d; b++) {
                    cov[(size_t(j) * d + a) * d + b] =
                        s[size_t(a) * d + b] / nk + (a == b ? floor : 0.0);
                }
            }
        }
    }
};

/// sum_ab |A - B|_ab / sqrt(A_aa A_bb): the largest deviation of one
/// covariance entry in units of the reference's standard deviations.
double
max_relative_covariance_error(int d, const float* got, const double* want) {
    double worst = 0;
    for (int a = 0; a < d; a++) {
        for (int b = 0; b < d; b++) {
            const double scale =
                std::sqrt(want[size_t(a) * d + a] * want[size_t(b) * d + b]);
            worst = std::max(
                worst,
                std::abs(got[size_t(a) * d + b] - want[size_t(a) * d + b]) /
                    scale);
        }
    }
    return worst;
}

/// How far a full model trained by run_em is from the float64 EM replayed
/// from its initial model.
struct ReferenceDeviation {
    std::vector<double> ll; ///< the reference's log-likelihood per iteration
    std::vector<double> r;  ///< its responsibilities of the last E-step
    /// largest relative log-likelihood deviation of an iteration
    double worst_ll = 0;
    /// largest deviation of a weight, a mean, a covariance entry
    /// (max_relative_covariance_error) after the last iteration
    double worst_w = 0, worst_mu = 0, worst_cov = 0;
};

/**
 * Replays niter iterations of ref (built from the model's initial state) on
 * the n points x and compares them with model's iteration_stats, then the
 * final parameters.
 */
ReferenceDeviation replay_reference(
    FullReferenceEM& ref,
    const GaussianMixture& model,
    int niter,
    idx_t n,
    const float* x) {
    const int d = model.d, k = model.k;
    ReferenceDeviation dev;
    for (int it = 0; it < niter; it++) {
        const double ll = ref.e_step(n, x, &dev.r);
        const double got = model.iteration_stats[it].log_likelihood;
        dev.worst_ll =
            std::max(dev.worst_ll, std::abs(got - ll) / std::abs(ll));
        dev.ll.push_back(ll);
        ref.m_step(n, x, dev.r);
    }
    for (int j = 0; j < k; j++) {
        dev.worst_w =
            std::max(dev.worst_w, std::abs(model.weights[j] - ref.w[j]));
        const size_t off = size_t(j) * d * d;
        dev.worst_cov = std::max(
            dev.worst_cov,
            max_relative_covariance_error(
                d, model.covariances.data() + off, ref.cov.data() + off));
    }
    for (size_t i = 0; i < ref.mu.size(); i++) {
        dev.worst_mu =
            std::max(dev.worst_mu, std::abs(model.means[i] - ref.mu[i]));
    }
    return dev;
}

} // namespace

/**
 * Full-covariance EM (fp32 logits through the Cholesky factors, statistics
 * in double) against the textbook float64 EM above, from the same initial
 * model, 2000 x 8, K = 4 on 2 overlapping correlated clusters (about half
 * the points have no posterior above 0.9), 20 iterations. Documented
 * tolerances, with the deviations measured 2026-12-07 (OpenBLAS 0.3.21,
 * printed by the test) in brackets: mean log-likelihood 2e-6 relative per
 * iteration (1.3e-7), weights 2e-5 absolute (2.9e-7), means 1e-4 absolute
 * at a data scale of ~2 (1.2e-6), covariance entries 1e-4 of
 * sqrt(Sigma_aa Sigma_bb) (5.2e-7), precision factors 1e-4 of the largest
 * entry (5.0e-6); the trained model's log-joint 1e-4 relative.
 */
TEST(GaussianMixtureFull, EmMatchesFloat64Reference) {
    const int d = 8, k = 4;
    const idx_t n = 2000;
    // two overlapping clusters (centres within +-0.5, spreads ~1.7) for four
    // components: soft responsibilities, every statistic a weighted sum
    std::vector<float> x = make_correlated_blobs(n, d, 2, 19, 0.5);
    GmmParameters params;
    params.covariance = CovarianceType::Full;
    params.init = GmmInit::KMeansPlusPlus;
    params.seed = 5;
    params.niter = 20;
    params.tol = 0;
    params.min_component_count = 1e-6; // no re-seeding in this comparison
    GaussianMixture model(d, k, CovarianceType::Full);
    initialize_gmm(&model, n, x.data(), params);
    model.check_consistency();
    FullReferenceEM ref(model);
    CpuEStep estep(n, x.data(), d, 300); // several blocks, the last partial
    run_em(&model, &estep, params);
    ASSERT_EQ(model.iteration_stats.size(), size_t(params.niter));

    const ReferenceDeviation dev =
        replay_reference(ref, model, params.niter, n, x.data());
    for (int it = 0; it < params.niter; it++) {
        const double got = model.iteration_stats[it].log_likelihood;
        EXPECT_NEAR(got, dev.ll[it], 2e-6 * std::abs(dev.ll[it]))
            << "iteration " << it;
    }
    const std::vector<double>& r = dev.r;
    // the comparison means something: many points are shared
    idx_t soft = 0;
    for (idx_t i = 0; i < n; i++) {
        soft +=
            *std::max_element(r.begin() + i * k, r.begin() + (i + 1) * k) < 0.9;
    }
    EXPECT_GT(soft, n / 10) << "responsibilities are nearly hard";
    double worst_u = 0;
    for (int j = 0; j < k; j++) {
        const size_t off = size_t(j) * d * d;
        // the reference's U = L^-T from its own Cholesky factor
        std::vector<double> l(
            ref.cov.begin() + off, ref.cov.begin() + off + d * d);
        ASSERT_TRUE(cholesky_lower(d, &l));
        std::vector<double> linv(size_t(d) * d, 0.0); // L^-1 by columns
        for (int c = 0; c < d; c++) {
            for (int r2 = 0; r2 < d; r2++) {
                double t = r2 == c ? 1.0 : 0.0;
                for (int m = 0; m < r2; m++) {
                    t -= l[size_t(r2) * d + m] * linv[size_t(m) * d + c];
                }
                linv[size_t(r2) * d + c] = t / l[size_t(r2) * d + r2];
            }
        }
        double largest = 0, diff = 0;
        for (int a = 0; a < d; a++) {
            for (int b = 0; b < d; b++) {
                const double want = linv[size_t(b) * d + a]; // (L^-T)_ab
                largest = std::max(largest, std::abs(want));
                diff = std::max(
                    diff,
                    std::abs(
                        model.precision_cholesky[off + size_t(a) * d + b] -
                        want));
            }
        }
        worst_u = std::max(worst_u, diff / largest);
    }
    printf(
        "full EM vs float64 reference after %d iterations (%ld of %ld "
        "points with max posterior < 0.9): log-lik %.2e rel (allowed "
        "2e-6), weights %.2e (2e-5), means %.2e (1e-4), covariances %.2e "
        "(1e-4), factors %.2e (1e-4)\n",
        params.niter,
        long(soft),
        long(n),
        dev.worst_ll,
        dev.worst_w,
        dev.worst_mu,
        dev.worst_cov,
        worst_u);
    EXPECT_LE(dev.worst_w, 2e-5);
    EXPECT_LE(dev.worst_mu, 1e-4);
    EXPECT_LE(dev.worst_cov, 1e-4);
    EXPECT_LE(worst_u, 1e-4);
    model.check_consistency();
    // and the trained model scores as the reference does
    std::vector<float> lj(size_t(n) * k);
    model.log_joint(n, x.data(), lj.data());
    FullReferenceEM final_ref(model);
    final_ref.factor();
    std::vector<double> want(k);
    double worst_score = 0;
    for (idx_t i = 0; i < n; i++) {
        final_ref.log_joint(x.data() + i * d, want.data());
        for (int j = 0; j < k; j++) {
            worst_score = std::max(
                worst_score,
                std::abs(lj[i * k + j] - want[j]) / (1 + std::abs(want[j])));
        }
    }
    EXPECT_LE(worst_score, 1e-4);
}

TEST(GaussianMixtureFull, BeatsDiagonalOnCorrelatedBlobs) {
    const int d = 12, k = 5;
    const idx_t n = 5000;
    std::vector<float> x = make_correlated_blobs(n, d, k, 23);
    double ll[2];
    int i = 0;
    for (CovarianceType cov :
         {CovarianceType::Diagonal, CovarianceType::Full}) {
        GaussianMixture gmm(d, k, cov);
        GmmParameters params;
        params.covariance = cov;
        params.init = GmmInit::KMeansPlusPlus;
        params.niter = 30;
        params.max_points_per_component = 0;
        gmm.train(n, x.data(), params);
        gmm.check_consistency();
        EXPECT_TRUE(model_is_finite(gmm));
        ll[i++] = gmm.mean_log_likelihood(n, x.data());
        // the BIC agrees even after paying for d (d + 1) / 2 values
        printf(
            "correlated blobs %ld x %d, k = %d, %s: mean log-lik %.4f, BIC "
            "%.1f\n",
            long(n),
            d,
            k,
            covariance_type_name(cov),
            ll[i - 1],
            gmm.bic(n, x.data()));
    }
    // The data is exactly a mixture of full Gaussians: the full model gains
    // several nats per point over the diagonal one.
    EXPECT_GT(ll[1], ll[0] + 1.0);
}

TEST(GaussianMixtureFull, CholeskyRoundTrip) {
    const int d = 9, k = 3;
    GaussianMixture gmm(d, k, CovarianceType::Full);
    // identity covariances at construction: U = I, log det 0
    for (int j = 0; j < k; j++) {
        EXPECT_EQ(gmm.log_det_cholesky[j], 0.0f);
        for (int a = 0; a < d; a++) {
            for (int b = 0; b < d; b++) {
                EXPECT_EQ(
                    gmm.precision_cholesky[(size_t(j) * d + a) * d + b],
                    a == b ? 1.0f : 0.0f);
            }
        }
    }
    std::mt19937_64 rng(3);
    std::normal_distribution<double> normal(0, 1);
    for (int j = 0; j < k; j++) {
        // Sigma = B B^T + 0.1 I, scaled per component
        std::vector<double> b(size_t(d) * d);
        for (auto& v : b) {
            v = normal(rng) * (j + 1);
        }
        for (int r = 0; r < d; r++) {
            for (int c = 0; c < d; c++) {
                double s = r == c ? 0.1 : 0.0;
                for (int l = 0; l < d; l++) {
                    s += b[size_t(r) * d + l] * b[size_t(c) * d + l];
                }
                gmm.covariances[(size_t(j) * d + r) * d + c] = float(s);
            }
        }
    }
    const std::vector<float> before = gmm.covariances;
    gmm.update_precision_cholesky(0.5f);
    gmm.check_consistency();
    for (int j = 0; j < k; j++) {
        const float* cov = gmm.covariances.data() + size_t(j) * d * d;
        const float* u = gmm.precision_cholesky.data() + size_t(j) * d * d;
        double log_det = 0;
        for (int a = 0; a < d; a++) {
            // the diagonal gained exactly 0.5, nothing else moved
            for (int c = 0; c < d; c++) {
                EXPECT_EQ(
                    cov[a * d + c],
                    before[size_t(j) * d * d + a * d + c] +
                        (a == c ? 0.5f : 0.f));
            }
            EXPECT_EQ(gmm.variances[size_t(j) * d + a], cov[a * d + a]);
            log_det += std::log(double(u[a * d + a]));
            for (int c = 0; c < a; c++) {
                EXPECT_EQ(u[a * d + c], 0.0f) << "U not upper triangular";
            }
        }
        EXPECT_NEAR(gmm.log_det_cholesky[j], log_det, 1e-5 * std::abs(log_det));
        // U U^T Sigma = I
        double worst = 0;
        for (int a = 0; a < d; a++) {
            for (int c = 0; c < d; c++) {
                double s = 0;
                for (int m = 0; m < d; m++) {
                    double p = 0; // (U U^T)_am
                    for (int l = 0; l < d; l++) {
                        p += double(u[a * d + l]) * u[m * d + l];
                    }
                    s += p * cov[m * d + c];
                }
                worst = std::max(worst, std::abs(s - (a == c ? 1.0 : 0.0)));
            }
        }
        EXPECT_LT(worst, 1e-4) << "component " << j;
        // -1/2 log det Sigma from the test's own factorisation
        std::vector<double> l(cov, cov + d * d);
        ASSERT_TRUE(cholesky_lower(d, &l));
        double half_log_det = 0;
        for (int a = 0; a < d; a++) {
            half_log_det -= std::log(l[size_t(a) * d + a]);
        }
        EXPECT_NEAR(gmm.log_det_cholesky[j], half_log_det, 1e-4);
    }
    // a full model with diagonal covariances scores as the diagonal model
    GaussianMixture full(d, k, CovarianceType::Full);
    GaussianMixture diag(d, k, CovarianceType::Diagonal);
    std::uniform_real_distribution<float> unit(0.2f, 3.0f);
    for (int j = 0; j < k; j++) {
        full.weights[j] = diag.weights[j] = j == 0 ? 0.5f : 0.25f;
        for (int l = 0; l < d; l++) {
            const float v = unit(rng);
            diag.variances[size_t(j) * d + l] = v;
            full.covariances[(size_t(j) * d + l) * d + l] = v;
            full.means[size_t(j) * d + l] = diag.means[size_t(j) * d + l] =
                float(normal(rng));
        }
    }
    full.update_precision_cholesky();
    full.is_trained = diag.is_trained = true;
    std::vector<float> x = make_blobs(500, d, 3, 4);
    std::vector<float> a(500 * k), b(500 * k);
    full.log_joint(500, x.data(), a.data());
    diag.log_joint(500, x.data(), b.data());
    for (size_t i = 0; i < a.size(); i++) {
        EXPECT_NEAR(a[i], b[i], 1e-4 * (1 + std::abs(b[i])));
    }
}

TEST(GaussianMixtureFull, ManyComponentsFactorAsOneAtATime) {
    // k d^2 = 2^20: the factorisations run in an OpenMP team
    // (impl::lapack_per_component_in_team) and give each component's
    // one-component result; the error names the first bad component.
    const int d = 128, k = 64;
    GaussianMixture many(d, k, CovarianceType::Full);
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    for (int j = 0; j < k; j++) {
        float* cov = many.covariances.data() + size_t(j) * d * d;
        for (int r = 0; r < d; r++) {
            for (int c = 0; c < r; c++) {
                cov[r * d + c] = cov[c * d + r] = 0.02f * normal(rng);
            }
            cov[r * d + r] = 1.0f + 0.05f * float(j % 5);
        }
    }
    const std::vector<float> covariances = many.covariances;
    many.update_precision_cholesky();
    for (int j : {0, 17, 63}) {
        GaussianMixture one(d, 1, CovarianceType::Full);
        std::copy(
            covariances.begin() + size_t(j) * d * d,
            covariances.begin() + size_t(j + 1) * d * d,
            one.covariances.begin());
        one.update_precision_cholesky();
        for (size_t e = 0; e < size_t(d) * d; e++) {
            // equal up to the BLAS's own threading of one factorisation
            const float v = one.precision_cholesky[e];
            ASSERT_NEAR(
                many.precision_cholesky[size_t(j) * d * d + e],
                v,
                1e-5f * (1 + std::abs(v)))
                << "component " << j << " value " << e;
        }
        EXPECT_NEAR(one.log_det_cholesky[0], many.log_det_cholesky[j], 1e-4);
    }
    GaussianMixture bad(d, k, CovarianceType::Full);
    bad.covariances = covariances;
    for (int j : {40, 5, 50}) {
        float* cov = bad.covariances.data() + size_t(j) * d * d;
        cov[0 * d + 1] = cov[1 * d + 0] = 3.0f; // not positive definite
    }
    const std::string msg =
        exception_message([&] { bad.update_precision_cholesky(); });
    EXPECT_NE(msg.find("component 5 "), std::string::npos) << msg;
}

TEST(GaussianMixtureFull, ErrorsNameTheComponentAndSizes) {
    const int d = 4, k = 3;
    GaussianMixture gmm(d, k, CovarianceType::Full);
    // component 2: eigenvalues 3 and -1 in its first two dimensions
    float* cov = gmm.covariances.data() + 2 * d * d;
    cov[0 * d + 1] = cov[1 * d + 0] = 2.0f;
    std::string msg =
        exception_message([&] { gmm.update_precision_cholesky(); });
    EXPECT_NE(msg.find("component 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not positive definite"), std::string::npos) << msg;
    EXPECT_NE(msg.find("leading minor 2"), std::string::npos) << msg;
    // enough regularisation makes it positive definite
    gmm.update_precision_cholesky(1.5f);
    gmm.check_consistency();

    // a non-symmetric covariance is named by check_consistency
    GaussianMixture asym(d, k, CovarianceType::Full);
    asym.covariances[1 * d * d + 0 * d + 3] = 0.5f;
    msg = exception_message([&] { asym.check_consistency(); });
    EXPECT_NE(msg.find("component 1 is not symmetric"), std::string::npos)
        << msg;
    // stale factors (covariances changed without update) are refused
    GaussianMixture stale(d, k, CovarianceType::Full);
    stale.precision_cholesky.clear();
    msg = exception_message([&] { stale.check_consistency(); });
    EXPECT_NE(msg.find("update_precision_cholesky"), std::string::npos) << msg;
    // only full models have factors
    GaussianMixture sph(d, k, CovarianceType::Spherical);
    msg = exception_message([&] { sph.update_precision_cholesky(); });
    EXPECT_NE(msg.find("spherical covariance, not full"), std::string::npos)
        << msg;

    // memory: 1024 components in 32768 dimensions = 4 TiB of covariances
    msg = exception_message(
        [] { GaussianMixture big(32768, 1024, CovarianceType::Full); });
    EXPECT_NE(msg.find("k = 1024"), std::string::npos) << msg;
    EXPECT_NE(msg.find("d = 32768"), std::string::npos) << msg;
    EXPECT_NE(msg.find("4.1e+03 GiB"), std::string::npos) << msg;
    msg = exception_message(
        [] { GmmSufficientStats big(32768, 1024, CovarianceType::Full); });
    EXPECT_NE(msg.find("k = 1024"), std::string::npos) << msg;

    // degenerate data: a component whose points lie on a line is kept
    // positive definite by the floor added to its diagonal
    const idx_t n = 400;
    std::vector<float> line(size_t(n) * d, 0.0f);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0, 1);
    for (idx_t i = 0; i < n; i++) {
        const float t = normal(rng);
        for (int l = 0; l < d; l++) {
            line[i * d + l] = (i % 2 ? 10.0f : -10.0f) + t * (l + 1);
        }
    }
    GmmParameters params;
    params.covariance = CovarianceType::Full;
    params.niter = 5;
    GaussianMixture degenerate(d, 2, CovarianceType::Full);
    degenerate.train(n, line.data(), params);
    degenerate.check_consistency();
    EXPECT_TRUE(model_is_finite(degenerate));
}

TEST(GaussianMixtureFull, EStepStatisticsMatchFloat64AndBlockSize) {
    const int d = 6, k = 5;
    const idx_t n = 1500;
    std::vector<float> x = make_correlated_blobs(n, d, 3, 31);
    for (auto& v : x) {
        v += 300; // far from the origin: the centring matters
    }
    GmmParameters params;
    params.covariance = CovarianceType::Full;
    params.init = GmmInit::Random;
    GaussianMixture model(d, k, CovarianceType::Full);
    initialize_gmm(&model, n, x.data(), params);
    FullReferenceEM ref(model);
    std::vector<double> r;
    const double ll = ref.e_step(n, x.data(), &r);
    GmmSufficientStats first;
    for (int64_t bs : {int64_t(1), int64_t(97), int64_t(4096)}) {
        GmmSufficientStats stats(d, k, CovarianceType::Full);
        CpuEStep estep(n, x.data(), d, bs);
        estep.compute(model, &stats);
        EXPECT_EQ(stats.n, n);
        EXPECT_NEAR(stats.log_likelihood / n, ll, 1e-5 * std::abs(ll));
        for (int j = 0; j < k; j++) {
            double nk = 0;
            std::vector<double> s(size_t(d) * d, 0.0);
            const float* mu = model.means.data() + size_t(j) * d;
            for (idx_t i = 0; i < n; i++) {
                nk += r[i * k + j];
                for (int a = 0; a < d; a++) {
                    for (int b = 0; b < d; b++) {
                        s[size_t(a) * d + b] += r[i * k + j] *
                                                (double(x[i * d + a]) - mu[a]) *
                                                (double(x[i * d + b]) - mu[b]);
                    }
                }
            }
            EXPECT_NEAR(stats.count[j], nk, 1e-4 * n) << "component " << j;
            for (int a = 0; a < d; a++) {
                for (int b = 0; b < d; b++) {
                    const double got =
                        stats.sum_outer[(size_t(j) * d + a) * d + b];
                    EXPECT_EQ(
                        got, stats.sum_outer[(size_t(j) * d + b) * d + a]);
                    EXPECT_NEAR(
                        got,
                        s[size_t(a) * d + b],
                        1e-4 * std::sqrt(
                                   s[size_t(a) * d + a] *
                                   s[size_t(b) * d + b]) +
                            1e-6)
                        << "component " << j << " (" << a << ", " << b << ")";
                }
            }
        }
        // statistics merge: two halves add up to the whole
        if (bs == 97) {
            GmmSufficientStats half1(d, k, CovarianceType::Full),
                half2(d, k, CovarianceType::Full);
            CpuEStep e1(n / 2, x.data(), d, bs);
            CpuEStep e2(n - n / 2, x.data() + size_t(n / 2) * d, d, bs);
            e1.compute(model, &half1);
            e2.compute(model, &half2);
            half1.merge(half2);
            for (size_t e = 0; e < stats.sum_outer.size(); e++) {
                EXPECT_NEAR(
                    half1.sum_outer[e],
                    stats.sum_outer[e],
                    1e-6 * (1 + std::abs(stats.sum_outer[e])));
            }
        }
    }
}

TEST(GaussianMixtureFull, ReseedsEmptyComponentAndScoresEverywhere) {
    const int d = 5, k = 6;
    const idx_t n = 1200;
    // three tight clusters for six components: some empty after init
    std::vector<float> x = make_correlated_blobs(n, d, 3, 41);
    GmmParameters params;
    params.covariance = CovarianceType::Full;
    params.init = GmmInit::Random;
    params.niter = 15;
    params.min_component_count = 50;
    params.seed = 2;
    GaussianMixture gmm(d, k, CovarianceType::Full);
    gmm.train(n, x.data(), params);
    gmm.check_consistency();
    EXPECT_TRUE(model_is_finite(gmm));
    int reseeded = 0;
    for (const auto& s : gmm.iteration_stats) {
        reseeded += s.n_reseeded;
    }
    printf("full: %d components re-seeded\n", reseeded);
    // top posteriors and log-density agree with the log-joint
    std::vector<float> lj(size_t(n) * k), dens(n), post(size_t(n) * 2);
    std::vector<idx_t> comp(size_t(n) * 2);
    gmm.log_joint(n, x.data(), lj.data());
    gmm.log_density(n, x.data(), dens.data());
    gmm.top_posteriors(n, x.data(), 2, post.data(), comp.data());
    for (idx_t i = 0; i < n; i++) {
        const float* row = lj.data() + i * k;
        const int best = int(std::max_element(row, row + k) - row);
        EXPECT_EQ(comp[i * 2], best);
        double s = 0;
        for (int j = 0; j < k; j++) {
            s += std::exp(double(row[j]) - row[best]);
        }
        EXPECT_NEAR(
            dens[i], row[best] + std::log(s), 1e-4 * (1 + std::abs(dens[i])));
        EXPECT_NEAR(post[i * 2], std::exp(row[best] - dens[i]), 1e-4);
    }
    EXPECT_EQ(gmm.n_parameters(), size_t(k - 1 + k * d + k * d * (d + 1) / 2));
}

/**
 * Real SIFT (sift-debian-a, skipped when absent): full-covariance EM on
 * 2000 x 128 descriptors, K = 6, 20 iterations, against the float64
 * textbook EM from the same initial model. Documented tolerances, with the
 * deviations measured 2026-12-07 in brackets (printed by the test): mean
 * log-likelihood 1e-6 relative per iteration (1.9e-8), weights 1e-5
 * absolute (2.6e-8: SIFT's components barely overlap in 128 dimensions),
 * means 1e-3 absolute at values 0..255 (1.3e-5), covariance entries 1e-4 of
 * sqrt(Sigma_aa Sigma_bb) (4.2e-6).
 */
TEST(GaussianMixtureFull, RealSiftEmMatchesFloat64Reference) {
    const std::string path =
        std::string(FAISS_GMM_SHARED_DATASETS) + "/sift-debian-a/base.bvecs";
    int d = 0;
    std::vector<float> x = read_bvecs_prefix(path, 2000, &d);
    if (x.empty()) {
        GTEST_SKIP() << "real SIFT data not found at " << path
                     << " (../shared/datasets is not shipped with the project)";
    }
    const idx_t n = idx_t(x.size() / d);
    const int k = 6;
    GmmParameters params;
    params.covariance = CovarianceType::Full;
    params.init = GmmInit::KMeansPlusPlus;
    params.niter = 20;
    params.tol = 0;
    params.min_component_count = 1e-6;
    GaussianMixture model(d, k, CovarianceType::Full);
    initialize_gmm(&model, n, x.data(), params);
    FullReferenceEM ref(model);
    CpuEStep estep(n, x.data(), d, 512);
    run_em(&model, &estep, params);
    ASSERT_EQ(model.iteration_stats.size(), size_t(params.niter));
    const ReferenceDeviation dev =
        replay_reference(ref, model, params.niter, n, x.data());
    printf(
        "SIFT %ld x %d, k = %d, full EM vs float64 reference after %d "
        "iterations: last log-lik %.4f (reference %.4f), worst %.2e rel "
        "(allowed 1e-6), weights %.2e (1e-5), means %.2e (1e-3), "
        "covariances %.2e (1e-4)\n",
        long(n),
        d,
        k,
        params.niter,
        model.iteration_stats.back().log_likelihood,
        dev.ll.back(),
        dev.worst_ll,
        dev.worst_w,
        dev.worst_mu,
        dev.worst_cov);
    EXPECT_LE(dev.worst_ll, 1e-6);
    EXPECT_LE(dev.worst_w, 1e-5);
    EXPECT_LE(dev.worst_mu, 1e-3);
    EXPECT_LE(dev.worst_cov, 1e-4);
    model.check_consistency();
}
