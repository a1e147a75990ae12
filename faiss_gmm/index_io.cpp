#include <faiss_gmm/index_io.h>
