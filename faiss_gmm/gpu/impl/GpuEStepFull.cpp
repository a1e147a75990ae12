/**
 * GPU E-step: the full-covariance path of a GpuEStep (kernels/
 * gmm_estep_full.h): its buffers, the upload and E-step form of the model,
 * the passes over a chunk (two cuBLAS products around the kernels) and the
 * statistics download.
 *
 * The M-step of a full model runs on the host (gmm_m_step: covariances,
 * floor, LAPACK Cholesky factors, re-seeding), once per iteration, from the
 * statistics downloaded here. Why not on the device: it is K Cholesky
 * factorisations of d x d matrices, K d^3 / 3 flops (0.7 GFLOP at K = 1024,
 * d = 128; 23 GFLOP at K = 4096, d = 256), against the E-step's 2 N K d^2
 * flops per product (34 TFLOP at 1M x 128, K = 1024): a small fraction of
 * an iteration even single-threaded on the host, it keeps the CPU and GPU
 * trainers on one M-step (same arithmetic, same re-seeding), and the
 * download of K (d^2 + d + 1) doubles (135 MB at K = 1024, d = 128) takes
 * a few milliseconds. The second moments come down in whitened
 * coordinates; mapping them back (two triangular solves per component,
 * 2 K d^3 flops in double) runs on the host threads with the download.
 */

#include <faiss_gmm/gpu/impl/GpuEStepImpl.h>

#include <algorithm>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/gpu/impl/GpuEStepFullPlan.h>
#include <kernels/gmm_estep_full.h>

namespace faiss_gmm {
namespace gpu {

using namespace detail;
namespace kn = faiss_gmm::kernels;

kn::EStepMath GpuEStep::Impl::full_math() const {
    return to_kernel_math(full_estep_precision(config.precision));
}

kn::FullEStepModel GpuEStep::Impl::full_kernel_model() const {
    kn::FullEStepModel m;
    m.d = d;
    m.k = full_k;
    m.math = full_math();
    m.products = full_products.as<const float>();
    m.offsets = full_offsets.as<const float>();
    m.log2_const = full_const.as<const float>();
    m.center = center.as<const float>();
    return m;
}

void GpuEStep::Impl::allocate_full(const GaussianMixture& model) {
    FAISS_THROW_IF_NOT_FMT(
        d <= kn::kEStepFullMaxDim,
        "GPU E-step: full covariance supports d <= %d, the model has d = %d",
        kn::kEStepFullMaxDim,
        d);
    const int k = model.k;
    const int d_pad = kn::estep_full_padded_dim(d);
    FAISS_THROW_IF_NOT_FMT(
        int64_t(k) * d_pad <= INT_MAX,
        "GPU E-step: full covariance with k = %d, d = %d is too large "
        "(k x d = %" PRId64 " whitened columns per point, at most %d)",
        k,
        d,
        int64_t(k) * d_pad,
        INT_MAX);
    model_full = true;
    create_cublas();
    if (center.bytes() != size_t(d) * 4) {
        device_bytes -= center.bytes();
        center.allocate(size_t(d) * 4, "the centre", &device_bytes);
    }
    if (k == full_k) {
        return;
    }
    DeviceBuffer* buffers[] = {
        &full_means,
        &full_weights,
        &full_cholesky,
        &full_products,
        &full_offsets,
        &full_const,
        &full_features,
        &full_z,
        &full_resp,
        &full_log_z,
        &full_stats,
        &full_acc,
        &full_ll};
    // Release first so that a new k does not hold both sizes.
    for (DeviceBuffer* b : buffers) {
        device_bytes -= b->bytes();
        b->release();
    }
    full_k = -1;
    full_rows = 0;
    const kn::FullFeatureLayout lay = kn::estep_full_feature_layout(d);
    const size_t kd = size_t(k) * d_pad;
    const size_t stats_values = size_t(kn::estep_full_statistics_values(d, k));
    const int64_t row_bytes = kn::estep_full_row_bytes(d, k);
    // Model, product matrix, offsets, constants (fp32), the statistics
    // product (fp32) and accumulator (fp64), the log-likelihood: what any
    // chunk needs beside its rows. An explicit budget must hold them and one
    // row; without one, an allocation that fails names itself.
    const size_t model_bytes = (size_t(k) * d * (1 + size_t(d)) +
                                2 * size_t(k) + size_t(d) * kd + kd) *
                                   4 +
                               stats_values * 12 + 8;
    FAISS_THROW_IF_NOT_FMT(
        config.max_device_memory == 0 ||
            device_bytes + model_bytes + size_t(row_bytes) <=
                config.max_device_memory,
        "GPU E-step: device memory budget %zu bytes is smaller than the "
        "full-covariance model and statistics (d = %d, k = %d: %zu bytes), "
        "one chunk row (%" PRId64 " bytes) and what the E-step holds "
        "already (%zu bytes)",
        config.max_device_memory,
        d,
        k,
        model_bytes,
        row_bytes,
        device_bytes);
    full_means.allocate(size_t(k) * d * 4, "the model means", &device_bytes);
    full_weights.allocate(size_t(k) * 4, "the model weights", &device_bytes);
    full_cholesky.allocate(
        size_t(k) * d * d * 4, "the precision Cholesky factors", &device_bytes);
    full_products.allocate(
        size_t(d) * kd * 4,
        "the full-covariance product matrix",
        &device_bytes);
    full_offsets.allocate(kd * 4, "the whitened mean offsets", &device_bytes);
    full_const.allocate(
        size_t(k) * 4, "per-component constants", &device_bytes);
    full_stats.allocate(
        stats_values * 4,
        "the full-covariance statistics product",
        &device_bytes);
    full_acc.allocate(
        stats_values * 8,
        "the full-covariance statistics accumulator",
        &device_bytes);
    full_ll.allocate(8, "the log-likelihood", &device_bytes);
    dl_full.allocate(stats_values * 8, "downloading the statistics");
    dl_full_ll.allocate(8, "downloading the log-likelihood");

    const size_t left = config.max_device_memory > 0
                            ? (config.max_device_memory > device_bytes
                                   ? config.max_device_memory - device_bytes
                                   : 0)
                            : budget();
    const idx_t rows = full_estep_chunk_rows(
        row_bytes, full_estep_chunk_budget(left), std::max<idx_t>(chunk, 1));
    full_features.allocate(
        size_t(rows) * lay.cols * 4,
        "the full-covariance feature rows",
        &device_bytes);
    full_z.allocate(
        size_t(rows) * kd * 4, "the whitened points chunk", &device_bytes);
    full_resp.allocate(
        size_t(rows) * k * 4, "the responsibilities chunk", &device_bytes);
    full_log_z.allocate(size_t(rows) * 8, "ln Z per point", &device_bytes);
    full_rows = rows;
    full_k = k;
    full_pending = 0;
    if (config.verbose) {
        printf(
            "GPU E-step: full covariance, d = %d, K = %d, %s: chunks of "
            "%" PRId64 " rows (%.1f MB each), %.1f MB of device memory in "
            "all\n",
            d,
            k,
            estep_precision_name(full_estep_precision(config.precision)),
            int64_t(rows),
            double(rows) * row_bytes / 1e6,
            device_bytes / 1e6);
    }
}

void GpuEStep::Impl::upload_full_model(
    const GaussianMixture& model, bool new_center) {
    const size_t k = size_t(model.k);
    FAISS_THROW_IF_NOT_FMT(
        model.k == full_k && model.means.size() == k * d &&
            model.weights.size() == k &&
            model.precision_cholesky.size() == k * d * d,
        "GPU E-step: full model (d = %d, k = %d) holds %zu means, %zu "
        "weights and %zu precision Cholesky values (want %zu, %zu, %zu; "
        "update_precision_cholesky() computes the factors)",
        model.d,
        model.k,
        model.means.size(),
        model.weights.size(),
        model.precision_cholesky.size(),
        k * d,
        k,
        k * d * d);
    cudaStream_t s = compute_stream.get();
    upload_floats(
        {
            {&full_means, &model.means, "uploading the means"},
            {&full_weights, &model.weights, "uploading the weights"},
            {&full_cholesky,
             &model.precision_cholesky,
             "uploading the precision Cholesky factors"},
        },
        s);
    if (new_center) {
        upload_center(model);
    }
}

void GpuEStep::Impl::prepare_full_model() {
    cudaStream_t s = compute_stream.get();
    check_cuda(
        kn::gmm_estep_full_prepare_model(
            d,
            full_k,
            full_math(),
            full_means.as<const float>(),
            full_weights.as<const float>(),
            full_cholesky.as<const float>(),
            center.as<const float>(),
            full_products.as<float>(),
            full_offsets.as<float>(),
            full_const.as<float>(),
            s),
        "launching the full-covariance model preparation");
    zero_accumulators({&full_acc, &full_ll}, s);
    full_pending = 0;
}

void GpuEStep::Impl::run_full_passes(idx_t rows, const float* x) {
    cudaStream_t s = compute_stream.get();
    const kn::FullEStepModel m = full_kernel_model();
    const kn::FullFeatureLayout lay = kn::estep_full_feature_layout(d);
    const int kd = full_k * kn::estep_full_padded_dim(d);
    const cublasComputeType_t compute = cublas_compute_type(m.math);
    const float one = 1.0f, zero = 0.0f;
    for (idx_t off = 0; off < rows; off += full_rows) {
        const int r = int(std::min(full_rows, rows - off));
        check_cuda(
            kn::gmm_estep_full_features(
                m, r, x + size_t(off) * d, full_features.as<float>(), s),
            "launching the full-covariance feature rows");
        // cuBLAS is column-major: a row-major a x b matrix (ld b) is its
        // b x a transpose. Z (r x kd, row-major) is thus the column-major
        // kd x r matrix Z^T = W^T F_d^T, where W^T is W (d x kd row-major)
        // read as kd x d (ld kd) and F_d^T the first d columns of the
        // feature rows read as d x r (ld cols): gemm(N, N), m = kd, n = r,
        // k = d.
        check_cublas(
            cublasGemmEx(
                cublas.get(),
                CUBLAS_OP_N,
                CUBLAS_OP_N,
                kd,
                r,
                d,
                &one,
                m.products,
                CUDA_R_32F,
                kd,
                full_features.as<const void>(),
                CUDA_R_32F,
                lay.cols,
                &zero,
                full_z.as<void>(),
                CUDA_R_32F,
                kd,
                compute,
                CUBLAS_GEMM_DEFAULT),
            "the whitening GEMM (points x Cholesky factors) of the "
            "full-covariance E-step");
        check_cuda(
            kn::gmm_estep_full_responsibilities(
                m,
                r,
                full_z.as<const float>(),
                full_resp.as<float>(),
                full_log_z.as<double>(),
                full_ll.as<double>(),
                s),
            "launching the full-covariance responsibilities");
        if (full_estep_must_fold(full_pending, r)) {
            flush_full_statistics(); // (full_pending is 0 again: beta 0)
        }
        // S (k x cols, row-major) is the column-major cols x k matrix
        // S^T = F^T R: F^T is the feature rows read as cols x r (ld cols),
        // R (r x k row-major) read as k x r (ld k) and transposed:
        // gemm(N, T), m = cols, n = k, k = r. beta = 1 adds to the rows
        // since the last fold.
        check_cublas(
            cublasGemmEx(
                cublas.get(),
                CUBLAS_OP_N,
                CUBLAS_OP_T,
                lay.cols,
                full_k,
                r,
                &one,
                full_features.as<const void>(),
                CUDA_R_32F,
                lay.cols,
                full_resp.as<const void>(),
                CUDA_R_32F,
                full_k,
                full_pending > 0 ? &one : &zero,
                full_stats.as<void>(),
                CUDA_R_32F,
                lay.cols,
                compute,
                CUBLAS_GEMM_DEFAULT),
            "the statistics GEMM (responsibilities x features) of the "
            "full-covariance E-step");
        check_cuda(
            kn::gmm_estep_full_weighted_residuals(
                m, r, full_resp.as<const float>(), full_z.as<float>(), s),
            "launching the full-covariance weighted residuals");
        // M_j (+)= Y_j^T Y_j: Y (r x kd, row-major) is the column-major
        // kd x r matrix Y^T; component j's block is its rows [j d_pad,
        // j d_pad + d), a d x r matrix at offset j d_pad (ld kd):
        // gemm(N, T), m = n = d, k = r, K batches d_pad apart, outputs d x d
        // (symmetric) d^2 apart after S.
        check_cublas(
            cublasGemmStridedBatchedEx(
                cublas.get(),
                CUBLAS_OP_N,
                CUBLAS_OP_T,
                d,
                d,
                r,
                &one,
                full_z.as<const void>(),
                CUDA_R_32F,
                kd,
                kn::estep_full_padded_dim(d),
                full_z.as<const void>(),
                CUDA_R_32F,
                kd,
                kn::estep_full_padded_dim(d),
                full_pending > 0 ? &one : &zero,
                full_stats.as<float>() + size_t(full_k) * lay.cols,
                CUDA_R_32F,
                d,
                int64_t(d) * d,
                full_k,
                compute,
                CUBLAS_GEMM_DEFAULT),
            "the second-moment GEMMs (whitened residuals, one per component) "
            "of the full-covariance E-step");
        full_pending += r;
    }
}

void GpuEStep::Impl::flush_full_statistics() {
    if (full_pending == 0) {
        return;
    }
    const int64_t count = kn::estep_full_statistics_values(d, full_k);
    check_cuda(
        kn::gmm_estep_full_add_statistics(
            count,
            full_stats.as<const float>(),
            full_acc.as<double>(),
            compute_stream.get()),
        "launching the full-covariance statistics accumulation");
    full_pending = 0;
}

void GpuEStep::Impl::download_full(
    const GaussianMixture& model, idx_t rows, GmmSufficientStats* stats) {
    FAISS_THROW_IF_NOT_FMT(
        model_full && model.covariance == CovarianceType::Full &&
            model.d == d && model.k == full_k &&
            model.precision_cholesky.size() == size_t(full_k) * d * d &&
            stats->sum_outer.size() == size_t(full_k) * d * d,
        "GpuEStep::download: full model (d=%d, k=%d, %zu precision "
        "Cholesky values) and statistics (%zu second-moment values) are "
        "not those of the last launch (d=%d, k=%d)",
        model.d,
        model.k,
        model.precision_cholesky.size(),
        stats->sum_outer.size(),
        d,
        full_k);
    cudaStream_t s = compute_stream.get();
    check_cuda(
        cudaMemcpyAsync(
            dl_full.as<void>(),
            full_acc.as<void>(),
            full_acc.bytes(),
            cudaMemcpyDeviceToHost,
            s),
        "downloading the full-covariance statistics");
    check_cuda(
        cudaMemcpyAsync(
            dl_full_ll.as<void>(),
            full_ll.as<void>(),
            8,
            cudaMemcpyDeviceToHost,
            s),
        "downloading the log-likelihood");
    check_cuda(cudaStreamSynchronize(s), "running the E-step");
    read_kernel_ms();
    const kn::FullFeatureLayout lay = kn::estep_full_feature_layout(d);
    const double* acc = dl_full.doubles();
    const float* c = h_center.data();
    const int k = full_k;
    stats->n += rows;
    stats->log_likelihood += dl_full_ll.doubles()[0];
    // Row j of S: sum r x' (x' = x - c) and N_j; block j of M: the
    // whitened second moments about the old mean mu_j, mapped back with the
    // factor the product used (kernels/gmm_estep_full.h, step 6).
    const double* moments = acc + size_t(k) * lay.cols;
    const EStepPrecision prec = config.precision;
    const bool team = faiss_gmm::impl::lapack_per_component_in_team(k, d);
    const faiss_gmm::impl::OpenBlasOneThread blas_one_thread(team);
#pragma omp parallel for schedule(dynamic) if (team)
    for (int j = 0; j < k; j++) {
        const double* row = acc + size_t(j) * lay.cols;
        const double nk = row[lay.one];
        stats->count[j] += nk;
        double* sx = stats->sum_x.data() + size_t(j) * d;
        for (int l = 0; l < d; l++) {
            sx[l] += row[l] + nk * double(c[l]);
        }
        const float* uj = model.precision_cholesky.data() + size_t(j) * d * d;
        std::vector<double> u(size_t(d) * d), mj(size_t(d) * d);
        for (size_t e = 0; e < u.size(); e++) {
            u[e] = double(full_estep_factor_value(uj[e], prec));
        }
        std::copy(
            moments + size_t(j) * d * d,
            moments + size_t(j + 1) * d * d,
            mj.begin());
        add_unwhitened_moments(
            d,
            u.data(),
            mj.data(),
            stats->sum_outer.data() + size_t(j) * d * d);
    }
}

} // namespace gpu
} // namespace faiss_gmm
