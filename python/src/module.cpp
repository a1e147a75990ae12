// The _faiss_gmm extension module: faiss_gmm/__init__.py re-exports it.

#include "bindings.h"

#include <omp.h>

#include <faiss_gmm/faiss_compat.h>

namespace nb = nanobind;

NB_MODULE(_faiss_gmm, m) {
    m.doc() = "C++ core of faiss_gmm: Gaussian mixtures trained by EM (CPU or "
              "CUDA) and IVF indexes with a GMM coarse quantizer. Use the "
              "faiss_gmm package, which re-exports this module.";
    m.attr("faiss_version") = faiss_gmm::faiss_version_compiled();
    m.def(
        "omp_set_num_threads",
        [](int n) { omp_set_num_threads(n); },
        nb::arg("n"),
        "Number of OpenMP threads of later calls (as "
        "faiss.omp_set_num_threads).");
    m.def(
        "omp_get_max_threads",
        []() { return omp_get_max_threads(); },
        "Number of OpenMP threads a parallel call uses.");
    faiss_gmm::python::bind_gmm(m);
    faiss_gmm::python::bind_index(m);
    faiss_gmm::python::bind_gpu(m);
}
