/**
 * SHA-256 (FIPS 180-4) of files and byte strings, for the checksums that the
 * data set manifests record (package files, images, output files).
 */

#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace faiss_gmm {
namespace datasets {

/// Incremental SHA-256: update() with the bytes in order, then hex_digest().
class Sha256 {
   public:
    Sha256();

    /// Appends n bytes to the message.
    void update(const void* data, size_t n);

    /// The digest of everything passed to update(), as 64 lowercase hex
    /// characters. Ends the computation: update() may not follow.
    std::string hex_digest();

   private:
    /// Hashes the 64-byte block_.
    void compress();

    uint32_t state_[8];
    uint8_t block_[64];
    size_t block_used_ = 0;
    uint64_t total_bytes_ = 0;
    bool finished_ = false;
};

/// SHA-256 of a byte string, as 64 lowercase hex characters.
std::string sha256_hex(const std::string& bytes);

/// SHA-256 of a file's contents; throws naming the file when it cannot be
/// read.
std::string sha256_file(const std::string& path);

} // namespace datasets
} // namespace faiss_gmm
