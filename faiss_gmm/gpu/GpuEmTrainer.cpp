#include <faiss_gmm/gpu/GpuEmTrainer.h>
