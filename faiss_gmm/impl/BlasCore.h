/**
 * Internal (not installed): which kernels the BLAS library runs, and advice
 * when OpenBLAS fell back to slow ones on a CPU it does not know.
 *
 * OpenBLAS picks its kernels at load time from the CPU model. A release older
 * than the CPU (Debian 12's OpenBLAS 0.3.21 on Intel family 6 model 207,
 * Emerald Rapids) falls back to its "Prescott" kernels (SSE3 only) although
 * the CPU has AVX2 and AVX-512. Measured on such a machine, 2 cores, the CPU
 * E-step of 262144 x 128, K = 1024 (diagonal), 9 runs each: 3.3-4.5 s with
 * Prescott, 1.7-2.3 s with OPENBLAS_CORETYPE=Haswell, 1.4-1.9 s with
 * SkylakeX (about 2x). Only the environment variable, read when OpenBLAS
 * loads, changes the choice, so faiss-gmm says so (verbose EM,
 * faiss_gmm_eval) rather than acting.
 */

#pragma once

#include <string>

namespace faiss_gmm {
namespace impl {

/// OpenBLAS's configuration line and kernel family, or "BLAS other than
/// OpenBLAS".
std::string blas_description();

/**
 * Advice when the BLAS kernels are far below what the CPU can run, else "".
 * @param core_name      OpenBLAS's kernel family (openblas_get_corename), ""
 *                       when the BLAS is not OpenBLAS
 * @param has_avx2       the CPU runs AVX2 and FMA
 * @param has_avx512     the CPU runs AVX-512F
 * @param coretype_set   OPENBLAS_CORETYPE is set (the user chose)
 */
std::string slow_blas_advice(
    const std::string& core_name,
    bool has_avx2,
    bool has_avx512,
    bool coretype_set);

/// slow_blas_advice for this process's BLAS and CPU.
std::string slow_blas_advice();

} // namespace impl
} // namespace faiss_gmm
