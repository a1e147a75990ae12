#include <faiss_gmm/gpu/impl/GpuCoarseProbe.h>

#include <kernels/ivf_lists.h>
#include <kernels/ivf_search.h>
#include <kernels/select_k.h>

#include <faiss_gmm/gpu/impl/DeviceAllocation.h>

namespace faiss_gmm {
namespace gpu {

namespace kn = faiss_gmm::kernels;

void gpu_coarse_probe(
    const GpuIndexContext& ctx,
    const GpuModel& model,
    const SearchTileShape& shape,
    const GpuSearchSettings& settings,
    idx_t nq,
    const float* xq,
    std::vector<float>& operand,
    std::vector<float>& norms,
    const SearchTile& tile) {
    const int d = shape.d;
    const int gemm_dim = shape.gemm_dim;
    const int nl = int(shape.nlist);
    const bool diag_operand = gemm_dim == 2 * d;
    // centred operand of the coarse GEMMs: q - c (and (q - c)^2)
#pragma omp parallel for if (nq > 64)
    for (idx_t i = 0; i < nq; i++) {
        float* op = operand.data() + size_t(i) * gemm_dim;
        double norm = 0;
        for (int l = 0; l < d; l++) {
            const float v = xq[size_t(i) * d + l] - model.center[l];
            op[l] = v;
            if (diag_operand) {
                op[d + l] = v * v;
            }
            norm += double(v) * v;
        }
        norms[i] = float(norm);
    }
    ctx.upload(tile.queries, xq, size_t(nq) * d * 4, "uploading queries");
    ctx.upload(
        tile.operand,
        operand.data(),
        size_t(nq) * gemm_dim * 4,
        "uploading queries");
    ctx.upload(tile.query_norms, norms.data(), nq * 4, "uploading norms");

    kn::CoarseModel l2_model;
    l2_model.d = d;
    l2_model.nlist = nl;
    l2_model.mean_norms = model.centred_norms;
    kn::CoarseModel joint_model = l2_model;
    joint_model.log_joint = true;
    joint_model.diagonal = model.diagonal;
    joint_model.log_const = model.log_const;
    joint_model.inv_var = model.diagonal ? nullptr : model.inv_var;
    joint_model.mean_norms = model.diagonal ? nullptr : model.centred_norms;
    joint_model.mean_norms_weighted =
        model.diagonal ? model.diag_norms : nullptr;

    const float one = 1.0f, zero = 0.0f;
    if (shape.need_l2) {
        throw_on_cublas_error(
            cublasSgemm(
                ctx.cublas(),
                CUBLAS_OP_T,
                CUBLAS_OP_N,
                nl,
                int(nq),
                d,
                &one,
                model.centred_means,
                d,
                tile.operand,
                gemm_dim,
                &zero,
                tile.l2_scores,
                nl),
            "the coarse L2 product");
        throw_on_cuda_error(
            kn::ivf_coarse_scores(
                l2_model, nq, tile.query_norms, tile.l2_scores, ctx.stream()),
            "launching the coarse L2 scores");
    }
    if (shape.need_joint) {
        throw_on_cublas_error(
            cublasSgemm(
                ctx.cublas(),
                CUBLAS_OP_T,
                CUBLAS_OP_N,
                nl,
                int(nq),
                gemm_dim,
                &one,
                model.diagonal ? model.diag_rhs : model.centred_means,
                gemm_dim,
                tile.operand,
                gemm_dim,
                &zero,
                tile.joint_scores,
                nl),
            "the coarse log-joint product");
        throw_on_cuda_error(
            kn::ivf_coarse_scores(
                joint_model,
                nq,
                tile.query_norms,
                tile.joint_scores,
                ctx.stream()),
            "launching the coarse log-joint scores");
    }
    kn::Segments rows;
    rows.count = nq;
    rows.length = int64_t(nl);
    throw_on_cuda_error(
        kn::select_k_segments(
            rows,
            shape.need_l2 ? tile.l2_scores : tile.joint_scores,
            nullptr,
            shape.nprobe,
            tile.probe_keys,
            tile.probe_pos,
            tile.select_workspace,
            tile.select_workspace_bytes,
            ctx.stream()),
        "launching the probe selection");
    throw_on_cuda_error(
        kn::narrow_int64_to_int32(
            tile.probe_pos,
            int64_t(nq) * shape.nprobe,
            tile.probes,
            ctx.stream()),
        "launching the probe conversion");
    if (settings.distance_ratio > 0 || settings.mass > 0) {
        throw_on_cuda_error(
            kn::ivf_cut_probes(
                nq,
                shape.nprobe,
                tile.probes,
                tile.probe_keys,
                settings.distance_ratio,
                tile.joint_scores,
                nl,
                settings.mass,
                settings.mass_temperature,
                ctx.stream()),
            "launching the adaptive probe cut");
    }
}

} // namespace gpu
} // namespace faiss_gmm
