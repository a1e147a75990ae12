/**
 * Internal (not installed): the dynamic class of a FAISS object as error
 * messages name it ("faiss::IndexIVFPQFastScan"), demangled where the
 * compiler allows, so that a refusal names what the user built.
 */

#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <typeinfo>

#ifdef __GNUG__
#include <cxxabi.h>
#endif

namespace faiss_gmm {
namespace impl {

/// The demangled name of object's dynamic class (the mangled one when
/// demangling is unavailable).
template <class T>
std::string class_name(const T& object) {
    const char* mangled = typeid(object).name();
#ifdef __GNUG__
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> demangled(
        abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
    if (status == 0 && demangled) {
        return demangled.get();
    }
#endif
    return mangled;
}

} // namespace impl
} // namespace faiss_gmm
