#include <faiss_gmm/GaussianMixture.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>

#include <omp.h>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/GmmEM.h>
#include <faiss_gmm/impl/Blas.h>
#include <faiss_gmm/impl/EnumNames.h>
#include <faiss_gmm/impl/GmmScoring.h>
#include <faiss_gmm/impl/RowTeam.h>

namespace faiss_gmm {

namespace {

constexpr double kLog2Pi = 1.8378770664093453; // log(2 pi)

int to_blas_int(idx_t v, const char* what) {
    FAISS_THROW_IF_NOT_FMT(
        v <= std::numeric_limits<int>::max(),
        "%s = %" PRId64 " exceeds the BLAS integer range",
        what,
        int64_t(v));
    return int(v);
}

/// sum_k pi_k mu_k: the mixture's mean.
std::vector<float> mixture_mean(const GaussianMixture& model) {
    impl::check_model_shape(model);
    std::vector<double> mean(model.d, 0.0);
    for (int j = 0; j < model.k; j++) {
        const float* mu = model.means.data() + size_t(j) * model.d;
        for (int l = 0; l < model.d; l++) {
            mean[l] += double(model.weights[j]) * mu[l];
        }
    }
    return std::vector<float>(mean.begin(), mean.end());
}

/**
 * Log-joint values of the model over n points, block by block, in one team
 * of row ranges (impl/RowTeam.h): owns the component terms (shared) and
 * each range's operand and logit buffers, so a scan allocates once. Points
 * and means are shifted by the mixture's mean inside the products, so that
 * data far from the origin does not lose the distances' digits in the fp32
 * expansion.
 */
struct LogJointScan {
    LogJointScan(const GaussianMixture& model, idx_t n)
        : n(n),
          k(model.k),
          team(impl::row_team_size(n, model.k)),
          center(mixture_mean(model)),
          full(model.covariance == CovarianceType::Full),
          terms(
              full ? nullptr
                   : std::make_unique<impl::ComponentTerms>(
                         model, center.data())),
          full_terms(
              full ? std::make_unique<impl::FullComponentTerms>(
                         model, center.data())
                   : nullptr),
          block_rows(impl::rows_per_thread_block(
              impl::scoring_block_rows(model.k), team, n)),
          operand_floats(
              full ? full_terms->work_floats(block_rows)
                   : size_t(block_rows) * terms->gemm_dim),
          operand(team * operand_floats),
          row_norms(full ? 0 : team * size_t(block_rows)),
          logits(team * size_t(block_rows) * model.k) {}

    /**
     * Calls per_block(r, i0, nb, logits) for consecutive blocks of the n
     * points x, logits (nb x k) = log pi_j + log N(x_i | j) of rows i0 ..
     * i0 + nb - 1, from range r < team of the team (in parallel across
     * ranges: per_block writes only its rows or range r's own sums, and
     * must not throw).
     */
    template <class PerBlock>
    void run(const float* x, PerBlock&& per_block) {
        impl::run_row_team(team, n, [&](int r, idx_t begin, idx_t end) {
            float* r_operand = operand.data() + r * operand_floats;
            float* r_logits = logits.data() + size_t(r) * block_rows * k;
            for (idx_t i0 = begin; i0 < end; i0 += block_rows) {
                const idx_t nb = std::min(block_rows, end - i0);
                compute(
                    r, nb, x + size_t(i0) * center.size(), r_operand, r_logits);
                per_block(r, i0, nb, r_logits);
            }
        });
    }

    const idx_t n; ///< points of the scan
    const int k;   ///< components
    /// ranges of the team (impl::row_team_size)
    const int team;
    const std::vector<float> center; ///< mixture mean, d
    const bool full;                 ///< full covariance

   private:
    /// logits (nb x k) of a block of range r, nb <= block_rows.
    void compute(int r, idx_t nb, const float* x, float* work, float* out) {
        if (full) {
            full_terms->log_joint_block(nb, x, center.data(), work, out);
            return;
        }
        const impl::ComponentTerms& terms = *this->terms;
        float* norms = row_norms.data() + size_t(r) * block_rows;
        impl::prepare_operand(terms, nb, x, center.data(), work, norms);
        impl::block_products(terms, nb, work, out);
        for (idx_t i = 0; i < nb; i++) {
            float* row = out + size_t(i) * k;
            impl::products_to_distances(terms, norms[i], row);
            impl::distances_to_log_joint(terms, row, row);
        }
    }

    /// the model in GEMM form (spherical, tied, diagonal)
    const std::unique_ptr<impl::ComponentTerms> terms;
    /// the model through its Cholesky factors (full)
    const std::unique_ptr<impl::FullComponentTerms> full_terms;
    const idx_t block_rows;       ///< rows per block of one range
    const size_t operand_floats;  ///< operand / work floats of one range
    std::vector<float> operand;   ///< team x operand_floats
    std::vector<float> row_norms; ///< team x block_rows (not full)
    std::vector<float> logits;    ///< team x block_rows x k
};

/// Checks the model and the arguments of a scan over n points x.
bool check_scan(const GaussianMixture& model, idx_t n, const float* x) {
    impl::check_model_shape(model);
    FAISS_THROW_IF_NOT_FMT(n >= 0, "n = %" PRId64 " < 0", int64_t(n));
    if (n == 0) {
        return false;
    }
    FAISS_THROW_IF_NOT_MSG(x, "x is null");
    return true;
}

} // namespace

/*********************************************************************
 * impl: the blocked BLAS form shared with the CPU E-step
 *********************************************************************/

namespace impl {

ComponentTerms::ComponentTerms(
    const GaussianMixture& model, const float* center)
    : d(model.d), k(model.k), covariance(model.covariance) {
    check_model_shape(model);
    FAISS_THROW_IF_NOT_MSG(
        covariance != CovarianceType::Full,
        "ComponentTerms: a full-covariance model is scored through "
        "FullComponentTerms");
    const bool spherical = !has_per_dimension_variances(covariance);
    gemm_dim = spherical ? d : 2 * d;
    gemm_alpha = spherical ? -2.0f : 1.0f;
    gemm_rows.resize(size_t(k) * gemm_dim);
    offset.resize(k);
    log_norm.resize(k);
    half_inv_var.resize(k);
    for (int j = 0; j < k; j++) {
        const float* mu = model.means.data() + size_t(j) * d;
        float* row = gemm_rows.data() + size_t(j) * gemm_dim;
        double off = 0, log_det = 0;
        if (spherical) {
            double var = model.variances[j];
            for (int l = 0; l < d; l++) {
                float m = center ? mu[l] - center[l] : mu[l];
                row[l] = m;
                off += double(m) * m;
            }
            log_det = d * std::log(var);
            half_inv_var[j] = float(0.5 / var);
        } else {
            const float* var = model.variances.data() + size_t(j) * d;
            for (int l = 0; l < d; l++) {
                float m = center ? mu[l] - center[l] : mu[l];
                double inv = 1.0 / var[l];
                row[l] = float(-2.0 * m * inv);
                row[d + l] = float(inv);
                off += double(m) * m * inv;
                log_det += std::log(double(var[l]));
            }
            half_inv_var[j] = 0.5f;
        }
        offset[j] = float(off);
        log_norm[j] = float(
            std::log(double(model.weights[j])) - 0.5 * (d * kLog2Pi + log_det));
    }
}

FullComponentTerms::FullComponentTerms(
    const GaussianMixture& model, const float* center)
    : d(model.d), k(model.k) {
    check_model_shape(model);
    FAISS_THROW_IF_NOT_FMT(
        model.covariance == CovarianceType::Full,
        "FullComponentTerms: the model has %s covariance, not full",
        covariance_type_name(model.covariance));
    shifted_means.resize(size_t(k) * d);
    log_norm.resize(k);
    for (int j = 0; j < k; j++) {
        const float* mu = model.means.data() + size_t(j) * d;
        float* out = shifted_means.data() + size_t(j) * d;
        for (int l = 0; l < d; l++) {
            out[l] = center ? mu[l] - center[l] : mu[l];
        }
        log_norm[j] = float(
            std::log(double(model.weights[j])) - 0.5 * d * kLog2Pi +
            double(model.log_det_cholesky[j]));
    }
    precision_cholesky = model.precision_cholesky.data();
}

void FullComponentTerms::multiply_by_factor(int j, idx_t nb, float* y) const {
    if (nb == 0) {
        return;
    }
    // Row-major y (nb x d) is column-major y^T (d x nb); row-major U_j read
    // column-major is U_j^T, lower triangular: y^T := U_j^T y^T.
    const int di = d;
    const int nbi = to_blas_int(nb, "strmm columns");
    const float one = 1;
    strmm_(
        "Left",
        "Lower",
        "Not transposed",
        "Non-unit",
        &di,
        &nbi,
        &one,
        precision_cholesky + size_t(j) * d * d,
        &di,
        y,
        &di);
}

void FullComponentTerms::log_joint_block(
    idx_t nb,
    const float* x,
    const float* center,
    float* work,
    float* logits) const {
    float* xc = work;                 // x', nb x d
    float* y = work + size_t(nb) * d; // (x' - mu'_j) U_j, nb x d
    // The row loops stay on this thread: they cost a fraction of the strmm
    // between them, and an OpenMP team there spins against BLAS's own
    // threads (measured 2.5x slower at 65536 x 128, K = 64 on 2 cores).
    for (idx_t i = 0; i < nb; i++) {
        const float* xi = x + size_t(i) * d;
        float* out = xc + size_t(i) * d;
        for (int l = 0; l < d; l++) {
            out[l] = center ? xi[l] - center[l] : xi[l];
        }
    }
    for (int j = 0; j < k; j++) {
        const float* mu = shifted_means.data() + size_t(j) * d;
        for (idx_t i = 0; i < nb; i++) {
            const float* xi = xc + size_t(i) * d;
            float* yi = y + size_t(i) * d;
            for (int l = 0; l < d; l++) {
                yi[l] = xi[l] - mu[l];
            }
        }
        multiply_by_factor(j, nb, y);
        const float ln = log_norm[j];
        for (idx_t i = 0; i < nb; i++) {
            const float* yi = y + size_t(i) * d;
            float sq = 0;
            for (int l = 0; l < d; l++) {
                sq += yi[l] * yi[l];
            }
            logits[size_t(i) * k + j] = ln - 0.5f * sq;
        }
    }
}

void prepare_operand(
    const ComponentTerms& terms,
    idx_t nb,
    const float* x,
    const float* center,
    float* operand,
    float* row_norms) {
    const int d = terms.d;
    const int gd = terms.gemm_dim;
    const bool spherical = !has_per_dimension_variances(terms.covariance);
#pragma omp parallel for schedule(static) if (worth_parallel(nb, gd))
    for (idx_t i = 0; i < nb; i++) {
        const float* xi = x + size_t(i) * d;
        float* op = operand + size_t(i) * gd;
        float norm = 0;
        for (int l = 0; l < d; l++) {
            float v = center ? xi[l] - center[l] : xi[l];
            op[l] = v;
            norm += v * v;
        }
        if (spherical) {
            row_norms[i] = norm;
        } else {
            for (int l = 0; l < d; l++) {
                op[d + l] = op[l] * op[l];
            }
            row_norms[i] = 0;
        }
    }
}

void block_products(
    const ComponentTerms& terms,
    idx_t nb,
    const float* operand,
    float* products) {
    gemm_abt(
        nb,
        terms.k,
        terms.gemm_dim,
        1.0f,
        operand,
        terms.gemm_rows.data(),
        products);
}

float softmax_row(int k, float* values) {
    float max_value = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < k; j++) {
        max_value = std::max(max_value, values[j]);
    }
    if (!(max_value > -std::numeric_limits<float>::infinity())) {
        std::fill(values, values + k, 0.0f);
        return -std::numeric_limits<float>::infinity();
    }
    double sum = 0;
    for (int j = 0; j < k; j++) {
        float t = values[j] - max_value;
        float e = t < impl::kSoftmaxLogCut ? 0.0f : std::exp(t);
        values[j] = e;
        sum += e;
    }
    float inv = float(1.0 / sum);
    for (int j = 0; j < k; j++) {
        values[j] *= inv;
    }
    return max_value + float(std::log(sum));
}

void gemm_abt(
    idx_t m,
    idx_t n,
    idx_t p,
    float alpha,
    const float* a,
    const float* b,
    float* c) {
    if (m == 0 || n == 0) {
        return;
    }
    // Column-major view: C^T (n x m) = B (n x p) . A^T.
    int mi = to_blas_int(m, "gemm rows");
    int ni = to_blas_int(n, "gemm columns");
    int pi = to_blas_int(p, "gemm inner dimension");
    float beta = 0;
    sgemm_(
        "Transposed",
        "Not transposed",
        &ni,
        &mi,
        &pi,
        &alpha,
        b,
        &pi,
        a,
        &pi,
        &beta,
        c,
        &ni);
}

void dgemm_atb_accumulate(
    idx_t m, idx_t n, idx_t p, const double* a, const double* b, double* c) {
    if (m == 0 || n == 0 || p == 0) {
        return;
    }
    // Column-major view: C^T (p x n) += B^T (p x m) . A (m x n).
    int mi = to_blas_int(m, "gemm inner dimension");
    int ni = to_blas_int(n, "gemm rows");
    int pi = to_blas_int(p, "gemm columns");
    double alpha = 1, beta = 1;
    dgemm_(
        "Not transposed",
        "Transposed",
        &pi,
        &ni,
        &mi,
        &alpha,
        b,
        &pi,
        a,
        &ni,
        &beta,
        c,
        &pi);
}

void dsyrk_ata_lower_accumulate(idx_t m, idx_t n, const double* a, double* c) {
    if (m == 0 || n == 0) {
        return;
    }
    // Row-major A (m x n) is column-major A^T (n x m); C = A^T A is
    // symmetric, its column-major upper triangle the row-major lower one.
    const int ni = to_blas_int(n, "syrk order");
    const int mi = to_blas_int(m, "syrk inner dimension");
    const double one = 1;
    dsyrk_("Upper", "Not transposed", &ni, &mi, &one, a, &ni, &one, c, &ni);
}

void check_model_shape(const GaussianMixture& model) {
    FAISS_THROW_IF_NOT_FMT(model.d >= 1, "GMM dimension d = %d < 1", model.d);
    FAISS_THROW_IF_NOT_FMT(
        model.k >= 1, "GMM component count k = %d < 1", model.k);
    size_t k = model.k, d = model.d;
    size_t nvar = k * model.variances_per_component();
    FAISS_THROW_IF_NOT_FMT(
        model.weights.size() == k,
        "GMM weights has %zd values, expected k = %zd",
        model.weights.size(),
        k);
    FAISS_THROW_IF_NOT_FMT(
        model.means.size() == k * d,
        "GMM means has %zd values, expected k * d = %zd",
        model.means.size(),
        k * d);
    FAISS_THROW_IF_NOT_FMT(
        model.variances.size() == nvar,
        "GMM variances has %zd values, expected %zd for %s covariance",
        model.variances.size(),
        nvar,
        covariance_type_name(model.covariance));
    const size_t nfull =
        model.covariance == CovarianceType::Full ? k * d * d : 0;
    FAISS_THROW_IF_NOT_FMT(
        model.covariances.size() == nfull,
        "GMM covariances has %zd values, expected %zd for %s covariance",
        model.covariances.size(),
        nfull,
        covariance_type_name(model.covariance));
    FAISS_THROW_IF_NOT_FMT(
        model.precision_cholesky.size() == nfull &&
            model.log_det_cholesky.size() == (nfull ? k : 0),
        "GMM precision_cholesky / log_det_cholesky have %zd / %zd values, "
        "expected %zd / %zd for %s covariance (after setting covariances, "
        "call update_precision_cholesky())",
        model.precision_cholesky.size(),
        model.log_det_cholesky.size(),
        nfull,
        nfull ? k : 0,
        covariance_type_name(model.covariance));
}

idx_t first_non_finite(idx_t n, int d, const float* x) {
    const idx_t none = std::numeric_limits<idx_t>::max();
    idx_t first_bad = none; // flat index i * d + j
#pragma omp parallel for schedule(static) if (worth_parallel(n, d))            \
    reduction(min                                                              \
              : first_bad)
    for (idx_t i = 0; i < n; i++) {
        const float* xi = x + size_t(i) * d;
        for (int j = 0; j < d; j++) {
            if (!(std::fabs(xi[j]) <= kMaxInputMagnitude)) { // NaN too
                first_bad = std::min(first_bad, i * d + j);
                break;
            }
        }
    }
    return first_bad == none ? -1 : first_bad;
}

/// "not finite" or "too large", for the messages below
const char* unusable_value_kind(float v) {
    return std::isfinite(v) ? "is too large (|value| must be <= 1e15, or "
                              "squared distances overflow float)"
                            : "is not finite";
}

void check_finite(idx_t n, int d, const float* x, const char* what) {
    const idx_t first_bad = first_non_finite(n, d, x);
    if (first_bad >= 0) {
        FAISS_THROW_FMT(
            "%s: value %g at row %" PRId64 ", column %d %s",
            what,
            x[first_bad],
            int64_t(first_bad / d),
            int(first_bad % d),
            unusable_value_kind(x[first_bad]));
    }
}

void check_finite_vectors(idx_t n, int d, const float* x, const char* where) {
    const idx_t first_bad = first_non_finite(n, d, x);
    if (first_bad >= 0) {
        FAISS_THROW_FMT(
            "%s: vector %" PRId64 " component %" PRId64 " %s (%g)",
            where,
            int64_t(first_bad / d),
            int64_t(first_bad % d),
            unusable_value_kind(x[first_bad]),
            double(x[first_bad]));
    }
}

idx_t scoring_block_rows(int k) {
    const idx_t max_floats = idx_t(1) << 24;
    return std::max<idx_t>(1, std::min<idx_t>(4096, max_floats / k));
}

} // namespace impl

/*********************************************************************
 * names
 *********************************************************************/

namespace {

const impl::EnumName<CovarianceType> kCovarianceNames[] = {
    {CovarianceType::Spherical, "spherical"},
    {CovarianceType::Diagonal, "diagonal"},
    {CovarianceType::TiedSpherical, "tied"},
    {CovarianceType::Full, "full"},
    {CovarianceType::Spherical, "sph"},
    {CovarianceType::Diagonal, "diag"},
    {CovarianceType::TiedSpherical, "tied-spherical"},
};

const impl::EnumName<GmmInit> kInitNames[] = {
    {GmmInit::KMeans, "kmeans"},
    {GmmInit::KMeansPlusPlus, "kmeans++"},
    {GmmInit::Random, "random"},
};

} // namespace

const char* covariance_type_name(CovarianceType type) {
    return impl::enum_name(kCovarianceNames, type, "covariance type");
}

CovarianceType covariance_type_from_name(const std::string& name) {
    return impl::enum_from_name(kCovarianceNames, name, "covariance type");
}

const char* gmm_init_name(GmmInit init) {
    return impl::enum_name(kInitNames, init, "GMM initialisation");
}

GmmInit gmm_init_from_name(const std::string& name) {
    return impl::enum_from_name(kInitNames, name, "GMM initialisation");
}

void GmmParameters::check(const char* who) const {
    covariance_type_name(covariance); // throws on a value outside the enum
    gmm_init_name(init);
    FAISS_THROW_IF_NOT_FMT(
        niter >= 0 && niter <= kMaxIterations,
        "%s: niter=%d must be in [0, %d]",
        who,
        niter,
        kMaxIterations);
    FAISS_THROW_IF_NOT_FMT(
        std::isfinite(tol) && tol >= 0,
        "%s: tol=%g must be finite and >= 0",
        who,
        tol);
    FAISS_THROW_IF_NOT_FMT(
        std::isfinite(reg_covar) && reg_covar >= 0,
        "%s: reg_covar=%g must be finite and >= 0",
        who,
        reg_covar);
    FAISS_THROW_IF_NOT_FMT(
        kmeans_niter >= 0 && kmeans_niter <= kMaxIterations,
        "%s: kmeans_niter=%d must be in [0, %d]",
        who,
        kmeans_niter,
        kMaxIterations);
    FAISS_THROW_IF_NOT_FMT(
        max_points_per_component >= 0,
        "%s: max_points_per_component=%d must be >= 0 (0: no subsampling)",
        who,
        max_points_per_component);
    FAISS_THROW_IF_NOT_FMT(
        std::isfinite(min_component_count) && min_component_count >= 0,
        "%s: min_component_count=%g must be finite and >= 0",
        who,
        min_component_count);
    FAISS_THROW_IF_NOT_FMT(
        block_size >= 1 && block_size <= kMaxBlockSize,
        "%s: block_size=%" PRId64 " must be in [1, %" PRId64 "]",
        who,
        block_size,
        kMaxBlockSize);
}

/*********************************************************************
 * GaussianMixture
 *********************************************************************/

void check_full_covariance_size(int d, int k, const char* who) {
    const uint64_t bytes = uint64_t(k) * uint64_t(d) * uint64_t(d) * 4;
    FAISS_THROW_IF_NOT_FMT(
        bytes <= kMaxFullCovarianceBytes,
        "%s: a full-covariance GMM of k = %d components in d = %d "
        "dimensions needs k * d^2 * 4 = %.3g GiB for its covariances (as "
        "much again for their Cholesky factors, twice that for the EM "
        "statistics); the limit is %.3g GiB. Use diagonal covariance, fewer "
        "components or fewer dimensions (e.g. PCA)",
        who,
        k,
        d,
        double(bytes) / double(uint64_t(1) << 30),
        double(kMaxFullCovarianceBytes) / double(uint64_t(1) << 30));
}

GaussianMixture::GaussianMixture(int d, int k, CovarianceType covariance)
    : d(d), k(k), covariance(covariance) {
    FAISS_THROW_IF_NOT_FMT(d >= 1, "GMM dimension d = %d < 1", d);
    FAISS_THROW_IF_NOT_FMT(k >= 1, "GMM component count k = %d < 1", k);
    covariance_type_name(covariance); // throws on a value outside the enum
    weights.assign(k, 1.0f / k);
    means.assign(size_t(k) * d, 0.0f);
    variances.assign(size_t(k) * variances_per_component(), 1.0f);
    if (covariance == CovarianceType::Full) {
        check_full_covariance_size(d, k, "GaussianMixture");
        covariances.assign(size_t(k) * d * d, 0.0f);
        for (size_t j = 0; j < size_t(k); j++) {
            for (size_t l = 0; l < size_t(d); l++) {
                covariances[(j * d + l) * d + l] = 1.0f;
            }
        }
        update_precision_cholesky();
    }
}

void GaussianMixture::update_precision_cholesky(float diagonal_add) {
    FAISS_THROW_IF_NOT_FMT(
        covariance == CovarianceType::Full,
        "update_precision_cholesky: the model has %s covariance, not full",
        covariance_type_name(covariance));
    FAISS_THROW_IF_NOT_FMT(d >= 1, "GMM dimension d = %d < 1", d);
    FAISS_THROW_IF_NOT_FMT(k >= 1, "GMM component count k = %d < 1", k);
    FAISS_THROW_IF_NOT_FMT(
        std::isfinite(diagonal_add) && diagonal_add >= 0,
        "update_precision_cholesky: diagonal_add = %g must be finite and "
        ">= 0",
        diagonal_add);
    const size_t dd = size_t(d) * d;
    FAISS_THROW_IF_NOT_FMT(
        covariances.size() == size_t(k) * dd,
        "update_precision_cholesky: covariances has %zd values, expected "
        "k * d * d = %zd",
        covariances.size(),
        size_t(k) * dd);
    precision_cholesky.resize(size_t(k) * dd);
    log_det_cholesky.resize(k);
    variances.resize(size_t(k) * d);
    // info[j]: 0, -1 (a non-finite value), or LAPACK's code (> 0: the
    // leading minor that is not positive definite; -2: L singular)
    std::vector<int> info(k, 0);
    const bool team = impl::lapack_per_component_in_team(k, d);
    const impl::OpenBlasOneThread blas_one_thread(team);
#pragma omp parallel if (team)
    {
        std::vector<double> a(dd);
#pragma omp for schedule(dynamic)
        for (int j = 0; j < k; j++) {
            float* cov = covariances.data() + size_t(j) * dd;
            float* u = precision_cholesky.data() + size_t(j) * dd;
            bool finite = true;
            for (int r = 0; r < d; r++) {
                cov[size_t(r) * d + r] += diagonal_add;
                for (int c = 0; c < r; c++) {
                    // exactly symmetric: both entries their mean
                    float v = float(
                        0.5 * (double(cov[size_t(r) * d + c]) +
                               cov[size_t(c) * d + r]));
                    cov[size_t(r) * d + c] = cov[size_t(c) * d + r] = v;
                }
            }
            for (size_t e = 0; e < dd; e++) {
                a[e] = cov[e];
                finite = finite && std::isfinite(cov[e]);
            }
            if (!finite) {
                info[j] = -1;
                continue;
            }
            // Column-major a = Sigma_j (symmetric): L in its lower
            // triangle, then L^-1 there.
            dpotrf_("Lower", &d, a.data(), &d, &info[j]);
            if (info[j] != 0) {
                continue;
            }
            int info_inv = 0;
            dtrtri_("Lower", "Non-unit", &d, a.data(), &d, &info_inv);
            if (info_inv != 0) {
                info[j] = -2;
                continue;
            }
            // The column-major lower triangle holding L^-1, read row-major,
            // is (L^-1)^T = U_j, upper triangular: zero the rest.
            double log_det = 0;
            for (int r = 0; r < d; r++) {
                for (int c = 0; c < d; c++) {
                    u[size_t(r) * d + c] =
                        c >= r ? float(a[size_t(r) * d + c]) : 0.0f;
                }
                log_det += std::log(a[size_t(r) * d + r]);
                variances[size_t(j) * d + r] = cov[size_t(r) * d + r];
            }
            log_det_cholesky[j] = float(log_det);
        }
    }
    // the first bad component, whatever the threads' order
    const int bad_component =
        int(std::find_if(info.begin(), info.end(), [](int v) { return v; }) -
            info.begin());
    if (bad_component < k) {
        const int bad_minor = info[bad_component];
        const float* cov = covariances.data() + size_t(bad_component) * dd;
        float bad_value = cov[0];
        for (int l = 1; l < d; l++) {
            bad_value = std::min(bad_value, cov[size_t(l) * d + l]);
        }
        if (bad_minor == -1) {
            FAISS_THROW_FMT(
                "full-covariance GMM: covariance of component %d holds a "
                "non-finite value",
                bad_component);
        }
        FAISS_THROW_FMT(
            "full-covariance GMM: covariance of component %d is not "
            "positive definite (%s%d of %d; smallest diagonal value %g, "
            "%g added to the diagonal); raise reg_covar or use fewer "
            "components",
            bad_component,
            bad_minor > 0 ? "Cholesky factorisation fails at leading minor "
                          : "its Cholesky factor is singular, code ",
            bad_minor,
            d,
            bad_value,
            diagonal_add);
    }
}

void GaussianMixture::train(
    idx_t n, const float* x, const GmmParameters& params) {
    FAISS_THROW_IF_NOT_FMT(d >= 1, "GMM dimension d = %d < 1", d);
    FAISS_THROW_IF_NOT_FMT(k >= 1, "GMM component count k = %d < 1", k);
    FAISS_THROW_IF_NOT_FMT(
        n >= k,
        "GMM training needs n >= k points: n = %" PRId64 ", k = %d",
        int64_t(n),
        k);
    FAISS_THROW_IF_NOT_MSG(x, "GMM training: x is null");
    impl::check_finite(n, d, x, "GMM training data");

    std::vector<float> sample;
    idx_t n_train = subsample_training_set(d, k, n, x, params, &sample);
    const float* x_train = sample.empty() ? x : sample.data();
    initialize_gmm(this, n_train, x_train, params);
    CpuEStep estep(n_train, x_train, d, params.block_size);
    run_em(this, &estep, params);
}

void GaussianMixture::log_joint(idx_t n, const float* x, float* out) const {
    if (!check_scan(*this, n, x)) {
        return;
    }
    LogJointScan scan(*this, n);
    scan.run(x, [&](int, idx_t i0, idx_t nb, const float* logits) {
        std::copy(logits, logits + size_t(nb) * k, out + size_t(i0) * k);
    });
}

void GaussianMixture::log_density(idx_t n, const float* x, float* out) const {
    if (!check_scan(*this, n, x)) {
        return;
    }
    const int kk = k;
    LogJointScan scan(*this, n);
    scan.run(x, [&](int, idx_t i0, idx_t nb, float* logits) {
        for (idx_t i = 0; i < nb; i++) {
            out[i0 + i] = impl::softmax_row(kk, logits + size_t(i) * kk);
        }
    });
}

double GaussianMixture::mean_log_likelihood(idx_t n, const float* x) const {
    FAISS_THROW_IF_NOT_FMT(
        n > 0, "mean log-likelihood of n = %" PRId64 " points", int64_t(n));
    check_scan(*this, n, x);
    const int kk = k;
    LogJointScan scan(*this, n);
    // Per-range sums added in range order: deterministic for a given thread
    // count (an OpenMP reduction is not).
    std::vector<double> range_total(scan.team, 0.0);
    scan.run(x, [&](int r, idx_t, idx_t nb, float* logits) {
        for (idx_t i = 0; i < nb; i++) {
            range_total[r] += impl::softmax_row(kk, logits + size_t(i) * kk);
        }
    });
    double total = 0;
    for (double t : range_total) {
        total += t;
    }
    return total / n;
}

void GaussianMixture::top_posteriors(
    idx_t n,
    const float* x,
    int m,
    float* posteriors,
    idx_t* components,
    float temperature) const {
    FAISS_THROW_IF_NOT_FMT(
        m >= 1 && m <= k, "top_posteriors: m = %d not in [1, k = %d]", m, k);
    FAISS_THROW_IF_NOT_FMT(
        temperature > 0 && std::isfinite(temperature),
        "top_posteriors: temperature = %g must be > 0 and finite",
        temperature);
    if (!check_scan(*this, n, x)) {
        return;
    }
    const int kk = k;
    const float inv_t = 1.0f / temperature;
    LogJointScan scan(*this, n);
    std::vector<int> orders(size_t(scan.team) * kk); // one per range
    scan.run(x, [&](int r, idx_t i0, idx_t nb, float* logits) {
        int* order = orders.data() + size_t(r) * kk;
        for (idx_t i = 0; i < nb; i++) {
            float* row = logits + size_t(i) * kk;
            std::iota(order, order + kk, 0);
            // Highest first; ties by component index, so results do not
            // depend on the sort implementation.
            std::partial_sort(
                order, order + m, order + kk, [row](int a, int b) {
                    return row[a] > row[b] || (row[a] == row[b] && a < b);
                });
            if (inv_t != 1.0f) {
                for (int j = 0; j < kk; j++) {
                    row[j] *= inv_t;
                }
            }
            impl::softmax_row(kk, row);
            size_t out = size_t(i0 + i) * m;
            for (int c = 0; c < m; c++) {
                posteriors[out + c] = row[order[c]];
                components[out + c] = order[c];
            }
        }
    });
}

size_t GaussianMixture::n_parameters() const {
    size_t kk = k, dd = d;
    const size_t n_variances = covariance == CovarianceType::TiedSpherical ? 1
                               : covariance == CovarianceType::Full
                                   ? kk * dd * (dd + 1) / 2
                                   : kk * size_t(variances_per_component());
    return (kk - 1) + kk * dd + n_variances;
}

double GaussianMixture::bic(idx_t n, const float* x) const {
    double ll = mean_log_likelihood(n, x) * n;
    return -2 * ll + double(n_parameters()) * std::log(double(n));
}

double GaussianMixture::aic(idx_t n, const float* x) const {
    double ll = mean_log_likelihood(n, x) * n;
    return -2 * ll + 2 * double(n_parameters());
}

void GaussianMixture::check_consistency() const {
    impl::check_model_shape(*this);
    double weight_sum = 0;
    for (int j = 0; j < k; j++) {
        float w = weights[j];
        FAISS_THROW_IF_NOT_FMT(
            std::isfinite(w) && w >= 0,
            "GMM weight %d = %g is not a finite value >= 0",
            j,
            w);
        weight_sum += w;
    }
    FAISS_THROW_IF_NOT_FMT(
        std::abs(weight_sum - 1) <= 1e-3,
        "GMM weights sum to %g, not 1",
        weight_sum);
    for (size_t i = 0; i < means.size(); i++) {
        FAISS_THROW_IF_NOT_FMT(
            std::isfinite(means[i]),
            "GMM mean of component %zd, dimension %zd is %g",
            i / d,
            i % d,
            means[i]);
    }
    const size_t vpc = variances_per_component();
    for (size_t i = 0; i < variances.size(); i++) {
        FAISS_THROW_IF_NOT_FMT(
            std::isfinite(variances[i]) && variances[i] > 0,
            "GMM variance of component %zd, dimension %zd is %g (must be "
            "finite and > 0)",
            i / vpc,
            i % vpc,
            variances[i]);
    }
    if (covariance == CovarianceType::Full) {
        const size_t dd = size_t(d) * d;
        for (size_t j = 0; j < size_t(k); j++) {
            const float* cov = covariances.data() + j * dd;
            for (size_t r = 0; r < size_t(d); r++) {
                const float diag = cov[r * d + r];
                FAISS_THROW_IF_NOT_FMT(
                    diag == variances[j * d + r],
                    "full-covariance GMM: covariance of component %zd has "
                    "%g at (%zd, %zd) but variances holds %g (call "
                    "update_precision_cholesky())",
                    j,
                    diag,
                    r,
                    r,
                    variances[j * d + r]);
                for (size_t c = 0; c < r; c++) {
                    const float a = cov[r * d + c], b = cov[c * d + r];
                    const double scale =
                        std::sqrt(double(diag) * cov[c * d + c]);
                    FAISS_THROW_IF_NOT_FMT(
                        std::isfinite(a) &&
                            std::abs(double(a) - b) <= 1e-4 * scale,
                        "full-covariance GMM: covariance of component %zd "
                        "is not symmetric: %g at (%zd, %zd), %g at (%zd, "
                        "%zd)",
                        j,
                        a,
                        r,
                        c,
                        b,
                        c,
                        r);
                }
            }
            FAISS_THROW_IF_NOT_FMT(
                std::isfinite(log_det_cholesky[j]),
                "full-covariance GMM: log-determinant of component %zd is "
                "%g",
                j,
                log_det_cholesky[j]);
        }
    }
    if (covariance == CovarianceType::TiedSpherical) {
        for (int j = 1; j < k; j++) {
            FAISS_THROW_IF_NOT_FMT(
                variances[j] == variances[0],
                "tied GMM: variance of component %d is %g, component 0 has "
                "%g (a tied model shares one variance)",
                j,
                variances[j],
                variances[0]);
        }
    }
}

} // namespace faiss_gmm
