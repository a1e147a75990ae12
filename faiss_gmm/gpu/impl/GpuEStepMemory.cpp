/**
 * GPU E-step: the memory plan of a GpuEStep (resident or streamed data, the
 * prepared-point and GEMM paths) and the buffers it sizes.
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

void GpuEStep::Impl::plan(
    idx_t rows, bool data_on_device, size_t reserve_model) {
    cudaDeviceProp prop;
    check_cuda(
        cudaGetDeviceProperties(&prop, config.device),
        "querying the device properties");
    num_sms = prop.multiProcessorCount;
    cc_major = prop.major;
    cc_minor = prop.minor;
    const size_t avail = budget();
    const size_t per_row_resident = size_t(d) * 4 + 4 + 1;
    FAISS_THROW_IF_NOT_FMT(
        avail > reserve_model,
        "GPU E-step: device memory budget %zu bytes is smaller than "
        "the model buffers (%zu bytes)",
        avail,
        reserve_model);
    size_t left = avail - reserve_model;
    reserve_prepared(rows, left);
    reserve_gemm(left);
    const bool force_chunks = config.chunk_rows > 0 && config.chunk_rows < rows;
    if (data_on_device ||
        (!force_chunks && size_t(rows) * per_row_resident <= left)) {
        chunk = rows;
        return;
    }
    // Two chunk buffers (data) + one log2 Z buffer + the scratch.
    const size_t per_row_stream = 2 * size_t(d) * 4 + 4 + 1;
    idx_t fit = idx_t(left / per_row_stream) / 64 * 64;
    if (config.chunk_rows > 0) {
        fit = std::min(fit, config.chunk_rows);
    }
    FAISS_THROW_IF_NOT_FMT(
        fit >= 1,
        "GPU E-step: device memory budget %zu bytes leaves no room "
        "for a chunk of %d-d rows",
        avail,
        d);
    chunk = std::min<idx_t>(fit, rows);
}

void GpuEStep::Impl::reserve_prepared(idx_t rows, size_t& left) {
    prep_rows = 0;
    prep_depth = 0;
    if (config.precision != EStepPrecision::BF16) {
        return;
    }
    kn::EStepModel probe;
    probe.math = kn::EStepMath::BF16;
    for (bool diagonal : {true, false}) {
        probe.depth = kn::estep_depth(d, diagonal);
        if (!uses_gemm_path(probe.depth)) {
            prep_depth = probe.depth;
            break;
        }
    }
    if (prep_depth == 0) {
        return;
    }
    const size_t row_bytes = size_t(prep_depth) * 2 + 4;
    const size_t cap = std::min(kPreparedBytes, left / 4) / row_bytes;
    prep_rows = std::max<idx_t>(
        64,
        std::min<idx_t>(
            kn::estep_padded_rows(std::max<idx_t>(rows, 1)),
            idx_t(cap) / 64 * 64));
    left -= std::min(left, size_t(prep_rows) * row_bytes);
}

void GpuEStep::Impl::reserve_gemm(size_t& left) {
    gemm_budget = 0;
    if (!uses_gemm_path(kn::estep_depth(d, true))) {
        return;
    }
    gemm_budget = std::min(kGemmChunkBytes, left / 4);
    left -= gemm_budget;
}

void GpuEStep::Impl::create_cublas() {
    cublas.create(compute_stream.get());
    if (!gemm_workspace.bytes()) {
        gemm_workspace.allocate(
            kCublasWorkspaceBytes, "the cuBLAS workspace", &device_bytes);
        check_cublas(
            cublasSetWorkspace(
                cublas.get(),
                gemm_workspace.as<void>(),
                gemm_workspace.bytes()),
            "setting the cuBLAS workspace");
    }
}

void GpuEStep::Impl::allocate_gemm_buffers(const kn::EStepModel& m) {
    create_cublas();
    if (gemm_rows > 0 && gemm_k_pad == m.k_pad && gemm_depth == m.depth) {
        return;
    }
    DeviceBuffer* buffers[] = {
        &gemm_points,
        &gemm_norms,
        &gemm_logits,
        &gemm_probs,
        &gemm_log2_z,
        &gemm_partials,
        &gemm_stats};
    for (DeviceBuffer* b : buffers) {
        device_bytes -= b->bytes();
        b->release();
    }
    gemm_rows = 0;
    constexpr idx_t align = kn::kEStepGemmRowAlign;
    const size_t row_bytes = size_t(kn::estep_gemm_row_bytes(m));
    const idx_t fit = idx_t(gemm_budget / row_bytes) / align * align;
    const idx_t pass_rows =
        (std::max<idx_t>(chunk, 1) + align - 1) / align * align;
    const idx_t rows = std::min(std::max(fit, align), pass_rows);
    const size_t element = kn::estep_gemm_element_bytes(m.math);
    gemm_points.allocate(
        size_t(rows) * m.depth * element,
        "the GEMM path's centred points",
        &device_bytes);
    gemm_norms.allocate(
        size_t(rows) * 4, "the GEMM path's point norms", &device_bytes);
    gemm_logits.allocate(
        size_t(rows) * m.k_pad * 4,
        "the GEMM path's logits chunk",
        &device_bytes);
    if (kn::estep_gemm_separate_probabilities(m.math)) {
        gemm_probs.allocate(
            size_t(rows) * m.k_pad * element,
            "the GEMM path's responsibilities chunk",
            &device_bytes);
    }
    gemm_log2_z.allocate(
        size_t(rows) * 4, "the GEMM path's log2 Z", &device_bytes);
    gemm_partials.allocate(
        size_t(kn::estep_gemm_partials(rows)) * 8,
        "the GEMM path's log-likelihood partials",
        &device_bytes);
    gemm_stats.allocate(
        size_t(m.k_pad) * m.depth * 4,
        "the GEMM path's statistics product",
        &device_bytes);
    gemm_rows = rows;
    gemm_k_pad = m.k_pad;
    gemm_depth = m.depth;
    if (config.verbose) {
        printf(
            "GPU E-step: cuBLAS path for logits depth %d, K = %d: chunks "
            "of %" PRId64 " rows, %.1f MB of device memory in all\n",
            m.depth,
            m.k,
            int64_t(rows),
            device_bytes / 1e6);
    }
}

void GpuEStep::Impl::allocate_row_buffers(idx_t rows) {
    log2_z.allocate(
        size_t(kn::estep_padded_rows(rows)) * 4,
        "log2 Z (one float per row)",
        &device_bytes);
    scratch.allocate(
        size_t(kn::estep_log_norm_scratch(rows)) * 8,
        "log-likelihood partials",
        &device_bytes);
}

void GpuEStep::Impl::setup_streaming() {
    for (int b = 0; b < 2; b++) {
        chunk_buf[b].allocate(
            size_t(chunk) * d * 4, "a streamed chunk", &device_bytes);
    }
    allocate_row_buffers(chunk);
}

void GpuEStep::Impl::allocate_model(const GaussianMixture& model) {
    model_full = false;
    const int k = model.k;
    const bool diagonal = model.covariance == CovarianceType::Diagonal;
    model_tied = model.covariance == CovarianceType::TiedSpherical;
    if (k == model_k && diagonal == model_diagonal) {
        return;
    }
    const int kp = kn::estep_padded_components(k);
    const int depth = kn::estep_depth(d, diagonal);
    const int cols = kn::estep_output_columns(d);
    const size_t vpc = diagonal ? d : 1;
    std::vector<DeviceBuffer*> buffers = {
        &matrix,
        &center,
        &row_const,
        &row_scale,
        &row_norm,
        &mstep_scratch,
        &mstep_summary,
        &acc_count,
        &acc_sum1,
        &acc_sum2,
        &acc_ll};
    for (int b = 0; b < 2; b++) {
        buffers.insert(
            buffers.end(),
            {&model_means[b], &model_variances[b], &model_weights[b]});
    }
    // Release first so that a new k does not hold both sizes.
    for (DeviceBuffer* b : buffers) {
        device_bytes -= b->bytes();
        b->release();
    }
    const size_t element = config.precision == EStepPrecision::BF16 ? 2 : 4;
    matrix.allocate(
        size_t(kp) * depth * element, "the component matrix", &device_bytes);
    center.allocate(size_t(d) * 4, "the centre", &device_bytes);
    row_const.allocate(
        size_t(kp) * 4, "per-component constants", &device_bytes);
    row_scale.allocate(size_t(kp) * 4, "per-component scales", &device_bytes);
    row_norm.allocate(size_t(kp) * 4, "per-component norms", &device_bytes);
    for (int b = 0; b < 2; b++) {
        model_means[b].allocate(
            size_t(k) * d * 4, "the model means", &device_bytes);
        model_variances[b].allocate(
            size_t(k) * vpc * 4, "the model variances", &device_bytes);
        model_weights[b].allocate(
            size_t(k) * 4, "the model weights", &device_bytes);
    }
    mstep_scratch.allocate(
        size_t(kn::mstep_scratch_doubles(k)) * 8,
        "the M-step scratch",
        &device_bytes);
    mstep_summary.allocate(
        sizeof(kn::MStepSummary), "the M-step summary", &device_bytes);
    acc_count.allocate(size_t(kp) * 8, "the N_k accumulator", &device_bytes);
    acc_sum1.allocate(
        size_t(kp) * cols * 8, "the sum r x accumulator", &device_bytes);
    acc_sum2.allocate(
        size_t(kp) * (diagonal ? cols : 1) * 8,
        "the second-moment accumulator",
        &device_bytes);
    acc_ll.allocate(8, "the log-likelihood", &device_bytes);
    dl_count.allocate(acc_count.bytes(), "downloading N_k");
    dl_sum1.allocate(acc_sum1.bytes(), "downloading sum r x");
    dl_sum2.allocate(acc_sum2.bytes(), "downloading second moments");
    dl_ll.allocate(8, "downloading the log-likelihood");
    dl_summary.allocate(
        sizeof(kn::MStepSummary), "downloading the M-step summary");
    model_k = k;
    model_diagonal = diagonal;
    current = 0;
}

} // namespace gpu
} // namespace faiss_gmm
