/**
 * GPU search kernels (kernels/select_k.h, kernels/ivf_search.h) against
 * simple CPU references on random data: top-k selection (ties, NaN, short
 * and long segments), coarse scores, adaptive probe cuts, probe preparation
 * (repeats, max_codes, offsets) and a full scan + select over hand-built
 * lists with spill records, compared with the CPU semantics of
 * IndexIVFGMM's probe loop. Every test skips when no CUDA device is usable.
 */

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <cuda_runtime.h>

#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <kernels/ivf_search.h>
#include <kernels/select_k.h>

#include "test_utils.h"

using namespace faiss_gmm::kernels;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

/// Device copy of a host vector (or n uninitialised elements), freed on
/// destruction.
template <typename T>
struct DeviceArray {
    T* ptr = nullptr;
    size_t size = 0;

    explicit DeviceArray(size_t n) : size(n) {
        EXPECT_EQ(
            cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
    }
    explicit DeviceArray(const std::vector<T>& host)
        : DeviceArray(host.size()) {
        upload(host);
    }
    ~DeviceArray() {
        cudaFree(ptr);
    }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;

    void upload(const std::vector<T>& host) {
        ASSERT_EQ(host.size(), size);
        EXPECT_EQ(
            cudaMemcpy(
                ptr, host.data(), size * sizeof(T), cudaMemcpyHostToDevice),
            cudaSuccess);
    }
    std::vector<T> download() const {
        std::vector<T> host(size);
        EXPECT_EQ(
            cudaMemcpy(
                host.data(), ptr, size * sizeof(T), cudaMemcpyDeviceToHost),
            cudaSuccess);
        return host;
    }
};

/// Reference top-k: stable order of the selectable keys (not NaN, not
/// +inf), padded with (+inf, -1).
void reference_select(
    const float* keys,
    const int64_t* values,
    int64_t n,
    int k,
    float* out_keys,
    int64_t* out_values) {
    std::vector<int64_t> order;
    for (int64_t i = 0; i < n; i++) {
        if (!std::isnan(keys[i]) && keys[i] != kInf) {
            order.push_back(i);
        }
    }
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return keys[a] < keys[b];
    });
    for (int j = 0; j < k; j++) {
        if (size_t(j) < order.size()) {
            out_keys[j] = keys[order[j]];
            out_values[j] = values ? values[order[j]] : order[j];
        } else {
            out_keys[j] = kInf;
            out_values[j] = -1;
        }
    }
}

/// Runs select_k_segments and checks it against reference_select.
void check_select(
    const std::vector<float>& keys,
    const std::vector<int64_t>& offsets, // empty: fixed length
    int64_t fixed_length,
    int64_t nseg,
    const std::vector<int64_t>* values,
    int k) {
    DeviceArray<float> d_keys(keys);
    DeviceArray<int64_t> d_offsets(offsets);
    std::vector<int64_t> no_values;
    DeviceArray<int64_t> d_values(values ? *values : no_values);
    DeviceArray<float> d_out_keys(size_t(nseg) * k);
    DeviceArray<int64_t> d_out_values(size_t(nseg) * k);
    Segments segments;
    segments.count = nseg;
    segments.offsets = offsets.empty() ? nullptr : d_offsets.ptr;
    segments.length = fixed_length;
    const size_t ws_bytes = select_k_workspace_bytes(segments, k);
    DeviceArray<char> workspace(ws_bytes);
    ASSERT_EQ(
        select_k_segments(
            segments,
            d_keys.ptr,
            values ? d_values.ptr : nullptr,
            k,
            d_out_keys.ptr,
            d_out_values.ptr,
            workspace.ptr,
            ws_bytes,
            nullptr),
        cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<float> out_keys = d_out_keys.download();
    const std::vector<int64_t> out_values = d_out_values.download();
    std::vector<float> ref_keys(k);
    std::vector<int64_t> ref_values(k);
    for (int64_t s = 0; s < nseg; s++) {
        const int64_t begin = offsets.empty() ? s * fixed_length : offsets[s];
        const int64_t n =
            offsets.empty() ? fixed_length : offsets[s + 1] - begin;
        reference_select(
            keys.data() + begin,
            values ? values->data() + begin : nullptr,
            n,
            k,
            ref_keys.data(),
            ref_values.data());
        for (int j = 0; j < k; j++) {
            ASSERT_EQ(out_values[s * k + j], ref_values[j])
                << "k=" << k << " segment " << s << " (length " << n
                << ") rank " << j;
            ASSERT_EQ(out_keys[s * k + j], ref_keys[j])
                << "k=" << k << " segment " << s << " rank " << j;
        }
    }
}

/// Segment keys of one of several kinds: 0 continuous, 1 few distinct
/// values (many ties), 2 continuous with NaN / +inf / -0 / +0 sprinkled,
/// 3 all NaN, 4 NaN but for about 1% continuous keys.
std::vector<float> segment_keys(int64_t n, int kind, std::mt19937_64& rng) {
    std::vector<float> keys(n);
    std::normal_distribution<float> normal;
    std::uniform_int_distribution<int> few(0, 63);
    std::uniform_int_distribution<int> pick(0, 9);
    for (auto& v : keys) {
        switch (kind) {
        case 0:
            v = normal(rng);
            break;
        case 1:
            v = float(few(rng)) * 0.25f - 3.0f;
            break;
        case 2: {
            const int p = pick(rng);
            v = p == 0   ? std::numeric_limits<float>::quiet_NaN()
                : p == 1 ? kInf
                : p == 2 ? -0.0f
                : p == 3 ? 0.0f
                         : normal(rng);
            break;
        }
        case 3:
            v = std::numeric_limits<float>::quiet_NaN();
            break;
        default:
            v = pick(rng) == 0 && pick(rng) == 0
                    ? normal(rng)
                    : std::numeric_limits<float>::quiet_NaN();
        }
    }
    return keys;
}

TEST(GpuSelectK, SegmentsOfEveryLengthAgainstStableSort) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    std::mt19937_64 rng(11);
    for (int k : {1, 10, 100, 1024, 2048}) {
        // short (sorted whole) and long (radix) segments of every kind
        std::vector<int64_t> lengths = {
            0, 5, k, 100000, 100000, 100000, 3000, 100000, 100000};
        std::vector<int> kinds = {0, 1, 2, 0, 1, 2, 1, 3, 4};
        if (k > 1) {
            lengths.push_back(k - 1);
            kinds.push_back(2);
        }
        std::vector<float> keys;
        std::vector<int64_t> offsets = {0};
        for (size_t s = 0; s < lengths.size(); s++) {
            const std::vector<float> part =
                segment_keys(lengths[s], kinds[s], rng);
            keys.insert(keys.end(), part.begin(), part.end());
            offsets.push_back(int64_t(keys.size()));
        }
        std::vector<int64_t> values(keys.size());
        std::uniform_int_distribution<int64_t> id(0, int64_t(1) << 40);
        for (auto& v : values) {
            v = id(rng);
        }
        const int64_t nseg = int64_t(lengths.size());
        check_select(keys, offsets, 0, nseg, &values, k);
        check_select(keys, offsets, 0, nseg, nullptr, k);
    }
}

TEST(GpuSelectK, FixedLengthSegmentsWithTies) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    std::mt19937_64 rng(12);
    for (int64_t length : {int64_t(7), int64_t(2048), int64_t(5000)}) {
        const int64_t nseg = 9;
        std::vector<float> keys;
        for (int64_t s = 0; s < nseg; s++) {
            const std::vector<float> part =
                segment_keys(length, int(s % 3), rng);
            keys.insert(keys.end(), part.begin(), part.end());
        }
        for (int k : {1, 16, 100}) {
            check_select(keys, {}, length, nseg, nullptr, k);
        }
    }
}

TEST(GpuSelectK, RejectsBadArguments) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    Segments segments;
    segments.count = 1;
    segments.length = 4;
    DeviceArray<float> keys(4);
    DeviceArray<float> out_keys(kSelectMaxK + 1);
    DeviceArray<int64_t> out_values(kSelectMaxK + 1);
    for (int k : {0, -1, kSelectMaxK + 1}) {
        EXPECT_EQ(
            select_k_segments(
                segments,
                keys.ptr,
                nullptr,
                k,
                out_keys.ptr,
                out_values.ptr,
                nullptr,
                0,
                nullptr),
            cudaErrorInvalidValue)
            << "k=" << k;
    }
}

/// Coarse model data on the host for one query tile.
struct CoarseCase {
    int d = 20, nlist = 300;
    int64_t nq = 37;
    std::vector<float> queries, means, variances, weights;
};

CoarseCase make_coarse_case(bool diagonal, std::mt19937_64& rng) {
    CoarseCase c;
    std::normal_distribution<float> normal;
    std::uniform_real_distribution<float> uni(0.5f, 2.0f);
    c.queries.resize(size_t(c.nq) * c.d);
    c.means.resize(size_t(c.nlist) * c.d);
    c.variances.resize(size_t(c.nlist) * (diagonal ? c.d : 1));
    c.weights.resize(c.nlist);
    for (auto& v : c.queries) {
        v = normal(rng);
    }
    for (auto& v : c.means) {
        v = normal(rng);
    }
    for (auto& v : c.variances) {
        v = uni(rng);
    }
    double sum = 0;
    for (auto& w : c.weights) {
        w = uni(rng);
        sum += w;
    }
    for (auto& w : c.weights) {
        w = float(w / sum);
    }
    return c;
}

void run_coarse(
    const CoarseModel& host_model,
    const std::vector<float>& query_norms,
    int64_t nq,
    std::vector<float>& products) {
    DeviceArray<float> d_products(products);
    DeviceArray<float> d_norms(query_norms);
    ASSERT_EQ(
        ivf_coarse_scores(host_model, nq, d_norms.ptr, d_products.ptr, nullptr),
        cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    products = d_products.download();
}

TEST(GpuCoarseScores, L2SphericalAndDiagonalAgainstDirectFormulas) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    std::mt19937_64 rng(21);
    const double log2pi = std::log(6.283185307179586);
    for (int mode = 0; mode < 3; mode++) { // L2, spherical, diagonal
        const bool diagonal = mode == 2;
        const CoarseCase c = make_coarse_case(diagonal, rng);
        const int d = c.d, nlist = c.nlist;
        const int64_t nq = c.nq;
        std::vector<float> qn(nq), mn(nlist), lc(nlist), iv(nlist), mnw(nlist);
        for (int64_t i = 0; i < nq; i++) {
            double s = 0;
            for (int t = 0; t < d; t++) {
                s += double(c.queries[i * d + t]) * c.queries[i * d + t];
            }
            qn[i] = float(s);
        }
        for (int j = 0; j < nlist; j++) {
            double s = 0, sw = 0, logdet = 0;
            for (int t = 0; t < d; t++) {
                const double m = c.means[size_t(j) * d + t];
                const double v =
                    diagonal ? c.variances[size_t(j) * d + t] : c.variances[j];
                s += m * m;
                sw += m * m / v;
                logdet += std::log(v) + log2pi;
            }
            mn[j] = float(s);
            mnw[j] = float(sw);
            lc[j] = float(std::log(double(c.weights[j])) - 0.5 * logdet);
            iv[j] = float(1.0 / c.variances[diagonal ? size_t(j) * d : j]);
        }
        // the host's GEMM, on the CPU: q . mu, or [q | q^2] . [mu/v | -1/2v]
        std::vector<float> products(size_t(nq) * nlist);
        for (int64_t i = 0; i < nq; i++) {
            for (int j = 0; j < nlist; j++) {
                double p = 0;
                for (int t = 0; t < d; t++) {
                    const double q = c.queries[i * d + t];
                    const double m = c.means[size_t(j) * d + t];
                    if (diagonal) {
                        const double v = c.variances[size_t(j) * d + t];
                        p += q * m / v - 0.5 * q * q / v;
                    } else {
                        p += q * m;
                    }
                }
                products[i * nlist + j] = float(p);
            }
        }
        DeviceArray<float> d_mn(mn), d_lc(lc), d_iv(iv), d_mnw(mnw);
        CoarseModel model;
        model.d = d;
        model.nlist = nlist;
        model.log_joint = mode > 0;
        model.diagonal = diagonal;
        model.mean_norms = diagonal ? nullptr : d_mn.ptr;
        model.log_const = mode > 0 ? d_lc.ptr : nullptr;
        model.inv_var = mode == 1 ? d_iv.ptr : nullptr;
        model.mean_norms_weighted = diagonal ? d_mnw.ptr : nullptr;
        run_coarse(model, qn, nq, products);
        for (int64_t i = 0; i < nq; i++) {
            for (int j = 0; j < nlist; j++) {
                double dis = 0, maha = 0, logdet = 0;
                for (int t = 0; t < d; t++) {
                    const double e = double(c.queries[i * d + t]) -
                                     c.means[size_t(j) * d + t];
                    const double v = diagonal ? c.variances[size_t(j) * d + t]
                                              : c.variances[j];
                    dis += e * e;
                    maha += e * e / v;
                    logdet += std::log(v) + log2pi;
                }
                const double log_joint =
                    std::log(double(c.weights[j])) - 0.5 * logdet - 0.5 * maha;
                const double expected = mode == 0 ? dis : -log_joint;
                EXPECT_NEAR(
                    products[i * nlist + j],
                    expected,
                    1e-4 * (1 + std::fabs(expected)))
                    << "mode " << mode << " query " << i << " list " << j;
            }
        }
    }
}

TEST(GpuCoarseScores, RowSquaredNorms) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    std::mt19937_64 rng(22);
    std::normal_distribution<float> normal;
    for (int d : {1, 33, 130}) {
        const int64_t n = 1001;
        std::vector<float> x(size_t(n) * d);
        for (auto& v : x) {
            v = normal(rng);
        }
        DeviceArray<float> d_x(x);
        DeviceArray<float> d_out(n);
        ASSERT_EQ(
            row_squared_norms(n, d, d_x.ptr, d_out.ptr, nullptr), cudaSuccess);
        const std::vector<float> out = d_out.download();
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int t = 0; t < d; t++) {
                s += double(x[i * d + t]) * x[i * d + t];
            }
            EXPECT_NEAR(out[i], s, 1e-5 * (1 + s)) << "d=" << d << " row " << i;
        }
    }
}

/// CPU reference of the adaptive cuts (IndexIVFGMM::coarse_assign).
void reference_cut(
    int64_t nq,
    int nprobe,
    std::vector<int32_t>& probes,
    std::vector<float>& scores,
    float ratio,
    const std::vector<float>& log_joint_scores,
    int nlist,
    float mass,
    float temperature) {
    for (int64_t i = 0; i < nq; i++) {
        int32_t* ai = probes.data() + i * nprobe;
        float* di = scores.data() + i * nprobe;
        if (ratio > 0) {
            for (int r = 1; r < nprobe; r++) {
                if (ai[r] >= 0 && di[r] > ratio * di[0]) {
                    ai[r] = -1;
                    di[r] = kInf;
                }
            }
        }
        if (mass > 0) {
            const float* row = log_joint_scores.data() + i * nlist;
            float max_lj = -kInf;
            for (int j = 0; j < nlist; j++) {
                max_lj = std::max(max_lj, -row[j]);
            }
            const double inv_temperature = 1.0 / double(temperature);
            double sum = 0;
            for (int j = 0; j < nlist; j++) {
                sum += std::exp((double(-row[j]) - max_lj) * inv_temperature);
            }
            double cumulated = 0;
            for (int r = 0; r < nprobe; r++) {
                if (cumulated >= mass) {
                    ai[r] = -1;
                    di[r] = kInf;
                } else if (ai[r] >= 0) {
                    cumulated +=
                        std::exp(
                            (double(-row[ai[r]]) - max_lj) * inv_temperature) /
                        sum;
                }
            }
        }
    }
}

TEST(GpuCutProbes, DistanceRatioAndPosteriorMass) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    std::mt19937_64 rng(31);
    const int64_t nq = 50;
    const int nlist = 64, nprobe = 20;
    std::uniform_real_distribution<float> uni(0.0f, 30.0f);
    std::vector<float> lj_scores(size_t(nq) * nlist);
    for (auto& v : lj_scores) {
        v = uni(rng);
    }
    // probes: the lists in ascending negated log-joint order (as select_k
    // makes them); L2 scores: that order's own ascending positive values
    std::vector<int32_t> probes(size_t(nq) * nprobe);
    std::vector<float> scores(size_t(nq) * nprobe);
    for (int64_t i = 0; i < nq; i++) {
        std::vector<int32_t> order(nlist);
        std::iota(order.begin(), order.end(), 0);
        const float* row = lj_scores.data() + i * nlist;
        std::stable_sort(order.begin(), order.end(), [row](int a, int b) {
            return row[a] < row[b];
        });
        float s = 0.5f + uni(rng) * 0.1f;
        for (int r = 0; r < nprobe; r++) {
            probes[i * nprobe + r] = r == 7 ? -1 : order[r];
            scores[i * nprobe + r] = r == 7 ? kInf : s;
            s += uni(rng) * 0.02f;
        }
    }
    struct Setting {
        float ratio, mass, temperature;
    };
    for (const Setting& st :
         {Setting{1.5f, 0, 1},
          Setting{0, 0.9f, 2.0f},
          Setting{0, 0.5f, 1.0f},
          Setting{1.3f, 0.95f, 4.0f}}) {
        std::vector<int32_t> ref_probes = probes;
        std::vector<float> ref_scores = scores;
        reference_cut(
            nq,
            nprobe,
            ref_probes,
            ref_scores,
            st.ratio,
            lj_scores,
            nlist,
            st.mass,
            st.temperature);
        DeviceArray<int32_t> d_probes(probes);
        DeviceArray<float> d_scores(scores);
        DeviceArray<float> d_lj(lj_scores);
        ASSERT_EQ(
            ivf_cut_probes(
                nq,
                nprobe,
                d_probes.ptr,
                d_scores.ptr,
                st.ratio,
                d_lj.ptr,
                nlist,
                st.mass,
                st.temperature,
                nullptr),
            cudaSuccess);
        EXPECT_EQ(d_probes.download(), ref_probes)
            << "ratio " << st.ratio << " mass " << st.mass;
        EXPECT_EQ(d_scores.download(), ref_scores)
            << "ratio " << st.ratio << " mass " << st.mass;
        // the cuts must have dropped something and kept something
        const auto kept =
            std::count_if(ref_probes.begin(), ref_probes.end(), [](int32_t l) {
                return l >= 0;
            });
        EXPECT_GT(kept, nq);
        EXPECT_LT(kept, nq * (nprobe - 1));
    }
}

/// Host inverted lists with spill records, and their device copy (all
/// lists in one buffer; odd lists start 4 bytes past a 16-byte boundary,
/// which exercises the scalar fallback of the scan).
struct HostLists {
    int d = 0, nlist = 0, width = 0;
    std::vector<std::vector<float>> vectors;
    std::vector<std::vector<int64_t>> ids;
    std::vector<std::vector<int32_t>> records;
};

HostLists
make_lists(int d, int nlist, int64_t nvec, int width, std::mt19937_64& rng) {
    HostLists h;
    h.d = d;
    h.nlist = nlist;
    h.width = width;
    h.vectors.resize(nlist);
    h.ids.resize(nlist);
    h.records.resize(nlist);
    std::normal_distribution<float> normal;
    std::uniform_int_distribution<int> list(0, nlist - 2); // last stays empty
    std::uniform_int_distribution<int> copies(1, width + 1);
    for (int64_t v = 0; v < nvec; v++) {
        std::vector<float> x(d);
        for (auto& e : x) {
            e = normal(rng);
        }
        std::vector<int> lists;
        const int c = copies(rng);
        while (int(lists.size()) < c) {
            const int l = list(rng);
            if (std::find(lists.begin(), lists.end(), l) == lists.end()) {
                lists.push_back(l);
            }
        }
        for (int l : lists) {
            h.vectors[l].insert(h.vectors[l].end(), x.begin(), x.end());
            h.ids[l].push_back(1000 + v);
            // the vector's other lists, then -1
            int written = 0;
            for (int o : lists) {
                if (o != l) {
                    h.records[l].push_back(o);
                    written++;
                }
            }
            for (; written < width; written++) {
                h.records[l].push_back(-1);
            }
        }
    }
    return h;
}

struct DeviceLists {
    DeviceArray<float> vector_pool;
    DeviceArray<int64_t> id_pool;
    DeviceArray<int32_t> record_pool;
    DeviceArray<const float*> vector_ptrs;
    DeviceArray<const int64_t*> id_ptrs;
    DeviceArray<const int32_t*> record_ptrs;
    DeviceArray<int32_t> lengths;
    IvfListsView view;

    static size_t pool_floats(const HostLists& h) {
        size_t n = 0;
        for (const auto& v : h.vectors) {
            n += v.size() + 8;
        }
        return n;
    }
    static size_t pool_size(const HostLists& h, bool records) {
        size_t n = 0;
        for (int l = 0; l < h.nlist; l++) {
            n += records ? h.records[l].size() : h.ids[l].size();
        }
        return n;
    }

    explicit DeviceLists(const HostLists& h)
        : vector_pool(pool_floats(h)),
          id_pool(pool_size(h, false)),
          record_pool(pool_size(h, true)),
          vector_ptrs(h.nlist),
          id_ptrs(h.nlist),
          record_ptrs(h.nlist),
          lengths(h.nlist) {
        std::vector<const float*> vp(h.nlist);
        std::vector<const int64_t*> ip(h.nlist);
        std::vector<const int32_t*> rp(h.nlist);
        std::vector<int32_t> len(h.nlist);
        size_t fo = 0, io = 0, ro = 0;
        for (int l = 0; l < h.nlist; l++) {
            fo = (fo + 3) / 4 * 4 + (l % 2); // odd lists misaligned
            vp[l] = vector_pool.ptr + fo;
            ip[l] = id_pool.ptr + io;
            rp[l] = record_pool.ptr + ro;
            len[l] = int32_t(h.ids[l].size());
            EXPECT_EQ(
                cudaMemcpy(
                    vector_pool.ptr + fo,
                    h.vectors[l].data(),
                    h.vectors[l].size() * sizeof(float),
                    cudaMemcpyHostToDevice),
                cudaSuccess);
            EXPECT_EQ(
                cudaMemcpy(
                    id_pool.ptr + io,
                    h.ids[l].data(),
                    h.ids[l].size() * sizeof(int64_t),
                    cudaMemcpyHostToDevice),
                cudaSuccess);
            EXPECT_EQ(
                cudaMemcpy(
                    record_pool.ptr + ro,
                    h.records[l].data(),
                    h.records[l].size() * sizeof(int32_t),
                    cudaMemcpyHostToDevice),
                cudaSuccess);
            fo += h.vectors[l].size();
            io += h.ids[l].size();
            ro += h.records[l].size();
        }
        vector_ptrs.upload(vp);
        id_ptrs.upload(ip);
        record_ptrs.upload(rp);
        lengths.upload(len);
        view.d = h.d;
        view.nlist = h.nlist;
        view.record_width = h.width;
        view.codes = reinterpret_cast<const uint8_t* const*>(vector_ptrs.ptr);
        view.ids = id_ptrs.ptr;
        view.records = record_ptrs.ptr;
        view.lengths = lengths.ptr;
    }
};

/// What the CPU probe loop (scan_probed_lists) does for one query: the
/// entries it reads in order, with the duplicate flag, and its counters.
struct ReferenceScan {
    std::vector<int32_t> kept_probes; ///< probes after repeats / max_codes
    std::vector<float> keys;          ///< per scanned entry (+inf: dup)
    std::vector<int64_t> ids;         ///< per scanned entry (-1: dup)
    int64_t duplicates = 0;
    int32_t lists_visited = 0;
};

ReferenceScan reference_scan(
    const HostLists& h,
    const float* q,
    const int32_t* probes,
    int nprobe,
    int64_t max_codes) {
    ReferenceScan out;
    out.kept_probes.assign(probes, probes + nprobe);
    std::vector<int32_t> probe_rank(h.nlist, kListNotProbed);
    int64_t scanned = 0;
    int r = 0;
    for (; r < nprobe; r++) {
        const int32_t l = probes[r];
        if (l < 0 || probe_rank[l] != kListNotProbed) {
            out.kept_probes[r] = -1;
            continue;
        }
        probe_rank[l] = r;
        const int64_t n = int64_t(h.ids[l].size());
        if (n == 0) {
            continue;
        }
        out.lists_visited++;
        for (int64_t j = 0; j < n; j++) {
            const int32_t* rec = h.records[l].data() + j * h.width;
            bool dup = false;
            for (int t = 0; t < h.width && rec[t] >= 0; t++) {
                dup = dup || probe_rank[rec[t]] < r;
            }
            if (dup) {
                out.duplicates++;
                out.keys.push_back(kInf);
                out.ids.push_back(-1);
                continue;
            }
            double dis = 0;
            for (int t = 0; t < h.d; t++) {
                const double e = double(q[t]) - h.vectors[l][j * h.d + t];
                dis += e * e;
            }
            out.keys.push_back(float(dis));
            out.ids.push_back(h.ids[l][j]);
        }
        scanned += n;
        if (max_codes && scanned >= max_codes) {
            break;
        }
    }
    for (r++; r < nprobe; r++) {
        out.kept_probes[r] = -1;
    }
    return out;
}

TEST(GpuPrepareProbes, RepeatsMaxCodesAndOffsets) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    std::mt19937_64 rng(41);
    const HostLists h = make_lists(4, 40, 300, 0, rng);
    DeviceLists dl(h);
    const int64_t nq = 13;
    for (int nprobe : {16, 100}) {
        std::uniform_int_distribution<int> list(-1, h.nlist - 1);
        std::vector<int32_t> probes(size_t(nq) * nprobe);
        for (auto& p : probes) {
            p = list(rng); // repeats and -1 included
        }
        for (int64_t max_codes : {int64_t(0), int64_t(37), int64_t(1)}) {
            DeviceArray<int32_t> d_probes(probes);
            DeviceArray<int32_t> d_rank(
                std::vector<int32_t>(size_t(nq) * h.nlist, kListNotProbed));
            DeviceArray<int64_t> d_offsets(size_t(nq) * nprobe);
            DeviceArray<int64_t> d_seglen(nq);
            DeviceArray<int32_t> d_visited(nq);
            ASSERT_EQ(
                ivf_prepare_probes(
                    dl.view,
                    nq,
                    nprobe,
                    max_codes,
                    d_probes.ptr,
                    d_rank.ptr,
                    d_offsets.ptr,
                    d_seglen.ptr,
                    d_visited.ptr,
                    nullptr),
                cudaSuccess);
            const std::vector<int32_t> out_probes = d_probes.download();
            const std::vector<int32_t> rank = d_rank.download();
            const std::vector<int64_t> offsets = d_offsets.download();
            const std::vector<int64_t> seglen = d_seglen.download();
            const std::vector<int32_t> visited = d_visited.download();
            std::vector<float> q(h.d, 0.0f);
            for (int64_t i = 0; i < nq; i++) {
                const ReferenceScan ref = reference_scan(
                    h, q.data(), probes.data() + i * nprobe, nprobe, max_codes);
                int64_t pos = 0;
                for (int r = 0; r < nprobe; r++) {
                    const int32_t l = ref.kept_probes[r];
                    ASSERT_EQ(out_probes[i * nprobe + r], l)
                        << "max_codes " << max_codes << " query " << i
                        << " probe " << r;
                    ASSERT_EQ(offsets[i * nprobe + r], pos)
                        << "query " << i << " probe " << r;
                    if (l >= 0) {
                        EXPECT_EQ(rank[i * h.nlist + l], r);
                        pos += int64_t(h.ids[l].size());
                    }
                }
                EXPECT_EQ(seglen[i], pos);
                EXPECT_EQ(int64_t(ref.keys.size()), pos);
                EXPECT_EQ(visited[i], ref.lists_visited);
                int64_t ranked = 0;
                for (int l = 0; l < h.nlist; l++) {
                    ranked += rank[i * h.nlist + l] != kListNotProbed;
                }
                EXPECT_EQ(
                    ranked,
                    std::count_if(
                        ref.kept_probes.begin(),
                        ref.kept_probes.end(),
                        [](int32_t l) { return l >= 0; }));
            }
            ASSERT_EQ(
                ivf_clear_probe_ranks(
                    nq, nprobe, h.nlist, d_probes.ptr, d_rank.ptr, nullptr),
                cudaSuccess);
            const std::vector<int32_t> cleared = d_rank.download();
            EXPECT_TRUE(
                std::all_of(cleared.begin(), cleared.end(), [](int32_t v) {
                    return v == kListNotProbed;
                }));
        }
    }
}

TEST(GpuScanLists, SpillDedupAndTopKMatchTheCpuProbeLoop) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    std::mt19937_64 rng(51);
    for (int d : {1, 13, 32, 128, 130, 4096}) {
        for (int width : {0, 2}) {
            const HostLists h = make_lists(d, 12, 600, width, rng);
            DeviceLists dl(h);
            const int64_t nq = 9;
            const int nprobe = 7, k = 10;
            std::vector<float> queries(size_t(nq) * d);
            std::normal_distribution<float> normal;
            for (auto& v : queries) {
                v = normal(rng);
            }
            std::vector<int32_t> probes(size_t(nq) * nprobe);
            for (int64_t i = 0; i < nq; i++) {
                std::vector<int32_t> perm(h.nlist);
                std::iota(perm.begin(), perm.end(), 0);
                std::shuffle(perm.begin(), perm.end(), rng);
                for (int r = 0; r < nprobe; r++) {
                    probes[i * nprobe + r] = perm[r];
                }
                if (i % 3 == 1) {
                    probes[i * nprobe + 2] = -1;
                    probes[i * nprobe + 4] = probes[i * nprobe + 1];
                }
                if (i % 3 == 2) {
                    probes[i * nprobe + 3] = h.nlist - 1; // the empty list
                }
            }
            for (int64_t max_codes : {int64_t(0), int64_t(150)}) {
                DeviceArray<float> d_queries(queries);
                DeviceArray<int32_t> d_probes(probes);
                DeviceArray<int32_t> d_rank(
                    std::vector<int32_t>(size_t(nq) * h.nlist, kListNotProbed));
                DeviceArray<int64_t> d_offsets(size_t(nq) * nprobe);
                DeviceArray<int64_t> d_seglen(nq);
                DeviceArray<int32_t> d_visited(nq);
                ASSERT_EQ(
                    ivf_prepare_probes(
                        dl.view,
                        nq,
                        nprobe,
                        max_codes,
                        d_probes.ptr,
                        d_rank.ptr,
                        d_offsets.ptr,
                        d_seglen.ptr,
                        d_visited.ptr,
                        nullptr),
                    cudaSuccess);
                const std::vector<int64_t> seglen = d_seglen.download();
                std::vector<int64_t> segoff(nq + 1, 0);
                for (int64_t i = 0; i < nq; i++) {
                    segoff[i + 1] = segoff[i] + seglen[i];
                }
                DeviceArray<int64_t> d_segoff(segoff);
                DeviceArray<float> d_keys{size_t(segoff[nq])};
                DeviceArray<int64_t> d_ids{size_t(segoff[nq])};
                DeviceArray<int64_t> d_dups(std::vector<int64_t>(nq, 0));
                ASSERT_EQ(
                    ivf_scan_lists(
                        dl.view,
                        nq,
                        d_queries.ptr,
                        nprobe,
                        0,
                        nprobe,
                        d_probes.ptr,
                        d_rank.ptr,
                        d_offsets.ptr,
                        d_segoff.ptr,
                        d_keys.ptr,
                        d_ids.ptr,
                        d_dups.ptr,
                        nullptr),
                    cudaSuccess);
                Segments segments;
                segments.count = nq;
                segments.offsets = d_segoff.ptr;
                DeviceArray<float> d_top_keys(size_t(nq) * k);
                DeviceArray<int64_t> d_top_ids(size_t(nq) * k);
                const size_t ws_bytes = select_k_workspace_bytes(segments, k);
                DeviceArray<char> workspace(ws_bytes);
                ASSERT_EQ(
                    select_k_segments(
                        segments,
                        d_keys.ptr,
                        d_ids.ptr,
                        k,
                        d_top_keys.ptr,
                        d_top_ids.ptr,
                        workspace.ptr,
                        ws_bytes,
                        nullptr),
                    cudaSuccess);
                ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                const std::vector<float> keys = d_keys.download();
                const std::vector<int64_t> ids = d_ids.download();
                const std::vector<int64_t> dups = d_dups.download();
                const std::vector<int32_t> visited = d_visited.download();
                const std::vector<float> top_keys = d_top_keys.download();
                const std::vector<int64_t> top_ids = d_top_ids.download();
                int64_t total_dups = 0;
                for (int64_t i = 0; i < nq; i++) {
                    const ReferenceScan ref = reference_scan(
                        h,
                        queries.data() + i * d,
                        probes.data() + i * nprobe,
                        nprobe,
                        max_codes);
                    const std::string where =
                        "d=" + std::to_string(d) +
                        " width=" + std::to_string(width) +
                        " max_codes=" + std::to_string(max_codes) + " query " +
                        std::to_string(i);
                    ASSERT_EQ(seglen[i], int64_t(ref.keys.size())) << where;
                    EXPECT_EQ(dups[i], ref.duplicates) << where;
                    EXPECT_EQ(visited[i], ref.lists_visited) << where;
                    total_dups += ref.duplicates;
                    for (size_t e = 0; e < ref.keys.size(); e++) {
                        ASSERT_EQ(ids[segoff[i] + e], ref.ids[e])
                            << where << " entry " << e;
                        if (ref.ids[e] < 0) {
                            ASSERT_EQ(keys[segoff[i] + e], kInf) << where;
                        } else {
                            ASSERT_NEAR(
                                keys[segoff[i] + e],
                                ref.keys[e],
                                1e-4 * (1 + ref.keys[e]))
                                << where << " entry " << e;
                        }
                    }
                    // CPU heap on the reference distances: first of equal
                    std::vector<float> ref_top_keys(k);
                    std::vector<int64_t> ref_top_ids(k);
                    reference_select(
                        ref.keys.data(),
                        ref.ids.data(),
                        int64_t(ref.keys.size()),
                        k,
                        ref_top_keys.data(),
                        ref_top_ids.data());
                    for (int j = 0; j < k; j++) {
                        // fp32 vs fp64 distances may swap near-equal ones
                        const auto near = [&](int a, int b) {
                            return b >= 0 && b < k && ref_top_ids[b] >= 0 &&
                                   std::fabs(
                                       ref_top_keys[a] - ref_top_keys[b]) <=
                                       1e-4 * (1 + ref_top_keys[a]);
                        };
                        if (!near(j, j - 1) && !near(j, j + 1)) {
                            EXPECT_EQ(top_ids[i * k + j], ref_top_ids[j])
                                << where << " rank " << j;
                        }
                        if (ref_top_ids[j] >= 0) {
                            EXPECT_NEAR(
                                top_keys[i * k + j],
                                ref_top_keys[j],
                                1e-4 * (1 + ref_top_keys[j]));
                        }
                    }
                    // every id at most once
                    std::vector<int64_t> found(
                        top_ids.begin() + i * k, top_ids.begin() + (i + 1) * k);
                    found.erase(
                        std::remove(found.begin(), found.end(), -1),
                        found.end());
                    std::sort(found.begin(), found.end());
                    EXPECT_EQ(
                        std::adjacent_find(found.begin(), found.end()),
                        found.end())
                        << where;
                }
                if (width > 0 && max_codes == 0) {
                    EXPECT_GT(total_dups, 0) << "spill not exercised";
                }
            }
        }
    }
}

TEST(GpuScanLists, LaunchersRejectBadArguments) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    IvfListsView lists;
    lists.d = 4097; // above the supported 4096
    lists.nlist = 4;
    DeviceArray<int32_t> probes(8);
    DeviceArray<float> scores(8);
    EXPECT_EQ(
        ivf_scan_lists(
            lists,
            1,
            nullptr,
            8,
            0,
            8,
            probes.ptr,
            nullptr,
            nullptr,
            nullptr,
            nullptr,
            nullptr,
            nullptr,
            nullptr),
        cudaErrorInvalidValue);
    EXPECT_EQ(
        ivf_cut_probes(
            1,
            kSelectMaxK + 1,
            probes.ptr,
            scores.ptr,
            1.5f,
            nullptr,
            4,
            0,
            1,
            nullptr),
        cudaErrorInvalidValue);
    EXPECT_EQ(
        ivf_cut_probes(
            1, 8, probes.ptr, scores.ptr, 0, nullptr, 8, 0.5f, 1, nullptr),
        cudaErrorInvalidValue)
        << "posterior_mass without log-joint scores";
    EXPECT_EQ(
        ivf_prepare_probes(
            lists,
            1,
            8,
            -1,
            probes.ptr,
            nullptr,
            nullptr,
            nullptr,
            nullptr,
            nullptr),
        cudaErrorInvalidValue)
        << "negative max_codes";
}

/// Median of 5 timed runs of launch() (CUDA events, after one warm-up).
template <class Launch>
float median_ms(Launch launch) {
    cudaEvent_t start, stop;
    EXPECT_EQ(cudaEventCreate(&start), cudaSuccess);
    EXPECT_EQ(cudaEventCreate(&stop), cudaSuccess);
    launch();
    std::vector<float> ms;
    for (int rep = 0; rep < 5; rep++) {
        cudaEventRecord(start);
        launch();
        cudaEventRecord(stop);
        cudaEventSynchronize(stop);
        float t = 0;
        cudaEventElapsedTime(&t, start, stop);
        ms.push_back(t);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(ms.begin(), ms.end());
    return ms[2];
}

// Prints the scan's bandwidth next to the device-to-device copy bandwidth
// (issue 5 target: >= 50%) for 1000 queries x 16 probes of 256 lists of
// 2000 x 128 floats; asserts only that the launches succeed and one entry.
TEST(GpuScanLists, ReportsBandwidthAgainstDeviceCopy) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 128, nlist = 256, list_len = 2000, nprobe = 16, k = 10;
    const int64_t nq = 1000;
    std::vector<float> host_vectors(size_t(nlist) * list_len * d);
    uint32_t state = 12345;
    for (auto& v : host_vectors) {
        state = state * 1664525u + 1013904223u;
        v = float(state >> 8) * (1.0f / 16777216.0f);
    }
    DeviceArray<float> pool(host_vectors);
    DeviceArray<float> copy_target(host_vectors.size());
    std::vector<int64_t> host_ids(size_t(nlist) * list_len);
    std::iota(host_ids.begin(), host_ids.end(), int64_t(0));
    DeviceArray<int64_t> id_pool(host_ids);
    DeviceArray<int32_t> record_pool(
        std::vector<int32_t>(size_t(nlist) * list_len * 2, -1));
    std::vector<const float*> vp(nlist);
    std::vector<const int64_t*> ip(nlist);
    std::vector<const int32_t*> rp(nlist);
    for (int l = 0; l < nlist; l++) {
        vp[l] = pool.ptr + size_t(l) * list_len * d;
        ip[l] = id_pool.ptr + size_t(l) * list_len;
        rp[l] = record_pool.ptr + size_t(l) * list_len * 2;
    }
    DeviceArray<const float*> d_vp(vp);
    DeviceArray<const int64_t*> d_ip(ip);
    DeviceArray<const int32_t*> d_rp(rp);
    DeviceArray<int32_t> lengths(std::vector<int32_t>(nlist, list_len));
    IvfListsView view;
    view.d = d;
    view.nlist = nlist;
    view.codes = reinterpret_cast<const uint8_t* const*>(d_vp.ptr);
    view.ids = d_ip.ptr;
    view.records = d_rp.ptr;
    view.lengths = lengths.ptr;

    std::mt19937_64 rng(61);
    std::vector<float> queries(size_t(nq) * d);
    for (auto& v : queries) {
        v = std::uniform_real_distribution<float>(0, 1)(rng);
    }
    std::vector<int32_t> probes(size_t(nq) * nprobe);
    for (int64_t i = 0; i < nq; i++) {
        std::vector<int32_t> perm(nlist);
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        std::copy(perm.begin(), perm.begin() + nprobe, &probes[i * nprobe]);
    }
    DeviceArray<float> d_queries(queries);
    DeviceArray<int32_t> d_probes(probes);
    DeviceArray<int32_t> d_rank(
        std::vector<int32_t>(size_t(nq) * nlist, kListNotProbed));
    DeviceArray<int64_t> d_offsets(size_t(nq) * nprobe);
    DeviceArray<int64_t> d_seglen(nq);
    DeviceArray<int32_t> d_visited(nq);
    ASSERT_EQ(
        ivf_prepare_probes(
            view,
            nq,
            nprobe,
            0,
            d_probes.ptr,
            d_rank.ptr,
            d_offsets.ptr,
            d_seglen.ptr,
            d_visited.ptr,
            nullptr),
        cudaSuccess);
    const int64_t seg = int64_t(nprobe) * list_len;
    std::vector<int64_t> segoff(nq + 1);
    for (int64_t i = 0; i <= nq; i++) {
        segoff[i] = i * seg;
    }
    DeviceArray<int64_t> d_segoff(segoff);
    DeviceArray<float> d_keys{size_t(nq * seg)};
    DeviceArray<int64_t> d_ids{size_t(nq * seg)};
    DeviceArray<int64_t> d_dups(std::vector<int64_t>(nq, 0));
    DeviceArray<float> d_top_keys(size_t(nq) * k);
    DeviceArray<int64_t> d_top_ids(size_t(nq) * k);
    Segments segments;
    segments.count = nq;
    segments.offsets = d_segoff.ptr;

    const double bytes_copied = double(host_vectors.size()) * sizeof(float);
    const float copy_ms = median_ms([&] {
        EXPECT_EQ(
            cudaMemcpyAsync(
                copy_target.ptr,
                pool.ptr,
                size_t(bytes_copied),
                cudaMemcpyDeviceToDevice),
            cudaSuccess);
    });
    // a copy reads and writes every byte
    const double copy_gbs = 2 * bytes_copied / (copy_ms * 1e6);
    const double scanned = double(nq) * seg * (d * sizeof(float) + 8 + 12);
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    for (int width : {0, 2}) {
        view.record_width = width;
        const float scan_ms = median_ms([&] {
            EXPECT_EQ(
                ivf_scan_lists(
                    view,
                    nq,
                    d_queries.ptr,
                    nprobe,
                    0,
                    nprobe,
                    d_probes.ptr,
                    d_rank.ptr,
                    d_offsets.ptr,
                    d_segoff.ptr,
                    d_keys.ptr,
                    d_ids.ptr,
                    d_dups.ptr,
                    nullptr),
                cudaSuccess);
        });
        const double scan_gbs = scanned / (scan_ms * 1e6);
        std::printf(
            "%s: scan nq=%lld nprobe=%d lists %d x %d x d=%d, record width "
            "%d: %.3f ms, %.0f GB/s (vectors + ids + keys/ids out) = %.0f%% "
            "of the D2D copy's %.0f GB/s\n",
            prop.name,
            (long long)nq,
            nprobe,
            nlist,
            list_len,
            d,
            width,
            scan_ms,
            scan_gbs,
            100 * scan_gbs / copy_gbs,
            copy_gbs);
    }
    const float select_ms = median_ms([&] {
        EXPECT_EQ(
            select_k_segments(
                segments,
                d_keys.ptr,
                d_ids.ptr,
                k,
                d_top_keys.ptr,
                d_top_ids.ptr,
                nullptr,
                0,
                nullptr),
            cudaSuccess);
    });
    std::printf(
        "%s: select_k k=%d over %lld segments of %lld keys: %.3f ms "
        "(%.0f GB/s of keys)\n",
        prop.name,
        k,
        (long long)nq,
        (long long)seg,
        select_ms,
        double(nq) * seg * sizeof(float) / (select_ms * 1e6));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    // first entry of query 0: its first probe's first vector
    float key0 = 0;
    ASSERT_EQ(
        cudaMemcpy(&key0, d_keys.ptr, sizeof(float), cudaMemcpyDeviceToHost),
        cudaSuccess);
    const float* x0 = host_vectors.data() + size_t(probes[0]) * list_len * d;
    double expected = 0;
    for (int t = 0; t < d; t++) {
        expected += (double(x0[t]) - queries[t]) * (double(x0[t]) - queries[t]);
    }
    EXPECT_NEAR(key0, expected, 1e-4 * (1 + expected));
}

} // namespace
