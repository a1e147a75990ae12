/**
 * GpuIndexIVFGMM: parameters, training, adding, removal, reconstruction and
 * the search driver, which runs the stages of gpu/impl/ (coarse probe, list
 * scan with dedup, top-k) tile by tile. About 1000 lines because every
 * FAISS entry point the GPU index answers (or refuses, naming why), for
 * each code of the lists, is
 * here.
 */

#include <faiss_gmm/gpu/GpuIndexIVFGMM.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <functional>
#include <limits>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/utils.h>

#include <faiss_gmm/SpillRecords.h>
#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#include <faiss_gmm/gpu/impl/GpuCoarseProbe.h>
#include <faiss_gmm/gpu/impl/GpuIndexContext.h>
#include <faiss_gmm/gpu/impl/GpuIvfLists.h>
#include <faiss_gmm/gpu/impl/GpuListAssignment.h>
#include <faiss_gmm/gpu/impl/GpuListCode.h>
#include <faiss_gmm/gpu/impl/GpuListScan.h>
#include <faiss_gmm/gpu/impl/GpuModel.h>
#include <faiss_gmm/gpu/impl/GpuSearchTile.h>
#include <faiss_gmm/gpu/impl/GpuTopK.h>
#include <faiss_gmm/impl/GmmScoring.h>
#include <kernels/ivf_lists.h>
#include <kernels/ivf_search.h>
#include <kernels/select_k.h>

namespace faiss_gmm {
namespace gpu {

namespace {

namespace kn = faiss_gmm::kernels;

/// Throws naming the first non-finite value of x (n vectors of dimension d).
constexpr auto check_finite = impl::check_finite_vectors;

/// Throws (prefixed by who) unless the GPU index implements the options.
void check_gpu_search_options(size_t max_codes, const char* who) {
    FAISS_THROW_IF_NOT_FMT(
        max_codes == 0,
        "%s: max_codes=%zu is not supported on the GPU (it counts unique "
        "vectors, which the GPU scan cannot bound before scanning; use "
        "nprobe)",
        who,
        max_codes);
}

} // namespace

/*************************************************************
 * device state
 *************************************************************/

struct GpuIndexIVFGMM::Impl {
    GpuIndexIVFGMMConfig config;
    GpuIndexContext context;
    std::unique_ptr<GpuIvfLists> lists;
    /// what the lists store (host side) and, for SQ8, its tables on the
    /// device: the decoding scale and bias (d floats each)
    GpuListCode code;
    DeviceAllocation code_tables;
    GpuModel model;
    /// the means on the host: the CPU spill rules that need them (Soar)
    faiss::IndexFlatL2 host_means;

    /// kListNotProbed-filled table of probe ranks, probe_rank_rows x nlist
    DeviceAllocation probe_rank;
    idx_t probe_rank_rows = 0;
    /// search tile buffers, reused across searches
    DeviceAllocation search_workspace;
    /// candidate keys and ids of one tile, sized by the tile's actual
    /// candidate count (grown when a tile needs more)
    DeviceAllocation candidate_workspace;
    /// add batch buffers, reused across batches
    DeviceAllocation add_workspace;

    IdLocationCache id_locations;
    GpuSearchTiming timing;

    explicit Impl(const GpuIndexIVFGMMConfig& cfg)
        : config(cfg), context(cfg.device) {
        FAISS_THROW_IF_NOT_FMT(
            cfg.add_batch_rows > 0,
            "GpuIndexIVFGMM: config add_batch_rows=%" PRId64 " must be > 0",
            int64_t(cfg.add_batch_rows));
        FAISS_THROW_IF_NOT_MSG(
            cfg.search_memory > 0,
            "GpuIndexIVFGMM: config search_memory must be > 0");
        FAISS_THROW_IF_NOT_FMT(
            cfg.prune_first_probes >= 1,
            "GpuIndexIVFGMM: config prune_first_probes=%d must be >= 1",
            cfg.prune_first_probes);
    }

    ~Impl() {
        // device memory is freed with the device current
        int previous = -1;
        const bool switched = cudaGetDevice(&previous) == cudaSuccess &&
                              previous != config.device &&
                              cudaSetDevice(config.device) == cudaSuccess;
        lists.reset();
        code_tables.release();
        model.release();
        probe_rank.release();
        search_workspace.release();
        candidate_workspace.release();
        add_workspace.release();
        if (switched) {
            cudaSetDevice(previous);
        }
    }

    /// Empty lists for (d, nlist) of the code `c`.
    void reset_storage(int d, size_t nlist, const GpuListCode& c) {
        code = c;
        lists.reset(new GpuIvfLists(d, code.kind, nlist, context.stream()));
        probe_rank.release();
        probe_rank_rows = 0;
        id_locations.reset();
        install_codec(d);
    }

    /**
     * Upload the code's SQ8 tables (once trained) and hand the lists the
     * codec the kernels read: residuals against the model's means (once
     * uploaded). Called whenever the model or the code changes.
     */
    void install_codec(int d) {
        kernels::IvfCodec c;
        c.kind = code.kind;
        if (code.by_residual) {
            c.residual_means = model.means;
        }
        if (code.kind == kernels::IvfCodeKind::SQ8 && code.is_trained()) {
            // FAISS decodes vmin + (c + 0.5) / 255 vdiff
            std::vector<float> tables(2 * size_t(d));
            const float* vmin = code.sq.trained.data();
            const float* vdiff = vmin + d;
            for (int i = 0; i < d; i++) {
                const float scale = vdiff[i] / 255.0f;
                tables[i] = scale;
                tables[d + i] = vmin[i] + 0.5f * scale;
            }
            code_tables.reserve(tables.size() * sizeof(float), "SQ8 tables");
            context.upload(
                code_tables.as<float>(),
                tables.data(),
                tables.size() * sizeof(float),
                "uploading the SQ8 tables");
            const float* t = code_tables.as<const float>();
            c.scale = t;
            c.bias = t + d;
        }
        lists->set_codec(c);
    }

    /// probe_rank with at least `rows` rows of nlist, all kListNotProbed.
    int32_t* probe_ranks(idx_t rows, size_t nlist) {
        if (rows > probe_rank_rows) {
            const size_t count = size_t(rows) * nlist;
            probe_rank.release();
            probe_rank_rows = 0;
            probe_rank.reserve(count * sizeof(int32_t), "the probe ranks");
            throw_on_cuda_error(
                kn::fill_int32(
                    probe_rank.as<int32_t>(),
                    int64_t(count),
                    kn::kListNotProbed,
                    context.stream()),
                "initialising the probe ranks");
            probe_rank_rows = rows;
        }
        return probe_rank.as<int32_t>();
    }

    /// Upload nb vectors xb (host) into batch (device) and choose their
    /// lists (nb x max_assign) under index's spill rule.
    void assign_batch(
        const GpuIndexIVFGMM& index,
        idx_t nb,
        const float* xb,
        DeviceAllocation& batch,
        idx_t* lists) {
        context.upload(
            batch.as<float>(),
            xb,
            size_t(nb) * index.d * sizeof(float),
            "uploading an add batch");
        gpu_assign_lists(
            context,
            index.gmm,
            host_means,
            model,
            index.build_params.spill,
            nb,
            xb,
            batch.as<float>(),
            add_workspace,
            lists);
    }

    /// The locations of every id, built from the device lists' ids.
    std::shared_ptr<const IdLocations> locations() const {
        return id_locations.get([this]() {
            return std::make_shared<const IdLocations>(
                lists->nlist(), [this](size_t l, std::vector<idx_t>& ids) {
                    ids = lists->list_ids(l);
                });
        });
    }
};

/*************************************************************
 * construction, copies
 *************************************************************/

GpuIndexIVFGMM::GpuIndexIVFGMM(
    int d,
    size_t nlist_in,
    const IVFGMMBuildParameters& build_params_in,
    const GpuIndexIVFGMMConfig& config)
    : faiss::Index(d, faiss::METRIC_L2),
      nlist(nlist_in),
      build_params(build_params_in),
      impl_(new Impl(config)) {
    FAISS_THROW_IF_NOT_FMT(d >= 1, "GpuIndexIVFGMM: d=%d must be >= 1", d);
    FAISS_THROW_IF_NOT_FMT(
        nlist >= 1 && nlist <= size_t(std::numeric_limits<int32_t>::max()),
        "GpuIndexIVFGMM: nlist=%zu must be in [1, 2^31)",
        nlist);
    build_params.check("GpuIndexIVFGMM");
    const GpuListCode code = GpuListCode::from_name(config.codes, d);
    DeviceScope scope(config.device);
    gmm = GaussianMixture(d, int(nlist), build_params.gmm.covariance);
    impl_->reset_storage(d, nlist, code);
    is_trained = false;
}

GpuIndexIVFGMM::GpuIndexIVFGMM(
    const IndexIVFGMM* cpu_index, const GpuIndexIVFGMMConfig& config)
    : faiss::Index(cpu_index ? cpu_index->d : 0, faiss::METRIC_L2),
      impl_(new Impl(config)) {
    FAISS_THROW_IF_NOT_MSG(cpu_index, "GpuIndexIVFGMM: cpu_index is null");
    copyFrom(cpu_index);
}

GpuIndexIVFGMM::~GpuIndexIVFGMM() = default;

const GpuIndexIVFGMMConfig& GpuIndexIVFGMM::config() const {
    return impl_->config;
}

int GpuIndexIVFGMM::max_search_k() {
    return kn::kSelectMaxK;
}

void GpuIndexIVFGMM::copyFrom(const IndexIVFGMM* cpu) {
    const char* who = "GpuIndexIVFGMM::copyFrom";
    FAISS_THROW_IF_NOT_FMT(cpu, "%s: index is null", who);
    FAISS_THROW_IF_NOT_FMT(
        cpu->metric_type == faiss::METRIC_L2,
        "%s: metric_type=%d is not supported (L2 only)",
        who,
        int(cpu->metric_type));
    check_gpu_search_options(cpu->max_codes, who);
    FAISS_THROW_IF_NOT_FMT(
        cpu->gmm.covariance != CovarianceType::Full &&
            cpu->build_params.gmm.covariance != CovarianceType::Full,
        "%s: full covariance: the GPU index's assignment and probing "
        "score spherical and diagonal models only (a full model serves "
        "in the CPU IndexIVFGMM)",
        who);
    FAISS_THROW_IF_NOT_FMT(
        cpu->quantizer && cpu->invlists && cpu->codes_index,
        "%s: index has no quantizer, lists or codes",
        who);
    const GpuListCode code =
        GpuListCode::from_codes_index(*cpu->codes_index, who);
    FAISS_THROW_IF_NOT_FMT(
        cpu->code_size == code.code_size(cpu->d),
        "%s: code_size=%zu, expected %zu for %s codes",
        who,
        cpu->code_size,
        code.code_size(cpu->d),
        code.name());
    cpu->check_lists_in_sync(who);
    FAISS_THROW_IF_NOT_FMT(
        !cpu->is_trained || cpu->gmm.is_trained,
        "%s: index is trained but its GMM is not",
        who);
    DeviceScope scope(impl_->config.device);
    const double t0 = faiss::getmillisecs();
    d = cpu->d;
    nlist = cpu->nlist;
    build_params = cpu->build_params;
    nprobe = cpu->nprobe;
    max_codes = 0;
    search_options = cpu->search_options;
    impl_->reset_storage(d, nlist, code);
    ntotal = 0;
    if (cpu->gmm.is_trained) {
        set_gmm(cpu->gmm);
    } else {
        gmm = cpu->gmm;
        impl_->model.release();
        is_trained = false;
    }
    const int w = cpu->spill_records.width;
    impl_->lists->reset(w);
    for (size_t l = 0; l < nlist; l++) {
        const size_t n = cpu->invlists->list_size(l);
        if (n == 0) {
            continue;
        }
        faiss::InvertedLists::ScopedCodes codes(cpu->invlists, l);
        faiss::InvertedLists::ScopedIds ids(cpu->invlists, l);
        impl_->lists->set_list(
            l,
            n,
            codes.get(),
            ids.get(),
            cpu->spill_records.records[l].data(),
            false);
    }
    impl_->lists->update_device_arrays();
    ntotal = cpu->ntotal;
    if (verbose || impl_->config.verbose) {
        printf(
            "GpuIndexIVFGMM::copyFrom: %zu entries (%s codes) of %" PRId64
            " vectors in %zu lists uploaded in %.3f s\n",
            nentries(),
            code.name(),
            int64_t(ntotal),
            nlist,
            (faiss::getmillisecs() - t0) / 1000);
    }
}

void GpuIndexIVFGMM::copyTo(IndexIVFGMM* cpu) const {
    FAISS_THROW_IF_NOT_MSG(cpu, "GpuIndexIVFGMM::copyTo: index is null");
    DeviceScope scope(impl_->config.device);
    cpu->reset_to(impl_->code.make_codes_index(d, nlist), build_params);
    cpu->nprobe = nprobe;
    cpu->max_codes = 0;
    cpu->search_options = search_options;
    if (gmm.is_trained) {
        cpu->set_gmm(gmm);
    } else {
        cpu->gmm = gmm;
    }
    const GpuIvfLists& lists = *impl_->lists;
    cpu->spill_records.reset(nlist, lists.record_width());
    for (size_t l = 0; l < nlist; l++) {
        const size_t n = lists.length(l);
        if (n == 0) {
            continue;
        }
        const std::vector<idx_t> ids = lists.list_ids(l);
        const std::vector<uint8_t> codes = lists.list_codes(l);
        cpu->invlists->add_entries(l, n, ids.data(), codes.data());
        cpu->spill_records.records[l] = lists.list_records(l);
    }
    cpu->spill_records.nentries = nentries();
    cpu->ntotal = ntotal;
}

/*************************************************************
 * training
 *************************************************************/

void GpuIndexIVFGMM::train(idx_t n, const float* x) {
    FAISS_THROW_IF_NOT_FMT(
        n >= idx_t(nlist),
        "GpuIndexIVFGMM::train: n=%" PRId64
        " training vectors, need at least nlist=%zu",
        int64_t(n),
        nlist);
    FAISS_THROW_IF_NOT_FMT(
        nentries() == 0,
        "GpuIndexIVFGMM::train: the index holds %zu entries; reset() it "
        "before training again",
        nentries());
    build_params.check("GpuIndexIVFGMM::train");
    FAISS_THROW_IF_NOT_MSG(
        build_params.gmm.covariance != CovarianceType::Full,
        "GpuIndexIVFGMM::train: full covariance: the GPU index's "
        "assignment and probing score spherical and diagonal models only "
        "(train a full model with gpu::train_gmm_gpu and serve it in the "
        "CPU IndexIVFGMM)");
    check_finite(n, d, x, "GpuIndexIVFGMM::train");
    DeviceScope scope(impl_->config.device);
    GpuEmConfig em;
    em.device = impl_->config.device;
    em.precision = impl_->config.precision;
    em.max_device_memory = impl_->config.max_device_memory;
    em.verbose = impl_->config.verbose;
    GmmParameters params = build_params.gmm;
    params.verbose = params.verbose || verbose || impl_->config.verbose;
    const double t0 = faiss::getmillisecs();
    GaussianMixture model(d, int(nlist), params.covariance);
    train_gmm_gpu(&model, n, x, params, em);
    set_gmm(model);
    if (verbose || impl_->config.verbose) {
        printf(
            "GpuIndexIVFGMM::train: %s GMM, %zu components, %" PRId64
            " vectors in %dD, %zu EM iterations (%s E-step) in %.2f s\n",
            covariance_type_name(params.covariance),
            nlist,
            int64_t(n),
            d,
            model.iteration_stats.size(),
            estep_precision_name(em.precision),
            (faiss::getmillisecs() - t0) / 1000);
    }
    train_codes(n, x);
}

void GpuIndexIVFGMM::train_codes(idx_t n, const float* x) {
    const char* who = "GpuIndexIVFGMM::train_codes";
    FAISS_THROW_IF_NOT_FMT(gmm.is_trained, "%s: the model is not trained", who);
    FAISS_THROW_IF_NOT_FMT(
        nentries() == 0,
        "%s: the index holds %zu entries; reset() it first",
        who,
        nentries());
    GpuListCode& code = impl_->code;
    if (!code.needs_training()) {
        is_trained = true;
        return;
    }
    FAISS_THROW_IF_NOT_FMT(
        n >= 1 && x,
        "%s: the %s code needs training vectors (n=%" PRId64 ")",
        who,
        code.name(),
        int64_t(n));
    check_finite(n, d, x, who);
    DeviceScope scope(impl_->config.device);
    const double t0 = faiss::getmillisecs();
    code.train(impl_->host_means, n, x);
    impl_->install_codec(d);
    is_trained = true;
    if (verbose || impl_->config.verbose) {
        printf(
            "%s: %s ranges trained on %" PRId64
            " residuals (host, FAISS) in %.2f s\n",
            who,
            code.name(),
            int64_t(n),
            (faiss::getmillisecs() - t0) / 1000);
    }
}

const char* GpuIndexIVFGMM::codes_name() const {
    return impl_->code.name();
}

size_t GpuIndexIVFGMM::code_size() const {
    return impl_->lists->code_size();
}

void GpuIndexIVFGMM::set_gmm(const GaussianMixture& model) {
    FAISS_THROW_IF_NOT_FMT(
        model.d == d,
        "GpuIndexIVFGMM::set_gmm: model d=%d, index d=%d",
        model.d,
        d);
    FAISS_THROW_IF_NOT_FMT(
        model.k == int(nlist),
        "GpuIndexIVFGMM::set_gmm: model k=%d, index nlist=%zu",
        model.k,
        nlist);
    FAISS_THROW_IF_NOT_MSG(
        model.is_trained, "GpuIndexIVFGMM::set_gmm: model is not trained");
    FAISS_THROW_IF_NOT_MSG(
        model.covariance != CovarianceType::Full,
        "GpuIndexIVFGMM::set_gmm: full covariance: the GPU index's "
        "assignment and probing score spherical and diagonal models only "
        "(a full model serves in the CPU IndexIVFGMM)");
    FAISS_THROW_IF_NOT_FMT(
        nentries() == 0,
        "GpuIndexIVFGMM::set_gmm: the index holds %zu entries; reset() "
        "it first",
        nentries());
    model.check_consistency();
    DeviceScope scope(impl_->config.device);
    impl_->model.upload(model, impl_->context);
    impl_->host_means = faiss::IndexFlatL2(d);
    impl_->host_means.add(idx_t(nlist), model.means.data());
    gmm = model;
    impl_->install_codec(d);
    is_trained = impl_->code.is_trained();
}

/*************************************************************
 * adding
 *************************************************************/

void GpuIndexIVFGMM::add(idx_t n, const float* x) {
    add_with_ids(n, x, nullptr);
}

void GpuIndexIVFGMM::assign_lists(idx_t n, const float* x, idx_t* lists) const {
    FAISS_THROW_IF_NOT_MSG(
        gmm.is_trained,
        "GpuIndexIVFGMM::assign_lists: the model is not trained");
    build_params.spill.check("GpuIndexIVFGMM::assign_lists");
    if (n == 0) {
        return;
    }
    check_finite(n, d, x, "GpuIndexIVFGMM::assign_lists");
    DeviceScope scope(impl_->config.device);
    const idx_t bs = std::min(n, impl_->config.add_batch_rows);
    DeviceAllocation batch;
    batch.reserve(size_t(bs) * d * sizeof(float), "an add batch");
    const int m = build_params.spill.max_assign;
    for (idx_t i0 = 0; i0 < n; i0 += bs) {
        const idx_t nb = std::min(bs, n - i0);
        impl_->assign_batch(
            *this, nb, x + int64_t(i0) * d, batch, lists + int64_t(i0) * m);
    }
}

void GpuIndexIVFGMM::add_with_ids(idx_t n, const float* x, const idx_t* xids) {
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "GpuIndexIVFGMM::add_with_ids: index is not trained");
    build_params.spill.check("GpuIndexIVFGMM::add_with_ids");
    check_finite(n, d, x, "GpuIndexIVFGMM::add_with_ids");
    if (n == 0) {
        return;
    }
    DeviceScope scope(impl_->config.device);
    const double t0 = faiss::getmillisecs();
    const int m = build_params.spill.max_assign;
    GpuIvfLists& lists = *impl_->lists;
    if (lists.total_entries() == 0) {
        lists.reset(m - 1);
    } else if (m - 1 > lists.record_width()) {
        lists.widen_records(m - 1);
    }
    impl_->id_locations.reset();
    const int w = lists.record_width();
    const idx_t first_id = ntotal;
    const size_t nentries0 = lists.total_entries();
    const idx_t bs = std::min(n, impl_->config.add_batch_rows);
    DeviceAllocation batch;
    batch.reserve(size_t(bs) * d * sizeof(float), "an add batch");
    std::vector<idx_t> assigned(size_t(bs) * m);
    std::vector<int64_t> rows, ids;
    std::vector<int32_t> entry_lists, records;
    std::vector<uint8_t> codes;
    int nbatches = 0;
    for (idx_t i0 = 0; i0 < n; i0 += bs, nbatches++) {
        const idx_t nb = std::min(bs, n - i0);
        impl_->assign_batch(
            *this, nb, x + int64_t(i0) * d, batch, assigned.data());
        rows.clear();
        ids.clear();
        entry_lists.clear();
        records.clear();
        idx_t n_vectors = 0;
        for (idx_t i = 0; i < nb; i++) {
            const idx_t* li = assigned.data() + size_t(i) * m;
            if (li[0] >= 0) {
                n_vectors++;
            }
            const idx_t id = xids ? xids[i0 + i] : first_id + i0 + i;
            for (int a = 0; a < m; a++) {
                if (li[a] < 0) {
                    continue;
                }
                rows.push_back(i);
                ids.push_back(id);
                entry_lists.push_back(int32_t(li[a]));
                records.resize(records.size() + size_t(w));
                make_spill_record(
                    li, m, a, w, records.data() + records.size() - w);
            }
        }
        // SQ codes: encoded on the host by FAISS itself (the CPU index's
        // bytes, whatever rounding this FAISS build uses), then uploaded
        const GpuListCode& code = impl_->code;
        if (code.kind != kernels::IvfCodeKind::Float32) {
            codes.resize(rows.size() * code.code_size(d));
            code.encode(
                d,
                x + int64_t(i0) * d,
                gmm.means.data(),
                int64_t(rows.size()),
                rows.data(),
                entry_lists.data(),
                codes.data());
        }
        lists.append_batch(
            batch.as<float>(),
            int64_t(rows.size()),
            rows.data(),
            entry_lists.data(),
            ids.data(),
            records.data(),
            code.kind != kernels::IvfCodeKind::Float32 ? codes.data()
                                                       : nullptr);
        // counted per batch, so that ntotal matches the lists if a later
        // batch fails
        ntotal += n_vectors;
    }
    if (verbose || impl_->config.verbose) {
        printf(
            "GpuIndexIVFGMM::add_with_ids: %" PRId64
            " vectors in %zu entries (spill %s, max_assign %d), %d "
            "batches, replication now %.3f, %.3f s\n",
            int64_t(n),
            lists.total_entries() - nentries0,
            spill_rule_name(build_params.spill.rule),
            m,
            nbatches,
            replication_factor(),
            (faiss::getmillisecs() - t0) / 1000);
    }
}

/*************************************************************
 * searching: coarse probe -> list scan (dedup) -> top-k, per query tile
 *************************************************************/

void GpuIndexIVFGMM::search(
    idx_t n,
    const float* x,
    idx_t k,
    float* distances,
    idx_t* labels,
    const faiss::SearchParameters* params_in) const {
    const char* who = "GpuIndexIVFGMM::search";
    FAISS_THROW_IF_NOT_FMT(
        k > 0 && k <= kn::kSelectMaxK,
        "%s: k=%" PRId64 " must be in [1, %d]",
        who,
        int64_t(k),
        kn::kSelectMaxK);
    FAISS_THROW_IF_NOT_FMT(is_trained, "%s: index is not trained", who);

    // parameters, resolved as the CPU index resolves them
    SearchParametersIVFGMM p = search_defaults();
    if (params_in) {
        const auto* ivf =
            dynamic_cast<const faiss::SearchParametersIVF*>(params_in);
        FAISS_THROW_IF_NOT_FMT(
            ivf,
            "%s: search parameters must be a SearchParametersIVF or "
            "SearchParametersIVFGMM",
            who);
        FAISS_THROW_IF_NOT_FMT(
            !params_in->sel,
            "%s: an IDSelector is not supported on the GPU (search through "
            "the CPU index)",
            who);
        copy_ivf_search_fields(*ivf, &p);
        if (const auto* g =
                dynamic_cast<const SearchParametersIVFGMM*>(params_in)) {
            static_cast<IVFGMMSearchOptions&>(p) = g->options();
            FAISS_THROW_IF_NOT_FMT(
                !g->precomputed_distances,
                "%s: precomputed_distances is a CPU IndexIVFGMM option (the "
                "GPU scan computes every distance)",
                who);
        }
    }
    p.check(who);
    check_gpu_search_options(p.max_codes, who);
    GpuSearchSettings settings;
    settings.nprobe = std::min(nlist, p.nprobe);
    FAISS_THROW_IF_NOT_FMT(
        settings.nprobe <= size_t(kn::kSelectMaxK),
        "%s: nprobe=%zu (nlist=%zu) is above the GPU limit %d",
        who,
        p.nprobe,
        nlist,
        kn::kSelectMaxK);
    settings.order = p.probe_order;
    settings.mass = p.posterior_mass;
    settings.mass_temperature = p.mass_temperature;
    settings.distance_ratio = p.distance_ratio;
    // the pruning rules read L2 distances to the means: L2 order only, as
    // on the CPU
    const bool l2_order = p.probe_order == ProbeOrder::L2;
    settings.prune_margin = l2_order ? p.prune_margin : 0;
    settings.min_expected_hits = l2_order ? p.min_expected_hits : 0;
    settings.prune_first_probes = impl_->config.prune_first_probes;
    check_finite(n, d, x, who);
    GpuSearchTiming& timing = impl_->timing;
    timing = GpuSearchTiming();
    timing.nq = n;
    if (n == 0) {
        return;
    }

    DeviceScope scope(impl_->config.device);
    const double t_start = faiss::getmillisecs();
    Impl& im = *impl_;
    const GpuIndexContext& ctx = im.context;
    GpuIvfLists& lists = *im.lists;
    SearchTileShape shape;
    shape.d = d;
    shape.nlist = nlist;
    shape.nprobe = int(settings.nprobe);
    shape.k = int(k);
    shape.need_l2 = settings.order == ProbeOrder::L2;
    shape.need_joint =
        settings.order == ProbeOrder::Posterior || settings.mass > 0;
    shape.gemm_dim = shape.need_joint && im.model.diagonal ? 2 * d : d;
    shape.prune = settings.prunes();
    kn::ProbePruning rules;
    rules.margin = settings.prune_margin;
    rules.min_hits = settings.min_expected_hits;
    rules.means = im.model.means;
    rules.mean_variances = im.model.mean_variances;
    // candidates of one query: at most the nprobe longest lists
    {
        std::vector<int64_t> lengths = lists.lengths();
        std::sort(lengths.begin(), lengths.end(), std::greater<int64_t>());
        for (int r = 0; r < shape.nprobe; r++) {
            shape.candidate_bound += lengths[r];
        }
    }
    // queries per tile: the largest count whose buffers (probe ranks
    // included) fit config.search_memory, at least one, counting for the
    // candidates twice the mean: nprobe lists of the mean length (the bound
    // of the longest lists is far too pessimistic when sizes are skewed).
    // A tile with more candidates grows the candidate buffers past the
    // budget rather than failing.
    const int64_t mean_list = int64_t(
        (lists.total_entries() + nlist - 1) / std::max<size_t>(nlist, 1));
    const int64_t expected_candidates = std::max<int64_t>(
        1,
        std::min(shape.candidate_bound, 2 * int64_t(shape.nprobe) * mean_list));
    SearchTile tile;
    Carver one(nullptr);
    plan_search_tile(one, shape, 1, &tile);
    const size_t per_query =
        one.bytes() + nlist * sizeof(int32_t) +
        size_t(expected_candidates) * (sizeof(float) + sizeof(int64_t));
    idx_t tile_rows = std::max<idx_t>(
        1, idx_t(im.config.search_memory / std::max<size_t>(per_query, 1)));
    // the scan launches one CTA per (query, probe): at most 2^31 - 1
    tile_rows = std::min(
        {tile_rows,
         n,
         idx_t(std::numeric_limits<int32_t>::max() / shape.nprobe)});
    Carver measure(nullptr);
    plan_search_tile(measure, shape, tile_rows, &tile);
    im.search_workspace.reserve(measure.bytes(), "the search tile buffers");
    Carver carve(im.search_workspace.as<char>());
    plan_search_tile(carve, shape, tile_rows, &tile);
    int32_t* probe_rank = im.probe_ranks(tile_rows, nlist);
    const kn::IvfListsView view = lists.view();

    std::vector<float> operand(size_t(tile_rows) * shape.gemm_dim);
    std::vector<float> norms(tile_rows);
    TileCounters counters;
    for (idx_t i0 = 0; i0 < n; i0 += tile_rows) {
        const idx_t nq = std::min(tile_rows, n - i0);
        ctx.record(0);
        gpu_coarse_probe(
            ctx,
            im.model,
            shape,
            settings,
            nq,
            x + int64_t(i0) * d,
            operand,
            norms,
            tile);
        ctx.record(1);
        gpu_list_scan(
            ctx,
            view,
            shape,
            settings,
            rules,
            nq,
            probe_rank,
            im.candidate_workspace,
            tile);
        ctx.record(2);
        gpu_top_k(
            ctx,
            shape,
            nq,
            probe_rank,
            tile,
            distances + int64_t(i0) * k,
            labels + int64_t(i0) * k,
            &counters);
        timing.coarse_ms += ctx.elapsed_ms(0, 1);
        timing.scan_ms += ctx.elapsed_ms(1, 2);
        timing.select_ms += ctx.elapsed_ms(2, 3);
        timing.ntiles++;
    }
    const size_t n_fine = counters.scanned - counters.duplicates;
    timing.scan_bytes = n_fine * im.lists->code_size();
    timing.total_ms = faiss::getmillisecs() - t_start;

    IndexIVFGMMStats stats;
    stats.nq = size_t(n);
    stats.ncoarse_distances = size_t(n) * nlist + counters.bound;
    stats.nbound_distances = counters.bound;
    stats.nlists_pruned = counters.pruned;
    stats.nfine_distances = n_fine;
    stats.nentries_scanned = counters.scanned;
    stats.nduplicates_skipped = counters.duplicates;
    stats.nlists_probed = counters.lists;
    faiss::IndexIVFStats ivf_stats;
    ivf_stats.reset();
    ivf_stats.nq = size_t(n);
    ivf_stats.nlist = counters.lists;
    ivf_stats.ndis = n_fine;
    ivf_stats.quantization_time = timing.coarse_ms;
    ivf_stats.search_time = timing.total_ms;
    // several GPU indexes may search at once (sharded search)
    add_to_global_stats(stats, &ivf_stats);
    if (verbose || im.config.verbose) {
        printf(
            "GpuIndexIVFGMM::search: %" PRId64 " queries, k=%" PRId64
            ", nprobe=%d, %d tiles of <= %" PRId64
            " queries; coarse %.2f ms, scan %.2f ms (%.1f GB/s), select "
            "%.2f ms, total %.2f ms\n",
            int64_t(n),
            int64_t(k),
            shape.nprobe,
            timing.ntiles,
            int64_t(tile_rows),
            timing.coarse_ms,
            timing.scan_ms,
            timing.scan_ms > 0 ? timing.scan_bytes / timing.scan_ms / 1e6 : 0.0,
            timing.select_ms,
            timing.total_ms);
    }
}

/*************************************************************
 * list management
 *************************************************************/

void GpuIndexIVFGMM::reset() {
    DeviceScope scope(impl_->config.device);
    impl_->lists->reset(impl_->lists->record_width());
    impl_->id_locations.reset();
    ntotal = 0;
}

size_t GpuIndexIVFGMM::remove_ids(const faiss::IDSelector& sel) {
    FAISS_THROW_IF_NOT_MSG(
        !is_idmap_translated_selector(sel),
        "GpuIndexIVFGMM::remove_ids: called through faiss::IndexIDMap, "
        "which assumes its sub-index renumbers vectors after a removal; "
        "GpuIndexIVFGMM stores ids itself (use add_with_ids)");
    DeviceScope scope(impl_->config.device);
    GpuIvfLists& lists = *impl_->lists;
    const int w = lists.record_width();
    size_t removed_vectors = 0;
    for (size_t l = 0; l < nlist; l++) {
        if (lists.length(l) == 0) {
            continue;
        }
        std::vector<idx_t> ids = lists.list_ids(l);
        if (std::none_of(ids.begin(), ids.end(), [&](idx_t id) {
                return sel.is_member(id);
            })) {
            continue;
        }
        std::vector<uint8_t> codes = lists.list_codes(l);
        std::vector<int32_t> records = lists.list_records(l);
        const size_t cs = lists.code_size();
        // the ownership rule of SpillRecords.h on the host copies
        const SpillRemoval removal = remove_spilled_entries(
            l,
            ids.size(),
            w,
            records.data(),
            [&](size_t j) { return sel.is_member(ids[j]); },
            [&](size_t dst, size_t src) {
                ids[dst] = ids[src];
                std::copy_n(
                    codes.data() + src * cs, cs, codes.data() + dst * cs);
            });
        const size_t size = ids.size() - removal.entries;
        lists.set_list(
            l, size, codes.data(), ids.data(), records.data(), false);
        removed_vectors += removal.vectors;
    }
    lists.update_device_arrays();
    ntotal -= removed_vectors;
    impl_->id_locations.reset();
    return removed_vectors;
}

void GpuIndexIVFGMM::reconstruct(idx_t key, float* recons) const {
    DeviceScope scope(impl_->config.device);
    size_t l = 0, offset = 0;
    FAISS_THROW_IF_NOT_FMT(
        impl_->locations()->find(key, &l, &offset),
        "GpuIndexIVFGMM::reconstruct: no vector with id %" PRId64,
        int64_t(key));
    std::vector<uint8_t> code(impl_->lists->code_size());
    impl_->lists->copy_code(l, offset, code.data());
    impl_->code.decode(code.data(), gmm.means.data() + l * d, d, recons);
}

/*************************************************************
 * parameters, accessors
 *************************************************************/

SearchParametersIVFGMM GpuIndexIVFGMM::search_defaults() const {
    return SearchParametersIVFGMM(nprobe, max_codes, search_options);
}

void GpuIndexIVFGMM::set_search_parameters(const std::string& description) {
    const char* who = "GpuIndexIVFGMM::set_search_parameters";
    SearchParametersIVFGMM p = search_defaults();
    parse_search_parameters(description, &p, who);
    check_gpu_search_options(p.max_codes, who);
    nprobe = p.nprobe;
    max_codes = p.max_codes;
    search_options = p.options();
}

void GpuIndexIVFGMM::set_build_parameters(const std::string& description) {
    IVFGMMBuildParameters p = build_params;
    parse_build_parameters(
        description, &p, "GpuIndexIVFGMM::set_build_parameters");
    build_params = p;
}

size_t GpuIndexIVFGMM::nentries() const {
    return impl_->lists->total_entries();
}

double GpuIndexIVFGMM::replication_factor() const {
    return ntotal > 0 ? double(nentries()) / double(ntotal) : 1.0;
}

int GpuIndexIVFGMM::other_lists_width() const {
    return impl_->lists->record_width();
}

size_t GpuIndexIVFGMM::list_length(idx_t list) const {
    FAISS_THROW_IF_NOT_FMT(
        list >= 0 && size_t(list) < nlist,
        "GpuIndexIVFGMM: list %" PRId64 " is not in [0, nlist=%zu)",
        int64_t(list),
        nlist);
    return impl_->lists->length(size_t(list));
}

std::vector<idx_t> GpuIndexIVFGMM::list_ids(idx_t list) const {
    list_length(list);
    DeviceScope scope(impl_->config.device);
    return impl_->lists->list_ids(size_t(list));
}

std::vector<float> GpuIndexIVFGMM::list_vectors(idx_t list) const {
    const size_t n = list_length(list);
    const std::vector<uint8_t> codes = list_codes(list);
    const size_t cs = impl_->lists->code_size();
    std::vector<float> out(n * size_t(d));
    for (size_t j = 0; j < n; j++) {
        impl_->code.decode(
            codes.data() + j * cs,
            gmm.means.data() + size_t(list) * d,
            d,
            out.data() + j * d);
    }
    return out;
}

std::vector<uint8_t> GpuIndexIVFGMM::list_codes(idx_t list) const {
    list_length(list);
    DeviceScope scope(impl_->config.device);
    return impl_->lists->list_codes(size_t(list));
}

std::vector<int32_t> GpuIndexIVFGMM::list_records(idx_t list) const {
    list_length(list);
    DeviceScope scope(impl_->config.device);
    return impl_->lists->list_records(size_t(list));
}

const GpuSearchTiming& GpuIndexIVFGMM::last_search_timing() const {
    return impl_->timing;
}

} // namespace gpu
} // namespace faiss_gmm
