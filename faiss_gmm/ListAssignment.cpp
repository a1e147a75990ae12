#include <faiss_gmm/ListAssignment.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <vector>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/impl/SpillRules.h>

namespace faiss_gmm {

namespace {

/// Vectors per block: bounds the temporary memory of assignment.
constexpr idx_t kAssignBlockSize = 65536;

} // namespace

void assign_lists(
    const GaussianMixture& gmm,
    const faiss::Index& quantizer,
    const SpillParameters& spill,
    idx_t n,
    const float* x,
    idx_t* lists) {
    spill.check("assign_lists");
    FAISS_THROW_IF_NOT_MSG(
        gmm.is_trained, "assign_lists: model is not trained");
    FAISS_THROW_IF_NOT_FMT(
        quantizer.d == gmm.d && quantizer.ntotal == gmm.k,
        "assign_lists: quantizer (d=%d, ntotal=%" PRId64
        ") does not hold the model's %d means of dimension %d",
        quantizer.d,
        int64_t(quantizer.ntotal),
        gmm.k,
        gmm.d);
    const int m = spill.max_assign;
    const size_t nlist = size_t(gmm.k);
    const int d = gmm.d;
    std::fill(lists, lists + int64_t(n) * m, idx_t(-1));
    if (n == 0) {
        return;
    }
    const bool residual_loss =
        spill.rule == SpillRule::Soar || spill.rule == SpillRule::Rair;
    const bool by_l2 = spill.rule == SpillRule::Closure || residual_loss ||
                       spill.primary_is_nearest_mean;
    // Soar and Rair look for the secondary among the nearest means only.
    const int ncand =
        residual_loss ? int(std::min<size_t>(nlist, std::max(16, 4 * m)))
        : spill.rule == SpillRule::Closure ? int(std::min<size_t>(nlist, m))
                                           : 1;
    const int mpost = int(std::min<size_t>(nlist, m));
    const idx_t bs = std::min(n, kAssignBlockSize);
    std::vector<float> l2_dis(by_l2 ? bs * ncand : 0);
    std::vector<idx_t> l2_idx(by_l2 ? bs * ncand : 0);
    const bool need_posteriors =
        spill.rule == SpillRule::Posterior ||
        (spill.rule == SpillRule::None && !spill.primary_is_nearest_mean);
    std::vector<float> post(need_posteriors ? bs * mpost : 0);
    std::vector<idx_t> comp(need_posteriors ? bs * mpost : 0);

    for (idx_t i0 = 0; i0 < n; i0 += bs) {
        const idx_t nb = std::min(bs, n - i0);
        const float* xb = x + int64_t(i0) * d;
        idx_t* lb = lists + int64_t(i0) * m;
        if (by_l2) {
            quantizer.search(nb, xb, ncand, l2_dis.data(), l2_idx.data());
        }
        if (need_posteriors) {
            const bool primary_only = spill.rule == SpillRule::None;
            gmm.top_posteriors(
                nb,
                xb,
                primary_only ? 1 : mpost,
                post.data(),
                comp.data(),
                primary_only ? 1.0f : spill.temperature);
            if (primary_only) {
                for (idx_t i = 0; i < nb; i++) {
                    lb[i * m] = comp[i];
                }
                continue;
            }
        }
        switch (spill.rule) {
        case SpillRule::None:
            for (idx_t i = 0; i < nb; i++) {
                lb[i * m] = l2_idx[i * ncand];
            }
            break;
        case SpillRule::Posterior:
#pragma omp parallel for if (nb > 1000)
            for (idx_t i = 0; i < nb; i++) {
                const float* pi = post.data() + i * mpost;
                impl::posterior_spill_row(
                    spill,
                    m,
                    mpost,
                    comp.data() + i * mpost,
                    [pi](int t) { return pi[t]; },
                    [&l2_idx, i, ncand]() { return l2_idx[i * ncand]; },
                    lb + i * m);
            }
            break;
        case SpillRule::Closure:
#pragma omp parallel for if (nb > 1000)
            for (idx_t i = 0; i < nb; i++) {
                impl::closure_spill_row(
                    spill.closure_ratio,
                    ncand,
                    l2_dis.data() + i * ncand,
                    l2_idx.data() + i * ncand,
                    lb + i * m);
            }
            break;
        case SpillRule::Soar:
        case SpillRule::Rair: {
            const bool soar = spill.rule == SpillRule::Soar;
            const float lambda = soar ? spill.soar_lambda : spill.rair_lambda;
#pragma omp parallel for if (nb > 1000)
            for (idx_t i = 0; i < nb; i++) {
                impl::residual_loss_spill_row(
                    d,
                    xb + int64_t(i) * d,
                    gmm.means.data(),
                    ncand,
                    l2_dis.data() + i * ncand,
                    l2_idx.data() + i * ncand,
                    m,
                    lb + i * m,
                    [soar, lambda](float dist_j, float dot, float dist_1) {
                        return soar ? impl::soar_loss(
                                          lambda, dist_j, dot, dist_1)
                                    : impl::rair_loss(lambda, dist_j, dot);
                    });
            }
            break;
        }
        }
    }
}

void CpuListAssigner::assign(
    const GaussianMixture& gmm,
    const faiss::Index& quantizer,
    const SpillParameters& spill,
    idx_t n,
    const float* x,
    idx_t* lists) {
    assign_lists(gmm, quantizer, spill, n, x, lists);
}

int top_candidates_needed(
    const SpillParameters& spill, size_t nlist, bool* by_log_joint) {
    switch (spill.rule) {
    case SpillRule::None:
        *by_log_joint = !spill.primary_is_nearest_mean;
        return 1;
    case SpillRule::Posterior:
        *by_log_joint = true;
        return int(std::min<size_t>(nlist, spill.max_assign));
    case SpillRule::Closure:
        *by_log_joint = false;
        return int(std::min<size_t>(nlist, spill.max_assign));
    case SpillRule::Soar:
    case SpillRule::Rair:
        break;
    }
    FAISS_THROW_FMT(
        "top_candidates_needed: the %s rule needs the vectors (assign_lists)",
        spill_rule_name(spill.rule));
}

void lists_from_top_candidates(
    const SpillParameters& spill,
    idx_t nb,
    const TopCandidates& c,
    idx_t* lists) {
    const int m = spill.max_assign;
    const int top = c.top;
    std::fill(lists, lists + int64_t(nb) * m, idx_t(-1));
    switch (spill.rule) {
    case SpillRule::None:
        for (idx_t i = 0; i < nb; i++) {
            lists[i * m] = c.index[i * top];
        }
        break;
    case SpillRule::Posterior: {
        const float inv_t = 1.0f / spill.temperature;
#pragma omp parallel for if (nb > 1000)
        for (idx_t i = 0; i < nb; i++) {
            const float* si = c.score + i * top;
            const double log_norm_i = double(c.log_norm[i]);
            const int32_t* nearest = c.nearest;
            impl::posterior_spill_row(
                spill,
                m,
                top,
                c.index + i * top,
                [si, inv_t, log_norm_i](int t) {
                    return float(std::exp(double(si[t]) * inv_t - log_norm_i));
                },
                [nearest, i]() { return idx_t(nearest[i]); },
                lists + i * m);
        }
        break;
    }
    case SpillRule::Closure:
        for (idx_t i = 0; i < nb; i++) {
            impl::closure_spill_row(
                spill.closure_ratio,
                top,
                c.score + i * top,
                c.index + i * top,
                lists + i * m);
        }
        break;
    case SpillRule::Soar:
    case SpillRule::Rair:
        FAISS_THROW_FMT(
            "lists_from_top_candidates: the %s rule needs the vectors "
            "(assign_lists)",
            spill_rule_name(spill.rule));
    }
}

} // namespace faiss_gmm
