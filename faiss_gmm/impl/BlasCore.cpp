#include <faiss_gmm/impl/BlasCore.h>

#include <cstdlib>

// OpenBLAS's introspection, weak: absent with other BLAS libraries.
extern "C" {
char* openblas_get_corename(void) __attribute__((weak));
char* openblas_get_config(void) __attribute__((weak));
}

namespace faiss_gmm {
namespace impl {

namespace {

/// OpenBLAS's kernel family, "" when the BLAS is not OpenBLAS.
std::string core_name() {
    const char* name =
        openblas_get_corename ? openblas_get_corename() : nullptr;
    return name ? std::string(name) : std::string();
}

} // namespace

std::string blas_description() {
    const std::string core = core_name();
    if (core.empty()) {
        return "BLAS other than OpenBLAS";
    }
    // "OpenBLAS <version> <build options> <core> MAX_THREADS=<n>"
    const char* config = openblas_get_config ? openblas_get_config() : nullptr;
    return (config ? std::string(config) : std::string("OpenBLAS")) +
           " (kernels: " + core + ")";
}

std::string slow_blas_advice(
    const std::string& core_name,
    bool has_avx2,
    bool has_avx512,
    bool coretype_set) {
    // OpenBLAS's fallbacks for unknown x86-64 CPUs: pre-AVX kernel families.
    const bool pre_avx = core_name == "Prescott" || core_name == "Core2" ||
                         core_name == "Penryn" || core_name == "Dunnington" ||
                         core_name == "Nehalem" || core_name == "Atom";
    if (coretype_set || !pre_avx || !has_avx2) {
        return "";
    }
    const char* better = has_avx512 ? "SkylakeX" : "Haswell";
    return "OpenBLAS runs its " + core_name +
           " kernels (no AVX) on this CPU, " + "which has " +
           (has_avx512 ? "AVX-512" : "AVX2") +
           ": this OpenBLAS does not know the CPU. Set OPENBLAS_CORETYPE=" +
           better + " (its E-step measured about 2x faster on such a CPU) " +
           "or use a newer OpenBLAS";
}

std::string slow_blas_advice() {
#if defined(__x86_64__) && defined(__GNUC__)
    const bool avx2 =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = __builtin_cpu_supports("avx512f");
#else
    const bool avx2 = false, avx512 = false;
#endif
    return slow_blas_advice(
        core_name(), avx2, avx512, std::getenv("OPENBLAS_CORETYPE"));
}

} // namespace impl
} // namespace faiss_gmm
