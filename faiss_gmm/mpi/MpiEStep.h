/**
 * GMM training over several processes (MPI ranks, possibly on several
 * machines). EM's E-step output is a plain sum over points
 * (GmmSufficientStats), so each rank computes the statistics of its own rows
 * with any local E-step (CPU, one GPU, several GPUs) and the ranks add them
 * up with MPI; every rank then runs the same M-step on the same numbers and
 * holds the same model.
 *
 * Built as the library faiss_gmm_mpi when CMake finds MPI (OpenMPI on
 * Debian: openmpi-bin libopenmpi-dev).
 */

#pragma once

#include <functional>
#include <memory>

#include <mpi.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmEM.h>

namespace faiss_gmm {
namespace mpi {

/**
 * The contiguous rows [*begin, *end) of n rows that rank `rank` of `size`
 * ranks owns: ranks in order, sizes differing by at most one (the first
 * n % size ranks get one row more).
 */
void row_range(idx_t n, int rank, int size, idx_t* begin, idx_t* end);

/**
 * A GmmEStep whose statistics are the sum over the ranks of a communicator
 * of each rank's local E-step. Every rank of the communicator must call
 * compute() the same number of times (it is a collective operation).
 *
 * The statistics are packed into one double array in a fixed layout
 * (n, log-likelihood, N_k, sum r x, second moments), summed onto rank 0 by
 * MPI_Reduce and sent back by MPI_Bcast: every rank receives the very same
 * bits, which an MPI_Allreduce does not promise, so the ranks' models
 * cannot drift apart. Messages are cut into pieces of at most 2^27 doubles
 * (MPI counts are int).
 *
 * A failure of one rank's local E-step (out of memory, a CUDA error) is
 * agreed on before the reduction: every rank then throws, naming the first
 * failing rank and its message, instead of waiting forever in a collective.
 */
struct MpiEStep : GmmEStep {
    /// this rank's E-step over its rows (not owned); null when the rank has
    /// no rows (it then contributes nothing)
    GmmEStep* local;
    /// communicator the statistics are summed over (not owned)
    MPI_Comm comm;
    /// wall time of the last local E-step, milliseconds
    double last_local_ms = 0;
    /// wall time of the last reduction (agreement included), milliseconds
    double last_reduce_ms = 0;

    /**
     * @param local this rank's E-step (must outlive this object), or null
     * @param comm  communicator (must outlive this object)
     */
    MpiEStep(GmmEStep* local, MPI_Comm comm);

    void
    compute(const GaussianMixture& model, GmmSufficientStats* stats) override;
};

/**
 * Builds a rank's local E-step over n rows x (n >= 1, d floats each, row
 * major; x outlives the E-step).
 */
using LocalEStepFactory =
    std::function<std::unique_ptr<GmmEStep>(idx_t n, const float* x, int d)>;

/**
 * Same contract and, up to the summation order of the statistics, the same
 * result as GaussianMixture::train on the concatenation of every rank's
 * rows (rank 0's first): same subsampling, initialisation, EM iterations,
 * iteration_stats and verbose lines (printed by rank 0 only). Collective
 * over comm; every rank ends with the same model.
 *
 * - Subsampling (params.max_points_per_component): the seeded choice of
 *   rows is made over the global row index, exactly as
 *   subsample_training_set does, so 1 and R ranks train on the same rows;
 *   each rank keeps the chosen rows it owns.
 * - Initialisation: rank 0 gathers the training sample (in global row
 *   order), runs initialize_gmm on it and broadcasts the model. With
 *   max_points_per_component = 0 the sample is every row, so rank 0 must
 *   hold the whole data set for the initialisation.
 * - EM: run_em with an MpiEStep around each rank's local E-step over its
 *   part of the sample.
 *
 * Errors (n < k, NaN/Inf rows, different model shapes on different ranks,
 * a failing local E-step) are thrown on every rank.
 *
 * @param model       the model to fit: same d, k and covariance on every
 *                    rank
 * @param n_local     rows held by this rank (may be 0)
 * @param x_local     n_local x d floats, row-major (null when n_local = 0)
 * @param params      EM parameters: must be the same on every rank
 *                    (params.verbose is honoured on rank 0 only)
 * @param comm        communicator of the ranks taking part
 * @param local_estep builds the local E-step; empty (the default): a
 *                    CpuEStep with params.block_size, centred on the mean
 *                    of the whole training sample as the one-process
 *                    E-step is
 * @param init_assign_index rank 0's nearest-mean index for initialize_gmm
 *                    (e.g. a gpu::GpuIndexFlatL2); null: the CPU's. Other
 *                    ranks ignore it.
 */
void train_gmm_mpi(
    GaussianMixture* model,
    idx_t n_local,
    const float* x_local,
    const GmmParameters& params,
    MPI_Comm comm,
    const LocalEStepFactory& local_estep = LocalEStepFactory(),
    faiss::Index* init_assign_index = nullptr);

} // namespace mpi
} // namespace faiss_gmm
