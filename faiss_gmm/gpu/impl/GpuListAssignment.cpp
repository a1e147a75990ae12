#include <faiss_gmm/gpu/impl/GpuListAssignment.h>

#include <vector>

#include <faiss_gmm/ListAssignment.h>
#include <faiss_gmm/gpu/impl/GpuWorkspace.h>
#include <kernels/ivf_assign.h>

namespace faiss_gmm {
namespace gpu {

namespace kn = faiss_gmm::kernels;

kn::AssignOutput reserve_assign_output(
    DeviceAllocation& buffer,
    idx_t nb,
    int top,
    bool log_joint,
    const char* what,
    const char* owner) {
    const auto plan = [&](Carver& c) {
        kn::AssignOutput out;
        out.top_index = c.take<int32_t>(size_t(nb) * top);
        out.top_score = c.take<float>(size_t(nb) * top);
        out.log_norm = log_joint ? c.take<float>(nb) : nullptr;
        out.nearest = log_joint ? c.take<int32_t>(nb) : nullptr;
        return out;
    };
    Carver measure(nullptr);
    plan(measure);
    buffer.reserve(measure.bytes(), what, owner);
    Carver carve(buffer.as<char>());
    return plan(carve);
}

kn::AssignModel
assign_model(const GaussianMixture& gmm, const GpuModel& model) {
    kn::AssignModel am;
    am.d = gmm.d;
    am.k = gmm.k;
    am.diagonal = model.diagonal;
    am.means = model.means;
    am.log_const = model.log_const;
    am.inv_var = model.inv_var;
    return am;
}

float assign_temperature(const SpillParameters& spill) {
    return spill.rule == SpillRule::Posterior ? spill.temperature : 1.0f;
}

int device_candidates(
    const GaussianMixture& gmm, const SpillParameters& spill, bool* log_joint) {
    if (spill.rule == SpillRule::Soar || spill.rule == SpillRule::Rair ||
        gmm.covariance == CovarianceType::Full) {
        return 0;
    }
    const int top = top_candidates_needed(spill, size_t(gmm.k), log_joint);
    return top > kn::kAssignMaxTop ? 0 : top;
}

void gpu_assign_lists(
    const GpuIndexContext& ctx,
    const GaussianMixture& gmm,
    const faiss::IndexFlatL2& host_means,
    const GpuModel& model,
    const SpillParameters& spill,
    idx_t nb,
    const float* xh,
    const float* xd,
    DeviceAllocation& workspace,
    idx_t* lists) {
    bool log_joint = true;
    const int top = device_candidates(gmm, spill, &log_joint);
    if (top == 0) {
        assign_lists(gmm, host_means, spill, nb, xh, lists);
        return;
    }
    const kn::AssignOutput out = reserve_assign_output(
        workspace, nb, top, log_joint, "the add batch assignment");
    throw_on_cuda_error(
        kn::ivf_assign_top(
            assign_model(gmm, model),
            log_joint ? kn::AssignScore::LogJoint : kn::AssignScore::L2,
            int64_t(nb),
            xd,
            top,
            assign_temperature(spill),
            out,
            ctx.stream()),
        "launching the list assignment kernel");
    std::vector<int32_t> top_index(size_t(nb) * top);
    std::vector<float> top_score(size_t(nb) * top);
    std::vector<float> log_norm(log_joint ? nb : 0);
    std::vector<int32_t> nearest(log_joint ? nb : 0);
    ctx.download(
        top_index.data(),
        out.top_index,
        top_index.size() * 4,
        "downloading the assigned lists");
    ctx.download(
        top_score.data(),
        out.top_score,
        top_score.size() * 4,
        "downloading the assignment scores");
    if (log_joint) {
        ctx.download(
            log_norm.data(), out.log_norm, nb * 4, "downloading norms");
        ctx.download(nearest.data(), out.nearest, nb * 4, "downloading means");
    }
    ctx.synchronize("assigning lists");
    TopCandidates candidates;
    candidates.top = top;
    candidates.index = top_index.data();
    candidates.score = top_score.data();
    candidates.log_norm = log_norm.data();
    candidates.nearest = nearest.data();
    lists_from_top_candidates(spill, nb, candidates, lists);
}

} // namespace gpu
} // namespace faiss_gmm
