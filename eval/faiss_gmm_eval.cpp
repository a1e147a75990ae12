/**
 * faiss_gmm_eval: recall@k against distance computations per query, GMM IVF
 * against k-means IVF. See --help, or eval/cli.h for the options.
 */

#include <iostream>
#include <string>
#include <vector>

#include <eval/cli.h>

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    return faiss_gmm::eval::eval_main(args, std::cout, std::cerr);
}
