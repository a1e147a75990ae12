/**
 * Blocks of query x base inner products by one GEMM each, on the CPU (BLAS)
 * or on a GPU (cuBLAS, strict fp32: integer-valued data stays exact): the
 * one distance utility of exact ground truth (groundtruth.cpp) and of the
 * evaluation's query x base distance matrix (eval/distance_matrix.cpp).
 */

#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <datasets/vector_io.h>

namespace faiss_gmm {
namespace datasets {

/** Fills blocks of query x base float inner products. */
class InnerProducts {
   public:
    virtual ~InnerProducts() = default;
    /// Makes base rows y[0, ny) (ny * d floats) the right operand of the
    /// following blocks (copied to the device once on the GPU).
    virtual void set_base(const float* y, int64_t ny) = 0;
    /// Returns ip with ip[i * nb + j] = query row q0 + i . base row j0 + j
    /// (i < nq, j < nb; nb <= INT_MAX), valid until the next call.
    virtual const float*
    block(int64_t q0, int64_t nq, int64_t j0, int64_t nb) = 0;
    /// The device, for verbose output ("CPU (BLAS)", "GPU 0 (NVIDIA ...)").
    virtual std::string device_name() const = 0;
};

/**
 * Inner products of the rows of `query` (kept by reference) with base rows.
 *
 * @param query   the left operand (must outlive the object)
 * @param use_gpu cuBLAS on a GPU (throws when the build has no CUDA)
 * @param device  CUDA device (use_gpu; -1: the current one)
 */
std::unique_ptr<InnerProducts>
make_inner_products(const FloatMatrix& query, bool use_gpu, int device = -1);

} // namespace datasets
} // namespace faiss_gmm
