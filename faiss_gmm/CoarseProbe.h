/**
 * The coarse step of an IVF-GMM search: which lists each query probes, in
 * which order, and where adaptive probing stops. One CPU implementation
 * (IndexIVFGMM::search) that the GPU coarse kernels are tested against.
 *
 *  - probe order L2: the nprobe nearest means (an exact L2 scan);
 *  - probe order posterior: the nprobe largest log pi_j + log N(q | j);
 *  - distance_ratio > 0 (L2 order): lists whose squared distance exceeds
 *    distance_ratio times the nearest one's are dropped;
 *  - posterior_mass > 0: lists after the point where the probed lists hold
 *    that fraction of the tempered posterior (temperature
 *    mass_temperature) are dropped.
 * Dropped slots hold list -1 and coarse score +inf.
 */

#pragma once

#include <faiss/Index.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/IVFGMMParameters.h>
#include <faiss_gmm/faiss_compat.h>

namespace faiss_gmm {

/**
 * @param gmm        the trained model
 * @param quantizer  an exact L2 index over gmm's means
 * @param params     nprobe (<= gmm.k) and the options (checked)
 * @param n          queries
 * @param x          n x d queries
 * @param assign     n x nprobe lists, in probe order
 * @param coarse_dis n x nprobe scores: squared L2 distance (L2 order) or
 *                   minus the log-joint (posterior order)
 */
void coarse_probe(
    const GaussianMixture& gmm,
    const faiss::Index& quantizer,
    const SearchParametersIVFGMM& params,
    idx_t n,
    const float* x,
    idx_t* assign,
    float* coarse_dis);

} // namespace faiss_gmm
