/**
 * The full-covariance E-step: the kernels around two cuBLAS products (the
 * host driver, faiss_gmm/gpu/impl/GpuEStepFull.cpp, calls cuBLAS). Plain
 * pointers, sizes and streams only, like gmm_estep_gemm.h.
 *
 * Model (scikit-learn's convention, faiss_gmm::GaussianMixture): per
 * component j a mean mu_j, a weight w_j and the UPPER-triangular Cholesky
 * factor U_j of the precision, Sigma_j^-1 = U_j U_j^T (k x d x d row-major),
 *   log N(x | mu_j, Sigma_j) = -1/2 (d log 2 pi + ||(x - mu_j)^T U_j||^2)
 *                              + sum_i log U_j[i][i].
 * Points are centred on c (x' = x - c, the mixture mean) as in the other
 * E-steps: (x - mu_j)^T U_j = x'^T U_j - o_j with o_j = (mu_j - c)^T U_j.
 *
 * Per chunk of `rows` points (the chunk's buffers are bounded: no N x K
 * matrix for the whole data set, and the rows x K x d whitened points exist
 * only for one chunk):
 *   0. once per model, gmm_estep_full_prepare_model: the product matrix
 *      W = [U_1 | ... | U_K] (d x K d_pad), the offsets o_j and the
 *      constants log2(e) (log w_j + sum_i log U_j[i][i] - d/2 log 2 pi);
 *   1. gmm_estep_full_features: the feature rows F_i = [x'_i | 1]
 *      (estep_full_feature_layout);
 *   2. cuBLAS: Z = F[:, 0:d] . W (rows x K d_pad, fp32): z_ij = x'_i^T U_j;
 *   3. gmm_estep_full_responsibilities: per point, l_ij = const_j -
 *      1/2 ||z_ij - o_j||^2 (a sum of squares: never negative, no
 *      cancellation between expanded terms), online log-sum-exp over j,
 *      R = exp(l - log Z) (rows x K) and ln Z per point for the
 *      log-likelihood (summed in a fixed order);
 *   4. cuBLAS: S += R^T F (K x feature columns, fp32): sum r x' and N_k
 *      (the column of ones);
 *   5. gmm_estep_full_weighted_residuals: Z becomes, in place, Y with
 *      y_ij = sqrt(r_ij) (z_ij - o_j) = sqrt(r_ij) U_j^T (x_i - mu_j);
 *   6. cuBLAS, K strided-batched products: M_j += Y_j^T Y_j (d x d, fp32),
 *      the second moments about the component's own (old) mean in its
 *      whitened coordinates, sum_i r_ij U_j^T (x_i - mu_j)(x_i - mu_j)^T U_j;
 *      the host maps them back, U_j^-T M_j U_j^-1, in double. Why not
 *      sum r x' x'^T about the one centre c (one product of d (d + 1) / 2
 *      columns, half the work): moving those to mu_j subtracts
 *      N_j (mu_j - c)(mu_j - c)^T, whose error grows as (|mu_j - c| /
 *      sigma_j)^2 in fp32 / tf32 (measured: a 1M x 128, K = 256 tf32
 *      E-step on uniformly spread clusters gave covariances that were not
 *      positive definite); whitened residuals are of unit scale;
 *   7. gmm_estep_full_add_statistics: [S | M] into double accumulators
 *      (every few chunks: they sum at most a bounded number of rows in
 *      fp32).
 *
 * Arithmetic (EStepMath): FP32 (cuBLAS SGEMM, the reference) or TF32
 * (inputs rounded to tf32, nearest with ties away, as the other E-steps
 * round their component matrix: W, the features, R and Y; products
 * accumulated in fp32). What tf32 keeps: x' enters step 2 with a 10-bit
 * mantissa, so z - o carries about 2^-11 |x'| / sigma_j of error (linear in the
 * distance from c, as the diagonal GEMM path's logits); step 6 sums unit-scale
 * residuals. BF16 is refused: the whitened differences z - o cancel, which
 * bf16's 8-bit mantissa does not survive; the host maps a bf16 configuration to
 * TF32 for full models.
 */

#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include <kernels/gmm_estep.h>

namespace faiss_gmm {
namespace kernels {

/// The whitened points of one component are padded to a multiple of this
/// many floats (float4 loads in step 3).
constexpr int kEStepFullDimAlign = 4;
/// Warps per CTA of gmm_estep_full_responsibilities (one CTA per point).
constexpr int kEStepFullRowWarps = 8;
/// Largest dimension of a full-covariance model.
constexpr int kEStepFullMaxDim = 1024;

/// d rounded up to kEStepFullDimAlign: columns of one component in W, Z and
/// the offsets.
int estep_full_padded_dim(int d);

/**
 * Columns of a feature row F_i (row-major, `cols` floats per row):
 *   [0, d)            x'_i
 *   one               1 (so that S gives N_k)
 *   other columns     0 (cols is a multiple of 4)
 */
struct FullFeatureLayout {
    int one = 0;  ///< column of the constant 1 (= d)
    int cols = 0; ///< columns of a feature row (and of a row of S)
};
FullFeatureLayout estep_full_feature_layout(int d);

/**
 * Values of the statistics (fp32 product and double accumulator alike):
 * S, k rows of estep_full_feature_layout(d).cols (sum r x', N_k, zeros),
 * then M, k blocks of d x d (sum r (x - mu_j)^T U_j ... about mu_j, in the
 * whitened coordinates of step 6).
 */
int64_t estep_full_statistics_values(int d, int k);

/// Device bytes per chunk row of the chunk buffers: Z (k d_pad floats),
/// R (k floats), the features (cols floats) and one double of ln Z.
int64_t estep_full_row_bytes(int d, int k);

/// The model as the kernels of steps 1 and 3 read it (device pointers).
struct FullEStepModel {
    int d = 0; ///< dimension
    int k = 0; ///< components
    EStepMath math = EStepMath::FP32;
    /// d x k d_pad row-major: products[l][j d_pad + c] = U_j[l][c] (0 for
    /// c >= d), tf32-rounded for TF32
    const float* products = nullptr;
    /// k x d_pad: o_j = (mu_j - c)^T U_j (0 beyond d), fp32
    const float* offsets = nullptr;
    /// k: log2(e) (log w_j + sum_i log U_j[i][i] - d/2 log 2 pi), -inf for
    /// w_j <= 0
    const float* log2_const = nullptr;
    const float* center = nullptr; ///< d floats, c
};

/**
 * Step 0. From the model (device: means k x d, weights k,
 * precision_cholesky k x d x d row-major upper triangular, center d) writes
 * model.products, model.offsets and model.log2_const (non-const views of
 * the same buffers) for model.math. One CTA per component; the offsets and
 * the log-determinant are summed in double.
 */
cudaError_t gmm_estep_full_prepare_model(
    int d,
    int k,
    EStepMath math,
    const float* means,
    const float* weights,
    const float* precision_cholesky,
    const float* center,
    float* products,
    float* offsets,
    float* log2_const,
    cudaStream_t stream);

/**
 * Step 1. x = rows x d fp32 (row-major); features = rows x
 * estep_full_feature_layout(d).cols fp32, x' formed in fp32 and, for TF32,
 * rounded to tf32.
 */
cudaError_t gmm_estep_full_features(
    const FullEStepModel& model,
    int64_t rows,
    const float* x,
    float* features,
    cudaStream_t stream);

/**
 * Step 3. z = rows x k d_pad fp32 (row-major, Z = F[:, 0:d] W). Writes
 * resp = rows x k (row-major) r_ij = exp(l_ij - ln Z_i) (tf32-rounded for
 * TF32), log_z[i] = ln Z_i as a double, then adds sum_i ln Z_i (in row
 * order, one CTA) to *log_likelihood. resp holds the logits between the two
 * sweeps of a row, so it must not alias z.
 */
cudaError_t gmm_estep_full_responsibilities(
    const FullEStepModel& model,
    int64_t rows,
    const float* z,
    float* resp,
    double* log_z,
    double* log_likelihood,
    cudaStream_t stream);

/**
 * Step 5. resp = rows x k (step 3's output); z = rows x k d_pad (step 2's
 * output), overwritten with y_ij = sqrt(r_ij) (z_ij - o_j) (tf32-rounded for
 * TF32; padding coordinates stay 0). z and model.offsets 16-byte aligned.
 */
cudaError_t gmm_estep_full_weighted_residuals(
    const FullEStepModel& model,
    int64_t rows,
    const float* resp,
    float* z,
    cudaStream_t stream);

/// Step 7. acc[e] += stats[e] for e < count (fp32 into double, element-wise).
cudaError_t gmm_estep_full_add_statistics(
    int64_t count, const float* stats, double* acc, cudaStream_t stream);

} // namespace kernels
} // namespace faiss_gmm
