/**
 * bench_scale: an IVF-GMM index with compressed codes at scale, against
 * FAISS's k-means IVF with the same code, nlist, sample and add path.
 *
 * Phases, each timed and printed with the host's peak RSS:
 *  1. generate: --n base vectors, --nq queries and a training sample of
 *     --train-per-list x nlist vectors from datasets/synthetic.h's generator
 *     (drawn in parallel straight into one host array; held once);
 *  2. ground truth: the exact --k nearest base vectors of every query on
 *     the GPU (gpu::GpuIndexFlatL2: fp32 direct differences, base streamed
 *     in chunks, top-k merged on the host);
 *  3. GMM: GPU EM on the sample (gpu::train_gmm_gpu, k-means init on the
 *     GPU), the code's own training (PQ codebooks) on the CPU, then add():
 *     gpu::GpuListAssigner finds the lists on the GPU batch by batch, from
 *     host memory, while the CPU's OpenMP threads encode and store the
 *     previous batch (IndexIVFGMM::add_with_ids);
 *  4. k-means: faiss::Clustering on the same sample with the GPU assignment
 *     index (the GMM trainer's k-means init), FAISS's "IVF<nlist>,<code>"
 *     trained on the sample, and the same pipelined add: nearest centroid on
 *     the GPU (the same kernel, L2 top-1), encoding and storing on the CPU
 *     as IndexIVFGMM::add does (FAISS's encode_vectors in pieces over the
 *     OpenMP threads, each list stored by one thread);
 *  5. search of both indexes at each --nprobe on the CPU (all --nq queries
 *     in one call, --rerank candidates): recall@k of the codes' ranking and
 *     after an exact re-ranking of the candidates against the base held in
 *     memory (what IndexRefineFlat does, without a second copy of the
 *     vectors), and QPS; the sweep stops before a point predicted to end
 *     the run past --budget seconds.
 * Peak device memory: the lowest free memory cudaMemGetInfo reported
 * (polled every 20 ms) against the total. Without a usable CUDA device (a
 * developer machine) every GPU phase runs on the CPU instead, saying so.
 *
 * Defaults: the 100M x 96, nlist 16384 run of the README. Try small first:
 *   bench_scale --n 2000000 --nlist 1024 --nq 1000
 */

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <exception>
#include <future>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <omp.h>

#include <cuda_runtime.h>

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/index_factory.h>
#include <faiss/utils/distances.h>
#include <faiss/utils/utils.h>

#include <datasets/synthetic.h>
#include <eval/args.h>
#include <eval/gpu_bench.h>
#include <eval/memory.h>
#include <faiss_gmm/GmmEM.h>
#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/ListAssignment.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/GpuFlatL2.h>
#include <faiss_gmm/gpu/GpuListAssigner.h>
#include <faiss_gmm/index_factory.h>
#include <kernels/ivf_assign.h>

using namespace faiss_gmm;

namespace {

const char* kUsage =
    R"(bench_scale: IVF-GMM vs k-means IVF with compressed codes at scale

  --n N                 base vectors (default 100000000)
  --d D                 dimension (default 96)
  --nlist N             lists of both indexes (default 16384)
  --code CODE           FAISS IVF code of both indexes (default PQ48x4np: 24
                        bytes, no polysemous training, which FAISS's factory
                        runs for "PQ48x4" (seconds, unused by the search);
                        see the README for why not 8-bit PQ48)
  --gmm OPTS            options appended to IVF<nlist>_GMM (default none:
                        the library's spill rule), e.g. _m2_tau0.02
  --train-per-list N    training sample = N x nlist vectors (default 64)
  --em-iters N          EM iterations of the GMM (default 10)
  --kmeans-iters N      Lloyd iterations: the k-means baseline and the GMM's
                        k-means init (default 10)
  --nq N                queries (default 10000)
  --k K                 neighbours for recall@K, 1..16 (default 10)
  --nprobe LIST         probes of the search sweep (default 8,16,32,64)
  --rerank N            candidates per query re-ranked with exact distances
                        from the base held in memory (default 100; recall is
                        printed before and after)
  --budget S            skip the sweep's next nprobe when it is predicted to
                        end the run past S seconds (default 560)
  --clusters N          generating clusters of the synthetic data
                        (default 1024)
  --seed S              data seed (default 42)
  --batch N             vectors per GPU assignment batch (default 1048576)
  --gt-parts N          ground truth: base parts searched at once (default 5
                        on the GPU, 1 on the CPU)
  --gt-part-rows N      ground truth: rows per part (default 2097152 on the
                        GPU, 1048576 on the CPU)
  --threads T           OpenMP threads (default: all)
  --device N            CUDA device (default 0)
  --only gmm|kmeans     build one index only (default both)
)";

struct Options {
    int64_t n = 100000000;
    int d = 96;
    int64_t nlist = 16384;
    std::string code = "PQ48x4np";
    std::string gmm_options;
    int64_t train_per_list = 64;
    int em_iters = 10;
    int kmeans_iters = 10;
    int64_t nq = 10000;
    int k = 10;
    std::vector<int64_t> nprobe = {8, 16, 32, 64};
    int rerank = 100;
    double budget = 560;
    int clusters = 1024;
    int64_t seed = 42;
    int64_t batch = int64_t(1) << 20;
    int threads = 0;
    int device = 0;
    int gt_parts = 0;         // 0: 5 on the GPU, 1 on the CPU
    int64_t gt_part_rows = 0; // 0: 2M on the GPU, 1M on the CPU
    std::string only;
};

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        FAISS_THROW_IF_NOT_FMT(i + 1 < argc, "%s needs a value", a.c_str());
        const std::string v = argv[++i];
        using eval::parse_int;
        if (a == "--n") {
            o.n = parse_int(a, v);
        } else if (a == "--d") {
            o.d = int(parse_int(a, v));
        } else if (a == "--nlist") {
            o.nlist = parse_int(a, v);
        } else if (a == "--code") {
            o.code = v;
        } else if (a == "--gmm") {
            o.gmm_options = v;
        } else if (a == "--train-per-list") {
            o.train_per_list = parse_int(a, v);
        } else if (a == "--em-iters") {
            o.em_iters = int(parse_int(a, v));
        } else if (a == "--kmeans-iters") {
            o.kmeans_iters = int(parse_int(a, v));
        } else if (a == "--nq") {
            o.nq = parse_int(a, v);
        } else if (a == "--k") {
            o.k = int(parse_int(a, v));
        } else if (a == "--nprobe") {
            o.nprobe = eval::parse_int_list(a, v);
        } else if (a == "--rerank") {
            o.rerank = int(parse_int(a, v));
        } else if (a == "--budget") {
            o.budget = eval::parse_float(a, v);
        } else if (a == "--clusters") {
            o.clusters = int(parse_int(a, v));
        } else if (a == "--seed") {
            o.seed = parse_int(a, v);
        } else if (a == "--batch") {
            o.batch = parse_int(a, v);
        } else if (a == "--gt-parts") {
            o.gt_parts = int(parse_int(a, v));
        } else if (a == "--gt-part-rows") {
            o.gt_part_rows = parse_int(a, v);
        } else if (a == "--threads") {
            o.threads = int(parse_int(a, v));
        } else if (a == "--device") {
            o.device = int(parse_int(a, v));
        } else if (a == "--only") {
            FAISS_THROW_IF_NOT_FMT(
                v == "gmm" || v == "kmeans",
                "--only %s: expected gmm or kmeans",
                v.c_str());
            o.only = v;
        } else {
            FAISS_THROW_FMT("unknown option %s (--help lists them)", a.c_str());
        }
    }
    FAISS_THROW_IF_NOT_FMT(o.n >= 1, "--n %" PRId64 " < 1", o.n);
    FAISS_THROW_IF_NOT_FMT(o.d >= 1, "--d %d < 1", o.d);
    FAISS_THROW_IF_NOT_FMT(
        o.nlist >= 1 && o.nlist <= o.n,
        "--nlist %" PRId64 " must be in [1, n]",
        o.nlist);
    FAISS_THROW_IF_NOT_FMT(
        o.train_per_list >= 1,
        "--train-per-list %" PRId64 " < 1",
        o.train_per_list);
    FAISS_THROW_IF_NOT_FMT(o.nq >= 1, "--nq %" PRId64 " < 1", o.nq);
    FAISS_THROW_IF_NOT_FMT(
        o.k >= 1 && o.k <= kernels::kAssignMaxTop && o.k <= o.n,
        "--k %d must be in [1, %d] and <= n",
        o.k,
        kernels::kAssignMaxTop);
    FAISS_THROW_IF_NOT_FMT(o.batch >= 1, "--batch %" PRId64 " < 1", o.batch);
    FAISS_THROW_IF_NOT_FMT(
        o.gt_parts >= 0 && o.gt_parts <= 64,
        "--gt-parts %d must be in [0, 64]",
        o.gt_parts);
    FAISS_THROW_IF_NOT_FMT(
        o.gt_part_rows >= 0, "--gt-part-rows %" PRId64 " < 0", o.gt_part_rows);
    FAISS_THROW_IF_NOT_FMT(
        o.rerank >= 0 && o.rerank <= 4096,
        "--rerank %d must be in [0, 4096]",
        o.rerank);
    for (int64_t p : o.nprobe) {
        FAISS_THROW_IF_NOT_FMT(p >= 1, "--nprobe %" PRId64 " < 1", p);
    }
    return o;
}

double now_s() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch())
        .count();
}

/// Peak resident set of this process so far, GiB.
double peak_rss_gib() {
    rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / (1024.0 * 1024.0); // KiB on Linux
}

/// Resident set now, GiB.
double rss_gib() {
    long pages = 0, resident = 0;
    FILE* f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) {
            resident = 0;
        }
        fclose(f);
    }
    return double(resident) * sysconf(_SC_PAGESIZE) / (1 << 30);
}

/**
 * The device's memory high-water mark: a thread polls cudaMemGetInfo every
 * 20 ms and keeps the lowest free memory seen (all processes on the
 * device count; the bench is alone there).
 */
class DeviceMemoryWatch {
   public:
    explicit DeviceMemoryWatch(int device) : device_(device) {
        size_t free = 0, total = 0;
        if (cudaSetDevice(device) != cudaSuccess ||
            cudaMemGetInfo(&free, &total) != cudaSuccess) {
            cudaGetLastError();
            return;
        }
        total_ = total;
        start_used_ = total - free;
        min_free_ = free;
        thread_ = std::thread([this] {
            cudaSetDevice(device_);
            while (!stop_) {
                size_t f = 0, t = 0;
                if (cudaMemGetInfo(&f, &t) == cudaSuccess) {
                    size_t seen = min_free_.load();
                    while (f < seen &&
                           !min_free_.compare_exchange_weak(seen, f)) {
                    }
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        });
    }
    ~DeviceMemoryWatch() {
        stop_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    /// peak device memory in use, GiB (0 when unknown)
    double peak_gib() const {
        return total_ ? (total_ - min_free_.load()) / double(1 << 30) : 0;
    }
    /// in use when the watch started, GiB
    double start_gib() const {
        return start_used_ / double(1 << 30);
    }

   private:
    int device_;
    size_t total_ = 0;
    size_t start_used_ = 0;
    std::atomic<size_t> min_free_{0};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

/// Where a phase ran, for its line.
const char* where(bool gpu) {
    return gpu ? "GPU" : "CPU";
}

/// Prints "  <what>: <s> s, peak RSS ..." and returns s.
double report_phase(const char* what, double t0) {
    const double s = now_s() - t0;
    printf(
        "  %-44s %8.2f s   (RSS %.1f GiB, peak %.1f GiB)\n",
        what,
        s,
        rss_gib(),
        peak_rss_gib());
    fflush(stdout);
    return s;
}

/// The running k best (distance, id) of each query, merged chunk by chunk.
struct TopK {
    int64_t nq;
    int k;
    std::vector<float> dis;
    std::vector<idx_t> ids;
    TopK(int64_t nq, int k)
        : nq(nq),
          k(k),
          dis(size_t(nq) * k, std::numeric_limits<float>::infinity()),
          ids(size_t(nq) * k, -1) {}

    /// Merge k candidates per query (ids offset by `base`), equal distances
    /// keeping the smaller id (chunks come in id order).
    void merge(const float* d, const idx_t* i, idx_t base) {
#pragma omp parallel for
        for (int64_t q = 0; q < nq; q++) {
            float* od = dis.data() + q * k;
            idx_t* oi = ids.data() + q * k;
            std::vector<float> md(k);
            std::vector<idx_t> mi(k);
            int a = 0, b = 0;
            for (int r = 0; r < k; r++) {
                const bool take_b = b < k && i[q * k + b] >= 0 &&
                                    (a >= k || d[q * k + b] < od[a]);
                if (take_b) {
                    md[r] = d[q * k + b];
                    mi[r] = i[q * k + b] + base;
                    b++;
                } else {
                    md[r] = od[a];
                    mi[r] = oi[a];
                    a++;
                }
            }
            std::copy(md.begin(), md.end(), od);
            std::copy(mi.begin(), mi.end(), oi);
        }
    }
};

/**
 * Exact k nearest base vectors of the queries, by flat indexes (GPU or
 * CPU) over the base in chunks: each chunk is split between the indexes,
 * which are searched concurrently (one host thread each; several GPU
 * searches fill the device where one grid of nq / 64 blocks would leave
 * it part idle), and the results are merged in id order.
 */
std::vector<idx_t> ground_truth(
    std::vector<std::unique_ptr<faiss::Index>>& flats,
    int64_t part_rows,
    int64_t n,
    const float* base,
    int64_t nq,
    const float* queries,
    int k) {
    const int d = flats[0]->d;
    const size_t parts = flats.size();
    TopK top(nq, k);
    std::vector<std::vector<float>> dis(parts);
    std::vector<std::vector<idx_t>> ids(parts);
    for (size_t s = 0; s < parts; s++) {
        dis[s].resize(size_t(nq) * k);
        ids[s].resize(size_t(nq) * k);
    }
    for (int64_t i0 = 0; i0 < n; i0 += part_rows * int64_t(parts)) {
        std::vector<int64_t> first(parts);
        size_t used = 0;
        for (size_t s = 0; s < parts; s++) {
            first[s] = i0 + int64_t(s) * part_rows;
            if (first[s] >= n) {
                break;
            }
            const int64_t rows = std::min(part_rows, n - first[s]);
            flats[s]->reset();
            flats[s]->add(rows, base + first[s] * d);
            used++;
        }
        // rows < k: both flat indexes pad with label -1
        std::vector<std::future<void>> searches;
        for (size_t s = 0; s < used; s++) {
            searches.push_back(std::async(std::launch::async, [&, s] {
                flats[s]->search(nq, queries, k, dis[s].data(), ids[s].data());
            }));
        }
        for (auto& f : searches) {
            f.get();
        }
        for (size_t s = 0; s < used; s++) {
            top.merge(dis[s].data(), ids[s].data(), first[s]);
        }
    }
    for (auto& flat : flats) {
        flat->reset();
    }
    return top.ids;
}

/// Mean fraction of the k true neighbours found in the first k results.
double recall_at(
    int64_t nq,
    int k,
    const std::vector<idx_t>& found,
    const std::vector<idx_t>& gt) {
    int64_t hits = 0;
    for (int64_t q = 0; q < nq; q++) {
        for (int r = 0; r < k; r++) {
            const idx_t id = found[q * k + r];
            if (id >= 0 &&
                std::find(gt.begin() + q * k, gt.begin() + (q + 1) * k, id) !=
                    gt.begin() + (q + 1) * k) {
                hits++;
            }
        }
    }
    return double(hits) / (double(nq) * k);
}

/// What was measured of one index.
struct Result {
    std::string name;
    std::string key;
    std::unique_ptr<faiss::Index> index; ///< an IndexIVF
    double train_s = 0;                  ///< quantizer (GMM EM or k-means)
    double codes_s = 0;                  ///< the code's training (codebooks)
    double add_s = 0;                    ///< add, wall
    double assign_s = 0;                 ///< inside the assigner (overlapped)
    double replication = 1;
    double index_gib = 0;
    /// per searched nprobe: recall@k of the codes' ranking, after the exact
    /// re-ranking, QPS of search + re-ranking, seconds of the search
    std::vector<double> recall, recall_reranked, qps, seconds;
    /// per searched nprobe: codes compared per query (unique vectors for
    /// the GMM index; FAISS's indexIVF_stats.ndis)
    std::vector<double> compared;
};

/**
 * The exact re-ranking of each query's kr candidates (ids into base, -1
 * padded) by their true distances, in place: the first k of each row are
 * then the best of the candidates.
 */
void rerank(
    int64_t nq,
    int d,
    int kr,
    const float* queries,
    const float* base,
    idx_t* ids) {
#pragma omp parallel for
    for (int64_t q = 0; q < nq; q++) {
        std::vector<std::pair<float, idx_t>> c;
        c.reserve(kr);
        for (int r = 0; r < kr; r++) {
            const idx_t id = ids[q * kr + r];
            if (id >= 0) {
                c.emplace_back(
                    faiss::fvec_L2sqr(queries + q * d, base + id * d, d), id);
            }
        }
        std::sort(c.begin(), c.end());
        for (int r = 0; r < kr; r++) {
            ids[q * kr + r] = r < int(c.size()) ? c[r].second : -1;
        }
    }
}

/// Mean fraction of the k true neighbours among the first k of each row
/// of `found` (nq x stride ids).
double recall_of(
    int64_t nq,
    int k,
    int stride,
    const std::vector<idx_t>& found,
    const std::vector<idx_t>& gt) {
    std::vector<idx_t> first(size_t(nq) * k);
    for (int64_t q = 0; q < nq; q++) {
        std::copy_n(found.begin() + q * stride, k, first.begin() + q * k);
    }
    return recall_at(nq, k, first, gt);
}

/**
 * Searches every index at each --nprobe in turn (all --nq queries in one
 * call, --rerank candidates re-ranked exactly against the base), and stops
 * the sweep before a point whose predicted time (the last point's, scaled
 * by nprobe) would end the run past --budget seconds.
 */
void search_sweep(
    std::vector<Result>& results,
    const Options& o,
    const float* base,
    const float* queries,
    const std::vector<idx_t>& gt,
    double t_start) {
    const int kr = std::max(o.k, o.rerank);
    std::vector<float> dis(size_t(o.nq) * kr);
    std::vector<idx_t> ids(size_t(o.nq) * kr);
    printf(
        "\n== search: %" PRId64 " queries, %d candidates re-ranked exactly "
        "(recall@%d of the codes' order / after re-ranking)\n",
        o.nq,
        kr,
        o.k);
    for (size_t pi = 0; pi < o.nprobe.size(); pi++) {
        const int64_t p = o.nprobe[pi];
        if (pi > 0) {
            double predicted = 0;
            for (const Result& r : results) {
                predicted += r.seconds.back() * p / o.nprobe[pi - 1];
            }
            const double end = now_s() - t_start + predicted;
            if (end > o.budget) {
                printf(
                    "  nprobe %" PRId64
                    " and up skipped: predicted to end the run at %.0f s, "
                    "past --budget %.0f s\n",
                    p,
                    end,
                    o.budget);
                break;
            }
        }
        for (Result& r : results) {
            auto& index = dynamic_cast<faiss::IndexIVF&>(*r.index);
            index.nprobe = size_t(std::min<int64_t>(p, o.nlist));
            faiss::indexIVF_stats.reset();
            const double t0 = now_s();
            index.search(o.nq, queries, kr, dis.data(), ids.data());
            const double t1 = now_s();
            r.compared.push_back(double(faiss::indexIVF_stats.ndis) / o.nq);
            r.recall.push_back(recall_of(o.nq, o.k, kr, ids, gt));
            rerank(o.nq, o.d, kr, queries, base, ids.data());
            const double t2 = now_s();
            r.recall_reranked.push_back(recall_of(o.nq, o.k, kr, ids, gt));
            r.qps.push_back(o.nq / (t2 - t0));
            r.seconds.push_back(t1 - t0);
            printf(
                "  %-8s nprobe %5" PRId64
                ": recall@%d %.4f / %.4f, %.0f QPS (search %.2f s, "
                "re-rank %.2f s), %.0f codes compared per query\n",
                r.name.c_str(),
                p,
                o.k,
                r.recall.back(),
                r.recall_reranked.back(),
                r.qps.back(),
                t1 - t0,
                t2 - t1,
                r.compared.back());
            fflush(stdout);
        }
    }
}

/// The assigner of the add phases: the GPU's, or the CPU rule.
std::shared_ptr<ListAssigner> make_assigner(bool gpu, const Options& o) {
    if (!gpu) {
        return std::make_shared<CpuListAssigner>();
    }
    gpu::GpuListAssignerConfig config;
    config.device = o.device;
    config.batch_size = o.batch;
    return std::make_shared<gpu::GpuListAssigner>(config);
}

Result build_gmm(
    const Options& o,
    bool gpu,
    const float* base,
    int64_t nt,
    const float* train) {
    Result r;
    r.name = "GMM";
    r.key =
        "IVF" + std::to_string(o.nlist) + "_GMM" + o.gmm_options + "," + o.code;
    printf("\n== GMM: %s\n", r.key.c_str());
    std::unique_ptr<faiss::Index> made(
        faiss_gmm::index_factory(o.d, r.key.c_str()));
    auto* index = dynamic_cast<IndexIVFGMM*>(made.get());
    FAISS_THROW_IF_NOT_FMT(index, "%s is not an IndexIVFGMM", r.key.c_str());
    GmmParameters params = index->build_params.gmm;
    params.niter = o.em_iters;
    params.kmeans_niter = o.kmeans_iters;
    params.verbose = true;
    double t0 = now_s();
    GaussianMixture model(o.d, int(o.nlist), params.covariance);
    if (gpu) {
        gpu::GpuEmConfig config;
        config.device = o.device;
        gpu::train_gmm_gpu(&model, nt, train, params, config);
    } else {
        model.train(nt, train, params);
    }
    r.train_s = report_phase(
        gpu ? "GMM EM on the sample (GPU)" : "GMM EM on the sample (CPU)", t0);
    index->set_gmm(model);
    t0 = now_s();
    index->train_codes(nt, train);
    r.codes_s = report_phase("code training on the sample (CPU)", t0);

    auto assigner = make_assigner(gpu, o);
    index->set_assigner(assigner);
    index->verbose = true;
    t0 = now_s();
    index->add(o.n, base);
    index->verbose = false;
    r.add_s = report_phase(
        gpu ? "add: assign (GPU) beside encode (CPU)" : "add (CPU)", t0);
    if (gpu) {
        const auto s = static_cast<gpu::GpuListAssigner&>(*assigner).stats();
        r.assign_s = s.seconds;
        printf(
            "    GPU assignment busy %.2f s for %" PRId64
            " vectors (%.2f M/s), %" PRId64 " on the CPU rule\n",
            s.seconds,
            s.gpu_vectors,
            s.gpu_vectors / std::max(s.seconds, 1e-9) / 1e6,
            s.cpu_vectors);
    }
    r.replication = index->replication_factor();
    r.index_gib = eval::index_memory(*index).total() / double(1 << 30);
    printf(
        "    replication %.3f, imbalance %.3f, index %.2f GiB\n",
        r.replication,
        index->imbalance_factor(),
        r.index_gib);
    r.index = std::move(made);
    return r;
}

/**
 * FAISS's IndexIVF::add_core for vectors with their lists given (one each,
 * ids ntotal, ntotal + 1, ...), with the encoding split in pieces over the
 * OpenMP threads as IndexIVFGMM::add does (IndexIVFPQ::add_core computes
 * the residuals and stores the entries on one thread): the k-means index
 * is built the way the GMM index is.
 */
void add_preassigned(
    faiss::IndexIVF& index, int64_t n, const float* x, const idx_t* lists) {
    const size_t cs = index.code_size;
    const int d = index.d;
    constexpr int64_t kPiece = 1024;
    const int64_t pieces = (n + kPiece - 1) / kPiece;
    std::vector<uint8_t> codes(size_t(n) * cs);
    std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic)
    for (int64_t p = 0; p < pieces; p++) {
        const int64_t i0 = p * kPiece;
        try {
            index.encode_vectors(
                std::min(kPiece, n - i0),
                x + i0 * d,
                lists + i0,
                codes.data() + i0 * cs);
        } catch (...) {
#pragma omp critical(bench_scale_encode_failure)
            if (!failure) {
                failure = std::current_exception();
            }
        }
    }
    if (failure) {
        std::rethrow_exception(failure);
    }
    const idx_t first = index.ntotal;
#pragma omp parallel
    {
        // each thread stores the lists l with l % nt == rank, in input order
        const int nt = omp_get_num_threads();
        const int rank = omp_get_thread_num();
        for (int64_t i = 0; i < n; i++) {
            const idx_t l = lists[i];
            if (l >= 0 && l % nt == rank) {
                index.invlists->add_entry(
                    size_t(l), first + i, codes.data() + i * cs);
            }
        }
    }
    index.ntotal += n;
}

Result build_kmeans(
    const Options& o,
    bool gpu,
    const float* base,
    int64_t nt,
    const float* train) {
    Result r;
    r.name = "k-means";
    r.key = "IVF" + std::to_string(o.nlist) + "," + o.code;
    printf("\n== k-means: %s\n", r.key.c_str());
    std::unique_ptr<faiss::Index> made(
        faiss::index_factory(o.d, r.key.c_str()));
    auto* index = dynamic_cast<faiss::IndexIVF*>(made.get());
    FAISS_THROW_IF_NOT_FMT(index, "%s is not an IndexIVF", r.key.c_str());
    // k-means on the sample, assignment on the GPU as in the GMM's init
    double t0 = now_s();
    faiss::ClusteringParameters cp;
    cp.niter = o.kmeans_iters;
    cp.verbose = true;
    faiss::Clustering clustering(o.d, int(o.nlist), cp);
    std::unique_ptr<faiss::Index> assign_index;
    if (gpu) {
        assign_index = std::make_unique<gpu::GpuIndexFlatL2>(o.d, o.device);
    } else {
        assign_index = std::make_unique<faiss::IndexFlatL2>(o.d);
    }
    clustering.train(nt, train, *assign_index);
    assign_index.reset();
    r.train_s = report_phase(
        gpu ? "k-means on the sample (GPU assignment)" : "k-means (CPU)", t0);
    index->quantizer->reset();
    index->quantizer->add(o.nlist, clustering.centroids.data());
    t0 = now_s();
    index->train(nt, train); // the quantizer is trained: the code only
    r.codes_s = report_phase("code training on the sample (CPU)", t0);

    // The centroids as a model whose nearest-mean rule is the IVF's
    GaussianMixture centroids(o.d, int(o.nlist), CovarianceType::Spherical);
    centroids.means = clustering.centroids;
    centroids.weights.assign(o.nlist, 1.0f / o.nlist);
    centroids.variances.assign(o.nlist, 1.0f);
    centroids.is_trained = true;
    SpillParameters nearest;
    nearest.rule = SpillRule::None;
    nearest.max_assign = 1;
    nearest.primary_is_nearest_mean = true;
    auto assigner = make_assigner(gpu, o);
    // batches and overlap as IndexIVFGMM::add_with_ids takes them, so that
    // both indexes are added the same way (a CPU assigner never runs beside
    // the encoding threads)
    const int64_t bs = assigner->batch_size();
    const bool overlap =
        assigner->overlaps_encoding(centroids, nearest) && o.n > bs;
    std::vector<idx_t> lists[2] = {
        std::vector<idx_t>(std::min(bs, o.n)),
        std::vector<idx_t>(std::min(bs, o.n))};
    double assign_s = 0, wait_s = 0;
    const auto assign_batch = [&](int64_t i0, idx_t* out) {
        const double a0 = now_s();
        assigner->assign(
            centroids,
            *index->quantizer,
            nearest,
            std::min(bs, o.n - i0),
            base + i0 * o.d,
            out);
        return now_s() - a0;
    };
    t0 = now_s();
    double last_print = t0;
    assign_s += assign_batch(0, lists[0].data());
    for (int64_t i0 = 0, b = 0; i0 < o.n; i0 += bs, b ^= 1) {
        std::future<double> next;
        if (overlap && i0 + bs < o.n) {
            next = std::async(
                std::launch::async, assign_batch, i0 + bs, lists[b ^ 1].data());
        }
        const int64_t nb = std::min(bs, o.n - i0);
        add_preassigned(*index, nb, base + i0 * o.d, lists[b].data());
        const double e1 = now_s();
        if (next.valid()) {
            assign_s += next.get();
            wait_s += now_s() - e1;
        } else if (i0 + bs < o.n) {
            assign_s += assign_batch(i0 + bs, lists[b ^ 1].data());
        }
        if (now_s() - last_print > 10 || i0 + nb == o.n) {
            last_print = now_s();
            const double rate = (i0 + nb) / (last_print - t0);
            printf(
                "    k-means add: %" PRId64 " / %" PRId64
                " vectors, %.3f M vectors/s, ETA %.0f s\n",
                i0 + nb,
                o.n,
                rate / 1e6,
                (o.n - i0 - nb) / rate);
            fflush(stdout);
        }
    }
    r.add_s = report_phase(
        gpu ? "add: assign (GPU) beside encode (CPU)" : "add (CPU)", t0);
    r.assign_s = assign_s;
    printf(
        "    assignment busy %.2f s, encoding waited %.2f s\n",
        assign_s,
        wait_s);
    r.index_gib = eval::index_memory(*index).total() / double(1 << 30);
    printf(
        "    index %.2f GiB, imbalance %.3f\n",
        r.index_gib,
        index->invlists->imbalance_factor());
    r.index = std::move(made);
    return r;
}

void run(const Options& o) {
    if (o.threads > 0) {
        omp_set_num_threads(o.threads);
    }
    const bool gpu = gpu::gpu_is_available(o.device);
    if (gpu) {
        eval::use_device(o.device);
    } else {
        printf(
            "no usable CUDA device %d: every GPU phase runs on the CPU "
            "(timings are not the device's)\n",
            o.device);
    }
    std::unique_ptr<DeviceMemoryWatch> watch;
    if (gpu) {
        watch = std::make_unique<DeviceMemoryWatch>(o.device);
    }
    const int64_t nt = std::min(o.n, o.train_per_list * o.nlist);
    printf(
        "bench_scale: n %" PRId64 ", d %d, nlist %" PRId64 ", code %s, "
        "sample %" PRId64 ", %" PRId64 " queries, recall@%d, %d threads\n",
        o.n,
        o.d,
        o.nlist,
        o.code.c_str(),
        nt,
        o.nq,
        o.k,
        omp_get_max_threads());
    const double t_start = now_s();

    // 1. data
    datasets::SyntheticParameters sp;
    sp.d = o.d;
    sp.n_clusters = o.clusters;
    sp.seed = o.seed;
    const datasets::SyntheticGenerator gen(sp);
    using Part = datasets::SyntheticGenerator::Part;
    double t0 = now_s();
    // default-initialised: the generator's threads touch the pages first
    std::unique_ptr<float[]> base(new float[size_t(o.n) * o.d]);
    const int64_t gen_batch = int64_t(1) << 22;
    for (int64_t i0 = 0; i0 < o.n; i0 += gen_batch) {
        gen.draw(
            Part::Base,
            i0,
            std::min(gen_batch, o.n - i0),
            base.get() + i0 * o.d);
    }
    std::vector<float> queries(size_t(o.nq) * o.d);
    gen.draw(Part::Query, 0, o.nq, queries.data());
    std::vector<float> train(size_t(nt) * o.d);
    gen.draw(Part::Train, 0, nt, train.data());
    const double gen_s = report_phase("generate base, queries, sample", t0);

    // 2. ground truth
    t0 = now_s();
    std::vector<idx_t> gt;
    {
        // GPU: 5 concurrent searches of 2M-row parts (5 x 157 blocks for
        // 10k queries: about 3 full waves of an H100's 264 block slots)
        std::vector<std::unique_ptr<faiss::Index>> flats;
        const int parts = o.gt_parts > 0 ? o.gt_parts : gpu ? 5 : 1;
        for (int s = 0; s < parts; s++) {
            if (gpu) {
                flats.push_back(
                    std::make_unique<gpu::GpuIndexFlatL2>(o.d, o.device));
            } else {
                flats.push_back(std::make_unique<faiss::IndexFlatL2>(o.d));
            }
        }
        gt = ground_truth(
            flats,
            o.gt_part_rows > 0 ? o.gt_part_rows
            : gpu              ? int64_t(2) << 20
                               : int64_t(1) << 20,
            o.n,
            base.get(),
            o.nq,
            queries.data(),
            o.k);
    }
    const double gt_s = report_phase(
        gpu ? "exact ground truth (GPU, fp32 direct)"
            : "exact ground truth (CPU)",
        t0);

    // 3-5. the indexes
    std::vector<Result> results;
    if (o.only != "kmeans") {
        results.push_back(build_gmm(o, gpu, base.get(), nt, train.data()));
    }
    if (o.only != "gmm") {
        results.push_back(build_kmeans(o, gpu, base.get(), nt, train.data()));
    }
    search_sweep(results, o, base.get(), queries.data(), gt, t_start);

    // summary
    printf(
        "\n== summary: n %" PRId64 ", d %d, nlist %" PRId64
        ", %s, sample %" PRId64 ", %d threads, assignment on the %s\n",
        o.n,
        o.d,
        o.nlist,
        o.code.c_str(),
        nt,
        omp_get_max_threads(),
        where(gpu));
    printf(
        "  generate %.1f s, ground truth (%s) %.1f s\n",
        gen_s,
        where(gpu),
        gt_s);
    printf("  %-34s", "");
    for (const Result& r : results) {
        printf(" %14s", r.name.c_str());
    }
    printf("\n");
    const auto row = [&](const char* what, auto get, const char* fmt) {
        printf("  %-34s", what);
        for (const Result& r : results) {
            printf(fmt, get(r));
        }
        printf("\n");
    };
    row(
        "train quantizer on sample (s)",
        [](const Result& r) { return r.train_s; },
        " %14.2f");
    row(
        "train code on sample (s)",
        [](const Result& r) { return r.codes_s; },
        " %14.2f");
    row(
        "add, wall (s)", [](const Result& r) { return r.add_s; }, " %14.2f");
    row(
        "  assignment busy (s)",
        [](const Result& r) { return r.assign_s; },
        " %14.2f");
    row(
        "  add rate (M vectors/s)",
        [&](const Result& r) { return o.n / r.add_s / 1e6; },
        " %14.3f");
    row(
        "replication",
        [](const Result& r) { return r.replication; },
        " %14.3f");
    row(
        "index memory (GiB)",
        [](const Result& r) { return r.index_gib; },
        " %14.2f");
    // the points every index reached (the sweep may stop early)
    size_t searched = o.nprobe.size();
    for (const Result& r : results) {
        searched = std::min(searched, r.qps.size());
    }
    for (size_t p = 0; p < searched; p++) {
        char what[64];
        snprintf(
            what,
            sizeof(what),
            "nprobe %" PRId64 ": recall@%d codes",
            o.nprobe[p],
            o.k);
        row(
            what, [p](const Result& r) { return r.recall[p]; }, " %14.4f");
        snprintf(
            what,
            sizeof(what),
            "nprobe %" PRId64 ": recall@%d re-ranked",
            o.nprobe[p],
            o.k);
        row(
            what,
            [p](const Result& r) { return r.recall_reranked[p]; },
            " %14.4f");
        snprintf(what, sizeof(what), "nprobe %" PRId64 ": QPS", o.nprobe[p]);
        row(
            what, [p](const Result& r) { return r.qps[p]; }, " %14.0f");
        snprintf(
            what,
            sizeof(what),
            "nprobe %" PRId64 ": codes compared/query",
            o.nprobe[p]);
        row(
            what, [p](const Result& r) { return r.compared[p]; }, " %14.0f");
    }
    printf(
        "  peak host RSS %.1f GiB (base vectors %.1f GiB)",
        peak_rss_gib(),
        double(o.n) * o.d * 4 / (1 << 30));
    if (watch) {
        printf(
            ", peak device memory in use %.2f GiB (%.2f GiB at start)",
            watch->peak_gib(),
            watch->start_gib());
    }
    printf("\n  total %.1f s\n", now_s() - t_start);
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
        fprintf(stderr, "bench_scale: %s\n", e.what());
        return 2;
    }
    try {
        run(o);
    } catch (const std::exception& e) {
        fprintf(stderr, "bench_scale: %s\n", e.what());
        return 1;
    }
    return 0;
}
