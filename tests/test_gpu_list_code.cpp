/**
 * The host side of the GPU index's list codes (gpu/impl/GpuListCode.h),
 * which needs no device and so runs on every build with CUDA code: the
 * codes it writes for spilled entries are FAISS's IndexIVFScalarQuantizer
 * codes of the same entries byte for byte (residual to each entry's own
 * list mean), its decoding is FAISS's reconstruction, it trains as the CPU
 * index trains, and it maps CPU codes onto GPU ones or refuses them by
 * their demangled class name.
 */

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/gpu/impl/GpuListCode.h>

using namespace faiss_gmm;
using faiss_gmm::gpu::GpuListCode;
using faiss_gmm::kernels::IvfCodeKind;

namespace {

std::vector<float> random_rows(idx_t n, int d, uint64_t seed, float scale) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    std::vector<float> x(size_t(n) * d);
    for (float& v : x) {
        v = scale * normal(rng);
    }
    return x;
}

} // namespace

TEST(GpuListCode, EncodesAndDecodesAsFaiss) {
    const int d = 24, nlist = 6;
    const idx_t n = 500;
    const std::vector<float> means = random_rows(nlist, d, 1, 4.0f);
    const std::vector<float> x = random_rows(n, d, 2, 4.0f);
    faiss::IndexFlatL2 quantizer(d);
    quantizer.add(nlist, means.data());
    // every row stored in two lists (its row number mod nlist and the next),
    // as a spilled vector is
    std::vector<int64_t> rows;
    std::vector<int32_t> lists;
    for (idx_t i = 0; i < n; i++) {
        for (int c = 0; c < 2; c++) {
            rows.push_back(i);
            lists.push_back(int32_t((i + c) % nlist));
        }
    }
    const int64_t ne = int64_t(rows.size());
    for (const char* name : {"SQ8", "SQfp16"}) {
        SCOPED_TRACE(name);
        GpuListCode code = GpuListCode::from_name(name, d);
        EXPECT_EQ(code.needs_training(), std::string(name) == "SQ8");
        EXPECT_TRUE(code.by_residual);
        code.train(quantizer, n, x.data());
        ASSERT_TRUE(code.is_trained());
        EXPECT_EQ(std::string(code.name()), name);

        // FAISS's own IVF index of this code over the same means, trained
        // on the same vectors: the CPU index's codes
        faiss::IndexIVFScalarQuantizer ivf(
            &quantizer, size_t(d), size_t(nlist), code.sq.qtype);
        ivf.train(n, x.data());
        EXPECT_EQ(ivf.sq.trained, code.sq.trained);
        std::vector<float> entry_rows(size_t(ne) * d);
        std::vector<idx_t> entry_lists(ne);
        for (int64_t e = 0; e < ne; e++) {
            std::copy_n(
                x.data() + size_t(rows[e]) * d, d, entry_rows.data() + e * d);
            entry_lists[e] = lists[e];
        }
        const size_t cs = code.code_size(d);
        ASSERT_EQ(cs, ivf.code_size);
        std::vector<uint8_t> want(size_t(ne) * cs), got(size_t(ne) * cs);
        ivf.encode_vectors(
            ne, entry_rows.data(), entry_lists.data(), want.data());
        code.encode(
            d,
            x.data(),
            means.data(),
            ne,
            rows.data(),
            lists.data(),
            got.data());
        EXPECT_EQ(got, want);

        // decoding = FAISS's reconstruction: decoded residual + list mean
        std::vector<float> mine(d), theirs(d);
        for (int64_t e : {int64_t(0), int64_t(7), ne - 1}) {
            code.decode(
                got.data() + e * cs,
                means.data() + size_t(lists[e]) * d,
                d,
                mine.data());
            ivf.sq.decode(got.data() + e * cs, theirs.data(), 1);
            for (int i = 0; i < d; i++) {
                theirs[i] += means[size_t(lists[e]) * d + i];
            }
            EXPECT_EQ(mine, theirs) << "entry " << e;
        }

        // the CPU codes index made from the code is that same code
        std::unique_ptr<faiss::IndexIVF> made(
            code.make_codes_index(d, size_t(nlist)));
        EXPECT_TRUE(made->is_trained);
        const GpuListCode back = GpuListCode::from_codes_index(*made, "test");
        EXPECT_EQ(back.kind, code.kind);
        EXPECT_EQ(back.by_residual, code.by_residual);
        EXPECT_EQ(back.sq.trained, code.sq.trained);
    }
}

TEST(GpuListCode, MapsAndRefusesCpuCodes) {
    const int d = 16, nlist = 4;
    faiss::IndexFlatL2 q1(d), q2(d), q3(d);
    faiss::IndexIVFFlat flat(&q1, size_t(d), size_t(nlist));
    EXPECT_EQ(
        GpuListCode::from_codes_index(flat, "test").kind, IvfCodeKind::Float32);
    faiss::IndexIVFScalarQuantizer sq4(
        &q2, size_t(d), size_t(nlist), faiss::ScalarQuantizer::QT_4bit);
    faiss::IndexIVFPQ pq(&q3, size_t(d), size_t(nlist), 4, 8);
    auto message = [](const faiss::IndexIVF& codes) {
        try {
            GpuListCode::from_codes_index(codes, "test");
        } catch (const faiss::FaissException& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_NE(
        message(sq4).find("faiss::IndexIVFScalarQuantizer of another "
                          "quantizer type"),
        std::string::npos)
        << message(sq4);
    EXPECT_NE(message(pq).find("faiss::IndexIVFPQ"), std::string::npos)
        << message(pq);
    EXPECT_THROW(GpuListCode::from_name("PQ8", d), faiss::FaissException);
    EXPECT_EQ(GpuListCode::from_name("Flat", d).code_size(d), size_t(4 * d));
}
