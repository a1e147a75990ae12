/**
 * Tests of datasets/: file formats (round trips, row ranges, streaming,
 * malformed input), ann-benchmarks HDF5, exact ground truth, the synthetic
 * generator, load_dataset, the registry and download.sh.
 */

#include <sys/stat.h>
#include <sys/wait.h>

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <faiss/impl/FaissAssert.h>
#include <gtest/gtest.h>

#include "test_scratch.h"
#include <datasets/groundtruth.h>
#include <datasets/hdf5_io.h>
#include <datasets/registry.h>
#include <datasets/synthetic.h>
#include <datasets/vector_io.h>

namespace fs = std::filesystem;
using namespace faiss_gmm::datasets;

namespace {

using faiss_gmm::test::fresh_scratch_dir;

/// n x d random integers in [lo, hi] as floats (exact in every format).
FloatMatrix random_integers(int64_t n, int d, int lo, int hi, unsigned seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> dist(lo, hi);
    FloatMatrix m;
    m.n = n;
    m.d = d;
    m.data.resize(n * d);
    for (float& v : m.data) {
        v = float(dist(gen));
    }
    return m;
}

FloatMatrix random_floats(int64_t n, int d, unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> dist(0.f, 1.f);
    FloatMatrix m;
    m.n = n;
    m.d = d;
    m.data.resize(n * d);
    for (float& v : m.data) {
        v = dist(gen);
    }
    return m;
}

/// The reference: all distances in double, sorted by (distance, id).
GroundTruth
brute_force(const FloatMatrix& base, const FloatMatrix& query, int k) {
    GroundTruth gt;
    gt.nq = query.n;
    gt.k = k;
    for (int64_t q = 0; q < query.n; q++) {
        std::vector<std::pair<double, int64_t>> all(base.n);
        for (int64_t i = 0; i < base.n; i++) {
            double s = 0;
            for (int j = 0; j < base.d; j++) {
                const double t =
                    double(query.row(q)[j]) - double(base.row(i)[j]);
                s += t * t;
            }
            all[i] = {s, i};
        }
        std::sort(all.begin(), all.end());
        for (int j = 0; j < k; j++) {
            gt.ids.push_back(int32_t(all[j].second));
            gt.distances.push_back(float(all[j].first));
        }
    }
    return gt;
}

/// Runs fn and returns the message of the FaissException it throws.
template <typename F>
std::string exception_message(F fn) {
    try {
        fn();
    } catch (const faiss::FaissException& e) {
        return e.what();
    }
    ADD_FAILURE() << "no faiss::FaissException thrown";
    return "";
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), bytes.size());
}

std::vector<char> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(
        (std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void expect_same(const FloatMatrix& a, const FloatMatrix& b) {
    EXPECT_EQ(a.n, b.n);
    EXPECT_EQ(a.d, b.d);
    EXPECT_EQ(a.data, b.data);
}

class DatasetsTest : public ::testing::Test {
   protected:
    void SetUp() override {
        // Computed ground truth must not be cached in shared data folders.
        cache_dir_ = fresh_scratch_dir("gt_cache");
        setenv("FAISS_GMM_CACHE_DIR", cache_dir_.c_str(), 1);
    }
    std::string cache_dir_;
};

} // namespace

TEST_F(DatasetsTest, EveryVectorFormatRoundTrips) {
    const std::string dir = fresh_scratch_dir("round_trip");
    const FloatMatrix bytes = random_integers(37, 5, 0, 255, 1);
    const FloatMatrix signed_bytes = random_integers(37, 5, -128, 127, 2);
    const FloatMatrix floats = random_floats(37, 5, 3);
    struct Case {
        std::string ext;
        const FloatMatrix* data;
        const char* dtype;
        const char* layout;
        int64_t bytes_per_row;
        int64_t header;
    };
    const std::vector<Case> cases = {
        {".fvecs", &floats, "float32", "texmex", 4 + 5 * 4, 0},
        {".bvecs", &bytes, "uint8", "texmex", 4 + 5, 0},
        {".ivecs", &signed_bytes, "int32", "texmex", 4 + 5 * 4, 0},
        {".fbin", &floats, "float32", "bin", 5 * 4, 8},
        {".u8bin", &bytes, "uint8", "bin", 5, 8},
        {".i8bin", &signed_bytes, "int8", "bin", 5, 8},
        {".ibin", &signed_bytes, "int32", "bin", 5 * 4, 8},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.ext);
        const std::string path = dir + "/x" + c.ext;
        write_vectors(path, *c.data);
        const VectorFileInfo info = probe_vector_file(path);
        EXPECT_EQ(info.n, 37);
        EXPECT_EQ(info.d, 5);
        EXPECT_EQ(info.dtype, c.dtype);
        EXPECT_EQ(info.layout, c.layout);
        EXPECT_EQ(info.file_bytes, c.header + 37 * c.bytes_per_row);
        EXPECT_EQ(int64_t(fs::file_size(path)), info.file_bytes);
        expect_same(read_vectors(path), *c.data);
    }
    // Typed writers produce the same bytes as write_vectors.
    std::vector<uint8_t> u8(bytes.data.begin(), bytes.data.end());
    write_bvecs(dir + "/typed.bvecs", u8.data(), bytes.n, bytes.d);
    EXPECT_EQ(read_bytes(dir + "/typed.bvecs"), read_bytes(dir + "/x.bvecs"));
    write_u8bin(dir + "/typed.u8bin", u8.data(), bytes.n, bytes.d);
    EXPECT_EQ(read_bytes(dir + "/typed.u8bin"), read_bytes(dir + "/x.u8bin"));
    std::vector<int8_t> i8(signed_bytes.data.begin(), signed_bytes.data.end());
    write_i8bin(
        dir + "/typed.i8bin", i8.data(), signed_bytes.n, signed_bytes.d);
    EXPECT_EQ(read_bytes(dir + "/typed.i8bin"), read_bytes(dir + "/x.i8bin"));
    write_fbin(dir + "/typed.fbin", floats.data.data(), floats.n, floats.d);
    EXPECT_EQ(read_bytes(dir + "/typed.fbin"), read_bytes(dir + "/x.fbin"));
    write_fvecs(dir + "/typed.fvecs", floats.data.data(), floats.n, floats.d);
    EXPECT_EQ(read_bytes(dir + "/typed.fvecs"), read_bytes(dir + "/x.fvecs"));

    // Integer files read back as ints without conversion.
    IntMatrix ids;
    ids.n = 11;
    ids.d = 3;
    for (int i = 0; i < 33; i++) {
        ids.data.push_back(i * 1000003 - 7);
    }
    for (const char* ext : {".ivecs", ".ibin"}) {
        const std::string path = dir + "/ids" + ext;
        write_ids(path, ids);
        const IntMatrix back = read_ids(path);
        EXPECT_EQ(back.n, 11);
        EXPECT_EQ(back.d, 3);
        EXPECT_EQ(back.data, ids.data);
    }
    EXPECT_THROW(read_ids(dir + "/x.fvecs"), faiss::FaissException);
    // Values that the integer format cannot hold are refused.
    FloatMatrix bad = bytes;
    bad.data[7] = 256;
    EXPECT_NE(
        exception_message([&] {
            write_vectors(dir + "/bad.bvecs", bad);
        }).find("256"),
        std::string::npos);
    bad.data[7] = 1.5f;
    EXPECT_THROW(write_vectors(dir + "/bad.u8bin", bad), faiss::FaissException);
    EXPECT_THROW(write_vectors(dir + "/x.txt", floats), faiss::FaissException);
    // An empty TEXMEX file holds zero rows.
    write_fvecs(dir + "/empty.fvecs", nullptr, 0, 4);
    EXPECT_EQ(read_vectors(dir + "/empty.fvecs").n, 0);
}

TEST_F(DatasetsTest, RowRangesReadOnlyTheRange) {
    const std::string dir = fresh_scratch_dir("ranges");
    const FloatMatrix x = random_integers(100, 7, 0, 255, 4);
    for (const char* ext : {".fvecs", ".bvecs", ".fbin", ".u8bin"}) {
        SCOPED_TRACE(ext);
        const std::string path = dir + "/x" + ext;
        write_vectors(path, x);
        expect_same(read_vectors(path, 13, 20), slice_rows(x, 13, 20));
        expect_same(read_vectors(path, 0, 1), slice_rows(x, 0, 1));
        // Past the end is clipped; at the end is empty; beyond is an error.
        expect_same(read_vectors(path, 90, 50), slice_rows(x, 90, 10));
        EXPECT_EQ(read_vectors(path, 100).n, 0);
        EXPECT_THROW(read_vectors(path, 101), faiss::FaissException);
        EXPECT_THROW(read_vectors(path, -1), faiss::FaissException);
    }
}

TEST_F(DatasetsTest, ChunkedReaderVisitsEveryRowOnce) {
    const std::string dir = fresh_scratch_dir("chunks");
    const FloatMatrix x = random_floats(50, 6, 5);
    for (const char* ext : {".fvecs", ".fbin"}) {
        SCOPED_TRACE(ext);
        const std::string path = dir + "/x" + ext;
        write_vectors(path, x);
        std::vector<float> seen;
        std::vector<int64_t> firsts;
        const VectorFileInfo info = for_each_chunk(
            path, 7, [&](const float* chunk, int64_t n, int64_t first) {
                EXPECT_LE(n, 7);
                firsts.push_back(first);
                seen.insert(seen.end(), chunk, chunk + n * 6);
            });
        EXPECT_EQ(info.d, 6);
        EXPECT_EQ(seen, x.data);
        EXPECT_EQ(firsts, (std::vector<int64_t>{0, 7, 14, 21, 28, 35, 42, 49}));
        // A sub-range, streamed.
        seen.clear();
        for_each_chunk(
            path,
            4,
            [&](const float* chunk, int64_t n, int64_t first) {
                EXPECT_GE(first, 10);
                seen.insert(seen.end(), chunk, chunk + n * 6);
            },
            10,
            9);
        EXPECT_EQ(seen, slice_rows(x, 10, 9).data);
        EXPECT_THROW(
            for_each_chunk(path, 0, [](const float*, int64_t, int64_t) {}),
            faiss::FaissException);
    }
}

TEST_F(DatasetsTest, MalformedFilesThrowWithFileAndOffset) {
    const std::string dir = fresh_scratch_dir("malformed");
    const FloatMatrix x = random_floats(10, 4, 6);
    const std::string good = dir + "/good.fvecs";
    write_vectors(good, x);
    const std::vector<char> bytes = read_bytes(good); // rows of 20 bytes

    // probe_vector_file checks the headers and the size, not every row.
    auto expect_error = [](const std::string& path,
                           const std::string& what,
                           const std::string& offset,
                           bool probe_detects = true) {
        const std::string msg = exception_message([&] { read_vectors(path); });
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
        EXPECT_NE(msg.find(what), std::string::npos) << msg;
        EXPECT_NE(msg.find("byte offset " + offset), std::string::npos) << msg;
        if (probe_detects) {
            EXPECT_THROW(probe_vector_file(path), faiss::FaissException);
        }
    };
    for (int32_t bad_dim : {0, -5, 1 << 30}) {
        std::vector<char> b = bytes;
        std::memcpy(b.data(), &bad_dim, 4);
        const std::string path = dir + "/bad_dim.fvecs";
        write_bytes(path, b);
        expect_error(path, "bad dimension header", "0");
    }
    {
        std::vector<char> b(bytes.begin(), bytes.end() - 3);
        const std::string path = dir + "/truncated.fvecs";
        write_bytes(path, b);
        expect_error(path, "truncated", "180");
    }
    {
        // Row 3 claims dimension 5; the size is still a multiple of 20.
        std::vector<char> b = bytes;
        const int32_t five = 5;
        std::memcpy(b.data() + 3 * 20, &five, 4);
        const std::string path = dir + "/inconsistent.fvecs";
        write_bytes(path, b);
        expect_error(path, "inconsistent dimensions", "60", false);
        // Rows before the bad one still read.
        EXPECT_EQ(read_vectors(path, 0, 3).n, 3);
        EXPECT_THROW(read_vectors(path, 2, 2), faiss::FaissException);
    }
    {
        std::vector<char> b = bytes;
        b.resize(2); // shorter than a dimension header
        const std::string path = dir + "/tiny.fvecs";
        write_bytes(path, b);
        expect_error(path, "truncated", "0");
    }
    // big-ann-benchmarks layout: header count larger than the file.
    const std::string good_bin = dir + "/good.fbin";
    write_vectors(good_bin, x);
    const std::vector<char> bin = read_bytes(good_bin);
    {
        std::vector<char> b = bin;
        const uint32_t n = 11;
        std::memcpy(b.data(), &n, 4);
        const std::string path = dir + "/count.fbin";
        write_bytes(path, b);
        expect_error(path, "truncated", std::to_string(bin.size()));
    }
    {
        std::vector<char> b = bin;
        b.push_back(0);
        const std::string path = dir + "/trailing.fbin";
        write_bytes(path, b);
        expect_error(path, "size mismatch", std::to_string(bin.size()));
    }
    {
        std::vector<char> b = bin;
        const uint32_t zero = 0;
        std::memcpy(b.data() + 4, &zero, 4);
        const std::string path = dir + "/zero_dim.fbin";
        write_bytes(path, b);
        expect_error(path, "bad dimension header", "4");
    }
    {
        std::vector<char> b(bin.begin(), bin.begin() + 5);
        const std::string path = dir + "/short_header.u8bin";
        write_bytes(path, b);
        expect_error(path, "truncated", "0");
    }
    EXPECT_NE(
        exception_message([&] {
            read_vectors(dir + "/missing.fvecs");
        }).find("missing.fvecs"),
        std::string::npos);
    write_bytes(dir + "/x.npy", bytes);
    EXPECT_THROW(read_vectors(dir + "/x.npy"), faiss::FaissException);
}

TEST_F(DatasetsTest, GroundTruthFilesRoundTrip) {
    const std::string dir = fresh_scratch_dir("gt_files");
    GroundTruth gt;
    gt.nq = 6;
    gt.k = 4;
    for (int i = 0; i < 24; i++) {
        gt.ids.push_back(i * 3);
        gt.distances.push_back(0.5f * i);
    }
    const std::string bin = dir + "/gt.bin";
    write_groundtruth_bin(bin, gt);
    EXPECT_EQ(fs::file_size(bin), 8u + 24 * 8);
    GroundTruth back = read_groundtruth_bin(bin);
    EXPECT_EQ(back.nq, 6);
    EXPECT_EQ(back.k, 4);
    EXPECT_EQ(back.ids, gt.ids);
    EXPECT_EQ(back.distances, gt.distances);
    EXPECT_EQ(read_groundtruth(bin).ids, gt.ids);

    write_groundtruth_texmex(dir + "/gt.ivecs", dir + "/gt_dist.fvecs", gt);
    back = read_groundtruth_texmex(dir + "/gt.ivecs", dir + "/gt_dist.fvecs");
    EXPECT_EQ(back.ids, gt.ids);
    EXPECT_EQ(back.distances, gt.distances);
    back = read_groundtruth(dir + "/gt.ivecs");
    EXPECT_EQ(back.ids, gt.ids);
    EXPECT_TRUE(back.distances.empty());

    const GroundTruth top2 = truncate_groundtruth(gt, 2);
    EXPECT_EQ(top2.k, 2);
    EXPECT_EQ(top2.ids[2], gt.ids[4]);
    EXPECT_EQ(top2.distances[3], gt.distances[5]);

    // An ids-only file (no distances) is accepted; other sizes are not.
    std::vector<char> b = read_bytes(bin);
    write_bytes(
        dir + "/ids_only.bin",
        std::vector<char>(b.begin(), b.begin() + 8 + 96));
    back = read_groundtruth_bin(dir + "/ids_only.bin");
    EXPECT_EQ(back.ids, gt.ids);
    EXPECT_TRUE(back.distances.empty());
    write_bytes(dir + "/bad.bin", std::vector<char>(b.begin(), b.end() - 1));
    const std::string msg =
        exception_message([&] { read_groundtruth_bin(dir + "/bad.bin"); });
    EXPECT_NE(msg.find("bad.bin"), std::string::npos) << msg;
    EXPECT_NE(msg.find("byte offset"), std::string::npos) << msg;
    // Shape mismatch between ids and distances.
    write_fvecs(dir + "/wrong_dist.fvecs", gt.distances.data(), 4, 6);
    EXPECT_THROW(
        read_groundtruth_texmex(dir + "/gt.ivecs", dir + "/wrong_dist.fvecs"),
        faiss::FaissException);
}

namespace {

/// Writes an HDF5 file with one float dataset of the given shape.
void write_hdf5_with(
    const std::string& path,
    const std::vector<std::pair<std::string, std::vector<hsize_t>>>& datasets,
    hid_t type = H5T_NATIVE_FLOAT) {
    hid_t file =
        H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    for (const auto& [key, dims] : datasets) {
        hid_t space = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
        hid_t ds = H5Dcreate2(
            file,
            key.c_str(),
            type,
            space,
            H5P_DEFAULT,
            H5P_DEFAULT,
            H5P_DEFAULT);
        H5Dclose(ds);
        H5Sclose(space);
    }
    H5Fclose(file);
}

} // namespace

TEST_F(DatasetsTest, AnnBenchmarksHdf5RoundTripAndBadKeys) {
    const std::string dir = fresh_scratch_dir("hdf5");
    AnnBenchmarksData data;
    data.train = random_floats(30, 8, 7);
    data.test = random_floats(5, 8, 8);
    const GroundTruth gt = brute_force(data.train, data.test, 3);
    data.neighbors.n = 5;
    data.neighbors.d = 3;
    data.neighbors.data = gt.ids;
    data.distances.n = 5;
    data.distances.d = 3;
    data.distances.data = gt.distances;
    data.distance = "euclidean";
    const std::string path = dir + "/x.hdf5";
    write_ann_benchmarks_hdf5(path, data);
    const AnnBenchmarksData back = read_ann_benchmarks_hdf5(path);
    expect_same(back.train, data.train);
    expect_same(back.test, data.test);
    EXPECT_EQ(back.neighbors.data, data.neighbors.data);
    expect_same(back.distances, data.distances);
    EXPECT_EQ(back.distance, "euclidean");

    auto expect_error = [](const std::string& p, const std::string& what) {
        const std::string msg =
            exception_message([&] { read_ann_benchmarks_hdf5(p); });
        EXPECT_NE(msg.find(p), std::string::npos) << msg;
        EXPECT_NE(msg.find(what), std::string::npos) << msg;
    };
    write_hdf5_with(dir + "/no_train.hdf5", {{"test", {5, 8}}});
    expect_error(dir + "/no_train.hdf5", "\"train\"");
    write_hdf5_with(
        dir + "/no_neighbors.hdf5", {{"train", {30, 8}}, {"test", {5, 8}}});
    expect_error(dir + "/no_neighbors.hdf5", "\"neighbors\"");
    write_hdf5_with(dir + "/rank1.hdf5", {{"train", {30}}, {"test", {5, 8}}});
    expect_error(dir + "/rank1.hdf5", "rank 1");
    write_hdf5_with(
        dir + "/float_neighbors.hdf5", {{"train", {30, 8}}, {"test", {5, 8}}});
    {
        // neighbors stored as float: not an integer type.
        hid_t file = H5Fopen(
            (dir + "/float_neighbors.hdf5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
        hsize_t dims[2] = {5, 3};
        hid_t space = H5Screate_simple(2, dims, nullptr);
        hid_t ds = H5Dcreate2(
            file,
            "neighbors",
            H5T_NATIVE_FLOAT,
            space,
            H5P_DEFAULT,
            H5P_DEFAULT,
            H5P_DEFAULT);
        H5Dclose(ds);
        H5Sclose(space);
        H5Fclose(file);
    }
    expect_error(dir + "/float_neighbors.hdf5", "\"neighbors\"");
    write_hdf5_with(dir + "/dims.hdf5", {{"train", {30, 8}}, {"test", {5, 9}}});
    expect_error(dir + "/dims.hdf5", "dimension");
    write_bytes(dir + "/not.hdf5", {'n', 'o', 't'});
    expect_error(dir + "/not.hdf5", "not an HDF5 file");
}

TEST_F(DatasetsTest, GroundTruthEqualsDoubleBruteForce) {
    // Float data, including exact duplicates and equidistant points so that
    // the tie-break by ascending id matters.
    FloatMatrix base = random_floats(3000, 24, 9);
    for (int i = 0; i < 40; i++) {
        std::copy_n(base.row(5), 24, base.row(100 + 50 * i)); // duplicates
    }
    FloatMatrix query = random_floats(70, 24, 10);
    std::copy_n(base.row(5), 24, query.row(0)); // 41 points at distance 0
    for (int k : {1, 10, 60}) {
        SCOPED_TRACE(k);
        const GroundTruth expected = brute_force(base, query, k);
        const GroundTruth gt = compute_groundtruth(base, query, k);
        EXPECT_EQ(gt.nq, 70);
        EXPECT_EQ(gt.k, k);
        EXPECT_EQ(gt.ids, expected.ids);
        EXPECT_EQ(gt.distances, expected.distances);
    }
    // Integer data (SIFT-like) with massive ties: 500 copies of each of a few
    // vectors, more than the candidate margin, forces the exact rescan.
    FloatMatrix ints = random_integers(2000, 16, 0, 3, 11);
    for (int i = 0; i < 500; i++) {
        std::copy_n(ints.row(0), 16, ints.row(1000 + i));
    }
    FloatMatrix q2 = random_integers(20, 16, 0, 3, 12);
    std::copy_n(ints.row(0), 16, q2.row(3));
    const GroundTruth expected = brute_force(ints, q2, 100);
    EXPECT_EQ(compute_groundtruth(ints, q2, 100).ids, expected.ids);

    // Streaming from a file gives the same result.
    const std::string dir = fresh_scratch_dir("gt_stream");
    write_vectors(dir + "/base.u8bin", ints);
    const GroundTruth streamed =
        compute_groundtruth_from_file(dir + "/base.u8bin", q2, 100);
    EXPECT_EQ(streamed.ids, expected.ids);
    EXPECT_EQ(streamed.distances, expected.distances);
    const GroundTruth prefix =
        compute_groundtruth_from_file(dir + "/base.u8bin", q2, 10, 700);
    EXPECT_EQ(prefix.ids, brute_force(slice_rows(ints, 0, 700), q2, 10).ids);

    EXPECT_THROW(compute_groundtruth(base, query, 0), faiss::FaissException);
    EXPECT_THROW(compute_groundtruth(base, query, 3001), faiss::FaissException);
    FloatMatrix nan_query = query;
    nan_query.data[3] = std::nanf("");
    EXPECT_THROW(
        compute_groundtruth(base, nan_query, 5), faiss::FaissException);
}

TEST_F(DatasetsTest, GroundTruthDeviceSelection) {
    const FloatMatrix base = random_integers(400, 8, 0, 3, 21);
    const FloatMatrix query = random_integers(9, 8, 0, 3, 22);
    const GroundTruth expected = brute_force(base, query, 20);
    const std::string message = exception_message([&] {
        setenv("FAISS_GMM_GT_DEVICE", "tpu", 1);
        compute_groundtruth(base, query, 20);
    });
    EXPECT_NE(message.find("FAISS_GMM_GT_DEVICE=tpu"), std::string::npos)
        << message;
    setenv("FAISS_GMM_GT_DEVICE", "cpu", 1);
    EXPECT_EQ(compute_groundtruth(base, query, 20).ids, expected.ids);
    // An explicit device overrides the environment.
    EXPECT_EQ(
        compute_groundtruth(base, query, 20, false, GroundTruthDevice::cpu).ids,
        expected.ids);
    unsetenv("FAISS_GMM_GT_DEVICE");
    if (!groundtruth_gpu_available()) {
        const std::string no_gpu = exception_message([&] {
            compute_groundtruth(base, query, 20, false, GroundTruthDevice::gpu);
        });
        EXPECT_NE(no_gpu.find("GPU was requested"), std::string::npos)
            << no_gpu;
    }
}

TEST_F(DatasetsTest, GroundTruthGpuEqualsCpu) {
    if (!groundtruth_gpu_available()) {
        const FloatMatrix tiny = random_floats(2, 4, 27);
        GTEST_SKIP() << exception_message([&] {
            compute_groundtruth(tiny, tiny, 1, false, GroundTruthDevice::gpu);
        });
    }
    // Integer data with massive ties (300 copies of one row, more than the
    // candidate margin) and float data with duplicates: both devices give
    // the certified-exact (distance, id) order, so the results are equal.
    FloatMatrix ints = random_integers(5000, 32, 0, 3, 23);
    for (int i = 0; i < 300; i++) {
        std::copy_n(ints.row(7), 32, ints.row(2000 + 3 * i));
    }
    FloatMatrix int_queries = random_integers(1100, 32, 0, 3, 24);
    std::copy_n(ints.row(7), 32, int_queries.row(1050));
    FloatMatrix floats = random_floats(5000, 20, 25);
    for (int i = 0; i < 50; i++) {
        std::copy_n(floats.row(3), 20, floats.row(4000 + i));
    }
    FloatMatrix float_queries = random_floats(50, 20, 26);
    std::copy_n(floats.row(3), 20, float_queries.row(0));
    for (const auto& [base, query] :
         {std::make_pair(&ints, &int_queries),
          std::make_pair(&floats, &float_queries)}) {
        for (int k : {1, 100}) {
            SCOPED_TRACE(testing::Message() << "d=" << base->d << " k=" << k);
            const GroundTruth cpu = compute_groundtruth(
                *base, *query, k, false, GroundTruthDevice::cpu);
            const GroundTruth gpu = compute_groundtruth(
                *base, *query, k, true, GroundTruthDevice::gpu);
            EXPECT_EQ(gpu.ids, cpu.ids);
            EXPECT_EQ(gpu.distances, cpu.distances);
        }
    }
    const GroundTruth expected = brute_force(floats, float_queries, 100);
    EXPECT_EQ(
        compute_groundtruth(
            floats, float_queries, 100, false, GroundTruthDevice::gpu)
            .ids,
        expected.ids);
    // Streamed from a file, with a prefix of the rows.
    const std::string dir = fresh_scratch_dir("gt_gpu");
    write_vectors(dir + "/base.u8bin", ints);
    EXPECT_EQ(
        compute_groundtruth_from_file(
            dir + "/base.u8bin",
            int_queries,
            100,
            4321,
            false,
            GroundTruthDevice::gpu)
            .ids,
        compute_groundtruth(
            slice_rows(ints, 0, 4321),
            int_queries,
            100,
            false,
            GroundTruthDevice::cpu)
            .ids);
}

TEST_F(DatasetsTest, GroundTruthCacheIsKeyedByData) {
    const std::string dir = fresh_scratch_dir("gt_cache_key");
    FloatMatrix base = random_floats(500, 8, 13);
    const FloatMatrix query = random_floats(10, 8, 14);
    const std::string cache = dir + "/gt.bin";
    const GroundTruth first =
        load_or_compute_groundtruth(base, query, 5, cache);
    ASSERT_TRUE(fs::exists(cache));
    ASSERT_TRUE(fs::exists(cache + ".key"));
    // A smaller k is served from the cache (a poisoned cache proves it).
    GroundTruth poisoned = read_groundtruth_bin(cache);
    poisoned.ids[0] = 499;
    write_groundtruth_bin(cache, poisoned);
    EXPECT_EQ(load_or_compute_groundtruth(base, query, 3, cache).ids[0], 499);
    // Other data: recomputed, and the cache replaced.
    base.data[0] += 1;
    const GroundTruth changed =
        load_or_compute_groundtruth(base, query, 5, cache);
    EXPECT_EQ(changed.ids, compute_groundtruth(base, query, 5).ids);
    EXPECT_EQ(read_groundtruth_bin(cache).ids, changed.ids);
}

TEST_F(DatasetsTest, SyntheticIsDeterministicAndShaped) {
    SyntheticParameters p;
    p.n_base = 20000;
    p.n_query = 200;
    p.n_train = 3000;
    p.d = 32;
    p.n_clusters = 64;
    p.groundtruth_k = 20;
    const Dataset a = make_synthetic(p);
    const Dataset b = make_synthetic(p);
    EXPECT_EQ(a.base.data, b.base.data);
    EXPECT_EQ(a.query.data, b.query.data);
    EXPECT_EQ(a.train.data, b.train.data);
    EXPECT_EQ(a.groundtruth.ids, b.groundtruth.ids);
    EXPECT_EQ(a.base.n, 20000);
    EXPECT_EQ(a.base.d, 32);
    EXPECT_EQ(a.query.n, 200);
    EXPECT_EQ(a.train.n, 3000);
    EXPECT_EQ(a.groundtruth.nq, 200);
    EXPECT_EQ(a.groundtruth.k, 20);
    EXPECT_EQ(a.groundtruth.ids, compute_groundtruth(a.base, a.query, 20).ids);
    for (float v : a.base.data) {
        ASSERT_TRUE(std::isfinite(v));
    }
    // Queries are held out, not copies of base rows.
    for (int64_t q = 0; q < a.query.n; q++) {
        EXPECT_GT(a.groundtruth.distances[q * 20], 0.f);
    }
    // The first rows do not depend on how many rows are generated.
    SyntheticParameters smaller = p;
    smaller.n_base = 1000;
    smaller.n_train = 0;
    const Dataset c = make_synthetic(smaller);
    EXPECT_EQ(c.base.data, slice_rows(a.base, 0, 1000).data);
    EXPECT_EQ(c.query.data, a.query.data);
    EXPECT_TRUE(c.train.empty());

    SyntheticParameters other = p;
    other.seed = 43;
    const Dataset d = make_synthetic(other);
    EXPECT_NE(d.base.data, a.base.data);
    EXPECT_NE(d.query.data, a.query.data);

    // Heavy-tailed: the farthest vector from the mean lies much farther out
    // than the typical one, and nearest-neighbour distances vary a lot
    // between queries (clusters of very different spreads).
    std::vector<double> mean(p.d, 0);
    for (int64_t i = 0; i < a.base.n; i++) {
        for (int j = 0; j < p.d; j++) {
            mean[j] += a.base.row(i)[j] / a.base.n;
        }
    }
    std::vector<double> radius(a.base.n);
    for (int64_t i = 0; i < a.base.n; i++) {
        double s = 0;
        for (int j = 0; j < p.d; j++) {
            s += (a.base.row(i)[j] - mean[j]) * (a.base.row(i)[j] - mean[j]);
        }
        radius[i] = std::sqrt(s);
    }
    std::sort(radius.begin(), radius.end());
    EXPECT_GT(radius.back(), 3 * radius[radius.size() / 2]);
    std::vector<float> nn(a.query.n);
    for (int64_t q = 0; q < a.query.n; q++) {
        nn[q] = a.groundtruth.distances[q * 20];
    }
    std::sort(nn.begin(), nn.end());
    EXPECT_GT(nn[nn.size() * 9 / 10], 4 * nn[nn.size() / 10]);

    p.low_rank = 0;
    EXPECT_THROW(make_synthetic(p), faiss::FaissException);
}

TEST_F(DatasetsTest, LoadDatasetFromDirectories) {
    const std::string dir = fresh_scratch_dir("texmex_dir");
    const FloatMatrix base = random_integers(800, 12, 0, 255, 15);
    const FloatMatrix query = random_integers(30, 12, 0, 255, 16);
    const GroundTruth gt = brute_force(base, query, 10);
    write_vectors(dir + "/base.bvecs", base);
    write_vectors(dir + "/query.bvecs", query);
    write_groundtruth_texmex(
        dir + "/groundtruth.ivecs", dir + "/groundtruth_dist.fvecs", gt);
    Dataset ds = load_dataset(dir, "");
    EXPECT_EQ(ds.name, "texmex_dir");
    expect_same(ds.base, base);
    expect_same(ds.query, query);
    EXPECT_TRUE(ds.train.empty());
    EXPECT_EQ(ds.groundtruth.ids, gt.ids);
    EXPECT_EQ(ds.groundtruth.distances, gt.distances);
    // Fewer queries: ground truth rows follow. Fewer base rows: recomputed.
    ds = load_dataset(dir + "/", "", 300, 7);
    EXPECT_EQ(ds.name, "texmex_dir");
    EXPECT_EQ(ds.base.n, 300);
    EXPECT_EQ(ds.query.n, 7);
    EXPECT_EQ(ds.groundtruth.nq, 7);
    EXPECT_EQ(ds.groundtruth.k, 100);
    EXPECT_EQ(
        ds.groundtruth.ids,
        brute_force(slice_rows(base, 0, 300), slice_rows(query, 0, 7), 100)
            .ids);
    EXPECT_FALSE(fs::is_empty(cache_dir_)); // cached where told

    // big-ann-benchmarks layout, TEXMEX <name>_ prefixes, a learn set, no
    // ground truth: it is computed.
    const std::string bin_dir = fresh_scratch_dir("bin_dir");
    write_vectors(bin_dir + "/base.10K.fbin", base);
    write_vectors(bin_dir + "/query.public.fbin", query);
    write_vectors(bin_dir + "/set_learn.fvecs", random_floats(50, 12, 17));
    ds = load_dataset(bin_dir, "");
    EXPECT_EQ(ds.train.n, 50);
    EXPECT_EQ(ds.groundtruth.k, 100);
    EXPECT_EQ(ds.groundtruth.ids, brute_force(base, query, 100).ids);
    // A ground-truth file of the wrong shape is refused.
    write_groundtruth_bin(
        bin_dir + "/groundtruth.bin", truncate_groundtruth(gt, 5));
    GroundTruth short_gt = truncate_groundtruth(gt, 5);
    short_gt.nq = 29;
    short_gt.ids.resize(29 * 5);
    short_gt.distances.resize(29 * 5);
    write_groundtruth_bin(bin_dir + "/groundtruth.bin", short_gt);
    EXPECT_NE(
        exception_message([&] { load_dataset(bin_dir, ""); }).find("29 rows"),
        std::string::npos);
    // Ambiguous or missing files.
    write_vectors(bin_dir + "/base.fvecs", base);
    EXPECT_NE(
        exception_message([&] {
            load_dataset(bin_dir, "");
        }).find("several base"),
        std::string::npos);
    const std::string empty_dir = fresh_scratch_dir("empty_dir");
    EXPECT_NE(
        exception_message([&] { load_dataset(empty_dir, ""); }).find("no base"),
        std::string::npos);
    EXPECT_THROW(load_dataset(dir, "", 0), faiss::FaissException);
}

TEST_F(DatasetsTest, LoadAnnBenchmarksRegisteredFile) {
    const std::string root = fresh_scratch_dir("root");
    fs::create_directories(root + "/deep-image-96-angular");
    AnnBenchmarksData data;
    data.train = random_floats(400, 96, 18);
    data.test = random_floats(8, 96, 19);
    data.neighbors.n = 8;
    data.neighbors.d = 10;
    // Angular ground truth = L2 order of normalised vectors.
    FloatMatrix unit_train = data.train, unit_test = data.test;
    for (FloatMatrix* m : {&unit_train, &unit_test}) {
        for (int64_t i = 0; i < m->n; i++) {
            double s = 0;
            for (int j = 0; j < m->d; j++) {
                s += double(m->row(i)[j]) * m->row(i)[j];
            }
            for (int j = 0; j < m->d; j++) {
                m->row(i)[j] = float(m->row(i)[j] / std::sqrt(s));
            }
        }
    }
    data.neighbors.data = brute_force(unit_train, unit_test, 10).ids;
    data.distance = "angular";
    write_ann_benchmarks_hdf5(
        root + "/deep-image-96-angular/deep-image-96-angular.hdf5", data);
    const Dataset ds = load_dataset("deep-image-96-angular", root);
    EXPECT_EQ(ds.base.n, 400);
    EXPECT_EQ(ds.groundtruth.ids, data.neighbors.data);
    double norm = 0;
    for (int j = 0; j < 96; j++) {
        norm += double(ds.base.row(7)[j]) * ds.base.row(7)[j];
    }
    EXPECT_NEAR(norm, 1.0, 1e-5);
    // Truncated base: ground truth recomputed on the normalised vectors.
    const Dataset small = load_dataset("deep-image-96-angular", root, 100);
    EXPECT_EQ(
        small.groundtruth.ids,
        brute_force(slice_rows(unit_train, 0, 100), unit_test, 100).ids);
}

TEST_F(DatasetsTest, SiftDebianFirstRows) {
    const std::string dir =
        std::string(FAISS_GMM_SHARED_DATASETS) + "/sift-debian-a";
    if (!fs::exists(dir + "/base.bvecs")) {
        GTEST_SKIP() << dir
                     << " not present (it is not shipped with the project)";
    }
    const Dataset ds = load_dataset(dir, "", 10000, 50);
    EXPECT_EQ(ds.name, "sift-debian-a");
    EXPECT_EQ(ds.base.n, 10000);
    EXPECT_EQ(ds.base.d, 128);
    EXPECT_EQ(ds.query.n, 50);
    EXPECT_EQ(ds.groundtruth.k, 100);
    const GroundTruth expected =
        brute_force(ds.base, slice_rows(ds.query, 0, 5), 100);
    EXPECT_EQ(
        std::vector<int32_t>(
            ds.groundtruth.ids.begin(), ds.groundtruth.ids.begin() + 500),
        expected.ids);
    // The shipped top-100 of the full base agrees with ours on distances.
    const Dataset full = load_dataset(dir, "", -1, 4);
    EXPECT_EQ(full.base.n, 300000);
    const GroundTruth ours = compute_groundtruth(full.base, full.query, 100);
    ASSERT_EQ(full.groundtruth.distances.size(), ours.distances.size());
    for (size_t i = 0; i < ours.distances.size(); i++) {
        EXPECT_FLOAT_EQ(full.groundtruth.distances[i], ours.distances[i]) << i;
    }
}

TEST_F(DatasetsTest, RegistryIsConsistent) {
    const std::vector<DatasetInfo>& registry = dataset_registry();
    std::set<std::string> names;
    for (const DatasetInfo& info : registry) {
        SCOPED_TRACE(info.name);
        EXPECT_TRUE(names.insert(info.name).second) << "duplicate name";
        EXPECT_GT(info.n_base, 0);
        EXPECT_GT(info.n_query, 0);
        EXPECT_GT(info.d, 0);
        EXPECT_FALSE(info.description.empty());
        EXPECT_FALSE(info.files.empty());
        std::set<std::string> roles;
        for (const DatasetFile& f : info.files) {
            roles.insert(f.role);
            EXPECT_FALSE(f.local_name.empty());
            EXPECT_TRUE(f.sha256.empty() || f.sha256.size() == 64);
            if (!f.byte_range.empty()) {
                const int64_t last =
                    std::stoll(f.byte_range.substr(f.byte_range.find('-') + 1));
                EXPECT_EQ(f.bytes, last + 1);
            }
            if (info.format == "texmex" && f.role == "base" &&
                f.bytes != -1) { // -1: made here, size is an option
                EXPECT_EQ(f.bytes, info.n_base * (4 + 4 * info.d));
            }
        }
        if (info.format == "hdf5") {
            EXPECT_TRUE(roles.count("hdf5"));
        } else {
            EXPECT_TRUE(roles.count("base") && roles.count("query"));
        }
    }
    for (const char* name :
         {"sift1m",
          "gist1m",
          "deep1m",
          "deep10m",
          "deep100m",
          "bigann10m",
          "sift-128-euclidean",
          "gist-960-euclidean",
          "deep-image-96-angular"}) {
        EXPECT_EQ(find_dataset(name).name, name);
    }
    const std::string msg = exception_message([] { find_dataset("sift2m"); });
    EXPECT_NE(msg.find("sift2m"), std::string::npos);
    EXPECT_NE(msg.find("sift1m"), std::string::npos);
    EXPECT_NE(msg.find("deep100m"), std::string::npos);
    // A registered set that is not downloaded says how to get it.
    const std::string root = fresh_scratch_dir("empty_root");
    const std::string missing =
        exception_message([&] { load_dataset("deep1m", root); });
    EXPECT_NE(missing.find("download.sh deep1m"), std::string::npos) << missing;
    EXPECT_NE(
        exception_message([] {
            load_dataset("no-such-set", "/nonexistent");
        }).find("sift1m"),
        std::string::npos);
}

TEST_F(DatasetsTest, DownloadScriptPlansAndRejectsUnknownNames) {
    const std::string script =
        std::string(FAISS_GMM_SOURCE_DIR) + "/datasets/download.sh";
    const std::string root = fresh_scratch_dir("download_root");
    const std::string log = root + "/log.txt";
    auto run = [&](const std::string& args) {
        const int status = std::system(
            ("bash " + script + " " + args + " > " + log + " 2>&1").c_str());
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    };
    for (const DatasetInfo& info : dataset_registry()) {
        EXPECT_EQ(run("--dry-run " + info.name + " " + root), 0) << info.name;
    }
    EXPECT_EQ(run("--dry-run sift1m " + root), 0);
    const std::vector<char> out = read_bytes(log);
    const std::string text(out.begin(), out.end());
    EXPECT_NE(
        text.find("ftp://ftp.irisa.fr/local/texmex/corpus/sift.tar.gz"),
        std::string::npos);
    EXPECT_FALSE(fs::exists(root + "/sift1m")); // a dry run writes nothing
    EXPECT_NE(run("--dry-run no-such-set " + root), 0);
    EXPECT_NE(run(""), 0);
    EXPECT_EQ(run("--list"), 0);
}

TEST(SyntheticDefault, FewSecondsAtDefaultSize) {
    const Dataset ds = make_synthetic();
    EXPECT_EQ(ds.base.n, 200000);
    EXPECT_EQ(ds.base.d, 64);
    EXPECT_EQ(ds.query.n, 1000);
    EXPECT_EQ(ds.groundtruth.k, 100);
}
