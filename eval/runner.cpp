/**
 * The evaluation run of faiss_gmm_eval (runner.h): build each index, walk
 * nprobe, count distances and recall, then the tables. ~800 lines: the run
 * and its ablation rows share one walk; GPU placement is gpu_eval.h's.
 */

#include <eval/runner.h>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <typeinfo>

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissAssert.h>

#include <datasets/groundtruth.h>
#include <faiss_gmm/index_factory.h>

#include <eval/gpu_eval.h>
#include <eval/index_chain.h>
#include <eval/recall.h>

namespace faiss_gmm {
namespace eval {

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(
               std::chrono::steady_clock::now() - start)
        .count();
}

/// The rows the indexes are trained on: one seeded sample shared by all.
struct TrainingSample {
    int64_t n = 0;
    const float* x = nullptr;
    std::vector<float> storage; ///< holds the rows when sampled
};

TrainingSample make_training_sample(
    const datasets::FloatMatrix& source, int64_t size, int64_t seed) {
    TrainingSample sample;
    if (size >= source.n) {
        sample.n = source.n;
        sample.x = source.data.data();
        return sample;
    }
    std::vector<int64_t> perm(source.n);
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(seed);
    for (int64_t i = 0; i < size; i++) {
        std::uniform_int_distribution<int64_t> pick(i, source.n - 1);
        std::swap(perm[i], perm[pick(rng)]);
    }
    perm.resize(size);
    std::sort(perm.begin(), perm.end());
    sample.storage.resize(size_t(size) * source.d);
    for (int64_t i = 0; i < size; i++) {
        std::copy(
            source.row(perm[i]),
            source.row(perm[i]) + source.d,
            sample.storage.data() + i * source.d);
    }
    sample.n = size;
    sample.x = sample.storage.data();
    return sample;
}

/// What decides a GMM's training: indexes with equal keys share one model.
std::string gmm_training_key(const IndexIVFGMM& index) {
    IVFGMMBuildParameters training = index.build_params;
    training.spill = SpillParameters(); // add-time only
    training.gmm.verbose = false;
    return "nlist=" + std::to_string(index.nlist) +
           ",d=" + std::to_string(index.d) + "," +
           format_build_parameters(training);
}

/// Sizes of the inverted lists (entries, copies included).
std::vector<size_t> list_sizes(const faiss::IndexIVF& ivf) {
    std::vector<size_t> sizes(ivf.nlist);
    for (size_t l = 0; l < ivf.nlist; l++) {
        sizes[l] = ivf.invlists->list_size(l);
    }
    return sizes;
}

/// Entries, imbalance and bytes (codes + ids) of lists of these sizes.
void fill_list_figures(
    const std::vector<size_t>& sizes, size_t code_size, IndexResult* result) {
    double sum = 0, sum_sq = 0;
    result->list_bytes = 0;
    for (size_t s : sizes) {
        sum += s;
        sum_sq += double(s) * s;
        result->list_bytes += int64_t(s) * int64_t(code_size + sizeof(idx_t));
    }
    result->nentries = int64_t(sum);
    result->imbalance =
        sum > 0 ? double(sizes.size()) * sum_sq / (sum * sum) : 1;
}

/// Spill bookkeeping and coarse model aside, what a built index holds.
void fill_storage_figures(
    const faiss::Index& index,
    const faiss::IndexIVF* ivf,
    const IndexIVFGMM* gmm,
    IndexResult* result) {
    result->ntotal = index.ntotal;
    result->nentries = index.ntotal;
    result->replication = 1;
    result->imbalance = 1;
    result->list_bytes = 0;
    result->memory = index_memory(index);
    if (!ivf) {
        return;
    }
    result->code_size = int64_t(ivf->code_size);
    fill_list_figures(list_sizes(*ivf), ivf->code_size, result);
    const double sum = double(result->nentries);
    if (gmm) {
        for (const auto& records : gmm->spill_records.records) {
            result->list_bytes += int64_t(records.size() * sizeof(int32_t));
        }
        result->replication = gmm->replication_factor();
    } else if (ivf->ntotal > 0) {
        result->replication = sum / double(ivf->ntotal);
    }
}

/// True for an L2 faiss::IndexIVFFlat (that class exactly) over an L2
/// IndexFlat: the k-means baseline, whose lists a GpuIndexIVFGMM can hold.
bool is_plain_l2_ivf_flat(const faiss::Index* index) {
    if (!index || typeid(*index) != typeid(faiss::IndexIVFFlat)) {
        return false;
    }
    auto* ivf = static_cast<const faiss::IndexIVFFlat*>(index);
    auto* flat = dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer);
    return ivf->metric_type == faiss::METRIC_L2 && flat &&
           flat->metric_type == faiss::METRIC_L2;
}

/// True when the IndexIVFGMM stores flat float codes (IndexIVFFlat): only
/// then are its fine distances the exact ones a distance matrix holds.
bool has_flat_codes(const IndexIVFGMM& gmm) {
    return gmm.codes_index &&
           typeid(*gmm.codes_index) == typeid(faiss::IndexIVFFlat);
}

/**
 * After an IndexIVFGMM adopted a model (set_gmm): trains what the chain
 * still needs on the sample, the code's own parameters (SQ ranges, PQ
 * codebooks) and the refinement index of an IndexRefine around it.
 */
void train_around_model(const IndexChain& chain, const TrainingSample& sample) {
    if (!chain.gmm->is_trained) {
        chain.gmm->train_codes(sample.n, sample.x);
    }
    if (chain.refine) {
        if (!chain.refine->refine_index->is_trained) {
            chain.refine->refine_index->train(sample.n, sample.x);
        }
        chain.refine->is_trained = true;
    }
}

/// How the fine distances of an index's search are obtained.
enum class FineDistances {
    Computed,      ///< by the index's own search
    GmmLookup,     ///< IndexIVFGMM reading precomputed_distances
    IvfFlatLookup, ///< ivf_flat_lookup_search on a plain IndexIVFFlat
};

/// Where an evaluated index is built and searched.
enum class Placement {
    Cpu,       ///< the factory's index, on the CPU
    GpuGmm,    ///< the factory's chain with a GpuIndexIVFGMM at the bottom
    GpuKMeans, ///< FAISS k-means on the CPU, lists and search on the GPU
};

std::vector<float> train_kmeans_centroids(
    int d,
    int64_t nlist,
    const TrainingSample& sample,
    const EvalConfig& config) {
    faiss::ClusteringParameters cp;
    cp.niter = config.kmeans_iter;
    cp.verbose = config.verbose;
    faiss::Clustering clustering(d, int(nlist), cp);
    // the nearest-centroid searches of every Lloyd iteration: on the GPU
    // with --gpu (as FAISS GPU k-means does), same algorithm and seed
    std::unique_ptr<faiss::Index> assigner =
        make_kmeans_assigner(d, config.gpu, config.gpu_device);
    clustering.train(sample.n, sample.x, *assigner);
    return clustering.centroids;
}

/**
 * Candidates an IndexRefine re-ranked per query, from its results: the
 * base index returned k * k_factor candidates, or all it found when fewer
 * than k came back (see SearchRow::refine_distances).
 */
double refined_per_query(
    const std::vector<idx_t>& labels, int64_t nq, int k, float k_factor) {
    const double k_base = double(idx_t(double(k) * k_factor));
    double total = 0;
    for (int64_t q = 0; q < nq; q++) {
        const idx_t* row = labels.data() + q * k;
        const int64_t found =
            std::count_if(row, row + k, [](idx_t label) { return label >= 0; });
        total += found < k ? double(found) : k_base;
    }
    return total / double(nq);
}

std::string format_seconds(double s) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%.2f s", s);
    return buf;
}

} // namespace

void GmmOverrides::apply(IndexIVFGMM* index) const {
    index->set_build_parameters(build);
    index->set_search_parameters(search);
}

std::string GmmOverrides::describe() const {
    return build + (!build.empty() && !search.empty() ? "," : "") + search;
}

void GmmOverrides::set_build(const std::string& key, const std::string& value) {
    IVFGMMBuildParameters check;
    set_build_parameter(&check, key, value); // throws on a bad key or value
    build += (build.empty() ? "" : ",") + key + "=" + value;
}

void GmmOverrides::set_search(
    const std::string& key, const std::string& value) {
    SearchParametersIVFGMM check;
    set_search_parameter(&check, key, value);
    search += (search.empty() ? "" : ",") + key + "=" + value;
}

int64_t default_nlist(int64_t n_base) {
    if (n_base <= 1) {
        return 1;
    }
    double log2_nlist = std::round(std::log2(4 * std::sqrt(double(n_base))));
    return std::max<int64_t>(1, int64_t(1) << int64_t(log2_nlist));
}

std::vector<int64_t>
nprobe_sweep(const std::vector<int64_t>& requested, int64_t nlist) {
    std::vector<int64_t> out;
    if (requested.empty()) {
        for (int64_t p = 1; p < nlist; p *= 2) {
            out.push_back(p);
        }
        out.push_back(nlist);
    } else {
        for (int64_t p : requested) {
            FAISS_THROW_IF_NOT_FMT(p >= 1, "nprobe %lld < 1", (long long)p);
            out.push_back(std::min(p, nlist));
        }
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

GaussianMixture gmm_from_centroids(
    int d, int k, const float* centroids, int64_t n, const float* x) {
    FAISS_THROW_IF_NOT_FMT(
        n >= 1, "gmm_from_centroids: %lld points", (long long)n);
    faiss::IndexFlatL2 assigner(d);
    assigner.add(k, centroids);
    std::vector<float> dis(n);
    std::vector<idx_t> assign(n);
    assigner.search(n, x, 1, dis.data(), assign.data());

    // the data's mean per-dimension variance sets the floor and the
    // variance of empty clusters
    std::vector<double> mean(d, 0), sq(d, 0);
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) {
            mean[j] += x[i * d + j];
        }
    }
    double data_variance = 0;
    for (int j = 0; j < d; j++) {
        mean[j] /= n;
    }
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) {
            double diff = x[i * d + j] - mean[j];
            data_variance += diff * diff;
        }
    }
    data_variance /= double(n) * d;
    double floor = std::max(1e-3 * data_variance, 1e-12);

    std::vector<double> count(k, 0), sum_dis(k, 0);
    for (int64_t i = 0; i < n; i++) {
        count[assign[i]] += 1;
        sum_dis[assign[i]] += std::max(0.0f, dis[i]);
    }
    GaussianMixture model(d, k, CovarianceType::Spherical);
    model.means.assign(centroids, centroids + size_t(k) * d);
    model.weights.resize(k);
    model.variances.resize(k);
    for (int c = 0; c < k; c++) {
        model.weights[c] = float((count[c] + 1) / (double(n) + k));
        double var = count[c] > 0 ? sum_dis[c] / (count[c] * d) : data_variance;
        model.variances[c] = float(std::max(var, floor));
    }
    model.variance_floor = float(floor);
    model.is_trained = true;
    model.check_consistency();
    return model;
}

EvalReport run_evaluation(
    const datasets::Dataset& data,
    const std::vector<IndexSpec>& specs,
    const EvalConfig& config,
    std::ostream& log) {
    using clock = std::chrono::steady_clock;
    const int d = data.base.d;
    const int64_t nb = data.base.n;
    const int64_t nq = data.query.n;
    FAISS_THROW_IF_NOT_MSG(!specs.empty(), "no index to evaluate");
    FAISS_THROW_IF_NOT_FMT(
        nb >= 1, "data set %s has no base vectors", data.name.c_str());
    FAISS_THROW_IF_NOT_FMT(
        nq >= 1, "data set %s has no queries", data.name.c_str());
    FAISS_THROW_IF_NOT_FMT(
        data.query.d == d,
        "query dimension %d != base dimension %d",
        data.query.d,
        d);
    FAISS_THROW_IF_NOT_FMT(
        data.groundtruth.nq == nq,
        "ground truth has %lld queries, the data set %lld",
        (long long)data.groundtruth.nq,
        (long long)nq);
    FAISS_THROW_IF_NOT_FMT(
        config.k >= 1 && config.k <= data.groundtruth.k && config.k <= nb,
        "k = %d must be in [1, min(ground truth depth %d, n_base %lld)]",
        config.k,
        data.groundtruth.k,
        (long long)nb);
    if (config.threads > 0) {
        omp_set_num_threads(config.threads);
    }

    EvalReport report;
    report.dataset = data.name;
    report.description = data.description;
    report.n_base = nb;
    report.n_query = nq;
    report.d = d;
    report.k = config.k;
    report.search_k = int(std::min<int64_t>(std::max(config.k, 100), nb));
    report.threads = omp_get_max_threads();
    if (config.gpu) {
        report.gpu = check_gpu_usable(config.gpu_device);
        log << "GPU " << report.gpu << "\n";
        FAISS_THROW_IF_NOT_FMT(
            report.search_k <= gpu_max_search_k(),
            "--gpu: %d results per query exceed the GPU search limit %lld",
            report.search_k,
            (long long)gpu_max_search_k());
    }

    // Before any training: a matrix that does not fit fails now.
    std::unique_ptr<DistanceMatrix> matrix;
    if (config.distance_matrix) {
        check_distance_matrix_size(nq, nb, config.distance_matrix_max_bytes);
    }

    // Create every index once up front: the default training size depends
    // on the largest nlist, and a bad factory string fails before hours of
    // training rather than after.
    int64_t max_nlist = 0;
    for (const IndexSpec& spec : specs) {
        std::unique_ptr<faiss::Index> probe(
            faiss_gmm::index_factory(d, spec.factory.c_str()));
        const IndexChain chain = walk_chain(probe.get());
        if (chain.ivf) {
            max_nlist = std::max<int64_t>(max_nlist, chain.ivf->nlist);
        }
        if (spec.model == ModelSource::SharedKMeans) {
            FAISS_THROW_IF_NOT_FMT(
                chain.ivf && !chain.gmm && !chain.transformed &&
                    dynamic_cast<faiss::IndexFlat*>(chain.ivf->quantizer),
                "index %s: shared k-means centroids need a FAISS IVF with a "
                "flat quantizer and no transform (got \"%s\")",
                spec.name.c_str(),
                spec.factory.c_str());
        } else if (spec.model != ModelSource::OwnTraining) {
            FAISS_THROW_IF_NOT_FMT(
                chain.gmm && !chain.transformed,
                "index %s: a shared or k-means model needs an IndexIVFGMM "
                "with no transform above it (got \"%s\")",
                spec.name.c_str(),
                spec.factory.c_str());
        }
        FAISS_THROW_IF_NOT_FMT(
            spec.posterior_masses.empty() || chain.gmm,
            "index %s: adaptive probing needs an IndexIVFGMM",
            spec.factory.c_str());
    }

    const datasets::FloatMatrix& train_source =
        data.train.empty() ? data.base : data.train;
    FAISS_THROW_IF_NOT_FMT(
        train_source.d == d,
        "training vectors have dimension %d, base %d",
        train_source.d,
        d);
    // no IVF index (e.g. "PCA64,HNSW32"): nothing subsamples, use all rows
    int64_t train_size = config.train_size > 0 ? config.train_size
                         : max_nlist > 0       ? 256 * max_nlist
                                               : train_source.n;
    TrainingSample sample =
        make_training_sample(train_source, train_size, config.seed);
    report.n_train = sample.n;
    log << "training sample: " << sample.n << " of " << train_source.n << " "
        << (data.train.empty() ? "base" : "training") << " vectors (seed "
        << config.seed << ")\n";

    ReferenceDistances reference = make_reference_distances(
        d,
        nq,
        data.query.data.data(),
        nb,
        data.base.data.data(),
        data.groundtruth.k,
        data.groundtruth.ids.data());

    if (config.distance_matrix) {
        const bool use_gpu = datasets::groundtruth_gpu_available();
        log << "computing the " << nq << " x " << nb << " distance matrix ("
            << distance_matrix_bytes(nq, nb) / 1e9 << " GB) "
            << (use_gpu ? "on the GPU" : "on the CPU") << "...\n";
        log.flush();
        auto tm = clock::now();
        matrix = std::make_unique<DistanceMatrix>(compute_distance_matrix(
            d,
            nq,
            data.query.data.data(),
            nb,
            data.base.data.data(),
            config.distance_matrix_max_bytes,
            use_gpu,
            config.gpu_device));
        report.distance_matrix = matrix->device;
        log << "  distance matrix computed on " << matrix->device << " in "
            << format_seconds(seconds_since(tm)) << "\n";
    }

    std::map<int64_t, std::vector<float>> kmeans_centroids;
    std::map<int64_t, double> kmeans_train_s;
    std::map<std::string, std::pair<GaussianMixture, double>> shared_gmms;

    for (size_t s = 0; s < specs.size(); s++) {
        const IndexSpec& spec = specs[s];
        IndexResult result;
        result.name = spec.name.empty() ? spec.factory : spec.name;
        std::unique_ptr<faiss::Index> index(
            faiss_gmm::index_factory(d, spec.factory.c_str()));
        const IndexChain chain = walk_chain(index.get());
        faiss::IndexIVF* ivf = chain.ivf;
        IndexIVFGMM* gmm = chain.gmm;
        result.is_gmm = gmm != nullptr;
        result.nlist = ivf ? int64_t(ivf->nlist) : 0;
        if (ivf && !gmm) {
            ivf->cp.niter = config.kmeans_iter;
            ivf->verbose = config.verbose;
        }
        if (gmm) {
            gmm->build_params.gmm.kmeans_niter = config.kmeans_iter;
            gmm->build_params.gmm.verbose = config.verbose;
            spec.gmm.apply(gmm);
        }
        result.description = spec.factory;
        std::string overrides = spec.gmm.describe();
        if (gmm && !overrides.empty()) {
            result.description += " [" + overrides + "]";
        }
        if (spec.model == ModelSource::KMeansCentroids ||
            spec.model == ModelSource::SharedKMeans) {
            result.description += " [k-means centroids]";
        } else if (spec.model == ModelSource::SharedGmm) {
            result.description += " [shared GMM]";
        }
        Placement placement = Placement::Cpu;
        FineDistances fine = FineDistances::Computed;
        if (matrix && gmm && gmm == index.get() && has_flat_codes(*gmm)) {
            fine = FineDistances::GmmLookup;
            result.description += " [distance matrix]";
        } else if (matrix && is_plain_l2_ivf_flat(index.get())) {
            fine = FineDistances::IvfFlatLookup;
            result.description += " [distance matrix: IVF probe walk]";
        } else if (matrix) {
            result.description +=
                " [CPU: no distance-matrix path, searched normally]";
        } else if (config.gpu && gmm) {
            placement = Placement::GpuGmm;
            result.description += " [GPU]";
        } else if (config.gpu && is_plain_l2_ivf_flat(index.get())) {
            placement = Placement::GpuKMeans;
            result.description +=
                " [GPU: FAISS k-means on the CPU, lists and search on the "
                "GPU]";
        } else if (config.gpu) {
            result.description += " [CPU: no GPU version]";
        }
        // the index that is filled and searched: index, or its GPU copy
        faiss::Index* searched = index.get();
        std::unique_ptr<GpuEvalIndex> gpu_index;
        log << "\n[" << (s + 1) << "/" << specs.size() << "] " << result.name
            << ": " << result.description << "\n";
        log.flush();

        // ---- train
        auto t0 = clock::now();
        // the run's k-means centroids for nlist lists, trained on first use
        auto kmeans_centroids_for =
            [&](int64_t nlist) -> const std::vector<float>& {
            if (!kmeans_centroids.count(nlist)) {
                log << "  training k-means (" << nlist << " centroids) on "
                    << sample.n << " vectors...\n";
                log.flush();
                auto tk = clock::now();
                kmeans_centroids[nlist] =
                    train_kmeans_centroids(d, nlist, sample, config);
                kmeans_train_s[nlist] = seconds_since(tk);
            }
            return kmeans_centroids[nlist];
        };
        if (spec.model == ModelSource::KMeansCentroids) {
            const int64_t nlist = int64_t(gmm->nlist);
            const std::vector<float>& centroids = kmeans_centroids_for(nlist);
            auto tg = clock::now();
            gmm->set_gmm(gmm_from_centroids(
                d, int(nlist), centroids.data(), sample.n, sample.x));
            train_around_model(chain, sample);
            result.train_s = kmeans_train_s[nlist] + seconds_since(tg);
            log << "  adopted the k-means centroids as a spherical GMM "
                << "(k-means training " << format_seconds(kmeans_train_s[nlist])
                << ")\n";
        } else if (spec.model == ModelSource::SharedKMeans) {
            const int64_t nlist = int64_t(ivf->nlist);
            const std::vector<float>& centroids = kmeans_centroids_for(nlist);
            auto tg = clock::now();
            ivf->quantizer->reset();
            ivf->quantizer->add(nlist, centroids.data());
            ivf->quantizer->is_trained = true;
            // FAISS skips a trained quantizer with nlist centroids: this
            // trains the code (and a refinement index) only
            index->train(sample.n, sample.x);
            result.train_s = kmeans_train_s[nlist] + seconds_since(tg);
            log << "  adopted the run's k-means centroids (k-means training "
                << format_seconds(kmeans_train_s[nlist]) << ")\n";
        } else if (
            spec.model == ModelSource::SharedGmm &&
            shared_gmms.count(gmm_training_key(*gmm))) {
            const auto& shared = shared_gmms[gmm_training_key(*gmm)];
            auto tg = clock::now();
            gmm->set_gmm(shared.first);
            train_around_model(chain, sample);
            result.train_s = shared.second + seconds_since(tg);
            log << "  adopted the shared GMM (trained in "
                << format_seconds(shared.second) << ")\n";
        } else {
            log << "  training on " << sample.n << " vectors"
                << (placement == Placement::GpuGmm ? " on the GPU" : "")
                << "...\n";
            log.flush();
            if (placement == Placement::GpuGmm) {
                gpu_index = gpu_copy_of_chain(
                    *index, config.gpu_device, config.verbose);
                gpu_index->index()->train(sample.n, sample.x);
            } else {
                // FAISS k-means: its assignments on the GPU with --gpu
                std::unique_ptr<faiss::Index> assigner;
                if (config.gpu && ivf && !gmm) {
                    assigner =
                        make_kmeans_assigner(d, config.gpu, config.gpu_device);
                    ivf->clustering_index = assigner.get();
                }
                index->train(sample.n, sample.x);
                if (ivf) {
                    ivf->clustering_index = nullptr;
                }
            }
            result.train_s = seconds_since(t0);
            log << "  trained in " << format_seconds(result.train_s) << "\n";
            if (spec.model == ModelSource::SharedGmm) {
                const GaussianMixture& trained =
                    gpu_index ? gpu_index->gmm() : gmm->gmm;
                shared_gmms[gmm_training_key(*gmm)] = {trained, result.train_s};
            }
            if (ivf && !gmm) {
                auto* flat = dynamic_cast<faiss::IndexFlat*>(ivf->quantizer);
                if (flat && !kmeans_centroids.count(int64_t(ivf->nlist))) {
                    const float* c = flat->get_xb();
                    kmeans_centroids[int64_t(ivf->nlist)].assign(
                        c, c + size_t(ivf->nlist) * d);
                    kmeans_train_s[int64_t(ivf->nlist)] = result.train_s;
                }
            }
        }

        // the adopted models, and the k-means lists, go to the GPU now
        if (placement != Placement::Cpu && !gpu_index) {
            t0 = clock::now();
            if (placement == Placement::GpuGmm) {
                gpu_index = gpu_copy_of_chain(
                    *index, config.gpu_device, config.verbose);
            } else {
                auto* flat =
                    dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer);
                FAISS_THROW_IF_NOT_MSG(
                    flat, "k-means IVF without a flat quantizer");
                gpu_index = gpu_kmeans_lists(
                    *ivf,
                    gmm_from_centroids(
                        d, int(ivf->nlist), flat->get_xb(), sample.n, sample.x),
                    config.gpu_device,
                    config.verbose);
            }
            const double copy_s = seconds_since(t0);
            result.train_s += copy_s;
            log << "  moved the trained model to the GPU in "
                << format_seconds(copy_s) << "\n";
        }
        if (gpu_index) {
            searched = gpu_index->index();
        }

        // ---- add
        log << "  adding " << nb << " vectors...\n";
        log.flush();
        t0 = clock::now();
        searched->add(nb, data.base.data.data());
        result.add_s = seconds_since(t0);
        if (gpu_index) {
            gpu_index->fill_storage_figures(&result);
            result.memory.complete = false; // counted for CPU indexes only
        } else {
            fill_storage_figures(*index, ivf, gmm, &result);
        }
        log << "  added in " << format_seconds(result.add_s) << ": replication "
            << result.replication << ", imbalance " << result.imbalance
            << ", lists " << result.list_bytes / 1e6 << " MB\n";

        // ---- search
        struct Setting {
            int64_t nprobe;
            float mass;
        };
        std::vector<Setting> settings;
        if (!spec.posterior_masses.empty()) {
            for (float m : spec.posterior_masses) {
                settings.push_back({int64_t(ivf->nlist), m});
            }
        } else if (ivf) {
            for (int64_t p :
                 nprobe_sweep(config.nprobes, int64_t(ivf->nlist))) {
                settings.push_back({p, 0});
            }
        } else {
            settings.push_back({0, 0});
        }
        if (gpu_index) {
            const int64_t limit = gpu_max_search_k();
            size_t kept = 0;
            bool capped = false;
            for (Setting setting : settings) {
                if (setting.mass > 0 && setting.nprobe > limit) {
                    setting.nprobe = limit;
                    capped = true;
                }
                if (setting.nprobe <= limit) {
                    settings[kept++] = setting;
                }
            }
            if (capped) {
                log << "  note: adaptive probing capped at the GPU limit, "
                    << "nprobe " << limit << "\n";
            }
            if (kept < settings.size()) {
                log << "  note: nprobe values above the GPU limit " << limit
                    << " dropped\n";
            }
            settings.resize(kept);
        }
        const double coarse_per_query = [&]() {
            if (!ivf) {
                return 0.0;
            }
            auto* flat = dynamic_cast<faiss::IndexFlat*>(ivf->quantizer);
            return flat ? double(flat->ntotal) : kNaN;
        }();
        if (ivf && !gmm && std::isnan(coarse_per_query)) {
            log << "  note: the quantizer is not an IndexFlat, coarse "
                   "distance computations are not counted (n/a)\n";
        }

        const int search_k = report.search_k;
        const ScanBytes scan = scan_bytes(*index);
        std::vector<float> distances(size_t(nq) * search_k);
        std::vector<idx_t> labels(size_t(nq) * search_k);
        // the GPU index fills indexIVFGMM_stats, also for k-means lists
        const bool gmm_counters = gmm || placement != Placement::Cpu;
        if (gpu_index && !settings.empty()) {
            // the first search on a device pays one-time costs (library
            // handles, module loading) that no row should carry
            gpu_index->set_search(settings[0].nprobe, settings[0].mass);
            searched->search(
                std::min<int64_t>(nq, 100),
                data.query.data.data(),
                search_k,
                distances.data(),
                labels.data());
        }
        for (const Setting& setting : settings) {
            if (ivf) {
                ivf->nprobe = size_t(setting.nprobe);
            }
            if (gmm) {
                gmm->search_options.posterior_mass = setting.mass;
            }
            if (gpu_index) {
                gpu_index->set_search(setting.nprobe, setting.mass);
            }
            faiss::indexIVF_stats.reset();
            indexIVFGMM_stats.reset();
            t0 = clock::now();
            if (fine == FineDistances::GmmLookup) {
                SearchParametersIVFGMM lookup = gmm->search_defaults();
                // row stride: the index's ntotal, the matrix's columns
                FAISS_THROW_IF_NOT_FMT(
                    gmm->ntotal == matrix->nb,
                    "distance matrix: the index holds %lld vectors, the "
                    "matrix has %lld columns",
                    (long long)gmm->ntotal,
                    (long long)matrix->nb);
                lookup.precomputed_distances = matrix->row(0);
                gmm->search(
                    nq,
                    data.query.data.data(),
                    search_k,
                    distances.data(),
                    labels.data(),
                    &lookup);
            } else if (fine == FineDistances::IvfFlatLookup) {
                const LookupSearchCounts counts = ivf_flat_lookup_search(
                    *ivf,
                    *matrix,
                    data.query.data.data(),
                    search_k,
                    distances.data(),
                    labels.data());
                faiss::indexIVF_stats.nq += size_t(nq);
                faiss::indexIVF_stats.nlist += counts.lists;
                faiss::indexIVF_stats.ndis += counts.distances;
            } else {
                searched->search(
                    nq,
                    data.query.data.data(),
                    search_k,
                    distances.data(),
                    labels.data());
            }
            SearchRow row;
            row.nprobe = setting.nprobe;
            row.posterior_mass = setting.mass;
            row.search_s = seconds_since(t0);
            row.qps = nq / std::max(row.search_s, 1e-9);

            std::vector<double> exact = exact_distances(
                d,
                nq,
                data.query.data.data(),
                nb,
                data.base.data.data(),
                search_k,
                labels.data());
            auto recall = [&](int r) {
                return r <= search_k && r <= reference.k ? recall_at_k(
                                                               reference,
                                                               r,
                                                               search_k,
                                                               labels.data(),
                                                               exact.data())
                                                         : kNaN;
            };
            row.recall_at_1 = recall(1);
            row.recall_at_10 = recall(10);
            row.recall_at_100 = recall(100);
            row.recall_at_k = recall(config.k);

            if (gmm_counters) {
                const IndexIVFGMMStats& st = indexIVFGMM_stats;
                row.coarse_distances = double(st.ncoarse_distances) / nq;
                row.fine_distances = double(st.nfine_distances) / nq;
                row.entries_scanned = double(st.nentries_scanned) / nq;
                row.lists_probed = double(st.nlists_probed) / nq;
            } else if (ivf) {
                row.coarse_distances = coarse_per_query;
                row.fine_distances = double(faiss::indexIVF_stats.ndis) / nq;
                row.entries_scanned = row.fine_distances;
                row.lists_probed = double(faiss::indexIVF_stats.nlist) / nq;
            } else if (dynamic_cast<faiss::IndexFlat*>(index.get())) {
                row.coarse_distances = 0;
                row.fine_distances = double(index->ntotal);
                row.entries_scanned = row.fine_distances;
            } else {
                row.coarse_distances = kNaN;
                row.fine_distances = kNaN;
                row.entries_scanned = kNaN;
                row.lists_probed = kNaN;
            }
            if (chain.refine) {
                row.refine_distances = refined_per_query(
                    labels, nq, search_k, chain.refine->k_factor);
            }
            row.bytes_scanned =
                gpu_index ? kNaN // the GPU lists' layout
                          : row.entries_scanned * scan.per_entry +
                                row.refine_distances * scan.per_refined;
            result.rows.push_back(row);

            log << "  nprobe " << setting.nprobe;
            if (setting.mass > 0) {
                log << " mass " << setting.mass;
            }
            char line[256];
            snprintf(
                line,
                sizeof(line),
                ": R@%d %.4f, %.0f distances/query (coarse %.0f + fine "
                "%.0f, entries %.0f), %.3f s, %.0f QPS\n",
                config.k,
                row.recall_at_k,
                row.total_distances(),
                row.coarse_distances,
                row.fine_distances,
                row.entries_scanned,
                row.search_s,
                row.qps);
            log << line;
            log.flush();
            // The largest summary target is 0.99; past 0.999, or once the
            // code caps recall, a default sweep only spends time (the last
            // probes cost the most).
            const bool plateau =
                result.rows.size() >= 2 &&
                row.recall_at_k -
                        result.rows[result.rows.size() - 2].recall_at_k <
                    kDefaultSweepPlateauGain;
            if (config.nprobes.empty() && spec.posterior_masses.empty() &&
                (row.recall_at_k >= kDefaultSweepStopRecall || plateau)) {
                if (&setting != &settings.back()) {
                    log << "  recall@" << config.k;
                    if (plateau) {
                        log << " stopped rising";
                    } else {
                        log << " >= " << kDefaultSweepStopRecall;
                    }
                    log << ": default sweep stops here\n";
                }
                break;
            }
        }
        report.indexes.push_back(std::move(result));
    }
    for (size_t i = 0; i < report.indexes.size(); i++) {
        if (!report.indexes[i].is_gmm) {
            report.baseline = int(i);
            break;
        }
    }
    return report;
}

} // namespace eval
} // namespace faiss_gmm
