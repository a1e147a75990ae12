/**
 * GpuIndexIVFGMM against the CPU IndexIVFGMM on the same model and data:
 * stored lists (ids, order, spill records), search results and counters,
 * copies both ways, serialisation through the CPU index, rejections, on
 * flat float lists (SQ codes: test_gpu_index_codes.cpp). Every test skips
 * without a usable CUDA device. The comparisons accept only differences a
 * float near-tie explains (gpu_index_oracles.h).
 */

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <faiss/IndexIVF.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/GpuIndexIVFGMM.h>
#include <faiss_gmm/gpu/impl/GpuListAssignment.h>
#include <faiss_gmm/impl/ListPruning.h>
#include <faiss_gmm/index_io.h>
#include <kernels/list_pruning.h>

#include "gpu_index_oracles.h"
#include "test_utils.h"

using namespace faiss_gmm;
using namespace faiss_gmm::test;

TEST(GpuIndexIVFGMM, SearchAgreesWithCpu) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 24, nlist = 96;
    const idx_t n = 12000, nq = 60;
    for (CovarianceType cov :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        const GaussianMixture model = make_model(d, nlist, cov, 7);
        const std::vector<float> x = sample(model, n, 11);
        const std::vector<float> q = sample(model, nq, 13);
        Pair p = make_pair(model, SpillParameters());
        p.cpu->add(n, x.data());
        p.gpu->add(n, x.data());
        expect_same_lists(*p.cpu, *p.gpu, x.data(), n);
        for (ProbeOrder order : {ProbeOrder::L2, ProbeOrder::Posterior}) {
            for (size_t nprobe :
                 {size_t(1), size_t(8), size_t(64), size_t(nlist)}) {
                for (idx_t k : {idx_t(1), idx_t(10), idx_t(100), idx_t(1024)}) {
                    expect_same_search(
                        *p.cpu,
                        *p.gpu,
                        nq,
                        q.data(),
                        k,
                        search_params(nprobe, order),
                        describe(cov, order, nprobe, k));
                }
            }
        }
    }
}

TEST(GpuIndexIVFGMM, DefaultParametersAndTiling) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 16, nlist = 32;
    const idx_t n = 5000, nq = 300;
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Spherical, 3);
    const std::vector<float> x = sample(model, n, 5);
    const std::vector<float> q = sample(model, nq, 6);
    GpuIndexIVFGMMConfig tiny;
    tiny.search_memory = 64 << 10; // a few queries per tile
    Pair p = make_pair(model, SpillParameters(), tiny);
    p.cpu->add(n, x.data());
    p.gpu->add(n, x.data());
    p.cpu->nprobe = p.gpu->nprobe = 5;
    std::vector<float> dc(nq * 10), dg(nq * 10);
    std::vector<idx_t> ic(nq * 10), ig(nq * 10);
    p.cpu->search(nq, q.data(), 10, dc.data(), ic.data());
    p.gpu->search(nq, q.data(), 10, dg.data(), ig.data());
    EXPECT_GT(p.gpu->last_search_timing().ntiles, 1);
    EXPECT_EQ(p.gpu->last_search_timing().nq, nq);
    size_t differing = 0;
    for (size_t i = 0; i < ic.size(); i++) {
        differing += ic[i] != ig[i] && !near(dc[i], dg[i]) ? 1 : 0;
    }
    EXPECT_EQ(differing, 0u);
    // the same through the parameters of one call
    expect_same_search(
        *p.cpu, *p.gpu, nq, q.data(), 10, search_params(5), "tiled");
    EXPECT_GT(p.gpu->last_search_timing().scan_bytes, 0u);
    // plain FAISS IVF parameters: nprobe, index defaults for the rest
    faiss::SearchParametersIVF ivf;
    ivf.nprobe = 7;
    p.cpu->search(nq, q.data(), 10, dc.data(), ic.data(), &ivf);
    p.gpu->search(nq, q.data(), 10, dg.data(), ig.data(), &ivf);
    differing = 0;
    for (size_t i = 0; i < ic.size(); i++) {
        differing += ic[i] != ig[i] && !near(dc[i], dg[i]) ? 1 : 0;
    }
    EXPECT_EQ(differing, 0u);
    // max_codes counts unique vectors: the GPU cannot bound it before its
    // scan, so it refuses it rather than count something else
    ivf.max_codes = 900;
    expect_throw_naming(
        [&] { p.gpu->search(nq, q.data(), 10, dg.data(), ig.data(), &ivf); },
        "max_codes=900");
}

TEST(GpuIndexIVFGMM, EmptyTinyAndHugeLists) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 12, nlist = 40;
    // component 0 takes most points, 1..3 a few, the rest none
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Diagonal, 21, 30.0f);
    std::vector<float> x = sample(model, 6000, 22, {0});
    const std::vector<float> few = sample(model, 9, 23, {1, 2, 3});
    x.insert(x.end(), few.begin(), few.end());
    const idx_t n = idx_t(x.size() / d);
    const std::vector<float> q = sample(model, 40, 24);
    SpillParameters spill;
    spill.max_assign = 3;
    Pair p = make_pair(model, spill);
    p.cpu->add(n, x.data());
    p.gpu->add(n, x.data());
    expect_same_lists(*p.cpu, *p.gpu, x.data(), n);
    size_t empty = 0, largest = 0;
    for (size_t l = 0; l < size_t(nlist); l++) {
        empty += p.gpu->list_length(idx_t(l)) == 0 ? 1 : 0;
        largest = std::max(largest, p.gpu->list_length(idx_t(l)));
    }
    EXPECT_GT(empty, 10u);
    EXPECT_GT(largest, 5000u);
    for (size_t nprobe : {size_t(1), size_t(4), size_t(nlist)}) {
        for (idx_t k : {idx_t(1), idx_t(100), idx_t(2048)}) {
            expect_same_search(
                *p.cpu,
                *p.gpu,
                idx_t(q.size() / d),
                q.data(),
                k,
                search_params(nprobe),
                "skewed nprobe=" + std::to_string(nprobe) +
                    " k=" + std::to_string(k));
        }
    }
    // an empty index: every slot (FLT_MAX, -1), as on the CPU
    Pair e = make_pair(model, spill);
    std::vector<float> dis(20);
    std::vector<idx_t> ids(20);
    e.gpu->search(2, q.data(), 10, dis.data(), ids.data());
    for (size_t i = 0; i < ids.size(); i++) {
        EXPECT_EQ(ids[i], -1);
        EXPECT_EQ(dis[i], std::numeric_limits<float>::max());
    }
}

TEST(GpuIndexIVFGMM, AddInBatchesEqualsCpuAdd) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 20, nlist = 50;
    const idx_t n = 7000;
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Spherical, 31);
    const std::vector<float> x = sample(model, n, 32);
    std::vector<idx_t> xids(n);
    for (idx_t i = 0; i < n; i++) {
        xids[i] = 1000 + 3 * i;
    }
    std::vector<SpillParameters> rules(8);
    rules[0].rule = SpillRule::None;
    rules[1].rule = SpillRule::None;
    rules[1].primary_is_nearest_mean = true;
    rules[2].rule = SpillRule::Posterior;
    rules[2].max_assign = 3;
    rules[3].rule = SpillRule::Posterior;
    rules[3].primary_is_nearest_mean = true;
    rules[3].max_assign = 3;
    rules[4].rule = SpillRule::Closure;
    rules[4].max_assign = 3;
    rules[5].rule = SpillRule::Soar;
    rules[6].rule = SpillRule::Posterior;
    rules[6].max_assign = 20; // wider than the GPU kernel's top lists
    rules[6].tau = 0.001f;
    rules[7].rule = SpillRule::Rair;
    for (const SpillParameters& spill : rules) {
        SCOPED_TRACE(
            std::string("spill ") + spill_rule_name(spill.rule) +
            " max_assign " + std::to_string(spill.max_assign) +
            (spill.primary_is_nearest_mean ? " primary l2" : ""));
        GpuIndexIVFGMMConfig batched;
        batched.add_batch_rows = 777;
        Pair p = make_pair(model, spill, batched);
        GpuIndexIVFGMM one_batch(
            d,
            nlist,
            test::build_params(p.cpu->build_params.gmm, spill),
            GpuIndexIVFGMMConfig());
        one_batch.set_gmm(model);
        // CPU and one GPU batch: sequential ids in one call; the batched
        // GPU index: the same in two calls
        p.cpu->add(n, x.data());
        one_batch.add(n, x.data());
        p.gpu->add(n / 3, x.data());
        p.gpu->add(n - n / 3, x.data() + size_t(n / 3) * d);
        expect_same_lists(*p.cpu, one_batch, x.data(), n);
        expect_same_lists(*p.cpu, *p.gpu, x.data(), n);
        // assign_lists gives the add's choice
        std::vector<idx_t> lc(size_t(200) * spill.max_assign);
        std::vector<idx_t> lg(lc.size());
        p.cpu->assign_lists(200, x.data(), lc.data());
        p.gpu->assign_lists(200, x.data(), lg.data());
        size_t differing = 0;
        for (size_t i = 0; i < lc.size(); i++) {
            differing += lc[i] != lg[i] ? 1 : 0;
        }
        EXPECT_LE(differing, 2u);
        // explicit ids
        Pair with_ids = make_pair(model, spill, batched);
        with_ids.cpu->add_with_ids(n, x.data(), xids.data());
        with_ids.gpu->add_with_ids(n, x.data(), xids.data());
        EXPECT_EQ(with_ids.cpu->ntotal, with_ids.gpu->ntotal);
        for (size_t l = 0; l < size_t(nlist); l += 7) {
            const size_t n_l = with_ids.cpu->invlists->list_size(l);
            const std::vector<idx_t> g = with_ids.gpu->list_ids(idx_t(l));
            const idx_t* c = with_ids.cpu->invlists->get_ids(l);
            EXPECT_EQ(std::vector<idx_t>(c, c + n_l).size(), g.size());
            with_ids.cpu->invlists->release_ids(l, c);
        }
    }
}

TEST(GpuListAssignment, DeviceCandidatesDecideGpuOrCpu) {
    // Host policy, no device needed: the candidates the device kernel
    // finds per vector, or 0 where the rule stays on the CPU.
    bool log_joint = false;
    SpillParameters spill;
    spill.rule = SpillRule::Posterior;
    spill.max_assign = 20;
    GaussianMixture few(8, 12, CovarianceType::Diagonal);
    EXPECT_EQ(gpu::device_candidates(few, spill, &log_joint), 12);
    EXPECT_TRUE(log_joint);
    GaussianMixture many(8, 50, CovarianceType::Spherical);
    EXPECT_EQ(gpu::device_candidates(many, spill, &log_joint), 0); // 20 > 16
    spill.max_assign = 3;
    EXPECT_EQ(gpu::device_candidates(many, spill, &log_joint), 3);
    GaussianMixture full(8, 12, CovarianceType::Full);
    EXPECT_EQ(gpu::device_candidates(full, spill, &log_joint), 0);
    for (SpillRule cpu_rule : {SpillRule::Soar, SpillRule::Rair}) {
        spill.rule = cpu_rule;
        EXPECT_EQ(gpu::device_candidates(many, spill, &log_joint), 0);
    }
}

TEST(GpuIndexIVFGMM, MaxAssignPastKernelTopWithFewListsStaysOnGpu) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    // max_assign 20 is wider than the kernel's top lists, but 12 lists need
    // only 12 candidates: the device kernel serves the rule
    // (device_candidates) and gives the CPU's lists.
    const int d = 16, nlist = 12;
    const idx_t n = 3000;
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Diagonal, 41);
    const std::vector<float> x = sample(model, n, 42);
    SpillParameters spill;
    spill.rule = SpillRule::Posterior;
    spill.max_assign = 20;
    spill.tau = 0.001f;
    Pair p = make_pair(model, spill);
    p.cpu->add(n, x.data());
    p.gpu->add(n, x.data());
    expect_same_lists(*p.cpu, *p.gpu, x.data(), n);
}

TEST(GpuIndexIVFGMM, WiderSecondAddWidensRecords) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 8, nlist = 16;
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Spherical, 41);
    const std::vector<float> x = sample(model, 3000, 42);
    SpillParameters spill;
    spill.max_assign = 2;
    Pair p = make_pair(model, spill);
    p.cpu->add(1500, x.data());
    p.gpu->add(1500, x.data());
    p.cpu->build_params.spill.max_assign =
        p.gpu->build_params.spill.max_assign = 4;
    p.cpu->add(1500, x.data() + 1500 * d);
    p.gpu->add(1500, x.data() + 1500 * d);
    EXPECT_EQ(p.gpu->other_lists_width(), 3);
    expect_same_lists(*p.cpu, *p.gpu, x.data(), 3000);
}

TEST(GpuIndexIVFGMM, CopyRoundTrips) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 16, nlist = 40;
    const idx_t n = 4000;
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Diagonal, 51);
    const std::vector<float> x = sample(model, n, 52);
    SpillParameters spill;
    spill.max_assign = 3;
    GmmParameters gp;
    gp.covariance = CovarianceType::Diagonal;
    IndexIVFGMM cpu(d, nlist, test::build_params(gp, spill));
    cpu.set_gmm(model);
    cpu.add(n, x.data());
    cpu.nprobe = 9;
    cpu.search_options.probe_order = ProbeOrder::Posterior;
    cpu.search_options.posterior_mass = 0.8f;
    cpu.search_options.mass_temperature = 3;

    // CPU -> GPU: exact copy
    GpuIndexIVFGMM gpu(&cpu);
    EXPECT_TRUE(gpu.is_trained);
    EXPECT_EQ(gpu.nprobe, 9u);
    EXPECT_EQ(gpu.search_options.probe_order, ProbeOrder::Posterior);
    EXPECT_EQ(gpu.search_options.posterior_mass, 0.8f);
    EXPECT_EQ(gpu.search_options.mass_temperature, 3.0f);
    EXPECT_EQ(gpu.build_params.spill.max_assign, 3);
    EXPECT_EQ(gpu.gmm.means, model.means);
    EXPECT_EQ(gpu.gmm.variances, model.variances);
    EXPECT_EQ(gpu.nentries(), cpu.nentries());
    expect_same_lists(cpu, gpu, x.data(), n);

    // GPU -> a CPU index of another shape: overwritten completely
    IndexIVFGMM back(3, 5);
    gpu.copyTo(&back);
    EXPECT_EQ(back.d, d);
    EXPECT_EQ(back.nlist, size_t(nlist));
    EXPECT_EQ(back.ntotal, cpu.ntotal);
    EXPECT_EQ(back.nentries(), cpu.nentries());
    EXPECT_EQ(back.spill_records.width, cpu.spill_records.width);
    EXPECT_EQ(back.spill_records.records, cpu.spill_records.records);
    EXPECT_EQ(back.gmm.means, cpu.gmm.means);
    EXPECT_EQ(back.gmm.weights, cpu.gmm.weights);
    EXPECT_EQ(back.nprobe, cpu.nprobe);
    EXPECT_EQ(back.search_options.probe_order, cpu.search_options.probe_order);
    EXPECT_EQ(
        back.search_options.posterior_mass, cpu.search_options.posterior_mass);
    EXPECT_EQ(
        back.build_params.spill.max_assign, cpu.build_params.spill.max_assign);
    for (size_t l = 0; l < size_t(nlist); l++) {
        const size_t n_l = cpu.invlists->list_size(l);
        ASSERT_EQ(back.invlists->list_size(l), n_l);
        const idx_t* a = cpu.invlists->get_ids(l);
        const idx_t* b = back.invlists->get_ids(l);
        EXPECT_TRUE(std::equal(a, a + n_l, b)) << "ids of list " << l;
        const uint8_t* ca = cpu.invlists->get_codes(l);
        const uint8_t* cb = back.invlists->get_codes(l);
        EXPECT_TRUE(std::equal(ca, ca + n_l * d * 4, cb))
            << "vectors of list " << l;
        cpu.invlists->release_ids(l, a);
        back.invlists->release_ids(l, b);
        cpu.invlists->release_codes(l, ca);
        back.invlists->release_codes(l, cb);
    }
    // the copy searches like the original
    const std::vector<float> q = sample(model, 20, 53);
    std::vector<float> d1(20 * 10), d2(20 * 10);
    std::vector<idx_t> i1(20 * 10), i2(20 * 10);
    cpu.search(20, q.data(), 10, d1.data(), i1.data());
    back.search(20, q.data(), 10, d2.data(), i2.data());
    EXPECT_EQ(i1, i2);
    EXPECT_EQ(d1, d2);

    // GPU-filled index -> CPU -> GPU: identical lists and results
    Pair p = make_pair(model, spill);
    p.gpu->add(n, x.data());
    IndexIVFGMM mid;
    p.gpu->copyTo(&mid);
    GpuIndexIVFGMM again(&mid);
    for (size_t l = 0; l < size_t(nlist); l++) {
        EXPECT_EQ(p.gpu->list_ids(idx_t(l)), again.list_ids(idx_t(l)));
        EXPECT_EQ(p.gpu->list_records(idx_t(l)), again.list_records(idx_t(l)));
        EXPECT_EQ(p.gpu->list_vectors(idx_t(l)), again.list_vectors(idx_t(l)));
    }
    p.gpu->search(20, q.data(), 10, d1.data(), i1.data());
    again.search(20, q.data(), 10, d2.data(), i2.data());
    EXPECT_EQ(i1, i2);
    EXPECT_EQ(d1, d2);

    // an untrained CPU index copies as untrained
    IndexIVFGMM untrained(d, nlist);
    GpuIndexIVFGMM u(&untrained);
    EXPECT_FALSE(u.is_trained);
    EXPECT_THROW(u.add(n, x.data()), faiss::FaissException);

    // pruning settings travel; max_codes, which the GPU cannot honour,
    // is refused
    cpu.search_options.prune_margin = 0.3f;
    cpu.search_options.min_expected_hits = 0.5f;
    GpuIndexIVFGMM pruned(&cpu);
    EXPECT_EQ(pruned.search_options.prune_margin, 0.3f);
    EXPECT_EQ(pruned.search_options.min_expected_hits, 0.5f);
    cpu.max_codes = 50;
    expect_throw_naming([&] { GpuIndexIVFGMM refused(&cpu); }, "max_codes");
}

TEST(GpuIndexIVFGMM, WriteReadThroughCpuIndex) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 16, nlist = 32;
    const idx_t n = 3000;
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Spherical, 61);
    const std::vector<float> x = sample(model, n, 62);
    const std::vector<float> q = sample(model, 25, 63);
    Pair p = make_pair(model, SpillParameters());
    p.gpu->add(n, x.data());
    p.gpu->nprobe = 6;
    IndexIVFGMM cpu;
    p.gpu->copyTo(&cpu);
    const std::string path =
        std::string(FAISS_GMM_TEST_TMPDIR) + "/gpu_index_roundtrip.ivfgmm";
    write_index(&cpu, path.c_str());
    std::unique_ptr<faiss::Index> read(read_index(path.c_str()));
    std::remove(path.c_str());
    auto* read_gmm = dynamic_cast<IndexIVFGMM*>(read.get());
    ASSERT_NE(read_gmm, nullptr);
    GpuIndexIVFGMM loaded(read_gmm);
    EXPECT_EQ(loaded.ntotal, p.gpu->ntotal);
    EXPECT_EQ(loaded.nentries(), p.gpu->nentries());
    EXPECT_EQ(loaded.nprobe, 6u);
    std::vector<float> d1(25 * 20), d2(25 * 20);
    std::vector<idx_t> i1(25 * 20), i2(25 * 20);
    p.gpu->search(25, q.data(), 20, d1.data(), i1.data());
    loaded.search(25, q.data(), 20, d2.data(), i2.data());
    EXPECT_EQ(i1, i2);
    EXPECT_EQ(d1, d2);
}

TEST(GpuIndexIVFGMM, AdaptiveProbingAgreesWithCpu) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 16, nlist = 64;
    const idx_t n = 8000, nq = 50;
    for (CovarianceType cov :
         {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        const GaussianMixture model = make_model(d, nlist, cov, 71);
        const std::vector<float> x = sample(model, n, 72);
        const std::vector<float> q = sample(model, nq, 73);
        Pair p = make_pair(model, SpillParameters());
        p.cpu->add(n, x.data());
        p.gpu->add(n, x.data());
        for (ProbeOrder order : {ProbeOrder::L2, ProbeOrder::Posterior}) {
            SearchParametersIVFGMM mass = search_params(32, order);
            mass.posterior_mass = 0.9f;
            mass.mass_temperature = 4;
            expect_same_search(
                *p.cpu,
                *p.gpu,
                nq,
                q.data(),
                10,
                mass,
                describe(cov, order, 32, 10) + " posterior_mass=0.9");
        }
        SearchParametersIVFGMM ratio = search_params(32);
        ratio.distance_ratio = 1.5f;
        expect_same_search(
            *p.cpu,
            *p.gpu,
            nq,
            q.data(),
            10,
            ratio,
            describe(cov, ProbeOrder::L2, 32, 10) + " distance_ratio=1.5");
        // the index defaults, set through set_parameters on both
        p.cpu->set_search_parameters("nprobe=16,posterior_mass=0.95");
        p.gpu->set_search_parameters("nprobe=16,posterior_mass=0.95");
        EXPECT_EQ(p.gpu->nprobe, 16u);
        EXPECT_EQ(p.gpu->search_options.posterior_mass, 0.95f);
        std::vector<float> dc(nq * 5), dg(nq * 5);
        std::vector<idx_t> ic(nq * 5), ig(nq * 5);
        p.cpu->search(nq, q.data(), 5, dc.data(), ic.data());
        p.gpu->search(nq, q.data(), 5, dg.data(), ig.data());
        size_t same = 0;
        for (size_t i = 0; i < ic.size(); i++) {
            same += ic[i] == ig[i] ? 1 : 0;
        }
        EXPECT_GE(same, ic.size() - 5);
    }
}

TEST(GpuIndexIVFGMM, Rejections) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 8, nlist = 16;
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Spherical, 81);
    const std::vector<float> x = sample(model, 1000, 82);
    Pair p = make_pair(model, SpillParameters());
    p.gpu->add(1000, x.data());
    std::vector<float> q = sample(model, 5, 83);
    std::vector<float> dis(5 * 3000);
    std::vector<idx_t> ids(5 * 3000);
    q[3 * d + 2] = std::numeric_limits<float>::quiet_NaN();
    expect_throw_naming(
        [&] { p.gpu->search(5, q.data(), 3, dis.data(), ids.data()); },
        "vector 3");
    q[3 * d + 2] = std::numeric_limits<float>::infinity();
    expect_throw_naming(
        [&] { p.gpu->search(5, q.data(), 3, dis.data(), ids.data()); },
        "vector 3");
    q[3 * d + 2] = 0;
    expect_throw_naming(
        [&] { p.gpu->search(5, q.data(), 2049, dis.data(), ids.data()); },
        "2049");
    expect_throw_naming(
        [&] { p.gpu->search(5, q.data(), 0, dis.data(), ids.data()); }, "k=0");
    // nprobe above nlist is capped, as on the CPU
    p.gpu->search(5, q.data(), 3, dis.data(), ids.data(), [] {
        static SearchParametersIVFGMM sp;
        sp.nprobe = 100000;
        return &sp;
    }());
    // CPU-only rules
    expect_throw_naming(
        [&] { p.gpu->set_search_parameters("max_codes=100"); }, "max_codes");
    expect_throw_naming(
        [&] { p.gpu->set_search_parameters("tau=0.5"); }, "tau");
    expect_throw_naming(
        [&] { p.gpu->set_search_parameters("bogus=1"); }, "bogus");
    SearchParametersIVFGMM pruned;
    pruned.nprobe = 4;
    pruned.max_codes = 40;
    expect_throw_naming(
        [&] { p.gpu->search(5, q.data(), 3, dis.data(), ids.data(), &pruned); },
        "max_codes=40");
    expect_throw_naming(
        [&] {
            GpuIndexIVFGMMConfig bad;
            bad.prune_first_probes = 0;
            GpuIndexIVFGMM g(d, nlist, IVFGMMBuildParameters(), bad);
        },
        "prune_first_probes=0");
    SearchParametersIVFGMM lookup;
    std::vector<float> table(5 * 1000, 0.0f);
    lookup.precomputed_distances = table.data();
    expect_throw_naming(
        [&] { p.gpu->search(5, q.data(), 3, dis.data(), ids.data(), &lookup); },
        "precomputed_distances");
    // a rejected description changes nothing
    p.gpu->nprobe = 3;
    EXPECT_THROW(
        p.gpu->set_search_parameters("nprobe=7,max_codes=5"),
        faiss::FaissException);
    EXPECT_EQ(p.gpu->nprobe, 3u);
    p.gpu->set_search_parameters("nprobe=7,probe=posterior");
    p.gpu->set_build_parameters("tau=0.05,max_assign=3");
    EXPECT_EQ(p.gpu->nprobe, 7u);
    EXPECT_EQ(p.gpu->search_options.probe_order, ProbeOrder::Posterior);
    EXPECT_EQ(p.gpu->build_params.spill.tau, 0.05f);
    EXPECT_EQ(p.gpu->build_params.spill.max_assign, 3);
    // NaN in added vectors
    std::vector<float> bad(x.begin(), x.begin() + 4 * d);
    bad[2 * d] = std::numeric_limits<float>::quiet_NaN();
    expect_throw_naming([&] { p.gpu->add(4, bad.data()); }, "vector 2");

    // nprobe above the GPU limit needs nlist > 2048
    const int big = 2100;
    const GaussianMixture wide =
        make_model(4, big, CovarianceType::Spherical, 84);
    GpuIndexIVFGMM many(4, big);
    many.set_gmm(wide);
    const std::vector<float> xw = sample(wide, 5000, 85);
    many.add(5000, xw.data());
    SearchParametersIVFGMM over;
    over.nprobe = 2049;
    expect_throw_naming(
        [&] { many.search(2, xw.data(), 3, dis.data(), ids.data(), &over); },
        "2048");
    over.nprobe = 2048;
    many.search(2, xw.data(), 3, dis.data(), ids.data(), &over);
    EXPECT_EQ(ids[0], 0); // the query is the first stored vector
    EXPECT_EQ(dis[0], 0.0f);
}

namespace {

/**
 * What the GPU's two-part pruned scan returns, computed on the CPU index:
 * the k-th distance of each query after its first `first` probes (a CPU
 * search of those lists alone), the pruning tests of kernels/list_pruning.h
 * on the other probes against it, then a CPU search of the kept lists
 * without pruning. Also the number of lists pruned.
 */
size_t emulate_gpu_pruned_search(
    const IndexIVFGMM& cpu,
    idx_t nq,
    const float* q,
    idx_t k,
    const SearchParametersIVFGMM& params,
    int first,
    std::vector<float>* dis,
    std::vector<idx_t>* ids) {
    const size_t np = std::min(params.nprobe, cpu.nlist);
    const int d = cpu.d;
    std::vector<idx_t> keys(size_t(nq) * np);
    std::vector<float> coarse(size_t(nq) * np);
    cpu.coarse_assign(nq, q, params, keys.data(), coarse.data());
    SearchParametersIVFGMM plain = params;
    plain.prune_margin = 0;
    plain.min_expected_hits = 0;
    std::vector<idx_t> head(keys);
    for (idx_t i = 0; i < nq; i++) {
        for (size_t r = size_t(first); r < np; r++) {
            head[size_t(i) * np + r] = -1;
        }
    }
    std::vector<float> head_dis(size_t(nq) * k);
    std::vector<idx_t> head_ids(size_t(nq) * k);
    cpu.search_preassigned(
        nq,
        q,
        k,
        head.data(),
        coarse.data(),
        head_dis.data(),
        head_ids.data(),
        false,
        &plain);
    const std::vector<float> variance = impl::mean_variances(cpu.gmm);
    size_t pruned = 0;
    for (idx_t i = 0; i < nq; i++) {
        const float kth = head_ids[size_t(i) * k + k - 1] < 0
                              ? std::numeric_limits<float>::infinity()
                              : head_dis[size_t(i) * k + k - 1];
        idx_t* row = keys.data() + size_t(i) * np;
        const float* cd = coarse.data() + size_t(i) * np;
        for (size_t r = size_t(first); r < np && kth < INFINITY; r++) {
            const idx_t l = row[r];
            if (l < 0) {
                continue;
            }
            bool prune = params.min_expected_hits > 0 &&
                         kernels::hit_model_prunes(
                             cd[r],
                             variance[l],
                             (long long)cpu.invlists->list_size(l),
                             d,
                             kth,
                             params.min_expected_hits);
            if (!prune && params.prune_margin > 0) {
                const float* a = cpu.gmm.means.data() + size_t(l) * d;
                const float* b = cpu.gmm.means.data() + size_t(row[0]) * d;
                float mean_dis = 0;
                for (int t = 0; t < d; t++) {
                    mean_dis += (a[t] - b[t]) * (a[t] - b[t]);
                }
                prune = kernels::bisector_prunes_free(
                            cd[0], cd[r], kth, params.prune_margin) ||
                        kernels::bisector_prunes_exact(
                            cd[0], cd[r], mean_dis, kth, params.prune_margin);
            }
            if (prune) {
                row[r] = -1;
                pruned++;
            }
        }
    }
    dis->resize(size_t(nq) * k);
    ids->resize(size_t(nq) * k);
    cpu.search_preassigned(
        nq,
        q,
        k,
        keys.data(),
        coarse.data(),
        dis->data(),
        ids->data(),
        false,
        &plain);
    return pruned;
}

} // namespace

TEST(GpuIndexIVFGMM, PruningMatchesItsCpuEmulation) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 24, nlist = 96;
    const idx_t n = 12000, nq = 80, k = 10;
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Spherical, 91);
    const std::vector<float> x = sample(model, n, 92);
    const std::vector<float> q = sample(model, nq, 93);
    for (int first : {1, 4}) {
        GpuIndexIVFGMMConfig config;
        config.prune_first_probes = first;
        Pair p = make_pair(model, SpillParameters(), config);
        p.cpu->add(n, x.data());
        p.gpu->add(n, x.data());
        for (size_t nprobe : {size_t(16), size_t(64)}) {
            for (int rule = 0; rule < 3; rule++) {
                SearchParametersIVFGMM params = search_params(nprobe);
                params.prune_margin = rule == 1 ? 0.0f : 0.3f;
                params.min_expected_hits = rule == 0 ? 0.0f : 0.5f;
                const std::string what =
                    "first=" + std::to_string(first) +
                    " nprobe=" + std::to_string(nprobe) +
                    " margin=" + std::to_string(params.prune_margin) +
                    " min_hits=" + std::to_string(params.min_expected_hits);
                std::vector<float> de, dg, dc;
                std::vector<idx_t> ie, ig, ic;
                const size_t emulated_pruned = emulate_gpu_pruned_search(
                    *p.cpu, nq, q.data(), k, params, first, &de, &ie);
                const Counters cg =
                    search_counted(*p.gpu, nq, q.data(), k, &dg, &ig, &params);
                const Counters cc =
                    search_counted(*p.cpu, nq, q.data(), k, &dc, &ic, &params);
                // the same lists pruned (up to rounding at the bound) ...
                EXPECT_GT(cg.gmm.nlists_pruned, 0u) << what;
                EXPECT_NEAR(
                    double(cg.gmm.nlists_pruned),
                    double(emulated_pruned),
                    1 + 0.01 * double(emulated_pruned))
                    << what;
                // ... never more than the CPU, whose bound is tighter
                EXPECT_LE(cg.gmm.nlists_pruned, cc.gmm.nlists_pruned) << what;
                EXPECT_EQ(
                    cg.gmm.ncoarse_distances,
                    size_t(nq) * nlist + cg.gmm.nbound_distances)
                    << what;
                // ... and the emulation's results
                size_t differing = 0;
                for (size_t j = 0; j < ie.size(); j++) {
                    differing += ie[j] != ig[j] && !near(de[j], dg[j]);
                }
                EXPECT_LE(differing, size_t(2 * k)) << what;
                // every returned id once
                for (idx_t i = 0; i < nq; i++) {
                    std::set<idx_t> seen;
                    for (idx_t j = 0; j < k; j++) {
                        const idx_t id = ig[size_t(i) * k + j];
                        EXPECT_TRUE(id < 0 || seen.insert(id).second) << what;
                    }
                }
            }
        }
    }
}

TEST(GpuIndexIVFGMM, PruningOffMarginLargeChangesNothing) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    // a margin so large that no list is pruned: results and counters of
    // the unpruned search (the two-part scan itself changes nothing)
    const int d = 16, nlist = 64;
    const idx_t n = 8000, nq = 50;
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Diagonal, 95);
    const std::vector<float> x = sample(model, n, 96);
    const std::vector<float> q = sample(model, nq, 97);
    GpuIndexIVFGMMConfig config;
    config.prune_first_probes = 3;
    Pair p = make_pair(model, SpillParameters(), config);
    p.gpu->add(n, x.data());
    SearchParametersIVFGMM plain = search_params(32);
    SearchParametersIVFGMM wide = plain;
    wide.prune_margin = 1e30f;
    std::vector<float> d0, d1;
    std::vector<idx_t> i0, i1;
    const Counters c0 =
        search_counted(*p.gpu, nq, q.data(), 10, &d0, &i0, &plain);
    const Counters c1 =
        search_counted(*p.gpu, nq, q.data(), 10, &d1, &i1, &wide);
    EXPECT_EQ(i0, i1);
    EXPECT_EQ(d0, d1);
    EXPECT_EQ(c1.gmm.nlists_pruned, 0u);
    EXPECT_EQ(c0.gmm.nfine_distances, c1.gmm.nfine_distances);
    EXPECT_EQ(c0.gmm.nduplicates_skipped, c1.gmm.nduplicates_skipped);
    EXPECT_EQ(c0.gmm.nlists_probed, c1.gmm.nlists_probed);
}

TEST(GpuIndexIVFGMM, RemoveReconstructReset) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 12, nlist = 24;
    const idx_t n = 3000;
    const GaussianMixture model =
        make_model(d, nlist, CovarianceType::Spherical, 91);
    const std::vector<float> x = sample(model, n, 92);
    SpillParameters spill;
    spill.max_assign = 3;
    Pair p = make_pair(model, spill);
    p.cpu->add(n, x.data());
    p.gpu->add(n, x.data());
    std::vector<float> rc(d), rg(d);
    for (idx_t id : {idx_t(0), idx_t(17), n - 1}) {
        p.cpu->reconstruct(id, rc.data());
        p.gpu->reconstruct(id, rg.data());
        EXPECT_EQ(rc, rg);
        EXPECT_TRUE(std::equal(rg.begin(), rg.end(), x.data() + id * d));
    }
    EXPECT_THROW(p.gpu->reconstruct(n + 5, rg.data()), faiss::FaissException);
    faiss::IDSelectorRange range(100, 900);
    const size_t removed_cpu = p.cpu->remove_ids(range);
    const size_t removed_gpu = p.gpu->remove_ids(range);
    EXPECT_EQ(removed_cpu, 800u);
    EXPECT_EQ(removed_gpu, removed_cpu);
    expect_same_lists(*p.cpu, *p.gpu, x.data(), n);
    EXPECT_THROW(p.gpu->reconstruct(150, rg.data()), faiss::FaissException);
    p.gpu->reconstruct(950, rg.data());
    EXPECT_TRUE(std::equal(rg.begin(), rg.end(), x.data() + 950 * d));
    const std::vector<float> q = sample(model, 20, 93);
    expect_same_search(
        *p.cpu, *p.gpu, 20, q.data(), 50, search_params(6), "after remove");
    EXPECT_NEAR(p.gpu->replication_factor(), p.cpu->replication_factor(), 1e-9);
    p.gpu->reset();
    EXPECT_EQ(p.gpu->ntotal, 0);
    EXPECT_EQ(p.gpu->nentries(), 0u);
    EXPECT_TRUE(p.gpu->is_trained);
    std::vector<float> dis(20 * 5);
    std::vector<idx_t> ids(20 * 5);
    p.gpu->search(20, q.data(), 5, dis.data(), ids.data());
    EXPECT_TRUE(
        std::all_of(ids.begin(), ids.end(), [](idx_t i) { return i == -1; }));
    // refilled after reset: the same lists as a fresh CPU add
    p.cpu->reset();
    p.cpu->add(n, x.data());
    p.gpu->add(n, x.data());
    expect_same_lists(*p.cpu, *p.gpu, x.data(), n);
}

TEST(GpuIndexIVFGMM, TrainOnGpu) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    const int d = 16, nlist = 20;
    const GaussianMixture truth =
        make_model(d, nlist, CovarianceType::Spherical, 101);
    const std::vector<float> x = sample(truth, 8000, 102);
    GmmParameters gp;
    gp.niter = 5;
    GpuIndexIVFGMM gpu(d, nlist, test::build_params(gp));
    gpu.train(8000, x.data());
    EXPECT_TRUE(gpu.is_trained);
    EXPECT_TRUE(gpu.gmm.is_trained);
    EXPECT_EQ(gpu.gmm.k, nlist);
    gpu.add(8000, x.data());
    EXPECT_EQ(gpu.ntotal, 8000);
    IndexIVFGMM cpu;
    gpu.copyTo(&cpu);
    EXPECT_EQ(cpu.gmm.means, gpu.gmm.means);
    // the CPU add on the GPU-trained model stores the same lists
    IndexIVFGMM fresh(d, nlist, test::build_params(gp));
    fresh.set_gmm(gpu.gmm);
    fresh.add(8000, x.data());
    expect_same_lists(fresh, gpu, x.data(), 8000);
}

namespace {

/// First rows of a SIFT .bvecs file as floats, or empty when absent.
std::vector<float> load_bvecs(const std::string& path, idx_t rows, int* d) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) {
        return {};
    }
    std::vector<float> x;
    std::vector<unsigned char> row;
    for (idx_t i = 0; i < rows; i++) {
        int di = 0;
        if (fread(&di, 4, 1, f) != 1) {
            break;
        }
        row.resize(di);
        if (fread(row.data(), 1, di, f) != size_t(di)) {
            break;
        }
        *d = di;
        x.insert(x.end(), row.begin(), row.end());
    }
    fclose(f);
    return x;
}

/// SIFT base and query rows: FAISS_GMM_SIFT_DIR first, then the shared
/// data set folder.
bool load_sift(
    idx_t nb,
    idx_t nq,
    std::vector<float>* base,
    std::vector<float>* queries,
    int* d) {
    std::vector<std::string> dirs;
    if (const char* dir = std::getenv("FAISS_GMM_SIFT_DIR")) {
        dirs.push_back(dir);
    }
    dirs.push_back(std::string(FAISS_GMM_SHARED_DATASETS) + "/sift-debian-a");
    for (const std::string& dir : dirs) {
        *base = load_bvecs(dir + "/base.bvecs", nb, d);
        *queries = load_bvecs(dir + "/query.bvecs", nq, d);
        if (!base->empty() && !queries->empty()) {
            return true;
        }
    }
    return false;
}

} // namespace

TEST(GpuIndexIVFGMM, Sift50kAgreesWithCpu) {
    FAISS_GMM_SKIP_WITHOUT_GPU();
    int d = 0;
    std::vector<float> base, queries;
    if (!load_sift(50000, 200, &base, &queries, &d)) {
        GTEST_SKIP() << "SIFT data not found (FAISS_GMM_SIFT_DIR or "
                     << FAISS_GMM_SHARED_DATASETS << "/sift-debian-a)";
    }
    const idx_t n = idx_t(base.size() / d), nq = idx_t(queries.size() / d);
    const int nlist = 256;
    GmmParameters gp;
    gp.niter = 5;
    GpuIndexIVFGMM gpu(d, nlist, test::build_params(gp));
    gpu.train(n, base.data());
    gpu.add(n, base.data());
    IndexIVFGMM cpu(d, nlist, test::build_params(gp));
    cpu.set_gmm(gpu.gmm);
    cpu.add(n, base.data());
    expect_same_lists(cpu, gpu, base.data(), n);
    EXPECT_GT(gpu.replication_factor(), 1.0);
    for (ProbeOrder order : {ProbeOrder::L2, ProbeOrder::Posterior}) {
        for (size_t nprobe : {size_t(1), size_t(16), size_t(64)}) {
            for (idx_t k : {idx_t(10), idx_t(100)}) {
                expect_same_search(
                    cpu,
                    gpu,
                    nq,
                    queries.data(),
                    k,
                    search_params(nprobe, order),
                    "sift " +
                        describe(CovarianceType::Spherical, order, nprobe, k));
            }
        }
    }
}
