/**
 * bench_search: search throughput of GpuIndexIVFGMM on real data, and how
 * close its list scan comes to the device's memory bandwidth.
 *
 * Builds a GpuIndexIVFGMM on the data set (train and add timed on the host
 * clock, data in host memory), then prints one line per nprobe: queries per
 * second for one batch of nq queries (median of --reps searches after one
 * warm-up search), recall@k (|returned top-k & true top-k| / k), distance
 * computations per query (coarse + fine), and the scan's achieved bandwidth:
 * bytes of stored vectors the scan read (GpuSearchTiming::scan_bytes) /
 * scan time (GpuSearchTiming::scan_ms, CUDA events, median of the reps),
 * beside the device-to-device copy bandwidth measured in the same run
 * (cudaMemcpy of a 1 GiB buffer, bytes read + written / time, median of 5
 * after a warm-up) and their ratio. One table per list-pruning setting
 * (--prune-margin x --prune-first-probes), all on the same lists.
 *
 *   bench_search [--dataset NAME|DIR | --base F --query F [--gt F]]
 *                [--nlist 1024] [--nprobe 1,2,4,...] [--nq 10000] [--k 10]
 *                [--reps 5] [--device 0] ...   (--help lists everything)
 */

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/utils.h>

#include <datasets/dataset.h>
#include <datasets/groundtruth.h>
#include <datasets/registry.h>
#include <datasets/synthetic.h>
#include <datasets/vector_io.h>
#include <eval/args.h>
#include <eval/gpu_bench.h>
#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/GpuIndexIVFGMM.h>

using namespace faiss_gmm;
using eval::device_copy_bandwidth;
using eval::median;
using eval::parse_float;
using eval::parse_int;
using eval::split;

namespace {

constexpr const char* kUsage =
    R"(usage: bench_search [options]

Builds a GpuIndexIVFGMM and measures, per nprobe, queries per second for a
batch of queries, recall@k, and the list scan's bandwidth against the
device's copy bandwidth measured in the same run.

Data (default: sift-debian-a from the shared data folder):
  --dataset NAME|DIR    a registered name (under --data-root) or a folder of
                        base/query[/groundtruth] vector files
  --data-root DIR       root of downloaded data sets (default: as
                        datasets/download.sh)
  --base FILE           base vectors (.fvecs/.bvecs/.fbin/.u8bin), instead
                        of --dataset; with --query FILE and optionally
                        --gt FILE (.ivecs/.bin; computed when absent)
  --base-rows N         keep the first N base vectors (ground truth is then
                        recomputed)
  --synthetic N         instead: N generated base vectors (datasets/synthetic.h
                        clusters, seed 42) of --synthetic-d dimensions
                        (default 128), with nq queries and exact ground truth
  --nq N                queries per batch (default 10000; fewer when the data
                        set has fewer)

Index:
  --nlist N             lists (default 1024)
  --spill-rule R        none | posterior | closure | soar (default: library)
  --spill-tau F         posterior rule threshold (default: library)
  --max-assign N        lists per vector at most (default: library)
  --gmm-iter N          EM iterations (default: library)
  --precision P         E-step arithmetic of train: fp32 | tf32 | bf16
                        (default bf16, the library's)
  --probe P             l2 | posterior (default l2)
  --codes C             what the lists store: Flat | SQfp16 | SQ8 (default
                        Flat; GpuIndexIVFGMMConfig::codes)
  --prune-margin LIST   comma-separated prune_margin values, one table each
                        (default: the library's, IVFGMMParameters.h; 0 = off)
  --prune-first-probes LIST
                        comma-separated GpuIndexIVFGMMConfig::
                        prune_first_probes values, one table each (the
                        index is copied to the device again per value;
                        default: the library's)

Search:
  --nprobe LIST         comma-separated (default 1,2,4,8,16,32,64,128)
  --k N                 neighbours per query and the k of recall@k
                        (default 10)
  --reps N              timed searches per nprobe, after one warm-up
                        (default 5)
  --device N            CUDA device (default 0)
  --verbose             the index's own progress lines
  -h, --help            this text
)";

/// The first nq rows of a ground truth.
datasets::GroundTruth
first_queries(const datasets::GroundTruth& gt, int64_t nq) {
    datasets::GroundTruth out;
    out.nq = std::min(gt.nq, nq);
    out.k = gt.k;
    out.ids.assign(gt.ids.begin(), gt.ids.begin() + out.nq * gt.k);
    if (!gt.distances.empty()) {
        out.distances.assign(
            gt.distances.begin(), gt.distances.begin() + out.nq * gt.k);
    }
    return out;
}

/// |returned top-k & true top-k| / k, averaged over the queries.
double recall_at(
    const datasets::GroundTruth& gt, int k, int64_t nq, const idx_t* labels) {
    double hits = 0;
    for (int64_t q = 0; q < nq; q++) {
        std::unordered_set<idx_t> truth(gt.ids_of(q), gt.ids_of(q) + k);
        for (int j = 0; j < k; j++) {
            hits += truth.count(labels[q * k + j]);
        }
    }
    return hits / (double(nq) * k);
}

struct Options {
    std::string dataset;
    std::string data_root;
    std::string base_file, query_file, gt_file;
    int64_t base_rows = -1;
    int64_t synthetic_n = 0;
    int synthetic_d = 128;
    int64_t nq = 10000;
    size_t nlist = 1024;
    IVFGMMBuildParameters build;
    gpu::EStepPrecision precision = gpu::EStepPrecision::BF16;
    ProbeOrder probe = ProbeOrder::L2;
    std::string codes = "Flat";
    std::vector<int64_t> nprobes = {1, 2, 4, 8, 16, 32, 64, 128};
    std::vector<float> prune_margins = {IVFGMMSearchOptions().prune_margin};
    std::vector<int> prune_first_probes = {
        gpu::GpuIndexIVFGMMConfig().prune_first_probes};
    int k = 10;
    int reps = 5;
    int device = 0;
    bool verbose = false;
};

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            FAISS_THROW_IF_NOT_FMT(i + 1 < argc, "%s needs a value", a.c_str());
            return argv[++i];
        };
        if (a == "--dataset") {
            o.dataset = value();
        } else if (a == "--data-root") {
            o.data_root = value();
        } else if (a == "--base") {
            o.base_file = value();
        } else if (a == "--query") {
            o.query_file = value();
        } else if (a == "--gt") {
            o.gt_file = value();
        } else if (a == "--base-rows") {
            o.base_rows = parse_int(a, value());
            FAISS_THROW_IF_NOT_FMT(
                o.base_rows >= 1, "%s must be >= 1", a.c_str());
        } else if (a == "--synthetic") {
            o.synthetic_n = parse_int(a, value());
            FAISS_THROW_IF_NOT_FMT(
                o.synthetic_n >= 1, "%s must be >= 1", a.c_str());
        } else if (a == "--synthetic-d") {
            o.synthetic_d = int(parse_int(a, value()));
            FAISS_THROW_IF_NOT_FMT(
                o.synthetic_d >= 1, "%s must be >= 1", a.c_str());
        } else if (a == "--nq") {
            o.nq = parse_int(a, value());
            FAISS_THROW_IF_NOT_FMT(o.nq >= 1, "%s must be >= 1", a.c_str());
        } else if (a == "--nlist") {
            const int64_t v = parse_int(a, value());
            FAISS_THROW_IF_NOT_FMT(v >= 1, "--nlist %lld < 1", (long long)v);
            o.nlist = size_t(v);
        } else if (a == "--spill-rule") {
            set_build_parameter(&o.build, "spill", value());
        } else if (a == "--spill-tau") {
            set_build_parameter(&o.build, "tau", value());
        } else if (a == "--max-assign") {
            set_build_parameter(&o.build, "max_assign", value());
        } else if (a == "--gmm-iter") {
            set_build_parameter(&o.build, "niter", value());
        } else if (a == "--precision") {
            o.precision = gpu::estep_precision_from_name(value());
        } else if (a == "--codes") {
            o.codes = value();
        } else if (a == "--probe") {
            o.probe = probe_order_from_name(value());
        } else if (a == "--prune-margin") {
            o.prune_margins.clear();
            for (const std::string& p : split(value(), ',')) {
                o.prune_margins.push_back(float(parse_float(a, p)));
                FAISS_THROW_IF_NOT_FMT(
                    o.prune_margins.back() >= 0,
                    "--prune-margin %g < 0",
                    o.prune_margins.back());
            }
            FAISS_THROW_IF_NOT_MSG(
                !o.prune_margins.empty(), "--prune-margin: empty list");
        } else if (a == "--prune-first-probes") {
            o.prune_first_probes.clear();
            for (const std::string& p : split(value(), ',')) {
                const int64_t v = parse_int(a, p);
                FAISS_THROW_IF_NOT_FMT(
                    v >= 1 && v <= 1024,
                    "--prune-first-probes %lld outside [1, 1024]",
                    (long long)v);
                o.prune_first_probes.push_back(int(v));
            }
            FAISS_THROW_IF_NOT_MSG(
                !o.prune_first_probes.empty(),
                "--prune-first-probes: empty list");
        } else if (a == "--nprobe") {
            o.nprobes.clear();
            for (const std::string& p : split(value(), ',')) {
                o.nprobes.push_back(parse_int(a, p));
                FAISS_THROW_IF_NOT_FMT(
                    o.nprobes.back() >= 1,
                    "--nprobe %lld < 1",
                    (long long)o.nprobes.back());
            }
            FAISS_THROW_IF_NOT_MSG(!o.nprobes.empty(), "--nprobe: empty list");
        } else if (a == "--k") {
            o.k = int(parse_int(a, value()));
            FAISS_THROW_IF_NOT_FMT(o.k >= 1, "--k %d < 1", o.k);
        } else if (a == "--reps") {
            o.reps = int(parse_int(a, value()));
            FAISS_THROW_IF_NOT_FMT(o.reps >= 1, "--reps %d < 1", o.reps);
        } else if (a == "--device") {
            o.device = int(parse_int(a, value()));
        } else if (a == "--verbose") {
            o.verbose = true;
        } else {
            FAISS_THROW_FMT("unknown option \"%s\" (see --help)", a.c_str());
        }
    }
    FAISS_THROW_IF_NOT_MSG(
        o.base_file.empty() == o.query_file.empty(),
        "--base and --query go together");
    FAISS_THROW_IF_NOT_MSG(
        o.base_file.empty() || o.dataset.empty(),
        "give either --dataset or --base/--query, not both");
    FAISS_THROW_IF_NOT_MSG(
        o.synthetic_n == 0 || (o.base_file.empty() && o.dataset.empty()),
        "--synthetic replaces --dataset and --base/--query");
    FAISS_THROW_IF_NOT_MSG(
        o.gt_file.empty() || !o.base_file.empty(),
        "--gt goes with --base/--query");
    return o;
}

/// The data set of the options: files, a registered name or a folder.
datasets::Dataset load_data(const Options& o) {
    if (o.synthetic_n > 0) {
        datasets::SyntheticParameters params;
        params.n_base = o.synthetic_n;
        params.n_query = o.nq;
        params.d = o.synthetic_d;
        params.groundtruth_k = o.k;
        params.verbose = true;
        return datasets::make_synthetic(params);
    }
    if (o.base_file.empty()) {
        const std::string name =
            o.dataset.empty() ? std::string(FAISS_GMM_DEFAULT_DATASET_DIR)
                              : o.dataset;
        const std::string root =
            o.data_root.empty() ? datasets::default_data_root() : o.data_root;
        return datasets::load_dataset(name, root, o.base_rows, o.nq, true);
    }
    datasets::Dataset data;
    data.name = o.base_file;
    data.base = datasets::read_vectors(o.base_file, 0, o.base_rows);
    data.query = datasets::read_vectors(o.query_file, 0, o.nq);
    if (!o.gt_file.empty() && o.base_rows < 0) {
        data.groundtruth =
            first_queries(datasets::read_groundtruth(o.gt_file), data.query.n);
    } else {
        printf("computing the ground truth (top-%d)...\n", o.k);
        data.groundtruth =
            datasets::compute_groundtruth(data.base, data.query, o.k, true);
    }
    return data;
}

/// One table: for each nprobe of o, QPS, timings, recall, distances and the
/// scan bandwidth of index (its current search options) over the queries.
void search_table(
    gpu::GpuIndexIVFGMM& index,
    const datasets::Dataset& data,
    int64_t nq,
    const Options& o,
    double copy_gbs) {
    const int k = o.k;
    std::vector<float> distances(size_t(nq) * k);
    std::vector<idx_t> labels(size_t(nq) * k);
    const float* queries = data.query.data.data();
    printf(
        "\n%7s %10s %9s %8s %8s %8s %9s %10s %9s %9s %9s %6s\n",
        "nprobe",
        "QPS",
        "batch ms",
        "scan ms",
        "coarse",
        "select",
        "recall",
        "dist/query",
        "pruned/q",
        "scan GB",
        "scan GB/s",
        "/copy");
    for (int64_t nprobe : o.nprobes) {
        if (nprobe > gpu::GpuIndexIVFGMM::max_search_k()) {
            printf(
                "nprobe %lld skipped: above the GPU limit %d\n",
                (long long)nprobe,
                gpu::GpuIndexIVFGMM::max_search_k());
            continue;
        }
        index.nprobe = size_t(nprobe);
        index.search(nq, queries, k, distances.data(), labels.data());
        std::vector<double> wall, scan, coarse, select;
        size_t scan_bytes = 0;
        IndexIVFGMMStats stats;
        for (int r = 0; r < o.reps; r++) {
            indexIVFGMM_stats.reset();
            const double t0 = faiss::getmillisecs();
            index.search(nq, queries, k, distances.data(), labels.data());
            wall.push_back(faiss::getmillisecs() - t0);
            const gpu::GpuSearchTiming& t = index.last_search_timing();
            scan.push_back(t.scan_ms);
            coarse.push_back(t.coarse_ms);
            select.push_back(t.select_ms);
            scan_bytes = t.scan_bytes;
            stats = indexIVFGMM_stats;
        }
        const double wall_ms = median(wall);
        const double scan_ms = median(scan);
        const double scan_gbs = scan_bytes / (scan_ms * 1e6);
        const double dist_per_query =
            double(stats.ncoarse_distances + stats.nfine_distances) / nq;
        printf(
            "%7lld %10.0f %9.2f %8.2f %8.2f %8.2f %9.4f %10.0f %9.2f "
            "%9.3f %9.1f %6.3f\n",
            (long long)nprobe,
            nq / (wall_ms / 1000),
            wall_ms,
            scan_ms,
            median(coarse),
            median(select),
            recall_at(data.groundtruth, k, nq, labels.data()),
            dist_per_query,
            double(stats.nlists_pruned) / nq,
            scan_bytes / 1e9,
            scan_gbs,
            scan_gbs / copy_gbs);
        fflush(stdout);
    }
}

} // namespace

int main(int argc, char** argv) {
    Options o;
    try {
        for (int i = 1; i < argc; i++) {
            const std::string a = argv[i];
            if (a == "-h" || a == "--help") {
                fputs(kUsage, stdout);
                return 0;
            }
        }
        o = parse_options(argc, argv);
    } catch (const std::exception& e) {
        fprintf(stderr, "bench_search: %s\n", e.what());
        return 2;
    }
    try {
        eval::use_device(o.device);
        const double copy_gbs = device_copy_bandwidth();
        printf(
            "device-to-device copy (1 GiB, read + write): %.1f GB/s\n",
            copy_gbs);

        datasets::Dataset data = load_data(o);
        const int d = data.base.d;
        const int64_t nb = data.base.n;
        const int64_t nq = std::min(o.nq, data.query.n);
        FAISS_THROW_IF_NOT_FMT(
            data.query.d == d,
            "queries have dimension %d, base %d",
            data.query.d,
            d);
        FAISS_THROW_IF_NOT_FMT(
            data.groundtruth.nq >= nq && data.groundtruth.k >= o.k,
            "ground truth has %lld queries x %d neighbours, need %lld x %d",
            (long long)data.groundtruth.nq,
            data.groundtruth.k,
            (long long)nq,
            o.k);
        FAISS_THROW_IF_NOT_FMT(
            o.k <= gpu::GpuIndexIVFGMM::max_search_k(),
            "--k %d above the GPU search limit %d",
            o.k,
            gpu::GpuIndexIVFGMM::max_search_k());
        if (nq < o.nq) {
            printf(
                "note: the data set has %lld queries, not %lld\n",
                (long long)nq,
                (long long)o.nq);
        }
        printf(
            "data %s: %" PRId64 " x %d base, %" PRId64
            " queries, ground truth top-%d\n",
            data.name.c_str(),
            nb,
            d,
            nq,
            data.groundtruth.k);

        // ---- build
        gpu::GpuIndexIVFGMMConfig config;
        config.device = o.device;
        config.precision = o.precision;
        config.verbose = o.verbose;
        config.codes = o.codes;
        gpu::GpuIndexIVFGMM index(d, o.nlist, o.build, config);
        index.search_options.probe_order = o.probe;
        const float* train_x =
            data.train.empty() ? data.base.data.data() : data.train.data.data();
        const int64_t ntrain = data.train.empty() ? nb : data.train.n;
        double t0 = faiss::getmillisecs();
        index.train(ntrain, train_x);
        const double train_s = (faiss::getmillisecs() - t0) / 1000;
        t0 = faiss::getmillisecs();
        index.add(nb, data.base.data.data());
        const double add_s = (faiss::getmillisecs() - t0) / 1000;
        printf(
            "build: nlist %zu, %s codes, %s E-step, spill %s: train %.2f s on "
            "%" PRId64 " vectors (EM samples at most %d per list), add "
            "%.2f s, total %.2f s; replication %.3f, %zu entries, "
            "lists %.1f MB of codes\n",
            o.nlist,
            index.codes_name(),
            gpu::estep_precision_name(o.precision),
            spill_rule_name(o.build.spill.rule),
            train_s,
            ntrain,
            o.build.gmm.max_points_per_component,
            add_s,
            train_s + add_s,
            index.replication_factor(),
            index.nentries(),
            index.nentries() * double(index.code_size()) / 1e6);

        // ---- search: one table per pruning setting, the same lists
        IndexIVFGMM lists_copy(d, o.nlist);
        if (o.prune_first_probes.size() > 1) {
            index.copyTo(&lists_copy);
        }
        for (size_t f = 0; f < o.prune_first_probes.size(); f++) {
            std::unique_ptr<gpu::GpuIndexIVFGMM> copy;
            gpu::GpuIndexIVFGMM* searched = &index;
            if (o.prune_first_probes[f] != config.prune_first_probes) {
                gpu::GpuIndexIVFGMMConfig c = config;
                c.prune_first_probes = o.prune_first_probes[f];
                copy = std::make_unique<gpu::GpuIndexIVFGMM>(&lists_copy, c);
                searched = copy.get();
            }
            for (float margin : o.prune_margins) {
                searched->search_options = index.search_options;
                searched->search_options.prune_margin = margin;
                printf(
                    "\nprune_margin %g, prune_first_probes %d\n",
                    margin,
                    searched->config().prune_first_probes);
                search_table(*searched, data, nq, o, copy_gbs);
            }
        }
        printf(
            "\nQPS: %lld queries per batch, median of %d searches after "
            "a warm-up (host clock); scan/coarse/select: CUDA events, "
            "medians; scan GB/s = stored-vector bytes read / scan time; "
            "/copy = that over the %.1f GB/s device copy bandwidth\n",
            (long long)nq,
            o.reps,
            copy_gbs);
        return 0;
    } catch (const std::exception& e) {
        fprintf(stderr, "bench_search: error: %s\n", e.what());
        return 1;
    }
}
