/**
 * IndexIVFGMM: every FAISS entry point of one class, as faiss/IndexIVF.cpp
 * is (hence the length, ~1300 lines): construction and training, adding,
 * the searches (coarse_probe and DedupScan do the work), maintenance
 * (remove, update, merge, subsets, reconstruction) and the delegation to
 * the code index. The rules themselves live in the shared modules
 * (IVFGMMParameters, SpillRecords, ListAssignment, CoarseProbe,
 * impl/DedupScan, impl/ListPruning).
 */

#include <faiss_gmm/IndexIVFGMM.h>

#include <omp.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <typeinfo>
#include <unordered_set>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/utils.h>
#if FAISS_GMM_HAS_SEARCH1
#include <faiss/impl/ResultHandler.h>
#endif

#include <faiss_gmm/CoarseProbe.h>
#include <faiss_gmm/ListAssignment.h>
#include <faiss_gmm/impl/AddProgress.h>
#include <faiss_gmm/impl/ClassName.h>
#include <faiss_gmm/impl/DedupScan.h>
#include <faiss_gmm/impl/FastScanCodes.h>
#include <faiss_gmm/impl/GmmScoring.h>
#include <faiss_gmm/impl/ListPruning.h>

#ifdef FAISS_GMM_WITH_GPU
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#endif

namespace faiss_gmm {

namespace {

using HeapForL2 = faiss::CMax<float, idx_t>;

/// Vectors per block in add(): bounds the temporary memory of encoding.
constexpr idx_t kAddBlockSize = 65536;
/// Vectors per encode_vectors call of add(), one OpenMP thread each.
constexpr idx_t kEncodePiece = 1024;
/// Queries per block in search(): bounds the coarse buffers.
constexpr idx_t kSearchBlockSize = 16384;

/// Throws naming the first non-finite value of x (n vectors of dimension d).
constexpr auto check_finite = impl::check_finite_vectors;

/// Validates codes_index and returns its quantizer, which the IndexIVFGMM
/// being constructed takes over.
faiss::Index* take_quantizer(faiss::IndexIVF* codes) {
    FAISS_THROW_IF_NOT_MSG(codes, "IndexIVFGMM: codes_index is null");
    FAISS_THROW_IF_NOT_FMT(
        codes->metric_type == faiss::METRIC_L2,
        "IndexIVFGMM: codes_index has metric_type=%d (L2 only)",
        int(codes->metric_type));
    FAISS_THROW_IF_NOT_FMT(
        codes->ntotal == 0,
        "IndexIVFGMM: codes_index holds %" PRId64 " vectors (must be empty)",
        int64_t(codes->ntotal));
    FAISS_THROW_IF_NOT_FMT(
        codes->nlist >= 1 &&
            codes->nlist <= size_t(std::numeric_limits<int32_t>::max()),
        "IndexIVFGMM: nlist=%zu must be in [1, 2^31)",
        codes->nlist);
    FAISS_THROW_IF_NOT_FMT(
        !impl::is_unsupported_fast_scan(*codes),
        "IndexIVFGMM: codes_index is a %s, a fast-scan code other than PQ "
        "(IndexIVFPQFastScan): FAISS scans it only in its interleaved "
        "blocks, with per-vector data that IndexIVFGMM's scan cannot read",
        impl::class_name(*codes).c_str());
    const auto* flat = dynamic_cast<const faiss::IndexFlat*>(codes->quantizer);
    FAISS_THROW_IF_NOT_MSG(
        flat && flat->metric_type == faiss::METRIC_L2 && codes->own_fields &&
            (flat->ntotal == 0 || size_t(flat->ntotal) == codes->nlist),
        "IndexIVFGMM: codes_index must own an L2 IndexFlat quantizer, empty "
        "or holding nlist means (as faiss::index_factory builds it)");
    return codes->quantizer;
}

/// take_quantizer for the constructor, which owns codes even when it
/// throws.
faiss::Index* take_quantizer_or_delete(faiss::IndexIVF* codes) {
    try {
        return take_quantizer(codes);
    } catch (...) {
        delete codes;
        throw;
    }
}

/// An IndexIVFFlat over a new IndexFlatL2: the default code.
faiss::IndexIVF* make_flat_codes(int d, size_t nlist) {
    FAISS_THROW_IF_NOT_FMT(d >= 1, "IndexIVFGMM: d=%d must be >= 1", d);
    FAISS_THROW_IF_NOT_FMT(
        nlist >= 1 && nlist <= size_t(std::numeric_limits<int32_t>::max()),
        "IndexIVFGMM: nlist=%zu must be in [1, 2^31)",
        nlist);
    auto* codes = new faiss::IndexIVFFlat(
        new faiss::IndexFlatL2(d), size_t(d), nlist, faiss::METRIC_L2);
    codes->own_fields = true;
    return codes;
}

/// Whether a code has nothing to train besides the coarse quantizer.
bool code_needs_no_training(const faiss::IndexIVF& codes) {
    return typeid(codes) == typeid(faiss::IndexIVFFlat);
}

/**
 * What the dedup scans of one call read: the pruning rules of the call's
 * parameters and the scan context pointing at them and at the index. The
 * rules need the squared L2 distances to the means in L2 probe order
 * (coarse_is_l2); without them the lists are scanned unpruned.
 */
struct CallScan {
    impl::BisectorPruner bisector;
    impl::HitModelPruner hit_model;
    impl::ScanContext ctx;

    CallScan(
        const IndexIVFGMM& index,
        const SearchParametersIVFGMM& p,
        bool coarse_is_l2)
        : bisector{coarse_is_l2 ? p.prune_margin : 0.0f, index.d, index.gmm.means.data()},
          hit_model(
                  coarse_is_l2 ? p.min_expected_hits : 0.0f,
                  index.gmm,
                  index.invlists) {
        ctx.invlists = index.invlists;
        ctx.records = &index.spill_records;
        ctx.code_size = index.code_size;
        ctx.d = index.d;
        ctx.means = index.gmm.means.data();
        ctx.coarse_is_l2 = coarse_is_l2;
        ctx.sel = p.sel;
        ctx.max_codes = p.max_codes;
        ctx.bisector = &bisector;
        ctx.hit_model = &hit_model;
    }
    CallScan(const CallScan&) = delete;
    CallScan& operator=(const CallScan&) = delete;
};

} // namespace

/*************************************************************
 * construction, training
 *************************************************************/

IndexIVFGMM::IndexIVFGMM(
    int d, size_t nlist, const IVFGMMBuildParameters& build_params)
    : IndexIVFGMM(make_flat_codes(d, nlist), build_params) {}

IndexIVFGMM::IndexIVFGMM(
    faiss::IndexIVF* codes, const IVFGMMBuildParameters& build_params_in)
    : faiss::IndexIVF(
          take_quantizer_or_delete(codes),
          size_t(codes->d),
          codes->nlist,
          codes->code_size,
          faiss::METRIC_L2),
      gmm(codes->d, int(codes->nlist), build_params_in.gmm.covariance),
      build_params(build_params_in) {
    std::unique_ptr<faiss::IndexIVF> owned(codes);
    build_params.check("IndexIVFGMM");
    adopt_codes(owned.release());
}

void IndexIVFGMM::adopt_codes(faiss::IndexIVF* codes) {
    // the quantizer becomes ours and the code index shares it; the lists
    // are ours alone (the code index's own stay empty)
    own_fields = true;
    codes->own_fields = false;
    is_trained = false;
    spill_records.reset(nlist, std::max(build_params.spill.max_assign - 1, 0));
    codes_index = codes;
    scan_view_ = std::make_unique<impl::CodeScanView>();
    invalidate_id_locations();
}

void IndexIVFGMM::reset_to(
    faiss::IndexIVF* codes, const IVFGMMBuildParameters& new_params) {
    std::unique_ptr<faiss::IndexIVF> owned(codes);
    faiss::Index* new_quantizer = take_quantizer(codes);
    new_params.check("IndexIVFGMM::reset_to");
    delete codes_index;
    codes_index = nullptr;
    if (own_fields) {
        delete quantizer;
    }
    replace_invlists(nullptr, false);
    d = codes->d;
    nlist = codes->nlist;
    code_size = codes->code_size;
    metric_type = faiss::METRIC_L2;
    ntotal = 0;
    quantizer = new_quantizer;
    invlists = new faiss::ArrayInvertedLists(nlist, code_size);
    own_invlists = true;
    direct_map.clear();
    gmm = GaussianMixture(d, int(nlist), new_params.gmm.covariance);
    build_params = new_params;
    search_options = IVFGMMSearchOptions();
    nprobe = 1;
    max_codes = 0;
    adopt_codes(owned.release());
}

IndexIVFGMM::IndexIVFGMM() = default;

IndexIVFGMM::~IndexIVFGMM() {
    delete codes_index;
}

const faiss::IndexIVF& IndexIVFGMM::codes() const {
    FAISS_THROW_IF_NOT_MSG(codes_index, "IndexIVFGMM: no codes_index");
    FAISS_THROW_IF_NOT_MSG(
        codes_index->quantizer == quantizer,
        "IndexIVFGMM: the quantizer was replaced behind the index "
        "(codes_index no longer shares it)");
    return *codes_index;
}

const faiss::IndexIVF& IndexIVFGMM::scan_codes() const {
    const faiss::IndexIVF& code = codes();
    FAISS_THROW_IF_NOT_MSG(scan_view_, "IndexIVFGMM: no code scan view");
    return scan_view_->scan_index(code);
}

void IndexIVFGMM::check_usable(const char* who) const {
    FAISS_THROW_IF_NOT_FMT(
        metric_type == faiss::METRIC_L2,
        "%s: metric_type=%d is not supported (L2 only)",
        who,
        int(metric_type));
    FAISS_THROW_IF_NOT_FMT(
        quantizer && invlists && codes_index,
        "%s: index has no quantizer, inverted lists or codes_index",
        who);
    codes();
    FAISS_THROW_IF_NOT_FMT(
        spill_records.nlist() == nlist,
        "%s: spill records cover %zu lists, nlist=%zu",
        who,
        spill_records.nlist(),
        nlist);
}

void IndexIVFGMM::check_lists_in_sync(const char* who) const {
    spill_records.check_in_sync(
        [this](size_t l) { return invlists->list_size(l); }, who);
}

void IndexIVFGMM::train(idx_t n, const float* x) {
    check_usable("IndexIVFGMM::train");
    FAISS_THROW_IF_NOT_FMT(
        n >= idx_t(nlist),
        "IndexIVFGMM::train: n=%" PRId64
        " training vectors, need at least nlist=%zu",
        int64_t(n),
        nlist);
    FAISS_THROW_IF_NOT_FMT(
        nentries() == 0,
        "IndexIVFGMM::train: the index holds %zu entries; reset() it "
        "before training again",
        nentries());
    build_params.check("IndexIVFGMM::train");
    check_finite(n, d, x, "IndexIVFGMM::train");

#ifdef FAISS_GMM_WITH_GPU
    const bool gpu_usable = gpu::gpu_is_available(0);
    const char* no_gpu_reason = "no usable CUDA device";
#else
    const bool gpu_usable = false;
    const char* no_gpu_reason = "faiss_gmm was built without GPU support";
#endif
    const TrainDevice device = build_params.train_device;
    FAISS_THROW_IF_NOT_FMT(
        device != TrainDevice::Gpu || gpu_usable,
        "IndexIVFGMM::train: train_device=gpu but %s",
        no_gpu_reason);
    const bool on_gpu =
        gpu_usable &&
        (device == TrainDevice::Gpu ||
         (device == TrainDevice::Auto &&
          auto_device_may_train_on_gpu(build_params.gmm.covariance)));

    GmmParameters params = build_params.gmm;
    params.verbose = params.verbose || verbose;
    if (verbose) {
        printf(
            "IndexIVFGMM::train: fitting a %s GMM, %zu components, on "
            "%" PRId64 " vectors in %dD (%s)\n",
            covariance_type_name(params.covariance),
            nlist,
            int64_t(n),
            d,
            on_gpu ? "GPU" : "CPU");
    }
    const double t0 = faiss::getmillisecs();
    GaussianMixture model(d, int(nlist), params.covariance);
    if (on_gpu) {
#ifdef FAISS_GMM_WITH_GPU
        gpu::train_gmm_gpu(&model, n, x, params);
#endif
    } else {
        model.train(n, x, params);
    }
    install_model(model);
    train_codes(n, x);
    if (verbose) {
        printf(
            "IndexIVFGMM::train: done in %.2f s (%zu EM iterations)\n",
            (faiss::getmillisecs() - t0) / 1000,
            model.iteration_stats.size());
    }
}

void IndexIVFGMM::train_codes(idx_t n, const float* x) {
    check_usable("IndexIVFGMM::train_codes");
    FAISS_THROW_IF_NOT_MSG(
        gmm.is_trained, "IndexIVFGMM::train_codes: the model is not trained");
    FAISS_THROW_IF_NOT_FMT(
        nentries() == 0,
        "IndexIVFGMM::train_codes: the index holds %zu entries; reset() it "
        "first",
        nentries());
    if (code_needs_no_training(*codes_index)) {
        codes_index->is_trained = true;
    } else {
        FAISS_THROW_IF_NOT_FMT(
            n >= 1 && x,
            "IndexIVFGMM::train_codes: the %s code needs training vectors "
            "(n=%" PRId64 ")",
            impl::class_name(*codes_index).c_str(),
            int64_t(n));
        check_finite(n, d, x, "IndexIVFGMM::train_codes");
        const double t0 = faiss::getmillisecs();
        codes_index->verbose = verbose;
        // The quantizer holds the model's nlist means: FAISS trains only
        // the code's own parameters, on residuals to the nearest mean.
        codes_index->train(n, x);
        if (verbose) {
            printf(
                "IndexIVFGMM::train_codes: code trained on %" PRId64
                " vectors in %.2f s\n",
                int64_t(n),
                (faiss::getmillisecs() - t0) / 1000);
        }
    }
    is_trained = gmm.is_trained && codes_index->is_trained;
}

#if FAISS_GMM_HAS_TRAIN_ENCODER
void IndexIVFGMM::train_encoder(idx_t n, const float* x, const idx_t* assign) {
    check_usable("IndexIVFGMM::train_encoder");
    codes_index->train_encoder(n, x, assign);
}

idx_t IndexIVFGMM::train_encoder_num_vectors() const {
    return codes().train_encoder_num_vectors();
}
#else
void IndexIVFGMM::train_residual(idx_t n, const float* x) {
    check_usable("IndexIVFGMM::train_residual");
    codes_index->train_residual(n, x);
}
#endif

void IndexIVFGMM::set_gmm(const GaussianMixture& model) {
    check_usable("IndexIVFGMM::set_gmm");
    FAISS_THROW_IF_NOT_FMT(
        model.d == d,
        "IndexIVFGMM::set_gmm: model d=%d, index d=%d",
        model.d,
        d);
    FAISS_THROW_IF_NOT_FMT(
        model.k == int(nlist),
        "IndexIVFGMM::set_gmm: model k=%d, index nlist=%zu",
        model.k,
        nlist);
    FAISS_THROW_IF_NOT_MSG(
        model.is_trained, "IndexIVFGMM::set_gmm: model is not trained");
    FAISS_THROW_IF_NOT_FMT(
        nentries() == 0,
        "IndexIVFGMM::set_gmm: the index holds %zu entries; reset() "
        "it first",
        nentries());
    model.check_consistency();
    install_model(model);
    if (code_needs_no_training(*codes_index)) {
        codes_index->is_trained = true;
    }
    is_trained = codes_index->is_trained;
}

void IndexIVFGMM::install_model(const GaussianMixture& model) {
    gmm = model;
    quantizer->reset();
    quantizer->add(idx_t(nlist), gmm.means.data());
    quantizer->is_trained = true;
    is_trained = false;
}

/*************************************************************
 * adding
 *************************************************************/

void IndexIVFGMM::assign_lists(idx_t n, const float* x, idx_t* lists) const {
    check_usable("IndexIVFGMM::assign_lists");
    FAISS_THROW_IF_NOT_MSG(
        gmm.is_trained, "IndexIVFGMM::assign_lists: index is not trained");
    if (assigner_) {
        build_params.spill.check("IndexIVFGMM::assign_lists");
        assigner_->assign(gmm, *quantizer, build_params.spill, n, x, lists);
    } else {
        faiss_gmm::assign_lists(
            gmm, *quantizer, build_params.spill, n, x, lists);
    }
}

void IndexIVFGMM::add_assigned(
    idx_t n,
    const float* x,
    const idx_t* xids,
    idx_t first_sequential_id,
    const idx_t* lists,
    int m) {
    const faiss::IndexIVF& code = codes();
    const size_t cs = code_size;
    // Each copy a is encoded against its own list lists[i * m + a], at
    // encoded[(a * n + i) * cs]; copies in no list (-1) are not encoded.
    // The code's encode_vectors runs on pieces of kEncodePiece vectors, one
    // thread each: FAISS encoders have serial parts (IndexIVFPQ computes
    // the residuals on one thread) that would otherwise bound the rate.
    std::vector<uint8_t> encoded(size_t(n) * m * cs);
    const idx_t pieces = (n + kEncodePiece - 1) / kEncodePiece;
    std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic) if (pieces * m > 1)
    for (int64_t t = 0; t < int64_t(pieces) * m; t++) {
        const int a = int(t / pieces);
        const idx_t i0 = (t % pieces) * kEncodePiece;
        const idx_t nb = std::min(kEncodePiece, n - i0);
        try {
            std::vector<idx_t> rows, column;
            for (idx_t i = i0; i < i0 + nb; i++) {
                const idx_t l = lists[int64_t(i) * m + a];
                if (l >= 0) {
                    rows.push_back(i);
                    column.push_back(l);
                }
            }
            uint8_t* out = encoded.data() + (size_t(a) * n + i0) * cs;
            if (rows.size() == size_t(nb)) {
                code.encode_vectors(
                    nb, x + int64_t(i0) * d, column.data(), out);
            } else if (!rows.empty()) {
                // the copies in a list, gathered, encoded and scattered
                const size_t nr = rows.size();
                std::vector<float> xs(nr * d);
                for (size_t j = 0; j < nr; j++) {
                    std::copy_n(x + int64_t(rows[j]) * d, d, &xs[j * d]);
                }
                std::vector<uint8_t> piece(nr * cs);
                code.encode_vectors(
                    idx_t(nr), xs.data(), column.data(), piece.data());
                for (size_t j = 0; j < nr; j++) {
                    std::copy_n(&piece[j * cs], cs, out + (rows[j] - i0) * cs);
                }
            }
        } catch (...) {
#pragma omp critical(faiss_gmm_encode_failure)
            if (!failure) {
                failure = std::current_exception();
            }
        }
    }
    if (failure) {
        std::rethrow_exception(failure);
    }
    size_t n_entries = 0, n_vectors = 0;
#pragma omp parallel reduction(+ : n_entries, n_vectors)
    {
        const int nt = omp_get_num_threads();
        const int rank = omp_get_thread_num();
        // each thread owns the lists l with l % nt == rank, so list order
        // follows the input order whatever the thread count
        for (idx_t i = 0; i < n; i++) {
            const idx_t* li = lists + int64_t(i) * m;
            if (rank == 0 && li[0] >= 0) {
                n_vectors++;
            }
            for (int a = 0; a < m; a++) {
                const idx_t l = li[a];
                if (l < 0 || l % nt != rank) {
                    continue;
                }
                const idx_t id = xids ? xids[i] : first_sequential_id + i;
                invlists->add_entry(
                    l, id, encoded.data() + (size_t(a) * n + i) * cs);
                spill_records.append_record(li, m, a);
                n_entries++;
            }
        }
    }
    ntotal += n_vectors;
    spill_records.nentries += n_entries;
}

void IndexIVFGMM::set_assigner(std::shared_ptr<ListAssigner> assigner) {
    assigner_ = std::move(assigner);
}

void IndexIVFGMM::add_with_ids(idx_t n, const float* x, const idx_t* xids) {
    check_usable("IndexIVFGMM::add_with_ids");
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "IndexIVFGMM::add_with_ids: index is not trained");
    build_params.spill.check("IndexIVFGMM::add_with_ids");
    check_finite(n, d, x, "IndexIVFGMM::add_with_ids");
    if (n == 0) {
        return;
    }
    check_lists_in_sync("IndexIVFGMM::add_with_ids");
    const double t0 = faiss::getmillisecs();
    const int m = build_params.spill.max_assign;
    spill_records.widen(
        m - 1, [this](size_t l) { return invlists->list_size(l); });
    invalidate_id_locations();
    const idx_t first_id = idx_t(ntotal);
    const size_t nentries0 = nentries();

    CpuListAssigner cpu_assigner;
    ListAssigner& assigner =
        assigner_ ? *assigner_ : static_cast<ListAssigner&>(cpu_assigner);
    const idx_t requested = assigner.batch_size();
    FAISS_THROW_IF_NOT_FMT(
        requested >= 1,
        "IndexIVFGMM::add_with_ids: assigner %s has batch_size %" PRId64
        " (must be >= 1)",
        assigner.name().c_str(),
        int64_t(requested));
    const idx_t bs = std::min(n, requested);
    const bool overlap =
        assigner.overlaps_encoding(gmm, build_params.spill) && n > bs;
    std::vector<idx_t> lists[2];
    lists[0].resize(size_t(bs) * m);
    if (overlap) {
        lists[1].resize(size_t(bs) * m);
    }
    // Milliseconds spent in assign() and in encoding + storing, and how
    // long encoding waited for an overlapped assignment.
    double assign_ms = 0, encode_ms = 0, wait_ms = 0;
    const auto assign_batch = [&](idx_t i0, idx_t* out) {
        const double a0 = faiss::getmillisecs();
        assigner.assign(
            gmm,
            *quantizer,
            build_params.spill,
            std::min(bs, n - i0),
            x + int64_t(i0) * d,
            out);
        return faiss::getmillisecs() - a0;
    };
    impl::AddProgress progress(verbose, "IndexIVFGMM::add_with_ids", n);
    // Encodes and stores batch i0 from its lists; returns when it ended.
    const auto encode_batch = [&](idx_t i0, const idx_t* batch_lists) {
        const double e0 = faiss::getmillisecs();
        add_assigned_blocks(
            std::min(bs, n - i0),
            x + int64_t(i0) * d,
            xids ? xids + i0 : nullptr,
            first_id + i0,
            batch_lists,
            m,
            [&](idx_t done) { progress.update(i0 + done); });
        const double e1 = faiss::getmillisecs();
        encode_ms += e1 - e0;
        return e1;
    };
    if (!overlap) {
        for (idx_t i0 = 0; i0 < n; i0 += bs) {
            assign_ms += assign_batch(i0, lists[0].data());
            encode_batch(i0, lists[0].data());
        }
    } else {
        assign_ms += assign_batch(0, lists[0].data());
        for (idx_t i0 = 0, b = 0; i0 < n; i0 += bs, b ^= 1) {
            // The helper thread assigns batch i0 + bs into lists[b ^ 1]
            // while this thread encodes batch i0 from lists[b]. The future
            // is declared after the buffers: if encoding throws, its
            // destructor waits for the helper before the buffers go.
            std::future<double> next;
            if (i0 + bs < n) {
                next = std::async(
                    std::launch::async,
                    assign_batch,
                    i0 + bs,
                    lists[b ^ 1].data());
            }
            const double e1 = encode_batch(i0, lists[b].data());
            if (next.valid()) {
                assign_ms += next.get();
                wait_ms += faiss::getmillisecs() - e1;
            }
        }
    }
    progress.finish();
    if (verbose) {
        printf(
            "IndexIVFGMM::add_with_ids: %" PRId64
            " vectors in %zu entries (spill %s, max_assign %d), "
            "replication now %.3f, %.2f s: assignment on %s %.2f s%s, "
            "encoding and storing %.2f s",
            int64_t(n),
            nentries() - nentries0,
            spill_rule_name(build_params.spill.rule),
            m,
            replication_factor(),
            (faiss::getmillisecs() - t0) / 1000,
            assigner.name().c_str(),
            assign_ms / 1000,
            overlap ? " (beside encoding)" : "",
            encode_ms / 1000);
        if (overlap) {
            printf(", %.2f s waiting for assignment", wait_ms / 1000);
        }
        printf("\n");
    }
}

void IndexIVFGMM::add_assigned_blocks(
    idx_t n,
    const float* x,
    const idx_t* xids,
    idx_t first_sequential_id,
    const idx_t* lists,
    int m,
    const std::function<void(idx_t)>& done) {
    for (idx_t i0 = 0; i0 < n; i0 += kAddBlockSize) {
        const idx_t nb = std::min(kAddBlockSize, n - i0);
        add_assigned(
            nb,
            x + int64_t(i0) * d,
            xids ? xids + i0 : nullptr,
            first_sequential_id + i0,
            lists + int64_t(i0) * m,
            m);
        done(i0 + nb);
    }
}

void IndexIVFGMM::add_core(
    idx_t n,
    const float* x,
    const idx_t* xids,
    const idx_t* coarse_idx FAISS_GMM_ADD_CORE_CONTEXT_PARAM_NO_DEFAULT) {
#if FAISS_GMM_HAS_INVERTED_LIST_CONTEXT
    (void)inverted_list_context; // array lists need no context
#endif
    check_usable("IndexIVFGMM::add_core");
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "IndexIVFGMM::add_core: index is not trained");
    FAISS_THROW_IF_NOT_MSG(coarse_idx, "IndexIVFGMM::add_core: no lists");
    for (idx_t i = 0; i < n; i++) {
        FAISS_THROW_IF_NOT_FMT(
            coarse_idx[i] >= -1 && coarse_idx[i] < idx_t(nlist),
            "IndexIVFGMM::add_core: list %" PRId64 " of vector %" PRId64
            " is not in [-1, nlist=%zu)",
            int64_t(coarse_idx[i]),
            int64_t(i),
            nlist);
    }
    check_finite(n, d, x, "IndexIVFGMM::add_core");
    check_lists_in_sync("IndexIVFGMM::add_core");
    invalidate_id_locations();
    add_assigned(n, x, xids, idx_t(ntotal), coarse_idx, 1);
}

void IndexIVFGMM::add_sa_codes(
    idx_t n, const uint8_t* codes_in, const idx_t* xids) {
    check_usable("IndexIVFGMM::add_sa_codes");
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "IndexIVFGMM::add_sa_codes: index is not trained");
    check_lists_in_sync("IndexIVFGMM::add_sa_codes");
    const size_t coarse_size = coarse_code_size();
    const size_t sa_size = coarse_size + code_size;
    std::vector<idx_t> list_of(n);
    for (idx_t i = 0; i < n; i++) {
        const idx_t l = decode_listno(codes_in + size_t(i) * sa_size);
        FAISS_THROW_IF_NOT_FMT(
            l >= 0 && l < idx_t(nlist),
            "IndexIVFGMM::add_sa_codes: code %" PRId64 " names list %" PRId64
            " (nlist=%zu)",
            int64_t(i),
            int64_t(l),
            nlist);
        list_of[i] = l;
    }
    invalidate_id_locations();
    for (idx_t i = 0; i < n; i++) {
        const idx_t id = xids ? xids[i] : idx_t(ntotal) + i;
        invlists->add_entry(
            list_of[i], id, codes_in + size_t(i) * sa_size + coarse_size);
        spill_records.append_record(&list_of[i], 1, 0);
    }
    spill_records.nentries += size_t(n);
    ntotal += n;
}

/*************************************************************
 * searching
 *************************************************************/

void IndexIVFGMM::coarse_assign(
    idx_t n,
    const float* x,
    const SearchParametersIVFGMM& params,
    idx_t* assign,
    float* coarse_dis) const {
    check_usable("IndexIVFGMM::coarse_assign");
    FAISS_THROW_IF_NOT_MSG(
        gmm.is_trained, "IndexIVFGMM::coarse_assign: index is not trained");
    coarse_probe(gmm, *quantizer, params, n, x, assign, coarse_dis);
}

SearchParametersIVFGMM IndexIVFGMM::search_defaults() const {
    return SearchParametersIVFGMM(nprobe, max_codes, search_options);
}

void IndexIVFGMM::set_search_defaults(const SearchParametersIVFGMM& p) {
    p.check("IndexIVFGMM::set_search_defaults");
    FAISS_THROW_IF_NOT_MSG(
        !p.sel && !p.precomputed_distances,
        "IndexIVFGMM::set_search_defaults: sel and precomputed_distances "
        "are per-call parameters");
    nprobe = p.nprobe;
    max_codes = p.max_codes;
    search_options = p.options();
}

SearchParametersIVFGMM IndexIVFGMM::resolve_search_parameters(
    const faiss::SearchParameters* params_in, const char* who) const {
    SearchParametersIVFGMM resolved = search_defaults();
    if (params_in) {
        const auto* ivf =
            dynamic_cast<const faiss::SearchParametersIVF*>(params_in);
        FAISS_THROW_IF_NOT_FMT(
            ivf,
            "%s: search parameters must be a SearchParametersIVF or "
            "SearchParametersIVFGMM",
            who);
        copy_ivf_search_fields(*ivf, &resolved);
        if (const auto* g =
                dynamic_cast<const SearchParametersIVFGMM*>(params_in)) {
            static_cast<IVFGMMSearchOptions&>(resolved) = g->options();
            resolved.precomputed_distances = g->precomputed_distances;
        }
    }
    resolved.check(who);
    resolved.nprobe = std::min(nlist, resolved.nprobe);
    return resolved;
}

void IndexIVFGMM::search(
    idx_t n,
    const float* x,
    idx_t k,
    float* distances,
    idx_t* labels,
    const faiss::SearchParameters* params_in) const {
    check_usable("IndexIVFGMM::search");
    FAISS_THROW_IF_NOT_FMT(
        k > 0, "IndexIVFGMM::search: k=%" PRId64 " must be > 0", int64_t(k));
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "IndexIVFGMM::search: index is not trained");
    const SearchParametersIVFGMM resolved =
        resolve_search_parameters(params_in, "IndexIVFGMM::search");
    check_finite(n, d, x, "IndexIVFGMM::search");
    const size_t np = resolved.nprobe;

    const idx_t bs = std::min<idx_t>(n, kSearchBlockSize);
    std::vector<idx_t> assign(size_t(bs) * np);
    std::vector<float> coarse_dis(size_t(bs) * np);
    faiss::IndexIVFStats ivf_stats;
    ivf_stats.reset();
    for (idx_t i0 = 0; i0 < n; i0 += bs) {
        const idx_t nb = std::min(bs, n - i0);
        const float* xb = x + int64_t(i0) * d;
        const double t0 = faiss::getmillisecs();
        coarse_probe(
            gmm,
            *quantizer,
            resolved,
            nb,
            xb,
            assign.data(),
            coarse_dis.data());
        const double t1 = faiss::getmillisecs();
        // the precomputed rows of this block's queries
        SearchParametersIVFGMM block_params = resolved;
        if (resolved.precomputed_distances) {
            block_params.precomputed_distances += size_t(i0) * size_t(ntotal);
        }
        search_preassigned(
            nb,
            xb,
            k,
            assign.data(),
            coarse_dis.data(),
            distances + int64_t(i0) * k,
            labels + int64_t(i0) * k,
            false,
            &block_params,
            &ivf_stats);
        ivf_stats.quantization_time += t1 - t0;
        ivf_stats.search_time += faiss::getmillisecs() - t0;
    }
    IndexIVFGMMStats coarse;
    coarse.ncoarse_distances = size_t(n) * nlist;
    // search_preassigned added its own counters; FAISS's go in here
    add_to_global_stats(coarse, &ivf_stats);
}

#if FAISS_GMM_HAS_SEARCH1
void IndexIVFGMM::search1(
    const float* x,
    faiss::ResultHandler& handler,
    faiss::SearchParameters* params_in) const {
    check_usable("IndexIVFGMM::search1");
    FAISS_THROW_IF_NOT_MSG(
        is_trained, "IndexIVFGMM::search1: index is not trained");
    const SearchParametersIVFGMM p =
        resolve_search_parameters(params_in, "IndexIVFGMM::search1");
    FAISS_THROW_IF_NOT_MSG(
        !p.precomputed_distances,
        "IndexIVFGMM::search1: precomputed_distances is for search only");
    check_finite(1, d, x, "IndexIVFGMM::search1");
    check_lists_in_sync("IndexIVFGMM::search1");
    std::vector<idx_t> assign(p.nprobe);
    std::vector<float> coarse_dis(p.nprobe);
    coarse_probe(gmm, *quantizer, p, 1, x, assign.data(), coarse_dis.data());
    const CallScan call(*this, p, p.probe_order == ProbeOrder::L2);
    impl::DedupScan scan(call.ctx, scan_codes(), &p);
    impl::ScanCounts counts;
    scan.scan(
        x,
        nullptr,
        assign.data(),
        coarse_dis.data(),
        p.nprobe,
        [&]() { return handler.threshold; },
        [&](float dis, idx_t, size_t, idx_t id) {
            if (dis < handler.threshold) {
                handler.add_result(dis, id);
            }
        },
        &counts);
    IndexIVFGMMStats stats = counts.to_stats(1);
    stats.ncoarse_distances += nlist;
    faiss::IndexIVFStats ivf_stats = counts.to_ivf_stats(1);
    add_to_global_stats(stats, &ivf_stats);
}
#endif

void IndexIVFGMM::search_preassigned(
    idx_t n,
    const float* x,
    idx_t k,
    const idx_t* assign,
    const float* centroid_dis,
    float* distances,
    idx_t* labels,
    bool store_pairs,
    const faiss::IVFSearchParameters* params_in,
    faiss::IndexIVFStats* stats) const {
    const char* who = "IndexIVFGMM::search_preassigned";
    check_usable(who);
    FAISS_THROW_IF_NOT_FMT(
        k > 0, "%s: k=%" PRId64 " must be > 0", who, int64_t(k));
    const SearchParametersIVFGMM p = resolve_search_parameters(params_in, who);
    const size_t np = p.nprobe;
    FAISS_THROW_IF_NOT_FMT(
        !(p.sel && store_pairs),
        "%s: a selector and store_pairs cannot be combined",
        who);
    for (size_t i = 0; i < size_t(n) * np; i++) {
        FAISS_THROW_IF_NOT_FMT(
            assign[i] >= -1 && assign[i] < idx_t(nlist),
            "%s: list %" PRId64 " is not in [-1, nlist=%zu)",
            who,
            int64_t(assign[i]),
            nlist);
    }
    check_lists_in_sync(who);
    if (p.precomputed_distances) {
        for (size_t l = 0; l < nlist; l++) {
            const size_t size = invlists->list_size(l);
            if (size == 0) {
                continue;
            }
            faiss::InvertedLists::ScopedIds ids(invlists, l);
            for (size_t j = 0; j < size; j++) {
                FAISS_THROW_IF_NOT_FMT(
                    ids[j] >= 0 && ids[j] < idx_t(ntotal),
                    "%s (precomputed_distances): list %zu holds id %" PRId64
                    ", outside [0, ntotal=%" PRId64
                    "): the distance rows need sequential ids",
                    who,
                    l,
                    int64_t(ids[j]),
                    int64_t(ntotal));
            }
        }
    }
    const CallScan call(
        *this, p, p.probe_order == ProbeOrder::L2 && centroid_dis);
    const faiss::IndexIVF& code = scan_codes();

    impl::ScanCounts total;
    size_t nheap = 0;
#pragma omp parallel reduction(+ : nheap)
    {
        impl::DedupScan scan(call.ctx, code, &p);
        impl::ScanCounts mine;
#pragma omp for schedule(dynamic)
        for (idx_t i = 0; i < n; i++) {
            float* simi = distances + int64_t(i) * k;
            idx_t* idxi = labels + int64_t(i) * k;
            faiss::heap_heapify<HeapForL2>(k, simi, idxi);
            scan.scan(
                x + int64_t(i) * d,
                p.precomputed_distances
                    ? p.precomputed_distances + size_t(i) * size_t(ntotal)
                    : nullptr,
                assign + size_t(i) * np,
                centroid_dis ? centroid_dis + size_t(i) * np : nullptr,
                np,
                [&]() { return simi[0]; },
                [&](float dis, idx_t list, size_t offset, idx_t id) {
                    if (dis < simi[0]) {
                        const idx_t label =
                            store_pairs ? idx_t(faiss::lo_build(list, offset))
                                        : id;
                        faiss::heap_replace_top<HeapForL2>(
                            k, simi, idxi, dis, label);
                        nheap++;
                    }
                },
                &mine);
            faiss::heap_reorder<HeapForL2>(k, simi, idxi);
        }
#pragma omp critical
        total.add(mine);
    }
    if (stats) {
        stats->add(total.to_ivf_stats(size_t(n), nheap));
    }
    add_to_global_stats(total.to_stats(size_t(n)), nullptr);
}

void IndexIVFGMM::range_search(
    idx_t n,
    const float* x,
    float radius,
    faiss::RangeSearchResult* result,
    const faiss::SearchParameters* params_in) const {
    const char* who = "IndexIVFGMM::range_search";
    check_usable(who);
    FAISS_THROW_IF_NOT_FMT(is_trained, "%s: index is not trained", who);
    const SearchParametersIVFGMM p = resolve_search_parameters(params_in, who);
    FAISS_THROW_IF_NOT_FMT(
        !p.precomputed_distances,
        "%s: precomputed_distances is for search only",
        who);
    check_finite(n, d, x, who);
    const double t0 = faiss::getmillisecs();
    std::vector<idx_t> assign(size_t(n) * p.nprobe);
    std::vector<float> coarse_dis(size_t(n) * p.nprobe);
    coarse_probe(gmm, *quantizer, p, n, x, assign.data(), coarse_dis.data());
    const double t1 = faiss::getmillisecs();
    faiss::IndexIVFStats ivf_stats;
    ivf_stats.reset();
    range_search_preassigned(
        n,
        x,
        radius,
        assign.data(),
        coarse_dis.data(),
        result,
        false,
        &p,
        &ivf_stats);
    ivf_stats.quantization_time += t1 - t0;
    ivf_stats.search_time += faiss::getmillisecs() - t0;
    IndexIVFGMMStats coarse;
    coarse.ncoarse_distances = size_t(n) * nlist;
    add_to_global_stats(coarse, &ivf_stats);
}

void IndexIVFGMM::range_search_preassigned(
    idx_t nx,
    const float* x,
    float radius,
    const idx_t* keys,
    const float* coarse_dis,
    faiss::RangeSearchResult* result,
    bool store_pairs,
    const faiss::IVFSearchParameters* params_in,
    faiss::IndexIVFStats* stats) const {
    const char* who = "IndexIVFGMM::range_search_preassigned";
    check_usable(who);
    FAISS_THROW_IF_NOT_FMT(result, "%s: result is null", who);
    const SearchParametersIVFGMM p = resolve_search_parameters(params_in, who);
    FAISS_THROW_IF_NOT_FMT(
        !p.precomputed_distances,
        "%s: precomputed_distances is for search only",
        who);
    FAISS_THROW_IF_NOT_FMT(
        !(p.sel && store_pairs),
        "%s: a selector and store_pairs cannot be combined",
        who);
    const size_t np = p.nprobe;
    for (size_t i = 0; i < size_t(nx) * np; i++) {
        FAISS_THROW_IF_NOT_FMT(
            keys[i] >= -1 && keys[i] < idx_t(nlist),
            "%s: list %" PRId64 " is not in [-1, nlist=%zu)",
            who,
            int64_t(keys[i]),
            nlist);
    }
    check_lists_in_sync(who);
    // the radius plays the part of the k-th neighbour distance
    const CallScan call(
        *this, p, p.probe_order == ProbeOrder::L2 && coarse_dis);
    const faiss::IndexIVF& code = scan_codes();

    impl::ScanCounts total;
#pragma omp parallel
    {
        faiss::RangeSearchPartialResult pres(result);
        impl::DedupScan scan(call.ctx, code, &p);
        impl::ScanCounts mine;
#pragma omp for schedule(dynamic)
        for (idx_t i = 0; i < nx; i++) {
            faiss::RangeQueryResult& qres = pres.new_result(i);
            scan.scan(
                x + int64_t(i) * d,
                nullptr,
                keys + size_t(i) * np,
                coarse_dis ? coarse_dis + size_t(i) * np : nullptr,
                np,
                [&]() { return radius; },
                [&](float dis, idx_t list, size_t offset, idx_t id) {
                    if (dis < radius) {
                        qres.add(
                            dis,
                            store_pairs ? idx_t(faiss::lo_build(list, offset))
                                        : id);
                    }
                },
                &mine);
        }
        pres.finalize();
#pragma omp critical
        total.add(mine);
    }
    if (stats) {
        stats->add(total.to_ivf_stats(size_t(nx)));
    }
    add_to_global_stats(total.to_stats(size_t(nx)), nullptr);
}

void IndexIVFGMM::search_and_reconstruct(
    idx_t n,
    const float* x,
    idx_t k,
    float* distances,
    idx_t* labels,
    float* recons,
    const faiss::SearchParameters* params) const {
    search(n, x, k, distances, labels, params);
    const std::shared_ptr<const IdLocations> where = id_locations();
    for (idx_t i = 0; i < n * k; i++) {
        float* out = recons + size_t(i) * d;
        size_t l = 0, offset = 0;
        if (labels[i] >= 0 && where->find(labels[i], &l, &offset)) {
            reconstruct_from_offset(int64_t(l), int64_t(offset), out);
        } else {
            std::fill(out, out + d, -1.0f); // as FAISS leaves missing rows
        }
    }
}

/*************************************************************
 * maintenance
 *************************************************************/

size_t IndexIVFGMM::remove_ids(const faiss::IDSelector& sel) {
    const char* who = "IndexIVFGMM::remove_ids";
    check_usable(who);
    FAISS_THROW_IF_NOT_FMT(
        !is_idmap_translated_selector(sel),
        "%s: called through faiss::IndexIDMap, whose remove_ids assumes "
        "that the sub-index renumbers its vectors after a removal (an IVF "
        "index keeps its ids, so the IndexIDMap would return wrong labels). "
        "IndexIVFGMM stores ids itself: use add_with_ids instead of an "
        "IndexIDMap",
        who);
    check_lists_in_sync(who);
    const int w = spill_records.width;
    std::vector<SpillRemoval> removed(nlist);
#pragma omp parallel for schedule(dynamic)
    for (size_t l = 0; l < nlist; l++) {
        const size_t size = invlists->list_size(l);
        if (size == 0) {
            continue;
        }
        faiss::InvertedLists::ScopedIds sids(invlists, l);
        const idx_t* ids = sids.get();
        removed[l] = remove_spilled_entries(
            l,
            size,
            w,
            spill_records.records[l].data(),
            [&](size_t j) { return sel.is_member(ids[j]); },
            [&](size_t dst, size_t src) {
                invlists->update_entry(
                    l,
                    dst,
                    ids[src],
                    faiss::InvertedLists::ScopedCodes(invlists, l, src).get());
            });
    }
    size_t removed_vectors = 0;
    for (size_t l = 0; l < nlist; l++) {
        if (removed[l].entries > 0) {
            const size_t size = invlists->list_size(l) - removed[l].entries;
            invlists->resize(l, size);
            spill_records.records[l].resize(size * size_t(w));
            spill_records.nentries -= removed[l].entries;
            removed_vectors += removed[l].vectors;
        }
    }
    ntotal -= removed_vectors;
    invalidate_id_locations();
    return removed_vectors;
}

void IndexIVFGMM::update_vectors(int nv, const idx_t* idx, const float* v) {
    const char* who = "IndexIVFGMM::update_vectors";
    check_usable(who);
    FAISS_THROW_IF_NOT_FMT(nv >= 0, "%s: nv=%d must be >= 0", who, nv);
    FAISS_THROW_IF_NOT_FMT(is_trained, "%s: index is not trained", who);
    check_finite(nv, d, v, who);
    const std::shared_ptr<const IdLocations> where = id_locations();
    std::unordered_set<idx_t> seen;
    for (int i = 0; i < nv; i++) {
        size_t l = 0, offset = 0;
        FAISS_THROW_IF_NOT_FMT(
            where->find(idx[i], &l, &offset),
            "%s: no vector with id %" PRId64 " to update",
            who,
            int64_t(idx[i]));
        FAISS_THROW_IF_NOT_FMT(
            seen.insert(idx[i]).second,
            "%s: id %" PRId64 " appears twice",
            who,
            int64_t(idx[i]));
    }
    faiss::IDSelectorBatch sel(nv, idx);
    remove_ids(sel);
    add_with_ids(nv, v, idx);
}

void IndexIVFGMM::reset() {
    faiss::IndexIVF::reset();
    spill_records.reset(nlist, spill_records.width);
    invalidate_id_locations();
}

std::shared_ptr<const IdLocations> IndexIVFGMM::id_locations() const {
    return id_location_cache_.get([this]() {
        return std::make_shared<const IdLocations>(
            nlist, [this](size_t l, std::vector<idx_t>& ids) {
                const size_t size = invlists->list_size(l);
                ids.resize(size);
                if (size > 0) {
                    faiss::InvertedLists::ScopedIds sids(invlists, l);
                    std::copy(sids.get(), sids.get() + size, ids.begin());
                }
            });
    });
}

void IndexIVFGMM::invalidate_id_locations() {
    id_location_cache_.reset();
}

void IndexIVFGMM::reconstruct(idx_t key, float* recons) const {
    check_usable("IndexIVFGMM::reconstruct");
    size_t l = 0, offset = 0;
    FAISS_THROW_IF_NOT_FMT(
        id_locations()->find(key, &l, &offset),
        "IndexIVFGMM::reconstruct: no vector with id %" PRId64,
        int64_t(key));
    reconstruct_from_offset(int64_t(l), int64_t(offset), recons);
}

void IndexIVFGMM::reconstruct_n(idx_t i0, idx_t ni, float* recons) const {
    FAISS_THROW_IF_NOT_FMT(
        i0 >= 0 && ni >= 0,
        "IndexIVFGMM::reconstruct_n: i0=%" PRId64 ", ni=%" PRId64,
        int64_t(i0),
        int64_t(ni));
    for (idx_t i = 0; i < ni; i++) {
        reconstruct(i0 + i, recons + size_t(i) * d);
    }
}

void IndexIVFGMM::reconstruct_from_offset(
    int64_t list_no, int64_t offset, float* recons) const {
    FAISS_THROW_IF_NOT_FMT(
        list_no >= 0 && size_t(list_no) < nlist && offset >= 0 &&
            size_t(offset) < invlists->list_size(list_no),
        "IndexIVFGMM::reconstruct_from_offset: no entry %" PRId64
        " in list %" PRId64,
        offset,
        list_no);
    faiss::InvertedLists::ScopedCodes stored(invlists, list_no, offset);
    const idx_t list = idx_t(list_no);
    decode_entries(1, stored.get(), &list, recons);
}

void IndexIVFGMM::decode_entries(
    idx_t n, const uint8_t* codes_in, const idx_t* list_nos, float* x) const {
    // FAISS's standalone codes (list number, then the code) decoded by the
    // code index, whose own lists are empty (every IVF code has sa_decode),
    // or by the scan view of a fast-scan PQ
    const faiss::IndexIVF& code = scan_codes();
    const size_t coarse_size = code.coarse_code_size();
    const size_t sa_size = coarse_size + code_size;
    std::vector<uint8_t> sa_codes(size_t(n) * sa_size);
    for (idx_t i = 0; i < n; i++) {
        FAISS_THROW_IF_NOT_FMT(
            list_nos[i] >= 0 && list_nos[i] < idx_t(nlist),
            "IndexIVFGMM: cannot decode code %" PRId64 " of list %" PRId64
            " (nlist=%zu)",
            int64_t(i),
            int64_t(list_nos[i]),
            nlist);
        uint8_t* sa = sa_codes.data() + size_t(i) * sa_size;
        code.encode_listno(list_nos[i], sa);
        std::copy(
            codes_in + size_t(i) * code_size,
            codes_in + size_t(i + 1) * code_size,
            sa + coarse_size);
    }
    code.sa_decode(n, sa_codes.data(), x);
}

void IndexIVFGMM::check_compatible_for_merge(
    const faiss::Index& other_index) const {
    const char* who = "IndexIVFGMM::merge_from";
    check_usable(who);
    const auto* other = dynamic_cast<const IndexIVFGMM*>(&other_index);
    FAISS_THROW_IF_NOT_FMT(
        other, "%s: the other index is not an IndexIVFGMM", who);
    FAISS_THROW_IF_NOT_FMT(
        other != this, "%s: cannot merge an index into itself", who);
    other->check_usable("IndexIVFGMM::merge_from (other)");
    FAISS_THROW_IF_NOT_FMT(
        other->d == d && other->nlist == nlist,
        "%s: other d=%d nlist=%zu, this d=%d nlist=%zu",
        who,
        other->d,
        other->nlist,
        d,
        nlist);
    FAISS_THROW_IF_NOT_FMT(
        is_trained && other->is_trained,
        "%s: both indexes must be trained",
        who);
    for (size_t c = 0; c < nlist; c++) {
        FAISS_THROW_IF_NOT_FMT(
            std::equal(
                gmm.means.begin() + c * d,
                gmm.means.begin() + (c + 1) * d,
                other->gmm.means.begin() + c * d),
            "%s: mean of component %zu differs between the indexes "
            "(different models)",
            who,
            c);
    }
    FAISS_THROW_IF_NOT_FMT(
        typeid(*codes_index) == typeid(*other->codes_index) &&
            code_size == other->code_size,
        "%s: the codes differ (%s, %zu bytes vs %s, %zu bytes)",
        who,
        impl::class_name(*codes_index).c_str(),
        code_size,
        impl::class_name(*other->codes_index).c_str(),
        other->code_size);
    codes().check_compatible_for_merge(other->codes());
}

void IndexIVFGMM::merge_from(faiss::Index& other_index, idx_t add_id) {
    check_compatible_for_merge(other_index);
    auto* other = dynamic_cast<IndexIVFGMM*>(&other_index);
    other->check_lists_in_sync("IndexIVFGMM::merge_from (other)");
    check_lists_in_sync("IndexIVFGMM::merge_from");
    spill_records.widen(
        std::max(spill_records.width, other->spill_records.width),
        [this](size_t l) { return invlists->list_size(l); });
#pragma omp parallel for schedule(dynamic)
    for (size_t l = 0; l < nlist; l++) {
        const size_t n_other = other->invlists->list_size(l);
        if (n_other == 0) {
            continue;
        }
        faiss::InvertedLists::ScopedIds sids(other->invlists, l);
        faiss::InvertedLists::ScopedCodes scodes(other->invlists, l);
        std::vector<idx_t> shifted(sids.get(), sids.get() + n_other);
        for (idx_t& id : shifted) {
            id += add_id;
        }
        invlists->add_entries(l, n_other, shifted.data(), scodes.get());
    }
    spill_records.append_all(other->spill_records);
    ntotal += other->ntotal;
    invalidate_id_locations();
    other->reset();
}

void IndexIVFGMM::copy_subset_to(
    faiss::IndexIVF& other_index,
    CopySubsetType subset_type,
    idx_t a1,
    idx_t a2) const {
    const char* who = "IndexIVFGMM::copy_subset_to";
    auto* other = dynamic_cast<IndexIVFGMM*>(&other_index);
    FAISS_THROW_IF_NOT_FMT(
        other, "%s: the other index must be an IndexIVFGMM", who);
    check_compatible_for_merge(*other);
    FAISS_THROW_IF_NOT_FMT(
        int(subset_type) == 0 || int(subset_type) == 1,
        "%s: subset_type=%d is not supported (0: id range, 1: id modulo); "
        "list positions would split a vector's copies",
        who,
        int(subset_type));
    FAISS_THROW_IF_NOT_FMT(
        int(subset_type) == 0 || a1 > 0,
        "%s: subset_type 1 needs a1 > 0 (a1=%" PRId64 ")",
        who,
        int64_t(a1));
    check_lists_in_sync(who);
    other->check_lists_in_sync(who);
    const auto selected = [&](idx_t id) {
        return int(subset_type) == 0 ? (id >= a1 && id < a2) : (id % a1 == a2);
    };
    other->spill_records.widen(
        std::max(spill_records.width, other->spill_records.width),
        [other](size_t l) { return other->invlists->list_size(l); });
    const int w = spill_records.width, ow = other->spill_records.width;
    size_t copied_entries = 0, copied_vectors = 0;
    for (size_t l = 0; l < nlist; l++) {
        const size_t size = invlists->list_size(l);
        if (size == 0) {
            continue;
        }
        faiss::InvertedLists::ScopedIds ids(invlists, l);
        faiss::InvertedLists::ScopedCodes codes_l(invlists, l);
        for (size_t j = 0; j < size; j++) {
            if (!selected(ids[j])) {
                continue;
            }
            other->invlists->add_entry(
                l, ids[j], codes_l.get() + j * code_size);
            const int32_t* rec = spill_records.record(l, j);
            std::vector<int32_t>& dst = other->spill_records.records[l];
            const size_t start = dst.size();
            dst.resize(start + size_t(ow), -1);
            std::copy(rec, rec + w, dst.begin() + start);
            copied_entries++;
            copied_vectors += is_canonical_copy(l, rec, w) ? 1 : 0;
        }
    }
    other->spill_records.nentries += copied_entries;
    other->ntotal += copied_vectors;
    other->invalidate_id_locations();
}

/*************************************************************
 * the code
 *************************************************************/

void IndexIVFGMM::encode_vectors(
    idx_t n,
    const float* x,
    const idx_t* list_nos,
    uint8_t* codes_out,
    bool include_listnos) const {
    codes().encode_vectors(n, x, list_nos, codes_out, include_listnos);
}

#if FAISS_GMM_HAS_DECODE_VECTORS
void IndexIVFGMM::decode_vectors(
    idx_t n, const uint8_t* codes_in, const idx_t* list_nos, float* x) const {
    decode_entries(n, codes_in, list_nos, x);
}
#endif

void IndexIVFGMM::sa_decode(idx_t n, const uint8_t* bytes, float* x) const {
    scan_codes().sa_decode(n, bytes, x);
}

faiss::InvertedListScanner* IndexIVFGMM::get_InvertedListScanner(
    bool store_pairs,
    const faiss::IDSelector* sel
#if FAISS_GMM_HAS_SCANNER_PARAMS
    ,
    const faiss::IVFSearchParameters* params
#endif
) const {
#if FAISS_GMM_HAS_SCANNER_PARAMS
    return scan_codes().get_InvertedListScanner(store_pairs, sel, params);
#else
    return scan_codes().get_InvertedListScanner(store_pairs, sel);
#endif
}

/*************************************************************
 * statistics, parameters
 *************************************************************/

double IndexIVFGMM::replication_factor() const {
    return ntotal == 0 ? 1.0 : double(nentries()) / double(ntotal);
}

double IndexIVFGMM::imbalance_factor() const {
    if (nentries() == 0 || !invlists) {
        return 1.0;
    }
    double sum = 0, sum_sq = 0;
    for (size_t l = 0; l < nlist; l++) {
        const double size = double(invlists->list_size(l));
        sum += size;
        sum_sq += size * size;
    }
    return sum_sq * double(nlist) / (sum * sum);
}

void IndexIVFGMM::set_search_parameters(const std::string& description) {
    SearchParametersIVFGMM p = search_defaults();
    parse_search_parameters(
        description, &p, "IndexIVFGMM::set_search_parameters");
    set_search_defaults(p);
}

void IndexIVFGMM::set_build_parameters(const std::string& description) {
    IVFGMMBuildParameters p = build_params;
    parse_build_parameters(
        description, &p, "IndexIVFGMM::set_build_parameters");
    build_params = p;
}

} // namespace faiss_gmm
