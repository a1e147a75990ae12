/**
 * MPI multi-process EM (faiss_gmm/mpi/MpiEStep.h). Run under mpirun by ctest
 * with 1, 2 and 3 ranks: every rank builds the same synthetic data, keeps
 * its own row range and trains with train_gmm_mpi; the model must be the
 * one-process CPU trainer's (bit for bit with one rank, within 1e-4
 * relative with several) and identical on every rank.
 */

#include <gtest/gtest.h>

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <faiss/impl/FaissAssert.h>

#include <datasets/vector_io.h>
#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmEM.h>
#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/index_io.h>
#include <faiss_gmm/mpi/MpiEStep.h>

namespace {

using faiss_gmm::CovarianceType;
using faiss_gmm::GaussianMixture;
using faiss_gmm::GmmParameters;
using faiss_gmm::idx_t;

int world_rank() {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int world_size() {
    int s = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &s);
    return s;
}

/// n points of d dims around `centers` well separated blob centres, with an
/// offset (so that the statistics are not all about zero).
std::vector<float> blobs(idx_t n, int d, int centers, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> gauss;
    std::vector<float> c(size_t(centers) * d);
    for (float& v : c) {
        v = 5 * gauss(rng) + 20;
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

/// True on every rank when `ok` holds on every rank.
bool all_ranks(bool ok) {
    int mine = ok ? 1 : 0, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all == 1;
}

/// Relative tolerance between models trained on different rank counts.
constexpr double kRankTol = 1e-4;

/// |a - b| <= rel * max(|b|, floor) elementwise, reporting the first miss.
void expect_close(
    const std::vector<float>& a,
    const std::vector<float>& b,
    double rel,
    double floor,
    const char* what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); i++) {
        const double tol = rel * std::max(std::fabs(double(b[i])), floor);
        ASSERT_LE(std::fabs(double(a[i]) - b[i]), tol)
            << what << "[" << i << "] on rank " << world_rank() << " of "
            << world_size();
    }
}

/// Rank 0's model equals this rank's, bit for bit, on every rank.
bool same_bits_as_rank0(const GaussianMixture& m) {
    bool ok = true;
    for (const std::vector<float>* v :
         {&m.weights, &m.means, &m.variances, &m.covariances}) {
        if (v->empty()) {
            continue; // covariances: empty unless the model is Full (and
                      // memcmp must not see the empty vector's null data)
        }
        std::vector<float> root = *v;
        MPI_Bcast(root.data(), int(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
        ok = ok && std::memcmp(root.data(), v->data(), v->size() * 4) == 0;
    }
    return all_ranks(ok);
}

struct Case {
    CovarianceType covariance;
    int max_points_per_component;
};

/// Trains with train_gmm_mpi on this rank's rows and compares with the
/// one-process trainer on all rows.
void check_matches_one_process(const Case& c, idx_t n, int d, int k) {
    const std::vector<float> x = blobs(n, d, 12, 42);
    idx_t begin = 0, end = 0;
    faiss_gmm::mpi::row_range(n, world_rank(), world_size(), &begin, &end);

    GmmParameters params;
    params.covariance = c.covariance;
    params.niter = 8;
    params.tol = 0;
    params.max_points_per_component = c.max_points_per_component;
    params.seed = 7;

    GaussianMixture reference(d, k, c.covariance);
    reference.train(n, x.data(), params);

    GaussianMixture model(d, k, c.covariance);
    faiss_gmm::mpi::train_gmm_mpi(
        &model,
        end - begin,
        x.data() + size_t(begin) * d,
        params,
        MPI_COMM_WORLD);

    EXPECT_TRUE(model.is_trained);
    EXPECT_TRUE(same_bits_as_rank0(model));
    ASSERT_EQ(model.iteration_stats.size(), reference.iteration_stats.size());
    if (world_size() == 1) {
        // Same rows, same order, same E-step: the very same numbers.
        EXPECT_EQ(model.means, reference.means);
        EXPECT_EQ(model.variances, reference.variances);
        EXPECT_EQ(model.weights, reference.weights);
        EXPECT_EQ(model.covariances, reference.covariances);
    }
    // Several ranks change only the summation order of the statistics
    // (and with it how BLAS blocks the products), amplified by every EM
    // iteration: relative 1e-4 (measured up to 3e-5 on a 2-core machine),
    // weights with an absolute floor of 1e-6.
    expect_close(model.weights, reference.weights, kRankTol, 1e-2, "weights");
    expect_close(model.means, reference.means, kRankTol, 1, "means");
    expect_close(
        model.variances, reference.variances, kRankTol, 0, "variances");
    // full: off-diagonal entries may be ~0; relative to the data's variance
    // (~1 per dimension here)
    expect_close(
        model.covariances, reference.covariances, kRankTol, 1, "covariances");
    EXPECT_EQ(model.variance_floor, reference.variance_floor);
    for (size_t it = 0; it < reference.iteration_stats.size(); it++) {
        const double a = model.iteration_stats[it].log_likelihood;
        const double b = reference.iteration_stats[it].log_likelihood;
        EXPECT_NEAR(a, b, 1e-6 * std::max(1.0, std::fabs(b)))
            << "iteration " << it;
        EXPECT_EQ(
            model.iteration_stats[it].n_reseeded,
            reference.iteration_stats[it].n_reseeded);
    }
}

TEST(MpiRowRange, SplitsEvenlyInRankOrder) {
    for (int size : {1, 2, 3, 7}) {
        for (idx_t n : {0, 1, 5, 100, 101}) {
            idx_t expected_begin = 0;
            for (int r = 0; r < size; r++) {
                idx_t b = 0, e = 0;
                faiss_gmm::mpi::row_range(n, r, size, &b, &e);
                EXPECT_EQ(b, expected_begin);
                EXPECT_LE(e - b, n / size + 1);
                EXPECT_GE(e - b, n / size);
                expected_begin = e;
            }
            EXPECT_EQ(expected_begin, n);
        }
    }
    idx_t b, e;
    EXPECT_THROW(
        faiss_gmm::mpi::row_range(10, 2, 2, &b, &e), faiss::FaissException);
}

TEST(MpiEm, SphericalSubsampledMatchesOneProcess) {
    // 6000 rows, k * max_points_per_component = 2000 sampled over the
    // global row index.
    check_matches_one_process({CovarianceType::Spherical, 100}, 6000, 16, 20);
}

TEST(MpiEm, DiagonalAllRowsMatchesOneProcess) {
    check_matches_one_process({CovarianceType::Diagonal, 0}, 3001, 9, 12);
}

TEST(MpiEm, FullCovarianceAllRowsMatchesOneProcess) {
    // the D x D second moments are summed over the ranks too
    check_matches_one_process({CovarianceType::Full, 0}, 2400, 6, 8);
}

TEST(MpiEm, RankWithoutRows) {
    // The last rank holds nothing (when there are several).
    const idx_t n = 2000;
    const int d = 8, k = 10;
    const std::vector<float> x = blobs(n, d, 5, 3);
    const int size = world_size(), rank = world_rank();
    const int holders = std::max(1, size - 1);
    idx_t begin = 0, end = 0;
    if (rank < holders) {
        faiss_gmm::mpi::row_range(n, rank, holders, &begin, &end);
    } else {
        begin = end = n;
    }
    GmmParameters params;
    params.niter = 5;
    params.tol = 0;
    GaussianMixture reference(d, k, CovarianceType::Spherical);
    reference.train(n, x.data(), params);
    GaussianMixture model(d, k, CovarianceType::Spherical);
    faiss_gmm::mpi::train_gmm_mpi(
        &model,
        end - begin,
        end > begin ? x.data() + size_t(begin) * d : nullptr,
        params,
        MPI_COMM_WORLD);
    EXPECT_TRUE(same_bits_as_rank0(model));
    expect_close(model.means, reference.means, kRankTol, 1, "means");
    expect_close(
        model.variances, reference.variances, kRankTol, 0, "variances");
}

TEST(MpiEm, EStepSumsTheRanksStatistics) {
    const idx_t n = 1500;
    const int d = 5, k = 7;
    const std::vector<float> x = blobs(n, d, 4, 11);
    GaussianMixture model(d, k, CovarianceType::Diagonal);
    GmmParameters params;
    params.covariance = CovarianceType::Diagonal;
    faiss_gmm::initialize_gmm(&model, n, x.data(), params);

    faiss_gmm::GmmSufficientStats whole(d, k, model.covariance);
    faiss_gmm::CpuEStep all_rows(n, x.data(), d);
    all_rows.compute(model, &whole);

    idx_t begin = 0, end = 0;
    faiss_gmm::mpi::row_range(n, world_rank(), world_size(), &begin, &end);
    faiss_gmm::CpuEStep mine(end - begin, x.data() + size_t(begin) * d, d);
    // Same centre as the whole-data E-step: the fp32 products then round
    // alike and only the summation order of doubles differs.
    mine.center = all_rows.center;
    faiss_gmm::mpi::MpiEStep estep(&mine, MPI_COMM_WORLD);
    faiss_gmm::GmmSufficientStats summed(d, k, model.covariance);
    estep.compute(model, &summed);

    EXPECT_EQ(summed.n, n);
    EXPECT_NEAR(
        summed.log_likelihood,
        whole.log_likelihood,
        1e-9 * std::fabs(whole.log_likelihood));
    for (int j = 0; j < k; j++) {
        EXPECT_NEAR(summed.count[j], whole.count[j], 1e-9 * n);
    }
    // sum_x and sum_sq also carry the fp32 rounding of each row's
    // responsibilities, which can differ where a rank's rows fall elsewhere
    // in the BLAS's blocking (measured: sum_x 1.3e-8 apart, relative, on
    // one 2-core machine, 2026-12-07; 0 on earlier ones); a wrong reduction
    // would be O(1) apart
    for (size_t i = 0; i < whole.sum_x.size(); i++) {
        EXPECT_NEAR(
            summed.sum_x[i],
            whole.sum_x[i],
            1e-7 * (std::fabs(whole.sum_x[i]) + n));
        EXPECT_NEAR(
            summed.sum_sq[i],
            whole.sum_sq[i],
            1e-7 * (std::fabs(whole.sum_sq[i]) + 1));
    }
}

/// Runs f, expecting a FaissException whose message contains `needle` on
/// every rank.
template <class F>
void expect_throw_everywhere(F f, const std::string& needle) {
    std::string message;
    try {
        f();
    } catch (const faiss::FaissException& e) {
        message = e.what();
    }
    EXPECT_NE(message.find(needle), std::string::npos)
        << "rank " << world_rank() << ": '" << message << "'";
}

TEST(MpiEm, NanOnOneRankFailsEveryRank) {
    const idx_t n = 400;
    const int d = 4, k = 5;
    std::vector<float> x = blobs(n, d, 3, 5);
    idx_t begin = 0, end = 0;
    faiss_gmm::mpi::row_range(n, world_rank(), world_size(), &begin, &end);
    // Row n - 1 belongs to the last rank.
    x[size_t(n - 1) * d + 2] = std::numeric_limits<float>::quiet_NaN();
    GaussianMixture model(d, k, CovarianceType::Spherical);
    expect_throw_everywhere(
        [&] {
            faiss_gmm::mpi::train_gmm_mpi(
                &model,
                end - begin,
                x.data() + size_t(begin) * d,
                GmmParameters(),
                MPI_COMM_WORLD);
        },
        "rank " + std::to_string(world_size() - 1) + " of " +
            std::to_string(world_size()) +
            ": GMM training data contain NaN or Inf (row 399)");
}

TEST(MpiEm, DifferentKOnRanksFailsEveryRank) {
    if (world_size() < 2) {
        GTEST_SKIP() << "needs 2 ranks (ctest runs this binary with 1, 2, 3)";
    }
    const idx_t n = 400;
    const int d = 4;
    const std::vector<float> x = blobs(n, d, 3, 5);
    idx_t begin = 0, end = 0;
    faiss_gmm::mpi::row_range(n, world_rank(), world_size(), &begin, &end);
    GaussianMixture model(
        d, world_rank() == 0 ? 5 : 6, CovarianceType::Spherical);
    expect_throw_everywhere(
        [&] {
            faiss_gmm::mpi::train_gmm_mpi(
                &model,
                end - begin,
                x.data() + size_t(begin) * d,
                GmmParameters(),
                MPI_COMM_WORLD);
        },
        "k differs between ranks (5 to 6)");
}

TEST(MpiEm, TooFewRowsFailsEveryRank) {
    const int d = 3, k = 50;
    const idx_t n = 40;
    const std::vector<float> x = blobs(n, d, 2, 1);
    idx_t begin = 0, end = 0;
    faiss_gmm::mpi::row_range(n, world_rank(), world_size(), &begin, &end);
    GaussianMixture model(d, k, CovarianceType::Spherical);
    expect_throw_everywhere(
        [&] {
            faiss_gmm::mpi::train_gmm_mpi(
                &model,
                end - begin,
                x.data() + size_t(begin) * d,
                GmmParameters(),
                MPI_COMM_WORLD);
        },
        "n >= k points: n = 40, k = 50");
}

/*
 * faiss_gmm_train under mpirun. ctest runs, in this order (fixtures):
 * TrainTool.WriteData (this binary, one process), faiss_gmm_train with
 * mpirun -np 1, 2 and 3 on that file, then TrainTool.ModelsAgree (this
 * binary, one process). Under mpirun ctest filters TrainTool.* out.
 */

/// Folder of the faiss_gmm_train fixtures.
std::string tool_dir() {
    return std::string(FAISS_GMM_TEST_TMPDIR) + "/mpi_train_tool";
}

TEST(TrainTool, WriteData) {
    ASSERT_EQ(world_size(), 1) << "run without mpirun";
    const idx_t n = 9000;
    const int d = 12;
    const std::vector<float> x = blobs(n, d, 16, 99);
    ASSERT_EQ(std::system(("mkdir -p " + tool_dir()).c_str()), 0);
    faiss_gmm::datasets::write_fvecs(
        tool_dir() + "/blobs.fvecs", x.data(), n, d);
}

TEST(TrainTool, ModelsAgree) {
    ASSERT_EQ(world_size(), 1) << "run without mpirun";
    const std::string one = tool_dir() + "/np1.index";
    if (!std::ifstream(one).good()) {
        GTEST_SKIP() << one
                     << " is absent: ctest writes it (faiss_gmm_train_np1) "
                        "before this test";
    }
    std::unique_ptr<faiss::Index> reference(faiss_gmm::read_index(one.c_str()));
    const faiss_gmm::IndexIVFGMM* ref =
        dynamic_cast<const faiss_gmm::IndexIVFGMM*>(reference.get());
    ASSERT_TRUE(ref);
    EXPECT_TRUE(ref->is_trained);
    EXPECT_EQ(ref->ntotal, 0);
    EXPECT_EQ(ref->nlist, size_t(20));
    EXPECT_EQ(ref->gmm.covariance, CovarianceType::Diagonal);
    for (int np : {2, 3}) {
        const std::string path =
            tool_dir() + "/np" + std::to_string(np) + ".index";
        std::unique_ptr<faiss::Index> index(
            faiss_gmm::read_index(path.c_str()));
        const faiss_gmm::IndexIVFGMM* ivf =
            dynamic_cast<const faiss_gmm::IndexIVFGMM*>(index.get());
        ASSERT_TRUE(ivf) << path;
        SCOPED_TRACE(path);
        expect_close(
            ivf->gmm.weights, ref->gmm.weights, kRankTol, 1e-2, "weights");
        expect_close(ivf->gmm.means, ref->gmm.means, kRankTol, 1, "means");
        expect_close(
            ivf->gmm.variances, ref->gmm.variances, kRankTol, 0, "variances");
    }
}

} // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    ::testing::InitGoogleTest(&argc, argv);
    const int result = RUN_ALL_TESTS();
    MPI_Finalize();
    return result;
}
