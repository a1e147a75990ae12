/**
 * Internal (not installed): the Fortran BLAS and LAPACK routines faiss-gmm
 * calls, declared as FAISS declares its own (LP64 integers); OpenBLAS (or the
 * reference BLAS + LAPACK) provides them. Also the rule and guard for
 * per-component LAPACK calls in OpenMP teams.
 */

#pragma once

#include <cstddef>

extern "C" {
int sgemm_(
    const char* transa,
    const char* transb,
    const int* m,
    const int* n,
    const int* k,
    const float* alpha,
    const float* a,
    const int* lda,
    const float* b,
    const int* ldb,
    const float* beta,
    float* c,
    const int* ldc);
int dgemm_(
    const char* transa,
    const char* transb,
    const int* m,
    const int* n,
    const int* k,
    const double* alpha,
    const double* a,
    const int* lda,
    const double* b,
    const int* ldb,
    const double* beta,
    double* c,
    const int* ldc);
/// B := alpha op(A) B or alpha B op(A), A triangular (full covariance
/// scoring: (x - mu) U)
int strmm_(
    const char* side,
    const char* uplo,
    const char* transa,
    const char* diag,
    const int* m,
    const int* n,
    const float* alpha,
    const float* a,
    const int* lda,
    float* b,
    const int* ldb);
/// B := alpha op(A)^-1 B or alpha B op(A)^-1, A triangular (full
/// covariance: whitened moments back to the data's coordinates)
int dtrsm_(
    const char* side,
    const char* uplo,
    const char* transa,
    const char* diag,
    const int* m,
    const int* n,
    const double* alpha,
    const double* a,
    const int* lda,
    double* b,
    const int* ldb);
/// C := alpha A A^T + beta C (or A^T A), one triangle of C (full
/// covariance second moments)
int dsyrk_(
    const char* uplo,
    const char* trans,
    const int* n,
    const int* k,
    const double* alpha,
    const double* a,
    const int* lda,
    const double* beta,
    double* c,
    const int* ldc);
/// LAPACK: Cholesky factor of a symmetric positive-definite matrix
int dpotrf_(
    const char* uplo, const int* n, double* a, const int* lda, int* info);
/// LAPACK: inverse of a triangular matrix
int dtrtri_(
    const char* uplo,
    const char* diag,
    const int* n,
    double* a,
    const int* lda,
    int* info);
}

namespace faiss_gmm {
namespace impl {

/**
 * Whether k independent LAPACK / BLAS calls on d x d matrices (one per
 * mixture component: Cholesky factorisations, triangular solves) run in an
 * OpenMP team, one call per thread. Only when there is enough work (k d^2
 * values >= 2^20) and the matrices are small (d <= 256), where one call
 * alone gains little from BLAS's threads; larger matrices run one after
 * another with BLAS's own threads. A team holds an
 * OpenBlasOneThread (below) while it runs, so that the two thread pools do
 * not oversubscribe the cores.
 */
inline bool lapack_per_component_in_team(int k, int d) {
    return size_t(k) * size_t(d) * size_t(d) >= (size_t(1) << 20) && d <= 256;
}

} // namespace impl
} // namespace faiss_gmm

// OpenBLAS's thread-count controls, weak: absent with other BLAS libraries.
extern "C" {
int openblas_get_num_threads(void) __attribute__((weak));
void openblas_set_num_threads(int) __attribute__((weak));
}

namespace faiss_gmm {
namespace impl {

/**
 * Keeps OpenBLAS on its calling thread while alive (restores its thread
 * count after), for BLAS / LAPACK calls made by an OpenMP team: OpenBLAS's
 * pthreads build otherwise starts its own threads inside every call of the
 * team. Measured on 2 cores (Debian's OpenBLAS 0.3.21), 1024 Cholesky
 * factorisations and inversions of 128 x 128 (update_precision_cholesky):
 * 232-242 ms one after another, 614-709 ms in a team of 2, 144-146 ms in a
 * team of 2 with this guard. The count is
 * process-wide: BLAS calls of other threads meanwhile run on one thread too.
 * Does nothing with other BLAS libraries (MKL runs sequentially inside
 * OpenMP regions by itself).
 */
class OpenBlasOneThread {
   public:
    explicit OpenBlasOneThread(bool active)
        : saved_(
              active && openblas_get_num_threads && openblas_set_num_threads
                  ? openblas_get_num_threads()
                  : 0) {
        if (saved_ > 1) {
            openblas_set_num_threads(1);
        }
    }
    ~OpenBlasOneThread() {
        if (saved_ > 1) {
            openblas_set_num_threads(saved_);
        }
    }
    OpenBlasOneThread(const OpenBlasOneThread&) = delete;
    OpenBlasOneThread& operator=(const OpenBlasOneThread&) = delete;

   private:
    const int saved_; ///< OpenBLAS's thread count before, 0 when inactive
};

} // namespace impl
} // namespace faiss_gmm
