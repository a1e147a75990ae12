#include <faiss_gmm/GaussianMixture.h>
