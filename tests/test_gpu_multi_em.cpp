/**
 * Multi-GPU EM (faiss_gmm/gpu/GpuMultiEStep.h): G = 1 and G = 2 devices
 * give the one-GPU E-step's statistics and the one-GPU trainer's model
 * within fp32 tolerance. Skips without a usable device; the two-device
 * tests skip with fewer than two.
 */

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmEM.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/GpuMultiEStep.h>

namespace {

using faiss_gmm::CovarianceType;
using faiss_gmm::GaussianMixture;
using faiss_gmm::GmmParameters;
using faiss_gmm::GmmSufficientStats;
using faiss_gmm::idx_t;
namespace fg = faiss_gmm::gpu;

#define REQUIRE_DEVICES(count)                                                 \
    do {                                                                       \
        if (fg::gpu_device_count() < (count)) {                                \
            GTEST_SKIP() << "needs " << (count) << " CUDA device(s), "         \
                         << fg::gpu_device_count() << " usable";               \
        }                                                                      \
        if ((count) > 1 && !fg::multi_gpu_has_nccl()) {                        \
            GTEST_SKIP() << "built without NCCL: one device only";             \
        }                                                                      \
    } while (0)

std::vector<float> blobs(idx_t n, int d, int centers, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> gauss;
    std::vector<float> c(size_t(centers) * d);
    for (float& v : c) {
        v = 4 * gauss(rng) + 10;
    }
    std::vector<float> x(size_t(n) * d);
    for (idx_t i = 0; i < n; i++) {
        const int b = int(rng() % uint64_t(centers));
        for (int l = 0; l < d; l++) {
            x[size_t(i) * d + l] = c[size_t(b) * d + l] + gauss(rng);
        }
    }
    return x;
}

/// sqrt(sum (a - b)^2 / sum b^2)
double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-300));
}

/// Every statistic of a within relative L2 error rel of b's.
void expect_stats_near(
    const GmmSufficientStats& a,
    const GmmSufficientStats& b,
    double rel,
    const char* what) {
    EXPECT_EQ(a.n, b.n) << what;
    EXPECT_LE(
        std::fabs(a.log_likelihood - b.log_likelihood),
        rel * std::fabs(b.log_likelihood))
        << what;
    EXPECT_LE(rel_err(a.count, b.count), rel) << what << ": N_k";
    EXPECT_LE(rel_err(a.sum_x, b.sum_x), rel) << what << ": sum r x";
    EXPECT_LE(rel_err(a.sum_sq, b.sum_sq), rel) << what << ": second moments";
}

/// Statistics of one E-step of the one-GPU E-step and of GpuMultiEStep over
/// `devices`, from the same initialised model.
void compare_estep(
    const std::vector<int>& devices,
    CovarianceType covariance,
    fg::EStepPrecision precision,
    idx_t chunk_rows,
    double rel) {
    const idx_t n = 20011; // a multiple of nothing
    const int d = 37, k = 50;
    const std::vector<float> x = blobs(n, d, 20, 5);
    GaussianMixture model(d, k, covariance);
    GmmParameters params;
    params.covariance = covariance;
    faiss_gmm::initialize_gmm(&model, n, x.data(), params);

    fg::GpuEmConfig config;
    config.precision = precision;
    config.device = devices[0];
    GmmSufficientStats one(d, k, covariance), many(d, k, covariance);
    fg::GpuEStep single(n, x.data(), d, false, config);
    single.compute(model, &one);

    config.chunk_rows = chunk_rows;
    fg::GpuMultiEStep multi(n, x.data(), d, devices, config);
    ASSERT_EQ(multi.num_devices(), int(devices.size()));
    idx_t rows = 0;
    for (int g = 0; g < multi.num_devices(); g++) {
        rows += multi.shard_rows(g);
        EXPECT_EQ(multi.shard(g).is_streaming(), chunk_rows > 0);
    }
    EXPECT_EQ(rows, n);
    // Twice: the second iteration reuses the device buffers.
    for (int repeat = 0; repeat < 2; repeat++) {
        many.reset();
        multi.compute(model, &many);
        expect_stats_near(many, one, rel, "GpuMultiEStep vs GpuEStep");
    }
}

TEST(GpuMultiEm, ParseDeviceList) {
    EXPECT_EQ(fg::parse_device_list("0"), std::vector<int>({0}));
    EXPECT_EQ(fg::parse_device_list("2,0,1"), std::vector<int>({2, 0, 1}));
    for (const char* bad : {"", "0,", ",1", "0,0", "a", "-1", "1;2"}) {
        EXPECT_THROW(fg::parse_device_list(bad), faiss::FaissException) << bad;
    }
}

TEST(GpuMultiEm, OneDeviceEStepEqualsGpuEStep) {
    REQUIRE_DEVICES(1);
    // The same rows in the same tiles: only the order of the double
    // atomics differs.
    compare_estep(
        {0}, CovarianceType::Spherical, fg::EStepPrecision::FP32, 0, 1e-9);
    compare_estep(
        {0}, CovarianceType::Diagonal, fg::EStepPrecision::BF16, 0, 1e-9);
}

TEST(GpuMultiEm, TwoDevicesEStepEqualsGpuEStep) {
    REQUIRE_DEVICES(2);
    // Each row's arithmetic does not depend on its shard; the fp32 partial
    // sums of a tile / slab do (as for streamed chunks, test_gpu_em).
    for (CovarianceType c :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        for (fg::EStepPrecision p :
             {fg::EStepPrecision::FP32,
              fg::EStepPrecision::TF32,
              fg::EStepPrecision::BF16}) {
            compare_estep({0, 1}, c, p, 0, 1e-5);
        }
        compare_estep({1, 0}, c, fg::EStepPrecision::FP32, 0, 1e-5);
    }
}

TEST(GpuMultiEm, StreamedShardsEqualResident) {
    REQUIRE_DEVICES(1);
    std::vector<int> devices = {0};
    if (fg::gpu_device_count() >= 2) {
        devices.push_back(1);
    }
    compare_estep(
        devices,
        CovarianceType::Diagonal,
        fg::EStepPrecision::FP32,
        3000,
        1e-5);
}

/// train_gmm_multi_gpu over `devices` against train_gmm_gpu on device 0.
void compare_training(const std::vector<int>& devices, CovarianceType cov) {
    const idx_t n = 30000;
    const int d = 24, k = 32;
    const std::vector<float> x = blobs(n, d, 40, 9);
    GmmParameters params;
    params.covariance = cov;
    params.niter = 8;
    params.tol = 0;
    params.max_points_per_component = 300; // samples 9600 rows
    // fp32: train_gmm_gpu runs the M-step on the device and keeps the
    // initial centre, the multi-GPU trainer runs gmm_m_step on the host and
    // re-centres every iteration; in bf16 the two centres round the logits
    // differently (relative 1e-4 in the log-likelihood), in fp32 they agree
    // to rounding.
    fg::GpuEmConfig config;
    config.precision = fg::EStepPrecision::FP32;
    GaussianMixture reference(d, k, cov), model(d, k, cov);
    fg::train_gmm_gpu(&reference, n, x.data(), params, config);
    fg::train_gmm_multi_gpu(&model, n, x.data(), params, devices, config);
    ASSERT_TRUE(model.is_trained);
    ASSERT_EQ(model.iteration_stats.size(), reference.iteration_stats.size());
    for (size_t it = 0; it < model.iteration_stats.size(); it++) {
        const double a = model.iteration_stats[it].log_likelihood;
        const double b = reference.iteration_stats[it].log_likelihood;
        EXPECT_NEAR(a, b, 1e-5 * std::fabs(b)) << "iteration " << it;
    }
    double mean_scale = 0;
    for (float v : reference.means) {
        mean_scale = std::max(mean_scale, double(std::fabs(v)));
    }
    for (size_t i = 0; i < model.means.size(); i++) {
        ASSERT_NEAR(model.means[i], reference.means[i], 1e-4 * mean_scale)
            << "mean " << i;
    }
    for (size_t i = 0; i < model.variances.size(); i++) {
        ASSERT_NEAR(
            model.variances[i],
            reference.variances[i],
            1e-4 * reference.variances[i])
            << "variance " << i;
    }
    for (int j = 0; j < k; j++) {
        ASSERT_NEAR(model.weights[j], reference.weights[j], 1e-4 / k)
            << "weight " << j;
    }
}

TEST(GpuMultiEm, OneDeviceTrainingEqualsOneGpuTrainer) {
    REQUIRE_DEVICES(1);
    compare_training({0}, CovarianceType::Spherical);
    compare_training({0}, CovarianceType::Diagonal);
}

TEST(GpuMultiEm, TwoDeviceTrainingEqualsOneGpuTrainer) {
    REQUIRE_DEVICES(2);
    compare_training({0, 1}, CovarianceType::Spherical);
    compare_training({0, 1}, CovarianceType::Diagonal);
}

TEST(GpuMultiEm, BadArguments) {
    REQUIRE_DEVICES(1);
    const std::vector<float> x = blobs(10, 4, 2, 1);
    const int count = fg::gpu_device_count();
    EXPECT_THROW(fg::GpuMultiEStep(10, x.data(), 4, {}), faiss::FaissException);
    EXPECT_THROW(
        fg::GpuMultiEStep(10, x.data(), 4, {0, 0}), faiss::FaissException);
    EXPECT_THROW(
        fg::GpuMultiEStep(10, x.data(), 4, {count}), faiss::FaissException);
    if (count >= 2) {
        EXPECT_THROW(
            fg::GpuMultiEStep(1, x.data(), 4, {0, 1}), faiss::FaissException);
        if (!fg::multi_gpu_has_nccl()) {
            try {
                fg::GpuMultiEStep two(10, x.data(), 4, {0, 1});
                ADD_FAILURE() << "two devices without NCCL did not throw";
            } catch (const faiss::FaissException& e) {
                EXPECT_NE(
                    std::string(e.what()).find("built without NCCL"),
                    std::string::npos)
                    << e.what();
            }
        }
    }
    // One device needs no NCCL: it works in every build.
    fg::GpuMultiEStep one(10, x.data(), 4, {0});
    EXPECT_EQ(one.num_devices(), 1);
}

} // namespace
