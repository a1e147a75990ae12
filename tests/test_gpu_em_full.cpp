/**
 * The full-covariance GPU E-step (kernels/gmm_estep_full.h, driven by
 * faiss_gmm/gpu/impl/GpuEStepFull.cpp) against a float64 reference written
 * here from the definitions (Cholesky of each covariance in double), and
 * the device EM loop against the CPU EM from the same initial model. The
 * host-side policy (feature layout, chunk rows, folding, precision) is
 * tested without a device; every other test skips when no CUDA device is
 * usable.
 *
 * Tolerances (relative L2 error of N_k, sum r x and the second moments
 * about the means against float64; log-likelihood error in nats per
 * point). Not yet measured on a device: set from the other E-steps' and
 * the arithmetic, to be tightened to about 3x the first H100 run's errors:
 *   fp32: 1e-4 / 1e-4. The factors U_j are float (computed in double by
 *         update_precision_cholesky, rounded), Z and the statistics
 *         products accumulate in fp32 over at most 64k rows.
 *   tf32 (and bf16, which runs as tf32 for full models): 5e-2 / 5e-2.
 *         x' and U_j enter the whitening product with 10-bit mantissas:
 *         z = x'^T U_j carries about 2^-11 |x'| |U_j| of error before
 *         z - o_j cancels, as the diagonal GEMM path's logits do.
 * EM (20 iterations from one initial model, tol = 0): the mean
 * log-likelihood of every iteration within 1e-4 (fp32) / 5e-3 (tf32)
 * relative of the CPU EM's, and the final means within 1e-2 relative L2.
 */

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmEM.h>
#include <faiss_gmm/GmmSufficientStats.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/impl/GpuEStepFullPlan.h>
#include <kernels/gmm_estep_full.h>

#include "test_utils.h"

using namespace faiss_gmm;
using faiss_gmm::gpu::EStepPrecision;

namespace {

/// Lower Cholesky factor of the d x d SPD matrix a (double, row-major).
std::vector<double> cholesky_lower(const double* a, int d) {
    std::vector<double> l(size_t(d) * d, 0.0);
    for (int i = 0; i < d; i++) {
        for (int j = 0; j <= i; j++) {
            double s = a[size_t(i) * d + j];
            for (int t = 0; t < j; t++) {
                s -= l[size_t(i) * d + t] * l[size_t(j) * d + t];
            }
            if (i == j) {
                EXPECT_GT(s, 0) << "not positive definite";
                l[size_t(i) * d + i] = std::sqrt(s);
            } else {
                l[size_t(i) * d + j] = s / l[size_t(j) * d + j];
            }
        }
    }
    return l;
}

/**
 * A full-covariance model: weights 0.3..2 (normalised), means 5 +
 * mean_spread N(0, 1) per coordinate (the offset exercises the centring),
 * covariances A A^T / d + diag(0.3 .. 1) with A standard normal (random
 * orientations, condition numbers of a few tens, sigma about 1), factors
 * by update_precision_cholesky.
 */
GaussianMixture
random_full_model(int d, int k, uint64_t seed, double mean_spread = 1.5) {
    GaussianMixture model(d, k, CovarianceType::Full);
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    std::uniform_real_distribution<double> uni(0.3, 1.0);
    double wsum = 0;
    std::vector<double> w(k);
    for (int j = 0; j < k; j++) {
        w[j] = 0.3 + 1.7 * uni(rng);
        wsum += w[j];
    }
    for (int j = 0; j < k; j++) {
        model.weights[j] = float(w[j] / wsum);
    }
    for (auto& m : model.means) {
        m = float(5.0 + mean_spread * normal(rng));
    }
    std::vector<double> a(size_t(d) * d);
    for (int j = 0; j < k; j++) {
        for (auto& v : a) {
            v = normal(rng);
        }
        float* cov = model.covariances.data() + size_t(j) * d * d;
        for (int r = 0; r < d; r++) {
            for (int c = 0; c <= r; c++) {
                double s = 0;
                for (int t = 0; t < d; t++) {
                    s += a[size_t(r) * d + t] * a[size_t(c) * d + t];
                }
                s /= d;
                if (r == c) {
                    s += uni(rng);
                }
                cov[size_t(r) * d + c] = cov[size_t(c) * d + r] = float(s);
            }
        }
    }
    model.update_precision_cholesky(0);
    model.is_trained = true;
    return model;
}

/// n points drawn from the model: x = mu_j + L_j e, e standard normal.
std::vector<float>
sample_full(const GaussianMixture& model, idx_t n, uint64_t seed) {
    const int d = model.d, k = model.k;
    std::vector<std::vector<double>> chol(k);
    for (int j = 0; j < k; j++) {
        std::vector<double> a(
            model.covariances.begin() + size_t(j) * d * d,
            model.covariances.begin() + size_t(j + 1) * d * d);
        chol[j] = cholesky_lower(a.data(), d);
    }
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    std::discrete_distribution<int> comp(
        model.weights.begin(), model.weights.end());
    std::vector<float> x(size_t(n) * d);
    std::vector<double> e(d);
    for (idx_t i = 0; i < n; i++) {
        const int j = comp(rng);
        for (auto& v : e) {
            v = normal(rng);
        }
        for (int r = 0; r < d; r++) {
            double s = model.means[size_t(j) * d + r];
            for (int c = 0; c <= r; c++) {
                s += chol[j][size_t(r) * d + c] * e[c];
            }
            x[size_t(i) * d + r] = float(s);
        }
    }
    return x;
}

/**
 * The E-step in float64 from the covariances (not the model's float
 * factors): log N through the lower Cholesky factor L_j of Sigma_j
 * (forward substitution), the second moments about the means.
 */
GmmSufficientStats
reference_full_stats(const GaussianMixture& model, idx_t n, const float* x) {
    const int d = model.d, k = model.k;
    GmmSufficientStats s(d, k, CovarianceType::Full);
    std::vector<std::vector<double>> chol(k);
    std::vector<double> cst(k);
    for (int j = 0; j < k; j++) {
        std::vector<double> a(
            model.covariances.begin() + size_t(j) * d * d,
            model.covariances.begin() + size_t(j + 1) * d * d);
        chol[j] = cholesky_lower(a.data(), d);
        double logdet = 0;
        for (int l = 0; l < d; l++) {
            logdet += std::log(chol[j][size_t(l) * d + l]);
        }
        cst[j] = std::log(double(model.weights[j])) - logdet -
                 0.5 * d * std::log(2 * M_PI);
    }
    std::vector<double> logit(k), diff(d), y(d);
    for (idx_t i = 0; i < n; i++) {
        const float* xi = x + size_t(i) * d;
        double mx = -INFINITY;
        for (int j = 0; j < k; j++) {
            const std::vector<double>& lj = chol[j];
            double q = 0;
            for (int r = 0; r < d; r++) {
                double v = double(xi[r]) - model.means[size_t(j) * d + r];
                for (int c = 0; c < r; c++) {
                    v -= lj[size_t(r) * d + c] * y[c];
                }
                y[r] = v / lj[size_t(r) * d + r];
                q += y[r] * y[r];
            }
            logit[j] = cst[j] - 0.5 * q;
            mx = std::max(mx, logit[j]);
        }
        double z = 0;
        for (int j = 0; j < k; j++) {
            z += std::exp(logit[j] - mx);
        }
        const double lz = mx + std::log(z);
        s.log_likelihood += lz;
        for (int j = 0; j < k; j++) {
            const double r = std::exp(logit[j] - lz);
            s.count[j] += r;
            for (int l = 0; l < d; l++) {
                diff[l] = double(xi[l]) - model.means[size_t(j) * d + l];
                s.sum_x[size_t(j) * d + l] += r * xi[l];
            }
            double* so = s.sum_outer.data() + size_t(j) * d * d;
            for (int a = 0; a < d; a++) {
                for (int b = 0; b < d; b++) {
                    so[size_t(a) * d + b] += r * diff[a] * diff[b];
                }
            }
        }
    }
    s.n = n;
    return s;
}

double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    EXPECT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size() && i < b.size(); i++) {
        if (!std::isfinite(a[i])) {
            return INFINITY;
        }
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-300));
}

struct Tolerance {
    double stats, ll;
};

Tolerance tolerance(EStepPrecision p) {
    return p == EStepPrecision::FP32 ? Tolerance{1e-4, 1e-4}
                                     : Tolerance{5e-2, 5e-2};
}

void expect_close(
    const GmmSufficientStats& g,
    const GmmSufficientStats& r,
    Tolerance tol,
    const std::string& what) {
    ASSERT_EQ(g.n, r.n) << what;
    const double e_count = rel_err(g.count, r.count);
    const double e_sum = rel_err(g.sum_x, r.sum_x);
    const double e_outer = rel_err(g.sum_outer, r.sum_outer);
    const double e_ll = std::fabs(g.log_likelihood - r.log_likelihood) / r.n;
    printf(
        "%-44s count %.2e sum_x %.2e sum_outer %.2e ll/pt %.2e\n",
        what.c_str(),
        e_count,
        e_sum,
        e_outer,
        e_ll);
    EXPECT_LE(e_count, tol.stats) << what;
    EXPECT_LE(e_sum, tol.stats) << what;
    EXPECT_LE(e_outer, tol.stats) << what;
    EXPECT_LE(e_ll, tol.ll) << what;
}

/// The GPU E-step's statistics of the model over x (host data; chunk_rows
/// > 0 streams it in chunks of that many rows).
GmmSufficientStats gpu_full_stats(
    const GaussianMixture& model,
    idx_t n,
    const float* x,
    EStepPrecision p,
    idx_t chunk_rows = 0) {
    gpu::GpuEmConfig config;
    config.precision = p;
    config.chunk_rows = chunk_rows;
    gpu::GpuEStep estep(n, x, model.d, false, config);
    GmmSufficientStats s(model.d, model.k, model.covariance);
    estep.compute(model, &s);
    return s;
}

void check_full_shape(
    idx_t n,
    int d,
    int k,
    uint64_t seed,
    idx_t chunk = 0,
    double mean_spread = 1.5) {
    const GaussianMixture model = random_full_model(d, k, seed, mean_spread);
    const std::vector<float> x = sample_full(model, n, seed + 1);
    const GmmSufficientStats ref = reference_full_stats(model, n, x.data());
    for (EStepPrecision p :
         {EStepPrecision::FP32, EStepPrecision::TF32, EStepPrecision::BF16}) {
        const GmmSufficientStats g =
            gpu_full_stats(model, n, x.data(), p, chunk);
        char what[128];
        snprintf(
            what,
            sizeof(what),
            "full n=%ld d=%d k=%d chunk=%ld spread=%g %s",
            long(n),
            d,
            k,
            long(chunk),
            mean_spread,
            gpu::estep_precision_name(p));
        expect_close(g, ref, tolerance(p), what);
    }
}

} // namespace

// ---------------------------------------------------------------------------
// Host-side policy: no device needed.

TEST(GpuEStepFullPlan, FeatureLayout) {
    for (int d : {1, 2, 3, 4, 13, 16, 128, 130, 1024}) {
        const kernels::FullFeatureLayout lay =
            kernels::estep_full_feature_layout(d);
        EXPECT_EQ(lay.one, d);
        EXPECT_GE(lay.cols, d + 1);
        EXPECT_LT(lay.cols, d + 5);
        EXPECT_EQ(lay.cols % 4, 0) << d;
        // S (k rows of cols) then M (k blocks of d x d)
        EXPECT_EQ(
            kernels::estep_full_statistics_values(d, 3),
            int64_t(3) * lay.cols + int64_t(3) * d * d);
        const int d_pad = kernels::estep_full_padded_dim(d);
        EXPECT_GE(d_pad, d);
        EXPECT_EQ(d_pad % kernels::kEStepFullDimAlign, 0);
        EXPECT_LT(d_pad, d + kernels::kEStepFullDimAlign);
    }
    // d = 128, K = 1024: Z 512 KiB, R 4 KiB, features 132 floats, ln Z.
    const int64_t rb = kernels::estep_full_row_bytes(128, 1024);
    EXPECT_EQ(rb, int64_t(1024) * 128 * 4 + 1024 * 4 + 132 * 4 + 8);
}

TEST(GpuEStepFullPlan, ChunkRows) {
    using gpu::detail::full_estep_chunk_rows;
    const int64_t rb = kernels::estep_full_row_bytes(128, 1024);
    // 1 GiB of chunk buffers at d = 128, K = 1024: 1984 rows.
    EXPECT_EQ(
        full_estep_chunk_rows(rb, gpu::detail::kFullChunkBytes, 1000000), 1984);
    EXPECT_EQ(
        full_estep_chunk_rows(rb, gpu::detail::kFullChunkBytes, 1000), 1000);
    // Multiples of 64 from 64 rows on, at least one row.
    EXPECT_EQ(full_estep_chunk_rows(100, 100 * 130, 1 << 20), 128);
    EXPECT_EQ(full_estep_chunk_rows(100, 100 * 63, 1 << 20), 63);
    EXPECT_EQ(full_estep_chunk_rows(100, 50, 1 << 20), 1);
    EXPECT_EQ(full_estep_chunk_rows(100, 0, 0), 1);
    // Never more than the rows of a pass, nor than kFullFoldRows.
    EXPECT_EQ(full_estep_chunk_rows(100, 100 * 1000, 70), 70);
    EXPECT_EQ(
        full_estep_chunk_rows(100, size_t(1) << 40, idx_t(1) << 30),
        gpu::detail::kFullFoldRows);
    EXPECT_EQ(
        gpu::detail::full_estep_chunk_budget(size_t(8) << 30),
        gpu::detail::kFullChunkBytes);
    EXPECT_EQ(gpu::detail::full_estep_chunk_budget(1000), 500u);
    // Folded before a chunk that would take the product past kFullFoldRows
    // rows, never when it is empty.
    using gpu::detail::full_estep_must_fold;
    using gpu::detail::kFullFoldRows;
    EXPECT_FALSE(full_estep_must_fold(0, kFullFoldRows));
    EXPECT_FALSE(full_estep_must_fold(kFullFoldRows - 100, 100));
    EXPECT_TRUE(full_estep_must_fold(kFullFoldRows - 100, 101));
    EXPECT_TRUE(full_estep_must_fold(40000, 40000));
}

TEST(GpuEStepFullPlan, Precision) {
    using gpu::detail::full_estep_precision;
    EXPECT_EQ(full_estep_precision(EStepPrecision::FP32), EStepPrecision::FP32);
    EXPECT_EQ(full_estep_precision(EStepPrecision::TF32), EStepPrecision::TF32);
    EXPECT_EQ(full_estep_precision(EStepPrecision::BF16), EStepPrecision::TF32);
}

TEST(GpuEStepFullPlan, FactorValueAsTheProductRoundsIt) {
    using gpu::detail::full_estep_factor_value;
    // 1 + 2^-11 is a tie between tf32 neighbours 1 and 1 + 2^-10: away
    // from zero; 1 + 2^-12 rounds down; FP32 keeps every value.
    const float tie = 1.0f + std::ldexp(1.0f, -11);
    EXPECT_EQ(
        full_estep_factor_value(tie, EStepPrecision::TF32),
        1.0f + std::ldexp(1.0f, -10));
    EXPECT_EQ(
        full_estep_factor_value(-tie, EStepPrecision::BF16),
        -(1.0f + std::ldexp(1.0f, -10)));
    EXPECT_EQ(
        full_estep_factor_value(
            1.0f + std::ldexp(1.0f, -12), EStepPrecision::TF32),
        1.0f);
    EXPECT_EQ(full_estep_factor_value(tie, EStepPrecision::FP32), tie);
    EXPECT_TRUE(
        std::isinf(full_estep_factor_value(INFINITY, EStepPrecision::TF32)));
}

TEST(GpuEStepFullPlan, UnwhitenedMomentsInvertTheWhitening) {
    // M = U^T S U for a random SPD S and the factor U of a random model:
    // add_unwhitened_moments gives back S (added to what out holds).
    const int d = 7;
    const GaussianMixture model = random_full_model(d, 1, 5);
    std::vector<double> u(
        model.precision_cholesky.begin(), model.precision_cholesky.end());
    std::mt19937_64 rng(6);
    std::normal_distribution<double> normal;
    std::vector<double> a(size_t(d) * d), s(size_t(d) * d, 0.0);
    for (auto& v : a) {
        v = normal(rng);
    }
    for (int r = 0; r < d; r++) {
        for (int c = 0; c < d; c++) {
            for (int t = 0; t < d; t++) {
                s[size_t(r) * d + c] +=
                    a[size_t(r) * d + t] * a[size_t(c) * d + t];
            }
        }
    }
    // M = U^T S U (U row-major upper triangular)
    std::vector<double> su(size_t(d) * d, 0.0), m(size_t(d) * d, 0.0);
    for (int r = 0; r < d; r++) {
        for (int c = 0; c < d; c++) {
            for (int t = 0; t <= c; t++) {
                su[size_t(r) * d + c] +=
                    s[size_t(r) * d + t] * u[size_t(t) * d + c];
            }
        }
    }
    for (int r = 0; r < d; r++) {
        for (int c = 0; c < d; c++) {
            for (int t = 0; t <= r; t++) {
                m[size_t(r) * d + c] +=
                    u[size_t(t) * d + r] * su[size_t(t) * d + c];
            }
        }
    }
    std::vector<double> out(size_t(d) * d, 1.0);
    gpu::detail::add_unwhitened_moments(d, u.data(), m.data(), out.data());
    for (size_t e = 0; e < out.size(); e++) {
        EXPECT_NEAR(out[e], 1.0 + s[e], 1e-9 * (1.0 + std::fabs(s[e]))) << e;
    }
}

TEST(GpuEStepFullPlan, LaunchersRefuseBadArguments) {
    // Argument checks run before any launch: no device needed.
    kernels::FullEStepModel m;
    float dummy[4] = {0, 0, 0, 0};
    m.d = 4;
    m.k = 2;
    m.products = m.offsets = m.log2_const = m.center = dummy;
    m.math = kernels::EStepMath::BF16;
    EXPECT_EQ(
        kernels::gmm_estep_full_features(m, 1, dummy, dummy, nullptr),
        cudaErrorInvalidValue);
    m.math = kernels::EStepMath::FP32;
    m.d = kernels::kEStepFullMaxDim + 1;
    EXPECT_EQ(
        kernels::gmm_estep_full_features(m, 1, dummy, dummy, nullptr),
        cudaErrorInvalidValue);
    m.d = 4;
    EXPECT_EQ(
        kernels::gmm_estep_full_features(m, -1, dummy, dummy, nullptr),
        cudaErrorInvalidValue);
    EXPECT_EQ(
        kernels::gmm_estep_full_features(m, 1, nullptr, dummy, nullptr),
        cudaErrorInvalidValue);
    EXPECT_EQ(
        kernels::gmm_estep_full_responsibilities(
            m, 1, dummy, nullptr, nullptr, nullptr, nullptr),
        cudaErrorInvalidValue);
    EXPECT_EQ(
        kernels::gmm_estep_full_weighted_residuals(
            m, 1, nullptr, dummy, nullptr),
        cudaErrorInvalidValue);
    EXPECT_EQ(
        kernels::gmm_estep_full_weighted_residuals(
            m, -1, dummy, dummy, nullptr),
        cudaErrorInvalidValue);
    EXPECT_EQ(
        kernels::gmm_estep_full_add_statistics(-1, nullptr, nullptr, nullptr),
        cudaErrorInvalidValue);
    EXPECT_EQ(
        kernels::gmm_estep_full_prepare_model(
            4,
            0,
            kernels::EStepMath::FP32,
            dummy,
            dummy,
            dummy,
            dummy,
            dummy,
            dummy,
            dummy,
            nullptr),
        cudaErrorInvalidValue);
}

// ---------------------------------------------------------------------------
// On a device.

TEST(GpuEStepFull, StatisticsSmall) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    check_full_shape(3000, 16, 8, 11);
}

TEST(GpuEStepFull, StatisticsOddShapes) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    check_full_shape(1000, 13, 5, 21); // d not a multiple of 4
    check_full_shape(800, 40, 3, 31);  // 16 lanes per component
    check_full_shape(500, 130, 3, 41); // two float4 slots for some lanes
    check_full_shape(50, 3, 1, 51);    // one component
}

TEST(GpuEStepFull, StatisticsStreamedChunks) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    // host data streamed in chunks of 700 rows (the statistics product
    // accumulates across chunks with beta = 1)
    check_full_shape(3000, 16, 8, 61, 700);
}

TEST(GpuEStepFull, StatisticsFoldedAcrossRows) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    // more rows than kFullFoldRows: three chunks, the fp32 product folded
    // into the double accumulator after each and restarted (beta = 0)
    check_full_shape(gpu::detail::kFullFoldRows * 2 + 1000, 5, 4, 71);
}

TEST(GpuEStepFull, StatisticsWellSeparatedComponents) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    // Means about 30 sigma from the mixture's centre: second moments taken
    // about the one centre and moved to each mean would lose (30)^2 x 2^-11
    // of the covariance in tf32; the whitened residuals keep the usual
    // tolerance (kernels/gmm_estep_full.h, step 6).
    check_full_shape(4000, 16, 8, 111, 0, 30.0);
    check_full_shape(3000, 64, 4, 121, 0, 30.0);
    // what the first design broke: the M-step's Cholesky factorisation of
    // covariances from tf32 statistics
    const GaussianMixture model = random_full_model(64, 4, 121, 30.0);
    const std::vector<float> x = sample_full(model, 3000, 122);
    const GmmSufficientStats g =
        gpu_full_stats(model, 3000, x.data(), EStepPrecision::TF32);
    GaussianMixture updated = model;
    GmmParameters params;
    params.covariance = CovarianceType::Full;
    EXPECT_NO_THROW(gmm_m_step(&updated, g, params, 0));
}

TEST(GpuEStepFull, BudgetBelowTheModelIsAnError) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    // d = 128, k = 1024: the factors, the product matrix (64 MiB each) and
    // the statistics (1024 x (128 x 128 + 129) x 12 bytes, 190 MiB) exceed
    // a 256 MiB budget that the E-step's own plan (its reserve for a
    // diagonal model of 4096 components, the chunks of 2000 host rows) fits.
    const int d = 128, k = 1024;
    const GaussianMixture model = random_full_model(d, k, 131);
    const std::vector<float> x = sample_full(model, 2000, 132);
    gpu::GpuEmConfig config;
    config.max_device_memory = size_t(256) << 20;
    gpu::GpuEStep estep(2000, x.data(), d, false, config);
    GmmSufficientStats s(d, k, CovarianceType::Full);
    try {
        estep.compute(model, &s);
        ADD_FAILURE() << "a 256 MiB budget held the full-covariance buffers";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(
            std::string(e.what()).find("full-covariance model"),
            std::string::npos)
            << e.what();
    }
}

TEST(GpuEStepFull, DeviceStatisticsAndMStep) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const GaussianMixture model = random_full_model(12, 6, 81);
    const idx_t n = 2000;
    const std::vector<float> x = sample_full(model, n, 82);
    gpu::GpuEmConfig config;
    config.precision = EStepPrecision::FP32;
    gpu::GpuEStep estep(n, x.data(), model.d, false, config);
    EXPECT_EQ(estep.launch(model), n);
    const gpu::GpuEStep::DeviceStatistics ds = estep.device_statistics();
    EXPECT_NE(ds.count, nullptr);
    EXPECT_EQ(ds.sum1_size, 0u);
    EXPECT_EQ(ds.sum2_size, 0u);
    EXPECT_EQ(
        ds.count_size,
        size_t(kernels::estep_full_statistics_values(model.d, model.k)));
    // The device_m_step of a full model: the host M-step on the statistics.
    GmmParameters params;
    params.covariance = CovarianceType::Full;
    GaussianMixture gpu_model = model;
    ASSERT_EQ(estep.device_m_step(&gpu_model, params), 0);
    GaussianMixture cpu_model = model;
    const GmmSufficientStats ref = reference_full_stats(model, n, x.data());
    ASSERT_EQ(gmm_m_step(&cpu_model, ref, params, 0), 0);
    EXPECT_LE(
        rel_err(
            std::vector<double>(gpu_model.means.begin(), gpu_model.means.end()),
            std::vector<double>(
                cpu_model.means.begin(), cpu_model.means.end())),
        1e-4);
    EXPECT_LE(
        rel_err(
            std::vector<double>(
                gpu_model.covariances.begin(), gpu_model.covariances.end()),
            std::vector<double>(
                cpu_model.covariances.begin(), cpu_model.covariances.end())),
        1e-3);
}

namespace {

/// 20 EM iterations (tol 0) of the device loop and of the CPU EM from one
/// initial model; per-iteration mean log-likelihoods within ll_tol relative.
void check_em_against_cpu(EStepPrecision p, double ll_tol) {
    const GaussianMixture truth = random_full_model(16, 8, 91);
    const idx_t n = 3000;
    const std::vector<float> x = sample_full(truth, n, 92);
    GmmParameters params;
    params.covariance = CovarianceType::Full;
    params.niter = 20;
    params.tol = 0;
    params.seed = 93;
    GaussianMixture init(16, 8, CovarianceType::Full);
    initialize_gmm(&init, n, x.data(), params);

    GaussianMixture cpu_model = init;
    CpuEStep cpu_estep(n, x.data(), init.d, params.block_size);
    run_em(&cpu_model, &cpu_estep, params);

    GaussianMixture gpu_model = init;
    gpu::GpuEmConfig config;
    config.precision = p;
    gpu::GpuEStep gpu_estep(n, x.data(), init.d, false, config);
    std::vector<double> kernel_ms;
    gpu::run_em_on_device(&gpu_model, &gpu_estep, params, &kernel_ms);

    ASSERT_EQ(
        gpu_model.iteration_stats.size(), cpu_model.iteration_stats.size());
    ASSERT_EQ(kernel_ms.size(), gpu_model.iteration_stats.size());
    double worst = 0;
    for (size_t it = 0; it < gpu_model.iteration_stats.size(); it++) {
        const double g = gpu_model.iteration_stats[it].log_likelihood;
        const double c = cpu_model.iteration_stats[it].log_likelihood;
        const double e = std::fabs(g - c) / std::max(std::fabs(c), 1.0);
        worst = std::max(worst, e);
        EXPECT_LE(e, ll_tol)
            << "iteration " << it << ": GPU " << g << ", CPU " << c;
    }
    printf(
        "full EM %s: worst relative log-likelihood gap %.2e over %zu "
        "iterations\n",
        gpu::estep_precision_name(p),
        worst,
        gpu_model.iteration_stats.size());
    EXPECT_TRUE(gpu_model.is_trained);
    EXPECT_NO_THROW(gpu_model.check_consistency());
    EXPECT_LE(
        rel_err(
            std::vector<double>(gpu_model.means.begin(), gpu_model.means.end()),
            std::vector<double>(
                cpu_model.means.begin(), cpu_model.means.end())),
        1e-2);
}

} // namespace

TEST(GpuEmFull, DeviceLoopFollowsCpuEmFp32) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    check_em_against_cpu(EStepPrecision::FP32, 1e-4);
}

TEST(GpuEmFull, DeviceLoopFollowsCpuEmTf32) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    check_em_against_cpu(EStepPrecision::TF32, 5e-3);
}

TEST(GpuEmFull, TrainGmmGpu) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const GaussianMixture truth = random_full_model(8, 4, 101);
    const idx_t n = 4000;
    const std::vector<float> x = sample_full(truth, n, 102);
    GmmParameters params;
    params.covariance = CovarianceType::Full;
    params.niter = 10;
    GaussianMixture gpu_model(8, 4, CovarianceType::Full);
    gpu::GpuEmConfig config;
    config.precision = EStepPrecision::FP32;
    gpu::train_gmm_gpu(&gpu_model, n, x.data(), params, config);
    GaussianMixture cpu_model(8, 4, CovarianceType::Full);
    cpu_model.train(n, x.data(), params);
    const double g = gpu_model.mean_log_likelihood(n, x.data());
    const double c = cpu_model.mean_log_likelihood(n, x.data());
    printf("train_gmm_gpu full: mean log-likelihood GPU %.6f CPU %.6f\n", g, c);
    // Smoke test of the whole trainer: the initialisations differ (GPU and
    // CPU k-means assignments), so only the end results are compared.
    EXPECT_NEAR(g, c, 1e-2 * std::max(1.0, std::fabs(c)));
}
