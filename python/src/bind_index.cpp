// faiss::Index (any index the factory makes) and IndexIVFGMM, the factory,
// parameters, I/O and the search counters.

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <faiss/IndexIVF.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>

#include <faiss_gmm/IVFGMMParameters.h>
#include <faiss_gmm/IVFGMMStats.h>
#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/impl/ClassName.h>
#include <faiss_gmm/index_factory.h>
#include <faiss_gmm/index_io.h>

#include "arrays.h"
#include "bindings.h"

namespace faiss_gmm {
namespace python {

namespace {

using IndexPtr = std::unique_ptr<faiss::Index>;

/// Search keyword arguments as ("key", "value text") pairs.
std::vector<std::pair<std::string, std::string>>
keyword_text(const nb::kwargs& kwargs) {
    std::vector<std::pair<std::string, std::string>> out;
    for (auto [key, value] : kwargs) {
        out.emplace_back(
            nb::cast<std::string>(nb::str(key)),
            nb::cast<std::string>(nb::str(value)));
    }
    return out;
}

[[noreturn]] void bad_parameter(const std::string& message) {
    throw nb::value_error(message.c_str());
}

/**
 * Per-call search parameters from keyword arguments: the keys of the
 * parameter table (IVFGMMParameters.h) over the index's own defaults for
 * an IVF-GMM index (bare, wrapped or on a GPU); nprobe and max_codes for
 * FAISS's other IVF indexes. Null when there are none. Bad keys or values
 * raise ValueError with the C++ message.
 */
std::unique_ptr<faiss::SearchParameters>
search_parameters(const faiss::Index& index, const nb::kwargs& kwargs) {
    if (kwargs.size() == 0) {
        return nullptr;
    }
    const auto keys = keyword_text(kwargs);
    SearchParametersIVFGMM defaults;
    const IndexIVFGMM* gmm = try_extract_index_ivfgmm(&index);
    if (gmm || gpu_search_defaults(index, &defaults)) {
        auto p = std::make_unique<SearchParametersIVFGMM>(
            gmm ? gmm->search_defaults() : defaults);
        try {
            for (const auto& [key, value] : keys) {
                set_search_parameter(p.get(), key, value);
            }
            p->check("search");
        } catch (const faiss::FaissException& e) {
            bad_parameter(e.what());
        }
        return p;
    }
    if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(&index)) {
        auto p = std::make_unique<faiss::SearchParametersIVF>();
        p->nprobe = ivf->nprobe;
        p->max_codes = ivf->max_codes;
        for (const auto& [key, value] : keys) {
            try {
                const long long v = std::stoll(value);
                if (v < 0 || (key == "nprobe" && v < 1)) {
                    bad_parameter(key + " = " + value + " is out of range");
                }
                if (key == "nprobe") {
                    p->nprobe = size_t(v);
                } else if (key == "max_codes") {
                    p->max_codes = size_t(v);
                } else {
                    bad_parameter(
                        "search parameter '" + key +
                        "' is not one of a FAISS IVF index (nprobe, "
                        "max_codes)");
                }
            } catch (const std::logic_error&) {
                bad_parameter(key + " = " + value + " is not an integer");
            }
        }
        return p;
    }
    bad_parameter(
        std::string("search parameters given for an index that takes "
                    "none (") +
        impl::class_name(index) + ")");
}

nb::dict stats_dict(const IndexIVFGMMStats& s) {
    nb::dict d;
    d["nq"] = s.nq;
    d["ncoarse_distances"] = s.ncoarse_distances;
    d["nfine_distances"] = s.nfine_distances;
    d["nentries_scanned"] = s.nentries_scanned;
    d["nduplicates_skipped"] = s.nduplicates_skipped;
    d["nlists_probed"] = s.nlists_probed;
    d["nbound_distances"] = s.nbound_distances;
    d["nlists_pruned"] = s.nlists_pruned;
    return d;
}

/// A binding of index.method(n, x) over the rows of a numpy array, the GIL
/// released while it runs.
auto rows_method(void (faiss::Index::*method)(idx_t, const float*)) {
    return [method](faiss::Index& index, const InArray& x) {
        FloatRows r = float_rows(x, "x", index.d);
        nb::gil_scoped_release release;
        (index.*method)(r.n, r.data);
    };
}

void bind_base_index(nb::module_& m) {
    using faiss::Index;
    nb::class_<Index>(
        m,
        "Index",
        "A FAISS index made by faiss_gmm (index_factory, read_index). "
        "Arrays in: numpy float32 (n, d) C-contiguous, used in place; "
        "arrays out: new numpy arrays. The GIL is released while C++ "
        "runs. Search keyword arguments are the index's search "
        "parameters (nprobe=..., prune_margin=..., probe='l2', ...).")
        .def_ro("d", &Index::d)
        .def_ro("ntotal", &Index::ntotal)
        .def_ro("is_trained", &Index::is_trained)
        .def_prop_ro(
            "metric_type", [](const Index& i) { return int(i.metric_type); })
        .def("train", rows_method(&Index::train), nb::arg("x"))
        .def("add", rows_method(&Index::add), nb::arg("x"))
        .def(
            "add_with_ids",
            [](Index& i, const InArray& x, const InArray& ids) {
                FloatRows r = float_rows(x, "x", i.d);
                const int64_t* id = int64_values(ids, "ids", r.n);
                nb::gil_scoped_release release;
                i.add_with_ids(r.n, r.data, reinterpret_cast<const idx_t*>(id));
            },
            nb::arg("x"),
            nb::arg("ids"))
        .def(
            "search",
            [](const Index& i,
               const InArray& x,
               int64_t k,
               const nb::kwargs& kwargs) {
                FloatRows r = float_rows(x, "x", i.d);
                if (k < 1) {
                    throw nb::value_error(
                        ("k = " + std::to_string(k) + " must be >= 1").c_str());
                }
                auto params = search_parameters(i, kwargs);
                NewArray<float> dist({size_t(r.n), size_t(k)});
                NewArray<int64_t> ids({size_t(r.n), size_t(k)});
                {
                    nb::gil_scoped_release release;
                    i.search(
                        r.n,
                        r.data,
                        k,
                        dist.data,
                        reinterpret_cast<idx_t*>(ids.data),
                        params.get());
                }
                return nb::make_tuple(dist.array, ids.array);
            },
            nb::arg("x"),
            nb::arg("k"),
            nb::arg("kwargs"),
            "(distances (n, k) float32, ids (n, k) int64); squared "
            "L2 distances, -1 ids where fewer than k were found")
        .def(
            "range_search",
            [](const Index& i,
               const InArray& x,
               float radius,
               const nb::kwargs& kwargs) {
                FloatRows r = float_rows(x, "x", i.d);
                auto params = search_parameters(i, kwargs);
                faiss::RangeSearchResult result(r.n);
                {
                    nb::gil_scoped_release release;
                    i.range_search(r.n, r.data, radius, &result, params.get());
                }
                const size_t total = result.lims[r.n];
                NewArray<int64_t> lims({size_t(r.n) + 1});
                NewArray<float> dist({total});
                NewArray<int64_t> ids({total});
                std::copy(result.lims, result.lims + r.n + 1, lims.data);
                std::copy(
                    result.distances, result.distances + total, dist.data);
                std::copy(result.labels, result.labels + total, ids.data);
                return nb::make_tuple(lims.array, dist.array, ids.array);
            },
            nb::arg("x"),
            nb::arg("radius"),
            nb::arg("kwargs"),
            "(lims (n + 1,), distances, ids): the results of query i "
            "are [lims[i], lims[i + 1]) of distances and ids")
        .def(
            "remove_ids",
            [](Index& i, const InArray& ids) {
                const int64_t* id = int64_values(ids, "ids", -1);
                faiss::IDSelectorBatch sel(
                    ids.shape(0), reinterpret_cast<const idx_t*>(id));
                nb::gil_scoped_release release;
                return i.remove_ids(sel);
            },
            nb::arg("ids"),
            "remove every vector with one of these ids (int64); "
            "returns how many were removed")
        .def(
            "reconstruct",
            [](const Index& i, int64_t key) {
                NewArray<float> out({size_t(i.d)});
                nb::gil_scoped_release release;
                i.reconstruct(key, out.data);
                return out.array;
            },
            nb::arg("key"),
            "the stored vector with this id, (d,) float32")
        .def(
            "reconstruct_n",
            [](const Index& i, int64_t i0, int64_t ni) {
                if (ni < 0) {
                    throw nb::value_error("ni must be >= 0");
                }
                NewArray<float> out({size_t(ni), size_t(i.d)});
                nb::gil_scoped_release release;
                i.reconstruct_n(i0, ni, out.data);
                return out.array;
            },
            nb::arg("i0"),
            nb::arg("ni"))
        .def(
            "reset",
            [](Index& i) {
                nb::gil_scoped_release release;
                i.reset();
            })
        .def(
            "__reduce__",
            [](const Index& i) {
                // pickle and copy.deepcopy: the bytes of write_index, read
                // back by deserialize_index (GPU indexes: index_gpu_to_cpu
                // first, as write_index says)
                faiss::VectorIOWriter writer;
                {
                    nb::gil_scoped_release release;
                    write_index(&i, &writer);
                }
                nb::bytes state(
                    reinterpret_cast<const char*>(writer.data.data()),
                    writer.data.size());
                nb::object load =
                    nb::module_::import_("faiss_gmm").attr("_index_from_bytes");
                return nb::make_tuple(load, nb::make_tuple(state));
            },
            "Pickling (and copy.copy / deepcopy) goes through "
            "serialize_index / deserialize_index.")
        .def("__repr__", [](nb::handle self) {
            const auto& i = nb::cast<const Index&>(self);
            return "<" + nb::cast<std::string>(nb::type_name(self.type())) +
                   " (" + impl::class_name(i) + ") d=" + std::to_string(i.d) +
                   " ntotal=" + std::to_string(i.ntotal) + ">";
        });
}

void bind_ivfgmm(nb::module_& m) {
    nb::class_<IndexIVFGMM, faiss::Index>(
        m,
        "IndexIVFGMM",
        "IVF index with a GMM coarse quantizer (faiss_gmm::IndexIVFGMM): "
        "border vectors spilled to several lists, each id returned and "
        "compared once per query.")
        .def_ro("nlist", &IndexIVFGMM::nlist)
        .def_rw("nprobe", &IndexIVFGMM::nprobe)
        .def_rw("max_codes", &IndexIVFGMM::max_codes)
        .def_prop_ro("nentries", &IndexIVFGMM::nentries)
        .def("replication_factor", &IndexIVFGMM::replication_factor)
        .def("imbalance_factor", &IndexIVFGMM::imbalance_factor)
        .def_prop_ro(
            "gmm",
            [](const IndexIVFGMM& i) { return i.gmm; },
            "a copy of the trained model")
        .def(
            "set_gmm",
            [](IndexIVFGMM& i, const GaussianMixture& model) {
                nb::gil_scoped_release release;
                i.set_gmm(model);
            },
            nb::arg("model"),
            "adopt a trained model (k = nlist); the index must be "
            "empty")
        .def(
            "train_codes",
            [](IndexIVFGMM& i, const InArray& x) {
                FloatRows r = float_rows(x, "x", i.d);
                nb::gil_scoped_release release;
                i.train_codes(r.n, r.data);
            },
            nb::arg("x"))
        .def(
            "assign_lists",
            [](const IndexIVFGMM& i, const InArray& x) {
                FloatRows r = float_rows(x, "x", i.d);
                const size_t m = i.build_params.spill.max_assign;
                NewArray<int64_t> lists({size_t(r.n), m});
                nb::gil_scoped_release release;
                i.assign_lists(
                    r.n, r.data, reinterpret_cast<idx_t*>(lists.data));
                return lists.array;
            },
            nb::arg("x"),
            "(n, max_assign) lists add() would use, primary first, "
            "-1 padded")
        .def(
            "list_sizes",
            [](const IndexIVFGMM& i) {
                NewArray<int64_t> sizes({i.nlist});
                for (size_t l = 0; l < i.nlist; l++) {
                    sizes.data[l] = int64_t(i.invlists->list_size(l));
                }
                return sizes.array;
            })
        .def(
            "set_search_parameters",
            &IndexIVFGMM::set_search_parameters,
            nb::arg("description"))
        .def(
            "set_build_parameters",
            &IndexIVFGMM::set_build_parameters,
            nb::arg("description"))
        .def_prop_ro(
            "search_parameters",
            [](const IndexIVFGMM& i) {
                return format_search_parameters(i.search_defaults());
            })
        .def_prop_ro("build_parameters", [](const IndexIVFGMM& i) {
            return format_build_parameters(i.build_params);
        });
}

void bind_functions(nb::module_& m) {
    m.def(
        "_time_search",
        [](const faiss::Index& index,
           const InArray& x,
           int64_t k,
           int repeats,
           const nb::kwargs& kwargs) {
            // python/bench/bench_overhead.py: search() timed in C++,
            // results into fresh buffers per repeat as the binding does
            FloatRows r = float_rows(x, "x", index.d);
            auto params = search_parameters(index, kwargs);
            std::vector<double> seconds;
            nb::gil_scoped_release release;
            for (int i = 0; i < repeats; i++) {
                const auto t0 = std::chrono::steady_clock::now();
                std::unique_ptr<float[]> dist(new float[r.n * k]);
                std::unique_ptr<idx_t[]> ids(new idx_t[r.n * k]);
                index.search(
                    r.n, r.data, k, dist.get(), ids.get(), params.get());
                seconds.push_back(std::chrono::duration<double>(
                                      std::chrono::steady_clock::now() - t0)
                                      .count());
            }
            return seconds;
        },
        nb::arg("index"),
        nb::arg("x"),
        nb::arg("k"),
        nb::arg("repeats"),
        nb::arg("kwargs"));
    m.def(
        "index_factory",
        [](int d, const std::string& description, const std::string& metric) {
            faiss::MetricType mt;
            if (metric == "l2" || metric == "L2") {
                mt = faiss::METRIC_L2;
            } else if (metric == "ip" || metric == "inner_product") {
                mt = faiss::METRIC_INNER_PRODUCT;
            } else {
                throw nb::value_error(
                    ("metric '" + metric + "' is not 'l2' or 'ip'").c_str());
            }
            return IndexPtr(index_factory(d, description.c_str(), mt));
        },
        nb::arg("d"),
        nb::arg("description"),
        nb::arg("metric") = "l2",
        "An index from a FAISS-style string: 'IVF1024_GMM,Flat', "
        "'PCA64,IVF4k_GMMdiag,SQ8', ... (faiss_gmm/index_factory.h has "
        "the grammar); strings without a GMM token go to FAISS.");
    m.def(
        "extract_index_ivfgmm",
        [](faiss::Index& index) { return try_extract_index_ivfgmm(&index); },
        nb::arg("index"),
        nb::rv_policy::reference,
        nb::keep_alive<0, 1>(),
        "The IndexIVFGMM inside PreTransform / IDMap / Refine wrappers "
        "(or the index itself), None when there is none.");
    m.def(
        "set_index_parameters",
        [](faiss::Index& index, const std::string& description) {
            set_index_parameters(&index, description);
        },
        nb::arg("index"),
        nb::arg("description"),
        "Set search defaults from 'nprobe=32,prune_margin=0.3' (see "
        "faiss_gmm::set_index_parameters).");
    m.def(
        "write_index",
        [](const faiss::Index& index, const std::string& fname) {
            nb::gil_scoped_release release;
            write_index(&index, fname.c_str());
        },
        nb::arg("index"),
        nb::arg("fname"));
    m.def(
        "read_index",
        [](const std::string& fname, int io_flags) {
            nb::gil_scoped_release release;
            return IndexPtr(read_index(fname.c_str(), io_flags));
        },
        nb::arg("fname"),
        nb::arg("io_flags") = 0);
    m.def(
        "serialize_index",
        [](const faiss::Index& index) {
            faiss::VectorIOWriter writer;
            {
                nb::gil_scoped_release release;
                write_index(&index, &writer);
            }
            return nb::bytes(
                reinterpret_cast<const char*>(writer.data.data()),
                writer.data.size());
        },
        nb::arg("index"),
        "The bytes write_index would write.");
    m.def(
        "deserialize_index",
        [](const nb::bytes& data) {
            faiss::VectorIOReader reader;
            const auto* p = static_cast<const uint8_t*>(data.data());
            reader.data.assign(p, p + data.size());
            nb::gil_scoped_release release;
            return IndexPtr(read_index(&reader));
        },
        nb::arg("data"));
    m.def(
        "clone_index",
        [](const faiss::Index& index) {
            nb::gil_scoped_release release;
            return IndexPtr(clone_index(&index));
        },
        nb::arg("index"));
    m.def(
        "get_stats",
        []() { return stats_dict(indexIVFGMM_stats); },
        "The global search counters of IVF-GMM indexes (read them when "
        "no search runs).");
    m.def(
        "reset_stats",
        []() { indexIVFGMM_stats.reset(); },
        "Set the global search counters to 0.");
}

} // namespace

void bind_index(nb::module_& m) {
    bind_base_index(m);
    bind_ivfgmm(m);
    bind_functions(m);
}

} // namespace python
} // namespace faiss_gmm
