/**
 * GPU E-step: a GpuEStep's device model: uploads and downloads, the E-step
 * form of the model, the device M-step.
 */

#include <faiss_gmm/gpu/impl/GpuEStepImpl.h>

#include <algorithm>
#include <cmath>
#include <vector>

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

void GpuEStep::Impl::upload_model(
    const GaussianMixture& model, bool new_center) {
    cudaStream_t s = compute_stream.get();
    upload_floats(
        {
            {&model_means[current], &model.means, "uploading the means"},
            {&model_variances[current],
             &model.variances,
             "uploading the variances"},
            {&model_weights[current], &model.weights, "uploading the weights"},
        },
        s);
    if (new_center) {
        upload_center(model);
    }
}

void GpuEStep::Impl::upload_center(const GaussianMixture& model) {
    cudaStream_t s = compute_stream.get();
    std::vector<double> c(d, 0.0);
    double wsum = 0;
    for (int j = 0; j < model.k; j++) {
        const double w = model.weights[j];
        wsum += w;
        const float* mu = model.means.data() + size_t(j) * d;
        for (int l = 0; l < d; l++) {
            c[l] += w * mu[l];
        }
    }
    h_center.resize(d);
    for (int l = 0; l < d; l++) {
        h_center[l] = float(wsum > 0 ? c[l] / wsum : 0.0);
    }
    check_cuda(
        cudaMemcpyAsync(
            center.as<void>(),
            h_center.data(),
            size_t(d) * 4,
            cudaMemcpyHostToDevice,
            s),
        "uploading the centre");
}

void GpuEStep::Impl::download_model(int which, GaussianMixture* model) {
    cudaStream_t s = compute_stream.get();
    const struct {
        std::vector<float>* dst;
        const DeviceBuffer* src;
        const char* what;
    } copies[] = {
        {&model->means, &model_means[which], "downloading the means"},
        {&model->variances,
         &model_variances[which],
         "downloading the variances"},
        {&model->weights, &model_weights[which], "downloading the weights"},
    };
    for (const auto& c : copies) {
        check_cuda(
            cudaMemcpyAsync(
                c.dst->data(),
                c.src->as<void>(),
                c.dst->size() * 4,
                cudaMemcpyDeviceToHost,
                s),
            c.what);
    }
    check_cuda(cudaStreamSynchronize(s), "downloading the model");
}

void GpuEStep::Impl::prepare_model() {
    cudaStream_t s = compute_stream.get();
    check_cuda(
        kn::gmm_prepare_estep_model(
            device_gmm(current),
            center.as<const float>(),
            to_kernel_math(config.precision),
            matrix.as<void>(),
            row_const.as<float>(),
            row_scale.as<float>(),
            row_norm.as<float>(),
            s),
        "launching the model preparation");
    zero_accumulators({&acc_count, &acc_sum1, &acc_sum2, &acc_ll}, s);
}

kn::MStepSummary
GpuEStep::Impl::m_step(double variance_floor, double min_count) {
    cudaStream_t s = compute_stream.get();
    check_cuda(
        kn::gmm_mstep(
            accumulators(),
            device_gmm(current),
            center.as<const float>(),
            variance_floor,
            min_count,
            device_gmm(1 - current),
            mstep_scratch.as<double>(),
            mstep_summary.as<kn::MStepSummary>(),
            s),
        "launching the M-step");
    check_cuda(
        cudaMemcpyAsync(
            dl_summary.as<void>(),
            mstep_summary.as<void>(),
            sizeof(kn::MStepSummary),
            cudaMemcpyDeviceToHost,
            s),
        "downloading the M-step summary");
    check_cuda(cudaEventRecord(summary_ready.get(), s), "recording an event");
    check_cuda(
        cudaEventSynchronize(summary_ready.get()),
        "running the E-step and the M-step");
    return *dl_summary.as<kn::MStepSummary>();
}

} // namespace gpu
} // namespace faiss_gmm
