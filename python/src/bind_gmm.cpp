// GaussianMixture (as GaussianMixtureModel), GmmParameters and the EM entry
// points. The sklearn-style estimator (faiss_gmm/mixture.py) is built on these.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmEM.h>
#include <faiss_gmm/index_io.h>

#include "arrays.h"
#include "bindings.h"

namespace faiss_gmm {
namespace python {

namespace {

/// Whether EM runs on the GPU: use_gpu's answer, where device "auto" also
/// asks auto_device_may_train_on_gpu (as IndexIVFGMM's train_device=auto).
bool em_on_gpu(
    const std::string& device, int gpu_device, CovarianceType covariance) {
    if (device == "auto" && !auto_device_may_train_on_gpu(covariance)) {
        return false;
    }
    return use_gpu(device, gpu_device);
}

/// A copy of values as a numpy array of the given shape.
nb::ndarray<nb::numpy, float> copy_out(
    const std::vector<float>& values, std::initializer_list<size_t> shape) {
    NewArray<float> out(shape);
    std::copy(values.begin(), values.end(), out.data);
    return out.array;
}

/// Raises ValueError unless the model has full covariance.
void require_full(const GaussianMixture& model, const char* what) {
    if (model.covariance != CovarianceType::Full) {
        throw nb::value_error((std::string(what) +
                               " exists for full "
                               "covariance only; this "
                               "model is " +
                               covariance_type_name(model.covariance))
                                  .c_str());
    }
}

FloatRows
model_rows(const GaussianMixture& model, const InArray& x, const char* name) {
    if (!model.is_trained) {
        throw nb::value_error(
            "the GaussianMixtureModel is not trained (fit it, or "
            "set_parameters)");
    }
    return float_rows(x, name, model.d);
}

/// A binding of model.method(n, x) -> double over the rows of a numpy array,
/// the GIL released while it runs.
auto model_score(double (GaussianMixture::*method)(idx_t, const float*) const) {
    return [method](const GaussianMixture& model, const InArray& x) {
        FloatRows r = model_rows(model, x, "x");
        nb::gil_scoped_release release;
        return (model.*method)(r.n, r.data);
    };
}

/// Runs EM from the model's current parameters on (a sample of) x.
void run_em_from_model(
    GaussianMixture* model,
    const FloatRows& rows,
    const GmmParameters& params,
    bool on_gpu,
    int gpu_device,
    const std::string& precision) {
    std::vector<float> sample;
    const idx_t n = subsample_training_set(
        model->d, model->k, rows.n, rows.data, params, &sample);
    const float* x = sample.empty() ? rows.data : sample.data();
    if (on_gpu) {
        gpu_em(model, n, x, params, gpu_device, precision, false);
    } else {
        CpuEStep estep(n, x, model->d, params.block_size);
        run_em(model, &estep, params);
    }
}

void bind_parameters(nb::module_& m) {
    nb::class_<GmmParameters>(
        m,
        "GmmParameters",
        "EM settings of the C++ trainer (faiss_gmm::GmmParameters); "
        "every field is checked when training starts.")
        .def(nb::init<>())
        .def_prop_rw(
            "covariance",
            [](const GmmParameters& p) {
                return std::string(covariance_type_name(p.covariance));
            },
            [](GmmParameters& p, const std::string& name) {
                p.covariance = covariance_type_from_name(name);
            },
            "'spherical', 'diagonal', 'tied' (tied spherical) or 'full'")
        .def_rw("niter", &GmmParameters::niter, "most EM iterations")
        .def_rw(
            "tol",
            &GmmParameters::tol,
            "stop when the mean log-likelihood gains less (0: never)")
        .def_rw(
            "reg_covar",
            &GmmParameters::reg_covar,
            "variance floor relative to the data's mean "
            "per-dimension variance")
        .def_prop_rw(
            "init",
            [](const GmmParameters& p) {
                return std::string(gmm_init_name(p.init));
            },
            [](GmmParameters& p, const std::string& name) {
                p.init = gmm_init_from_name(name);
            },
            "'kmeans', 'kmeans++' or 'random' (random data points)")
        .def_rw(
            "kmeans_niter",
            &GmmParameters::kmeans_niter,
            "Lloyd iterations of the k-means initialisation")
        .def_rw("seed", &GmmParameters::seed, "seed of every random choice")
        .def_rw(
            "max_points_per_component",
            &GmmParameters::max_points_per_component,
            "subsample to k * this many points (0: never)")
        .def_rw(
            "min_component_count",
            &GmmParameters::min_component_count,
            "re-seed a component whose N_k falls below this")
        .def_rw(
            "block_size",
            &GmmParameters::block_size,
            "points per CPU E-step block")
        .def_rw(
            "verbose", &GmmParameters::verbose, "print one line per iteration")
        .def("check", [](const GmmParameters& p) { p.check(); });
}

void bind_model(nb::module_& m) {
    using GM = GaussianMixture;
    nb::class_<GM>(
        m,
        "GaussianMixtureModel",
        "The C++ model (faiss_gmm::GaussianMixture): K components in d "
        "dimensions, spherical, diagonal, tied-spherical or full. Arrays "
        "are returned as copies; scoring releases the GIL.")
        .def(
            "__init__",
            [](GM* self, int d, int k, const std::string& covariance) {
                new (self) GM(d, k, covariance_type_from_name(covariance));
            },
            nb::arg("d"),
            nb::arg("k"),
            nb::arg("covariance") = "spherical")
        .def_ro("d", &GM::d)
        .def_ro("k", &GM::k)
        .def_prop_ro(
            "covariance",
            [](const GM& g) {
                return std::string(covariance_type_name(g.covariance));
            })
        .def_ro("is_trained", &GM::is_trained)
        .def_ro("variance_floor", &GM::variance_floor)
        .def_prop_ro(
            "weights",
            [](const GM& g) { return copy_out(g.weights, {g.weights.size()}); },
            "(k,) mixture weights",
            nb::rv_policy::move)
        .def_prop_ro(
            "means",
            [](const GM& g) {
                return copy_out(g.means, {size_t(g.k), size_t(g.d)});
            },
            "(k, d) means",
            nb::rv_policy::move)
        .def_prop_ro(
            "variances",
            [](const GM& g) {
                if (g.variances_per_component() == 1) {
                    return copy_out(g.variances, {size_t(g.k)});
                }
                return copy_out(g.variances, {size_t(g.k), size_t(g.d)});
            },
            "(k,) variances (spherical, tied) or (k, d) (diagonal; full: "
            "the covariances' diagonals)",
            nb::rv_policy::move)
        .def_prop_ro(
            "covariances",
            [](const GM& g) {
                require_full(g, "covariances");
                return copy_out(
                    g.covariances, {size_t(g.k), size_t(g.d), size_t(g.d)});
            },
            "(k, d, d) covariance matrices (full covariance only)",
            nb::rv_policy::move)
        .def_prop_ro(
            "precision_cholesky",
            [](const GM& g) {
                require_full(g, "precision_cholesky");
                return copy_out(
                    g.precision_cholesky,
                    {size_t(g.k), size_t(g.d), size_t(g.d)});
            },
            "(k, d, d) upper-triangular U_k with Sigma_k^-1 = U_k U_k^T "
            "(scikit-learn's precisions_cholesky_; full covariance only)",
            nb::rv_policy::move)
        .def_prop_ro(
            "log_det_cholesky",
            [](const GM& g) {
                require_full(g, "log_det_cholesky");
                return copy_out(
                    g.log_det_cholesky, {g.log_det_cholesky.size()});
            },
            "(k,) sum_i log U_k[i][i] = -1/2 log det Sigma_k (full only)",
            nb::rv_policy::move)
        .def_prop_ro(
            "iteration_stats",
            [](const GM& g) {
                nb::list ll, time, min_weight, min_var, reseeded;
                for (const GmmIterationStats& s : g.iteration_stats) {
                    ll.append(s.log_likelihood);
                    time.append(s.time_s);
                    min_weight.append(s.min_weight);
                    min_var.append(s.min_variance);
                    reseeded.append(s.n_reseeded);
                }
                nb::dict out;
                out["log_likelihood"] = ll;
                out["time_s"] = time;
                out["min_weight"] = min_weight;
                out["min_variance"] = min_var;
                out["n_reseeded"] = reseeded;
                return out;
            },
            "per EM iteration of the last training: mean "
            "log-likelihood before its M-step, wall time, smallest "
            "weight and variance after it, re-seeded components")
        .def(
            "set_parameters",
            [](GM& g,
               const InArray& weights,
               const InArray& means,
               const InArray& variances,
               float variance_floor) {
                const size_t k = size_t(g.k), d = size_t(g.d);
                const float* w = float_values(weights, "weights", {int64_t(k)});
                const float* mu =
                    float_values(means, "means", {int64_t(k), int64_t(d)});
                const bool full = g.covariance == CovarianceType::Full;
                const float* var =
                    full ? float_values(
                               variances,
                               "variances",
                               {int64_t(k), int64_t(d), int64_t(d)})
                    : g.variances_per_component() == 1
                        ? float_values(variances, "variances", {int64_t(k)})
                        : float_values(
                              variances, "variances", {int64_t(k), int64_t(d)});
                GM next = g;
                next.weights.assign(w, w + k);
                next.means.assign(mu, mu + k * d);
                if (full) {
                    next.covariances.assign(var, var + k * d * d);
                    next.update_precision_cholesky();
                } else {
                    next.variances.assign(
                        var, var + k * g.variances_per_component());
                }
                next.variance_floor = variance_floor;
                next.iteration_stats.clear();
                next.check_consistency();
                next.is_trained = true;
                g = std::move(next);
            },
            nb::arg("weights"),
            nb::arg("means"),
            nb::arg("variances"),
            nb::arg("variance_floor") = 0.0f,
            "Install parameters (float32 arrays, checked: weights "
            "sum to 1, variances > 0; full covariance: variances are the "
            "(k, d, d) covariances, symmetric positive definite, their "
            "Cholesky factors computed here); the model becomes trained.")
        .def(
            "log_joint",
            [](const GM& g, const InArray& x) {
                FloatRows r = model_rows(g, x, "x");
                NewArray<float> out({size_t(r.n), size_t(g.k)});
                nb::gil_scoped_release release;
                g.log_joint(r.n, r.data, out.data);
                return out.array;
            },
            nb::arg("x"),
            "(n, k): log pi_j + log N(x_i | mu_j, Sigma_j)")
        .def(
            "log_density",
            [](const GM& g, const InArray& x) {
                FloatRows r = model_rows(g, x, "x");
                NewArray<float> out({size_t(r.n)});
                nb::gil_scoped_release release;
                g.log_density(r.n, r.data, out.data);
                return out.array;
            },
            nb::arg("x"),
            "(n,): log p(x_i)")
        .def(
            "mean_log_likelihood",
            model_score(&GM::mean_log_likelihood),
            nb::arg("x"))
        .def(
            "top_posteriors",
            [](const GM& g, const InArray& x, int m, float temperature) {
                FloatRows r = model_rows(g, x, "x");
                if (m < 1 || m > g.k) {
                    throw nb::value_error(("m = " + std::to_string(m) +
                                           " must be in [1, n_components = " +
                                           std::to_string(g.k) + "]")
                                              .c_str());
                }
                NewArray<float> post({size_t(r.n), size_t(m)});
                NewArray<int64_t> comp({size_t(r.n), size_t(m)});
                {
                    nb::gil_scoped_release release;
                    g.top_posteriors(
                        r.n,
                        r.data,
                        m,
                        post.data,
                        reinterpret_cast<idx_t*>(comp.data),
                        temperature);
                }
                return nb::make_tuple(post.array, comp.array);
            },
            nb::arg("x"),
            nb::arg("m"),
            nb::arg("temperature") = 1.0f,
            "((n, m) posteriors, (n, m) components): the m components "
            "of highest posterior, decreasing, at this temperature")
        .def("n_parameters", &GM::n_parameters)
        .def("bic", model_score(&GM::bic), nb::arg("x"))
        .def("aic", model_score(&GM::aic), nb::arg("x"))
        .def("check_consistency", &GM::check_consistency);

    m.def(
        "write_gmm",
        [](const GM& g, const std::string& fname) {
            nb::gil_scoped_release release;
            write_gmm(g, fname.c_str());
        },
        nb::arg("model"),
        nb::arg("fname"),
        "Write a GaussianMixtureModel (format of faiss_gmm::write_gmm).");
    m.def(
        "read_gmm",
        [](const std::string& fname) {
            nb::gil_scoped_release release;
            return read_gmm(fname.c_str());
        },
        nb::arg("fname"));
}

void bind_training(nb::module_& m) {
    m.def(
        "fit_gmm",
        [](const InArray& x,
           int k,
           const GmmParameters& params,
           const std::string& device,
           int gpu_device,
           const std::string& precision) {
            FloatRows r = float_rows(x, "x", -1);
            check_precision(precision);
            const bool on_gpu =
                em_on_gpu(device, gpu_device, params.covariance);
            GaussianMixture model(r.d, k, params.covariance);
            {
                nb::gil_scoped_release release;
                if (on_gpu) {
                    gpu_em(
                        &model,
                        r.n,
                        r.data,
                        params,
                        gpu_device,
                        precision,
                        true);
                } else {
                    model.train(r.n, r.data, params);
                }
            }
            return model;
        },
        nb::arg("x"),
        nb::arg("k"),
        nb::arg("params") = GmmParameters(),
        nb::arg("device") = "cpu",
        nb::arg("gpu_device") = 0,
        nb::arg("precision") = "bf16",
        "Train a new model on x (n, d) float32: subsample, initialise "
        "(params.init), then EM, on the CPU or a GPU (device 'cpu', "
        "'cuda' or 'auto'; precision of the GPU E-step 'fp32', 'tf32' "
        "or 'bf16'). The GIL is released while it runs.");
    m.def(
        "run_em",
        [](GaussianMixture& model,
           const InArray& x,
           const GmmParameters& params,
           const std::string& device,
           int gpu_device,
           const std::string& precision) {
            FloatRows r = model_rows(model, x, "x");
            check_precision(precision);
            if (params.covariance != model.covariance) {
                throw nb::value_error(
                    "params.covariance differs from the model's");
            }
            const bool on_gpu =
                em_on_gpu(device, gpu_device, params.covariance);
            nb::gil_scoped_release release;
            run_em_from_model(&model, r, params, on_gpu, gpu_device, precision);
        },
        nb::arg("model"),
        nb::arg("x"),
        nb::arg("params") = GmmParameters(),
        nb::arg("device") = "cpu",
        nb::arg("gpu_device") = 0,
        nb::arg("precision") = "bf16",
        "EM iterations from the model's current parameters (no "
        "initialisation; the model's variance_floor is kept) on (a "
        "sample of) x, updating the model in place.");
}

/// For python/bench/bench_overhead.py: the wall time of run_em (CPU) on a
/// copy of the model, timed in C++, per repeat: the reference that the
/// Python call's time is compared with.
void bind_timing(nb::module_& m) {
    m.def(
        "_time_run_em",
        [](const GaussianMixture& model,
           const InArray& x,
           const GmmParameters& params,
           int repeats) {
            FloatRows r = model_rows(model, x, "x");
            std::vector<double> seconds;
            nb::gil_scoped_release release;
            for (int i = 0; i < repeats; i++) {
                GaussianMixture copy = model;
                const auto t0 = std::chrono::steady_clock::now();
                run_em_from_model(&copy, r, params, false, 0, "fp32");
                seconds.push_back(std::chrono::duration<double>(
                                      std::chrono::steady_clock::now() - t0)
                                      .count());
            }
            return seconds;
        },
        nb::arg("model"),
        nb::arg("x"),
        nb::arg("params"),
        nb::arg("repeats"));
}

} // namespace

void bind_gmm(nb::module_& m) {
    bind_parameters(m);
    bind_model(m);
    bind_training(m);
    bind_timing(m);
}

} // namespace python
} // namespace faiss_gmm
