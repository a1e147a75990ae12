/**
 * The only file that knows which FAISS version we are compiled against
 * (1.7.3 ... 1.15). Everything else uses the aliases below.
 */

#pragma once

#include <cstdint>

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>

/// FAISS_VERSION_{MAJOR,MINOR,PATCH} are defined by faiss/Index.h.
#define FAISS_GMM_FAISS_VERSION_AT_LEAST(major, minor, patch)                  \
    ((FAISS_VERSION_MAJOR > (major)) ||                                        \
     (FAISS_VERSION_MAJOR == (major) && FAISS_VERSION_MINOR > (minor)) ||      \
     (FAISS_VERSION_MAJOR == (major) && FAISS_VERSION_MINOR == (minor) &&      \
      FAISS_VERSION_PATCH >= (patch)))

namespace faiss_gmm {

/// FAISS's index type (faiss::Index::idx_t before 1.7.4, faiss::idx_t after).
#if FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 7, 4)
using idx_t = faiss::idx_t;
#else
using idx_t = faiss::Index::idx_t;
#endif

/// IndexIVF::add_core gained a `void* inverted_list_context` in 1.8.
#if FAISS_GMM_FAISS_VERSION_AT_LEAST(1, 8, 0)
#define FAISS_GMM_ADD_CORE_CONTEXT_PARAM , void* inverted_list_context
#define FAISS_GMM_ADD_CORE_CONTEXT_ARG , inverted_list_context
#else
#define FAISS_GMM_ADD_CORE_CONTEXT_PARAM
#define FAISS_GMM_ADD_CORE_CONTEXT_ARG
#endif

} // namespace faiss_gmm
