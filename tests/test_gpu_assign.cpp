/**
 * The fused top-m assignment kernel (kernels/ivf_assign.h), GpuIndexFlatL2
 * and the GPU k-means initialisation, against double-precision CPU
 * references. GPU tests skip when no CUDA device is usable (CI has none);
 * the argument checks of initialize_gmm's assignment index run everywhere.
 *
 * Tolerances: a score from fp32 direct differences is within about
 * d * 2^-24 of the magnitude of its terms; the tests allow 1e-5 of that
 * magnitude (plus 1e-6 absolute), and accept a different id at a rank only
 * where the reference scores of the two ids are within that tolerance
 * (true near-ties).
 */

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include <faiss/IndexFlat.h>
#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmEM.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/GpuFlatL2.h>
#include <kernels/ivf_assign.h>

#include "test_utils.h"

using namespace faiss_gmm;
namespace kn = faiss_gmm::kernels;

namespace {

/// Device copy of a host vector, freed at scope exit.
template <class T>
class DeviceVector {
   public:
    explicit DeviceVector(size_t count) : count_(count) {
        if (count > 0) {
            EXPECT_EQ(cudaMalloc(&ptr_, count * sizeof(T)), cudaSuccess);
        }
    }
    explicit DeviceVector(const std::vector<T>& host)
        : DeviceVector(host.size()) {
        if (ptr_) {
            EXPECT_EQ(
                cudaMemcpy(
                    ptr_,
                    host.data(),
                    host.size() * sizeof(T),
                    cudaMemcpyHostToDevice),
                cudaSuccess);
        }
    }
    DeviceVector(const DeviceVector&) = delete;
    DeviceVector& operator=(const DeviceVector&) = delete;
    ~DeviceVector() {
        if (ptr_) {
            cudaFree(ptr_);
        }
    }
    T* get() const {
        return static_cast<T*>(ptr_);
    }
    std::vector<T> to_host() const {
        std::vector<T> host(count_);
        if (ptr_) {
            EXPECT_EQ(
                cudaMemcpy(
                    host.data(),
                    ptr_,
                    count_ * sizeof(T),
                    cudaMemcpyDeviceToHost),
                cudaSuccess);
        }
        return host;
    }

   private:
    void* ptr_ = nullptr;
    size_t count_ = 0;
};

enum class Kind { L2, Spherical, Diagonal };

const char* kind_name(Kind kind) {
    return kind == Kind::L2          ? "L2"
           : kind == Kind::Spherical ? "spherical"
                                     : "diagonal";
}

/// A model in the kernel's form (host copies).
struct HostModel {
    int d = 0, k = 0;
    Kind kind = Kind::L2;
    std::vector<float> means, log_const, inv_var;
};

HostModel random_model(int d, int k, Kind kind, uint64_t seed) {
    HostModel m;
    m.d = d;
    m.k = k;
    m.kind = kind;
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    std::uniform_real_distribution<float> uni(0.5f, 2.0f);
    m.means.resize(size_t(k) * d);
    for (auto& v : m.means) {
        v = 3.0f + normal(rng);
    }
    if (kind != Kind::L2) {
        const int vpc = kind == Kind::Diagonal ? d : 1;
        m.inv_var.resize(size_t(k) * vpc);
        for (auto& v : m.inv_var) {
            v = uni(rng);
        }
        m.log_const.resize(k);
        for (auto& c : m.log_const) {
            c = -0.1f * d + normal(rng);
        }
    }
    return m;
}

std::vector<float> random_points(int d, int64_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    std::vector<float> x(size_t(n) * d);
    for (auto& v : x) {
        v = 3.0f + 1.2f * normal(rng);
    }
    return x;
}

/// Reference of one point: every score, its magnitude (for tolerances), the
/// L2 distances and the ranking.
struct Reference {
    std::vector<double> score; ///< s_k (L2: distance)
    std::vector<double> mag;   ///< magnitude of s_k's terms
    std::vector<double> l2;    ///< |x - mu_k|^2
    std::vector<int> order;    ///< best first, ties by smaller id
    double log_norm = 0;       ///< LogJoint: log sum exp(s / T)
    double log_norm_tol = 0;   ///< tolerance of log_norm
    int nearest = -1;
};

Reference reference(const HostModel& m, const float* x, double temperature) {
    Reference r;
    const int d = m.d, k = m.k;
    r.score.resize(k);
    r.mag.resize(k);
    r.l2.resize(k);
    for (int j = 0; j < k; j++) {
        double l2 = 0, w = 0;
        for (int l = 0; l < d; l++) {
            const double diff = double(x[l]) - m.means[size_t(j) * d + l];
            l2 += diff * diff;
            if (m.kind == Kind::Diagonal) {
                w += m.inv_var[size_t(j) * d + l] * diff * diff;
            }
        }
        if (m.kind == Kind::Spherical) {
            w = m.inv_var[j] * l2;
        }
        r.l2[j] = l2;
        if (m.kind == Kind::L2) {
            r.score[j] = l2;
            r.mag[j] = l2;
        } else {
            r.score[j] = m.log_const[j] - 0.5 * w;
            r.mag[j] = std::fabs(m.log_const[j]) + 0.5 * w;
        }
    }
    r.order.resize(k);
    std::iota(r.order.begin(), r.order.end(), 0);
    const bool minimise = m.kind == Kind::L2;
    std::stable_sort(r.order.begin(), r.order.end(), [&](int a, int b) {
        return minimise ? r.score[a] < r.score[b] : r.score[a] > r.score[b];
    });
    r.nearest = int(std::min_element(r.l2.begin(), r.l2.end()) - r.l2.begin());
    if (m.kind != Kind::L2) {
        double mx = -INFINITY;
        for (int j = 0; j < k; j++) {
            mx = std::max(mx, r.score[j] / temperature);
        }
        double sum = 0, weighted_mag = 0;
        for (int j = 0; j < k; j++) {
            const double e = std::exp(r.score[j] / temperature - mx);
            sum += e;
            weighted_mag += e * r.mag[j] / temperature;
        }
        r.log_norm = mx + std::log(sum);
        r.log_norm_tol = 1e-4 + 1e-5 * weighted_mag / sum;
    }
    return r;
}

double tolerance(double mag) {
    return 1e-5 * mag + 1e-6;
}

struct Case {
    int k, d;
    int64_t n;
    int m;
    bool misaligned = false; ///< x starts one float after a 16-byte boundary
};

std::string describe(const Case& c, Kind kind, bool nearest) {
    return std::string(kind_name(kind)) + " k=" + std::to_string(c.k) +
           " d=" + std::to_string(c.d) + " n=" + std::to_string(c.n) +
           " m=" + std::to_string(c.m) + (c.misaligned ? " misaligned" : "") +
           (nearest ? " +nearest" : "");
}

/// Runs the kernel on one case and checks every output against reference.
void check_case(
    const Case& c,
    Kind kind,
    bool want_nearest,
    double temperature,
    uint64_t seed) {
    SCOPED_TRACE(describe(c, kind, want_nearest));
    const HostModel hm = random_model(c.d, c.k, kind, seed);
    const std::vector<float> x = random_points(c.d, c.n, seed + 1);
    // One spare float in front so that the misaligned case can start at +1.
    std::vector<float> x_padded(x.size() + 1, 0.f);
    std::copy(x.begin(), x.end(), x_padded.begin() + 1);
    DeviceVector<float> x_dev(x_padded);
    const float* x_ptr = x_dev.get() + 1;
    DeviceVector<float> x_aligned(x);
    if (!c.misaligned) {
        x_ptr = x_aligned.get();
    }
    DeviceVector<float> means(hm.means), log_const(hm.log_const),
        inv_var(hm.inv_var);
    kn::AssignModel model;
    model.d = c.d;
    model.k = c.k;
    model.diagonal = kind == Kind::Diagonal;
    model.means = means.get();
    model.log_const = log_const.get();
    model.inv_var = inv_var.get();
    DeviceVector<int32_t> top_index(size_t(c.n) * c.m), nearest(c.n);
    DeviceVector<float> top_score(size_t(c.n) * c.m), log_norm(c.n),
        nearest_distance(c.n);
    kn::AssignOutput out;
    out.top_index = top_index.get();
    out.top_score = top_score.get();
    const bool log_joint = kind != Kind::L2;
    if (log_joint) {
        out.log_norm = log_norm.get();
    }
    if (want_nearest) {
        out.nearest = nearest.get();
        out.nearest_distance = nearest_distance.get();
    }
    ASSERT_EQ(
        kn::ivf_assign_top(
            model,
            log_joint ? kn::AssignScore::LogJoint : kn::AssignScore::L2,
            c.n,
            x_ptr,
            c.m,
            float(temperature),
            out,
            nullptr),
        cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<int32_t> ids = top_index.to_host();
    const std::vector<float> scores = top_score.to_host();
    const std::vector<float> lnorm = log_norm.to_host();
    const std::vector<int32_t> near = nearest.to_host();
    const std::vector<float> near_dist = nearest_distance.to_host();

    // Stop reporting after a few failing points.
    const ::testing::TestResult* result =
        ::testing::UnitTest::GetInstance()->current_test_info()->result();
    const int failures_before = result->total_part_count();
    for (int64_t i = 0;
         i < c.n && result->total_part_count() - failures_before < 10;
         i++) {
        const Reference r =
            reference(hm, x.data() + size_t(i) * c.d, temperature);
        const int32_t* row_ids = ids.data() + size_t(i) * c.m;
        const float* row_scores = scores.data() + size_t(i) * c.m;
        std::vector<int32_t> sorted_ids(row_ids, row_ids + c.m);
        std::sort(sorted_ids.begin(), sorted_ids.end());
        EXPECT_TRUE(
            std::adjacent_find(sorted_ids.begin(), sorted_ids.end()) ==
            sorted_ids.end())
            << "point " << i << ": an id twice";
        for (int rank = 0; rank < c.m; rank++) {
            const int got = row_ids[rank];
            ASSERT_TRUE(got >= 0 && got < c.k)
                << "point " << i << " rank " << rank << ": id " << got;
            const int want = r.order[rank];
            const double tol = tolerance(std::max(r.mag[got], r.mag[want]));
            // The id at this rank scores as the reference's id at this rank.
            EXPECT_NEAR(r.score[got], r.score[want], tol)
                << "point " << i << " rank " << rank << ": id " << got
                << " instead of " << want;
            EXPECT_NEAR(row_scores[rank], r.score[got], tol)
                << "point " << i << " rank " << rank;
            if (got != want) {
                // Only a true near-tie may change the order.
                EXPECT_LE(std::fabs(r.score[got] - r.score[want]), tol);
            }
            if (rank > 0) {
                // Non-increasing quality, equal scores by smaller id.
                const float prev = row_scores[rank - 1], cur = row_scores[rank];
                if (prev == cur) {
                    EXPECT_LT(row_ids[rank - 1], got) << "point " << i;
                } else {
                    EXPECT_TRUE(log_joint ? prev > cur : prev < cur)
                        << "point " << i << " rank " << rank;
                }
            }
        }
        if (log_joint) {
            EXPECT_NEAR(lnorm[i], r.log_norm, r.log_norm_tol) << "point " << i;
        }
        if (want_nearest) {
            const int got = near[i];
            ASSERT_TRUE(got >= 0 && got < c.k) << "point " << i;
            const double tol = tolerance(std::max(r.l2[got], r.l2[r.nearest]));
            EXPECT_NEAR(r.l2[got], r.l2[r.nearest], tol) << "point " << i;
            EXPECT_NEAR(near_dist[i], r.l2[got], tol) << "point " << i;
        }
    }
}

const std::vector<Case>& awkward_cases() {
    static const std::vector<Case> cases = {
        {1, 1, 1, 1},
        {1, 3, 7, 1},
        {3, 3, 7, 2},
        {3, 128, 1000, 3},
        {3, 960, 1000, 1},
        {1000, 1, 1000, 1},
        {1000, 3, 7, 16},
        {1000, 128, 1000, 16},
        {1000, 128, 1000, 2, true},
        {1000, 960, 7, 2},
        {5000, 3, 1000, 16},
        {5000, 128, 300, 2},
        {5000, 960, 7, 16},
        {5000, 1, 1000, 2},
    };
    return cases;
}

TEST(IvfAssignTop, L2MatchesDoubleReference) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    uint64_t seed = 100;
    for (const Case& c : awkward_cases()) {
        check_case(c, Kind::L2, seed % 2 == 0, 1.0, seed);
        seed += 7;
    }
}

TEST(IvfAssignTop, SphericalLogJointMatchesDoubleReference) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    uint64_t seed = 200;
    for (const Case& c : awkward_cases()) {
        check_case(c, Kind::Spherical, true, 1.0, seed);
        seed += 7;
    }
    check_case({1000, 128, 1000, 4}, Kind::Spherical, false, 2.5, 17);
}

TEST(IvfAssignTop, DiagonalLogJointMatchesDoubleReference) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    uint64_t seed = 300;
    for (const Case& c : awkward_cases()) {
        // Both kernels: with and without the nearest-mean sums.
        check_case(c, Kind::Diagonal, seed % 2 == 0, 1.0, seed);
        seed += 7;
    }
    check_case({1000, 128, 1000, 4}, Kind::Diagonal, true, 0.5, 18);
    check_case({1000, 100, 1000, 4}, Kind::Diagonal, true, 1.0, 19);
}

/// Duplicate means score exactly alike: the smaller id comes first.
TEST(IvfAssignTop, TiesKeepSmallerIdFirst) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    for (Kind kind : {Kind::L2, Kind::Spherical, Kind::Diagonal}) {
        for (int m : {1, 3, 5}) {
            SCOPED_TRACE(
                std::string(kind_name(kind)) + " m=" + std::to_string(m));
            const int d = 8, k = 200, n = 100;
            HostModel hm = random_model(d, k, kind, 7);
            // Components 3, 70, 150 and 199 (several tiles and epilogue lanes)
            // duplicate component 130, and are placed on the points.
            const int dup[] = {3, 70, 130, 150, 199};
            for (int j : dup) {
                std::copy(
                    hm.means.begin() + 130 * d,
                    hm.means.begin() + 131 * d,
                    hm.means.begin() + size_t(j) * d);
                if (kind != Kind::L2) {
                    hm.log_const[j] = 5.0f;
                    const int vpc = kind == Kind::Diagonal ? d : 1;
                    for (int l = 0; l < vpc; l++) {
                        hm.inv_var[size_t(j) * vpc + l] = 1.0f;
                    }
                }
            }
            std::vector<float> x(size_t(n) * d);
            std::mt19937 rng(3);
            std::normal_distribution<float> normal;
            for (int i = 0; i < n; i++) {
                for (int l = 0; l < d; l++) {
                    x[size_t(i) * d + l] =
                        hm.means[130 * d + l] + 0.01f * normal(rng);
                }
            }
            DeviceVector<float> x_dev(x), means(hm.means), lc(hm.log_const),
                iv(hm.inv_var);
            DeviceVector<int32_t> top(size_t(n) * m);
            kn::AssignModel model;
            model.d = d;
            model.k = k;
            model.diagonal = kind == Kind::Diagonal;
            model.means = means.get();
            model.log_const = lc.get();
            model.inv_var = iv.get();
            kn::AssignOutput out;
            out.top_index = top.get();
            ASSERT_EQ(
                kn::ivf_assign_top(
                    model,
                    kind == Kind::L2 ? kn::AssignScore::L2
                                     : kn::AssignScore::LogJoint,
                    n,
                    x_dev.get(),
                    m,
                    1.0f,
                    out,
                    nullptr),
                cudaSuccess);
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            const std::vector<int32_t> ids = top.to_host();
            for (int i = 0; i < n; i++) {
                for (int r = 0; r < m; r++) {
                    EXPECT_EQ(ids[size_t(i) * m + r], dup[r])
                        << "point " << i << " rank " << r;
                }
            }
        }
    }
}

TEST(IvfAssignTop, RejectsBadArguments) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 4, k = 20;
    const HostModel hm = random_model(d, k, Kind::Spherical, 1);
    const std::vector<float> x = random_points(d, 10, 2);
    DeviceVector<float> x_dev(x), means(hm.means), lc(hm.log_const),
        iv(hm.inv_var);
    DeviceVector<int32_t> top(10 * 16);
    kn::AssignModel model;
    model.d = d;
    model.k = k;
    model.means = means.get();
    model.log_const = lc.get();
    model.inv_var = iv.get();
    kn::AssignOutput out;
    out.top_index = top.get();
    auto run = [&](kn::AssignModel mdl,
                   kn::AssignScore score,
                   int64_t n,
                   const float* xp,
                   int m,
                   float temp,
                   kn::AssignOutput o) {
        return kn::ivf_assign_top(mdl, score, n, xp, m, temp, o, nullptr);
    };
    const auto L2 = kn::AssignScore::L2, LJ = kn::AssignScore::LogJoint;
    EXPECT_EQ(run(model, L2, 10, x_dev.get(), 3, 1, out), cudaSuccess);
    EXPECT_EQ(run(model, L2, 0, nullptr, 3, 1, out), cudaSuccess);
    EXPECT_EQ(
        run(model, L2, 10, x_dev.get(), 0, 1, out), cudaErrorInvalidValue);
    EXPECT_EQ(
        run(model, L2, 10, x_dev.get(), kn::kAssignMaxTop + 1, 1, out),
        cudaErrorInvalidValue);
    kn::AssignModel small = model;
    small.k = 2;
    EXPECT_EQ(
        run(small, L2, 10, x_dev.get(), 3, 1, out), cudaErrorInvalidValue);
    EXPECT_EQ(
        run(model, L2, -1, x_dev.get(), 3, 1, out), cudaErrorInvalidValue);
    EXPECT_EQ(run(model, L2, 10, nullptr, 3, 1, out), cudaErrorInvalidValue);
    kn::AssignOutput no_index = out;
    no_index.top_index = nullptr;
    EXPECT_EQ(
        run(model, L2, 10, x_dev.get(), 3, 1, no_index), cudaErrorInvalidValue);
    kn::AssignModel bad = model;
    bad.d = 0;
    EXPECT_EQ(run(bad, L2, 10, x_dev.get(), 1, 1, out), cudaErrorInvalidValue);
    bad = model;
    bad.k = 0;
    EXPECT_EQ(run(bad, L2, 10, x_dev.get(), 1, 1, out), cudaErrorInvalidValue);
    bad = model;
    bad.means = nullptr;
    EXPECT_EQ(run(bad, L2, 10, x_dev.get(), 1, 1, out), cudaErrorInvalidValue);
    bad = model;
    bad.log_const = nullptr;
    EXPECT_EQ(run(bad, LJ, 10, x_dev.get(), 1, 1, out), cudaErrorInvalidValue);
    bad = model;
    bad.inv_var = nullptr;
    EXPECT_EQ(run(bad, LJ, 10, x_dev.get(), 1, 1, out), cudaErrorInvalidValue);
    EXPECT_EQ(
        run(model, LJ, 10, x_dev.get(), 1, 0, out), cudaErrorInvalidValue);
    EXPECT_EQ(
        run(model, LJ, 10, x_dev.get(), 1, NAN, out), cudaErrorInvalidValue);
    EXPECT_EQ(
        run(model, kn::AssignScore(7), 10, x_dev.get(), 1, 1, out),
        cudaErrorInvalidValue);
    // Nothing above left a sticky error behind.
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

/// Exact double L2 distance between two rows.
double l2_double(const float* a, const float* b, int d) {
    double s = 0;
    for (int l = 0; l < d; l++) {
        const double diff = double(a[l]) - b[l];
        s += diff * diff;
    }
    return s;
}

double squared_norm(const float* a, int d) {
    double s = 0;
    for (int l = 0; l < d; l++) {
        s += double(a[l]) * a[l];
    }
    return s;
}

/**
 * The GPU labels are the exact (double) nearest neighbours up to 1e-5
 * relative; they equal faiss::IndexFlatL2's except where the exact
 * distances of the two candidates are within 1e-5 relative or within the
 * rounding of the CPU's |q|^2 - 2 q.y + |y|^2 expansion (~1e-6 of the
 * squared norms: with d = 3 and norms far larger than the distances, the
 * CPU itself misorders close pairs).
 */
TEST(GpuIndexFlatL2, SearchMatchesIndexFlatL2) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    for (int d : {3, 64, 130}) {
        SCOPED_TRACE("d=" + std::to_string(d));
        const int nb = 3000, nq = 500;
        const std::vector<float> base = random_points(d, nb, 11 + d);
        const std::vector<float> queries = random_points(d, nq, 12 + d);
        faiss::IndexFlatL2 cpu(d);
        cpu.add(nb, base.data());
        gpu::GpuIndexFlatL2 g(d);
        // Two adds (append) and a small batch size (several batches).
        g.add(1000, base.data());
        g.add(nb - 1000, base.data() + size_t(1000) * d);
        g.search_batch_bytes = 64 * 1024;
        EXPECT_EQ(g.ntotal, nb);
        // Exact sorted distances of every query.
        std::vector<std::vector<double>> exact(nq);
        for (int i = 0; i < nq; i++) {
            exact[i].resize(nb);
            for (int j = 0; j < nb; j++) {
                exact[i][j] = l2_double(
                    queries.data() + size_t(i) * d,
                    base.data() + size_t(j) * d,
                    d);
            }
            std::sort(exact[i].begin(), exact[i].end());
        }
        for (int k : {1, 5, 16}) {
            std::vector<float> dc(size_t(nq) * k), dg(size_t(nq) * k);
            std::vector<idx_t> lc(size_t(nq) * k), lg(size_t(nq) * k);
            cpu.search(nq, queries.data(), k, dc.data(), lc.data());
            g.search(nq, queries.data(), k, dg.data(), lg.data());
            int reported = 0;
            for (size_t e = 0; e < lc.size() && reported < 10; e++) {
                const size_t i = e / k, rank = e % k;
                const float* q = queries.data() + i * d;
                ASSERT_TRUE(lg[e] >= 0 && lg[e] < nb);
                const float* yg = base.data() + size_t(lg[e]) * d;
                const float* yc = base.data() + size_t(lc[e]) * d;
                const double exact_g = l2_double(q, yg, d);
                const double exact_c = l2_double(q, yc, d);
                const double tol = 1e-5 * exact[i][rank] + 1e-6;
                bool ok = std::fabs(exact_g - exact[i][rank]) <= tol &&
                          std::fabs(dg[e] - exact_g) <= tol;
                if (lg[e] != lc[e]) {
                    const double cpu_rounding =
                        1e-6 * (2 * squared_norm(q, d) + squared_norm(yg, d) +
                                squared_norm(yc, d));
                    ok = ok && std::fabs(exact_g - exact_c) <=
                                   1e-5 * exact_c + cpu_rounding;
                }
                EXPECT_TRUE(ok) << "k=" << k << " query " << i << " rank "
                                << rank << ": gpu " << lg[e] << " (exact "
                                << exact_g << ", returned " << dg[e]
                                << "), cpu " << lc[e] << " (exact " << exact_c
                                << "), exact rank distance " << exact[i][rank];
                reported += !ok;
            }
        }
    }
}

TEST(GpuIndexFlatL2, PaddingResetAndErrors) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 8;
    const std::vector<float> base = random_points(d, 3, 1);
    gpu::GpuIndexFlatL2 g(d);
    std::vector<float> dist(10);
    std::vector<idx_t> lab(10);
    // Empty index: all padding.
    g.search(1, base.data(), 10, dist.data(), lab.data());
    for (int j = 0; j < 10; j++) {
        EXPECT_EQ(lab[j], -1);
    }
    g.add(3, base.data());
    g.search(1, base.data() + d, 10, dist.data(), lab.data());
    EXPECT_EQ(lab[0], 1);
    EXPECT_EQ(dist[0], 0.f);
    for (int j = 3; j < 10; j++) {
        EXPECT_EQ(lab[j], -1);
        EXPECT_EQ(dist[j], std::numeric_limits<float>::max());
    }
    g.reset();
    EXPECT_EQ(g.ntotal, 0);
    g.add(1, base.data() + 2 * d);
    g.search(1, base.data(), 1, dist.data(), lab.data());
    EXPECT_EQ(lab[0], 0);
    try {
        g.search(1, base.data(), 17, dist.data(), lab.data());
        FAIL() << "k = 17 accepted";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find("k = 17"), std::string::npos)
            << e.what();
        EXPECT_NE(std::string(e.what()).find("16"), std::string::npos)
            << e.what();
    }
    EXPECT_THROW(g.reconstruct(0, dist.data()), faiss::FaissException);
    EXPECT_THROW(gpu::GpuIndexFlatL2(0), faiss::FaissException);
    EXPECT_THROW(gpu::GpuIndexFlatL2(4, 1 << 20), faiss::FaissException);
}

/// Well-separated blobs (centres ~17 apart, radius ~4) near the origin, so
/// that the CPU's |x|^2 - 2 x.c + |c|^2 distances err by ~1e-5 only and no
/// point is a near-tie between two centroids: k-means then takes the same
/// steps whatever finds the nearest means.
std::vector<float> blobs(int d, int k, int64_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    std::vector<float> centers(size_t(k) * d);
    for (auto& c : centers) {
        c = 3.0f * normal(rng);
    }
    std::vector<float> x(size_t(n) * d);
    for (int64_t i = 0; i < n; i++) {
        const int j = int(i % k);
        for (int l = 0; l < d; l++) {
            x[size_t(i) * d + l] = centers[size_t(j) * d + l] + normal(rng);
        }
    }
    return x;
}

void expect_models_near(
    const GaussianMixture& a, const GaussianMixture& b, double rel) {
    ASSERT_EQ(a.means.size(), b.means.size());
    for (size_t e = 0; e < a.means.size(); e++) {
        EXPECT_NEAR(a.means[e], b.means[e], rel * (1 + std::fabs(a.means[e])))
            << "mean entry " << e;
    }
    for (size_t e = 0; e < a.variances.size(); e++) {
        EXPECT_NEAR(a.variances[e], b.variances[e], rel * a.variances[e])
            << "variance entry " << e;
    }
    for (size_t e = 0; e < a.weights.size(); e++) {
        EXPECT_NEAR(a.weights[e], b.weights[e], rel * a.weights[e])
            << "weight " << e;
    }
    EXPECT_EQ(a.variance_floor, b.variance_floor);
}

TEST(GpuKMeansInit, SameModelAsCpuInit) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 16, k = 12;
    const int64_t n = 6000;
    const std::vector<float> x = blobs(d, k, n, 5);
    for (GmmInit init : {GmmInit::KMeans, GmmInit::Random}) {
        for (CovarianceType cov :
             {CovarianceType::Spherical, CovarianceType::Diagonal}) {
            SCOPED_TRACE(
                std::string(gmm_init_name(init)) + " " +
                covariance_type_name(cov));
            GmmParameters params;
            params.init = init;
            params.covariance = cov;
            GaussianMixture cpu(d, k, cov), gpu_init(d, k, cov);
            initialize_gmm(&cpu, n, x.data(), params);
            gpu::GpuIndexFlatL2 index(d);
            initialize_gmm(&gpu_init, n, x.data(), params, &index);
            expect_models_near(cpu, gpu_init, 1e-5);
            // The index is left holding the initial means.
            EXPECT_EQ(index.ntotal, k);
        }
    }
}

TEST(GpuKMeansInit, TrainerLogLikelihoodMatchesCpuTrainer) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 24, k = 16;
    const int64_t n = 20000;
    const std::vector<float> x = blobs(d, k, n, 9);
    for (CovarianceType cov :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        SCOPED_TRACE(covariance_type_name(cov));
        GmmParameters params;
        params.covariance = cov;
        params.niter = 8;
        params.tol = 0;
        GaussianMixture cpu(d, k, cov), g(d, k, cov);
        cpu.train(n, x.data(), params);
        // fp32: the reference precision (the bf16 default differs by more)
        gpu::GpuEmConfig config;
        config.precision = gpu::EStepPrecision::FP32;
        gpu::train_gmm_gpu(&g, n, x.data(), params, config);
        ASSERT_EQ(g.iteration_stats.size(), cpu.iteration_stats.size());
        const double ll_cpu = cpu.iteration_stats.back().log_likelihood;
        const double ll_gpu = g.iteration_stats.back().log_likelihood;
        EXPECT_LE(std::fabs(ll_gpu - ll_cpu), 1e-4 * std::fabs(ll_cpu));
    }
}

/// Argument checks of the assignment index (no GPU needed).
TEST(InitAssignIndex, ChecksDimensionAndMetric) {
    const int d = 6, k = 4;
    const int64_t n = 400;
    const std::vector<float> x = blobs(d, k, n, 2);
    GmmParameters params;
    GaussianMixture model(d, k, CovarianceType::Spherical);
    faiss::IndexFlatL2 wrong_d(d + 1);
    try {
        initialize_gmm(&model, n, x.data(), params, &wrong_d);
        FAIL() << "dimension mismatch accepted";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find("7"), std::string::npos)
            << e.what();
    }
    faiss::IndexFlatIP inner_product(d);
    try {
        initialize_gmm(&model, n, x.data(), params, &inner_product);
        FAIL() << "inner-product index accepted";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find("METRIC_L2"), std::string::npos)
            << e.what();
    }
    // A CPU IndexFlatL2 given explicitly is the default path.
    faiss::IndexFlatL2 explicit_index(d);
    GaussianMixture a(d, k, CovarianceType::Spherical),
        b(d, k, CovarianceType::Spherical);
    initialize_gmm(&a, n, x.data(), params);
    initialize_gmm(&b, n, x.data(), params, &explicit_index);
    EXPECT_EQ(a.means, b.means);
    EXPECT_EQ(a.variances, b.variances);
    EXPECT_EQ(a.weights, b.weights);
}

} // namespace
