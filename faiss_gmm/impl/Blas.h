/**
 * Internal (not installed): the Fortran BLAS and LAPACK routines faiss-gmm
 * calls, declared as FAISS declares its own (LP64 integers); OpenBLAS (or the
 * reference BLAS + LAPACK) provides them.
 */

#pragma once

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
