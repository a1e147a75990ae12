/**
 * The parts of the _faiss_gmm module, one registration function per file,
 * and the GPU entry points the CPU parts call (bind_gpu.cpp; they throw in
 * builds without CUDA).
 */

#pragma once

#include <string>

#include <nanobind/nanobind.h>

#include <faiss/Index.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/IVFGMMParameters.h>

namespace faiss_gmm {
namespace python {

namespace nb = nanobind;

/// GmmParameters, GaussianMixtureModel, fit_gmm, run_em (bind_gmm.cpp).
void bind_gmm(nb::module_& m);
/// Index classes, index_factory, I/O, statistics (bind_index.cpp).
void bind_index(nb::module_& m);
/// has_gpu, gpu_is_available, GpuIndexIVFGMM, index_cpu_to_gpu /
/// index_gpu_to_cpu (bind_gpu.cpp).
void bind_gpu(nb::module_& m);

/**
 * Whether training runs on a GPU: device "cpu" -> false; "cuda" -> true
 * (throws when the build has no CUDA or gpu_device is not usable); "auto"
 * -> true when the build has CUDA and gpu_device is usable. Anything else
 * raises ValueError.
 */
bool use_gpu(const std::string& device, int gpu_device);

/**
 * EM on a GPU (GIL released by the caller): with initialise,
 * gpu::train_gmm_gpu (subsample, initialise, EM); without,
 * gpu::run_em_on_device from the model's current parameters over (n, x).
 */
void gpu_em(
    GaussianMixture* model,
    idx_t n,
    const float* x,
    const GmmParameters& params,
    int gpu_device,
    const std::string& precision,
    bool initialise);

/// When index is a GpuIndexIVFGMM (bare or in wrappers), its search
/// defaults into *out and true; else false (always false without CUDA).
bool gpu_search_defaults(
    const faiss::Index& index, SearchParametersIVFGMM* out);

/// Raises ValueError unless precision is "fp32", "tf32" or "bf16".
void check_precision(const std::string& precision);

} // namespace python
} // namespace faiss_gmm
