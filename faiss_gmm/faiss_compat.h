/**
 * The only file that knows which FAISS version we are compiled against
 * (1.7.3 ... 1.15). Everything else uses the aliases, macros and helpers
 * below. Each entry names the FAISS release that changed the API.
 */

#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>

/// FAISS_VERSION_{MAJOR,MINOR,PATCH} are defined by faiss/Index.h.
#define FAISS_GMM_FAISS_VERSION_AT_LEAST(major, minor, patch)                  \
    ((FAISS_VERSION_MAJOR > (major)) ||                                        \
     (FAISS_VERSION_MAJOR == (major) && FAISS_VERSION_MINOR > (minor)) ||      \
     (FAISS_VERSION_MAJOR == (major) && FAISS_VERSION_MINOR == (minor) &&      \
      FAISS_VERSION_PATCH >= (patch)))

/// IndexIVF::range_search_preassigned became virtual in 1.7.4.
#define FAISS_GMM_HAS_VIRTUAL_RANGE_SEARCH_PREASSIGNED                         \
    FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 7, 4)
/// IndexIVF::train_residual(n, x) became train_encoder(n, x, assign) in
/// 1.7.4.
#define FAISS_GMM_HAS_TRAIN_ENCODER FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 7, 4)
/// IndexIVF::add_core gained a `void* inverted_list_context` in 1.8.
#define FAISS_GMM_HAS_INVERTED_LIST_CONTEXT                                    \
    FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 8, 0)
/// IndexIVF::decode_vectors (the inverse of encode_vectors): implemented
/// by FAISS's IVF codes from 1.12.
#define FAISS_GMM_HAS_DECODE_VECTORS FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 12, 0)
/// IndexIVF::get_CodePacker appeared in 1.7.4.
#define FAISS_GMM_HAS_CODE_PACKER FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 7, 4)
/// IOReader/IOWriter::fileno() was renamed filedescriptor() in 1.9.
#define FAISS_GMM_HAS_FILEDESCRIPTOR FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 9, 0)
/// get_InvertedListScanner gained a SearchParametersIVF argument in 1.11.
#define FAISS_GMM_HAS_SCANNER_PARAMS FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 11, 0)
/// Index::search_ex / add_ex / add_with_ids_ex / train_ex appeared in 1.13.
#define FAISS_GMM_HAS_NUMERIC_TYPE_ENTRY_POINTS                                \
    FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 13, 0)
/// Index::search1 (one query into a ResultHandler) and search_subset
/// appeared in 1.14.
#define FAISS_GMM_HAS_SEARCH1 FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 14, 0)
/// SearchParametersIVF gained max_lists_num, ensure_topk_full and
/// max_empty_result_buckets in 1.15.
#define FAISS_GMM_HAS_IVF_SEARCH_BUDGETS                                       \
    FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 15, 0)
/// IndexIVFRaBitQ (faiss/IndexIVFRaBitQ.h, factory code "RaBitQ") appeared
/// in 1.11; 1.7.3 has no RaBitQ.
#define FAISS_GMM_HAS_RABITQ FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 11, 0)

#if FAISS_GMM_HAS_INVERTED_LIST_CONTEXT
/// Declares (with FAISS's default) / defines / forwards add_core's last
/// parameter where FAISS has it.
#define FAISS_GMM_ADD_CORE_CONTEXT_PARAM , void* inverted_list_context = nullptr
#define FAISS_GMM_ADD_CORE_CONTEXT_PARAM_NO_DEFAULT                            \
    , void* inverted_list_context
#define FAISS_GMM_ADD_CORE_CONTEXT_ARG , inverted_list_context
#else
#define FAISS_GMM_ADD_CORE_CONTEXT_PARAM
#define FAISS_GMM_ADD_CORE_CONTEXT_PARAM_NO_DEFAULT
#define FAISS_GMM_ADD_CORE_CONTEXT_ARG
#endif

#if FAISS_GMM_HAS_FILEDESCRIPTOR
/// Name of the IOReader/IOWriter method that returns the file descriptor.
#define FAISS_GMM_IO_DESCRIPTOR_METHOD filedescriptor
#else
#define FAISS_GMM_IO_DESCRIPTOR_METHOD fileno
#endif

namespace faiss_gmm {

/// FAISS's index type (faiss_gmm::idx_t before 1.7.4, faiss::idx_t after).
#if FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 7, 4)
using idx_t = faiss::idx_t;
#else
using idx_t = faiss::Index::idx_t;
#endif

namespace compat_detail {
template <class T>
struct SecondParameter;
template <class C, class R, class A1, class A2, class... Rest>
struct SecondParameter<R (C::*)(A1, A2, Rest...) const> {
    using type = A2;
};
} // namespace compat_detail

/// Type of IndexIVF::copy_subset_to's subset_type: an int in old FAISS,
/// InvertedLists::subset_type_t in newer ones (read off the declaration).
using CopySubsetType = typename compat_detail::SecondParameter<
    decltype(&faiss::IndexIVF::copy_subset_to)>::type;

namespace compat_detail {
template <class T, class = void>
struct HasOwnIndices : std::false_type {};
template <class T>
struct HasOwnIndices<T, decltype(void(std::declval<T&>().own_indices))>
    : std::true_type {};
} // namespace compat_detail

/**
 * Make a faiss::ThreadedIndex (IndexShards, IndexReplicas) own its
 * sub-indexes: the flag is own_fields in old FAISS, own_indices in newer
 * ones (read off the class).
 */
template <class Threaded>
void set_owns_sub_indexes(Threaded& threaded, bool own) {
    if constexpr (compat_detail::HasOwnIndices<Threaded>::value) {
        threaded.own_indices = own;
    } else {
        threaded.own_fields = own;
    }
}

/// "1.7.3", "1.15.0", ...: the FAISS headers we were compiled against.
const char* faiss_version_compiled();

/**
 * A new scanner of `index`'s codes (owned by the caller), without a
 * selector and without store_pairs: faiss-gmm applies both itself.
 *
 * @param index  an IndexIVF whose codes the scanner reads
 * @param params per-call search parameters (passed where FAISS takes them)
 */
inline faiss::InvertedListScanner* new_code_scanner(
    const faiss::IndexIVF& index, const faiss::SearchParametersIVF* params) {
#if FAISS_GMM_HAS_SCANNER_PARAMS
    return index.get_InvertedListScanner(false, nullptr, params);
#else
    (void)params;
    return index.get_InvertedListScanner(false, nullptr);
#endif
}

/**
 * Whether sel is the selector faiss::IndexIDMap::remove_ids hands to its
 * sub-index (faiss::IDSelectorTranslated). Always false where FAISS keeps
 * that type private to IndexIDMap.cpp (1.7.3).
 */
bool is_idmap_translated_selector(const faiss::IDSelector& sel);

/**
 * Throws, naming `who`, when p sets a SearchParametersIVF field that
 * faiss-gmm does not implement in this FAISS version: quantizer_params,
 * and from 1.15 max_lists_num, ensure_topk_full and
 * max_empty_result_buckets. nprobe, max_codes and sel are honoured.
 */
void check_unsupported_ivf_fields(
    const faiss::SearchParametersIVF& p, const char* who);

/**
 * Copies every SearchParametersIVF field this FAISS version has (nprobe,
 * max_codes, sel, quantizer_params, and from 1.15 the search budgets) from
 * `from` into `to`, leaving to's own fields alone; check_unsupported_ivf_fields
 * then refuses those faiss-gmm does not implement.
 */
void copy_ivf_search_fields(
    const faiss::SearchParametersIVF& from, faiss::SearchParametersIVF* to);

} // namespace faiss_gmm
