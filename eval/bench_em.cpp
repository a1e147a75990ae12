/**
 * bench_em: timings of the fused GPU E-step against one cuBLAS GEMM of the
 * same shape and precision, measured in the same run.
 *
 * For each shape (N x D, K), covariance and precision it prints: the E-step
 * time (both passes, CUDA events), the full EM iteration time (the device EM
 * loop of gpu::run_em_on_device: model preparation, E-step, M-step and the
 * summary download; host clock per iteration; one run of reps + 2
 * iterations with tol = 0, the first two untimed, the E-step times taken
 * from the same iterations), one GEMM
 * X (N x D) . M^T (D x K) through cublasGemmEx (bf16 in / bf16 out, tf32 via
 * CUBLAS_COMPUTE_32F_FAST_TF32, fp32), the ratios, and the extra device
 * memory of the E-step. Medians of --reps runs after one warm-up.
 * A streaming run (host data through a forced device budget) prints the
 * achieved host-to-device rate beside the measured pinned-copy peak.
 *
 * Full covariance (--cov full; kernels/gmm_estep_full.h): the E-step is a
 * whitening product Z = X'[U_1 .. U_K] (N x D by D x K D, cuBLAS, in row
 * chunks), the responsibilities from the squared norms of z - o, the
 * statistics product R^T [x' | 1] and the second moments of the whitened
 * residuals (K strided-batched products of the whitening's size). Its GEMM
 * column is that unavoidable whitening product alone, N x D by D x (K D) at the
 * row's precision (one cublasGemmEx per chunk of rows into a 4 GB output), and
 * the line also prints the same product as K strided-batched GEMMs
 * (cublasGemmStridedBatchedEx, A stride 0) for comparison. bf16 rows are
 * skipped for full models (they run as tf32). Iterations include the host
 * M-step (covariances and LAPACK Cholesky factors) and the statistics
 * download.
 *
 * bf16 rows also print the published time of the public Flash-GMM H100
 * kernels for the shapes DESIGN.md lists (ratio public / ours). Rows run
 * with the library's GpuEmConfig::hopper_estep (on: the sm_90a kernels on
 * an H100 / H200), --no-hopper turns it off; with --compare-sm80 bf16 rows
 * also time the sm_80 fused kernels in the same run.
 *
 *   bench_em [--shapes N,D,K;N,D,K...] [--cov spherical,diagonal]
 *            [--prec bf16,tf32,fp32] [--reps 5] [--device 0]
 *            [--stream N,D,K] [--stream-budget-gb 4] [--stream-prec bf16]
 *            [--no-stream] [--no-gemm] [--gemm-path] [--no-hopper]
 *            [--compare-sm80]
 */

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <omp.h>

#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/utils.h>

#include <eval/args.h>
#include <eval/gpu_bench.h>
#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmSufficientStats.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <kernels/gmm_estep.h>

using namespace faiss_gmm;
using faiss_gmm::eval::median;
using faiss_gmm::eval::pinned_copy_peak;
using faiss_gmm::eval::split;
using faiss_gmm::gpu::EStepPrecision;

namespace {

#define CUBLAS_OK(call)                                                        \
    do {                                                                       \
        cublasStatus_t s_ = (call);                                            \
        FAISS_THROW_IF_NOT_FMT(                                                \
            s_ == CUBLAS_STATUS_SUCCESS,                                       \
            "%s: cuBLAS status %d",                                            \
            #call,                                                             \
            int(s_));                                                          \
    } while (0)

struct Shape {
    int64_t n;
    int d, k;
};

Shape parse_shape(const std::string& s) {
    auto p = split(s, ',');
    FAISS_THROW_IF_NOT_FMT(
        p.size() == 3, "bad shape '%s' (want N,D,K)", s.c_str());
    return {std::stoll(p[0]), std::stoi(p[1]), std::stoi(p[2])};
}

/// Clustered data: 4096 random centres in [0, 100)^d plus uniform noise of
/// variance 12 (random, never zeros), filled in parallel.
void fill_data(int64_t n, int d, float* x, uint64_t seed) {
    const int nc = 4096;
    std::vector<float> centres(size_t(nc) * d);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(0, 100);
    for (auto& c : centres) {
        c = u(rng);
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        // Cheap per-row generator (xorshift64*): uniform noise in [-6, 6).
        uint64_t state = (uint64_t(i) + 1) * 0x9e3779b97f4a7c15ULL ^ seed;
        const float* c = centres.data() + size_t(i % nc) * d;
        for (int l = 0; l < d; l++) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            const uint64_t r = state * 0x2545f4914f6cdd1dULL;
            x[size_t(i) * d + l] =
                c[l] + float(r >> 40) * (12.0f / 16777216.0f) - 6.0f;
        }
    }
}

/// A model whose means are data rows (what an initialisation produces).
GaussianMixture
bench_model(int d, int k, CovarianceType cov, const float* x, int64_t n) {
    GaussianMixture m(d, k, cov);
    std::mt19937_64 rng(42);
    for (int j = 0; j < k; j++) {
        const int64_t i = int64_t(rng() % uint64_t(n));
        std::copy(
            x + size_t(i) * d,
            x + size_t(i + 1) * d,
            m.means.begin() + size_t(j) * d);
        m.weights[j] = 1.0f / k;
    }
    std::fill(m.variances.begin(), m.variances.end(), 12.0f);
    if (cov == CovarianceType::Full) {
        // 12 I plus a small symmetric coupling of neighbouring dimensions,
        // so that the factors are not diagonal.
        for (int j = 0; j < k; j++) {
            float* c = m.covariances.data() + size_t(j) * d * d;
            std::fill(c, c + size_t(d) * d, 0.0f);
            for (int l = 0; l < d; l++) {
                c[size_t(l) * d + l] = 12.0f;
                if (l + 1 < d) {
                    c[size_t(l) * d + l + 1] = c[size_t(l + 1) * d + l] = 3.0f;
                }
            }
        }
        m.update_precision_cholesky(0);
    }
    m.variance_floor = 1e-3f;
    m.is_trained = true;
    return m;
}

/**
 * Median time (ms) of run() over reps runs after one warm-up run, CUDA
 * events on the default stream.
 */
double median_ms(int reps, const std::function<void()>& run) {
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    run();
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<double> t;
    for (int r = 0; r < reps; r++) {
        CUDA_OK(cudaEventRecord(e0));
        run();
        CUDA_OK(cudaEventRecord(e1));
        CUDA_OK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return median(t);
}

/// Median time of one N x D x K GEMM at the given precision (row chunks so
/// that the output stays under 4 GB; the chunks are timed together).
double gemm_ms(
    cublasHandle_t h,
    EStepPrecision p,
    const Shape& s,
    const float* x_dev,
    const float* means_dev,
    int reps) {
    const bool bf16 = p == EStepPrecision::BF16;
    const size_t out_elem = bf16 ? 2 : 4;
    const int64_t rows =
        std::min<int64_t>(s.n, int64_t((4ull << 30) / (out_elem * s.k)));
    void *a = nullptr, *b = nullptr, *c = nullptr;
    const float* xa = x_dev;
    const float* mb = means_dev;
    if (bf16) {
        CUDA_OK(cudaMalloc(&a, size_t(s.n) * s.d * 2));
        CUDA_OK(cudaMalloc(&b, size_t(s.k) * s.d * 2));
        CUDA_OK(kernels::convert_to_bf16(s.n * s.d, x_dev, a, nullptr));
        CUDA_OK(kernels::convert_to_bf16(
            int64_t(s.k) * s.d, means_dev, b, nullptr));
    }
    CUDA_OK(cudaMalloc(&c, size_t(rows) * s.k * out_elem));
    const float alpha = 1, beta = 0;
    const cudaDataType_t in_t = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cudaDataType_t out_t = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t ct = p == EStepPrecision::TF32
                                       ? CUBLAS_COMPUTE_32F_FAST_TF32
                                       : CUBLAS_COMPUTE_32F;
    const size_t in_elem = bf16 ? 2 : 4;
    auto run = [&]() {
        for (int64_t r0 = 0; r0 < s.n; r0 += rows) {
            const int64_t nr = std::min(rows, s.n - r0);
            const void* xin =
                bf16 ? static_cast<const void*>(
                           static_cast<const char*>(a) +
                           size_t(r0) * s.d * in_elem)
                     : static_cast<const void*>(xa + size_t(r0) * s.d);
            CUBLAS_OK(cublasGemmEx(
                h,
                CUBLAS_OP_T,
                CUBLAS_OP_N,
                s.k,
                int(nr),
                s.d,
                &alpha,
                bf16 ? b : mb,
                in_t,
                s.d,
                xin,
                in_t,
                s.d,
                &beta,
                c,
                out_t,
                s.k,
                ct,
                CUBLAS_GEMM_DEFAULT));
        }
    };
    const double ms = median_ms(reps, run);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    return ms;
}

/**
 * Median time of the full-covariance whitening product as K strided-batched
 * GEMMs: for each component j, Z[:, j D .. j D + D) = X U_j (X: N x D, A
 * stride 0 in cuBLAS terms; U_j: D x D at chol_dev + j D^2; Z row-major
 * with row stride K D, chunks of rows so that Z stays under 4 GB). cuBLAS
 * is column-major: the row-major Z chunk is the column-major (K D) x rows
 * matrix whose batch j is U_j^T X^T: gemm(N, N), m = D, n = rows, k = D,
 * A = U_j (ld D), B = X (ld D), C = Z + j D (ld K D). fp32 or tf32.
 */
double batched_gemm_ms(
    cublasHandle_t h,
    EStepPrecision p,
    const Shape& s,
    const float* x_dev,
    const float* chol_dev,
    int reps) {
    const int64_t kd = int64_t(s.k) * s.d;
    const int64_t rows =
        std::min<int64_t>(s.n, int64_t((4ull << 30) / (4 * kd)));
    float* c = nullptr;
    CUDA_OK(cudaMalloc(&c, size_t(rows) * kd * 4));
    const float alpha = 1, beta = 0;
    const cublasComputeType_t ct = p == EStepPrecision::TF32
                                       ? CUBLAS_COMPUTE_32F_FAST_TF32
                                       : CUBLAS_COMPUTE_32F;
    auto run = [&]() {
        for (int64_t r0 = 0; r0 < s.n; r0 += rows) {
            const int64_t nr = std::min(rows, s.n - r0);
            CUBLAS_OK(cublasGemmStridedBatchedEx(
                h,
                CUBLAS_OP_N,
                CUBLAS_OP_N,
                s.d,
                int(nr),
                s.d,
                &alpha,
                chol_dev,
                CUDA_R_32F,
                s.d,
                int64_t(s.d) * s.d,
                x_dev + size_t(r0) * s.d,
                CUDA_R_32F,
                s.d,
                0,
                &beta,
                c,
                CUDA_R_32F,
                int(kd),
                s.d,
                s.k,
                ct,
                CUBLAS_GEMM_DEFAULT));
        }
    };
    const double ms = median_ms(reps, run);
    cudaFree(c);
    return ms;
}

/**
 * E-step time (ms, bf16) of the public Flash-GMM kernels on one H100 for
 * the shapes of DESIGN.md's table (spherical / diagonal); 0 when the shape
 * is not listed or the public kernel does not run it (d > 128).
 */
double public_kernel_ms(const Shape& s, CovarianceType cov) {
    const struct {
        int64_t n;
        int d, k;
        double sph, diag;
    } table[] = {
        {1000000, 128, 1024, 7.3, 6.7},
        {1000000, 128, 4096, 27.2, 24.1},
        {10000000, 96, 1024, 69.7, 61.7},
    };
    for (const auto& t : table) {
        if (t.n == s.n && t.d == s.d && t.k == s.k) {
            return cov == CovarianceType::Diagonal ? t.diag : t.sph;
        }
    }
    return 0;
}

constexpr const char* kUsage =
    "usage: bench_em [--shapes N,D,K;N,D,K...]\n"
    "                [--cov spherical,diagonal,full]\n"
    "                [--prec bf16,tf32,fp32] [--reps 5] [--device 0]\n"
    "                [--stream N,D,K] [--stream-budget-gb 4]\n"
    "                [--stream-prec bf16] [--no-stream] [--no-gemm]\n"
    "                [--gemm-path] [--no-hopper] [--compare-sm80]\n"
    "--no-hopper: GpuEmConfig::hopper_estep = false for every row (by\n"
    "default the sm_90a E-step kernels run on an H100 / H200).\n"
    "--compare-sm80: bf16 rows also time the sm_80 fused kernels.\n"
    "--cov full: full covariance (not in the default list); its GEMM is\n"
    "the whitening product N x D by D x (K D) at the row's precision, and\n"
    "the line adds the same product as K strided-batched GEMMs. bf16 rows\n"
    "are skipped (full models run bf16 as tf32). For the issue's shapes:\n"
    "--shapes \"1000000,128,256;1000000,128,1024\" --cov full\n"
    "--prec tf32,fp32 --no-stream\n"
    "--gemm-path: GpuEmConfig::force_gemm_path (every model on the\n"
    "cuBLAS-based path; by default bf16 models of logits depth <= 256 run\n"
    "the fused kernels, all others the cuBLAS-based path).\n"
    "Defaults: the four shapes of DESIGN.md (1M x 128 K=1024, 1M x 128\n"
    "K=4096, 10M x 96 K=1024, 1M x 960 K=1024), both covariances, all\n"
    "precisions, 5 timed repetitions, a 40M x 96 streaming run.\n";

} // namespace

static int bench_em_main(int argc, char** argv) {
    std::vector<Shape> shapes = {
        {1000000, 128, 1024},
        {1000000, 128, 4096},
        {10000000, 96, 1024},
        {1000000, 960, 1024}};
    std::vector<CovarianceType> covs = {
        CovarianceType::Spherical, CovarianceType::Diagonal};
    std::vector<EStepPrecision> precs = {
        EStepPrecision::BF16, EStepPrecision::TF32, EStepPrecision::FP32};
    int reps = 5, device = 0;
    bool force_gemm_path = false;
    bool do_stream = true, do_gemm = true;
    bool compare_sm80 = false;
    bool hopper = gpu::GpuEmConfig().hopper_estep;
    Shape stream_shape{40000000, 96, 1024};
    double stream_budget_gb = 4;
    EStepPrecision stream_prec = EStepPrecision::BF16;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            FAISS_THROW_IF_NOT_FMT(i + 1 < argc, "%s needs a value", a.c_str());
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            fputs(kUsage, stdout);
            return 0;
        } else if (a == "--shapes") {
            shapes.clear();
            for (auto& s : split(value(), ';')) {
                shapes.push_back(parse_shape(s));
            }
        } else if (a == "--cov") {
            covs.clear();
            for (auto& s : split(value(), ',')) {
                covs.push_back(covariance_type_from_name(s));
            }
        } else if (a == "--prec") {
            precs.clear();
            for (auto& s : split(value(), ',')) {
                precs.push_back(gpu::estep_precision_from_name(s));
            }
        } else if (a == "--reps") {
            reps = std::stoi(value());
        } else if (a == "--device") {
            device = std::stoi(value());
        } else if (a == "--stream") {
            stream_shape = parse_shape(value());
        } else if (a == "--stream-budget-gb") {
            stream_budget_gb = std::stod(value());
        } else if (a == "--stream-prec") {
            stream_prec = gpu::estep_precision_from_name(value());
        } else if (a == "--no-stream") {
            do_stream = false;
        } else if (a == "--no-gemm") {
            do_gemm = false;
        } else if (a == "--compare-sm80") {
            compare_sm80 = true;
        } else if (a == "--no-hopper") {
            hopper = false;
        } else if (a == "--gemm-path") {
            force_gemm_path = true;
        } else {
            fprintf(stderr, "unknown option %s\n%s", a.c_str(), kUsage);
            return 2;
        }
    }
    eval::use_device(device);
    cublasHandle_t handle;
    CUBLAS_OK(cublasCreate(&handle));

    struct Row {
        Shape s;
        CovarianceType cov;
        EStepPrecision p;
        double estep, iter, gemm, mem_mb;
        double sm80;    ///< E-step of the sm_80 kernels (0: not measured)
        double batched; ///< full: the whitening product as batched GEMMs
        double public_; ///< public kernel's time (0: not listed)
    };
    std::vector<Row> rows;
    for (const Shape& s : shapes) {
        std::vector<float> x(size_t(s.n) * s.d);
        fill_data(s.n, s.d, x.data(), 1);
        float* x_dev = nullptr;
        float* means_dev = nullptr;
        CUDA_OK(cudaMalloc(&x_dev, x.size() * 4));
        CUDA_OK(
            cudaMemcpy(x_dev, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
        for (CovarianceType cov : covs) {
            const bool full = cov == CovarianceType::Full;
            const GaussianMixture model0 =
                bench_model(s.d, s.k, cov, x.data(), s.n);
            // Full: the factors U_j on the device, as the batched GEMM's A
            // and, read as a (K D) x D row-major matrix, as the single
            // GEMM's B (the values do not matter to the timing).
            float* chol_dev = nullptr;
            if (full && do_gemm) {
                CUDA_OK(cudaMalloc(
                    &chol_dev, model0.precision_cholesky.size() * 4));
                CUDA_OK(cudaMemcpy(
                    chol_dev,
                    model0.precision_cholesky.data(),
                    model0.precision_cholesky.size() * 4,
                    cudaMemcpyHostToDevice));
            }
            if (!means_dev) {
                CUDA_OK(cudaMalloc(&means_dev, model0.means.size() * 4));
                CUDA_OK(cudaMemcpy(
                    means_dev,
                    model0.means.data(),
                    model0.means.size() * 4,
                    cudaMemcpyHostToDevice));
            }
            for (EStepPrecision p : precs) {
                if (full && p == EStepPrecision::BF16) {
                    fprintf(
                        stderr,
                        "note: full covariance runs bf16 as tf32: bf16 row "
                        "skipped\n");
                    continue;
                }
                // E-step (median over the timed iterations), iteration
                // time and device memory of one EM run with this config.
                auto measure = [&](bool use_hopper, Row* row) {
                    gpu::GpuEmConfig config;
                    config.device = device;
                    config.precision = p;
                    config.force_gemm_path = force_gemm_path;
                    config.hopper_estep = use_hopper;
                    gpu::GpuEStep estep(s.n, x_dev, s.d, true, config);
                    GmmParameters params;
                    params.covariance = cov;
                    params.niter = reps + 2;
                    params.tol = 0;
                    // Consecutive EM iterations of one model, as training
                    // runs them; the first two (warm-up, and the re-seeding
                    // of the components the arbitrary start leaves empty)
                    // are not timed.
                    GaussianMixture model = model0;
                    std::vector<double> kernel_ms;
                    gpu::run_em_on_device(&model, &estep, params, &kernel_ms);
                    std::vector<double> te, ti;
                    int reseeded = 0;
                    for (int r = 2; r < params.niter; r++) {
                        te.push_back(kernel_ms[r]);
                        ti.push_back(model.iteration_stats[r].time_s * 1000);
                        reseeded += model.iteration_stats[r].n_reseeded > 0;
                    }
                    if (reseeded > 0) {
                        fprintf(
                            stderr,
                            "note: %d timed iterations re-seeded "
                            "components (host M-step)\n",
                            reseeded);
                    }
                    row->estep = median(te);
                    row->iter = median(ti);
                    row->mem_mb = estep.device_bytes() / 1e6;
                };
                Row row{s, cov, p, 0, 0, 0, 0, 0, 0, 0};
                measure(hopper, &row);
                if (p == EStepPrecision::BF16) {
                    row.public_ = public_kernel_ms(s, cov);
                    if (compare_sm80) {
                        Row old = row;
                        measure(false, &old);
                        row.sm80 = old.estep;
                    }
                }
                if (do_gemm && full) {
                    const Shape whiten{s.n, s.d, s.k * s.d};
                    row.gemm =
                        gemm_ms(handle, p, whiten, x_dev, chol_dev, reps);
                    row.batched =
                        batched_gemm_ms(handle, p, s, x_dev, chol_dev, reps);
                } else if (do_gemm) {
                    row.gemm = gemm_ms(handle, p, s, x_dev, means_dev, reps);
                }
                printf(
                    "%" PRId64 "x%d K=%d %-9s %s: E-step %.2f ms, "
                    "iteration %.2f ms, GEMM %.2f ms, E/GEMM %.2f, "
                    "iter/E %.3f, extra memory %.1f MB, sm80 E-step %.2f ms, "
                    "public kernel %.2f ms\n",
                    s.n,
                    s.d,
                    s.k,
                    covariance_type_name(cov),
                    gpu::estep_precision_name(p),
                    row.estep,
                    row.iter,
                    row.gemm,
                    row.gemm > 0 ? row.estep / row.gemm : 0,
                    row.iter / row.estep,
                    row.mem_mb,
                    row.sm80,
                    row.public_);
                if (full) {
                    printf(
                        "  full: GEMM = whitening product %" PRId64
                        " x %d by %d x %d; as %d batched GEMMs %.2f ms "
                        "(E/batched %.2f)\n",
                        s.n,
                        s.d,
                        s.d,
                        s.k * s.d,
                        s.k,
                        row.batched,
                        row.batched > 0 ? row.estep / row.batched : 0);
                }
                fflush(stdout);
                rows.push_back(row);
            }
            cudaFree(chol_dev);
        }
        cudaFree(means_dev);
        cudaFree(x_dev);
    }

    if (do_stream) {
        const Shape& s = stream_shape;
        const double peak = pinned_copy_peak();
        std::vector<float> x(size_t(s.n) * s.d);
        fill_data(s.n, s.d, x.data(), 2);
        const GaussianMixture model =
            bench_model(s.d, s.k, CovarianceType::Spherical, x.data(), s.n);
        gpu::GpuEmConfig config;
        config.device = device;
        config.precision = stream_prec;
        config.force_gemm_path = force_gemm_path;
        config.hopper_estep = hopper;
        config.max_device_memory = size_t(stream_budget_gb * 1e9);
        const double t0 = faiss::getmillisecs();
        gpu::GpuEStep estep(s.n, x.data(), s.d, false, config);
        const double setup = faiss::getmillisecs() - t0;
        std::vector<double> te;
        for (int r = 0; r <= std::min(reps, 3); r++) {
            GmmSufficientStats st(s.d, s.k, model.covariance);
            estep.compute(model, &st);
            if (r > 0) {
                te.push_back(estep.last_kernel_ms());
            }
        }
        const double ms = median(te);
        const double gb = double(s.n) * s.d * 4 / 1e9;
        printf(
            "stream %" PRId64 "x%d K=%d spherical %s: %.1f GB of host data, "
            "budget %.1f GB, chunk %" PRId64 " rows (streaming: %s), "
            "setup %.2f s, E-step %.1f ms = %.1f GB/s; pinned copy peak "
            "%.1f GB/s (%.0f%%)\n",
            s.n,
            s.d,
            s.k,
            gpu::estep_precision_name(stream_prec),
            gb,
            stream_budget_gb,
            int64_t(estep.chunk_rows()),
            estep.is_streaming() ? "yes" : "no",
            setup / 1000,
            ms,
            gb / (ms / 1000),
            peak,
            100 * gb / (ms / 1000) / peak);
    }

    printf(
        "\n%-16s %-9s %-4s %9s %9s %9s %7s %7s %9s %8s %8s %8s\n",
        "shape",
        "cov",
        "prec",
        "E ms",
        "iter ms",
        "GEMM ms",
        "E/GEMM",
        "iter/E",
        "mem MB",
        "sm80 ms",
        "pub ms",
        "pub/E");
    for (const Row& r : rows) {
        char shape[64];
        snprintf(
            shape, sizeof(shape), "%" PRId64 "x%d,K%d", r.s.n, r.s.d, r.s.k);
        printf(
            "%-16s %-9s %-4s %9.2f %9.2f %9.2f %7.2f %7.3f %9.1f %8.2f %8.2f "
            "%8.2f\n",
            shape,
            covariance_type_name(r.cov),
            gpu::estep_precision_name(r.p),
            r.estep,
            r.iter,
            r.gemm,
            r.gemm > 0 ? r.estep / r.gemm : 0,
            r.iter / r.estep,
            r.mem_mb,
            r.sm80,
            r.public_,
            r.public_ > 0 ? r.public_ / r.estep : 0);
    }
    cublasDestroy(handle);
    return 0;
}

int main(int argc, char** argv) {
    // a bad option value or an unusable device: one line, exit status 1
    try {
        return bench_em_main(argc, argv);
    } catch (const std::exception& e) {
        fprintf(stderr, "bench_em: %s\n", e.what());
        return 1;
    }
}
