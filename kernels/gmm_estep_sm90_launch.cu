// Host side of the Hopper E-step (gmm_estep_sm90.h): tensor maps, grids,
// dispatch over (covariance, depth). Compiled for sm_90a only (CMake adds
// this file when the CUDA architectures include 90); the kernels are in
// gmm_estep_sm90_log_norm.cuh and gmm_estep_sm90_statistics.cuh.

#include <kernels/gmm_estep_sm90.h>

#include <algorithm>
#include <cstdint>

#include <cuda.h>
#include <cudaTypedefs.h>

#include <kernels/gmm_estep_sm90_log_norm.cuh>
#include <kernels/gmm_estep_sm90_statistics.cuh>
#include <kernels/gmm_estep_sm90_tile.h>

namespace faiss_gmm {
namespace kernels {

namespace {

using sm90::kBoxColumns;

/// cuTensorMapEncodeTiled through the runtime's driver entry point (no
/// link against libcuda); null when the driver does not provide it.
PFN_cuTensorMapEncodeTiled_v12000 encode_tiled() {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void* ptr = nullptr;
        cudaDriverEntryPointQueryResult status;
        if (cudaGetDriverEntryPointByVersion(
                "cuTensorMapEncodeTiled",
                &ptr,
                12000,
                cudaEnableDefault,
                &status) != cudaSuccess ||
            status != cudaDriverEntryPointSuccess) {
            return PFN_cuTensorMapEncodeTiled_v12000(nullptr);
        }
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(ptr);
    }();
    return fn;
}

/// Tensor map of a row-major rows x depth bf16 matrix, boxes of 64 columns x
/// box_rows rows, 128-byte swizzle, zero fill out of bounds.
cudaError_t make_map(
    CUtensorMap* map, const void* base, int64_t rows, int depth, int box_rows) {
    PFN_cuTensorMapEncodeTiled_v12000 encode = encode_tiled();
    if (!encode) {
        return cudaErrorNotSupported;
    }
    const cuuint64_t dims[2] = {cuuint64_t(depth), cuuint64_t(rows)};
    const cuuint64_t strides[1] = {cuuint64_t(depth) * 2};
    const cuuint32_t box[2] = {cuuint32_t(kBoxColumns), cuuint32_t(box_rows)};
    const cuuint32_t elem_strides[2] = {1, 1};
    const CUresult r = encode(
        map,
        CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        2,
        const_cast<void*>(base),
        dims,
        strides,
        box,
        elem_strides,
        CU_TENSOR_MAP_INTERLEAVE_NONE,
        CU_TENSOR_MAP_SWIZZLE_128B,
        CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

/// Raises the kernel's dynamic shared-memory limit to smem and launches it
/// with kThreads threads per CTA.
template <typename Kernel, typename... Args>
cudaError_t launch_kernel(
    Kernel kernel,
    dim3 grid,
    size_t smem,
    cudaStream_t stream,
    const Args&... args) {
    cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (err != cudaSuccess) {
        return err;
    }
    kernel<<<grid, sm90::kThreads, smem, stream>>>(args...);
    return cudaGetLastError();
}

template <bool DIAG, int DEPTH>
cudaError_t launch(
    const EStepModel& m,
    int64_t n,
    const void* prepared,
    const float* norms,
    float* log2_z,
    double* scratch,
    const EStepAccumulators& acc,
    int num_sms,
    cudaStream_t stream) {
    const int64_t rows = estep_padded_rows(n);
    CUtensorMap points_ln, points_stat, comps_ln, comps_stat;
    cudaError_t err;
    if ((err = make_map(&points_ln, prepared, rows, DEPTH, sm90::kLnPoints)) !=
            cudaSuccess ||
        (err = make_map(
             &points_stat, prepared, rows, DEPTH, sm90::kStatPoints)) !=
            cudaSuccess ||
        (err = make_map(
             &comps_ln,
             m.component_matrix,
             m.k_pad,
             DEPTH,
             sm90::kLnComponents)) != cudaSuccess ||
        (err = make_map(
             &comps_stat,
             m.component_matrix,
             m.k_pad,
             DEPTH,
             sm90::kStatComponents)) != cudaSuccess) {
        return err;
    }

    // Pass 1: one CTA per 256 points.
    sm90::LnParams lp;
    lp.norms = norms;
    lp.row_const = m.row_const;
    lp.row_scale = m.row_scale;
    lp.row_norm = m.row_norm;
    lp.log2_z = log2_z;
    lp.partials = scratch;
    lp.n = n;
    lp.rows = rows;
    lp.k_pad = m.k_pad;
    const int64_t ln_blocks = (rows + sm90::kLnPoints - 1) / sm90::kLnPoints;
    if ((err = launch_kernel(
             sm90::log_norm_sm90_kernel<DIAG, DEPTH>,
             dim3(unsigned(ln_blocks)),
             sm90::ln_layout(DEPTH).bytes,
             stream,
             points_ln,
             comps_ln,
             lp)) != cudaSuccess) {
        return err;
    }
    if ((err = gmm_estep_sum_partials(
             ln_blocks, scratch, acc.log_likelihood, stream)) != cudaSuccess) {
        return err;
    }

    // Pass 2: (component tile, slab of point tiles), one wave.
    sm90::StatParams sp;
    sp.norms = norms;
    sp.log2_z = log2_z;
    sp.row_const = m.row_const;
    sp.row_scale = m.row_scale;
    sp.row_norm = m.row_norm;
    sp.acc = acc;
    sp.k_pad = m.k_pad;
    sp.d = m.d;
    sp.d_pad = estep_depth(m.d, false);
    sp.out_cols = estep_output_columns(m.d);
    sp.point_tiles = rows / sm90::kStatPoints;
    const int comp_tiles =
        (m.k_pad + sm90::kStatComponents - 1) / sm90::kStatComponents;
    const int64_t want_slabs = std::max(1, num_sms / comp_tiles);
    sp.tiles_per_slab = (sp.point_tiles + want_slabs - 1) / want_slabs;
    const int64_t slabs =
        (sp.point_tiles + sp.tiles_per_slab - 1) / sp.tiles_per_slab;
    return launch_kernel(
        sm90::statistics_sm90_kernel<DIAG, DEPTH>,
        dim3(unsigned(comp_tiles), unsigned(slabs)),
        sm90::stat_layout(DEPTH).bytes,
        stream,
        points_stat,
        comps_stat,
        sp);
}

bool supported_depth(bool diagonal, int depth) {
    return diagonal
               ? (depth == 64 || depth == 128 || depth == 192 || depth == 256)
               : (depth == 32 || depth == 64 || depth == 96 || depth == 128);
}

} // namespace

bool estep_sm90_built() {
    return true;
}

bool estep_sm90_supports(const EStepModel& m, int cc_major, int cc_minor) {
    return cc_major == 9 && cc_minor == 0 && m.math == EStepMath::BF16 &&
           supported_depth(m.diagonal, m.depth);
}

cudaError_t gmm_estep_sm90(
    const EStepModel& m,
    int64_t n,
    const void* prepared,
    const float* norms,
    float* log2_z,
    double* scratch,
    const EStepAccumulators& acc,
    int num_sms,
    cudaStream_t stream) {
    if (m.math != EStepMath::BF16 || !supported_depth(m.diagonal, m.depth)) {
        return cudaErrorNotSupported;
    }
    if (n < 0 || m.d < 1 || m.k < 1 ||
        m.k_pad != estep_padded_components(m.k) ||
        m.depth != estep_depth(m.d, m.diagonal) || !m.component_matrix ||
        !m.row_const || (!m.diagonal && (!m.row_scale || !m.row_norm)) ||
        num_sms < 1 || !acc.count || !acc.sum1 || !acc.sum2 ||
        !acc.log_likelihood) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    if (!prepared || !log2_z || !scratch || (!m.diagonal && !norms) ||
        estep_padded_rows(n) > (int64_t(1) << 31) - sm90::kLnPoints) {
        return cudaErrorInvalidValue;
    }
#define FAISS_GMM_SM90_CASE(DIAG, DEPTH)                                       \
    if (m.diagonal == DIAG && m.depth == DEPTH) {                              \
        return launch<DIAG, DEPTH>(                                            \
            m, n, prepared, norms, log2_z, scratch, acc, num_sms, stream);     \
    }
    FAISS_GMM_SM90_CASE(false, 32)
    FAISS_GMM_SM90_CASE(false, 64)
    FAISS_GMM_SM90_CASE(false, 96)
    FAISS_GMM_SM90_CASE(false, 128)
    FAISS_GMM_SM90_CASE(true, 64)
    FAISS_GMM_SM90_CASE(true, 128)
    FAISS_GMM_SM90_CASE(true, 192)
    FAISS_GMM_SM90_CASE(true, 256)
#undef FAISS_GMM_SM90_CASE
    return cudaErrorNotSupported;
}

} // namespace kernels
} // namespace faiss_gmm
