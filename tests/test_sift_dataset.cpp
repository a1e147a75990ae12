/**
 * Tests of the SIFT data set builder (datasets/sift_dataset.h) and the
 * make_sift_debian tool on three small photos the test draws itself:
 * determinism (two builds byte-identical), the TEXMEX layout (readable by
 * our readers, the requested counts, no duplicate rows), the documented
 * split, ground truth equal to brute force, the tool's cache. Built only
 * when CMake finds OpenCV.
 */

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "test_scratch.h"
#include <datasets/numpy_random.h>
#include <datasets/registry.h>
#include <datasets/sift_dataset.h>
#include <datasets/sift_extractor.h>
#include <datasets/vector_io.h>

namespace fs = std::filesystem;
using namespace faiss_gmm::datasets;

namespace {

using faiss_gmm::test::fresh_scratch_dir;

std::vector<char> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(
        std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// A textured 200x150 picture: a gradient, random filled shapes and lines
/// (corners and blobs for the DoG detector), seeded.
void draw_photo(const std::string& path, uint64_t seed) {
    cv::RNG rng(seed);
    cv::Mat img(150, 200, CV_8UC3);
    for (int y = 0; y < img.rows; y++) {
        for (int x = 0; x < img.cols; x++) {
            img.at<cv::Vec3b>(y, x) =
                cv::Vec3b(uchar(x), uchar(y + x / 2), uchar(255 - y));
        }
    }
    for (int i = 0; i < 40; i++) {
        const cv::Scalar color(
            rng.uniform(0, 256), rng.uniform(0, 256), rng.uniform(0, 256));
        const cv::Point a(rng.uniform(0, 200), rng.uniform(0, 150));
        const cv::Point b(rng.uniform(0, 200), rng.uniform(0, 150));
        switch (i % 3) {
        case 0:
            cv::rectangle(img, a, b, color, cv::FILLED);
            break;
        case 1:
            cv::circle(img, a, rng.uniform(3, 25), color, cv::FILLED);
            break;
        default:
            cv::line(img, a, b, color, rng.uniform(1, 4));
        }
    }
    ASSERT_TRUE(cv::imwrite(path, img));
}

/// The three photos of every test (PNG: lossless, same bytes each time).
class SiftDatasetTest : public ::testing::Test {
   protected:
    void SetUp() override {
        photo_dir_ = fresh_scratch_dir("photos");
        for (int i = 0; i < 3; i++) {
            SiftPhoto p;
            p.name = "photo" + std::to_string(i) + ".png";
            p.local_path = photo_dir_ + "/" + p.name;
            draw_photo(p.local_path, 100 + i);
            photos_.push_back(p);
        }
        params_.n_query = 20;
        params_.n_learn = 10;
        params_.n_base = -1;
        params_.groundtruth_k = 10;
        params_.seed = 7;
        params_.name = "tiny";
        params_.verbose = false;
    }

    std::string photo_dir_;
    std::vector<SiftPhoto> photos_;
    SiftDatasetParameters params_;
};

using Row = std::vector<uint8_t>;

std::vector<Row> rows_of(const FloatMatrix& m) {
    std::vector<Row> rows;
    for (int64_t i = 0; i < m.n; i++) {
        rows.emplace_back(m.row(i), m.row(i) + m.d);
    }
    return rows;
}

} // namespace

TEST_F(SiftDatasetTest, TwoBuildsAreByteIdentical) {
    const std::string a = fresh_scratch_dir("a"), b = fresh_scratch_dir("b");
    const SiftDatasetSummary sa = build_sift_dataset(photos_, params_, a);
    const SiftDatasetSummary sb = build_sift_dataset(photos_, params_, b);
    ASSERT_EQ(sa.files.size(), 6u); // query learn base gt gt_dist manifest
    for (size_t i = 0; i < sa.files.size(); i++) {
        const std::string name = fs::path(sa.files[i]).filename().string();
        EXPECT_EQ(name, fs::path(sb.files[i]).filename().string());
        const std::vector<char> x = read_bytes(sa.files[i]);
        EXPECT_FALSE(x.empty()) << name;
        EXPECT_TRUE(x == read_bytes(sb.files[i])) << name << " differs";
    }
}

TEST_F(SiftDatasetTest, TexmexLayoutAndDocumentedSplit) {
    const std::string dir = fresh_scratch_dir("layout");
    const SiftDatasetSummary s = build_sift_dataset(photos_, params_, dir);

    // The descriptors the photos give, distinct, in byte order.
    std::set<Row> distinct;
    int64_t extracted = 0;
    for (const SiftPhoto& p : photos_) {
        const ImageDescriptors d = extract_sift(p.local_path, params_.sift);
        EXPECT_EQ(d.width, 200);
        EXPECT_EQ(d.height, 150);
        for (int64_t i = 0; i < d.n; i++) {
            distinct.emplace(
                d.rows.begin() + i * kSiftDim,
                d.rows.begin() + (i + 1) * kSiftDim);
        }
        extracted += d.n;
    }
    ASSERT_GT(distinct.size(), 60u) << "the drawn photos give too few "
                                       "keypoints for the test";
    EXPECT_EQ(s.n_images, 3);
    EXPECT_EQ(s.n_extracted, extracted);
    EXPECT_EQ(s.n_unique, int64_t(distinct.size()));
    EXPECT_EQ(s.n_query, 20);
    EXPECT_EQ(s.n_learn, 10);
    EXPECT_EQ(s.n_base, s.n_unique - 30); // n_base = -1: all the rest
    EXPECT_EQ(s.n_unused, 0);

    const VectorFileInfo info = probe_vector_file(dir + "/base.bvecs");
    EXPECT_EQ(info.dtype, "uint8");
    EXPECT_EQ(info.layout, "texmex");
    EXPECT_EQ(info.d, 128);
    EXPECT_EQ(info.n, s.n_base);
    const FloatMatrix query = read_vectors(dir + "/query.bvecs");
    const FloatMatrix learn = read_vectors(dir + "/learn.bvecs");
    const FloatMatrix base = read_vectors(dir + "/base.bvecs");
    EXPECT_EQ(query.n, 20);
    EXPECT_EQ(learn.n, 10);

    // query, learn, base: the permuted distinct rows, in this order.
    const std::vector<Row> sorted(distinct.begin(), distinct.end());
    const std::vector<int64_t> perm =
        numpy_permutation(params_.seed, int64_t(sorted.size()));
    std::vector<Row> written = rows_of(query);
    for (const Row& r : rows_of(learn)) {
        written.push_back(r);
    }
    for (const Row& r : rows_of(base)) {
        written.push_back(r);
    }
    ASSERT_EQ(written.size(), sorted.size());
    for (size_t i = 0; i < written.size(); i++) {
        ASSERT_TRUE(written[i] == sorted[perm[i]]) << "row " << i;
    }

    // faiss_gmm_eval's loader reads the folder as a data set, with its
    // ground truth and learn set.
    const Dataset ds = load_dataset(dir, "");
    EXPECT_EQ(ds.base.n, s.n_base);
    EXPECT_EQ(ds.query.n, 20);
    EXPECT_EQ(ds.train.n, 10);
    EXPECT_EQ(ds.groundtruth.k, 10);
    EXPECT_EQ(ds.groundtruth.nq, 20);
}

TEST_F(SiftDatasetTest, GroundTruthIsBruteForce) {
    const std::string dir = fresh_scratch_dir("gt");
    build_sift_dataset(photos_, params_, dir);
    const FloatMatrix query = read_vectors(dir + "/query.bvecs");
    const FloatMatrix base = read_vectors(dir + "/base.bvecs");
    const GroundTruth gt = read_groundtruth_texmex(
        dir + "/groundtruth.ivecs", dir + "/groundtruth_dist.fvecs");
    ASSERT_EQ(gt.nq, query.n);
    ASSERT_EQ(gt.k, 10);
    for (int64_t q = 0; q < query.n; q++) {
        std::vector<std::pair<double, int>> all;
        for (int64_t i = 0; i < base.n; i++) {
            double d = 0;
            for (int j = 0; j < 128; j++) {
                const double t = double(query.row(q)[j]) - base.row(i)[j];
                d += t * t;
            }
            all.emplace_back(d, int(i));
        }
        std::sort(all.begin(), all.end()); // ties: ascending id
        for (int j = 0; j < gt.k; j++) {
            EXPECT_EQ(gt.ids[q * gt.k + j], all[j].second) << q << " " << j;
            EXPECT_EQ(gt.distances[q * gt.k + j], float(all[j].first));
        }
    }
}

TEST_F(SiftDatasetTest, TooFewDescriptorsThrows) {
    params_.n_query = 1000000;
    try {
        build_sift_dataset(photos_, params_, fresh_scratch_dir("few"));
        FAIL() << "no exception";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("distinct"), std::string::npos)
            << e.what();
    }
}

TEST_F(SiftDatasetTest, ToolBuildsOnceThenFindsItsCache) {
    const std::string out = fresh_scratch_dir("tool_out");
    const std::string log = fresh_scratch_dir("tool_log") + "/log.txt";
    auto run = [&](const std::string& extra) {
        const std::string cmd = std::string(MAKE_SIFT_DEBIAN) + " --images " +
                                photo_dir_ + " --out " + out +
                                " --query 20 --learn 0 --base all" + extra +
                                " > " + log + " 2>&1";
        const int status = std::system(cmd.c_str());
        const std::vector<char> text = read_bytes(log);
        return std::make_pair(
            WIFEXITED(status) ? WEXITSTATUS(status) : -1,
            std::string(text.begin(), text.end()));
    };
    const auto first = run("");
    ASSERT_EQ(first.first, 0) << first.second;
    EXPECT_NE(first.second.find("photo 3/3"), std::string::npos)
        << first.second;
    EXPECT_FALSE(fs::exists(out + "/learn.bvecs"));
    const std::vector<char> base = read_bytes(out + "/base.bvecs");
    const auto second = run("");
    ASSERT_EQ(second.first, 0) << second.second;
    EXPECT_NE(second.second.find("up to date"), std::string::npos)
        << second.second;
    EXPECT_EQ(second.second.find("photo 1/3"), std::string::npos);
    // Other settings are another data set: rebuilt.
    const auto third = run(" --seed 3");
    ASSERT_EQ(third.first, 0) << third.second;
    EXPECT_NE(third.second.find("photo 3/3"), std::string::npos);
    EXPECT_FALSE(read_bytes(out + "/base.bvecs") == base);
    const auto bad = run(" --query x");
    EXPECT_EQ(bad.first, 1);
    EXPECT_NE(bad.second.find("--query"), std::string::npos) << bad.second;
}
