// The CUDA parts (builds with FAISS_GMM_WITH_GPU): GPU EM, GpuIndexIVFGMM and
// moving indexes between the host and a device. Without CUDA the module
// says so (has_gpu = False) and GPU requests raise RuntimeError.

#include <memory>
#include <stdexcept>
#include <string>

#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>

#include "arrays.h"
#include "bindings.h"

#ifdef FAISS_GMM_WITH_GPU
#include <faiss_gmm/gpu/GpuCloner.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/GpuIndexIVFGMM.h>
#endif

namespace faiss_gmm {
namespace python {

void check_precision(const std::string& precision) {
    if (precision != "fp32" && precision != "tf32" && precision != "bf16") {
        throw nb::value_error(("precision '" + precision +
                               "' is not one of 'fp32', 'tf32', 'bf16'")
                                  .c_str());
    }
}

#ifdef FAISS_GMM_WITH_GPU

bool use_gpu(const std::string& device, int gpu_device) {
    if (device == "cpu") {
        return false;
    } else if (device == "auto") {
        return gpu::gpu_is_available(gpu_device);
    } else if (device == "cuda" || device == "gpu") {
        if (!gpu::gpu_is_available(gpu_device)) {
            throw std::runtime_error(
                "device='cuda': CUDA device " + std::to_string(gpu_device) +
                " is not usable (no GPU, or no driver)");
        }
        return true;
    }
    throw nb::value_error(
        ("device '" + device + "' is not one of 'auto', 'cpu', 'cuda'")
            .c_str());
}

void gpu_em(
    GaussianMixture* model,
    idx_t n,
    const float* x,
    const GmmParameters& params,
    int gpu_device,
    const std::string& precision,
    bool initialise) {
    gpu::GpuEmConfig config;
    config.device = gpu_device;
    config.precision = gpu::estep_precision_from_name(precision);
    if (initialise) {
        gpu::train_gmm_gpu(model, n, x, params, config);
    } else {
        gpu::GpuEStep estep(n, x, model->d, false, config);
        gpu::run_em_on_device(model, &estep, params);
    }
}

bool gpu_search_defaults(
    const faiss::Index& index, SearchParametersIVFGMM* out) {
    const gpu::GpuIndexIVFGMM* g = gpu::try_extract_gpu_index_ivfgmm(&index);
    if (!g) {
        return false;
    }
    *out = g->search_defaults();
    return true;
}

void bind_gpu(nb::module_& m) {
    using gpu::GpuIndexIVFGMM;
    m.attr("has_gpu") = true;
    m.def(
        "gpu_is_available",
        [](int device) { return gpu::gpu_is_available(device); },
        nb::arg("device") = 0,
        "True when this CUDA device is usable (never raises).");
    nb::class_<GpuIndexIVFGMM, faiss::Index>(
        m,
        "GpuIndexIVFGMM",
        "IndexIVFGMM resident on one CUDA device "
        "(faiss_gmm::gpu::GpuIndexIVFGMM): same lists and ids as the CPU "
        "index; no range search, selectors or max_codes.")
        .def_ro("nlist", &GpuIndexIVFGMM::nlist)
        .def_rw("nprobe", &GpuIndexIVFGMM::nprobe)
        .def_prop_ro("nentries", &GpuIndexIVFGMM::nentries)
        .def("replication_factor", &GpuIndexIVFGMM::replication_factor)
        .def_prop_ro(
            "gmm",
            [](const GpuIndexIVFGMM& i) { return i.gmm; },
            "a copy of the trained model")
        .def(
            "set_search_parameters",
            &GpuIndexIVFGMM::set_search_parameters,
            nb::arg("description"))
        .def(
            "set_build_parameters",
            &GpuIndexIVFGMM::set_build_parameters,
            nb::arg("description"));
    m.def(
        "index_cpu_to_gpu",
        [](const faiss::Index& index,
           int device,
           const std::string& precision) {
            check_precision(precision);
            gpu::GpuIndexIVFGMMConfig config;
            config.device = device;
            config.precision = gpu::estep_precision_from_name(precision);
            nb::gil_scoped_release release;
            return std::unique_ptr<faiss::Index>(
                gpu::index_cpu_to_gpu(&index, config));
        },
        nb::arg("index"),
        nb::arg("device") = 0,
        nb::arg("precision") = "bf16",
        "A GPU copy of an IndexIVFGMM (or of PreTransform / IDMap "
        "wrappers around one) on this device; precision is that of "
        "later train() calls.");
    m.def(
        "index_gpu_to_cpu",
        [](const faiss::Index& index) {
            nb::gil_scoped_release release;
            return std::unique_ptr<faiss::Index>(gpu::index_gpu_to_cpu(&index));
        },
        nb::arg("index"),
        "A CPU copy (IndexIVFGMM) of a GPU index.");
}

#else // no CUDA in this build

[[noreturn]] static void no_cuda() {
    throw std::runtime_error(
        "faiss_gmm was built without CUDA (no CUDA toolkit found, or "
        "FAISS_GMM_GPU=OFF)");
}

bool use_gpu(const std::string& device, int /*gpu_device*/) {
    if (device == "cpu" || device == "auto") {
        return false;
    } else if (device == "cuda" || device == "gpu") {
        no_cuda();
    }
    throw nb::value_error(
        ("device '" + device + "' is not one of 'auto', 'cpu', 'cuda'")
            .c_str());
}

void gpu_em(
    GaussianMixture*,
    idx_t,
    const float*,
    const GmmParameters&,
    int,
    const std::string&,
    bool) {
    no_cuda();
}

bool gpu_search_defaults(const faiss::Index&, SearchParametersIVFGMM*) {
    return false;
}

void bind_gpu(nb::module_& m) {
    m.attr("has_gpu") = false;
    m.def(
        "gpu_is_available",
        [](int) { return false; },
        nb::arg("device") = 0,
        "Always False: this build has no CUDA.");
}

#endif

} // namespace python
} // namespace faiss_gmm
