/**
 * Assignment of vectors to inverted lists under a spill rule: the lists a
 * vector is stored in, primary first. One implementation for the CPU index
 * (candidates from an exact CPU scan of the model) and for the GPU index
 * (candidates from its fused top-m kernel, finished by the same rules), so
 * that both build the very same lists; the GPU kernels are tested against
 * assign_lists. IndexIVFGMM::add takes its lists from a ListAssigner (the
 * CPU rule by default; gpu::GpuListAssigner runs the kernel for it).
 *
 * Rules (SpillParameters):
 *  - None: the argmax of the posterior (or the nearest mean when
 *    primary_is_nearest_mean);
 *  - Posterior: the primary, then the next components by tempered
 *    posterior (temperature T) while it reaches tau, at most max_assign;
 *  - Closure: the nearest mean, then the next nearest while the squared
 *    distance is within closure_ratio of the nearest's;
 *  - Soar: the nearest mean, then among the 4 max_assign (>= 16) nearest
 *    the one minimising ||r'||^2 + lambda (<r, r'> / ||r||)^2 (r, r' the
 *    residuals to the primary and the candidate);
 *  - Rair (RAIRS, SIGMOD'26): as Soar with the loss ||r'||^2 +
 *    lambda <r, r'>.
 */

#pragma once

#include <cstdint>
#include <string>

#include <faiss/Index.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/IVFGMMParameters.h>
#include <faiss_gmm/faiss_compat.h>

namespace faiss_gmm {

/**
 * The lists of each of n vectors under `spill`, without adding them.
 *
 * @param gmm       the trained model
 * @param quantizer an exact L2 index over gmm's means (k entries, in order)
 * @param spill     the rule (checked here)
 * @param n         vectors
 * @param x         n x d vectors
 * @param lists     n x spill.max_assign output: lists of vector i at
 *                  lists[i * max_assign ...], primary first, -1 padded
 */
void assign_lists(
    const GaussianMixture& gmm,
    const faiss::Index& quantizer,
    const SpillParameters& spill,
    idx_t n,
    const float* x,
    idx_t* lists);

/// Candidate components of a batch, as a top-m kernel finds them.
struct TopCandidates {
    /// candidates per vector
    int top = 1;
    /// nb x top component ids, best first (-1: none)
    const int32_t* index = nullptr;
    /// nb x top scores: log-joint (Posterior, None by posterior) or
    /// squared L2 distance (Closure, None by nearest mean)
    const float* score = nullptr;
    /// nb values: log sum_j exp(log-joint_j / T) at the spill temperature
    /// (Posterior rule only)
    const float* log_norm = nullptr;
    /// nb values: nearest mean by L2 (Posterior rule with
    /// primary_is_nearest_mean only)
    const int32_t* nearest = nullptr;
};

/**
 * The lists of nb vectors from their top candidates, by the rules of
 * assign_lists (None, Posterior, Closure; Soar needs the vectors
 * themselves: use assign_lists).
 *
 * @param spill      the rule (max_assign lists per vector)
 * @param nb         vectors
 * @param candidates their candidates (see TopCandidates)
 * @param lists      nb x spill.max_assign output, as assign_lists
 */
void lists_from_top_candidates(
    const SpillParameters& spill,
    idx_t nb,
    const TopCandidates& candidates,
    idx_t* lists);

/**
 * How many candidates lists_from_top_candidates needs per vector under
 * `spill` (min(nlist, max_assign) for Posterior and Closure, 1 for None),
 * and whether they are scored by log-joint (else by L2).
 */
int top_candidates_needed(
    const SpillParameters& spill, size_t nlist, bool* by_log_joint);

/**
 * Where IndexIVFGMM::add_with_ids (and IndexIVFGMM::assign_lists) get the
 * lists of a batch of vectors: a strategy the user installs with
 * IndexIVFGMM::set_assigner. Without one, the index runs assign_lists on
 * the CPU (CpuListAssigner). gpu::GpuListAssigner (faiss_gmm/gpu/) finds
 * the candidates with the GPU's fused top-m kernel; every implementation
 * must give the lists assign_lists gives, up to floating-point ties.
 *
 * add_with_ids hands over batch_size() vectors per call. When
 * overlaps_encoding() is true, it assigns the next batch on a helper thread
 * while its OpenMP threads encode and store the current one, so assign()
 * must not rely on running on the caller's thread. Calls never overlap for
 * one index, but an assigner shared by several indexes may be called
 * concurrently: implementations with state serialise their calls.
 */
struct ListAssigner {
    virtual ~ListAssigner() = default;

    /**
     * The lists of n vectors, as assign_lists (same parameters).
     *
     * @param gmm       the index's trained model
     * @param quantizer the index's exact L2 index over gmm's means
     * @param spill     the rule (checked by the caller)
     * @param n         vectors
     * @param x         n x d vectors (host memory)
     * @param lists     n x spill.max_assign output, primary first, -1 padded
     */
    virtual void assign(
        const GaussianMixture& gmm,
        const faiss::Index& quantizer,
        const SpillParameters& spill,
        idx_t n,
        const float* x,
        idx_t* lists) = 0;

    /// Vectors per assign() call that add_with_ids hands over (>= 1).
    virtual idx_t batch_size() const = 0;

    /// True when assign() of this model and rule leaves the CPU's cores
    /// mostly idle (device work), so that add_with_ids runs it beside the
    /// encoding of the last batch; false where it would compete with the
    /// encoding threads for the cores (a CPU rule).
    virtual bool overlaps_encoding(
        const GaussianMixture& /*gmm*/,
        const SpillParameters& /*spill*/) const {
        return false;
    }

    /// Where the lists are computed, for progress lines ("CPU", "GPU 0").
    virtual std::string name() const = 0;
};

/** assign_lists on the CPU: the default assigner of IndexIVFGMM. */
struct CpuListAssigner : ListAssigner {
    /// Vectors per add_with_ids batch (bounds the memory of encoding).
    static constexpr idx_t kDefaultBatchSize = 65536;

    void assign(
        const GaussianMixture& gmm,
        const faiss::Index& quantizer,
        const SpillParameters& spill,
        idx_t n,
        const float* x,
        idx_t* lists) override;
    idx_t batch_size() const override {
        return kDefaultBatchSize;
    }
    std::string name() const override {
        return "CPU";
    }
};

} // namespace faiss_gmm
