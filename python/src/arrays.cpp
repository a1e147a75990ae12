#include "arrays.h"

#include <string>

namespace faiss_gmm {
namespace python {

namespace {

std::string shape_text(const InArray& x) {
    std::string s = "(";
    for (size_t i = 0; i < x.ndim(); i++) {
        s += std::to_string(x.shape(i));
        s += (x.ndim() == 1 || i + 1 < x.ndim()) ? "," : "";
        s += (i + 1 < x.ndim()) ? " " : "";
    }
    return s + ")";
}

const char* dtype_text(const InArray& x) {
    const auto t = x.dtype();
    if (t == nb::dtype<float>()) {
        return "float32";
    } else if (t == nb::dtype<double>()) {
        return "float64";
    } else if (t == nb::dtype<int64_t>()) {
        return "int64";
    } else if (t == nb::dtype<int32_t>()) {
        return "int32";
    }
    return "another dtype";
}

/// C order: each stride is the product of the later extents (extents of 1
/// may have any stride, as numpy allows).
bool is_c_contiguous(const InArray& x) {
    int64_t expected = 1;
    for (size_t i = x.ndim(); i-- > 0;) {
        if (x.shape(i) != 1 && x.stride(i) != expected) {
            return false;
        }
        expected *= int64_t(x.shape(i));
    }
    return true;
}

[[noreturn]] void fail(const std::string& message) {
    throw nb::value_error(message.c_str());
}

void check_layout(
    const InArray& x, const char* name, const char* dtype_name, bool dtype_ok) {
    if (x.device_type() != nb::device::cpu::value) {
        fail(std::string(name) + " must be a numpy array in CPU memory");
    }
    if (!dtype_ok) {
        fail(
            std::string(name) + " must have dtype " + dtype_name + ", not " +
            dtype_text(x) + " (convert with np.ascontiguousarray(" + name +
            ", dtype=np." + dtype_name + "))");
    }
    if (!is_c_contiguous(x)) {
        fail(
            std::string(name) + " of shape " + shape_text(x) +
            " must be C-contiguous (np.ascontiguousarray(" + name + "))");
    }
}

} // namespace

FloatRows float_rows(const InArray& x, const char* name, int d) {
    check_layout(x, name, "float32", x.dtype() == nb::dtype<float>());
    if (x.ndim() != 2) {
        fail(
            std::string(name) + " must be a 2-D array (n, d), got shape " +
            shape_text(x));
    }
    if (d >= 0 && x.shape(1) != size_t(d)) {
        fail(
            std::string(name) + " has " + std::to_string(x.shape(1)) +
            " columns, the index/model has d = " + std::to_string(d));
    }
    FloatRows rows;
    rows.data = static_cast<const float*>(x.data());
    rows.n = idx_t(x.shape(0));
    rows.d = int(x.shape(1));
    return rows;
}

const int64_t* int64_values(const InArray& x, const char* name, idx_t n) {
    check_layout(x, name, "int64", x.dtype() == nb::dtype<int64_t>());
    if (x.ndim() != 1) {
        fail(
            std::string(name) + " must be a 1-D array, got shape " +
            shape_text(x));
    }
    if (n >= 0 && idx_t(x.shape(0)) != n) {
        fail(
            std::string(name) + " has " + std::to_string(x.shape(0)) +
            " values, expected " + std::to_string(n));
    }
    return static_cast<const int64_t*>(x.data());
}

const float* float_values(
    const InArray& x, const char* name, std::initializer_list<int64_t> shape) {
    check_layout(x, name, "float32", x.dtype() == nb::dtype<float>());
    bool same = x.ndim() == shape.size();
    size_t i = 0;
    for (int64_t s : shape) {
        same = same && i < x.ndim() && int64_t(x.shape(i)) == s;
        i++;
    }
    if (!same) {
        std::string expected = "(";
        i = 0;
        for (int64_t s : shape) {
            expected += std::to_string(s);
            expected += (shape.size() == 1 || i + 1 < shape.size()) ? "," : "";
            expected += (i + 1 < shape.size()) ? " " : "";
            i++;
        }
        fail(
            std::string(name) + " must have shape " + expected + "), got " +
            shape_text(x));
    }
    return static_cast<const float*>(x.data());
}

} // namespace python
} // namespace faiss_gmm
