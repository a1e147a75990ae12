/**
 * The CPU <-> GPU cloner (gpu/GpuCloner.h) and faiss_gmm_eval's --gpu path.
 *
 * Round trips CPU -> GPU -> CPU keep the model, parameters, lists, ids and
 * spill records exactly; wrappers (IndexPreTransform with PCA, IndexIDMap,
 * IndexIDMap2) are cloned around the converted index; an index that is not
 * a plugin class is refused with its class named; a GPU index is written
 * through the CPU format and read back. The eval harness on the GPU gives
 * the CPU's counters and recall for the same lists.
 *
 * Tests that need a device skip without one (CI has none). The ones that
 * never reach CUDA (refusals, CPU-only copies) run everywhere.
 */

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/FaissException.h>

#include <datasets/synthetic.h>
#include <eval/runner.h>
#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/gpu/GpuCloner.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/GpuIndexIVFGMM.h>
#include <faiss_gmm/index_factory.h>
#include <faiss_gmm/index_io.h>

#include "test_scratch.h"
#include "test_utils.h"

using namespace faiss_gmm;

namespace {

/// n points around 20 random centres (unit-variance noise), seeded.
std::vector<float> clustered(int64_t n, int d, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    std::vector<float> centres(size_t(20) * d);
    for (float& c : centres) {
        c = 4 * normal(rng);
    }
    std::vector<float> x(size_t(n) * d);
    for (int64_t i = 0; i < n; i++) {
        const float* c = centres.data() + size_t(rng() % 20) * d;
        for (int j = 0; j < d; j++) {
            x[size_t(i) * d + j] = c[j] + normal(rng);
        }
    }
    return x;
}

/// A trained, filled IndexIVFGMM (EM on the CPU: deterministic), spill on,
/// ids 1000 + 7 i so that ids and positions differ.
std::unique_ptr<IndexIVFGMM>
filled_cpu_index(int d, size_t nlist, int64_t n, const std::vector<float>& x) {
    auto index = std::make_unique<IndexIVFGMM>(d, nlist);
    index->build_params.train_device = TrainDevice::Cpu;
    index->build_params.gmm.niter = 5;
    index->build_params.spill.tau = 0.05f;
    index->build_params.spill.max_assign = 3;
    index->nprobe = 4;
    // CPU and GPU results are compared: list pruning bounds differently on
    // each (the running k-th distance on the CPU), so it is off
    index->search_options.prune_margin = 0;
    index->search_options.min_expected_hits = 0;
    index->train(n, x.data());
    std::vector<idx_t> ids(n);
    for (int64_t i = 0; i < n; i++) {
        ids[i] = 1000 + 7 * i;
    }
    index->add_with_ids(n, x.data(), ids.data());
    return index;
}

void expect_same_model(const GaussianMixture& a, const GaussianMixture& b) {
    EXPECT_EQ(a.d, b.d);
    EXPECT_EQ(a.k, b.k);
    EXPECT_EQ(a.covariance, b.covariance);
    EXPECT_EQ(a.weights, b.weights);
    EXPECT_EQ(a.means, b.means);
    EXPECT_EQ(a.variances, b.variances);
}

/// Same lists (entries in order, ids, vectors, spill records) and model.
void expect_same_cpu_index(const IndexIVFGMM& a, const IndexIVFGMM& b) {
    ASSERT_EQ(a.d, b.d);
    ASSERT_EQ(a.nlist, b.nlist);
    EXPECT_EQ(a.ntotal, b.ntotal);
    EXPECT_EQ(a.nentries(), b.nentries());
    EXPECT_EQ(a.is_trained, b.is_trained);
    EXPECT_EQ(a.nprobe, b.nprobe);
    EXPECT_EQ(a.build_params.spill.rule, b.build_params.spill.rule);
    EXPECT_EQ(a.build_params.spill.tau, b.build_params.spill.tau);
    EXPECT_EQ(a.build_params.spill.max_assign, b.build_params.spill.max_assign);
    EXPECT_EQ(a.search_options.probe_order, b.search_options.probe_order);
    expect_same_model(a.gmm, b.gmm);
    EXPECT_EQ(a.spill_records.width, b.spill_records.width);
    for (size_t l = 0; l < a.nlist; l++) {
        const size_t n = a.invlists->list_size(l);
        ASSERT_EQ(n, b.invlists->list_size(l)) << "list " << l;
        const idx_t* ia = a.invlists->get_ids(l);
        const idx_t* ib = b.invlists->get_ids(l);
        EXPECT_EQ(
            std::vector<idx_t>(ia, ia + n), std::vector<idx_t>(ib, ib + n))
            << "list " << l;
        const uint8_t* ca = a.invlists->get_codes(l);
        const uint8_t* cb = b.invlists->get_codes(l);
        EXPECT_EQ(
            std::vector<uint8_t>(ca, ca + n * a.code_size),
            std::vector<uint8_t>(cb, cb + n * b.code_size))
            << "list " << l;
        EXPECT_EQ(a.spill_records.records[l], b.spill_records.records[l])
            << "list " << l;
    }
}

/// The GPU index holds exactly the CPU index's lists and model.
void expect_gpu_matches_cpu(
    const gpu::GpuIndexIVFGMM& g, const IndexIVFGMM& c) {
    ASSERT_EQ(g.d, c.d);
    ASSERT_EQ(g.nlist, c.nlist);
    EXPECT_EQ(g.ntotal, c.ntotal);
    EXPECT_EQ(g.nentries(), c.nentries());
    EXPECT_EQ(g.nprobe, c.nprobe);
    EXPECT_EQ(g.other_lists_width(), c.spill_records.width);
    expect_same_model(g.gmm, c.gmm);
    for (size_t l = 0; l < c.nlist; l++) {
        const size_t n = c.invlists->list_size(l);
        ASSERT_EQ(g.list_length(idx_t(l)), n) << "list " << l;
        const idx_t* ids = c.invlists->get_ids(l);
        EXPECT_EQ(g.list_ids(idx_t(l)), std::vector<idx_t>(ids, ids + n));
        const float* v =
            reinterpret_cast<const float*>(c.invlists->get_codes(l));
        EXPECT_EQ(
            g.list_vectors(idx_t(l)),
            std::vector<float>(v, v + n * size_t(c.d)));
        EXPECT_EQ(g.list_records(idx_t(l)), c.spill_records.records[l]);
    }
}

struct SearchResult {
    std::vector<float> distances;
    std::vector<idx_t> labels;
};

SearchResult
search(const faiss::Index& index, int64_t nq, const float* q, int k) {
    SearchResult r;
    r.distances.resize(size_t(nq) * k);
    r.labels.resize(size_t(nq) * k);
    index.search(nq, q, k, r.distances.data(), r.labels.data());
    return r;
}

/// Same ids in the same order; distances within float tolerance.
void expect_same_results(const SearchResult& a, const SearchResult& b) {
    EXPECT_EQ(a.labels, b.labels);
    ASSERT_EQ(a.distances.size(), b.distances.size());
    for (size_t i = 0; i < a.distances.size(); i++) {
        EXPECT_NEAR(
            a.distances[i], b.distances[i], 1e-3f * (1 + a.distances[i]))
            << "result " << i;
    }
}

using faiss_gmm::test::scratch_file;

} // namespace

// ---- runs without a device: nothing here reaches CUDA ----------------------

TEST(GpuCloner, NonPluginIndexIsRefusedByName) {
    const int d = 8;
    faiss::IndexFlatL2 flat(d);
    try {
        std::unique_ptr<faiss::Index> g(gpu::index_cpu_to_gpu(&flat));
        FAIL() << "an IndexFlatL2 went to the GPU";
    } catch (const faiss::FaissException& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("faiss::IndexFlatL2"), std::string::npos) << msg;
        EXPECT_NE(msg.find("not a faiss-gmm plugin class"), std::string::npos)
            << msg;
    }
    // the same below a wrapper: the wrapper's partial copy is freed
    auto* pt = new faiss::IndexPreTransform(
        new faiss::RandomRotationMatrix(d, d), new faiss::IndexFlatL2(d));
    pt->own_fields = true;
    std::unique_ptr<faiss::Index> owner(pt);
    try {
        std::unique_ptr<faiss::Index> g(gpu::index_cpu_to_gpu(pt));
        FAIL() << "an IndexFlatL2 below a wrapper went to the GPU";
    } catch (const faiss::FaissException& e) {
        EXPECT_NE(
            std::string(e.what()).find("faiss::IndexFlatL2"), std::string::npos)
            << e.what();
    }
    faiss::IndexFlatL2 quantizer(d);
    faiss::IndexIVFFlat ivf(&quantizer, d, 4);
    EXPECT_THROW(
        std::unique_ptr<faiss::Index>(gpu::index_cpu_to_gpu(&ivf)),
        faiss::FaissException);
    EXPECT_THROW(
        std::unique_ptr<faiss::Index>(gpu::index_cpu_to_gpu(nullptr)),
        faiss::FaissException);
}

TEST(GpuCloner, CpuIndexesAreCopiedOnTheHost) {
    const int d = 8;
    const int64_t n = 2000;
    std::vector<float> x = clustered(n, d, 1);
    // a plain FAISS index: faiss::clone_index
    faiss::IndexFlatL2 flat(d);
    flat.add(n, x.data());
    std::unique_ptr<faiss::Index> flat_copy(gpu::index_gpu_to_cpu(&flat));
    ASSERT_NE(dynamic_cast<faiss::IndexFlatL2*>(flat_copy.get()), nullptr);
    expect_same_results(
        search(flat, 20, x.data(), 5), search(*flat_copy, 20, x.data(), 5));

    // a CPU IndexIVFGMM keeps its class (FAISS's cloner would slice it)
    std::unique_ptr<IndexIVFGMM> cpu = filled_cpu_index(d, 16, n, x);
    std::unique_ptr<faiss::Index> copy(gpu::index_gpu_to_cpu(cpu.get()));
    auto* cpu_copy = dynamic_cast<IndexIVFGMM*>(copy.get());
    ASSERT_NE(cpu_copy, nullptr);
    expect_same_cpu_index(*cpu, *cpu_copy);

    // an IVFGMM where only FAISS's cloner could reach it: refused
    IndexIVFGMM empty(d, 16);
    faiss::IndexRefineFlat refine(&empty);
    EXPECT_THROW(
        std::unique_ptr<faiss::Index>(gpu::index_gpu_to_cpu(&refine)),
        faiss::FaissException);
}

// ---- need a device ---------------------------------------------------------

TEST(GpuCloner, RoundTripKeepsListsIdsAndModel) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 16;
    const int64_t n = 6000;
    std::vector<float> x = clustered(n, d, 2);
    std::unique_ptr<IndexIVFGMM> cpu = filled_cpu_index(d, 32, n, x);
    ASSERT_GT(cpu->nentries(), size_t(cpu->ntotal)) << "the test needs spill";

    std::unique_ptr<faiss::Index> g(gpu::index_cpu_to_gpu(cpu.get()));
    auto* gpu_index = dynamic_cast<gpu::GpuIndexIVFGMM*>(g.get());
    ASSERT_NE(gpu_index, nullptr);
    EXPECT_EQ(gpu::try_extract_gpu_index_ivfgmm(g.get()), gpu_index);
    expect_gpu_matches_cpu(*gpu_index, *cpu);
    expect_same_results(
        search(*cpu, 50, x.data(), 10), search(*g, 50, x.data(), 10));

    std::unique_ptr<faiss::Index> back(gpu::index_gpu_to_cpu(g.get()));
    auto* cpu_back = dynamic_cast<IndexIVFGMM*>(back.get());
    ASSERT_NE(cpu_back, nullptr);
    expect_same_cpu_index(*cpu, *cpu_back);
    expect_same_results(
        search(*cpu, 50, x.data(), 10), search(*back, 50, x.data(), 10));

    // a GPU index given to index_cpu_to_gpu is copied, not shared
    std::unique_ptr<faiss::Index> g2(gpu::index_cpu_to_gpu(g.get()));
    ASSERT_NE(g2.get(), g.get());
    expect_gpu_matches_cpu(*dynamic_cast<gpu::GpuIndexIVFGMM*>(g2.get()), *cpu);
}

TEST(GpuCloner, PreTransformWrapperIsClonedAroundTheGpuIndex) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 32;
    const int64_t n = 5000;
    std::vector<float> x = clustered(n, d, 3);
    std::unique_ptr<faiss::Index> cpu(index_factory(d, "PCA16,IVF32_GMM,Flat"));
    try_extract_index_ivfgmm(cpu.get())->build_params.train_device =
        TrainDevice::Cpu;
    cpu->train(n, x.data());
    cpu->add(n, x.data());
    set_index_parameters(cpu.get(), "nprobe=6");

    std::unique_ptr<faiss::Index> g(gpu::index_cpu_to_gpu(cpu.get()));
    auto* pt = dynamic_cast<faiss::IndexPreTransform*>(g.get());
    ASSERT_NE(pt, nullptr);
    EXPECT_TRUE(pt->own_fields);
    ASSERT_EQ(pt->chain.size(), 1u);
    EXPECT_NE(
        pt->chain[0],
        static_cast<faiss::IndexPreTransform*>(cpu.get())->chain[0])
        << "the transform is cloned, not shared";
    EXPECT_EQ(pt->d, d);
    EXPECT_EQ(pt->ntotal, n);
    gpu::GpuIndexIVFGMM* inner = gpu::try_extract_gpu_index_ivfgmm(g.get());
    ASSERT_NE(inner, nullptr);
    EXPECT_EQ(inner, pt->index);
    expect_gpu_matches_cpu(*inner, *try_extract_index_ivfgmm(cpu.get()));
    expect_same_results(
        search(*cpu, 40, x.data(), 10), search(*g, 40, x.data(), 10));

    std::unique_ptr<faiss::Index> back(gpu::index_gpu_to_cpu(g.get()));
    ASSERT_NE(dynamic_cast<faiss::IndexPreTransform*>(back.get()), nullptr);
    ASSERT_NE(try_extract_index_ivfgmm(back.get()), nullptr);
    expect_same_cpu_index(
        *try_extract_index_ivfgmm(cpu.get()),
        *try_extract_index_ivfgmm(back.get()));
    expect_same_results(
        search(*cpu, 40, x.data(), 10), search(*back, 40, x.data(), 10));
}

TEST(GpuCloner, IDMapWrappersKeepTheirIds) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 16;
    const int64_t n = 4000;
    std::vector<float> x = clustered(n, d, 4);
    std::vector<idx_t> ids(n);
    for (int64_t i = 0; i < n; i++) {
        ids[i] = (int64_t(1) << 40) + 3 * i;
    }
    for (bool two_way : {false, true}) {
        auto* ivf = new IndexIVFGMM(d, 24);
        ivf->build_params.train_device = TrainDevice::Cpu;
        ivf->build_params.gmm.niter = 5;
        ivf->nprobe = 5;
        std::unique_ptr<faiss::IndexIDMap> cpu(
            two_way ? new faiss::IndexIDMap2(ivf) : new faiss::IndexIDMap(ivf));
        cpu->own_fields = true;
        cpu->train(n, x.data());
        cpu->add_with_ids(n, x.data(), ids.data());

        std::unique_ptr<faiss::Index> g(gpu::index_cpu_to_gpu(cpu.get()));
        auto* gmap = dynamic_cast<faiss::IndexIDMap*>(g.get());
        ASSERT_NE(gmap, nullptr);
        EXPECT_EQ(
            dynamic_cast<faiss::IndexIDMap2*>(g.get()) != nullptr, two_way);
        EXPECT_TRUE(gmap->own_fields);
        EXPECT_EQ(gmap->id_map, cpu->id_map);
        ASSERT_NE(gpu::try_extract_gpu_index_ivfgmm(g.get()), nullptr);
        expect_gpu_matches_cpu(
            *gpu::try_extract_gpu_index_ivfgmm(g.get()), *ivf);
        expect_same_results(
            search(*cpu, 30, x.data(), 10), search(*g, 30, x.data(), 10));
        if (two_way) {
            std::vector<float> v(d);
            g->reconstruct(ids[17], v.data());
            EXPECT_EQ(
                v, std::vector<float>(x.begin() + 17 * d, x.begin() + 18 * d));
        }

        std::unique_ptr<faiss::Index> back(gpu::index_gpu_to_cpu(g.get()));
        auto* cmap = dynamic_cast<faiss::IndexIDMap*>(back.get());
        ASSERT_NE(cmap, nullptr);
        EXPECT_EQ(cmap->id_map, cpu->id_map);
        ASSERT_NE(try_extract_index_ivfgmm(back.get()), nullptr);
        expect_same_cpu_index(*ivf, *try_extract_index_ivfgmm(back.get()));
    }
}

TEST(GpuCloner, WriteAndReadThroughTheCpuFormat) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 16;
    const int64_t n = 3000;
    std::vector<float> x = clustered(n, d, 5);
    std::unique_ptr<IndexIVFGMM> cpu = filled_cpu_index(d, 16, n, x);
    std::unique_ptr<faiss::Index> g(gpu::index_cpu_to_gpu(cpu.get()));

    const std::string fname = scratch_file("gpu_index.bin");
    gpu::write_index_gpu(g.get(), fname.c_str());
    std::unique_ptr<faiss::Index> read(read_index(fname.c_str()));
    auto* cpu_read = dynamic_cast<IndexIVFGMM*>(read.get());
    ASSERT_NE(cpu_read, nullptr) << "a GPU index is saved as its CPU copy";
    expect_same_cpu_index(*cpu, *cpu_read);

    std::unique_ptr<faiss::Index> g_again(gpu::index_cpu_to_gpu(read.get()));
    expect_same_results(
        search(*g, 30, x.data(), 10), search(*g_again, 30, x.data(), 10));
    std::remove(fname.c_str());
}

TEST(GpuEval, GpuRowsMatchTheCpuRowsOnTheSameLists) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    datasets::SyntheticParameters p;
    p.n_base = 5000;
    p.n_query = 100;
    p.d = 16;
    p.n_clusters = 24;
    p.low_rank = 4;
    p.seed = 7;
    const datasets::Dataset data = datasets::make_synthetic(p);
    // the baseline, and the k-means centroids as a GMM with spill: both
    // models come from FAISS's k-means (its assignments on the GPU in the
    // GPU run)
    const std::vector<eval::IndexSpec> specs = {
        {"kmeans", "IVF16,Flat", {}, eval::ModelSource::OwnTraining, {}},
        {"spill",
         "IVF16_GMM,Flat",
         {"", "prune_margin=0,min_expected_hits=0"},
         eval::ModelSource::KMeansCentroids,
         {}}};
    eval::EvalConfig config;
    config.nprobes = {1, 2, 4, 16};
    config.threads = 1; // the same k-means in both runs
    std::ostringstream cpu_log, gpu_log;
    const eval::EvalReport cpu =
        eval::run_evaluation(data, specs, config, cpu_log);
    config.gpu = true;
    const eval::EvalReport gpu_report =
        eval::run_evaluation(data, specs, config, gpu_log);
    EXPECT_FALSE(gpu_report.gpu.empty());
    ASSERT_EQ(gpu_report.indexes.size(), cpu.indexes.size());
    EXPECT_EQ(gpu_report.baseline, cpu.baseline);
    for (size_t i = 0; i < cpu.indexes.size(); i++) {
        const eval::IndexResult& c = cpu.indexes[i];
        const eval::IndexResult& g = gpu_report.indexes[i];
        SCOPED_TRACE(c.name);
        // The nearest centroid of k-means and of the baseline's add is
        // FAISS's BLAS expansion on the CPU and a direct computation on the
        // GPU: a vector at a near tie may go to the other list, so the
        // figures agree within a few vectors. (On one model the GPU lists
        // equal the CPU lists exactly: test_gpu_index.)
        const double rel = 2e-3;
        auto expect_close = [rel](double gv, double cv, const char* what) {
            EXPECT_NEAR(gv, cv, rel * std::abs(cv)) << what;
        };
        EXPECT_NE(g.description.find("GPU"), std::string::npos)
            << g.description;
        EXPECT_EQ(g.ntotal, c.ntotal);
        expect_close(double(g.nentries), double(c.nentries), "entries");
        expect_close(double(g.list_bytes), double(c.list_bytes), "bytes");
        expect_close(g.imbalance, c.imbalance, "imbalance");
        ASSERT_EQ(g.rows.size(), c.rows.size());
        for (size_t r = 0; r < c.rows.size(); r++) {
            const eval::SearchRow& cr = c.rows[r];
            const eval::SearchRow& gr = g.rows[r];
            SCOPED_TRACE("nprobe " + std::to_string(cr.nprobe));
            EXPECT_EQ(gr.nprobe, cr.nprobe);
            EXPECT_DOUBLE_EQ(gr.coarse_distances, cr.coarse_distances);
            expect_close(gr.fine_distances, cr.fine_distances, "fine");
            expect_close(gr.entries_scanned, cr.entries_scanned, "entries");
            expect_close(gr.lists_probed, cr.lists_probed, "lists probed");
            EXPECT_NEAR(gr.recall_at_k, cr.recall_at_k, 0.01);
            EXPECT_NEAR(gr.recall_at_100, cr.recall_at_100, 0.01);
        }
    }

    // a pruning row runs on the GPU too, pruning lists (never more than
    // the CPU, whose bound is tighter) and scanning no more than unpruned
    eval::IndexSpec pruned = specs[1];
    pruned.name = "pruned";
    pruned.gmm.search = "prune_margin=0.4";
    std::ostringstream pruned_log;
    const eval::EvalReport mixed =
        eval::run_evaluation(data, {specs[0], pruned}, config, pruned_log);
    ASSERT_EQ(mixed.indexes.size(), 2u);
    EXPECT_NE(mixed.indexes[1].description.find("[GPU]"), std::string::npos)
        << mixed.indexes[1].description;
    ASSERT_EQ(mixed.indexes[1].rows.size(), config.nprobes.size());
    for (size_t r = 0; r < config.nprobes.size(); r++) {
        const eval::SearchRow& row = mixed.indexes[1].rows[r];
        EXPECT_GE(row.entries_scanned, row.fine_distances);
        EXPECT_GT(row.recall_at_k, 0);
        EXPECT_LE(
            row.fine_distances,
            1.002 * gpu_report.indexes[1].rows[r].fine_distances);
    }

    // a GMM trained on the GPU by the index itself: rows are consistent
    config.nprobes = {1, 16};
    std::ostringstream log;
    const eval::EvalReport own = eval::run_evaluation(
        data, {{"", "IVF16_GMM,Flat", {}, {}, {}}}, config, log);
    ASSERT_EQ(own.indexes.size(), 1u);
    ASSERT_EQ(own.indexes[0].rows.size(), 2u);
    EXPECT_GT(own.indexes[0].replication, 1.0);
    EXPECT_GE(own.indexes[0].rows[1].recall_at_k, 0.999)
        << "nprobe = nlist is exhaustive";
    for (const eval::SearchRow& row : own.indexes[0].rows) {
        // nlist query-to-mean distances, plus at most one mean-to-mean
        // bound per probe after the first (list pruning, on by default)
        EXPECT_GE(row.coarse_distances, 16);
        EXPECT_LE(row.coarse_distances, 16 + double(row.nprobe - 1));
        EXPECT_GE(row.entries_scanned, row.fine_distances);
    }
}
