/**
 * faiss_gmm_train: trains a GMM coarse quantizer from a vector file and
 * writes an IndexIVFGMM (trained, lists empty) or the GMM alone.
 *
 * Runs as one process (E-step on the CPU, on one GPU, or on several GPUs
 * through NCCL) or under mpirun: each rank reads only its own row range of
 * the file, the E-step statistics are summed with MPI every iteration, and
 * rank 0 writes the result. See --help.
 */

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <faiss/impl/FaissAssert.h>
#include <faiss/utils/utils.h>

#include <datasets/vector_io.h>
#include <faiss_gmm/GaussianMixture.h>
#include <faiss_gmm/GmmEM.h>
#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/index_io.h>
#ifdef FAISS_GMM_WITH_GPU
#include <faiss_gmm/gpu/GpuEmTrainer.h>
#include <faiss_gmm/gpu/GpuFlatL2.h>
#include <faiss_gmm/gpu/GpuMultiEStep.h>
#endif
#ifdef FAISS_GMM_WITH_MPI
#include <faiss_gmm/mpi/MpiEStep.h>
#endif

namespace {

using faiss_gmm::GaussianMixture;
using faiss_gmm::GmmParameters;
using faiss_gmm::idx_t;

const char* kUsage =
    "usage: faiss_gmm_train --data FILE --k K [options]\n"
    "       mpirun -np R faiss_gmm_train --data FILE --k K [options]\n"
    "\n"
    "Trains a GMM (EM) on the rows of FILE and writes a trained IndexIVFGMM\n"
    "with k lists (lists empty) or, with --gmm-only, the GMM alone\n"
    "(faiss_gmm::read_index / read_gmm load them). Under mpirun every rank\n"
    "reads only its row range; rank 0 writes. 1 and R ranks train the same\n"
    "model (up to the summation order of the E-step statistics).\n"
    "\n"
    "  --data FILE        .fvecs .bvecs .fbin .u8bin .i8bin (required)\n"
    "  --rows N           use the first N rows of FILE (default: all)\n"
    "  --k K              number of components = IVF lists (required)\n"
    "  --covariance C     spherical (default), diagonal, tied or full\n"
    "  --niter N          EM iterations (default 20)\n"
    "  --tol X            stop when the mean log-likelihood gains < X\n"
    "                     (default 1e-4; 0: run all iterations)\n"
    "  --init I           kmeans (default), kmeans++ or random\n"
    "  --seed S           seed of sampling, init and re-seeding (default "
    "1234)\n"
    "  --max-points-per-component M\n"
    "                     train on a seeded sample of k*M rows (default "
    "256;\n"
    "                     0: all rows)\n"
    "  --reg-covar X      variance floor relative to the mean data variance\n"
    "                     (default 1e-3)\n"
    "  --gpu              E-step on one GPU (under mpirun: device rank %\n"
    "                     device count)\n"
    "  --gpus LIST        E-step over the GPUs LIST (e.g. 0,1) of this\n"
    "                     process, statistics summed with NCCL (under\n"
    "                     mpirun: per rank, one rank per host)\n"
    "  --precision P      GPU E-step arithmetic: fp32 (default), tf32, bf16\n"
    "  --out FILE         write the result there (default: nothing "
    "written)\n"
    "  --gmm-only         write the GMM alone instead of an IndexIVFGMM\n"
    "  --verbose          EM progress lines (rank 0)\n"
    "  --help             this text\n"
    "\n"
    "Prints one line per EM iteration: mean log-likelihood and wall time.\n";

struct Options {
    std::string data;
    int64_t rows = -1;
    int k = 0;
    GmmParameters params;
    bool gpu = false;
    std::string gpus;
    std::string precision = "fp32";
    std::string out;
    bool gmm_only = false;
    bool help = false;
};

/// A usage error: the message, then the usage text (exit status 2).
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Throws a UsageError with the printf-formatted message unless ok.
template <class... Args>
void require_fmt(bool ok, const char* format, Args... args) {
    if (ok) {
        return;
    }
    if constexpr (sizeof...(Args) == 0) {
        throw UsageError(format);
    } else {
        char message[512];
        snprintf(message, sizeof(message), format, args...);
        throw UsageError(message);
    }
}

int64_t parse_int(const std::string& opt, const std::string& v) {
    char* end = nullptr;
    const long long value = std::strtoll(v.c_str(), &end, 10);
    require_fmt(
        !v.empty() && end && *end == '\0',
        "%s: '%s' is not an integer",
        opt.c_str(),
        v.c_str());
    return value;
}

/// The build key (IVFGMMParameters.h) that a training option sets, or
/// nullptr.
const char* training_key(const std::string& option) {
    static const std::pair<const char*, const char*> keys[] = {
        {"--covariance", "covariance"},
        {"--niter", "niter"},
        {"--tol", "tol"},
        {"--init", "init"},
        {"--seed", "seed"},
        {"--max-points-per-component", "max_points_per_component"},
        {"--reg-covar", "reg_covar"},
    };
    for (const auto& k : keys) {
        if (option == k.first) {
            return k.second;
        }
    }
    return nullptr;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            require_fmt(i + 1 < argc, "%s needs a value", a.c_str());
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            o.help = true;
        } else if (a == "--data") {
            o.data = value();
        } else if (a == "--rows") {
            o.rows = parse_int(a, value());
            require_fmt(o.rows >= 1, "--rows %" PRId64 " < 1", o.rows);
        } else if (a == "--k") {
            const int64_t k = parse_int(a, value());
            require_fmt(
                k >= 1 && k <= (int64_t(1) << 30),
                "--k %" PRId64 " out of range",
                k);
            o.k = int(k);
        } else if (const char* key = training_key(a)) {
            // the parameter key table parses and checks the value
            const std::string v = value();
            faiss_gmm::IVFGMMBuildParameters build;
            build.gmm = o.params;
            try {
                faiss_gmm::set_build_parameter(&build, key, v);
            } catch (const faiss::FaissException& e) {
                require_fmt(false, "%s %s: %s", a.c_str(), v.c_str(), e.what());
            }
            o.params = build.gmm;
        } else if (a == "--gpu") {
            o.gpu = true;
        } else if (a == "--gpus") {
            o.gpus = value();
        } else if (a == "--precision") {
            o.precision = value();
        } else if (a == "--out") {
            o.out = value();
        } else if (a == "--gmm-only") {
            o.gmm_only = true;
        } else if (a == "--verbose") {
            o.params.verbose = true;
        } else {
            require_fmt(false, "unknown option '%s' (see --help)", a.c_str());
        }
    }
    if (o.help) {
        return o;
    }
    require_fmt(!o.data.empty(), "--data FILE is required");
    require_fmt(o.k >= 1, "--k K is required");
    require_fmt(
        !(o.gpu && !o.gpus.empty()), "--gpu and --gpus exclude each other");
    require_fmt(!o.gmm_only || !o.out.empty(), "--gmm-only needs --out FILE");
#ifndef FAISS_GMM_WITH_GPU
    require_fmt(
        !o.gpu && o.gpus.empty(),
        "--gpu / --gpus: faiss_gmm was built without CUDA");
#endif
    return o;
}

/// Rank and size of the job (0 and 1 without MPI).
struct Job {
    int rank = 0;
    int size = 1;
};

int run(const Options& o, const Job& job) {
    const double t0 = faiss::getmillisecs();
    const faiss_gmm::datasets::VectorFileInfo info =
        faiss_gmm::datasets::probe_vector_file(o.data);
    const idx_t n = o.rows > 0 ? std::min<int64_t>(o.rows, info.n) : info.n;
    const int d = info.d;
    idx_t begin = 0, end = n;
#ifdef FAISS_GMM_WITH_MPI
    faiss_gmm::mpi::row_range(n, job.rank, job.size, &begin, &end);
#endif
    const faiss_gmm::datasets::FloatMatrix x =
        faiss_gmm::datasets::read_vectors(o.data, begin, end - begin);
    FAISS_THROW_IF_NOT_FMT(
        x.n == end - begin,
        "%s: read %" PRId64 " rows, expected %" PRId64,
        o.data.c_str(),
        x.n,
        int64_t(end - begin));
    const double t_read = faiss::getmillisecs();
    if (job.rank == 0) {
        printf(
            "faiss_gmm_train: %s: %" PRId64 " x %d %s rows; %d rank(s), "
            "rank 0 read %" PRId64 " rows in %.2f s\n",
            o.data.c_str(),
            int64_t(n),
            d,
            info.dtype.c_str(),
            job.size,
            int64_t(x.n),
            (t_read - t0) / 1000);
        fflush(stdout);
    }

    GaussianMixture model(d, o.k, o.params.covariance);
    std::string where = "CPU";
#ifdef FAISS_GMM_WITH_GPU
    faiss_gmm::gpu::GpuEmConfig gpu_config;
    gpu_config.precision =
        faiss_gmm::gpu::estep_precision_from_name(o.precision);
    std::vector<int> devices;
    if (o.gpu) {
        const int count = faiss_gmm::gpu::gpu_device_count();
        FAISS_THROW_IF_NOT_MSG(count >= 1, "--gpu: no CUDA device is usable");
        gpu_config.device = job.rank % count;
        devices = {gpu_config.device};
        where = std::string("GPU (") + o.precision + ")";
    } else if (!o.gpus.empty()) {
        devices = faiss_gmm::gpu::parse_device_list(o.gpus);
        gpu_config.device = devices[0];
        where = std::to_string(devices.size()) + " GPU(s) " + o.gpus + " (" +
                o.precision + ", " +
                (faiss_gmm::gpu::multi_gpu_has_nccl() ? "NCCL" : "no NCCL") +
                ")";
    }
#endif

    if (job.size == 1) {
#ifdef FAISS_GMM_WITH_GPU
        if (o.gpu) {
            faiss_gmm::gpu::train_gmm_gpu(
                &model, x.n, x.data.data(), o.params, gpu_config);
        } else if (!o.gpus.empty()) {
            faiss_gmm::gpu::train_gmm_multi_gpu(
                &model, x.n, x.data.data(), o.params, devices, gpu_config);
        } else
#endif
        {
            model.train(x.n, x.data.data(), o.params);
        }
    } else {
#ifdef FAISS_GMM_WITH_MPI
        faiss_gmm::mpi::LocalEStepFactory factory;
        std::unique_ptr<faiss::Index> init_index;
#ifdef FAISS_GMM_WITH_GPU
        if (o.gpu) {
            factory = [gpu_config](idx_t rows, const float* xs, int dim) {
                return std::unique_ptr<faiss_gmm::GmmEStep>(
                    new faiss_gmm::gpu::GpuEStep(
                        rows, xs, dim, false, gpu_config));
            };
        } else if (!o.gpus.empty()) {
            factory = [gpu_config,
                       devices](idx_t rows, const float* xs, int dim) {
                return std::unique_ptr<faiss_gmm::GmmEStep>(
                    new faiss_gmm::gpu::GpuMultiEStep(
                        rows, xs, dim, devices, gpu_config));
            };
        }
        if (job.rank == 0 && !devices.empty()) {
            init_index = std::make_unique<faiss_gmm::gpu::GpuIndexFlatL2>(
                d, gpu_config.device);
        }
#endif
        faiss_gmm::mpi::train_gmm_mpi(
            &model,
            x.n,
            x.data.data(),
            o.params,
            MPI_COMM_WORLD,
            factory,
            init_index.get());
#endif
    }
    const double t_train = faiss::getmillisecs();
    if (job.rank != 0) {
        return 0;
    }
    printf(
        "faiss_gmm_train: k = %d, %s, E-step on %s; EM iterations:\n",
        o.k,
        faiss_gmm::covariance_type_name(o.params.covariance),
        where.c_str());
    printf("  iter  mean log-lik      time (s)  re-seeded\n");
    for (const faiss_gmm::GmmIterationStats& it : model.iteration_stats) {
        printf(
            "  %4d  %-16.10g  %8.3f  %d\n",
            it.iteration + 1,
            it.log_likelihood,
            it.time_s,
            it.n_reseeded);
    }
    printf(
        "faiss_gmm_train: trained in %.2f s (reading %.2f s)\n",
        (t_train - t_read) / 1000,
        (t_read - t0) / 1000);
    if (!o.out.empty()) {
        if (o.gmm_only) {
            faiss_gmm::write_gmm(model, o.out.c_str());
        } else {
            faiss_gmm::IVFGMMBuildParameters build;
            build.gmm = o.params;
            faiss_gmm::IndexIVFGMM index(d, size_t(o.k), build);
            index.set_gmm(model);
            faiss_gmm::write_index(&index, o.out.c_str());
        }
        printf(
            "faiss_gmm_train: wrote %s (%s)\n",
            o.out.c_str(),
            o.gmm_only ? "GMM" : "trained IndexIVFGMM, empty lists");
    }
    fflush(stdout);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    Job job;
#ifdef FAISS_GMM_WITH_MPI
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &job.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &job.size);
#else
    const char* world = std::getenv("OMPI_COMM_WORLD_SIZE");
    if (world && std::atoi(world) > 1) {
        fprintf(
            stderr,
            "faiss_gmm_train: started as one of %s MPI ranks, but built "
            "without MPI (install libopenmpi-dev and rebuild)\n",
            world);
        return 1;
    }
#endif
    int status = 0;
    Options options;
    try {
        options = parse(argc, argv);
    } catch (const UsageError& e) {
        if (job.rank == 0) {
            fprintf(stderr, "faiss_gmm_train: %s\n%s", e.what(), kUsage);
        }
        status = 2;
    } catch (const std::exception& e) { // a FAISS name parser
        if (job.rank == 0) {
            fprintf(stderr, "faiss_gmm_train: %s\n%s", e.what(), kUsage);
        }
        status = 2;
    }
    if (status == 0 && options.help) {
        if (job.rank == 0) {
            printf("%s", kUsage);
        }
    } else if (status == 0) {
        try {
            status = run(options, job);
        } catch (const std::exception& e) {
            fprintf(
                stderr,
                "faiss_gmm_train: error (rank %d of %d): %s\n",
                job.rank,
                job.size,
                e.what());
            fflush(stderr);
#ifdef FAISS_GMM_WITH_MPI
            // Other ranks may wait in a collective: end the whole job.
            if (job.size > 1) {
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
#endif
            status = 1;
        }
    }
#ifdef FAISS_GMM_WITH_MPI
    MPI_Finalize();
#endif
    return status;
}
