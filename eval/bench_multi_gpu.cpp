/**
 * bench_multi_gpu: EM iteration time of the multi-GPU E-step
 * (GpuMultiEStep: fused E-step per device + NCCL all-reduce) for 1, 2, 4,
 * 8 ... devices on one synthetic data set held in host memory, and the
 * scaling efficiency t(1) / (G t(G)); with --search, the QPS of a search
 * sharded by vectors over the same device counts
 * (index_ivfgmm_cpu_to_gpu_shards). See --help.
 */

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/utils.h>

#include <eval/gpu_bench.h>
#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmEM.h>
#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/GpuIndexIVFGMMShards.h>
#include <faiss_gmm/gpu/GpuMultiEStep.h>

namespace {

using faiss_gmm::idx_t;
namespace fg = faiss_gmm::gpu;
using faiss_gmm::eval::median;

const char* kUsage =
    "usage: bench_multi_gpu [options]\n"
    "  --n N            rows (default 100000000)\n"
    "  --d D            dimension (default 96)\n"
    "  --k K            components (default 1024)\n"
    "  --covariance C   spherical (default) or diagonal\n"
    "  --precision P    fp32, tf32 or bf16 (default bf16)\n"
    "  --gpus LIST      devices (default: all); runs the first 1, 2, 4, ...\n"
    "                   of them and all of them\n"
    "  --iters I        timed EM iterations per device count (default 5,\n"
    "                   after one warm-up)\n"
    "  --search         instead: train the GMM (one GPU, 10 iterations),\n"
    "                   add the n rows to an index sharded over the\n"
    "                   devices and time searches (QPS, median of 5)\n"
    "  --nq Q           queries of --search (default 10000)\n"
    "  --nprobe P       lists probed by --search (default 32)\n"
    "  --help           this text\n"
    "Synthetic rows: 4096 blob centres plus noise, generated in host memory\n"
    "(n x d x 4 bytes). Times are wall clock (host), medians.\n";

uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

float unit(uint64_t& s) {
    return float(splitmix(s) >> 40) * (1.0f / 16777216.0f);
}

} // namespace

static int bench_multi_gpu_main(int argc, char** argv) {
    idx_t n = 100000000;
    int d = 96, k = 1024, iters = 5, nq = 10000, nprobe = 32;
    bool search = false;
    std::string covariance = "spherical", precision = "bf16", gpus;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s needs a value\n%s", a.c_str(), kUsage);
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            printf("%s", kUsage);
            return 0;
        } else if (a == "--n") {
            n = std::atoll(value().c_str());
        } else if (a == "--d") {
            d = std::atoi(value().c_str());
        } else if (a == "--k") {
            k = std::atoi(value().c_str());
        } else if (a == "--covariance") {
            covariance = value();
        } else if (a == "--precision") {
            precision = value();
        } else if (a == "--gpus") {
            gpus = value();
        } else if (a == "--iters") {
            iters = std::atoi(value().c_str());
        } else if (a == "--search") {
            search = true;
        } else if (a == "--nq") {
            nq = std::atoi(value().c_str());
        } else if (a == "--nprobe") {
            nprobe = std::atoi(value().c_str());
        } else {
            fprintf(stderr, "unknown option %s\n%s", a.c_str(), kUsage);
            return 2;
        }
    }
    try {
        FAISS_THROW_IF_NOT_FMT(
            n >= 1 && d >= 1 && k >= 1 && iters >= 1,
            "bad sizes n=%" PRId64 " d=%d k=%d iters=%d",
            int64_t(n),
            d,
            k,
            iters);
        std::vector<int> devices;
        if (gpus.empty()) {
            for (int g = 0; g < fg::gpu_device_count(); g++) {
                devices.push_back(g);
            }
        } else {
            devices = fg::parse_device_list(gpus);
        }
        FAISS_THROW_IF_NOT_MSG(!devices.empty(), "no CUDA device is usable");
        const faiss_gmm::CovarianceType cov =
            faiss_gmm::covariance_type_from_name(covariance);
        fg::GpuEmConfig config;
        config.precision = fg::estep_precision_from_name(precision);

        double t0 = faiss::getmillisecs();
        const int centres = 4096;
        std::vector<float> c(size_t(centres) * d);
        uint64_t cs = 12345;
        for (float& v : c) {
            v = 20 * unit(cs);
        }
        std::vector<float> x(size_t(n) * d);
#pragma omp parallel for schedule(static)
        for (idx_t i = 0; i < n; i++) {
            uint64_t s = uint64_t(i) * 0x2545f4914f6cdd1dULL + 1;
            const float* ci = c.data() + size_t(splitmix(s) % centres) * d;
            float* xi = x.data() + size_t(i) * d;
            for (int l = 0; l < d; l++) {
                xi[l] = ci[l] + (unit(s) + unit(s) + unit(s) - 1.5f);
            }
        }
        printf(
            "bench_multi_gpu: %" PRId64
            " x %d rows (%.1f GB) generated in %.1f s; k = %d, %s, %s, "
            "NCCL %s\n",
            int64_t(n),
            d,
            double(n) * d * 4 / 1e9,
            (faiss::getmillisecs() - t0) / 1000,
            k,
            covariance.c_str(),
            precision.c_str(),
            fg::multi_gpu_has_nccl() ? "yes" : "no");

        std::vector<int> counts;
        for (int g = 1; g < int(devices.size()); g *= 2) {
            counts.push_back(g);
        }
        counts.push_back(int(devices.size()));

        if (search) {
            FAISS_THROW_IF_NOT_FMT(
                nq >= 1 && nprobe >= 1, "bad nq=%d nprobe=%d", nq, nprobe);
            faiss_gmm::GmmParameters tp;
            tp.covariance = cov;
            fg::GpuEmConfig tc = config;
            tc.device = devices[0];
            faiss_gmm::IVFGMMBuildParameters build;
            build.gmm = tp;
            faiss_gmm::IndexIVFGMM cpu(d, size_t(k), build);
            double tt = faiss::getmillisecs();
            faiss_gmm::GaussianMixture gmm(d, k, cov);
            fg::train_gmm_gpu(&gmm, n, x.data(), tp, tc);
            cpu.set_gmm(gmm);
            cpu.nprobe = size_t(nprobe);
            printf(
                "GMM trained on device %d in %.1f s; queries: the first "
                "%d rows plus noise, k = 10, nprobe = %d\n",
                devices[0],
                (faiss::getmillisecs() - tt) / 1000,
                nq,
                nprobe);
            std::vector<float> q(
                x.begin(), x.begin() + size_t(std::min<idx_t>(nq, n)) * d);
            uint64_t qs = 777;
            for (float& v : q) {
                v += unit(qs) - 0.5f;
            }
            const idx_t nqr = idx_t(q.size() / d);
            std::vector<float> dist(size_t(nqr) * 10);
            std::vector<idx_t> labels(size_t(nqr) * 10);
            printf(
                "%-8s %-14s %10s %12s %10s\n",
                "devices",
                "list",
                "add s",
                "search ms",
                "QPS");
            for (int G : counts) {
                const std::vector<int> use(
                    devices.begin(), devices.begin() + G);
                std::unique_ptr<faiss::IndexShards> shards(
                    fg::index_ivfgmm_cpu_to_gpu_shards(&cpu, use));
                const double ta = faiss::getmillisecs();
                shards->add(n, x.data());
                const double add_s = (faiss::getmillisecs() - ta) / 1000;
                std::vector<double> ms;
                for (int r = 0; r <= 5; r++) {
                    const double a = faiss::getmillisecs();
                    shards->search(
                        nqr, q.data(), 10, dist.data(), labels.data());
                    if (r > 0) {
                        ms.push_back(faiss::getmillisecs() - a);
                    }
                }
                std::string list;
                for (int g : use) {
                    list += (list.empty() ? "" : ",") + std::to_string(g);
                }
                const double t = median(ms);
                printf(
                    "%-8d %-14s %10.1f %12.2f %10.0f\n",
                    G,
                    list.c_str(),
                    add_s,
                    t,
                    nqr / (t / 1000));
                fflush(stdout);
            }
            return 0;
        }

        // Model: k rows spread over the data, the data's variance.
        faiss_gmm::GaussianMixture model0(d, k, cov);
        const float var = 20.0f * 20.0f / 12 + 0.25f;
        for (int j = 0; j < k; j++) {
            const float* xr = x.data() + size_t(idx_t(j) * (n / k)) * d;
            std::copy(xr, xr + d, model0.means.data() + size_t(j) * d);
            model0.weights[j] = 1.0f / k;
        }
        std::fill(model0.variances.begin(), model0.variances.end(), var);
        model0.variance_floor = 1e-3f * var;
        faiss_gmm::GmmParameters params;
        params.covariance = cov;

        double t_one = 0;
        printf(
            "%-8s %-14s %12s %12s %12s %12s %10s\n",
            "devices",
            "list",
            "E-step ms",
            "reduce ms",
            "EM iter ms",
            "Grows/s",
            "efficiency");
        for (int G : counts) {
            const std::vector<int> use(devices.begin(), devices.begin() + G);
            double ts = faiss::getmillisecs();
            fg::GpuMultiEStep estep(n, x.data(), d, use, config);
            const double setup_s = (faiss::getmillisecs() - ts) / 1000;
            faiss_gmm::GaussianMixture model = model0;
            faiss_gmm::GmmSufficientStats stats(d, k, cov);
            std::vector<double> e_ms, r_ms, it_ms;
            for (int it = 0; it <= iters; it++) {
                const double a = faiss::getmillisecs();
                stats.reset();
                estep.compute(model, &stats);
                const double b = faiss::getmillisecs();
                faiss_gmm::gmm_m_step(&model, stats, params, it);
                const double e = faiss::getmillisecs();
                if (it > 0) { // the first is the warm-up
                    e_ms.push_back(b - a);
                    r_ms.push_back(estep.last_reduce_ms());
                    it_ms.push_back(e - a);
                }
            }
            const double t = median(it_ms);
            if (G == 1) {
                t_one = t;
            }
            std::string list;
            for (int g : use) {
                list += (list.empty() ? "" : ",") + std::to_string(g);
            }
            printf(
                "%-8d %-14s %12.2f %12.2f %12.2f %12.2f %9.1f%%   "
                "(setup %.1f s, mean LL %.6g)\n",
                G,
                list.c_str(),
                median(e_ms),
                median(r_ms),
                t,
                double(n) / (t / 1000) / 1e9,
                100 * t_one / (G * t),
                setup_s,
                stats.log_likelihood / stats.n);
            fflush(stdout);
        }
    } catch (const std::exception& e) {
        fprintf(stderr, "bench_multi_gpu: %s\n", e.what());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    // a bad option value or an unusable device: one line, exit status 1
    try {
        return bench_multi_gpu_main(argc, argv);
    } catch (const std::exception& e) {
        fprintf(stderr, "bench_multi_gpu: %s\n", e.what());
        return 1;
    }
}
