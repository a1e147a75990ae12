#include <faiss_gmm/GmmEM.h>
