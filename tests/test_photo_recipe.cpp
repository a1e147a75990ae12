/**
 * Tests of the OpenCV-free parts of the sift-debian data set: SHA-256,
 * numpy's default_rng permutation (against values printed by numpy 1.24.2),
 * the photo recipe, the photo cache, and the registry entry.
 */

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <faiss/impl/FaissAssert.h>
#include <gtest/gtest.h>

#include "test_scratch.h"
#include <datasets/debian_photos.h>
#include <datasets/numpy_random.h>
#include <datasets/registry.h>
#include <datasets/sha256.h>

namespace fs = std::filesystem;
using namespace faiss_gmm::datasets;

namespace {

using faiss_gmm::test::fresh_scratch_dir;

template <typename F>
std::string exception_message(F f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

void write_file(const std::string& path, const std::string& bytes) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
}

} // namespace

TEST(Sha256, FipsVectors) {
    EXPECT_EQ(
        sha256_hex(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(
        sha256_hex("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(
        sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    // One million 'a', fed in uneven pieces through the incremental API.
    Sha256 h;
    const std::string piece(997, 'a');
    size_t left = 1000000;
    while (left > 0) {
        const size_t n = std::min(left, piece.size());
        h.update(piece.data(), n);
        left -= n;
    }
    EXPECT_EQ(
        h.hex_digest(),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    const std::string path = fresh_scratch_dir("sha") + "/abc.txt";
    write_file(path, "abc");
    EXPECT_EQ(sha256_file(path), sha256_hex("abc"));
    EXPECT_NE(
        exception_message([] {
            sha256_file("/nonexistent/file");
        }).find("/nonexistent/file"),
        std::string::npos);
}

TEST(NumpyPermutation, EqualsNumpy) {
    // numpy 1.24.2: list(np.random.default_rng(seed).permutation(n))
    EXPECT_EQ(
        numpy_permutation(12345, 10),
        (std::vector<int64_t>{4, 8, 1, 3, 7, 9, 6, 0, 2, 5}));
    EXPECT_EQ(
        numpy_permutation(0, 10),
        (std::vector<int64_t>{4, 6, 2, 7, 3, 5, 9, 0, 8, 1}));
    // a seed of two 32-bit words
    EXPECT_EQ(
        numpy_permutation((uint64_t(1) << 40) + 5, 12),
        (std::vector<int64_t>{9, 5, 1, 2, 8, 3, 0, 10, 7, 4, 6, 11}));
    EXPECT_EQ(numpy_permutation(12345, 1), (std::vector<int64_t>{0}));
    EXPECT_TRUE(numpy_permutation(12345, 0).empty());
    // the split of sift-debian-a: 556583 distinct descriptors
    const std::vector<int64_t> p = numpy_permutation(12345, 556583);
    EXPECT_EQ(
        std::vector<int64_t>(p.begin(), p.begin() + 8),
        (std::vector<int64_t>{
            149764, 152593, 245757, 60238, 391056, 152701, 61586, 484760}));
    std::vector<bool> seen(p.size());
    for (const int64_t v : p) {
        ASSERT_TRUE(v >= 0 && v < int64_t(p.size()) && !seen[v]);
        seen[v] = true;
    }
}

TEST(PhotoRecipe, SiftDebianIsSiftDebianA) {
    const PhotoRecipe& r = sift_debian_recipe();
    ASSERT_EQ(r.packages.size(), 4u);
    EXPECT_EQ(r.n_images(), 50u);
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"kphotoalbum", "5.9.1-1"},
        {"lxqt-themes", "1.2.0-1"},
        {"palapeli-data", "4:22.12.3-1"},
        {"plasma-workspace-wallpapers", "4:5.27.5-2"}};
    for (size_t i = 0; i < expected.size(); i++) {
        EXPECT_EQ(r.packages[i].name, expected[i].first);
        EXPECT_EQ(r.packages[i].version, expected[i].second);
    }
    EXPECT_EQ(r.packages[0].images.size(), 23u);
    EXPECT_EQ(
        r.packages[3].images[0].path,
        "/usr/share/wallpapers/BytheWater/contents/images/2560x1600.jpg");
    EXPECT_EQ(r.packages[3].images[0].width, 2560);
    EXPECT_EQ(r.sha256.size(), 64u);
}

TEST(PhotoRecipe, MalformedLinesNameTheLine) {
    const std::string sha(64, 'a');
    EXPECT_NE(
        exception_message([&] {
            parse_photo_recipe("package\tp\t1\tp.deb\tnothex\n", "r.tsv");
        }).find("r.tsv line 1"),
        std::string::npos);
    EXPECT_NE(
        exception_message([&] {
            parse_photo_recipe(
                "# c\npackage\tp\t1\tp.deb\t" + sha + "\nimage\tq\t/a.jpg\t" +
                    sha + "\t1\t1\n",
                "r.tsv");
        }).find("line 3"),
        std::string::npos);
    EXPECT_NE(
        exception_message([&] {
            parse_photo_recipe(
                "package\tp\t1\tp.deb\t" + sha + "\nimage\tp\trel.jpg\t" + sha +
                    "\t1\t1\n",
                "r.tsv");
        }).find("/ABSOLUTE/PATH"),
        std::string::npos);
    EXPECT_NE(
        exception_message([&] {
            parse_photo_recipe("package\tp\t1\tp.deb\t" + sha + "\n", "r");
        }).find("lists no image"),
        std::string::npos);
    EXPECT_NE(
        exception_message([&] {
            parse_photo_recipe("oops\n", "r");
        }).find("unknown line kind"),
        std::string::npos);
}

TEST(PhotoRecipe, CachedPhotosAreCheckedAndNotFetched) {
    // A package already in the cache (photos + stamp): nothing is run, the
    // photos come back with their provenance, and a changed photo throws.
    const std::string cache = fresh_scratch_dir("cache");
    const std::string photo = "fake photo bytes";
    const std::string text =
        "package\tfakepkg\t1.0-1\tfakepkg_1.0-1_all.deb\t" +
        std::string(64, 'b') + "\nimage\tfakepkg\t/usr/share/a.jpg\t" +
        sha256_hex(photo) + "\t4\t3\n";
    const PhotoRecipe recipe = parse_photo_recipe(text, "fake");
    write_file(cache + "/fakepkg/usr/share/a.jpg", photo);
    write_file(
        cache + "/fakepkg/package.txt",
        "1.0-1\nfakepkg_1.0-1_all.deb\n" + std::string(64, 'c') + "\n");
    PhotoFetchOptions quiet;
    quiet.verbose = false;
    const std::vector<FetchedPhoto> got =
        fetch_debian_photos(recipe, cache, quiet);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].package, "fakepkg");
    EXPECT_EQ(got[0].version, "1.0-1");
    EXPECT_EQ(got[0].deb_sha256, std::string(64, 'c'));
    EXPECT_EQ(got[0].path_in_package, "/usr/share/a.jpg");
    EXPECT_EQ(got[0].sha256, sha256_hex(photo));
    EXPECT_TRUE(
        fs::equivalent(got[0].local_path, cache + "/fakepkg/usr/share/a.jpg"));
    write_file(cache + "/fakepkg/usr/share/a.jpg", "another photo");
    const std::string msg =
        exception_message([&] { fetch_debian_photos(recipe, cache, quiet); });
    EXPECT_NE(msg.find("/usr/share/a.jpg"), std::string::npos) << msg;
    EXPECT_NE(msg.find(sha256_hex(photo)), std::string::npos) << msg;
}

TEST(PhotoRecipe, RegistryEntrySaysHowToMakeIt) {
    const DatasetInfo info = find_dataset("sift-debian");
    EXPECT_EQ(info.format, "texmex");
    EXPECT_EQ(info.d, 128);
    for (const DatasetFile& f : info.files) {
        EXPECT_EQ(f.url, "build:make_sift_debian") << f.role;
    }
    const std::string root = fresh_scratch_dir("empty_root");
    const std::string msg =
        exception_message([&] { load_dataset("sift-debian", root); });
    EXPECT_NE(msg.find("make_sift_debian --data-root"), std::string::npos)
        << msg;
}
