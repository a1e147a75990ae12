#include <faiss_gmm/GmmSufficientStats.h>

#include <algorithm>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {

GmmSufficientStats::GmmSufficientStats(int d, int k, CovarianceType covariance)
    : d(d), k(k), covariance(covariance) {
    FAISS_THROW_IF_NOT_FMT(d >= 1, "GMM statistics: d = %d < 1", d);
    FAISS_THROW_IF_NOT_FMT(k >= 1, "GMM statistics: k = %d < 1", k);
    const bool full = covariance == CovarianceType::Full;
    if (full) {
        check_full_covariance_size(d, k, "GMM statistics");
    }
    size_t nsq = full                                      ? 0
                 : has_per_dimension_variances(covariance) ? size_t(k) * d
                                                           : size_t(k);
    count.assign(k, 0.0);
    sum_x.assign(size_t(k) * d, 0.0);
    sum_sq.assign(nsq, 0.0);
    sum_outer.assign(full ? size_t(k) * d * d : 0, 0.0);
}

void GmmSufficientStats::reset() {
    n = 0;
    log_likelihood = 0;
    std::fill(count.begin(), count.end(), 0.0);
    std::fill(sum_x.begin(), sum_x.end(), 0.0);
    std::fill(sum_sq.begin(), sum_sq.end(), 0.0);
    std::fill(sum_outer.begin(), sum_outer.end(), 0.0);
}

void GmmSufficientStats::check_shaped_for(
    const GaussianMixture& model, const char* who) const {
    FAISS_THROW_IF_NOT_FMT(
        d == model.d && k == model.k && covariance == model.covariance,
        "%s: statistics shaped (d=%d, k=%d, %s) for a model (d=%d, k=%d, %s)",
        who,
        d,
        k,
        covariance_type_name(covariance),
        model.d,
        model.k,
        covariance_type_name(model.covariance));
}

void GmmSufficientStats::merge(const GmmSufficientStats& other) {
    FAISS_THROW_IF_NOT_FMT(
        other.d == d && other.k == k && other.covariance == covariance,
        "cannot merge GMM statistics of shape (d=%d, k=%d, %s) into "
        "(d=%d, k=%d, %s)",
        other.d,
        other.k,
        covariance_type_name(other.covariance),
        d,
        k,
        covariance_type_name(covariance));
    FAISS_THROW_IF_NOT_MSG(
        other.count.size() == count.size() &&
            other.sum_x.size() == sum_x.size() &&
            other.sum_sq.size() == sum_sq.size() &&
            other.sum_outer.size() == sum_outer.size(),
        "cannot merge GMM statistics: array sizes differ");
    n += other.n;
    log_likelihood += other.log_likelihood;
    for (size_t i = 0; i < count.size(); i++) {
        count[i] += other.count[i];
    }
    for (size_t i = 0; i < sum_x.size(); i++) {
        sum_x[i] += other.sum_x[i];
    }
    for (size_t i = 0; i < sum_sq.size(); i++) {
        sum_sq[i] += other.sum_sq[i];
    }
    for (size_t i = 0; i < sum_outer.size(); i++) {
        sum_outer[i] += other.sum_outer[i];
    }
}

} // namespace faiss_gmm
