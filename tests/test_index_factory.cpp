/**
 * faiss_gmm::index_factory: every grammar form, wrappers, delegation of
 * strings without a GMM token to FAISS, errors naming the offending token,
 * and set_index_parameters through wrappers.
 */

#include <cstdio>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/index_factory.h>
#include <faiss_gmm/index_io.h>

#if FAISS_GMM_HAS_RABITQ
#include <faiss/IndexIVFRaBitQ.h>
#endif

namespace {

using faiss_gmm::CovarianceType;
using faiss_gmm::IndexIVFGMM;
using faiss_gmm::SpillRule;

std::unique_ptr<faiss::Index> make(
    int d,
    const std::string& description,
    faiss::MetricType metric = faiss::METRIC_L2) {
    return std::unique_ptr<faiss::Index>(
        faiss_gmm::index_factory(d, description.c_str(), metric));
}

/// The factory's IndexIVFGMM for a bare GMM string (fails the test if not).
IndexIVFGMM* as_gmm(faiss::Index* index) {
    auto* gmm = dynamic_cast<IndexIVFGMM*>(index);
    EXPECT_NE(gmm, nullptr) << "not an IndexIVFGMM: " << typeid(*index).name();
    return gmm;
}

/// Expects index_factory to throw a FaissException mentioning `fragment`.
void expect_error(
    int d,
    const std::string& description,
    const std::string& fragment,
    faiss::MetricType metric = faiss::METRIC_L2) {
    try {
        make(d, description, metric);
        ADD_FAILURE() << "no exception for '" << description << "'";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
            << "message for '" << description << "' lacks '" << fragment
            << "': " << e.what();
    }
}

/// n points around 8 well separated centres in d dimensions.
std::vector<float> clustered_data(size_t n, int d, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> noise(0.f, 1.f);
    std::vector<float> centres(8 * size_t(d));
    for (float& c : centres) {
        c = 10 * noise(rng);
    }
    std::vector<float> x(n * d);
    for (size_t i = 0; i < n; i++) {
        const float* c = centres.data() + (i % 8) * d;
        for (int j = 0; j < d; j++) {
            x[i * d + j] = c[j] + noise(rng);
        }
    }
    return x;
}

} // namespace

TEST(IndexFactory, PlainGmmToken) {
    auto index = make(32, "IVF1024_GMM,Flat");
    IndexIVFGMM* gmm = as_gmm(index.get());
    ASSERT_NE(gmm, nullptr);
    EXPECT_EQ(gmm->d, 32);
    EXPECT_EQ(gmm->nlist, 1024u);
    EXPECT_EQ(gmm->metric_type, faiss::METRIC_L2);
    EXPECT_FALSE(gmm->is_trained);
    EXPECT_EQ(gmm->build_params.gmm.covariance, CovarianceType::Spherical);
    // unspecified values keep the documented defaults
    faiss_gmm::SpillParameters defaults;
    EXPECT_EQ(gmm->build_params.spill.rule, defaults.rule);
    EXPECT_EQ(gmm->build_params.spill.tau, defaults.tau);
    EXPECT_EQ(gmm->build_params.spill.max_assign, defaults.max_assign);
    EXPECT_EQ(gmm->build_params.spill.temperature, defaults.temperature);
}

TEST(IndexFactory, NlistSuffixes) {
    EXPECT_EQ(as_gmm(make(4, "IVF4k_GMM,Flat").get())->nlist, 4096u);
    EXPECT_EQ(as_gmm(make(4, "IVF1k_GMM,Flat").get())->nlist, 1024u);
    EXPECT_EQ(as_gmm(make(2, "IVF1M_GMM,Flat").get())->nlist, 1u << 20);
    EXPECT_EQ(as_gmm(make(4, "IVF1_GMM_nospill,Flat").get())->nlist, 1u);
}

TEST(IndexFactory, CovarianceChoice) {
    EXPECT_EQ(
        as_gmm(make(8, "IVF64_GMMdiag,Flat").get())
            ->build_params.gmm.covariance,
        CovarianceType::Diagonal);
    EXPECT_EQ(
        as_gmm(make(8, "IVF64_GMMsph,Flat").get())->build_params.gmm.covariance,
        CovarianceType::Spherical);
    auto diag = make(8, "IVF64_GMMdiag,Flat");
    EXPECT_EQ(as_gmm(diag.get())->gmm.covariance, CovarianceType::Diagonal);
    auto tied = make(8, "IVF1024_GMMtied,Flat");
    EXPECT_EQ(
        as_gmm(tied.get())->build_params.gmm.covariance,
        CovarianceType::TiedSpherical);
    EXPECT_EQ(
        as_gmm(tied.get())->gmm.covariance, CovarianceType::TiedSpherical);
    EXPECT_EQ(as_gmm(tied.get())->nlist, 1024u);
    // with options after it
    auto tied_spill = make(8, "IVF64_GMMtied_tau0.02_m2,Flat");
    EXPECT_EQ(
        as_gmm(tied_spill.get())->build_params.gmm.covariance,
        CovarianceType::TiedSpherical);
    EXPECT_EQ(as_gmm(tied_spill.get())->build_params.spill.max_assign, 2);
}

TEST(IndexFactory, SpillOptions) {
    {
        auto index = make(8, "IVF64_GMM_tau0.05_m3,Flat");
        IndexIVFGMM* g = as_gmm(index.get());
        EXPECT_EQ(g->build_params.spill.rule, SpillRule::Posterior);
        EXPECT_FLOAT_EQ(g->build_params.spill.tau, 0.05f);
        EXPECT_EQ(g->build_params.spill.max_assign, 3);
    }
    {
        auto index = make(8, "IVF64_GMMdiag_m4_T8,Flat");
        IndexIVFGMM* g = as_gmm(index.get());
        EXPECT_EQ(g->build_params.gmm.covariance, CovarianceType::Diagonal);
        EXPECT_EQ(g->build_params.spill.max_assign, 4);
        EXPECT_FLOAT_EQ(g->build_params.spill.temperature, 8.f);
    }
    {
        auto index = make(8, "IVF64_GMM_tau1e-3,Flat");
        EXPECT_FLOAT_EQ(as_gmm(index.get())->build_params.spill.tau, 1e-3f);
    }
    {
        auto index = make(8, "IVF64_GMM_closure1.5_m3,Flat");
        IndexIVFGMM* g = as_gmm(index.get());
        EXPECT_EQ(g->build_params.spill.rule, SpillRule::Closure);
        EXPECT_FLOAT_EQ(g->build_params.spill.closure_ratio, 1.5f);
        EXPECT_EQ(g->build_params.spill.max_assign, 3);
    }
    {
        auto index = make(8, "IVF64_GMM_soar0.5,Flat");
        IndexIVFGMM* g = as_gmm(index.get());
        EXPECT_EQ(g->build_params.spill.rule, SpillRule::Soar);
        EXPECT_FLOAT_EQ(g->build_params.spill.soar_lambda, 0.5f);
    }
    {
        auto index = make(8, "IVF64_GMM_rair0.75,Flat");
        IndexIVFGMM* g = as_gmm(index.get());
        EXPECT_EQ(g->build_params.spill.rule, SpillRule::Rair);
        EXPECT_FLOAT_EQ(g->build_params.spill.rair_lambda, 0.75f);
        expect_error(8, "IVF64_GMM_rair0.5_soar1,Flat", "soar1");
        expect_error(8, "IVF64_GMM_rair-1,Flat", "rair-1");
    }
    {
        auto index = make(8, "IVF64_GMM_nospill,Flat");
        IndexIVFGMM* g = as_gmm(index.get());
        EXPECT_EQ(g->build_params.spill.rule, SpillRule::None);
        EXPECT_EQ(g->build_params.spill.max_assign, 1);
    }
}

TEST(IndexFactory, PreTransformChain) {
    auto index = make(32, "PCA16,IVF64_GMM,Flat");
    auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index.get());
    ASSERT_NE(pt, nullptr);
    EXPECT_EQ(pt->d, 32);
    ASSERT_EQ(pt->chain.size(), 1u);
    EXPECT_NE(dynamic_cast<faiss::PCAMatrix*>(pt->chain[0]), nullptr);
    EXPECT_EQ(pt->chain[0]->d_in, 32);
    EXPECT_EQ(pt->chain[0]->d_out, 16);
    IndexIVFGMM* gmm = as_gmm(pt->index);
    ASSERT_NE(gmm, nullptr);
    EXPECT_EQ(gmm->d, 16);
    EXPECT_EQ(gmm->nlist, 64u);

    auto two = make(32, "L2norm,OPQ4_16,IVF64_GMMdiag,Flat");
    auto* pt2 = dynamic_cast<faiss::IndexPreTransform*>(two.get());
    ASSERT_NE(pt2, nullptr);
    ASSERT_EQ(pt2->chain.size(), 2u);
    EXPECT_NE(
        dynamic_cast<faiss::NormalizationTransform*>(pt2->chain[0]), nullptr);
    EXPECT_NE(dynamic_cast<faiss::OPQMatrix*>(pt2->chain[1]), nullptr);
    EXPECT_EQ(pt2->chain[1]->d_out, 16);
    EXPECT_EQ(faiss_gmm::try_extract_index_ivfgmm(two.get())->d, 16);
}

TEST(IndexFactory, IDMapTokensGiveTheIndexThatStoresIds) {
    // IndexIVFGMM stores ids itself; a faiss::IndexIDMap around it would
    // mislabel results after remove_ids, so the token builds no wrapper
    for (const char* s :
         {"IDMap,IVF64_GMM,Flat",
          "IVF64_GMM,Flat,IDMap",
          "IDMap2,IVF64_GMM,Flat",
          "IVF64_GMM,Flat,IDMap2"}) {
        auto index = make(8, s);
        EXPECT_EQ(dynamic_cast<faiss::IndexIDMap*>(index.get()), nullptr) << s;
        EXPECT_NE(dynamic_cast<IndexIVFGMM*>(index.get()), nullptr) << s;
    }
    for (const char* s :
         {"PCA16,IDMap,IVF64_GMM,Flat", "IDMap2,PCA16,IVF64_GMM,Flat"}) {
        auto index = make(32, s);
        auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index.get());
        ASSERT_NE(pt, nullptr) << s;
        EXPECT_EQ(as_gmm(pt->index)->d, 16);
    }
    // the ids the caller gives are the ids search returns, also after a
    // removal
    auto index = make(8, "IDMap,IVF4_GMM,Flat");
    std::vector<float> x(200 * 8);
    for (size_t i = 0; i < x.size(); i++) {
        x[i] = float((i * 7919) % 101) / 10.0f;
    }
    std::vector<faiss_gmm::idx_t> ids(200);
    for (int i = 0; i < 200; i++) {
        ids[i] = 1000 + 3 * i;
    }
    index->train(200, x.data());
    index->add_with_ids(200, x.data(), ids.data());
    faiss::IDSelectorRange first_half(1000, 1300);
    EXPECT_EQ(index->remove_ids(first_half), 100u);
    faiss_gmm::set_index_parameters(index.get(), "nprobe=4");
    std::vector<float> dis(1);
    std::vector<faiss_gmm::idx_t> label(1);
    index->search(1, x.data() + 150 * 8, 1, dis.data(), label.data());
    EXPECT_EQ(label[0], ids[150]);
    EXPECT_EQ(dis[0], 0.0f);
}

TEST(IndexFactory, StringsWithoutGmmGoToFaiss) {
    {
        auto index = make(16, "IVF64,Flat");
        EXPECT_NE(dynamic_cast<faiss::IndexIVFFlat*>(index.get()), nullptr);
        EXPECT_EQ(dynamic_cast<IndexIVFGMM*>(index.get()), nullptr);
        EXPECT_EQ(faiss_gmm::try_extract_index_ivfgmm(index.get()), nullptr);
    }
    {
        auto index = make(16, "Flat");
        EXPECT_NE(dynamic_cast<faiss::IndexFlat*>(index.get()), nullptr);
    }
    {
        auto index = make(16, "Flat", faiss::METRIC_INNER_PRODUCT);
        EXPECT_EQ(index->metric_type, faiss::METRIC_INNER_PRODUCT);
    }
    {
        auto index = make(16, "PCA8,IVF16,Flat");
        auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index.get());
        ASSERT_NE(pt, nullptr);
        EXPECT_NE(dynamic_cast<faiss::IndexIVFFlat*>(pt->index), nullptr);
    }
    {
        auto index = make(16, "IDMap,Flat");
        EXPECT_NE(dynamic_cast<faiss::IndexIDMap*>(index.get()), nullptr);
    }
    // FAISS's own errors pass through unchanged
    EXPECT_THROW(make(16, "NoSuchIndex"), faiss::FaissException);
}

TEST(IndexFactory, ErrorsNameTheToken) {
    expect_error(8, "IVF0_GMM,Flat", "IVF0_GMM");
    expect_error(8, "IVFx_GMM,Flat", "IVFx_GMM");
    expect_error(8, "IVF1024_GMMfoo,Flat", "IVF1024_GMMfoo");
    // codes FAISS cannot build, or that are not IVF codes with a scanner
    expect_error(8, "IVF1024_GMM,PQ3", "PQ3");
    expect_error(8, "IVF1024_GMM,HNSW32", "HNSW32");
    expect_error(8, "IVF1024_GMM,RQ2x4fs_Nrq2x4", "RQ2x4fs_Nrq2x4");
    expect_error(8, "IVF1024_GMM", "IVF1024_GMM");
    expect_error(8, "PCA4,IVF1024_GMM", "IVF1024_GMM");
    expect_error(
        8, "IVF1024_GMM,Flat", "IVF1024_GMM", faiss::METRIC_INNER_PRODUCT);
    expect_error(8, "HNSW32,IVF64_GMM,Flat", "HNSW32");
    expect_error(8, "IMI2x16,IVF64_GMM,Flat", "IMI2x16");
    expect_error(8, "PCAfoo,IVF64_GMM,Flat", "PCAfoo");
    expect_error(8, "IVF64_GMM,Flat,RFoo", "RFoo");
    expect_error(8, "IVF64_GMM,Flat,IVF64_GMM,Flat", "IVF64_GMM");
    expect_error(8, "IVF64_GMM,Flat,", "IVF64_GMM,Flat");
    expect_error(8, "IVF64_GMM_bogus1,Flat", "bogus1");
    expect_error(8, "IVF64_GMM_tau2,Flat", "tau2");
    expect_error(8, "IVF64_GMM_tau0.1.2,Flat", "tau0.1.2");
    expect_error(8, "IVF64_GMM_T0,Flat", "T0");
    expect_error(8, "IVF64_GMM_m0,Flat", "m0");
    expect_error(8, "IVF64_GMM_m2.5,Flat", "m2.5");
    expect_error(8, "IVF64_GMM_m2_m3,Flat", "m3");
    expect_error(8, "IVF64_GMM_closure0.5,Flat", "closure0.5");
    expect_error(8, "IVF64_GMM_tau0.1_closure1.2,Flat", "closure1.2");
    expect_error(8, "IVF64_GMM_nospill_m2,Flat", "nospill");
    expect_error(8, "IVF64_GMM_closure1.2_T2,Flat", "T");
    expect_error(8, "IVF2_GMM_m3,Flat", "IVF2_GMM_m3");
    expect_error(8, "IVF17M_GMM,Flat", "IVF17M_GMM");
    expect_error(8, "IVF99999999999999999999_GMM,Flat", "IVF9999");
    expect_error(0, "IVF64_GMM,Flat", "d=0");
}

TEST(IndexFactory, FullCovarianceToken) {
    auto full = make(8, "IVF64_GMMfull,Flat");
    EXPECT_EQ(
        as_gmm(full.get())->build_params.gmm.covariance, CovarianceType::Full);
    // every other GMM option still combines with it, and so do wrappers
    // and codes
    auto spill = make(8, "IVF64_GMMfull_tau0.05_m3_T2,Flat");
    EXPECT_EQ(
        as_gmm(spill.get())->build_params.gmm.covariance, CovarianceType::Full);
    EXPECT_EQ(as_gmm(spill.get())->build_params.spill.max_assign, 3);
    EXPECT_EQ(as_gmm(spill.get())->build_params.spill.temperature, 2.0f);
    for (const char* s :
         {"IVF64_GMMfull_nospill,Flat",
          "IVF64_GMMfull_closure1.2_m2,SQ8",
          "IVF64_GMMfull_soar1,Flat",
          "PCA8,IDMap,IVF4k_GMMfull_m2,PQ4,RFlat"}) {
        auto index = make(16, s);
        IndexIVFGMM* gmm = faiss_gmm::try_extract_index_ivfgmm(index.get());
        ASSERT_NE(gmm, nullptr) << s;
        EXPECT_EQ(gmm->build_params.gmm.covariance, CovarianceType::Full) << s;
    }
    expect_error(8, "IVF64_GMMfulll,Flat", "IVF64_GMMfulll");
    expect_error(8, "IVF64_GMMfull_full,Flat", "IVF64_GMMfull_full");
    // the key table names it too
    as_gmm(full.get())->set_build_parameters("covariance=diag");
    EXPECT_EQ(
        as_gmm(full.get())->build_params.gmm.covariance,
        CovarianceType::Diagonal);
    as_gmm(full.get())->set_build_parameters("covariance=full");
    EXPECT_EQ(
        as_gmm(full.get())->build_params.gmm.covariance, CovarianceType::Full);
}

TEST(IndexFactory, FullCovarianceEndToEnd) {
    const int d = 8;
    const size_t n = 6000;
    std::vector<float> x = clustered_data(n, d, 17);
    auto index = make(d, "IVF64_GMMfull,Flat");
    IndexIVFGMM* ivf = as_gmm(index.get());
    ivf->build_params.gmm.niter = 8;
    index->train(n, x.data());
    ASSERT_TRUE(ivf->gmm.is_trained);
    EXPECT_EQ(ivf->gmm.covariance, CovarianceType::Full);
    EXPECT_EQ(ivf->gmm.covariances.size(), size_t(64) * d * d);
    ivf->gmm.check_consistency();
    index->add(n, x.data());
    EXPECT_EQ(index->ntotal, faiss_gmm::idx_t(n));

    const int k = 5, nq = 50;
    auto search = [&](const faiss::Index& idx,
                      std::vector<float>* distances,
                      std::vector<faiss_gmm::idx_t>* labels) {
        distances->resize(nq * k);
        labels->resize(nq * k);
        idx.search(nq, x.data(), k, distances->data(), labels->data());
    };
    ivf->nprobe = 64;
    std::vector<float> dis;
    std::vector<faiss_gmm::idx_t> lab;
    search(*index, &dis, &lab);
    for (int q = 0; q < nq; q++) {
        EXPECT_EQ(lab[q * k], q) << "a base vector finds itself first";
        EXPECT_EQ(dis[q * k], 0.0f);
        std::set<faiss_gmm::idx_t> seen(
            lab.begin() + q * k, lab.begin() + (q + 1) * k);
        EXPECT_EQ(seen.size(), size_t(k)) << "id returned twice";
    }
    // a few probes by posterior (the full model's log-joint) still find
    // most of the exact neighbours
    ivf->nprobe = 4;
    faiss_gmm::set_index_parameters(index.get(), "probe=posterior");
    search(*index, &dis, &lab);
    int self = 0;
    for (int q = 0; q < nq; q++) {
        self += lab[q * k] == q;
    }
    EXPECT_GE(self, nq * 9 / 10);

    // write / read: the same model and the same results
    const std::string path =
        std::string(FAISS_GMM_TEST_TMPDIR) + "/test_index_factory_full.bin";
    faiss_gmm::write_index(index.get(), path.c_str());
    std::unique_ptr<faiss::Index> loaded(faiss_gmm::read_index(path.c_str()));
    std::remove(path.c_str());
    IndexIVFGMM* copy = as_gmm(loaded.get());
    ASSERT_NE(copy, nullptr);
    EXPECT_EQ(copy->gmm.covariance, CovarianceType::Full);
    EXPECT_EQ(copy->gmm.covariances, ivf->gmm.covariances);
    EXPECT_EQ(copy->gmm.precision_cholesky, ivf->gmm.precision_cholesky);
    EXPECT_EQ(copy->nprobe, ivf->nprobe);
    std::vector<float> dis2;
    std::vector<faiss_gmm::idx_t> lab2;
    search(*loaded, &dis2, &lab2);
    EXPECT_EQ(lab2, lab);
    EXPECT_EQ(dis2, dis);
}

TEST(IndexFactory, BuiltChainTrainsAddsAndSearches) {
    const int d = 32;
    const size_t n = 2000;
    std::vector<float> x = clustered_data(n, d, 7);
    auto index = make(d, "PCA16,IDMap,IVF16_GMM_m2,Flat");
    index->train(n, x.data());
    std::vector<faiss_gmm::idx_t> ids(n);
    for (size_t i = 0; i < n; i++) {
        ids[i] = 1000000 + 3 * faiss_gmm::idx_t(i);
    }
    index->add_with_ids(n, x.data(), ids.data());
    EXPECT_EQ(index->ntotal, faiss_gmm::idx_t(n));

    faiss_gmm::set_index_parameters(index.get(), "nprobe=16");
    EXPECT_EQ(faiss_gmm::try_extract_index_ivfgmm(index.get())->nprobe, 16u);
    const int k = 5, nq = 20;
    std::vector<float> distances(nq * k);
    std::vector<faiss_gmm::idx_t> labels(nq * k);
    index->search(nq, x.data(), k, distances.data(), labels.data());
    std::set<faiss_gmm::idx_t> valid(ids.begin(), ids.end());
    for (int q = 0; q < nq; q++) {
        // a base vector finds itself first (exact with nprobe = nlist)
        EXPECT_EQ(labels[q * k], ids[q]);
        std::set<faiss_gmm::idx_t> seen;
        for (int j = 0; j < k; j++) {
            EXPECT_EQ(valid.count(labels[q * k + j]), 1u);
            EXPECT_TRUE(seen.insert(labels[q * k + j]).second)
                << "id returned twice";
        }
    }
}

TEST(IndexFactory, SetIndexParameters) {
    auto wrapped = make(32, "PCA16,IDMap2,IVF64_GMM,Flat");
    faiss_gmm::set_index_parameters(wrapped.get(), "nprobe=7,probe=posterior");
    IndexIVFGMM* gmm = faiss_gmm::try_extract_index_ivfgmm(wrapped.get());
    ASSERT_NE(gmm, nullptr);
    EXPECT_EQ(gmm->nprobe, 7u);
    EXPECT_EQ(
        gmm->search_options.probe_order, faiss_gmm::ProbeOrder::Posterior);
    EXPECT_THROW(
        faiss_gmm::set_index_parameters(wrapped.get(), "no_such_key=1"),
        faiss::FaissException);

    // a FAISS index goes to faiss::ParameterSpace
    auto ivf = make(16, "IVF64,Flat");
    faiss_gmm::set_index_parameters(ivf.get(), "nprobe=5");
    EXPECT_EQ(dynamic_cast<faiss::IndexIVFFlat*>(ivf.get())->nprobe, 5u);
    EXPECT_THROW(
        faiss_gmm::set_index_parameters(nullptr, "nprobe=1"),
        faiss::FaissException);
}

TEST(IndexFactory, FastScanPQAndRaBitQCodes) {
    // the code index FAISS builds for the code, behind the GMM tokens,
    // transforms and refinement (search and recall: test_fast_scan_codes)
    struct Case {
        const char* description;
        bool by_residual;
    };
    for (const Case& c :
         {Case{"IVF64_GMM_m3,PQ8x4fs", false},
          Case{"IVF64_GMMdiag_soar1,PQ8x4fsr", true},
          Case{"IVF64_GMM,PQ4x4fs_64,RFlat", false},
          Case{"PCA16,IVF64_GMM_m2,PQ8x4fsr,Refine(SQfp16)", true}}) {
        SCOPED_TRACE(c.description);
        auto index = make(32, c.description);
        IndexIVFGMM* gmm = faiss_gmm::try_extract_index_ivfgmm(index.get());
        ASSERT_NE(gmm, nullptr);
        auto* fs = dynamic_cast<faiss::IndexIVFPQFastScan*>(gmm->codes_index);
        ASSERT_NE(fs, nullptr);
        EXPECT_EQ(fs->by_residual, c.by_residual);
        EXPECT_EQ(fs->quantizer, gmm->quantizer);
        EXPECT_EQ(gmm->code_size, (fs->pq.M + 1) / 2) << "4 bits per index";
    }
#if FAISS_GMM_HAS_RABITQ
    for (const char* description :
         {"IVF64_GMM_m3,RaBitQ", "IVF64_GMM,RaBitQ4,RFlat"}) {
        SCOPED_TRACE(description);
        auto index = make(32, description);
        IndexIVFGMM* gmm = faiss_gmm::try_extract_index_ivfgmm(index.get());
        ASSERT_NE(gmm, nullptr);
        EXPECT_NE(
            dynamic_cast<faiss::IndexIVFRaBitQ*>(gmm->codes_index), nullptr);
    }
#else
    expect_error(32, "IVF64_GMM,RaBitQ", "FAISS >= 1.11");
#endif
}

TEST(IndexFactory, CompressedCodesAndRefinement) {
    // every spilled copy encoded against its own list: the GMM index over
    // scalar-quantized and PQ codes, alone or re-ranked by a refinement
    // (PQ without FAISS's polysemous training, "np", which takes ~40 s
    // here; measured recall@10 at nprobe = nlist: SQ8 0.985, SQ4 0.873,
    // SQfp16 1.0, PQ8 0.68, PQ8 + RFlat 0.98, SQ4 + Refine(SQfp16) 0.998)
    const int d = 32;
    const size_t n = 4000;
    const int nq = 40, k = 10;
    std::vector<float> x = clustered_data(n, d, 11);
    faiss::IndexFlatL2 flat(d);
    flat.add(n, x.data());
    std::vector<float> dref(nq * k);
    std::vector<faiss_gmm::idx_t> iref(nq * k);
    flat.search(nq, x.data(), k, dref.data(), iref.data());
    for (const char* description :
         {"IVF16_GMM_m3,SQ8",
          "IVF16_GMM_m3,SQ4",
          "IVF16_GMM_m3,SQfp16",
          "IVF16_GMM_m3,PQ8np",
          "IVF16_GMM_m3,PQ8np,RFlat",
          "IVF16_GMM_m3,SQ4,Refine(SQfp16)",
          "PCA16,IVF16_GMM,PQ4np,Refine(Flat)"}) {
        SCOPED_TRACE(description);
        auto index = make(d, description);
        IndexIVFGMM* gmm = faiss_gmm::try_extract_index_ivfgmm(index.get());
        ASSERT_NE(gmm, nullptr);
        gmm->build_params.gmm.niter = 4;
        const bool refined =
            std::string(description).find("R") != std::string::npos;
        EXPECT_EQ(
            dynamic_cast<faiss::IndexRefine*>(index.get()) != nullptr,
            refined && std::string(description).rfind("PCA", 0) != 0);
        index->train(n, x.data());
        index->add(n, x.data());
        EXPECT_EQ(index->ntotal, faiss_gmm::idx_t(n));
        EXPECT_GT(gmm->nentries(), size_t(n)) << "no spill";
        faiss_gmm::set_index_parameters(
            index.get(),
            refined ? "nprobe=16,prune_margin=0,k_factor=4"
                    : "nprobe=16,prune_margin=0");
        EXPECT_EQ(gmm->nprobe, 16u);
        std::vector<float> dis(nq * k);
        std::vector<faiss_gmm::idx_t> ids(nq * k);
        index->search(nq, x.data(), k, dis.data(), ids.data());
        size_t found = 0;
        for (int q = 0; q < nq; q++) {
            std::set<faiss_gmm::idx_t> truth(
                iref.begin() + q * k, iref.begin() + (q + 1) * k);
            std::set<faiss_gmm::idx_t> seen;
            for (int j = 0; j < k; j++) {
                const faiss_gmm::idx_t id = ids[q * k + j];
                EXPECT_TRUE(seen.insert(id).second) << "id returned twice";
                found += truth.count(id);
            }
        }
        // every list probed: what is lost is the codes' rounding, which
        // the refinement undoes
        const bool projected = std::string(description).rfind("PCA", 0) == 0;
        EXPECT_GE(double(found), (refined && !projected ? 0.95 : 0.3) * nq * k);
    }
    // k_factor goes to the refinement, and is checked
    auto refined = make(d, "IVF16_GMM,PQ8np,RFlat");
    faiss_gmm::set_index_parameters(refined.get(), "k_factor=3,nprobe=5");
    EXPECT_EQ(dynamic_cast<faiss::IndexRefine*>(refined.get())->k_factor, 3.0f);
    EXPECT_EQ(faiss_gmm::try_extract_index_ivfgmm(refined.get())->nprobe, 5u);
    EXPECT_THROW(
        faiss_gmm::set_index_parameters(refined.get(), "k_factor=0.5"),
        faiss::FaissException);
    auto plain = make(d, "IVF16_GMM,PQ8np");
    EXPECT_THROW(
        faiss_gmm::set_index_parameters(plain.get(), "k_factor=2"),
        faiss::FaissException);
}
