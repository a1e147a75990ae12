#include <eval/cli.h>

#include <chrono>
#include <cmath>
#include <exception>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/IVFGMMParameters.h>
#include <faiss_gmm/impl/BlasCore.h>

#include <datasets/registry.h>
#include <eval/ablation.h>
#include <eval/args.h>
#include <eval/gpu_eval.h>
#include <eval/report.h>

namespace faiss_gmm {
namespace eval {

namespace {

/// The shorthand options of GMM settings: each sets one key of the
/// parameter key table (IVFGMMParameters.h).
struct KeyOption {
    const char* option;
    const char* key;
    ParameterPhase phase;
};
const KeyOption kKeyOptions[] = {
    {"--spill-rule", "spill", ParameterPhase::Build},
    {"--spill-tau", "tau", ParameterPhase::Build},
    {"--temperature", "temperature", ParameterPhase::Build},
    {"--max-assign", "max_assign", ParameterPhase::Build},
    {"--closure-ratio", "closure_ratio", ParameterPhase::Build},
    {"--soar-lambda", "soar_lambda", ParameterPhase::Build},
    {"--rair-lambda", "rair_lambda", ParameterPhase::Build},
    {"--covariance", "covariance", ParameterPhase::Build},
    {"--gmm-iter", "niter", ParameterPhase::Build},
    {"--probe", "probe", ParameterPhase::Search},
};

/// Adds every key=value of a parameter string to the overrides (checked
/// one by one, so the message names the bad one).
void add_parameter_string(
    const std::string& text, ParameterPhase phase, GmmOverrides* o) {
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find(',', start);
        if (end == std::string::npos) {
            end = text.size();
        }
        const std::string token = text.substr(start, end - start);
        start = end + 1;
        const size_t eq = token.find('=');
        FAISS_THROW_IF_NOT_FMT(
            eq != std::string::npos, "'%s' is not key=value", token.c_str());
        if (phase == ParameterPhase::Build) {
            o->set_build(token.substr(0, eq), token.substr(eq + 1));
        } else {
            o->set_search(token.substr(0, eq), token.substr(eq + 1));
        }
    }
}

const KeyOption* find_key_option(const std::string& option) {
    for (const KeyOption& k : kKeyOptions) {
        if (option == k.option) {
            return &k;
        }
    }
    return nullptr;
}

/// Whether the GMM index's search settings (library defaults, then the
/// run's search keys) prune lists.
bool search_prunes(const GmmOverrides& gmm) {
    SearchParametersIVFGMM p;
    if (!gmm.search.empty()) {
        parse_search_parameters(gmm.search, &p, "--search-params");
    }
    return p.prune_margin > 0 || p.min_expected_hits > 0;
}

} // namespace

std::string eval_usage() {
    return std::string(R"(Usage: faiss_gmm_eval [options]

Recall@k against distance computations per query for FAISS IVF indexes with
a k-means coarse quantizer (the baseline) and with a Gaussian-mixture one.

Data:
  --dataset NAME|DIR    "synthetic" (default: the embedded ~200k x 64 set with
                        1k queries), a registered name (sift1m, gist1m, deep1m,
                        ...; fetch it first with datasets/download.sh NAME), or a
                        folder with base/query[/groundtruth] vector files
  --data-root DIR       root of downloaded data sets
                        (default: $FAISS_GMM_DATA_ROOT, else
                        ~/.cache/faiss_gmm/datasets, as datasets/download.sh)
  --base-rows N         keep the first N base vectors (ground truth recomputed)
  --query-rows N        keep the first N queries

Indexes:
  --index STR           a faiss_gmm::index_factory string; repeatable. Any FAISS
                        string works ("IVF1024,Flat", "PCA64,IVF1024_GMM,Flat",
                        "HNSW32", ...). Default: "IVF<n>,Flat" (k-means
                        baseline) and "IVF<n>_GMM,Flat", and when the GMM
                        search prunes lists (the default), the k-means lists
                        searched with the same pruning. The first non-GMM
                        index is the baseline of the ratios.
  --nlist N             <n> of the default strings
                        (default: 4 sqrt(n_base) rounded to a power of two)
  --train-size N        rows of the training sample, one seeded sample shared by
                        every index (default: min(rows, 256 * largest nlist))
  --seed N              seed of the training sample (default 1234)
  --kmeans-iter N       k-means iterations of the IVF baseline and of the GMM's
                        k-means initialisation (default 20)

GMM settings (applied to every IndexIVFGMM; default: the library's):
  --build-params S      build keys, "key=value,..." (list below)
  --search-params S     search keys, "key=value,..." (list below)
  --spill-rule R        = spill=R           --spill-tau F    = tau=F
  --temperature F       = temperature=F     --max-assign N   = max_assign=N
  --closure-ratio F     = closure_ratio=F   --soar-lambda F  = soar_lambda=F
  --rair-lambda F       = rair_lambda=F
  --covariance C        = covariance=C      --gmm-iter N     = niter=N
  --probe P             = probe=P (search)

Search:
  --nprobe LIST         comma-separated nprobe values, all of them run
                        (default: 1,2,4,... up to nlist, nlist included,
                        stopping once recall@k reaches 0.999 or a doubling
                        raises it by less than 0.0002)
  --k N                 k of the summary's recall@k (default 10); every search
                        asks for max(k, 100) results, so recall@1/@10/@100 come
                        from one search (QPS is measured at that depth)
  --threads N           OpenMP threads (default: all)

Presets and output:
  --ablation            the issue-7 ablation: k-means IVF; k-means centroids
                        with closure / SOAR / RAIR / posterior spill;
                        spherical GMM without spill and with posterior spill
                        (T 1,2,4 x tau 0.02,0.05); diagonal GMM; probe by
                        posterior; adaptive probing; bisector pruning
                        (prune_margin) on top of GMM, no-spill, closure and
                        SOAR lists (the other rows unpruned); training
                        choices with the best spill (tied covariance, 3 and
                        10 EM iterations, reg_covar 0.1, 64 training points
                        per list, k-means++ init). One table of ratios vs
                        k-means at recall@k 0.90/0.95/0.99 (unique vectors
                        and entries scanned), replication, imbalance, build
                        time; and the same at matched replication. Ignores
                        --index and the spill settings (--gmm-iter applies,
                        except to the EM-iteration rows).
  --prune-sweep LIST    the list-pruning preset: k-means IVF, then for each
                        margin m of LIST (comma-separated, 0 = unpruned) the
                        GMM index (one model) and the k-means lists (k-means
                        centroids, no spill), both with prune_margin=m and
                        the run's other GMM settings. Ignores --index
  --codes LIST          the per-code preset, e.g. Flat,SQ8,SQ4,SQfp16,PQ32np,
                        PQ16np+RFlat,PQ16np+Refine(SQfp16): for each code
                        (any FAISS IVF code; +RFlat or +Refine(<code>)
                        adds a FAISS refinement that re-ranks max(k, 100)
                        candidates), FAISS k-means IVF "IVF<n>,<code>" on
                        the run's k-means centroids (stock search) against
                        "IVF<n>_GMM,<code>" (one GMM for every code, the
                        run's GMM settings: library defaults, list pruning
                        included). A table per code of the ratio k-means /
                        GMM at recall@k 0.90/0.95/0.99 in distance
                        computations, list entries, bytes scanned (codes of
                        the entries scanned + their spill records + the
                        refinement's reads; not PQ distance tables) and CPU
                        QPS, with index memory per vector (codes and ids of
                        every copy, spill records, coarse model, code
                        parameters, refinement) and replication; codes.csv
                        and recall<k>_bytes.png. CPU only. Ignores --index
  --spill-rules         the spill-rule preset: k-means IVF; on the k-means
                        lists closure (nearest two, and ratio 1.2), SOAR
                        (lambda 1), RAIR (lambda 0.5, 0.75) and posterior
                        (tau 0) spill, at most 2 lists; on one GMM the
                        posterior (tau 0 and the defaults), SOAR and RAIR
                        rules; all unpruned. The ablation table and its
                        matched-replication view. Ignores --index and the
                        spill settings (--gmm-iter applies)
  --out DIR             output folder (default: ./out/<dataset>); gets
                        results.csv, summary.csv, results.json, recall<k>.png,
                        recall<k>.svg and the gnuplot script recall<k>.gp
  --gpu                 build and search on a GPU (builds with CUDA): GMM
                        indexes as GpuIndexIVFGMM (train, add and search on
                        the device); the k-means baseline trained by FAISS
                        with its assignments on the device, its lists built
                        and searched on the device (pruning included); other
                        indexes stay on the CPU.
                        Same tables (exact counts), with GPU times and QPS;
                        with --ablation, the fast way to run the preset.
  --gpu-device N        CUDA device of --gpu and of the --distance-matrix GEMM
                        (default 0)
  --distance-matrix     compute the queries x base matrix of exact squared L2
                        distances once (cuBLAS GEMM on the GPU when the build
                        has CUDA and a device is usable, else CPU BLAS), then
                        evaluate every row by lookups: same probe rules, same
                        counters, each fine distance read from the matrix
                        instead of computed. The search itself runs on the CPU
                        in this mode, also with --gpu (which then only moves
                        FAISS k-means assignments to the device; GMM EM follows
                        IndexIVFGMM::train_device, auto: the GPU when usable):
                        IndexIVFGMM rows by IndexIVFGMM::search with
                        SearchParametersIVFGMM::precomputed_distances, the
                        k-means baseline (IndexIVFFlat) by the same probe walk
                        as FAISS's search; other indexes search normally.
                        Recall as without it; QPS then times the lookups.
                        Distances equal FAISS's exactly for integer-valued data
                        (SIFT), else up to float rounding.
  --distance-matrix-max-gb F
                        fail before training when the matrix (4 * queries *
                        base bytes) exceeds F GB (default 8); lower
                        --query-rows to fit
  --verbose             FAISS k-means and EM progress lines
  -h, --help            this text

Counting: coarse = query-to-centroid distances, fine = stored vectors
compared (each vector once per query), entries = list entries scanned
(duplicates of spilled vectors included); replication = entries / vectors.
Recall@k follows ann-benchmarks: a returned id counts when its exact distance
is <= the true k-th nearest distance (ties count).

Build keys (--build-params, index_factory options, IndexIVFGMM files):
)") + parameter_help(ParameterPhase::Build) +
           "\nSearch keys (--search-params, set_index_parameters):\n" +
           parameter_help(ParameterPhase::Search);
}

std::vector<std::string> default_index_strings(int64_t nlist) {
    return {
        "IVF" + std::to_string(nlist) + ",Flat",
        "IVF" + std::to_string(nlist) + "_GMM,Flat"};
}

EvalOptions parse_eval_options(const std::vector<std::string>& args) {
    EvalOptions o;
    for (size_t i = 0; i < args.size(); i++) {
        std::string option = args[i];
        std::string value;
        bool has_inline_value = false;
        size_t eq = option.find('=');
        if (option.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = option.substr(eq + 1);
            option = option.substr(0, eq);
            has_inline_value = true;
        }
        auto flag = [&]() {
            FAISS_THROW_IF_NOT_FMT(
                !has_inline_value, "%s takes no value", option.c_str());
        };
        auto next = [&]() -> std::string {
            if (has_inline_value) {
                return value;
            }
            FAISS_THROW_IF_NOT_FMT(
                i + 1 < args.size(), "%s needs a value", option.c_str());
            return args[++i];
        };
        if (option == "-h" || option == "--help") {
            flag();
            o.help = true;
        } else if (option == "--dataset") {
            o.dataset = next();
        } else if (option == "--data-root") {
            o.data_root = next();
        } else if (option == "--base-rows") {
            o.base_rows = parse_int(option, next());
            FAISS_THROW_IF_NOT_FMT(
                o.base_rows >= 1, "%s must be >= 1", option.c_str());
        } else if (option == "--query-rows") {
            o.query_rows = parse_int(option, next());
            FAISS_THROW_IF_NOT_FMT(
                o.query_rows >= 1, "%s must be >= 1", option.c_str());
        } else if (option == "--index") {
            o.indexes.push_back(next());
        } else if (option == "--nlist") {
            o.nlist = parse_int(option, next());
            FAISS_THROW_IF_NOT_FMT(
                o.nlist >= 1, "--nlist %lld must be >= 1", (long long)o.nlist);
        } else if (option == "--train-size") {
            o.config.train_size = parse_int(option, next());
            FAISS_THROW_IF_NOT_FMT(
                o.config.train_size >= 1,
                "--train-size %lld must be >= 1",
                (long long)o.config.train_size);
        } else if (option == "--seed") {
            o.config.seed = parse_int(option, next());
        } else if (option == "--kmeans-iter") {
            o.config.kmeans_iter = int(parse_int(option, next()));
            FAISS_THROW_IF_NOT_FMT(
                o.config.kmeans_iter >= 1,
                "--kmeans-iter %d must be >= 1",
                o.config.kmeans_iter);
        } else if (option == "--build-params") {
            add_parameter_string(next(), ParameterPhase::Build, &o.gmm);
        } else if (option == "--search-params") {
            add_parameter_string(next(), ParameterPhase::Search, &o.gmm);
        } else if (const KeyOption* ko = find_key_option(option)) {
            const std::string v = next();
            try {
                if (ko->phase == ParameterPhase::Build) {
                    o.gmm.set_build(ko->key, v);
                } else {
                    o.gmm.set_search(ko->key, v);
                }
            } catch (const faiss::FaissException& e) {
                FAISS_THROW_FMT(
                    "%s %s: %s", option.c_str(), v.c_str(), e.what());
            }
            if (std::string(ko->key) == "niter") {
                o.gmm_iter = v;
            }
        } else if (option == "--nprobe") {
            o.config.nprobes = parse_int_list(option, next());
        } else if (option == "--k") {
            o.config.k = int(parse_int(option, next()));
            FAISS_THROW_IF_NOT_FMT(
                o.config.k >= 1, "--k %d must be >= 1", o.config.k);
        } else if (option == "--threads") {
            o.config.threads = int(parse_int(option, next()));
            FAISS_THROW_IF_NOT_FMT(
                o.config.threads >= 1,
                "--threads %d must be >= 1",
                o.config.threads);
        } else if (option == "--out") {
            o.out_dir = next();
        } else if (option == "--ablation") {
            flag();
            o.ablation = true;
        } else if (option == "--spill-rules") {
            flag();
            o.spill_rules = true;
        } else if (option == "--codes") {
            o.codes = parse_code_list(next());
        } else if (option == "--prune-sweep") {
            for (const std::string& m : split(next(), ',')) {
                const float margin = parse_float(option, m);
                FAISS_THROW_IF_NOT_FMT(
                    margin >= 0 && std::isfinite(margin),
                    "--prune-sweep: margin %s must be finite and >= 0",
                    m.c_str());
                o.prune_margins.push_back(margin);
            }
            FAISS_THROW_IF_NOT_MSG(
                !o.prune_margins.empty(), "--prune-sweep: empty list");
        } else if (option == "--gpu") {
            flag();
            o.config.gpu = true;
        } else if (option == "--gpu-device") {
            o.config.gpu_device = int(parse_int(option, next()));
            FAISS_THROW_IF_NOT_FMT(
                o.config.gpu_device >= 0,
                "--gpu-device %d must be >= 0",
                o.config.gpu_device);
        } else if (option == "--distance-matrix") {
            flag();
            o.config.distance_matrix = true;
        } else if (option == "--distance-matrix-max-gb") {
            const float gb = parse_float(option, next());
            FAISS_THROW_IF_NOT_FMT(
                gb > 0 && std::isfinite(gb),
                "--distance-matrix-max-gb %g must be > 0",
                gb);
            o.config.distance_matrix_max_bytes = double(gb) * 1e9;
        } else if (option == "--verbose") {
            flag();
            o.config.verbose = true;
        } else {
            FAISS_THROW_FMT(
                "unknown option \"%s\" (see --help)", args[i].c_str());
        }
    }
    const int presets = int(o.ablation) + int(o.spill_rules) +
                        int(!o.prune_margins.empty()) + int(!o.codes.empty());
    FAISS_THROW_IF_NOT_MSG(
        presets <= 1,
        "--ablation, --spill-rules, --prune-sweep and --codes are presets: "
        "give one");
    FAISS_THROW_IF_NOT_MSG(
        o.codes.empty() || !o.config.gpu,
        "--codes measures CPU indexes (memory and bytes scanned are counted "
        "on them): drop --gpu");
    return o;
}

int eval_main(
    const std::vector<std::string>& args,
    std::ostream& out,
    std::ostream& err) {
    EvalOptions options;
    try {
        options = parse_eval_options(args);
    } catch (const std::exception& e) {
        err << "faiss_gmm_eval: " << e.what() << "\n";
        return 2;
    }
    if (options.help) {
        out << eval_usage();
        return 0;
    }
    try {
        // before loading the data: both fail fast
        if (options.config.gpu) {
            check_gpu_usable(options.config.gpu_device);
        }
        // Same default as datasets/download.sh, so downloaded sets are found.
        const std::string data_root = options.data_root.empty()
                                          ? datasets::default_data_root()
                                          : options.data_root;
        auto t0 = std::chrono::steady_clock::now();
        datasets::Dataset data = datasets::load_dataset(
            options.dataset,
            data_root,
            options.base_rows,
            options.query_rows,
            true);
        out << "data set " << data.name << ": " << data.base.n << " x "
            << data.base.d << ", " << data.query.n << " queries, "
            << data.groundtruth.k << " neighbours of ground truth ("
            << std::chrono::duration<double>(
                   std::chrono::steady_clock::now() - t0)
                   .count()
            << " s)\n";
        out << "BLAS: " << impl::blas_description() << "\n";
        const std::string blas_advice = impl::slow_blas_advice();
        if (!blas_advice.empty()) {
            out << "warning: " << blas_advice << "\n";
        }
        int64_t nlist =
            options.nlist > 0 ? options.nlist : default_nlist(data.base.n);

        std::vector<IndexSpec> specs;
        ReportPresets presets;
        if (!options.codes.empty()) {
            if (!options.indexes.empty()) {
                out << "note: --codes ignores --index\n";
            }
            specs = code_specs(nlist, options.codes, options.gmm);
            presets.codes = options.codes;
        } else if (!options.prune_margins.empty()) {
            if (!options.indexes.empty()) {
                out << "note: --prune-sweep ignores --index\n";
            }
            specs = pruning_specs(nlist, options.prune_margins, options.gmm);
        } else if (options.ablation || options.spill_rules) {
            if (!options.indexes.empty() || !options.gmm.build.empty() ||
                !options.gmm.search.empty()) {
                out << "note: "
                    << (options.ablation ? "--ablation" : "--spill-rules")
                    << " ignores --index and the GMM settings (except "
                       "--gmm-iter)\n";
            }
            specs = options.ablation
                        ? ablation_specs(nlist, options.gmm_iter)
                        : spill_rule_specs(nlist, options.gmm_iter);
            presets.ablation = true;
        } else {
            std::vector<std::string> strings =
                options.indexes.empty() ? default_index_strings(nlist)
                                        : options.indexes;
            for (const std::string& s : strings) {
                specs.push_back(
                    {s, s, options.gmm, ModelSource::OwnTraining, {}});
            }
            // pruning is part of the GMM search: the same rules on the
            // k-means lists show how much of the gain is the GMM's own
            if (options.indexes.empty() && search_prunes(options.gmm)) {
                specs.push_back(kmeans_lists_spec(nlist, options.gmm));
            }
        }
        EvalReport report = run_evaluation(data, specs, options.config, out);
        std::string out_dir =
            options.out_dir.empty() ? "out/" + data.name : options.out_dir;
        publish_report(report, out_dir, presets, out);
        return 0;
    } catch (const std::exception& e) {
        err << "faiss_gmm_eval: error: " << e.what() << "\n";
        return 1;
    }
}

} // namespace eval
} // namespace faiss_gmm
