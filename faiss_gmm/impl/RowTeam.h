/**
 * Internal (not installed): one OpenMP team over contiguous row ranges, with
 * BLAS on each calling thread, for the blocked CPU work on n points (the
 * E-step, the scoring scans).
 *
 * Why one team: the earlier form alternated OpenMP regions (per-row work)
 * with BLAS calls that start OpenBLAS's own threads (the products). libgomp's
 * idle workers spin for a while after each region, so the two pools fought
 * over the cores. Here each thread runs its own rows end to end (its own
 * BLAS calls on blocks of its rows, single-threaded), so only one pool is
 * awake. Measured on 2 cores (Debian's OpenBLAS 0.3.21 pthreads, libgomp,
 * OMP_NUM_THREADS=2, through the Python package):
 * - 20 diagonal EM iterations, 100k x 64, K = 16: 2.9-3.0 s alternating,
 *   0.82 s alternating with OMP_WAIT_POLICY=passive, 0.63 s in one team;
 * - score_samples of 200k x 64, K = 256 (diagonal): 636-639 ms
 *   alternating, 287-301 ms in one team.
 */

#pragma once

#include <omp.h>

#include <algorithm>

#include <faiss_gmm/impl/Blas.h>
#include <faiss_gmm/impl/GmmScoring.h>

namespace faiss_gmm {
namespace impl {

/**
 * Ranges of the team for n rows of `cols` values of work each: one per
 * OpenMP thread when worth_parallel(n, cols), else 1 (then BLAS keeps its
 * own threads).
 */
inline int row_team_size(idx_t n, idx_t cols) {
    return worth_parallel(n, cols) ? std::max(1, omp_get_max_threads()) : 1;
}

/// Rows per block of one thread: block_rows split over the team, >= 1.
inline idx_t rows_per_thread_block(idx_t block_rows, int team, idx_t n) {
    return std::max<idx_t>(
        1, std::min<idx_t>(block_rows / team, (n + team - 1) / team));
}

/**
 * Calls body(r, begin, end) once for each range r < team, [begin, end) the
 * r-th of team contiguous, near-equal ranges of [0, n) (the same ranges for
 * the same n and team, so per-range sums added in range order are
 * deterministic), the ranges spread over one OpenMP team. A thread may run
 * several ranges one after another (a team smaller than asked for, or a
 * call from inside a parallel region), so per-range buffers are indexed by
 * r. OpenBLAS is held to the calling thread while a team of more than one
 * range runs (OpenBlasOneThread). body must not throw: allocate before.
 */
template <class Body>
void run_row_team(int team, idx_t n, Body&& body) {
    const OpenBlasOneThread blas_on_calling_thread(team > 1);
#pragma omp parallel num_threads(team) if (team > 1)
    {
        const int nthreads = omp_get_num_threads();
        for (int r = omp_get_thread_num(); r < team; r += nthreads) {
            body(r, n * r / team, n * (r + 1) / team);
        }
    }
}

} // namespace impl
} // namespace faiss_gmm
