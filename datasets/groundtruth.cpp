#include <datasets/groundtruth.h>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <utility>
#include <vector>

#include <faiss/impl/FaissAssert.h>

#include <datasets/inner_products.h>

#ifdef FAISS_GMM_WITH_GPU
#include <cuda_runtime_api.h>
#endif

namespace faiss_gmm {
namespace datasets {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

/// A neighbour ordered by (distance, id): the ground-truth order.
struct Neighbor {
    double distance;
    int64_t id;
    bool operator<(const Neighbor& other) const {
        return distance < other.distance ||
               (distance == other.distance && id < other.id);
    }
};

/// The reference distance: squared L2 summed in double.
double exact_distance(const float* x, const float* y, int d) {
    double sum = 0;
    for (int j = 0; j < d; j++) {
        const double t = double(x[j]) - double(y[j]);
        sum += t * t;
    }
    return sum;
}

/// The k best neighbours seen so far, as a max-heap on (distance, id).
class TopK {
   public:
    explicit TopK(int k = 0) : k_(k) {
        heap_.reserve(k);
    }
    void push(const Neighbor& n) {
        if (int(heap_.size()) < k_) {
            heap_.push_back(n);
            std::push_heap(heap_.begin(), heap_.end());
        } else if (n < heap_.front()) {
            std::pop_heap(heap_.begin(), heap_.end());
            heap_.back() = n;
            std::push_heap(heap_.begin(), heap_.end());
        }
    }
    bool full() const {
        return int(heap_.size()) == k_;
    }
    /// The k-th best (the worst kept); only when full().
    const Neighbor& worst() const {
        return heap_.front();
    }
    void clear() {
        heap_.clear();
    }
    std::vector<Neighbor> sorted() const {
        std::vector<Neighbor> out = heap_;
        std::sort(out.begin(), out.end());
        return out;
    }

   private:
    int k_;
    std::vector<Neighbor> heap_;
};

/// A candidate of the float pass, keyed by a lower bound of its distance.
struct Candidate {
    double lower_bound;
    int64_t id;
    bool operator<(const Candidate& other) const {
        return lower_bound < other.lower_bound;
    }
};

/// Why the GPU cannot be used; empty when it can.
std::string gpu_unavailable_reason() {
#ifdef FAISS_GMM_WITH_GPU
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        cudaGetLastError(); // clears the error for later CUDA calls
        return std::string("cudaGetDeviceCount failed: ") +
               cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
               ")";
    }
    return count > 0 ? "" : "no CUDA device";
#else
    return "this build has no CUDA support (FAISS_GMM_GPU=OFF or no CUDA "
           "toolkit)";
#endif
}

/// Resolves GroundTruthDevice::automatic through FAISS_GMM_GT_DEVICE and
/// checks that a requested GPU is usable.
bool resolve_use_gpu(GroundTruthDevice device) {
    if (device == GroundTruthDevice::automatic) {
        const char* env = std::getenv("FAISS_GMM_GT_DEVICE");
        const std::string value = env ? env : "";
        if (value.empty() || value == "auto") {
            return groundtruth_gpu_available();
        }
        FAISS_THROW_IF_NOT_FMT(
            value == "cpu" || value == "gpu",
            "compute_groundtruth: FAISS_GMM_GT_DEVICE=%s, expected cpu, gpu "
            "or auto",
            value.c_str());
        device =
            value == "cpu" ? GroundTruthDevice::cpu : GroundTruthDevice::gpu;
    }
    if (device == GroundTruthDevice::cpu) {
        return false;
    }
    const std::string reason = gpu_unavailable_reason();
    FAISS_THROW_IF_NOT_FMT(
        reason.empty(),
        "compute_groundtruth: the GPU was requested but %s",
        reason.c_str());
    return true;
}

/// Base rows per chunk of the candidate pass: about 256 MB of floats, which
/// also bounds the device memory of the GPU path.
int64_t chunk_rows(int k, int d) {
    return std::max<int64_t>(int64_t(k) * 4, (int64_t(64) << 20) / d);
}

void check_finite(const float* x, int64_t n, int d, const char* what) {
    for (int64_t i = 0; i < n * d; i++) {
        FAISS_THROW_IF_NOT_FMT(
            std::isfinite(x[i]),
            "compute_groundtruth: %s row %lld column %lld is %g (NaN or "
            "Inf)",
            what,
            (long long)(i / d),
            (long long)(i % d),
            x[i]);
    }
}

/// Exact top-k over a base that arrives in chunks. For every chunk, a float
/// BLAS pass (CPU or GPU) keeps the candidates with the smallest certified
/// lower bound of their distance; the candidates are re-ranked exactly. The
/// kept threshold bounds every rejected row from below, which certifies the
/// result per query; queries that are not certified are rescanned exactly.
class GroundTruthBuilder {
   public:
    GroundTruthBuilder(const FloatMatrix& query, int k, bool use_gpu)
        : query_(query),
          k_(k),
          top_(query.n, TopK(k)),
          rejected_bound_(query.n, std::numeric_limits<double>::infinity()),
          query_norms_(query.n) {
        check_finite(query.data.data(), query.n, query.d, "query");
        for (int64_t q = 0; q < query.n; q++) {
            query_norms_[q] = exact_norm(query.row(q), query.d);
        }
        inner_products_ = make_inner_products(query, use_gpu);
    }

    std::string device_name() const {
        return inner_products_->device_name();
    }

    /// Candidate pass over base rows [first_id, first_id + ny).
    void add_chunk(const float* y, int64_t ny, int64_t first_id) {
        const int d = query_.d;
        check_finite(y, ny, d, "base");
        inner_products_->set_base(y, ny);
        const int64_t kept = std::min<int64_t>(ny, 2 * int64_t(k_) + 32);
        // Error bound of the float GEMM dot product (any summation order):
        // |fl(x.y) - x.y| <= gamma_d |x||y|, gamma_d = d u / (1 - d u); it is
        // doubled for the 2 x.y term and doubled again as a safety margin.
        const double u = std::ldexp(1.0, -24);
        const double gamma = d * u / (1 - d * u);
        const double dot_error = 4 * gamma;
        // Rounding of the double norms and of the reference sum.
        const double norm_error = 1e-13;

        std::vector<double> y_norms(ny), y_lengths(ny);
#pragma omp parallel for
        for (int64_t j = 0; j < ny; j++) {
            y_norms[j] = exact_norm(y + j * d, d);
            y_lengths[j] = std::sqrt(y_norms[j]);
        }

        std::vector<std::vector<Candidate>> heaps(query_.n);
        constexpr int64_t query_block = 1024;
        constexpr int64_t base_block = 4096;
        for (int64_t q0 = 0; q0 < query_.n; q0 += query_block) {
            const int64_t nq = std::min(query_block, query_.n - q0);
            for (int64_t j0 = 0; j0 < ny; j0 += base_block) {
                const int64_t nb = std::min(base_block, ny - j0);
                const float* ip = inner_products_->block(q0, nq, j0, nb);
#pragma omp parallel for
                for (int64_t i = 0; i < nq; i++) {
                    const int64_t q = q0 + i;
                    std::vector<Candidate>& heap = heaps[q];
                    const double xn = query_norms_[q];
                    const double x_error = dot_error * std::sqrt(xn);
                    const float* ip_row = ip + i * nb;
                    for (int64_t j = 0; j < nb; j++) {
                        const double yn = y_norms[j0 + j];
                        const double approx = xn + yn - 2.0 * ip_row[j];
                        const double bound = approx -
                                             x_error * y_lengths[j0 + j] -
                                             norm_error * (xn + yn);
                        if (int64_t(heap.size()) < kept) {
                            heap.push_back({bound, j0 + j});
                            std::push_heap(heap.begin(), heap.end());
                        } else if (bound < heap.front().lower_bound) {
                            std::pop_heap(heap.begin(), heap.end());
                            heap.back() = {bound, j0 + j};
                            std::push_heap(heap.begin(), heap.end());
                        }
                    }
                }
            }
        }
#pragma omp parallel for
        for (int64_t q = 0; q < query_.n; q++) {
            const std::vector<Candidate>& heap = heaps[q];
            if (kept < ny) {
                // Every rejected row had a bound >= the final heap top.
                rejected_bound_[q] =
                    std::min(rejected_bound_[q], heap.front().lower_bound);
            }
            for (const Candidate& c : heap) {
                top_[q].push(
                    {exact_distance(query_.row(q), y + c.id * d, d),
                     first_id + c.id});
            }
        }
    }

    /// Queries whose top k is not certified (a rejected row might beat or tie
    /// their k-th neighbour); their lists are cleared for rescan_chunk.
    std::vector<int64_t> take_uncertain_queries() {
        std::vector<int64_t> uncertain;
        for (int64_t q = 0; q < query_.n; q++) {
            if (!top_[q].full() ||
                top_[q].worst().distance >= rejected_bound_[q]) {
                uncertain.push_back(q);
                top_[q].clear();
            }
        }
        return uncertain;
    }

    /// Exact pass of the given queries over base rows
    /// [first_id, first_id + ny).
    void rescan_chunk(
        const std::vector<int64_t>& queries,
        const float* y,
        int64_t ny,
        int64_t first_id) {
        const int d = query_.d;
#pragma omp parallel for schedule(dynamic)
        for (size_t i = 0; i < queries.size(); i++) {
            const int64_t q = queries[i];
            for (int64_t j = 0; j < ny; j++) {
                top_[q].push(
                    {exact_distance(query_.row(q), y + j * d, d),
                     first_id + j});
            }
        }
    }

    GroundTruth result() const {
        GroundTruth gt;
        gt.nq = query_.n;
        gt.k = k_;
        gt.ids.resize(gt.nq * k_);
        gt.distances.resize(gt.nq * k_);
        for (int64_t q = 0; q < query_.n; q++) {
            const std::vector<Neighbor> sorted = top_[q].sorted();
            FAISS_THROW_IF_NOT_FMT(
                int(sorted.size()) == k_,
                "compute_groundtruth: query %lld has %zu neighbours, "
                "expected %d",
                (long long)q,
                sorted.size(),
                k_);
            for (int j = 0; j < k_; j++) {
                gt.ids[q * k_ + j] = int32_t(sorted[j].id);
                gt.distances[q * k_ + j] = float(sorted[j].distance);
            }
        }
        return gt;
    }

   private:
    static double exact_norm(const float* x, int d) {
        double sum = 0;
        for (int j = 0; j < d; j++) {
            sum += double(x[j]) * double(x[j]);
        }
        return sum;
    }

    const FloatMatrix& query_;
    int k_;
    std::vector<TopK> top_;
    /// Lower bound of the distance of every row not re-ranked exactly.
    std::vector<double> rejected_bound_;
    std::vector<double> query_norms_;
    std::unique_ptr<InnerProducts> inner_products_;
};

void check_arguments(
    int64_t n_base, int base_d, const FloatMatrix& query, int k) {
    FAISS_THROW_IF_NOT_FMT(
        base_d == query.d,
        "compute_groundtruth: base dimension %d != query dimension %d",
        base_d,
        query.d);
    FAISS_THROW_IF_NOT_FMT(
        k >= 1 && k <= n_base,
        "compute_groundtruth: k=%d must be in 1..n_base=%lld",
        k,
        (long long)n_base);
    FAISS_THROW_IF_NOT_FMT(
        n_base <= int64_t(std::numeric_limits<int32_t>::max()),
        "compute_groundtruth: %lld base rows do not fit int32 ids",
        (long long)n_base);
}

/// A 64-bit hash of a float array (for the cache key), word at a time.
uint64_t hash_floats(const std::vector<float>& x) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ x.size();
    const size_t words = x.size() / 2;
    const char* bytes = reinterpret_cast<const char*>(x.data());
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        std::memcpy(&w, bytes + 8 * i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
    }
    if (x.size() % 2) {
        uint32_t w;
        std::memcpy(&w, bytes + 8 * words, 4);
        h = (h ^ w) * 0x94D049BB133111EBULL;
        h ^= h >> 29;
    }
    return h;
}

std::string cache_key(const FloatMatrix& base, const FloatMatrix& query) {
    std::ostringstream key;
    key << "faiss_gmm groundtruth cache v1 squared-L2 n_base=" << base.n
        << " n_query=" << query.n << " d=" << base.d
        << " base_hash=" << std::hex << hash_floats(base.data)
        << " query_hash=" << hash_floats(query.data);
    return key.str();
}

} // namespace

bool groundtruth_gpu_available() {
    return gpu_unavailable_reason().empty();
}

GroundTruth compute_groundtruth(
    const FloatMatrix& base,
    const FloatMatrix& query,
    int k,
    bool verbose,
    GroundTruthDevice device) {
    check_arguments(base.n, base.d, query, k);
    const Clock::time_point start = Clock::now();
    GroundTruthBuilder builder(query, k, resolve_use_gpu(device));
    const int64_t rows_per_chunk = chunk_rows(k, base.d);
    for (int64_t first = 0; first < base.n; first += rows_per_chunk) {
        builder.add_chunk(
            base.row(first), std::min(rows_per_chunk, base.n - first), first);
    }
    const std::vector<int64_t> uncertain = builder.take_uncertain_queries();
    if (!uncertain.empty()) {
        builder.rescan_chunk(uncertain, base.data.data(), base.n, 0);
    }
    if (verbose) {
        std::printf(
            "ground truth: top-%d of %lld queries in %lld x %d base in "
            "%.2f s on %s (%zu queries rescanned exactly)\n",
            k,
            (long long)query.n,
            (long long)base.n,
            base.d,
            seconds_since(start),
            builder.device_name().c_str(),
            uncertain.size());
    }
    return builder.result();
}

GroundTruth compute_groundtruth_from_file(
    const std::string& base_path,
    const FloatMatrix& query,
    int k,
    int64_t max_base_rows,
    bool verbose,
    GroundTruthDevice device) {
    const VectorFileInfo info = probe_vector_file(base_path);
    const int64_t n_base =
        max_base_rows < 0 ? info.n : std::min(max_base_rows, info.n);
    check_arguments(n_base, info.d, query, k);
    const Clock::time_point start = Clock::now();
    const int64_t rows_per_chunk = chunk_rows(k, info.d);
    GroundTruthBuilder builder(query, k, resolve_use_gpu(device));
    for_each_chunk(
        base_path,
        rows_per_chunk,
        [&](const float* x, int64_t n, int64_t first_row) {
            builder.add_chunk(x, n, first_row);
            if (verbose) {
                std::printf(
                    "ground truth: %lld / %lld base rows, %.1f s\n",
                    (long long)(first_row + n),
                    (long long)n_base,
                    seconds_since(start));
                std::fflush(stdout);
            }
        },
        0,
        n_base);
    const std::vector<int64_t> uncertain = builder.take_uncertain_queries();
    if (!uncertain.empty()) {
        for_each_chunk(
            base_path,
            rows_per_chunk,
            [&](const float* x, int64_t n, int64_t first_row) {
                builder.rescan_chunk(uncertain, x, n, first_row);
            },
            0,
            n_base);
    }
    if (verbose) {
        std::printf(
            "ground truth: top-%d of %lld queries in %s (%lld rows) in "
            "%.2f s on %s (%zu queries rescanned exactly)\n",
            k,
            (long long)query.n,
            base_path.c_str(),
            (long long)n_base,
            seconds_since(start),
            builder.device_name().c_str(),
            uncertain.size());
    }
    return builder.result();
}

GroundTruth load_or_compute_groundtruth(
    const FloatMatrix& base,
    const FloatMatrix& query,
    int k,
    const std::string& cache_path,
    bool verbose) {
    const std::string key = cache_key(base, query);
    const std::string key_path = cache_path + ".key";
    {
        std::ifstream key_in(key_path);
        std::string cached_key;
        if (key_in && std::getline(key_in, cached_key) && cached_key == key) {
            try {
                GroundTruth gt = read_groundtruth_bin(cache_path);
                if (gt.nq == query.n && gt.k >= k) {
                    if (verbose) {
                        std::printf(
                            "ground truth: loaded from cache %s\n",
                            cache_path.c_str());
                    }
                    return gt.k == k ? gt : truncate_groundtruth(gt, k);
                }
            } catch (const faiss::FaissException& e) {
                std::fprintf(
                    stderr,
                    "ground truth cache %s unusable, recomputing: %s\n",
                    cache_path.c_str(),
                    e.what());
            }
        }
    }
    GroundTruth gt = compute_groundtruth(base, query, k, verbose);
    try {
        const std::string parent =
            std::filesystem::path(cache_path).parent_path().string();
        if (!parent.empty()) {
            std::error_code ignored; // a failure shows up when writing
            std::filesystem::create_directories(parent, ignored);
        }
        // The key is written last so that an interrupted write is not
        // mistaken for a valid cache.
        std::remove(key_path.c_str());
        write_groundtruth_bin(cache_path, gt);
        std::ofstream key_out(key_path);
        key_out << key << "\n";
        FAISS_THROW_IF_NOT_FMT(
            key_out.good(), "%s: cannot write", key_path.c_str());
        if (verbose) {
            std::printf("ground truth: cached in %s\n", cache_path.c_str());
        }
    } catch (const faiss::FaissException& e) {
        std::fprintf(stderr, "ground truth: not cached (%s)\n", e.what());
    }
    return gt;
}

} // namespace datasets
} // namespace faiss_gmm
