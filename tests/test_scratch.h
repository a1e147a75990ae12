/**
 * Scratch files and folders that belong to the running test alone.
 *
 * ctest runs every test of a file as its own process, two or more at a time,
 * so a folder name shared by two tests of one file is a race: one test's
 * SetUp removed the ground-truth cache another was writing into (DatasetsTest,
 * CI of 2026-12-06). Every path here sits under
 * FAISS_GMM_TEST_TMPDIR/scratch/<Suite>.<Test>/, which no other test touches.
 */

#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace faiss_gmm {
namespace test {

/// FAISS_GMM_TEST_TMPDIR/scratch/<Suite>.<Test>, created if missing.
inline std::filesystem::path scratch_root() {
    const ::testing::TestInfo* info =
        ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string owner =
        info == nullptr
            ? std::string("no_test")
            : std::string(info->test_suite_name()) + "." + info->name();
    std::filesystem::path root =
        std::filesystem::path(FAISS_GMM_TEST_TMPDIR) / "scratch" / owner;
    std::filesystem::create_directories(root);
    return root;
}

/// A file path of the running test (its folder exists, the file may not).
inline std::string scratch_file(const std::string& name) {
    return (scratch_root() / name).string();
}

/// An empty folder of the running test (emptied if an earlier run left one).
inline std::string fresh_scratch_dir(const std::string& name) {
    const std::filesystem::path dir = scratch_root() / name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir.string();
}

} // namespace test
} // namespace faiss_gmm
