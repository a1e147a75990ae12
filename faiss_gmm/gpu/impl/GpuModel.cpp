#include <faiss_gmm/gpu/impl/GpuModel.h>

#include <cmath>

#include <faiss_gmm/gpu/impl/GpuWorkspace.h>
#include <faiss_gmm/impl/ListPruning.h>

namespace faiss_gmm {
namespace gpu {

namespace {

constexpr double kLog2Pi = 1.8378770664093454836; // ln(2 pi)

} // namespace

void GpuModel::upload(
    const GaussianMixture& model, const GpuIndexContext& ctx) {
    const int d = model.d;
    const size_t k = size_t(model.k);
    diagonal = has_per_dimension_variances(model.covariance);
    const size_t vpc = diagonal ? size_t(d) : 1;
    {
        std::vector<double> c(d, 0.0);
        for (size_t j = 0; j < k; j++) {
            for (int l = 0; l < d; l++) {
                c[l] += double(model.weights[j]) * model.means[j * d + l];
            }
        }
        center.assign(c.begin(), c.end());
    }
    std::vector<float> centred(k * d), norms(k), log_c(k), inv(k * vpc);
    std::vector<float> rhs(diagonal ? k * 2 * d : 0);
    std::vector<float> dnorms(diagonal ? k : 0);
    for (size_t j = 0; j < k; j++) {
        double norm = 0, log_det = 0, weighted = 0;
        for (int l = 0; l < d; l++) {
            const float m = model.means[j * d + l] - center[l];
            centred[j * d + l] = m;
            norm += double(m) * m;
        }
        if (diagonal) {
            for (int l = 0; l < d; l++) {
                const double v = model.variances[j * d + l];
                const double m = centred[j * d + l];
                inv[j * d + l] = float(1.0 / v);
                rhs[j * 2 * d + l] = float(m / v);
                rhs[j * 2 * d + d + l] = float(-0.5 / v);
                weighted += m * m / v;
                log_det += std::log(v);
            }
            dnorms[j] = float(weighted);
        } else {
            const double v = model.variances[j];
            inv[j] = float(1.0 / v);
            log_det = d * std::log(v);
        }
        norms[j] = float(norm);
        log_c[j] = float(
            std::log(double(model.weights[j])) - 0.5 * (d * kLog2Pi + log_det));
    }
    const std::vector<float> mean_var = impl::mean_variances(model);
    const auto plan = [&](Carver& c) {
        float* p_means = c.take<float>(k * d);
        float* p_centred = c.take<float>(k * d);
        float* p_norms = c.take<float>(k);
        float* p_log = c.take<float>(k);
        float* p_inv = c.take<float>(k * vpc);
        float* p_rhs = c.take<float>(rhs.size());
        float* p_dn = c.take<float>(dnorms.size());
        float* p_mean_var = c.take<float>(k);
        return std::vector<float*>{
            p_means, p_centred, p_norms, p_log, p_inv, p_rhs, p_dn, p_mean_var};
    };
    Carver measure(nullptr);
    plan(measure);
    buffer.release();
    buffer.reserve(measure.bytes(), "the model (means, variances)");
    Carver carve(buffer.as<char>());
    const std::vector<float*> p = plan(carve);
    ctx.upload(p[0], model.means.data(), k * d * 4, "uploading the means");
    ctx.upload(p[1], centred.data(), k * d * 4, "uploading the means");
    ctx.upload(p[2], norms.data(), k * 4, "uploading the mean norms");
    ctx.upload(p[3], log_c.data(), k * 4, "uploading the model constants");
    ctx.upload(p[4], inv.data(), inv.size() * 4, "uploading the variances");
    if (diagonal) {
        ctx.upload(p[5], rhs.data(), rhs.size() * 4, "uploading the model");
        ctx.upload(p[6], dnorms.data(), k * 4, "uploading the model");
    }
    ctx.upload(p[7], mean_var.data(), k * 4, "uploading the variances");
    ctx.synchronize("uploading the model");
    means = p[0];
    centred_means = p[1];
    centred_norms = p[2];
    log_const = p[3];
    inv_var = p[4];
    diag_rhs = diagonal ? p[5] : nullptr;
    diag_norms = diagonal ? p[6] : nullptr;
    mean_variances = p[7];
}

void GpuModel::release() {
    buffer.release();
    *this = GpuModel();
}

} // namespace gpu
} // namespace faiss_gmm
