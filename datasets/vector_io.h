/**
 * Readers and writers for the vector file formats of ANN benchmarks:
 *
 * - TEXMEX (http://corpus-texmex.irisa.fr/): .fvecs, .bvecs, .ivecs. Every
 *   row is an int32 dimension followed by that many float32 / uint8 / int32
 *   values.
 * - big-ann-benchmarks (https://big-ann-benchmarks.com/): .fbin, .u8bin,
 *   .i8bin, .ibin. A header of uint32 row count and uint32 dimension, then
 *   the rows without per-row headers; and the ground-truth .bin layout
 *   (uint32 nq, uint32 k, nq*k int32 ids, nq*k float32 distances).
 *
 * All files are little-endian. Reads of a row range touch only that range
 * (pread), so files larger than RAM can be read piecewise or streamed with
 * for_each_chunk. Malformed files throw faiss::FaissException naming the file
 * and the byte offset of the problem.
 */

#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace faiss_gmm {
namespace datasets {

/// A dense row-major float matrix (n rows of d values).
struct FloatMatrix {
    /// Number of rows.
    int64_t n = 0;
    /// Number of columns (the vector dimension).
    int d = 0;
    /// n * d values, row-major.
    std::vector<float> data;

    /// Pointer to row i (0 <= i < n).
    const float* row(int64_t i) const {
        return data.data() + i * d;
    }
    /// Mutable pointer to row i (0 <= i < n).
    float* row(int64_t i) {
        return data.data() + i * d;
    }
    /// True when the matrix holds no rows.
    bool empty() const {
        return n == 0;
    }
};

/// A dense row-major int32 matrix (ids, e.g. ground-truth neighbours).
struct IntMatrix {
    /// Number of rows.
    int64_t n = 0;
    /// Number of columns.
    int d = 0;
    /// n * d values, row-major.
    std::vector<int32_t> data;

    /// Pointer to row i (0 <= i < n).
    const int32_t* row(int64_t i) const {
        return data.data() + i * d;
    }
    /// True when the matrix holds no rows.
    bool empty() const {
        return n == 0;
    }
};

/// Exact nearest neighbours of a query set: for query q, ids[q * k + j] is
/// its (j+1)-th nearest base vector, distances[q * k + j] its squared L2
/// distance (or whatever the file's metric is).
struct GroundTruth {
    /// Number of queries.
    int64_t nq = 0;
    /// Neighbours per query.
    int k = 0;
    /// nq * k ids, row-major, nearest first.
    std::vector<int32_t> ids;
    /// nq * k distances matching ids; empty when the source has none.
    std::vector<float> distances;

    /// Pointer to the k ids of query q.
    const int32_t* ids_of(int64_t q) const {
        return ids.data() + q * k;
    }
    /// True when there are no queries.
    bool empty() const {
        return nq == 0;
    }
};

/// What a vector file holds, from its size and headers only.
struct VectorFileInfo {
    /// Number of rows.
    int64_t n = 0;
    /// Dimension.
    int d = 0;
    /// Element type: "float32", "uint8", "int8" or "int32".
    std::string dtype;
    /// Layout: "texmex" (per-row dimension header) or "bin" (one header).
    std::string layout;
    /// File size in bytes.
    int64_t file_bytes = 0;
};

/// Reads the size and header(s) of a vector file; the format comes from the
/// extension (.fvecs .bvecs .ivecs .fbin .u8bin .i8bin .ibin). Checks that
/// the size is consistent with the header (throws otherwise).
VectorFileInfo probe_vector_file(const std::string& path);

/// Reads rows [first_row, first_row + max_rows) of a vector file as floats
/// (uint8 / int8 / int32 are converted).
/// @param path       .fvecs .bvecs .fbin .u8bin .i8bin (also .ivecs .ibin)
/// @param first_row  first row to read (must be <= number of rows)
/// @param max_rows   rows to read; -1 (default) reads to the end. A value
///                   past the end is clipped to the rows available.
FloatMatrix read_vectors(
    const std::string& path, int64_t first_row = 0, int64_t max_rows = -1);

/// Reads rows [first_row, first_row + max_rows) of an integer file (.ivecs
/// or .ibin) without conversion.
IntMatrix
read_ids(const std::string& path, int64_t first_row = 0, int64_t max_rows = -1);

/// Streams rows [first_row, first_row + max_rows) of a vector file as float
/// blocks of at most chunk_rows rows; memory use is one block. The callback
/// gets the block, its row count and the index of its first row in the file.
/// @return what probe_vector_file returns (d is in there)
VectorFileInfo for_each_chunk(
    const std::string& path,
    int64_t chunk_rows,
    const std::function<void(const float* x, int64_t n, int64_t first_row)>& fn,
    int64_t first_row = 0,
    int64_t max_rows = -1);

/// Writes n float vectors of dimension d as .fvecs.
void write_fvecs(const std::string& path, const float* x, int64_t n, int d);
/// Writes n uint8 vectors of dimension d as .bvecs.
void write_bvecs(const std::string& path, const uint8_t* x, int64_t n, int d);
/// Writes n int32 vectors of dimension d as .ivecs.
void write_ivecs(const std::string& path, const int32_t* x, int64_t n, int d);
/// Writes n float vectors of dimension d as .fbin.
void write_fbin(const std::string& path, const float* x, int64_t n, int d);
/// Writes n uint8 vectors of dimension d as .u8bin.
void write_u8bin(const std::string& path, const uint8_t* x, int64_t n, int d);
/// Writes n int8 vectors of dimension d as .i8bin.
void write_i8bin(const std::string& path, const int8_t* x, int64_t n, int d);
/// Writes n int32 vectors of dimension d as .ibin.
void write_ibin(const std::string& path, const int32_t* x, int64_t n, int d);

/// Writes a float matrix in the format given by the extension of path
/// (.fvecs .bvecs .fbin .u8bin .i8bin). For the integer formats every value
/// must be an integer in the type's range (throws otherwise).
void write_vectors(const std::string& path, const FloatMatrix& x);
/// Writes an int matrix as .ivecs or .ibin (by extension).
void write_ids(const std::string& path, const IntMatrix& x);

/// Reads the big-ann-benchmarks ground-truth layout: uint32 nq, uint32 k,
/// nq*k int32 ids, nq*k float32 distances. A file holding only the ids is
/// accepted (distances left empty).
GroundTruth read_groundtruth_bin(const std::string& path);
/// Writes the big-ann-benchmarks ground-truth layout (distances must be
/// present: nq*k values).
void write_groundtruth_bin(const std::string& path, const GroundTruth& gt);

/// Reads TEXMEX ground truth: ids from an .ivecs file and, when
/// distances_path is not empty, distances from an .fvecs file of the same
/// shape.
GroundTruth read_groundtruth_texmex(
    const std::string& ids_path, const std::string& distances_path = "");
/// Writes TEXMEX ground truth (ids .ivecs, distances .fvecs when
/// distances_path is not empty and gt has distances).
void write_groundtruth_texmex(
    const std::string& ids_path,
    const std::string& distances_path,
    const GroundTruth& gt);

/// Reads ground truth by extension: .ivecs (TEXMEX, ids only) or .bin /
/// .ibin-style big-ann-benchmarks layout.
GroundTruth read_groundtruth(const std::string& path);

/// The first k neighbours of every query (k <= gt.k).
GroundTruth truncate_groundtruth(const GroundTruth& gt, int k);

/// Rows [first_row, first_row + n) of a matrix (clipped to its size).
FloatMatrix slice_rows(const FloatMatrix& x, int64_t first_row, int64_t n);

} // namespace datasets
} // namespace faiss_gmm
