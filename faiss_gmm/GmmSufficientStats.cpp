#include <faiss_gmm/GmmSufficientStats.h>
