#include <faiss_gmm/mpi/MpiEStep.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <exception>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/utils.h>

namespace faiss_gmm {
namespace mpi {

namespace {

/// Largest number of values in one MPI message (MPI counts are int).
constexpr size_t kMaxMessage = size_t(1) << 27;

void check_mpi(int rc, const char* what) {
    if (rc != MPI_SUCCESS) {
        char text[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(rc, text, &len);
        FAISS_THROW_FMT("MPI GMM training: %s failed: %.*s", what, len, text);
    }
}

int comm_rank(MPI_Comm comm) {
    int rank = 0;
    check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
    return rank;
}

int comm_size(MPI_Comm comm) {
    int size = 0;
    check_mpi(MPI_Comm_size(comm, &size), "MPI_Comm_size");
    return size;
}

/**
 * Collective: when `error` is not empty on some rank, every rank throws
 * with the message of the lowest such rank, so that no rank is left
 * waiting in a later collective.
 */
void agree_on_errors(
    MPI_Comm comm, const std::string& error, const char* stage) {
    const int rank = comm_rank(comm), size = comm_size(comm);
    int mine = error.empty() ? size : rank, first = size;
    check_mpi(
        MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm),
        "agreeing on errors (MPI_Allreduce)");
    if (first == size) {
        return;
    }
    int len = rank == first ? int(std::min<size_t>(error.size(), 4096)) : 0;
    check_mpi(
        MPI_Bcast(&len, 1, MPI_INT, first, comm),
        "sending an error (MPI_Bcast)");
    std::string message(len, '\0');
    if (rank == first) {
        message = error.substr(0, len);
    }
    check_mpi(
        MPI_Bcast(&message[0], len, MPI_CHAR, first, comm),
        "sending an error (MPI_Bcast)");
    FAISS_THROW_FMT(
        "MPI GMM training: %s failed on rank %d of %d: %s",
        stage,
        first,
        size,
        message.c_str());
}

/// Sums buf over the ranks onto rank 0, then sends rank 0's sum to every
/// rank (identical bits everywhere), in messages of at most kMaxMessage.
void sum_to_all(MPI_Comm comm, std::vector<double>* buf) {
    const bool root = comm_rank(comm) == 0;
    for (size_t off = 0; off < buf->size(); off += kMaxMessage) {
        const int count = int(std::min(kMaxMessage, buf->size() - off));
        double* p = buf->data() + off;
        check_mpi(
            MPI_Reduce(
                root ? MPI_IN_PLACE : p,
                root ? p : nullptr,
                count,
                MPI_DOUBLE,
                MPI_SUM,
                0,
                comm),
            "summing the statistics (MPI_Reduce)");
        check_mpi(
            MPI_Bcast(p, count, MPI_DOUBLE, 0, comm),
            "sending the statistics (MPI_Bcast)");
    }
}

/// Rank 0's values of v to every rank (v already sized everywhere).
void broadcast(MPI_Comm comm, std::vector<float>* v) {
    for (size_t off = 0; off < v->size(); off += kMaxMessage) {
        const int count = int(std::min(kMaxMessage, v->size() - off));
        check_mpi(
            MPI_Bcast(v->data() + off, count, MPI_FLOAT, 0, comm),
            "broadcasting the model (MPI_Bcast)");
    }
}

/**
 * The rows subsample_training_set picks: m distinct indices of [0, n),
 * increasing (Floyd's algorithm with the same seeding, so that the choice
 * is the one-process trainer's).
 */
std::vector<idx_t> training_rows(idx_t n, idx_t m, int64_t seed) {
    std::mt19937_64 rng(uint64_t(seed) ^ 0x9e3779b97f4a7c15ULL);
    std::unordered_set<idx_t> chosen;
    chosen.reserve(size_t(m) * 2);
    for (idx_t j = n - m; j < n; j++) {
        const idx_t t = idx_t(rng() % uint64_t(j + 1));
        if (!chosen.insert(t).second) {
            chosen.insert(j);
        }
    }
    std::vector<idx_t> rows(chosen.begin(), chosen.end());
    std::sort(rows.begin(), rows.end());
    return rows;
}

/// Throws on every rank unless the model shape and the parameters that
/// steer the collective steps are the same on every rank.
void check_same_everywhere(
    MPI_Comm comm, const GaussianMixture& model, const GmmParameters& params) {
    const char* names[] = {
        "d",
        "k",
        "model covariance",
        "params.covariance",
        "params.niter",
        "params.seed",
        "params.max_points_per_component",
        "params.init",
        "params.kmeans_niter"};
    constexpr int nv = 9;
    int64_t mine[nv] = {
        model.d,
        model.k,
        int64_t(model.covariance),
        int64_t(params.covariance),
        params.niter,
        params.seed,
        params.max_points_per_component,
        int64_t(params.init),
        params.kmeans_niter};
    int64_t lo[nv], hi[nv];
    check_mpi(
        MPI_Allreduce(mine, lo, nv, MPI_INT64_T, MPI_MIN, comm),
        "comparing the ranks' parameters (MPI_Allreduce)");
    check_mpi(
        MPI_Allreduce(mine, hi, nv, MPI_INT64_T, MPI_MAX, comm),
        "comparing the ranks' parameters (MPI_Allreduce)");
    for (int i = 0; i < nv; i++) {
        FAISS_THROW_IF_NOT_FMT(
            lo[i] == hi[i],
            "MPI GMM training: %s differs between ranks (%" PRId64
            " to %" PRId64 ")",
            names[i],
            lo[i],
            hi[i]);
    }
}

/// Rank 0 receives every rank's rows, in rank order (rows of d floats;
/// counts[r] rows from rank r). Other ranks send theirs.
void gather_rows_to_root(
    MPI_Comm comm,
    int d,
    const std::vector<int64_t>& counts,
    const float* mine,
    std::vector<float>* all) {
    const int rank = comm_rank(comm), size = comm_size(comm);
    const size_t rows_per_message =
        std::max<size_t>(1, kMaxMessage / size_t(d));
    if (rank != 0) {
        for (size_t off = 0; off < size_t(counts[rank]);
             off += rows_per_message) {
            const size_t rows =
                std::min(rows_per_message, size_t(counts[rank]) - off);
            check_mpi(
                MPI_Send(mine + off * d, int(rows * d), MPI_FLOAT, 0, 0, comm),
                "sending the training sample (MPI_Send)");
        }
        return;
    }
    int64_t total = 0;
    for (int64_t c : counts) {
        total += c;
    }
    all->resize(size_t(total) * d);
    std::copy(mine, mine + size_t(counts[0]) * d, all->data());
    size_t at = size_t(counts[0]) * d;
    for (int r = 1; r < size; r++) {
        for (size_t off = 0; off < size_t(counts[r]); off += rows_per_message) {
            const size_t rows =
                std::min(rows_per_message, size_t(counts[r]) - off);
            check_mpi(
                MPI_Recv(
                    all->data() + at,
                    int(rows * d),
                    MPI_FLOAT,
                    r,
                    0,
                    comm,
                    MPI_STATUS_IGNORE),
                "receiving the training sample (MPI_Recv)");
            at += rows * d;
        }
    }
}

} // namespace

void row_range(idx_t n, int rank, int size, idx_t* begin, idx_t* end) {
    FAISS_THROW_IF_NOT_FMT(
        size >= 1 && rank >= 0 && rank < size,
        "row_range: rank %d of %d ranks",
        rank,
        size);
    FAISS_THROW_IF_NOT_FMT(
        n >= 0, "row_range: n = %" PRId64 " < 0", int64_t(n));
    FAISS_THROW_IF_NOT_MSG(begin && end, "row_range: null output");
    const idx_t base = n / size, extra = n % size;
    *begin = rank * base + std::min<idx_t>(rank, extra);
    *end = *begin + base + (rank < extra ? 1 : 0);
}

/*********************************************************************
 * MpiEStep
 *********************************************************************/

MpiEStep::MpiEStep(GmmEStep* local, MPI_Comm comm) : local(local), comm(comm) {
    FAISS_THROW_IF_NOT_MSG(
        comm != MPI_COMM_NULL, "MpiEStep: null communicator");
}

void MpiEStep::compute(
    const GaussianMixture& model, GmmSufficientStats* stats) {
    FAISS_THROW_IF_NOT_MSG(stats, "MpiEStep: stats is null");
    stats->check_shaped_for(model, "MpiEStep");
    double t0 = faiss::getmillisecs();
    std::string error;
    if (local) {
        try {
            local->compute(model, stats);
        } catch (const std::exception& e) {
            error = e.what();
        }
    }
    const double t1 = faiss::getmillisecs();
    last_local_ms = t1 - t0;
    agree_on_errors(comm, error, "the local E-step");

    // Fixed layout: n, log-likelihood, N_k, sum r x, second moments
    // (sum_sq, then sum_outer: one of them is empty).
    const size_t k = stats->count.size(), nx = stats->sum_x.size(),
                 nsq = stats->sum_sq.size(), nouter = stats->sum_outer.size();
    std::vector<double> buf(2 + k + nx + nsq + nouter);
    buf[0] = double(stats->n);
    buf[1] = stats->log_likelihood;
    std::copy(stats->count.begin(), stats->count.end(), buf.begin() + 2);
    std::copy(stats->sum_x.begin(), stats->sum_x.end(), buf.begin() + 2 + k);
    std::copy(
        stats->sum_sq.begin(), stats->sum_sq.end(), buf.begin() + 2 + k + nx);
    std::copy(
        stats->sum_outer.begin(),
        stats->sum_outer.end(),
        buf.begin() + 2 + k + nx + nsq);
    sum_to_all(comm, &buf);
    stats->n = idx_t(std::llround(buf[0]));
    stats->log_likelihood = buf[1];
    std::copy(buf.begin() + 2, buf.begin() + 2 + k, stats->count.begin());
    std::copy(
        buf.begin() + 2 + k, buf.begin() + 2 + k + nx, stats->sum_x.begin());
    std::copy(
        buf.begin() + 2 + k + nx,
        buf.begin() + 2 + k + nx + nsq,
        stats->sum_sq.begin());
    std::copy(
        buf.begin() + 2 + k + nx + nsq, buf.end(), stats->sum_outer.begin());
    last_reduce_ms = faiss::getmillisecs() - t1;
}

/*********************************************************************
 * train_gmm_mpi
 *********************************************************************/

void train_gmm_mpi(
    GaussianMixture* model,
    idx_t n_local,
    const float* x_local,
    const GmmParameters& params,
    MPI_Comm comm,
    const LocalEStepFactory& local_estep,
    faiss::Index* init_assign_index) {
    FAISS_THROW_IF_NOT_MSG(model, "train_gmm_mpi: model is null");
    FAISS_THROW_IF_NOT_MSG(
        comm != MPI_COMM_NULL, "train_gmm_mpi: null communicator");
    const int rank = comm_rank(comm), size = comm_size(comm);
    const int d = model->d, k = model->k;
    const double t_start = faiss::getmillisecs();
    check_same_everywhere(comm, *model, params);
    FAISS_THROW_IF_NOT_FMT(d >= 1, "GMM dimension d = %d < 1", d);
    FAISS_THROW_IF_NOT_FMT(k >= 1, "GMM component count k = %d < 1", k);
    GmmParameters rank_params = params;
    rank_params.verbose = params.verbose && rank == 0;

    // Global row index: ranks hold consecutive row ranges, in rank order.
    std::vector<int64_t> local_rows(size);
    const int64_t my_rows = n_local;
    check_mpi(
        MPI_Allgather(
            &my_rows, 1, MPI_INT64_T, local_rows.data(), 1, MPI_INT64_T, comm),
        "exchanging the row counts (MPI_Allgather)");
    idx_t n = 0, first_row = 0;
    for (int r = 0; r < size; r++) {
        if (r == rank) {
            first_row = n;
        }
        n += local_rows[r];
    }
    {
        std::string error;
        if (n_local < 0) {
            error = "n_local = " + std::to_string(n_local) + " < 0";
        } else if (n_local > 0 && !x_local) {
            error = "x_local is null";
        } else {
            const size_t total = size_t(n_local) * d;
            for (size_t i = 0; i < total; i++) {
                if (!std::isfinite(x_local[i])) {
                    error = "GMM training data contain NaN or Inf (row " +
                            std::to_string(first_row + idx_t(i / d)) + ")";
                    break;
                }
            }
        }
        agree_on_errors(comm, error, "checking the training data");
    }
    FAISS_THROW_IF_NOT_FMT(
        n >= k,
        "GMM training needs n >= k points: n = %" PRId64 ", k = %d",
        int64_t(n),
        k);

    // The training sample: the rows the one-process trainer would pick.
    const idx_t max_points = idx_t(k) * params.max_points_per_component;
    std::vector<float> local_sample;
    const float* x_train = x_local;
    idx_t n_train_local = n_local, n_train = n;
    if (params.max_points_per_component > 0 && n > max_points) {
        const double t0 = faiss::getmillisecs();
        const std::vector<idx_t> rows =
            training_rows(n, max_points, params.seed);
        const auto lo = std::lower_bound(rows.begin(), rows.end(), first_row);
        const auto hi = std::lower_bound(lo, rows.end(), first_row + n_local);
        n_train_local = idx_t(hi - lo);
        local_sample.resize(size_t(n_train_local) * d);
        for (idx_t i = 0; i < n_train_local; i++) {
            const float* src = x_local + size_t(lo[i] - first_row) * d;
            std::copy(src, src + d, local_sample.data() + size_t(i) * d);
        }
        x_train = local_sample.data();
        n_train = max_points;
        if (rank_params.verbose) {
            printf(
                "GMM: sampled %" PRId64 " of %" PRId64
                " training points (k = %d x max_points_per_component = "
                "%d) in %.2f s\n",
                int64_t(max_points),
                int64_t(n),
                k,
                params.max_points_per_component,
                (faiss::getmillisecs() - t0) / 1000);
        }
    }

    // Initialisation on rank 0 over the gathered sample, then broadcast.
    std::vector<int64_t> sample_rows(size);
    const int64_t my_sample = n_train_local;
    check_mpi(
        MPI_Allgather(
            &my_sample,
            1,
            MPI_INT64_T,
            sample_rows.data(),
            1,
            MPI_INT64_T,
            comm),
        "exchanging the sample sizes (MPI_Allgather)");
    {
        const double t0 = faiss::getmillisecs();
        std::vector<float> sample;
        gather_rows_to_root(comm, d, sample_rows, x_train, &sample);
        if (rank_params.verbose) {
            printf(
                "GMM MPI: %d ranks, %" PRId64 " rows; %" PRId64
                " training rows gathered on rank 0 in %.2f s\n",
                size,
                int64_t(n),
                int64_t(n_train),
                (faiss::getmillisecs() - t0) / 1000);
        }
        std::string error;
        if (rank == 0) {
            try {
                initialize_gmm(
                    model,
                    n_train,
                    sample.data(),
                    rank_params,
                    init_assign_index);
            } catch (const std::exception& e) {
                error = e.what();
            }
        }
        agree_on_errors(comm, error, "the initialisation");
    }
    const int vpc = model->variances_per_component();
    if (rank != 0) {
        model->weights.assign(k, 0.0f);
        model->means.assign(size_t(k) * d, 0.0f);
        model->variances.assign(size_t(k) * vpc, 0.0f);
        model->covariances.assign(model->covariances.size(), 0.0f);
        model->is_trained = false;
        model->iteration_stats.clear();
    }
    broadcast(comm, &model->weights);
    broadcast(comm, &model->means);
    broadcast(comm, &model->variances);
    if (model->covariance == CovarianceType::Full) {
        // Every rank factors the same covariances the same way.
        broadcast(comm, &model->covariances);
        if (rank != 0) {
            model->update_precision_cholesky();
        }
    }
    check_mpi(
        MPI_Bcast(&model->variance_floor, 1, MPI_FLOAT, 0, comm),
        "broadcasting the variance floor (MPI_Bcast)");

    // EM: every rank's E-step over its part of the sample, summed. The
    // default CpuEStep is centred on the whole sample's mean, as the
    // one-process E-step is, so that its fp32 products round the same way.
    std::vector<double> mean(d, 0.0);
    if (!local_estep) {
        for (idx_t i = 0; i < n_train_local; i++) {
            const float* xi = x_train + size_t(i) * d;
            for (int l = 0; l < d; l++) {
                mean[l] += xi[l];
            }
        }
        sum_to_all(comm, &mean);
    }
    std::unique_ptr<GmmEStep> local;
    {
        std::string error;
        if (n_train_local > 0) {
            try {
                if (local_estep) {
                    local = local_estep(n_train_local, x_train, d);
                } else {
                    auto cpu = std::make_unique<CpuEStep>(
                        n_train_local, x_train, d, params.block_size);
                    for (int l = 0; l < d; l++) {
                        cpu->center[l] = float(mean[l] / n_train);
                    }
                    local = std::move(cpu);
                }
                if (!local) {
                    error = "the local E-step factory returned null";
                }
            } catch (const std::exception& e) {
                error = e.what();
            }
        }
        agree_on_errors(comm, error, "building the local E-step");
    }
    MpiEStep estep(local.get(), comm);
    run_em(model, &estep, rank_params);
    if (rank_params.verbose) {
        printf(
            "GMM MPI: trained on %d ranks in %.2f s\n",
            size,
            (faiss::getmillisecs() - t_start) / 1000);
    }
}

} // namespace mpi
} // namespace faiss_gmm
