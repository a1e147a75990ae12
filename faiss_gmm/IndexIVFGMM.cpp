#include <faiss_gmm/IndexIVFGMM.h>
