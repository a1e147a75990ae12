/**
 * The tab-separated text files of datasets/ (registry.tsv,
 * sift_debian_recipe.tsv): one record per line, '#' lines are comments.
 */

#pragma once

#include <string>
#include <vector>

namespace faiss_gmm {
namespace datasets {

/// One record of a tab-separated text.
struct TsvLine {
    /// 1-based line number in the text (for error messages).
    int number = 0;
    /// The fields, split at every tab, as written.
    std::vector<std::string> fields;
};

/// The records of text: every line except empty ones and those starting
/// with '#'.
std::vector<TsvLine> parse_tsv(const std::string& text);

} // namespace datasets
} // namespace faiss_gmm
