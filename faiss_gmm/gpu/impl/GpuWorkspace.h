/**
 * Internal (not installed): carving aligned sub-buffers out of one device
 * allocation, so that a stage sizes and lays out its buffers with one code
 * path (a null base only measures).
 */

#pragma once

#include <algorithm>
#include <cstddef>

namespace faiss_gmm {
namespace gpu {

/// Alignment of the buffers carved out of one workspace allocation.
constexpr size_t kCarveAlignment = 256;

/** Hands out aligned sub-buffers of one allocation (null base: measures). */
class Carver {
   public:
    explicit Carver(char* base) : base_(base) {}

    /// count elements of T (at least one), aligned to kCarveAlignment.
    template <class T>
    T* take(size_t count) {
        offset_ =
            (offset_ + kCarveAlignment - 1) / kCarveAlignment * kCarveAlignment;
        T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
        offset_ += std::max<size_t>(count, 1) * sizeof(T);
        return p;
    }

    /// bytes the allocation needs for everything taken so far
    size_t bytes() const {
        return offset_ + kCarveAlignment;
    }

   private:
    char* base_;
    size_t offset_ = 0;
};

} // namespace gpu
} // namespace faiss_gmm
