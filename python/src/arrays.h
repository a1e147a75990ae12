/**
 * numpy arrays in and out of the bindings: checks of input arrays (dtype,
 * shape, C order, CPU memory) that raise ValueError naming the argument, and
 * new numpy arrays that C++ fills in place (no copy on the way out).
 */

#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include <nanobind/ndarray.h>

#include <faiss_gmm/faiss_compat.h>

namespace faiss_gmm {
namespace python {

namespace nb = nanobind;

/// Any read-only array of any dtype and layout; the checks below decide.
using InArray = nb::ndarray<nb::ro>;

/// n rows of d float32 values, C-contiguous, in the caller's memory.
struct FloatRows {
    const float* data = nullptr;
    idx_t n = 0;
    int d = 0;
};

/**
 * View x as FloatRows without copying. Raises ValueError naming `name` unless
 * x is a 2-D C-contiguous float32 array in CPU memory with d columns (any
 * number of columns when d < 0).
 */
FloatRows float_rows(const InArray& x, const char* name, int d);

/**
 * View x as n int64 values without copying. Raises ValueError naming `name`
 * unless x is a 1-D contiguous int64 array of n values (any count when
 * n < 0).
 */
const int64_t* int64_values(const InArray& x, const char* name, idx_t n);

/// The same for 1-D (d < 0: any length) or 2-D float32 arrays of values
/// (shape given by the caller, e.g. (k,) or (k, d)).
const float* float_values(
    const InArray& x, const char* name, std::initializer_list<int64_t> shape);

/** A new numpy array of T, filled by C++ (owned by the numpy array). */
template <class T>
struct NewArray {
    T* data = nullptr;
    nb::ndarray<nb::numpy, T> array;

    explicit NewArray(std::initializer_list<size_t> shape) {
        size_t size = 1;
        for (size_t s : shape) {
            size *= s;
        }
        data = new T[size > 0 ? size : 1];
        T* owned = data;
        nb::capsule owner(
            owned, [](void* p) noexcept { delete[] static_cast<T*>(p); });
        array = nb::ndarray<nb::numpy, T>(data, shape, owner);
    }
};

} // namespace python
} // namespace faiss_gmm
