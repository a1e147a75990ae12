#include <datasets/synthetic.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include <faiss/impl/FaissAssert.h>

#include <datasets/groundtruth.h>

namespace faiss_gmm {
namespace datasets {

namespace {

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/// xoshiro256** seeded through splitmix64, with Box-Muller normals: the same
/// sequence on every platform (unlike std::normal_distribution).
class Rng {
   public:
    /// A stream identified by (seed, stream, index): vectors are generated
    /// independently, so the result does not depend on thread count and the
    /// first rows do not depend on how many rows are generated.
    Rng(uint64_t seed, uint64_t stream, uint64_t index) {
        uint64_t sm = seed;
        uint64_t mixed = splitmix64(sm);
        sm = mixed ^ (stream * 0xD1B54A32D192ED03ULL);
        mixed = splitmix64(sm);
        sm = mixed ^ (index * 0x8CB92BA72F3D8DD7ULL);
        for (uint64_t& s : s_) {
            s = splitmix64(sm);
        }
    }

    uint64_t next() {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    /// Uniform in [0, 1).
    double uniform() {
        return (next() >> 11) * 0x1.0p-53;
    }

    /// Standard normal (Box-Muller, the second value is kept for the next
    /// call).
    double normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        const double u1 = 1.0 - uniform(); // in (0, 1]: log is finite
        const double u2 = uniform();
        const double r = std::sqrt(-2.0 * std::log(u1));
        const double angle = 2.0 * M_PI * u2;
        spare_ = r * std::sin(angle);
        has_spare_ = true;
        return r * std::cos(angle);
    }

    /// Gamma(shape, 1) by Marsaglia-Tsang (shape < 1 boosted).
    double gamma(double shape) {
        if (shape < 1) {
            const double u = uniform();
            return gamma(shape + 1) * std::pow(1.0 - u, 1.0 / shape);
        }
        const double d = shape - 1.0 / 3.0;
        const double c = 1.0 / std::sqrt(9.0 * d);
        for (;;) {
            double x, v;
            do {
                x = normal();
                v = 1.0 + c * x;
            } while (v <= 0);
            v = v * v * v;
            const double u = 1.0 - uniform();
            if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) {
                return d * v;
            }
        }
    }

   private:
    static uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
    }
    uint64_t s_[4];
    bool has_spare_ = false;
    double spare_ = 0;
};

/// Stream ids: one for the model, one per output matrix.
enum Stream : uint64_t { kModel = 1, kBase = 2, kQuery = 3, kTrain = 4 };

/// The generative model: a mixture of anisotropic Gaussians plus a
/// Student-t background.
struct Model {
    int d = 0;
    int rank = 0;
    int n_clusters = 0;
    double background_fraction = 0;
    double background_dof = 0;
    /// Cumulative cluster probabilities (Zipf sizes in random order).
    std::vector<double> cumulative_weights;
    /// n_clusters x d centres.
    std::vector<double> centers;
    /// n_clusters x d per-axis standard deviations of the isotropic part.
    std::vector<double> axis_scales;
    /// n_clusters x d x rank loadings of the low-rank part.
    std::vector<double> loadings;
    /// Per-axis scale of the background (the spread of the centres).
    std::vector<double> background_scale;
    std::vector<double> background_center;

    explicit Model(const SyntheticParameters& p)
        : d(p.d),
          rank(p.low_rank),
          n_clusters(p.n_clusters),
          background_fraction(p.background_fraction),
          background_dof(p.background_dof) {
        Rng rng(p.seed, kModel, 0);
        // Real descriptors have a decaying variance spectrum: the centres
        // spread less along later axes.
        std::vector<double> spectrum(d);
        for (int j = 0; j < d; j++) {
            spectrum[j] = 1.0 / std::sqrt(1.0 + 0.25 * j);
        }
        // Centres come in groups around a few super-centres, so that
        // neighbouring clusters overlap instead of sitting apart.
        const int n_groups = std::max(1, int(std::sqrt(double(n_clusters))));
        std::vector<double> groups(size_t(n_groups) * d);
        for (int g = 0; g < n_groups; g++) {
            for (int j = 0; j < d; j++) {
                groups[size_t(g) * d + j] = 3.0 * spectrum[j] * rng.normal();
            }
        }
        centers.resize(size_t(n_clusters) * d);
        axis_scales.resize(size_t(n_clusters) * d);
        loadings.resize(size_t(n_clusters) * d * rank);
        std::vector<double> weights(n_clusters);
        for (int c = 0; c < n_clusters; c++) {
            const int g = int(rng.uniform() * n_groups);
            // Spreads differ by about 5x between the 5% and 95% clusters;
            // the scale makes neighbouring clusters overlap. (Calibrated so
            // that k-means IVF recall@10 vs nprobe is close to real SIFT's.)
            const double spread = 0.8 * std::exp(0.5 * rng.normal());
            for (int j = 0; j < d; j++) {
                centers[size_t(c) * d + j] = groups[size_t(g) * d + j] +
                                             1.2 * spectrum[j] * rng.normal();
                axis_scales[size_t(c) * d + j] =
                    spread * std::exp(0.4 * rng.normal());
            }
            // A few elongated directions per cluster, of decaying strength.
            for (int j = 0; j < d; j++) {
                for (int r = 0; r < rank; r++) {
                    loadings[(size_t(c) * d + j) * rank + r] =
                        spread * rng.normal() /
                        std::sqrt(double(rank) * (1 + r));
                }
            }
        }
        // Zipf sizes, assigned to clusters in random order.
        std::vector<int> order(n_clusters);
        for (int c = 0; c < n_clusters; c++) {
            order[c] = c;
        }
        for (int c = n_clusters - 1; c > 0; c--) {
            const int other = int(rng.uniform() * (c + 1));
            std::swap(order[c], order[other]);
        }
        for (int rank_c = 0; rank_c < n_clusters; rank_c++) {
            weights[order[rank_c]] =
                std::pow(rank_c + 1.0, -p.size_zipf_exponent);
        }
        double total = 0;
        cumulative_weights.resize(n_clusters);
        for (int c = 0; c < n_clusters; c++) {
            total += weights[c];
            cumulative_weights[c] = total;
        }
        for (double& w : cumulative_weights) {
            w /= total;
        }
        background_center.assign(d, 0);
        background_scale.resize(d);
        for (int j = 0; j < d; j++) {
            for (int c = 0; c < n_clusters; c++) {
                background_center[j] += centers[size_t(c) * d + j] / n_clusters;
            }
            background_scale[j] = 2.0 * spectrum[j];
        }
    }

    /// Draws one vector into out (d floats).
    void sample(Rng& rng, float* out) const {
        if (rng.uniform() < background_fraction) {
            // Multivariate Student-t: a Gaussian divided by sqrt(chi2 / dof).
            const double chi2 = 2.0 * rng.gamma(background_dof / 2.0);
            const double scale = std::sqrt(background_dof / chi2);
            for (int j = 0; j < d; j++) {
                out[j] = float(
                    background_center[j] +
                    background_scale[j] * scale * rng.normal());
            }
            return;
        }
        const double u = rng.uniform();
        const int c =
            int(std::upper_bound(
                    cumulative_weights.begin(), cumulative_weights.end(), u) -
                cumulative_weights.begin());
        const int cluster = std::min(c, n_clusters - 1);
        std::vector<double> z(rank);
        for (double& v : z) {
            v = rng.normal();
        }
        const double* center = centers.data() + size_t(cluster) * d;
        const double* scales = axis_scales.data() + size_t(cluster) * d;
        const double* load = loadings.data() + size_t(cluster) * d * rank;
        for (int j = 0; j < d; j++) {
            double v = center[j] + scales[j] * rng.normal();
            for (int r = 0; r < rank; r++) {
                v += load[j * rank + r] * z[r];
            }
            out[j] = float(v);
        }
    }

    /// Rows [first, first + n) of a stream into out (n x d), in parallel;
    /// row i depends on (seed, stream, i) only.
    void draw_rows(
        uint64_t seed,
        Stream stream,
        int64_t first,
        int64_t n,
        float* out) const {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            Rng rng(seed, stream, uint64_t(first + i));
            sample(rng, out + i * d);
        }
    }

    FloatMatrix draw(uint64_t seed, Stream stream, int64_t n) const {
        FloatMatrix m;
        m.n = n;
        m.d = d;
        m.data.resize(n * d);
        draw_rows(seed, stream, 0, n, m.data.data());
        return m;
    }
};

/**
 * Throws naming the first parameter of the generative model out of range.
 *
 * @param who the function named first in the message
 */
void check_model_parameters(const SyntheticParameters& p, const char* who) {
    FAISS_THROW_IF_NOT_FMT(
        p.d > 0 && p.n_clusters > 0,
        "%s: bad sizes d=%d n_clusters=%d",
        who,
        p.d,
        p.n_clusters);
    FAISS_THROW_IF_NOT_FMT(
        p.low_rank > 0 && p.low_rank <= p.d,
        "%s: low_rank=%d must be in 1..d=%d",
        who,
        p.low_rank,
        p.d);
    FAISS_THROW_IF_NOT_FMT(
        p.background_fraction >= 0 && p.background_fraction <= 1,
        "%s: background_fraction=%g must be in [0, 1]",
        who,
        p.background_fraction);
    FAISS_THROW_IF_NOT_FMT(
        p.background_dof > 0,
        "%s: background_dof=%g must be positive",
        who,
        p.background_dof);
    FAISS_THROW_IF_NOT_FMT(
        p.size_zipf_exponent >= 0,
        "%s: size_zipf_exponent=%g must be >= 0",
        who,
        p.size_zipf_exponent);
}

} // namespace

struct SyntheticGenerator::Impl {
    Model model;
    uint64_t seed;
    explicit Impl(const SyntheticParameters& p)
        : model((check_model_parameters(p, "SyntheticGenerator"), p)),
          seed(uint64_t(p.seed)) {}
};

SyntheticGenerator::SyntheticGenerator(const SyntheticParameters& params)
    : impl_(std::make_unique<const Impl>(params)) {}

SyntheticGenerator::~SyntheticGenerator() = default;

int SyntheticGenerator::d() const {
    return impl_->model.d;
}

void SyntheticGenerator::draw(
    Part part, int64_t first, int64_t n, float* out) const {
    FAISS_THROW_IF_NOT_FMT(
        first >= 0 && n >= 0,
        "SyntheticGenerator::draw: rows [%lld, %lld + %lld) out of range",
        (long long)first,
        (long long)first,
        (long long)n);
    const Stream stream = part == Part::Base    ? kBase
                          : part == Part::Query ? kQuery
                                                : kTrain;
    impl_->model.draw_rows(impl_->seed, stream, first, n, out);
}

Dataset make_synthetic(const SyntheticParameters& p) {
    FAISS_THROW_IF_NOT_FMT(
        p.d > 0 && p.n_clusters > 0 && p.n_base > 0 && p.n_query > 0 &&
            p.n_train >= 0,
        "make_synthetic: bad sizes d=%d n_clusters=%d n_base=%lld "
        "n_query=%lld n_train=%lld",
        p.d,
        p.n_clusters,
        (long long)p.n_base,
        (long long)p.n_query,
        (long long)p.n_train);
    // the model's parameters (its sizes were checked with the data's above)
    check_model_parameters(p, "make_synthetic");
    FAISS_THROW_IF_NOT_FMT(
        p.groundtruth_k > 0 && p.groundtruth_k <= p.n_base,
        "make_synthetic: groundtruth_k=%d must be in 1..n_base=%lld",
        p.groundtruth_k,
        (long long)p.n_base);
    const auto start = std::chrono::steady_clock::now();
    const Model model(p);
    Dataset ds;
    ds.name = "synthetic";
    char description[512];
    std::snprintf(
        description,
        sizeof(description),
        "synthetic: %lld base, %lld query, d=%d, %d anisotropic clusters "
        "(rank %d, Zipf %.2f sizes), %.0f%% Student-t(%.1f) background, "
        "seed %lld",
        (long long)p.n_base,
        (long long)p.n_query,
        p.d,
        p.n_clusters,
        p.low_rank,
        p.size_zipf_exponent,
        100 * p.background_fraction,
        p.background_dof,
        (long long)p.seed);
    ds.description = description;
    ds.base = model.draw(p.seed, kBase, p.n_base);
    ds.query = model.draw(p.seed, kQuery, p.n_query);
    if (p.n_train > 0) {
        ds.train = model.draw(p.seed, kTrain, p.n_train);
    }
    const double generate_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    if (p.verbose) {
        std::printf("%s\n  generated in %.2f s\n", description, generate_s);
    }
    ds.groundtruth =
        compute_groundtruth(ds.base, ds.query, p.groundtruth_k, p.verbose);
    return ds;
}

} // namespace datasets
} // namespace faiss_gmm
