/**
 * Command line of faiss_gmm_eval: options, their parsing and the whole
 * program as a function (so tests can run it without a subprocess).
 */

#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <eval/codes.h>
#include <eval/runner.h>

namespace faiss_gmm {
namespace eval {

/// Parsed command line.
struct EvalOptions {
    /// registered name, "synthetic" or a folder of vector files
    std::string dataset = "synthetic";
    /// root of downloaded data sets ($FAISS_GMM_DATA, else ./data)
    std::string data_root;
    /// keep the first base rows (-1: all)
    int64_t base_rows = -1;
    /// keep the first queries (-1: all)
    int64_t query_rows = -1;
    /// factory strings; empty: the k-means baseline and the GMM index
    std::vector<std::string> indexes;
    /// lists of the default index strings (0: default_nlist(n_base))
    int64_t nlist = 0;
    /// GMM build and probe settings applied to every IndexIVFGMM
    GmmOverrides gmm;
    /// --gmm-iter's value ("" when not given): the ablation keeps it
    std::string gmm_iter;
    /// run-wide settings (k, nprobe sweep, training sample, threads, GPU)
    EvalConfig config;
    /// output folder (empty: ./out/<dataset name>)
    std::string out_dir;
    /// run the issue-7 ablation preset instead of the index list
    bool ablation = false;
    /// run the spill-rule preset (spill rules at equal replication)
    bool spill_rules = false;
    /// the --prune-sweep preset's margins (empty: not that preset)
    std::vector<float> prune_margins;
    /// the --codes preset's codes (empty: not that preset)
    std::vector<CodeVariant> codes;
    /// print the usage and exit
    bool help = false;
};

/// The --help text.
std::string eval_usage();

/// Parses argv[1..] (without the program name); throws
/// faiss::FaissException naming the bad option or value.
EvalOptions parse_eval_options(const std::vector<std::string>& args);

/// The default index strings for nlist lists: "IVF<n>,Flat" (k-means
/// baseline) and "IVF<n>_GMM,Flat".
std::vector<std::string> default_index_strings(int64_t nlist);

/**
 * The whole program: parse, load, evaluate, print and write. Returns the
 * exit status (0 on success, 1 on error with the message on err, 2 on a
 * usage error).
 */
int eval_main(
    const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

} // namespace eval
} // namespace faiss_gmm
