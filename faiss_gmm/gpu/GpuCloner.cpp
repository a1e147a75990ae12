#include <faiss_gmm/gpu/GpuCloner.h>

#include <functional>
#include <memory>
#include <string>

#include <faiss/IndexIDMap.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/clone_index.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/ThreadedIndex.h>
#include <faiss/impl/io.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/impl/ClassName.h>
#include <faiss_gmm/index_io.h>

namespace faiss_gmm {
namespace gpu {

namespace {

using impl::class_name;

/// Converts the index at the bottom of a wrapper chain.
using LeafConverter = std::function<faiss::Index*(const faiss::Index&)>;

/// The faiss::Index fields a wrapper carries besides what it wraps.
void copy_index_header(const faiss::Index& from, faiss::Index* to) {
    to->d = from.d;
    to->ntotal = from.ntotal;
    to->verbose = from.verbose;
    to->is_trained = from.is_trained;
    to->metric_type = from.metric_type;
    to->metric_arg = from.metric_arg;
}

/**
 * index with every IndexPreTransform / IndexIDMap / IndexIDMap2 around the
 * bottom cloned and the bottom converted by leaf; each new wrapper owns its
 * transforms and sub-index (own_fields), so a throw anywhere frees all.
 */
faiss::Index* convert_chain(
    const faiss::Index* index, const LeafConverter& leaf, const char* where) {
    FAISS_THROW_IF_NOT_FMT(index, "%s: the index is nullptr", where);
    if (auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(index)) {
        std::unique_ptr<faiss::Index> sub(
            convert_chain(pt->index, leaf, where));
        auto out = std::make_unique<faiss::IndexPreTransform>();
        out->own_fields = true;
        faiss::Cloner cloner;
        for (const faiss::VectorTransform* vt : pt->chain) {
            out->chain.push_back(cloner.clone_VectorTransform(vt));
        }
        copy_index_header(*pt, out.get());
        out->index = sub.release();
        return out.release();
    }
    if (auto* idmap = dynamic_cast<const faiss::IndexIDMap*>(index)) {
        std::unique_ptr<faiss::Index> sub(
            convert_chain(idmap->index, leaf, where));
        auto* idmap2 = dynamic_cast<const faiss::IndexIDMap2*>(idmap);
        std::unique_ptr<faiss::IndexIDMap> out;
        if (idmap2) {
            auto out2 = std::make_unique<faiss::IndexIDMap2>();
            out2->rev_map = idmap2->rev_map;
            out = std::move(out2);
        } else {
            out = std::make_unique<faiss::IndexIDMap>();
        }
        out->own_fields = true;
        out->id_map = idmap->id_map;
        copy_index_header(*idmap, out.get());
        out->index = sub.release();
        return out.release();
    }
    return leaf(*index);
}

/// True when a faiss-gmm index (CPU or GPU) sits anywhere in index.
bool holds_plugin_index(const faiss::Index* index) {
    if (!index) {
        return false;
    }
    if (dynamic_cast<const IndexIVFGMM*>(index) ||
        dynamic_cast<const GpuIndexIVFGMM*>(index)) {
        return true;
    }
    if (auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(index)) {
        return holds_plugin_index(pt->index);
    }
    if (auto* idmap = dynamic_cast<const faiss::IndexIDMap*>(index)) {
        return holds_plugin_index(idmap->index);
    }
    if (auto* refine = dynamic_cast<const faiss::IndexRefine*>(index)) {
        return holds_plugin_index(refine->base_index) ||
               holds_plugin_index(refine->refine_index);
    }
    if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(index)) {
        return holds_plugin_index(ivf->quantizer);
    }
    if (auto* threaded =
            dynamic_cast<const faiss::ThreadedIndex<faiss::Index>*>(index)) {
        for (int i = 0; i < threaded->count(); i++) {
            if (holds_plugin_index(threaded->at(i))) {
                return true;
            }
        }
    }
    return false;
}

/// A new IndexIVFGMM holding a copy of gpu_index.
IndexIVFGMM* copy_to_new_cpu_index(const GpuIndexIVFGMM& gpu_index) {
    auto cpu = std::make_unique<IndexIVFGMM>(
        gpu_index.d, gpu_index.nlist, gpu_index.build_params);
    gpu_index.copyTo(cpu.get());
    return cpu.release();
}

} // namespace

faiss::Index* index_cpu_to_gpu(
    const faiss::Index* index, const GpuIndexIVFGMMConfig& config) {
    return convert_chain(
        index,
        [&config](const faiss::Index& leaf) -> faiss::Index* {
            if (auto* cpu = dynamic_cast<const IndexIVFGMM*>(&leaf)) {
                return new GpuIndexIVFGMM(cpu, config);
            }
            if (auto* gpu = dynamic_cast<const GpuIndexIVFGMM*>(&leaf)) {
                std::unique_ptr<IndexIVFGMM> cpu(copy_to_new_cpu_index(*gpu));
                return new GpuIndexIVFGMM(cpu.get(), config);
            }
            FAISS_THROW_FMT(
                "index_cpu_to_gpu: %s is not a faiss-gmm plugin class "
                "(IndexIVFGMM, GpuIndexIVFGMM, or IndexPreTransform / "
                "IndexIDMap / IndexIDMap2 around one), and no FAISS GPU "
                "library is available in this build to move it to a GPU",
                class_name(leaf).c_str());
        },
        "index_cpu_to_gpu");
}

faiss::Index* index_gpu_to_cpu(const faiss::Index* index) {
    return convert_chain(
        index,
        [](const faiss::Index& leaf) -> faiss::Index* {
            if (auto* gpu = dynamic_cast<const GpuIndexIVFGMM*>(&leaf)) {
                return copy_to_new_cpu_index(*gpu);
            }
            if (dynamic_cast<const IndexIVFGMM*>(&leaf)) {
                return faiss_gmm::clone_index(&leaf);
            }
            FAISS_THROW_IF_NOT_FMT(
                !holds_plugin_index(&leaf),
                "index_gpu_to_cpu: %s holds a faiss-gmm index below it; "
                "only IndexPreTransform, IndexIDMap and IndexIDMap2 "
                "wrappers around one can be copied (faiss::clone_index "
                "would lose its class)",
                class_name(leaf).c_str());
            return faiss::clone_index(&leaf);
        },
        "index_gpu_to_cpu");
}

void write_index_gpu(const faiss::Index* index, const char* fname) {
    std::unique_ptr<faiss::Index> cpu(index_gpu_to_cpu(index));
    write_index(cpu.get(), fname);
}

void write_index_gpu(const faiss::Index* index, faiss::IOWriter* writer) {
    std::unique_ptr<faiss::Index> cpu(index_gpu_to_cpu(index));
    write_index(cpu.get(), writer);
}

GpuIndexIVFGMM* try_extract_gpu_index_ivfgmm(faiss::Index* index) {
    return const_cast<GpuIndexIVFGMM*>(
        try_extract_gpu_index_ivfgmm(static_cast<const faiss::Index*>(index)));
}

const GpuIndexIVFGMM* try_extract_gpu_index_ivfgmm(const faiss::Index* index) {
    while (index) {
        if (auto* gpu = dynamic_cast<const GpuIndexIVFGMM*>(index)) {
            return gpu;
        }
        if (auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(index)) {
            index = pt->index;
        } else if (
            auto* idmap = dynamic_cast<const faiss::IndexIDMap*>(index)) {
            index = idmap->index;
        } else {
            return nullptr;
        }
    }
    return nullptr;
}

} // namespace gpu
} // namespace faiss_gmm
