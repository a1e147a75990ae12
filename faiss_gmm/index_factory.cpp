#include <faiss_gmm/index_factory.h>
