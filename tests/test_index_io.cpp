/**
 * faiss_gmm::write_index / read_index / write_gmm / read_gmm: bit-exact round
 * trips of a trained and filled IndexIVFGMM (plain, in IndexPreTransform, in
 * IndexIDMap / IndexIDMap2, via files and via VectorIOWriter/Reader),
 * delegation of FAISS indexes, and robustness: every truncation throws, and
 * seeded random corruption never crashes (it throws or gives a usable index).
 */

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <omp.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/IndexShards.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/index_factory.h>
#include <faiss_gmm/index_io.h>

#include "test_scratch.h"
#include "test_utils.h"

// A new field in these structs must be saved by faiss_gmm/index_io.cpp and
// compared below; their sizes (LP64) make the build say so.
static_assert(
    sizeof(faiss_gmm::SpillParameters) == 32,
    "SpillParameters changed: serialise the new field in index_io.cpp");
static_assert(
    sizeof(faiss_gmm::GmmParameters) == 72,
    "GmmParameters changed: serialise the new field in index_io.cpp");
static_assert(
    sizeof(faiss_gmm::GmmIterationStats) == 40,
    "GmmIterationStats changed: serialise the new field in index_io.cpp");

namespace {

using faiss_gmm::GaussianMixture;
using faiss_gmm::IndexIVFGMM;
using idx_t = faiss_gmm::idx_t;
using Bytes = std::vector<uint8_t>;

constexpr int kDim = 8;
constexpr size_t kNb = 1200;

using faiss_gmm::test::scratch_file;

/// n points around 6 separated centres, so that some lie between components.
std::vector<float> clustered_data(size_t n, int d, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> noise(0.f, 1.f);
    std::vector<float> centres(6 * size_t(d));
    for (float& c : centres) {
        c = 4 * noise(rng);
    }
    std::vector<float> x(n * d);
    for (size_t i = 0; i < n; i++) {
        const float* c = centres.data() + (i % 6) * d;
        for (int j = 0; j < d; j++) {
            x[i * d + j] = c[j] + noise(rng);
        }
    }
    return x;
}

const std::vector<float>& base_data() {
    static const std::vector<float> x = clustered_data(kNb, kDim, 11);
    return x;
}

std::vector<idx_t> base_ids(size_t n) {
    std::vector<idx_t> ids(n);
    for (size_t i = 0; i < n; i++) {
        ids[i] = 5000 + 7 * idx_t(i);
    }
    return ids;
}

/// A trained IndexIVFGMM with border vectors in several lists.
std::unique_ptr<IndexIVFGMM> make_filled_ivfgmm(
    size_t nlist,
    size_t nb,
    faiss_gmm::CovarianceType covariance =
        faiss_gmm::CovarianceType::Spherical) {
    faiss_gmm::GmmParameters gp;
    gp.covariance = covariance;
    gp.niter = 5;
    gp.kmeans_niter = 5;
    faiss_gmm::SpillParameters sp;
    sp.rule = faiss_gmm::SpillRule::Posterior;
    sp.max_assign = 3;
    sp.tau = 0.01f;
    auto index = std::make_unique<IndexIVFGMM>(
        kDim, nlist, faiss_gmm::test::build_params(gp, sp));
    index->train(kNb, base_data().data());
    std::vector<idx_t> ids = base_ids(nb);
    index->add_with_ids(nb, base_data().data(), ids.data());
    index->nprobe = 3;
    index->search_options.probe_order = faiss_gmm::ProbeOrder::Posterior;
    return index;
}

Bytes serialize(const faiss::Index* index) {
    faiss::VectorIOWriter writer;
    faiss_gmm::write_index(index, &writer);
    return writer.data;
}

std::unique_ptr<faiss::Index> deserialize(const Bytes& bytes) {
    faiss::VectorIOReader reader;
    reader.data = bytes;
    return std::unique_ptr<faiss::Index>(faiss_gmm::read_index(&reader));
}

/// An IOReader that does not reveal the input size (like a pipe).
struct OpaqueReader : faiss::IOReader {
    const Bytes& data;
    size_t pos = 0;
    explicit OpaqueReader(const Bytes& data) : data(data) {
        name = "opaque";
    }
    size_t operator()(void* ptr, size_t size, size_t nitems) override {
        size_t n = std::min(nitems, (data.size() - pos) / size);
        if (n > 0) {
            memcpy(ptr, data.data() + pos, n * size);
        }
        pos += n * size;
        return n;
    }
};

void expect_same_gmm(const GaussianMixture& a, const GaussianMixture& b) {
    EXPECT_EQ(a.d, b.d);
    EXPECT_EQ(a.k, b.k);
    EXPECT_EQ(a.covariance, b.covariance);
    EXPECT_EQ(a.is_trained, b.is_trained);
    EXPECT_EQ(memcmp(&a.variance_floor, &b.variance_floor, sizeof(float)), 0);
    EXPECT_EQ(a.weights, b.weights);
    EXPECT_EQ(a.means, b.means);
    EXPECT_EQ(a.variances, b.variances);
    ASSERT_EQ(a.iteration_stats.size(), b.iteration_stats.size());
    for (size_t i = 0; i < a.iteration_stats.size(); i++) {
        const auto &sa = a.iteration_stats[i], &sb = b.iteration_stats[i];
        EXPECT_EQ(sa.iteration, sb.iteration);
        EXPECT_EQ(sa.log_likelihood, sb.log_likelihood);
        EXPECT_EQ(sa.time_s, sb.time_s);
        EXPECT_EQ(sa.min_weight, sb.min_weight);
        EXPECT_EQ(sa.min_variance, sb.min_variance);
        EXPECT_EQ(sa.n_reseeded, sb.n_reseeded);
    }
}

void expect_same_ivfgmm(const IndexIVFGMM& a, const IndexIVFGMM& b) {
    EXPECT_EQ(a.d, b.d);
    EXPECT_EQ(a.ntotal, b.ntotal);
    EXPECT_EQ(a.is_trained, b.is_trained);
    EXPECT_EQ(a.nlist, b.nlist);
    EXPECT_EQ(a.nprobe, b.nprobe);
    EXPECT_EQ(a.max_codes, b.max_codes);
    EXPECT_EQ(a.code_size, b.code_size);
    EXPECT_EQ(a.search_options.probe_order, b.search_options.probe_order);
    EXPECT_EQ(a.search_options.posterior_mass, b.search_options.posterior_mass);
    EXPECT_EQ(
        a.search_options.mass_temperature, b.search_options.mass_temperature);
    EXPECT_EQ(a.search_options.distance_ratio, b.search_options.distance_ratio);
    EXPECT_EQ(a.search_options.prune_margin, b.search_options.prune_margin);
    EXPECT_EQ(
        a.search_options.min_expected_hits, b.search_options.min_expected_hits);
    EXPECT_EQ(a.build_params.train_device, b.build_params.train_device);
    EXPECT_EQ(a.parallel_mode, b.parallel_mode);
    const faiss_gmm::GmmParameters &ga = a.build_params.gmm,
                                   &gb = b.build_params.gmm;
    EXPECT_EQ(ga.covariance, gb.covariance);
    EXPECT_EQ(ga.niter, gb.niter);
    EXPECT_EQ(ga.tol, gb.tol);
    EXPECT_EQ(ga.reg_covar, gb.reg_covar);
    EXPECT_EQ(ga.init, gb.init);
    EXPECT_EQ(ga.kmeans_niter, gb.kmeans_niter);
    EXPECT_EQ(ga.seed, gb.seed);
    EXPECT_EQ(ga.max_points_per_component, gb.max_points_per_component);
    EXPECT_EQ(ga.min_component_count, gb.min_component_count);
    EXPECT_EQ(ga.block_size, gb.block_size);
    EXPECT_EQ(ga.verbose, gb.verbose);
    const faiss_gmm::SpillParameters &sa = a.build_params.spill,
                                     &sb = b.build_params.spill;
    EXPECT_EQ(sa.rule, sb.rule);
    EXPECT_EQ(sa.tau, sb.tau);
    EXPECT_EQ(sa.temperature, sb.temperature);
    EXPECT_EQ(sa.max_assign, sb.max_assign);
    EXPECT_EQ(sa.closure_ratio, sb.closure_ratio);
    EXPECT_EQ(sa.soar_lambda, sb.soar_lambda);
    EXPECT_EQ(sa.rair_lambda, sb.rair_lambda);
    EXPECT_EQ(sa.primary_is_nearest_mean, sb.primary_is_nearest_mean);
    EXPECT_EQ(a.nentries(), b.nentries());
    EXPECT_EQ(a.spill_records.width, b.spill_records.width);
    EXPECT_EQ(a.spill_records.records, b.spill_records.records);
    expect_same_gmm(a.gmm, b.gmm);
    auto* qa = dynamic_cast<const faiss::IndexFlat*>(a.quantizer);
    auto* qb = dynamic_cast<const faiss::IndexFlat*>(b.quantizer);
    ASSERT_TRUE(qa && qb);
    EXPECT_EQ(qa->ntotal, qb->ntotal);
    // byte for byte (FAISS's own operator== passes null to memcmp when
    // empty)
    ASSERT_EQ(qa->codes.size(), qb->codes.size());
    EXPECT_TRUE(std::equal(
        qa->codes.data(),
        qa->codes.data() + qa->codes.size(),
        qb->codes.data()));
    for (size_t l = 0; l < a.nlist; l++) {
        size_t n = a.invlists->list_size(l);
        ASSERT_EQ(n, b.invlists->list_size(l)) << "list " << l;
        if (n == 0) {
            continue;
        }
        EXPECT_EQ(
            memcmp(
                a.invlists->get_ids(l),
                b.invlists->get_ids(l),
                n * sizeof(idx_t)),
            0);
        EXPECT_EQ(
            memcmp(
                a.invlists->get_codes(l),
                b.invlists->get_codes(l),
                n * a.code_size),
            0);
    }
}

/// Identical labels and bit-identical distances on the first queries.
void expect_same_search(
    const faiss::Index& a,
    const faiss::Index& b,
    const float* queries,
    int nq) {
    const int k = 10;
    std::vector<float> da(nq * k), db(nq * k);
    std::vector<idx_t> la(nq * k), lb(nq * k);
    a.search(nq, queries, k, da.data(), la.data());
    b.search(nq, queries, k, db.data(), lb.data());
    EXPECT_EQ(la, lb);
    EXPECT_EQ(memcmp(da.data(), db.data(), da.size() * sizeof(float)), 0);
}

/// The format's checksum (see index_io.cpp), written out independently.
uint64_t format_checksum(const uint8_t* p, size_t n) {
    auto mix = [](uint64_t x) {
        x *= 0x9e3779b97f4a7c15ULL;
        return x ^ (x >> 32);
    };
    auto load = [](const uint8_t* q, size_t len) {
        uint64_t w = 0;
        for (size_t i = 0; i < len; i++) {
            w |= uint64_t(q[i]) << (8 * i);
        }
        return w;
    };
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        h = mix(h ^ load(p + i, 8));
    }
    h = mix(h ^ load(p + i, n - i));
    return mix(h ^ uint64_t(n));
}

void store_checksum(Bytes& bytes, size_t begin, size_t end) {
    uint64_t h = format_checksum(bytes.data() + begin, end - 8 - begin);
    memcpy(bytes.data() + end - 8, &h, 8);
}

/// Reads corrupt bytes: a FaissException is fine, any other exception fails,
/// and an index that does come back must answer searches.
void read_corrupt(const Bytes& bytes, bool* returned_index) {
    std::unique_ptr<faiss::Index> index;
    try {
        index = deserialize(bytes);
    } catch (const faiss::FaissException&) {
        *returned_index = false;
        return;
    }
    *returned_index = true;
    ASSERT_NE(index, nullptr);
    if (index->is_trained && index->d == kDim) {
        const int nq = 3, k = 4;
        std::vector<float> distances(nq * k);
        std::vector<idx_t> labels(nq * k);
        if (IndexIVFGMM* gmm =
                faiss_gmm::try_extract_index_ivfgmm(index.get())) {
            gmm->nprobe = gmm->nlist;
        }
        index->search(
            nq, base_data().data(), k, distances.data(), labels.data());
    }
}

} // namespace

TEST(IndexIO, GmmRoundTrip) {
    auto index =
        make_filled_ivfgmm(8, 300, faiss_gmm::CovarianceType::Diagonal);
    const GaussianMixture& gmm = index->gmm;
    ASSERT_TRUE(gmm.is_trained);
    ASSERT_FALSE(gmm.iteration_stats.empty());

    faiss::VectorIOWriter writer;
    faiss_gmm::write_gmm(gmm, &writer);
    faiss::VectorIOReader reader;
    reader.data = writer.data;
    expect_same_gmm(gmm, faiss_gmm::read_gmm(&reader));
    EXPECT_EQ(reader.rp, reader.data.size());

    const std::string path = scratch_file("gmm.bin");
    faiss_gmm::write_gmm(gmm, path.c_str());
    expect_same_gmm(gmm, faiss_gmm::read_gmm(path.c_str()));

    // untrained models, with and without arrays
    for (const GaussianMixture& m :
         {GaussianMixture(4, 3, faiss_gmm::CovarianceType::Spherical),
          GaussianMixture()}) {
        faiss::VectorIOWriter w;
        faiss_gmm::write_gmm(m, &w);
        faiss::VectorIOReader r;
        r.data = w.data;
        expect_same_gmm(m, faiss_gmm::read_gmm(&r));
    }
    // an index file is not a model, and a model file is not an index
    faiss::VectorIOReader wrong;
    wrong.data = serialize(index.get());
    EXPECT_THROW(faiss_gmm::read_gmm(&wrong), faiss::FaissException);
    EXPECT_THROW(deserialize(writer.data), faiss::FaissException);
    EXPECT_THROW(faiss_gmm::read_index(path.c_str()), faiss::FaissException);
    std::remove(path.c_str());
}

TEST(IndexIO, TiedCovarianceRoundTrips) {
    auto index =
        make_filled_ivfgmm(8, 300, faiss_gmm::CovarianceType::TiedSpherical);
    const GaussianMixture& gmm = index->gmm;
    ASSERT_EQ(gmm.covariance, faiss_gmm::CovarianceType::TiedSpherical);
    ASSERT_EQ(gmm.variances.size(), size_t(gmm.k));

    Bytes bytes = serialize(index.get());
    auto loaded = deserialize(bytes);
    auto* copy = dynamic_cast<IndexIVFGMM*>(loaded.get());
    ASSERT_NE(copy, nullptr);
    expect_same_ivfgmm(*index, *copy);
    EXPECT_EQ(serialize(copy), bytes) << "write(read(x)) != x";
    expect_same_search(*index, *copy, base_data().data(), 40);

    // A covariance value past Full (fields: fourcc, version, d, k,
    // covariance), with a valid checksum: refused, naming field and value.
    faiss::VectorIOWriter writer;
    faiss_gmm::write_gmm(gmm, &writer);
    Bytes model = writer.data;
    const size_t covariance_offset = 16;
    int32_t stored;
    memcpy(&stored, model.data() + covariance_offset, 4);
    ASSERT_EQ(stored, int32_t(faiss_gmm::CovarianceType::TiedSpherical));
    const int32_t unknown = 4;
    memcpy(model.data() + covariance_offset, &unknown, 4);
    store_checksum(model, 0, model.size());
    faiss::VectorIOReader reader;
    reader.data = model;
    try {
        faiss_gmm::read_gmm(&reader);
        ADD_FAILURE() << "covariance value 4 was read";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(
            std::string(e.what()).find("gmm.covariance = 4 outside [0, 3]"),
            std::string::npos)
            << e.what();
    }
    // Full (3) in a version-1 payload, which has no covariances: refused
    const int32_t full = int32_t(faiss_gmm::CovarianceType::Full);
    memcpy(model.data() + covariance_offset, &full, 4);
    store_checksum(model, 0, model.size());
    reader.data = model;
    reader.rp = 0;
    try {
        faiss_gmm::read_gmm(&reader);
        ADD_FAILURE() << "full covariance in format version 1 was read";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(
            std::string(e.what()).find(
                "full-covariance GaussianMixture in format version 1"),
            std::string::npos)
            << e.what();
    }
}

TEST(IndexIO, FullCovarianceRoundTripsExactly) {
    auto index = make_filled_ivfgmm(6, 300, faiss_gmm::CovarianceType::Full);
    const GaussianMixture& gmm = index->gmm;
    ASSERT_EQ(gmm.covariance, faiss_gmm::CovarianceType::Full);
    ASSERT_EQ(gmm.covariances.size(), size_t(gmm.k) * kDim * kDim);

    // the bare model: version 2, covariances stored, factors recomputed to
    // the same bits
    faiss::VectorIOWriter writer;
    faiss_gmm::write_gmm(gmm, &writer);
    uint32_t version;
    memcpy(&version, writer.data.data() + 4, 4);
    EXPECT_EQ(version, 2u);
    faiss::VectorIOReader reader;
    reader.data = writer.data;
    const GaussianMixture copy = faiss_gmm::read_gmm(&reader);
    expect_same_gmm(gmm, copy);
    EXPECT_EQ(copy.covariances, gmm.covariances);
    EXPECT_EQ(copy.precision_cholesky, gmm.precision_cholesky);
    EXPECT_EQ(copy.log_det_cholesky, gmm.log_det_cholesky);
    EXPECT_EQ(reader.rp, reader.data.size());

    // the index: identical state, bytes and search results
    Bytes bytes = serialize(index.get());
    auto loaded = deserialize(bytes);
    auto* index_copy = dynamic_cast<IndexIVFGMM*>(loaded.get());
    ASSERT_NE(index_copy, nullptr);
    expect_same_ivfgmm(*index, *index_copy);
    EXPECT_EQ(index_copy->gmm.precision_cholesky, gmm.precision_cholesky);
    EXPECT_EQ(serialize(index_copy), bytes) << "write(read(x)) != x";
    expect_same_search(*index, *index_copy, base_data().data(), 40);

    // other covariance types are still written as version 1
    faiss::VectorIOWriter diag_writer;
    faiss_gmm::write_gmm(
        GaussianMixture(4, 3, faiss_gmm::CovarianceType::Diagonal),
        &diag_writer);
    memcpy(&version, diag_writer.data.data() + 4, 4);
    EXPECT_EQ(version, 1u);

    // an untrained full model round-trips too
    const GaussianMixture untrained(5, 2, faiss_gmm::CovarianceType::Full);
    faiss::VectorIOWriter w;
    faiss_gmm::write_gmm(untrained, &w);
    faiss::VectorIOReader r;
    r.data = w.data;
    const GaussianMixture untrained_copy = faiss_gmm::read_gmm(&r);
    expect_same_gmm(untrained, untrained_copy);
    EXPECT_EQ(untrained_copy.covariances, untrained.covariances);
    EXPECT_EQ(untrained_copy.precision_cholesky, untrained.precision_cholesky);

    // a stored covariance that is not positive definite: refused, named
    Bytes broken = writer.data;
    // the covariances are the last k d^2 floats before the 8-byte checksum;
    // make component 0's (0, 1) and (1, 0) entries huge
    const size_t cov_begin =
        broken.size() - 8 - size_t(gmm.k) * kDim * kDim * sizeof(float);
    const float huge = 1e6f;
    memcpy(broken.data() + cov_begin + 1 * sizeof(float), &huge, 4);
    memcpy(broken.data() + cov_begin + kDim * sizeof(float), &huge, 4);
    store_checksum(broken, 0, broken.size());
    faiss::VectorIOReader broken_reader;
    broken_reader.data = broken;
    try {
        faiss_gmm::read_gmm(&broken_reader);
        ADD_FAILURE() << "a non-positive-definite covariance was read";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(
            std::string(e.what()).find(
                "covariance of component 0 is not positive definite"),
            std::string::npos)
            << e.what();
    }
}

TEST(IndexIO, IndexIVFGMMRoundTripIsExact) {
    auto index = make_filled_ivfgmm(16, kNb);
    // every saved setting away from its default
    index->search_options.posterior_mass = 0.5f;
    index->search_options.mass_temperature = 7.0f;
    // the distance rules need the l2 order (other tests save posterior)
    index->search_options.probe_order = faiss_gmm::ProbeOrder::L2;
    index->search_options.distance_ratio = 1.5f;
    index->search_options.prune_margin = 0.5f;
    index->search_options.min_expected_hits = 0.01f;
    index->max_codes = 100000;
    index->build_params.train_device = faiss_gmm::TrainDevice::Cpu;
    index->build_params.gmm.tol = 1e-5;
    index->build_params.gmm.reg_covar = 2e-3f;
    index->build_params.gmm.init = faiss_gmm::GmmInit::KMeansPlusPlus;
    index->build_params.gmm.seed = 77;
    index->build_params.gmm.max_points_per_component = 100;
    index->build_params.gmm.min_component_count = 2.5;
    index->build_params.gmm.block_size = 512;
    index->build_params.spill.closure_ratio = 1.7f;
    index->build_params.spill.soar_lambda = 0.25f;
    index->build_params.spill.rair_lambda = 0.6f;
    index->build_params.spill.temperature = 3.0f;
    ASSERT_GT(index->nentries(), size_t(index->ntotal)) << "no vector spilled";
    ASSERT_GT(index->spill_records.width, 0);

    Bytes bytes = serialize(index.get());
    auto loaded = deserialize(bytes);
    auto* copy = dynamic_cast<IndexIVFGMM*>(loaded.get());
    ASSERT_NE(copy, nullptr);
    expect_same_ivfgmm(*index, *copy);
    EXPECT_EQ(serialize(copy), bytes) << "write(read(x)) != x";
    for (const char* params :
         {"nprobe=16,probe=l2,posterior_mass=0.9",
          "distance_ratio=0,prune_margin=0,min_expected_hits=0",
          "nprobe=3,probe=posterior,posterior_mass=0",
          "nprobe=5,probe=l2",
          "nprobe=16,probe=l2",
          "nprobe=16,probe=posterior,posterior_mass=0.9"}) {
        SCOPED_TRACE(params);
        index->set_search_parameters(params);
        copy->set_search_parameters(params);
        expect_same_search(*index, *copy, base_data().data() + 17 * kDim, 40);
    }

    // through a file
    const std::string path = scratch_file("ivfgmm.bin");
    faiss_gmm::write_index(index.get(), path.c_str());
    std::unique_ptr<faiss::Index> from_file(
        faiss_gmm::read_index(path.c_str()));
    auto* copy2 = dynamic_cast<IndexIVFGMM*>(from_file.get());
    ASSERT_NE(copy2, nullptr);
    expect_same_ivfgmm(*index, *copy2);
    expect_same_search(*index, *copy2, base_data().data(), 40);
    std::remove(path.c_str());

    // the loaded index stays fully usable: add, remove, reconstruct
    std::vector<idx_t> extra_ids = {1, 2, 3};
    copy->add_with_ids(3, base_data().data(), extra_ids.data());
    EXPECT_EQ(copy->ntotal, index->ntotal + 3);
    std::vector<float> recons(kDim);
    copy->reconstruct(5000 + 7 * 4, recons.data());
    EXPECT_EQ(
        memcmp(
            recons.data(), base_data().data() + 4 * kDim, kDim * sizeof(float)),
        0);
    faiss::IDSelectorRange sel(1, 4);
    EXPECT_EQ(copy->remove_ids(sel), 3u);
    EXPECT_EQ(copy->ntotal, index->ntotal);
}

TEST(IndexIO, UntrainedAndEmptyIndexes) {
    std::unique_ptr<faiss::Index> untrained(
        faiss_gmm::index_factory(kDim, "IVF16_GMMdiag_m3,Flat"));
    Bytes bytes = serialize(untrained.get());
    auto loaded = deserialize(bytes);
    auto* copy = dynamic_cast<IndexIVFGMM*>(loaded.get());
    ASSERT_NE(copy, nullptr);
    EXPECT_FALSE(copy->is_trained);
    expect_same_ivfgmm(*dynamic_cast<IndexIVFGMM*>(untrained.get()), *copy);
    // it trains after loading
    copy->train(kNb, base_data().data());
    EXPECT_TRUE(copy->is_trained);

    // a trained, empty index whose parameters ask for another covariance
    // at the next training
    auto empty = make_filled_ivfgmm(8, 0);
    empty->build_params.gmm.covariance = faiss_gmm::CovarianceType::Diagonal;
    auto empty_copy = deserialize(serialize(empty.get()));
    expect_same_ivfgmm(*empty, *dynamic_cast<IndexIVFGMM*>(empty_copy.get()));
}

TEST(IndexIO, WrappedIndexesRoundTrip) {
    const int d = 16;
    std::vector<float> x = clustered_data(kNb, d, 5);
    std::vector<idx_t> ids = base_ids(kNb);
    for (const char* description :
         {"PCA8,IVF16_GMM_m3_tau0.01,Flat",
          "IDMap,IVF16_GMM_m3_tau0.01,Flat",
          "IDMap2,IVF16_GMM,Flat",
          "PCA8,IDMap2,IVF16_GMM_m3,Flat",
          "IDMap,L2norm,PCA8,IVF16_GMMdiag,Flat"}) {
        SCOPED_TRACE(description);
        std::unique_ptr<faiss::Index> index(
            faiss_gmm::index_factory(d, description));
        {
            auto* gmm = faiss_gmm::try_extract_index_ivfgmm(index.get());
            gmm->build_params.gmm.niter = 4;
            gmm->build_params.gmm.kmeans_niter = 5;
        }
        index->train(kNb, x.data());
        index->add_with_ids(kNb, x.data(), ids.data());
        faiss_gmm::set_index_parameters(index.get(), "nprobe=4");

        Bytes bytes = serialize(index.get());
        auto copy = deserialize(bytes);
        EXPECT_TRUE(typeid(*copy) == typeid(*index)) << typeid(*copy).name();
        EXPECT_EQ(copy->d, index->d);
        EXPECT_EQ(copy->ntotal, index->ntotal);
        EXPECT_EQ(copy->is_trained, index->is_trained);
        expect_same_ivfgmm(
            *faiss_gmm::try_extract_index_ivfgmm(index.get()),
            *faiss_gmm::try_extract_index_ivfgmm(copy.get()));
        EXPECT_EQ(serialize(copy.get()), bytes);
        expect_same_search(*index, *copy, x.data() + 3 * d, 30);
        if (auto* idmap2 = dynamic_cast<faiss::IndexIDMap2*>(copy.get())) {
            std::vector<float> recons(d);
            idmap2->reconstruct(ids[10], recons.data());
            EXPECT_EQ(idmap2->rev_map.size(), kNb);
        }

        const std::string path = scratch_file("wrapped.bin");
        faiss_gmm::write_index(index.get(), path.c_str());
        std::unique_ptr<faiss::Index> from_file(
            faiss_gmm::read_index(path.c_str()));
        expect_same_search(*index, *from_file, x.data(), 30);
        std::remove(path.c_str());
    }
}

TEST(IndexIO, CompressedAndRefinedIndexesRoundTrip) {
    const int d = 16;
    std::vector<float> x = clustered_data(kNb, d, 6);
    for (const char* description : {
             "IVF16_GMM_m3,SQ8", "IVF16_GMM_m3,PQ4np",
                 "IVF16_GMM_m3,PQ4np,RFlat",
                 "PCA8,IVF16_GMM,SQ4,Refine(SQfp16)", "IVF16_GMM_m3,PQ8x4fs",
                 "IVF16_GMM_m3,PQ8x4fsr,RFlat",
#if FAISS_GMM_HAS_RABITQ
                 "IVF16_GMM_m3,RaBitQ",
#endif
                 "PCA8,IVF16_GMM_m2,PQ4x4fsr,Refine(SQ8)"
         }) {
        SCOPED_TRACE(description);
        std::unique_ptr<faiss::Index> index(
            faiss_gmm::index_factory(d, description));
        auto* gmm = faiss_gmm::try_extract_index_ivfgmm(index.get());
        gmm->build_params.gmm.niter = 4;
        gmm->build_params.gmm.kmeans_niter = 5;
        index->train(kNb, x.data());
        index->add(kNb, x.data());
        faiss_gmm::set_index_parameters(index.get(), "nprobe=4");
        if (auto* refine = dynamic_cast<faiss::IndexRefine*>(index.get())) {
            refine->k_factor = 3;
        }
        Bytes bytes = serialize(index.get());
        auto copy = deserialize(bytes);
        EXPECT_TRUE(typeid(*copy) == typeid(*index)) << typeid(*copy).name();
        EXPECT_EQ(copy->ntotal, index->ntotal);
        expect_same_ivfgmm(
            *gmm, *faiss_gmm::try_extract_index_ivfgmm(copy.get()));
        if (auto* refine = dynamic_cast<faiss::IndexRefine*>(copy.get())) {
            EXPECT_EQ(refine->k_factor, 3.0f);
        }
        EXPECT_EQ(serialize(copy.get()), bytes);
        expect_same_search(*index, *copy, x.data() + 3 * d, 30);
    }
}

TEST(IndexIO, FaissIndexesAreDelegated) {
    const int d = 16;
    std::vector<float> x = clustered_data(kNb, d, 9);
    for (const char* description :
         {"IVF16,Flat", "Flat", "IDMap,Flat", "PCA8,IVF16,Flat"}) {
        SCOPED_TRACE(description);
        std::unique_ptr<faiss::Index> index(
            faiss_gmm::index_factory(d, description));
        index->train(kNb, x.data());
        if (std::string(description).find("IDMap") != std::string::npos) {
            std::vector<idx_t> ids = base_ids(kNb);
            index->add_with_ids(kNb, x.data(), ids.data());
        } else {
            index->add(kNb, x.data());
        }

        // exactly FAISS's own bytes, so FAISS alone reads the file
        faiss::VectorIOWriter faiss_writer;
        faiss::write_index(index.get(), &faiss_writer);
        Bytes bytes = serialize(index.get());
        EXPECT_EQ(bytes, faiss_writer.data);

        // (FAISS may read a class back as a subclass, e.g. IndexFlatL2)
        auto copy = deserialize(bytes);
        EXPECT_EQ(serialize(copy.get()), bytes);
        expect_same_search(*index, *copy, x.data(), 20);

        const std::string path = scratch_file("faiss.bin");
        faiss_gmm::write_index(index.get(), path.c_str());
        std::unique_ptr<faiss::Index> from_file(
            faiss_gmm::read_index(path.c_str()));
        EXPECT_EQ(serialize(from_file.get()), bytes);
        expect_same_search(*index, *from_file, x.data(), 20);
        std::remove(path.c_str());

        // through a reader that does not reveal the input size
        OpaqueReader opaque(bytes);
        std::unique_ptr<faiss::Index> from_stream(
            faiss_gmm::read_index(&opaque));
        expect_same_search(*index, *from_stream, x.data(), 20);
    }
}

TEST(IndexIO, UnsupportedWrapperThrows) {
    auto gmm = make_filled_ivfgmm(8, 0);
    faiss::IndexShards shards(gmm->d);
    shards.add_shard(gmm.get());
    faiss::VectorIOWriter writer;
    try {
        faiss_gmm::write_index(&shards, &writer);
        ADD_FAILURE() << "an IndexShards holding an IndexIVFGMM was written";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find("IndexIVFGMM"), std::string::npos)
            << e.what();
    }
    EXPECT_THROW(
        faiss_gmm::write_index(nullptr, &writer), faiss::FaissException);
    EXPECT_THROW(
        faiss_gmm::read_index("/nonexistent/dir/index.bin"),
        faiss::FaissException);
}

TEST(IndexIO, SeveralObjectsInOneStream) {
    auto gmm_index = make_filled_ivfgmm(4, 50);
    faiss::IndexFlatL2 flat(kDim);
    flat.add(10, base_data().data());
    faiss::VectorIOWriter writer;
    faiss_gmm::write_index(gmm_index.get(), &writer);
    faiss_gmm::write_index(&flat, &writer);
    faiss_gmm::write_gmm(gmm_index->gmm, &writer);
    faiss_gmm::write_index(gmm_index.get(), &writer);

    // each read consumes exactly its object's bytes
    faiss::VectorIOReader reader;
    reader.data = writer.data;
    std::unique_ptr<faiss::Index> a(faiss_gmm::read_index(&reader));
    std::unique_ptr<faiss::Index> b(faiss_gmm::read_index(&reader));
    GaussianMixture model = faiss_gmm::read_gmm(&reader);
    std::unique_ptr<faiss::Index> c(faiss_gmm::read_index(&reader));
    EXPECT_EQ(reader.rp, reader.data.size());
    expect_same_ivfgmm(*gmm_index, *dynamic_cast<IndexIVFGMM*>(a.get()));
    expect_same_search(flat, *b, base_data().data(), 5);
    expect_same_gmm(gmm_index->gmm, model);
    expect_same_ivfgmm(*gmm_index, *dynamic_cast<IndexIVFGMM*>(c.get()));
}

TEST(IndexIO, OtherVersionsAndForeignBytesThrow) {
    auto index = make_filled_ivfgmm(4, 20);
    Bytes bytes = serialize(index.get());
    // an older and a future version, with a valid checksum: refused by
    // their version
    for (uint8_t version : {1, 3}) {
        Bytes other = bytes;
        other[4] = version;
        store_checksum(other, 0, other.size());
        try {
            deserialize(other);
            ADD_FAILURE() << "version " << int(version) << " was read";
        } catch (const faiss::FaissException& e) {
            const std::string expected = "version " + std::to_string(version);
            EXPECT_NE(std::string(e.what()).find(expected), std::string::npos)
                << e.what();
        }
    }
    // bytes of no index at all go to FAISS, which refuses them
    Bytes garbage(256);
    std::mt19937 rng(3);
    for (uint8_t& v : garbage) {
        v = uint8_t(rng());
    }
    EXPECT_THROW(deserialize(garbage), faiss::FaissException);
    EXPECT_THROW(deserialize(Bytes()), faiss::FaissException);
}

TEST(IndexIO, EveryTruncationThrows) {
    auto plain = make_filled_ivfgmm(4, 40);
    std::unique_ptr<faiss::Index> wrapped(
        faiss_gmm::index_factory(kDim, "IDMap2,PCA4,IVF4_GMM_m2,Flat"));
    faiss_gmm::try_extract_index_ivfgmm(wrapped.get())->build_params.gmm.niter =
        3;
    wrapped->train(kNb, base_data().data());
    std::vector<idx_t> ids = base_ids(40);
    wrapped->add_with_ids(40, base_data().data(), ids.data());

    for (const faiss::Index* index :
         {(const faiss::Index*)plain.get(),
          (const faiss::Index*)wrapped.get()}) {
        const Bytes bytes = serialize(index);
        ASSERT_NO_THROW(deserialize(bytes));
        for (size_t len = 0; len < bytes.size(); len++) {
            Bytes prefix(bytes.begin(), bytes.begin() + len);
            EXPECT_THROW(deserialize(prefix), faiss::FaissException)
                << "prefix of " << len << " / " << bytes.size();
            OpaqueReader opaque(prefix);
            EXPECT_THROW(
                delete faiss_gmm::read_index(&opaque), faiss::FaissException)
                << "opaque prefix of " << len << " / " << bytes.size();
        }
    }

    // a truncated file
    const Bytes bytes = serialize(plain.get());
    const std::string path = scratch_file("truncated.bin");
    FILE* f = fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    fwrite(bytes.data(), 1, bytes.size() / 2, f);
    fclose(f);
    EXPECT_THROW(faiss_gmm::read_index(path.c_str()), faiss::FaissException);
    std::remove(path.c_str());
}

/// Sets 1 to 4 random bytes (random values or inverted), anywhere or within
/// [0, focus_end) where the header, parameters and model lie.
Bytes mutate(const Bytes& bytes, std::mt19937& rng, int it, size_t focus_end) {
    Bytes mutated = bytes;
    const size_t end = it % 4 < 2 ? bytes.size() : focus_end;
    std::uniform_int_distribution<size_t> pos(0, end - 1);
    std::uniform_int_distribution<int> byte(0, 255), nmut(1, 4);
    for (int m = nmut(rng); m > 0; m--) {
        size_t p = pos(rng);
        mutated[p] = uint8_t(it % 2 ? byte(rng) : mutated[p] ^ 0xff);
    }
    return mutated;
}

/// Runs a scope on one OpenMP thread: thousands of tiny searches spend more
/// in thread wake-ups and barriers than in work, badly so on a busy machine.
struct SingleThreadScope {
    int previous = omp_get_max_threads();
    SingleThreadScope() {
        omp_set_num_threads(1);
    }
    ~SingleThreadScope() {
        omp_set_num_threads(previous);
    }
};

TEST(IndexIO, CorruptBytesNeverCrash) {
    SingleThreadScope single_thread;
    auto index = make_filled_ivfgmm(6, 60);
    const Bytes bytes = serialize(index.get());
    // where the nested model payload lies, to recompute its checksum
    faiss::VectorIOWriter gmm_writer;
    faiss_gmm::write_gmm(index->gmm, &gmm_writer);
    const size_t gmm_len = gmm_writer.data.size();
    const size_t gmm_begin = std::search(
                                 bytes.begin(),
                                 bytes.end(),
                                 gmm_writer.data.begin(),
                                 gmm_writer.data.begin() + 4) -
                             bytes.begin();
    ASSERT_LT(gmm_begin + gmm_len, bytes.size());

    std::mt19937 rng(2026);
    int raw_rejected = 0, fixed_returned = 0, unchanged = 0;
    const int iterations = 2000;
    for (int it = 0; it < iterations; it++) {
        Bytes mutated = mutate(bytes, rng, it, gmm_begin + gmm_len + 16);
        if (mutated == bytes) {
            unchanged++;
            continue;
        }
        bool returned = false;
        // as corrupted on disk: the checksum catches it
        read_corrupt(mutated, &returned);
        raw_rejected += !returned;
        // with the checksums recomputed: the field checks must hold alone
        store_checksum(mutated, gmm_begin, gmm_begin + gmm_len);
        store_checksum(mutated, 0, mutated.size());
        read_corrupt(mutated, &returned);
        fixed_returned += returned;
        if (HasFatalFailure()) {
            return;
        }
    }
    EXPECT_EQ(raw_rejected, iterations - unchanged);
    // mutations of codes, ids, means... give valid indexes; the rest throws
    printf(
        "IndexIVFGMM: %d / %d corrupt inputs rejected as stored; with fixed "
        "checksums %d loaded as usable indexes, the rest threw\n",
        raw_rejected,
        iterations - unchanged,
        fixed_returned);

    // wrappers with a FAISS transform inside
    std::unique_ptr<faiss::Index> wrapped(
        faiss_gmm::index_factory(kDim, "IDMap2,PCA4,IVF4_GMM_m2,Flat"));
    faiss_gmm::try_extract_index_ivfgmm(wrapped.get())->build_params.gmm.niter =
        3;
    wrapped->train(kNb, base_data().data());
    std::vector<idx_t> ids = base_ids(40);
    wrapped->add_with_ids(40, base_data().data(), ids.data());
    const Bytes wrapped_bytes = serialize(wrapped.get());
    int wrapped_rejected = 0;
    unchanged = 0;
    for (int it = 0; it < 500; it++) {
        Bytes mutated = mutate(wrapped_bytes, rng, it, 512);
        if (mutated == wrapped_bytes) {
            unchanged++;
            continue;
        }
        bool returned = false;
        read_corrupt(mutated, &returned);
        wrapped_rejected += !returned;
        if (HasFatalFailure()) {
            return;
        }
    }
    EXPECT_EQ(wrapped_rejected, 500 - unchanged);
}
