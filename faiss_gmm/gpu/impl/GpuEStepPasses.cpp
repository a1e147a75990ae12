/**
 * GPU E-step: the data feed of a GpuEStep (resident rows, or chunks streamed
 * on two buffers while the other is computed) and the E-step dispatch
 * (the prepared bf16, fused, GEMM or sm_90a kernels; full covariance:
 * GpuEStepFull.cpp).
 */

#include <faiss_gmm/gpu/impl/GpuEStepImpl.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <faiss/impl/FaissAssert.h>

#include <kernels/gmm_estep.h>
#include <kernels/gmm_estep_gemm.h>
#include <kernels/gmm_estep_sm90.h>
#include <kernels/gmm_mstep.h>

namespace faiss_gmm {
namespace gpu {

using namespace detail;
namespace kn = faiss_gmm::kernels;

void GpuEStep::Impl::run_gemm_passes(
    const kn::EStepModel& m, idx_t rows, const float* x) {
    cudaStream_t s = compute_stream.get();
    allocate_gemm_buffers(m);
    const kn::EStepAccumulators a = accumulators();
    const bool bf16 = m.math == kn::EStepMath::BF16;
    const cudaDataType_t in_type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t compute = cublas_compute_type(m.math);
    // P overwrites the logits in place unless it has its own type.
    void* probs = kn::estep_gemm_separate_probabilities(m.math)
                      ? gemm_probs.as<void>()
                      : gemm_logits.as<void>();
    const float one = 1.0f, zero = 0.0f;
    for (idx_t off = 0; off < rows; off += gemm_rows) {
        const int r = int(std::min(gemm_rows, rows - off));
        check_cuda(
            kn::gmm_estep_gemm_prepare(
                m,
                r,
                x + size_t(off) * d,
                gemm_points.as<void>(),
                gemm_norms.as<float>(),
                s),
            "launching the GEMM-path point preparation");
        check_cublas(
            cublasGemmEx(
                cublas.get(),
                CUBLAS_OP_T,
                CUBLAS_OP_N,
                m.k_pad,
                r,
                m.depth,
                &one,
                m.component_matrix,
                in_type,
                m.depth,
                gemm_points.as<const void>(),
                in_type,
                m.depth,
                &zero,
                gemm_logits.as<void>(),
                CUDA_R_32F,
                m.k_pad,
                compute,
                CUBLAS_GEMM_DEFAULT),
            "the logits GEMM (points x components) of the E-step");
        check_cuda(
            kn::gmm_estep_gemm_log_norm(
                m,
                r,
                gemm_logits.as<const float>(),
                gemm_norms.as<const float>(),
                gemm_log2_z.as<float>(),
                gemm_partials.as<double>(),
                a.log_likelihood,
                s),
            "launching the GEMM-path log-normaliser");
        check_cuda(
            kn::gmm_estep_gemm_probabilities(
                m,
                r,
                gemm_logits.as<const float>(),
                gemm_norms.as<const float>(),
                gemm_log2_z.as<const float>(),
                probs,
                a,
                s),
            "launching the GEMM-path responsibilities");
        check_cublas(
            cublasGemmEx(
                cublas.get(),
                CUBLAS_OP_N,
                CUBLAS_OP_T,
                m.depth,
                m.k_pad,
                r,
                &one,
                gemm_points.as<const void>(),
                in_type,
                m.depth,
                probs,
                in_type,
                m.k_pad,
                &zero,
                gemm_stats.as<void>(),
                CUDA_R_32F,
                m.depth,
                compute,
                CUBLAS_GEMM_DEFAULT),
            "the statistics GEMM (responsibilities x points) of the "
            "E-step");
        check_cuda(
            kn::gmm_estep_gemm_add_statistics(
                m, gemm_stats.as<const float>(), a, s),
            "launching the GEMM-path statistics accumulation");
    }
}

idx_t GpuEStep::Impl::run_timed() {
    cudaStream_t s = compute_stream.get();
    const kn::EStepModel m = kernel_model();
    check_cuda(cudaEventRecord(start.get(), s), "recording an event");
    const idx_t seen = run_all(m);
    if (model_full) {
        // the rows since the last fold (every statistic is then in the
        // double accumulator before the stop event)
        flush_full_statistics();
    }
    check_cuda(cudaEventRecord(stop.get(), s), "recording an event");
    return seen;
}

double GpuEStep::Impl::read_kernel_ms() {
    float ms = 0;
    check_cuda(
        cudaEventElapsedTime(&ms, start.get(), stop.get()),
        "reading the E-step timer");
    last_kernel_ms = ms;
    return ms;
}

void GpuEStep::Impl::run_passes(
    const kn::EStepModel& m, idx_t rows, const float* x) {
    if (model_full) {
        run_full_passes(rows, x);
        return;
    }
    cudaStream_t s = compute_stream.get();
    const kn::EStepAccumulators a = accumulators();
    if (uses_gemm_path(m.depth)) {
        run_gemm_passes(m, rows, x);
        return;
    }
    FAISS_THROW_IF_NOT_FMT(
        prep_rows > 0 && m.depth <= prep_depth,
        "GPU E-step: no prepared-point buffer planned for depth %d",
        m.depth);
    if (!prepared.bytes()) {
        prepared.allocate(
            size_t(prep_rows) * prep_depth * 2,
            "the bf16 copy of the points",
            &device_bytes);
        prepared_norms.allocate(
            size_t(prep_rows) * 4, "the point norms", &device_bytes);
    }
    const bool hopper =
        config.hopper_estep && kn::estep_sm90_supports(m, cc_major, cc_minor);
    // prep_rows is a multiple of 64: sub-chunks keep the tile grid.
    for (idx_t off = 0; off < rows; off += prep_rows) {
        const idx_t r = std::min(prep_rows, rows - off);
        const float* xs = x + size_t(off) * d;
        check_cuda(
            kn::gmm_estep_prepare_points(
                m, r, xs, prepared.as<void>(), prepared_norms.as<float>(), s),
            "launching the E-step point conversion");
        if (hopper) {
            check_cuda(
                kn::gmm_estep_sm90(
                    m,
                    r,
                    prepared.as<const void>(),
                    prepared_norms.as<const float>(),
                    log2_z.as<float>(),
                    scratch.as<double>(),
                    a,
                    num_sms,
                    s),
                "launching the Hopper E-step");
            continue;
        }
        check_cuda(
            kn::gmm_estep_log_norm(
                m,
                r,
                prepared.as<const void>(),
                prepared_norms.as<const float>(),
                log2_z.as<float>(),
                scratch.as<double>(),
                a,
                s),
            "launching the E-step log-normaliser pass");
        check_cuda(
            kn::gmm_estep_statistics(
                m,
                r,
                prepared.as<const void>(),
                prepared_norms.as<const float>(),
                log2_z.as<const float>(),
                a,
                num_sms,
                s),
            "launching the E-step statistics pass");
    }
}

idx_t GpuEStep::Impl::run_all(const kn::EStepModel& m) {
    cudaStream_t s = compute_stream.get();
    if (source == Source::Device || source == Source::HostResident) {
        run_passes(m, n, x_device);
        return n;
    }
    cudaStream_t cs = copy_stream.get();
    if (source == Source::Callback) {
        callback->rewind();
    }
    idx_t seen = 0;
    for (int64_t c = 0;; c++) {
        const int b = int(c & 1);
        // The kernels of chunk c - 2 must be done with this buffer.
        check_cuda(
            cudaStreamWaitEvent(cs, consumed[b].get(), 0),
            "ordering the chunk copy");
        idx_t rows = 0;
        const float* src = nullptr;
        if (source == Source::Callback ||
            (source == Source::HostStream && !host_registered)) {
            // The pinned buffer's previous copy must be finished.
            check_cuda(
                cudaEventSynchronize(copied[b].get()),
                "waiting for a chunk copy");
            if (source == Source::Callback) {
                rows = callback->next(chunk, pinned[b].data());
                FAISS_THROW_IF_NOT_FMT(
                    rows >= 0 && rows <= chunk,
                    "GpuChunkSource::next returned %" PRId64
                    " rows for at most %" PRId64,
                    int64_t(rows),
                    int64_t(chunk));
            } else {
                rows = std::min(chunk, n - seen);
                std::memcpy(
                    pinned[b].data(),
                    x_host + size_t(seen) * d,
                    size_t(rows) * d * 4);
            }
            src = pinned[b].data();
        } else {
            rows = std::min(chunk, n - seen);
            src = x_host + size_t(seen) * d;
        }
        if (rows == 0) {
            break;
        }
        check_cuda(
            cudaMemcpyAsync(
                chunk_buf[b].as<void>(),
                src,
                size_t(rows) * d * 4,
                cudaMemcpyHostToDevice,
                cs),
            "copying a chunk to the device");
        check_cuda(
            cudaEventRecord(copied[b].get(), cs), "recording a copy event");
        check_cuda(
            cudaStreamWaitEvent(s, copied[b].get(), 0),
            "ordering the chunk kernels");
        run_passes(m, rows, chunk_buf[b].as<const float>());
        check_cuda(
            cudaEventRecord(consumed[b].get(), s), "recording a kernel event");
        seen += rows;
        if (source == Source::HostStream && seen >= n) {
            break;
        }
    }
    return seen;
}

} // namespace gpu
} // namespace faiss_gmm
