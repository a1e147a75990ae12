#include <datasets/inner_products.h>

#include <climits>
#include <vector>

#include <faiss/impl/FaissAssert.h>

#include <faiss_gmm/impl/Blas.h>

#ifdef FAISS_GMM_WITH_GPU
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <faiss_gmm/gpu/impl/DeviceAllocation.h>
#endif

namespace faiss_gmm {
namespace datasets {

namespace {

/// Blocked BLAS SGEMM on the CPU.
class CpuInnerProducts : public InnerProducts {
   public:
    explicit CpuInnerProducts(const FloatMatrix& query) : query_(query) {}

    void set_base(const float* y, int64_t /* ny */) override {
        base_ = y;
    }

    const float*
    block(int64_t q0, int64_t nq, int64_t j0, int64_t nb) override {
        if (ip_.size() < size_t(nq * nb)) {
            ip_.resize(nq * nb);
        }
        const int m = nb, n = nq, kdim = query_.d;
        const float one = 1, zero = 0;
        sgemm_(
            "Transpose",
            "Not transpose",
            &m,
            &n,
            &kdim,
            &one,
            base_ + j0 * kdim,
            &kdim,
            query_.row(q0),
            &kdim,
            &zero,
            ip_.data(),
            &m);
        return ip_.data();
    }

    std::string device_name() const override {
        return "CPU (BLAS)";
    }

   private:
    const FloatMatrix& query_;
    const float* base_ = nullptr;
    std::vector<float> ip_;
};

#ifdef FAISS_GMM_WITH_GPU

/// Names the inner products in their CUDA and cuBLAS errors.
constexpr const char* kOwner = "inner products";

void check_cuda(cudaError_t status, const char* call) {
    faiss_gmm::gpu::throw_on_cuda_error(status, call, kOwner);
}

void check_cublas(cublasStatus_t status, const char* call) {
    faiss_gmm::gpu::throw_on_cublas_error(status, call, kOwner);
}

/// Floats in device memory, or in pinned host memory for fast copies; grown
/// on demand (contents not kept), freed on destruction.
class CudaFloats {
   public:
    explicit CudaFloats(bool pinned_host) : pinned_host_(pinned_host) {}
    CudaFloats(const CudaFloats&) = delete;
    CudaFloats& operator=(const CudaFloats&) = delete;
    ~CudaFloats() {
        release();
    }

    void reserve(size_t n) {
        if (n <= capacity_) {
            return;
        }
        release();
        void* p = nullptr;
        if (pinned_host_) {
            check_cuda(cudaMallocHost(&p, n * sizeof(float)), "cudaMallocHost");
        } else {
            check_cuda(cudaMalloc(&p, n * sizeof(float)), "cudaMalloc");
        }
        data_ = static_cast<float*>(p);
        capacity_ = n;
    }

    float* data() const {
        return data_;
    }

   private:
    // A destructor cannot throw: a failed free is left to show up as a
    // sticky error at the next checked call.
    void release() {
        if (data_) {
            if (pinned_host_) {
                cudaFreeHost(data_);
            } else {
                cudaFree(data_);
            }
        }
        data_ = nullptr;
        capacity_ = 0;
    }

    bool pinned_host_;
    float* data_ = nullptr;
    size_t capacity_ = 0;
};

/// A cuBLAS handle in plain fp32 arithmetic, destroyed with the object.
class CublasHandle {
   public:
    CublasHandle() {
        check_cublas(cublasCreate(&handle_), "cublasCreate");
        // Pedantic: standard fp32 arithmetic, never TF32 or emulation, so
        // the dot-product error bound of the candidate pass holds.
        const cublasStatus_t status =
            cublasSetMathMode(handle_, CUBLAS_PEDANTIC_MATH);
        if (status != CUBLAS_STATUS_SUCCESS) {
            cublasDestroy(handle_);
            check_cublas(status, "cublasSetMathMode(CUBLAS_PEDANTIC_MATH)");
        }
    }
    CublasHandle(const CublasHandle&) = delete;
    CublasHandle& operator=(const CublasHandle&) = delete;
    ~CublasHandle() {
        cublasDestroy(handle_);
    }
    cublasHandle_t get() const {
        return handle_;
    }

   private:
    cublasHandle_t handle_ = nullptr;
};

/// cuBLAS SGEMM on the current CUDA device. The queries stay on the device;
/// each base chunk is copied once and reused by every query block.
class GpuInnerProducts : public InnerProducts {
   public:
    GpuInnerProducts(const FloatMatrix& query, int device)
        : d_(query.d),
          query_(false),
          base_(false),
          ip_device_(false),
          ip_host_(true) {
        if (device >= 0) {
            check_cuda(cudaSetDevice(device), "cudaSetDevice");
        } else {
            check_cuda(cudaGetDevice(&device), "cudaGetDevice");
        }
        cudaDeviceProp properties;
        check_cuda(
            cudaGetDeviceProperties(&properties, device),
            "cudaGetDeviceProperties");
        device_name_ =
            "GPU " + std::to_string(device) + " (" + properties.name + ")";
        copy_to_device(query_, query.data.data(), query.data.size());
    }

    void set_base(const float* y, int64_t ny) override {
        copy_to_device(base_, y, size_t(ny) * d_);
    }

    const float*
    block(int64_t q0, int64_t nq, int64_t j0, int64_t nb) override {
        const size_t size = size_t(nq) * nb;
        ip_device_.reserve(size);
        ip_host_.reserve(size);
        const int m = nb, n = nq, kdim = d_;
        const float one = 1, zero = 0;
        check_cublas(
            cublasSgemm(
                cublas_.get(),
                CUBLAS_OP_T,
                CUBLAS_OP_N,
                m,
                n,
                kdim,
                &one,
                base_.data() + j0 * d_,
                kdim,
                query_.data() + q0 * d_,
                kdim,
                &zero,
                ip_device_.data(),
                m),
            "cublasSgemm");
        check_cuda(
            cudaMemcpy(
                ip_host_.data(),
                ip_device_.data(),
                size * sizeof(float),
                cudaMemcpyDeviceToHost),
            "cudaMemcpy (inner products to host)");
        return ip_host_.data();
    }

    std::string device_name() const override {
        return device_name_;
    }

   private:
    static void copy_to_device(CudaFloats& to, const float* from, size_t n) {
        if (n == 0) {
            return;
        }
        to.reserve(n);
        check_cuda(
            cudaMemcpy(
                to.data(), from, n * sizeof(float), cudaMemcpyHostToDevice),
            "cudaMemcpy (vectors to device)");
    }

    int d_;
    std::string device_name_;
    CublasHandle cublas_;
    CudaFloats query_, base_, ip_device_, ip_host_;
};

#endif // FAISS_GMM_WITH_GPU

} // namespace

std::unique_ptr<InnerProducts>
make_inner_products(const FloatMatrix& query, bool use_gpu, int device) {
#ifdef FAISS_GMM_WITH_GPU
    if (use_gpu) {
        return std::make_unique<GpuInnerProducts>(query, device);
    }
#else
    (void)device;
#endif
    FAISS_THROW_IF_NOT_MSG(
        !use_gpu, "inner products: this build has no CUDA support");
    return std::make_unique<CpuInnerProducts>(query);
}

} // namespace datasets
} // namespace faiss_gmm
