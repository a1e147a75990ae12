#include <faiss_gmm/faiss_compat.h>

#include <type_traits>

#include <faiss/IndexIDMap.h>
#include <faiss/impl/FaissAssert.h>

// Declared here so that the name exists whatever the FAISS version; FAISS
// headers that define it complete the type.
namespace faiss {
struct IDSelectorTranslated;
} // namespace faiss

namespace faiss_gmm {

namespace {

template <class T, class = void>
struct IsComplete : std::false_type {};
template <class T>
struct IsComplete<T, decltype(void(sizeof(T)))> : std::true_type {};

template <class T>
bool is_selector_of_type(const faiss::IDSelector& sel) {
    if constexpr (IsComplete<T>::value) {
        return dynamic_cast<const T*>(&sel) != nullptr;
    } else {
        return false;
    }
}

} // namespace

bool is_idmap_translated_selector(const faiss::IDSelector& sel) {
    return is_selector_of_type<faiss::IDSelectorTranslated>(sel);
}

const char* faiss_version_compiled() {
#define FAISS_GMM_STR2(x) #x
#define FAISS_GMM_STR(x) FAISS_GMM_STR2(x)
    return FAISS_GMM_STR(FAISS_VERSION_MAJOR) "." FAISS_GMM_STR(
        FAISS_VERSION_MINOR) "." FAISS_GMM_STR(FAISS_VERSION_PATCH);
#undef FAISS_GMM_STR
#undef FAISS_GMM_STR2
}

void copy_ivf_search_fields(
    const faiss::SearchParametersIVF& from, faiss::SearchParametersIVF* to) {
    to->nprobe = from.nprobe;
    to->max_codes = from.max_codes;
    to->sel = from.sel;
    to->quantizer_params = from.quantizer_params;
#if FAISS_GMM_HAS_IVF_SEARCH_BUDGETS
    to->max_lists_num = from.max_lists_num;
    to->ensure_topk_full = from.ensure_topk_full;
    to->max_empty_result_buckets = from.max_empty_result_buckets;
#endif
}

void check_unsupported_ivf_fields(
    const faiss::SearchParametersIVF& p, const char* who) {
    FAISS_THROW_IF_NOT_FMT(
        !p.quantizer_params,
        "%s: SearchParametersIVF::quantizer_params is not supported (the "
        "coarse step scores every mean of the GMM exactly)",
        who);
#if FAISS_GMM_HAS_IVF_SEARCH_BUDGETS
    FAISS_THROW_IF_NOT_FMT(
        p.max_lists_num == 0,
        "%s: SearchParametersIVF::max_lists_num=%zu is not supported (use "
        "nprobe, which probes exactly that many lists)",
        who,
        p.max_lists_num);
    FAISS_THROW_IF_NOT_FMT(
        !p.ensure_topk_full,
        "%s: SearchParametersIVF::ensure_topk_full is not supported",
        who);
    FAISS_THROW_IF_NOT_FMT(
        p.max_empty_result_buckets == 0,
        "%s: SearchParametersIVF::max_empty_result_buckets=%zu is not "
        "supported",
        who,
        p.max_empty_result_buckets);
#endif
}

} // namespace faiss_gmm
