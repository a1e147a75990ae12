/**
 * Internal (not installed): one table per enum maps its values to the names
 * that parameter strings, files and help texts use, so that every enum is
 * spelled in exactly one place.
 */

#pragma once

#include <cstddef>
#include <string>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace impl {

/// One spelling of an enum value; a value may have several (aliases), the
/// first is its canonical name.
template <class E>
struct EnumName {
    E value;
    const char* name;
};

/// The canonical name of `value`; throws naming `what` when it has none.
template <class E, size_t N>
const char*
enum_name(const EnumName<E> (&table)[N], E value, const char* what) {
    for (const EnumName<E>& entry : table) {
        if (entry.value == value) {
            return entry.name;
        }
    }
    FAISS_THROW_FMT("unknown %s value %d", what, int(value));
}

/// The value spelled `name`; throws naming the string and listing the
/// accepted spellings when there is none.
template <class E, size_t N>
E enum_from_name(
    const EnumName<E> (&table)[N], const std::string& name, const char* what) {
    std::string accepted;
    for (const EnumName<E>& entry : table) {
        if (name == entry.name) {
            return entry.value;
        }
        accepted += accepted.empty() ? "" : ", ";
        accepted += entry.name;
    }
    FAISS_THROW_FMT(
        "unknown %s '%s' (expected %s)", what, name.c_str(), accepted.c_str());
}

} // namespace impl
} // namespace faiss_gmm
