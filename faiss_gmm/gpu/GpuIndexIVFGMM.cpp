#include <faiss_gmm/gpu/GpuIndexIVFGMM.h>

#include <algorithm>
#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <mutex>
#include <unordered_map>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/utils.h>

#include <faiss_gmm/gpu/GpuIvfLists.h>
#include <faiss_gmm/impl/GmmScoring.h>
#include <faiss_gmm/impl/SpillRules.h>
#include <kernels/ivf_assign.h>
#include <kernels/ivf_lists.h>
#include <kernels/ivf_search.h>
#include <kernels/select_k.h>

namespace faiss_gmm {
namespace gpu {

namespace {

namespace kn = faiss_gmm::kernels;

constexpr double kLog2Pi = 1.8378770664093454836; // ln(2 pi)
/// Alignment of the buffers carved out of one workspace allocation.
constexpr size_t kCarveAlignment = 256;

void check_cublas(cublasStatus_t status, const char* what) {
    FAISS_THROW_IF_NOT_FMT(
        status == CUBLAS_STATUS_SUCCESS,
        "GpuIndexIVFGMM: %s failed: cuBLAS status %d",
        what,
        int(status));
}

/// Throws naming the first non-finite value of x (n vectors of dimension d).
constexpr auto check_finite = impl::check_finite_vectors;

/**
 * Hands out aligned sub-buffers of one allocation; with a null base it only
 * measures, so that sizing and carving share one code path.
 */
class Carver {
   public:
    explicit Carver(char* base) : base_(base) {}
    template <class T>
    T* take(size_t count) {
        offset_ =
            (offset_ + kCarveAlignment - 1) / kCarveAlignment * kCarveAlignment;
        T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
        offset_ += std::max<size_t>(count, 1) * sizeof(T);
        return p;
    }
    size_t bytes() const {
        return offset_ + kCarveAlignment;
    }

   private:
    char* base_;
    size_t offset_ = 0;
};

/// Every search parameter of one call, resolved and validated.
struct ResolvedSearch {
    size_t nprobe = 1;
    size_t max_codes = 0;
    ProbeOrder order = ProbeOrder::L2;
    float mass = 0;
    float mass_temperature = 1;
    float distance_ratio = 0;
};

/// The device buffers of one search tile.
struct SearchTile {
    float* queries = nullptr;           ///< nq x d, raw (fine scan)
    float* operand = nullptr;           ///< nq x gemm_dim, centred (coarse)
    float* query_norms = nullptr;       ///< nq, |q - c|^2
    float* l2_scores = nullptr;         ///< nq x nlist, or null
    float* joint_scores = nullptr;      ///< nq x nlist, or null
    float* probe_keys = nullptr;        ///< nq x nprobe
    int64_t* probe_pos = nullptr;       ///< nq x nprobe
    int32_t* probes = nullptr;          ///< nq x nprobe
    int64_t* probe_offsets = nullptr;   ///< nq x nprobe
    int64_t* segment_lengths = nullptr; ///< nq
    int64_t* segment_offsets = nullptr; ///< nq + 1
    int32_t* lists_visited = nullptr;   ///< nq
    int64_t* duplicates = nullptr;      ///< nq
    float* candidate_keys = nullptr;    ///< nq x bound
    int64_t* candidate_ids = nullptr;   ///< nq x bound
    float* out_keys = nullptr;          ///< nq x k
    int64_t* out_ids = nullptr;         ///< nq x k
    void* scan_workspace = nullptr;
    size_t scan_workspace_bytes = 0;
    void* select_workspace = nullptr; ///< both top-k selections
    size_t select_workspace_bytes = 0;
};

} // namespace

/*************************************************************
 * device state
 *************************************************************/

struct GpuIndexIVFGMM::Impl {
    GpuIndexIVFGMMConfig config;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    cudaEvent_t events[4] = {nullptr, nullptr, nullptr, nullptr};
    /// model and parameters on the host, no entries: parses set_parameters,
    /// validates the spill rule, assigns Soar lists
    std::unique_ptr<IndexIVFGMM> shadow;
    std::unique_ptr<GpuIvfLists> lists;

    /// model buffers (valid when the index is trained)
    DeviceAllocation model_buffer;
    const float* means = nullptr;         ///< nlist x d, raw
    const float* centred_means = nullptr; ///< nlist x d, mu - c
    const float* centred_norms = nullptr; ///< nlist, |mu - c|^2
    const float* log_const = nullptr;     ///< nlist
    const float* inv_var = nullptr;       ///< nlist or nlist x d
    const float* diag_rhs = nullptr;      ///< nlist x 2d (diagonal)
    const float* diag_norms = nullptr;    ///< nlist (diagonal)
    std::vector<float> center;            ///< mixture mean, d

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

    /// id -> lo_build(list, offset), built by reconstruct()
    std::shared_ptr<const std::unordered_map<idx_t, uint64_t>> id_locations;
    GpuSearchTiming timing;

    explicit Impl(const GpuIndexIVFGMMConfig& cfg) : config(cfg) {
        FAISS_THROW_IF_NOT_FMT(
            cfg.add_batch_rows > 0,
            "GpuIndexIVFGMM: config add_batch_rows=%" PRId64 " must be > 0",
            int64_t(cfg.add_batch_rows));
        FAISS_THROW_IF_NOT_MSG(
            cfg.search_memory > 0,
            "GpuIndexIVFGMM: config search_memory must be > 0");
        FAISS_THROW_IF_NOT_FMT(
            gpu_is_available(cfg.device),
            "GpuIndexIVFGMM: CUDA device %d is not usable",
            cfg.device);
        DeviceScope scope(cfg.device);
        try {
            throw_on_cuda_error(
                cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                "creating the index's CUDA stream");
            for (cudaEvent_t& e : events) {
                throw_on_cuda_error(
                    cudaEventCreate(&e), "creating a timing event");
            }
            check_cublas(cublasCreate(&cublas), "creating a cuBLAS handle");
            check_cublas(
                cublasSetStream(cublas, stream),
                "binding cuBLAS to the stream");
            // fp32 products: TF32 would move coarse scores off the CPU's
            check_cublas(
                cublasSetMathMode(cublas, CUBLAS_PEDANTIC_MATH),
                "setting cuBLAS math mode");
        } catch (...) {
            destroy();
            throw;
        }
    }

    ~Impl() {
        destroy();
    }

    /// Frees everything; never throws (runs in the destructor).
    void destroy() {
        int previous = -1;
        const bool switched = cudaGetDevice(&previous) == cudaSuccess &&
                              previous != config.device &&
                              cudaSetDevice(config.device) == cudaSuccess;
        lists.reset();
        model_buffer.release();
        probe_rank.release();
        search_workspace.release();
        candidate_workspace.release();
        add_workspace.release();
        if (cublas) {
            cublasDestroy(cublas);
            cublas = nullptr;
        }
        for (cudaEvent_t& e : events) {
            if (e) {
                cudaEventDestroy(e);
                e = nullptr;
            }
        }
        if (stream) {
            cudaStreamDestroy(stream);
            stream = nullptr;
        }
        if (switched) {
            cudaSetDevice(previous);
        }
    }

    void upload(void* dst, const void* src, size_t bytes, const char* what) {
        throw_on_cuda_error(
            cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream),
            what);
    }

    void download(void* dst, const void* src, size_t bytes, const char* what) {
        throw_on_cuda_error(
            cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream),
            what);
    }

    void synchronize(const char* what) {
        throw_on_cuda_error(cudaStreamSynchronize(stream), what);
    }

    /// Upload the model in the forms the kernels read.
    void upload_model(const GaussianMixture& model) {
        const int d = model.d;
        const size_t k = size_t(model.k);
        const bool diagonal = model.covariance == CovarianceType::Diagonal;
        const size_t vpc = diagonal ? size_t(d) : 1;
        center.assign(d, 0.0f);
        {
            std::vector<double> c(d, 0.0);
            for (size_t j = 0; j < k; j++) {
                for (int l = 0; l < d; l++) {
                    c[l] += double(model.weights[j]) * model.means[j * d + l];
                }
            }
            std::copy(c.begin(), c.end(), center.begin());
        }
        std::vector<float> centred(k * d), norms(k), log_c(k), inv(k * vpc);
        std::vector<float> rhs(diagonal ? k * 2 * d : 0);
        std::vector<float> dnorms(diagonal ? k : 0);
        for (size_t j = 0; j < k; j++) {
            double norm = 0, log_det = 0, weighted = 0;
            for (int l = 0; l < d; l++) {
                const float m = model.means[j * d + l] - center[l];
                centred[j * d + l] = m;
                norm += double(m) * m;
            }
            if (diagonal) {
                for (int l = 0; l < d; l++) {
                    const double v = model.variances[j * d + l];
                    const double m = centred[j * d + l];
                    inv[j * d + l] = float(1.0 / v);
                    rhs[j * 2 * d + l] = float(m / v);
                    rhs[j * 2 * d + d + l] = float(-0.5 / v);
                    weighted += m * m / v;
                    log_det += std::log(v);
                }
                dnorms[j] = float(weighted);
            } else {
                const double v = model.variances[j];
                inv[j] = float(1.0 / v);
                log_det = d * std::log(v);
            }
            norms[j] = float(norm);
            log_c[j] = float(
                std::log(double(model.weights[j])) -
                0.5 * (d * kLog2Pi + log_det));
        }
        Carver measure(nullptr);
        const auto plan = [&](Carver& c) {
            float* p_means = c.take<float>(k * d);
            float* p_centred = c.take<float>(k * d);
            float* p_norms = c.take<float>(k);
            float* p_log = c.take<float>(k);
            float* p_inv = c.take<float>(k * vpc);
            float* p_rhs = c.take<float>(rhs.size());
            float* p_dn = c.take<float>(dnorms.size());
            return std::vector<float*>{
                p_means, p_centred, p_norms, p_log, p_inv, p_rhs, p_dn};
        };
        plan(measure);
        model_buffer.release();
        model_buffer.reserve(measure.bytes(), "the model (means, variances)");
        Carver carve(model_buffer.as<char>());
        const std::vector<float*> p = plan(carve);
        upload(p[0], model.means.data(), k * d * 4, "uploading the means");
        upload(p[1], centred.data(), k * d * 4, "uploading the means");
        upload(p[2], norms.data(), k * 4, "uploading the mean norms");
        upload(p[3], log_c.data(), k * 4, "uploading the model constants");
        upload(p[4], inv.data(), inv.size() * 4, "uploading the variances");
        if (diagonal) {
            upload(p[5], rhs.data(), rhs.size() * 4, "uploading the model");
            upload(p[6], dnorms.data(), k * 4, "uploading the model");
        }
        synchronize("uploading the model");
        means = p[0];
        centred_means = p[1];
        centred_norms = p[2];
        log_const = p[3];
        inv_var = p[4];
        diag_rhs = diagonal ? p[5] : nullptr;
        diag_norms = diagonal ? p[6] : nullptr;
    }

    /// Lists of nb vectors (host xh, device xd) under index.spill, as
    /// IndexIVFGMM::assign_lists chooses them.
    void assign_batch(
        const GpuIndexIVFGMM& index,
        idx_t nb,
        const float* xh,
        const float* xd,
        idx_t* lists);

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
                    stream),
                "initialising the probe ranks");
            probe_rank_rows = rows;
        }
        return probe_rank.as<int32_t>();
    }
};

/*************************************************************
 * construction, copies
 *************************************************************/

GpuIndexIVFGMM::GpuIndexIVFGMM(
    int d,
    size_t nlist_in,
    const GmmParameters& gmm_params_in,
    const SpillParameters& spill_in,
    const GpuIndexIVFGMMConfig& config)
    : faiss::Index(d, faiss::METRIC_L2),
      nlist(nlist_in),
      gmm_params(gmm_params_in),
      spill(spill_in),
      impl_(new Impl(config)) {
    DeviceScope scope(config.device);
    impl_->shadow.reset(new IndexIVFGMM(d, nlist, gmm_params, spill));
    impl_->lists.reset(new GpuIvfLists(d, nlist, impl_->stream));
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
    FAISS_THROW_IF_NOT_MSG(cpu, "GpuIndexIVFGMM::copyFrom: index is null");
    FAISS_THROW_IF_NOT_FMT(
        cpu->metric_type == faiss::METRIC_L2,
        "GpuIndexIVFGMM::copyFrom: metric_type=%d is not supported (L2 "
        "only)",
        int(cpu->metric_type));
    FAISS_THROW_IF_NOT_FMT(
        cpu->prune_margin == 0 && cpu->min_expected_hits == 0,
        "GpuIndexIVFGMM::copyFrom: prune_margin=%g and "
        "min_expected_hits=%g must be 0 (they need the sequential CPU "
        "scan)",
        cpu->prune_margin,
        cpu->min_expected_hits);
    FAISS_THROW_IF_NOT_MSG(
        cpu->quantizer && cpu->invlists,
        "GpuIndexIVFGMM::copyFrom: index has no quantizer or lists");
    FAISS_THROW_IF_NOT_FMT(
        cpu->other_lists.size() == cpu->nlist,
        "GpuIndexIVFGMM::copyFrom: other_lists has %zu lists, "
        "nlist=%zu",
        cpu->other_lists.size(),
        cpu->nlist);
    const size_t w = size_t(cpu->other_lists_width);
    for (size_t l = 0; l < cpu->nlist; l++) {
        FAISS_THROW_IF_NOT_FMT(
            cpu->other_lists[l].size() == cpu->invlists->list_size(l) * w,
            "GpuIndexIVFGMM::copyFrom: list %zu has %zu entries but "
            "%zu spill records of width %zu",
            l,
            cpu->invlists->list_size(l),
            cpu->other_lists[l].size(),
            w);
    }
    FAISS_THROW_IF_NOT_MSG(
        !cpu->is_trained || cpu->gmm.is_trained,
        "GpuIndexIVFGMM::copyFrom: index is trained but its GMM is not");
    DeviceScope scope(impl_->config.device);
    const double t0 = faiss::getmillisecs();
    d = cpu->d;
    nlist = cpu->nlist;
    gmm_params = cpu->gmm_params;
    spill = cpu->spill;
    nprobe = cpu->nprobe;
    max_codes = cpu->max_codes;
    probe_order = cpu->probe_order;
    posterior_mass = cpu->posterior_mass;
    mass_temperature = cpu->mass_temperature;
    distance_ratio = cpu->distance_ratio;
    impl_->id_locations.reset();
    impl_->lists.reset();
    impl_->probe_rank.release();
    impl_->probe_rank_rows = 0;
    impl_->shadow.reset(new IndexIVFGMM(d, nlist, gmm_params, spill));
    impl_->lists.reset(new GpuIvfLists(d, nlist, impl_->stream));
    ntotal = 0;
    if (cpu->is_trained) {
        set_gmm(cpu->gmm);
    } else {
        gmm = cpu->gmm;
        is_trained = false;
    }
    impl_->lists->reset(int(w));
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
            reinterpret_cast<const float*>(codes.get()),
            ids.get(),
            cpu->other_lists[l].data(),
            false);
    }
    impl_->lists->update_device_arrays();
    ntotal = cpu->ntotal;
    if (verbose) {
        printf(
            "GpuIndexIVFGMM::copyFrom: %zu entries of %" PRId64
            " vectors in %zu lists uploaded in %.3f s\n",
            nentries(),
            int64_t(ntotal),
            nlist,
            (faiss::getmillisecs() - t0) / 1000);
    }
}

void GpuIndexIVFGMM::copyTo(IndexIVFGMM* cpu) const {
    FAISS_THROW_IF_NOT_MSG(cpu, "GpuIndexIVFGMM::copyTo: index is null");
    DeviceScope scope(impl_->config.device);
    cpu->metric_type = faiss::METRIC_L2;
    cpu->d = d;
    cpu->nlist = nlist;
    cpu->code_size = size_t(d) * sizeof(float);
    if (!cpu->quantizer || cpu->quantizer->d != d ||
        !dynamic_cast<faiss::IndexFlatL2*>(cpu->quantizer)) {
        if (cpu->own_fields) {
            delete cpu->quantizer;
        }
        cpu->quantizer = new faiss::IndexFlatL2(d);
        cpu->own_fields = true;
    }
    cpu->quantizer->reset();
    cpu->replace_invlists(
        new faiss::ArrayInvertedLists(nlist, cpu->code_size), true);
    cpu->direct_map.clear();
    cpu->other_lists.assign(nlist, {});
    cpu->other_lists_width = impl_->lists->record_width();
    cpu->nentries = 0;
    cpu->ntotal = 0;
    cpu->id_location_cache.reset();
    cpu->gmm_params = gmm_params;
    cpu->spill = spill;
    cpu->nprobe = nprobe;
    cpu->max_codes = max_codes;
    cpu->probe_order = probe_order;
    cpu->posterior_mass = posterior_mass;
    cpu->mass_temperature = mass_temperature;
    cpu->distance_ratio = distance_ratio;
    cpu->prune_margin = 0;
    cpu->min_expected_hits = 0;
    if (is_trained) {
        cpu->set_gmm(gmm);
    } else {
        cpu->gmm = gmm;
        cpu->is_trained = false;
    }
    for (size_t l = 0; l < nlist; l++) {
        const size_t n = impl_->lists->length(l);
        if (n == 0) {
            continue;
        }
        const std::vector<idx_t> ids = impl_->lists->list_ids(l);
        const std::vector<float> vectors = impl_->lists->list_vectors(l);
        cpu->invlists->add_entries(
            l, n, ids.data(), reinterpret_cast<const uint8_t*>(vectors.data()));
        cpu->other_lists[l] = impl_->lists->list_records(l);
    }
    cpu->nentries = nentries();
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
    check_finite(n, d, x, "GpuIndexIVFGMM::train");
    DeviceScope scope(impl_->config.device);
    GpuEmConfig em;
    em.device = impl_->config.device;
    em.precision = impl_->config.precision;
    em.max_device_memory = impl_->config.max_device_memory;
    em.verbose = impl_->config.verbose;
    GmmParameters params = gmm_params;
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
    FAISS_THROW_IF_NOT_FMT(
        nentries() == 0,
        "GpuIndexIVFGMM::set_gmm: the index holds %zu entries; reset() "
        "it first",
        nentries());
    model.check_consistency();
    DeviceScope scope(impl_->config.device);
    impl_->shadow->set_gmm(model);
    impl_->upload_model(model);
    gmm = model;
    is_trained = true;
}

/*************************************************************
 * adding
 *************************************************************/

void GpuIndexIVFGMM::add(idx_t n, const float* x) {
    add_with_ids(n, x, nullptr);
}

namespace {

/// The spill rule applied to the kernel's top lists, exactly as
/// IndexIVFGMM::assign_lists applies it to the CPU's.
void spill_from_top(
    const SpillParameters& spill,
    idx_t nb,
    int m,
    int top,
    const int32_t* top_index,
    const float* top_score,
    const float* log_norm,
    const int32_t* nearest,
    idx_t* lists) {
    std::fill(lists, lists + int64_t(nb) * m, idx_t(-1));
    switch (spill.rule) {
    case SpillRule::None:
        for (idx_t i = 0; i < nb; i++) {
            lists[i * m] = top_index[i * top];
        }
        break;
    case SpillRule::Posterior: {
        const float inv_t = 1.0f / spill.temperature;
#pragma omp parallel for if (nb > 1000)
        for (idx_t i = 0; i < nb; i++) {
            const float* si = top_score + i * top;
            const double log_norm_i = double(log_norm[i]);
            impl::posterior_spill_row(
                spill,
                m,
                top,
                top_index + i * top,
                [si, inv_t, log_norm_i](int t) {
                    return float(std::exp(double(si[t]) * inv_t - log_norm_i));
                },
                [nearest, i]() { return idx_t(nearest[i]); },
                lists + i * m);
        }
        break;
    }
    case SpillRule::Closure:
        for (idx_t i = 0; i < nb; i++) {
            impl::closure_spill_row(
                spill.closure_ratio,
                top,
                top_score + i * top,
                top_index + i * top,
                lists + i * m);
        }
        break;
    case SpillRule::Soar:
        FAISS_THROW_MSG("GpuIndexIVFGMM: Soar lists are assigned on the CPU");
    }
}

} // namespace

void GpuIndexIVFGMM::Impl::assign_batch(
    const GpuIndexIVFGMM& index,
    idx_t nb,
    const float* xh,
    const float* xd,
    idx_t* lists) {
    const SpillParameters& spill = index.spill;
    const int m = spill.max_assign;
    if (spill.rule == SpillRule::Soar || m > kn::kAssignMaxTop) {
        // Soar's residual loss and very wide spills: the CPU rule itself
        shadow->assign_lists(nb, xh, lists);
        return;
    }
    const int nl = int(index.nlist);
    kn::AssignScore score = kn::AssignScore::LogJoint;
    int top = 1;
    float temperature = 1.0f;
    switch (spill.rule) {
    case SpillRule::None:
        score = spill.primary_is_nearest_mean ? kn::AssignScore::L2
                                              : kn::AssignScore::LogJoint;
        break;
    case SpillRule::Posterior:
        top = std::min(nl, m);
        temperature = spill.temperature;
        break;
    case SpillRule::Closure:
        score = kn::AssignScore::L2;
        top = std::min(nl, m);
        break;
    case SpillRule::Soar:
        break;
    }
    const bool log_joint = score == kn::AssignScore::LogJoint;
    const auto plan = [&](Carver& c) {
        kn::AssignOutput out;
        out.top_index = c.take<int32_t>(size_t(nb) * top);
        out.top_score = c.take<float>(size_t(nb) * top);
        out.log_norm = log_joint ? c.take<float>(nb) : nullptr;
        out.nearest = log_joint ? c.take<int32_t>(nb) : nullptr;
        return out;
    };
    Carver measure(nullptr);
    plan(measure);
    add_workspace.reserve(measure.bytes(), "the add batch assignment");
    Carver carve(add_workspace.as<char>());
    const kn::AssignOutput out = plan(carve);
    kn::AssignModel model;
    model.d = index.d;
    model.k = nl;
    model.diagonal = index.gmm.covariance == CovarianceType::Diagonal;
    model.means = means;
    model.log_const = log_const;
    model.inv_var = inv_var;
    throw_on_cuda_error(
        kn::ivf_assign_top(
            model, score, int64_t(nb), xd, top, temperature, out, stream),
        "launching the list assignment kernel");
    std::vector<int32_t> top_index(size_t(nb) * top);
    std::vector<float> top_score(size_t(nb) * top);
    std::vector<float> log_norm(log_joint ? nb : 0);
    std::vector<int32_t> nearest(log_joint ? nb : 0);
    download(
        top_index.data(),
        out.top_index,
        top_index.size() * 4,
        "downloading the assigned lists");
    download(
        top_score.data(),
        out.top_score,
        top_score.size() * 4,
        "downloading the assignment scores");
    if (log_joint) {
        download(log_norm.data(), out.log_norm, nb * 4, "downloading norms");
        download(nearest.data(), out.nearest, nb * 4, "downloading means");
    }
    synchronize("assigning lists");
    spill_from_top(
        spill,
        nb,
        m,
        top,
        top_index.data(),
        top_score.data(),
        log_norm.data(),
        nearest.data(),
        lists);
}

void GpuIndexIVFGMM::assign_lists(idx_t n, const float* x, idx_t* lists) const {
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "GpuIndexIVFGMM::assign_lists: index is not trained");
    impl_->shadow->spill = spill;
    impl_->shadow->assign_lists(0, x, lists); // validates spill as the CPU
    if (n == 0) {
        return;
    }
    check_finite(n, d, x, "GpuIndexIVFGMM::assign_lists");
    DeviceScope scope(impl_->config.device);
    const idx_t bs = std::min(n, impl_->config.add_batch_rows);
    DeviceAllocation batch;
    batch.reserve(size_t(bs) * d * sizeof(float), "an add batch");
    const int m = spill.max_assign;
    for (idx_t i0 = 0; i0 < n; i0 += bs) {
        const idx_t nb = std::min(bs, n - i0);
        const float* xb = x + int64_t(i0) * d;
        impl_->upload(
            batch.as<float>(),
            xb,
            size_t(nb) * d * sizeof(float),
            "uploading an add batch");
        impl_->assign_batch(
            *this, nb, xb, batch.as<float>(), lists + int64_t(i0) * m);
    }
}

void GpuIndexIVFGMM::add_with_ids(idx_t n, const float* x, const idx_t* xids) {
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "GpuIndexIVFGMM::add_with_ids: index is not trained");
    impl_->shadow->spill = spill;
    impl_->shadow->assign_lists(0, x, nullptr); // validates spill as the CPU
    check_finite(n, d, x, "GpuIndexIVFGMM::add_with_ids");
    if (n == 0) {
        return;
    }
    DeviceScope scope(impl_->config.device);
    const double t0 = faiss::getmillisecs();
    const int m = spill.max_assign;
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
    idx_t n_vectors = 0;
    int nbatches = 0;
    for (idx_t i0 = 0; i0 < n; i0 += bs, nbatches++) {
        const idx_t nb = std::min(bs, n - i0);
        const float* xb = x + int64_t(i0) * d;
        impl_->upload(
            batch.as<float>(),
            xb,
            size_t(nb) * d * sizeof(float),
            "uploading an add batch");
        impl_->assign_batch(*this, nb, xb, batch.as<float>(), assigned.data());
        rows.clear();
        ids.clear();
        entry_lists.clear();
        records.clear();
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
                int c = 0;
                for (int b = 0; b < m; b++) {
                    if (b != a && li[b] >= 0) {
                        records.push_back(int32_t(li[b]));
                        c++;
                    }
                }
                records.insert(records.end(), size_t(w - c), int32_t(-1));
            }
        }
        lists.append_batch(
            batch.as<float>(),
            int64_t(rows.size()),
            rows.data(),
            entry_lists.data(),
            ids.data(),
            records.data());
        // counted per batch, so that ntotal matches the lists if a later
        // batch fails
        ntotal += n_vectors;
        n_vectors = 0;
    }
    if (verbose || impl_->config.verbose) {
        printf(
            "GpuIndexIVFGMM::add_with_ids: %" PRId64
            " vectors in %zu entries (spill %s, max_assign %d), %d "
            "batches, replication now %.3f, %.3f s\n",
            int64_t(n),
            lists.total_entries() - nentries0,
            spill_rule_name(spill.rule),
            m,
            nbatches,
            replication_factor(),
            (faiss::getmillisecs() - t0) / 1000);
    }
}

/*************************************************************
 * searching
 *************************************************************/

void GpuIndexIVFGMM::search(
    idx_t n,
    const float* x,
    idx_t k,
    float* distances,
    idx_t* labels,
    const faiss::SearchParameters* params_in) const {
    FAISS_THROW_IF_NOT_FMT(
        k > 0 && k <= kn::kSelectMaxK,
        "GpuIndexIVFGMM::search: k=%" PRId64 " must be in [1, %d]",
        int64_t(k),
        kn::kSelectMaxK);
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "GpuIndexIVFGMM::search: index is not trained");

    // parameters, resolved as IndexIVFGMM::resolve_search_parameters does
    const faiss::SearchParametersIVF* ivf = nullptr;
    const SearchParametersIVFGMM* gp = nullptr;
    if (params_in) {
        ivf = dynamic_cast<const faiss::SearchParametersIVF*>(params_in);
        FAISS_THROW_IF_NOT_MSG(
            ivf,
            "GpuIndexIVFGMM::search: search parameters must be a "
            "SearchParametersIVF or SearchParametersIVFGMM");
        FAISS_THROW_IF_NOT_MSG(
            !params_in->sel,
            "GpuIndexIVFGMM::search: an IDSelector is not supported on "
            "the GPU (search through the CPU index)");
        gp = dynamic_cast<const SearchParametersIVFGMM*>(params_in);
    }
    ResolvedSearch rs;
    const size_t nprobe_asked = ivf ? ivf->nprobe : nprobe;
    FAISS_THROW_IF_NOT_FMT(
        nprobe_asked >= 1,
        "GpuIndexIVFGMM::search: nprobe=%zu must be >= 1",
        nprobe_asked);
    rs.nprobe = std::min(nlist, nprobe_asked);
    FAISS_THROW_IF_NOT_FMT(
        rs.nprobe <= size_t(kn::kSelectMaxK),
        "GpuIndexIVFGMM::search: nprobe=%zu (nlist=%zu) is above the GPU "
        "limit %d",
        nprobe_asked,
        nlist,
        kn::kSelectMaxK);
    rs.max_codes = ivf ? ivf->max_codes : max_codes;
    rs.order = gp ? gp->probe_order : probe_order;
    rs.mass = gp ? gp->posterior_mass : posterior_mass;
    rs.mass_temperature = gp ? gp->mass_temperature : mass_temperature;
    rs.distance_ratio = gp ? gp->distance_ratio : distance_ratio;
    if (gp) {
        FAISS_THROW_IF_NOT_MSG(
            !gp->precomputed_distances,
            "GpuIndexIVFGMM::search: precomputed_distances is a CPU "
            "IndexIVFGMM option (the GPU scan computes every distance)");
        FAISS_THROW_IF_NOT_FMT(
            gp->prune_margin == 0 && gp->min_expected_hits == 0,
            "GpuIndexIVFGMM::search: prune_margin=%g and "
            "min_expected_hits=%g must be 0 on the GPU (they need the "
            "sequential CPU scan)",
            gp->prune_margin,
            gp->min_expected_hits);
    }
    SearchParametersIVFGMM checked;
    checked.posterior_mass = rs.mass;
    checked.mass_temperature = rs.mass_temperature;
    checked.distance_ratio = rs.distance_ratio;
    checked.probe_order = rs.order;
    check_search_parameters(checked, "GpuIndexIVFGMM::search");
    check_finite(n, d, x, "GpuIndexIVFGMM::search");
    GpuSearchTiming& timing = impl_->timing;
    timing = GpuSearchTiming();
    timing.nq = n;
    if (n == 0) {
        return;
    }

    DeviceScope scope(impl_->config.device);
    const double t_start = faiss::getmillisecs();
    Impl& im = *impl_;
    GpuIvfLists& lists = *im.lists;
    const size_t nl = nlist;
    const int np = int(rs.nprobe);
    const bool diagonal = gmm.covariance == CovarianceType::Diagonal;
    const bool need_l2 = rs.order == ProbeOrder::L2;
    const bool need_joint = rs.order == ProbeOrder::Posterior || rs.mass > 0;
    const bool diag_operand = need_joint && diagonal;
    const int gemm_dim = diag_operand ? 2 * d : d;

    // candidates of one query: at most the nprobe longest lists (with
    // max_codes, the lists before the one that reaches it, plus that one)
    std::vector<int64_t> lengths = lists.lengths();
    std::sort(lengths.begin(), lengths.end(), std::greater<int64_t>());
    int64_t bound = 0;
    for (int r = 0; r < np; r++) {
        bound += lengths[r];
    }
    if (rs.max_codes > 0 && !lengths.empty()) {
        bound = std::min(bound, int64_t(rs.max_codes) + lengths[0]);
    }

    const auto plan = [&](Carver& c, idx_t nq, SearchTile* t) {
        const size_t q = size_t(nq);
        t->queries = c.take<float>(q * d);
        t->operand = c.take<float>(q * gemm_dim);
        t->query_norms = c.take<float>(q);
        t->l2_scores = need_l2 ? c.take<float>(q * nl) : nullptr;
        t->joint_scores = need_joint ? c.take<float>(q * nl) : nullptr;
        t->probe_keys = c.take<float>(q * np);
        t->probe_pos = c.take<int64_t>(q * np);
        t->probes = c.take<int32_t>(q * np);
        t->probe_offsets = c.take<int64_t>(q * np);
        t->segment_lengths = c.take<int64_t>(q);
        t->segment_offsets = c.take<int64_t>(q + 1);
        t->lists_visited = c.take<int32_t>(q);
        t->duplicates = c.take<int64_t>(q);
        t->out_keys = c.take<float>(q * size_t(k));
        t->out_ids = c.take<int64_t>(q * size_t(k));
        t->scan_workspace_bytes = kn::segment_offsets_workspace_bytes(nq);
        t->scan_workspace = c.take<char>(t->scan_workspace_bytes);
        // sized for the longest candidate segment (offsets are device data)
        kn::Segments probe_rows, candidate_rows;
        probe_rows.count = candidate_rows.count = nq;
        probe_rows.length = int64_t(nl);
        candidate_rows.length = bound;
        t->select_workspace_bytes = std::max(
            kn::select_k_workspace_bytes(probe_rows, np),
            kn::select_k_workspace_bytes(candidate_rows, int(k)));
        t->select_workspace = c.take<char>(t->select_workspace_bytes);
    };
    // queries per tile: the largest count whose buffers (probe ranks
    // included) fit config.search_memory, at least one, counting for the
    // candidates twice the mean: nprobe lists of the mean length (the bound
    // of the longest lists is far too pessimistic when sizes are skewed).
    // A tile with more candidates grows the candidate buffers past the
    // budget rather than failing.
    const int64_t mean_list =
        int64_t((lists.total_entries() + nl - 1) / std::max<size_t>(nl, 1));
    const int64_t expected_candidates =
        std::max<int64_t>(1, std::min(bound, 2 * int64_t(np) * mean_list));
    SearchTile tile;
    Carver one(nullptr);
    plan(one, 1, &tile);
    const size_t per_query =
        one.bytes() + nl * sizeof(int32_t) +
        size_t(expected_candidates) * (sizeof(float) + sizeof(int64_t));
    idx_t tile_rows = std::max<idx_t>(
        1, idx_t(im.config.search_memory / std::max<size_t>(per_query, 1)));
    // the scan launches one CTA per (query, probe): at most 2^31 - 1
    tile_rows = std::min(
        {tile_rows, n, idx_t(std::numeric_limits<int32_t>::max() / np)});
    Carver measure(nullptr);
    plan(measure, tile_rows, &tile);
    im.search_workspace.reserve(measure.bytes(), "the search tile buffers");
    Carver carve(im.search_workspace.as<char>());
    plan(carve, tile_rows, &tile);
    int32_t* probe_rank = im.probe_ranks(tile_rows, nl);

    kn::CoarseModel l2_model;
    l2_model.d = d;
    l2_model.nlist = int(nl);
    l2_model.mean_norms = im.centred_norms;
    kn::CoarseModel joint_model = l2_model;
    joint_model.log_joint = true;
    joint_model.diagonal = diagonal;
    joint_model.log_const = im.log_const;
    joint_model.inv_var = diagonal ? nullptr : im.inv_var;
    joint_model.mean_norms = diagonal ? nullptr : im.centred_norms;
    joint_model.mean_norms_weighted = diagonal ? im.diag_norms : nullptr;
    const kn::IvfListsView view = lists.view();

    std::vector<float> operand(size_t(tile_rows) * gemm_dim);
    std::vector<float> norms(tile_rows);
    std::vector<int64_t> seg_lengths(tile_rows), dups(tile_rows);
    std::vector<int32_t> visited(tile_rows);
    size_t n_scanned = 0, n_dups = 0, n_visited = 0;
    const float one_f = 1.0f, zero_f = 0.0f;
    for (idx_t i0 = 0; i0 < n; i0 += tile_rows) {
        const idx_t nq = std::min(tile_rows, n - i0);
        const float* xq = x + int64_t(i0) * d;
        // centred operand of the coarse GEMMs: q - c (and (q - c)^2)
#pragma omp parallel for if (nq > 64)
        for (idx_t i = 0; i < nq; i++) {
            float* op = operand.data() + size_t(i) * gemm_dim;
            double norm = 0;
            for (int l = 0; l < d; l++) {
                const float v = xq[size_t(i) * d + l] - im.center[l];
                op[l] = v;
                if (diag_operand) {
                    op[d + l] = v * v;
                }
                norm += double(v) * v;
            }
            norms[i] = float(norm);
        }
        throw_on_cuda_error(
            cudaEventRecord(im.events[0], im.stream), "recording events");
        im.upload(tile.queries, xq, size_t(nq) * d * 4, "uploading queries");
        im.upload(
            tile.operand,
            operand.data(),
            size_t(nq) * gemm_dim * 4,
            "uploading queries");
        im.upload(tile.query_norms, norms.data(), nq * 4, "uploading norms");
        if (need_l2) {
            check_cublas(
                cublasSgemm(
                    im.cublas,
                    CUBLAS_OP_T,
                    CUBLAS_OP_N,
                    int(nl),
                    int(nq),
                    d,
                    &one_f,
                    im.centred_means,
                    d,
                    tile.operand,
                    gemm_dim,
                    &zero_f,
                    tile.l2_scores,
                    int(nl)),
                "the coarse L2 product");
            throw_on_cuda_error(
                kn::ivf_coarse_scores(
                    l2_model, nq, tile.query_norms, tile.l2_scores, im.stream),
                "launching the coarse L2 scores");
        }
        if (need_joint) {
            check_cublas(
                cublasSgemm(
                    im.cublas,
                    CUBLAS_OP_T,
                    CUBLAS_OP_N,
                    int(nl),
                    int(nq),
                    gemm_dim,
                    &one_f,
                    diagonal ? im.diag_rhs : im.centred_means,
                    gemm_dim,
                    tile.operand,
                    gemm_dim,
                    &zero_f,
                    tile.joint_scores,
                    int(nl)),
                "the coarse log-joint product");
            throw_on_cuda_error(
                kn::ivf_coarse_scores(
                    joint_model,
                    nq,
                    tile.query_norms,
                    tile.joint_scores,
                    im.stream),
                "launching the coarse log-joint scores");
        }
        kn::Segments rows;
        rows.count = nq;
        rows.length = int64_t(nl);
        throw_on_cuda_error(
            kn::select_k_segments(
                rows,
                need_l2 ? tile.l2_scores : tile.joint_scores,
                nullptr,
                np,
                tile.probe_keys,
                tile.probe_pos,
                tile.select_workspace,
                tile.select_workspace_bytes,
                im.stream),
            "launching the probe selection");
        throw_on_cuda_error(
            kn::narrow_int64_to_int32(
                tile.probe_pos, int64_t(nq) * np, tile.probes, im.stream),
            "launching the probe conversion");
        if (rs.distance_ratio > 0 || rs.mass > 0) {
            throw_on_cuda_error(
                kn::ivf_cut_probes(
                    nq,
                    np,
                    tile.probes,
                    tile.probe_keys,
                    rs.distance_ratio,
                    tile.joint_scores,
                    int(nl),
                    rs.mass,
                    rs.mass_temperature,
                    im.stream),
                "launching the adaptive probe cut");
        }
        throw_on_cuda_error(
            cudaEventRecord(im.events[1], im.stream), "recording events");
        throw_on_cuda_error(
            kn::ivf_prepare_probes(
                view,
                nq,
                np,
                int64_t(rs.max_codes),
                tile.probes,
                probe_rank,
                tile.probe_offsets,
                tile.segment_lengths,
                tile.lists_visited,
                im.stream),
            "launching the probe preparation");
        throw_on_cuda_error(
            kn::segment_offsets_from_lengths(
                tile.segment_lengths,
                nq,
                tile.segment_offsets,
                tile.scan_workspace,
                tile.scan_workspace_bytes,
                im.stream),
            "launching the candidate offsets scan");
        int64_t tile_candidates = 0;
        im.download(
            &tile_candidates,
            tile.segment_offsets + nq,
            sizeof(int64_t),
            "downloading the candidate count");
        im.synchronize("counting the tile's candidates");
        im.candidate_workspace.reserve(
            size_t(std::max<int64_t>(tile_candidates, 1)) *
                (sizeof(float) + sizeof(int64_t)),
            "the candidate buffers");
        tile.candidate_ids = im.candidate_workspace.as<int64_t>();
        tile.candidate_keys =
            reinterpret_cast<float*>(tile.candidate_ids + tile_candidates);
        throw_on_cuda_error(
            cudaMemsetAsync(tile.duplicates, 0, size_t(nq) * 8, im.stream),
            "clearing the duplicate counters");
        throw_on_cuda_error(
            kn::ivf_scan_lists(
                view,
                nq,
                tile.queries,
                np,
                tile.probes,
                probe_rank,
                tile.probe_offsets,
                tile.segment_offsets,
                tile.candidate_keys,
                tile.candidate_ids,
                tile.duplicates,
                im.stream),
            "launching the list scan");
        throw_on_cuda_error(
            cudaEventRecord(im.events[2], im.stream), "recording events");
        kn::Segments candidates;
        candidates.count = nq;
        candidates.offsets = tile.segment_offsets;
        throw_on_cuda_error(
            kn::select_k_segments(
                candidates,
                tile.candidate_keys,
                tile.candidate_ids,
                int(k),
                tile.out_keys,
                tile.out_ids,
                tile.select_workspace,
                tile.select_workspace_bytes,
                im.stream),
            "launching the top-k selection");
        throw_on_cuda_error(
            cudaEventRecord(im.events[3], im.stream), "recording events");
        throw_on_cuda_error(
            kn::ivf_clear_probe_ranks(
                nq, np, int(nl), tile.probes, probe_rank, im.stream),
            "launching the probe rank reset");
        float* dist_out = distances + int64_t(i0) * k;
        idx_t* label_out = labels + int64_t(i0) * k;
        static_assert(sizeof(idx_t) == sizeof(int64_t), "ids are int64");
        im.download(
            dist_out,
            tile.out_keys,
            size_t(nq) * k * 4,
            "downloading distances");
        im.download(
            label_out, tile.out_ids, size_t(nq) * k * 8, "downloading labels");
        im.download(
            seg_lengths.data(),
            tile.segment_lengths,
            nq * 8,
            "downloading counters");
        im.download(
            dups.data(), tile.duplicates, nq * 8, "downloading counters");
        im.download(
            visited.data(), tile.lists_visited, nq * 4, "downloading counters");
        im.synchronize("searching a query tile");
        float ms[3];
        for (int e = 0; e < 3; e++) {
            throw_on_cuda_error(
                cudaEventElapsedTime(&ms[e], im.events[e], im.events[e + 1]),
                "reading the timing events");
        }
        timing.coarse_ms += ms[0];
        timing.scan_ms += ms[1];
        timing.select_ms += ms[2];
        timing.ntiles++;
        for (idx_t i = 0; i < nq; i++) {
            n_scanned += size_t(seg_lengths[i]);
            n_dups += size_t(dups[i]);
            n_visited += size_t(visited[i]);
        }
        // unfilled slots as the CPU heaps leave them
        for (size_t j = 0; j < size_t(nq) * k; j++) {
            if (label_out[j] < 0) {
                dist_out[j] = std::numeric_limits<float>::max();
            }
        }
    }
    const size_t n_fine = n_scanned - n_dups;
    timing.scan_bytes = n_fine * size_t(d) * sizeof(float);
    timing.total_ms = faiss::getmillisecs() - t_start;

    // Several GPU indexes may search at once (one thread per device in a
    // sharded index): their additions to the global counters must not race.
    static std::mutex global_stats_mutex;
    std::lock_guard<std::mutex> stats_lock(global_stats_mutex);
    faiss::indexIVF_stats.nq += n;
    faiss::indexIVF_stats.nlist += n_visited;
    faiss::indexIVF_stats.ndis += n_fine;
    faiss::indexIVF_stats.quantization_time += timing.coarse_ms;
    faiss::indexIVF_stats.search_time += timing.total_ms;
    indexIVFGMM_stats.nq += n;
    indexIVFGMM_stats.ncoarse_distances += size_t(n) * nl;
    indexIVFGMM_stats.nfine_distances += n_fine;
    indexIVFGMM_stats.nentries_scanned += n_scanned;
    indexIVFGMM_stats.nduplicates_skipped += n_dups;
    indexIVFGMM_stats.nlists_probed += n_visited;
    if (verbose || im.config.verbose) {
        printf(
            "GpuIndexIVFGMM::search: %" PRId64 " queries, k=%" PRId64
            ", nprobe=%d, %d tiles of <= %" PRId64
            " queries; coarse %.2f ms, scan %.2f ms (%.1f GB/s), select "
            "%.2f ms, total %.2f ms\n",
            int64_t(n),
            int64_t(k),
            np,
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
        std::vector<float> vectors = lists.list_vectors(l);
        std::vector<int32_t> records = lists.list_records(l);
        size_t size = ids.size(), j = 0;
        // swap-with-last removal, as IndexIVFGMM::remove_ids does
        while (j < size) {
            if (!sel.is_member(ids[j])) {
                j++;
                continue;
            }
            // the copy in the smallest of the vector's lists counts it
            bool canonical = true;
            for (int t = 0; t < w && records[j * w + t] >= 0; t++) {
                canonical = canonical && size_t(records[j * w + t]) > l;
            }
            removed_vectors += canonical ? 1 : 0;
            size--;
            if (j < size) {
                ids[j] = ids[size];
                std::copy_n(
                    vectors.data() + size * d, d, vectors.data() + j * d);
                std::copy_n(
                    records.data() + size * w, w, records.data() + j * w);
            }
        }
        lists.set_list(
            l, size, vectors.data(), ids.data(), records.data(), false);
    }
    lists.update_device_arrays();
    ntotal -= removed_vectors;
    impl_->id_locations.reset();
    return removed_vectors;
}

void GpuIndexIVFGMM::reconstruct(idx_t key, float* recons) const {
    DeviceScope scope(impl_->config.device);
    if (!impl_->id_locations) {
        auto built = std::make_shared<std::unordered_map<idx_t, uint64_t>>();
        built->reserve(size_t(ntotal));
        for (size_t l = 0; l < nlist; l++) {
            const std::vector<idx_t> ids = impl_->lists->list_ids(l);
            for (size_t j = 0; j < ids.size(); j++) {
                built->emplace(ids[j], faiss::lo_build(l, j));
            }
        }
        impl_->id_locations = built;
    }
    const auto it = impl_->id_locations->find(key);
    FAISS_THROW_IF_NOT_FMT(
        it != impl_->id_locations->end(),
        "GpuIndexIVFGMM::reconstruct: no vector with id %" PRId64,
        int64_t(key));
    impl_->lists->copy_vector(
        faiss::lo_listno(it->second), faiss::lo_offset(it->second), recons);
}

/*************************************************************
 * parameters, accessors
 *************************************************************/

void GpuIndexIVFGMM::set_parameters(const std::string& description) {
    // train_device has no meaning here: train() always runs on the GPU
    size_t start = 0;
    while (start <= description.size()) {
        size_t end = description.find(',', start);
        if (end == std::string::npos) {
            end = description.size();
        }
        const std::string token = description.substr(start, end - start);
        const size_t eq = token.find('=');
        const std::string key = token.substr(0, eq);
        const size_t b = key.find_first_not_of(" \t");
        const size_t e = key.find_last_not_of(" \t");
        FAISS_THROW_IF_NOT_FMT(
            b == std::string::npos ||
                key.substr(b, e - b + 1) != "train_device",
            "GpuIndexIVFGMM::set_parameters: '%s': train_device is not "
            "a GPU index parameter (train() runs on the GPU)",
            token.c_str());
        start = end + 1;
    }
    // the CPU index parses and validates every other key the same way
    IndexIVFGMM& parser = *impl_->shadow;
    parser.nprobe = nprobe;
    parser.max_codes = max_codes;
    parser.probe_order = probe_order;
    parser.posterior_mass = posterior_mass;
    parser.mass_temperature = mass_temperature;
    parser.distance_ratio = distance_ratio;
    parser.prune_margin = 0;
    parser.min_expected_hits = 0;
    parser.spill = spill;
    parser.set_parameters(description);
    const float margin = parser.prune_margin;
    const float hits = parser.min_expected_hits;
    parser.prune_margin = 0;
    parser.min_expected_hits = 0;
    FAISS_THROW_IF_NOT_FMT(
        margin == 0,
        "GpuIndexIVFGMM::set_parameters: prune_margin=%g is not "
        "supported on the GPU (it needs the sequential CPU scan)",
        margin);
    FAISS_THROW_IF_NOT_FMT(
        hits == 0,
        "GpuIndexIVFGMM::set_parameters: min_expected_hits=%g is not "
        "supported on the GPU (it needs the sequential CPU scan)",
        hits);
    nprobe = parser.nprobe;
    max_codes = parser.max_codes;
    probe_order = parser.probe_order;
    posterior_mass = parser.posterior_mass;
    mass_temperature = parser.mass_temperature;
    distance_ratio = parser.distance_ratio;
    spill = parser.spill;
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
    list_length(list);
    DeviceScope scope(impl_->config.device);
    return impl_->lists->list_vectors(size_t(list));
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
