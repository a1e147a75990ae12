#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/index_factory.h>
#include <faiss_gmm/index_io.h>

int main() {
    const int d = 32, n = 20000, k = 4;
    std::mt19937 rng(123);
    std::normal_distribution<float> gauss;
    std::vector<float> x(size_t(n) * d);
    for (float& v : x)
        v = gauss(rng);

    // 64 GMM components; border vectors are stored in up to 2 lists.
    std::unique_ptr<faiss::Index> index(
        faiss_gmm::index_factory(d, "IVF64_GMM,Flat"));
    index->train(n, x.data());
    index->add(n, x.data());
    faiss_gmm::set_index_parameters(index.get(), "nprobe=8");

    std::vector<float> dist(k);
    std::vector<faiss_gmm::idx_t> ids(k);
    index->search(1, x.data(), k, dist.data(), ids.data()); // query = vector 0
    std::printf("nearest: id %ld at distance %g\n", long(ids[0]), dist[0]);

    faiss_gmm::write_index(index.get(), "example.index");
    std::unique_ptr<faiss::Index> loaded(
        faiss_gmm::read_index("example.index"));
    const auto* ivf = faiss_gmm::try_extract_index_ivfgmm(loaded.get());
    std::printf("replication %.2f\n", ivf->replication_factor());
    return ids[0] == 0 ? 0 : 1;
}
